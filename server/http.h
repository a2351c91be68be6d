/* server/http.h: libmicrohttpd driven from the libuv loop (external-event mode: MHD's epoll
 * fd in a uv_poll_t, MHD's next timeout in a uv_timer_t; docs/architecture.md says why).
 * Owns the transport: listening, the connection limit, per-connection deadlines
 * (conn-timeout), request ids, the intake order below, reading bodies under their limits and
 * the memory budget shared by all connections (max-buffered-bytes), the generic body checks
 * (JSON content type and syntax, through proto/body.h), replies, and draining.
 * Policy (routing, auth, handlers, metrics, access logs) lives in hooks the server supplies.
 * Thread: loop thread only (large JSON bodies are parsed on the libuv pool, see below).
 *
 * Intake, in this order, for every request (no body byte is read before step 4):
 *   1. headers complete: framing in doubt (two lengths, a length with chunked encoding, a
 *      transfer coding but chunked, no Host, NUL bytes, folded or bare-LF lines) is 400 or
 *      501 and closes the connection; a Content-Length over max-body-bytes is 413;
 *   2. on_head (the server) routes and authenticates: 401/403/404/405 are answered here,
 *      and a matched route says what body it takes by setting r->body_max / r->body_raw;
 *   3. a body announced to a route that takes none (body_max 0) is 413, a Content-Length
 *      over body_max is 413, and one that does not fit the shared budget is 503;
 *   4. the body is read, counted against body_max and the budget as it grows (a chunked
 *      body is refused the moment it passes either: 413 or 503 written straight onto the
 *      socket, then the connection closes);
 *   5. a JSON body is checked and parsed: up to HTTP_JSON_INLINE_MAX bytes on the loop,
 *      larger ones on the libuv pool (the connection is suspended meanwhile, so the loop
 *      keeps serving others);
 *   6. on_request (the server) runs the route's handler.
 *
 * How a route declares that it takes a body: one row of the route table (server/server.c,
 * struct srv_route in router.h), e.g.
 *     {"/v1/completions", SRV_POST, SRV_ROLE_INFERENCE, handle_completions, SRV_BODY_JSON, 0},
 * SRV_BODY_JSON: r->json holds the parsed object when the handler runs; SRV_BODY_RAW: the
 * bytes in r->body / r->body_len; the last field caps the body below max-body-bytes (0: no
 * extra cap). Rows with SRV_BODY_NONE never see a body. Nothing in this file changes. */
#ifndef ORTHOD_SERVER_HTTP_H
#define ORTHOD_SERVER_HTTP_H

#include "../common/err.h"
#include "../common/log.h"
#include "router.h"
#include "tls.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct srv_http srv_http_t;
typedef struct srv_req srv_req_t;

#define SRV_REQ_ID_MAX 64          /* X-Request-Id longer than this (or with odd bytes) is replaced */
#define SRV_REQ_MAX_HEADERS 6      /* extra response headers a handler may stage */
#define HTTP_JSON_INLINE_MAX (64u * 1024u)    /* larger JSON bodies are parsed off the loop */
#define HTTP_PARSE_MAX_ACTIVE 2    /* large JSON bodies parsed at once; more wait their turn */
#define SRV_HTTP_FD_HEADROOM 64    /* connections accepted past max-connections to be refused */

/* One request, from its headers to its completion. Owned by http.c; hooks may read every
 * field and set the ones marked (hook). Pointers into MHD memory stay valid until on_done
 * returns. */
struct srv_req {
    srv_http_t *http;
    const char *method;            /* as sent: "GET" */
    const char *path;              /* decoded path without the query string */
    char id[SRV_REQ_ID_MAX + 1];   /* X-Request-Id (sane client value or generated) */
    char peer[64];                 /* client address */
    uint64_t t_start_ns;           /* uv_hrtime() when the headers were complete */
    /* body: read only after on_head returned without replying */
    size_t body_max;               /* (hook, in on_head) most body bytes this route takes;
                                    * 0 (the default): none, an announced body is refused */
    bool body_raw;                 /* (hook, in on_head) skip the JSON checks for this body */
    char *body;                    /* body_len bytes + NUL, or NULL */
    size_t body_len;
    json_t *json;                  /* the parsed body object, or NULL when there was no body */
    /* routing and auth (hook) */
    int route_rc;                  /* 0, ERR_NOTFOUND or ERR_METHOD */
    struct srv_route_match match;  /* valid when route_rc == 0 */
    char allow[SRV_ROUTE_ALLOW_CAP];
    int role;                      /* enum srv_auth_role of the presented key */
    /* response */
    unsigned status;               /* 0 until a reply is queued */
    int err;                       /* the ERR_* behind an error reply, else 0 */
    size_t bytes_out;              /* body bytes of the reply */
    bool aborted;                  /* on_done: the connection ended before the reply was sent */
    /* internal */
    void *conn;                    /* struct MHD_Connection * */
    void *hconn;                   /* per-connection state */
    size_t body_cap;               /* bytes allocated for body (counted in the shared budget) */
    uint64_t bytes_in;
    uint64_t content_length;       /* announced length, when has_length */
    bool has_length, chunked;
    bool must_close;               /* the reply closes the connection (framing in doubt) */
    bool complete;                 /* the whole request (headers and body) has arrived */
    bool raw_replied;              /* the reply went straight onto the socket (see http.c) */
    bool suspended;                /* MHD connection suspended (body parse in progress) */
    int parse_state;               /* none, running, done (http.c) */
    int parse_rc;
    const char *parse_why;
    void *parse_job;
    size_t n_headers;
    char *headers[SRV_REQ_MAX_HEADERS][2];
};

struct srv_http_hooks {
    void *ctx;
    /* Headers are complete: route and authenticate. May reply (srv_http_reply*): then the
     * body is not read and the connection is closed after the reply if a body was
     * announced. Else sets r->body_max (and body_raw) for the matched route. (required) */
    void (*on_head)(void *ctx, srv_req_t *r);
    /* The whole body is in and passed the generic checks. Must reply. (required) */
    void (*on_request)(void *ctx, srv_req_t *r);
    /* The request is over (reply sent, or the connection died: r->aborted). (required) */
    void (*on_done)(void *ctx, srv_req_t *r);
    /* Transport events for metrics (optional): open-connection delta, deadline closes,
     * connections refused over max-connections, bodies refused before on_request
     * ("too_large", "no_body", "bad_length", "bad_head", "content_type", "json",
     * "buffer_full"). */
    void (*on_connections)(void *ctx, int delta);
    void (*on_conn_timeout)(void *ctx);
    void (*on_conn_refused)(void *ctx);
    void (*on_body_rejected)(void *ctx, const char *reason);
};

struct srv_http_params {
    const char *host;              /* literal address or host name */
    int port;                      /* 0: any free port */
    size_t max_body_bytes;
    size_t max_buffered_bytes;     /* body bytes held across all connections (>= max_body_bytes) */
    double conn_timeout;           /* seconds */
    int max_connections;
    srv_tls_t *tls;                /* certificate set (borrowed; http keeps a reference), or
                                    * NULL for plain HTTP */
    struct log_sink log;
    struct srv_http_hooks hooks;
};

/* Binds and starts serving on loop. Errors: ERR_IO (bind/listen failed: message names the
 * address and says what to do), ERR_INVAL (bad host), ERR_NOMEM. */
int srv_http_new(uv_loop_t *loop, const struct srv_http_params *p, srv_http_t **out,
                 struct errbuf *eb);
/* Stops everything now: in-flight requests end (their on_done runs with aborted set).
 * Memory is released once the loop has run the close callbacks. NULL ok. */
void srv_http_free(srv_http_t *h);

int srv_http_port(const srv_http_t *h);          /* the bound port */
/* Replaces the certificate set for new handshakes (a SIGHUP reload); connections keep the
 * set they started with until they close. ERR_STATE if h was started without TLS. */
int srv_http_set_tls(srv_http_t *h, srv_tls_t *tls);
unsigned srv_http_in_flight(const srv_http_t *h);
unsigned srv_http_connections(const srv_http_t *h);
size_t srv_http_buffered(const srv_http_t *h);   /* body bytes held now (all connections) */

/* Stops accepting (the listening socket is closed), answers requests that start on existing
 * connections with 503 + Connection: close, and calls done(arg) from the loop once no
 * request is in flight. Idempotent; done is called once. */
void srv_http_drain(srv_http_t *h, void (*done)(void *arg), void *arg);

/* --- replies (inside hooks only) ------------------------------------------------------- */
/* Stages a response header for the reply (copied). Returns 0, ERR_TOOLARGE, ERR_NOMEM. */
int srv_http_header(srv_req_t *r, const char *name, const char *value);
/* Queues the reply; takes ownership of body (malloc'd, may be NULL when len is 0).
 * Returns 0 or ERR_STATE (already replied), ERR_NOMEM, ERR_IO (MHD refused). */
int srv_http_reply(srv_req_t *r, unsigned status, const char *content_type, char *body,
                   size_t len);
/* Serializes obj (reference stolen) compactly as application/json. */
int srv_http_reply_json(srv_req_t *r, unsigned status, json_t *obj);
/* The OpenAI error body for err (status and Retry-After through proto/status.h). fmt may be
 * NULL (err_str(err)); param names the offending field or is NULL. */
int srv_http_reply_error(srv_req_t *r, int err, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* A request header's value (case-insensitive name), or NULL. */
const char *srv_http_req_header(const srv_req_t *r, const char *name);

#endif
