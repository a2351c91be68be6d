/* tests/test_metrics.c: server/metrics.c: counters, gauges, histograms (cumulative buckets,
 * sum, count), label escaping, the per-family series cap, and type misuse. */
#include "metrics.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static char *render(srv_metrics_t *m)
{
    char *s = NULL;
    size_t n = 0;
    assert_int_equal(srv_metrics_render(m, &s, &n), 0);
    assert_int_equal(n, strlen(s));
    return s;
}

static void want_line(const char *text, const char *line)
{
    char buf[512];
    snprintf(buf, sizeof buf, "\n%s\n", line);
    if (!strstr(text, buf)) {
        print_error("missing line '%s' in:\n%s\n", line, text);
        fail();
    }
}

static void test_counters_and_gauges(void **state)
{
    (void)state;
    srv_metrics_t *m = NULL;
    assert_int_equal(srv_metrics_new(&m), 0);
    char *t = render(m);
    want_line(t, "orthod_http_requests_in_flight 0");        // unlabelled: present from the start
    want_line(t, "# TYPE orthod_http_requests_total counter");
    want_line(t, "# TYPE orthod_http_request_duration_seconds histogram");
    free(t);
    const char *l1[] = {"/health", "GET", "200"};
    const char *l2[] = {"/health", "GET", "404"};
    assert_int_equal(srv_metrics_add(m, SRV_METRIC_HTTP_REQUESTS, l1, 1), 0);
    assert_int_equal(srv_metrics_add(m, SRV_METRIC_HTTP_REQUESTS, l1, 1), 0);
    assert_int_equal(srv_metrics_add(m, SRV_METRIC_HTTP_REQUESTS, l2, 1), 0);
    assert_int_equal(srv_metrics_set(m, SRV_METRIC_MODEL_READY, NULL, 1), 0);
    assert_int_equal(srv_metrics_add(m, SRV_METRIC_HTTP_CONNECTIONS, NULL, 3), 0);
    assert_int_equal(srv_metrics_add(m, SRV_METRIC_HTTP_CONNECTIONS, NULL, -1), 0);
    t = render(m);
    want_line(t, "orthod_http_requests_total{route=\"/health\",method=\"GET\",status=\"200\"} 2");
    want_line(t, "orthod_http_requests_total{route=\"/health\",method=\"GET\",status=\"404\"} 1");
    want_line(t, "orthod_model_ready 1");
    want_line(t, "orthod_http_connections 2");
    want_line(t, "orthod_metrics_dropped_total 0");
    free(t);
    srv_metrics_free(m);
    srv_metrics_free(NULL);
}

static void test_histogram(void **state)
{
    (void)state;
    srv_metrics_t *m = NULL;
    assert_int_equal(srv_metrics_new(&m), 0);
    const char *l[] = {"/v1/models"};
    assert_int_equal(srv_metrics_observe(m, SRV_METRIC_HTTP_DURATION, l, 0.0001), 0);
    assert_int_equal(srv_metrics_observe(m, SRV_METRIC_HTTP_DURATION, l, 0.003), 0);
    assert_int_equal(srv_metrics_observe(m, SRV_METRIC_HTTP_DURATION, l, 1000), 0);
    char *t = render(m);
    want_line(t, "orthod_http_request_duration_seconds_bucket{route=\"/v1/models\",le=\"0.0005\"} 1");
    want_line(t, "orthod_http_request_duration_seconds_bucket{route=\"/v1/models\",le=\"0.0025\"} 1");
    want_line(t, "orthod_http_request_duration_seconds_bucket{route=\"/v1/models\",le=\"0.005\"} 2");
    want_line(t, "orthod_http_request_duration_seconds_bucket{route=\"/v1/models\",le=\"300\"} 2");
    want_line(t, "orthod_http_request_duration_seconds_bucket{route=\"/v1/models\",le=\"+Inf\"} 3");
    want_line(t, "orthod_http_request_duration_seconds_count{route=\"/v1/models\"} 3");
    assert_non_null(strstr(t, "orthod_http_request_duration_seconds_sum{route=\"/v1/models\"} 1000.0031"));
    free(t);
    srv_metrics_free(m);
}

static void test_escaping(void **state)
{
    (void)state;
    srv_metrics_t *m = NULL;
    assert_int_equal(srv_metrics_new(&m), 0);
    const char *l[] = {"a\"b\\c\nd"};
    assert_int_equal(srv_metrics_add(m, SRV_METRIC_HTTP_BODY_REJECTED, l, 1), 0);
    char *t = render(m);
    want_line(t, "orthod_http_bodies_rejected_total{reason=\"a\\\"b\\\\c\\nd\"} 1");
    free(t);
    srv_metrics_free(m);
}

static void test_misuse_and_cap(void **state)
{
    (void)state;
    srv_metrics_t *m = NULL;
    assert_int_equal(srv_metrics_new(&m), 0);
    const char *l[] = {"x"};
    assert_int_equal(srv_metrics_observe(m, SRV_METRIC_HTTP_IN_FLIGHT, NULL, 1), ERR_INVAL);
    assert_int_equal(srv_metrics_set(m, SRV_METRIC_HTTP_REQUESTS, l, 1), ERR_INVAL);
    assert_int_equal(srv_metrics_add(m, SRV_METRIC_HTTP_DURATION, l, 1), ERR_INVAL);
    assert_int_equal(srv_metrics_add(m, SRV_METRIC_AUTH_FAILURES, l, -1), ERR_INVAL);   // counters only grow
    assert_int_equal(srv_metrics_add(m, SRV_METRIC_AUTH_FAILURES, NULL, 1), ERR_INVAL);  // labels missing
    assert_int_equal(srv_metrics_add(m, SRV_METRIC__COUNT, NULL, 1), ERR_INVAL);
    assert_int_equal(srv_metrics_set(m, SRV_METRIC_MODEL_READY, NULL, NAN), ERR_INVAL);
    for (int i = 0; i < SRV_METRICS_MAX_SERIES; i++) {
        char v[16];
        snprintf(v, sizeof v, "r%d", i);
        const char *lv[] = {v};
        assert_int_equal(srv_metrics_add(m, SRV_METRIC_AUTH_FAILURES, lv, 1), 0);
    }
    const char *extra[] = {"one-too-many"};
    assert_int_equal(srv_metrics_add(m, SRV_METRIC_AUTH_FAILURES, extra, 1), ERR_TOOLARGE);
    // an existing series still counts after the cap
    const char *first[] = {"r0"};
    assert_int_equal(srv_metrics_add(m, SRV_METRIC_AUTH_FAILURES, first, 1), 0);
    char *t = render(m);
    want_line(t, "orthod_metrics_dropped_total 1");
    want_line(t, "orthod_auth_failures_total{reason=\"r0\"} 2");
    assert_null(strstr(t, "one-too-many"));
    free(t);
    srv_metrics_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counters_and_gauges),
        cmocka_unit_test(test_histogram),
        cmocka_unit_test(test_escaping),
        cmocka_unit_test(test_misuse_and_cap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
