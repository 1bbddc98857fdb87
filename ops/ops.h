/* Op builders: each call appends one node (or a few, for composites) to a graph, checking
 * shapes as it goes.  On error the graph keeps the first message and the call returns
 * FG_POISON; passing FG_POISON on returns FG_POISON again, so check fg_graph_status once.
 * The ops' attribute structs are part of the IR (core/ir/op_attrs.h). */
#ifndef FG_OPS_H
#define FG_OPS_H

#include <stdbool.h>
#include <stdint.h>

#include "core/ir/graph.h"
#include "core/ir/op_attrs.h"

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
fg_node fg_pow(fg_graph *g, fg_node x, double p); /* x^p for a constant p */
fg_node fg_sin(fg_graph *g, fg_node x);
fg_node fg_cos(fg_graph *g, fg_node x);
/* min(max(x, lo), hi) for constants lo <= hi (-INFINITY / INFINITY leave a side open); the
 * gradient passes where lo <= x <= hi, bounds included (as torch.clamp). */
fg_node fg_clamp(fg_graph *g, fg_node x, double lo, double hi);
/* cond ? a : b elementwise (cond != 0), all three broadcast together; cond gets no gradient. */
fg_node fg_where(fg_graph *g, fg_node cond, fg_node a, fg_node b);
fg_node fg_cast(fg_graph *g, fg_node x, fg_dtype t);
/* Not differentiable (gradient zero): */
fg_node fg_sign(fg_graph *g, fg_node x);             /* -1, 0 or 1 */
fg_node fg_greater(fg_graph *g, fg_node a, fg_node b); /* 1 where a > b, else 0 */
fg_node fg_equal(fg_graph *g, fg_node a, fg_node b);   /* 1 where a == b, else 0 */
fg_node fg_not_equal(fg_graph *g, fg_node a, fg_node b);     /* 1 where a != b (NaN too) */
fg_node fg_greater_equal(fg_graph *g, fg_node a, fg_node b); /* 1 where a >= b */
fg_node fg_less(fg_graph *g, fg_node a, fg_node b);          /* greater(b, a) */
fg_node fg_less_equal(fg_graph *g, fg_node a, fg_node b);    /* greater_equal(b, a) */
/* Logical ops read any non-zero value as true and give 1 or 0. */
fg_node fg_logical_and(fg_graph *g, fg_node a, fg_node b);
fg_node fg_logical_or(fg_graph *g, fg_node a, fg_node b);
fg_node fg_logical_not(fg_graph *g, fg_node x);              /* equal(x, 0) */
fg_node fg_stop_gradient(fg_graph *g, fg_node x);      /* identity; blocks gradients */
/* Conveniences over the above with a 0-d constant of x's dtype. */
fg_node fg_add_scalar(fg_graph *g, fg_node x, double c);
fg_node fg_mul_scalar(fg_graph *g, fg_node x, double c);

/* ---- reductions (ops/reduce.c): axes as a bit mask, FG_AXIS(i) for axis i ---- */
fg_node fg_sum(fg_graph *g, fg_node x, uint32_t axes, bool keepdims);
fg_node fg_max(fg_graph *g, fg_node x, uint32_t axes, bool keepdims);
/* Running sum along `axis` (negative counts from the end): out[i] = x[0] + ... + x[i], or with
 * reverse x[i] + ... + x[n-1]; its gradient is the reverse scan. */
fg_node fg_cumsum(fg_graph *g, fg_node x, int axis, bool reverse);
/* Composites (graph macros over sum/max/exp/log; no descriptor of their own): */
fg_node fg_mean(fg_graph *g, fg_node x, uint32_t axes, bool keepdims);
fg_node fg_logsumexp(fg_graph *g, fg_node x, uint32_t axes, bool keepdims);
/* Sums x down to `shape`, which x broadcasts from (the reverse of broadcast_to). */
fg_node fg_sum_to(fg_graph *g, fg_node x, fg_shape shape);

/* ---- indexing (ops/index.c): indices are integers in the graph's float dtype ---- */
/* out[..., j, ...] = data[..., index[..., j, ...], ...] along `axis` (torch.gather), data and
 * index of one rank; on the other axes they broadcast.  The output has the broadcast shape with
 * index's size along the axis.  An index that is not an integer in [0, data's size) fails the
 * run.  Differentiable in data; index gets no gradient. */
fg_node fg_gather(fg_graph *g, fg_node data, fg_node index, int axis);
/* The transpose of gather: an output of src's shape with `size` along the axis, zeros, then
 * out[..., index[..., j, ...], ...] += src[..., j, ...].  index broadcasts to src's shape and
 * matches it along the axis. */
fg_node fg_scatter_add(fg_graph *g, fg_node src, fg_node index, int axis, int64_t size);
/* For sorted [..., K] (ascending along its last axis) and values [..., M] of one rank, leading
 * axes broadcasting: how many of the K elements are < v (with right, <= v), in [0, K]: the bin
 * of v among K boundaries (numpy.searchsorted, side left or right).  An unsorted table gives
 * unspecified counts; NaN counts 0.  Not differentiable. */
fg_node fg_searchsorted(fg_graph *g, fg_node sorted, fg_node values, bool right);

/* ---- shape ops (ops/shape.c) ---- */
fg_node fg_reshape(fg_graph *g, fg_node x, fg_shape shape);
/* Output axis i is input axis perm[i]; perm has ndim entries. */
fg_node fg_permute(fg_graph *g, fg_node x, const int *perm);
fg_node fg_transpose(fg_graph *g, fg_node x); /* swaps the last two axes */
/* Elements start[i], start[i]+step[i], ... < stop[i] of each axis (0 <= start <= stop <= dim,
 * step >= 1); NULL step means 1. */
fg_node fg_slice(fg_graph *g, fg_node x, const int64_t *start, const int64_t *stop,
                 const int64_t *step);
/* [start, stop) of one axis, all of the others. */
fg_node fg_slice_axis(fg_graph *g, fg_node x, int axis, int64_t start, int64_t stop);
/* Pads each axis with lo[i] values before, hi[i] after and interior[i] between elements (all
 * >= 0; NULL interior means none), as XLA's pad does; so the gradient of a strided slice is a
 * pad and the gradient of a pad is a strided slice. */
fg_node fg_pad(fg_graph *g, fg_node x, const int64_t *lo, const int64_t *hi,
               const int64_t *interior, double value);
fg_node fg_concat(fg_graph *g, int n, const fg_node *xs, int axis);
fg_node fg_broadcast_to(fg_graph *g, fg_node x, fg_shape shape);
/* x's value, computed only once dep has been: an ordering edge for the scheduler (the
 * recomputing backward pass waits with a reconstruction until the gradient it pairs with
 * exists, flows/train/recompute.c).  Gradients pass to x; dep gets none.  Costs a copy when x is
 * still read elsewhere, nothing when this is x's last reader (in place). */
fg_node fg_after(fg_graph *g, fg_node x, fg_node dep);

/* ---- matmul (ops/matmul.c) ---- */
/* a [..., m, k] @ b [..., k, n] -> [..., m, n]; batch dims broadcast; both at least 2-D. */
fg_node fg_matmul(fg_graph *g, fg_node a, fg_node b);
/* With a or b read transposed (last two axes swapped) without forming the transpose. */
fg_node fg_matmul_t(fg_graph *g, fg_node a, fg_node b, bool trans_a, bool trans_b);

/* ---- conv (ops/conv.c) ----
 * conv2d is PyTorch's (a cross-correlation), NCHW: x [N, C, H, W] with w [O, C, KH, KW] gives
 * y [N, O, Ho, Wo], Ho = (H + 2 ph - dh (KH - 1) - 1) / sh + 1 and likewise Wo, zero-padded by
 * ph rows above and below (pw columns left and right).  Its two transposes are ops too, and
 * the three are each other's gradients, so second derivatives are graphs like the first. */
/* Stride 1, padding 0, dilation 1 (what opts = NULL means). */
fg_conv2d_opts fg_conv2d_defaults(void);
/* bias is [O] or FG_NONE.  A bias is a separate broadcast add of bias reshaped to [1, O, 1, 1]
 * (the conv op itself stays bilinear; fusion can merge the add). */
fg_node fg_conv2d(fg_graph *g, fg_node x, fg_node w, fg_node bias, const fg_conv2d_opts *opts);
/* conv2d, plus a bias, then relu when `relu`: y = act(conv2d(x, w) + b[o]) with b of O elements
 * ([O] or [1, O, 1, 1]), bit-identical to the separate ops.  The compiler's epilogue pass
 * (core/compiler/pass_epilogue.c) makes it of conv2d -> bias add (-> relu), so the output is
 * written once instead of three times. */
fg_node fg_conv2d_bias_act(fg_graph *g, fg_node x, fg_node w, fg_node b,
                           const fg_conv2d_opts *opts, bool relu);
/* 2 to FG_CONV2D_CHAIN_MAX conv2d_bias_act in one op, a few images at a time: conv i (weights
 * w[i], bias b[i], options opts[i] (NULL: defaults), relu[i]) reads conv i - 1's output, which
 * is kept per group of images in a buffer that stays in cache instead of written out for the
 * whole batch and read back.  The compiler's chain pass (core/compiler/pass_chain.c) makes it
 * of a conv with few input channels, the 1x1 conv that alone reads its output and, in a graph
 * with no backward pass, the few-output conv after that (a coupling network's layers). */
fg_node fg_conv2d_chain(fg_graph *g, fg_node x, int n_convs, const fg_node *w, const fg_node *b,
                        const fg_conv2d_opts *opts, const bool *relu);
/* The transposed convolution (conv2d's gradient with respect to x): dy [N, O, Ho, Wo] and
 * w [O, C, KH, KW] give [N, C, h, w], where (h, w) is the input size of the conv it inverts. */
fg_node fg_conv2d_input_grad(fg_graph *g, fg_node dy, fg_node w, int64_t h, int64_t w_size,
                             const fg_conv2d_opts *opts);
/* The input gradient through a relu before the conv: conv2d_input_grad(dy, w) * (y > 0), where
 * y [N, C, h, w] is the relu's output (the conv's input), bit-identical to the separate ops.
 * The compiler's epilogue pass makes it of that product in a training graph's backward pass,
 * so the gradient is masked while it is still in cache instead of in a pass of its own. */
fg_node fg_conv2d_input_grad_relu(fg_graph *g, fg_node dy, fg_node w, fg_node y,
                                  const fg_conv2d_opts *opts);
/* conv2d's gradient with respect to w: x [N, C, H, W] and dy [N, O, Ho, Wo] give
 * [O, C, kh, kw]. */
fg_node fg_conv2d_weight_grad(fg_graph *g, fg_node x, fg_node dy, int64_t kh, int64_t kw,
                              const fg_conv2d_opts *opts);
/* The weight gradient and the gradient of a per-channel bias added to the conv's output (dy's
 * sums over N, Ho, Wo) as one op: [O C kh kw + O], the weight gradient's elements (in
 * conv2d_weight_grad's order), then the bias gradient's.  The compiler's bias_grad pass makes
 * it of the two where both read one dy, so dy's channel sums are taken while the weight gradient
 * has dy in cache instead of in a pass of their own. */
fg_node fg_conv2d_weight_bias_grad(fg_graph *g, fg_node x, fg_node dy, int64_t kh, int64_t kw,
                                   const fg_conv2d_opts *opts);
/* A conv's input and weight gradients (and with `bias` its bias's) from one read of dy: x
 * [N, C, H, W], w [O, C, KH, KW] and dy [N, O, Ho, Wo] (conv2d(x, w)'s shape) give [N C H W +
 * O C KH KW (+ O)]: conv2d_input_grad(dy, w)'s elements, then conv2d_weight_grad(x, dy)'s (then
 * dy's channel sums).  The compiler's conv_grads pass makes it of the two where the input has
 * few channels (a coupling net's first conv), so that dy, the large side, is read once. */
fg_node fg_conv2d_input_weight_grad(fg_graph *g, fg_node x, fg_node w, fg_node dy, bool bias,
                                    const fg_conv2d_opts *opts);

/* ---- linear algebra (ops/linalg.c) ----
 * Matrices are the last two axes; leading axes are a batch (broadcast between a matrix and a
 * right-hand side as NumPy does).  A factorisation is a node of its own that the ops needing
 * it take as a non-differentiable input next to the matrix, so gradients flow to the matrix
 * and one factorisation serves every op of the same matrix.  Exactly singular matrices give
 * log|det| = -inf and sign 0; solves with them fail at run time with FG_E_NUMERIC. */
/* Packed LU with partial pivoting, P A = L U: A [..., n, n] -> [..., n, n+1], row i holding
 * L[i][0..i) (unit diagonal implied), U[i][i..n) and in column n the 0-based LAPACK pivot
 * (rows i and piv[i] swapped at step i).  Not differentiable.  Returns the existing lu node of
 * a when the graph has one. */
fg_node fg_lu(fg_graph *g, fg_node a);
/* A^-1 B (or A^-T B) with lu = fg_lu(g, a): a [..., n, n], b [..., n, k]. */
fg_node fg_lu_solve(fg_graph *g, fg_node a, fg_node lu, fg_node b, bool transpose);
fg_node fg_slogdet(fg_graph *g, fg_node a);  /* log|det a| [...], accumulated in float64 */
fg_node fg_det_sign(fg_graph *g, fg_node a); /* sign of det a: +1, -1 or 0 (not differentiable) */
fg_node fg_inverse(fg_graph *g, fg_node a);
fg_node fg_solve(fg_graph *g, fg_node a, fg_node b); /* a^-1 b */
/* op(t)^-1 b with op(t) = t or t^T: reads only t's lower (or upper) triangle, and not its
 * diagonal when unit_diagonal (taken as ones). */
fg_node fg_triangular_solve(fg_graph *g, fg_node t, fg_node b, bool lower, bool unit_diagonal,
                            bool transpose);

/* ---- squeeze (ops/squeeze.c): 2x2 space-to-depth, composed of reshape and permute ----
 * [N, C, H, W] -> [N, 4C, H/2, W/2], output channel c*4 + dy*2 + dx taking pixel
 * (2i + dy, 2j + dx) of channel c (Glow's squeeze2d, PyTorch's pixel_unshuffle(x, 2)).
 * Odd H or W is a shape error. */
fg_node fg_squeeze2d(fg_graph *g, fg_node x);
/* The inverse: [N, 4C, H, W] -> [N, C, 2H, 2W]. */
fg_node fg_unsqueeze2d(fg_graph *g, fg_node x);

/* ---- collectives (ops/collective.c) ----
 * x summed over the processes of a data-parallel job, the same value on each (the identity for
 * a NULL reducer): batch statistics over a global batch of which each process holds a part.
 * Every process must build the same graph.  The reducer is borrowed by the graph and by every
 * program compiled from it. */
fg_node fg_allreduce_sum(fg_graph *g, fg_node x, const fg_reducer *reducer);

#endif
