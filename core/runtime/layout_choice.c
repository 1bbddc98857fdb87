/* Which kernels the layout plan (layout_plan.c) is made for: the ones timed node by node, or,
 * where it pays, implementations that take blocked operands.
 *
 * Each node's kernel is timed on row-major operands (kernel_choice.c), where a oneDNN
 * convolution pays reorders in and out of its blocked layout.  The plan then removes the
 * reorders between such convolutions, but only where every step touching a value takes it
 * blocked: a native kernel chosen at one end of a chain (the first and last convolutions of
 * RealNVP's and Glow's coupling networks, with 2 to 8 channels on one side) keeps the chain's
 * activations row-major, and what that costs shows in the other nodes' times, never in its own.
 * So the choice is also made for the program as a whole, by the measured time of the nodes
 * under the layouts the plan would give them:
 *  1. the alternative: on every node whose rule is `auto`, the implementation that takes some
 *     of its blockable operands blocked (fg__kernel_alternative) in place of the timed one;
 *  2. one node at a time, in step order, the alternative goes back to the timed kernel where
 *     that lowers the time of the nodes it changes (itself, and those whose operands the plan
 *     then keeps in another layout);
 *  3. what is left is taken when the nodes where it differs from the timed kernels (in kernel
 *     or in layouts) total under (100 - PLAN_WIN_PCT) % of those nodes' time with the timed
 *     kernels.
 * Every (node, kernel, layouts) is timed once, in rounds with the kernel it is compared with,
 * as node choices are; nodes with equal keys (a model's repeated layers) share their timings.
 * The outcome (which alternatives are kept) is remembered with the node choices (process memory
 * and the kernel cache file), keyed by a hash of the nodes with alternatives, so later
 * processes make the same one: results of different kernels differ in the last bits. */
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "core/runtime/cpu_load.h"
#include "core/runtime/program_internal.h"
#include "core/vec.h"

enum {
  PLAN_WIN_PCT = 3,   /* totals over many nodes timed in rounds: steadier than one node's time */
  CONTENDED_PCT = 15, /* other work's share of the CPU time while timing: too much to trust it */
  BITS_PER_LINE = 30, /* alternatives' outcomes per remembered value (a non-negative int) */
};

/* The time of one node under one kernel and operand layouts. */
typedef struct side_time {
  uint64_t key;
  double secs;
} side_time;

typedef struct plan_choice {
  fg_program *p;
  fg_kernel_choice *alt; /* per step: the alternative (impl NULL: none) */
  fg_kernel_choice *cur; /* per step: the kernels being weighed (shallow copies) */
  fg_kernel_choice *trial; /* cur with one step changed (shallow copies) */
  uint32_t *mask[3];     /* per step: the plan's masks for the timed kernels, cur, a trial */
  side_time *times;
  int64_t n_times, cap_times;
} plan_choice;

static uint64_t side_key(const plan_choice *pc, int32_t s, const fg_kernel_choice *k,
                         uint32_t mask) {
  const fg_program *p = pc->p;
  uint64_t parts[3] = {fg__kernel_node_hash(p->g, p->steps[s].node, p->step_parts[s]),
                       (uint64_t)(uintptr_t)k->impl, mask};
  return XXH3_64bits(parts, sizeof parts);
}

static bool known(const plan_choice *pc, uint64_t key, double *secs) {
  for (int64_t i = 0; i < pc->n_times; i++)
    if (pc->times[i].key == key) return *secs = pc->times[i].secs, true;
  return false;
}

/* secs[i] for step s under kernel k[i] with operand masks m[i] (i < 2): the ones not timed yet
 * are timed together, in rounds. */
static fg_status time_sides(plan_choice *pc, int32_t s, const fg_kernel_choice *const k[2],
                            const uint32_t m[2], double secs[2], fg_err *e) {
  fg_program *p = pc->p;
  const fg_kernel_choice *todo[2];
  uint32_t todo_mask[2];
  uint64_t key[2];
  int n = 0, at[2];
  for (int i = 0; i < 2; i++) {
    key[i] = side_key(pc, s, k[i], m[i]);
    if (!known(pc, key[i], &secs[i]) && (i == 0 || key[1] != key[0]))
      at[n] = i, todo[n] = k[i], todo_mask[n++] = m[i];
  }
  double measured[2];
  fg_status st = n ? fg__kernel_time(todo, todo_mask, n, p->g, p->steps[s].node, p->step_parts[s],
                                     p->pool, measured, e)
                   : FG_OK;
  for (int j = 0; st == FG_OK && j < n; j++) {
    if (!FG_VEC_RESERVE(pc->times, pc->cap_times, pc->n_times + 1))
      return fg_err_set(e, FG_E_NOMEM, "program: out of memory timing kernels");
    pc->times[pc->n_times++] = (side_time){key[at[j]], measured[j]};
    secs[at[j]] = measured[j];
  }
  if (st == FG_OK && key[1] == key[0]) secs[1] = secs[0];
  return st;
}

/* Each side's total time over the nodes where kernels a with masks ma and kernels b with mb
 * differ (in kernel or in the layouts of its operands). */
static fg_status compare(plan_choice *pc, const fg_kernel_choice *a, const uint32_t *ma,
                         const fg_kernel_choice *b, const uint32_t *mb, double total[2],
                         fg_err *e) {
  total[0] = total[1] = 0;
  fg_status st = FG_OK;
  for (int32_t s = 0; st == FG_OK && s < pc->p->n_steps; s++) {
    if (a[s].impl == b[s].impl && ma[s] == mb[s]) continue;
    const fg_kernel_choice *k[2] = {&a[s], &b[s]};
    uint32_t m[2] = {ma[s], mb[s]};
    double secs[2];
    st = time_sides(pc, s, k, m, secs, e);
    total[0] += secs[0], total[1] += secs[1];
  }
  return st;
}

/* Steps 2 and 3 of the top of the file: into keep[s], for each step with an alternative.
 * pc->cur starts as the alternative; pc->trial is pc->cur with one step sent back. */
static fg_status weigh(plan_choice *pc, bool *keep, fg_err *e) {
  fg_program *p = pc->p;
  double timed[2], trial[2];
  fg_status st = fg__layout_masks(p, p->kernels, pc->mask[0], e);
  if (st == FG_OK) st = fg__layout_masks(p, pc->cur, pc->mask[1], e);
  if (st == FG_OK) st = compare(pc, p->kernels, pc->mask[0], pc->cur, pc->mask[1], timed, e);
  double gain = timed[0] - timed[1];
  memcpy(pc->trial, pc->cur, sizeof *pc->trial * (size_t)p->n_steps);
  for (int32_t s = 0; st == FG_OK && s < p->n_steps; s++) { /* back one at a time */
    if (!pc->alt[s].impl) continue;
    pc->trial[s] = p->kernels[s];
    st = fg__layout_masks(p, pc->trial, pc->mask[2], e);
    if (st == FG_OK) st = compare(pc, pc->cur, pc->mask[1], pc->trial, pc->mask[2], trial, e);
    if (st == FG_OK && trial[1] < trial[0]) { /* faster back: the trial is the current plan */
      gain += trial[0] - trial[1], pc->cur[s] = pc->trial[s];
      uint32_t *t = pc->mask[1];
      pc->mask[1] = pc->mask[2], pc->mask[2] = t;
    }
    pc->trial[s] = pc->cur[s];
  }
  bool wins = st == FG_OK && gain * 100 > timed[0] * PLAN_WIN_PCT;
  for (int32_t s = 0; s < p->n_steps; s++)
    keep[s] = wins && pc->alt[s].impl && pc->cur[s].impl == pc->alt[s].impl;
  return st;
}

/* weigh, refusing every alternative when other work took more than CONTENDED_PCT % of the
 * machine's CPU time while the sides were timed (cpu_load.h).  The outcome is remembered in the
 * kernel cache and binds every later process, so one decided under load would stay the
 * load's.  (The stale decisions seen so far, blocked layouts that cost Glow K=8 12-30 % on the
 * quiet machine, came from files a CI job wrote while it shared the machine; at least the
 * latest was timed under another OpenBLAS core, which kernel_cache.c now keys the file by.)
 * On "AMD EPYC" (2 cores) with two processes spinning on the two cores, Glow K=8's layout
 * timings saw 36-53 % of the machine's time go to them; on the quiet machine 0 %.  The timed kernels are the safe side: a
 * refusal costs at most the gain the alternative would have given. */
static fg_status weigh_quietly(plan_choice *pc, bool *keep, fg_err *e) {
  fg_cpu_sample before, after;
  fg__cpu_sample(&before);
  fg_status st = weigh(pc, keep, e);
  fg__cpu_sample(&after);
  if (fg__cpu_others_share(&before, &after) * 100 > CONTENDED_PCT)
    for (int32_t s = 0; s < pc->p->n_steps; s++) keep[s] = false;
  return st;
}

/* The key of the outcome's line `line`: a tag, a hash of every step with an alternative (its
 * node key and the alternative's name), the line's number.  The timed kernels are not in it:
 * they are remembered under these node keys already, so the same nodes decide the same. */
static size_t outcome_key(const plan_choice *pc, uint32_t line, unsigned char *key) {
  const fg_program *p = pc->p;
  XXH3_state_t *h = XXH3_createState();
  uint64_t digest = 0;
  if (h && XXH3_64bits_reset(h) == XXH_OK) {
    for (int32_t s = 0; s < p->n_steps; s++) {
      if (!pc->alt[s].impl) continue;
      uint64_t node = fg__kernel_node_hash(p->g, p->steps[s].node, p->step_parts[s]);
      XXH3_64bits_update(h, &node, sizeof node);
      XXH3_64bits_update(h, pc->alt[s].impl->name, strlen(pc->alt[s].impl->name) + 1);
    }
    digest = XXH3_64bits_digest(h);
  }
  XXH3_freeState(h);
  static const char tag[] = "layout plan v1";
  memcpy(key, tag, sizeof tag);
  memcpy(key + sizeof tag, &digest, sizeof digest);
  memcpy(key + sizeof tag + sizeof digest, &line, sizeof line);
  return sizeof tag + sizeof digest + sizeof line;
}

/* The outcome as remembered: the k-th step with an alternative is bit k % BITS_PER_LINE of the
 * value of line k / BITS_PER_LINE.  Into keep[]; false when a line is not known. */
static bool recall_outcome(const plan_choice *pc, bool *keep) {
  unsigned char key[64];
  int k = 0, value = 0;
  for (int32_t s = 0; s < pc->p->n_steps; s++) {
    if (!pc->alt[s].impl) continue;
    if (k % BITS_PER_LINE == 0 &&
        (value = fg__kernel_recall(key, outcome_key(pc, (uint32_t)(k / BITS_PER_LINE), key))) < 0)
      return false;
    keep[s] = value >> (k++ % BITS_PER_LINE) & 1;
  }
  return true;
}

static void remember_outcome(const plan_choice *pc, const bool *keep) {
  unsigned char key[64];
  int k = 0, value = 0;
  for (int32_t s = 0; s < pc->p->n_steps; s++) {
    if (!pc->alt[s].impl) continue;
    value |= keep[s] ? 1 << (k % BITS_PER_LINE) : 0;
    if (++k % BITS_PER_LINE == 0)
      fg__kernel_remember(key, outcome_key(pc, (uint32_t)(k / BITS_PER_LINE - 1), key), value),
          value = 0;
  }
  if (k % BITS_PER_LINE)
    fg__kernel_remember(key, outcome_key(pc, (uint32_t)(k / BITS_PER_LINE), key), value);
}

/* The alternatives, into pc->alt; false when no step has one. */
static bool find_alternatives(plan_choice *pc, const fg_kernel_rules *rules,
                              const uint32_t *blockable) {
  fg_program *p = pc->p;
  bool any = false;
  for (int32_t s = 0; s < p->n_steps; s++) {
    fg_node n = p->steps[s].node;
    if (p->fusion.group_of[n] >= 0 || rules->mode[fg_node_op(p->g, n)] != KRULE_AUTO) continue;
    if (p->kernels[s].impl && (p->kernels[s].prep.blocked_ok & blockable[s]))
      continue; /* it takes blocked operands already */
    any |= fg__kernel_alternative(&pc->alt[s], p->g, n, p->step_parts[s], blockable[s],
                                  p->kernels[s].impl);
  }
  return any;
}

static void plan_choice_free(plan_choice *pc) {
  for (int32_t s = 0; pc->alt && s < pc->p->n_steps; s++) fg__kernel_choice_release(&pc->alt[s]);
  free(pc->alt), free(pc->cur), free(pc->trial), free(pc->times);
  for (int i = 0; i < 3; i++) free(pc->mask[i]);
}

fg_status fg__program_choose_for_layouts(fg_program *p, const fg_kernel_rules *rules, fg_err *e) {
  size_t n = (size_t)p->n_steps + 1;
  plan_choice pc = {.p = p, .alt = calloc(n, sizeof *pc.alt), .cur = calloc(n, sizeof *pc.cur),
                    .trial = calloc(n, sizeof *pc.trial)};
  for (int i = 0; i < 3; i++) pc.mask[i] = calloc(n, sizeof *pc.mask[i]);
  uint32_t *blockable = fg__layout_blockable(p);
  bool *keep = calloc(n, sizeof *keep);
  fg_status st = FG_OK;
  if (!pc.alt || !pc.cur || !pc.trial || !pc.mask[0] || !pc.mask[1] || !pc.mask[2] ||
      !blockable || !keep)
    st = fg_err_set(e, FG_E_NOMEM, "program: out of memory choosing kernels for layouts");
  if (st == FG_OK && find_alternatives(&pc, rules, blockable)) {
    for (int32_t s = 0; s < p->n_steps; s++) /* shallow: the states stay the sides' own */
      pc.cur[s] = pc.alt[s].impl ? pc.alt[s] : p->kernels[s];
    if (!recall_outcome(&pc, keep) && (st = weigh_quietly(&pc, keep, e)) == FG_OK)
      remember_outcome(&pc, keep);
    for (int32_t s = 0; st == FG_OK && s < p->n_steps; s++)
      if (keep[s]) { /* the alternative replaces the timed kernel */
        fg__kernel_choice_release(&p->kernels[s]);
        p->kernels[s] = pc.alt[s];
        memset(&pc.alt[s], 0, sizeof pc.alt[s]);
      }
  }
  free(blockable), free(keep);
  plan_choice_free(&pc);
  return st;
}
