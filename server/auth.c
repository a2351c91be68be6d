/* server/auth.c: key file parsing and constant-time Bearer checks. */
#include "auth.h"

#include "opfile.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct srv_auth_key {
    char *key;
    size_t len;
    enum srv_auth_role role;
};

struct srv_auth {
    struct srv_auth_key *keys;
    size_t n;
};

const char *srv_auth_role_name(enum srv_auth_role r)
{
    switch (r) {
    case SRV_ROLE_INFERENCE: return "inference";
    case SRV_ROLE_ADMIN: return "admin";
    default: return "none";
    }
}

bool srv_auth_ct_equal(const void *a, size_t alen, const void *b, size_t blen)
{
    const volatile unsigned char *pa = a, *pb = b;
    // fold the length difference in, then walk all of b; a shorter a reads as zeros
    volatile unsigned char diff = (unsigned char)(alen != blen);
    for (size_t i = 0; i < blen; i++) {
        unsigned char x = i < alen ? pa[i] : 0;
        diff |= (unsigned char)(x ^ pb[i]);
    }
    return diff == 0;
}

void srv_auth_free(srv_auth_t *a)
{
    if (!a)
        return;
    for (size_t i = 0; i < a->n; i++) {
        // keys are secrets: do not leave them in freed memory
        explicit_bzero(a->keys[i].key, a->keys[i].len);
        free(a->keys[i].key);
    }
    free(a->keys);
    free(a);
}

size_t srv_auth_count(const srv_auth_t *a)
{
    return a ? a->n : 0;
}

static bool is_key_char(unsigned char c)
{
    return c > 0x20 && c < 0x7F;
}

static bool is_blank(char c)
{
    return c == ' ' || c == '\t';
}

int srv_auth_parse(const char *text, size_t len, const char *name, srv_auth_t **out,
                   struct errbuf *eb)
{
    if (len > SRV_AUTH_MAX_FILE_BYTES)
        return err_set(eb, ERR_INVAL, "%s: key file is larger than %u bytes", name,
                       SRV_AUTH_MAX_FILE_BYTES);
    srv_auth_t *a = calloc(1, sizeof *a);
    if (!a)
        return ERR_NOMEM;
    size_t cap = 0;
    int rc = 0, line = 0;
    size_t pos = 0;
    while (pos < len) {
        line++;
        const char *p = text + pos;
        const char *nl = memchr(p, '\n', len - pos);
        size_t ll = nl ? (size_t)(nl - p) : len - pos;
        pos += ll + (nl ? 1 : 0);
        if (ll > 0 && p[ll - 1] == '\r')
            ll--;
        size_t i = 0;
        while (i < ll && is_blank(p[i]))
            i++;
        if (i == ll || p[i] == '#')
            continue;
        size_t ks = i;
        while (i < ll && is_key_char((unsigned char)p[i]))
            i++;
        size_t klen = i - ks;
        if (i < ll && !is_blank(p[i])) {
            rc = err_set(eb, ERR_INVAL, "%s:%d: keys must be printable ASCII without spaces",
                         name, line);
            goto fail;
        }
        while (i < ll && is_blank(p[i]))
            i++;
        size_t rs = i;
        while (i < ll && !is_blank(p[i]))
            i++;
        size_t rlen = i - rs;
        while (i < ll && is_blank(p[i]))
            i++;
        if (rlen == 0 || i != ll) {
            rc = err_set(eb, ERR_INVAL, "%s:%d: expected `KEY ROLE` (role inference or admin)",
                         name, line);
            goto fail;
        }
        enum srv_auth_role role;
        if (rlen == 9 && memcmp(p + rs, "inference", 9) == 0) {
            role = SRV_ROLE_INFERENCE;
        } else if (rlen == 5 && memcmp(p + rs, "admin", 5) == 0) {
            role = SRV_ROLE_ADMIN;
        } else {
            rc = err_set(eb, ERR_INVAL, "%s:%d: unknown role '%.*s' (use inference or admin)",
                         name, line, (int)(rlen > 32 ? 32 : rlen), p + rs);
            goto fail;
        }
        if (klen < SRV_AUTH_KEY_MIN || klen > SRV_AUTH_KEY_MAX) {
            rc = err_set(eb, ERR_INVAL, "%s:%d: key is %zu characters; use %d..%d (e.g. "
                         "`openssl rand -hex 32`)", name, line, klen, SRV_AUTH_KEY_MIN,
                         SRV_AUTH_KEY_MAX);
            goto fail;
        }
        for (size_t k = 0; k < a->n; k++) {
            if (a->keys[k].len == klen && memcmp(a->keys[k].key, p + ks, klen) == 0) {
                rc = err_set(eb, ERR_INVAL, "%s:%d: this key is already listed; a key has one "
                             "role", name, line);
                goto fail;
            }
        }
        if (a->n == SRV_AUTH_MAX_KEYS) {
            rc = err_set(eb, ERR_INVAL, "%s:%d: more than %d keys", name, line,
                         SRV_AUTH_MAX_KEYS);
            goto fail;
        }
        if (a->n == cap) {
            size_t nc = cap ? cap * 2 : 8;
            struct srv_auth_key *nk = realloc(a->keys, nc * sizeof *nk);
            if (!nk) {
                rc = ERR_NOMEM;
                goto fail;
            }
            a->keys = nk;
            cap = nc;
        }
        char *k = malloc(klen + 1);
        if (!k) {
            rc = ERR_NOMEM;
            goto fail;
        }
        memcpy(k, p + ks, klen);
        k[klen] = '\0';
        a->keys[a->n++] = (struct srv_auth_key){k, klen, role};
    }
    if (a->n == 0) {
        rc = err_set(eb, ERR_INVAL, "%s: no keys; add lines `KEY ROLE` or unset api-key-file",
                     name);
        goto fail;
    }
    *out = a;
    return 0;
fail:
    srv_auth_free(a);
    return rc;
}

int srv_auth_load(const char *path, srv_auth_t **out, unsigned *mode, struct errbuf *eb)
{
    char *buf = NULL;
    size_t n = 0;
    int rc = srv_opfile_read(path, SRV_AUTH_MAX_FILE_BYTES, &buf, &n, mode, eb);
    if (rc < 0)
        return rc == ERR_TOOLARGE ? err_set(eb, ERR_INVAL, "%s (API key file)", eb->msg) : rc;
    rc = srv_auth_parse(buf, n, path, out, eb);
    srv_opfile_free(buf, n);
    return rc;
}

int srv_auth_check(const srv_auth_t *a, const char *authorization, enum srv_auth_role *role)
{
    if (!a || !authorization)
        return ERR_AUTH;
    const char *p = authorization;
    while (*p == ' ' || *p == '\t')
        p++;
    if (strncasecmp(p, "Bearer", 6) != 0 || (p[6] != ' ' && p[6] != '\t'))
        return ERR_AUTH;
    p += 6;
    while (*p == ' ' || *p == '\t')
        p++;
    size_t len = strlen(p);
    while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t'))
        len--;
    if (len == 0 || len > SRV_AUTH_KEY_MAX)
        return ERR_AUTH;
    // compare against every key, no early exit; select the role without branching on secrets
    unsigned found = 0;
    unsigned r = 0;
    for (size_t i = 0; i < a->n; i++) {
        unsigned eq = srv_auth_ct_equal(p, len, a->keys[i].key, a->keys[i].len);
        unsigned mask = 0u - eq;
        r |= mask & (unsigned)a->keys[i].role;
        found |= eq;
    }
    if (!found)
        return ERR_AUTH;
    *role = (enum srv_auth_role)r;
    return 0;
}

int srv_auth_allow(enum srv_auth_role have, enum srv_auth_role need)
{
    return have >= need ? 0 : ERR_FORBIDDEN;
}
