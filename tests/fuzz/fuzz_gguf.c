/* tests/fuzz/fuzz_gguf.c: libFuzzer target for the GGUF reader (engine/format/gguf.c).
 * Owns: one entry point that opens the input with eng_gguf_open_mem and, when it is
 * accepted, reads everything the object reports (every key through every getter,
 * every string-array element, the first and last byte of every tensor) so that ASan
 * sees any pointer the reader hands out past the input. A rejected input must come
 * with ERR_CORRUPT/ERR_UNSUPPORTED and a message. */
#include "../../engine/format/gguf.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void touch(const void *p, size_t n, volatile uint8_t *sink)
{
    if (n) {
        *sink ^= ((const volatile uint8_t *)p)[0];
        *sink ^= ((const volatile uint8_t *)p)[n - 1];
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    eng_gguf_t *g = NULL;
    struct errbuf eb = {{0}};
    volatile uint8_t sink = 0;
    int rc = eng_gguf_open_mem(data, size, &g, &eb);
    if (rc < 0) {
        if ((rc != ERR_CORRUPT && rc != ERR_UNSUPPORTED && rc != ERR_NOMEM) || !eb.msg[0] || g)
            __builtin_trap();
        return 0;
    }
    for (int64_t i = 0; i < eng_gguf_n_kv(g); i++) {
        size_t klen;
        const char *k = eng_gguf_key_at(g, i, &klen);
        touch(k, klen, &sink);
        char key[ENG_GGUF_MAX_KEY_LEN + 1];
        memcpy(key, k, klen);
        key[klen] = '\0';
        if (eng_gguf_find_key(g, key) != i)      /* keys are unique and NUL-free */
            __builtin_trap();
        uint32_t u32;
        int32_t i32;
        uint64_t u64;
        float f;
        bool b;
        const char *s;
        size_t len;
        enum eng_gguf_type et;
        uint64_t n;
        const void *arr;
        eng_gguf_get_u32(g, key, &u32);
        eng_gguf_get_i32(g, key, &i32);
        eng_gguf_get_u64(g, key, &u64);
        eng_gguf_get_f32(g, key, &f);
        eng_gguf_get_bool(g, key, &b);
        if (eng_gguf_get_str(g, key, &s, &len) == 0)
            touch(s, len, &sink);
        if (eng_gguf_get_arr(g, key, &et, &n, &arr) == 0) {
            if (et == ENG_GGUF_STRING) {
                for (uint64_t j = 0; j < n; j++) {
                    if (eng_gguf_get_arr_str(g, key, j, &s, &len) != 0)
                        __builtin_trap();
                    touch(s, len, &sink);
                }
                if (eng_gguf_get_arr_str(g, key, n, &s, &len) != ERR_RANGE)
                    __builtin_trap();
            } else if (n) {
                const uint8_t *p = arr;
                touch(p, 1, &sink);
                touch(p + n - 1, 1, &sink);
            }
        }
    }
    for (int64_t i = 0; i < eng_gguf_n_tensors(g); i++) {
        struct eng_gguf_tensor t;
        eng_gguf_tensor_at(g, i, &t);
        if (t.n_dims < 1 || t.n_dims > 4 || eng_gguf_find_tensor(g, t.name) != i ||
            (t.nbytes && ((const uint8_t *)t.data < data ||
                          (const uint8_t *)t.data + t.nbytes > data + size)))
            __builtin_trap();
        touch(t.data, t.nbytes, &sink);
    }
    eng_gguf_free(g);
    return 0;
}
