/* tests/test_vec.c: the CPU backend's SIMD element-wise kernels against the scalar ones,
 * for every level this CPU can run, on random data with ragged lengths. */
#include "../engine/cpu/kernels.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static float frand(uint64_t *s, float lo, float hi)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return lo + (hi - lo) * (float)((*s >> 40) & 0xffffff) / 16777216.0f;
}

static void check_level(enum eng_cpu_level lvl)
{
    const struct eng_cpu_kernels ref = *eng_cpu_kernels(ENG_CPU_SCALAR);
    const struct eng_cpu_kernels v = *eng_cpu_kernels(lvl);
    uint64_t seed = 12345 + (uint64_t)lvl;
    const int64_t lens[] = {1, 7, 15, 16, 17, 31, 64, 100, 1000, 4099};
    for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
        const int64_t n = lens[li];
        float *g = malloc(sizeof(float) * (size_t)n), *u = malloc(sizeof(float) * (size_t)n);
        float *a = malloc(sizeof(float) * (size_t)n), *b = malloc(sizeof(float) * (size_t)n);
        for (int64_t i = 0; i < n; i++) {
            g[i] = frand(&seed, -30.0f, 30.0f);
            u[i] = frand(&seed, -2.0f, 2.0f);
        }
        ref.silu_mul(a, g, u, n);
        memset(b, 0xff, sizeof(float) * n);   // NaN poison
        v.silu_mul(b, g, u, n);
        for (int64_t i = 0; i < n; i++)
            if (!(fabsf(a[i] - b[i]) <= 2e-6f * fabsf(a[i]) + 1e-30f))
                fail_msg("silu_mul level %d n=%lld i=%lld: %g vs %g", lvl, (long long)n,
                         (long long)i, a[i], b[i]);
        ref.add(a, g, u, n);
        v.add(b, g, u, n);
        assert_memory_equal(a, b, sizeof(float) * n);
        memcpy(a, g, sizeof(float) * n);
        memcpy(b, g, sizeof(float) * n);
        float sa = ref.exp_sum(a, 30.0f, n), sb = v.exp_sum(b, 30.0f, n);
        assert_true(fabsf(sa - sb) <= 1e-5f * sa);
        for (int64_t i = 0; i < n; i++)
            if (!(fabsf(a[i] - b[i]) <= 2e-6f * a[i] + 1e-38f))
                fail_msg("exp level %d i=%lld: %g vs %g", lvl, (long long)i, a[i], b[i]);
        ref.rmsnorm(a, g, u, 1e-5f, n);
        v.rmsnorm(b, g, u, 1e-5f, n);
        for (int64_t i = 0; i < n; i++)
            assert_true(fabsf(a[i] - b[i]) <= 1e-6f * fabsf(a[i]) + 1e-30f);
        uint16_t *ha = malloc(sizeof(uint16_t) * (size_t)n), *hb = malloc(sizeof(uint16_t) * (size_t)n);
        for (int64_t i = 0; i < n; i++)   // normal, subnormal-bound, overflowing and tiny values
            g[i] = frand(&seed, -1.0f, 1.0f) * powf(2.0f, (float)((int)frand(&seed, -30, 18)));
        ref.f32_to_f16(ha, g, n);
        v.f32_to_f16(hb, g, n);
        assert_memory_equal(ha, hb, 2 * (size_t)n);
        free(ha), free(hb);
        free(g), free(u), free(a), free(b);
    }
}

static void test_levels(void **state)
{
    (void)state;
    struct eng_cpu_features f;
    eng_cpu_detect(&f);
    enum eng_cpu_level top = eng_cpu_level_pick(&f);
    for (int l = ENG_CPU_SCALAR; l <= (int)top; l++)
        check_level((enum eng_cpu_level)l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_levels)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
