#include "core/size.h"

#include <math.h>

bool fg_size_mul(int64_t a, int64_t b, int64_t *out) {
  int64_t r;
  if (a < 0 || b < 0 || __builtin_mul_overflow(a, b, &r)) return false;
  *out = r;
  return true;
}

bool fg_size_add(int64_t a, int64_t b, int64_t *out) {
  int64_t r;
  if (a < 0 || b < 0 || __builtin_add_overflow(a, b, &r)) return false;
  *out = r;
  return true;
}

bool fg_size_product(const int64_t *dims, int n, int64_t *out) {
  int64_t all = 1, nonzero = 1;
  for (int i = 0; i < n; i++) {
    if (!fg_size_mul(all, dims[i], &all)) return false;
    if (!fg_size_mul(nonzero, dims[i] ? dims[i] : 1, &nonzero)) return false;
  }
  *out = all;
  return true;
}

fg_status fg_size_limit(int64_t v, int64_t cap, const char *what, fg_err *e) {
  if (v <= cap) return FG_OK;
  return fg_err_set(e, FG_E_LIMIT, "%s is %lld; flowgrad accepts at most %lld", what, (long long)v,
                    (long long)cap);
}

bool fg_size_from_double(double v, int64_t lo, int64_t hi, int64_t *out) {
  /* 2^63 is the first double past INT64_MAX; comparing in double first keeps the cast defined */
  if (!isfinite(v) || v != floor(v) || v < -9223372036854775808.0 || v >= 9223372036854775808.0)
    return false;
  int64_t i = (int64_t)v;
  if (i < lo || i > hi) return false;
  *out = i;
  return true;
}
