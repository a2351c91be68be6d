/* engine/tok/bpe.c: the GPT-2 byte-level BPE encoder of GGUF "gpt2" vocabularies, as
 * llama.cpp's llm_tokenizer_bpe does it: decode the text to codepoints, split it into
 * words with the pre-tokenizer the vocabulary names (GPT-2, Llama-3 or Qwen2 rules,
 * written out by hand; Unicode categories from libutf8proc), map each word's UTF-8 bytes
 * to GPT-2's printable stand-in characters, then merge adjacent symbols by merge rank
 * (lowest first, ties leftmost) and emit the final symbols as tokens.
 * Cost: O(n log n) for n input bytes. Built only with libutf8proc. */
#include "heap.h"
#include "encoders.h"
#include "unicode.h"

#if ORTHOD_HAVE_UTF8PROC

#include <stdlib.h>
#include <string.h>

#define F_WS ENG_UNI_WHITESPACE
#define F_L ENG_UNI_LETTER
#define F_N ENG_UNI_NUMBER

struct text_cps {
    const uint32_t *cp;
    const uint16_t *fl;
    size_t n;
};

static unsigned fl_at(const struct text_cps *t, size_t i)
{
    return i < t->n ? t->fl[i] : 0;
}

static bool is_contraction(uint32_t c1, uint32_t c2, size_t *len)
{
    if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') {
        *len = 2;
        return true;
    }
    if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l')) {
        *len = 3;
        return true;
    }
    return false;
}

/* End of the word that starts at pos, by
 * 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
static size_t word_gpt2(const struct text_cps *t, size_t pos)
{
    const uint32_t c = t->cp[pos];
    size_t k;
    if (c == '\'' && pos + 1 < t->n &&
        is_contraction(t->cp[pos + 1], pos + 2 < t->n ? t->cp[pos + 2] : 0, &k) &&
        (k == 2 || pos + 2 < t->n))
        return pos + k;
    const unsigned f2 = c == ' ' ? fl_at(t, pos + 1) : t->fl[pos];
    if (f2 & (F_L | F_N)) {
        const unsigned cls = f2 & F_L ? F_L : F_N;
        pos += c == ' ';
        while (fl_at(t, pos) & cls)
            pos++;
        return pos;
    }
    if (f2 && !(f2 & (F_WS | F_L | F_N))) {
        pos += c == ' ';
        while (fl_at(t, pos) && !(fl_at(t, pos) & (F_WS | F_L | F_N)))
            pos++;
        return pos;
    }
    size_t nw = 0;
    while (fl_at(t, pos + nw) & F_WS)
        nw++;
    if (nw > 1 && pos + nw < t->n)
        return pos + nw - 1;            // \s+(?!\S): leave one for the next word
    return pos + (nw ? nw : 1);
}

/* End of the word that starts at pos, by
 * (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,D}| ?[^\s\p{L}\p{N}]+[\r\n]*|
 * \s*[\r\n]+|\s+(?!\S)|\s+   with D = 3 (Llama 3) or 1 (Qwen2) */
static size_t word_llama3(const struct text_cps *t, size_t pos, size_t max_digits)
{
    const uint32_t c = t->cp[pos];
    const unsigned f = t->fl[pos];
    size_t k;
    if (c == '\'' && pos + 1 < t->n &&
        is_contraction(eng_unicode_tolower(t->cp[pos + 1]),
                       pos + 2 < t->n ? eng_unicode_tolower(t->cp[pos + 2]) : 0, &k) &&
        (k == 2 || pos + 2 < t->n))
        return pos + k;
    if (!(c == '\r' || c == '\n' || (f & F_N)) && ((f & F_L) || (fl_at(t, pos + 1) & F_L))) {
        pos++;
        while (fl_at(t, pos) & F_L)
            pos++;
        return pos;
    }
    if (f & F_N) {
        const size_t start = pos;
        while ((fl_at(t, pos) & F_N) && pos - start < max_digits)
            pos++;
        return pos;
    }
    const unsigned f2 = c == ' ' ? fl_at(t, pos + 1) : f;
    if (!(f2 & (F_WS | F_L | F_N)) && f) {
        pos += c == ' ';
        while (fl_at(t, pos) && !(fl_at(t, pos) & (F_WS | F_L | F_N)))
            pos++;
        while (pos < t->n && (t->cp[pos] == '\r' || t->cp[pos] == '\n'))
            pos++;
        return pos;
    }
    size_t nw = 0, last_rn = 0;
    while (fl_at(t, pos + nw) & F_WS) {
        if (t->cp[pos + nw] == '\r' || t->cp[pos + nw] == '\n')
            last_rn = pos + nw + 1;
        nw++;
    }
    if (last_rn)
        return last_rn;                 // \s*[\r\n]+
    if (nw > 1 && pos + nw < t->n)
        return pos + nw - 1;
    return pos + (nw ? nw : 1);
}

static size_t next_word(enum eng__bpe_pre pre, const struct text_cps *t, size_t pos)
{
    return pre == ENG__PRE_GPT2 ? word_gpt2(t, pos)
                                : word_llama3(t, pos, pre == ENG__PRE_QWEN2 ? 1 : 3);
}

/* Codepoints and their category flags of text[0..len) (llama.cpp's decoding: each invalid
 * byte is one U+FFFD). off (optional, n + 1 entries): byte offset where each one starts. */
static int decode_text(const char *text, size_t len, uint32_t **cp_out, uint16_t **fl_out,
                       size_t **off_out, size_t *n_out)
{
    uint32_t *cp = malloc(len * sizeof *cp);
    uint16_t *fl = malloc(len * sizeof *fl);
    size_t *off = off_out ? malloc((len + 1) * sizeof *off) : NULL;
    if (!cp || !fl || (off_out && !off)) {
        free(cp), free(fl), free(off);
        return ERR_NOMEM;
    }
    size_t n = 0, i = 0;
    while (i < len) {
        size_t adv;
        if (off)
            off[n] = i;
        cp[n] = eng_unicode_decode((const uint8_t *)text + i, len - i, &adv);
        fl[n] = (uint16_t)eng_unicode_flags(cp[n]);
        i += adv;
        n++;
    }
    if (off)
        off[n] = len;
    *cp_out = cp;
    *fl_out = fl;
    if (off_out)
        *off_out = off;
    *n_out = n;
    return 0;
}

int eng__tok_bpe_split(enum eng__bpe_pre pre, const char *text, size_t len, size_t *ends,
                       size_t cap, size_t *n_words)
{
    *n_words = 0;
    if (len == 0)
        return 0;
    uint32_t *cp;
    uint16_t *fl;
    size_t *off, n;
    int rc = decode_text(text, len, &cp, &fl, &off, &n);
    if (rc < 0)
        return rc;
    const struct text_cps t = {cp, fl, n};
    for (size_t pos = 0; pos < n;) {
        pos = next_word(pre, &t, pos);
        if (*n_words < cap)
            ends[*n_words] = off[pos];
        ++*n_words;
    }
    free(off);
    free(fl);
    free(cp);
    return *n_words > cap ? ERR_TOOLARGE : 0;
}

struct bpe_sym {
    int32_t prev, next;
    uint32_t off, n;
};

struct bpe_pair {
    int32_t rank, left, right;
    uint32_t size;
};

static bool pair_before(const struct bpe_pair *x, const struct bpe_pair *y)
{
    return x->rank < y->rank || (x->rank == y->rank && x->left < y->left);
}

ENG_HEAP_DEFINE(bpe_heap, struct bpe_pair, pair_before)

static int try_pair(const eng_vocab_t *v, const char *w, const struct bpe_sym *sym,
                    struct bpe_heap *h, char *key, int32_t left, int32_t right)
{
    if (left < 0 || right < 0)
        return 0;
    const int32_t rank = eng__vocab_merge_rank(v, w + sym[left].off, sym[left].n,
                                               w + sym[right].off, sym[right].n, key);
    if (rank < 0)
        return 0;
    return bpe_heap_push(h, (struct bpe_pair){rank, left, right, sym[left].n + sym[right].n});
}

/* BPE over one byte-mapped word w[0..n). */
static int encode_word(const eng_vocab_t *v, const char *w, size_t n, struct bpe_sym *sym,
                       struct bpe_heap *h, char *key, struct eng__ids *out)
{
    int rc;
    if (v->ignore_merges) {
        const int32_t id = eng__vocab_find(v, w, n);
        if (id >= 0)
            return eng__ids_push(out, id);
    }
    int32_t n_sym = 0;
    for (size_t off = 0; off < n;) {
        size_t k = eng_unicode_len_utf8((uint8_t)w[off]);
        if (k > n - off)
            k = n - off;
        sym[n_sym] = (struct bpe_sym){n_sym - 1, off + k == n ? -1 : n_sym + 1, (uint32_t)off,
                                      (uint32_t)k};
        n_sym++;
        off += k;
    }
    h->n = 0;
    for (int32_t i = 1; i < n_sym; i++)
        if ((rc = try_pair(v, w, sym, h, key, i - 1, i)) < 0)
            return rc;
    while (h->n > 0) {
        const struct bpe_pair p = bpe_heap_pop(h);
        struct bpe_sym *l = &sym[p.left], *r = &sym[p.right];
        if (l->n == 0 || r->n == 0 || l->n + r->n != p.size)
            continue;       // stale
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0)
            sym[r->next].prev = p.left;
        if ((rc = try_pair(v, w, sym, h, key, l->prev, p.left)) < 0 ||
            (rc = try_pair(v, w, sym, h, key, p.left, l->next)) < 0)
            return rc;
    }
    for (int32_t i = 0; i != -1; i = sym[i].next) {
        const char *s = w + sym[i].off;
        const int32_t id = eng__vocab_find(v, s, sym[i].n);
        if (id >= 0) {
            if ((rc = eng__ids_push(out, id)) < 0)
                return rc;
            continue;
        }
        // not a token: its single bytes that are tokens, the rest dropped (llama.cpp)
        for (uint32_t j = 0; j < sym[i].n; j++) {
            const int32_t b = eng__vocab_find(v, s + j, 1);
            if (b >= 0 && (rc = eng__ids_push(out, b)) < 0)
                return rc;
        }
    }
    return 0;
}

int eng__tok_bpe_encode(const eng_vocab_t *v, const char *text, size_t len,
                        struct eng__ids *out)
{
    if (len == 0)
        return 0;
    uint32_t *cp;
    uint16_t *fl;
    size_t n;
    int rc = decode_text(text, len, &cp, &fl, NULL, &n);
    if (rc < 0)
        return rc;
    char *w = NULL, *key = NULL;
    struct bpe_sym *sym = NULL;
    struct bpe_heap h = {0};
    // the longest word in UTF-8 bytes, to size the buffers once: a word of k bytes maps
    // to at most 2k bytes and k symbols
    const struct text_cps t = {cp, fl, n};
    size_t longest = 0;
    for (size_t pos = 0; pos < n;) {
        const size_t end = next_word(v->pre, &t, pos);
        size_t bytes = 0;
        for (size_t i = pos; i < end; i++)
            bytes += cp[i] < 0x80 ? 1 : cp[i] < 0x800 ? 2 : cp[i] < 0x10000 ? 3 : 4;
        if (bytes > longest)
            longest = bytes;
        pos = end;
    }
    w = malloc(longest * 2);
    sym = malloc(longest * sizeof *sym);
    key = malloc(v->max_merge_len + 1);
    if (!w || !sym || !key) {
        rc = ERR_NOMEM;
        goto out;
    }
    for (size_t pos = 0; pos < n;) {
        const size_t end = next_word(v->pre, &t, pos);
        size_t wn = 0;
        for (size_t i = pos; i < end; i++) {
            uint8_t u[4];
            const size_t k = eng_unicode_encode(cp[i], u);
            for (size_t j = 0; j < k; j++) {
                memcpy(w + wn, v->byte_enc[u[j]], v->byte_enc_len[u[j]]);
                wn += v->byte_enc_len[u[j]];
            }
        }
        if ((rc = encode_word(v, w, wn, sym, &h, key, out)) < 0)
            goto out;
        pos = end;
    }
out:
    free(h.a);
    free(key);
    free(sym);
    free(w);
    free(fl);
    free(cp);
    return rc;
}

#endif
