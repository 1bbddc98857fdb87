/* Elementwise ops.  Binary and ternary ops broadcast as NumPy does.  Every kernel is stamped
 * out for float and double from one body (the *_KERNELS macros, with <tgmath.h> choosing expf
 * or exp by the operand type), and every VJP is written with graph ops, so gradients of
 * gradients come free. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <tgmath.h>

#include "core/ir/op.h"
#include "ops/ops.h"
#include "ops/kernels/simd.h"

/* ---------------------------------------------------------------- shape rules ---- */

static fg_status infer_unary(fg_infer_args *a) {
  (void)a;
  return FG_OK;
}

static fg_status infer_broadcast(fg_infer_args *a) {
  fg_shape out = a->in_shape[0];
  for (int i = 1; i < a->n_in; i++) {
    if (a->in_dtype[i] != a->in_dtype[0]) {
      snprintf(a->why, sizeof a->why, "inputs must share one dtype (input %d is %s, input 0 %s)",
               i, fg_dtype_name(a->in_dtype[i]), fg_dtype_name(a->in_dtype[0]));
      return FG_E_DTYPE;
    }
    if (!fg_shape_broadcast(&out, &a->in_shape[i], &out)) {
      snprintf(a->why, sizeof a->why, "shapes do not broadcast together (NumPy rules: trailing "
               "dimensions must be equal or 1)");
      return FG_E_SHAPE;
    }
  }
  a->out_shape = out;
  return FG_OK;
}

static fg_status infer_pow(fg_infer_args *a) {
  const fg_pow_attr *at = a->attr;
  if (!isfinite(at->p)) {
    snprintf(a->why, sizeof a->why, "the exponent must be finite, got %g", at->p);
    return FG_E_MISUSE;
  }
  return FG_OK;
}

static fg_status infer_cast(fg_infer_args *a) {
  const fg_cast_attr *at = a->attr;
  if ((unsigned)at->dtype >= FG_DTYPE_COUNT) {
    snprintf(a->why, sizeof a->why, "cannot cast to dtype %d", at->dtype);
    return FG_E_DTYPE;
  }
  a->out_dtype = (fg_dtype)at->dtype;
  return FG_OK;
}

/* ---------------------------------------------------------------- kernels ---- */

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
  for (int j = 0; j < k->n_in; j++) fg_shape_broadcast_strides(&k->in_shape[j], &k->out_shape, st[j]);
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
static inline int64_t bcast_run(const bcast_iter *it) { return it->dim[it->nd - 1] - it->idx[it->nd - 1]; }

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

#define UNARY_KERNELS(name, EXPR)                                                     \
  FG_SIMD_CLONES static fg_status name##_f32(const fg_kargs *k) { UNARY_BODY(float, EXPR) } \
  FG_SIMD_CLONES static fg_status name##_f64(const fg_kargs *k) { UNARY_BODY(double, EXPR) }

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
  FG_SIMD_CLONES static fg_status name##_f32(const fg_kargs *k) { BINARY_BODY(float, EXPR) } \
  FG_SIMD_CLONES static fg_status name##_f64(const fg_kargs *k) { BINARY_BODY(double, EXPR) }

/* Numerically stable forms: no exp of a large positive argument. */
#define SIGMOID(x) ((x) >= 0 ? 1 / (1 + exp(-(x))) : exp(x) / (1 + exp(x)))
#define SOFTPLUS(x) ((x) > 0 ? (x) + log1p(exp(-(x))) : log1p(exp(x)))

UNARY_KERNELS(neg, -x)
UNARY_KERNELS(exp, exp(x))
UNARY_KERNELS(log, log(x))
UNARY_KERNELS(log1p, log1p(x))
UNARY_KERNELS(expm1, expm1(x))
UNARY_KERNELS(sqrt, sqrt(x))
UNARY_KERNELS(square, x * x)
UNARY_KERNELS(abs, fabs(x))
UNARY_KERNELS(tanh, tanh(x))
UNARY_KERNELS(sigmoid, SIGMOID(x))
UNARY_KERNELS(logsigmoid, -SOFTPLUS(-x))
UNARY_KERNELS(softplus, SOFTPLUS(x))
UNARY_KERNELS(relu, x > 0 ? x : 0)
UNARY_KERNELS(sign, (x > 0) - (x < 0))
UNARY_KERNELS(identity, x)
#define p (((const fg_pow_attr *)k->attr)->p)
UNARY_KERNELS(pow, pow(x, p))
#undef p

BINARY_KERNELS(add, x + y)
BINARY_KERNELS(sub, x - y)
BINARY_KERNELS(mul, x * y)
BINARY_KERNELS(div, x / y)
BINARY_KERNELS(maximum, x > y ? x : (y > x ? y : x))
BINARY_KERNELS(minimum, x < y ? x : (y < x ? y : x))
BINARY_KERNELS(greater, x > y ? 1 : 0)
BINARY_KERNELS(equal, x == y ? 1 : 0)

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

static fg_status where_f32(const fg_kargs *k) { WHERE_BODY(float) }
static fg_status where_f64(const fg_kargs *k) { WHERE_BODY(double) }

#define CAST_BODY(TOUT)                                                               \
  TOUT *out = k->out;                                                                 \
  int64_t begin, end;                                                                 \
  fg_split_range(fg_shape_count(&k->out_shape), k->ith, k->nth, &begin, &end);        \
  if (k->in_dtype[0] == FG_F64)                                                       \
    for (int64_t i = begin; i < end; i++) out[i] = (TOUT)((const double *)k->in[0])[i]; \
  else                                                                                \
    for (int64_t i = begin; i < end; i++) out[i] = (TOUT)((const float *)k->in[0])[i]; \
  return FG_OK;

static fg_status cast_f32(const fg_kargs *k) { CAST_BODY(float) }
static fg_status cast_f64(const fg_kargs *k) { CAST_BODY(double) }

/* ---------------------------------------------------------------- VJPs ---- */

#define IN(i) fg_node_input(g, node, i)
#define WANT(i) (need & (1u << (i)))

static fg_status vjp_add(fg_graph *g, fg_node node, fg_node gout, uint32_t need, fg_node *gin) {
  (void)node;
  if (WANT(0)) gin[0] = gout;
  if (WANT(1)) gin[1] = gout;
  return fg_graph_status(g);
}

static fg_status vjp_sub(fg_graph *g, fg_node node, fg_node gout, uint32_t need, fg_node *gin) {
  (void)node;
  if (WANT(0)) gin[0] = gout;
  if (WANT(1)) gin[1] = fg_neg(g, gout);
  return fg_graph_status(g);
}

static fg_status vjp_mul(fg_graph *g, fg_node node, fg_node gout, uint32_t need, fg_node *gin) {
  if (WANT(0)) gin[0] = fg_mul(g, gout, IN(1));
  if (WANT(1)) gin[1] = fg_mul(g, gout, IN(0));
  return fg_graph_status(g);
}

/* y = a / b: dy/da = 1/b, dy/db = -y/b */
static fg_status vjp_div(fg_graph *g, fg_node node, fg_node gout, uint32_t need, fg_node *gin) {
  if (WANT(0)) gin[0] = fg_div(g, gout, IN(1));
  if (WANT(1)) gin[1] = fg_neg(g, fg_mul(g, gout, fg_div(g, node, IN(1))));
  return fg_graph_status(g);
}

/* Ties share the gradient evenly (as torch.maximum does): mask = [a > b] + [a == b] / 2. */
static fg_node tie_mask(fg_graph *g, fg_node winner, fg_node loser) {
  return fg_add(g, fg_greater(g, winner, loser), fg_mul_scalar(g, fg_equal(g, winner, loser), 0.5));
}

static fg_status vjp_maximum(fg_graph *g, fg_node node, fg_node gout, uint32_t need, fg_node *gin) {
  if (WANT(0)) gin[0] = fg_mul(g, gout, tie_mask(g, IN(0), IN(1)));
  if (WANT(1)) gin[1] = fg_mul(g, gout, tie_mask(g, IN(1), IN(0)));
  return fg_graph_status(g);
}

static fg_status vjp_minimum(fg_graph *g, fg_node node, fg_node gout, uint32_t need, fg_node *gin) {
  if (WANT(0)) gin[0] = fg_mul(g, gout, tie_mask(g, IN(1), IN(0)));
  if (WANT(1)) gin[1] = fg_mul(g, gout, tie_mask(g, IN(0), IN(1)));
  return fg_graph_status(g);
}

/* Unary VJPs: gin[0] = gout * (derivative as a graph expression). */
#define UNARY_VJP(name, DERIV)                                                        \
  static fg_status vjp_##name(fg_graph *g, fg_node node, fg_node gout, uint32_t need, \
                              fg_node *gin) {                                         \
    if (WANT(0)) {                                                                    \
      fg_node x = IN(0);                                                              \
      (void)x;                                                                        \
      gin[0] = fg_mul(g, gout, (DERIV));                                              \
    }                                                                                 \
    return fg_graph_status(g);                                                        \
  }

UNARY_VJP(exp, node)
UNARY_VJP(expm1, fg_add_scalar(g, node, 1.0))
UNARY_VJP(square, fg_mul_scalar(g, x, 2.0))
UNARY_VJP(abs, fg_sign(g, x))
UNARY_VJP(tanh, fg_sub(g, fg_scalar(g, 1.0, fg_node_dtype(g, x)), fg_square(g, node)))
UNARY_VJP(sigmoid, fg_mul(g, node, fg_sub(g, fg_scalar(g, 1.0, fg_node_dtype(g, x)), node)))
UNARY_VJP(logsigmoid, fg_sigmoid(g, fg_neg(g, x)))
UNARY_VJP(softplus, fg_sigmoid(g, x))
/* relu's from its output (relu(x) > 0 exactly when x > 0): the backward keeps no
 * pre-activation alive, and the compiler can fuse bias and relu into the conv before it. */
UNARY_VJP(relu, fg_greater(g, node, fg_scalar(g, 0.0, fg_node_dtype(g, x))))

static fg_status vjp_neg(fg_graph *g, fg_node node, fg_node gout, uint32_t need, fg_node *gin) {
  (void)node;
  if (WANT(0)) gin[0] = fg_neg(g, gout);
  return fg_graph_status(g);
}

static fg_status vjp_log(fg_graph *g, fg_node node, fg_node gout, uint32_t need, fg_node *gin) {
  if (WANT(0)) gin[0] = fg_div(g, gout, IN(0));
  return fg_graph_status(g);
}

static fg_status vjp_log1p(fg_graph *g, fg_node node, fg_node gout, uint32_t need, fg_node *gin) {
  if (WANT(0)) gin[0] = fg_div(g, gout, fg_add_scalar(g, IN(0), 1.0));
  return fg_graph_status(g);
}

static fg_status vjp_sqrt(fg_graph *g, fg_node node, fg_node gout, uint32_t need, fg_node *gin) {
  if (WANT(0)) gin[0] = fg_div(g, gout, fg_mul_scalar(g, node, 2.0));
  return fg_graph_status(g);
}

static fg_status vjp_pow(fg_graph *g, fg_node node, fg_node gout, uint32_t need, fg_node *gin) {
  double p = ((const fg_pow_attr *)fg_node_attr(g, node))->p;
  if (!WANT(0) || p == 0.0) return fg_graph_status(g); /* x^0 is constant */
  fg_node deriv = p == 1.0 ? FG_NONE : fg_mul_scalar(g, fg_pow(g, IN(0), p - 1.0), p);
  gin[0] = deriv == FG_NONE ? gout : fg_mul(g, gout, deriv);
  return fg_graph_status(g);
}

static fg_status vjp_where(fg_graph *g, fg_node node, fg_node gout, uint32_t need, fg_node *gin) {
  fg_node zero = fg_scalar(g, 0.0, fg_node_dtype(g, gout));
  if (WANT(1)) gin[1] = fg_where(g, IN(0), gout, zero);
  if (WANT(2)) gin[2] = fg_where(g, IN(0), zero, gout);
  return fg_graph_status(g);
}

static fg_status vjp_cast(fg_graph *g, fg_node node, fg_node gout, uint32_t need, fg_node *gin) {
  if (WANT(0)) gin[0] = fg_cast(g, gout, fg_node_dtype(g, IN(0)));
  return fg_graph_status(g);
}

/* ---------------------------------------------------------------- descriptors ---- */

#define EW (FG_OPF_ELEMENTWISE | FG_OPF_INPLACE_OK)

#define UNARY_DEF(op_name, extra_flags, vjp_fn)                                       \
  const fg_op_def fg_opdef_##op_name = {                                              \
      .name = #op_name, .n_in = 1, .flags = EW | (extra_flags), .infer = infer_unary, \
      .kernel_f32 = op_name##_f32, .kernel_f64 = op_name##_f64, .vjp = vjp_fn}

#define BINARY_DEF(op_name, extra_flags, vjp_fn)                                      \
  const fg_op_def fg_opdef_##op_name = {                                              \
      .name = #op_name, .n_in = 2, .flags = EW | (extra_flags),                       \
      .infer = infer_broadcast, .kernel_f32 = op_name##_f32,                          \
      .kernel_f64 = op_name##_f64, .vjp = vjp_fn}

BINARY_DEF(add, FG_OPF_COMMUTATIVE, vjp_add);
BINARY_DEF(sub, 0, vjp_sub);
BINARY_DEF(mul, FG_OPF_COMMUTATIVE, vjp_mul);
BINARY_DEF(div, 0, vjp_div);
BINARY_DEF(maximum, FG_OPF_COMMUTATIVE, vjp_maximum);
BINARY_DEF(minimum, FG_OPF_COMMUTATIVE, vjp_minimum);
BINARY_DEF(greater, FG_OPF_NODIFF, NULL);
BINARY_DEF(equal, FG_OPF_NODIFF | FG_OPF_COMMUTATIVE, NULL);
UNARY_DEF(neg, 0, vjp_neg);
UNARY_DEF(exp, 0, vjp_exp);
UNARY_DEF(log, 0, vjp_log);
UNARY_DEF(log1p, 0, vjp_log1p);
UNARY_DEF(expm1, 0, vjp_expm1);
UNARY_DEF(sqrt, 0, vjp_sqrt);
UNARY_DEF(square, 0, vjp_square);
UNARY_DEF(abs, 0, vjp_abs);
UNARY_DEF(tanh, 0, vjp_tanh);
UNARY_DEF(sigmoid, 0, vjp_sigmoid);
UNARY_DEF(logsigmoid, 0, vjp_logsigmoid);
UNARY_DEF(softplus, 0, vjp_softplus);
UNARY_DEF(relu, 0, vjp_relu);
UNARY_DEF(sign, FG_OPF_NODIFF, NULL);

const fg_op_def fg_opdef_pow = {
    .name = "pow", .n_in = 1, .flags = EW, .attr_size = sizeof(fg_pow_attr),
    .infer = infer_pow, .kernel_f32 = pow_f32, .kernel_f64 = pow_f64, .vjp = vjp_pow};

const fg_op_def fg_opdef_stop_gradient = {
    .name = "stop_gradient", .n_in = 1, .flags = EW | FG_OPF_NODIFF, .infer = infer_unary,
    .kernel_f32 = identity_f32, .kernel_f64 = identity_f64};

const fg_op_def fg_opdef_where = {
    .name = "where", .n_in = 3, .flags = FG_OPF_ELEMENTWISE, .nondiff_inputs = 1u << 0,
    .infer = infer_broadcast, .kernel_f32 = where_f32, .kernel_f64 = where_f64,
    .vjp = vjp_where};

const fg_op_def fg_opdef_cast = {
    .name = "cast", .n_in = 1, .flags = FG_OPF_ELEMENTWISE, .attr_size = sizeof(fg_cast_attr),
    .infer = infer_cast, .kernel_f32 = cast_f32, .kernel_f64 = cast_f64, .vjp = vjp_cast};

/* ---------------------------------------------------------------- builders ---- */

static fg_node unary(fg_graph *g, int op, fg_node x) { return fg_graph_add_node(g, op, 1, &x, NULL); }

static fg_node binary(fg_graph *g, int op, fg_node a, fg_node b) {
  fg_node in[2] = {a, b};
  return fg_graph_add_node(g, op, 2, in, NULL);
}

fg_node fg_add(fg_graph *g, fg_node a, fg_node b) { return binary(g, FG_OP_ADD, a, b); }
fg_node fg_sub(fg_graph *g, fg_node a, fg_node b) { return binary(g, FG_OP_SUB, a, b); }
fg_node fg_mul(fg_graph *g, fg_node a, fg_node b) { return binary(g, FG_OP_MUL, a, b); }
fg_node fg_div(fg_graph *g, fg_node a, fg_node b) { return binary(g, FG_OP_DIV, a, b); }
fg_node fg_maximum(fg_graph *g, fg_node a, fg_node b) { return binary(g, FG_OP_MAXIMUM, a, b); }
fg_node fg_minimum(fg_graph *g, fg_node a, fg_node b) { return binary(g, FG_OP_MINIMUM, a, b); }
fg_node fg_greater(fg_graph *g, fg_node a, fg_node b) { return binary(g, FG_OP_GREATER, a, b); }
fg_node fg_equal(fg_graph *g, fg_node a, fg_node b) { return binary(g, FG_OP_EQUAL, a, b); }
fg_node fg_neg(fg_graph *g, fg_node x) { return unary(g, FG_OP_NEG, x); }
fg_node fg_exp(fg_graph *g, fg_node x) { return unary(g, FG_OP_EXP, x); }
fg_node fg_log(fg_graph *g, fg_node x) { return unary(g, FG_OP_LOG, x); }
fg_node fg_log1p(fg_graph *g, fg_node x) { return unary(g, FG_OP_LOG1P, x); }
fg_node fg_expm1(fg_graph *g, fg_node x) { return unary(g, FG_OP_EXPM1, x); }
fg_node fg_sqrt(fg_graph *g, fg_node x) { return unary(g, FG_OP_SQRT, x); }
fg_node fg_square(fg_graph *g, fg_node x) { return unary(g, FG_OP_SQUARE, x); }
fg_node fg_abs(fg_graph *g, fg_node x) { return unary(g, FG_OP_ABS, x); }
fg_node fg_tanh(fg_graph *g, fg_node x) { return unary(g, FG_OP_TANH, x); }
fg_node fg_sigmoid(fg_graph *g, fg_node x) { return unary(g, FG_OP_SIGMOID, x); }
fg_node fg_logsigmoid(fg_graph *g, fg_node x) { return unary(g, FG_OP_LOGSIGMOID, x); }
fg_node fg_softplus(fg_graph *g, fg_node x) { return unary(g, FG_OP_SOFTPLUS, x); }
fg_node fg_relu(fg_graph *g, fg_node x) { return unary(g, FG_OP_RELU, x); }
fg_node fg_sign(fg_graph *g, fg_node x) { return unary(g, FG_OP_SIGN, x); }
fg_node fg_stop_gradient(fg_graph *g, fg_node x) { return unary(g, FG_OP_STOP_GRADIENT, x); }

fg_node fg_pow(fg_graph *g, fg_node x, double p) {
  fg_pow_attr at;
  memset(&at, 0, sizeof at);
  at.p = p;
  return fg_graph_add_node(g, FG_OP_POW, 1, &x, &at);
}

fg_node fg_where(fg_graph *g, fg_node cond, fg_node a, fg_node b) {
  fg_node in[3] = {cond, a, b};
  return fg_graph_add_node(g, FG_OP_WHERE, 3, in, NULL);
}

fg_node fg_cast(fg_graph *g, fg_node x, fg_dtype t) {
  fg_cast_attr at;
  memset(&at, 0, sizeof at);
  at.dtype = (int32_t)t;
  return fg_graph_add_node(g, FG_OP_CAST, 1, &x, &at);
}

fg_node fg_add_scalar(fg_graph *g, fg_node x, double c) {
  return fg_add(g, x, fg_scalar(g, c, fg_node_dtype(g, x)));
}

fg_node fg_mul_scalar(fg_graph *g, fg_node x, double c) {
  return fg_mul(g, x, fg_scalar(g, c, fg_node_dtype(g, x)));
}
