/* The rational-quadratic spline types (flows/layers/spline.c, coupling_spline.c): values and
 * log-derivatives against a plain scalar reference (Durkan et al.'s formulas, the inverse by
 * bisection), the identity at creation, round trips of the coupling on vectors and images, the
 * verification at a large perturbation, the engine's derived log-det of a spline that declares
 * none, and argument errors. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "flows/bijector_internal.h"
#include "flows/check.h"
#include "flows/layers/layers.h"
#include "tests/bijector_rig.h"

/* ---- the reference: one element, raw parameters u[3K - 1] ---- */

typedef struct ref_spline {
  int k;
  double bound, knot_x[65], knot_y[65], deriv[65];
} ref_spline;

static void ref_sizes(const double *u, int k, double bound, double min_size, double *knots) {
  double m = u[0], total = 0, acc = -bound;
  for (int i = 1; i < k; i++) m = fmax(m, u[i]);
  for (int i = 0; i < k; i++) total += exp(u[i] - m);
  knots[0] = -bound;
  for (int i = 0; i < k; i++) {
    acc += 2 * bound * (min_size + (1 - min_size * k) * exp(u[i] - m) / total);
    knots[i + 1] = acc;
  }
  knots[k] = bound;
}

static ref_spline ref_make(const double *u, int k, double bound) {
  ref_spline s = {.k = k, .bound = bound};
  ref_sizes(u, k, bound, 1e-3, s.knot_x);
  ref_sizes(u + k, k, bound, 1e-3, s.knot_y);
  s.deriv[0] = s.deriv[k] = 1;
  for (int i = 1; i < k; i++) s.deriv[i] = 1e-3 + log1p(exp(u[2 * k + i - 1] + log(expm1(1 - 1e-3))));
  return s;
}

/* y(x), *logd = log y'(x); the identity outside [-bound, bound]. */
static double ref_forward(const ref_spline *s, double x, double *logd) {
  *logd = 0;
  if (x < -s->bound || x > s->bound) return x;
  int i = 0;
  while (i < s->k - 1 && s->knot_x[i + 1] <= x) i++;
  double w = s->knot_x[i + 1] - s->knot_x[i], h = s->knot_y[i + 1] - s->knot_y[i], sl = h / w;
  double xi = (x - s->knot_x[i]) / w, d0 = s->deriv[i], d1 = s->deriv[i + 1], t = xi * (1 - xi);
  double den = sl + (d1 + d0 - 2 * sl) * t;
  *logd = log(sl * sl * (d1 * xi * xi + 2 * sl * t + d0 * (1 - xi) * (1 - xi)) / (den * den));
  return s->knot_y[i] + h * (sl * xi * xi + d0 * t) / den;
}

/* the inverse by bisection on the (monotone) forward */
static double ref_inverse(const ref_spline *s, double y) {
  if (y < -s->bound || y > s->bound) return y;
  double lo = -s->bound, hi = s->bound, logd;
  for (int it = 0; it < 200; it++) {
    double mid = 0.5 * (lo + hi);
    if (ref_forward(s, mid, &logd) < y) lo = mid;
    else hi = mid;
  }
  return 0.5 * (lo + hi);
}

enum { K = 5, E = 4, B = 24 };
#define BOUND 2.5
#define ARGS "bins=5, bound=2.5"

/* The raw parameters bij_apply gives "rq_spline" (zeros + perturb·N(seed + 7 + i, j) for its
 * parameters widths, heights, derivatives in creation order), element e's 3K - 1 of them. */
static void raw_params(double perturb, uint64_t seed, int e, double *u) {
  for (int k = 0; k < K; k++) {
    u[k] = perturb * fg_rng_normal(seed + 7, (uint64_t)(e * K + k));
    u[K + k] = perturb * fg_rng_normal(seed + 8, (uint64_t)(e * K + k));
  }
  for (int k = 0; k < K - 1; k++) u[2 * K + k] = perturb * fg_rng_normal(seed + 9, (uint64_t)(e * (K - 1) + k));
}

static void compare_with_reference(bool inverse, fg_dtype t, double tol) {
  fg_tensor *x = bij_values(fg_shape2(B, E), 5, -3.5, 3.5);
  bij_result r = bij_apply("rq_spline", ARGS, t, x, inverse, 1.5, 21);
  ref_spline s[E];
  for (int e = 0; e < E; e++) {
    double u[3 * K];
    raw_params(1.5, 21, e, u);
    s[e] = ref_make(u, K, BOUND);
  }
  for (int b = 0; b < B; b++) {
    double ld = 0;
    for (int e = 0; e < E; e++) {
      double in = fg_tensor_get(x, b * E + e), logd, want;
      if (inverse) {
        want = ref_inverse(&s[e], in);
        ref_forward(&s[e], want, &logd);
        ld -= logd;
      } else {
        want = ref_forward(&s[e], in, &logd);
        ld += logd;
      }
      double got = fg_tensor_get(r.out, b * E + e);
      cr_expect(fabs(got - want) <= tol * (1 + fabs(want)), "%s %s sample %d element %d at %g: %.12g, reference %.12g",
                inverse ? "inverse" : "forward", fg_dtype_name(t), b, e, in, got, want);
    }
    cr_expect(fabs(fg_tensor_get(r.logdet, b) - ld) <= tol * 10 * (1 + fabs(ld)), "%s log-det of sample %d: %.12g, reference %.12g",
              inverse ? "inverse" : "forward", b, fg_tensor_get(r.logdet, b), ld);
  }
  bij_result_free(&r);
  fg_tensor_free(x);
}

Test(spline, values_and_log_derivatives_match_the_reference_inside_and_on_the_tails) {
  compare_with_reference(false, FG_F64, 1e-12);
  compare_with_reference(true, FG_F64, 1e-10);
  compare_with_reference(false, FG_F32, 2e-5);
  compare_with_reference(true, FG_F32, 2e-4);
}

Test(spline, zero_parameters_are_the_identity) {
  fg_tensor *x = bij_values(fg_shape3(3, 2, 4), 9, -4, 4);
  bij_result r = bij_apply("rq_spline", "", FG_F64, x, false, 0.0, 1);
  cr_expect_lt(bij_rel_err(r.out, x), 1e-14);
  for (int b = 0; b < 3; b++) cr_expect_lt(fabs(fg_tensor_get(r.logdet, b)), 1e-13);
  bij_result_free(&r);
  fg_tensor_free(x);
}

/* The coupling on vectors and images, float32 and float64: round trips and log-dets that are
 * each other's negatives. */
static void coupling_round_trip(const char *args, fg_shape xs, fg_dtype t, double tol) {
  fg_tensor *x = bij_values(xs, 4, -3, 3);
  /* convolutional nets sum many inputs: a smaller change keeps their splines well-conditioned */
  bij_result r = bij_apply("rq_coupling", args, t, x, false, xs.ndim == 4 ? 0.05 : 0.5, 3);
  cr_expect_lt(bij_rel_err(r.back, x), tol, "rq_coupling(%s) %s round trip", args, fg_dtype_name(t));
  for (int64_t b = 0; b < xs.d[0]; b++)
    cr_expect(fabs(fg_tensor_get(r.logdet, b) + fg_tensor_get(r.back_logdet, b)) < tol * 100,
              "rq_coupling(%s): log-dets %g and %g", args, fg_tensor_get(r.logdet, b), fg_tensor_get(r.back_logdet, b));
  double moved = 0;
  for (int64_t i = 0; i < fg_tensor_numel(x); i++) moved = fmax(moved, fabs(fg_tensor_get(r.out, i) - fg_tensor_get(x, i)));
  cr_expect_gt(moved, 1e-3, "the perturbed coupling must move its input");
  bij_result_free(&r);
  fg_tensor_free(x);
}

Test(spline, the_coupling_round_trips_on_vectors_and_images) {
  const fg_dtype types[2] = {FG_F32, FG_F64};
  const double tols[2] = {2e-5, 1e-11};
  for (int i = 0; i < 2; i++) {
    coupling_round_trip("mask=half, hidden=8, bins=6", fg_shape2(5, 6), types[i], tols[i]);
    coupling_round_trip("mask=alternate, parity=1, hidden=8, blocks=1, bound=2", fg_shape2(5, 7), types[i], tols[i]);
    coupling_round_trip("mask=channel, net=glow, hidden=6, bins=4", fg_shape4(2, 4, 3, 3), types[i], tols[i]);
    coupling_round_trip("mask=checkerboard, parity=1, net=resnet, hidden=4, blocks=1", fg_shape4(2, 2, 4, 4), types[i], tols[i]);
  }
}

/* Piecewise maps need a harder check than the default perturbation of 0.1 (flowgrad check
 * --perturb 3 --seeds 5 --batch 16): knot sizes are taken directly, not as differences of
 * knots, so a narrow bin keeps its digits and the gradcheck sees no rounding noise. */
Test(spline, the_types_pass_the_verification_at_a_large_perturbation) {
  const char *names[2] = {"rq_spline", "rq_coupling"};
  for (int n = 0; n < 2; n++)
    for (uint64_t seed = 0; seed < 5; seed++) {
      fg_registry *reg;
      fg_registry_new(&reg, NULL);
      fg_registry_add_builtins(reg, NULL);
      fg_check_opts o = {.perturb = 3, .batch = 16, .seed = seed};
      fg_check_report rep;
      cr_expect_eq(fg_bijector_check_type(fg_registry_find(reg, names[n]), &o, &rep), FG_OK,
                   "%s, seed %llu:\n%s", names[n], (unsigned long long)seed, rep.msg);
      fg_registry_free(reg);
    }
}

/* The spline without its log-det, as a user's plugin might leave it: the engine sees a diagonal
 * Jacobian through the searchsorted, gathers and cumsums, and its log-det matches. */
static fg_status undeclared_forward(void *state, fg_flow_ctx *c, fg_node x, fg_node *y, fg_node *ld) {
  fg_status st = fg_bijector_rq_spline.forward(state, c, x, y, ld);
  *ld = FG_NONE;
  return st;
}
static const fg_bijector_type undeclared = {
    .abi_version = FG_BIJECTOR_ABI_VERSION, .name = "test_undeclared_spline",
    .forward = undeclared_forward, .destroy = free, .check_event = {1, {5}},
    .check_lo = -3.5, .check_hi = 3.5};

Test(spline, the_engine_derives_a_spline_log_det_from_its_diagonal) {
  typedef fg_status (*create_fn)(void **, fg_err *, int64_t, double, double, double, double);
  void *state;
  fg_err e;
  cr_assert_eq(((create_fn)fg_bijector_rq_spline.create)(&state, &e, K, BOUND, 1e-3, 1e-3, 1e-3), FG_OK);
  fg_bijector_type t = undeclared;
  t.inverse = fg_bijector_rq_spline.inverse;
  fg_bijector *b = fg__bijector_wrap(&t, state);
  fg_check_opts o = {.perturb = 1.5, .batch = 8};
  fg_check_report rep;
  cr_expect_eq(fg_bijector_check(b, &t, &o, &rep), FG_OK, "%s", rep.msg);
  cr_expect_eq(rep.sources.diagonal, 1, "%s", rep.msg);
  cr_expect_lt(rep.logdet_err, 1e-9, "%s", rep.msg);
  fg_bijector_free(b);
}

Test(spline, bad_arguments_are_refused_naming_them) {
  bij_expect_refused("rq_spline", "bins=0", "'bins'");
  bij_expect_refused("rq_spline", "bound=-1", "'bound'");
  bij_expect_refused("rq_spline", "bins=8, min_width=0.2", "'min_width'");
  bij_expect_refused("rq_coupling", "min_derivative=1", "'min_derivative'");
  bij_expect_refused("rq_coupling", "mask=stripes", "'mask'");
  bij_expect_refused("maf", "transform=cubic", "'transform'");
  bij_expect_refused("iaf", "hidden=0", "'hidden'");
}
