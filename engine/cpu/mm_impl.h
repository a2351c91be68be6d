/* engine/cpu/mm_impl.h: internals of the matmul module (not a public API).
 * Owns: the job one eng_cpu_mm_run call hands to the thread pool, the contract of a
 * matmul "kind" (what each level's mm_<isa>.h provides to the driver mm_tmpl.h), and the
 * canonical definition of the quantized dot product that every level reproduces bit for
 * bit, with its scalar oracle (matmul.c). Used by engine/cpu and tests/test_matmul.c.
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

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* One matmul as the kernels see it: out (R, N) = x (R, K) @ w^T. The driver (mm_tmpl.h)
 * hands each kernel call a copy of the call's job narrowed to one weight and its own
 * activations (act): kernels read only these fields. */
struct mm_job {
    float *out;               /* (R, N), row stride N floats */
    const float *x;           /* (R, K), row stride K floats */
    int64_t R, N, K;
    enum eng_dtype dt;
    const uint8_t *w;         /* weight row n at w + n * ws (the model's mmap) */
    size_t ws;                /* weight row stride in bytes (>= the row's bytes) */
    eng_tp_t *tp;
    void *act;                /* activations converted for this dtype (layout: the kind's) */
    uint8_t *pack;            /* per-thread scratch: thread ith uses pack + ith * pack_bytes */
    size_t pack_bytes;
};

/* One eng_cpu_mm_run_n call: up to MM_MAX_W weights of one dtype and K against one x.
 * The output columns of all weights are cut into work items of `chunk` columns that the
 * threads take in turn (an atomic counter: a thread slowed by the machine takes fewer). */
#define MM_MAX_W 4
struct mm_call {
    struct mm_job j;          /* x, R, K, dt, tp, pack; out/w/ws/N of weight 0 */
    int n_w;
    struct {
        float *out;
        const uint8_t *w;
        size_t ws;
        int64_t N;
        int64_t first_item;   /* work items before this weight's */
    } wt[MM_MAX_W];
    int64_t chunk;            /* output columns per work item (a multiple of 32) */
    int64_t n_items;
    _Atomic int64_t next;     /* next work item */
    size_t act_stride;        /* 0: one shared act, converted by all threads (then a
                                 barrier); else each thread converts all of x into its own
                                 copy at act + ith * act_stride (small x: no barrier) */
};

/* --- kinds: how one family of weight dtypes is multiplied at one level -------------------
 * Each level's mm_<isa>.h defines its kinds (kind_q, kind_f, ...), mm_tmpl.h maps the
 * dtypes to them (mm_kind_of) and, as the one driver, runs a call as: (1) every thread converts its share of
 * the rows of x with act_row (if the kind has one), barrier; (2) the output columns are
 * split over the threads in multiples of 16; (3) R <= rv: the row-wise kernel gemv
 * streams the thread's weight rows once against all R rows of x; otherwise for each
 * panel of pw columns and each K chunk, pack converts/transposes the weights into the
 * thread's scratch and tile runs the microkernel on up to rt rows of x at a time.
 *
 * Adding a weight type (e.g. a K-quant): give each mm_<isa>.h (and mm_scalar.h) either a
 * new kind, when it needs its own activation format or panel layout (a K-quant: Q8_K
 * activations, its super-block scales), or a new case in an existing kind's hooks; map the
 * dtype in mm_kind_of (mm_tmpl.h); extend eng_dtype_is_compute and the oracle below
 * (eng_cpu_mm_ref, and the canonical order if it is quantized) so tests/test_matmul.c
 * checks every level against it. */
struct mm_kind {
    /* activations: bytes for R rows of K (SIZE_MAX on overflow; 0: none for this R);
     * act_row converts row r of j->x into j->act. NULL: the kernels read the F32 x as
     * it is. */
    size_t (*act_bytes)(int64_t R, int64_t K);
    void (*act_row)(const struct mm_job *j, int64_t r);
    /* row-wise kernel, used for R <= rv: outputs [lo, hi) of every row of x; scratch:
     * gemv_bytes(R, K) bytes of the thread's own (gemv_bytes NULL: none) */
    int64_t rv;
    void (*gemv)(const struct mm_job *j, void *scratch, int64_t lo, int64_t hi);
    size_t (*gemv_bytes)(int64_t R, int64_t K);
    /* packed panels, used for R > rv: pw output columns per panel, K in chunks of kc
     * elements (kc_small when R <= rt), rt rows of x per tile, panel_bytes of scratch.
     * pack: columns [n0, n0 + nc) (nc <= pw; the columns >= nc of the panel are zero),
     * K elements [k0, k0 + kn), n_end the end of the thread's range (for prefetching the
     * next panel); tile: rows [r0, r0 + rt) of x against the packed panel, into out
     * (first chunk: k0 == 0 starts from zero, later chunks add to what out holds). */
    int64_t pw, rt, kc, kc_small;
    size_t panel_bytes;
    void (*pack)(const struct mm_job *j, void *panel, int64_t n0, int64_t nc, int64_t k0,
                 int64_t kn, int64_t n_end);
    void (*tile)(const struct mm_job *j, const void *panel, int rt, int64_t r0, int64_t n0,
                 int64_t nc, int64_t k0, int64_t kn);
};

/* MM_LADDER(KERN, RTMAX, rt, C, ...): calls KERN(RT, CC, ...) with RT = rt (1 .. RTMAX,
 * at most 8) and CC = C (1 or 2) as compile-time constants, so that every (rows, column
 * vectors) tile of an always_inline microkernel is its own fully unrolled instance. */
#define MM_RT_(n, RTMAX) ((n) < (RTMAX) ? (n) : (RTMAX))
#define MM_LADDER_C_(KERN, RT, C, ...)                                                      \
    ((C) == 2 ? KERN(RT, 2, __VA_ARGS__) : KERN(RT, 1, __VA_ARGS__))
#define MM_LADDER(KERN, RTMAX, rt, C, ...)                                                  \
    do {                                                                                    \
        switch (rt) {                                                                       \
        case 1: MM_LADDER_C_(KERN, 1, C, __VA_ARGS__); break;                               \
        case 2: MM_LADDER_C_(KERN, MM_RT_(2, RTMAX), C, __VA_ARGS__); break;                \
        case 3: MM_LADDER_C_(KERN, MM_RT_(3, RTMAX), C, __VA_ARGS__); break;                \
        case 4: MM_LADDER_C_(KERN, MM_RT_(4, RTMAX), C, __VA_ARGS__); break;                \
        case 5: MM_LADDER_C_(KERN, MM_RT_(5, RTMAX), C, __VA_ARGS__); break;                \
        case 6: MM_LADDER_C_(KERN, MM_RT_(6, RTMAX), C, __VA_ARGS__); break;                \
        case 7: MM_LADDER_C_(KERN, MM_RT_(7, RTMAX), C, __VA_ARGS__); break;                \
        default: MM_LADDER_C_(KERN, MM_RT_(8, RTMAX), C, __VA_ARGS__); break;               \
        }                                                                                   \
    } while (0)

static inline int64_t mm_imin(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

static inline int64_t mm_round_up(int64_t v, int64_t m)
{
    return (v + m - 1) / m * m;
}

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
