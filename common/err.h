/* common/err.h: the project's one error-code space and a formatted-error buffer.
 * Owns: enum err, err_name(), err_str(), struct errbuf.  No other file defines codes.
 * Convention (libuv/SQLite): functions return 0 or a negative ERR_*; results go
 * through out-parameters, which are never written on failure. */
#ifndef ORTHOD_COMMON_ERR_H
#define ORTHOD_COMMON_ERR_H

#include <stddef.h>

enum err {
    ERR_OK           = 0,
    ERR_NOMEM        = -1,   /* host allocation failed */
    ERR_INVAL        = -2,   /* bad argument / bad request */
    ERR_IO           = -3,   /* file or socket I/O (errno detail logged at the site) */
    ERR_PROTO        = -4,   /* malformed wire input (JSON, HTTP) */
    ERR_BUSY         = -5,   /* queue full, try later */
    ERR_AGAIN        = -6,   /* transient, retry */
    ERR_CANCELLED    = -7,
    ERR_UNSUPPORTED  = -8,   /* valid input we do not implement (dtype, arch, op) */
    ERR_GPU          = -9,   /* CUDA / cuBLAS failure */
    ERR_DEVICE_NOMEM = -10,  /* device out of memory */
    ERR_CORRUPT      = -11,  /* malformed model/adapter/dataset file */
    ERR_NOTFOUND     = -12,
    ERR_TOOLARGE     = -13,  /* over a configured limit */
    ERR_AUTH         = -14,  /* missing or bad credentials */
    ERR_FORBIDDEN    = -15,  /* credentials lack the role */
    ERR_RANGE        = -16,  /* numeric value out of range */
    ERR_STATE        = -17,  /* not ready / wrong state for the operation */
    ERR_INTERNAL     = -18,  /* broken invariant caught at run time */
    ERR_METHOD       = -19,  /* HTTP method not allowed on a route */
    ERR_TIMEOUT      = -20,
    ERR__COUNT       = 21
};

/* "ERR_INVAL" etc.; "ERR_UNKNOWN" for codes outside the enum. Thread: any. */
const char *err_name(int code);
/* A short English sentence for the code. Thread: any. */
const char *err_str(int code);

/* A caller-owned buffer for an operator-readable message that names what went wrong
 * ("tensor 'blk.3.attn_q.weight': offset past end of file"). Every fallible loader and
 * parser takes an optional `struct errbuf *` (NULL: no message wanted). */
struct errbuf {
    char msg[512];
};

/* Formats into eb (when non-NULL) and returns `code`, so call sites read
 * `return err_set(eb, ERR_CORRUPT, "tensor '%s': ...", name);`. */
int err_set(struct errbuf *eb, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prefixes eb->msg with "<prefix>: " (for adding context on the way up). Returns code. */
int err_prefix(struct errbuf *eb, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
