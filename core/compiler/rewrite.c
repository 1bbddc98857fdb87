/* The rewriting machinery every graph pass is built on (see core/compiler/pass.h): a rewrite
 * rebuilds the program's graph node by node, in id order, keeping what the outputs need
 * (fg_pass_live_nodes, core/compiler/pass_dce.c) and asking the pass what stands for each live
 * node in the new graph. */
#include <stdlib.h>
#include <string.h>

#include "core/compiler/pass.h"
#include "core/ir/op.h"
#include "core/ir/op_attrs.h"

enum { SMALL_FAN_IN = 16 };

static fg_status emit_live(fg_pass_ctx *c, fg_graph *dst, const uint8_t *live, fg_node *map,
                           fg_emit_fn emit, void *state) {
  const fg_graph *src = c->g;
  fg_node small[SMALL_FAN_IN];
  for (fg_node n = 0; n < fg_graph_node_count(src); n++) map[n] = FG_NONE; /* c->map's promise */
  for (fg_node n = 0; n < fg_graph_node_count(src); n++) {
    if (!live[n]) continue;
    int n_in = fg_node_num_inputs(src, n);
    fg_node *in = n_in <= SMALL_FAN_IN ? small : malloc(sizeof *in * (size_t)n_in);
    if (!in) return fg_err_set(c->e, FG_E_NOMEM, "rewrite: out of memory");
    for (int k = 0; k < n_in; k++) in[k] = map[fg_node_input(src, n, k)];
    /* nodes a pass makes in n's place belong to n's layer, and to the gradient if n did */
    fg_node first_new = fg_graph_node_count(dst);
    const char *outer = fg_graph_enter_scope(dst, fg_node_scope(src, n));
    map[n] = emit ? emit(c, dst, src, n, in, state) : fg_graph_copy_node(dst, src, n, in);
    fg_graph_leave_scope(dst, outer);
    fg_graph_mark(dst, first_new, fg_graph_node(src, n)->flags & FG_NODE_GRAD);
    if (in != small) free(in);
    if (map[n] < 0 || fg_graph_status(dst) != FG_OK)
      return fg_err_set(c->e, fg_graph_status(dst) ? fg_graph_status(dst) : FG_E_INTERNAL,
                        "rewrite of node %d failed: %s", n, fg_graph_errmsg(dst));
  }
  return FG_OK;
}

fg_status fg_pass_rewrite(fg_pass_ctx *c, fg_emit_fn emit, void *state) {
  int32_t n = fg_graph_node_count(c->g);
  fg_graph *dst = NULL;
  uint8_t *live = NULL;
  fg_node *map = malloc(sizeof *map * ((size_t)n + 1));
  fg_status st = map ? fg_graph_new(&dst, c->e)
                     : fg_err_set(c->e, FG_E_NOMEM, "rewrite: out of memory");
  if (st == FG_OK) st = fg_pass_live_nodes(&live, c);
  c->map = map;
  if (st == FG_OK) st = emit_live(c, dst, live, map, emit, state);
  c->map = NULL;
  if (st == FG_OK) {
    for (int j = 0; j < c->n_out; j++) c->outs[j] = map[c->outs[j]];
    if (!c->borrowed) fg_graph_free(c->g);
    c->borrowed = false;
    c->g = dst;
    dst = NULL;
  }
  fg_graph_free(dst);
  free(live);
  free(map);
  return st;
}

fg_status fg_pass_rewrite_merging(fg_pass_ctx *c, fg_emit_fn emit, const void *extra) {
  int32_t *uses;
  fg_status st = fg_pass_reader_counts(&uses, c->g, c->n_out, c->outs, c->e);
  if (st != FG_OK) return st;
  fg_merge_state state = {uses, extra};
  st = fg_pass_rewrite(c, emit, &state);
  free(uses);
  int64_t merged = c->changes;
  if (st == FG_OK && merged > 0 && !c->keep_dead) st = fg_pass_dce(c);
  c->changes = merged;
  return st;
}

fg_status fg_pass_reader_counts(int32_t **out, const fg_graph *g, int n_out, const fg_node *outs,
                                fg_err *e) {
  int32_t n = fg_graph_node_count(g);
  int32_t *uses = *out = calloc((size_t)n + 1, sizeof *uses);
  if (!uses) return fg_err_set(e, FG_E_NOMEM, "reader counts: out of memory");
  for (fg_node i = 0; i < n; i++)
    for (int k = 0; k < fg_node_num_inputs(g, i); k++) uses[fg_node_input(g, i, k)]++;
  for (int j = 0; j < n_out; j++) uses[outs[j]] += 1 << 20; /* an output is never internal */
  return FG_OK;
}

bool fg_pass_all_equal(const fg_graph *g, fg_node n, double v) {
  const fg_node_rec *r = fg_graph_node(g, n);
  if (r->op == FG_OP_FILL) return ((const fg_source_attr *)r->attr)->a == v;
  if (r->op != FG_OP_CONST || fg_tensor_numel(r->value) > 4096) return false;
  for (int64_t i = 0; i < fg_tensor_numel(r->value); i++)
    if (fg_tensor_get(r->value, i) != v) return false;
  return true;
}

/* ---- pair fusion (fg_pass_rewrite_pairs) ---- */

typedef struct pair_state {
  const fg_pair_fusion *p;
  fg_node *partner; /* per source node: the other of its pair, else FG_NONE */
  fg_node *fused;   /* per source node: its pair's fused node in the new graph, once made */
} pair_state;

/* n's part of the fused node f: the slice [from, to) of its flat output, in n's shape. */
static fg_node pair_part(const pair_state *s, fg_graph *dst, fg_node f, const fg_graph *src,
                         fg_node n) {
  fg_slice_attr sl;
  memset(&sl, 0, sizeof sl);
  s->p->range(dst, f, src, n, &sl.start[0], &sl.stop[0]);
  sl.step[0] = 1;
  fg_node part = fg_graph_add_node(dst, FG_OP_SLICE, 1, &f, &sl);
  fg_reshape_attr rs = {fg_node_shape(src, n)};
  return fg_graph_add_node(dst, FG_OP_RESHAPE, 1, &part, &rs);
}

static fg_node pair_emit(fg_pass_ctx *c, fg_graph *dst, const fg_graph *src, fg_node n,
                         const fg_node *in, void *state) {
  pair_state *s = state;
  if (s->fused[n] != FG_NONE) return pair_part(s, dst, s->fused[n], src, n); /* the second */
  fg_node other = s->partner[n];
  fg_node f = other == FG_NONE ? FG_NONE : s->p->make(c, dst, src, n, other);
  if (f == FG_NONE) {
    if (other != FG_NONE) s->partner[other] = FG_NONE; /* the two stay apart */
    return fg_graph_copy_node(dst, src, n, in);
  }
  s->fused[other] = f;
  c->changes++;
  return pair_part(s, dst, f, src, n);
}

fg_status fg_pass_rewrite_pairs(fg_pass_ctx *c, const fg_pair_fusion *p) {
  int32_t count = fg_graph_node_count(c->g);
  pair_state s = {p, malloc(sizeof *s.partner * ((size_t)count + 1)),
                  malloc(sizeof *s.fused * ((size_t)count + 1))};
  fg_status st = s.partner && s.fused ? p->find(s.partner, c->g, c->e)
                                      : fg_err_set(c->e, FG_E_NOMEM, "pair fusion: out of memory");
  for (fg_node n = 0; st == FG_OK && n < count; n++) s.fused[n] = FG_NONE;
  if (st == FG_OK) st = fg_pass_rewrite(c, pair_emit, &s);
  free(s.partner), free(s.fused);
  return st;
}
