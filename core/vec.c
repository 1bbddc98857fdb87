#include "core/vec.h"

#include <stdlib.h>

#include "core/size.h"

enum { FIRST_CAPACITY = 8 };

bool fg_vec_reserve(void **data, int64_t *cap, int64_t need, size_t elem) {
  if (need <= *cap) return true;
  if (need < 0 || elem == 0) return false;
  int64_t n = *cap > 0 ? *cap : FIRST_CAPACITY;
  while (n < need)
    if (!fg_size_mul(n, 2, &n)) return false;
  int64_t bytes;
  if (!fg_size_mul(n, (int64_t)elem, &bytes) || (uint64_t)bytes > SIZE_MAX) return false;
  void *p = realloc(*data, (size_t)bytes);
  if (!p) return false;
  *data = p;
  *cap = n;
  return true;
}
