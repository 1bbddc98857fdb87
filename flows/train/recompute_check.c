/* The round-trip check of recomputed blocks (recompute.h): each block runs as its own small
 * program on the previous block's output, so the check needs the memory of one block, not of
 * the whole flow. */
#include <math.h>
#include <stdlib.h>

#include "core/runtime/program.h"
#include "flows/train/recompute_internal.h"
#include "ops/ops.h"

/* The check's outputs for block i: y = forward(h), and for a recomputed block max|inverse(y) - h|
 * and max|h| (outs[1], outs[2]).  Returns how many outputs there are (0 on a graph error). */
static int build_block(const fg_recompute *r, int i, fg_graph *g, fg_flow_ctx *c, fg_shape hs,
                       fg_node *outs) {
  fg_node h = fg_input(g, "h", fg_flow_get_config(r->f)->dtype, hs), ld, back, ld_back;
  fg_bijector_forward(r->blocks[i], c, h, &outs[0], &ld);
  if (r->mode[i] != FG_BLOCK_RECOMPUTED) return fg_graph_status(g) == FG_OK ? 1 : 0;
  fg_bijector_inverse(r->blocks[i], c, outs[0], &back, &ld_back);
  outs[1] = fg_max(g, fg_abs(g, fg_sub(g, back, h)), FG_ALL_AXES, false);
  outs[2] = fg_max(g, fg_abs(g, h), FG_ALL_AXES, false);
  return fg_graph_status(g) == FG_OK ? 3 : 0;
}

/* Runs block i on h: *y its output (a new tensor), *err the relative round-trip error (NaN for
 * a stored block). */
static fg_status run_block(const fg_recompute *r, int i, const fg_tensor *h,
                           const fg_program_opts *opts, fg_tensor **y, double *err, fg_err *e) {
  *y = NULL, *err = NAN;
  fg_graph *g;
  fg_flow_ctx *c;
  fg_status st = fg__recompute_graph(r, &g, &c, e);
  if (st != FG_OK) return fg_err_prefix(e, st, "round-trip check");
  fg_node outs[3];
  int n = build_block(r, i, g, c, h->shape, outs);
  fg_program *p = NULL;
  st = n == 0 ? fg_err_set(e, fg_graph_status(g), "round-trip check of block %s: %s",
                           fg_recompute_block_name(r, i), fg_graph_errmsg(g))
              : fg_program_new_opts(&p, g, n, outs, opts, e);
  if (st == FG_OK) st = fg_params_bind(fg_flow_params(r->f), p, e);
  if (st == FG_OK && (fg_program_bind(p, "h", h, e) != FG_OK || fg_program_run(p, e) != FG_OK)) {
    st = fg_err_prefix(e, FG_E_NUMERIC, "round-trip check of block %s",
                       fg_recompute_block_name(r, i));
  }
  if (st == FG_OK) st = fg_tensor_copy(y, fg_program_output(p, 0), h->dtype, e);
  if (st == FG_OK && n == 3)
    *err = fg_tensor_get(fg_program_output(p, 1), 0) /
           (fg_tensor_get(fg_program_output(p, 2), 0) + 1e-12);
  fg_program_free(p);
  fg_flow_ctx_free(c);
  fg_graph_free(g);
  return st;
}

fg_status fg_recompute_check(fg_recompute *r, const fg_tensor *x, double tol,
                             const fg_program_opts *opts, int *n_fell, fg_err *e) {
  *n_fell = 0;
  if (fg_recompute_num_recomputed(r) == 0) return FG_OK;
  fg_tensor *h = NULL;
  fg_status st = fg_tensor_copy(&h, x, fg_flow_get_config(r->f)->dtype, e);
  for (int i = 0; st == FG_OK && i < r->n; i++) {
    fg_tensor *y;
    double err;
    st = run_block(r, i, h, opts, &y, &err, e);
    if (st != FG_OK) break;
    fg_tensor_free(h);
    h = y;
    if (r->mode[i] != FG_BLOCK_RECOMPUTED) continue;
    r->err[i] = err;
    if (!(err <= tol)) { /* NaN too */
      r->mode[i] = FG_BLOCK_STORED_ROUND_TRIP;
      ++*n_fell;
    }
  }
  fg_tensor_free(h);
  return st;
}
