/* engine/tok/wpm.c: the WordPiece encoder of GGUF "bert" vocabularies, as llama.cpp's
 * llm_tokenizer_wpm does it: decode to codepoints, strip accents (first codepoint of the
 * NFD form, combining marks dropped) and lowercase, drop control characters, split on
 * whitespace and around punctuation, ASCII symbols and CJK ideographs, then cover each
 * word ("▁" + word) greedily with the longest tokens from the left; a word that cannot
 * be covered becomes [UNK]. Cost: O(n * L) for n input bytes and a longest token of L
 * bytes (prefix hashes are computed incrementally). Built only with libutf8proc. */
#include "encoders.h"
#include "unicode.h"

#if ORTHOD_HAVE_UTF8PROC

#include <stdlib.h>
#include <string.h>

static bool is_chinese(uint32_t c)
{
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) ||
           (c >= 0x20000 && c <= 0x2A6DF) || (c >= 0x2A700 && c <= 0x2B73F) ||
           (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

/* Covers w[0..n) (which starts with "▁") with the longest matching tokens. ph: scratch
 * for n + 1 prefix hashes. */
static int encode_word(const eng_vocab_t *v, const char *w, size_t n, uint64_t *ph,
                       struct eng__ids *out)
{
    const size_t start = out->n;
    int rc;
    for (size_t i = 0; i < n;) {
        size_t jmax = n - i;
        if (jmax > (size_t)v->max_token_len)
            jmax = v->max_token_len;
        uint64_t hh = eng__hash(NULL, 0);
        for (size_t k = 1; k <= jmax; k++) {
            hh = eng__hash_more(hh, w + i + k - 1, 1);
            ph[k] = hh;
        }
        size_t k = jmax;
        int64_t id = -1;
        for (; k > 0; k--)
            if ((id = eng__strtab_find(&v->index, w + i, k, ph[k])) >= 0)
                break;
        if (id < 0) {
            out->n = start;     // the word cannot be covered: all of it is unknown
            break;
        }
        if ((rc = eng__ids_push(out, (int32_t)id)) < 0)
            return rc;
        i += k;
    }
    if (out->n == start) {
        if (v->unk < 0)
            return ERR_UNSUPPORTED;
        return eng__ids_push(out, v->unk);
    }
    return 0;
}

int eng__tok_wpm_encode(const eng_vocab_t *v, const char *text, size_t len,
                        struct eng__ids *out)
{
    if (len == 0)
        return 0;
    // words, each written as "▁" + word into buf; ends[] marks where each one stops
    char *buf = malloc(len * 4 + 3 * (len + 1));
    size_t *ends = malloc((len + 1) * sizeof *ends);
    uint64_t *ph = NULL;
    int rc = 0;
    if (!buf || !ends) {
        rc = ERR_NOMEM;
        goto out;
    }
    size_t bn = 0, n_words = 0, word_start = 0;
    bool in_word = false;
#define END_WORD()                                                                             \
    do {                                                                                       \
        if (in_word) {                                                                         \
            ends[n_words++] = bn;                                                              \
            in_word = false;                                                                   \
        }                                                                                      \
    } while (0)
#define BEGIN_WORD()                                                                           \
    do {                                                                                       \
        if (!in_word) {                                                                        \
            memcpy(buf + bn, "\xE2\x96\x81", 3);                                               \
            bn += 3;                                                                           \
            in_word = true;                                                                    \
        }                                                                                      \
    } while (0)
    for (size_t i = 0; i < len;) {
        size_t adv;
        uint32_t c = eng_unicode_decode((const uint8_t *)text + i, len - i, &adv);
        i += adv;
        if (v->wpm_strip_accents)
            c = eng_unicode_nfd_first(c);
        const unsigned f = eng_unicode_flags(c);
        if (f & ENG_UNI_WHITESPACE) {
            END_WORD();
            continue;
        }
        if (c == 0 || c == ENG_UNICODE_REPLACEMENT || (f & ENG_UNI_CONTROL))
            continue;
        if (v->wpm_strip_accents && (f & ENG_UNI_MARK))
            continue;
        uint8_t u[4];
        const size_t k = eng_unicode_encode(v->wpm_lowercase ? eng_unicode_tolower(c) : c, u);
        const bool alone = (f & ENG_UNI_PUNCT) || (c < 0x7F && (f & ENG_UNI_SYMBOL)) ||
                           is_chinese(c);
        if (alone)
            END_WORD();
        BEGIN_WORD();
        memcpy(buf + bn, u, k);
        bn += k;
        if (alone)
            END_WORD();
    }
    END_WORD();
#undef END_WORD
#undef BEGIN_WORD
    size_t longest = 0;
    for (size_t k = 0; k < n_words; k++) {
        const size_t wl = ends[k] - word_start;
        if (wl > longest)
            longest = wl;
        word_start = ends[k];
    }
    ph = malloc((longest + 1) * sizeof *ph);
    if (!ph) {
        rc = ERR_NOMEM;
        goto out;
    }
    word_start = 0;
    for (size_t k = 0; k < n_words && rc == 0; k++) {
        rc = encode_word(v, buf + word_start, ends[k] - word_start, ph, out);
        word_start = ends[k];
    }
out:
    free(ph);
    free(ends);
    free(buf);
    return rc;
}

#endif
