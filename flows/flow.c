/* Flow models (see flow.h): a bijector, a base distribution and a parameter store. */
#include "flows/flow.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/autodiff/autodiff.h"
#include "core/runtime/program.h"
#include "flows/distribution.h"
#include "ops/ops.h"

struct fg_flow {
  fg_bijector *b;
  fg_params *ps;
  fg_flow_config cfg;
  fg_shape zshape; /* per sample */
  int64_t dims;
  const fg_reducer *replicas; /* training graphs of a data-parallel job */
};

/* ---- accessors ---- */

fg_bijector *fg_flow_bijector(const fg_flow *f) { return f->b; }
fg_params *fg_flow_params(const fg_flow *f) { return f->ps; }
const fg_flow_config *fg_flow_get_config(const fg_flow *f) { return &f->cfg; }
fg_shape fg_flow_latent_shape(const fg_flow *f) { return f->zshape; }
int64_t fg_flow_dims(const fg_flow *f) { return f->dims; }
int fg_flow_num_params(const fg_flow *f) { return fg_params_count(f->ps); }
int64_t fg_flow_num_scalars(const fg_flow *f) { return fg_params_numel(f->ps); }
void fg_flow_set_replicas(fg_flow *f, const fg_reducer *r) { f->replicas = r; }
const fg_reducer *fg_flow_get_replicas(const fg_flow *f) { return f->replicas; }

/* ---- contexts and shapes ---- */

typedef struct ctx_mode {
  bool training, sampling;
  double temperature;
  uint64_t seed;
} ctx_mode;

static fg_flow_ctx *make_ctx(const fg_flow *f, fg_graph *g, ctx_mode m) {
  fg_flow_ctx_opts o = {.dtype = f->cfg.dtype, .training = m.training, .sampling = m.sampling,
                        .temperature = m.temperature, .seed = m.seed,
                        .replicas = m.training ? f->replicas : NULL};
  fg_flow_ctx *c = NULL;
  fg_err e;
  if (fg_flow_ctx_new(&c, g, f->ps, &o, &e) != FG_OK) fg_graph_fail(g, e.status, "flow: %s", e.msg);
  return c;
}

/* [batch, event...] */
static fg_shape with_batch(int64_t batch, const fg_shape *event) {
  fg_shape s = {.ndim = event->ndim + 1};
  s.d[0] = batch;
  for (int i = 0; i < event->ndim; i++) s.d[i + 1] = event->d[i];
  return s;
}

/* x must be [B, event...] in the flow's dtype. */
static fg_status check_x(const fg_flow *f, fg_graph *g, fg_node x) {
  if (fg_graph_status(g) != FG_OK) return fg_graph_status(g);
  fg_shape xs = fg_node_shape(g, x), want = with_batch(xs.ndim ? xs.d[0] : 0, &f->cfg.event);
  char a[128], b[128];
  if (!fg_shape_equal(&xs, &want)) {
    fg_graph_fail(g, FG_E_SHAPE, "flow: x has shape %s; the flow's events are %s (with the batch "
                  "axis first)", fg_shape_str(&xs, a, sizeof a), fg_shape_str(&f->cfg.event, b, sizeof b));
    return FG_E_SHAPE;
  }
  if (fg_node_dtype(g, x) != f->cfg.dtype) {
    fg_graph_fail(g, FG_E_DTYPE, "flow: x is %s; the flow's parameters are %s",
                  fg_dtype_name(fg_node_dtype(g, x)), fg_dtype_name(f->cfg.dtype));
    return FG_E_DTYPE;
  }
  return FG_OK;
}

/* The learned prior's parameters, named "prior.mean" and "prior.logstd". */
static void prior_params(fg_flow_ctx *c, const fg_shape *zshape, fg_node *mean, fg_node *logstd) {
  fg_flow_ctx_set_prefix(c, "prior.");
  *mean = fg_flow_param(c, "mean", *zshape, (fg_init){FG_INIT_ZEROS, 0, 0});
  *logstd = fg_flow_param(c, "logstd", *zshape, (fg_init){FG_INIT_ZEROS, 0, 0});
  fg_flow_ctx_set_prefix(c, "");
}

static fg_node base_log_prob(const fg_flow *f, fg_flow_ctx *c, fg_node z) {
  fg_graph *g = fg_flow_graph(c);
  if (f->cfg.base == FG_BASE_NORMAL) return fg_normal_log_prob(g, z);
  fg_shape zs = fg_node_shape(g, z), ev = {.ndim = zs.ndim ? zs.ndim - 1 : 0};
  for (int i = 1; i < zs.ndim; i++) ev.d[i - 1] = zs.d[i];
  fg_node mean, logstd;
  prior_params(c, &ev, &mean, &logstd);
  return fg_diag_normal_log_prob(g, z, mean, logstd);
}

/* ---- building ---- */

static fg_status encode_in(fg_flow *f, fg_flow_ctx *c, fg_node x, fg_node *z, fg_node *logdet) {
  fg_graph *g = fg_flow_graph(c);
  *z = *logdet = FG_POISON;
  if (check_x(f, g, x) != FG_OK) return fg_graph_status(g);
  fg_bijector_forward(f->b, c, x, z, logdet);
  return fg_graph_status(g);
}

static fg_status log_prob_in(fg_flow *f, fg_flow_ctx *c, fg_node x, fg_node *logp) {
  fg_graph *g = fg_flow_graph(c);
  fg_node z, ld;
  *logp = FG_POISON;
  if (encode_in(f, c, x, &z, &ld) != FG_OK) return fg_graph_status(g);
  *logp = fg_add(g, base_log_prob(f, c, z), ld);
  return fg_graph_status(g);
}

fg_status fg_flow_encode(fg_flow *f, fg_graph *g, fg_node x, bool training, fg_node *z, fg_node *logdet) {
  fg_flow_ctx *c = make_ctx(f, g, (ctx_mode){.training = training, .seed = f->cfg.seed});
  if (c) encode_in(f, c, x, z, logdet);
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
fg_node fg_flow_updates_node(const fg_flow_updates *u, int i) { return u && i >= 0 && i < u->n ? u->nodes[i] : FG_NONE; }
const char *fg_flow_updates_name(const fg_flow_updates *u, int i) { return u && i >= 0 && i < u->n ? u->names[i] : NULL; }

fg_flow_updates *fg_flow_updates_from_ctx(fg_flow_ctx *c, bool *nomem) {
  int n = fg_flow_ctx_num_inits(c);
  *nomem = false;
  if (n == 0) return NULL;
  fg_flow_updates *u = calloc(1, sizeof *u);
  if (u) u->names = calloc((size_t)n, sizeof *u->names), u->nodes = calloc((size_t)n, sizeof *u->nodes);
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

static fg_status write_param(fg_flow *f, const char *name, const fg_tensor *v, fg_err *e);

fg_status fg_flow_updates_apply(fg_flow *f, const fg_flow_updates *u, const fg_tensor *const *values,
                                fg_err *e) {
  for (int i = 0; i < fg_flow_updates_count(u); i++) {
    fg_status st = write_param(f, u->names[i], values[i], e);
    if (st != FG_OK) return st;
  }
  return FG_OK;
}

fg_status fg_flow_log_prob_updates(fg_flow *f, fg_graph *g, fg_node x, bool training, fg_node *logp,
                                   fg_flow_updates **updates) {
  *logp = FG_POISON;
  if (updates) *updates = NULL;
  fg_flow_ctx *c = make_ctx(f, g, (ctx_mode){.training = training, .seed = f->cfg.seed});
  if (c && log_prob_in(f, c, x, logp) == FG_OK && updates) {
    bool nomem;
    *updates = fg_flow_updates_from_ctx(c, &nomem);
    if (nomem) fg_graph_fail(g, FG_E_NOMEM, "flow: out of memory recording state updates");
  }
  fg_flow_ctx_free(c);
  return fg_graph_status(g);
}

fg_status fg_flow_log_prob(fg_flow *f, fg_graph *g, fg_node x, bool training, fg_node *logp) {
  return fg_flow_log_prob_updates(f, g, x, training, logp, NULL);
}

fg_status fg_flow_base_log_prob(fg_flow *f, fg_graph *g, fg_node z, fg_node *logp) {
  *logp = FG_POISON;
  fg_flow_ctx *c = make_ctx(f, g, (ctx_mode){.seed = f->cfg.seed});
  if (c) *logp = base_log_prob(f, c, z);
  fg_flow_ctx_free(c);
  return fg_graph_status(g);
}

static fg_node base_sample(const fg_flow *f, fg_flow_ctx *c, int64_t n, double temperature) {
  fg_graph *g = fg_flow_graph(c);
  fg_shape zs = with_batch(n, &f->zshape);
  fg_node mean = FG_NONE, logstd = FG_NONE;
  if (f->cfg.base == FG_BASE_LEARNED) prior_params(c, &f->zshape, &mean, &logstd);
  return fg_diag_normal_sample(g, mean, logstd, temperature, fg_flow_next_seed(c), f->cfg.dtype, zs);
}

fg_status fg_flow_sample(fg_flow *f, fg_graph *g, int64_t n, double temperature, uint64_t seed,
                         fg_node *x) {
  *x = FG_POISON;
  if (n < 1) {
    fg_graph_fail(g, FG_E_MISUSE, "flow: sampling needs n >= 1 (got %lld)", (long long)n);
    return FG_E_MISUSE;
  }
  if (temperature == 0) temperature = 1.0;
  fg_flow_ctx *c = make_ctx(f, g, (ctx_mode){.sampling = true, .temperature = temperature, .seed = seed});
  if (c) {
    fg_node z = base_sample(f, c, n, temperature), ld;
    if (fg_graph_status(g) == FG_OK) fg_bijector_inverse(f->b, c, z, x, &ld);
  }
  fg_flow_ctx_free(c);
  return fg_graph_status(g);
}

fg_status fg_flow_sample_steps(fg_flow *f, fg_graph *g, int64_t n, double temperature,
                               uint64_t seed, int cap, fg_node *steps, const char **names,
                               int *n_steps) {
  int kids = fg_bijector_num_children(f->b), need = 1 + (kids > 0 ? kids : 1);
  *n_steps = need;
  if (n < 1 || cap < need) {
    fg_graph_fail(g, FG_E_MISUSE, "flow: sampling steps need n >= 1 and room for %d steps "
                  "(got n = %lld, cap %d)", need, (long long)n, cap);
    return FG_E_MISUSE;
  }
  if (temperature == 0) temperature = 1.0;
  fg_flow_ctx *c = make_ctx(f, g, (ctx_mode){.sampling = true, .temperature = temperature, .seed = seed});
  if (c) { /* as fg_bijector_inverse of the chain: its layers last to first */
    fg_node cur = base_sample(f, c, n, temperature), ld;
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

fg_status fg_flow_reconstruct(fg_flow *f, fg_graph *g, fg_node x, fg_node *x_again) {
  *x_again = FG_POISON;
  fg_flow_ctx *c = make_ctx(f, g, (ctx_mode){.seed = f->cfg.seed});
  fg_node z, ld, ld_inv;
  if (c && encode_in(f, c, x, &z, &ld) == FG_OK) fg_bijector_inverse(f->b, c, z, x_again, &ld_inv);
  fg_flow_ctx_free(c);
  return fg_graph_status(g);
}

fg_status fg_flow_nll_loss(fg_flow *f, fg_graph *g, fg_node x, bool training, fg_node *loss,
                           fg_flow_updates **updates) {
  fg_node logp;
  *loss = FG_POISON;
  if (fg_flow_log_prob_updates(f, g, x, training, &logp, updates) == FG_OK)
    *loss = fg_neg(g, fg_mean(g, logp, FG_ALL_AXES, false));
  return fg_graph_status(g);
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
  free(f);
}

/* Builds log p(x) for a batch of 2 in both modes: every parameter is created (in forward
 * order) and the latent's shape is known. */
static fg_status materialise(fg_flow *f, fg_err *e) {
  fg_graph *g;
  fg_status st = fg_graph_new(&g, e);
  if (st != FG_OK) return fg_err_prefix(e, st, "flow");
  fg_node x = fg_input(g, "x", f->cfg.dtype, with_batch(2, &f->cfg.event)), z, ld, logp;
  fg_flow_encode(f, g, x, false, &z, &ld);
  fg_flow_log_prob(f, g, x, false, &logp);
  fg_flow_log_prob(f, g, x, true, &logp);
  st = fg_graph_status(g);
  if (st != FG_OK) {
    fg_err_set(e, st, "flow: building log p(x) for events %s failed: %s",
               fg_shape_str(&f->cfg.event, (char[128]){0}, 128), fg_graph_errmsg(g));
  } else {
    fg_shape zs = fg_node_shape(g, z);
    f->zshape.ndim = zs.ndim - 1;
    for (int i = 1; i < zs.ndim; i++) f->zshape.d[i - 1] = zs.d[i];
  }
  fg_graph_free(g);
  return st;
}

static fg_status check_config(const fg_flow_config *cfg, fg_err *e) {
  if (cfg->base != FG_BASE_NORMAL && cfg->base != FG_BASE_LEARNED)
    return fg_err_set(e, FG_E_MISUSE, "flow: unknown base distribution %d", (int)cfg->base);
  if (cfg->dtype != FG_F32 && cfg->dtype != FG_F64)
    return fg_err_set(e, FG_E_MISUSE, "flow: dtype must be float32 or float64");
  if (cfg->event.ndim < 1 || cfg->event.ndim >= FG_MAX_DIMS)
    return fg_err_set(e, FG_E_SHAPE, "flow: the event needs 1 to %d axes (got %lld)", FG_MAX_DIMS - 1,
                      (long long)cfg->event.ndim);
  int64_t n;
  if (fg_shape_numel(&cfg->event, &n, NULL) != FG_OK || n < 1)
    return fg_err_set(e, FG_E_SHAPE, "flow: the event %s is empty or too large",
                      fg_shape_str(&cfg->event, (char[128]){0}, 128));
  return FG_OK;
}

fg_status fg_flow_new_config(fg_flow **out, fg_bijector *b, const fg_flow_config *cfg, fg_err *e) {
  *out = NULL;
  fg_status st = b && cfg ? check_config(cfg, e) : fg_err_set(e, FG_E_MISUSE, "flow: needs a bijector and a configuration");
  fg_flow *f = st == FG_OK ? calloc(1, sizeof *f) : NULL;
  if (st == FG_OK && !f) st = fg_err_set(e, FG_E_NOMEM, "flow: out of memory");
  if (st == FG_OK) st = fg_params_new(&f->ps, cfg->seed, e);
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

fg_status fg_flow_new(fg_flow **out, fg_bijector *b, fg_base_kind base, fg_shape event, uint64_t seed,
                      fg_err *e) {
  fg_flow_config cfg = {.base = base, .event = event, .dtype = FG_F32, .seed = seed};
  return fg_flow_new_config(out, b, &cfg, e);
}

/* ---- data-dependent initialisation ---- */

static bool wants_init(const fg_bijector *u) {
  const fg_bijector_type *t = fg_bijector_type_of(u);
  return t && t->data_init && !fg_bijector_is_inverted(u);
}

/* Compiles outs of g, binds "h" and the parameters, runs. */
static fg_status run_program(fg_flow *f, fg_graph *g, int n_out, const fg_node *outs, const fg_tensor *h,
                             fg_program **p, fg_err *e) {
  *p = NULL;
  if (fg_graph_status(g) != FG_OK) return fg_err_set(e, fg_graph_status(g), "%s", fg_graph_errmsg(g));
  fg_status st = fg_program_new(p, g, n_out, outs, e);
  if (st == FG_OK) st = fg_params_bind(f->ps, *p, e);
  if (st == FG_OK) st = fg_program_bind(*p, "h", h, e);
  if (st == FG_OK) st = fg_program_run(*p, e);
  return st;
}

static fg_status write_param(fg_flow *f, const char *name, const fg_tensor *v, fg_err *e) {
  fg_tensor *dst = fg_params_find(f->ps, name);
  if (!dst) return fg_err_set(e, FG_E_NOTFOUND, "data init: no parameter '%s'", name);
  if (fg_tensor_numel(dst) != fg_tensor_numel(v)) {
    char a[96], b[96];
    return fg_err_set(e, FG_E_SHAPE, "data init: parameter '%s' is %s, its initial value %s", name,
                      fg_shape_str(&dst->shape, a, sizeof a), fg_shape_str(&v->shape, b, sizeof b));
  }
  for (int64_t i = 0; i < fg_tensor_numel(v); i++) {
    double x = fg_tensor_get(v, i);
    if (!isfinite(x)) return fg_err_set(e, FG_E_NUMERIC, "data init: parameter '%s' would be %g at element %lld",
                                        name, x, (long long)i);
    fg_tensor_set(dst, i, x);
  }
  return FG_OK;
}

/* A new graph and a training-mode context for one step of the initialisation; on failure
 * neither exists. */
static fg_status init_graph(fg_flow *f, fg_graph **g, fg_flow_ctx **c, fg_err *e) {
  fg_flow_ctx_opts o = {.dtype = f->cfg.dtype, .training = true, .seed = f->cfg.seed};
  fg_status st = fg_flow_ctx_new_graph(c, g, f->ps, &o, e);
  return st == FG_OK ? FG_OK : fg_err_prefix(e, st, "data init");
}

/* Runs unit u's initialisation at its input h. */
static fg_status init_unit(fg_flow *f, fg_bijector *u, const fg_tensor *h, fg_err *e) {
  fg_graph *g;
  fg_flow_ctx *c;
  fg_status st = init_graph(f, &g, &c, e);
  if (st != FG_OK) return st;
  fg_bijector_data_init(u, c, fg_input(g, "h", f->cfg.dtype, h->shape));
  int n = fg_flow_ctx_num_inits(c);
  fg_node *outs = malloc(sizeof *outs * ((size_t)n + 1));
  if (!outs) st = fg_err_set(e, FG_E_NOMEM, "data init: out of memory");
  for (int i = 0; st == FG_OK && i < n; i++) outs[i] = fg_flow_ctx_init_value(c, i);
  fg_program *p = NULL;
  if (st == FG_OK && n > 0) st = run_program(f, g, n, outs, h, &p, e);
  else if (st == FG_OK && fg_graph_status(g) != FG_OK) st = fg_err_set(e, fg_graph_status(g), "%s", fg_graph_errmsg(g));
  for (int i = 0; st == FG_OK && i < n; i++) st = write_param(f, fg_flow_ctx_init_name(c, i), fg_program_output(p, i), e);
  fg_program_free(p);
  free(outs);
  fg_flow_ctx_free(c);
  fg_graph_free(g);
  return st;
}

/* *next = u(h), with u's freshly initialised parameters (factored-out parts dropped). */
static fg_status advance_unit(fg_flow *f, fg_bijector *u, const fg_tensor *h, fg_tensor **next, fg_err *e) {
  *next = NULL;
  fg_graph *g;
  fg_flow_ctx *c;
  fg_status st = init_graph(f, &g, &c, e);
  if (st != FG_OK) return st;
  fg_node y, ld;
  fg_bijector_forward(u, c, fg_input(g, "h", f->cfg.dtype, h->shape), &y, &ld);
  fg_program *p = NULL;
  st = run_program(f, g, 1, &y, h, &p, e);
  if (st == FG_OK) st = fg_tensor_copy(next, fg_program_output(p, 0), f->cfg.dtype, e);
  fg_program_free(p);
  fg_flow_ctx_free(c);
  fg_graph_free(g);
  return st;
}

/* Initialises the layers units[0..n) (fg_bijector_leaves) in turn, each at its input. */
static fg_status init_units(fg_flow *f, fg_bijector **units, int n, fg_tensor *h, fg_err *e) {
  int last = -1;
  for (int i = 0; i < n; i++)
    if (wants_init(units[i])) last = i;
  fg_status st = FG_OK;
  for (int i = 0; i <= last && st == FG_OK; i++) {
    if (wants_init(units[i]) && (st = init_unit(f, units[i], h, e)) != FG_OK) {
      fg_err_prefix(e, st, "data init of layer '%s'", fg_bijector_prefix(units[i]));
      break;
    }
    if (i == last) break;
    fg_tensor *next;
    if ((st = advance_unit(f, units[i], h, &next, e)) != FG_OK) break;
    fg_tensor_free(h);
    h = next;
  }
  fg_tensor_free(h);
  return st;
}

fg_status fg_flow_data_init(fg_flow *f, const fg_tensor *batch, fg_err *e) {
  fg_shape want = with_batch(batch->shape.ndim ? batch->shape.d[0] : 0, &f->cfg.event);
  if (!fg_shape_equal(&batch->shape, &want)) {
    char a[128], b[128];
    return fg_err_set(e, FG_E_SHAPE, "data init: the batch has shape %s; the flow's events are %s",
                      fg_shape_str(&batch->shape, a, sizeof a), fg_shape_str(&f->cfg.event, b, sizeof b));
  }
  fg_bijector **units;
  int n;
  fg_status st = fg_bijector_leaves(&units, &n, f->b, e);
  if (st != FG_OK) return fg_err_prefix(e, st, "data init");
  fg_tensor *h;
  st = fg_tensor_copy(&h, batch, f->cfg.dtype, e);
  if (st == FG_OK) st = init_units(f, units, n, h, e);
  free(units);
  return st;
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
