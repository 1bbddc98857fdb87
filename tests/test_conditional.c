/* Conditional flows and every latent: labels through the trainer's batches, shuffles and resumes;
 * a class-conditional model's log p depends on the label and its samples differ per class; all
 * latents of a multi-scale model encode and decode; class means of latents give edits that move
 * the decoded points towards the target class (its class-conditional log-likelihood rises). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "core/rng.h"
#include "core/runtime/program.h"
#include "flows/class_means.h"
#include "flows/registry.h"
#include "flows/train/checkpoint.h"
#include "flows/train/trainer_internal.h"
#include "frontends/data/toy2d.h"
#include "frontends/spec/spec.h"
#include "ops/ops.h"

/* A flow from spec text through the registry, as the CLI builds it. */
static fg_flow *flow_of(const char *text, fg_shape event) {
  fg_registry *r;
  fg_spec *s;
  fg_err e;
  cr_assert_eq(fg_registry_new(&r, &e), FG_OK);
  cr_assert_eq(fg_registry_add_builtins(r, &e), FG_OK);
  cr_assert_eq(fg_spec_parse(&s, text, "t.flow", r, &e), FG_OK, "%s", e.msg);
  fg_flow_config cfg = fg_spec_flow_config(s, event);
  fg_bijector *b = s->flow;
  s->flow = NULL;
  fg_flow *f;
  cr_assert_eq(fg_flow_new_config(&f, b, &cfg, &e), FG_OK, "%s", e.msg);
  fg_spec_free(s);
  fg_registry_free(r); /* built-in types outlive the registry */
  return f;
}

static const char COND_MOONS[] =
    "classes 2\nprior conditional\nflow\n  repeat 6\n"
    "    cond_affine_coupling mask=half, parity={i%2}, net=mlp, hidden=32, blocks=1, embed=4\n"
    "  end\nend\n";
static const char MOONS[] = "flow\n  repeat 6\n    affine_coupling mask=half, parity={i%2}, "
                            "net=mlp, hidden=32, blocks=1\n  end\nend\n";

static void moons(int64_t n, uint64_t seed, fg_tensor **x, fg_tensor **labels) {
  fg_err e;
  cr_assert_eq(fg_toy2d_generate_labeled(x, labels, "moons", n, 0.1, 2.0, seed, &e), FG_OK, "%s",
               e.msg);
}

static void train(fg_flow *f, const fg_tensor *x, const fg_tensor *labels, int64_t steps) {
  fg_train_settings s = fg_train_defaults();
  s.batch = 256, s.lr = 3e-3, s.warmup = 20;
  fg_trainer_data d = {.train = x, .train_labels = labels};
  fg_trainer *t;
  fg_err e;
  cr_assert_eq(fg_trainer_new(&t, f, &s, &d, 1, &e), FG_OK, "%s", e.msg);
  for (int64_t i = 0; i < steps; i++)
    cr_assert_eq(fg_trainer_step(t, NULL, &e), FG_OK, "%s", e.msg);
  fg_trainer_free(t);
}

/* [n] labels all equal to k. */
static fg_tensor *labels_of(int64_t n, double k) {
  fg_tensor *t;
  fg_shape s = fg_shape1(n);
  cr_assert_eq(fg_tensor_new(&t, FG_F32, &s, NULL), FG_OK);
  for (int64_t i = 0; i < n; i++) fg_tensor_set(t, i, k);
  return t;
}

/* log p(x | labels) per point, [N] float32 (labels NULL: unconditional). */
static fg_tensor *log_probs(fg_flow *f, const fg_tensor *x, const fg_tensor *labels) {
  fg_graph *g;
  fg_err e;
  cr_assert_eq(fg_graph_new(&g, &e), FG_OK);
  int64_t n = x->shape.d[0];
  fg_node ctx = labels ? fg_input(g, "context", FG_F32, fg_shape2(n, fg_flow_context_size(f)))
                       : FG_NONE,
          lp;
  cr_assert_eq(
      fg_flow_log_prob_cond(f, g, fg_input(g, "x", FG_F32, x->shape), ctx, false, &lp, NULL), FG_OK,
      "%s", fg_graph_errmsg(g));
  fg_tensor *c = NULL, *out;
  if (labels) cr_assert_eq(fg_flow_class_context(&c, f, labels, &e), FG_OK, "%s", e.msg);
  fg_program *p;
  cr_assert_eq(fg_program_new(&p, g, 1, &lp, &e), FG_OK, "%s", e.msg);
  cr_assert_eq(fg_params_bind(fg_flow_params(f), p, &e), FG_OK);
  cr_assert_eq(fg_program_bind(p, "x", x, &e), FG_OK, "%s", e.msg);
  if (c) cr_assert_eq(fg_program_bind(p, "context", c, &e), FG_OK, "%s", e.msg);
  cr_assert_eq(fg_program_run(p, &e), FG_OK, "%s", e.msg);
  cr_assert_eq(fg_tensor_copy(&out, fg_program_output(p, 0), FG_F32, &e), FG_OK);
  fg_program_free(p);
  fg_tensor_free(c);
  fg_graph_free(g);
  return out;
}

Test(conditional, log_p_depends_on_the_label) {
  fg_flow *f = flow_of(COND_MOONS, fg_shape1(2));
  fg_tensor *x, *labels, *tx, *tl;
  moons(4096, 1, &x, &labels);
  moons(400, 2, &tx, &tl);
  fg_tensor *zero = labels_of(400, 0), *one = labels_of(400, 1);
  fg_tensor *a = log_probs(f, tx, zero), *b = log_probs(f, tx, one);
  for (int64_t i = 0; i < 400; i++)
    cr_assert_eq(fg_tensor_get(a, i), fg_tensor_get(b, i),
                 "at initialisation the label changes nothing");
  fg_tensor_free(a), fg_tensor_free(b);
  train(f, x, labels, 300);
  a = log_probs(f, tx, zero), b = log_probs(f, tx, one);
  double gain = 0;
  int64_t right = 0;
  for (int64_t i = 0; i < 400; i++) {
    double own = fg_tensor_get(tl, i) == 0 ? fg_tensor_get(a, i) : fg_tensor_get(b, i);
    double other = fg_tensor_get(tl, i) == 0 ? fg_tensor_get(b, i) : fg_tensor_get(a, i);
    gain += (own - other) / 400, right += own > other;
  }
  cr_assert_gt(gain, 1.0, "log p(x | its moon) - log p(x | the other) = %g nats on average", gain);
  cr_assert_gt(right, 380, "%lld of 400 test points prefer their own label", (long long)right);
  fg_tensor_free(a), fg_tensor_free(b), fg_tensor_free(zero), fg_tensor_free(one);
  fg_tensor_free(x), fg_tensor_free(labels), fg_tensor_free(tx), fg_tensor_free(tl);
  fg_flow_free(f);
}

/* n samples of class k: [n, 2]. */
static fg_tensor *samples_of(fg_flow *f, int64_t n, double k) {
  fg_graph *g;
  fg_err e;
  cr_assert_eq(fg_graph_new(&g, &e), FG_OK);
  fg_node x, ctx = fg_input(g, "context", FG_F32, fg_shape2(n, 2));
  cr_assert_eq(fg_flow_sample_cond(f, g, n, ctx, 1.0, 9, &x), FG_OK, "%s", fg_graph_errmsg(g));
  fg_tensor *labels = labels_of(n, k), *c, *out;
  cr_assert_eq(fg_flow_class_context(&c, f, labels, &e), FG_OK);
  fg_program *p;
  cr_assert_eq(fg_program_new(&p, g, 1, &x, &e), FG_OK, "%s", e.msg);
  cr_assert_eq(fg_params_bind(fg_flow_params(f), p, &e), FG_OK);
  cr_assert_eq(fg_program_bind(p, "context", c, &e), FG_OK);
  cr_assert_eq(fg_program_run(p, &e), FG_OK, "%s", e.msg);
  cr_assert_eq(fg_tensor_copy(&out, fg_program_output(p, 0), FG_F32, &e), FG_OK);
  fg_program_free(p);
  fg_tensor_free(labels), fg_tensor_free(c);
  fg_graph_free(g);
  return out;
}

static double mean_coord(const fg_tensor *p, int k) {
  double s = 0;
  for (int64_t i = 0; i < p->shape.d[0]; i++) s += fg_tensor_get(p, 2 * i + k);
  return s / (double)p->shape.d[0];
}

Test(conditional, samples_per_class_differ) {
  fg_flow *f = flow_of(COND_MOONS, fg_shape1(2));
  fg_tensor *x, *labels;
  moons(4096, 1, &x, &labels);
  train(f, x, labels, 300);
  fg_tensor *upper = samples_of(f, 500, 0), *lower = samples_of(f, 500, 1);
  /* the upper arc's points average y = 2·(2/π - 0.25) ≈ 0.77,
   * the lower one's 2·(0.5 - 2/π - 0.25) ≈ -0.77 */
  cr_assert_gt(mean_coord(upper, 1), 0.4, "class 0 samples are on the upper moon: mean y %g",
               mean_coord(upper, 1));
  cr_assert_lt(mean_coord(lower, 1), -0.4, "class 1 samples are on the lower moon: mean y %g",
               mean_coord(lower, 1));
  cr_assert_lt(mean_coord(upper, 0), mean_coord(lower, 0),
               "and the upper moon lies left of the lower");
  fg_tensor_free(upper), fg_tensor_free(lower), fg_tensor_free(x), fg_tensor_free(labels);
  fg_flow_free(f);
}

/* ---- labels through the trainer ---- */

/* Continuous 2-D points that carry their own label: x_i = (label_i, i / n), labels random 0..2. */
static void labelled_rows(int64_t n, fg_tensor **x, fg_tensor **labels) {
  fg_shape xs = fg_shape2(n, 2), ls = fg_shape1(n);
  cr_assert_eq(fg_tensor_new(x, FG_F32, &xs, NULL), FG_OK);
  cr_assert_eq(fg_tensor_new(labels, FG_F32, &ls, NULL), FG_OK);
  for (int64_t i = 0; i < n; i++) {
    double k = (double)(fg_rng_bits(5, (uint64_t)i) % 3);
    fg_tensor_set(*labels, i, k);
    fg_tensor_set(*x, 2 * i, k), fg_tensor_set(*x, 2 * i + 1, (double)i / (double)n);
  }
}

static const char COND3[] =
    "classes 3\nprior conditional\nflow\n"
    "  cond_affine_coupling mask=half, parity=0, net=mlp, hidden=8, blocks=1\nend\n";

/* Every row of the current batch has its own label as its context. */
static void expect_batch_labelled(const fg_trainer *t) {
  for (int64_t r = 0; r < t->batch; r++) {
    double k = fg_tensor_get(t->x, 2 * r);
    for (int64_t c = 0; c < 3; c++)
      cr_assert_eq(fg_tensor_get(t->context, 3 * r + c), c == (int64_t)k ? 1.0 : 0.0,
                   "step %lld row %lld: x says class %g", (long long)t->step, (long long)r, k);
  }
}

static fg_trainer *cond_trainer(fg_flow **f, const fg_tensor *x, const fg_tensor *labels) {
  *f = flow_of(COND3, fg_shape1(2));
  fg_train_settings s = fg_train_defaults();
  s.batch = 16, s.seed = 4;
  fg_trainer_data d = {.train = x, .test = x, .train_labels = labels, .test_labels = labels};
  fg_trainer *t;
  fg_err e;
  cr_assert_eq(fg_trainer_new(&t, *f, &s, &d, 1, &e), FG_OK, "%s", e.msg);
  return t;
}

Test(conditional, labels_follow_their_rows_through_shuffles_and_resumes) {
  fg_tensor *x, *labels;
  labelled_rows(64, &x, &labels); /* 4 batches an epoch: 10 steps shuffle 3 times */
  fg_flow *f, *g;
  fg_trainer *t = cond_trainer(&f, x, labels);
  fg_err e;
  char path[64];
  snprintf(path, sizeof path, "/tmp/fg-cond-test-%d.safetensors", (int)getpid());
  fg_tensor *batch6 = NULL, *context6 = NULL;
  for (int i = 0; i < 10; i++) {
    cr_assert_eq(fg_trainer_step(t, NULL, &e), FG_OK, "%s", e.msg);
    expect_batch_labelled(t);
    if (t->step == 5) cr_assert_eq(fg_trainer_save(t, path, NULL, &e), FG_OK, "%s", e.msg);
    if (t->step == 6) {
      fg_tensor_copy(&batch6, t->x, FG_F32, NULL);
      fg_tensor_copy(&context6, t->context, FG_F32, NULL);
    }
  }
  double test;
  cr_assert_eq(fg_trainer_evaluate(t, &test, &e), FG_OK, "%s", e.msg);
  cr_assert(isfinite(test), "evaluation reads the test labels too");
  fg_trainer *u = cond_trainer(&g, x, labels); /* resumed from step 5: step 6 reads the same rows */
  cr_assert_eq(fg_trainer_load(u, path, &e), FG_OK, "%s", e.msg);
  cr_assert_eq(fg_trainer_step(u, NULL, &e), FG_OK, "%s", e.msg);
  for (int64_t i = 0; i < fg_tensor_numel(batch6); i++)
    cr_assert_eq(fg_tensor_get(u->x, i), fg_tensor_get(batch6, i));
  for (int64_t i = 0; i < fg_tensor_numel(context6); i++)
    cr_assert_eq(fg_tensor_get(u->context, i), fg_tensor_get(context6, i));
  remove(path);
  fg_trainer_free(t), fg_trainer_free(u);
  fg_flow_free(f), fg_flow_free(g);
  fg_tensor_free(x), fg_tensor_free(labels), fg_tensor_free(batch6), fg_tensor_free(context6);
}

Test(conditional, a_conditional_flow_needs_labels_and_a_context) {
  fg_tensor *x, *labels;
  labelled_rows(64, &x, &labels);
  fg_flow *f = flow_of(COND3, fg_shape1(2));
  fg_train_settings s = fg_train_defaults();
  s.batch = 16;
  fg_trainer_data d = {.train = x};
  fg_trainer *t;
  fg_err e;
  cr_assert_eq(fg_trainer_new(&t, f, &s, &d, 1, &e), FG_E_MISUSE);
  cr_assert(strstr(e.msg, "has no labels"), "%s", e.msg);
  fg_graph *g;
  fg_graph_new(&g, NULL);
  fg_node lp;
  cr_assert_neq(fg_flow_log_prob(f, g, fg_input(g, "x", FG_F32, fg_shape2(4, 2)), false, &lp),
                FG_OK);
  cr_assert(strstr(fg_graph_errmsg(g),
                   "0.cond_affine_coupling: type 'cond_affine_coupling' is conditional"),
            "%s", fg_graph_errmsg(g));
  fg_graph_free(g);
  fg_tensor_set(labels, 3, 3.0);
  d.train_labels = labels;
  cr_assert_eq(fg_trainer_new(&t, f, &s, &d, 1, &e), FG_E_FORMAT);
  cr_assert(strstr(e.msg, "label 3 is 3"), "%s", e.msg);
  fg_flow_free(f);
  fg_tensor_free(x), fg_tensor_free(labels);
}

/* ---- every latent ---- */

static const char SMALL_COND_GLOW[] =
    "classes 3\nprior conditional\nflow\n  affine shift=-0.5\n  levels 2\n    squeeze\n    "
    "actnorm\n"
    "    cond_affine_coupling mask=channel, parity=0, net=glow, hidden=8, scale=sigmoid, embed=2\n"
    "    cond_split\n  end\nend\n";

/* Moves every parameter off its (often zero) initial value, so nothing is the identity. */
static void perturb(fg_flow *f) {
  fg_params *ps = fg_flow_params(f);
  for (int i = 0; i < fg_params_count(ps); i++) {
    fg_tensor *p = fg_params_tensor(ps, i);
    for (int64_t j = 0; j < fg_tensor_numel(p); j++)
      fg_tensor_set(p, j,
                    fg_tensor_get(p, j) + 0.05 * fg_rng_normal(31 + (uint64_t)i, (uint64_t)j));
  }
}

Test(conditional, every_latent_of_a_multiscale_model_round_trips) {
  fg_flow *f = flow_of(SMALL_COND_GLOW, (fg_shape){3, {1, 8, 8}});
  perturb(f);
  cr_assert_eq(fg_flow_latent_count(f), 2, "the split's part and the top");
  fg_shape l0 = fg_flow_latent_shape_at(f, 0), l1 = fg_flow_latent_shape_at(f, 1);
  cr_assert(l0.ndim == 3 && l0.d[0] == 2 && l0.d[1] == 4 && l0.d[2] == 4,
            "factored out: [2, 4, 4]");
  cr_assert(l1.ndim == 3 && l1.d[0] == 8 && l1.d[1] == 2 && l1.d[2] == 2, "top: [8, 2, 2]");
  fg_graph *g;
  fg_err e;
  fg_graph_new(&g, NULL);
  fg_node top = fg_input(g, "top", FG_F32, fg_shape4(4, 8, 2, 2)), top_lp;
  cr_assert_eq(fg_flow_base_log_prob(f, g, top, &top_lp), FG_E_MISUSE,
               "the conditional prior needs a context");
  fg_graph_free(g);
  fg_graph_new(&g, NULL);
  fg_node x = fg_input(g, "x", FG_F32, fg_shape4(4, 1, 8, 8)),
          ctx = fg_input(g, "context", FG_F32, fg_shape2(4, 3));
  fg_node other = fg_input(g, "other", FG_F32, fg_shape2(4, 3)), lat[2], ld, back, moved, lp;
  cr_assert_eq(fg_flow_encode_latents(f, g, x, ctx, lat, &ld), FG_OK, "%s", fg_graph_errmsg(g));
  cr_assert_eq(fg_flow_decode_latents(f, g, lat, ctx, &back), FG_OK, "%s", fg_graph_errmsg(g));
  cr_assert_eq(fg_flow_decode_latents(f, g, lat, other, &moved), FG_OK, "%s", fg_graph_errmsg(g));
  cr_assert_eq(fg_flow_log_prob_cond(f, g, x, ctx, false, &lp, NULL), FG_OK, "%s",
               fg_graph_errmsg(g));
  fg_node outs[4] = {fg_sub(g, back, x), fg_sub(g, moved, x), lp, ld};
  cr_assert_eq(fg_graph_status(g), FG_OK, "%s", fg_graph_errmsg(g));
  fg_tensor *xv, *cv, *ov;
  fg_shape xs = fg_shape4(4, 1, 8, 8), cs = fg_shape2(4, 3);
  fg_tensor_new(&xv, FG_F32, &xs, NULL), fg_tensor_new(&cv, FG_F32, &cs, NULL),
      fg_tensor_new(&ov, FG_F32, &cs, NULL);
  for (int64_t i = 0; i < 256; i++) fg_tensor_set(xv, i, fg_rng_uniform(3, (uint64_t)i));
  for (int64_t r = 0; r < 4; r++)
    fg_tensor_set(cv, 3 * r + r % 3, 1), fg_tensor_set(ov, 3 * r + (r + 1) % 3, 1);
  fg_program *p;
  cr_assert_eq(fg_program_new(&p, g, 4, outs, &e), FG_OK, "%s", e.msg);
  fg_params_bind(fg_flow_params(f), p, NULL);
  fg_program_bind(p, "x", xv, NULL), fg_program_bind(p, "context", cv, NULL),
      fg_program_bind(p, "other", ov, NULL);
  cr_assert_eq(fg_program_run(p, &e), FG_OK, "%s", e.msg);
  double worst = 0, changed = 0;
  for (int64_t i = 0; i < 256; i++) {
    worst = fmax(worst, fabs(fg_tensor_get(fg_program_output(p, 0), i)));
    changed = fmax(changed, fabs(fg_tensor_get(fg_program_output(p, 1), i)));
  }
  cr_assert_lt(worst, 1e-4, "decode(encode(x)) = x: max error %g", worst);
  cr_assert_gt(changed, 1e-3, "decoding the same latents with another label gives another x (%g)",
               changed);
  for (int64_t r = 0; r < 4; r++) cr_assert(isfinite(fg_tensor_get(fg_program_output(p, 2), r)));
  fg_program_free(p);
  fg_tensor_free(xv), fg_tensor_free(cv), fg_tensor_free(ov);
  fg_graph_free(g);
  fg_flow_free(f);
}

Test(conditional, contexts_are_checked) {
  fg_flow *f = flow_of(MOONS, fg_shape1(2)), *c = flow_of(COND_MOONS, fg_shape1(2));
  fg_graph *g;
  fg_graph_new(&g, NULL);
  fg_node lat[1] = {fg_input(g, "z", FG_F32, fg_shape2(4, 2))}, x;
  fg_node ctx = fg_input(g, "context", FG_F32, fg_shape2(4, 2));
  cr_assert_eq(fg_flow_decode_latents(f, g, lat, ctx, &x), FG_E_MISUSE);
  cr_assert(strstr(fg_graph_errmsg(g), "unconditional flow"), "%s", fg_graph_errmsg(g));
  fg_graph_free(g);
  fg_graph_new(&g, NULL);
  lat[0] = fg_input(g, "z", FG_F32, fg_shape2(4, 2));
  ctx = fg_input(g, "context", FG_F32, fg_shape2(3, 2));
  cr_assert_eq(fg_flow_decode_latents(c, g, lat, ctx, &x), FG_E_SHAPE);
  cr_assert(strstr(fg_graph_errmsg(g), "4 samples of this flow need [4, 2]"), "%s",
            fg_graph_errmsg(g));
  fg_graph_free(g);
  fg_tensor *bad = labels_of(2, 2), *out;
  fg_err e;
  cr_assert_eq(fg_flow_class_context(&out, c, bad, &e), FG_E_FORMAT);
  cr_assert(strstr(e.msg, "label 0 is 2"), "%s", e.msg);
  fg_tensor_free(bad);
  fg_flow_free(f), fg_flow_free(c);
}

/* ---- class means and edits ---- */

Test(conditional, the_class_direction_moves_points_towards_the_target_class) {
  fg_tensor *x, *labels, *tx, *tl;
  moons(4096, 1, &x, &labels);
  moons(400, 2, &tx, &tl);
  fg_flow *f = flow_of(MOONS, fg_shape1(2)), *judge = flow_of(COND_MOONS, fg_shape1(2));
  train(f, x, labels, 300);
  train(judge, x, labels, 300); /* scores: the class-conditional log-likelihood log p(x | class) */
  fg_class_means *m;
  fg_err e;
  cr_assert_eq(fg_class_means_compute(&m, f, x, labels, 2, 500, &e), FG_OK, "%s", e.msg);
  cr_assert(m->count[0] == 2048 && m->count[1] == 2048, "every training point counted once");
  /* the first 50 test points of the upper moon, moved towards the lower one */
  fg_shape s = fg_shape2(50, 2);
  fg_tensor *src;
  fg_tensor_new(&src, FG_F32, &s, NULL);
  for (int64_t i = 0, k = 0; k < 50; i++)
    if (fg_tensor_get(tl, i) == 0)
      fg_tensor_set(src, 2 * k, fg_tensor_get(tx, 2 * i)),
          fg_tensor_set(src, 2 * k + 1, fg_tensor_get(tx, 2 * i + 1)), k++;
  double scales[4] = {0, 0.5, 1, 1.5};
  fg_graph *g;
  fg_graph_new(&g, NULL);
  fg_node out;
  cr_assert_eq(
      fg_flow_edit_latents(f, g, fg_input(g, "x", FG_F32, s), FG_NONE, m, 0, 1, 4, scales, &out),
      FG_OK, "%s", fg_graph_errmsg(g));
  fg_program *p;
  cr_assert_eq(fg_program_new(&p, g, 1, &out, &e), FG_OK, "%s", e.msg);
  fg_params_bind(fg_flow_params(f), p, NULL);
  fg_program_bind(p, "x", src, NULL);
  cr_assert_eq(fg_program_run(p, &e), FG_OK, "%s", e.msg);
  const fg_tensor *moved = fg_program_output(p, 0);
  cr_assert_eq(moved->shape.d[0], 200, "4 scales x 50 points");
  for (int64_t i = 0; i < 100; i++)
    cr_assert_float_eq(fg_tensor_get(moved, i), fg_tensor_get(src, i), 1e-3,
                       "scale 0 reconstructs");
  fg_tensor *lower = labels_of(50, 1), *upper = labels_of(50, 0);
  double prev = -INFINITY;
  for (int k = 0; k < 4; k++) {
    fg_tensor *view, *pts, *to, *from;
    fg_tensor_slice0(&view, moved, 50 * k, 50 * k + 50, NULL);
    fg_tensor_copy(&pts, view, FG_F32, NULL);
    to = log_probs(judge, pts, lower), from = log_probs(judge, pts, upper);
    double score = 0, margin = 0;
    for (int64_t i = 0; i < 50; i++)
      score += fg_tensor_get(to, i) / 50,
          margin += (fg_tensor_get(to, i) - fg_tensor_get(from, i)) / 50;
    if (k < 3)
      cr_assert_gt(score, prev,
                   "log p(x | lower moon) rises along the path: %g after %g at scale %g", score,
                   prev, scales[k]);
    if (k == 2)
      cr_assert_gt(margin, 0, "at scale 1 the points are more likely under the lower moon (%g)",
                   margin);
    prev = score;
    fg_tensor_free(view), fg_tensor_free(pts), fg_tensor_free(to), fg_tensor_free(from);
  }
  /* the cache round-trips, and refuses another tag */
  char path[64];
  snprintf(path, sizeof path, "/tmp/fg-means-test-%d.safetensors", (int)getpid());
  fg_class_means *back;
  cr_assert_eq(fg_class_means_load(&back, f, path, "t", &e), FG_E_NOTFOUND);
  cr_assert_eq(fg_class_means_save(m, path, "step=300", &e), FG_OK, "%s", e.msg);
  cr_assert_eq(fg_class_means_load(&back, f, path, "step=301", &e), FG_E_FORMAT);
  cr_assert_eq(fg_class_means_load(&back, f, path, "step=300", &e), FG_OK, "%s", e.msg);
  cr_assert(back->count[0] == 2048 && back->classes == 2);
  for (int64_t j = 0; j < fg_tensor_numel(m->mean[0]); j++)
    cr_assert_eq(fg_tensor_get(back->mean[0], j), fg_tensor_get(m->mean[0], j));
  remove(path);
  fg_class_means_free(back), fg_class_means_free(m);
  fg_program_free(p);
  fg_graph_free(g);
  fg_tensor_free(lower), fg_tensor_free(upper), fg_tensor_free(src);
  fg_tensor_free(x), fg_tensor_free(labels), fg_tensor_free(tx), fg_tensor_free(tl);
  fg_flow_free(f), fg_flow_free(judge);
}
