/* tests/test_train.c: the training engine at the job level, on random models built in
 * memory:
 *   - resume: a run stopped after k steps (checkpoint, new job, eng_train_resume) ends
 *     bit-identical to one that never stopped, LoRA and full, across an epoch boundary;
 *     a stop request mid-run checkpoints the last completed step;
 *   - LoRA over every frozen base dtype (F32, F16, BF16, Q8_0, Q4_0) and full FT with BF16
 *     compute learn: the loss on a repeated batch falls;
 *   - datasets: chat / prompt-completion masks, template rendering, errors that name the
 *     line, limits, text windows, the upload check, held-out split;
 *   - schedules, target parsing, config checks;
 *   - exports: adapter.gguf and model.gguf read back (names, shapes, values), safetensors
 *     header, and a fine-tuned model.gguf that loads and computes the trained logits. */
#include "check.h"
#include "../engine/train/train_impl.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>


static char tmpdir[256];

static eng_model_t *model_of(eng_backend_t *be, const char *shape, enum eng_dtype dt)
{
    struct eng_random_model rm = {.dtype = dt, .std = 0.05f, .norm_std = 0.1f, .seed = 11,
                                  .n_threads = 2};
    snprintf(rm.shape, sizeof rm.shape, "%s", shape);
    struct errbuf eb = {{0}};
    eng_gguf_t *g;
    eng_model_t *m;
    struct eng_model_params mp = {.be = be};
    if (eng_random_model_build(&rm, &g, &eb) < 0 || eng_model_from_gguf(g, &mp, &m, &eb) < 0) {
        fprintf(stderr, "model: %s\n", eb.msg);
        exit(1);
    }
    return m;
}

/* n samples of lengths 5..40 over tokens [3, V) with masks on a suffix. */
static eng_train_data_t *random_data(int n, int V, uint64_t seed)
{
    eng_train_data_t *d;
    eng_train_data_new(&d);
    int32_t tok[64];
    uint8_t mask[64];
    for (int i = 0; i < n; i++) {
        int len = 5 + (int)(seed % 36);
        for (int j = 0; j < len; j++) {
            seed = seed * 6364136223846793005ull + 1442695040888963407ull;
            tok[j] = 3 + (int)((seed >> 33) % (uint64_t)(V - 3));
            mask[j] = j >= len / 3;
        }
        eng_train_data_add(d, tok, mask, len);
    }
    return d;
}

static void base_cfg(struct eng_train_config *c, enum eng_train_method m, const char *sub)
{
    eng_train_config_default(c);
    c->method = m;
    c->lora_rank = 4;
    c->lr = 3e-3f;
    c->batch_samples = 6;
    c->micro_batch_tokens = 64;
    c->epochs = 2;
    c->weight_decay = 0.01f;
    c->clip_norm = 1.0f;
    c->schedule = ENG_SCHED_COSINE;
    c->warmup_steps = 2;
    snprintf(c->out_dir, sizeof c->out_dir, "%s/%s", tmpdir, sub);
}

/* All trainable weights and moments of a job, concatenated (host). */
static float *state_of(eng_train_t *t, size_t *n)
{
    size_t total = 0;
    for (int i = 0; i < t->n_params; i++)
        total += 3 * (size_t)trn_param_n(&t->params[i]);
    float *s = malloc(total * sizeof(float)), *p = s;
    for (int i = 0; i < t->n_params; i++) {
        const int64_t k = trn_param_n(&t->params[i]);
        trn_dev_get(t, t->params[i].w, p, k);
        trn_dev_get(t, t->params[i].m, p + k, k);
        trn_dev_get(t, t->params[i].v, p + 2 * k, k);
        p += 3 * k;
    }
    *n = total;
    return s;
}

struct stop_after {
    int64_t at;
    eng_train_t *t;
    int ckpts;
};

static int on_ev(void *ctx, const struct eng_train_event *ev)
{
    struct stop_after *s = ctx;
    if (ev->kind == ENG_TRAIN_EV_STEP && ev->step == s->at)
        eng_train_request_stop(s->t);
    if (ev->kind == ENG_TRAIN_EV_CHECKPOINT)
        s->ckpts++;
    return 0;
}

static void test_resume(eng_backend_t *be, enum eng_train_method method)
{
    eng_model_t *m = model_of(be, "dim=64,layers=2,heads=4,kv_heads=2,ffn=96,vocab=300",
                              ENG_DTYPE_F32);
    eng_train_data_t *d = random_data(20, 300, 5);   // 4 steps an epoch, 8 in all
    struct errbuf eb = {{0}};
    struct eng_train_config c;
    // A: uninterrupted
    base_cfg(&c, method, method == ENG_TRAIN_LORA ? "resume-a-lora" : "resume-a-full");
    eng_train_t *a;
    CHECK(eng_train_new(m, &c, d, NULL, NULL, &a, &eb) == 0, "new: %s", eb.msg);
    CHECK(eng_train_run(a, &eb) == 0, "run: %s", eb.msg);
    size_t na;
    float *sa = state_of(a, &na);
    const double loss_a = a->last_loss;
    CHECK(a->step == 8, "steps %lld", (long long)a->step);
    // B: stopped after step 5 (inside epoch 2) by a callback, resumed in a new job
    base_cfg(&c, method, method == ENG_TRAIN_LORA ? "resume-b-lora" : "resume-b-full");
    eng_train_t *b;
    struct stop_after st = {.at = 5};
    struct eng_train_callbacks cb = {.on_event = on_ev, .ctx = &st};
    CHECK(eng_train_new(m, &c, d, NULL, &cb, &b, &eb) == 0, "new: %s", eb.msg);
    st.t = b;
    CHECK(eng_train_resume(b, NULL, &eb) == ERR_NOTFOUND, "resume with no checkpoint");
    CHECK(eng_train_run(b, &eb) == ERR_CANCELLED, "stop: %s", eb.msg);
    CHECK(b->step == 5 && st.ckpts == 1, "stopped at %lld with %d checkpoints",
          (long long)b->step, st.ckpts);
    eng_train_free(b);
    eng_train_t *b2;
    CHECK(eng_train_new(m, &c, d, NULL, NULL, &b2, &eb) == 0, "new: %s", eb.msg);
    CHECK(eng_train_resume(b2, NULL, &eb) == 0, "resume: %s", eb.msg);
    CHECK(b2->step == 5 && b2->epoch == 1, "resumed at step %lld epoch %d", (long long)b2->step,
          b2->epoch);
    CHECK(eng_train_run(b2, &eb) == 0, "run: %s", eb.msg);
    size_t nb;
    float *sb = state_of(b2, &nb);
    CHECK(na == nb && !memcmp(sa, sb, na * sizeof(float)),
          "%s: resumed run differs from the uninterrupted one",
          method == ENG_TRAIN_LORA ? "lora" : "full");
    CHECK(b2->last_loss == loss_a, "last loss %.9g vs %.9g", b2->last_loss, loss_a);
    // a checkpoint of another method is refused with a reason
    struct eng_train_config c2 = c;
    c2.method = method == ENG_TRAIN_LORA ? ENG_TRAIN_FULL : ENG_TRAIN_LORA;
    eng_train_t *x;
    CHECK(eng_train_new(m, &c2, d, NULL, NULL, &x, &eb) == 0, "new: %s", eb.msg);
    CHECK(eng_train_resume(x, NULL, &eb) == ERR_CORRUPT && strstr(eb.msg, "another method"),
          "mismatched resume: %s", eb.msg);
    eng_train_free(x);
    // keep_checkpoints (2): only the newest remain
    char p[1200];
    snprintf(p, sizeof p, "%s/checkpoint-8/state.gguf", c.out_dir);
    CHECK(access(p, F_OK) == 0, "final checkpoint missing");
    free(sa);
    free(sb);
    eng_train_free(a);
    eng_train_free(b2);
    eng_train_data_free(d);
    eng_model_free(m);
}

/* Overfits one repeated batch: the loss must fall clearly. */
static void test_learns(eng_backend_t *be, enum eng_dtype dt, enum eng_train_method method,
                        bool bf16)
{
    eng_model_t *m = model_of(be, "dim=64,layers=2,heads=4,kv_heads=2,ffn=128,vocab=300", dt);
    eng_train_data_t *d = random_data(4, 300, 9);
    struct errbuf eb = {{0}};
    struct eng_train_config c;
    base_cfg(&c, method, "learns");
    c.batch_samples = 4;
    c.epochs = 30;
    c.lr = method == ENG_TRAIN_LORA ? 1e-2f : 3e-3f;
    c.schedule = ENG_SCHED_CONSTANT;
    c.warmup_steps = 0;
    c.bf16_compute = bf16;
    c.lora_rank = 8;
    eng_train_t *t;
    CHECK(eng_train_new(m, &c, d, NULL, NULL, &t, &eb) == 0, "new: %s", eb.msg);
    double first = NAN, last = NAN;
    for (int s = 0; s < 30; s++) {
        CHECK(eng_train_step(t, &eb) == 0, "step: %s", eb.msg);
        if (s == 0)
            first = t->last_loss;
        last = t->last_loss;
    }
    CHECK(last < 0.5 * first, "%s %s%s: loss %.4f -> %.4f did not fall", eng_dtype_name(dt),
          method == ENG_TRAIN_LORA ? "lora" : "full", bf16 ? " bf16" : "", first, last);
    printf("  learns %s %s%s: %.4f -> %.4f\n", eng_dtype_name(dt),
           method == ENG_TRAIN_LORA ? "lora" : "full", bf16 ? " bf16" : "", first, last);
    eng_train_free(t);
    eng_train_data_free(d);
    eng_model_free(m);
}

static void test_data(eng_backend_t *be)
{
    eng_model_t *m = model_of(be, "tiny", ENG_DTYPE_F32);
    const eng_vocab_t *v = eng_model_vocab(m);
    struct errbuf eb = {{0}};
    struct eng_data_opts o;
    eng_data_opts_default(&o);
    o.chat_template = "chatml";
    const char *ok = "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"},"
                     "{\"role\":\"assistant\",\"content\":\"hello there\"}]}\n"
                     "\n"
                     "{\"prompt\":\"2+2=\",\"completion\":\"4\"}\n";
    eng_train_data_t *d;
    CHECK(eng_train_data_load_mem(v, "ok.jsonl", ok, strlen(ok), &o, &d, &eb) == 0, "load: %s",
          eb.msg);
    struct eng_train_data_stats s;
    eng_train_data_stats(d, &s);
    CHECK(s.n_samples == 2, "samples %lld", (long long)s.n_samples);
    // the supervised tokens of the chat sample decode to the assistant's reply + end marker
    const int32_t *tok;
    const uint8_t *mask;
    int32_t n;
    eng_train_data_get(d, 0, &tok, &mask, &n);
    char sup[256] = "", all[512] = "";
    int32_t ids[128];
    int ns = 0;
    for (int32_t i = 0; i < n; i++)
        if (mask[i])
            ids[ns++] = tok[i];
    eng_detokenize(v, ids, (size_t)ns, true, sup, sizeof sup);
    eng_detokenize(v, tok, (size_t)n, true, all, sizeof all);
    // (the random model's byte-level vocab detokenizes a space as its SPM marker)
    CHECK(!strncmp(sup, "hello", 5) && strstr(sup, "there<|im_end|>") &&
              !strstr(sup, "\n") && !strstr(sup, "hi") && !strstr(sup, "user"),
          "chat supervision covers '%s' of '%s'", sup, all);
    CHECK(tok[0] == eng_vocab_bos(v) && !mask[0], "BOS first and unsupervised");
    eng_train_data_get(d, 1, &tok, &mask, &n);
    ns = 0;
    for (int32_t i = 0; i < n; i++)
        if (mask[i])
            ids[ns++] = tok[i];
    CHECK(ns >= 2 && ids[ns - 1] == eng_vocab_eos(v), "completion: EOS supervised");
    eng_train_data_free(d);
    // errors name the line
    const struct {
        const char *text, *want;
    } bad[] = {
        {"{\"prompt\":\"a\",\"completion\":\"b\"}\n{oops\n", "line 2: invalid JSON"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}\n", "line 1: 'messages' has no assistant"},
        {"\n\n{\"messages\":[{\"role\":\"robot\",\"content\":\"x\"}]}", "line 3: messages[0].role"},
        {"{\"prompt\":\"a\",\"completion\":\"\"}", "line 1: 'completion' is empty"},
        {"[1,2]", "line 1: is not a JSON object"},
        {"{\"text\":\"x\"}", "line 1: has neither"},
        {"\n \n", "no samples"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        eb.msg[0] = '\0';
        int rc = eng_train_data_load_mem(v, "bad.jsonl", bad[i].text, strlen(bad[i].text), &o, &d,
                                         &eb);
        CHECK(rc == ERR_CORRUPT && strstr(eb.msg, bad[i].want), "bad[%zu]: rc %d '%s'", i, rc,
              eb.msg);
        int64_t nl;
        rc = eng_train_data_check_jsonl(bad[i].text, strlen(bad[i].text), ENG_DATA_AUTO, &nl, &eb);
        CHECK(rc == ERR_CORRUPT && strstr(eb.msg, bad[i].want), "check bad[%zu]: '%s'", i, eb.msg);
    }
    int64_t nl = 0;
    CHECK(eng_train_data_check_jsonl(ok, strlen(ok), ENG_DATA_AUTO, &nl, &eb) == 0 && nl == 2,
          "upload check of a good file: %s", eb.msg);
    // a completion cut entirely by max_seq_len leaves nothing to learn: named
    o.max_seq_len = 4;
    const char *longp = "{\"prompt\":\"a very long prompt that fills the window\",\"completion\":\"x\"}";
    CHECK(eng_train_data_load_mem(v, "l.jsonl", longp, strlen(longp), &o, &d, &eb) == ERR_CORRUPT &&
              strstr(eb.msg, "line 1: no supervised token"), "truncation: %s", eb.msg);
    // limits
    o.max_seq_len = 1024;
    o.max_samples = 1;
    CHECK(eng_train_data_load_mem(v, "ok.jsonl", ok, strlen(ok), &o, &d, &eb) == ERR_TOOLARGE,
          "max samples: %s", eb.msg);
    o.max_samples = 0;
    o.max_bytes = 10;
    CHECK(eng_train_data_load_mem(v, "ok.jsonl", ok, strlen(ok), &o, &d, &eb) == ERR_TOOLARGE,
          "max bytes");
    o.max_bytes = 0;
    // text windows: every token supervised, windows of max_seq_len starting with BOS
    o.format = ENG_DATA_TEXT;
    o.max_seq_len = 32;
    char text[4000];
    size_t tl = 0;
    while (tl + 40 < sizeof text)
        tl += (size_t)snprintf(text + tl, sizeof text - tl, "The quick brown fox %zu jumps.\n", tl);
    CHECK(eng_train_data_load_mem(v, "t.txt", text, tl, &o, &d, &eb) == 0, "text: %s", eb.msg);
    eng_train_data_stats(d, &s);
    CHECK(s.n_samples >= 3 && s.max_len == 32 && s.n_supervised == s.n_tokens - s.n_samples,
          "text windows: %lld samples, max %d, sup %lld of %lld", (long long)s.n_samples,
          s.max_len, (long long)s.n_supervised, (long long)s.n_tokens);
    eng_train_data_t *ho;
    const int64_t before = s.n_samples;
    CHECK(eng_train_data_split(d, 3, &ho) == 0, "split");
    struct eng_train_data_stats hs;
    eng_train_data_stats(ho, &hs);
    eng_train_data_stats(d, &s);
    CHECK(hs.n_samples == before / 3 && s.n_samples + hs.n_samples == before, "split sizes");
    eng_train_data_free(ho);
    eng_train_data_free(d);
    // template families from a model's Jinja template
    o.format = ENG_DATA_AUTO;
    o.max_seq_len = 256;
    o.chat_template = "{% for m in messages %}<|start_header_id|>{{ m.role }}...";
    CHECK(eng_train_data_load_mem(v, "ok.jsonl", ok, strlen(ok), &o, &d, &eb) == 0, "llama3");
    eng_train_data_free(d);
    o.chat_template = "{{ unknown }}";
    CHECK(eng_train_data_load_mem(v, "ok.jsonl", ok, strlen(ok), &o, &d, &eb) == ERR_UNSUPPORTED,
          "unknown template");
    char name[32];
    CHECK(eng_train_chat_template_of(m, name, sizeof name) == 0 && !strcmp(name, "plain"),
          "a model without a template: %s", name);
    eng_model_free(m);
}

static void test_config(void)
{
    uint32_t t;
    CHECK(eng_lora_targets_parse("q,v", &t) == 0 && t == (ENG_LORA_Q | ENG_LORA_V), "q,v");
    CHECK(eng_lora_targets_parse("attn,down_proj", &t) == 0 &&
              t == (ENG_LORA_Q | ENG_LORA_K | ENG_LORA_V | ENG_LORA_O | ENG_LORA_DOWN), "attn");
    CHECK(eng_lora_targets_parse("q,x", &t) == ERR_INVAL, "bad target");
    char buf[64];
    eng_lora_targets_str(ENG_LORA_ALL, buf, sizeof buf);
    CHECK(!strcmp(buf, "q,k,v,o,gate,up,down"), "targets str %s", buf);
    struct eng_train_config c;
    eng_train_config_default(&c);
    c.schedule = ENG_SCHED_COSINE;
    c.warmup_steps = 4;
    c.lr = 1.0f;
    c.min_lr_ratio = 0.1f;
    CHECK(fabs(eng_train_lr_at(&c, 0, 104) - 0.2) < 1e-6, "warmup start");
    CHECK(fabs(eng_train_lr_at(&c, 4, 104) - 1.0) < 1e-6, "warmup end");
    CHECK(fabs(eng_train_lr_at(&c, 54, 104) - 0.55) < 1e-6, "cosine middle");
    c.schedule = ENG_SCHED_LINEAR;
    CHECK(fabs(eng_train_lr_at(&c, 54, 104) - 0.55) < 1e-6, "linear middle");
    CHECK(fabs(eng_train_lr_at(&c, 104, 104) - 0.1) < 1e-6, "linear end");
    c.schedule = ENG_SCHED_CONSTANT;
    CHECK(eng_train_lr_at(&c, 90, 104) == 1.0, "constant");
    struct errbuf eb;
    eng_train_config_default(&c);
    CHECK(eng_train_config_check(&c, &eb) == ERR_INVAL && strstr(eb.msg, "output directory"),
          "out_dir required");
    snprintf(c.out_dir, sizeof c.out_dir, "/tmp/x");
    CHECK(eng_train_config_check(&c, &eb) == 0, "defaults valid: %s", eb.msg);
    c.lora_rank = 0;
    CHECK(eng_train_config_check(&c, &eb) == ERR_INVAL && strstr(eb.msg, "rank"), "rank 0");
    eng_train_config_default(&c);
    snprintf(c.out_dir, sizeof c.out_dir, "/tmp/x");
    c.from_scratch = true;
    CHECK(eng_train_config_check(&c, &eb) == ERR_INVAL && strstr(eb.msg, "full"),
          "scratch needs full");
    enum eng_lr_schedule sc;
    CHECK(eng_lr_schedule_parse("cosine", &sc) == 0 && sc == ENG_SCHED_COSINE, "parse cosine");
}

static void test_export(eng_backend_t *be)
{
    eng_model_t *m = model_of(be, "dim=64,layers=2,heads=4,kv_heads=2,ffn=96,vocab=300",
                              ENG_DTYPE_F32);
    eng_train_data_t *d = random_data(8, 300, 3);
    struct errbuf eb = {{0}};
    struct eng_train_config c;
    base_cfg(&c, ENG_TRAIN_LORA, "export-lora");
    c.lora_targets = ENG_LORA_Q | ENG_LORA_DOWN;
    c.epochs = 1;
    eng_train_t *t;
    CHECK(eng_train_new(m, &c, d, NULL, NULL, &t, &eb) == 0, "new: %s", eb.msg);
    CHECK(eng_train_run(t, &eb) == 0, "run: %s", eb.msg);
    char dir[1200], p[1300];
    snprintf(dir, sizeof dir, "%s/export-lora/out", tmpdir);
    CHECK(eng_train_export(t, dir, NULL, &eb) == 0, "export: %s", eb.msg);
    snprintf(p, sizeof p, "%s/adapter.gguf", dir);
    eng_gguf_t *g;
    CHECK(eng_gguf_open(p, &g, &eb) == 0, "open adapter: %s", eb.msg);
    const char *s;
    size_t sl;
    float alpha;
    CHECK(eng_gguf_get_str(g, "general.type", &s, &sl) == 0 && sl == 7 && !memcmp(s, "adapter", 7),
          "general.type");
    CHECK(eng_gguf_get_f32(g, "adapter.lora.alpha", &alpha) == 0 && alpha == c.lora_alpha, "alpha");
    CHECK(eng_gguf_n_tensors(g) == 2 * 2 * 2, "tensors: %lld", (long long)eng_gguf_n_tensors(g));
    int64_t i = eng_gguf_find_tensor(g, "blk.1.ffn_down.weight.lora_a");
    struct eng_gguf_tensor gt;
    CHECK(i >= 0, "lora_a of down");
    if (i >= 0) {
        eng_gguf_tensor_at(g, i, &gt);
        CHECK(gt.ne[0] == 96 && gt.ne[1] == 4, "lora_a shape {in, r}");
        float *h = malloc(96 * 4 * 4);
        trn_dev_get(t, t->layers[1].lin[TRN_DOWN].a->w, h, 96 * 4);
        CHECK(!memcmp(h, gt.data, 96 * 4 * 4), "lora_a values");
        free(h);
    }
    i = eng_gguf_find_tensor(g, "blk.0.attn_q.weight.lora_b");
    if (i >= 0) {
        eng_gguf_tensor_at(g, i, &gt);
        CHECK(gt.ne[0] == 4 && gt.ne[1] == 64, "lora_b shape {r, out}");
    }
    eng_gguf_free(g);
    // safetensors: the header names the HF modules
    snprintf(p, sizeof p, "%s/adapter_model.safetensors", dir);
    FILE *f = fopen(p, "rb");
    CHECK(f != NULL, "safetensors missing");
    if (f) {
        uint64_t hl = 0;
        CHECK(fread(&hl, 8, 1, f) == 1 && hl < 100000 && hl % 8 == 0, "header length");
        char *h = calloc(1, hl + 1);
        CHECK(fread(h, 1, hl, f) == hl, "header");
        CHECK(strstr(h, "\"base_model.model.model.layers.1.mlp.down_proj.lora_A.weight\":{"
                        "\"dtype\":\"F32\",\"shape\":[4,96]") != NULL, "safetensors header: %s", h);
        free(h);
        fclose(f);
    }
    snprintf(p, sizeof p, "%s/adapter_config.json", dir);
    CHECK(access(p, F_OK) == 0, "adapter_config.json");
    // the checkpoint directory also holds a usable adapter
    snprintf(p, sizeof p, "%s/export-lora/checkpoint-%lld/adapter.gguf", tmpdir, (long long)t->step);
    CHECK(access(p, F_OK) == 0, "adapter in the checkpoint");
    eng_train_free(t);

    // full: model.gguf loads and gives the logits of the trained weights
    base_cfg(&c, ENG_TRAIN_FULL, "export-full");
    c.epochs = 1;
    CHECK(eng_train_new(m, &c, d, NULL, NULL, &t, &eb) == 0, "new: %s", eb.msg);
    CHECK(eng_train_run(t, &eb) == 0, "run: %s", eb.msg);
    snprintf(dir, sizeof dir, "%s/export-full/out", tmpdir);
    CHECK(eng_train_export(t, dir, NULL, &eb) == 0, "export: %s", eb.msg);
    // eval loss of the job vs a new job over the exported model (same data, fresh params
    // copied from the file): equal
    double l1, l2;
    CHECK(eng_train_eval(t, d, &l1, &eb) == 0, "eval");
    snprintf(p, sizeof p, "%s/model.gguf", dir);
    eng_model_t *m2;
    struct eng_model_params mp = {.be = be};
    CHECK(eng_model_load(p, &mp, &m2, &eb) == 0, "load exported: %s", eb.msg);
    eng_train_t *t2;
    base_cfg(&c, ENG_TRAIN_LORA, "export-full2");
    CHECK(eng_train_new(m2, &c, d, NULL, NULL, &t2, &eb) == 0, "new: %s", eb.msg);
    CHECK(eng_train_eval(t2, d, &l2, &eb) == 0, "eval");
    CHECK(fabs(l1 - l2) < 1e-5 * fabs(l1), "exported model's loss %.7f vs the job's %.7f", l2, l1);
    struct eng_model_info info;
    eng_model_info(m2, &info);
    CHECK(info.n_vocab == 300, "vocab kept");
    eng_train_free(t2);
    eng_model_free(m2);
    eng_train_free(t);
    eng_train_data_free(d);
    eng_model_free(m);
}

static void rm_rf(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        char p[1024];
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        struct stat st;
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
            rm_rf(p);
        else
            unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/orthod-test-train-XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    struct eng_cpu_params cp = {.n_threads = 2};
    eng_backend_t *be;
    if (eng_cpu_backend_new(&cp, &be) < 0)
        return 1;
    test_config();
    test_data(be);
    test_resume(be, ENG_TRAIN_LORA);
    test_resume(be, ENG_TRAIN_FULL);
    const enum eng_dtype dts[] = {ENG_DTYPE_F32, ENG_DTYPE_F16, ENG_DTYPE_BF16, ENG_DTYPE_Q8_0,
                                  ENG_DTYPE_Q4_0};
    for (size_t i = 0; i < sizeof dts / sizeof dts[0]; i++)
        test_learns(be, dts[i], ENG_TRAIN_LORA, false);
    test_learns(be, ENG_DTYPE_F32, ENG_TRAIN_FULL, false);
    test_learns(be, ENG_DTYPE_F32, ENG_TRAIN_FULL, true);
    test_export(be);
    eng_backend_free(be);
    if (!failures)
        rm_rf(tmpdir);
    printf("%d failures\n", failures);
    return failures ? 1 : 0;
}
