/* tests/fuzz/fuzz_hf.c: libFuzzer target for Hugging Face folders (engine/format/hf.c,
 * eng_hf_open): the JSON files. Owns: one entry point that splits the input at the
 * separator line "\n--\n" into config.json, tokenizer.json and tokenizer_config.json
 * (missing parts: the file is absent), writes them with a fixed small model.safetensors
 * into a fresh temporary folder, opens the folder and, when it loads, reads every
 * token and merge string back. A rejection must come with a message. */
#include "../../engine/format/gguf.h"
#include "../../engine/format/hf.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int put(const char *dir, const char *name, const void *p, size_t n)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    size_t w = fwrite(p, 1, n, f);
    return fclose(f) == 0 && w == n ? 0 : -1;
}

static void drop(const char *dir, const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    unlink(path);
}

static void read_strings(const eng_gguf_t *g, const char *key, volatile uint8_t *sink)
{
    enum eng_gguf_type et;
    uint64_t n;
    const void *arr;
    if (eng_gguf_get_arr(g, key, &et, &n, &arr) != 0 || et != ENG_GGUF_STRING)
        return;
    for (uint64_t i = 0; i < n; i++) {
        const char *s;
        size_t len;
        if (eng_gguf_get_arr_str(g, key, i, &s, &len) != 0)
            __builtin_trap();
        if (len)
            *sink ^= (uint8_t)(s[0] ^ s[len - 1]);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const names[3] = {"config.json", "tokenizer.json",
                                         "tokenizer_config.json"};
    static const char sep[] = "\n--\n";
    /* model.safetensors: one F32 norm weight of 8 elements */
    static const char st_header[] =
        "{\"model.norm.weight\":{\"dtype\":\"F32\",\"shape\":[8],\"data_offsets\":[0,32]}} ";
    _Static_assert((sizeof st_header - 1) % 8 == 0, "data must start 8-byte aligned");
    uint8_t st[8 + sizeof st_header - 1 + 32] = {0};
    uint64_t hl = sizeof st_header - 1;
    memcpy(st, &hl, 8);
    memcpy(st + 8, st_header, hl);

    const char *tmp = getenv("TMPDIR");
    char dir[256];
    snprintf(dir, sizeof dir, "%s/orthod-fuzz-hf-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir))
        return 0;
    const uint8_t *p = data, *end = data + size;
    for (int i = 0; i < 3 && p <= end; i++) {
        const uint8_t *e = NULL;
        for (const uint8_t *q = p; q + 4 <= end && !e; q++)
            if (!memcmp(q, sep, 4))
                e = q;
        size_t n = (size_t)((e ? e : end) - p);
        put(dir, names[i], p, n);
        if (!e)
            break;
        p = e + 4;
    }
    put(dir, "model.safetensors", st, sizeof st);

    eng_gguf_t *g = NULL;
    struct errbuf eb = {{0}};
    volatile uint8_t sink = 0;
    int rc = eng_hf_open(dir, &g, &eb);
    if (rc < 0) {
        if (!eb.msg[0] || g)
            __builtin_trap();
    } else {
        read_strings(g, "tokenizer.ggml.tokens", &sink);
        read_strings(g, "tokenizer.ggml.merges", &sink);
        eng_gguf_free(g);
    }
    for (int i = 0; i < 3; i++)
        drop(dir, names[i]);
    drop(dir, "model.safetensors");
    rmdir(dir);
    return 0;
}
