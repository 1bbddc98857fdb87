/* Coupling layers (flows/coupling*.c) and their conditioners (flows/layers/conditioner.c): every
 * mask x net x scale passes the bijector verification (round trip, log-det against slogdet of
 * the autodiff Jacobian, fldj = -ildj, gradcheck w.r.t. x and every parameter), round trips in
 * float32 and float64 with random parameters, is the identity (or Glow's fixed rescaling) at
 * initialisation, counts only transformed positions in its log-det, bounds RealNVP's scale by
 * c, and rejects bad arguments and shapes with messages that name them. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/runtime/program.h"
#include "core/rng.h"
#include "flows/check.h"
#include "flows/layers/conditioner.h"
#include "flows/layers/coupling.h"
#include "ops/ops.h"

/* Error detail of the last failing library call, for assertion messages. */
static fg_err terr __attribute__((unused));

/* ---- helpers ---- */

static fg_bijector *make(const fg_bijector_type *t, const char *args) {
  fg_bijector *b;
  fg_err e;
  cr_assert_eq(fg_bijector_new_from_text(&b, t, args, &e), FG_OK, "%s(%s): %s", t->name, args, e.msg);
  return b;
}

static fg_tensor *random_tensor(fg_dtype t, fg_shape s, uint64_t seed, double lo, double hi) {
  fg_tensor *x;
  cr_assert_eq(fg_tensor_new(&x, t, &s, NULL), FG_OK);
  for (int64_t i = 0; i < fg_tensor_numel(x); i++)
    fg_tensor_set(x, i, lo + (hi - lo) * fg_rng_uniform(seed, (uint64_t)i));
  return x;
}

static void perturb_params(fg_params *ps, double std, uint64_t seed) {
  for (int i = 0; i < fg_params_count(ps); i++) {
    fg_tensor *p = fg_params_tensor(ps, i);
    for (int64_t j = 0; j < fg_tensor_numel(p); j++)
      fg_tensor_set(p, j, fg_tensor_get(p, j) + std * fg_rng_normal(seed + (uint64_t)i, (uint64_t)j));
  }
}

/* A forward + inverse graph of b on an input "x" of shape xs, its parameters in ps. */
typedef struct run {
  fg_graph *g;
  fg_params *ps;
  fg_program *p;
  fg_tensor *x;
} run;

enum { OUT_Y, OUT_FLDJ, OUT_X2, OUT_ILDJ, N_OUT };

static void run_build(run *r, fg_bijector *b, fg_dtype t, fg_shape xs) {
  fg_err e;
  fg_graph_new(&r->g, NULL);
  fg_params_new(&r->ps, 7, NULL);
  fg_flow_ctx *c;
  fg_flow_ctx_opts co = {.dtype = t};
  cr_assert_eq(fg_flow_ctx_new(&c, r->g, r->ps, &co, &e), FG_OK, "%s", e.msg);
  fg_node x = fg_input(r->g, "x", t, xs), outs[N_OUT];
  cr_assert_eq(fg_bijector_forward(b, c, x, &outs[OUT_Y], &outs[OUT_FLDJ]), FG_OK, "%s", fg_graph_errmsg(r->g));
  cr_assert_eq(fg_bijector_inverse(b, c, outs[OUT_Y], &outs[OUT_X2], &outs[OUT_ILDJ]), FG_OK, "%s", fg_graph_errmsg(r->g));
  fg_flow_ctx_free(c);
  cr_assert_eq(fg_program_new(&r->p, r->g, N_OUT, outs, &e), FG_OK, "%s", e.msg);
  r->x = random_tensor(t, xs, 11, -2, 2);
}

static void run_exec(run *r) {
  fg_err e;
  cr_assert_eq(fg_params_bind(r->ps, r->p, &e), FG_OK, "%s", e.msg);
  cr_assert_eq(fg_program_bind(r->p, "x", r->x, &terr), FG_OK, "%s", terr.msg);
  cr_assert_eq(fg_program_run(r->p, &terr), FG_OK, "%s", terr.msg);
}

static void run_free(run *r) {
  fg_program_free(r->p);
  fg_tensor_free(r->x);
  fg_params_free(r->ps);
  fg_graph_free(r->g);
}

static double max_diff(const fg_tensor *a, const fg_tensor *b, double sign_b) {
  double worst = 0;
  for (int64_t i = 0; i < fg_tensor_numel(a); i++) {
    double d = fabs(fg_tensor_get(a, i) - sign_b * fg_tensor_get(b, i));
    if (!(d <= worst)) worst = d;
  }
  return worst;
}

static double max_abs(const fg_tensor *a) {
  double worst = 0;
  for (int64_t i = 0; i < fg_tensor_numel(a); i++)
    if (!(fabs(fg_tensor_get(a, i)) <= worst)) worst = fabs(fg_tensor_get(a, i));
  return worst;
}

/* ---- the configurations ---- */

typedef struct config {
  const fg_bijector_type *type;
  const char *args;
  fg_shape event;
} config;

static const char *const image_nets[] = {"mlp", "glow", "resnet"};
static const char *const scales[] = {"exp_tanh", "sigmoid"};

/* Every mask x net (x scale) x parity, at small events: odd sizes on purpose (a 3x3
 * checkerboard transforms 4 or 5 pixels, 3 channels split 1 + 2, 5 features split 2 + 3). */
static int all_configs(config *out, char (*texts)[128]) {
  int n = 0;
  const fg_bijector_type *types[2] = {&fg_bijector_additive_coupling, &fg_bijector_affine_coupling};
  for (int ti = 0; ti < 2; ti++)
    for (int si = 0; si < (ti ? 2 : 1); si++)
      for (int parity = 0; parity < 2; parity++) {
        const char *scale = ti ? scales[si] : NULL;
        for (int ni = 0; ni < 3; ni++) {
          snprintf(texts[n], 128, "mask=checkerboard, parity=%d, net=%s, hidden=4, blocks=1%s%s", parity,
                   image_nets[ni], scale ? ", scale=" : "", scale ? scale : "");
          out[n] = (config){types[ti], texts[n], fg_shape3(2, 3, 3)}, n++;
          snprintf(texts[n], 128, "mask=channel, parity=%d, net=%s, hidden=4, blocks=1%s%s", parity,
                   image_nets[ni], scale ? ", scale=" : "", scale ? scale : "");
          out[n] = (config){types[ti], texts[n], fg_shape3(3, 2, 3)}, n++;
        }
        const char *vec_masks[2] = {"half", "alternate"};
        for (int mi = 0; mi < 2; mi++) {
          snprintf(texts[n], 128, "mask=%s, parity=%d, net=mlp, hidden=6, blocks=2%s%s", vec_masks[mi],
                   parity, scale ? ", scale=" : "", scale ? scale : "");
          out[n] = (config){types[ti], texts[n], fg_shape1(5)}, n++;
        }
      }
  return n;
}

enum { MAX_CONFIGS = 64 };

Test(couplings, every_mask_net_and_scale_passes_the_verification) {
  config cfg[MAX_CONFIGS];
  char texts[MAX_CONFIGS][128];
  int n = all_configs(cfg, texts);
  cr_assert_eq(n, 3 * 2 * 8, "additive + two affine scales, two parities, 6 image and 2 vector configs");
  for (int i = 0; i < n; i++) {
    fg_bijector *b = make(cfg[i].type, cfg[i].args);
    fg_check_opts o = {.event = cfg[i].event, .batch = 2, .seed = (uint64_t)i};
    fg_check_report rep;
    fg_status st = fg_bijector_check(b, cfg[i].type, &o, &rep);
    cr_expect_eq(st, FG_OK, "%s(%s):\n%s", cfg[i].type->name, cfg[i].args, rep.msg);
    cr_expect(rep.logdet_err < 1e-8, "%s(%s): log-det off by %g", cfg[i].type->name, cfg[i].args, rep.logdet_err);
    fg_bijector_free(b);
  }
}

Test(couplings, round_trip_in_float32_and_float64_with_random_parameters) {
  config cfg[MAX_CONFIGS];
  char texts[MAX_CONFIGS][128];
  int n = all_configs(cfg, texts);
  for (int i = 0; i < n; i++)
    for (int ti = 0; ti < 2; ti++) {
      fg_dtype t = ti ? FG_F64 : FG_F32;
      fg_bijector *b = make(cfg[i].type, cfg[i].args);
      fg_shape xs = {cfg[i].event.ndim + 1, {4}};
      for (int k = 0; k < cfg[i].event.ndim; k++) xs.d[k + 1] = cfg[i].event.d[k];
      run r;
      run_build(&r, b, t, xs);
      perturb_params(r.ps, 0.3, 100 + (uint64_t)i);
      run_exec(&r);
      double tol = t == FG_F32 ? 1e-5 : 1e-12;
      const char *name = cfg[i].type->name;
      double rt = max_diff(fg_program_output(r.p, OUT_X2), r.x, 1);
      double ld = max_diff(fg_program_output(r.p, OUT_FLDJ), fg_program_output(r.p, OUT_ILDJ), -1);
      cr_expect(rt < tol, "%s(%s) %s: round trip error %g", name, cfg[i].args, fg_dtype_name(t), rt);
      cr_expect(ld < tol * 10, "%s(%s) %s: fldj + ildj = %g", name, cfg[i].args, fg_dtype_name(t), ld);
      cr_expect(max_diff(fg_program_output(r.p, OUT_Y), r.x, 1) > 1e-3, "%s(%s): random parameters "
                "should move y away from x", name, cfg[i].args);
      run_free(&r);
      fg_bijector_free(b);
    }
}

/* Zero-initialised last layers: the shift and raw scale are 0, so additive and exp_tanh
 * couplings are exactly the identity with log-det 0; Glow's sigmoid(0 + 2) scales the
 * transformed part by sigmoid(2) and adds log sigmoid(2) per transformed element. */
Test(couplings, identity_at_initialisation) {
  config cfg[MAX_CONFIGS];
  char texts[MAX_CONFIGS][128];
  int n = all_configs(cfg, texts);
  for (int i = 0; i < n; i++) {
    fg_bijector *b = make(cfg[i].type, cfg[i].args);
    fg_shape xs = {cfg[i].event.ndim + 1, {3}};
    for (int k = 0; k < cfg[i].event.ndim; k++) xs.d[k + 1] = cfg[i].event.d[k];
    run r;
    run_build(&r, b, FG_F64, xs);
    run_exec(&r);
    const fg_tensor *y = fg_program_output(r.p, OUT_Y), *ld = fg_program_output(r.p, OUT_FLDJ);
    if (strstr(cfg[i].args, "sigmoid")) {
      double s = 1 / (1 + exp(-2.0)), changed = 0;
      for (int64_t j = 0; j < fg_tensor_numel(y); j++) {
        double xv = fg_tensor_get(r.x, j), yv = fg_tensor_get(y, j);
        cr_expect(yv == xv || fabs(yv - s * xv) < 1e-14, "%s: element %lld", cfg[i].args, (long long)j);
        changed += yv != xv;
      }
      int64_t per_sample = fg_tensor_numel(y) / 3;
      for (int64_t k = 0; k < 3; k++)
        cr_expect(fabs(fg_tensor_get(ld, k) - changed / 3 * log(s)) < 1e-12 && changed / 3 < per_sample,
                  "%s: log-det %g", cfg[i].args, fg_tensor_get(ld, k));
    } else {
      cr_expect_eq(max_diff(y, r.x, 1), 0.0, "%s(%s) is not the identity at init", cfg[i].type->name, cfg[i].args);
      cr_expect_eq(max_abs(ld), 0.0, "%s(%s): log-det %g at init", cfg[i].type->name, cfg[i].args, max_abs(ld));
    }
    run_free(&r);
    fg_bijector_free(b);
  }
}

/* A 3x3 checkerboard with parity 0 conditions on the 5 pixels with i + j even and transforms
 * the other 4; parity 1 the other way round.  At init, with Glow's scale, every transformed
 * element adds log sigmoid(2), so the log-det counts them exactly; with random parameters the
 * verification compares the log-det with slogdet of the Jacobian. */
Test(couplings, checkerboard_logdet_counts_only_transformed_positions) {
  const int64_t C = 2, transformed[2] = {4, 5};
  for (int parity = 0; parity < 2; parity++) {
    char args[128];
    snprintf(args, sizeof args, "mask=checkerboard, parity=%d, net=glow, hidden=4, scale=sigmoid", parity);
    fg_bijector *b = make(&fg_bijector_affine_coupling, args);
    run r;
    run_build(&r, b, FG_F64, fg_shape4(2, C, 3, 3));
    run_exec(&r);
    const fg_tensor *y = fg_program_output(r.p, OUT_Y), *ld = fg_program_output(r.p, OUT_FLDJ);
    for (int64_t j = 0; j < fg_tensor_numel(y); j++) {
      int64_t i = (j / 3) % 3, k = j % 3;
      bool conditions = (i + k + parity) % 2 == 0;
      cr_expect_eq(fg_tensor_get(y, j) == fg_tensor_get(r.x, j), conditions,
                   "parity %d: pixel (%lld, %lld) %s", parity, (long long)i, (long long)k,
                   conditions ? "conditions and must pass through" : "must be transformed");
    }
    double want = (double)(C * transformed[parity]) * log(1 / (1 + exp(-2.0)));
    for (int s = 0; s < 2; s++)
      cr_expect(fabs(fg_tensor_get(ld, s) - want) < 1e-12, "parity %d: log-det %g, want %g", parity,
                fg_tensor_get(ld, s), want);
    run_free(&r);
    fg_check_opts o = {.event = fg_shape3(C, 3, 3), .skip_gradcheck = true, .perturb = 0.5};
    fg_check_report rep;
    cr_expect_eq(fg_bijector_check(b, &fg_bijector_affine_coupling, &o, &rep), FG_OK, "%s", rep.msg);
    fg_bijector_free(b);
  }
}

/* RealNVP's log-scale c·tanh(h) stays within |c| however large the net's output: one
 * transformed feature (half of D = 2), a huge last layer, c = 0.7. */
Test(couplings, realnvp_tanh_scale_is_bounded_by_c) {
  fg_bijector *b = make(&fg_bijector_affine_coupling, "mask=half, net=mlp, hidden=8, blocks=1");
  run r;
  run_build(&r, b, FG_F64, fg_shape2(64, 2));
  perturb_params(r.ps, 1.0, 5);
  fg_tensor *c = fg_params_find(r.ps, "affine_coupling.rescale");
  fg_tensor *w = fg_params_find(r.ps, "affine_coupling.net.out.w");
  cr_assert(c && w, "parameters 'affine_coupling.rescale' and 'affine_coupling.net.out.w' exist");
  fg_tensor_fill(c, 0.7);
  for (int64_t j = 0; j < fg_tensor_numel(w); j++) fg_tensor_set(w, j, 1e3 * fg_tensor_get(w, j));
  run_exec(&r);
  const fg_tensor *ld = fg_program_output(r.p, OUT_FLDJ);
  double worst = max_abs(ld);
  cr_expect(worst <= 0.7 + 1e-12, "|log-det| %g exceeds c = 0.7", worst);
  cr_expect(worst > 0.69, "a huge net output saturates tanh: |log-det| %g should reach about c", worst);
  cr_expect(max_diff(fg_program_output(r.p, OUT_X2), r.x, 1) < 1e-10, "still invertible when saturated");
  run_free(&r);
  fg_bijector_free(b);
}

/* ---- arguments, shapes and names ---- */

static void expect_rejected(const fg_bijector_type *t, const char *args, const char *a, const char *b) {
  fg_bijector *bij = NULL;
  fg_err e;
  cr_expect_neq(fg_bijector_new_from_text(&bij, t, args, &e), FG_OK, "%s(%s) was accepted", t->name, args);
  cr_expect(strstr(e.msg, a) && strstr(e.msg, b), "%s(%s): message should name '%s' and '%s': %s",
            t->name, args, a, b, e.msg);
  fg_bijector_free(bij);
}

Test(couplings, bad_arguments_are_rejected_naming_the_argument) {
  const fg_bijector_type *aff = &fg_bijector_affine_coupling, *add = &fg_bijector_additive_coupling;
  expect_rejected(aff, "mask=chekerboard", "'mask'", "checkerboard and channel");
  expect_rejected(add, "mask=quarter", "'mask'", "half and alternate");
  expect_rejected(aff, "parity=2", "'parity'", "neither 0 nor 1");
  expect_rejected(add, "parity=-1", "'parity'", "-1");
  expect_rejected(aff, "net=mpl", "'net'", "mlp");
  expect_rejected(aff, "hidden=0", "'hidden'", "1..");
  expect_rejected(add, "blocks=-3", "'blocks'", "-3");
  expect_rejected(aff, "scale=softplus", "'scale'", "exp_tanh");
  expect_rejected(add, "mask=half, net=glow", "'net'", "net=mlp");
  expect_rejected(aff, "mask=alternate, net=resnet", "'net'", "convolutional");
  expect_rejected(add, "scale=sigmoid", "scale", "additive_coupling");
}

static void expect_shape_error(const char *args, fg_shape xs, const char *what) {
  fg_bijector *b = make(&fg_bijector_affine_coupling, args);
  fg_graph *g;
  fg_graph_new(&g, NULL);
  fg_params *ps;
  fg_params_new(&ps, 1, NULL);
  fg_flow_ctx *c;
  cr_assert_eq(fg_flow_ctx_new(&c, g, ps, NULL, NULL), FG_OK);
  fg_node x = fg_input(g, "x", FG_F32, xs), y, ld;
  cr_expect_eq(fg_bijector_forward(b, c, x, &y, &ld), FG_E_SHAPE, "%s", args);
  const char *m = fg_graph_errmsg(g);
  char shape[64];
  cr_expect(strstr(m, "affine_coupling") && strstr(m, what) && strstr(m, fg_shape_str(&xs, shape, sizeof shape)),
            "%s on %s: the message should name the layer, '%s' and the shape: %s", args, shape, what, m);
  fg_flow_ctx_free(c);
  fg_params_free(ps);
  fg_graph_free(g);
  fg_bijector_free(b);
}

Test(couplings, a_mask_that_does_not_fit_the_input_fails_the_graph) {
  expect_shape_error("mask=checkerboard, net=mlp", fg_shape2(3, 6), "'checkerboard'");
  expect_shape_error("mask=checkerboard, net=resnet", fg_shape4(3, 2, 1, 1), "two pixels");
  expect_shape_error("mask=channel, net=glow", fg_shape4(3, 1, 4, 4), "C >= 2");
  expect_shape_error("mask=half, net=mlp", fg_shape4(3, 2, 4, 4), "'half'");
  expect_shape_error("mask=alternate, net=mlp", fg_shape2(3, 1), "D >= 2");
}

static bool has_param(const fg_params *ps, const char *name) { return fg_params_find(ps, name) != NULL; }

Test(couplings, parameter_names_follow_the_documented_scheme) {
  struct { const char *args; fg_shape xs; const char *names[4]; } cases[] = {
      {"mask=half, net=mlp, blocks=2", fg_shape2(2, 4),
       {"net.hidden0.w", "net.hidden1.b", "net.out.w", "rescale"}},
      {"mask=channel, net=glow, scale=sigmoid", fg_shape4(2, 2, 3, 3),
       {"net.conv1.w", "net.conv2.b", "net.out.w", "net.out.logs"}},
      {"mask=checkerboard, net=resnet, blocks=2", fg_shape4(2, 2, 3, 3),
       {"net.in.w", "net.block1.conv2.w", "net.out.b", "rescale"}},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    fg_bijector *b = make(&fg_bijector_affine_coupling, cases[i].args);
    run r;
    run_build(&r, b, FG_F32, cases[i].xs);
    for (int k = 0; k < 4; k++) {
      char full[128];
      snprintf(full, sizeof full, "affine_coupling.%s", cases[i].names[k]);
      cr_expect(has_param(r.ps, full), "%s: no parameter '%s'", cases[i].args, full);
    }
    cr_expect_not(has_param(r.ps, "affine_coupling.net.block2.conv1.w"), "blocks=2 makes two blocks");
    run_free(&r);
    fg_bijector_free(b);
  }
}

/* The checkerboard conditioner sees C + 1 channels (b·x and the mask b); the channel mask's sees
 * the kept half; an mlp conditions a small image by flattening it. */
Test(couplings, conditioner_shapes) {
  fg_graph *g;
  fg_graph_new(&g, NULL);
  fg_params *ps;
  fg_params_new(&ps, 1, NULL);
  fg_flow_ctx *c;
  cr_assert_eq(fg_flow_ctx_new(&c, g, ps, NULL, NULL), FG_OK);
  fg_conditioner mlp, glow;
  fg_err e;
  cr_assert_eq(fg_conditioner_parse(&mlp, "mlp", 5, 2, &e), FG_OK);
  cr_assert_eq(fg_conditioner_parse(&glow, "glow", 5, 0, &e), FG_OK);
  fg_node img = fg_input(g, "img", FG_F32, fg_shape4(2, 3, 4, 5));
  fg_node out = fg_conditioner_apply(&mlp, c, "a", img, 6);
  fg_shape want = fg_shape4(2, 6, 4, 5), got = fg_node_shape(g, out);
  cr_expect(fg_shape_equal(&got, &want), "mlp on an image keeps the pixels");
  out = fg_conditioner_apply(&glow, c, "b", img, 6);
  got = fg_node_shape(g, out);
  cr_expect(fg_shape_equal(&got, &want), "glow keeps the pixels ('same' padding)");
  cr_expect(fg_params_find(ps, "b.out.logs") != NULL);
  fg_node vec = fg_input(g, "vec", FG_F32, fg_shape2(2, 3));
  cr_expect_eq(fg_conditioner_apply(&glow, c, "net", vec, 4), FG_POISON);
  cr_expect(strstr(fg_graph_errmsg(g), "glow") && strstr(fg_graph_errmsg(g), "[2, 3]"), "%s", fg_graph_errmsg(g));
  fg_flow_ctx_free(c);
  fg_params_free(ps);
  fg_graph_free(g);
}
