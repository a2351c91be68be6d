/* server/cli/bench.c: `orthod bench`: prefill and decode speed, like llama-bench's pp and tg.
 * pp: one batch of --prompt-tokens random tokens into an empty cache.
 * tg: --gen-tokens single-token steps from an empty cache (--batch N: N sequences decoding
 *     together, one token each per step; reported tokens/s counts all of them).
 * --depth N: before each run (untimed) every sequence is filled with N random tokens, so
 *     the timed tokens attend to N more positions (llama-bench -d).
 * --save FILE.gguf: also writes the --random-model to FILE.gguf, so that another program
 *     (llama.cpp) can be measured on the very same weights.
 * Each test runs once to warm up, then --repetitions times; the median is reported. */
#include "cmd.h"

#include "../../common/opt.h"
#include "cli.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct bench_opts {
    char *model, *random_model, *dtype, *device, *kv_type, *save;
    int prompt_tokens, gen_tokens, threads, repetitions, batch, ctx_size, depth;
    int64_t seed;
    bool json;
};

#define O(f) offsetof(struct bench_opts, f)
static const struct opt_def bench_defs[] = {
    {"model", OPT_STRING, O(model), NULL, 1, 0, NULL, 0, "PATH", "GGUF file or Hugging Face folder"},
    {"random-model", OPT_STRING, O(random_model), NULL, 1, 0, NULL, 0, "SHAPE",
     "random weights of a named shape instead of --model: stories15M, stories110M, llama7b, "
     "tiny, or dim=..,layers=..,heads=..,kv_heads=..,ffn=..,vocab=.."},
    {"dtype", OPT_STRING, O(dtype), "f32", 1, 0, "f32|f16|bf16|q8_0|q4_0", 0, "TYPE",
     "weight type of --random-model"},
    {"seed", OPT_INT64, O(seed), "1", 0, 9.2e18, NULL, 0, "S", "random model seed"},
    {"save", OPT_STRING, O(save), NULL, 1, 0, NULL, 0, "FILE",
     "also write the --random-model to this GGUF file (for llama.cpp on the same weights)"},
    {"prompt-tokens", OPT_INT, O(prompt_tokens), "512", 0, 65536, NULL, 0, "N",
     "prefill test size (0 = skip)"},
    {"gen-tokens", OPT_INT, O(gen_tokens), "128", 0, 65536, NULL, 0, "N",
     "decode test size (0 = skip)"},
    {"batch", OPT_INT, O(batch), "1", 1, 4096, NULL, 0, "N", "sequences decoding together"},
    {"depth", OPT_INT, O(depth), "0", 0, 1 << 20, NULL, 0, "N",
     "tokens already in each sequence's cache before a timed run (llama-bench -d)"},
    {"repetitions", OPT_INT, O(repetitions), "5", 1, 1000, NULL, 0, "N", "timed runs per test"},
    {"threads", OPT_INT, O(threads), "0", 0, 512, NULL, 0, "N", "CPU threads (0 = all)"},
    {"device", OPT_STRING, O(device), "cpu", 1, 0, NULL, 0, "DEV", "cpu, cuda or cuda:N"},
    {"kv-type", OPT_STRING, O(kv_type), "f16", 1, 0, "f16|f32", 0, "TYPE", "KV cache format"},
    {"ctx-size", OPT_INT, O(ctx_size), "0", 0, 1 << 24, NULL, 0, "N",
     "context length (0 = depth + the larger of prompt and gen tokens)"},
    {"json", OPT_BOOL, O(json), NULL, 1, 0, NULL, 0, NULL, "print one JSON object"},
};
#undef O
#define N_DEFS (sizeof bench_defs / sizeof bench_defs[0])

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

struct result {
    const char *name;
    int n_tokens;      /* per repetition, all sequences */
    double *tps;       /* (reps) tokens/s */
    double median, mean, stdev;
};

static void summarize(struct result *r, int reps)
{
    double *s = malloc(sizeof *s * (size_t)reps);
    if (!s)
        return;
    memcpy(s, r->tps, sizeof *s * (size_t)reps);
    qsort(s, (size_t)reps, sizeof *s, cmp_double);
    r->median = reps % 2 ? s[reps / 2] : 0.5 * (s[reps / 2 - 1] + s[reps / 2]);
    double sum = 0, sq = 0;
    for (int i = 0; i < reps; i++)
        sum += s[i];
    r->mean = sum / reps;
    for (int i = 0; i < reps; i++)
        sq += (s[i] - r->mean) * (s[i] - r->mean);
    r->stdev = reps > 1 ? sqrt(sq / (reps - 1)) : 0.0;
    free(s);
}

/* xorshift for random token ids */
static uint32_t next_tok(uint64_t *s, int32_t n_vocab)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return (uint32_t)(*s % (uint64_t)n_vocab);
}

static int clear_all(eng_ctx_t *c, int32_t *seqs, int n)
{
    for (int i = 0; i < n; i++)
        eng_ctx_seq_free(c, seqs[i]);
    for (int i = 0; i < n; i++)
        if (eng_ctx_seq_new(c, &seqs[i]) < 0)
            return ERR_INTERNAL;
    return 0;
}

/* Appends `depth` random tokens to each of the n sequences, n_batch at most per step. */
static int fill_depth(eng_ctx_t *c, const int32_t *seqs, int n, int depth, int n_batch,
                      int32_t n_vocab, uint64_t *rng, int32_t *toks, int32_t *sid)
{
    for (int i = 0; i < n; i++) {
        for (int done = 0; done < depth;) {
            const int k = depth - done < n_batch ? depth - done : n_batch;
            for (int t = 0; t < k; t++) {
                toks[t] = (int32_t)next_tok(rng, n_vocab);
                sid[t] = seqs[i];
            }
            struct eng_batch b = {.n = k, .tokens = toks, .seq_id = sid};
            int rc = eng_ctx_decode(c, &b);
            if (rc < 0)
                return rc;
            done += k;
        }
    }
    return 0;
}

struct run_args {
    eng_ctx_t *c;
    int32_t *seqs;
    int depth, n_batch;
    int32_t n_vocab;
    uint64_t *rng;
    int32_t *toks, *sid;
};

static int run_pp(const struct run_args *a, int n, double *secs)
{
    int rc = clear_all(a->c, a->seqs, 1);
    if (rc < 0 || (rc = fill_depth(a->c, a->seqs, 1, a->depth, a->n_batch, a->n_vocab, a->rng,
                                   a->toks, a->sid)) < 0)
        return rc;
    for (int i = 0; i < n; i++) {
        a->toks[i] = (int32_t)next_tok(a->rng, a->n_vocab);
        a->sid[i] = a->seqs[0];
    }
    struct eng_batch b = {.n = n, .tokens = a->toks, .seq_id = a->sid};
    double t = cli_now();
    rc = eng_ctx_decode(a->c, &b);
    *secs = cli_now() - t;
    return rc;
}

static int run_tg(const struct run_args *a, int batch, int n, double *secs)
{
    int rc = clear_all(a->c, a->seqs, batch);
    if (rc < 0 || (rc = fill_depth(a->c, a->seqs, batch, a->depth, a->n_batch, a->n_vocab,
                                   a->rng, a->toks, a->sid)) < 0)
        return rc;
    double t = cli_now();
    for (int step = 0; step < n; step++) {
        for (int i = 0; i < batch; i++)
            a->toks[i] = (int32_t)next_tok(a->rng, a->n_vocab);
        struct eng_batch b = {.n = batch, .tokens = a->toks, .seq_id = a->seqs};
        if ((rc = eng_ctx_decode(a->c, &b)) < 0)
            return rc;
    }
    *secs = cli_now() - t;
    return 0;
}

static int run(struct bench_opts *o)
{
    eng_backend_t *be = NULL;
    eng_model_t *m = NULL;
    eng_ctx_t *c = NULL;
    int status;
    struct cli_model_spec spec = {.model = o->model, .random_shape = o->random_model,
                                  .dtype = o->dtype, .seed = (uint64_t)o->seed, .save = o->save,
                                  .device = o->device, .threads = o->threads};
    double t0 = cli_now();
    if ((status = cli_model_open(&spec, &be, &m)) != 0)
        return status;
    double t_load = cli_now() - t0;
    status = 1;
    const struct eng_hparams *hp = eng_model_hparams(m);
    struct eng_model_info info;
    eng_model_info(m, &info);

    struct eng_ctx_params cp;
    eng_ctx_params_default(&cp);
    const int64_t need = (int64_t)o->depth +
                         (o->prompt_tokens > o->gen_tokens ? o->prompt_tokens : o->gen_tokens);
    if (o->ctx_size == 0 && need > (1 << 24)) {
        fprintf(stderr, "orthod bench: --depth plus the test is %lld tokens; the most is %d\n",
                (long long)need, 1 << 24);
        cli_model_close(be, m);
        return 2;
    }
    cp.n_ctx = o->ctx_size > 0 ? o->ctx_size : (int32_t)need;
    cp.n_seq_max = o->batch;
    // one step holds the prompt, one token per sequence, or a chunk of the depth fill
    const int depth_chunk = o->depth < 512 ? o->depth : 512;
    cp.n_batch = o->prompt_tokens > o->batch ? o->prompt_tokens : o->batch;
    cp.n_batch = cp.n_batch > depth_chunk ? cp.n_batch : depth_chunk;
    cp.n_out_max = o->batch;
    eng_kv_format_parse(o->kv_type, &cp.kv_format);
    struct errbuf eb = {{0}};
    int rc = eng_ctx_new(m, &cp, &c, &eb);
    if (rc < 0) {
        fprintf(stderr, "orthod bench: %s\n", eb.msg[0] ? eb.msg : err_str(rc));
        cli_model_close(be, m);
        return 1;
    }
    const int reps = o->repetitions;
    int32_t *seqs = calloc((size_t)o->batch, sizeof *seqs);
    int32_t *toks = calloc((size_t)cp.n_batch, sizeof *toks);
    int32_t *sid = calloc((size_t)cp.n_batch, sizeof *sid);
    double *samples = calloc((size_t)reps * 2, sizeof *samples);
    struct result res[2];
    int n_res = 0;
    uint64_t rng = 0x9e3779b97f4a7c15ull ^ (uint64_t)o->seed;
    if (!seqs || !toks || !sid || !samples)
        goto out;
    for (int i = 0; i < o->batch; i++)
        if (eng_ctx_seq_new(c, &seqs[i]) < 0)
            goto out;
    const struct run_args ra = {.c = c, .seqs = seqs, .depth = o->depth, .n_batch = cp.n_batch,
                                .n_vocab = hp->n_vocab, .rng = &rng, .toks = toks, .sid = sid};
    if (o->prompt_tokens > 0) {
        struct result *r = &res[n_res++];
        r->name = "pp";
        r->n_tokens = o->prompt_tokens;
        r->tps = samples;
        double secs;
        for (int rep = -1; rep < reps; rep++) {     // rep -1: warm-up
            if ((rc = run_pp(&ra, o->prompt_tokens, &secs)) < 0) {
                fprintf(stderr, "orthod bench: prefill failed: %s\n", err_str(rc));
                goto out;
            }
            if (rep >= 0)
                r->tps[rep] = o->prompt_tokens / secs;
        }
        summarize(r, reps);
    }
    if (o->gen_tokens > 0) {
        struct result *r = &res[n_res++];
        r->name = "tg";
        r->n_tokens = o->gen_tokens * o->batch;
        r->tps = samples + reps;
        double secs;
        for (int rep = -1; rep < reps; rep++) {
            if ((rc = run_tg(&ra, o->batch,
                             rep < 0 ? (o->gen_tokens < 16 ? o->gen_tokens : 16) : o->gen_tokens,
                             &secs)) < 0) {
                fprintf(stderr, "orthod bench: decode failed: %s\n", err_str(rc));
                goto out;
            }
            if (rep >= 0)
                r->tps[rep] = (double)o->gen_tokens * o->batch / secs;
        }
        summarize(r, reps);
    }
    size_t rss = cli_peak_rss_bytes();
    if (o->json) {
        printf("{\"model\":\"%s\",\"dtype\":\"%s\",\"n_params\":%lld,\"weight_bytes\":%zu,"
               "\"backend\":\"%s\",\"threads\":%d,\"batch\":%d,\"depth\":%d,\"kv_type\":\"%s\","
               "\"load_seconds\":%.3f,\"peak_rss_bytes\":%zu,\"results\":[",
               info.name, info.dtype, (long long)info.n_params, info.weight_bytes,
               eng_backend_name(be), eng_backend_n_threads(be), o->batch, o->depth, o->kv_type,
               t_load, rss);
        for (int i = 0; i < n_res; i++) {
            printf("%s{\"test\":\"%s%d\",\"tokens_per_second\":%.3f,\"mean\":%.3f,\"stdev\":%.3f,"
                   "\"samples\":[", i ? "," : "", res[i].name,
                   res[i].name[0] == 'p' ? o->prompt_tokens : o->gen_tokens, res[i].median,
                   res[i].mean, res[i].stdev);
            for (int k = 0; k < reps; k++)
                printf("%s%.3f", k ? "," : "", res[i].tps[k]);
            printf("]}");
        }
        printf("]}\n");
    } else {
        printf("| model | dtype | size | params | backend | threads | batch | test | t/s (median) |"
               " stdev |\n|---|---|---:|---:|---|---:|---:|---|---:|---:|\n");
        for (int i = 0; i < n_res; i++) {
            char depth[32] = "";
            if (o->depth > 0)
                snprintf(depth, sizeof depth, " @ d%d", o->depth);
            printf("| %s | %s | %.2f MiB | %.2f M | %s | %d | %d | %s%d%s | %.2f | %.2f |\n",
                   info.name, info.dtype, info.weight_bytes / 1048576.0, info.n_params / 1e6,
                   eng_backend_name(be), eng_backend_n_threads(be), o->batch, res[i].name,
                   res[i].name[0] == 'p' ? o->prompt_tokens : o->gen_tokens, depth,
                   res[i].median, res[i].stdev);
        }
        fprintf(stderr, "load %.2fs, peak RSS %.1f MiB, %s\n", t_load, rss / 1048576.0,
                eng_backend_describe(be));
    }
    status = 0;
out:
    free(seqs);
    free(toks);
    free(sid);
    free(samples);
    eng_ctx_free(c);
    cli_model_close(be, m);
    return status;
}

static const struct opt_cmd bench_cmd = {
    "bench", "usage: orthod bench (--model PATH | --random-model SHAPE --dtype TYPE) [options]",
    bench_defs, N_DEFS, NULL, NULL};

/* The checks between flags: a message for the first that fails, or NULL. */
static const char *bench_opts_error(const struct bench_opts *o)
{
    if (!o->model == !o->random_model)
        return "give exactly one of --model and --random-model";
    if (o->save && !o->random_model)
        return "--save writes the --random-model; with --model the file exists already";
    if (o->prompt_tokens == 0 && o->gen_tokens == 0)
        return "--prompt-tokens and --gen-tokens are both 0: nothing to do";
    return NULL;
}

int cmd_bench(int argc, char **argv)
{
    struct bench_opts o = {0};
    int status = opt_cmd_parse(&bench_cmd, &o, argc, argv);
    const char *err = status < 0 ? bench_opts_error(&o) : NULL;
    if (err) {
        fprintf(stderr, "orthod bench: %s\n", err);
        status = 2;
    } else if (status < 0) {
        status = run(&o);
    }
    opt_free(bench_defs, N_DEFS, &o);
    return status;
}
