/* Gradient checks in float64, as torch.autograd.gradcheck: the analytic Jacobian (one VJP per
 * output element, through the engine's own gradient graph) against central differences. */
#ifndef FG_GRADCHECK_H
#define FG_GRADCHECK_H

#include <stdbool.h>
#include <stdint.h>

#include "core/ir/graph.h"
#include "core/tensor.h"

/* Builds the function under test from its input nodes (float64, shapes of the given tensors);
 * returns its output node (any shape) or FG_POISON. */
typedef fg_node (*fg_build_fn)(fg_graph *g, const fg_node *inputs, void *ud);

typedef struct fg_gradcheck_opts {
  double eps;         /* central-difference step; default 1e-6 */
  double atol, rtol;  /* |analytic - numeric| <= atol + rtol·|numeric|; defaults 1e-5, 1e-3 */
  uint32_t skip_mask; /* bit i: input i is not checked (e.g. a mask or an index) */
} fg_gradcheck_opts;

typedef struct fg_gradcheck_report {
  bool passed;
  int64_t n_checked;   /* Jacobian entries compared */
  int input;           /* where the worst disagreement is: which input, */
  int64_t in_index;    /* which element of it (flat), */
  int64_t out_index;   /* and which output element */
  double analytic, numeric, abs_err;
  char msg[512];       /* a sentence saying all of the above, or why the check could not run */
} fg_gradcheck_report;

/* FG_OK when every entry agrees; FG_E_NUMERIC when one does not (report says where);
 * another status when the function could not be built or run (report.msg says why).
 * opts may be NULL for the defaults. */
fg_status fg_gradcheck(fg_build_fn build, void *ud, int n_in, fg_tensor *const *inputs,
                       const fg_gradcheck_opts *opts, fg_gradcheck_report *rep);
/* Checks the gradient of the gradient: gradcheck of (inputs, v) -> VJP(build, v) at inputs,
 * with v a fixed random cotangent, so second derivatives are checked against differences of
 * first derivatives. */
fg_status fg_gradgradcheck(fg_build_fn build, void *ud, int n_in, fg_tensor *const *inputs,
                           const fg_gradcheck_opts *opts, fg_gradcheck_report *rep);

#endif
