/* tests/fuzz/fuzz_tokenize.c: libFuzzer target for the tokenizers. Arbitrary bytes go
 * through the Llama SPM and GPT-2 BPE vocabularies (and BERT WordPiece when built with
 * libutf8proc), with and without BOS and special-token parsing. Checked: no crash or
 * sanitizer report, every id in range, the streaming decoder only ever emits valid UTF-8,
 * and strictly valid UTF-8 text round-trips (SPM through eng_detokenize, unless it holds
 * U+2581 which SPM decodes as a space; GPT-2 through the concatenated pieces).
 * The vocabularies come from $ORTHOD_SHARED/models (default: ../shared next to the source
 * tree, or ORTHOD_SHARED_DEFAULT). libFuzzer has no main() of ours, so the loaded
 * vocabularies live in statics set once by LLVMFuzzerInitialize. */
#include "../../engine/format/gguf.h"
#include "../../engine/tok/tokenizer.h"
#include "../../engine/tok/unicode.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef ORTHOD_SHARED_DEFAULT
#define ORTHOD_SHARED_DEFAULT "../shared"
#endif

#define N_VOCABS 3
static const char *const vocab_files[N_VOCABS] = {"ggml-vocab-llama-spm.gguf",
                                                  "ggml-vocab-gpt-2.gguf",
                                                  "ggml-vocab-bert-bge.gguf"};
static eng_gguf_t *files[N_VOCABS];
static eng_vocab_t *vocabs[N_VOCABS];

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *dir = getenv("ORTHOD_SHARED");
    if (!dir || !*dir)
        dir = ORTHOD_SHARED_DEFAULT;
    for (int i = 0; i < N_VOCABS; i++) {
        char path[1024];
        struct errbuf eb = {{0}};
        snprintf(path, sizeof path, "%s/models/%s", dir, vocab_files[i]);
        if (eng_gguf_open(path, &files[i], &eb) < 0) {
            fprintf(stderr, "fuzz_tokenize: %s: %s (set ORTHOD_SHARED)\n", path, eb.msg);
            abort();
        }
        if (eng_vocab_from_gguf(files[i], &vocabs[i], &eb) < 0) {
            if (i > 0)          // GPT-2/BERT need libutf8proc
                continue;
            fprintf(stderr, "fuzz_tokenize: %s: %s\n", path, eb.msg);
            abort();
        }
    }
    return 0;
}

static bool strictly_valid(const uint8_t *s, size_t n, bool *has_2581)
{
    *has_2581 = false;
    for (size_t i = 0; i < n;) {
        size_t bad;
        const int r = eng_unicode_check(s + i, n - i, &bad);
        if (r <= 0)
            return false;
        if (r == 3 && s[i] == 0xE2 && s[i + 1] == 0x96 && s[i + 2] == 0x81)
            *has_2581 = true;
        i += (size_t)r;
    }
    return true;
}

static void check_utf8(const char *s, size_t n)
{
    bool dummy;
    if (!strictly_valid((const uint8_t *)s, n, &dummy))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 1 << 16)
        return 0;
    const char *text = (const char *)data;
    bool has_2581;
    const bool valid = strictly_valid(data, size, &has_2581);
    int32_t *ids = malloc((8 * size + 16) * sizeof *ids);
    char *out = malloc(16 * size + 4096);
    if (!ids || !out)
        abort();
    for (int k = 0; k < N_VOCABS; k++) {
        const eng_vocab_t *v = vocabs[k];
        if (!v)
            continue;
        const int32_t V = eng_vocab_n_tokens(v);
        for (int mode = 0; mode < 4; mode++) {
            const bool add = mode & 1, special = mode & 2;
            size_t n = 0;
            int rc = eng_tokenize(v, text, size, add, special, ids, 8 * size + 16, &n);
            if (rc < 0)
                abort();            // the shared vocabularies can encode any bytes
            for (size_t i = 0; i < n; i++)
                if (ids[i] < 0 || ids[i] >= V)
                    abort();
            // streaming: only valid UTF-8 comes out, whatever the ids
            struct eng_detok d;
            eng_detok_init(&d, v);
            for (size_t i = 0; i < n; i++) {
                char piece[64];
                check_utf8(piece, eng_detok_push(v, &d, ids[i], special, piece, sizeof piece));
            }
            char tail[8];
            check_utf8(tail, eng_detok_flush(&d, tail, sizeof tail));
            // whole-sequence decoding: a consistent length and NUL termination
            const size_t need = eng_detokenize(v, ids, n, special, NULL, 0);
            const size_t got = eng_detokenize(v, ids, n, special, out, 16 * size + 4096);
            if (got > need || (got < 16 * size + 4096 && out[got] != '\0'))
                abort();
            if (mode != 0 || !valid)
                continue;
            if (k == 0 && !has_2581 && (got != size || memcmp(out, text, size) != 0))
                abort();
            if (k == 1) {
                size_t p = 0;
                for (size_t i = 0; i < n; i++) {
                    const int pn = eng_token_to_piece(v, ids[i], false, out + p, 4096);
                    if (pn < 0)
                        abort();
                    p += (size_t)pn;
                }
                if (p != size || memcmp(out, text, size) != 0)
                    abort();
            }
        }
    }
    free(out);
    free(ids);
    return 0;
}
