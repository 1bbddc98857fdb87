/* Bijector verification (see check.h).  Everything runs in float64 on one parameter store whose
 * values are perturbed after the graph has created them. */
#include "flows/check.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/runtime/program.h"
#include "core/rng.h"
#include "ops/ops.h"

typedef struct check_env {
  fg_bijector *b;
  const fg_bijector_type *t;
  fg_check_opts o;
  fg_shape xshape;
  bool factor_out;
  fg_params *ps;
  fg_tensor *context, *other_context; /* conditional types: two random contexts [batch, n] */
} check_env;

/* Features of the random context a conditional type is checked with. */
enum { CHECK_CONTEXT = 3 };

static void note(fg_check_report *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends a line to the report. */
static void note(fg_check_report *r, const char *fmt, ...) {
  fg_err line;
  va_list ap;
  va_start(ap, fmt);
  fg_err_vset(&line, FG_OK, fmt, ap);
  va_end(ap);
  size_t used = strlen(r->msg);
  snprintf(r->msg + used, sizeof r->msg - used, "%s", line.msg);
}

static const char *who(const check_env *env) { return env->t ? env->t->name : "bijector"; }

/* A context of N(0, 1) features: the check does not assume one-hot labels. */
static fg_status random_context(fg_tensor **out, const check_env *env, uint64_t stream) {
  fg_shape s = fg_shape2(env->o.batch, CHECK_CONTEXT);
  fg_status st = fg_tensor_new(out, FG_F64, &s, NULL);
  for (int64_t i = 0; st == FG_OK && i < fg_tensor_numel(*out); i++)
    fg_tensor_set(*out, i, fg_rng_normal(env->o.seed + stream, (uint64_t)i));
  return st;
}

static fg_status resolve(check_env *env, fg_bijector *b, const fg_bijector_type *t,
                         const fg_check_opts *o) {
  memset(env, 0, sizeof *env);
  env->b = b, env->t = t;
  if (o) env->o = *o;
  if (env->o.event.ndim == 0 && t) env->o.event = t->check_event;
  if (env->o.lo == 0 && env->o.hi == 0) {
    env->o.lo = t && (t->check_lo != 0 || t->check_hi != 0) ? t->check_lo : -2;
    env->o.hi = t && (t->check_lo != 0 || t->check_hi != 0) ? t->check_hi : 2;
  }
  if (env->o.batch <= 0) env->o.batch = 3;
  if (env->o.tol <= 0) env->o.tol = 1e-6;
  if (env->o.perturb <= 0) env->o.perturb = 0.1;
  env->factor_out = t && (t->flags & FG_BIJ_FACTOR_OUT);
  if (env->o.event.ndim == 0 || env->o.event.ndim >= FG_MAX_DIMS) return FG_E_MISUSE;
  env->xshape.ndim = env->o.event.ndim + 1;
  env->xshape.d[0] = env->o.batch;
  for (int i = 0; i < env->o.event.ndim; i++) env->xshape.d[i + 1] = env->o.event.d[i];
  if (t && (t->flags & FG_BIJ_CONTEXT)) {
    fg_status st = random_context(&env->context, env, 5);
    if (st == FG_OK) st = random_context(&env->other_context, env, 6);
    if (st != FG_OK) return st;
  }
  return fg_params_new(&env->ps, env->o.seed + 17, NULL);
}

static void env_free(check_env *env) {
  fg_params_free(env->ps);
  fg_tensor_free(env->context);
  fg_tensor_free(env->other_context);
}

/* x drawn inside the domain, 5 % away from its edges. */
static fg_tensor *input_values(const check_env *env, bool edges) {
  fg_tensor *x;
  if (fg_tensor_new(&x, FG_F64, &env->xshape, NULL) != FG_OK) return NULL;
  double lo = env->o.lo, hi = env->o.hi, margin = edges ? 1e-3 : 0.05;
  for (int64_t i = 0; i < fg_tensor_numel(x); i++) {
    double u = edges ? (double)(i % 2) : fg_rng_uniform(env->o.seed + 3, (uint64_t)i);
    fg_tensor_set(x, i, lo + (hi - lo) * (margin + (1 - 2 * margin) * u));
  }
  return x;
}

typedef struct built {
  fg_graph *g;
  fg_flow_ctx *c;
  fg_node outs[5]; /* y, fldj, x again, ildj, Jacobian log-det */
  int n_out;
} built;

static fg_status build(check_env *env, built *bt, fg_check_report *r) {
  fg_err e;
  memset(bt, 0, sizeof *bt);
  fg_flow_ctx_opts co = {.dtype = FG_F64, .seed = env->o.seed};
  fg_status st = fg_flow_ctx_new_graph(&bt->c, &bt->g, env->ps, &co, &e);
  if (st != FG_OK) {
    note(r, "could not set up: %s\n", e.msg);
    return st;
  }
  fg_node x = fg_input(bt->g, "x", FG_F64, env->xshape), y, fldj, x2, ildj;
  if (env->context)
    fg_flow_ctx_set_context(bt->c, fg_input(bt->g, "context", FG_F64, env->context->shape));
  fg_bijector_forward(env->b, bt->c, x, &y, &fldj);
  r->sources = fg_flow_ctx_logdet_sources(bt->c);
  r->logdet_vs_fd = r->sources.dense > 0;
  fg_bijector_inverse(env->b, bt->c, y, &x2, &ildj);
  bt->outs[0] = y, bt->outs[1] = fldj, bt->outs[2] = x2, bt->outs[3] = ildj, bt->n_out = 4;
  if (!env->factor_out && !r->logdet_vs_fd)
    bt->outs[bt->n_out++] = fg_jacobian_logdet(bt->g, x, y, who(env));
  if (fg_graph_status(bt->g) != FG_OK) {
    note(r, "building forward, inverse and Jacobian failed: %s\n", fg_graph_errmsg(bt->g));
    return fg_graph_status(bt->g);
  }
  return FG_OK;
}

static void built_free(built *bt) {
  fg_flow_ctx_free(bt->c);
  fg_graph_free(bt->g);
}

/* Moves every parameter off its initial value, so identity-at-init layers are really tested. */
static void perturb(check_env *env) {
  for (int i = 0; i < fg_params_count(env->ps); i++) {
    fg_tensor *p = fg_params_tensor(env->ps, i);
    for (int64_t j = 0; j < fg_tensor_numel(p); j++)
      fg_tensor_set(
          p, j,
          fg_tensor_get(p, j) +
              env->o.perturb * fg_rng_normal(env->o.seed + 101 + (uint64_t)i, (uint64_t)j));
  }
}

static double max_abs_diff(const fg_tensor *a, const fg_tensor *b, double sign) {
  double worst = 0;
  for (int64_t i = 0; i < fg_tensor_numel(a); i++) {
    double d = fabs(fg_tensor_get(a, i) - sign * fg_tensor_get(b, i));
    if (!(d <= worst)) worst = d; /* NaN wins */
  }
  return worst;
}

static fg_status run_with(check_env *env, built *bt, const fg_tensor *x, const fg_tensor *context,
                          fg_program **out, fg_check_report *r) {
  fg_err e;
  fg_program_opts po = {.n_threads = 1};
  fg_status st = fg_program_new_opts(out, bt->g, bt->n_out, bt->outs, &po, &e);
  if (st == FG_OK) st = fg_params_bind(env->ps, *out, &e);
  if (st == FG_OK) st = fg_program_bind(*out, "x", x, &e);
  if (st == FG_OK && context) st = fg_program_bind(*out, "context", context, &e);
  if (st == FG_OK) st = fg_program_run(*out, &e);
  if (st != FG_OK) note(r, "running failed: %s\n", e.msg);
  return st;
}

/* ---- the finite-difference reference, for a log-det derived from the dense Jacobian ---- */

/* log|det| of the n x n matrix a (row-major, overwritten) by LU with partial pivoting. */
static double host_logabsdet(double *a, int64_t n) {
  double total = 0;
  for (int64_t k = 0; k < n; k++) {
    int64_t piv = k;
    for (int64_t i = k + 1; i < n; i++)
      if (fabs(a[i * n + k]) > fabs(a[piv * n + k])) piv = i;
    for (int64_t j = 0; j < n && piv != k; j++) {
      double t = a[k * n + j];
      a[k * n + j] = a[piv * n + j], a[piv * n + j] = t;
    }
    if (a[k * n + k] == 0) return -INFINITY;
    total += log(fabs(a[k * n + k]));
    for (int64_t i = k + 1; i < n; i++) {
      double f = a[i * n + k] / a[k * n + k];
      for (int64_t j = k; j < n; j++) a[i * n + j] -= f * a[k * n + j];
    }
  }
  return total;
}

/* y at x with element j of every sample moved by dx: one run of a y-only program. */
static fg_status y_at(check_env *env, fg_program *p, const fg_tensor *x, int64_t j, double dx,
                      fg_tensor **y) {
  fg_tensor *moved;
  fg_status st = fg_tensor_copy(&moved, x, FG_F64, NULL);
  int64_t d = fg_tensor_numel(x) / env->o.batch;
  for (int64_t b = 0; st == FG_OK && b < env->o.batch; b++)
    fg_tensor_set(moved, b * d + j, fg_tensor_get(moved, b * d + j) + dx);
  if (st == FG_OK) st = fg_program_bind(p, "x", moved, NULL);
  if (st == FG_OK) st = fg_program_run(p, NULL);
  if (st == FG_OK) st = fg_tensor_copy(y, fg_program_output(p, 0), FG_F64, NULL);
  fg_tensor_free(moved);
  return st;
}

/* max |fldj - log|det J_fd|| over the batch, J_fd by central differences (step 1e-6). */
static double fd_logdet_err(check_env *env, built *bt, const fg_tensor *x, const fg_tensor *fldj) {
  const double h = 1e-6;
  int64_t batch = env->o.batch, d = fg_tensor_numel(x) / batch;
  fg_program *p = NULL;
  fg_program_opts po = {.n_threads = 1};
  double *jac = malloc(sizeof *jac * (size_t)(batch * d * d + 1)), worst = 0;
  fg_status st = jac ? fg_program_new_opts(&p, bt->g, 1, &bt->outs[0], &po, NULL) : FG_E_NOMEM;
  if (st == FG_OK) st = fg_params_bind(env->ps, p, NULL);
  for (int64_t j = 0; st == FG_OK && j < d; j++) {
    fg_tensor *up = NULL, *down = NULL;
    st = y_at(env, p, x, j, h, &up);
    if (st == FG_OK) st = y_at(env, p, x, j, -h, &down);
    for (int64_t b = 0; st == FG_OK && b < batch; b++)
      for (int64_t i = 0; i < d; i++) {
        double dy = fg_tensor_get(up, b * d + i) - fg_tensor_get(down, b * d + i);
        jac[(b * d + i) * d + j] = dy / (2 * h);
      }
    fg_tensor_free(up), fg_tensor_free(down);
  }
  for (int64_t b = 0; st == FG_OK && b < batch; b++) {
    double diff = fabs(fg_tensor_get(fldj, b) - host_logabsdet(jac + b * d * d, d));
    if (!(diff <= worst)) worst = diff; /* NaN wins */
  }
  fg_program_free(p);
  free(jac);
  return st == FG_OK ? worst : NAN;
}

static void logdet_line(const check_env *env, fg_check_report *r, bool ok) {
  const fg_logdet_sources *s = &r->sources;
  const char *how = s->dense ? "derived from the dense Jacobian"
                    : s->triangular ? "derived: triangular structure"
                    : s->diagonal ? "derived: diagonal structure"
                                  : "declared";
  if (env->factor_out)
    note(r, "skip log-det vs Jacobian: a factor-out layer changes the dimension\n");
  else if (r->logdet_vs_fd)
    note(r, "%s log-det (%s) vs slogdet(finite-difference Jacobian): max diff %.3g\n",
         ok ? "ok  " : "FAIL", how, r->logdet_err);
  else
    note(r, "%s log-det (%s) vs slogdet(dense autodiff Jacobian): max diff %.3g\n",
         ok ? "ok  " : "FAIL", how, r->logdet_err);
}

static bool values_check(check_env *env, built *bt, fg_check_report *r) {
  fg_tensor *x = input_values(env, false);
  fg_program *p = NULL;
  bool ok = x && run_with(env, bt, x, env->context, &p, r) == FG_OK;
  if (ok) {
    r->roundtrip_err = max_abs_diff(fg_program_output(p, 2), x, 1);
    r->inverse_logdet_err = max_abs_diff(fg_program_output(p, 1), fg_program_output(p, 3), -1);
    const fg_tensor *fldj = fg_program_output(p, 1);
    r->logdet_err = env->factor_out  ? NAN
                    : r->logdet_vs_fd ? fd_logdet_err(env, bt, x, fldj)
                                      : max_abs_diff(fldj, fg_program_output(p, 4), 1);
    double tol = env->o.tol;
    bool rt = r->roundtrip_err <= tol * 10, inv = r->inverse_logdet_err <= tol * 10;
    /* central differences carry an error of about 1e-9 per Jacobian entry */
    double ld_tol = r->logdet_vs_fd ? fmax(tol * 10, 1e-5) : tol * 10;
    bool ld = env->factor_out || r->logdet_err <= ld_tol;
    note(r, "%s round trip: max |x - f^-1(f(x))| = %.3g\n", rt ? "ok  " : "FAIL", r->roundtrip_err);
    logdet_line(env, r, ld);
    note(r, "%s forward log-det = -inverse log-det at f(x): max diff %.3g\n", inv ? "ok  " : "FAIL",
         r->inverse_logdet_err);
    ok = rt && inv && ld;
  }
  fg_program_free(p);
  fg_tensor_free(x);
  return ok;
}

static bool edges_check(check_env *env, built *bt, fg_check_report *r) {
  fg_tensor *x = input_values(env, true);
  fg_program *p = NULL;
  bool ok = x && run_with(env, bt, x, env->context, &p, r) == FG_OK;
  if (ok)
    ok = fg_tensor_all_finite(fg_program_output(p, 0)) &&
         fg_tensor_all_finite(fg_program_output(p, 1));
  r->edges_finite = ok;
  note(r, "%s finite output and log-det near the domain edges [%g, %g]\n", ok ? "ok  " : "FAIL",
       env->o.lo, env->o.hi);
  fg_program_free(p);
  fg_tensor_free(x);
  return ok;
}

/* A conditional type must use its context: y or the log-det changes when the context does. */
static bool context_check(check_env *env, built *bt, fg_check_report *r) {
  if (!env->context) return true;
  fg_tensor *x = input_values(env, false);
  fg_program *p = NULL, *q = NULL;
  bool ok = x && run_with(env, bt, x, env->context, &p, r) == FG_OK &&
            run_with(env, bt, x, env->other_context, &q, r) == FG_OK;
  double change = 0;
  for (int i = 0; ok && i < 2; i++) {
    double d = max_abs_diff(fg_program_output(p, i), fg_program_output(q, i), 1);
    if (!(d <= change)) change = d;
  }
  ok = ok && change > env->o.tol;
  note(r, "%s output or log-det depends on the context: max change %.3g for another context\n",
       ok ? "ok  " : "FAIL", change);
  fg_program_free(p);
  fg_program_free(q);
  fg_tensor_free(x);
  return ok;
}

/* ---- gradcheck of (y, log-det) with respect to x, the context and every parameter ---- */

static fg_node build_for_gradcheck(fg_graph *g, const fg_node *in, void *ud) {
  check_env *env = ud;
  fg_flow_ctx *c;
  fg_flow_ctx_opts co = {.dtype = FG_F64, .seed = env->o.seed};
  fg_err e;
  if (fg_flow_ctx_new(&c, g, env->ps, &co, &e) != FG_OK)
    return fg_graph_fail(g, e.status, "%s", e.msg);
  int first_param = 1;
  if (env->context) fg_flow_ctx_set_context(c, in[first_param++]);
  for (int i = 0; i < fg_params_count(env->ps); i++)
    fg_flow_ctx_override_param(c, fg_params_name(env->ps, i), in[first_param + i]);
  fg_node y, ld;
  fg_bijector_forward(env->b, c, in[0], &y, &ld);
  fg_flow_ctx_free(c);
  fg_shape ys = fg_node_shape(g, y);
  fg_node parts[2] = {fg_reshape(g, y, fg_shape1(fg_shape_count(&ys))), ld};
  return fg_concat(g, 2, parts, 0);
}

static bool grad_check(check_env *env, fg_check_report *r) {
  int n = fg_params_count(env->ps), first_param = env->context ? 2 : 1;
  fg_tensor **in = calloc((size_t)n + 3, sizeof *in);
  if (!in) return false;
  in[0] = input_values(env, false);
  if (env->context) in[1] = env->context;
  for (int i = 0; i < n; i++) in[first_param + i] = fg_params_tensor(env->ps, i);
  fg_status st = in[0] ? fg_gradcheck(build_for_gradcheck, env, n + first_param, in, NULL, &r->grad)
                       : FG_E_NOMEM;
  note(r, "%s gradcheck of y and log-det w.r.t. x, %s%d parameters: %s\n",
       st == FG_OK ? "ok  " : "FAIL", env->context ? "the context and " : "", n, r->grad.msg);
  fg_tensor_free(in[0]);
  free(in);
  return st == FG_OK;
}

fg_status fg_bijector_check(fg_bijector *b, const fg_bijector_type *t, const fg_check_opts *o,
                            fg_check_report *r) {
  fg_check_report local;
  if (!r) r = &local;
  memset(r, 0, sizeof *r);
  check_env env;
  fg_status st = resolve(&env, b, t, o);
  if (st != FG_OK) {
    if (st == FG_E_MISUSE)
      note(r, "%s: no event shape to check at (declare check_event)\n", who(&env));
    else note(r, "%s: out of memory\n", who(&env));
    env_free(&env);
    return st;
  }
  built bt;
  st = build(&env, &bt, r);
  bool ok = st == FG_OK;
  if (ok) {
    perturb(&env);
    bool v = values_check(&env, &bt, r), ed = edges_check(&env, &bt, r);
    bool cx = context_check(&env, &bt, r);
    bool gr = env.o.skip_gradcheck || grad_check(&env, r);
    ok = v && ed && cx && gr;
  }
  built_free(&bt);
  env_free(&env);
  r->passed = ok;
  return ok ? FG_OK : (st != FG_OK ? st : FG_E_NUMERIC);
}

fg_status fg_bijector_check_type(const fg_bijector_type *t, const fg_check_opts *o,
                                 fg_check_report *r) {
  fg_check_report local;
  if (!r) r = &local;
  memset(r, 0, sizeof *r);
  fg_bijector *b;
  fg_err e;
  const char *args = o && o->args ? o->args : t->check_args ? t->check_args : "";
  fg_status st = fg_bijector_new_from_text(&b, t, args, &e);
  if (st != FG_OK) {
    snprintf(r->msg, sizeof r->msg, "%s: constructing from arguments \"%s\" failed: %s\n", t->name,
             args, e.msg);
    return st;
  }
  st = fg_bijector_check(b, t, o, r);
  fg_bijector_free(b);
  return st;
}
