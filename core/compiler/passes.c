/* The rewriting machinery, dead-node removal, and the pass pipeline. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/ir/dot.h"
#include "core/compiler/pass.h"

static const char *const pass_names[] = {
#define FG_PASS_NAME_(ID, name, what) #name,
    FG_PASS_MAP(FG_PASS_NAME_)
#undef FG_PASS_NAME_
};

const char *fg_pass_name(int pass) {
  return pass >= 0 && pass < FG_PASS_COUNT ? pass_names[pass] : "unknown-pass";
}

fg_status fg_pass_parse_list(const char *list, uint32_t *bits, fg_err *e) {
  *bits = 0;
  if (!list) return FG_OK;
  const char *p = list;
  while (*p) {
    size_t len = strcspn(p, ", ");
    if (len) {
      int found = -1;
      for (int i = 0; i < FG_PASS_COUNT; i++)
        if (strlen(pass_names[i]) == len && strncmp(p, pass_names[i], len) == 0) found = i;
      if (found < 0)
        return fg_err_set(e, FG_E_MISUSE, "unknown pass '%.*s' (passes: dce, simplify, cse, fold, "
                          "epilogue, fuse, memplan, schedule)", (int)len, p);
      *bits |= 1u << found;
    }
    p += len;
    p += strspn(p, ", ");
  }
  return FG_OK;
}

/* Marks what the outputs need (everything, with keep_dead). */
static uint8_t *live_nodes(const fg_pass_ctx *c) {
  int32_t n = fg_graph_node_count(c->g);
  uint8_t *live = calloc((size_t)n + 1, 1);
  if (!live) return NULL;
  if (c->keep_dead) {
    memset(live, 1, (size_t)n);
    return live;
  }
  for (int j = 0; j < c->n_out; j++) live[c->outs[j]] = 1;
  for (int32_t i = n - 1; i >= 0; i--)
    if (live[i])
      for (int k = 0; k < fg_node_num_inputs(c->g, i); k++) live[fg_node_input(c->g, i, k)] = 1;
  return live;
}

static fg_status emit_live(fg_pass_ctx *c, fg_graph *dst, const uint8_t *live, fg_node *map,
                           fg_emit_fn emit, void *state) {
  const fg_graph *src = c->g;
  fg_node small[16];
  for (fg_node n = 0; n < fg_graph_node_count(src); n++) {
    map[n] = FG_NONE;
    if (!live[n]) continue;
    int n_in = fg_node_num_inputs(src, n);
    fg_node *in = n_in <= 16 ? small : malloc(sizeof *in * (size_t)n_in);
    if (!in) return fg_err_set(c->e, FG_E_NOMEM, "rewrite: out of memory");
    for (int k = 0; k < n_in; k++) in[k] = map[fg_node_input(src, n, k)];
    map[n] = emit ? emit(c, dst, src, n, in, state) : fg_graph_copy_node(dst, src, n, in);
    if (in != small) free(in);
    if (map[n] < 0 || fg_graph_status(dst) != FG_OK)
      return fg_err_set(c->e, fg_graph_status(dst) ? fg_graph_status(dst) : FG_E_INTERNAL,
                        "rewrite of node %d failed: %s", n, fg_graph_errmsg(dst));
  }
  return FG_OK;
}

fg_status fg_pass_rewrite(fg_pass_ctx *c, fg_emit_fn emit, void *state) {
  int32_t n = fg_graph_node_count(c->g);
  fg_graph *dst;
  fg_graph_new(&dst, NULL);
  uint8_t *live = live_nodes(c);
  fg_node *map = malloc(sizeof *map * ((size_t)n + 1));
  fg_status st = dst && live && map ? emit_live(c, dst, live, map, emit, state)
                                    : fg_err_set(c->e, FG_E_NOMEM, "rewrite: out of memory");
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

int32_t *fg_pass_reader_counts(const fg_graph *g, int n_out, const fg_node *outs) {
  int32_t n = fg_graph_node_count(g);
  int32_t *uses = calloc((size_t)n + 1, sizeof *uses);
  if (!uses) return NULL;
  for (fg_node i = 0; i < n; i++)
    for (int k = 0; k < fg_node_num_inputs(g, i); k++) uses[fg_node_input(g, i, k)]++;
  for (int j = 0; j < n_out; j++) uses[outs[j]] += 1 << 20; /* an output is never internal */
  return uses;
}

fg_status fg_pass_dce(fg_pass_ctx *c) {
  int32_t before = fg_graph_node_count(c->g);
  fg_status st = fg_pass_rewrite(c, NULL, NULL);
  c->changes = before - fg_graph_node_count(c->g);
  return st;
}

/* ---- the pipeline ---- */

typedef struct pipeline_step {
  int pass;
  fg_status (*run)(fg_pass_ctx *);
} pipeline_step;

static const pipeline_step pipeline[] = {
    {FG_PASS_DCE, fg_pass_dce},     {FG_PASS_SIMPLIFY, fg_pass_simplify},
    {FG_PASS_CSE, fg_pass_cse},     {FG_PASS_FOLD, fg_pass_fold},
    {FG_PASS_SIMPLIFY, fg_pass_simplify}, {FG_PASS_CSE, fg_pass_cse},
    {FG_PASS_EPILOGUE, fg_pass_epilogue},
};

/* <dir>/NN-<label>.dot: the graph at one point of the pipeline. */
static fg_status dump_step(const fg_graph *g, const char *dir, int index, const char *label, fg_err *e) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%02d-%s.dot", dir, index, label);
  return fg_dot_write(g, NULL, FG_DOT_DOT, path, e);
}

fg_status fg_passes_run(fg_pass_ctx *c, uint32_t disabled, bool verify, const char *dump_dir,
                        int32_t *counts) {
  for (int i = 0; i < FG_PASS_COUNT; i++) counts[i] = -1;
  c->keep_dead = disabled & FG_PASS_BIT(DCE);
  fg_status st = dump_dir ? dump_step(c->g, dump_dir, 0, "input", c->e) : FG_OK;
  int steps = (int)(sizeof pipeline / sizeof *pipeline);
  for (int i = 0; st == FG_OK && i < steps; i++) {
    if (disabled & (1u << pipeline[i].pass)) continue;
    c->changes = 0;
    st = pipeline[i].run(c);
    if (st == FG_OK && verify) st = fg_graph_verify(c->g, c->e);
    if (st == FG_OK && dump_dir)
      st = dump_step(c->g, dump_dir, i + 1, fg_pass_name(pipeline[i].pass), c->e);
    counts[pipeline[i].pass] = fg_graph_node_count(c->g);
  }
  return st;
}
