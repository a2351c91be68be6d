/* bench/bench_attention.c: speed of the CPU attention kernel (engine/cpu/attention*.c) on
 * the attention of one step of the stories15M / stories110M shapes, against a paged F16
 * (or F32) KV cache: decode (one token of one sequence at depth D) and prefill (P tokens
 * of one sequence from position 0). Every layer has its own cache, so a decode step reads
 * each layer's keys and values from memory as a real step does.
 * Prints the median over --reps steps: milliseconds per step (all layers), microseconds
 * per layer, and GB/s of cache read (decode: (D + 1) keys and values of every head).
 * Random values; timing only, no checking (tests/test_attention.c does that).
 *   bench_attention [--model 15M|110M|all] [--depth 0,1024,4096] [--prefill 512]
 *                   [--threads 1,2] [--reps 9] [--kv f16|f32] [--level scalar|avx2|avx512] */
#include "../engine/cpu/attention_impl.h"
#include "bench_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LIST 8
#define BLOCK 16

struct shape {
    const char *name;
    int heads, head_dim, layers;
};

static const struct shape shapes[] = {
    {"stories15M", 6, 48, 6},
    {"stories110M", 12, 64, 12},
};

struct opts {
    bool model[2];
    int depth[MAX_LIST], n_depth;
    int prefill;
    int threads[MAX_LIST], n_threads;
    int reps;
    enum eng_dtype kv;
    int level;
};

static int parse_args(int argc, char **argv, struct opts *o)
{
    memset(o, 0, sizeof *o);
    o->model[0] = o->model[1] = true;
    o->depth[0] = 0, o->depth[1] = 1024, o->depth[2] = 4096, o->n_depth = 3;
    o->prefill = 512;
    o->threads[0] = 1, o->threads[1] = 2, o->n_threads = 2;
    o->reps = 9;
    o->kv = ENG_DTYPE_F16;
    o->level = -1;
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *a = argv[i], *v = argv[i + 1];
        if (strcmp(a, "--model") == 0) {
            o->model[0] = strcmp(v, "15M") == 0 || strcmp(v, "all") == 0;
            o->model[1] = strcmp(v, "110M") == 0 || strcmp(v, "all") == 0;
            if (!o->model[0] && !o->model[1])
                return -1;
        } else if (strcmp(a, "--depth") == 0) {
            if ((o->n_depth = bench_parse_list(v, o->depth, MAX_LIST, 0)) < 0)
                return -1;
        } else if (strcmp(a, "--prefill") == 0) {
            o->prefill = atoi(v);
            if (o->prefill < 0 || o->prefill > 65536)
                return -1;
        } else if (strcmp(a, "--threads") == 0) {
            if ((o->n_threads = bench_parse_list(v, o->threads, MAX_LIST, 1)) <= 0)
                return -1;
        } else if (strcmp(a, "--reps") == 0) {
            o->reps = atoi(v);
            if (o->reps < 1 || o->reps > 1000)
                return -1;
        } else if (strcmp(a, "--kv") == 0) {
            if (eng_dtype_parse(v, &o->kv) < 0 ||
                (o->kv != ENG_DTYPE_F16 && o->kv != ENG_DTYPE_F32))
                return -1;
        } else if (strcmp(a, "--level") == 0) {
            if ((o->level = bench_parse_level(v)) < 0)
                return -1;
        } else {
            return -1;
        }
    }
    return argc % 2 == 1 ? 0 : -1;
}

/* One sequence of up to n_pos positions in a cache of `layers` layers. */
struct world {
    eng_kv_storage_t kv;
    eng_tensor_t *k, *v;
    int32_t *bt, *tokens, *pos, *seq, *slot, seq_len;
    eng_tensor_t q, out;
};

static float rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return (float)(*s >> 40) / 8388608.0f - 1.0f;
}

static int world_new(struct world *w, const struct shape *sh, enum eng_dtype kv, int n_pos,
                     int max_t)
{
    memset(w, 0, sizeof *w);
    const int nb = (n_pos + BLOCK - 1) / BLOCK;
    const int64_t row = (int64_t)sh->heads * sh->head_dim;
    w->kv.lay = (struct eng_kv_layout){.format = kv == ENG_DTYPE_F16 ? ENG_KV_F16 : ENG_KV_F32,
                                       .n_layers = sh->layers, .n_kv_heads = sh->heads,
                                       .head_dim = sh->head_dim, .block_size = BLOCK,
                                       .n_blocks = nb};
    w->k = calloc((size_t)sh->layers, sizeof *w->k);
    w->v = calloc((size_t)sh->layers, sizeof *w->v);
    w->bt = malloc((size_t)nb * sizeof(int32_t));
    w->tokens = calloc((size_t)max_t, sizeof(int32_t));
    w->pos = calloc((size_t)max_t, sizeof(int32_t));
    w->seq = calloc((size_t)max_t, sizeof(int32_t));
    w->slot = calloc((size_t)max_t, sizeof(int32_t));
    if (!w->k || !w->v || !w->bt || !w->tokens || !w->pos || !w->seq || !w->slot)
        return -1;
    for (int b = 0; b < nb; b++)   // blocks in a scrambled order, as after some reuse
        w->bt[b] = (int32_t)(((int64_t)b * 7919) % nb);
    uint64_t s = 88172645463325252ULL;
    float *tmp = malloc((size_t)row * sizeof(float));
    if (!tmp)
        return -1;
    for (int l = 0; l < sh->layers; l++) {
        const int64_t ne[2] = {row, (int64_t)nb * BLOCK};
        eng_tensor_t *ts[2] = {&w->k[l], &w->v[l]};
        for (int i = 0; i < 2; i++) {
            if (eng_tensor_init(ts[i], kv, 2, ne) < 0)
                return -1;
            ts[i]->data = aligned_alloc(64, (eng_tensor_nbytes(ts[i]) + 63) & ~(size_t)63);
            if (!ts[i]->data)
                return -1;
            for (int64_t r = 0; r < ne[1]; r++) {
                for (int64_t e = 0; e < row; e++)
                    tmp[e] = rnd(&s);
                eng_row_from_f32(kv, tmp, (char *)ts[i]->data + (size_t)r * ts[i]->nb[1], row);
            }
        }
    }
    free(tmp);
    w->kv.k = w->k;
    w->kv.v = w->v;
    const int64_t qne[2] = {row, max_t};
    if (eng_tensor_init(&w->q, ENG_DTYPE_F32, 2, qne) < 0)
        return -1;
    w->out = w->q;
    w->q.data = malloc(eng_tensor_nbytes(&w->q));
    w->out.data = malloc(eng_tensor_nbytes(&w->out));
    if (!w->q.data || !w->out.data)
        return -1;
    for (int64_t i = 0; i < eng_tensor_nelements(&w->q); i++)
        ((float *)w->q.data)[i] = rnd(&s);
    return 0;
}

static void world_free(struct world *w, int layers)
{
    for (int l = 0; w->k && l < layers; l++) {
        free(w->k[l].data);
        free(w->v[l].data);
    }
    free(w->k);
    free(w->v);
    free(w->bt);
    free(w->tokens);
    free(w->pos);
    free(w->seq);
    free(w->slot);
    free(w->q.data);
    free(w->out.data);
}

/* T tokens at positions p0 .. p0 + T - 1 of the one sequence. */
static void set_step(struct eng_cpu *cpu, struct world *w, int p0, int T)
{
    for (int t = 0; t < T; t++) {
        w->pos[t] = p0 + t;
        w->slot[t] = w->bt[(p0 + t) / BLOCK] * BLOCK + (p0 + t) % BLOCK;
    }
    w->seq_len = p0 + T;
    cpu->step = (struct eng_step){.n_tokens = T, .tokens = w->tokens, .pos = w->pos,
                                  .seq = w->seq, .kv_slot = w->slot, .n_seqs = 1,
                                  .seq_len = &w->seq_len, .max_blocks = w->kv.lay.n_blocks,
                                  .block_table = w->bt, .n_out = 0};
    w->q.ne[1] = w->out.ne[1] = T;
}

int main(int argc, char **argv)
{
    struct opts o;
    if (parse_args(argc, argv, &o) < 0) {
        fprintf(stderr, "usage: bench_attention [--model 15M|110M|all] [--depth 0,1024,4096]"
                        " [--prefill 512] [--threads 1,2] [--reps 9] [--kv f16|f32]"
                        " [--level scalar|avx2|avx512]\n");
        return 2;
    }
    struct eng_cpu_features f;
    eng_cpu_detect(&f);
    const int best = (int)eng_cpu_level_pick(&f);
    const int level = o.level < 0 || o.level > best ? best : o.level;
    printf("# attention kernel: level %s, KV cache %s, block %d; median of %d steps\n",
           eng_cpu_level_name((enum eng_cpu_level)level), eng_dtype_name(o.kv), BLOCK, o.reps);
    printf("%-12s %-14s %3s %10s %10s %10s\n", "model", "test", "thr", "ms/step", "us/layer",
           "GB/s");
    double *times = malloc((size_t)o.reps * sizeof(double));
    if (!times)
        return 1;
    int err = 0;
    for (int si = 0; si < 2; si++) {
        if (!o.model[si])
            continue;
        const struct shape *sh = &shapes[si];
        int max_pos = o.prefill;
        for (int i = 0; i < o.n_depth; i++)
            max_pos = o.depth[i] + 1 > max_pos ? o.depth[i] + 1 : max_pos;
        const int max_t = o.prefill > 1 ? o.prefill : 1;
        struct world w;
        if (world_new(&w, sh, o.kv, max_pos, max_t) < 0) {
            fprintf(stderr, "bench_attention: out of memory\n");
            return 1;
        }
        const float scale = 1.0f / sqrtf((float)sh->head_dim);
        const size_t es = o.kv == ENG_DTYPE_F16 ? 2 : 4;
        for (int ti = 0; ti < o.n_threads; ti++) {
            struct eng_cpu cpu;
            memset(&cpu, 0, sizeof cpu);
            cpu.level = (enum eng_cpu_level)level;
            cpu.in_step = true;
            if (eng_tp_new(o.threads[ti], &cpu.tp) < 0)
                return 1;
            for (int test = 0; test <= o.n_depth; test++) {
                const bool pf = test == o.n_depth;
                if (pf && o.prefill == 0)
                    break;
                const int p0 = pf ? 0 : o.depth[test], T = pf ? o.prefill : 1;
                set_step(&cpu, &w, p0, T);
                // warm-up: 3 steps and at least 50 ms (a pool whose workers slept through
                // the set-up takes a while to run at speed again)
                const double tw = bench_now();
                for (int rep = -3; rep < o.reps; rep++) {
                    const double t0 = bench_now();
                    for (int l = 0; l < sh->layers; l++)
                        if (eng_cpu_attention(&cpu, &w.out, &w.q, &w.kv, l, sh->heads, scale) < 0)
                            err = 1;
                    if (rep >= 0)
                        times[rep] = bench_now() - t0;
                    else if (rep == -1 && bench_now() - tw < 0.05)
                        rep = -2;
                }
                const double t = bench_median(times, o.reps);
                // bytes of K and V the step reads: every visible position of every layer
                // once (prefill: the last token's, i.e. the whole cache it filled)
                const double bytes = 2.0 * (p0 + T) * sh->heads * sh->head_dim * es * sh->layers;
                char name[32];
                snprintf(name, sizeof name, pf ? "prefill %d" : "decode @ d%d", pf ? T : p0);
                printf("%-12s %-14s %3d %10.3f %10.1f %10.1f\n", sh->name, name, o.threads[ti],
                       t * 1e3, t * 1e6 / sh->layers, bytes / t * 1e-9);
                fflush(stdout);
            }
            free(cpu.att_scratch);
            eng_tp_free(cpu.tp);
        }
        world_free(&w, sh->layers);
    }
    free(times);
    if (err) {
        fprintf(stderr, "bench_attention: an attention call failed\n");
        return 1;
    }
    return 0;
}
