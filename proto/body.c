/* proto/body.c: content-type and JSON well-formedness checks for request bodies. */
#include "body.h"

#include <string.h>
#include <strings.h>

bool proto_body_is_json_type(const char *ct)
{
    static const char want[] = "application/json";
    if (!ct)
        return false;
    while (*ct == ' ' || *ct == '\t')
        ct++;
    if (strncasecmp(ct, want, sizeof want - 1) != 0)
        return false;
    ct += sizeof want - 1;
    while (*ct == ' ' || *ct == '\t')
        ct++;
    return *ct == '\0' || *ct == ';';
}

/* Depth of the deepest container, counted without recursion limits being hit first
 * (jansson already parsed it, so depth <= 2048 here). */
static int json_depth(const json_t *v, int depth)
{
    if (depth > PROTO_BODY_MAX_DEPTH)
        return depth;
    int best = depth;
    if (json_is_object(v)) {
        const char *k;
        json_t *x;
        json_object_foreach((json_t *)v, k, x) {
            int d = json_depth(x, depth + 1);
            if (d > best)
                best = d;
            if (best > PROTO_BODY_MAX_DEPTH)
                break;
        }
    } else if (json_is_array(v)) {
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x) {
            int d = json_depth(x, depth + 1);
            if (d > best)
                best = d;
            if (best > PROTO_BODY_MAX_DEPTH)
                break;
        }
    }
    return best;
}

int proto_body_parse_json(const char *buf, size_t len, json_t **out, const char **why)
{
    json_error_t je;
    if (len == 0) {
        *why = "the request body is empty; send a JSON object";
        return ERR_PROTO;
    }
    // no JSON_ALLOW_NUL: a \u0000 escape is an error; JSON_DISABLE_EOF_CHECK off: trailing
    // bytes after the object are an error
    json_t *v = json_loadb(buf, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &je);
    if (!v) {
        if (json_error_code(&je) == json_error_out_of_memory)
            return ERR_NOMEM;
        switch (json_error_code(&je)) {
        case json_error_invalid_utf8: *why = "the request body is not valid UTF-8"; break;
        case json_error_duplicate_key: *why = "the request body has a duplicate key"; break;
        case json_error_null_character:
        case json_error_null_byte_in_key: *why = "the request body contains a NUL character"; break;
        case json_error_end_of_input_expected: *why = "the request body has data after the JSON value"; break;
        case json_error_stack_overflow: *why = "the request body is nested too deeply"; break;
        default: *why = "the request body is not valid JSON"; break;
        }
        return ERR_PROTO;
    }
    if (!json_is_object(v)) {
        json_decref(v);
        *why = "the request body must be a JSON object";
        return ERR_PROTO;
    }
    if (json_depth(v, 1) > PROTO_BODY_MAX_DEPTH) {
        json_decref(v);
        *why = "the request body is nested too deeply";
        return ERR_PROTO;
    }
    *out = v;
    return 0;
}
