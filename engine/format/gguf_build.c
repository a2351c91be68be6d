/* engine/format/gguf_build.c: assembling a GGUF object in memory (the Hugging Face loader,
 * the random-model generator and tests use it): setters encode each value in GGUF wire
 * form and run it through the reader's validating parser, tensors are borrowed. */
#include "gguf_impl.h"

#include "../../common/grow.h"

#include <stdlib.h>
#include <string.h>

int eng_gguf_new(eng_gguf_t **out)
{
    if (!out)
        return ERR_INVAL;
    return eng__gguf_alloc(out);
}

/* Stores key = (type, encoded value) owning `buf`, which holds the key at offset 0
 * (key_len bytes) and the value encoding at offset key_len (val_size bytes). Takes
 * ownership of buf on success and failure. */
static int kv_put(eng_gguf_t *g, char *buf, size_t key_len, uint32_t type, size_t val_size)
{
    struct gguf_kv nkv = {0};
    nkv.key = buf;
    nkv.key_len = key_len;
    nkv.owned = buf;
    const uint8_t *val = (const uint8_t *)buf + key_len;
    int rc = eng__gguf_parse_value(val, val_size, type, &nkv, "builder", NULL);
    if (rc < 0 || nkv.val_size != val_size) {
        eng__gguf_kv_clear(&nkv);
        return rc < 0 ? rc : ERR_INTERNAL;
    }
    /* general.alignment drives the writer: keep it a valid power of two */
    bool is_align = key_len == 17 && memcmp(buf, "general.alignment", 17) == 0;
    uint64_t align = 0;
    if (is_align) {
        int64_t s;
        bool neg;
        if (!eng__gguf_kv_int(&nkv, &align, &s, &neg) || neg || align > UINT32_MAX ||
            !is_pow2(align)) {
            eng__gguf_kv_clear(&nkv);
            return ERR_INVAL;
        }
    }
    int64_t old = eng__gguf_index_find(&g->kv_index, g, eng__gguf_kv_name, buf, key_len);
    if (old >= 0) {
        /* same key bytes, same hash: the index slot stays valid */
        eng__gguf_kv_clear(&g->kv[old]);
        g->kv[old] = nkv;
    } else {
        if ((rc = grow(&g->kv, &g->cap_kv, g->n_kv + 1, sizeof *g->kv, 16, 0)) < 0 ||
            (rc = eng__gguf_index_reserve(&g->kv_index, g, eng__gguf_kv_name, g->n_kv,
                                          g->n_kv + 1)) < 0) {
            eng__gguf_kv_clear(&nkv);
            return rc;
        }
        g->kv[g->n_kv] = nkv;
        eng__gguf_index_put(&g->kv_index, buf, key_len, g->n_kv);
        g->n_kv++;
    }
    if (is_align)
        g->alignment = (size_t)align;
    return 0;
}

/* Allocates key + value buffer; returns NULL on bad key or no memory (*rc set). */
static char *kv_buf(const char *key, size_t val_size, size_t *key_len, int *rc)
{
    if (!key) {
        *rc = ERR_INVAL;
        return NULL;
    }
    size_t kl = strlen(key);
    if (kl == 0 || kl > ENG_GGUF_MAX_KEY_LEN) {
        *rc = ERR_INVAL;
        return NULL;
    }
    if (val_size > SIZE_MAX - kl - 1) {
        *rc = ERR_NOMEM;
        return NULL;
    }
    char *buf = malloc(kl + val_size + 1);
    if (!buf) {
        *rc = ERR_NOMEM;
        return NULL;
    }
    memcpy(buf, key, kl);
    *key_len = kl;
    return buf;
}

static int set_scalar(eng_gguf_t *g, const char *key, uint32_t type, const void *v, size_t sz)
{
    if (!g)
        return ERR_INVAL;
    size_t kl;
    int rc;
    char *buf = kv_buf(key, sz, &kl, &rc);
    if (!buf)
        return rc;
    memcpy(buf + kl, v, sz);
    return kv_put(g, buf, kl, type, sz);
}

int eng_gguf_set_u32(eng_gguf_t *g, const char *key, uint32_t v)
{
    return set_scalar(g, key, ENG_GGUF_UINT32, &v, 4);
}

int eng_gguf_set_i32(eng_gguf_t *g, const char *key, int32_t v)
{
    return set_scalar(g, key, ENG_GGUF_INT32, &v, 4);
}

int eng_gguf_set_u64(eng_gguf_t *g, const char *key, uint64_t v)
{
    return set_scalar(g, key, ENG_GGUF_UINT64, &v, 8);
}

int eng_gguf_set_f32(eng_gguf_t *g, const char *key, float v)
{
    return set_scalar(g, key, ENG_GGUF_FLOAT32, &v, 4);
}

int eng_gguf_set_bool(eng_gguf_t *g, const char *key, bool v)
{
    uint8_t b = v ? 1 : 0;
    return set_scalar(g, key, ENG_GGUF_BOOL, &b, 1);
}

int eng_gguf_set_str(eng_gguf_t *g, const char *key, const char *s, size_t len)
{
    if (!g || (!s && len) || len > SIZE_MAX - 8)
        return ERR_INVAL;
    size_t kl;
    int rc;
    char *buf = kv_buf(key, 8 + len, &kl, &rc);
    if (!buf)
        return rc;
    uint64_t l = len;
    memcpy(buf + kl, &l, 8);
    if (len)
        memcpy(buf + kl + 8, s, len);
    return kv_put(g, buf, kl, ENG_GGUF_STRING, 8 + len);
}

int eng_gguf_set_arr(eng_gguf_t *g, const char *key, enum eng_gguf_type elem, uint64_t n,
                     const void *data)
{
    int esz = eng__gguf_type_size((uint32_t)elem);
    if (!g || esz <= 0 || (!data && n))
        return ERR_INVAL;       /* strings: eng_gguf_set_arr_str; arrays of arrays: no */
    if (n > (SIZE_MAX - 12) / (size_t)esz)
        return ERR_NOMEM;
    size_t bytes = (size_t)n * (size_t)esz;
    if (elem == ENG_GGUF_BOOL)
        for (size_t i = 0; i < bytes; i++)
            if (((const uint8_t *)data)[i] > 1)
                return ERR_INVAL;
    size_t kl;
    int rc;
    char *buf = kv_buf(key, 12 + bytes, &kl, &rc);
    if (!buf)
        return rc;
    uint32_t e = (uint32_t)elem;
    memcpy(buf + kl, &e, 4);
    memcpy(buf + kl + 4, &n, 8);
    if (bytes)
        memcpy(buf + kl + 12, data, bytes);
    return kv_put(g, buf, kl, ENG_GGUF_ARRAY, 12 + bytes);
}

int eng_gguf_set_arr_str(eng_gguf_t *g, const char *key, uint64_t n, const char *const *s,
                         const size_t *lens)
{
    if (!g || (n && (!s || !lens)) || n > SIZE_MAX / 8)
        return ERR_INVAL;
    size_t total = 12;
    for (uint64_t i = 0; i < n; i++) {
        if (!s[i] && lens[i])
            return ERR_INVAL;
        if (lens[i] > SIZE_MAX - 8 - total)
            return ERR_NOMEM;
        total += 8 + lens[i];
    }
    size_t kl;
    int rc;
    char *buf = kv_buf(key, total, &kl, &rc);
    if (!buf)
        return rc;
    uint8_t *p = (uint8_t *)buf + kl;
    uint32_t e = ENG_GGUF_STRING;
    memcpy(p, &e, 4);
    memcpy(p + 4, &n, 8);
    size_t pos = 12;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t l = lens[i];
        memcpy(p + pos, &l, 8);
        if (lens[i])
            memcpy(p + pos + 8, s[i], lens[i]);
        pos += 8 + lens[i];
    }
    return kv_put(g, buf, kl, ENG_GGUF_ARRAY, total);
}

int eng_gguf_add_tensor(eng_gguf_t *g, const char *name, enum eng_dtype dtype, int n_dims,
                        const int64_t *ne, const void *data, size_t nbytes)
{
    if (!g || !name || !ne || n_dims < 1 || n_dims > 4)
        return ERR_INVAL;
    size_t nlen = strlen(name);
    if (nlen == 0 || nlen > ENG_GGUF_MAX_TENSOR_NAME)
        return ERR_INVAL;
    if ((unsigned)dtype >= ENG_DTYPE__MAX)
        return ERR_INVAL;
    int64_t blk = eng_dtype_block_elems(dtype);
    size_t bbytes = eng_dtype_block_bytes(dtype);
    if (blk <= 0 || bbytes == 0)
        return ERR_INVAL;
    int64_t full[4] = {1, 1, 1, 1};
    int64_t nel = 1;
    for (int d = 0; d < n_dims; d++) {
        if (ne[d] < 0)
            return ERR_INVAL;
        full[d] = ne[d];
    }
    for (int d = 0; d < 4; d++) {
        if (full[d] && nel > INT64_MAX / full[d])
            return ERR_INVAL;
        nel *= full[d];
    }
    if (full[0] % blk)
        return ERR_INVAL;
    uint64_t want = (uint64_t)(nel / blk);
    if (want && bbytes > UINT64_MAX / want)
        return ERR_INVAL;
    want *= bbytes;
    if (want != nbytes || (nbytes && !data))
        return ERR_INVAL;
    if (eng_gguf_find_tensor(g, name) >= 0)
        return ERR_INVAL;
    int rc = grow(&g->t, &g->cap_t, g->n_t + 1, sizeof *g->t, 16, 0);
    if (rc < 0 ||
        (rc = eng__gguf_index_reserve(&g->t_index, g, eng__gguf_t_name, g->n_t, g->n_t + 1)) < 0)
        return rc;
    struct gguf_tensor *t = calloc(1, sizeof *t);
    if (!t)
        return ERR_NOMEM;
    t->own = true;
    g->t[g->n_t] = t;
    memcpy(t->name, name, nlen + 1);
    t->name_len = nlen;
    t->dtype = dtype;
    t->n_dims = n_dims;
    memcpy(t->ne, full, sizeof full);
    t->nbytes = nbytes;
    t->data = data;
    t->offset = 0;
    eng__gguf_index_put(&g->t_index, t->name, nlen, g->n_t);
    g->n_t++;
    return 0;
}

int eng_gguf_hold(eng_gguf_t *g, void *res, void (*release)(void *res))
{
    if (!g)
        return ERR_INVAL;
    int rc = grow(&g->hold, &g->cap_hold, g->n_hold + 1, sizeof *g->hold, 8, 0);
    if (rc < 0)
        return rc;
    g->hold[g->n_hold].res = res;
    g->hold[g->n_hold].release = release;
    g->n_hold++;
    return 0;
}
