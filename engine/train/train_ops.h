/* engine/train/train_ops.h: the training half of a backend's table: the forward ops a
 * training step needs beyond inference's (they keep what backward reads) and the backward
 * ops, the loss, and the optimizer. The model code (engine/train/model_train.c) calls the
 * checked wrappers eng_top_*(), which validate arguments and dispatch to
 * be->ops->train (backend_impl.h); a backend without the table gives ERR_UNSUPPORTED.
 *
 * Conventions: pointers are addresses in the backend's memory space (inside eng_buffer_t
 * allocations) of contiguous F32 arrays, except the small index arrays marked (host),
 * which are host memory valid for the call (device backends upload them). Shapes: T
 * tokens of a packed micro-batch, R rows, C model width, V vocab, NH/NKV heads, HS head
 * size. A weight `w` is a tensor of any compute dtype (F32/F16/BF16/Q8_0/Q4_0) with
 * ne = {K, N}. Every function returns 0 or a negative ERR_*.
 * Results are deterministic: independent of the thread count. */
#ifndef ORTHOD_ENGINE_TRAIN_OPS_H
#define ORTHOD_ENGINE_TRAIN_OPS_H

#include "../backend.h"

#include <stdbool.h>
#include <stdint.h>

/* A packed micro-batch: sample s is tokens [start[s], start[s+1]); attention stays
 * inside each sample (causal within it), positions restart at 0 for each sample. */
struct eng_train_seqs {
    int32_t n_seqs;
    const int32_t *start;        /* (host) (n_seqs + 1) ascending, start[0] = 0 */
};

/* One AdamW step on a tensor (torch.optim.AdamW semantics):
 *   w -= lr * wd * w;  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2
 *   w -= (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
 * g is first multiplied by grad_scale (the clipping coefficient). */
struct eng_adamw_params {
    float lr, beta1, beta2, eps, weight_decay;
    float grad_scale;
    int64_t t;                   /* step number, >= 1 */
};

struct eng_train_ops {
    /* out (T, C) = rows tokens[] of wte (any compute dtype, ne = {C, V}) */
    int (*embed)(eng_backend_t *be, float *out, const int32_t *tokens, int64_t T,
                 const eng_tensor_t *wte);
    /* dwte (V, C) += scatter-add of dout (T, C) rows at tokens[] */
    int (*embed_bwd)(eng_backend_t *be, float *dwte, int64_t V, const int32_t *tokens,
                     int64_t T, const float *dout, int64_t C);
    /* out (R, C) = x * rstd * w, rstd (R) = 1 / sqrt(mean(x^2) + eps) */
    int (*rmsnorm_fwd)(eng_backend_t *be, float *out, float *rstd, const float *x,
                       const float *w, int64_t R, int64_t C, float eps);
    /* dx (R, C) = (accumulate ? dx : 0) + d/dx;  dw (C) += d/dw (dw may be NULL) */
    int (*rmsnorm_bwd)(eng_backend_t *be, float *dx, float *dw, const float *dout,
                       const float *x, const float *rstd, const float *w, int64_t R,
                       int64_t C, bool accumulate);
    /* In place on x (T, n_heads * HS): rotation by pos[] (host); inverse: by -pos
     * (the backward of the rotation). */
    int (*rope)(eng_backend_t *be, float *x, const int32_t *pos, int64_t T, int32_t n_heads,
                int32_t head_dim, const struct eng_rope_params *rp, bool inverse);
    /* out (T, NH*HS) = softmax(q k^T * scale, causal within each sample) v;
     * lse (T, NH) = log-sum-exp of each row's scaled scores (kept for backward).
     * k, v (T, NKV*HS); GQA: head h reads KV head h / (NH/NKV). */
    int (*attn_fwd)(eng_backend_t *be, float *out, float *lse, const float *q, const float *k,
                    const float *v, const struct eng_train_seqs *s, int32_t NH, int32_t NKV,
                    int32_t HS, float scale);
    /* dq (T, NH*HS), dk, dv (T, NKV*HS) = gradients (overwritten) given dout and the
     * forward's out and lse. */
    int (*attn_bwd)(eng_backend_t *be, float *dq, float *dk, float *dv, const float *dout,
                    const float *out, const float *lse, const float *q, const float *k,
                    const float *v, const struct eng_train_seqs *s, int32_t NH, int32_t NKV,
                    int32_t HS, float scale);
    /* h = silu(g) * u:  dg = dh * u * silu'(g), du = dh * silu(g)  (n elements) */
    int (*swiglu_bwd)(eng_backend_t *be, float *dg, float *du, const float *dh, const float *g,
                      const float *u, int64_t n);
    /* dx (R, K) = (accumulate ? dx : 0) + alpha * dy (R, N) @ w (N, K) */
    int (*matmul_dx)(eng_backend_t *be, float *dx, const float *dy, int64_t R,
                     const eng_tensor_t *w, float alpha, bool accumulate);
    /* dw (N, K) += alpha * dy^T (N, R) @ x (R, K) */
    int (*matmul_dw)(eng_backend_t *be, float *dw, const float *dy, const float *x, int64_t R,
                     int64_t N, int64_t K, float alpha);
    /* Cross-entropy of R rows of logits z (R, V) against targets[] (host): *loss_sum (host)
     * = sum over rows of logsumexp(z) - z[target] (double); z is replaced by its gradient
     * times grad_scale: (softmax(z) - onehot(target)) * grad_scale. */
    int (*xent)(eng_backend_t *be, float *z, const int32_t *targets, int64_t R, int64_t V,
                float grad_scale, double *loss_sum);
    /* out (n, C) = x rows rows[] (host);  scatter: x rows rows[] = src rows (others kept) */
    int (*gather)(eng_backend_t *be, float *out, const float *x, const int32_t *rows,
                  int64_t n, int64_t C);
    int (*scatter)(eng_backend_t *be, float *x, const float *src, const int32_t *rows,
                   int64_t n, int64_t C);
    /* y (n) += a * x */
    int (*axpy)(eng_backend_t *be, float *y, const float *x, float a, int64_t n);
    /* *out (host) = sum of x^2 (double accumulation) */
    int (*sumsq)(eng_backend_t *be, const float *x, int64_t n, double *out);
    int (*adamw)(eng_backend_t *be, float *w, const float *g, float *m, float *v, int64_t n,
                 const struct eng_adamw_params *p);
    /* out (n) BF16 = x rounded to nearest even (the BF16 compute copies of full FT) */
    int (*to_bf16)(eng_backend_t *be, uint16_t *out, const float *x, int64_t n);
    /* bytes of p set to zero */
    int (*zero)(eng_backend_t *be, void *p, size_t n);
};

/* --- checked wrappers: same arguments; ERR_INVAL on a bad shape, NULL pointer or
 * out-of-range index; ERR_UNSUPPORTED when the backend has no training table --- */
bool eng_backend_can_train(const eng_backend_t *be);
int eng_top_embed(eng_backend_t *be, float *out, const int32_t *tokens, int64_t T,
                  const eng_tensor_t *wte);
int eng_top_embed_bwd(eng_backend_t *be, float *dwte, int64_t V, const int32_t *tokens,
                      int64_t T, const float *dout, int64_t C);
int eng_top_rmsnorm_fwd(eng_backend_t *be, float *out, float *rstd, const float *x,
                        const float *w, int64_t R, int64_t C, float eps);
int eng_top_rmsnorm_bwd(eng_backend_t *be, float *dx, float *dw, const float *dout,
                        const float *x, const float *rstd, const float *w, int64_t R, int64_t C,
                        bool accumulate);
int eng_top_rope(eng_backend_t *be, float *x, const int32_t *pos, int64_t T, int32_t n_heads,
                 int32_t head_dim, const struct eng_rope_params *rp, bool inverse);
int eng_top_attn_fwd(eng_backend_t *be, float *out, float *lse, const float *q, const float *k,
                     const float *v, int64_t T, const struct eng_train_seqs *s, int32_t NH,
                     int32_t NKV, int32_t HS, float scale);
int eng_top_attn_bwd(eng_backend_t *be, float *dq, float *dk, float *dv, const float *dout,
                     const float *out, const float *lse, const float *q, const float *k,
                     const float *v, int64_t T, const struct eng_train_seqs *s, int32_t NH,
                     int32_t NKV, int32_t HS, float scale);
int eng_top_swiglu_bwd(eng_backend_t *be, float *dg, float *du, const float *dh, const float *g,
                       const float *u, int64_t n);
int eng_top_matmul_dx(eng_backend_t *be, float *dx, const float *dy, int64_t R,
                      const eng_tensor_t *w, float alpha, bool accumulate);
int eng_top_matmul_dw(eng_backend_t *be, float *dw, const float *dy, const float *x, int64_t R,
                      int64_t N, int64_t K, float alpha);
int eng_top_xent(eng_backend_t *be, float *z, const int32_t *targets, int64_t R, int64_t V,
                 float grad_scale, double *loss_sum);
int eng_top_gather(eng_backend_t *be, float *out, const float *x, const int32_t *rows,
                   int64_t n, int64_t C, int64_t x_rows);
int eng_top_scatter(eng_backend_t *be, float *x, const float *src, const int32_t *rows,
                    int64_t n, int64_t C, int64_t x_rows);
int eng_top_axpy(eng_backend_t *be, float *y, const float *x, float a, int64_t n);
int eng_top_sumsq(eng_backend_t *be, const float *x, int64_t n, double *out);
int eng_top_adamw(eng_backend_t *be, float *w, const float *g, float *m, float *v, int64_t n,
                  const struct eng_adamw_params *p);
int eng_top_to_bf16(eng_backend_t *be, uint16_t *out, const float *x, int64_t n);
int eng_top_zero(eng_backend_t *be, void *p, size_t n);

#endif
