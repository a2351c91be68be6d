/* server/server.c: the daemon's composition root: route table, the hooks http.c calls
 * (routing, auth, metrics, access log), model loading on its own thread, signals (drain on
 * SIGTERM/SIGINT, key reload on SIGHUP), the systemd watchdog, and the stop order. */
#include "server.h"

#include "../common/text.h"
#include "backend_select.h"
#include "handle.h"
#include "notify.h"
#include "opfile.h"
#include "orthod_config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

/* --- routes ------------------------------------------------------------------------------ */

static const struct srv_route routes[] = {
    {"/health", SRV_GET, SRV_ROLE_NONE, srv_handle_health, SRV_BODY_NONE, 0},
    {"/ready", SRV_GET, SRV_ROLE_NONE, srv_handle_ready, SRV_BODY_NONE, 0},
    {"/metrics", SRV_GET, SRV_ROLE_NONE, srv_handle_metrics, SRV_BODY_NONE, 0},
    {"/v1/models", SRV_GET, SRV_ROLE_INFERENCE, srv_handle_models, SRV_BODY_NONE, 0},
    {"/v1/models/{model}", SRV_GET, SRV_ROLE_INFERENCE, srv_handle_model, SRV_BODY_NONE, 0},
};
#define N_ROUTES (sizeof routes / sizeof routes[0])

static double wall_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double mono_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Every /v1 path needs a key when keys are configured, matched or not, so unauthenticated
 * clients cannot map the API. */
static bool path_needs_key(const char *path)
{
    return strncmp(path, "/v1", 3) == 0 && (path[3] == '\0' || path[3] == '/');
}

/* A log-safe copy: printable ASCII kept, quote/backslash/other bytes as \xNN, truncated. */
static void log_quote(char *dst, size_t cap, const char *src)
{
    text_escape(dst, cap, src, strlen(src), TEXT_LOG);
}

static const char *method_label(const char *m)
{
    static const char *const known[] = {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"};
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (m && strcmp(m, known[i]) == 0)
            return known[i];
    return "other";
}

/* --- http hooks -------------------------------------------------------------------------- */

static bool is_probe(const srv_req_t *r)
{
    if (r->route_rc != 0 || !r->match.route)
        return false;
    srv_route_fn fn = r->match.route->fn;
    return fn == srv_handle_health || fn == srv_handle_ready || fn == srv_handle_metrics;
}

/* Routes and authenticates before any body byte is read (server/http.h, intake step 2):
 * 401/403 for /v1 paths without the right key, then 404 and 405; a matched route says what
 * body it takes. */
static void on_head(void *ctx, srv_req_t *r)
{
    struct srv *s = ctx;
    r->route_rc = srv_router_match(routes, N_ROUTES, r->method, r->path, &r->match, r->allow,
                                   sizeof r->allow);
    if (r->http == s->admin_http && !is_probe(r)) {
        srv_http_reply_error(r, ERR_NOTFOUND, NULL, "the admin address serves /health, /ready "
                                                    "and /metrics only");
        return;
    }
    if (s->auth && path_needs_key(r->path)) {
        enum srv_auth_role have = SRV_ROLE_NONE;
        if (srv_auth_check(s->auth, srv_http_req_header(r, "Authorization"), &have) < 0) {
            srv_metrics_add(s->metrics, SRV_METRIC_AUTH_FAILURES,
                            (const char *const[]){"missing_or_invalid"}, 1);
            srv_http_header(r, "WWW-Authenticate", "Bearer");
            srv_http_reply_error(r, ERR_AUTH, NULL, "missing or invalid API key; send "
                                                    "`Authorization: Bearer KEY`");
            return;
        }
        r->role = (int)have;
        enum srv_auth_role need = r->route_rc == 0 ? r->match.route->role : SRV_ROLE_INFERENCE;
        if (srv_auth_allow(have, need) < 0) {
            srv_metrics_add(s->metrics, SRV_METRIC_AUTH_FAILURES,
                            (const char *const[]){"forbidden"}, 1);
            srv_http_reply_error(r, ERR_FORBIDDEN, NULL, "this API key has role %s; %s needs "
                                 "role %s", srv_auth_role_name(have),
                                 r->route_rc == 0 ? r->match.route->pattern : "this path",
                                 srv_auth_role_name(need));
            return;
        }
    }
    char path[256];
    switch (r->route_rc) {
    case 0:
        break;
    case ERR_METHOD:
        srv_http_header(r, "Allow", r->allow);
        log_quote(path, sizeof path, r->path);
        srv_http_reply_error(r, ERR_METHOD, NULL, "%s does not accept %s; allowed: %s", path,
                             method_label(r->method), r->allow);
        return;
    default:
        log_quote(path, sizeof path, r->path);
        srv_http_reply_error(r, ERR_NOTFOUND, NULL, "no such endpoint: %s", path);
        return;
    }
    const struct srv_route *rt = r->match.route;
    unsigned m = srv_router_method(r->method);
    if (rt->body != SRV_BODY_NONE && (m & (SRV_POST | SRV_PUT | SRV_PATCH))) {
        size_t max = s->cfg->max_body_bytes;
        r->body_max = rt->max_body && rt->max_body < max ? rt->max_body : max;
        r->body_raw = rt->body == SRV_BODY_RAW;
    }
}

static void on_request(void *ctx, srv_req_t *r)
{
    struct srv *s = ctx;
    r->match.route->fn(s, r);    // on_head answered every request without a route
}

static void on_done(void *ctx, srv_req_t *r)
{
    struct srv *s = ctx;
    double secs = (double)(uv_hrtime() - r->t_start_ns) * 1e-9;
    const char *route = r->route_rc == 0 && r->match.route ? r->match.route->pattern : "unmatched";
    char status[16];
    if (r->aborted && !r->status)
        snprintf(status, sizeof status, "aborted");
    else
        snprintf(status, sizeof status, "%u", r->status);
    const char *method = method_label(r->method);
    srv_metrics_add(s->metrics, SRV_METRIC_HTTP_REQUESTS,
                    (const char *const[]){route, method, status}, 1);
    srv_metrics_observe(s->metrics, SRV_METRIC_HTTP_DURATION, (const char *const[]){route}, secs);
    char path[300], meth[40];
    log_quote(path, sizeof path, r->path ? r->path : "");
    log_quote(meth, sizeof meth, r->method ? r->method : "");
    // health checks and scrapes that succeed are routine: debug, so they do not drown the log
    enum log_level lvl = is_probe(r) && (r->status == 200 || r->status == 503) ? LOG_DEBUG
                                                                                : LOG_INFO;
    log_emit(&s->log, lvl, "msg=request id=%s method=\"%s\" path=\"%s\" status=%s ms=%.3f in=%llu "
                           "out=%zu peer=%s%s%s%s", r->id, meth, path, status, secs * 1e3,
             (unsigned long long)r->bytes_in, r->bytes_out, r->peer, r->err ? " err=" : "",
             r->err ? err_name(r->err) : "", r->aborted ? " aborted=true" : "");
}

static void on_connections(void *ctx, int delta)
{
    struct srv *s = ctx;
    srv_metrics_add(s->metrics, SRV_METRIC_HTTP_CONNECTIONS, NULL, delta);
}

static void on_conn_timeout(void *ctx)
{
    struct srv *s = ctx;
    srv_metrics_add(s->metrics, SRV_METRIC_HTTP_CONN_CLOSED_SLOW, NULL, 1);
}

static void on_conn_refused(void *ctx)
{
    struct srv *s = ctx;
    srv_metrics_add(s->metrics, SRV_METRIC_HTTP_CONN_REFUSED, NULL, 1);
}

static void on_body_rejected(void *ctx, const char *reason)
{
    struct srv *s = ctx;
    srv_metrics_add(s->metrics, SRV_METRIC_HTTP_BODY_REJECTED, (const char *const[]){reason}, 1);
}

/* --- model loading (its own thread) -------------------------------------------------------- */

static void load_main(void *arg)
{
    struct srv *s = arg;
    // signals belong to the loop thread; the backend's worker threads inherit this mask
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGHUP);
    sigaddset(&mask, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &mask, NULL);
    double t0 = mono_seconds();
    eng_backend_t *be = NULL;
    eng_model_t *m = NULL;
    int rc = backend_select_new(s->cfg->device, s->cfg->threads, &s->log, &be, &s->load_eb);
    if (rc == 0) {
        struct eng_model_params mp = {.be = be, .log = s->log, .vocab_only = false};
        rc = eng_model_load(s->cfg->model, &mp, &m, &s->load_eb);
        if (rc < 0) {
            eng_backend_free(be);
            be = NULL;
        }
    }
    s->be = be;
    s->model = m;
    s->load_rc = rc;
    s->load_seconds = mono_seconds() - t0;
    uv_async_send(&s->loaded);
}

static void srv_stop(struct srv *s);

static void on_loaded(uv_async_t *a)
{
    struct srv *s = a->data;
    uv_thread_join(&s->load_thread);
    s->load_running = false;
    if (s->stopping) {
        uv_close((uv_handle_t *)&s->loaded, NULL);
        return;
    }
    if (s->load_rc < 0) {
        log_error(&s->log, "msg=\"model load failed; exiting\" model=\"%s\" error=%s detail=\"%s\"",
                  s->cfg->model, err_name(s->load_rc),
                  s->load_eb.msg[0] ? s->load_eb.msg : err_str(s->load_rc));
        srv_notify_send("STATUS=model load failed");
        s->exit_code = 1;
        srv_stop(s);
        return;
    }
    eng_model_info(s->model, &s->info);
    const char *id = s->cfg->model_alias ? s->cfg->model_alias : s->info.name;
    snprintf(s->model_id, sizeof s->model_id, "%s", id[0] ? id : "model");
    // the id goes into JSON (/ready, /v1/models) and is matched against URLs, and a model
    // file's name may hold any bytes: invalid UTF-8 and control characters become '?'
    // (one byte each, so the length stays), the same id everywhere
    char *clean = text_escape_dup(s->model_id, TEXT_JSON);
    if (clean) {
        memcpy(s->model_id, clean, strlen(clean) + 1);
        free(clean);
    } else {
        snprintf(s->model_id, sizeof s->model_id, "model");
    }
    s->loaded_at = (int64_t)wall_seconds();
    s->ready = true;
    srv_metrics_set(s->metrics, SRV_METRIC_MODEL_READY, NULL, 1);
    srv_metrics_set(s->metrics, SRV_METRIC_MODEL_LOAD_SECONDS, NULL, s->load_seconds);
    char mid[300];
    log_quote(mid, sizeof mid, s->model_id);
    log_info(&s->log, "msg=\"model loaded; ready\" id=\"%s\" arch=%s dtype=%s params=%lld "
                      "layers=%d embd=%d vocab=%d ctx_train=%d weight_mib=%.1f device=%s "
                      "load_s=%.3f", mid, s->info.arch, s->info.dtype,
             (long long)s->info.n_params, s->info.n_layer, s->info.n_embd, s->info.n_vocab,
             s->info.n_ctx_train, (double)s->info.weight_bytes / 1048576.0,
             eng_backend_name(s->be), s->load_seconds);
    char st[400];
    snprintf(st, sizeof st, "READY=1\nSTATUS=serving %s on port %d", mid, srv_http_port(s->http));
    srv_notify_send(st);
}

/* --- signals, watchdog, drain, stop ------------------------------------------------------- */

static void on_closed_noop(uv_handle_t *h)
{
    (void)h;
}

static void srv_stop(struct srv *s)
{
    if (s->stopping)
        return;
    s->stopping = true;
    srv_http_free(s->http);
    s->http = NULL;
    srv_http_free(s->admin_http);
    s->admin_http = NULL;
    // signal handlers stay installed until srv_free, so a signal during teardown is
    // handled (ignored) instead of killing the process; unref'd, they do not keep it alive
    uv_unref((uv_handle_t *)&s->sig_term);
    uv_unref((uv_handle_t *)&s->sig_int);
    uv_unref((uv_handle_t *)&s->sig_hup);
    uv_close((uv_handle_t *)&s->watchdog, on_closed_noop);
    uv_close((uv_handle_t *)&s->drain_deadline, on_closed_noop);
    // a reload still reading is left to its thread: it cannot hold the exit
    srv_opfile_job_abandon(s->reload_job);
    s->reload_job = NULL;
    // the load thread may still send: keep its async open until on_loaded has joined it
    if (!s->load_running)
        uv_close((uv_handle_t *)&s->loaded, on_closed_noop);
    else
        log_info(&s->log, "msg=\"waiting for the model load to finish before exiting\"");
}

static void on_drained(void *arg)
{
    struct srv *s = arg;
    log_info(&s->log, "msg=\"drained; exiting\"");
    srv_stop(s);
}

static void on_drain_deadline(uv_timer_t *t)
{
    struct srv *s = t->data;
    log_warn(&s->log, "msg=\"shutdown-timeout passed; closing requests still in flight\" "
                      "in_flight=%u timeout_s=%g", s->http ? srv_http_in_flight(s->http) : 0u,
             s->cfg->shutdown_timeout);
    srv_stop(s);
}

void srv_drain(struct srv *s)
{
    if (s->stopping)
        return;
    if (s->draining) {
        log_warn(&s->log, "msg=\"second stop signal: stopping now\"");
        srv_stop(s);
        return;
    }
    s->draining = true;
    srv_notify_send("STOPPING=1");
    log_info(&s->log, "msg=\"draining\" in_flight=%u shutdown_timeout_s=%g",
             srv_http_in_flight(s->http), s->cfg->shutdown_timeout);
    uv_timer_start(&s->drain_deadline, on_drain_deadline,
                   (uint64_t)ceil(s->cfg->shutdown_timeout * 1000.0), 0);
    srv_http_drain(s->http, on_drained, s);
}

static void on_stop_signal(uv_signal_t *h, int signum)
{
    struct srv *s = h->data;
    log_info(&s->log, "msg=\"signal received\" signal=%s", signum == SIGTERM ? "SIGTERM" : "SIGINT");
    srv_drain(s);
}

/* --- operator files: API keys and the TLS certificate, loaded on a thread of their own,
 * bounded in time (server/opfile.h), at start-up and on SIGHUP ------------------------------- */

struct files_load {
    /* in: copies, since the thread may outlive the config */
    char *key_path, *cert_path, *tls_key_path;
    /* out */
    srv_auth_t *auth;
    int auth_rc;
    unsigned key_mode;
    struct errbuf auth_eb;
    srv_tls_t *tls;
    int tls_rc;
    struct errbuf tls_eb;
};

static void files_load_fn(void *arg)
{
    struct files_load *f = arg;
    if (f->key_path)
        f->auth_rc = srv_auth_load(f->key_path, &f->auth, &f->key_mode, &f->auth_eb);
    if (f->cert_path)
        f->tls_rc = srv_tls_load(f->cert_path, f->tls_key_path, &f->tls, &f->tls_eb);
}

static void files_load_free(void *arg)
{
    struct files_load *f = arg;
    if (!f)
        return;
    srv_auth_free(f->auth);
    srv_tls_unref(f->tls);
    free(f->key_path);
    free(f->cert_path);
    free(f->tls_key_path);
    free(f);
}

static struct files_load *files_load_new(const struct srv_config *cfg)
{
    struct files_load *f = calloc(1, sizeof *f);
    if (!f)
        return NULL;
    bool ok = (!cfg->api_key_file || (f->key_path = strdup(cfg->api_key_file))) &&
              (!cfg->tls_cert || (f->cert_path = strdup(cfg->tls_cert))) &&
              (!cfg->tls_key || (f->tls_key_path = strdup(cfg->tls_key)));
    if (!ok) {
        files_load_free(f);
        return NULL;
    }
    return f;
}

static void warn_secret_mode(struct srv *s, const char *what, const char *path, unsigned mode)
{
    const char *w = srv_opfile_mode_warning(mode);
    if (w)
        log_warn(&s->log, "msg=\"%s: %s\" file=\"%s\" mode=%04o", what, w, path, mode);
}

static void log_tls(struct srv *s, const char *what, const struct files_load *f)
{
    const struct srv_tls_info *ti = srv_tls_info(f->tls);
    char exp[32] = "?";
    struct tm tm;
    if (ti->not_after > 0 && gmtime_r(&ti->not_after, &tm))
        strftime(exp, sizeof exp, "%Y-%m-%dT%H:%M:%SZ", &tm);
    char subject[300];
    log_quote(subject, sizeof subject, ti->subject);
    log_info(&s->log, "msg=\"%s\" cert=\"%s\" subject=\"%s\" chain=%u not_after=%s", what,
             f->cert_path, subject, ti->chain_len, exp);
    double left = difftime(ti->not_after, time(NULL));
    if (ti->not_after > 0 && left < 14 * 86400.0)
        log_warn(&s->log, "msg=\"TLS certificate %s; replace it and send SIGHUP\" cert=\"%s\" "
                          "not_after=%s", left < 0 ? "has expired" : "expires within 14 days",
                 f->cert_path, exp);
    warn_secret_mode(s, "TLS key file", f->tls_key_path, ti->key_mode);
}

static void start_reload(struct srv *s);

static void reload_done(void *ctx, void *arg, bool timed_out)
{
    struct srv *s = ctx;
    struct files_load *f = arg;
    s->reload_job = NULL;
    if (timed_out) {
        log_error(&s->log, "msg=\"reload abandoned: reading the key or certificate files took "
                           "longer than %g s; keeping the previous ones (is one on a hung "
                           "mount?)\"", SRV_OPFILE_TIMEOUT_S);
    } else {
        if (f->key_path && f->auth_rc == 0) {
            srv_auth_free(s->auth);
            s->auth = f->auth;
            f->auth = NULL;
            log_info(&s->log, "msg=\"API keys reloaded\" file=\"%s\" keys=%zu", f->key_path,
                     srv_auth_count(s->auth));
            warn_secret_mode(s, "API key file", f->key_path, f->key_mode);
        } else if (f->key_path) {
            log_error(&s->log, "msg=\"API key reload failed; keeping the previous keys\" "
                               "detail=\"%s\"", f->auth_eb.msg[0] ? f->auth_eb.msg
                                                                   : err_str(f->auth_rc));
        }
        if (f->cert_path && f->tls_rc == 0) {
            srv_http_set_tls(s->http, f->tls);
            log_tls(s, "TLS certificate reloaded (new connections use it)", f);
        } else if (f->cert_path) {
            log_error(&s->log, "msg=\"TLS certificate reload failed; keeping the previous one\" "
                               "detail=\"%s\"", f->tls_eb.msg[0] ? f->tls_eb.msg
                                                                 : err_str(f->tls_rc));
        }
    }
    files_load_free(f);
    // a SIGHUP that came meanwhile asked for the files as they are now
    if (s->reload_again && !s->stopping) {
        s->reload_again = false;
        start_reload(s);
    }
}

static void start_reload(struct srv *s)
{
    struct files_load *f = files_load_new(s->cfg);
    struct srv_opfile_work w = {files_load_fn, files_load_free, f};
    if (!f || srv_opfile_job_start(&s->loop, &w, SRV_OPFILE_TIMEOUT_S, reload_done, s,
                                   &s->reload_job) < 0) {
        files_load_free(f);
        log_error(&s->log, "msg=\"SIGHUP: cannot start the reload (out of memory or threads); "
                           "nothing reloaded\"");
    }
}

static void on_hup(uv_signal_t *h, int signum)
{
    (void)signum;
    struct srv *s = h->data;
    if (s->stopping)
        return;
    if (!s->cfg->api_key_file && !s->cfg->tls_cert) {
        log_info(&s->log, "msg=\"SIGHUP: no api-key-file or tls-cert configured; nothing to "
                          "reload\"");
        return;
    }
    if (s->reload_job) {
        // at most SRV_OPFILE_TIMEOUT_S away: then the files are read again, as they are then
        log_info(&s->log, "msg=\"SIGHUP: a reload is running; another follows it\"");
        s->reload_again = true;
        return;
    }
    start_reload(s);
}

/* Start-up: the same bounded load, waited for here (the loop is not running yet). Fills
 * s->auth and *tls. */
static int load_files_at_start(struct srv *s, srv_tls_t **tls, struct errbuf *eb)
{
    struct files_load *f = files_load_new(s->cfg);
    if (!f)
        return ERR_NOMEM;
    struct srv_opfile_work w = {files_load_fn, files_load_free, f};
    int rc = srv_opfile_run(&w, SRV_OPFILE_TIMEOUT_S);
    if (rc == ERR_TIMEOUT)    // f belongs to the stuck thread now
        return err_set(eb, ERR_IO, "reading %s%s%s took longer than %g s (is it on a hung "
                       "mount?)", s->cfg->api_key_file ? s->cfg->api_key_file : "",
                       s->cfg->api_key_file && s->cfg->tls_cert ? " or " : "",
                       s->cfg->tls_cert ? s->cfg->tls_cert : "", SRV_OPFILE_TIMEOUT_S);
    if (rc == 0 && f->key_path && (rc = f->auth_rc) < 0)
        err_set(eb, rc, "%s", f->auth_eb.msg[0] ? f->auth_eb.msg : err_str(rc));
    if (rc == 0 && f->cert_path && (rc = f->tls_rc) < 0)
        err_set(eb, rc, "%s", f->tls_eb.msg[0] ? f->tls_eb.msg : err_str(rc));
    if (rc == 0 && f->key_path) {
        s->auth = f->auth;
        f->auth = NULL;
        log_info(&s->log, "msg=\"API keys loaded\" file=\"%s\" keys=%zu", f->key_path,
                 srv_auth_count(s->auth));
        warn_secret_mode(s, "API key file", f->key_path, f->key_mode);
    }
    if (rc == 0 && f->cert_path) {
        log_tls(s, "TLS certificate loaded", f);
        *tls = f->tls;
        f->tls = NULL;
    }
    files_load_free(f);
    return rc;
}

static void on_watchdog(uv_timer_t *t)
{
    // firing at all means the loop is turning; that is what the watchdog guards
    (void)t;
    srv_notify_send("WATCHDOG=1");
}

/* --- lifetime ------------------------------------------------------------------------------ */

static bool host_is_loopback(const char *host)
{
    if (strcmp(host, "localhost") == 0)
        return true;
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, host, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, host, &a6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&a6);
    return false;
}

/* Every connection is a descriptor: max-connections (plus the connections accepted to be
 * refused, and what the daemon itself holds open) must fit RLIMIT_NOFILE. The soft limit
 * is raised as far as needed when the hard limit allows; else the daemon refuses to start,
 * instead of failing accept() under load. */
static int check_fd_limit(struct srv *s, struct errbuf *eb)
{
    rlim_t need = (rlim_t)s->cfg->max_connections + SRV_HTTP_FD_HEADROOM + SRV_FD_RESERVE;
    if (s->cfg->admin_listen)
        need += SRV_ADMIN_MAX_CONNECTIONS + SRV_HTTP_FD_HEADROOM;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= need)
        return 0;
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need)
        return err_set(eb, ERR_INVAL, "max-connections %d needs about %llu file descriptors "
                       "but the limit is %llu: raise it (LimitNOFILE= in the systemd unit, "
                       "ulimit -n) or lower max-connections", s->cfg->max_connections,
                       (unsigned long long)need, (unsigned long long)rl.rlim_max);
    rlim_t old = rl.rlim_cur;
    rl.rlim_cur = need;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
        return err_set(eb, ERR_IO, "cannot raise the file-descriptor limit to %llu: %s",
                       (unsigned long long)need, strerror(errno));
    log_info(&s->log, "msg=\"raised the file-descriptor soft limit for max-connections\" "
                      "from=%llu to=%llu", (unsigned long long)old, (unsigned long long)need);
    return 0;
}

int srv_new(const struct srv_config *cfg, const struct log_sink *log, struct srv **out,
            struct errbuf *eb)
{
    if (!cfg->model)
        return err_set(eb, ERR_INVAL, "--model is required (a GGUF file)");
    struct srv *s = calloc(1, sizeof *s);
    if (!s)
        return ERR_NOMEM;
    s->cfg = cfg;
    s->log = *log;
    int rc = uv_loop_init(&s->loop);
    if (rc < 0) {
        free(s);
        return err_set(eb, ERR_IO, "cannot create the event loop: %s", uv_strerror(rc));
    }
    if ((rc = srv_metrics_new(&s->metrics)) < 0 || (rc = check_fd_limit(s, eb)) < 0)
        goto fail;
    srv_metrics_set(s->metrics, SRV_METRIC_BUILD_INFO,
                    (const char *const[]){ORTHOD_VERSION, ORTHOD_GIT_REV,
                                          ORTHOD_HAVE_CUDA ? "yes" : "no"}, 1);
    srv_metrics_set(s->metrics, SRV_METRIC_START_TIME, NULL, floor(wall_seconds()));
    srv_tls_t *tls = NULL;
    if ((cfg->api_key_file || cfg->tls_cert) && (rc = load_files_at_start(s, &tls, eb)) < 0)
        goto fail;
    if (!cfg->api_key_file && !host_is_loopback(cfg->host)) {
        log_warn(&s->log, "msg=\"listening on a non-loopback address without API keys: anyone "
                          "who can reach it can use the API; set api-key-file\" host=%s",
                 cfg->host);
    }
    struct srv_http_params hp = {
        .host = cfg->host,
        .port = cfg->port,
        .max_body_bytes = cfg->max_body_bytes,
        .max_buffered_bytes = cfg->max_buffered_bytes,
        .conn_timeout = cfg->conn_timeout,
        .max_connections = cfg->max_connections,
        .tls = tls,
        .log = s->log,
        .hooks = {.ctx = s,
                  .on_head = on_head,
                  .on_request = on_request,
                  .on_done = on_done,
                  .on_connections = on_connections,
                  .on_conn_timeout = on_conn_timeout,
                  .on_conn_refused = on_conn_refused,
                  .on_body_rejected = on_body_rejected},
    };
    rc = srv_http_new(&s->loop, &hp, &s->http, eb);
    srv_tls_unref(tls);    // the transport holds its own reference
    if (rc < 0)
        goto fail;
    if (cfg->admin_listen) {
        // probes and scrapes only: no bodies, its own few connections, no connection metrics
        char host[256];
        struct srv_http_params ap = hp;
        if ((rc = srv_config_split_listen(cfg->admin_listen, host, sizeof host, &ap.port, eb)) < 0)
            goto fail;
        ap.host = host;
        ap.max_connections = SRV_ADMIN_MAX_CONNECTIONS;
        ap.max_buffered_bytes = ap.max_body_bytes;
        ap.tls = NULL;    // a private address: plain HTTP
        ap.hooks.on_connections = NULL;
        ap.hooks.on_conn_timeout = NULL;
        ap.hooks.on_conn_refused = NULL;
        if ((rc = srv_http_new(&s->loop, &ap, &s->admin_http, eb)) < 0)
            goto fail;
        log_info(&s->log, "msg=\"admin listening (health, ready, metrics)\" host=%s port=%d "
                          "max_connections=%d", host, srv_http_port(s->admin_http),
                 SRV_ADMIN_MAX_CONNECTIONS);
    }
    uv_signal_init(&s->loop, &s->sig_term);
    uv_signal_init(&s->loop, &s->sig_int);
    uv_signal_init(&s->loop, &s->sig_hup);
    s->sig_term.data = s->sig_int.data = s->sig_hup.data = s;
    uv_signal_start(&s->sig_term, on_stop_signal, SIGTERM);
    uv_signal_start(&s->sig_int, on_stop_signal, SIGINT);
    uv_signal_start(&s->sig_hup, on_hup, SIGHUP);
    uv_timer_init(&s->loop, &s->watchdog);
    uv_timer_init(&s->loop, &s->drain_deadline);
    s->watchdog.data = s->drain_deadline.data = s;
    uint64_t wd = srv_notify_watchdog_usec();
    if (wd > 0) {
        uint64_t ms = wd / 2000 ? wd / 2000 : 1;
        uv_timer_start(&s->watchdog, on_watchdog, ms, ms);
        log_info(&s->log, "msg=\"systemd watchdog on\" keepalive_ms=%llu", (unsigned long long)ms);
    }
    uv_async_init(&s->loop, &s->loaded, on_loaded);
    s->loaded.data = s;
    log_info(&s->log, "msg=listening host=%s port=%d max_connections=%d conn_timeout_s=%g "
                      "max_body_bytes=%zu max_buffered_bytes=%zu auth=%s tls=%s", cfg->host,
             srv_http_port(s->http), cfg->max_connections, cfg->conn_timeout,
             cfg->max_body_bytes, cfg->max_buffered_bytes, s->auth ? "on" : "off",
             cfg->tls_cert ? "on" : "off");
    log_info(&s->log, "msg=\"loading model\" model=\"%s\" device=%s", cfg->model, cfg->device);
    srv_notify_send("STATUS=loading model");
    if (uv_thread_create(&s->load_thread, load_main, s) != 0) {
        rc = err_set(eb, ERR_NOMEM, "cannot start the model loading thread");
        srv_stop(s);
        goto fail;
    }
    s->load_running = true;
    *out = s;
    return 0;
fail:
    srv_http_free(s->http);
    s->http = NULL;
    srv_http_free(s->admin_http);
    s->admin_http = NULL;
    if (s->stopping) {
        uv_close((uv_handle_t *)&s->sig_term, on_closed_noop);
        uv_close((uv_handle_t *)&s->sig_int, on_closed_noop);
        uv_close((uv_handle_t *)&s->sig_hup, on_closed_noop);
    }
    uv_run(&s->loop, UV_RUN_DEFAULT);    // lets closed handles finish
    uv_loop_close(&s->loop);
    srv_auth_free(s->auth);
    srv_metrics_free(s->metrics);
    free(s);
    return rc;
}

int srv_run(struct srv *s)
{
    // main() blocked these before anything else; the handlers are in place now, so a
    // signal that came during start-up is delivered here and handled by the loop
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    pthread_sigmask(SIG_UNBLOCK, &sigs, NULL);
    uv_run(&s->loop, UV_RUN_DEFAULT);
    return s->exit_code;
}

void srv_free(struct srv *s)
{
    if (!s)
        return;
    if (!s->stopping) {
        srv_stop(s);
    }
    // runs the close callbacks, and on_loaded if a load was still in progress
    uv_run(&s->loop, UV_RUN_DEFAULT);
    // the engine's threads go before the signal handlers do
    eng_model_free(s->model);
    eng_backend_free(s->be);
    uv_close((uv_handle_t *)&s->sig_term, on_closed_noop);
    uv_close((uv_handle_t *)&s->sig_int, on_closed_noop);
    uv_close((uv_handle_t *)&s->sig_hup, on_closed_noop);
    uv_run(&s->loop, UV_RUN_DEFAULT);
    int rc = uv_loop_close(&s->loop);
    if (rc != 0)
        log_error(&s->log, "msg=\"event loop closed with handles still open\" error=\"%s\"",
                  uv_strerror(rc));
    srv_auth_free(s->auth);
    srv_metrics_free(s->metrics);
    free(s);
}
