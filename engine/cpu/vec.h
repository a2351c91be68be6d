/* engine/cpu/vec.h: element-wise vector kernels of the CPU backend (SIMD per ISA level).
 * Owns: struct eng_cpu_vec (a table filled once per backend for the chosen level). The
 * SIMD exp those kernels use (a Cephes-style polynomial) is private to each level's file
 * (exp8 in vec_avx2.c, exp16 in vec_avx512.c); this header declares none.
 * The scalar versions in vec.c (libm expf) are the reference the SIMD ones are tested
 * against. */
#ifndef ORTHOD_ENGINE_CPU_VEC_H
#define ORTHOD_ENGINE_CPU_VEC_H

#include "cpu.h"

struct eng_cpu_vec {
    /* out[i] = g[i] / (1 + exp(-g[i])) * u[i]  (SwiGLU); out may alias g or u */
    void (*silu_mul)(float *out, const float *g, const float *u, int64_t n);
    /* out[i] = a[i] + b[i] */
    void (*add)(float *out, const float *a, const float *b, int64_t n);
    /* x[i] = exp(x[i] - m); returns the sum (softmax numerator and denominator) */
    float (*exp_sum)(float *x, float m, int64_t n);
    /* out[i] = x[i] * s * w[i] with s = 1/sqrt(mean(x^2) + eps): RMSNorm of one row */
    void (*rmsnorm)(float *out, const float *x, const float *w, float eps, int64_t n);
    /* out[i] = fp16(x[i]), round to nearest even (bit-identical to eng_fp32_to_fp16 for
     * every non-NaN input): the F16 KV-cache write */
    void (*f32_to_f16)(uint16_t *out, const float *x, int64_t n);
};

void eng_cpu_vec_init(enum eng_cpu_level level, struct eng_cpu_vec *v);

/* per-level tables (vec.c, vec_avx2.c, vec_avx512.c) */
void eng_cpu_vec_scalar(struct eng_cpu_vec *v);
void eng_cpu_vec_avx2(struct eng_cpu_vec *v);
void eng_cpu_vec_avx512(struct eng_cpu_vec *v);

#endif
