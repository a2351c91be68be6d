/* common/text.c: UTF-8 validation and the one escaper (common/text.h). */
#include "text.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

size_t text_utf8_len(const unsigned char *s, size_t n)
{
    if (n == 0)
        return 0;
    unsigned c = s[0];
    size_t len;
    unsigned min;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
        min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        min = 0x10000;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    unsigned cp = c & (0x7Fu >> len);
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3Fu);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

/* The next piece of the escaped text: *in bytes of u[0..n) consumed, written to rep (or
 * pointed at in u) as *out bytes. */
static const unsigned char *piece(const unsigned char *u, size_t n, enum text_style st,
                                  char rep[5], size_t *in, size_t *out)
{
    const unsigned char c = u[0];
    size_t l;
    if (st == TEXT_LOG)
        l = c >= 0x20 && c < 0x7F && c != '"' && c != '\\' ? 1 : 0;
    else
        l = text_utf8_len(u, n);
    if (l == 1 && (c < 0x20 || c == 0x7F || (st == TEXT_MESSAGE && c == '\'')))
        l = 0;
    if (l > 0) {
        *in = *out = l;
        return u;
    }
    *in = 1;
    if (st == TEXT_LOG) {
        snprintf(rep, 5, "\\x%02x", c);
        *out = 4;
    } else {
        rep[0] = '?';
        *out = 1;
    }
    return (const unsigned char *)rep;
}

static size_t escaped_len(const unsigned char *u, size_t len, enum text_style st)
{
    size_t total = 0;
    char rep[5];
    for (size_t i = 0, in, out; i < len; i += in) {
        piece(u + i, len - i, st, rep, &in, &out);
        total += out;
    }
    return total;
}

/* Writes the escaped pieces that fit in `room` bytes; returns the bytes written. */
static size_t write_pieces(char *dst, size_t room, const unsigned char *u, size_t len,
                           enum text_style st)
{
    size_t o = 0;
    char rep[5];
    for (size_t i = 0, in, out; i < len; i += in) {
        const unsigned char *p = piece(u + i, len - i, st, rep, &in, &out);
        if (o + out > room)
            break;
        memcpy(dst + o, p, out);
        o += out;
    }
    return o;
}

const char *text_escape(char *out, size_t cap, const char *s, size_t len, enum text_style st)
{
    const unsigned char *u = (const unsigned char *)s;
    if (cap < 4) {
        if (cap)
            out[0] = '\0';
        return out;
    }
    size_t o;
    if (escaped_len(u, len, st) <= cap - 1) {
        o = write_pieces(out, cap - 1, u, len, st);
    } else {
        o = write_pieces(out, cap - 4, u, len, st);
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o] = '\0';
    return out;
}

char *text_escape_dup(const char *s, enum text_style st)
{
    const unsigned char *u = (const unsigned char *)s;
    const size_t len = strlen(s), total = escaped_len(u, len, st);
    char *out = malloc(total + 1);
    if (!out)
        return NULL;
    out[write_pieces(out, total, u, len, st)] = '\0';
    return out;
}
