/* tests/test_gpu_model.c: whole-model logits parity, CUDA backend vs the scalar CPU backend,
 * through the public engine API (engine/engine.h) on the same model:
 *   --model PATH          a model file (stories260K.gguf: also its documented greedy ids)
 *   --random SHAPE:DTYPE  a random model (eng_random_model_build), e.g. stories110M:f16
 * Each model: two sequences prefilled together in one step with logits for every prompt
 * token, then greedy decode steps of both sequences batched (the tokens come from the CPU's
 * logits, so both backends see the same inputs), comparing every logits row: relative RMS
 * and max error, and the argmax wherever the CPU's top-2 margin is clear. Built as
 * gpu_model (suite gpu, exit 77 without a GPU) and gpu_model_emu (the CPU emulator). One
 * cmocka test per model (and one for stories260K's greedy ids); a --model file that is not
 * there makes the run SKIP (77) after the others ran. */
#include "../engine/engine.h"
#include "../gpu/gpu.h"
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct cmp {
    double rms_rel_worst, max_rel_worst;
    int argmax_bad, rows;
};

static int argmax(const float *x, int n, float *margin)
{
    int best = 0, second = -1;
    for (int i = 1; i < n; i++) {
        if (x[i] > x[best]) {
            second = best;
            best = i;
        } else if (second < 0 || x[i] > x[second]) {
            second = i;
        }
    }
    if (margin)
        *margin = second < 0 ? INFINITY : x[best] - x[second];
    return best;
}

static void compare_row(const float *ref, const float *got, int V, double tol, struct cmp *c)
{
    double se = 0, sr = 0, mx = 0, mr = 0;
    for (int i = 0; i < V; i++) {
        double d = (double)got[i] - ref[i];
        if (isnan(d))
            d = INFINITY;
        se += d * d;
        sr += (double)ref[i] * ref[i];
        mx = fabs(d) > mx ? fabs(d) : mx;
        mr = fabs(ref[i]) > mr ? fabs(ref[i]) : mr;
    }
    double rms_rel = sqrt(se / (sr > 0 ? sr : 1)), max_rel = mx / (mr > 0 ? mr : 1);
    if (rms_rel > c->rms_rel_worst || isnan(rms_rel))
        c->rms_rel_worst = rms_rel;
    if (max_rel > c->max_rel_worst || isnan(max_rel))
        c->max_rel_worst = max_rel;
    float margin;
    int a = argmax(ref, V, &margin), b = argmax(got, V, NULL);
    if (a != b && margin > 4 * tol * mr)
        c->argmax_bad++;
    c->rows++;
}

struct side {
    eng_model_t *m;
    eng_ctx_t *c;
};

static int load(const char *path, const char *shape, enum eng_dtype dt, eng_backend_t *be,
                struct side *s, struct errbuf *eb)
{
    struct eng_model_params mp = {.be = be};
    int rc;
    if (path) {
        rc = eng_model_load(path, &mp, &s->m, eb);
    } else {
        struct eng_random_model rm;
        memset(&rm, 0, sizeof rm);
        snprintf(rm.shape, sizeof rm.shape, "%s", shape);
        rm.dtype = dt;
        rm.std = 0.02f;
        rm.seed = 7;
        rm.n_threads = 4;
        rm.norm_std = 0.1f;
        eng_gguf_t *g = NULL;
        if ((rc = eng_random_model_build(&rm, &g, eb)) < 0)
            return rc;
        rc = eng_model_from_gguf(g, &mp, &s->m, eb);
    }
    if (rc < 0)
        return rc;
    struct eng_ctx_params cp = tu_ctx_params(256, 2, 64, ENG_KV_F16);
    return eng_ctx_new(s->m, &cp, &s->c, eb);
}

static void unload(struct side *s)
{
    eng_ctx_free(s->c);
    eng_model_free(s->m);
    s->c = NULL;
    s->m = NULL;
}

/* Runs the same batches on both sides and compares their logits. */
static int decode_both(struct side *r, struct side *d, const struct eng_batch *b, int V, double tol,
                       struct cmp *c, int32_t *next)
{
    int rc1 = eng_ctx_decode(r->c, b), rc2 = eng_ctx_decode(d->c, b);
    assert_msg(rc1 >= 0 && rc2 >= 0, "decode of %d tokens: cpu %s, cuda %s", b->n, err_name(rc1),
               err_name(rc2));
    int n = eng_ctx_n_logits(r->c);
    assert_msg(eng_ctx_n_logits(d->c) == n, "logits rows: cpu %d, cuda %d", n,
               eng_ctx_n_logits(d->c));
    for (int i = 0; i < n; i++) {
        const float *a = eng_ctx_logits(r->c, i), *g = eng_ctx_logits(d->c, i);
        compare_row(a, g, V, tol, c);
        if (next)
            next[i] = argmax(a, V, NULL);
    }
    return n;
}

/* One model of the command line. */
struct model_case {
    eng_backend_t *ref, *dut;
    const char *path;         /* a file, or NULL: a random model */
    char shape[128];
    enum eng_dtype dt;
    int steps;
    double tol;
    char label[200];
};

static void test_model(void **state)
{
    const struct model_case *mc = *state;
    struct errbuf eb = {{0}};
    struct side r = {0}, d = {0};
    assert_msg(load(mc->path, mc->shape, mc->dt, mc->ref, &r, &eb) == 0 &&
                   load(mc->path, mc->shape, mc->dt, mc->dut, &d, &eb) == 0,
               "%s: cannot load: %s", mc->label, eb.msg);
    const int V = eng_model_hparams(r.m)->n_vocab;
    const double tol = mc->tol;
    struct cmp c = {0};
    int32_t s0, s1;
    assert_ok(eng_ctx_seq_new(r.c, &s0));
    assert_ok(eng_ctx_seq_new(r.c, &s1));
    assert_ok(eng_ctx_seq_new(d.c, &s0));
    assert_ok(eng_ctx_seq_new(d.c, &s1));
    // prefill: 5 + 9 tokens of two sequences in one step, logits for every token
    int32_t tok[14], sid[14];
    bool want[14];
    const int32_t p0[5] = {1, 403, 407, 261, 378};
    for (int i = 0; i < 14; i++) {
        tok[i] = i < 5 ? p0[i] % V : (int32_t)((i * 7919 + 13) % V);
        sid[i] = i < 5 ? s0 : s1;
        want[i] = true;
    }
    struct eng_batch b = {.n = 14, .tokens = tok, .seq_id = sid, .want_logits = want};
    int32_t next[14];
    assert_int_equal(decode_both(&r, &d, &b, V, tol, &c, next), 14);
    int32_t cur[2] = {next[4], next[13]}, ids[2] = {s0, s1};
    for (int st = 0; st < mc->steps; st++) {
        struct eng_batch b2 = {.n = 2, .tokens = cur, .seq_id = ids, .want_logits = NULL};
        int32_t nx[2];
        assert_int_equal(decode_both(&r, &d, &b2, V, tol, &c, nx), 2);
        cur[0] = nx[0];
        cur[1] = nx[1];
    }
    print_message("%-40s rows=%d rms_rel=%.2e max_rel=%.2e argmax_mismatch=%d (tol %.1e)\n",
                  mc->label, c.rows, c.rms_rel_worst, c.max_rel_worst, c.argmax_bad, tol);
    unload(&r);
    unload(&d);
    assert_msg(c.rms_rel_worst <= tol && c.max_rel_worst <= 5 * tol && !c.argmax_bad,
               "%s: logits differ beyond tolerance", mc->label);
}

/* stories260K's documented greedy continuation of BOS + "Once upon a time" on the device. */
static void test_golden_260k(void **state)
{
    const struct model_case *mc = *state;
    eng_backend_t *dut = mc->dut;
    static const int32_t want[10] = {432, 383, 286, 261, 376, 298, 315, 421, 395, 317};
    struct errbuf eb = {{0}};
    struct side d = {0};
    assert_msg(load(mc->path, NULL, ENG_DTYPE_F32, dut, &d, &eb) == 0, "%s: cannot load: %s",
               mc->path, eb.msg);
    int32_t s, tok[5] = {1, 403, 407, 261, 378}, got[10];
    int rc = eng_ctx_seq_new(d.c, &s);
    struct eng_batch b = {.n = 5, .tokens = tok, .seq_id = (int32_t[5]){s, s, s, s, s}};
    for (int i = 0; i < 10 && rc == 0; i++) {
        if ((rc = eng_ctx_decode(d.c, &b)) < 0)
            break;
        got[i] = argmax(eng_ctx_logits(d.c, 0), eng_model_hparams(d.m)->n_vocab, NULL);
        tok[0] = got[i];
        b.n = 1;
    }
    unload(&d);
    assert_msg(rc == 0, "greedy decode on %s: %s", eng_backend_name(dut), err_name(rc));
    assert_msg(memcmp(got, want, sizeof want) == 0,
               "stories260K greedy ids on %s differ from the documented ones (first: %d vs %d)",
               eng_backend_name(dut), got[0], want[0]);
    print_message("stories260K greedy ids on %s match the documented 10\n", eng_backend_name(dut));
}

#define MAX_CASES 32

int main(int argc, char **argv)
{
#ifndef ORTHOD_GPU_EMU
    if (gpu_device_count() == 0) {
        printf("SKIP: no CUDA device visible\n");
        return 77;
    }
#endif
    setenv("ORTHOD_CPU_LEVEL", "scalar", 1);
    struct eng_cpu_params cp = {.n_threads = 0};
    eng_backend_t *ref = NULL, *dut = NULL;
    struct errbuf eb = {{0}};
    struct log_sink sink = {.fn = NULL, .ctx = NULL, .min = LOG_WARN};
    if (eng_cpu_backend_new(&cp, &ref) < 0 || gpu_backend_cuda_new(0, &sink, &dut, &eb) < 0) {
        fprintf(stderr, "cannot create the backends: %s\n", eb.msg);
        eng_backend_free(ref);
        return 1;
    }
    printf("reference: %s\nunder test: %s\n", eng_backend_describe(ref), eng_backend_describe(dut));
    int steps = 12, missing = 0, n = 0;
    for (int i = 1; i + 1 < argc; i++)      // --steps applies wherever it is given
        if (strcmp(argv[i], "--steps") == 0)
            steps = atoi(argv[i + 1]);
    if (steps < 0 || steps > 1000)
        steps = 12;
    struct model_case cases[MAX_CASES];
    struct CMUnitTest tests[MAX_CASES];
    for (int i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v || n + 2 > MAX_CASES ||
            (strcmp(argv[i], "--steps") && strcmp(argv[i], "--model") && strcmp(argv[i], "--random"))) {
            fprintf(stderr, "usage: %s [--steps N] (--model PATH | --random SHAPE:DTYPE)... "
                            "(at most %d)\n", argv[0], MAX_CASES / 2);
            eng_backend_free(dut);
            eng_backend_free(ref);
            return 2;
        }
        i++;
        if (strcmp(argv[i - 1], "--steps") == 0)
            continue;
        struct model_case *mc = &cases[n];
        *mc = (struct model_case){.ref = ref, .dut = dut, .steps = steps, .dt = ENG_DTYPE_F32,
                                  .tol = 1e-3};
        if (strcmp(argv[i - 1], "--model") == 0) {
            if (access(v, R_OK) != 0) {
                printf("missing input: %s (set ORTHOD_SHARED, gpu/README.md)\n", v);
                missing++;
                continue;
            }
            mc->path = v;
            snprintf(mc->label, sizeof mc->label, "%s", v);
            tests[n++] = (struct CMUnitTest)cmocka_unit_test_prestate(test_model, mc);
            if (strstr(v, "stories260K")) {
                cases[n] = *mc;
                tests[n] = (struct CMUnitTest)cmocka_unit_test_prestate(test_golden_260k, &cases[n]);
                n++;
            }
            continue;
        }
        snprintf(mc->shape, sizeof mc->shape, "%s", v);
        char *colon = strrchr(mc->shape, ':');
        mc->dt = ENG_DTYPE_F16;
        if (colon) {
            *colon = '\0';
            if (eng_dtype_parse(colon + 1, &mc->dt) < 0) {
                fprintf(stderr, "--random %s: unknown dtype\n", v);
                eng_backend_free(dut);
                eng_backend_free(ref);
                return 2;
            }
        }
        // F32 weights are exact up to summation order; 16-bit paths round x to F16/BF16;
        // for Q8_0/Q4_0 the CPU oracle itself quantizes activations to Q8_0 (~0.5% per
        // matmul) while the GPU keeps them in F16/F32
        mc->tol = mc->dt == ENG_DTYPE_F32    ? 1e-3
                  : mc->dt == ENG_DTYPE_F16  ? 5e-3
                  : mc->dt == ENG_DTYPE_BF16 ? 2e-2 : 5e-2;
        char label[sizeof mc->label];
        snprintf(label, sizeof label, "random %s %s", mc->shape, eng_dtype_name(mc->dt));
        memcpy(mc->label, label, sizeof label);
        tests[n++] = (struct CMUnitTest)cmocka_unit_test_prestate(test_model, mc);
    }
    int failed = 0;
    if (n)
        failed = tu_run_group("models", tests, (size_t)n, NULL, NULL);
    eng_backend_free(dut);
    eng_backend_free(ref);
    if (!n && !missing) {
        printf("SKIP: no model to test (give --model PATH or --random SHAPE:DTYPE)\n");
        return 77;
    }
    return tu_exit(failed, missing);
}
