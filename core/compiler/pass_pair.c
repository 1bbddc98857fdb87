/* Conv pairs: a conv2d_bias_act with few input channels whose output only a 1x1
 * conv2d_bias_act reads becomes one conv2d_pair (ops/conv.c), which runs the two image by
 * image: the first's output, written for the whole batch and read back by the second (6.4 MB
 * for Glow's 2->128 3x3 at 14x14, batch 64), stays one image at a time in cache instead.
 * That is a coupling network's first two layers; with few input channels the first conv costs
 * little arithmetic per output element (at most PAIR_MAX_MACS multiply-adds), so writing its
 * output is a large part of its time.  The pair has native kernels only, the paths
 * conv2d_bias_act's own kernels take for each conv, so it is made only where oneDNN's are
 * not the likely choice: few input channels (where the native direct kernels win) and a 1x1
 * second conv (a GEMM per image).  It runs after remat, so that in a training graph the
 * backward pass reads a recomputed copy of the first conv's output and the forward one has
 * the 1x1 conv as its only reader.  Each value is computed as the two ops' kernels compute it
 * (per image, on the same paths). */
#include <stdlib.h>

#include "core/compiler/pass.h"
#include "core/ir/op.h"
#include "core/ir/op_attrs.h"

enum {
  PAIR_MAX_MACS = 64,            /* C KH KW of the first conv: a 3x3 of <= 7 channels */
  PAIR_MAX_MID = 1 << 18,        /* elements of one image of its output: 1 MiB in float32 */
};

static bool unit_opts(const fg_conv2d_opts *o) {
  return o->stride[0] == 1 && o->stride[1] == 1 && o->padding[0] == 0 && o->padding[1] == 0 &&
         o->dilation[0] == 1 && o->dilation[1] == 1;
}

/* n is a conv2d_bias_act with few input channels that only one node reads, and one image of
 * its output fits the buffer. */
static bool first_of_pair(const fg_graph *g, fg_node n, const int32_t *uses) {
  if (fg_node_op(g, n) != FG_OP_CONV2D_BIAS_ACT || uses[n] != 1) return false;
  fg_shape w = fg_node_shape(g, fg_node_input(g, n, 1)), y = fg_node_shape(g, n);
  return w.d[1] * w.d[2] * w.d[3] <= PAIR_MAX_MACS && y.d[1] * y.d[2] * y.d[3] <= PAIR_MAX_MID;
}

/* n is a 1x1 conv2d_bias_act (stride 1, no padding) of such a conv's output. */
static bool second_of_pair(const fg_graph *g, fg_node n, const int32_t *uses) {
  if (fg_node_op(g, n) != FG_OP_CONV2D_BIAS_ACT) return false;
  const fg_conv2d_bias_act_attr *at = fg_node_attr(g, n);
  fg_shape w = fg_node_shape(g, fg_node_input(g, n, 1));
  return w.d[2] == 1 && w.d[3] == 1 && unit_opts(&at->geom) &&
         first_of_pair(g, fg_node_input(g, n, 0), uses);
}

static fg_node pair_emit(fg_pass_ctx *c, fg_graph *dst, const fg_graph *src, fg_node n,
                         const fg_node *in, void *state) {
  const int32_t *uses = state; /* readers of each node of the source graph */
  if (!second_of_pair(src, n, uses)) return fg_graph_copy_node(dst, src, n, in);
  fg_node first = in[0]; /* conv2d_bias_act in dst too: this pass makes no other change */
  fg_conv2d_pair_attr attr = {*(const fg_conv2d_bias_act_attr *)fg_node_attr(dst, first),
                              *(const fg_conv2d_bias_act_attr *)fg_node_attr(src, n)};
  fg_node args[5] = {fg_node_input(dst, first, 0), fg_node_input(dst, first, 1),
                     fg_node_input(dst, first, 2), in[1], in[2]};
  c->changes++;
  return fg_graph_add_node(dst, FG_OP_CONV2D_PAIR, 5, args, &attr);
}

fg_status fg_pass_pair(fg_pass_ctx *c) {
  int32_t *uses;
  fg_status st = fg_pass_reader_counts(&uses, c->g, c->n_out, c->outs, c->e);
  if (st != FG_OK) return st;
  st = fg_pass_rewrite(c, pair_emit, uses);
  free(uses);
  int64_t paired = c->changes;
  /* the first convs that were paired are unread now */
  if (st == FG_OK && paired > 0 && !c->keep_dead) st = fg_pass_dce(c);
  c->changes = paired;
  return st;
}
