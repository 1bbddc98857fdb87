/* The trainer's copy of its data: bytes for image levels, values otherwise (train_data.h). */
#include "flows/train/train_data.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static fg_status check_value(double v, bool discrete, const char *what, int64_t i, fg_err *e) {
  if (!isfinite(v))
    return fg_err_set(e, FG_E_FORMAT, "%s data element %lld is not finite", what, (long long)i);
  if (discrete && (v < 0 || v > 255))
    return fg_err_set(e, FG_E_FORMAT, "%s image data element %lld is %g, outside 0..255", what,
                      (long long)i, v);
  return FG_OK;
}

static fg_status keep_labels(fg_train_data *d, const fg_tensor *labels, int64_t classes,
                             const char *what, fg_err *e) {
  if (!labels)
    return fg_err_set(e, FG_E_MISUSE, "the flow is conditional on %lld classes and the %s data "
                      "has no labels", (long long)classes, what);
  if (labels->shape.ndim != 1 || labels->shape.d[0] != d->n)
    return fg_err_set(e, FG_E_SHAPE, "%s labels must be [%lld], one per sample", what,
                      (long long)d->n);
  d->labels = malloc(sizeof *d->labels * (size_t)(d->n > 0 ? d->n : 1));
  if (!d->labels) return fg_err_set(e, FG_E_NOMEM, "out of memory keeping %s labels", what);
  d->classes = classes;
  for (int64_t i = 0; i < d->n; i++) {
    double v = fg_tensor_get(labels, i);
    if (!(v >= 0 && v < (double)classes && v == floor(v)))
      return fg_err_set(e, FG_E_FORMAT, "%s label %lld is %g; the flow has classes 0..%lld", what,
                        (long long)i, v, (long long)(classes - 1));
    d->labels[i] = (int32_t)v;
  }
  return FG_OK;
}

fg_status fg_train_data_init(fg_train_data *d, const fg_tensor *src, const fg_tensor *labels,
                             int64_t classes, bool discrete, int64_t n_bits, fg_dtype dtype,
                             const char *what, fg_err *e) {
  memset(d, 0, sizeof *d);
  int64_t total = fg_tensor_numel(src);
  d->n = src->shape.d[0];
  d->row = d->n ? total / d->n : 0;
  fg_status st = classes > 0 ? keep_labels(d, labels, classes, what, e) : FG_OK;
  for (int64_t i = 0; st == FG_OK && i < total; i++)
    st = check_value(fg_tensor_get(src, i), discrete, what, i, e);
  if (st != FG_OK) return st;
  if (!discrete) return fg_tensor_copy(&d->values, src, dtype, e);
  d->levels = malloc(total > 0 ? (size_t)total : 1);
  if (!d->levels) return fg_err_set(e, FG_E_NOMEM, "out of memory keeping %s data", what);
  double shift = (double)(1 << (8 - n_bits));
  for (int64_t i = 0; i < total; i++) d->levels[i] = (uint8_t)floor(fg_tensor_get(src, i) / shift);
  return FG_OK;
}

void fg_train_data_free(fg_train_data *d) {
  free(d->levels);
  free(d->labels);
  fg_tensor_free(d->values);
  memset(d, 0, sizeof *d);
}

static void level_row(const uint8_t *src, int64_t n, fg_tensor *dst, int64_t at) {
  if (dst->dtype == FG_F32) {
    float *y = (float *)fg_tensor_data(dst) + at;
    for (int64_t j = 0; j < n; j++) y[j] = (float)src[j];
  } else {
    double *y = (double *)fg_tensor_data(dst) + at;
    for (int64_t j = 0; j < n; j++) y[j] = (double)src[j];
  }
}

void fg_train_data_rows(const fg_train_data *d, const int64_t *rows, int64_t first, int64_t n,
                        fg_tensor *dst, fg_tensor *context) {
  size_t es = fg_dtype_size(dst->dtype);
  if (context)
    memset(fg_tensor_data(context), 0,
           (size_t)fg_tensor_numel(context) * fg_dtype_size(context->dtype));
  for (int64_t i = 0; i < n; i++) {
    int64_t r = rows ? rows[i] : first + i;
    if (context && d->labels) fg_tensor_set(context, i * d->classes + d->labels[r], 1.0);
    if (d->levels) level_row(d->levels + r * d->row, d->row, dst, i * d->row);
    else
      memcpy((char *)fg_tensor_data(dst) + (size_t)(i * d->row) * es,
             (const char *)fg_tensor_data(d->values) + (size_t)(r * d->row) * es,
             (size_t)d->row * es);
  }
}
