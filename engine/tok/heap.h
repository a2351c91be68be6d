/* engine/tok/heap.h: a binary min-heap ("pops first what `before` puts first") over a value
 * type, generated per type so that pushes and pops stay inlined and typed (klib style).
 *   ENG_HEAP_DEFINE(pq, struct pair, pair_before)
 * defines `struct pq { struct pair *a; size_t n, cap; }` (zero-initialize; free(h.a) when
 * done), `int pq_push(struct pq *, struct pair)` (0 or ERR_NOMEM; grows by doubling) and
 * `struct pair pq_pop(struct pq *)` (requires n > 0). Used by the SPM and BPE merges. */
#ifndef ORTHOD_ENGINE_HEAP_H
#define ORTHOD_ENGINE_HEAP_H

#include "../../common/err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>

#define ENG_HEAP_DEFINE(name, T, before)                                                       \
    struct name {                                                                              \
        T *a;                                                                                  \
        size_t n, cap;                                                                         \
    };                                                                                         \
    static inline int name##_push(struct name *h, T p)                                         \
    {                                                                                          \
        if (h->n == h->cap) {                                                                  \
            size_t cap = h->cap ? h->cap * 2 : 64;                                             \
            T *a = realloc(h->a, cap * sizeof *a);                                             \
            if (!a)                                                                            \
                return ERR_NOMEM;                                                              \
            h->a = a;                                                                          \
            h->cap = cap;                                                                      \
        }                                                                                      \
        size_t i = h->n++;                                                                     \
        while (i > 0) {                                                                        \
            size_t parent = (i - 1) / 2;                                                       \
            if (!before(&p, &h->a[parent]))                                                    \
                break;                                                                         \
            h->a[i] = h->a[parent];                                                            \
            i = parent;                                                                        \
        }                                                                                      \
        h->a[i] = p;                                                                           \
        return 0;                                                                              \
    }                                                                                          \
    static inline T name##_pop(struct name *h)                                                 \
    {                                                                                          \
        T top = h->a[0];                                                                       \
        T last = h->a[--h->n];                                                                 \
        size_t i = 0;                                                                          \
        for (;;) {                                                                             \
            size_t c = 2 * i + 1;                                                              \
            if (c >= h->n)                                                                     \
                break;                                                                         \
            if (c + 1 < h->n && before(&h->a[c + 1], &h->a[c]))                                \
                c++;                                                                           \
            if (!before(&h->a[c], &last))                                                      \
                break;                                                                         \
            h->a[i] = h->a[c];                                                                 \
            i = c;                                                                             \
        }                                                                                      \
        if (h->n > 0)                                                                          \
            h->a[i] = last;                                                                    \
        return top;                                                                            \
    }

#endif
