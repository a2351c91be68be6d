/* proto/status.c: ERR_* -> HTTP status, OpenAI error type/code, and the error body. */
#include "status.h"

#include "../common/text.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static const struct {
    int err;
    struct proto_status st;
} status_table[] = {
    {ERR_INVAL,        {400, "invalid_request_error", "invalid_value", 0}},
    {ERR_PROTO,        {400, "invalid_request_error", "malformed_request", 0}},
    {ERR_RANGE,        {400, "invalid_request_error", "out_of_range", 0}},
    // valid input we do not implement: the client must change the request, so 400 (OpenAI
    // answers unsupported parameters with 400 too), not 501
    {ERR_UNSUPPORTED,  {400, "invalid_request_error", "unsupported", 0}},
    {ERR_CORRUPT,      {400, "invalid_request_error", "corrupt_input", 0}},
    {ERR_AUTH,         {401, "authentication_error", "invalid_api_key", 0}},
    {ERR_FORBIDDEN,    {403, "permission_error", "insufficient_permissions", 0}},
    {ERR_NOTFOUND,     {404, "invalid_request_error", "not_found", 0}},
    {ERR_METHOD,       {405, "invalid_request_error", "method_not_allowed", 0}},
    {ERR_TOOLARGE,     {413, "invalid_request_error", "request_too_large", 0}},
    {ERR_BUSY,         {503, "server_error", "server_busy", 1}},
    {ERR_AGAIN,        {503, "server_error", "unavailable", 1}},
    {ERR_STATE,        {503, "server_error", "not_ready", 1}},
    {ERR_NOMEM,        {503, "server_error", "out_of_memory", 1}},
    {ERR_DEVICE_NOMEM, {503, "server_error", "device_out_of_memory", 1}},
    {ERR_CANCELLED,    {503, "server_error", "cancelled", 1}},
    {ERR_TIMEOUT,      {504, "server_error", "timeout", 0}},
    {ERR_IO,           {500, "server_error", "io_error", 0}},
    {ERR_GPU,          {500, "server_error", "gpu_error", 0}},
    {ERR_INTERNAL,     {500, "server_error", "internal_error", 0}},
};

void proto_status_for(int err, struct proto_status *out)
{
    for (size_t i = 0; i < sizeof status_table / sizeof status_table[0]; i++) {
        if (status_table[i].err == err) {
            *out = status_table[i].st;
            return;
        }
    }
    *out = (struct proto_status){500, "server_error", "internal_error", 0};
}

int proto_status_error_json(int err, const char *message, const char *param, char **out,
                            size_t *out_len)
{
    struct proto_status st;
    proto_status_for(err, &st);
    char *msg = text_escape_dup(message ? message : err_str(err), TEXT_JSON);
    char *par = param ? text_escape_dup(param, TEXT_JSON) : NULL;
    json_t *root = NULL;
    char *s = NULL;
    if (!msg || (param && !par))
        goto done;
    root = json_pack("{s:{s:s, s:s, s:o, s:s}}", "error", "message", msg, "type", st.type,
                     "param", par ? json_string(par) : json_null(), "code", st.code);
    if (root)
        s = json_dumps(root, JSON_COMPACT);
done:
    json_decref(root);
    free(msg);
    free(par);
    if (!s)
        return ERR_NOMEM;
    *out = s;
    if (out_len)
        *out_len = strlen(s);
    return 0;
}
