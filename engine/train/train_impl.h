/* engine/train/train_impl.h: internals of a training job, shared by train.c (the job, its
 * loop and optimizer), model_train.c (forward and backward per block), ckpt.c
 * (checkpoints) and export.c (adapters, models). Tests include it to reach the gradients.
 * Not a public API. */
#ifndef ORTHOD_ENGINE_TRAIN_IMPL_H
#define ORTHOD_ENGINE_TRAIN_IMPL_H

#include "../model_impl.h"
#include "train.h"
#include "train_ops.h"

#include <signal.h>
#include <stdatomic.h>

#define TRN_NAME_MAX 64          /* GGUF tensor names: 63 characters and the NUL */

/* A trainable tensor: F32 weights, gradient, AdamW moments (device memory, inside the
 * job's parameter buffer), and the tensor view the forward pass multiplies with. */
struct trn_param {
    char name[TRN_NAME_MAX];     /* GGUF name: "blk.0.attn_q.weight", "...weight.lora_a" */
    int64_t ne0, ne1;            /* ne0 innermost (a matrix with N outputs of K: {K, N}) */
    float *w, *g, *m, *v;
    uint16_t *w16;               /* BF16 compute copy (full FT with bf16_compute), or NULL */
    bool decay;                  /* weight decay applies (matrices; not norms) */
    eng_tensor_t t;              /* view of w (F32) or w16 (BF16) */
};

static inline int64_t trn_param_n(const struct trn_param *p)
{
    return p->ne0 * p->ne1;
}

/* One linear layer of a block: the weight the pass multiplies with (frozen base or a
 * trainable view), its full-FT parameter, or its LoRA pair. */
struct trn_lin {
    const eng_tensor_t *w;
    struct trn_param *full;      /* full FT: gradient target of w */
    struct trn_param *a, *b;     /* LoRA: A (r, in) = ne {in, r}; B (out, r) = ne {r, out} */
    int64_t in, out;
};

enum { TRN_Q, TRN_K, TRN_V, TRN_O, TRN_GATE, TRN_UP, TRN_DOWN, TRN_NLIN };

struct trn_norm {
    const float *w;              /* (C) F32 weights the pass reads */
    struct trn_param *p;         /* trainable (full FT) or NULL */
};

struct trn_layer {
    struct trn_norm attn_norm, ffn_norm;
    struct trn_lin lin[TRN_NLIN];
};

/* Activations of one block kept for backward (views into the activation buffer). */
struct trn_acts {
    float *xn1, *rstd1, *q, *k, *v, *att, *lse, *xmid, *xn2, *rstd2, *g, *u, *h;
    float *lu[TRN_NLIN];         /* LoRA: x A^T (T, r) per target */
};

/* A packed micro-batch (host arrays, capacity micro_batch_tokens). */
struct trn_batch {
    int32_t T;                   /* tokens */
    int32_t *tokens, *pos;       /* (T) */
    int32_t *start;              /* (n_seqs + 1) */
    int32_t n_seqs;
    int32_t *rows, *targets;     /* (n_sup) supervised rows and their next tokens */
    int32_t n_sup;
};

struct eng_train {
    eng_model_t *m;
    eng_backend_t *be;
    struct eng_train_config cfg;
    const eng_train_data_t *train, *eval;
    struct eng_train_callbacks cb;
    /* shapes */
    int64_t C, F, Q, KV, V, L, NH, NKV, HS, R;   /* R: LoRA rank */
    float lora_scale;
    /* parameters */
    struct trn_param *params;
    int n_params;
    int64_t n_trainable;
    eng_buffer_t *pbuf;          /* weights, grads, moments, BF16 copies */
    size_t pbuf_bytes;
    struct trn_layer *layers;
    struct trn_norm out_norm;
    const eng_tensor_t *tok_embd, *output;
    struct trn_param *p_tok, *p_out;   /* full FT (p_out == p_tok when tied) */
    /* activations */
    eng_buffer_t *abuf;
    size_t abuf_bytes;
    int32_t tmax;                /* micro_batch_tokens */
    int32_t n_sets;              /* L, or 1 with recompute */
    float **xs;                  /* (L + 1) residual stream: input of each block, final */
    struct trn_acts *sets;
    float *xf, *rstdf, *dres, *dxn, *dq, *dk, *dv, *datt, *dh, *dg, *du, *tmp, *dlu, *logits,
        *xrows, *drows;
    int32_t logit_rows;          /* rows of logits computed at once */
    struct trn_batch mb;
    /* data order */
    int64_t n_samples;
    int64_t *perm;               /* permutation of the current epoch */
    int32_t perm_epoch;          /* epoch perm was made for (-1: none) */
    int64_t *batch_idx;          /* the current effective batch's samples */
    int32_t *bin_of;             /* packing scratch */
    /* progress */
    int64_t step, total_steps, steps_per_epoch;
    int32_t epoch;
    int64_t pos;                 /* next sample of the epoch's permutation */
    int64_t samples_seen, tokens_seen;
    uint64_t rng;                /* saved in checkpoints */
    double last_loss, last_gnorm, last_eval;
    double run_start, elapsed_before;
    _Atomic int stop;
    bool done;
};

/* model_train.c */
/* Forward over the packed micro-batch t->mb; with backward, accumulates the gradient of
 * grad_scale * (sum of CE over the supervised rows) into the parameters' g. Adds the
 * micro-batch's summed CE to *loss_sum. */
int trn_forward_backward(eng_train_t *t, bool backward, float grad_scale, double *loss_sum);
/* Activation bytes for a micro-batch capacity (for planning and info). */
size_t trn_act_bytes(const eng_train_t *t, int32_t tmax, int32_t n_sets);
int trn_act_alloc(eng_train_t *t);

/* train.c */
/* Copies n floats between a device pointer of the job's backend and the host. */
int trn_dev_get(eng_train_t *t, const float *dev, float *host, int64_t n);
int trn_dev_set(eng_train_t *t, float *dev, const float *host, int64_t n);
/* After weights change outside the optimizer (resume, init): refresh BF16 copies. */
int trn_sync_bf16(eng_train_t *t);
/* Makes (or reuses) the permutation of epoch e. */
int trn_epoch_perm(eng_train_t *t, int32_t e);
double trn_now(void);

/* ckpt.c */
int trn_ckpt_save(eng_train_t *t, char *path, size_t cap, struct errbuf *eb);
int trn_ckpt_load(eng_train_t *t, const char *dir, struct errbuf *eb);
int trn_ckpt_latest(const char *out_dir, char *path, size_t cap);

/* data.c: the chat templates the loader knows */
extern const char *const eng_chat_template_names[];

#endif
