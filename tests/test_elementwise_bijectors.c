/* The fixed elementwise maps of flows/layers/elementwise_bijectors.c that TensorFlow Probability
 * users expect (tanh, softplus, leaky_relu, power, kumaraswamy): values and log-dets against
 * closed forms, round trips in both dtypes, stability far out on their domains, and argument
 * errors.  (exp, sigmoid, affine and scale are covered with the other layers, test_layers.c.) */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "tests/bijector_rig.h"

typedef struct map_case {
  const char *type, *args;
  double lo, hi;           /* where x is drawn */
  double (*f)(double x);   /* y */
  double (*logd)(double x); /* log y'(x) */
} map_case;

static double tanh_logd(double x) { return log1p(-tanh(x) * tanh(x)); }
static double softplus_f(double x) { return log1p(exp(x)); }
static double softplus_logd(double x) { return -log1p(exp(-x)); }
static double leaky_f(double x) { return x >= 0 ? x : 0.3 * x; }
static double leaky_logd(double x) { return x >= 0 ? 0 : log(0.3); }
static double power_f(double x) { return pow(x, 1.7); }
static double power_logd(double x) { return log(1.7) + 0.7 * log(x); }
static double kuma_f(double x) { return 1 - pow(1 - pow(x, 1.5), 2.5); }
static double kuma_logd(double x) {
  return log(1.5 * 2.5) + 0.5 * log(x) + 1.5 * log(1 - pow(x, 1.5));
}

static const map_case cases[] = {
    {"tanh", "", -3, 3, tanh, tanh_logd},
    {"softplus", "", -5, 5, softplus_f, softplus_logd},
    {"leaky_relu", "alpha=0.3", -2, 2, leaky_f, leaky_logd},
    {"power", "power=1.7", 0.05, 4, power_f, power_logd},
    {"kumaraswamy", "a=1.5, b=2.5", 0.02, 0.98, kuma_f, kuma_logd},
};

Test(elementwise_maps, values_log_dets_and_round_trips_match_the_closed_forms) {
  const fg_dtype dts[2] = {FG_F64, FG_F32};
  const double tols[2] = {1e-12, 3e-5};
  for (size_t c = 0; c < sizeof cases / sizeof *cases; c++)
    for (int d = 0; d < 2; d++) {
      const map_case *m = &cases[c];
      fg_tensor *x = bij_values(fg_shape3(4, 2, 3), 6, m->lo, m->hi);
      bij_result r = bij_apply(m->type, m->args, dts[d], x, false, 0, 1);
      for (int b = 0; b < 4; b++) {
        double ld = 0;
        for (int i = 0; i < 6; i++) {
          double xi = fg_tensor_get(x, b * 6 + i), want = m->f(xi), got = fg_tensor_get(r.out, b * 6 + i);
          ld += m->logd(xi);
          cr_expect(fabs(got - want) <= tols[d] * (1 + fabs(want)), "%s %s at %g: %.10g, want %.10g",
                    m->type, fg_dtype_name(dts[d]), xi, got, want);
        }
        double got = fg_tensor_get(r.logdet, b);
        cr_expect(fabs(got - ld) <= tols[d] * 10 * (1 + fabs(ld)), "%s %s log-det: %.10g, want %.10g",
                  m->type, fg_dtype_name(dts[d]), got, ld);
        cr_expect(fabs(got + fg_tensor_get(r.back_logdet, b)) <= tols[d] * 10 * (1 + fabs(ld)),
                  "%s: the inverse's log-det is the forward's negated", m->type);
      }
      cr_expect_lt(bij_rel_err(r.back, x), tols[d] * 10, "%s %s round trip", m->type, fg_dtype_name(dts[d]));
      bij_result_free(&r);
      fg_tensor_free(x);
    }
}

/* Far out on the domains the naive formulas overflow or cancel; these stay finite. */
Test(elementwise_maps, far_from_the_origin_the_maps_stay_finite) {
  const double big[4] = {-30, -12, 12, 30};
  fg_tensor *x = bij_values(fg_shape2(1, 4), 1, 0, 0);
  for (int i = 0; i < 4; i++) fg_tensor_set(x, i, big[i]);
  bij_result r = bij_apply("tanh", "", FG_F64, x, false, 0, 1);
  cr_expect(isfinite(fg_tensor_get(r.logdet, 0)), "tanh log-det at ±30: %g", fg_tensor_get(r.logdet, 0));
  cr_expect_float_eq(fg_tensor_get(r.logdet, 0), 2 * (4 * log(2.0) - 2 * 30 - 2 * 12), 1e-9);
  bij_result_free(&r);
  /* softplus inverse of large and tiny values: y + log(-expm1(-y)) */
  const double ys[4] = {1e-9, 1e-3, 40, 300};
  for (int i = 0; i < 4; i++) fg_tensor_set(x, i, ys[i]);
  r = bij_apply("softplus", "", FG_F64, x, true, 0, 1);
  cr_expect_float_eq(fg_tensor_get(r.out, 0), log(expm1(1e-9)), 1e-9);
  cr_expect_float_eq(fg_tensor_get(r.out, 3), 300.0, 1e-12);
  cr_expect_lt(bij_rel_err(r.back, x), 1e-12);
  bij_result_free(&r);
  fg_tensor_free(x);
}

Test(elementwise_maps, bad_arguments_are_refused_naming_them) {
  bij_expect_refused("leaky_relu", "alpha=0", "'alpha'");
  bij_expect_refused("power", "power=-1", "'power'");
  bij_expect_refused("kumaraswamy", "a=0", "'a'");
  bij_expect_refused("kumaraswamy", "b=inf", "'b'");
}
