/* engine/train/ops.c: checked dispatch of the training ops (train_ops.h) to a backend's
 * table: shapes, pointers and indices are validated once here so backends may trust them. */
#include "train_ops.h"

#include "../backend_impl.h"

#define MAX_ELEMS ((int64_t)1 << 40)

static const struct eng_train_ops *T(eng_backend_t *be)
{
    return be ? be->ops->train : NULL;
}

bool eng_backend_can_train(const eng_backend_t *be)
{
    return be && be->ops->train != NULL;
}

static bool dims_ok(int64_t a, int64_t b)
{
    return a >= 0 && b >= 0 && a <= MAX_ELEMS && b <= MAX_ELEMS && (b == 0 || a <= MAX_ELEMS / b);
}

static bool idx_ok(const int32_t *idx, int64_t n, int64_t lim)
{
    if (n > 0 && !idx)
        return false;
    for (int64_t i = 0; i < n; i++)
        if (idx[i] < 0 || idx[i] >= lim)
            return false;
    return true;
}

static bool seqs_ok(const struct eng_train_seqs *s, int64_t T)
{
    if (!s || s->n_seqs < 1 || !s->start || s->start[0] != 0 || s->start[s->n_seqs] != T)
        return false;
    for (int32_t i = 0; i < s->n_seqs; i++)
        if (s->start[i + 1] <= s->start[i])
            return false;
    return true;
}

#define NEED_TABLE(be)                                                                          \
    do {                                                                                        \
        if (!T(be))                                                                             \
            return ERR_UNSUPPORTED;                                                             \
    } while (0)

int eng_top_embed(eng_backend_t *be, float *out, const int32_t *tokens, int64_t T_,
                  const eng_tensor_t *wte)
{
    NEED_TABLE(be);
    if (!out || !wte || !wte->data || !eng_dtype_is_compute(wte->dtype) ||
        !dims_ok(T_, wte->ne[0]) || !idx_ok(tokens, T_, wte->ne[1]))
        return ERR_INVAL;
    return T(be)->embed(be, out, tokens, T_, wte);
}

int eng_top_embed_bwd(eng_backend_t *be, float *dwte, int64_t V, const int32_t *tokens,
                      int64_t T_, const float *dout, int64_t C)
{
    NEED_TABLE(be);
    if (!dwte || !dout || C <= 0 || !dims_ok(V, C) || !dims_ok(T_, C) || !idx_ok(tokens, T_, V))
        return ERR_INVAL;
    return T(be)->embed_bwd(be, dwte, V, tokens, T_, dout, C);
}

int eng_top_rmsnorm_fwd(eng_backend_t *be, float *out, float *rstd, const float *x,
                        const float *w, int64_t R, int64_t C, float eps)
{
    NEED_TABLE(be);
    if (!out || !rstd || !x || !w || C <= 0 || !dims_ok(R, C) || !(eps > 0.0f))
        return ERR_INVAL;
    return T(be)->rmsnorm_fwd(be, out, rstd, x, w, R, C, eps);
}

int eng_top_rmsnorm_bwd(eng_backend_t *be, float *dx, float *dw, const float *dout,
                        const float *x, const float *rstd, const float *w, int64_t R, int64_t C,
                        bool accumulate)
{
    NEED_TABLE(be);
    if (!dx || !dout || !x || !rstd || !w || C <= 0 || !dims_ok(R, C))
        return ERR_INVAL;
    return T(be)->rmsnorm_bwd(be, dx, dw, dout, x, rstd, w, R, C, accumulate);
}

int eng_top_rope(eng_backend_t *be, float *x, const int32_t *pos, int64_t T_, int32_t n_heads,
                 int32_t head_dim, const struct eng_rope_params *rp, bool inverse)
{
    NEED_TABLE(be);
    if (!x || !rp || n_heads <= 0 || head_dim <= 0 || !dims_ok(T_, (int64_t)n_heads * head_dim) ||
        rp->n_rot <= 0 || rp->n_rot % 2 || rp->n_rot > head_dim ||
        (rp->mode != ENG_ROPE_NORM && rp->mode != ENG_ROPE_NEOX) || !idx_ok(pos, T_, INT32_MAX))
        return ERR_INVAL;
    return T(be)->rope(be, x, pos, T_, n_heads, head_dim, rp, inverse);
}

static bool attn_ok(int64_t T_, const struct eng_train_seqs *s, int32_t NH, int32_t NKV,
                    int32_t HS)
{
    return NH > 0 && NKV > 0 && NH % NKV == 0 && HS > 0 && dims_ok(T_, (int64_t)NH * HS) &&
           seqs_ok(s, T_);
}

int eng_top_attn_fwd(eng_backend_t *be, float *out, float *lse, const float *q, const float *k,
                     const float *v, int64_t T_, const struct eng_train_seqs *s, int32_t NH,
                     int32_t NKV, int32_t HS, float scale)
{
    NEED_TABLE(be);
    if (!out || !lse || !q || !k || !v || !attn_ok(T_, s, NH, NKV, HS))
        return ERR_INVAL;
    return T(be)->attn_fwd(be, out, lse, q, k, v, s, NH, NKV, HS, scale);
}

int eng_top_attn_bwd(eng_backend_t *be, float *dq, float *dk, float *dv, const float *dout,
                     const float *out, const float *lse, const float *q, const float *k,
                     const float *v, int64_t T_, const struct eng_train_seqs *s, int32_t NH,
                     int32_t NKV, int32_t HS, float scale)
{
    NEED_TABLE(be);
    if (!dq || !dk || !dv || !dout || !out || !lse || !q || !k || !v ||
        !attn_ok(T_, s, NH, NKV, HS))
        return ERR_INVAL;
    return T(be)->attn_bwd(be, dq, dk, dv, dout, out, lse, q, k, v, s, NH, NKV, HS, scale);
}

int eng_top_swiglu_bwd(eng_backend_t *be, float *dg, float *du, const float *dh, const float *g,
                       const float *u, int64_t n)
{
    NEED_TABLE(be);
    if (!dg || !du || !dh || !g || !u || n < 0 || n > MAX_ELEMS)
        return ERR_INVAL;
    return T(be)->swiglu_bwd(be, dg, du, dh, g, u, n);
}

int eng_top_matmul_dx(eng_backend_t *be, float *dx, const float *dy, int64_t R,
                      const eng_tensor_t *w, float alpha, bool accumulate)
{
    NEED_TABLE(be);
    if (!dx || !dy || !w || !w->data || !eng_dtype_is_compute(w->dtype) || w->ne[2] != 1 ||
        w->ne[3] != 1 || !dims_ok(R, w->ne[0]) || !dims_ok(R, w->ne[1]) ||
        eng_dtype_row_bytes(w->dtype, w->ne[0]) == 0 ||
        w->nb[1] < eng_dtype_row_bytes(w->dtype, w->ne[0]))
        return ERR_INVAL;
    return T(be)->matmul_dx(be, dx, dy, R, w, alpha, accumulate);
}

int eng_top_matmul_dw(eng_backend_t *be, float *dw, const float *dy, const float *x, int64_t R,
                      int64_t N, int64_t K, float alpha)
{
    NEED_TABLE(be);
    if (!dw || !dy || !x || !dims_ok(R, N) || !dims_ok(R, K) || !dims_ok(N, K))
        return ERR_INVAL;
    return T(be)->matmul_dw(be, dw, dy, x, R, N, K, alpha);
}

int eng_top_xent(eng_backend_t *be, float *z, const int32_t *targets, int64_t R, int64_t V,
                 float grad_scale, double *loss_sum)
{
    NEED_TABLE(be);
    if (!z || !loss_sum || V <= 0 || !dims_ok(R, V) || !idx_ok(targets, R, V))
        return ERR_INVAL;
    return T(be)->xent(be, z, targets, R, V, grad_scale, loss_sum);
}

int eng_top_gather(eng_backend_t *be, float *out, const float *x, const int32_t *rows,
                   int64_t n, int64_t C, int64_t x_rows)
{
    NEED_TABLE(be);
    if (!out || !x || !dims_ok(n, C) || !dims_ok(x_rows, C) || !idx_ok(rows, n, x_rows))
        return ERR_INVAL;
    return T(be)->gather(be, out, x, rows, n, C);
}

int eng_top_scatter(eng_backend_t *be, float *x, const float *src, const int32_t *rows,
                    int64_t n, int64_t C, int64_t x_rows)
{
    NEED_TABLE(be);
    if (!x || !src || !dims_ok(n, C) || !dims_ok(x_rows, C) || !idx_ok(rows, n, x_rows))
        return ERR_INVAL;
    return T(be)->scatter(be, x, src, rows, n, C);
}

int eng_top_axpy(eng_backend_t *be, float *y, const float *x, float a, int64_t n)
{
    NEED_TABLE(be);
    if (!y || !x || n < 0 || n > MAX_ELEMS)
        return ERR_INVAL;
    return T(be)->axpy(be, y, x, a, n);
}

int eng_top_sumsq(eng_backend_t *be, const float *x, int64_t n, double *out)
{
    NEED_TABLE(be);
    if (!x || !out || n < 0 || n > MAX_ELEMS)
        return ERR_INVAL;
    return T(be)->sumsq(be, x, n, out);
}

int eng_top_adamw(eng_backend_t *be, float *w, const float *g, float *m, float *v, int64_t n,
                  const struct eng_adamw_params *p)
{
    NEED_TABLE(be);
    if (!w || !g || !m || !v || !p || n < 0 || n > MAX_ELEMS || p->t < 1 ||
        !(p->beta1 >= 0.0f && p->beta1 < 1.0f) || !(p->beta2 >= 0.0f && p->beta2 < 1.0f) ||
        !(p->eps > 0.0f))
        return ERR_INVAL;
    return T(be)->adamw(be, w, g, m, v, n, p);
}

int eng_top_to_bf16(eng_backend_t *be, uint16_t *out, const float *x, int64_t n)
{
    NEED_TABLE(be);
    if (!out || !x || n < 0 || n > MAX_ELEMS)
        return ERR_INVAL;
    return T(be)->to_bf16(be, out, x, n);
}

int eng_top_zero(eng_backend_t *be, void *p, size_t n)
{
    NEED_TABLE(be);
    if (!p && n)
        return ERR_INVAL;
    return T(be)->zero(be, p, n);
}
