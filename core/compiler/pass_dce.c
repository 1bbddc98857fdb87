/* Dead-node removal: what the outputs do not need is not copied.  Every rewrite keeps only the
 * live nodes, so the pass itself is a rewrite that copies; with DCE switched off
 * (keep_dead), every node counts as live and rewrites keep unread nodes too. */
#include <stdlib.h>
#include <string.h>

#include "core/compiler/pass.h"

fg_status fg_pass_live_nodes(uint8_t **out, const fg_pass_ctx *c) {
  int32_t n = fg_graph_node_count(c->g);
  uint8_t *live = *out = calloc((size_t)n + 1, 1);
  if (!live) return fg_err_set(c->e, FG_E_NOMEM, "dead-node removal: out of memory");
  if (c->keep_dead) {
    memset(live, 1, (size_t)n);
    return FG_OK;
  }
  for (int j = 0; j < c->n_out; j++) live[c->outs[j]] = 1;
  /* inputs precede their readers, so one backward sweep reaches everything needed */
  for (int32_t i = n - 1; i >= 0; i--)
    if (live[i])
      for (int k = 0; k < fg_node_num_inputs(c->g, i); k++) live[fg_node_input(c->g, i, k)] = 1;
  return FG_OK;
}

fg_status fg_pass_dce(fg_pass_ctx *c) {
  int32_t before = fg_graph_node_count(c->g);
  fg_status st = fg_pass_rewrite(c, NULL, NULL);
  c->changes = before - fg_graph_node_count(c->g);
  return st;
}
