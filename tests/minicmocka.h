/* tests/minicmocka.h: the part of cmocka's API that the engine and GPU tests use, for hosts
 * without libcmocka (the GPU host has only a C compiler, CUDA, meson and ninja). meson
 * compiles a test against it (-DTEST_MINICMOCKA, through tests/testutil.h) only when cmocka
 * is not found, so the tests are written once, in cmocka. Semantics follow cmocka: a
 * failed assertion or skip() ends the running test (longjmp); teardown still runs; the
 * group's result is the number of failed tests. Test-only: one jump buffer per program. */
#ifndef ORTHOD_TESTS_MINICMOCKA_H
#define ORTHOD_TESTS_MINICMOCKA_H

#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef void (*CMUnitTestFunction)(void **state);
typedef int (*CMFixtureFunction)(void **state);

struct CMUnitTest {
    const char *name;
    CMUnitTestFunction test_func;
    CMFixtureFunction setup_func;
    CMFixtureFunction teardown_func;
    void *initial_state;
};

#define cmocka_unit_test(f) {#f, f, NULL, NULL, NULL}
#define cmocka_unit_test_setup_teardown(f, setup, teardown) {#f, f, setup, teardown, NULL}
#define cmocka_unit_test_prestate(f, state) {#f, f, NULL, NULL, state}

enum { MC_RUNNING, MC_FAILED, MC_SKIPPED };

struct mc_run_state {
    jmp_buf jb;
    int in_test;
};

/* the one piece of state: where a failing assertion jumps (a test program's own global) */
static struct mc_run_state mc_state;

__attribute__((noreturn, unused)) static void mc_end(int how)
{
    if (!mc_state.in_test) {
        fprintf(stderr, "minicmocka: assertion outside a test\n");
        exit(1);
    }
    longjmp(mc_state.jb, how);
}

__attribute__((format(printf, 3, 4), noreturn, unused))
static void mc_fail(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "[  ERROR   ] ");
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n[   LINE   ] --- %s:%d: error: Failure!\n", file, line);
    mc_end(MC_FAILED);
}

__attribute__((format(printf, 1, 2), unused)) static void print_message(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    fflush(stdout);
}

#define fail() mc_fail(__FILE__, __LINE__, "%s", "fail()")
#define fail_msg(...) mc_fail(__FILE__, __LINE__, __VA_ARGS__)
#define skip() mc_end(MC_SKIPPED)
#define assert_true(c) ((c) ? (void)0 : mc_fail(__FILE__, __LINE__, "%s", #c))
#define assert_false(c) (!(c) ? (void)0 : mc_fail(__FILE__, __LINE__, "!(%s)", #c))
#define assert_non_null(p) assert_true((p) != NULL)
#define assert_null(p) assert_true((p) == NULL)
#define assert_int_equal(a, b)                                                                \
    do {                                                                                      \
        const intmax_t a_ = (intmax_t)(a), b_ = (intmax_t)(b);                                \
        if (a_ != b_)                                                                         \
            mc_fail(__FILE__, __LINE__, "%jd != %jd", a_, b_);                                \
    } while (0)
#define assert_int_not_equal(a, b)                                                            \
    do {                                                                                      \
        const intmax_t a_ = (intmax_t)(a), b_ = (intmax_t)(b);                                \
        if (a_ == b_)                                                                         \
            mc_fail(__FILE__, __LINE__, "%jd == %jd", a_, b_);                                \
    } while (0)
#define assert_string_equal(a, b)                                                             \
    do {                                                                                      \
        const char *a_ = (a), *b_ = (b);                                                      \
        if (strcmp(a_, b_) != 0)                                                              \
            mc_fail(__FILE__, __LINE__, "\"%s\" != \"%s\"", a_, b_);                          \
    } while (0)
#define assert_memory_equal(a, b, n) assert_true(memcmp((a), (b), (n)) == 0)
#define assert_in_range(v, lo, hi) assert_true((v) >= (lo) && (v) <= (hi))

#define cmocka_run_group_tests(g, setup, teardown)                                            \
    mc_run_group(#g, (g), sizeof(g) / sizeof((g)[0]), (setup), (teardown))
#define cmocka_run_group_tests_name(name, g, setup, teardown)                                 \
    mc_run_group((name), (g), sizeof(g) / sizeof((g)[0]), (setup), (teardown))

/* Runs one fixture or test body; returns MC_RUNNING when it returned normally. */
static int mc_call(void (*body)(void **), int (*fixture)(void **), void **state)
{
    volatile int how = MC_RUNNING;
    mc_state.in_test = 1;
    switch (setjmp(mc_state.jb)) {
    case 0:
        if (body)
            body(state);
        else if (fixture && fixture(state) != 0)
            how = MC_FAILED;
        break;
    case MC_FAILED:
        how = MC_FAILED;
        break;
    default:
        how = MC_SKIPPED;
        break;
    }
    mc_state.in_test = 0;
    return how;
}

__attribute__((unused)) static int mc_run_group(const char *name, const struct CMUnitTest *t,
                                                size_t n, CMFixtureFunction setup,
                                                CMFixtureFunction teardown)
{
    void *gstate = NULL;
    int failed = 0, skipped = 0;
    printf("[==========] %s: Running %zu test(s).\n", name, n);
    if (setup && mc_call(NULL, setup, &gstate) != MC_RUNNING) {
        printf("[  FAILED  ] %s: group setup\n", name);
        return (int)n;
    }
    for (size_t i = 0; i < n; i++) {
        void *st = t[i].initial_state ? t[i].initial_state : gstate;
        printf("[ RUN      ] %s\n", t[i].name);
        fflush(stdout);
        int how = MC_RUNNING;
        if (t[i].setup_func)
            how = mc_call(NULL, t[i].setup_func, &st);
        if (how == MC_RUNNING)
            how = mc_call(t[i].test_func, NULL, &st);
        if (t[i].teardown_func && mc_call(NULL, t[i].teardown_func, &st) != MC_RUNNING &&
            how == MC_RUNNING)
            how = MC_FAILED;
        printf("%s %s\n", how == MC_FAILED ? "[  FAILED  ]" : how == MC_SKIPPED ? "[  SKIPPED ]"
                                                                             : "[       OK ]",
               t[i].name);
        failed += how == MC_FAILED;
        skipped += how == MC_SKIPPED;
    }
    if (teardown && mc_call(NULL, teardown, &gstate) != MC_RUNNING)
        failed++;
    printf("[==========] %s: %zu test(s) run.\n[  PASSED  ] %zu test(s).\n", name, n,
           n - (size_t)failed - (size_t)skipped);
    if (skipped)
        printf("[  SKIPPED ] %d test(s).\n", skipped);
    if (failed)
        printf("[  FAILED  ] %d test(s).\n", failed);
    fflush(stdout);
    return failed;
}

#endif
