/* Reverse-mode autodiff: appends gradient nodes to the graph by walking the tape backwards and
 * calling each op's VJP.  Because VJPs are graph ops, the result can be differentiated again. */
#ifndef FG_AUTODIFF_H
#define FG_AUTODIFF_H

#include "core/ir/graph.h"

/* Gradients of the scalar (single-element) `loss` with respect to each of wrt[0..n_wrt), written
 * to grads[i] (same shape as wrt[i]).  A wrt node the loss does not depend on gets zeros.
 * Only nodes on a path from some wrt to the loss are differentiated. */
fg_status fg_grad(fg_graph *g, fg_node loss, int n_wrt, const fg_node *wrt, fg_node *grads);

/* The general vector-Jacobian product: seeds outs[j] with gouts[j] (same shape; FG_NONE means
 * zero) and returns in grads[i] the sum over j of gouts[j]·∂outs[j]/∂wrt[i]. */
fg_status fg_vjp(fg_graph *g, int n_out, const fg_node *outs, const fg_node *gouts, int n_wrt,
                 const fg_node *wrt, fg_node *grads);
/* fg_vjp with the nodes cut[0..n_cut) held fixed: no gradient flows through them, so the result
 * is the partial derivative along the paths that avoid them (how a log-det takes the diagonal
 * of an autoregressive map, ops/autodiff/jacobian.h). */
fg_status fg_vjp_cut(fg_graph *g, int n_out, const fg_node *outs, const fg_node *gouts, int n_wrt,
                     const fg_node *wrt, int n_cut, const fg_node *cut, fg_node *grads);

#endif
