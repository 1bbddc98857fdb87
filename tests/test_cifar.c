/* CIFAR-10 binary batches: layout of the records into [N, 3, 32, 32], and refusal of files
 * that are not whole records of CIFAR-10 classes. */
#include "core/formats/cifar.h"
#include "io_helpers.h"

TestSuite(cifar, .init = io_setup, .fini = io_teardown);

#define REC 3073

/* n records: label r % 10, pixel p of record r = (r * 7 + p) % 256. */
static uint8_t *cifar_make(int n) {
  uint8_t *b = malloc((size_t)n * REC + 16);
  for (int r = 0; r < n; r++) {
    b[(size_t)r * REC] = (uint8_t)(r % 10);
    for (int p = 0; p < 3072; p++) b[(size_t)r * REC + 1 + p] = (uint8_t)((r * 7 + p) % 256);
  }
  return b;
}

static void cifar_check(const fg_tensor *x, const fg_tensor *y, int n) {
  cr_assert(x->shape.ndim == 4 && x->shape.d[0] == n && x->shape.d[1] == 3 && x->shape.d[2] == 32 &&
            x->shape.d[3] == 32);
  cr_assert(y->shape.ndim == 1 && y->shape.d[0] == n);
  for (int r = 0; r < n; r++) {
    cr_assert_eq(fg_tensor_get(y, r), (double)(r % 10));
    /* channel 1 (green), row 2, column 5 is byte 1024 + 2 * 32 + 5 of the pixels */
    int p = 1024 + 2 * 32 + 5;
    cr_assert_eq(fg_tensor_get(x, (int64_t)r * 3072 + p), (double)((r * 7 + p) % 256));
  }
}

Test(cifar, plain_and_gzip) {
  uint8_t *b = cifar_make(5);
  io_write(io_path("data_batch_1.bin"), b, 5 * REC);
  io_write_gz(io_path("data_batch_1.bin.gz"), b, 5 * REC);
  fg_tensor *x, *y;
  fg_err e;
  cr_assert_eq(fg_cifar_load(&x, &y, io_path("data_batch_1.bin"), &e), FG_OK, "%s", e.msg);
  cifar_check(x, y, 5);
  fg_tensor_free(x);
  fg_tensor_free(y);
  cr_assert_eq(fg_cifar_load(&x, &y, io_path("data_batch_1.bin.gz"), &e), FG_OK, "%s", e.msg);
  cifar_check(x, y, 5);
  fg_tensor_free(x);
  fg_tensor_free(y);
  cr_assert_eq(fg_cifar_load(NULL, &y, io_path("data_batch_1.bin"), &e), FG_OK, "labels only");
  fg_tensor_free(y);
  free(b);
}

static void cifar_expect(const uint8_t *b, size_t len, const char *needle) {
  io_write(io_path("bad.bin"), b, len);
  fg_tensor *x = (fg_tensor *)1, *y = (fg_tensor *)1;
  fg_err e;
  fg_status st = fg_cifar_load(&x, &y, io_path("bad.bin"), &e);
  cr_assert(x == NULL && y == NULL, "no tensors on failure");
  io_assert_error(st, FG_E_FORMAT, e, io_path("bad.bin"), needle);
}

Test(cifar, truncated_and_extra_bytes) {
  uint8_t *b = cifar_make(3);
  cifar_expect(b, 3 * REC - 1,
               "is not a whole number of 3073-byte CIFAR-10 records (2 records "
               "and 3072 bytes left over");
  cifar_expect(b, 2 * REC + 5, "(2 records and 5 bytes left over");
  cifar_expect(b, 0, "empty file");
  free(b);
}

Test(cifar, bad_label_and_cifar100) {
  uint8_t *b = cifar_make(3);
  b[2 * REC] = 200;
  cifar_expect(b, 3 * REC, "record 2 has label 200; CIFAR-10 labels are 0..9");
  /* CIFAR-100 records are 3074 bytes (coarse and fine label): 3073 records of them are a whole
   * number of CIFAR-10 records, so the labels must catch it */
  size_t n100 = 3073;
  uint8_t *c = calloc(n100, 3074);
  for (size_t r = 0; r < n100; r++) c[r * 3074] = 15, c[r * 3074 + 1] = 42;
  cifar_expect(c, n100 * 3074, "has label");
  free(c);
  free(b);
}

Test(cifar, missing_file) {
  fg_tensor *x, *y;
  fg_err e;
  io_assert_error(fg_cifar_load(&x, &y, io_path("none.bin"), &e), FG_E_IO, e, io_path("none.bin"),
                  "cannot open");
}
