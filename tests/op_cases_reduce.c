/* Cases for the reduction family (ops/reduce.c): sum and max, plus the composites mean,
 * logsumexp and sum_to (covered under the primitive they end in).  References walk the input
 * once in row-major order and drop the reduced axes from each element's index.  The criterion
 * tests at the end cover what the table cannot: infinite rows, ties, the no-node path of
 * sum_to, axis-mask handling and thread-count independence of the kernels. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "ops/autodiff/autodiff.h"
#include "ops/autodiff/gradcheck.h"
#include "core/ir/op.h"
#include "core/runtime/program.h"
#include "tests/op_cases.h"

/* Error detail of the last failing library call, for assertion messages. */
static fg_err terr __attribute__((unused));

typedef struct reduce_ctx {
  uint32_t axes;
  bool keepdims;
} reduce_ctx;

static bool is_reduced(uint32_t axes, int ndim, int axis) {
  if (axes == FG_ALL_AXES) return axis < ndim;
  return (axes >> axis) & 1u;
}

/* Flat output index of input element `flat`: its multi-index without the reduced axes (a kept
 * size-1 axis contributes index 0, so keepdims does not change it). */
static int64_t out_index(const fg_shape *in, uint32_t axes, int64_t flat) {
  int64_t idx = 0, mult = 1;
  for (int d = in->ndim - 1; d >= 0; d--) {
    int64_t i = flat % in->d[d];
    flat /= in->d[d];
    if (is_reduced(axes, in->ndim, d)) continue;
    idx += i * mult;
    mult *= in->d[d];
  }
  return idx;
}

static int64_t reduced_count(const fg_shape *in, uint32_t axes) {
  int64_t n = 1;
  for (int d = 0; d < in->ndim; d++)
    if (is_reduced(axes, in->ndim, d)) n *= in->d[d];
  return n;
}

static void ref_sum(const fg_tensor *const *in, fg_tensor *out, const void *ctx) {
  const reduce_ctx *c = ctx;
  fg_tensor_fill(out, 0.0);
  for (int64_t j = 0; j < fg_tensor_numel(in[0]); j++) {
    int64_t o = out_index(&in[0]->shape, c->axes, j);
    fg_tensor_set(out, o, fg_tensor_get(out, o) + fg_tensor_get(in[0], j));
  }
}

static void ref_max(const fg_tensor *const *in, fg_tensor *out, const void *ctx) {
  const reduce_ctx *c = ctx;
  fg_tensor_fill(out, -INFINITY);
  for (int64_t j = 0; j < fg_tensor_numel(in[0]); j++) {
    int64_t o = out_index(&in[0]->shape, c->axes, j);
    double v = fg_tensor_get(in[0], j);
    if (v > fg_tensor_get(out, o)) fg_tensor_set(out, o, v);
  }
}

static void ref_mean(const fg_tensor *const *in, fg_tensor *out, const void *ctx) {
  ref_sum(in, out, ctx);
  double n = (double)reduced_count(&in[0]->shape, ((const reduce_ctx *)ctx)->axes);
  for (int64_t j = 0; j < fg_tensor_numel(out); j++) fg_tensor_set(out, j, fg_tensor_get(out, j) / n);
}

/* log(sum(exp(x))) directly: fine for the moderate inputs the cases draw. */
static void ref_logsumexp(const fg_tensor *const *in, fg_tensor *out, const void *ctx) {
  const reduce_ctx *c = ctx;
  fg_tensor_fill(out, 0.0);
  for (int64_t j = 0; j < fg_tensor_numel(in[0]); j++) {
    int64_t o = out_index(&in[0]->shape, c->axes, j);
    fg_tensor_set(out, o, fg_tensor_get(out, o) + exp(fg_tensor_get(in[0], j)));
  }
  for (int64_t j = 0; j < fg_tensor_numel(out); j++) fg_tensor_set(out, j, log(fg_tensor_get(out, j)));
}

static fg_node build_sum(fg_graph *g, const fg_node *in, const void *ctx) {
  const reduce_ctx *c = ctx;
  return fg_sum(g, in[0], c->axes, c->keepdims);
}
static fg_node build_max(fg_graph *g, const fg_node *in, const void *ctx) {
  const reduce_ctx *c = ctx;
  return fg_max(g, in[0], c->axes, c->keepdims);
}
static fg_node build_mean(fg_graph *g, const fg_node *in, const void *ctx) {
  const reduce_ctx *c = ctx;
  return fg_mean(g, in[0], c->axes, c->keepdims);
}
static fg_node build_logsumexp(fg_graph *g, const fg_node *in, const void *ctx) {
  const reduce_ctx *c = ctx;
  return fg_logsumexp(g, in[0], c->axes, c->keepdims);
}

/* sum_to: the context is the target shape; the reference adds each input element into the
 * target element it broadcasts from. */
static fg_node build_sum_to(fg_graph *g, const fg_node *in, const void *ctx) {
  return fg_sum_to(g, in[0], *(const fg_shape *)ctx);
}
static void ref_sum_to(const fg_tensor *const *in, fg_tensor *out, const void *ctx) {
  const fg_shape *to = ctx, *from = &in[0]->shape;
  fg_tensor_fill(out, 0.0);
  for (int64_t j = 0; j < fg_tensor_numel(in[0]); j++) {
    int64_t flat = j, idx = 0, mult = 1;
    for (int d = from->ndim - 1; d >= 0; d--) {
      int64_t i = flat % from->d[d];
      flat /= from->d[d];
      int t = d - (from->ndim - to->ndim);
      if (t < 0) continue;
      if (to->d[t] != 1) idx += i * mult;
      mult *= to->d[t];
    }
    fg_tensor_set(out, idx, fg_tensor_get(out, idx) + fg_tensor_get(in[0], j));
  }
}

/* cumsum: the context is (axis, reverse); the reference sums along the axis element by element,
 * through multi-indices. */
typedef struct cumsum_ctx {
  int axis;
  bool reverse;
} cumsum_ctx;

static fg_node build_cumsum(fg_graph *g, const fg_node *in, const void *ctx) {
  const cumsum_ctx *c = ctx;
  return fg_cumsum(g, in[0], c->axis, c->reverse);
}
static void ref_cumsum(const fg_tensor *const *in, fg_tensor *out, const void *ctx) {
  const cumsum_ctx *c = ctx;
  const fg_shape *s = &in[0]->shape;
  int axis = c->axis < 0 ? c->axis + (int)s->ndim : c->axis;
  int64_t stride = 1;
  for (int d = axis + 1; d < s->ndim; d++) stride *= s->d[d];
  for (int64_t j = 0; j < fg_tensor_numel(out); j++) {
    int64_t pos = j / stride % s->d[axis], start = j - pos * stride;
    double acc = 0;
    for (int64_t t = 0; t < s->d[axis]; t++)
      if (c->reverse ? t >= pos : t <= pos) acc += fg_tensor_get(in[0], start + t * stride);
    fg_tensor_set(out, j, acc);
  }
}

#define RED(axes, keep) (&(const reduce_ctx){(axes), (keep)})
#define SCAN(axis, reverse) (&(const cumsum_ctx){(axis), (reverse)})
#define S0 {0, {0}}
#define S2(a, b) {2, {a, b}}
#define S3(a, b, c) {3, {a, b, c}}
#define S4(a, b, c, d) {4, {a, b, c, d}}
#define AX(i) FG_AXIS(i)

static const fg_shape to_3_1 = S2(3, 1), to_1_1_3 = S3(1, 1, 3);

static const op_case cases[] = {
    {"sum", "axis 1 of [3,4,5]", 1, {S3(3, 4, 5)}, -2, 2, build_sum, RED(AX(1), false), ref_sum, .gradgrad = true},
    {"sum", "axes 0,2 of [3,4,5], keepdims", 1, {S3(3, 4, 5)}, -2, 2, build_sum, RED(AX(0) | AX(2), true), ref_sum, .gradgrad = false},
    {"sum", "all axes of [2,3,4]", 1, {S3(2, 3, 4)}, -2, 2, build_sum, RED(FG_ALL_AXES, false), ref_sum, .gradgrad = false},
    {"sum", "all axes of [2,3], keepdims", 1, {S2(2, 3)}, -2, 2, build_sum, RED(FG_ALL_AXES, true), ref_sum, .gradgrad = false},
    {"sum", "axes 1,3 of [2,3,2,4] (interleaved)", 1, {S4(2, 3, 2, 4)}, -2, 2, build_sum, RED(AX(1) | AX(3), false), ref_sum, .gradgrad = false},
    {"sum", "axis 0 of [3,150] (rows wider than a chunk)", 1, {S2(3, 150)}, -2, 2, build_sum, RED(AX(0), false), ref_sum, .gradgrad = false},
    {"sum", "axes 1,2 of [2,1,3,1] (size-1 axes)", 1, {S4(2, 1, 3, 1)}, -2, 2, build_sum, RED(AX(1) | AX(2), true), ref_sum, .gradgrad = false},
    {"sum", "zero-sized axis 1 of [2,0,3] gives 0", 1, {S3(2, 0, 3)}, -2, 2, build_sum, RED(AX(1), false), ref_sum, .gradgrad = false},
    {"sum", "axis 1 of [0,3] (empty output)", 1, {S2(0, 3)}, -2, 2, build_sum, RED(AX(1), false), ref_sum, .gradgrad = false},
    {"sum", "0-d, all axes", 1, {S0}, -2, 2, build_sum, RED(FG_ALL_AXES, false), ref_sum, .gradgrad = false},
    {"sum", "no axes (a copy)", 1, {S2(2, 3)}, -2, 2, build_sum, RED(0, false), ref_sum, .gradgrad = false},
    {"sum", "mean (composite): axes 0,2 of [3,4,5]", 1, {S3(3, 4, 5)}, -2, 2, build_mean, RED(AX(0) | AX(2), false), ref_mean, .gradgrad = true},
    {"sum", "mean (composite): all axes, keepdims", 1, {S2(4, 5)}, -2, 2, build_mean, RED(FG_ALL_AXES, true), ref_mean, .gradgrad = false},
    {"sum", "sum_to (composite): [2,3,4] -> [3,1]", 1, {S3(2, 3, 4)}, -2, 2, build_sum_to, &to_3_1, ref_sum_to, .gradgrad = true},
    {"sum", "sum_to (composite): [4,2,3] -> [1,1,3]", 1, {S3(4, 2, 3)}, -2, 2, build_sum_to, &to_1_1_3, ref_sum_to, .gradgrad = false},
    {"max", "axis 1 of [3,4,5]", 1, {S3(3, 4, 5)}, -2, 2, build_max, RED(AX(1), false), ref_max, .gradgrad = true},
    {"max", "axes 0,2 of [3,4,5], keepdims", 1, {S3(3, 4, 5)}, -2, 2, build_max, RED(AX(0) | AX(2), true), ref_max, .gradgrad = false},
    {"max", "all axes of [2,3,4]", 1, {S3(2, 3, 4)}, -2, 2, build_max, RED(FG_ALL_AXES, false), ref_max, .gradgrad = false},
    {"max", "axes 1,3 of [2,3,2,4] (interleaved)", 1, {S4(2, 3, 2, 4)}, -2, 2, build_max, RED(AX(1) | AX(3), true), ref_max, .gradgrad = false},
    {"max", "axis 0 of [3,150] (rows wider than a chunk)", 1, {S2(3, 150)}, -2, 2, build_max, RED(AX(0), false), ref_max, .gradgrad = false},
    {"max", "zero-sized axis 1 of [2,0,3] gives -inf", 1, {S3(2, 0, 3)}, -2, 2, build_max, RED(AX(1), false), ref_max, .gradgrad = false},
    {"max", "0-d, all axes", 1, {S0}, -2, 2, build_max, RED(FG_ALL_AXES, true), ref_max, .gradgrad = false},
    {"cumsum", "last axis of [3,5]", 1, {S2(3, 5)}, -2, 2, build_cumsum, SCAN(-1, false), ref_cumsum, .gradgrad = true},
    {"cumsum", "axis 1 of [2,4,3], reversed", 1, {S3(2, 4, 3)}, -2, 2, build_cumsum, SCAN(1, true), ref_cumsum, .gradgrad = true},
    {"cumsum", "axis 0 of [4,3]", 1, {S2(4, 3)}, -2, 2, build_cumsum, SCAN(0, false), ref_cumsum},
    {"cumsum", "zero-sized axis of [2,0]", 1, {S2(2, 0)}, -2, 2, build_cumsum, SCAN(1, false), ref_cumsum},
    {"max", "logsumexp (composite): axis 1 of [3,4,5]", 1, {S3(3, 4, 5)}, -3, 3, build_logsumexp, RED(AX(1), false), ref_logsumexp, .gradgrad = true},
    {"max", "logsumexp (composite): all axes, keepdims", 1, {S2(3, 4)}, -3, 3, build_logsumexp, RED(FG_ALL_AXES, true), ref_logsumexp, .gradgrad = false},
    {"max", "logsumexp (composite): zero-sized axis gives -inf", 1, {S2(2, 0)}, -3, 3, build_logsumexp, RED(AX(1), false), ref_logsumexp, .gradgrad = false},
};

static fg_node input23(fg_graph *g) { return fg_input(g, "x", FG_F32, fg_shape2(2, 3)); }
static void bad_sum_axis(fg_graph *g) { fg_sum(g, input23(g), AX(2), false); }
static void bad_max_axis(fg_graph *g) { fg_max(g, fg_input(g, "x", FG_F64, fg_shape0()), AX(0), true); }
static void bad_mask_not_all(fg_graph *g) { fg_sum(g, input23(g), 0x7fu, false); }
static void bad_mean_axis(fg_graph *g) { fg_mean(g, input23(g), AX(3), false); }
static void bad_logsumexp_axis(fg_graph *g) { fg_logsumexp(g, input23(g), AX(5), false); }
static void bad_sum_to(fg_graph *g) { fg_sum_to(g, input23(g), fg_shape1(2)); }
static void bad_sum_to_rank(fg_graph *g) { fg_sum_to(g, input23(g), fg_shape3(1, 2, 3)); }
static void bad_cumsum_axis(fg_graph *g) { fg_cumsum(g, input23(g), 2, false); }

static const op_reject_case rejects[] = {
    {"sum", "axis 2 of a 2-d input", bad_sum_axis, FG_E_SHAPE, "op 'sum'"},
    {"max", "axis 0 of a 0-d input", bad_max_axis, FG_E_SHAPE, "op 'max'"},
    {"sum", "mask 0x7f is not FG_ALL_AXES", bad_mask_not_all, FG_E_SHAPE, "axis 2"},
    {"sum", "mean over axis 3 of a 2-d input", bad_mean_axis, FG_E_SHAPE, "sum"},
    {"max", "logsumexp over axis 5 of a 2-d input", bad_logsumexp_axis, FG_E_SHAPE, "max"},
    {"sum", "sum_to [2,3] -> [2]", bad_sum_to, FG_E_SHAPE, "sum_to"},
    {"sum", "sum_to [2,3] -> [1,2,3] (more axes)", bad_sum_to_rank, FG_E_SHAPE, "sum_to"},
    {"cumsum", "axis 2 of a 2-d input", bad_cumsum_axis, FG_E_SHAPE, "op 'cumsum'"},
};

const op_case_list op_cases_reduce = {"reduce", cases, sizeof cases / sizeof *cases, rejects,
                                      sizeof rejects / sizeof *rejects};

/* ---- criterion tests beyond the table ---- */

/* Runs y (one input "x" bound to the given values) and returns its float64 output. */
static fg_tensor *eval1(fg_graph *g, fg_node y, fg_shape xs, const double *xv) {
  cr_assert_eq(fg_graph_status(g), FG_OK, "%s", fg_graph_errmsg(g));
  fg_program *p;
  fg_err e;
  cr_assert_eq(fg_program_new(&p, g, 1, &y, &e), FG_OK, "%s", e.msg);
  fg_tensor *x, *out;
  cr_assert_eq(fg_tensor_from_data(&x, FG_F64, &xs, xv, &e), FG_OK);
  cr_assert_eq(fg_program_bind(p, "x", x, &terr), FG_OK, "%s", terr.msg);
  cr_assert_eq(fg_program_run(p, &terr), FG_OK, "%s", terr.msg);
  cr_assert_eq(fg_tensor_copy(&out, fg_program_output(p, 0), FG_F64, &e), FG_OK);
  fg_tensor_free(x);
  fg_program_free(p);
  return out;
}

Test(reduce, logsumexp_of_infinite_rows) {
  const double xv[] = {-INFINITY, -INFINITY, -INFINITY, 1, 2, 3, 0, INFINITY, 1, 1000, 1000, 1000};
  fg_graph *g;
  fg_graph_new(&g, NULL);
  fg_node x = fg_input(g, "x", FG_F64, fg_shape2(4, 3));
  fg_tensor *y = eval1(g, fg_logsumexp(g, x, AX(1), false), fg_shape2(4, 3), xv);
  cr_assert_eq(y->shape.ndim, 1);
  cr_expect(isinf(fg_tensor_get(y, 0)) && fg_tensor_get(y, 0) < 0, "all -inf row: %g", fg_tensor_get(y, 0));
  cr_expect_float_eq(fg_tensor_get(y, 1), log(exp(1.0) + exp(2.0) + exp(3.0)), 1e-12);
  cr_expect(isinf(fg_tensor_get(y, 2)) && fg_tensor_get(y, 2) > 0, "+inf row: %g", fg_tensor_get(y, 2));
  cr_expect_float_eq(fg_tensor_get(y, 3), 1000 + log(3.0), 1e-9, "large values must not overflow");
  fg_tensor_free(y);
  fg_graph_free(g);
}

Test(reduce, mean_of_nothing_is_nan) {
  fg_graph *g;
  fg_graph_new(&g, NULL);
  fg_node x = fg_input(g, "x", FG_F64, fg_shape2(2, 0));
  const double none[1] = {0};
  fg_tensor *y = eval1(g, fg_mean(g, x, AX(1), false), fg_shape2(2, 0), none);
  cr_expect(isnan(fg_tensor_get(y, 0)) && isnan(fg_tensor_get(y, 1)));
  fg_tensor_free(y);
  fg_graph_free(g);
}

Test(reduce, max_gradient_shares_ties_evenly) {
  const double xv[] = {1, 3, 3, 2, 2, 2};
  fg_graph *g;
  fg_graph_new(&g, NULL);
  fg_node x = fg_input(g, "x", FG_F64, fg_shape2(2, 3)), dx;
  fg_node loss = fg_sum(g, fg_max(g, x, AX(1), false), FG_ALL_AXES, false);
  cr_assert_eq(fg_grad(g, loss, 1, &x, &dx), FG_OK, "%s", fg_graph_errmsg(g));
  fg_tensor *d = eval1(g, dx, fg_shape2(2, 3), xv);
  const double want[] = {0, 0.5, 0.5, 1.0 / 3, 1.0 / 3, 1.0 / 3};
  for (int i = 0; i < 6; i++) cr_expect_float_eq(fg_tensor_get(d, i), want[i], 1e-15, "element %d", i);
  fg_tensor_free(d);
  fg_graph_free(g);
}

Test(reduce, sum_to_adds_no_node_when_nothing_was_broadcast) {
  fg_graph *g;
  fg_graph_new(&g, NULL);
  fg_node x = fg_input(g, "x", FG_F32, fg_shape3(2, 1, 3));
  int32_t before = fg_graph_node_count(g);
  cr_expect_eq(fg_sum_to(g, x, fg_shape3(2, 1, 3)), x);
  cr_expect_eq(fg_graph_node_count(g), before);
  /* only leading axes: one sum, no reshape */
  fg_node s = fg_sum_to(g, x, fg_shape2(1, 3));
  cr_expect_eq(fg_node_op(g, s), FG_OP_SUM);
  cr_expect_eq(fg_graph_node_count(g), before + 1);
  fg_shape want = fg_shape2(1, 3), got = fg_node_shape(g, s);
  cr_expect(fg_shape_equal(&got, &want));
  fg_graph_free(g);
}

Test(reduce, all_axes_resolves_to_the_same_attribute) {
  fg_graph *g;
  fg_graph_new(&g, NULL);
  fg_node x = fg_input(g, "x", FG_F32, fg_shape2(2, 3));
  fg_node a = fg_sum(g, x, FG_ALL_AXES, false), b = fg_sum(g, x, AX(0) | AX(1), false);
  cr_assert_eq(fg_graph_status(g), FG_OK);
  cr_expect_eq(memcmp(fg_node_attr(g, a), fg_node_attr(g, b), sizeof(fg_reduce_attr)), 0,
               "CSE must see sum over FG_ALL_AXES and over every axis by name as equal");
  fg_graph_free(g);
}

Test(reduce, bad_axes_message_names_the_axis_and_rank) {
  fg_graph *g;
  fg_graph_new(&g, NULL);
  fg_node x = fg_input(g, "x", FG_F32, fg_shape2(2, 3));
  cr_expect_eq(fg_sum(g, x, AX(4), false), FG_POISON);
  cr_expect(strstr(fg_graph_errmsg(g), "axis 4") && strstr(fg_graph_errmsg(g), "2 axes"), "%s",
            fg_graph_errmsg(g));
  /* sticky: later builders return poison and keep the first message */
  cr_expect_eq(fg_max(g, x, AX(0), false), FG_POISON);
  cr_expect_eq(fg_sum_to(g, x, fg_shape1(3)), FG_POISON);
  cr_expect(strstr(fg_graph_errmsg(g), "axis 4"));
  fg_graph_free(g);
}

Test(reduce, poison_in_poison_out) {
  fg_graph *g;
  fg_graph_new(&g, NULL);
  fg_graph_fail(g, FG_E_SHAPE, "earlier failure");
  cr_expect_eq(fg_sum(g, FG_POISON, AX(0), false), FG_POISON);
  cr_expect_eq(fg_mean(g, FG_POISON, AX(0), true), FG_POISON);
  cr_expect_eq(fg_logsumexp(g, FG_POISON, FG_ALL_AXES, false), FG_POISON);
  cr_expect_eq(fg_sum_to(g, FG_POISON, fg_shape0()), FG_POISON);
  cr_expect_str_eq(fg_graph_errmsg(g), "earlier failure");
  fg_graph_free(g);
}

/* Runs a reduce kernel over its whole output split into nth parts. */
static void run_split(const fg_op_def *d, const fg_reduce_attr *at, const fg_shape *in_shape,
                      const double *in, fg_shape out_shape, double *out, int nth) {
  const void *ins[1] = {in};
  fg_dtype dt = FG_F64;
  for (int ith = 0; ith < nth; ith++) {
    fg_kargs k = {.attr = at, .n_in = 1, .in = ins, .in_shape = in_shape, .in_dtype = &dt,
                  .out = out, .out_shape = out_shape, .ith = ith, .nth = nth};
    cr_assert_eq(d->kernel_f64(&k), FG_OK);
  }
}

Test(reduce, kernels_give_the_same_bits_for_any_thread_count) {
  const fg_shape in_shape = S4(3, 5, 4, 70);
  double in[3 * 5 * 4 * 70], one[3 * 5 * 70], many[3 * 5 * 70];
  for (int i = 0; i < 3 * 5 * 4 * 70; i++) in[i] = sin(i * 0.37) * 1e3 + cos(i * 1.3);
  const uint32_t masks[] = {AX(2), AX(0) | AX(2), AX(3), AX(1) | AX(3), FG_ALL_AXES};
  const fg_op_def *defs[] = {&fg_opdef_sum, &fg_opdef_max};
  for (int di = 0; di < 2; di++) {
    for (int m = 0; m < 5; m++) {
      fg_reduce_attr at;
      memset(&at, 0, sizeof at);
      at.axes = masks[m];
      fg_infer_args a = {.n_in = 1, .in_shape = &in_shape, .attr = &at, .out_shape = in_shape};
      cr_assert_eq(defs[di]->infer(&a), FG_OK, "%s", a.why);
      int64_t n = fg_shape_count(&a.out_shape);
      run_split(defs[di], &at, &in_shape, in, a.out_shape, one, 1);
      for (int nth = 2; nth <= 7; nth++) {
        memset(many, 0xff, sizeof many);
        run_split(defs[di], &at, &in_shape, in, a.out_shape, many, nth);
        cr_expect_eq(memcmp(one, many, sizeof *one * (size_t)n), 0, "%s mask 0x%x, %d parts",
                     defs[di]->name, masks[m], nth);
      }
    }
  }
}

/* The composites' gradients through the whole engine, on shapes the table does not use. */
static fg_node build_lse_keep(fg_graph *g, const fg_node *in, void *ud) {
  (void)ud;
  return fg_logsumexp(g, in[0], AX(0) | AX(2), true);
}

Test(reduce, logsumexp_gradgradcheck_over_two_axes) {
  const fg_shape s = S3(3, 2, 4);
  fg_tensor *x;
  cr_assert_eq(fg_tensor_new(&x, FG_F64, &s, NULL), FG_OK);
  for (int64_t i = 0; i < fg_tensor_numel(x); i++) fg_tensor_set(x, i, sin(1.7 * (double)i));
  fg_gradcheck_report rep;
  cr_expect_eq(fg_gradcheck(build_lse_keep, NULL, 1, &x, NULL, &rep), FG_OK, "%s", rep.msg);
  cr_expect_eq(fg_gradgradcheck(build_lse_keep, NULL, 1, &x, NULL, &rep), FG_OK, "%s", rep.msg);
  fg_tensor_free(x);
}
