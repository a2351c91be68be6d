/* engine/tok/tokenize.c: eng_tokenize: the special tokens split off the text first (as
 * llama.cpp's tokenizer_st_partition does), then each raw span handed to the encoder the
 * vocabulary names (spm.c, bpe.c, wpm.c), with BOS/EOS/SEP added as the vocab says.
 * Limit: ENG_TOKENIZE_MAX_BYTES of text per call. */
#include "encoders.h"
#include "vocab.h"

#include "../../common/grow.h"

#include <stdlib.h>
#include <string.h>

struct frag {
    size_t off, len;         /* text span (tok < 0) */
    int32_t tok;             /* special token, or -1 */
};

struct frags {
    struct frag *p;
    size_t n, cap;
};

static int frags_push(struct frags *f, struct frag x)
{
    int rc;
    if (f->n == f->cap && (rc = grow(&f->p, &f->cap, f->n + 1, sizeof *f->p, 16, 0)) < 0)
        return rc;
    f->p[f->n++] = x;
    return 0;
}

static bool ascii_space(char c)
{
    return c == ' ' || (c >= '\t' && c <= '\r');
}

/* Splits text into raw spans and special tokens: for each special token, longest text
 * first, every raw span is cut at each occurrence, left to right (llama.cpp's
 * tokenizer_st_partition). Control and unknown tokens take part only when parse_special;
 * user-defined ones always do. */
static int partition(const eng_vocab_t *v, const char *text, size_t len, bool parse_special,
                     struct frags *out)
{
    struct frags a = {0}, b = {0};
    int rc = 0;
    if (len == 0)
        goto done;
    if ((rc = frags_push(&a, (struct frag){0, len, -1})) < 0)
        goto done;
    for (size_t s = 0; s < v->n_special; s++) {
        const int32_t id = v->special[s];
        const uint16_t attr = v->attr[id];
        if (!parse_special && (attr & (ENG__ATTR_CONTROL | ENG__ATTR_UNKNOWN)))
            continue;
        const char *t = v->pool + v->tok_off[id];
        const size_t tn = v->tok_len[id];
        if (tn > len || !memmem(text, len, t, tn))
            continue;           // cheap test on the whole text first
        b.n = 0;
        for (size_t k = 0; k < a.n; k++) {
            const struct frag f = a.p[k];
            if (f.tok >= 0 || f.len < tn) {
                if ((rc = frags_push(&b, f)) < 0)
                    goto done;
                continue;
            }
            size_t at = f.off, end = f.off + f.len;
            for (;;) {
                const char *m = at < end ? memmem(text + at, end - at, t, tn) : NULL;
                if (!m) {
                    if (at < end && (rc = frags_push(&b, (struct frag){at, end - at, -1})) < 0)
                        goto done;
                    break;
                }
                const size_t pos = (size_t)(m - text);
                size_t left = pos - at;
                if (attr & ENG__ATTR_LSTRIP)
                    while (left > 0 && ascii_space(text[at + left - 1]))
                        left--;
                if (left > 0 && (rc = frags_push(&b, (struct frag){at, left, -1})) < 0)
                    goto done;
                if ((rc = frags_push(&b, (struct frag){0, 0, id})) < 0)
                    goto done;
                at = pos + tn;
                if (attr & ENG__ATTR_RSTRIP)
                    while (at < end && ascii_space(text[at]))
                        at++;
            }
        }
        struct frags tmp = a;
        a = b;
        b = tmp;
    }
done:
    free(b.p);
    if (rc < 0) {
        free(a.p);
        return rc;
    }
    *out = a;
    return 0;
}

static int encode_text(const eng_vocab_t *v, const char *text, size_t len, bool space_prefix,
                       struct eng__ids *ids)
{
    switch (v->type) {
    case ENG_VOCAB_SPM:
        return eng__tok_spm_encode(v, text, len, space_prefix, ids);
#if ORTHOD_HAVE_UTF8PROC
    case ENG_VOCAB_BPE:
        return eng__tok_bpe_encode(v, text, len, ids);
    case ENG_VOCAB_WPM:
        return eng__tok_wpm_encode(v, text, len, ids);
#endif
    default:
        return ERR_UNSUPPORTED;
    }
}

int eng_tokenize(const eng_vocab_t *v, const char *text, size_t len, bool add_special,
                 bool parse_special, int32_t *out, size_t cap, size_t *n_out)
{
    if (!v || !n_out || (!text && len) || (!out && cap))
        return ERR_INVAL;
    if (len > ENG_TOKENIZE_MAX_BYTES) {
        *n_out = 0;
        return ERR_TOOLARGE;
    }
    struct frags fr = {0};
    // every input byte yields at most 6 ids (U+FFFD in BPE: 3 bytes, 2 each)
    struct eng__ids ids = {.limit = 8 * len + 64};
    int rc = partition(v, text, len, parse_special, &fr);
    if (rc < 0)
        goto out;
    const bool bos = add_special && v->bos >= 0 &&
                     (v->type == ENG_VOCAB_WPM || v->add_bos);
    if (bos && (rc = eng__ids_push(&ids, v->bos)) < 0)
        goto out;
    bool prev_special = true;   // SPM: a space prefix at the start and after special tokens
    for (size_t k = 0; k < fr.n; k++) {
        const struct frag f = fr.p[k];
        if (f.tok >= 0) {
            rc = eng__ids_push(&ids, f.tok);
            prev_special = true;
        } else {
            rc = encode_text(v, text + f.off, f.len, v->add_space_prefix && prev_special, &ids);
            prev_special = false;
        }
        if (rc < 0)
            goto out;
    }
    if (add_special) {
        if (v->type == ENG_VOCAB_WPM) {
            if (v->sep >= 0)
                rc = eng__ids_push(&ids, v->sep);
        } else if (v->add_eos && v->eos >= 0) {
            rc = eng__ids_push(&ids, v->eos);
        }
        if (rc < 0)
            goto out;
    }
    *n_out = ids.n;
    if (ids.n > 0 && cap > 0)
        memcpy(out, ids.p, (ids.n < cap ? ids.n : cap) * sizeof *out);
    rc = ids.n > cap ? ERR_TOOLARGE : 0;
out:
    free(ids.p);
    free(fr.p);
    return rc;
}
