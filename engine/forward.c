/* engine/forward.c: the Llama layer list, written once against the backend table.
 *   x = embed(tokens)
 *   per layer: x += Wo attn(rope(Wq n(x)), rope(Wk n(x)), Wv n(x))
 *              x += Wdown (silu(Wgate n(x)) * Wup n(x))
 *   logits = Wout n(x[out rows])
 * In the last layer only the rows that need logits continue after attention (as
 * llama.cpp does), so a prefill does not run the last FFN for every prompt token. */
#include "model_impl.h"

#include <math.h>


int eng__forward(eng_ctx_t *c)
{
    eng_model_t *m = c->m;
    eng_backend_t *be = c->be;
    const struct eng_hparams *hp = &m->hp;
    const struct eng_step *st = &c->step;
    const int64_t T = st->n_tokens, O = st->n_out, C = hp->n_embd, F = hp->n_ff,
                  Q = (int64_t)hp->n_head * hp->head_dim,
                  KV = (int64_t)hp->n_head_kv * hp->head_dim;
    const struct eng_rope_params rp = {.n_rot = hp->n_rot, .freq_base = hp->rope_freq_base,
                                       .freq_scale = hp->rope_freq_scale, .mode = hp->rope_mode};
    const float scale = 1.0f / sqrtf((float)hp->head_dim);
    int rc;
#define TRY(e)                                                                                  \
    do {                                                                                        \
        if ((rc = (e)) < 0)                                                                     \
            goto done;                                                                          \
    } while (0)

    if ((rc = eng_step_begin(be, st)) < 0)
        return rc;
    eng_tensor_t x = eng__act(c->act_x, C, T), xb = eng__act(c->act_xb, C, T);
    eng_tensor_t q = eng__act(c->act_q, Q, T), k = eng__act(c->act_k, KV, T),
                 v = eng__act(c->act_v, KV, T);
    eng_tensor_t att = eng__act(c->act_att, Q, T);
    TRY(eng_op_embed(be, &x, &m->tok_embd));
    for (int l = 0; l < hp->n_layer; l++) {
        const struct eng_layer *L = &m->layers[l];
        TRY(eng_op_rmsnorm(be, &xb, &x, &L->attn_norm, hp->rms_eps));
        eng_tensor_t *const qkv[3] = {&q, &k, &v};
        const eng_tensor_t *const wqkv[3] = {&L->wq, &L->wk, &L->wv};
        TRY(eng_op_matmul_n(be, 3, qkv, &xb, wqkv));
        TRY(eng_op_rope(be, &q, hp->n_head, &rp));
        TRY(eng_op_rope(be, &k, hp->n_head_kv, &rp));
        TRY(eng_op_kv_write(be, c->kv, l, &k, &v));
        TRY(eng_op_attention(be, &att, &q, c->kv, l, hp->n_head, scale));
        int64_t R = T;
        eng_tensor_t *xr = &x;
        eng_tensor_t xo, atto;
        if (l == hp->n_layer - 1 && O < T) {
            // only the output rows go on: gather them from the residual and attention
            if (O == 0)
                break;
            xo = eng__act(c->act_xo, C, O);
            atto = eng__act(c->act_q, Q, O);        // q is dead after attention
            TRY(eng_op_gather_rows(be, &xo, &x));
            TRY(eng_op_gather_rows(be, &atto, &att));
            att = atto;
            xr = &xo;
            R = O;
        }
        eng_tensor_t xbr = eng__act(c->act_xb, C, R);
        eng_tensor_t hb = eng__act(c->act_hb, F, R), hb2 = eng__act(c->act_hb2, F, R);
        TRY(eng_op_matmul(be, &xbr, &att, &L->wo));
        TRY(eng_op_add(be, xr, xr, &xbr));
        TRY(eng_op_rmsnorm(be, &xbr, xr, &L->ffn_norm, hp->rms_eps));
        eng_tensor_t *const gu[2] = {&hb, &hb2};
        const eng_tensor_t *const wgu[2] = {&L->w_gate, &L->w_up};
        TRY(eng_op_matmul_n(be, 2, gu, &xbr, wgu));
        TRY(eng_op_swiglu(be, &hb, &hb, &hb2));
        TRY(eng_op_matmul(be, &xbr, &hb, &L->w_down));
        TRY(eng_op_add(be, xr, xr, &xbr));
        if (xr != &x)
            x = *xr;    // the residual now holds only the output rows
    }
    if (O > 0) {
        eng_tensor_t xo = eng__act(c->act_xo, C, O), lg = eng__act(c->act_logits, hp->n_vocab, O);
        if (x.data != xo.data)    // O == T: the residual still has every row
            TRY(eng_op_gather_rows(be, &xo, &x));
        TRY(eng_op_rmsnorm(be, &xo, &xo, &m->output_norm, hp->rms_eps));
        TRY(eng_op_matmul(be, &lg, &xo, &m->output));
        TRY(eng_tensor_get(be, &lg, c->logits, 0, (size_t)O * (size_t)hp->n_vocab * sizeof(float)));
    }
done:;
    int rc2 = eng_step_end(be);
    return rc < 0 ? rc : rc2;
#undef TRY
}
