/* engine/format/gguf.h: a model file's metadata and tensor table.
 * Owns: eng_gguf_t, which is either read from a GGUF v2/v3 file (mmap, every offset,
 * length, count and alignment checked against the file size) or assembled in memory
 * (the Hugging Face loader builds one from config.json + safetensors; tests and the
 * random-model generator build one and write it out). The model loader reads only this.
 * Strings are (pointer, length) pairs that are NOT NUL-terminated (GGUF stores them so);
 * pointers into the file stay valid until eng_gguf_free.
 * Thread: an eng_gguf_t may be read from several threads; building is single-threaded.
 * Errors: 0 or ERR_*; a malformed file gives ERR_CORRUPT with a message in the errbuf
 * naming what is wrong ("tensor 'blk.3.attn_q.weight': offset past end of file"). */
#ifndef ORTHOD_ENGINE_GGUF_H
#define ORTHOD_ENGINE_GGUF_H

#include "../../common/err.h"
#include "../tensor.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct eng_gguf eng_gguf_t;

enum eng_gguf_type {
    ENG_GGUF_UINT8 = 0,
    ENG_GGUF_INT8 = 1,
    ENG_GGUF_UINT16 = 2,
    ENG_GGUF_INT16 = 3,
    ENG_GGUF_UINT32 = 4,
    ENG_GGUF_INT32 = 5,
    ENG_GGUF_FLOAT32 = 6,
    ENG_GGUF_BOOL = 7,
    ENG_GGUF_STRING = 8,
    ENG_GGUF_ARRAY = 9,
    ENG_GGUF_UINT64 = 10,
    ENG_GGUF_INT64 = 11,
    ENG_GGUF_FLOAT64 = 12,
};

/* Limits a reader enforces before allocating (a hostile header cannot make it allocate
 * more than the file could describe). */
#define ENG_GGUF_MAX_KEY_LEN      65535u
#define ENG_GGUF_MAX_TENSOR_NAME  63u      /* ggml's GGML_MAX_NAME - 1 */

/* --- reading ---------------------------------------------------------------------- */
/* mmaps and validates a GGUF file. Vocab-only files (no tensors, no data section) load. */
int eng_gguf_open(const char *path, eng_gguf_t **out, struct errbuf *eb);
/* Same, over caller memory (borrowed, must outlive the object; used by the fuzzer). */
int eng_gguf_open_mem(const void *data, size_t size, eng_gguf_t **out, struct errbuf *eb);
void eng_gguf_free(eng_gguf_t *g);          /* NULL ok; releases the mmap and held resources */

uint32_t eng_gguf_version(const eng_gguf_t *g);    /* 2 or 3; 3 for built objects */
size_t eng_gguf_alignment(const eng_gguf_t *g);    /* general.alignment, default 32 */
size_t eng_gguf_file_size(const eng_gguf_t *g);    /* 0 for built objects */

/* --- metadata ---------------------------------------------------------------------- */
int64_t eng_gguf_n_kv(const eng_gguf_t *g);
int64_t eng_gguf_find_key(const eng_gguf_t *g, const char *key);   /* index or -1 */
const char *eng_gguf_key_at(const eng_gguf_t *g, int64_t i, size_t *len);
enum eng_gguf_type eng_gguf_type_at(const eng_gguf_t *g, int64_t i);

/* Typed getters by key. ERR_NOTFOUND when absent; ERR_CORRUPT when present with a type
 * that cannot represent the request (an integer getter accepts any integer type whose
 * value fits; the float getter accepts F32/F64). */
int eng_gguf_get_u32(const eng_gguf_t *g, const char *key, uint32_t *out);
int eng_gguf_get_i32(const eng_gguf_t *g, const char *key, int32_t *out);
int eng_gguf_get_u64(const eng_gguf_t *g, const char *key, uint64_t *out);
int eng_gguf_get_f32(const eng_gguf_t *g, const char *key, float *out);
int eng_gguf_get_bool(const eng_gguf_t *g, const char *key, bool *out);
int eng_gguf_get_str(const eng_gguf_t *g, const char *key, const char **s, size_t *len);
/* Arrays: element type and count. For fixed-size element types *data points at the
 * packed elements (possibly unaligned: read with memcpy). For string arrays *data is
 * NULL: use eng_gguf_get_arr_str (O(1) per element; offsets are indexed at open). */
int eng_gguf_get_arr(const eng_gguf_t *g, const char *key, enum eng_gguf_type *elem,
                     uint64_t *n, const void **data);
int eng_gguf_get_arr_str(const eng_gguf_t *g, const char *key, uint64_t i, const char **s,
                         size_t *len);

/* --- tensors ----------------------------------------------------------------------- */
struct eng_gguf_tensor {
    const char *name;        /* NUL-terminated copy owned by g */
    enum eng_dtype dtype;
    int n_dims;              /* 1..4 */
    int64_t ne[4];           /* unused dims are 1 */
    size_t nbytes;
    const void *data;        /* host address of the bytes (into the mmap) */
    uint64_t offset;         /* offset in the data section (0 for built objects) */
};
int64_t eng_gguf_n_tensors(const eng_gguf_t *g);
int64_t eng_gguf_find_tensor(const eng_gguf_t *g, const char *name);   /* index or -1 */
/* Fills *out for tensor i (0 <= i < n_tensors). Infallible after open: checked then. */
void eng_gguf_tensor_at(const eng_gguf_t *g, int64_t i, struct eng_gguf_tensor *out);

/* --- building and writing ------------------------------------------------------------ */
int eng_gguf_new(eng_gguf_t **out);          /* empty, version 3, alignment 32 */
/* Setters replace an existing key of the same name. Strings and arrays are copied. */
int eng_gguf_set_u32(eng_gguf_t *g, const char *key, uint32_t v);
int eng_gguf_set_i32(eng_gguf_t *g, const char *key, int32_t v);
int eng_gguf_set_u64(eng_gguf_t *g, const char *key, uint64_t v);
int eng_gguf_set_f32(eng_gguf_t *g, const char *key, float v);
int eng_gguf_set_bool(eng_gguf_t *g, const char *key, bool v);
int eng_gguf_set_str(eng_gguf_t *g, const char *key, const char *s, size_t len);
int eng_gguf_set_arr(eng_gguf_t *g, const char *key, enum eng_gguf_type elem, uint64_t n,
                     const void *data);
int eng_gguf_set_arr_str(eng_gguf_t *g, const char *key, uint64_t n, const char *const *s,
                         const size_t *lens);
/* Adds a tensor whose bytes live at `data` (borrowed: must outlive g, or be kept alive
 * with eng_gguf_hold). ERR_INVAL on a duplicate name, bad shape or byte count. */
int eng_gguf_add_tensor(eng_gguf_t *g, const char *name, enum eng_dtype dtype, int n_dims,
                        const int64_t *ne, const void *data, size_t nbytes);
/* Ties a resource's lifetime to g: release(res) runs in eng_gguf_free. */
int eng_gguf_hold(eng_gguf_t *g, void *res, void (*release)(void *res));
/* Writes g as GGUF v3 to path atomically (temp file, fsync, rename). */
int eng_gguf_write(const eng_gguf_t *g, const char *path, struct errbuf *eb);

#endif
