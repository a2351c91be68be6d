/* tests/test_train_ops.c: every training op of the CPU backend (engine/train/train_ops.h)
 * against a plain double-precision reference written here, at every kernel level the CPU
 * has (ORTHOD_CPU_LEVEL), with 1 and 3 threads (results must be bit-identical across
 * thread counts), odd shapes (tails of every tile), and every weight dtype for matmul_dx.
 * Also: the attention backward against finite differences of the forward, and the
 * checked wrappers' rejection of bad arguments. */
#include "check.h"
#include "../engine/train/train_ops.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


static uint64_t rng = 88172645463325252ull;
static float frand(void)   /* uniform in [-1, 1) */
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((rng >> 40) * (1.0 / 8388608.0)) - 1.0f;
}

static float *rnd(int64_t n, float s)
{
    float *p = malloc((size_t)n * sizeof(float) + 64);
    for (int64_t i = 0; i < n; i++)
        p[i] = frand() * s;
    return p;
}

/* max |a - b| / max |b| over n */
static double relerr(const float *a, const double *b, int64_t n)
{
    double e = 0.0, m = 1e-30;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= e))
            e = d;   // NaN propagates
        if (fabs(b[i]) > m)
            m = fabs(b[i]);
    }
    return e / m;
}

static eng_backend_t *backend(int threads)
{
    struct eng_cpu_params p = {.n_threads = threads};
    eng_backend_t *be;
    if (eng_cpu_backend_new(&p, &be) < 0) {
        fprintf(stderr, "cannot create the CPU backend\n");
        exit(1);
    }
    return be;
}

/* A weight tensor of dtype dt holding (the rounding of) w (N, K). */
static eng_tensor_t make_weight(enum eng_dtype dt, const float *w, int64_t N, int64_t K,
                                void **mem, float *deq)
{
    eng_tensor_t t;
    int64_t ne[2] = {K, N};
    eng_tensor_init(&t, dt, 2, ne);
    *mem = malloc(eng_tensor_nbytes(&t) + 64);
    for (int64_t n = 0; n < N; n++) {
        eng_row_from_f32(dt, w + n * K, (char *)*mem + (size_t)n * t.nb[1], K);
        eng_row_to_f32(dt, (char *)*mem + (size_t)n * t.nb[1], deq + n * K, K);
    }
    t.data = *mem;
    return t;
}

static void test_gemm(eng_backend_t *be1, eng_backend_t *be3)
{
    const enum eng_dtype dts[] = {ENG_DTYPE_F32, ENG_DTYPE_F16, ENG_DTYPE_BF16, ENG_DTYPE_Q8_0,
                                  ENG_DTYPE_Q4_0};
    const int64_t shapes[][3] = {{1, 32, 1}, {7, 64, 33}, {37, 96, 300}, {130, 544, 70},
                                 {9, 1056, 17}};
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        const int64_t R = shapes[si][0], K = shapes[si][1], N = shapes[si][2];
        for (size_t di = 0; di < sizeof dts / sizeof dts[0]; di++) {
            float *w = rnd(N * K, 1.0f), *dy = rnd(R * N, 1.0f), *deq = malloc((size_t)(N * K) * 4);
            void *mem;
            eng_tensor_t wt = make_weight(dts[di], w, N, K, &mem, deq);
            double *ref = calloc((size_t)(R * K), sizeof(double));
            float *dx0 = rnd(R * K, 1.0f);
            for (int64_t r = 0; r < R; r++)
                for (int64_t k = 0; k < K; k++) {
                    double s = 0;
                    for (int64_t n = 0; n < N; n++)
                        s += (double)dy[r * N + n] * deq[n * K + k];
                    ref[r * K + k] = dx0[r * K + k] + 0.5 * s;
                }
            float *a = malloc((size_t)(R * K) * 4), *b = malloc((size_t)(R * K) * 4);
            memcpy(a, dx0, (size_t)(R * K) * 4);
            memcpy(b, dx0, (size_t)(R * K) * 4);
            CHECK(eng_top_matmul_dx(be1, a, dy, R, &wt, 0.5f, true) == 0, "matmul_dx rc");
            CHECK(eng_top_matmul_dx(be3, b, dy, R, &wt, 0.5f, true) == 0, "matmul_dx rc");
            double e = relerr(a, ref, R * K);
            CHECK(e < 2e-6, "matmul_dx %s R=%lld K=%lld N=%lld: rel err %.3g",
                  eng_dtype_name(dts[di]), (long long)R, (long long)K, (long long)N, e);
            CHECK(!memcmp(a, b, (size_t)(R * K) * 4), "matmul_dx differs with 1 and 3 threads");
            // overwrite mode
            CHECK(eng_top_matmul_dx(be3, b, dy, R, &wt, 0.5f, false) == 0, "matmul_dx rc");
            for (int64_t i = 0; i < R * K; i++)
                ref[i] -= dx0[i];
            e = relerr(b, ref, R * K);
            CHECK(e < 2e-6, "matmul_dx (overwrite) rel err %.3g", e);
            free(w), free(dy), free(deq), free(mem), free(ref), free(dx0), free(a), free(b);
        }
        // matmul_dw: dw (N, K) += alpha dy^T x
        float *dy = rnd(R * N, 1.0f), *x = rnd(R * K, 1.0f), *dw0 = rnd(N * K, 1.0f);
        double *ref = malloc((size_t)(N * K) * sizeof(double));
        for (int64_t n = 0; n < N; n++)
            for (int64_t k = 0; k < K; k++) {
                double s = 0;
                for (int64_t r = 0; r < R; r++)
                    s += (double)dy[r * N + n] * x[r * K + k];
                ref[n * K + k] = dw0[n * K + k] + 2.0 * s;
            }
        float *a = malloc((size_t)(N * K) * 4), *b = malloc((size_t)(N * K) * 4);
        memcpy(a, dw0, (size_t)(N * K) * 4);
        memcpy(b, dw0, (size_t)(N * K) * 4);
        CHECK(eng_top_matmul_dw(be1, a, dy, x, R, N, K, 2.0f) == 0, "matmul_dw rc");
        CHECK(eng_top_matmul_dw(be3, b, dy, x, R, N, K, 2.0f) == 0, "matmul_dw rc");
        double e = relerr(a, ref, N * K);
        CHECK(e < 2e-6, "matmul_dw R=%lld N=%lld K=%lld rel err %.3g", (long long)R,
              (long long)N, (long long)K, e);
        CHECK(!memcmp(a, b, (size_t)(N * K) * 4), "matmul_dw differs with 1 and 3 threads");
        free(dy), free(x), free(dw0), free(ref), free(a), free(b);
    }
}

/* Reference attention forward in double: out, lse. */
static void attn_ref(double *out, double *lse, const float *q, const float *k, const float *v,
                     const int32_t *start, int32_t ns, int32_t NH, int32_t NKV, int32_t HS,
                     float scale)
{
    const int64_t qs = (int64_t)NH * HS, ks = (int64_t)NKV * HS;
    for (int32_t s = 0; s < ns; s++)
        for (int32_t h = 0; h < NH; h++) {
            const int32_t kh = h / (NH / NKV);
            for (int64_t i = start[s]; i < start[s + 1]; i++) {
                double m = -1e300, sum = 0;
                double sc[512];
                for (int64_t j = start[s]; j <= i; j++) {
                    double d = 0;
                    for (int32_t e = 0; e < HS; e++)
                        d += (double)q[i * qs + h * HS + e] * k[j * ks + kh * HS + e];
                    sc[j - start[s]] = d * scale;
                    if (d * scale > m)
                        m = d * scale;
                }
                for (int64_t j = start[s]; j <= i; j++)
                    sum += exp(sc[j - start[s]] - m);
                for (int32_t e = 0; e < HS; e++) {
                    double o = 0;
                    for (int64_t j = start[s]; j <= i; j++)
                        o += exp(sc[j - start[s]] - m) / sum * v[j * ks + kh * HS + e];
                    out[i * qs + h * HS + e] = o;
                }
                lse[i * NH + h] = m + log(sum);
            }
        }
}

static void test_attention(eng_backend_t *be1, eng_backend_t *be3)
{
    const int32_t NH = 4, NKV = 2, HS = 24;
    const int32_t start[] = {0, 5, 6, 40, 77};
    const struct eng_train_seqs s = {.n_seqs = 4, .start = start};
    const int64_t T = 77, qs = NH * HS, ks = NKV * HS;
    const float scale = 1.0f / sqrtf((float)HS);
    float *q = rnd(T * qs, 1.0f), *k = rnd(T * ks, 1.0f), *v = rnd(T * ks, 1.0f);
    float *out = malloc(T * qs * 4), *lse = malloc(T * NH * 4), *out3 = malloc(T * qs * 4),
          *lse3 = malloc(T * NH * 4);
    double *ro = malloc(T * qs * 8), *rl = malloc(T * NH * 8);
    attn_ref(ro, rl, q, k, v, start, 4, NH, NKV, HS, scale);
    CHECK(eng_top_attn_fwd(be1, out, lse, q, k, v, T, &s, NH, NKV, HS, scale) == 0, "attn_fwd");
    CHECK(eng_top_attn_fwd(be3, out3, lse3, q, k, v, T, &s, NH, NKV, HS, scale) == 0, "attn_fwd");
    CHECK(relerr(out, ro, T * qs) < 2e-6, "attn_fwd out rel err %.3g", relerr(out, ro, T * qs));
    CHECK(relerr(lse, rl, T * NH) < 2e-6, "attn_fwd lse rel err %.3g", relerr(lse, rl, T * NH));
    CHECK(!memcmp(out, out3, T * qs * 4) && !memcmp(lse, lse3, T * NH * 4),
          "attn_fwd differs with 1 and 3 threads");
    // backward against central differences of L = sum(out * G) in double
    float *G = rnd(T * qs, 1.0f);
    float *dq = malloc(T * qs * 4), *dk = malloc(T * ks * 4), *dv = malloc(T * ks * 4);
    float *dq3 = malloc(T * qs * 4), *dk3 = malloc(T * ks * 4), *dv3 = malloc(T * ks * 4);
    CHECK(eng_top_attn_bwd(be1, dq, dk, dv, G, out, lse, q, k, v, T, &s, NH, NKV, HS, scale) == 0,
          "attn_bwd");
    CHECK(eng_top_attn_bwd(be3, dq3, dk3, dv3, G, out, lse, q, k, v, T, &s, NH, NKV, HS, scale) ==
              0, "attn_bwd");
    CHECK(!memcmp(dq, dq3, T * qs * 4) && !memcmp(dk, dk3, T * ks * 4) &&
              !memcmp(dv, dv3, T * ks * 4), "attn_bwd differs with 1 and 3 threads");
    struct {
        float *x, *g;
        int64_t n;
        const char *name;
    } ins[] = {{q, dq, T * qs, "dq"}, {k, dk, T * ks, "dk"}, {v, dv, T * ks, "dv"}};
    double *o2 = malloc(T * qs * 8), *l2 = malloc(T * NH * 8);
    for (int w = 0; w < 3; w++) {
        double maxerr = 0, maxg = 0;
        for (int64_t t = 0; t < 40; t++) {
            int64_t i = (int64_t)((rng = rng * 6364136223846793005ull + 1) >> 33) % ins[w].n;
            const float x0 = ins[w].x[i];
            const float h = 1e-2f;
            double lp = 0, lm = 0;
            ins[w].x[i] = x0 + h;
            attn_ref(o2, l2, q, k, v, start, 4, NH, NKV, HS, scale);
            for (int64_t e = 0; e < T * qs; e++)
                lp += o2[e] * G[e];
            ins[w].x[i] = x0 - h;
            attn_ref(o2, l2, q, k, v, start, 4, NH, NKV, HS, scale);
            for (int64_t e = 0; e < T * qs; e++)
                lm += o2[e] * G[e];
            ins[w].x[i] = x0;
            const double fd = (lp - lm) / (2.0 * (double)h);
            if (fabs(fd - ins[w].g[i]) > maxerr)
                maxerr = fabs(fd - ins[w].g[i]);
            if (fabs(fd) > maxg)
                maxg = fabs(fd);
        }
        CHECK(maxerr <= 1e-3 * (maxg + 1e-3), "attn_bwd %s vs finite differences: err %.3g of %.3g",
              ins[w].name, maxerr, maxg);
    }
    free(o2), free(l2), free(q), free(k), free(v), free(out), free(lse), free(out3), free(lse3);
    free(ro), free(rl), free(G), free(dq), free(dk), free(dv), free(dq3), free(dk3), free(dv3);
}

static void test_rows(eng_backend_t *be1, eng_backend_t *be3)
{
    const int64_t R = 13, C = 100;
    float *x = rnd(R * C, 2.0f), *w = rnd(C, 1.0f), *dy = rnd(R * C, 1.0f);
    float *out = malloc(R * C * 4), *rstd = malloc(R * 4);
    double *ro = malloc(R * C * 8), *rs = malloc(R * 8);
    const float eps = 1e-5f;
    for (int64_t r = 0; r < R; r++) {
        double ss = 0;
        for (int64_t c = 0; c < C; c++)
            ss += (double)x[r * C + c] * x[r * C + c];
        rs[r] = 1.0 / sqrt(ss / C + eps);
        for (int64_t c = 0; c < C; c++)
            ro[r * C + c] = x[r * C + c] * rs[r] * w[c];
    }
    CHECK(eng_top_rmsnorm_fwd(be3, out, rstd, x, w, R, C, eps) == 0, "rmsnorm_fwd");
    CHECK(relerr(out, ro, R * C) < 1e-6, "rmsnorm_fwd rel err");
    CHECK(relerr(rstd, rs, R) < 1e-6, "rmsnorm rstd rel err");
    // backward: dx = rstd (g - xhat mean(g xhat)), g = dy w; dw = sum dy xhat
    double *rdx = malloc(R * C * 8), *rdw = calloc(C, 8);
    for (int64_t r = 0; r < R; r++) {
        double dot = 0;
        for (int64_t c = 0; c < C; c++)
            dot += (double)dy[r * C + c] * w[c] * x[r * C + c] * rs[r];
        for (int64_t c = 0; c < C; c++) {
            double xh = x[r * C + c] * rs[r];
            rdx[r * C + c] = rs[r] * ((double)dy[r * C + c] * w[c] - xh * dot / C);
            rdw[c] += dy[r * C + c] * xh;
        }
    }
    float *dx = calloc(R * C, 4), *dw = calloc(C, 4), *dx3 = calloc(R * C, 4), *dw3 = calloc(C, 4);
    CHECK(eng_top_rmsnorm_bwd(be1, dx, dw, dy, x, rstd, w, R, C, false) == 0, "rmsnorm_bwd");
    CHECK(eng_top_rmsnorm_bwd(be3, dx3, dw3, dy, x, rstd, w, R, C, false) == 0, "rmsnorm_bwd");
    CHECK(relerr(dx, rdx, R * C) < 2e-6, "rmsnorm_bwd dx rel err %.3g", relerr(dx, rdx, R * C));
    CHECK(relerr(dw, rdw, C) < 2e-6, "rmsnorm_bwd dw rel err %.3g", relerr(dw, rdw, C));
    CHECK(!memcmp(dx, dx3, R * C * 4) && !memcmp(dw, dw3, C * 4), "rmsnorm_bwd thread counts");

    // swiglu backward
    const int64_t n = 5000;
    float *g = rnd(n, 6.0f), *u = rnd(n, 1.0f), *dh = rnd(n, 1.0f);
    float *dg = malloc(n * 4), *du = malloc(n * 4);
    double *rdg = malloc(n * 8), *rdu = malloc(n * 8);
    for (int64_t i = 0; i < n; i++) {
        double sg = 1.0 / (1.0 + exp(-(double)g[i]));
        rdu[i] = dh[i] * g[i] * sg;
        rdg[i] = dh[i] * u[i] * (sg + g[i] * sg * (1 - sg));
    }
    CHECK(eng_top_swiglu_bwd(be3, dg, du, dh, g, u, n) == 0, "swiglu_bwd");
    CHECK(relerr(dg, rdg, n) < 2e-6, "swiglu dg rel err %.3g", relerr(dg, rdg, n));
    CHECK(relerr(du, rdu, n) < 2e-6, "swiglu du rel err %.3g", relerr(du, rdu, n));

    // cross-entropy
    const int64_t V = 1001, RR = 5;
    float *z = rnd(RR * V, 8.0f);
    int32_t tg[5] = {0, 1000, 7, 500, 3};
    double *rz = malloc(RR * V * 8), rl = 0, loss;
    for (int64_t r = 0; r < RR; r++) {
        double m = -1e300, s = 0;
        for (int64_t i = 0; i < V; i++)
            m = z[r * V + i] > m ? z[r * V + i] : m;
        for (int64_t i = 0; i < V; i++)
            s += exp(z[r * V + i] - m);
        rl += m + log(s) - z[r * V + tg[r]];
        for (int64_t i = 0; i < V; i++)
            rz[r * V + i] = 0.25 * (exp(z[r * V + i] - m) / s - (i == tg[r]));
    }
    CHECK(eng_top_xent(be3, z, tg, RR, V, 0.25f, &loss) == 0, "xent");
    CHECK(fabs(loss - rl) < 1e-5 * fabs(rl), "xent loss %.9g vs %.9g", loss, rl);
    CHECK(relerr(z, rz, RR * V) < 2e-6, "xent grad rel err %.3g", relerr(z, rz, RR * V));

    // adamw: two steps against the formula in double
    const int64_t na = 10007;
    float *pw = rnd(na, 1.0f), *pg = rnd(na, 1.0f), *pm = calloc(na, 4), *pv = calloc(na, 4);
    double *dw_ = malloc(na * 8), *dm = calloc(na, 8), *dv = calloc(na, 8);
    for (int64_t i = 0; i < na; i++)
        dw_[i] = pw[i];
    for (int t = 1; t <= 2; t++) {
        struct eng_adamw_params p = {.lr = 1e-2f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f,
                                     .weight_decay = 0.1f, .grad_scale = 0.5f, .t = t};
        CHECK(eng_top_adamw(be3, pw, pg, pm, pv, na, &p) == 0, "adamw");
        for (int64_t i = 0; i < na; i++) {
            double g0 = pg[i] * 0.5;
            dw_[i] *= 1 - 1e-2 * 0.1;
            dm[i] = 0.9 * dm[i] + 0.1 * g0;
            dv[i] = 0.95 * dv[i] + 0.05 * g0 * g0;
            double bc1 = 1 - pow(0.9, t), bc2 = 1 - pow(0.95, t);
            dw_[i] -= 1e-2 / bc1 * dm[i] / (sqrt(dv[i]) / sqrt(bc2) + 1e-8);
        }
    }
    CHECK(relerr(pw, dw_, na) < 1e-6, "adamw rel err %.3g", relerr(pw, dw_, na));

    // sumsq, axpy: thread-count independent
    double s1, s3, sr = 0;
    for (int64_t i = 0; i < na; i++)
        sr += (double)pg[i] * pg[i];
    CHECK(eng_top_sumsq(be1, pg, na, &s1) == 0 && eng_top_sumsq(be3, pg, na, &s3) == 0, "sumsq");
    CHECK(s1 == s3 && fabs(s1 - sr) < 1e-9 * sr, "sumsq %.17g %.17g %.17g", s1, s3, sr);

    // rope: inverse undoes forward; NORM and NEOX
    for (int mode = 0; mode <= 2; mode += 2) {
        const int32_t NHr = 3, HSr = 16;
        const int64_t Tr = 9;
        int32_t pos[9] = {0, 1, 2, 3, 0, 1, 7, 100, 5};
        float *xr = rnd(Tr * NHr * HSr, 1.0f), *x0 = malloc(Tr * NHr * HSr * 4);
        memcpy(x0, xr, Tr * NHr * HSr * 4);
        struct eng_rope_params rp = {.n_rot = 12, .freq_base = 10000.0f, .freq_scale = 1.0f,
                                     .mode = (enum eng_rope_mode)mode};
        CHECK(eng_top_rope(be3, xr, pos, Tr, NHr, HSr, &rp, false) == 0, "rope");
        // position 0 is the identity; position 1 rotates pair 0 by 1 radian
        CHECK(!memcmp(xr, x0, NHr * HSr * 4), "rope at position 0 is not the identity");
        const int i1 = mode == ENG_ROPE_NEOX ? 6 : 1;
        const float *r1 = x0 + NHr * HSr;
        CHECK(fabsf(xr[NHr * HSr] - (r1[0] * cosf(1) - r1[i1] * sinf(1))) < 1e-6f, "rope pair 0");
        CHECK(eng_top_rope(be3, xr, pos, Tr, NHr, HSr, &rp, true) == 0, "rope inverse");
        double *x0d = malloc(Tr * NHr * HSr * 8);
        for (int64_t i = 0; i < Tr * NHr * HSr; i++)
            x0d[i] = x0[i];
        CHECK(relerr(xr, x0d, Tr * NHr * HSr) < 1e-6, "rope inverse does not undo it");
        free(xr), free(x0), free(x0d);
    }

    // the wrappers reject bad arguments
    int32_t bad[2] = {0, (int32_t)V};
    CHECK(eng_top_xent(be3, z, bad, 2, V, 1.0f, &loss) == ERR_INVAL, "xent: target >= V");
    const int32_t bst[] = {0, 3, 2};
    const struct eng_train_seqs bs = {.n_seqs = 2, .start = bst};
    CHECK(eng_top_attn_fwd(be3, out, rstd, x, x, x, 2, &bs, 2, 2, 4, 1.0f) == ERR_INVAL,
          "attn: unordered starts");
    CHECK(eng_top_attn_fwd(be3, out, rstd, x, x, x, 2, &bs, 3, 2, 4, 1.0f) == ERR_INVAL,
          "attn: NH %% NKV");

    free(x), free(w), free(dy), free(out), free(rstd), free(ro), free(rs), free(rdx), free(rdw);
    free(dx), free(dw), free(dx3), free(dw3), free(g), free(u), free(dh), free(dg), free(du);
    free(rdg), free(rdu), free(z), free(rz), free(pw), free(pg), free(pm), free(pv), free(dw_);
    free(dm), free(dv);
}

int main(void)
{
    const char *levels[] = {"scalar", "avx2", "avx512"};
    for (int l = 0; l < 3; l++) {
        setenv("ORTHOD_CPU_LEVEL", levels[l], 1);
        eng_backend_t *be1 = backend(1), *be3 = backend(3);
        const char *d = eng_backend_describe(be1);
        if (!strstr(d, levels[l])) {   // the CPU lacks this level
            printf("level %s: not available (%s)\n", levels[l], d);
            eng_backend_free(be1);
            eng_backend_free(be3);
            continue;
        }
        int before = failures;
        test_gemm(be1, be3);
        test_attention(be1, be3);
        test_rows(be1, be3);
        printf("level %s: %s\n", levels[l], failures == before ? "ok" : "FAILED");
        eng_backend_free(be1);
        eng_backend_free(be3);
    }
    printf("%d failures\n", failures);
    return failures ? 1 : 0;
}
