/* The training loss and its parameter gradients built block by block, with recomputed blocks
 * rebuilding their activations from their output through their inverse (recompute.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/autodiff/autodiff.h"
#include "flows/train/recompute_internal.h"
#include "ops/ops.h"

/* What the forward pass built for one block. */
typedef struct block_fwd {
  fg_node in, out, ld; /* in: stop_gradient of the block's input */
  fg_node first, end;  /* ids of the nodes its forward added */
  int latents;         /* factored-out parts on the context's stack before it ran */
} block_fwd;

typedef struct builder {
  fg_recompute *r;
  fg_graph *g;
  fg_flow_ctx *c;
  block_fwd *b;
  int n_params;
  fg_node *grads;       /* per stored parameter: gradient so far, FG_NONE = zero */
  int32_t *param_index; /* per node id < n_mapped: store index of a parameter node, else -1 */
  fg_node n_mapped;
  int *seen;            /* per stored parameter: the last VJP that listed it */
  int n_vjps;
} builder;

static fg_status fail(builder *bd, fg_status s, const char *what) {
  fg_graph_fail(bd->g, s, "recompute: %s", what);
  return fg_graph_status(bd->g);
}

/* ---- the forward pass ---- */

/* x must be [B, event...] in the flow's dtype (fg_flow_nll_loss checks the same). */
static fg_status check_x(builder *bd, fg_node x) {
  const fg_flow_config *cfg = fg_flow_get_config(bd->r->f);
  fg_shape xs = fg_node_shape(bd->g, x);
  bool ok = xs.ndim == cfg->event.ndim + 1 && fg_node_dtype(bd->g, x) == cfg->dtype;
  for (int i = 0; ok && i < cfg->event.ndim; i++) ok = xs.d[i + 1] == cfg->event.d[i];
  if (fg_graph_status(bd->g) != FG_OK || ok) return fg_graph_status(bd->g);
  char a[128], b[128];
  fg_graph_fail(bd->g, FG_E_SHAPE,
                "recompute: x is %s %s; the flow's events are %s %s (batch axis first)",
                fg_dtype_name(fg_node_dtype(bd->g, x)), fg_shape_str(&xs, a, sizeof a),
                fg_dtype_name(cfg->dtype), fg_shape_str(&cfg->event, b, sizeof b));
  return FG_E_SHAPE;
}

/* Runs the blocks on x; *top is the last output, *total the summed log-dets. */
static fg_status forward_blocks(builder *bd, fg_node x, fg_node *top, fg_node *total) {
  fg_node cur = x;
  *total = FG_NONE;
  for (int i = 0; i < bd->r->n && fg_graph_status(bd->g) == FG_OK; i++) {
    block_fwd *b = &bd->b[i];
    b->in = fg_stop_gradient(bd->g, cur);
    b->latents = fg_flow_num_latents(bd->c);
    b->first = fg_graph_node_count(bd->g);
    fg_bijector_forward(bd->r->blocks[i], bd->c, b->in, &b->out, &b->ld);
    b->end = fg_graph_node_count(bd->g);
    *total = *total == FG_NONE ? b->ld : fg_add(bd->g, *total, b->ld);
    cur = b->out;
  }
  *top = cur;
  return fg_graph_status(bd->g);
}

/* ---- parameters ---- */

/* Which graph nodes are the store's parameters (every one the forward pass and the prior use
 * exists by now; the recomputation reuses them). */
static fg_status map_params(builder *bd) {
  fg_params *ps = fg_flow_params(bd->r->f);
  bd->n_mapped = fg_graph_node_count(bd->g);
  bd->param_index = malloc(sizeof *bd->param_index * ((size_t)bd->n_mapped + 1));
  if (!bd->param_index) return fail(bd, FG_E_NOMEM, "out of memory");
  for (fg_node i = 0; i < bd->n_mapped; i++) bd->param_index[i] = -1;
  for (int k = 0; k < bd->n_params; k++) {
    fg_node n = fg_graph_find(bd->g, fg_params_name(ps, k));
    if (n >= 0 && n < bd->n_mapped) bd->param_index[n] = k;
  }
  return FG_OK;
}

/* The parameters that nodes [first, end) read, appended to wrt (store indices in idx). */
static int params_read(builder *bd, fg_node first, fg_node end, fg_node *wrt, int *idx) {
  int n = 0;
  bd->n_vjps++;
  for (fg_node i = first; i < end; i++)
    for (int k = 0; k < fg_node_num_inputs(bd->g, i); k++) {
      fg_node in = fg_node_input(bd->g, i, k);
      int p = in < bd->n_mapped ? bd->param_index[in] : -1;
      if (p < 0 || bd->seen[p] == bd->n_vjps) continue;
      bd->seen[p] = bd->n_vjps;
      wrt[n] = in, idx[n] = p, n++;
    }
  return n;
}

static void add_grads(builder *bd, int n, const int *idx, const fg_node *grads) {
  for (int k = 0; k < n; k++) {
    fg_node *acc = &bd->grads[idx[k]];
    *acc = *acc == FG_NONE ? grads[k] : fg_add(bd->g, *acc, grads[k]);
  }
}

/* ---- one block's VJP ---- */

/* The seed for a log-det of ld's shape from the gradient of their sum. */
static fg_node seed_like(fg_graph *g, fg_node grad, fg_node like) {
  fg_shape gs = fg_node_shape(g, grad), ls = fg_node_shape(g, like);
  return fg_shape_equal(&gs, &ls) ? grad : fg_sum_to(g, grad, ls);
}

/* Seeds (y, ld) with (gy, gld) and adds the gradients of the parameters nodes [first, end)
 * read; *g_in is the gradient at `in` (skipped when in is FG_NONE). */
static fg_status block_vjp(builder *bd, fg_node y, fg_node ld, fg_node first, fg_node end,
                           fg_node in, fg_node gy, fg_node gld, fg_node *g_in) {
  int cap = bd->n_params + 1, *idx = malloc(sizeof *idx * (size_t)cap);
  fg_node *wrt = malloc(sizeof *wrt * (size_t)cap), *res = malloc(sizeof *res * (size_t)cap);
  fg_status st = idx && wrt && res ? FG_OK : fail(bd, FG_E_NOMEM, "out of memory");
  int lead = in != FG_NONE, n = st == FG_OK ? params_read(bd, first, end, wrt + lead, idx) : 0;
  *g_in = FG_NONE;
  if (lead) wrt[0] = in;
  if (st == FG_OK && n + lead > 0) {
    fg_node outs[2] = {y, ld}, seeds[2] = {gy, seed_like(bd->g, gld, ld)};
    st = fg_vjp(bd->g, 2, outs, seeds, n + lead, wrt, res);
    if (st == FG_OK) add_grads(bd, n, idx, res + lead);
    if (st == FG_OK && lead) *g_in = res[0];
  }
  free(idx), free(wrt), free(res);
  return st;
}

/* ---- the backward pass ---- */

static fg_status drop_latents(builder *bd, int keep, int block) {
  if (fg_flow_num_latents(bd->c) < keep) {
    char what[300];
    snprintf(what, sizeof what,
             "block %s: its inverse took more factored-out parts than its forward pushed",
             fg_recompute_block_name(bd->r, block));
    return fail(bd, FG_E_MISUSE, what);
  }
  while (fg_flow_num_latents(bd->c) > keep) fg_flow_pop_latent(bd->c);
  return fg_graph_status(bd->g);
}

/* Block i from its output: x' = stop_gradient(inverse(after(rec, gy))), forward again on x',
 * VJP there.  *rec_in is x'. */
static fg_status backward_recomputed(builder *bd, int i, fg_node rec, fg_node gy, fg_node gld,
                                     fg_node *rec_in, fg_node *g_in) {
  fg_bijector *blk = bd->r->blocks[i];
  fg_node back, ld_back, y, ld;
  /* the reconstruction waits for gy: one block's recomputation live at a time (recompute.h) */
  fg_bijector_inverse(blk, bd->c, fg_after(bd->g, rec, gy), &back, &ld_back);
  if (drop_latents(bd, bd->b[i].latents, i) != FG_OK) return fg_graph_status(bd->g);
  *rec_in = fg_stop_gradient(bd->g, back);
  fg_node first = fg_graph_node_count(bd->g);
  fg_bijector_forward(blk, bd->c, *rec_in, &y, &ld);
  fg_node end = fg_graph_node_count(bd->g);
  if (drop_latents(bd, bd->b[i].latents, i) != FG_OK) return fg_graph_status(bd->g);
  return block_vjp(bd, y, ld, first, end, *rec_in, gy, gld, g_in);
}

/* Block i through the nodes its forward pass kept. */
static fg_status backward_stored(builder *bd, int i, fg_node gy, fg_node gld, fg_node *rec_in,
                                 fg_node *g_in) {
  const block_fwd *b = &bd->b[i];
  if (drop_latents(bd, b->latents, i) != FG_OK) return fg_graph_status(bd->g);
  *rec_in = b->in;
  return block_vjp(bd, b->out, b->ld, b->first, b->end, i > 0 ? b->in : FG_NONE, gy, gld, g_in);
}

static fg_status backward_blocks(builder *bd, fg_node top, fg_node g_top, fg_node g_total) {
  fg_node rec = top, gy = g_top;
  for (int i = bd->r->n - 1; i >= 0 && fg_graph_status(bd->g) == FG_OK; i--) {
    fg_node rec_in = FG_POISON, g_in = FG_POISON;
    fg_status st = bd->r->mode[i] == FG_BLOCK_RECOMPUTED
                       ? backward_recomputed(bd, i, rec, gy, g_total, &rec_in, &g_in)
                       : backward_stored(bd, i, gy, g_total, &rec_in, &g_in);
    if (st != FG_OK) return st;
    rec = rec_in, gy = g_in;
  }
  return fg_graph_status(bd->g);
}

/* ---- the loss ---- */

/* loss = -mean(log p_base(top) + total), on stop_gradient copies of top and total so that their
 * gradients (*g_top, *g_total) are the loss's alone; the prior's parameters get theirs here. */
static fg_status head(builder *bd, fg_node top, fg_node total, fg_node *loss, fg_node *g_top,
                      fg_node *g_total) {
  fg_node ts = fg_stop_gradient(bd->g, top), ls = fg_stop_gradient(bd->g, total), base;
  fg_node first = fg_graph_node_count(bd->g);
  if (fg_flow_base_log_prob(bd->r->f, bd->g, ts, &base) != FG_OK) return fg_graph_status(bd->g);
  *loss = fg_neg(bd->g, fg_mean(bd->g, fg_add(bd->g, base, ls), FG_ALL_AXES, false));
  fg_node end = fg_graph_node_count(bd->g);
  fg_status st = map_params(bd);
  int *idx = malloc(sizeof *idx * (size_t)(bd->n_params + 1));
  fg_node *wrt = malloc(sizeof *wrt * (size_t)(bd->n_params + 2)),
          *res = malloc(sizeof *res * (size_t)(bd->n_params + 2));
  if (st == FG_OK && (!idx || !wrt || !res)) st = fail(bd, FG_E_NOMEM, "out of memory");
  if (st == FG_OK) {
    wrt[0] = ts, wrt[1] = ls;
    int n = params_read(bd, first, end, wrt + 2, idx);
    st = fg_grad(bd->g, *loss, n + 2, wrt, res);
    if (st == FG_OK) add_grads(bd, n, idx, res + 2);
    *g_top = res[0], *g_total = res[1];
  }
  free(idx), free(wrt), free(res);
  return st == FG_OK ? fg_graph_status(bd->g) : st;
}

/* Zeros for the parameters nothing reached, then out[i] = grads[i]. */
static fg_status finish_grads(builder *bd, fg_node *out) {
  fg_params *ps = fg_flow_params(bd->r->f);
  for (int k = 0; k < bd->n_params; k++) {
    const fg_tensor *t = fg_params_tensor(ps, k);
    out[k] = bd->grads[k] != FG_NONE ? bd->grads[k] : fg_fill(bd->g, 0.0, t->dtype, t->shape);
  }
  return fg_graph_status(bd->g);
}

static fg_status build(builder *bd, fg_node x, fg_node *loss, fg_node *grads,
                       fg_flow_updates **updates) {
  fg_node top = FG_POISON, total = FG_POISON, g_top = FG_POISON, g_total = FG_POISON;
  if (check_x(bd, x) != FG_OK || forward_blocks(bd, x, &top, &total) != FG_OK)
    return fg_graph_status(bd->g);
  if (updates) {
    bool nomem;
    *updates = fg_flow_updates_from_ctx(bd->c, &nomem);
    if (nomem) return fail(bd, FG_E_NOMEM, "out of memory recording state updates");
  }
  fg_status st = head(bd, top, total, loss, &g_top, &g_total);
  if (st == FG_OK) st = backward_blocks(bd, top, g_top, g_total);
  if (st == FG_OK) st = finish_grads(bd, grads);
  return st;
}

fg_status fg_recompute_loss_grads(fg_recompute *r, fg_graph *g, fg_node x, fg_node *loss,
                                  fg_node *grads, fg_flow_updates **updates) {
  *loss = FG_POISON;
  if (updates) *updates = NULL;
  if (fg_graph_status(g) != FG_OK) return fg_graph_status(g);
  builder bd = {.r = r, .g = g, .n_params = fg_flow_num_params(r->f)};
  bd.b = calloc((size_t)r->n + 1, sizeof *bd.b);
  bd.grads = malloc(sizeof *bd.grads * ((size_t)bd.n_params + 1));
  bd.seen = calloc((size_t)bd.n_params + 1, sizeof *bd.seen);
  bd.c = fg__recompute_ctx(r, g);
  fg_status st =
      bd.b && bd.grads && bd.seen && bd.c ? FG_OK : fail(&bd, FG_E_NOMEM, "out of memory");
  for (int k = 0; st == FG_OK && k < bd.n_params; k++) bd.grads[k] = FG_NONE;
  if (st == FG_OK) st = build(&bd, x, loss, grads, updates);
  if (st != FG_OK) {
    *loss = FG_POISON;
    for (int k = 0; k < bd.n_params; k++) grads[k] = FG_POISON;
    if (updates) fg_flow_updates_free(*updates), *updates = NULL;
  }
  fg_flow_ctx_free(bd.c);
  free(bd.b), free(bd.grads), free(bd.seen), free(bd.param_index);
  return st;
}
