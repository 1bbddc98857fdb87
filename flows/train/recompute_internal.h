/* Internals shared by flows/train/recompute.c (blocks and modes), recompute_grads.c (the gradient
 * graph) and recompute_check.c (the round-trip check). */
#ifndef FG_RECOMPUTE_INTERNAL_H
#define FG_RECOMPUTE_INTERNAL_H

#include "flows/train/recompute.h"

struct fg_recompute {
  fg_flow *f;             /* borrowed */
  int n;
  fg_bijector **blocks;   /* borrowed from the flow's bijector, forward order */
  fg_block_mode *mode;
  double *err;            /* last round-trip error, NaN before a check */
};

/* A training-mode build context for the loss graph of r's flow (with the flow's replicas: it
 * runs on this process's part of the batch); NULL (graph error set) on failure. */
fg_flow_ctx *fg__recompute_ctx(const fg_recompute *r, fg_graph *g);
/* A new graph with a training-mode context without replicas (the round-trip check runs on a
 * whole batch); on failure neither exists and e says why. */
fg_status fg__recompute_graph(const fg_recompute *r, fg_graph **g, fg_flow_ctx **c, fg_err *e);

#endif
