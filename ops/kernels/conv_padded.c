/* The padded-image paths of conv2d (ops/kernels/conv.c chooses when they run): each image is
 * zero-padded once, and with padded row width wd, tap (c, p, q) of output (i, j) reads
 * padded[c][(i + p dh) wd + j + q dw], so over the "wide" index s = i wd + j every tap is one
 * contiguous stream, a shift of the same array (columns j >= Wo are computed and dropped).
 *  - Direct: register-blocked kernels (ops/kernels/conv_direct.c) accumulate all taps into a
 *    few output rows, or take dot products of the streams for the weight gradient.  Work splits
 *    over (image, block of 4 output channels) with a minimum of work per part, and over (tap,
 *    output channel) tiles for the weight gradient.
 *  - Shifted GEMMs: one GEMM per kernel offset over the padded planes read in place. */
#include <string.h>

#include "ops/kernels/conv_internal.h"

enum {
  /* direct weight_grad: padded images of one group, per part: a group stays in L2 while every
   * tap block sweeps it (measured faster than groups 8 times as large) */
  DIRECT_GROUP_ELEMS = 1 << 15,
  /* direct conv2d / input_grad: multiply-adds per part, so that padding an image and
   * transposing the weights (once per part) stay small next to the arithmetic */
  MIN_PART_DIRECT_MACS = 1 << 21,
  MIN_PART_SHIFTED_IMAGES = 8, /* shifted-GEMM path: images per part (each transposes w) */
  /* direct weight_grad tiles: taps (a multiple of its 6-tap blocks) and output channels */
  MIN_PART_DIRECT_TAPS = 96,
  MIN_PART_DIRECT_ROWS = 32,
};

/* dst[i dst_row + j dst_col] = src[i src_row + j src_col] for i < rows, j < cols: keeping the
 * first columns of wide rows, spreading packed rows to a wider stride, transposing weights.
 * Typed loops, not a memcpy per row or element: rows are short (7 to 28 elements) and there
 * are many; unit column strides get their own loop, which vectorises.  Other strides (the
 * transposes) go in COPY_TILE x COPY_TILE tiles, so that both sides stay in cache lines
 * already loaded: row by row, transposing 128->128 3x3 weights wrote every element to a new
 * cache line 512 bytes from the last, and perf showed that transpose as a large share of the
 * direct forward pass until it was tiled. */
enum { COPY_TILE = 16 };
/* A unit-stride row in 16-byte vectors (the baseline's), the last one overlapping the one
 * before instead of a scalar tail (a row of 14 floats is 3 vectors and an overlapping fourth):
 * no read past the row, and plain loads, which on a source just evicted from cache measured
 * faster than masked ones (AMD EPYC).  The vector types may alias and be unaligned. */
typedef float copy_vf32 __attribute__((vector_size(16), aligned(4), may_alias));
typedef double copy_vf64 __attribute__((vector_size(16), aligned(8), may_alias));
#define COPY_STRIDED_DEFINE(T, SUF)                                                           \
  static inline void copy_row_##SUF(const T *s, T *d, int64_t n) {                            \
    enum { VL = sizeof(copy_v##SUF) / sizeof(T) };                                            \
    if (n < VL) {                                                                             \
      for (int64_t j = 0; j < n; j++) d[j] = s[j];                                            \
      return;                                                                                 \
    }                                                                                         \
    for (int64_t j = 0; j + VL <= n; j += VL)                                                 \
      *(copy_v##SUF *)(d + j) = *(const copy_v##SUF *)(s + j);                                \
    if (n % VL) *(copy_v##SUF *)(d + n - VL) = *(const copy_v##SUF *)(s + n - VL);            \
  }                                                                                           \
  static void copy_strided_##SUF(const T *s, int64_t rows, int64_t cols, int64_t src_row,     \
                                 int64_t src_col, T *d, int64_t dst_row, int64_t dst_col) {    \
    if (src_col == 1 && dst_col == 1) {                                                       \
      for (int64_t i = 0; i < rows; i++) copy_row_##SUF(s + i * src_row, d + i * dst_row, cols); \
      return;                                                                                 \
    }                                                                                         \
    for (int64_t i0 = 0; i0 < rows; i0 += COPY_TILE)                                          \
      for (int64_t j0 = 0; j0 < cols; j0 += COPY_TILE) {                                      \
        int64_t i1 = min64(rows, i0 + COPY_TILE), j1 = min64(cols, j0 + COPY_TILE);           \
        for (int64_t i = i0; i < i1; i++)                                                     \
          for (int64_t j = j0; j < j1; j++)                                                   \
            d[i * dst_row + j * dst_col] = s[i * src_row + j * src_col];                      \
      }                                                                                       \
  }
COPY_STRIDED_DEFINE(float, f32)
COPY_STRIDED_DEFINE(double, f64)

static void copy_strided(size_t es, const void *src, int64_t rows, int64_t cols, int64_t src_row,
                         int64_t src_col, void *dst, int64_t dst_row, int64_t dst_col) {
  if (es == sizeof(float))
    copy_strided_f32(src, rows, cols, src_row, src_col, dst, dst_row, dst_col);
  else
    copy_strided_f64(src, rows, cols, src_row, src_col, dst, dst_row, dst_col);
}

/* dst[ch][a][b] = src[ch][a - top][b - left], zero where that falls outside src: nch planes of
 * hs x ws, src_ch elements apart, into hd x wd (a negative top or left crops). */
static void pad_planes(size_t es, const void *src, int64_t nch, int64_t src_ch, int64_t hs,
                       int64_t ws, int64_t top, int64_t left, int64_t hd, int64_t wd, void *dst) {
  memset(dst, 0, es * (size_t)(nch * hd * wd));
  int64_t a0 = max64(0, top), a1 = min64(hd, hs + top);
  int64_t b0 = max64(0, left), b1 = min64(wd, ws + left);
  if (b1 <= b0 || a1 <= a0) return;
  for (int64_t ch = 0; ch < nch; ch++)
    copy_strided(es, (const char *)src + es * (size_t)(ch * src_ch + (a0 - top) * ws + b0 - left),
                 a1 - a0, b1 - b0, ws, 1, (char *)dst + es * (size_t)((ch * hd + a0) * wd + b0), wd,
                 1);
}

/* One stride-1 correlation, per image, as the direct kernel runs it: in_ch source planes of
 * hs x ws padded (by top, left) into hd x wd; out_ch output planes of ho x wo; tap t reads the
 * padded planes from off[t] on, with weight wt[t out_ch + o] for output channel o. */
typedef struct direct_spec {
  int64_t in_ch, hs, ws, top, left, hd, wd;
  int64_t out_ch, ho, wo, taps;
  conv_layout src_l, out_l; /* where the images and planes of src and of out start */
  int64_t *off;
  void *wt;
} direct_spec;

/* The direct kernels work in blocks of FG_DIRECT_BLOCK_BYTES (one 512-bit vector or two 256-bit
 * ones): lengths round up to this, and buffers they read carry this many zeros of slack. */
static int64_t direct_jb(const conv_ctx *c) { return FG_DIRECT_BLOCK_BYTES / (int64_t)c->es; }

/* Scratch of `elems` elements plus zeroed slack for the direct kernels' last block. */
static void *direct_scratch(const conv_ctx *c, int64_t elems) {
  void *p = scratch(c, elems + direct_jb(c));
  if (p) memset(at_m(c, p, elems), 0, c->es * (size_t)direct_jb(c));
  return p;
}

static void direct_spec_free(direct_spec *d) {
  free(d->off);
  scratch_free(d->wt);
}

static fg_status direct_spec_alloc(const conv_ctx *c, direct_spec *d, const char *op) {
  d->off = malloc(sizeof *d->off * (size_t)max64(d->taps, 1));
  d->wt = scratch(c, d->taps * d->out_ch);
  if (d->off && d->wt) return FG_OK;
  direct_spec_free(d);
  return nomem(c, op);
}

/* off[t - t0] = ((ch - ch0) hd + p dh) wd + q dw for taps t = (ch KH + p) KW + q in [t0, t1): where
 * tap t's stream starts in padded planes of hd x wd from channel ch0 on.  Counters, not a
 * division per tap: every part of a call computes these, and with 1,152 taps (128->4 3x3) the
 * divisions took 3.4 % of Glow K=8's log-prob program (perf record, AMD EPYC, 2 cores). */
static void tap_offsets(const conv_geom *g, int64_t t0, int64_t t1, int64_t ch0, int64_t hd,
                        int64_t wd, int64_t *off) {
  int64_t KK = g->kh * g->kw, ch = t0 / KK, p = t0 % KK / g->kw, q = t0 % g->kw;
  for (int64_t t = t0; t < t1; t++) {
    off[t - t0] = ((ch - ch0) * hd + p * g->dh) * wd + q * g->dw;
    if (++q == g->kw) {
      q = 0;
      if (++p == g->kh) p = 0, ch++;
    }
  }
}

/* Work items are (image, block of 4 output channels); each part pads an image once.  How many
 * parts get work: each at least MIN_PART_DIRECT_MACS, since a part also pads its images and
 * builds the transposed weights. */
static int direct_parts(const conv_ctx *c, const direct_spec *d, int64_t n_img, int nth) {
  int64_t len = round_up((d->ho - 1) * d->wd + d->wo, direct_jb(c));
  int64_t item_macs = max64(4 * d->taps * len, 1);
  return fg_parts_for(n_img * ((d->out_ch + 3) / 4), max64(MIN_PART_DIRECT_MACS / item_macs, 1),
                      nth);
}

/* Output plane o from its wide rows: the columns kept, with conv2d_bias_act's epilogue. */
static void crop_plane(const conv_ctx *c, const direct_spec *d, const void *wide, int64_t o,
                       void *plane) {
  c->direct.crop(wide, d->wd, d->ho, d->wo, c->bias ? at_c(c, c->bias, o) : NULL, c->relu, plane,
                 d->wo);
}

/* Where the kernels put a block's sums: straight into the planes (rows_crop, with each
 * vector's output lanes), or wide rows that crop_plane crops. */
typedef struct direct_out {
  void *wide;
  uint32_t *keep;
  int64_t *first;
} direct_out;

static void direct_out_free(direct_out *w) {
  scratch_free(w->wide), free(w->keep), free(w->first);
}

/* For wide rows of len (a whole number of blocks). */
static bool direct_out_alloc(const conv_ctx *c, const direct_spec *d, int64_t len,
                             direct_out *w) {
  *w = (direct_out){NULL, NULL, NULL};
  int64_t nvec = len / direct_jb(c);
  if (!c->direct.rows_crop) return (w->wide = scratch(c, 4 * len)) != NULL;
  w->keep = malloc(sizeof *w->keep * (size_t)nvec);
  w->first = malloc(sizeof *w->first * (size_t)nvec);
  if (w->keep && w->first) {
    fg_conv_crop_lanes(len, direct_jb(c), d->wd, d->ho, d->wo, w->keep, w->first);
    return true;
  }
  direct_out_free(w);
  return false;
}

/* Output planes o0 .. o0 + cnt of one image (planes: the first, ol.ch apart) from its padded
 * planes img. */
static void direct_block(const conv_ctx *c, const direct_spec *d, const direct_out *w,
                         const void *img, int64_t o0, int64_t cnt, int64_t len, void *planes) {
  const void *wt = at_c(c, d->wt, o0);
  if (c->direct.rows_crop) {
    c->direct.rows_crop(img, d->off, d->taps, wt, d->out_ch, cnt, len, w->keep, w->first,
                        c->bias ? at_c(c, c->bias, o0) : NULL, c->relu, planes, d->out_l.ch);
    return;
  }
  c->direct.rows(img, d->off, d->taps, wt, d->out_ch, cnt, len, w->wide);
  for (int64_t o = 0; o < cnt; o++)
    crop_plane(c, d, at_c(c, w->wide, o * len), o0 + o, at_m(c, planes, o * d->out_l.ch));
}

static fg_status direct_correlate(const conv_ctx *c, const direct_spec *d, const void *src,
                                  void *out, int64_t n_img, int ith, int nth, const char *op) {
  int64_t nob = (d->out_ch + 3) / 4, i0, i1;
  fg_split_range(n_img * nob, ith, nth, &i0, &i1);
  if (i0 == i1 || d->ho == 0 || d->wo == 0) return FG_OK;
  /* wide rows: outputs at s = i wd + j, rounded up to whole blocks */
  int64_t len = round_up((d->ho - 1) * d->wd + d->wo, direct_jb(c));
  const conv_layout sl = d->src_l, ol = d->out_l;
  void *pad = sl.padded ? NULL : direct_scratch(c, d->in_ch * d->hd * d->wd);
  direct_out w;
  if ((!pad && !sl.padded) || !direct_out_alloc(c, d, len, &w)) {
    scratch_free(pad);
    return nomem(c, op);
  }
  const void *img = pad;
  for (int64_t it = i0, last = -1; it < i1; it++) {
    int64_t n = it / nob, o0 = it % nob * 4;
    if (n != last && sl.padded) /* padded as this conv pads, with the slack: read in place */
      img = at_c(c, src, n * sl.img);
    else if (n != last)
      pad_planes(c->es, at_c(c, src, n * sl.img), d->in_ch, sl.ch, d->hs, d->ws, d->top,
                 d->left, d->hd, d->wd, pad);
    last = n;
    direct_block(c, d, &w, img, o0, min64(4, d->out_ch - o0), len,
                 at_m(c, out, n * ol.img + o0 * ol.ch));
    fg_conv_relu_mask(c, out, n * ol.img + o0 * ol.ch, min64(4, d->out_ch - o0) * ol.ch);
  }
  scratch_free(pad), direct_out_free(&w);
  return FG_OK;
}

/* ---- the shifted-GEMM path: stride 1, many channels on both sides ----
 * The same padded image and wide index as the direct path, but a kernel offset (p, q) at a
 * time: over the wide index s, tap (c, p, q) reads padded[c][s + off(p, q)], so for each
 * offset the whole contribution is one GEMM,
 *   wide[o][s] += sum_c W_pq[o][c] padded[c][off(p, q) + s],
 * with B the padded planes read in place (row stride hd wd, columns shifted by the offset).
 * No column matrix is written: KH KW GEMMs with k = input channels replace one with
 * k = C KH KW over an im2col copy nine times the image's size. */
typedef struct shifted_spec {
  direct_spec d;  /* sizes and padding as the direct path's; off[] per kernel offset */
  int64_t kk;     /* kernel offsets */
  void *wmat;     /* kk matrices [out_ch][in_ch] */
} shifted_spec;

static fg_status shifted_correlate(const conv_ctx *c, const shifted_spec *sp, const void *src,
                                   void *out, int64_t n_img, int ith, int parts, const char *op) {
  const direct_spec *d = &sp->d;
  int64_t i0, i1;
  fg_split_range(n_img, ith, parts, &i0, &i1);
  if (i0 == i1 || d->ho == 0 || d->wo == 0) return FG_OK;
  int64_t len = (d->ho - 1) * d->wd + d->wo, plane = d->hd * d->wd;
  void *pad = scratch(c, d->in_ch * plane), *wide = scratch(c, d->out_ch * len);
  fg_status st = pad && wide ? FG_OK : nomem(c, op);
  const conv_layout sl = d->src_l, ol = d->out_l;
  for (int64_t n = i0; st == FG_OK && n < i1; n++) {
    pad_planes(c->es, at_c(c, src, n * sl.img), d->in_ch, sl.ch, d->hs, d->ws, d->top, d->left,
               d->hd, d->wd, pad);
    for (int64_t t = 0; st == FG_OK && t < sp->kk; t++) {
      fg_gemm_dims gd = {.accumulate = t > 0, .m = d->out_ch, .n = len, .k = d->in_ch,
                         .lda = d->in_ch, .ldb = plane, .ldc = len};
      st = gemm(c, gd, at_c(c, sp->wmat, t * d->out_ch * d->in_ch), at_c(c, pad, d->off[t]), wide,
                op);
    }
    for (int64_t o = 0; st == FG_OK && o < d->out_ch; o++)
      crop_plane(c, d, at_c(c, wide, o * len), o, at_m(c, out, n * ol.img + o * ol.ch));
  }
  scratch_free(pad), scratch_free(wide);
  return st;
}

static fg_status shifted_spec_alloc(const conv_ctx *c, shifted_spec *sp, const char *op) {
  sp->d.off = malloc(sizeof *sp->d.off * (size_t)max64(sp->kk, 1));
  sp->wmat = scratch(c, sp->kk * sp->d.out_ch * sp->d.in_ch);
  sp->d.wt = NULL;
  if (sp->d.off && sp->wmat) return FG_OK;
  free(sp->d.off), scratch_free(sp->wmat);
  return nomem(c, op);
}

static void shifted_spec_free(shifted_spec *sp) { free(sp->d.off), scratch_free(sp->wmat); }

/* conv2d: offset (p, q) of the input padded by (ph, pw) with W[:, :, p, q]. */
fg_status fg_conv_shifted_forward(const conv_ctx *c, const fg_kargs *k) {
  const conv_geom *g = &c->g;
  int64_t KK = g->kh * g->kw;
  shifted_spec sp = {.d = {.in_ch = g->c, .hs = g->h, .ws = g->w, .top = g->ph, .left = g->pw,
                           .hd = g->h + 2 * g->ph, .wd = g->w + 2 * g->pw, .out_ch = g->o,
                           .ho = g->ho, .wo = g->wo, .taps = KK, .src_l = conv_x_layout(c),
                           .out_l = conv_y_layout(c)},
                     .kk = KK};
  int parts = fg_parts_for(g->n, MIN_PART_SHIFTED_IMAGES, k->nth);
  if (k->ith >= parts) return FG_OK;
  fg_status st = shifted_spec_alloc(c, &sp, "conv2d");
  if (st != FG_OK) return st;
  for (int64_t t = 0; t < KK; t++) {
    int64_t p = t / g->kw, q = t % g->kw;
    sp.d.off[t] = p * g->dh * sp.d.wd + q * g->dw;
  }
  /* wmat[t][o][c] = w[o][c][t]: the [O x C] rows of w, each strided by KK, per offset t */
  copy_strided(c->es, k->in[1], g->o * g->c, KK, KK, 1, sp.wmat, 1, g->o * g->c);
  st = shifted_correlate(c, &sp, k->in[0], k->out, g->n, k->ith, parts, "conv2d");
  shifted_spec_free(&sp);
  return st;
}

/* weight_grad as shifted GEMMs over input channels [c0, c1): per image and kernel offset t,
 *   acc[t][o][c] += sum_s dyw[o][s] padded[c][off(t) + s],
 * dyw being dy on the wide index (zeros in the dropped columns), then gw[o][c][t] = acc. */
static fg_status shifted_weight_grad_channels(const conv_ctx *c, const fg_kargs *k, int64_t c0,
                                              int64_t c1) {
  const conv_geom *g = &c->g;
  int64_t KK = g->kh * g->kw, cn = c1 - c0, hd = g->h + 2 * g->ph, wd = g->w + 2 * g->pw;
  int64_t plane = hd * wd, len = (g->ho - 1) * wd + g->wo;
  void *pad = scratch(c, cn * plane), *dyw = scratch(c, g->o * len);
  void *acc = scratch(c, KK * g->o * cn);
  int64_t *off = malloc(sizeof *off * (size_t)KK);
  fg_status st = pad && dyw && acc && off ? FG_OK : nomem(c, "conv2d_weight_grad");
  for (int64_t t = 0; st == FG_OK && t < KK; t++)
    off[t] = t / g->kw * g->dh * wd + t % g->kw * g->dw;
  if (st == FG_OK) memset(dyw, 0, c->es * (size_t)(g->o * len));
  for (int64_t n = 0; st == FG_OK && n < g->n; n++) {
    pad_planes(c->es, at_c(c, k->in[0], (n * g->c + c0) * g->h * g->w), cn, g->h * g->w, g->h,
               g->w, g->ph, g->pw, hd, wd, pad);
    for (int64_t o = 0; o < g->o; o++) /* rows of wo at stride wd; the gaps stay zero */
      copy_strided(c->es, at_c(c, k->in[1], (n * g->o + o) * g->ho * g->wo), g->ho, g->wo, g->wo,
                   1, at_m(c, dyw, o * len), wd, 1);
    for (int64_t t = 0; st == FG_OK && t < KK; t++) {
      fg_gemm_dims gd = {.tb = true, .accumulate = n > 0, .m = g->o, .n = cn, .k = len,
                         .lda = len, .ldb = plane, .ldc = cn};
      st = gemm(c, gd, dyw, at_c(c, pad, off[t]), at_m(c, acc, t * g->o * cn),
                "conv2d_weight_grad");
    }
  }
  for (int64_t t = 0; st == FG_OK && t < KK; t++) /* gw[o][c0 + i][t] = acc[t][o][i] */
    copy_strided(c->es, at_c(c, acc, t * g->o * cn), g->o, cn, cn, 1,
                 at_m(c, k->out, c0 * KK + t), g->c * KK, KK);
  scratch_free(pad), scratch_free(dyw), scratch_free(acc), free(off);
  return st;
}

/* Over channel ranges (as conv2d; the sums do not depend on the split): GEMMs with n = 64
 * channels where there are 128 or more, else 32. */
fg_status fg_conv_shifted_weight_grad(const conv_ctx *c, const fg_kargs *k) {
  const conv_geom *g = &c->g;
  int parts = fg_parts_for(g->c, g->c >= 128 ? 64 : 32, k->nth);
  if (k->ith >= parts) return FG_OK;
  int64_t c0, c1;
  fg_split_range(g->c, k->ith, parts, &c0, &c1);
  return c0 == c1 ? FG_OK : shifted_weight_grad_channels(c, k, c0, c1);
}

/* conv2d: taps (c, p, q) of the input padded by (ph, pw); weights W^T. */
fg_status fg_conv_direct_forward(const conv_ctx *c, const fg_kargs *k) {
  const conv_geom *g = &c->g;
  int64_t KK = g->kh * g->kw, R = g->c * KK;
  direct_spec d = {.in_ch = g->c, .hs = g->h, .ws = g->w, .top = g->ph, .left = g->pw,
                   .hd = g->h + 2 * g->ph, .wd = g->w + 2 * g->pw, .out_ch = g->o, .ho = g->ho,
                   .wo = g->wo, .taps = R, .src_l = conv_x_layout(c), .out_l = conv_y_layout(c)};
  int parts = direct_parts(c, &d, g->n, k->nth);
  if (k->ith >= parts) return FG_OK;
  fg_status st = direct_spec_alloc(c, &d, "conv2d");
  if (st != FG_OK) return st;
  tap_offsets(g, 0, R, 0, d.hd, d.wd, d.off);
  copy_strided(c->es, k->in[1], g->o, R, R, 1, d.wt, 1, g->o); /* wt[t][o] = w[o][t] */
  st = direct_correlate(c, &d, k->in[0], k->out, g->n, k->ith, parts, "conv2d");
  direct_spec_free(&d);
  return st;
}

/* input_grad at stride 1 is a correlation of dy, padded by the dilated kernel extent minus the
 * padding on each side, with the kernel flipped and its channel axes swapped:
 *   gx[c, h, w] = sum_{o,p,q} w[o, c, KH-1-p, KW-1-q] dyp[o, h + p dh, w + q dw]. */
fg_status fg_conv_direct_input_grad(const conv_ctx *c, const fg_kargs *k) {
  const conv_geom *g = &c->g;
  int64_t KK = g->kh * g->kw, eh = g->dh * (g->kh - 1), ew = g->dw * (g->kw - 1);
  direct_spec d = {.in_ch = g->o, .hs = g->ho, .ws = g->wo, .top = eh - g->ph,
                   .left = ew - g->pw, .hd = g->h + eh, .wd = g->w + ew, .out_ch = g->c,
                   .ho = g->h, .wo = g->w, .taps = g->o * KK,
                   .src_l = conv_nchw(g->o, g->ho, g->wo), .out_l = conv_nchw(g->c, g->h, g->w)};
  int parts = direct_parts(c, &d, g->n, k->nth);
  if (k->ith >= parts) return FG_OK;
  fg_status st = direct_spec_alloc(c, &d, "conv2d_input_grad");
  if (st != FG_OK) return st;
  tap_offsets(g, 0, d.taps, 0, d.hd, d.wd, d.off); /* over dy's channels o */
  for (int64_t t = 0; t < d.taps; t++) { /* wt[(o, p, q)][c] = w[o][c][KH-1-p][KW-1-q] */
    int64_t o = t / KK, p = t / g->kw % g->kh, q = t % g->kw;
    int64_t flipped = (g->kh - 1 - p) * g->kw + (g->kw - 1 - q);
    copy_strided(c->es, at_c(c, k->in[1], o * g->c * KK + flipped), 1, g->c, 0, KK,
                 at_m(c, d.wt, t * g->c), 0, 1);
  }
  st = direct_correlate(c, &d, k->in[0], k->out, g->n, k->ith, parts, "conv2d_input_grad");
  direct_spec_free(&d);
  return st;
}

/* weight_grad over taps [r0, r1) and output channels [o0, o1): gw[o, t] = sum_n <padded x[n]
 * from tap t's offset, dy[n][o] widened to the padded row width with zeros>, each a contiguous
 * dot product.  Images go in groups as large as the scratch bound allows, so that the kernel
 * keeps its sums in registers across a whole group. */
static fg_status direct_weight_grad_tile(const conv_ctx *c, const fg_kargs *k, int64_t r0,
                                         int64_t r1, int64_t o0, int64_t o1) {
  const conv_geom *g = &c->g;
  int64_t KK = g->kh * g->kw, R = g->c * KK, c0 = r0 / KK, c1 = (r1 - 1) / KK + 1;
  int64_t hd = g->h + 2 * g->ph, wd = g->w + 2 * g->pw, jb = direct_jb(c);
  /* dy[n][o] widened to rows of wd lives at dyw + o ld, zero beyond its last row, so a dot
   * over whole blocks past the last output adds zeros */
  int64_t len = round_up((g->ho - 1) * wd + g->wo, jb), ld = round_up(g->ho * wd, jb);
  int64_t ob = o1 - o0, x_step = (c1 - c0) * hd * wd, dy_step = ob * ld;
  int64_t group = min64(max64(DIRECT_GROUP_ELEMS / (x_step + dy_step), 1), g->n);
  void *xp = direct_scratch(c, group * x_step), *dyw = scratch(c, group * dy_step);
  void *acc = scratch(c, (r1 - r0) * ob);
  int64_t *off = malloc(sizeof *off * (size_t)(r1 - r0));
  fg_status st = xp && dyw && acc && off ? FG_OK : nomem(c, "conv2d_weight_grad");
  if (st == FG_OK) {
    memset(acc, 0, c->es * (size_t)((r1 - r0) * ob));
    memset(dyw, 0, c->es * (size_t)(group * dy_step));
    tap_offsets(g, r0, r1, c0, hd, wd, off);
  }
  for (int64_t n0 = 0; st == FG_OK && n0 < g->n; n0 += group) {
    int64_t n1 = min64(g->n, n0 + group);
    for (int64_t n = n0; n < n1; n++) {
      pad_planes(c->es, at_c(c, k->in[0], (n * g->c + c0) * g->h * g->w), c1 - c0, g->h * g->w,
                 g->h, g->w, g->ph, g->pw, hd, wd, at_m(c, xp, (n - n0) * x_step));
      for (int64_t o = o0; o < o1; o++) /* rows of wo at stride wd; the gaps stay zero */
        copy_strided(c->es, at_c(c, k->in[1], (n * g->o + o) * g->ho * g->wo), g->ho, g->wo,
                     g->wo, 1, at_m(c, dyw, (n - n0) * dy_step + (o - o0) * ld), wd, 1);
    }
    c->direct.wdots(xp, x_step, off, r1 - r0, dyw, dy_step, ld, ob, n1 - n0, len, acc);
  }
  if (st == FG_OK) /* gw[o0 + j][r0 + i] = acc[i][j] */
    copy_strided(c->es, acc, r1 - r0, ob, ob, 1, at_m(c, k->out, o0 * R + r0), 1, R);
  scratch_free(xp), scratch_free(dyw), scratch_free(acc), free(off);
  return st;
}

/* Over (tap, output channel) tiles, taps first, since a part pads the images' channels its
 * taps read and widens dy for its output channels. */
fg_status fg_conv_direct_weight_grad(const conv_ctx *c, const fg_kargs *k) {
  const conv_geom *g = &c->g;
  int64_t R = g->c * g->kh * g->kw, r0, r1, o0, o1;
  int pr, pc;
  fg_tile_grid(R, g->o, MIN_PART_DIRECT_TAPS, MIN_PART_DIRECT_ROWS, k->nth, &pr, &pc);
  if (k->ith >= pr * pc) return FG_OK;
  fg_split_range(R, k->ith / pc, pr, &r0, &r1);
  fg_split_range(g->o, k->ith % pc, pc, &o0, &o1);
  if (r0 == r1 || o0 == o1) return FG_OK;
  if (g->n > 0 && g->ho * g->wo > 0) return direct_weight_grad_tile(c, k, r0, r1, o0, o1);
  zero_tile(c, k->out, o0, o1, r0, r1, R);
  return FG_OK;
}
