/* Cases for the elementwise family (ops/elementwise.c).  References are plain libm double
 * formulas with an explicit NumPy-broadcast index walk. */
#include <math.h>

#include "tests/op_cases.h"

/* Flat index into `in` of output element `flat` under NumPy broadcasting. */
static int64_t bcast_index(const fg_shape *out, const fg_shape *in, int64_t flat) {
  int64_t idx = 0, mult = 1;
  for (int d = out->ndim - 1; d >= 0; d--) {
    int64_t od = out->d[d], i = flat % od;
    flat /= od;
    int j = in->ndim - out->ndim + d;
    if (j >= 0) {
      if (in->d[j] != 1) idx += i * mult;
      mult *= in->d[j];
    }
  }
  return idx;
}

typedef struct unary_ctx {
  fg_node (*op)(fg_graph *, fg_node);
  double (*f)(double);
} unary_ctx;

static fg_node build_unary(fg_graph *g, const fg_node *in, const void *ctx) {
  return ((const unary_ctx *)ctx)->op(g, in[0]);
}
static void ref_unary(const fg_tensor *const *in, fg_tensor *out, const void *ctx) {
  for (int64_t j = 0; j < fg_tensor_numel(out); j++)
    fg_tensor_set(out, j, ((const unary_ctx *)ctx)->f(fg_tensor_get(in[0], j)));
}

typedef struct binary_ctx {
  fg_node (*op)(fg_graph *, fg_node, fg_node);
  double (*f)(double, double);
} binary_ctx;

static fg_node build_binary(fg_graph *g, const fg_node *in, const void *ctx) {
  return ((const binary_ctx *)ctx)->op(g, in[0], in[1]);
}
static void ref_binary(const fg_tensor *const *in, fg_tensor *out, const void *ctx) {
  for (int64_t j = 0; j < fg_tensor_numel(out); j++) {
    double a = fg_tensor_get(in[0], bcast_index(&out->shape, &in[0]->shape, j));
    double b = fg_tensor_get(in[1], bcast_index(&out->shape, &in[1]->shape, j));
    fg_tensor_set(out, j, ((const binary_ctx *)ctx)->f(a, b));
  }
}

static double r_neg(double x) { return -x; }
static double r_square(double x) { return x * x; }
static double r_sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }
static double r_logsigmoid(double x) { return -log1p(exp(-x)); }
static double r_softplus(double x) { return log1p(exp(x)); }
static double r_relu(double x) { return x > 0 ? x : 0; }
static double r_sign(double x) { return x > 0 ? 1 : x < 0 ? -1 : 0; }
static double r_id(double x) { return x; }
static double r_add(double a, double b) { return a + b; }
static double r_sub(double a, double b) { return a - b; }
static double r_mul(double a, double b) { return a * b; }
static double r_div(double a, double b) { return a / b; }
static double r_max(double a, double b) { return a > b ? a : b; }
static double r_min(double a, double b) { return a < b ? a : b; }
static double r_greater(double a, double b) { return a > b; }
static double r_ge(double a, double b) { return a >= b; }

static double r_le(double a, double b) { return a <= b; }
static double r_lt(double a, double b) { return a < b; }
static double r_and_pos(double a, double b) { return a > 0 && b > 0; }
static double r_or_pos(double a, double b) { return a > 0 || b > 0; }
static double r_not_pos(double x) { return !(x > 0); }
static double r_clamp(double x) { return x < -0.5 ? -0.5 : x > 0.5 ? 0.5 : x; }
static double r_clamp_lo(double x) { return x < 0.25 ? 0.25 : x; }
/* ties are what tell >= from >, and == from !=: compare a with max(a, b) */
static fg_node ge_to_max(fg_graph *g, fg_node a, fg_node b) { return fg_greater_equal(g, a, fg_maximum(g, a, b)); }
static fg_node ne_to_max(fg_graph *g, fg_node a, fg_node b) { return fg_not_equal(g, a, fg_maximum(g, a, b)); }
static fg_node le_to_min(fg_graph *g, fg_node a, fg_node b) { return fg_less_equal(g, a, fg_minimum(g, a, b)); }
static fg_node positive(fg_graph *g, fg_node x) { return fg_greater(g, x, fg_scalar(g, 0.0, fg_node_dtype(g, x))); }
static fg_node and_pos(fg_graph *g, fg_node a, fg_node b) { return fg_logical_and(g, positive(g, a), positive(g, b)); }
static fg_node or_pos(fg_graph *g, fg_node a, fg_node b) { return fg_logical_or(g, positive(g, a), positive(g, b)); }
static fg_node not_pos(fg_graph *g, fg_node x) { return fg_logical_not(g, positive(g, x)); }
static fg_node clamp_half(fg_graph *g, fg_node x) { return fg_clamp(g, x, -0.5, 0.5); }
static fg_node clamp_lo(fg_graph *g, fg_node x) { return fg_clamp(g, x, 0.25, INFINITY); }

static fg_node stop_twice(fg_graph *g, fg_node x) { return fg_mul(g, fg_stop_gradient(g, x), x); }
static double r_stop(double x) { return x * x; }
/* equal(a, max(a, b)) is 1 exactly where a >= b */
static fg_node equal_to_max(fg_graph *g, fg_node a, fg_node b) { return fg_equal(g, a, fg_maximum(g, a, b)); }

#define UN(op, f) (&(const unary_ctx){op, f})
#define BIN(op, f) (&(const binary_ctx){op, f})

static fg_node pow3(fg_graph *g, fg_node x) { return fg_pow(g, x, 3.0); }
static fg_node pow_half(fg_graph *g, fg_node x) { return fg_pow(g, x, 0.5); }
static fg_node pow_neg(fg_graph *g, fg_node x) { return fg_pow(g, x, -1.5); }
static double r_pow3(double x) { return x * x * x; }
static double r_pow_half(double x) { return sqrt(x); }
static double r_pow_neg(double x) { return 1.0 / (x * sqrt(x)); }
/* float32 runs go float32 -> float64 -> float32; float64 runs cast float64 to itself */
static fg_node cast_round_trip(fg_graph *g, fg_node x) {
  return fg_cast(g, fg_square(g, fg_cast(g, x, FG_F64)), fg_node_dtype(g, x));
}
static double r_cast(double x) { return x * x; }

/* where(x > 0, a, b): input 0 picks, so it gets no gradient */
static fg_node build_where(fg_graph *g, const fg_node *in, const void *ctx) {
  (void)ctx;
  fg_node mask = fg_greater(g, in[0], fg_scalar(g, 0.0, fg_node_dtype(g, in[0])));
  return fg_where(g, mask, in[1], in[2]);
}
static void ref_where(const fg_tensor *const *in, fg_tensor *out, const void *ctx) {
  (void)ctx;
  for (int64_t j = 0; j < fg_tensor_numel(out); j++) {
    double c = fg_tensor_get(in[0], bcast_index(&out->shape, &in[0]->shape, j));
    const fg_tensor *pick = c > 0 ? in[1] : in[2];
    fg_tensor_set(out, j, fg_tensor_get(pick, bcast_index(&out->shape, &pick->shape, j)));
  }
}

#define S1(a) {1, {a}}
#define S2(a, b) {2, {a, b}}
#define S3(a, b, c) {3, {a, b, c}}

static const op_case cases[] = {
    {"add", "same shape", 2, {S2(3, 4), S2(3, 4)}, -2, 2, build_binary, BIN(fg_add, r_add), ref_binary, .gradgrad = true},
    {"add", "broadcast [2,3,4] + [3,1]", 2, {S3(2, 3, 4), S2(3, 1)}, -2, 2, build_binary, BIN(fg_add, r_add), ref_binary},
    {"add", "0-d + [3]", 2, {{0, {0}}, S1(3)}, -2, 2, build_binary, BIN(fg_add, r_add), ref_binary},
    {"add", "zero-sized [0,3] + [3]", 2, {S2(0, 3), S1(3)}, -2, 2, build_binary, BIN(fg_add, r_add), ref_binary},
    {"sub", "broadcast [3,4] - [4]", 2, {S2(3, 4), S1(4)}, -2, 2, build_binary, BIN(fg_sub, r_sub), ref_binary},
    {"mul", "broadcast [2,1,4] * [3,1]", 2, {S3(2, 1, 4), S2(3, 1)}, -2, 2, build_binary, BIN(fg_mul, r_mul), ref_binary, .gradgrad = true},
    {"div", "same shape", 2, {S2(3, 4), S2(3, 4)}, 0.5, 2, build_binary, BIN(fg_div, r_div), ref_binary, .gradgrad = true},
    {"div", "broadcast [4] / [3,1]", 2, {S1(4), S2(3, 1)}, 0.5, 2, build_binary, BIN(fg_div, r_div), ref_binary},
    {"maximum", "same shape", 2, {S2(3, 4), S2(3, 4)}, -1, 1, build_binary, BIN(fg_maximum, r_max), ref_binary},
    {"minimum", "broadcast", 2, {S2(3, 4), S1(4)}, -1, 1, build_binary, BIN(fg_minimum, r_min), ref_binary},
    {"greater", "broadcast", 2, {S2(3, 4), S1(4)}, -1, 1, build_binary, BIN(fg_greater, r_greater), ref_binary, .no_grad = true},
    {"equal", "a == max(a, b)", 2, {S2(3, 4), S2(3, 4)}, -1, 1, build_binary, BIN(equal_to_max, r_ge), ref_binary, .no_grad = true},
    {"greater", "less (inputs swapped)", 2, {S2(3, 4), S1(4)}, -1, 1, build_binary, BIN(fg_less, r_lt), ref_binary, .no_grad = true},
    {"greater_equal", "a >= max(a, b): ties count", 2, {S2(3, 4), S2(3, 4)}, -1, 1, build_binary, BIN(ge_to_max, r_ge), ref_binary, .no_grad = true},
    {"greater_equal", "less_equal: a <= min(a, b)", 2, {S2(3, 4), S1(4)}, -1, 1, build_binary, BIN(le_to_min, r_le), ref_binary, .no_grad = true},
    {"not_equal", "a != max(a, b)", 2, {S2(3, 4), S2(3, 4)}, -1, 1, build_binary, BIN(ne_to_max, r_lt), ref_binary, .no_grad = true},
    {"logical_and", "a > 0 and b > 0, broadcast", 2, {S2(3, 4), S1(4)}, -1, 1, build_binary, BIN(and_pos, r_and_pos), ref_binary, .no_grad = true},
    {"logical_or", "a > 0 or b > 0", 2, {S2(3, 4), S2(3, 4)}, -1, 1, build_binary, BIN(or_pos, r_or_pos), ref_binary, .no_grad = true},
    {"equal", "logical_not (composite): not x > 0", 1, {S2(3, 4)}, -1, 1, build_unary, UN(not_pos, r_not_pos), ref_unary, .no_grad = true},
    {"sin", "", 1, {S2(3, 4)}, -4, 4, build_unary, UN(fg_sin, sin), ref_unary, .gradgrad = true},
    {"cos", "", 1, {S2(3, 4)}, -4, 4, build_unary, UN(fg_cos, cos), ref_unary, .gradgrad = true},
    {"clamp", "[-0.5, 0.5]", 1, {S2(3, 4)}, -1, 1, build_unary, UN(clamp_half, r_clamp), ref_unary, .gradgrad = true},
    {"clamp", "[0.25, inf): one side open", 1, {S2(3, 4)}, -1, 1, build_unary, UN(clamp_lo, r_clamp_lo), ref_unary},
    {"neg", "", 1, {S2(3, 4)}, -2, 2, build_unary, UN(fg_neg, r_neg), ref_unary},
    {"exp", "", 1, {S2(3, 4)}, -2, 2, build_unary, UN(fg_exp, exp), ref_unary, .gradgrad = true},
    {"log", "", 1, {S2(3, 4)}, 0.5, 3, build_unary, UN(fg_log, log), ref_unary, .gradgrad = true},
    {"log1p", "", 1, {S2(3, 4)}, -0.5, 2, build_unary, UN(fg_log1p, log1p), ref_unary},
    {"expm1", "", 1, {S2(3, 4)}, -2, 2, build_unary, UN(fg_expm1, expm1), ref_unary},
    {"sqrt", "", 1, {S2(3, 4)}, 0.5, 3, build_unary, UN(fg_sqrt, sqrt), ref_unary, .gradgrad = true},
    {"square", "", 1, {S2(3, 4)}, -2, 2, build_unary, UN(fg_square, r_square), ref_unary},
    {"abs", "", 1, {S2(3, 4)}, -2, 2, build_unary, UN(fg_abs, fabs), ref_unary},
    {"tanh", "", 1, {S2(3, 4)}, -2, 2, build_unary, UN(fg_tanh, tanh), ref_unary, .gradgrad = true},
    {"sigmoid", "", 1, {S2(3, 4)}, -4, 4, build_unary, UN(fg_sigmoid, r_sigmoid), ref_unary, .gradgrad = true},
    {"sigmoid", "large |x|", 1, {S1(6)}, -60, 60, build_unary, UN(fg_sigmoid, r_sigmoid), ref_unary},
    {"logsigmoid", "", 1, {S2(3, 4)}, -5, 5, build_unary, UN(fg_logsigmoid, r_logsigmoid), ref_unary, .gradgrad = true},
    {"softplus", "", 1, {S2(3, 4)}, -5, 5, build_unary, UN(fg_softplus, r_softplus), ref_unary, .gradgrad = true},
    {"softplus", "large |x|", 1, {S1(6)}, -60, 60, build_unary, UN(fg_softplus, r_softplus), ref_unary},
    {"relu", "", 1, {S2(3, 4)}, -2, 2, build_unary, UN(fg_relu, r_relu), ref_unary},
    {"pow", "p = 3", 1, {S2(3, 4)}, -2, 2, build_unary, UN(pow3, r_pow3), ref_unary, .gradgrad = true},
    {"pow", "p = 0.5", 1, {S2(3, 4)}, 0.5, 3, build_unary, UN(pow_half, r_pow_half), ref_unary},
    {"pow", "p = -1.5", 1, {S2(3, 4)}, 0.5, 3, build_unary, UN(pow_neg, r_pow_neg), ref_unary},
    {"where", "broadcast mask", 3, {S2(3, 1), S2(3, 4), S1(4)}, -1, 1, build_where, NULL, ref_where, .skip_grad_mask = 1, .gradgrad = true},
    {"cast", "square in float64, cast back", 1, {S2(3, 4)}, -2, 2, build_unary, UN(cast_round_trip, r_cast), ref_unary},
    {"sign", "", 1, {S2(3, 4)}, -2, 2, build_unary, UN(fg_sign, r_sign), ref_unary, .no_grad = true},
    {"stop_gradient", "stop(x) * x", 1, {S2(3, 4)}, -2, 2, build_unary, UN(stop_twice, r_stop), ref_unary, .no_grad = true},
    {"stop_gradient", "identity value", 1, {S2(3, 4)}, -2, 2, build_unary, UN(fg_stop_gradient, r_id), ref_unary, .no_grad = true},
};

static void bad_broadcast(fg_graph *g) {
  fg_add(g, fg_input(g, "a", FG_F32, fg_shape2(2, 3)), fg_input(g, "b", FG_F32, fg_shape1(4)));
}
static void bad_dtype(fg_graph *g) {
  fg_mul(g, fg_input(g, "a", FG_F32, fg_shape1(3)), fg_input(g, "b", FG_F64, fg_shape1(3)));
}
static void bad_where(fg_graph *g) {
  fg_node a = fg_input(g, "a", FG_F32, fg_shape2(2, 3));
  fg_where(g, fg_input(g, "c", FG_F32, fg_shape1(2)), a, a);
}
static void bad_pow(fg_graph *g) { fg_pow(g, fg_input(g, "a", FG_F32, fg_shape1(3)), NAN); }
static void bad_cast(fg_graph *g) { fg_cast(g, fg_input(g, "a", FG_F32, fg_shape1(3)), (fg_dtype)7); }
static void bad_clamp(fg_graph *g) { fg_clamp(g, fg_input(g, "a", FG_F32, fg_shape1(3)), 1.0, -1.0); }
static void bad_then_more(fg_graph *g) { /* sticky: later calls keep the first message */
  fg_node x = fg_input(g, "a", FG_F32, fg_shape2(2, 3));
  fg_node y = fg_sub(g, x, fg_input(g, "b", FG_F32, fg_shape1(5)));
  fg_exp(g, fg_mul(g, y, fg_input(g, "c", FG_F64, fg_shape1(1))));
}

static const op_reject_case rejects[] = {
    {"add", "[2,3] + [4]", bad_broadcast, FG_E_SHAPE, "op 'add' on inputs float32 [2, 3], float32 [4]"},
    {"mul", "float32 * float64", bad_dtype, FG_E_DTYPE, "mul"},
    {"where", "mask [2] vs [2,3]", bad_where, FG_E_SHAPE, "where"},
    {"pow", "NaN exponent", bad_pow, FG_E_MISUSE, "pow"},
    {"cast", "unknown dtype", bad_cast, FG_E_DTYPE, "cast"},
    {"clamp", "lo > hi", bad_clamp, FG_E_MISUSE, "clamp"},
    {"sub", "first error is kept", bad_then_more, FG_E_SHAPE, "'sub'"},
};

const op_case_list op_cases_elementwise = {"elementwise", cases, sizeof cases / sizeof *cases,
                                           rejects, sizeof rejects / sizeof *rejects};
