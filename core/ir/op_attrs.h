/* The ops' attributes: the typed, fixed-size parameters a node carries besides its inputs
 * (a reshape's target shape, a conv's strides).  They are part of the instruction set, next to
 * core/ir/ops.def, because the compiler passes and dumps read them; the builders in ops/ops.h
 * fill them.  Every struct is free of implicit padding: attributes are hashed and compared
 * bytewise (CSE), so a builder zero-fills one before setting its fields. */
#ifndef FG_IR_OP_ATTRS_H
#define FG_IR_OP_ATTRS_H

#include <stdint.h>

#include "core/shape.h"
#include "core/status.h"

/* ---- sources (input, param, const, fill, random draws) ---- */
typedef struct fg_source_attr {
  fg_shape shape;
  int32_t dtype;
  int32_t reserved; /* keeps the struct free of implicit padding */
  double a, b;      /* fill: a = value; uniform: [a, b); normal: mean a, std b */
  uint64_t seed;
} fg_source_attr;

/* ---- elementwise ---- */
typedef struct fg_pow_attr { double p; } fg_pow_attr;
typedef struct fg_cast_attr { int32_t dtype; } fg_cast_attr;
typedef struct fg_clamp_attr { double lo, hi; } fg_clamp_attr; /* +-inf: that side open */

/* ---- reductions: axes as a bit mask, FG_AXIS(i) for axis i ---- */
#define FG_AXIS(i) (1u << (i))
#define FG_ALL_AXES 0xffu
typedef struct fg_reduce_attr {
  uint32_t axes;    /* bit i set: reduce axis i */
  uint32_t keepdims;
} fg_reduce_attr;

/* cumsum along one axis; reverse sums from the end (x[i] + x[i+1] + ... + x[n-1]) */
typedef struct fg_cumsum_attr {
  int32_t axis;
  uint32_t reverse;
} fg_cumsum_attr;

/* ---- indexing: gather and scatter_add along one axis, searchsorted ---- */
typedef struct fg_gather_attr {
  int32_t axis;
  int32_t reserved;
  int64_t size; /* scatter_add: the output's size along the axis; gather: 0 */
} fg_gather_attr;
typedef struct fg_searchsorted_attr {
  uint32_t right; /* count sorted elements <= v (else < v) */
  uint32_t reserved;
} fg_searchsorted_attr;

/* ---- shape ops ---- */
typedef struct fg_reshape_attr { fg_shape shape; } fg_reshape_attr;
typedef struct fg_permute_attr { int32_t perm[FG_MAX_DIMS]; } fg_permute_attr;
typedef struct fg_slice_attr {
  int64_t start[FG_MAX_DIMS], stop[FG_MAX_DIMS], step[FG_MAX_DIMS];
} fg_slice_attr;
typedef struct fg_pad_attr {
  int64_t lo[FG_MAX_DIMS], hi[FG_MAX_DIMS], interior[FG_MAX_DIMS];
  double value;
} fg_pad_attr;
typedef struct fg_concat_attr { int32_t axis; } fg_concat_attr;
typedef struct fg_broadcast_attr { fg_shape shape; } fg_broadcast_attr;

/* ---- matmul ---- */
typedef struct fg_matmul_attr {
  uint8_t trans_a, trans_b;
  uint8_t reserved[6];
} fg_matmul_attr;

/* ---- conv2d and its transposes ---- */
typedef struct fg_conv2d_opts {
  int64_t stride[2];   /* (sh, sw), >= 1 */
  int64_t padding[2];  /* (ph, pw), >= 0 */
  int64_t dilation[2]; /* (dh, dw), >= 1 */
} fg_conv2d_opts;
typedef struct fg_conv2d_attr {
  fg_conv2d_opts geom;
  /* conv2d: (0, 0).  conv2d_input_grad: the input's (H, W), which Ho alone does not fix when
   * the stride is > 1.  conv2d_weight_grad: the kernel's (KH, KW). */
  int64_t size[2];
} fg_conv2d_attr;
typedef struct fg_conv2d_bias_act_attr {
  fg_conv2d_opts geom; /* first, as in fg_conv2d_attr: the conv kernels read it from either */
  int64_t relu;
} fg_conv2d_bias_act_attr;
/* conv2d_input_weight_grad: the conv's options; bias: the bias gradient (dy's channel sums) too */
typedef struct fg_conv2d_grads_attr {
  fg_conv2d_opts geom; /* first, as in fg_conv2d_attr */
  int64_t bias;
} fg_conv2d_grads_attr;
/* conv2d_chain: conv2d_bias_act of conv2d_bias_act (of conv2d_bias_act) of x, n_convs of
 * them, conv i with weight input 1 + 2 i and bias 2 + 2 i. */
#define FG_CONV2D_CHAIN_MAX 3
typedef struct fg_conv2d_chain_attr {
  int64_t n_convs;
  fg_conv2d_bias_act_attr conv[FG_CONV2D_CHAIN_MAX];
} fg_conv2d_chain_attr;

/* ---- linear algebra ---- */
typedef struct fg_lu_solve_attr { uint32_t transpose; } fg_lu_solve_attr;
typedef struct fg_triangular_solve_attr {
  uint8_t lower, unit_diagonal, transpose, reserved;
} fg_triangular_solve_attr;

/* ---- collectives ----
 * A reducer sums values over the processes of a data-parallel job, in place, the same result
 * on every process; every process makes the same calls in the same order.  Core only carries
 * it: flows/train/dist.h makes one (fg_dist_reducer) over MPI. */
typedef struct fg_reducer {
  void *ctx;
  int32_t size; /* processes taking part */
  int32_t reserved;
  fg_status (*sum)(void *ctx, void *values, int64_t n, fg_dtype dtype, fg_err *e);
} fg_reducer;
/* allreduce_sum: a NULL reducer makes it the identity (a single process). */
typedef struct fg_allreduce_attr { const fg_reducer *reducer; } fg_allreduce_attr;

#endif
