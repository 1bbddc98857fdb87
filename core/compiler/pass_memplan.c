#include "core/compiler/pass_memplan.h"

#include <stdlib.h>
#include <string.h>

#include "core/ir/op.h"

enum { ALIGN = 64 };

typedef struct block {
  size_t off, size;
  fg_node owner;
} block;

typedef struct arena_state {
  block *live; /* sorted by offset */
  int32_t n_live;
  size_t top;
} arena_state;

static size_t aligned(size_t b) { return (b + ALIGN - 1) / ALIGN * ALIGN; }

static size_t node_bytes(const fg_graph *g, fg_node n) {
  return aligned((size_t)fg_node_bytes(g, n));
}

/* Scratch ranges are owned by no node: they are named by -2 - step in the live list. */
static fg_node scratch_owner(int32_t step) { return -2 - step; }

/* First fit: the lowest gap between live blocks that holds `size`. */
static size_t arena_alloc(arena_state *a, size_t size, fg_node owner) {
  size_t at = 0;
  int32_t i = 0;
  for (; i < a->n_live; i++) {
    if (a->live[i].off - at >= size) break;
    at = a->live[i].off + a->live[i].size;
  }
  memmove(a->live + i + 1, a->live + i, sizeof *a->live * (size_t)(a->n_live - i));
  a->live[i] = (block){at, size, owner};
  a->n_live++;
  if (at + size > a->top) a->top = at + size;
  return at;
}

static void arena_release(arena_state *a, fg_node owner) {
  for (int32_t i = 0; i < a->n_live; i++)
    if (a->live[i].owner == owner) {
      memmove(a->live + i, a->live + i + 1, sizeof *a->live * (size_t)(a->n_live - i - 1));
      a->n_live--;
      return;
    }
}

static void compute_deaths(const fg_graph *g, int n_steps, const fg_memplan_step *steps,
                           const uint8_t *planned, fg_memplan *m) {
  for (fg_node i = 0; i < fg_graph_node_count(g); i++) m->dies_at[i] = -1;
  for (int32_t s = 0; s < n_steps; s++)
    for (int32_t k = 0; k < steps[s].n_reads; k++)
      if (planned[steps[s].reads[k]]) m->dies_at[steps[s].reads[k]] = s;
  for (int32_t s = 0; s < n_steps; s++) /* written but never read: free right away */
    if (planned[steps[s].node] && m->dies_at[steps[s].node] < 0) m->dies_at[steps[s].node] = s;
}

/* Node n may take over its input 0's range. */
static bool can_reuse_input(const fg_graph *g, const fg_memplan *m, const uint8_t *planned,
                            fg_node n, int32_t step) {
  const fg_op_def *def = fg_op_get(fg_node_op(g, n));
  if (!(def->flags & FG_OPF_INPLACE_OK) || fg_node_num_inputs(g, n) < 1) return false;
  fg_node x = fg_node_input(g, n, 0);
  if (!planned[x] || m->dies_at[x] != step || m->offset[x] < 0) return false;
  /* same dtype and element count: rounded byte sizes can match for a broadcast input
   * ([1, 2] read into [4, 2]), whose elements are re-read after being overwritten */
  fg_shape xs = fg_node_shape(g, x), ns = fg_node_shape(g, n);
  if (fg_node_dtype(g, x) != fg_node_dtype(g, n) || fg_shape_count(&xs) != fg_shape_count(&ns))
    return false;
  for (int k = 1; k < fg_node_num_inputs(g, n); k++) /* x must not be read again as another input */
    if (fg_node_input(g, n, k) == x) return false;
  return true;
}

/* v's range: its dying input 0's when it may run in place, else a new one. */
static void place(const fg_graph *g, fg_memplan *m, const uint8_t *planned, bool in_place_ok,
                  arena_state *a, fg_node v, int32_t s) {
  m->naive_bytes += node_bytes(g, v);
  if (in_place_ok && can_reuse_input(g, m, planned, v, s)) {
    fg_node x = fg_node_input(g, v, 0);
    m->offset[v] = m->offset[x];
    for (int32_t i = 0; i < a->n_live; i++)
      if (a->live[i].owner == x) a->live[i].owner = v; /* the range now belongs to v */
    m->in_place[v] = 1;
    m->n_in_place++;
  } else {
    m->offset[v] = (int64_t)arena_alloc(a, node_bytes(g, v), v);
  }
}

fg_status fg_memplan_build(fg_memplan *m, const fg_graph *g, int n_steps,
                           const fg_memplan_step *steps, const uint8_t *planned, bool in_place_ok,
                           const size_t *scratch, fg_err *e) {
  memset(m, 0, sizeof *m);
  int32_t n = fg_graph_node_count(g);
  m->offset = malloc(sizeof *m->offset * ((size_t)n + 1));
  m->dies_at = malloc(sizeof *m->dies_at * ((size_t)n + 1));
  m->in_place = calloc((size_t)n + 1, 1);
  m->scratch_offset = malloc(sizeof *m->scratch_offset * ((size_t)n_steps + 1));
  arena_state a = {.live = malloc(sizeof(block) * ((size_t)n + (size_t)n_steps + 1))};
  if (!m->offset || !m->dies_at || !m->in_place || !m->scratch_offset || !a.live) {
    free(a.live);
    fg_memplan_free(m);
    return fg_err_set(e, FG_E_NOMEM, "memory plan: out of memory");
  }
  for (fg_node i = 0; i < n; i++) m->offset[i] = -1;
  compute_deaths(g, n_steps, steps, planned, m);
  for (int32_t s = 0; s < n_steps; s++) {
    fg_node v = steps[s].node;
    if (planned[v]) place(g, m, planned, in_place_ok, &a, v, s);
    size_t sb = scratch ? aligned(scratch[s]) : 0;
    m->scratch_offset[s] = sb ? (int64_t)arena_alloc(&a, sb, scratch_owner(s)) : -1;
    if (sb && in_place_ok) arena_release(&a, scratch_owner(s));
    /* values whose last reader is this step are free for the next steps, also when the step
     * writes an output (outside the arena: a gradient reading the last of an activation) */
    for (int32_t k = 0; k < steps[s].n_reads; k++) {
      fg_node r = steps[s].reads[k];
      if (planned[r] && m->dies_at[r] == s && !(m->in_place[v] && r == fg_node_input(g, v, 0)))
        arena_release(&a, r);
    }
    if (m->dies_at[v] == s) arena_release(&a, v);
  }
  m->arena_bytes = a.top;
  free(a.live);
  return FG_OK;
}

void fg_memplan_free(fg_memplan *m) {
  free(m->offset);
  free(m->dies_at);
  free(m->in_place);
  free(m->scratch_offset);
  memset(m, 0, sizeof *m);
}
