/* server/handle.h: route handlers. Each answers one route on the loop thread and must reply
 * through srv_http_reply*; none blocks. handle_admin.c: /health, /ready, /metrics,
 * /v1/models. Later issues add handle_infer.c, handle_train.c, ... */
#ifndef ORTHOD_SERVER_HANDLE_H
#define ORTHOD_SERVER_HANDLE_H

#include "http.h"
#include "server.h"

void srv_handle_health(struct srv *s, srv_req_t *r);
void srv_handle_ready(struct srv *s, srv_req_t *r);
void srv_handle_metrics(struct srv *s, srv_req_t *r);
void srv_handle_models(struct srv *s, srv_req_t *r);
void srv_handle_model(struct srv *s, srv_req_t *r);    /* /v1/models/{model} */

#endif
