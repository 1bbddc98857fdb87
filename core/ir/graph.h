/* The graph (tape): nodes are int32 ids into a growable array, appended in topological order
 * (a node's inputs always have smaller ids), so every traversal is a loop over ids — no
 * recursion, no node cap, deterministic numbering.
 *
 * Errors are sticky: the first failing builder call records a message naming the op, the input
 * shapes and what was expected; every later builder call returns FG_POISON, so user code checks
 * fg_graph_status once at the end. */
#ifndef FG_GRAPH_H
#define FG_GRAPH_H

#include <stdbool.h>
#include <stdint.h>

#include "core/shape.h"
#include "core/status.h"
#include "core/tensor.h"

typedef int32_t fg_node;
#define FG_NONE ((fg_node)-1)   /* no node; as a gradient, a symbolic zero */
#define FG_POISON ((fg_node)-2) /* returned by builders once the graph is in error */

typedef struct fg_graph fg_graph;

/* Node flags (bitwise).  The role of a node is its op (input, param, const, compute); these
 * flags only record where it came from, for dumps and passes. */
enum {
  FG_NODE_GRAD = 1u << 0, /* appended by autodiff */
  FG_NODE_REMAT = 1u << 1 /* a forward value computed again for the backward pass (pass_remat.c) */
};

/* One node.  Exposed so that passes, the executor and dumps can read it; builders are the only
 * writers. */
typedef struct fg_node_rec {
  uint16_t op;       /* enum fg_op_id */
  uint8_t dtype;     /* fg_dtype */
  uint8_t flags;     /* FG_NODE_* */
  int32_t n_in;
  int32_t in_off;    /* first input in the graph's edge array */
  const void *attr;  /* op's typed attributes (attr_size bytes, in the arena) or NULL */
  const char *name;  /* in the arena, or NULL */
  const char *scope; /* the scope current when the node was added (a layer: "3.actnorm"), or NULL */
  fg_tensor *value;  /* constants only: contiguous data owned by the graph */
  fg_shape shape;
} fg_node_rec;

/* A new, empty graph in *out; on failure (out of memory) *out is NULL. */
fg_status fg_graph_new(fg_graph **out, fg_err *e);
void fg_graph_free(fg_graph *g);

fg_status fg_graph_status(const fg_graph *g);
/* The first error's message, "" when none; borrowed, lives as long as the graph. */
const char *fg_graph_errmsg(const fg_graph *g);
int32_t fg_graph_node_count(const fg_graph *g);

/* Leaves.  Inputs and parameters are bound by name in a program; parameters are the leaves an
 * optimiser updates (their values live outside the graph, shared between graphs). */
fg_node fg_input(fg_graph *g, const char *name, fg_dtype t, fg_shape shape);
fg_node fg_param(fg_graph *g, const char *name, fg_dtype t, fg_shape shape);
/* A constant holding a copy of `value`'s elements (any layout); value stays the caller's. */
fg_node fg_constant(fg_graph *g, const fg_tensor *value);
/* A constant of dtype t and `shape` holding values[0..numel) (row-major, converted to t): a
 * table, a mask or a matrix in one call.  For every element equal, fg_fill stores nothing. */
fg_node fg_constant_values(fg_graph *g, fg_dtype t, fg_shape shape, const double *values);
/* A 0-d constant; broadcasting makes it combine with any shape. */
fg_node fg_scalar(fg_graph *g, double v, fg_dtype t);
/* Every element equal to v (no data stored: a kernel fills it). */
fg_node fg_fill(fg_graph *g, double v, fg_dtype t, fg_shape shape);
fg_node fg_zeros_like(fg_graph *g, fg_node x);
fg_node fg_ones_like(fg_graph *g, fg_node x);
/* Counter-based random numbers: element i is a pure function of (seed, run offset, i), so a
 * value never depends on threads or evaluation order.  The program's rng offset (see
 * fg_program_set_rng_offset) gives fresh noise per step with no hidden global state. */
fg_node fg_random_uniform(fg_graph *g, uint64_t seed, double lo, double hi, fg_dtype t,
                          fg_shape shape);
fg_node fg_random_normal(fg_graph *g, uint64_t seed, double mean, double std, fg_dtype t,
                         fg_shape shape);

/* Introspection.  Invalid ids give a zero shape, dtype F32, op 0. */
const fg_node_rec *fg_graph_node(const fg_graph *g, fg_node n); /* NULL for an invalid id */
fg_shape fg_node_shape(const fg_graph *g, fg_node n);
fg_dtype fg_node_dtype(const fg_graph *g, fg_node n);
/* The bytes of n's value: its element count times its dtype's size. */
int64_t fg_node_bytes(const fg_graph *g, fg_node n);
int fg_node_op(const fg_graph *g, fg_node n);
int fg_node_num_inputs(const fg_graph *g, fg_node n);
fg_node fg_node_input(const fg_graph *g, fg_node n, int i);
const void *fg_node_attr(const fg_graph *g, fg_node n);
const char *fg_node_name(const fg_graph *g, fg_node n); /* NULL when unnamed */
/* Names a node (the name is copied); returns n, or FG_POISON on error. */
fg_node fg_node_set_name(fg_graph *g, fg_node n, const char *name);
/* The scope a node was added in (see fg_graph_enter_scope); NULL when none. */
const char *fg_node_scope(const fg_graph *g, fg_node n);

/* Scopes.  Every node records the graph's current scope when it is added, so a dump can group
 * nodes by the layer that made them: a bijector's nodes are added in the scope of its name
 * ("3.affine_coupling"), and autodiff adds a node's gradient nodes in that node's scope.
 * fg_graph_enter_scope makes `scope` current (copied; NULL or "" for none) and returns the
 * previous one (owned by the graph), which the caller hands back to fg_graph_leave_scope:
 *   const char *outer = fg_graph_enter_scope(g, "3.actnorm");  ...  fg_graph_leave_scope(g, outer);
 * Out of memory copying the name leaves the scope unchanged (nodes stay unscoped). */
const char *fg_graph_enter_scope(fg_graph *g, const char *scope);
void fg_graph_leave_scope(fg_graph *g, const char *outer);
const char *fg_graph_scope(const fg_graph *g);

/* Finds the input or parameter called `name`; FG_NONE when there is none. */
fg_node fg_graph_find(const fg_graph *g, const char *name);
bool fg_node_valid(const fg_graph *g, fg_node n);

/* For op builders: appends a node of op `op` after checking its inputs and running the op's
 * shape rule.  `attr` points at the op's attribute struct (attr_size bytes), which the caller
 * must have zero-filled (memset) before setting fields, because attributes are hashed and
 * compared bytewise.  Returns the new id, or FG_POISON with the graph's error set. */
fg_node fg_graph_add_node(fg_graph *g, int op, int n_in, const fg_node *inputs, const void *attr);
/* Records a sticky error (if none yet) and returns FG_POISON, for builders. */
fg_node fg_graph_fail(fg_graph *g, fg_status s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The same for functions that return a status: records the error (if none yet) and returns s. */
fg_status fg_graph_fail_status(fg_graph *g, fg_status s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* For rewriting passes: appends to dst a copy of src's node n (op, attributes, name, scope,
 * flags, constant data shared, not copied) with the given inputs (ids in dst), re-running the shape
 * rule, so a rewrite that breaks shapes is caught where it happens. */
fg_node fg_graph_copy_node(fg_graph *dst, const fg_graph *src, fg_node n, const fg_node *inputs);
/* A constant node that takes over one reference to `value` (no copy), also when it fails: the
 * reference is then released. */
fg_node fg_constant_take(fg_graph *g, fg_tensor *value);
/* Checks the graph's invariants — inputs precede their node, every shape rule still gives the
 * recorded shape and dtype, leaves have what they need — and returns FG_E_INTERNAL with a
 * message naming the first broken node otherwise.  Run between passes in test builds. */
fg_status fg_graph_verify(const fg_graph *g, fg_err *e);
/* Sets flags on nodes [first, count) — used by autodiff to mark gradient nodes. */
void fg_graph_mark(fg_graph *g, fg_node first, uint8_t flags);

#endif
