/* bench/bench_gpu.c: `bench_gpu`: the CUDA backend's numbers on a GPU host.
 *   micro: device-to-device copy bandwidth (bytes read + written: the HBM roofline), cuBLAS
 *          F16 GEMM TFLOP/s, and the two matmul paths (GEMV kernel vs cuBLAS) on decode
 *          shapes;
 *   model: a random-weight model (engine/engine.h: eng_random_model_build) on the device:
 *          prefill tokens/s, decode tokens/s at each batch size (B sequences, one token each
 *          per step), with CUDA graphs on and off at batch 1, and the fraction of the copy
 *          bandwidth batch-1 decode reaches (weight bytes read per token / time per token).
 * Results go to stdout as a table and, with --json FILE, as JSON. Timing is wall-clock
 * around whole engine calls (CLOCK_MONOTONIC), after warm-up. */
#include "../engine/engine.h"
#include "../gpu/gpu.h"
#include "../gpu/microbench.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_BATCHES 8

struct opts {
    int device;
    const char *json;
    const char *shape;
    enum eng_dtype dtype;
    int pp, tg, ctx, warmup, threads, reps;
    int batches[MAX_BATCHES];
    int n_batches;
    bool micro, model;
    size_t copy_mib;
    int gemm_n, mm_div, iters;
};

struct decode_res {
    int batch;
    bool graphs, fuse;
    double tok_s, ms_step;
    int rc;
};

struct results {
    char device[320];
    double copy_gbps;
    double gemm_tflops;
    struct {
        int R, K, N;
        double us_gemv, us_cublas;
    } mm[16];
    int n_mm;
    char model_name[128];
    size_t weight_bytes;
    int64_t n_params;
    double load_s, build_s;
    double prefill_tok_s;
    int prefill_rc;
    struct decode_res dec[3 * MAX_BATCHES];
    int n_dec;
    bool have_model;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: bench_gpu [options] [micro] [model]   (default: both)\n"
            "  --device N        CUDA device index (default 0)\n"
            "  --json FILE       also write the results as JSON\n"
            "  --shape S         random model shape (default llama7b; see engine.h)\n"
            "  --dtype T         f16|bf16|f32|q8_0|q4_0 weights (default f16)\n"
            "  --pp N            prefill tokens (default 512)\n"
            "  --tg N            decode steps timed per batch size (default 64)\n"
            "  --ctx N           prompt tokens per sequence before decoding (default 128)\n"
            "  --batch LIST      decode batch sizes, e.g. 1,32 (default 1,32)\n"
            "  --warmup N        untimed decode steps first (default 4)\n"
            "  --reps N          prefill repetitions, best kept (default 3)\n"
            "  --threads N       threads generating the random model (default: all CPUs)\n"
            "  --copy-mib N      copy-bandwidth buffer size (default 1024)\n"
            "  --gemm-n N        cuBLAS GEMM size N x N x N (default 8192)\n"
            "  --mm-div N        divide the decode matmul shapes by N (default 1; smoke tests)\n"
            "  --iters N         timed repetitions of each micro measurement (default 50)\n");
}

static int parse_int(const char *s, int lo, int hi, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return -1;
    *out = (int)v;
    return 0;
}

static int parse_args(int argc, char **argv, struct opts *o)
{
    memset(o, 0, sizeof *o);
    o->shape = "llama7b";
    o->dtype = ENG_DTYPE_F16;
    o->pp = 512;
    o->tg = 64;
    o->ctx = 128;
    o->warmup = 4;
    o->reps = 3;
    o->batches[0] = 1;
    o->batches[1] = 32;
    o->n_batches = 2;
    o->copy_mib = 1024;
    o->gemm_n = 8192;
    o->mm_div = 1;
    o->iters = 50;
    long nproc = sysconf(_SC_NPROCESSORS_ONLN);
    o->threads = nproc > 0 ? (int)nproc : 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int n;
        if (strcmp(a, "micro") == 0) {
            o->micro = true;
            continue;
        }
        if (strcmp(a, "model") == 0) {
            o->model = true;
            continue;
        }
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 1;
        }
        if (!v) {
            fprintf(stderr, "bench_gpu: %s needs a value\n", a);
            return -1;
        }
        i++;
        if (strcmp(a, "--device") == 0 && parse_int(v, 0, 63, &o->device) == 0) {
        } else if (strcmp(a, "--json") == 0) {
            o->json = v;
        } else if (strcmp(a, "--shape") == 0) {
            o->shape = v;
        } else if (strcmp(a, "--dtype") == 0 && eng_dtype_parse(v, &o->dtype) == 0) {
        } else if (strcmp(a, "--pp") == 0 && parse_int(v, 1, 65536, &o->pp) == 0) {
        } else if (strcmp(a, "--tg") == 0 && parse_int(v, 1, 1 << 20, &o->tg) == 0) {
        } else if (strcmp(a, "--ctx") == 0 && parse_int(v, 1, 1 << 20, &o->ctx) == 0) {
        } else if (strcmp(a, "--warmup") == 0 && parse_int(v, 0, 1000, &o->warmup) == 0) {
        } else if (strcmp(a, "--reps") == 0 && parse_int(v, 1, 100, &o->reps) == 0) {
        } else if (strcmp(a, "--threads") == 0 && parse_int(v, 1, 256, &o->threads) == 0) {
        } else if (strcmp(a, "--gemm-n") == 0 && parse_int(v, 16, 65536, &o->gemm_n) == 0) {
        } else if (strcmp(a, "--mm-div") == 0 && parse_int(v, 1, 512, &o->mm_div) == 0) {
        } else if (strcmp(a, "--iters") == 0 && parse_int(v, 1, 100000, &o->iters) == 0) {
        } else if (strcmp(a, "--copy-mib") == 0 && parse_int(v, 1, 1 << 16, &n) == 0) {
            o->copy_mib = (size_t)n;
        } else if (strcmp(a, "--batch") == 0) {
            o->n_batches = 0;
            char buf[128];
            snprintf(buf, sizeof buf, "%s", v);
            for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok;
                 tok = strtok_r(NULL, ",", &save)) {
                if (o->n_batches == MAX_BATCHES || parse_int(tok, 1, 4096, &n) < 0) {
                    fprintf(stderr, "bench_gpu: --batch: '%s' is not a list of up to %d sizes "
                            "in 1..4096\n", v, MAX_BATCHES);
                    return -1;
                }
                o->batches[o->n_batches++] = n;
            }
        } else {
            fprintf(stderr, "bench_gpu: bad option or value: %s %s\n", a, v);
            usage(stderr);
            return -1;
        }
    }
    if (!o->micro && !o->model)
        o->micro = o->model = true;
    return 0;
}

/* --- micro ---------------------------------------------------------------------------------- */

static void run_micro(eng_backend_t *be, const struct opts *o, struct results *res)
{
    int rc = gpu_microbench_copy(be, o->copy_mib << 20, o->iters < 20 ? o->iters : 20, &res->copy_gbps);
    if (rc < 0)
        fprintf(stderr, "bench_gpu: copy bandwidth failed: %s\n", err_str(rc));
    double us = 0.0;
    const int M = o->gemm_n;
    rc = gpu_microbench_matmul(be, ENG_DTYPE_F16, GPU_MICROBENCH_CUBLAS, M, M, M,
                               o->iters < 10 ? o->iters : 10, &us);
    if (rc == 0 && us > 0)
        res->gemm_tflops = 2.0 * M * (double)M * M / (us * 1e-6) / 1e12;
    else
        fprintf(stderr, "bench_gpu: cuBLAS GEMM failed: %s\n", err_str(rc));
    static const int shapes[][2] = {{4096, 4096}, {4096, 1024}, {4096, 14336}, {14336, 4096},
                                    {4096, 32000}};
    static const int rows[] = {1, 2, 4};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        for (size_t r = 0; r < sizeof rows / sizeof rows[0] && res->n_mm < 16; r++) {
            if (rows[r] > 1 && s != 0 && s != 2)
                continue;      // more rows only on two shapes: keep the run short
            int K = shapes[s][0] / o->mm_div / 8 * 8, N = shapes[s][1] / o->mm_div;
            double ug = 0, uc = 0;
            int r1 = gpu_microbench_matmul(be, ENG_DTYPE_F16, GPU_MICROBENCH_GEMV, rows[r], K, N,
                                           o->iters, &ug);
            int r2 = gpu_microbench_matmul(be, ENG_DTYPE_F16, GPU_MICROBENCH_CUBLAS, rows[r], K, N,
                                           o->iters, &uc);
            if (r1 < 0 || r2 < 0)
                fprintf(stderr, "bench_gpu: matmul R=%d K=%d N=%d failed: %s / %s\n", rows[r], K,
                        N, err_str(r1), err_str(r2));
            res->mm[res->n_mm].R = rows[r];
            res->mm[res->n_mm].K = K;
            res->mm[res->n_mm].N = N;
            res->mm[res->n_mm].us_gemv = r1 < 0 ? -1 : ug;
            res->mm[res->n_mm].us_cublas = r2 < 0 ? -1 : uc;
            res->n_mm++;
        }
    }
}

/* --- model ---------------------------------------------------------------------------------- */

static uint32_t lcg(uint64_t *s)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(*s >> 33);
}

/* Appends n tokens to each of the seqs (round-robin chunks up to n_batch). */
static int feed(eng_ctx_t *c, const int32_t *seqs, int n_seqs, int n, int n_batch, int V,
                uint64_t *rng)
{
    int32_t *tok = malloc(sizeof(int32_t) * (size_t)n_batch);
    int32_t *sid = malloc(sizeof(int32_t) * (size_t)n_batch);
    int rc = tok && sid ? 0 : ERR_NOMEM;
    for (int s = 0; s < n_seqs && rc == 0; s++) {
        for (int done = 0; done < n && rc == 0;) {
            int m = n - done < n_batch ? n - done : n_batch;
            for (int i = 0; i < m; i++) {
                tok[i] = (int32_t)(lcg(rng) % (uint32_t)V);
                sid[i] = seqs[s];
            }
            struct eng_batch b = {.n = m, .tokens = tok, .seq_id = sid, .want_logits = NULL};
            rc = eng_ctx_decode(c, &b);
            done += m;
        }
    }
    free(tok);
    free(sid);
    return rc;
}

static int run_decode(eng_backend_t *be, eng_ctx_t *c, const struct opts *o, int B, bool graphs,
                      bool fuse, int V, uint64_t *rng, struct decode_res *out)
{
    gpu_backend_set_graphs(be, graphs);
    gpu_backend_set_fuse(be, fuse);
    out->batch = B;
    out->graphs = graphs;
    out->fuse = fuse;
    int32_t *seqs = malloc(sizeof(int32_t) * (size_t)B);
    int32_t *tok = malloc(sizeof(int32_t) * (size_t)B);
    int n_seq = 0, rc = seqs && tok ? 0 : ERR_NOMEM;
    for (int s = 0; s < B && rc == 0; s++) {
        if ((rc = eng_ctx_seq_new(c, &seqs[s])) == 0)
            n_seq++;
    }
    if (rc == 0)
        rc = feed(c, seqs, n_seq, o->ctx, 512, V, rng);
    double t0 = 0;
    for (int step = 0; step < o->warmup + o->tg && rc == 0; step++) {
        if (step == o->warmup)
            t0 = now_s();
        for (int s = 0; s < B; s++)
            tok[s] = (int32_t)(lcg(rng) % (uint32_t)V);
        struct eng_batch b = {.n = B, .tokens = tok, .seq_id = seqs, .want_logits = NULL};
        rc = eng_ctx_decode(c, &b);
    }
    if (rc == 0) {
        double dt = now_s() - t0;
        out->ms_step = dt * 1e3 / o->tg;
        out->tok_s = (double)B * o->tg / dt;
    }
    out->rc = rc;
    for (int s = 0; s < n_seq; s++)
        eng_ctx_seq_free(c, seqs[s]);
    free(seqs);
    free(tok);
    return rc;
}

static int run_model(eng_backend_t *be, const struct opts *o, struct results *res)
{
    struct errbuf eb = {{0}};
    struct eng_random_model rm;
    memset(&rm, 0, sizeof rm);
    snprintf(rm.shape, sizeof rm.shape, "%s", o->shape);
    rm.dtype = o->dtype;
    rm.std = 0.02f;
    rm.seed = 1234;
    rm.n_threads = o->threads;
    double t0 = now_s();
    eng_gguf_t *gg = NULL;
    int rc = eng_random_model_build(&rm, &gg, &eb);
    if (rc < 0) {
        fprintf(stderr, "bench_gpu: random model %s: %s\n", o->shape, eb.msg);
        return rc;
    }
    res->build_s = now_s() - t0;
    t0 = now_s();
    struct eng_model_params mp = {.be = be};
    eng_model_t *m = NULL;
    if ((rc = eng_model_from_gguf(gg, &mp, &m, &eb)) < 0) {
        fprintf(stderr, "bench_gpu: loading the model on %s: %s\n", eng_backend_name(be), eb.msg);
        return rc;
    }
    res->load_s = now_s() - t0;
    struct eng_model_info info;
    eng_model_info(m, &info);
    snprintf(res->model_name, sizeof res->model_name, "%s", info.name);
    res->weight_bytes = info.weight_bytes;
    res->n_params = info.n_params;
    res->have_model = true;
    const int V = eng_model_hparams(m)->n_vocab;

    int maxb = 1;
    for (int i = 0; i < o->n_batches; i++)
        maxb = o->batches[i] > maxb ? o->batches[i] : maxb;
    struct eng_ctx_params cp;
    eng_ctx_params_default(&cp);
    const int need = o->ctx + o->warmup + o->tg + 16;
    cp.n_ctx = (o->pp > need ? o->pp : need) + 16;
    cp.n_seq_max = maxb;
    cp.n_batch = o->pp > 512 ? o->pp : 512;
    if (cp.n_batch < maxb)
        cp.n_batch = maxb;
    cp.kv_format = ENG_KV_F16;
    eng_ctx_t *c = NULL;
    if ((rc = eng_ctx_new(m, &cp, &c, &eb)) < 0) {
        fprintf(stderr, "bench_gpu: context: %s\n", eb.msg);
        eng_model_free(m);
        return rc;
    }
    uint64_t rng = 42;
    // prefill: one sequence of pp tokens in one step; best of reps after one warm-up
    res->prefill_rc = 0;
    double best = 0;
    for (int r = 0; r <= o->reps && res->prefill_rc == 0; r++) {
        int32_t s;
        if ((rc = eng_ctx_seq_new(c, &s)) < 0) {
            res->prefill_rc = rc;
            break;
        }
        double t = now_s();
        rc = feed(c, &s, 1, o->pp, cp.n_batch, V, &rng);
        t = now_s() - t;
        eng_ctx_seq_free(c, s);
        if (rc < 0)
            res->prefill_rc = rc;
        else if (r > 0 && (best == 0 || t < best))
            best = t;
    }
    if (best > 0)
        res->prefill_tok_s = o->pp / best;
    // decode: each batch size with graphs and fusion on; batch 1 also without fusion, and
    // without graphs (eager launches, which also means no fusion)
    static const bool cfg[3][2] = {{true, true}, {true, false}, {false, false}};
    for (int i = 0; i < o->n_batches && res->n_dec + 3 <= 3 * MAX_BATCHES; i++) {
        int B = o->batches[i];
        for (int k = 0; k < (B == 1 ? 3 : 1); k++) {
            struct decode_res *d = &res->dec[res->n_dec++];
            if (run_decode(be, c, o, B, cfg[k][0], cfg[k][1], V, &rng, d) < 0)
                fprintf(stderr, "bench_gpu: decode batch %d graphs %s fuse %s: %s\n", B,
                        cfg[k][0] ? "on" : "off", cfg[k][1] ? "on" : "off", err_str(d->rc));
        }
    }
    gpu_backend_set_graphs(be, true);
    gpu_backend_set_fuse(be, true);
    struct gpu_stats gs;
    gpu_backend_stats(be, &gs);
    fprintf(stderr, "bench_gpu: graph launches=%" PRIu64 " captures=%" PRIu64 " eager=%" PRIu64
            " fused_records=%" PRIu64 " scratch=%zuMiB weights=%zuMiB kv=%zuMiB act=%zuMiB\n",
            gs.graph_launches, gs.graph_captures, gs.eager_steps, gs.fused_records,
            gs.scratch_bytes >> 20, gs.weight_bytes >> 20, gs.kv_bytes >> 20, gs.compute_bytes >> 20);
    eng_ctx_free(c);
    eng_model_free(m);
    return 0;
}

/* --- report --------------------------------------------------------------------------------- */

static const struct decode_res *find_dec(const struct results *r, int B, bool graphs, bool fuse)
{
    for (int i = 0; i < r->n_dec; i++)
        if (r->dec[i].batch == B && r->dec[i].graphs == graphs && r->dec[i].fuse == fuse &&
            r->dec[i].rc == 0)
            return &r->dec[i];
    return NULL;
}

static double bw_fraction(const struct results *r, const struct decode_res *d)
{
    if (!d || r->copy_gbps <= 0 || d->ms_step <= 0)
        return 0;
    return (double)r->weight_bytes / (d->ms_step * 1e-3) / (r->copy_gbps * 1e9);
}

static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p < 0x20)
            fprintf(f, "\\u%04x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

static void write_json(FILE *f, const struct opts *o, const struct results *r)
{
    fprintf(f, "{\n  \"device\": ");
    json_str(f, r->device);
    fprintf(f, ",\n  \"copy_gbps\": %.1f,\n  \"gemm_n\": %d,\n  \"gemm_f16_tflops\": %.1f,\n",
            r->copy_gbps, o->gemm_n, r->gemm_tflops);
    fprintf(f, "  \"matmul\": [");
    for (int i = 0; i < r->n_mm; i++)
        fprintf(f, "%s\n    {\"R\": %d, \"K\": %d, \"N\": %d, \"us_gemv\": %.2f, \"us_cublas\": %.2f, "
                "\"gbps_gemv\": %.1f, \"gbps_cublas\": %.1f}", i ? "," : "", r->mm[i].R, r->mm[i].K,
                r->mm[i].N, r->mm[i].us_gemv, r->mm[i].us_cublas,
                r->mm[i].us_gemv > 0 ? 2.0 * r->mm[i].K * r->mm[i].N / (r->mm[i].us_gemv * 1e3) : 0,
                r->mm[i].us_cublas > 0 ? 2.0 * r->mm[i].K * r->mm[i].N / (r->mm[i].us_cublas * 1e3) : 0);
    fprintf(f, "\n  ],\n");
    if (r->have_model) {
        const struct decode_res *b1 = find_dec(r, 1, true, true), *b1n = find_dec(r, 1, false, false);
        const struct decode_res *b1f = find_dec(r, 1, true, false);
        const struct decode_res *bb = find_dec(r, o->batches[o->n_batches - 1], true, true);
        fprintf(f, "  \"model\": {\"name\": ");
        json_str(f, r->model_name);
        fprintf(f, ", \"dtype\": \"%s\", \"n_params\": %" PRId64 ", \"weight_bytes\": %zu, "
                "\"build_s\": %.1f, \"load_s\": %.1f},\n", eng_dtype_name(o->dtype), r->n_params,
                r->weight_bytes, r->build_s, r->load_s);
        fprintf(f, "  \"prefill\": {\"tokens\": %d, \"tok_s\": %.1f, \"rc\": %d},\n", o->pp,
                r->prefill_tok_s, r->prefill_rc);
        fprintf(f, "  \"decode\": [");
        for (int i = 0; i < r->n_dec; i++)
            fprintf(f, "%s\n    {\"batch\": %d, \"graphs\": %s, \"fuse\": %s, \"tok_s\": %.2f, "
                    "\"ms_per_step\": %.3f, \"rc\": %d}", i ? "," : "", r->dec[i].batch,
                    r->dec[i].graphs ? "true" : "false", r->dec[i].fuse ? "true" : "false",
                    r->dec[i].tok_s, r->dec[i].ms_step, r->dec[i].rc);
        fprintf(f, "\n  ],\n  \"ctx_tokens\": %d,\n", o->ctx);
        fprintf(f, "  \"b1_bandwidth_fraction\": %.3f,\n  \"b1_nofuse_bandwidth_fraction\": %.3f,\n"
                "  \"b1_nographs_bandwidth_fraction\": %.3f,\n",
                bw_fraction(r, b1), bw_fraction(r, b1f), bw_fraction(r, b1n));
        fprintf(f, "  \"batch_max\": %d,\n  \"batch_speedup\": %.2f\n", o->batches[o->n_batches - 1],
                b1 && bb && b1->tok_s > 0 ? bb->tok_s / b1->tok_s : 0.0);
    } else {
        fprintf(f, "  \"model\": null\n");
    }
    fprintf(f, "}\n");
}

static void print_table(const struct opts *o, const struct results *r)
{
    printf("\n== bench_gpu: %s\n", r->device);
    if (o->micro) {
        printf("copy bandwidth (D2D, read+write) : %8.1f GB/s\n", r->copy_gbps);
        printf("cuBLAS F16 GEMM %5d^3           : %8.1f TFLOP/s\n", o->gemm_n, r->gemm_tflops);
        printf("%-24s %10s %10s %10s %10s\n", "matmul F16 R x K -> N", "gemv us", "cublas us",
               "gemv GB/s", "cublas GB/s");
        for (int i = 0; i < r->n_mm; i++)
            printf("R=%d %6d -> %-6d        %10.1f %10.1f %10.0f %10.0f\n", r->mm[i].R, r->mm[i].K,
                   r->mm[i].N, r->mm[i].us_gemv, r->mm[i].us_cublas,
                   r->mm[i].us_gemv > 0 ? 2.0 * r->mm[i].K * r->mm[i].N / (r->mm[i].us_gemv * 1e3) : 0,
                   r->mm[i].us_cublas > 0 ? 2.0 * r->mm[i].K * r->mm[i].N / (r->mm[i].us_cublas * 1e3)
                                          : 0);
    }
    if (r->have_model) {
        printf("model %s (%s): %.2f B params, %.2f GB of weights read per token (build %.1fs, "
               "load %.1fs)\n", r->model_name, eng_dtype_name(o->dtype), r->n_params / 1e9,
               r->weight_bytes / 1e9, r->build_s, r->load_s);
        printf("prefill pp%-5d                  : %8.1f tok/s%s\n", o->pp, r->prefill_tok_s,
               r->prefill_rc ? "  (FAILED)" : "");
        for (int i = 0; i < r->n_dec; i++)
            printf("decode batch %-3d graphs %-3s fuse %-3s: %8.1f tok/s  %7.3f ms/step%s\n",
                   r->dec[i].batch, r->dec[i].graphs ? "on" : "off", r->dec[i].fuse ? "on" : "off",
                   r->dec[i].tok_s, r->dec[i].ms_step, r->dec[i].rc ? "  (FAILED)" : "");
        const struct decode_res *b1 = find_dec(r, 1, true, true), *b1n = find_dec(r, 1, false, false);
        const struct decode_res *b1f = find_dec(r, 1, true, false);
        const struct decode_res *bb = find_dec(r, o->batches[o->n_batches - 1], true, true);
        printf("batch-1 decode / copy bandwidth  : %8.1f %% (graphs+fusion), %.1f %% (graphs), "
               "%.1f %% (eager)\n", 100 * bw_fraction(r, b1), 100 * bw_fraction(r, b1f),
               100 * bw_fraction(r, b1n));
        if (b1 && bb && bb != b1)
            printf("batch-%d / batch-1 throughput    : %8.2f x\n", bb->batch, bb->tok_s / b1->tok_s);
    }
}

int main(int argc, char **argv)
{
    struct opts o;
    int prc = parse_args(argc, argv, &o);
    if (prc != 0)
        return prc < 0 ? 2 : 0;
    if (gpu_device_count() <= o.device) {
        fprintf(stderr, "bench_gpu: no CUDA device %d (%d visible)\n", o.device, gpu_device_count());
        return 1;
    }
    struct errbuf eb = {{0}};
    eng_backend_t *be = NULL;
    struct log_sink sink = {.fn = NULL, .ctx = NULL, .min = LOG_WARN};
    int rc = gpu_backend_cuda_new(o.device, &sink, &be, &eb);
    if (rc < 0) {
        fprintf(stderr, "bench_gpu: %s\n", eb.msg);
        return 1;
    }
    struct results *res = calloc(1, sizeof *res);
    if (!res) {
        eng_backend_free(be);
        return 1;
    }
    snprintf(res->device, sizeof res->device, "%s", eng_backend_describe(be));
    if (o.micro)
        run_micro(be, &o, res);
    if (o.model) {
        if (!o.micro) {      // the bandwidth fraction needs the copy ceiling
            int r2 = gpu_microbench_copy(be, o.copy_mib << 20, 20, &res->copy_gbps);
            if (r2 < 0)
                fprintf(stderr, "bench_gpu: copy bandwidth failed: %s\n", err_str(r2));
        }
        rc = run_model(be, &o, res);
    }
    print_table(&o, res);
    if (o.json) {
        FILE *f = fopen(o.json, "w");
        if (!f) {
            fprintf(stderr, "bench_gpu: cannot write %s: %s\n", o.json, strerror(errno));
            rc = ERR_IO;
        } else {
            write_json(f, &o, res);
            if (fclose(f) != 0)
                rc = ERR_IO;
        }
    }
    free(res);
    eng_backend_free(be);
    return rc < 0 ? 1 : 0;
}
