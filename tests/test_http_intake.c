/* tests/test_http_intake.c: the transport (server/http.c) on its own, in this process: a
 * libuv loop on a thread runs srv_http with a small route table of its own (a JSON route, a
 * raw route, a route capped at 100 bytes, a route that takes no body), and the tests talk to
 * it over real sockets with raw bytes. This is where body reading is tested at its edges
 * (exactly the limit and one byte over, with a Content-Length and chunked, which under
 * ASan catches a write past the buffer), the shared body budget (max-buffered-bytes),
 * JSON bodies parsed off the loop, and draining with a request in flight. The daemon's own
 * routes take no body yet, so tests/test_http.c covers the rest against `orthod serve`.
 * Usage: test_http_intake (no arguments). */
#include "http.h"

#include <jansson.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <signal.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>

#include "rawsock.h"

#define LIMIT (256u * 1024u)          /* max-body-bytes of the test server */
#define BUDGET (600u * 1024u)         /* max-buffered-bytes */
#define SMALL 100u                    /* /small's own cap */
#define DEADLINE_S 30.0

struct tsrv {
    uv_loop_t loop;
    uv_thread_t thread;
    uv_async_t cmd;
    srv_http_t *http;
    int port;
    atomic_int op;                    /* command for the loop: 1 stop, 2 drain */
    atomic_int heads, requests, done, drained;
};

static struct tsrv S;
static srv_tls_t *start_tls;          /* the next srv_start serves HTTPS with this set */

/* --- the server side (loop thread) ------------------------------------------------------- */

static void t_on_head(void *ctx, srv_req_t *r)
{
    struct tsrv *t = ctx;
    atomic_fetch_add(&t->heads, 1);
    bool post = strcmp(r->method, "POST") == 0;
    if (post && strcmp(r->path, "/json") == 0) {
        r->body_max = LIMIT;
    } else if (post && strcmp(r->path, "/raw") == 0) {
        r->body_max = LIMIT;
        r->body_raw = true;
    } else if (post && strcmp(r->path, "/small") == 0) {
        r->body_max = SMALL;
    } else if (strcmp(r->method, "GET") == 0 && strcmp(r->path, "/none") == 0) {
        // takes no body: body_max stays 0
    } else {
        srv_http_reply_error(r, ERR_NOTFOUND, NULL, "no such endpoint");
    }
}

static void t_on_request(void *ctx, srv_req_t *r)
{
    struct tsrv *t = ctx;
    atomic_fetch_add(&t->requests, 1);
    json_t *o = json_pack("{s:I, s:I, s:I}", "len", (json_int_t)r->body_len, "keys",
                          (json_int_t)(r->json ? (json_int_t)json_object_size(r->json) : -1),
                          "buffered", (json_int_t)srv_http_buffered(r->http));
    srv_http_reply_json(r, 200, o);
}

static void t_on_done(void *ctx, srv_req_t *r)
{
    struct tsrv *t = ctx;
    (void)r;
    atomic_fetch_add(&t->done, 1);
}

static void t_drained(void *arg)
{
    struct tsrv *t = arg;
    atomic_store(&t->drained, 1);
}

static void t_on_cmd(uv_async_t *a)
{
    struct tsrv *t = a->data;
    int op = atomic_exchange(&t->op, 0);
    if (op == 1) {
        srv_http_free(t->http);
        t->http = NULL;
        uv_close((uv_handle_t *)&t->cmd, NULL);
    } else if (op == 2) {
        srv_http_drain(t->http, t_drained, t);
    }
}

static void t_loop(void *arg)
{
    struct tsrv *t = arg;
    uv_run(&t->loop, UV_RUN_DEFAULT);
}

static int srv_start(void **state)
{
    (void)state;
    memset(&S, 0, sizeof S);
    assert_int_equal(uv_loop_init(&S.loop), 0);
    struct srv_http_params p = {
        .host = "127.0.0.1",
        .port = 0,
        .max_body_bytes = LIMIT,
        .max_buffered_bytes = BUDGET,
        .conn_timeout = 20,
        .max_connections = 64,
        .tls = start_tls,
        .log = {NULL, NULL, LOG_ERROR},
        .hooks = {.ctx = &S, .on_head = t_on_head, .on_request = t_on_request,
                  .on_done = t_on_done},
    };
    struct errbuf eb = {{0}};
    if (srv_http_new(&S.loop, &p, &S.http, &eb) < 0)
        fail_msg("srv_http_new: %s", eb.msg);
    S.port = srv_http_port(S.http);
    uv_async_init(&S.loop, &S.cmd, t_on_cmd);
    S.cmd.data = &S;
    assert_int_equal(uv_thread_create(&S.thread, t_loop, &S), 0);
    return 0;
}

static void srv_command(int op)
{
    atomic_store(&S.op, op);
    uv_async_send(&S.cmd);
}

static int srv_stop(void **state)
{
    (void)state;
    srv_command(1);
    uv_thread_join(&S.thread);
    // every handle closed and every pool job returned: nothing left behind
    assert_int_equal(uv_loop_close(&S.loop), 0);
    return 0;
}

/* --- client helpers ---------------------------------------------------------------------- */

static int conn(void)
{
    int fd = raw_connect(S.port);
    assert_true(fd >= 0);
    return fd;
}

/* A valid JSON object of exactly n bytes (n >= 8): {"a":"xxx...x"} */
static char *json_of(size_t n)
{
    char *b = malloc(n + 1);
    assert_non_null(b);
    memcpy(b, "{\"a\":\"", 6);
    memset(b + 6, 'x', n - 8);
    memcpy(b + n - 2, "\"}", 2);
    b[n] = '\0';
    return b;
}

/* One request on a fresh connection; returns the status; resp gets the response. */
static int exchange(const char *head, const char *body, size_t blen, char *resp, size_t cap,
                    bool *closed)
{
    int fd = conn();
    assert_true(raw_send(fd, head, strlen(head)));
    if (body)
        raw_send(fd, body, blen);    // may fail once the server has answered and closed
    bool c = false;
    raw_read_response(fd, resp, cap, &c, DEADLINE_S);
    if (!c && closed)
        c = raw_wait_closed(fd, 0.5);
    if (closed)
        *closed = c;
    close(fd);
    return raw_status(resp);
}

static json_t *resp_json(const char *resp)
{
    const char *b = strstr(resp, "\r\n\r\n");
    assert_non_null(b);
    json_error_t je;
    json_t *j = json_loads(b + 4, 0, &je);
    if (!j)
        fail_msg("response body is not JSON: %.300s", b + 4);
    return j;
}

static void assert_error_code(const char *resp, const char *code)
{
    json_t *j = resp_json(resp);
    const char *c = json_string_value(json_object_get(json_object_get(j, "error"), "code"));
    if (!c || strcmp(c, code) != 0)
        fail_msg("want error code %s, got: %.300s", code, resp);
    json_decref(j);
}

static long resp_int(const char *resp, const char *key)
{
    json_t *j = resp_json(resp);
    long v = (long)json_integer_value(json_object_get(j, key));
    json_decref(j);
    return v;
}

/* Body bytes the server holds now (GET /none reports it; earlier requests are freed). */
static long server_buffered(void)
{
    static char resp[4096];
    assert_int_equal(exchange("GET /none HTTP/1.1\r\nHost: t\r\n\r\n", NULL, 0, resp,
                              sizeof resp, NULL), 200);
    return resp_int(resp, "buffered");
}

/* Waits until the server holds no body bytes; returns what it holds then. */
static long server_buffered_zero(void)
{
    double end = raw_now() + DEADLINE_S;
    long b;
    while ((b = server_buffered()) != 0 && raw_now() < end)
        raw_sleep_ms(10);
    return b;
}

/* Sends a chunked request whose body is n bytes of a JSON object split into chunks of at
 * most `piece` bytes; returns the status. */
static int post_chunked(const char *path, size_t n, size_t piece, char *resp, size_t cap,
                        bool *closed)
{
    int fd = conn();
    char head[256];
    snprintf(head, sizeof head, "POST %s HTTP/1.1\r\nHost: t\r\nContent-Type: application/json"
             "\r\nTransfer-Encoding: chunked\r\n\r\n", path);
    assert_true(raw_send(fd, head, strlen(head)));
    char *body = json_of(n);
    bool ok = true;
    for (size_t off = 0; off < n && ok; off += piece) {
        size_t k = n - off < piece ? n - off : piece;
        char line[32];
        snprintf(line, sizeof line, "%zx\r\n", k);
        ok = raw_send(fd, line, strlen(line)) && raw_send(fd, body + off, k) &&
             raw_send(fd, "\r\n", 2);
    }
    if (ok)
        raw_send(fd, "0\r\n\r\n", 5);
    free(body);
    bool c = false;
    raw_read_response(fd, resp, cap, &c, DEADLINE_S);
    if (!c)    // an error closes the connection; a success keeps it open
        c = raw_wait_closed(fd, raw_status(resp) >= 400 ? DEADLINE_S : 0.2);
    *closed = c;
    close(fd);
    return raw_status(resp);
}

/* --- tests ------------------------------------------------------------------------------- */

/* Exactly the limit is read; one byte over is 413 before a byte of it is read. */
static void test_length_edges(void **state)
{
    (void)state;
    static char resp[8192];
    char head[256];
    char *body = json_of(LIMIT);
    snprintf(head, sizeof head, "POST /json HTTP/1.1\r\nHost: t\r\nContent-Type: application/json"
             "\r\nContent-Length: %u\r\n\r\n", LIMIT);
    assert_int_equal(exchange(head, body, LIMIT, resp, sizeof resp, NULL), 200);
    assert_int_equal(resp_int(resp, "len"), LIMIT);
    assert_int_equal(resp_int(resp, "keys"), 1);
    free(body);
    // LIMIT + 1: refused on the announced length, nothing sent after the head
    snprintf(head, sizeof head, "POST /json HTTP/1.1\r\nHost: t\r\nContent-Type: application/json"
             "\r\nContent-Length: %u\r\n\r\n", LIMIT + 1);
    bool closed;
    assert_int_equal(exchange(head, NULL, 0, resp, sizeof resp, &closed), 413);
    assert_error_code(resp, "request_too_large");
    assert_true(closed);
    // a route's own cap, below max-body-bytes
    body = json_of(SMALL + 1);
    snprintf(head, sizeof head, "POST /small HTTP/1.1\r\nHost: t\r\nContent-Type: "
             "application/json\r\nContent-Length: %u\r\n\r\n", SMALL);
    char *fits = json_of(SMALL);
    assert_int_equal(exchange(head, fits, SMALL, resp, sizeof resp, NULL), 200);
    free(fits);
    snprintf(head, sizeof head, "POST /small HTTP/1.1\r\nHost: t\r\nContent-Type: "
             "application/json\r\nContent-Length: %u\r\n\r\n", SMALL + 1);
    assert_int_equal(exchange(head, body, SMALL + 1, resp, sizeof resp, NULL), 413);
    free(body);
}

/* A chunked body has no length up front: exactly the limit is read (in pieces of every
 * size), one byte more is 413 the moment it arrives, in the OpenAI error shape, and the
 * connection then closes. Under ASan this catches a write past the body buffer. */
static void test_chunked_edges(void **state)
{
    (void)state;
    static char resp[8192];
    bool closed;
    const size_t pieces[] = {LIMIT, 4096, 1000, 65536 + 7};
    for (size_t i = 0; i < sizeof pieces / sizeof pieces[0]; i++) {
        assert_int_equal(post_chunked("/json", LIMIT, pieces[i], resp, sizeof resp, &closed), 200);
        assert_int_equal(resp_int(resp, "len"), LIMIT);
        assert_false(closed);
        int st = post_chunked("/json", LIMIT + 1, pieces[i], resp, sizeof resp, &closed);
        if (st != 413)
            fail_msg("chunked LIMIT+1 in pieces of %zu: got %.300s", pieces[i], resp);
        assert_error_code(resp, "request_too_large");
        assert_non_null(strcasestr(resp, "Connection: close"));
        assert_true(closed);
    }
    // the route cap applies to chunked bodies too
    assert_int_equal(post_chunked("/small", SMALL, 7, resp, sizeof resp, &closed), 200);
    assert_int_equal(post_chunked("/small", SMALL + 1, 7, resp, sizeof resp, &closed), 413);
    // and everything held was given back
    assert_int_equal(server_buffered_zero(), 0);
}

/* A chunk-size line of 2^64 - 1: libmicrohttpd 0.9.75 takes it and waits for the data; it
 * does not tell the application the size, so the body is refused when its bytes pass the
 * limit (413, in the OpenAI shape), not at the size line (docs/security.md). One hex digit
 * more overflows 64 bits and libmicrohttpd answers 413 itself, at once (its own HTML). */
static void test_chunk_size_overflow(void **state)
{
    (void)state;
    static char resp[8192];
    const char head[] = "POST /json HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                        "Transfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n";
    int fd = conn();
    assert_true(raw_send(fd, head, sizeof head - 1));
    char *body = json_of(LIMIT + 1);
    raw_send(fd, body, LIMIT + 1);
    free(body);
    bool closed;
    raw_read_response(fd, resp, sizeof resp, &closed, DEADLINE_S);
    if (raw_status(resp) != 413)
        fail_msg("chunk of 2^64-1 bytes past the limit: %.300s", resp);
    assert_error_code(resp, "request_too_large");
    assert_true(closed || raw_wait_closed(fd, DEADLINE_S));
    close(fd);
    const char over[] = "POST /json HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                        "Transfer-Encoding: chunked\r\n\r\n10000000000000000\r\n";
    assert_int_equal(exchange(over, NULL, 0, resp, sizeof resp, &closed), 413);
    assert_true(closed);
}

/* A route that takes no body refuses one before reading it; a route that does not exist
 * answers 404 without reading the body it was sent. */
static void test_unread_bodies(void **state)
{
    (void)state;
    static char resp[8192];
    bool closed;
    assert_int_equal(exchange("GET /none HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\n", NULL,
                              0, resp, sizeof resp, &closed), 413);
    assert_non_null(strstr(resp, "takes no request body"));
    assert_true(closed);
    assert_int_equal(exchange("GET /none HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n",
                              NULL, 0, resp, sizeof resp, &closed), 413);
    assert_int_equal(exchange("GET /none HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n", NULL,
                              0, resp, sizeof resp, NULL), 200);
    int before = atomic_load(&S.requests);
    assert_int_equal(exchange("POST /elsewhere HTTP/1.1\r\nHost: t\r\nContent-Type: "
                              "application/json\r\nContent-Length: 200000\r\n\r\n", NULL, 0,
                              resp, sizeof resp, &closed), 404);
    assert_true(closed);
    assert_int_equal(atomic_load(&S.requests), before);
}

static void test_json_checks(void **state)
{
    (void)state;
    static char resp[8192];
    char head[256];
    const char *bad[] = {"{bad", "{\"a\":1,}", "[1,2]", "{\"a\":1}{", "{\"a\":1,\"a\":2}",
                         "\"\xff\"", "{\"a\":\"\\u0000\"}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(head, sizeof head, "POST /json HTTP/1.1\r\nHost: t\r\nContent-Type: "
                 "application/json\r\nContent-Length: %zu\r\n\r\n", strlen(bad[i]));
        if (exchange(head, bad[i], strlen(bad[i]), resp, sizeof resp, NULL) != 400)
            fail_msg("body %zu (%s) was accepted: %.300s", i, bad[i], resp);
        assert_error_code(resp, "malformed_request");
    }
    snprintf(head, sizeof head, "POST /json HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\n"
             "Content-Length: 2\r\n\r\n");
    assert_int_equal(exchange(head, "{}", 2, resp, sizeof resp, NULL), 400);
    assert_non_null(strstr(resp, "Content-Type"));
    // a raw route takes any bytes
    snprintf(head, sizeof head, "POST /raw HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\n"
             "Content-Length: 5\r\n\r\n");
    assert_int_equal(exchange(head, "{bad\x01", 5, resp, sizeof resp, NULL), 200);
    assert_int_equal(resp_int(resp, "keys"), -1);
}

/* Large bodies are parsed on the libuv pool, at most HTTP_PARSE_MAX_ACTIVE at once: many
 * at a time all come back right, a broken one is a 400. */
static void test_json_off_loop(void **state)
{
    (void)state;
    int fds[4];
    char head[256];
    // sent back to back without reading, so that some wait for a parse slot
    size_t n = LIMIT / 3;
    assert_true(n > HTTP_JSON_INLINE_MAX);
    char *body = json_of(n);
    for (int i = 0; i < 3; i++) {
        fds[i] = conn();
        snprintf(head, sizeof head, "POST /json HTTP/1.1\r\nHost: t\r\nContent-Type: "
                 "application/json\r\nContent-Length: %zu\r\n\r\n", n);
        assert_true(raw_send(fds[i], head, strlen(head)));
        assert_true(raw_send(fds[i], body, n));
    }
    // a broken large one
    body[n / 2] = '\x01';
    fds[3] = conn();
    assert_true(raw_send(fds[3], head, strlen(head)));
    assert_true(raw_send(fds[3], body, n));
    static char resp[8192];
    for (int i = 0; i < 4; i++) {
        bool closed;
        raw_read_response(fds[i], resp, sizeof resp, &closed, DEADLINE_S);
        if (i < 3) {
            assert_int_equal(raw_status(resp), 200);
            assert_int_equal(resp_int(resp, "len"), n);
            assert_int_equal(resp_int(resp, "keys"), 1);
        } else {
            assert_int_equal(raw_status(resp), 400);
            assert_error_code(resp, "malformed_request");
        }
        close(fds[i]);
    }
    free(body);
}

/* Bodies held across connections stay under max-buffered-bytes: a Content-Length that does
 * not fit is 503 with Retry-After before it is read, a chunked body that grows past it is
 * 503 then, and the budget comes back when requests end. */
static void test_buffer_budget(void **state)
{
    (void)state;
    char head[256];
    size_t part = 200 * 1024;
    char *body = json_of(LIMIT);
    int held[2];
    snprintf(head, sizeof head, "POST /json HTTP/1.1\r\nHost: t\r\nContent-Type: application/json"
             "\r\nContent-Length: %u\r\n\r\n", LIMIT);
    int heads0 = atomic_load(&S.heads);
    for (int i = 0; i < 2; i++) {
        held[i] = conn();
        assert_true(raw_send(held[i], head, strlen(head)));
        assert_true(raw_send(held[i], body, part));
    }
    // wait until the server holds both (GET /none reports what is buffered)
    static char resp[8192];
    bool closed;
    double end = raw_now() + DEADLINE_S;
    long held_bytes = 0;
    while ((held_bytes = server_buffered()) < (long)(2 * part) && raw_now() < end)
        raw_sleep_ms(10);
    assert_true(held_bytes >= (long)(2 * part));
    assert_true(atomic_load(&S.heads) >= heads0 + 2);
    // a third whole body does not fit: 503 up front, with Retry-After
    assert_int_equal(exchange(head, NULL, 0, resp, sizeof resp, &closed), 503);
    assert_non_null(strcasestr(resp, "Retry-After: "));
    assert_true(closed);
    // a chunked one is refused when it grows past what is left
    int st = post_chunked("/json", LIMIT, 8192, resp, sizeof resp, &closed);
    if (st != 503)
        fail_msg("chunked body past the budget: %.300s", resp);
    assert_non_null(strcasestr(resp, "Retry-After: "));
    assert_true(closed);
    // the held ones finish normally; then the whole budget is free again
    for (int i = 0; i < 2; i++) {
        assert_true(raw_send(held[i], body + part, LIMIT - part));
        raw_read_response(held[i], resp, sizeof resp, &closed, DEADLINE_S);
        assert_int_equal(raw_status(resp), 200);
        close(held[i]);
    }
    free(body);
    assert_int_equal(server_buffered_zero(), 0);
    body = json_of(LIMIT);
    assert_int_equal(exchange(head, body, LIMIT, resp, sizeof resp, NULL), 200);
    free(body);
}

struct upload {
    size_t left;
    bool header_sent;
};

static size_t on_read(char *buf, size_t sz, size_t n, void *ud)
{
    struct upload *u = ud;
    size_t k = sz * n < u->left ? sz * n : u->left;
    memset(buf, ' ', k);
    if (!u->header_sent && k > 0) {
        buf[0] = '{';
        u->header_sent = true;
    }
    u->left -= k;
    return k;
}

static size_t on_write(char *p, size_t sz, size_t n, void *ud)
{
    char *dst = ud;
    size_t have = strlen(dst), k = sz * n;
    if (have + k < 8192) {
        memcpy(dst + have, p, k);
        dst[have + k] = '\0';
    }
    return k;
}

/* Over TLS, a body refused in mid-upload still gets its 413 (written through the
 * connection's TLS session), and a body at the limit is read. curl uploads chunked. */
static void test_tls_mid_body(void **state)
{
    (void)state;
    char dir[] = "/tmp/orthod_test_intake_tls_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char cmd[1024], crt[128], key[128];
    snprintf(crt, sizeof crt, "%s/c.crt", dir);
    snprintf(key, sizeof key, "%s/c.key", dir);
    snprintf(cmd, sizeof cmd, "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 "
             "-nodes -days 2 -subj /CN=intake -addext subjectAltName=IP:127.0.0.1 -keyout %s "
             "-out %s >/dev/null 2>&1", key, crt);
    if (system(cmd) != 0)
        skip();
    struct errbuf eb = {{0}};
    if (srv_tls_load(crt, key, &start_tls, &eb) < 0)
        fail_msg("srv_tls_load: %s", eb.msg);
    srv_stop(NULL);
    srv_start(NULL);
    srv_tls_unref(start_tls);    // the transport holds its own reference
    start_tls = NULL;
    const size_t sizes[] = {LIMIT, LIMIT + 1};
    for (int i = 0; i < 2; i++) {
        CURL *c = curl_easy_init();
        char url[128];
        snprintf(url, sizeof url, "https://127.0.0.1:%d/json", S.port);
        struct upload u = {sizes[i], false};
        static char body[8192];
        body[0] = '\0';
        struct curl_slist *hl = curl_slist_append(NULL, "Transfer-Encoding: chunked");
        hl = curl_slist_append(hl, "Content-Type: application/json");
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_CAINFO, crt);
        curl_easy_setopt(c, CURLOPT_POST, 1L);
        curl_easy_setopt(c, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(c, CURLOPT_READDATA, &u);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_write);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, body);
        curl_easy_setopt(c, CURLOPT_TIMEOUT, (long)DEADLINE_S);
        CURLcode cc = curl_easy_perform(c);
        long st = 0;
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &st);
        curl_slist_free_all(hl);
        curl_easy_cleanup(c);
        if (i == 0) {
            // the body is '{' and spaces: not JSON, but it was read in full to say so
            if (cc != CURLE_OK || st != 400)
                fail_msg("TLS body at the limit: curl %d, status %ld, %s", cc, st, body);
        } else {
            if (st != 413 || !strstr(body, "\"request_too_large\""))
                fail_msg("TLS body over the limit: curl %d (%s), status %ld, body %s", cc,
                         curl_easy_strerror(cc), st, body);
        }
    }
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
    srv_stop(NULL);
    srv_start(NULL);    // plain again for the rest
}

/* Draining: the listening socket closes, the request in flight finishes with
 * Connection: close, then the drain completes. */
static void test_drain_in_flight(void **state)
{
    (void)state;
    int fd = conn();
    const char head[] = "POST /json HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                        "Content-Length: 8\r\n\r\n{\"a\":";
    int heads0 = atomic_load(&S.heads);
    assert_true(raw_send(fd, head, sizeof head - 1));
    double end = raw_now() + DEADLINE_S;
    while (atomic_load(&S.heads) == heads0 && raw_now() < end)
        raw_sleep_ms(10);
    srv_command(2);
    end = raw_now() + DEADLINE_S;
    int probe = -1;
    while (raw_now() < end && (probe = raw_connect(S.port)) >= 0) {
        close(probe);
        raw_sleep_ms(10);
    }
    assert_true(probe < 0);    // no longer accepting
    raw_sleep_ms(100);
    assert_int_equal(atomic_load(&S.drained), 0);    // it waits for our request
    assert_true(raw_send(fd, "12}", 3));
    static char resp[4096];
    bool closed;
    raw_read_response(fd, resp, sizeof resp, &closed, DEADLINE_S);
    assert_int_equal(raw_status(resp), 200);
    assert_non_null(strcasestr(resp, "Connection: close"));
    close(fd);
    end = raw_now() + DEADLINE_S;
    while (!atomic_load(&S.drained) && raw_now() < end)
        raw_sleep_ms(10);
    assert_int_equal(atomic_load(&S.drained), 1);
}

/* Stopping while large bodies are parsed or waiting for a slot loses nothing and leaks
 * nothing (srv_stop checks that the loop closes clean; ASan checks the memory). */
static void test_stop_while_parsing(void **state)
{
    (void)state;
    enum { N = 4 };
    int fds[N];
    char head[256];
    size_t n = LIMIT / 2;
    char *body = json_of(n);
    snprintf(head, sizeof head, "POST /json HTTP/1.1\r\nHost: t\r\nContent-Type: application/json"
             "\r\nContent-Length: %zu\r\n\r\n", n);
    int heads0 = atomic_load(&S.heads);
    for (int i = 0; i < N; i++) {
        fds[i] = conn();
        raw_send(fds[i], head, strlen(head));
        raw_send(fds[i], body, n);
    }
    double end = raw_now() + DEADLINE_S;
    while (atomic_load(&S.heads) < heads0 + N && raw_now() < end)
        raw_sleep_ms(1);
    free(body);
    srv_stop(NULL);
    for (int i = 0; i < N; i++)
        close(fds[i]);
    srv_start(NULL);    // the group teardown stops this one
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_length_edges),
        cmocka_unit_test(test_chunked_edges),
        cmocka_unit_test(test_chunk_size_overflow),
        cmocka_unit_test(test_unread_bodies),
        cmocka_unit_test(test_json_checks),
        cmocka_unit_test(test_json_off_loop),
        cmocka_unit_test(test_buffer_budget),
        cmocka_unit_test(test_stop_while_parsing),
        cmocka_unit_test(test_tls_mid_body),
        cmocka_unit_test(test_drain_in_flight),    // last: the server no longer listens
    };
    int failed = cmocka_run_group_tests_name("http intake", tests, srv_start, srv_stop);
    curl_global_cleanup();
    return failed;
}
