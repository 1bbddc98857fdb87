/* Conv chains: a conv2d_bias_act with few input channels whose output only a 1x1
 * conv2d_bias_act reads becomes one conv2d_chain (ops/conv.c), which runs them a few images
 * at a time: the first's output, written for the whole batch and read back by the second
 * (6.4 MB for Glow's 2->128 3x3 at 14x14, batch 64), stays in cache a group at a time instead.
 * When the 1x1 conv's output in turn has one reader, a conv2d_bias_act with few output
 * channels, that joins the chain too (in a graph with a backward pass the 1x1 conv's output
 * has other readers, and the chain stops at two).  That is a coupling network's layers: with
 * few input channels the first conv costs little arithmetic per output element (at most
 * CHAIN_MAX_MACS multiply-adds), so writing its output is much of its time.  The chain has
 * native kernels only, the paths conv2d_bias_act's own kernels take for each conv, so it is
 * made only where oneDNN's are not the likely choice: few input channels and few output
 * channels (where the native direct kernels win) and a 1x1 conv (a GEMM per image) between.
 * It runs after remat, so that in a training graph the backward pass reads a recomputed copy
 * of the first conv's output and the forward one has the 1x1 conv as its only reader.  Each
 * group of images' convs run the paths the separate ops' kernels take, so the values are
 * theirs up to the last bits (ops/kernels/conv.c says where they may differ). */

#include "core/compiler/pass.h"
#include "core/ir/op.h"
#include "core/ir/op_attrs.h"

enum {
  CHAIN_MAX_MACS = 64,     /* C KH KW of the first conv: a 3x3 of <= 7 channels */
  CHAIN_MAX_OUT = 32,      /* output channels of a third conv */
  CHAIN_MAX_MID = 1 << 18, /* elements of one image of an output inside the chain: 1 MiB */
};

static bool unit_opts(const fg_conv2d_opts *o) {
  return o->stride[0] == 1 && o->stride[1] == 1 && o->padding[0] == 0 && o->padding[1] == 0 &&
         o->dilation[0] == 1 && o->dilation[1] == 1;
}

static fg_shape weight_shape(const fg_graph *g, fg_node conv) {
  return fg_node_shape(g, fg_node_input(g, conv, 1));
}

/* n is a conv2d_bias_act that only one node reads, and one image of its output fits. */
static bool inside_chain(const fg_graph *g, fg_node n, const int32_t *uses) {
  fg_shape y = fg_node_shape(g, n);
  return fg_node_op(g, n) == FG_OP_CONV2D_BIAS_ACT && uses[n] == 1 &&
         y.d[1] * y.d[2] * y.d[3] <= CHAIN_MAX_MID;
}

/* n is a 1x1 conv2d_bias_act (stride 1, no padding) of the output of a conv with few input
 * channels that nothing else reads. */
static bool second_of_chain(const fg_graph *g, fg_node n, const int32_t *uses) {
  if (fg_node_op(g, n) != FG_OP_CONV2D_BIAS_ACT) return false;
  const fg_conv2d_bias_act_attr *at = fg_node_attr(g, n);
  fg_shape w = weight_shape(g, n), w1 = weight_shape(g, fg_node_input(g, n, 0));
  return w.d[2] == 1 && w.d[3] == 1 && unit_opts(&at->geom) &&
         inside_chain(g, fg_node_input(g, n, 0), uses) &&
         w1.d[1] * w1.d[2] * w1.d[3] <= CHAIN_MAX_MACS;
}

/* n is a conv2d_bias_act with few output channels of such a 1x1 conv's output, which nothing
 * else reads. */
static bool third_of_chain(const fg_graph *g, fg_node n, const int32_t *uses) {
  if (fg_node_op(g, n) != FG_OP_CONV2D_BIAS_ACT || weight_shape(g, n).d[0] > CHAIN_MAX_OUT)
    return false;
  fg_node second = fg_node_input(g, n, 0);
  return inside_chain(g, second, uses) && second_of_chain(g, second, uses);
}

/* The chain of the convs in dst: `prev` (a conv2d_bias_act, or the conv2d_chain made of the
 * nodes before) followed by the conv2d_bias_act src node n, whose weight and bias are in[1],
 * in[2]. */
static fg_node extend(fg_graph *dst, fg_node prev, const fg_graph *src, fg_node n,
                      const fg_node *in) {
  fg_conv2d_chain_attr attr = {0};
  fg_node args[1 + 2 * FG_CONV2D_CHAIN_MAX];
  if (fg_node_op(dst, prev) == FG_OP_CONV2D_CHAIN) {
    attr = *(const fg_conv2d_chain_attr *)fg_node_attr(dst, prev);
    for (int k = 0; k < 1 + 2 * attr.n_convs; k++) args[k] = fg_node_input(dst, prev, k);
  } else {
    attr.n_convs = 1;
    attr.conv[0] = *(const fg_conv2d_bias_act_attr *)fg_node_attr(dst, prev);
    for (int k = 0; k < 3; k++) args[k] = fg_node_input(dst, prev, k);
  }
  attr.conv[attr.n_convs] = *(const fg_conv2d_bias_act_attr *)fg_node_attr(src, n);
  args[1 + 2 * attr.n_convs] = in[1], args[2 + 2 * attr.n_convs] = in[2];
  attr.n_convs++;
  return fg_graph_add_node(dst, FG_OP_CONV2D_CHAIN, (int)(1 + 2 * attr.n_convs), args, &attr);
}

static fg_node chain_emit(fg_pass_ctx *c, fg_graph *dst, const fg_graph *src, fg_node n,
                          const fg_node *in, void *state) {
  const int32_t *uses = ((const fg_merge_state *)state)->uses; /* readers in the source */
  /* in[0] is, in dst, the conv before n, or the chain made of it and the one before */
  if (!second_of_chain(src, n, uses) && !third_of_chain(src, n, uses))
    return fg_graph_copy_node(dst, src, n, in);
  c->changes++;
  return extend(dst, in[0], src, n, in);
}

fg_status fg_pass_chain(fg_pass_ctx *c) { return fg_pass_rewrite_merging(c, chain_emit, NULL); }
