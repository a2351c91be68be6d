/* server/tls.c: certificate chain + private key through GnuTLS. */
#include "tls.h"

#include "opfile.h"
#include "orthod_config.h"

#include <stdlib.h>
#include <string.h>

#if ORTHOD_HAVE_TLS
#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

struct srv_tls {
    unsigned refs;
    gnutls_pcert_st pcerts[SRV_TLS_MAX_CHAIN];
    unsigned n_pcerts;
    gnutls_privkey_t key;
    struct srv_tls_info info;
};

static void tls_free(srv_tls_t *t)
{
    for (unsigned i = 0; i < t->n_pcerts; i++)
        gnutls_pcert_deinit(&t->pcerts[i]);
    if (t->key)
        gnutls_privkey_deinit(t->key);
    free(t);
}

/* The SHA-256 key id of a public key, or a negative GnuTLS error. */
static int key_id(gnutls_pubkey_t pk, unsigned char *id, size_t *len)
{
    return gnutls_pubkey_get_key_id(pk, GNUTLS_KEYID_USE_SHA256, id, len);
}

static int read_chain(srv_tls_t *t, const char *path, const char *pem, size_t len,
                      struct errbuf *eb)
{
    gnutls_datum_t d = {(unsigned char *)pem, (unsigned)len};
    unsigned n = SRV_TLS_MAX_CHAIN;
    int g = gnutls_pcert_list_import_x509_raw(t->pcerts, &n, &d, GNUTLS_X509_FMT_PEM,
                                              GNUTLS_X509_CRT_LIST_FAIL_IF_UNSORTED);
    if (g == GNUTLS_E_SHORT_MEMORY_BUFFER)
        return err_set(eb, ERR_INVAL, "%s: more than %d certificates", path, SRV_TLS_MAX_CHAIN);
    if (g < 0 || n == 0)
        return err_set(eb, ERR_INVAL, "%s: not a PEM certificate chain (leaf first, then its "
                                      "issuers): %s", path, gnutls_strerror(g));
    t->n_pcerts = n;
    t->info.chain_len = n;
    // the leaf's subject and dates, for the log
    gnutls_x509_crt_t crt;    // allocated by the export
    if (gnutls_pcert_export_x509(&t->pcerts[0], &crt) == 0) {
        size_t sl = sizeof t->info.subject;
        if (gnutls_x509_crt_get_dn(crt, t->info.subject, &sl) < 0)
            t->info.subject[0] = '\0';
        t->info.not_before = gnutls_x509_crt_get_activation_time(crt);
        t->info.not_after = gnutls_x509_crt_get_expiration_time(crt);
        gnutls_x509_crt_deinit(crt);
    }
    return 0;
}

static int read_key(srv_tls_t *t, const char *path, const char *pem, size_t len,
                    struct errbuf *eb)
{
    if (gnutls_privkey_init(&t->key) < 0)
        return ERR_NOMEM;
    gnutls_datum_t d = {(unsigned char *)pem, (unsigned)len};
    int g = gnutls_privkey_import_x509_raw(t->key, &d, GNUTLS_X509_FMT_PEM, NULL, 0);
    if (g < 0)
        return err_set(eb, ERR_INVAL, "%s: not an unencrypted PEM private key: %s", path,
                       gnutls_strerror(g));
    return 0;
}

/* The key must be the one the leaf certificate was issued for. */
static int check_pair(srv_tls_t *t, const char *cert_path, const char *key_path,
                      struct errbuf *eb)
{
    gnutls_pubkey_t pk;
    if (gnutls_pubkey_init(&pk) < 0)
        return ERR_NOMEM;
    unsigned char a[64], b[64];
    size_t al = sizeof a, bl = sizeof b;
    int g = gnutls_pubkey_import_privkey(pk, t->key, 0, 0);
    if (g >= 0)
        g = key_id(pk, a, &al);
    gnutls_pubkey_deinit(pk);
    if (g >= 0)
        g = key_id(t->pcerts[0].pubkey, b, &bl);
    if (g < 0)
        return err_set(eb, ERR_INVAL, "%s, %s: cannot compare the key with the certificate: %s",
                       cert_path, key_path, gnutls_strerror(g));
    if (al != bl || memcmp(a, b, al) != 0)
        return err_set(eb, ERR_INVAL, "%s does not belong to the certificate in %s (its public "
                                      "key differs): use the key the certificate was issued "
                                      "for", key_path, cert_path);
    return 0;
}

int srv_tls_load(const char *cert_path, const char *key_path, srv_tls_t **out,
                 struct errbuf *eb)
{
    srv_tls_t *t = calloc(1, sizeof *t);
    if (!t)
        return ERR_NOMEM;
    t->refs = 1;
    char *cert = NULL, *key = NULL;
    size_t cl = 0, kl = 0;
    int rc = srv_opfile_read(cert_path, SRV_TLS_MAX_FILE_BYTES, &cert, &cl, NULL, eb);
    if (rc == 0)
        rc = srv_opfile_read(key_path, SRV_TLS_MAX_FILE_BYTES, &key, &kl, &t->info.key_mode, eb);
    if (rc == 0)
        rc = read_chain(t, cert_path, cert, cl, eb);
    if (rc == 0)
        rc = read_key(t, key_path, key, kl, eb);
    if (rc == 0)
        rc = check_pair(t, cert_path, key_path, eb);
    srv_opfile_free(cert, cl);
    srv_opfile_free(key, kl);
    if (rc < 0) {
        tls_free(t);
        return rc;
    }
    *out = t;
    return 0;
}

void srv_tls_credentials(const srv_tls_t *t, void **pcerts, unsigned *n, void **privkey)
{
    *pcerts = (void *)t->pcerts;
    *n = t->n_pcerts;
    *privkey = t->key;
}

#else /* !ORTHOD_HAVE_TLS */

struct srv_tls {
    unsigned refs;
    struct srv_tls_info info;
};

static void tls_free(srv_tls_t *t)
{
    free(t);
}

int srv_tls_load(const char *cert_path, const char *key_path, srv_tls_t **out,
                 struct errbuf *eb)
{
    (void)cert_path;
    (void)key_path;
    (void)out;
    return err_set(eb, ERR_UNSUPPORTED, "this orthod was built without TLS (GnuTLS not found): "
                                        "install libgnutls28-dev and rebuild, or terminate TLS "
                                        "in a proxy");
}

void srv_tls_credentials(const srv_tls_t *t, void **pcerts, unsigned *n, void **privkey)
{
    (void)t;
    *pcerts = NULL;
    *n = 0;
    *privkey = NULL;
}

#endif

void srv_tls_ref(srv_tls_t *t)
{
    t->refs++;
}

void srv_tls_unref(srv_tls_t *t)
{
    if (t && --t->refs == 0)
        tls_free(t);
}

const struct srv_tls_info *srv_tls_info(const srv_tls_t *t)
{
    return &t->info;
}
