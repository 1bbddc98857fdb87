/* Data-dependent initialisation of a flow (actnorm's), layer by layer (see flow.h). */
#include <math.h>
#include <stdlib.h>

#include "core/runtime/program.h"
#include "flows/flow_internal.h"
#include "ops/ops.h"

static bool wants_init(const fg_bijector *u) {
  const fg_bijector_type *t = fg_bijector_type_of(u);
  return t && t->data_init && !fg_bijector_is_inverted(u);
}

/* What every step of the initialisation runs on: the batch at the current layer's input and
 * the batch's context (NULL for an unconditional flow); how its programs are compiled (NULL:
 * the defaults). */
typedef struct init_inputs {
  const fg_tensor *h, *context;
  const fg_program_opts *opts;
} init_inputs;

/* Compiles outs of g, binds "h", "context" and the parameters, runs. */
static fg_status run_program(fg_flow *f, fg_graph *g, int n_out, const fg_node *outs,
                             const init_inputs *in, fg_program **p, fg_err *e) {
  *p = NULL;
  if (fg_graph_status(g) != FG_OK)
    return fg_err_set(e, fg_graph_status(g), "%s", fg_graph_errmsg(g));
  fg_status st = fg_program_new_opts(p, g, n_out, outs, in->opts, e);
  if (st == FG_OK) st = fg_params_bind(f->ps, *p, e);
  if (st == FG_OK) st = fg_program_bind(*p, "h", in->h, e);
  if (st == FG_OK && in->context) st = fg_program_bind(*p, "context", in->context, e);
  if (st == FG_OK) st = fg_program_run(*p, e);
  return st;
}

fg_status fg__flow_write_param(fg_flow *f, const char *name, const fg_tensor *v, const char *what,
                               fg_err *e) {
  fg_tensor *dst = fg_params_find(f->ps, name);
  if (!dst) return fg_err_set(e, FG_E_NOTFOUND, "%s: no parameter '%s'", what, name);
  if (fg_tensor_numel(dst) != fg_tensor_numel(v)) {
    char a[96], b[96];
    return fg_err_set(e, FG_E_SHAPE, "%s: parameter '%s' is %s, its new value %s", what, name,
                      fg_shape_str(&dst->shape, a, sizeof a), fg_shape_str(&v->shape, b, sizeof b));
  }
  for (int64_t i = 0; i < fg_tensor_numel(v); i++) {
    double x = fg_tensor_get(v, i);
    if (!isfinite(x))
      return fg_err_set(e, FG_E_NUMERIC, "%s: parameter '%s' would be %g at element %lld", what,
                        name, x, (long long)i);
    fg_tensor_set(dst, i, x);
  }
  return FG_OK;
}

/* A new graph and a training-mode context for one step of the initialisation, with its input
 * h (and context) declared; on failure neither exists. */
static fg_status init_graph(fg_flow *f, const init_inputs *in, fg_graph **g, fg_flow_ctx **c,
                            fg_node *h, fg_err *e) {
  fg_flow_ctx_opts o = {.dtype = f->cfg.dtype, .training = true, .seed = f->cfg.seed};
  fg_status st = fg_flow_ctx_new_graph(c, g, f->ps, &o, e);
  if (st != FG_OK) return fg_err_prefix(e, st, "data init");
  *h = fg_input(*g, "h", f->cfg.dtype, in->h->shape);
  if (in->context)
    fg_flow_ctx_set_context(*c, fg_input(*g, "context", f->cfg.dtype, in->context->shape));
  return FG_OK;
}

static void free_graph(fg_graph *g, fg_flow_ctx *c) {
  fg_flow_ctx_free(c);
  fg_graph_free(g);
}

/* Runs unit u's initialisation at its input. */
static fg_status init_unit(fg_flow *f, fg_bijector *u, const init_inputs *in, fg_err *e) {
  fg_graph *g;
  fg_flow_ctx *c;
  fg_node h;
  fg_status st = init_graph(f, in, &g, &c, &h, e);
  if (st != FG_OK) return st;
  fg_bijector_data_init(u, c, h);
  int n = fg_flow_ctx_num_inits(c);
  fg_node *outs = malloc(sizeof *outs * ((size_t)n + 1));
  if (!outs) st = fg_err_set(e, FG_E_NOMEM, "data init: out of memory");
  for (int i = 0; st == FG_OK && i < n; i++) outs[i] = fg_flow_ctx_init_value(c, i);
  fg_program *p = NULL;
  if (st == FG_OK && n > 0) st = run_program(f, g, n, outs, in, &p, e);
  else if (st == FG_OK && fg_graph_status(g) != FG_OK)
    st = fg_err_set(e, fg_graph_status(g), "%s", fg_graph_errmsg(g));
  for (int i = 0; st == FG_OK && i < n; i++)
    st = fg__flow_write_param(f, fg_flow_ctx_init_name(c, i), fg_program_output(p, i), "data init",
                              e);
  fg_program_free(p);
  free(outs);
  free_graph(g, c);
  return st;
}

/* *next = u(h), with u's freshly initialised parameters (factored-out parts dropped). */
static fg_status advance_unit(fg_flow *f, fg_bijector *u, const init_inputs *in, fg_tensor **next,
                              fg_err *e) {
  *next = NULL;
  fg_graph *g;
  fg_flow_ctx *c;
  fg_node h, y, ld;
  fg_status st = init_graph(f, in, &g, &c, &h, e);
  if (st != FG_OK) return st;
  fg_bijector_forward(u, c, h, &y, &ld);
  fg_program *p = NULL;
  st = run_program(f, g, 1, &y, in, &p, e);
  if (st == FG_OK) st = fg_tensor_copy(next, fg_program_output(p, 0), f->cfg.dtype, e);
  fg_program_free(p);
  free_graph(g, c);
  return st;
}

/* Initialises the layers units[0..n) (fg_bijector_leaves) in turn, each at its input; takes h. */
static fg_status init_units(fg_flow *f, fg_bijector **units, int n, fg_tensor *h,
                            const fg_tensor *context, const fg_program_opts *opts, fg_err *e) {
  int last = -1;
  for (int i = 0; i < n; i++)
    if (wants_init(units[i])) last = i;
  fg_status st = FG_OK;
  for (int i = 0; i <= last && st == FG_OK; i++) {
    init_inputs in = {h, context, opts};
    if (wants_init(units[i]) && (st = init_unit(f, units[i], &in, e)) != FG_OK) {
      fg_err_prefix(e, st, "data init of layer '%s'", fg_bijector_prefix(units[i]));
      break;
    }
    if (i == last) break;
    fg_tensor *next;
    if ((st = advance_unit(f, units[i], &in, &next, e)) != FG_OK) break;
    fg_tensor_free(h);
    h = next;
  }
  fg_tensor_free(h);
  return st;
}

static fg_status check_batch(const fg_flow *f, const fg_tensor *batch, const fg_tensor *context,
                             fg_err *e) {
  fg_shape want = fg__with_batch(batch->shape.ndim ? batch->shape.d[0] : 0, &f->cfg.event);
  char a[128], b[128];
  if (!fg_shape_equal(&batch->shape, &want))
    return fg_err_set(e, FG_E_SHAPE, "data init: the batch has shape %s; the flow's events are %s",
                      fg_shape_str(&batch->shape, a, sizeof a),
                      fg_shape_str(&f->cfg.event, b, sizeof b));
  if (!context) return FG_OK;
  fg_shape cs = fg_shape2(want.d[0], f->cfg.context);
  if (f->cfg.context == 0 || !fg_shape_equal(&context->shape, &cs) ||
      context->dtype != f->cfg.dtype)
    return fg_err_set(e, FG_E_SHAPE, "data init: the context is %s %s; this batch needs %s %s",
                      fg_dtype_name(context->dtype), fg_shape_str(&context->shape, a, sizeof a),
                      fg_dtype_name(f->cfg.dtype), fg_shape_str(&cs, b, sizeof b));
  return FG_OK;
}

fg_status fg_flow_data_init_opts(fg_flow *f, const fg_tensor *batch, const fg_tensor *context,
                                 const fg_program_opts *opts, fg_err *e) {
  fg_status st = check_batch(f, batch, context, e);
  if (st != FG_OK) return st;
  fg_bijector **units;
  int n;
  st = fg_bijector_leaves(&units, &n, f->b, e);
  if (st != FG_OK) return fg_err_prefix(e, st, "data init");
  fg_tensor *h;
  st = fg_tensor_copy(&h, batch, f->cfg.dtype, e);
  if (st == FG_OK) st = init_units(f, units, n, h, context, opts, e);
  free(units);
  return st;
}

fg_status fg_flow_data_init_cond(fg_flow *f, const fg_tensor *batch, const fg_tensor *context,
                                 fg_err *e) {
  return fg_flow_data_init_opts(f, batch, context, NULL, e);
}

fg_status fg_flow_data_init(fg_flow *f, const fg_tensor *batch, fg_err *e) {
  return fg_flow_data_init_cond(f, batch, NULL, e);
}
