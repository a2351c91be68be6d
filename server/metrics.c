/* server/metrics.c: metric families, series storage and the text exposition. */
#include "metrics.h"

#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum metric_type { M_COUNTER, M_GAUGE, M_HISTOGRAM };

struct metric_def {
    const char *name;
    enum metric_type type;
    const char *help;
    int n_labels;
    const char *labels[SRV_METRICS_MAX_LABELS];
    const double *buckets;    /* histogram upper bounds, ascending; +Inf is implied */
    int n_buckets;
};

static const double duration_buckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                          0.1,    0.25,  0.5,    1,     2.5,  5,     10,
                                          30,     60,    120,    300};
#define N_DUR (int)(sizeof duration_buckets / sizeof duration_buckets[0])

static const struct metric_def metric_defs[SRV_METRIC__COUNT] = {
    [SRV_METRIC_BUILD_INFO] = {"orthod_build_info", M_GAUGE,
                               "Always 1; the labels say which orthod is running.", 3,
                               {"version", "git_rev", "cuda"}, NULL, 0},
    [SRV_METRIC_START_TIME] = {"orthod_process_start_time_seconds", M_GAUGE,
                               "Start time of the process since the Unix epoch, in seconds.", 0,
                               {NULL}, NULL, 0},
    [SRV_METRIC_HTTP_REQUESTS] = {"orthod_http_requests_total", M_COUNTER,
                                  "HTTP requests answered, by route pattern, method and status.",
                                  3, {"route", "method", "status"}, NULL, 0},
    [SRV_METRIC_HTTP_DURATION] = {"orthod_http_request_duration_seconds", M_HISTOGRAM,
                                  "Time from request headers received to response sent.", 1,
                                  {"route"}, duration_buckets, N_DUR},
    [SRV_METRIC_HTTP_IN_FLIGHT] = {"orthod_http_requests_in_flight", M_GAUGE,
                                   "Requests received and not yet answered.", 0, {NULL}, NULL, 0},
    [SRV_METRIC_HTTP_CONNECTIONS] = {"orthod_http_connections", M_GAUGE,
                                     "Open client connections.", 0, {NULL}, NULL, 0},
    [SRV_METRIC_HTTP_CONN_CLOSED_SLOW] = {"orthod_http_connections_timed_out_total", M_COUNTER,
                                          "Connections closed because a request did not arrive "
                                          "within conn-timeout.", 0, {NULL}, NULL, 0},
    [SRV_METRIC_HTTP_CONN_REFUSED] = {"orthod_http_connections_refused_total", M_COUNTER,
                                      "Connections refused with 503 because max-connections "
                                      "were open.", 0, {NULL}, NULL, 0},
    [SRV_METRIC_HTTP_BODY_REJECTED] = {"orthod_http_bodies_rejected_total", M_COUNTER,
                                       "Request bodies refused before any handler ran, by reason.",
                                       1, {"reason"}, NULL, 0},
    [SRV_METRIC_AUTH_FAILURES] = {"orthod_auth_failures_total", M_COUNTER,
                                  "Requests refused by API-key checks, by reason.", 1,
                                  {"reason"}, NULL, 0},
    [SRV_METRIC_MODEL_READY] = {"orthod_model_ready", M_GAUGE,
                                "1 once the model is loaded and requests can be served.", 0,
                                {NULL}, NULL, 0},
    [SRV_METRIC_MODEL_LOAD_SECONDS] = {"orthod_model_load_seconds", M_GAUGE,
                                       "Wall time the model took to load.", 0, {NULL}, NULL, 0},
};

#define LABEL_MAX 128

struct series {
    char *labels[SRV_METRICS_MAX_LABELS];
    double value;             /* counter/gauge; histogram: sum */
    unsigned long long count; /* histogram */
    unsigned long long *bucket_counts;   /* histogram: n_buckets (non-cumulative) */
};

struct family {
    struct series *s;
    size_t n, cap;
};

struct srv_metrics {
    struct family fam[SRV_METRIC__COUNT];
    unsigned long long dropped;
};

int srv_metrics_new(srv_metrics_t **out)
{
    srv_metrics_t *m = calloc(1, sizeof *m);
    if (!m)
        return ERR_NOMEM;
    *out = m;
    return 0;
}

void srv_metrics_free(srv_metrics_t *m)
{
    if (!m)
        return;
    for (int f = 0; f < SRV_METRIC__COUNT; f++) {
        for (size_t i = 0; i < m->fam[f].n; i++) {
            for (int l = 0; l < SRV_METRICS_MAX_LABELS; l++)
                free(m->fam[f].s[i].labels[l]);
            free(m->fam[f].s[i].bucket_counts);
        }
        free(m->fam[f].s);
    }
    free(m);
}

static bool label_eq(const char *stored, const char *v)
{
    return strncmp(stored, v ? v : "", LABEL_MAX) == 0;
}

/* Finds or creates the series for label_values. NULL when the cap is hit or out of memory. */
static struct series *series_get(srv_metrics_t *m, enum srv_metric id,
                                 const char *const *lv, int *rc)
{
    const struct metric_def *d = &metric_defs[id];
    struct family *fam = &m->fam[id];
    for (size_t i = 0; i < fam->n; i++) {
        int l = 0;
        while (l < d->n_labels && label_eq(fam->s[i].labels[l], lv[l]))
            l++;
        if (l == d->n_labels)
            return &fam->s[i];
    }
    if (fam->n == SRV_METRICS_MAX_SERIES) {
        m->dropped++;
        *rc = ERR_TOOLARGE;
        return NULL;
    }
    if (fam->n == fam->cap) {
        size_t nc = fam->cap ? fam->cap * 2 : 4;
        struct series *ns = realloc(fam->s, nc * sizeof *ns);
        if (!ns) {
            *rc = ERR_NOMEM;
            return NULL;
        }
        fam->s = ns;
        fam->cap = nc;
    }
    struct series s = {{NULL}, 0, 0, NULL};
    for (int l = 0; l < d->n_labels; l++) {
        s.labels[l] = strndup(lv[l] ? lv[l] : "", LABEL_MAX);
        if (!s.labels[l])
            goto nomem;
    }
    if (d->type == M_HISTOGRAM) {
        s.bucket_counts = calloc((size_t)d->n_buckets, sizeof *s.bucket_counts);
        if (!s.bucket_counts)
            goto nomem;
    }
    fam->s[fam->n] = s;
    return &fam->s[fam->n++];
nomem:
    for (int l = 0; l < d->n_labels; l++)
        free(s.labels[l]);
    *rc = ERR_NOMEM;
    return NULL;
}

static int update(srv_metrics_t *m, enum srv_metric id, const char *const *lv, double v,
                  int op)
{
    if ((unsigned)id >= SRV_METRIC__COUNT || (metric_defs[id].n_labels > 0 && !lv) || !isfinite(v))
        return ERR_INVAL;
    const struct metric_def *d = &metric_defs[id];
    if ((op == 0 && d->type == M_HISTOGRAM) || (op == 0 && d->type == M_COUNTER && v < 0) ||
        (op == 1 && d->type != M_GAUGE) || (op == 2 && d->type != M_HISTOGRAM))
        return ERR_INVAL;
    int rc = 0;
    struct series *s = series_get(m, id, lv, &rc);
    if (!s)
        return rc;
    switch (op) {
    case 0: s->value += v; break;
    case 1: s->value = v; break;
    case 2:
        s->value += v;
        s->count++;
        for (int b = 0; b < d->n_buckets; b++) {
            if (v <= d->buckets[b]) {
                s->bucket_counts[b]++;
                break;
            }
        }
        break;
    }
    return 0;
}

int srv_metrics_add(srv_metrics_t *m, enum srv_metric id, const char *const *lv, double v)
{
    return update(m, id, lv, v, 0);
}

int srv_metrics_set(srv_metrics_t *m, enum srv_metric id, const char *const *lv, double v)
{
    return update(m, id, lv, v, 1);
}

int srv_metrics_observe(srv_metrics_t *m, enum srv_metric id, const char *const *lv, double v)
{
    return update(m, id, lv, v, 2);
}

/* --- rendering --------------------------------------------------------------------------- */

struct sbuf {
    char *p;
    size_t len, cap;
    bool oom;
};

static void sb_printf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(struct sbuf *b, const char *fmt, ...)
{
    if (b->oom)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->oom = true;
            return;
        }
        if ((size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        size_t nc = (b->cap + (size_t)n + 1) * 2;
        char *np = realloc(b->p, nc);
        if (!np) {
            b->oom = true;
            return;
        }
        b->p = np;
        b->cap = nc;
    }
}

/* Label values escape \, " and newline (exposition format); other bytes pass through. */
static void sb_label_value(struct sbuf *b, const char *v)
{
    for (const char *p = v; *p; p++) {
        if (*p == '\\')
            sb_printf(b, "\\\\");
        else if (*p == '"')
            sb_printf(b, "\\\"");
        else if (*p == '\n')
            sb_printf(b, "\\n");
        else
            sb_printf(b, "%c", *p);
    }
}

static void sb_labels(struct sbuf *b, const struct metric_def *d, const struct series *s,
                      const char *le)
{
    if (d->n_labels == 0 && !le)
        return;
    sb_printf(b, "{");
    for (int l = 0; l < d->n_labels; l++) {
        sb_printf(b, "%s%s=\"", l ? "," : "", d->labels[l]);
        sb_label_value(b, s->labels[l]);
        sb_printf(b, "\"");
    }
    if (le)
        sb_printf(b, "%sle=\"%s\"", d->n_labels ? "," : "", le);
    sb_printf(b, "}");
}

static const char *type_name(enum metric_type t)
{
    return t == M_COUNTER ? "counter" : t == M_GAUGE ? "gauge" : "histogram";
}

int srv_metrics_render(const srv_metrics_t *m, char **out, size_t *out_len)
{
    struct sbuf b = {malloc(4096), 0, 4096, false};
    if (!b.p)
        return ERR_NOMEM;
    b.p[0] = '\0';
    for (int f = 0; f < SRV_METRIC__COUNT; f++) {
        const struct metric_def *d = &metric_defs[f];
        const struct family *fam = &m->fam[f];
        sb_printf(&b, "# HELP %s %s\n# TYPE %s %s\n", d->name, d->help, d->name,
                  type_name(d->type));
        // an unlabelled counter/gauge is always shown, as 0 before its first update
        if (fam->n == 0 && d->n_labels == 0 && d->type != M_HISTOGRAM)
            sb_printf(&b, "%s 0\n", d->name);
        for (size_t i = 0; i < fam->n; i++) {
            const struct series *s = &fam->s[i];
            if (d->type != M_HISTOGRAM) {
                sb_printf(&b, "%s", d->name);
                sb_labels(&b, d, s, NULL);
                sb_printf(&b, " %.17g\n", s->value);
                continue;
            }
            unsigned long long cum = 0;
            for (int k = 0; k < d->n_buckets; k++) {
                char le[32];
                snprintf(le, sizeof le, "%g", d->buckets[k]);
                cum += s->bucket_counts[k];
                sb_printf(&b, "%s_bucket", d->name);
                sb_labels(&b, d, s, le);
                sb_printf(&b, " %llu\n", cum);
            }
            sb_printf(&b, "%s_bucket", d->name);
            sb_labels(&b, d, s, "+Inf");
            sb_printf(&b, " %llu\n%s_sum", s->count, d->name);
            sb_labels(&b, d, s, NULL);
            sb_printf(&b, " %.17g\n%s_count", s->value, d->name);
            sb_labels(&b, d, s, NULL);
            sb_printf(&b, " %llu\n", s->count);
        }
    }
    sb_printf(&b, "# HELP orthod_metrics_dropped_total Samples dropped because a family hit its "
                  "series limit.\n# TYPE orthod_metrics_dropped_total counter\n"
                  "orthod_metrics_dropped_total %llu\n", m->dropped);
    if (b.oom) {
        free(b.p);
        return ERR_NOMEM;
    }
    *out = b.p;
    *out_len = b.len;
    return 0;
}
