/* common/hash.h: FNV-1a, the one string hash of the project's name indexes (GGUF keys and
 * tensors, token texts and merges, Hugging Face vocabularies). Not for hostile-key tables
 * that face the network (no seed). Thread: any; no state. */
#ifndef ORTHOD_COMMON_HASH_H
#define ORTHOD_COMMON_HASH_H

#include <stddef.h>
#include <stdint.h>

#define HASH_FNV1A_INIT 0xcbf29ce484222325ull

/* Continues a hash over more bytes: hash_fnv1a(a+b) == hash_fnv1a_more(hash_fnv1a(a), b). */
static inline uint64_t hash_fnv1a_more(uint64_t h, const void *s, size_t n)
{
    const unsigned char *p = s;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

static inline uint64_t hash_fnv1a(const void *s, size_t n)
{
    return hash_fnv1a_more(HASH_FNV1A_INIT, s, n);
}

#endif
