/* engine/cpu/vec_tmpl.h: the element-wise kernels (struct eng_cpu_kernels, kernels.h),
 * written once against the width-generic vf_* of the level's simd_<isa>.h and compiled
 * into level_avx2.c and level_avx512.c. Not a header to include elsewhere. Each op runs
 * full vectors, then a masked tail (lanes past n neither read nor written); the scalar
 * functions of level_scalar.c are the reference (tests/test_vec.c). */
#ifndef VF_W
#error "include the level's simd_<isa>.h before vec_tmpl.h"
#endif

#include <math.h>

static void vec_silu_mul(float *out, const float *g, const float *u, int64_t n)
{
    const vf_t one = vf_set1(1.0f);
    int64_t i = 0;
    for (; i + VF_W <= n; i += VF_W) {
        const vf_t x = vf_load(g + i), y = vf_load(u + i);
        const vf_t e = vf_exp(vf_sub(vf_zero(), x));
        vf_store(out + i, vf_div(vf_mul(x, y), vf_add(one, e)));
    }
    if (i < n) {
        const vf_t x = vf_load_n(g + i, n - i), y = vf_load_n(u + i, n - i);
        const vf_t e = vf_exp(vf_sub(vf_zero(), x));
        vf_store_n(out + i, vf_div(vf_mul(x, y), vf_add(one, e)), n - i);
    }
}

static void vec_add(float *out, const float *a, const float *b, int64_t n)
{
    int64_t i = 0;
    for (; i + VF_W <= n; i += VF_W)
        vf_store(out + i, vf_add(vf_load(a + i), vf_load(b + i)));
    if (i < n)
        vf_store_n(out + i, vf_add(vf_load_n(a + i, n - i), vf_load_n(b + i, n - i)), n - i);
}

static float vec_exp_sum(float *x, float m, int64_t n)
{
    const vf_t vm = vf_set1(m);
    vf_t acc = vf_zero();
    int64_t i = 0;
    for (; i + VF_W <= n; i += VF_W) {
        const vf_t e = vf_exp(vf_sub(vf_load(x + i), vm));
        vf_store(x + i, e);
        acc = vf_add(acc, e);
    }
    if (i < n) {
        const vf_t e = vf_exp(vf_sub(vf_load_n(x + i, n - i), vm));
        vf_store_n(x + i, e, n - i);
        acc = vf_add(acc, vf_keep_n(e, n - i));
    }
    return vf_hsum(acc);
}

static void vec_rmsnorm(float *out, const float *x, const float *w, float eps, int64_t n)
{
    // sum of squares in double lanes: matches a float64 reference to ~1e-7
    vd_t a0 = vd_zero(), a1 = vd_zero();
    int64_t i = 0;
    for (; i + VF_W <= n; i += VF_W)
        vd_sumsq(vf_load(x + i), &a0, &a1);
    double ss = vd_hsum(a0, a1);
    for (; i < n; i++)
        ss += (double)x[i] * x[i];
    const float sc = (float)(1.0 / sqrt(ss / (double)n + eps));
    const vf_t s = vf_set1(sc);
    for (i = 0; i + VF_W <= n; i += VF_W)
        vf_store(out + i, vf_mul(vf_mul(vf_load(x + i), s), vf_load(w + i)));
    for (; i < n; i++)
        out[i] = x[i] * sc * w[i];
}

static void vec_f32_to_f16(uint16_t *out, const float *x, int64_t n)
{
    int64_t i = 0;
    for (; i + VF_W <= n; i += VF_W)
        vf_store_f16(out + i, vf_load(x + i));
    for (; i < n; i++)
        out[i] = eng_fp32_to_fp16(x[i]);
}
