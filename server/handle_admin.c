/* server/handle_admin.c: liveness, readiness, metrics and the model list. */
#include "handle.h"

#include "../proto/models.h"

#include <string.h>

void srv_handle_health(struct srv *s, srv_req_t *r)
{
    (void)s;
    srv_http_reply_json(r, 200, json_pack("{s:s}", "status", "ok"));
}

static int reply_not_ready(struct srv *s, srv_req_t *r)
{
    if (s->draining)
        return srv_http_reply_error(r, ERR_STATE, NULL, "the server is shutting down");
    return srv_http_reply_error(r, ERR_STATE, NULL, "the model is still loading; retry when "
                                                    "GET /ready answers 200");
}

void srv_handle_ready(struct srv *s, srv_req_t *r)
{
    if (!s->ready || s->draining) {
        reply_not_ready(s, r);
        return;
    }
    srv_http_reply_json(r, 200, json_pack("{s:s, s:s}", "status", "ready", "model", s->model_id));
}

void srv_handle_metrics(struct srv *s, srv_req_t *r)
{
    srv_metrics_set(s->metrics, SRV_METRIC_HTTP_IN_FLIGHT, NULL, srv_http_in_flight(s->http));
    srv_metrics_set(s->metrics, SRV_METRIC_HTTP_CONNECTIONS, NULL, srv_http_connections(s->http));
    char *text = NULL;
    size_t len = 0;
    if (srv_metrics_render(s->metrics, &text, &len) < 0) {
        srv_http_reply_error(r, ERR_NOMEM, NULL, NULL);
        return;
    }
    srv_http_reply(r, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
}

static struct proto_model model_entry(const struct srv *s)
{
    return (struct proto_model){
        .id = s->model_id,
        .created = s->loaded_at,
        .owned_by = "orthod",
        .arch = s->info.arch,
        .dtype = s->info.dtype,
        .n_params = s->info.n_params,
        .n_ctx_train = s->info.n_ctx_train,
        .n_vocab = s->info.n_vocab,
    };
}

void srv_handle_models(struct srv *s, srv_req_t *r)
{
    if (!s->ready) {
        reply_not_ready(s, r);
        return;
    }
    struct proto_model m = model_entry(s);
    srv_http_reply_json(r, 200, proto_models_list(&m, 1));
}

void srv_handle_model(struct srv *s, srv_req_t *r)
{
    if (!s->ready) {
        reply_not_ready(s, r);
        return;
    }
    const char *want = r->match.params[0].value;
    size_t wl = r->match.params[0].value_len;
    if (wl != strlen(s->model_id) || memcmp(want, s->model_id, wl) != 0) {
        srv_http_reply_error(r, ERR_NOTFOUND, "model", "model '%.*s' is not served here; GET "
                             "/v1/models lists the models", (int)(wl > 200 ? 200 : wl), want);
        return;
    }
    struct proto_model m = model_entry(s);
    json_t *list = proto_models_list(&m, 1);
    json_t *one = list ? json_array_get(json_object_get(list, "data"), 0) : NULL;
    json_incref(one);
    json_decref(list);
    srv_http_reply_json(r, 200, one);
}
