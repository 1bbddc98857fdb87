/* The indexing kernels (ops/index.c defines gather, scatter_add and searchsorted).  Each walks
 * its share of the output with a multi-index counter, so no element costs a division. */
#include <math.h>

#include "ops/kernels/kernels.h"

/* A row-major multi-index over `shape`, started at flat element `at`. */
typedef struct nd_counter {
  int nd;
  int64_t dim[FG_MAX_DIMS], idx[FG_MAX_DIMS];
} nd_counter;

static void counter_start(nd_counter *c, const fg_shape *shape, int64_t at) {
  c->nd = (int)shape->ndim;
  for (int d = c->nd - 1; d >= 0; d--) {
    c->dim[d] = shape->d[d];
    c->idx[d] = c->dim[d] ? at % c->dim[d] : 0;
    at = c->dim[d] ? at / c->dim[d] : 0;
  }
}

static void counter_next(nd_counter *c) {
  for (int d = c->nd - 1; d >= 0; d--) {
    if (++c->idx[d] < c->dim[d]) return;
    c->idx[d] = 0;
  }
}

/* sum over axes except `skip` of idx[d] * stride[d] */
static int64_t offset_without(const nd_counter *c, const int64_t *stride, int skip) {
  int64_t off = 0;
  for (int d = 0; d < c->nd; d++)
    if (d != skip) off += c->idx[d] * stride[d];
  return off;
}

/* Strides of `in` read at the coordinates of `out` on every axis but `axis` (0 where in has
 * size 1), and its own stride along `axis`. */
static void read_strides(const fg_shape *in, int axis, int64_t *stride) {
  fg_shape_strides(in, stride);
  for (int d = 0; d < in->ndim; d++)
    if (d != axis && in->d[d] == 1) stride[d] = 0;
}

/* An index as an element offset along an axis of n, or -1 when it is not one. */
static inline int64_t index_value(double v, int64_t n) {
  return v >= 0 && v < (double)n && v == floor(v) ? (int64_t)v : -1;
}

static fg_status bad_index(const fg_kargs *k, const char *op, double v, int64_t n) {
  return fg_err_set(k->err, FG_E_MISUSE, "%s: index %g is not an integer in [0, %lld)", op, v,
                    (long long)n);
}

#define GATHER_BODY(T)                                                                    \
  const fg_gather_attr *at = k->attr;                                                     \
  const T *data = k->in[0], *index = k->in[1];                                            \
  T *out = k->out;                                                                        \
  int ax = at->axis;                                                                      \
  int64_t n = k->in_shape[0].d[ax], ds[FG_MAX_DIMS], is[FG_MAX_DIMS], b, e;               \
  read_strides(&k->in_shape[0], ax, ds);                                                  \
  read_strides(&k->in_shape[1], -1, is);                                                  \
  fg_split_range(fg_shape_count(&k->out_shape), k->ith, k->nth, &b, &e);                  \
  nd_counter c;                                                                           \
  counter_start(&c, &k->out_shape, b);                                                    \
  for (int64_t o = b; o < e; o++, counter_next(&c)) {                                     \
    T v = index[offset_without(&c, is, -1)];                                              \
    int64_t j = index_value((double)v, n);                                                \
    if (j < 0) return bad_index(k, "gather", (double)v, n);                               \
    out[o] = data[offset_without(&c, ds, ax) + j * ds[ax]];                               \
  }                                                                                       \
  return FG_OK;

fg_status fg_kernel_gather_f32(const fg_kargs *k) { GATHER_BODY(float) }
fg_status fg_kernel_gather_f64(const fg_kargs *k) { GATHER_BODY(double) }

/* Work is split by output "columns" (all positions but the axis), so each output element is
 * summed by one part, in the order of the source: bit-identical for any split. */
#define SCATTER_ADD_BODY(T)                                                               \
  const fg_gather_attr *at = k->attr;                                                     \
  const T *src = k->in[0], *index = k->in[1];                                             \
  T *out = k->out;                                                                        \
  int ax = at->axis;                                                                      \
  const fg_shape *ss = &k->in_shape[0];                                                   \
  int64_t m = ss->d[ax], n = at->size, inner = 1, outer = 1, is[FG_MAX_DIMS];             \
  for (int d = 0; d < ss->ndim; d++)                                                      \
    if (d < ax) outer *= ss->d[d];                                                        \
    else if (d > ax) inner *= ss->d[d];                                                   \
  read_strides(&k->in_shape[1], -1, is);                                                  \
  int64_t b, e;                                                                           \
  fg_split_range(outer * inner, k->ith, k->nth, &b, &e);                                  \
  for (int64_t col = b; col < e; col++) {                                                 \
    int64_t o = col / inner, i = col % inner;                                             \
    T *dst = out + o * n * inner + i;                                                     \
    for (int64_t j = 0; j < n; j++) dst[j * inner] = 0;                                   \
    nd_counter c;                                                                         \
    counter_start(&c, ss, o * m * inner + i);                                             \
    for (int64_t j = 0; j < m; j++) {                                                     \
      c.idx[ax] = j;                                                                      \
      T v = index[offset_without(&c, is, -1)];                                            \
      int64_t to = index_value((double)v, n);                                             \
      if (to < 0) return bad_index(k, "scatter_add", (double)v, n);                       \
      dst[to * inner] += src[(o * m + j) * inner + i];                                    \
    }                                                                                     \
  }                                                                                       \
  return FG_OK;

fg_status fg_kernel_scatter_add_f32(const fg_kargs *k) { SCATTER_ADD_BODY(float) }
fg_status fg_kernel_scatter_add_f64(const fg_kargs *k) { SCATTER_ADD_BODY(double) }

/* Binary search for the count of row elements < v (<= v with right); NaN compares false, so
 * a NaN value counts 0 and the result is always in [0, K]. */
#define SEARCHSORTED_BODY(T)                                                              \
  const fg_searchsorted_attr *at = k->attr;                                               \
  const T *sorted = k->in[0], *values = k->in[1];                                         \
  T *out = k->out;                                                                        \
  const fg_shape *ss = &k->in_shape[0];                                                   \
  int last = (int)ss->ndim - 1;                                                           \
  int64_t kk = ss->d[last], st[FG_MAX_DIMS], vs[FG_MAX_DIMS], b, e;                       \
  read_strides(ss, last, st);                                                             \
  read_strides(&k->in_shape[1], -1, vs);                                                  \
  fg_split_range(fg_shape_count(&k->out_shape), k->ith, k->nth, &b, &e);                  \
  nd_counter c;                                                                           \
  counter_start(&c, &k->out_shape, b);                                                    \
  for (int64_t o = b; o < e; o++, counter_next(&c)) {                                     \
    T v = values[offset_without(&c, vs, -1)];                                             \
    const T *row = sorted + offset_without(&c, st, last);                                 \
    int64_t lo = 0, hi = kk;                                                              \
    while (lo < hi) {                                                                     \
      int64_t mid = lo + (hi - lo) / 2;                                                   \
      T s = row[mid];                                                                     \
      if (at->right ? s <= v : s < v) lo = mid + 1;                                       \
      else hi = mid;                                                                      \
    }                                                                                     \
    out[o] = (T)lo;                                                                       \
  }                                                                                       \
  return FG_OK;

fg_status fg_kernel_searchsorted_f32(const fg_kargs *k) { SEARCHSORTED_BODY(float) }
fg_status fg_kernel_searchsorted_f64(const fg_kargs *k) { SEARCHSORTED_BODY(double) }
