/* A conv's weight gradient and its bias's as one op: conv2d_weight_grad(x, dy) and a sum of the
 * same dy over N, H and W (the gradient autodiff gives a per-channel bias added to the conv's
 * output, conv2d_bias_act's VJP's included) become one conv2d_weight_bias_grad(x, dy), whose
 * implementations take dy's channel sums while they have dy in cache for the weight gradient
 * instead of in a pass of their own over dy; the two parts are sliced out of its output after.
 * Glow K=16's training step read each 12.8 MB gradient at 14x14 once more for those sums, 26 ms a
 * step (FG_PROFILE on "Intel(R) Xeon(R) Processor", 2 cores; README).
 *
 * Either node may come first in id order (conv2d_bias_act's VJP makes the weight gradient first,
 * autodiff of a separate bias add the sum): the pair rewrite (rewrite.c) makes the fused op at
 * the first, once the weight gradient's inputs are in the new graph, and the second becomes its
 * slice. */
#include <stdlib.h>
#include <string.h>

#include "core/compiler/pass.h"
#include "core/ir/op.h"
#include "core/ir/op_attrs.h"

/* Whether n sums a 4-D value over axes 0, 2 and 3 (keeping them or not). */
static bool channel_sum(const fg_graph *g, fg_node n) {
  if (fg_node_op(g, n) != FG_OP_SUM) return false;
  const fg_reduce_attr *at = fg_node_attr(g, n);
  return fg_node_shape(g, fg_node_input(g, n, 0)).ndim == 4 &&
         at->axes == (FG_AXIS(0) | FG_AXIS(2) | FG_AXIS(3));
}

/* Pairs each weight gradient with a channel sum of its dy (of its dtype), one sum a gradient. */
static fg_status find_pairs(fg_node *partner, const fg_graph *g, fg_err *e) {
  int32_t count = fg_graph_node_count(g);
  fg_node *sum_of = malloc(sizeof *sum_of * ((size_t)count + 1));
  if (!sum_of) return fg_err_set(e, FG_E_NOMEM, "bias_grad: out of memory");
  for (fg_node n = 0; n < count; n++) sum_of[n] = partner[n] = FG_NONE;
  for (fg_node n = 0; n < count; n++)
    if (channel_sum(g, n) && sum_of[fg_node_input(g, n, 0)] == FG_NONE)
      sum_of[fg_node_input(g, n, 0)] = n;
  for (fg_node n = 0; n < count; n++) {
    if (fg_node_op(g, n) != FG_OP_CONV2D_WEIGHT_GRAD) continue;
    fg_node sum = sum_of[fg_node_input(g, n, 1)];
    if (sum == FG_NONE || partner[sum] != FG_NONE || fg_node_dtype(g, sum) != fg_node_dtype(g, n))
      continue;
    partner[n] = sum, partner[sum] = n;
  }
  free(sum_of);
  return FG_OK;
}

/* The fused op of the pair, once x and dy are in dst. */
static fg_node make(fg_pass_ctx *c, fg_graph *dst, const fg_graph *src, fg_node a, fg_node b) {
  (void)dst;
  fg_node wgrad = fg_node_op(src, a) == FG_OP_CONV2D_WEIGHT_GRAD ? a : b;
  fg_node x = c->map[fg_node_input(src, wgrad, 0)], dy = c->map[fg_node_input(src, wgrad, 1)];
  if (x == FG_NONE || dy == FG_NONE) return FG_NONE; /* x comes after the sum */
  const fg_node args[2] = {x, dy};
  return fg_graph_add_node(dst, FG_OP_CONV2D_WEIGHT_BIAS_GRAD, 2, args,
                           fg_node_attr(src, wgrad));
}

/* The weights [0, nw), the bias [nw, nw + O). */
static void range(const fg_graph *dst, fg_node f, const fg_graph *src, fg_node n, int64_t *from,
                  int64_t *to) {
  int64_t all = fg_node_shape(dst, f).d[0];
  int64_t nw = all - fg_node_shape(dst, fg_node_input(dst, f, 1)).d[1];
  bool bias = fg_node_op(src, n) == FG_OP_SUM;
  *from = bias ? nw : 0, *to = bias ? all : nw;
}

fg_status fg_pass_bias_grad(fg_pass_ctx *c) {
  static const fg_pair_fusion pairs = {find_pairs, make, range};
  return fg_pass_rewrite_pairs(c, &pairs);
}
