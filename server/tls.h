/* server/tls.h: a TLS certificate chain and its private key (PEM files, through GnuTLS), as
 * one immutable, reference-counted set the HTTP transport hands to each handshake. Owns
 * loading and checking them: the key must match the first certificate, and the leaf's
 * validity dates are reported. A reload (SIGHUP) loads a new set on the reload thread; the
 * loop swaps it in, and the old set lives on until its last connection closes.
 * Thread: srv_tls_load anywhere; everything else on the loop thread. Built only when
 * GnuTLS was found (ORTHOD_HAVE_TLS); without it srv_tls_load says so. */
#ifndef ORTHOD_SERVER_TLS_H
#define ORTHOD_SERVER_TLS_H

#include "../common/err.h"

#include <stdint.h>
#include <time.h>

#define SRV_TLS_MAX_FILE_BYTES (1u << 20)
#define SRV_TLS_MAX_CHAIN 16

typedef struct srv_tls srv_tls_t;

struct srv_tls_info {
    char subject[256];         /* of the first (leaf) certificate */
    time_t not_before, not_after;
    unsigned chain_len;
    unsigned key_mode;         /* permission bits of the key file */
};

/* Reads cert_path (PEM, leaf first, then intermediates) and key_path (PEM, unencrypted).
 * Errors: ERR_IO (unreadable, not a regular file), ERR_INVAL (not PEM, key does not match,
 * more than SRV_TLS_MAX_CHAIN certificates), ERR_UNSUPPORTED (built without TLS),
 * ERR_NOMEM; eb names the file and says what to do. The set starts with one reference. */
int srv_tls_load(const char *cert_path, const char *key_path, srv_tls_t **out,
                 struct errbuf *eb);
void srv_tls_ref(srv_tls_t *t);
void srv_tls_unref(srv_tls_t *t);    /* frees at zero; NULL ok */
const struct srv_tls_info *srv_tls_info(const srv_tls_t *t);

/* For the GnuTLS certificate callback (server/http.c): the chain and the key, as the
 * gnutls_pcert_st array, its length and a gnutls_privkey_t. */
void srv_tls_credentials(const srv_tls_t *t, void **pcerts, unsigned *n, void **privkey);

#endif
