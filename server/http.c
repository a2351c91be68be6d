/* server/http.c: libmicrohttpd in external-event (epoll) mode on the libuv loop, per-
 * connection deadlines, body reading under a limit, the generic body checks, and replies.
 * Every MHD callback runs inside MHD_run(), which only this file calls, from the loop. */
#include "http.h"

#include "../proto/body.h"
#include "../proto/status.h"
#include "orthod_config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#if ORTHOD_HAVE_TLS
#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>
#endif

#define MHD_LOG_BURST 20            /* MHD messages logged per second at most */
#define BODY_INITIAL_CAP 4096
#define LINGER_MS 2000              /* after a reply written mid-body: read and drop for this long */
#define LINGER_MAX_BYTES (1u << 20) /* ... or this many bytes, then close */

enum { PARSE_NONE, PARSE_RUNNING, PARSE_DONE };

/* One client connection (MHD socket context). */
struct http_conn {
    srv_http_t *h;
    struct MHD_Connection *c;
    uv_timer_t deadline;           /* the current request must arrive before it fires */
    int fd;
    srv_req_t *req;                /* request whose headers arrived, until completed */
    bool timed_out;
    bool refused;                  /* over max-connections: answered 503 and shut down */
    bool lingering;                /* replied mid-body: dropping the rest until LINGER_* */
    uint64_t lingered;             /* bytes dropped while lingering */
    bool in_request;               /* a request line arrived and its reply is not done */
    srv_tls_t *tls;                /* the certificate set its handshake used (a reference) */
    bool nul_in_url;               /* the decoded path or query of that request held a NUL */
    char peer[64];
    struct http_conn *prev, *next;
};

struct srv_http {
    uv_loop_t *loop;
    struct MHD_Daemon *mhd;
    uv_poll_t poll;                /* MHD's epoll fd */
    uv_timer_t timer;              /* MHD_get_timeout */
    uv_timer_t defer;              /* runs drain completion outside MHD callbacks */
    int n_open_handles;            /* closes pending before the struct is freed */
    bool closing;
    int port;
    size_t max_body;
    size_t max_buffered, buffered; /* the shared body budget and what is held now */
    bool layout_check;             /* header-block layout check on (head_refused) */
    srv_tls_t *tls;                /* certificate set for new handshakes; NULL: plain HTTP */
    uint64_t deadline_ms;
    unsigned max_conn;
    struct log_sink log;
    struct srv_http_hooks hooks;
    unsigned in_flight, n_conn;
    struct http_conn *conns;       /* list of open connections */
    /* request ids */
    uint32_t id_prefix;
    uint64_t id_counter;
    /* draining */
    bool draining, drain_called;
    void (*drain_done)(void *);
    void *drain_arg;
    /* MHD log rate limit */
    uint64_t log_window_ms;
    unsigned log_in_window, log_suppressed;
    /* refusals over max-connections, logged at most once a second */
    uint64_t refuse_log_ms;
    unsigned refused_unlogged;
    /* large JSON bodies parsed on the libuv pool: running, and waiting their turn */
    unsigned parse_active;
    struct parse_job *parse_wait_head, *parse_wait_tail;
};

/* A JSON body parsed on the libuv pool. While it runs the job owns the body (the request
 * may end meanwhile: then req is NULL and the job frees what it holds). */
struct parse_job {
    uv_work_t work;
    srv_http_t *h;
    srv_req_t *req;                /* NULL once the request is gone */
    char *body;
    size_t len, cap;
    json_t *json;
    int rc;
    const char *why;
    bool queued;                   /* handed to the pool (else waiting in h's list) */
    struct parse_job *next;
};

static void on_timer(uv_timer_t *t);

static void http_rearm(srv_http_t *h)
{
    if (!h->mhd || h->closing)
        return;
    MHD_UNSIGNED_LONG_LONG ms = 0;
    if (MHD_get_timeout(h->mhd, &ms) == MHD_YES) {
        if (ms > 3600u * 1000u)
            ms = 3600u * 1000u;
        uv_timer_start(&h->timer, on_timer, (uint64_t)ms, 0);
    } else {
        uv_timer_stop(&h->timer);
    }
}

static void http_run(srv_http_t *h)
{
    if (!h->mhd || h->closing)
        return;
    MHD_run(h->mhd);
    http_rearm(h);
}

static void on_timer(uv_timer_t *t)
{
    http_run(t->data);
}

static void on_poll(uv_poll_t *p, int status, int events)
{
    (void)status;
    (void)events;
    http_run(p->data);
}

/* Runs MHD on the next loop iteration (after a change MHD must notice). */
static void http_kick(srv_http_t *h)
{
    if (!h->closing)
        uv_timer_start(&h->timer, on_timer, 0, 0);
}

/* --- helpers ----------------------------------------------------------------------------- */

static bool sane_request_id(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++) {
        char c = s[n];
        if (n >= SRV_REQ_ID_MAX ||
            !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.' || c == ':'))
            return false;
    }
    return n > 0;
}

/* Strict decimal Content-Length; false for anything else (MHD has already rejected most). */
static bool parse_content_length(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    if (!*s)
        return false;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || v > (UINT64_MAX - 9) / 10)
            return false;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    *out = v;
    return true;
}

static void format_peer(struct MHD_Connection *c, char *buf, size_t cap)
{
    snprintf(buf, cap, "?");
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (!ci || !ci->client_addr)
        return;
    const struct sockaddr *sa = ci->client_addr;
    socklen_t len = sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    char host[INET6_ADDRSTRLEN], serv[8];
    if (getnameinfo(sa, len, host, sizeof host, serv, sizeof serv, NI_NUMERICHOST | NI_NUMERICSERV) == 0)
        snprintf(buf, cap, "%s:%s", host, serv);
}

static void parse_orphan(srv_req_t *r);

static void req_free(srv_req_t *r)
{
    if (!r)
        return;
    if (r->parse_job)
        parse_orphan(r);
    r->http->buffered -= r->body_cap;
    free(r->body);
    json_decref(r->json);
    for (size_t i = 0; i < r->n_headers; i++) {
        free(r->headers[i][0]);
        free(r->headers[i][1]);
    }
    free(r);
}

/* --- replies ----------------------------------------------------------------------------- */

const char *srv_http_req_header(const srv_req_t *r, const char *name)
{
    return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}

int srv_http_header(srv_req_t *r, const char *name, const char *value)
{
    if (r->n_headers == SRV_REQ_MAX_HEADERS)
        return ERR_TOOLARGE;
    char *n = strdup(name), *v = strdup(value);
    if (!n || !v) {
        free(n);
        free(v);
        return ERR_NOMEM;
    }
    r->headers[r->n_headers][0] = n;
    r->headers[r->n_headers][1] = v;
    r->n_headers++;
    return 0;
}

int srv_http_reply(srv_req_t *r, unsigned status, const char *content_type, char *body,
                   size_t len)
{
    srv_http_t *h = r->http;
    if (r->status) {
        free(body);
        return ERR_STATE;
    }
    struct MHD_Response *resp =
        body ? MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE)
             : MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    if (!resp) {
        free(body);
        return ERR_NOMEM;
    }
    bool ok = MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                                      content_type ? content_type : "application/json") == MHD_YES &&
              MHD_add_response_header(resp, "X-Request-Id", r->id) == MHD_YES &&
              MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store") == MHD_YES;
    for (size_t i = 0; ok && i < r->n_headers; i++)
        ok = MHD_add_response_header(resp, r->headers[i][0], r->headers[i][1]) == MHD_YES;
    // while draining, and when a body announced by the client will not be read, the
    // connection cannot be reused
    bool unread_body = r->must_close ||
                       (!r->complete && (r->chunked || (r->has_length && r->content_length > 0)));
    if (ok && (h->draining || unread_body))
        ok = MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close") == MHD_YES;
    if (!ok || MHD_queue_response(r->conn, status, resp) != MHD_YES) {
        MHD_destroy_response(resp);
        return ok ? ERR_IO : ERR_NOMEM;
    }
    MHD_destroy_response(resp);
    r->status = status;
    r->bytes_out = len;
    return 0;
}

int srv_http_reply_json(srv_req_t *r, unsigned status, json_t *obj)
{
    char *s = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
    json_decref(obj);
    if (!s)
        return srv_http_reply_error(r, ERR_NOMEM, NULL, NULL);
    return srv_http_reply(r, status, "application/json", s, strlen(s));
}

static int reply_error_v(srv_req_t *r, unsigned status, int err, const char *param,
                         const char *fmt, va_list ap) __attribute__((format(printf, 5, 0)));
static int reply_error_v(srv_req_t *r, unsigned status, int err, const char *param,
                         const char *fmt, va_list ap)
{
    char msg[512];
    if (fmt)
        vsnprintf(msg, sizeof msg, fmt, ap);
    struct proto_status st;
    proto_status_for(err, &st);
    char *body = NULL;
    size_t len = 0;
    if (proto_status_error_json(err, fmt ? msg : NULL, param, &body, &len) < 0) {
        // no memory for the body: still answer, with the status alone
        proto_status_for(ERR_NOMEM, &st);
        status = 0;
        body = NULL;
        len = 0;
    }
    if (st.retry_after) {
        char ra[16];
        snprintf(ra, sizeof ra, "%u", st.retry_after);
        srv_http_header(r, MHD_HTTP_HEADER_RETRY_AFTER, ra);
    }
    r->err = err;
    return srv_http_reply(r, status ? status : st.http, "application/json", body, len);
}

int srv_http_reply_error(srv_req_t *r, int err, const char *param, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = reply_error_v(r, 0, err, param, fmt, ap);
    va_end(ap);
    return rc;
}

/* The OpenAI error body for err under another status (501, 408: codes the ERR_* table
 * does not map to). */
static int reply_error_status(srv_req_t *r, unsigned status, int err, const char *param,
                                       const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static int reply_error_status(srv_req_t *r, unsigned status, int err, const char *param,
                                       const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = reply_error_v(r, status, err, param, fmt, ap);
    va_end(ap);
    return rc;
}

/* --- connections ------------------------------------------------------------------------- */

static void on_conn_closed(uv_handle_t *t)
{
    free(t->data);
}

/* Writes a whole error reply straight onto the socket, then ends this side's output
 * (SHUT_WR): for the moments libmicrohttpd cannot queue a reply (over max-connections, a
 * body refused in mid-upload). Nothing else is being written on the connection then, and
 * the reply is small enough for an empty socket buffer, so one non-blocking send completes
 * it (or the client is gone). id may be NULL. */
static void conn_write_error(struct http_conn *hc, unsigned status, int err, const char *id,
                             const char *msg)
{
    if (hc->fd < 0)
        return;
    struct proto_status st;
    proto_status_for(err, &st);
    char *body = NULL;
    size_t blen = 0;
    if (proto_status_error_json(err, msg, NULL, &body, &blen) < 0) {
        body = NULL;
        blen = 0;
    }
    char ra[40] = "", rid[SRV_REQ_ID_MAX + 20] = "";
    if (st.retry_after)
        snprintf(ra, sizeof ra, "Retry-After: %u\r\n", st.retry_after);
    if (id)
        snprintf(rid, sizeof rid, "X-Request-Id: %s\r\n", id);
    char head[512];
    int n = snprintf(head, sizeof head, "HTTP/1.1 %u %s\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\nCache-Control: no-store\r\n%s%sConnection: "
                     "close\r\n\r\n", status, MHD_get_reason_phrase_for(status), blen, ra, rid);
#if ORTHOD_HAVE_TLS
    if (hc->h->tls) {
        // one TLS record through the connection's own session (nothing else is being
        // written then), then close_notify; before the handshake there is nothing to say
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(hc->c, MHD_CONNECTION_INFO_GNUTLS_SESSION);
        char *all = malloc((size_t)n + blen);
        if (ci && ci->tls_session && hc->tls && all) {
            gnutls_session_t ss = (gnutls_session_t)ci->tls_session;
            memcpy(all, head, (size_t)n);
            if (blen)
                memcpy(all + n, body, blen);
            gnutls_record_send(ss, all, (size_t)n + blen);
            gnutls_bye(ss, GNUTLS_SHUT_WR);
        }
        free(all);
        free(body);
        shutdown(hc->fd, SHUT_WR);
        return;
    }
#endif
    struct iovec iov[2] = {{head, (size_t)n}, {body, blen}};
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = body ? 2 : 1};
    ssize_t w = sendmsg(hc->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
    (void)w;
    free(body);
    shutdown(hc->fd, SHUT_WR);
}

static void on_deadline(uv_timer_t *t)
{
    struct http_conn *hc = t->data;
    srv_http_t *h = hc->h;
    if (hc->timed_out)
        return;
    hc->timed_out = true;
    if (hc->lingering) {
        // the reply went out LINGER_MS ago; whatever the client still sends is dropped
        if (hc->fd >= 0)
            shutdown(hc->fd, SHUT_RDWR);
        http_kick(h);
        return;
    }
    log_info(&h->log, "msg=\"closing connection: no complete request within conn-timeout\" "
                      "peer=%s timeout_ms=%llu", hc->peer, (unsigned long long)h->deadline_ms);
    if (h->hooks.on_conn_timeout)
        h->hooks.on_conn_timeout(h->hooks.ctx);
    // a request was under way and nothing answers it yet: say why it ends (408); an idle
    // keep-alive connection just closes (a 408 there could be read as the reply to the
    // client's next request)
    srv_req_t *r = hc->req;
    bool replying = (r && r->status) ||    // ours, or one libmicrohttpd queued itself
                    MHD_get_connection_info(hc->c, MHD_CONNECTION_INFO_HTTP_STATUS) != NULL;
    if (hc->in_request && !replying) {
        char msg[128];
        snprintf(msg, sizeof msg, "the request did not arrive within conn-timeout (%.3g s)",
                 (double)h->deadline_ms / 1000.0);
        conn_write_error(hc, 408, ERR_TIMEOUT, r ? r->id : NULL, msg);
        if (r) {
            r->status = 408;
            r->err = ERR_TIMEOUT;
            r->raw_replied = true;
        }
    }
    // shutdown (not close): MHD still owns the descriptor; it sees EOF and closes it itself
    if (hc->fd >= 0)
        shutdown(hc->fd, SHUT_RDWR);
    http_kick(h);
}

/* Over max-connections: a 503 straight onto the fresh socket, then shutdown; MHD sees EOF
 * and closes it. MHD's own limit sits above ours (see srv_http_new) so that excess clients
 * hear "no" instead of waiting unanswered in the listen backlog. */
static void refuse_connection(srv_http_t *h, struct http_conn *hc)
{
    hc->refused = true;
    uv_timer_stop(&hc->deadline);
    conn_write_error(hc, 503, ERR_BUSY, NULL, "too many connections (max-connections); retry later");
    if (hc->fd >= 0)
        shutdown(hc->fd, SHUT_RDWR);
    if (h->hooks.on_conn_refused)
        h->hooks.on_conn_refused(h->hooks.ctx);
    h->refused_unlogged++;
    uint64_t now = uv_now(h->loop);
    if (now - h->refuse_log_ms >= 1000) {
        log_warn(&h->log, "msg=\"refusing connections: max-connections reached\" max=%u "
                          "refused=%u peer=%s", h->max_conn, h->refused_unlogged, hc->peer);
        h->refuse_log_ms = now;
        h->refused_unlogged = 0;
    }
    http_kick(h);
}

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
    srv_http_t *h = cls;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        h->n_conn++;
        if (h->hooks.on_connections)
            h->hooks.on_connections(h->hooks.ctx, 1);
        struct http_conn *hc = calloc(1, sizeof *hc);
        if (!hc) {
            // no deadline for this one; MHD's own inactivity timeout still applies
            *socket_context = NULL;
            return;
        }
        hc->h = h;
        hc->c = c;
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        hc->fd = ci ? ci->connect_fd : -1;
        format_peer(c, hc->peer, sizeof hc->peer);
        uv_timer_init(h->loop, &hc->deadline);
        hc->deadline.data = hc;
        uv_timer_start(&hc->deadline, on_deadline, h->deadline_ms, 0);
        hc->next = h->conns;
        if (h->conns)
            h->conns->prev = hc;
        h->conns = hc;
        *socket_context = hc;
        if (h->n_conn > h->max_conn)
            refuse_connection(h, hc);
        return;
    }
    // MHD_CONNECTION_NOTIFY_CLOSED
    h->n_conn--;
    if (h->hooks.on_connections)
        h->hooks.on_connections(h->hooks.ctx, -1);
    struct http_conn *hc = *socket_context;
    if (!hc)
        return;
    if (hc->prev)
        hc->prev->next = hc->next;
    else
        h->conns = hc->next;
    if (hc->next)
        hc->next->prev = hc->prev;
    uv_timer_stop(&hc->deadline);
    uv_close((uv_handle_t *)&hc->deadline, on_conn_closed);
    srv_tls_unref(hc->tls);
    hc->tls = NULL;
    *socket_context = NULL;
}

/* --- requests ---------------------------------------------------------------------------- */

static void on_defer(uv_timer_t *t)
{
    srv_http_t *h = t->data;
    if (h->draining && !h->drain_called && h->in_flight == 0) {
        h->drain_called = true;
        if (h->drain_done)
            h->drain_done(h->drain_arg);
    }
}

static struct http_conn *conn_of(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    srv_http_t *h = cls;
    struct http_conn *conn = conn_of(c);
    if (conn) {
        // also for a request libmicrohttpd answered itself (r is NULL then)
        conn->in_request = false;
        conn->nul_in_url = false;
    }
    srv_req_t *r = *con_cls;
    if (!r)
        return;
    *con_cls = NULL;
    r->aborted = !r->raw_replied && (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK || r->status == 0);
    h->hooks.on_done(h->hooks.ctx, r);
    struct http_conn *hc = r->hconn;
    if (hc) {
        hc->req = NULL;
        // the next request on this keep-alive connection gets a fresh deadline
        if (!hc->timed_out && !hc->lingering)
            uv_timer_start(&hc->deadline, on_deadline, h->deadline_ms, 0);
    }
    h->in_flight--;
    req_free(r);
    if (h->draining && h->in_flight == 0 && !h->closing)
        uv_timer_start(&h->defer, on_defer, 0, 0);
}

static srv_req_t *req_new(srv_http_t *h, struct MHD_Connection *c, const char *url,
                          const char *method)
{
    srv_req_t *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->http = h;
    r->conn = c;
    r->method = method;
    r->path = url;
    r->route_rc = ERR_NOTFOUND;    // until on_head routes it
    r->t_start_ns = uv_hrtime();
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    struct http_conn *hc = ci ? ci->socket_context : NULL;
    r->hconn = hc;
    if (hc) {
        hc->req = r;
        snprintf(r->peer, sizeof r->peer, "%s", hc->peer);
    } else {
        format_peer(c, r->peer, sizeof r->peer);
    }
    const char *rid = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Request-Id");
    if (rid && sane_request_id(rid))
        snprintf(r->id, sizeof r->id, "%s", rid);
    else
        snprintf(r->id, sizeof r->id, "%08x%08llx", h->id_prefix,
                 (unsigned long long)++h->id_counter);
    return r;
}

static void body_rejected(srv_http_t *h, const char *reason)
{
    if (h->hooks.on_body_rejected)
        h->hooks.on_body_rejected(h->hooks.ctx, reason);
}

/* Appends a piece of the body. ERR_TOOLARGE past r->body_max, ERR_BUSY when growing the
 * buffer would pass the shared budget, ERR_NOMEM. The buffer grows as bytes arrive (never
 * to an announced length up front) and always holds body_len + 1 bytes (a NUL follows). */
static int body_append(srv_http_t *h, srv_req_t *r, const char *data, size_t n)
{
    r->bytes_in += n;
    if (n > r->body_max - r->body_len)    // body_len <= body_max always holds
        return ERR_TOOLARGE;
    size_t need = r->body_len + n + 1;
    if (need > r->body_cap) {
        // the most this body can need: its announced length, else the route's limit
        size_t most = (r->has_length ? (size_t)r->content_length : r->body_max) + 1;
        size_t cap = r->body_cap ? r->body_cap : BODY_INITIAL_CAP;
        while (cap < need)
            cap *= 2;
        if (cap > most)
            cap = most;
        if (cap < need)
            cap = need;
        size_t grow = cap - r->body_cap;
        if (grow > h->max_buffered - h->buffered)
            return ERR_BUSY;
        char *nb = realloc(r->body, cap);
        if (!nb)
            return ERR_NOMEM;
        r->body = nb;
        h->buffered += grow;
        r->body_cap = cap;
    }
    memcpy(r->body + r->body_len, data, n);
    r->body_len += n;
    r->body[r->body_len] = '\0';
    return 0;
}

/* A body refused in mid-upload: libmicrohttpd 0.9.75 cannot queue a reply then, so the
 * reply goes straight onto the socket and the connection lingers (reading and dropping
 * what the client still sends, LINGER_MS / LINGER_MAX_BYTES) so that it reads the reply
 * instead of a reset; then it closes. */
static void reply_mid_body(srv_http_t *h, srv_req_t *r, int err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void reply_mid_body(srv_http_t *h, srv_req_t *r, int err, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    struct proto_status st;
    proto_status_for(err, &st);
    r->status = st.http;
    r->err = err;
    r->raw_replied = true;
    struct http_conn *hc = r->hconn;
    if (!hc)
        return;
    conn_write_error(hc, st.http, err, r->id, msg);
    hc->lingering = true;
    uv_timer_start(&hc->deadline, on_deadline, LINGER_MS, 0);
    (void)h;
}

/* --- strict request heads --------------------------------------------------------------- */

/* RFC 9110 token characters (header names). */
static bool is_tchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

struct head_walk {
    const char *expect;            /* where the next header line must start */
    bool laid_out;                 /* every line so far sat where expected */
    bool bad_name, bad_value;
    unsigned n_cl, n_te, n_host;
};

static enum MHD_Result head_walk_one(void *cls, enum MHD_ValueKind kind, const char *key,
                                     size_t key_size, const char *value, size_t value_size)
{
    (void)kind;
    struct head_walk *w = cls;
    // libmicrohttpd 0.9.75 parses the head in place: each header line starts where the one
    // before ended (value, then CR LF). A NUL inside a value (which it cuts the value at),
    // a bare LF or a folded line (which it joins elsewhere) breaks that chain.
    if (key != w->expect)
        w->laid_out = false;
    w->expect = value + value_size + 2;
    for (size_t i = 0; i < key_size; i++)
        w->bad_name |= !is_tchar((unsigned char)key[i]);
    w->bad_name |= key_size == 0;
    for (size_t i = 0; i < value_size; i++) {
        unsigned char c = (unsigned char)value[i];
        w->bad_value |= (c < 0x20 && c != '\t') || c == 0x7F;
    }
    if (strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0)
        w->n_cl++;
    else if (strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING) == 0)
        w->n_te++;
    else if (strcasecmp(key, MHD_HTTP_HEADER_HOST) == 0)
        w->n_host++;
    return MHD_YES;
}

/* Refuses a request head whose framing or bytes are in doubt, before anything acts on it:
 * the things a proxy in front and this server could read differently (request smuggling),
 * and bytes libmicrohttpd would silently drop. Returns true if it replied (and the
 * connection will close). */
static bool head_refused(srv_http_t *h, srv_req_t *r, const char *version)
{
    struct MHD_Connection *c = r->conn;
    struct http_conn *hc = r->hconn;
    struct head_walk w = {.expect = version + strlen(version) + 2, .laid_out = true};
    MHD_get_connection_values_n(c, MHD_HEADER_KIND, head_walk_one, &w);
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_REQUEST_HEADER_SIZE);
    if (!ci || w.expect + 2 != r->method + ci->header_size)
        w.laid_out = false;
    const char *why = NULL;
    int err = ERR_PROTO;
    unsigned status = 400;
    bool http11 = strcmp(version, MHD_HTTP_VERSION_1_0) != 0;
    const char *te = srv_http_req_header(r, MHD_HTTP_HEADER_TRANSFER_ENCODING);
    if (hc && hc->nul_in_url)
        why = "the path or query holds a NUL byte (%00)";
    else if (h->layout_check && !w.laid_out)
        why = "malformed header block: a NUL byte in a header, a line not ending in CR LF, or "
              "a folded header line";
    else if (w.bad_name)
        why = "a header name holds a character that is not allowed";
    else if (w.bad_value)
        why = "a header value holds a control character";
    else if (w.n_cl > 1)
        why = "more than one Content-Length header";
    else if (w.n_cl && w.n_te)
        why = "both Content-Length and Transfer-Encoding: send one";
    else if (w.n_te && !http11)
        why = "Transfer-Encoding in an HTTP/1.0 request";
    else if (w.n_te > 1 || (te && strcasecmp(te, "chunked") != 0)) {
        why = "Transfer-Encoding other than chunked is not supported";
        err = ERR_UNSUPPORTED;
        status = 501;
    } else if (http11 && w.n_host == 0)
        why = "HTTP/1.1 request without a Host header";
    else if (w.n_host > 1)
        why = "more than one Host header";
    if (!why)
        return false;
    r->must_close = true;
    body_rejected(h, "bad_head");
    log_info(&h->log, "msg=\"request refused\" id=%s peer=%s reason=\"%s\"", r->id, r->peer, why);
    reply_error_status(r, status, err, NULL, "%s", why);
    return true;
}

#define BUDGET_MSG "the server holds too many request bodies (max-buffered-bytes); retry shortly"

/* A body that does not fit the shared budget: counted and logged (the caller replies). */
static void budget_refused(srv_http_t *h, const srv_req_t *r)
{
    body_rejected(h, "buffer_full");
    log_warn(&h->log, "msg=\"body refused: max-buffered-bytes in use\" id=%s peer=%s "
                      "content_length=%llu received=%llu buffered=%zu max=%zu", r->id, r->peer,
             (unsigned long long)(r->has_length ? r->content_length : 0),
             (unsigned long long)r->bytes_in, h->buffered, h->max_buffered);
}

/* Steps 1-3 of the intake (http.h), once the headers are complete. */
static enum MHD_Result on_first_call(srv_http_t *h, srv_req_t *r, const char *version)
{
    if (head_refused(h, r, version))
        return MHD_YES;
    const char *cl = srv_http_req_header(r, MHD_HTTP_HEADER_CONTENT_LENGTH);
    r->chunked = srv_http_req_header(r, MHD_HTTP_HEADER_TRANSFER_ENCODING) != NULL;
    if (cl && !r->chunked) {
        if (!parse_content_length(cl, &r->content_length)) {
            r->must_close = true;    // unknown framing: close after the reply
            body_rejected(h, "bad_length");
            srv_http_reply_error(r, ERR_PROTO, NULL, "Content-Length is not a number");
            return MHD_YES;
        }
        r->has_length = true;
    }
    if (h->draining) {
        srv_http_reply_error(r, ERR_STATE, NULL, "the server is shutting down; retry on "
                                                 "another instance");
        return MHD_YES;
    }
    if (r->has_length && r->content_length > h->max_body) {
        // refuse before reading a byte of it (no 100 Continue is sent)
        body_rejected(h, "too_large");
        log_info(&h->log, "msg=\"body refused\" id=%s peer=%s content_length=%llu max=%zu", r->id,
                 r->peer, (unsigned long long)r->content_length, h->max_body);
        srv_http_reply_error(r, ERR_TOOLARGE, NULL,
                             "request body is %llu bytes; the limit is %zu (max-body-bytes)",
                             (unsigned long long)r->content_length, h->max_body);
        return MHD_YES;
    }
    h->hooks.on_head(h->hooks.ctx, r);
    if (r->status)
        return MHD_YES;
    if (r->body_max > h->max_body)
        r->body_max = h->max_body;
    bool announced = r->chunked || (r->has_length && r->content_length > 0);
    if (announced && r->body_max == 0) {
        body_rejected(h, "no_body");
        srv_http_reply_error(r, ERR_TOOLARGE, NULL, "%s %s takes no request body", r->method,
                             r->match.route ? r->match.route->pattern : "this route");
        return MHD_YES;
    }
    if (r->has_length && r->content_length > r->body_max) {
        body_rejected(h, "too_large");
        srv_http_reply_error(r, ERR_TOOLARGE, NULL,
                             "request body is %llu bytes; this route takes at most %zu",
                             (unsigned long long)r->content_length, r->body_max);
        return MHD_YES;
    }
    if (r->has_length && r->content_length >= h->max_buffered - h->buffered) {
        budget_refused(h, r);
        srv_http_reply_error(r, ERR_BUSY, NULL, BUDGET_MSG);
        return MHD_YES;
    }
    return MHD_YES;
}

/* --- JSON bodies on the libuv pool ------------------------------------------------------- */

static void parse_start(srv_http_t *h, struct parse_job *j);

static void parse_work(uv_work_t *w)
{
    struct parse_job *j = w->data;
    j->rc = proto_body_parse_json(j->body, j->len, &j->json, &j->why);
}

static void parse_after(uv_work_t *w, int status)
{
    struct parse_job *j = w->data;
    srv_http_t *h = j->h;
    h->parse_active--;
    srv_req_t *r = j->req;
    if (status < 0 && j->rc == 0 && !j->json)
        j->rc = ERR_CANCELLED;
    if (r) {
        r->body = j->body;
        r->json = j->json;
        r->parse_rc = j->rc;
        r->parse_why = j->why;
        r->parse_state = PARSE_DONE;
        r->parse_job = NULL;
        if (r->suspended) {
            r->suspended = false;
            MHD_resume_connection(r->conn);
        }
    } else {
        h->buffered -= j->cap;
        free(j->body);
        json_decref(j->json);
    }
    free(j);
    // the next waiting body, unless the daemon is going away
    if (!h->closing && h->parse_wait_head) {
        struct parse_job *n = h->parse_wait_head;
        h->parse_wait_head = n->next;
        if (!h->parse_wait_head)
            h->parse_wait_tail = NULL;
        parse_start(h, n);
    }
    if (--h->n_open_handles == 0)
        free(h);
    else
        http_kick(h);
}

static void parse_start(srv_http_t *h, struct parse_job *j)
{
    j->queued = true;
    j->work.data = j;
    h->parse_active++;
    h->n_open_handles++;    // h lives until parse_after has run
    if (uv_queue_work(h->loop, &j->work, parse_work, parse_after) < 0) {
        // cannot happen with a live loop; parse here rather than lose the request
        parse_work(&j->work);
        parse_after(&j->work, 0);
    }
}

/* Hands the body to a pool thread and suspends the connection; MHD calls on_access again
 * once parse_after resumes it. */
static void parse_begin(srv_http_t *h, srv_req_t *r)
{
    struct parse_job *j = calloc(1, sizeof *j);
    if (!j) {
        r->parse_rc = ERR_NOMEM;
        r->parse_state = PARSE_DONE;
        return;
    }
    j->h = h;
    j->req = r;
    j->body = r->body;
    j->len = r->body_len;
    j->cap = r->body_cap;
    r->body = NULL;           // the job owns it until parse_after
    r->parse_job = j;
    r->parse_state = PARSE_RUNNING;
    MHD_suspend_connection(r->conn);
    r->suspended = true;
    if (h->parse_active < HTTP_PARSE_MAX_ACTIVE) {
        parse_start(h, j);
    } else {
        if (h->parse_wait_tail)
            h->parse_wait_tail->next = j;
        else
            h->parse_wait_head = j;
        h->parse_wait_tail = j;
    }
}

/* The request ends while its body is with a job (only when the daemon stops). */
static void parse_orphan(srv_req_t *r)
{
    struct parse_job *j = r->parse_job;
    srv_http_t *h = r->http;
    r->parse_job = NULL;
    r->body_cap = 0;          // the job holds (and accounts for) the buffer
    if (j->queued) {
        j->req = NULL;        // parse_after frees what the job holds
        return;
    }
    for (struct parse_job **pp = &h->parse_wait_head; *pp; pp = &(*pp)->next) {
        if (*pp == j) {
            *pp = j->next;
            break;
        }
    }
    h->parse_wait_tail = NULL;
    for (struct parse_job *q = h->parse_wait_head; q; q = q->next)
        h->parse_wait_tail = q;
    h->buffered -= j->cap;
    free(j->body);
    free(j);
}

/* Steps 5-6 of the intake: the body is complete. */
static enum MHD_Result on_body_done(srv_http_t *h, srv_req_t *r)
{
    if (r->parse_state == PARSE_RUNNING)
        return MHD_YES;    // still suspended; cannot happen, but harmless
    if (r->parse_state == PARSE_NONE) {
        struct http_conn *hc = r->hconn;
        r->complete = true;
        if (hc)
            uv_timer_stop(&hc->deadline);    // it arrived in time; the reply is ours to make
        if (r->body_len > 0 && !r->body_raw) {
            const char *ct = srv_http_req_header(r, MHD_HTTP_HEADER_CONTENT_TYPE);
            if (!proto_body_is_json_type(ct)) {
                body_rejected(h, "content_type");
                srv_http_reply_error(r, ERR_PROTO, NULL,
                                     "Content-Type must be application/json (got %.64s)",
                                     ct ? ct : "none");
                return MHD_YES;
            }
            if (r->body_len > HTTP_JSON_INLINE_MAX) {
                parse_begin(h, r);
                if (r->parse_state == PARSE_RUNNING)
                    return MHD_YES;
            } else {
                r->parse_rc = proto_body_parse_json(r->body, r->body_len, &r->json,
                                                    &r->parse_why);
            }
        }
        r->parse_state = PARSE_DONE;
    }
    if (r->parse_rc < 0) {
        body_rejected(h, "json");
        srv_http_reply_error(r, r->parse_rc, NULL, "%s",
                             r->parse_why ? r->parse_why : err_str(r->parse_rc));
        return MHD_YES;
    }
    h->hooks.on_request(h->hooks.ctx, r);
    if (!r->status)
        srv_http_reply_error(r, ERR_INTERNAL, NULL, "the handler did not answer");
    return MHD_YES;
}

/* Step 4: a piece of the body. */
static enum MHD_Result on_body_data(srv_http_t *h, srv_req_t *r, const char *data, size_t n)
{
    struct http_conn *hc = r->hconn;
    if (r->raw_replied) {
        // lingering after a reply written mid-body: drop, up to a bound
        if (!hc)
            return MHD_NO;
        hc->lingered += n;
        return hc->lingered > LINGER_MAX_BYTES ? MHD_NO : MHD_YES;
    }
    if (r->status)
        return MHD_YES;    // already answered; MHD is discarding the rest
    int rc = body_append(h, r, data, n);
    if (rc == ERR_TOOLARGE) {
        body_rejected(h, "too_large");
        log_info(&h->log, "msg=\"body refused\" id=%s peer=%s received=%llu max=%zu", r->id,
                 r->peer, (unsigned long long)r->bytes_in, r->body_max);
        reply_mid_body(h, r, ERR_TOOLARGE, "request body passed %zu bytes (the route's limit "
                                           "or max-body-bytes)", r->body_max);
        return MHD_YES;
    }
    if (rc == ERR_BUSY) {
        budget_refused(h, r);
        reply_mid_body(h, r, ERR_BUSY, "%s", BUDGET_MSG);
        return MHD_YES;
    }
    return rc < 0 ? MHD_NO : MHD_YES;
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *c, const char *url,
                                 const char *method, const char *version,
                                 const char *upload_data, size_t *upload_data_size,
                                 void **con_cls)
{
    srv_http_t *h = cls;
    srv_req_t *r = *con_cls;
    if (!r) {
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
        const struct http_conn *hc = ci ? ci->socket_context : NULL;
        if (hc && hc->refused)
            return MHD_NO;    // already answered 503 on the socket
        r = req_new(h, c, url, method);
        if (!r)
            return MHD_NO;    // out of memory: drop the connection
        *con_cls = r;
        h->in_flight++;
        return on_first_call(h, r, version);
    }
    if (*upload_data_size > 0) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        return on_body_data(h, r, upload_data, n);
    }
    if (r->raw_replied)
        return MHD_NO;    // the reply is out; close (the client sent all it meant to)
    if (r->status)
        return MHD_YES;
    return on_body_done(h, r);
}

/* --- request lines: started requests, decoded paths ------------------------------------ */

/* A request line arrived: from here a timeout is answered with 408 (an idle keep-alive
 * connection is closed without a word). Returns the request's initial context: none. */
static void *on_request_line(void *cls, const char *uri, struct MHD_Connection *c)
{
    (void)cls;
    (void)uri;
    struct http_conn *hc = conn_of(c);
    if (hc) {
        hc->in_request = true;
        hc->nul_in_url = false;
    }
    return NULL;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (char)(c | 0x20);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Percent-decoding of the path and of query keys and values, in place (as libmicrohttpd's
 * own does: "%XX" only, a malformed escape stays as it is). A decoded NUL would cut the
 * string short (`/health%00x` answered as `/health`): it is noted and the request refused. */
static size_t on_unescape(void *cls, struct MHD_Connection *c, char *s)
{
    (void)cls;
    char *w = s;
    bool nul = false;
    for (const char *p = s; *p; p++) {
        int hi, lo;
        if (p[0] == '%' && (hi = hex_value(p[1])) >= 0 && (lo = hex_value(p[2])) >= 0) {
            char v = (char)(hi * 16 + lo);
            nul |= v == '\0';
            *w++ = v;
            p += 2;
        } else {
            *w++ = *p;
        }
    }
    *w = '\0';
    if (nul) {
        struct http_conn *hc = conn_of(c);
        if (hc)
            hc->nul_in_url = true;
    }
    return (size_t)(w - s);
}

/* --- MHD's own messages ---------------------------------------------------------------- */

static void on_mhd_log(void *cls, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    srv_http_t *h = cls;
    uint64_t now = uv_now(h->loop);
    if (now - h->log_window_ms >= 1000) {
        if (h->log_suppressed)
            log_warn(&h->log, "msg=\"libmicrohttpd messages suppressed\" count=%u",
                     h->log_suppressed);
        h->log_window_ms = now;
        h->log_in_window = 0;
        h->log_suppressed = 0;
    }
    if (++h->log_in_window > MHD_LOG_BURST) {
        h->log_suppressed++;
        return;
    }
    char buf[512];
    vsnprintf(buf, sizeof buf, fmt, ap);
    size_t n = strlen(buf);
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        buf[--n] = '\0';
    for (char *p = buf; *p; p++)
        if (*p == '"')
            *p = '\'';
    log_warn(&h->log, "msg=\"libmicrohttpd: %s\"", buf);
}

/* --- TLS ----------------------------------------------------------------------------------- */

#if ORTHOD_HAVE_TLS
#define HTTP_TLS_PRIORITIES "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2:%SERVER_PRECEDENCE"

/* GnuTLS asks for the certificate at each handshake (on the loop, inside MHD_run): the
 * current set, which the connection keeps a reference to, so that a reload never frees a
 * set a session still uses. */
static int on_tls_cert(gnutls_session_t session, const gnutls_datum_t *req_ca_rdn, int nreqs,
                       const gnutls_pk_algorithm_t *pk_algos, int pk_algos_length,
                       gnutls_pcert_st **pcert, unsigned int *pcert_length,
                       gnutls_privkey_t *privkey)
{
    (void)req_ca_rdn;
    (void)nreqs;
    (void)pk_algos;
    (void)pk_algos_length;
    struct MHD_Connection *c = gnutls_session_get_ptr(session);
    struct http_conn *hc = c ? conn_of(c) : NULL;
    if (!hc || !hc->h->tls)
        return -1;
    if (!hc->tls) {
        hc->tls = hc->h->tls;
        srv_tls_ref(hc->tls);
    }
    void *pc, *key;
    unsigned n;
    srv_tls_credentials(hc->tls, &pc, &n, &key);
    *pcert = pc;
    *pcert_length = n;
    *privkey = key;
    return 0;
}
#endif

int srv_http_set_tls(srv_http_t *h, srv_tls_t *tls)
{
    if (!h->tls)
        return ERR_STATE;    // plain HTTP: TLS is chosen at start-up
    srv_tls_ref(tls);
    srv_tls_unref(h->tls);    // connections that use it hold their own references
    h->tls = tls;
    return 0;
}

/* --- lifetime ---------------------------------------------------------------------------- */

static int resolve(const char *host, int port, struct sockaddr_storage *ss, socklen_t *len,
                   struct errbuf *eb)
{
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    char ps[8];
    snprintf(ps, sizeof ps, "%d", port);
    int g = getaddrinfo(host, ps, &hints, &res);
    if (g != 0 || !res)
        return err_set(eb, ERR_INVAL, "--host '%s': cannot resolve: %s (use an address such as "
                                      "127.0.0.1 or ::1)", host, gai_strerror(g));
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *len = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

static void on_handle_closed(uv_handle_t *hd)
{
    srv_http_t *h = hd->data;
    if (--h->n_open_handles == 0)
        free(h);
}

int srv_http_new(uv_loop_t *loop, const struct srv_http_params *p, srv_http_t **out,
                 struct errbuf *eb)
{
    struct sockaddr_storage ss;
    socklen_t sslen = 0;
    int rc = resolve(p->host, p->port, &ss, &sslen, eb);
    if (rc < 0)
        return rc;
    srv_http_t *h = calloc(1, sizeof *h);
    if (!h)
        return ERR_NOMEM;
    h->loop = loop;
    h->max_body = p->max_body_bytes;
    h->max_buffered = p->max_buffered_bytes > p->max_body_bytes ? p->max_buffered_bytes
                                                                 : p->max_body_bytes + 1;
    h->deadline_ms = (uint64_t)ceil(p->conn_timeout * 1000.0);
    h->max_conn = (unsigned)p->max_connections;
    h->log = p->log;
    h->hooks = p->hooks;
    if (getrandom(&h->id_prefix, sizeof h->id_prefix, GRND_NONBLOCK) != sizeof h->id_prefix)
        h->id_prefix = (uint32_t)uv_hrtime() ^ (uint32_t)getpid();
    h->log_window_ms = uv_now(loop);
    // the header-block layout check relies on how this libmicrohttpd parses in place
    h->layout_check = strcmp(MHD_get_version(), "0.9.75") == 0;
    if (!h->layout_check)
        log_warn(&h->log, "msg=\"libmicrohttpd %s: the check for NUL bytes, bare LF and folded "
                          "lines in request heads is off (verified on 0.9.75 only)\"",
                 MHD_get_version());

    unsigned flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    if (ss.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    struct MHD_OptionItem tls_ops[3] = {{MHD_OPTION_END, 0, NULL}};
    if (p->tls) {
#if ORTHOD_HAVE_TLS
        if (MHD_is_feature_supported(MHD_FEATURE_HTTPS_CERT_CALLBACK) != MHD_YES) {
            free(h);
            return err_set(eb, ERR_UNSUPPORTED, "this libmicrohttpd has no TLS certificate "
                                                "callback (built without GnuTLS?)");
        }
        flags |= MHD_USE_TLS;
        gnutls_certificate_retrieve_function2 *cb = on_tls_cert;
        void *cbp;
        memcpy(&cbp, &cb, sizeof cbp);
        tls_ops[0] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_PRIORITIES, 0,
                                             (void *)HTTP_TLS_PRIORITIES};
        tls_ops[1] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_CERT_CALLBACK, 0, cbp};
        h->tls = p->tls;
        srv_tls_ref(h->tls);
#else
        free(h);
        return err_set(eb, ERR_UNSUPPORTED, "this orthod was built without TLS");
#endif
    }
    unsigned mhd_timeout = (unsigned)ceil(p->conn_timeout);
    h->mhd = MHD_start_daemon(
        flags, 0, NULL, NULL, on_access, h,
        MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, h,    // first, so it sees every message
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
        // headroom above ours: connections past max-connections are accepted to be refused
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)p->max_connections + SRV_HTTP_FD_HEADROOM,
        // MHD's inactivity timeout backs up our deadline while the reply is being sent
        MHD_OPTION_CONNECTION_TIMEOUT, mhd_timeout ? mhd_timeout : 1u,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
        MHD_OPTION_NOTIFY_CONNECTION, on_connection, h,
        MHD_OPTION_URI_LOG_CALLBACK, on_request_line, h,
        MHD_OPTION_UNESCAPE_CALLBACK, on_unescape, h,
        MHD_OPTION_ARRAY, tls_ops,
        MHD_OPTION_END);
    if (!h->mhd) {
        int e = errno;
        char addr[INET6_ADDRSTRLEN] = "?";
        if (ss.ss_family == AF_INET6)
            inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, addr, sizeof addr);
        else
            inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, addr, sizeof addr);
        srv_tls_unref(h->tls);
        free(h);
        return err_set(eb, ERR_IO, "cannot listen on %s port %d: %s (is another server using "
                                   "the port? pick another with --port)", addr, p->port,
                       e ? strerror(e) : "libmicrohttpd refused to start");
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(h->mhd, MHD_DAEMON_INFO_BIND_PORT);
    h->port = di ? di->port : p->port;
    di = MHD_get_daemon_info(h->mhd, MHD_DAEMON_INFO_EPOLL_FD);
    if (!di || di->epoll_fd < 0 || uv_poll_init(loop, &h->poll, di->epoll_fd) < 0) {
        MHD_stop_daemon(h->mhd);
        srv_tls_unref(h->tls);
        free(h);
        return err_set(eb, ERR_INTERNAL, "libmicrohttpd gave no epoll descriptor");
    }
    h->poll.data = h;
    uv_timer_init(loop, &h->timer);
    h->timer.data = h;
    uv_timer_init(loop, &h->defer);
    h->defer.data = h;
    h->n_open_handles = 3;
    log_info(&h->log, "msg=\"http transport\" libmicrohttpd=%s port=%d tls=%s",
             MHD_get_version(), h->port, h->tls ? "on" : "off");
    uv_poll_start(&h->poll, UV_READABLE, on_poll);
    http_rearm(h);
    *out = h;
    return 0;
}

void srv_http_free(srv_http_t *h)
{
    if (!h || h->closing)
        return;
    h->closing = true;
    // stop polling before MHD closes the epoll descriptor under the poll handle
    uv_close((uv_handle_t *)&h->poll, on_handle_closed);
    uv_close((uv_handle_t *)&h->timer, on_handle_closed);
    uv_close((uv_handle_t *)&h->defer, on_handle_closed);
    struct MHD_Daemon *d = h->mhd;
    h->mhd = NULL;
    // bodies waiting for a parse slot are dropped with their requests; suspended
    // connections are resumed so that MHD closes them like the others
    for (struct http_conn *hc = h->conns; hc; hc = hc->next) {
        if (hc->req && hc->req->suspended) {
            hc->req->suspended = false;
            MHD_resume_connection(hc->c);
        }
    }
    // in-flight requests complete (aborted) inside this call; connection timers close;
    // a parse still running on the pool frees its buffer when it returns (parse_after)
    MHD_stop_daemon(d);
    srv_tls_unref(h->tls);    // every connection (and its reference) is gone now
    h->tls = NULL;
}

int srv_http_port(const srv_http_t *h)
{
    return h->port;
}

unsigned srv_http_in_flight(const srv_http_t *h)
{
    return h->in_flight;
}

unsigned srv_http_connections(const srv_http_t *h)
{
    return h->n_conn;
}

size_t srv_http_buffered(const srv_http_t *h)
{
    return h->buffered;
}

void srv_http_drain(srv_http_t *h, void (*done)(void *arg), void *arg)
{
    if (h->draining || h->closing)
        return;
    h->draining = true;
    h->drain_done = done;
    h->drain_arg = arg;
    MHD_socket lfd = MHD_quiesce_daemon(h->mhd);
    if (lfd != MHD_INVALID_SOCKET)
        close(lfd);    // external-event mode: no MHD thread can still be using it
    log_info(&h->log, "msg=\"draining: listening socket closed\" in_flight=%u connections=%u",
             h->in_flight, h->n_conn);
    uv_timer_start(&h->defer, on_defer, 0, 0);
    http_kick(h);
}
