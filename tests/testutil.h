/* tests/testutil.h: what the C tests share.
 * Owns: the cmocka include (tests/minicmocka.h where libcmocka is absent, as on the GPU
 * host), where the shared models are ($ORTHOD_SHARED, else the folder meson was told), the
 * SKIP convention (a test whose input is missing runs what it can, then exits 77), a byte
 * builder for hand-made GGUF files, and a fake backend that wraps a real one and fails on
 * its Nth call (fault injection for the engine's error paths). Test-only code. */
#ifndef ORTHOD_TESTS_TESTUTIL_H
#define ORTHOD_TESTS_TESTUTIL_H

#include "../engine/engine.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#if defined(TEST_MINICMOCKA) && TEST_MINICMOCKA
#include "minicmocka.h"
#else
#include <setjmp.h>
#include <cmocka.h>
#endif

/* Runs n tests of an array built at run time (cmocka_run_group_tests wants a fixed array). */
#if defined(TEST_MINICMOCKA) && TEST_MINICMOCKA
#define tu_run_group(name, tests, n, setup, teardown) mc_run_group(name, tests, n, setup, teardown)
#else
#define tu_run_group(name, tests, n, setup, teardown)                                          \
    _cmocka_run_group_tests(name, tests, n, setup, teardown)
#endif

/* cmocka assertions with a printf message, and one for int-returning calls (0 or ERR_*) */
#define assert_msg(cond, ...)                                                                 \
    do {                                                                                      \
        if (!(cond))                                                                          \
            fail_msg(__VA_ARGS__);                                                            \
    } while (0)
#define assert_ok(expr)                                                                       \
    do {                                                                                      \
        const int rc_ = (expr);                                                               \
        if (rc_ < 0)                                                                          \
            fail_msg("%s -> %s", #expr, err_name(rc_));                                       \
    } while (0)

/* --- shared inputs and SKIP --------------------------------------------------------------- */

/* $ORTHOD_SHARED when set, else the folder meson was configured with, else ../shared. */
const char *tu_shared_dir(void);
/* out = <shared>/models/<name>; returns out. */
const char *tu_model_path(char *out, size_t cap, const char *name);
/* true when <shared>/models/<name> is readable. */
bool tu_have_model(const char *name);
/* Counts the models among names[n] that are not there, printing one line for each. */
int tu_missing_models(const char *const *names, size_t n);
/* Counts files under the shared folder (e.g. "golden/x.json") that are not there. */
int tu_missing_shared(const char *const *rel, size_t n);
/* 1 (and a line naming it) when a feature the test covers was compiled out, else 0. */
int tu_missing_feature(bool have, const char *what);
/* The exit status of a test program: failed tests (cmocka's count) fail it (1); otherwise
 * missing inputs (models, a feature compiled out) make it SKIP (77), with a line saying so:
 * a test that could not run what it is for must not report OK. */
int tu_exit(int failed, int missing);

/* --- engine set-up ------------------------------------------------------------------------- */

/* eng_ctx_params_default with the sizes a test names; n_out_max = n_batch. */
struct eng_ctx_params tu_ctx_params(int32_t n_ctx, int32_t n_seq_max, int32_t n_batch,
                                    enum eng_kv_format kv);

/* --- GGUF bytes ----------------------------------------------------------------------------- */

/* A growing byte buffer for writing GGUF files by hand (little-endian host). Aborts when
 * out of memory. */
struct buf {
    uint8_t *p;
    size_t n, cap;
};
void put(struct buf *b, const void *p, size_t n);
void put_u8(struct buf *b, uint8_t v);
void put_u16(struct buf *b, uint16_t v);
void put_u32(struct buf *b, uint32_t v);
void put_u64(struct buf *b, uint64_t v);
void put_f32(struct buf *b, float v);
void put_f64(struct buf *b, double v);
void put_str(struct buf *b, const char *s);                 /* u64 length + bytes */
void put_header(struct buf *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv);
void put_key(struct buf *b, const char *key, uint32_t type);   /* key + value type */
void put_tinfo(struct buf *b, const char *name, uint32_t n_dims, const uint64_t *ne,
               uint32_t type, uint64_t offset);
void put_pad(struct buf *b, size_t align);                  /* zeros up to a multiple */
void buf_free(struct buf *b);

/* --- a backend that fails on demand ------------------------------------------------------------- */

/* Wraps `inner` (owned: freed with the wrapper) and forwards every call of the backend
 * table to it. Each call that can fail (buffers, copies, weight preparation, step begin
 * and end, every op) is counted; the fail_at-th one (1-based) returns `err` instead of
 * running, and so does every later one when `sticky`. fail_at 0: never. */
int tu_faulty_new(eng_backend_t *inner, eng_backend_t **out);
void tu_faulty_arm(eng_backend_t *be, long fail_at, int err, bool sticky);
long tu_faulty_calls(const eng_backend_t *be);      /* fallible calls so far */
long tu_faulty_injected(const eng_backend_t *be);   /* failures returned so far */
void tu_faulty_reset(eng_backend_t *be);            /* counters to 0, disarmed */

#endif
