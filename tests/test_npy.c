/* NumPy .npy loading: hand-built files of each format version in numpy's exact layout, every
 * header error, non-finite values, and (when python3-numpy is installed) files numpy wrote. */
#include <math.h>

#include "core/formats/npy.h"
#include "io_helpers.h"

TestSuite(npy, .init = io_setup, .fini = io_teardown);

static uint8_t buf[1 << 16];

/* A .npy file as numpy writes it: magic, version, header length, the dict padded with spaces
 * to make the preamble plus header a multiple of 64, a newline, then `len` data bytes. */
static size_t npy_make(int version, const char *dict, const void *data, size_t len) {
  size_t pre = version == 1 ? 10 : 12, dlen = strlen(dict);
  size_t hlen = (pre + dlen + 1 + 63) / 64 * 64 - pre;
  memcpy(buf, "\x93NUMPY", 6);
  buf[6] = (uint8_t)version, buf[7] = 0;
  for (size_t i = 0; i < pre - 8; i++) buf[8 + i] = (uint8_t)(hlen >> (8 * i));
  memcpy(buf + pre, dict, dlen);
  memset(buf + pre + dlen, ' ', hlen - dlen - 1);
  buf[pre + hlen - 1] = '\n';
  memcpy(buf + pre + hlen, data, len);
  return pre + hlen + len;
}

static fg_tensor *npy_load_ok(size_t len) {
  io_write(io_path("a.npy"), buf, len);
  fg_tensor *t;
  fg_err e;
  cr_assert_eq(fg_npy_load(&t, io_path("a.npy"), &e), FG_OK, "%s", e.msg);
  return t;
}

static void npy_expect(size_t len, fg_status want, const char *needle) {
  io_write(io_path("bad.npy"), buf, len);
  fg_tensor *t = (fg_tensor *)1;
  fg_err e;
  fg_status st = fg_npy_load(&t, io_path("bad.npy"), &e);
  cr_assert_eq(t, NULL);
  io_assert_error(st, want, e, io_path("bad.npy"), needle);
}

Test(npy, float32_every_version) {
  float v[6] = {1.5f, -2, 0, 3.25f, 1e-30f, -7};
  for (int version = 1; version <= 3; version++) {
    size_t len = npy_make(version, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", v,
                          sizeof v);
    cr_assert_eq(len % 64, sizeof v, "numpy's 64-byte alignment");
    fg_tensor *t = npy_load_ok(len);
    cr_assert(t->dtype == FG_F32 && t->shape.ndim == 2 && t->shape.d[0] == 2 && t->shape.d[1] == 3);
    cr_assert_eq(memcmp(fg_tensor_data(t), v, sizeof v), 0, "bit-exact values");
    fg_tensor_free(t);
  }
}

Test(npy, uint8_shapes) {
  uint8_t v[24];
  for (int i = 0; i < 24; i++) v[i] = (uint8_t)(i * 11);
  size_t len =
      npy_make(1, "{'descr': '|u1', 'fortran_order': False, 'shape': (2, 1, 3, 4), }", v, 24);
  fg_tensor *t = npy_load_ok(len);
  cr_assert(t->shape.ndim == 4 && t->shape.d[3] == 4);
  cr_assert_eq(fg_tensor_get(t, 23), 253.0);
  fg_tensor_free(t);
  len = npy_make(1, "{'descr': '|u1', 'fortran_order': False, 'shape': (24,), }", v, 24);
  t = npy_load_ok(len);
  cr_assert(t->shape.ndim == 1 && t->shape.d[0] == 24);
  fg_tensor_free(t);
  len = npy_make(1, "{'descr': '|u1', 'fortran_order': False, 'shape': (), }", v, 1);
  t = npy_load_ok(len);
  cr_assert(t->shape.ndim == 0 && fg_tensor_get(t, 0) == 0.0);
  fg_tensor_free(t);
  /* key order is free, double quotes and Python 2's long suffix occur in old files */
  len = npy_make(1, "{\"shape\": (3L, 8L), \"fortran_order\": False, \"descr\": \"|u1\"}", v, 24);
  t = npy_load_ok(len);
  cr_assert(t->shape.d[0] == 3 && t->shape.d[1] == 8);
  fg_tensor_free(t);
  len = npy_make(1, "{'descr': '|u1', 'fortran_order': False, 'shape': (0, 5), }", v, 0);
  t = npy_load_ok(len);
  cr_assert_eq(fg_tensor_numel(t), 0);
  fg_tensor_free(t);
}

Test(npy, rejected_dtypes_and_orders) {
  float v[2] = {1, 2};
  const char *f = "{'descr': '<f4', 'fortran_order': True, 'shape': (2,), }";
  npy_expect(npy_make(1, f, v, 8), FG_E_FORMAT, "fortran_order is True");
  f = "{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }";
  npy_expect(npy_make(1, f, v, 8), FG_E_FORMAT, "big-endian float32 ('>f4') is not supported");
  f = "{'descr': '<f8', 'fortran_order': False, 'shape': (1,), }";
  npy_expect(npy_make(1, f, v, 8), FG_E_FORMAT, "dtype '<f8' is not supported");
  f = "{'descr': '<i8', 'fortran_order': False, 'shape': (1,), }";
  npy_expect(npy_make(1, f, v, 8), FG_E_FORMAT, "dtype '<i8' is not supported");
  f = "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,), }";
  npy_expect(npy_make(1, f, v, 8), FG_E_FORMAT, "structured dtype");
}

Test(npy, malformed_headers) {
  float v[2] = {1, 2};
  npy_expect(npy_make(1, "{'descr': '<f4', 'shape': (2,), }", v, 8), FG_E_FORMAT,
             "header lacks 'fortran_order'");
  npy_expect(npy_make(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': 1}", v, 8),
             FG_E_FORMAT, "unexpected header key 'x'");
  npy_expect(
      npy_make(1, "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2,)}", v, 8),
      FG_E_FORMAT, "header key 'descr' appears twice");
  npy_expect(npy_make(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2), }", v, 8),
             FG_E_FORMAT, "shape is an int, not a tuple");
  npy_expect(npy_make(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (-2,), }", v, 8),
             FG_E_FORMAT, "expected a non-negative integer");
  npy_expect(npy_make(1, "{'descr': '<f4', 'fortran_order': maybe, 'shape': (2,), }", v, 8),
             FG_E_FORMAT, "expected True or False");
  npy_expect(npy_make(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,) ", v, 8),
             FG_E_FORMAT, "malformed .npy header at character");
  npy_expect(
      npy_make(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1,1,1)}", v, 4),
      FG_E_FORMAT, "more than 8 dimensions");
}

Test(npy, wrong_magic_version_and_truncation) {
  float v[4] = {1, 2, 3, 4};
  const char *d = "{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }";
  size_t len = npy_make(1, d, v, sizeof v);
  buf[1] = 'X';
  npy_expect(len, FG_E_FORMAT, "not a .npy file");
  len = npy_make(4, d, v, sizeof v);
  npy_expect(len, FG_E_FORMAT, "format version 4.0 is not supported");
  len = npy_make(1, d, v, sizeof v);
  npy_expect(len - 1, FG_E_FORMAT, "declares 16 data bytes but the file holds 15");
  npy_expect(40, FG_E_FORMAT, "ends inside the header");
  npy_expect(9, FG_E_FORMAT, "ends inside the header length");
  npy_expect(3, FG_E_FORMAT, "not a .npy file");
  buf[len] = 0;
  npy_expect(len + 1, FG_E_FORMAT, "trailing data after the 16 data bytes");
}

Test(npy, huge_declared_sizes) {
  float v[1] = {1};
  npy_expect(npy_make(1,
                      "{'descr': '<f4', 'fortran_order': False, "
                      "'shape': (4294967296, 4294967296, 4294967296), }",
                      v, 4),
             FG_E_FORMAT, "declared shape overflows");
  /* 4e15 bytes declared, 4 present: fails on the data, allocating nothing of that size */
  npy_expect(
      npy_make(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1000000, 1000000000), }", v,
               4),
      FG_E_FORMAT, "declares 4000000000000000 data bytes but the file holds 4");
  /* no elements, but strides that overflow: refused before any use of the shape */
  npy_expect(npy_make(1, "{'descr': '<f4', 'fortran_order': False, "
                         "'shape': (0, 9223372036854775807, 2), }", v, 0),
             FG_E_FORMAT, "declared shape overflows");
  /* a header length past the limit is refused before it is read */
  size_t len = npy_make(2, "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }", v, 4);
  buf[8] = 0xFF, buf[9] = 0xFF, buf[10] = 0xFF, buf[11] = 0x7F;
  npy_expect(len, FG_E_FORMAT, "header length 2147483647 exceeds");
}

Test(npy, non_finite_values_are_rejected_with_their_index) {
  float v[6] = {0, 1, 2, 3, 4, 5};
  const char *d = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
  v[4] = NAN;
  v[5] = INFINITY;
  npy_expect(npy_make(1, d, v, sizeof v), FG_E_NUMERIC, "element 4 (index [1, 1]) is NaN");
  v[4] = -INFINITY;
  npy_expect(npy_make(1, d, v, sizeof v), FG_E_NUMERIC, "element 4 (index [1, 1]) is -inf");
}

Test(npy, gzip_compressed_npy) {
  float v[3] = {1, 2, 3};
  size_t len = npy_make(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", v, 12);
  io_write_gz(io_path("a.npy.gz"), buf, len);
  fg_tensor *t;
  fg_err e;
  cr_assert_eq(fg_npy_load(&t, io_path("a.npy.gz"), &e), FG_OK, "%s", e.msg);
  cr_assert_eq(fg_tensor_get(t, 2), 3.0);
  fg_tensor_free(t);
}

/* Files written by numpy itself, when python3-numpy is installed. */
Test(npy, files_numpy_wrote) {
  if (system("/usr/bin/python3 -c 'import numpy' 2>/dev/null") != 0)
    io_skip("python3-numpy is not installed");
  char cmd[1024];
  snprintf(
      cmd, sizeof cmd,
      "cd %s && /usr/bin/python3 -c \"import numpy as np\n"
      "np.save('f.npy', np.arange(24, dtype=np.float32).reshape(2, 3, 4) / 8)\n"
      "np.save('u.npy', (np.arange(10, dtype=np.uint8) * 25).reshape(10, 1))\n"
      "np.save('big.npy', np.zeros((2, 2), dtype='>f4'))\n"
      "np.save('fo.npy', np.asfortranarray(np.ones((2, 3), dtype=np.float32)))\n"
      "np.lib.format.write_array(open('v2.npy', 'wb'), np.ones(3, np.float32), version=(2, 0))\n"
      "np.lib.format.write_array(open('v3.npy', 'wb'), np.ones(3, np.float32), version=(3, 0))\"",
      io_dir);
  cr_assert_eq(system(cmd), 0, "numpy wrote the files");
  fg_tensor *t;
  fg_err e;
  cr_assert_eq(fg_npy_load(&t, io_path("f.npy"), &e), FG_OK, "%s", e.msg);
  cr_assert(t->shape.ndim == 3 && t->shape.d[2] == 4);
  for (int i = 0; i < 24; i++) cr_assert_eq(fg_tensor_get(t, i), i / 8.0);
  fg_tensor_free(t);
  cr_assert_eq(fg_npy_load(&t, io_path("u.npy"), &e), FG_OK, "%s", e.msg);
  cr_assert(t->shape.ndim == 2 && t->shape.d[0] == 10 && fg_tensor_get(t, 9) == 225.0);
  fg_tensor_free(t);
  cr_assert_eq(fg_npy_load(&t, io_path("v2.npy"), &e), FG_OK, "%s", e.msg);
  fg_tensor_free(t);
  cr_assert_eq(fg_npy_load(&t, io_path("v3.npy"), &e), FG_OK, "%s", e.msg);
  fg_tensor_free(t);
  io_assert_error(fg_npy_load(&t, io_path("big.npy"), &e), FG_E_FORMAT, e, io_path("big.npy"),
                  "big-endian");
  io_assert_error(fg_npy_load(&t, io_path("fo.npy"), &e), FG_E_FORMAT, e, io_path("fo.npy"),
                  "fortran_order is True");
}
