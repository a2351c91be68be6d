/* engine/tok/detok.c: ids -> text: one token's piece (byte tokens decoded, "▁" -> " "
 * for SPM, the GPT-2 byte mapping undone), the streaming decoder that emits only complete
 * UTF-8 sequences, and whole sequences (with HF's clean_up_tokenization_spaces where the
 * vocab asks for it), as llama.cpp's token_to_piece and detokenize do. */
#include "unicode.h"
#include "vocab.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A destination for piece bytes. lstrip: drop the first byte if it is a space. */
struct sink {
    void (*put)(struct sink *s, const char *p, size_t n);
    bool lstrip;
};

static void sink_put(struct sink *s, const char *p, size_t n)
{
    if (n == 0)
        return;
    if (s->lstrip) {
        s->lstrip = false;
        if (p[0] == ' ') {
            p++;
            n--;
            if (n == 0)
                return;
        }
    }
    s->put(s, p, n);
}

/* The byte a byte token stands for: hex digits at text[3..5) (llama.cpp reads them with
 * strtol); -1 when the text is too short to hold them. */
static int token_byte(const char *t, size_t n)
{
    if (n < 3)
        return -1;
    int b = 0;
    for (size_t i = 3; i < 5 && i < n; i++) {
        const char c = t[i];
        const int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
                    : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0)
            break;
        b = b * 16 + d;
    }
    return b;
}

/* The text of a GPT-2 byte-level token with the byte mapping undone; a codepoint outside
 * the mapping becomes "[UNK_BYTE_0x<hex>" + the token text + "]" as in llama.cpp. */
static void put_gpt2_decoded(const eng_vocab_t *v, const char *t, size_t n, struct sink *s)
{
    size_t i = 0;
    while (i < n) {
        size_t adv;
        const uint32_t cp = eng_unicode_decode((const uint8_t *)t + i, n - i, &adv);
        i += adv;
        if (cp < 0x144 && v->byte_dec[cp] >= 0) {
            const char b = (char)v->byte_dec[cp];
            sink_put(s, &b, 1);
            continue;
        }
        uint8_t u[4];
        const size_t k = eng_unicode_encode(cp, u);
        char hex[24] = "[UNK_BYTE_0x";
        size_t h = 12;
        for (size_t j = 0; j < k; j++)
            h += (size_t)snprintf(hex + h, sizeof hex - h, "%02x", u[j]);
        sink_put(s, hex, h);
        sink_put(s, t, n);
        sink_put(s, "]", 1);
    }
}

/* Emits the piece of token id (llama.cpp's token_to_piece). */
static void put_piece(const eng_vocab_t *v, int32_t id, bool special, struct sink *s)
{
    const uint16_t attr = v->attr[id];
    const uint16_t attr_special = ENG__ATTR_UNKNOWN | ENG__ATTR_CONTROL;
    if (!special && (attr & attr_special))
        return;
    const char *t = v->pool + v->tok_off[id];
    const size_t n = v->tok_len[id];
    if (attr & (attr_special | ENG__ATTR_USER_DEFINED)) {
        sink_put(s, t, n);
        return;
    }
    if (attr & ENG__ATTR_NORMAL) {
        if (v->type == ENG_VOCAB_BPE) {
            put_gpt2_decoded(v, t, n, s);
            return;
        }
        // "▁" -> " "
        size_t start = 0;
        for (size_t i = 0; i + 3 <= n;) {
            if (memcmp(t + i, "\xE2\x96\x81", 3) == 0) {
                sink_put(s, t + start, i - start);
                sink_put(s, " ", 1);
                i += 3;
                start = i;
            } else {
                i++;
            }
        }
        sink_put(s, t + start, n - start);
        return;
    }
    if ((attr & ENG__ATTR_BYTE) && v->type != ENG_VOCAB_WPM) {
        const int b = token_byte(t, n);
        if (b >= 0) {
            const char c = (char)b;
            sink_put(s, &c, 1);
        }
    }
    // undefined and unused tokens have no text
}

/* A sink into a fixed buffer that counts what it could not write. */
struct buf_sink {
    struct sink base;
    char *buf;
    size_t cap, n;
};

static void buf_put(struct sink *s, const char *p, size_t n)
{
    struct buf_sink *b = (struct buf_sink *)s;
    if (b->n < b->cap) {
        const size_t k = n < b->cap - b->n ? n : b->cap - b->n;
        memcpy(b->buf + b->n, p, k);
    }
    b->n += n;
}

int eng_token_to_piece(const eng_vocab_t *v, int32_t id, bool special, char *buf, size_t cap)
{
    if (!v || (!buf && cap))
        return ERR_INVAL;
    if (id < 0 || id >= v->n_tokens)
        return ERR_RANGE;
    if (cap > INT32_MAX)
        cap = INT32_MAX;
    struct buf_sink b = {{buf_put, false}, buf, cap, 0};
    put_piece(v, id, special, &b.base);
    return (int)(b.n < cap ? b.n : cap);
}

void eng_detok_init(struct eng_detok *d, const eng_vocab_t *v)
{
    memset(d, 0, sizeof *d);
    d->strip_leading_space = v->add_space_prefix;
}

/* Reassembles UTF-8 across pieces: complete sequences go out, invalid ones as U+FFFD,
 * an incomplete tail waits in d->pending. Once a sequence does not fit, nothing more is
 * written (so the output never skips text in the middle). */
struct utf8_sink {
    struct sink base;
    struct eng_detok *d;
    char *out;
    size_t cap, n;
    bool full;
};

static void utf8_emit(struct utf8_sink *u, const void *p, size_t n)
{
    if (u->full || n > u->cap - u->n) {
        u->full = true;
        return;
    }
    memcpy(u->out + u->n, p, n);
    u->n += n;
}

static void utf8_drain(struct utf8_sink *u)
{
    struct eng_detok *d = u->d;
    while (d->n_pending > 0) {
        size_t bad = 0;
        const int r = eng_unicode_check(d->pending, d->n_pending, &bad);
        size_t used;
        if (r > 0) {
            utf8_emit(u, d->pending, (size_t)r);
            used = (size_t)r;
        } else if (r == 0) {
            utf8_emit(u, "\xEF\xBF\xBD", 3);
            used = bad;
        } else {
            return;         // incomplete: wait for more bytes
        }
        memmove(d->pending, d->pending + used, d->n_pending - used);
        d->n_pending = (uint8_t)(d->n_pending - used);
    }
}

static void utf8_put(struct sink *s, const char *p, size_t n)
{
    struct utf8_sink *u = (struct utf8_sink *)s;
    for (size_t i = 0; i < n; i++) {
        u->d->pending[u->d->n_pending++] = (uint8_t)p[i];
        utf8_drain(u);
    }
}

size_t eng_detok_push(const eng_vocab_t *v, struct eng_detok *d, int32_t id, bool special,
                      char *out, size_t cap)
{
    if (!v || !d || (!out && cap) || d->n_pending >= sizeof d->pending)
        return 0;
    const bool lstrip = d->strip_leading_space && !d->started;
    d->started = true;      // llama.cpp: only the first token may lose its leading space
    if (id < 0 || id >= v->n_tokens)
        return 0;
    struct utf8_sink u = {{utf8_put, lstrip}, d, out, cap, 0, false};
    put_piece(v, id, special, &u.base);
    return u.n;
}

size_t eng_detok_flush(struct eng_detok *d, char *out, size_t cap)
{
    if (!d)
        return 0;
    size_t n = 0;
    if (d->n_pending > 0 && out && cap >= 3) {
        memcpy(out, "\xEF\xBF\xBD", 3);
        n = 3;
    }
    d->n_pending = 0;
    return n;
}

/* HF's clean_up_tokenization_spaces as llama.cpp applies it (three passes, in place):
 * " ?" " !" " ." " ," lose the space; " ' " becomes "'"; " 's" " 'm" " 're" " 've" lose
 * the space. Returns the new length. */
static size_t clean_spaces(char *t, size_t total)
{
    size_t n = total ? 1 : 0;
    for (size_t i = 1; i < total; i++) {
        const char x = t[i];
        if (t[i - 1] == ' ' && (x == '?' || x == '!' || x == '.' || x == ','))
            n--;
        t[n++] = x;
    }
    total = n;
    n = total ? 1 : 0;
    for (size_t i = 1; i < total; i++) {
        const char x = t[i];
        if (x == '\'' && i + 1 < total && t[i - 1] == ' ' && t[i + 1] == ' ') {
            n--;
            t[++i] = '\0';
        }
        t[n++] = x;
    }
    total = n;
    n = total ? 1 : 0;
    for (size_t i = 1; i < total; i++) {
        const char x = t[i];
        if (t[i - 1] == ' ' && x == '\'' && i + 1 < total) {
            const char x1 = t[i + 1];
            if (x1 == 's' || x1 == 'm')
                n--;
            else if (x1 != 't' && x1 != 'd' && i + 2 < total &&
                     ((x1 == 'r' && t[i + 2] == 'e') || (x1 == 'v' && t[i + 2] == 'e')))
                n--;
        }
        t[n++] = x;
    }
    return n;
}

static size_t render_all(const eng_vocab_t *v, const int32_t *ids, size_t n, bool special,
                         char *buf, size_t cap)
{
    struct buf_sink b = {{buf_put, false}, buf, cap, 0};
    for (size_t i = 0; i < n; i++) {
        b.base.lstrip = i == 0 && v->add_space_prefix;
        if (ids[i] >= 0 && ids[i] < v->n_tokens)
            put_piece(v, ids[i], special, &b.base);
    }
    return b.n;
}

size_t eng_detokenize(const eng_vocab_t *v, const int32_t *ids, size_t n, bool special,
                      char *out, size_t cap)
{
    if (!v || (!ids && n) || (!out && cap))
        return 0;
    const size_t total = render_all(v, ids, n, special, out, cap ? cap - 1 : 0);
    if (!v->clean_spaces || total == 0) {
        if (cap)
            out[total < cap ? total : cap - 1] = '\0';
        return total;
    }
    if (total < cap) {
        const size_t m = clean_spaces(out, total);
        out[m] = '\0';
        return m;
    }
    // does not fit: clean a full copy to learn the exact length
    char *tmp = malloc(total);
    if (!tmp) {
        if (cap)
            out[cap - 1] = '\0';
        return total;       // an upper bound; a buffer of total + 1 gets the exact text
    }
    render_all(v, ids, n, special, tmp, total);
    const size_t m = clean_spaces(tmp, total);
    if (cap) {
        const size_t k = m < cap - 1 ? m : cap - 1;
        memcpy(out, tmp, k);
        out[k] = '\0';
    }
    free(tmp);
    return m;
}
