/* engine/engine.h: the engine's public API: models, contexts (KV cache + scratch on a
 * backend), batched forward steps, and the pieces a program needs around them.
 * The server is one client; `orthod generate`, `orthod bench` and the tests are others.
 * No networking, no JSON (the Hugging Face loader in hf.c is the one place that reads
 * JSON files, through jansson, and is compiled only when jansson is available).
 * Thread: a model and its contexts belong to one thread at a time (the engine thread);
 * the vocab is immutable and may be read from any thread. Errors: 0 or ERR_*. */
#ifndef ORTHOD_ENGINE_ENGINE_H
#define ORTHOD_ENGINE_ENGINE_H

#include "../common/err.h"
#include "../common/log.h"
#include "backend.h"
#include "format/gguf.h"
#include "format/randmodel.h"
#include "sampler.h"
#include "tok/tokenizer.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* --- models ---------------------------------------------------------------------------- */
typedef struct eng_model eng_model_t;

struct eng_hparams {
    char arch[32];            /* "llama" */
    int32_t n_vocab;          /* V */
    int32_t n_ctx_train;
    int32_t n_embd;           /* C */
    int32_t n_layer;          /* L */
    int32_t n_head;           /* NH */
    int32_t n_head_kv;        /* NKV (GQA when < NH) */
    int32_t head_dim;         /* HS = C / NH */
    int32_t n_ff;             /* F */
    int32_t n_rot;            /* rotated dims per head */
    float rope_freq_base;
    float rope_freq_scale;
    enum eng_rope_mode rope_mode;
    float rms_eps;
    bool tied_output;         /* output projection shares token_embd */
};

struct eng_model_params {
    eng_backend_t *be;        /* borrowed; weights are prepared for this backend */
    struct log_sink log;
    bool vocab_only;          /* load the tokenizer only (no backend needed) */
};

/* Loads a GGUF file or a Hugging Face folder (config.json, model.safetensors or shards,
 * tokenizer.json). Unknown architectures: ERR_UNSUPPORTED naming the architecture. */
int eng_model_load(const char *path, const struct eng_model_params *p, eng_model_t **out,
                   struct errbuf *eb);
/* Same from an already-open model file; takes ownership of g on success and failure. */
int eng_model_from_gguf(eng_gguf_t *g, const struct eng_model_params *p, eng_model_t **out,
                        struct errbuf *eb);
void eng_model_free(eng_model_t *m);         /* NULL ok; contexts must be freed first */

const struct eng_hparams *eng_model_hparams(const eng_model_t *m);
const eng_vocab_t *eng_model_vocab(const eng_model_t *m);
struct eng_model_info {
    char name[128];           /* general.name, else the file's base name */
    char arch[32];
    char dtype[16];           /* most common weight dtype, e.g. "q8_0" */
    int64_t n_params;
    size_t weight_bytes;      /* bytes of weights the forward pass reads */
    int32_t n_vocab, n_ctx_train, n_embd, n_layer;
};
void eng_model_info(const eng_model_t *m, struct eng_model_info *out);

/* --- contexts: a model on a backend with a KV cache, for batched steps ------------------ */
typedef struct eng_ctx eng_ctx_t;

struct eng_ctx_params {
    int32_t n_ctx;            /* max tokens per sequence (<= n_ctx_train unless forced) */
    int32_t n_seq_max;        /* sequences alive at once */
    int32_t n_batch;          /* max tokens in one step */
    int32_t n_out_max;        /* max tokens with logits in one step (0: n_seq_max) */
    enum eng_kv_format kv_format;
    int32_t kv_block_size;    /* tokens per KV block (16) */
    int32_t kv_blocks;        /* 0: enough for n_seq_max full sequences */
};
void eng_ctx_params_default(struct eng_ctx_params *p);
int eng_ctx_new(eng_model_t *m, const struct eng_ctx_params *p, eng_ctx_t **out,
                struct errbuf *eb);
void eng_ctx_free(eng_ctx_t *c);

/* Sequences: ids 0..n_seq_max-1. A new sequence is empty. */
int eng_ctx_seq_new(eng_ctx_t *c, int32_t *seq_id);      /* ERR_BUSY when all in use */
void eng_ctx_seq_free(eng_ctx_t *c, int32_t seq_id);     /* frees its KV blocks */
int32_t eng_ctx_seq_len(const eng_ctx_t *c, int32_t seq_id);
/* Drops tokens past new_len (new_len <= len). */
int eng_ctx_seq_truncate(eng_ctx_t *c, int32_t seq_id, int32_t new_len);
int32_t eng_ctx_free_blocks(const eng_ctx_t *c);

/* One step: n tokens, each appended to its sequence at the next position. Logits are
 * computed for tokens with want_logits[i] (NULL: the last token of each sequence in the
 * batch). ERR_TOOLARGE if n > n_batch or a sequence would pass n_ctx; ERR_BUSY if KV
 * blocks ran out (nothing is appended then). */
struct eng_batch {
    int32_t n;
    const int32_t *tokens;    /* (n) */
    const int32_t *seq_id;    /* (n) */
    const bool *want_logits;  /* (n) or NULL */
};
int eng_ctx_decode(eng_ctx_t *c, const struct eng_batch *b);
/* Logits (n_vocab floats) of the i-th token that asked for them in the last step. */
const float *eng_ctx_logits(const eng_ctx_t *c, int32_t i);
int32_t eng_ctx_n_logits(const eng_ctx_t *c);

#endif
