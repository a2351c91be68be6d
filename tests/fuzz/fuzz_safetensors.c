/* tests/fuzz/fuzz_safetensors.c: libFuzzer target for the safetensors parser
 * (engine/format/hf.c, eng_hf_safetensors_parse). Owns: one entry point; every tensor the
 * parser delivers is checked to lie inside the input, aligned, with a byte count that
 * matches its shape, and its first and last bytes are read (ASan catches the rest). */
#include "../../engine/format/hf.h"

#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct span {
    const uint8_t *p;
    size_t size;
    volatile uint8_t sink;
};

static int check(void *ctx, const struct eng_hf_st_tensor *t, struct errbuf *eb)
{
    (void)eb;
    struct span *s = ctx;
    size_t esz = t->dtype == ENG_DTYPE_F32 ? 4 : 2;
    uint64_t nel = 1;
    for (int d = 0; d < 4; d++)
        nel *= (uint64_t)t->ne[d];
    const uint8_t *p = t->data;
    if (t->n_dims < 1 || t->n_dims > 4 || nel * esz != t->nbytes || !t->name ||
        (t->nbytes && (p < s->p || p + t->nbytes > s->p + s->size)) ||
        (uintptr_t)(p - s->p) % esz)
        __builtin_trap();
    if (t->nbytes) {
        s->sink ^= ((const volatile uint8_t *)p)[0];
        s->sink ^= ((const volatile uint8_t *)p)[t->nbytes - 1];
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct span s = {data, size, 0};
    struct errbuf eb = {{0}};
    int rc = eng_hf_safetensors_parse(data, size, check, &s, &eb);
    if (rc < 0 && ((rc != ERR_CORRUPT && rc != ERR_UNSUPPORTED && rc != ERR_NOMEM) || !eb.msg[0]))
        __builtin_trap();
    return 0;
}
