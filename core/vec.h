/* Growable arrays: the one helper behind every "append, growing the capacity geometrically"
 * in the library (as Lua's luaM_growvector).  An array is a pointer and an int64_t capacity
 * kept by its owner:
 *
 *     if (!FG_VEC_RESERVE(l->items, l->cap, l->n + 1)) return fg_err_set(e, FG_E_NOMEM, ...);
 *     l->items[l->n++] = item;
 */
#ifndef FG_VEC_H
#define FG_VEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Makes *data hold at least `need` elements of `elem` bytes, doubling its capacity *cap
 * (elements; 0 for a NULL array) as often as needed.  New elements are not initialised.
 * Returns false when out of memory or when the size overflows, leaving *data and *cap as
 * they were. */
bool fg_vec_reserve(void **data, int64_t *cap, int64_t need, size_t elem);

#define FG_VEC_RESERVE(ptr, cap, need) \
  fg_vec_reserve((void **)&(ptr), &(cap), (int64_t)(need), sizeof *(ptr))

#endif
