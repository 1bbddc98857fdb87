/* Compiling a program: a copy of the needed part of the graph goes through
 *   the graph passes (core/compiler/passes.c) -> fusion groups (core/compiler/pass_fuse.c) ->
 *   steps in id order -> each step's implementation (core/runtime/kernel_choice.c: a kernel
 *   library's primitives are made here) -> the values kept in a blocked layout between them
 *   (core/runtime/layout_plan.c) -> an order that keeps peak live bytes low
 *   (core/compiler/pass_schedule.c) -> the memory plan (core/compiler/pass_memplan.c, with the
 *   kernels' scratch) -> one arena and every value's tensor,
 * all allocated here, once, so that running allocates nothing. */
#include <stdlib.h>
#include <string.h>

#include "core/compiler/pass_schedule.h"
#include "core/runtime/program_internal.h"

/* An op a pass makes in another's place follows the rule given for that one, where its own is
 * auto: conv2d_weight_bias_grad computes a conv2d_weight_grad, so FG_KERNELS=
 * conv2d_weight_grad=gemm runs the weight gradients on the GEMM path after the bias_grad pass
 * too (an implementation of the same name; the two ops list the same ones). */
static void follow_rule(fg_kernel_rules *r, int made, int from) {
  if (r->mode[made] != KRULE_AUTO || r->mode[from] == KRULE_AUTO) return;
  const fg_op_def *d = fg_op_get(made), *f = fg_op_get(from);
  if (r->mode[from] == KRULE_NATIVE) r->mode[made] = KRULE_NATIVE;
  for (int i = 0; r->mode[from] == KRULE_IMPL && i < d->n_impls; i++)
    if (strcmp(d->impls[i].name, f->impls[r->impl[from]].name) == 0)
      r->mode[made] = KRULE_IMPL, r->impl[made] = (int8_t)i;
}

/* The kernel rules: FG_KERNELS (or the options'), every auto rule native in deterministic
 * mode.  Read once, before the passes, which they also steer. */
static fg_status kernel_rules(fg_kernel_rules *rules, const fg_program_opts *o, fg_err *e) {
  const char *text = o->kernels ? o->kernels : getenv("FG_KERNELS");
  fg_status st = fg__kernel_rules_parse(rules, text, e);
  if (st == FG_OK) follow_rule(rules, FG_OP_CONV2D_WEIGHT_BIAS_GRAD, FG_OP_CONV2D_WEIGHT_GRAD);
  for (int op = 0; st == FG_OK && o->deterministic && op < FG_OP_COUNT; op++)
    if (rules->mode[op] == KRULE_AUTO) rules->mode[op] = KRULE_NATIVE;
  return st;
}

/* The passes switched off: the options', the chain pass where the rules pin conv2d_bias_act
 * to one implementation (conv2d_chain runs the native paths, its one alternative only putting
 * its first conv on the direct one, so the convs stay apart to run the implementation asked
 * for), and the conv_grads pass where they pin a conv's input or weight gradient (one
 * conv2d_input_weight_grad node would run both, under its own rule). */
static uint32_t passes_off(const fg_program_opts *o, const fg_kernel_rules *rules) {
  bool pinned = rules->mode[FG_OP_CONV2D_BIAS_ACT] == KRULE_IMPL;
  bool grads_pinned = rules->mode[FG_OP_CONV2D_INPUT_GRAD] == KRULE_IMPL ||
                      rules->mode[FG_OP_CONV2D_WEIGHT_GRAD] == KRULE_IMPL;
  return o->disabled_passes | (pinned ? FG_PASS_BIT(CHAIN) : 0) |
         (grads_pinned ? FG_PASS_BIT(CONV_GRADS) : 0);
}

static fg_status copy_needed(fg_program *p, fg_graph *src, int n_out, const fg_node *outs,
                             const fg_program_opts *o, const fg_kernel_rules *rules,
                             fg_err *e) {
  /* the first rewrite copies the needed nodes out of the user's graph, which stays as it is */
  fg_pass_ctx c = {.g = src, .borrowed = true, .n_out = n_out, .outs = p->outs, .e = e,
                   .keep_dead = o->disabled_passes & FG_PASS_BIT(DCE)};
  memcpy(p->outs, outs, sizeof *outs * (size_t)n_out);
  fg_status st = fg_pass_rewrite(&c, NULL, NULL);
  if (st != FG_OK) return st;
  p->stats.nodes_in = fg_graph_node_count(c.g);
  st = fg_passes_run(&c, passes_off(o, rules), o->verify, o->dump_dir, p->stats.nodes_after);
  p->g = c.g;
  return st;
}

/* Steps: every compute node that is not inside a fused group, in id order (the scheduler may
 * reorder them); a group's step reads the external inputs of all its members. */
static fg_status plan_steps(fg_program *p, fg_err *e) {
  int32_t n = fg_graph_node_count(p->g), n_reads = 0;
  for (fg_node i = 0; i < n; i++) n_reads += fg_node_num_inputs(p->g, i);
  p->steps = calloc((size_t)n + 1, sizeof *p->steps);
  p->reads = malloc(sizeof *p->reads * ((size_t)n_reads + 1));
  if (!p->steps || !p->reads) return fg_err_set(e, FG_E_NOMEM, "program: out of memory for steps");
  fg_node *r = p->reads;
  for (fg_node i = 0; i < n; i++) {
    bool leaf = fg_op_get(fg_node_op(p->g, i))->flags & FG_OPF_LEAF;
    if (leaf || fg_fusion_is_internal(&p->fusion, i)) continue;
    fg_memplan_step *s = &p->steps[p->n_steps++];
    s->node = i;
    s->reads = r;
    int32_t gi = p->fusion.group_of[i];
    int32_t nm = gi >= 0 ? p->fusion.n_members[gi] : 1;
    const fg_node *members = gi >= 0 ? p->fusion.members + (size_t)gi * FG_FUSE_MAX_MEMBERS : &i;
    for (int32_t m = 0; m < nm; m++)
      for (int k = 0; k < fg_node_num_inputs(p->g, members[m]); k++) {
        fg_node in = fg_node_input(p->g, members[m], k);
        if (gi < 0 || p->fusion.group_of[in] != gi) *r++ = in;
      }
    s->n_reads = (int32_t)(r - s->reads);
  }
  return FG_OK;
}

static bool is_output(const fg_program *p, fg_node n) {
  for (int j = 0; j < p->n_out; j++)
    if (p->outs[j] == n) return true;
  return false;
}

/* Which nodes live in the arena: computed, not an output (outputs keep their own buffers so
 * that they survive until the next run). */
static uint8_t *planned_nodes(const fg_program *p) {
  int32_t n = fg_graph_node_count(p->g);
  uint8_t *planned = calloc((size_t)n + 1, 1);
  if (!planned) return NULL;
  for (int32_t s = 0; s < p->n_steps; s++)
    if (!is_output(p, p->steps[s].node)) planned[p->steps[s].node] = 1;
  return planned;
}

static fg_status make_value(fg_program *p, fg_node n, fg_err *e) {
  const fg_node_rec *r = fg_graph_node(p->g, n);
  if (p->plan.offset && p->plan.offset[n] >= 0) {
    fg_tensor *t = calloc(1, sizeof *t);
    if (!t) return fg_err_set(e, FG_E_NOMEM, "program: out of memory");
    t->buf = fg_buffer_retain(p->arena);
    t->dtype = (fg_dtype)r->dtype;
    t->shape = r->shape;
    fg_shape_strides(&r->shape, t->strides);
    t->offset = p->plan.offset[n] / (int64_t)fg_dtype_size(t->dtype);
    p->value[n] = t;
    return FG_OK;
  }
  return fg_tensor_new(&p->value[n], (fg_dtype)r->dtype, &r->shape, e);
}

/* Poison lists: after step s, the arena ranges whose last reader was s and that no live value
 * took over in place. */
static fg_status plan_poison(fg_program *p, fg_err *e) {
  int32_t n = fg_graph_node_count(p->g);
  p->poison_off = calloc((size_t)p->n_steps + 2, sizeof *p->poison_off);
  p->poison_ids = malloc(sizeof *p->poison_ids * ((size_t)n + 1));
  if (!p->poison_off || !p->poison_ids) return fg_err_set(e, FG_E_NOMEM, "program: out of memory");
  int32_t count = 0;
  for (int32_t s = 0; s < p->n_steps; s++) {
    p->poison_off[s] = count;
    for (fg_node v = 0; v < n; v++) {
      if (p->plan.offset[v] < 0 || p->plan.dies_at[v] != s) continue;
      bool taken = false; /* a later in-place value owns the range now */
      for (int32_t t = s; t < p->n_steps && !taken; t++) {
        fg_node w = p->steps[t].node;
        taken = w != v && p->plan.in_place[w] && fg_node_input(p->g, w, 0) == v;
      }
      if (!taken) p->poison_ids[count++] = v;
    }
  }
  p->poison_off[p->n_steps] = count;
  return FG_OK;
}

/* An order of the steps that keeps peak live bytes low. */
static fg_status schedule(fg_program *p, const fg_program_opts *o, fg_err *e) {
  if (o->disabled_passes & FG_PASS_BIT(SCHEDULE)) return FG_OK;
  uint8_t *planned = planned_nodes(p);
  if (!planned) return fg_err_set(e, FG_E_NOMEM, "program: out of memory");
  fg_status st = fg_schedule_steps(p->g, p->n_steps, p->steps, planned, e);
  free(planned);
  return st;
}

/* Scratch of its own for each step that needs some (the memory plan gives none unplanned). */
static fg_status own_scratch(fg_program *p, const size_t *bytes, fg_err *e) {
  if (!(p->step_scratch = calloc((size_t)p->n_steps + 1, sizeof *p->step_scratch)))
    return fg_err_set(e, FG_E_NOMEM, "program: out of memory");
  for (int32_t s = 0; s < p->n_steps; s++)
    if (bytes[s] && !(p->step_scratch[s] = aligned_alloc(64, (bytes[s] + 63) / 64 * 64)))
      return fg_err_set(e, FG_E_NOMEM, "program: out of memory for a kernel's scratch");
  return FG_OK;
}

static fg_status plan_memory(fg_program *p, const fg_program_opts *o, fg_err *e) {
  bool memplan = !(o->disabled_passes & FG_PASS_BIT(MEMPLAN));
  uint8_t *planned = planned_nodes(p);
  size_t *scratch = malloc(sizeof *scratch * ((size_t)p->n_steps + 1));
  fg_status st = FG_OK;
  if (!planned || !scratch) st = fg_err_set(e, FG_E_NOMEM, "program: out of memory");
  if (st == FG_OK && !memplan) memset(planned, 0, (size_t)fg_graph_node_count(p->g));
  for (int32_t s = 0; st == FG_OK && s < p->n_steps; s++)
    scratch[s] = p->kernels[s].impl ? p->kernels[s].prep.scratch_bytes : 0;
  /* unplanned, every value has its buffer: so has every step's scratch */
  if (st == FG_OK) st = fg_memplan_build(&p->plan, p->g, p->n_steps, p->steps, planned, memplan,
                                         memplan ? scratch : NULL, e);
  if (st == FG_OK && !memplan) st = own_scratch(p, scratch, e);
  free(scratch);
  free(planned);
  if (st != FG_OK) return st;
  st = fg_buffer_new(&p->arena, p->plan.arena_bytes, e);
  if (st != FG_OK) return fg_err_prefix(e, st, "program: the arena");
  for (int32_t s = 0; st == FG_OK && s < p->n_steps; s++) st = make_value(p, p->steps[s].node, e);
  if (st == FG_OK && p->poison) st = plan_poison(p, e);
  return st;
}

static fg_status plan_values(fg_program *p, fg_err *e) {
  int32_t n = fg_graph_node_count(p->g);
  p->value = calloc((size_t)n + 1, sizeof *p->value);
  p->leaves = malloc(sizeof *p->leaves * ((size_t)n + 1));
  if (!p->value || !p->leaves) return fg_err_set(e, FG_E_NOMEM, "program: out of memory");
  int32_t max_members = 1;
  for (fg_node i = 0; i < n; i++) {
    const fg_node_rec *r = fg_graph_node(p->g, i);
    if (r->op == FG_OP_CONST) {
      fg_status st = fg_tensor_view(&p->value[i], r->value, e);
      if (st != FG_OK) return st;
    }
    if (r->op == FG_OP_INPUT || r->op == FG_OP_PARAM) p->leaves[p->n_leaves++] = i;
  }
  for (int32_t gi = 0; gi < p->fusion.n_groups; gi++)
    if (p->fusion.n_members[gi] > max_members) max_members = p->fusion.n_members[gi];
  p->scratch_part_bytes = (size_t)max_members * FUSE_TILE * sizeof(double);
  if (p->fusion.n_groups && !(p->scratch = malloc(p->scratch_part_bytes * FUSE_MAX_PARTS)))
    return fg_err_set(e, FG_E_NOMEM, "program: out of memory for fused tiles");
  return FG_OK;
}

static fg_status make_pool(fg_program *p, const fg_program_opts *o, fg_err *e) {
  if (o->pool) {
    p->pool = o->pool;
    return FG_OK;
  }
  p->own_pool = true;
  return fg_pool_new(&p->pool, o->n_threads, e);
}

/* Each step's implementation, and how the executor would split the descriptor's kernel. */
static fg_status choose_kernels(fg_program *p, const fg_kernel_rules *rules, bool layouts,
                               fg_err *e) {
  fg_status st = FG_OK;
  double t0 = fg__program_now_ms();
  p->kernels = calloc((size_t)p->n_steps + 1, sizeof *p->kernels);
  p->step_parts = calloc((size_t)p->n_steps + 1, sizeof *p->step_parts);
  if (!p->kernels || !p->step_parts) return fg_err_set(e, FG_E_NOMEM, "program: out of memory");
  for (int32_t s = 0; st == FG_OK && s < p->n_steps; s++) {
    fg_node n = p->steps[s].node;
    int32_t group = p->fusion.group_of[n];
    p->step_parts[s] = group >= 0 ? fg__program_group_parts(p, group)
                                  : fg__program_parts_for(p->g, n, fg_pool_size(p->pool));
    if (group < 0)
      st = fg__kernel_choose(&p->kernels[s], p->g, n, p->step_parts[s], rules, p->pool, e);
  }
  if (st == FG_OK && layouts) st = fg__program_choose_for_layouts(p, rules, e);
  p->stats.choose_ms = fg__program_now_ms() - t0;
  return st;
}

static void fill_stats(fg_program *p, double t0) {
  p->stats.nodes_compiled = fg_graph_node_count(p->g);
  p->stats.n_steps = p->n_steps;
  p->stats.n_groups = p->fusion.n_groups;
  for (int32_t gi = 0; gi < p->fusion.n_groups; gi++) p->stats.n_fused += p->fusion.n_members[gi];
  p->stats.arena_bytes = p->plan.arena_bytes;
  p->stats.naive_bytes = p->plan.naive_bytes;
  p->stats.n_in_place = p->plan.n_in_place;
  p->stats.n_threads = fg_pool_size(p->pool);
  p->stats.compile_ms = fg__program_now_ms() - t0;
}

fg_status fg__program_compile(fg_program *p, fg_graph *g, const fg_node *outs,
                              const fg_program_opts *o, fg_err *e) {
  double t0 = fg__program_now_ms();
  fg_kernel_rules rules;
  fg_status st = kernel_rules(&rules, o, e);
  if (st == FG_OK) st = copy_needed(p, g, p->n_out, outs, o, &rules, e);
  if (st == FG_OK) {
    if (o->disabled_passes & FG_PASS_BIT(FUSE)) {
      st = fg_fusion_plan(&p->fusion, p->g, 0, NULL, e); /* empty plan with arrays */
      for (fg_node i = 0; st == FG_OK && i < fg_graph_node_count(p->g); i++)
        p->fusion.group_of[i] = -1;
      p->fusion.n_groups = 0;
    } else {
      st = fg_fusion_plan(&p->fusion, p->g, p->n_out, p->outs, e);
    }
  }
  if (st == FG_OK) st = plan_steps(p, e);
  if (st == FG_OK) st = plan_values(p, e);
  if (st == FG_OK) st = make_pool(p, o, e);
  if (st == FG_OK) st = schedule(p, o, e);
  bool layouts = !(o->disabled_passes & FG_PASS_BIT(LAYOUT));
  if (st == FG_OK) st = choose_kernels(p, &rules, layouts, e);
  if (st == FG_OK) st = fg__program_plan_layouts(p, layouts, e);
  if (st == FG_OK) st = plan_memory(p, o, e);
  if (st == FG_OK) fill_stats(p, t0);
  return st;
}
