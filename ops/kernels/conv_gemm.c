/* The im2col + GEMM path of conv2d and its two transposes (ops/kernels/conv.c chooses when it
 * runs; it serves every geometry).
 *
 * The column matrix of one image has a row per kernel tap (c, p, q), r = (c KH + p) KW + q, and
 * a column per output pixel s = i Wo + j.  Work is split so that no two parts write the same
 * output and none repeats another's im2col:
 *   conv2d       y[n][:, s0:s1]  = W . col[n][:, s0:s1]   split over (image, output pixel);
 *   input_grad   gx[n][c0:c1]    = col2im(W^T[rows of c0:c1] . dy[n])   over (image, channel);
 *   weight_grad  gw[o0:o1, r0:r1] = sum_n dy[n][o0:o1] . col[n][r0:r1]^T
 *                over (output channel, tap) tiles: one GEMM per image with dy read in place
 *                on large enough images, else images side by side so that k = nb Ho Wo;
 *                conv2d_weight_bias_grad's bias: the part with a row tile's last columns
 *                adds its dy rows' sums image by image, while the GEMM has them in cache.
 * A 1x1 kernel with stride 1 and no padding needs no im2col: col[n] is x[n] itself.  Scratch
 * is bounded (SCRATCH_ELEMS per part) by processing columns, channels or images in chunks.
 * The executor hands out up to 64 parts whatever the thread count; each driver keeps every
 * part's GEMM big enough to be worth its packing (MIN_PART_*) and leaves the rest empty.
 * With many output channels this runs close to the rate of one large sgemm.  With few (Glow's
 * zero-initialised output conv has O = 4) one GEMM dimension is O, and writing and packing the
 * column matrix costs more than the arithmetic: the direct path serves those. */
#include <string.h>

#include "ops/kernels/conv_internal.h"
#include "ops/kernels/simd.h"

enum {
  SCRATCH_ELEMS = 1 << 20, /* per part, for im2col and friends */
  /* Each part's share is at least this big, so that a GEMM's packing of its operands stays
   * small next to its arithmetic; parts beyond what a kernel needs stay empty. */
  MIN_PART_PIXELS = 256,          /* conv2d: output pixels (columns of the GEMM) */
  MIN_PART_TAPS = 64,             /* input_grad: rows of W^T; weight_grad: tile rows, columns */
  MIN_INPLACE_WGRAD_PIXELS = 128, /* weight_grad: per-image GEMMs from this k on */
  MIN_PART_INPLACE_TAPS = 128,    /* weight_grad, per-image GEMMs: taps (GEMM columns) */
  MIN_PART_POINTWISE_ROWS = 128,  /* weight_grad, 1x1: output channels (GEMM rows) per tile */
  MIN_PART_POINTWISE_IMAGES = 16, /* images together by the pointwise kernel (input_grad: each
                                     part packs W^T) */
};

/* ---- im2col / col2im, stamped for float and double ----
 * im2col writes rows [r0, r1) of one image's column matrix, columns [s0, s1) (a run of output
 * pixels that may span several output rows i), at row stride ld; col2im adds whole rows back. */

#define CONV_LEAVES_DEFINE(T, SUF)                                                            \
  static void im2col_##SUF(const conv_geom *g, const void *xv, int64_t ch_stride, int64_t r0, \
                           int64_t r1, int64_t s0, int64_t s1, void *dstv, int64_t ld) {      \
    const T *x = xv;                                                                          \
    T *dst = dstv;                                                                            \
    for (int64_t r = r0; r < r1; r++) {                                                       \
      int64_t c = r / (g->kh * g->kw), p = r / g->kw % g->kh, q = r % g->kw;                  \
      int64_t off = q * g->dw - g->pw, lo, hi;                                                \
      conv_valid_cols(g->wo, g->w, g->sw, off, &lo, &hi);                                     \
      const T *plane = x + c * ch_stride;                                                     \
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
      conv_valid_cols(g->wo, g->w, g->sw, off, &lo, &hi);                                     \
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

/* x: one image, its channel planes ch_stride elements apart */
static void im2col(const conv_ctx *c, const void *x, int64_t ch_stride, int64_t r0, int64_t r1,
                   int64_t s0, int64_t s1, void *dst, int64_t ld) {
  if (c->t == FG_F32) im2col_f32(&c->g, x, ch_stride, r0, r1, s0, s1, dst, ld);
  else im2col_f64(&c->g, x, ch_stride, r0, r1, s0, s1, dst, ld);
}

static void col2im(const conv_ctx *c, const void *src, int64_t r0, int64_t r1, void *gx) {
  if (c->t == FG_F32) col2im_f32(&c->g, src, r0, r1, gx);
  else col2im_f64(&c->g, src, r0, r1, gx);
}

/* ---- conv2d: y[n][:, s0:s1] = W . col[n][:, s0:s1] over (image, output pixel) items ---- */

/* conv2d_bias_act's epilogue over the rows r of the output channels (len values each, ld
 * apart): y = act(y + bias[r]), while the rows are still in cache.  The same additions as a
 * separate broadcast add, so bit-identical (relu: y + b > 0 ? y + b : 0, so NaN gives 0, as
 * relu does).  Compiled for AVX-512 and AVX2 as well (FG_SIMD_CLONES): at the baseline's 4
 * floats a vector it was 9.5 % of Glow K=8's log-prob program (perf record, "Intel(R)
 * Xeon(R) Processor", 2 cores). */
#define CONV_EPILOGUE_DEFINE(T, SUF)                                                          \
  FG_SIMD_CLONES static void epilogue_##SUF(T *y, int64_t rows, int64_t len, int64_t ld,      \
                                            const T *bias, bool relu) {                       \
    for (int64_t r = 0; r < rows; r++, y += ld) {                                             \
      T b = bias[r];                                                                          \
      if (relu)                                                                               \
        for (int64_t i = 0; i < len; i++) y[i] = y[i] + b > 0 ? y[i] + b : 0;                 \
      else                                                                                    \
        for (int64_t i = 0; i < len; i++) y[i] = y[i] + b;                                    \
    }                                                                                         \
  }
CONV_EPILOGUE_DEFINE(float, f32)
CONV_EPILOGUE_DEFINE(double, f64)
#undef CONV_EPILOGUE_DEFINE

/* The epilogue over len values of every output channel from y on, the channels ld apart. */
static void epilogue(const conv_ctx *c, void *y, int64_t len, int64_t ld) {
  if (!c->bias) return;
  if (c->t == FG_F32) epilogue_f32(y, c->g.o, len, ld, c->bias, c->relu);
  else epilogue_f64(y, c->g.o, len, ld, c->bias, c->relu);
}

/* A 1x1 call's GEMM for pixels [s0, s1) of image n by the pointwise kernel, with the
 * epilogue; next the next segment's first image, or -1. */
static void fwd_pointwise(const conv_ctx *c, const void *x, const void *w, void *y, int64_t n,
                          int64_t s0, int64_t s1, int64_t next) {
  conv_layout xl = conv_x_layout(c), yl = conv_y_layout(c);
  fg_pointwise_gemm p = {.m = c->g.o, .n = s1 - s0, .k = c->g.c, .a = w, .a_row = c->g.c,
                         .a_depth = 1, .b = at_c(c, x, n * xl.img + s0), .ldb = xl.ch,
                         .c = at_m(c, y, n * yl.img + s0), .ldc = yl.ch, .bias = c->bias,
                         .relu = c->relu, .next = next >= 0 ? at_c(c, x, next * xl.img) : NULL};
  fg_conv_pointwise_gemm(&p);
}

static fg_status fwd_segment(const conv_ctx *c, const void *x, const void *w, void *y,
                             int64_t n, int64_t s0, int64_t s1, void *buf, int64_t chunk) {
  const conv_geom *g = &c->g;
  int64_t R = g->c * g->kh * g->kw;
  conv_layout xl = conv_x_layout(c), yl = conv_y_layout(c);
  const void *img = at_c(c, x, n * xl.img);
  void *out = at_m(c, y, n * yl.img);
  for (int64_t a = s0; a < s1; a += chunk) {
    int64_t b = min64(s1, a + chunk);
    fg_gemm_dims d = {.m = g->o, .n = b - a, .k = R, .lda = R, .ldc = yl.ch};
    const void *col = at_c(c, img, a); /* 1x1: the image's planes are the rows */
    d.ldb = xl.ch;
    if (!is_pointwise(g)) {
      im2col(c, img, xl.ch, 0, R, a, b, buf, b - a);
      col = buf, d.ldb = b - a;
    }
    fg_status st = gemm(c, d, w, col, at_m(c, out, a), "conv2d");
    if (st != FG_OK) return st;
    epilogue(c, at_m(c, out, a), b - a, yl.ch);
  }
  return FG_OK;
}

/* A 1x1 call whose input and output are both channel-major over all its images ([C][N][H W],
 * conv2d_chain's groups) is one image of N H W pixels: one GEMM. */
static void view_channel_major_as_one_image(conv_ctx *c) {
  conv_geom *g = &c->g;
  int64_t S = g->ho * g->wo;
  if (!is_pointwise(g) || g->n < 2 || c->x.img != S || c->y.img != S || c->x.ch != g->n * S ||
      c->y.ch != g->n * S)
    return;
  g->w = g->wo = g->n * S, g->h = g->ho = 1, g->n = 1;
  c->x = c->y = (conv_layout){0, 0, false};
}

fg_status fg_conv_gemm_forward(const conv_ctx *ctx, const fg_kargs *k) {
  conv_ctx c = *ctx;
  view_channel_major_as_one_image(&c);
  const conv_geom g = c.g;
  int64_t S = g.ho * g.wo, R = g.c * g.kh * g.kw, i0, i1;
  if (S < FG_POINTWISE_MIN_COLUMNS) c.pointwise = false;
  /* Parts take whole images when an image has MIN_PART_PIXELS / 2 pixels or more: a part
   * that ends inside an image leaves two short GEMMs. */
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
    if (c.pointwise) /* the next segment's image prefetched */
      fwd_pointwise(&c, k->in[0], k->in[1], k->out, n, s0, s1,
                    it + (s1 - s0) < i1 ? (it + (s1 - s0)) / S : -1);
    else
      st = fwd_segment(&c, k->in[0], k->in[1], k->out, n, s0, s1, buf, chunk);
    it += s1 - s0;
  }
  scratch_free(buf);
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
    col2im(c, buf, a * KK, b * KK, gxn);
  }
  return FG_OK;
}

fg_status fg_conv_gemm_input_grad(const conv_ctx *ctx, const fg_kargs *k) {
  conv_ctx c = *ctx;
  const conv_geom g = c.g;
  int64_t S = g.ho * g.wo, KK = g.kh * g.kw, HW = g.h * g.w, i0, i1;
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
    if (st == FG_OK) fg_conv_relu_mask(&c, k->out, (n * g.c + c0) * HW, (c1 - c0) * HW);
    it += c1 - c0;
  }
  scratch_free(buf);
  return st;
}

/* ---- weight_grad: gw[o0:o1, r0:r1] = sum_n dy[n][o0:o1] . col[n][r0:r1]^T over tiles ----
 * Per-image GEMMs would have k = Ho Wo (tiny at 7x7) and re-read the gw tile every image, so
 * each part lays a chunk of nb images side by side, dy rows and column-matrix rows alike, and
 * makes one GEMM with k = nb Ho Wo per chunk, accumulating chunks in image order. */

/* The bias lanes of a tile's channels [o0, o1) when it holds the last columns (r1: its end) of
 * conv2d_weight_bias_grad's weight gradient, else NULL. */
static double *bias_lanes_of(const conv_ctx *c, int64_t o0, int64_t o1, int64_t r1) {
  const conv_geom *g = &c->g;
  return c->bias_grad && r1 == g->c * g->kh * g->kw ? conv_bias_lanes(o1 - o0) : NULL;
}

/* gw[o0:o1, r0:r1] = sum_n dy[n][o0:o1] . col[n][r0:r1]^T with one GEMM per image, dy[n] read in
 * place and the column rows built per image (a 1x1 kernel reads x[n]'s planes in place too).
 * Copying dy and the column rows of many images side by side first (wgrad_tile below) costs
 * as much as the arithmetic on 14x14 images and copies dy once per tile; but at 7x7 k = 49 is
 * too short a GEMM, so only images of at least MIN_INPLACE_WGRAD_PIXELS pixels go this way.
 * Column rows go in chunks of at most SCRATCH_ELEMS. */
static fg_status wgrad_tile_inplace(const conv_ctx *c, const void *x, const void *dy, void *gw,
                                    int64_t o0, int64_t o1, int64_t r0, int64_t r1) {
  const conv_geom *g = &c->g;
  int64_t S = g->ho * g->wo, R = g->c * g->kh * g->kw, CHW = g->c * g->h * g->w;
  int64_t chunk = min64(max64(SCRATCH_ELEMS / S, 1), r1 - r0);
  void *buf = is_pointwise(g) ? NULL : scratch(c, chunk * S);
  double *lanes = bias_lanes_of(c, o0, o1, r1);
  fg_status st = (buf || is_pointwise(g)) && (lanes || !c->bias_grad || r1 != R)
                 ? FG_OK : nomem(c, "conv2d_weight_grad");
  for (int64_t a = r0; a < r1 && st == FG_OK; a += chunk) {
    int64_t b = min64(r1, a + chunk);
    for (int64_t n = 0; n < g->n && st == FG_OK; n++) {
      const void *col = at_c(c, x, n * CHW + a * S); /* 1x1: the rows are x[n]'s planes */
      if (buf) {
        im2col(c, at_c(c, x, n * CHW), g->h * g->w, a, b, 0, S, buf, S);
        col = buf;
      }
      fg_gemm_dims d = {.tb = true, .accumulate = n > 0, .m = o1 - o0, .n = b - a, .k = S,
                        .lda = S, .ldb = S, .ldc = R};
      const void *dyn = at_c(c, dy, (n * g->o + o0) * S);
      st = gemm(c, d, dyn, col, at_m(c, gw, o0 * R + a), "conv2d_weight_grad");
      if (lanes && a == r0) conv_bias_lanes_add(c, lanes, dyn, o1 - o0, S);
    }
  }
  if (st == FG_OK && lanes) conv_bias_store(c, lanes, o0, o1);
  scratch_free(buf);
  fg_work_free(lanes);
  return st;
}

static fg_status wgrad_tile(const conv_ctx *c, const void *x, const void *dy, void *gw,
                            int64_t o0, int64_t o1, int64_t r0, int64_t r1) {
  const conv_geom *g = &c->g;
  int64_t S = g->ho * g->wo, R = g->c * g->kh * g->kw, CHW = g->c * g->h * g->w;
  int64_t ot = o1 - o0, rt = r1 - r0;
  double *lanes = bias_lanes_of(c, o0, o1, r1);
  if (c->bias_grad && r1 == R && !lanes) return nomem(c, "conv2d_weight_grad");
  if (g->n == 0 || S == 0) { /* an empty sum */
    zero_tile(c, gw, o0, o1, r0, r1, R);
    if (lanes) conv_bias_store(c, lanes, o0, o1);
    fg_work_free(lanes);
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
        memcpy(at_m(c, dyc, (o - o0) * ld + at), at_c(c, dy, (n * g->o + o) * S),
               c->es * (size_t)S);
      if (lanes) conv_bias_lanes_add(c, lanes, at_c(c, dy, (n * g->o + o0) * S), ot, S);
      if (!is_pointwise(g)) im2col(c, img, g->h * g->w, r0, r1, 0, S, at_m(c, col, at), ld);
      else /* 1x1: the column rows are x[n]'s channel planes */
        for (int64_t r = r0; r < r1; r++)
          memcpy(at_m(c, col, (r - r0) * ld + at), at_c(c, img, r * S), c->es * (size_t)S);
    }
    fg_gemm_dims d = {.tb = true, .accumulate = n0 > 0, .m = ot, .n = rt, .k = ld, .lda = ld,
                      .ldb = ld, .ldc = R};
    st = gemm(c, d, dyc, col, at_m(c, gw, o0 * R + r0), "conv2d_weight_grad");
  }
  if (st == FG_OK && lanes) conv_bias_store(c, lanes, o0, o1);
  scratch_free(dyc);
  scratch_free(col);
  fg_work_free(lanes);
  return st;
}

fg_status fg_conv_gemm_weight_grad(const conv_ctx *ctx, const fg_kargs *k) {
  conv_ctx c = *ctx;
  const conv_geom g = c.g;
  int64_t S = g.ho * g.wo, R = g.c * g.kh * g.kw, r0, r1, o0, o1;
  int pr, pc;
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
     * two such row tiles (taller tiles measured faster at 1x1, 128 and 256 channels); a 3x3
     * with few taps needs the row split */
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

/* ---- 1x1 convs by their own kernel (ops/kernels/conv_pointwise.c) ----
 * The GEMM path's drivers and partition, each GEMM by fg_conv_pointwise_gemm where this CPU
 * runs it for the call's dtype; fg_gemm elsewhere (float64, CPUs without AVX-512). */
static conv_ctx with_pointwise(const conv_ctx *ctx) {
  conv_ctx c = *ctx;
  c.pointwise = is_pointwise(&c.g) && c.g.c > 0 && !c.x.padded &&
                fg_conv_pointwise_available(c.t);
  return c;
}

/* The forward: a part's images in one GEMM of the pointwise kernel (their columns as one) where
 * an image alone is short (under FG_POINTWISE_MIN_COLUMNS pixels) or the call has one part
 * (conv2d_chain's groups: its last 1x1 reads the group channel-major and writes NCHW; Glow's
 * 7x7 chains took 49-column sgemm calls, an image each); elsewhere the GEMM path's split over
 * (image, pixel) items, a GEMM an image. */
fg_status fg_conv_pointwise_forward(const conv_ctx *ctx, const fg_kargs *k) {
  conv_ctx c = with_pointwise(ctx), one = c;
  view_channel_major_as_one_image(&one);
  const conv_geom *g = &c.g;
  int64_t S = g->h * g->w, n0, n1;
  if (!c.pointwise || one.g.n < 2 || (S >= FG_POINTWISE_MIN_COLUMNS && k->nth > 1))
    return fg_conv_gemm_forward(&c, k);
  int parts = fg_parts_for(g->n, MIN_PART_POINTWISE_IMAGES, k->nth);
  if (k->ith >= parts) return FG_OK;
  fg_split_range(g->n, k->ith, parts, &n0, &n1);
  if (n0 == n1) return FG_OK;
  conv_layout xl = conv_x_layout(&c), yl = conv_y_layout(&c);
  fg_conv_pointwise_gemm(&(fg_pointwise_gemm){
      .m = g->o, .n = S, .k = g->c, .a = k->in[1], .a_row = g->c, .a_depth = 1,
      .b = at_c(&c, k->in[0], n0 * xl.img), .ldb = xl.ch, .c = at_m(&c, k->out, n0 * yl.img),
      .ldc = yl.ch, .bias = c.bias, .relu = c.relu, .images = n1 - n0, .b_image = xl.img,
      .c_image = yl.img});
  return FG_OK;
}

/* gx[n] = W^T dy[n], images split among the parts; W^T packed once a part (read in place
 * its 8 rows are 8 adjacent columns of W, a cache line a step, 1 KiB apart at 256 channels). */
fg_status fg_conv_pointwise_input_grad(const conv_ctx *ctx, const fg_kargs *k) {
  conv_ctx c = with_pointwise(ctx);
  const conv_geom *g = &c.g;
  int64_t S = g->h * g->w, n0, n1;
  if (!c.pointwise || g->o == 0) return fg_conv_gemm_input_grad(&c, k);
  int parts = fg_parts_for(g->n, MIN_PART_POINTWISE_IMAGES, k->nth);
  if (k->ith >= parts) return FG_OK;
  fg_split_range(g->n, k->ith, parts, &n0, &n1);
  if (n0 == n1) return FG_OK;
  float *wt = scratch(&c, round_up(g->c, 8) * g->o);
  if (!wt)
    return fg_err_set(c.err, FG_E_NOMEM, "conv2d_input_grad: no memory for the packed weights");
  fg_conv_pointwise_pack_rows(k->in[1], g->c, g->o, 1, g->c, wt);
  const float *dy = k->in[0];
  float *gx = k->out;
  fg_conv_pointwise_gemm(&(fg_pointwise_gemm){
      .m = g->c, .n = S, .k = g->o, .a = wt, .a_row = 1, .a_depth = 8, .a_block = 8 * g->o,
      .b = dy + n0 * g->o * S, .ldb = S, .c = gx + n0 * g->c * S, .ldc = S,
      .mask = c.mask ? (const float *)c.mask + n0 * g->c * S : NULL,
      .images = n1 - n0, .b_image = g->o * S, .c_image = g->c * S});
  scratch_free(wt);
  return FG_OK;
}
