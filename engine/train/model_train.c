/* engine/train/model_train.c: the Llama forward and backward pass of a training step,
 * written once against the backend table (inference ops for the forward matmuls, the
 * training table train_ops.h for everything else), one explicit function per block as
 * in llm.c. A micro-batch is a flat list of tokens from packed samples; attention stays
 * within each sample.
 *
 *   forward, block l (x = xs[l]):
 *     xn1 = rmsnorm(x) * attn_norm                         (rstd1 kept)
 *     q, k, v = lin(xn1)  ;  rope(q), rope(k)
 *     att = attention(q, k, v)                             (lse kept)
 *     xmid = x + lin_o(att)
 *     xn2 = rmsnorm(xmid) * ffn_norm                       (rstd2 kept)
 *     g, u = lin_gate(xn2), lin_up(xn2);  h = silu(g) * u
 *     xs[l+1] = xmid + lin_down(h)
 *   lin(x) = x W^T  (+ s (x A^T) B^T with LoRA; x A^T kept)
 *   loss: xf = rmsnorm(xs[L]) * out_norm; for the supervised rows (in chunks), logits =
 *     xf W_out^T and cross-entropy against the next token.
 *   backward runs the same list in reverse with the residual gradient in dres.
 * With recompute, only xs[] is kept for every block; backward re-runs block l's forward
 * into the single activation set just before its backward. */
#include "train_impl.h"

#include <math.h>
#include <string.h>


#define TRY(e)                                                                                  \
    do {                                                                                        \
        int rc_ = (e);                                                                          \
        if (rc_ < 0)                                                                            \
            return rc_;                                                                         \
    } while (0)

/* y (T, out) = lin(x (T, in)); lu receives x A^T for LoRA. */
static int lin_fwd(eng_train_t *t, const struct trn_lin *l, float *y, const float *x, float *lu,
                   int32_t T)
{
    eng_backend_t *be = t->be;
    eng_tensor_t ty = eng__act(y, l->out, T), tx = eng__act((float *)x, l->in, T);
    TRY(eng_op_matmul(be, &ty, &tx, l->w));
    if (l->a) {
        eng_tensor_t tu = eng__act(lu, t->R, T), tt = eng__act(t->tmp, l->out, T);
        TRY(eng_op_matmul(be, &tu, &tx, &l->a->t));
        TRY(eng_op_matmul(be, &tt, &tu, &l->b->t));
        TRY(eng_top_axpy(be, y, t->tmp, t->lora_scale, (int64_t)T * l->out));
    }
    return 0;
}

/* dx (T, in) (+)= dy lin's Jacobian; parameter gradients accumulate. x: the forward input. */
static int lin_bwd(eng_train_t *t, const struct trn_lin *l, float *dx, const float *dy,
                   const float *x, const float *lu, int32_t T, bool accumulate)
{
    eng_backend_t *be = t->be;
    TRY(eng_top_matmul_dx(be, dx, dy, T, l->w, 1.0f, accumulate));
    if (l->full)
        TRY(eng_top_matmul_dw(be, l->full->g, dy, x, T, l->out, l->in, 1.0f));
    if (l->a) {
        const float s = t->lora_scale;
        TRY(eng_top_matmul_dw(be, l->b->g, dy, lu, T, l->out, t->R, s));      // dB = s dy^T u
        TRY(eng_top_matmul_dx(be, t->dlu, dy, T, &l->b->t, s, false));        // du = s dy B
        TRY(eng_top_matmul_dw(be, l->a->g, t->dlu, x, T, t->R, l->in, 1.0f)); // dA = du^T x
        TRY(eng_top_matmul_dx(be, dx, t->dlu, T, &l->a->t, 1.0f, true));     // dx += du A
    }
    return 0;
}

static struct trn_acts *acts_of(eng_train_t *t, int64_t l)
{
    return &t->sets[t->n_sets == 1 ? 0 : l];
}

static struct eng_rope_params rope_params(const eng_train_t *t)
{
    const struct eng_hparams *hp = &t->m->hp;
    struct eng_rope_params rp = {.n_rot = hp->n_rot, .freq_base = hp->rope_freq_base,
                                 .freq_scale = hp->rope_freq_scale, .mode = hp->rope_mode};
    return rp;
}

static int block_fwd(eng_train_t *t, int64_t l)
{
    eng_backend_t *be = t->be;
    const struct trn_layer *ly = &t->layers[l];
    struct trn_acts *a = acts_of(t, l);
    const struct trn_batch *mb = &t->mb;
    const int32_t T = mb->T;
    const float eps = t->m->hp.rms_eps;
    const struct eng_rope_params rp = rope_params(t);
    const struct eng_train_seqs sq = {.n_seqs = mb->n_seqs, .start = mb->start};
    float *x = t->xs[l];
    TRY(eng_top_rmsnorm_fwd(be, a->xn1, a->rstd1, x, ly->attn_norm.w, T, t->C, eps));
    TRY(lin_fwd(t, &ly->lin[TRN_Q], a->q, a->xn1, a->lu[TRN_Q], T));
    TRY(lin_fwd(t, &ly->lin[TRN_K], a->k, a->xn1, a->lu[TRN_K], T));
    TRY(lin_fwd(t, &ly->lin[TRN_V], a->v, a->xn1, a->lu[TRN_V], T));
    TRY(eng_top_rope(be, a->q, mb->pos, T, (int32_t)t->NH, (int32_t)t->HS, &rp, false));
    TRY(eng_top_rope(be, a->k, mb->pos, T, (int32_t)t->NKV, (int32_t)t->HS, &rp, false));
    TRY(eng_top_attn_fwd(be, a->att, a->lse, a->q, a->k, a->v, T, &sq, (int32_t)t->NH,
                         (int32_t)t->NKV, (int32_t)t->HS, 1.0f / sqrtf((float)t->HS)));
    TRY(lin_fwd(t, &ly->lin[TRN_O], t->dxn, a->att, a->lu[TRN_O], T));
    eng_tensor_t txm = eng__act(a->xmid, t->C, T), tx = eng__act(x, t->C, T),
                 to = eng__act(t->dxn, t->C, T);
    TRY(eng_op_add(be, &txm, &tx, &to));
    TRY(eng_top_rmsnorm_fwd(be, a->xn2, a->rstd2, a->xmid, ly->ffn_norm.w, T, t->C, eps));
    TRY(lin_fwd(t, &ly->lin[TRN_GATE], a->g, a->xn2, a->lu[TRN_GATE], T));
    TRY(lin_fwd(t, &ly->lin[TRN_UP], a->u, a->xn2, a->lu[TRN_UP], T));
    eng_tensor_t th = eng__act(a->h, t->F, T), tg = eng__act(a->g, t->F, T),
                 tu = eng__act(a->u, t->F, T);
    TRY(eng_op_swiglu(be, &th, &tg, &tu));
    TRY(lin_fwd(t, &ly->lin[TRN_DOWN], t->dxn, a->h, a->lu[TRN_DOWN], T));
    eng_tensor_t tn = eng__act(t->xs[l + 1], t->C, T);
    TRY(eng_op_add(be, &tn, &txm, &to));
    return 0;
}

/* On entry dres = dL/d xs[l+1]; on exit dres = dL/d xs[l]. */
static int block_bwd(eng_train_t *t, int64_t l)
{
    eng_backend_t *be = t->be;
    const struct trn_layer *ly = &t->layers[l];
    struct trn_acts *a = acts_of(t, l);
    const struct trn_batch *mb = &t->mb;
    const int32_t T = mb->T;
    const struct eng_rope_params rp = rope_params(t);
    const struct eng_train_seqs sq = {.n_seqs = mb->n_seqs, .start = mb->start};
    // FFN: xs[l+1] = xmid + down(silu(gate(xn2)) * up(xn2))
    TRY(lin_bwd(t, &ly->lin[TRN_DOWN], t->dh, t->dres, a->h, a->lu[TRN_DOWN], T, false));
    TRY(eng_top_swiglu_bwd(be, t->dg, t->du, t->dh, a->g, a->u, (int64_t)T * t->F));
    TRY(lin_bwd(t, &ly->lin[TRN_GATE], t->dxn, t->dg, a->xn2, a->lu[TRN_GATE], T, false));
    TRY(lin_bwd(t, &ly->lin[TRN_UP], t->dxn, t->du, a->xn2, a->lu[TRN_UP], T, true));
    TRY(eng_top_rmsnorm_bwd(be, t->dres, ly->ffn_norm.p ? ly->ffn_norm.p->g : NULL, t->dxn,
                            a->xmid, a->rstd2, ly->ffn_norm.w, T, t->C, true));
    // attention: xmid = x + o(attn(rope(q(xn1)), rope(k(xn1)), v(xn1)))
    TRY(lin_bwd(t, &ly->lin[TRN_O], t->datt, t->dres, a->att, a->lu[TRN_O], T, false));
    TRY(eng_top_attn_bwd(be, t->dq, t->dk, t->dv, t->datt, a->att, a->lse, a->q, a->k, a->v, T,
                         &sq, (int32_t)t->NH, (int32_t)t->NKV, (int32_t)t->HS,
                         1.0f / sqrtf((float)t->HS)));
    TRY(eng_top_rope(be, t->dq, mb->pos, T, (int32_t)t->NH, (int32_t)t->HS, &rp, true));
    TRY(eng_top_rope(be, t->dk, mb->pos, T, (int32_t)t->NKV, (int32_t)t->HS, &rp, true));
    TRY(lin_bwd(t, &ly->lin[TRN_Q], t->dxn, t->dq, a->xn1, a->lu[TRN_Q], T, false));
    TRY(lin_bwd(t, &ly->lin[TRN_K], t->dxn, t->dk, a->xn1, a->lu[TRN_K], T, true));
    TRY(lin_bwd(t, &ly->lin[TRN_V], t->dxn, t->dv, a->xn1, a->lu[TRN_V], T, true));
    TRY(eng_top_rmsnorm_bwd(be, t->dres, ly->attn_norm.p ? ly->attn_norm.p->g : NULL, t->dxn,
                            t->xs[l], a->rstd1, ly->attn_norm.w, T, t->C, true));
    return 0;
}

/* Loss over the supervised rows, in chunks of logit_rows; with backward, dres = dL/dxs[L]. */
static int head(eng_train_t *t, bool backward, float grad_scale, double *loss_sum)
{
    eng_backend_t *be = t->be;
    const struct trn_batch *mb = &t->mb;
    const int32_t T = mb->T;
    const int64_t C = t->C, V = t->V;
    TRY(eng_top_rmsnorm_fwd(be, t->xf, t->rstdf, t->xs[t->L], t->out_norm.w, T, C,
                            t->m->hp.rms_eps));
    if (backward)
        TRY(eng_top_zero(be, t->dxn, sizeof(float) * (size_t)T * (size_t)C));
    for (int32_t r0 = 0; r0 < mb->n_sup; r0 += t->logit_rows) {
        const int32_t n = mb->n_sup - r0 < t->logit_rows ? mb->n_sup - r0 : t->logit_rows;
        TRY(eng_top_gather(be, t->xrows, t->xf, mb->rows + r0, n, C, T));
        eng_tensor_t tz = eng__act(t->logits, V, n), txr = eng__act(t->xrows, C, n);
        TRY(eng_op_matmul(be, &tz, &txr, t->output));
        double ls = 0.0;
        TRY(eng_top_xent(be, t->logits, mb->targets + r0, n, V, grad_scale, &ls));
        *loss_sum += ls;
        if (!backward)
            continue;
        TRY(eng_top_matmul_dx(be, t->drows, t->logits, n, t->output, 1.0f, false));
        if (t->p_out)
            TRY(eng_top_matmul_dw(be, t->p_out->g, t->logits, t->xrows, n, V, C, 1.0f));
        TRY(eng_top_scatter(be, t->dxn, t->drows, mb->rows + r0, n, C, T));
    }
    if (backward)
        TRY(eng_top_rmsnorm_bwd(be, t->dres, t->out_norm.p ? t->out_norm.p->g : NULL, t->dxn,
                                t->xs[t->L], t->rstdf, t->out_norm.w, T, C, false));
    return 0;
}

int trn_forward_backward(eng_train_t *t, bool backward, float grad_scale, double *loss_sum)
{
    eng_backend_t *be = t->be;
    const struct trn_batch *mb = &t->mb;
    TRY(eng_top_embed(be, t->xs[0], mb->tokens, mb->T, t->tok_embd));
    for (int64_t l = 0; l < t->L; l++)
        TRY(block_fwd(t, l));
    TRY(head(t, backward, grad_scale, loss_sum));
    if (!backward)
        return 0;
    for (int64_t l = t->L - 1; l >= 0; l--) {
        if (t->n_sets == 1 && l != t->L - 1)
            TRY(block_fwd(t, l));   // recompute: the set holds block L-1's activations
        TRY(block_bwd(t, l));
    }
    if (t->p_tok)
        TRY(eng_top_embed_bwd(be, t->p_tok->g, t->V, mb->tokens, mb->T, t->dres, t->C));
    return 0;
}

/* --- activation memory ---------------------------------------------------------------- */

static int32_t logit_rows_for(const eng_train_t *t, int32_t tmax)
{
    // about 32 MiB of logits at most, at least 16 rows
    int64_t r = ((int64_t)32 << 20) / 4 / t->V;
    if (r < 16)
        r = 16;
    return (int32_t)(r < tmax ? r : tmax);
}

/* Lays out the activation buffer for micro-batches of tmax tokens: returns the bytes it
 * needs, and assigns the views when base is non-NULL. One function for both, so the size and
 * the layout cannot disagree. */
static size_t act_layout(eng_train_t *t, int32_t tmax, int32_t n_sets, char *base)
{
    const int64_t T = tmax;
    const int32_t lr = logit_rows_for(t, tmax);
    const int64_t big = t->Q > t->F ? (t->Q > t->C ? t->Q : t->C) : (t->F > t->C ? t->F : t->C);
    size_t off = 0;
#define TAKE(dst, n)                                                                            \
    do {                                                                                        \
        if (base)                                                                               \
            (dst) = (float *)(void *)(base + off);                                              \
        off += ((size_t)(n) * sizeof(float) + 63) & ~(size_t)63;                                \
    } while (0)
    float *unused;
    for (int64_t l = 0; l <= t->L; l++) {
        float **dst = base ? &t->xs[l] : &unused;
        TAKE(*dst, T * t->C);
    }
    for (int32_t s = 0; s < n_sets; s++) {
        struct trn_acts dummy, *a = base ? &t->sets[s] : &dummy;
        TAKE(a->xn1, T * t->C);
        TAKE(a->rstd1, T);
        TAKE(a->q, T * t->Q);
        TAKE(a->k, T * t->KV);
        TAKE(a->v, T * t->KV);
        TAKE(a->att, T * t->Q);
        TAKE(a->lse, T * t->NH);
        TAKE(a->xmid, T * t->C);
        TAKE(a->xn2, T * t->C);
        TAKE(a->rstd2, T);
        TAKE(a->g, T * t->F);
        TAKE(a->u, T * t->F);
        TAKE(a->h, T * t->F);
        for (int i = 0; i < TRN_NLIN; i++) {
            a->lu[i] = NULL;
            if (t->layers[0].lin[i].a)
                TAKE(a->lu[i], T * t->R);
        }
    }
    eng_train_t dummy_t, *d = base ? t : &dummy_t;
    TAKE(d->xf, T * t->C);
    TAKE(d->rstdf, T);
    TAKE(d->dres, T * t->C);
    TAKE(d->dxn, T * t->C);
    TAKE(d->dq, T * t->Q);
    TAKE(d->datt, T * t->Q);
    TAKE(d->dk, T * t->KV);
    TAKE(d->dv, T * t->KV);
    TAKE(d->dh, T * t->F);
    TAKE(d->dg, T * t->F);
    TAKE(d->du, T * t->F);
    TAKE(d->tmp, T * big);
    TAKE(d->dlu, T * (t->R > 0 ? t->R : 1));
    TAKE(d->logits, (int64_t)lr * t->V);
    TAKE(d->xrows, (int64_t)lr * t->C);
    TAKE(d->drows, (int64_t)lr * t->C);
#undef TAKE
    (void)unused;
    return off;
}

size_t trn_act_bytes(const eng_train_t *t, int32_t tmax, int32_t n_sets)
{
    return act_layout((eng_train_t *)t, tmax, n_sets, NULL);
}

int trn_act_alloc(eng_train_t *t)
{
    const size_t bytes = trn_act_bytes(t, t->tmax, t->n_sets);
    int rc = eng_buffer_new(t->be, bytes, ENG_BUF_COMPUTE, &t->abuf);
    if (rc < 0)
        return rc;
    t->abuf_bytes = bytes;
    t->logit_rows = logit_rows_for(t, t->tmax);
    act_layout(t, t->tmax, t->n_sets, t->abuf->base);
    return 0;
}
