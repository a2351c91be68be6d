/* engine/cpu/train_kern.h: the training kernels as a template, included once per ISA level
 * with TK_VL (floats per vector), TK_MR (GEMM tile rows), TK_NV (vectors per tile row) and
 * TK_SETUP (the name of the function that fills a struct eng_cpu_tk). Plain C over GCC
 * vector types; the including file's flags decide the instructions (see train_impl.h). */
#include "train_impl.h"

#include <math.h>
#include <string.h>

#define TK_NR (TK_VL * TK_NV)

typedef float tk_vf __attribute__((vector_size(TK_VL * 4)));

#define AI static inline __attribute__((always_inline))

AI tk_vf tk_ld(const float *p)
{
    tk_vf v;
    memcpy(&v, p, sizeof v);
    return v;
}

AI void tk_st(float *p, tk_vf v)
{
    memcpy(p, &v, sizeof v);
}

AI int64_t tk_min(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

/* Reductions with vector accumulators (the compiler does not reassociate float sums by
 * itself); the order is fixed by n alone. */
AI float tk_hsum(tk_vf v)
{
    float s = 0.0f;
    for (int i = 0; i < TK_VL; i++)
        s += v[i];
    return s;
}

static float tk_dot(const float *a, const float *b, int64_t n)
{
    tk_vf acc0 = {0}, acc1 = {0};
    int64_t i = 0;
    for (; i + 2 * TK_VL <= n; i += 2 * TK_VL) {
        acc0 += tk_ld(a + i) * tk_ld(b + i);
        acc1 += tk_ld(a + i + TK_VL) * tk_ld(b + i + TK_VL);
    }
    for (; i + TK_VL <= n; i += TK_VL)
        acc0 += tk_ld(a + i) * tk_ld(b + i);
    float s = tk_hsum(acc0 + acc1);
    for (; i < n; i++)
        s += a[i] * b[i];
    return s;
}

static float tk_sum(const float *a, int64_t n)
{
    tk_vf acc0 = {0}, acc1 = {0};
    int64_t i = 0;
    for (; i + 2 * TK_VL <= n; i += 2 * TK_VL) {
        acc0 += tk_ld(a + i);
        acc1 += tk_ld(a + i + TK_VL);
    }
    for (; i + TK_VL <= n; i += TK_VL)
        acc0 += tk_ld(a + i);
    float s = tk_hsum(acc0 + acc1);
    for (; i < n; i++)
        s += a[i];
    return s;
}

static float tk_max(const float *a, int64_t n)
{
    float m = a[0];
    int64_t i = 0;
    if (n >= TK_VL) {
        float mv[TK_VL];   // lane-wise maxima: the loop becomes vmaxps
        memcpy(mv, a, sizeof mv);
        for (i = TK_VL; i + TK_VL <= n; i += TK_VL)
            for (int l = 0; l < TK_VL; l++)
                mv[l] = a[i + l] > mv[l] ? a[i + l] : mv[l];
        m = mv[0];
        for (int l = 1; l < TK_VL; l++)
            m = mv[l] > m ? mv[l] : m;
    }
    for (; i < n; i++)
        m = a[i] > m ? a[i] : m;
    return m;
}

/* exp(x): n = round(x log2 e) (by the 1.5 * 2^23 trick, so it vectorizes), r = x - n ln2
 * in two parts, Cephes degree-5 polynomial, times 2^n built in the exponent bits. Inputs
 * are clamped to [-87.3, 88]; about 1 ulp. */
AI float tk_expf(float x)
{
    x = x < 88.0f ? x : 88.0f;
    x = x > -87.3f ? x : -87.3f;
    const float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500E-4f;
    p = p * r + 1.3981999507E-3f;
    p = p * r + 8.3334519073E-3f;
    p = p * r + 4.1665795894E-2f;
    p = p * r + 1.6666665459E-1f;
    p = p * r + 5.0000001201E-1f;
    p = p * (r * r) + (r + 1.0f);
    const int32_t e = ((int32_t)n + 127) << 23;
    float s;
    memcpy(&s, &e, 4);
    return p * s;
}

/* ------------------------------------------------------------------------------------- */
/* GEMM                                                                                   */

/* pb[strip][k][NR] for columns [n0, n0 + nc), k in [k0, k0 + kc); columns past N zero. */
static void tk_pack_b(const struct tk_gemm *g, float *pb, float *rowbuf, int64_t n0, int64_t nc,
                      int64_t k0, int64_t kc)
{
    const int64_t ncr = tk_min(nc, g->N - n0);          // real columns
    const int64_t strips = (nc + TK_NR - 1) / TK_NR;
    const int64_t be = eng_dtype_block_elems(g->b_dt);
    const size_t off = (size_t)(n0 / be) * eng_dtype_block_bytes(g->b_dt);
    for (int64_t k = 0; k < kc; k++) {
        const uint8_t *row = g->b + (size_t)(k0 + k) * g->ldb + off;
        const float *src;
        if (g->b_dt == ENG_DTYPE_F32) {
            src = (const float *)(const void *)row;
        } else {
            eng_row_to_f32(g->b_dt, row, rowbuf, ncr);
            src = rowbuf;
        }
        for (int64_t s = 0; s < strips; s++) {
            float *dst = pb + s * kc * TK_NR + k * TK_NR;
            const int64_t c0 = s * TK_NR;
            if (c0 + TK_NR <= ncr) {
                memcpy(dst, src + c0, TK_NR * sizeof(float));
            } else {
                for (int j = 0; j < TK_NR; j++)
                    dst[j] = c0 + j < ncr ? src[c0 + j] : 0.0f;
            }
        }
    }
}

/* c (rows x cols of an MR x NR tile, row stride ldc) = (acc ? c : 0) + alpha * A pb, where
 * tile row i, k is a[i * si + k * sk] (A is read in place: each k broadcasts MR values; the
 * MR x kc block stays in L1). Rows past `rows` repeat the last row (their sums are dropped). */
AI void tk_ukernel_body(int64_t kc, const float *a, int64_t si, int64_t sk, const float *pb,
                        float *c, int64_t ldc, int rows, int cols, float alpha, bool acc,
                        float *tmp)
{
    const float *ap[TK_MR];
#pragma GCC unroll 16
    for (int i = 0; i < TK_MR; i++)
        ap[i] = a + (i < rows ? i : rows - 1) * si;
    tk_vf t[TK_MR][TK_NV];
#pragma GCC unroll 16
    for (int i = 0; i < TK_MR; i++)
#pragma GCC unroll 4
        for (int v = 0; v < TK_NV; v++)
            t[i][v] = (tk_vf){0};
    for (int64_t k = 0; k < kc; k++) {
        tk_vf b[TK_NV];
#pragma GCC unroll 4
        for (int v = 0; v < TK_NV; v++)
            b[v] = tk_ld(pb + k * TK_NR + v * TK_VL);
#pragma GCC unroll 16
        for (int i = 0; i < TK_MR; i++) {
            const tk_vf av = (tk_vf){0} + ap[i][k * sk];
#pragma GCC unroll 4
            for (int v = 0; v < TK_NV; v++)
                t[i][v] += av * b[v];
        }
    }
    if (rows == TK_MR && cols == TK_NR) {
#pragma GCC unroll 16
        for (int i = 0; i < TK_MR; i++)
#pragma GCC unroll 4
            for (int v = 0; v < TK_NV; v++) {
                float *p = c + i * ldc + v * TK_VL;
                tk_st(p, acc ? tk_ld(p) + t[i][v] * alpha : t[i][v] * alpha);
            }
        return;
    }
    for (int i = 0; i < TK_MR; i++)
        for (int v = 0; v < TK_NV; v++)
            tk_st(tmp + i * TK_NR + v * TK_VL, t[i][v] * alpha);
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < cols; j++)
            c[i * ldc + j] = acc ? c[i * ldc + j] + tmp[i * TK_NR + j] : tmp[i * TK_NR + j];
}

/* A row-major (k contiguous) and A transposed (rows contiguous): each a specialization. */
static void tk_ukernel_rows(int64_t kc, const float *a, int64_t lda, const float *pb, float *c,
                            int64_t ldc, int rows, int cols, float alpha, bool acc, float *tmp)
{
    tk_ukernel_body(kc, a, lda, 1, pb, c, ldc, rows, cols, alpha, acc, tmp);
}

static void tk_ukernel_cols(int64_t kc, const float *a, int64_t lda, const float *pb, float *c,
                            int64_t ldc, int rows, int cols, float alpha, bool acc, float *tmp)
{
    tk_ukernel_body(kc, a, 1, lda, pb, c, ldc, rows, cols, alpha, acc, tmp);
}

static void tk_gemm_worker(void *arg, int ith, int nth)
{
    const struct tk_gemm *g = arg;
    float *pb = g->scratch + (size_t)ith * g->per_thread;
    float *rowbuf = pb + (size_t)TK_KC * (TK_NC_MAX + TK_NR);
    float *tmp = rowbuf + TK_NC_MAX + 32;
    const int64_t m_strips = (g->M + TK_MR - 1) / TK_MR;
    const int64_t n_items = g->n_nblk * g->n_mslice;
    for (int64_t it = ith; it < n_items; it += nth) {
        const int64_t nb = it / g->n_mslice, ms = it % g->n_mslice;
        const int64_t n0 = nb * g->nc, nc = tk_min(g->nc, g->N - n0);
        // the slice's rows: whole MR strips, split evenly
        const int64_t s0 = m_strips * ms / g->n_mslice, s1 = m_strips * (ms + 1) / g->n_mslice;
        const int64_t mlo = s0 * TK_MR, mhi = tk_min(s1 * TK_MR, g->M);
        if (mlo >= mhi || nc <= 0)
            continue;
        for (int64_t k0 = 0; k0 < g->Kd; k0 += TK_KC) {
            const int64_t kc = tk_min(TK_KC, g->Kd - k0);
            const bool acc = k0 > 0 || g->accumulate;
            tk_pack_b(g, pb, rowbuf, n0, nc, k0, kc);
            for (int64_t m = mlo; m < mhi; m += TK_MR) {
                const int rows = (int)tk_min(TK_MR, mhi - m);
                for (int64_t j = 0; j < nc; j += TK_NR) {
                    const int cols = (int)tk_min(TK_NR, nc - j);
                    float *cp = g->c + m * g->ldc + n0 + j;
                    const float *bp = pb + (j / TK_NR) * kc * TK_NR;
                    if (g->a_trans)
                        tk_ukernel_cols(kc, g->a + k0 * g->lda + m, g->lda, bp, cp, g->ldc, rows,
                                        cols, g->alpha, acc, tmp);
                    else
                        tk_ukernel_rows(kc, g->a + m * g->lda + k0, g->lda, bp, cp, g->ldc, rows,
                                        cols, g->alpha, acc, tmp);
                }
            }
        }
    }
}

/* ------------------------------------------------------------------------------------- */
/* attention over a packed batch                                                          */

/* kt[d][j] = src[j * ld + d] for j < L, zero for L <= j < lp (row stride of kt: lp). */
static void tk_transpose_in(float *kt, int64_t lp, const float *src, int64_t ld, int64_t L,
                            int32_t HS)
{
    for (int64_t j = 0; j < L; j++)
        for (int32_t d = 0; d < HS; d++)
            kt[d * lp + j] = src[j * ld + d];
    for (int32_t d = 0; d < HS; d++)
        for (int64_t j = L; j < lp; j++)
            kt[d * lp + j] = 0.0f;
}

static int64_t tk_attn_take(struct tk_attn *a, int32_t *seq, int32_t *kvh)
{
    const int64_t it = atomic_fetch_add_explicit(&a->next, 1, memory_order_relaxed);
    if (it >= a->n_items)
        return -1;
    *seq = a->order[it / a->NKV];
    *kvh = (int32_t)(it % a->NKV);
    return it;
}

/* The attention kernels work on tiles of TK_QT queries of one head: the query-key products
 * of a tile are a small GEMM, out[q][j] = sum_d x[q][d] * yt[d][j], with a register tile of
 * TK_QT rows x one vector of keys, so each key column is loaded once for the whole tile. */
#define TK_QT 8

/* out[q][j] (row stride lp) = scale * sum_d x[q * xs + d] * yt[d * lp + j], q < TK_QT,
 * j < jn (a multiple of TK_VL); rows q >= nq use row nq - 1 (their results are unused). */
static void tk_tile_xyt(float *out, int64_t lp, const float *x, int64_t xs, int nq,
                        const float *yt, int32_t HS, int64_t jn, float scale)
{
    const float *xr[TK_QT];
    for (int q = 0; q < TK_QT; q++)
        xr[q] = x + (q < nq ? q : nq - 1) * xs;
    for (int64_t j = 0; j < jn; j += TK_VL) {
        tk_vf acc[TK_QT];
#pragma GCC unroll 8
        for (int q = 0; q < TK_QT; q++)
            acc[q] = (tk_vf){0};
        for (int32_t d = 0; d < HS; d++) {
            const tk_vf y = tk_ld(yt + d * lp + j);
#pragma GCC unroll 8
            for (int q = 0; q < TK_QT; q++)
                acc[q] += xr[q][d] * y;
        }
#pragma GCC unroll 8
        for (int q = 0; q < TK_QT; q++)
            tk_st(out + q * lp + j, acc[q] * scale);
    }
}

/* out[q * os + d] = scale * sum_{j < jn} p[q][j] * y[j * ys + d] for q < nq, d < HS. */
static void tk_tile_py(float *out, int64_t os, const float *p, int64_t lp, int nq,
                       const float *y, int64_t ys, int32_t HS, int64_t jn, float scale,
                       float *tmp)
{
    for (int32_t d0 = 0; d0 < HS; d0 += TK_VL) {
        const int32_t dn = HS - d0 < TK_VL ? HS - d0 : TK_VL;
        tk_vf acc[TK_QT];
#pragma GCC unroll 8
        for (int q = 0; q < TK_QT; q++)
            acc[q] = (tk_vf){0};
        for (int64_t j = 0; j < jn; j++) {
            tk_vf yv;
            if (dn == TK_VL) {
                yv = tk_ld(y + j * ys + d0);
            } else {
                float b[TK_VL] = {0};
                memcpy(b, y + j * ys + d0, (size_t)dn * sizeof(float));
                yv = tk_ld(b);
            }
#pragma GCC unroll 8
            for (int q = 0; q < TK_QT; q++)
                acc[q] += p[q * lp + j] * yv;
        }
        for (int q = 0; q < nq; q++) {
            tk_st(tmp, acc[q] * scale);
            memcpy(out + q * os + d0, tmp, (size_t)dn * sizeof(float));
        }
    }
}

/* gt[d][j] += sum_{q < nq} x[q * xs + d] * p[q][j] for j < jn, d < HS (dK and dV). */
static void tk_tile_acc_t(float *gt, int64_t lp, const float *x, int64_t xs, int nq,
                          const float *p, int32_t HS, int64_t jn)
{
    for (int32_t d = 0; d < HS; d++) {
        float xd[TK_QT];
        for (int q = 0; q < TK_QT; q++)
            xd[q] = q < nq ? x[q * xs + d] : 0.0f;
        float *g = gt + d * lp;
        for (int64_t j = 0; j < jn; j += TK_VL) {
            tk_vf acc = tk_ld(g + j);
#pragma GCC unroll 8
            for (int q = 0; q < TK_QT; q++)
                acc += xd[q] * tk_ld(p + q * lp + j);
            tk_st(g + j, acc);
        }
    }
}

static void tk_attn_fwd_worker(void *arg, int ith, int nth)
{
    (void)nth;
    struct tk_attn *a = arg;
    const int32_t HS = a->HS, NH = a->NH, NKV = a->NKV, grp = NH / NKV;
    const int64_t qs = (int64_t)NH * HS, ks = (int64_t)NKV * HS;
    float *scr = a->scratch + (size_t)ith * a->per_thread;
    int32_t seq, kvh;
    while (tk_attn_take(a, &seq, &kvh) >= 0) {
        const int64_t t0 = a->start[seq], L = a->start[seq + 1] - t0;
        const int64_t lp = (L + 15) & ~(int64_t)15;
        float *kt = scr, *S = kt + (size_t)HS * lp, *tmp = S + (size_t)TK_QT * lp;
        tk_transpose_in(kt, lp, a->k + t0 * ks + (int64_t)kvh * HS, ks, L, HS);
        const float *vb = a->v + t0 * ks + (int64_t)kvh * HS;
        for (int32_t hh = 0; hh < grp; hh++) {
            const int32_t h = kvh * grp + hh;
            for (int64_t i0 = 0; i0 < L; i0 += TK_QT) {
                const int nq = (int)(L - i0 < TK_QT ? L - i0 : TK_QT);
                const int64_t jn = (i0 + nq + TK_VL - 1) / TK_VL * TK_VL;   // keys 0..i0+nq-1
                const float *q0 = a->q + (t0 + i0) * qs + (int64_t)h * HS;
                tk_tile_xyt(S, lp, q0, qs, nq, kt, HS, jn, a->scale);
                for (int q = 0; q < nq; q++) {
                    float *sr = S + q * lp;
                    const int64_t n = i0 + q + 1;     // causal: keys 0..i
                    const float m = tk_max(sr, n);
                    for (int64_t j = 0; j < n; j++)
                        sr[j] = tk_expf(sr[j] - m);
                    const float sum = tk_sum(sr, n);
                    const float inv = 1.0f / sum;
                    for (int64_t j = 0; j < n; j++)
                        sr[j] *= inv;
                    for (int64_t j = n; j < jn; j++)
                        sr[j] = 0.0f;
                    a->lse[(t0 + i0 + q) * NH + h] = m + logf(sum);
                }
                for (int q = nq; q < TK_QT; q++)
                    memset(S + q * lp, 0, sizeof(float) * (size_t)jn);
                tk_tile_py(a->out + (t0 + i0) * qs + (int64_t)h * HS, qs, S, lp, nq, vb, ks, HS,
                           i0 + nq, 1.0f, tmp);
            }
        }
    }
}

static void tk_attn_bwd_worker(void *arg, int ith, int nth)
{
    (void)nth;
    struct tk_attn *a = arg;
    const int32_t HS = a->HS, NH = a->NH, NKV = a->NKV, grp = NH / NKV;
    const int64_t qs = (int64_t)NH * HS, ks = (int64_t)NKV * HS;
    float *scr = a->scratch + (size_t)ith * a->per_thread;
    int32_t seq, kvh;
    while (tk_attn_take(a, &seq, &kvh) >= 0) {
        const int64_t t0 = a->start[seq], L = a->start[seq + 1] - t0;
        const int64_t lp = (L + 15) & ~(int64_t)15;
        float *kt = scr, *vt = kt + (size_t)HS * lp, *dkt = vt + (size_t)HS * lp,
              *dvt = dkt + (size_t)HS * lp, *P = dvt + (size_t)HS * lp,
              *dS = P + (size_t)TK_QT * lp, *tmp = dS + (size_t)TK_QT * lp;
        const float *kb = a->k + t0 * ks + (int64_t)kvh * HS;
        tk_transpose_in(kt, lp, kb, ks, L, HS);
        tk_transpose_in(vt, lp, a->v + t0 * ks + (int64_t)kvh * HS, ks, L, HS);
        memset(dkt, 0, sizeof(float) * (size_t)HS * (size_t)lp);
        memset(dvt, 0, sizeof(float) * (size_t)HS * (size_t)lp);
        for (int32_t hh = 0; hh < grp; hh++) {
            const int32_t h = kvh * grp + hh;
            for (int64_t i0 = 0; i0 < L; i0 += TK_QT) {
                const int nq = (int)(L - i0 < TK_QT ? L - i0 : TK_QT);
                const int64_t jn = (i0 + nq + TK_VL - 1) / TK_VL * TK_VL;
                const int64_t row0 = (t0 + i0) * qs + (int64_t)h * HS;
                const float *q0 = a->q + row0, *do0 = a->dout + row0, *o0 = a->out_in + row0;
                tk_tile_xyt(P, lp, q0, qs, nq, kt, HS, jn, a->scale);     // scores
                tk_tile_xyt(dS, lp, do0, qs, nq, vt, HS, jn, 1.0f);       // dP
                for (int q = 0; q < TK_QT; q++) {
                    float *pr = P + q * lp, *dr = dS + q * lp;
                    if (q >= nq) {
                        memset(pr, 0, sizeof(float) * (size_t)jn);
                        memset(dr, 0, sizeof(float) * (size_t)jn);
                        continue;
                    }
                    const int64_t n = i0 + q + 1;
                    const float lse = a->lse_in[(t0 + i0 + q) * NH + h];
                    const float D = tk_dot(do0 + q * qs, o0 + q * qs, HS);
                    for (int64_t j = 0; j < n; j++) {
                        pr[j] = tk_expf(pr[j] - lse);
                        dr[j] = pr[j] * (dr[j] - D) * a->scale;
                    }
                    for (int64_t j = n; j < jn; j++)
                        pr[j] = dr[j] = 0.0f;
                }
                tk_tile_py(a->dq + row0, qs, dS, lp, nq, kb, ks, HS, i0 + nq, 1.0f, tmp);
                tk_tile_acc_t(dkt, lp, q0, qs, nq, dS, HS, jn);
                tk_tile_acc_t(dvt, lp, do0, qs, nq, P, HS, jn);
            }
        }
        for (int64_t j = 0; j < L; j++) {
            float *dk = a->dk + (t0 + j) * ks + (int64_t)kvh * HS,
                  *dv = a->dv + (t0 + j) * ks + (int64_t)kvh * HS;
            for (int32_t d = 0; d < HS; d++) {
                dk[d] = dkt[(int64_t)d * lp + j];
                dv[d] = dvt[(int64_t)d * lp + j];
            }
        }
    }
}

/* ------------------------------------------------------------------------------------- */
/* element-wise                                                                           */

static void tk_rmsnorm_fwd(float *out, float *rstd, const float *x, const float *w, int64_t C,
                           float eps)
{
    double ss = 0.0;
    for (int64_t i = 0; i < C; i++)
        ss += (double)x[i] * x[i];
    const float s = (float)(1.0 / sqrt(ss / (double)C + eps));
    *rstd = s;
    for (int64_t i = 0; i < C; i++)
        out[i] = x[i] * s * w[i];
}

static void tk_rmsnorm_bwd_dx(float *dx, const float *dy, const float *x, float rstd,
                              const float *w, int64_t C, bool acc)
{
    float dot = 0.0f;
    int64_t i0 = 0;
    {
        tk_vf va = {0};
        for (; i0 + TK_VL <= C; i0 += TK_VL)
            va += tk_ld(dy + i0) * tk_ld(w + i0) * tk_ld(x + i0);
        dot = tk_hsum(va);
    }
    for (; i0 < C; i0++)
        dot += dy[i0] * w[i0] * x[i0];
    const float c = dot * rstd * rstd / (float)C;
    if (acc) {
        for (int64_t i = 0; i < C; i++)
            dx[i] += rstd * (dy[i] * w[i] - x[i] * c);
    } else {
        for (int64_t i = 0; i < C; i++)
            dx[i] = rstd * (dy[i] * w[i] - x[i] * c);
    }
}

static void tk_rmsnorm_bwd_dw(float *dw, const float *dy, const float *x, float rstd, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        dw[i] += dy[i] * x[i] * rstd;
}

static void tk_swiglu_bwd(float *dg, float *du, const float *dh, const float *g, const float *u,
                          int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        const float x = g[i], sg = 1.0f / (1.0f + tk_expf(-x));
        const float d = dh[i], uu = u[i];
        du[i] = d * x * sg;
        dg[i] = d * uu * sg * (1.0f + x * (1.0f - sg));
    }
}

static double tk_xent_row(float *z, int32_t target, int64_t V, float scale)
{
    const float zt = z[target];
    const float m = tk_max(z, V);
    for (int64_t i = 0; i < V; i++)
        z[i] = tk_expf(z[i] - m);
    const float sum = tk_sum(z, V);
    const float inv = scale / sum;
    for (int64_t i = 0; i < V; i++)
        z[i] *= inv;
    z[target] -= scale;
    return (double)m + log((double)sum) - (double)zt;
}

static void tk_adamw(float *w, const float *g, float *m, float *v, int64_t n,
                     const struct tk_adam *p)
{
    const float decay = 1.0f - p->lr * p->wd, b1 = p->b1, b2 = p->b2, gs = p->gscale;
    const float step = p->lr / p->bc1, ib2 = 1.0f / p->bc2_sqrt;
    for (int64_t i = 0; i < n; i++) {
        const float gi = g[i] * gs;
        const float mi = b1 * m[i] + (1.0f - b1) * gi;
        const float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        const float denom = sqrtf(vi) * ib2 + p->eps;
        w[i] = w[i] * decay - step * (mi / denom);
    }
}

static double tk_sumsq(const float *x, int64_t n)
{
    double s = 0.0;
    for (int64_t i = 0; i < n; i++)
        s += (double)x[i] * x[i];
    return s;
}

static void tk_axpy(float *y, const float *x, float a, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        y[i] += a * x[i];
}

static void tk_to_bf16(uint16_t *out, const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        uint32_t w;
        memcpy(&w, &x[i], 4);
        const uint16_t rne = (uint16_t)((w + (0x7fffu + ((w >> 16) & 1))) >> 16);
        out[i] = (w & 0x7fffffffu) > 0x7f800000u ? (uint16_t)((w >> 16) | 64) : rne;
    }
}

void TK_SETUP(struct eng_cpu_tk *t)
{
    t->mr = TK_MR;
    t->nr = TK_NR;
    t->gemm_worker = tk_gemm_worker;
    t->attn_fwd_worker = tk_attn_fwd_worker;
    t->attn_bwd_worker = tk_attn_bwd_worker;
    t->rmsnorm_fwd = tk_rmsnorm_fwd;
    t->rmsnorm_bwd_dx = tk_rmsnorm_bwd_dx;
    t->rmsnorm_bwd_dw = tk_rmsnorm_bwd_dw;
    t->swiglu_bwd = tk_swiglu_bwd;
    t->xent_row = tk_xent_row;
    t->adamw = tk_adamw;
    t->sumsq = tk_sumsq;
    t->axpy = tk_axpy;
    t->to_bf16 = tk_to_bf16;
}
