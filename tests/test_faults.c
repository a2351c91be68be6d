/* tests/test_faults.c: the engine's error paths under injected backend failures
 * (tests/testutil.h: a backend that wraps the CPU one and fails its Nth call). For every
 * fallible backend call N of each phase, one run in which call N fails:
 *   load   the model load returns an error with a message, frees what it made (ASan), and
 *          the same backend then loads the model and computes the clean logits;
 *   ctx    the same for creating a context (KV cache and scratch);
 *   decode a step fails (an op, a copy, step begin/end): eng_ctx_decode returns the error,
 *          nothing is appended (the sequence lengths and free blocks are unchanged, no
 *          logits), and the context stays usable: retrying the step and running the rest
 *          gives logits bit-identical to a run without faults; with two sequences in the
 *          step, both are rolled back;
 *   sticky every call from N on fails (a device that is gone): every later step fails
 *          cleanly, and freeing everything still works.
 * Needs no files: a random model (dim 64, 2 layers, GQA) in F32 and Q8_0. */
#include "../engine/engine.h"
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PROMPT 5
#define STEPS 4            /* the prompt, then STEPS - 1 single tokens */

struct fx {
    eng_backend_t *be;     /* the faulty wrapper around a CPU backend */
    enum eng_dtype dtype;
    int32_t V;
};

static int setup_dtype(void **state, enum eng_dtype dt)
{
    struct fx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    struct eng_cpu_params cp = {.n_threads = 1};
    eng_backend_t *cpu;
    assert_ok(eng_cpu_backend_new(&cp, &cpu));
    assert_ok(tu_faulty_new(cpu, &f->be));
    f->dtype = dt;
    *state = f;
    return 0;
}
static int setup_f32(void **state) { return setup_dtype(state, ENG_DTYPE_F32); }
static int setup_q8(void **state) { return setup_dtype(state, ENG_DTYPE_Q8_0); }

static int teardown(void **state)
{
    struct fx *f = *state;
    eng_backend_free(f->be);
    free(f);
    return 0;
}

/* The model, freshly built (eng_model_from_gguf owns the file either way). */
static int load(struct fx *f, eng_model_t **m, struct errbuf *eb)
{
    struct eng_random_model rm = {.dtype = f->dtype, .std = 0.05f, .norm_std = 0.1f, .seed = 11,
                                  .n_threads = 1};
    snprintf(rm.shape, sizeof rm.shape, "dim=64,layers=2,heads=4,kv_heads=2,ffn=96,vocab=300");
    eng_gguf_t *g;
    assert_ok(eng_random_model_build(&rm, &g, eb));
    int rc = eng_model_from_gguf(g, &(struct eng_model_params){.be = f->be}, m, eb);
    if (rc == 0)
        f->V = eng_model_hparams(*m)->n_vocab;
    return rc;
}

static int new_ctx(eng_model_t *m, eng_ctx_t **c, struct errbuf *eb)
{
    struct eng_ctx_params p = tu_ctx_params(64, 2, 16, ENG_KV_F16);
    p.kv_block_size = 4;      /* the prompt spans two blocks */
    return eng_ctx_new(m, &p, c, eb);
}

/* The steps of the scenario: step 0 is the prompt of sequence a (and, with two sequences,
 * of b), then single tokens. */
static void step_batch(int k, int32_t sa, int32_t sb, bool two, int32_t *tok, int32_t *sid,
                       int32_t *n)
{
    *n = 0;
    const int len = k == 0 ? PROMPT : 1;
    for (int i = 0; i < len; i++) {
        tok[*n] = 1 + (k * 37 + i * 11) % 290;
        sid[(*n)++] = sa;
        if (two) {
            tok[*n] = 2 + (k * 53 + i * 7) % 290;
            sid[(*n)++] = sb;
        }
    }
}

struct run {
    float *logits[STEPS];   /* each step's logits (n_logits * V floats) */
    int32_t n_logits[STEPS];
    long calls[STEPS + 1];  /* backend calls before step k; [STEPS]: after the last */
};

static void run_free(struct run *r)
{
    for (int k = 0; k < STEPS; k++)
        free(r->logits[k]);
}

static void copy_logits(eng_ctx_t *c, int32_t V, float **dst, int32_t *n)
{
    *n = eng_ctx_n_logits(c);
    *dst = malloc(sizeof(float) * (size_t)*n * (size_t)V);
    assert_non_null(*dst);
    for (int32_t i = 0; i < *n; i++)
        memcpy(*dst + (size_t)i * (size_t)V, eng_ctx_logits(c, i), sizeof(float) * (size_t)V);
}

static void expect_logits(eng_ctx_t *c, int32_t V, const struct run *ref, int k, const char *what)
{
    assert_int_equal(eng_ctx_n_logits(c), ref->n_logits[k]);
    for (int32_t i = 0; i < ref->n_logits[k]; i++)
        assert_msg(memcmp(eng_ctx_logits(c, i), ref->logits[k] + (size_t)i * (size_t)V,
                          sizeof(float) * (size_t)V) == 0,
                   "%s: step %d, logits row %d differ from the run without faults", what, k, i);
}

/* A context with sequence a (and b when two), the call counters at 0. */
static eng_ctx_t *open_seqs(struct fx *f, eng_model_t *m, bool two, int32_t *sa, int32_t *sb)
{
    struct errbuf eb = {{0}};
    eng_ctx_t *c;
    assert_ok(new_ctx(m, &c, &eb));
    *sb = -1;
    assert_ok(eng_ctx_seq_new(c, sa));
    if (two)
        assert_ok(eng_ctx_seq_new(c, sb));
    tu_faulty_reset(f->be);
    return c;
}

/* A clean run of the scenario, counting backend calls per step. */
static void clean_run(struct fx *f, eng_model_t *m, bool two, struct run *r)
{
    int32_t sa, sb;
    eng_ctx_t *c = open_seqs(f, m, two, &sa, &sb);
    for (int k = 0; k < STEPS; k++) {
        int32_t tok[2 * PROMPT], sid[2 * PROMPT], n;
        step_batch(k, sa, sb, two, tok, sid, &n);
        r->calls[k] = tu_faulty_calls(f->be);
        assert_ok(eng_ctx_decode(c, &(struct eng_batch){.n = n, .tokens = tok, .seq_id = sid}));
        copy_logits(c, f->V, &r->logits[k], &r->n_logits[k]);
    }
    r->calls[STEPS] = tu_faulty_calls(f->be);
    eng_ctx_free(c);
}

/* --- load and context -------------------------------------------------------------------- */

static void test_load_faults(void **state)
{
    struct fx *f = *state;
    struct errbuf eb = {{0}};
    eng_model_t *m;
    tu_faulty_reset(f->be);
    assert_ok(load(f, &m, &eb));
    const long n_load = tu_faulty_calls(f->be);
    assert_msg(n_load > 0, "the load made no backend call: the wrapper is not in the path");
    struct run ref = {0};
    clean_run(f, m, false, &ref);
    eng_model_free(m);

    for (long n = 1; n <= n_load; n++) {
        const int err = n % 2 ? ERR_DEVICE_NOMEM : ERR_GPU;
        tu_faulty_reset(f->be);
        tu_faulty_arm(f->be, n, err, false);
        eb.msg[0] = '\0';
        m = NULL;
        int rc = load(f, &m, &eb);
        assert_msg(tu_faulty_injected(f->be) == 1, "call %ld of %ld was not reached", n, n_load);
        assert_msg(rc < 0, "load succeeded although backend call %ld of %ld failed", n, n_load);
        assert_null(m);
        assert_msg(eb.msg[0] != '\0', "call %ld: the load failed (%s) without a message", n,
                   err_name(rc));
    }
    // the backend is still good: a load and a run give the clean logits
    tu_faulty_reset(f->be);
    assert_ok(load(f, &m, &eb));
    struct run again = {0};
    clean_run(f, m, false, &again);
    for (int k = 0; k < STEPS; k++)
        assert_memory_equal(again.logits[k], ref.logits[k],
                            sizeof(float) * (size_t)ref.n_logits[k] * (size_t)f->V);
    run_free(&again);
    run_free(&ref);
    eng_model_free(m);
}

static void test_ctx_faults(void **state)
{
    struct fx *f = *state;
    struct errbuf eb = {{0}};
    eng_model_t *m;
    assert_ok(load(f, &m, &eb));
    eng_ctx_t *c;
    tu_faulty_reset(f->be);
    assert_ok(new_ctx(m, &c, &eb));
    const long n_ctx = tu_faulty_calls(f->be);
    eng_ctx_free(c);
    assert_msg(n_ctx > 0, "creating a context made no backend call");
    for (long n = 1; n <= n_ctx; n++) {
        tu_faulty_reset(f->be);
        tu_faulty_arm(f->be, n, ERR_DEVICE_NOMEM, false);
        eb.msg[0] = '\0';
        c = NULL;
        int rc = new_ctx(m, &c, &eb);
        assert_msg(rc < 0 && !c, "context created although backend call %ld of %ld failed", n,
                   n_ctx);
    }
    tu_faulty_reset(f->be);
    struct run ref = {0};
    clean_run(f, m, false, &ref);   /* contexts still work */
    run_free(&ref);
    eng_model_free(m);
}

/* --- steps ----------------------------------------------------------------------------------- */

static void decode_faults(struct fx *f, bool two)
{
    struct errbuf eb = {{0}};
    eng_model_t *m;
    assert_ok(load(f, &m, &eb));
    struct run ref = {0};
    clean_run(f, m, two, &ref);
    int tried = 0;
    for (int k = 0; k < STEPS; k++) {
        const long per_step = ref.calls[k + 1] - ref.calls[k];
        assert_msg(per_step > 0, "step %d made no backend call", k);
        for (long n = 1; n <= per_step; n++) {
            int32_t sa, sb;
            eng_ctx_t *c = open_seqs(f, m, two, &sa, &sb);
            int32_t tok[2 * PROMPT], sid[2 * PROMPT], nt;
            for (int j = 0; j < k; j++) {
                step_batch(j, sa, sb, two, tok, sid, &nt);
                assert_ok(eng_ctx_decode(c, &(struct eng_batch){.n = nt, .tokens = tok, .seq_id = sid}));
            }
            const int32_t len_a = eng_ctx_seq_len(c, sa), len_b = two ? eng_ctx_seq_len(c, sb) : 0;
            const int32_t free_blocks = eng_ctx_free_blocks(c);
            step_batch(k, sa, sb, two, tok, sid, &nt);
            const struct eng_batch b = {.n = nt, .tokens = tok, .seq_id = sid};
            tu_faulty_arm(f->be, tu_faulty_calls(f->be) + n, n % 2 ? ERR_GPU : ERR_DEVICE_NOMEM,
                          false);
            int rc = eng_ctx_decode(c, &b);
            assert_msg(tu_faulty_injected(f->be) == 1, "step %d: call %ld not reached", k, n);
            assert_msg(rc < 0, "step %d succeeded although its backend call %ld failed", k, n);
            assert_int_equal(eng_ctx_seq_len(c, sa), len_a);
            if (two)
                assert_int_equal(eng_ctx_seq_len(c, sb), len_b);
            assert_msg(eng_ctx_free_blocks(c) == free_blocks,
                       "step %d call %ld: %d KV blocks free after the failed step, %d before", k, n,
                       eng_ctx_free_blocks(c), free_blocks);
            assert_int_equal(eng_ctx_n_logits(c), 0);
            assert_null(eng_ctx_logits(c, 0));
            // usable: the retry and the rest give the logits of the run without faults
            tu_faulty_arm(f->be, 0, 0, false);
            assert_ok(eng_ctx_decode(c, &b));
            expect_logits(c, f->V, &ref, k, "retry");
            for (int j = k + 1; j < STEPS; j++) {
                step_batch(j, sa, sb, two, tok, sid, &nt);
                assert_ok(eng_ctx_decode(c, &(struct eng_batch){.n = nt, .tokens = tok, .seq_id = sid}));
                expect_logits(c, f->V, &ref, j, "after a retry");
            }
            eng_ctx_free(c);
            tried++;
        }
    }
    print_message("%d injected step failures, each followed by a bit-identical retry\n", tried);
    run_free(&ref);
    eng_model_free(m);
}

static void test_decode_faults(void **state) { decode_faults(*state, false); }
static void test_decode_faults_two_seqs(void **state) { decode_faults(*state, true); }

/* The device is gone from call N on: every step fails cleanly, nothing grows, and freeing
 * works. */
static void test_sticky_faults(void **state)
{
    struct fx *f = *state;
    struct errbuf eb = {{0}};
    eng_model_t *m;
    assert_ok(load(f, &m, &eb));
    struct run ref = {0};
    clean_run(f, m, false, &ref);
    const long per_step = ref.calls[2] - ref.calls[1];
    for (long n = 1; n <= per_step; n += 3) {
        int32_t sa, sb;
        eng_ctx_t *c = open_seqs(f, m, false, &sa, &sb);
        int32_t tok[PROMPT], sid[PROMPT], nt;
        step_batch(0, sa, sb, false, tok, sid, &nt);
        assert_ok(eng_ctx_decode(c, &(struct eng_batch){.n = nt, .tokens = tok, .seq_id = sid}));
        tu_faulty_arm(f->be, tu_faulty_calls(f->be) + n, ERR_GPU, true);
        for (int k = 1; k < STEPS; k++) {
            step_batch(k, sa, sb, false, tok, sid, &nt);
            int rc = eng_ctx_decode(c, &(struct eng_batch){.n = nt, .tokens = tok, .seq_id = sid});
            assert_msg(rc == ERR_GPU, "step %d with a dead device: %s", k, err_name(rc));
            assert_int_equal(eng_ctx_seq_len(c, sa), PROMPT);
        }
        eng_ctx_free(c);   /* still armed: freeing makes no fallible call */
        tu_faulty_reset(f->be);
    }
    run_free(&ref);
    tu_faulty_reset(f->be);
    eng_model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_load_faults),
        cmocka_unit_test(test_ctx_faults),
        cmocka_unit_test(test_decode_faults),
        cmocka_unit_test(test_decode_faults_two_seqs),
        cmocka_unit_test(test_sticky_faults),
    };
    int failed = cmocka_run_group_tests_name("f32", tests, setup_f32, teardown);
    failed += cmocka_run_group_tests_name("q8_0", tests, setup_q8, teardown);
    return tu_exit(failed, 0);
}
