/* engine/backend_impl.h: the table of operations a device implements.
 * For backend implementers only (engine/cpu/, gpu/). The model code calls the checked
 * wrappers in backend.h, which validate shapes and dtypes once, so slots may assume
 * valid, contiguous F32 activations and the shapes documented in backend.h.
 * Slots marked (optional) may be NULL; the wrapper's fallback is stated. */
#ifndef ORTHOD_ENGINE_BACKEND_IMPL_H
#define ORTHOD_ENGINE_BACKEND_IMPL_H

#include "backend.h"

struct eng_train_ops;            /* engine/train/train_ops.h */

struct eng_backend_ops {
    /* identity, lifetime */
    const char *(*name)(eng_backend_t *be);            /* "cpu", "cuda:0" */
    const char *(*describe)(eng_backend_t *be);        /* one line for logs */
    void (*free)(eng_backend_t *be);                   /* frees ctx and be itself */

    /* memory */
    int (*buffer_new)(eng_backend_t *be, size_t size, enum eng_buf_usage use, eng_buffer_t *buf);
    void (*buffer_free)(eng_backend_t *be, eng_buffer_t *buf);   /* releases buf->base/ctx */
    int (*tensor_set)(eng_backend_t *be, eng_tensor_t *dst, const void *src, size_t off, size_t n);
    int (*tensor_get)(eng_backend_t *be, const eng_tensor_t *src, void *dst, size_t off, size_t n);
    int (*memset_buffer)(eng_backend_t *be, eng_buffer_t *buf, int byte);
    /* weights (backend.h: eng_weights_prepare). Either the backend uses weight bytes in
     * place: it sets weight_prepare (point w->data at host; no block is allocated) and
     * weight_release (undo it). Or the engine allocates one ENG_BUF_WEIGHTS buffer per
     * model and the backend stores each weight at buf->base + off (off 256-aligned):
     * weight_size (optional; default the tensor's size) says how many bytes, and
     * weight_place (optional; default: w->data = base + off, then tensor_set) writes them
     * and sets w->data. */
    int (*weight_prepare)(eng_backend_t *be, eng_tensor_t *w, const void *host);
    void (*weight_release)(eng_backend_t *be, eng_tensor_t *w);
    size_t (*weight_size)(eng_backend_t *be, const eng_tensor_t *w);
    int (*weight_place)(eng_backend_t *be, eng_tensor_t *w, const void *host, eng_buffer_t *buf,
                        size_t off);
    /* capability, asked once at model load: can matmul consume weights of dtype t? */
    bool (*supports_matmul)(eng_backend_t *be, enum eng_dtype t);
    bool (*supports_kv)(eng_backend_t *be, enum eng_kv_format f);

    /* step */
    int (*step_begin)(eng_backend_t *be, const struct eng_step *st);
    int (*step_end)(eng_backend_t *be);

    /* compute, forward (shapes: backend.h) */
    int (*embed)(eng_backend_t *be, eng_tensor_t *out, const eng_tensor_t *wte);
    int (*rmsnorm)(eng_backend_t *be, eng_tensor_t *out, const eng_tensor_t *x,
                   const eng_tensor_t *w, float eps);
    int (*matmul)(eng_backend_t *be, eng_tensor_t *out, const eng_tensor_t *x,
                  const eng_tensor_t *w);
    /* (optional) default: n matmul calls */
    int (*matmul_n)(eng_backend_t *be, int n, eng_tensor_t *const out[], const eng_tensor_t *x,
                    const eng_tensor_t *const w[]);
    int (*rope)(eng_backend_t *be, eng_tensor_t *x, int32_t n_heads,
                const struct eng_rope_params *rp);
    int (*kv_write)(eng_backend_t *be, eng_kv_storage_t *kv, int32_t layer,
                    const eng_tensor_t *k, const eng_tensor_t *v);
    int (*attention)(eng_backend_t *be, eng_tensor_t *out, const eng_tensor_t *q,
                     const eng_kv_storage_t *kv, int32_t layer, int32_t n_heads, float scale);
    int (*swiglu)(eng_backend_t *be, eng_tensor_t *out, const eng_tensor_t *gate,
                  const eng_tensor_t *up);
    int (*add)(eng_backend_t *be, eng_tensor_t *out, const eng_tensor_t *a,
               const eng_tensor_t *b);
    int (*gather_rows)(eng_backend_t *be, eng_tensor_t *out, const eng_tensor_t *x);

    /* (optional) training: backward ops, loss, optimizer (engine/train/train_ops.h);
     * NULL: training on this backend gives ERR_UNSUPPORTED */
    const struct eng_train_ops *train;
};

struct eng_backend {
    const struct eng_backend_ops *ops;
    void *ctx;                   /* backend-private */
    bool is_host;                /* tensor data pointers are host addresses */
    int n_threads;               /* CPU worker threads (1 for device backends) */
    struct log_sink log;
};

#endif
