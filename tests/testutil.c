/* tests/testutil.c: the helpers of tests/testutil.h. Uses no cmocka call itself, so it
 * links with cmocka and with tests/minicmocka.h alike. */
#include "testutil.h"

#include "../engine/backend_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* --- shared inputs and SKIP --------------------------------------------------------------- */

const char *tu_shared_dir(void)
{
    const char *s = getenv("ORTHOD_SHARED");
    if (s && *s)
        return s;
#ifdef ORTHOD_SHARED_DEFAULT
    return ORTHOD_SHARED_DEFAULT;
#else
    return "../shared";
#endif
}

const char *tu_model_path(char *out, size_t cap, const char *name)
{
    snprintf(out, cap, "%s/models/%s", tu_shared_dir(), name);
    return out;
}

bool tu_have_model(const char *name)
{
    char p[1024];
    return access(tu_model_path(p, sizeof p, name), R_OK) == 0;
}

int tu_missing_models(const char *const *names, size_t n)
{
    int missing = 0;
    for (size_t i = 0; i < n; i++) {
        if (!tu_have_model(names[i])) {
            char p[1024];
            printf("missing input: %s (set ORTHOD_SHARED to the folder with models/)\n",
                   tu_model_path(p, sizeof p, names[i]));
            missing++;
        }
    }
    return missing;
}

int tu_missing_shared(const char *const *rel, size_t n)
{
    int missing = 0;
    for (size_t i = 0; i < n; i++) {
        char p[1024];
        snprintf(p, sizeof p, "%s/%s", tu_shared_dir(), rel[i]);
        if (access(p, R_OK) != 0) {
            printf("missing input: %s (set ORTHOD_SHARED to the shared folder)\n", p);
            missing++;
        }
    }
    return missing;
}

int tu_missing_feature(bool have, const char *what)
{
    if (have)
        return 0;
    printf("missing feature: %s was compiled out; its tests did not run\n", what);
    return 1;
}

int tu_exit(int failed, int missing)
{
    if (failed)
        return 1;
    if (missing) {
        printf("SKIP: %d input(s) missing: the tests that need them did not run\n", missing);
        return 77;
    }
    return 0;
}

/* --- engine set-up ------------------------------------------------------------------------- */

struct eng_ctx_params tu_ctx_params(int32_t n_ctx, int32_t n_seq_max, int32_t n_batch,
                                    enum eng_kv_format kv)
{
    struct eng_ctx_params p;
    eng_ctx_params_default(&p);
    p.n_ctx = n_ctx;
    p.n_seq_max = n_seq_max;
    p.n_batch = n_batch;
    p.n_out_max = n_batch;
    p.kv_format = kv;
    return p;
}

/* --- GGUF bytes ----------------------------------------------------------------------------- */

void put(struct buf *b, const void *p, size_t n)
{
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n)
            cap *= 2;
        uint8_t *q = realloc(b->p, cap);
        if (!q) {
            fprintf(stderr, "testutil: out of memory growing a buffer to %zu bytes\n", cap);
            abort();
        }
        b->p = q;
        b->cap = cap;
    }
    if (n)
        memcpy(b->p + b->n, p, n);
    b->n += n;
}

void put_u8(struct buf *b, uint8_t v) { put(b, &v, 1); }
void put_u16(struct buf *b, uint16_t v) { put(b, &v, 2); }
void put_u32(struct buf *b, uint32_t v) { put(b, &v, 4); }
void put_u64(struct buf *b, uint64_t v) { put(b, &v, 8); }
void put_f32(struct buf *b, float v) { put(b, &v, 4); }
void put_f64(struct buf *b, double v) { put(b, &v, 8); }

void put_str(struct buf *b, const char *s)
{
    put_u64(b, strlen(s));
    put(b, s, strlen(s));
}

void put_header(struct buf *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv)
{
    put(b, "GGUF", 4);
    put_u32(b, version);
    put_u64(b, n_tensors);
    put_u64(b, n_kv);
}

void put_key(struct buf *b, const char *key, uint32_t type)
{
    put_str(b, key);
    put_u32(b, type);
}

void put_tinfo(struct buf *b, const char *name, uint32_t n_dims, const uint64_t *ne,
               uint32_t type, uint64_t offset)
{
    put_str(b, name);
    put_u32(b, n_dims);
    for (uint32_t i = 0; i < n_dims; i++)
        put_u64(b, ne[i]);
    put_u32(b, type);
    put_u64(b, offset);
}

void put_pad(struct buf *b, size_t align)
{
    while (b->n % align)
        put_u8(b, 0);
}

void buf_free(struct buf *b)
{
    free(b->p);
    *b = (struct buf){0};
}

/* --- a backend that fails on demand ------------------------------------------------------------- */

/* Every slot of engine/backend_impl.h is forwarded (an optional one only when the inner
 * backend has it): a slot added there must be added here too. */
struct faulty {
    eng_backend_t *inner;
    struct eng_backend_ops ops;   /* this instance's table: NULL where inner's is NULL */
    long calls, fail_at, injected;
    int err;
    bool sticky;
};

static struct faulty *F(const eng_backend_t *be)
{
    return (struct faulty *)be->ctx;
}

/* Counts one fallible call; returns the error to inject or 0. */
static int tick(eng_backend_t *be)
{
    struct faulty *f = F(be);
    f->calls++;
    if (f->fail_at > 0 && (f->calls == f->fail_at || (f->sticky && f->calls > f->fail_at))) {
        f->injected++;
        return f->err;
    }
    return 0;
}

#define INNER(be) (F(be)->inner)
#define FORWARD(be, slot, ...)                                                                \
    do {                                                                                      \
        const int rc_ = tick(be);                                                             \
        if (rc_ < 0)                                                                          \
            return rc_;                                                                       \
        return INNER(be)->ops->slot(INNER(be), __VA_ARGS__);                                  \
    } while (0)

static const char *f_name(eng_backend_t *be) { return INNER(be)->ops->name(INNER(be)); }
static const char *f_describe(eng_backend_t *be) { return INNER(be)->ops->describe(INNER(be)); }

static void f_free(eng_backend_t *be)
{
    struct faulty *f = F(be);
    eng_backend_free(f->inner);
    free(f);
    free(be);
}

static int f_buffer_new(eng_backend_t *be, size_t size, enum eng_buf_usage use, eng_buffer_t *buf)
{
    FORWARD(be, buffer_new, size, use, buf);
}

static void f_buffer_free(eng_backend_t *be, eng_buffer_t *buf)
{
    INNER(be)->ops->buffer_free(INNER(be), buf);
}

static int f_tensor_set(eng_backend_t *be, eng_tensor_t *dst, const void *src, size_t off, size_t n)
{
    FORWARD(be, tensor_set, dst, src, off, n);
}

static int f_tensor_get(eng_backend_t *be, const eng_tensor_t *src, void *dst, size_t off, size_t n)
{
    FORWARD(be, tensor_get, src, dst, off, n);
}

static int f_memset_buffer(eng_backend_t *be, eng_buffer_t *buf, int byte)
{
    FORWARD(be, memset_buffer, buf, byte);
}

static int f_weight_prepare(eng_backend_t *be, eng_tensor_t *w, const void *host)
{
    FORWARD(be, weight_prepare, w, host);
}

static void f_weight_release(eng_backend_t *be, eng_tensor_t *w)
{
    INNER(be)->ops->weight_release(INNER(be), w);
}

static size_t f_weight_size(eng_backend_t *be, const eng_tensor_t *w)
{
    return INNER(be)->ops->weight_size(INNER(be), w);
}

static int f_weight_place(eng_backend_t *be, eng_tensor_t *w, const void *host, eng_buffer_t *buf,
                          size_t off)
{
    FORWARD(be, weight_place, w, host, buf, off);
}

static bool f_supports_matmul(eng_backend_t *be, enum eng_dtype t)
{
    return INNER(be)->ops->supports_matmul(INNER(be), t);
}

static bool f_supports_kv(eng_backend_t *be, enum eng_kv_format fmt)
{
    return INNER(be)->ops->supports_kv(INNER(be), fmt);
}

static int f_step_begin(eng_backend_t *be, const struct eng_step *st) { FORWARD(be, step_begin, st); }

static int f_step_end(eng_backend_t *be)
{
    const int rc = tick(be);
    /* the inner backend still ends its step, as a device syncs after a failed op */
    const int rc2 = INNER(be)->ops->step_end(INNER(be));
    return rc < 0 ? rc : rc2;
}

static int f_embed(eng_backend_t *be, eng_tensor_t *out, const eng_tensor_t *wte)
{
    FORWARD(be, embed, out, wte);
}

static int f_rmsnorm(eng_backend_t *be, eng_tensor_t *out, const eng_tensor_t *x,
                     const eng_tensor_t *w, float eps)
{
    FORWARD(be, rmsnorm, out, x, w, eps);
}

static int f_matmul(eng_backend_t *be, eng_tensor_t *out, const eng_tensor_t *x, const eng_tensor_t *w)
{
    FORWARD(be, matmul, out, x, w);
}

static int f_matmul_n(eng_backend_t *be, int n, eng_tensor_t *const out[], const eng_tensor_t *x,
                      const eng_tensor_t *const w[])
{
    FORWARD(be, matmul_n, n, out, x, w);
}

static int f_rope(eng_backend_t *be, eng_tensor_t *x, int32_t n_heads, const struct eng_rope_params *rp)
{
    FORWARD(be, rope, x, n_heads, rp);
}

static int f_kv_write(eng_backend_t *be, eng_kv_storage_t *kv, int32_t layer, const eng_tensor_t *k,
                      const eng_tensor_t *v)
{
    FORWARD(be, kv_write, kv, layer, k, v);
}

static int f_attention(eng_backend_t *be, eng_tensor_t *out, const eng_tensor_t *q,
                       const eng_kv_storage_t *kv, int32_t layer, int32_t n_heads, float scale)
{
    FORWARD(be, attention, out, q, kv, layer, n_heads, scale);
}

static int f_swiglu(eng_backend_t *be, eng_tensor_t *out, const eng_tensor_t *gate,
                    const eng_tensor_t *up)
{
    FORWARD(be, swiglu, out, gate, up);
}

static int f_add(eng_backend_t *be, eng_tensor_t *out, const eng_tensor_t *a, const eng_tensor_t *b)
{
    FORWARD(be, add, out, a, b);
}

static int f_gather_rows(eng_backend_t *be, eng_tensor_t *out, const eng_tensor_t *x)
{
    FORWARD(be, gather_rows, out, x);
}

int tu_faulty_new(eng_backend_t *inner, eng_backend_t **out)
{
    eng_backend_t *be = calloc(1, sizeof *be);
    struct faulty *f = calloc(1, sizeof *f);
    if (!be || !f) {
        free(be);
        free(f);
        return ERR_NOMEM;
    }
    const struct eng_backend_ops *in = inner->ops;
    f->inner = inner;
    f->ops = (struct eng_backend_ops){
        .name = f_name, .describe = f_describe, .free = f_free,
        .buffer_new = f_buffer_new, .buffer_free = f_buffer_free,
        .tensor_set = f_tensor_set, .tensor_get = f_tensor_get,
        .memset_buffer = f_memset_buffer,
        .weight_prepare = in->weight_prepare ? f_weight_prepare : NULL,
        .weight_release = in->weight_release ? f_weight_release : NULL,
        .weight_size = in->weight_size ? f_weight_size : NULL,
        .weight_place = in->weight_place ? f_weight_place : NULL,
        .supports_matmul = f_supports_matmul,
        .supports_kv = in->supports_kv ? f_supports_kv : NULL,
        .step_begin = f_step_begin, .step_end = f_step_end,
        .embed = f_embed, .rmsnorm = f_rmsnorm, .matmul = f_matmul,
        .matmul_n = in->matmul_n ? f_matmul_n : NULL, .rope = f_rope,
        .kv_write = f_kv_write, .attention = f_attention, .swiglu = f_swiglu, .add = f_add,
        .gather_rows = f_gather_rows,
    };
    be->ops = &f->ops;
    be->ctx = f;
    be->is_host = inner->is_host;
    be->n_threads = inner->n_threads;
    be->log = inner->log;
    *out = be;
    return 0;
}

void tu_faulty_arm(eng_backend_t *be, long fail_at, int err, bool sticky)
{
    struct faulty *f = F(be);
    f->fail_at = fail_at;
    f->err = err;
    f->sticky = sticky;
}

long tu_faulty_calls(const eng_backend_t *be) { return F(be)->calls; }
long tu_faulty_injected(const eng_backend_t *be) { return F(be)->injected; }

void tu_faulty_reset(eng_backend_t *be)
{
    struct faulty *f = F(be);
    f->calls = f->injected = f->fail_at = 0;
    f->sticky = false;
}
