/* proto/models.h: the wire shape of GET /v1/models (the OpenAI "list" object).
 * Owns the field names; the server fills struct proto_model from what it has loaded.
 * Thread: any. */
#ifndef ORTHOD_PROTO_MODELS_H
#define ORTHOD_PROTO_MODELS_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

struct proto_model {
    const char *id;           /* what clients put in "model": --model-alias or the model's name */
    int64_t created;          /* unix seconds the model was loaded */
    const char *owned_by;     /* "orthod" */
    /* orthod extensions, under "meta" (NULL/0: omitted) */
    const char *arch;         /* "llama" */
    const char *dtype;        /* most common weight dtype */
    int64_t n_params;
    int32_t n_ctx_train;
    int32_t n_vocab;
};

/* {"object":"list","data":[{"id","object":"model","created","owned_by","meta":{...}}]}.
 * Returns a new reference, or NULL when out of memory. */
json_t *proto_models_list(const struct proto_model *models, size_t n);

#endif
