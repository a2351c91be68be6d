/* engine/model_impl.h: the Llama model's weights and the context's internals, shared by
 * model.c (loading), ctx.c (KV blocks, steps) and forward.c (the layer list). Not public. */
#ifndef ORTHOD_ENGINE_MODEL_IMPL_H
#define ORTHOD_ENGINE_MODEL_IMPL_H

#include "engine.h"

struct eng_layer {
    eng_tensor_t attn_norm;  /* (C) F32 */
    eng_tensor_t wq;         /* (NH*HS, C): ne = {C, NH*HS} */
    eng_tensor_t wk;         /* ne = {C, NKV*HS} */
    eng_tensor_t wv;         /* ne = {C, NKV*HS} */
    eng_tensor_t wo;         /* ne = {NH*HS, C} */
    eng_tensor_t ffn_norm;   /* (C) F32 */
    eng_tensor_t w_gate;     /* ne = {C, F} */
    eng_tensor_t w_up;       /* ne = {C, F} */
    eng_tensor_t w_down;     /* ne = {F, C} */
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
    float **owned;               /* host F32 copies made for non-F32 norm weights */
    int n_owned;
    bool prepared;               /* weights were handed to the backend */
    struct eng_model_info info;
};

/* model.c: eng_model_from_gguf with the path used for the model's display name. */
int eng__model_from_gguf_named(eng_gguf_t *g, const struct eng_model_params *p, const char *path,
                               eng_model_t **out, struct errbuf *eb);

/* forward.c: runs one step over the model (the step is already validated and begun).
 * Writes logits of the step's out rows into the context's host logits buffer. */
struct eng_ctx_scratch;
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
