/* CIFAR-10 binary batches: a headerless run of 3073-byte records (label, then the 32x32 red,
 * green and blue planes).  With no header, the checks are the record size dividing the length
 * and every label being a CIFAR-10 class; CIFAR-100 files (2 label bytes, 3074-byte records)
 * fail one or the other. */
#include <stdlib.h>

#include "core/formats/cifar.h"
#include "core/formats/gzip.h"

#define CIFAR_SIDE 32
#define CIFAR_PIXELS (3 * CIFAR_SIDE * CIFAR_SIDE)
#define CIFAR_RECORD (1 + CIFAR_PIXELS)
#define CIFAR_CLASSES 10
/* 2^26 records (~200 GiB) is far past any CIFAR file: a bound on what gzip may inflate to. */
#define CIFAR_MAX_BYTES ((uint64_t)CIFAR_RECORD << 26)

static fg_status cifar_check(const char *path, const uint8_t *data, size_t len, fg_err *e) {
  if (len == 0) return fg_err_set(e, FG_E_FORMAT, "%s: empty file: no CIFAR-10 records", path);
  if (len % CIFAR_RECORD != 0)
    return fg_err_set(e, FG_E_FORMAT,
                      "%s: %zu bytes is not a whole number of 3073-byte CIFAR-10 records "
                      "(%zu records and %zu bytes left over; truncated, or not CIFAR-10)",
                      path, len, len / CIFAR_RECORD, len % CIFAR_RECORD);
  for (size_t r = 0; r < len / CIFAR_RECORD; r++) {
    uint8_t label = data[r * CIFAR_RECORD];
    if (label >= CIFAR_CLASSES)
      return fg_err_set(e, FG_E_FORMAT, "%s: record %zu has label %u; CIFAR-10 labels are 0..9",
                        path, r, (unsigned)label);
  }
  return FG_OK;
}

static fg_status cifar_images(const uint8_t *data, int64_t n, fg_tensor **out, fg_err *e) {
  fg_shape shape = fg_shape4(n, 3, CIFAR_SIDE, CIFAR_SIDE);
  fg_status st = fg_tensor_new(out, FG_F32, &shape, e);
  if (st != FG_OK) return st;
  float *dst = fg_tensor_data(*out);
  for (int64_t r = 0; r < n; r++) {
    const uint8_t *px = data + r * CIFAR_RECORD + 1;
    for (int i = 0; i < CIFAR_PIXELS; i++) dst[r * CIFAR_PIXELS + i] = (float)px[i];
  }
  return FG_OK;
}

static fg_status cifar_labels(const uint8_t *data, int64_t n, fg_tensor **out, fg_err *e) {
  fg_shape shape = fg_shape1(n);
  fg_status st = fg_tensor_new(out, FG_F32, &shape, e);
  if (st != FG_OK) return st;
  float *dst = fg_tensor_data(*out);
  for (int64_t r = 0; r < n; r++) dst[r] = (float)data[r * CIFAR_RECORD];
  return FG_OK;
}

static fg_status cifar_read(const char *path, uint8_t **data, size_t *len, fg_err *e) {
  fg_gzin in;
  fg_status st = fg_gzin_open(&in, path, e);
  if (st != FG_OK) return st;
  st = fg_gzin_read_upto(&in, CIFAR_MAX_BYTES, data, len, e);
  bool at_end = true;
  if (st == FG_OK && *len == CIFAR_MAX_BYTES) st = fg_gzin_at_end(&in, &at_end, e);
  if (st == FG_OK && !at_end)
    st = fg_err_set(e, FG_E_FORMAT, "%s: more than %llu bytes: not a CIFAR-10 batch", path,
                    (unsigned long long)CIFAR_MAX_BYTES);
  fg_gzin_close(&in);
  if (st != FG_OK) {
    free(*data);
    *data = NULL;
  }
  return st;
}

fg_status fg_cifar_load(fg_tensor **images, fg_tensor **labels, const char *path, fg_err *e) {
  if (images) *images = NULL;
  if (labels) *labels = NULL;
  uint8_t *data;
  size_t len;
  fg_status st = cifar_read(path, &data, &len, e);
  if (st != FG_OK) return st;
  st = cifar_check(path, data, len, e);
  int64_t n = (int64_t)(len / CIFAR_RECORD);
  if (st == FG_OK && images) st = cifar_images(data, n, images, e);
  if (st == FG_OK && labels) st = cifar_labels(data, n, labels, e);
  free(data);
  if (st != FG_OK && images) {
    fg_tensor_free(*images);
    *images = NULL;
  }
  return st;
}
