/* proto/status.h: the one mapping from the project's error codes (common/err.h) to an
 * HTTP status and an OpenAI-shaped error body {"error":{"message","type","param","code"}}.
 * Owns that table and nothing else: no transport, no routing. Every error response the
 * daemon sends goes through proto_status_error_json().
 * Thread: any; no global mutable state. */
#ifndef ORTHOD_PROTO_STATUS_H
#define ORTHOD_PROTO_STATUS_H

#include "../common/err.h"

#include <stddef.h>

struct proto_status {
    unsigned http;            /* 400, 401, 403, 404, 405, 413, 500, 503, ... */
    const char *type;         /* OpenAI error type: "invalid_request_error", "authentication_error",
                               * "permission_error", "server_error" */
    const char *code;         /* machine-readable code: "invalid_api_key", "not_found", ... */
    unsigned retry_after;     /* seconds for a Retry-After header; 0: none */
};

/* Fills *out for err (0 or a negative ERR_*). Codes outside the enum map to 500. */
void proto_status_for(int err, struct proto_status *out);

/* Builds the error body for err as a heap JSON string (caller frees with free()).
 * message: operator/user-readable text (NULL: err_str(err)); bytes that are not valid UTF-8
 * or are control characters are replaced, so any input may be echoed safely.
 * param: the offending request field or NULL (JSON null).
 * Returns 0, or ERR_NOMEM (*out untouched). */
int proto_status_error_json(int err, const char *message, const char *param, char **out,
                            size_t *out_len);

#endif
