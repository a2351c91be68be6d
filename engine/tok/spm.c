/* engine/tok/spm.c: the SentencePiece-style BPE encoder of GGUF "llama" vocabularies,
 * as llama.cpp's llm_tokenizer_spm does it: spaces become U+2581 ("▁"), an optional "▁"
 * prefix, UTF-8 characters as the initial symbols, then repeatedly merge the adjacent
 * pair whose concatenation is a token with the highest score (ties: leftmost), and emit
 * each final symbol as its token or, when it is not one, as byte tokens (<0xXX>).
 * Cost: O(n log n) for n input bytes (a binary heap of candidate pairs over a linked list
 * of symbols); every candidate lookup is one hash probe, skipped when longer than the
 * longest token. */
#include "heap.h"
#include "encoders.h"
#include "unicode.h"

#include <stdlib.h>
#include <string.h>

struct spm_sym {
    int32_t prev, next;      /* -1 at the ends */
    uint32_t off, n;         /* bytes in the escaped text; n == 0: merged away */
};

struct spm_pair {
    float score;
    int32_t left, right;
    uint32_t size;           /* bytes of the merged text when queued */
};

/* true when x should be popped before y: higher score, then leftmost */
static bool pair_before(const struct spm_pair *x, const struct spm_pair *y)
{
    return x->score > y->score || (x->score == y->score && x->left < y->left);
}

ENG_HEAP_DEFINE(spm_heap, struct spm_pair, pair_before)

static int try_pair(const eng_vocab_t *v, const char *text, const struct spm_sym *sym,
                    struct spm_heap *h, int32_t left, int32_t right)
{
    if (left < 0 || right < 0)
        return 0;
    const uint32_t size = sym[left].n + sym[right].n;
    if (size > v->max_token_len)
        return 0;
    const int32_t id = eng__vocab_find(v, text + sym[left].off, size);
    if (id < 0)
        return 0;
    return spm_heap_push(h, (struct spm_pair){v->score[id], left, right, size});
}

int eng__tok_spm_encode(const eng_vocab_t *v, const char *text, size_t len, bool space_prefix,
                        struct eng__ids *out)
{
    static const char esc[3] = {'\xE2', '\x96', '\x81'};   // U+2581
    // escaped text: every ' ' becomes "▁", optionally one "▁" in front
    size_t elen = space_prefix ? 3 : 0;
    for (size_t i = 0; i < len; i++)
        elen += text[i] == ' ' ? 3 : 1;
    if (elen == 0)
        return 0;
    if (elen > INT32_MAX / 2)
        return ERR_TOOLARGE;
    int rc = 0;
    char *e = malloc(elen);
    struct spm_sym *sym = NULL;
    struct spm_heap h = {0};
    if (!e) {
        rc = ERR_NOMEM;
        goto out;
    }
    size_t k = 0;
    if (space_prefix) {
        memcpy(e, esc, 3);
        k = 3;
    }
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ') {
            memcpy(e + k, esc, 3);
            k += 3;
        } else {
            e[k++] = text[i];
        }
    }
    // one symbol per UTF-8 character (by the lead byte; clamped at the end); counted first
    // (a stray lead byte can split a "▁" into several symbols)
    size_t count = 0;
    for (size_t off = 0; off < elen; count++)
        off += eng_unicode_len_utf8((uint8_t)e[off]);
    sym = malloc(count * sizeof *sym);
    if (!sym) {
        rc = ERR_NOMEM;
        goto out;
    }
    int32_t n_sym = 0;
    for (size_t off = 0; off < elen;) {
        size_t n = eng_unicode_len_utf8((uint8_t)e[off]);
        if (n > elen - off)
            n = elen - off;
        sym[n_sym] = (struct spm_sym){n_sym - 1, off + n == elen ? -1 : n_sym + 1,
                                      (uint32_t)off, (uint32_t)n};
        n_sym++;
        off += n;
    }
    for (int32_t i = 1; i < n_sym; i++)
        if ((rc = try_pair(v, e, sym, &h, i - 1, i)) < 0)
            goto out;
    while (h.n > 0) {
        const struct spm_pair p = spm_heap_pop(&h);
        struct spm_sym *l = &sym[p.left], *r = &sym[p.right];
        if (l->n == 0 || r->n == 0 || l->n + r->n != p.size)
            continue;       // stale: one side was merged since
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0)
            sym[r->next].prev = p.left;
        if ((rc = try_pair(v, e, sym, &h, l->prev, p.left)) < 0 ||
            (rc = try_pair(v, e, sym, &h, p.left, l->next)) < 0)
            goto out;
    }
    for (int32_t i = 0; i != -1; i = sym[i].next) {
        const int32_t id = eng__vocab_find(v, e + sym[i].off, sym[i].n);
        if (id >= 0) {
            if ((rc = eng__ids_push(out, id)) < 0)
                goto out;
            continue;
        }
        // not a token: byte fallback; bytes without a byte token become one <unk> per
        // run (llama.cpp would throw here)
        bool unk_run = false;
        for (uint32_t j = 0; j < sym[i].n; j++) {
            int32_t b = v->byte_tok[(uint8_t)e[sym[i].off + j]];
            if (b < 0) {
                if (unk_run)
                    continue;
                if (v->unk < 0) {
                    rc = ERR_UNSUPPORTED;
                    goto out;
                }
                b = v->unk;
                unk_run = true;
            } else {
                unk_run = false;
            }
            if ((rc = eng__ids_push(out, b)) < 0)
                goto out;
        }
    }
out:
    free(h.a);
    free(sym);
    free(e);
    return rc;
}
