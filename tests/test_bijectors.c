/* Every registered bijector type passes the verification (flows/check.h) — the loop covers a
 * new type as soon as it is registered, and fails if the type gives no check shape.  Plus the
 * contract itself: derived log-dets, a wrong log-det caught, chains, inversions, registry errors. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "flows/bijector_internal.h"
#include "flows/check.h"
#include "flows/layers/layers.h"
#include "flows/registry.h"
#include "ops/ops.h"

Test(bijectors, every_builtin_type_passes_the_verification) {
  fg_registry *r;
  fg_registry_new(&r, NULL);
  fg_err e;
  cr_assert_eq(fg_registry_add_builtins(r, &e), FG_OK, "%s", e.msg);
  for (int i = 0; i < fg_registry_count(r); i++) {
    const fg_bijector_type *t = fg_registry_type(r, i);
    cr_expect_gt(t->check_event.ndim, 0, "type '%s' declares no check_event: the verification cannot cover it", t->name);
    if (t->check_event.ndim == 0) continue;
    fg_check_report rep;
    fg_status st = fg_bijector_check_type(t, NULL, &rep);
    cr_expect_eq(st, FG_OK, "type '%s' fails the verification:\n%s", t->name, rep.msg);
  }
  fg_registry_free(r);
}

/* The one list (FG_BUILTIN_BIJECTORS) names each type as it registers: fg_bijector_<name> is
 * registered as "name", and the registry's built-ins are that list, in its order. */
Test(bijectors, the_builtin_list_names_each_type_as_registered) {
  static const struct {
    const char *name;
    const fg_bijector_type *type;
  } listed[] = {
#define LISTED_(name) {#name, &fg_bijector_##name},
      FG_BUILTIN_BIJECTORS(LISTED_)
#undef LISTED_
  };
  int n = (int)(sizeof listed / sizeof *listed), k = 0;
  for (int i = 0; i < n; i++) cr_expect_str_eq(listed[i].type->name, listed[i].name);
  while (fg_builtin_bijectors[k]) k++;
  cr_assert_eq(k, n, "the registry installs every listed type and no other");
  for (int i = 0; i < n; i++) cr_expect_eq(fg_builtin_bijectors[i], listed[i].type, "entry %d", i);
}

/* ---- small types written here, wrapped without the libffi constructor ---- */

/* y = sinh(x): forward and inverse only, no log-dets: the engine derives both. */
static fg_status sinh_fwd(void *s, fg_flow_ctx *c, fg_node x, fg_node *y, fg_node *ld) {
  (void)s, (void)ld;
  fg_graph *g = fg_flow_graph(c);
  *y = fg_mul_scalar(g, fg_sub(g, fg_exp(g, x), fg_exp(g, fg_neg(g, x))), 0.5);
  return fg_graph_status(g);
}
static fg_status sinh_inv(void *s, fg_flow_ctx *c, fg_node y, fg_node *x, fg_node *ld) {
  (void)s, (void)ld;
  fg_graph *g = fg_flow_graph(c);
  *x = fg_log(g, fg_add(g, y, fg_sqrt(g, fg_add_scalar(g, fg_square(g, y), 1.0))));
  return fg_graph_status(g);
}
static void no_create(void) {}
static const fg_bijector_type sinh_type = {
    .abi_version = FG_BIJECTOR_ABI_VERSION, .name = "test_sinh", .create = no_create,
    .forward = sinh_fwd, .inverse = sinh_inv, .check_event = {1, {4}}, .check_lo = -2, .check_hi = 2};

/* y = 2x with a log-det that is wrong on purpose (log 3 per element). */
static fg_status bad_fwd(void *s, fg_flow_ctx *c, fg_node x, fg_node *y, fg_node *ld) {
  (void)s;
  fg_graph *g = fg_flow_graph(c);
  *y = fg_mul_scalar(g, x, 2.0);
  *ld = fg_sum(g, fg_add_scalar(g, fg_mul_scalar(g, x, 0.0), log(3.0)), FG_AXIS(1), false);
  return fg_graph_status(g);
}
static fg_status bad_inv(void *s, fg_flow_ctx *c, fg_node y, fg_node *x, fg_node *ld) {
  (void)s, (void)ld;
  *x = fg_mul_scalar(fg_flow_graph(c), y, 0.5);
  return fg_graph_status(fg_flow_graph(c));
}
static const fg_bijector_type bad_type = {
    .abi_version = FG_BIJECTOR_ABI_VERSION, .name = "test_bad_logdet", .create = no_create,
    .forward = bad_fwd, .inverse = bad_inv, .check_event = {1, {3}}};

/* y = x·exp(s) + t with parameters s, t per feature (declared log-det). */
static fg_status affine_fwd(void *st, fg_flow_ctx *c, fg_node x, fg_node *y, fg_node *ld) {
  (void)st;
  fg_graph *g = fg_flow_graph(c);
  fg_shape xs = fg_node_shape(g, x);
  fg_node s = fg_flow_param(c, "s", fg_shape1(xs.d[1]), (fg_init){FG_INIT_ZEROS, 0, 0});
  fg_node t = fg_flow_param(c, "t", fg_shape1(xs.d[1]), (fg_init){FG_INIT_ZEROS, 0, 0});
  *y = fg_add(g, fg_mul(g, x, fg_exp(g, s)), t);
  *ld = fg_add(g, fg_fill(g, 0.0, fg_node_dtype(g, x), fg_shape1(xs.d[0])), fg_sum(g, s, FG_ALL_AXES, false));
  return fg_graph_status(g);
}
static fg_status affine_inv(void *st, fg_flow_ctx *c, fg_node y, fg_node *x, fg_node *ld) {
  (void)st, (void)ld; /* log-det left to the engine: -forward at x */
  fg_graph *g = fg_flow_graph(c);
  fg_shape ys = fg_node_shape(g, y);
  fg_node s = fg_flow_param(c, "s", fg_shape1(ys.d[1]), (fg_init){FG_INIT_ZEROS, 0, 0});
  fg_node t = fg_flow_param(c, "t", fg_shape1(ys.d[1]), (fg_init){FG_INIT_ZEROS, 0, 0});
  *x = fg_mul(g, fg_sub(g, y, t), fg_exp(g, fg_neg(g, s)));
  return fg_graph_status(g);
}
static const fg_bijector_type affine_type = {
    .abi_version = FG_BIJECTOR_ABI_VERSION, .name = "test_affine", .create = no_create,
    .forward = affine_fwd, .inverse = affine_inv, .check_event = {1, {4}}};

Test(bijectors, a_type_without_logdets_gets_them_derived) {
  fg_bijector *b = fg__bijector_wrap(&sinh_type, NULL);
  fg_check_report rep;
  cr_assert_eq(fg_bijector_check(b, &sinh_type, NULL, &rep), FG_OK, "%s", rep.msg);
  cr_assert(rep.logdet_err < 1e-9, "%s", rep.msg);
  fg_bijector_free(b);
}

Test(bijectors, a_wrong_logdet_is_caught) {
  fg_bijector *b = fg__bijector_wrap(&bad_type, NULL);
  fg_check_report rep;
  cr_assert_eq(fg_bijector_check(b, &bad_type, NULL, &rep), FG_E_NUMERIC);
  cr_assert_not(rep.passed);
  cr_assert(fabs(rep.logdet_err - 3 * log(1.5)) < 1e-9, "log 3 declared vs log 2 true, 3 elements: %g", rep.logdet_err);
  cr_assert(strstr(rep.msg, "FAIL log-det") != NULL, "%s", rep.msg);
  fg_bijector_free(b);
}

Test(bijectors, chains_and_inversions_with_parameters) {
  fg_bijector *kids[3] = {fg__bijector_wrap(&affine_type, NULL), fg__bijector_wrap(&sinh_type, NULL),
                          fg__bijector_wrap(&affine_type, NULL)};
  fg_bijector *chain, *inv;
  fg_err e;
  cr_assert_eq(fg_bijector_chain(&chain, 3, kids, &e), FG_OK);
  cr_assert_str_eq(fg_bijector_prefix(fg_bijector_child(chain, 2)), "2.test_affine.");
  cr_assert_eq(fg_bijector_invert(&inv, chain, &e), FG_OK);
  fg_check_report rep;
  fg_check_opts o = {.event = {1, {4}}, .lo = -1, .hi = 1};
  cr_assert_eq(fg_bijector_check(inv, NULL, &o, &rep), FG_OK, "%s", rep.msg);
  cr_assert(strstr(rep.msg, "4 parameters") != NULL, "two affines with s and t: %s", rep.msg);
  fg_bijector_free(inv);
}

/* A type whose instances count their destruction: who freed what after a failed composition. */
static int destroyed;
static void count_destroy(void *state) {
  (void)state;
  destroyed++;
}
static const fg_bijector_type counted_type = {
    .abi_version = FG_BIJECTOR_ABI_VERSION, .name = "test_counted", .create = no_create,
    .destroy = count_destroy, .forward = sinh_fwd, .inverse = sinh_inv};

static fg_bijector *counted(void) {
  fg_bijector *b = fg__bijector_wrap(&counted_type, NULL);
  cr_assert_not_null(b);
  return b;
}

/* chain and invert take ownership of what they are given, also when they fail (bijector.h):
 * the children are freed exactly once, by them, and *out is NULL. */
Test(bijectors, a_failed_chain_or_inversion_frees_its_children) {
  fg_err e;
  fg_bijector *out = counted(), *kids[3] = {counted(), NULL, counted()};
  fg_bijector_free(out);
  destroyed = 0;
  cr_assert_eq(fg_bijector_chain(&out, 3, kids, &e), FG_E_MISUSE);
  cr_assert_null(out);
  cr_assert(strstr(e.msg, "NULL"), "%s", e.msg);
  cr_assert_eq(destroyed, 2, "the two children given were freed by the chain");
  cr_assert_eq(fg_bijector_chain(&out, -1, NULL, &e), FG_E_MISUSE);
  cr_assert_eq(fg_bijector_chain(&out, 2, NULL, &e), FG_E_MISUSE);
  cr_assert_eq(fg_bijector_invert(&out, NULL, &e), FG_E_MISUSE);
  cr_assert_null(out);
  /* and on success the composite owns them: one free releases all */
  destroyed = 0;
  fg_bijector *pair[2] = {counted(), counted()}, *chain, *inv;
  cr_assert_eq(fg_bijector_chain(&chain, 2, pair, &e), FG_OK, "%s", e.msg);
  cr_assert_eq(fg_bijector_invert(&inv, chain, &e), FG_OK, "%s", e.msg);
  cr_assert_eq(destroyed, 0);
  fg_bijector_free(inv);
  cr_assert_eq(destroyed, 2);
  cr_assert_eq(fg_bijector_chain(&chain, 0, NULL, &e), FG_OK, "an empty chain is the identity");
  fg_bijector_free(chain);
}

/* y = x + tanh(x W) / 4 with a learned W: every element depends on every other, so its derived
 * log-det must take the dense route. */
static fg_status mix_fwd(void *s, fg_flow_ctx *c, fg_node x, fg_node *y, fg_node *ld) {
  (void)s, (void)ld;
  fg_graph *g = fg_flow_graph(c);
  int64_t d = fg_node_shape(g, x).d[1];
  fg_node w = fg_flow_param(c, "w", fg_shape2(d, d), (fg_init){FG_INIT_UNIFORM, -0.1, 0.1});
  *y = fg_add(g, x, fg_mul_scalar(g, fg_tanh(g, fg_matmul(g, x, w)), 0.25));
  return fg_graph_status(g);
}
static const fg_bijector_type mix_type = {
    .abi_version = FG_BIJECTOR_ABI_VERSION, .name = "test_mix", .create = no_create,
    .forward = mix_fwd, .check_event = {1, {4}}};

/* Derives t's forward log-det at event size d; returns the status and the routes taken. */
static fg_status derive_at(const fg_bijector_type *t, int64_t d, fg_logdet_sources *src, char *msg) {
  fg_bijector *b = fg__bijector_wrap(t, NULL);
  fg_graph *g;
  fg_graph_new(&g, NULL);
  fg_params *ps;
  fg_params_new(&ps, 1, NULL);
  fg_flow_ctx *c;
  cr_assert_eq(fg_flow_ctx_new(&c, g, ps, NULL, NULL), FG_OK);
  fg_node x = fg_input(g, "x", FG_F32, fg_shape2(2, d)), y, ld;
  fg_status st = fg_bijector_forward(b, c, x, &y, &ld);
  *src = fg_flow_ctx_logdet_sources(c);
  snprintf(msg, 512, "%s", fg_graph_errmsg(g));
  fg_flow_ctx_free(c);
  fg_params_free(ps);
  fg_graph_free(g);
  fg_bijector_free(b);
  return st;
}

Test(bijectors, derived_logdets_use_structure_and_refuse_large_dense_events) {
  fg_logdet_sources src;
  char msg[512];
  int64_t big = FG_DERIVED_LOGDET_MAX_EVENT + 1;
  cr_expect_eq(derive_at(&sinh_type, big, &src, msg), FG_OK, "elementwise: any size: %s", msg);
  cr_expect(src.diagonal == 1 && src.dense == 0 && src.declared == 0);
  cr_expect_eq(derive_at(&affine_type, 4, &src, msg), FG_OK, "%s", msg);
  cr_expect(src.declared == 1 && src.diagonal == 0);
  cr_expect_eq(derive_at(&mix_type, 8, &src, msg), FG_OK, "%s", msg);
  cr_expect_eq(src.dense, 1);
  cr_expect_eq(derive_at(&mix_type, big, &src, msg), FG_E_MISUSE);
  cr_expect(strstr(msg, "test_mix") && strstr(msg, "declare one"), "%s", msg);
}

/* y = x M with M = I + A / 4, A learned: invertible, every element mixed, no log-det given. */
static fg_node lin_matrix(fg_flow_ctx *c, int64_t d) {
  fg_graph *g = fg_flow_graph(c);
  double eye[16 * 16] = {0};
  for (int64_t i = 0; i < d; i++) eye[i * d + i] = 1;
  fg_node a = fg_flow_param(c, "a", fg_shape2(d, d), (fg_init){FG_INIT_UNIFORM, -0.5, 0.5});
  return fg_add(g, fg_constant_values(g, FG_F64, fg_shape2(d, d), eye), fg_mul_scalar(g, a, 0.25));
}
static fg_status lin_fwd(void *s, fg_flow_ctx *c, fg_node x, fg_node *y, fg_node *ld) {
  (void)s, (void)ld;
  fg_graph *g = fg_flow_graph(c);
  *y = fg_matmul(g, x, lin_matrix(c, fg_node_shape(g, x).d[1]));
  return fg_graph_status(g);
}
static fg_status lin_inv(void *s, fg_flow_ctx *c, fg_node y, fg_node *x, fg_node *ld) {
  (void)s, (void)ld;
  fg_graph *g = fg_flow_graph(c);
  fg_node m = lin_matrix(c, fg_node_shape(g, y).d[1]);
  *x = fg_transpose(g, fg_solve(g, fg_transpose(g, m), fg_transpose(g, y)));
  return fg_graph_status(g);
}
static const fg_bijector_type lin_type = {
    .abi_version = FG_BIJECTOR_ABI_VERSION, .name = "test_linear", .create = no_create,
    .forward = lin_fwd, .inverse = lin_inv, .check_event = {1, {5}}};

/* No derived log-det is compared with itself: one derived from the structure is compared with
 * the dense autodiff Jacobian, one derived from the dense Jacobian with finite differences. */
Test(bijectors, derived_logdets_are_checked_against_an_independent_jacobian) {
  fg_check_report rep;
  fg_bijector *b = fg__bijector_wrap(&sinh_type, NULL);
  cr_expect_eq(fg_bijector_check(b, &sinh_type, NULL, &rep), FG_OK, "%s", rep.msg);
  cr_expect(rep.sources.diagonal == 1 && !rep.logdet_vs_fd, "%s", rep.msg);
  cr_expect(strstr(rep.msg, "log-det (derived: diagonal structure) vs slogdet(dense autodiff"), "%s", rep.msg);
  fg_bijector_free(b);
  b = fg__bijector_wrap(&lin_type, NULL);
  fg_check_opts o = {.perturb = 1.0, .batch = 4};
  cr_expect_eq(fg_bijector_check(b, &lin_type, &o, &rep), FG_OK, "%s", rep.msg);
  cr_expect(rep.sources.dense == 1 && rep.logdet_vs_fd, "%s", rep.msg);
  cr_expect(rep.logdet_err > 0 && rep.logdet_err < 1e-6, "finite differences are close, not exact: %g", rep.logdet_err);
  cr_expect(strstr(rep.msg, "slogdet(finite-difference Jacobian)"), "%s", rep.msg);
  fg_bijector_free(b);
}

Test(registry, errors_are_reported_not_crashed) {
  fg_registry *r;
  fg_registry_new(&r, NULL);
  fg_err e;
  cr_assert_eq(fg_registry_add(r, &sinh_type, &e), FG_OK);
  cr_assert_eq(fg_registry_add(r, &sinh_type, &e), FG_E_EXISTS);
  cr_assert(strstr(e.msg, "test_sinh") != NULL, "%s", e.msg);
  fg_bijector_type old = sinh_type;
  old.abi_version = 0;
  old.name = "old_abi";
  cr_assert_eq(fg_registry_add(r, &old, &e), FG_E_PLUGIN);
  cr_assert(strstr(e.msg, "ABI") != NULL, "%s", e.msg);
  fg_bijector_type nameless = sinh_type;
  nameless.name = NULL;
  cr_assert_eq(fg_registry_add(r, &nameless, &e), FG_E_PLUGIN);
  const fg_bijector_type *t;
  cr_assert_eq(fg_registry_lookup(&t, r, "test_sinn", &e), FG_E_NOTFOUND);
  cr_assert(strstr(e.msg, "did you mean 'test_sinh'") != NULL, "%s", e.msg);
  cr_assert_eq(fg_registry_load_plugin(r, "/nonexistent/plugin.so", &e), FG_E_PLUGIN);
  cr_assert(strstr(e.msg, "/nonexistent/plugin.so") != NULL, "%s", e.msg);
  cr_assert_eq(fg_registry_count(r), 1);
  fg_registry_free(r);
}
