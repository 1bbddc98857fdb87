/* Internal to core/runtime/: the program as the runtime's files share it.  program.c makes,
 * binds and frees programs and hands out outputs; compile.c plans them (passes, fusion groups,
 * steps, schedule, memory); execute.c runs the steps and the fused groups; profile.c keeps and
 * prints the time per op. */
#ifndef FG_PROGRAM_INTERNAL_H
#define FG_PROGRAM_INTERNAL_H

#include "core/compiler/pass_fuse.h"
#include "core/compiler/pass_memplan.h"
#include "core/ir/op.h"
#include "core/runtime/kernel_choice.h"
#include "core/runtime/program.h"

enum {
  FUSE_TILE = 4096,   /* elements per tile of a fused loop: members' tiles stay in L2, and a
                       * tile is long enough that calling each member's kernel costs little
                       * (shorter tiles made the relu-gradient mask markedly slower) */
  FUSE_MAX_PARTS = 16,
};

struct fg_program {
  const fg_graph *src;
  fg_graph *g;          /* compiled graph, owned */
  int n_out;
  fg_node *outs;        /* in g */
  int32_t n_steps;
  fg_memplan_step *steps;
  fg_kernel_choice *kernels; /* per step: the implementation it runs (kernel_choice.h) */
  int *step_parts;           /* per step: how many parts the executor splits it into */
  uint32_t *step_blocked;    /* per step: its operands in the blocked layout (layout_plan.c) */
  void **step_scratch;       /* per step: its kernel's scratch when memory is not planned */
  fg_node *reads;       /* storage behind steps[].reads */
  int32_t *poison_off;  /* per step s: poison_ids[poison_off[s] .. poison_off[s+1]) */
  fg_node *poison_ids;
  fg_fusion fusion;
  fg_memplan plan;
  fg_buffer *arena;
  fg_tensor **value;    /* per node of g */
  int32_t n_leaves;
  fg_node *leaves;
  fg_pool *pool;
  bool own_pool, poison;
  void *scratch;        /* fused tiles: FUSE_MAX_PARTS x max members x FUSE_TILE doubles */
  size_t scratch_part_bytes;
  uint64_t rng_offset;
  bool profile;
  double prof_ms[FG_OP_COUNT + 1]; /* per op id; the last slot is fused groups */
  int64_t prof_calls[FG_OP_COUNT + 1];
  int64_t prof_runs;      /* runs in the tables */
  bool prof_first_dropped; /* the first run is not among them (profile.c) */
  double *prof_step_ms; /* per step, for the breakdown by op and shapes */
  int prof_rows;        /* rows of that breakdown */
  fg_program_stats stats;
};

/* compile.c: plans p (whose src, n_out, outs storage and options are set) for outs, with the
 * options resolved from the environment.  On failure p holds what was made so far, for
 * fg_program_free. */
fg_status fg__program_compile(fg_program *p, fg_graph *g, const fg_node *outs,
                              const fg_program_opts *o, fg_err *e);

/* layout_plan.c: which values stay in the blocked layout (all row-major unless enabled), into
 * p->step_blocked and p->stats.n_blocked, after the kernels are chosen and before the memory
 * plan; fails only when out of memory. */
fg_status fg__program_plan_layouts(fg_program *p, bool enabled, fg_err *e);
/* layout_plan.c: per step, the operands (bits as fg_kargs.blocked) the plan could keep blocked
 * by their shapes and origin; NULL when out of memory.  And the plan's operand masks per step
 * if the steps ran `kernels` (p->kernels untouched); fails only when out of memory. */
uint32_t *fg__layout_blockable(const fg_program *p);
fg_status fg__layout_masks(fg_program *p, const fg_kernel_choice *kernels, uint32_t *masks,
                           fg_err *e);
/* layout_choice.c: the kernels the plan is made for (see there); `rules` as FG_KERNELS says. */
fg_status fg__program_choose_for_layouts(fg_program *p, const fg_kernel_rules *rules, fg_err *e);

/* execute.c: the executor's part count for node n of g (by its shapes alone, and for a
 * split-free op at most n_threads), and for a fused group (by its shape, and fewer elements
 * per part when a member calls libm per element). */
int fg__program_parts_for(const fg_graph *g, fg_node n, int n_threads);
int fg__program_group_parts(const fg_program *p, int32_t group);

/* profile.c */
/* The monotonic clock in milliseconds. */
double fg__program_now_ms(void);
/* Rows of the profile's breakdown by op and shapes: FG_PROFILE=N for N > 1, else 15. */
int fg__program_profile_rows(void);
/* Adds ms to step s's time, and to its op's (fused groups count as one slot). */
void fg__program_profile_step(fg_program *p, int32_t s, double ms);
/* Called as a run starts: the second run forgets the first one's times (see profile.c). */
void fg__program_profile_run_start(fg_program *p);

#endif
