/* Convolutions with few channels on one side as GEMMs over the taps (the implementation
 * "taps"), at stride 1.
 *
 * Glow's output convs (256 -> 4 and 256 -> 8, 3x3) have O KH KW = 36 or 72 "tap planes":
 * y[o] = sum over taps (p, q) of T[o, p, q] shifted by the tap's offset, where T[o, p, q] =
 * sum_c w[o, c, p, q] x[c].  So the forward is one GEMM [O KK, C] x [C, H W] per image that
 * reads the image as it lies (no padded copy: the direct path's copy of a 256-channel image is
 * a third of its time, bound by reading the image from memory), then a shifted sum of the small
 * tap planes into the output.  The gradients take the same GEMMs, with one side small:
 *  - few output channels (O KK rows): S[o, p, q] = dy shifted by each tap (a gather of dy into
 *    O KK planes of the input's size); dx = [C, O KK] x S, dw[o, c, p, q] = sum S[o, p, q] x[c];
 *  - few input channels (C KK rows, Glow's first conv, 2 or 4 -> 256): dx[c] = the shifted sum
 *    of T'[c, p, q] = sum_o w[o, c, p, q] dy[o]; dw[o, c, p, q] = sum dy[o] X[c, p, q], X the C
 *    KK planes of x shifted by each tap (im2col, small with few channels).
 * dnnl_sgemm runs such shapes at 134-162 GFLOP/s a core ("Intel(R) Xeon(R) Processor", one
 * thread, 32 images of 14x14: [36, 256] x [256, 196] 145 GFLOP/s, [256, 36] x [36, 196] 157,
 * [36, 196] x [196, 256] 134) where the direct kernels reach 60-90 in the program.  The GEMMs
 * without transposes (forward, input gradients) go, in float32 on AVX-512, to the 1x1 convs'
 * kernel, which prefetches the next image while it multiplies (taps_gemm).  With few input
 * channels both gradients go there to kernels of their own (conv_taps_few_in.c), which read dy
 * in place: sgemm packs all of dy for 18 or 36 rows or columns.
 *
 * Phases: the weights rearranged once per run (forward, input gradient), then images in parts;
 * the weight gradient sums each part's images into its own partial, then the partials in part
 * order (conv2d_weight_bias_grad's bias likewise: each part's dy rows summed image by image
 * after its GEMM has read them, fg_row_lanes, then the parts' sums in order).  Parts depend
 * only on the shapes, so results are the same bits for any thread count.  Outputs add their
 * taps in a fixed order, not the direct path's: results agree with the other implementations
 * to rounding, as any two do.  The fixed rules never choose it; the timed choice (or
 * FG_KERNELS) does. */
#include <stdlib.h>
#include <string.h>

#include "ops/kernels/conv_internal.h"
#include "ops/kernels/kernels.h"

enum {
  TAPS_MAX_ROWS = 128, /* planes of the small side x taps: beyond, they outgrow the image */
  TAPS_MAX_PLANE_BYTES = 8 << 20, /* one image's tap planes (a part's scratch): large images
                                     (512x512 x 36 planes: 36 MiB) are left to the others */
  TAPS_MAX_PARTS = 16,
  TAPS_MIN_PART_IMAGES = 2,
  TAPS_SUM_MIN_ELEMS = 4096, /* weight-gradient elements a part of the partials' sum */
  TAPS_PW_MIN_ROWS = 32, /* a GEMM's rows for the pointwise kernel (taps_gemm), twice as many
                            for images under FG_POINTWISE_MIN_COLUMNS pixels */
  TAPS_LANES_MAX_PARTS = 8, /* few input channels by their kernels: a part's weight-gradient
                               lanes are 16 times its partial (590 KiB at 256 x 36) */
  TAPS_GROUP_PIXELS = 512,  /* and images in groups of at least this many pixels */
  TAPS_FEW_IN_MIN_PIXELS = 128, /* an image's pixels for those kernels: at 7x7 a plane's 49
                                   pixels take 4 vectors, one of them a single lane, and Glow
                                   K=16's 4 -> 256 gradients measured no faster than sgemm's
                                   (one-op programs, 2 threads, "Intel(R)
                                   Xeon(R) Processor"; README) */
};

enum { PH_PREPARE, PH_IMAGES, PH_SUM };

typedef struct taps_state {
  conv_kind kind;
  bool few_in;     /* the small side is the input's channels (else the output's) */
  bool bias, relu; /* conv2d_bias_act's epilogue */
  bool mask;       /* conv2d_input_grad_relu's */
  bool bias_grad;  /* conv2d_weight_bias_grad's, or conv2d_input_weight_grad's with a bias */
  bool both;       /* conv2d_input_weight_grad: the input gradient too (few input channels) */
  bool pointwise_gemm; /* GEMMs without transposes by the 1x1 convs' kernel (taps_gemm) */
  bool few_in_kernels; /* few input channels by conv_taps_few_in.c's kernels, not GEMMs */
  conv_geom g;
  int64_t rows;    /* the small side's channels x taps: the tap planes */
  int parts;       /* of the images */
  int phase_of[FG_KERNEL_MAX_PHASES];
  size_t part_off, part_bytes; /* in scratch: the rearranged weights at 0, then each part's */
  size_t planes_off;           /* in a part's buffer, after its partial: the tap planes */
  size_t lanes_off;            /* then the bias lanes (FG_ROW_LANES a channel) */
  size_t wlanes_off;           /* then the weight gradient's lanes (few_in_kernels) */
} taps_state;

/* The tap planes of each side: O KK (few output channels), C KK (few input channels). */
static int64_t rows_out(const conv_geom *g) { return g->o * g->kh * g->kw; }
static int64_t rows_in(const conv_geom *g) { return g->c * g->kh * g->kw; }

/* Whether the small side is the input's: the forward only takes few output channels (with few
 * input channels im2col + GEMM is this already). */
static bool few_in(const conv_geom *g, conv_kind kind) {
  return kind != CONV_FORWARD && rows_in(g) <= TAPS_MAX_ROWS &&
         (rows_out(g) > TAPS_MAX_ROWS || g->c < g->o);
}

/* Elements of a weight-gradient part's partial: [O KK][C] or [O][C KK]. */
static int64_t partial_elems(const conv_geom *g, int64_t rows, bool in) {
  return rows * (in ? g->o : g->c);
}

/* Bytes of one image's tap planes (a part's scratch). */
static int64_t plane_bytes(const conv_geom *g, conv_kind kind, size_t es) {
  return (few_in(g, kind) ? rows_in(g) * g->ho * g->wo : rows_out(g) * g->h * g->w) *
         (int64_t)es;
}

bool fg_conv_taps_applies(const conv_geom *g, conv_kind kind, size_t es) {
  return g->sh == 1 && g->sw == 1 && !is_pointwise(g) && g->n > 0 && g->c > 0 && g->o > 0 &&
         (rows_out(g) <= TAPS_MAX_ROWS || few_in(g, kind)) &&
         plane_bytes(g, kind, es) <= TAPS_MAX_PLANE_BYTES;
}

/* ---- shifted planes, for float and double ----
 * A plane pair: src planes of sh x sw, dst planes of dh x dw; tap (p, q) relates dst (i, j) to
 * src (i + sign (p dil_h - ph), j + sign (q dil_w - pw)), where that lies inside src. */
typedef struct shift {
  int64_t planes, kh, kw, sh, sw, dh, dw;
  int64_t oh, ow, ph, pw; /* tap offsets: p oh - ph, q ow - pw (dilation and padding) */
  int sign;
  int64_t src_stride; /* between src planes: sh sw, or more in a group's channel-major planes */
  int64_t dst_stride; /* between gather's dst planes: dh dw, or more (zeros past dh dw) */
} shift;

/* Tap (p, q): src (i + di, j + dj) for dst (i, j) in rows [i0, i1) x columns [j0, j1). */
typedef struct tap_window {
  int64_t di, dj, i0, i1, j0, j1;
} tap_window;

static tap_window tap_window_of(const shift *s, int64_t p, int64_t q) {
  tap_window w = {.di = s->sign * (p * s->oh - s->ph), .dj = s->sign * (q * s->ow - s->pw)};
  conv_valid_cols(s->dh, s->sh, 1, w.di, &w.i0, &w.i1); /* rows and columns alike */
  conv_valid_cols(s->dw, s->sw, 1, w.dj, &w.j0, &w.j1);
  return w;
}

#define TAPS_DEFINE(T, SUF)                                                                   \
  /* dst[k][i][j] = sum over taps t of src[(k KK + t)] at the tap's offset, taps in order;    \
   * then act(. + bias[k]) when bias. */                                                      \
  static void shift_sum_##SUF(const shift *s, const T *src, const T *bias, bool relu,        \
                              T *dst) {                                                       \
    int64_t kk = s->kh * s->kw, splane = s->src_stride, dplane = s->dh * s->dw;               \
    for (int64_t k = 0; k < s->planes; k++) {                                                 \
      T *d = dst + k * dplane;                                                                \
      memset(d, 0, sizeof(T) * (size_t)dplane);                                               \
      for (int64_t p = 0; p < s->kh; p++)                                                     \
        for (int64_t q = 0; q < s->kw; q++) {                                                 \
          tap_window w = tap_window_of(s, p, q);                                              \
          const T *sp = src + (k * kk + p * s->kw + q) * splane + w.di * s->sw + w.dj;        \
          for (int64_t i = w.i0; i < w.i1; i++)                                               \
            for (int64_t j = w.j0; j < w.j1; j++) d[i * s->dw + j] += sp[i * s->sw + j];      \
        }                                                                                     \
      T b = bias ? bias[k] : 0;                                                               \
      for (int64_t i = 0; bias && i < dplane; i++) {                                          \
        T v = d[i] + b;                                                                       \
        d[i] = !relu || v > 0 ? v : 0;                                                        \
      }                                                                                       \
    }                                                                                         \
  }                                                                                           \
                                                                                              \
  /* dst[(k KK + t)] = src[k] at tap t's offset, 0 outside src. */                            \
  static void gather_##SUF(const shift *s, const T *src, T *dst) {                            \
    int64_t kk = s->kh * s->kw, splane = s->src_stride, dplane = s->dst_stride;               \
    for (int64_t k = 0; k < s->planes; k++)                                                   \
      for (int64_t p = 0; p < s->kh; p++)                                                     \
        for (int64_t q = 0; q < s->kw; q++) {                                                 \
          tap_window w = tap_window_of(s, p, q);                                              \
          T *d = dst + (k * kk + p * s->kw + q) * dplane;                                     \
          memset(d, 0, sizeof(T) * (size_t)dplane);                                           \
          const T *sp = src + k * splane + w.di * s->sw + w.dj;                               \
          for (int64_t i = w.i0; i < w.i1; i++)                                               \
            memcpy(d + i * s->dw + w.j0, sp + i * s->sw + w.j0,                               \
                   sizeof(T) * (size_t)(w.j1 - w.j0));                                        \
        }                                                                                     \
  }
TAPS_DEFINE(float, f32)
TAPS_DEFINE(double, f64)

/* From planes of the input's size to the output's (sign +1) or back (-1). */
static shift shift_of(const conv_geom *g, int64_t planes, bool to_output) {
  shift s = {.planes = planes, .kh = g->kh, .kw = g->kw, .oh = g->dh, .ow = g->dw, .ph = g->ph,
             .pw = g->pw, .sign = to_output ? 1 : -1};
  s.sh = to_output ? g->h : g->ho, s.sw = to_output ? g->w : g->wo;
  s.dh = to_output ? g->ho : g->h, s.dw = to_output ? g->wo : g->w;
  s.src_stride = s.sh * s.sw, s.dst_stride = s.dh * s.dw;
  return s;
}

static void shift_sum(const conv_ctx *c, const shift *s, const void *src, const void *bias,
                      bool relu, void *dst) {
  if (c->t == FG_F32) shift_sum_f32(s, src, bias, relu, dst);
  else shift_sum_f64(s, src, bias, relu, dst);
}

static void gather(const conv_ctx *c, const shift *s, const void *src, void *dst) {
  if (c->t == FG_F32) gather_f32(s, src, dst);
  else gather_f64(s, src, dst);
}

/* ---- the weights for the GEMMs: forward wt[(o, t)][c], input gradient with few output
 * channels wt[c][(o, t)], with few input channels wt[(c, t)][o]; all w[o][c][t] ---- */
#define REARRANGE_DEFINE(T, SUF)                                                              \
  static void rearrange_##SUF(const taps_state *s, const T *w, T *wt) {                       \
    const conv_geom *g = &s->g;                                                               \
    int64_t kk = g->kh * g->kw;                                                               \
    for (int64_t o = 0; o < g->o; o++)                                                        \
      for (int64_t ch = 0; ch < g->c; ch++)                                                   \
        for (int64_t t = 0; t < kk; t++) {                                                    \
          T v = w[(o * g->c + ch) * kk + t];                                                  \
          if (s->kind == CONV_FORWARD) wt[(o * kk + t) * g->c + ch] = v;                      \
          else if (s->few_in) wt[(ch * kk + t) * g->o + o] = v;                               \
          else wt[ch * s->rows + o * kk + t] = v;                                             \
        }                                                                                     \
  }
REARRANGE_DEFINE(float, f32)
REARRANGE_DEFINE(double, f64)

static void rearrange_weights(const conv_ctx *c, const taps_state *s, const void *w, void *wt) {
  if (c->t == FG_F32) rearrange_f32(s, w, wt);
  else rearrange_f64(s, w, wt);
}

/* ---- the phases ---- */

/* out = wt b (d: no transposes), then out *= (mask > 0) where mask is not NULL.  In float32 on
 * CPUs with AVX-512 by the 1x1 convs' kernel (ops/kernels/conv_pointwise.c; wt read in place),
 * which prefetches the next image's b (next, or NULL) into L2 while it multiplies and applies
 * the mask as it stores: the images come from memory, and sgemm waits on their reads.  It packs
 * each panel of b once for all rows, which pays over TAPS_PW_MIN_ROWS rows, or twice as many at
 * fewer than FG_POINTWISE_MIN_COLUMNS columns.  One core, 64 images from memory ("Intel(R)
 * Xeon(R) Processor"): [256, 36] x [36, 196] 2.32-2.39 ms against sgemm's 2.97 (mask apart),
 * [36, 256] x [256, 196] 2.57-2.66 against 2.6-3.0, [18, 256] x [256, 196] 1.41 against 1.17
 * (in cache).  Glow K=16's training step (FG_PROFILE, the same Xeon, 2 cores, runs
 * alternating with the build before): the 4 -> 256 masked input gradient at 14x14 28-30 ms
 * against 33-39, the 256 -> 8 forward at 7x7 ([72, 256] x [256, 49]) 11.8 against 12.7-13.7,
 * the 4 -> 256 gradients at 7x7 ([36, 256] x [256, 49]) 15.2-16.0 against 14.0-14.6.
 * Elsewhere fg_gemm. */
static fg_status taps_gemm(const conv_ctx *c, const taps_state *s, fg_gemm_dims d,
                           const void *wt, const void *b, const void *next, const void *mask,
                           void *out, const char *op) {
  bool pays = d.m >= 2 * TAPS_PW_MIN_ROWS ||
              (d.m >= TAPS_PW_MIN_ROWS && d.n >= FG_POINTWISE_MIN_COLUMNS);
  if (!s->pointwise_gemm || !pays) {
    fg_status st = gemm(c, d, wt, b, out, op);
    if (st == FG_OK && mask)
      fg_conv_relu_mask(&(conv_ctx){.t = c->t, .mask = mask}, out, 0, d.m * d.ldc);
    return st;
  }
  fg_conv_pointwise_gemm(&(fg_pointwise_gemm){
      .m = d.m, .n = d.n, .k = d.k, .a = wt, .a_row = d.lda, .a_depth = 1, .a_block = 8 * d.lda,
      .b = b, .ldb = d.ldb, .c = out, .ldc = d.ldc, .mask = mask, .next = next});
  return FG_OK;
}

/* One image's input gradient with few input channels: T' = wt dy, then dx the shifted sum of
 * T' (sh: back to the input's planes). */
static fg_status igrad_few_in(const conv_ctx *c, const taps_state *s, const shift *sh,
                              const void *wt, const void *dy, const void *next,
                              int64_t next_floats, void *buf, void *dx) {
  const conv_geom *g = &s->g;
  int64_t ohw = g->ho * g->wo;
  fg_status st = FG_OK;
  if (s->few_in_kernels) {
    fg_conv_taps_few_in_igrad(&(fg_taps_few_in){.o = g->o, .rows = s->rows, .s = ohw, .dy = dy,
                                                .wt = wt, .next = next,
                                                .next_floats = next_floats, .t = buf});
  } else {
    fg_gemm_dims d = {.m = s->rows, .n = ohw, .k = g->o, .lda = g->o, .ldb = ohw, .ldc = ohw};
    st = taps_gemm(c, s, d, wt, dy, next, NULL, buf, "conv2d_input_grad");
  }
  if (st == FG_OK) shift_sum(c, sh, buf, NULL, false, dx);
  return st;
}

/* Forward or input gradient of images [n0, n1), with buf for the tap planes. */
static fg_status images(const conv_ctx *c, const taps_state *s, const fg_kargs *k,
                        const void *wt, void *buf, int64_t n0, int64_t n1) {
  const conv_geom *g = &s->g;
  int64_t hw = g->h * g->w, ohw = g->ho * g->wo;
  shift sh = shift_of(g, s->few_in ? g->c : g->o, s->kind == CONV_FORWARD);
  fg_status st = FG_OK;
  int64_t in_elems = s->kind == CONV_FORWARD ? g->c * hw : g->o * ohw; /* an image's input */
  for (int64_t n = n0; st == FG_OK && n < n1; n++) {
    const void *in = at_c(c, k->in[0], n * in_elems);
    const void *next = n + 1 < n1 ? at_c(c, in, in_elems) : NULL;
    if (s->kind == CONV_FORWARD) { /* T = wt x, then y the shifted sum of T */
      fg_gemm_dims d = {.m = s->rows, .n = hw, .k = g->c, .lda = g->c, .ldb = hw, .ldc = hw};
      st = taps_gemm(c, s, d, wt, in, next, NULL, buf, "conv2d");
      if (st == FG_OK) shift_sum(c, &sh, buf, c->bias, c->relu, at_m(c, k->out, n * g->o * ohw));
    } else if (s->few_in) {
      st = igrad_few_in(c, s, &sh, wt, in, next, in_elems, buf, at_m(c, k->out, n * g->c * hw));
      if (st == FG_OK) fg_conv_relu_mask(c, k->out, n * g->c * hw, g->c * hw);
    } else { /* S = dy at each tap, then dx = wt S, masked as it is stored */
      gather(c, &sh, in, buf);
      fg_gemm_dims d = {.m = g->c, .n = hw, .k = s->rows, .lda = s->rows, .ldb = hw, .ldc = hw};
      st = taps_gemm(c, s, d, wt, buf, NULL, c->mask ? at_c(c, c->mask, n * g->c * hw) : NULL,
                     at_m(c, k->out, n * g->c * hw), "conv2d_input_grad");
    }
  }
  return st;
}

/* A part's buffers in scratch: the weight gradient's partial, one image's tap planes (a
 * group's with few_in_kernels), the bias lanes (conv2d_weight_bias_grad, or
 * conv2d_input_weight_grad's with a bias) and the weight gradient's lanes (few_in_kernels). */
typedef struct part_bufs {
  void *partial, *planes;
  double *bias_lanes;
  float *wlanes;
} part_bufs;

/* The weight gradient of images [n0, n1) into the part's partial: few output channels,
 * partial[(o, t)][c] = sum S x^T; few input channels, partial[o][(c, t)] = sum dy X^T, already
 * dw's order.  conv2d_input_weight_grad (dy its input 2) also takes each image's input gradient
 * from the same dy while it is in cache (wt: the rearranged weights). */
static fg_status wgrad_images(const conv_ctx *c, const taps_state *s, const fg_kargs *k,
                              const void *wt, const part_bufs *b, int64_t n0, int64_t n1) {
  const conv_geom *g = &s->g;
  int64_t hw = g->h * g->w, ohw = g->ho * g->wo;
  shift sh = shift_of(g, s->few_in ? g->c : g->o, s->few_in), back = shift_of(g, g->c, false);
  const void *dy_all = k->in[s->both ? 2 : 1];
  fg_status st = FG_OK;
  for (int64_t n = n0; st == FG_OK && n < n1; n++) {
    const void *x = at_c(c, k->in[0], n * g->c * hw), *dy = at_c(c, dy_all, n * g->o * ohw);
    gather(c, &sh, s->few_in ? x : dy, b->planes);
    fg_gemm_dims d = {.tb = true, .accumulate = n > n0, .m = s->few_in ? g->o : s->rows,
                      .n = s->few_in ? s->rows : g->c, .k = s->few_in ? ohw : hw};
    d.lda = d.ldb = d.k, d.ldc = d.n;
    st = gemm(c, d, s->few_in ? dy : b->planes, s->few_in ? b->planes : x, b->partial,
              "conv2d_weight_grad");
    if (s->bias_grad) conv_bias_lanes_add(c, b->bias_lanes, dy, g->o, ohw);
    if (st == FG_OK && s->both)
      st = igrad_few_in(c, s, &back, wt, dy, n + 1 < n1 ? at_c(c, dy, g->o * ohw) : NULL,
                        g->o * ohw, b->planes, at_m(c, k->out, n * g->c * hw));
  }
  return st;
}

/* The images of a group of few_in_kernels' weight gradient (wgrad_images_few_in). */
static int64_t group_images(const conv_geom *g) {
  return max64(1, TAPS_GROUP_PIXELS / max64(1, g->ho * g->wo));
}

/* A gathered plane's floats there: whole vectors, so that every plane starts aligned. */
static int64_t aligned_plane(int64_t pixels) { return (pixels + 15) / 16 * 16; }

/* The same by conv_taps_few_in.c's kernels (few_in_kernels), images in groups of at least
 * TAPS_GROUP_PIXELS pixels whose tap planes X are gathered first: the weight gradient's sums
 * stay in registers across a group's images and go to their lanes once a group; the part's
 * last group totals the lanes into its partial. */
static fg_status wgrad_images_few_in(const conv_ctx *c, const taps_state *s, const fg_kargs *k,
                                     const void *wt, const part_bufs *b, int64_t n0,
                                     int64_t n1) {
  const conv_geom *g = &s->g;
  int64_t hw = g->h * g->w, ohw = g->ho * g->wo, group = group_images(g);
  shift sh = shift_of(g, g->c, true), back = shift_of(g, g->c, false);
  sh.dst_stride = aligned_plane(ohw);
  const float *x = k->in[0], *dy = k->in[s->both ? 2 : 1];
  float *planes = b->planes;
  for (int64_t n = n0; n < n1; n += group) {
    int64_t cnt = min64(group, n1 - n), next = min64(group, n1 - n - cnt);
    /* the next group's dy into L2, its first half during the weight gradient, the rest during
     * the input gradients: in the weight gradient alone its lines came faster than one core
     * reads memory */
    const float *next_dy = next > 0 ? dy + (n + cnt) * g->o * ohw : NULL;
    int64_t total = next * g->o * ohw, half = total / 2, rest = total - half;
    for (int64_t i = 0; i < cnt; i++)
      gather_f32(&sh, x + (n + i) * g->c * hw, planes + i * s->rows * sh.dst_stride);
    fg_conv_taps_few_in_wgrad(&(fg_taps_few_in){
        .images = cnt, .o = g->o, .rows = s->rows, .s = ohw, .dy = dy + n * g->o * ohw,
        .x = planes, .x_stride = sh.dst_stride,
        .next = next_dy, .next_floats = s->both ? half : total, .lanes = b->wlanes,
        .first = n == n0});
    for (int64_t i = 0; i < cnt; i++) { /* dy in L2: the weight gradient just read it */
      const float *dyi = dy + (n + i) * g->o * ohw;
      if (s->bias_grad) conv_bias_lanes_add(c, b->bias_lanes, dyi, g->o, ohw);
      int64_t share = (rest + cnt - 1) / cnt, from = min64(rest, i * share); /* the rest */
      if (s->both)
        igrad_few_in(c, s, &back, wt, dyi, next_dy ? next_dy + half + from : NULL,
                     min64(share, rest - from), planes, at_m(c, k->out, (n + i) * g->c * hw));
    }
  }
  if (n1 > n0) fg_conv_taps_lanes_total(b->wlanes, g->o * s->rows, b->partial);
  return FG_OK;
}

/* A part's weight gradient (and conv2d_input_weight_grad's input gradient) of images [n0, n1),
 * then its bias lanes' totals. */
static fg_status wgrad_part(const conv_ctx *c, const taps_state *s, const fg_kargs *k,
                            const void *wt, const part_bufs *b, int64_t n0, int64_t n1) {
  const conv_geom *g = &s->g;
  if (n0 == n1) memset(b->partial, 0, c->es * (size_t)partial_elems(g, s->rows, s->few_in));
  if (s->bias_grad) memset(b->bias_lanes, 0, sizeof(double) * FG_ROW_LANES * (size_t)g->o);
  fg_status st = s->few_in_kernels ? wgrad_images_few_in(c, s, k, wt, b, n0, n1)
                                   : wgrad_images(c, s, k, wt, b, n0, n1);
  /* each channel's total where its lanes start, for sum_partials */
  for (int64_t o = 0; s->bias_grad && o < g->o; o++)
    b->bias_lanes[o * FG_ROW_LANES] = fg_row_lanes_total(b->bias_lanes + o * FG_ROW_LANES);
  return st;
}

/* dw[i] = sum over parts, in order, of each part's partial at i's place, for this part's
 * share of dw (i = (o C + c) KK + t); and of the bias (i = O C KK + o) from the parts' totals,
 * in double. */
#define SUM_DEFINE(T, SUF)                                                                    \
  static void sum_partials_##SUF(const taps_state *s, const char *partials, T *dw, int ith,   \
                                 int nth) {                                                   \
    const conv_geom *g = &s->g;                                                               \
    int64_t kk = g->kh * g->kw, nw = g->o * g->c * kk, b, e;                                  \
    fg_split_range(nw + (s->bias_grad ? g->o : 0), ith, nth, &b, &e);                         \
    for (int64_t i = b; i < e && i < nw; i++) {                                               \
      int64_t oc = i / kk, at = s->few_in ? i : (oc / g->c * kk + i % kk) * g->c + oc % g->c; \
      T sum = 0;                                                                              \
      for (int p = 0; p < s->parts; p++)                                                      \
        sum += ((const T *)(partials + (size_t)p * s->part_bytes))[at];                       \
      dw[i] = sum;                                                                            \
    }                                                                                         \
    for (int64_t i = b > nw ? b : nw; i < e; i++) {                                           \
      double sum = 0;                                                                         \
      for (int p = 0; p < s->parts; p++)                                                      \
        sum += ((const double *)(partials + (size_t)p * s->part_bytes + s->lanes_off))        \
            [(i - nw) * FG_ROW_LANES];                                                        \
      dw[i] = (T)sum;                                                                         \
    }                                                                                         \
  }
SUM_DEFINE(float, f32)
SUM_DEFINE(double, f64)

/* Into the output, after the input gradient's N C H W elements for conv2d_input_weight_grad. */
static void sum_partials(const conv_ctx *c, const taps_state *s, const fg_kargs *k) {
  const char *partials = (const char *)k->scratch + s->part_off;
  const conv_geom *g = &s->g;
  void *dw = at_m(c, k->out, s->both ? g->n * g->c * g->h * g->w : 0);
  if (c->t == FG_F32) sum_partials_f32(s, partials, dw, k->ith, k->nth);
  else sum_partials_f64(s, partials, dw, k->ith, k->nth);
}

static fg_status run(const fg_kargs *k, fg_dtype t) {
  const taps_state *s = k->state;
  conv_ctx c = {.t = t, .es = fg_dtype_size(t), .g = s->g, .nth = k->nth,
                .outer_parts = k->outer_parts, .err = k->err, .bias = s->bias ? k->in[2] : NULL,
                .relu = s->relu, .mask = s->mask ? k->in[2] : NULL};
  void *wt = k->scratch, *mine = (char *)k->scratch + s->part_off + (size_t)k->ith * s->part_bytes;
  int64_t n0, n1;
  switch (s->phase_of[k->phase]) {
  case PH_PREPARE:
    rearrange_weights(&c, s, k->in[1], wt);
    return FG_OK;
  case PH_IMAGES:
    fg_split_range(s->g.n, k->ith, k->nth, &n0, &n1);
    if (s->kind != CONV_WEIGHT_GRAD) return images(&c, s, k, wt, mine, n0, n1);
    return wgrad_part(&c, s, k, wt,
                      &(part_bufs){.partial = mine, .planes = (char *)mine + s->planes_off,
                                   .bias_lanes = (double *)((char *)mine + s->lanes_off),
                                   .wlanes = (float *)((char *)mine + s->wlanes_off)},
                      n0, n1);
  default:
    sum_partials(&c, s, k);
    return FG_OK;
  }
}

fg_status fg_conv_taps_f32(const fg_kargs *k) { return run(k, FG_F32); }
fg_status fg_conv_taps_f64(const fg_kargs *k) { return run(k, FG_F64); }

/* conv2d_chain's last conv over a group of cnt images (ops/kernels/conv.c): x channel-major
 * [C][cnt][H W] (the chain's layout inside a group), w as the op has it, out NCHW; c's
 * geometry is one image's, its bias and relu the epilogue.  One GEMM for the group: cnt H W
 * columns. */
fg_status fg_conv_taps_group(const conv_ctx *c, const void *x, int64_t cnt, const void *w,
                             void *out) {
  const conv_geom *g = &c->g;
  taps_state s = {.kind = CONV_FORWARD, .g = *g, .rows = rows_out(g)};
  int64_t cols = cnt * g->h * g->w;
  void *wt = scratch(c, s.rows * g->c), *t = scratch(c, s.rows * cols);
  fg_status st = wt && t ? FG_OK : nomem(c, "conv2d_chain");
  if (st == FG_OK) {
    rearrange_weights(c, &s, w, wt);
    fg_gemm_dims d = {.m = s.rows, .n = cols, .k = g->c, .lda = g->c, .ldb = cols, .ldc = cols};
    st = gemm(c, d, wt, x, t, "conv2d_chain");
  }
  shift sh = shift_of(g, g->o, true);
  sh.src_stride = cols;
  for (int64_t img = 0; st == FG_OK && img < cnt; img++)
    shift_sum(c, &sh, at_c(c, t, img * g->h * g->w), c->bias, c->relu,
              at_m(c, out, img * g->o * g->ho * g->wo));
  scratch_free(wt), scratch_free(t);
  return st;
}

static size_t aligned(size_t bytes) { return (bytes + 63) / 64 * 64; }

/* Phases and scratch: [rearranged weights] [part 0] [part 1] ..., a part's buffer its tap
 * planes (and for the weight gradient its partial first). */
static void plan(taps_state *s, fg_kprep *a) {
  const conv_geom *g = &s->g;
  size_t es = fg_dtype_size(a->out_dtype);
  bool wgrad = s->kind == CONV_WEIGHT_GRAD, weights = !wgrad || s->both; /* rearranged */
  int given = a->parts[0]; /* the executor's parts, before the phases' take its place */
  size_t planes = (size_t)plane_bytes(g, s->kind, es);
  if (wgrad && s->few_in_kernels) /* a group's padded planes */
    planes = (size_t)(group_images(g) * s->rows * aligned_plane(g->ho * g->wo)) * es;
  size_t partial = wgrad ? (size_t)partial_elems(g, s->rows, s->few_in) * es : 0;
  s->part_off = weights ? aligned((size_t)(g->o * g->c * g->kh * g->kw) * es) : 0;
  s->planes_off = aligned(partial);
  s->lanes_off = aligned(s->planes_off + planes);
  s->wlanes_off = aligned(s->lanes_off +
                          (s->bias_grad ? sizeof(double) * FG_ROW_LANES * (size_t)g->o : 0));
  s->part_bytes = s->wlanes_off + (wgrad && s->few_in_kernels ? 16 * partial : 0);
  a->scratch_bytes = s->part_off + (size_t)s->parts * s->part_bytes;
  a->n_phases = 0;
  if (weights) s->phase_of[a->n_phases] = PH_PREPARE, a->parts[a->n_phases++] = 1;
  s->phase_of[a->n_phases] = PH_IMAGES, a->parts[a->n_phases++] = s->parts;
  if (wgrad) {
    int64_t sp = min64(min64(TAPS_MAX_PARTS, g->o * g->c * g->kh * g->kw / TAPS_SUM_MIN_ELEMS),
                       given);
    s->phase_of[a->n_phases] = PH_SUM, a->parts[a->n_phases++] = sp < 1 ? 1 : (int)sp;
  }
}

fg_status fg_conv_prepare_taps(fg_kprep *a, void **state, fg_err *e) {
  bool both = a->op == FG_OP_CONV2D_INPUT_WEIGHT_GRAD;
  conv_kind kind = fg_conv_kind_of(a->op);
  conv_geom g = both ? fg_conv_grads_geom(a->attr, a->in_shape)
                     : fg_conv_geom_of(a->attr, a->in_shape, &a->out_shape, kind);
  if (!fg_conv_taps_applies(&g, kind, fg_dtype_size(a->out_dtype)))
    return fg_err_set(e, FG_E_MISUSE, "the taps path computes stride-1 convolutions with at most "
                      "%d channels x kernel taps on one side, and at most %d MiB of tap planes "
                      "an image", TAPS_MAX_ROWS, TAPS_MAX_PLANE_BYTES >> 20);
  bool in = few_in(&g, kind);
  if (both && !in)
    return fg_err_set(e, FG_E_MISUSE, "the taps path computes both gradients of a conv with few "
                      "input channels x taps only");
  taps_state *s = malloc(sizeof *s);
  if (!s) return fg_err_set(e, FG_E_NOMEM, "taps: out of memory");
  bool bias = a->op == FG_OP_CONV2D_BIAS_ACT;
  bool few_in_kernels = in && fg_conv_pointwise_available(a->out_dtype) &&
                        g.ho * g.wo >= TAPS_FEW_IN_MIN_PIXELS;
  int parts = (int)min64(min64(a->parts[0], g.n / TAPS_MIN_PART_IMAGES),
                         few_in_kernels && kind == CONV_WEIGHT_GRAD ? TAPS_LANES_MAX_PARTS
                                                                    : TAPS_MAX_PARTS);
  *s = (taps_state){.kind = kind, .few_in = in, .bias = bias,
                    .relu = bias && ((const fg_conv2d_bias_act_attr *)a->attr)->relu,
                    .mask = a->op == FG_OP_CONV2D_INPUT_GRAD_RELU,
                    .bias_grad = a->op == FG_OP_CONV2D_WEIGHT_BIAS_GRAD ||
                                 (both && ((const fg_conv2d_grads_attr *)a->attr)->bias),
                    .both = both, .g = g,
                    .pointwise_gemm = fg_conv_pointwise_available(a->out_dtype),
                    .few_in_kernels = few_in_kernels,
                    .rows = in ? rows_in(&g) : rows_out(&g), .parts = parts < 1 ? 1 : parts};
  plan(s, a);
  *state = s;
  return FG_OK;
}

void fg_conv_taps_release(void *state) { free(state); }
