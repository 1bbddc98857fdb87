/* Leaves (input, param, const) and sources (fill, random draws): ops with no inputs whose
 * shape and dtype come from their attributes (fg_source_attr).  The sources' kernels are in
 * ops/kernels/source.c. */
#include <math.h>

#include "core/ir/op.h"
#include "ops/infer.h"
#include "ops/kernels/kernels.h"
#include "ops/ops.h"

static fg_status infer_source(fg_infer_args *a) {
  const fg_source_attr *at = a->attr;
  if ((unsigned)at->dtype >= FG_DTYPE_COUNT)
    return fg_infer_fail(a, FG_E_DTYPE, "dtype %d is not float32 or float64", at->dtype);
  if (at->shape.ndim < 0 || at->shape.ndim > FG_MAX_DIMS)
    return fg_infer_fail(a, FG_E_SHAPE, "%d dimensions; at most %d", (int)at->shape.ndim,
                         FG_MAX_DIMS);
  for (int i = 0; i < at->shape.ndim; i++)
    if (at->shape.d[i] < 0)
      return fg_infer_fail(a, FG_E_SHAPE, "dimension %d has negative size %lld", i,
                           (long long)at->shape.d[i]);
  a->out_shape = at->shape;
  a->out_dtype = (fg_dtype)at->dtype;
  return FG_OK;
}

static fg_status infer_random(fg_infer_args *a) {
  const fg_source_attr *at = a->attr;
  if (!(at->b >= 0) || !isfinite(at->a) || !isfinite(at->b))
    return fg_infer_fail(a, FG_E_MISUSE, "parameters (%g, %g) must be finite, the second >= 0",
                         at->a, at->b);
  return infer_source(a);
}

#define LEAF(op_name)                                                 \
  const fg_op_def fg_opdef_##op_name = {                              \
      .name = #op_name, .n_in = 0, .flags = FG_OPF_LEAF,              \
      .attr_size = sizeof(fg_source_attr), .infer = infer_source}

/* Leaves have no VJP: autodiff stops at them (their gradient is what fg_grad returns). */
LEAF(input);
LEAF(param);
LEAF(const);

const fg_op_def fg_opdef_fill = {
    .name = "fill", .n_in = 0, .flags = FG_OPF_NODIFF, .attr_size = sizeof(fg_source_attr),
    .infer = infer_source, FG_KERNELS(fill)};

const fg_op_def fg_opdef_random_uniform = {
    .name = "random_uniform", .n_in = 0, .flags = FG_OPF_NODIFF | FG_OPF_RANDOM,
    .attr_size = sizeof(fg_source_attr), .infer = infer_random,
    FG_KERNELS(random_uniform)};

const fg_op_def fg_opdef_random_normal = {
    .name = "random_normal", .n_in = 0, .flags = FG_OPF_NODIFF | FG_OPF_RANDOM,
    .attr_size = sizeof(fg_source_attr), .infer = infer_random,
    FG_KERNELS(random_normal)};
