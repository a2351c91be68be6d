/* engine/format/gguf.c: the GGUF object behind engine/format/gguf.h, whether read from a
 * file (gguf_read.c) or built in memory (gguf_build.c): the name indexes, the one
 * validating value parser both use, the getters and freeing.
 *
 * Representation: every key/value keeps its value in GGUF wire encoding (the bytes
 * after the type tag), pointing into the file for read objects or into an owned buffer
 * for values set by the builder. Both are parsed by the same validating routine, so a
 * built object and a read one answer getters identically and the writer (gguf_write.c)
 * just copies encodings. */
#include "gguf_impl.h"

#include "../../common/hash.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

const char *eng__gguf_type_name(uint32_t t)
{
    static const char *const names[] = {"uint8", "int8", "uint16", "int16", "uint32",
                                        "int32", "float32", "bool", "string", "array",
                                        "uint64", "int64", "float64"};
    return t < sizeof names / sizeof names[0] ? names[t] : "invalid";
}

int eng__gguf_type_size(uint32_t t)
{
    switch (t) {
    case ENG_GGUF_UINT8: case ENG_GGUF_INT8: case ENG_GGUF_BOOL: return 1;
    case ENG_GGUF_UINT16: case ENG_GGUF_INT16: return 2;
    case ENG_GGUF_UINT32: case ENG_GGUF_INT32: case ENG_GGUF_FLOAT32: return 4;
    case ENG_GGUF_UINT64: case ENG_GGUF_INT64: case ENG_GGUF_FLOAT64: return 8;
    case ENG_GGUF_STRING: case ENG_GGUF_ARRAY: return 0;
    default: return -1;
    }
}

/* ---------------------------------------------------------------------------------- */
/* name indexes */

const char *eng__gguf_kv_name(const eng_gguf_t *g, size_t i, size_t *len)
{
    *len = g->kv[i].key_len;
    return g->kv[i].key;
}

const char *eng__gguf_t_name(const eng_gguf_t *g, size_t i, size_t *len)
{
    *len = g->t[i]->name_len;
    return g->t[i]->name;
}

int64_t eng__gguf_index_find(const struct gguf_index *ix, const eng_gguf_t *g, name_of_fn name_of,
                             const char *s, size_t len)
{
    if (ix->cap == 0)
        return -1;
    size_t mask = ix->cap - 1;
    for (size_t h = (size_t)hash_fnv1a(s, len) & mask;; h = (h + 1) & mask) {
        size_t v = ix->slot[h];
        if (v == 0)
            return -1;
        size_t l;
        const char *n = name_of(g, v - 1, &l);
        if (l == len && memcmp(n, s, len) == 0)
            return (int64_t)(v - 1);
    }
}

void eng__gguf_index_put(struct gguf_index *ix, const char *s, size_t len, size_t i)
{
    size_t mask = ix->cap - 1;
    size_t h = (size_t)hash_fnv1a(s, len) & mask;
    while (ix->slot[h])
        h = (h + 1) & mask;
    ix->slot[h] = i + 1;
}

int eng__gguf_index_reserve(struct gguf_index *ix, const eng_gguf_t *g, name_of_fn name_of,
                            size_t n, size_t count)
{
    if (count <= ix->cap / 2)
        return 0;
    size_t cap = 16;
    while (cap / 2 < count) {
        if (cap > SIZE_MAX / 4 / sizeof(size_t))
            return ERR_NOMEM;
        cap *= 2;
    }
    size_t *slot = calloc(cap, sizeof *slot);
    if (!slot)
        return ERR_NOMEM;
    free(ix->slot);
    ix->slot = slot;
    ix->cap = cap;
    for (size_t i = 0; i < n; i++) {
        size_t l;
        const char *s = name_of(g, i, &l);
        eng__gguf_index_put(ix, s, l, i);
    }
    return 0;
}

/* ---------------------------------------------------------------------------------- */
/* value parsing (shared by the reader and the builder) */

/* Parses one value of `type` at val[0..avail) into kv (val, val_size, elem, n, data,
 * str_off). `what` names the key for messages. Allocates only kv->str_off, bounded by
 * avail / 8 entries. */
int eng__gguf_parse_value(const uint8_t *val, size_t avail, uint32_t type, struct gguf_kv *kv,
                          const char *what, struct errbuf *eb)
{
    int sz = eng__gguf_type_size(type);
    kv->val = val;
    kv->type = (enum eng_gguf_type)type;
    kv->data = NULL;
    kv->str_off = NULL;
    kv->n = 0;
    if (sz < 0)
        return err_set(eb, ERR_CORRUPT, "%s: unknown value type %" PRIu32, what, type);
    if (sz > 0) {
        if (avail < (size_t)sz)
            return err_set(eb, ERR_CORRUPT, "%s: %s value past end of file", what,
                           eng__gguf_type_name(type));
        if (type == ENG_GGUF_BOOL && val[0] > 1)
            return err_set(eb, ERR_CORRUPT, "%s: bool value %u is neither 0 nor 1", what,
                           val[0]);
        kv->val_size = (size_t)sz;
        kv->data = val;
        return 0;
    }
    if (type == ENG_GGUF_STRING) {
        if (avail < 8)
            return err_set(eb, ERR_CORRUPT, "%s: string length past end of file", what);
        uint64_t len = rd64(val);
        if (len > avail - 8)
            return err_set(eb, ERR_CORRUPT, "%s: string length %" PRIu64 " past end of file",
                           what, len);
        kv->n = len;
        kv->data = val + 8;
        kv->val_size = 8 + (size_t)len;
        return 0;
    }
    /* array */
    if (avail < 12)
        return err_set(eb, ERR_CORRUPT, "%s: array header past end of file", what);
    uint32_t elem = rd32(val);
    uint64_t n = rd64(val + 4);
    size_t left = avail - 12;
    int esz = eng__gguf_type_size(elem);
    if (esz < 0)
        return err_set(eb, ERR_CORRUPT, "%s: array of unknown element type %" PRIu32, what,
                       elem);
    if (elem == ENG_GGUF_ARRAY)
        return err_set(eb, ERR_UNSUPPORTED,
                       "%s: arrays of arrays are not supported (llama.cpp rejects them too)",
                       what);
    kv->elem = (enum eng_gguf_type)elem;
    if (esz > 0) {
        if (n > left / (size_t)esz)
            return err_set(eb, ERR_CORRUPT, "%s: array of %" PRIu64 " %s past end of file",
                           what, n, eng__gguf_type_name(elem));
        if (elem == ENG_GGUF_BOOL) {
            for (uint64_t i = 0; i < n; i++)
                if (val[12 + i] > 1)
                    return err_set(eb, ERR_CORRUPT,
                                   "%s: element %" PRIu64 ": bool value %u is neither 0 nor 1",
                                   what, i, val[12 + i]);
        }
        kv->n = n;
        kv->data = val + 12;
        kv->val_size = 12 + (size_t)n * (size_t)esz;
        return 0;
    }
    /* array of strings: every element takes at least its 8-byte length */
    if (n > left / 8)
        return err_set(eb, ERR_CORRUPT, "%s: array of %" PRIu64 " strings past end of file",
                       what, n);
    uint64_t *off = NULL;
    if (n) {
        off = malloc((size_t)n * sizeof *off);
        if (!off)
            return err_set(eb, ERR_NOMEM, "%s: no memory to index %" PRIu64 " strings", what,
                           n);
    }
    size_t pos = 12;
    for (uint64_t i = 0; i < n; i++) {
        if (avail - pos < 8) {
            free(off);
            return err_set(eb, ERR_CORRUPT,
                           "%s: element %" PRIu64 ": string length past end of file", what, i);
        }
        uint64_t len = rd64(val + pos);
        if (len > avail - pos - 8) {
            free(off);
            return err_set(eb, ERR_CORRUPT,
                           "%s: element %" PRIu64 ": string length %" PRIu64
                           " past end of file",
                           what, i, len);
        }
        off[i] = pos;
        pos += 8 + (size_t)len;
    }
    kv->n = n;
    kv->str_off = off;
    kv->val_size = pos;
    return 0;
}

void eng__gguf_kv_clear(struct gguf_kv *kv)
{
    free(kv->str_off);
    free(kv->owned);
    memset(kv, 0, sizeof *kv);
}

int eng__gguf_alloc(eng_gguf_t **out)
{
    eng_gguf_t *g = calloc(1, sizeof *g);
    if (!g)
        return ERR_NOMEM;
    g->version = 3;
    g->alignment = GGUF_DEFAULT_ALIGNMENT;
    *out = g;
    return 0;
}

void eng_gguf_free(eng_gguf_t *g)
{
    if (!g)
        return;
    for (size_t i = g->n_hold; i-- > 0;)
        if (g->hold[i].release)
            g->hold[i].release(g->hold[i].res);
    free(g->hold);
    for (size_t i = 0; i < g->cap_kv; i++)
        eng__gguf_kv_clear(&g->kv[i]);
    free(g->kv);
    free(g->kv_index.slot);
    for (size_t i = 0; i < g->n_t; i++)
        if (g->t[i]->own)
            free(g->t[i]);
    free(g->t);
    free(g->t_block);
    free(g->t_index.slot);
    if (g->mapped)
        munmap((void *)g->base, g->size);
    free(g);
}

uint32_t eng_gguf_version(const eng_gguf_t *g)
{
    return g->version;
}

size_t eng_gguf_alignment(const eng_gguf_t *g)
{
    return g->alignment;
}

size_t eng_gguf_file_size(const eng_gguf_t *g)
{
    return g->base ? g->size : 0;
}

/* ---------------------------------------------------------------------------------- */
/* metadata getters */

int64_t eng_gguf_n_kv(const eng_gguf_t *g)
{
    return (int64_t)g->n_kv;
}

int64_t eng_gguf_find_key(const eng_gguf_t *g, const char *key)
{
    if (!key)
        return -1;
    return eng__gguf_index_find(&g->kv_index, g, eng__gguf_kv_name, key, strlen(key));
}

const char *eng_gguf_key_at(const eng_gguf_t *g, int64_t i, size_t *len)
{
    if (i < 0 || (uint64_t)i >= g->n_kv) {
        if (len)
            *len = 0;
        return NULL;
    }
    if (len)
        *len = g->kv[i].key_len;
    return g->kv[i].key;
}

enum eng_gguf_type eng_gguf_type_at(const eng_gguf_t *g, int64_t i)
{
    if (i < 0 || (uint64_t)i >= g->n_kv)
        return (enum eng_gguf_type)-1;
    return g->kv[i].type;
}

static const struct gguf_kv *kv_get(const eng_gguf_t *g, const char *key)
{
    int64_t i = eng_gguf_find_key(g, key);
    return i < 0 ? NULL : &g->kv[i];
}

/* Reads an integer-typed value. *is_neg set when the value is negative (v holds it as
 * int64 then), else v holds it as uint64. Returns false for non-integer types. */
bool eng__gguf_kv_int(const struct gguf_kv *kv, uint64_t *u, int64_t *s, bool *neg)
{
    const uint8_t *p = kv->val;
    int64_t sv = 0;
    uint64_t uv = 0;
    bool is_signed = false;
    switch (kv->type) {
    case ENG_GGUF_UINT8: uv = p[0]; break;
    case ENG_GGUF_UINT16: uv = rd16(p); break;
    case ENG_GGUF_UINT32: uv = rd32(p); break;
    case ENG_GGUF_UINT64: uv = rd64(p); break;
    case ENG_GGUF_INT8: sv = (int8_t)p[0]; is_signed = true; break;
    case ENG_GGUF_INT16: sv = (int16_t)rd16(p); is_signed = true; break;
    case ENG_GGUF_INT32: sv = (int32_t)rd32(p); is_signed = true; break;
    case ENG_GGUF_INT64: sv = (int64_t)rd64(p); is_signed = true; break;
    default: return false;
    }
    if (is_signed) {
        *neg = sv < 0;
        *s = sv;
        *u = sv < 0 ? 0 : (uint64_t)sv;
    } else {
        *neg = false;
        *u = uv;
        *s = uv > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)uv;
    }
    return true;
}

int eng_gguf_get_u64(const eng_gguf_t *g, const char *key, uint64_t *out)
{
    const struct gguf_kv *kv = kv_get(g, key);
    if (!kv)
        return ERR_NOTFOUND;
    uint64_t u;
    int64_t s;
    bool neg;
    if (!eng__gguf_kv_int(kv, &u, &s, &neg) || neg)
        return ERR_CORRUPT;
    *out = u;
    return 0;
}

int eng_gguf_get_u32(const eng_gguf_t *g, const char *key, uint32_t *out)
{
    uint64_t v;
    int rc = eng_gguf_get_u64(g, key, &v);
    if (rc < 0)
        return rc;
    if (v > UINT32_MAX)
        return ERR_CORRUPT;
    *out = (uint32_t)v;
    return 0;
}

int eng_gguf_get_i32(const eng_gguf_t *g, const char *key, int32_t *out)
{
    const struct gguf_kv *kv = kv_get(g, key);
    if (!kv)
        return ERR_NOTFOUND;
    uint64_t u;
    int64_t s;
    bool neg;
    if (!eng__gguf_kv_int(kv, &u, &s, &neg))
        return ERR_CORRUPT;
    if (neg ? s < INT32_MIN : u > (uint64_t)INT32_MAX)
        return ERR_CORRUPT;
    *out = neg ? (int32_t)s : (int32_t)u;
    return 0;
}

int eng_gguf_get_f32(const eng_gguf_t *g, const char *key, float *out)
{
    const struct gguf_kv *kv = kv_get(g, key);
    if (!kv)
        return ERR_NOTFOUND;
    if (kv->type == ENG_GGUF_FLOAT32) {
        float f;
        memcpy(&f, kv->val, 4);
        *out = f;
        return 0;
    }
    if (kv->type == ENG_GGUF_FLOAT64) {
        double d;
        memcpy(&d, kv->val, 8);
        *out = (float)d;
        return 0;
    }
    return ERR_CORRUPT;
}

int eng_gguf_get_bool(const eng_gguf_t *g, const char *key, bool *out)
{
    const struct gguf_kv *kv = kv_get(g, key);
    if (!kv)
        return ERR_NOTFOUND;
    if (kv->type != ENG_GGUF_BOOL)
        return ERR_CORRUPT;
    *out = kv->val[0] != 0;
    return 0;
}

int eng_gguf_get_str(const eng_gguf_t *g, const char *key, const char **s, size_t *len)
{
    const struct gguf_kv *kv = kv_get(g, key);
    if (!kv)
        return ERR_NOTFOUND;
    if (kv->type != ENG_GGUF_STRING)
        return ERR_CORRUPT;
    *s = (const char *)kv->data;
    *len = (size_t)kv->n;
    return 0;
}

int eng_gguf_get_arr(const eng_gguf_t *g, const char *key, enum eng_gguf_type *elem,
                     uint64_t *n, const void **data)
{
    const struct gguf_kv *kv = kv_get(g, key);
    if (!kv)
        return ERR_NOTFOUND;
    if (kv->type != ENG_GGUF_ARRAY)
        return ERR_CORRUPT;
    if (elem)
        *elem = kv->elem;
    if (n)
        *n = kv->n;
    if (data)
        *data = kv->elem == ENG_GGUF_STRING ? NULL : (const void *)kv->data;
    return 0;
}

int eng_gguf_get_arr_str(const eng_gguf_t *g, const char *key, uint64_t i, const char **s,
                         size_t *len)
{
    const struct gguf_kv *kv = kv_get(g, key);
    if (!kv)
        return ERR_NOTFOUND;
    if (kv->type != ENG_GGUF_ARRAY || kv->elem != ENG_GGUF_STRING)
        return ERR_CORRUPT;
    if (i >= kv->n)
        return ERR_RANGE;
    const uint8_t *p = kv->val + kv->str_off[i];
    *len = (size_t)rd64(p);
    *s = (const char *)p + 8;
    return 0;
}

/* ---------------------------------------------------------------------------------- */
/* tensors */

int64_t eng_gguf_n_tensors(const eng_gguf_t *g)
{
    return (int64_t)g->n_t;
}

int64_t eng_gguf_find_tensor(const eng_gguf_t *g, const char *name)
{
    if (!name)
        return -1;
    return eng__gguf_index_find(&g->t_index, g, eng__gguf_t_name, name, strlen(name));
}

void eng_gguf_tensor_at(const eng_gguf_t *g, int64_t i, struct eng_gguf_tensor *out)
{
    const struct gguf_tensor *t = g->t[i];
    out->name = t->name;
    out->dtype = t->dtype;
    out->n_dims = t->n_dims;
    memcpy(out->ne, t->ne, sizeof out->ne);
    out->nbytes = t->nbytes;
    out->data = t->data;
    out->offset = t->offset;
}
