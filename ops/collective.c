/* Collectives: allreduce_sum, a value summed over the processes of a data-parallel job (each
 * computing its part of a global batch), the same result on every process.  The reducer that
 * does the exchange is an attribute (core/ir/op_attrs.h), made above ops by flows/train/dist.h;
 * a NULL reducer makes the op the identity.
 *
 * Gradient: y = Σ_p x_p is replicated, and the job's loss is the sum of the processes' losses,
 * so ∂L/∂x_p = Σ_q ∂L_q/∂y_q: the VJP is the same sum of the incoming gradients.
 *
 * Every process must run its collectives in the same order: the executor runs a program's steps
 * one after another in the schedule's order, which is a function of the graph, and the graphs
 * of a job's processes are the same.  The op is flagged FG_OPF_RANDOM so that the compiler never
 * folds it (a fold would run the exchange while compiling) nor merges two of them.
 * The kernel is in ops/kernels/collective.c. */
#include <string.h>

#include "core/ir/op.h"
#include "core/ir/op_attrs.h"
#include "ops/kernels/kernels.h"
#include "ops/ops.h"

static fg_status infer_same(fg_infer_args *a) {
  (void)a; /* the output is the input's shape and dtype */
  return FG_OK;
}

static fg_status vjp_allreduce_sum(fg_graph *g, fg_node node, fg_node gout, uint32_t need,
                                   fg_node *gin) {
  const fg_allreduce_attr *at = fg_node_attr(g, node);
  if (need & 1u) gin[0] = fg_allreduce_sum(g, gout, at->reducer);
  return fg_graph_status(g);
}

const fg_op_def fg_opdef_allreduce_sum = {
    .name = "allreduce_sum", .n_in = 1, .flags = FG_OPF_RANDOM,
    .attr_size = sizeof(fg_allreduce_attr), .infer = infer_same,
    FG_KERNELS(allreduce_sum),
    .vjp = vjp_allreduce_sum};

fg_node fg_allreduce_sum(fg_graph *g, fg_node x, const fg_reducer *reducer) {
  fg_allreduce_attr at;
  memset(&at, 0, sizeof at);
  at.reducer = reducer;
  return fg_graph_add_node(g, FG_OP_ALLREDUCE_SUM, 1, &x, &at);
}
