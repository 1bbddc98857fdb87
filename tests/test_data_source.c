/* Data sources named by a string (frontends/data/data_source.h): the toy generators' settings
 * are checked as integers in range before any conversion, and a source with no samples is
 * refused by name; labels from IDX label files (mnist:), CIFAR-10 records, npy labels=, the
 * toys' components and Debian's Fashion-MNIST, each read back from files written here and
 * checked label by label against what was written. */
#include <criterion/criterion.h>
#include <math.h>

#include "frontends/data/data_source.h"
#include "io_helpers.h"

TestSuite(data_source, .init = io_setup, .fini = io_teardown);

static void expect_status(const char *source, fg_status want, const char *needle) {
  fg_data d;
  fg_err e;
  fg_status st = fg_data_open(&d, source, 0, &e);
  cr_expect_eq(st, want, "'%s' gave status %d: %s", source, (int)st, e.msg);
  cr_expect(strstr(e.msg, needle) != NULL, "'%s': expected '%s' in: %s", source, needle, e.msg);
  cr_expect_null(d.train);
}

static void expect_refused(const char *source, const char *needle) {
  expect_status(source, FG_E_FORMAT, needle);
}

Test(data_source, toy_settings_must_be_integers_in_range) {
  expect_refused("moons n=1e300", "n must be an integer from 1 to");
  expect_refused("moons n=0", "n must be an integer from 1 to");
  expect_refused("moons n=2.5", "n must be an integer");
  expect_refused("moons n=nan", "n must be an integer");
  expect_refused("moons test_n=-3", "test_n must be an integer from 1 to");
  expect_refused("moons seed=-1", "seed must be an integer from 0 to");
  expect_refused("moons seed=1e30", "seed must be an integer from 0 to");
  expect_refused("moons noise=nan", "noise");
  expect_refused("moons noise=inf", "noise");
  expect_refused("moons scale=-1", "scale");
  expect_refused("moons n=10 n=20", "'n' given twice");
  fg_data d;
  fg_err e;
  cr_assert_eq(fg_data_open(&d, "moons n=100 test_n=7 seed=3", 0, &e), FG_OK, "%s", e.msg);
  cr_assert_eq(d.train->shape.d[0], 100);
  cr_assert_eq(d.test->shape.d[0], 7);
  fg_data_free(&d);
}

/* An array of no samples has nothing to train on, however wide it claims its samples are (a
 * (0, 4294967296) array used to reach the layers as a 4294967296-channel event). */
Test(data_source, npy_without_samples_is_refused) {
  const char *p = io_path("empty.npy");
  io_write_npy(p, "{'descr': '<f4', 'fortran_order': False, 'shape': (0, 4294967296), }", NULL, 0);
  char source[300];
  snprintf(source, sizeof source, "npy:%s", p);
  expect_refused(source, "no samples");
  io_write_npy(p, "{'descr': '<f4', 'fortran_order': False, 'shape': (0, 2), }", NULL, 0);
  expect_refused(source, "no samples");
  float v[4] = {1, 2, 3, 4};
  io_write_npy(p, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }", v, sizeof v);
  const char *q = io_path("empty_test.npy");
  io_write_npy(q, "{'descr': '<f4', 'fortran_order': False, 'shape': (0, 2), }", NULL, 0);
  snprintf(source, sizeof source, "npy:%s,%s", p, q);
  expect_refused(source, "no samples");
}

/* NaN in the data is refused naming the element (the command exits 3 for it: bad input). */
Test(data_source, non_finite_npy_values_are_bad_input) {
  const char *p = io_path("nan.npy");
  float v[4] = {1, NAN, 3, 4};
  io_write_npy(p, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }", v, sizeof v);
  char source[300];
  snprintf(source, sizeof source, "npy:%s", p);
  expect_status(source, FG_E_NUMERIC, "NaN");
}

static uint8_t buf[1 << 20];

/* IDX images [n, rows, cols] with pixel values (i * 3 + p) % 256, or labels [n] = label(i). */
static void idx_images(const char *name, uint32_t n, uint32_t side) {
  size_t at = 0;
  uint32_t dims[3] = {n, side, side};
  buf[at++] = 0, buf[at++] = 0, buf[at++] = 0x08, buf[at++] = 3;
  for (int d = 0; d < 3; d++)
    for (int b = 3; b >= 0; b--) buf[at++] = (uint8_t)(dims[d] >> (8 * b));
  for (uint32_t i = 0; i < n; i++)
    for (uint32_t p = 0; p < side * side; p++) buf[at++] = (uint8_t)((i * 3 + p) % 256);
  io_write(io_path(name), buf, at);
}

static uint8_t label_of(uint32_t i, int salt) { return (uint8_t)((i * 7 + (uint32_t)salt) % 10); }

static void idx_labels(const char *name, uint32_t n, int salt) {
  size_t at = 0;
  buf[at++] = 0, buf[at++] = 0, buf[at++] = 0x08, buf[at++] = 1;
  for (int b = 3; b >= 0; b--) buf[at++] = (uint8_t)(n >> (8 * b));
  for (uint32_t i = 0; i < n; i++) buf[at++] = label_of(i, salt);
  io_write_gz(io_path(name), buf, at);
}

static void expect_labels(const fg_tensor *labels, int64_t n, int salt) {
  cr_assert_not_null(labels);
  cr_assert(labels->shape.ndim == 1 && labels->shape.d[0] == n, "one label per sample");
  for (int64_t i = 0; i < n; i++)
    cr_assert_eq(fg_tensor_get(labels, i), (double)label_of((uint32_t)i, salt), "label %lld",
                 (long long)i);
}

Test(data_source, mnist_labels_round_trip_from_idx_files) {
  idx_images("train-images-idx3-ubyte", 30, 4);
  idx_images("t10k-images-idx3-ubyte", 12, 4);
  idx_labels("train-labels-idx1-ubyte.gz", 30, 0);
  idx_labels("t10k-labels-idx1-ubyte.gz", 12, 5);
  char source[128];
  snprintf(source, sizeof source, "mnist:%s", io_dir);
  fg_data d;
  fg_err e;
  cr_assert_eq(fg_data_open(&d, source, 0, &e), FG_OK, "%s", e.msg);
  expect_labels(d.train_labels, 30, 0);
  expect_labels(d.test_labels, 12, 5);
  cr_assert_eq(d.classes, 10);
  fg_data_free(&d);
  cr_assert_eq(fg_data_open(&d, source, 7, &e), FG_OK, "%s", e.msg);
  cr_assert_eq(d.train->shape.d[0], 7);
  expect_labels(d.train_labels, 7, 0); /* --limit keeps the labels with their images */
  fg_data_free(&d);
  /* label files are optional for mnist:, and a label count that does not match is refused */
  remove(io_path("train-labels-idx1-ubyte.gz"));
  cr_assert_eq(fg_data_open(&d, source, 0, &e), FG_OK, "%s", e.msg);
  cr_assert_null(d.train_labels);
  cr_assert_null(d.test_labels);
  cr_assert_eq(d.classes, 0);
  fg_data_free(&d);
  idx_labels("train-labels-idx1-ubyte.gz", 29, 0);
  cr_assert_eq(fg_data_open(&d, source, 0, &e), FG_E_FORMAT);
  cr_assert(strstr(e.msg, "one per sample"), "%s", e.msg);
  cr_assert_null(d.train);
}

Test(data_source, cifar_labels_come_with_the_records) {
  enum { REC = 3073 };
  for (int f = 0; f < 6; f++) { /* 5 training batches of 3 records, a test batch of 4 */
    int n = f < 5 ? 3 : 4;
    for (int r = 0; r < n; r++) {
      int global = f < 5 ? f * 3 + r : r;
      buf[(size_t)r * REC] = label_of((uint32_t)global, f < 5 ? 0 : 5);
      memset(buf + (size_t)r * REC + 1, r, REC - 1);
    }
    char name[32];
    if (f < 5) snprintf(name, sizeof name, "data_batch_%d.bin", f + 1);
    else snprintf(name, sizeof name, "test_batch.bin");
    io_write(io_path(name), buf, (size_t)n * REC);
  }
  char source[128];
  snprintf(source, sizeof source, "cifar10:%s", io_dir);
  fg_data d;
  fg_err e;
  cr_assert_eq(fg_data_open(&d, source, 0, &e), FG_OK, "%s", e.msg);
  expect_labels(d.train_labels, 15, 0);
  expect_labels(d.test_labels, 4, 5);
  cr_assert_str_eq(fg_data_class_name(source, 3), "cat");
  fg_data_free(&d);
}

/* A float32 .npy file of `n` values in `shape` (numpy's version-1 layout). */
static void npy_write(const char *name, const char *shape, const float *v, size_t n) {
  char dict[128];
  snprintf(dict, sizeof dict, "{'descr': '<f4', 'fortran_order': False, 'shape': %s, }", shape);
  size_t dlen = strlen(dict), hlen = (10 + dlen + 1 + 63) / 64 * 64 - 10;
  memcpy(buf, "\x93NUMPY\x01\x00", 8);
  buf[8] = (uint8_t)hlen, buf[9] = (uint8_t)(hlen >> 8);
  memcpy(buf + 10, dict, dlen);
  memset(buf + 10 + dlen, ' ', hlen - dlen - 1);
  buf[10 + hlen - 1] = '\n';
  memcpy(buf + 10 + hlen, v, n * sizeof *v);
  io_write(io_path(name), buf, 10 + hlen + n * sizeof *v);
}

Test(data_source, npy_labels_are_read_from_their_own_files) {
  float x[12], lab[6], tlab[2];
  for (int i = 0; i < 12; i++) x[i] = (float)i * 0.5f;
  for (int i = 0; i < 6; i++) lab[i] = (float)label_of((uint32_t)i, 0);
  for (int i = 0; i < 2; i++) tlab[i] = (float)label_of((uint32_t)i, 5);
  npy_write("x.npy", "(6, 2)", x, 12);
  npy_write("t.npy", "(2, 2)", x, 4);
  npy_write("y.npy", "(6,)", lab, 6);
  npy_write("ty.npy", "(2,)", tlab, 2);
  char source[512];
  snprintf(source, sizeof source, "npy:%s,%s labels=%s,%s", io_path("x.npy"), io_path("t.npy"),
           io_path("y.npy"), io_path("ty.npy"));
  fg_data d;
  fg_err e;
  cr_assert_eq(fg_data_open(&d, source, 0, &e), FG_OK, "%s", e.msg);
  expect_labels(d.train_labels, 6, 0);
  expect_labels(d.test_labels, 2, 5);
  cr_assert_eq(d.train->shape.d[0], 6);
  fg_data_free(&d);
  snprintf(source, sizeof source, "npy:%s labels=%s", io_path("x.npy"), io_path("x.npy"));
  cr_assert_eq(fg_data_open(&d, source, 0, &e), FG_E_FORMAT, "labels [6, 2] are refused");
  lab[2] = 1.5f;
  npy_write("y.npy", "(6,)", lab, 6);
  snprintf(source, sizeof source, "npy:%s labels=%s", io_path("x.npy"), io_path("y.npy"));
  cr_assert_eq(fg_data_open(&d, source, 0, &e), FG_E_FORMAT);
  cr_assert(strstr(e.msg, "label 2 is 1.5"), "%s", e.msg);
}

/* The toys' labels are the components: the upper moon is label 0, the rings by radius. */
Test(data_source, toy_labels_name_the_component) {
  fg_data d;
  fg_err e;
  cr_assert_eq(fg_data_open(&d, "moons n=2000 test_n=100 noise=0.05", 0, &e), FG_OK, "%s", e.msg);
  cr_assert_eq(d.classes, 2);
  double y[2] = {0, 0};
  int64_t count[2] = {0, 0};
  for (int64_t i = 0; i < 2000; i++) {
    int k = (int)fg_tensor_get(d.train_labels, i);
    y[k] += fg_tensor_get(d.train, 2 * i + 1), count[k]++;
  }
  cr_assert(count[0] == 1000 && count[1] == 1000, "%lld / %lld", (long long)count[0],
            (long long)count[1]);
  cr_assert_gt(y[0] / 1000 - y[1] / 1000, 1.0, "the upper moon is label 0");
  cr_assert_str_eq(fg_data_class_name("moons", 1), "lower moon");
  fg_data_free(&d);
  cr_assert_eq(fg_data_open(&d, "rings n=400 noise=0 scale=2", 0, &e), FG_OK, "%s", e.msg);
  for (int64_t i = 0; i < 400; i++) {
    double r = hypot(fg_tensor_get(d.train, 2 * i), fg_tensor_get(d.train, 2 * i + 1));
    cr_assert_float_eq(r, 2.0 * (1.0 - 0.25 * fg_tensor_get(d.train_labels, i)), 1e-5,
                       "ring of point %lld", (long long)i);
  }
  fg_data_free(&d);
}

Test(data_source, fashion_mnist_has_its_labels) {
  fg_data d;
  fg_err e;
  fg_status st = fg_data_open(&d, "fashion-mnist", 100, &e);
  if (st == FG_E_NOTFOUND) io_skip("Fashion-MNIST is not installed: %s", e.msg);
  cr_assert_eq(st, FG_OK, "%s", e.msg);
  cr_assert_eq(d.train_labels->shape.d[0], 100);
  cr_assert_eq(d.test_labels->shape.d[0], 10000);
  cr_assert_eq(d.classes, 10);
  cr_assert_str_eq(fg_data_class_name("fashion-mnist", 1), "Trouser");
  fg_data_free(&d);
}
