/* engine/train/train.h: the training engine's public API: datasets of supervised token
 * sequences, and training jobs (LoRA or full fine-tuning, or pretraining from scratch) of a
 * Llama-family model on a backend, with AdamW, clipping, schedules, gradient accumulation,
 * checkpoints and exports (PEFT + GGUF LoRA adapters, GGUF models).
 *
 * Owns: eng_train_data_t (tokenized samples with a loss mask), eng_train_t (one job: the
 * trainable parameters, optimizer state, data order, RNG), the event stream of a job.
 * Does not own: the model (borrowed; its weights are read, never written), the backend,
 * the job's identity or durable records (the daemon's jobs API keeps those in SQLite and
 * drives a job through this API; `orthod train` is the other driver).
 *
 * A job's life:
 *     eng_train_config_default(&cfg);  ... set fields ...
 *     eng_train_data_load_jsonl(vocab, "train.jsonl", &dopt, &train, &eb);
 *     eng_train_new(model, be, &cfg, train, eval, &cb, &job, &eb);
 *     eng_train_resume(job, NULL, &eb);         (optional: continue from cfg.out_dir)
 *     eng_train_run(job, &eb);                  (or eng_train_step in a loop)
 *     eng_train_export(job, dir, &eb);          (adapter or model files)
 *     eng_train_free(job);
 *
 * Thread: a job, its model and backend belong to one thread (the trainer's) while it runs;
 * eng_train_request_stop may be called from any thread or a signal handler. A backend is
 * not shared between threads: to train while serving, load the model a second time on a
 * backend of its own (eng_cpu_backend_new with the threads the job may use) for the job.
 * Errors: 0 or a negative ERR_* (common/err.h) with a message in the errbuf that tells
 * the operator what to fix ("train.jsonl line 17: 'messages' has no assistant turn"). */
#ifndef ORTHOD_ENGINE_TRAIN_H
#define ORTHOD_ENGINE_TRAIN_H

#include "../engine.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* --- datasets ---------------------------------------------------------------------------
 * A dataset is a list of samples; sample i is n tokens and a loss mask: mask[j] = 1 means
 * token j is a target (the loss includes -log p(tokens[j] | tokens[0..j-1])); mask[0] is
 * ignored (the first token has no context). Chat data supervises assistant tokens only
 * (rendered through the model's chat template); prompt/completion data supervises the
 * completion; plain text (pretraining) supervises every token. */
typedef struct eng_train_data eng_train_data_t;

enum eng_data_format {
    ENG_DATA_AUTO = 0,         /* decide per line: "messages" -> chat, "prompt" -> completion */
    ENG_DATA_CHAT = 1,         /* {"messages": [{"role", "content"}, ...]} */
    ENG_DATA_COMPLETION = 2,   /* {"prompt": "...", "completion": "..."} */
    ENG_DATA_TEXT = 3,         /* a plain UTF-8 text file, cut into windows of max_seq_len */
};

struct eng_data_opts {
    enum eng_data_format format;
    int32_t max_seq_len;       /* tokens per sample; longer samples are cut (chat/completion:
                                * truncated at the end, and counted in n_truncated) */
    int64_t max_samples;       /* refuse files with more lines (ERR_TOOLARGE); 0 = 10^7 */
    int64_t max_bytes;         /* refuse larger files (ERR_TOOLARGE); 0 = 4 GiB */
    bool add_bos;              /* prepend the vocab's BOS when it has one (default true) */
    bool add_eos;              /* append EOS after each completion / assistant turn (true) */
    const char *chat_template; /* a family name (chatml, llama2, llama3, zephyr, plain) or a
                                * Jinja template recognized by family; NULL: chatml.
                                * eng_train_chat_template_of() picks the model's */
};
void eng_data_opts_default(struct eng_data_opts *o);   /* AUTO, 1024, add_bos, add_eos */
/* The chat template family of a model's tokenizer.chat_template into name ("plain" when the
 * model has none: "role: content" lines, EOS after each assistant turn). ERR_UNSUPPORTED
 * when the template is of no known family (name one with eng_data_opts.chat_template). */
int eng_train_chat_template_of(const eng_model_t *m, char *name, size_t cap);

int eng_train_data_new(eng_train_data_t **out);
void eng_train_data_free(eng_train_data_t *d);        /* NULL ok */
/* Appends one sample (copied). loss_mask NULL: every token after the first is a target.
 * ERR_INVAL for n < 2 or a sample with no target. */
int eng_train_data_add(eng_train_data_t *d, const int32_t *tokens, const uint8_t *loss_mask,
                       int32_t n);
/* Reads a JSONL file (chat or prompt/completion, one object per line; blank lines are
 * skipped) or a text file, tokenizes with `v`. A bad line fails the whole load with
 * ERR_CORRUPT and a message naming the line and what is wrong. Needs jansson for JSONL
 * (ERR_UNSUPPORTED in builds without it). */
int eng_train_data_load(const eng_vocab_t *v, const char *path, const struct eng_data_opts *o,
                        eng_train_data_t **out, struct errbuf *eb);
/* Checks a JSONL upload line by line without a tokenizer (the jobs API's validating_files
 * step): every non-blank line is a JSON object in `format` (AUTO: either), chat turns have
 * a role in system|user|assistant and string content, and at least one assistant turn;
 * prompt/completion are strings and the completion is not empty. ERR_CORRUPT with
 * "line N: ..." on the first bad line; *n_lines (may be NULL) gets the sample count. */
int eng_train_data_check_jsonl(const char *text, size_t len, enum eng_data_format format,
                               int64_t *n_lines, struct errbuf *eb);
/* Same from memory (name is used in messages only). */
int eng_train_data_load_mem(const eng_vocab_t *v, const char *name, const char *text,
                            size_t len, const struct eng_data_opts *o, eng_train_data_t **out,
                            struct errbuf *eb);
/* Splits off every k-th sample (deterministic) into a held-out set; k >= 2. */
int eng_train_data_split(eng_train_data_t *d, int32_t k, eng_train_data_t **heldout);

struct eng_train_data_stats {
    int64_t n_samples;
    int64_t n_tokens;
    int64_t n_supervised;      /* tokens with mask 1 (excluding position 0) */
    int64_t n_truncated;       /* samples cut at max_seq_len */
    int32_t max_len;
};
void eng_train_data_stats(const eng_train_data_t *d, struct eng_train_data_stats *out);
/* Sample i (0 <= i < n_samples); pointers valid until the dataset is freed or changed. */
int eng_train_data_get(const eng_train_data_t *d, int64_t i, const int32_t **tokens,
                       const uint8_t **mask, int32_t *n);

/* --- a training job ------------------------------------------------------------------ */
typedef struct eng_train eng_train_t;

enum eng_train_method {
    ENG_TRAIN_LORA = 0,        /* frozen base (any compute dtype), trainable A, B (F32) */
    ENG_TRAIN_FULL = 1,        /* every weight trainable: F32 master copies */
};

/* LoRA targets: the linear layers of each block that get an adapter. */
enum eng_lora_target {
    ENG_LORA_Q = 1u << 0,
    ENG_LORA_K = 1u << 1,
    ENG_LORA_V = 1u << 2,
    ENG_LORA_O = 1u << 3,
    ENG_LORA_GATE = 1u << 4,
    ENG_LORA_UP = 1u << 5,
    ENG_LORA_DOWN = 1u << 6,
    ENG_LORA_ALL = 0x7f,
};
/* Parses "q,k,v,o,gate,up,down" (also "all", "attn" = q,k,v,o, "mlp" = gate,up,down;
 * HF names q_proj, ..., down_proj are accepted). */
int eng_lora_targets_parse(const char *s, uint32_t *out);
/* "q,v" into buf. */
void eng_lora_targets_str(uint32_t targets, char *buf, size_t cap);

enum eng_lr_schedule {
    ENG_SCHED_CONSTANT = 0,    /* lr after warmup */
    ENG_SCHED_LINEAR = 1,      /* warmup, then linear decay to min_lr_ratio * lr */
    ENG_SCHED_COSINE = 2,      /* warmup, then cosine decay to min_lr_ratio * lr */
};
const char *eng_lr_schedule_name(enum eng_lr_schedule s);
int eng_lr_schedule_parse(const char *s, enum eng_lr_schedule *out);

struct eng_train_config {
    enum eng_train_method method;
    /* LoRA */
    uint32_t lora_targets;     /* ENG_LORA_* bits; default q,k,v,o,gate,up,down */
    int32_t lora_rank;         /* r, default 8 */
    float lora_alpha;          /* default 16; scale = alpha / r, or alpha / sqrt(r) (rsLoRA) */
    bool lora_rslora;
    /* optimizer: AdamW, decoupled weight decay (torch.optim.AdamW) */
    float lr;                  /* peak learning rate */
    enum eng_lr_schedule schedule;
    int64_t warmup_steps;      /* linear from lr/ (warmup+1) up to lr; 0 = none */
    float min_lr_ratio;        /* end of a linear/cosine decay, as a fraction of lr */
    float beta1, beta2, eps;   /* 0.9, 0.95, 1e-8 (the SFT study's) */
    float weight_decay;        /* 0; decoupled, on every trainable matrix (LoRA A and B,
                                * weight matrices, embeddings), never on norm weights */
    float clip_norm;           /* global-norm clipping; <= 0: none (the norm is reported) */
    /* batches */
    int32_t batch_samples;     /* effective batch in samples, reached by accumulation */
    int32_t micro_batch_tokens;/* tokens in one packed forward/backward (>= max sample) */
    int32_t epochs;            /* passes over the data (when max_steps is 0) */
    int64_t max_steps;         /* optimizer steps; 0 = epochs decide */
    uint64_t seed;             /* data order, LoRA init, from-scratch init */
    bool recompute;            /* keep only block inputs; recompute the rest in backward */
    bool bf16_compute;         /* full FT: matmuls read BF16 copies of the F32 masters */
    /* from scratch (pretraining): method must be FULL; weights are re-initialized
     * N(0, init_std) (norms 1, output projections scaled by 1/sqrt(2 L)) from seed */
    bool from_scratch;
    float init_std;            /* 0.02 */
    /* evaluation, checkpoints */
    int32_t eval_every;        /* steps between held-out evaluations; 0 = at the end only */
    int32_t checkpoint_every;  /* steps between checkpoints; 0 = at the end (and on stop) */
    int32_t keep_checkpoints;  /* newest checkpoints kept in out_dir (>= 1; default 2) */
    char out_dir[1024];        /* checkpoints go to out_dir/checkpoint-<step>/ ; required */
};
/* The defaults of the small-LLM SFT study (../shared/papers section 4): LoRA r 8 alpha 16
 * on every target, lr 2e-5, constant, no warmup, AdamW (0.9, 0.95), eps 1e-8, wd 0,
 * clip 1.0, effective batch 128 samples, micro-batch 4096 tokens, 1 epoch. */
void eng_train_config_default(struct eng_train_config *c);
/* Checks ranges (ERR_INVAL with a message naming the field). */
int eng_train_config_check(const struct eng_train_config *c, struct errbuf *eb);

/* Events a job reports, on the job's thread, in order. */
enum eng_train_event_kind {
    ENG_TRAIN_EV_START = 0,    /* after new/resume: totals are known */
    ENG_TRAIN_EV_STEP = 1,     /* after each optimizer step */
    ENG_TRAIN_EV_EVAL = 2,     /* after a held-out evaluation */
    ENG_TRAIN_EV_CHECKPOINT = 3,/* a checkpoint is complete on disk (path) */
    ENG_TRAIN_EV_DONE = 4,     /* the last step ran (exports still to do) */
};
struct eng_train_event {
    enum eng_train_event_kind kind;
    int64_t step;              /* optimizer steps done */
    int64_t total_steps;
    int32_t epoch;             /* 0-based epoch of the step's data */
    int64_t samples_seen, tokens_seen;   /* training tokens (all, not only supervised) */
    double loss;               /* STEP: mean CE over the effective batch's supervised tokens */
    double grad_norm;          /* STEP: global L2 norm of the gradient before clipping */
    double lr;                 /* STEP: learning rate used by the step */
    double tokens_per_s;       /* STEP: training tokens per second over the last step */
    double eval_loss;          /* EVAL: mean CE over the held-out supervised tokens; else NaN */
    double elapsed_s, eta_s;   /* wall time since run started; estimate to the end */
    const char *path;          /* CHECKPOINT: directory (valid during the callback) */
};
/* Returning non-zero from the callback stops the job as eng_train_request_stop does. */
typedef int (*eng_train_event_fn)(void *ctx, const struct eng_train_event *ev);

struct eng_train_callbacks {
    eng_train_event_fn on_event;   /* may be NULL */
    void *ctx;
    struct log_sink log;
};

/* Creates a job: allocates trainable parameters (LoRA A ~ Kaiming-uniform like PEFT, B = 0;
 * full: F32 copies of the model's weights), optimizer state and activation memory for
 * cfg->micro_batch_tokens on the model's backend. `train` and `eval` (eval may be NULL)
 * are borrowed and must outlive the job. ERR_UNSUPPORTED if the backend has no training
 * ops; ERR_INVAL for a bad config (message names the field); ERR_TOOLARGE if a sample is
 * longer than micro_batch_tokens. */
int eng_train_new(eng_model_t *m, const struct eng_train_config *cfg,
                  const eng_train_data_t *train, const eng_train_data_t *eval,
                  const struct eng_train_callbacks *cb, eng_train_t **out, struct errbuf *eb);
void eng_train_free(eng_train_t *t);          /* NULL ok */

/* Continues from a checkpoint directory (NULL: the newest complete checkpoint in
 * cfg.out_dir; returns ERR_NOTFOUND if there is none, and the job starts fresh). Restores
 * weights, optimizer moments, step, data position and RNG, so the run continues
 * bit-identically. ERR_CORRUPT (with the reason) if the checkpoint does not match the job's
 * model, method or shapes. */
int eng_train_resume(eng_train_t *t, const char *checkpoint_dir, struct errbuf *eb);

/* One optimizer step (all micro-batches of one effective batch). Returns 1 when the job had
 * already finished (no step was taken), 0 after a step, or an error. */
int eng_train_step(eng_train_t *t, struct errbuf *eb);
/* Steps until done, evaluating and checkpointing as configured; on a stop request it
 * writes a checkpoint and returns ERR_CANCELLED; at the end it writes a final checkpoint.
 * A failed step leaves the last checkpoint intact. */
int eng_train_run(eng_train_t *t, struct errbuf *eb);
/* Held-out loss (mean CE over supervised tokens of `d`) with the current weights. */
int eng_train_eval(eng_train_t *t, const eng_train_data_t *d, double *loss, struct errbuf *eb);
/* Writes a checkpoint now: out_dir/checkpoint-<step>/ (weights, optimizer state, step, data
 * position, RNG; files written to a temp directory, fsynced, renamed, directory fsynced).
 * path (may be NULL) receives the directory. Older ones beyond keep_checkpoints are removed. */
int eng_train_checkpoint(eng_train_t *t, char *path, size_t cap, struct errbuf *eb);
/* Thread-safe and async-signal-safe: asks a running eng_train_run to checkpoint and return. */
void eng_train_request_stop(eng_train_t *t);

/* Results. LoRA: dir/adapter_config.json + dir/adapter_model.safetensors (PEFT, HF tensor
 * names and layouts) and dir/adapter.gguf (llama.cpp's GGUF LoRA: --lora). Full: dir/model.gguf
 * (matrices in model_dtype, norms F32) with the base model's metadata and tokenizer. Files
 * are written atomically; dir is created if missing. */
struct eng_train_export_opts {
    enum eng_dtype model_dtype;/* full FT: dtype of the matrices in model.gguf (F32 default) */
    const char *base_model_name; /* PEFT base_model_name_or_path (NULL: the model's name) */
};
int eng_train_export(eng_train_t *t, const char *dir, const struct eng_train_export_opts *o,
                     struct errbuf *eb);

/* A model file to pretrain from scratch: a Llama of `shape` (eng_random_model_build's
 * syntax; its vocab size is replaced by the tokenizer's) with the tokenizer (every
 * tokenizer.* key) of `tokenizer_src`, weights N(0, 0.02) from seed, tied input/output
 * embeddings when `tied`. Load it with eng_model_from_gguf and train with from_scratch. */
int eng_train_scratch_model(const char *shape, const eng_gguf_t *tokenizer_src, bool tied,
                            uint64_t seed, eng_gguf_t **out, struct errbuf *eb);

struct eng_train_info {
    enum eng_train_method method;
    int64_t step, total_steps;
    int32_t epoch;
    int64_t n_trainable;       /* trainable parameters */
    int64_t samples_per_epoch, tokens_per_epoch, supervised_per_epoch;
    size_t param_bytes;        /* weights + grads + optimizer state the job allocated */
    size_t act_bytes;          /* activation memory for one micro-batch */
    double last_loss, last_grad_norm, last_eval_loss;   /* NaN until known */
    bool done;
};
void eng_train_info(const eng_train_t *t, struct eng_train_info *out);

/* Learning rate at step s (0-based) of total for a config (the schedule, exposed for
 * tests and reports). */
double eng_train_lr_at(const struct eng_train_config *c, int64_t step, int64_t total);

#endif
