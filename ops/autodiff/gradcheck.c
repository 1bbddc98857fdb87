/* gradcheck: builds the function in float64 on fresh input nodes, appends its VJP with a seed
 * input, and compares the analytic Jacobian (one VJP run per output element) with central
 * differences (two forward runs per input element). */
#include "ops/autodiff/gradcheck.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/autodiff/autodiff.h"
#include "core/runtime/program.h"
#include "core/rng.h"
#include "ops/ops.h"

typedef struct check_setup {
  fg_graph *g;
  fg_program *fwd, *bwd;
  fg_tensor **x; /* float64 copies of the inputs, perturbed in place */
  fg_tensor *seed;
  int n_in;
  int64_t n_out;
} check_setup;

/* The report to fill, cleared: the caller's, or *local when it passed none. */
static fg_gradcheck_report *report_start(fg_gradcheck_report *rep, fg_gradcheck_report *local) {
  if (!rep) rep = local;
  memset(rep, 0, sizeof *rep);
  return rep;
}

static fg_status fail(fg_gradcheck_report *rep, fg_status st, const char *what, const char *msg) {
  snprintf(rep->msg, sizeof rep->msg, "gradcheck could not run: %s: %s", what, msg);
  return st;
}

static void setup_free(check_setup *s) {
  fg_program_free(s->fwd);
  fg_program_free(s->bwd);
  if (s->x)
    for (int i = 0; i < s->n_in; i++) fg_tensor_free(s->x[i]);
  free(s->x);
  fg_tensor_free(s->seed);
  fg_graph_free(s->g);
}

static fg_status bind_all(check_setup *s, fg_program *p, fg_gradcheck_report *rep) {
  char name[32];
  fg_err e;
  for (int i = 0; i < s->n_in; i++) {
    snprintf(name, sizeof name, "x%d", i);
    if (fg_program_bind(p, name, s->x[i], &e) != FG_OK)
      return fail(rep, FG_E_MISUSE, "binding an input", e.msg);
  }
  if (p == s->bwd && fg_program_bind(p, "seed", s->seed, &e) != FG_OK)
    return fail(rep, FG_E_MISUSE, "binding the seed", e.msg);
  return FG_OK;
}

static fg_status setup(check_setup *s, fg_build_fn build, void *ud, int n_in,
                       fg_tensor *const *inputs, fg_gradcheck_report *rep) {
  memset(s, 0, sizeof *s);
  s->n_in = n_in;
  fg_graph_new(&s->g, NULL);
  s->x = calloc((size_t)n_in + 1, sizeof *s->x);
  fg_node *in = calloc((size_t)n_in + 1, sizeof *in),
          *grads = calloc((size_t)n_in + 1, sizeof *grads);
  fg_err e;
  fg_status st =
      (!s->g || !s->x || !in || !grads) ? fail(rep, FG_E_NOMEM, "setup", "out of memory") : FG_OK;
  char name[32];
  for (int i = 0; st == FG_OK && i < n_in; i++) {
    snprintf(name, sizeof name, "x%d", i);
    in[i] = fg_input(s->g, name, FG_F64, inputs[i]->shape);
    if ((st = fg_tensor_copy(&s->x[i], inputs[i], FG_F64, &e)) != FG_OK)
      fail(rep, st, "copying inputs", e.msg);
  }
  fg_node y = st == FG_OK ? build(s->g, in, ud) : FG_POISON;
  if (st == FG_OK && fg_graph_status(s->g) != FG_OK)
    st = fail(rep, fg_graph_status(s->g), "building the function", fg_graph_errmsg(s->g));
  else if (st == FG_OK && (!fg_node_valid(s->g, y) || fg_node_dtype(s->g, y) != FG_F64))
    st = fail(rep, FG_E_MISUSE, "building the function",
              "it must return a float64 node of the graph");
  if (st == FG_OK) {
    fg_shape ys = fg_node_shape(s->g, y);
    s->n_out = fg_shape_count(&ys);
    fg_node seed = fg_input(s->g, "seed", FG_F64, ys);
    if (fg_vjp(s->g, 1, &y, &seed, n_in, in, grads) != FG_OK)
      st = fail(rep, fg_graph_status(s->g), "differentiating", fg_graph_errmsg(s->g));
    else if ((st = fg_tensor_new(&s->seed, FG_F64, &ys, &e)) != FG_OK) fail(rep, st, "seed", e.msg);
  }
  if (st == FG_OK && (st = fg_program_new(&s->fwd, s->g, 1, &y, &e)) != FG_OK)
    fail(rep, st, "planning", e.msg);
  if (st == FG_OK && (st = fg_program_new(&s->bwd, s->g, n_in, grads, &e)) != FG_OK)
    fail(rep, st, "planning", e.msg);
  if (st == FG_OK) st = bind_all(s, s->fwd, rep);
  if (st == FG_OK) st = bind_all(s, s->bwd, rep);
  free(in);
  free(grads);
  return st;
}

static fg_status run(fg_program *p, fg_gradcheck_report *rep) {
  fg_err e;
  fg_status st = fg_program_run(p, &e);
  return st == FG_OK ? FG_OK : fail(rep, st, "running", e.msg);
}

/* Row k of every input's Jacobian block: J[i][k * numel(x_i) + j] = d y_k / d x_i[j]. */
static fg_status analytic_jacobian(check_setup *s, double **J, fg_gradcheck_report *rep) {
  for (int64_t k = 0; k < s->n_out; k++) {
    fg_tensor_fill(s->seed, 0.0);
    fg_tensor_set(s->seed, k, 1.0);
    fg_status st = run(s->bwd, rep);
    if (st != FG_OK) return st;
    for (int i = 0; i < s->n_in; i++) {
      const fg_tensor *gi = fg_program_output(s->bwd, i);
      int64_t n = fg_tensor_numel(gi);
      for (int64_t j = 0; j < n; j++) J[i][k * n + j] = fg_tensor_get(gi, j);
    }
  }
  return FG_OK;
}

static void consider(fg_gradcheck_report *rep, double *worst, const fg_gradcheck_opts *o, int i,
                     int64_t j, int64_t k, double a, double n) {
  double err = fabs(a - n), allowed = o->atol + o->rtol * fabs(n);
  double ratio = isnan(err) ? INFINITY : err / allowed;
  rep->n_checked++;
  if (ratio > *worst) {
    *worst = ratio;
    rep->input = i, rep->in_index = j, rep->out_index = k;
    rep->analytic = a, rep->numeric = n, rep->abs_err = err;
  }
}

static fg_status compare_numeric(check_setup *s, double **J, const fg_gradcheck_opts *o,
                                 fg_gradcheck_report *rep, double *worst) {
  double *plus = malloc(sizeof *plus * ((size_t)s->n_out + 1));
  if (!plus) return fail(rep, FG_E_NOMEM, "numeric Jacobian", "out of memory");
  fg_status st = FG_OK;
  for (int i = 0; st == FG_OK && i < s->n_in; i++) {
    if (i < 32 && (o->skip_mask >> i) & 1) continue;
    int64_t n = fg_tensor_numel(s->x[i]);
    for (int64_t j = 0; st == FG_OK && j < n; j++) {
      double x0 = fg_tensor_get(s->x[i], j);
      fg_tensor_set(s->x[i], j, x0 + o->eps);
      if ((st = run(s->fwd, rep)) != FG_OK) break;
      for (int64_t k = 0; k < s->n_out; k++)
        plus[k] = fg_tensor_get(fg_program_output(s->fwd, 0), k);
      fg_tensor_set(s->x[i], j, x0 - o->eps);
      st = run(s->fwd, rep);
      /* read before restoring x: an output may be the input itself (its buffer, borrowed) */
      for (int64_t k = 0; st == FG_OK && k < s->n_out; k++) {
        double minus = fg_tensor_get(fg_program_output(s->fwd, 0), k);
        consider(rep, worst, o, i, j, k, J[i][k * n + j], (plus[k] - minus) / (2 * o->eps));
      }
      fg_tensor_set(s->x[i], j, x0);
    }
  }
  free(plus);
  return st;
}

static fg_status check(check_setup *s, const fg_gradcheck_opts *o, fg_gradcheck_report *rep) {
  double **J = calloc((size_t)s->n_in + 1, sizeof *J);
  fg_status st = J ? FG_OK : fail(rep, FG_E_NOMEM, "Jacobian", "out of memory");
  for (int i = 0; st == FG_OK && i < s->n_in; i++) {
    size_t n = (size_t)fg_tensor_numel(s->x[i]) * (size_t)s->n_out;
    if (!(J[i] = malloc(sizeof **J * (n + 1))))
      st = fail(rep, FG_E_NOMEM, "Jacobian", "out of memory");
  }
  double worst = 0;
  if (st == FG_OK) st = analytic_jacobian(s, J, rep);
  if (st == FG_OK) st = compare_numeric(s, J, o, rep, &worst);
  for (int i = 0; J && i < s->n_in; i++) free(J[i]);
  free(J);
  if (st != FG_OK) return st;
  rep->passed = worst <= 1.0;
  snprintf(rep->msg, sizeof rep->msg,
           "%s: %lld Jacobian entries; worst at input %d element %lld, output element %lld: "
           "analytic %.10g vs numeric %.10g (|diff| %.3g, allowed %.3g)",
           rep->passed ? "gradcheck passed" : "gradcheck FAILED", (long long)rep->n_checked,
           rep->input, (long long)rep->in_index, (long long)rep->out_index, rep->analytic,
           rep->numeric, rep->abs_err, o->atol + o->rtol * fabs(rep->numeric));
  return rep->passed ? FG_OK : FG_E_NUMERIC;
}

static fg_gradcheck_opts resolve_opts(const fg_gradcheck_opts *opts) {
  fg_gradcheck_opts o = {.eps = 1e-6, .atol = 1e-5, .rtol = 1e-3};
  if (opts) {
    o.skip_mask = opts->skip_mask;
    if (opts->eps > 0) o.eps = opts->eps;
    if (opts->atol > 0) o.atol = opts->atol;
    if (opts->rtol > 0) o.rtol = opts->rtol;
  }
  return o;
}

fg_status fg_gradcheck(fg_build_fn build, void *ud, int n_in, fg_tensor *const *inputs,
                       const fg_gradcheck_opts *opts, fg_gradcheck_report *rep) {
  fg_gradcheck_report local;
  rep = report_start(rep, &local);
  if (!build || n_in < 0 || (n_in && !inputs))
    return fail(rep, FG_E_MISUSE, "arguments", "needs a build function and its inputs");
  fg_gradcheck_opts o = resolve_opts(opts);
  check_setup s;
  fg_status st = setup(&s, build, ud, n_in, inputs, rep);
  if (st == FG_OK) st = check(&s, &o, rep);
  setup_free(&s);
  return st;
}

/* ---- gradgradcheck: gradcheck of (x..., v) -> concat(flatten(VJP_x(f, v))) ---- */

typedef struct vjp_fn_ctx {
  fg_build_fn build;
  void *ud;
  int n_in;
} vjp_fn_ctx;

static fg_node build_vjp_fn(fg_graph *g, const fg_node *in, void *ud) {
  const vjp_fn_ctx *c = ud;
  fg_node y = c->build(g, in, c->ud);
  fg_node *grads = calloc((size_t)c->n_in + 1, sizeof *grads);
  if (!grads) return fg_graph_fail(g, FG_E_NOMEM, "gradgradcheck: out of memory");
  fg_node v = in[c->n_in], out = FG_POISON;
  if (fg_vjp(g, 1, &y, &v, c->n_in, in, grads) == FG_OK) {
    for (int i = 0; i < c->n_in; i++) {
      fg_shape s = fg_node_shape(g, grads[i]);
      grads[i] = fg_reshape(g, grads[i], fg_shape1(fg_shape_count(&s)));
    }
    out = c->n_in == 1 ? grads[0] : fg_concat(g, c->n_in, grads, 0);
  }
  free(grads);
  return out;
}

/* The output shape of build at these inputs, by building it once in a scratch graph. */
static fg_status output_shape(fg_build_fn build, void *ud, int n_in, fg_tensor *const *inputs,
                              fg_shape *out, fg_gradcheck_report *rep) {
  fg_graph *g;
  fg_graph_new(&g, NULL);
  fg_node *in = calloc((size_t)n_in + 1, sizeof *in);
  fg_status st = g && in ? FG_OK : fail(rep, FG_E_NOMEM, "setup", "out of memory");
  char name[32];
  for (int i = 0; st == FG_OK && i < n_in; i++) {
    snprintf(name, sizeof name, "x%d", i);
    in[i] = fg_input(g, name, FG_F64, inputs[i]->shape);
  }
  fg_node y = st == FG_OK ? build(g, in, ud) : FG_POISON;
  if (st == FG_OK && (fg_graph_status(g) != FG_OK || !fg_node_valid(g, y)))
    st = fail(rep, fg_graph_status(g) ? fg_graph_status(g) : FG_E_MISUSE, "building the function",
              fg_graph_errmsg(g));
  if (st == FG_OK) *out = fg_node_shape(g, y);
  free(in);
  fg_graph_free(g);
  return st;
}

fg_status fg_gradgradcheck(fg_build_fn build, void *ud, int n_in, fg_tensor *const *inputs,
                           const fg_gradcheck_opts *opts, fg_gradcheck_report *rep) {
  fg_gradcheck_report local;
  rep = report_start(rep, &local);
  if (!build || n_in < 1 || !inputs)
    return fail(rep, FG_E_MISUSE, "arguments", "needs a build function and at least one input");
  fg_shape ys;
  fg_status st = output_shape(build, ud, n_in, inputs, &ys, rep);
  if (st != FG_OK) return st;
  fg_err e;
  fg_tensor *v = NULL;
  fg_tensor **all = calloc((size_t)n_in + 2, sizeof *all);
  if (!all) return fail(rep, FG_E_NOMEM, "setup", "out of memory");
  if ((st = fg_tensor_new(&v, FG_F64, &ys, &e)) != FG_OK) {
    free(all);
    return fail(rep, st, "cotangent", e.msg);
  }
  for (int64_t k = 0; k < fg_tensor_numel(v); k++)
    fg_tensor_set(v, k, 2.0 * fg_rng_uniform(0x5eedULL, (uint64_t)k) - 1.0);
  memcpy(all, inputs, sizeof *all * (size_t)n_in);
  all[n_in] = v;
  vjp_fn_ctx c = {.build = build, .ud = ud, .n_in = n_in};
  st = fg_gradcheck(build_vjp_fn, &c, n_in + 1, all, opts, rep);
  fg_tensor_free(v);
  free(all);
  return st;
}
