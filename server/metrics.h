/* server/metrics.h: Prometheus metrics (text exposition format 0.0.4, `orthod_` prefix).
 * Owns the metric families (one enum value + one table row each, in metrics.c), their
 * series (one per distinct label-value tuple, capped per family) and rendering.
 * Adding a metric later (TTFT/TPOT histograms, tokens, queue depth, KV blocks) is one enum
 * value and one row; engine-side numbers are handed to the loop thread and recorded here.
 * Thread: loop thread only (no locking). */
#ifndef ORTHOD_SERVER_METRICS_H
#define ORTHOD_SERVER_METRICS_H

#include "../common/err.h"

#include <stddef.h>

enum srv_metric {
    SRV_METRIC_BUILD_INFO,            /* gauge 1 {version, git_rev, cuda} */
    SRV_METRIC_START_TIME,            /* process_start_time_seconds */
    SRV_METRIC_HTTP_REQUESTS,         /* counter {route, method, status} */
    SRV_METRIC_HTTP_DURATION,         /* histogram seconds {route} */
    SRV_METRIC_HTTP_IN_FLIGHT,        /* gauge */
    SRV_METRIC_HTTP_CONNECTIONS,      /* gauge: open connections */
    SRV_METRIC_HTTP_CONN_CLOSED_SLOW, /* counter: connections closed by conn-timeout */
    SRV_METRIC_HTTP_CONN_REFUSED,     /* counter: connections refused over max-connections */
    SRV_METRIC_HTTP_BODY_REJECTED,    /* counter {reason}: too_large, no_body, bad_length,
                                       * buffer_full, bad_head, content_type, json */
    SRV_METRIC_AUTH_FAILURES,         /* counter {reason}: missing_or_invalid, forbidden */
    SRV_METRIC_MODEL_READY,           /* gauge 0/1 */
    SRV_METRIC_MODEL_LOAD_SECONDS,    /* gauge */
    SRV_METRIC__COUNT
};

#define SRV_METRICS_MAX_LABELS 4
#define SRV_METRICS_MAX_SERIES 512    /* per family; further label tuples are dropped */

typedef struct srv_metrics srv_metrics_t;

int srv_metrics_new(srv_metrics_t **out);
void srv_metrics_free(srv_metrics_t *m);    /* NULL ok */

/* label_values: exactly as many as the family declares (NULL when it has none); any bytes
 * are allowed (escaped when rendered). A value is truncated at 128 bytes.
 * Returns 0, ERR_INVAL (wrong family type), ERR_TOOLARGE (series cap hit: the sample is
 * dropped and counted in orthod_metrics_dropped_total), ERR_NOMEM. */
int srv_metrics_add(srv_metrics_t *m, enum srv_metric id, const char *const *label_values,
                    double v);    /* counter (v >= 0) or gauge */
int srv_metrics_set(srv_metrics_t *m, enum srv_metric id, const char *const *label_values,
                    double v);    /* gauge */
int srv_metrics_observe(srv_metrics_t *m, enum srv_metric id, const char *const *label_values,
                        double v);    /* histogram */

/* Renders every family into a heap string (caller frees). Returns 0 or ERR_NOMEM. */
int srv_metrics_render(const srv_metrics_t *m, char **out, size_t *out_len);

#endif
