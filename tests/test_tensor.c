#include <criterion/criterion.h>
#include <stdint.h>
#include <errno.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/tensor.h"

Test(tensor, new_is_zeroed_and_contiguous) {
  fg_tensor *t;
  fg_shape s = fg_shape3(2, 3, 4);
  cr_assert_eq(fg_tensor_new(&t, FG_F32, &s, NULL), FG_OK);
  cr_assert(fg_tensor_is_contiguous(t));
  cr_assert_eq(fg_tensor_numel(t), 24);
  for (int64_t i = 0; i < 24; i++) cr_assert_eq(fg_tensor_get(t, i), 0.0);
  fg_tensor_free(t);
}

Test(tensor, from_data_copies) {
  double v[6] = {1, 2, 3, 4, 5, 6};
  fg_tensor *t;
  fg_shape s = fg_shape2(2, 3);
  cr_assert_eq(fg_tensor_from_data(&t, FG_F64, &s, v, NULL), FG_OK);
  v[0] = 100;
  cr_assert_eq(fg_tensor_get(t, 0), 1.0);
  cr_assert_eq(fg_tensor_get(t, 5), 6.0);
  fg_tensor_free(t);
}

Test(tensor, views_share_the_buffer) {
  fg_tensor *t, *rows, *perm, *flat;
  fg_shape s = fg_shape2(4, 3);
  cr_assert_eq(fg_tensor_new(&t, FG_F64, &s, NULL), FG_OK);
  for (int i = 0; i < 12; i++) fg_tensor_set(t, i, i);
  cr_assert_eq(fg_tensor_slice0(&rows, t, 1, 3, NULL), FG_OK);
  cr_assert_eq(rows->shape.d[0], 2);
  cr_assert_eq(fg_tensor_get(rows, 0), 3.0);
  fg_tensor_set(rows, 0, -1);
  cr_assert_eq(fg_tensor_get(t, 3), -1.0, "a slice writes through to its base");
  int p[2] = {1, 0};
  cr_assert_eq(fg_tensor_permute(&perm, t, p, NULL), FG_OK);
  cr_assert_not(fg_tensor_is_contiguous(perm));
  cr_assert_eq(fg_tensor_get(perm, 1), fg_tensor_get(t, 3)); /* perm[0][1] == t[1][0] */
  fg_shape f = fg_shape1(12);
  cr_assert_eq(fg_tensor_reshape(&flat, t, &f, NULL), FG_OK);
  fg_err e;
  fg_tensor *bad;
  cr_assert_eq(fg_tensor_reshape(&bad, perm, &f, &e), FG_E_MISUSE);
  fg_tensor_free(t); /* views keep the buffer alive */
  cr_assert_eq(fg_tensor_get(flat, 3), -1.0);
  fg_tensor_free(rows), fg_tensor_free(perm), fg_tensor_free(flat);
}

Test(tensor, copy_converts_dtype_and_layout) {
  fg_tensor *t, *perm, *c;
  fg_shape s = fg_shape2(2, 3);
  cr_assert_eq(fg_tensor_new(&t, FG_F64, &s, NULL), FG_OK);
  for (int i = 0; i < 6; i++) fg_tensor_set(t, i, i + 0.5);
  int p[2] = {1, 0};
  cr_assert_eq(fg_tensor_permute(&perm, t, p, NULL), FG_OK);
  cr_assert_eq(fg_tensor_copy(&c, perm, FG_F32, NULL), FG_OK);
  cr_assert(fg_tensor_is_contiguous(c));
  cr_assert_eq(c->dtype, FG_F32);
  cr_assert_eq(fg_tensor_get(c, 1), 3.5); /* c[0][1] = t[1][0] */
  fg_tensor_free(t), fg_tensor_free(perm), fg_tensor_free(c);
}

Test(tensor, rejects_bad_shapes) {
  fg_tensor *t = NULL;
  fg_err e;
  fg_shape neg = fg_shape2(3, -1);
  cr_assert_eq(fg_tensor_new(&t, FG_F32, &neg, &e), FG_E_SHAPE);
  cr_assert(strstr(e.msg, "negative") != NULL, "%s", e.msg);
  fg_shape huge = fg_shape3(INT64_MAX / 4, 8, 1);
  cr_assert_eq(fg_tensor_new(&t, FG_F32, &huge, &e), FG_E_OVERFLOW);
  fg_shape bytes_overflow = fg_shape2(INT64_MAX / 2, 1);
  cr_assert_eq(fg_tensor_new(&t, FG_F64, &bytes_overflow, &e), FG_E_OVERFLOW);
  fg_shape nine = {.ndim = 9};
  cr_assert_eq(fg_tensor_new(&t, FG_F32, &nine, &e), FG_E_SHAPE);
  cr_assert_null(t);
}

Test(tensor, zero_sized) {
  fg_tensor *t;
  fg_shape s = fg_shape3(0, 5, 7);
  cr_assert_eq(fg_tensor_new(&t, FG_F32, &s, NULL), FG_OK);
  cr_assert_eq(fg_tensor_numel(t), 0);
  fg_tensor_fill(t, 1.0);
  fg_tensor_free(t);
  /* no elements, but the strides of the other axes would overflow: refused, not wrapped */
  fg_err e;
  fg_shape huge = fg_shape3(0, INT64_MAX, 2);
  cr_assert_eq(fg_tensor_new(&t, FG_F32, &huge, &e), FG_E_OVERFLOW, "%s", e.msg);
  fg_shape st = fg_shape3(0, 1LL << 53, 1LL << 53);
  cr_assert_eq(fg_tensor_new(&t, FG_F32, &st, &e), FG_E_OVERFLOW);
  int64_t n;
  cr_assert_eq(fg_shape_numel(&huge, &n, NULL), FG_E_OVERFLOW);
}

Test(shape, broadcast_rules) {
  fg_shape a = fg_shape3(2, 1, 4), b = fg_shape2(3, 1), out;
  cr_assert(fg_shape_broadcast(&a, &b, &out));
  cr_assert_eq(out.ndim, 3);
  cr_assert(out.d[0] == 2 && out.d[1] == 3 && out.d[2] == 4);
  fg_shape c = fg_shape1(5);
  cr_assert_not(fg_shape_broadcast(&a, &c, &out));
  fg_shape z = fg_shape2(0, 1), w = fg_shape1(4);
  cr_assert(fg_shape_broadcast(&z, &w, &out));
  cr_assert(out.d[0] == 0 && out.d[1] == 4);
}

Test(status, names_and_messages_come_from_one_list) {
  cr_assert_str_eq(fg_status_name(FG_E_SHAPE), "FG_E_SHAPE");
  cr_assert_str_eq(fg_status_str(FG_OK), "ok");
  cr_assert_str_eq(fg_status_name((fg_status)999), "FG_UNKNOWN");
  for (int s = 0; s < FG_STATUS_COUNT; s++) cr_assert(fg_status_str((fg_status)s)[0] != '\0');
}

/* A large tensor (a program's arena, a data set) is zero, and once released its pages go back
 * to the system (core/buffer.c): from glibc's malloc a freed block of up to 32 MiB can stay in
 * the heap, mapped and resident, as when a flow's initialisation programs are freed before
 * training.  mincore() fails with ENOMEM on a range no longer mapped.  Under AddressSanitizer
 * every buffer comes from its allocator (whose red zones guard it): only the zeros are checked
 * there. */
Test(tensor, large_buffers_are_zero_and_given_back_when_released) {
  enum { N = 4 << 20 }; /* 16 MiB of float32 */
  void *volatile big = malloc(30 << 20); /* freed, it makes glibc take blocks of up to 30 MiB */
  free(big);                             /* from its heap */
  fg_tensor *t;
  cr_assert_eq(fg_tensor_new(&t, FG_F32, &(fg_shape){.ndim = 1, .d = {N}}, NULL), FG_OK);
  float *x = fg_tensor_data(t);
  for (int64_t i = 0; i < N; i += 1024) {
    cr_assert_eq(x[i], 0.0f);
    x[i] = 1.0f;
  }
  fg_tensor_free(t);
#if !defined(__SANITIZE_ADDRESS__)
  unsigned char resident[4];
  long page = sysconf(_SC_PAGESIZE);
  void *first_page = (void *)((uintptr_t)x / (uintptr_t)page * (uintptr_t)page);
  errno = 0;
  cr_expect_eq(mincore(first_page, 4 * (size_t)page, resident), -1, "still mapped");
  cr_expect_eq(errno, ENOMEM);
#endif
}
