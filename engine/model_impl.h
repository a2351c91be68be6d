/* engine/model_impl.h: the Llama model's weights and the context's internals, shared by
 * model.c (loading), ctx.c (KV blocks, steps) and forward.c (the layer list). Not public. */
#ifndef ORTHOD_ENGINE_MODEL_IMPL_H
#define ORTHOD_ENGINE_MODEL_IMPL_H

#include "engine.h"

/* The weights of one layer, one row each: X(field, GGUF name "blk.N.<name>.weight", n_dims,
 * ne0, ne1) with the dimensions C (n_embd), Q (n_head * head_dim), KV (n_head_kv *
 * head_dim), F (n_ff) or 1. 1-D weights are the RMSNorm weights (held as F32). This one
 * table makes struct eng_layer and drives the loader, the weight list and free (model.c);
 * a new per-layer weight is one new row. */
#define ENG_LAYER_WEIGHTS(X)                \
    X(attn_norm, "attn_norm",   1, C, 1)    \
    X(wq,        "attn_q",      2, C, Q)    \
    X(wk,        "attn_k",      2, C, KV)   \
    X(wv,        "attn_v",      2, C, KV)   \
    X(wo,        "attn_output", 2, Q, C)    \
    X(ffn_norm,  "ffn_norm",    1, C, 1)    \
    X(w_gate,    "ffn_gate",    2, C, F)    \
    X(w_up,      "ffn_up",      2, C, F)    \
    X(w_down,    "ffn_down",    2, F, C)

struct eng_layer {
#define ENG_LAYER_FIELD(field, name, n_dims, ne0, ne1) eng_tensor_t field;
    ENG_LAYER_WEIGHTS(ENG_LAYER_FIELD)
#undef ENG_LAYER_FIELD
};

struct eng_model {
    eng_gguf_t *file;            /* owns the mmap the weights point into */
    eng_backend_t *be;           /* borrowed; NULL for vocab-only */
    struct eng_hparams hp;
    eng_vocab_t *vocab;
    struct log_sink log;
    eng_tensor_t tok_embd;       /* ne = {C, V} */
    eng_tensor_t output_norm;    /* (C) F32 */
    eng_tensor_t output;         /* ne = {C, V}; shares tok_embd's bytes when tied */
    struct eng_layer *layers;    /* (L) */
    float *norms_f32;            /* host F32 copies of the non-F32 norm weights, one block */
    eng_tensor_t **weights;      /* every weight once (output left out when tied) */
    size_t n_weights;
    eng_buffer_t *weight_block;  /* the weights on the backend (NULL when used in place) */
    bool prepared;               /* weights were handed to the backend */
    struct eng_model_info info;
};

/* A contiguous F32 activation view of `rows` rows of `cols` at data (forward.c and the
 * training pass, engine/train/model_train.c). */
static inline eng_tensor_t eng__act(float *data, int64_t cols, int64_t rows)
{
    eng_tensor_t t;
    int64_t ne[2] = {cols, rows};
    eng_tensor_init(&t, ENG_DTYPE_F32, 2, ne);
    t.data = data;
    return t;
}

/* model.c: eng_model_from_gguf with the path used for the model's display name. */
int eng__model_from_gguf_named(eng_gguf_t *g, const struct eng_model_params *p, const char *path,
                               eng_model_t **out, struct errbuf *eb);

/* forward.c: runs one step over the model (the step is already validated and begun).
 * Writes logits of the step's out rows into the context's host logits buffer. */
int eng__forward(eng_ctx_t *c);

struct eng_ctx {
    eng_model_t *m;
    eng_backend_t *be;
    struct eng_ctx_params p;
    int32_t n_out_max;
    eng_kv_storage_t *kv;
    /* KV block allocator */
    int32_t *free_blocks;        /* stack of free physical block ids */
    int32_t n_free;
    int32_t max_blocks_seq;      /* block-table width: ceil(n_ctx / block_size) */
    /* sequences */
    bool *seq_used;              /* (n_seq_max) */
    int32_t *seq_len;            /* (n_seq_max) */
    int32_t *seq_blocks;         /* (n_seq_max, max_blocks_seq), -1 = none */
    /* step arrays (host), sized for n_batch tokens and n_seq_max sequences */
    int32_t *st_tokens, *st_pos, *st_seq, *st_slot, *st_out;
    int32_t *st_seq_len, *st_block_table, *st_seq_map;
    struct eng_step step;
    /* activations: one backend buffer, views re-shaped per step */
    eng_buffer_t *act;
    float *act_x, *act_xb, *act_q, *act_k, *act_v, *act_att, *act_hb, *act_hb2, *act_xo,
        *act_logits;            /* device addresses inside act */
    float *logits;               /* host (n_out_max, V) */
    int32_t n_logits;
};

#endif
