/* The scaffolding of the built-in layers' tests (tests/layer_rig.h). */
#include "tests/layer_rig.h"

#include <criterion/criterion.h>
#include <math.h>

#include "core/rng.h"
#include "flows/registry.h"

/* Error detail of the last failing library call, for assertion messages. */
static fg_err terr;

const char *const layer_types[] = {
    "reverse", "shuffle", "permute", "conv1x1", "conv1x1_lu", "actnorm", "batchnorm",
    "squeeze", "split",   "logit",   "exp",     "sigmoid",    "affine",  "scale",
};
const int n_layer_types = (int)(sizeof layer_types / sizeof layer_types[0]);

const fg_bijector_type *type_named(const char *name) {
  fg_registry *r;
  fg_registry_new(&r, NULL);
  fg_err e;
  cr_assert_eq(fg_registry_add_builtins(r, &e), FG_OK, "%s", e.msg);
  const fg_bijector_type *t = fg_registry_find(r, name);
  cr_assert_not_null(t, "'%s' is not registered", name);
  fg_registry_free(r); /* types are static: the pointer outlives the registry */
  return t;
}

fg_bijector *make(const char *name, const char *args) {
  fg_bijector *b;
  fg_err e;
  cr_assert_eq(fg_bijector_new_from_text(&b, type_named(name), args, &e), FG_OK, "%s(%s): %s", name, args, e.msg);
  return b;
}

/* The message of a construction that must fail. */
const char *make_fails(const char *name, const char *args, fg_err *e) {
  fg_bijector *b = NULL;
  cr_assert_neq(fg_bijector_new_from_text(&b, type_named(name), args, e), FG_OK, "%s(%s) was accepted", name, args);
  cr_assert_null(b);
  return e->msg;
}

rig rig_open(fg_params *shared, fg_flow_ctx_opts o) {
  rig r = {NULL, shared, !shared, NULL};
  fg_graph_new(&r.g, NULL);
  if (!shared) fg_params_new(&r.ps, 5, NULL);
  fg_err e;
  cr_assert_eq(fg_flow_ctx_new(&r.c, r.g, r.ps, &o, &e), FG_OK, "%s", e.msg);
  return r;
}

void rig_close(rig *r) {
  fg_flow_ctx_free(r->c);
  fg_graph_free(r->g);
  if (r->own_ps) fg_params_free(r->ps);
}

fg_tensor *random_tensor(fg_dtype t, fg_shape s, uint64_t seed, double lo, double hi) {
  fg_tensor *x;
  cr_assert_eq(fg_tensor_new(&x, t, &s, NULL), FG_OK);
  for (int64_t i = 0; i < fg_tensor_numel(x); i++)
    fg_tensor_set(x, i, lo + (hi - lo) * fg_rng_uniform(seed, (uint64_t)i));
  return x;
}

fg_shape with_batch(int64_t batch, fg_shape event) {
  fg_shape s = {event.ndim + 1, {batch}};
  for (int i = 0; i < event.ndim; i++) s.d[i + 1] = event.d[i];
  return s;
}

/* Plans outs, binds every parameter and the input "x" (when given), runs. */
fg_program *run(rig *r, int n, const fg_node *outs, const fg_tensor *x) {
  cr_assert_eq(fg_graph_status(r->g), FG_OK, "%s", fg_graph_errmsg(r->g));
  fg_program *p;
  fg_err e;
  cr_assert_eq(fg_program_new(&p, r->g, n, outs, &e), FG_OK, "%s", e.msg);
  cr_assert_eq(fg_params_bind(r->ps, p, &e), FG_OK, "%s", e.msg);
  if (x) cr_assert_eq(fg_program_bind(p, "x", x, &terr), FG_OK, "%s", terr.msg);
  cr_assert_eq(fg_program_run(p, &terr), FG_OK, "%s", terr.msg);
  return p;
}

double at(const fg_program *p, int out, int64_t i) { return fg_tensor_get(fg_program_output(p, out), i); }

/* Moves every parameter off its initial value (identity-at-init layers would test nothing). */
void perturb(fg_params *ps, double std, uint64_t seed) {
  for (int i = 0; i < fg_params_count(ps); i++) {
    fg_tensor *t = fg_params_tensor(ps, i);
    for (int64_t j = 0; j < fg_tensor_numel(t); j++)
      fg_tensor_set(t, j, fg_tensor_get(t, j) + std * fg_rng_normal(seed + (uint64_t)i, (uint64_t)j));
  }
}

/* Evaluates the data-init requests recorded in r's context and writes them into the store,
 * as a trainer's initialisation pass does. */
void apply_inits(rig *r, const fg_tensor *x) {
  int n = fg_flow_ctx_num_inits(r->c);
  cr_assert_gt(n, 0, "no initialisation requests were recorded");
  fg_node outs[16];
  cr_assert_leq(n, 16);
  for (int i = 0; i < n; i++) outs[i] = fg_flow_ctx_init_value(r->c, i);
  fg_program *p = run(r, n, outs, x);
  for (int i = 0; i < n; i++) {
    fg_tensor *dst = fg_params_find(r->ps, fg_flow_ctx_init_name(r->c, i));
    cr_assert_not_null(dst, "init request for unknown parameter '%s'", fg_flow_ctx_init_name(r->c, i));
    const fg_tensor *v = fg_program_output(p, i);
    cr_assert_eq(fg_tensor_numel(v), fg_tensor_numel(dst));
    for (int64_t j = 0; j < fg_tensor_numel(v); j++) fg_tensor_set(dst, j, fg_tensor_get(v, j));
  }
  fg_program_free(p);
}

/* log|det| of an n x n row-major matrix, by Gaussian elimination with partial pivoting. */
double log_abs_det(double *a, int n) {
  double s = 0;
  for (int k = 0; k < n; k++) {
    int piv = k;
    for (int i = k + 1; i < n; i++)
      if (fabs(a[i * n + k]) > fabs(a[piv * n + k])) piv = i;
    for (int j = 0; j < n; j++) {
      double t = a[k * n + j];
      a[k * n + j] = a[piv * n + j], a[piv * n + j] = t;
    }
    s += log(fabs(a[k * n + k]));
    for (int i = k + 1; i < n; i++) {
      double f = a[i * n + k] / a[k * n + k];
      for (int j = k; j < n; j++) a[i * n + j] -= f * a[k * n + j];
    }
  }
  return s;
}
