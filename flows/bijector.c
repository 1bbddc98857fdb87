/* Bijector instances: a registered type's state, or a chain, or an inversion.  Forward and
 * inverse set the parameter prefix of the bijector being built, and fill in the log-dets a
 * type leaves out: the inverse one as the negated forward log-det at the inverse point, the
 * forward one derived from the graph (ops/autodiff/jacobian.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/vec.h"
#include "ops/autodiff/autodiff.h"
#include "flows/bijector_internal.h"
#include "ops/ops.h"

struct fg_bijector {
  const fg_bijector_type *type; /* NULL for a chain or an inversion */
  void *state;
  char *prefix;
  int n_children;
  fg_bijector **children; /* chain */
  fg_bijector *inner;     /* inversion */
};

static char *str_printf(const char *a, const char *b, const char *c) {
  size_t n = strlen(a) + strlen(b) + strlen(c) + 1;
  char *s = malloc(n);
  if (s) snprintf(s, n, "%s%s%s", a, b, c);
  return s;
}

fg_bijector *fg__bijector_wrap(const fg_bijector_type *t, void *state) {
  fg_bijector *b = calloc(1, sizeof *b);
  if (b) b->prefix = str_printf(t->name, ".", "");
  if (!b || !b->prefix) {
    free(b);
    if (t->destroy) t->destroy(state);
    return NULL;
  }
  b->type = t;
  b->state = state;
  return b;
}

void fg_bijector_free(fg_bijector *b) {
  if (!b) return;
  if (b->type && b->type->destroy) b->type->destroy(b->state);
  for (int i = 0; i < b->n_children; i++) fg_bijector_free(b->children[i]);
  free(b->children);
  fg_bijector_free(b->inner);
  free(b->prefix);
  free(b);
}

const fg_bijector_type *fg_bijector_type_of(const fg_bijector *b) { return b ? b->type : NULL; }
const char *fg_bijector_prefix(const fg_bijector *b) { return b ? b->prefix : ""; }
int fg_bijector_num_children(const fg_bijector *b) { return b ? b->n_children : 0; }
fg_bijector *fg_bijector_child(const fg_bijector *b, int i) {
  return b && i >= 0 && i < b->n_children ? b->children[i] : NULL;
}
bool fg_bijector_is_inverted(const fg_bijector *b) { return b && b->inner; }

typedef struct leaf_list {
  fg_bijector **v;
  int64_t n, cap;
} leaf_list;

static bool collect_leaves(fg_bijector *b, leaf_list *l) {
  for (int i = 0; i < b->n_children; i++)
    if (!collect_leaves(b->children[i], l)) return false;
  if (b->n_children > 0) return true;
  if (!FG_VEC_RESERVE(l->v, l->cap, l->n + 1)) return false;
  l->v[l->n++] = b;
  return true;
}

fg_status fg_bijector_leaves(fg_bijector ***out, int *n, fg_bijector *b, fg_err *e) {
  leaf_list l = {0};
  *out = NULL, *n = 0;
  if (!collect_leaves(b, &l)) {
    free(l.v);
    return fg_err_set(e, FG_E_NOMEM, "out of memory listing the layers of a bijector");
  }
  *out = l.v, *n = (int)l.n;
  return FG_OK;
}

/* Child i of a chain is named "<chain prefix><i>.<type>." so parameter names say where they
 * live ("3.actnorm.logs"). */
static fg_status name_children(fg_bijector *b, fg_err *e) {
  for (int i = 0; i < b->n_children; i++) {
    char idx[32];
    const fg_bijector *ch = b->children[i];
    const char *kind = ch->type ? ch->type->name : ch->inner ? "invert" : "chain";
    snprintf(idx, sizeof idx, "%d.", i);
    char *head = str_printf(b->prefix, idx, "");
    char *p = head ? str_printf(head, kind, ".") : NULL;
    free(head);
    if (!p) return fg_err_set(e, FG_E_NOMEM, "out of memory naming a chain");
    fg_status st = fg_bijector_set_prefix(b->children[i], p, e);
    free(p);
    if (st != FG_OK) return st;
  }
  return FG_OK;
}

fg_status fg_bijector_set_prefix(fg_bijector *b, const char *prefix, fg_err *e) {
  char *p = strdup(prefix ? prefix : "");
  if (!p) return fg_err_set(e, FG_E_NOMEM, "out of memory for a prefix");
  free(b->prefix);
  b->prefix = p;
  if (b->inner) return fg_bijector_set_prefix(b->inner, p, e);
  return name_children(b, e);
}

/* A composition that fails still owns what it was given: it frees children[0..n). */
static fg_status refuse_children(int n, fg_bijector **children, fg_status st, fg_err *e,
                                 const char *why) {
  for (int i = 0; children && i < n; i++) fg_bijector_free(children[i]);
  return fg_err_set(e, st, "%s", why);
}

fg_status fg_bijector_chain(fg_bijector **out, int n, fg_bijector **children, fg_err *e) {
  *out = NULL;
  if (n < 0) return fg_err_set(e, FG_E_MISUSE, "chain: a negative child count (%d)", n);
  if (n > 0 && !children) return fg_err_set(e, FG_E_MISUSE, "chain: %d children but no array", n);
  for (int i = 0; i < n; i++)
    if (!children[i]) return refuse_children(n, children, FG_E_MISUSE, e, "chain: a child is NULL");
  fg_bijector *b = calloc(1, sizeof *b);
  fg_bijector **kids = malloc(sizeof *kids * ((size_t)n + 1));
  if (!b || !kids || !(b->prefix = strdup(""))) {
    free(b), free(kids);
    return refuse_children(n, children, FG_E_NOMEM, e, "out of memory for a chain");
  }
  if (n > 0) memcpy(kids, children, sizeof *kids * (size_t)n);
  b->children = kids;
  b->n_children = n;
  fg_status st = name_children(b, e);
  if (st != FG_OK) {
    fg_bijector_free(b);
    return st;
  }
  *out = b;
  return FG_OK;
}

fg_status fg_bijector_invert(fg_bijector **out, fg_bijector *child, fg_err *e) {
  *out = NULL;
  if (!child) return fg_err_set(e, FG_E_MISUSE, "invert: the child is NULL");
  fg_bijector *b = calloc(1, sizeof *b);
  if (!b || !(b->prefix = strdup(child->prefix))) {
    free(b);
    return refuse_children(1, &child, FG_E_NOMEM, e, "out of memory for an inversion");
  }
  b->inner = child;
  *out = b;
  return FG_OK;
}

/* ---- log-dets the types leave out ---- */

static fg_node batch_zeros(fg_graph *g, fg_node x) {
  fg_shape s = fg_node_shape(g, x);
  return fg_fill(g, 0.0, fg_node_dtype(g, x), fg_shape1(s.ndim ? s.d[0] : 1));
}

/* ---- building ---- */

static fg_status leaf_forward(fg_bijector *b, fg_flow_ctx *c, fg_node x, fg_node *y, fg_node *ld) {
  fg_graph *g = fg_flow_graph(c);
  *ld = FG_NONE;
  fg_status st = b->type->forward(b->state, c, x, y, ld);
  if (fg_graph_status(g) != FG_OK) return fg_graph_status(g);
  if (st != FG_OK) return st;
  fg_jacobian_kind route = FG_JACOBIAN_DENSE;
  bool declared = *ld != FG_NONE;
  if (!declared) *ld = fg_logdet_derived(g, x, *y, b->prefix, &route);
  fg__flow_ctx_count_logdet(c, declared, route);
  return fg_graph_status(g);
}

static fg_status leaf_inverse(fg_bijector *b, fg_flow_ctx *c, fg_node y, fg_node *x, fg_node *ld) {
  fg_graph *g = fg_flow_graph(c);
  if (!b->type->inverse)
    return fg_graph_fail_status(g, FG_E_MISUSE, "%s: type '%s' has no inverse", b->prefix,
                                b->type->name);
  *ld = FG_NONE;
  fg_status st = b->type->inverse(b->state, c, y, x, ld);
  if (st == FG_OK && fg_graph_status(g) == FG_OK && *ld == FG_NONE) {
    fg_node y_again, fwd; /* the negated forward log-det at the inverse point */
    st = leaf_forward(b, c, *x, &y_again, &fwd);
    if (st == FG_OK) *ld = fg_neg(g, fwd);
  }
  return fg_graph_status(g) != FG_OK ? fg_graph_status(g) : st;
}

static fg_status with_prefix(fg_bijector *b, fg_flow_ctx *c, bool inverse, fg_node in, fg_node *out,
                             fg_node *ld);

/* The nodes a layer builds are scoped by its name ("3.actnorm", the prefix without its dot), so
 * dumps can group them by layer.  Returns the outer scope, for fg_graph_leave_scope. */
static const char *enter_layer_scope(const fg_bijector *b, fg_flow_ctx *c) {
  char name[256];
  size_t n = strlen(b->prefix);
  if (n && b->prefix[n - 1] == '.') n--;
  snprintf(name, sizeof name, "%.*s", (int)n, b->prefix);
  return fg_graph_enter_scope(fg_flow_graph(c), name);
}

/* A type that declares FG_BIJ_CONTEXT reads the flow's context: building it without one fails
 * here, naming the layer, rather than somewhere inside it. */
static fg_status needs_context(const fg_bijector *b, fg_flow_ctx *c) {
  if (!(b->type->flags & FG_BIJ_CONTEXT) || fg_flow_context(c) != FG_NONE) return FG_OK;
  size_t n = strlen(b->prefix);
  return fg_graph_fail_status(fg_flow_graph(c), FG_E_MISUSE,
                              "%.*s: type '%s' is conditional and takes a context, but none was "
                              "given (a class-conditional flow: `classes N` in a spec, "
                              "fg_flow_config.context in C)",
                              (int)(n && b->prefix[n - 1] == '.' ? n - 1 : n), b->prefix,
                              b->type->name);
}

static fg_status chain_run(fg_bijector *b, fg_flow_ctx *c, bool inverse, fg_node in, fg_node *out,
                           fg_node *ld) {
  fg_graph *g = fg_flow_graph(c);
  fg_node cur = in, total = FG_NONE;
  for (int k = 0; k < b->n_children; k++) {
    int i = inverse ? b->n_children - 1 - k : k;
    fg_node next, part;
    fg_status st = with_prefix(b->children[i], c, inverse, cur, &next, &part);
    if (st != FG_OK) return st;
    const char *outer = enter_layer_scope(b->children[i], c); /* adding its log-det is its node */
    total = total == FG_NONE ? part : fg_add(g, total, part);
    fg_graph_leave_scope(g, outer);
    cur = next;
  }
  *out = cur;
  *ld = total == FG_NONE ? batch_zeros(g, in) : total;
  return fg_graph_status(g);
}

static fg_status with_prefix(fg_bijector *b, fg_flow_ctx *c, bool inverse, fg_node in, fg_node *out,
                             fg_node *ld) {
  if (b->inner) return with_prefix(b->inner, c, !inverse, in, out, ld);
  if (!b->type) return chain_run(b, c, inverse, in, out, ld);
  char *saved = strdup(fg_flow_ctx_prefix(c));
  if (!saved) return fg_graph_fail_status(fg_flow_graph(c), FG_E_NOMEM, "out of memory");
  const char *outer = enter_layer_scope(b, c);
  fg_status st = fg_flow_ctx_set_prefix(c, b->prefix);
  if (st == FG_OK) st = needs_context(b, c);
  if (st == FG_OK) st = inverse ? leaf_inverse(b, c, in, out, ld) : leaf_forward(b, c, in, out, ld);
  fg_flow_ctx_set_prefix(c, saved);
  fg_graph_leave_scope(fg_flow_graph(c), outer);
  free(saved);
  return st;
}

static fg_status check_input(fg_flow_ctx *c, fg_node x, fg_node *y, fg_node *ld) {
  *y = *ld = FG_POISON;
  fg_graph *g = fg_flow_graph(c);
  if (fg_graph_status(g) != FG_OK) return fg_graph_status(g);
  if (!fg_node_valid(g, x))
    return fg_graph_fail_status(g, FG_E_MISUSE, "bijector input is not a node");
  if (fg_node_shape(g, x).ndim < 1)
    return fg_graph_fail_status(g, FG_E_SHAPE, "bijector input must have a batch axis");
  return FG_OK;
}

fg_status fg_bijector_forward(fg_bijector *b, fg_flow_ctx *c, fg_node x, fg_node *y,
                              fg_node *logdet) {
  fg_status st = check_input(c, x, y, logdet);
  return st != FG_OK ? st : with_prefix(b, c, false, x, y, logdet);
}

fg_status fg_bijector_inverse(fg_bijector *b, fg_flow_ctx *c, fg_node y, fg_node *x,
                              fg_node *logdet) {
  fg_status st = check_input(c, y, x, logdet);
  return st != FG_OK ? st : with_prefix(b, c, true, y, x, logdet);
}

fg_status fg_bijector_data_init(fg_bijector *b, fg_flow_ctx *c, fg_node x) {
  if (!b->type || !b->type->data_init) return fg_graph_status(fg_flow_graph(c));
  char *saved = strdup(fg_flow_ctx_prefix(c));
  if (!saved) return fg_graph_fail_status(fg_flow_graph(c), FG_E_NOMEM, "out of memory");
  const char *outer = enter_layer_scope(b, c);
  fg_status st = fg_flow_ctx_set_prefix(c, b->prefix);
  if (st == FG_OK) st = needs_context(b, c);
  if (st == FG_OK) st = b->type->data_init(b->state, c, x);
  fg_flow_ctx_set_prefix(c, saved);
  fg_graph_leave_scope(fg_flow_graph(c), outer);
  free(saved);
  return fg_graph_status(fg_flow_graph(c)) != FG_OK ? fg_graph_status(fg_flow_graph(c)) : st;
}
