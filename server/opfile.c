/* server/opfile.c: bounded reads of operator files and the detached-thread jobs that run
 * them with a deadline. */
#include "opfile.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int srv_opfile_read(const char *path, size_t max, char **out, size_t *len, unsigned *mode,
                    struct errbuf *eb)
{
    // O_NONBLOCK: opening a FIFO (or a device) must not wait for a writer
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return err_set(eb, ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return err_set(eb, ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        const char *kind = S_ISFIFO(st.st_mode)  ? "a FIFO"
                           : S_ISDIR(st.st_mode) ? "a directory"
                           : S_ISSOCK(st.st_mode) ? "a socket"
                                                  : "a device";
        close(fd);
        return err_set(eb, ERR_IO, "%s: is %s, not a regular file; refusing to read it (point "
                                   "the setting at a file)", path, kind);
    }
    if ((uint64_t)st.st_size > max) {
        close(fd);
        return err_set(eb, ERR_TOOLARGE, "%s: %lld bytes; the limit is %zu", path,
                       (long long)st.st_size, max);
    }
    // the size may change under us: read at most max + 1 bytes to notice
    size_t cap = (size_t)st.st_size + 1 < max + 1 ? (size_t)st.st_size + 1 : max + 1;
    char *buf = malloc(cap + 1);
    if (!buf) {
        close(fd);
        return ERR_NOMEM;
    }
    size_t n = 0;
    for (;;) {
        if (n == cap) {
            if (cap == max + 1)
                break;
            size_t nc = cap * 2 < max + 1 ? cap * 2 : max + 1;
            char *nb = malloc(nc + 1);
            if (!nb) {
                srv_opfile_free(buf, n);
                close(fd);
                return ERR_NOMEM;
            }
            memcpy(nb, buf, n);
            srv_opfile_free(buf, n);
            buf = nb;
            cap = nc;
        }
        ssize_t r = read(fd, buf + n, cap - n);
        if (r == 0)
            break;
        if (r < 0) {
            if (errno == EINTR)
                continue;
            int e = errno;
            srv_opfile_free(buf, n);
            close(fd);
            return err_set(eb, ERR_IO, "%s: cannot read: %s", path, strerror(e));
        }
        n += (size_t)r;
    }
    close(fd);
    if (n > max) {
        srv_opfile_free(buf, n);
        return err_set(eb, ERR_TOOLARGE, "%s: larger than %zu bytes", path, max);
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    if (mode)
        *mode = (unsigned)st.st_mode & 07777u;
    return 0;
}

void srv_opfile_free(char *buf, size_t len)
{
    if (!buf)
        return;
    explicit_bzero(buf, len);
    free(buf);
}

const char *srv_opfile_mode_warning(unsigned mode)
{
    if (mode & (S_IWGRP | S_IWOTH))
        return "other users may write this file (and so add keys): chmod 600 it";
    if (mode & (S_IRGRP | S_IROTH))
        return "other users may read this file: chmod 600 it (or 640 with a trusted group)";
    return NULL;
}

/* --- jobs on a detached thread ----------------------------------------------------------- */

/* State shared by the job's thread and whoever waits for it; the last one out frees it.
 * Exactly one side frees the work's arg: the waiter once it took the result, or the
 * thread when the waiter gave up first. */
struct shared {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int refs;
    bool finished, abandoned;
    uv_async_t *async;             /* the loop's wake-up; NULL once nobody listens */
    struct srv_opfile_work w;
};

static void shared_release(struct shared *sh)
{
    pthread_mutex_lock(&sh->mu);
    int left = --sh->refs;
    pthread_mutex_unlock(&sh->mu);
    if (left == 0) {
        pthread_mutex_destroy(&sh->mu);
        pthread_cond_destroy(&sh->cv);
        free(sh);
    }
}

static void *job_main(void *p)
{
    struct shared *sh = p;
    sh->w.fn(sh->w.arg);
    pthread_mutex_lock(&sh->mu);
    sh->finished = true;
    bool gone = sh->abandoned;
    if (!gone) {
        if (sh->async)
            uv_async_send(sh->async);
        pthread_cond_signal(&sh->cv);
    }
    pthread_mutex_unlock(&sh->mu);
    if (gone && sh->w.arg_free)
        sh->w.arg_free(sh->w.arg);
    shared_release(sh);
    return NULL;
}

static struct shared *shared_new(const struct srv_opfile_work *w)
{
    struct shared *sh = calloc(1, sizeof *sh);
    if (!sh)
        return NULL;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&sh->mu, NULL);
    pthread_cond_init(&sh->cv, &ca);
    pthread_condattr_destroy(&ca);
    sh->refs = 2;
    sh->w = *w;
    return sh;
}

/* A detached thread with every signal blocked (signals belong to the loop thread). */
static int spawn(struct shared *sh)
{
    pthread_attr_t at;
    if (pthread_attr_init(&at) != 0)
        return ERR_NOMEM;
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_t t;
    int rc = pthread_create(&t, &at, job_main, sh);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&at);
    return rc == 0 ? 0 : ERR_IO;
}

struct srv_opfile_job {
    struct shared *sh;
    uv_async_t async;
    uv_timer_t timer;
    int open_handles;
    bool over;                     /* done was called, or the job was abandoned */
    void (*done)(void *ctx, void *arg, bool timed_out);
    void *ctx;
};

static void job_handle_closed(uv_handle_t *hd)
{
    srv_opfile_job_t *j = hd->data;
    if (--j->open_handles == 0)
        free(j);
}

static void job_close(srv_opfile_job_t *j)
{
    j->over = true;
    uv_timer_stop(&j->timer);
    uv_close((uv_handle_t *)&j->async, job_handle_closed);
    uv_close((uv_handle_t *)&j->timer, job_handle_closed);
    shared_release(j->sh);
}

/* The loop hears from a job: its thread finished (the async), or the deadline passed (the
 * timer). Either way done() runs once, and the job's handles close. */
static void job_settle(srv_opfile_job_t *j, bool deadline)
{
    if (j->over)
        return;
    struct shared *sh = j->sh;
    pthread_mutex_lock(&sh->mu);
    bool fin = sh->finished;
    if (!fin && !deadline) {    // a wake-up that raced with nothing: keep waiting
        pthread_mutex_unlock(&sh->mu);
        return;
    }
    if (!fin)
        sh->abandoned = true;
    sh->async = NULL;
    pthread_mutex_unlock(&sh->mu);
    void *arg = fin ? sh->w.arg : NULL;
    void (*done)(void *, void *, bool) = j->done;
    void *ctx = j->ctx;
    job_close(j);
    done(ctx, arg, !fin);
}

static void job_on_async(uv_async_t *a)
{
    job_settle(a->data, false);
}

static void job_on_timer(uv_timer_t *t)
{
    job_settle(t->data, true);
}

int srv_opfile_job_start(uv_loop_t *loop, const struct srv_opfile_work *w, double timeout_s,
                         void (*done)(void *ctx, void *arg, bool timed_out), void *ctx,
                         srv_opfile_job_t **out)
{
    srv_opfile_job_t *j = calloc(1, sizeof *j);
    struct shared *sh = j ? shared_new(w) : NULL;
    if (!sh) {
        free(j);
        return ERR_NOMEM;
    }
    j->sh = sh;
    j->done = done;
    j->ctx = ctx;
    uv_async_init(loop, &j->async, job_on_async);
    uv_timer_init(loop, &j->timer);
    j->async.data = j->timer.data = j;
    j->open_handles = 2;
    sh->async = &j->async;
    int rc = spawn(sh);
    if (rc < 0) {
        sh->refs = 1;              // no thread: only this side
        sh->async = NULL;
        j->over = true;
        uv_close((uv_handle_t *)&j->async, job_handle_closed);
        uv_close((uv_handle_t *)&j->timer, job_handle_closed);
        shared_release(sh);
        return rc;
    }
    uv_timer_start(&j->timer, job_on_timer, (uint64_t)(timeout_s * 1000.0), 0);
    *out = j;
    return 0;
}

void srv_opfile_job_abandon(srv_opfile_job_t *j)
{
    if (!j || j->over)
        return;
    struct shared *sh = j->sh;
    pthread_mutex_lock(&sh->mu);
    bool fin = sh->finished;
    if (!fin)
        sh->abandoned = true;
    sh->async = NULL;
    pthread_mutex_unlock(&sh->mu);
    // finished but not yet collected: the result is ours to free
    if (fin && sh->w.arg_free)
        sh->w.arg_free(sh->w.arg);
    job_close(j);
}

int srv_opfile_run(const struct srv_opfile_work *w, double timeout_s)
{
    struct shared *sh = shared_new(w);
    if (!sh)
        return ERR_NOMEM;
    int rc = spawn(sh);
    if (rc < 0) {
        shared_release(sh);
        shared_release(sh);
        return rc;
    }
    struct timespec end;
    clock_gettime(CLOCK_MONOTONIC, &end);
    double whole = (double)end.tv_sec + (double)end.tv_nsec * 1e-9 + timeout_s;
    end.tv_sec = (time_t)whole;
    end.tv_nsec = (long)((whole - (double)end.tv_sec) * 1e9);
    pthread_mutex_lock(&sh->mu);
    while (!sh->finished) {
        if (pthread_cond_timedwait(&sh->cv, &sh->mu, &end) == ETIMEDOUT)
            break;
    }
    bool fin = sh->finished;
    if (!fin)
        sh->abandoned = true;
    pthread_mutex_unlock(&sh->mu);
    shared_release(sh);
    return fin ? 0 : ERR_TIMEOUT;
}
