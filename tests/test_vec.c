#include <criterion/criterion.h>
#include <stdint.h>
#include <stdlib.h>

#include "core/vec.h"

Test(vec, grows_and_keeps_elements) {
  int *v = NULL;
  int64_t cap = 0;
  for (int i = 0; i < 1000; i++) {
    cr_assert(FG_VEC_RESERVE(v, cap, i + 1));
    cr_assert_geq(cap, i + 1);
    v[i] = i * 3;
  }
  for (int i = 0; i < 1000; i++) cr_assert_eq(v[i], i * 3);
  free(v);
}

Test(vec, reserving_less_than_the_capacity_changes_nothing) {
  double *v = NULL;
  int64_t cap = 0;
  cr_assert(FG_VEC_RESERVE(v, cap, 10));
  double *before = v;
  int64_t cap_before = cap;
  cr_assert(FG_VEC_RESERVE(v, cap, 3));
  cr_assert_eq(v, before);
  cr_assert_eq(cap, cap_before);
  free(v);
}

Test(vec, overflowing_sizes_fail_and_leave_the_array) {
  int64_t *v = NULL;
  int64_t cap = 0;
  cr_assert(FG_VEC_RESERVE(v, cap, 4));
  v[3] = 42;
  cr_assert_not(FG_VEC_RESERVE(v, cap, INT64_MAX / 4));
  cr_assert_eq(cap, 8);
  cr_assert_eq(v[3], 42);
  free(v);
}
