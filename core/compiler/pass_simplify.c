/* Algebraic simplification: local rewrites that give bit-identical results (x·1 → x, x + 0 → x,
 * -(-x) → x, reshape of a reshape, identity permutes and casts, stop_gradient → x once the
 * gradients exist, a slice that takes back one input of a concat, ...), repeated until nothing
 * changes or an iteration budget runs out.  No rule that changes IEEE results (x·0 → 0 would
 * turn inf·0 = NaN into 0). */
#include <string.h>

#include "core/ir/op.h"
#include "core/compiler/pass.h"
#include "core/ir/op_attrs.h"

enum { SIMPLIFY_MAX_SWEEPS = 8 };

/* x can stand for src's node n: same shape and dtype. */
static bool fits(const fg_graph *dst, fg_node x, const fg_node_rec *r) {
  fg_shape s = fg_node_shape(dst, x);
  return fg_shape_equal(&s, &r->shape) && fg_node_dtype(dst, x) == r->dtype;
}

static bool identity_perm(const fg_permute_attr *a, int ndim) {
  for (int i = 0; i < ndim; i++)
    if (a->perm[i] != i) return false;
  return true;
}

static bool zero_pad(const fg_pad_attr *a, int ndim) {
  for (int i = 0; i < ndim; i++)
    if (a->lo[i] || a->hi[i] || a->interior[i]) return false;
  return true;
}

/* The node that n reduces to, or FG_NONE when no rule applies. */
static fg_node simplified(fg_graph *dst, const fg_node_rec *r, const fg_node *in) {
  fg_node x = r->n_in > 0 ? in[0] : FG_NONE, y = r->n_in > 1 ? in[1] : FG_NONE;
  switch (r->op) {
  case FG_OP_STOP_GRADIENT: return x; /* gradients are built before compiling */
  case FG_OP_CAST:
  case FG_OP_RESHAPE:
  case FG_OP_BROADCAST_TO:
  case FG_OP_SLICE: return fits(dst, x, r) ? x : FG_NONE; /* a full slice is the input */
  case FG_OP_PERMUTE: return identity_perm(r->attr, r->shape.ndim) ? x : FG_NONE;
  case FG_OP_PAD: return zero_pad(r->attr, r->shape.ndim) ? x : FG_NONE;
  case FG_OP_SUM: return fits(dst, x, r) ? x : FG_NONE; /* no axis reduced */
  case FG_OP_ADD:
    if (fg_pass_all_equal(dst, y, 0.0) && fits(dst, x, r)) return x;
    return fg_pass_all_equal(dst, x, 0.0) && fits(dst, y, r) ? y : FG_NONE;
  case FG_OP_SUB: return fg_pass_all_equal(dst, y, 0.0) && fits(dst, x, r) ? x : FG_NONE;
  case FG_OP_MUL:
    if (fg_pass_all_equal(dst, y, 1.0) && fits(dst, x, r)) return x;
    return fg_pass_all_equal(dst, x, 1.0) && fits(dst, y, r) ? y : FG_NONE;
  case FG_OP_DIV: return fg_pass_all_equal(dst, y, 1.0) && fits(dst, x, r) ? x : FG_NONE;
  case FG_OP_NEG: return fg_node_op(dst, x) == FG_OP_NEG ? fg_node_input(dst, x, 0) : FG_NONE;
  case FG_OP_POW: {
    double p = ((const fg_pow_attr *)r->attr)->p;
    if (p == 1.0) return x;
    return p == 2.0 ? fg_graph_add_node(dst, FG_OP_SQUARE, 1, &x, NULL) : FG_NONE;
  }
  default: return FG_NONE;
  }
}

/* slice(concat(a, b, ...)) taking exactly one input back → that input.  A value split and
 * joined again (a coupling's two halves, a split layer's kept part, a layer rebuilt from its
 * inverse's output by flows/train/recompute_grads.c) is then not copied, and what was computed from
 * the part is shared by common-subexpression merging. */
static fg_node slice_of_concat(const fg_graph *dst, const fg_node_rec *r, fg_node x) {
  if (r->op != FG_OP_SLICE || fg_node_op(dst, x) != FG_OP_CONCAT) return FG_NONE;
  const fg_slice_attr *s = r->attr;
  int axis = ((const fg_concat_attr *)fg_node_attr(dst, x))->axis;
  fg_shape xs = fg_node_shape(dst, x);
  for (int i = 0; i < xs.ndim; i++)
    if (s->step[i] != 1 || (i != axis && (s->start[i] != 0 || s->stop[i] != xs.d[i])))
      return FG_NONE;
  int64_t at = 0;
  for (int k = 0; k < fg_node_num_inputs(dst, x); k++) {
    fg_node in = fg_node_input(dst, x, k);
    int64_t len = fg_node_shape(dst, in).d[axis];
    if (s->start[axis] == at && s->stop[axis] == at + len) return in;
    at += len;
  }
  return FG_NONE;
}

/* reshape(reshape(x)) → reshape(x): the inner copy disappears. */
static fg_node collapse_reshape(fg_graph *dst, const fg_node_rec *r, const fg_node *in) {
  if (r->op != FG_OP_RESHAPE || fg_node_op(dst, in[0]) != FG_OP_RESHAPE) return FG_NONE;
  fg_node x = fg_node_input(dst, in[0], 0);
  fg_shape xs = fg_node_shape(dst, x);
  if (fg_shape_equal(&xs, &r->shape)) return x;
  fg_reshape_attr attr = *(const fg_reshape_attr *)r->attr; /* the node's own, zero-filled */
  return fg_graph_add_node(dst, FG_OP_RESHAPE, 1, &x, &attr);
}

static fg_node simplify_emit(fg_pass_ctx *c, fg_graph *dst, const fg_graph *src, fg_node n,
                             const fg_node *inputs, void *state) {
  (void)state;
  const fg_node_rec *r = fg_graph_node(src, n);
  fg_node s = simplified(dst, r, inputs);
  if (s == FG_NONE) s = collapse_reshape(dst, r, inputs);
  if (s == FG_NONE && r->n_in == 1) s = slice_of_concat(dst, r, inputs[0]);
  if (s == FG_NONE) return fg_graph_copy_node(dst, src, n, inputs);
  c->changes++;
  return s;
}

fg_status fg_pass_simplify(fg_pass_ctx *c) {
  int64_t total = 0;
  for (int sweep = 0; sweep < SIMPLIFY_MAX_SWEEPS; sweep++) {
    c->changes = 0;
    fg_status st = fg_pass_rewrite(c, simplify_emit, NULL);
    if (st != FG_OK) return st;
    total += c->changes;
    if (c->changes == 0) break; /* fixed point */
  }
  c->changes = total;
  return FG_OK;
}
