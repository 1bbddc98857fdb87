/* Recomputation's blocks and their modes (see recompute.h): the flow's layers with chains
 * opened, and which of them can rebuild their input from their output in a training graph. */
#include "flows/train/recompute_internal.h"

#include <math.h>
#include <stdlib.h>

static const char *const mode_names[] = {
    [FG_BLOCK_RECOMPUTED] = "recomputed",
    [FG_BLOCK_STORED_FIRST] = "stored: first block (its input is the data)",
    [FG_BLOCK_STORED_NO_INVERSE] = "stored: no inverse from its output in training mode",
    [FG_BLOCK_STORED_ROUND_TRIP] = "stored: round-trip error over the tolerance",
};

const char *fg_block_mode_str(fg_block_mode m) {
  return (unsigned)m < sizeof mode_names / sizeof *mode_names ? mode_names[m] : "?";
}

static bool valid(const fg_recompute *r, int i) { return r && i >= 0 && i < r->n; }

int fg_recompute_num_blocks(const fg_recompute *r) { return r ? r->n : 0; }
const char *fg_recompute_block_name(const fg_recompute *r, int i) {
  return valid(r, i) ? fg_bijector_prefix(r->blocks[i]) : "";
}
fg_block_mode fg_recompute_block_mode(const fg_recompute *r, int i) {
  return valid(r, i) ? r->mode[i] : FG_BLOCK_STORED_NO_INVERSE;
}
double fg_recompute_block_error(const fg_recompute *r, int i) {
  return valid(r, i) ? r->err[i] : NAN;
}

int fg_recompute_num_recomputed(const fg_recompute *r) {
  int n = 0;
  for (int i = 0; r && i < r->n; i++) n += r->mode[i] == FG_BLOCK_RECOMPUTED;
  return n;
}

void fg_recompute_free(fg_recompute *r) {
  if (!r) return;
  free(r->blocks);
  free(r->mode);
  free(r->err);
  free(r);
}

static fg_flow_ctx_opts ctx_opts(const fg_recompute *r) {
  const fg_flow_config *cfg = fg_flow_get_config(r->f);
  return (fg_flow_ctx_opts){.dtype = cfg->dtype, .training = true, .seed = cfg->seed};
}

fg_flow_ctx *fg__recompute_ctx(const fg_recompute *r, fg_graph *g) {
  fg_flow_ctx_opts o = ctx_opts(r);
  o.replicas = fg_flow_get_replicas(r->f); /* the loss graph runs on this process's part */
  fg_flow_ctx *c = NULL;
  fg_err e;
  if (fg_flow_ctx_new(&c, g, fg_flow_params(r->f), &o, &e) != FG_OK)
    fg_graph_fail(g, e.status, "recompute: %s", e.msg);
  return c;
}

fg_status fg__recompute_graph(const fg_recompute *r, fg_graph **g, fg_flow_ctx **c, fg_err *e) {
  fg_flow_ctx_opts o = ctx_opts(r);
  fg_status st = fg_flow_ctx_new_graph(c, g, fg_flow_params(r->f), &o, e);
  return st == FG_OK ? FG_OK : fg_err_prefix(e, st, "recompute");
}

/* ---- blocks ---- */

/* [batch, event...] */
static fg_shape batch_of(int64_t batch, fg_shape event) {
  fg_shape s = {.ndim = event.ndim + 1};
  s.d[0] = batch;
  for (int i = 0; i < event.ndim; i++) s.d[i + 1] = event.d[i];
  return s;
}

/* The input shape of every block for a batch of 2 (a forward build in training mode). */
static fg_status block_inputs(const fg_recompute *r, fg_shape *in, fg_err *e) {
  fg_graph *g;
  fg_flow_ctx *c;
  fg_status st = fg__recompute_graph(r, &g, &c, e);
  if (st != FG_OK) return st;
  const fg_flow_config *cfg = fg_flow_get_config(r->f);
  fg_node cur = fg_input(g, "x", cfg->dtype, batch_of(2, cfg->event)), ld;
  for (int i = 0; i < r->n && fg_graph_status(g) == FG_OK; i++) {
    in[i] = fg_node_shape(g, cur);
    fg_bijector_forward(r->blocks[i], c, cur, &cur, &ld);
  }
  if ((st = fg_graph_status(g)) != FG_OK) fg_err_set(e, st, "recompute: %s", fg_graph_errmsg(g));
  fg_flow_ctx_free(c);
  fg_graph_free(g);
  return st;
}

/* Whether forward then inverse of b builds in a training graph (batch-norm's inverse refuses
 * there: it would need the batch statistics of its input). */
static bool invertible_in_training(const fg_recompute *r, fg_bijector *b, fg_shape in) {
  const fg_bijector_type *t = fg_bijector_type_of(b);
  if (!t || (t->flags & FG_BIJ_STOCHASTIC)) return false; /* an inversion, or noise in forward */
  fg_graph *g;
  fg_flow_ctx *c;
  if (fg__recompute_graph(r, &g, &c, NULL) != FG_OK) return false;
  fg_node y, ld, back, ld_back;
  fg_bijector_forward(b, c, fg_input(g, "h", fg_flow_get_config(r->f)->dtype, in), &y, &ld);
  fg_bijector_inverse(b, c, y, &back, &ld_back);
  bool ok = fg_graph_status(g) == FG_OK;
  fg_flow_ctx_free(c);
  fg_graph_free(g);
  return ok;
}

static fg_status assign_modes(fg_recompute *r, fg_err *e) {
  fg_shape *in = malloc(sizeof *in * (size_t)r->n);
  if (!in) return fg_err_set(e, FG_E_NOMEM, "recompute: out of memory");
  fg_status st = block_inputs(r, in, e);
  for (int i = 0; st == FG_OK && i < r->n; i++) {
    r->err[i] = NAN;
    if (i == 0) r->mode[i] = FG_BLOCK_STORED_FIRST;
    else
      r->mode[i] = invertible_in_training(r, r->blocks[i], in[i]) ? FG_BLOCK_RECOMPUTED
                                                                  : FG_BLOCK_STORED_NO_INVERSE;
  }
  free(in);
  return st;
}

fg_status fg_recompute_new(fg_recompute **out, fg_flow *f, fg_err *e) {
  *out = NULL;
  if (!f) return fg_err_set(e, FG_E_MISUSE, "recompute: no flow");
  fg_recompute *r = calloc(1, sizeof *r);
  if (!r) return fg_err_set(e, FG_E_NOMEM, "recompute: out of memory");
  /* the blocks are the flow's layers, chains opened (an inversion is one block) */
  fg_status st = fg_bijector_leaves(&r->blocks, &r->n, fg_flow_bijector(f), e);
  if (st != FG_OK) fg_err_prefix(e, st, "recompute");
  if (st == FG_OK) {
    r->f = f;
    r->mode = malloc(sizeof *r->mode * (size_t)(r->n + 1));
    r->err = malloc(sizeof *r->err * (size_t)(r->n + 1));
    if (!r->mode || !r->err) st = fg_err_set(e, FG_E_NOMEM, "recompute: out of memory");
  }
  if (st == FG_OK) st = assign_modes(r, e);
  if (st != FG_OK) {
    fg_recompute_free(r);
    return st;
  }
  *out = r;
  return FG_OK;
}
