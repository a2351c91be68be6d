/* engine/format/gguf_write.c: writes a GGUF object as a GGUF v3 file, atomically (a
 * temporary file in the same folder, fsync, rename). */
#include "gguf_impl.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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
