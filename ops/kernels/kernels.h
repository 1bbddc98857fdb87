/* Internal to ops/: the kernels the op descriptors point at, one float32 and one float64 entry
 * per op, each pair stamped from one type-generic source in ops/kernels/<family>.c.  An op's
 * family file (ops/<family>.c) says what the op is (descriptor, shape rule, VJP, builder); the
 * file here of the same name says how it is computed.  A kernel computes its share [ith of nth]
 * of the output (core/ir/op.h). */
#ifndef FG_OPS_KERNELS_H
#define FG_OPS_KERNELS_H

#include "core/ir/op.h"
#include "core/ir/op_attrs.h"

/* Declares fg_kernel_<op>_f32 and fg_kernel_<op>_f64. */
#define FG_KERNEL_PAIR(op)                         \
  fg_status fg_kernel_##op##_f32(const fg_kargs *k); \
  fg_status fg_kernel_##op##_f64(const fg_kargs *k);
/* The two kernel fields of op's descriptor. */
#define FG_KERNELS(op) .kernel_f32 = fg_kernel_##op##_f32, .kernel_f64 = fg_kernel_##op##_f64

/* sources (ops/kernels/source.c); leaves have no kernel */
FG_KERNEL_PAIR(fill)
FG_KERNEL_PAIR(random_uniform)
FG_KERNEL_PAIR(random_normal)

/* elementwise (ops/kernels/elementwise.c) */
FG_KERNEL_PAIR(add)
FG_KERNEL_PAIR(sub)
FG_KERNEL_PAIR(mul)
FG_KERNEL_PAIR(div)
FG_KERNEL_PAIR(maximum)
FG_KERNEL_PAIR(minimum)
FG_KERNEL_PAIR(greater)
FG_KERNEL_PAIR(equal)
FG_KERNEL_PAIR(greater_equal)
FG_KERNEL_PAIR(not_equal)
FG_KERNEL_PAIR(logical_and)
FG_KERNEL_PAIR(logical_or)
FG_KERNEL_PAIR(neg)
FG_KERNEL_PAIR(exp)
FG_KERNEL_PAIR(log)
FG_KERNEL_PAIR(log1p)
FG_KERNEL_PAIR(expm1)
FG_KERNEL_PAIR(sqrt)
FG_KERNEL_PAIR(square)
FG_KERNEL_PAIR(abs)
FG_KERNEL_PAIR(tanh)
FG_KERNEL_PAIR(sigmoid)
FG_KERNEL_PAIR(logsigmoid)
FG_KERNEL_PAIR(softplus)
FG_KERNEL_PAIR(relu)
FG_KERNEL_PAIR(sin)
FG_KERNEL_PAIR(cos)
FG_KERNEL_PAIR(clamp)
FG_KERNEL_PAIR(sign)
FG_KERNEL_PAIR(stop_gradient)
FG_KERNEL_PAIR(pow)
FG_KERNEL_PAIR(where)
FG_KERNEL_PAIR(cast)

/* reductions and scans (ops/kernels/reduce.c) */
FG_KERNEL_PAIR(sum)
FG_KERNEL_PAIR(max)
FG_KERNEL_PAIR(cumsum)

/* indexing (ops/kernels/index.c) */
FG_KERNEL_PAIR(gather)
FG_KERNEL_PAIR(scatter_add)
FG_KERNEL_PAIR(searchsorted)

/* shape ops (ops/kernels/shape.c) */
FG_KERNEL_PAIR(reshape)
FG_KERNEL_PAIR(permute)
FG_KERNEL_PAIR(slice)
FG_KERNEL_PAIR(pad)
FG_KERNEL_PAIR(concat)
FG_KERNEL_PAIR(broadcast_to)
FG_KERNEL_PAIR(after)

/* matmul (ops/kernels/matmul.c, over the GEMM of ops/kernels/gemm.c) */
FG_KERNEL_PAIR(matmul)

/* conv (ops/kernels/conv.c chooses among the paths of conv_gemm.c and conv_padded.c) */
FG_KERNEL_PAIR(conv2d)
FG_KERNEL_PAIR(conv2d_bias_act)
FG_KERNEL_PAIR(conv2d_input_grad)
FG_KERNEL_PAIR(conv2d_input_grad_relu)
FG_KERNEL_PAIR(conv2d_chain)
FG_KERNEL_PAIR(conv2d_weight_grad)
FG_KERNEL_PAIR(conv2d_weight_bias_grad)
FG_KERNEL_PAIR(conv2d_input_weight_grad)

/* linear algebra (ops/kernels/linalg.c) */
FG_KERNEL_PAIR(lu)
FG_KERNEL_PAIR(slogdet)
FG_KERNEL_PAIR(det_sign)
FG_KERNEL_PAIR(lu_solve)
FG_KERNEL_PAIR(triangular_solve)

/* collectives (ops/kernels/collective.c) */
FG_KERNEL_PAIR(allreduce_sum)

#undef FG_KERNEL_PAIR

/* ---- shapes that a shape rule and its kernel both read ---- */

/* reduce: FG_ALL_AXES resolved against the input's rank; other masks pass through unchanged
 * (the shape rule rejects bits beyond the rank). */
static inline uint32_t fg_reduce_all_axes(int ndim) { return (1u << ndim) - 1u; }
/* Row sums as the sum kernel adds them (ops/kernels/reduce.c), for a kernel that meets the
 * rows of a [.., rows, len] reduction a block at a time (conv2d_weight_bias_grad's bias, image
 * by image): each row keeps FG_ROW_LANES double lanes (zeroed by the caller), a run adds its
 * elements to them in the sum kernel's order, and fg_row_lanes_total combines one row's lanes
 * in order.  Runs added in the sum's order give its bits. */
enum { FG_ROW_LANES = 32 };
void fg_row_lanes_add_f32(double *lanes, const float *x, int64_t rows, int64_t len, int64_t ld);
void fg_row_lanes_add_f64(double *lanes, const double *x, int64_t rows, int64_t len, int64_t ld);
double fg_row_lanes_total(const double *lanes);

static inline uint32_t fg_reduce_axes(uint32_t axes, int ndim) {
  return axes == FG_ALL_AXES ? fg_reduce_all_axes(ndim) : axes;
}

/* matmul, linalg: the batch of a matrix shape, every dimension but the last two. */
static inline fg_shape fg_matrix_batch(const fg_shape *s) {
  fg_shape b = {.ndim = s->ndim - 2};
  for (int i = 0; i < b.ndim; i++) b.d[i] = s->d[i];
  return b;
}

#endif
