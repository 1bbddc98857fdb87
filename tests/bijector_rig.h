/* Running one registered bijector in a test: build it by name from argument text, apply it (or
 * its inverse) to given values with its parameters moved off their initial values, and read
 * back the output, the log-det and the output mapped back the other way, in float64. */
#ifndef FG_TEST_BIJECTOR_RIG_H
#define FG_TEST_BIJECTOR_RIG_H

#include <criterion/criterion.h>
#include <string.h>

#include "core/rng.h"
#include "core/runtime/program.h"
#include "flows/registry.h"
#include "ops/ops.h"

typedef struct bij_result {
  fg_tensor *out, *logdet; /* y (x for inverse) and its log-det */
  fg_tensor *back;         /* out mapped back: the round trip */
  fg_tensor *back_logdet;
  fg_logdet_sources sources;
} bij_result;

static inline void bij_result_free(bij_result *r) {
  fg_tensor_free(r->out), fg_tensor_free(r->logdet), fg_tensor_free(r->back), fg_tensor_free(r->back_logdet);
}

static inline fg_tensor *bij_values(fg_shape s, uint64_t seed, double lo, double hi) {
  fg_tensor *x;
  cr_assert_eq(fg_tensor_new(&x, FG_F64, &s, NULL), FG_OK);
  for (int64_t i = 0; i < fg_tensor_numel(x); i++)
    fg_tensor_set(x, i, lo + (hi - lo) * fg_rng_uniform(seed, (uint64_t)i));
  return x;
}

static inline fg_tensor *bij_copy(const fg_tensor *t) {
  fg_tensor *c;
  cr_assert_eq(fg_tensor_copy(&c, t, FG_F64, NULL), FG_OK);
  return c;
}

/* type(args) applied to x (its inverse with `inverse`) in dtype t, parameters perturbed by
 * N(0, perturb²) from `seed`. */
static inline bij_result bij_apply(const char *type, const char *args, fg_dtype t, const fg_tensor *x,
                                   bool inverse, double perturb, uint64_t seed) {
  fg_registry *reg;
  fg_err e;
  fg_registry_new(&reg, NULL);
  cr_assert_eq(fg_registry_add_builtins(reg, &e), FG_OK, "%s", e.msg);
  fg_bijector *b;
  cr_assert_eq(fg_bijector_new_from_text(&b, fg_registry_find(reg, type), args, &e), FG_OK,
               "%s(%s): %s", type, args, e.msg);
  fg_params *ps;
  fg_params_new(&ps, seed, NULL);
  fg_graph *g;
  fg_flow_ctx *c;
  fg_flow_ctx_opts co = {.dtype = t};
  cr_assert_eq(fg_flow_ctx_new_graph(&c, &g, ps, &co, &e), FG_OK);
  fg_node in = fg_input(g, "x", t, x->shape), outs[4];
  bij_result r = {0};
  if (inverse) fg_bijector_inverse(b, c, in, &outs[0], &outs[1]);
  else fg_bijector_forward(b, c, in, &outs[0], &outs[1]);
  r.sources = fg_flow_ctx_logdet_sources(c);
  if (inverse) fg_bijector_forward(b, c, outs[0], &outs[2], &outs[3]);
  else fg_bijector_inverse(b, c, outs[0], &outs[2], &outs[3]);
  cr_assert_eq(fg_graph_status(g), FG_OK, "%s(%s): %s", type, args, fg_graph_errmsg(g));
  for (int i = 0; i < fg_params_count(ps); i++) {
    fg_tensor *p = fg_params_tensor(ps, i);
    for (int64_t j = 0; j < fg_tensor_numel(p); j++)
      fg_tensor_set(p, j, fg_tensor_get(p, j) + perturb * fg_rng_normal(seed + 7 + (uint64_t)i, (uint64_t)j));
  }
  fg_program *p;
  fg_tensor *xt;
  cr_assert_eq(fg_program_new(&p, g, 4, outs, &e), FG_OK, "%s", e.msg);
  cr_assert_eq(fg_params_bind(ps, p, &e), FG_OK, "%s", e.msg);
  cr_assert_eq(fg_tensor_copy(&xt, x, t, &e), FG_OK);
  cr_assert_eq(fg_program_bind(p, "x", xt, &e), FG_OK, "%s", e.msg);
  cr_assert_eq(fg_program_run(p, &e), FG_OK, "%s(%s): %s", type, args, e.msg);
  r.out = bij_copy(fg_program_output(p, 0)), r.logdet = bij_copy(fg_program_output(p, 1));
  r.back = bij_copy(fg_program_output(p, 2)), r.back_logdet = bij_copy(fg_program_output(p, 3));
  fg_tensor_free(xt);
  fg_program_free(p);
  fg_flow_ctx_free(c);
  fg_graph_free(g);
  fg_params_free(ps);
  fg_bijector_free(b);
  fg_registry_free(reg);
  return r;
}

/* type(args) must be refused with a message containing `mention` (the argument's name). */
static inline void bij_expect_refused(const char *type, const char *args, const char *mention) {
  fg_registry *reg;
  fg_registry_new(&reg, NULL);
  fg_registry_add_builtins(reg, NULL);
  fg_bijector *b = NULL;
  fg_err e;
  cr_expect_neq(fg_bijector_new_from_text(&b, fg_registry_find(reg, type), args, &e), FG_OK,
                "%s(%s) was accepted", type, args);
  cr_expect(strstr(e.msg, mention), "%s(%s): %s", type, args, e.msg);
  cr_expect_null(b);
  fg_registry_free(reg);
}

/* max |a - b| / (1 + |b|) */
static inline double bij_rel_err(const fg_tensor *a, const fg_tensor *b) {
  double worst = 0;
  for (int64_t i = 0; i < fg_tensor_numel(b); i++) {
    double d = fabs(fg_tensor_get(a, i) - fg_tensor_get(b, i)) / (1 + fabs(fg_tensor_get(b, i)));
    if (!(d <= worst)) worst = d;
  }
  return worst;
}

#endif
