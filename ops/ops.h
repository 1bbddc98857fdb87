/* Op builders: each call appends one node (or a few, for composites) to a graph, checking
 * shapes as it goes.  On error the graph keeps the first message and the call returns
 * FG_POISON; passing FG_POISON on returns FG_POISON again, so check fg_graph_status once.
 * Attribute structs are listed here because passes, dumps and tests read them. */
#ifndef FG_OPS_H
#define FG_OPS_H

#include <stdbool.h>
#include <stdint.h>

#include "core/graph.h"

/* ---- sources (ops/source.c): inputs, params, consts, fills and random draws ---- */
typedef struct fg_source_attr {
  fg_shape shape;
  int32_t dtype;
  int32_t reserved; /* keeps the struct free of implicit padding */
  double a, b;      /* fill: a = value; uniform: [a, b); normal: mean a, std b */
  uint64_t seed;
} fg_source_attr;

/* ---- elementwise (ops/elementwise.c); binary ops broadcast as NumPy does ---- */
fg_node fg_add(fg_graph *g, fg_node a, fg_node b);
fg_node fg_sub(fg_graph *g, fg_node a, fg_node b);
fg_node fg_mul(fg_graph *g, fg_node a, fg_node b);
fg_node fg_div(fg_graph *g, fg_node a, fg_node b);
fg_node fg_maximum(fg_graph *g, fg_node a, fg_node b);
fg_node fg_minimum(fg_graph *g, fg_node a, fg_node b);
fg_node fg_neg(fg_graph *g, fg_node x);
fg_node fg_exp(fg_graph *g, fg_node x);
fg_node fg_log(fg_graph *g, fg_node x);
fg_node fg_log1p(fg_graph *g, fg_node x);
fg_node fg_expm1(fg_graph *g, fg_node x);
fg_node fg_sqrt(fg_graph *g, fg_node x);
fg_node fg_square(fg_graph *g, fg_node x);
fg_node fg_abs(fg_graph *g, fg_node x);
fg_node fg_tanh(fg_graph *g, fg_node x);
fg_node fg_sigmoid(fg_graph *g, fg_node x);
fg_node fg_logsigmoid(fg_graph *g, fg_node x); /* log(sigmoid(x)), stable for large |x| */
fg_node fg_softplus(fg_graph *g, fg_node x);   /* log(1 + exp(x)), stable */
fg_node fg_relu(fg_graph *g, fg_node x);
typedef struct fg_pow_attr { double p; } fg_pow_attr;
fg_node fg_pow(fg_graph *g, fg_node x, double p); /* x^p for a constant p */
/* cond ? a : b elementwise (cond != 0), all three broadcast together; cond gets no gradient. */
fg_node fg_where(fg_graph *g, fg_node cond, fg_node a, fg_node b);
typedef struct fg_cast_attr { int32_t dtype; } fg_cast_attr;
fg_node fg_cast(fg_graph *g, fg_node x, fg_dtype t);
/* Not differentiable (gradient zero): */
fg_node fg_sign(fg_graph *g, fg_node x);             /* -1, 0 or 1 */
fg_node fg_greater(fg_graph *g, fg_node a, fg_node b); /* 1 where a > b, else 0 */
fg_node fg_equal(fg_graph *g, fg_node a, fg_node b);   /* 1 where a == b, else 0 */
fg_node fg_stop_gradient(fg_graph *g, fg_node x);      /* identity; blocks gradients */
/* Conveniences over the above with a 0-d constant of x's dtype. */
fg_node fg_add_scalar(fg_graph *g, fg_node x, double c);
fg_node fg_mul_scalar(fg_graph *g, fg_node x, double c);

/* ---- reductions (ops/reduce.c): axes as a bit mask, FG_AXIS(i) for axis i ---- */
#define FG_AXIS(i) (1u << (i))
#define FG_ALL_AXES 0xffu
typedef struct fg_reduce_attr {
  uint32_t axes;    /* bit i set: reduce axis i */
  uint32_t keepdims;
} fg_reduce_attr;
fg_node fg_sum(fg_graph *g, fg_node x, uint32_t axes, bool keepdims);
fg_node fg_max(fg_graph *g, fg_node x, uint32_t axes, bool keepdims);
/* Composites (graph macros over sum/max/exp/log; no descriptor of their own): */
fg_node fg_mean(fg_graph *g, fg_node x, uint32_t axes, bool keepdims);
fg_node fg_logsumexp(fg_graph *g, fg_node x, uint32_t axes, bool keepdims);
/* Sums x down to `shape`, which x broadcasts from (the reverse of broadcast_to). */
fg_node fg_sum_to(fg_graph *g, fg_node x, fg_shape shape);

/* ---- shape ops (ops/shape.c) ---- */
typedef struct fg_reshape_attr { fg_shape shape; } fg_reshape_attr;
fg_node fg_reshape(fg_graph *g, fg_node x, fg_shape shape);
typedef struct fg_permute_attr { int32_t perm[FG_MAX_DIMS]; } fg_permute_attr;
/* Output axis i is input axis perm[i]; perm has ndim entries. */
fg_node fg_permute(fg_graph *g, fg_node x, const int *perm);
fg_node fg_transpose(fg_graph *g, fg_node x); /* swaps the last two axes */
typedef struct fg_slice_attr {
  int64_t start[FG_MAX_DIMS], stop[FG_MAX_DIMS], step[FG_MAX_DIMS];
} fg_slice_attr;
/* Elements start[i], start[i]+step[i], ... < stop[i] of each axis (0 <= start <= stop <= dim,
 * step >= 1); NULL step means 1. */
fg_node fg_slice(fg_graph *g, fg_node x, const int64_t *start, const int64_t *stop,
                 const int64_t *step);
/* [start, stop) of one axis, all of the others. */
fg_node fg_slice_axis(fg_graph *g, fg_node x, int axis, int64_t start, int64_t stop);
typedef struct fg_pad_attr {
  int64_t lo[FG_MAX_DIMS], hi[FG_MAX_DIMS], interior[FG_MAX_DIMS];
  double value;
} fg_pad_attr;
/* Pads each axis with lo[i] values before, hi[i] after and interior[i] between elements (all
 * >= 0; NULL interior means none), as XLA's pad does; so the gradient of a strided slice is a
 * pad and the gradient of a pad is a strided slice. */
fg_node fg_pad(fg_graph *g, fg_node x, const int64_t *lo, const int64_t *hi,
               const int64_t *interior, double value);
typedef struct fg_concat_attr { int32_t axis; } fg_concat_attr;
fg_node fg_concat(fg_graph *g, int n, const fg_node *xs, int axis);
typedef struct fg_broadcast_attr { fg_shape shape; } fg_broadcast_attr;
fg_node fg_broadcast_to(fg_graph *g, fg_node x, fg_shape shape);

/* ---- matmul (ops/matmul.c) ---- */
typedef struct fg_matmul_attr {
  uint8_t trans_a, trans_b;
  uint8_t reserved[6];
} fg_matmul_attr;
/* a [..., m, k] @ b [..., k, n] -> [..., m, n]; batch dims broadcast; both at least 2-D. */
fg_node fg_matmul(fg_graph *g, fg_node a, fg_node b);
/* With a or b read transposed (last two axes swapped) without forming the transpose. */
fg_node fg_matmul_t(fg_graph *g, fg_node a, fg_node b, bool trans_a, bool trans_b);

#endif
