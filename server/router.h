/* server/router.h: the static route table's types and the lookup over it: method + path ->
 * route, or 404 / 405 with the Allow list. Owns path-pattern matching ("/v1/files/{id}":
 * a {name} segment matches one non-empty segment) and method names. The table itself lives
 * with the handlers (server/server.c), one row per endpoint.
 * Thread: any; the table is const. */
#ifndef ORTHOD_SERVER_ROUTER_H
#define ORTHOD_SERVER_ROUTER_H

#include "../common/err.h"
#include "auth.h"

#include <stdbool.h>
#include <stddef.h>

enum srv_method {
    SRV_GET = 1u << 0,
    SRV_HEAD = 1u << 1,       /* implied by GET */
    SRV_POST = 1u << 2,
    SRV_PUT = 1u << 3,
    SRV_DELETE = 1u << 4,
    SRV_PATCH = 1u << 5,
    SRV_OPTIONS = 1u << 6,
};

#define SRV_ROUTE_MAX_PARAMS 4
#define SRV_ROUTE_ALLOW_CAP 64    /* fits every method name */

struct srv_req;
struct srv;
/* A handler answers on the loop thread; it must reply (or suspend, later issues). */
typedef void (*srv_route_fn)(struct srv *s, struct srv_req *r);

/* What a route reads from the request body (server/http.h says when each check runs). */
enum srv_body {
    SRV_BODY_NONE = 0,   /* takes none: a body announced with it is refused (413) unread */
    SRV_BODY_JSON,       /* one JSON object (application/json), parsed into r->json */
    SRV_BODY_RAW,        /* the bytes as sent, in r->body / r->body_len; any content type */
};

struct srv_route {
    const char *pattern;      /* "/health", "/v1/files/{id}"; also the metrics label */
    unsigned methods;         /* enum srv_method bits */
    enum srv_auth_role role;  /* needed when API keys are configured (NONE: open) */
    srv_route_fn fn;
    enum srv_body body;       /* for POST, PUT and PATCH; other methods never take a body */
    size_t max_body;          /* 0: max-body-bytes; else the smaller of the two */
};

struct srv_route_match {
    const struct srv_route *route;
    size_t n_params;
    struct {
        const char *name;     /* points into the pattern, name_len bytes */
        size_t name_len;
        const char *value;    /* points into the path, value_len bytes */
        size_t value_len;
    } params[SRV_ROUTE_MAX_PARAMS];
};

/* "GET" -> SRV_GET; unknown or NULL -> 0. Method names are case-sensitive (RFC 9110). */
unsigned srv_router_method(const char *method);

/* Finds the route for method + path (path without query string).
 * Returns 0 and fills *m; ERR_NOTFOUND if no pattern matches; ERR_METHOD if one matches
 * but not with this method; then allow (when non-NULL) gets "GET, HEAD"-style text.
 * A path longer than 2048 bytes never matches. */
int srv_router_match(const struct srv_route *routes, size_t n, const char *method,
                     const char *path, struct srv_route_match *m, char *allow, size_t allow_cap);

/* The Allow header text for a method set ("GET, HEAD, POST"). */
void srv_router_allow_text(unsigned methods, char *buf, size_t cap);

#endif
