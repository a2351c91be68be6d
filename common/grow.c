/* common/grow.c: growing a heap array by doubling (common/grow.h). */
#include "grow.h"

#include "err.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int grow(void *pp, size_t *cap, size_t need, size_t elem, size_t first, size_t limit)
{
    if (need <= *cap)
        return 0;
    if (limit && need > limit)
        return ERR_TOOLARGE;
    size_t nc = *cap ? *cap : (first ? first : 1);
    while (nc < need) {
        if (nc > SIZE_MAX / 2)
            return ERR_NOMEM;
        nc *= 2;
    }
    if (limit && nc > limit)
        nc = limit;
    if (elem && nc > SIZE_MAX / elem)
        return ERR_NOMEM;
    void *old;
    memcpy(&old, pp, sizeof old);       // pp points at a T *: read it without punning
    char *p = realloc(old, nc * elem);
    if (!p)
        return ERR_NOMEM;
    memset(p + *cap * elem, 0, (nc - *cap) * elem);
    memcpy(pp, &p, sizeof p);
    *cap = nc;
    return 0;
}
