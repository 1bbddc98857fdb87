/* NICE, RealNVP and Glow as flat chains of registered bijectors (see models.h). */
#include "flows/models.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/vec.h"

/* ---- a chain under construction ---- */

typedef struct layers {
  const char *model;
  const fg_registry *r;
  fg_registry *owned; /* the built-ins, when the caller gave no registry */
  fg_bijector **v;
  int64_t n, cap;
  fg_status st; /* first error; later adds do nothing */
  fg_err *e;
} layers;

static fg_status layers_init(layers *l, const char *model, const fg_registry *r, fg_err *e) {
  memset(l, 0, sizeof *l);
  l->model = model, l->r = r, l->e = e;
  if (r) return FG_OK;
  if ((l->st = fg_registry_new(&l->owned, e)) != FG_OK) return l->st;
  l->r = l->owned;
  return l->st = fg_registry_add_builtins(l->owned, e);
}

static bool layers_push(layers *l, fg_bijector *b) {
  if (!FG_VEC_RESERVE(l->v, l->cap, l->n + 1)) return false;
  l->v[l->n++] = b;
  return true;
}

/* Appends a layer of registered type `type` with spec-style arguments. */
static void add(layers *l, const char *type, const char *args) {
  if (l->st != FG_OK) return;
  const fg_bijector_type *t;
  fg_bijector *b = NULL;
  fg_err local;
  fg_status st = fg_registry_lookup(&t, l->r, type, &local);
  if (st == FG_OK) st = fg_bijector_new_from_text(&b, t, args, &local);
  if (st == FG_OK && !layers_push(l, b)) {
    fg_bijector_free(b);
    st = fg_err_set(&local, FG_E_NOMEM, "out of memory");
  }
  if (st != FG_OK)
    l->st = fg_err_set(l->e, st, "%s: layer %lld (%s): %s", l->model, (long long)l->n, type,
                       local.msg);
}

/* A coupling layer's arguments; blocks < 0 and scale NULL leave those to the type's defaults. */
typedef struct coupling_args {
  const char *mask;
  int64_t parity;
  const char *net;
  int64_t hidden, blocks;
  const char *scale;
} coupling_args;

static void add_coupling(layers *l, const char *type, coupling_args a) {
  char text[256], blocks[48] = "", scale[48] = "";
  if (a.blocks >= 0) snprintf(blocks, sizeof blocks, ", blocks=%lld", (long long)a.blocks);
  if (a.scale) snprintf(scale, sizeof scale, ", scale=%s", a.scale);
  snprintf(text, sizeof text, "mask=%s, parity=%lld, net=%s, hidden=%lld%s%s", a.mask,
           (long long)a.parity, a.net, (long long)a.hidden, blocks, scale);
  add(l, type, text);
}

/* The chain of everything added, or the first error (every layer freed). */
static fg_status layers_finish(layers *l, fg_bijector **out) {
  *out = NULL;
  fg_status st = l->st;
  if (st == FG_OK) st = fg_bijector_chain(out, (int)l->n, l->v, l->e);
  else
    for (int i = 0; i < l->n; i++) fg_bijector_free(l->v[i]);
  free(l->v);
  fg_registry_free(l->owned);
  return st;
}

/* ---- argument checks ---- */

static fg_status need_positive(const char *model, const char *what, int64_t v, fg_err *e) {
  if (v >= 1) return FG_OK;
  return fg_err_set(e, FG_E_MISUSE, "%s: %s must be >= 1 (got %lld)", model, what, (long long)v);
}

/* An image [C, H, W] whose sides halve `halvings` times. */
static fg_status need_image(const char *model, fg_shape event, int64_t halvings, fg_err *e) {
  char buf[128];
  if (event.ndim != 3)
    return fg_err_set(e, FG_E_SHAPE, "%s: needs images [C, H, W], got events %s", model,
                      fg_shape_str(&event, buf, sizeof buf));
  int64_t div = (int64_t)1 << (halvings < 30 ? halvings : 30);
  if (event.d[1] % div || event.d[2] % div || event.d[1] < div || event.d[2] < div)
    return fg_err_set(e, FG_E_SHAPE, "%s: the image side must be divisible by %lld for its %lld "
                      "squeezes, got events %s", model, (long long)div, (long long)halvings,
                      fg_shape_str(&event, buf, sizeof buf));
  return FG_OK;
}

static fg_status check_mlp_config(const char *model, fg_shape event, const fg_mlp_flow_config *c,
                                  fg_err *e) {
  fg_status st = need_positive(model, "couplings", c->couplings, e);
  if (st == FG_OK) st = need_positive(model, "hidden", c->hidden, e);
  if (st == FG_OK && c->blocks < 0)
    st = fg_err_set(e, FG_E_MISUSE, "%s: blocks must be >= 0 (got %lld)", model,
                    (long long)c->blocks);
  if (st == FG_OK && event.ndim != 1 && event.ndim != 3) {
    char buf[128];
    st = fg_err_set(e, FG_E_SHAPE, "%s: needs vectors [D] or images [C, H, W], got events %s",
                    model, fg_shape_str(&event, buf, sizeof buf));
  }
  return st;
}

/* ---- defaults ---- */

fg_mlp_flow_config fg_nice_defaults(void) {
  return (fg_mlp_flow_config){.couplings = 4, .hidden = 1000, .blocks = 5, .mask = NULL};
}

fg_mlp_flow_config fg_realnvp_vector_defaults(void) {
  return (fg_mlp_flow_config){.couplings = 8, .hidden = 256, .blocks = 2, .mask = "half"};
}

fg_realnvp_config fg_realnvp_defaults(void) {
  return (fg_realnvp_config){.scales = 2, .hidden = 64, .blocks = 4, .logit = true, .alpha = 0.05};
}

fg_glow_config fg_glow_defaults(void) {
  return (fg_glow_config){.levels = 2, .steps = 8, .hidden = 128, .lu = true, .additive = false,
                          .learn_top = true, .center = true};
}

/* ---- NICE and RealNVP for vectors ---- */

static fg_status mlp_stack(fg_bijector **out, const char *model, const char *coupling,
                           const fg_registry *r, fg_shape event, const fg_mlp_flow_config *cfg,
                           const char *mask, bool scale, fg_err *e) {
  *out = NULL;
  fg_status st = check_mlp_config(model, event, cfg, e);
  if (st != FG_OK) return st;
  layers l;
  layers_init(&l, model, r, e);
  const char *bound = strcmp(coupling, "affine_coupling") == 0 ? "exp_tanh" : NULL;
  for (int64_t i = 0; i < cfg->couplings; i++)
    add_coupling(&l, coupling,
                 (coupling_args){mask, i % 2, "mlp", cfg->hidden, cfg->blocks, bound});
  if (scale) add(&l, "scale", "");
  return layers_finish(&l, out);
}

fg_status fg_nice_bijector(fg_bijector **out, const fg_registry *r, fg_shape event,
                           const fg_mlp_flow_config *cfg, fg_err *e) {
  const char *mask = cfg->mask ? cfg->mask : event.ndim == 1 ? "alternate" : "checkerboard";
  return mlp_stack(out, "nice", "additive_coupling", r, event, cfg, mask, true, e);
}

fg_status fg_realnvp_vector_bijector(fg_bijector **out, const fg_registry *r, fg_shape event,
                                     const fg_mlp_flow_config *cfg, fg_err *e) {
  const char *mask = cfg->mask ? cfg->mask : "half";
  return mlp_stack(out, "realnvp", "affine_coupling", r, event, cfg, mask, false, e);
}

/* ---- RealNVP for images ---- */

static void realnvp_couplings(layers *l, const fg_realnvp_config *cfg, const char *mask, int count,
                              int64_t hidden) {
  for (int i = 0; i < count; i++)
    add_coupling(l, "affine_coupling",
                 (coupling_args){mask, i % 2, "resnet", hidden, cfg->blocks, "exp_tanh"});
}

fg_status fg_realnvp_bijector(fg_bijector **out, const fg_registry *r, fg_shape event,
                              const fg_realnvp_config *cfg, fg_err *e) {
  *out = NULL;
  const char *model = "realnvp";
  fg_status st = need_positive(model, "scales", cfg->scales, e);
  if (st == FG_OK) st = need_positive(model, "hidden", cfg->hidden, e);
  if (st == FG_OK) st = need_image(model, event, cfg->scales - 1, e);
  if (st == FG_OK && cfg->blocks < 0)
    st = fg_err_set(e, FG_E_MISUSE, "%s: blocks must be >= 0 (got %lld)", model,
                    (long long)cfg->blocks);
  if (st != FG_OK) return st;
  layers l;
  layers_init(&l, model, r, e);
  if (cfg->logit) {
    char alpha[48];
    snprintf(alpha, sizeof alpha, "alpha=%.17g", cfg->alpha);
    add(&l, "logit", alpha);
  }
  for (int64_t s = 0; s + 1 < cfg->scales; s++) {
    realnvp_couplings(&l, cfg, "checkerboard", 3, cfg->hidden);
    add(&l, "squeeze", "");
    realnvp_couplings(&l, cfg, "channel", 3, 2 * cfg->hidden);
    add(&l, "split", "");
  }
  realnvp_couplings(&l, cfg, "checkerboard", 4, cfg->hidden);
  return layers_finish(&l, out);
}

/* ---- Glow ---- */

static void glow_step(layers *l, const fg_glow_config *cfg) {
  add(l, "actnorm", "");
  add(l, cfg->lu ? "conv1x1_lu" : "conv1x1", "");
  const char *type = cfg->additive ? "additive_coupling" : "affine_coupling";
  const char *scale = cfg->additive ? NULL : "sigmoid";
  add_coupling(l, type, (coupling_args){"channel", 0, "glow", cfg->hidden, -1, scale});
}

fg_status fg_glow_bijector(fg_bijector **out, const fg_registry *r, fg_shape event,
                           const fg_glow_config *cfg, fg_err *e) {
  *out = NULL;
  const char *model = "glow";
  fg_status st = need_positive(model, "levels", cfg->levels, e);
  if (st == FG_OK) st = need_positive(model, "steps", cfg->steps, e);
  if (st == FG_OK) st = need_positive(model, "hidden", cfg->hidden, e);
  if (st == FG_OK) st = need_image(model, event, cfg->levels, e);
  if (st != FG_OK) return st;
  layers l;
  layers_init(&l, model, r, e);
  if (cfg->center) add(&l, "affine", "scale=1, shift=-0.5");
  for (int64_t lv = 0; lv < cfg->levels; lv++) {
    add(&l, "squeeze", "");
    for (int64_t k = 0; k < cfg->steps; k++) glow_step(&l, cfg);
    if (lv + 1 < cfg->levels) add(&l, "split", "");
  }
  return layers_finish(&l, out);
}

/* ---- flows ---- */

static fg_status make_flow(fg_flow **out, fg_status built, fg_bijector *b, fg_base_kind base,
                           const fg_model_opts *m, fg_err *e) {
  *out = NULL;
  if (built != FG_OK) return built;
  fg_flow_config fc = {.base = base, .event = m->event, .dtype = m->dtype, .seed = m->seed};
  return fg_flow_new_config(out, b, &fc, e);
}

fg_status fg_nice_new(fg_flow **out, const fg_registry *r, const fg_model_opts *m,
                      const fg_mlp_flow_config *cfg, fg_err *e) {
  fg_bijector *b;
  fg_status st = fg_nice_bijector(&b, r, m->event, cfg, e);
  return make_flow(out, st, b, FG_BASE_NORMAL, m, e);
}

fg_status fg_realnvp_vector_new(fg_flow **out, const fg_registry *r, const fg_model_opts *m,
                                const fg_mlp_flow_config *cfg, fg_err *e) {
  fg_bijector *b;
  fg_status st = fg_realnvp_vector_bijector(&b, r, m->event, cfg, e);
  return make_flow(out, st, b, FG_BASE_NORMAL, m, e);
}

fg_status fg_realnvp_new(fg_flow **out, const fg_registry *r, const fg_model_opts *m,
                         const fg_realnvp_config *cfg, fg_err *e) {
  fg_bijector *b;
  fg_status st = fg_realnvp_bijector(&b, r, m->event, cfg, e);
  return make_flow(out, st, b, FG_BASE_NORMAL, m, e);
}

fg_status fg_glow_new(fg_flow **out, const fg_registry *r, const fg_model_opts *m,
                      const fg_glow_config *cfg, fg_err *e) {
  fg_bijector *b;
  fg_status st = fg_glow_bijector(&b, r, m->event, cfg, e);
  return make_flow(out, st, b, cfg->learn_top ? FG_BASE_LEARNED : FG_BASE_NORMAL, m, e);
}
