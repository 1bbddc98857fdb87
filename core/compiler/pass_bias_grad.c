/* A conv's weight gradient and its bias's as one op: conv2d_weight_grad(x, dy) and a sum of the
 * same dy over N, H and W (the gradient autodiff gives a per-channel bias added to the conv's
 * output, conv2d_bias_act's VJP's included) become one conv2d_weight_bias_grad(x, dy), whose
 * implementations take dy's channel sums while they have dy in cache for the weight gradient
 * instead of in a pass of their own over dy; the two parts are sliced out of its output after.
 * Glow K=16's training step read each 12.8 MB gradient at 14x14 once more for those sums, 26 ms a
 * step (FG_PROFILE, README).
 *
 * Either node may come first in id order (conv2d_bias_act's VJP makes the weight gradient first,
 * autodiff of a separate bias add the sum): the fused op is made at the first of the pair, once
 * the weight gradient's inputs are in the new graph (the rewrite's map), and the second becomes
 * its slice. */
#include <stdlib.h>
#include <string.h>

#include "core/compiler/pass.h"
#include "core/ir/op.h"
#include "core/ir/op_attrs.h"

typedef struct bias_grad_state {
  fg_node *partner; /* per source node: its sum or weight gradient, else FG_NONE */
  fg_node *fused;   /* per source node: the pair's fused op in the new graph, once made */
} bias_grad_state;

/* Whether n sums a 4-D value over axes 0, 2 and 3 (keeping them or not). */
static bool channel_sum(const fg_graph *g, fg_node n) {
  if (fg_node_op(g, n) != FG_OP_SUM) return false;
  const fg_reduce_attr *at = fg_node_attr(g, n);
  return fg_node_shape(g, fg_node_input(g, n, 0)).ndim == 4 &&
         at->axes == (FG_AXIS(0) | FG_AXIS(2) | FG_AXIS(3));
}

/* Pairs each weight gradient with a channel sum of its dy (of its dtype), one sum a gradient.
 * s's arrays are the caller's to free, on failure too. */
static fg_status find_pairs(bias_grad_state *s, const fg_graph *g, fg_err *e) {
  int32_t count = fg_graph_node_count(g);
  fg_node *sum_of = malloc(sizeof *sum_of * ((size_t)count + 1));
  s->partner = malloc(sizeof *s->partner * ((size_t)count + 1));
  s->fused = malloc(sizeof *s->fused * ((size_t)count + 1));
  if (!sum_of || !s->partner || !s->fused) {
    free(sum_of);
    return fg_err_set(e, FG_E_NOMEM, "bias_grad: out of memory");
  }
  for (fg_node n = 0; n < count; n++) sum_of[n] = s->partner[n] = s->fused[n] = FG_NONE;
  for (fg_node n = 0; n < count; n++)
    if (channel_sum(g, n) && sum_of[fg_node_input(g, n, 0)] == FG_NONE)
      sum_of[fg_node_input(g, n, 0)] = n;
  for (fg_node n = 0; n < count; n++) {
    if (fg_node_op(g, n) != FG_OP_CONV2D_WEIGHT_GRAD) continue;
    fg_node sum = sum_of[fg_node_input(g, n, 1)];
    if (sum == FG_NONE || s->partner[sum] != FG_NONE ||
        fg_node_dtype(g, sum) != fg_node_dtype(g, n))
      continue;
    s->partner[n] = sum, s->partner[sum] = n;
  }
  free(sum_of);
  return FG_OK;
}

/* Source node n's part of the fused op f: the weights [0, nw) or the bias [nw, nw + O), in n's
 * shape. */
static fg_node part_of(fg_graph *dst, fg_node f, const fg_graph *src, fg_node n) {
  fg_shape fs = fg_node_shape(dst, f), ns = fg_node_shape(src, n);
  int64_t o = fg_node_shape(dst, fg_node_input(dst, f, 1)).d[1], nw = fs.d[0] - o;
  bool bias = fg_node_op(src, n) == FG_OP_SUM;
  fg_slice_attr sl;
  memset(&sl, 0, sizeof sl);
  sl.start[0] = bias ? nw : 0, sl.stop[0] = bias ? fs.d[0] : nw, sl.step[0] = 1;
  fg_node part = fg_graph_add_node(dst, FG_OP_SLICE, 1, &f, &sl);
  fg_reshape_attr rs = {ns};
  return fg_graph_add_node(dst, FG_OP_RESHAPE, 1, &part, &rs);
}

static fg_node bias_grad_emit(fg_pass_ctx *c, fg_graph *dst, const fg_graph *src, fg_node n,
                              const fg_node *in, void *state) {
  bias_grad_state *s = state;
  if (s->fused[n] != FG_NONE) return part_of(dst, s->fused[n], src, n); /* the second */
  fg_node other = s->partner[n];
  if (other == FG_NONE) return fg_graph_copy_node(dst, src, n, in);
  fg_node wgrad = fg_node_op(src, n) == FG_OP_CONV2D_WEIGHT_GRAD ? n : other;
  fg_node x = c->map[fg_node_input(src, wgrad, 0)], dy = c->map[fg_node_input(src, wgrad, 1)];
  if (x == FG_NONE || dy == FG_NONE) { /* x comes after the sum: the two stay apart */
    s->partner[other] = FG_NONE;
    return fg_graph_copy_node(dst, src, n, in);
  }
  const fg_node args[2] = {x, dy};
  fg_node f = fg_graph_add_node(dst, FG_OP_CONV2D_WEIGHT_BIAS_GRAD, 2, args,
                                fg_node_attr(src, wgrad));
  s->fused[other] = f;
  c->changes++;
  return part_of(dst, f, src, n);
}

fg_status fg_pass_bias_grad(fg_pass_ctx *c) {
  bias_grad_state s = {NULL, NULL};
  fg_status st = find_pairs(&s, c->g, c->e);
  if (st == FG_OK) st = fg_pass_rewrite(c, bias_grad_emit, &s);
  free(s.partner), free(s.fused);
  return st;
}
