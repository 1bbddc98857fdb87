/* Flow models and the NICE / RealNVP / Glow builders: round trips on 28x28 batches, log-dets
 * against the autodiff Jacobian, data-dependent initialisation, sampling, state updates, and
 * training with an optimiser (whose updates tests/test_optim.c checks). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "ops/autodiff/autodiff.h"
#include "core/runtime/program.h"
#include "core/rng.h"
#include "flows/check.h"
#include "flows/flow.h"
#include "flows/models.h"
#include "flows/train/optim.h"
#include "core/ir/op.h"
#include "ops/ops.h"
#include "tests/perturb.h"

/* Error detail of the last failing library call, for assertion messages. */
static fg_err terr __attribute__((unused));

/* ---- helpers ---- */

static fg_tensor *uniform(fg_shape s, fg_dtype t, double lo, double hi, uint64_t seed) {
  fg_tensor *x;
  cr_assert_eq(fg_tensor_new(&x, t, &s, NULL), FG_OK);
  for (int64_t i = 0; i < fg_tensor_numel(x); i++) fg_tensor_set(x, i, lo + (hi - lo) * fg_rng_uniform(seed, (uint64_t)i));
  return x;
}


static fg_program *compile_and_run(fg_flow *f, fg_graph *g, int n, const fg_node *outs, const char *input,
                                   const fg_tensor *x) {
  cr_assert_eq(fg_graph_status(g), FG_OK, "%s", fg_graph_errmsg(g));
  fg_program *p;
  fg_err e;
  cr_assert_eq(fg_program_new(&p, g, n, outs, &e), FG_OK, "%s", e.msg);
  cr_assert_eq(fg_params_bind(fg_flow_params(f), p, &e), FG_OK, "%s", e.msg);
  if (input) cr_assert_eq(fg_program_bind(p, input, x, &terr), FG_OK, "%s", terr.msg);
  cr_assert_eq(fg_program_run(p, &terr), FG_OK, "%s", terr.msg);
  return p;
}

static double max_abs_diff(const fg_tensor *a, const fg_tensor *b) {
  cr_assert_eq(fg_tensor_numel(a), fg_tensor_numel(b));
  double worst = 0;
  for (int64_t i = 0; i < fg_tensor_numel(a); i++) {
    double d = fabs(fg_tensor_get(a, i) - fg_tensor_get(b, i));
    if (!(d <= worst)) worst = d;
  }
  return worst;
}

/* max |x - f⁻¹(f(x))| on x; also checks log p(x) is finite. */
static double roundtrip_error(fg_flow *f, const fg_tensor *x) {
  fg_graph *g;
  fg_graph_new(&g, NULL);
  fg_node in = fg_input(g, "x", x->dtype, x->shape), back, logp;
  cr_assert_eq(fg_flow_reconstruct(f, g, in, &back), FG_OK, "%s", fg_graph_errmsg(g));
  cr_assert_eq(fg_flow_log_prob(f, g, in, false, &logp), FG_OK, "%s", fg_graph_errmsg(g));
  fg_node outs[2] = {back, logp};
  fg_program *p = compile_and_run(f, g, 2, outs, "x", x);
  double err = max_abs_diff(fg_program_output(p, 0), x);
  for (int64_t i = 0; i < fg_tensor_numel(fg_program_output(p, 1)); i++)
    cr_assert(isfinite(fg_tensor_get(fg_program_output(p, 1), i)));
  fg_program_free(p);
  fg_graph_free(g);
  return err;
}

static const fg_shape MNIST = {3, {1, 28, 28}};
static const fg_shape TINY = {3, {1, 4, 4}};

/* ---- round trips on 28x28 batches (float32) ---- */

Test(flow, nice_round_trip_on_28x28) {
  fg_flow *f;
  fg_err e;
  fg_mlp_flow_config cfg = {.couplings = 4, .hidden = 16, .blocks = 1};
  fg_model_opts m = {.event = MNIST, .seed = 1};
  cr_assert_eq(fg_nice_new(&f, NULL, &m, &cfg, &e), FG_OK, "%s", e.msg);
  perturb(f, 0.02, 5);
  fg_tensor *x = uniform((fg_shape){4, {2, 1, 28, 28}}, FG_F32, 0, 1, 11);
  double err = roundtrip_error(f, x);
  cr_assert(err < 1e-4, "NICE round trip error %g", err);
  fg_tensor_free(x);
  fg_flow_free(f);
}

Test(flow, realnvp_round_trip_on_28x28) {
  fg_flow *f;
  fg_err e;
  fg_realnvp_config cfg = fg_realnvp_defaults();
  cfg.hidden = 4, cfg.blocks = 1;
  fg_model_opts m = {.event = MNIST, .seed = 2};
  cr_assert_eq(fg_realnvp_new(&f, NULL, &m, &cfg, &e), FG_OK, "%s", e.msg);
  fg_shape z = fg_flow_latent_shape(f);
  cr_assert(z.ndim == 3 && z.d[0] == 2 && z.d[1] == 14 && z.d[2] == 14, "the top latent is half of 4x14x14");
  perturb(f, 0.02, 6);
  fg_tensor *x = uniform((fg_shape){4, {2, 1, 28, 28}}, FG_F32, 0, 1, 12);
  double err = roundtrip_error(f, x);
  cr_assert(err < 1e-4, "RealNVP round trip error %g", err);
  fg_tensor_free(x);
  fg_flow_free(f);
}

/* The reference Glow with 2 steps of width 8 per level, on 1x28x28. */
static fg_flow *glow_28x28(void) {
  fg_flow *f;
  fg_err e;
  fg_glow_config cfg = fg_glow_defaults();
  cfg.steps = 2, cfg.hidden = 8;
  fg_model_opts m = {.event = MNIST, .seed = 3};
  cr_assert_eq(fg_glow_new(&f, NULL, &m, &cfg, &e), FG_OK, "%s", e.msg);
  return f;
}

Test(flow, glow_round_trip_on_28x28) {
  fg_flow *f = glow_28x28();
  fg_err e;
  fg_shape z = fg_flow_latent_shape(f);
  cr_assert(z.ndim == 3 && z.d[0] == 8 && z.d[1] == 7 && z.d[2] == 7, "28 -> 14 -> 7 with one split");
  fg_tensor *x = uniform((fg_shape){4, {2, 1, 28, 28}}, FG_F32, 0, 1, 13);
  cr_assert_eq(fg_flow_data_init(f, x, &e), FG_OK, "%s", e.msg);
  perturb(f, 0.02, 7);
  double err = roundtrip_error(f, x);
  cr_assert(err < 1e-4, "Glow round trip error %g", err);
  fg_tensor_free(x);
  fg_flow_free(f);
}

/* Dumps group nodes by layer: every node a Glow's training graph computes (forward and
 * gradient) carries the name of the layer that made it, or "prior". */
Test(flow, every_node_carries_its_layer_name) {
  fg_flow *f = glow_28x28();
  fg_graph *g;
  fg_graph_new(&g, NULL);
  fg_node loss, *grads = malloc(sizeof *grads * (size_t)fg_flow_num_params(f));
  fg_node x = fg_input(g, "x", FG_F32, (fg_shape){4, {2, 1, 28, 28}});
  fg_node first = fg_graph_node_count(g);
  cr_assert_eq(fg_flow_nll_loss(f, g, x, true, &loss, NULL), FG_OK, "%s", fg_graph_errmsg(g));
  fg_node forward_end = fg_graph_node_count(g);
  cr_assert_eq(fg_flow_param_grads(f, g, loss, grads), FG_OK, "%s", fg_graph_errmsg(g));
  int layers_seen[64] = {0};
  for (fg_node id = first; id < fg_graph_node_count(g); id++) {
    const char *s = fg_node_scope(g, id);
    if (!s) { /* only the gradient's seed, d loss / d loss = 1, belongs to no layer */
      cr_assert(id == forward_end && fg_graph_node(g, id)->op == FG_OP_FILL,
                "node %d (op %d) has no layer", (int)id, fg_graph_node(g, id)->op);
      continue;
    }
    int k = atoi(s);
    bool named = !strcmp(s, "prior") || !strcmp(s, "loss");
    cr_assert(named || (strchr(s, '.') && k >= 0 && k < 64), "scope '%s'", s);
    if (!named) layers_seen[k]++;
  }
  for (int k = 0; k < fg_bijector_num_children(fg_flow_bijector(f)); k++)
    cr_assert_gt(layers_seen[k], 0, "layer %d's nodes are named after it", k);
  free(grads);
  fg_graph_free(g);
  fg_flow_free(f);
}

/* ---- log-dets against the Jacobian (float64, 1x4x4, two scales) ----
 * Each split layer's log-det is the log-density of what it factors out under its prior.  So,
 * layer by layer: the sum of the other layers' log-dets must equal log|det J| of the whole map
 * x -> (top latent, every factored-out part), a bijection of R^16, and the flow's total must be
 * that sum plus the splits' terms. */
/* z [B, ...] as [B, elements per sample]. */
static fg_node flat(fg_graph *g, fg_node z) {
  fg_shape s = fg_node_shape(g, z);
  return fg_reshape(g, z, fg_shape2(s.d[0], fg_shape_count(&s) / s.d[0]));
}

static void check_against_jacobian(fg_flow *f, const char *name) {
  perturb(f, 0.1, 21);
  fg_graph *g;
  fg_graph_new(&g, NULL);
  fg_flow_ctx *c;
  fg_flow_ctx_opts co = {.dtype = FG_F64};
  cr_assert_eq(fg_flow_ctx_new(&c, g, fg_flow_params(f), &co, NULL), FG_OK);
  fg_bijector *chain = fg_flow_bijector(f);
  fg_node x = fg_input(g, "x", FG_F64, fg_shape4(2, 1, 4, 4)), cur = x;
  fg_node others = fg_fill(g, 0, FG_F64, fg_shape1(2)), all = others, parts[8];
  int n_parts = 1, n_splits = 0;
  for (int i = 0; i < fg_bijector_num_children(chain); i++) {
    fg_bijector *u = fg_bijector_child(chain, i);
    fg_node y, ld;
    cr_assert_eq(fg_bijector_forward(u, c, cur, &y, &ld), FG_OK, "%s", fg_graph_errmsg(g));
    all = fg_add(g, all, ld);
    if (strcmp(fg_bijector_type_of(u)->name, "split") == 0) {
      cr_assert_lt(n_parts, 8);
      parts[n_parts++] = flat(g, fg_flow_pop_latent(c)), n_splits++;
    } else {
      others = fg_add(g, others, ld);
    }
    cur = y;
  }
  parts[0] = flat(g, cur);
  fg_node whole = fg_concat(g, n_parts, parts, 1);
  fg_node jac = fg_jacobian_logdet(g, x, whole, name), z, total;
  cr_assert_eq(fg_flow_encode(f, g, x, false, &z, &total), FG_OK, "%s", fg_graph_errmsg(g));
  fg_node outs[4] = {others, jac, all, total};
  fg_tensor *xv = uniform(fg_shape4(2, 1, 4, 4), FG_F64, 0.1, 0.9, 31);
  fg_program *p = compile_and_run(f, g, 4, outs, "x", xv);
  const fg_tensor *o = fg_program_output(p, 0), *j = fg_program_output(p, 1);
  double err = max_abs_diff(o, j), err_total = max_abs_diff(fg_program_output(p, 2), fg_program_output(p, 3));
  cr_assert(err < 1e-8, "%s: Σ log-dets %g, %g vs log|det J| %g, %g", name, fg_tensor_get(o, 0),
            fg_tensor_get(o, 1), fg_tensor_get(j, 0), fg_tensor_get(j, 1));
  cr_assert(fabs(fg_tensor_get(o, 0)) > 1e-3, "%s: a log-det of ~0 would test nothing", name);
  cr_assert(err_total < 1e-10, "%s: the flow's log-det is not the layers' sum", name);
  cr_assert_eq(n_splits, strcmp(name, "nice") == 0 ? 0 : 1);
  fg_program_free(p);
  fg_tensor_free(xv);
  fg_flow_ctx_free(c);
  fg_graph_free(g);
}

Test(flow, nice_logdet_matches_the_jacobian) {
  fg_flow *f;
  fg_err e;
  fg_mlp_flow_config cfg = {.couplings = 4, .hidden = 8, .blocks = 1};
  fg_model_opts m = {.event = TINY, .dtype = FG_F64, .seed = 4};
  cr_assert_eq(fg_nice_new(&f, NULL, &m, &cfg, &e), FG_OK, "%s", e.msg);
  check_against_jacobian(f, "nice");
  /* no split, so the library's verification applies to the whole chain as well */
  fg_check_opts o = {.event = TINY, .lo = 0.1, .hi = 0.9, .skip_gradcheck = true};
  fg_check_report rep;
  cr_assert_eq(fg_bijector_check(fg_flow_bijector(f), NULL, &o, &rep), FG_OK, "%s", rep.msg);
  fg_flow_free(f);
}

Test(flow, realnvp_logdet_matches_the_jacobian) {
  fg_flow *f;
  fg_err e;
  fg_realnvp_config cfg = fg_realnvp_defaults();
  cfg.hidden = 4, cfg.blocks = 1;
  fg_model_opts m = {.event = TINY, .dtype = FG_F64, .seed = 5};
  cr_assert_eq(fg_realnvp_new(&f, NULL, &m, &cfg, &e), FG_OK, "%s", e.msg);
  check_against_jacobian(f, "realnvp");
  fg_flow_free(f);
}

Test(flow, glow_logdet_matches_the_jacobian) {
  fg_flow *f;
  fg_err e;
  fg_glow_config cfg = fg_glow_defaults();
  cfg.steps = 2, cfg.hidden = 4;
  fg_model_opts m = {.event = TINY, .dtype = FG_F64, .seed = 6};
  cr_assert_eq(fg_glow_new(&f, NULL, &m, &cfg, &e), FG_OK, "%s", e.msg);
  check_against_jacobian(f, "glow");
  fg_flow_free(f);
}

/* ---- data-dependent initialisation ---- */

/* Per-feature mean and std of y [B, F] (feature j: column j). */
static void column_stats(const fg_tensor *y, int64_t j, double *mean, double *std) {
  int64_t b = y->shape.d[0], f = y->shape.d[1];
  double s = 0, ss = 0;
  for (int64_t i = 0; i < b; i++) s += fg_tensor_get(y, i * f + j);
  *mean = s / (double)b;
  for (int64_t i = 0; i < b; i++) ss += pow(fg_tensor_get(y, i * f + j) - *mean, 2);
  *std = sqrt(ss / (double)b);
}

/* [actnorm, conv1x1, actnorm] on badly scaled data: after the pass, the first actnorm's output
 * and the second's (initialised on what the first two layers make of the batch) are N(0, 1)
 * per feature on that batch. */
/* A flow over [event] of the built-in types `types` (default arguments) in a chain. */
static fg_flow *chain_flow(int n, const char *const *types, fg_shape event, uint64_t seed) {
  fg_registry *r;
  fg_registry_new(&r, NULL);
  fg_err e;
  cr_assert_eq(fg_registry_add_builtins(r, &e), FG_OK, "%s", e.msg);
  fg_bijector *kids[8], *chain;
  cr_assert(n <= 8);
  for (int i = 0; i < n; i++)
    cr_assert_eq(fg_bijector_new_from_text(&kids[i], fg_registry_find(r, types[i]), "", &e), FG_OK, "%s", e.msg);
  cr_assert_eq(fg_bijector_chain(&chain, n, kids, &e), FG_OK);
  fg_flow *f;
  cr_assert_eq(fg_flow_new(&f, chain, FG_BASE_NORMAL, event, seed, &e), FG_OK, "%s", e.msg);
  fg_registry_free(r);
  return f;
}

Test(flow, data_init_standardises_actnorm_outputs) {
  const char *types[3] = {"actnorm", "conv1x1", "actnorm"};
  fg_flow *f = chain_flow(3, types, fg_shape1(4), 9);
  fg_err e;
  fg_tensor *x;
  cr_assert_eq(fg_tensor_new(&x, FG_F32, &(fg_shape){2, {256, 4}}, NULL), FG_OK);
  const double mu[4] = {1, -2, 3, 0.5}, sd[4] = {0.5, 2, 1, 3};
  for (int64_t i = 0; i < 256 * 4; i++) fg_tensor_set(x, i, mu[i % 4] + sd[i % 4] * fg_rng_normal(3, (uint64_t)i));
  cr_assert_eq(fg_flow_data_init(f, x, &e), FG_OK, "%s", e.msg);
  cr_assert_neq(fg_tensor_get(fg_params_find(fg_flow_params(f), "2.actnorm.logs"), 0), 0.0, "the last actnorm was initialised too");

  fg_graph *g;
  fg_graph_new(&g, NULL);
  fg_flow_ctx *c;
  cr_assert_eq(fg_flow_ctx_new(&c, g, fg_flow_params(f), NULL, NULL), FG_OK);
  fg_node in = fg_input(g, "x", FG_F32, x->shape), first, last, ld;
  fg_bijector_forward(fg_bijector_child(fg_flow_bijector(f), 0), c, in, &first, &ld);
  fg_bijector_forward(fg_flow_bijector(f), c, in, &last, &ld);
  fg_node outs[2] = {first, last};
  fg_program *p = compile_and_run(f, g, 2, outs, "x", x);
  for (int k = 0; k < 2; k++)
    for (int64_t j = 0; j < 4; j++) {
      double m, s;
      column_stats(fg_program_output(p, k), j, &m, &s);
      cr_assert(fabs(m) < 1e-4 && fabs(s - 1) < 1e-4, "actnorm %d feature %lld: mean %g std %g", k, (long long)j, m, s);
    }
  fg_program_free(p);
  fg_flow_ctx_free(c);
  fg_graph_free(g);
  fg_tensor_free(x);
  fg_flow_free(f);
}

Test(flow, data_init_rejects_a_batch_of_the_wrong_shape) {
  fg_flow *f;
  fg_err e;
  fg_glow_config cfg = fg_glow_defaults();
  cfg.levels = 1, cfg.steps = 1, cfg.hidden = 4;
  fg_model_opts m = {.event = {3, {1, 4, 4}}, .seed = 1};
  cr_assert_eq(fg_glow_new(&f, NULL, &m, &cfg, &e), FG_OK, "%s", e.msg);
  fg_tensor *x = uniform(fg_shape4(2, 1, 4, 6), FG_F32, 0, 1, 1);
  cr_assert_eq(fg_flow_data_init(f, x, &e), FG_E_SHAPE);
  cr_assert(strstr(e.msg, "[2, 1, 4, 6]") && strstr(e.msg, "[1, 4, 4]"), "%s", e.msg);
  fg_tensor_free(x);
  fg_flow_free(f);
}

/* ---- building errors, sampling, names, bits/dim ---- */

Test(flow, builders_explain_bad_shapes_and_arguments) {
  fg_flow *f;
  fg_err e;
  fg_glow_config cfg = fg_glow_defaults();
  fg_model_opts m = {.event = {3, {1, 6, 6}}};
  cr_assert_eq(fg_glow_new(&f, NULL, &m, &cfg, &e), FG_E_SHAPE);
  cr_assert(strstr(e.msg, "glow") && strstr(e.msg, "divisible by 4"), "%s", e.msg);
  fg_mlp_flow_config nice = fg_nice_defaults();
  nice.mask = "diagonal";
  m.event = fg_shape1(2);
  cr_assert_neq(fg_nice_new(&f, NULL, &m, &nice, &e), FG_OK);
  cr_assert(strstr(e.msg, "nice: layer 0 (additive_coupling)") && strstr(e.msg, "diagonal"), "%s", e.msg);
  /* a flow whose layers do not fit its events fails when it is made */
  fg_bijector *b;
  fg_realnvp_config rc = fg_realnvp_defaults();
  cr_assert_eq(fg_realnvp_bijector(&b, NULL, (fg_shape){3, {1, 4, 4}}, &rc, &e), FG_OK, "%s", e.msg);
  cr_assert_neq(fg_flow_new(&f, b, FG_BASE_NORMAL, (fg_shape){3, {1, 4, 5}}, 0, &e), FG_OK);
  cr_assert(strstr(e.msg, "flow: building log p(x)"), "%s", e.msg);
}

/* Sizes from untrusted input (a checkpoint's event, an .npy shape) meet documented caps before
 * anything is allocated: a per-sample event of FG_FLOW_MAX_EVENT elements, and a parameter
 * store of max_params scalars (FG_FLOW_MAX_PARAMS by default). */
Test(flow, events_and_parameter_counts_are_capped_before_allocating) {
  fg_flow *f;
  fg_err e;
  fg_bijector *b;
  fg_mlp_flow_config nice = fg_nice_defaults();
  fg_model_opts m = {.event = fg_shape1(2)};
  cr_assert_eq(fg_nice_bijector(&b, NULL, m.event, &nice, &e), FG_OK, "%s", e.msg);
  cr_assert_eq(fg_flow_new(&f, b, FG_BASE_NORMAL, (fg_shape){1, {4000000000}}, 0, &e), FG_E_LIMIT);
  cr_assert(strstr(e.msg, "4000000000") && strstr(e.msg, "elements per sample"), "%s", e.msg);
  cr_assert_null(f);
  cr_assert_eq(fg_nice_bijector(&b, NULL, m.event, &nice, &e), FG_OK, "%s", e.msg);
  fg_flow_config small = {.event = fg_shape1(2), .max_params = 1000};
  cr_assert_eq(fg_flow_new_config(&f, b, &small, &e), FG_E_LIMIT);
  cr_assert(strstr(e.msg, "1000") && strstr(e.msg, "parameters"), "%s", e.msg);
  cr_assert_eq(fg_nice_bijector(&b, NULL, m.event, &nice, &e), FG_OK, "%s", e.msg);
  small.max_params = 0; /* the default cap */
  cr_assert_eq(fg_flow_new_config(&f, b, &small, &e), FG_OK, "%s", e.msg);
  fg_flow_free(f);
}

Test(flow, parameter_names_follow_the_chain) {
  fg_flow *f;
  fg_err e;
  fg_glow_config cfg = fg_glow_defaults();
  cfg.steps = 1, cfg.hidden = 4;
  fg_model_opts m = {.event = TINY};
  cr_assert_eq(fg_glow_new(&f, NULL, &m, &cfg, &e), FG_OK, "%s", e.msg);
  fg_params *ps = fg_flow_params(f);
  /* 0.affine 1.squeeze 2.actnorm 3.conv1x1_lu 4.affine_coupling 5.split 6.squeeze 7-9 step */
  cr_assert_not_null(fg_params_find(ps, "2.actnorm.logs"));
  cr_assert_not_null(fg_params_find(ps, "3.conv1x1_lu.log_s_offset"));
  cr_assert_not_null(fg_params_find(ps, "4.affine_coupling.net.out.w"));
  cr_assert_not_null(fg_params_find(ps, "5.split.prior.weight"));
  cr_assert_not_null(fg_params_find(ps, "9.affine_coupling.net.conv1.w"));
  fg_tensor *mean = fg_params_find(ps, "prior.mean");
  cr_assert_not_null(mean, "Glow's learned top prior");
  cr_assert(mean->shape.ndim == 3 && mean->shape.d[0] == 8 && mean->shape.d[1] == 1, "the top latent is 8x1x1");
  cr_assert_str_eq(fg_params_name(ps, 0), "2.actnorm.bias", "store order is forward order");
  fg_flow_free(f);
}

/* A one-step Glow (with its split) on 1x8x8, weights perturbed off their initial values. */
static fg_flow *small_glow(void) {
  fg_flow *f;
  fg_err e;
  fg_glow_config cfg = fg_glow_defaults();
  cfg.steps = 1, cfg.hidden = 4;
  fg_model_opts m = {.event = {3, {1, 8, 8}}, .seed = 4};
  cr_assert_eq(fg_glow_new(&f, NULL, &m, &cfg, &e), FG_OK, "%s", e.msg);
  perturb(f, 0.02, 8);
  return f;
}

Test(flow, sampling_is_seeded_and_finite) {
  fg_flow *f = small_glow();
  fg_graph *g;
  fg_graph_new(&g, NULL);
  fg_node s[3];
  cr_assert_eq(fg_flow_sample(f, g, 3, 0.7, 42, &s[0]), FG_OK, "%s", fg_graph_errmsg(g));
  cr_assert_eq(fg_flow_sample(f, g, 3, 0.7, 42, &s[1]), FG_OK);
  cr_assert_eq(fg_flow_sample(f, g, 3, 0.7, 43, &s[2]), FG_OK);
  fg_shape sh = fg_node_shape(g, s[0]);
  cr_assert(sh.ndim == 4 && sh.d[0] == 3 && sh.d[1] == 1 && sh.d[2] == 8 && sh.d[3] == 8);
  fg_program *p = compile_and_run(f, g, 3, s, NULL, NULL);
  const fg_tensor *a = fg_program_output(p, 0);
  for (int64_t i = 0; i < fg_tensor_numel(a); i++) cr_assert(isfinite(fg_tensor_get(a, i)));
  cr_assert_eq(max_abs_diff(a, fg_program_output(p, 1)), 0.0, "same seed, same samples");
  cr_assert_gt(max_abs_diff(a, fg_program_output(p, 2)), 1e-3, "another seed, other samples");
  fg_program_free(p);
  fg_graph_free(g);
  fg_flow_free(f);
}

Test(flow, bits_per_dim) {
  cr_assert_float_eq(fg_bits_per_dim(0.0, 784, 256), 8.0, 1e-12);
  cr_assert_float_eq(fg_bits_per_dim(-10 * log(2.0), 10, 1), 1.0, 1e-12);
  fg_graph *g;
  fg_graph_new(&g, NULL);
  double lp[2] = {0.0, -784 * log(2.0)};
  fg_tensor *t;
  cr_assert_eq(fg_tensor_from_data(&t, FG_F64, &(fg_shape){1, {2}}, lp, NULL), FG_OK);
  fg_node bpd = fg_flow_bits_per_dim(g, fg_constant(g, t), 784, 256);
  fg_program *p;
  cr_assert_eq(fg_program_new(&p, g, 1, &bpd, NULL), FG_OK);
  cr_assert_eq(fg_program_run(p, &terr), FG_OK);
  cr_assert_float_eq(fg_tensor_get(fg_program_output(p, 0), 0), 8.0, 1e-12);
  cr_assert_float_eq(fg_tensor_get(fg_program_output(p, 0), 1), 9.0, 1e-12);
  fg_program_free(p);
  fg_tensor_free(t);
  fg_graph_free(g);
}

/* A training graph of a flow with batch-norm carries the running averages' updates. */
Test(flow, batchnorm_running_averages_follow_training_steps) {
  fg_registry *r;
  fg_registry_new(&r, NULL);
  fg_err e;
  cr_assert_eq(fg_registry_add_builtins(r, &e), FG_OK, "%s", e.msg);
  fg_bijector *bn;
  cr_assert_eq(fg_bijector_new_from_text(&bn, fg_registry_find(r, "batchnorm"), "momentum=0.1", &e), FG_OK, "%s", e.msg);
  fg_flow *f;
  cr_assert_eq(fg_flow_new(&f, bn, FG_BASE_NORMAL, fg_shape1(2), 0, &e), FG_OK, "%s", e.msg);
  fg_graph *g;
  fg_graph_new(&g, NULL);
  fg_node x = fg_input(g, "x", FG_F32, fg_shape2(4, 2)), loss;
  fg_flow_updates *u;
  cr_assert_eq(fg_flow_nll_loss(f, g, x, true, &loss, &u), FG_OK, "%s", fg_graph_errmsg(g));
  cr_assert_eq(fg_flow_updates_count(u), 2);
  fg_node outs[3] = {loss, fg_flow_updates_node(u, 0), fg_flow_updates_node(u, 1)};
  const float xv[8] = {1, 10, 2, 20, 3, 30, 4, 40};
  fg_tensor *xt;
  cr_assert_eq(fg_tensor_from_data(&xt, FG_F32, &(fg_shape){2, {4, 2}}, xv, NULL), FG_OK);
  fg_program *p = compile_and_run(f, g, 3, outs, "x", xt);
  const fg_tensor *vals[2] = {fg_program_output(p, 1), fg_program_output(p, 2)};
  cr_assert_eq(fg_flow_updates_apply(f, u, vals, &e), FG_OK, "%s", e.msg);
  const fg_tensor *rm = fg_params_find(fg_flow_params(f), fg_flow_updates_name(u, 0));
  cr_assert_not_null(rm);
  cr_assert_float_eq(fg_tensor_get(rm, 0), 0.1 * 2.5, 1e-6, "0.9 · 0 + 0.1 · batch mean");
  cr_assert_float_eq(fg_tensor_get(rm, 1), 0.1 * 25, 1e-5);
  fg_program_free(p);
  fg_tensor_free(xt);
  fg_flow_updates_free(u);
  fg_graph_free(g);
  fg_flow_free(f);
  fg_registry_free(r);
}

/* The pieces put together: RealNVP on a correlated 2-D Gaussian, Adam, a few hundred steps. */
Test(flow, training_lowers_the_nll) {
  fg_flow *f;
  fg_err e;
  fg_mlp_flow_config cfg = {.couplings = 4, .hidden = 16, .blocks = 1};
  fg_model_opts m = {.event = {1, {2}}, .seed = 3};
  cr_assert_eq(fg_realnvp_vector_new(&f, NULL, &m, &cfg, &e), FG_OK, "%s", e.msg);
  fg_graph *g;
  fg_graph_new(&g, NULL);
  fg_node x = fg_input(g, "x", FG_F32, fg_shape2(128, 2)), loss;
  cr_assert_eq(fg_flow_nll_loss(f, g, x, true, &loss, NULL), FG_OK, "%s", fg_graph_errmsg(g));
  int n = fg_flow_num_params(f);
  fg_node outs[64];
  cr_assert_lt(n, 64);
  outs[0] = loss;
  cr_assert_eq(fg_flow_param_grads(f, g, loss, outs + 1), FG_OK, "%s", fg_graph_errmsg(g));
  fg_tensor *xt;
  cr_assert_eq(fg_tensor_new(&xt, FG_F32, &(fg_shape){2, {128, 2}}, NULL), FG_OK);
  fg_program *p = compile_and_run(f, g, n + 1, outs, "x", xt);
  fg_optim_config oc = fg_optim_defaults(FG_OPTIM_ADAM);
  oc.lr = 1e-2;
  fg_optim *o;
  cr_assert_eq(fg_optim_new_for_params(&o, &oc, fg_flow_params(f), &e), FG_OK, "%s", e.msg);
  double first = 0, last = 0;
  for (int s = 0; s < 300; s++) {
    for (int64_t i = 0; i < 128; i++) { /* x1 ~ N(0, 1), x2 = x1² / 2 + 0.3 ε: a bent density */
      double a = fg_rng_normal(77, (uint64_t)(s * 256 + 2 * i)), b = fg_rng_normal(77, (uint64_t)(s * 256 + 2 * i + 1));
      fg_tensor_set(xt, 2 * i, a), fg_tensor_set(xt, 2 * i + 1, 0.5 * a * a + 0.3 * b);
    }
    cr_assert_eq(fg_program_run(p, &terr), FG_OK, "%s", terr.msg);
    double l = fg_tensor_get(fg_program_output(p, 0), 0);
    if (s < 20) first += l / 20;
    if (s >= 280) last += l / 20;
    const fg_tensor *grads[64];
    for (int i = 0; i < n; i++) grads[i] = fg_program_output(p, i + 1);
    cr_assert_eq(fg_optim_step(o, grads, NULL, &e), FG_OK, "%s", e.msg);
  }
  /* the density's entropy is 1.63 nats; N(0, I) on it scores ~2.14 */
  cr_assert(last < 1.8 && last < first - 0.3, "NLL %g -> %g", first, last);
  fg_optim_free(o);
  fg_program_free(p);
  fg_tensor_free(xt);
  fg_graph_free(g);
  fg_flow_free(f);
}

/* fg_flow_sample_steps replays fg_flow_sample layer by layer: the same draws (a Glow with a
 * split, whose inverse draws the factored-out half), the last step equal bit for bit. */
Test(flow, sampling_steps_replay_the_sample) {
  fg_flow *f = small_glow();
  fg_graph *g;
  fg_graph_new(&g, NULL);
  fg_node steps[64], x;
  const char *names[64];
  int n_steps = 0;
  cr_assert_eq(fg_flow_sample(f, g, 3, 0.7, 42, &x), FG_OK, "%s", fg_graph_errmsg(g));
  cr_assert_eq(fg_flow_sample_steps(f, g, 3, 0.7, 42, 64, steps, names, &n_steps), FG_OK, "%s",
               fg_graph_errmsg(g));
  int kids = fg_bijector_num_children(fg_flow_bijector(f));
  cr_assert_eq(n_steps, kids + 1);
  cr_assert_str_eq(names[0], "z");
  cr_assert_str_eq(names[1], fg_bijector_prefix(fg_bijector_child(fg_flow_bijector(f), kids - 1)));
  fg_node outs[2] = {x, steps[n_steps - 1]};
  fg_program *p = compile_and_run(f, g, 2, outs, NULL, NULL);
  cr_assert_eq(max_abs_diff(fg_program_output(p, 0), fg_program_output(p, 1)), 0.0);
  fg_program_free(p);
  fg_graph_free(g);
  /* too little room: the count needed, and a misuse error */
  fg_graph_new(&g, NULL);
  cr_assert_eq(fg_flow_sample_steps(f, g, 3, 0.7, 42, 2, steps, names, &n_steps), FG_E_MISUSE);
  cr_assert_eq(n_steps, kids + 1);
  fg_graph_free(g);
  fg_flow_free(f);
}

/* A flow whose last layer is exp: sampling applies its inverse (log) first, to Gaussian draws,
 * so the first non-finite step is that layer's. */
Test(flow, sampling_steps_show_where_a_sample_leaves_the_float_range) {
  const char *types[2] = {"actnorm", "exp"};
  fg_flow *f = chain_flow(2, types, fg_shape1(4), 9);
  fg_graph *g;
  fg_graph_new(&g, NULL);
  fg_node steps[4];
  const char *names[4];
  int n_steps = 0;
  cr_assert_eq(fg_flow_sample_steps(f, g, 16, 1.0, 1, 4, steps, names, &n_steps), FG_OK, "%s",
               fg_graph_errmsg(g));
  cr_assert_eq(n_steps, 3);
  fg_program *p = compile_and_run(f, g, 3, steps, NULL, NULL);
  int first_bad = -1;
  for (int i = 0; i < n_steps && first_bad < 0; i++) {
    const fg_tensor *v = fg_program_output(p, i);
    for (int64_t j = 0; j < fg_tensor_numel(v); j++)
      if (!isfinite(fg_tensor_get(v, j))) first_bad = i;
  }
  cr_assert_eq(first_bad, 1, "the exp layer's inverse (log of a negative draw)");
  cr_assert(strstr(names[1], "exp"), "named %s", names[1]);
  fg_program_free(p);
  fg_graph_free(g);
  fg_flow_free(f);
}
