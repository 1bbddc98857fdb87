/* Indexing along one axis: gather (a lookup by integer indices), its transpose scatter_add (the
 * gradient of gather, and gather is its gradient), and searchsorted (the bin of each value in a
 * sorted table; not differentiable).  Indices are integers held in the graph's float dtype,
 * exact up to 2^24 in float32; a kernel that meets an index outside the axis, or not an
 * integer, fails the run naming it.  The kernels are in ops/kernels/index.c. */
#include <string.h>

#include "core/ir/op.h"
#include "ops/infer.h"
#include "ops/kernels/kernels.h"
#include "ops/ops.h"

/* ---- shape rules ---- */

static fg_status same_dtypes(fg_infer_args *a) {
  if (a->in_dtype[1] != a->in_dtype[0])
    return fg_infer_fail(a, FG_E_DTYPE, "the indices (%s) must have the data's dtype (%s)",
                         fg_dtype_name(a->in_dtype[1]), fg_dtype_name(a->in_dtype[0]));
  return FG_OK;
}

/* data and index of one rank, axis among their axes, the other axes broadcasting. */
static fg_status infer_gather(fg_infer_args *a) {
  const fg_gather_attr *at = a->attr;
  const fg_shape *data = &a->in_shape[0], *index = &a->in_shape[1];
  fg_status st = same_dtypes(a);
  if (st != FG_OK) return st;
  if (data->ndim < 1 || index->ndim != data->ndim)
    return fg_infer_fail(a, FG_E_SHAPE, "data and indices need the same rank, at least 1");
  if (at->axis < 0 || at->axis >= data->ndim)
    return fg_infer_fail(a, FG_E_SHAPE, "axis %d is not an axis of a %d-d input", at->axis,
                         (int)data->ndim);
  fg_shape out = *index;
  for (int d = 0; d < data->ndim; d++) {
    if (d == at->axis) continue;
    int64_t x = data->d[d], i = index->d[d];
    if (x != i && x != 1 && i != 1)
      return fg_infer_fail(a, FG_E_SHAPE, "axis %d: data size %lld and index size %lld do not "
                           "broadcast", d, (long long)x, (long long)i);
    out.d[d] = x == 1 ? i : x;
  }
  a->out_shape = out;
  return FG_OK;
}

/* index broadcasts to src's shape and matches it along the axis; size >= 0. */
static fg_status infer_scatter_add(fg_infer_args *a) {
  const fg_gather_attr *at = a->attr;
  const fg_shape *src = &a->in_shape[0], *index = &a->in_shape[1];
  fg_status st = same_dtypes(a);
  if (st != FG_OK) return st;
  if (src->ndim < 1 || index->ndim != src->ndim)
    return fg_infer_fail(a, FG_E_SHAPE, "values and indices need the same rank, at least 1");
  if (at->axis < 0 || at->axis >= src->ndim)
    return fg_infer_fail(a, FG_E_SHAPE, "axis %d is not an axis of a %d-d input", at->axis,
                         (int)src->ndim);
  for (int d = 0; d < src->ndim; d++)
    if (index->d[d] != src->d[d] && (d == at->axis || index->d[d] != 1))
      return fg_infer_fail(a, FG_E_SHAPE, "the indices must broadcast to the values' shape and "
                           "match it along axis %d", at->axis);
  if (at->size < 0)
    return fg_infer_fail(a, FG_E_SHAPE, "negative output size %lld", (long long)at->size);
  a->out_shape = *src;
  a->out_shape.d[at->axis] = at->size;
  return FG_OK;
}

/* sorted [..., K] and values [..., M] of one rank: the leading axes broadcast. */
static fg_status infer_searchsorted(fg_infer_args *a) {
  const fg_shape *sorted = &a->in_shape[0], *values = &a->in_shape[1];
  fg_status st = same_dtypes(a);
  if (st != FG_OK) return st;
  if (sorted->ndim < 1 || values->ndim != sorted->ndim)
    return fg_infer_fail(a, FG_E_SHAPE, "the sorted table [..., K] and the values [..., M] need "
                         "the same rank, at least 1");
  fg_shape out = *values;
  for (int d = 0; d < sorted->ndim - 1; d++) {
    int64_t s = sorted->d[d], v = values->d[d];
    if (s != v && s != 1 && v != 1)
      return fg_infer_fail(a, FG_E_SHAPE, "leading axis %d: sizes %lld and %lld do not "
                           "broadcast", d, (long long)s, (long long)v);
    out.d[d] = s == 1 ? v : s;
  }
  a->out_shape = out;
  return FG_OK;
}

/* ---- VJPs: gather and scatter_add are each other's transposes ---- */

static fg_status vjp_gather(fg_graph *g, fg_node node, fg_node gout, uint32_t need, fg_node *gin) {
  if (!(need & 1u)) return fg_graph_status(g);
  const fg_gather_attr *at = fg_node_attr(g, node);
  fg_node data = fg_node_input(g, node, 0);
  fg_node index = fg_broadcast_to(g, fg_node_input(g, node, 1), fg_node_shape(g, node));
  /* the output's shape with the data's axis: autodiff sums it down to a broadcast data */
  gin[0] = fg_scatter_add(g, gout, index, at->axis, fg_node_shape(g, data).d[at->axis]);
  return fg_graph_status(g);
}

static fg_status vjp_scatter_add(fg_graph *g, fg_node node, fg_node gout, uint32_t need,
                                 fg_node *gin) {
  if (!(need & 1u)) return fg_graph_status(g);
  const fg_gather_attr *at = fg_node_attr(g, node);
  gin[0] = fg_gather(g, gout, fg_node_input(g, node, 1), at->axis);
  return fg_graph_status(g);
}

/* ---- descriptors ---- */

const fg_op_def fg_opdef_gather = {
    .name = "gather", .n_in = 2, .nondiff_inputs = 1u << 1, .attr_size = sizeof(fg_gather_attr),
    .infer = infer_gather, FG_KERNELS(gather), .vjp = vjp_gather};

const fg_op_def fg_opdef_scatter_add = {
    .name = "scatter_add", .n_in = 2, .nondiff_inputs = 1u << 1,
    .attr_size = sizeof(fg_gather_attr), .infer = infer_scatter_add, FG_KERNELS(scatter_add),
    .vjp = vjp_scatter_add};

const fg_op_def fg_opdef_searchsorted = {
    .name = "searchsorted", .n_in = 2, .flags = FG_OPF_NODIFF,
    .attr_size = sizeof(fg_searchsorted_attr), .infer = infer_searchsorted,
    FG_KERNELS(searchsorted)};

/* ---- builders ---- */

static int axis_of(fg_graph *g, fg_node x, int axis) {
  return axis < 0 && fg_node_valid(g, x) ? axis + (int)fg_node_shape(g, x).ndim : axis;
}

static fg_node indexed(fg_graph *g, int op, fg_node a, fg_node index, int axis, int64_t size) {
  fg_gather_attr at;
  memset(&at, 0, sizeof at);
  at.axis = axis_of(g, a, axis);
  at.size = size;
  fg_node in[2] = {a, index};
  return fg_graph_add_node(g, op, 2, in, &at);
}

fg_node fg_gather(fg_graph *g, fg_node data, fg_node index, int axis) {
  return indexed(g, FG_OP_GATHER, data, index, axis, 0);
}

fg_node fg_scatter_add(fg_graph *g, fg_node src, fg_node index, int axis, int64_t size) {
  return indexed(g, FG_OP_SCATTER_ADD, src, index, axis, size);
}

fg_node fg_searchsorted(fg_graph *g, fg_node sorted, fg_node values, bool right) {
  fg_searchsorted_attr at;
  memset(&at, 0, sizeof at);
  at.right = right ? 1u : 0u;
  fg_node in[2] = {sorted, values};
  return fg_graph_add_node(g, FG_OP_SEARCHSORTED, 2, in, &at);
}
