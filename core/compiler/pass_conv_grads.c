/* A few-input conv's input and weight gradients from one read of dy: conv2d_input_grad(dy, w)
 * and conv2d_weight_grad(x, dy) (or conv2d_weight_bias_grad, after the bias_grad pass) of one
 * conv become one conv2d_input_weight_grad(x, w, dy), the two sliced out of its output after.
 * Only where the input has few channels x taps (C KH KW <= FEW_INPUT_TAPS, stride 1: a coupling
 * net's first conv of 2-4 channels to 256), which the taps implementation computes as two GEMMs
 * over the taps on each image of dy while it is in cache (ops/kernels/conv_taps.c); dy, 64 x
 * 256 x 14 x 14 floats in Glow K=16, is the large side, which each of the two read.  Glow K=16's
 * first convs' gradients 57 ms a training step against 65 (FG_PROFILE), the step +2.4 % (4
 * alternating pairs; "Intel(R) Xeon(R) Processor", 2 cores; README).  oneDNN's
 * implementations run the separate nodes' two primitives, so programs that ran those keep them
 * and their blocked layouts (RealNVP's first convs); the pass is off where FG_KERNELS pins
 * either gradient (core/runtime/compile.c). */
#include <stdlib.h>
#include <string.h>

#include "core/compiler/pass.h"
#include "core/ir/op.h"
#include "core/ir/op_attrs.h"

/* The taps implementation's few-input domain (TAPS_MAX_ROWS in ops/kernels/conv_taps.c). */
enum { FEW_INPUT_TAPS = 128 };

static bool is_weight_grad(const fg_graph *g, fg_node n) {
  int op = fg_node_op(g, n);
  return op == FG_OP_CONV2D_WEIGHT_GRAD || op == FG_OP_CONV2D_WEIGHT_BIAS_GRAD;
}

/* Whether the taps take a conv of weights w [O, C, KH, KW] at stride 1 as one with few input
 * channels (ops/kernels/conv_taps.c's few_in: not 1x1, few input taps, and fewer input channels
 * than output channels unless the output's taps are many too). */
static bool few_input(fg_shape ws) {
  int64_t kk = ws.d[2] * ws.d[3];
  return kk > 1 && ws.d[1] * kk <= FEW_INPUT_TAPS &&
         (ws.d[1] < ws.d[0] || ws.d[0] * kk > FEW_INPUT_TAPS);
}

/* Whether input gradient ig and weight gradient wg are one conv's: the same dy and options, ig
 * of x's size and wg of w's, few input channels at stride 1. */
static bool one_conv(const fg_graph *g, fg_node ig, fg_node wg) {
  const fg_conv2d_attr *ia = fg_node_attr(g, ig), *wa = fg_node_attr(g, wg);
  fg_node x = fg_node_input(g, wg, 0), w = fg_node_input(g, ig, 1);
  fg_shape xs = fg_node_shape(g, x), ws = fg_node_shape(g, w);
  return fg_node_input(g, ig, 0) == fg_node_input(g, wg, 1) &&
         memcmp(&ia->geom, &wa->geom, sizeof ia->geom) == 0 && ia->geom.stride[0] == 1 &&
         ia->geom.stride[1] == 1 && xs.d[1] == ws.d[1] && ia->size[0] == xs.d[2] &&
         ia->size[1] == xs.d[3] && wa->size[0] == ws.d[2] && wa->size[1] == ws.d[3] &&
         few_input(ws) && fg_node_dtype(g, x) == fg_node_dtype(g, w);
}

/* Pairs each input gradient with a weight gradient of the same conv, one each. */
static fg_status find_pairs(fg_node *partner, const fg_graph *g, fg_err *e) {
  int32_t count = fg_graph_node_count(g);
  fg_node *wgrad_of = malloc(sizeof *wgrad_of * ((size_t)count + 1));
  if (!wgrad_of) return fg_err_set(e, FG_E_NOMEM, "conv_grads: out of memory");
  for (fg_node n = 0; n < count; n++) wgrad_of[n] = partner[n] = FG_NONE;
  for (fg_node n = 0; n < count; n++) /* by dy */
    if (is_weight_grad(g, n) && wgrad_of[fg_node_input(g, n, 1)] == FG_NONE)
      wgrad_of[fg_node_input(g, n, 1)] = n;
  for (fg_node n = 0; n < count; n++) {
    if (fg_node_op(g, n) != FG_OP_CONV2D_INPUT_GRAD) continue;
    fg_node wg = wgrad_of[fg_node_input(g, n, 0)];
    if (wg == FG_NONE || partner[wg] != FG_NONE || !one_conv(g, n, wg)) continue;
    partner[n] = wg, partner[wg] = n;
  }
  free(wgrad_of);
  return FG_OK;
}

/* The fused op of the pair, once x, w and dy are in dst. */
static fg_node make(fg_pass_ctx *c, fg_graph *dst, const fg_graph *src, fg_node a, fg_node b) {
  fg_node ig = fg_node_op(src, a) == FG_OP_CONV2D_INPUT_GRAD ? a : b, wg = a == ig ? b : a;
  const fg_node args[3] = {c->map[fg_node_input(src, wg, 0)], c->map[fg_node_input(src, ig, 1)],
                           c->map[fg_node_input(src, ig, 0)]};
  if (args[0] == FG_NONE || args[1] == FG_NONE || args[2] == FG_NONE) return FG_NONE;
  fg_conv2d_grads_attr attr;
  memset(&attr, 0, sizeof attr);
  attr.geom = ((const fg_conv2d_attr *)fg_node_attr(src, ig))->geom;
  attr.bias = fg_node_op(src, wg) == FG_OP_CONV2D_WEIGHT_BIAS_GRAD;
  return fg_graph_add_node(dst, FG_OP_CONV2D_INPUT_WEIGHT_GRAD, 3, args, &attr);
}

/* The input gradient [0, N C H W), the weight gradient (and bias) after it. */
static void range(const fg_graph *dst, fg_node f, const fg_graph *src, fg_node n, int64_t *from,
                  int64_t *to) {
  fg_shape xs = fg_node_shape(dst, fg_node_input(dst, f, 0));
  int64_t nx = fg_shape_count(&xs);
  bool input = fg_node_op(src, n) == FG_OP_CONV2D_INPUT_GRAD;
  *from = input ? 0 : nx, *to = input ? nx : fg_node_shape(dst, f).d[0];
}

fg_status fg_pass_conv_grads(fg_pass_ctx *c) {
  static const fg_pair_fusion pairs = {find_pairs, make, range};
  return fg_pass_rewrite_pairs(c, &pairs);
}
