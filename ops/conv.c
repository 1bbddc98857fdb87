/* conv2d (NCHW; stride, padding, dilation) and its two transposes, each an op with its own VJP,
 * and conv2d_bias_act (conv2d + bias (+ relu) in one op, made by the compiler's epilogue pass).
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
 * Three paths, chosen per op by shape from measurements (tools/bench_dense, float32, batch 64,
 * against cblas_sgemm's rate); the two that work on padded images are in ops/kernels/conv_padded.c:
 *
 * im2col + GEMM (the shared fg_gemm: OpenBLAS or the portable kernel).  The column matrix of
 * one image has a row per kernel tap (c, p, q), r = (c KH + p) KW + q, and a column per output
 * pixel s = i Wo + j.  Work is split so that no two parts write the same output and none
 * repeats another's im2col:
 *   conv2d       y[n][:, s0:s1]  = W . col[n][:, s0:s1]   split over (image, output pixel);
 *   input_grad   gx[n][c0:c1]    = col2im(W^T[rows of c0:c1] . dy[n])   over (image, channel);
 *   weight_grad  gw[o0:o1, r0:r1] = sum_n dy[n][o0:o1] . col[n][r0:r1]^T
 *                over (output channel, tap) tiles: one GEMM per image with dy read in place
 *                on images of 128+ pixels, else images side by side so that k = nb Ho Wo.
 * A 1x1 kernel with stride 1 and no padding needs no im2col: col[n] is x[n] itself.  Scratch
 * is bounded (SCRATCH_ELEMS per part) by processing columns, channels or images in chunks.
 * The executor hands out up to 64 parts whatever the thread count; each kernel keeps every
 * part's GEMM big enough to be worth its packing (MIN_PART_*) and leaves the rest empty.
 * With many output channels this runs at 65-90 % of sgemm (forward + backward, 1 or 2
 * threads: 128->128 3x3 and 1x1 at 14x14).  With few (Glow's zero-initialised output conv has
 * O = 4) one GEMM dimension is O, and writing and packing the column matrix costs more than
 * the arithmetic: 128->4 3x3 ran at 5-7 %.
 *
 * Direct, for stride 1 and O <= DIRECT_MAX_O, or many channels with few weights (the weight
 * gradient also with few taps or on large images, see use_direct).  Each image is zero-padded
 * once; with padded row width wd, tap (c, p, q) of output (i, j) reads
 * padded[c][(i + p dh) wd + j + q dw], so over the "wide" index s = i wd + j every tap is one
 * contiguous stream, a shift of the same array (columns j >= Wo are computed and dropped).  Register-blocked kernels (ops/kernels/conv_direct.c:
 * AVX-512 where the CPU has it, else AVX2 or portable vectors) accumulate all taps.  The input
 * gradient at stride 1 is the same correlation of the padded dy with the flipped,
 * channel-swapped kernel; the weight gradient is dot products of the same streams, summed over
 * groups of images in registers.  Work splits over (image, block of 4 output channels) with a
 * minimum of work per part, and over (tap, output channel) tiles for the weight gradient.
 * 128->4 3x3 at 14x14 runs at 150-165 GFLOP/s forward + backward on 2 Zen 5 cores (AVX-512;
 * 66 with the AVX2 kernels), 128->8 at 7x7 at 130 (53).  Above O = 32 im2col + GEMM is as fast
 * or faster (at 7x7 the dropped columns are 2/9 of the work), so it keeps those shapes, unless
 * their weights are few enough to stay in L2 (use_direct).
 * Shifted GEMMs, for conv2d at stride 1 with many channels on both sides (see use_shifted):
 * the direct path's padded image and wide index, one GEMM per kernel offset reading the padded
 * planes in place, so no column matrix is written.
 * FG_CONV_PATH=gemm, =direct or =shifted in the environment (read once) forces one kernel
 * wherever it applies, so tests run every case through each. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/ir/op.h"
#include "ops/kernels/conv_internal.h"
#include "ops/ops.h"

enum {
  SCRATCH_ELEMS = 1 << 20, /* per part, for im2col and friends */
  DIRECT_MAX_O = 32,       /* the direct kernel's domain (see the top of the file) */
  DIRECT_MAX_FEW_TAPS = 32, /* and the weight gradient's with few taps (see use_direct) */
  DIRECT_MIN_WGRAD_PIXELS = 512, /* and on large images */
  DIRECT_MAX_WEIGHT_ELEMS = 1 << 16, /* every op with many channels but weights this small */
  /* Each part's share is at least this big, so that a GEMM's packing of its operands stays
   * small next to its arithmetic; parts beyond what a kernel needs stay empty. */
  MIN_PART_PIXELS = 256,      /* conv2d: output pixels (columns of the GEMM) */
  MIN_PART_TAPS = 64,         /* input_grad: rows of W^T; weight_grad: tile rows and columns */
  MIN_PART_DIRECT_TAPS = 96,  /* direct weight_grad: taps (a multiple of its 6-tap blocks) */
  MIN_PART_DIRECT_ROWS = 32,  /* direct weight_grad: output channels */
  MIN_INPLACE_WGRAD_PIXELS = 128, /* weight_grad: per-image GEMMs from this k on */
  MIN_PART_INPLACE_TAPS = 128,    /* weight_grad, per-image GEMMs: taps (GEMM columns) */
  MIN_PART_POINTWISE_ROWS = 128,  /* weight_grad, 1x1: output channels (GEMM rows) per tile */
};
#define CONV_OPT_MAX ((int64_t)1 << 31)

fg_conv2d_opts fg_conv2d_defaults(void) {
  fg_conv2d_opts o;
  memset(&o, 0, sizeof o);
  o.stride[0] = o.stride[1] = 1;
  o.dilation[0] = o.dilation[1] = 1;
  return o;
}

/* Output extent along one axis; -1 when the dilated kernel does not fit the padded input. */
static int64_t out_extent(int64_t in, int64_t k, int64_t s, int64_t p, int64_t d) {
  int64_t span, padded;
  if (__builtin_mul_overflow(d, k - 1, &span) || __builtin_add_overflow(span, 1, &span) ||
      __builtin_add_overflow(in, 2 * p, &padded) || padded < span)
    return -1;
  return (padded - span) / s + 1;
}

static fg_status check_opts(const fg_conv2d_opts *o, char *why, size_t cap) {
  for (int i = 0; i < 2; i++) {
    const char *bad = NULL;
    if (o->stride[i] < 1 || o->stride[i] > CONV_OPT_MAX) bad = "stride";
    else if (o->dilation[i] < 1 || o->dilation[i] > CONV_OPT_MAX) bad = "dilation";
    else if (o->padding[i] < 0 || o->padding[i] > CONV_OPT_MAX) bad = "padding";
    if (bad) {
      snprintf(why, cap, "stride and dilation in 1..2^31, padding in 0..2^31; got stride "
               "(%lld, %lld), padding (%lld, %lld), dilation (%lld, %lld) (bad %s)",
               (long long)o->stride[0], (long long)o->stride[1], (long long)o->padding[0],
               (long long)o->padding[1], (long long)o->dilation[0], (long long)o->dilation[1],
               bad);
      return FG_E_SHAPE;
    }
  }
  return FG_OK;
}

/* Validates options, kernel size and fit, and fills ho, wo.  g's sizes must be set. */
static fg_status geom_finish(conv_geom *g, const fg_conv2d_opts *o, char *why, size_t cap) {
  fg_status st = check_opts(o, why, cap);
  if (st != FG_OK) return st;
  g->sh = o->stride[0], g->sw = o->stride[1];
  g->ph = o->padding[0], g->pw = o->padding[1];
  g->dh = o->dilation[0], g->dw = o->dilation[1];
  if (g->kh < 1 || g->kw < 1) {
    snprintf(why, cap, "a kernel of at least 1x1, got %lldx%lld", (long long)g->kh,
             (long long)g->kw);
    return FG_E_SHAPE;
  }
  g->ho = out_extent(g->h, g->kh, g->sh, g->ph, g->dh);
  g->wo = out_extent(g->w, g->kw, g->sw, g->pw, g->dw);
  if (g->ho < 0 || g->wo < 0) {
    snprintf(why, cap, "a kernel %lldx%lld (dilation %lldx%lld) that fits the input %lldx%lld "
             "padded by (%lld, %lld) on each side",
             (long long)g->kh, (long long)g->kw, (long long)g->dh, (long long)g->dw,
             (long long)g->h, (long long)g->w, (long long)g->ph, (long long)g->pw);
    return FG_E_SHAPE;
  }
  return FG_OK;
}

/* ---- shape rules ---- */

static fg_status check_pair(fg_infer_args *a, const char *n0, const char *n1) {
  char s0[96], s1[96];
  if (a->in_dtype[0] != a->in_dtype[1]) {
    snprintf(a->why, sizeof a->why, "%s and %s of one dtype, got %s and %s", n0, n1,
             fg_dtype_name(a->in_dtype[0]), fg_dtype_name(a->in_dtype[1]));
    return FG_E_DTYPE;
  }
  if (a->in_shape[0].ndim != 4 || a->in_shape[1].ndim != 4) {
    snprintf(a->why, sizeof a->why, "4-D %s and %s, got %s and %s", n0, n1,
             fg_shape_str(&a->in_shape[0], s0, sizeof s0),
             fg_shape_str(&a->in_shape[1], s1, sizeof s1));
    return FG_E_SHAPE;
  }
  return FG_OK;
}

static fg_status mismatch(fg_infer_args *a, const char *what, int64_t got, int64_t want) {
  char s0[96], s1[96];
  snprintf(a->why, sizeof a->why, "%s: %lld, expected %lld (inputs %s and %s)", what,
           (long long)got, (long long)want, fg_shape_str(&a->in_shape[0], s0, sizeof s0),
           fg_shape_str(&a->in_shape[1], s1, sizeof s1));
  return FG_E_SHAPE;
}

static fg_status conv2d_infer(fg_infer_args *a) {
  const fg_conv2d_attr *at = a->attr;
  fg_status st = check_pair(a, "input x [N, C, H, W]", "weight w [O, C, KH, KW]");
  if (st != FG_OK) return st;
  const int64_t *x = a->in_shape[0].d, *w = a->in_shape[1].d;
  if (x[1] != w[1]) return mismatch(a, "weight's input channels (dim 1)", w[1], x[1]);
  conv_geom g = {.n = x[0], .c = x[1], .h = x[2], .w = x[3], .o = w[0], .kh = w[2], .kw = w[3]};
  st = geom_finish(&g, &at->geom, a->why, sizeof a->why);
  if (st != FG_OK) return st;
  a->out_shape = fg_shape4(g.n, g.o, g.ho, g.wo);
  return FG_OK;
}

static fg_status bias_act_infer(fg_infer_args *a) {
  fg_status st = conv2d_infer(a); /* reads the geometry, the attr's first member */
  if (st != FG_OK) return st;
  char s0[96];
  if (a->in_dtype[2] != a->in_dtype[0]) {
    snprintf(a->why, sizeof a->why, "a bias of the input's dtype %s, got %s",
             fg_dtype_name(a->in_dtype[0]), fg_dtype_name(a->in_dtype[2]));
    return FG_E_DTYPE;
  }
  if (fg_shape_count(&a->in_shape[2]) != a->out_shape.d[1]) {
    snprintf(a->why, sizeof a->why, "a bias of %lld elements (one per output channel), got %s",
             (long long)a->out_shape.d[1], fg_shape_str(&a->in_shape[2], s0, sizeof s0));
    return FG_E_SHAPE;
  }
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
  if (g.h < 0 || g.w < 0) {
    snprintf(a->why, sizeof a->why, "an input size (h, w) >= 0, got (%lld, %lld)",
             (long long)g.h, (long long)g.w);
    return FG_E_SHAPE;
  }
  st = geom_finish(&g, &at->geom, a->why, sizeof a->why);
  if (st != FG_OK) return st;
  if (dy[2] != g.ho) return mismatch(a, "dy's height for this input size", dy[2], g.ho);
  if (dy[3] != g.wo) return mismatch(a, "dy's width for this input size", dy[3], g.wo);
  a->out_shape = fg_shape4(g.n, g.c, g.h, g.w);
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
  st = geom_finish(&g, &at->geom, a->why, sizeof a->why);
  if (st != FG_OK) return st;
  if (dy[2] != g.ho) return mismatch(a, "dy's height for this kernel", dy[2], g.ho);
  if (dy[3] != g.wo) return mismatch(a, "dy's width for this kernel", dy[3], g.wo);
  a->out_shape = fg_shape4(g.o, g.c, g.kh, g.kw);
  return FG_OK;
}

/* ---- im2col / col2im, stamped for float and double ----
 * im2col writes rows [r0, r1) of one image's column matrix, columns [s0, s1) (a run of output
 * pixels that may span several output rows i), at row stride ld; col2im adds whole rows back. */
/* Output columns j whose input column j sw + off falls inside [0, w): [*lo, *hi). */
static void valid_cols(int64_t wo, int64_t w, int64_t sw, int64_t off, int64_t *lo,
                       int64_t *hi) {
  *lo = off >= 0 ? 0 : (-off + sw - 1) / sw;
  *hi = w - 1 - off < 0 ? 0 : (w - 1 - off) / sw + 1;
  *lo = min64(*lo, wo);
  *hi = max64(min64(*hi, wo), *lo);
}

#define CONV_LEAVES_DEFINE(T, SUF)                                                            \
  static void im2col_##SUF(const conv_geom *g, const void *xv, int64_t r0, int64_t r1,        \
                           int64_t s0, int64_t s1, void *dstv, int64_t ld) {                  \
    const T *x = xv;                                                                          \
    T *dst = dstv;                                                                            \
    for (int64_t r = r0; r < r1; r++) {                                                       \
      int64_t c = r / (g->kh * g->kw), p = r / g->kw % g->kh, q = r % g->kw;                  \
      int64_t off = q * g->dw - g->pw, lo, hi;                                                \
      valid_cols(g->wo, g->w, g->sw, off, &lo, &hi);                                          \
      const T *plane = x + c * g->h * g->w;                                                   \
      T *row = dst + (r - r0) * ld;                                                           \
      for (int64_t s = s0; s < s1;) { /* one output row i at a time: [j0, j1) of it */        \
        int64_t i = s / g->wo, j0 = s % g->wo, j1 = min64(g->wo, j0 + (s1 - s));              \
        int64_t hh = i * g->sh - g->ph + p * g->dh;                                           \
        int64_t a = max64(j0, lo), b = min64(j1, hi);                                         \
        if (hh < 0 || hh >= g->h || a >= b) {                                                 \
          memset(row, 0, sizeof(T) * (size_t)(j1 - j0));                                      \
        } else {                                                                              \
          int64_t base = hh * g->w + off; /* + j sw >= 0 for j >= lo */                       \
          memset(row, 0, sizeof(T) * (size_t)(a - j0));                                       \
          if (g->sw == 1)                                                                     \
            memcpy(row + (a - j0), plane + base + a, sizeof(T) * (size_t)(b - a));            \
          else                                                                                \
            for (int64_t j = a; j < b; j++) row[j - j0] = plane[base + j * g->sw];            \
          memset(row + (b - j0), 0, sizeof(T) * (size_t)(j1 - b));                           \
        }                                                                                     \
        row += j1 - j0, s += j1 - j0;                                                         \
      }                                                                                       \
    }                                                                                         \
  }                                                                                           \
                                                                                              \
  /* gx (one image) += the column rows [r0, r1) of src (every column, row stride ho wo). */   \
  static void col2im_##SUF(const conv_geom *g, const void *srcv, int64_t r0, int64_t r1,      \
                           void *gxv) {                                                       \
    const T *src = srcv;                                                                      \
    T *gx = gxv;                                                                              \
    for (int64_t r = r0; r < r1; r++) {                                                       \
      int64_t c = r / (g->kh * g->kw), p = r / g->kw % g->kh, q = r % g->kw;                  \
      int64_t off = q * g->dw - g->pw, lo, hi;                                                \
      valid_cols(g->wo, g->w, g->sw, off, &lo, &hi);                                          \
      T *plane = gx + c * g->h * g->w;                                                        \
      const T *row = src + (r - r0) * g->ho * g->wo;                                          \
      for (int64_t i = 0; i < g->ho; i++) {                                                   \
        int64_t hh = i * g->sh - g->ph + p * g->dh;                                           \
        if (hh < 0 || hh >= g->h) continue;                                                   \
        int64_t base = hh * g->w + off;                                                       \
        const T *sr = row + i * g->wo;                                                        \
        for (int64_t j = lo; j < hi; j++) plane[base + j * g->sw] += sr[j];                   \
      }                                                                                       \
    }                                                                                         \
  }

CONV_LEAVES_DEFINE(float, f32)
CONV_LEAVES_DEFINE(double, f64)

static conv_ctx ctx_make(fg_dtype t, const fg_kargs *k, conv_geom g) {
  conv_ctx c = {.t = t, .es = fg_dtype_size(t), .g = g, .nth = k->nth, .err = k->err};
  c.im2col = t == FG_F32 ? im2col_f32 : im2col_f64;
  c.col2im = t == FG_F32 ? col2im_f32 : col2im_f64;
  c.direct = fg_conv_direct_kernels_for(t);
  return c;
}

/* ---- which path (see the top of the file) ---- */

enum { PATH_UNREAD = -1, PATH_AUTO, PATH_GEMM, PATH_DIRECT, PATH_SHIFTED };
static atomic_int conv_path = PATH_UNREAD;

static int forced_path(void) {
  int p = atomic_load(&conv_path);
  if (p == PATH_UNREAD) {
    const char *s = getenv("FG_CONV_PATH");
    p = !s ? PATH_AUTO : strcmp(s, "gemm") == 0 ? PATH_GEMM
                       : strcmp(s, "direct") == 0 ? PATH_DIRECT
                       : strcmp(s, "shifted") == 0 ? PATH_SHIFTED : PATH_AUTO;
    atomic_store(&conv_path, p);
  }
  return p;
}

/* Whether the direct kernel runs instead of im2col + GEMM (see the top of the file): with few
 * output channels, and for the weight gradient also with few taps (C KH KW <=
 * DIRECT_MAX_FEW_TAPS), where the GEMM's n is that small and packing all of dy costs more than
 * the arithmetic (Glow's 2->128 3x3 at 14x14 took 1.0 ms that way, 0.58 ms direct, in the
 * training step), and on large images (DIRECT_MIN_WGRAD_PIXELS), where its dot products are
 * long (RealNVP's 64->64 3x3 at 28x28: 243-249 GFLOP/s against 208-217 as shifted GEMMs; at
 * 14x14 the shifted GEMMs win, 241-244 against 212-218 for 128->128).  The forward of few-tap
 * shapes measured no faster direct.  With many input channels and at most
 * DIRECT_MAX_WEIGHT_ELEMS weights (256 KiB in float32), all three ops run direct: the kernel
 * sweeps all weights for every block of outputs, and these stay in L2 with the padded image
 * (RealNVP's 64->64 3x3, native, 2 threads: at 28x28 forward 307-317 GFLOP/s against 285-288
 * as shifted GEMMs, input gradient 313-317 against 249-281 by GEMM + col2im, weight gradient
 * 254-263 already direct; at 14x14 267 against 223-239, 268 against 218-264, 242-250 against
 * 179-205).  128->128 3x3 (590 KiB of weights) measured no faster direct. */
enum conv_kind { KIND_FORWARD, KIND_INPUT_GRAD, KIND_WEIGHT_GRAD };
static bool use_direct(const conv_geom *g, enum conv_kind kind) {
  if (g->sh != 1 || g->sw != 1) return false;
  switch (forced_path()) {
  case PATH_GEMM:
  case PATH_SHIFTED: return false;
  case PATH_DIRECT: return true;
  default:
    return !is_pointwise(g) &&
           (g->o <= DIRECT_MAX_O ||
            (g->c >= DIRECT_MAX_O && g->c * g->kh * g->kw * g->o <= DIRECT_MAX_WEIGHT_ELEMS) ||
            (kind == KIND_WEIGHT_GRAD && (g->c * g->kh * g->kw <= DIRECT_MAX_FEW_TAPS ||
                                          g->ho * g->wo >= DIRECT_MIN_WGRAD_PIXELS)));
  }
}

/* Whether conv2d and its weight gradient run as shifted GEMMs (below) instead of im2col +
 * GEMM: stride 1, a kernel wider than 1x1, and at least DIRECT_MAX_O channels on both sides,
 * so that each GEMM has rows and depth enough (tools/bench_dense, forward: 128->128 3x3 at
 * 14x14 193-217 -> 233-243 GFLOP/s, RealNVP's 64->64 at 28x28 197-201 -> 267-269; with 2 or
 * 4 input channels it is 3x slower; weight gradient: see weight_grad_run).  Not for the input
 * gradient: the same scheme measured slower there than GEMM + col2im (128->128: 211-229
 * against 280-285 GFLOP/s). */
static bool use_shifted(const conv_geom *g) {
  if (g->sh != 1 || g->sw != 1 || is_pointwise(g)) return false;
  switch (forced_path()) {
  case PATH_GEMM:
  case PATH_DIRECT: return false;
  case PATH_SHIFTED: return true;
  default: return g->c >= DIRECT_MAX_O && g->o > DIRECT_MAX_O;
  }
}

/* ---- conv2d: y[n][:, s0:s1] = W . col[n][:, s0:s1] over (image, output pixel) items ---- */

static fg_status fwd_segment(const conv_ctx *c, const void *x, const void *w, void *y,
                             int64_t n, int64_t s0, int64_t s1, void *buf, int64_t chunk) {
  const conv_geom *g = &c->g;
  int64_t S = g->ho * g->wo, R = g->c * g->kh * g->kw;
  const void *img = at_c(c, x, n * g->c * g->h * g->w);
  for (int64_t a = s0; a < s1; a += chunk) {
    int64_t b = min64(s1, a + chunk);
    fg_gemm_dims d = {.m = g->o, .n = b - a, .k = R, .lda = R, .ldc = S};
    const void *col = at_c(c, img, a); /* 1x1: col[n] is the image, ldb = H W = S */
    d.ldb = S;
    if (!is_pointwise(g)) {
      c->im2col(g, img, 0, R, a, b, buf, b - a);
      col = buf, d.ldb = b - a;
    }
    fg_status st = gemm(c, d, w, col, at_m(c, y, n * g->o * S + a), "conv2d");
    if (st != FG_OK) return st;
    for (int64_t o = 0; c->bias && o < g->o; o++)
      epilogue(c, at_m(c, y, (n * g->o + o) * S + a), o, b - a);
  }
  return FG_OK;
}

/* conv2d, and conv2d_bias_act with its bias and activation (both attrs start with the geometry). */
static fg_status conv2d_run(const fg_kargs *k, fg_dtype t, const void *bias, bool relu) {
  const fg_conv2d_opts *geom = k->attr;
  const int64_t *x = k->in_shape[0].d, *w = k->in_shape[1].d;
  conv_geom g = {.n = x[0], .c = x[1], .h = x[2], .w = x[3], .o = w[0], .kh = w[2], .kw = w[3],
                 .ho = k->out_shape.d[2], .wo = k->out_shape.d[3], .sh = geom->stride[0],
                 .sw = geom->stride[1], .ph = geom->padding[0], .pw = geom->padding[1],
                 .dh = geom->dilation[0], .dw = geom->dilation[1]};
  conv_ctx c = ctx_make(t, k, g);
  c.bias = bias, c.relu = relu;
  if (use_direct(&g, KIND_FORWARD)) return fg_conv_direct_forward(&c, k);
  if (use_shifted(&g)) return fg_conv_shifted_forward(&c, k);
  int64_t S = g.ho * g.wo, R = g.c * g.kh * g.kw, i0, i1;
  /* Parts take whole images when an image has MIN_PART_PIXELS / 2 pixels or more: a part
   * that ends inside an image leaves two short GEMMs (tools/bench_dense, forward: 1x1
   * 128->128 at 14x14 246-264 -> 322-333 GFLOP/s, 2->128 3x3 126-131 -> 217-223). */
  int64_t unit = S >= MIN_PART_PIXELS / 2 ? max64(S, 1) : 1;
  c.nth = fg_parts_for(g.n * S / unit, (MIN_PART_PIXELS + unit - 1) / unit, k->nth);
  if (k->ith >= c.nth) return FG_OK;
  fg_split_range(g.n * S / unit, k->ith, c.nth, &i0, &i1);
  i0 *= unit, i1 *= unit;
  if (i0 == i1) return FG_OK;
  /* 1x1 reads x in place: one GEMM per image segment, no chunking needed */
  int64_t chunk = is_pointwise(&g) ? i1 - i0
                                   : min64(max64(SCRATCH_ELEMS / max64(R, 1), 64), i1 - i0);
  void *buf = NULL;
  if (!is_pointwise(&g) && !(buf = scratch(&c, R * chunk))) return nomem(&c, "conv2d");
  fg_status st = FG_OK;
  for (int64_t it = i0; it < i1 && st == FG_OK;) {
    int64_t n = it / S, s0 = it % S, s1 = min64(S, s0 + (i1 - it));
    st = fwd_segment(&c, k->in[0], k->in[1], k->out, n, s0, s1, buf, chunk);
    it += s1 - s0;
  }
  free(buf);
  return st;
}

/* ---- input_grad: gx[n][c0:c1] = col2im(W^T[taps of c0:c1] . dy[n]) over (image, channel) ---- */

static fg_status igrad_segment(const conv_ctx *c, const void *dy, const void *w, void *gx,
                               int64_t n, int64_t c0, int64_t c1, void *buf, int64_t chunk) {
  const conv_geom *g = &c->g;
  int64_t S = g->ho * g->wo, KK = g->kh * g->kw, HW = g->h * g->w;
  const void *dyn = at_c(c, dy, n * g->o * S);
  void *gxn = at_m(c, gx, n * g->c * HW);
  if (is_pointwise(g)) { /* gx[n][c0:c1] = W[:, c0:c1]^T . dy[n] directly */
    fg_gemm_dims d = {.ta = true, .m = c1 - c0, .n = S, .k = g->o, .lda = g->c, .ldb = S,
                      .ldc = HW};
    return gemm(c, d, at_c(c, w, c0), dyn, at_m(c, gxn, c0 * HW), "conv2d_input_grad");
  }
  memset(at_m(c, gxn, c0 * HW), 0, c->es * (size_t)((c1 - c0) * HW));
  for (int64_t a = c0; a < c1; a += chunk) {
    int64_t b = min64(c1, a + chunk);
    fg_gemm_dims d = {.ta = true, .m = (b - a) * KK, .n = S, .k = g->o, .lda = g->c * KK,
                      .ldb = S, .ldc = S};
    fg_status st = gemm(c, d, at_c(c, w, a * KK), dyn, buf, "conv2d_input_grad");
    if (st != FG_OK) return st;
    c->col2im(g, buf, a * KK, b * KK, gxn);
  }
  return FG_OK;
}

static fg_status input_grad_run(const fg_kargs *k, fg_dtype t) {
  const fg_conv2d_attr *at = k->attr;
  const int64_t *dy = k->in_shape[0].d, *w = k->in_shape[1].d;
  conv_geom g = {.n = dy[0], .c = w[1], .h = at->size[0], .w = at->size[1], .o = w[0],
                 .kh = w[2], .kw = w[3], .ho = dy[2], .wo = dy[3], .sh = at->geom.stride[0],
                 .sw = at->geom.stride[1], .ph = at->geom.padding[0], .pw = at->geom.padding[1],
                 .dh = at->geom.dilation[0], .dw = at->geom.dilation[1]};
  conv_ctx c = ctx_make(t, k, g);
  if (use_direct(&g, KIND_INPUT_GRAD)) return fg_conv_direct_input_grad(&c, k);
  int64_t S = g.ho * g.wo, KK = g.kh * g.kw, i0, i1;
  /* at least MIN_PART_TAPS rows of W^T per GEMM: each packs all of dy[n] */
  c.nth = fg_parts_for(g.n * g.c, (MIN_PART_TAPS + KK - 1) / KK, k->nth);
  if (k->ith >= c.nth) return FG_OK;
  fg_split_range(g.n * g.c, k->ith, c.nth, &i0, &i1);
  if (i0 == i1) return FG_OK;
  int64_t chunk = min64(max64(SCRATCH_ELEMS / max64(KK * S, 1), 1), i1 - i0);
  void *buf = NULL;
  if (!is_pointwise(&g) && !(buf = scratch(&c, chunk * KK * S)))
    return nomem(&c, "conv2d_input_grad");
  fg_status st = FG_OK;
  for (int64_t it = i0; it < i1 && st == FG_OK;) {
    int64_t n = it / g.c, c0 = it % g.c, c1 = min64(g.c, c0 + (i1 - it));
    st = igrad_segment(&c, k->in[0], k->in[1], k->out, n, c0, c1, buf, chunk);
    it += c1 - c0;
  }
  free(buf);
  return st;
}

/* ---- weight_grad: gw[o0:o1, r0:r1] = sum_n dy[n][o0:o1] . col[n][r0:r1]^T over tiles ----
 * Per-image GEMMs would have k = Ho Wo (tiny at 7x7) and re-read the gw tile every image, so
 * each part lays a chunk of nb images side by side, dy rows and column-matrix rows alike, and
 * makes one GEMM with k = nb Ho Wo per chunk, accumulating chunks in image order. */

static void zero_tile(const conv_ctx *c, void *gw, int64_t o0, int64_t o1, int64_t r0,
                      int64_t r1, int64_t ld) {
  for (int64_t o = o0; o < o1; o++) memset(at_m(c, gw, o * ld + r0), 0, c->es * (size_t)(r1 - r0));
}

/* gw[o0:o1, r0:r1] = sum_n dy[n][o0:o1] . col[n][r0:r1]^T with one GEMM per image, dy[n] read in
 * place and the column rows built per image (a 1x1 kernel reads x[n]'s planes in place too).
 * Copying dy and the column rows of many images side by side first (wgrad_tile below) costs
 * as much as the arithmetic at 14x14 (1x1 128->128: 196 -> 229 GFLOP/s without it) and copies
 * dy once per tile; but at 7x7 k = 49 is too short a GEMM (207 -> 160), so only images of at
 * least MIN_INPLACE_WGRAD_PIXELS pixels go this way.  Column rows go in chunks of at most
 * SCRATCH_ELEMS. */
static fg_status wgrad_tile_inplace(const conv_ctx *c, const void *x, const void *dy, void *gw,
                                    int64_t o0, int64_t o1, int64_t r0, int64_t r1) {
  const conv_geom *g = &c->g;
  int64_t S = g->ho * g->wo, R = g->c * g->kh * g->kw, CHW = g->c * g->h * g->w;
  int64_t chunk = min64(max64(SCRATCH_ELEMS / S, 1), r1 - r0);
  void *buf = NULL;
  if (!is_pointwise(g) && !(buf = scratch(c, chunk * S))) return nomem(c, "conv2d_weight_grad");
  fg_status st = FG_OK;
  for (int64_t a = r0; a < r1 && st == FG_OK; a += chunk) {
    int64_t b = min64(r1, a + chunk);
    for (int64_t n = 0; n < g->n && st == FG_OK; n++) {
      const void *col = at_c(c, x, n * CHW + a * S); /* 1x1: the rows are x[n]'s planes */
      if (buf) c->im2col(g, at_c(c, x, n * CHW), a, b, 0, S, buf, S), col = buf;
      fg_gemm_dims d = {.tb = true, .accumulate = n > 0, .m = o1 - o0, .n = b - a, .k = S,
                        .lda = S, .ldb = S, .ldc = R};
      st = gemm(c, d, at_c(c, dy, (n * g->o + o0) * S), col, at_m(c, gw, o0 * R + a),
                "conv2d_weight_grad");
    }
  }
  free(buf);
  return st;
}

static fg_status wgrad_tile(const conv_ctx *c, const void *x, const void *dy, void *gw,
                            int64_t o0, int64_t o1, int64_t r0, int64_t r1) {
  const conv_geom *g = &c->g;
  int64_t S = g->ho * g->wo, R = g->c * g->kh * g->kw, CHW = g->c * g->h * g->w;
  int64_t ot = o1 - o0, rt = r1 - r0;
  if (g->n == 0 || S == 0) { /* an empty sum */
    zero_tile(c, gw, o0, o1, r0, r1, R);
    return FG_OK;
  }
  int64_t nb = min64(max64(SCRATCH_ELEMS / ((ot + rt) * S), 1), g->n);
  void *dyc = scratch(c, ot * nb * S), *col = scratch(c, rt * nb * S);
  fg_status st = dyc && col ? FG_OK : nomem(c, "conv2d_weight_grad");
  for (int64_t n0 = 0; st == FG_OK && n0 < g->n; n0 += nb) {
    int64_t n1 = min64(g->n, n0 + nb), ld = (n1 - n0) * S;
    for (int64_t n = n0; n < n1; n++) {
      const void *img = at_c(c, x, n * CHW);
      int64_t at = (n - n0) * S;
      for (int64_t o = o0; o < o1; o++)
        memcpy(at_m(c, dyc, (o - o0) * ld + at), at_c(c, dy, (n * g->o + o) * S), c->es * (size_t)S);
      if (!is_pointwise(g)) c->im2col(g, img, r0, r1, 0, S, at_m(c, col, at), ld);
      else /* 1x1: the column rows are x[n]'s channel planes */
        for (int64_t r = r0; r < r1; r++)
          memcpy(at_m(c, col, (r - r0) * ld + at), at_c(c, img, r * S), c->es * (size_t)S);
    }
    fg_gemm_dims d = {.tb = true, .accumulate = n0 > 0, .m = ot, .n = rt, .k = ld, .lda = ld,
                      .ldb = ld, .ldc = R};
    st = gemm(c, d, dyc, col, at_m(c, gw, o0 * R + r0), "conv2d_weight_grad");
  }
  free(dyc), free(col);
  return st;
}

static fg_status weight_grad_run(const fg_kargs *k, fg_dtype t) {
  const fg_conv2d_attr *at = k->attr;
  const int64_t *x = k->in_shape[0].d, *dy = k->in_shape[1].d;
  conv_geom g = {.n = x[0], .c = x[1], .h = x[2], .w = x[3], .o = dy[1], .kh = at->size[0],
                 .kw = at->size[1], .ho = dy[2], .wo = dy[3], .sh = at->geom.stride[0],
                 .sw = at->geom.stride[1], .ph = at->geom.padding[0], .pw = at->geom.padding[1],
                 .dh = at->geom.dilation[0], .dw = at->geom.dilation[1]};
  conv_ctx c = ctx_make(t, k, g);
  int64_t S = g.ho * g.wo, R = g.c * g.kh * g.kw, r0, r1, o0, o1;
  int pr, pc;
  /* direct: over (tap, output channel) tiles, taps first, since a part pads the images'
   * channels its taps read and widens dy for its output channels */
  if (use_direct(&g, KIND_WEIGHT_GRAD)) {
    fg_tile_grid(R, g.o, MIN_PART_DIRECT_TAPS, MIN_PART_DIRECT_ROWS, k->nth, &pr, &pc);
    if (k->ith >= pr * pc) return FG_OK;
    fg_split_range(R, k->ith / pc, pr, &r0, &r1);
    fg_split_range(g.o, k->ith % pc, pc, &o0, &o1);
    if (r0 == r1 || o0 == o1) return FG_OK;
    if (g.n > 0 && S > 0) return fg_conv_direct_weight_grad(&c, k, r0, r1, o0, o1);
    zero_tile(&c, k->out, o0, o1, r0, r1, R);
    return FG_OK;
  }
  /* shifted GEMMs over channel ranges (as conv2d; the sums do not depend on the split): GEMMs
   * with n = 64 channels where there are 128 or more (128->128 3x3 at 14x14: 2 parts 252,
   * 4 parts 222, 8 parts 166-179 GFLOP/s; 64->64 at 28x28: 2 parts 215-220, one 126; the
   * im2col path 186-208 on both) */
  if (use_shifted(&g) && g.n > 0) {
    int parts = fg_parts_for(g.c, g.c >= 128 ? 64 : 32, k->nth);
    if (k->ith >= parts) return FG_OK;
    int64_t c0, c1;
    fg_split_range(g.c, k->ith, parts, &c0, &c1);
    return c0 == c1 ? FG_OK : fg_conv_shifted_weight_grad(&c, k, c0, c1);
  }
  /* In place (see wgrad_tile_inplace) for big enough images: a 1x1 kernel over the usual tile
   * grid; otherwise over taps only, so that no two parts build the same column rows, when
   * there are taps enough for two parts. */
  bool inplace = g.n > 0 && S >= MIN_INPLACE_WGRAD_PIXELS &&
                 (is_pointwise(&g) || R >= 2 * MIN_PART_INPLACE_TAPS);
  if (inplace && !is_pointwise(&g)) {
    pr = 1;
    pc = fg_parts_for(R, MIN_PART_INPLACE_TAPS, k->nth);
  } else {
    /* 1x1: tiles 128 rows tall, and split across columns only when there are fewer than
     * two such row tiles (128->128 at 14x14: 64 x 64 tiles 150-218 GFLOP/s, 128 x 64 tiles
     * 231-265, at 7x7 189-192 against 227-237; 256->256: 128 x 64 tiles 180-198, 128 x 128
     * 212-218, 128 x 256 249-255); a 3x3 with few taps needs the row split */
    bool tall = is_pointwise(&g);
    int64_t min_cols = tall && g.o >= 2 * MIN_PART_POINTWISE_ROWS ? R : MIN_PART_TAPS;
    fg_tile_grid(g.o, R, tall ? MIN_PART_POINTWISE_ROWS : MIN_PART_TAPS, min_cols, k->nth, &pr,
                 &pc);
  }
  if (k->ith >= pr * pc) return FG_OK;
  c.nth = pr * pc;
  fg_split_range(g.o, k->ith / pc, pr, &o0, &o1);
  fg_split_range(R, k->ith % pc, pc, &r0, &r1);
  if (o0 == o1 || r0 == r1) return FG_OK;
  return inplace ? wgrad_tile_inplace(&c, k->in[0], k->in[1], k->out, o0, o1, r0, r1)
                 : wgrad_tile(&c, k->in[0], k->in[1], k->out, o0, o1, r0, r1);
}

static fg_status conv2d_f32(const fg_kargs *k) { return conv2d_run(k, FG_F32, NULL, false); }
static fg_status conv2d_f64(const fg_kargs *k) { return conv2d_run(k, FG_F64, NULL, false); }
static fg_status bias_act_f32(const fg_kargs *k) {
  return conv2d_run(k, FG_F32, k->in[2], ((const fg_conv2d_bias_act_attr *)k->attr)->relu != 0);
}
static fg_status bias_act_f64(const fg_kargs *k) {
  return conv2d_run(k, FG_F64, k->in[2], ((const fg_conv2d_bias_act_attr *)k->attr)->relu != 0);
}
static fg_status input_grad_f32(const fg_kargs *k) { return input_grad_run(k, FG_F32); }
static fg_status input_grad_f64(const fg_kargs *k) { return input_grad_run(k, FG_F64); }
static fg_status weight_grad_f32(const fg_kargs *k) { return weight_grad_run(k, FG_F32); }
static fg_status weight_grad_f64(const fg_kargs *k) { return weight_grad_run(k, FG_F64); }

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

fg_node fg_conv2d_input_grad(fg_graph *g, fg_node dy, fg_node w, int64_t h, int64_t w_size,
                             const fg_conv2d_opts *opts) {
  return add_conv_node(g, FG_OP_CONV2D_INPUT_GRAD, dy, w, opts, h, w_size);
}

fg_node fg_conv2d_weight_grad(fg_graph *g, fg_node x, fg_node dy, int64_t kh, int64_t kw,
                              const fg_conv2d_opts *opts) {
  return add_conv_node(g, FG_OP_CONV2D_WEIGHT_GRAD, x, dy, opts, kh, kw);
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

static fg_status input_grad_vjp(fg_graph *g, fg_node node, fg_node gout, uint32_t need,
                                fg_node *gin) {
  const fg_conv2d_attr *at = fg_node_attr(g, node);
  fg_node dy = fg_node_input(g, node, 0), w = fg_node_input(g, node, 1);
  fg_shape ws = fg_node_shape(g, w);
  if (need & 1u) gin[0] = fg_conv2d(g, gout, w, FG_NONE, &at->geom);
  if (need & 2u) gin[1] = fg_conv2d_weight_grad(g, gout, dy, ws.d[2], ws.d[3], &at->geom);
  return fg_graph_status(g);
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

const fg_op_def fg_opdef_conv2d = {
    .name = "conv2d",
    .n_in = 2,
    .attr_size = sizeof(fg_conv2d_attr),
    .infer = conv2d_infer,
    .kernel_f32 = conv2d_f32,
    .kernel_f64 = conv2d_f64,
    .vjp = conv2d_vjp,
};

const fg_op_def fg_opdef_conv2d_bias_act = {
    .name = "conv2d_bias_act",
    .n_in = 3,
    .attr_size = sizeof(fg_conv2d_bias_act_attr),
    .infer = bias_act_infer,
    .kernel_f32 = bias_act_f32,
    .kernel_f64 = bias_act_f64,
    .vjp = bias_act_vjp,
};

const fg_op_def fg_opdef_conv2d_input_grad = {
    .name = "conv2d_input_grad",
    .n_in = 2,
    .attr_size = sizeof(fg_conv2d_attr),
    .infer = input_grad_infer,
    .kernel_f32 = input_grad_f32,
    .kernel_f64 = input_grad_f64,
    .vjp = input_grad_vjp,
};

const fg_op_def fg_opdef_conv2d_weight_grad = {
    .name = "conv2d_weight_grad",
    .n_in = 2,
    .attr_size = sizeof(fg_conv2d_attr),
    .infer = weight_grad_infer,
    .kernel_f32 = weight_grad_f32,
    .kernel_f64 = weight_grad_f64,
    .vjp = weight_grad_vjp,
};
