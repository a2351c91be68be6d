/* bench/bench_http.c: the measurement behind the daemon's HTTP threading choice
 * (docs/architecture.md). Serves a /health-sized JSON answer two ways and drives each with
 * the same keep-alive load:
 *   loop    libmicrohttpd in external-event mode on a libuv loop: MHD's epoll fd in a
 *           uv_poll_t, its timeout in a uv_timer_t; handlers run on the loop thread (what
 *           server/http.c does).
 *   thread  libmicrohttpd's own polling thread; each request is handed to a libuv loop
 *           thread (mutex queue + uv_async_send + MHD_suspend_connection) and the answer is
 *           handed back (MHD_resume_connection), as any handler touching loop-owned state
 *           (sessions, the scheduler queue) would need.
 * Not a test (timing is the point): built with the tests, run by hand:
 *   bench_http [--seconds S] [--conns N] [--port P]
 * With --port it only runs the client, against a server already listening on 127.0.0.1:P
 * (e.g. `orthod serve --port P`). Client and server share the machine: compare modes, not
 * absolute numbers. */
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

static const char BODY[] = "{\"status\":\"ok\"}";

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static enum MHD_Result reply(struct MHD_Connection *c)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(sizeof BODY - 1, (void *)BODY,
                                                             MHD_RESPMEM_PERSISTENT);
    MHD_add_response_header(r, "Content-Type", "application/json");
    enum MHD_Result ok = MHD_queue_response(c, 200, r);
    MHD_destroy_response(r);
    return ok;
}

/* --- mode loop ------------------------------------------------------------------------------ */

struct loop_srv {
    struct MHD_Daemon *d;
    uv_poll_t poll;
    uv_timer_t timer;
};

static void loop_run(struct loop_srv *s);

static void on_loop_timer(uv_timer_t *t)
{
    loop_run(t->data);
}

static void loop_run(struct loop_srv *s)
{
    MHD_run(s->d);
    MHD_UNSIGNED_LONG_LONG ms;
    if (MHD_get_timeout(s->d, &ms) == MHD_YES)
        uv_timer_start(&s->timer, on_loop_timer, ms, 0);
    else
        uv_timer_stop(&s->timer);
}

static void on_loop_poll(uv_poll_t *p, int status, int events)
{
    (void)status;
    (void)events;
    loop_run(p->data);
}

static enum MHD_Result on_loop_access(void *cls, struct MHD_Connection *c, const char *url,
                                      const char *method, const char *version, const char *up,
                                      size_t *up_size, void **con_cls)
{
    (void)cls, (void)url, (void)method, (void)version, (void)up;
    if (!*con_cls) {
        *con_cls = (void *)1;
        return MHD_YES;
    }
    *up_size = 0;
    return reply(c);
}

static void serve_loop(int port)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct loop_srv s;
    s.d = MHD_start_daemon(MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME, (uint16_t)port, NULL, NULL,
                           on_loop_access, &s, MHD_OPTION_CONNECTION_LIMIT, 1024u, MHD_OPTION_END);
    if (!s.d)
        _exit(3);
    uv_poll_init(&loop, &s.poll, MHD_get_daemon_info(s.d, MHD_DAEMON_INFO_EPOLL_FD)->epoll_fd);
    uv_timer_init(&loop, &s.timer);
    s.poll.data = s.timer.data = &s;
    uv_poll_start(&s.poll, UV_READABLE, on_loop_poll);
    loop_run(&s);
    uv_run(&loop, UV_RUN_DEFAULT);
}

/* --- mode thread ------------------------------------------------------------------------------ */

struct job {
    struct MHD_Connection *c;
    bool answered;
    struct job *next;
};

struct thread_srv {
    pthread_mutex_t mu;
    struct job *head;       /* submitted by MHD's thread, drained by the loop */
    uv_async_t async;
};

static void on_async(uv_async_t *a)
{
    struct thread_srv *s = a->data;
    pthread_mutex_lock(&s->mu);
    struct job *j = s->head;
    s->head = NULL;
    pthread_mutex_unlock(&s->mu);
    while (j) {
        struct job *next = j->next;
        j->answered = true;                  // the loop thread did the work
        MHD_resume_connection(j->c);         // thread-safe: wakes MHD's thread through its ITC
        j = next;
    }
}

static enum MHD_Result on_thread_access(void *cls, struct MHD_Connection *c, const char *url,
                                        const char *method, const char *version, const char *up,
                                        size_t *up_size, void **con_cls)
{
    (void)url, (void)method, (void)version, (void)up;
    struct thread_srv *s = cls;
    struct job *j = *con_cls;
    if (!j) {
        j = calloc(1, sizeof *j);
        j->c = c;
        *con_cls = j;
        return MHD_YES;
    }
    *up_size = 0;
    if (j->answered)
        return reply(c);
    MHD_suspend_connection(c);    // before the loop can see it, so resume never beats suspend
    pthread_mutex_lock(&s->mu);
    j->next = s->head;
    s->head = j;
    pthread_mutex_unlock(&s->mu);
    uv_async_send(&s->async);
    return MHD_YES;
}

static void on_thread_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                                enum MHD_RequestTerminationCode toe)
{
    (void)cls, (void)c, (void)toe;
    free(*con_cls);
    *con_cls = NULL;
}

static void serve_thread(int port)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct thread_srv s = {.head = NULL};
    pthread_mutex_init(&s.mu, NULL);
    uv_async_init(&loop, &s.async, on_async);
    s.async.data = &s;
    struct MHD_Daemon *d = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME, (uint16_t)port,
        NULL, NULL, on_thread_access, &s, MHD_OPTION_NOTIFY_COMPLETED, on_thread_completed, &s,
        MHD_OPTION_CONNECTION_LIMIT, 1024u, MHD_OPTION_END);
    if (!d)
        _exit(3);
    uv_run(&loop, UV_RUN_DEFAULT);
}

/* --- client ----------------------------------------------------------------------------------- */

struct client {
    pthread_t th;
    int port;
    uint64_t stop_ns;
    uint64_t *lat;
    size_t n, cap;
    int errors;
};

static int connect_to(int port)
{
    for (int tries = 0; tries < 200; tries++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0) {
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            return fd;
        }
        close(fd);
        usleep(10000);
    }
    return -1;
}

static void *client_main(void *arg)
{
    struct client *c = arg;
    static const char req[] = "GET /health HTTP/1.1\r\nHost: bench\r\n\r\n";
    int fd = connect_to(c->port);
    if (fd < 0) {
        c->errors++;
        return NULL;
    }
    char buf[4096];
    while (now_ns() < c->stop_ns) {
        uint64_t t0 = now_ns();
        if (send(fd, req, sizeof req - 1, MSG_NOSIGNAL) != (ssize_t)(sizeof req - 1)) {
            c->errors++;
            break;
        }
        size_t got = 0;
        for (;;) {
            ssize_t r = recv(fd, buf + got, sizeof buf - 1 - got, 0);
            if (r <= 0) {
                c->errors++;
                close(fd);
                return NULL;
            }
            got += (size_t)r;
            buf[got] = '\0';
            char *he = strstr(buf, "\r\n\r\n");
            char *cl = strcasestr(buf, "Content-Length:");
            if (he && cl && got >= (size_t)(he + 4 - buf) + (size_t)atol(cl + 15))
                break;
        }
        if (c->n < c->cap)
            c->lat[c->n++] = now_ns() - t0;
    }
    close(fd);
    return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void run_client(const char *name, int port, int conns, double seconds)
{
    struct client *cs = calloc((size_t)conns, sizeof *cs);
    uint64_t t0 = now_ns();
    uint64_t stop = t0 + (uint64_t)(seconds * 1e9);
    for (int i = 0; i < conns; i++) {
        cs[i].port = port;
        cs[i].stop_ns = stop;
        cs[i].cap = 4u << 20;
        cs[i].lat = malloc(cs[i].cap * sizeof *cs[i].lat);
        pthread_create(&cs[i].th, NULL, client_main, &cs[i]);
    }
    size_t total = 0;
    int errors = 0;
    for (int i = 0; i < conns; i++) {
        pthread_join(cs[i].th, NULL);
        total += cs[i].n;
        errors += cs[i].errors;
    }
    double el = (double)(now_ns() - t0) * 1e-9;
    uint64_t *all = malloc((total ? total : 1) * sizeof *all);
    size_t k = 0;
    for (int i = 0; i < conns; i++) {
        memcpy(all + k, cs[i].lat, cs[i].n * sizeof *all);
        k += cs[i].n;
        free(cs[i].lat);
    }
    qsort(all, total, sizeof *all, cmp_u64);
    double p50 = total ? (double)all[total / 2] / 1e3 : 0;
    double p99 = total ? (double)all[(size_t)((double)total * 0.99)] / 1e3 : 0;
    printf("%-8s conns=%-4d requests=%-8zu req/s=%-9.0f p50_us=%-8.1f p99_us=%-8.1f errors=%d\n",
           name, conns, total, (double)total / el, p50, p99, errors);
    free(all);
    free(cs);
}

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd, (struct sockaddr *)&a, sizeof a);
    socklen_t l = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &l);
    close(fd);
    return ntohs(a.sin_port);
}

int main(int argc, char **argv)
{
    double seconds = 3;
    int port = 0;
    int conns_list[] = {1, 16, 64};
    int n_conns = 3;
    int one_conns = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--seconds") == 0)
            seconds = atof(argv[i + 1]);
        else if (strcmp(argv[i], "--port") == 0)
            port = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--conns") == 0)
            one_conns = atoi(argv[i + 1]);
    }
    if (one_conns > 0) {
        conns_list[0] = one_conns;
        n_conns = 1;
    }
    signal(SIGPIPE, SIG_IGN);
    if (port > 0) {
        for (int k = 0; k < n_conns; k++)
            run_client("external", port, conns_list[k], seconds);
        return 0;
    }
    const char *modes[] = {"loop", "thread"};
    for (int m = 0; m < 2; m++) {
        for (int k = 0; k < n_conns; k++) {
            int p = free_port();
            pid_t pid = fork();
            if (pid == 0) {
                if (m == 0)
                    serve_loop(p);
                else
                    serve_thread(p);
                _exit(0);
            }
            run_client(modes[m], p, conns_list[k], seconds);
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
        }
    }
    return 0;
}
