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
 * FG_CONV_PATH=gemm, =direct or =shifted in the environment (read once) forces one path
 * wherever it applies, so tests run every case through each. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "ops/kernels/conv_internal.h"
#include "ops/kernels/kernels.h"

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
                         : strcmp(s, "shifted") == 0 ? CONV_PATH_SHIFTED : FORCED_NONE;
    atomic_store(&forced, p);
  }
  return p;
}

/* Whether the direct kernel beats im2col + GEMM (stride 1 given): with few output channels,
 * and for the weight gradient also with few taps (C KH KW <= DIRECT_MAX_FEW_TAPS), where the
 * GEMM's n is that small and packing all of dy costs more than the arithmetic (Glow's 2->128
 * 3x3 in the training step), and on large images (DIRECT_MIN_WGRAD_PIXELS), where its dot
 * products are long (RealNVP's 64->64 3x3 at 28x28 beats shifted GEMMs; at 14x14 the shifted
 * GEMMs win).  The forward of few-tap shapes measured no faster direct.  With many input
 * channels and at most DIRECT_MAX_WEIGHT_ELEMS weights (256 KiB in float32), all three ops run
 * direct: the kernel sweeps all weights for every block of outputs, and these stay in L2 with
 * the padded image (RealNVP's 64->64 3x3 at 28x28 and 14x14: faster than shifted GEMMs
 * forward and than GEMM + col2im for the input gradient).  128->128 3x3 (590 KiB of weights)
 * measured no faster direct. */
static bool direct_pays(const conv_geom *g, conv_kind kind) {
  return !is_pointwise(g) &&
         (g->o <= DIRECT_MAX_O ||
          (g->c >= DIRECT_MAX_O && g->c * g->kh * g->kw * g->o <= DIRECT_MAX_WEIGHT_ELEMS) ||
          (kind == CONV_WEIGHT_GRAD && (g->c * g->kh * g->kw <= DIRECT_MAX_FEW_TAPS ||
                                        g->ho * g->wo >= DIRECT_MIN_WGRAD_PIXELS)));
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
  default: return true;
  }
}

/* The path that computes this call by the fixed rules (or as FG_CONV_PATH forces). */
static conv_path conv_choose_path(const conv_geom *g, conv_kind kind) {
  int forced = forced_path();
  if (forced != FORCED_NONE) return path_applies(g, kind, forced) ? forced : CONV_PATH_GEMM;
  if (path_applies(g, kind, CONV_PATH_DIRECT) && direct_pays(g, kind)) return CONV_PATH_DIRECT;
  if (path_applies(g, kind, CONV_PATH_SHIFTED) && shifted_pays(g)) return CONV_PATH_SHIFTED;
  return CONV_PATH_GEMM;
}

/* What each path runs for each op; NULL where conv_choose_path never sends it. */
static const conv_driver drivers[CONV_PATH_COUNT][CONV_KIND_COUNT] = {
    [CONV_PATH_GEMM] = {fg_conv_gemm_forward, fg_conv_gemm_input_grad, fg_conv_gemm_weight_grad},
    [CONV_PATH_DIRECT] = {fg_conv_direct_forward, fg_conv_direct_input_grad,
                          fg_conv_direct_weight_grad},
    [CONV_PATH_SHIFTED] = {fg_conv_shifted_forward, NULL, fg_conv_shifted_weight_grad},
};

/* ---- the kernels ---- */

conv_kind fg_conv_kind_of(int op) {
  return op == FG_OP_CONV2D_INPUT_GRAD    ? CONV_INPUT_GRAD
         : op == FG_OP_CONV2D_WEIGHT_GRAD ? CONV_WEIGHT_GRAD
                                          : CONV_FORWARD;
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

/* ---- the paths as implementations a program chooses among (fg_kernel_impl) ----
 * The state is the path; the kernels are the ops' own, which run the path their state names. */
static const conv_path path_state[CONV_PATH_COUNT] = {CONV_PATH_GEMM, CONV_PATH_DIRECT,
                                                      CONV_PATH_SHIFTED};
static const char *const path_names[CONV_PATH_COUNT] = {"gemm", "direct", "shifted"};

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

/* ---- the kernels ---- */

static fg_status conv_run(const fg_kargs *k, fg_dtype t, conv_kind kind, const void *bias,
                          bool relu) {
  conv_ctx c = {.t = t, .es = fg_dtype_size(t), .direct = fg_conv_direct_kernels_for(t),
                .g = fg_conv_geom_of(k->attr, k->in_shape, &k->out_shape, kind), .nth = k->nth,
                .outer_parts = k->outer_parts, .err = k->err, .bias = bias, .relu = relu};
  conv_path path = k->state ? *(const conv_path *)k->state : conv_choose_path(&c.g, kind);
  return drivers[path][kind](&c, k);
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
fg_status fg_kernel_conv2d_weight_grad_f32(const fg_kargs *k) {
  return conv_run(k, FG_F32, CONV_WEIGHT_GRAD, NULL, false);
}
fg_status fg_kernel_conv2d_weight_grad_f64(const fg_kargs *k) {
  return conv_run(k, FG_F64, CONV_WEIGHT_GRAD, NULL, false);
}

/* ---- conv2d_pair: image by image ----
 * A part takes whole images; for each it runs the first conv into a work buffer and the
 * second from it, each as conv2d_bias_act's kernel on a batch of one (the same paths, so each
 * value is computed as it would be by the two ops).  The buffer, one image of the first's
 * output, stays in cache for the second conv: Glow's 2->128 3x3 and the 128->128 1x1 after it
 * at 14x14, batch 64, 2 threads, 1.54-1.74 ms against 1.96-3.09 as two convs (medians of 200,
 * a stand-alone prototype over these kernels, AMD EPYC). */
static fg_shape batch_of_one(fg_shape s) {
  s.d[0] = 1;
  return s;
}

static fg_status pair_run(const fg_kargs *k, fg_kernel_fn bias_act) {
  const fg_conv2d_pair_attr *at = k->attr;
  const fg_shape *xs = &k->in_shape[0];
  fg_shape w1s = k->in_shape[1], ys = k->out_shape;
  conv_geom g1 = {.n = 1, .c = xs->d[1], .h = xs->d[2], .w = xs->d[3], .o = w1s.d[0],
                  .kh = w1s.d[2], .kw = w1s.d[3]};
  conv_geom_set_opts(&g1, &at->first.geom);
  fg_shape ms = fg_shape4(1, g1.o, conv_out_extent(g1.h, g1.kh, g1.sh, g1.ph, g1.dh),
                          conv_out_extent(g1.w, g1.kw, g1.sw, g1.pw, g1.dw));
  size_t es = fg_dtype_size(k->in_dtype[0]);
  int64_t x_img = xs->d[1] * xs->d[2] * xs->d[3], y_img = ys.d[1] * ys.d[2] * ys.d[3], n0, n1;
  fg_split_range(xs->d[0], k->ith, k->nth, &n0, &n1);
  if (n0 == n1) return FG_OK;
  void *mid = fg_work_alloc(es * (size_t)fg_shape_count(&ms));
  if (!mid) return fg_err_set(k->err, FG_E_NOMEM, "conv2d_pair: out of memory");
  fg_shape s1[3] = {batch_of_one(*xs), w1s, k->in_shape[2]};
  fg_shape s2[3] = {ms, k->in_shape[3], k->in_shape[4]};
  const void *in1[3] = {NULL, k->in[1], k->in[2]}, *in2[3] = {mid, k->in[3], k->in[4]};
  fg_dtype dt2[3] = {k->in_dtype[0], k->in_dtype[3], k->in_dtype[4]};
  fg_kargs first = {.attr = &at->first, .n_in = 3, .in = in1, .in_shape = s1,
                    .in_dtype = k->in_dtype, .out = mid, .out_shape = ms, .nth = 1, .err = k->err,
                    .outer_parts = k->nth};
  fg_kargs second = {.attr = &at->second, .n_in = 3, .in = in2, .in_shape = s2,
                     .in_dtype = dt2, .out_shape = batch_of_one(ys), .nth = 1,
                     .err = k->err, .outer_parts = k->nth};
  fg_status st = FG_OK;
  for (int64_t n = n0; st == FG_OK && n < n1; n++) {
    in1[0] = (const char *)k->in[0] + es * (size_t)(n * x_img);
    second.out = (char *)k->out + es * (size_t)(n * y_img);
    st = bias_act(&first);
    if (st == FG_OK) st = bias_act(&second);
  }
  fg_work_free(mid);
  return st;
}

fg_status fg_kernel_conv2d_pair_f32(const fg_kargs *k) {
  return pair_run(k, fg_kernel_conv2d_bias_act_f32);
}
fg_status fg_kernel_conv2d_pair_f64(const fg_kargs *k) {
  return pair_run(k, fg_kernel_conv2d_bias_act_f64);
}
