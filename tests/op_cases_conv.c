/* Cases for conv2d, its two transposes, conv2d_bias_act, conv2d_chain, conv2d_input_grad_relu,
 * conv2d_weight_bias_grad and conv2d_input_weight_grad (ops/conv.c), against direct seven-deep
 * loops written from the definition
 *   y[n,o,i,j] = sum_{c,p,q} x[n, c, i sh - ph + p dh, j sw - pw + q dw] w[o,c,p,q]
 * (out-of-range x reads as zero): stride, dilation, padding larger than the kernel, non-square
 * images and kernels, 1x1 kernels (the no-im2col path), bias, batch of one, an empty batch. */
#include <string.h>

#include "tests/op_cases.h"

typedef struct conv_case {
  fg_conv2d_opts o;
  bool bias;
  bool relu; /* conv2d_bias_act: relu after the bias */
  int64_t size[2]; /* input_grad: the input's (H, W); weight_grad: the kernel's (KH, KW) */
} conv_case;

#define OPTS(sh, sw, ph, pw, dh, dw) {{sh, sw}, {ph, pw}, {dh, dw}}

static fg_node build_conv(fg_graph *g, const fg_node *in, const void *ctx) {
  const conv_case *c = ctx;
  return fg_conv2d(g, in[0], in[1], c->bias ? in[2] : FG_NONE, &c->o);
}
static fg_node build_bias_act(fg_graph *g, const fg_node *in, const void *ctx) {
  const conv_case *c = ctx;
  return fg_conv2d_bias_act(g, in[0], in[1], in[2], &c->o, c->relu);
}
/* conv2d_chain: the convs' cases, in order */
typedef struct chain_case {
  int n;
  conv_case conv[FG_CONV2D_CHAIN_MAX];
} chain_case;
static fg_node build_chain(fg_graph *g, const fg_node *in, const void *ctx) {
  const chain_case *c = ctx;
  fg_node w[FG_CONV2D_CHAIN_MAX], b[FG_CONV2D_CHAIN_MAX];
  fg_conv2d_opts o[FG_CONV2D_CHAIN_MAX];
  bool relu[FG_CONV2D_CHAIN_MAX];
  for (int i = 0; i < c->n; i++)
    w[i] = in[1 + 2 * i], b[i] = in[2 + 2 * i], o[i] = c->conv[i].o, relu[i] = c->conv[i].relu;
  return fg_conv2d_chain(g, in[0], c->n, w, b, o, relu);
}
static fg_node build_igrad(fg_graph *g, const fg_node *in, const void *ctx) {
  const conv_case *c = ctx;
  return fg_conv2d_input_grad(g, in[0], in[1], c->size[0], c->size[1], &c->o);
}
static fg_node build_igrad_relu(fg_graph *g, const fg_node *in, const void *ctx) {
  const conv_case *c = ctx;
  return fg_conv2d_input_grad_relu(g, in[0], in[1], in[2], &c->o);
}
static fg_node build_wgrad(fg_graph *g, const fg_node *in, const void *ctx) {
  const conv_case *c = ctx;
  return fg_conv2d_weight_grad(g, in[0], in[1], c->size[0], c->size[1], &c->o);
}
static fg_node build_iwgrad(fg_graph *g, const fg_node *in, const void *ctx) {
  const conv_case *c = ctx;
  return fg_conv2d_input_weight_grad(g, in[0], in[1], in[2], c->bias, &c->o);
}
static fg_node build_wbgrad(fg_graph *g, const fg_node *in, const void *ctx) {
  const conv_case *c = ctx;
  return fg_conv2d_weight_bias_grad(g, in[0], in[1], c->size[0], c->size[1], &c->o);
}

/* Flat index of [a, b, c, d] in a contiguous 4-D shape. */
static int64_t at4(const fg_shape *s, int64_t a, int64_t b, int64_t c, int64_t d) {
  return ((a * s->d[1] + b) * s->d[2] + c) * s->d[3] + d;
}

/* Calls visit for every (x element, w element, y element) triple the convolution multiplies,
 * given the shapes of x, w and y: the one definition all three references share. */
typedef void (*visit_fn)(int64_t xi, int64_t wi, int64_t yi, const double *const *in,
                         double *out);
static void each_tap(const conv_case *c, const fg_shape *xs, const fg_shape *ws,
                     const fg_shape *ys, visit_fn visit, const double *const *in, double *out) {
  const fg_conv2d_opts *o = &c->o;
  for (int64_t n = 0; n < xs->d[0]; n++)
    for (int64_t oc = 0; oc < ws->d[0]; oc++)
      for (int64_t i = 0; i < ys->d[2]; i++)
        for (int64_t j = 0; j < ys->d[3]; j++)
          for (int64_t ch = 0; ch < xs->d[1]; ch++)
            for (int64_t p = 0; p < ws->d[2]; p++)
              for (int64_t q = 0; q < ws->d[3]; q++) {
                int64_t h = i * o->stride[0] - o->padding[0] + p * o->dilation[0];
                int64_t w = j * o->stride[1] - o->padding[1] + q * o->dilation[1];
                if (h < 0 || h >= xs->d[2] || w < 0 || w >= xs->d[3]) continue;
                visit(at4(xs, n, ch, h, w), at4(ws, oc, ch, p, q), at4(ys, n, oc, i, j), in, out);
              }
}

static void zero(fg_tensor *t) { memset(fg_tensor_data(t), 0, sizeof(double) * (size_t)fg_tensor_numel(t)); }

/* in = {x, w}: y += x w */
static void visit_fwd(int64_t xi, int64_t wi, int64_t yi, const double *const *in, double *out) {
  out[yi] += in[0][xi] * in[1][wi];
}
/* in = {dy, w}: gx += dy w */
static void visit_igrad(int64_t xi, int64_t wi, int64_t yi, const double *const *in,
                        double *out) {
  out[xi] += in[0][yi] * in[1][wi];
}
/* in = {x, dy}: gw += x dy */
static void visit_wgrad(int64_t xi, int64_t wi, int64_t yi, const double *const *in,
                        double *out) {
  out[wi] += in[0][xi] * in[1][yi];
}

static void ref_conv(const fg_tensor *const *in, fg_tensor *out, const void *ctx) {
  const conv_case *c = ctx;
  const double *v[2] = {fg_tensor_data(in[0]), fg_tensor_data(in[1])};
  double *y = fg_tensor_data(out);
  zero(out);
  each_tap(c, &in[0]->shape, &in[1]->shape, &out->shape, visit_fwd, v, y);
  if (!c->bias) return;
  const double *b = fg_tensor_data(in[2]);
  const fg_shape *ys = &out->shape;
  for (int64_t n = 0; n < ys->d[0]; n++)
    for (int64_t oc = 0; oc < ys->d[1]; oc++)
      for (int64_t i = 0; i < ys->d[2]; i++)
        for (int64_t j = 0; j < ys->d[3]; j++) y[at4(ys, n, oc, i, j)] += b[oc];
}

/* in = {x, w, b}: max(0, conv + b) or conv + b (ref_conv adds the bias: the case has .bias) */
static void ref_bias_act(const fg_tensor *const *in, fg_tensor *out, const void *ctx) {
  const conv_case *c = ctx;
  ref_conv(in, out, ctx);
  double *y = fg_tensor_data(out);
  for (int64_t i = 0; c->relu && i < fg_tensor_numel(out); i++) y[i] = y[i] > 0 ? y[i] : 0;
}

/* in = {x, w1, b1, w2, b2, ...}: the conv2d_bias_act references, one after the other */
static void ref_chain(const fg_tensor *const *in, fg_tensor *out, const void *ctx) {
  const chain_case *c = ctx;
  const fg_tensor *x = in[0];
  fg_tensor *mid[FG_CONV2D_CHAIN_MAX] = {NULL};
  for (int i = 0; i < c->n; i++) {
    const fg_shape *xs = &x->shape, *ws = &in[1 + 2 * i]->shape;
    const fg_conv2d_opts *o = &c->conv[i].o;
    int64_t ho = (xs->d[2] + 2 * o->padding[0] - o->dilation[0] * (ws->d[2] - 1) - 1) / o->stride[0] + 1;
    int64_t wo = (xs->d[3] + 2 * o->padding[1] - o->dilation[1] * (ws->d[3] - 1) - 1) / o->stride[1] + 1;
    fg_shape ys = fg_shape4(xs->d[0], ws->d[0], ho, wo);
    fg_tensor *y = out;
    if (i < c->n - 1 && fg_tensor_new(&mid[i], FG_F64, &ys, NULL) != FG_OK) break;
    if (i < c->n - 1) y = mid[i];
    const fg_tensor *args[3] = {x, in[1 + 2 * i], in[2 + 2 * i]};
    ref_bias_act(args, y, &c->conv[i]);
    x = y;
  }
  for (int i = 0; i < FG_CONV2D_CHAIN_MAX; i++) fg_tensor_free(mid[i]);
}

static void ref_igrad(const fg_tensor *const *in, fg_tensor *out, const void *ctx) {
  const double *v[2] = {fg_tensor_data(in[0]), fg_tensor_data(in[1])};
  zero(out);
  each_tap(ctx, &out->shape, &in[1]->shape, &in[0]->shape, visit_igrad, v, fg_tensor_data(out));
}

/* in = {dy, w, y}: the input gradient where y > 0, 0 elsewhere */
static void ref_igrad_relu(const fg_tensor *const *in, fg_tensor *out, const void *ctx) {
  ref_igrad(in, out, ctx);
  const double *y = fg_tensor_data(in[2]);
  double *gx = fg_tensor_data(out);
  for (int64_t i = 0; i < fg_tensor_numel(out); i++) gx[i] = y[i] > 0 ? gx[i] : 0;
}

static void ref_wgrad(const fg_tensor *const *in, fg_tensor *out, const void *ctx) {
  const double *v[2] = {fg_tensor_data(in[0]), fg_tensor_data(in[1])};
  zero(out);
  each_tap(ctx, &in[0]->shape, &out->shape, &in[1]->shape, visit_wgrad, v, fg_tensor_data(out));
}

/* out[ch] += dy's sum over N, Ho, Wo of channel ch (a bias's gradient). */
static void add_channel_sums(const fg_shape *ds, const double *dy, double *out) {
  int64_t plane = ds->d[2] * ds->d[3];
  for (int64_t n = 0; n < ds->d[0]; n++)
    for (int64_t ch = 0; ch < ds->d[1]; ch++)
      for (int64_t i = 0; i < plane; i++) out[ch] += dy[(n * ds->d[1] + ch) * plane + i];
}

/* in = {x, dy}: the weight gradient's O C KH KW elements, then dy's sum over N, Ho, Wo per
 * channel */
static void ref_wbgrad(const fg_tensor *const *in, fg_tensor *out, const void *ctx) {
  const conv_case *c = ctx;
  const fg_shape *xs = &in[0]->shape, *ds = &in[1]->shape;
  int64_t nw = ds->d[1] * xs->d[1] * c->size[0] * c->size[1];
  fg_shape ws = {4, {ds->d[1], xs->d[1], c->size[0], c->size[1]}};
  const double *v[2] = {fg_tensor_data(in[0]), fg_tensor_data(in[1])};
  double *o = fg_tensor_data(out);
  zero(out);
  each_tap(ctx, xs, &ws, ds, visit_wgrad, v, o);
  add_channel_sums(ds, v[1], o + nw);
}

/* in = {x, w, dy}: the input gradient's N C H W elements, the weight gradient's O C KH KW, then
 * (with bias) dy's channel sums */
static void ref_iwgrad(const fg_tensor *const *in, fg_tensor *out, const void *ctx) {
  const conv_case *c = ctx;
  const fg_shape *xs = &in[0]->shape, *ws = &in[1]->shape, *ds = &in[2]->shape;
  int64_t nx = fg_shape_count(xs), nw = fg_shape_count(ws);
  const double *x = fg_tensor_data(in[0]), *w = fg_tensor_data(in[1]), *dy = fg_tensor_data(in[2]);
  const double *ig[2] = {dy, w}, *wg[2] = {x, dy};
  double *o = fg_tensor_data(out);
  zero(out);
  each_tap(c, xs, ws, ds, visit_igrad, ig, o);
  each_tap(c, xs, ws, ds, visit_wgrad, wg, o + nx);
  if (c->bias) add_channel_sums(ds, dy, o + nx + nw);
}

#define S1(a) {1, {a}}
#define S4(a, b, c, d) {4, {a, b, c, d}}

/* conv2d */
static const conv_case c_pad1 = {OPTS(1, 1, 1, 1, 1, 1), false, false, {0, 0}};
static const conv_case c_stride2 = {OPTS(2, 2, 0, 0, 1, 1), false, false, {0, 0}};
static const conv_case c_bigpad = {OPTS(1, 1, 3, 2, 1, 1), false, false, {0, 0}};
static const conv_case c_dil2 = {OPTS(1, 1, 1, 1, 2, 2), false, false, {0, 0}};
static const conv_case c_nonsq = {OPTS(1, 2, 0, 1, 1, 1), false, false, {0, 0}};
static const conv_case c_plain = {OPTS(1, 1, 0, 0, 1, 1), false, false, {0, 0}};
static const conv_case c_1x1_strided = {OPTS(2, 2, 1, 1, 1, 1), false, false, {0, 0}};
static const conv_case c_mixed = {OPTS(2, 1, 1, 2, 1, 2), false, false, {0, 0}};
static const conv_case c_bias = {OPTS(1, 1, 1, 1, 1, 1), true, false, {0, 0}};
static const conv_case c_bias_one = {OPTS(2, 2, 1, 0, 1, 2), true, false, {0, 0}};
/* conv2d_bias_act */
static const conv_case ba_relu = {OPTS(1, 1, 1, 1, 1, 1), true, true, {0, 0}};
static const conv_case ba_plain = {OPTS(2, 1, 0, 1, 1, 1), true, false, {0, 0}};
static const conv_case ba_relu_1x1 = {OPTS(1, 1, 0, 0, 1, 1), true, true, {0, 0}};
/* conv2d_chain: a 3x3 of 2 channels, then a 1x1, then a 3x3 to 2 channels without relu (as
 * the chain pass makes them), or a 3x3 then a strided 3x3 */
static const chain_case ch_three = {3,
                                    {{OPTS(1, 1, 1, 1, 1, 1), true, true, {0, 0}},
                                     {OPTS(1, 1, 0, 0, 1, 1), true, true, {0, 0}},
                                     {OPTS(1, 1, 1, 1, 1, 1), true, false, {0, 0}}}};
/* Glow's coupling nets: a 3x3, then a 1x1 (both relu) */
static const chain_case ch_glow = {2,
                                   {{OPTS(1, 1, 1, 1, 1, 1), true, true, {0, 0}},
                                    {OPTS(1, 1, 0, 0, 1, 1), true, true, {0, 0}}}};
static const chain_case ch_strided = {2,
                                      {{OPTS(1, 1, 0, 1, 1, 1), true, true, {0, 0}},
                                       {OPTS(2, 1, 1, 0, 1, 1), true, false, {0, 0}}}};
/* conv2d_input_grad: size = the input (H, W) */
static const conv_case ig_pad1 = {OPTS(1, 1, 1, 1, 1, 1), false, false, {5, 4}};
static const conv_case ig_pad1_6x5 = {OPTS(1, 1, 1, 1, 1, 1), false, false, {6, 5}};
static const conv_case ig_stride2 = {OPTS(2, 2, 0, 0, 1, 1), false, false, {6, 5}};
static const conv_case ig_pad1_20x20 = {OPTS(1, 1, 1, 1, 1, 1), false, false, {20, 20}};
static const conv_case ig_pad1_12x12 = {OPTS(1, 1, 1, 1, 1, 1), false, false, {12, 12}};
static const conv_case ig_pad1_11x13 = {OPTS(1, 1, 1, 1, 1, 1), false, false, {11, 13}};
static const conv_case ig_1x1 = {OPTS(1, 1, 0, 0, 1, 1), false, false, {4, 5}};
static const conv_case ig_1x1_11x12 = {OPTS(1, 1, 0, 0, 1, 1), false, false, {11, 12}};
static const conv_case ig_1x1_7x7 = {OPTS(1, 1, 0, 0, 1, 1), false, false, {7, 7}};
static const conv_case ig_1x1_3x3 = {OPTS(1, 1, 0, 0, 1, 1), false, false, {3, 3}};
static const conv_case ig_dil_bigpad = {OPTS(1, 1, 3, 3, 2, 2), false, false, {3, 4}};
static const conv_case ig_mixed = {OPTS(2, 1, 1, 2, 1, 2), false, false, {5, 6}};
/* conv2d_weight_grad: size = the kernel (KH, KW) */
static const conv_case wg_pad1 = {OPTS(1, 1, 1, 1, 1, 1), false, false, {3, 3}};
static const conv_case wg_stride_dil = {OPTS(2, 2, 0, 0, 2, 2), false, false, {3, 3}};
static const conv_case wg_1x1 = {OPTS(1, 1, 0, 0, 1, 1), false, false, {1, 1}};
static const conv_case wg_nonsq = {OPTS(1, 2, 0, 1, 1, 1), false, false, {2, 3}};
static const conv_case wg_empty = {OPTS(1, 1, 1, 1, 1, 1), false, false, {3, 3}};
static const conv_case wg_3x3 = {OPTS(1, 1, 0, 0, 1, 1), false, false, {3, 3}};
static const conv_case wg_2x2 = {OPTS(1, 1, 0, 0, 1, 1), false, false, {2, 2}};
/* conv2d_input_weight_grad: bias = the bias gradient too */
static const conv_case iw_pad1_bias = {OPTS(1, 1, 1, 1, 1, 1), true, false, {0, 0}};
static const conv_case iw_pad1 = {OPTS(1, 1, 1, 1, 1, 1), false, false, {0, 0}};
static const conv_case iw_stride2 = {OPTS(2, 2, 1, 1, 1, 1), true, false, {0, 0}};

#define CONV(label_, x_, w_, ctx_, gg_)                                                        \
  {.op = "conv2d", .label = label_, .n_in = 2, .in = {x_, w_}, .lo = -1, .hi = 1,             \
   .build = build_conv, .ctx = ctx_, .reference = ref_conv, .gradgrad = gg_}
#define CONV_BIAS(label_, x_, w_, b_, ctx_)                                                    \
  {.op = "conv2d", .label = label_, .n_in = 3, .in = {x_, w_, b_}, .lo = -1, .hi = 1,         \
   .build = build_conv, .ctx = ctx_, .reference = ref_conv}
#define BIAS_ACT(label_, x_, w_, b_, ctx_)                                                     \
  {.op = "conv2d_bias_act", .label = label_, .n_in = 3, .in = {x_, w_, b_}, .lo = -1, .hi = 1, \
   .build = build_bias_act, .ctx = ctx_, .reference = ref_bias_act}
#define CHAIN(label_, ctx_, ...)                                                              \
  {.op = "conv2d_chain", .label = label_, .n_in = 1 + 2 * (ctx_)->n, .in = {__VA_ARGS__},      \
   .lo = -1, .hi = 1, .build = build_chain, .ctx = ctx_, .reference = ref_chain}
#define IGRAD(label_, dy_, w_, ctx_, gg_)                                                      \
  {.op = "conv2d_input_grad", .label = label_, .n_in = 2, .in = {dy_, w_}, .lo = -1, .hi = 1, \
   .build = build_igrad, .ctx = ctx_, .reference = ref_igrad, .gradgrad = gg_}
#define IGRAD_RELU(label_, dy_, w_, y_, ctx_)                                                  \
  {.op = "conv2d_input_grad_relu", .label = label_, .n_in = 3, .in = {dy_, w_, y_}, .lo = -1,  \
   .hi = 1, .build = build_igrad_relu, .ctx = ctx_, .reference = ref_igrad_relu}
#define WGRAD(label_, x_, dy_, ctx_, gg_)                                                      \
  {.op = "conv2d_weight_grad", .label = label_, .n_in = 2, .in = {x_, dy_}, .lo = -1,         \
   .hi = 1, .build = build_wgrad, .ctx = ctx_, .reference = ref_wgrad, .gradgrad = gg_}
#define WBGRAD(label_, x_, dy_, ctx_, gg_)                                                     \
  {.op = "conv2d_weight_bias_grad", .label = label_, .n_in = 2, .in = {x_, dy_}, .lo = -1,    \
   .hi = 1, .build = build_wbgrad, .ctx = ctx_, .reference = ref_wbgrad, .gradgrad = gg_}
#define WBGRAD_NOGRAD(label_, x_, dy_, ctx_)                                                  \
  {.op = "conv2d_weight_bias_grad", .label = label_, .n_in = 2, .in = {x_, dy_}, .lo = -1,    \
   .hi = 1, .build = build_wbgrad, .ctx = ctx_, .reference = ref_wbgrad, .no_grad = true}
#define IWGRAD(label_, x_, w_, dy_, ctx_, gg_)                                                 \
  {.op = "conv2d_input_weight_grad", .label = label_, .n_in = 3, .in = {x_, w_, dy_},         \
   .lo = -1, .hi = 1, .build = build_iwgrad, .ctx = ctx_, .reference = ref_iwgrad,            \
   .gradgrad = gg_}

static const op_case cases[] = {
    CONV("3x3, padding 1, x [2,2,5,4]", S4(2, 2, 5, 4), S4(3, 2, 3, 3), &c_pad1, true),
    CONV("stride 2, batch of one", S4(1, 2, 7, 6), S4(2, 2, 3, 3), &c_stride2, false),
    CONV("padding (3,2) larger than the 2x2 kernel", S4(1, 1, 3, 4), S4(2, 1, 2, 2), &c_bigpad,
         false),
    CONV("dilation 2, padding 1", S4(2, 2, 6, 5), S4(2, 2, 3, 3), &c_dil2, true),
    CONV("non-square image and kernel, stride (1,2), padding (0,1)", S4(2, 1, 4, 7),
         S4(2, 1, 2, 3), &c_nonsq, false),
    CONV("1x1 kernel (no im2col)", S4(2, 3, 4, 5), S4(4, 3, 1, 1), &c_plain, true),
    CONV("1x1 kernel with stride 2 and padding 1", S4(1, 3, 4, 5), S4(2, 3, 1, 1),
         &c_1x1_strided, false),
    CONV("stride (2,1), padding (1,2), dilation (1,2)", S4(2, 2, 5, 6), S4(2, 2, 2, 3), &c_mixed,
         false),
    CONV("kernel as large as the image", S4(2, 2, 3, 4), S4(2, 2, 3, 4), &c_plain, false),
    {.op = "conv2d", .label = "3x3 of 8 channels to 4 at 12x12, padding 1 (the taps' GEMM [36, "
     "8] x [8, 144] by the pointwise kernel)", .n_in = 2, .in = {S4(2, 8, 12, 12),
     S4(4, 8, 3, 3)}, .lo = -1, .hi = 1, .build = build_conv, .ctx = &c_pad1,
     .reference = ref_conv, .no_grad = true},
    CONV("3x3 of 16 channels to 16, padding 1 (sums of 144 products; oneDNN's Winograd tiles)",
         S4(2, 16, 6, 5), S4(16, 16, 3, 3), &c_pad1, false),
    CONV("zero-sized batch", S4(0, 2, 4, 4), S4(3, 2, 3, 3), &c_pad1, false),
    CONV_BIAS("with bias", S4(2, 2, 5, 4), S4(3, 2, 3, 3), S1(3), &c_bias),
    CONV_BIAS("with bias, batch of one, stride 2, dilation (1,2)", S4(1, 2, 5, 7), S4(3, 2, 2, 2),
              S1(3), &c_bias_one),
    BIAS_ACT("relu, 3x3, padding 1, bias [3]", S4(2, 2, 5, 4), S4(3, 2, 3, 3), S1(3), &ba_relu),
    BIAS_ACT("no activation, stride (2,1), bias [1,3,1,1]", S4(2, 2, 5, 4), S4(3, 2, 2, 2),
             S4(1, 3, 1, 1), &ba_plain),
    BIAS_ACT("relu, 3x3 of 16 channels to 16, bias [16]", S4(2, 16, 6, 5), S4(16, 16, 3, 3),
             S1(16), &ba_relu),
    BIAS_ACT("relu, 1x1 kernel (no im2col)", S4(2, 3, 4, 5), S4(4, 3, 1, 1), S1(4), &ba_relu_1x1),
    /* 1x1 shapes for the pointwise kernel's float32 blocking (ops/kernels/conv_pointwise.c;
     * images of 128 pixels or more): depth past one 128 slice, rows in blocks of 8, 4 and 1,
     * columns in panels of 3 and 2 + 2 vectors of 16 with a masked tail; the values only
     * (gradients: the small cases above) */
    {.op = "conv2d_bias_act", .label = "relu, 1x1 of 136 channels to 21 at 12x13, batch 3 (the "
     "pointwise kernel's blocks)", .n_in = 3, .in = {S4(3, 136, 12, 13), S4(21, 136, 1, 1), S1(21)},
     .lo = -1, .hi = 1, .build = build_bias_act, .ctx = &ba_relu_1x1,
     .reference = ref_bias_act, .no_grad = true},
    {.op = "conv2d_bias_act", .label = "relu, 1x1 of 36 channels to 21 at 7x7, batch 5 (the "
     "pointwise kernel, the images' columns as one)", .n_in = 3, .in = {S4(5, 36, 7, 7),
     S4(21, 36, 1, 1), S1(21)}, .lo = -1, .hi = 1, .build = build_bias_act, .ctx = &ba_relu_1x1,
     .reference = ref_bias_act, .no_grad = true},
    {.op = "conv2d", .label = "1x1 of 20 channels to 9 at 10x13 (9 vectors, 2 lanes in the last)",
     .n_in = 2, .in = {S4(2, 20, 10, 13), S4(9, 20, 1, 1)}, .lo = -1, .hi = 1,
     .build = build_conv, .ctx = &c_plain, .reference = ref_conv, .no_grad = true},
    CHAIN("3x3 of 2 channels, 1x1 (both relu), 3x3 to 2 channels", &ch_three, S4(2, 2, 5, 4),
          S4(3, 2, 3, 3), S1(3), S4(4, 3, 1, 1), S1(4), S4(2, 4, 3, 3), S1(2)),
    CHAIN("as above, batch 29: the kernel's groups of 20 and 9 images (384 pixels)",
          &ch_three, S4(29, 2, 5, 4), S4(3, 2, 3, 3), S1(3), S4(4, 3, 1, 1), S1(4),
          S4(2, 4, 3, 3), S1(2)),
    CHAIN("a first conv of 40 outputs (im2col + GEMM by the fixed rules, direct in the "
          "chain's alternative), 1x1, 3x3 to 2 channels (read padded in place)",
          &ch_three, S4(3, 2, 5, 4), S4(40, 2, 3, 3), S1(40), S4(40, 40, 1, 1), S1(40),
          S4(2, 40, 3, 3), S1(2)),
    {.op = "conv2d_chain", .label = "3x3 of 2 channels to 20, 1x1 to 20 at 7x7, batch 9 (groups "
     "of 8 and 1 images: the 1x1 by the pointwise kernel over a group's images, read "
     "channel-major, written NCHW)", .n_in = 5, .in = {S4(9, 2, 7, 7), S4(20, 2, 3, 3), S1(20),
     S4(20, 20, 1, 1), S1(20)}, .lo = -1, .hi = 1, .build = build_chain, .ctx = &ch_glow,
     .reference = ref_chain, .no_grad = true},
    CHAIN("3x3, then a 3x3 of stride (2,1) without relu", &ch_strided, S4(3, 2, 5, 4),
          S4(3, 2, 3, 2), S1(3), S4(2, 3, 3, 3), S4(1, 2, 1, 1)),
    IGRAD("3x3, padding 1, into a 5x4 input", S4(2, 3, 5, 4), S4(3, 2, 3, 3), &ig_pad1, true),
    IGRAD("stride 2 into 6x5 (5x5 gives the same dy)", S4(1, 2, 2, 2), S4(2, 3, 3, 3),
          &ig_stride2, false),
    IGRAD("3x3 of 16 channels to 16, padding 1, into 6x5", S4(2, 16, 6, 5), S4(16, 16, 3, 3),
          &ig_pad1_6x5, false),
    IGRAD("1x1 kernel", S4(2, 4, 4, 5), S4(4, 3, 1, 1), &ig_1x1, false),
    IGRAD("3x3 of 2 channels into 12, padding 1, into 6x5 (few outputs: the taps' GEMM over the "
          "tap planes)", S4(2, 2, 6, 5), S4(2, 12, 3, 3), &ig_pad1_6x5, false),
    {.op = "conv2d_input_grad", .label = "1x1 of 13 channels from 140 at 11x12, batch 3 (the "
     "pointwise kernel's blocks, W^T packed)", .n_in = 2, .in = {S4(3, 140, 11, 12),
     S4(140, 13, 1, 1)}, .lo = -1, .hi = 1, .build = build_igrad, .ctx = &ig_1x1_11x12,
     .reference = ref_igrad, .no_grad = true},
    IGRAD("dilation 2, padding 3 > kernel", S4(1, 2, 7, 8), S4(2, 1, 2, 2), &ig_dil_bigpad, true),
    IGRAD("stride (2,1), padding (1,2), dilation (1,2)", S4(2, 2, 3, 6), S4(2, 2, 2, 3),
          &ig_mixed, false),
    /* the input gradient through a relu: every path masks what it writes (direct: blocks of
     * 4 channels; GEMM: rows of channels; taps: images; pointwise: as the sums leave) */
    IGRAD_RELU("3x3, padding 1, into a 5x4 input", S4(2, 3, 5, 4), S4(3, 2, 3, 3),
               S4(2, 2, 5, 4), &ig_pad1),
    IGRAD_RELU("3x3 of 16 channels to 6, padding 1, into 6x5", S4(2, 16, 6, 5),
               S4(16, 6, 3, 3), S4(2, 6, 6, 5), &ig_pad1_6x5),
    {.op = "conv2d_input_grad_relu", .label = "3x3 of 16 channels to 12 into 20x20, batch 2 (the "
     "GEMM path's parts start inside an image)", .n_in = 3, .in = {S4(2, 16, 20, 20),
     S4(16, 12, 3, 3), S4(2, 12, 20, 20)}, .lo = -1, .hi = 1, .build = build_igrad_relu,
     .ctx = &ig_pad1_20x20, .reference = ref_igrad_relu, .no_grad = true},
    IGRAD_RELU("stride 2 into 6x5", S4(1, 2, 2, 2), S4(2, 3, 3, 3), S4(1, 3, 6, 5), &ig_stride2),
    IGRAD_RELU("3x3 of 2 channels into 12, padding 1, into 6x5 (few outputs: the taps' GEMM, "
               "then the mask)", S4(2, 2, 6, 5), S4(2, 12, 3, 3), S4(2, 12, 6, 5),
               &ig_pad1_6x5),
    {.op = "conv2d_input_grad_relu", .label = "3x3 of 2 channels into 40 at 12x12 (few outputs: "
     "the taps' GEMM [40, 18] x [18, 144] by the pointwise kernel, masked as it stores)",
     .n_in = 3, .in = {S4(2, 2, 12, 12), S4(2, 40, 3, 3), S4(2, 40, 12, 12)}, .lo = -1,
     .hi = 1, .build = build_igrad_relu, .ctx = &ig_pad1_12x12, .reference = ref_igrad_relu,
     .no_grad = true},
    {.op = "conv2d_input_grad_relu", .label = "3x3 of 24 channels into 4 at 12x12 (few inputs: "
     "the taps' GEMM [36, 24] x [24, 144] by the pointwise kernel, then the shifted sum and the "
     "mask)", .n_in = 3, .in = {S4(2, 24, 12, 12), S4(24, 4, 3, 3), S4(2, 4, 12, 12)},
     .lo = -1, .hi = 1, .build = build_igrad_relu, .ctx = &ig_pad1_12x12,
     .reference = ref_igrad_relu, .no_grad = true},
    {.op = "conv2d_input_grad_relu", .label = "3x3 of 24 channels into 3 at 11x13, batch 3 (few "
     "inputs by their kernel: 27 tap planes in blocks of 6 and 3, vectors of 4, 3, 2 and a "
     "last of 15 lanes, the next image fetched)", .n_in = 3, .in = {S4(3, 24, 11, 13),
     S4(24, 3, 3, 3), S4(3, 3, 11, 13)}, .lo = -1, .hi = 1, .build = build_igrad_relu,
     .ctx = &ig_pad1_11x13, .reference = ref_igrad_relu, .no_grad = true},
    IGRAD_RELU("1x1 kernel", S4(2, 4, 4, 5), S4(4, 3, 1, 1), S4(2, 3, 4, 5), &ig_1x1),
    {.op = "conv2d_input_grad_relu", .label = "1x1 of 13 channels from 140 at 11x12, batch 3 "
     "(the pointwise kernel's blocks of 8, 4 and 1 rows, masked as they are stored)", .n_in = 3,
     .in = {S4(3, 140, 11, 12), S4(140, 13, 1, 1), S4(3, 13, 11, 12)}, .lo = -1, .hi = 1,
     .build = build_igrad_relu, .ctx = &ig_1x1_11x12, .reference = ref_igrad_relu,
     .no_grad = true},
    /* the pointwise kernel takes the images' columns as one: vectors cross from one 7x7 image
     * into the next, 245 columns in chunks of 192 and 53 (2 + 2 vectors); images of 9 pixels,
     * under a vector, one by one */
    {.op = "conv2d_input_grad_relu", .label = "1x1 of 20 channels from 36 at 7x7, batch 5 (the "
     "pointwise kernel's vectors across images)", .n_in = 3, .in = {S4(5, 36, 7, 7),
     S4(36, 20, 1, 1), S4(5, 20, 7, 7)}, .lo = -1, .hi = 1, .build = build_igrad_relu,
     .ctx = &ig_1x1_7x7, .reference = ref_igrad_relu, .no_grad = true},
    {.op = "conv2d_input_grad_relu", .label = "1x1 of 13 channels from 140 at 3x3, batch 3 "
     "(the pointwise kernel, images narrower than a vector)", .n_in = 3, .in = {S4(3, 140, 3, 3),
     S4(140, 13, 1, 1), S4(3, 13, 3, 3)}, .lo = -1, .hi = 1, .build = build_igrad_relu,
     .ctx = &ig_1x1_3x3, .reference = ref_igrad_relu, .no_grad = true},
    WGRAD("3x3, padding 1", S4(2, 2, 5, 4), S4(2, 3, 5, 4), &wg_pad1, true),
    WGRAD("stride 2, dilation 2, batch of one", S4(1, 2, 7, 6), S4(1, 2, 2, 1), &wg_stride_dil,
          false),
    WGRAD("3x3 of 16 channels to 16, padding 1", S4(2, 16, 6, 5), S4(2, 16, 6, 5), &wg_pad1,
          false),
    WGRAD("1x1 kernel", S4(2, 3, 4, 5), S4(2, 4, 4, 5), &wg_1x1, true),
    WGRAD("2x3 kernel, stride (1,2), padding (0,1)", S4(2, 1, 4, 7), S4(2, 2, 3, 4), &wg_nonsq,
          false),
    WGRAD("zero-sized batch: zeros", S4(0, 2, 4, 4), S4(0, 3, 4, 4), &wg_empty, false),
    /* the weight and bias gradients as one: every path sums the bias (GEMM: the tiles holding
     * the last columns, as dy passes; taps: each part's images; the others after) */
    WBGRAD("3x3, padding 1", S4(2, 2, 5, 4), S4(2, 3, 5, 4), &wg_pad1, true),
    WBGRAD("stride 2, dilation 2, batch of one", S4(1, 2, 7, 6), S4(1, 2, 2, 1), &wg_stride_dil,
           false),
    WBGRAD("1x1 kernel at 4x5 (images side by side)", S4(2, 3, 4, 5), S4(2, 4, 4, 5), &wg_1x1,
           true),
    WBGRAD("3x3 of 12 channels to 2 (few outputs)", S4(2, 12, 6, 5), S4(2, 2, 6, 5), &wg_pad1,
           false),
    WBGRAD_NOGRAD("1x1 of 140 channels to 20 at 12x12 (per-image GEMMs, tiles of columns)",
                  S4(2, 140, 12, 12), S4(2, 20, 12, 12), &wg_1x1),
    WBGRAD_NOGRAD("3x3 of 32 channels to 8 at 14x14 (per-image GEMMs over 288 taps)",
                  S4(2, 32, 14, 14), S4(2, 8, 12, 12), &wg_3x3),
    WBGRAD_NOGRAD("3x3 of 2 channels to 24 at 9x9, batch 5 (few inputs)", S4(5, 2, 9, 9),
                  S4(5, 24, 9, 9), &wg_pad1),
    WBGRAD_NOGRAD("3x3 of 2 channels to 10 at 11x12, batch 7 (few inputs by their kernels: "
                  "parts of 3 and 2 images, each a group)", S4(7, 2, 11, 12),
                  S4(7, 10, 11, 12), &wg_pad1),
    {.op = "conv2d_weight_grad", .label = "2x2 of 1 channel to 6 at 13x14, batch 5 (few inputs "
     "by their kernels: 4 tap planes in blocks of 3 and 1, 6 rows of dy in blocks of 4 and 1, "
     "groups of 3 and 2 images)", .n_in = 2, .in = {S4(5, 1, 13, 14), S4(5, 6, 12, 13)}, .lo = -1,
     .hi = 1, .build = build_wgrad, .ctx = &wg_2x2, .reference = ref_wgrad, .no_grad = true},
    WBGRAD("zero-sized batch: zeros", S4(0, 2, 4, 4), S4(0, 3, 4, 4), &wg_empty, false),
    /* both gradients (and the bias's) from one read of dy: the taps' GEMMs on each image, or
     * the two paths one after the other */
    IWGRAD("2 channels to 5, 3x3, padding 1, with the bias", S4(2, 2, 5, 4), S4(5, 2, 3, 3),
           S4(2, 5, 5, 4), &iw_pad1_bias, true),
    IWGRAD("3 channels to 4, 3x3, padding 1", S4(3, 3, 6, 5), S4(4, 3, 3, 3), S4(3, 4, 6, 5),
           &iw_pad1, false),
    IWGRAD("stride 2, with the bias (no taps)", S4(2, 2, 6, 5), S4(3, 2, 3, 3), S4(2, 3, 3, 3),
           &iw_stride2, false),
    {.op = "conv2d_input_weight_grad", .label = "4 channels to 24 at 9x9, batch 5, with the bias",
     .n_in = 3, .in = {S4(5, 4, 9, 9), S4(24, 4, 3, 3), S4(5, 24, 9, 9)}, .lo = -1, .hi = 1,
     .build = build_iwgrad, .ctx = &iw_pad1_bias, .reference = ref_iwgrad, .no_grad = true},
    {.op = "conv2d_input_weight_grad", .label = "3 channels to 10 at 11x12, batch 7, with the "
     "bias (few inputs by their kernels: groups of 3 and 2 images, 27 tap planes, rows of dy in "
     "blocks of 4 and 1, 4 lanes in a plane's last vector)", .n_in = 3,
     .in = {S4(7, 3, 11, 12), S4(10, 3, 3, 3), S4(7, 10, 11, 12)}, .lo = -1, .hi = 1,
     .build = build_iwgrad, .ctx = &iw_pad1_bias, .reference = ref_iwgrad, .no_grad = true},
    {.op = "conv2d_input_weight_grad", .label = "2 channels to 9 at 16x17, batch 5 (an image a "
     "group, the next one fetched while one is multiplied)", .n_in = 3,
     .in = {S4(5, 2, 16, 17), S4(9, 2, 3, 3), S4(5, 9, 16, 17)}, .lo = -1, .hi = 1,
     .build = build_iwgrad, .ctx = &iw_pad1, .reference = ref_iwgrad, .no_grad = true},
};

/* ---- rejects ---- */

static void conv_of(fg_graph *g, fg_shape x, fg_dtype tx, fg_shape w, fg_dtype tw,
                    const fg_conv2d_opts *o) {
  fg_conv2d(g, fg_input(g, "x", tx, x), fg_input(g, "w", tw, w), FG_NONE, o);
}
static void bad_channels(fg_graph *g) {
  conv_of(g, fg_shape4(1, 2, 5, 5), FG_F64, fg_shape4(3, 3, 3, 3), FG_F64, NULL);
}
static void bad_kernel_too_large(fg_graph *g) {
  fg_conv2d_opts o = fg_conv2d_defaults();
  o.padding[0] = o.padding[1] = 1;
  conv_of(g, fg_shape4(1, 1, 3, 3), FG_F64, fg_shape4(1, 1, 6, 6), FG_F64, &o);
}
static void bad_dilated_too_large(fg_graph *g) {
  fg_conv2d_opts o = fg_conv2d_defaults();
  o.dilation[1] = 3;
  conv_of(g, fg_shape4(1, 1, 7, 6), FG_F64, fg_shape4(1, 1, 3, 3), FG_F64, &o);
}
static void bad_stride(fg_graph *g) {
  fg_conv2d_opts o = fg_conv2d_defaults();
  o.stride[0] = 0;
  conv_of(g, fg_shape4(1, 1, 5, 5), FG_F64, fg_shape4(1, 1, 3, 3), FG_F64, &o);
}
static void bad_dilation(fg_graph *g) {
  fg_conv2d_opts o = fg_conv2d_defaults();
  o.dilation[1] = 0;
  conv_of(g, fg_shape4(1, 1, 5, 5), FG_F64, fg_shape4(1, 1, 3, 3), FG_F64, &o);
}
static void bad_padding(fg_graph *g) {
  fg_conv2d_opts o = fg_conv2d_defaults();
  o.padding[0] = -1;
  conv_of(g, fg_shape4(1, 1, 5, 5), FG_F64, fg_shape4(1, 1, 3, 3), FG_F64, &o);
}
static void bad_dtypes(fg_graph *g) {
  conv_of(g, fg_shape4(1, 2, 5, 5), FG_F32, fg_shape4(3, 2, 3, 3), FG_F64, NULL);
}
static void bad_rank(fg_graph *g) {
  conv_of(g, fg_shape3(2, 5, 5), FG_F64, fg_shape4(3, 2, 3, 3), FG_F64, NULL);
}
static void bad_bias(fg_graph *g) {
  fg_node x = fg_input(g, "x", FG_F64, fg_shape4(1, 2, 5, 5));
  fg_node w = fg_input(g, "w", FG_F64, fg_shape4(3, 2, 3, 3));
  fg_conv2d(g, x, w, fg_input(g, "b", FG_F64, fg_shape1(2)), NULL);
}
static void bad_bias_act_bias(fg_graph *g) {
  fg_node x = fg_input(g, "x", FG_F64, fg_shape4(1, 2, 5, 5));
  fg_node w = fg_input(g, "w", FG_F64, fg_shape4(3, 2, 3, 3));
  fg_conv2d_bias_act(g, x, w, fg_input(g, "b", FG_F64, fg_shape4(1, 2, 1, 1)), NULL, true);
}
static void bad_bias_act_dtype(fg_graph *g) {
  fg_node x = fg_input(g, "x", FG_F64, fg_shape4(1, 2, 5, 5));
  fg_node w = fg_input(g, "w", FG_F64, fg_shape4(3, 2, 3, 3));
  fg_conv2d_bias_act(g, x, w, fg_input(g, "b", FG_F32, fg_shape1(3)), NULL, false);
}
/* x [1, 2, 5, 5] through a 3x3 to 3 channels (bias b1), then a 1x1 with weights w2 */
static void chain_of(fg_graph *g, fg_shape b1, fg_shape w2) {
  fg_node x = fg_input(g, "x", FG_F64, fg_shape4(1, 2, 5, 5));
  fg_node w[2] = {fg_input(g, "w1", FG_F64, fg_shape4(3, 2, 3, 3)), fg_input(g, "w2", FG_F64, w2)};
  fg_node b[2] = {fg_input(g, "b1", FG_F64, b1), fg_input(g, "b2", FG_F64, fg_shape1(w2.d[0]))};
  fg_conv2d_chain(g, x, 2, w, b, NULL, (const bool[]){true, true});
}
static void bad_chain_channels(fg_graph *g) { chain_of(g, fg_shape1(3), fg_shape4(4, 5, 1, 1)); }
static void bad_chain_bias(fg_graph *g) { chain_of(g, fg_shape1(2), fg_shape4(4, 3, 1, 1)); }
static void bad_chain_length(fg_graph *g) {
  fg_node x = fg_input(g, "x", FG_F64, fg_shape4(1, 2, 5, 5));
  fg_node w = fg_input(g, "w", FG_F64, fg_shape4(3, 2, 3, 3)), b = fg_input(g, "b", FG_F64, fg_shape1(3));
  fg_conv2d_chain(g, x, 1, &w, &b, NULL, (const bool[]){true});
}
static void bad_igrad_size(fg_graph *g) {
  fg_node dy = fg_input(g, "dy", FG_F64, fg_shape4(1, 1, 3, 3));
  fg_node w = fg_input(g, "w", FG_F64, fg_shape4(1, 1, 3, 3));
  fg_conv2d_input_grad(g, dy, w, 4, 4, NULL); /* a 4x4 input gives a 2x2 dy */
}
/* dy [1, 1, 3, 3] through a 3x3 kernel into a 5x5 input, masked by y */
static void igrad_relu_of(fg_graph *g, fg_shape y, fg_dtype ty) {
  fg_node dy = fg_input(g, "dy", FG_F64, fg_shape4(1, 1, 3, 3));
  fg_node w = fg_input(g, "w", FG_F64, fg_shape4(1, 2, 3, 3));
  fg_conv2d_input_grad_relu(g, dy, w, fg_input(g, "y", ty, y), NULL);
}
static void bad_igrad_relu_shape(fg_graph *g) {
  igrad_relu_of(g, fg_shape4(1, 3, 5, 5), FG_F64);
}
static void bad_igrad_relu_dtype(fg_graph *g) {
  igrad_relu_of(g, fg_shape4(1, 2, 5, 5), FG_F32);
}
static void bad_igrad_relu_rank(fg_graph *g) {
  igrad_relu_of(g, fg_shape3(2, 5, 5), FG_F64);
}
static void bad_wgrad_batch(fg_graph *g) {
  fg_node x = fg_input(g, "x", FG_F64, fg_shape4(2, 1, 5, 5));
  fg_node dy = fg_input(g, "dy", FG_F64, fg_shape4(3, 1, 3, 3));
  fg_conv2d_weight_grad(g, x, dy, 3, 3, NULL);
}
static void bad_wbgrad_width(fg_graph *g) {
  fg_node x = fg_input(g, "x", FG_F64, fg_shape4(2, 1, 5, 5));
  fg_node dy = fg_input(g, "dy", FG_F64, fg_shape4(2, 1, 3, 4));
  fg_conv2d_weight_bias_grad(g, x, dy, 3, 3, NULL);
}
static void bad_iwgrad_dy(fg_graph *g) {
  fg_node x = fg_input(g, "x", FG_F64, fg_shape4(2, 2, 5, 5));
  fg_node w = fg_input(g, "w", FG_F64, fg_shape4(3, 2, 3, 3));
  fg_node dy = fg_input(g, "dy", FG_F64, fg_shape4(2, 3, 5, 5)); /* no padding: 3x3 */
  fg_conv2d_input_weight_grad(g, x, w, dy, true, NULL);
}

static const op_reject_case rejects[] = {
    {"conv2d", "x has 2 channels, w expects 3", bad_channels, FG_E_SHAPE, "input channels"},
    {"conv2d", "6x6 kernel on a 3x3 input padded by 1", bad_kernel_too_large, FG_E_SHAPE,
     "fits the input"},
    {"conv2d", "3x3 kernel dilated by 3 is 7 wide on a 6-wide input", bad_dilated_too_large,
     FG_E_SHAPE, "fits the input"},
    {"conv2d", "stride 0", bad_stride, FG_E_SHAPE, "bad stride"},
    {"conv2d", "dilation 0", bad_dilation, FG_E_SHAPE, "bad dilation"},
    {"conv2d", "padding -1", bad_padding, FG_E_SHAPE, "bad padding"},
    {"conv2d", "float32 x, float64 w", bad_dtypes, FG_E_DTYPE, "one dtype"},
    {"conv2d", "3-D input", bad_rank, FG_E_SHAPE, "4-D"},
    {"conv2d", "bias [2] for 3 output channels", bad_bias, FG_E_SHAPE, "bias"},
    {"conv2d_bias_act", "bias of 2 for 3 output channels", bad_bias_act_bias, FG_E_SHAPE,
     "one per output channel"},
    {"conv2d_bias_act", "float32 bias, float64 x", bad_bias_act_dtype, FG_E_DTYPE,
     "bias of the input's dtype"},
    {"conv2d_chain", "second conv for 5 channels after a first of 3", bad_chain_channels,
     FG_E_SHAPE, "conv 2: "},
    {"conv2d_chain", "first bias of 2 for 3 channels", bad_chain_bias, FG_E_SHAPE,
     "conv 1: a bias"},
    {"conv2d_chain", "a chain of one conv", bad_chain_length, FG_E_MISUSE, "2 to 3 convs"},
    {"conv2d_input_grad", "dy 3x3 cannot come from a 4x4 input", bad_igrad_size, FG_E_SHAPE,
     "dy's height"},
    {"conv2d_input_grad_relu", "y of 3 channels for an input of 2", bad_igrad_relu_shape,
     FG_E_SHAPE, "relu output y of the input gradient's shape"},
    {"conv2d_input_grad_relu", "float32 y, float64 dy", bad_igrad_relu_dtype, FG_E_DTYPE,
     "relu output y of dy's dtype"},
    {"conv2d_input_grad_relu", "3-D y", bad_igrad_relu_rank, FG_E_SHAPE, "4-D relu output y"},
    {"conv2d_weight_grad", "batch 2 vs 3", bad_wgrad_batch, FG_E_SHAPE, "batch"},
    {"conv2d_weight_bias_grad", "dy 3x4 from a 5x5 input and a 3x3 kernel", bad_wbgrad_width,
     FG_E_SHAPE, "dy's width"},
    {"conv2d_input_weight_grad", "dy 5x5 for a conv whose output is 3x3", bad_iwgrad_dy,
     FG_E_SHAPE, "dy of the conv's output shape"},
};

const op_case_list op_cases_conv = {
    .family = "conv",
    .cases = cases,
    .n_cases = sizeof cases / sizeof *cases,
    .rejects = rejects,
    .n_rejects = sizeof rejects / sizeof *rejects,
};
