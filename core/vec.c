#include "core/vec.h"

#include <stdlib.h>

enum { FIRST_CAPACITY = 8 };

bool fg_vec_reserve(void **data, int64_t *cap, int64_t need, size_t elem) {
  if (need <= *cap) return true;
  if (need < 0 || elem == 0) return false;
  int64_t n = *cap > 0 ? *cap : FIRST_CAPACITY;
  while (n < need) {
    if (n > INT64_MAX / 2) return false;
    n *= 2;
  }
  if ((uint64_t)n > SIZE_MAX / elem) return false;
  void *p = realloc(*data, (size_t)n * elem);
  if (!p) return false;
  *data = p;
  *cap = n;
  return true;
}
