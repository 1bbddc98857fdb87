/* Flow models (see flow.h): a bijector, a base distribution and a parameter store. */
#include "flows/flow.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/autodiff/autodiff.h"
#include "core/runtime/program.h"
#include "flows/distribution.h"
#include "flows/flow_internal.h"
#include "ops/ops.h"

/* ---- accessors ---- */

fg_bijector *fg_flow_bijector(const fg_flow *f) { return f->b; }
fg_params *fg_flow_params(const fg_flow *f) { return f->ps; }
const fg_flow_config *fg_flow_get_config(const fg_flow *f) { return &f->cfg; }
fg_shape fg_flow_latent_shape(const fg_flow *f) { return f->zshape; }
int64_t fg_flow_dims(const fg_flow *f) { return f->dims; }
int fg_flow_num_params(const fg_flow *f) { return fg_params_count(f->ps); }
int64_t fg_flow_num_scalars(const fg_flow *f) { return fg_params_numel(f->ps); }
int64_t fg_flow_context_size(const fg_flow *f) { return f->cfg.context; }
int fg_flow_latent_count(const fg_flow *f) { return f->n_latents; }
fg_shape fg_flow_latent_shape_at(const fg_flow *f, int i) {
  return i >= 0 && i < f->n_latents ? f->latent_shapes[i] : fg_shape0();
}
void fg_flow_set_replicas(fg_flow *f, const fg_reducer *r) { f->replicas = r; }
const fg_reducer *fg_flow_get_replicas(const fg_flow *f) { return f->replicas; }

/* ---- contexts and shapes ---- */

fg_flow_ctx *fg__flow_ctx(const fg_flow *f, fg_graph *g, fg__flow_mode m, fg_node context) {
  fg_flow_ctx_opts o = {.dtype = f->cfg.dtype, .training = m.training, .sampling = m.sampling,
                        .temperature = m.temperature, .seed = m.seed,
                        .replicas = m.training ? f->replicas : NULL};
  fg_flow_ctx *c = NULL;
  fg_err e;
  if (fg_flow_ctx_new(&c, g, f->ps, &o, &e) != FG_OK) fg_graph_fail(g, e.status, "flow: %s", e.msg);
  if (c) fg_flow_ctx_set_context(c, context);
  return c;
}

fg_shape fg__with_batch(int64_t batch, const fg_shape *event) {
  fg_shape s = {.ndim = event->ndim + 1};
  s.d[0] = batch;
  for (int i = 0; i < event->ndim; i++) s.d[i + 1] = event->d[i];
  return s;
}

fg_status fg__flow_check_context(const fg_flow *f, fg_graph *g, fg_node context, int64_t batch) {
  if (fg_graph_status(g) != FG_OK) return fg_graph_status(g);
  if (context == FG_NONE) return FG_OK; /* a conditional layer or prior says what it misses */
  if (f->cfg.context == 0)
    return fg_graph_fail_status(g, FG_E_MISUSE, "flow: a context was given to an unconditional "
                                "flow (config.context is 0)");
  fg_shape cs = fg_node_shape(g, context), want = fg_shape2(batch, f->cfg.context);
  char a[128], b[128];
  if (!fg_shape_equal(&cs, &want))
    return fg_graph_fail_status(g, FG_E_SHAPE,
                                "flow: the context has shape %s; %lld samples of "
                                "this flow need %s",
                                fg_shape_str(&cs, a, sizeof a), (long long)batch,
                                fg_shape_str(&want, b, sizeof b));
  if (fg_node_dtype(g, context) != f->cfg.dtype)
    return fg_graph_fail_status(
        g, FG_E_DTYPE, "flow: the context is %s; the flow's parameters are %s",
        fg_dtype_name(fg_node_dtype(g, context)), fg_dtype_name(f->cfg.dtype));
  return FG_OK;
}

fg_status fg__flow_check_inputs(const fg_flow *f, fg_graph *g, fg_node x, fg_node context) {
  if (fg_graph_status(g) != FG_OK) return fg_graph_status(g);
  fg_shape xs = fg_node_shape(g, x), want = fg__with_batch(xs.ndim ? xs.d[0] : 0, &f->cfg.event);
  char a[128], b[128];
  if (!fg_shape_equal(&xs, &want))
    return fg_graph_fail_status(g, FG_E_SHAPE, "flow: x has shape %s; the flow's events are %s "
                                "(with the batch axis first)", fg_shape_str(&xs, a, sizeof a),
                                fg_shape_str(&f->cfg.event, b, sizeof b));
  if (fg_node_dtype(g, x) != f->cfg.dtype)
    return fg_graph_fail_status(g, FG_E_DTYPE, "flow: x is %s; the flow's parameters are %s",
                                fg_dtype_name(fg_node_dtype(g, x)), fg_dtype_name(f->cfg.dtype));
  return fg__flow_check_context(f, g, context, xs.d[0]);
}

/* The learned prior's mean and log-std ("prior.mean", "prior.logstd", of the latent's
 * per-sample shape), plus for the conditional prior the context's learned contribution. */
static void prior_params(const fg_flow *f, fg_flow_ctx *c, const fg_shape *zshape, fg_node like,
                         fg_node *mean, fg_node *logstd) {
  fg_graph *g = fg_flow_graph(c);
  fg_flow_ctx_set_prefix(c, "prior.");
  *mean = fg_flow_param(c, "mean", *zshape, (fg_init){FG_INIT_ZEROS, 0, 0});
  *logstd = fg_flow_param(c, "logstd", *zshape, (fg_init){FG_INIT_ZEROS, 0, 0});
  if (f->cfg.base == FG_BASE_CONDITIONAL) {
    *mean = fg_add(g, *mean, fg_flow_context_linear(c, "context_mean", *zshape, like));
    *logstd = fg_add(g, *logstd, fg_flow_context_linear(c, "context_logstd", *zshape, like));
  }
  fg_flow_ctx_set_prefix(c, "");
}

fg_node fg__flow_base_log_prob(const fg_flow *f, fg_flow_ctx *c, fg_node z) {
  fg_graph *g = fg_flow_graph(c);
  const char *outer = fg_graph_enter_scope(g, "prior");
  fg_node logp;
  if (f->cfg.base == FG_BASE_NORMAL) {
    logp = fg_normal_log_prob(g, z);
  } else {
    fg_shape zs = fg_node_shape(g, z), ev = {.ndim = zs.ndim ? zs.ndim - 1 : 0};
    for (int i = 1; i < zs.ndim; i++) ev.d[i - 1] = zs.d[i];
    fg_node mean, logstd;
    prior_params(f, c, &ev, z, &mean, &logstd);
    logp = fg_diag_normal_log_prob(g, z, mean, logstd);
  }
  fg_graph_leave_scope(g, outer);
  return logp;
}

fg_node fg__flow_base_sample(const fg_flow *f, fg_flow_ctx *c, int64_t n, double temperature) {
  fg_graph *g = fg_flow_graph(c);
  const char *outer = fg_graph_enter_scope(g, "prior");
  fg_shape zs = fg__with_batch(n, &f->zshape);
  fg_node mean = FG_NONE, logstd = FG_NONE;
  if (f->cfg.base != FG_BASE_NORMAL) {
    fg_node like = fg_fill(g, 0.0, f->cfg.dtype, fg_shape0()); /* the dtype the prior computes in */
    prior_params(f, c, &f->zshape, like, &mean, &logstd);
  }
  fg_node z =
      fg_diag_normal_sample(g, mean, logstd, temperature, fg_flow_next_seed(c), f->cfg.dtype, zs);
  fg_graph_leave_scope(g, outer);
  return z;
}

/* ---- building ---- */

fg_status fg__flow_encode_in(fg_flow *f, fg_flow_ctx *c, fg_node x, fg_node *z, fg_node *logdet) {
  fg_graph *g = fg_flow_graph(c);
  *z = *logdet = FG_POISON;
  if (fg__flow_check_inputs(f, g, x, fg_flow_context(c)) != FG_OK) return fg_graph_status(g);
  fg_bijector_forward(f->b, c, x, z, logdet);
  return fg_graph_status(g);
}

static fg_status log_prob_in(fg_flow *f, fg_flow_ctx *c, fg_node x, fg_node *logp) {
  fg_graph *g = fg_flow_graph(c);
  fg_node z, ld;
  *logp = FG_POISON;
  if (fg__flow_encode_in(f, c, x, &z, &ld) != FG_OK) return fg_graph_status(g);
  fg_node base = fg__flow_base_log_prob(f, c, z);
  const char *outer = fg_graph_enter_scope(g, "prior"); /* log p(x) = log p(z) + Σ log-dets */
  *logp = fg_add(g, base, ld);
  fg_graph_leave_scope(g, outer);
  return fg_graph_status(g);
}

fg_status fg_flow_encode(fg_flow *f, fg_graph *g, fg_node x, bool training, fg_node *z,
                         fg_node *logdet) {
  fg_flow_ctx *c =
      fg__flow_ctx(f, g, (fg__flow_mode){.training = training, .seed = f->cfg.seed}, FG_NONE);
  if (c) fg__flow_encode_in(f, c, x, z, logdet);
  fg_flow_ctx_free(c);
  return fg_graph_status(g);
}

/* ---- state updates ---- */

struct fg_flow_updates {
  int n;
  char **names;
  fg_node *nodes;
};

void fg_flow_updates_free(fg_flow_updates *u) {
  if (!u) return;
  for (int i = 0; i < u->n; i++) free(u->names[i]);
  free(u->names);
  free(u->nodes);
  free(u);
}

int fg_flow_updates_count(const fg_flow_updates *u) { return u ? u->n : 0; }
fg_node fg_flow_updates_node(const fg_flow_updates *u, int i) {
  return u && i >= 0 && i < u->n ? u->nodes[i] : FG_NONE;
}
const char *fg_flow_updates_name(const fg_flow_updates *u, int i) {
  return u && i >= 0 && i < u->n ? u->names[i] : NULL;
}

fg_flow_updates *fg_flow_updates_from_ctx(fg_flow_ctx *c, bool *nomem) {
  int n = fg_flow_ctx_num_inits(c);
  *nomem = false;
  if (n == 0) return NULL;
  fg_flow_updates *u = calloc(1, sizeof *u);
  if (u)
    u->names = calloc((size_t)n, sizeof *u->names), u->nodes = calloc((size_t)n, sizeof *u->nodes);
  bool ok = u && u->names && u->nodes;
  for (int i = 0; ok && i < n; i++) {
    u->nodes[i] = fg_flow_ctx_init_value(c, i);
    ok = (u->names[i] = strdup(fg_flow_ctx_init_name(c, i))) != NULL;
    u->n = i + 1;
  }
  if (!ok) {
    fg_flow_updates_free(u);
    *nomem = true;
    return NULL;
  }
  return u;
}

fg_status fg_flow_updates_apply(fg_flow *f, const fg_flow_updates *u,
                                const fg_tensor *const *values, fg_err *e) {
  for (int i = 0; i < fg_flow_updates_count(u); i++) {
    fg_status st = fg__flow_write_param(f, u->names[i], values[i], "state update", e);
    if (st != FG_OK) return st;
  }
  return FG_OK;
}

fg_status fg_flow_log_prob_cond(fg_flow *f, fg_graph *g, fg_node x, fg_node context, bool training,
                                fg_node *logp, fg_flow_updates **updates) {
  *logp = FG_POISON;
  if (updates) *updates = NULL;
  fg_flow_ctx *c =
      fg__flow_ctx(f, g, (fg__flow_mode){.training = training, .seed = f->cfg.seed}, context);
  if (c && log_prob_in(f, c, x, logp) == FG_OK && updates) {
    bool nomem;
    *updates = fg_flow_updates_from_ctx(c, &nomem);
    if (nomem) fg_graph_fail(g, FG_E_NOMEM, "flow: out of memory recording state updates");
  }
  fg_flow_ctx_free(c);
  return fg_graph_status(g);
}

fg_status fg_flow_log_prob_updates(fg_flow *f, fg_graph *g, fg_node x, bool training, fg_node *logp,
                                   fg_flow_updates **updates) {
  return fg_flow_log_prob_cond(f, g, x, FG_NONE, training, logp, updates);
}

fg_status fg_flow_log_prob(fg_flow *f, fg_graph *g, fg_node x, bool training, fg_node *logp) {
  return fg_flow_log_prob_cond(f, g, x, FG_NONE, training, logp, NULL);
}

fg_status fg_flow_base_log_prob(fg_flow *f, fg_graph *g, fg_node z, fg_node *logp) {
  *logp = FG_POISON;
  fg_flow_ctx *c = fg__flow_ctx(f, g, (fg__flow_mode){.seed = f->cfg.seed}, FG_NONE);
  if (c) *logp = fg__flow_base_log_prob(f, c, z);
  fg_flow_ctx_free(c);
  return fg_graph_status(g);
}

/* A sampling context for n draws given their context; NULL (graph error set) for bad n. */
static fg_flow_ctx *sampling_ctx(fg_flow *f, fg_graph *g, int64_t n, fg_node context,
                                 double temperature, uint64_t seed) {
  if (n < 1) {
    fg_graph_fail(g, FG_E_MISUSE, "flow: sampling needs n >= 1 (got %lld)", (long long)n);
    return NULL;
  }
  if (fg__flow_check_context(f, g, context, n) != FG_OK) return NULL;
  fg__flow_mode m = {.sampling = true, .temperature = temperature, .seed = seed};
  return fg__flow_ctx(f, g, m, context);
}

fg_status fg_flow_sample_cond(fg_flow *f, fg_graph *g, int64_t n, fg_node context,
                              double temperature, uint64_t seed, fg_node *x) {
  *x = FG_POISON;
  if (temperature == 0) temperature = 1.0;
  fg_flow_ctx *c = sampling_ctx(f, g, n, context, temperature, seed);
  if (c) {
    fg_node z = fg__flow_base_sample(f, c, n, temperature), ld;
    if (fg_graph_status(g) == FG_OK) fg_bijector_inverse(f->b, c, z, x, &ld);
  }
  fg_flow_ctx_free(c);
  return fg_graph_status(g);
}

fg_status fg_flow_sample(fg_flow *f, fg_graph *g, int64_t n, double temperature, uint64_t seed,
                         fg_node *x) {
  return fg_flow_sample_cond(f, g, n, FG_NONE, temperature, seed, x);
}

fg_status fg_flow_sample_steps_cond(fg_flow *f, fg_graph *g, int64_t n, fg_node context,
                                    double temperature, uint64_t seed, int cap, fg_node *steps,
                                    const char **names, int *n_steps) {
  int kids = fg_bijector_num_children(f->b), need = 1 + (kids > 0 ? kids : 1);
  *n_steps = need;
  if (n < 1 || cap < need) {
    fg_graph_fail(g, FG_E_MISUSE, "flow: sampling steps need n >= 1 and room for %d steps "
                  "(got n = %lld, cap %d)", need, (long long)n, cap);
    return FG_E_MISUSE;
  }
  if (temperature == 0) temperature = 1.0;
  fg_flow_ctx *c = sampling_ctx(f, g, n, context, temperature, seed);
  if (c) { /* as fg_bijector_inverse of the chain: its layers last to first */
    fg_node cur = fg__flow_base_sample(f, c, n, temperature), ld;
    steps[0] = cur, names[0] = "z";
    for (int k = 0; k < need - 1 && fg_graph_status(g) == FG_OK; k++) {
      fg_bijector *b = kids > 0 ? fg_bijector_child(f->b, kids - 1 - k) : f->b;
      fg_bijector_inverse(b, c, cur, &cur, &ld);
      steps[1 + k] = cur, names[1 + k] = fg_bijector_prefix(b);
    }
  }
  fg_flow_ctx_free(c);
  return fg_graph_status(g);
}

fg_status fg_flow_sample_steps(fg_flow *f, fg_graph *g, int64_t n, double temperature,
                               uint64_t seed, int cap, fg_node *steps, const char **names,
                               int *n_steps) {
  return fg_flow_sample_steps_cond(f, g, n, FG_NONE, temperature, seed, cap, steps, names, n_steps);
}

fg_status fg_flow_reconstruct(fg_flow *f, fg_graph *g, fg_node x, fg_node *x_again) {
  *x_again = FG_POISON;
  fg_flow_ctx *c = fg__flow_ctx(f, g, (fg__flow_mode){.seed = f->cfg.seed}, FG_NONE);
  fg_node z, ld, ld_inv;
  if (c && fg__flow_encode_in(f, c, x, &z, &ld) == FG_OK)
    fg_bijector_inverse(f->b, c, z, x_again, &ld_inv);
  fg_flow_ctx_free(c);
  return fg_graph_status(g);
}

fg_status fg_flow_nll_loss_cond(fg_flow *f, fg_graph *g, fg_node x, fg_node context, bool training,
                                fg_node *loss, fg_flow_updates **updates) {
  fg_node logp;
  *loss = FG_POISON;
  if (fg_flow_log_prob_cond(f, g, x, context, training, &logp, updates) == FG_OK) {
    const char *outer = fg_graph_enter_scope(g, "loss");
    *loss = fg_neg(g, fg_mean(g, logp, FG_ALL_AXES, false));
    fg_graph_leave_scope(g, outer);
  }
  return fg_graph_status(g);
}

fg_status fg_flow_nll_loss(fg_flow *f, fg_graph *g, fg_node x, bool training, fg_node *loss,
                           fg_flow_updates **updates) {
  return fg_flow_nll_loss_cond(f, g, x, FG_NONE, training, loss, updates);
}

fg_status fg_flow_param_grads(fg_flow *f, fg_graph *g, fg_node loss, fg_node *grads) {
  int n = fg_params_count(f->ps);
  fg_node *wrt = malloc(sizeof *wrt * ((size_t)n + 1));
  if (!wrt) return fg_graph_fail_status(g, FG_E_NOMEM, "flow: out of memory for gradients");
  for (int i = 0; i < n; i++) {
    const char *name = fg_params_name(f->ps, i);
    const fg_tensor *t = fg_params_tensor(f->ps, i);
    wrt[i] = fg_graph_find(g, name);
    if (wrt[i] == FG_NONE) wrt[i] = fg_param(g, name, t->dtype, t->shape); /* unused: zeros */
  }
  fg_status st = fg_graph_status(g) == FG_OK ? fg_grad(g, loss, n, wrt, grads) : fg_graph_status(g);
  free(wrt);
  return st;
}

/* ---- construction ---- */

void fg_flow_free(fg_flow *f) {
  if (!f) return;
  fg_bijector_free(f->b);
  fg_params_free(f->ps);
  free(f->latent_shapes);
  free(f);
}

/* Per-sample shapes of the latents: the factored-out parts left on c's stack, then z. */
static fg_status record_latents(fg_flow *f, fg_flow_ctx *c, fg_node z, fg_err *e) {
  fg_graph *g = fg_flow_graph(c);
  int n = fg_flow_num_latents(c) + 1;
  f->latent_shapes = calloc((size_t)n, sizeof *f->latent_shapes);
  if (!f->latent_shapes) return fg_err_set(e, FG_E_NOMEM, "flow: out of memory");
  f->n_latents = n;
  for (int i = n - 1; i >= 0; i--) {
    fg_shape s = fg_node_shape(g, i == n - 1 ? z : fg_flow_pop_latent(c)),
             *out = &f->latent_shapes[i];
    out->ndim = s.ndim - 1;
    for (int k = 1; k < s.ndim; k++) out->d[k - 1] = s.d[k];
  }
  f->zshape = f->latent_shapes[n - 1];
  return FG_OK;
}

/* Builds log p(x) for a batch of 2 in both modes: every parameter is created (in forward
 * order) and the latents' shapes are known. */
static fg_status materialise(fg_flow *f, fg_err *e) {
  fg_graph *g;
  fg_status st = fg_graph_new(&g, e);
  if (st != FG_OK) return fg_err_prefix(e, st, "flow");
  fg_node x = fg_input(g, "x", f->cfg.dtype, fg__with_batch(2, &f->cfg.event)), z, ld, logp;
  fg_node context =
      f->cfg.context ? fg_input(g, "context", f->cfg.dtype, fg_shape2(2, f->cfg.context)) : FG_NONE;
  fg_flow_ctx *c = fg__flow_ctx(f, g, (fg__flow_mode){.seed = f->cfg.seed}, context);
  if (c) fg__flow_encode_in(f, c, x, &z, &ld);
  fg_flow_log_prob_cond(f, g, x, context, false, &logp, NULL);
  fg_flow_log_prob_cond(f, g, x, context, true, &logp, NULL);
  st = fg_graph_status(g);
  if (st != FG_OK)
    fg_err_set(e, st, "flow: building log p(x) for events %s failed: %s",
               fg_shape_str(&f->cfg.event, (char[128]){0}, 128), fg_graph_errmsg(g));
  else
    st = record_latents(f, c, z, e);
  fg_flow_ctx_free(c);
  fg_graph_free(g);
  return st;
}

static fg_status check_config(const fg_flow_config *cfg, fg_err *e) {
  if (cfg->base != FG_BASE_NORMAL && cfg->base != FG_BASE_LEARNED &&
      cfg->base != FG_BASE_CONDITIONAL)
    return fg_err_set(e, FG_E_MISUSE, "flow: unknown base distribution %d", (int)cfg->base);
  if (cfg->dtype != FG_F32 && cfg->dtype != FG_F64)
    return fg_err_set(e, FG_E_MISUSE, "flow: dtype must be float32 or float64");
  if (cfg->event.ndim < 1 || cfg->event.ndim >= FG_MAX_DIMS)
    return fg_err_set(e, FG_E_SHAPE, "flow: the event needs 1 to %d axes (got %lld)",
                      FG_MAX_DIMS - 1, (long long)cfg->event.ndim);
  int64_t n = 0;
  char ev[160];
  fg_shape_str(&cfg->event, ev, sizeof ev);
  fg_status st = fg_shape_numel(&cfg->event, &n, NULL);
  if (st != FG_OK || n < 1)
    return fg_err_set(e, st == FG_E_OVERFLOW ? FG_E_LIMIT : FG_E_SHAPE,
                      "flow: the event %s is empty or too large", ev);
  if (n > FG_FLOW_MAX_EVENT)
    return fg_err_set(e, FG_E_LIMIT,
                      "flow: the event %s has %lld elements per sample; flowgrad "
                      "accepts at most FG_FLOW_MAX_EVENT = %lld",
                      ev, (long long)n, (long long)FG_FLOW_MAX_EVENT);
  if (cfg->max_params < 0) return fg_err_set(e, FG_E_MISUSE, "flow: max_params must be >= 0");
  if (cfg->context < 0 || cfg->context > FG_FLOW_MAX_CONTEXT)
    return fg_err_set(e, FG_E_MISUSE, "flow: the context must have 0 to %d features (got %lld)",
                      FG_FLOW_MAX_CONTEXT, (long long)cfg->context);
  if (cfg->base == FG_BASE_CONDITIONAL && cfg->context == 0)
    return fg_err_set(e, FG_E_MISUSE, "flow: the conditional prior needs a context (config.context "
                      "> 0: the number of classes for one-hot labels)");
  return FG_OK;
}

fg_status fg_flow_new_config(fg_flow **out, fg_bijector *b, const fg_flow_config *cfg, fg_err *e) {
  *out = NULL;
  fg_status st = b && cfg
                     ? check_config(cfg, e)
                     : fg_err_set(e, FG_E_MISUSE, "flow: needs a bijector and a configuration");
  fg_flow *f = st == FG_OK ? calloc(1, sizeof *f) : NULL;
  if (st == FG_OK && !f) st = fg_err_set(e, FG_E_NOMEM, "flow: out of memory");
  if (st == FG_OK) st = fg_params_new(&f->ps, cfg->seed, e);
  if (st == FG_OK)
    fg_params_set_limit(f->ps, cfg->max_params ? cfg->max_params : FG_FLOW_MAX_PARAMS);
  if (st != FG_OK) {
    free(f);
    fg_bijector_free(b);
    return st;
  }
  f->b = b;
  f->cfg = *cfg;
  f->dims = fg_shape_count(&cfg->event);
  if ((st = materialise(f, e)) != FG_OK) {
    fg_flow_free(f);
    return st;
  }
  *out = f;
  return FG_OK;
}

fg_status fg_flow_new(fg_flow **out, fg_bijector *b, fg_base_kind base, fg_shape event,
                      uint64_t seed, fg_err *e) {
  fg_flow_config cfg = {.base = base, .event = event, .dtype = FG_F32, .seed = seed};
  return fg_flow_new_config(out, b, &cfg, e);
}

/* ---- bits per dimension ---- */

double fg_bits_per_dim(double log_prob, int64_t dims, double n_bins) {
  double d = (double)dims;
  return (-log_prob + d * log(n_bins)) / (d * log(2.0));
}

fg_node fg_flow_bits_per_dim(fg_graph *g, fg_node logp, int64_t dims, double n_bins) {
  double d = (double)dims;
  return fg_add_scalar(g, fg_mul_scalar(g, logp, -1.0 / (d * log(2.0))), log(n_bins) / log(2.0));
}
