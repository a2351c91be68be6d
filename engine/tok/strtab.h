/* engine/tok/strtab.h: FNV-1a hashing and an open-addressing index over strings that live
 * elsewhere (private to engine/tok/). Owns: the slot arrays of a struct eng__strtab; the
 * strings (key i is pool[off[i] .. off[i]+len[i])) stay the caller's.
 * Thread: immutable after eng__strtab_build; lookups from any thread. */
#ifndef ORTHOD_ENGINE_TOK_STRTAB_H
#define ORTHOD_ENGINE_TOK_STRTAB_H

#include "../../common/hash.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Maps a string to its key index. */
struct eng__strtab {
    const char *pool;
    const uint32_t *off, *len;
    uint32_t *slot;          /* (mask+1) entries: key index + 1, 0 = empty */
    uint32_t *slot_hash;     /* (mask+1) low 32 bits of the key's hash */
    uint32_t mask;
};

/* FNV-1a (common/hash.h). Lookups are inline: the BPE merge loop calls them per pair. */
static inline uint64_t eng__hash(const void *s, size_t n)
{
    return hash_fnv1a(s, n);
}
/* Continues a hash over more bytes: eng__hash(a+b) == eng__hash_more(eng__hash(a), b). */
static inline uint64_t eng__hash_more(uint64_t h, const void *s, size_t n)
{
    return hash_fnv1a_more(h, s, n);
}

/* Indexes keys 0..n-1 (keys of length 0 are left out). A repeated key is kept at its
 * first index when keep_first, else it is ERR_CORRUPT and *dup_a, *dup_b name the two.
 * ERR_NOMEM; on any error the caller still calls eng__strtab_free. */
int eng__strtab_build(struct eng__strtab *t, const char *pool, const uint32_t *off,
                      const uint32_t *len, uint32_t n, bool keep_first, uint32_t *dup_a,
                      uint32_t *dup_b);
void eng__strtab_free(struct eng__strtab *t);
static inline uint32_t eng__strtab_slot(uint64_t h, uint32_t mask)
{
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 32;
    return (uint32_t)h & mask;
}

/* Key index of s[0..n) in t, or -1. `h` is eng__hash(s, n). */
static inline int64_t eng__strtab_find(const struct eng__strtab *t, const char *s, size_t n,
                                       uint64_t h)
{
    if (!t->slot)
        return -1;
    for (uint32_t i = eng__strtab_slot(h, t->mask);; i = (i + 1) & t->mask) {
        const uint32_t e = t->slot[i];
        if (e == 0)
            return -1;
        if (t->slot_hash[i] == (uint32_t)h && t->len[e - 1] == n &&
            memcmp(t->pool + t->off[e - 1], s, n) == 0)
            return (int64_t)e - 1;
    }
}

#endif
