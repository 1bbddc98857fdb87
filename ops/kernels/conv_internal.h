/* Internal to ops/: what the conv kernel drivers share — the geometry of one call, the per-dtype
 * context, small helpers — and the padded-image paths (ops/kernels/conv_padded.c) that ops/conv.c
 * dispatches to.  ops/conv.c's top comment says which path runs when. */
#ifndef FG_CONV_INTERNAL_H
#define FG_CONV_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "core/ir/op.h"
#include "ops/kernels/conv_direct.h"
#include "ops/kernels/gemm.h"

/* One convolution: sizes, output extent, stride, padding, dilation. */
typedef struct conv_geom {
  int64_t n, c, h, w;    /* input */
  int64_t o, kh, kw;     /* kernel */
  int64_t ho, wo;        /* output */
  int64_t sh, sw, ph, pw, dh, dw;
} conv_geom;

static inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static inline int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }
static inline int64_t round_up(int64_t n, int64_t m) { return (n + m - 1) / m * m; }

typedef void (*im2col_fn)(const conv_geom *, const void *, int64_t, int64_t, int64_t, int64_t,
                          void *, int64_t);
typedef void (*col2im_fn)(const conv_geom *, const void *, int64_t, int64_t, void *);

/* What a kernel driver needs about its dtype. */
typedef struct conv_ctx {
  fg_dtype t;
  size_t es;
  im2col_fn im2col;
  col2im_fn col2im;
  fg_conv_direct_kernels direct;
  conv_geom g;
  int nth;
  fg_err *err;
  const void *bias; /* conv2d_bias_act: O values added to each output channel, else NULL */
  bool relu;        /* conv2d_bias_act: then max(0, .) */
} conv_ctx;

static inline bool is_pointwise(const conv_geom *g) {
  return g->kh == 1 && g->kw == 1 && g->sh == 1 && g->sw == 1 && g->ph == 0 && g->pw == 0;
}

static inline const void *at_c(const conv_ctx *c, const void *p, int64_t elems) {
  return (const char *)p + c->es * (size_t)elems;
}
static inline void *at_m(const conv_ctx *c, void *p, int64_t elems) {
  return (char *)p + c->es * (size_t)elems;
}

static inline void *scratch(const conv_ctx *c, int64_t elems) {
  return malloc(c->es * (size_t)max64(elems, 1));
}

static inline fg_status nomem(const conv_ctx *c, const char *op) {
  return fg_err_set(c->err, FG_E_NOMEM, "%s: no memory for the im2col buffer", op);
}

static inline fg_status gemm(const conv_ctx *c, fg_gemm_dims d, const void *a, const void *b,
                             void *out, const char *op) {
  fg_status st = fg_gemm(c->t, &d, a, b, out, c->nth);
  return st == FG_OK ? st : nomem(c, op);
}

/* conv2d_bias_act's epilogue over a run of output channel o: y = act(y + bias[o]), while the
 * run is still in cache.  The same additions as a separate broadcast add, so bit-identical;
 * nothing without a bias. */
#define CONV_EPILOGUE_DEFINE(T, SUF)                                                          \
  static inline void epilogue_##SUF(T *y, int64_t len, T b, bool relu) {                      \
    if (relu)                                                                                 \
      for (int64_t i = 0; i < len; i++) y[i] = y[i] + b > 0 ? y[i] + b : 0;                   \
    else                                                                                      \
      for (int64_t i = 0; i < len; i++) y[i] = y[i] + b;                                      \
  }
CONV_EPILOGUE_DEFINE(float, f32)
CONV_EPILOGUE_DEFINE(double, f64)
#undef CONV_EPILOGUE_DEFINE

static inline void epilogue(const conv_ctx *c, void *y, int64_t o, int64_t len) {
  if (!c->bias) return;
  if (c->t == FG_F32) epilogue_f32(y, len, ((const float *)c->bias)[o], c->relu);
  else epilogue_f64(y, len, ((const double *)c->bias)[o], c->relu);
}

/* The padded-image paths (ops/kernels/conv_padded.c), each run by every part k->ith of k->nth.
 * Direct kernels: conv2d, its input gradient at stride 1, and its weight gradient over taps
 * [r0, r1) and output channels [o0, o1) (one part's tile). */
fg_status fg_conv_direct_forward(const conv_ctx *c, const fg_kargs *k);
fg_status fg_conv_direct_input_grad(const conv_ctx *c, const fg_kargs *k);
fg_status fg_conv_direct_weight_grad(const conv_ctx *c, const fg_kargs *k, int64_t r0,
                                     int64_t r1, int64_t o0, int64_t o1);
/* Shifted GEMMs: conv2d, and its weight gradient over input channels [c0, c1). */
fg_status fg_conv_shifted_forward(const conv_ctx *c, const fg_kargs *k);
fg_status fg_conv_shifted_weight_grad(const conv_ctx *c, const fg_kargs *k, int64_t c0,
                                      int64_t c1);

#endif
