/* The context bijectors build their graphs in: the graph, the parameter store, the name prefix
 * of the bijector being built, the latents of factor-out layers, data-init requests. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "core/vec.h"
#include "flows/bijector.h"
#include "flows/bijector_internal.h"
#include "ops/ops.h"

typedef struct named_node {
  char *name;
  fg_node node;
} named_node;

typedef struct node_list {
  named_node *items;
  int64_t n, cap;
} node_list;

struct fg_flow_ctx {
  fg_graph *g;
  fg_params *ps;
  fg_flow_ctx_opts o;
  char *prefix;
  node_list latents, inits, param_nodes, overrides;
  uint64_t seed_counter;
  fg_logdet_sources logdets;
  fg_node context; /* FG_NONE: unconditional */
};

static bool list_push(node_list *l, const char *name, fg_node n) {
  if (!FG_VEC_RESERVE(l->items, l->cap, l->n + 1)) return false;
  char *copy = name ? strdup(name) : NULL;
  if (name && !copy) return false;
  l->items[l->n++] = (named_node){copy, n};
  return true;
}

static void list_free(node_list *l) {
  for (int i = 0; i < l->n; i++) free(l->items[i].name);
  free(l->items);
}

fg_status fg_flow_ctx_new(fg_flow_ctx **out, fg_graph *g, fg_params *ps, const fg_flow_ctx_opts *o,
                          fg_err *e) {
  *out = NULL;
  if (!g || !ps)
    return fg_err_set(e, FG_E_MISUSE, "flow context: needs a graph and a parameter store");
  fg_flow_ctx *c = calloc(1, sizeof *c);
  if (!c || !(c->prefix = strdup(""))) {
    free(c);
    return fg_err_set(e, FG_E_NOMEM, "flow context: out of memory");
  }
  c->g = g, c->ps = ps, c->context = FG_NONE;
  if (o) c->o = *o;
  if (c->o.temperature == 0) c->o.temperature = 1.0;
  *out = c;
  return FG_OK;
}

fg_status fg_flow_ctx_new_graph(fg_flow_ctx **out, fg_graph **g, fg_params *ps,
                                const fg_flow_ctx_opts *o, fg_err *e) {
  *out = NULL;
  fg_status st = fg_graph_new(g, e);
  if (st == FG_OK && (st = fg_flow_ctx_new(out, *g, ps, o, e)) != FG_OK) {
    fg_graph_free(*g);
    *g = NULL;
  }
  return st;
}

void fg_flow_ctx_free(fg_flow_ctx *c) {
  if (!c) return;
  free(c->prefix);
  list_free(&c->latents), list_free(&c->inits), list_free(&c->param_nodes),
      list_free(&c->overrides);
  free(c);
}

fg_graph *fg_flow_graph(fg_flow_ctx *c) { return c->g; }
fg_logdet_sources fg_flow_ctx_logdet_sources(const fg_flow_ctx *c) { return c->logdets; }

void fg__flow_ctx_count_logdet(fg_flow_ctx *c, bool declared, fg_jacobian_kind route) {
  if (declared) c->logdets.declared++;
  else if (route == FG_JACOBIAN_DIAGONAL) c->logdets.diagonal++;
  else if (route == FG_JACOBIAN_TRIANGULAR) c->logdets.triangular++;
  else c->logdets.dense++;
}
bool fg_flow_training(const fg_flow_ctx *c) { return c->o.training; }
const fg_reducer *fg_flow_replicas(const fg_flow_ctx *c) {
  return c->o.training ? c->o.replicas : NULL;
}
bool fg_flow_sampling(const fg_flow_ctx *c) { return c->o.sampling; }
double fg_flow_temperature(const fg_flow_ctx *c) { return c->o.temperature; }
uint64_t fg_flow_next_seed(fg_flow_ctx *c) { return fg_rng_bits(c->o.seed, c->seed_counter++); }
const char *fg_flow_ctx_prefix(const fg_flow_ctx *c) { return c->prefix; }
fg_node fg_flow_context(const fg_flow_ctx *c) { return c->context; }
void fg_flow_ctx_set_context(fg_flow_ctx *c, fg_node context) { c->context = context; }

fg_status fg_flow_ctx_set_prefix(fg_flow_ctx *c, const char *prefix) {
  char *copy = strdup(prefix ? prefix : "");
  if (!copy) return fg_graph_fail_status(c->g, FG_E_NOMEM, "out of memory for a prefix");
  free(c->prefix);
  c->prefix = copy;
  return FG_OK;
}

static char *full_name(const fg_flow_ctx *c, const char *name) {
  size_t n = strlen(c->prefix) + strlen(name) + 1;
  char *s = malloc(n);
  if (s) snprintf(s, n, "%s%s", c->prefix, name);
  return s;
}

/* In gradcheck mode a parameter is a graph input, so the check can perturb it. */
static fg_node param_node(fg_flow_ctx *c, const char *full, fg_shape shape) {
  for (int i = 0; i < c->overrides.n; i++)
    if (strcmp(c->overrides.items[i].name, full) == 0) return c->overrides.items[i].node;
  fg_node n = fg_graph_find(c->g, full);
  if (n != FG_NONE) return n;
  if (!c->o.params_as_inputs) return fg_param(c->g, full, c->o.dtype, shape);
  n = fg_input(c->g, full, c->o.dtype, shape);
  if (n >= 0 && !list_push(&c->param_nodes, full, n))
    return fg_graph_fail(c->g, FG_E_NOMEM, "out of memory recording parameter '%s'", full);
  return n;
}

fg_node fg_flow_param(fg_flow_ctx *c, const char *name, fg_shape shape, fg_init init) {
  if (fg_graph_status(c->g) != FG_OK) return FG_POISON;
  char *full = full_name(c, name);
  if (!full) return fg_graph_fail(c->g, FG_E_NOMEM, "out of memory naming parameter '%s'", name);
  fg_tensor *value;
  fg_err e;
  fg_node n;
  if (fg_params_get_or_create(&value, c->ps, full, c->o.dtype, shape, init, &e) != FG_OK)
    n = fg_graph_fail(c->g, e.status, "%s", e.msg);
  else
    n = param_node(c, full, shape);
  free(full);
  return n;
}

/* Finds the n buffers in the store: true when all are there (checked against their shapes),
 * false when none is; a mix, or a shape that differs, fails the graph. */
static bool stored_buffers(fg_flow_ctx *c, int n, const fg_buffer_decl *d, char **full,
                           const fg_tensor **values) {
  int found = 0;
  for (int i = 0; i < n && fg_graph_status(c->g) == FG_OK; i++) {
    values[i] = fg_params_find_buffer(c->ps, full[i]);
    if (values[i] && !fg_shape_equal(&values[i]->shape, &d[i].shape)) {
      char a[128], b[128];
      fg_graph_fail(c->g, FG_E_SHAPE, "buffer '%s' is %s; the layer needs %s", full[i],
                    fg_shape_str(&values[i]->shape, a, sizeof a),
                    fg_shape_str(&d[i].shape, b, sizeof b));
    }
    found += values[i] != NULL;
  }
  if (found > 0 && found < n && fg_graph_status(c->g) == FG_OK)
    fg_graph_fail(c->g, FG_E_INTERNAL, "%s: only some of the layer's buffers exist", c->prefix);
  return found == n;
}

/* Makes the n buffers, fills and checks them, then adds them to the store. */
static void new_buffers(fg_flow_ctx *c, int n, const fg_buffer_decl *d, char **full,
                        fg_buffer_fill fill, void *ud, const fg_tensor **values) {
  fg_tensor **made = calloc((size_t)n + 1, sizeof *made);
  fg_err e;
  fg_status st = made ? FG_OK : fg_err_set(&e, FG_E_NOMEM, "out of memory for buffers");
  for (int i = 0; st == FG_OK && i < n; i++) st = fg_tensor_new(&made[i], FG_F64, &d[i].shape, &e);
  if (st == FG_OK) st = fill(ud, made, &e);
  for (int i = 0; st == FG_OK && i < n; i++)
    if (d[i].check && (st = d[i].check(made[i], &e)) != FG_OK)
      fg_err_prefix(&e, st, "buffer '%s' as made", full[i]);
  for (int i = 0; st == FG_OK && i < n; i++) {
    fg_tensor *v = made[i];
    made[i] = NULL; /* the store's now, also on failure */
    if ((st = fg_params_add_buffer(c->ps, full[i], v, d[i].check, &e)) == FG_OK) values[i] = v;
  }
  for (int i = 0; made && i < n; i++) fg_tensor_free(made[i]);
  free(made);
  if (st != FG_OK) fg_graph_fail(c->g, st, "%s: %s", c->prefix, e.msg);
}

fg_status fg_flow_buffers(fg_flow_ctx *c, int n, const fg_buffer_decl *decls, fg_buffer_fill fill,
                          void *ud, const fg_tensor **values) {
  if (fg_graph_status(c->g) != FG_OK) return fg_graph_status(c->g);
  char **full = calloc((size_t)n + 1, sizeof *full);
  bool named = full != NULL;
  for (int i = 0; named && i < n; i++) named = (full[i] = full_name(c, decls[i].name)) != NULL;
  if (!named)
    fg_graph_fail(c->g, FG_E_NOMEM, "out of memory naming buffers");
  else if (!stored_buffers(c, n, decls, full, values) && fg_graph_status(c->g) == FG_OK)
    new_buffers(c, n, decls, full, fill, ud, values);
  for (int i = 0; full && i < n; i++) free(full[i]);
  free(full);
  return fg_graph_status(c->g);
}

fg_node fg_flow_context_linear(fg_flow_ctx *c, const char *name, fg_shape shape, fg_node like) {
  fg_graph *g = c->g;
  if (fg_graph_status(g) != FG_OK) return FG_POISON;
  if (c->context == FG_NONE)
    return fg_graph_fail(g, FG_E_MISUSE, "%s%s: a context-dependent parameter, and no context",
                         c->prefix, name);
  fg_shape cs = fg_node_shape(g, c->context), out = {.ndim = shape.ndim + 1};
  int64_t per_sample = fg_shape_count(&shape);
  out.d[0] = cs.d[0];
  for (int i = 0; i < shape.ndim; i++) out.d[i + 1] = shape.d[i];
  fg_node w =
      fg_flow_param(c, name, fg_shape2(cs.d[1], per_sample), (fg_init){FG_INIT_ZEROS, 0, 0});
  fg_dtype t = fg_node_dtype(g, like);
  if (fg_graph_status(g) == FG_OK && fg_node_dtype(g, w) != t) w = fg_cast(g, w, t);
  fg_node ctx = c->context;
  if (fg_graph_status(g) == FG_OK && fg_node_dtype(g, ctx) != t) ctx = fg_cast(g, ctx, t);
  return fg_reshape(g, fg_matmul(g, ctx, w), out);
}

fg_status fg_flow_push_latent(fg_flow_ctx *c, fg_node z) {
  if (!list_push(&c->latents, NULL, z))
    return fg_graph_fail_status(c->g, FG_E_NOMEM, "out of memory storing a latent");
  return fg_graph_status(c->g);
}

fg_node fg_flow_pop_latent(fg_flow_ctx *c) {
  if (c->latents.n == 0)
    return fg_graph_fail(
        c->g, FG_E_MISUSE,
        "%s: inverse of a factor-out layer needs the latent its "
        "forward factored out, and there is none (reconstruct after a forward pass, "
        "or build the inverse in sampling mode)",
        c->prefix);
  return c->latents.items[--c->latents.n].node;
}

fg_status fg_flow_init_param(fg_flow_ctx *c, const char *name, fg_node value) {
  char *full = full_name(c, name);
  bool ok = full && list_push(&c->inits, full, value);
  free(full);
  if (!ok)
    return fg_graph_fail_status(c->g, FG_E_NOMEM, "out of memory recording an initialisation");
  return fg_graph_status(c->g);
}

int fg_flow_ctx_num_inits(const fg_flow_ctx *c) { return c->inits.n; }
const char *fg_flow_ctx_init_name(const fg_flow_ctx *c, int i) { return c->inits.items[i].name; }
fg_node fg_flow_ctx_init_value(const fg_flow_ctx *c, int i) { return c->inits.items[i].node; }
int fg_flow_ctx_num_param_nodes(const fg_flow_ctx *c) { return c->param_nodes.n; }
fg_node fg_flow_ctx_param_node(const fg_flow_ctx *c, int i) { return c->param_nodes.items[i].node; }
const char *fg_flow_ctx_param_name(const fg_flow_ctx *c, int i) {
  return c->param_nodes.items[i].name;
}

fg_status fg_flow_ctx_override_param(fg_flow_ctx *c, const char *full_name, fg_node n) {
  if (!list_push(&c->overrides, full_name, n))
    return fg_graph_fail_status(c->g, FG_E_NOMEM, "out of memory overriding a parameter");
  return FG_OK;
}

int fg_flow_num_latents(const fg_flow_ctx *c) { return c->latents.n; }
