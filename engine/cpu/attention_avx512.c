/* engine/cpu/attention_avx512.c: the blocked attention kernel (attention_tile.h) compiled
 * for the avx512 level: the same C loops, vectorized by the compiler at that width with FMA
 * contraction, F16 cache rows converted with vcvtph2ps. Called only at that level. */
#include "attention_impl.h"

#define ATT_WORKER eng_cpu_attention_worker_avx512
#include "attention_tile.h"
