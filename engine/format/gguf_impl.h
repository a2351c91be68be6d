/* engine/format/gguf_impl.h: the inside of eng_gguf_t, private to the GGUF files of
 * engine/format/: gguf.c (the object: indexes, value parsing, getters, free), gguf_read.c
 * (the file reader), gguf_build.c (the in-memory builder) and gguf_write.c (the writer).
 * Owns: struct eng_gguf (key/value table, string-array indexes, tensor table, name hash
 * indexes, held resources, the mapping). */
#ifndef ORTHOD_ENGINE_FORMAT_GGUF_IMPL_H
#define ORTHOD_ENGINE_FORMAT_GGUF_IMPL_H

#include "gguf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "engine/format/gguf*.c read little-endian GGUF by memcpy: port them to big-endian first"
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

/* --- little-endian reads (unaligned) --- */
static inline uint16_t rd16(const uint8_t *p)
{
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}

static inline uint32_t rd32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static inline uint64_t rd64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static inline bool is_pow2(uint64_t v)
{
    return v && !(v & (v - 1));
}

/* --- gguf.c --- */
const char *eng__gguf_type_name(uint32_t t);
/* Bytes of one fixed-size value; 0 for string/array; -1 for invalid type ids. */
int eng__gguf_type_size(uint32_t t);
/* A new empty object: version 3, default alignment. 0 or ERR_NOMEM. */
int eng__gguf_alloc(eng_gguf_t **out);

/* Name indexes: an open-addressing hash over the names of entries 0..n-1 (key/values or
 * tensors), which name_of reads. */
typedef const char *(*name_of_fn)(const eng_gguf_t *g, size_t i, size_t *len);
const char *eng__gguf_kv_name(const eng_gguf_t *g, size_t i, size_t *len);
const char *eng__gguf_t_name(const eng_gguf_t *g, size_t i, size_t *len);
int64_t eng__gguf_index_find(const struct gguf_index *ix, const eng_gguf_t *g, name_of_fn name_of,
                             const char *s, size_t len);   /* index or -1 */
void eng__gguf_index_put(struct gguf_index *ix, const char *s, size_t len, size_t i);
/* Makes room for count entries (load <= 1/2), rebuilding from entries 0..n-1. */
int eng__gguf_index_reserve(struct gguf_index *ix, const eng_gguf_t *g, name_of_fn name_of,
                            size_t n, size_t count);

/* Parses one value of `type` at val[0..avail) into kv (val, val_size, elem, n, data,
 * str_off); the reader and the builder both validate through it. `what` names the key
 * for messages. Allocates only kv->str_off, bounded by avail / 8 entries. */
int eng__gguf_parse_value(const uint8_t *val, size_t avail, uint32_t type, struct gguf_kv *kv,
                          const char *what, struct errbuf *eb);
void eng__gguf_kv_clear(struct gguf_kv *kv);
/* Reads an integer-typed value: *neg when negative (*s holds it), else *u holds it.
 * false for non-integer types. */
bool eng__gguf_kv_int(const struct gguf_kv *kv, uint64_t *u, int64_t *s, bool *neg);

#endif
