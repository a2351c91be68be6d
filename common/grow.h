/* common/grow.h: growing a heap array by doubling, with an optional cap.
 * Owns nothing: the array and its capacity stay the caller's. Thread: any. */
#ifndef ORTHOD_COMMON_GROW_H
#define ORTHOD_COMMON_GROW_H

#include <stddef.h>

/* Makes room for `need` elements of `elem` bytes in the array whose address is pp (a T **;
 * the array starts NULL with *cap 0). The capacity doubles from `first` and never passes
 * `limit` (0: no limit); new slots are zeroed. Returns 0, ERR_NOMEM (array and *cap
 * unchanged), or ERR_TOOLARGE when need > limit. */
int grow(void *pp, size_t *cap, size_t need, size_t elem, size_t first, size_t limit);

#endif
