/* engine/format/randmodel.c: random-weight Llama models of named shapes, built in memory as a
 * model file (eng_gguf_t), for benchmarks and tests that need no download.
 * Weights are N(0, std) drawn per (tensor, row chunk) from a counter-based seed, so the
 * result does not depend on the number of threads; rows are then stored in the requested
 * dtype with the reference rounding (eng_row_from_f32). */
#include "randmodel.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHUNK_ROWS 64

struct shape {
    int64_t dim, layers, heads, kv_heads, ffn, vocab, ctx;
    double rope_base;
};

static int parse_shape(const char *s, struct shape *sh, struct errbuf *eb)
{
    const struct shape tiny = {64, 2, 4, 2, 192, 300, 512, 10000.0};
    *sh = tiny;
    if (strcmp(s, "tiny") == 0)
        return 0;
    if (strcmp(s, "stories15M") == 0) {
        *sh = (struct shape){288, 6, 6, 6, 768, 32000, 2048, 10000.0};
        return 0;
    }
    if (strcmp(s, "stories110M") == 0) {
        *sh = (struct shape){768, 12, 12, 12, 2048, 32000, 2048, 10000.0};
        return 0;
    }
    if (strcmp(s, "llama7b") == 0) {
        *sh = (struct shape){4096, 32, 32, 8, 14336, 32000, 4096, 10000.0};
        return 0;
    }
    char buf[160];
    snprintf(buf, sizeof buf, "%s", s);
    char *save = NULL;
    for (char *kv = strtok_r(buf, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(kv, '=');
        if (!eq)
            return err_set(eb, ERR_INVAL, "random model shape '%s': expected key=value", s);
        *eq = '\0';
        char *end;
        double v = strtod(eq + 1, &end);
        if (end == eq + 1 || *end || !(v > 0) || v > 1e7)
            return err_set(eb, ERR_INVAL, "random model shape: bad value for '%s'", kv);
        // sizes are whole numbers >= 1: a fraction would truncate (to 0: a division by zero)
        if (strcmp(kv, "rope_base") != 0 && v != floor(v))
            return err_set(eb, ERR_INVAL, "random model shape: '%s' must be a whole number, "
                           "not %s", kv, eq + 1);
        if (strcmp(kv, "dim") == 0) sh->dim = (int64_t)v;
        else if (strcmp(kv, "layers") == 0) sh->layers = (int64_t)v;
        else if (strcmp(kv, "heads") == 0) sh->heads = (int64_t)v;
        else if (strcmp(kv, "kv_heads") == 0) sh->kv_heads = (int64_t)v;
        else if (strcmp(kv, "ffn") == 0) sh->ffn = (int64_t)v;
        else if (strcmp(kv, "vocab") == 0) sh->vocab = (int64_t)v;
        else if (strcmp(kv, "ctx") == 0) sh->ctx = (int64_t)v;
        else if (strcmp(kv, "rope_base") == 0) sh->rope_base = v;
        else
            return err_set(eb, ERR_INVAL, "random model shape: unknown key '%s' (dim, layers, "
                           "heads, kv_heads, ffn, vocab, ctx, rope_base)", kv);
    }
    if (sh->dim % sh->heads || sh->heads % sh->kv_heads || (sh->dim / sh->heads) % 2 ||
        sh->vocab < 259 || sh->layers > 1024)
        return err_set(eb, ERR_INVAL, "random model shape '%s': need dim %% heads == 0, heads %% "
                       "kv_heads == 0, an even head size, vocab >= 259", s);
    return 0;
}

/* --- counter-based normal generator --- */
static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

struct rng {
    uint64_t s[2];
};

static uint64_t rng_next(struct rng *r)   /* xorshift128+ */
{
    uint64_t s1 = r->s[0];
    const uint64_t s0 = r->s[1];
    r->s[0] = s0;
    s1 ^= s1 << 23;
    r->s[1] = s1 ^ s0 ^ (s1 >> 17) ^ (s0 >> 26);
    return r->s[1] + s0;
}

static void fill_normal(struct rng *r, float *x, int64_t n, float mean, float std)
{
    for (int64_t i = 0; i < n; i += 2) {
        const uint64_t a = rng_next(r), b = rng_next(r);
        const float u1 = ((float)(a >> 40) + 1.0f) * (1.0f / 16777216.0f);   // (0, 1]
        const float u2 = (float)(b >> 40) * (1.0f / 16777216.0f);
        const float rad = sqrtf(-2.0f * logf(u1)) * std;
        const float th = 6.2831853f * u2;
        x[i] = mean + rad * cosf(th);
        if (i + 1 < n)
            x[i + 1] = mean + rad * sinf(th);
    }
}

/* --- tensors and the parallel fill --- */
struct rt {
    char name[64];
    enum eng_dtype dtype;
    int64_t ne[2];
    int n_dims;
    void *data;
    size_t nbytes;
    float mean, std;
};

struct fill_job {
    struct rt *ts;
    int n_ts;
    int64_t *chunk_start;   /* (n_ts + 1) prefix sums of chunk counts */
    _Atomic int64_t next;
    _Atomic int64_t done;   /* chunks filled: a worker that fails leaves its chunk out */
    uint64_t seed;
};

static void *fill_worker(void *arg)
{
    struct fill_job *j = arg;
    int64_t total = j->chunk_start[j->n_ts];
    float *row = NULL;
    int64_t row_cap = 0;
    for (;;) {
        int64_t c = atomic_fetch_add(&j->next, 1);
        if (c >= total)
            break;
        int ti = 0;
        while (j->chunk_start[ti + 1] <= c)
            ti++;
        struct rt *t = &j->ts[ti];
        const int64_t chunk = c - j->chunk_start[ti];
        const int64_t r0 = chunk * CHUNK_ROWS;
        const int64_t rows = t->n_dims == 2 ? t->ne[1] : 1;
        const int64_t r1 = r0 + CHUNK_ROWS < rows ? r0 + CHUNK_ROWS : rows;
        if (t->ne[0] > row_cap) {
            float *p = realloc(row, sizeof(float) * (size_t)(t->ne[0] + 1));
            if (!p)
                break;           // the caller sees the unfinished count
            row = p;
            row_cap = t->ne[0];
        }
        struct rng r = {{mix64(j->seed ^ mix64((uint64_t)ti * 0x9e3779b97f4a7c15ull + 1)),
                         mix64((uint64_t)chunk + 0x632be59bd9b4e019ull * (uint64_t)(ti + 1))}};
        if (!r.s[0] && !r.s[1])
            r.s[0] = 1;
        const size_t rb = eng_dtype_row_bytes(t->dtype, t->ne[0]);
        for (int64_t rr = r0; rr < r1; rr++) {
            if (t->std > 0.0f)
                fill_normal(&r, row, t->ne[0], t->mean, t->std);
            else
                for (int64_t i = 0; i < t->ne[0]; i++)
                    row[i] = t->mean;
            eng_row_from_f32(t->dtype, row, (char *)t->data + (size_t)rr * rb, t->ne[0]);
        }
        atomic_fetch_add(&j->done, 1);
    }
    free(row);
    return NULL;
}

static void free_ptr(void *p)
{
    free(p);
}

int eng_random_model_build(const struct eng_random_model *rm, eng_gguf_t **out,
                           struct errbuf *eb)
{
    struct shape sh;
    int rc = parse_shape(rm->shape, &sh, eb);
    if (rc < 0)
        return rc;
    const enum eng_dtype dt = rm->dtype;
    if (!eng_dtype_is_compute(dt))
        return err_set(eb, ERR_INVAL, "random model dtype must be f32, f16, bf16, q8_0 or q4_0");
    const int64_t blk = eng_dtype_block_elems(dt);
    if (sh.dim % blk || sh.ffn % blk)
        return err_set(eb, ERR_INVAL, "dtype %s needs dim and ffn multiples of %lld",
                       eng_dtype_name(dt), (long long)blk);
    const int64_t C = sh.dim, HS = sh.dim / sh.heads, KV = HS * sh.kv_heads, F = sh.ffn;
    const float std = rm->std > 0 ? rm->std : 0.02f;
    const int n_ts = 3 + 9 * (int)sh.layers;
    struct rt *ts = calloc((size_t)n_ts, sizeof *ts);
    int64_t *starts = calloc((size_t)n_ts + 1, sizeof *starts);
    eng_gguf_t *g = NULL;
    if (!ts || !starts) {
        rc = ERR_NOMEM;
        goto fail;
    }
    int n = 0;
#define ADD(nm, d, nd, a, b, mu, sd)                                                               \
    do {                                                                                           \
        snprintf(ts[n].name, sizeof ts[n].name, "%s", nm);                                         \
        ts[n].dtype = (d);                                                                         \
        ts[n].n_dims = (nd);                                                                       \
        ts[n].ne[0] = (a);                                                                         \
        ts[n].ne[1] = (b);                                                                         \
        ts[n].mean = (mu);                                                                         \
        ts[n].std = (sd);                                                                          \
        n++;                                                                                       \
    } while (0)
    ADD("token_embd.weight", dt, 2, C, sh.vocab, 0.0f, std);
    ADD("output_norm.weight", ENG_DTYPE_F32, 1, C, 1, 1.0f, rm->norm_std);
    ADD("output.weight", dt, 2, C, sh.vocab, 0.0f, std);
    for (int64_t l = 0; l < sh.layers; l++) {
        char nm[64];
#define LAYER(suf, d, nd, a, b, mu, sd)                                                            \
    do {                                                                                           \
        snprintf(nm, sizeof nm, "blk.%lld.%s.weight", (long long)l, suf);                          \
        ADD(nm, d, nd, a, b, mu, sd);                                                              \
    } while (0)
        LAYER("attn_norm", ENG_DTYPE_F32, 1, C, 1, 1.0f, rm->norm_std);
        LAYER("attn_q", dt, 2, C, C, 0.0f, std);
        LAYER("attn_k", dt, 2, C, KV, 0.0f, std);
        LAYER("attn_v", dt, 2, C, KV, 0.0f, std);
        LAYER("attn_output", dt, 2, C, C, 0.0f, std);
        LAYER("ffn_norm", ENG_DTYPE_F32, 1, C, 1, 1.0f, rm->norm_std);
        LAYER("ffn_gate", dt, 2, C, F, 0.0f, std);
        LAYER("ffn_up", dt, 2, C, F, 0.0f, std);
        LAYER("ffn_down", dt, 2, F, C, 0.0f, std);
#undef LAYER
    }
#undef ADD
    if ((rc = eng_gguf_new(&g)) < 0)
        goto fail;
    for (int i = 0; i < n_ts; i++) {
        struct rt *t = &ts[i];
        const int64_t rows = t->n_dims == 2 ? t->ne[1] : 1;
        t->nbytes = eng_dtype_row_bytes(t->dtype, t->ne[0]) * (size_t)rows;
        t->data = aligned_alloc(64, (t->nbytes + 63) & ~(size_t)63);
        if (!t->data) {
            rc = err_set(eb, ERR_NOMEM, "cannot allocate %zu bytes for random tensor '%s'",
                         t->nbytes, t->name);
            goto fail;
        }
        if ((rc = eng_gguf_hold(g, t->data, free_ptr)) < 0) {
            free(t->data);
            goto fail;
        }
        starts[i + 1] = starts[i] + (rows + CHUNK_ROWS - 1) / CHUNK_ROWS;
    }
    struct fill_job job = {.ts = ts, .n_ts = n_ts, .chunk_start = starts, .seed = rm->seed};
    atomic_init(&job.next, 0);
    atomic_init(&job.done, 0);
    int nth = rm->n_threads > 0 ? rm->n_threads : 1;
    if (nth > 256)
        nth = 256;
    pthread_t th[256];
    int started = 0;
    for (int i = 1; i < nth; i++) {
        if (pthread_create(&th[i], NULL, fill_worker, &job) != 0)
            break;
        started++;
    }
    fill_worker(&job);
    for (int i = 1; i <= started; i++)
        pthread_join(th[i], NULL);
    // `next` passes the total even when a worker gave up on a chunk it had claimed
    if (atomic_load(&job.done) != starts[n_ts]) {
        rc = err_set(eb, ERR_NOMEM, "no memory to generate the random weights");
        goto fail;
    }
    for (int i = 0; i < n_ts; i++) {
        struct rt *t = &ts[i];
        if ((rc = eng_gguf_add_tensor(g, t->name, t->dtype, t->n_dims, t->ne, t->data,
                                      t->nbytes)) < 0)
            goto fail;
    }
    // metadata: llama hyper-parameters and a byte-fallback SPM vocab
    char name[200];
    snprintf(name, sizeof name, "random-%s-%s", rm->shape, eng_dtype_name(dt));
    if ((rc = eng_gguf_set_str(g, "general.architecture", "llama", 5)) < 0 ||
        (rc = eng_gguf_set_str(g, "general.name", name, strlen(name))) < 0 ||
        (rc = eng_gguf_set_u32(g, "llama.context_length", (uint32_t)sh.ctx)) < 0 ||
        (rc = eng_gguf_set_u32(g, "llama.embedding_length", (uint32_t)C)) < 0 ||
        (rc = eng_gguf_set_u32(g, "llama.block_count", (uint32_t)sh.layers)) < 0 ||
        (rc = eng_gguf_set_u32(g, "llama.feed_forward_length", (uint32_t)F)) < 0 ||
        (rc = eng_gguf_set_u32(g, "llama.attention.head_count", (uint32_t)sh.heads)) < 0 ||
        (rc = eng_gguf_set_u32(g, "llama.attention.head_count_kv", (uint32_t)sh.kv_heads)) < 0 ||
        (rc = eng_gguf_set_u32(g, "llama.rope.dimension_count", (uint32_t)HS)) < 0 ||
        (rc = eng_gguf_set_f32(g, "llama.rope.freq_base", (float)sh.rope_base)) < 0 ||
        (rc = eng_gguf_set_f32(g, "llama.attention.layer_norm_rms_epsilon", 1e-5f)) < 0 ||
        (rc = eng_gguf_set_u32(g, "general.file_type", dt == ENG_DTYPE_F32 ? 0u
                                   : dt == ENG_DTYPE_F16 ? 1u : dt == ENG_DTYPE_Q4_0 ? 2u
                                   : dt == ENG_DTYPE_Q8_0 ? 7u : 32u)) < 0)
        goto fail;
    {
        const int64_t V = sh.vocab;
        char **toks = calloc((size_t)V, sizeof *toks);
        size_t *lens = calloc((size_t)V, sizeof *lens);
        float *scores = calloc((size_t)V, sizeof *scores);
        int32_t *types = calloc((size_t)V, sizeof *types);
        char *pool = malloc((size_t)V * 32);
        if (!toks || !lens || !scores || !types || !pool) {
            free(toks), free(lens), free(scores), free(types), free(pool);
            rc = ERR_NOMEM;
            goto fail;
        }
        for (int64_t i = 0; i < V; i++) {
            char *p = pool + i * 32;
            if (i == 0)
                snprintf(p, 32, "<unk>"), types[i] = 2;
            else if (i == 1)
                snprintf(p, 32, "<s>"), types[i] = 3;
            else if (i == 2)
                snprintf(p, 32, "</s>"), types[i] = 3;
            else if (i < 259)
                snprintf(p, 32, "<0x%02X>", (unsigned)(i - 3)), types[i] = 6;
            else
                snprintf(p, 32, "\xe2\x96\x81t%lld", (long long)i), types[i] = 1;   // "▁t123"
            toks[i] = p;
            lens[i] = strlen(p);
            scores[i] = i < 259 ? 0.0f : -(float)(i - 259);
        }
        rc = eng_gguf_set_str(g, "tokenizer.ggml.model", "llama", 5);
        if (rc == 0)
            rc = eng_gguf_set_arr_str(g, "tokenizer.ggml.tokens", (uint64_t)V,
                                      (const char *const *)toks, lens);
        if (rc == 0)
            rc = eng_gguf_set_arr(g, "tokenizer.ggml.scores", ENG_GGUF_FLOAT32, (uint64_t)V, scores);
        if (rc == 0)
            rc = eng_gguf_set_arr(g, "tokenizer.ggml.token_type", ENG_GGUF_INT32, (uint64_t)V, types);
        free(toks), free(lens), free(scores), free(types), free(pool);
        if (rc == 0 && ((rc = eng_gguf_set_u32(g, "tokenizer.ggml.bos_token_id", 1)) < 0 ||
                        (rc = eng_gguf_set_u32(g, "tokenizer.ggml.eos_token_id", 2)) < 0 ||
                        (rc = eng_gguf_set_u32(g, "tokenizer.ggml.unknown_token_id", 0)) < 0 ||
                        (rc = eng_gguf_set_bool(g, "tokenizer.ggml.add_bos_token", true)) < 0))
            goto fail;
        if (rc < 0)
            goto fail;
    }
    free(ts);
    free(starts);
    *out = g;
    return 0;
fail:
    eng_gguf_free(g);   // frees held tensor data
    free(ts);
    free(starts);
    return rc;
}
