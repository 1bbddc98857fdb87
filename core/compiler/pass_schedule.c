#include "core/compiler/pass_schedule.h"

#include <stdlib.h>
#include <string.h>

typedef struct sched_state {
  int32_t *step_of;     /* per node: the step that produces it, -1 for leaves/constants */
  int32_t *readers;     /* per node: reads not yet executed */
  int32_t *waiting;     /* per step: producing steps not yet executed */
  uint8_t *done;        /* per step */
} sched_state;

static int64_t value_bytes(const fg_graph *g, fg_node n) {
  fg_shape s = fg_node_shape(g, n);
  return fg_shape_count(&s) * (int64_t)fg_dtype_size(fg_node_dtype(g, n));
}

/* Live bytes a step adds: its output, minus the values it reads for the last time. */
static int64_t growth(const fg_graph *g, const fg_memplan_step *s, const sched_state *st,
                      const uint8_t *planned) {
  int64_t grow = planned[s->node] ? value_bytes(g, s->node) : 0;
  for (int32_t k = 0; k < s->n_reads; k++) {
    fg_node r = s->reads[k];
    int32_t here = 0;
    for (int32_t j = 0; j < s->n_reads; j++) here += s->reads[j] == r;
    bool first_mention = true;
    for (int32_t j = 0; j < k; j++) first_mention &= s->reads[j] != r;
    if (planned[r] && first_mention && st->readers[r] == here) grow -= value_bytes(g, r);
  }
  return grow;
}

static void finish_step(const fg_memplan_step *steps, int32_t n_steps, int32_t s, sched_state *st) {
  st->done[s] = 1;
  for (int32_t k = 0; k < steps[s].n_reads; k++) st->readers[steps[s].reads[k]]--;
  for (int32_t t = 0; t < n_steps; t++) /* steps waiting on this one */
    if (!st->done[t])
      for (int32_t k = 0; k < steps[t].n_reads; k++)
        if (steps[t].reads[k] == steps[s].node) st->waiting[t]--;
}

static int32_t pick(const fg_graph *g, const fg_memplan_step *steps, int32_t n_steps,
                    const sched_state *st, const uint8_t *planned) {
  int32_t best = -1;
  int64_t best_growth = 0;
  for (int32_t t = 0; t < n_steps; t++) {
    if (st->done[t] || st->waiting[t] > 0) continue;
    int64_t gr = growth(g, &steps[t], st, planned);
    if (best < 0 || gr < best_growth) best = t, best_growth = gr;
  }
  return best;
}

fg_status fg_schedule_steps(const fg_graph *g, int32_t n_steps, fg_memplan_step *steps,
                            const uint8_t *planned, fg_err *e) {
  int32_t n = fg_graph_node_count(g);
  sched_state st = {malloc(sizeof(int32_t) * ((size_t)n + 1)),
                    calloc((size_t)n + 1, sizeof(int32_t)),
                    calloc((size_t)n_steps + 1, sizeof(int32_t)), calloc((size_t)n_steps + 1, 1)};
  fg_memplan_step *order = malloc(sizeof *order * ((size_t)n_steps + 1));
  fg_status status = FG_OK;
  if (!st.step_of || !st.readers || !st.waiting || !st.done || !order) {
    status = fg_err_set(e, FG_E_NOMEM, "schedule: out of memory");
    goto out;
  }
  for (fg_node i = 0; i < n; i++) st.step_of[i] = -1;
  for (int32_t s = 0; s < n_steps; s++) st.step_of[steps[s].node] = s;
  for (int32_t s = 0; s < n_steps; s++)
    for (int32_t k = 0; k < steps[s].n_reads; k++) {
      st.readers[steps[s].reads[k]]++;
      if (st.step_of[steps[s].reads[k]] >= 0) st.waiting[s]++;
    }
  for (int32_t i = 0; i < n_steps; i++) {
    int32_t s = pick(g, steps, n_steps, &st, planned);
    if (s < 0) {
      status = fg_err_set(e, FG_E_INTERNAL, "schedule: no step is ready (a cycle?)");
      goto out;
    }
    order[i] = steps[s];
    finish_step(steps, n_steps, s, &st);
  }
  memcpy(steps, order, sizeof *steps * (size_t)n_steps);
out:
  free(st.step_of), free(st.readers), free(st.waiting), free(st.done), free(order);
  return status;
}
