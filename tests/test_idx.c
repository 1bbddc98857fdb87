/* IDX (MNIST format) loading: plain and gzip files, every malformed variant the loader must
 * refuse, and the installed Fashion-MNIST set. */
#include "core/formats/idx.h"
#include "frontends/data/fashion_mnist.h"
#include "io_helpers.h"

TestSuite(idx, .init = io_setup, .fini = io_teardown);

/* An IDX file: magic (0, 0, dtype, ndim), big-endian dims, then `payload` bytes i % 251. */
static size_t idx_make(uint8_t *buf, uint8_t dtype, uint8_t ndim, const uint32_t *dims,
                       size_t payload) {
  size_t at = 0;
  buf[at++] = 0, buf[at++] = 0, buf[at++] = dtype, buf[at++] = ndim;
  for (int i = 0; i < ndim; i++)
    for (int b = 3; b >= 0; b--) buf[at++] = (uint8_t)(dims[i] >> (8 * b));
  for (size_t i = 0; i < payload; i++) buf[at++] = (uint8_t)(i % 251);
  return at;
}

static uint8_t buf[1 << 16];

Test(idx, images_plain) {
  uint32_t dims[3] = {3, 2, 4};
  size_t len = idx_make(buf, 0x08, 3, dims, 24);
  io_write(io_path("img"), buf, len);
  fg_tensor *t;
  fg_err e;
  cr_assert_eq(fg_idx_load(&t, io_path("img"), &e), FG_OK, "%s", e.msg);
  cr_assert_eq(t->dtype, FG_F32);
  cr_assert_eq(t->shape.ndim, 4);
  cr_assert(t->shape.d[0] == 3 && t->shape.d[1] == 1 && t->shape.d[2] == 2 && t->shape.d[3] == 4);
  for (int i = 0; i < 24; i++) cr_assert_eq(fg_tensor_get(t, i), (double)(i % 251));
  fg_tensor_free(t);
}

Test(idx, labels_gzip_equal_plain) {
  uint32_t dims[1] = {300};
  size_t len = idx_make(buf, 0x08, 1, dims, 300);
  io_write(io_path("lab"), buf, len);
  io_write_gz(io_path("lab.gz"), buf, len);
  fg_tensor *a, *b;
  fg_err e;
  cr_assert_eq(fg_idx_load(&a, io_path("lab"), &e), FG_OK, "%s", e.msg);
  cr_assert_eq(fg_idx_load(&b, io_path("lab.gz"), &e), FG_OK, "%s", e.msg);
  cr_assert(a->shape.ndim == 1 && a->shape.d[0] == 300 && b->shape.d[0] == 300);
  cr_assert_eq(memcmp(fg_tensor_data(a), fg_tensor_data(b), 300 * sizeof(float)), 0);
  cr_assert_eq(fg_tensor_get(b, 299), (double)(299 % 251));
  fg_tensor_free(a);
  fg_tensor_free(b);
}

/* Writes the bytes, loads, and checks the error names the file and the problem. */
static void idx_expect_error(const uint8_t *data, size_t len, bool gz, const char *needle) {
  const char *p = io_path(gz ? "bad.gz" : "bad");
  if (gz)
    io_write_gz(p, data, len);
  else
    io_write(p, data, len);
  fg_tensor *t = (fg_tensor *)1;
  fg_err e;
  fg_status st = fg_idx_load(&t, p, &e);
  cr_assert_eq(t, NULL, "no tensor on failure");
  io_assert_error(st, FG_E_FORMAT, e, p, needle);
}

Test(idx, wrong_magic) {
  uint8_t zip[] = {'P', 'K', 3, 4, 0, 0, 0, 0};
  idx_expect_error(zip, sizeof zip, false, "not an IDX file: magic 0x504b0304");
}

Test(idx, unsupported_dtype_and_dims) {
  uint32_t dims[3] = {1, 1, 1};
  size_t len = idx_make(buf, 0x0D, 3, dims, 4);
  idx_expect_error(buf, len, false, "0x0d (float32) is not supported");
  len = idx_make(buf, 0x08, 2, dims, 1);
  idx_expect_error(buf, len, false, "declares 2 dimensions");
}

Test(idx, truncated_header) {
  uint8_t two[] = {0, 0};
  idx_expect_error(two, sizeof two, false, "truncated: the file ends inside the 4-byte magic");
  uint32_t dims[3] = {10, 28, 28};
  size_t len = idx_make(buf, 0x08, 3, dims, 0);
  idx_expect_error(buf, len - 5, false, "ends inside the dimension sizes");
  idx_expect_error(buf, 0, true, "ends inside the 4-byte magic");
}

Test(idx, truncated_data) {
  uint32_t dims[3] = {10, 28, 28};
  size_t len = idx_make(buf, 0x08, 3, dims, 100);
  idx_expect_error(buf, len, false, "declares 10 images (7840 data bytes) but the file holds 100");
  idx_expect_error(buf, len, true, "declares 10 images (7840 data bytes) but the file holds 100");
}

Test(idx, trailing_garbage) {
  uint32_t dims[1] = {5};
  size_t len = idx_make(buf, 0x08, 1, dims, 6);
  idx_expect_error(buf, len, false, "trailing data after the 5 labels");
  idx_expect_error(buf, len, true, "trailing data after the 5 labels");
}

Test(idx, zero_dimension) {
  uint32_t dims[3] = {4, 0, 28};
  size_t len = idx_make(buf, 0x08, 3, dims, 0);
  idx_expect_error(buf, len, false, "dimension 1 is declared as 0");
}

/* Sizes that overflow are refused from the header; sizes that are merely absurd fail when the
 * data runs out, without the loader ever allocating what the header claims (AddressSanitizer
 * aborts on an allocation of petabytes, so passing proves it). */
Test(idx, huge_declared_sizes) {
  uint32_t over[3] = {0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu};
  size_t len = idx_make(buf, 0x08, 3, over, 16);
  idx_expect_error(buf, len, false, "declared sizes overflow");
  uint32_t huge[3] = {0xFFFFFFFFu, 1000, 1000};
  len = idx_make(buf, 0x08, 3, huge, 5000);
  idx_expect_error(buf, len, false, "declares 4294967295 images");
  idx_expect_error(buf, len, true, "but the file holds 5000 data bytes");
  uint32_t labels[1] = {0xFFFFFFFFu};
  len = idx_make(buf, 0x08, 1, labels, 3);
  idx_expect_error(buf, len, true, "declares 4294967295 labels");
}

Test(idx, gzip_corrupted) {
  uint32_t dims[3] = {20, 28, 28};
  size_t len = idx_make(buf, 0x08, 3, dims, 20 * 28 * 28);
  io_write_gz(io_path("ok.gz"), buf, len);
  size_t glen;
  uint8_t *gz = io_read(io_path("ok.gz"), &glen);
  /* a flipped bit in the stored CRC-32 (trailer bytes -8..-5): the data inflates, the check fails
   */
  gz[glen - 6] ^= 0x10;
  io_write(io_path("crc.gz"), gz, glen);
  fg_tensor *t;
  fg_err e;
  io_assert_error(fg_idx_load(&t, io_path("crc.gz"), &e), FG_E_FORMAT, e, io_path("crc.gz"),
                  "corrupt gzip data");
  gz[glen - 6] ^= 0x10;
  /* garbage in the middle of the deflate stream */
  memset(gz + glen / 2, 0xFF, 16);
  io_write(io_path("mid.gz"), gz, glen);
  fg_status st = fg_idx_load(&t, io_path("mid.gz"), &e);
  io_assert_error(st, FG_E_FORMAT, e, io_path("mid.gz"), "gzip");
  free(gz);
}

Test(idx, gzip_truncated) {
  uint32_t dims[3] = {20, 28, 28};
  size_t len = idx_make(buf, 0x08, 3, dims, 20 * 28 * 28);
  io_write_gz(io_path("ok.gz"), buf, len);
  size_t glen;
  uint8_t *gz = io_read(io_path("ok.gz"), &glen);
  io_write(io_path("cut.gz"), gz, glen - 4); /* only the trailer's length field is missing */
  fg_tensor *t;
  fg_err e;
  io_assert_error(fg_idx_load(&t, io_path("cut.gz"), &e), FG_E_FORMAT, e, io_path("cut.gz"),
                  "gzip data ends early");
  io_write(io_path("half.gz"), gz, glen / 2);
  io_assert_error(fg_idx_load(&t, io_path("half.gz"), &e), FG_E_FORMAT, e, io_path("half.gz"),
                  "gzip data ends early");
  free(gz);
}

Test(idx, missing_file_and_directory) {
  fg_tensor *t;
  fg_err e;
  io_assert_error(fg_idx_load(&t, io_path("nope"), &e), FG_E_IO, e, io_path("nope"), "cannot open");
  io_assert_error(fg_idx_load(&t, io_dir, &e), FG_E_IO, e, io_dir, "is a directory");
}

/* FG_DATA_DIR points the Fashion-MNIST loader at a directory of small IDX files. */
static void fmnist_write(const char *name, uint8_t ndim, const uint32_t *dims, size_t payload) {
  size_t len = idx_make(buf, 0x08, ndim, dims, payload);
  for (size_t i = 0; ndim == 1 && i < payload; i++) buf[len - payload + i] = (uint8_t)(i % 10);
  io_write_gz(io_path(name), buf, len);
}

Test(idx, fashion_mnist_dir_override) {
  setenv("FG_DATA_DIR", io_dir, 1);
  cr_assert_str_eq(fg_dataset_fashion_mnist_dir(), io_dir);
  uint32_t im[3] = {7, 28, 28}, lb[1] = {7};
  fmnist_write("t10k-images-idx3-ubyte.gz", 3, im, 7 * 784);
  fmnist_write("t10k-labels-idx1-ubyte.gz", 1, lb, 7);
  fg_tensor *x, *y;
  fg_err e;
  cr_assert_eq(fg_dataset_fashion_mnist_load(&x, &y, "test", &e), FG_OK, "%s", e.msg);
  cr_assert(x->shape.d[0] == 7 && x->shape.d[2] == 28 && y->shape.d[0] == 7);
  fg_tensor_free(x);
  fg_tensor_free(y);
  /* counts that disagree, a missing split, an unknown split */
  uint32_t lb8[1] = {8};
  fmnist_write("t10k-labels-idx1-ubyte.gz", 1, lb8, 8);
  cr_assert_eq(fg_dataset_fashion_mnist_load(&x, &y, "test", &e), FG_E_FORMAT);
  cr_assert(strstr(e.msg, "7 images but 8 labels"), "%s", e.msg);
  cr_assert_eq(fg_dataset_fashion_mnist_load(&x, NULL, "train", &e), FG_E_NOTFOUND);
  cr_assert(strstr(e.msg, "train-images-idx3-ubyte.gz: not found"), "%s", e.msg);
  cr_assert_eq(fg_dataset_fashion_mnist_load(&x, &y, "validation", &e), FG_E_MISUSE);
  cr_assert(strstr(e.msg, "known: train, test"), "%s", e.msg);
  unsetenv("FG_DATA_DIR");
  cr_assert_str_eq(fg_dataset_fashion_mnist_dir(), FG_FASHION_MNIST_DEFAULT_DIR);
}

Test(idx, fashion_mnist_installed_test_split) {
  unsetenv("FG_DATA_DIR");
  if (access(FG_FASHION_MNIST_DEFAULT_DIR "/t10k-images-idx3-ubyte.gz", R_OK) != 0)
    io_skip("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)");
  fg_tensor *x, *y;
  fg_err e;
  cr_assert_eq(fg_dataset_fashion_mnist_load(&x, &y, "test", &e), FG_OK, "%s", e.msg);
  cr_assert(x->shape.ndim == 4 && x->shape.d[0] == 10000 && x->shape.d[1] == 1 &&
            x->shape.d[2] == 28 && x->shape.d[3] == 28);
  cr_assert(y->shape.ndim == 1 && y->shape.d[0] == 10000);
  const float *px = fg_tensor_data(x);
  float lo = 255, hi = 0;
  for (int64_t i = 0; i < fg_tensor_numel(x); i++) {
    cr_assert(px[i] >= 0 && px[i] <= 255 && px[i] == (float)(int)px[i]);
    lo = px[i] < lo ? px[i] : lo;
    hi = px[i] > hi ? px[i] : hi;
  }
  cr_assert(lo == 0 && hi == 255, "the full byte range is used");
  int count[10] = {0};
  for (int64_t i = 0; i < 10000; i++) count[(int)fg_tensor_get(y, i)]++;
  for (int c = 0; c < 10; c++) cr_assert_eq(count[c], 1000, "the test split is balanced");
  fg_tensor_free(x);
  fg_tensor_free(y);
}
