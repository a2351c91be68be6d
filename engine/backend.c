/* engine/backend.c: checked dispatch from the model code to a backend's table.
 * Validates shapes and dtypes once per call so that backends can assume valid input. */
#include "backend_impl.h"

#include <stdlib.h>
#include <strings.h>

static const char *const kv_format_names[] = {"f32", "f16"};

const char *eng_kv_format_name(enum eng_kv_format f)
{
    return (unsigned)f < sizeof kv_format_names / sizeof kv_format_names[0]
               ? kv_format_names[f]
               : "unknown";
}

int eng_kv_format_parse(const char *s, enum eng_kv_format *out)
{
    for (unsigned i = 0; i < sizeof kv_format_names / sizeof kv_format_names[0]; i++) {
        if (strcasecmp(s, kv_format_names[i]) == 0) {
            *out = (enum eng_kv_format)i;
            return 0;
        }
    }
    return ERR_INVAL;
}

void eng_backend_free(eng_backend_t *be)
{
    if (be)
        be->ops->free(be);
}

const char *eng_backend_name(const eng_backend_t *be)
{
    return be->ops->name((eng_backend_t *)be);
}

const char *eng_backend_describe(const eng_backend_t *be)
{
    return be->ops->describe((eng_backend_t *)be);
}

bool eng_backend_is_host(const eng_backend_t *be)
{
    return be->is_host;
}

int eng_backend_n_threads(const eng_backend_t *be)
{
    return be->n_threads;
}

bool eng_backend_supports_matmul(const eng_backend_t *be, enum eng_dtype t)
{
    return be->ops->supports_matmul((eng_backend_t *)be, t);
}

/* --- memory --- */

int eng_buffer_new(eng_backend_t *be, size_t size, enum eng_buf_usage use, eng_buffer_t **out)
{
    eng_buffer_t *buf = calloc(1, sizeof *buf);
    if (!buf)
        return ERR_NOMEM;
    buf->be = be;
    buf->size = size;
    int rc = be->ops->buffer_new(be, size, use, buf);
    if (rc < 0) {
        free(buf);
        return rc;
    }
    *out = buf;
    return 0;
}

void eng_buffer_free(eng_buffer_t *buf)
{
    if (!buf)
        return;
    buf->be->ops->buffer_free(buf->be, buf);
    free(buf);
}

static int check_range(const eng_tensor_t *t, size_t off, size_t n)
{
    size_t total = eng_tensor_nbytes(t);
    if (!t->data || off > total || n > total - off)
        return ERR_INVAL;
    return 0;
}

int eng_tensor_set(eng_backend_t *be, eng_tensor_t *dst, const void *src, size_t off, size_t n)
{
    int rc = check_range(dst, off, n);
    return rc < 0 ? rc : be->ops->tensor_set(be, dst, src, off, n);
}

int eng_tensor_get(eng_backend_t *be, const eng_tensor_t *src, void *dst, size_t off, size_t n)
{
    int rc = check_range(src, off, n);
    return rc < 0 ? rc : be->ops->tensor_get(be, src, dst, off, n);
}

/* Weights share one block per backend, each at an offset aligned like a fresh device
 * allocation (GEMM paths want 16-byte aligned rows; CUDA gives 256). */
#define WEIGHT_ALIGN ((size_t)256)

/* Bytes weight w takes in the block (0: used in place, no block space). */
static size_t weight_size(eng_backend_t *be, const eng_tensor_t *w)
{
    if (be->ops->weight_prepare)
        return 0;
    return be->ops->weight_size ? be->ops->weight_size(be, w) : eng_tensor_nbytes(w);
}

/* Offsets are recomputed the same way by each pass, so no offset array is allocated. */
static int weights_layout(eng_backend_t *be, eng_tensor_t *const *w, size_t n, size_t *total)
{
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        if (!eng_tensor_is_contiguous(w[i]) || !w[i]->data)
            return ERR_INVAL;
        const size_t sz = weight_size(be, w[i]);
        if (sz == 0)
            continue;
        if (off > SIZE_MAX - (WEIGHT_ALIGN - 1) - sz)
            return ERR_TOOLARGE;
        off = (off + WEIGHT_ALIGN - 1) & ~(WEIGHT_ALIGN - 1);
        off += sz;
    }
    *total = off;
    return 0;
}

static void weight_clear(eng_tensor_t *w)
{
    w->buf = NULL;
    w->data = NULL;
    w->extra = NULL;
}

int eng_weights_prepare(eng_backend_t *be, eng_tensor_t *const *w, size_t n,
                        eng_buffer_t **block)
{
    size_t total = 0;
    int rc = weights_layout(be, w, n, &total);
    if (rc < 0)
        return rc;
    eng_buffer_t *blk = NULL;
    if (total > 0 && (rc = eng_buffer_new(be, total, ENG_BUF_WEIGHTS, &blk)) < 0)
        return rc;
    size_t off = 0, i = 0;
    for (; i < n && rc == 0; i++) {
        const void *host = w[i]->data;
        const size_t sz = weight_size(be, w[i]);
        if (sz == 0) {
            rc = be->ops->weight_prepare(be, w[i], host);
            continue;
        }
        off = (off + WEIGHT_ALIGN - 1) & ~(WEIGHT_ALIGN - 1);
        if (be->ops->weight_place) {
            rc = be->ops->weight_place(be, w[i], host, blk, off);
        } else {
            w[i]->data = (char *)blk->base + off;
            rc = be->ops->tensor_set(be, w[i], host, 0, sz);
        }
        w[i]->buf = blk;
        off += sz;
    }
    if (rc < 0) {
        // undo the weights placed so far (i - 1 is the one that failed)
        eng_weights_release(be, w, i, blk);
        return rc;
    }
    *block = blk;
    return 0;
}

void eng_weights_release(eng_backend_t *be, eng_tensor_t *const *w, size_t n,
                         eng_buffer_t *block)
{
    for (size_t i = 0; i < n; i++) {
        if (be->ops->weight_release && !w[i]->buf)
            be->ops->weight_release(be, w[i]);
        weight_clear(w[i]);
    }
    eng_buffer_free(block);
}

int eng_weight_prepare(eng_backend_t *be, eng_tensor_t *w, const void *host)
{
    eng_buffer_t *blk = NULL;
    w->data = (void *)host;
    int rc = eng_weights_prepare(be, &w, 1, &blk);
    if (rc < 0)
        weight_clear(w);
    return rc;
}

void eng_weight_release(eng_backend_t *be, eng_tensor_t *w)
{
    eng_weights_release(be, &w, 1, w->buf);
}

static size_t kv_row_bytes(const struct eng_kv_layout *lay)
{
    int64_t row = (int64_t)lay->n_kv_heads * lay->head_dim;
    return eng_dtype_row_bytes(lay->format == ENG_KV_F16 ? ENG_DTYPE_F16 : ENG_DTYPE_F32, row);
}

size_t eng_kv_block_bytes(const struct eng_kv_layout *lay)
{
    return 2 * kv_row_bytes(lay) * (size_t)lay->block_size;
}

int eng_kv_storage_new(eng_backend_t *be, const struct eng_kv_layout *lay,
                       eng_kv_storage_t **out)
{
    if (lay->n_layers <= 0 || lay->n_kv_heads <= 0 || lay->head_dim <= 0 ||
        lay->block_size <= 0 || lay->n_blocks <= 0)
        return ERR_INVAL;
    if (!be->ops->supports_kv(be, lay->format))
        return ERR_UNSUPPORTED;
    enum eng_dtype dt = lay->format == ENG_KV_F16 ? ENG_DTYPE_F16 : ENG_DTYPE_F32;
    size_t row = kv_row_bytes(lay);
    size_t slots = (size_t)lay->n_blocks * (size_t)lay->block_size;
    if (row == 0 || slots > ((size_t)1 << 40) / row)
        return ERR_TOOLARGE;
    size_t per = row * slots;                      // one layer's K (or V)
    if (per > SIZE_MAX / 2 / (size_t)lay->n_layers)
        return ERR_TOOLARGE;

    eng_kv_storage_t *kv = calloc(1, sizeof *kv);
    if (!kv)
        return ERR_NOMEM;
    kv->lay = *lay;
    kv->k = calloc((size_t)lay->n_layers, sizeof *kv->k);
    kv->v = calloc((size_t)lay->n_layers, sizeof *kv->v);
    int rc = ERR_NOMEM;
    if (!kv->k || !kv->v)
        goto fail;
    if ((rc = eng_buffer_new(be, per * 2 * (size_t)lay->n_layers, ENG_BUF_KV, &kv->buf)) < 0)
        goto fail;
    if ((rc = be->ops->memset_buffer(be, kv->buf, 0)) < 0)
        goto fail;
    int64_t ne[2] = {(int64_t)lay->n_kv_heads * lay->head_dim, (int64_t)slots};
    for (int l = 0; l < lay->n_layers; l++) {
        eng_tensor_init(&kv->k[l], dt, 2, ne);
        eng_tensor_init(&kv->v[l], dt, 2, ne);
        kv->k[l].buf = kv->v[l].buf = kv->buf;
        kv->k[l].data = (char *)kv->buf->base + per * (size_t)(2 * l);
        kv->v[l].data = (char *)kv->buf->base + per * (size_t)(2 * l + 1);
    }
    *out = kv;
    return 0;
fail:
    eng_kv_storage_free(kv);
    return rc;
}

void eng_kv_storage_free(eng_kv_storage_t *kv)
{
    if (!kv)
        return;
    eng_buffer_free(kv->buf);
    free(kv->k);
    free(kv->v);
    free(kv);
}

/* --- compute --- */

static bool is_act(const eng_tensor_t *t)
{
    return t && t->data && t->dtype == ENG_DTYPE_F32 && eng_tensor_is_contiguous(t);
}

static bool same_shape(const eng_tensor_t *a, const eng_tensor_t *b)
{
    return a->ne[0] == b->ne[0] && a->ne[1] == b->ne[1] && a->ne[2] == b->ne[2] &&
           a->ne[3] == b->ne[3];
}

int eng_step_begin(eng_backend_t *be, const struct eng_step *st)
{
    if (!st || st->n_tokens < 1 || st->n_seqs < 1 || st->max_blocks < 1 || st->n_out < 0 ||
        st->n_out > st->n_tokens)
        return ERR_INVAL;
    for (int32_t t = 0; t < st->n_tokens; t++) {
        if (st->seq[t] < 0 || st->seq[t] >= st->n_seqs || st->pos[t] < 0 ||
            st->pos[t] >= st->seq_len[st->seq[t]] || st->kv_slot[t] < 0)
            return ERR_INVAL;
    }
    // 64-bit: max_blocks * 2^20 overflows int32 from 2048 blocks (n_ctx 32768 at 16 a block)
    for (int32_t s = 0; s < st->n_seqs; s++)
        if (st->seq_len[s] < 0 || (int64_t)st->seq_len[s] > (int64_t)st->max_blocks * 1024 * 1024)
            return ERR_INVAL;
    for (int32_t i = 0; i < st->n_out; i++)
        if (st->out_rows[i] < 0 || st->out_rows[i] >= st->n_tokens ||
            (i > 0 && st->out_rows[i] <= st->out_rows[i - 1]))
            return ERR_INVAL;
    return be->ops->step_begin(be, st);
}

int eng_step_end(eng_backend_t *be)
{
    return be->ops->step_end(be);
}

int eng_op_embed(eng_backend_t *be, eng_tensor_t *out, const eng_tensor_t *wte)
{
    if (!is_act(out) || !wte->data || !eng_dtype_is_compute(wte->dtype) ||
        out->ne[0] != wte->ne[0])
        return ERR_INVAL;
    return be->ops->embed(be, out, wte);
}

int eng_op_rmsnorm(eng_backend_t *be, eng_tensor_t *out, const eng_tensor_t *x,
                   const eng_tensor_t *w, float eps)
{
    if (!is_act(out) || !is_act(x) || !is_act(w) || !same_shape(out, x) ||
        w->ne[0] != x->ne[0] || eng_tensor_nrows(w) != 1)
        return ERR_INVAL;
    return be->ops->rmsnorm(be, out, x, w, eps);
}

int eng_op_matmul(eng_backend_t *be, eng_tensor_t *out, const eng_tensor_t *x,
                  const eng_tensor_t *w)
{
    if (!is_act(out) || !is_act(x) || !w->data || !eng_dtype_is_compute(w->dtype) ||
        x->ne[0] != w->ne[0] || out->ne[0] != w->ne[1] ||
        eng_tensor_nrows(out) != eng_tensor_nrows(x) || w->ne[2] != 1 || w->ne[3] != 1)
        return ERR_INVAL;
    return be->ops->matmul(be, out, x, w);
}

int eng_op_matmul_n(eng_backend_t *be, int n, eng_tensor_t *const out[], const eng_tensor_t *x,
                    const eng_tensor_t *const w[])
{
    if (n < 1 || n > ENG_MATMUL_N_MAX)
        return ERR_INVAL;
    for (int i = 0; i < n; i++) {
        const eng_tensor_t *wi = w[i];
        if (!is_act(out[i]) || !is_act(x) || !wi->data || !eng_dtype_is_compute(wi->dtype) ||
            x->ne[0] != wi->ne[0] || out[i]->ne[0] != wi->ne[1] ||
            eng_tensor_nrows(out[i]) != eng_tensor_nrows(x) || wi->ne[2] != 1 || wi->ne[3] != 1)
            return ERR_INVAL;
    }
    if (be->ops->matmul_n)
        return be->ops->matmul_n(be, n, out, x, w);
    for (int i = 0; i < n; i++) {
        int rc = be->ops->matmul(be, out[i], x, w[i]);
        if (rc < 0)
            return rc;
    }
    return 0;
}

int eng_op_rope(eng_backend_t *be, eng_tensor_t *x, int32_t n_heads,
                const struct eng_rope_params *rp)
{
    if (!is_act(x) || n_heads <= 0 || x->ne[0] % n_heads || rp->n_rot <= 0 ||
        rp->n_rot % 2 || rp->n_rot > x->ne[0] / n_heads ||
        (rp->mode != ENG_ROPE_NORM && rp->mode != ENG_ROPE_NEOX))
        return ERR_INVAL;
    return be->ops->rope(be, x, n_heads, rp);
}

int eng_op_kv_write(eng_backend_t *be, eng_kv_storage_t *kv, int32_t layer,
                    const eng_tensor_t *k, const eng_tensor_t *v)
{
    if (layer < 0 || layer >= kv->lay.n_layers || !is_act(k) || !is_act(v) ||
        !same_shape(k, v) || k->ne[0] != (int64_t)kv->lay.n_kv_heads * kv->lay.head_dim)
        return ERR_INVAL;
    return be->ops->kv_write(be, kv, layer, k, v);
}

int eng_op_attention(eng_backend_t *be, eng_tensor_t *out, const eng_tensor_t *q,
                     const eng_kv_storage_t *kv, int32_t layer, int32_t n_heads, float scale)
{
    if (layer < 0 || layer >= kv->lay.n_layers || !is_act(out) || !is_act(q) ||
        !same_shape(out, q) || n_heads <= 0 || n_heads % kv->lay.n_kv_heads ||
        q->ne[0] != (int64_t)n_heads * kv->lay.head_dim)
        return ERR_INVAL;
    return be->ops->attention(be, out, q, kv, layer, n_heads, scale);
}

int eng_op_swiglu(eng_backend_t *be, eng_tensor_t *out, const eng_tensor_t *gate,
                  const eng_tensor_t *up)
{
    if (!is_act(out) || !is_act(gate) || !is_act(up) || !same_shape(out, gate) ||
        !same_shape(gate, up))
        return ERR_INVAL;
    return be->ops->swiglu(be, out, gate, up);
}

int eng_op_add(eng_backend_t *be, eng_tensor_t *out, const eng_tensor_t *a,
               const eng_tensor_t *b)
{
    if (!is_act(out) || !is_act(a) || !is_act(b) || !same_shape(out, a) || !same_shape(a, b))
        return ERR_INVAL;
    return be->ops->add(be, out, a, b);
}

int eng_op_gather_rows(eng_backend_t *be, eng_tensor_t *out, const eng_tensor_t *x)
{
    if (!is_act(out) || !is_act(x) || out->ne[0] != x->ne[0])
        return ERR_INVAL;
    return be->ops->gather_rows(be, out, x);
}
