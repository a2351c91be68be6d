/* server/router.c: route lookup over a static table. */
#include "router.h"

#include <stdio.h>
#include <string.h>

#define ROUTER_MAX_PATH 2048

static const struct {
    const char *name;
    unsigned bit;
} method_names[] = {
    {"GET", SRV_GET},       {"HEAD", SRV_HEAD},     {"POST", SRV_POST},
    {"PUT", SRV_PUT},       {"DELETE", SRV_DELETE}, {"PATCH", SRV_PATCH},
    {"OPTIONS", SRV_OPTIONS},
};
#define N_METHODS (sizeof method_names / sizeof method_names[0])

unsigned srv_router_method(const char *method)
{
    if (!method)
        return 0;
    for (size_t i = 0; i < N_METHODS; i++)
        if (strcmp(method, method_names[i].name) == 0)
            return method_names[i].bit;
    return 0;
}

void srv_router_allow_text(unsigned methods, char *buf, size_t cap)
{
    if (methods & SRV_GET)
        methods |= SRV_HEAD;
    size_t off = 0;
    if (cap)
        buf[0] = '\0';
    for (size_t i = 0; i < N_METHODS; i++) {
        if (!(methods & method_names[i].bit))
            continue;
        int n = snprintf(buf + off, cap > off ? cap - off : 0, "%s%s", off ? ", " : "",
                         method_names[i].name);
        if (n < 0 || (size_t)n >= cap - off)
            return;
        off += (size_t)n;
    }
}

/* Segment-wise match of path against pattern; fills params. */
static bool match_pattern(const char *pat, const char *path, struct srv_route_match *m)
{
    m->n_params = 0;
    while (*pat && *path) {
        if (*pat != '/' || *path != '/')
            return false;
        pat++;
        path++;
        const char *pe = strchr(pat, '/');
        const char *se = strchr(path, '/');
        size_t pl = pe ? (size_t)(pe - pat) : strlen(pat);
        size_t sl = se ? (size_t)(se - path) : strlen(path);
        if (pl >= 2 && pat[0] == '{' && pat[pl - 1] == '}') {
            if (sl == 0 || m->n_params == SRV_ROUTE_MAX_PARAMS)
                return false;
            m->params[m->n_params].name = pat + 1;
            m->params[m->n_params].name_len = pl - 2;
            m->params[m->n_params].value = path;
            m->params[m->n_params].value_len = sl;
            m->n_params++;
        } else if (pl != sl || memcmp(pat, path, pl) != 0) {
            return false;
        }
        pat += pl;
        path += sl;
    }
    return *pat == '\0' && *path == '\0';
}

int srv_router_match(const struct srv_route *routes, size_t n, const char *method,
                     const char *path, struct srv_route_match *m, char *allow, size_t allow_cap)
{
    if (allow && allow_cap)
        allow[0] = '\0';
    if (!path || path[0] != '/' || strlen(path) > ROUTER_MAX_PATH)
        return ERR_NOTFOUND;
    unsigned want = srv_router_method(method);
    unsigned allowed = 0;
    struct srv_route_match tmp;
    for (size_t i = 0; i < n; i++) {
        if (!match_pattern(routes[i].pattern, path, &tmp))
            continue;
        unsigned ms = routes[i].methods;
        if (ms & SRV_GET)
            ms |= SRV_HEAD;
        if (want && (ms & want)) {
            *m = tmp;
            m->route = &routes[i];
            return 0;
        }
        allowed |= ms;
    }
    if (!allowed)
        return ERR_NOTFOUND;
    if (allow)
        srv_router_allow_text(allowed, allow, allow_cap);
    return ERR_METHOD;
}
