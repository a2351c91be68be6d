/* server/auth.h: API keys and roles. Owns the key-file format (one `KEY ROLE` per line, role
 * inference or admin, # comments and blank lines allowed), Bearer-token checking with a
 * constant-time compare, and the role order (admin may do everything inference may).
 * Thread: a key set is immutable once loaded; reload builds a new set and swaps it on the
 * loop thread (SIGHUP). */
#ifndef ORTHOD_SERVER_AUTH_H
#define ORTHOD_SERVER_AUTH_H

#include "../common/err.h"

#include <stdbool.h>
#include <stddef.h>

enum srv_auth_role {
    SRV_ROLE_NONE = 0,        /* no key presented / open route */
    SRV_ROLE_INFERENCE = 1,   /* completions, embeddings, models */
    SRV_ROLE_ADMIN = 2,       /* adapters, files, jobs (and everything inference may) */
};

#define SRV_AUTH_KEY_MIN 16     /* shorter keys are refused: they can be guessed */
#define SRV_AUTH_KEY_MAX 256
#define SRV_AUTH_MAX_KEYS 4096
#define SRV_AUTH_MAX_FILE_BYTES (1u << 20)

typedef struct srv_auth srv_auth_t;

/* Parses text[0..len) (the key file's contents; name is used in messages). Keys are
 * printable ASCII without spaces, SRV_AUTH_KEY_MIN..SRV_AUTH_KEY_MAX long; a key may appear
 * once. Errors: ERR_INVAL "name:line: ..." saying what to fix; ERR_NOMEM. *out untouched
 * on failure. An empty file (no keys) is an error: it would lock every client out. */
int srv_auth_parse(const char *text, size_t len, const char *name, srv_auth_t **out,
                   struct errbuf *eb);
/* Reads (server/opfile.h: regular files only, never blocking on open, size-capped) and
 * parses the file at path. *mode (may be NULL) gets its permission bits. Errors: ERR_IO
 * (cannot open or read, or not a regular file), ERR_INVAL (content, size), ERR_NOMEM. */
int srv_auth_load(const char *path, srv_auth_t **out, unsigned *mode, struct errbuf *eb);
void srv_auth_free(srv_auth_t *a);               /* NULL ok */
size_t srv_auth_count(const srv_auth_t *a);       /* number of keys */

/* Checks an Authorization header value (NULL: header absent) against the keys.
 * Returns 0 and the key's role in *role, or ERR_AUTH (missing, not Bearer, or unknown key).
 * Every stored key is compared in full, whatever matches, so timing does not reveal how
 * much of a key was right or which key matched. */
int srv_auth_check(const srv_auth_t *a, const char *authorization, enum srv_auth_role *role);

/* 0 if `have` may use a route that needs `need`, else ERR_FORBIDDEN. */
int srv_auth_allow(enum srv_auth_role have, enum srv_auth_role need);

const char *srv_auth_role_name(enum srv_auth_role r);

/* Constant-time equality of a[0..alen) and b[0..blen): the time depends only on blen
 * (the stored key's length), never on the contents or on where they differ. */
bool srv_auth_ct_equal(const void *a, size_t alen, const void *b, size_t blen);

#endif
