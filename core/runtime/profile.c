/* Profiling a program (fg_program_opts.profile or FG_PROFILE): the time of every step, summed
 * by op family and by step, and the two tables fg_program_profile prints from them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/runtime/program_internal.h"

double fg__program_now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

int fg__program_profile_rows(void) {
  const char *v = getenv("FG_PROFILE");
  long n = v ? strtol(v, NULL, 10) : 0;
  return n > 1 && n < 100000 ? (int)n : 15;
}

void fg__program_profile_step(fg_program *p, int32_t s, double ms) {
  fg_node n = p->steps[s].node;
  int slot = p->fusion.group_of[n] >= 0 ? FG_OP_COUNT : fg_node_op(p->g, n);
  p->prof_ms[slot] += ms;
  p->prof_step_ms[s] += ms;
  p->prof_calls[slot]++;
}

/* A program's first run pays once for what later runs reuse: the arena's pages are faulted in
 * and kernels are JIT-compiled.  Spread over the runs, that shows as a slower op: a one-conv
 * program's 256->256 1x1 conv at 14x14 averaged 5.9 ms over 41 runs against a median of 4.2,
 * and in Glow K=16's training (5 warm-up and 4 timed steps) the profile read 6.2 ms a call for
 * those convs with the first run, 4.8 without (AMD EPYC, 2 cores).  So once a second run
 * starts the tables drop the first (a program run once keeps it). */
void fg__program_profile_run_start(fg_program *p) {
  if (p->prof_runs != 1 || p->prof_first_dropped) return;
  memset(p->prof_ms, 0, sizeof p->prof_ms);
  memset(p->prof_calls, 0, sizeof p->prof_calls);
  memset(p->prof_step_ms, 0, sizeof *p->prof_step_ms * (size_t)p->n_steps);
  p->prof_runs = 0;
  p->prof_first_dropped = true;
}

/* "op[/implementation] [in shapes] -> [out shape]" of step s (fused groups by their last node). */
static void step_label(const fg_program *p, int32_t s, char *buf, size_t cap) {
  fg_node n = p->steps[s].node;
  bool fused = p->fusion.group_of[n] >= 0;
  char sh[96];
  const char *op = fused ? "fused" : fg_op_get(fg_node_op(p->g, n))->name;
  size_t used = (size_t)snprintf(buf, cap, "%s", op);
  if (!fused && p->kernels && fg_op_get(fg_node_op(p->g, n))->n_impls) /* "conv2d/onednn" */
    used += (size_t)snprintf(buf + used, cap - used, "/%s",
                             p->kernels[s].impl ? p->kernels[s].impl->name : "native");
  for (int i = 0; !fused && i < fg_node_num_inputs(p->g, n) && used < cap; i++) {
    fg_shape is = fg_node_shape(p->g, fg_node_input(p->g, n, i));
    used += (size_t)snprintf(buf + used, cap - used, " %s", fg_shape_str(&is, sh, sizeof sh));
  }
  fg_shape os = fg_node_shape(p->g, n);
  if (used < cap) snprintf(buf + used, cap - used, " -> %s", fg_shape_str(&os, sh, sizeof sh));
}

/* A table's rows: an amount (ms, bytes) and a count per label. */
typedef struct tally_row {
  char label[240];
  double amount;
  int count;
} tally_row;

/* Adds amount to label's row of rows[0 .. *n), making it if new (rows has room for one more). */
static void tally_add(tally_row *rows, int *n, const char *label, double amount) {
  int r = 0;
  while (r < *n && strcmp(rows[r].label, label) != 0) r++;
  if (r == *n) snprintf(rows[(*n)++].label, sizeof rows->label, "%s", label);
  rows[r].amount += amount;
  rows[r].count++;
}

/* Moves the largest of rows[k .. n) to k: the tables print their largest rows in order. */
static const tally_row *tally_next(tally_row *rows, int n, int k) {
  int best = k;
  for (int r = k + 1; r < n; r++)
    if (rows[r].amount > rows[best].amount) best = r;
  tally_row t = rows[k];
  rows[k] = rows[best];
  rows[best] = t;
  return &rows[k];
}

/* The second table: steps grouped by op and shapes, the p->prof_rows costliest. */
static size_t profile_by_shape(const fg_program *p, double total, char *buf, size_t cap) {
  tally_row *rows = calloc((size_t)p->n_steps + 1, sizeof *rows);
  if (!rows) return 0;
  int n_rows = 0;
  for (int32_t s = 0; s < p->n_steps; s++) {
    char label[240];
    step_label(p, s, label, sizeof label);
    tally_add(rows, &n_rows, label, p->prof_step_ms[s]);
  }
  double runs = p->prof_runs ? (double)p->prof_runs : 1;
  size_t used = (size_t)snprintf(buf, cap, "\n%-100s %9s %6s %7s\n", "costliest op and shapes",
                                 "ms/run", "count", "share");
  for (int k = 0; k < p->prof_rows && k < n_rows && used < cap; k++) {
    const tally_row *r = tally_next(rows, n_rows, k);
    used += (size_t)snprintf(buf + used, cap - used, "%-100.100s %9.3f %6d %6.1f%%\n", r->label,
                             r->amount / runs, r->count, total > 0 ? 100 * r->amount / total : 0);
  }
  free(rows);
  return used;
}

/* The step with the most planned bytes alive, or -1; its bytes in *peak.  A value is alive from
 * the step that makes it to the one after which it is free (one that reuses its input's range
 * in place is not counted again). */
static int32_t peak_step(const fg_program *p, const int32_t *born, int64_t *peak) {
  int32_t n = fg_graph_node_count(p->g), best = -1;
  int64_t *delta = calloc((size_t)p->n_steps + 2, sizeof *delta);
  if (!delta) return -1;
  for (fg_node v = 0; v < n; v++)
    if (p->plan.offset[v] >= 0 && born[v] >= 0 && !p->plan.in_place[v]) {
      int32_t end = p->plan.dies_at[v] < 0 ? p->n_steps : p->plan.dies_at[v] + 1;
      delta[born[v]] += fg_node_bytes(p->g, v), delta[end] -= fg_node_bytes(p->g, v);
    }
  int64_t live = 0;
  *peak = 0;
  for (int32_t s = 0; s < p->n_steps; s++)
    if ((live += delta[s]) > *peak) *peak = live, best = s;
  free(delta);
  return best;
}

/* The third table: the values alive at the peak, by op, shape and whether they were computed
 * for the gradient, largest total first. */
static size_t memory_at_peak(const fg_program *p, char *buf, size_t cap) {
  int32_t n = fg_graph_node_count(p->g), at = -1;
  int n_rows = 0;
  int32_t *born = malloc(sizeof *born * ((size_t)n + 1));
  tally_row *rows = calloc((size_t)n + 1, sizeof *rows);
  int64_t peak = 0;
  if (born && rows) {
    for (fg_node v = 0; v < n; v++) born[v] = -1;
    for (int32_t s = 0; s < p->n_steps; s++) born[p->steps[s].node] = s;
    at = peak_step(p, born, &peak);
  }
  for (fg_node v = 0; at >= 0 && v < n; v++) {
    if (p->plan.offset[v] < 0 || born[v] < 0 || p->plan.in_place[v] || born[v] > at ||
        (p->plan.dies_at[v] >= 0 && p->plan.dies_at[v] < at))
      continue;
    char label[200], sh[96];
    fg_shape vs = fg_node_shape(p->g, v);
    snprintf(label, sizeof label, "%s %s%s", fg_op_get(fg_node_op(p->g, v))->name,
             fg_shape_str(&vs, sh, sizeof sh),
             fg_graph_node(p->g, v)->flags & FG_NODE_GRAD ? " (gradient)" : "");
    tally_add(rows, &n_rows, label, (double)fg_node_bytes(p->g, v));
  }
  size_t used = 0;
  if (at >= 0)
    used = (size_t)snprintf(buf, cap,
                            "\nmemory: %.1f MiB of values alive at step %d of %d (arena "
                            "%.1f MiB); the largest there\n%-80s %6s %9s\n",
                            (double)peak / 1048576, at + 1, p->n_steps,
                            (double)p->plan.arena_bytes / 1048576, "op and shape", "count", "MiB");
  for (int k = 0; k < p->prof_rows && k < n_rows && used < cap; k++) {
    const tally_row *r = tally_next(rows, n_rows, k);
    used += (size_t)snprintf(buf + used, cap - used, "%-80.80s %6d %9.1f\n", r->label, r->count,
                             r->amount / 1048576);
  }
  free(born), free(rows);
  return used;
}

const char *fg_program_profile(const fg_program *p, char *buf, size_t cap) {
  if (!buf || !cap) return buf;
  buf[0] = '\0';
  if (!p || !p->profile) {
    snprintf(buf, cap, "profiling is off (fg_program_opts.profile or FG_PROFILE=1)\n");
    return buf;
  }
  double total = 0;
  for (int i = 0; i <= FG_OP_COUNT; i++) total += p->prof_ms[i];
  size_t used = (size_t)snprintf(buf, cap, "over %lld run%s%s\n", (long long)p->prof_runs,
                                 p->prof_runs == 1 ? "" : "s",
                                 p->prof_first_dropped ? " after the first" : "");
  if (used < cap)
    used += (size_t)snprintf(buf + used, cap - used, "%-20s %10s %8s %10s %7s\n", "op",
                             "ms/run", "calls", "us/call", "share");
  bool shown[FG_OP_COUNT + 1] = {0};
  for (;;) { /* most expensive first */
    int best = -1;
    for (int i = 0; i <= FG_OP_COUNT; i++)
      if (!shown[i] && p->prof_calls[i] && (best < 0 || p->prof_ms[i] > p->prof_ms[best])) best = i;
    if (best < 0 || used >= cap) break;
    shown[best] = true;
    double runs = p->prof_runs ? (double)p->prof_runs : 1;
    used += (size_t)snprintf(buf + used, cap - used, "%-20s %10.3f %8.0f %10.1f %6.1f%%\n",
                             best == FG_OP_COUNT ? "fused elementwise" : fg_op_get(best)->name,
                             p->prof_ms[best] / runs, (double)p->prof_calls[best] / runs,
                             1e3 * p->prof_ms[best] / (double)p->prof_calls[best],
                             total > 0 ? 100 * p->prof_ms[best] / total : 0);
  }
  if (used < cap && p->prof_runs > 0) used += profile_by_shape(p, total, buf + used, cap - used);
  if (used < cap && p->plan.offset) used += memory_at_peak(p, buf + used, cap - used);
  if (used < cap)
    snprintf(buf + used, cap - used,
             "\nvalues kept in oneDNN's blocked layout between kernels: %d\n",
             (int)p->stats.n_blocked);
  return buf;
}
