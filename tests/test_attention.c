/* tests/test_attention.c: the CPU attention kernels (engine/cpu/attention*.c) against the
 * reference (one (token, head) at a time, expf, rows converted by eng_row_to_f32).
 * Every kernel level this CPU runs x 1..3 threads x steps that mix prefill chunks,
 * continuations and single decode tokens of several sequences (tokens interleaved),
 * MHA and GQA (group 1..32), head sizes 40..128, block sizes 8..32, F16 and F32 caches,
 * scattered physical blocks, long contexts (keys split across threads) and large scores.
 * Fresh random inputs per case, output poisoned with NaN. Tolerance: 2e-5 * max|V| (each
 * output is a convex combination of V rows; the kernels differ from the reference only
 * by the order of F32 sums and a polynomial exp with 2e-7 relative error). */
#include "../engine/cpu/attention_impl.h"

#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* the tile body compiled here too (baseline flags), for its exp */
#define ATT_WORKER test_att_worker_unused
#include "../engine/cpu/attention_tile.h"

struct seq_spec {
    int32_t n_tokens;        /* tokens of this sequence in the step */
    int32_t pos0;            /* position of its first token in the step */
};

struct att_case {
    const char *name;
    int32_t n_heads, n_kv, hs, bs;
    enum eng_dtype kv_dt;
    float q_scale;           /* larger: sharper softmax */
    int32_t n_seqs;
    struct seq_spec seqs[5];
};

static const struct att_case cases[] = {
    {"prefill mha hs48", 6, 6, 48, 16, ENG_DTYPE_F16, 1.0f, 1, {{37, 0}}},
    {"prefill gqa4 hs64 f32", 8, 2, 64, 8, ENG_DTYPE_F32, 1.0f, 1, {{50, 0}}},
    {"decode batch gqa4 hs128", 16, 4, 128, 16, ENG_DTYPE_F16, 1.0f, 5,
     {{1, 0}, {1, 15}, {1, 16}, {1, 100}, {1, 300}}},
    {"mixed hs40 bs32", 4, 2, 40, 32, ENG_DTYPE_F16, 1.0f, 3, {{20, 10}, {1, 77}, {9, 0}}},
    {"group16 hs64", 32, 2, 64, 16, ENG_DTYPE_F16, 1.0f, 2, {{5, 3}, {1, 40}}},
    {"group32 (reference path)", 32, 1, 32, 16, ENG_DTYPE_F32, 1.0f, 1, {{3, 5}}},
    {"sharp scores", 4, 4, 64, 16, ENG_DTYPE_F16, 12.0f, 2, {{33, 0}, {2, 60}}},
    {"long decode mha hs64", 4, 4, 64, 16, ENG_DTYPE_F16, 1.0f, 1, {{1, 2000}}},
    /* one query row per KV head (decode without GQA): the row kernel, chunk tails too */
    {"decode mha hs128 sharp", 8, 8, 128, 16, ENG_DTYPE_F16, 6.0f, 4,
     {{1, 0}, {1, 37}, {1, 513}, {1, 95}}},
    {"decode mha hs16 bs8", 3, 3, 16, 8, ENG_DTYPE_F16, 1.0f, 2, {{1, 5}, {1, 260}}},
    {"long prefill tail", 2, 1, 80, 16, ENG_DTYPE_F32, 2.0f, 2, {{17, 500}, {40, 0}}},
    /* few (sequence, KV head) pairs, long contexts: keys split across threads */
    {"split decode gqa8 hs64", 8, 1, 64, 16, ENG_DTYPE_F16, 3.0f, 1, {{1, 3000}}},
    {"split decode 2 seqs hs48", 2, 1, 48, 32, ENG_DTYPE_F32, 1.0f, 2, {{1, 700}, {1, 1500}}},
};

struct fixture {
    int n_levels;
    eng_tp_t *tp[3];
};

static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1DULL;
}
static float rng_sym(uint64_t *s)   /* [-1, 1), never exactly 0 */
{
    float v = (float)(rng_next(s) >> 40) / 8388608.0f - 1.0f;
    return v == 0.0f ? 0.5f : v;
}

static int setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof *fx);
    assert_non_null(fx);
    struct eng_cpu_features f;
    eng_cpu_detect(&f);
    fx->n_levels = (int)eng_cpu_level_pick(&f) + 1;
    for (int t = 0; t < 3; t++)
        assert_int_equal(eng_tp_new(t + 1, &fx->tp[t]), 0);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *fx = *state;
    for (int t = 0; t < 3; t++)
        eng_tp_free(fx->tp[t]);
    free(fx);
    return 0;
}

/* Everything one case needs; built fresh per case. */
struct world {
    struct eng_step st;
    int32_t *tokens, *pos, *seq, *slot, *seq_len, *bt;
    eng_kv_storage_t kv;
    eng_tensor_t k, v, q, out, ref;
    void *kmem, *vmem;
    float vmax;
};

static void act_tensor(eng_tensor_t *t, int64_t cols, int64_t rows)
{
    const int64_t ne[2] = {cols, rows};
    assert_int_equal(eng_tensor_init(t, ENG_DTYPE_F32, 2, ne), 0);
    t->data = malloc(eng_tensor_nbytes(t));
    assert_non_null(t->data);
}

static void build(struct world *w, const struct att_case *c, uint64_t *s)
{
    memset(w, 0, sizeof *w);
    int32_t T = 0, max_pos = 0;
    for (int i = 0; i < c->n_seqs; i++) {
        T += c->seqs[i].n_tokens;
        const int32_t last = c->seqs[i].pos0 + c->seqs[i].n_tokens - 1;
        max_pos = last > max_pos ? last : max_pos;
    }
    const int32_t max_blocks = max_pos / c->bs + 2;
    const int32_t n_blocks = max_blocks * c->n_seqs + 3;
    w->tokens = calloc((size_t)T, sizeof(int32_t));
    w->pos = calloc((size_t)T, sizeof(int32_t));
    w->seq = calloc((size_t)T, sizeof(int32_t));
    w->slot = calloc((size_t)T, sizeof(int32_t));
    w->seq_len = calloc((size_t)c->n_seqs, sizeof(int32_t));
    w->bt = malloc((size_t)c->n_seqs * max_blocks * sizeof(int32_t));
    assert_true(w->tokens && w->pos && w->seq && w->slot && w->seq_len && w->bt);

    // physical blocks: a random permutation shared out to the sequences
    int32_t *perm = malloc((size_t)n_blocks * sizeof(int32_t));
    assert_non_null(perm);
    for (int32_t i = 0; i < n_blocks; i++)
        perm[i] = i;
    for (int32_t i = n_blocks - 1; i > 0; i--) {
        int32_t r = (int32_t)(rng_next(s) % (uint64_t)(i + 1)), tmp = perm[i];
        perm[i] = perm[r];
        perm[r] = tmp;
    }
    for (int32_t i = 0; i < c->n_seqs * max_blocks; i++)
        w->bt[i] = perm[i];
    free(perm);

    // tokens of the sequences interleaved round-robin, each sequence's in position order
    int32_t next[5] = {0}, t = 0;
    while (t < T) {
        for (int i = 0; i < c->n_seqs && t < T; i++) {
            if (next[i] >= c->seqs[i].n_tokens)
                continue;
            w->seq[t] = i;
            w->pos[t] = c->seqs[i].pos0 + next[i]++;
            w->slot[t] = w->bt[i * max_blocks + w->pos[t] / c->bs] * c->bs + w->pos[t] % c->bs;
            t++;
        }
    }
    for (int i = 0; i < c->n_seqs; i++)
        w->seq_len[i] = c->seqs[i].pos0 + c->seqs[i].n_tokens;
    w->st = (struct eng_step){.n_tokens = T, .tokens = w->tokens, .pos = w->pos, .seq = w->seq,
                              .kv_slot = w->slot, .n_seqs = c->n_seqs, .seq_len = w->seq_len,
                              .max_blocks = max_blocks, .block_table = w->bt};

    // the cache: every slot random (unused ones too: they must not leak into results)
    const enum eng_kv_format fmt = c->kv_dt == ENG_DTYPE_F16 ? ENG_KV_F16 : ENG_KV_F32;
    w->kv.lay = (struct eng_kv_layout){.format = fmt, .n_layers = 1, .n_kv_heads = c->n_kv,
                                       .head_dim = c->hs, .block_size = c->bs,
                                       .n_blocks = n_blocks};
    const int64_t ne[2] = {(int64_t)c->n_kv * c->hs, (int64_t)n_blocks * c->bs};
    assert_int_equal(eng_tensor_init(&w->k, c->kv_dt, 2, ne), 0);
    w->v = w->k;
    w->kmem = aligned_alloc(64, (eng_tensor_nbytes(&w->k) + 63) & ~(size_t)63);
    w->vmem = aligned_alloc(64, (eng_tensor_nbytes(&w->v) + 63) & ~(size_t)63);
    assert_true(w->kmem && w->vmem);
    w->k.data = w->kmem;
    w->v.data = w->vmem;
    float *row = malloc((size_t)ne[0] * sizeof(float));
    assert_non_null(row);
    for (int64_t r = 0; r < ne[1]; r++) {
        for (int64_t i = 0; i < ne[0]; i++)
            row[i] = rng_sym(s);
        eng_row_from_f32(c->kv_dt, row, (char *)w->k.data + (size_t)r * w->k.nb[1], ne[0]);
        for (int64_t i = 0; i < ne[0]; i++) {
            row[i] = 3.0f * rng_sym(s);
            w->vmax = fabsf(row[i]) > w->vmax ? fabsf(row[i]) : w->vmax;
        }
        eng_row_from_f32(c->kv_dt, row, (char *)w->v.data + (size_t)r * w->v.nb[1], ne[0]);
    }
    free(row);
    w->kv.k = &w->k;
    w->kv.v = &w->v;

    act_tensor(&w->q, (int64_t)c->n_heads * c->hs, T);
    act_tensor(&w->out, (int64_t)c->n_heads * c->hs, T);
    act_tensor(&w->ref, (int64_t)c->n_heads * c->hs, T);
    float *q = w->q.data;
    for (int64_t i = 0; i < eng_tensor_nelements(&w->q); i++)
        q[i] = c->q_scale * rng_sym(s);
}

static void destroy(struct world *w)
{
    free(w->tokens);
    free(w->pos);
    free(w->seq);
    free(w->slot);
    free(w->seq_len);
    free(w->bt);
    free(w->kmem);
    free(w->vmem);
    free(w->q.data);
    free(w->out.data);
    free(w->ref.data);
}

static void poison(eng_tensor_t *t)
{
    float *p = t->data;
    for (int64_t i = 0; i < eng_tensor_nelements(t); i++)
        p[i] = NAN;
}

static void test_cases(void **state)
{
    struct fixture *fx = *state;
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const struct att_case *c = &cases[ci];
        uint64_t s = 0xA5A5A5A5DEADBEEFULL + ci * 7919;
        struct world w;
        build(&w, c, &s);
        const float scale = 1.0f / sqrtf((float)c->hs);
        struct eng_cpu cpu;
        memset(&cpu, 0, sizeof cpu);
        cpu.step = w.st;
        cpu.in_step = true;
        cpu.tp = fx->tp[0];
        poison(&w.ref);
        assert_int_equal(eng_cpu_attention_ref(&cpu, &w.ref, &w.q, &w.kv, 0, c->n_heads, scale), 0);
        const float tol = 2e-5f * w.vmax;
        for (int l = 0; l < fx->n_levels; l++) {
            for (int t = 0; t < 3; t++) {
                cpu.level = (enum eng_cpu_level)l;
                cpu.tp = fx->tp[t];
                poison(&w.out);
                assert_int_equal(
                    eng_cpu_attention(&cpu, &w.out, &w.q, &w.kv, 0, c->n_heads, scale), 0);
                const float *o = w.out.data, *r = w.ref.data;
                for (int64_t i = 0; i < eng_tensor_nelements(&w.out); i++) {
                    if (!(fabsf(o[i] - r[i]) <= tol))
                        fail_msg("%s: level %s threads %d: out[%lld] = %.8g, ref %.8g (tol %.3g)",
                                 c->name, eng_cpu_level_name((enum eng_cpu_level)l), t + 1,
                                 (long long)i, o[i], r[i], tol);
                }
            }
        }
        free(cpu.att_scratch);
        destroy(&w);
    }
}

/* Malformed steps are refused: sequence index, position past the block table, block id. */
static void test_bad_steps(void **state)
{
    struct fixture *fx = *state;
    const struct att_case *c = &cases[3];
    uint64_t s = 12345;
    struct world w;
    build(&w, c, &s);
    struct eng_cpu cpu;
    memset(&cpu, 0, sizeof cpu);
    cpu.tp = fx->tp[1];
    cpu.level = (enum eng_cpu_level)(fx->n_levels - 1);
    cpu.in_step = true;
    const float scale = 0.1f;

    cpu.step = w.st;
    assert_int_equal(eng_cpu_attention(&cpu, &w.out, &w.q, &w.kv, 0, c->n_heads, scale), 0);
    w.seq[2] = c->n_seqs;                               // no such sequence
    assert_int_equal(eng_cpu_attention(&cpu, &w.out, &w.q, &w.kv, 0, c->n_heads, scale), ERR_INVAL);
    assert_int_equal(eng_cpu_attention_ref(&cpu, &w.out, &w.q, &w.kv, 0, c->n_heads, scale),
                     ERR_INVAL);
    w.seq[2] = 0;
    const int32_t p = w.pos[2];
    w.pos[2] = w.st.max_blocks * c->bs;                 // past the block table
    assert_int_equal(eng_cpu_attention(&cpu, &w.out, &w.q, &w.kv, 0, c->n_heads, scale), ERR_INVAL);
    w.pos[2] = -1;
    assert_int_equal(eng_cpu_attention(&cpu, &w.out, &w.q, &w.kv, 0, c->n_heads, scale), ERR_INVAL);
    w.pos[2] = p;
    const int32_t b = w.bt[0];
    w.bt[0] = w.kv.lay.n_blocks;                        // block id out of range
    assert_int_equal(eng_cpu_attention(&cpu, &w.out, &w.q, &w.kv, 0, c->n_heads, scale), ERR_INVAL);
    w.bt[0] = -1;
    assert_int_equal(eng_cpu_attention(&cpu, &w.out, &w.q, &w.kv, 0, c->n_heads, scale), ERR_INVAL);
    w.bt[0] = b;
    assert_int_equal(eng_cpu_attention(&cpu, &w.out, &w.q, &w.kv, 0, c->n_heads, scale), 0);
    free(cpu.att_scratch);
    destroy(&w);
}

/* The kernels' exp: relative error <= 4e-7 on [-87, 0], exactly 1 at 0, monotone. */
static void test_exp(void **state)
{
    (void)state;
    double worst = 0.0;
    float prev = 0.0f;
    for (int i = 0; i <= 870000; i++) {
        const float x = -87.0f + (float)i * 1e-4f;
        const double want = exp((double)x), got = att_exp(x);
        const double rel = fabs(got - want) / want;
        worst = rel > worst ? rel : worst;
        if (!(rel <= 4e-7))
            fail_msg("att_exp(%.9g) = %.9g, exp = %.9g (rel %.3g)", x, got, want, rel);
        if (!(got >= prev))
            fail_msg("att_exp not monotone at %.9g", x);
        prev = (float)got;
    }
    assert_true(att_exp(0.0f) == 1.0f);
    assert_true(att_exp(-INFINITY) < 1e-37f);
    print_message("att_exp worst relative error %.3g\n", worst);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exp),
        cmocka_unit_test(test_cases),
        cmocka_unit_test(test_bad_steps),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
