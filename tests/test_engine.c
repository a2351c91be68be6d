/* tests/test_engine.c: the context and forward pass on a random model (no files needed):
 * batching is invisible in the logits (one batch == token by token == interleaved
 * sequences), truncation, KV exhaustion, limits, weights in one block per backend, and
 * the sampler chain. */
#include "../engine/backend_impl.h"
#include "../engine/engine.h"
#include "../engine/model_impl.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

struct fx {
    eng_backend_t *be;
    eng_model_t *m;
    int32_t V;
};

/* The fixture's model file (built anew for each caller: a model owns its file). */
static eng_gguf_t *fixture_file(void)
{
    struct eng_random_model rm = {.dtype = ENG_DTYPE_F32, .std = 0.05f, .norm_std = 0.1f,
                                  .seed = 7, .n_threads = 2};
    snprintf(rm.shape, sizeof rm.shape, "dim=64,layers=3,heads=4,kv_heads=2,ffn=96,vocab=300");
    eng_gguf_t *g;
    struct errbuf eb = {{0}};
    if (eng_random_model_build(&rm, &g, &eb) < 0)
        fail_msg("random model: %s", eb.msg);
    return g;
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    struct eng_cpu_params cp = {.n_threads = 2};
    assert_int_equal(eng_cpu_backend_new(&cp, &f->be), 0);
    eng_gguf_t *g = fixture_file();
    struct errbuf eb = {{0}};
    struct eng_model_params mp = {.be = f->be};
    int rc = eng_model_from_gguf(g, &mp, &f->m, &eb);
    if (rc < 0)
        fail_msg("load: %s", eb.msg);
    f->V = eng_model_hparams(f->m)->n_vocab;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    eng_model_free(f->m);
    eng_backend_free(f->be);
    free(f);
    return 0;
}

static eng_ctx_t *new_ctx(struct fx *f, int n_seq, int n_batch, int n_ctx, int kv_blocks,
                          enum eng_kv_format fmt)
{
    struct eng_ctx_params p = tu_ctx_params(n_ctx, n_seq, n_batch, fmt);
    p.kv_blocks = kv_blocks;
    p.kv_block_size = 4;      // small blocks: every test crosses block boundaries
    eng_ctx_t *c;
    struct errbuf eb = {{0}};
    if (eng_ctx_new(f->m, &p, &c, &eb) < 0)
        fail_msg("ctx: %s", eb.msg);
    return c;
}

static const int32_t prompt[] = {1, 17, 250, 3, 99, 42, 42, 7, 260, 11, 5, 299, 100};
#define NP ((int32_t)(sizeof prompt / sizeof prompt[0]))

/* Logits of every position, computed in chunks of `chunk` tokens. */
static float *run_chunks(struct fx *f, eng_ctx_t *c, int32_t seq, int chunk)
{
    float *out = malloc(sizeof(float) * (size_t)NP * (size_t)f->V);
    int32_t sids[NP];
    bool want[NP];
    for (int i = 0; i < NP; i++) {
        sids[i] = seq;
        want[i] = true;
    }
    for (int done = 0; done < NP;) {
        int k = NP - done < chunk ? NP - done : chunk;
        struct eng_batch b = {.n = k, .tokens = prompt + done, .seq_id = sids, .want_logits = want};
        assert_int_equal(eng_ctx_decode(c, &b), 0);
        assert_int_equal(eng_ctx_n_logits(c), k);
        for (int i = 0; i < k; i++)
            memcpy(out + (size_t)(done + i) * (size_t)f->V, eng_ctx_logits(c, i),
                   sizeof(float) * (size_t)f->V);
        done += k;
    }
    return out;
}

static double max_rel(const float *a, const float *b, size_t n)
{
    double md = 0, mb = 0;
    for (size_t i = 0; i < n; i++) {
        md = fmax(md, fabs((double)a[i] - b[i]));
        mb = fmax(mb, fabs((double)b[i]));
        if (!isfinite(a[i]))
            return INFINITY;
    }
    return md / (mb > 0 ? mb : 1);
}

static void test_batching_invisible(void **state)
{
    struct fx *f = *state;
    eng_ctx_t *c = new_ctx(f, 2, 16, 64, 0, ENG_KV_F32);
    int32_t s;
    assert_int_equal(eng_ctx_seq_new(c, &s), 0);
    float *one = run_chunks(f, c, s, NP);
    eng_ctx_seq_free(c, s);
    assert_int_equal(eng_ctx_seq_new(c, &s), 0);
    float *each = run_chunks(f, c, s, 1);
    eng_ctx_seq_free(c, s);
    assert_int_equal(eng_ctx_seq_new(c, &s), 0);
    float *threes = run_chunks(f, c, s, 3);
    const size_t n = (size_t)NP * (size_t)f->V;
    assert_true(max_rel(each, one, n) < 1e-5);
    assert_true(max_rel(threes, one, n) < 1e-5);
    free(one);
    free(each);
    free(threes);
    eng_ctx_free(c);
}

static void test_interleaved_sequences(void **state)
{
    struct fx *f = *state;
    eng_ctx_t *c = new_ctx(f, 3, 32, 64, 0, ENG_KV_F32);
    int32_t a, b;
    assert_int_equal(eng_ctx_seq_new(c, &a), 0);
    float *alone = run_chunks(f, c, a, NP);
    eng_ctx_seq_free(c, a);
    // two sequences, the same prompt, tokens interleaved in one batch (b one token behind)
    assert_int_equal(eng_ctx_seq_new(c, &a), 0);
    assert_int_equal(eng_ctx_seq_new(c, &b), 0);
    int32_t toks[2 * NP], sids[2 * NP];
    int n = 0;
    for (int i = 0; i < NP; i++) {
        toks[n] = prompt[i];
        sids[n++] = a;
        if (i > 0) {
            toks[n] = prompt[i - 1];
            sids[n++] = b;
        }
    }
    bool want[2 * NP];
    for (int i = 0; i < n; i++)
        want[i] = true;
    struct eng_batch bt = {.n = n, .tokens = toks, .seq_id = sids, .want_logits = want};
    assert_int_equal(eng_ctx_decode(c, &bt), 0);
    int ia = 0, ib = 0;
    for (int i = 0; i < n; i++) {
        const float *lg = eng_ctx_logits(c, i);
        int pos = sids[i] == a ? ia++ : ib++;
        assert_true(max_rel(lg, alone + (size_t)pos * (size_t)f->V, (size_t)f->V) < 1e-5);
    }
    assert_int_equal(eng_ctx_seq_len(c, a), NP);
    assert_int_equal(eng_ctx_seq_len(c, b), NP - 1);
    free(alone);
    eng_ctx_free(c);
}

static void test_truncate_and_redecode(void **state)
{
    struct fx *f = *state;
    eng_ctx_t *c = new_ctx(f, 1, 16, 64, 0, ENG_KV_F32);
    int32_t s;
    eng_ctx_seq_new(c, &s);
    float *ref = run_chunks(f, c, s, NP);
    int32_t before = eng_ctx_free_blocks(c);
    assert_int_equal(eng_ctx_seq_truncate(c, s, 5), 0);
    assert_true(eng_ctx_free_blocks(c) > before);
    assert_int_equal(eng_ctx_seq_len(c, s), 5);
    int32_t sids[NP];
    for (int i = 0; i < NP; i++)
        sids[i] = s;
    struct eng_batch b = {.n = NP - 5, .tokens = prompt + 5, .seq_id = sids};
    assert_int_equal(eng_ctx_decode(c, &b), 0);
    assert_int_equal(eng_ctx_n_logits(c), 1);
    assert_true(max_rel(eng_ctx_logits(c, 0), ref + (size_t)(NP - 1) * (size_t)f->V,
                        (size_t)f->V) < 1e-5);
    assert_int_equal(eng_ctx_seq_truncate(c, s, NP + 1), ERR_INVAL);
    free(ref);
    eng_ctx_free(c);
}

static void test_limits(void **state)
{
    struct fx *f = *state;
    // 3 blocks of 4 tokens: 12 tokens in all
    eng_ctx_t *c = new_ctx(f, 2, 16, 16, 3, ENG_KV_F16);
    int32_t a, b;
    eng_ctx_seq_new(c, &a);
    eng_ctx_seq_new(c, &b);
    int32_t x;
    assert_int_equal(eng_ctx_seq_new(c, &x), ERR_BUSY);
    int32_t sa[16], sb[16];
    for (int i = 0; i < 16; i++)
        sa[i] = a, sb[i] = b;
    struct eng_batch ba = {.n = 9, .tokens = prompt, .seq_id = sa};
    assert_int_equal(eng_ctx_decode(c, &ba), 0);      // 3 blocks used
    struct eng_batch bb = {.n = 1, .tokens = prompt, .seq_id = sb};
    assert_int_equal(eng_ctx_decode(c, &bb), ERR_BUSY);  // no block left
    assert_int_equal(eng_ctx_seq_len(c, b), 0);          // nothing appended
    eng_ctx_seq_free(c, a);
    assert_int_equal(eng_ctx_decode(c, &bb), 0);
    // n_ctx 16: a 17th token is refused
    struct eng_batch big = {.n = 17, .tokens = prompt, .seq_id = sb};
    assert_int_equal(eng_ctx_decode(c, &big), ERR_TOOLARGE);
    int32_t bad_tok = f->V;
    struct eng_batch bad = {.n = 1, .tokens = &bad_tok, .seq_id = sb};
    assert_int_equal(eng_ctx_decode(c, &bad), ERR_INVAL);
    int32_t bad_seq = 7;
    struct eng_batch bad2 = {.n = 1, .tokens = prompt, .seq_id = &bad_seq};
    assert_int_equal(eng_ctx_decode(c, &bad2), ERR_INVAL);
    eng_ctx_free(c);
}

static void test_kv_f16_close_to_f32(void **state)
{
    struct fx *f = *state;
    eng_ctx_t *c32 = new_ctx(f, 1, 16, 64, 0, ENG_KV_F32), *c16 = new_ctx(f, 1, 16, 64, 0, ENG_KV_F16);
    int32_t s;
    eng_ctx_seq_new(c32, &s);
    float *a = run_chunks(f, c32, s, 4);
    eng_ctx_seq_new(c16, &s);
    float *b = run_chunks(f, c16, s, 4);
    double e = max_rel(b, a, (size_t)NP * (size_t)f->V);
    assert_true(e < 2e-3);
    assert_true(e > 0.0);      // F16 rounding must be visible: the KV really is F16
    free(a);
    free(b);
    eng_ctx_free(c32);
    eng_ctx_free(c16);
}


/* A context longer than 32768 tokens at 16 per block (2048+ blocks per sequence) runs:
 * the step check once computed blocks * 2^20 in 32-bit arithmetic, which overflowed (UB)
 * and refused every step of such a context. */
static void test_long_context_steps(void **state)
{
    struct fx *f = *state;
    struct eng_ctx_params p;
    eng_ctx_params_default(&p);
    p.n_ctx = 1 << 16;          // 4096 blocks of 16
    p.n_seq_max = 1;
    p.n_batch = 16;
    p.kv_block_size = 16;
    p.kv_format = ENG_KV_F16;
    eng_ctx_t *c;
    struct errbuf eb = {{0}};
    if (eng_ctx_new(f->m, &p, &c, &eb) < 0)
        fail_msg("ctx: %s", eb.msg);
    int32_t s, sids[NP];
    assert_int_equal(eng_ctx_seq_new(c, &s), 0);
    for (int i = 0; i < NP; i++)
        sids[i] = s;
    struct eng_batch b = {.n = NP, .tokens = prompt, .seq_id = sids};
    assert_int_equal(eng_ctx_decode(c, &b), 0);
    assert_int_equal(eng_ctx_seq_len(c, s), NP);
    assert_int_equal(eng_ctx_n_logits(c), 1);
    eng_ctx_free(c);
}

/* Random-model shapes take whole positive numbers: a fraction used to truncate to 0 and
 * divide by zero (dim %% heads) or build a model with no layers. */
static void test_random_shape_values(void **state)
{
    (void)state;
    const char *bad[] = {"heads=0.5", "kv_heads=0.9", "dim=64,heads=4,kv_heads=2.5",
                         "layers=0.5", "ffn=96.5", "vocab=300.25", "ctx=0.1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct eng_random_model rm = {.dtype = ENG_DTYPE_F32, .seed = 1, .n_threads = 1};
        snprintf(rm.shape, sizeof rm.shape, "%s", bad[i]);
        eng_gguf_t *g = NULL;
        struct errbuf eb = {{0}};
        int rc = eng_random_model_build(&rm, &g, &eb);
        if (rc != ERR_INVAL)
            fail_msg("shape '%s': rc %d, want ERR_INVAL", bad[i], rc);
        assert_null(g);
        assert_true(eb.msg[0] != '\0');
    }
    // a fractional rope base is fine
    struct eng_random_model rm = {.dtype = ENG_DTYPE_F32, .seed = 1, .n_threads = 1};
    snprintf(rm.shape, sizeof rm.shape, "rope_base=5000.5");
    eng_gguf_t *g = NULL;
    struct errbuf eb = {{0}};
    assert_int_equal(eng_random_model_build(&rm, &g, &eb), 0);
    eng_gguf_free(g);
}


/* Hyper-parameters that would make every logit NaN are refused at load: a linear RoPE
 * scaling factor so small that its inverse overflows to +inf (1e-40 is a float denormal). */
static void test_rope_scale_must_be_finite(void **state)
{
    struct fx *f = *state;
    const float factors[] = {1e-40f, 2.0f};
    for (int i = 0; i < 2; i++) {
        struct eng_random_model rm = {.dtype = ENG_DTYPE_F32, .seed = 3, .n_threads = 1};
        snprintf(rm.shape, sizeof rm.shape, "tiny");
        eng_gguf_t *g;
        struct errbuf eb = {{0}};
        assert_int_equal(eng_random_model_build(&rm, &g, &eb), 0);
        assert_int_equal(eng_gguf_set_str(g, "llama.rope.scaling.type", "linear", 6), 0);
        assert_int_equal(eng_gguf_set_f32(g, "llama.rope.scaling.factor", factors[i]), 0);
        struct eng_model_params mp = {.be = f->be};
        eng_model_t *m = NULL;
        int rc = eng_model_from_gguf(g, &mp, &m, &eb);
        if (i == 0) {
            assert_int_equal(rc, ERR_CORRUPT);
            assert_null(m);
            assert_non_null(strstr(eb.msg, "rope.scaling.factor"));
        } else {
            assert_int_equal(rc, 0);
            assert_true(eng_model_hparams(m)->rope_freq_scale == 0.5f);
            eng_model_free(m);
        }
    }
}

/* --- sampler --- */

static void test_sampler_greedy_and_seed(void **state)
{
    (void)state;
    enum { V = 1000 };
    float *lg = malloc(sizeof(float) * V);
    for (int i = 0; i < V; i++)
        lg[i] = sinf((float)i * 0.37f) * 3.0f;
    lg[321] = 10.0f;
    struct eng_sampler_params p;
    eng_sampler_params_default(&p);
    p.temperature = 0.0f;
    eng_sampler_t *s;
    assert_int_equal(eng_sampler_new(&p, V, &s), 0);
    assert_int_equal(eng_sampler_sample(s, lg, NULL), 321);
    eng_sampler_free(s);
    lg[321] = 1.0f;
    // same seed, same sequence; another seed, another sequence
    p.temperature = 1.5f;
    p.seed = 42;
    int32_t x[64], y[64], z[64];
    eng_sampler_t *s1, *s2, *s3;
    eng_sampler_new(&p, V, &s1);
    eng_sampler_new(&p, V, &s2);
    p.seed = 43;
    eng_sampler_new(&p, V, &s3);
    int diff = 0;
    for (int i = 0; i < 64; i++) {
        x[i] = eng_sampler_sample(s1, lg, NULL);
        y[i] = eng_sampler_sample(s2, lg, NULL);
        z[i] = eng_sampler_sample(s3, lg, NULL);
        assert_int_equal(x[i], y[i]);
        diff += x[i] != z[i];
    }
    assert_true(diff > 0);
    eng_sampler_free(s1);
    eng_sampler_free(s2);
    eng_sampler_free(s3);
    free(lg);
}

static void test_sampler_filters(void **state)
{
    (void)state;
    enum { V = 50 };
    float lg[V];
    for (int i = 0; i < V; i++)
        lg[i] = (float)(V - i) * 0.5f;    // token 0 best, then 1, 2, ...
    struct eng_sampler_params p;
    eng_sampler_params_default(&p);
    p.temperature = 5.0f;
    p.top_k = 3;
    eng_sampler_t *s;
    eng_sampler_new(&p, V, &s);
    for (int i = 0; i < 200; i++)
        assert_true(eng_sampler_sample(s, lg, NULL) < 3);
    eng_sampler_free(s);
    // min_p = 0.5 at T=1: only tokens within log(2) of the best survive: 0 and 1
    eng_sampler_params_default(&p);
    p.temperature = 1.0f;
    p.min_p = 0.5f;
    eng_sampler_new(&p, V, &s);
    for (int i = 0; i < 200; i++)
        assert_true(eng_sampler_sample(s, lg, NULL) <= 1);
    eng_sampler_free(s);
    // top_p tiny: only the best
    eng_sampler_params_default(&p);
    p.temperature = 1.0f;
    p.top_p = 0.01f;
    eng_sampler_new(&p, V, &s);
    for (int i = 0; i < 50; i++)
        assert_int_equal(eng_sampler_sample(s, lg, NULL), 0);
    eng_sampler_free(s);
    // a repetition penalty pushes greedy off a repeated token
    eng_sampler_params_default(&p);
    p.temperature = 0.0f;
    p.repeat_penalty = 2.0f;
    eng_sampler_new(&p, V, &s);
    assert_int_equal(eng_sampler_sample(s, lg, NULL), 0);
    eng_sampler_accept(s, 0);       // 25 -> 12.5 < 24.5
    assert_int_equal(eng_sampler_sample(s, lg, NULL), 1);
    eng_sampler_free(s);
    // logprobs: the chosen one and the top-N, sorted, normalized
    eng_sampler_params_default(&p);
    p.temperature = 0.0f;
    p.n_logprobs = 5;
    eng_sampler_new(&p, V, &s);
    struct eng_logprobs lp;
    assert_int_equal(eng_sampler_sample(s, lg, &lp), 0);
    assert_int_equal(lp.n_top, 5);
    double total = 0;
    for (int i = 0; i < V; i++)
        total += exp((double)lg[i] - lg[0]);
    assert_true(fabs(lp.logprob - (-log(total))) < 1e-5);
    for (int i = 0; i < 5; i++)
        assert_int_equal(lp.top_token[i], i);
    eng_sampler_free(s);
    const char *why = NULL;
    p.top_p = 0.0f;
    assert_int_equal(eng_sampler_params_check(&p, &why), ERR_RANGE);
    assert_non_null(why);
}


/* Non-finite logits (a model bug upstream, or a hostile backend) never make the sampler
 * pick garbage: NaN is never chosen, +inf tokens take all the mass, logprobs stay finite
 * where they can. Before, one NaN or +inf made every draw return the last token. */
static void test_sampler_nonfinite(void **state)
{
    (void)state;
    enum { V = 64 };
    float lg[V];
    for (int i = 0; i < V; i++)
        lg[i] = (float)(i % 7) * 0.3f;
    struct eng_sampler_params p;
    eng_sampler_params_default(&p);
    p.temperature = 1.0f;
    p.seed = 5;
    p.n_logprobs = 3;
    // one NaN: never chosen, the draws still spread over the finite tokens
    lg[10] = NAN;
    eng_sampler_t *s;
    assert_int_equal(eng_sampler_new(&p, V, &s), 0);
    int seen_last = 0, distinct = 0;
    bool hit[V] = {false};
    for (int i = 0; i < 400; i++) {
        struct eng_logprobs lp;
        int32_t t = eng_sampler_sample(s, lg, &lp);
        assert_true(t >= 0 && t < V);
        assert_int_not_equal(t, 10);
        assert_true(isfinite(lp.logprob));
        for (int k = 0; k < lp.n_top; k++)
            assert_true(isfinite(lp.top_logprob[k]));
        seen_last += t == V - 1;
        if (!hit[t])
            distinct++;
        hit[t] = true;
    }
    assert_true(seen_last < 400);
    assert_true(distinct > 10);
    eng_sampler_free(s);
    // the same with top-k and top-p on (the sorted paths)
    p.top_k = 20;
    p.top_p = 0.9f;
    assert_int_equal(eng_sampler_new(&p, V, &s), 0);
    for (int i = 0; i < 200; i++)
        assert_int_not_equal(eng_sampler_sample(s, lg, NULL), 10);
    eng_sampler_free(s);
    // +inf: that token, every time, greedy or not
    lg[10] = 0.0f;
    lg[33] = INFINITY;
    p.top_k = 0;
    p.top_p = 1.0f;
    assert_int_equal(eng_sampler_new(&p, V, &s), 0);
    for (int i = 0; i < 50; i++) {
        struct eng_logprobs lp;
        assert_int_equal(eng_sampler_sample(s, lg, &lp), 33);
        assert_true(lp.logprob == 0.0f);
    }
    eng_sampler_free(s);
    // nothing finite at all: still a valid id, and the same one for the same seed
    for (int i = 0; i < V; i++)
        lg[i] = i % 2 ? NAN : -INFINITY;
    eng_sampler_t *s2;
    assert_int_equal(eng_sampler_new(&p, V, &s), 0);
    assert_int_equal(eng_sampler_new(&p, V, &s2), 0);
    for (int i = 0; i < 50; i++) {
        int32_t t = eng_sampler_sample(s, lg, NULL);
        assert_true(t >= 0 && t < V);
        assert_int_equal(t, eng_sampler_sample(s2, lg, NULL));
    }
    eng_sampler_free(s);
    eng_sampler_free(s2);
    p.temperature = 0.0f;
    assert_int_equal(eng_sampler_new(&p, V, &s), 0);
    lg[3] = NAN;
    lg[4] = 2.0f;
    assert_int_equal(eng_sampler_sample(s, lg, NULL), 4);
    eng_sampler_free(s);
}


/* Edges: a one-token vocabulary, top_k above V, and more logprobs asked than tokens. */
static void test_sampler_edges(void **state)
{
    (void)state;
    struct eng_sampler_params p;
    eng_sampler_params_default(&p);
    p.temperature = 0.7f;
    p.top_k = 5;
    p.top_p = 0.5f;
    p.min_p = 0.5f;
    p.repeat_penalty = 1.3f;
    p.n_logprobs = ENG_MAX_LOGPROBS;
    eng_sampler_t *s;
    const float one = -3.0f;
    assert_int_equal(eng_sampler_new(&p, 1, &s), 0);
    eng_sampler_accept(s, 0);
    eng_sampler_accept(s, 5);         // out of range: ignored
    struct eng_logprobs lp;
    assert_int_equal(eng_sampler_sample(s, &one, &lp), 0);
    assert_int_equal(lp.n_top, 1);
    assert_true(fabsf(lp.logprob) < 1e-6f);
    eng_sampler_free(s);
    const float three[3] = {0.5f, 2.0f, 1.0f};
    p.top_k = 1000;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    assert_int_equal(eng_sampler_new(&p, 3, &s), 0);
    bool hit[3] = {false};
    for (int i = 0; i < 300; i++) {
        int32_t t = eng_sampler_sample(s, three, &lp);
        assert_true(t >= 0 && t < 3);
        hit[t] = true;
        assert_int_equal(lp.n_top, 3);
        assert_int_equal(lp.top_token[0], 1);
    }
    assert_true(hit[0] && hit[1] && hit[2]);
    eng_sampler_free(s);
    assert_int_equal(eng_sampler_new(&p, 0, &s), ERR_INVAL);
    p.temperature = NAN;
    assert_int_equal(eng_sampler_new(&p, 3, &s), ERR_INVAL);
}

static void test_stop_strings(void **state)
{
    (void)state;
    const char *strs[] = {"END", "\n\n"};
    struct eng_stop st = {.strs = strs, .n = 2};
    assert_int_equal(eng_stop_find(&st, "abc END x", 9), 4);
    assert_int_equal(eng_stop_find(&st, "abc\n\nEND", 8), 3);
    assert_int_equal(eng_stop_find(&st, "abc", 3), -1);
    assert_int_equal(eng_stop_safe_len(&st, "hello EN", 8), 6);   // "EN" may start END
    assert_int_equal(eng_stop_safe_len(&st, "hello\n", 6), 5);
    assert_int_equal(eng_stop_safe_len(&st, "hello", 5), 5);
}

/* --- the pretrained stories260K: llama.cpp/llama2.c's documented greedy story --- */

static void test_stories260k_greedy(void **state)
{
    (void)state;
    const char *shared = getenv("ORTHOD_SHARED");
    char path[1024];
    snprintf(path, sizeof path, "%s/models/stories260K.gguf", shared ? shared : "../shared");
    eng_backend_t *be;
    struct eng_cpu_params cp = {.n_threads = 2};
    assert_int_equal(eng_cpu_backend_new(&cp, &be), 0);
    eng_model_t *m;
    struct errbuf eb = {{0}};
    struct eng_model_params mp = {.be = be};
    if (eng_model_load(path, &mp, &m, &eb) < 0)
        fail_msg("%s", eb.msg);
    const eng_vocab_t *v = eng_model_vocab(m);
    int32_t toks[64];
    size_t n = 0;
    const char *text = "Once upon a time";
    assert_int_equal(eng_tokenize(v, text, strlen(text), true, false, toks, 64, &n), 0);
    const int32_t want_prompt[] = {1, 403, 407, 261, 378};
    assert_int_equal(n, 5);
    assert_memory_equal(toks, want_prompt, sizeof want_prompt);
    struct eng_ctx_params p;
    eng_ctx_params_default(&p);
    p.n_ctx = 256;
    eng_ctx_t *c;
    assert_int_equal(eng_ctx_new(m, &p, &c, &eb), 0);
    int32_t s;
    eng_ctx_seq_new(c, &s);
    int32_t sids[8] = {s, s, s, s, s, s, s, s};
    struct eng_batch b = {.n = 5, .tokens = toks, .seq_id = sids};
    assert_int_equal(eng_ctx_decode(c, &b), 0);
    // MANIFEST.md: the first 10 greedy ids, and karpathy's documented text
    const int32_t want[10] = {432, 383, 286, 261, 376, 298, 315, 421, 395, 317};
    int32_t got[48];
    for (int i = 0; i < 48; i++) {
        const float *lg = eng_ctx_logits(c, 0);
        int32_t best = 0;
        for (int32_t t = 1; t < eng_model_hparams(m)->n_vocab; t++)
            if (lg[t] > lg[best])
                best = t;
        got[i] = best;
        if (i < 10)
            assert_int_equal(best, want[i]);
        struct eng_batch one = {.n = 1, .tokens = &got[i], .seq_id = &s};
        assert_int_equal(eng_ctx_decode(c, &one), 0);
    }
    char out[1024];
    eng_detokenize(v, got, 48, false, out, sizeof out);
    const char *story = ", there was a little girl named Lily. She loved to play outside in the park.";
    if (strncmp(out, story, strlen(story)) != 0)
        fail_msg("got '%s'", out);
    eng_ctx_free(c);
    eng_model_free(m);
    eng_backend_free(be);
}

/* A CPU backend that stores weights the way device backends do (no weight_prepare: the
 * engine allocates one ENG_BUF_WEIGHTS block and copies each weight into it). */
static eng_backend_t *block_backend(struct eng_backend_ops *ops)
{
    eng_backend_t *be;
    struct eng_cpu_params cp = {.n_threads = 2};
    assert_int_equal(eng_cpu_backend_new(&cp, &be), 0);
    *ops = *be->ops;
    ops->weight_prepare = NULL;
    ops->weight_release = NULL;
    be->ops = ops;
    return be;
}

static int fail_weight_buffer(eng_backend_t *be, size_t size, enum eng_buf_usage use,
                              eng_buffer_t *buf)
{
    (void)be, (void)size, (void)buf;
    return use == ENG_BUF_WEIGHTS ? ERR_DEVICE_NOMEM : ERR_INTERNAL;
}

static int fail_tensor_set(eng_backend_t *be, eng_tensor_t *dst, const void *src, size_t off,
                           size_t n)
{
    (void)be, (void)dst, (void)src, (void)off, (void)n;
    return ERR_GPU;
}

/* Every weight of a model lies in one backend block, at 256-aligned offsets, and the model
 * computes exactly what the in-place (mmap) one does; a failed placement is refused with a
 * message and leaks nothing (ASan). */
static void test_weights_one_block(void **state)
{
    struct fx *f = *state;
    struct eng_backend_ops ops;
    eng_backend_t *be = block_backend(&ops);
    struct eng_model_params mp = {.be = be};
    struct errbuf eb = {{0}};
    eng_model_t *m;
    if (eng_model_from_gguf(fixture_file(), &mp, &m, &eb) < 0)
        fail_msg("load: %s", eb.msg);
    const eng_buffer_t *blk = m->weight_block;
    assert_non_null(blk);
    assert_int_equal(m->n_weights, 3 + 9 * 3);     // tok_embd, output_norm, output, 9 per layer
    size_t used = 0;
    for (size_t i = 0; i < m->n_weights; i++) {
        const eng_tensor_t *w = m->weights[i];
        const size_t off = (size_t)((const char *)w->data - (const char *)blk->base);
        assert_ptr_equal(w->buf, blk);
        assert_true(off % 256 == 0 && off + eng_tensor_nbytes(w) <= blk->size);
        used += eng_tensor_nbytes(w);
    }
    assert_true(blk->size >= used && blk->size < used + 256 * m->n_weights);
    assert_null(f->m->weight_block);                // the CPU backend uses the mmap in place
    eng_ctx_t *a = new_ctx(f, 1, NP, 64, 0, ENG_KV_F32);
    struct fx fb = {.be = be, .m = m, .V = f->V};
    eng_ctx_t *b = new_ctx(&fb, 1, NP, 64, 0, ENG_KV_F32);
    int32_t sa, sb;
    assert_int_equal(eng_ctx_seq_new(a, &sa), 0);
    assert_int_equal(eng_ctx_seq_new(b, &sb), 0);
    float *la = run_chunks(f, a, sa, NP), *lb = run_chunks(&fb, b, sb, NP);
    assert_memory_equal(la, lb, sizeof(float) * (size_t)NP * (size_t)f->V);
    free(la);
    free(lb);
    eng_ctx_free(a);
    eng_ctx_free(b);
    eng_model_free(m);

    ops.buffer_new = fail_weight_buffer;
    assert_int_equal(eng_model_from_gguf(fixture_file(), &mp, &m, &eb), ERR_DEVICE_NOMEM);
    assert_non_null(strstr(eb.msg, "cannot place the weights"));
    ops = *f->be->ops;
    ops.weight_prepare = NULL;
    ops.weight_release = NULL;
    ops.tensor_set = fail_tensor_set;
    assert_int_equal(eng_model_from_gguf(fixture_file(), &mp, &m, &eb), ERR_GPU);
    eng_backend_free(be);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_batching_invisible),
        cmocka_unit_test(test_interleaved_sequences),
        cmocka_unit_test(test_truncate_and_redecode),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_kv_f16_close_to_f32),
        cmocka_unit_test(test_long_context_steps),
        cmocka_unit_test(test_rope_scale_must_be_finite),
        cmocka_unit_test(test_weights_one_block),
    };
    const struct CMUnitTest sampler_tests[] = {
        cmocka_unit_test(test_sampler_greedy_and_seed),
        cmocka_unit_test(test_sampler_filters),
        cmocka_unit_test(test_sampler_nonfinite),
        cmocka_unit_test(test_sampler_edges),
        cmocka_unit_test(test_stop_strings),
        cmocka_unit_test(test_random_shape_values),
    };
    const struct CMUnitTest real_tests[] = {
        cmocka_unit_test(test_stories260k_greedy),
    };
    int fails = cmocka_run_group_tests_name("engine ctx", tests, setup, teardown);
    fails += cmocka_run_group_tests_name("stories260K", real_tests, NULL, NULL);
    fails += cmocka_run_group_tests_name("sampler", sampler_tests, NULL, NULL);
    return fails ? 1 : 0;
}
