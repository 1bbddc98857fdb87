/* Reductions over a set of axes (a bit mask): the primitives sum and max, and the composites
 * mean, logsumexp and sum_to, which are graph macros over primitives with no descriptor; and
 * the scan cumsum along one axis.  The kernels, bit-identical for any thread count, are in
 * ops/kernels/reduce.c. */
#include <math.h>
#include <string.h>

#include "core/ir/op.h"
#include "ops/infer.h"
#include "ops/kernels/kernels.h"
#include "ops/ops.h"

/* ---- axes ---- */

/* The shape after reducing `axes`: reduced axes dropped, or kept with size 1. */
static fg_shape reduced_shape(const fg_shape *in, uint32_t axes, bool keepdims) {
  fg_shape out;
  memset(&out, 0, sizeof out);
  for (int i = 0; i < in->ndim; i++) {
    if (!(axes & FG_AXIS(i)))
      out.d[out.ndim++] = in->d[i];
    else if (keepdims)
      out.d[out.ndim++] = 1;
  }
  return out;
}

static fg_status reduce_infer(fg_infer_args *a) {
  const fg_reduce_attr *at = a->attr;
  const fg_shape *in = &a->in_shape[0];
  uint32_t axes = fg_reduce_axes(at->axes, in->ndim);
  uint32_t extra = axes & ~fg_reduce_all_axes(in->ndim);
  if (extra)
    return fg_infer_fail(a, FG_E_SHAPE, "axes mask 0x%x names axis %d, but the input has %d axes "
                         "(use FG_ALL_AXES for all)", at->axes, __builtin_ctz(extra),
                         (int)in->ndim);
  a->out_shape = reduced_shape(in, axes, at->keepdims != 0);
  return FG_OK;
}

/* ---- gradients ---- */

/* The reduced axes of `node` and the keepdims shape of its output. */
static fg_shape node_keep_shape(fg_graph *g, fg_node node, fg_shape *in_shape, uint32_t *axes) {
  const fg_reduce_attr *at = fg_node_attr(g, node);
  *in_shape = fg_node_shape(g, fg_node_input(g, node, 0));
  *axes = fg_reduce_axes(at->axes, in_shape->ndim);
  return reduced_shape(in_shape, *axes, true);
}

/* Every input element of a sum receives its row's gradient. */
static fg_status sum_vjp(fg_graph *g, fg_node node, fg_node gout, uint32_t need, fg_node *gin) {
  if (!(need & 1u)) return fg_graph_status(g);
  fg_shape xs;
  uint32_t axes;
  fg_shape ks = node_keep_shape(g, node, &xs, &axes);
  gin[0] = fg_broadcast_to(g, fg_reshape(g, gout, ks), xs);
  return fg_graph_status(g);
}

/* The gradient goes to the elements equal to the max, shared evenly among ties (as PyTorch's
 * amax does), so the rule is symmetric and its own VJP is well defined. */
static fg_status max_vjp(fg_graph *g, fg_node node, fg_node gout, uint32_t need, fg_node *gin) {
  if (!(need & 1u)) return fg_graph_status(g);
  fg_node x = fg_node_input(g, node, 0);
  fg_shape xs;
  uint32_t axes;
  fg_shape ks = node_keep_shape(g, node, &xs, &axes);
  fg_node is_max = fg_equal(g, x, fg_reshape(g, node, ks));
  fg_node ties = fg_sum(g, is_max, axes, true);
  gin[0] = fg_mul(g, is_max, fg_div(g, fg_reshape(g, gout, ks), ties));
  return fg_graph_status(g);
}

const fg_op_def fg_opdef_sum = {
    .name = "sum",
    .n_in = 1,
    .flags = FG_OPF_SPLIT_FREE,
    .attr_size = sizeof(fg_reduce_attr),
    .infer = reduce_infer,
    FG_KERNELS(sum),
    .vjp = sum_vjp,
};

const fg_op_def fg_opdef_max = {
    .name = "max",
    .n_in = 1,
    .flags = FG_OPF_SPLIT_FREE,
    .attr_size = sizeof(fg_reduce_attr),
    .infer = reduce_infer,
    FG_KERNELS(max),
    .vjp = max_vjp,
};

/* ---- cumsum ---- */

static fg_status cumsum_infer(fg_infer_args *a) {
  const fg_cumsum_attr *at = a->attr;
  if (at->axis < 0 || at->axis >= a->in_shape[0].ndim)
    return fg_infer_fail(a, FG_E_SHAPE, "axis %d is not an axis of a %d-d input", at->axis,
                         (int)a->in_shape[0].ndim);
  return FG_OK;
}

/* Output i sums inputs j <= i, so input j's gradient sums gout over i >= j: the reverse scan. */
static fg_status cumsum_vjp(fg_graph *g, fg_node node, fg_node gout, uint32_t need, fg_node *gin) {
  if (!(need & 1u)) return fg_graph_status(g);
  const fg_cumsum_attr *at = fg_node_attr(g, node);
  gin[0] = fg_cumsum(g, gout, at->axis, !at->reverse);
  return fg_graph_status(g);
}

const fg_op_def fg_opdef_cumsum = {
    .name = "cumsum",
    .n_in = 1,
    .attr_size = sizeof(fg_cumsum_attr),
    .infer = cumsum_infer,
    FG_KERNELS(cumsum),
    .vjp = cumsum_vjp,
};

/* ---- builders ---- */

static fg_node reduce_node(fg_graph *g, int op, fg_node x, uint32_t axes, bool keepdims) {
  fg_reduce_attr at;
  memset(&at, 0, sizeof at);
  /* Resolved here so that sum over FG_ALL_AXES and over every axis by name hash alike. */
  at.axes = fg_reduce_axes(axes, fg_node_shape(g, x).ndim);
  at.keepdims = keepdims ? 1u : 0u;
  return fg_graph_add_node(g, op, 1, &x, &at);
}

fg_node fg_sum(fg_graph *g, fg_node x, uint32_t axes, bool keepdims) {
  return reduce_node(g, FG_OP_SUM, x, axes, keepdims);
}

fg_node fg_max(fg_graph *g, fg_node x, uint32_t axes, bool keepdims) {
  return reduce_node(g, FG_OP_MAX, x, axes, keepdims);
}

fg_node fg_cumsum(fg_graph *g, fg_node x, int axis, bool reverse) {
  fg_cumsum_attr at;
  memset(&at, 0, sizeof at);
  at.axis = axis < 0 && fg_node_valid(g, x) ? axis + (int)fg_node_shape(g, x).ndim : axis;
  at.reverse = reverse ? 1u : 0u;
  return fg_graph_add_node(g, FG_OP_CUMSUM, 1, &x, &at);
}

fg_node fg_mean(fg_graph *g, fg_node x, uint32_t axes, bool keepdims) {
  fg_node s = fg_sum(g, x, axes, keepdims);
  if (s == FG_POISON) return s;
  fg_shape xs = fg_node_shape(g, x);
  uint32_t mask = fg_reduce_axes(axes, xs.ndim);
  double count = 1.0;
  for (int i = 0; i < xs.ndim; i++)
    if (mask & FG_AXIS(i)) count *= (double)xs.d[i];
  /* An empty reduction gives 0 * inf = NaN, the mean of nothing, as in NumPy and PyTorch. */
  return fg_mul_scalar(g, s, 1.0 / count);
}

fg_node fg_logsumexp(fg_graph *g, fg_node x, uint32_t axes, bool keepdims) {
  fg_dtype t = fg_node_dtype(g, x);
  /* The shift is a constant as far as gradients go: the result does not depend on it. */
  fg_node m = fg_stop_gradient(g, fg_max(g, x, axes, true));
  /* A row whose max is infinite (all -inf, empty, or holding +inf) would compute
   * inf - inf = NaN; shifting it by 0 instead gives log(0) = -inf or log(inf) = inf. */
  fg_node inf_row = fg_equal(g, fg_abs(g, m), fg_scalar(g, INFINITY, t));
  fg_node shift = fg_where(g, inf_row, fg_scalar(g, 0.0, t), m);
  fg_node s = fg_sum(g, fg_exp(g, fg_sub(g, x, shift)), axes, keepdims);
  if (!keepdims) shift = fg_reshape(g, shift, fg_node_shape(g, s));
  return fg_add(g, fg_log(g, s), shift);
}

/* The axes to sum so that `from` becomes `to`: the leading extra axes and those where `to`
 * has size 1.  False when `to` does not broadcast to `from`. */
static bool sum_to_axes(const fg_shape *from, const fg_shape *to, uint32_t *axes) {
  if (to->ndim < 0 || to->ndim > from->ndim) return false;
  int lead = from->ndim - to->ndim;
  *axes = fg_reduce_all_axes(lead);
  for (int i = 0; i < to->ndim; i++) {
    int64_t f = from->d[lead + i], t = to->d[i];
    if (t == f) continue;
    if (t != 1) return false;
    *axes |= FG_AXIS(lead + i);
  }
  return true;
}

fg_node fg_sum_to(fg_graph *g, fg_node x, fg_shape shape) {
  if (fg_graph_status(g) != FG_OK) return FG_POISON;
  if (!fg_node_valid(g, x))
    return fg_graph_fail(g, FG_E_MISUSE, "sum_to: input %d is not a node of this graph", (int)x);
  fg_shape xs = fg_node_shape(g, x);
  /* The common case in autodiff: nothing was broadcast, so no node is added. */
  if (fg_shape_equal(&xs, &shape)) return x;
  uint32_t axes;
  if (!sum_to_axes(&xs, &shape, &axes)) {
    char a[160], b[160] = "(invalid shape)";
    if (shape.ndim >= 0 && shape.ndim <= FG_MAX_DIMS) fg_shape_str(&shape, b, sizeof b);
    return fg_graph_fail(g, FG_E_SHAPE, "sum_to: cannot sum %s down to %s, which does not "
                         "broadcast to it", fg_shape_str(&xs, a, sizeof a), b);
  }
  return fg_reshape(g, fg_sum(g, x, axes, false), shape);
}
