/* Elementwise ops.  Binary and ternary ops broadcast as NumPy does.  Every VJP is written with
 * graph ops, so gradients of gradients come free; the kernels are in ops/kernels/elementwise.c. */
#include <math.h>
#include <string.h>

#include "core/ir/op.h"
#include "ops/infer.h"
#include "ops/kernels/kernels.h"
#include "ops/ops.h"

/* ---------------------------------------------------------------- shape rules ---- */

static fg_status infer_unary(fg_infer_args *a) {
  (void)a;
  return FG_OK;
}

static fg_status infer_broadcast(fg_infer_args *a) {
  fg_shape out = a->in_shape[0];
  for (int i = 1; i < a->n_in; i++) {
    if (a->in_dtype[i] != a->in_dtype[0])
      return fg_infer_fail(a, FG_E_DTYPE, "inputs must share one dtype (input %d is %s, input 0 "
                           "%s)", i, fg_dtype_name(a->in_dtype[i]), fg_dtype_name(a->in_dtype[0]));
    if (!fg_shape_broadcast(&out, &a->in_shape[i], &out))
      return fg_infer_fail(a, FG_E_SHAPE, "shapes do not broadcast together (NumPy rules: "
                           "trailing dimensions must be equal or 1)");
  }
  a->out_shape = out;
  return FG_OK;
}

static fg_status infer_pow(fg_infer_args *a) {
  const fg_pow_attr *at = a->attr;
  if (!isfinite(at->p))
    return fg_infer_fail(a, FG_E_MISUSE, "the exponent must be finite, got %g", at->p);
  return FG_OK;
}

static fg_status infer_clamp(fg_infer_args *a) {
  const fg_clamp_attr *at = a->attr;
  if (isnan(at->lo) || isnan(at->hi) || at->lo > at->hi)
    return fg_infer_fail(a, FG_E_MISUSE, "bounds [%g, %g] must be numbers with lo <= hi (an "
                         "infinite one leaves that side open)", at->lo, at->hi);
  return FG_OK;
}

static fg_status infer_cast(fg_infer_args *a) {
  const fg_cast_attr *at = a->attr;
  if ((unsigned)at->dtype >= FG_DTYPE_COUNT)
    return fg_infer_fail(a, FG_E_DTYPE, "cannot cast to dtype %d", at->dtype);
  a->out_dtype = (fg_dtype)at->dtype;
  return FG_OK;
}

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
UNARY_VJP(sin, fg_cos(g, x))
UNARY_VJP(cos, fg_neg(g, fg_sin(g, x)))
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

/* The gradient passes where lo <= x <= hi (bounds included, as torch.clamp). */
static fg_status vjp_clamp(fg_graph *g, fg_node node, fg_node gout, uint32_t need, fg_node *gin) {
  const fg_clamp_attr *at = fg_node_attr(g, node);
  if (!WANT(0)) return fg_graph_status(g);
  fg_node x = IN(0);
  fg_dtype t = fg_node_dtype(g, x);
  fg_node inside = fg_logical_and(g, fg_greater_equal(g, x, fg_scalar(g, at->lo, t)),
                                  fg_less_equal(g, x, fg_scalar(g, at->hi, t)));
  gin[0] = fg_mul(g, gout, inside);
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
      FG_KERNELS(op_name), .vjp = vjp_fn}

#define BINARY_DEF(op_name, extra_flags, vjp_fn)                                      \
  const fg_op_def fg_opdef_##op_name = {                                              \
      .name = #op_name, .n_in = 2, .flags = EW | (extra_flags),                       \
      .infer = infer_broadcast, FG_KERNELS(op_name), .vjp = vjp_fn}

BINARY_DEF(add, FG_OPF_COMMUTATIVE, vjp_add);
BINARY_DEF(sub, 0, vjp_sub);
BINARY_DEF(mul, FG_OPF_COMMUTATIVE, vjp_mul);
BINARY_DEF(div, 0, vjp_div);
BINARY_DEF(maximum, FG_OPF_COMMUTATIVE, vjp_maximum);
BINARY_DEF(minimum, FG_OPF_COMMUTATIVE, vjp_minimum);
BINARY_DEF(greater, FG_OPF_NODIFF, NULL);
BINARY_DEF(equal, FG_OPF_NODIFF | FG_OPF_COMMUTATIVE, NULL);
BINARY_DEF(greater_equal, FG_OPF_NODIFF, NULL);
BINARY_DEF(not_equal, FG_OPF_NODIFF | FG_OPF_COMMUTATIVE, NULL);
BINARY_DEF(logical_and, FG_OPF_NODIFF | FG_OPF_COMMUTATIVE, NULL);
BINARY_DEF(logical_or, FG_OPF_NODIFF | FG_OPF_COMMUTATIVE, NULL);
UNARY_DEF(neg, 0, vjp_neg);
UNARY_DEF(exp, FG_OPF_COSTLY, vjp_exp);
UNARY_DEF(log, FG_OPF_COSTLY, vjp_log);
UNARY_DEF(log1p, FG_OPF_COSTLY, vjp_log1p);
UNARY_DEF(expm1, FG_OPF_COSTLY, vjp_expm1);
UNARY_DEF(sqrt, 0, vjp_sqrt);
UNARY_DEF(square, 0, vjp_square);
UNARY_DEF(abs, 0, vjp_abs);
UNARY_DEF(tanh, FG_OPF_COSTLY, vjp_tanh);
UNARY_DEF(sigmoid, FG_OPF_COSTLY, vjp_sigmoid);
UNARY_DEF(logsigmoid, FG_OPF_COSTLY, vjp_logsigmoid);
UNARY_DEF(softplus, FG_OPF_COSTLY, vjp_softplus);
UNARY_DEF(relu, 0, vjp_relu);
UNARY_DEF(sin, FG_OPF_COSTLY, vjp_sin);
UNARY_DEF(cos, FG_OPF_COSTLY, vjp_cos);
UNARY_DEF(sign, FG_OPF_NODIFF, NULL);

const fg_op_def fg_opdef_pow = {
    .name = "pow", .n_in = 1, .flags = EW | FG_OPF_COSTLY, .attr_size = sizeof(fg_pow_attr),
    .infer = infer_pow, FG_KERNELS(pow), .vjp = vjp_pow};

const fg_op_def fg_opdef_clamp = {
    .name = "clamp", .n_in = 1, .flags = EW, .attr_size = sizeof(fg_clamp_attr),
    .infer = infer_clamp, FG_KERNELS(clamp), .vjp = vjp_clamp};

const fg_op_def fg_opdef_stop_gradient = {
    .name = "stop_gradient", .n_in = 1, .flags = EW | FG_OPF_NODIFF, .infer = infer_unary,
    FG_KERNELS(stop_gradient)};

const fg_op_def fg_opdef_where = {
    .name = "where", .n_in = 3, .flags = FG_OPF_ELEMENTWISE, .nondiff_inputs = 1u << 0,
    .infer = infer_broadcast, FG_KERNELS(where), .vjp = vjp_where};

const fg_op_def fg_opdef_cast = {
    .name = "cast", .n_in = 1, .flags = FG_OPF_ELEMENTWISE, .attr_size = sizeof(fg_cast_attr),
    .infer = infer_cast, FG_KERNELS(cast), .vjp = vjp_cast};

/* ---------------------------------------------------------------- builders ---- */

static fg_node unary(fg_graph *g, int op, fg_node x) {
  return fg_graph_add_node(g, op, 1, &x, NULL);
}

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
fg_node fg_greater_equal(fg_graph *g, fg_node a, fg_node b) {
  return binary(g, FG_OP_GREATER_EQUAL, a, b);
}
fg_node fg_not_equal(fg_graph *g, fg_node a, fg_node b) { return binary(g, FG_OP_NOT_EQUAL, a, b); }
/* a < b is b > a, and a <= b is b >= a: the same ops with their inputs swapped, NaN-exact. */
fg_node fg_less(fg_graph *g, fg_node a, fg_node b) { return binary(g, FG_OP_GREATER, b, a); }
fg_node fg_less_equal(fg_graph *g, fg_node a, fg_node b) {
  return binary(g, FG_OP_GREATER_EQUAL, b, a);
}
fg_node fg_logical_and(fg_graph *g, fg_node a, fg_node b) {
  return binary(g, FG_OP_LOGICAL_AND, a, b);
}
fg_node fg_logical_or(fg_graph *g, fg_node a, fg_node b) {
  return binary(g, FG_OP_LOGICAL_OR, a, b);
}
fg_node fg_logical_not(fg_graph *g, fg_node x) {
  return fg_equal(g, x, fg_scalar(g, 0.0, fg_node_dtype(g, x)));
}
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
fg_node fg_sin(fg_graph *g, fg_node x) { return unary(g, FG_OP_SIN, x); }
fg_node fg_cos(fg_graph *g, fg_node x) { return unary(g, FG_OP_COS, x); }
fg_node fg_sign(fg_graph *g, fg_node x) { return unary(g, FG_OP_SIGN, x); }
fg_node fg_stop_gradient(fg_graph *g, fg_node x) { return unary(g, FG_OP_STOP_GRADIENT, x); }

fg_node fg_pow(fg_graph *g, fg_node x, double p) {
  fg_pow_attr at;
  memset(&at, 0, sizeof at);
  at.p = p;
  return fg_graph_add_node(g, FG_OP_POW, 1, &x, &at);
}

fg_node fg_clamp(fg_graph *g, fg_node x, double lo, double hi) {
  fg_clamp_attr at;
  memset(&at, 0, sizeof at);
  at.lo = lo, at.hi = hi;
  return fg_graph_add_node(g, FG_OP_CLAMP, 1, &x, &at);
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
