/* engine/cpu/mm_impl.h: internals of the matmul module (not a public API).
 * Owns: the job one eng_cpu_mm_run call hands to the thread pool, the per-ISA kernel
 * tables (matmul.c: scalar; matmul_avx2.c; matmul_avx512.c), and the canonical
 * definition of the quantized dot product that every level reproduces bit for bit.
 * Used by matmul*.c and tests/test_matmul.c.
 *
 * Canonical Q8_0 / Q4_0 product (what "bit-exact" means here):
 *   1. Each row of x is quantized to Q8_0-style blocks of 32 (ggml's quantize_row_q8_0
 *      reference): amax = max |x_j| (compared as the bit patterns of |x_j|, so a NaN
 *      wins deterministically), d = amax / 127, id = d != 0 ? 1/d : 0,
 *      v = x_j * id clamped to [-127, 127] (v > -127 ? v : -127, then v < 127 ? v : 127,
 *      so a NaN becomes -127), q_j = roundf(v) (half away from zero); the block scale
 *      used below is dx = fp16_to_fp32(fp32_to_fp16(d)).
 *   2. Per block b the integer dot isum_b = sum_j w_j * q_j is exact (int32), where w_j
 *      is the stored int8 (Q8_0) or nibble - 8 (Q4_0).
 *   3. acc = 0; for b = 0 .. nb-1 in order: acc = fmaf((float)isum_b, dw_b * dx_b, acc),
 *      dw_b the block's fp16 scale as F32.  out[r][n] = acc.
 * Every SIMD path keeps one accumulator per output (lanes = output columns), so the
 * order is the same whatever R, the thread count or the ISA level. */
#ifndef ORTHOD_ENGINE_CPU_MM_IMPL_H
#define ORTHOD_ENGINE_CPU_MM_IMPL_H

#include "cpu.h"

#include <stddef.h>
#include <stdint.h>

/* One eng_cpu_mm_run call: out (R, N) = x (R, K) @ w^T. */
struct mm_job {
    float *out;               /* (R, N), row stride N floats */
    const float *x;           /* (R, K), row stride K floats */
    int64_t R, N, K;
    enum eng_dtype dt;
    const uint8_t *w;         /* weight row n at w + n * ws (the model's mmap) */
    size_t ws;                /* weight row stride in bytes (>= the row's bytes) */
    eng_tp_t *tp;
    void *act;                /* activations converted for this dtype (shared; layout: level's) */
    uint8_t *pack;            /* per-thread scratch: thread ith uses pack + ith * pack_bytes */
    size_t pack_bytes;
};

/* A kernel level: scratch sizes for a shape and the pool worker that does the call.
 * act_bytes/pack_bytes return SIZE_MAX when the shape would overflow size_t. */
struct mm_level_ops {
    const char *name;
    size_t (*act_bytes)(enum eng_dtype dt, int64_t R, int64_t K);
    size_t (*pack_bytes)(enum eng_dtype dt, int64_t R, int64_t K);
    eng_tp_fn worker;         /* arg: struct mm_job * */
};

const struct mm_level_ops *eng_cpu_mm_ops_scalar(void);
#if defined(__x86_64__)
const struct mm_level_ops *eng_cpu_mm_ops_avx2(void);
const struct mm_level_ops *eng_cpu_mm_ops_avx512(void);
#endif

/* --- the canonical quantized product (matmul.c), used by the scalar level and as the
 * oracle; the SIMD levels must equal it bit for bit --- */

/* Step 1 above for one row of K (multiple of 32) floats: q[K] int8, dx[K/32] scales,
 * xsum[K/32] = sum of the block's q (for the SIMD levels' offset corrections). */
void eng_cpu_mm_quantize_row(const float *x, int64_t K, int8_t *q, float *dx, int32_t *xsum);
/* Steps 2-3 for one weight row of dtype Q8_0 or Q4_0 with nb blocks. */
float eng_cpu_mm_qdot_ref(enum eng_dtype dt, const uint8_t *wrow, const int8_t *q,
                          const float *dx, int64_t nb);

/* The oracle (single thread, allocates its own scratch; for tests and benchmarks):
 * Q8_0/Q4_0 follow the canonical product above; F32/F16/BF16 accumulate exact products
 * of the F32 x and the stored weights in double and round once. Returns 0, ERR_INVAL
 * (bad shape or dtype) or ERR_NOMEM. */
int eng_cpu_mm_ref(float *out, const float *x, int64_t R, const eng_tensor_t *w);

/* The quantized dtype's block scale as F32 (unaligned-safe). */
static inline float mm_load_fp16(const uint8_t *p)
{
    uint16_t h;
    memcpy(&h, p, 2);
    return eng_fp16_to_fp32(h);
}

#endif
