/* Reverse-mode autodiff over the tape.  Node ids are a topological order, so "every node
 * between wrt and the loss" is two linear sweeps and the backward pass is one loop from the
 * highest id down: no recursion.  Gradients of a node with several uses are summed, and a
 * VJP's broadcast-shaped gradient is summed down to its input's shape here, once, rather than
 * in every rule. */
#include "ops/autodiff/autodiff.h"

#include <stdlib.h>
#include <string.h>

#include "core/ir/op.h"
#include "ops/ops.h"

enum { MASK_BITS = 32 };

typedef struct tape_marks {
  int32_t n;
  uint8_t *active; /* on a differentiable path from some wrt to some output */
  fg_node *grad;   /* accumulated gradient of each node, FG_NONE = zero */
} tape_marks;

static bool input_is_diff(const fg_op_def *def, int k) {
  return !(def->flags & (FG_OPF_NODIFF | FG_OPF_LEAF)) &&
         !(k < MASK_BITS && (def->nondiff_inputs >> k) & 1);
}

/* active = depends differentiably on a wrt node AND is an ancestor of an output. */
/* Cut nodes are held fixed: they never depend on a wrt node, so no gradient flows through. */
static void mark_active(const fg_graph *g, tape_marks *m, int n_out, const fg_node *outs,
                        int n_wrt, const fg_node *wrt, const uint8_t *cut) {
  uint8_t *from_wrt = m->active, *reaches = calloc((size_t)m->n, 1);
  for (int i = 0; i < n_wrt; i++) from_wrt[wrt[i]] = 1;
  for (int32_t i = 0; i < m->n; i++) {
    if (cut && cut[i]) continue;
    const fg_op_def *def = fg_op_get(fg_node_op(g, i));
    for (int k = 0; k < fg_node_num_inputs(g, i) && !from_wrt[i]; k++)
      if (input_is_diff(def, k) && from_wrt[fg_node_input(g, i, k)]) from_wrt[i] = 1;
  }
  if (!reaches) { /* out of memory: fall back to "everything reachable from wrt" */
    return;
  }
  for (int j = 0; j < n_out; j++) reaches[outs[j]] = 1;
  for (int32_t i = m->n - 1; i >= 0; i--)
    if (reaches[i])
      for (int k = 0; k < fg_node_num_inputs(g, i); k++) reaches[fg_node_input(g, i, k)] = 1;
  for (int32_t i = 0; i < m->n; i++) m->active[i] = from_wrt[i] && reaches[i];
  free(reaches);
}

/* grad[x] += contribution, summing a broadcast-shaped contribution down to x's shape. */
static void accumulate(fg_graph *g, tape_marks *m, fg_node x, fg_node contribution) {
  if (contribution == FG_NONE) return;
  fg_shape xs = fg_node_shape(g, x), cs = fg_node_shape(g, contribution);
  if (!fg_shape_equal(&xs, &cs)) contribution = fg_sum_to(g, contribution, xs);
  m->grad[x] = m->grad[x] == FG_NONE ? contribution : fg_add(g, m->grad[x], contribution);
}

static fg_status backprop_node(fg_graph *g, tape_marks *m, fg_node node) {
  const fg_op_def *def = fg_op_get(fg_node_op(g, node));
  int n_in = fg_node_num_inputs(g, node);
  if (!def->vjp || n_in == 0) return FG_OK;
  uint32_t need = 0;
  for (int k = 0; k < n_in; k++)
    if (input_is_diff(def, k) && m->active[fg_node_input(g, node, k)])
      need |= k < MASK_BITS ? 1u << k : 0xffffffffu;
  if (!need) return FG_OK;
  fg_node small[8], *gin = n_in <= 8 ? small : malloc(sizeof *gin * (size_t)n_in);
  if (!gin) return fg_graph_fail_status(g, FG_E_NOMEM, "out of memory in backward pass");
  for (int k = 0; k < n_in; k++) gin[k] = FG_NONE;
  /* a node's gradient nodes belong to its layer (dumps group them by scope) */
  const char *outer = fg_graph_enter_scope(g, fg_node_scope(g, node));
  fg_status st = def->vjp(g, node, m->grad[node], need, gin);
  for (int k = 0; st == FG_OK && k < n_in; k++) {
    fg_node x = fg_node_input(g, node, k);
    if (input_is_diff(def, k) && m->active[x]) accumulate(g, m, x, gin[k]);
  }
  fg_graph_leave_scope(g, outer);
  if (gin != small) free(gin);
  return st == FG_OK ? fg_graph_status(g) : st;
}

static fg_status check_ids(fg_graph *g, const char *what, int n, const fg_node *ids, bool none_ok) {
  for (int i = 0; i < n; i++) {
    if (ids[i] == FG_POISON) return fg_graph_status(g) != FG_OK ? fg_graph_status(g) : FG_E_MISUSE;
    if (none_ok && ids[i] == FG_NONE) continue;
    if (!fg_node_valid(g, ids[i]))
      return fg_graph_fail(g, FG_E_MISUSE, "gradient: %s %d (id %d) is not a node of this graph",
                           what, i, ids[i]),
             FG_E_MISUSE;
  }
  return FG_OK;
}

static fg_status seed_outputs(fg_graph *g, tape_marks *m, int n_out, const fg_node *outs,
                              const fg_node *gouts) {
  for (int j = 0; j < n_out; j++) {
    if (gouts[j] == FG_NONE) continue;
    fg_shape os = fg_node_shape(g, outs[j]), gs = fg_node_shape(g, gouts[j]);
    if (!fg_shape_equal(&os, &gs) || fg_node_dtype(g, outs[j]) != fg_node_dtype(g, gouts[j])) {
      char a[128], b[128];
      fg_graph_fail(g, FG_E_SHAPE, "gradient: seed %d is %s %s but output %d is %s %s", j,
                    fg_dtype_name(fg_node_dtype(g, gouts[j])), fg_shape_str(&gs, a, sizeof a), j,
                    fg_dtype_name(fg_node_dtype(g, outs[j])), fg_shape_str(&os, b, sizeof b));
      return FG_E_SHAPE;
    }
    accumulate(g, m, outs[j], gouts[j]);
  }
  return fg_graph_status(g);
}

fg_status fg_vjp(fg_graph *g, int n_out, const fg_node *outs, const fg_node *gouts, int n_wrt,
                 const fg_node *wrt, fg_node *grads) {
  return fg_vjp_cut(g, n_out, outs, gouts, n_wrt, wrt, 0, NULL, grads);
}

fg_status fg_vjp_cut(fg_graph *g, int n_out, const fg_node *outs, const fg_node *gouts, int n_wrt,
                     const fg_node *wrt, int n_cut, const fg_node *cut, fg_node *grads) {
  if (!g) return FG_E_MISUSE;
  for (int i = 0; i < n_wrt; i++) grads[i] = FG_POISON;
  if (fg_graph_status(g) != FG_OK) return fg_graph_status(g);
  fg_status st = check_ids(g, "output", n_out, outs, false);
  if (st == FG_OK) st = check_ids(g, "seed", n_out, gouts, true);
  if (st == FG_OK) st = check_ids(g, "wrt", n_wrt, wrt, false);
  if (st == FG_OK) st = check_ids(g, "cut", n_cut, cut, false);
  if (st != FG_OK) return st;

  tape_marks m = {.n = fg_graph_node_count(g)};
  m.active = calloc((size_t)m.n, 1);
  m.grad = malloc(sizeof *m.grad * (size_t)m.n);
  uint8_t *cut_mask = n_cut > 0 ? calloc((size_t)m.n, 1) : NULL;
  if (!m.active || !m.grad || (n_cut > 0 && !cut_mask)) {
    free(m.active), free(m.grad), free(cut_mask);
    fg_graph_fail(g, FG_E_NOMEM, "out of memory for the backward pass over %d nodes", m.n);
    return FG_E_NOMEM;
  }
  for (int i = 0; i < n_cut; i++) cut_mask[cut[i]] = 1;
  for (int32_t i = 0; i < m.n; i++) m.grad[i] = FG_NONE;
  mark_active(g, &m, n_out, outs, n_wrt, wrt, cut_mask);
  free(cut_mask);
  fg_node first_new = m.n;
  st = seed_outputs(g, &m, n_out, outs, gouts);
  for (int32_t i = m.n - 1; st == FG_OK && i >= 0; i--)
    if (m.active[i] && m.grad[i] != FG_NONE) st = backprop_node(g, &m, i);
  for (int i = 0; st == FG_OK && i < n_wrt; i++)
    grads[i] = m.grad[wrt[i]] != FG_NONE ? m.grad[wrt[i]] : fg_zeros_like(g, wrt[i]);
  free(m.active);
  free(m.grad);
  if (st == FG_OK) st = fg_graph_status(g);
  if (st == FG_OK) fg_graph_mark(g, first_new, FG_NODE_GRAD);
  else
    for (int i = 0; i < n_wrt; i++) grads[i] = FG_POISON;
  return st;
}

fg_status fg_grad(fg_graph *g, fg_node loss, int n_wrt, const fg_node *wrt, fg_node *grads) {
  if (!g) return FG_E_MISUSE;
  if (fg_graph_status(g) == FG_OK && fg_node_valid(g, loss)) {
    fg_shape s = fg_node_shape(g, loss);
    if (fg_shape_count(&s) != 1) {
      char b[128];
      fg_graph_fail(g, FG_E_SHAPE, "gradient: the loss must have one element, not shape %s "
                    "(reduce it with fg_sum or fg_mean, or use fg_vjp with a seed)",
                    fg_shape_str(&s, b, sizeof b));
    }
  }
  fg_node seed = fg_node_valid(g, loss) ? fg_ones_like(g, loss) : loss;
  fg_status st = fg_vjp(g, 1, &loss, &seed, n_wrt, wrt, grads);
  if (st == FG_OK) fg_graph_mark(g, seed, FG_NODE_GRAD); /* the seed and all after it */
  return st;
}
