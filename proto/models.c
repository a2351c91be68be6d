/* proto/models.c: builds the GET /v1/models response object. */
#include "models.h"

#include "../common/text.h"

#include <stdlib.h>

/* A JSON string of s with invalid bytes replaced (model names come from model files). */
static json_t *safe_string(const char *s)
{
    char *clean = text_escape_dup(s ? s : "", TEXT_JSON);
    if (!clean)
        return NULL;
    json_t *j = json_string(clean);
    free(clean);
    return j;
}

static json_t *model_meta(const struct proto_model *m)
{
    json_t *meta = json_object();
    if (!meta)
        return NULL;
    int bad = 0;
    if (m->arch)
        bad |= json_object_set_new(meta, "arch", safe_string(m->arch));
    if (m->dtype)
        bad |= json_object_set_new(meta, "dtype", safe_string(m->dtype));
    if (m->n_params > 0)
        bad |= json_object_set_new(meta, "n_params", json_integer(m->n_params));
    if (m->n_ctx_train > 0)
        bad |= json_object_set_new(meta, "n_ctx_train", json_integer(m->n_ctx_train));
    if (m->n_vocab > 0)
        bad |= json_object_set_new(meta, "n_vocab", json_integer(m->n_vocab));
    if (bad) {
        json_decref(meta);
        return NULL;
    }
    return meta;
}

json_t *proto_models_list(const struct proto_model *models, size_t n)
{
    json_t *data = json_array();
    if (!data)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        const struct proto_model *m = &models[i];
        // "o" steals each reference, also when json_pack fails
        json_t *o = json_pack("{s:o, s:s, s:I, s:o, s:o}", "id", safe_string(m->id), "object",
                              "model", "created", (json_int_t)m->created, "owned_by",
                              safe_string(m->owned_by ? m->owned_by : "orthod"), "meta",
                              model_meta(m));
        if (!o || json_array_append_new(data, o) < 0) {
            json_decref(data);
            return NULL;
        }
    }
    return json_pack("{s:s, s:o}", "object", "list", "data", data);
}
