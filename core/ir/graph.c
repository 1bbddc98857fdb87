#include "core/ir/graph.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/arena.h"
#include "core/ir/op.h"
#include "core/ir/op_attrs.h"
#include "core/vec.h"

struct fg_graph {
  fg_node_rec *nodes;
  int32_t n_nodes;
  int64_t cap_nodes;
  fg_node *edges; /* inputs of all nodes, each node's a contiguous run */
  int64_t n_edges, cap_edges;
  fg_arena arena;
  const char *scope; /* current scope (in the arena), NULL for none */
  fg_err err;        /* the first error, sticky */
};

fg_status fg_graph_new(fg_graph **out, fg_err *e) {
  fg_graph *g = calloc(1, sizeof *g);
  *out = g;
  if (!g) return fg_err_set(e, FG_E_NOMEM, "graph: out of memory");
  fg_arena_init(&g->arena);
  return FG_OK;
}

void fg_graph_free(fg_graph *g) {
  if (!g) return;
  for (int32_t i = 0; i < g->n_nodes; i++) fg_tensor_free(g->nodes[i].value);
  free(g->nodes);
  free(g->edges);
  fg_arena_free(&g->arena);
  free(g);
}

fg_status fg_graph_status(const fg_graph *g) { return g ? g->err.status : FG_E_MISUSE; }
const char *fg_graph_errmsg(const fg_graph *g) { return g ? g->err.msg : "no graph"; }
int32_t fg_graph_node_count(const fg_graph *g) { return g ? g->n_nodes : 0; }

/* Keeps the first error only: later ones are usually its consequences. */
static void record_error(fg_graph *g, fg_status s, const char *fmt, va_list ap) {
  if (g->err.status == FG_OK) fg_err_vset(&g->err, s, fmt, ap);
}

fg_status fg_graph_fail_status(fg_graph *g, fg_status s, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  record_error(g, s, fmt, ap);
  va_end(ap);
  return s;
}

fg_node fg_graph_fail(fg_graph *g, fg_status s, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  record_error(g, s, fmt, ap);
  va_end(ap);
  return FG_POISON;
}

bool fg_node_valid(const fg_graph *g, fg_node n) { return g && n >= 0 && n < g->n_nodes; }

const fg_node_rec *fg_graph_node(const fg_graph *g, fg_node n) {
  return fg_node_valid(g, n) ? &g->nodes[n] : NULL;
}

fg_shape fg_node_shape(const fg_graph *g, fg_node n) {
  return fg_node_valid(g, n) ? g->nodes[n].shape : fg_shape0();
}

fg_dtype fg_node_dtype(const fg_graph *g, fg_node n) {
  return fg_node_valid(g, n) ? (fg_dtype)g->nodes[n].dtype : FG_F32;
}

int64_t fg_node_bytes(const fg_graph *g, fg_node n) {
  fg_shape s = fg_node_shape(g, n);
  return fg_shape_count(&s) * (int64_t)fg_dtype_size(fg_node_dtype(g, n));
}

int fg_node_op(const fg_graph *g, fg_node n) { return fg_node_valid(g, n) ? g->nodes[n].op : 0; }

int fg_node_num_inputs(const fg_graph *g, fg_node n) {
  return fg_node_valid(g, n) ? g->nodes[n].n_in : 0;
}

fg_node fg_node_input(const fg_graph *g, fg_node n, int i) {
  if (!fg_node_valid(g, n) || i < 0 || i >= g->nodes[n].n_in) return FG_NONE;
  return g->edges[g->nodes[n].in_off + i];
}

const void *fg_node_attr(const fg_graph *g, fg_node n) {
  return fg_node_valid(g, n) ? g->nodes[n].attr : NULL;
}

const char *fg_node_name(const fg_graph *g, fg_node n) {
  return fg_node_valid(g, n) ? g->nodes[n].name : NULL;
}

fg_node fg_node_set_name(fg_graph *g, fg_node n, const char *name) {
  if (g->err.status != FG_OK) return FG_POISON;
  if (!fg_node_valid(g, n)) return fg_graph_fail(g, FG_E_MISUSE, "set_name: %d is not a node", n);
  char *copy = fg_arena_strdup(&g->arena, name);
  if (!copy) return fg_graph_fail(g, FG_E_NOMEM, "out of memory naming node %d", n);
  g->nodes[n].name = copy;
  return n;
}

const char *fg_node_scope(const fg_graph *g, fg_node n) {
  return fg_node_valid(g, n) ? g->nodes[n].scope : NULL;
}

const char *fg_graph_scope(const fg_graph *g) { return g ? g->scope : NULL; }

/* Scopes come in long runs (a layer's nodes, a pass copying a layer), so the current string is
 * reused when it is equal and only a change copies. */
const char *fg_graph_enter_scope(fg_graph *g, const char *scope) {
  if (!g) return NULL;
  const char *outer = g->scope;
  if (!scope || !scope[0]) g->scope = NULL;
  else if (!(g->scope && strcmp(g->scope, scope) == 0)) {
    const char *copy = fg_arena_strdup(&g->arena, scope);
    if (copy) g->scope = copy;
  }
  return outer;
}

void fg_graph_leave_scope(fg_graph *g, const char *outer) {
  if (g) g->scope = outer;
}

fg_node fg_graph_find(const fg_graph *g, const char *name) {
  for (int32_t i = 0; i < g->n_nodes; i++) {
    int op = g->nodes[i].op;
    if ((op == FG_OP_INPUT || op == FG_OP_PARAM) && g->nodes[i].name &&
        strcmp(g->nodes[i].name, name) == 0)
      return i;
  }
  return FG_NONE;
}

void fg_graph_mark(fg_graph *g, fg_node first, uint8_t flags) {
  for (int32_t i = first < 0 ? 0 : first; i < g->n_nodes; i++) g->nodes[i].flags |= flags;
}

/* "op 'add' on inputs float32 [2, 3] and float32 [4]: " */
static void describe_inputs(const fg_graph *g, const fg_op_def *def, int n_in,
                            const fg_node *inputs, char *buf, size_t cap) {
  size_t used = (size_t)snprintf(buf, cap, "op '%s'", def->name);
  for (int i = 0; i < n_in && used < cap; i++) {
    char s[160];
    fg_shape_str(&g->nodes[inputs[i]].shape, s, sizeof s);
    used += (size_t)snprintf(buf + used, cap - used, "%s%s %s", i ? ", " : " on inputs ",
                             fg_dtype_name((fg_dtype)g->nodes[inputs[i]].dtype), s);
  }
}

static fg_node check_inputs(fg_graph *g, const fg_op_def *def, int n_in, const fg_node *in) {
  bool variadic = def->flags & FG_OPF_VARIADIC;
  if (variadic ? n_in < def->n_in : n_in != def->n_in)
    return fg_graph_fail(g, FG_E_MISUSE, "op '%s' takes %s%d inputs, got %d", def->name,
                         variadic ? "at least " : "", def->n_in, n_in);
  for (int i = 0; i < n_in; i++) {
    if (in[i] == FG_POISON) return FG_POISON;
    if (!fg_node_valid(g, in[i]))
      return fg_graph_fail(g, FG_E_MISUSE, "op '%s': input %d (id %d) is not a node of this graph",
                           def->name, i, in[i]);
  }
  return 0;
}

/* The shape rule's arguments: the inputs' shapes and dtypes, the output pre-set to input 0's
 * (a 0-d F32 with no inputs). */
static void infer_args(fg_infer_args *a, int n_in, const fg_shape *shapes, const fg_dtype *dtypes,
                       const void *attr) {
  memset(a, 0, sizeof *a);
  a->n_in = n_in;
  a->in_shape = shapes;
  a->in_dtype = dtypes;
  a->attr = attr;
  a->out_shape = n_in ? shapes[0] : fg_shape0();
  a->out_dtype = n_in ? dtypes[0] : FG_F32;
}

static fg_node run_infer(fg_graph *g, const fg_op_def *def, int n_in, const fg_node *in,
                         const void *attr, fg_infer_args *a) {
  fg_shape shapes_small[8];
  fg_dtype dtypes_small[8];
  fg_shape *shapes = n_in <= 8 ? shapes_small : malloc(sizeof *shapes * (size_t)n_in);
  fg_dtype *dtypes = n_in <= 8 ? dtypes_small : malloc(sizeof *dtypes * (size_t)n_in);
  if (!shapes || !dtypes) {
    if (n_in > 8) {
      free(shapes);
      free(dtypes);
    }
    return fg_graph_fail(g, FG_E_NOMEM, "out of memory building op '%s'", def->name);
  }
  for (int i = 0; i < n_in; i++) {
    shapes[i] = g->nodes[in[i]].shape;
    dtypes[i] = (fg_dtype)g->nodes[in[i]].dtype;
  }
  infer_args(a, n_in, shapes, dtypes, attr);
  fg_status st = def->infer ? def->infer(a) : FG_OK;
  int64_t numel;
  if (st == FG_OK && fg_shape_numel(&a->out_shape, &numel, NULL) != FG_OK) {
    st = FG_E_OVERFLOW;
    snprintf(a->why, sizeof a->why, "the output's element count overflows int64");
  }
  if (n_in > 8) {
    free(shapes);
    free(dtypes);
  }
  if (st == FG_OK) return 0;
  char who[768];
  describe_inputs(g, def, n_in, in, who, sizeof who);
  return fg_graph_fail(g, st, "%s: %s", who, a->why[0] ? a->why : fg_status_str(st));
}

fg_node fg_graph_add_node(fg_graph *g, int op, int n_in, const fg_node *inputs,
                          const void *attr) {
  if (!g) return FG_POISON;
  if (g->err.status != FG_OK) return FG_POISON;
  const fg_op_def *def = fg_op_get(op);
  if (!def) return fg_graph_fail(g, FG_E_MISUSE, "unknown op id %d", op);
  if (check_inputs(g, def, n_in, inputs) != 0) return FG_POISON;
  fg_infer_args a;
  if (run_infer(g, def, n_in, inputs, attr, &a) != 0) return FG_POISON;
  if (g->n_nodes == INT32_MAX)
    return fg_graph_fail(g, FG_E_OVERFLOW, "a graph holds at most %d nodes", INT32_MAX);
  if (!FG_VEC_RESERVE(g->nodes, g->cap_nodes, g->n_nodes + 1) ||
      !FG_VEC_RESERVE(g->edges, g->cap_edges, g->n_edges + n_in))
    return fg_graph_fail(g, FG_E_NOMEM, "out of memory adding op '%s'", def->name);
  const void *attr_copy = NULL;
  if (def->attr_size) {
    attr_copy = fg_arena_dup(&g->arena, attr, def->attr_size);
    if (!attr_copy)
      return fg_graph_fail(g, FG_E_NOMEM, "out of memory for '%s' attributes", def->name);
  }
  fg_node id = g->n_nodes++;
  fg_node_rec *r = &g->nodes[id];
  memset(r, 0, sizeof *r);
  r->op = (uint16_t)op;
  r->dtype = (uint8_t)a.out_dtype;
  r->n_in = n_in;
  r->in_off = (int32_t)g->n_edges;
  r->attr = attr_copy;
  r->scope = g->scope;
  r->shape = a.out_shape;
  if (n_in) memcpy(g->edges + g->n_edges, inputs, sizeof *inputs * (size_t)n_in);
  g->n_edges += n_in;
  return id;
}

/* ---- leaves and sources ---- */

static fg_node add_source(fg_graph *g, int op, fg_dtype t, fg_shape shape, double a, double b,
                          uint64_t seed) {
  fg_source_attr attr;
  memset(&attr, 0, sizeof attr);
  attr.shape = shape;
  attr.dtype = (int32_t)t;
  attr.a = a;
  attr.b = b;
  attr.seed = seed;
  return fg_graph_add_node(g, op, 0, NULL, &attr);
}

static fg_node add_named_leaf(fg_graph *g, int op, const char *name, fg_dtype t, fg_shape shape) {
  if (!g || g->err.status != FG_OK) return FG_POISON;
  if (!name || !name[0])
    return fg_graph_fail(g, FG_E_MISUSE, "%s needs a non-empty name",
                         op == FG_OP_INPUT ? "an input" : "a parameter");
  if (fg_graph_find(g, name) != FG_NONE)
    return fg_graph_fail(g, FG_E_EXISTS, "the name '%s' is already an input or parameter", name);
  fg_node n = add_source(g, op, t, shape, 0, 0, 0);
  return n >= 0 ? fg_node_set_name(g, n, name) : n;
}

fg_node fg_input(fg_graph *g, const char *name, fg_dtype t, fg_shape shape) {
  return add_named_leaf(g, FG_OP_INPUT, name, t, shape);
}

fg_node fg_param(fg_graph *g, const char *name, fg_dtype t, fg_shape shape) {
  return add_named_leaf(g, FG_OP_PARAM, name, t, shape);
}

fg_node fg_constant(fg_graph *g, const fg_tensor *value) {
  if (!g || g->err.status != FG_OK) return FG_POISON;
  fg_err e;
  fg_tensor *copy;
  if (fg_tensor_copy(&copy, value, value->dtype, &e) != FG_OK)
    return fg_graph_fail(g, e.status, "constant: %s", e.msg);
  return fg_constant_take(g, copy);
}

fg_node fg_constant_take(fg_graph *g, fg_tensor *value) {
  if (!g || g->err.status != FG_OK) {
    fg_tensor_free(value);
    return FG_POISON;
  }
  fg_node n = add_source(g, FG_OP_CONST, value->dtype, value->shape, 0, 0, 0);
  if (n < 0) {
    fg_tensor_free(value);
    return n;
  }
  g->nodes[n].value = value;
  return n;
}

fg_node fg_constant_values(fg_graph *g, fg_dtype t, fg_shape shape, const double *values) {
  if (!g || g->err.status != FG_OK) return FG_POISON;
  fg_err e;
  fg_tensor *value;
  if (fg_tensor_new(&value, t, &shape, &e) != FG_OK)
    return fg_graph_fail(g, e.status, "constant: %s", e.msg);
  for (int64_t i = 0; i < fg_tensor_numel(value); i++) fg_tensor_set(value, i, values[i]);
  return fg_constant_take(g, value);
}

fg_node fg_scalar(fg_graph *g, double v, fg_dtype t) {
  return fg_fill(g, v, t, fg_shape0());
}

fg_node fg_fill(fg_graph *g, double v, fg_dtype t, fg_shape shape) {
  return add_source(g, FG_OP_FILL, t, shape, v, 0, 0);
}

fg_node fg_zeros_like(fg_graph *g, fg_node x) {
  if (!fg_node_valid(g, x))
    return x == FG_POISON ? x : fg_graph_fail(g, FG_E_MISUSE, "zeros_like of a non-node");
  return fg_fill(g, 0.0, fg_node_dtype(g, x), fg_node_shape(g, x));
}

fg_node fg_ones_like(fg_graph *g, fg_node x) {
  if (!fg_node_valid(g, x))
    return x == FG_POISON ? x : fg_graph_fail(g, FG_E_MISUSE, "ones_like of a non-node");
  return fg_fill(g, 1.0, fg_node_dtype(g, x), fg_node_shape(g, x));
}

fg_node fg_random_uniform(fg_graph *g, uint64_t seed, double lo, double hi, fg_dtype t,
                          fg_shape shape) {
  return add_source(g, FG_OP_RANDOM_UNIFORM, t, shape, lo, hi, seed);
}

fg_node fg_random_normal(fg_graph *g, uint64_t seed, double mean, double std, fg_dtype t,
                         fg_shape shape) {
  return add_source(g, FG_OP_RANDOM_NORMAL, t, shape, mean, std, seed);
}

/* ---- rewriting support ---- */

fg_node fg_graph_copy_node(fg_graph *dst, const fg_graph *src, fg_node n, const fg_node *inputs) {
  const fg_node_rec *r = fg_graph_node(src, n);
  if (!r) return fg_graph_fail(dst, FG_E_INTERNAL, "copy of a node that does not exist (%d)", n);
  fg_node out;
  if (r->op == FG_OP_INPUT) out = fg_input(dst, r->name, (fg_dtype)r->dtype, r->shape);
  else if (r->op == FG_OP_PARAM) out = fg_param(dst, r->name, (fg_dtype)r->dtype, r->shape);
  else if (r->op == FG_OP_CONST) {
    fg_tensor *shared;
    fg_err e;
    if (fg_tensor_view(&shared, r->value, &e) != FG_OK)
      return fg_graph_fail(dst, e.status, "%s", e.msg);
    out = fg_constant_take(dst, shared);
  } else
    out = fg_graph_add_node(dst, r->op, r->n_in, inputs, r->attr);
  if (out < 0) return out;
  if (r->scope) {
    const char *outer = fg_graph_enter_scope(dst, r->scope);
    dst->nodes[out].scope = dst->scope;
    fg_graph_leave_scope(dst, outer);
  }
  if (r->name && !dst->nodes[out].name) fg_node_set_name(dst, out, r->name);
  dst->nodes[out].flags |= r->flags;
  return out;
}

enum { VERIFY_MAX_INPUTS = 16 };

static fg_status verify_node(const fg_graph *g, fg_node n, fg_err *e) {
  const fg_node_rec *r = &g->nodes[n];
  const fg_op_def *def = fg_op_get(r->op);
  if (!def) return fg_err_set(e, FG_E_INTERNAL, "node %d has unknown op %d", n, r->op);
  for (int k = 0; k < r->n_in; k++) {
    fg_node in = g->edges[r->in_off + k];
    if (in < 0 || in >= n)
      return fg_err_set(e, FG_E_INTERNAL, "node %d ('%s') input %d is %d: not an earlier node", n,
                        def->name, k, in);
  }
  if (r->op == FG_OP_CONST && !r->value)
    return fg_err_set(e, FG_E_INTERNAL, "constant node %d has no data", n);
  if (r->n_in > VERIFY_MAX_INPUTS) return FG_OK; /* a wide concat: its shape rule is not re-run */
  fg_shape shapes[VERIFY_MAX_INPUTS];
  fg_dtype dtypes[VERIFY_MAX_INPUTS];
  for (int k = 0; k < r->n_in; k++) {
    shapes[k] = g->nodes[g->edges[r->in_off + k]].shape;
    dtypes[k] = (fg_dtype)g->nodes[g->edges[r->in_off + k]].dtype;
  }
  fg_infer_args a;
  infer_args(&a, r->n_in, shapes, dtypes, r->attr);
  fg_status st = def->infer ? def->infer(&a) : FG_OK;
  if (st != FG_OK || !fg_shape_equal(&a.out_shape, &r->shape) || a.out_dtype != r->dtype)
    return fg_err_set(e, FG_E_INTERNAL, "node %d ('%s'): its shape rule no longer gives its "
                      "recorded shape and dtype", n, def->name);
  return FG_OK;
}

fg_status fg_graph_verify(const fg_graph *g, fg_err *e) {
  if (!g) return fg_err_set(e, FG_E_MISUSE, "verify: no graph");
  for (fg_node n = 0; n < g->n_nodes; n++) {
    fg_status st = verify_node(g, n, e);
    if (st != FG_OK) return st;
  }
  return FG_OK;
}
