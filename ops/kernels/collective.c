/* The collective kernels (ops/collective.c defines the ops).  allreduce_sum copies its input to
 * its output and hands the output to the attribute's reducer, which sums it over the processes
 * of the job in place, in a fixed order (flows/train/dist.c); one kernel serves both dtypes, as
 * the reducer takes the dtype. */
#include <string.h>

#include "ops/kernels/kernels.h"

/* One part does the whole exchange (a collective is one call per process); the others have
 * nothing to write. */
static fg_status allreduce_sum(const fg_kargs *k) {
  if (k->ith != 0) return FG_OK;
  const fg_allreduce_attr *at = k->attr;
  int64_t n = fg_shape_count(&k->out_shape);
  fg_dtype dt = (fg_dtype)k->in_dtype[0];
  memcpy(k->out, k->in[0], (size_t)n * fg_dtype_size(dt));
  return at->reducer ? at->reducer->sum(at->reducer->ctx, k->out, n, dt, k->err) : FG_OK;
}

fg_status fg_kernel_allreduce_sum_f32(const fg_kargs *k) { return allreduce_sum(k); }
fg_status fg_kernel_allreduce_sum_f64(const fg_kargs *k) { return allreduce_sum(k); }
