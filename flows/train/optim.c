/* Optimisers (see optim.h).  Updates run element by element in double over contiguous
 * parameter and state tensors; gradients of any layout are read through a contiguous copy. */
#include "flows/train/optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SLOTS 2

typedef struct param_state {
  fg_tensor *p;               /* borrowed */
  fg_tensor *slot[MAX_SLOTS]; /* owned */
  double weight_decay;
} param_state;

struct fg_optim {
  fg_optim_config cfg;
  int n;
  param_state *ps;
  int64_t step;
};

fg_optim_config fg_optim_defaults(fg_optim_kind kind) {
  fg_optim_config c = {.kind = kind, .lr = 1e-3, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8};
  if (kind == FG_OPTIM_SGD) c.lr = 1e-2;
  if (kind == FG_OPTIM_ADAMAX) c.lr = 2e-3;
  return c;
}

static const char *const kind_names[] = {"sgd", "adam", "adamax"};

const char *fg_optim_kind_name(fg_optim_kind kind) {
  return (unsigned)kind < 3 ? kind_names[kind] : "unknown";
}

fg_status fg_optim_kind_parse(const char *name, fg_optim_kind *out, fg_err *e) {
  for (int k = 0; k < 3; k++)
    if (name && strcmp(name, kind_names[k]) == 0) {
      *out = (fg_optim_kind)k;
      return FG_OK;
    }
  return fg_err_set(e, FG_E_NOTFOUND, "unknown optimiser '%s' (accepted: sgd, adam, adamax)",
                    name ? name : "(null)");
}

static const char *const schedule_names[] = {"constant", "cosine", "step"};

const char *fg_lr_schedule_name(fg_lr_schedule s) {
  return (unsigned)s < 3 ? schedule_names[s] : "unknown";
}

fg_status fg_lr_schedule_parse(const char *name, fg_lr_schedule *out, fg_err *e) {
  for (int k = 0; k < 3; k++)
    if (name && strcmp(name, schedule_names[k]) == 0) {
      *out = (fg_lr_schedule)k;
      return FG_OK;
    }
  return fg_err_set(e, FG_E_NOTFOUND, "unknown learning-rate schedule '%s' (accepted: constant, "
                    "cosine, step)", name ? name : "(null)");
}

static int slots_of(const fg_optim_config *c) {
  if (c->kind == FG_OPTIM_SGD) return c->momentum != 0 ? 1 : 0;
  return 2;
}

static fg_status check_schedule(const fg_optim_config *c, fg_err *e) {
  if ((unsigned)c->schedule > FG_LR_STEP)
    return fg_err_set(e, FG_E_MISUSE, "optimiser: unknown schedule %d", (int)c->schedule);
  if (c->schedule == FG_LR_COSINE && c->decay_steps < 1)
    return fg_err_set(e, FG_E_MISUSE, "optimiser: the cosine schedule needs decay_steps >= 1 (got "
                      "%lld): the number of steps the run will take", (long long)c->decay_steps);
  if (c->schedule == FG_LR_COSINE && !(c->lr_min >= 0 && c->lr_min <= c->lr))
    return fg_err_set(e, FG_E_MISUSE, "optimiser: lr_min must be in [0, lr] (got %g)", c->lr_min);
  if (c->schedule == FG_LR_STEP && (c->step_every < 1 || !(c->gamma > 0 && c->gamma <= 1)))
    return fg_err_set(e, FG_E_MISUSE, "optimiser: the step schedule needs step_every >= 1 (got "
                      "%lld) and gamma in (0, 1] (got %g)", (long long)c->step_every, c->gamma);
  return FG_OK;
}

static fg_status check_config(const fg_optim_config *c, fg_err *e) {
  if ((unsigned)c->kind > FG_OPTIM_ADAMAX)
    return fg_err_set(e, FG_E_MISUSE, "optimiser: unknown kind %d", (int)c->kind);
  if (!(c->lr >= 0) || !isfinite(c->lr))
    return fg_err_set(e, FG_E_MISUSE, "optimiser: lr must be finite and >= 0 (got %g)", c->lr);
  if (!(c->momentum >= 0 && c->momentum < 1))
    return fg_err_set(e, FG_E_MISUSE, "optimiser: momentum must be in [0, 1) (got %g)",
                      c->momentum);
  if (c->kind != FG_OPTIM_SGD) {
    if (!(c->beta1 >= 0 && c->beta1 < 1))
      return fg_err_set(e, FG_E_MISUSE, "optimiser: beta1 must be in [0, 1) (got %g)", c->beta1);
    if (!(c->beta2 >= 0 && c->beta2 < 1))
      return fg_err_set(e, FG_E_MISUSE, "optimiser: beta2 must be in [0, 1) (got %g)", c->beta2);
    if (!(c->eps > 0))
      return fg_err_set(e, FG_E_MISUSE, "optimiser: eps must be > 0 (got %g)", c->eps);
  }
  if (!(c->weight_decay >= 0))
    return fg_err_set(e, FG_E_MISUSE, "optimiser: weight_decay must be >= 0 (got %g)",
                      c->weight_decay);
  if (!(c->clip_norm >= 0))
    return fg_err_set(e, FG_E_MISUSE, "optimiser: clip_norm must be >= 0 (got %g)", c->clip_norm);
  if (c->warmup_steps < 0)
    return fg_err_set(e, FG_E_MISUSE, "optimiser: warmup_steps must be >= 0 (got %lld)",
                      (long long)c->warmup_steps);
  return check_schedule(c, e);
}

static fg_status check_param(int i, const fg_tensor *p, fg_err *e) {
  if (!p) return fg_err_set(e, FG_E_MISUSE, "optimiser: parameter %d is NULL", i);
  if (!fg_tensor_is_contiguous(p))
    return fg_err_set(e, FG_E_MISUSE,
                      "optimiser: parameter %d is not contiguous (updates are in place)", i);
  return FG_OK;
}

void fg_optim_free(fg_optim *o) {
  if (!o) return;
  for (int i = 0; i < o->n; i++)
    for (int s = 0; s < MAX_SLOTS; s++) fg_tensor_free(o->ps[i].slot[s]);
  free(o->ps);
  free(o);
}

fg_status fg_optim_new(fg_optim **out, const fg_optim_config *cfg, int n, fg_tensor *const *params,
                       fg_err *e) {
  *out = NULL;
  fg_status st =
      cfg ? check_config(cfg, e) : fg_err_set(e, FG_E_MISUSE, "optimiser: no configuration");
  if (st != FG_OK) return st;
  if (n < 0) return fg_err_set(e, FG_E_MISUSE, "optimiser: negative parameter count %d", n);
  fg_optim *o = calloc(1, sizeof *o);
  if (!o || !(o->ps = calloc((size_t)n + 1, sizeof *o->ps))) {
    free(o);
    return fg_err_set(e, FG_E_NOMEM, "optimiser: out of memory");
  }
  o->cfg = *cfg;
  for (int i = 0; i < n && st == FG_OK; i++) {
    if ((st = check_param(i, params[i], e)) != FG_OK) break;
    o->n = i + 1;
    o->ps[i].p = params[i];
    o->ps[i].weight_decay = cfg->weight_decay;
    for (int s = 0; s < slots_of(cfg) && st == FG_OK; s++)
      st = fg_tensor_new(&o->ps[i].slot[s], params[i]->dtype, &params[i]->shape, e);
  }
  if (st != FG_OK) {
    fg_optim_free(o);
    return st;
  }
  *out = o;
  return FG_OK;
}

fg_status fg_optim_new_for_params(fg_optim **out, const fg_optim_config *cfg, const fg_params *ps,
                                  fg_err *e) {
  int n = fg_params_count(ps);
  fg_tensor **ts = malloc(sizeof *ts * ((size_t)n + 1));
  if (!ts) return fg_err_set(e, FG_E_NOMEM, "optimiser: out of memory");
  for (int i = 0; i < n; i++) ts[i] = fg_params_tensor(ps, i);
  fg_status st = fg_optim_new(out, cfg, n, ts, e);
  free(ts);
  return st;
}

/* ---- element access in double, whatever the dtype ---- */

static inline double load(const void *base, fg_dtype t, int64_t i) {
  return t == FG_F32 ? (double)((const float *)base)[i] : ((const double *)base)[i];
}

static inline void store(void *base, fg_dtype t, int64_t i, double v) {
  if (t == FG_F32) ((float *)base)[i] = (float)v;
  else ((double *)base)[i] = v;
}

double fg_grad_global_norm(int n, const fg_tensor *const *grads) {
  double sum = 0;
  for (int i = 0; i < n; i++) {
    const fg_tensor *g = grads[i];
    int64_t count = fg_tensor_numel(g);
    if (!fg_tensor_is_contiguous(g)) { /* asked once per tensor, not per element */
      for (int64_t j = 0; j < count; j++) sum += fg_tensor_get(g, j) * fg_tensor_get(g, j);
      continue;
    }
    const void *data = fg_tensor_data(g);
    for (int64_t j = 0; j < count; j++) sum += load(data, g->dtype, j) * load(data, g->dtype, j);
  }
  return sqrt(sum);
}

static double schedule_factor(const fg_optim_config *cfg, int64_t t) {
  if (cfg->schedule == FG_LR_STEP) return pow(cfg->gamma, (double)(t / cfg->step_every));
  if (cfg->schedule != FG_LR_COSINE || cfg->lr <= 0) return 1.0;
  double span = (double)(cfg->decay_steps - cfg->warmup_steps);
  double p = span > 0 ? (double)(t - cfg->warmup_steps) / span : 1.0;
  p = p < 0 ? 0 : p > 1 ? 1 : p;
  double lr = cfg->lr_min + (cfg->lr - cfg->lr_min) * 0.5 * (1 + cos(M_PI * p));
  return lr / cfg->lr;
}

double fg_optim_lr_at(const fg_optim_config *cfg, int64_t t) {
  double lr = cfg->lr * schedule_factor(cfg, t);
  if (cfg->warmup_steps <= 0 || t >= cfg->warmup_steps) return lr;
  return lr * (double)(t < 1 ? 1 : t) / (double)cfg->warmup_steps;
}

/* ---- the update of one parameter ---- */

typedef struct step_consts {
  double lr, scale;    /* learning rate of this step, clipping factor */
  double bc1, bc2;     /* bias corrections 1 - β^t */
} step_consts;

static void update_param(const fg_optim_config *c, param_state *s, const fg_tensor *g,
                         const step_consts *k) {
  fg_dtype pt = s->p->dtype, gt = g->dtype;
  void *p = fg_tensor_data(s->p);
  const void *gd = fg_tensor_data(g);
  void *m = s->slot[0] ? fg_tensor_data(s->slot[0]) : NULL;
  void *v = s->slot[1] ? fg_tensor_data(s->slot[1]) : NULL;
  double wd = s->weight_decay;
  int64_t n = fg_tensor_numel(s->p);
  for (int64_t i = 0; i < n; i++) {
    double pi = load(p, pt, i), gi = load(gd, gt, i) * k->scale, delta;
    if (c->decoupled_weight_decay) pi -= k->lr * wd * pi;
    else gi += wd * pi;
    if (c->kind == FG_OPTIM_SGD) {
      double buf = gi;
      if (m) store(m, pt, i, buf = c->momentum * load(m, pt, i) + gi);
      delta = k->lr * buf;
    } else if (c->kind == FG_OPTIM_ADAM) {
      double mi = c->beta1 * load(m, pt, i) + (1 - c->beta1) * gi;
      double vi = c->beta2 * load(v, pt, i) + (1 - c->beta2) * gi * gi;
      store(m, pt, i, mi), store(v, pt, i, vi);
      delta = k->lr * (mi / k->bc1) / (sqrt(vi / k->bc2) + c->eps);
    } else {
      double mi = c->beta1 * load(m, pt, i) + (1 - c->beta1) * gi;
      double ui = fmax(c->beta2 * load(v, pt, i), fabs(gi) + c->eps);
      store(m, pt, i, mi), store(v, pt, i, ui);
      delta = k->lr / k->bc1 * mi / ui;
    }
    store(p, pt, i, pi - delta);
  }
}

/* Gradients that are not contiguous are copied once, so the update loop reads flat arrays. */
static fg_status contiguous_grads(const fg_optim *o, const fg_tensor *const *grads,
                                  const fg_tensor **flat, fg_tensor **owned, fg_err *e) {
  for (int i = 0; i < o->n; i++) {
    const fg_tensor *g = grads[i];
    if (!g) return fg_err_set(e, FG_E_MISUSE, "optimiser: gradient %d is NULL", i);
    if (!fg_shape_equal(&g->shape, &o->ps[i].p->shape)) {
      char a[96], b[96];
      return fg_err_set(e, FG_E_SHAPE, "optimiser: gradient %d has shape %s, its parameter %s", i,
                        fg_shape_str(&g->shape, a, sizeof a),
                        fg_shape_str(&o->ps[i].p->shape, b, sizeof b));
    }
    flat[i] = g;
    if (!fg_tensor_is_contiguous(g)) {
      fg_status st = fg_tensor_copy(&owned[i], g, g->dtype, e);
      if (st != FG_OK) return st;
      flat[i] = owned[i];
    }
  }
  return FG_OK;
}

static fg_status apply(fg_optim *o, const fg_tensor *const *grads, fg_optim_step_info *info,
                       fg_err *e) {
  double norm = fg_grad_global_norm(o->n, grads);
  info->grad_norm = norm;
  info->step = o->step;
  if (!isfinite(norm))
    return fg_err_set(e, FG_E_NUMERIC, "optimiser: gradient norm is %g at step %lld; step skipped",
                      norm, (long long)(o->step + 1));
  const fg_optim_config *c = &o->cfg;
  int64_t t = o->step + 1;
  step_consts k = {.lr = fg_optim_lr_at(c, t), .scale = 1.0};
  if (c->clip_norm > 0 && norm > c->clip_norm) k.scale = c->clip_norm / norm;
  k.bc1 = 1 - pow(c->beta1, (double)t);
  k.bc2 = 1 - pow(c->beta2, (double)t);
  for (int i = 0; i < o->n; i++) update_param(c, &o->ps[i], grads[i], &k);
  o->step = t;
  info->scale = k.scale, info->lr = k.lr, info->step = t;
  return FG_OK;
}

fg_status fg_optim_step(fg_optim *o, const fg_tensor *const *grads, fg_optim_step_info *info,
                        fg_err *e) {
  fg_optim_step_info local;
  if (!info) info = &local;
  memset(info, 0, sizeof *info);
  const fg_tensor **flat = calloc((size_t)o->n + 1, sizeof *flat);
  fg_tensor **owned = calloc((size_t)o->n + 1, sizeof *owned);
  fg_status st = flat && owned ? FG_OK : fg_err_set(e, FG_E_NOMEM, "optimiser: out of memory");
  if (st == FG_OK) st = contiguous_grads(o, grads, flat, owned, e);
  if (st == FG_OK) st = apply(o, flat, info, e);
  for (int i = 0; owned && i < o->n; i++) fg_tensor_free(owned[i]);
  free(owned);
  free(flat);
  return st;
}

const fg_optim_config *fg_optim_get_config(const fg_optim *o) { return &o->cfg; }
void fg_optim_set_lr(fg_optim *o, double lr) { o->cfg.lr = lr; }

fg_status fg_optim_set_weight_decay(fg_optim *o, int i, double weight_decay, fg_err *e) {
  if (i < 0 || i >= o->n)
    return fg_err_set(e, FG_E_MISUSE, "optimiser: no parameter %d (has %d)", i, o->n);
  if (!(weight_decay >= 0))
    return fg_err_set(e, FG_E_MISUSE, "optimiser: weight_decay must be >= 0 (got %g)",
                      weight_decay);
  o->ps[i].weight_decay = weight_decay;
  return FG_OK;
}

int fg_optim_num_params(const fg_optim *o) { return o->n; }
int64_t fg_optim_get_step(const fg_optim *o) { return o->step; }
void fg_optim_set_step(fg_optim *o, int64_t step) { o->step = step < 0 ? 0 : step; }
int fg_optim_num_slots(const fg_optim *o) { return slots_of(&o->cfg); }

const char *fg_optim_slot_name(const fg_optim *o, int slot) {
  if (slot < 0 || slot >= slots_of(&o->cfg)) return NULL;
  if (o->cfg.kind == FG_OPTIM_SGD) return "momentum_buffer";
  if (slot == 0) return "exp_avg";
  return o->cfg.kind == FG_OPTIM_ADAM ? "exp_avg_sq" : "exp_inf";
}

fg_tensor *fg_optim_slot(const fg_optim *o, int i, int slot) {
  if (i < 0 || i >= o->n || slot < 0 || slot >= slots_of(&o->cfg)) return NULL;
  return o->ps[i].slot[slot];
}
