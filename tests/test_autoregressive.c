/* Masked autoregressive flows (flows/layers/autoregressive.c) and their MADE conditioner
 * (flows/layers/conditioner.c): the autoregressive dependence pattern in either order, the
 * declared log-det against the one the engine derives from the triangular structure, round
 * trips of both transforms on vectors and images, which direction is one pass and which takes
 * D, and the verification at a larger perturbation. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "flows/check.h"
#include "ops/autodiff/autodiff.h"
#include "tests/bijector_rig.h"

enum { D = 5, BATCH = 3 };

/* A graph with type(args)'s forward (or inverse) on x [BATCH, event] in float64. */
typedef struct built {
  fg_registry *reg;
  fg_bijector *b;
  fg_params *ps;
  fg_graph *g;
  fg_flow_ctx *c;
  fg_node x, y, ld;
} built;

static built build(const char *type, const char *args, fg_shape event, bool inverse) {
  built t = {0};
  fg_err e;
  fg_registry_new(&t.reg, NULL);
  fg_registry_add_builtins(t.reg, NULL);
  cr_assert_eq(fg_bijector_new_from_text(&t.b, fg_registry_find(t.reg, type), args, &e), FG_OK, "%s", e.msg);
  fg_params_new(&t.ps, 3, NULL);
  fg_flow_ctx_opts co = {.dtype = FG_F64};
  fg_flow_ctx_new_graph(&t.c, &t.g, t.ps, &co, NULL);
  fg_shape xs = {event.ndim + 1, {BATCH}};
  for (int i = 0; i < event.ndim; i++) xs.d[i + 1] = event.d[i];
  t.x = fg_input(t.g, "x", FG_F64, xs);
  if (inverse) fg_bijector_inverse(t.b, t.c, t.x, &t.y, &t.ld);
  else fg_bijector_forward(t.b, t.c, t.x, &t.y, &t.ld);
  cr_assert_eq(fg_graph_status(t.g), FG_OK, "%s", fg_graph_errmsg(t.g));
  return t;
}

static void built_free(built *t) {
  fg_flow_ctx_free(t->c);
  fg_graph_free(t->g);
  fg_params_free(t->ps);
  fg_bijector_free(t->b);
  fg_registry_free(t->reg);
}

/* Runs outs with every parameter moved off its initial value and x drawn in [-2, 2]. */
static fg_program *run(built *t, int n, const fg_node *outs) {
  for (int i = 0; i < fg_params_count(t->ps); i++) {
    fg_tensor *p = fg_params_tensor(t->ps, i);
    for (int64_t j = 0; j < fg_tensor_numel(p); j++)
      fg_tensor_set(p, j, fg_tensor_get(p, j) + 0.5 * fg_rng_normal(40 + (uint64_t)i, (uint64_t)j));
  }
  fg_program *p;
  fg_err e;
  cr_assert_eq(fg_program_new(&p, t->g, n, outs, &e), FG_OK, "%s", e.msg);
  cr_assert_eq(fg_params_bind(t->ps, p, &e), FG_OK, "%s", e.msg);
  fg_shape xs = fg_node_shape(t->g, t->x);
  fg_tensor *xv = bij_values(xs, 8, -2, 2);
  cr_assert_eq(fg_program_bind(p, "x", xv, &e), FG_OK);
  cr_assert_eq(fg_program_run(p, &e), FG_OK, "%s", e.msg);
  fg_tensor_free(xv);
  return p;
}

/* dy_i/dx_j for sample 0: zero when j is not before i in the order (and, with `linear`, a net
 * without hidden layers, where no ReLU can switch a path off, non-zero when it is). */
static void expect_autoregressive(const char *args, bool reversed, bool linear) {
  built t = build("maf", args, (fg_shape){1, {D}}, false);
  fg_node rows[D];
  for (int i = 0; i < D; i++) {
    double onehot[BATCH * D] = {0};
    for (int b = 0; b < BATCH; b++) onehot[b * D + i] = 1;
    fg_node seed = fg_constant_values(t.g, FG_F64, fg_shape2(BATCH, D), onehot);
    cr_assert_eq(fg_vjp(t.g, 1, &t.y, &seed, 1, &t.x, &rows[i]), FG_OK);
  }
  fg_program *p = run(&t, D, rows);
  for (int i = 0; i < D; i++)
    for (int j = 0; j < D; j++) {
      double dij = fg_tensor_get(fg_program_output(p, i), j);
      bool before = reversed ? j > i : j < i;
      if (j == i) cr_expect_gt(fabs(dij), 0, "%s: dy_%d/dx_%d", args, i, i);
      else if (!before) cr_expect_eq(dij, 0.0, "%s: y_%d must not depend on x_%d (%g)", args, i, j, dij);
      else if (linear) cr_expect_neq(dij, 0.0, "%s: y_%d should depend on x_%d", args, i, j);
    }
  fg_program_free(p);
  built_free(&t);
}

Test(autoregressive, made_masks_make_each_element_depend_on_the_ones_before_it) {
  expect_autoregressive("hidden=12, blocks=2", false, false);
  expect_autoregressive("hidden=12, blocks=1, reversed=true", true, false);
  expect_autoregressive("transform=spline, hidden=12, blocks=2, bins=4", false, false);
  expect_autoregressive("hidden=12, blocks=0", false, true);
  expect_autoregressive("hidden=12, blocks=0, reversed=true", true, true);
}

/* The declared log-det equals what the engine derives on its own from the forward graph, which
 * it finds triangular (the MADE masks are constants multiplied into the weights). */
Test(autoregressive, the_declared_log_det_matches_the_engines_triangular_derivation) {
  const char *variants[] = {"hidden=10", "transform=spline, hidden=10, bins=5, reversed=true"};
  for (int v = 0; v < 2; v++) {
    built t = build("maf", variants[v], (fg_shape){1, {D}}, false);
    fg_jacobian_kind route;
    fg_node outs[2] = {t.ld, fg_logdet_derived(t.g, t.x, t.y, "maf", &route)};
    cr_assert_eq(fg_graph_status(t.g), FG_OK, "%s", fg_graph_errmsg(t.g));
    cr_expect_eq(route, FG_JACOBIAN_TRIANGULAR, "%s: %s", variants[v], fg_jacobian_kind_name(route));
    fg_program *p = run(&t, 2, outs);
    for (int b = 0; b < BATCH; b++) {
      double declared = fg_tensor_get(fg_program_output(p, 0), b), derived = fg_tensor_get(fg_program_output(p, 1), b);
      cr_expect(fabs(declared - derived) < 1e-10, "%s sample %d: %g vs %g", variants[v], b, declared, derived);
    }
    fg_program_free(p);
    built_free(&t);
  }
}

Test(autoregressive, both_types_round_trip_with_both_transforms) {
  const char *types[] = {"maf", "iaf"};
  const char *args[] = {"hidden=8", "transform=spline, hidden=8, bins=4, reversed=true"};
  const fg_shape shapes[] = {fg_shape2(4, 6), fg_shape4(2, 1, 2, 3)};
  const fg_dtype dts[] = {FG_F32, FG_F64};
  const double tols[] = {2e-4, 1e-10};
  for (int ty = 0; ty < 2; ty++)
    for (int a = 0; a < 2; a++)
      for (int s = 0; s < 2; s++)
        for (int d = 0; d < 2; d++) {
          fg_tensor *x = bij_values(shapes[s], 2, -2, 2);
          bij_result r = bij_apply(types[ty], args[a], dts[d], x, false, 0.3, 5);
          cr_expect_lt(bij_rel_err(r.back, x), tols[d], "%s(%s) %s", types[ty], args[a], fg_dtype_name(dts[d]));
          for (int64_t b = 0; b < shapes[s].d[0]; b++)
            cr_expect(fabs(fg_tensor_get(r.logdet, b) + fg_tensor_get(r.back_logdet, b)) < tols[d] * 10,
                      "%s(%s): forward and inverse log-dets", types[ty], args[a]);
          bij_result_free(&r);
          fg_tensor_free(x);
        }
}

/* MAF's density direction is one MADE pass and its sampling direction D of them; IAF the other
 * way round. */
Test(autoregressive, maf_is_fast_to_evaluate_and_iaf_fast_to_sample) {
  int nodes[2][2];
  const char *types[2] = {"maf", "iaf"};
  for (int ty = 0; ty < 2; ty++)
    for (int inv = 0; inv < 2; inv++) {
      built t = build(types[ty], "hidden=8", (fg_shape){1, {D}}, inv);
      nodes[ty][inv] = fg_graph_node_count(t.g);
      built_free(&t);
    }
  cr_expect_gt(nodes[0][1], 3 * nodes[0][0], "maf: inverse %d nodes, forward %d", nodes[0][1], nodes[0][0]);
  cr_expect_gt(nodes[1][0], 3 * nodes[1][1], "iaf: forward %d nodes, inverse %d", nodes[1][0], nodes[1][1]);
}

Test(autoregressive, the_types_pass_the_verification_with_a_larger_perturbation) {
  const char *types[] = {"maf", "iaf"};
  const char *args[] = {"hidden=8, blocks=2", "transform=spline, hidden=8, blocks=2, bins=5"};
  fg_registry *reg;
  fg_registry_new(&reg, NULL);
  fg_registry_add_builtins(reg, NULL);
  for (int ty = 0; ty < 2; ty++)
    for (int a = 0; a < 2; a++)
      for (uint64_t seed = 0; seed < 3; seed++) {
        fg_check_opts o = {.perturb = 1, .batch = 16, .seed = seed, .args = args[a]};
        fg_check_report rep;
        cr_expect_eq(fg_bijector_check_type(fg_registry_find(reg, types[ty]), &o, &rep), FG_OK,
                     "%s(%s) seed %llu:\n%s", types[ty], args[a], (unsigned long long)seed, rep.msg);
      }
  fg_registry_free(reg);
}
