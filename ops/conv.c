/* conv2d (NCHW; stride, padding, dilation) and its two transposes, each an op with its own VJP,
 * and conv2d_bias_act (conv2d + bias (+ relu) in one op, made by the compiler's epilogue pass)
 * and conv2d_chain (two or three of those a few images at a time, made by the compiler's chain
 * pass), conv2d_input_grad_relu (the input gradient masked by a relu's output, made by the
 * epilogue pass in a training graph's backward pass) and conv2d_weight_bias_grad (the weight
 * gradient and a bias's, dy's channel sums, made by the bias_grad pass) and
 * conv2d_input_weight_grad (both gradients, and the bias's, from one read of dy, made by the
 * conv_grads pass).
 *
 * The three ops are the partial derivatives of one trilinear form,
 *   T(x, w, dy) = <conv2d(x, w), dy> = <x, input_grad(dy, w)> = <w, weight_grad(x, dy)>,
 * so every VJP is one of the three ops again:
 *   conv2d(x, w),           cotangent g:  dx = input_grad(g, w),   dw = weight_grad(x, g)
 *   input_grad(dy, w),      cotangent g:  ddy = conv2d(g, w),      dw = weight_grad(g, dy)
 *   weight_grad(x, dy),     cotangent g:  dx = input_grad(dy, g),  ddy = conv2d(x, g)
 * and derivatives of any order stay within them.
 *
 * Bias is not an input: fg_conv2d adds bias reshaped to [1, O, 1, 1] as an ordinary broadcast
 * add, whose gradient autodiff already sums down; keeping the op bilinear is what makes the
 * identities above close.
 *
 * The kernels are in ops/kernels/conv.c, which chooses per call between im2col + GEMM, direct
 * kernels and shifted GEMMs by fixed rules; each op also lists those paths and oneDNN's
 * primitives (ops/kernels/onednn.c) as implementations a program picks among by timing them. */
#include <string.h>

#include "core/ir/op.h"
#include "ops/infer.h"
#include "ops/kernels/conv_internal.h"
#include "ops/kernels/kernels.h"
#include "ops/kernels/onednn.h"
#include "ops/ops.h"

#define CONV_OPT_MAX ((int64_t)1 << 31)

fg_conv2d_opts fg_conv2d_defaults(void) {
  fg_conv2d_opts o;
  memset(&o, 0, sizeof o);
  o.stride[0] = o.stride[1] = 1;
  o.dilation[0] = o.dilation[1] = 1;
  return o;
}

static fg_status check_opts(fg_infer_args *a, const fg_conv2d_opts *o) {
  for (int i = 0; i < 2; i++) {
    const char *bad = NULL;
    if (o->stride[i] < 1 || o->stride[i] > CONV_OPT_MAX) bad = "stride";
    else if (o->dilation[i] < 1 || o->dilation[i] > CONV_OPT_MAX) bad = "dilation";
    else if (o->padding[i] < 0 || o->padding[i] > CONV_OPT_MAX) bad = "padding";
    if (bad)
      return fg_infer_fail(a, FG_E_SHAPE, "stride and dilation in 1..2^31, padding in 0..2^31; "
                           "got stride (%lld, %lld), padding (%lld, %lld), dilation (%lld, %lld) "
                           "(bad %s)", (long long)o->stride[0], (long long)o->stride[1],
                           (long long)o->padding[0], (long long)o->padding[1],
                           (long long)o->dilation[0], (long long)o->dilation[1], bad);
  }
  return FG_OK;
}

/* Validates options, kernel size and fit, and fills ho, wo.  g's sizes must be set. */
static fg_status geom_finish(fg_infer_args *a, conv_geom *g, const fg_conv2d_opts *o) {
  fg_status st = check_opts(a, o);
  if (st != FG_OK) return st;
  conv_geom_set_opts(g, o);
  if (g->kh < 1 || g->kw < 1)
    return fg_infer_fail(a, FG_E_SHAPE, "a kernel of at least 1x1, got %lldx%lld",
                         (long long)g->kh, (long long)g->kw);
  g->ho = conv_out_extent(g->h, g->kh, g->sh, g->ph, g->dh);
  g->wo = conv_out_extent(g->w, g->kw, g->sw, g->pw, g->dw);
  if (g->ho < 0 || g->wo < 0)
    return fg_infer_fail(a, FG_E_SHAPE, "a kernel %lldx%lld (dilation %lldx%lld) that fits the "
                         "input %lldx%lld padded by (%lld, %lld) on each side",
                         (long long)g->kh, (long long)g->kw, (long long)g->dh, (long long)g->dw,
                         (long long)g->h, (long long)g->w, (long long)g->ph, (long long)g->pw);
  return FG_OK;
}

/* ---- shape rules ---- */

static fg_status check_pair(fg_infer_args *a, const char *n0, const char *n1) {
  char s0[96], s1[96];
  if (a->in_dtype[0] != a->in_dtype[1])
    return fg_infer_fail(a, FG_E_DTYPE, "%s and %s of one dtype, got %s and %s", n0, n1,
                         fg_dtype_name(a->in_dtype[0]), fg_dtype_name(a->in_dtype[1]));
  if (a->in_shape[0].ndim != 4 || a->in_shape[1].ndim != 4)
    return fg_infer_fail(a, FG_E_SHAPE, "4-D %s and %s, got %s and %s", n0, n1,
                         fg_shape_str(&a->in_shape[0], s0, sizeof s0),
                         fg_shape_str(&a->in_shape[1], s1, sizeof s1));
  return FG_OK;
}

static fg_status mismatch(fg_infer_args *a, const char *what, int64_t got, int64_t want) {
  char s0[96], s1[96];
  return fg_infer_fail(a, FG_E_SHAPE, "%s: %lld, expected %lld (inputs %s and %s)", what,
                       (long long)got, (long long)want,
                       fg_shape_str(&a->in_shape[0], s0, sizeof s0),
                       fg_shape_str(&a->in_shape[1], s1, sizeof s1));
}

static fg_status conv2d_infer(fg_infer_args *a) {
  const fg_conv2d_attr *at = a->attr;
  fg_status st = check_pair(a, "input x [N, C, H, W]", "weight w [O, C, KH, KW]");
  if (st != FG_OK) return st;
  const int64_t *x = a->in_shape[0].d, *w = a->in_shape[1].d;
  if (x[1] != w[1]) return mismatch(a, "weight's input channels (dim 1)", w[1], x[1]);
  conv_geom g = {.n = x[0], .c = x[1], .h = x[2], .w = x[3], .o = w[0], .kh = w[2], .kw = w[3]};
  st = geom_finish(a, &g, &at->geom);
  if (st != FG_OK) return st;
  a->out_shape = fg_shape4(g.n, g.o, g.ho, g.wo);
  return FG_OK;
}

static fg_status bias_act_infer(fg_infer_args *a) {
  fg_status st = conv2d_infer(a); /* reads the geometry, the attr's first member */
  if (st != FG_OK) return st;
  char s0[96];
  if (a->in_dtype[2] != a->in_dtype[0])
    return fg_infer_fail(a, FG_E_DTYPE, "a bias of the input's dtype %s, got %s",
                         fg_dtype_name(a->in_dtype[0]), fg_dtype_name(a->in_dtype[2]));
  if (fg_shape_count(&a->in_shape[2]) != a->out_shape.d[1])
    return fg_infer_fail(a, FG_E_SHAPE, "a bias of %lld elements (one per output channel), got "
                         "%s", (long long)a->out_shape.d[1],
                         fg_shape_str(&a->in_shape[2], s0, sizeof s0));
  return FG_OK;
}

/* Each conv as conv2d_bias_act's rule, each reading the one before's output. */
static fg_status chain_infer(fg_infer_args *a) {
  const fg_conv2d_chain_attr *at = a->attr;
  if (at->n_convs < 2 || at->n_convs > FG_CONV2D_CHAIN_MAX || a->n_in != 1 + 2 * at->n_convs)
    return fg_infer_fail(a, FG_E_SHAPE, "2 to %d convs, each a weight and a bias after x, got "
                         "%lld convs and %d inputs", FG_CONV2D_CHAIN_MAX,
                         (long long)at->n_convs, a->n_in);
  fg_shape x = a->in_shape[0];
  fg_dtype t = a->in_dtype[0];
  for (int i = 0; i < at->n_convs; i++) {
    fg_shape in[3] = {x, a->in_shape[1 + 2 * i], a->in_shape[2 + 2 * i]};
    fg_dtype dt[3] = {t, a->in_dtype[1 + 2 * i], a->in_dtype[2 + 2 * i]};
    fg_infer_args one = {.n_in = 3, .in_shape = in, .in_dtype = dt, .attr = &at->conv[i],
                         .out_shape = x, .out_dtype = t};
    fg_status st = bias_act_infer(&one);
    if (st != FG_OK) return fg_infer_fail(a, st, "conv %d: %s", i + 1, one.why);
    x = one.out_shape, t = one.out_dtype;
  }
  a->out_shape = x, a->out_dtype = t;
  return FG_OK;
}

static fg_status input_grad_infer(fg_infer_args *a) {
  const fg_conv2d_attr *at = a->attr;
  fg_status st = check_pair(a, "dy [N, O, Ho, Wo]", "weight w [O, C, KH, KW]");
  if (st != FG_OK) return st;
  const int64_t *dy = a->in_shape[0].d, *w = a->in_shape[1].d;
  if (dy[1] != w[0]) return mismatch(a, "dy's channels (dim 1) against w's outputs", dy[1], w[0]);
  conv_geom g = {.n = dy[0], .c = w[1], .h = at->size[0], .w = at->size[1], .o = w[0],
                 .kh = w[2], .kw = w[3]};
  if (g.h < 0 || g.w < 0)
    return fg_infer_fail(a, FG_E_SHAPE, "an input size (h, w) >= 0, got (%lld, %lld)",
                         (long long)g.h, (long long)g.w);
  st = geom_finish(a, &g, &at->geom);
  if (st != FG_OK) return st;
  if (dy[2] != g.ho) return mismatch(a, "dy's height for this input size", dy[2], g.ho);
  if (dy[3] != g.wo) return mismatch(a, "dy's width for this input size", dy[3], g.wo);
  a->out_shape = fg_shape4(g.n, g.c, g.h, g.w);
  return FG_OK;
}

/* conv2d_input_grad's rule for dy and w; y, the relu's output, of the result's shape and dtype. */
static fg_status input_grad_relu_infer(fg_infer_args *a) {
  char s0[96], s1[96];
  if (a->in_shape[2].ndim != 4) /* the input size comes from y's: name y, not the size */
    return fg_infer_fail(a, FG_E_SHAPE, "a 4-D relu output y [N, C, H, W], got %s",
                         fg_shape_str(&a->in_shape[2], s0, sizeof s0));
  fg_status st = input_grad_infer(a);
  if (st != FG_OK) return st;
  if (a->in_dtype[2] != a->in_dtype[0])
    return fg_infer_fail(a, FG_E_DTYPE, "a relu output y of dy's dtype %s, got %s",
                         fg_dtype_name(a->in_dtype[0]), fg_dtype_name(a->in_dtype[2]));
  if (!fg_shape_equal(&a->in_shape[2], &a->out_shape))
    return fg_infer_fail(a, FG_E_SHAPE, "a relu output y of the input gradient's shape %s, got %s",
                         fg_shape_str(&a->out_shape, s0, sizeof s0),
                         fg_shape_str(&a->in_shape[2], s1, sizeof s1));
  return FG_OK;
}

static fg_status weight_grad_infer(fg_infer_args *a) {
  const fg_conv2d_attr *at = a->attr;
  fg_status st = check_pair(a, "input x [N, C, H, W]", "dy [N, O, Ho, Wo]");
  if (st != FG_OK) return st;
  const int64_t *x = a->in_shape[0].d, *dy = a->in_shape[1].d;
  if (x[0] != dy[0]) return mismatch(a, "dy's batch against x's", dy[0], x[0]);
  conv_geom g = {.n = x[0], .c = x[1], .h = x[2], .w = x[3], .o = dy[1], .kh = at->size[0],
                 .kw = at->size[1]};
  st = geom_finish(a, &g, &at->geom);
  if (st != FG_OK) return st;
  if (dy[2] != g.ho) return mismatch(a, "dy's height for this kernel", dy[2], g.ho);
  if (dy[3] != g.wo) return mismatch(a, "dy's width for this kernel", dy[3], g.wo);
  a->out_shape = fg_shape4(g.o, g.c, g.kh, g.kw);
  return FG_OK;
}

/* x, w as conv2d's, dy of conv2d(x, w)'s shape and dtype; the result flat: dx, dw (, db). */
static fg_status input_weight_grad_infer(fg_infer_args *a) {
  const fg_conv2d_grads_attr *at = a->attr;
  fg_status st = conv2d_infer(a); /* x and w; reads the geometry, the attr's first member */
  if (st != FG_OK) return st;
  char s0[96], s1[96];
  if (a->in_dtype[2] != a->in_dtype[0])
    return fg_infer_fail(a, FG_E_DTYPE, "dy of the input's dtype %s, got %s",
                         fg_dtype_name(a->in_dtype[0]), fg_dtype_name(a->in_dtype[2]));
  if (!fg_shape_equal(&a->in_shape[2], &a->out_shape))
    return fg_infer_fail(a, FG_E_SHAPE, "dy of the conv's output shape %s, got %s",
                         fg_shape_str(&a->out_shape, s0, sizeof s0),
                         fg_shape_str(&a->in_shape[2], s1, sizeof s1));
  int64_t o = a->in_shape[1].d[0];
  a->out_shape = fg_shape1(fg_shape_count(&a->in_shape[0]) + fg_shape_count(&a->in_shape[1]) +
                           (at->bias ? o : 0));
  return FG_OK;
}

/* conv2d_weight_grad's rule, the result flat with the bias gradient's O elements after. */
static fg_status weight_bias_grad_infer(fg_infer_args *a) {
  fg_status st = weight_grad_infer(a);
  if (st != FG_OK) return st;
  a->out_shape = fg_shape1(fg_shape_count(&a->out_shape) + a->out_shape.d[0]);
  return FG_OK;
}

/* ---- builders ---- */

static fg_node add_conv_node(fg_graph *g, int op, fg_node a, fg_node b,
                             const fg_conv2d_opts *opts, int64_t s0, int64_t s1) {
  fg_conv2d_attr attr;
  memset(&attr, 0, sizeof attr);
  attr.geom = opts ? *opts : fg_conv2d_defaults();
  attr.size[0] = s0, attr.size[1] = s1;
  fg_node in[2] = {a, b};
  return fg_graph_add_node(g, op, 2, in, &attr);
}

static fg_node add_bias(fg_graph *g, fg_node y, fg_node bias) {
  if (bias == FG_NONE || !fg_node_valid(g, y)) return y;
  if (!fg_node_valid(g, bias)) return fg_graph_fail(g, FG_E_MISUSE, "conv2d: invalid bias node");
  fg_shape bs = fg_node_shape(g, bias), ys = fg_node_shape(g, y);
  if (bs.ndim != 1 || bs.d[0] != ys.d[1]) {
    char s0[96], s1[96];
    return fg_graph_fail(g, FG_E_SHAPE, "conv2d: bias %s must be [O] for the output %s",
                         fg_shape_str(&bs, s0, sizeof s0), fg_shape_str(&ys, s1, sizeof s1));
  }
  if (fg_node_dtype(g, bias) != fg_node_dtype(g, y))
    return fg_graph_fail(g, FG_E_DTYPE, "conv2d: bias is %s, the convolution %s",
                         fg_dtype_name(fg_node_dtype(g, bias)), fg_dtype_name(fg_node_dtype(g, y)));
  return fg_add(g, y, fg_reshape(g, bias, fg_shape4(1, bs.d[0], 1, 1)));
}

fg_node fg_conv2d(fg_graph *g, fg_node x, fg_node w, fg_node bias, const fg_conv2d_opts *opts) {
  return add_bias(g, add_conv_node(g, FG_OP_CONV2D, x, w, opts, 0, 0), bias);
}

fg_node fg_conv2d_bias_act(fg_graph *g, fg_node x, fg_node w, fg_node b,
                           const fg_conv2d_opts *opts, bool relu) {
  fg_conv2d_bias_act_attr attr;
  memset(&attr, 0, sizeof attr);
  attr.geom = opts ? *opts : fg_conv2d_defaults();
  attr.relu = relu;
  fg_node in[3] = {x, w, b};
  return fg_graph_add_node(g, FG_OP_CONV2D_BIAS_ACT, 3, in, &attr);
}

fg_node fg_conv2d_chain(fg_graph *g, fg_node x, int n_convs, const fg_node *w, const fg_node *b,
                        const fg_conv2d_opts *opts, const bool *relu) {
  if (n_convs < 2 || n_convs > FG_CONV2D_CHAIN_MAX)
    return fg_graph_fail(g, FG_E_MISUSE, "conv2d_chain: 2 to %d convs, got %d",
                         FG_CONV2D_CHAIN_MAX, n_convs);
  fg_conv2d_chain_attr attr;
  memset(&attr, 0, sizeof attr);
  attr.n_convs = n_convs;
  fg_node in[1 + 2 * FG_CONV2D_CHAIN_MAX] = {x};
  for (int i = 0; i < n_convs; i++) {
    attr.conv[i].geom = opts ? opts[i] : fg_conv2d_defaults(), attr.conv[i].relu = relu[i];
    in[1 + 2 * i] = w[i], in[2 + 2 * i] = b[i];
  }
  return fg_graph_add_node(g, FG_OP_CONV2D_CHAIN, 1 + 2 * n_convs, in, &attr);
}

fg_node fg_conv2d_input_grad(fg_graph *g, fg_node dy, fg_node w, int64_t h, int64_t w_size,
                             const fg_conv2d_opts *opts) {
  return add_conv_node(g, FG_OP_CONV2D_INPUT_GRAD, dy, w, opts, h, w_size);
}

/* The input size is y's (the shape rule checks y against the result). */
fg_node fg_conv2d_input_grad_relu(fg_graph *g, fg_node dy, fg_node w, fg_node y,
                                  const fg_conv2d_opts *opts) {
  if (!fg_node_valid(g, y))
    return fg_graph_fail(g, FG_E_MISUSE, "conv2d_input_grad_relu: invalid relu output node");
  fg_shape ys = fg_node_shape(g, y);
  fg_conv2d_attr attr;
  memset(&attr, 0, sizeof attr);
  attr.geom = opts ? *opts : fg_conv2d_defaults();
  attr.size[0] = ys.ndim == 4 ? ys.d[2] : 0, attr.size[1] = ys.ndim == 4 ? ys.d[3] : 0;
  return fg_graph_add_node(g, FG_OP_CONV2D_INPUT_GRAD_RELU, 3, (const fg_node[]){dy, w, y},
                           &attr);
}

fg_node fg_conv2d_weight_grad(fg_graph *g, fg_node x, fg_node dy, int64_t kh, int64_t kw,
                              const fg_conv2d_opts *opts) {
  return add_conv_node(g, FG_OP_CONV2D_WEIGHT_GRAD, x, dy, opts, kh, kw);
}

fg_node fg_conv2d_weight_bias_grad(fg_graph *g, fg_node x, fg_node dy, int64_t kh, int64_t kw,
                                   const fg_conv2d_opts *opts) {
  return add_conv_node(g, FG_OP_CONV2D_WEIGHT_BIAS_GRAD, x, dy, opts, kh, kw);
}

fg_node fg_conv2d_input_weight_grad(fg_graph *g, fg_node x, fg_node w, fg_node dy, bool bias,
                                    const fg_conv2d_opts *opts) {
  fg_conv2d_grads_attr attr;
  memset(&attr, 0, sizeof attr);
  attr.geom = opts ? *opts : fg_conv2d_defaults();
  attr.bias = bias;
  return fg_graph_add_node(g, FG_OP_CONV2D_INPUT_WEIGHT_GRAD, 3, (const fg_node[]){x, w, dy},
                           &attr);
}

/* ---- VJPs: the identities at the top of the file ---- */

static fg_status conv2d_vjp(fg_graph *g, fg_node node, fg_node gout, uint32_t need,
                            fg_node *gin) {
  const fg_conv2d_attr *at = fg_node_attr(g, node);
  fg_node x = fg_node_input(g, node, 0), w = fg_node_input(g, node, 1);
  fg_shape xs = fg_node_shape(g, x), ws = fg_node_shape(g, w);
  if (need & 1u) gin[0] = fg_conv2d_input_grad(g, gout, w, xs.d[2], xs.d[3], &at->geom);
  if (need & 2u) gin[1] = fg_conv2d_weight_grad(g, x, gout, ws.d[2], ws.d[3], &at->geom);
  return fg_graph_status(g);
}

/* Through the activation first (relu from its output, as relu's own VJP), then as conv2d and
 * the bias add. */
static fg_status bias_act_vjp(fg_graph *g, fg_node node, fg_node gout, uint32_t need,
                              fg_node *gin) {
  const fg_conv2d_bias_act_attr *at = fg_node_attr(g, node);
  fg_node x = fg_node_input(g, node, 0), w = fg_node_input(g, node, 1);
  fg_node b = fg_node_input(g, node, 2);
  fg_shape xs = fg_node_shape(g, x), ws = fg_node_shape(g, w);
  if (at->relu)
    gout = fg_mul(g, gout, fg_greater(g, node, fg_scalar(g, 0.0, fg_node_dtype(g, node))));
  if (need & 1u) gin[0] = fg_conv2d_input_grad(g, gout, w, xs.d[2], xs.d[3], &at->geom);
  if (need & 2u) gin[1] = fg_conv2d_weight_grad(g, x, gout, ws.d[2], ws.d[3], &at->geom);
  if (need & 4u)
    gin[2] = fg_reshape(g, fg_sum(g, gout, FG_AXIS(0) | FG_AXIS(2) | FG_AXIS(3), false),
                        fg_node_shape(g, b));
  return fg_graph_status(g);
}

/* Through the last conv (its relu from the chain's output), then as conv2d_bias_act back
 * through the others, whose outputs are computed again. */
static fg_status chain_vjp(fg_graph *g, fg_node node, fg_node gout, uint32_t need, fg_node *gin) {
  const fg_conv2d_chain_attr *at = fg_node_attr(g, node);
  int n = (int)at->n_convs, last = n - 1;
  if (n < 2 || n > FG_CONV2D_CHAIN_MAX) /* the shape rule let no other count through */
    return fg_graph_fail(g, FG_E_INTERNAL, "conv2d_chain of %d convs", n);
  fg_node in[1 + 2 * FG_CONV2D_CHAIN_MAX] = {FG_NONE}, mid[FG_CONV2D_CHAIN_MAX];
  for (int k = 0; k < 1 + 2 * n; k++) in[k] = fg_node_input(g, node, k);
  mid[0] = in[0]; /* mid[i]: conv i's input */
  for (int i = 1; i < n; i++)
    mid[i] = fg_conv2d_bias_act(g, mid[i - 1], in[2 * i - 1], in[2 * i], &at->conv[i - 1].geom,
                                at->conv[i - 1].relu);
  if (at->conv[last].relu)
    gout = fg_mul(g, gout, fg_greater(g, node, fg_scalar(g, 0.0, fg_node_dtype(g, node))));
  fg_node w = in[1 + 2 * last];
  fg_shape ms = fg_node_shape(g, mid[last]), ws = fg_node_shape(g, w);
  const fg_conv2d_opts *geom = &at->conv[last].geom;
  if (need & (1u << (1 + 2 * last)))
    gin[1 + 2 * last] = fg_conv2d_weight_grad(g, mid[last], gout, ws.d[2], ws.d[3], geom);
  if (need & (1u << (2 + 2 * last)))
    gin[2 + 2 * last] = fg_reshape(g, fg_sum(g, gout, FG_AXIS(0) | FG_AXIS(2) | FG_AXIS(3), false),
                                   fg_node_shape(g, in[2 + 2 * last]));
  if (!(need & ((1u << (1 + 2 * last)) - 1))) return fg_graph_status(g); /* nothing before */
  gout = fg_conv2d_input_grad(g, gout, w, ms.d[2], ms.d[3], geom); /* of the last conv's input */
  for (int i = last - 1; i >= 0; i--) { /* gout: the gradient of conv i's output, mid[i + 1] */
    if (!(need & ((1u << (1 + 2 * (i + 1))) - 1))) break; /* nothing wanted up to conv i */
    fg_node g3[3] = {FG_NONE, FG_NONE, FG_NONE};
    uint32_t need3 = (i > 0 || (need & 1u) ? 1u : 0) | (need >> (2 * i) & 6u); /* x, w_i, b_i */
    fg_status st = bias_act_vjp(g, mid[i + 1], gout, need3, g3);
    if (st != FG_OK) return st;
    gin[1 + 2 * i] = g3[1], gin[2 + 2 * i] = g3[2];
    if (i == 0) gin[0] = g3[0];
    gout = g3[0];
  }
  return fg_graph_status(g);
}

static fg_status input_grad_vjp(fg_graph *g, fg_node node, fg_node gout, uint32_t need,
                                fg_node *gin) {
  const fg_conv2d_attr *at = fg_node_attr(g, node);
  fg_node dy = fg_node_input(g, node, 0), w = fg_node_input(g, node, 1);
  fg_shape ws = fg_node_shape(g, w);
  if (need & 1u) gin[0] = fg_conv2d(g, gout, w, FG_NONE, &at->geom);
  if (need & 2u) gin[1] = fg_conv2d_weight_grad(g, gout, dy, ws.d[2], ws.d[3], &at->geom);
  return fg_graph_status(g);
}

/* Through the mask (the product's VJP), then as conv2d_input_grad; y gets none: the mask is
 * piecewise constant in it, as greater's. */
static fg_status input_grad_relu_vjp(fg_graph *g, fg_node node, fg_node gout, uint32_t need,
                                     fg_node *gin) {
  fg_node y = fg_node_input(g, node, 2);
  gout = fg_mul(g, gout, fg_greater(g, y, fg_scalar(g, 0.0, fg_node_dtype(g, y))));
  return input_grad_vjp(g, node, gout, need & 3u, gin);
}

static fg_status weight_grad_vjp(fg_graph *g, fg_node node, fg_node gout, uint32_t need,
                                 fg_node *gin) {
  const fg_conv2d_attr *at = fg_node_attr(g, node);
  fg_node x = fg_node_input(g, node, 0), dy = fg_node_input(g, node, 1);
  fg_shape xs = fg_node_shape(g, x);
  if (need & 1u) gin[0] = fg_conv2d_input_grad(g, dy, gout, xs.d[2], xs.d[3], &at->geom);
  if (need & 2u) gin[1] = fg_conv2d(g, x, gout, FG_NONE, &at->geom);
  return fg_graph_status(g);
}

/* The weight gradient's part as weight_grad's VJP; the bias gradient's (a sum over N, Ho, Wo)
 * broadcast back and added to ddy, as conv2d's bias. */
static fg_status weight_bias_grad_vjp(fg_graph *g, fg_node node, fg_node gout, uint32_t need,
                                      fg_node *gin) {
  const fg_conv2d_attr *at = fg_node_attr(g, node);
  fg_node x = fg_node_input(g, node, 0), dy = fg_node_input(g, node, 1);
  fg_shape xs = fg_node_shape(g, x), ds = fg_node_shape(g, dy);
  fg_shape ws = fg_shape4(ds.d[1], xs.d[1], at->size[0], at->size[1]);
  int64_t nw = fg_shape_count(&ws);
  fg_node gw = fg_reshape(g, fg_slice_axis(g, gout, 0, 0, nw), ws);
  if (need & 1u) gin[0] = fg_conv2d_input_grad(g, dy, gw, xs.d[2], xs.d[3], &at->geom);
  if (need & 2u)
    gin[1] = fg_conv2d(g, x, gw, fg_slice_axis(g, gout, 0, nw, nw + ws.d[0]), &at->geom);
  return fg_graph_status(g);
}

/* The three parts' VJPs: dx = input_grad(dy, w) is linear in w and dy, dw = weight_grad(x, dy)
 * in x and dy, db = dy's sums in dy. */
static fg_status input_weight_grad_vjp(fg_graph *g, fg_node node, fg_node gout, uint32_t need,
                                       fg_node *gin) {
  const fg_conv2d_grads_attr *at = fg_node_attr(g, node);
  fg_node x = fg_node_input(g, node, 0), w = fg_node_input(g, node, 1);
  fg_node dy = fg_node_input(g, node, 2);
  fg_shape xs = fg_node_shape(g, x), ws = fg_node_shape(g, w);
  int64_t nx = fg_shape_count(&xs), nw = fg_shape_count(&ws);
  fg_node gx = fg_reshape(g, fg_slice_axis(g, gout, 0, 0, nx), xs);
  fg_node gw = fg_reshape(g, fg_slice_axis(g, gout, 0, nx, nx + nw), ws);
  fg_node gb = at->bias ? fg_slice_axis(g, gout, 0, nx + nw, nx + nw + ws.d[0]) : FG_NONE;
  if (need & 1u) gin[0] = fg_conv2d_input_grad(g, dy, gw, xs.d[2], xs.d[3], &at->geom);
  if (need & 2u) gin[1] = fg_conv2d_weight_grad(g, gx, dy, ws.d[2], ws.d[3], &at->geom);
  if (need & 4u)
    gin[2] = fg_add(g, fg_conv2d(g, gx, w, FG_NONE, &at->geom),
                    fg_conv2d(g, x, gw, gb, &at->geom));
  return fg_graph_status(g);
}

/* ---- the implementations a program chooses among (core/runtime/kernel_choice.h) ---- */

#ifdef FG_HAVE_DNNL
/* The three ways oneDNN runs a conv, each through `kernel`. */
#define ONEDNN_IMPLS_WITH(kernel)                                                             \
  {"onednn", fg_onednn_conv_prepare, fg_onednn_release, kernel, NULL},                        \
      {"onednn_nchw", fg_onednn_conv_prepare_nchw, fg_onednn_release, kernel, NULL},          \
      {"onednn_wino", fg_onednn_conv_prepare_wino, fg_onednn_release, kernel, NULL},
#define ONEDNN_IMPLS ONEDNN_IMPLS_WITH(fg_onednn_conv_f32)
/* conv2d_input_grad_relu's: the primitives, then the mask in a phase of its own. */
#define ONEDNN_MASKED_IMPLS ONEDNN_IMPLS_WITH(fg_onednn_conv_masked_f32)
/* conv2d_input_weight_grad's: the two gradients' primitives one after the other. */
#define ONEDNN_GRADS_IMPLS                                                                    \
  {"onednn", fg_onednn_grads_prepare, fg_onednn_grads_release, fg_onednn_grads_f32, NULL},    \
      {"onednn_nchw", fg_onednn_grads_prepare_nchw, fg_onednn_grads_release,                  \
       fg_onednn_grads_f32, NULL},                                                            \
      {"onednn_wino", fg_onednn_grads_prepare_wino, fg_onednn_grads_release,                  \
       fg_onednn_grads_f32, NULL},
#else
#define ONEDNN_IMPLS
#define ONEDNN_MASKED_IMPLS
#define ONEDNN_GRADS_IMPLS
#endif
/* The native paths, each through the op's own kernels (which run the path their state names). */
#define PATH_IMPL(path, op) {#path, fg_conv_prepare_##path, NULL, FG_KERNELS(op)}

/* One GEMM over the taps (ops/kernels/conv_taps.c), with kernels of its own. */
#define TAPS_IMPL                                                                             \
  {"taps", fg_conv_prepare_taps, fg_conv_taps_release, fg_conv_taps_f32, fg_conv_taps_f64}

static const fg_kernel_impl conv2d_impls[] = {
    ONEDNN_IMPLS PATH_IMPL(direct, conv2d), PATH_IMPL(shifted, conv2d), PATH_IMPL(gemm, conv2d),
    PATH_IMPL(pointwise, conv2d), TAPS_IMPL};
static const fg_kernel_impl bias_act_impls[] = {
    ONEDNN_IMPLS PATH_IMPL(direct, conv2d_bias_act), PATH_IMPL(shifted, conv2d_bias_act),
    PATH_IMPL(gemm, conv2d_bias_act), PATH_IMPL(pointwise, conv2d_bias_act), TAPS_IMPL};
static const fg_kernel_impl input_grad_impls[] = {
    ONEDNN_IMPLS PATH_IMPL(direct, conv2d_input_grad), PATH_IMPL(gemm, conv2d_input_grad),
    PATH_IMPL(pointwise, conv2d_input_grad), TAPS_IMPL};
/* The native paths and the taps apply the mask as they write, oneDNN's in a phase after. */
static const fg_kernel_impl input_grad_relu_impls[] = {
    ONEDNN_MASKED_IMPLS PATH_IMPL(direct, conv2d_input_grad_relu),
    PATH_IMPL(gemm, conv2d_input_grad_relu),
    PATH_IMPL(pointwise, conv2d_input_grad_relu), TAPS_IMPL};
static const fg_kernel_impl weight_grad_impls[] = {
    ONEDNN_IMPLS PATH_IMPL(direct, conv2d_weight_grad), PATH_IMPL(shifted, conv2d_weight_grad),
    PATH_IMPL(gemm, conv2d_weight_grad), TAPS_IMPL};
/* Every implementation of the weight gradient takes the bias's sums too (see each). */
static const fg_kernel_impl weight_bias_grad_impls[] = {
    ONEDNN_IMPLS PATH_IMPL(direct, conv2d_weight_bias_grad),
    PATH_IMPL(shifted, conv2d_weight_bias_grad), PATH_IMPL(gemm, conv2d_weight_bias_grad),
    TAPS_IMPL};
/* The native kernels run the two gradients' paths one after the other, as oneDNN's its two
 * primitives; the taps read dy once. */
static const fg_kernel_impl input_weight_grad_impls[] = {ONEDNN_GRADS_IMPLS TAPS_IMPL};
static const fg_kernel_impl chain_impls[] = {
    {"direct", fg_conv_chain_prepare_direct, NULL, FG_KERNELS(conv2d_chain)}};
#define IMPLS(list) .impls = list, .n_impls = (int)(sizeof list / sizeof *list)

const fg_op_def fg_opdef_conv2d = {
    .name = "conv2d",
    .n_in = 2,
    .attr_size = sizeof(fg_conv2d_attr),
    .infer = conv2d_infer,
    FG_KERNELS(conv2d),
    .vjp = conv2d_vjp,
    IMPLS(conv2d_impls),
};

const fg_op_def fg_opdef_conv2d_bias_act = {
    .name = "conv2d_bias_act",
    .n_in = 3,
    .attr_size = sizeof(fg_conv2d_bias_act_attr),
    .infer = bias_act_infer,
    FG_KERNELS(conv2d_bias_act),
    .vjp = bias_act_vjp,
    IMPLS(bias_act_impls),
};

/* Native kernels only: each group of images' convs run the paths conv2d_bias_act's own kernels
 * choose (ops/kernels/conv.c), so the chain pass only makes it where those are the ones a
 * program would pick; the one alternative runs the first conv on the direct path. */
const fg_op_def fg_opdef_conv2d_chain = {
    .name = "conv2d_chain",
    .n_in = 5,
    .flags = FG_OPF_VARIADIC,
    .attr_size = sizeof(fg_conv2d_chain_attr),
    .infer = chain_infer,
    FG_KERNELS(conv2d_chain),
    .vjp = chain_vjp,
    IMPLS(chain_impls),
};

const fg_op_def fg_opdef_conv2d_input_grad = {
    .name = "conv2d_input_grad",
    .n_in = 2,
    .attr_size = sizeof(fg_conv2d_attr),
    .infer = input_grad_infer,
    FG_KERNELS(conv2d_input_grad),
    .vjp = input_grad_vjp,
    IMPLS(input_grad_impls),
};

const fg_op_def fg_opdef_conv2d_input_grad_relu = {
    .name = "conv2d_input_grad_relu",
    .n_in = 3,
    .attr_size = sizeof(fg_conv2d_attr),
    .infer = input_grad_relu_infer,
    FG_KERNELS(conv2d_input_grad_relu),
    .vjp = input_grad_relu_vjp,
    IMPLS(input_grad_relu_impls),
};

const fg_op_def fg_opdef_conv2d_weight_grad = {
    .name = "conv2d_weight_grad",
    .n_in = 2,
    .attr_size = sizeof(fg_conv2d_attr),
    .infer = weight_grad_infer,
    FG_KERNELS(conv2d_weight_grad),
    .vjp = weight_grad_vjp,
    IMPLS(weight_grad_impls),
};

const fg_op_def fg_opdef_conv2d_weight_bias_grad = {
    .name = "conv2d_weight_bias_grad",
    .n_in = 2,
    .attr_size = sizeof(fg_conv2d_attr),
    .infer = weight_bias_grad_infer,
    FG_KERNELS(conv2d_weight_bias_grad),
    .vjp = weight_bias_grad_vjp,
    IMPLS(weight_bias_grad_impls),
};

const fg_op_def fg_opdef_conv2d_input_weight_grad = {
    .name = "conv2d_input_weight_grad",
    .n_in = 3,
    .attr_size = sizeof(fg_conv2d_grads_attr),
    .infer = input_weight_grad_infer,
    FG_KERNELS(conv2d_input_weight_grad),
    .vjp = input_weight_grad_vjp,
    IMPLS(input_weight_grad_impls),
};
