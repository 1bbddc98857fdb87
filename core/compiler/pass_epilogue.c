/* Conv epilogue fusion: conv2d -> broadcast add of a per-channel bias (-> relu) becomes one
 * conv2d_bias_act op (ops/conv.c), which adds the bias and applies relu to each block of
 * output while it is still in cache, instead of two more passes over the whole tensor.
 * Only when the conv2d (and the add, for the relu) feeds nothing else: an intermediate that
 * another node reads must still exist.  Results are bit-identical (the same float additions
 * and comparisons).  relu's gradient is taken from its output, so a training graph's backward
 * does not keep the pre-activation alive and the pattern stays single-use there too. */
#include <string.h>

#include "core/ir/op.h"
#include "core/compiler/pass.h"
#include "core/ir/op_attrs.h"

/* b can be conv's bias: a tensor of conv's dtype shaped [1, O, 1, 1]. */
static bool channel_bias(const fg_graph *g, fg_node conv, fg_node b) {
  fg_shape ys = fg_node_shape(g, conv), bs = fg_node_shape(g, b);
  return bs.ndim == 4 && bs.d[0] == 1 && bs.d[1] == ys.d[1] && bs.d[2] == 1 && bs.d[3] == 1 &&
         fg_node_dtype(g, b) == fg_node_dtype(g, conv);
}

/* A conv2d_bias_act node of x, w, b (the compiler speaks the instruction set directly; the
 * builders in ops/ sit a layer above it). */
static fg_node bias_act(fg_graph *dst, fg_node x, fg_node w, fg_node b, const fg_conv2d_opts *geom,
                        bool relu) {
  fg_conv2d_bias_act_attr attr;
  memset(&attr, 0, sizeof attr);
  attr.geom = *geom;
  attr.relu = relu;
  return fg_graph_add_node(dst, FG_OP_CONV2D_BIAS_ACT, 3, (const fg_node[]){x, w, b}, &attr);
}

static fg_node epilogue_emit(fg_pass_ctx *c, fg_graph *dst, const fg_graph *src, fg_node n,
                             const fg_node *in, void *state) {
  const int32_t *uses = state; /* readers of each node of the source graph */
  int op = fg_node_op(src, n);
  if (op == FG_OP_ADD) { /* conv2d + bias, either order, the conv read by this add alone */
    for (int k = 0; k < 2; k++) {
      fg_node conv = fg_node_input(src, n, k), b = fg_node_input(src, n, 1 - k);
      if (fg_node_op(src, conv) != FG_OP_CONV2D || uses[conv] != 1 ||
          !channel_bias(src, conv, b))
        continue;
      const fg_conv2d_attr *at = fg_node_attr(src, conv);
      c->changes++;
      return bias_act(dst, fg_node_input(dst, in[k], 0), fg_node_input(dst, in[k], 1), in[1 - k],
                      &at->geom, false);
    }
  }
  if (op == FG_OP_RELU && fg_node_op(dst, in[0]) == FG_OP_CONV2D_BIAS_ACT &&
      uses[fg_node_input(src, n, 0)] == 1) {
    const fg_conv2d_bias_act_attr *at = fg_node_attr(dst, in[0]);
    if (!at->relu) {
      c->changes++;
      return bias_act(dst, fg_node_input(dst, in[0], 0), fg_node_input(dst, in[0], 1),
                      fg_node_input(dst, in[0], 2), &at->geom, true);
    }
  }
  return fg_graph_copy_node(dst, src, n, in);
}

fg_status fg_pass_epilogue(fg_pass_ctx *c) { return fg_pass_rewrite_merging(c, epilogue_emit); }
