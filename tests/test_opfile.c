/* tests/test_opfile.c: server/opfile.c: bounded reads (regular files only, never waiting
 * on a FIFO, size caps, modes) and jobs with a deadline: a job stuck in a read is abandoned
 * at its deadline without blocking anything, and frees its result when it finally returns;
 * abandoning a job lets the loop close at once. The stuck read is a read on a pipe nobody
 * writes to until the test says so. */
#include "opfile.h"

#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void test_read(void **state)
{
    (void)state;
    char path[] = "/tmp/orthod_test_opfile_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "secret\n", 7), 7);
    close(fd);
    chmod(path, 0644);
    char *buf = NULL;
    size_t len = 0;
    unsigned mode = 0;
    struct errbuf eb = {{0}};
    assert_int_equal(srv_opfile_read(path, 100, &buf, &len, &mode, &eb), 0);
    assert_int_equal(len, 7);
    assert_string_equal(buf, "secret\n");
    assert_int_equal(mode, 0644);
    assert_non_null(srv_opfile_mode_warning(mode));
    assert_non_null(strstr(srv_opfile_mode_warning(0660), "write"));
    assert_null(srv_opfile_mode_warning(0600));
    assert_null(srv_opfile_mode_warning(0400));
    srv_opfile_free(buf, len);
    assert_int_equal(srv_opfile_read(path, 6, &buf, &len, NULL, &eb), ERR_TOOLARGE);
    assert_int_equal(srv_opfile_read(path, 7, &buf, &len, NULL, &eb), 0);
    srv_opfile_free(buf, len);
    unlink(path);
    // a FIFO with no writer: refused at once, not waited on
    assert_int_equal(mkfifo(path, 0600), 0);
    double t0 = now_s();
    assert_int_equal(srv_opfile_read(path, 100, &buf, &len, NULL, &eb), ERR_IO);
    assert_true(now_s() - t0 < 5.0);
    assert_non_null(strstr(eb.msg, "FIFO"));
    unlink(path);
    assert_int_equal(srv_opfile_read("/dev/null", 100, &buf, &len, NULL, &eb), ERR_IO);
    assert_non_null(strstr(eb.msg, "a device"));
}

/* A job whose fn blocks reading a pipe until the test writes to it. */
struct blocker {
    int rd;
    int wr;
    atomic_int *freed;
    int got;
};

static void block_fn(void *arg)
{
    struct blocker *b = arg;
    char c;
    b->got = (int)read(b->rd, &c, 1);
}

static void block_free(void *arg)
{
    struct blocker *b = arg;
    atomic_store(b->freed, 1);
    close(b->rd);
    free(b);
}

static struct blocker *blocker_new(atomic_int *freed, int *wr)
{
    struct blocker *b = calloc(1, sizeof *b);
    assert_non_null(b);
    int p[2];
    assert_int_equal(pipe(p), 0);
    b->rd = p[0];
    *wr = p[1];
    b->freed = freed;
    return b;
}

static void wait_flag(atomic_int *f)
{
    double end = now_s() + 30;
    while (!atomic_load(f) && now_s() < end) {
        struct timespec ts = {0, 5000000};
        nanosleep(&ts, NULL);
    }
    assert_int_equal(atomic_load(f), 1);
}

static void test_run_deadline(void **state)
{
    (void)state;
    atomic_int freed = 0;
    int wr;
    struct blocker *b = blocker_new(&freed, &wr);
    struct srv_opfile_work w = {block_fn, block_free, b};
    double t0 = now_s();
    assert_int_equal(srv_opfile_run(&w, 0.2), ERR_TIMEOUT);
    assert_true(now_s() - t0 < 10);
    assert_int_equal(atomic_load(&freed), 0);    // b is the stuck thread's now
    assert_int_equal(write(wr, "x", 1), 1);      // unstick it: it frees b itself
    wait_flag(&freed);
    close(wr);
    // a job that finishes in time hands its arg back
    atomic_int freed2 = 0;
    b = blocker_new(&freed2, &wr);
    assert_int_equal(write(wr, "x", 1), 1);
    w.arg = b;
    assert_int_equal(srv_opfile_run(&w, 30), 0);
    assert_int_equal(b->got, 1);
    assert_int_equal(atomic_load(&freed2), 0);
    block_free(b);
    close(wr);
}

struct outcome {
    int calls;
    bool timed_out;
    void *arg;
};

static void on_done(void *ctx, void *arg, bool timed_out)
{
    struct outcome *o = ctx;
    o->calls++;
    o->timed_out = timed_out;
    o->arg = arg;
}

static void test_job_on_loop(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    // stuck: done(timed_out) at the deadline; the loop then has nothing left and returns
    atomic_int freed = 0;
    int wr;
    struct blocker *b = blocker_new(&freed, &wr);
    struct srv_opfile_work w = {block_fn, block_free, b};
    struct outcome o = {0};
    srv_opfile_job_t *j = NULL;
    assert_int_equal(srv_opfile_job_start(&loop, &w, 0.2, on_done, &o, &j), 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(o.calls, 1);
    assert_true(o.timed_out);
    assert_null(o.arg);
    assert_int_equal(write(wr, "x", 1), 1);
    wait_flag(&freed);
    close(wr);
    // in time: done(arg)
    atomic_int freed2 = 0;
    b = blocker_new(&freed2, &wr);
    assert_int_equal(write(wr, "x", 1), 1);
    w.arg = b;
    o = (struct outcome){0};
    assert_int_equal(srv_opfile_job_start(&loop, &w, 30, on_done, &o, &j), 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(o.calls, 1);
    assert_false(o.timed_out);
    assert_ptr_equal(o.arg, b);
    block_free(b);
    close(wr);
    // abandoned (the daemon stops): no done, the loop closes at once, the thread frees
    atomic_int freed3 = 0;
    b = blocker_new(&freed3, &wr);
    w.arg = b;
    o = (struct outcome){0};
    assert_int_equal(srv_opfile_job_start(&loop, &w, 30, on_done, &o, &j), 0);
    srv_opfile_job_abandon(j);
    double t0 = now_s();
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_true(now_s() - t0 < 10);
    assert_int_equal(o.calls, 0);
    assert_int_equal(uv_loop_close(&loop), 0);
    assert_int_equal(write(wr, "x", 1), 1);
    wait_flag(&freed3);
    close(wr);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_read),
        cmocka_unit_test(test_run_deadline),
        cmocka_unit_test(test_job_on_loop),
    };
    return cmocka_run_group_tests_name("opfile", tests, NULL, NULL);
}
