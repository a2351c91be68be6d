/* tests/test_matmul.c: the CPU matmul module (engine/cpu/matmul*.c) against its oracle.
 * Every weight dtype x every kernel level this CPU runs (scalar, avx2, avx512) x 1..3
 * threads x shapes with odd N, R = 1..9, 17, 64, 100 and K from 1 (float) or 32
 * (quantized) to 4096, chunk boundaries included. Fresh random non-zero inputs per case,
 * output poisoned with NaN before every run.
 *   Q8_0, Q4_0: bit-exact equality with the canonical scalar product (mm_impl.h), and
 *     the canonical product itself within a derived bound of the float64 product of the
 *     dequantized weights and x.
 *   F32, F16: |out - ref| <= (K + 2) * 2^-24 * sum|x w|  (any summation order), ref the
 *     float64 product of the stored weights.
 *   BF16: the same plus 2^-8 * sum|x w| (x may be rounded to BF16, as vdpbf16ps does). */
#include "../engine/cpu/mm_impl.h"

#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

struct shape {
    int R, N, K;
};

/* quantized: K multiple of 32; 544 = 17 blocks crosses the 16-block panel chunk */
static const struct shape qcases[] = {
    {1, 1, 32},     {1, 33, 4096},  {1, 130, 768},  {2, 17, 288},   {2, 64, 64},
    {3, 5, 96},     {3, 47, 544},   {4, 32, 32},    {4, 100, 288},  {5, 31, 768},
    {5, 16, 4096},  {6, 63, 96},    {7, 17, 544},   {8, 48, 288},   {8, 1, 64},
    {9, 33, 768},   {9, 130, 32},   {17, 47, 288},  {17, 5, 4096},  {64, 64, 544},
    {64, 33, 768},  {100, 130, 288}, {100, 17, 4096}, {100, 1, 96},  {3, 1000, 64},
};
/* float: any K; 257, 513, 1000, 4096 cross the 256-element panel chunk */
static const struct shape fcases[] = {
    {1, 1, 1},      {1, 33, 4096},  {1, 130, 7},    {1, 17, 257},   {2, 17, 288},
    {2, 64, 16},    {3, 5, 33},     {3, 47, 100},   {4, 32, 768},   {4, 100, 1},
    {5, 31, 257},   {5, 16, 4096},  {6, 63, 7},     {7, 17, 288},   {8, 48, 100},
    {8, 1, 768},    {9, 33, 513},   {9, 130, 16},   {17, 47, 288},  {17, 5, 4096},
    {64, 64, 257},  {64, 33, 768},  {100, 130, 288}, {100, 17, 1000}, {100, 1, 33},
};

struct fixture {
    int n_levels;
    eng_cpu_mm_t *mm[3];      /* index: enum eng_cpu_level */
    eng_tp_t *tp[3];          /* 1, 2, 3 threads */
};

/* xorshift64*: reproducible, fresh per case */
static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1DULL;
}
static float rng_unit(uint64_t *s)   /* [0, 1) */
{
    return (float)(rng_next(s) >> 40) / 16777216.0f;
}
/* non-zero: sign * [0.01, 1) * scale */
static float rng_val(uint64_t *s, float scale)
{
    float v = (0.01f + 0.99f * rng_unit(s)) * scale;
    return (rng_next(s) & 1) ? -v : v;
}

static int setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof *fx);
    assert_non_null(fx);
    struct eng_cpu_features f;
    eng_cpu_detect(&f);
    fx->n_levels = (int)eng_cpu_level_pick(&f) + 1;
    for (int l = 0; l < fx->n_levels; l++)
        assert_int_equal(eng_cpu_mm_new((enum eng_cpu_level)l, 3, &fx->mm[l]), 0);
    for (int t = 0; t < 3; t++)
        assert_int_equal(eng_tp_new(t + 1, &fx->tp[t]), 0);
    print_message("matmul levels tested: %d (up to %s)\n", fx->n_levels,
                  eng_cpu_level_name((enum eng_cpu_level)(fx->n_levels - 1)));
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *fx = *state;
    for (int l = 0; l < 3; l++)
        eng_cpu_mm_free(fx->mm[l]);
    for (int t = 0; t < 3; t++)
        eng_tp_free(fx->tp[t]);
    free(fx);
    return 0;
}

/* A weight matrix (N, K) of dtype dt with row stride padded by `pad` bytes and its data
 * `mis` bytes past an aligned address (weights come straight from a file's mmap). */
struct wmat {
    eng_tensor_t t;
    uint8_t *mem;
};

static void make_weights(struct wmat *m, enum eng_dtype dt, int N, int K, uint64_t *s)
{
    const int64_t ne[2] = {K, N};
    assert_int_equal(eng_tensor_init(&m->t, dt, 2, ne), 0);
    const size_t rb = m->t.nb[1];
    const size_t pad = (rng_next(s) & 1) ? 2 * (1 + rng_next(s) % 8) : 0;
    const size_t mis = dt == ENG_DTYPE_F32 ? 4 : 2;
    m->t.nb[1] = rb + pad;
    m->t.nb[2] = m->t.nb[3] = m->t.nb[1] * (size_t)N;
    m->mem = malloc(m->t.nb[1] * (size_t)N + 64);
    assert_non_null(m->mem);
    memset(m->mem, 0xa5, m->t.nb[1] * (size_t)N + 64);   // padding: garbage, must be ignored
    m->t.data = m->mem + mis;
    float *row = malloc((size_t)K * sizeof(float));
    assert_non_null(row);
    for (int n = 0; n < N; n++) {
        uint8_t *dst = (uint8_t *)m->t.data + (size_t)n * m->t.nb[1];
        const float scale = ldexpf(1.0f, (int)(rng_next(s) % 7) - 3);
        const bool raw = (dt == ENG_DTYPE_Q8_0 || dt == ENG_DTYPE_Q4_0) && (n % 2);
        if (raw) {   // arbitrary stored blocks: every int8 / nibble value, scales of both signs
            const size_t bs = eng_dtype_block_bytes(dt);
            for (size_t i = 0; i < rb; i++)
                dst[i] = (uint8_t)rng_next(s);
            for (int b = 0; b < K / 32; b++) {
                uint16_t d = eng_fp32_to_fp16(rng_val(s, 0.05f));
                memcpy(dst + (size_t)b * bs, &d, 2);
            }
        } else {
            for (int k = 0; k < K; k++)
                row[k] = rng_val(s, scale);
            eng_row_from_f32(dt, row, dst, K);
        }
    }
    free(row);
}

static float *make_x(int R, int K, uint64_t *s)
{
    float *x = malloc((size_t)R * (size_t)K * sizeof(float));
    assert_non_null(x);
    for (int r = 0; r < R; r++) {
        const float scale = ldexpf(1.0f, (int)(rng_next(s) % 9) - 4);
        for (int k = 0; k < K; k++)
            x[(size_t)r * K + k] = rng_val(s, scale);
        if (r % 3 == 1)   // an outlier, as activations have
            x[(size_t)r * K + rng_next(s) % (uint64_t)K] = rng_val(s, 40.0f * scale);
    }
    return x;
}

/* sum_k |x w| in double, for the float tolerances */
static double abs_dot(const float *x, const float *w, int K)
{
    double s = 0.0;
    for (int k = 0; k < K; k++)
        s += fabs((double)x[k] * w[k]);
    return s;
}

static void poison(float *out, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = NAN;
}

static void run_case(struct fixture *fx, enum eng_dtype dt, const struct shape *c, int ci)
{
    const int R = c->R, N = c->N, K = c->K;
    uint64_t s = 0x9E3779B97F4A7C15ULL ^ ((uint64_t)dt << 40) ^ (uint64_t)(ci + 1) * 0x1000193;
    struct wmat wm;
    make_weights(&wm, dt, N, K, &s);
    float *x = make_x(R, K, &s);
    const size_t no = (size_t)R * (size_t)N;
    float *ref = malloc(no * sizeof(float)), *out = malloc(no * sizeof(float));
    assert_true(ref && out);
    poison(ref, no);
    assert_int_equal(eng_cpu_mm_ref(ref, x, R, &wm.t), 0);

    const bool quant = dt == ENG_DTYPE_Q8_0 || dt == ENG_DTYPE_Q4_0;
    double *tol = NULL;
    if (!quant) {   // per-output tolerance from sum |x w|
        tol = malloc(no * sizeof(double));
        float *wr = malloc((size_t)K * sizeof(float));
        assert_true(tol && wr);
        const double u = ldexp(1.0, -24);
        const double rel = (K + 2) * u + (dt == ENG_DTYPE_BF16 ? ldexp(1.0, -8) : 0.0);
        for (int n = 0; n < N; n++) {
            eng_row_to_f32(dt, (const uint8_t *)wm.t.data + (size_t)n * wm.t.nb[1], wr, K);
            for (int r = 0; r < R; r++)
                tol[(size_t)r * N + n] = rel * abs_dot(x + (size_t)r * K, wr, K) + 1e-30;
        }
        free(wr);
    }
    for (int l = 0; l < fx->n_levels; l++) {
        for (int t = 0; t < 3; t++) {
            poison(out, no);
            assert_int_equal(eng_cpu_mm_run(fx->mm[l], fx->tp[t], out, x, R, &wm.t), 0);
            for (size_t i = 0; i < no; i++) {
                bool ok = quant ? memcmp(&out[i], &ref[i], sizeof(float)) == 0
                                : fabs((double)out[i] - ref[i]) <= tol[i];
                if (!ok) {
                    fail_msg("%s R=%d N=%d K=%d level=%s threads=%d: out[%zu,%zu] = %.9g, ref %.9g"
                             " (tol %.3g)",
                             eng_dtype_name(dt), R, N, K, eng_cpu_level_name((enum eng_cpu_level)l),
                             t + 1, i / (size_t)N, i % (size_t)N, out[i], ref[i],
                             quant ? 0.0 : tol[i]);
                }
            }
        }
    }
    free(tol);
    free(ref);
    free(out);
    free(x);
    free(wm.mem);
}

static void run_all(void **state, enum eng_dtype dt)
{
    struct fixture *fx = *state;
    const bool quant = dt == ENG_DTYPE_Q8_0 || dt == ENG_DTYPE_Q4_0;
    const struct shape *cs = quant ? qcases : fcases;
    const int n = quant ? (int)(sizeof qcases / sizeof qcases[0])
                        : (int)(sizeof fcases / sizeof fcases[0]);
    for (int i = 0; i < n; i++)
        run_case(fx, dt, &cs[i], i);
}

static void test_q8_0(void **state) { run_all(state, ENG_DTYPE_Q8_0); }
static void test_q4_0(void **state) { run_all(state, ENG_DTYPE_Q4_0); }
static void test_f32(void **state) { run_all(state, ENG_DTYPE_F32); }
static void test_f16(void **state) { run_all(state, ENG_DTYPE_F16); }
static void test_bf16(void **state) { run_all(state, ENG_DTYPE_BF16); }

/* eng_cpu_mm_run_n (several weights against one x in one pass, columns shared out in work
 * items) gives every weight exactly what eng_cpu_mm_run gives it alone, at every level and
 * thread count (quantized: also the oracle), for decode and batch sizes; mixed dtypes or
 * K are refused. */
static void test_run_n(void **state)
{
    struct fixture *fx = *state;
    static const enum eng_dtype dts[] = {ENG_DTYPE_Q8_0, ENG_DTYPE_Q4_0, ENG_DTYPE_F32,
                                         ENG_DTYPE_F16, ENG_DTYPE_BF16};
    static const int rows[] = {1, 3, 9, 40};
    static const int ns[3] = {33, 100, 7};
    for (size_t di = 0; di < sizeof dts / sizeof dts[0]; di++) {
        for (size_t ri = 0; ri < sizeof rows / sizeof rows[0]; ri++) {
            const int R = rows[ri], K = 96 + 32 * (int)ri;
            uint64_t s = 4242 + di * 100 + ri;
            struct wmat wm[3];
            float *outs[3], *one = malloc((size_t)R * 100 * sizeof(float));
            float *ref = malloc((size_t)R * 100 * sizeof(float));
            const eng_tensor_t *ws[3];
            for (int i = 0; i < 3; i++) {
                make_weights(&wm[i], dts[di], ns[i], K, &s);
                ws[i] = &wm[i].t;
                outs[i] = malloc((size_t)R * ns[i] * sizeof(float));
                assert_non_null(outs[i]);
            }
            assert_true(one && ref);
            float *x = make_x(R, K, &s);
            const bool quant = dts[di] == ENG_DTYPE_Q8_0 || dts[di] == ENG_DTYPE_Q4_0;
            for (int l = 0; l < fx->n_levels; l++) {
                for (int t = 0; t < 3; t++) {
                    for (int i = 0; i < 3; i++)
                        poison(outs[i], (size_t)R * ns[i]);
                    assert_int_equal(eng_cpu_mm_run_n(fx->mm[l], fx->tp[t], 3, outs, x, R, ws), 0);
                    for (int i = 0; i < 3; i++) {
                        const size_t no = (size_t)R * ns[i];
                        assert_int_equal(eng_cpu_mm_run(fx->mm[l], fx->tp[t], one, x, R, ws[i]), 0);
                        if (memcmp(one, outs[i], no * sizeof(float)) != 0)
                            fail_msg("run_n %s R=%d weight %d level %s threads %d differs from run",
                                     eng_dtype_name(dts[di]), R, i,
                                     eng_cpu_level_name((enum eng_cpu_level)l), t + 1);
                        if (quant) {
                            assert_int_equal(eng_cpu_mm_ref(ref, x, R, ws[i]), 0);
                            assert_memory_equal(ref, outs[i], no * sizeof(float));
                        }
                    }
                }
            }
            // one weight of another K, or another dtype: refused
            struct wmat other;
            make_weights(&other, dts[di] == ENG_DTYPE_F32 ? ENG_DTYPE_F16 : ENG_DTYPE_F32, 5, K, &s);
            const eng_tensor_t *mixed[2] = {ws[0], &other.t};
            assert_int_equal(eng_cpu_mm_run_n(fx->mm[0], fx->tp[0], 2, outs, x, R, mixed),
                             ERR_INVAL);
            free(other.mem);
            make_weights(&other, dts[di], 5, K + 32, &s);
            mixed[1] = &other.t;
            assert_int_equal(eng_cpu_mm_run_n(fx->mm[0], fx->tp[0], 2, outs, x, R, mixed),
                             ERR_INVAL);
            free(other.mem);
            for (int i = 0; i < 3; i++) {
                free(outs[i]);
                free(wm[i].mem);
            }
            free(one);
            free(ref);
            free(x);
        }
    }
}

/* The canonical quantized product is the exact product of the dequantized weights and x
 * up to x's quantization error and F32 rounding: per element |x - q dx| <= d/2 (1 + 2^-20)
 * + 127 |d - dx| (d = amax/127 before its fp16 rounding to dx); then (nb + 4) roundings. */
static void test_canonical_accuracy(void **state)
{
    (void)state;
    static const enum eng_dtype dts[] = {ENG_DTYPE_Q8_0, ENG_DTYPE_Q4_0};
    for (int di = 0; di < 2; di++) {
        for (int ci = 0; ci < 6; ci++) {
            const int R = 3, N = 19, K = 32 * (1 + ci * 7);
            uint64_t s = 77 + (uint64_t)ci * 1000 + (uint64_t)di;
            struct wmat wm;
            make_weights(&wm, dts[di], N, K, &s);
            float *x = make_x(R, K, &s);
            float *ref = malloc((size_t)R * N * sizeof(float));
            float *wr = malloc((size_t)K * sizeof(float));
            int8_t *q = malloc((size_t)K);
            float *dx = malloc((size_t)K / 32 * sizeof(float));
            int32_t *xs = malloc((size_t)K / 32 * sizeof(int32_t));
            assert_true(ref && wr && q && dx && xs);
            assert_int_equal(eng_cpu_mm_ref(ref, x, R, &wm.t), 0);
            for (int r = 0; r < R; r++) {
                const float *xr = x + (size_t)r * K;
                eng_cpu_mm_quantize_row(xr, K, q, dx, xs);
                for (int n = 0; n < N; n++) {
                    const uint8_t *wrow = (const uint8_t *)wm.t.data + (size_t)n * wm.t.nb[1];
                    eng_row_to_f32(dts[di], wrow, wr, K);
                    double exact = 0.0, bound = 0.0, mag = 0.0;
                    for (int b = 0; b < K / 32; b++) {
                        float amax = 0.0f;
                        double wabs = 0.0;
                        for (int j = 0; j < 32; j++) {
                            amax = fmaxf(amax, fabsf(xr[b * 32 + j]));
                            wabs += fabs(wr[b * 32 + j]);
                            exact += (double)xr[b * 32 + j] * wr[b * 32 + j];
                            mag += fabs((double)wr[b * 32 + j]) * (fabs(xr[b * 32 + j]) + dx[b]);
                        }
                        const double d = amax / 127.0f;
                        bound += (0.5 * d * (1.0 + ldexp(1.0, -20)) + 127.0 * fabs(d - dx[b])) *
                                 wabs;
                    }
                    bound += (K / 32 + 4) * ldexp(1.0, -24) * mag;
                    const double got = ref[(size_t)r * N + n];
                    if (!(fabs(got - exact) <= bound))
                        fail_msg("%s K=%d r=%d n=%d: canonical %.9g, exact %.9g, bound %.3g",
                                 eng_dtype_name(dts[di]), K, r, n, got, exact, bound);
                }
            }
            free(ref);
            free(wr);
            free(q);
            free(dx);
            free(xs);
            free(x);
            free(wm.mem);
        }
    }
}

/* The quantizer's edge cases, which every level must reproduce: exact halves round away
 * from zero (roundf, not the round-to-even of cvtps2dq), an all-zero block quantizes to
 * zeros with scale 0. */
static void test_quantize_edges(void **state)
{
    struct fixture *fx = *state;
    float x[64];
    for (int j = 0; j < 32; j++)   // amax 127: id = 1, so x * id = x exactly
        x[j] = (j % 2 ? -1.0f : 1.0f) * (j == 0 ? 127.0f : (float)(j % 9) + 0.5f);
    for (int j = 32; j < 64; j++)
        x[j] = 0.0f;
    int8_t q[64];
    float dx[2];
    int32_t xs[2];
    eng_cpu_mm_quantize_row(x, 64, q, dx, xs);
    assert_int_equal(q[0], 127);
    assert_int_equal(q[1], -2);    // -1.5 -> -2
    assert_int_equal(q[2], 3);     // 2.5 -> 3
    assert_true(dx[0] == 1.0f);
    for (int j = 32; j < 64; j++)
        assert_int_equal(q[j], 0);
    assert_true(dx[1] == 0.0f);
    assert_int_equal(xs[1], 0);

    // the same edges through every level: one Q8_0 weight row of ones picks out sum(q)*dx
    uint8_t wrow[2 * sizeof(eng_block_q8_0)];
    for (int b = 0; b < 2; b++) {
        uint16_t one = eng_fp32_to_fp16(1.0f);
        memcpy(wrow + b * 34, &one, 2);
        memset(wrow + b * 34 + 2, 1, 32);
    }
    const int64_t ne[2] = {64, 1};
    eng_tensor_t w;
    assert_int_equal(eng_tensor_init(&w, ENG_DTYPE_Q8_0, 2, ne), 0);
    w.data = wrow;
    float ref, out;
    assert_int_equal(eng_cpu_mm_ref(&ref, x, 1, &w), 0);
    assert_true(ref == (float)xs[0]);
    for (int l = 0; l < fx->n_levels; l++) {
        out = NAN;
        assert_int_equal(eng_cpu_mm_run(fx->mm[l], fx->tp[0], &out, x, 1, &w), 0);
        assert_memory_equal(&out, &ref, sizeof out);
    }
}

/* Bad shapes are refused before any work; R = 0 or N = 0 writes nothing. */
static void test_bad_args(void **state)
{
    struct fixture *fx = *state;
    float x[64] = {1.0f}, out[4] = {0};
    uint8_t data[4 * 34] = {0};
    eng_tensor_t w;
    const int64_t ne[2] = {32, 2};
    assert_int_equal(eng_tensor_init(&w, ENG_DTYPE_Q8_0, 2, ne), 0);
    w.data = data;
    eng_cpu_mm_t *mm = fx->mm[fx->n_levels - 1];
    eng_tp_t *tp = fx->tp[1];
    assert_int_equal(eng_cpu_mm_run(mm, tp, out, x, 1, &w), 0);

    eng_tensor_t bad = w;
    bad.dtype = ENG_DTYPE_Q4_1;               // not a compute dtype
    assert_int_equal(eng_cpu_mm_run(mm, tp, out, x, 1, &bad), ERR_INVAL);
    bad = w;
    bad.ne[0] = 48;                           // not a multiple of the block
    assert_int_equal(eng_cpu_mm_run(mm, tp, out, x, 1, &bad), ERR_INVAL);
    bad = w;
    bad.nb[1] = 33;                           // rows would overlap
    assert_int_equal(eng_cpu_mm_run(mm, tp, out, x, 1, &bad), ERR_INVAL);
    bad = w;
    bad.ne[0] = 0;
    assert_int_equal(eng_cpu_mm_run(mm, tp, out, x, 1, &bad), ERR_INVAL);
    assert_int_equal(eng_cpu_mm_run(mm, tp, out, x, -1, &w), ERR_INVAL);
    assert_int_equal(eng_cpu_mm_run(mm, tp, NULL, x, 1, &w), ERR_INVAL);
    bad = w;
    bad.data = NULL;
    assert_int_equal(eng_cpu_mm_run(mm, tp, out, x, 1, &bad), ERR_INVAL);
    bad = w;
    bad.ne[1] = ((int64_t)1 << 40) + 1;
    assert_int_equal(eng_cpu_mm_run(mm, tp, out, x, 1, &bad), ERR_INVAL);
    assert_int_equal(eng_cpu_mm_run(mm, tp, out, x, INT64_MAX / 16, &w), ERR_INVAL);

    out[0] = 5.0f;
    assert_int_equal(eng_cpu_mm_run(mm, tp, out, x, 0, &w), 0);
    assert_true(out[0] == 5.0f);
    bad = w;
    bad.ne[1] = 0;
    assert_int_equal(eng_cpu_mm_run(mm, tp, out, x, 1, &bad), 0);
    assert_true(out[0] == 5.0f);

    eng_cpu_mm_t *m2 = NULL;
    assert_int_equal(eng_cpu_mm_new((enum eng_cpu_level)7, 1, &m2), ERR_UNSUPPORTED);
    assert_null(m2);
    eng_cpu_mm_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_quantize_edges),
        cmocka_unit_test(test_canonical_accuracy),
        cmocka_unit_test(test_bad_args),
        cmocka_unit_test(test_q8_0),
        cmocka_unit_test(test_q4_0),
        cmocka_unit_test(test_f32),
        cmocka_unit_test(test_f16),
        cmocka_unit_test(test_bf16),
        cmocka_unit_test(test_run_n),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
