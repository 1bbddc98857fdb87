/* Derived log-dets (ops/autodiff/jacobian.h): the structure each kind of map is recognised as,
 * the structured log-det against the dense one (an independent computation: D VJPs and an LU)
 * in value and in gradient, the cases that must fall back to the dense route, and the message
 * when neither applies. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "core/rng.h"
#include "core/runtime/program.h"
#include "ops/autodiff/autodiff.h"
#include "ops/autodiff/gradcheck.h"
#include "ops/autodiff/jacobian.h"
#include "ops/ops.h"

/* A map y = f(x, w) of x [B, D] with a parameter-like input w (given as a graph input so that
 * gradchecks cover it); D is the event size, W the shape of w. */
typedef struct map_case {
  const char *name;
  int64_t d;
  fg_shape w;
  fg_node (*f)(fg_graph *g, fg_node x, fg_node w);
} map_case;

/* A strictly lower-triangular 0/1 mask [D, D] (entry (j, i) is 1 when j < i): x @ (w * mask)
 * makes element i depend on x_j, j < i, only (MADE with one hidden layer of width D). */
static fg_node strict_mask(fg_graph *g, int64_t d, fg_dtype t, bool with_diagonal) {
  double m[64 * 64];
  for (int64_t j = 0; j < d; j++)
    for (int64_t i = 0; i < d; i++) m[j * d + i] = j < i || (with_diagonal && j == i);
  return fg_constant_values(g, t, fg_shape2(d, d), m);
}

static fg_node masked(fg_graph *g, fg_node x, fg_node w, bool with_diagonal) {
  int64_t d = fg_node_shape(g, x).d[1];
  return fg_matmul(g, x, fg_mul(g, w, strict_mask(g, d, fg_node_dtype(g, x), with_diagonal)));
}

/* sinh, built from exp */
static fg_node f_sinh(fg_graph *g, fg_node x, fg_node w) {
  fg_node scaled = fg_mul(g, x, w);
  return fg_mul_scalar(g, fg_sub(g, fg_exp(g, scaled), fg_exp(g, fg_neg(g, scaled))), 0.5);
}

/* A piecewise-linear monotone map with bins looked up by searchsorted and gather: knots from a
 * cumsum of exp(w), per-feature tables [D, K]. */
static fg_node f_bins(fg_graph *g, fg_node x, fg_node w) {
  fg_shape xs = fg_node_shape(g, x), ws = fg_node_shape(g, w);
  int64_t d = xs.d[1], k = ws.d[1];
  fg_node heights = fg_exp(g, w), knots_y = fg_cumsum(g, heights, 1, false);
  fg_node knots_x = fg_add_scalar(g, fg_fill(g, 0.0, fg_node_dtype(g, x), ws), 0.0);
  double kx[64];
  for (int64_t i = 0; i < k; i++) kx[i] = -2.0 + 4.0 * (double)i / (double)k;
  knots_x = fg_add(g, knots_x, fg_constant_values(g, fg_node_dtype(g, x), fg_shape1(k), kx));
  fg_node x3 = fg_reshape(g, x, fg_shape3(xs.d[0], d, 1));
  fg_node bin = fg_clamp(g, fg_add_scalar(g, fg_searchsorted(g, fg_reshape(g, knots_x, fg_shape3(1, d, k)), x3, true), -1.0), 0, (double)(k - 1));
  fg_node left = fg_gather(g, fg_reshape(g, knots_x, fg_shape3(1, d, k)), bin, 2);
  fg_node base = fg_gather(g, fg_reshape(g, knots_y, fg_shape3(1, d, k)), bin, 2);
  fg_node slope = fg_gather(g, fg_reshape(g, heights, fg_shape3(1, d, k)), bin, 2);
  fg_node y3 = fg_add(g, base, fg_mul(g, fg_mul_scalar(g, slope, (double)k / 4.0), fg_sub(g, x3, left)));
  return fg_reshape(g, y3, xs);
}

/* MAF-style: y = x·exp(s) + m with s, m from a strictly masked matmul (an autoregressive map). */
static fg_node f_autoregressive(fg_graph *g, fg_node x, fg_node w) {
  fg_node h = fg_tanh(g, masked(g, x, w, false));
  return fg_add(g, fg_mul(g, x, fg_exp(g, fg_mul_scalar(g, h, 0.5))), fg_sin(g, h));
}

/* A coupling: the first half passes, the second is scaled and shifted by a net of the first. */
static fg_node f_coupling(fg_graph *g, fg_node x, fg_node w) {
  int64_t d = fg_node_shape(g, x).d[1];
  fg_node a = fg_slice_axis(g, x, 1, 0, d / 2), b = fg_slice_axis(g, x, 1, d / 2, d);
  fg_node net = fg_tanh(g, fg_matmul(g, a, w));
  fg_node parts[2] = {a, fg_add(g, fg_mul(g, b, fg_exp(g, net)), net)};
  return fg_concat(g, 2, parts, 1);
}

/* Triangular dependence, but y_i also depends on x_i through the "conditioner": its diagonal is
 * not the direct partial, so the engine must not take the structured route. */
static fg_node f_lower_with_diagonal(fg_graph *g, fg_node x, fg_node w) {
  return fg_add(g, x, fg_mul_scalar(g, fg_tanh(g, masked(g, x, w, true)), 0.3));
}

/* Every output depends on every input. */
static fg_node f_dense(fg_graph *g, fg_node x, fg_node w) {
  return fg_add(g, x, fg_mul_scalar(g, fg_tanh(g, fg_matmul(g, x, w)), 0.3));
}

/* Mixes samples: not per-sample at all; the analysis must not claim structure. */
static fg_node f_batch_mix(fg_graph *g, fg_node x, fg_node w) {
  fg_node mean = fg_mean(g, x, FG_AXIS(0), true);
  return fg_add(g, fg_mul(g, x, fg_exp(g, w)), fg_mul_scalar(g, mean, 0.5));
}

static const map_case cases[] = {
    {"sinh", 5, {1, {5}}, f_sinh},
    {"bins", 4, {2, {4, 6}}, f_bins},
    {"autoregressive", 6, {2, {6, 6}}, f_autoregressive},
    {"coupling", 6, {2, {3, 3}}, f_coupling},
    {"lower_with_diagonal", 5, {2, {5, 5}}, f_lower_with_diagonal},
    {"dense", 4, {2, {4, 4}}, f_dense},
    {"batch_mix", 4, {1, {4}}, f_batch_mix},
};

static const map_case *case_named(const char *name) {
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
    if (!strcmp(cases[i].name, name)) return &cases[i];
  cr_assert_fail("no case %s", name);
  return NULL;
}

static fg_tensor *values(fg_shape s, uint64_t seed, double lo, double hi) {
  fg_tensor *t;
  cr_assert_eq(fg_tensor_new(&t, FG_F64, &s, NULL), FG_OK);
  for (int64_t i = 0; i < fg_tensor_numel(t); i++)
    fg_tensor_set(t, i, lo + (hi - lo) * fg_rng_uniform(seed, (uint64_t)i));
  return t;
}

/* The route the engine takes for map c on a batch of 3, and the largest difference between the
 * derived and the dense log-det. */
static fg_jacobian_kind derive(const map_case *c, double *diff) {
  fg_graph *g;
  fg_graph_new(&g, NULL);
  fg_shape xs = fg_shape2(3, c->d);
  fg_node x = fg_input(g, "x", FG_F64, xs), w = fg_input(g, "w", FG_F64, c->w);
  fg_node y = c->f(g, x, w);
  fg_jacobian_kind route;
  fg_node outs[2] = {fg_logdet_derived(g, x, y, c->name, &route), fg_jacobian_logdet(g, x, y, c->name)};
  cr_assert_eq(fg_graph_status(g), FG_OK, "%s: %s", c->name, fg_graph_errmsg(g));
  fg_program *p;
  fg_err e;
  cr_assert_eq(fg_program_new(&p, g, 2, outs, &e), FG_OK, "%s", e.msg);
  fg_tensor *xv = values(xs, 1, -1.5, 1.5), *wv = values(c->w, 2, -0.7, 0.7);
  cr_assert_eq(fg_program_bind(p, "x", xv, &e), FG_OK);
  cr_assert_eq(fg_program_bind(p, "w", wv, &e), FG_OK);
  cr_assert_eq(fg_program_run(p, &e), FG_OK, "%s", e.msg);
  *diff = 0;
  for (int i = 0; i < 3; i++) {
    double a = fg_tensor_get(fg_program_output(p, 0), i), b = fg_tensor_get(fg_program_output(p, 1), i);
    cr_assert(isfinite(a) && isfinite(b), "%s: log-dets %g, %g", c->name, a, b);
    *diff = fmax(*diff, fabs(a - b));
  }
  fg_tensor_free(xv), fg_tensor_free(wv);
  fg_program_free(p);
  fg_graph_free(g);
  return route;
}

static void expect_route(const char *name, fg_jacobian_kind want) {
  double diff;
  fg_jacobian_kind got = derive(case_named(name), &diff);
  cr_expect_eq(got, want, "%s: route %s, expected %s", name, fg_jacobian_kind_name(got),
               fg_jacobian_kind_name(want));
  cr_expect_lt(diff, 1e-10, "%s: derived and dense log-dets differ by %g", name, diff);
}

Test(jacobian, elementwise_maps_are_diagonal) {
  expect_route("sinh", FG_JACOBIAN_DIAGONAL);
  expect_route("bins", FG_JACOBIAN_DIAGONAL);
}

Test(jacobian, autoregressive_maps_and_couplings_are_triangular) {
  expect_route("autoregressive", FG_JACOBIAN_TRIANGULAR);
  expect_route("coupling", FG_JACOBIAN_TRIANGULAR);
}

Test(jacobian, maps_without_usable_structure_take_the_dense_route) {
  expect_route("lower_with_diagonal", FG_JACOBIAN_DENSE);
  expect_route("dense", FG_JACOBIAN_DENSE);
  expect_route("batch_mix", FG_JACOBIAN_DENSE);
}

/* The structured log-det is a graph like any other: its gradients w.r.t. x and w are right. */
typedef struct grad_ud { const map_case *c; } grad_ud;
static fg_node build_logdet(fg_graph *g, const fg_node *in, void *ud) {
  const map_case *c = ((grad_ud *)ud)->c;
  fg_jacobian_kind route;
  fg_node ld = fg_logdet_derived(g, in[0], c->f(g, in[0], in[1]), c->name, &route);
  cr_assert_neq(route, FG_JACOBIAN_DENSE, "%s", c->name);
  return ld;
}

Test(jacobian, structured_logdets_gradcheck) {
  const char *names[] = {"sinh", "bins", "autoregressive", "coupling"};
  for (int i = 0; i < 4; i++) {
    grad_ud ud = {case_named(names[i])};
    fg_tensor *in[2] = {values(fg_shape2(2, ud.c->d), 3, -1.5, 1.5), values(ud.c->w, 4, -0.7, 0.7)};
    fg_gradcheck_report rep;
    cr_expect_eq(fg_gradcheck(build_logdet, &ud, 2, in, NULL, &rep), FG_OK, "%s: %s", names[i], rep.msg);
    fg_tensor_free(in[0]), fg_tensor_free(in[1]);
  }
}

/* O(D): an elementwise map of 4096 elements per sample gets its log-det (the dense route stops
 * at FG_DERIVED_LOGDET_MAX_EVENT) with a graph a few times the forward's, not D VJPs. */
Test(jacobian, structured_logdets_have_no_event_limit) {
  fg_graph *g;
  fg_graph_new(&g, NULL);
  fg_node x = fg_input(g, "x", FG_F32, fg_shape2(2, 4096)), w = fg_input(g, "w", FG_F32, fg_shape1(4096));
  fg_node y = f_sinh(g, x, w);
  int32_t forward_nodes = fg_graph_node_count(g);
  fg_jacobian_kind route;
  fg_logdet_derived(g, x, y, "big", &route);
  cr_assert_eq(fg_graph_status(g), FG_OK, "%s", fg_graph_errmsg(g));
  cr_expect_eq(route, FG_JACOBIAN_DIAGONAL);
  cr_expect_lt(fg_graph_node_count(g), 4 * forward_nodes, "%d nodes after the log-det, %d before",
               fg_graph_node_count(g), forward_nodes);
  fg_graph_free(g);
}

Test(jacobian, no_structure_and_a_large_event_is_refused_with_the_reason) {
  fg_graph *g;
  fg_graph_new(&g, NULL);
  int64_t d = FG_DERIVED_LOGDET_MAX_EVENT + 1;
  fg_node x = fg_input(g, "x", FG_F32, fg_shape2(2, d)), w = fg_input(g, "w", FG_F32, fg_shape2(d, d));
  fg_logdet_derived(g, x, f_dense(g, x, w), "mixer", NULL);
  cr_expect_eq(fg_graph_status(g), FG_E_MISUSE);
  const char *msg = fg_graph_errmsg(g);
  cr_expect(strstr(msg, "mixer") && strstr(msg, "declare one") && strstr(msg, "cycle"), "%s", msg);
  fg_graph_free(g);
}

Test(jacobian, vjp_cut_holds_the_cut_nodes_fixed) {
  fg_graph *g;
  fg_graph_new(&g, NULL);
  fg_node x = fg_input(g, "x", FG_F64, fg_shape1(1));
  fg_node s = fg_square(g, x), y = fg_mul(g, x, s), seed = fg_ones_like(g, y), full, part;
  cr_assert_eq(fg_vjp(g, 1, &y, &seed, 1, &x, &full), FG_OK);
  cr_assert_eq(fg_vjp_cut(g, 1, &y, &seed, 1, &x, 1, &s, &part), FG_OK);
  fg_node outs[2] = {full, part};
  fg_program *p;
  fg_err e;
  cr_assert_eq(fg_program_new(&p, g, 2, outs, &e), FG_OK, "%s", e.msg);
  fg_tensor *xv = values(fg_shape1(1), 5, 2.0, 2.0);
  cr_assert_eq(fg_program_bind(p, "x", xv, &e), FG_OK);
  cr_assert_eq(fg_program_run(p, &e), FG_OK, "%s", e.msg);
  cr_expect_float_eq(fg_tensor_get(fg_program_output(p, 0), 0), 12.0, 1e-12, "d(x^3)/dx = 3x^2");
  cr_expect_float_eq(fg_tensor_get(fg_program_output(p, 1), 0), 4.0, 1e-12, "with x^2 fixed: x^2");
  fg_tensor_free(xv);
  fg_program_free(p);
  fg_graph_free(g);
}
