#include "core/shape.h"

#include <stdio.h>
#include <string.h>

#include "core/size.h"

const char *fg_dtype_name(fg_dtype t) {
  switch (t) {
  case FG_F32: return "float32";
  case FG_F64: return "float64";
  default: return "invalid-dtype";
  }
}

size_t fg_dtype_size(fg_dtype t) { return t == FG_F64 ? 8 : 4; }

fg_status fg_shape_make(fg_shape *out, int ndim, const int64_t *dims, fg_err *e) {
  if (ndim < 0 || ndim > FG_MAX_DIMS)
    return fg_err_set(e, FG_E_SHAPE, "%d dimensions requested; flowgrad supports 0 to %d", ndim,
                      FG_MAX_DIMS);
  memset(out, 0, sizeof *out);
  out->ndim = ndim;
  for (int i = 0; i < ndim; i++) out->d[i] = dims[i];
  int64_t n; /* checks every size and their product */
  return fg_shape_numel(out, &n, e);
}

static fg_shape shape_of(int ndim, int64_t a, int64_t b, int64_t c, int64_t d) {
  fg_shape s;
  memset(&s, 0, sizeof s);
  s.ndim = ndim;
  s.d[0] = a, s.d[1] = b, s.d[2] = c, s.d[3] = d;
  for (int i = ndim; i < 4; i++) s.d[i] = 0;
  return s;
}

fg_shape fg_shape0(void) { return shape_of(0, 0, 0, 0, 0); }
fg_shape fg_shape1(int64_t a) { return shape_of(1, a, 0, 0, 0); }
fg_shape fg_shape2(int64_t a, int64_t b) { return shape_of(2, a, b, 0, 0); }
fg_shape fg_shape3(int64_t a, int64_t b, int64_t c) { return shape_of(3, a, b, c, 0); }
fg_shape fg_shape4(int64_t a, int64_t b, int64_t c, int64_t d) { return shape_of(4, a, b, c, d); }

fg_status fg_shape_numel(const fg_shape *s, int64_t *numel, fg_err *e) {
  for (int i = 0; i < s->ndim; i++)
    if (s->d[i] < 0)
      return fg_err_set(e, FG_E_SHAPE, "dimension %d has negative size %lld", i,
                        (long long)s->d[i]);
  if (s->ndim < 0 || s->ndim > FG_MAX_DIMS || !fg_size_product(s->d, (int)s->ndim, numel))
    return fg_err_set(e, FG_E_OVERFLOW, "the number of elements (or a stride) overflows int64");
  return FG_OK;
}

int64_t fg_shape_count(const fg_shape *s) {
  int64_t n = 1;
  for (int i = 0; i < s->ndim; i++) n *= s->d[i];
  return n;
}

fg_status fg_shape_bytes(const fg_shape *s, fg_dtype t, size_t *bytes, fg_err *e) {
  int64_t n;
  fg_status st = fg_shape_numel(s, &n, e);
  if (st != FG_OK) return st;
  int64_t b;
  if (!fg_size_mul(n, (int64_t)fg_dtype_size(t), &b) || (uint64_t)b > SIZE_MAX)
    return fg_err_set(e, FG_E_OVERFLOW, "the byte size of %lld elements overflows", (long long)n);
  *bytes = (size_t)b;
  return FG_OK;
}

bool fg_shape_equal(const fg_shape *a, const fg_shape *b) {
  if (a->ndim != b->ndim) return false;
  for (int i = 0; i < a->ndim; i++)
    if (a->d[i] != b->d[i]) return false;
  return true;
}

bool fg_shape_broadcast(const fg_shape *a, const fg_shape *b, fg_shape *out) {
  fg_shape r;
  memset(&r, 0, sizeof r);
  r.ndim = a->ndim > b->ndim ? a->ndim : b->ndim;
  for (int i = 0; i < r.ndim; i++) {
    int ia = a->ndim - r.ndim + i, ib = b->ndim - r.ndim + i;
    int64_t da = ia >= 0 ? a->d[ia] : 1, db = ib >= 0 ? b->d[ib] : 1;
    if (da == db || db == 1) r.d[i] = da;
    else if (da == 1) r.d[i] = db;
    else return false;
  }
  *out = r;
  return true;
}

void fg_shape_strides(const fg_shape *s, int64_t *strides) {
  int64_t acc = 1;
  for (int i = s->ndim - 1; i >= 0; i--) {
    strides[i] = acc;
    acc *= s->d[i];
  }
}

void fg_shape_broadcast_strides(const fg_shape *in, const fg_shape *out, int64_t *strides) {
  int64_t own[FG_MAX_DIMS];
  fg_shape_strides(in, own);
  for (int i = 0; i < out->ndim; i++) {
    int j = in->ndim - out->ndim + i;
    strides[i] = (j < 0 || in->d[j] == 1) ? 0 : own[j];
  }
}

const char *fg_shape_str(const fg_shape *s, char *buf, size_t cap) {
  size_t used = 0;
  used += (size_t)snprintf(buf, cap, "[");
  for (int i = 0; i < s->ndim && used < cap; i++)
    used += (size_t)snprintf(buf + used, cap - used, i ? ", %lld" : "%lld", (long long)s->d[i]);
  if (used < cap) snprintf(buf + used, cap - used, "]");
  return buf;
}
