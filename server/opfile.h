/* server/opfile.h: reading the operator's small files (API keys, TLS certificate and key)
 * so that no file can wedge the daemon. A read opens without blocking, accepts regular
 * files only (a FIFO, device or directory is refused at once), caps the size, and reports
 * permissions that let other users read or write a secret. A job runs such reads on a
 * detached thread of its own with a deadline: one stuck in the kernel (a hung network
 * mount) is abandoned when the deadline passes, so it never blocks a later job, the loop or
 * the exit; whatever it produces later is freed by its own thread.
 * Thread: srv_opfile_read anywhere; srv_opfile_job_* on the loop thread that owns loop. */
#ifndef ORTHOD_SERVER_OPFILE_H
#define ORTHOD_SERVER_OPFILE_H

#include "../common/err.h"

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#define SRV_OPFILE_TIMEOUT_S 10.0    /* a load that takes longer is abandoned */

/* Reads the whole file at path (at most max bytes) into a new buffer (*out, NUL-terminated,
 * *len bytes; free with srv_opfile_free). *mode (may be NULL) gets the permission bits.
 * Errors: ERR_IO (cannot open or read; not a regular file), ERR_TOOLARGE, ERR_NOMEM; eb
 * names the file and says what to do. */
int srv_opfile_read(const char *path, size_t max, char **out, size_t *len, unsigned *mode,
                    struct errbuf *eb);
/* Zeroes (the buffer may hold secrets) and frees. NULL ok. */
void srv_opfile_free(char *buf, size_t len);
/* A warning for a secret file others may read or write ("chmod 600 ..."), or NULL. */
const char *srv_opfile_mode_warning(unsigned mode);

typedef struct srv_opfile_job srv_opfile_job_t;

/* What a job runs: fn(arg) on its thread; arg_free(arg) frees whatever fn produced when
 * nobody waits for it any more. */
struct srv_opfile_work {
    void (*fn)(void *arg);
    void (*arg_free)(void *arg);
    void *arg;
};

/* Starts w on a detached thread. done(ctx, arg, timed_out) runs on the loop: once fn has
 * returned (timed_out false; arg is the caller's again), or when timeout_s passes first
 * (timed_out true; arg stays with the job's thread, which frees it when fn returns, if
 * ever). Errors: ERR_NOMEM, ERR_IO (no thread). */
int srv_opfile_job_start(uv_loop_t *loop, const struct srv_opfile_work *w, double timeout_s,
                         void (*done)(void *ctx, void *arg, bool timed_out), void *ctx,
                         srv_opfile_job_t **out);
/* Gives up on a job that has not called done (the daemon stops): done is never called; the
 * job's thread frees arg when fn returns. Its handles close on the loop. */
void srv_opfile_job_abandon(srv_opfile_job_t *j);

/* Runs w on a detached thread and waits at most timeout_s (start-up, before the loop runs).
 * Returns 0 once fn has returned, or ERR_TIMEOUT (arg now belongs to the thread). */
int srv_opfile_run(const struct srv_opfile_work *w, double timeout_s);

#endif
