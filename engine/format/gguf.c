/* engine/format/gguf.c: the GGUF v2/v3 reader (mmap or caller memory), the in-memory builder
 * and the atomic GGUF v3 writer behind engine/gguf.h.
 * Owns: struct eng_gguf (key/value table, string-array indexes, tensor table, name
 * hash indexes, held resources, the mapping).
 *
 * Representation: every key/value keeps its value in GGUF wire encoding (the bytes
 * after the type tag), pointing into the file for read objects or into an owned buffer
 * for values set by the builder. Both are parsed by the same validating routine, so a
 * built object and a read one answer getters identically and the writer just copies
 * encodings.
 *
 * Hostile input: the reader never reads outside [data, data + size); every count is
 * checked against the bytes left before anything is allocated for it, so the memory a
 * file can make us allocate is a small multiple of its size. Arrays of arrays are
 * rejected (ERR_UNSUPPORTED), as llama.cpp's gguf reader rejects them. */
#include "gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "engine/gguf.c reads little-endian GGUF by memcpy: port it before using a big-endian host"
#endif

#define GGUF_MAGIC "GGUF"
#define GGUF_DEFAULT_ALIGNMENT 32u
#define GGUF_HEADER_BYTES 24u       /* magic, u32 version, u64 n_tensors, u64 n_kv */
/* Smallest possible encodings, used to cap counts by the bytes left in the file. */
#define GGUF_MIN_KV_BYTES 13u       /* u64 key len + 0-byte key + u32 type + 1-byte value */
/* u64 name length + 1-byte name + u32 n_dims + one u64 ne + u32 type + u64 offset */
#define GGUF_MIN_TENSOR_BYTES 33u

struct gguf_kv {
    const char *key;                /* not NUL-terminated */
    size_t key_len;
    enum eng_gguf_type type;
    enum eng_gguf_type elem;        /* arrays: element type */
    uint64_t n;                     /* arrays: element count; strings: byte length */
    const uint8_t *val;             /* wire encoding of the value (after the type tag) */
    size_t val_size;
    const uint8_t *data;            /* fixed-size arrays: packed elements; strings: bytes */
    uint64_t *str_off;              /* string arrays: offset in val of element i's length */
    void *owned;                    /* builder: the buffer holding key and val */
};

struct gguf_tensor {
    char name[ENG_GGUF_MAX_TENSOR_NAME + 1];
    size_t name_len;
    enum eng_dtype dtype;
    int n_dims;
    int64_t ne[4];
    size_t nbytes;
    const void *data;
    uint64_t offset;
    bool own;                       /* allocated alone by the builder (else in t_block) */
};

struct gguf_hold {
    void *res;
    void (*release)(void *res);
};

/* Open-addressing hash index over names; slot holds index + 1, 0 is empty. */
struct gguf_index {
    size_t *slot;
    size_t cap;                     /* 0 or a power of two */
};

struct eng_gguf {
    uint32_t version;
    size_t alignment;
    const uint8_t *base;            /* file bytes (NULL for built objects) */
    size_t size;
    bool mapped;                    /* base came from mmap: munmap in free */

    struct gguf_kv *kv;
    size_t n_kv, cap_kv;
    struct gguf_index kv_index;

    struct gguf_tensor **t;         /* stable addresses: names handed out never move */
    struct gguf_tensor *t_block;    /* the reader's tensors, one allocation */
    size_t n_t, cap_t;
    struct gguf_index t_index;

    struct gguf_hold *hold;
    size_t n_hold, cap_hold;
};

/* ---------------------------------------------------------------------------------- */
/* small helpers */

static uint16_t rd16(const uint8_t *p)
{
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}
static uint32_t rd32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}
static uint64_t rd64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static const char *type_name(uint32_t t)
{
    static const char *const names[] = {"uint8", "int8", "uint16", "int16", "uint32",
                                        "int32", "float32", "bool", "string", "array",
                                        "uint64", "int64", "float64"};
    return t < sizeof names / sizeof names[0] ? names[t] : "invalid";
}

/* Bytes of one fixed-size value; 0 for string/array; -1 for invalid type ids. */
static int type_size(uint32_t t)
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

/* A printable, bounded rendering of a name from the file for error messages. */
#define ESC_MAX 96
static const char *esc(char out[ESC_MAX], const char *s, size_t len)
{
    return err_escape(out, ESC_MAX, s, len);
}

static uint64_t fnv1a(const char *s, size_t len)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h;
}

static bool is_pow2(uint64_t v)
{
    return v && !(v & (v - 1));
}

/* ---------------------------------------------------------------------------------- */
/* name indexes */

typedef const char *(*name_of_fn)(const eng_gguf_t *g, size_t i, size_t *len);

static const char *kv_name_of(const eng_gguf_t *g, size_t i, size_t *len)
{
    *len = g->kv[i].key_len;
    return g->kv[i].key;
}

static const char *t_name_of(const eng_gguf_t *g, size_t i, size_t *len)
{
    *len = g->t[i]->name_len;
    return g->t[i]->name;
}

static int64_t index_find(const struct gguf_index *ix, const eng_gguf_t *g, name_of_fn name_of,
                          const char *s, size_t len)
{
    if (ix->cap == 0)
        return -1;
    size_t mask = ix->cap - 1;
    for (size_t h = (size_t)fnv1a(s, len) & mask;; h = (h + 1) & mask) {
        size_t v = ix->slot[h];
        if (v == 0)
            return -1;
        size_t l;
        const char *n = name_of(g, v - 1, &l);
        if (l == len && memcmp(n, s, len) == 0)
            return (int64_t)(v - 1);
    }
}

static void index_put(struct gguf_index *ix, const char *s, size_t len, size_t i)
{
    size_t mask = ix->cap - 1;
    size_t h = (size_t)fnv1a(s, len) & mask;
    while (ix->slot[h])
        h = (h + 1) & mask;
    ix->slot[h] = i + 1;
}

/* Makes room for count entries (load <= 1/2), rebuilding from entries 0..n-1. */
static int index_reserve(struct gguf_index *ix, const eng_gguf_t *g, name_of_fn name_of,
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
        index_put(ix, s, l, i);
    }
    return 0;
}

/* ---------------------------------------------------------------------------------- */
/* value parsing (shared by the reader and the builder) */

/* Parses one value of `type` at val[0..avail) into kv (val, val_size, elem, n, data,
 * str_off). `what` names the key for messages. Allocates only kv->str_off, bounded by
 * avail / 8 entries. */
static int parse_value(const uint8_t *val, size_t avail, uint32_t type, struct gguf_kv *kv,
                       const char *what, struct errbuf *eb)
{
    int sz = type_size(type);
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
                           type_name(type));
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
    int esz = type_size(elem);
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
                           what, n, type_name(elem));
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

static void kv_clear(struct gguf_kv *kv)
{
    free(kv->str_off);
    free(kv->owned);
    memset(kv, 0, sizeof *kv);
}

/* ---------------------------------------------------------------------------------- */
/* reading */

static bool t_before(const eng_gguf_t *g, size_t a, size_t b)
{
    uint64_t oa = g->t[a]->offset, ob = g->t[b]->offset;
    return oa < ob || (oa == ob && a < b);
}

static void sift_down(const eng_gguf_t *g, size_t *ord, size_t r, size_t n)
{
    for (;;) {
        size_t c = 2 * r + 1;
        if (c >= n)
            return;
        if (c + 1 < n && t_before(g, ord[c], ord[c + 1]))
            c++;
        if (!t_before(g, ord[r], ord[c]))
            return;
        size_t tmp = ord[r];
        ord[r] = ord[c];
        ord[c] = tmp;
        r = c;
    }
}

static int parse_file(eng_gguf_t *g, struct errbuf *eb)
{
    const uint8_t *b = g->base;
    size_t size = g->size;
    char nm[ESC_MAX], what[ESC_MAX + 16];
    int rc;

    if (size < 8)
        return err_set(eb, ERR_CORRUPT, "file is %zu bytes, too short for a GGUF header", size);
    if (memcmp(b, GGUF_MAGIC, 4) != 0)
        return err_set(eb, ERR_CORRUPT, "not a GGUF file (magic bytes %02x %02x %02x %02x)",
                       b[0], b[1], b[2], b[3]);
    uint32_t version = rd32(b + 4);
    if (version == 1)
        return err_set(eb, ERR_UNSUPPORTED,
                       "GGUF version 1 is not supported: convert the model again with a "
                       "current llama.cpp");
    if (version != 2 && version != 3) {
        if ((version & 0xffff) == 0 && (version >> 16) != 0)
            return err_set(eb, ERR_UNSUPPORTED,
                           "big-endian GGUF files are not supported: use a little-endian file");
        return err_set(eb, ERR_UNSUPPORTED, "GGUF version %" PRIu32 " is not supported (2 or 3)",
                       version);
    }
    if (size < GGUF_HEADER_BYTES)
        return err_set(eb, ERR_CORRUPT, "file is %zu bytes, too short for a GGUF header", size);
    g->version = version;
    uint64_t n_tensors = rd64(b + 8);
    uint64_t n_kv = rd64(b + 16);
    size_t pos = GGUF_HEADER_BYTES;

    /* --- key/values --- */
    if (n_kv > (size - pos) / GGUF_MIN_KV_BYTES)
        return err_set(eb, ERR_CORRUPT,
                       "header: %" PRIu64 " key/values cannot fit in a %zu-byte file", n_kv, size);
    if (n_kv) {
        g->kv = calloc((size_t)n_kv, sizeof *g->kv);
        if (!g->kv)
            return err_set(eb, ERR_NOMEM, "no memory for %" PRIu64 " key/values", n_kv);
        g->cap_kv = (size_t)n_kv;
        if ((rc = index_reserve(&g->kv_index, g, kv_name_of, 0, (size_t)n_kv)) < 0)
            return err_set(eb, rc, "no memory to index %" PRIu64 " keys", n_kv);
    }
    for (uint64_t i = 0; i < n_kv; i++) {
        if (size - pos < 8)
            return err_set(eb, ERR_CORRUPT, "key/value %" PRIu64 ": key length past end of file",
                           i);
        uint64_t klen = rd64(b + pos);
        pos += 8;
        if (klen > size - pos)
            return err_set(eb, ERR_CORRUPT,
                           "key/value %" PRIu64 ": key length %" PRIu64 " past end of file", i,
                           klen);
        const char *key = (const char *)b + pos;
        if (klen == 0)
            return err_set(eb, ERR_CORRUPT, "key/value %" PRIu64 ": empty key", i);
        if (klen > ENG_GGUF_MAX_KEY_LEN)
            return err_set(eb, ERR_CORRUPT, "key/value %" PRIu64 ": key '%s' is %" PRIu64
                           " bytes, longer than %u", i, esc(nm, key, (size_t)klen), klen,
                           ENG_GGUF_MAX_KEY_LEN);
        if (memchr(key, 0, (size_t)klen))
            return err_set(eb, ERR_CORRUPT, "key/value %" PRIu64 ": key '%s' contains a NUL byte",
                           i, esc(nm, key, (size_t)klen));
        pos += (size_t)klen;
        snprintf(what, sizeof what, "key '%s'", esc(nm, key, (size_t)klen));
        int64_t dup = index_find(&g->kv_index, g, kv_name_of, key, (size_t)klen);
        if (dup >= 0)
            return err_set(eb, ERR_CORRUPT, "%s: duplicate key (key/values %" PRId64 " and %"
                           PRIu64 ")", what, dup, i);
        if (size - pos < 4)
            return err_set(eb, ERR_CORRUPT, "%s: value type past end of file", what);
        uint32_t type = rd32(b + pos);
        pos += 4;
        struct gguf_kv *kv = &g->kv[i];
        kv->key = key;
        kv->key_len = (size_t)klen;
        if ((rc = parse_value(b + pos, size - pos, type, kv, what, eb)) < 0)
            return rc;
        pos += kv->val_size;
        g->n_kv = (size_t)i + 1;
        index_put(&g->kv_index, key, (size_t)klen, (size_t)i);
    }

    /* --- alignment --- */
    g->alignment = GGUF_DEFAULT_ALIGNMENT;
    if (eng_gguf_find_key(g, "general.alignment") >= 0) {
        uint32_t a;
        if ((rc = eng_gguf_get_u32(g, "general.alignment", &a)) < 0)
            return err_set(eb, ERR_CORRUPT,
                           "key 'general.alignment': not an unsigned 32-bit integer");
        if (!is_pow2(a))
            return err_set(eb, ERR_CORRUPT,
                           "key 'general.alignment': %" PRIu32 " is not a power of two", a);
        g->alignment = a;
    }

    /* --- tensor infos --- */
    if (n_tensors > (size - pos) / GGUF_MIN_TENSOR_BYTES)
        return err_set(eb, ERR_CORRUPT,
                       "header: %" PRIu64 " tensors cannot fit in a %zu-byte file", n_tensors,
                       size);
    if (n_tensors) {
        g->t_block = calloc((size_t)n_tensors, sizeof *g->t_block);
        g->t = calloc((size_t)n_tensors, sizeof *g->t);
        if (!g->t_block || !g->t)
            return err_set(eb, ERR_NOMEM, "no memory for %" PRIu64 " tensors", n_tensors);
        g->cap_t = (size_t)n_tensors;
        for (size_t i = 0; i < g->cap_t; i++)
            g->t[i] = &g->t_block[i];
        if ((rc = index_reserve(&g->t_index, g, t_name_of, 0, (size_t)n_tensors)) < 0)
            return err_set(eb, rc, "no memory to index %" PRIu64 " tensors", n_tensors);
    }
    for (uint64_t i = 0; i < n_tensors; i++) {
        struct gguf_tensor *t = g->t[i];
        if (size - pos < 8)
            return err_set(eb, ERR_CORRUPT, "tensor %" PRIu64 ": name length past end of file", i);
        uint64_t nlen = rd64(b + pos);
        pos += 8;
        if (nlen > size - pos)
            return err_set(eb, ERR_CORRUPT,
                           "tensor %" PRIu64 ": name length %" PRIu64 " past end of file", i, nlen);
        const char *name = (const char *)b + pos;
        if (nlen == 0)
            return err_set(eb, ERR_CORRUPT, "tensor %" PRIu64 ": empty name", i);
        if (nlen > ENG_GGUF_MAX_TENSOR_NAME)
            return err_set(eb, ERR_CORRUPT,
                           "tensor %" PRIu64 ": name '%s' is %" PRIu64 " bytes, longer than %u",
                           i, esc(nm, name, (size_t)nlen), nlen, ENG_GGUF_MAX_TENSOR_NAME);
        if (memchr(name, 0, (size_t)nlen))
            return err_set(eb, ERR_CORRUPT, "tensor %" PRIu64 ": name '%s' contains a NUL byte",
                           i, esc(nm, name, (size_t)nlen));
        pos += (size_t)nlen;
        memcpy(t->name, name, (size_t)nlen);
        t->name[nlen] = '\0';
        t->name_len = (size_t)nlen;
        esc(nm, t->name, t->name_len);
        int64_t dup = index_find(&g->t_index, g, t_name_of, t->name, t->name_len);
        if (dup >= 0)
            return err_set(eb, ERR_CORRUPT, "tensor '%s': duplicate name (tensors %" PRId64
                           " and %" PRIu64 ")", nm, dup, i);

        if (size - pos < 4)
            return err_set(eb, ERR_CORRUPT, "tensor '%s': n_dims past end of file", nm);
        uint32_t n_dims = rd32(b + pos);
        pos += 4;
        if (n_dims < 1 || n_dims > 4)
            return err_set(eb, ERR_CORRUPT, "tensor '%s': n_dims %" PRIu32 " is not in 1..4", nm,
                           n_dims);
        if (size - pos < (size_t)n_dims * 8 + 4 + 8)
            return err_set(eb, ERR_CORRUPT, "tensor '%s': shape, type or offset past end of file",
                           nm);
        t->n_dims = (int)n_dims;
        for (int d = 0; d < 4; d++)
            t->ne[d] = 1;
        for (uint32_t d = 0; d < n_dims; d++) {
            uint64_t ne = rd64(b + pos);
            pos += 8;
            if (ne > (uint64_t)INT64_MAX)
                return err_set(eb, ERR_CORRUPT, "tensor '%s': ne[%" PRIu32 "] = %" PRIu64
                               " is out of range", nm, d, ne);
            t->ne[d] = (int64_t)ne;
        }
        uint32_t type = rd32(b + pos);
        pos += 4;
        t->offset = rd64(b + pos);
        pos += 8;

        /* type: the dtype table in tensor.c is the authority on sizes */
        int64_t blk = type < ENG_DTYPE__MAX ? eng_dtype_block_elems((enum eng_dtype)type) : 0;
        if (blk <= 0) {
            static const struct { uint32_t id; const char *name; } ggml_only[] = {
                {16, "iq2_xxs"}, {17, "iq2_xs"}, {18, "iq3_xxs"}, {19, "iq1_s"},
                {20, "iq4_nl"}, {21, "iq3_s"}, {22, "iq2_s"}, {23, "iq4_xs"},
                {29, "iq1_m"}, {34, "tq1_0"}, {35, "tq2_0"}, {39, "mxfp4"},
            };
            for (size_t k = 0; k < sizeof ggml_only / sizeof ggml_only[0]; k++)
                if (ggml_only[k].id == type)
                    return err_set(eb, ERR_UNSUPPORTED,
                                   "tensor '%s': ggml type %s (%" PRIu32 ") is not supported: "
                                   "requantize the model to q8_0, q4_0, f16 or a k-quant",
                                   nm, ggml_only[k].name, type);
            return err_set(eb, ERR_CORRUPT, "tensor '%s': unknown type id %" PRIu32, nm, type);
        }
        t->dtype = (enum eng_dtype)type;
        size_t bbytes = eng_dtype_block_bytes(t->dtype);

        /* element count and byte size, overflow-checked */
        int64_t nel = 1;
        for (int d = 0; d < 4; d++) {
            if (t->ne[d] != 0 && nel > INT64_MAX / t->ne[d])
                return err_set(eb, ERR_CORRUPT,
                               "tensor '%s': element count overflows (ne = %" PRId64 " x %" PRId64
                               " x %" PRId64 " x %" PRId64 ")",
                               nm, t->ne[0], t->ne[1], t->ne[2], t->ne[3]);
            nel *= t->ne[d];
        }
        if (t->ne[0] % blk)
            return err_set(eb, ERR_CORRUPT,
                           "tensor '%s': ne[0] = %" PRId64 " is not a multiple of the %s block "
                           "size %" PRId64, nm, t->ne[0], eng_dtype_name(t->dtype), blk);
        uint64_t nbytes = (uint64_t)(nel / blk);
        if (nbytes && bbytes > UINT64_MAX / nbytes)
            return err_set(eb, ERR_CORRUPT, "tensor '%s': byte size overflows", nm);
        nbytes *= bbytes;
        if (nbytes > SIZE_MAX || nbytes > size)
            return err_set(eb, ERR_CORRUPT,
                           "tensor '%s': %" PRIu64 " bytes of data cannot fit in a %zu-byte file",
                           nm, nbytes, size);
        t->nbytes = (size_t)nbytes;
        if (t->offset % g->alignment)
            return err_set(eb, ERR_CORRUPT,
                           "tensor '%s': offset %" PRIu64 " is not a multiple of the alignment %zu",
                           nm, t->offset, g->alignment);
        g->n_t = (size_t)i + 1;
        index_put(&g->t_index, t->name, t->name_len, (size_t)i);
    }

    /* --- data section --- */
    size_t pad = (g->alignment - pos % g->alignment) % g->alignment;
    if (n_tensors == 0)
        return 0;        /* vocab-only: no data section; the file may end before it */
    if (pad > size - pos)
        return err_set(eb, ERR_CORRUPT,
                       "data section start (offset %zu aligned to %zu) is past end of file "
                       "(%zu bytes)",
                       pos, g->alignment, size);
    size_t data_start = pos + pad;
    size_t data_size = size - data_start;
    for (size_t i = 0; i < g->n_t; i++) {
        struct gguf_tensor *t = g->t[i];
        if (t->offset > data_size || t->nbytes > data_size - t->offset)
            return err_set(eb, ERR_CORRUPT,
                           "tensor '%s': offset past end of file (data %" PRIu64 "..%" PRIu64
                           " of a %zu-byte data section)",
                           esc(nm, t->name, t->name_len), t->offset,
                           t->offset + (uint64_t)t->nbytes, data_size);
        t->data = b + data_start + t->offset;
    }

    /* no two tensors share bytes: sort by offset, compare neighbours */
    size_t *ord = malloc(g->n_t * sizeof *ord);
    if (!ord)
        return err_set(eb, ERR_NOMEM, "no memory to check %zu tensors", g->n_t);
    size_t n_ord = 0;
    for (size_t i = 0; i < g->n_t; i++)
        if (g->t[i]->nbytes)
            ord[n_ord++] = i;
    /* heap sort by (offset, index): O(n log n) whatever order a hostile file uses */
    for (size_t k = n_ord / 2; k-- > 0;)
        sift_down(g, ord, k, n_ord);
    for (size_t end = n_ord; end > 1;) {
        end--;
        size_t tmp = ord[0];
        ord[0] = ord[end];
        ord[end] = tmp;
        sift_down(g, ord, 0, end);
    }
    for (size_t k = 1; k < n_ord; k++) {
        const struct gguf_tensor *a = g->t[ord[k - 1]], *c = g->t[ord[k]];
        if (a->offset + a->nbytes > c->offset) {
            char nm2[ESC_MAX];
            rc = err_set(eb, ERR_CORRUPT, "tensor '%s': data overlaps tensor '%s'",
                         esc(nm, c->name, c->name_len), esc(nm2, a->name, a->name_len));
            free(ord);
            return rc;
        }
    }
    free(ord);
    return 0;
}

static int gguf_alloc(eng_gguf_t **out)
{
    eng_gguf_t *g = calloc(1, sizeof *g);
    if (!g)
        return ERR_NOMEM;
    g->version = 3;
    g->alignment = GGUF_DEFAULT_ALIGNMENT;
    *out = g;
    return 0;
}

int eng_gguf_open_mem(const void *data, size_t size, eng_gguf_t **out, struct errbuf *eb)
{
    if (!out || (!data && size))
        return err_set(eb, ERR_INVAL, "eng_gguf_open_mem: NULL argument");
    eng_gguf_t *g;
    if (gguf_alloc(&g) < 0)
        return err_set(eb, ERR_NOMEM, "no memory for a GGUF object");
    g->base = data;
    g->size = size;
    int rc = parse_file(g, eb);
    if (rc < 0) {
        eng_gguf_free(g);
        return rc;
    }
    *out = g;
    return 0;
}

int eng_gguf_open(const char *path, eng_gguf_t **out, struct errbuf *eb)
{
    if (!path || !out)
        return err_set(eb, ERR_INVAL, "eng_gguf_open: NULL argument");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        return err_set(eb, e == ENOENT ? ERR_NOTFOUND : ERR_IO, "cannot open: %s", strerror(e));
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return err_set(eb, ERR_IO, "cannot stat: %s", strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return err_set(eb, ERR_INVAL, "not a regular file");
    }
    if (st.st_size == 0) {
        close(fd);
        return err_set(eb, ERR_CORRUPT, "file is empty, not a GGUF file");
    }
    if ((uintmax_t)st.st_size > SIZE_MAX) {
        close(fd);
        return err_set(eb, ERR_TOOLARGE, "file too large to map");
    }
    size_t size = (size_t)st.st_size;
    void *m = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
    int e = errno;
    close(fd);
    if (m == MAP_FAILED)
        return err_set(eb, e == ENOMEM ? ERR_NOMEM : ERR_IO, "cannot mmap %zu bytes: %s", size,
                       strerror(e));
    eng_gguf_t *g;
    if (gguf_alloc(&g) < 0) {
        munmap(m, size);
        return err_set(eb, ERR_NOMEM, "no memory for a GGUF object");
    }
    g->base = m;
    g->size = size;
    g->mapped = true;
    int rc = parse_file(g, eb);
    if (rc < 0) {
        eng_gguf_free(g);
        return rc;
    }
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
        kv_clear(&g->kv[i]);
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
    return index_find(&g->kv_index, g, kv_name_of, key, strlen(key));
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
static bool kv_int(const struct gguf_kv *kv, uint64_t *u, int64_t *s, bool *neg)
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
    if (!kv_int(kv, &u, &s, &neg) || neg)
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
    if (!kv_int(kv, &u, &s, &neg))
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
    return index_find(&g->t_index, g, t_name_of, name, strlen(name));
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

/* ---------------------------------------------------------------------------------- */
/* building */

int eng_gguf_new(eng_gguf_t **out)
{
    if (!out)
        return ERR_INVAL;
    return gguf_alloc(out);
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
    int rc = parse_value(val, val_size, type, &nkv, "builder", NULL);
    if (rc < 0 || nkv.val_size != val_size) {
        kv_clear(&nkv);
        return rc < 0 ? rc : ERR_INTERNAL;
    }
    /* general.alignment drives the writer: keep it a valid power of two */
    bool is_align = key_len == 17 && memcmp(buf, "general.alignment", 17) == 0;
    uint64_t align = 0;
    if (is_align) {
        int64_t s;
        bool neg;
        if (!kv_int(&nkv, &align, &s, &neg) || neg || align > UINT32_MAX || !is_pow2(align)) {
            kv_clear(&nkv);
            return ERR_INVAL;
        }
    }
    int64_t old = index_find(&g->kv_index, g, kv_name_of, buf, key_len);
    if (old >= 0) {
        /* same key bytes, same hash: the index slot stays valid */
        kv_clear(&g->kv[old]);
        g->kv[old] = nkv;
    } else {
        if (g->n_kv == g->cap_kv) {
            size_t cap = g->cap_kv ? g->cap_kv * 2 : 16;
            struct gguf_kv *kv = realloc(g->kv, cap * sizeof *kv);
            if (!kv) {
                kv_clear(&nkv);
                return ERR_NOMEM;
            }
            memset(kv + g->cap_kv, 0, (cap - g->cap_kv) * sizeof *kv);
            g->kv = kv;
            g->cap_kv = cap;
        }
        if ((rc = index_reserve(&g->kv_index, g, kv_name_of, g->n_kv, g->n_kv + 1)) < 0) {
            kv_clear(&nkv);
            return rc;
        }
        g->kv[g->n_kv] = nkv;
        index_put(&g->kv_index, buf, key_len, g->n_kv);
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
    int esz = type_size((uint32_t)elem);
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
    if (g->n_t == g->cap_t) {
        size_t cap = g->cap_t ? g->cap_t * 2 : 16;
        struct gguf_tensor **tp = realloc(g->t, cap * sizeof *tp);
        if (!tp)
            return ERR_NOMEM;
        g->t = tp;
        g->cap_t = cap;
    }
    int rc = index_reserve(&g->t_index, g, t_name_of, g->n_t, g->n_t + 1);
    if (rc < 0)
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
    index_put(&g->t_index, t->name, nlen, g->n_t);
    g->n_t++;
    return 0;
}

int eng_gguf_hold(eng_gguf_t *g, void *res, void (*release)(void *res))
{
    if (!g)
        return ERR_INVAL;
    if (g->n_hold == g->cap_hold) {
        size_t cap = g->cap_hold ? g->cap_hold * 2 : 8;
        struct gguf_hold *h = realloc(g->hold, cap * sizeof *h);
        if (!h)
            return ERR_NOMEM;
        g->hold = h;
        g->cap_hold = cap;
    }
    g->hold[g->n_hold].res = res;
    g->hold[g->n_hold].release = release;
    g->n_hold++;
    return 0;
}

/* ---------------------------------------------------------------------------------- */
/* writing */

struct wr {
    int fd;
    uint64_t pos;
    uint8_t buf[1 << 16];
    size_t n;
    int err;                        /* errno of the first failure */
};

static void wr_flush(struct wr *w)
{
    size_t off = 0;
    while (!w->err && off < w->n) {
        ssize_t k = write(w->fd, w->buf + off, w->n - off);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            w->err = errno;
        } else {
            off += (size_t)k;
        }
    }
    w->n = 0;
}

static void wr_bytes(struct wr *w, const void *p, size_t len)
{
    const uint8_t *s = p;
    w->pos += len;
    while (len && !w->err) {
        if (w->n == sizeof w->buf)
            wr_flush(w);
        size_t k = sizeof w->buf - w->n;
        if (k > len)
            k = len;
        memcpy(w->buf + w->n, s, k);
        w->n += k;
        s += k;
        len -= k;
    }
}

static void wr_u32(struct wr *w, uint32_t v)
{
    wr_bytes(w, &v, 4);
}

static void wr_u64(struct wr *w, uint64_t v)
{
    wr_bytes(w, &v, 8);
}

static void wr_pad(struct wr *w, size_t alignment)
{
    static const uint8_t zeros[64];
    size_t pad = (size_t)((alignment - w->pos % alignment) % alignment);
    while (pad) {
        size_t k = pad < sizeof zeros ? pad : sizeof zeros;
        wr_bytes(w, zeros, k);
        pad -= k;
    }
}

int eng_gguf_write(const eng_gguf_t *g, const char *path, struct errbuf *eb)
{
    if (!g || !path)
        return err_set(eb, ERR_INVAL, "eng_gguf_write: NULL argument");
    size_t align = g->alignment;
    if (!is_pow2(align))
        return err_set(eb, ERR_INVAL, "%s: alignment %zu is not a power of two", path, align);

    /* offsets of each tensor in the data section, padded as llama.cpp writes them */
    uint64_t *off = NULL;
    if (g->n_t) {
        off = malloc(g->n_t * sizeof *off);
        if (!off)
            return err_set(eb, ERR_NOMEM, "%s: no memory for the tensor table", path);
    }
    uint64_t data_size = 0;
    for (size_t i = 0; i < g->n_t; i++) {
        off[i] = data_size;
        uint64_t padded = ((uint64_t)g->t[i]->nbytes + align - 1) / align * align;
        if (padded > UINT64_MAX - data_size) {
            free(off);
            return err_set(eb, ERR_TOOLARGE, "%s: data section too large", path);
        }
        data_size += padded;
    }

    size_t plen = strlen(path);
    char *tmp = malloc(plen + 16);
    if (!tmp) {
        free(off);
        return err_set(eb, ERR_NOMEM, "%s: no memory", path);
    }
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp.XXXXXX", 12);
    struct wr *w = malloc(sizeof *w);
    if (!w) {
        free(tmp);
        free(off);
        return err_set(eb, ERR_NOMEM, "%s: no memory", path);
    }
    w->fd = mkostemp(tmp, O_CLOEXEC);
    if (w->fd < 0) {
        int e = errno;
        free(w);
        free(tmp);
        free(off);
        return err_set(eb, ERR_IO, "%s: cannot create a temporary file beside it: %s", path,
                       strerror(e));
    }
    w->pos = 0;
    w->n = 0;
    w->err = 0;
    if (fchmod(w->fd, 0644) != 0)
        w->err = errno;

    wr_bytes(w, GGUF_MAGIC, 4);
    wr_u32(w, 3);
    wr_u64(w, g->n_t);
    wr_u64(w, g->n_kv);
    for (size_t i = 0; i < g->n_kv; i++) {
        const struct gguf_kv *kv = &g->kv[i];
        wr_u64(w, kv->key_len);
        wr_bytes(w, kv->key, kv->key_len);
        wr_u32(w, (uint32_t)kv->type);
        wr_bytes(w, kv->val, kv->val_size);
    }
    for (size_t i = 0; i < g->n_t; i++) {
        const struct gguf_tensor *t = g->t[i];
        wr_u64(w, t->name_len);
        wr_bytes(w, t->name, t->name_len);
        wr_u32(w, (uint32_t)t->n_dims);
        for (int d = 0; d < t->n_dims; d++)
            wr_u64(w, (uint64_t)t->ne[d]);
        wr_u32(w, (uint32_t)t->dtype);
        wr_u64(w, off[i]);
    }
    if (g->n_t) {
        wr_pad(w, align);
        for (size_t i = 0; i < g->n_t; i++) {
            wr_bytes(w, g->t[i]->data, g->t[i]->nbytes);
            wr_pad(w, align);
        }
    }
    wr_flush(w);
    if (!w->err && fsync(w->fd) != 0)
        w->err = errno;
    if (close(w->fd) != 0 && !w->err)
        w->err = errno;
    if (!w->err && rename(tmp, path) != 0)
        w->err = errno;
    int e = w->err;
    free(w);
    free(off);
    if (e) {
        unlink(tmp);
        free(tmp);
        return err_set(eb, ERR_IO, "%s: write failed: %s", path, strerror(e));
    }
    free(tmp);

    /* make the rename durable */
    char *dir = strdup(path);
    if (!dir)
        return err_set(eb, ERR_NOMEM, "%s: no memory", path);
    char *slash = strrchr(dir, '/');
    const char *d = ".";
    if (slash) {
        slash[slash == dir ? 1 : 0] = '\0';
        d = dir;
    }
    int dfd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc = 0;
    if (dfd < 0 || fsync(dfd) != 0)
        rc = err_set(eb, ERR_IO, "%s: written, but syncing its directory failed: %s", path,
                     strerror(errno));
    if (dfd >= 0)
        close(dfd);
    free(dir);
    return rc;
}
