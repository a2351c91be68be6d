/* bench/bench_matmul.c: speed of the CPU matmul kernels (engine/cpu/matmul*.c) on the
 * matmuls of one forward pass of the stories15M / stories110M shapes, per weight dtype.
 * A "pass" runs every layer's q, k, v, o (dim x dim), w1, w3 (ffn x dim) and w2
 * (dim x ffn) with R rows of activations, plus the output matrix (vocab x dim) for one
 * row (prefill computes logits for the last token only). All layers have their own
 * weights, so decode streams the whole model from memory as a real pass does.
 * Prints the median over --reps passes: time, tokens/s (matmuls only), GFLOP/s, GB/s of
 * weights read, and the fastest pass (a shared machine's noise shows as median >> min).
 * Random N(0, 0.02)-like weights; timing only, no checking (the tests do that).
 * "cpu ms" is the median CPU time of the calling thread (thread 0): with one thread it
 * leaves out the time the thread waited for a core, so it moves less when the machine
 * is shared; with more threads it includes thread 0's waits for the others.
 *   bench_matmul [--model 15M|110M|all] [--dtype f32,f16,bf16,q8_0,q4_0]
 *                [--threads 1,2] [--rows 1,512] [--reps 5] [--level scalar|avx2|avx512]
 *                [--detail]      (also each matrix shape alone, 1 row and R rows)
 *                [--stream MiB]  (only a plain read loop over MiB of memory per thread
 *                                 count: what the cores stream, for the GB/s above) */
#include "../engine/cpu/cpu.h"
#include "bench_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct model_shape {
    const char *name;
    int dim, layers, ffn, vocab;
};

static const struct model_shape shapes[] = {
    {"stories15M", 288, 6, 768, 32000},
    {"stories110M", 768, 12, 2048, 32000},
};

#define MAX_LIST 8

struct opts {
    bool model[2];
    enum eng_dtype dt[MAX_LIST];
    int n_dt;
    int threads[MAX_LIST], n_threads;
    int rows[MAX_LIST], n_rows;
    int reps;
    int level;        /* -1: best available */
    bool detail;
    int stream_mib;   /* > 0: the streaming-read test only */
};

static double cpu_now(void)   /* CPU time of the calling thread */
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static float rnd_normal(uint64_t *rng)   /* approximately N(0, 1): sum of 4 uniforms */
{
    float s = 0.0f;
    for (int i = 0; i < 4; i++) {
        *rng ^= *rng << 13;
        *rng ^= *rng >> 7;
        *rng ^= *rng << 17;
        s += (float)(*rng >> 40) / 16777216.0f - 0.5f;
    }
    return s * 1.7320508f;
}

/* a weight matrix (n, k) of dtype dt filled with N(0, 0.02) values */
static int make_w(eng_tensor_t *t, enum eng_dtype dt, int n, int k, float *tmp, uint64_t *rng)
{
    const int64_t ne[2] = {k, n};
    if (eng_tensor_init(t, dt, 2, ne) < 0)
        return -1;
    t->data = aligned_alloc(64, (eng_tensor_nbytes(t) + 63) & ~(size_t)63);
    if (!t->data)
        return -1;
    for (int r = 0; r < n; r++) {
        for (int i = 0; i < k; i++)
            tmp[i] = 0.02f * rnd_normal(rng);
        eng_row_from_f32(dt, tmp, (char *)t->data + (size_t)r * t->nb[1], k);
    }
    return 0;
}

struct model {
    eng_tensor_t *w;        /* layers * 7 + 1 */
    int n_w;
    size_t bytes;
};

static void model_free(struct model *m)
{
    for (int i = 0; i < m->n_w; i++)
        free(m->w[i].data);
    free(m->w);
    memset(m, 0, sizeof *m);
}

static int model_make(struct model *m, const struct model_shape *s, enum eng_dtype dt)
{
    uint64_t rng = 88172645463325252ULL;
    memset(m, 0, sizeof *m);
    m->w = calloc((size_t)s->layers * 7 + 1, sizeof *m->w);
    float *tmp = malloc((size_t)(s->ffn > s->dim ? s->ffn : s->dim) * sizeof(float));
    if (!m->w || !tmp) {
        free(tmp);
        return -1;
    }
    for (int l = 0; l < s->layers; l++) {
        const int nk[7][2] = {{s->dim, s->dim}, {s->dim, s->dim}, {s->dim, s->dim},
                              {s->dim, s->dim}, {s->ffn, s->dim}, {s->ffn, s->dim},
                              {s->dim, s->ffn}};
        for (int i = 0; i < 7; i++) {
            if (make_w(&m->w[m->n_w], dt, nk[i][0], nk[i][1], tmp, &rng) < 0)
                goto fail;
            m->bytes += eng_tensor_nbytes(&m->w[m->n_w++]);
        }
    }
    if (make_w(&m->w[m->n_w], dt, s->vocab, s->dim, tmp, &rng) < 0)
        goto fail;
    m->bytes += eng_tensor_nbytes(&m->w[m->n_w++]);
    free(tmp);
    return 0;
fail:
    free(tmp);
    model_free(m);
    return -1;
}

static int parse_args(int argc, char **argv, struct opts *o)
{
    memset(o, 0, sizeof *o);
    o->model[0] = o->model[1] = true;
    const enum eng_dtype all[] = {ENG_DTYPE_F32, ENG_DTYPE_F16, ENG_DTYPE_BF16, ENG_DTYPE_Q8_0,
                                  ENG_DTYPE_Q4_0};
    memcpy(o->dt, all, sizeof all);
    o->n_dt = 5;
    o->threads[0] = 1, o->threads[1] = 2, o->n_threads = 2;
    o->rows[0] = 1, o->rows[1] = 512, o->n_rows = 2;
    o->reps = 5;
    o->level = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--detail") == 0) {
            o->detail = true;
            continue;
        }
        if (!v)
            return -1;
        i++;
        if (strcmp(a, "--model") == 0) {
            o->model[0] = strcmp(v, "15M") == 0 || strcmp(v, "all") == 0;
            o->model[1] = strcmp(v, "110M") == 0 || strcmp(v, "all") == 0;
            if (!o->model[0] && !o->model[1])
                return -1;
        } else if (strcmp(a, "--dtype") == 0) {
            char buf[128];
            snprintf(buf, sizeof buf, "%s", v);
            o->n_dt = 0;
            for (char *t = strtok(buf, ","); t && o->n_dt < MAX_LIST; t = strtok(NULL, ","))
                if (eng_dtype_parse(t, &o->dt[o->n_dt++]) < 0)
                    return -1;
        } else if (strcmp(a, "--threads") == 0) {
            if ((o->n_threads = bench_parse_list(v, o->threads, MAX_LIST, 1)) <= 0)
                return -1;
        } else if (strcmp(a, "--rows") == 0) {
            if ((o->n_rows = bench_parse_list(v, o->rows, MAX_LIST, 1)) <= 0)
                return -1;
        } else if (strcmp(a, "--stream") == 0) {
            o->stream_mib = atoi(v);
            if (o->stream_mib < 1 || o->stream_mib > 65536)
                return -1;
        } else if (strcmp(a, "--reps") == 0) {
            o->reps = atoi(v);
            if (o->reps < 1 || o->reps > 1000)
                return -1;
        } else if (strcmp(a, "--level") == 0) {
            if ((o->level = bench_parse_level(v)) < 0)
                return -1;
        } else {
            return -1;
        }
    }
    return 0;
}

/* one pass of the model's matmuls with R rows; returns seconds */
static double run_pass(eng_cpu_mm_t *mm, eng_tp_t *tp, const struct model *m,
                       const struct model_shape *s, int R, const float *x, float *out, int *err,
                       double *cpu)
{
    const double t0 = bench_now(), c0 = cpu_now();
    for (int i = 0; i < m->n_w - 1; i++) {
        const int rc = eng_cpu_mm_run(mm, tp, out, x, R, &m->w[i]);
        if (rc < 0)
            *err = rc;
    }
    const int rc = eng_cpu_mm_run(mm, tp, out, x, 1, &m->w[m->n_w - 1]);   // logits: last row
    if (rc < 0)
        *err = rc;
    (void)s;
    *cpu = cpu_now() - c0;
    return bench_now() - t0;
}

/* --- the plain streaming read: each thread sums its share of the buffer --------------- */
struct stream_job {
    const uint64_t *p;
    int64_t n;                   /* words */
    uint64_t sum[64 * 8];        /* per thread, a cache line apart */
};

static void stream_worker(void *arg, int ith, int nth)
{
    struct stream_job *j = arg;
    int64_t lo, hi;
    eng_tp_range(j->n, 64, ith, nth, &lo, &hi);
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0;
    for (int64_t i = lo; i < hi; i += 8) {   // one cache line per iteration
        s0 += j->p[i];
        s1 += j->p[i + 1];
        s2 += j->p[i + 2];
        s3 += j->p[i + 3];
        s4 += j->p[i + 4];
        s5 += j->p[i + 5];
        s6 += j->p[i + 6];
        s7 += j->p[i + 7];
    }
    j->sum[(ith % 64) * 8] = s0 + s1 + s2 + s3 + s4 + s5 + s6 + s7;
}

static int run_stream(const struct opts *o, double *times)
{
    const size_t bytes = (size_t)o->stream_mib << 20;
    uint64_t *buf = aligned_alloc(4096, bytes);
    static struct stream_job job;
    if (!buf)
        return 1;
    memset(buf, 1, bytes);
    job.p = buf;
    job.n = (int64_t)(bytes / 8);
    printf("# plain read loop over %d MiB (8 uint64 sums per 64-byte line, compiled for the\n"
           "# baseline ISA); median and best of %d passes after one warm-up\n",
           o->stream_mib, o->reps);
    printf("%3s %10s %10s %10s\n", "thr", "ms/pass", "GB/s", "best GB/s");
    for (int ti = 0; ti < o->n_threads; ti++) {
        eng_tp_t *tp;
        if (eng_tp_new(o->threads[ti], &tp) < 0)
            return 1;
        eng_tp_run(tp, stream_worker, &job);
        for (int rep = 0; rep < o->reps; rep++) {
            const double t0 = bench_now();
            eng_tp_run(tp, stream_worker, &job);
            times[rep] = bench_now() - t0;
        }
        const double t = bench_median(times, o->reps);
        printf("%3d %10.3f %10.1f %10.1f\n", o->threads[ti], t * 1e3, (double)bytes / t * 1e-9,
               (double)bytes / times[0] * 1e-9);
        eng_tp_free(tp);
    }
    free(buf);
    return 0;   // (job.sum is stored through a pointer: the loop stays)
}

static double pass_flops(const struct model_shape *s, int R)
{
    const double layer = 4.0 * s->dim * s->dim + 3.0 * s->ffn * s->dim;
    return 2.0 * (R * layer * s->layers + (double)s->vocab * s->dim);
}

int main(int argc, char **argv)
{
    struct opts o;
    if (parse_args(argc, argv, &o) < 0) {
        fprintf(stderr, "usage: bench_matmul [--model 15M|110M|all]"
                        " [--dtype f32,f16,bf16,q8_0,q4_0] [--threads 1,2] [--rows 1,512]"
                        " [--reps 5] [--level scalar|avx2|avx512] [--detail] [--stream MiB]\n");
        return 2;
    }
    struct eng_cpu_features f;
    eng_cpu_detect(&f);
    const int best = (int)eng_cpu_level_pick(&f);
    const int level = o.level < 0 || o.level > best ? best : o.level;
    char feats[256];
    eng_cpu_features_str(&f, feats, sizeof feats);
    printf("# matmul kernels: level %s; cpu features: %s\n",
           eng_cpu_level_name((enum eng_cpu_level)level), feats);
    printf("# median of %d passes; pass = all layer matmuls with R rows"
           " + output matrix with 1 row\n", o.reps);
    double *times = malloc((size_t)o.reps * sizeof(double));
    double *ctimes = malloc((size_t)o.reps * sizeof(double));
    if (!times || !ctimes)
        return 1;
    if (o.stream_mib > 0) {
        const int rc = run_stream(&o, times);
        free(times);
        free(ctimes);
        return rc;
    }
    printf("%-12s %-5s %3s %4s %10s %10s %9s %8s %10s %10s\n", "model", "dtype", "thr", "R",
           "ms/pass", "tok/s", "GFLOP/s", "GB/s", "min ms", "cpu ms");
    int maxr = 1;
    for (int i = 0; i < o.n_rows; i++)
        maxr = o.rows[i] > maxr ? o.rows[i] : maxr;
    const size_t xn = (size_t)maxr * 2048, on = (size_t)maxr * 32000;
    float *x = malloc(xn * sizeof(float)), *out = malloc(on * sizeof(float));
    if (!x || !out)
        return 1;
    uint64_t rng = 2463534242ULL;
    for (size_t i = 0; i < xn; i++)
        x[i] = rnd_normal(&rng);
    int err = 0;
    for (int si = 0; si < 2; si++) {
        if (!o.model[si])
            continue;
        const struct model_shape *s = &shapes[si];
        for (int di = 0; di < o.n_dt; di++) {
            struct model m;
            if (model_make(&m, s, o.dt[di]) < 0) {
                fprintf(stderr, "bench_matmul: out of memory building %s %s\n", s->name,
                        eng_dtype_name(o.dt[di]));
                return 1;
            }
            for (int ti = 0; ti < o.n_threads; ti++) {
                eng_tp_t *tp;
                eng_cpu_mm_t *mm;
                if (eng_tp_new(o.threads[ti], &tp) < 0 ||
                    eng_cpu_mm_new((enum eng_cpu_level)level, o.threads[ti], &mm) < 0)
                    return 1;
                for (int ri = 0; ri < o.n_rows; ri++) {
                    const int R = o.rows[ri];
                    double c;
                    run_pass(mm, tp, &m, s, R, x, out, &err, &c);   // warm-up: scratch, page-in
                    for (int rep = 0; rep < o.reps; rep++)
                        times[rep] = run_pass(mm, tp, &m, s, R, x, out, &err, &ctimes[rep]);
                    const double t = bench_median(times, o.reps);   // (sorts times)
                    printf("%-12s %-5s %3d %4d %10.3f %10.1f %9.1f %8.1f %10.3f %10.3f\n",
                           s->name, eng_dtype_name(o.dt[di]), o.threads[ti], R, t * 1e3, R / t,
                           pass_flops(s, R) / t * 1e-9, (double)m.bytes / t * 1e-9,
                           times[0] * 1e3, bench_median(ctimes, o.reps) * 1e3);
                    fflush(stdout);
                }
                if (o.detail) {
                    // dim x dim, ffn x dim, dim x ffn, vocab x dim
                    const int idx[4] = {0, 4, 6, m.n_w - 1};
                    for (int ii = 0; ii < 4; ii++) {
                        const eng_tensor_t *w = &m.w[idx[ii]];
                        for (int ri = 0; ri < o.n_rows; ri++) {
                            const int R = o.rows[ri];
                            eng_cpu_mm_run(mm, tp, out, x, R, w);
                            for (int rep = 0; rep < o.reps; rep++) {
                                const double t0 = bench_now();
                                if (eng_cpu_mm_run(mm, tp, out, x, R, w) < 0)
                                    err = 1;
                                times[rep] = bench_now() - t0;
                            }
                            const double t = bench_median(times, o.reps);
                            printf("    %-5s %3d thr  N=%-5lld K=%-5lld R=%-4d %9.3f ms"
                                   " %8.1f GFLOP/s %7.1f GB/s (cached)\n",
                                   eng_dtype_name(o.dt[di]), o.threads[ti], (long long)w->ne[1],
                                   (long long)w->ne[0], R, t * 1e3,
                                   2.0 * R * (double)w->ne[0] * (double)w->ne[1] / t * 1e-9,
                                   (double)eng_tensor_nbytes(w) / t * 1e-9);
                        }
                    }
                }
                eng_cpu_mm_free(mm);
                eng_tp_free(tp);
            }
            model_free(&m);
        }
    }
    free(x);
    free(out);
    free(times);
    free(ctimes);
    if (err) {
        fprintf(stderr, "bench_matmul: a matmul failed (%d)\n", err);
        return 1;
    }
    return 0;
}
