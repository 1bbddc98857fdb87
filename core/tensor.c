#include "core/tensor.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static fg_status tensor_alloc(fg_tensor **out, fg_dtype t, const fg_shape *shape, fg_err *e) {
  *out = NULL;
  if ((unsigned)t >= FG_DTYPE_COUNT) return fg_err_set(e, FG_E_DTYPE, "invalid dtype %d", (int)t);
  fg_shape checked;
  fg_status st = fg_shape_make(&checked, shape->ndim, shape->d, e);
  if (st != FG_OK) return st;
  size_t bytes;
  if (fg_shape_bytes(&checked, t, &bytes, NULL) != FG_OK)
    return fg_err_set(e, FG_E_OVERFLOW, "tensor byte size overflows");
  fg_tensor *x = calloc(1, sizeof *x);
  if (!x) return fg_err_set(e, FG_E_NOMEM, "out of memory for a tensor header");
  st = fg_buffer_new(&x->buf, bytes, e);
  if (st != FG_OK) {
    free(x);
    return st;
  }
  x->dtype = t;
  x->shape = checked;
  fg_shape_strides(&checked, x->strides);
  *out = x;
  return FG_OK;
}

fg_status fg_tensor_new(fg_tensor **out, fg_dtype t, const fg_shape *shape, fg_err *e) {
  return tensor_alloc(out, t, shape, e);
}

fg_status fg_tensor_from_data(fg_tensor **out, fg_dtype t, const fg_shape *shape,
                              const void *data, fg_err *e) {
  fg_status st = tensor_alloc(out, t, shape, e);
  if (st != FG_OK) return st;
  memcpy((*out)->buf->data, data, (*out)->buf->bytes);
  return FG_OK;
}

fg_status fg_tensor_view(fg_tensor **out, const fg_tensor *src, fg_err *e) {
  *out = NULL;
  fg_tensor *x = malloc(sizeof *x);
  if (!x) return fg_err_set(e, FG_E_NOMEM, "out of memory for a tensor header");
  *x = *src;
  fg_buffer_retain(x->buf);
  *out = x;
  return FG_OK;
}

fg_status fg_tensor_slice0(fg_tensor **out, const fg_tensor *src, int64_t start, int64_t stop,
                           fg_err *e) {
  *out = NULL;
  if (src->shape.ndim < 1 || start < 0 || stop < start || stop > src->shape.d[0])
    return fg_err_set(e, FG_E_SHAPE, "rows [%lld, %lld) outside a tensor of %lld rows",
                      (long long)start, (long long)stop,
                      (long long)(src->shape.ndim ? src->shape.d[0] : 0));
  fg_status st = fg_tensor_view(out, src, e);
  if (st != FG_OK) return st;
  (*out)->offset += start * src->strides[0];
  (*out)->shape.d[0] = stop - start;
  return FG_OK;
}

fg_status fg_tensor_reshape(fg_tensor **out, const fg_tensor *src, const fg_shape *shape,
                            fg_err *e) {
  *out = NULL;
  fg_shape checked;
  fg_status st = fg_shape_make(&checked, shape->ndim, shape->d, e);
  if (st != FG_OK) return st;
  if (!fg_tensor_is_contiguous(src))
    return fg_err_set(e, FG_E_MISUSE, "reshape of a non-contiguous view; copy it first");
  char a[128], b[128];
  if (fg_shape_count(&checked) != fg_shape_count(&src->shape))
    return fg_err_set(e, FG_E_SHAPE, "cannot reshape %s to %s: element counts differ",
                      fg_shape_str(&src->shape, a, sizeof a), fg_shape_str(&checked, b, sizeof b));
  st = fg_tensor_view(out, src, e);
  if (st != FG_OK) return st;
  (*out)->shape = checked;
  fg_shape_strides(&checked, (*out)->strides);
  return FG_OK;
}

fg_status fg_tensor_permute(fg_tensor **out, const fg_tensor *src, const int *perm, fg_err *e) {
  *out = NULL;
  int n = src->shape.ndim, seen = 0;
  for (int i = 0; i < n; i++) {
    if (perm[i] < 0 || perm[i] >= n || (seen >> perm[i]) & 1)
      return fg_err_set(e, FG_E_SHAPE, "permutation entry %d (%d) is not a fresh axis of %d",
                        i, perm[i], n);
    seen |= 1 << perm[i];
  }
  fg_status st = fg_tensor_view(out, src, e);
  if (st != FG_OK) return st;
  for (int i = 0; i < n; i++) {
    (*out)->shape.d[i] = src->shape.d[perm[i]];
    (*out)->strides[i] = src->strides[perm[i]];
  }
  return FG_OK;
}

fg_status fg_tensor_copy(fg_tensor **out, const fg_tensor *src, fg_dtype t, fg_err *e) {
  fg_status st = tensor_alloc(out, t, &src->shape, e);
  if (st != FG_OK) return st;
  int64_t n = fg_tensor_numel(src);
  for (int64_t i = 0; i < n; i++) fg_tensor_set(*out, i, fg_tensor_get(src, i));
  return FG_OK;
}

void fg_tensor_free(fg_tensor *t) {
  if (!t) return;
  fg_buffer_release(t->buf);
  free(t);
}

bool fg_tensor_is_contiguous(const fg_tensor *t) {
  int64_t expect = 1;
  for (int i = t->shape.ndim - 1; i >= 0; i--) {
    if (t->shape.d[i] != 1 && t->strides[i] != expect) return false;
    expect *= t->shape.d[i];
  }
  return true;
}

int64_t fg_tensor_numel(const fg_tensor *t) { return fg_shape_count(&t->shape); }

void *fg_tensor_data(const fg_tensor *t) {
  return (char *)t->buf->data + (size_t)t->offset * fg_dtype_size(t->dtype);
}

static int64_t element_offset(const fg_tensor *t, int64_t flat) {
  int64_t off = t->offset;
  for (int i = t->shape.ndim - 1; i >= 0; i--) {
    int64_t d = t->shape.d[i];
    off += (flat % d) * t->strides[i];
    flat /= d;
  }
  return off;
}

bool fg_tensor_all_finite(const fg_tensor *t) {
  for (int64_t i = 0; i < fg_tensor_numel(t); i++)
    if (!isfinite(fg_tensor_get(t, i))) return false;
  return true;
}

double fg_tensor_get(const fg_tensor *t, int64_t flat_index) {
  int64_t off = element_offset(t, flat_index);
  return t->dtype == FG_F64 ? ((const double *)t->buf->data)[off]
                            : (double)((const float *)t->buf->data)[off];
}

void fg_tensor_set(fg_tensor *t, int64_t flat_index, double v) {
  int64_t off = element_offset(t, flat_index);
  if (t->dtype == FG_F64) ((double *)t->buf->data)[off] = v;
  else ((float *)t->buf->data)[off] = (float)v;
}

void fg_tensor_fill(fg_tensor *t, double v) {
  int64_t n = fg_tensor_numel(t);
  for (int64_t i = 0; i < n; i++) fg_tensor_set(t, i, v);
}
