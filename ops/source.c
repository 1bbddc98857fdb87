/* Leaves (input, param, const) and sources (fill, random draws): ops with no inputs whose
 * shape and dtype come from their attributes (fg_source_attr). */
#include <math.h>
#include <stdio.h>

#include "core/ir/op.h"
#include "core/rng.h"
#include "ops/ops.h"

static fg_status infer_source(fg_infer_args *a) {
  const fg_source_attr *at = a->attr;
  if ((unsigned)at->dtype >= FG_DTYPE_COUNT) {
    snprintf(a->why, sizeof a->why, "dtype %d is not float32 or float64", at->dtype);
    return FG_E_DTYPE;
  }
  if (at->shape.ndim < 0 || at->shape.ndim > FG_MAX_DIMS) {
    snprintf(a->why, sizeof a->why, "%d dimensions; at most %d", (int)at->shape.ndim, FG_MAX_DIMS);
    return FG_E_SHAPE;
  }
  for (int i = 0; i < at->shape.ndim; i++)
    if (at->shape.d[i] < 0) {
      snprintf(a->why, sizeof a->why, "dimension %d has negative size %lld", i,
               (long long)at->shape.d[i]);
      return FG_E_SHAPE;
    }
  a->out_shape = at->shape;
  a->out_dtype = (fg_dtype)at->dtype;
  return FG_OK;
}

static fg_status infer_random(fg_infer_args *a) {
  const fg_source_attr *at = a->attr;
  if (!(at->b >= 0) || !isfinite(at->a) || !isfinite(at->b)) {
    snprintf(a->why, sizeof a->why, "parameters (%g, %g) must be finite, the second >= 0",
             at->a, at->b);
    return FG_E_MISUSE;
  }
  return infer_source(a);
}

/* One body for both dtypes: T is the element type, VALUE(i) the value of element i. */
#define SOURCE_KERNELS(name, VALUE)                                                   \
  static fg_status name##_f32(const fg_kargs *k) {                                    \
    const fg_source_attr *at = k->attr;                                               \
    int64_t b, e;                                                                     \
    fg_split_range(fg_shape_count(&k->out_shape), k->ith, k->nth, &b, &e);            \
    float *out = k->out;                                                              \
    for (int64_t i = b; i < e; i++) out[i] = (float)(VALUE);                          \
    (void)at;                                                                         \
    return FG_OK;                                                                     \
  }                                                                                   \
  static fg_status name##_f64(const fg_kargs *k) {                                    \
    const fg_source_attr *at = k->attr;                                               \
    int64_t b, e;                                                                     \
    fg_split_range(fg_shape_count(&k->out_shape), k->ith, k->nth, &b, &e);            \
    double *out = k->out;                                                             \
    for (int64_t i = b; i < e; i++) out[i] = (double)(VALUE);                         \
    (void)at;                                                                         \
    return FG_OK;                                                                     \
  }

/* The per-run offset moves the counter by whole strides of 2^40 elements, so runs never
 * overlap for any tensor that fits in memory. */
#define RNG_COUNTER(i) ((k->rng_offset << 40) + (uint64_t)(i))

SOURCE_KERNELS(fill, at->a)
SOURCE_KERNELS(uniform, at->a + (at->b - at->a) * fg_rng_uniform(at->seed, RNG_COUNTER(i)))
SOURCE_KERNELS(normal, at->a + at->b * fg_rng_normal(at->seed, RNG_COUNTER(i)))

#define LEAF(op_name)                                                                  \
  const fg_op_def fg_opdef_##op_name = {                                               \
      .name = #op_name, .n_in = 0, .flags = FG_OPF_LEAF,              \
      .attr_size = sizeof(fg_source_attr), .infer = infer_source}

/* Leaves have no VJP: autodiff stops at them (their gradient is what fg_grad returns). */
LEAF(input);
LEAF(param);
LEAF(const);

const fg_op_def fg_opdef_fill = {
    .name = "fill", .n_in = 0, .flags = FG_OPF_NODIFF, .attr_size = sizeof(fg_source_attr),
    .infer = infer_source, .kernel_f32 = fill_f32, .kernel_f64 = fill_f64};

const fg_op_def fg_opdef_random_uniform = {
    .name = "random_uniform", .n_in = 0, .flags = FG_OPF_NODIFF | FG_OPF_RANDOM,
    .attr_size = sizeof(fg_source_attr), .infer = infer_random,
    .kernel_f32 = uniform_f32, .kernel_f64 = uniform_f64};

const fg_op_def fg_opdef_random_normal = {
    .name = "random_normal", .n_in = 0, .flags = FG_OPF_NODIFF | FG_OPF_RANDOM,
    .attr_size = sizeof(fg_source_attr), .infer = infer_random,
    .kernel_f32 = normal_f32, .kernel_f64 = normal_f64};
