/* engine/tok/strtab.c: hashing (common/hash.h) and the open-addressing string index behind
 * engine/tok/strtab.h (token texts and BPE merges of a vocabulary). */
#include "strtab.h"

#include "../../common/err.h"
#include "../../common/hash.h"

#include <stdlib.h>
#include <string.h>

uint64_t eng__hash_more(uint64_t h, const void *s, size_t n)
{
    return hash_fnv1a_more(h, s, n);
}

uint64_t eng__hash(const void *s, size_t n)
{
    return hash_fnv1a(s, n);
}

static uint32_t slot_of(uint64_t h, uint32_t mask)
{
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 32;
    return (uint32_t)h & mask;
}

int64_t eng__strtab_find(const struct eng__strtab *t, const char *s, size_t n, uint64_t h)
{
    if (!t->slot)
        return -1;
    for (uint32_t i = slot_of(h, t->mask);; i = (i + 1) & t->mask) {
        const uint32_t e = t->slot[i];
        if (e == 0)
            return -1;
        if (t->slot_hash[i] == (uint32_t)h && t->len[e - 1] == n &&
            memcmp(t->pool + t->off[e - 1], s, n) == 0)
            return (int64_t)e - 1;
    }
}

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
        uint32_t i = slot_of(h, t->mask);
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
