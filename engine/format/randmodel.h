/* engine/format/randmodel.h: random-weight model files for benchmarks and tests.
 * Owns: eng_random_model_build, which assembles an in-memory eng_gguf_t (no file) that the
 * model loader reads like any other. Thread: builds use their own worker threads; the
 * result is an ordinary eng_gguf_t. Errors: 0 or ERR_* with a message in the errbuf. */
#ifndef ORTHOD_ENGINE_FORMAT_RANDMODEL_H
#define ORTHOD_ENGINE_FORMAT_RANDMODEL_H

#include "../../common/err.h"
#include "../tensor.h"
#include "gguf.h"

#include <stdint.h>

/* Random-weight Llama models of named shapes, for benchmarks and tests: weights
 * N(0, std), norms 1.0, a byte-level SPM vocab of n_vocab tokens.
 * Shapes: "stories15M" (dim 288, 6 layers, 6 heads, ffn 768, vocab 32000), "stories110M"
 * (dim 768, 12 layers, 12 heads, ffn 2048, vocab 32000), "llama7b" (dim 4096, 32 layers,
 * 32 heads, 8 KV heads, ffn 14336, vocab 32000), "tiny" (dim 64, 2 layers, 4 heads, 2 KV
 * heads, ffn 192, vocab 300), or "dim=..,layers=..,heads=..,kv_heads=..,ffn=..,vocab=..,
 * ctx=..,rope_base=.." (missing keys take the tiny values; vocab >= 259). Quantized dtypes
 * need dim and ffn multiples of 32. Builds an in-memory model file; same seed and shape give
 * the same weights whatever the thread count. */
struct eng_random_model {
    char shape[160];
    enum eng_dtype dtype;     /* F32, F16, BF16, Q8_0 or Q4_0 for the matrices */
    float std;                /* 0.02 */
    float norm_std;           /* 0: norm weights exactly 1.0; else 1 + N(0, norm_std) */
    uint64_t seed;
    int n_threads;            /* generation threads */
};
int eng_random_model_build(const struct eng_random_model *rm, eng_gguf_t **out,
                           struct errbuf *eb);

#endif
