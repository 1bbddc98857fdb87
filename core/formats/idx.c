/* IDX files (the MNIST format): a 4-byte magic (0, 0, dtype, ndim), ndim big-endian uint32
 * dimensions, then the elements row-major.  Only unsigned bytes with 1 dim (labels) or 3 dims
 * (images) are data sets flowgrad trains on; every other combination is refused by name. */
#include <stdio.h>
#include <stdlib.h>

#include "core/formats/idx.h"
#include "core/formats/gzip.h"
#include "core/size.h"

#define IDX_UBYTE 0x08

static const char *idx_dtype_name(uint8_t code) {
  switch (code) {
    case 0x08:
      return "unsigned byte";
    case 0x09:
      return "signed byte";
    case 0x0B:
      return "int16";
    case 0x0C:
      return "int32";
    case 0x0D:
      return "float32";
    case 0x0E:
      return "float64";
    default:
      return "unknown";
  }
}

static uint32_t be32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static fg_status idx_check_magic(const char *path, const uint8_t m[4], fg_err *e) {
  if (m[0] != 0 || m[1] != 0)
    return fg_err_set(e, FG_E_FORMAT,
                      "%s: not an IDX file: magic 0x%08x (expected 0x00000801 for labels or "
                      "0x00000803 for images)",
                      path, (unsigned)be32(m));
  if (m[3] != 1 && m[3] != 3)
    return fg_err_set(e, FG_E_FORMAT,
                      "%s: IDX magic 0x%08x declares %u dimensions; only 1 (labels, 0x00000801) "
                      "or 3 (images, 0x00000803) are supported",
                      path, (unsigned)be32(m), m[3]);
  if (m[2] != IDX_UBYTE)
    return fg_err_set(e, FG_E_FORMAT,
                      "%s: IDX element type 0x%02x (%s) is not supported; only 0x08 (unsigned "
                      "byte) image and label files are",
                      path, m[2], idx_dtype_name(m[2]));
  return FG_OK;
}

/* Reads the dimensions and their product (bytes of data), refusing zeros and overflow. */
static fg_status idx_read_dims(fg_gzin *in, int ndim, uint32_t *dims, uint64_t *total, fg_err *e) {
  uint8_t raw[12];
  fg_status st = fg_gzin_read_exact(in, raw, 4 * (size_t)ndim, "dimension sizes", e);
  if (st != FG_OK) return st;
  int64_t sizes[3], n;
  for (int i = 0; i < ndim; i++) {
    sizes[i] = dims[i] = be32(raw + 4 * i);
    if (dims[i] == 0)
      return fg_err_set(e, FG_E_FORMAT, "%s: dimension %d is declared as 0", in->path, i);
  }
  if (!fg_size_product(sizes, ndim, &n))
    return fg_err_set(e, FG_E_FORMAT, "%s: declared sizes overflow", in->path);
  *total = (uint64_t)n;
  return FG_OK;
}

static fg_status idx_to_tensor(const uint32_t *dims, int ndim, const uint8_t *data, fg_tensor **out,
                               fg_err *e) {
  fg_shape shape = ndim == 1 ? fg_shape1(dims[0]) : fg_shape4(dims[0], 1, dims[1], dims[2]);
  fg_status st = fg_tensor_new(out, FG_F32, &shape, e);
  if (st != FG_OK) return st;
  float *dst = fg_tensor_data(*out);
  int64_t n = fg_tensor_numel(*out);
  for (int64_t i = 0; i < n; i++) dst[i] = (float)data[i];
  return FG_OK;
}

static fg_status idx_parse(fg_gzin *in, fg_tensor **out, fg_err *e) {
  uint8_t magic[4];
  fg_status st = fg_gzin_read_exact(in, magic, 4, "4-byte magic number", e);
  if (st == FG_OK) st = idx_check_magic(in->path, magic, e);
  if (st != FG_OK) return st;
  int ndim = magic[3];
  uint32_t dims[3];
  uint64_t total = 0;
  st = idx_read_dims(in, ndim, dims, &total, e);
  if (st != FG_OK) return st;
  char what[96];
  snprintf(what, sizeof what, "%u %s (%llu data bytes)", dims[0], ndim == 1 ? "labels" : "images",
           (unsigned long long)total);
  uint8_t *data;
  st = fg_gzin_read_rest(in, total, what, &data, e);
  if (st != FG_OK) return st;
  st = idx_to_tensor(dims, ndim, data, out, e);
  free(data);
  return st;
}

fg_status fg_idx_load(fg_tensor **out, const char *path, fg_err *e) {
  *out = NULL;
  fg_gzin in;
  fg_status st = fg_gzin_open(&in, path, e);
  if (st != FG_OK) return st;
  st = idx_parse(&in, out, e);
  fg_gzin_close(&in);
  return st;
}
