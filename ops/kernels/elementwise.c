/* The elementwise kernels (ops/elementwise.c defines the ops).  Every kernel is stamped out for
 * float and double from one body (the *_KERNELS macros, with <tgmath.h> choosing expf or exp by
 * the operand type); binary and ternary ones walk broadcast inputs in runs. */
#include <math.h>
#include <string.h>
#include <tgmath.h>

#include "ops/kernels/kernels.h"
#include "ops/kernels/simd.h"
#include "ops/kernels/vmath.h"

/* Walks output elements [begin, end) in runs along the innermost dimension, keeping the matching
 * offsets of up to three broadcast inputs, so a kernel's share can start anywhere.  Adjacent
 * dimensions that every input steps through alike are merged first (a bias [1, C, 1, 1] added
 * to [N, C, H, W] becomes runs of H·W with the bias constant), so the inner loop is long and
 * its strides are 0 or 1 in the common cases. */
typedef struct bcast_iter {
  int nd, n_in;
  int64_t dim[FG_MAX_DIMS], idx[FG_MAX_DIMS];
  int64_t stride[3][FG_MAX_DIMS];
  int64_t off[3];
} bcast_iter;

static void bcast_coalesce(bcast_iter *it, const fg_kargs *k) {
  int64_t st[3][FG_MAX_DIMS];
  for (int j = 0; j < k->n_in; j++)
    fg_shape_broadcast_strides(&k->in_shape[j], &k->out_shape, st[j]);
  it->nd = 0;
  for (int d = 0; d < k->out_shape.ndim; d++) {
    int64_t size = k->out_shape.d[d];
    if (size == 1) continue; /* moves nothing */
    bool merge = it->nd > 0;
    for (int j = 0; merge && j < k->n_in; j++) merge = st[j][d] * size == it->stride[j][it->nd - 1];
    if (merge) {
      it->dim[it->nd - 1] *= size;
      for (int j = 0; j < k->n_in; j++) it->stride[j][it->nd - 1] = st[j][d];
      continue;
    }
    it->dim[it->nd] = size;
    for (int j = 0; j < k->n_in; j++) it->stride[j][it->nd] = st[j][d];
    it->nd++;
  }
  if (it->nd == 0) { /* a single element */
    it->dim[0] = 1;
    for (int j = 0; j < k->n_in; j++) it->stride[j][0] = 0;
    it->nd = 1;
  }
}

static void bcast_init(bcast_iter *it, const fg_kargs *k, int64_t begin) {
  it->n_in = k->n_in;
  bcast_coalesce(it, k);
  for (int j = 0; j < k->n_in; j++) it->off[j] = 0;
  for (int d = it->nd - 1; d >= 0; d--) {
    it->idx[d] = it->dim[d] ? begin % it->dim[d] : 0;
    begin = it->dim[d] ? begin / it->dim[d] : 0;
    for (int j = 0; j < k->n_in; j++) it->off[j] += it->idx[d] * it->stride[j][d];
  }
}

/* Elements left in the current innermost run. */
static inline int64_t bcast_run(const bcast_iter *it) {
  return it->dim[it->nd - 1] - it->idx[it->nd - 1];
}

/* Moves n elements on (n never crosses the end of the current run). */
static inline void bcast_advance(bcast_iter *it, int64_t n) {
  int d = it->nd - 1;
  for (int j = 0; j < it->n_in; j++) it->off[j] += n * it->stride[j][d];
  it->idx[d] += n;
  while (d >= 0 && it->idx[d] == it->dim[d]) { /* carry */
    for (int j = 0; j < it->n_in; j++) it->off[j] -= it->stride[j][d] * it->dim[d];
    it->idx[d] = 0;
    if (--d < 0) break;
    for (int j = 0; j < it->n_in; j++) it->off[j] += it->stride[j][d];
    it->idx[d]++;
  }
}

static bool same_as_output(const fg_kargs *k, int j) {
  return fg_shape_count(&k->in_shape[j]) == fg_shape_count(&k->out_shape);
}

/* EXPR is a function of x (of type T), and for pow of `p`. */
#define UNARY_BODY(T, EXPR)                                                           \
  const T *in = k->in[0];                                                             \
  T *out = k->out;                                                                    \
  int64_t begin, end;                                                                 \
  fg_split_range(fg_shape_count(&k->out_shape), k->ith, k->nth, &begin, &end);        \
  for (int64_t i = begin; i < end; i++) {                                             \
    T x = in[i];                                                                      \
    out[i] = (T)(EXPR);                                                               \
  }                                                                                   \
  return FG_OK;

/* float64 alone where the float32 kernel is written apart (libm's functions a vector at a
 * time, below); both otherwise. */
#define UNARY_KERNEL_F64(name, EXPR)                                                  \
  FG_SIMD_CLONES fg_status fg_kernel_##name##_f64(const fg_kargs *k) { UNARY_BODY(double, EXPR) }
#define UNARY_KERNELS(name, EXPR)                                                     \
  FG_SIMD_CLONES fg_status fg_kernel_##name##_f32(const fg_kargs *k) { UNARY_BODY(float, EXPR) } \
  UNARY_KERNEL_F64(name, EXPR)

/* EXPR is a function of x and y (inputs 0 and 1, of type T). */
#define BINARY_BODY(T, EXPR)                                                          \
  const T *in0 = k->in[0], *in1 = k->in[1];                                           \
  T *out = k->out;                                                                    \
  int64_t begin, end;                                                                 \
  fg_split_range(fg_shape_count(&k->out_shape), k->ith, k->nth, &begin, &end);        \
  if (same_as_output(k, 0) && same_as_output(k, 1)) {                                 \
    for (int64_t i = begin; i < end; i++) {                                           \
      T x = in0[i], y = in1[i];                                                       \
      out[i] = (T)(EXPR);                                                             \
    }                                                                                 \
  } else if (same_as_output(k, 0) && fg_shape_count(&k->in_shape[1]) == 1) {          \
    T y = in1[0];                                                                     \
    for (int64_t i = begin; i < end; i++) {                                           \
      T x = in0[i];                                                                   \
      out[i] = (T)(EXPR);                                                             \
    }                                                                                 \
  } else {                                                                            \
    bcast_iter it;                                                                    \
    bcast_init(&it, k, begin);                                                        \
    int last = it.nd - 1;                                                             \
    for (int64_t i = begin; i < end;) {                                               \
      int64_t n = bcast_run(&it) < end - i ? bcast_run(&it) : end - i;                \
      const T *a = in0 + it.off[0], *c = in1 + it.off[1];                             \
      int64_t sa = it.stride[0][last], sc = it.stride[1][last];                       \
      T *o = out + i;                                                                 \
      if (sa == 1 && sc == 0) {                                                       \
        T y = c[0];                                                                   \
        for (int64_t j = 0; j < n; j++) { T x = a[j]; o[j] = (T)(EXPR); }             \
      } else if (sa == 0 && sc == 1) {                                                \
        T x = a[0];                                                                   \
        for (int64_t j = 0; j < n; j++) { T y = c[j]; o[j] = (T)(EXPR); }             \
      } else {                                                                        \
        for (int64_t j = 0; j < n; j++) {                                             \
          T x = a[j * sa], y = c[j * sc];                                             \
          o[j] = (T)(EXPR);                                                           \
        }                                                                             \
      }                                                                               \
      bcast_advance(&it, n);                                                          \
      i += n;                                                                         \
    }                                                                                 \
  }                                                                                   \
  return FG_OK;

#define BINARY_KERNELS(name, EXPR)                                                    \
  FG_SIMD_CLONES fg_status fg_kernel_##name##_f32(const fg_kargs *k) { BINARY_BODY(float, EXPR) } \
  FG_SIMD_CLONES fg_status fg_kernel_##name##_f64(const fg_kargs *k) { BINARY_BODY(double, EXPR) }

/* Numerically stable forms: no exp of a large positive argument. */
#define SIGMOID(x) ((x) >= 0 ? 1 / (1 + exp(-(x))) : exp(x) / (1 + exp(x)))
#define SOFTPLUS(x) ((x) > 0 ? (x) + log1p(exp(-(x))) : log1p(exp(x)))

UNARY_KERNELS(neg, -x)
UNARY_KERNEL_F64(exp, exp(x))
UNARY_KERNEL_F64(log, log(x))
UNARY_KERNEL_F64(log1p, log1p(x))
UNARY_KERNEL_F64(expm1, expm1(x))
UNARY_KERNELS(sqrt, sqrt(x))
UNARY_KERNELS(square, x * x)
UNARY_KERNELS(abs, fabs(x))
UNARY_KERNEL_F64(tanh, tanh(x))
UNARY_KERNEL_F64(sigmoid, SIGMOID(x))
UNARY_KERNEL_F64(logsigmoid, -SOFTPLUS(-x))
UNARY_KERNEL_F64(softplus, SOFTPLUS(x))
UNARY_KERNELS(relu, x > 0 ? x : 0)
UNARY_KERNELS(sign, (x > 0) - (x < 0))
UNARY_KERNELS(sin, sin(x))
UNARY_KERNELS(cos, cos(x))
UNARY_KERNELS(stop_gradient, x)
#define p (((const fg_pow_attr *)k->attr)->p)
UNARY_KERNELS(pow, pow(x, p))
#undef p

/* ---- float32 kernels over libm's functions, a vector at a time (ops/kernels/vmath.h) ----
 * The composite ones (sigmoid, softplus, logsigmoid) take the same stable forms as SIGMOID and
 * SOFTPLUS above, written without a branch around the call: t = exp(-|x|) is what either
 * branch computes, then a select.  They work through a chunk on the stack at a time. */
enum { VMATH_CHUNK = 256 };

static void f32_share(const fg_kargs *k, const float **in, float **out, int64_t *n) {
  int64_t begin, end;
  fg_split_range(fg_shape_count(&k->out_shape), k->ith, k->nth, &begin, &end);
  *in = (const float *)k->in[0] + begin, *out = (float *)k->out + begin, *n = end - begin;
}

#define VMATH_KERNEL_F32(name, FN)                                                    \
  fg_status fg_kernel_##name##_f32(const fg_kargs *k) {                               \
    const float *in;                                                                  \
    float *out;                                                                       \
    int64_t n;                                                                        \
    f32_share(k, &in, &out, &n);                                                      \
    fg_vmath_f32(FN, in, out, n);                                                     \
    return FG_OK;                                                                     \
  }
VMATH_KERNEL_F32(exp, FG_VMATH_EXP)
VMATH_KERNEL_F32(log, FG_VMATH_LOG)
VMATH_KERNEL_F32(log1p, FG_VMATH_LOG1P)
VMATH_KERNEL_F32(expm1, FG_VMATH_EXPM1)
VMATH_KERNEL_F32(tanh, FG_VMATH_TANH)

/* The functions of t = exp(-|x|), what either branch of SIGMOID and SOFTPLUS computes. */
typedef enum { OF_T_SIGMOID, OF_T_SOFTPLUS, OF_T_LOGSIGMOID } of_t_form;

/* A chunk at a time: t = exp(-|x|), then
 *   sigmoid     x >= 0 ? 1 / (1 + t) : t / (1 + t)
 *   softplus    max(x, 0) + log1p(t)
 *   logsigmoid  -(max(-x, 0) + log1p(t))      (-softplus(-x))
 * A NaN x gives NaN through t. */
FG_SIMD_CLONES static void of_t(const fg_kargs *k, of_t_form form) {
  const float *in;
  float *out, t[VMATH_CHUNK];
  int64_t n;
  f32_share(k, &in, &out, &n);
  float sign = form == OF_T_LOGSIGMOID ? -1 : 1;
  for (int64_t i = 0; i < n; i += VMATH_CHUNK) {
    int64_t m = n - i < VMATH_CHUNK ? n - i : VMATH_CHUNK;
    for (int64_t j = 0; j < m; j++) t[j] = -fabsf(in[i + j]);
    fg_vmath_f32(FG_VMATH_EXP, t, t, m);
    if (form == OF_T_SIGMOID) {
      for (int64_t j = 0; j < m; j++) out[i + j] = (in[i + j] >= 0 ? 1 : t[j]) / (1 + t[j]);
      continue;
    }
    fg_vmath_f32(FG_VMATH_LOG1P, t, t, m);
    for (int64_t j = 0; j < m; j++) {
      float sx = sign * in[i + j];
      out[i + j] = sign * ((sx > 0 ? sx : 0) + t[j]);
    }
  }
}

fg_status fg_kernel_sigmoid_f32(const fg_kargs *k) {
  of_t(k, OF_T_SIGMOID);
  return FG_OK;
}
fg_status fg_kernel_softplus_f32(const fg_kargs *k) {
  of_t(k, OF_T_SOFTPLUS);
  return FG_OK;
}
fg_status fg_kernel_logsigmoid_f32(const fg_kargs *k) {
  of_t(k, OF_T_LOGSIGMOID);
  return FG_OK;
}

#define lo (((const fg_clamp_attr *)k->attr)->lo)
#define hi (((const fg_clamp_attr *)k->attr)->hi)
UNARY_KERNELS(clamp, x < lo ? lo : (x > hi ? hi : x)) /* NaN stays NaN */
#undef lo
#undef hi

BINARY_KERNELS(add, x + y)
BINARY_KERNELS(sub, x - y)
BINARY_KERNELS(mul, x * y)
BINARY_KERNELS(div, x / y)
BINARY_KERNELS(maximum, x > y ? x : (y > x ? y : x))
BINARY_KERNELS(minimum, x < y ? x : (y < x ? y : x))
BINARY_KERNELS(greater, x > y ? 1 : 0)
BINARY_KERNELS(equal, x == y ? 1 : 0)
BINARY_KERNELS(greater_equal, x >= y ? 1 : 0)
BINARY_KERNELS(not_equal, x != y ? 1 : 0)
BINARY_KERNELS(logical_and, x != 0 && y != 0 ? 1 : 0)
BINARY_KERNELS(logical_or, x != 0 || y != 0 ? 1 : 0)

#define WHERE_BODY(T)                                                                 \
  const T *c = k->in[0], *a = k->in[1], *b = k->in[2];                                \
  T *out = k->out;                                                                    \
  int64_t begin, end;                                                                 \
  fg_split_range(fg_shape_count(&k->out_shape), k->ith, k->nth, &begin, &end);        \
  bcast_iter it;                                                                      \
  bcast_init(&it, k, begin);                                                          \
  int last = it.nd - 1;                                                               \
  for (int64_t i = begin; i < end;) {                                                 \
    int64_t n = bcast_run(&it) < end - i ? bcast_run(&it) : end - i;                  \
    const T *cc = c + it.off[0], *aa = a + it.off[1], *bb = b + it.off[2];            \
    int64_t sc = it.stride[0][last], sa = it.stride[1][last], sb = it.stride[2][last]; \
    for (int64_t j = 0; j < n; j++) out[i + j] = cc[j * sc] != 0 ? aa[j * sa] : bb[j * sb]; \
    bcast_advance(&it, n);                                                            \
    i += n;                                                                           \
  }                                                                                   \
  return FG_OK;

fg_status fg_kernel_where_f32(const fg_kargs *k) { WHERE_BODY(float) }
fg_status fg_kernel_where_f64(const fg_kargs *k) { WHERE_BODY(double) }

#define CAST_BODY(TOUT)                                                               \
  TOUT *out = k->out;                                                                 \
  int64_t begin, end;                                                                 \
  fg_split_range(fg_shape_count(&k->out_shape), k->ith, k->nth, &begin, &end);        \
  if (k->in_dtype[0] == FG_F64)                                                       \
    for (int64_t i = begin; i < end; i++) out[i] = (TOUT)((const double *)k->in[0])[i]; \
  else                                                                                \
    for (int64_t i = begin; i < end; i++) out[i] = (TOUT)((const float *)k->in[0])[i]; \
  return FG_OK;

fg_status fg_kernel_cast_f32(const fg_kargs *k) { CAST_BODY(float) }
fg_status fg_kernel_cast_f64(const fg_kargs *k) { CAST_BODY(double) }

