/* The built-in layers of flows/layers/layers.h: round trips in float32 and float64 on image and vector
 * shapes, the exact semantics of each layer (actnorm's data-dependent initialisation, batch-norm
 * statistics, split's prior and sampling, logit's domain; the channel-mixing layers are in
 * test_mixing_layers.c), argument and shape errors that name what is wrong, and the
 * verification (flows/check.h) of every type. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "flows/check.h"
#include "flows/layers/layers.h"
#include "flows/registry.h"
#include "ops/ops.h"
#include "tests/layer_rig.h"

/* ---- round trips ---- */

typedef struct layer_case {
  const char *type, *args;
  fg_shape event;
  double lo, hi;
} layer_case;

static const layer_case round_trip_cases[] = {
    {"reverse", "", {3, {4, 4, 4}}, -2, 2},          {"reverse", "", {1, {5}}, -2, 2},
    {"shuffle", "seed=7", {3, {6, 2, 4}}, -2, 2},    {"shuffle", "", {1, {9}}, -2, 2},
    {"permute", "perm=[3, 1, 0, 2]", {3, {4, 2, 2}}, -2, 2},
    {"permute", "perm=[2, 0, 1]", {1, {3}}, -2, 2},
    {"conv1x1", "", {3, {5, 4, 2}}, -2, 2},          {"conv1x1", "", {1, {7}}, -2, 2},
    {"conv1x1_lu", "seed=2", {3, {6, 2, 4}}, -2, 2}, {"conv1x1_lu", "", {1, {5}}, -2, 2},
    {"actnorm", "", {3, {3, 4, 4}}, -2, 2},          {"actnorm", "", {1, {6}}, -2, 2},
    {"batchnorm", "", {3, {3, 4, 4}}, -2, 2},        {"batchnorm", "eps=1e-3", {1, {6}}, -2, 2},
    {"squeeze", "", {3, {3, 4, 6}}, -2, 2},
    {"split", "", {3, {6, 4, 4}}, -2, 2},            {"split", "", {1, {8}}, -2, 2},
    {"logit", "", {3, {1, 4, 4}}, 0, 1},             {"logit", "alpha=0", {1, {6}}, 0.01, 0.99},
    {"exp", "", {3, {2, 3, 3}}, -3, 3},              {"sigmoid", "", {1, {6}}, -4, 4},
    {"affine", "scale=-2.5, shift=0.75", {3, {2, 2, 2}}, -2, 2},
    {"scale", "", {3, {2, 3, 3}}, -2, 2},            {"scale", "", {1, {6}}, -2, 2},
};

/* forward then inverse in one graph (split pops what forward pushed), parameters perturbed. */
static void round_trip(const layer_case *lc, fg_dtype t) {
  fg_bijector *b = make(lc->type, lc->args);
  rig r = rig_open(NULL, (fg_flow_ctx_opts){.dtype = t});
  fg_shape xs = with_batch(3, lc->event);
  fg_node x = fg_input(r.g, "x", t, xs), y, fldj, x2, ildj;
  cr_assert_eq(fg_bijector_forward(b, r.c, x, &y, &fldj), FG_OK, "%s: %s", lc->type, fg_graph_errmsg(r.g));
  cr_assert_eq(fg_bijector_inverse(b, r.c, y, &x2, &ildj), FG_OK, "%s: %s", lc->type, fg_graph_errmsg(r.g));
  fg_shape lds = fg_node_shape(r.g, fldj);
  cr_assert(lds.ndim == 1 && lds.d[0] == 3, "%s: the log-det must be [B]", lc->type);
  cr_assert_eq(fg_node_dtype(r.g, y), t, "%s: y must keep x's dtype", lc->type);
  perturb(r.ps, 0.1, 11);
  fg_tensor *xv = random_tensor(t, xs, 3, lc->lo, lc->hi);
  fg_node outs[4] = {x2, fldj, ildj, y};
  fg_program *p = run(&r, 4, outs, xv);
  double tol = t == FG_F32 ? 2e-5 : 1e-11, worst = 0;
  for (int64_t i = 0; i < fg_tensor_numel(xv); i++) {
    double want = fg_tensor_get(xv, i), err = fabs(at(p, 0, i) - want) / (1 + fabs(want));
    if (!(err <= worst)) worst = err;
  }
  cr_expect(worst <= tol, "%s(%s) %s: round-trip error %g", lc->type, lc->args, fg_dtype_name(t), worst);
  for (int64_t i = 0; i < 3; i++) {
    double f = at(p, 1, i), inv = at(p, 2, i);
    cr_expect(isfinite(f) && fabs(f + inv) <= tol * 100 * (1 + fabs(f)),
              "%s %s: forward log-det %g but inverse log-det %g", lc->type, fg_dtype_name(t), f, inv);
  }
  fg_program_free(p);
  fg_tensor_free(xv);
  rig_close(&r);
  fg_bijector_free(b);
}

Test(layers, round_trips_in_float32_and_float64) {
  for (size_t i = 0; i < sizeof round_trip_cases / sizeof round_trip_cases[0]; i++) {
    round_trip(&round_trip_cases[i], FG_F64);
    round_trip(&round_trip_cases[i], FG_F32);
  }
}

/* ---- actnorm ---- */

/* Per-channel mean and std of y [B, C, ...] (all channels when c < 0). */
static void channel_moments(const fg_tensor *y, int64_t ch, double *mean, double *std) {
  int64_t n = fg_tensor_numel(y), per = n / y->shape.d[0] / y->shape.d[1], cnt = 0;
  double s = 0, s2 = 0;
  for (int64_t i = 0; i < n; i++)
    if ((i / per) % y->shape.d[1] == ch) s += fg_tensor_get(y, i), s2 += fg_tensor_get(y, i) * fg_tensor_get(y, i), cnt++;
  *mean = s / (double)cnt;
  *std = sqrt(fmax(s2 / (double)cnt - *mean * *mean, 0));
}

/* Data-init on x, then forward of the same x in a fresh graph: y and the log-det. */
static fg_program *init_then_forward(fg_bijector *b, rig *r, const fg_tensor *x, fg_params *ps) {
  rig init = rig_open(ps, (fg_flow_ctx_opts){.dtype = x->dtype});
  fg_node xi = fg_input(init.g, "x", x->dtype, x->shape);
  cr_assert_eq(fg_bijector_data_init(b, init.c, xi), FG_OK, "%s", fg_graph_errmsg(init.g));
  apply_inits(&init, x);
  rig_close(&init);
  *r = rig_open(ps, (fg_flow_ctx_opts){.dtype = x->dtype});
  fg_node xn = fg_input(r->g, "x", x->dtype, x->shape), y, ld;
  cr_assert_eq(fg_bijector_forward(b, r->c, xn, &y, &ld), FG_OK, "%s", fg_graph_errmsg(r->g));
  fg_node outs[2] = {y, ld};
  return run(r, 2, outs, x);
}

Test(layers, actnorm_data_init_normalises_the_init_batch) {
  fg_dtype types[2] = {FG_F64, FG_F32};
  for (int k = 0; k < 2; k++) {
    fg_bijector *b = make("actnorm", "");
    fg_params *ps;
    fg_params_new(&ps, 1, NULL);
    fg_shape xs = fg_shape4(16, 3, 4, 4);
    fg_tensor *x = random_tensor(types[k], xs, 7, -1, 1);
    for (int64_t i = 0; i < fg_tensor_numel(x); i++) /* channel c: mean 3c - 2, scale c + 0.5 */
      fg_tensor_set(x, i, fg_tensor_get(x, i) * ((i / 16) % 3 + 0.5) + 3.0 * ((i / 16) % 3) - 2);
    rig r;
    fg_program *p = init_then_forward(b, &r, x, ps);
    for (int c = 0; c < 3; c++) {
      double m, s;
      channel_moments(fg_program_output(p, 0), c, &m, &s);
      cr_expect(fabs(m) < 1e-5 && fabs(s - 1) < 1e-4, "%s channel %d: mean %g std %g", fg_dtype_name(types[k]), c, m, s);
    }
    /* log-det = H·W·Σ logs = -16·Σ log std_c */
    double expect = 0;
    for (int c = 0; c < 3; c++) {
      double m, s;
      channel_moments(x, c, &m, &s);
      expect -= 16 * log(s + 1e-6);
    }
    cr_expect(fabs(at(p, 1, 0) - expect) < 1e-4 * fabs(expect), "log-det %g, expected %g", at(p, 1, 0), expect);
    fg_program_free(p);
    rig_close(&r);
    fg_tensor_free(x);
    fg_params_free(ps);
    fg_bijector_free(b);
  }
}

Test(layers, actnorm_stays_finite_on_a_constant_channel_and_a_batch_of_one) {
  /* images: channel 1 constant over the whole batch */
  fg_bijector *b = make("actnorm", "");
  fg_params *ps;
  fg_params_new(&ps, 1, NULL);
  fg_tensor *x = random_tensor(FG_F64, fg_shape4(4, 3, 2, 2), 5, -1, 1);
  for (int64_t i = 0; i < fg_tensor_numel(x); i++)
    if ((i / 4) % 3 == 1) fg_tensor_set(x, i, 0.25);
  rig r;
  fg_program *p = init_then_forward(b, &r, x, ps);
  for (int64_t i = 0; i < fg_tensor_numel(fg_program_output(p, 0)); i++)
    cr_assert(isfinite(at(p, 0, i)), "y[%lld] = %g", (long long)i, at(p, 0, i));
  cr_expect(isfinite(at(p, 1, 0)));
  fg_tensor *logs = fg_params_find(ps, "actnorm.logs");
  cr_expect_eq(fg_tensor_get(logs, 1), 0.0, "a constant channel keeps unit scale");
  cr_expect(fabs(fg_tensor_get(fg_params_find(ps, "actnorm.bias"), 1) + 0.25) < 1e-15);
  fg_program_free(p);
  rig_close(&r);
  fg_tensor_free(x);
  fg_params_free(ps);
  fg_bijector_free(b);

  /* vectors: a batch of one has zero variance in every feature */
  b = make("actnorm", "");
  fg_params_new(&ps, 1, NULL);
  x = random_tensor(FG_F32, fg_shape2(1, 5), 6, -3, 3);
  p = init_then_forward(b, &r, x, ps);
  for (int i = 0; i < 5; i++) cr_expect(at(p, 0, i) == 0.0, "the init sample is centred exactly: %g", at(p, 0, i));
  cr_expect_eq(at(p, 1, 0), 0.0);
  fg_program_free(p);
  rig_close(&r);
  /* and a later, different sample stays finite (no 1/eps scale) */
  rig r2 = rig_open(ps, (fg_flow_ctx_opts){.dtype = FG_F32});
  fg_node xn = fg_input(r2.g, "x", FG_F32, fg_shape2(1, 5)), y, ld;
  cr_assert_eq(fg_bijector_forward(b, r2.c, xn, &y, &ld), FG_OK);
  fg_tensor *x2 = random_tensor(FG_F32, fg_shape2(1, 5), 8, -3, 3);
  p = run(&r2, 1, &y, x2);
  for (int i = 0; i < 5; i++) cr_expect(isfinite(at(p, 0, i)) && fabs(at(p, 0, i)) < 10);
  fg_program_free(p);
  rig_close(&r2);
  fg_tensor_free(x2);
  fg_tensor_free(x);
  fg_params_free(ps);
  fg_bijector_free(b);
}

/* ---- batchnorm ---- */

Test(layers, batchnorm_batch_statistics_in_training_and_running_ones_otherwise) {
  fg_bijector *b = make("batchnorm", "momentum=0.25, eps=1e-5");
  fg_params *ps;
  fg_params_new(&ps, 1, NULL);
  fg_shape xs = fg_shape4(6, 2, 3, 3);
  fg_tensor *xv = random_tensor(FG_F64, xs, 4, 1, 5);
  /* training: the output is normalised by the batch, and the running averages' updates are
   * recorded for the trainer */
  rig r = rig_open(ps, (fg_flow_ctx_opts){.dtype = FG_F64, .training = true});
  fg_node x = fg_input(r.g, "x", FG_F64, xs), y, ld, back, ild;
  cr_assert_eq(fg_bijector_forward(b, r.c, x, &y, &ld), FG_OK, "%s", fg_graph_errmsg(r.g));
  cr_assert_eq(fg_flow_ctx_num_inits(r.c), 2);
  cr_expect_str_eq(fg_flow_ctx_init_name(r.c, 0), "batchnorm.running_mean");
  cr_expect_str_eq(fg_flow_ctx_init_name(r.c, 1), "batchnorm.running_var");
  fg_node outs[3] = {y, fg_flow_ctx_init_value(r.c, 0), fg_flow_ctx_init_value(r.c, 1)};
  fg_program *p = run(&r, 3, outs, xv);
  for (int c = 0; c < 2; c++) {
    double m, s, xm, xsd;
    channel_moments(fg_program_output(p, 0), c, &m, &s);
    cr_expect(fabs(m) < 1e-12 && fabs(s - 1) < 1e-5, "channel %d: mean %g std %g", c, m, s);
    channel_moments(xv, c, &xm, &xsd);
    cr_expect(fabs(at(p, 1, c) - 0.25 * xm) < 1e-12, "running mean 0.75·0 + 0.25·%g, got %g", xm, at(p, 1, c));
    double unbiased = xsd * xsd * 54.0 / 53.0;
    cr_expect(fabs(at(p, 2, c) - (0.75 + 0.25 * unbiased)) < 1e-12, "running var %g", at(p, 2, c));
  }
  fg_program_free(p);
  /* the inverse needs running statistics: refused in a training graph, with a reason */
  cr_assert_neq(fg_bijector_inverse(b, r.c, y, &back, &ild), FG_OK);
  cr_expect(strstr(fg_graph_errmsg(r.g), "batchnorm") && strstr(fg_graph_errmsg(r.g), "evaluation"), "%s",
            fg_graph_errmsg(r.g));
  rig_close(&r);

  /* data init sets the running statistics; evaluation then uses them */
  rig ri = rig_open(ps, (fg_flow_ctx_opts){.dtype = FG_F64, .training = true});
  fg_node xi = fg_input(ri.g, "x", FG_F64, xs), yi, ldi;
  cr_assert_eq(fg_bijector_data_init(b, ri.c, xi), FG_OK);
  cr_assert_eq(fg_bijector_forward(b, ri.c, xi, &yi, &ldi), FG_OK);
  cr_expect_eq(fg_flow_ctx_num_inits(ri.c), 2, "data init's values win over the training update");
  apply_inits(&ri, xv);
  rig_close(&ri);
  rig re = rig_open(ps, (fg_flow_ctx_opts){.dtype = FG_F64});
  x = fg_input(re.g, "x", FG_F64, xs);
  cr_assert_eq(fg_bijector_forward(b, re.c, x, &y, &ld), FG_OK);
  cr_expect_eq(fg_flow_ctx_num_inits(re.c), 0, "evaluation records no update");
  p = run(&re, 1, &y, xv);
  for (int c = 0; c < 2; c++) {
    double m, s;
    channel_moments(fg_program_output(p, 0), c, &m, &s);
    cr_expect(fabs(m) < 1e-12 && fabs(s - sqrt(53.0 / 54.0)) < 1e-5, "eval channel %d: mean %g std %g", c, m, s);
  }
  fg_program_free(p);
  rig_close(&re);
  fg_tensor_free(xv);
  fg_params_free(ps);
  fg_bijector_free(b);
}

/* ---- split ---- */

/* Glow's prior by hand: (conv3x3(y) + b)·exp(3·logs), mean in the even output channels. */
static fg_node expected_mean(fg_graph *g, fg_node y, fg_params *ps) {
  fg_node w = fg_constant(g, fg_params_find(ps, "split.prior.weight"));
  fg_node bias = fg_constant(g, fg_params_find(ps, "split.prior.bias"));
  fg_node logs = fg_constant(g, fg_params_find(ps, "split.prior.logs"));
  fg_conv2d_opts o = fg_conv2d_defaults();
  o.padding[0] = o.padding[1] = 1;
  fg_node h = fg_add(g, fg_conv2d(g, y, w, FG_NONE, &o), fg_reshape(g, bias, fg_shape4(1, 4, 1, 1)));
  h = fg_mul(g, h, fg_reshape(g, fg_exp(g, fg_mul_scalar(g, logs, 3.0)), fg_shape4(1, 4, 1, 1)));
  int64_t start[4] = {0}, stop[4] = {3, 4, 4, 4}, step[4] = {1, 2, 1, 1};
  return fg_slice(g, h, start, stop, step);
}

Test(layers, split_samples_the_prior_mean_at_temperature_zero) {
  fg_bijector *b = make("split", "");
  fg_params *ps;
  fg_params_new(&ps, 2, NULL);
  fg_shape ys = fg_shape4(3, 2, 4, 4);
  fg_tensor *yv = random_tensor(FG_F64, ys, 12, -1, 1);
  double temps[2] = {1e-300, 1.0}; /* a context's temperature 0 means 1: 1e-300 is T -> 0 */
  for (int k = 0; k < 2; k++) {
    rig r = rig_open(ps, (fg_flow_ctx_opts){.dtype = FG_F64, .sampling = true, .temperature = temps[k], .seed = 3});
    fg_node y = fg_input(r.g, "x", FG_F64, ys), x, ld;
    cr_assert_eq(fg_bijector_inverse(b, r.c, y, &x, &ld), FG_OK, "%s", fg_graph_errmsg(r.g));
    if (k == 0) perturb(ps, 0.2, 9); /* a prior that is not N(0, I) */
    fg_node z = fg_slice_axis(r.g, x, 1, 2, 4), kept = fg_slice_axis(r.g, x, 1, 0, 2);
    fg_node outs[3] = {z, expected_mean(r.g, y, ps), kept};
    fg_program *p = run(&r, 3, outs, yv);
    double worst = 0, moved = 0;
    for (int64_t i = 0; i < 3 * 2 * 16; i++) {
      double d = fabs(at(p, 0, i) - at(p, 1, i));
      worst = fmax(worst, d), moved = fmax(moved, fabs(at(p, 1, i)));
      cr_assert_eq(at(p, 2, i), fg_tensor_get(yv, i), "the kept half passes through");
    }
    if (k == 0) {
      cr_expect(worst < 1e-12, "T -> 0: z - mean up to %g", worst);
      cr_expect(moved > 1e-3, "the perturbed prior should have a non-zero mean");
    } else
      cr_expect(worst > 0.1, "T = 1: the draw should differ from the mean");
    fg_program_free(p);
    rig_close(&r);
  }
  fg_tensor_free(yv);
  fg_params_free(ps);
  fg_bijector_free(b);
}

Test(layers, split_logdet_is_the_prior_log_density_and_latents_must_exist) {
  fg_bijector *b = make("split", "");
  rig r = rig_open(NULL, (fg_flow_ctx_opts){.dtype = FG_F64});
  fg_node x = fg_input(r.g, "x", FG_F64, fg_shape2(2, 4)), y, ld;
  cr_assert_eq(fg_bijector_forward(b, r.c, x, &y, &ld), FG_OK, "%s", fg_graph_errmsg(r.g));
  cr_expect_eq(fg_node_shape(r.g, y).d[1], 2);
  fg_tensor *xv = random_tensor(FG_F64, fg_shape2(2, 4), 1, -1, 1);
  fg_program *p = run(&r, 1, &ld, xv); /* zero-initialised prior: N(0, I) on the last two */
  for (int s = 0; s < 2; s++) {
    double z0 = fg_tensor_get(xv, s * 4 + 2), z1 = fg_tensor_get(xv, s * 4 + 3);
    double expect = -0.5 * (z0 * z0 + z1 * z1) - log(2 * M_PI);
    cr_expect(fabs(at(p, 0, s) - expect) < 1e-12, "log N(z; 0, I) = %g, got %g", expect, at(p, 0, s));
  }
  fg_program_free(p);
  fg_tensor_free(xv);
  rig_close(&r);
  /* an inverse that reconstructs without a forward first has no latent to pop */
  r = rig_open(NULL, (fg_flow_ctx_opts){.dtype = FG_F64});
  y = fg_input(r.g, "x", FG_F64, fg_shape2(2, 2));
  cr_assert_neq(fg_bijector_inverse(b, r.c, y, &x, &ld), FG_OK);
  cr_expect(strstr(fg_graph_errmsg(r.g), "latent") != NULL, "%s", fg_graph_errmsg(r.g));
  rig_close(&r);
  fg_bijector_free(b);
}

/* ---- logit ---- */

Test(layers, logit_domain_and_exact_logdet) {
  fg_bijector *b = make("logit", "alpha=0.05");
  rig r = rig_open(NULL, (fg_flow_ctx_opts){.dtype = FG_F64});
  fg_node x = fg_input(r.g, "x", FG_F64, fg_shape2(1, 4)), y, ld;
  cr_assert_eq(fg_bijector_forward(b, r.c, x, &y, &ld), FG_OK);
  const double v[4] = {0.0, 1.0, 0.5, 0.2};
  fg_tensor *xv = random_tensor(FG_F64, fg_shape2(1, 4), 0, 0, 0);
  double expect = 0;
  for (int i = 0; i < 4; i++) {
    fg_tensor_set(xv, i, v[i]);
    double u = 0.05 + 0.9 * v[i];
    expect += log(0.9) - log(u) - log(1 - u);
  }
  fg_node outs[2] = {y, ld};
  fg_program *p = run(&r, 2, outs, xv);
  cr_expect(fabs(at(p, 0, 0) - log(0.05 / 0.95)) < 1e-12, "the edge 0 maps to logit(alpha)");
  cr_expect(fabs(at(p, 0, 1) - log(0.95 / 0.05)) < 1e-12, "the edge 1 maps to logit(1 - alpha)");
  cr_expect(fabs(at(p, 0, 2)) < 1e-15);
  cr_expect(fabs(at(p, 1, 0) - expect) < 1e-12, "log-det %.15g, with the log(1 - 2 alpha) terms %.15g", at(p, 1, 0), expect);
  fg_program_free(p);
  fg_tensor_free(xv);
  rig_close(&r);
  fg_bijector_free(b);

  const fg_bijector_type *t = type_named("logit");
  cr_expect_eq(t->check_lo, 0.0);
  cr_expect_eq(t->check_hi, 1.0);
  fg_err e;
  cr_expect(strstr(make_fails("logit", "alpha=0.5", &e), "'alpha'") != NULL, "%s", e.msg);
  cr_expect(strstr(make_fails("logit", "alpha=-0.1", &e), "'alpha'") != NULL, "%s", e.msg);
}

/* ---- errors ---- */

Test(layers, bad_arguments_are_rejected_naming_the_argument) {
  static const struct { const char *type, *args, *names; } bad[] = {
      {"permute", "perm=[0, 0, 1]", "'perm'"}, {"permute", "perm=[0, 3, 1]", "'perm'"},
      {"permute", "", "'perm'"},               {"permute", "perm=[]", "perm"},
      {"affine", "scale=0", "'scale'"},        {"affine", "shift=inf", "shift"},
      {"batchnorm", "momentum=1.5", "'momentum'"}, {"batchnorm", "eps=0", "'eps'"},
      {"batchnorm", "eps=-1", "'eps'"},        {"logit", "alpha=0.7", "'alpha'"},
      {"shuffle", "seed=two", "seed"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    fg_err e;
    const char *msg = make_fails(bad[i].type, bad[i].args, &e);
    cr_expect(strstr(msg, bad[i].names) != NULL, "%s(%s): message should name %s: %s", bad[i].type, bad[i].args,
              bad[i].names, msg);
  }
}

/* The error of building `type` forward (or inverse) on x of shape xs. */
static void shape_error(const char *type, const char *args, fg_shape xs, bool inverse, const char *want1,
                        const char *want2) {
  fg_bijector *b = make(type, args);
  rig r = rig_open(NULL, (fg_flow_ctx_opts){0});
  fg_node x = fg_input(r.g, "x", FG_F32, xs), y, ld;
  fg_status st = inverse ? fg_bijector_inverse(b, r.c, x, &y, &ld) : fg_bijector_forward(b, r.c, x, &y, &ld);
  cr_expect_eq(st, FG_E_SHAPE, "%s: %s", type, fg_graph_errmsg(r.g));
  const char *msg = fg_graph_errmsg(r.g);
  cr_expect(strstr(msg, want1) && strstr(msg, want2), "%s: message should name '%s' and '%s': %s", type, want1,
            want2, msg);
  rig_close(&r);
  fg_bijector_free(b);
}

Test(layers, shape_errors_name_the_layer_and_the_shape) {
  shape_error("squeeze", "", fg_shape4(2, 3, 5, 4), false, "squeeze needs even H and W", "[B, 3, 5, 4]");
  shape_error("squeeze", "", fg_shape4(2, 6, 2, 2), true, "squeeze", "[B, 6, 2, 2]");
  shape_error("squeeze", "", fg_shape2(2, 8), false, "squeeze", "[B, 8]");
  shape_error("permute", "perm=[1, 0, 2]", fg_shape4(2, 4, 2, 2), false, "permute", "[B, 4, 2, 2]");
  shape_error("split", "", fg_shape4(2, 3, 2, 2), false, "split", "[B, 3, 2, 2]");
  shape_error("conv1x1", "", fg_shape1(4), false, "conv1x1", "[B]");
  shape_error("actnorm", "", fg_shape1(4), false, "actnorm", "[B]");
}

/* Channel counts from untrusted input (a checkpoint's event, an .npy shape): the layers that
 * mix channels with a C x C matrix refuse more than FG_MAX_MIX_CHANNELS before allocating,
 * where C·C used to overflow and the matrix was written out of bounds. */
Test(layers, channel_mixing_layers_refuse_huge_channel_counts) {
  static const char *const mixers[][2] = {{"reverse", ""}, {"shuffle", ""}, {"conv1x1", ""},
                                          {"conv1x1_lu", ""}};
  const int64_t sizes[] = {4294967296LL, FG_MAX_MIX_CHANNELS + 1, 3037000500LL};
  for (size_t k = 0; k < sizeof mixers / sizeof *mixers; k++)
    for (size_t j = 0; j < sizeof sizes / sizeof *sizes; j++)
      for (int inverse = 0; inverse < 2; inverse++) {
        fg_bijector *b = make(mixers[k][0], mixers[k][1]);
        rig r = rig_open(NULL, (fg_flow_ctx_opts){0});
        fg_node x = fg_input(r.g, "x", FG_F32, fg_shape2(1, sizes[j])), y, ld;
        fg_status st = inverse ? fg_bijector_inverse(b, r.c, x, &y, &ld) : fg_bijector_forward(b, r.c, x, &y, &ld);
        cr_expect_eq(st, FG_E_LIMIT, "%s on %lld channels: %s", mixers[k][0], (long long)sizes[j],
                     fg_graph_errmsg(r.g));
        cr_expect(strstr(fg_graph_errmsg(r.g), "channels") && strstr(fg_graph_errmsg(r.g), mixers[k][0]),
                  "%s", fg_graph_errmsg(r.g));
        cr_expect_eq(fg_params_count(r.ps), 0, "%s: nothing was allocated", mixers[k][0]);
        rig_close(&r);
        fg_bijector_free(b);
      }
}

/* ---- the verification of flows/check.h on every type of this file ---- */

Test(layers, every_layer_type_passes_the_verification) {
  for (int i = 0; i < n_layer_types; i++) {
    const fg_bijector_type *t = type_named(layer_types[i]);
    fg_check_report rep;
    fg_status st = fg_bijector_check_type(t, NULL, &rep);
    cr_expect_eq(st, FG_OK, "'%s' fails the verification:\n%s", t->name, rep.msg);
    /* and on a vector event for the types that take one */
    if (t->check_event.ndim == 3 && strcmp(t->name, "squeeze") != 0) {
      fg_check_opts o = {.event = {1, {4}}};
      st = fg_bijector_check_type(t, &o, &rep);
      cr_expect_eq(st, FG_OK, "'%s' on a vector fails the verification:\n%s", t->name, rep.msg);
    }
  }
}
