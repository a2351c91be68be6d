/* proto/body.h: the generic checks every request body passes before any handler sees it:
 * the content type must be JSON and the bytes must be one well-formed JSON object.
 * Owns those two checks; size limits are enforced while reading (server/http.c).
 * Thread: any; no global mutable state. */
#ifndef ORTHOD_PROTO_BODY_H
#define ORTHOD_PROTO_BODY_H

#include "../common/err.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* Nesting deeper than this is rejected (jansson's own limit is 2048). */
#define PROTO_BODY_MAX_DEPTH 64

/* True for "application/json" with optional parameters ("; charset=utf-8", case-insensitive
 * type, optional spaces). NULL or anything else: false. */
bool proto_body_is_json_type(const char *content_type);

/* Parses buf[0..len) (not NUL-terminated; may contain anything) as one JSON object.
 * Rejects invalid UTF-8, NUL bytes, duplicate keys, trailing data, non-object roots and
 * nesting deeper than PROTO_BODY_MAX_DEPTH. On success *out is a new reference.
 * Errors: ERR_PROTO with *why a static, user-safe sentence; ERR_NOMEM. */
int proto_body_parse_json(const char *buf, size_t len, json_t **out, const char **why);

#endif
