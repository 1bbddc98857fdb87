#include "core/compiler/pass_schedule.h"

#include <stdlib.h>
#include <string.h>

typedef struct sched_state {
  int32_t *step_of;     /* per node: the step that produces it, -1 for leaves/constants */
  int32_t *readers;     /* per node: reads not yet executed */
  int32_t *waiting;     /* per step: producing steps not yet executed */
  int32_t *waiting_plain; /* per step: those that are not remat steps */
  uint8_t *done;        /* per step */
  int32_t *remat_off, *remat_readers; /* remat step s is read by steps remat_readers[remat_off[s]
                                         .. remat_off[s + 1]) */
} sched_state;

static bool is_remat(const fg_graph *g, const fg_memplan_step *s) {
  return fg_graph_node(g, s->node)->flags & FG_NODE_REMAT;
}

/* A value computed again for the backward pass (core/compiler/pass_remat.c) is worth it only if
 * it is made when needed: remat step t runs once a step reading it waits for nothing else (or
 * for other remat steps alone), never as soon as its inputs are ready in the forward pass.  A
 * reader that is itself a remat step (a copy of a conv read by the copy of its relu) must be
 * needed too, else the pair would start in the forward pass. */
static bool needed_now(const fg_graph *g, const fg_memplan_step *steps, const sched_state *st,
                       int32_t t) {
  for (int32_t i = st->remat_off[t]; i < st->remat_off[t + 1]; i++) {
    int32_t r = st->remat_readers[i];
    if (st->waiting_plain[r] == 0 && (!is_remat(g, &steps[r]) || needed_now(g, steps, st, r)))
      return true;
  }
  return false;
}

/* The readers of each remat step (every step's reads of a remat step's node, counted then
 * placed). */
static bool index_remat_readers(const fg_graph *g, const fg_memplan_step *steps, int32_t n_steps,
                                sched_state *st) {
  st->remat_off = calloc((size_t)n_steps + 2, sizeof *st->remat_off);
  if (!st->remat_off) return false;
  int32_t total = 0;
  for (int32_t s = 0; s < n_steps; s++)
    for (int32_t k = 0; k < steps[s].n_reads; k++) {
      int32_t t = st->step_of[steps[s].reads[k]];
      if (t >= 0 && is_remat(g, &steps[t])) st->remat_off[t + 2]++, total++;
    }
  for (int32_t t = 0; t < n_steps; t++) st->remat_off[t + 2] += st->remat_off[t + 1];
  st->remat_readers = malloc(sizeof *st->remat_readers * ((size_t)total + 1));
  if (!st->remat_readers) return false;
  for (int32_t s = 0; s < n_steps; s++)
    for (int32_t k = 0; k < steps[s].n_reads; k++) {
      int32_t t = st->step_of[steps[s].reads[k]];
      if (t >= 0 && is_remat(g, &steps[t])) st->remat_readers[st->remat_off[t + 1]++] = s;
    }
  return true;
}

/* Live bytes a step adds: its output, minus the values it reads for the last time. */
static int64_t growth(const fg_graph *g, const fg_memplan_step *s, const sched_state *st,
                      const uint8_t *planned) {
  int64_t grow = planned[s->node] ? fg_node_bytes(g, s->node) : 0;
  for (int32_t k = 0; k < s->n_reads; k++) {
    fg_node r = s->reads[k];
    int32_t here = 0;
    for (int32_t j = 0; j < s->n_reads; j++) here += s->reads[j] == r;
    bool first_mention = true;
    for (int32_t j = 0; j < k; j++) first_mention &= s->reads[j] != r;
    if (planned[r] && first_mention && st->readers[r] == here) grow -= fg_node_bytes(g, r);
  }
  return grow;
}

static void finish_step(const fg_graph *g, const fg_memplan_step *steps, int32_t n_steps, int32_t s,
                        sched_state *st) {
  st->done[s] = 1;
  bool plain = !is_remat(g, &steps[s]);
  for (int32_t k = 0; k < steps[s].n_reads; k++) st->readers[steps[s].reads[k]]--;
  for (int32_t t = 0; t < n_steps; t++) /* steps waiting on this one */
    if (!st->done[t])
      for (int32_t k = 0; k < steps[t].n_reads; k++)
        if (steps[t].reads[k] == steps[s].node) st->waiting[t]--, st->waiting_plain[t] -= plain;
}

/* The ready step adding the fewest live bytes; remat steps only when needed unless `any`. */
static int32_t pick(const fg_graph *g, const fg_memplan_step *steps, int32_t n_steps,
                    const sched_state *st, const uint8_t *planned, bool any) {
  int32_t best = -1;
  int64_t best_growth = 0;
  for (int32_t t = 0; t < n_steps; t++) {
    if (st->done[t] || st->waiting[t] > 0) continue;
    if (!any && is_remat(g, &steps[t]) && !needed_now(g, steps, st, t)) continue;
    int64_t gr = growth(g, &steps[t], st, planned);
    if (best < 0 || gr < best_growth) best = t, best_growth = gr;
  }
  return best;
}

fg_status fg_schedule_steps(const fg_graph *g, int32_t n_steps, fg_memplan_step *steps,
                            const uint8_t *planned, fg_err *e) {
  int32_t n = fg_graph_node_count(g);
  sched_state st = {.step_of = malloc(sizeof(int32_t) * ((size_t)n + 1)),
                    .readers = calloc((size_t)n + 1, sizeof(int32_t)),
                    .waiting = calloc((size_t)n_steps + 1, sizeof(int32_t)),
                    .waiting_plain = calloc((size_t)n_steps + 1, sizeof(int32_t)),
                    .done = calloc((size_t)n_steps + 1, 1)};
  fg_memplan_step *order = malloc(sizeof *order * ((size_t)n_steps + 1));
  fg_status status = FG_OK;
  if (!st.step_of || !st.readers || !st.waiting || !st.waiting_plain || !st.done || !order) {
    status = fg_err_set(e, FG_E_NOMEM, "schedule: out of memory");
    goto out;
  }
  for (fg_node i = 0; i < n; i++) st.step_of[i] = -1;
  for (int32_t s = 0; s < n_steps; s++) st.step_of[steps[s].node] = s;
  for (int32_t s = 0; s < n_steps; s++)
    for (int32_t k = 0; k < steps[s].n_reads; k++) {
      int32_t t = st.step_of[steps[s].reads[k]];
      st.readers[steps[s].reads[k]]++;
      st.waiting[s] += t >= 0;
      st.waiting_plain[s] += t >= 0 && !is_remat(g, &steps[t]);
    }
  if (!index_remat_readers(g, steps, n_steps, &st)) {
    status = fg_err_set(e, FG_E_NOMEM, "schedule: out of memory");
    goto out;
  }
  for (int32_t i = 0; i < n_steps; i++) {
    int32_t s = pick(g, steps, n_steps, &st, planned, false);
    if (s < 0) s = pick(g, steps, n_steps, &st, planned, true); /* cannot happen: a safeguard */
    if (s < 0) {
      status = fg_err_set(e, FG_E_INTERNAL, "schedule: no step is ready (a cycle?)");
      goto out;
    }
    order[i] = steps[s];
    finish_step(g, steps, n_steps, s, &st);
  }
  memcpy(steps, order, sizeof *steps * (size_t)n_steps);
out:
  free(st.step_of), free(st.readers), free(st.waiting), free(st.waiting_plain), free(st.done);
  free(st.remat_off), free(st.remat_readers), free(order);
  return status;
}
