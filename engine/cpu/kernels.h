/* engine/cpu/kernels.h: the CPU backend's kernel table, one per instruction-set level.
 * Owns: struct eng_cpu_kernels (matmul, attention and element-wise entry points of one
 * level), the three tables (scalar, avx2, avx512) and how a level is built.
 *
 * A level is one translation unit compiled with that level's -m flags
 * (engine/cpu/meson.build): level_<isa>.c includes
 *   simd_<isa>.h   small helpers: masks, transposes, horizontal sums, rounding, exp, vf_*;
 *   mm_<isa>.h     the matmul kinds of that ISA: activation formats, row-wise kernels,
 *                  panel packers and microkernels (mm_impl.h says what a kind provides);
 *   mm_tmpl.h      the matmul driver, written once: thread split, panels, K chunks, the
 *                  tile ladder, scratch sizes;
 *   vec_tmpl.h     the element-wise ops, written once against vf_* (not for scalar: the
 *                  scalar level's plain C functions are the reference the others are
 *                  tested against);
 * and fills its table once, as a static const. Attention is the same tile code
 * (attention_tile.h) compiled per level in attention*.c, with FP contraction on; the
 * matmul/element-wise units keep contraction off so the canonical quantized product
 * (mm_impl.h) is reproduced bit for bit at every level.
 *
 * Adding a level: a new simd_<isa>.h, mm_<isa>.h, level_<isa>.c, attention_<isa>.c, its
 * flags in meson.build, its detection in features.c. */
#ifndef ORTHOD_ENGINE_CPU_KERNELS_H
#define ORTHOD_ENGINE_CPU_KERNELS_H

#include "cpu.h"

struct eng_cpu_kernels {
    const char *name;                /* "scalar", "avx2", "avx512" */

    /* matmul (mm_tmpl.h): scratch a call of R rows, K inputs of dtype dt needs (SIZE_MAX
     * when the shape would overflow size_t): activations converted for the kernels,
     * shared by the threads of a call, and per-thread panels; the pool worker (arg: struct
     * mm_call, mm_impl.h). */
    size_t (*mm_act_bytes)(enum eng_dtype dt, int64_t R, int64_t K);
    size_t (*mm_pack_bytes)(enum eng_dtype dt, int64_t R, int64_t K);
    eng_tp_fn mm_worker;

    /* attention (attention_tile.h): the pool worker (arg: struct att_job) */
    eng_tp_fn att_worker;

    /* element-wise */
    /* out[i] = g[i] / (1 + exp(-g[i])) * u[i]  (SwiGLU); out may alias g or u */
    void (*silu_mul)(float *out, const float *g, const float *u, int64_t n);
    /* out[i] = a[i] + b[i] */
    void (*add)(float *out, const float *a, const float *b, int64_t n);
    /* x[i] = exp(x[i] - m); returns the sum (softmax numerator and denominator) */
    float (*exp_sum)(float *x, float m, int64_t n);
    /* out[i] = x[i] * s * w[i] with s = 1/sqrt(mean(x^2) + eps), the sum of squares in
     * double: RMSNorm of one row */
    void (*rmsnorm)(float *out, const float *x, const float *w, float eps, int64_t n);
    /* out[i] = fp16(x[i]), round to nearest even (bit-identical to eng_fp32_to_fp16 for
     * every non-NaN input): the F16 KV-cache write */
    void (*f32_to_f16)(uint16_t *out, const float *x, int64_t n);
};

/* Defines the table eng_cpu_kernels_<lvl> of a level unit: its matmul entries from
 * mm_tmpl.h, its element-wise functions (vec_tmpl.h, or level_scalar.c's, under the same
 * names) and the attention worker `att` of its attention unit. */
#define ENG_CPU_KERNELS_DEFINE(lvl, att)                                                    \
    const struct eng_cpu_kernels eng_cpu_kernels_##lvl = {                                  \
        .name = #lvl,                                                                       \
        .mm_act_bytes = mm_act_bytes,                                                       \
        .mm_pack_bytes = mm_pack_bytes,                                                     \
        .mm_worker = mm_worker,                                                             \
        .att_worker = att,                                                                  \
        .silu_mul = vec_silu_mul,                                                           \
        .add = vec_add,                                                                     \
        .exp_sum = vec_exp_sum,                                                             \
        .rmsnorm = vec_rmsnorm,                                                             \
        .f32_to_f16 = vec_f32_to_f16,                                                       \
    }

extern const struct eng_cpu_kernels eng_cpu_kernels_scalar;
#if defined(__x86_64__)
extern const struct eng_cpu_kernels eng_cpu_kernels_avx2;
extern const struct eng_cpu_kernels eng_cpu_kernels_avx512;
#endif

/* The table of `level`, or NULL when this build has no such level. It does not check
 * that the CPU can run it (eng_cpu_level_pick does). */
const struct eng_cpu_kernels *eng_cpu_kernels(enum eng_cpu_level level);

#endif
