/* engine/format/gguf_read.c: the GGUF v2/v3 reader (mmap or caller memory).
 * Hostile input: the reader never reads outside [data, data + size); every count is
 * checked against the bytes left before anything is allocated for it, so the memory a
 * file can make us allocate is a small multiple of its size. Arrays of arrays are
 * rejected (ERR_UNSUPPORTED), as llama.cpp's gguf reader rejects them. */
#include "gguf_impl.h"

#include "../../common/text.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* A printable, bounded rendering of a name from the file for error messages. */
#define ESC_MAX 96
static const char *esc(char out[ESC_MAX], const char *s, size_t len)
{
    return text_escape(out, ESC_MAX, s, len, TEXT_MESSAGE);
}

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
        if ((rc = eng__gguf_index_reserve(&g->kv_index, g, eng__gguf_kv_name, 0, (size_t)n_kv)) < 0)
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
        int64_t dup = eng__gguf_index_find(&g->kv_index, g, eng__gguf_kv_name, key, (size_t)klen);
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
        if ((rc = eng__gguf_parse_value(b + pos, size - pos, type, kv, what, eb)) < 0)
            return rc;
        pos += kv->val_size;
        g->n_kv = (size_t)i + 1;
        eng__gguf_index_put(&g->kv_index, key, (size_t)klen, (size_t)i);
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
        if ((rc = eng__gguf_index_reserve(&g->t_index, g, eng__gguf_t_name, 0,
                                          (size_t)n_tensors)) < 0)
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
        int64_t dup = eng__gguf_index_find(&g->t_index, g, eng__gguf_t_name, t->name, t->name_len);
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
        eng__gguf_index_put(&g->t_index, t->name, t->name_len, (size_t)i);
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

/* A read object over the bytes [data, data + size); mapped: munmap them in eng_gguf_free
 * (also when this fails). */
static int open_image(const void *data, size_t size, bool mapped, eng_gguf_t **out,
                      struct errbuf *eb)
{
    eng_gguf_t *g;
    if (eng__gguf_alloc(&g) < 0) {
        if (mapped)
            munmap((void *)data, size);
        return err_set(eb, ERR_NOMEM, "no memory for a GGUF object");
    }
    g->base = data;
    g->size = size;
    g->mapped = mapped;
    int rc = parse_file(g, eb);
    if (rc < 0) {
        eng_gguf_free(g);
        return rc;
    }
    *out = g;
    return 0;
}

int eng_gguf_open_mem(const void *data, size_t size, eng_gguf_t **out, struct errbuf *eb)
{
    if (!out || (!data && size))
        return err_set(eb, ERR_INVAL, "eng_gguf_open_mem: NULL argument");
    return open_image(data, size, false, out, eb);
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
    return open_image(m, size, true, out, eb);
}
