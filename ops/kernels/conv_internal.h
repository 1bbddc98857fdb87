/* Internal to ops/: what the conv kernels share — the geometry of one call, the per-call
 * context, small helpers — and the paths that compute a call: im2col + GEMM
 * (ops/kernels/conv_gemm.c), direct kernels and shifted GEMMs on padded images
 * (ops/kernels/conv_padded.c).  ops/kernels/conv.c chooses the path of each call. */
#ifndef FG_CONV_INTERNAL_H
#define FG_CONV_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/ir/op.h"
#include "core/ir/op_attrs.h"
#include "ops/kernels/conv_direct.h"
#include "ops/kernels/gemm.h"
#include "ops/kernels/kernels.h"
#include "ops/kernels/work.h"

/* One convolution: sizes, output extent, stride, padding, dilation. */
typedef struct conv_geom {
  int64_t n, c, h, w;    /* input */
  int64_t o, kh, kw;     /* kernel */
  int64_t ho, wo;        /* output */
  int64_t sh, sw, ph, pw, dh, dw;
} conv_geom;

/* Stride, padding and dilation from the op's options (unchecked: the shape rule checks them). */
static inline void conv_geom_set_opts(conv_geom *g, const fg_conv2d_opts *o) {
  g->sh = o->stride[0], g->sw = o->stride[1];
  g->ph = o->padding[0], g->pw = o->padding[1];
  g->dh = o->dilation[0], g->dw = o->dilation[1];
}

/* Output extent along one axis; -1 when the dilated kernel does not fit the padded input. */
static inline int64_t conv_out_extent(int64_t in, int64_t k, int64_t s, int64_t p, int64_t d) {
  int64_t span, padded;
  if (__builtin_mul_overflow(d, k - 1, &span) || __builtin_add_overflow(span, 1, &span) ||
      __builtin_add_overflow(in, 2 * p, &padded) || padded < span)
    return -1;
  return (padded - span) / s + 1;
}

static inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static inline int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }
static inline int64_t round_up(int64_t n, int64_t m) { return (n + m - 1) / m * m; }

/* The three ops a path computes, and the paths. */
typedef enum conv_kind {
  CONV_FORWARD,     /* conv2d and conv2d_bias_act */
  CONV_INPUT_GRAD,  /* conv2d_input_grad */
  CONV_WEIGHT_GRAD, /* conv2d_weight_grad and conv2d_weight_bias_grad */
  CONV_KIND_COUNT
} conv_kind;
typedef enum conv_path {
  CONV_PATH_GEMM,    /* im2col + GEMM: any geometry */
  CONV_PATH_DIRECT,  /* direct kernels: stride 1 */
  CONV_PATH_SHIFTED, /* shifted GEMMs: stride 1, a kernel wider than 1x1; no input gradient */
  CONV_PATH_POINTWISE, /* 1x1 by their own kernel (conv_pointwise.c); no weight gradient */
  CONV_PATH_COUNT
} conv_path;

/* Which of the three ops a conv op id computes (conv2d_bias_act is a forward;
 * conv2d_input_weight_grad counts as a weight gradient, whose geometry fg_conv_grads_geom
 * reads). */
conv_kind fg_conv_kind_of(int op);
/* The geometry of a call from its inputs' shapes, its attributes (every conv attribute starts
 * with the options) and its output's shape. */
conv_geom fg_conv_geom_of(const void *attr, const fg_shape *in_shape, const fg_shape *out_shape,
                          conv_kind kind);
/* conv2d_input_weight_grad's geometry from its inputs x, w, dy. */
conv_geom fg_conv_grads_geom(const void *attr, const fg_shape *in_shape);
/* conv2d_input_weight_grad as its two ops, for the implementations that run them one after the
 * other (the native kernels, oneDNN's primitives): conv2d_input_grad(dy, w) into the output's
 * first N C H W elements, then conv2d_weight_grad(x, dy) (conv2d_weight_bias_grad with a
 * bias) after them. */
typedef struct conv_grads_split {
  fg_conv2d_attr ia, wa;                 /* the two ops' attributes */
  fg_shape ish[2], wsh[2];               /* their inputs' shapes: {dy, w}, {x, dy} */
  fg_shape x_shape, wg_shape;            /* their outputs' */
  int wg_op;                             /* the weight gradient's op */
  int64_t dw_at;                         /* elements: where the weight gradient starts */
} conv_grads_split;
void fg_conv_grads_split(conv_grads_split *s, const void *attr, const fg_shape *in_shape);
/* k's arguments for one of the two (ig: the input gradient), its inputs in in[2]. */
fg_kargs fg_conv_grads_part(const conv_grads_split *s, const fg_kargs *k, bool ig,
                            const void **in);

/* The native paths as implementations a program chooses among (fg_kernel_impl.prepare, with
 * the ops' own kernels): each applies where its path computes the call (ops/kernels/conv.c). */
fg_status fg_conv_prepare_gemm(fg_kprep *a, void **state, fg_err *e);
fg_status fg_conv_prepare_direct(fg_kprep *a, void **state, fg_err *e);
fg_status fg_conv_prepare_shifted(fg_kprep *a, void **state, fg_err *e);
fg_status fg_conv_prepare_pointwise(fg_kprep *a, void **state, fg_err *e);
/* Stride-1 convs with few output channels x taps as one GEMM over the taps
 * (ops/kernels/conv_taps.c): an implementation with its own kernels, which the fixed rules
 * never choose; only timing does, or FG_KERNELS. */
bool fg_conv_taps_applies(const conv_geom *g, conv_kind kind, size_t es);
fg_status fg_conv_prepare_taps(fg_kprep *a, void **state, fg_err *e);
fg_status fg_conv_taps_f32(const fg_kargs *k);
fg_status fg_conv_taps_f64(const fg_kargs *k);
void fg_conv_taps_release(void *state);
/* The 1x1 convs' own float32 kernel (ops/kernels/conv_pointwise.c), for the forward and the
 * input gradient: c[i][j] = act(bias[i] + sum_p a(i, p) b[p ldb + j]) for i < m, j < n,
 * p < k (k > 0), act relu or none; bias NULL adds nothing (and applies no act).  a(i, p) =
 * a[(i / 8) a_block + (i % 8) a_row + p a_depth]: a_block 8 a_row reads a matrix in place
 * (a_block 0 says the same), fg_conv_pointwise_pack_rows's layout has a_row 1, a_depth 8,
 * a_block 8 k.  next, when not NULL, is the next call's b (k rows at ldb), prefetched into L2
 * on the way. */
typedef struct fg_pointwise_gemm {
  int64_t m, n, k;
  const float *a;
  int64_t a_row, a_depth, a_block;
  const float *b;
  int64_t ldb;
  float *c;
  int64_t ldc;
  const float *bias;
  bool relu;
  const float *mask; /* c[i][j] *= (mask[i ldc + j] > 0) last (conv2d_input_grad_relu), or NULL */
  const float *next;
  /* images > 1: as many GEMMs of the same a, the t-th's b, c and mask b_image, c_image floats
   * on (c_image for the mask too), their columns run through as one: a panel's vectors cross
   * from one image into the next, so no image ends in a vector of a few live lanes (196
   * columns: 12 vectors and 4 lanes) and the weights are streamed once for every 192 columns,
   * not once an image.  0 or 1: one GEMM. */
  int64_t images, b_image, c_image;
} fg_pointwise_gemm;
/* Whether this CPU runs it for dtype t (float32 with AVX-512). */
bool fg_conv_pointwise_available(fg_dtype t);
/* Columns (pixels) an image's GEMM needs for the kernel to pay: each streams all of the weights
 * from L2, and with few columns that costs more than the sums.  Glow K=16's 256 -> 256 input
 * gradient at 7x7 (49 columns) took 27-28 ms a training step by a GEMM an image against
 * 23.6-24.4 by oneDNN's primitive (FG_PROFILE of the step, runs one after the other, "Intel(R)
 * Xeon(R) Processor", 2 cores); at 14x14 (196) it is the faster.  The input gradient has no
 * such bound: its images go in one GEMM (images above). */
enum { FG_POINTWISE_MIN_COLUMNS = 128 };
void fg_conv_pointwise_gemm(const fg_pointwise_gemm *g);
/* ap[(i / 8) 8 k + p 8 + i % 8] = a[i a_row + p a_depth], zeros past row m: the rows of a in
 * blocks of 8 the kernel reads 32 contiguous bytes at a time (8 round_up(m, 8) k floats). */
void fg_conv_pointwise_pack_rows(const float *a, int64_t m, int64_t k, int64_t a_row,
                                 int64_t a_depth, float *ap);

/* The taps path's float32 kernels for few input channels (ops/kernels/conv_taps_few_in.c):
 * dy [images][o][s], x its images' tap planes [images][rows] (x shifted by each tap), wt
 * [rows][o]. */
typedef struct fg_taps_few_in {
  int64_t images, o, rows, s;
  const float *dy, *x, *wt;
  int64_t x_stride;  /* between x's planes: s or more (aligned planes load faster) */
  const float *next; /* next_floats floats of dy to come, prefetched into L2 on the way, or NULL */
  int64_t next_floats;
  float *lanes;      /* [o][rows][16]: the weight gradient's lanes, stored when first, else added */
  bool first;
  float *t;          /* [rows][s]: the input gradient's tap planes (one image) */
} fg_taps_few_in;
/* lanes[o][r][l] (+)= sum over the images and pixels p = 16 v + l of dy[o][p] x[r][p].  Where
 * fg_conv_pointwise_available says so only. */
void fg_conv_taps_few_in_wgrad(const fg_taps_few_in *f);
/* t[r][p] = sum_o wt[r][o] dy[o][p], of one image (images 1).  Where
 * fg_conv_pointwise_available says so only. */
void fg_conv_taps_few_in_igrad(const fg_taps_few_in *f);
/* out[i] = the sum of lanes[16 i .. 16 i + 16), in a fixed order (a tree of adds), i < n. */
void fg_conv_taps_lanes_total(const float *lanes, int64_t n, float *out);

/* conv2d_chain with its first conv on the direct path, where the fixed rules choose another. */
fg_status fg_conv_chain_prepare_direct(fg_kprep *a, void **state, fg_err *e);

/* Where a forward call's images and channel planes start, in elements from the value's
 * first: {0, 0} is NCHW, every value's layout between ops.  Inside a group, conv2d_chain keeps
 * its values channel-major ([C][images][H W], ops/kernels/conv.c), so that a 1x1 conv over the
 * group is one GEMM instead of one per image. */
typedef struct conv_layout {
  int64_t img, ch;
  /* The planes are already zero-padded as the direct path pads them (hd x wd, ch = hd wd),
   * followed by its kernels' zero slack (FG_DIRECT_BLOCK_BYTES): a direct forward call's
   * input in conv2d_chain, which the direct path then reads in place. */
  bool padded;
} conv_layout;

/* What a path needs about one call. */
typedef struct conv_ctx {
  fg_dtype t;
  size_t es;
  fg_conv_direct_kernels direct;
  conv_geom g;
  int nth;
  int outer_parts; /* fg_kargs.outer_parts: parts of an enclosing kernel running at once */
  fg_err *err;
  const void *bias; /* conv2d_bias_act: O values added to each output channel, else NULL */
  bool relu;        /* conv2d_bias_act: then max(0, .) */
  conv_layout x, y; /* forward: the input's and the output's ({0, 0}: NCHW) */
  bool pointwise;   /* 1x1 float32 GEMMs by fg_conv_pointwise_gemm, not fg_gemm */
  const void *mask; /* conv2d_input_grad_relu: y, of the output's shape, else NULL */
  void *bias_grad;  /* conv2d_weight_bias_grad: the O bias sums (after the weights), else NULL */
} conv_ctx;

/* conv2d_weight_bias_grad's bias sums, for the paths that take them while they read dy: rows
 * of dy added to their lanes (FG_ROW_LANES doubles per channel, zeroed first; the sum op's
 * order, ops/kernels/kernels.h), then channels [o0, o1) stored from their lanes. */
static inline void conv_bias_lanes_add(const conv_ctx *c, double *lanes, const void *dy,
                                       int64_t rows, int64_t len) {
  if (c->t == FG_F32) fg_row_lanes_add_f32(lanes, dy, rows, len, len);
  else fg_row_lanes_add_f64(lanes, dy, rows, len, len);
}
static inline void conv_bias_store(const conv_ctx *c, const double *lanes, int64_t o0,
                                   int64_t o1) {
  for (int64_t o = o0; o < o1; o++) {
    double v = fg_row_lanes_total(lanes + (o - o0) * FG_ROW_LANES);
    if (c->t == FG_F32) ((float *)c->bias_grad)[o] = (float)v;
    else ((double *)c->bias_grad)[o] = v;
  }
}
/* Zeroed lanes for channels rows (fg_work_alloc; NULL when out of memory). */
static inline double *conv_bias_lanes(int64_t rows) {
  size_t bytes = sizeof(double) * FG_ROW_LANES * (size_t)(rows > 0 ? rows : 1);
  double *l = fg_work_alloc(bytes);
  if (l) memset(l, 0, bytes);
  return l;
}

/* conv2d_input_grad_relu's mask on len elements of the output from element off (y's same
 * elements; the two in one layout): each native path applies it to what it has just written,
 * still in cache.  Nothing without a mask. */
void fg_conv_relu_mask(const conv_ctx *c, void *out, int64_t off, int64_t len);

/* NCHW images of ch planes of h x w. */
static inline conv_layout conv_nchw(int64_t ch, int64_t h, int64_t w) {
  return (conv_layout){ch * h * w, h * w, false};
}
/* The input's and the output's layout of a forward call, NCHW unless it says otherwise. */
static inline conv_layout conv_x_layout(const conv_ctx *c) {
  return c->x.ch ? c->x : conv_nchw(c->g.c, c->g.h, c->g.w);
}
static inline conv_layout conv_y_layout(const conv_ctx *c) {
  return c->y.ch ? c->y : conv_nchw(c->g.o, c->g.ho, c->g.wo);
}

/* Output columns j < wo whose input column j sw + off falls inside [0, w): [*lo, *hi)
 * (im2col's columns, the taps' shifted planes). */
static inline void conv_valid_cols(int64_t wo, int64_t w, int64_t sw, int64_t off, int64_t *lo,
                                   int64_t *hi) {
  *lo = off >= 0 ? 0 : (-off + sw - 1) / sw;
  *hi = w - 1 - off < 0 ? 0 : (w - 1 - off) / sw + 1;
  *lo = min64(*lo, wo);
  *hi = max64(min64(*hi, wo), *lo);
}

static inline bool is_pointwise(const conv_geom *g) {
  return g->kh == 1 && g->kw == 1 && g->sh == 1 && g->sw == 1 && g->ph == 0 && g->pw == 0;
}

static inline const void *at_c(const conv_ctx *c, const void *p, int64_t elems) {
  return (const char *)p + c->es * (size_t)elems;
}
static inline void *at_m(const conv_ctx *c, void *p, int64_t elems) {
  return (char *)p + c->es * (size_t)elems;
}

/* A work buffer of elems elements (ops/kernels/work.h), given back with scratch_free. */
static inline void *scratch(const conv_ctx *c, int64_t elems) {
  return fg_work_alloc(c->es * (size_t)max64(elems, 1));
}
static inline void scratch_free(void *p) { fg_work_free(p); }

static inline fg_status nomem(const conv_ctx *c, const char *op) {
  return fg_err_set(c->err, FG_E_NOMEM, "%s: no memory for the im2col buffer", op);
}

static inline fg_status gemm(const conv_ctx *c, fg_gemm_dims d, const void *a, const void *b,
                             void *out, const char *op) {
  fg_status st = fg_gemm(c->t, &d, a, b, out, c->nth > c->outer_parts ? c->nth : c->outer_parts);
  return st == FG_OK ? st : nomem(c, op);
}

/* gw[o0:o1, r0:r1] = 0 (row stride ld): a weight gradient summed over no images or pixels. */
static inline void zero_tile(const conv_ctx *c, void *gw, int64_t o0, int64_t o1, int64_t r0,
                             int64_t r1, int64_t ld) {
  for (int64_t o = o0; o < o1; o++) memset(at_m(c, gw, o * ld + r0), 0, c->es * (size_t)(r1 - r0));
}

/* The paths, each computing the share of part k->ith of k->nth (and choosing how many of the
 * parts get work).  conv2d_bias_act runs as conv2d with c->bias set. */
typedef fg_status (*conv_driver)(const conv_ctx *c, const fg_kargs *k);
/* im2col + GEMM (ops/kernels/conv_gemm.c). */
fg_status fg_conv_gemm_forward(const conv_ctx *c, const fg_kargs *k);
fg_status fg_conv_gemm_input_grad(const conv_ctx *c, const fg_kargs *k);
fg_status fg_conv_gemm_weight_grad(const conv_ctx *c, const fg_kargs *k);
/* The same for 1x1 convs, their GEMMs by fg_conv_pointwise_gemm where it runs (forward and
 * input gradient; ops/kernels/conv_gemm.c). */
fg_status fg_conv_pointwise_forward(const conv_ctx *c, const fg_kargs *k);
fg_status fg_conv_pointwise_input_grad(const conv_ctx *c, const fg_kargs *k);
/* Direct kernels (ops/kernels/conv_padded.c): conv2d and, at stride 1, both gradients. */
fg_status fg_conv_direct_forward(const conv_ctx *c, const fg_kargs *k);
fg_status fg_conv_direct_input_grad(const conv_ctx *c, const fg_kargs *k);
fg_status fg_conv_direct_weight_grad(const conv_ctx *c, const fg_kargs *k);
/* Shifted GEMMs (ops/kernels/conv_padded.c): conv2d and its weight gradient. */
fg_status fg_conv_shifted_forward(const conv_ctx *c, const fg_kargs *k);
fg_status fg_conv_shifted_weight_grad(const conv_ctx *c, const fg_kargs *k);
/* conv2d_chain's last conv by the taps' GEMM, over a group of cnt images channel-major in x
 * ([C][cnt][H W]), into NCHW out; c's geometry is one image's, its bias and relu the epilogue. */
fg_status fg_conv_taps_group(const conv_ctx *c, const void *x, int64_t cnt, const void *w,
                             void *out);

#endif
