/* Overflow-checked size arithmetic (core/size.h): products, sums, limits and conversions of
 * untrusted doubles, at and just past every boundary. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "core/size.h"

Test(size, products_and_sums_stop_at_int64) {
  int64_t v = -7;
  cr_assert(fg_size_mul(3037000499, 3037000499, &v));
  cr_assert_eq(v, 3037000499LL * 3037000499LL);
  v = -7;
  cr_assert_not(fg_size_mul(4294967296, 4294967296, &v), "2^64 does not fit");
  cr_assert_eq(v, -7, "*out is unchanged on failure");
  cr_assert_not(fg_size_mul(-1, 2, &v), "sizes are never negative");
  cr_assert(fg_size_mul(0, INT64_MAX, &v) && v == 0);
  cr_assert(fg_size_add(INT64_MAX - 1, 1, &v) && v == INT64_MAX);
  cr_assert_not(fg_size_add(INT64_MAX, 1, &v));
  cr_assert_not(fg_size_add(-1, 1, &v));
}

Test(size, a_zero_size_does_not_hide_an_overflow_of_the_others) {
  int64_t v;
  int64_t ok[] = {2, 0, 5};
  cr_assert(fg_size_product(ok, 3, &v) && v == 0);
  /* strides of [0, 2^63-1, 2] would overflow even though there are no elements */
  int64_t huge[] = {0, INT64_MAX, 2};
  cr_assert_not(fg_size_product(huge, 3, &v));
  int64_t st[] = {0, 1LL << 53, 1LL << 53};
  cr_assert_not(fg_size_product(st, 3, &v));
  int64_t neg[] = {2, -1};
  cr_assert_not(fg_size_product(neg, 2, &v));
  cr_assert(fg_size_product(NULL, 0, &v) && v == 1, "the empty product is 1 (a scalar)");
}

Test(size, limits_name_what_and_the_cap) {
  fg_err e;
  cr_assert_eq(fg_size_limit(4096, 4096, "channels", &e), FG_OK);
  cr_assert_eq(fg_size_limit(4097, 4096, "channels", &e), FG_E_LIMIT);
  cr_assert(strstr(e.msg, "channels") && strstr(e.msg, "4097") && strstr(e.msg, "4096"), "%s", e.msg);
}

Test(size, doubles_become_integers_only_when_they_are_integers_in_range) {
  int64_t v = 99;
  cr_assert(fg_size_from_double(20000, 1, 1000000, &v) && v == 20000);
  cr_assert(fg_size_from_double(0, 0, 10, &v) && v == 0);
  v = 99;
  cr_assert_not(fg_size_from_double(1e300, 1, 1000000, &v));
  cr_assert_eq(v, 99);
  cr_assert_not(fg_size_from_double(-1, 0, 10, &v));
  cr_assert_not(fg_size_from_double(NAN, 0, 10, &v));
  cr_assert_not(fg_size_from_double(INFINITY, 0, INT64_MAX, &v));
  cr_assert_not(fg_size_from_double(2.5, 0, 10, &v));
  cr_assert_not(fg_size_from_double(9223372036854775807.0, 0, INT64_MAX, &v),
                "2^63 rounds up past INT64_MAX");
  cr_assert(fg_size_from_double(9007199254740992.0, 0, INT64_MAX, &v) && v == 9007199254740992LL);
}
