/* The conv kernels (ops/conv.c defines the ops): each reads its call's geometry, chooses the
 * path that computes it (conv_choose_path, the one place that decides) and runs it.
 *
 * Three paths, chosen per call by shape from measurements (tools/bench/bench_dense, float32,
 * batch 64, against one large cblas_sgemm):
 *
 * im2col + GEMM (ops/kernels/conv_gemm.c, over the shared fg_gemm: OpenBLAS or the portable
 * kernel).  Any geometry.  Close to the GEMM's own rate with many output channels; with few
 * (Glow's zero-initialised output conv has O = 4) one GEMM dimension is O, and writing and
 * packing the column matrix costs more than the arithmetic.
 *
 * Direct (ops/kernels/conv_padded.c over the register-blocked kernels of conv_direct.c), at
 * stride 1.  Each image is zero-padded once; with padded row width wd, tap (c, p, q) of output
 * (i, j) reads padded[c][(i + p dh) wd + j + q dw], so over the "wide" index s = i wd + j every
 * tap is one contiguous stream, a shift of the same array (columns j >= Wo are computed and
 * dropped).  The kernels accumulate all taps in registers, which makes few output channels
 * fast; the input gradient at stride 1 is the same correlation of the padded dy with the
 * flipped, channel-swapped kernel, and the weight gradient is dot products of the same
 * streams.  Above DIRECT_MAX_O output channels im2col + GEMM is as fast or faster (at 7x7 the
 * dropped columns are 2/9 of the work), so it keeps those shapes unless their weights are few
 * enough to stay in L2 (direct_pays).
 *
 * Shifted GEMMs (ops/kernels/conv_padded.c), for conv2d and its weight gradient at stride 1
 * with many channels on both sides: the direct path's padded image and wide index, one GEMM
 * per kernel offset reading the padded planes in place, so no column matrix is written.
 *
 * Pointwise (ops/kernels/conv_pointwise.c), for 1x1 convs at stride 1 without padding, forward
 * and input gradient: the GEMM path's work split, each GEMM by a float32 AVX-512 kernel of its
 * own (fg_gemm where that does not run: float64, other CPUs), several images' columns a GEMM
 * where an image alone is short.  Glow's training step against the GEMM path (its chains' 1x1
 * convs by the fixed rule, its input gradients by timing), an image a GEMM: K=16 +0.7 to +1.5 %
 * in three runs of 5 alternating pairs (one run of 3 pairs read -2.9 %), K=8 +2.2 to +2.3 %;
 * several images a GEMM against that, K=16 +2.6 and +3.1 % ("Intel(R) Xeon(R) Processor", 2
 * cores; README, Kernels).
 *
 * FG_CONV_PATH=gemm, =direct, =shifted or =pointwise in the environment (read once) forces one
 * path wherever it applies, so tests run every case through each. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ops/kernels/conv_internal.h"
#include "ops/kernels/kernels.h"
#include "ops/kernels/simd.h"

enum {
  DIRECT_MAX_O = 32,                 /* the direct kernel's domain (see the top of the file) */
  DIRECT_MAX_FEW_TAPS = 32,          /* and the weight gradient's with few taps (direct_pays) */
  DIRECT_MIN_WGRAD_PIXELS = 512,     /* and on large images */
  DIRECT_MAX_WEIGHT_ELEMS = 1 << 16, /* every op with many channels but weights this small */
};

/* ---- which path ---- */

/* The path FG_CONV_PATH forces, or FORCED_NONE. */
enum { FORCED_UNREAD = -2, FORCED_NONE = -1 };
static atomic_int forced = FORCED_UNREAD;

static int forced_path(void) {
  int p = atomic_load(&forced);
  if (p == FORCED_UNREAD) {
    const char *s = getenv("FG_CONV_PATH");
    p = !s ? FORCED_NONE : strcmp(s, "gemm") == 0 ? CONV_PATH_GEMM
                         : strcmp(s, "direct") == 0 ? CONV_PATH_DIRECT
                         : strcmp(s, "shifted") == 0 ? CONV_PATH_SHIFTED
                         : strcmp(s, "pointwise") == 0 ? CONV_PATH_POINTWISE : FORCED_NONE;
    atomic_store(&forced, p);
  }
  return p;
}

/* Whether the direct kernel beats im2col + GEMM (stride 1 given): with few output channels;
 * with few taps (C KH KW <= DIRECT_MAX_FEW_TAPS) for the weight gradient, where the GEMM's n is
 * that small and packing all of dy costs more than the arithmetic (Glow's 2->128 3x3 in the
 * training step), and for the forward, where im2col + GEMM writes its many output channels
 * after the GEMM (on the AMD EPYC it measured no faster direct; on "Intel(R) Xeon(R)
 * Processor", 2 cores, Glow K=16's 2->256 3x3 at 14x14 took 15.7-18.4 ms a training step
 * against 22-23, FG_PROFILE; one conv, caches flushed, 1.08-1.28 ms against 1.28-1.47, means);
 * for the weight gradient also on large images (DIRECT_MIN_WGRAD_PIXELS), where its dot
 * products are long (RealNVP's 64->64 3x3 at 28x28 beats shifted GEMMs; at 14x14 the shifted
 * GEMMs win).  With many input channels and at most DIRECT_MAX_WEIGHT_ELEMS weights (256 KiB
 * in float32), all three ops run direct: the kernel sweeps all weights for every block of
 * outputs, and these stay in L2 with the padded image (RealNVP's 64->64 3x3 at 28x28 and
 * 14x14: faster than shifted GEMMs forward and than GEMM + col2im for the input gradient).
 * 128->128 3x3 (590 KiB of weights) measured no faster direct. */
static bool direct_pays(const conv_geom *g, conv_kind kind) {
  bool few_taps = g->c * g->kh * g->kw <= DIRECT_MAX_FEW_TAPS;
  return !is_pointwise(g) &&
         (g->o <= DIRECT_MAX_O ||
          (g->c >= DIRECT_MAX_O && g->c * g->kh * g->kw * g->o <= DIRECT_MAX_WEIGHT_ELEMS) ||
          (kind == CONV_FORWARD && few_taps) ||
          (kind == CONV_WEIGHT_GRAD && (few_taps || g->ho * g->wo >= DIRECT_MIN_WGRAD_PIXELS)));
}

/* Whether shifted GEMMs beat im2col + GEMM (where they apply): at least DIRECT_MAX_O channels
 * on both sides, so that each GEMM has rows and depth enough (with 2 or 4 input channels they
 * are several times slower). */
static bool shifted_pays(const conv_geom *g) {
  return g->c >= DIRECT_MAX_O && g->o > DIRECT_MAX_O;
}

/* Whether a path computes this call.  Direct kernels need stride 1.  Shifted GEMMs need stride
 * 1 and a kernel wider than 1x1, and serve conv2d and a weight gradient over at least one
 * image, not the input gradient (measured slower there than GEMM + col2im).  im2col + GEMM
 * serves everything. */
static bool path_applies(const conv_geom *g, conv_kind kind, conv_path path) {
  bool unit_stride = g->sh == 1 && g->sw == 1;
  switch (path) {
  case CONV_PATH_DIRECT: return unit_stride;
  case CONV_PATH_SHIFTED:
    return unit_stride && !is_pointwise(g) &&
           (kind == CONV_FORWARD || (kind == CONV_WEIGHT_GRAD && g->n > 0));
  case CONV_PATH_POINTWISE: return is_pointwise(g) && kind != CONV_WEIGHT_GRAD;
  default: return true;
  }
}

/* The path that computes this call by the fixed rules (or as FG_CONV_PATH forces). */
static conv_path conv_choose_path(const conv_geom *g, conv_kind kind) {
  int forced = forced_path();
  if (forced != FORCED_NONE) return path_applies(g, kind, forced) ? forced : CONV_PATH_GEMM;
  if (path_applies(g, kind, CONV_PATH_DIRECT) && direct_pays(g, kind)) return CONV_PATH_DIRECT;
  if (path_applies(g, kind, CONV_PATH_SHIFTED) && shifted_pays(g)) return CONV_PATH_SHIFTED;
  if (path_applies(g, kind, CONV_PATH_POINTWISE)) return CONV_PATH_POINTWISE;
  return CONV_PATH_GEMM;
}

/* What each path runs for each op; NULL where conv_choose_path never sends it. */
static const conv_driver drivers[CONV_PATH_COUNT][CONV_KIND_COUNT] = {
    [CONV_PATH_GEMM] = {fg_conv_gemm_forward, fg_conv_gemm_input_grad, fg_conv_gemm_weight_grad},
    [CONV_PATH_DIRECT] = {fg_conv_direct_forward, fg_conv_direct_input_grad,
                          fg_conv_direct_weight_grad},
    [CONV_PATH_SHIFTED] = {fg_conv_shifted_forward, NULL, fg_conv_shifted_weight_grad},
    [CONV_PATH_POINTWISE] = {fg_conv_pointwise_forward, fg_conv_pointwise_input_grad, NULL},
};

/* ---- the kernels ---- */

conv_kind fg_conv_kind_of(int op) {
  return op == FG_OP_CONV2D_INPUT_GRAD || op == FG_OP_CONV2D_INPUT_GRAD_RELU ? CONV_INPUT_GRAD
         : op == FG_OP_CONV2D_WEIGHT_GRAD || op == FG_OP_CONV2D_WEIGHT_BIAS_GRAD ||
                   op == FG_OP_CONV2D_INPUT_WEIGHT_GRAD
             ? CONV_WEIGHT_GRAD
             : CONV_FORWARD;
}

/* out[i] *= (y[i] > 0), as the separate ops compute it (greater's 1 or 0, then the product: NaN
 * and the sign of zero come out alike).  Vectorised (FG_SIMD_CLONES): without, GCC made the
 * loop a branch per element (skipping the product by 1), mispredicted on half of them (256 ->
 * 256 1x1 input gradient and mask at 14x14, batch 64, 30 runs: 12.7-13.2 ms against 6.3 as two
 * ops; vectorised 5.4-5.5; runs one after the other, "Intel(R) Xeon(R) Processor", 2 cores). */
#define RELU_MASK_DEFINE(T, SUF)                                                             \
  FG_SIMD_CLONES static void relu_mask_##SUF(T *restrict out, const T *restrict y,           \
                                             int64_t len) {                                  \
    for (int64_t i = 0; i < len; i++) out[i] *= (T)(y[i] > 0);                               \
  }
RELU_MASK_DEFINE(float, f32)
RELU_MASK_DEFINE(double, f64)

void fg_conv_relu_mask(const conv_ctx *c, void *out, int64_t off, int64_t len) {
  if (!c->mask || len <= 0) return;
  if (c->t == FG_F32) relu_mask_f32((float *)out + off, (const float *)c->mask + off, len);
  else relu_mask_f64((double *)out + off, (const double *)c->mask + off, len);
}

conv_geom fg_conv_geom_of(const void *attr, const fg_shape *in_shape, const fg_shape *out_shape,
                          conv_kind kind) {
  const fg_conv2d_attr *at = attr; /* its size: only the transposes have one */
  const int64_t *a = in_shape[0].d, *b = in_shape[1].d;
  conv_geom g;
  switch (kind) {
  case CONV_FORWARD: /* x, w -> y */
    g = (conv_geom){.n = a[0], .c = a[1], .h = a[2], .w = a[3], .o = b[0], .kh = b[2],
                    .kw = b[3], .ho = out_shape->d[2], .wo = out_shape->d[3]};
    break;
  case CONV_INPUT_GRAD: /* dy, w -> gx, of the input size in the attribute */
    g = (conv_geom){.n = a[0], .c = b[1], .h = at->size[0], .w = at->size[1], .o = b[0],
                    .kh = b[2], .kw = b[3], .ho = a[2], .wo = a[3]};
    break;
  default: /* x, dy -> gw, of the kernel size in the attribute */
    g = (conv_geom){.n = a[0], .c = a[1], .h = a[2], .w = a[3], .o = b[1], .kh = at->size[0],
                    .kw = at->size[1], .ho = b[2], .wo = b[3]};
    break;
  }
  conv_geom_set_opts(&g, (const fg_conv2d_opts *)attr);
  return g;
}

void fg_conv_grads_split(conv_grads_split *s, const void *attr, const fg_shape *in_shape) {
  const fg_conv2d_grads_attr *at = attr;
  const fg_shape *xs = &in_shape[0], *ws = &in_shape[1], *ds = &in_shape[2];
  *s = (conv_grads_split){.ia = {at->geom, {xs->d[2], xs->d[3]}},
                          .wa = {at->geom, {ws->d[2], ws->d[3]}},
                          .ish = {*ds, *ws}, .wsh = {*xs, *ds}, .x_shape = *xs,
                          .wg_shape = at->bias ? fg_shape1(fg_shape_count(ws) + ws->d[0]) : *ws,
                          .wg_op = at->bias ? FG_OP_CONV2D_WEIGHT_BIAS_GRAD
                                            : FG_OP_CONV2D_WEIGHT_GRAD,
                          .dw_at = fg_shape_count(xs)};
}

fg_kargs fg_conv_grads_part(const conv_grads_split *s, const fg_kargs *k, bool ig,
                            const void **in) {
  fg_kargs sub = *k;
  in[0] = ig ? k->in[2] : k->in[0], in[1] = ig ? k->in[1] : k->in[2];
  sub.n_in = 2, sub.in = in;
  sub.attr = ig ? &s->ia : &s->wa;
  sub.in_shape = ig ? s->ish : s->wsh;
  sub.out = ig ? k->out : (char *)k->out + fg_dtype_size(k->in_dtype[0]) * (size_t)s->dw_at;
  sub.out_shape = ig ? s->x_shape : s->wg_shape;
  return sub;
}

conv_geom fg_conv_grads_geom(const void *attr, const fg_shape *in_shape) {
  const int64_t *x = in_shape[0].d, *w = in_shape[1].d, *dy = in_shape[2].d;
  conv_geom g = {.n = x[0], .c = x[1], .h = x[2], .w = x[3], .o = w[0], .kh = w[2], .kw = w[3],
                 .ho = dy[2], .wo = dy[3]};
  conv_geom_set_opts(&g, (const fg_conv2d_opts *)attr);
  return g;
}

/* ---- the paths as implementations a program chooses among (fg_kernel_impl) ----
 * The state is the path; the kernels are the ops' own, which run the path their state names. */
static const conv_path path_state[CONV_PATH_COUNT] = {CONV_PATH_GEMM, CONV_PATH_DIRECT,
                                                      CONV_PATH_SHIFTED, CONV_PATH_POINTWISE};
static const char *const path_names[CONV_PATH_COUNT] = {"gemm", "direct", "shifted",
                                                        "pointwise"};

static fg_status prepare_path(fg_kprep *a, void **state, conv_path path, fg_err *e) {
  conv_kind kind = fg_conv_kind_of(a->op);
  conv_geom g = fg_conv_geom_of(a->attr, a->in_shape, &a->out_shape, kind);
  if (!path_applies(&g, kind, path))
    return fg_err_set(e, FG_E_MISUSE, "the %s path does not compute this convolution",
                      path_names[path]);
  *state = (void *)&path_state[path];
  a->as_native = path == conv_choose_path(&g, kind);
  return FG_OK;
}

fg_status fg_conv_prepare_gemm(fg_kprep *a, void **state, fg_err *e) {
  return prepare_path(a, state, CONV_PATH_GEMM, e);
}
fg_status fg_conv_prepare_direct(fg_kprep *a, void **state, fg_err *e) {
  return prepare_path(a, state, CONV_PATH_DIRECT, e);
}
fg_status fg_conv_prepare_shifted(fg_kprep *a, void **state, fg_err *e) {
  return prepare_path(a, state, CONV_PATH_SHIFTED, e);
}
/* Only where its kernel runs: elsewhere it would be the GEMM path under another name (the
 * forward of small images: the input gradient takes its images' columns together). */
fg_status fg_conv_prepare_pointwise(fg_kprep *a, void **state, fg_err *e) {
  if (!fg_conv_pointwise_available(a->out_dtype))
    return fg_err_set(e, FG_E_MISUSE, "the pointwise path computes float32 on CPUs with "
                      "AVX-512 only");
  if (fg_conv_kind_of(a->op) == CONV_FORWARD && fg_shape_count(&a->out_shape) > 0 &&
      a->out_shape.d[2] * a->out_shape.d[3] < FG_POINTWISE_MIN_COLUMNS)
    return fg_err_set(e, FG_E_MISUSE, "the pointwise path computes forwards of images of at "
                      "least %d pixels", FG_POINTWISE_MIN_COLUMNS);
  return prepare_path(a, state, CONV_PATH_POINTWISE, e);
}

/* ---- the kernels ---- */

/* conv2d_weight_bias_grad's bias where the path leaves it (direct, shifted): this part's share
 * of the channels, each summed over the images in order, as the sum op adds them. */
enum { BIAS_GRAD_MIN_PART_CHANNELS = 16 };
static fg_status bias_grad_share(const conv_ctx *c, const fg_kargs *k) {
  const conv_geom *g = &c->g;
  int64_t S = g->ho * g->wo, o0, o1;
  int parts = fg_parts_for(g->o, BIAS_GRAD_MIN_PART_CHANNELS, k->nth);
  if (k->ith >= parts) return FG_OK;
  fg_split_range(g->o, k->ith, parts, &o0, &o1);
  double *lanes = conv_bias_lanes(o1 - o0);
  if (!lanes) return fg_err_set(c->err, FG_E_NOMEM, "conv2d_weight_bias_grad: out of memory");
  for (int64_t n = 0; n < g->n; n++)
    conv_bias_lanes_add(c, lanes, at_c(c, k->in[1], (n * g->o + o0) * S), o1 - o0, S);
  conv_bias_store(c, lanes, o0, o1);
  fg_work_free(lanes);
  return FG_OK;
}

/* Runs the path chosen for c (k's state, or the fixed rules).  The GEMM path sums a bias
 * gradient as it reads dy (unless there are no weights, no tiles); the others leave it to
 * bias_grad_share. */
static fg_status conv_drive(const conv_ctx *c, const fg_kargs *k, conv_kind kind) {
  conv_path path = k->state ? *(const conv_path *)k->state : conv_choose_path(&c->g, kind);
  fg_status st = drivers[path][kind](c, k);
  bool summed = path == CONV_PATH_GEMM && c->g.c * c->g.kh * c->g.kw > 0;
  if (st == FG_OK && c->bias_grad && !summed) st = bias_grad_share(c, k);
  return st;
}

static conv_ctx conv_ctx_of(const fg_kargs *k, fg_dtype t, conv_kind kind) {
  return (conv_ctx){.t = t, .es = fg_dtype_size(t), .direct = fg_conv_direct_kernels_for(t),
                    .g = fg_conv_geom_of(k->attr, k->in_shape, &k->out_shape, kind),
                    .nth = k->nth, .outer_parts = k->outer_parts, .err = k->err};
}

/* A call with its input and output laid out as x and y say (a forward call; {0, 0}: NCHW);
 * mask: conv2d_input_grad_relu's y, else NULL. */
static fg_status conv_run_laid(const fg_kargs *k, fg_dtype t, conv_kind kind, const void *bias,
                               bool relu, const void *mask, conv_layout x, conv_layout y) {
  conv_ctx c = conv_ctx_of(k, t, kind);
  c.bias = bias, c.relu = relu, c.x = x, c.y = y, c.mask = mask;
  return conv_drive(&c, k, kind);
}

static fg_status conv_run(const fg_kargs *k, fg_dtype t, conv_kind kind, const void *bias,
                          bool relu) {
  return conv_run_laid(k, t, kind, bias, relu, NULL, (conv_layout){0, 0, false},
                       (conv_layout){0, 0, false});
}

static fg_status conv_run_masked(const fg_kargs *k, fg_dtype t) {
  return conv_run_laid(k, t, CONV_INPUT_GRAD, NULL, false, k->in[2], (conv_layout){0, 0, false},
                       (conv_layout){0, 0, false});
}

static bool bias_act_relu(const fg_kargs *k) {
  return ((const fg_conv2d_bias_act_attr *)k->attr)->relu != 0;
}

fg_status fg_kernel_conv2d_f32(const fg_kargs *k) {
  return conv_run(k, FG_F32, CONV_FORWARD, NULL, false);
}
fg_status fg_kernel_conv2d_f64(const fg_kargs *k) {
  return conv_run(k, FG_F64, CONV_FORWARD, NULL, false);
}
fg_status fg_kernel_conv2d_bias_act_f32(const fg_kargs *k) {
  return conv_run(k, FG_F32, CONV_FORWARD, k->in[2], bias_act_relu(k));
}
fg_status fg_kernel_conv2d_bias_act_f64(const fg_kargs *k) {
  return conv_run(k, FG_F64, CONV_FORWARD, k->in[2], bias_act_relu(k));
}
fg_status fg_kernel_conv2d_input_grad_f32(const fg_kargs *k) {
  return conv_run(k, FG_F32, CONV_INPUT_GRAD, NULL, false);
}
fg_status fg_kernel_conv2d_input_grad_f64(const fg_kargs *k) {
  return conv_run(k, FG_F64, CONV_INPUT_GRAD, NULL, false);
}
fg_status fg_kernel_conv2d_input_grad_relu_f32(const fg_kargs *k) {
  return conv_run_masked(k, FG_F32);
}
fg_status fg_kernel_conv2d_input_grad_relu_f64(const fg_kargs *k) {
  return conv_run_masked(k, FG_F64);
}
fg_status fg_kernel_conv2d_weight_grad_f32(const fg_kargs *k) {
  return conv_run(k, FG_F32, CONV_WEIGHT_GRAD, NULL, false);
}
fg_status fg_kernel_conv2d_weight_grad_f64(const fg_kargs *k) {
  return conv_run(k, FG_F64, CONV_WEIGHT_GRAD, NULL, false);
}

/* The weight gradient, its bias's sums after it in the output. */
static fg_status conv_run_weight_bias(const fg_kargs *k, fg_dtype t) {
  conv_ctx c = conv_ctx_of(k, t, CONV_WEIGHT_GRAD);
  c.bias_grad = at_m(&c, k->out, c.g.o * c.g.c * c.g.kh * c.g.kw);
  return conv_drive(&c, k, CONV_WEIGHT_GRAD);
}
fg_status fg_kernel_conv2d_weight_bias_grad_f32(const fg_kargs *k) {
  return conv_run_weight_bias(k, FG_F32);
}
fg_status fg_kernel_conv2d_weight_bias_grad_f64(const fg_kargs *k) {
  return conv_run_weight_bias(k, FG_F64);
}

/* conv2d_input_weight_grad by the native kernels: the input gradient's path, then the weight
 * gradient's (and its bias's), each as its own op's kernel would run it on the same part (the
 * taps, ops/kernels/conv_taps.c, read dy once for both). */
static fg_status conv_run_input_weight(const fg_kargs *k, fg_dtype t) {
  conv_grads_split s;
  fg_conv_grads_split(&s, k->attr, k->in_shape);
  const void *iin[2], *win[2];
  fg_kargs ik = fg_conv_grads_part(&s, k, true, iin), wk = fg_conv_grads_part(&s, k, false, win);
  conv_ctx ic = conv_ctx_of(&ik, t, CONV_INPUT_GRAD), wc = conv_ctx_of(&wk, t, CONV_WEIGHT_GRAD);
  if (s.wg_op == FG_OP_CONV2D_WEIGHT_BIAS_GRAD)
    wc.bias_grad = at_m(&wc, wk.out, fg_shape_count(&k->in_shape[1]));
  fg_status st = conv_drive(&ic, &ik, CONV_INPUT_GRAD);
  return st == FG_OK ? conv_drive(&wc, &wk, CONV_WEIGHT_GRAD) : st;
}
fg_status fg_kernel_conv2d_input_weight_grad_f32(const fg_kargs *k) {
  return conv_run_input_weight(k, FG_F32);
}
fg_status fg_kernel_conv2d_input_weight_grad_f64(const fg_kargs *k) {
  return conv_run_input_weight(k, FG_F64);
}

/* ---- conv2d_chain: a few images at a time ----
 * A part takes whole groups of images (chain_group); for each group it runs the convs one after
 * the other, each as conv2d_bias_act's kernel on a batch of the group (the paths the separate ops
 * take), the outputs before the last in two work buffers that stay in cache for the next conv.
 * Those buffers are channel-major over the group ([C][images][H W]), so that a 1x1 conv between
 * two of them is one GEMM over the group's pixels instead of one per image (Glow K=8's log-prob
 * program +4.5 %: 6 pairs of the two builds' runs, alternating, on "Intel(R) Xeon(R) Processor", 2
 * cores).  Its sums are the same products in a GEMM of other columns, so the last bits may differ
 * from the separate ops' (as where their GEMM path splits an image between parts, images of under
 * 128 pixels).  Groups are split among parts whole and are fixed by the shapes, so the results do
 * not depend on the thread count.  Glow's 2->128 3x3, the 128->128 1x1 after it and the 128->4 3x3
 * after that at 14x14, batch 64, 2 threads, an image at a time: 1.54-1.74 ms for the first two
 * against 1.96-3.09 as two ops, and 2.44-2.54 for all three against 2.89-3.03 with the third apart
 * (medians of 200, a stand-alone prototype over these kernels, the two ways in alternating
 * processes, AMD EPYC, 2 cores). */
static fg_shape batch_of(fg_shape s, int64_t n) {
  s.d[0] = n;
  return s;
}

/* Conv i's geometry for one image of its input shape in, with weights of shape w. */
static conv_geom chain_geom(const fg_conv2d_chain_attr *at, int i, fg_shape in, fg_shape w) {
  conv_geom g = {.n = 1, .c = in.d[1], .h = in.d[2], .w = in.d[3], .o = w.d[0], .kh = w.d[2],
                 .kw = w.d[3]};
  conv_geom_set_opts(&g, &at->conv[i].geom);
  g.ho = conv_out_extent(g.h, g.kh, g.sh, g.ph, g.dh);
  g.wo = conv_out_extent(g.w, g.kw, g.sw, g.pw, g.dw);
  return g;
}

/* Conv i's output shape for one image, given its input's. */
static fg_shape chain_out_shape(const fg_conv2d_chain_attr *at, int i, fg_shape in, fg_shape w) {
  conv_geom g = chain_geom(at, i, in, w);
  return fg_shape4(1, g.o, g.ho, g.wo);
}

/* Images a chain step takes at once: enough for CHAIN_GROUP_PIXELS output pixels of the first
 * conv, so that each conv's per-call set-up (the direct path's transposed weights and tap
 * offsets, the GEMM's packing) is paid for at least that many pixels and the 1x1 conv's GEMM
 * has that many columns, but no more than keep the two work buffers within half a core's L2
 * (chain_buffer_bytes), beside the weights and the group's input.  Glow K=8's log-prob program,
 * 1 image against 256 pixels: about +5 % items/s (4 alternating runs each, "Intel(R) Xeon(R)
 * Processor", 2 cores); 512 and 1024 pixels were slower.  384 against 256 takes 8 images at 7x7
 * instead of 6 and still 2 at 14x14: 392 columns for the GEMM at both (dnnl_sgemm, M = K = 128,
 * one core: 179 GFLOP/s at 392 columns, 166 at 294); the 7x7 chains -10 %, log-prob +2-5 %,
 * sampling +5 % (two runs of 5 alternating pairs), K=16's log-prob and sampling +3 % (3
 * pairs; all on that Xeon).  Glow K=16's 256 channels at 14x14 need 800 KiB for 2 images: 2
 * (a 2 MiB L2) against 1 measured +4-6 % log-prob and sampling there (3 alternating runs).
 * Fixed by the shapes and the machine, never by the thread count, so the groups are the same
 * for any. */
enum { CHAIN_GROUP_PIXELS = 384 };

/* Half of one core's L2 (sysconf), within [256 KiB, 2 MiB]; 512 KiB where it says nothing. */
static size_t chain_buffer_bytes(void) {
  static atomic_long l2 = -2; /* not read yet */
  long v = atomic_load(&l2);
  if (v == -2) atomic_store(&l2, v = sysconf(_SC_LEVEL2_CACHE_SIZE));
  size_t half = v > 0 ? (size_t)v / 2 : (size_t)512 << 10, lo = 256 << 10, hi = 2 << 20;
  return half < lo ? lo : half > hi ? hi : half;
}

static int64_t chain_group(const fg_shape *first_out, size_t mid_bytes, int64_t batch) {
  int64_t hw = first_out->d[2] * first_out->d[3] > 0 ? first_out->d[2] * first_out->d[3] : 1;
  int64_t g = (CHAIN_GROUP_PIXELS + hw - 1) / hw;
  int64_t fit = (int64_t)(chain_buffer_bytes() / (2 * (mid_bytes > 0 ? mid_bytes : 1)));
  g = g < fit ? g : fit;
  g = g < batch ? g : batch;
  return g > 1 ? g : 1;
}

/* Channel-major over a group of cnt images of shape s's planes. */
static conv_layout channel_major(fg_shape s, int64_t cnt) {
  return (conv_layout){s.d[2] * s.d[3], cnt * s.d[2] * s.d[3], false};
}

/* ---- a direct conv's input padded on the way ----
 * Where a conv of the chain after the first runs the direct path, the conv before it writes no
 * epilogue, and one pass applies it while spreading the planes into the zero-bordered images
 * the direct path reads in place: the epilogue's pass over the output and the direct path's
 * padding copy (and the zeroing of its buffer, image by image) become one.  The copies and the
 * zeroing were 8 % of the samples of Glow K=8's log-prob program (perf; its 128->4 and 128->8
 * 3x3 pad the 1x1 conv's 128 channels for each image); the program +3.7 %, sampling +5.1 % (4
 * alternating pairs of the two builds, "Intel(R) Xeon(R) Processor", 2 cores).  The border
 * zeros are written once a call: the images keep their places in the buffer whatever a group's
 * count, and only their insides are written. */
typedef struct chain_pad {
  int at;                   /* the conv that reads padded input, or -1 */
  int64_t ch, top, left, h, w, hd, wd; /* its input channels, padding, planes and padded planes */
} chain_pad;

/* The first conv after the first that runs the direct path (conv_choose_path, as conv_run_laid
 * chooses); one at most, so that its buffer's zero borders are written once. */
static chain_pad chain_pad_of(const fg_kargs *k, const fg_shape *shape, int n) {
  const fg_conv2d_chain_attr *at = k->attr;
  for (int i = 1; i < n; i++) {
    conv_geom g = chain_geom(at, i, shape[i], k->in_shape[1 + 2 * i]);
    if (conv_choose_path(&g, CONV_FORWARD) == CONV_PATH_DIRECT)
      return (chain_pad){i, g.c, g.ph, g.pw, g.h, g.w, g.h + 2 * g.ph, g.w + 2 * g.pw};
  }
  return (chain_pad){.at = -1};
}

/* The padded images of cnt images in p's buffer: conv p->at - 1's epilogue (bias, relu) on the
 * way from its channel-major output. */
static void chain_fill_padded(const chain_pad *p, const fg_conv_direct_kernels *kern, size_t es,
                              const void *src, int64_t cnt, const void *bias, bool relu,
                              void *dst) {
  int64_t plane = p->h * p->w, pplane = p->hd * p->wd;
  for (int64_t img = 0; img < cnt; img++)
    for (int64_t ch = 0; ch < p->ch; ch++)
      kern->crop((const char *)src + es * (size_t)((ch * cnt + img) * plane), p->w, p->h, p->w,
                 (const char *)bias + es * (size_t)ch, relu,
                 (char *)dst + es * (size_t)((img * p->ch + ch) * pplane + p->top * p->wd +
                                             p->left),
                 p->wd);
}

/* The last conv by the GEMM over its taps (ops/kernels/conv_taps.c) where the rules would
 * run it direct on the padded planes (a few output channels: Glow's 128->4, 256->8): the
 * group's planes are read as they lie, one GEMM for the group.  Glow's log-prob and sampling
 * programs, the chains' alternatives pinned (FG_KERNELS=conv2d_chain=...) with the last conv
 * each way: K=16 +6-8 %, K=8 log-prob +3.7 % ("Intel(R) Xeon(R) Processor", 2 cores, runs one
 * after the other).  Not with FG_CONV_PATH set, so that the tests' forced paths keep the
 * padded direct path covered. */
static bool chain_taps_last(const conv_geom *last, size_t es) {
  return forced_path() == FORCED_NONE && fg_conv_taps_applies(last, CONV_FORWARD, es) &&
         conv_choose_path(last, CONV_FORWARD) == CONV_PATH_DIRECT;
}

/* The last conv of a group by the taps' GEMM: one's input is the group channel-major. */
static fg_status chain_run_taps(const fg_kargs *one, fg_dtype t, conv_geom g, int64_t cnt,
                                bool relu) {
  conv_ctx c = {.t = t, .es = fg_dtype_size(t), .g = g, .nth = 1, .outer_parts = one->outer_parts,
                .err = one->err, .bias = one->in[2], .relu = relu};
  return fg_conv_taps_group(&c, one->in[0], cnt, one->in[1], one->out);
}

static fg_status chain_run(const fg_kargs *k, fg_dtype t) {
  const fg_conv2d_chain_attr *at = k->attr;
  int n = (int)at->n_convs;
  fg_shape shape[FG_CONV2D_CHAIN_MAX + 1] = {batch_of(k->in_shape[0], 1)}; /* conv i's input */
  int64_t mid_elems = 0;
  for (int i = 0; i < n; i++) {
    shape[i + 1] = chain_out_shape(at, i, shape[i], k->in_shape[1 + 2 * i]);
    if (i < n - 1 && fg_shape_count(&shape[i + 1]) > mid_elems)
      mid_elems = fg_shape_count(&shape[i + 1]);
  }
  size_t es = fg_dtype_size(k->in_dtype[0]);
  int64_t batch = k->in_shape[0].d[0];
  int64_t group = chain_group(&shape[1], es * (size_t)mid_elems, batch);
  int64_t x_img = fg_shape_count(&shape[0]), y_img = fg_shape_count(&shape[n]), g0, g1;
  fg_split_range((batch + group - 1) / group, k->ith, k->nth, &g0, &g1);
  if (g0 == g1) return FG_OK;
  size_t mid_bytes = es * (size_t)(mid_elems > 0 ? mid_elems * group : 1);
  conv_geom last = chain_geom(at, n - 1, shape[n - 1], k->in_shape[2 * n - 1]);
  bool taps_last = chain_taps_last(&last, es);
  chain_pad pad = chain_pad_of(k, shape, n);
  if (taps_last && pad.at == n - 1) pad.at = -1; /* the taps read the planes as they are */
  size_t pad_bytes = pad.at < 0 ? 0
                     : es * (size_t)(group * pad.ch * pad.hd * pad.wd) + FG_DIRECT_BLOCK_BYTES;
  void *buf[2] = {fg_work_alloc(mid_bytes), n > 2 ? fg_work_alloc(mid_bytes) : NULL};
  void *padded = pad_bytes ? fg_work_alloc(pad_bytes) : NULL;
  fg_status st = buf[0] && (n <= 2 || buf[1]) && (padded || !pad_bytes) ? FG_OK
                 : fg_err_set(k->err, FG_E_NOMEM, "conv2d_chain: out of memory");
  if (padded) memset(padded, 0, pad_bytes); /* the borders: chain_fill_padded writes inside */
  fg_conv_direct_kernels kern = fg_conv_direct_kernels_for(t);
  for (int64_t gi = g0; st == FG_OK && gi < g1; gi++) {
    int64_t img = gi * group, cnt = batch - img < group ? batch - img : group;
    const void *src = (const char *)k->in[0] + es * (size_t)(img * x_img);
    for (int i = 0; st == FG_OK && i < n; i++) {
      void *dst = i == n - 1 ? (char *)k->out + es * (size_t)(img * y_img) : buf[i % 2];
      fg_shape s[3] = {batch_of(shape[i], cnt), k->in_shape[1 + 2 * i], k->in_shape[2 + 2 * i]};
      const void *in[3] = {src, k->in[1 + 2 * i], k->in[2 + 2 * i]};
      fg_dtype dt[3] = {k->in_dtype[0], k->in_dtype[1 + 2 * i], k->in_dtype[2 + 2 * i]};
      fg_kargs one = {.attr = &at->conv[i], .n_in = 3, .in = in, .in_shape = s, .in_dtype = dt,
                      .out = dst, .out_shape = batch_of(shape[i + 1], cnt), .nth = 1,
                      .err = k->err, .state = i == 0 ? k->state : NULL,
                      .outer_parts = k->nth};
      conv_layout xl = i == 0 ? (conv_layout){0, 0, false} : channel_major(shape[i], cnt);
      conv_layout yl = i == n - 1 ? (conv_layout){0, 0, false} : channel_major(shape[i + 1], cnt);
      if (i == pad.at) {
        in[0] = padded;
        xl = (conv_layout){pad.ch * pad.hd * pad.wd, pad.hd * pad.wd, true};
      }
      bool epilogue_here = i + 1 != pad.at, relu = at->conv[i].relu != 0;
      if (i == n - 1 && taps_last)
        st = chain_run_taps(&one, t, last, cnt, relu);
      else
        st = conv_run_laid(&one, t, CONV_FORWARD, epilogue_here ? in[2] : NULL,
                           epilogue_here && relu, NULL, xl, yl);
      if (st == FG_OK && !epilogue_here)
        chain_fill_padded(&pad, &kern, es, dst, cnt, in[2], relu, padded);
      src = dst;
    }
  }
  fg_work_free(buf[0]), fg_work_free(buf[1]), fg_work_free(padded);
  return st;
}

/* conv2d_chain's alternative implementation (ops/conv.c): the first conv on the direct path
 * where the fixed rules give it im2col + GEMM.  With few input channels the GEMM's depth is the
 * few taps (18 for Glow's 2->128 3x3), and which wins depends on the output channels and the
 * machine: with every such first conv forced direct, Glow K=8's log-prob program (2->128 and
 * 4->128) measured +3-4 % and K=16's (2->256, 4->256) -8 % (4 and 3 alternating pairs, "Intel(R)
 * Xeon(R) Processor", 2 cores), so the program times both.  Timed alone the chain node takes
 * the alternative in both models there; in the programs, against FG_KERNELS=
 * conv2d_chain=native, K=8's log-prob +2.8 % (7 of 8 pairs), K=16's -1.7 % (0 of 4) but its
 * training step +3.6 % (2 of 3): the node timed alone is not quite the node in its program.
 * The state is the first conv's path (chain_run). */
fg_status fg_conv_chain_prepare_direct(fg_kprep *a, void **state, fg_err *e) {
  const fg_conv2d_chain_attr *at = a->attr;
  conv_geom g = chain_geom(at, 0, batch_of(a->in_shape[0], 1), a->in_shape[1]);
  if (!path_applies(&g, CONV_FORWARD, CONV_PATH_DIRECT) ||
      conv_choose_path(&g, CONV_FORWARD) == CONV_PATH_DIRECT)
    return fg_err_set(e, FG_E_MISUSE, "conv2d_chain: the direct path does not compute the "
                      "first conv, or computes it already");
  *state = (void *)&path_state[CONV_PATH_DIRECT];
  return FG_OK;
}

fg_status fg_kernel_conv2d_chain_f32(const fg_kargs *k) { return chain_run(k, FG_F32); }
fg_status fg_kernel_conv2d_chain_f64(const fg_kargs *k) { return chain_run(k, FG_F64); }
