/* tests/train_grads.c: test tool behind tests/test_train_grads.py: runs one training step
 * of the engine on given samples and writes what the torch reference checks into a GGUF:
 *   init.<param>  the trainable tensors before the step (LoRA B is set to N(0, 0.02) first,
 *                 so that A has a gradient too)
 *   grad.<param>  the gradient of (sum of CE over supervised tokens) / (supervised tokens of
 *                 the whole effective batch), accumulated over the micro-batches
 *   post.<param>  the tensors after the AdamW step
 *   metadata: train.loss, train.grad_norm, train.lr, train.micro_tokens, ...
 * usage: train_grads MODEL SAMPLES OUT.gguf [--method lora|full] [--rank r] [--alpha a]
 *          [--rslora] [--targets q,v] [--micro-tokens n] [--lr x] [--wd x] [--clip x]
 *          [--rope norm|neox] [--recompute] [--threads n]
 *          [--scratch SHAPE --scratch-out PATH]  (first write a tied-embedding model of SHAPE
 *          with MODEL's tokenizer to PATH (eng_train_scratch_model) and train that)
 * SAMPLES: one sample per line, "t0,t1,...;m0,m1,..." (token ids; loss mask). */
#include "../engine/train/train_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(const char *what, const struct errbuf *eb)
{
    fprintf(stderr, "train_grads: %s: %s\n", what, eb ? eb->msg : "");
    return 1;
}

static void free_ptr(void *p)
{
    free(p);
}

static int dump(eng_train_t *t, eng_gguf_t *g, const char *prefix, int which)
{
    for (int i = 0; i < t->n_params; i++) {
        const struct trn_param *p = &t->params[i];
        const int64_t n = trn_param_n(p);
        float *h = malloc((size_t)n * 4);
        if (!h || eng_gguf_hold(g, h, free_ptr) < 0)
            return -1;
        if (trn_dev_get(t, which == 0 ? p->w : p->g, h, n) < 0)
            return -1;
        char name[96];
        snprintf(name, sizeof name, "%s.%s", prefix, p->name);
        const int64_t ne[2] = {p->ne0, p->ne1};
        if (eng_gguf_add_tensor(g, name, ENG_DTYPE_F32, 2, ne, h, (size_t)n * 4) < 0)
            return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: train_grads MODEL SAMPLES OUT.gguf [options]\n");
        return 2;
    }
    struct eng_train_config cfg;
    eng_train_config_default(&cfg);
    cfg.micro_batch_tokens = 64;
    cfg.lr = 1e-3f;
    cfg.clip_norm = 0.0f;
    int threads = 2;
    const char *rope = NULL, *scratch = NULL, *scratch_out = NULL;
    for (int i = 4; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : "";
        if (!strcmp(a, "--method")) {
            cfg.method = !strcmp(v, "full") ? ENG_TRAIN_FULL : ENG_TRAIN_LORA;
            i++;
        } else if (!strcmp(a, "--rank")) {
            cfg.lora_rank = atoi(v);
            i++;
        } else if (!strcmp(a, "--alpha")) {
            cfg.lora_alpha = strtof(v, NULL);
            i++;
        } else if (!strcmp(a, "--rslora")) {
            cfg.lora_rslora = true;
        } else if (!strcmp(a, "--targets")) {
            if (eng_lora_targets_parse(v, &cfg.lora_targets) < 0)
                return fail("bad --targets", NULL);
            i++;
        } else if (!strcmp(a, "--micro-tokens")) {
            cfg.micro_batch_tokens = atoi(v);
            i++;
        } else if (!strcmp(a, "--lr")) {
            cfg.lr = strtof(v, NULL);
            i++;
        } else if (!strcmp(a, "--wd")) {
            cfg.weight_decay = strtof(v, NULL);
            i++;
        } else if (!strcmp(a, "--clip")) {
            cfg.clip_norm = strtof(v, NULL);
            i++;
        } else if (!strcmp(a, "--rope")) {
            rope = v;
            i++;
        } else if (!strcmp(a, "--scratch")) {
            scratch = v;
            i++;
        } else if (!strcmp(a, "--scratch-out")) {
            scratch_out = v;
            i++;
        } else if (!strcmp(a, "--recompute")) {
            cfg.recompute = true;
        } else if (!strcmp(a, "--threads")) {
            threads = atoi(v);
            i++;
        } else {
            fprintf(stderr, "train_grads: unknown option %s\n", a);
            return 2;
        }
    }
    struct errbuf eb = {{0}};
    eng_backend_t *be;
    struct eng_cpu_params cp = {.n_threads = threads};
    if (eng_cpu_backend_new(&cp, &be) < 0)
        return fail("cpu backend", NULL);
    const char *model_path = argv[1];
    if (scratch && scratch_out) {
        eng_gguf_t *src, *sg;
        if (eng_gguf_open(argv[1], &src, &eb) < 0 ||
            eng_train_scratch_model(scratch, src, true, 5, &sg, &eb) < 0 ||
            eng_gguf_write(sg, scratch_out, &eb) < 0)
            return fail("scratch model", &eb);
        eng_gguf_free(sg);
        eng_gguf_free(src);
        model_path = scratch_out;
    }
    eng_model_t *m;
    struct eng_model_params mp = {.be = be};
    if (eng_model_load(model_path, &mp, &m, &eb) < 0)
        return fail("model", &eb);
    if (rope)   // the test exercises both rotary layouts on the same weights
        m->hp.rope_mode = !strcmp(rope, "neox") ? ENG_ROPE_NEOX : ENG_ROPE_NORM;
    // samples
    FILE *f = fopen(argv[2], "r");
    if (!f)
        return fail("cannot open SAMPLES", NULL);
    eng_train_data_t *d;
    eng_train_data_new(&d);
    char line[65536];
    int32_t tok[4096];
    uint8_t mask[4096];
    int n_samples = 0;
    while (fgets(line, sizeof line, f)) {
        char *semi = strchr(line, ';');
        if (!semi)
            continue;
        *semi = '\0';
        int n = 0, k = 0;
        for (char *s = strtok(line, ","); s && n < 4096; s = strtok(NULL, ","))
            tok[n++] = atoi(s);
        for (char *s = strtok(semi + 1, ",\n"); s && k < 4096; s = strtok(NULL, ",\n"))
            mask[k++] = (uint8_t)atoi(s);
        if (k != n || eng_train_data_add(d, tok, mask, n) < 0)
            return fail("bad sample line", NULL);
        n_samples++;
    }
    fclose(f);
    cfg.batch_samples = n_samples;
    cfg.max_steps = 1;
    snprintf(cfg.out_dir, sizeof cfg.out_dir, "/nonexistent");
    eng_train_t *t;
    if (eng_train_new(m, &cfg, d, NULL, NULL, &t, &eb) < 0)
        return fail("train_new", &eb);
    // LoRA B starts at zero (PEFT); give it values so the test sees A's gradient too
    uint64_t s = 12345;
    for (int i = 0; i < t->n_params; i++) {
        struct trn_param *p = &t->params[i];
        const size_t nl = strlen(p->name);
        if (nl > 7 && !strcmp(p->name + nl - 7, ".lora_b")) {
            const int64_t n = trn_param_n(p);
            float *h = malloc((size_t)n * 4);
            for (int64_t k = 0; k < n; k++) {
                s = s * 6364136223846793005ull + 1442695040888963407ull;
                h[k] = ((float)(s >> 40) / 16777216.0f - 0.5f) * 0.07f;   // ~N(0, 0.02)
            }
            trn_dev_set(t, p->w, h, n);
            free(h);
        }
    }
    eng_gguf_t *g;
    eng_gguf_new(&g);
    if (dump(t, g, "init", 0) < 0)
        return fail("dump init", NULL);
    if (eng_train_step(t, &eb) != 0)
        return fail("step", &eb);
    if (dump(t, g, "grad", 1) < 0 || dump(t, g, "post", 0) < 0)
        return fail("dump", NULL);
    eng_gguf_set_f32(g, "train.loss", (float)t->last_loss);
    eng_gguf_set_f32(g, "train.grad_norm", (float)t->last_gnorm);
    eng_gguf_set_f32(g, "train.lr", cfg.lr);
    eng_gguf_set_f32(g, "train.wd", cfg.weight_decay);
    eng_gguf_set_f32(g, "train.clip", cfg.clip_norm);
    eng_gguf_set_f32(g, "train.beta1", cfg.beta1);
    eng_gguf_set_f32(g, "train.beta2", cfg.beta2);
    eng_gguf_set_f32(g, "train.eps", cfg.eps);
    eng_gguf_set_f32(g, "train.lora_scale", t->lora_scale);
    eng_gguf_set_u32(g, "train.lora_rank", (uint32_t)t->R);
    eng_gguf_set_bool(g, "train.neox", m->hp.rope_mode == ENG_ROPE_NEOX);
    if (eng_gguf_write(g, argv[3], &eb) < 0)
        return fail("write", &eb);
    printf("loss %.6f grad_norm %.6f params %d trainable %lld\n", t->last_loss, t->last_gnorm,
           t->n_params, (long long)t->n_trainable);
    eng_gguf_free(g);
    eng_train_free(t);
    eng_train_data_free(d);
    eng_model_free(m);
    eng_backend_free(be);
    return 0;
}
