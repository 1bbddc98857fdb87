/* Memory flat in depth (flows/train/recompute.h): the block-by-block gradients with activations
 * rebuilt through inverses equal the stored mode's (Glow with splits, RealNVP with logit, a 2-D
 * flow); the round-trip check sends a lossy block back to stored activations and the result
 * still equals the stored mode; the planned peak of the training program stays flat in depth
 * while the stored mode's grows; the trainer's recompute mode takes the same steps. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/runtime/program.h"
#include "core/rng.h"
#include "flows/layers/coupling.h"
#include "flows/layers/layers.h"
#include "flows/models.h"
#include "flows/train/recompute.h"
#include "flows/train/trainer.h"
#include "ops/ops.h"
#include "tests/perturb.h"

/* Error detail of the last failing library call, for assertion messages. */
static fg_err terr __attribute__((unused));

/* The native kernels unless FG_KERNELS says otherwise: the float32 tolerances below were set
 * for their rounding (other implementations round differently, by up to ~1.1e-4 relative in a
 * RealNVP's rescale gradient), and the planned peak below is the values' memory, not a kernel
 * library's scratch, which is flat in depth and would dominate these small models'. */
static void pin_kernels(void) { setenv("FG_KERNELS", "native", 0); }
TestSuite(recompute, .init = pin_kernels);

enum { MAX_PARAMS = 512 };
static const double GRAD_TOL = 1e-4; /* relative, float32 */

/* ---- models ---- */


static fg_flow *glow_of(fg_shape event, int64_t steps, int64_t hidden, fg_dtype t) {
  fg_glow_config cfg = fg_glow_defaults();
  cfg.levels = 2, cfg.steps = steps, cfg.hidden = hidden;
  fg_model_opts m = {.event = event, .seed = 5, .dtype = t};
  fg_flow *f;
  fg_err e;
  cr_assert_eq(fg_glow_new(&f, NULL, &m, &cfg, &e), FG_OK, "%s", e.msg);
  return f;
}

static fg_flow *small_glow(fg_shape event, int64_t steps, int64_t hidden) {
  return glow_of(event, steps, hidden, FG_F32);
}

static fg_flow *small_realnvp(void) {
  fg_realnvp_config cfg = fg_realnvp_defaults();
  cfg.hidden = 8, cfg.blocks = 1;
  fg_model_opts m = {.event = {3, {1, 8, 8}}, .seed = 6};
  fg_flow *f;
  fg_err e;
  cr_assert_eq(fg_realnvp_new(&f, NULL, &m, &cfg, &e), FG_OK, "%s", e.msg);
  return f;
}

static fg_bijector *layer(const fg_bijector_type *t, const char *args) {
  fg_bijector *b;
  fg_err e;
  cr_assert_eq(fg_bijector_new_from_text(&b, t, args, &e), FG_OK, "%s", e.msg);
  return b;
}

/* A 2-D flow of affine couplings; with `lossy`, x + 1e4 and back in the middle, whose first
 * half loses ~5e-4 of x to float32 rounding (its inverse cannot give x back). */
static fg_flow *toy_2d(bool lossy) {
  const char *coupling = "mask=half, net=mlp, hidden=16, blocks=1";
  fg_bijector *v[6];
  int n = 0;
  v[n++] = layer(&fg_bijector_affine_coupling, coupling);
  v[n++] = layer(&fg_bijector_affine_coupling, "mask=half, parity=1, net=mlp, hidden=16, blocks=1");
  if (lossy) v[n++] = layer(&fg_bijector_affine, "shift=10000"), v[n++] = layer(&fg_bijector_affine, "shift=-10000");
  v[n++] = layer(&fg_bijector_affine_coupling, coupling);
  v[n++] = layer(&fg_bijector_scale, "");
  fg_bijector *chain;
  fg_flow *f;
  fg_err e;
  cr_assert_eq(fg_bijector_chain(&chain, n, v, &e), FG_OK, "%s", e.msg);
  cr_assert_eq(fg_flow_new(&f, chain, FG_BASE_NORMAL, fg_shape1(2), 7, &e), FG_OK, "%s", e.msg);
  return f;
}

static fg_tensor *batch_of(const fg_flow *f, int64_t b, double lo, double hi, uint64_t seed) {
  fg_shape ev = fg_flow_get_config(f)->event, s = {.ndim = ev.ndim + 1};
  s.d[0] = b;
  for (int i = 0; i < ev.ndim; i++) s.d[i + 1] = ev.d[i];
  fg_tensor *x;
  cr_assert_eq(fg_tensor_new(&x, fg_flow_get_config(f)->dtype, &s, NULL), FG_OK);
  for (int64_t i = 0; i < fg_tensor_numel(x); i++) fg_tensor_set(x, i, lo + (hi - lo) * fg_rng_uniform(seed, (uint64_t)i));
  return x;
}

/* ---- loss and gradients in both modes ---- */

typedef struct run {
  fg_graph *g;
  fg_program *p;
} run;

/* Stored mode when rc is NULL.  Outputs: loss, then every parameter's gradient. */
static run loss_and_grads(fg_flow *f, fg_recompute *rc, const fg_tensor *x, bool execute) {
  run r = {NULL, NULL};
  fg_graph_new(&r.g, NULL);
  int n = fg_flow_num_params(f);
  cr_assert_lt(n, MAX_PARAMS);
  fg_node in = fg_input(r.g, "x", x->dtype, x->shape), outs[MAX_PARAMS + 1];
  if (rc) {
    cr_assert_eq(fg_recompute_loss_grads(rc, r.g, in, &outs[0], outs + 1, NULL), FG_OK, "%s", fg_graph_errmsg(r.g));
  } else {
    cr_assert_eq(fg_flow_nll_loss(f, r.g, in, true, &outs[0], NULL), FG_OK, "%s", fg_graph_errmsg(r.g));
    cr_assert_eq(fg_flow_param_grads(f, r.g, outs[0], outs + 1), FG_OK, "%s", fg_graph_errmsg(r.g));
  }
  fg_err e;
  cr_assert_eq(fg_program_new(&r.p, r.g, n + 1, outs, &e), FG_OK, "%s", e.msg);
  if (!execute) return r;
  cr_assert_eq(fg_params_bind(fg_flow_params(f), r.p, &e), FG_OK, "%s", e.msg);
  cr_assert_eq(fg_program_bind(r.p, "x", x, &terr), FG_OK, "%s", terr.msg);
  cr_assert_eq(fg_program_run(r.p, &terr), FG_OK, "%s", terr.msg);
  return r;
}

static void run_free(run *r) {
  fg_program_free(r->p);
  fg_graph_free(r->g);
}

/* max |a - b| / max(max |a|, 1e-5) */
static double rel_diff(const fg_tensor *a, const fg_tensor *b) {
  cr_assert_eq(fg_tensor_numel(a), fg_tensor_numel(b));
  double diff = 0, scale = 1e-5;
  for (int64_t i = 0; i < fg_tensor_numel(a); i++) {
    double d = fabs(fg_tensor_get(a, i) - fg_tensor_get(b, i)), m = fabs(fg_tensor_get(a, i));
    if (!(d <= diff)) diff = d;
    if (m > scale) scale = m;
  }
  return diff / scale;
}

/* The recompute mode's loss and gradients equal the stored mode's. */
static void expect_gradients_within(fg_flow *f, fg_recompute *rc, const fg_tensor *x, double tol) {
  run stored = loss_and_grads(f, NULL, x, true), rec = loss_and_grads(f, rc, x, true);
  double loss = fg_tensor_get(fg_program_output(stored.p, 0), 0);
  cr_assert(isfinite(loss), "stored loss %g", loss);
  cr_expect_leq(fabs(loss - fg_tensor_get(fg_program_output(rec.p, 0), 0)), 1e-5 * (1 + fabs(loss)));
  for (int i = 0; i < fg_flow_num_params(f); i++) {
    double d = rel_diff(fg_program_output(stored.p, i + 1), fg_program_output(rec.p, i + 1));
    cr_expect_leq(d, tol, "gradient of %s: relative difference %g", fg_params_name(fg_flow_params(f), i), d);
  }
  run_free(&stored);
  run_free(&rec);
}

static void expect_same_gradients(fg_flow *f, fg_recompute *rc, const fg_tensor *x) {
  expect_gradients_within(f, rc, x, GRAD_TOL);
}

static fg_recompute *plan_for(fg_flow *f) {
  fg_recompute *rc;
  fg_err e;
  cr_assert_eq(fg_recompute_new(&rc, f, &e), FG_OK, "%s", e.msg);
  return rc;
}

/* ---- gradients ---- */

Test(recompute, glow_with_splits_matches_stored_gradients) {
  fg_flow *f = small_glow((fg_shape){3, {2, 8, 8}}, 2, 8);
  perturb(f, 0.05, 11);
  fg_recompute *rc = plan_for(f);
  /* affine, then per level squeeze, K x (actnorm, conv1x1_lu, coupling), split (not the last) */
  cr_assert_eq(fg_recompute_num_blocks(rc), 1 + 2 * (1 + 3 * 2) + 1);
  cr_expect_eq(fg_recompute_block_mode(rc, 0), FG_BLOCK_STORED_FIRST);
  cr_expect_eq(fg_recompute_num_recomputed(rc), fg_recompute_num_blocks(rc) - 1);
  fg_tensor *x = batch_of(f, 4, 0, 1, 21);
  int fell;
  fg_err e;
  cr_assert_eq(fg_recompute_check(rc, x, 1e-4, NULL, &fell, &e), FG_OK, "%s", e.msg);
  cr_expect_eq(fell, 0, "a Glow block failed the round trip");
  for (int i = 1; i < fg_recompute_num_blocks(rc); i++)
    cr_expect_leq(fg_recompute_block_error(rc, i), 1e-5, "%s: %g", fg_recompute_block_name(rc, i),
                  fg_recompute_block_error(rc, i));
  expect_same_gradients(f, rc, x);
  fg_tensor_free(x);
  fg_recompute_free(rc);
  fg_flow_free(f);
}

/* In float64 the reconstructions are exact to ~1e-15, so the gradients agree to rounding: what
 * separates the modes in float32 is the gradient's sensitivity to its input, not the method. */
Test(recompute, glow_in_float64_matches_to_rounding) {
  fg_flow *f = glow_of((fg_shape){3, {2, 8, 8}}, 2, 8, FG_F64);
  perturb(f, 0.1, 17);
  fg_recompute *rc = plan_for(f);
  fg_tensor *x = batch_of(f, 4, 0, 1, 28);
  expect_gradients_within(f, rc, x, 1e-10);
  fg_tensor_free(x);
  fg_recompute_free(rc);
  fg_flow_free(f);
}

Test(recompute, realnvp_with_logit_matches_stored_gradients) {
  fg_flow *f = small_realnvp();
  perturb(f, 0.05, 12);
  fg_recompute *rc = plan_for(f);
  cr_expect_eq(fg_recompute_block_mode(rc, 0), FG_BLOCK_STORED_FIRST); /* the logit */
  cr_expect_eq(fg_recompute_num_recomputed(rc), fg_recompute_num_blocks(rc) - 1);
  fg_tensor *x = batch_of(f, 4, 0.02, 0.98, 22);
  expect_same_gradients(f, rc, x);
  fg_tensor_free(x);
  fg_recompute_free(rc);
  fg_flow_free(f);
}

Test(recompute, toy_2d_flow_matches_stored_gradients) {
  fg_flow *f = toy_2d(false);
  perturb(f, 0.2, 13);
  fg_recompute *rc = plan_for(f);
  fg_tensor *x = batch_of(f, 32, -2, 2, 23);
  expect_same_gradients(f, rc, x);
  fg_tensor_free(x);
  fg_recompute_free(rc);
  fg_flow_free(f);
}

Test(recompute, batchnorm_keeps_its_activations) {
  fg_bijector *v[3] = {layer(&fg_bijector_affine_coupling, "mask=half, net=mlp, hidden=8, blocks=1"),
                       layer(&fg_bijector_batchnorm, ""),
                       layer(&fg_bijector_affine_coupling, "mask=half, parity=1, net=mlp, hidden=8, blocks=1")};
  fg_bijector *chain;
  fg_flow *f;
  fg_err e;
  cr_assert_eq(fg_bijector_chain(&chain, 3, v, &e), FG_OK, "%s", e.msg);
  cr_assert_eq(fg_flow_new(&f, chain, FG_BASE_NORMAL, fg_shape1(4), 3, &e), FG_OK, "%s", e.msg);
  perturb(f, 0.2, 14);
  fg_recompute *rc = plan_for(f);
  cr_expect_eq(fg_recompute_block_mode(rc, 1), FG_BLOCK_STORED_NO_INVERSE);
  cr_expect_eq(fg_recompute_block_mode(rc, 2), FG_BLOCK_RECOMPUTED);
  fg_tensor *x = batch_of(f, 16, -2, 2, 24);
  expect_same_gradients(f, rc, x);
  fg_tensor_free(x);
  fg_recompute_free(rc);
  fg_flow_free(f);
}

/* ---- the round-trip check ---- */

Test(recompute, a_lossy_block_falls_back_and_gradients_still_match) {
  fg_flow *f = toy_2d(true);
  perturb(f, 0.2, 15);
  fg_recompute *rc = plan_for(f);
  fg_tensor *x = batch_of(f, 32, -2, 2, 25);
  int fell;
  fg_err e;
  cr_assert_eq(fg_recompute_check(rc, x, 1e-4, NULL, &fell, &e), FG_OK, "%s", e.msg);
  cr_expect_eq(fell, 1);
  cr_expect_eq(fg_recompute_block_mode(rc, 2), FG_BLOCK_STORED_ROUND_TRIP, "x + 1e4: error %g",
               fg_recompute_block_error(rc, 2));
  cr_expect_gt(fg_recompute_block_error(rc, 2), 1e-4);
  for (int i = 1; i < fg_recompute_num_blocks(rc); i++)
    if (i != 2) cr_expect_eq(fg_recompute_block_mode(rc, i), FG_BLOCK_RECOMPUTED, "%s", fg_recompute_block_name(rc, i));
  expect_same_gradients(f, rc, x);
  fg_tensor_free(x);
  fg_recompute_free(rc);
  fg_flow_free(f);
}

Test(recompute, a_negative_tolerance_stores_every_block) {
  fg_flow *f = small_glow((fg_shape){3, {2, 8, 8}}, 1, 8);
  perturb(f, 0.05, 16);
  fg_recompute *rc = plan_for(f);
  int n = fg_recompute_num_recomputed(rc), fell;
  fg_tensor *x = batch_of(f, 4, 0, 1, 26);
  fg_err e;
  cr_assert_eq(fg_recompute_check(rc, x, -1, NULL, &fell, &e), FG_OK, "%s", e.msg);
  cr_expect_eq(fell, n);
  cr_expect_eq(fg_recompute_num_recomputed(rc), 0);
  expect_same_gradients(f, rc, x);
  fg_tensor_free(x);
  fg_recompute_free(rc);
  fg_flow_free(f);
}

/* ---- memory ---- */

static size_t planned_peak(int64_t steps, bool recompute) {
  fg_flow *f = small_glow((fg_shape){3, {1, 16, 16}}, steps, 16);
  fg_recompute *rc = recompute ? plan_for(f) : NULL;
  fg_tensor *x = batch_of(f, 16, 0, 1, 27);
  run r = loss_and_grads(f, rc, x, false);
  size_t bytes = fg_program_get_stats(r.p)->arena_bytes;
  run_free(&r);
  fg_tensor_free(x);
  fg_recompute_free(rc);
  fg_flow_free(f);
  return bytes;
}

Test(recompute, planned_peak_is_flat_in_depth) {
  size_t stored1 = planned_peak(1, false), stored4 = planned_peak(4, false);
  size_t rec1 = planned_peak(1, true), rec4 = planned_peak(4, true);
  cr_log_info("planned peak bytes: stored K=1 %zu, K=4 %zu; recompute K=1 %zu, K=4 %zu", stored1, stored4, rec1, rec4);
  cr_expect_geq((double)stored4, 2.5 * (double)stored1, "stored mode: %zu -> %zu", stored1, stored4);
  cr_expect_leq((double)rec4, 1.3 * (double)rec1, "recompute mode: %zu -> %zu", rec1, rec4);
  cr_expect_lt(rec4, stored4);
}

/* ---- the trainer ---- */

static fg_trainer *trainer_for(fg_flow *f, const fg_tensor *data, bool recompute, double tol) {
  fg_train_settings s = fg_train_defaults();
  s.batch = 4, s.recompute = recompute, s.recompute_tol = tol, s.recompute_check = 2;
  s.lr = 1e-2;
  snprintf(s.optimizer, sizeof s.optimizer, "sgd"); /* Adam would magnify rounding-level gradients */
  fg_trainer_data d = {.train = data, .discrete = true};
  fg_trainer *t;
  fg_err e;
  cr_assert_eq(fg_trainer_new(&t, f, &s, &d, 1, &e), FG_OK, "%s", e.msg);
  return t;
}

/* Three steps of a small Glow on 0..255 images; returns the flow (its trained parameters). */
static fg_flow *trained(const fg_tensor *data, bool recompute, double tol, int *fallbacks) {
  fg_flow *f = small_glow((fg_shape){3, {1, 8, 8}}, 2, 8);
  fg_trainer *t = trainer_for(f, data, recompute, tol);
  cr_expect_eq(fg_trainer_recompute(t) != NULL, recompute);
  *fallbacks = 0;
  for (int s = 0; s < 3; s++) {
    fg_train_step_info info;
    fg_err e;
    cr_assert_eq(fg_trainer_step(t, &info, &e), FG_OK, "%s", e.msg);
    cr_expect(!info.skipped);
    *fallbacks += info.recompute_fallbacks;
  }
  fg_trainer_free(t);
  return f;
}

static void expect_same_params(fg_flow *a, fg_flow *b) {
  fg_params *pa = fg_flow_params(a), *pb = fg_flow_params(b);
  for (int i = 0; i < fg_params_count(pa); i++) {
    double d = rel_diff(fg_params_tensor(pa, i), fg_params_tensor(pb, i));
    cr_expect_leq(d, 1e-4, "parameter %s after 3 steps: relative difference %g", fg_params_name(pa, i), d);
  }
}

static fg_tensor *images(void) {
  fg_tensor *x;
  cr_assert_eq(fg_tensor_new(&x, FG_F32, &(fg_shape){4, {16, 1, 8, 8}}, NULL), FG_OK);
  for (int64_t i = 0; i < fg_tensor_numel(x); i++) fg_tensor_set(x, i, floor(256 * fg_rng_uniform(31, (uint64_t)i)));
  return x;
}

Test(recompute, trainer_steps_match_the_stored_mode) {
  fg_tensor *data = images();
  int fell_stored, fell_rec;
  fg_flow *a = trained(data, false, 1e-4, &fell_stored), *b = trained(data, true, 1e-4, &fell_rec);
  cr_expect_eq(fell_rec, 0);
  expect_same_params(a, b);
  fg_flow_free(a);
  fg_flow_free(b);
  fg_tensor_free(data);
}

Test(recompute, trainer_reports_fallbacks_and_keeps_training) {
  fg_tensor *data = images();
  int fell_stored, fell_rec;
  fg_flow *a = trained(data, false, 1e-4, &fell_stored), *b = trained(data, true, -1, &fell_rec);
  cr_expect_eq(fell_rec, 1 + 2 * (1 + 3 * 2) + 1 - 1, "every block but the first falls back, once");
  expect_same_params(a, b);
  fg_flow_free(a);
  fg_flow_free(b);
  fg_tensor_free(data);
}
