/* engine/cpu/level_scalar.c: the scalar kernel level (kernels.h), plain C for CPUs without
 * AVX2: the matmul kinds of mm_scalar.h under the driver mm_tmpl.h, the element-wise ops
 * below (the reference the SIMD levels are tested against), and the attention tile worker
 * compiled for the baseline (attention.c). Also the lookup of a level's table. */
#include "kernels.h"
#include "attention_impl.h"
#include "mm_scalar.h"
#include "mm_tmpl.h"

#include <math.h>

static void vec_silu_mul(float *out, const float *g, const float *u, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        out[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

static void vec_add(float *out, const float *a, const float *b, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        out[i] = a[i] + b[i];
}

static float vec_exp_sum(float *x, float m, int64_t n)
{
    float s = 0.0f;
    for (int64_t i = 0; i < n; i++) {
        x[i] = expf(x[i] - m);
        s += x[i];
    }
    return s;
}

static void vec_rmsnorm(float *out, const float *x, const float *w, float eps, int64_t n)
{
    double ss = 0.0;
    for (int64_t i = 0; i < n; i++)
        ss += (double)x[i] * x[i];
    const float s = (float)(1.0 / sqrt(ss / (double)n + eps));
    for (int64_t i = 0; i < n; i++)
        out[i] = x[i] * s * w[i];
}

static void vec_f32_to_f16(uint16_t *out, const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        out[i] = eng_fp32_to_fp16(x[i]);
}

ENG_CPU_KERNELS_DEFINE(scalar, eng_cpu_attention_worker_base);

const struct eng_cpu_kernels *eng_cpu_kernels(enum eng_cpu_level level)
{
    switch (level) {
    case ENG_CPU_SCALAR: return &eng_cpu_kernels_scalar;
#if defined(__x86_64__)
    case ENG_CPU_AVX2: return &eng_cpu_kernels_avx2;
    case ENG_CPU_AVX512: return &eng_cpu_kernels_avx512;
#endif
    default: return NULL;
    }
}
