/* engine/train/train.c: a training job: configuration, trainable parameters (LoRA pairs or
 * F32 masters of every weight), the data order and length-grouped packing of each
 * effective batch into micro-batches, gradient accumulation with the loss normalized by
 * the supervised tokens of the whole effective batch, global-norm clipping, AdamW with a
 * learning-rate schedule, evaluation, events and the run loop with stop and checkpoints. */
#include "train_impl.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define MAX_BATCH_SAMPLES (1 << 20)
#define MAX_MICRO_TOKENS (1 << 20)
#define MAX_RANK 4096

static const char *const lin_gguf[TRN_NLIN] = {"attn_q", "attn_k", "attn_v", "attn_output",
                                               "ffn_gate", "ffn_up", "ffn_down"};
static const char *const lin_short[TRN_NLIN] = {"q", "k", "v", "o", "gate", "up", "down"};
static const char *const lin_hf[TRN_NLIN] = {"q_proj", "k_proj", "v_proj", "o_proj",
                                             "gate_proj", "up_proj", "down_proj"};

double trn_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* --- configuration ---------------------------------------------------------------------- */

int eng_lora_targets_parse(const char *s, uint32_t *out)
{
    if (!s || !*s)
        return ERR_INVAL;
    uint32_t bits = 0;
    const char *p = s;
    while (*p) {
        size_t n = strcspn(p, ",");
        bool ok = false;
        if ((n == 3 && !strncasecmp(p, "all", 3))) {
            bits |= ENG_LORA_ALL;
            ok = true;
        } else if (n == 4 && !strncasecmp(p, "attn", 4)) {
            bits |= ENG_LORA_Q | ENG_LORA_K | ENG_LORA_V | ENG_LORA_O;
            ok = true;
        } else if (n == 3 && !strncasecmp(p, "mlp", 3)) {
            bits |= ENG_LORA_GATE | ENG_LORA_UP | ENG_LORA_DOWN;
            ok = true;
        }
        for (int i = 0; i < TRN_NLIN && !ok; i++)
            if ((strlen(lin_short[i]) == n && !strncasecmp(p, lin_short[i], n)) ||
                (strlen(lin_hf[i]) == n && !strncasecmp(p, lin_hf[i], n))) {
                bits |= 1u << i;
                ok = true;
            }
        if (!ok)
            return ERR_INVAL;
        p += n;
        if (*p == ',')
            p++;
    }
    *out = bits;
    return 0;
}

void eng_lora_targets_str(uint32_t targets, char *buf, size_t cap)
{
    size_t o = 0;
    if (cap)
        buf[0] = '\0';
    for (int i = 0; i < TRN_NLIN; i++)
        if (targets & (1u << i)) {
            int w = snprintf(buf + o, cap > o ? cap - o : 0, "%s%s", o ? "," : "", lin_short[i]);
            if (w > 0)
                o += (size_t)w;
        }
}

static const char *const sched_names[] = {"constant", "linear", "cosine"};

const char *eng_lr_schedule_name(enum eng_lr_schedule s)
{
    return (unsigned)s < 3 ? sched_names[s] : "unknown";
}

int eng_lr_schedule_parse(const char *s, enum eng_lr_schedule *out)
{
    for (int i = 0; i < 3; i++)
        if (s && !strcasecmp(s, sched_names[i])) {
            *out = (enum eng_lr_schedule)i;
            return 0;
        }
    return ERR_INVAL;
}

void eng_train_config_default(struct eng_train_config *c)
{
    memset(c, 0, sizeof *c);
    c->method = ENG_TRAIN_LORA;
    c->lora_targets = ENG_LORA_ALL;
    c->lora_rank = 8;
    c->lora_alpha = 16.0f;
    c->lr = 2e-5f;
    c->schedule = ENG_SCHED_CONSTANT;
    c->min_lr_ratio = 0.0f;
    c->beta1 = 0.9f;
    c->beta2 = 0.95f;
    c->eps = 1e-8f;
    c->weight_decay = 0.0f;
    c->clip_norm = 1.0f;
    c->batch_samples = 128;
    c->micro_batch_tokens = 4096;
    c->epochs = 1;
    c->seed = 42;
    c->init_std = 0.02f;
    c->keep_checkpoints = 2;
}

int eng_train_config_check(const struct eng_train_config *c, struct errbuf *eb)
{
    if (c->method != ENG_TRAIN_LORA && c->method != ENG_TRAIN_FULL)
        return err_set(eb, ERR_INVAL, "method must be lora or full");
    if (c->method == ENG_TRAIN_LORA) {
        if (!c->lora_targets || c->lora_targets & ~(uint32_t)ENG_LORA_ALL)
            return err_set(eb, ERR_INVAL, "lora targets must be a non-empty subset of "
                                          "q,k,v,o,gate,up,down");
        if (c->lora_rank < 1 || c->lora_rank > MAX_RANK)
            return err_set(eb, ERR_INVAL, "lora rank must be in [1, %d]", MAX_RANK);
        if (!(c->lora_alpha > 0.0f) || !isfinite(c->lora_alpha))
            return err_set(eb, ERR_INVAL, "lora alpha must be a finite number > 0");
    }
    if (c->from_scratch && c->method != ENG_TRAIN_FULL)
        return err_set(eb, ERR_INVAL, "training from scratch needs method full");
    if (c->bf16_compute && c->method != ENG_TRAIN_FULL)
        return err_set(eb, ERR_INVAL, "bf16 compute is for full fine-tuning (LoRA trains F32 "
                                      "adapters over the base model's own dtype)");
    if (!(c->lr > 0.0f) || !isfinite(c->lr) || c->lr > 10.0f)
        return err_set(eb, ERR_INVAL, "learning rate must be in (0, 10]");
    if ((unsigned)c->schedule > ENG_SCHED_COSINE)
        return err_set(eb, ERR_INVAL, "schedule must be constant, linear or cosine");
    if (c->warmup_steps < 0 || c->warmup_steps > ((int64_t)1 << 40))
        return err_set(eb, ERR_INVAL, "warmup steps must be >= 0");
    if (!(c->min_lr_ratio >= 0.0f && c->min_lr_ratio <= 1.0f))
        return err_set(eb, ERR_INVAL, "min lr ratio must be in [0, 1]");
    if (!(c->beta1 >= 0.0f && c->beta1 < 1.0f) || !(c->beta2 >= 0.0f && c->beta2 < 1.0f))
        return err_set(eb, ERR_INVAL, "adam betas must be in [0, 1)");
    if (!(c->eps > 0.0f) || !isfinite(c->eps))
        return err_set(eb, ERR_INVAL, "adam epsilon must be > 0");
    if (!(c->weight_decay >= 0.0f) || !isfinite(c->weight_decay) || c->weight_decay * c->lr >= 1.0f)
        return err_set(eb, ERR_INVAL, "weight decay must be >= 0 (and lr * wd < 1)");
    if (!isfinite(c->clip_norm))
        return err_set(eb, ERR_INVAL, "clip norm must be finite (<= 0 disables clipping)");
    if (c->batch_samples < 1 || c->batch_samples > MAX_BATCH_SAMPLES)
        return err_set(eb, ERR_INVAL, "effective batch must be in [1, %d] samples",
                       MAX_BATCH_SAMPLES);
    if (c->micro_batch_tokens < 2 || c->micro_batch_tokens > MAX_MICRO_TOKENS)
        return err_set(eb, ERR_INVAL, "micro-batch tokens must be in [2, %d]", MAX_MICRO_TOKENS);
    if (c->max_steps < 0 || (c->max_steps == 0 && (c->epochs < 1 || c->epochs > 100000)))
        return err_set(eb, ERR_INVAL, "set epochs in [1, 100000] or max steps > 0");
    if (c->from_scratch && (!(c->init_std > 0.0f) || !isfinite(c->init_std)))
        return err_set(eb, ERR_INVAL, "init std must be > 0");
    if (c->eval_every < 0 || c->checkpoint_every < 0 || c->keep_checkpoints < 1 ||
        c->keep_checkpoints > 1000)
        return err_set(eb, ERR_INVAL, "eval/checkpoint intervals must be >= 0 and keep_checkpoints "
                                      "in [1, 1000]");
    if (!c->out_dir[0] || !memchr(c->out_dir, '\0', sizeof c->out_dir))
        return err_set(eb, ERR_INVAL, "an output directory is required");
    return 0;
}

double eng_train_lr_at(const struct eng_train_config *c, int64_t step, int64_t total)
{
    const double lr = c->lr;
    const int64_t w = c->warmup_steps;
    if (step < w)
        return lr * (double)(step + 1) / (double)(w + 1);
    const int64_t span = total - w > 1 ? total - w : 1;
    double p = (double)(step - w) / (double)span;
    p = p < 0 ? 0 : p > 1 ? 1 : p;
    const double mn = c->min_lr_ratio;
    switch (c->schedule) {
    case ENG_SCHED_LINEAR:
        return lr * (1.0 - (1.0 - mn) * p);
    case ENG_SCHED_COSINE:
        return lr * (mn + (1.0 - mn) * 0.5 * (1.0 + cos(M_PI * p)));
    default:
        return lr;
    }
}

/* --- RNG (xorshift64*, state saved in checkpoints) -------------------------------------- */

static uint64_t rng_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1Dull;
}

static uint64_t seed_mix(uint64_t x)   /* splitmix64 */
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    x ^= x >> 31;
    return x ? x : 1;
}

static double rng_unif(uint64_t *s)   /* [0, 1) */
{
    return (double)(rng_next(s) >> 11) * (1.0 / 9007199254740992.0);
}

/* --- device copies ------------------------------------------------------------------------ */

static eng_tensor_t f32_view(const float *dev, int64_t n)
{
    eng_tensor_t v;
    int64_t ne[1] = {n};
    eng_tensor_init(&v, ENG_DTYPE_F32, 1, ne);
    v.data = (void *)dev;
    return v;
}

int trn_dev_get(eng_train_t *t, const float *dev, float *host, int64_t n)
{
    eng_tensor_t v = f32_view(dev, n);
    return eng_tensor_get(t->be, &v, host, 0, (size_t)n * sizeof(float));
}

int trn_dev_set(eng_train_t *t, float *dev, const float *host, int64_t n)
{
    eng_tensor_t v = f32_view(dev, n);
    return eng_tensor_set(t->be, &v, host, 0, (size_t)n * sizeof(float));
}

int trn_sync_bf16(eng_train_t *t)
{
    for (int i = 0; i < t->n_params; i++) {
        struct trn_param *p = &t->params[i];
        if (p->w16) {
            int rc = eng_top_to_bf16(t->be, p->w16, p->w, trn_param_n(p));
            if (rc < 0)
                return rc;
        }
    }
    return 0;
}

/* --- parameters ----------------------------------------------------------------------------- */

static struct trn_param *param_add(eng_train_t *t, const char *name, int64_t ne0, int64_t ne1,
                                   bool decay)
{
    struct trn_param *p = &t->params[t->n_params++];
    snprintf(p->name, sizeof p->name, "%s", name);
    p->ne0 = ne0;
    p->ne1 = ne1;
    p->decay = decay;
    return p;
}

static size_t al64(size_t n)
{
    return (n + 63) & ~(size_t)63;
}

/* Lays the parameters out in one buffer: w, g, m, v (F32) and the BF16 copy. */
static int params_alloc(eng_train_t *t)
{
    size_t total = 0;
    for (int i = 0; i < t->n_params; i++) {
        const size_t n = (size_t)trn_param_n(&t->params[i]);
        total += 4 * al64(n * sizeof(float));
        if (t->cfg.bf16_compute && t->params[i].ne1 > 1)
            total += al64(n * sizeof(uint16_t));
    }
    int rc = eng_buffer_new(t->be, total, ENG_BUF_WEIGHTS, &t->pbuf);
    if (rc < 0)
        return rc;
    t->pbuf_bytes = total;
    char *b = t->pbuf->base;
    for (int i = 0; i < t->n_params; i++) {
        struct trn_param *p = &t->params[i];
        const size_t n = (size_t)trn_param_n(p);
        p->w = (float *)(void *)b;
        b += al64(n * sizeof(float));
        p->g = (float *)(void *)b;
        b += al64(n * sizeof(float));
        p->m = (float *)(void *)b;
        b += al64(n * sizeof(float));
        p->v = (float *)(void *)b;
        b += al64(n * sizeof(float));
        int64_t ne[2] = {p->ne0, p->ne1};
        if (t->cfg.bf16_compute && p->ne1 > 1) {
            p->w16 = (uint16_t *)(void *)b;
            b += al64(n * sizeof(uint16_t));
            eng_tensor_init(&p->t, ENG_DTYPE_BF16, 2, ne);
            p->t.data = p->w16;
        } else {
            eng_tensor_init(&p->t, ENG_DTYPE_F32, 2, ne);
            p->t.data = p->w;
        }
        p->t.buf = t->pbuf;
        snprintf(p->t.name, sizeof p->t.name, "%s", p->name);
        t->n_trainable += (int64_t)n;
    }
    return eng_top_zero(t->be, t->pbuf->base, total);
}

/* Host F32 copy of a model tensor by name (from the model file: works for any backend). */
static int model_tensor_f32(eng_train_t *t, const char *name, float *out, int64_t n,
                            struct errbuf *eb)
{
    int64_t i = eng_gguf_find_tensor(t->m->file, name);
    if (i < 0)
        return err_set(eb, ERR_CORRUPT, "model tensor '%s' is missing", name);
    struct eng_gguf_tensor gt;
    eng_gguf_tensor_at(t->m->file, i, &gt);
    if (gt.ne[0] * gt.ne[1] * gt.ne[2] * gt.ne[3] != n || !eng_dtype_is_compute(gt.dtype))
        return err_set(eb, ERR_CORRUPT, "model tensor '%s' has an unexpected shape or dtype", name);
    const int64_t rows = n / gt.ne[0];
    const size_t rb = eng_dtype_row_bytes(gt.dtype, gt.ne[0]);
    for (int64_t r = 0; r < rows; r++)
        eng_row_to_f32(gt.dtype, (const char *)gt.data + (size_t)r * rb, out + r * gt.ne[0],
                       gt.ne[0]);
    return 0;
}

static void fill_normal(uint64_t *rng, float *x, int64_t n, float std)
{
    for (int64_t i = 0; i < n; i += 2) {
        double u1 = rng_unif(rng), u2 = rng_unif(rng);
        if (u1 < 1e-300)
            u1 = 1e-300;
        const double r = sqrt(-2.0 * log(u1)), a = 2.0 * M_PI * u2;
        x[i] = (float)(r * cos(a)) * std;
        if (i + 1 < n)
            x[i + 1] = (float)(r * sin(a)) * std;
    }
}

/* Initial values of every parameter (model copies, LoRA init, or from-scratch init). */
static int params_init(eng_train_t *t, struct errbuf *eb)
{
    int64_t maxn = 0;
    for (int i = 0; i < t->n_params; i++)
        if (trn_param_n(&t->params[i]) > maxn)
            maxn = trn_param_n(&t->params[i]);
    float *h = malloc((size_t)maxn * sizeof(float));
    if (!h)
        return ERR_NOMEM;
    uint64_t rng = seed_mix(t->cfg.seed ^ 0x6c6f7261ull);
    int rc = 0;
    for (int i = 0; i < t->n_params && rc == 0; i++) {
        struct trn_param *p = &t->params[i];
        const int64_t n = trn_param_n(p);
        const size_t nl = strlen(p->name);
        if (nl > 7 && !strcmp(p->name + nl - 7, ".lora_a")) {
            // PEFT: kaiming_uniform_(a=sqrt(5)) = U(-1/sqrt(in), 1/sqrt(in))
            const double bound = 1.0 / sqrt((double)p->ne0);
            for (int64_t k = 0; k < n; k++)
                h[k] = (float)((2.0 * rng_unif(&rng) - 1.0) * bound);
        } else if (nl > 7 && !strcmp(p->name + nl - 7, ".lora_b")) {
            memset(h, 0, (size_t)n * sizeof(float));
        } else if (t->cfg.from_scratch) {
            if (p->ne1 == 1) {   // norm weights
                for (int64_t k = 0; k < n; k++)
                    h[k] = 1.0f;
            } else {
                float std = t->cfg.init_std;
                if (strstr(p->name, "attn_output") || strstr(p->name, "ffn_down"))
                    std /= sqrtf(2.0f * (float)t->L);   // residual projections (GPT-2)
                fill_normal(&rng, h, n, std);
            }
        } else {
            rc = model_tensor_f32(t, p->name, h, n, eb);
        }
        if (rc == 0)
            rc = trn_dev_set(t, p->w, h, n);
    }
    free(h);
    if (rc == 0)
        rc = trn_sync_bf16(t);
    t->rng = seed_mix(t->cfg.seed ^ 0x72756eull);
    return rc;
}

static int build_params(eng_train_t *t, struct errbuf *eb)
{
    eng_model_t *m = t->m;
    const bool full = t->cfg.method == ENG_TRAIN_FULL;
    int cap = full ? 3 + (int)t->L * 9 + 1 : (int)t->L * TRN_NLIN * 2;
    if (!(t->params = calloc((size_t)cap, sizeof *t->params)) ||
        !(t->layers = calloc((size_t)t->L, sizeof *t->layers)))
        return ERR_NOMEM;
    char name[TRN_NAME_MAX];
    const int64_t io[TRN_NLIN][2] = {{t->C, t->Q}, {t->C, t->KV}, {t->C, t->KV}, {t->Q, t->C},
                                     {t->C, t->F}, {t->C, t->F}, {t->F, t->C}};
    if (full) {
        t->p_tok = param_add(t, "token_embd.weight", t->C, t->V, true);
    }
    for (int64_t l = 0; l < t->L; l++) {
        struct trn_layer *ly = &t->layers[l];
        const struct eng_layer *ml = &m->layers[l];
        const eng_tensor_t *mw[TRN_NLIN] = {&ml->wq, &ml->wk, &ml->wv, &ml->wo, &ml->w_gate,
                                            &ml->w_up, &ml->w_down};
        ly->attn_norm.w = ml->attn_norm.data;
        ly->ffn_norm.w = ml->ffn_norm.data;
        if (full) {
            snprintf(name, sizeof name, "blk.%lld.attn_norm.weight", (long long)l);
            ly->attn_norm.p = param_add(t, name, t->C, 1, false);
        }
        for (int i = 0; i < TRN_NLIN; i++) {
            struct trn_lin *li = &ly->lin[i];
            li->in = io[i][0];
            li->out = io[i][1];
            li->w = mw[i];
            if (full) {
                snprintf(name, sizeof name, "blk.%lld.%s.weight", (long long)l, lin_gguf[i]);
                li->full = param_add(t, name, li->in, li->out, true);
            } else if (t->cfg.lora_targets & (1u << i)) {
                snprintf(name, sizeof name, "blk.%lld.%s.weight.lora_a", (long long)l, lin_gguf[i]);
                li->a = param_add(t, name, li->in, t->R, true);
                snprintf(name, sizeof name, "blk.%lld.%s.weight.lora_b", (long long)l, lin_gguf[i]);
                li->b = param_add(t, name, t->R, li->out, true);
            }
        }
        if (full) {
            snprintf(name, sizeof name, "blk.%lld.ffn_norm.weight", (long long)l);
            ly->ffn_norm.p = param_add(t, name, t->C, 1, false);
        }
    }
    t->out_norm.w = m->output_norm.data;
    t->tok_embd = &m->tok_embd;
    t->output = &m->output;
    if (full) {
        t->out_norm.p = param_add(t, "output_norm.weight", t->C, 1, false);
        t->p_out = m->hp.tied_output ? t->p_tok : param_add(t, "output.weight", t->C, t->V, true);
    }
    int rc = params_alloc(t);
    if (rc < 0)
        return err_set(eb, rc, "cannot allocate %d trainable tensors on %s", t->n_params,
                       eng_backend_name(t->be));
    if (full) {   // the pass reads the trainable copies
        t->tok_embd = &t->p_tok->t;
        t->output = &t->p_out->t;
        t->out_norm.w = t->out_norm.p->w;
        for (int64_t l = 0; l < t->L; l++) {
            struct trn_layer *ly = &t->layers[l];
            ly->attn_norm.w = ly->attn_norm.p->w;
            ly->ffn_norm.w = ly->ffn_norm.p->w;
            for (int i = 0; i < TRN_NLIN; i++)
                ly->lin[i].w = &ly->lin[i].full->t;
        }
    }
    return params_init(t, eb);
}

/* --- the job -------------------------------------------------------------------------------- */

static int64_t sample_len(const eng_train_data_t *d, int64_t i)
{
    const int32_t *tok;
    const uint8_t *mask;
    int32_t n = 0;
    eng_train_data_get(d, i, &tok, &mask, &n);
    return n;
}

static int64_t sample_sup(const eng_train_data_t *d, int64_t i)
{
    const int32_t *tok;
    const uint8_t *mask;
    int32_t n = 0;
    eng_train_data_get(d, i, &tok, &mask, &n);
    int64_t s = 0;
    for (int32_t j = 1; j < n; j++)
        s += mask[j];
    return s;
}

int eng_train_new(eng_model_t *m, const struct eng_train_config *cfg,
                  const eng_train_data_t *train, const eng_train_data_t *eval,
                  const struct eng_train_callbacks *cb, eng_train_t **out, struct errbuf *eb)
{
    int rc = eng_train_config_check(cfg, eb);
    if (rc < 0)
        return rc;
    if (!m || !m->be || !train)
        return err_set(eb, ERR_INVAL, "training needs a loaded model and a dataset");
    if (!eng_backend_can_train(m->be))
        return err_set(eb, ERR_UNSUPPORTED, "backend %s has no training ops (train on the cpu "
                                            "backend)", eng_backend_name(m->be));
    struct eng_train_data_stats ds;
    eng_train_data_stats(train, &ds);
    if (ds.n_samples == 0)
        return err_set(eb, ERR_INVAL, "the training set is empty");
    if (ds.max_len > cfg->micro_batch_tokens)
        return err_set(eb, ERR_TOOLARGE, "a training sample has %d tokens, more than the "
                       "micro-batch of %d (raise micro_batch_tokens or lower max_seq_len)",
                       ds.max_len, cfg->micro_batch_tokens);
    if (eval) {
        struct eng_train_data_stats es;
        eng_train_data_stats(eval, &es);
        if (es.max_len > cfg->micro_batch_tokens)
            return err_set(eb, ERR_TOOLARGE, "an evaluation sample has %d tokens, more than the "
                           "micro-batch of %d", es.max_len, cfg->micro_batch_tokens);
    }
    const struct eng_hparams *hp = &m->hp;
    // token ids must be inside the vocabulary
    for (int pass = 0; pass < 2; pass++) {
        const eng_train_data_t *d = pass ? eval : train;
        if (!d)
            continue;
        struct eng_train_data_stats s;
        eng_train_data_stats(d, &s);
        for (int64_t i = 0; i < s.n_samples; i++) {
            const int32_t *tok;
            const uint8_t *mask;
            int32_t n;
            eng_train_data_get(d, i, &tok, &mask, &n);
            for (int32_t j = 0; j < n; j++)
                if (tok[j] >= hp->n_vocab)
                    return err_set(eb, ERR_INVAL, "%s sample %lld has token %d outside the "
                                   "model's vocabulary of %d (tokenized for another model?)",
                                   pass ? "evaluation" : "training", (long long)i, tok[j],
                                   hp->n_vocab);
        }
    }
    eng_train_t *t = calloc(1, sizeof *t);
    if (!t)
        return ERR_NOMEM;
    t->m = m;
    t->be = m->be;
    t->cfg = *cfg;
    t->train = train;
    t->eval = eval;
    if (cb)
        t->cb = *cb;
    else
        t->cb.log.min = LOG_INFO;
    t->C = hp->n_embd;
    t->F = hp->n_ff;
    t->NH = hp->n_head;
    t->NKV = hp->n_head_kv;
    t->HS = hp->head_dim;
    t->Q = t->NH * t->HS;
    t->KV = t->NKV * t->HS;
    t->V = hp->n_vocab;
    t->L = hp->n_layer;
    t->R = cfg->method == ENG_TRAIN_LORA ? cfg->lora_rank : 0;
    t->lora_scale = t->R ? (cfg->lora_rslora ? cfg->lora_alpha / sqrtf((float)t->R)
                                             : cfg->lora_alpha / (float)t->R)
                         : 0.0f;
    t->last_loss = t->last_gnorm = t->last_eval = NAN;
    t->perm_epoch = -1;
    t->n_samples = ds.n_samples;
    t->tmax = cfg->micro_batch_tokens;
    t->n_sets = cfg->recompute ? 1 : (int32_t)t->L;
    t->steps_per_epoch = (ds.n_samples + cfg->batch_samples - 1) / cfg->batch_samples;
    t->total_steps = cfg->max_steps > 0 ? cfg->max_steps : t->steps_per_epoch * cfg->epochs;
    const int32_t T = t->tmax;
    const int64_t nb = cfg->batch_samples < ds.n_samples ? cfg->batch_samples : ds.n_samples;
    if (!(t->xs = calloc((size_t)t->L + 1, sizeof *t->xs)) ||
        !(t->sets = calloc((size_t)t->n_sets, sizeof *t->sets)) ||
        !(t->mb.tokens = malloc((size_t)T * sizeof(int32_t))) ||
        !(t->mb.pos = malloc((size_t)T * sizeof(int32_t))) ||
        !(t->mb.start = malloc(((size_t)T + 1) * sizeof(int32_t))) ||
        !(t->mb.rows = malloc((size_t)T * sizeof(int32_t))) ||
        !(t->mb.targets = malloc((size_t)T * sizeof(int32_t))) ||
        !(t->perm = malloc((size_t)ds.n_samples * sizeof(int64_t))) ||
        !(t->batch_idx = malloc((size_t)nb * sizeof(int64_t))) ||
        !(t->bin_of = malloc((size_t)nb * 2 * sizeof(int32_t)))) {
        eng_train_free(t);
        return ERR_NOMEM;
    }
    if ((rc = build_params(t, eb)) < 0) {
        eng_train_free(t);
        return rc;
    }
    if ((rc = trn_act_alloc(t)) < 0) {
        size_t need = trn_act_bytes(t, t->tmax, t->n_sets);
        eng_train_free(t);
        return err_set(eb, rc, "cannot allocate %.1f MiB of activations for %d-token "
                       "micro-batches (lower micro_batch_tokens or turn on recompute)",
                       (double)need / 1048576.0, T);
    }
    *out = t;
    return 0;
}

void eng_train_free(eng_train_t *t)
{
    if (!t)
        return;
    eng_buffer_free(t->abuf);
    eng_buffer_free(t->pbuf);
    free(t->params);
    free(t->layers);
    free(t->xs);
    free(t->sets);
    free(t->mb.tokens);
    free(t->mb.pos);
    free(t->mb.start);
    free(t->mb.rows);
    free(t->mb.targets);
    free(t->perm);
    free(t->batch_idx);
    free(t->bin_of);
    free(t);
}

void eng_train_request_stop(eng_train_t *t)
{
    if (t)
        atomic_store(&t->stop, 1);
}

void eng_train_info(const eng_train_t *t, struct eng_train_info *out)
{
    memset(out, 0, sizeof *out);
    struct eng_train_data_stats ds;
    eng_train_data_stats(t->train, &ds);
    out->method = t->cfg.method;
    out->step = t->step;
    out->total_steps = t->total_steps;
    out->epoch = t->epoch;
    out->n_trainable = t->n_trainable;
    out->samples_per_epoch = ds.n_samples;
    out->tokens_per_epoch = ds.n_tokens;
    out->supervised_per_epoch = ds.n_supervised;
    out->param_bytes = t->pbuf_bytes;
    out->act_bytes = t->abuf_bytes;
    out->last_loss = t->last_loss;
    out->last_grad_norm = t->last_gnorm;
    out->last_eval_loss = t->last_eval;
    out->done = t->step >= t->total_steps;
}

/* --- data order and packing ----------------------------------------------------------------- */

int trn_epoch_perm(eng_train_t *t, int32_t e)
{
    if (t->perm_epoch == e)
        return 0;
    const int64_t n = t->n_samples;
    for (int64_t i = 0; i < n; i++)
        t->perm[i] = i;
    uint64_t s = seed_mix(t->cfg.seed * 0x9E3779B97F4A7C15ull + (uint64_t)e + 1);
    for (int64_t i = n - 1; i > 0; i--) {   // Fisher-Yates
        const int64_t j = (int64_t)(rng_next(&s) % (uint64_t)(i + 1));
        const int64_t x = t->perm[i];
        t->perm[i] = t->perm[j];
        t->perm[j] = x;
    }
    t->perm_epoch = e;
    return 0;
}

/* Fills t->mb with samples idx[0..n) (in order). */
static void build_mb(eng_train_t *t, const eng_train_data_t *d, const int64_t *idx, int64_t n)
{
    struct trn_batch *mb = &t->mb;
    mb->T = 0;
    mb->n_seqs = 0;
    mb->n_sup = 0;
    mb->start[0] = 0;
    for (int64_t s = 0; s < n; s++) {
        const int32_t *tok;
        const uint8_t *mask;
        int32_t len;
        eng_train_data_get(d, idx[s], &tok, &mask, &len);
        const int32_t off = mb->T;
        for (int32_t j = 0; j < len; j++) {
            mb->tokens[off + j] = tok[j];
            mb->pos[off + j] = j;
            if (j + 1 < len && mask[j + 1]) {
                mb->rows[mb->n_sup] = off + j;
                mb->targets[mb->n_sup] = tok[j + 1];
                mb->n_sup++;
            }
        }
        mb->T += len;
        mb->start[++mb->n_seqs] = mb->T;
    }
}

/* Length-grouped packing of batch_idx[0..n) (first-fit decreasing into bins of tmax
 * tokens): sorts batch_idx so bins are contiguous runs; bin_start gets n_bins + 1 offsets. */
static int32_t pack(eng_train_t *t, const eng_train_data_t *d, int64_t *idx, int64_t n,
                    int32_t *bin_start)
{
    // sort by length, longest first; ties by index (deterministic). Insertion sort on
    // (len, idx): n is an effective batch, so n^2 is small next to the step's compute.
    for (int64_t i = 1; i < n; i++) {
        const int64_t x = idx[i], lx = sample_len(d, x);
        int64_t k = i;
        while (k > 0) {
            const int64_t y = idx[k - 1], ly = sample_len(d, y);
            if (ly > lx || (ly == lx && y < x))
                break;
            idx[k] = y;
            k--;
        }
        idx[k] = x;
    }
    int32_t *bin = t->bin_of, *used = t->bin_of + n, nb = 0;
    for (int64_t i = 0; i < n; i++) {
        const int32_t len = (int32_t)sample_len(d, idx[i]);
        int32_t b = 0;
        while (b < nb && used[b] + len > t->tmax)
            b++;
        if (b == nb)
            used[nb++] = 0;
        used[b] += len;
        bin[i] = b;
    }
    // stable regroup by bin
    int64_t *tmp = malloc((size_t)n * sizeof *tmp);
    if (!tmp)
        return -1;
    int64_t o = 0;
    for (int32_t b = 0; b < nb; b++) {
        bin_start[b] = (int32_t)o;
        for (int64_t i = 0; i < n; i++)
            if (bin[i] == b)
                tmp[o++] = idx[i];
    }
    bin_start[nb] = (int32_t)o;
    memcpy(idx, tmp, (size_t)n * sizeof *tmp);
    free(tmp);
    return nb;
}

static int zero_grads(eng_train_t *t)
{
    for (int i = 0; i < t->n_params; i++) {
        int rc = eng_top_zero(t->be, t->params[i].g, (size_t)trn_param_n(&t->params[i]) * 4);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int emit(eng_train_t *t, struct eng_train_event *ev)
{
    ev->step = t->step;
    ev->total_steps = t->total_steps;
    ev->epoch = t->epoch;
    ev->samples_seen = t->samples_seen;
    ev->tokens_seen = t->tokens_seen;
    if (t->cb.on_event && t->cb.on_event(t->cb.ctx, ev) != 0)
        atomic_store(&t->stop, 1);
    return 0;
}

/* Gradient accumulation over the current effective batch into the params' g; returns the
 * summed CE and the batch's supervised tokens and tokens. ERR_CANCELLED on a stop
 * request between micro-batches (nothing was changed but the gradients). */
static int accumulate(eng_train_t *t, int64_t nb, double *loss_sum, int64_t *n_sup,
                      int64_t *n_tok, int32_t *n_micro)
{
    int64_t sup = 0, tok = 0;
    for (int64_t i = 0; i < nb; i++) {
        sup += sample_sup(t->train, t->batch_idx[i]);
        tok += sample_len(t->train, t->batch_idx[i]);
    }
    int32_t *bin_start = malloc(((size_t)nb + 1) * sizeof *bin_start);
    if (!bin_start)
        return ERR_NOMEM;
    const int32_t bins = pack(t, t->train, t->batch_idx, nb, bin_start);
    int rc = bins < 0 ? ERR_NOMEM : zero_grads(t);
    const float scale = (float)(1.0 / (double)sup);
    double ls = 0.0;
    for (int32_t b = 0; b < bins && rc == 0; b++) {
        if (atomic_load(&t->stop)) {
            rc = ERR_CANCELLED;
            break;
        }
        build_mb(t, t->train, t->batch_idx + bin_start[b], bin_start[b + 1] - bin_start[b]);
        rc = trn_forward_backward(t, true, scale, &ls);
    }
    free(bin_start);
    *loss_sum = ls;
    *n_sup = sup;
    *n_tok = tok;
    *n_micro = bins;
    return rc;
}

int eng_train_step(eng_train_t *t, struct errbuf *eb)
{
    if (t->step >= t->total_steps)
        return 1;
    const double t0 = trn_now();
    if (t->pos >= t->n_samples) {
        t->epoch++;
        t->pos = 0;
    }
    int rc = trn_epoch_perm(t, t->epoch);
    if (rc < 0)
        return rc;
    const int64_t nb = t->n_samples - t->pos < t->cfg.batch_samples ? t->n_samples - t->pos
                                                                    : t->cfg.batch_samples;
    memcpy(t->batch_idx, t->perm + t->pos, (size_t)nb * sizeof(int64_t));
    double ls = 0.0;
    int64_t sup = 0, tok = 0;
    int32_t micro = 0;
    rc = accumulate(t, nb, &ls, &sup, &tok, &micro);
    if (rc == ERR_CANCELLED)
        return rc;
    if (rc < 0)
        return err_set(eb, rc, "training step %lld failed: %s", (long long)t->step + 1,
                       err_str(rc));
    // global norm of the gradient (a tied embedding is one parameter), clipping, AdamW
    double ss = 0.0;
    for (int i = 0; i < t->n_params && rc == 0; i++) {
        double s = 0.0;
        rc = eng_top_sumsq(t->be, t->params[i].g, trn_param_n(&t->params[i]), &s);
        ss += s;
    }
    const double gnorm = sqrt(ss);
    const double loss = ls / (double)sup;
    if (rc == 0 && (!isfinite(gnorm) || !isfinite(loss)))
        return err_set(eb, ERR_RANGE, "step %lld: the %s is not finite (lower the learning rate)",
                       (long long)t->step + 1, isfinite(loss) ? "gradient norm" : "loss");
    float coef = 1.0f;
    if (t->cfg.clip_norm > 0.0f && gnorm > t->cfg.clip_norm)
        coef = (float)(t->cfg.clip_norm / (gnorm + 1e-6));
    const double lr = eng_train_lr_at(&t->cfg, t->step, t->total_steps);
    for (int i = 0; i < t->n_params && rc == 0; i++) {
        struct trn_param *p = &t->params[i];
        const struct eng_adamw_params ap = {.lr = (float)lr, .beta1 = t->cfg.beta1,
                                            .beta2 = t->cfg.beta2, .eps = t->cfg.eps,
                                            .weight_decay = p->decay ? t->cfg.weight_decay : 0.0f,
                                            .grad_scale = coef, .t = t->step + 1};
        rc = eng_top_adamw(t->be, p->w, p->g, p->m, p->v, trn_param_n(p), &ap);
    }
    if (rc == 0)
        rc = trn_sync_bf16(t);
    if (rc < 0)
        return err_set(eb, rc, "optimizer step %lld failed: %s", (long long)t->step + 1,
                       err_str(rc));
    t->step++;
    t->pos += nb;
    t->samples_seen += nb;
    t->tokens_seen += tok;
    t->last_loss = loss;
    t->last_gnorm = gnorm;
    const double dt = trn_now() - t0;
    struct eng_train_event ev = {.kind = ENG_TRAIN_EV_STEP, .loss = loss, .grad_norm = gnorm,
                                 .lr = lr, .tokens_per_s = dt > 0 ? (double)tok / dt : 0.0,
                                 .eval_loss = NAN};
    if (t->run_start > 0) {
        ev.elapsed_s = t->elapsed_before + (trn_now() - t->run_start);
        ev.eta_s = ev.elapsed_s / (double)t->step * (double)(t->total_steps - t->step);
    }
    log_debug(&t->cb.log, "msg=\"train step\" step=%lld loss=%.5f grad_norm=%.4f lr=%.3g "
              "micro_batches=%d tokens=%lld", (long long)t->step, loss, gnorm, lr, micro,
              (long long)tok);
    return emit(t, &ev);
}

int eng_train_eval(eng_train_t *t, const eng_train_data_t *d, double *loss, struct errbuf *eb)
{
    struct eng_train_data_stats s;
    eng_train_data_stats(d, &s);
    if (s.n_samples == 0 || s.n_supervised == 0)
        return err_set(eb, ERR_INVAL, "the evaluation set has no supervised tokens");
    int64_t *idx = malloc((size_t)s.n_samples * sizeof *idx);
    if (!idx)
        return ERR_NOMEM;
    double ls = 0.0;
    int rc = 0;
    int64_t i = 0;
    while (i < s.n_samples && rc == 0) {
        // greedy: consecutive samples while they fit
        int64_t n = 0, used = 0;
        while (i + n < s.n_samples && used + sample_len(d, i + n) <= t->tmax) {
            idx[n] = i + n;
            used += sample_len(d, i + n);
            n++;
        }
        build_mb(t, d, idx, n);
        rc = trn_forward_backward(t, false, 1.0f, &ls);
        i += n;
    }
    free(idx);
    if (rc < 0)
        return err_set(eb, rc, "evaluation failed: %s", err_str(rc));
    *loss = ls / (double)s.n_supervised;
    return 0;
}

int eng_train_checkpoint(eng_train_t *t, char *path, size_t cap, struct errbuf *eb)
{
    char p[2048];
    int rc = trn_ckpt_save(t, p, sizeof p, eb);
    if (rc < 0)
        return rc;
    if (path && cap)
        snprintf(path, cap, "%s", p);
    struct eng_train_event ev = {.kind = ENG_TRAIN_EV_CHECKPOINT, .path = p, .eval_loss = NAN,
                                 .loss = NAN, .grad_norm = NAN, .lr = NAN};
    return emit(t, &ev);
}

int eng_train_resume(eng_train_t *t, const char *dir, struct errbuf *eb)
{
    char p[2048];
    if (!dir) {
        int rc = trn_ckpt_latest(t->cfg.out_dir, p, sizeof p);
        if (rc < 0)
            return rc;
        dir = p;
    }
    return trn_ckpt_load(t, dir, eb);
}

static int do_eval(eng_train_t *t, struct errbuf *eb)
{
    if (!t->eval)
        return 0;
    double l;
    int rc = eng_train_eval(t, t->eval, &l, eb);
    if (rc < 0)
        return rc;
    t->last_eval = l;
    struct eng_train_event ev = {.kind = ENG_TRAIN_EV_EVAL, .eval_loss = l, .loss = NAN,
                                 .grad_norm = NAN, .lr = NAN};
    log_info(&t->cb.log, "msg=\"eval\" step=%lld eval_loss=%.5f", (long long)t->step, l);
    return emit(t, &ev);
}

int eng_train_run(eng_train_t *t, struct errbuf *eb)
{
    t->run_start = trn_now();
    struct eng_train_event ev = {.kind = ENG_TRAIN_EV_START, .loss = NAN, .grad_norm = NAN,
                                 .lr = NAN, .eval_loss = NAN};
    emit(t, &ev);
    int64_t last_ckpt = -1;
    int rc = 0;
    while (rc == 0) {
        if (atomic_load(&t->stop)) {
            rc = ERR_CANCELLED;
            break;
        }
        rc = eng_train_step(t, eb);
        if (rc == 1) {
            rc = 0;
            break;
        }
        if (rc < 0)
            break;
        if (t->cfg.eval_every > 0 && t->step % t->cfg.eval_every == 0 && t->step < t->total_steps)
            rc = do_eval(t, eb);
        if (rc == 0 && t->cfg.checkpoint_every > 0 && t->step % t->cfg.checkpoint_every == 0) {
            rc = eng_train_checkpoint(t, NULL, 0, eb);
            last_ckpt = t->step;
        }
    }
    t->elapsed_before += trn_now() - t->run_start;
    t->run_start = 0;
    if (rc == ERR_CANCELLED) {
        // the interrupted step changed nothing: checkpoint the last completed one
        atomic_store(&t->stop, 0);
        int rc2 = last_ckpt == t->step ? 0 : eng_train_checkpoint(t, NULL, 0, eb);
        return rc2 < 0 ? rc2 : ERR_CANCELLED;
    }
    if (rc < 0)
        return rc;
    if ((rc = do_eval(t, eb)) < 0)
        return rc;
    if (last_ckpt != t->step && (rc = eng_train_checkpoint(t, NULL, 0, eb)) < 0)
        return rc;
    struct eng_train_event done = {.kind = ENG_TRAIN_EV_DONE, .loss = t->last_loss,
                                   .grad_norm = t->last_gnorm, .lr = NAN,
                                   .eval_loss = t->last_eval};
    emit(t, &done);
    return 0;
}
