/* engine/cpu/vec.c: scalar element-wise kernels (the reference) and the level dispatch. */
#include "vec.h"

#include <math.h>

static void silu_mul_scalar(float *out, const float *g, const float *u, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        out[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

static void add_scalar(float *out, const float *a, const float *b, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        out[i] = a[i] + b[i];
}

static float exp_sum_scalar(float *x, float m, int64_t n)
{
    float s = 0.0f;
    for (int64_t i = 0; i < n; i++) {
        x[i] = expf(x[i] - m);
        s += x[i];
    }
    return s;
}

static void rmsnorm_scalar(float *out, const float *x, const float *w, float eps, int64_t n)
{
    double ss = 0.0;
    for (int64_t i = 0; i < n; i++)
        ss += (double)x[i] * x[i];
    const float s = (float)(1.0 / sqrt(ss / (double)n + eps));
    for (int64_t i = 0; i < n; i++)
        out[i] = x[i] * s * w[i];
}

static void f32_to_f16_scalar(uint16_t *out, const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        out[i] = eng_fp32_to_fp16(x[i]);
}

void eng_cpu_vec_scalar(struct eng_cpu_vec *v)
{
    v->silu_mul = silu_mul_scalar;
    v->add = add_scalar;
    v->exp_sum = exp_sum_scalar;
    v->rmsnorm = rmsnorm_scalar;
    v->f32_to_f16 = f32_to_f16_scalar;
}

void eng_cpu_vec_init(enum eng_cpu_level level, struct eng_cpu_vec *v)
{
    eng_cpu_vec_scalar(v);
#if defined(__x86_64__)
    if (level >= ENG_CPU_AVX512)
        eng_cpu_vec_avx512(v);
    else if (level >= ENG_CPU_AVX2)
        eng_cpu_vec_avx2(v);
#else
    (void)level;
#endif
}
