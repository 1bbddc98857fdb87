/* Conv epilogue fusion: conv2d -> broadcast add of a per-channel bias (-> relu) becomes one
 * conv2d_bias_act op (ops/conv.c), which adds the bias and applies relu to each block of
 * output while it is still in cache, instead of two more passes over the whole tensor.
 * Only when the conv2d (and the add, for the relu) feeds nothing else: an intermediate that
 * another node reads must still exist.  Results are bit-identical (the same float additions
 * and comparisons).  relu's gradient is taken from its output, so a training graph's backward
 * does not keep the pre-activation alive and the pattern stays single-use there too.
 *
 * In the backward pass, relu's gradient is the product of the gradient of its output, often a
 * conv2d_input_grad that nothing else reads, with (y > 0) for relu's output y: that becomes one
 * conv2d_input_grad_relu, which masks each part of its output as it writes it instead of a
 * pass that reads the whole gradient and y and writes it again (bit-identical too).  Only where
 * no elementwise op reads the product: one that does (RealNVP's residual sum of gradients) makes
 * that pass anyway, with the product fused into it, and the mask in the conv is work on top
 * (RealNVP's training with its convs pinned to oneDNN's Winograd primitives: 40.2 -> 37.8
 * items/s with those products in the convs too, one run each).  Glow's products feed convs and
 * bias sums only: its training step K=8 +0.5 to +5.9 %, K=16 +1.2 to +2.0 % (three runs of
 * alternating pairs each, "Intel(R) Xeon(R) Processor", 2 cores; README). */
#include <stdlib.h>
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

/* mask is greater(y, 0) with y of ig's shape and dtype (so the product has them too). */
static bool relu_mask_of(const fg_graph *g, fg_node ig, fg_node mask) {
  if (fg_node_op(g, mask) != FG_OP_GREATER ||
      !fg_pass_all_equal(g, fg_node_input(g, mask, 1), 0.0))
    return false;
  fg_node y = fg_node_input(g, mask, 0);
  fg_shape is = fg_node_shape(g, ig), ys = fg_node_shape(g, y), ms = fg_node_shape(g, mask);
  return fg_shape_equal(&is, &ys) && fg_shape_equal(&ys, &ms) &&
         fg_node_dtype(g, y) == fg_node_dtype(g, ig);
}

static fg_status elementwise_readers(uint8_t **out, const fg_graph *g, fg_err *e) {
  int32_t n = fg_graph_node_count(g);
  uint8_t *r = *out = calloc((size_t)n + 1, 1);
  if (!r) return fg_err_set(e, FG_E_NOMEM, "epilogue: out of memory");
  for (fg_node i = 0; i < n; i++)
    if (fg_op_get(fg_node_op(g, i))->flags & FG_OPF_ELEMENTWISE)
      for (int k = 0; k < fg_node_num_inputs(g, i); k++) r[fg_node_input(g, i, k)] = 1;
  return FG_OK;
}

/* The product n of an input gradient read by n alone and a relu's mask, read by no elementwise
 * op, as one conv2d_input_grad_relu in dst; FG_NONE when n is no such product. */
static fg_node masked_input_grad(fg_graph *dst, const fg_graph *src, fg_node n, const fg_node *in,
                                 const int32_t *uses, const uint8_t *ew_read) {
  if (ew_read[n]) return FG_NONE;
  for (int k = 0; k < 2; k++) {
    fg_node ig = fg_node_input(src, n, k);
    if (fg_node_op(src, ig) != FG_OP_CONV2D_INPUT_GRAD || uses[ig] != 1 ||
        !relu_mask_of(src, ig, fg_node_input(src, n, 1 - k)))
      continue;
    const fg_node args[3] = {fg_node_input(dst, in[k], 0), fg_node_input(dst, in[k], 1),
                             fg_node_input(dst, in[1 - k], 0)};
    return fg_graph_add_node(dst, FG_OP_CONV2D_INPUT_GRAD_RELU, 3, args, fg_node_attr(src, ig));
  }
  return FG_NONE;
}

static fg_node epilogue_emit(fg_pass_ctx *c, fg_graph *dst, const fg_graph *src, fg_node n,
                             const fg_node *in, void *state) {
  const fg_merge_state *s = state;
  const int32_t *uses = s->uses; /* readers of each node of the source graph */
  int op = fg_node_op(src, n);
  if (op == FG_OP_MUL) {
    fg_node masked = masked_input_grad(dst, src, n, in, uses, s->extra);
    if (masked != FG_NONE) {
      c->changes++;
      return masked;
    }
  }
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

/* The merging rewrite, with which nodes an elementwise op reads as the pass's own state. */
fg_status fg_pass_epilogue(fg_pass_ctx *c) {
  uint8_t *ew_read;
  fg_status st = elementwise_readers(&ew_read, c->g, c->e);
  if (st == FG_OK) st = fg_pass_rewrite_merging(c, epilogue_emit, ew_read);
  free(ew_read);
  return st;
}
