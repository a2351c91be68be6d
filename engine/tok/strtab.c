/* engine/tok/strtab.c: building the open-addressing string index of engine/tok/strtab.h
 * (token texts and BPE merges of a vocabulary); lookups are inline in the header. */
#include "strtab.h"

#include "../../common/err.h"

#include <stdlib.h>
#include <string.h>

int eng__strtab_build(struct eng__strtab *t, const char *pool, const uint32_t *off,
                      const uint32_t *len, uint32_t n, bool keep_first, uint32_t *dup_a,
                      uint32_t *dup_b)
{
    size_t cap = 16;
    while (cap < (size_t)n * 2)
        cap <<= 1;
    t->pool = pool;
    t->off = off;
    t->len = len;
    t->mask = (uint32_t)(cap - 1);
    t->slot = calloc(cap, sizeof *t->slot);
    t->slot_hash = malloc(cap * sizeof *t->slot_hash);
    if (!t->slot || !t->slot_hash)
        return ERR_NOMEM;
    for (uint32_t k = 0; k < n; k++) {
        if (len[k] == 0)
            continue;
        const char *s = pool + off[k];
        const uint64_t h = eng__hash(s, len[k]);
        const int64_t prev = eng__strtab_find(t, s, len[k], h);
        if (prev >= 0) {
            if (keep_first)
                continue;
            *dup_a = (uint32_t)prev;
            *dup_b = k;
            return ERR_CORRUPT;
        }
        uint32_t i = eng__strtab_slot(h, t->mask);
        while (t->slot[i])
            i = (i + 1) & t->mask;
        t->slot[i] = k + 1;
        t->slot_hash[i] = (uint32_t)h;
    }
    return 0;
}

void eng__strtab_free(struct eng__strtab *t)
{
    free(t->slot);
    free(t->slot_hash);
}
