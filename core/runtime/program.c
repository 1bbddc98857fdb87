/* The executor.  Making a program compiles a copy of the needed part of the graph:
 *   graph passes (core/compiler/passes.c) -> fusion groups (core/compiler/pass_fuse.c) -> steps in id order ->
 *   memory plan (core/compiler/pass_memplan.c) -> one arena and every value's tensor, allocated once.
 * The steps are then ordered to keep peak live bytes low (core/compiler/pass_schedule.c).
 * A run walks the steps; each step's kernel is split into parts that the thread pool spreads
 * over the cores.  The partition never depends on the thread count (fg_pool_parts_fixed), and
 * each part writes its own outputs, so results are bit-identical for any number of threads. */
#include "core/runtime/program.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/compiler/pass_fuse.h"
#include "core/compiler/pass_memplan.h"
#include "core/ir/op.h"
#include "core/compiler/pass_schedule.h"

enum {
  FUSE_TILE = 4096,           /* elements per tile of a fused loop: members' tiles stay in L2, and
                                 * a tile is long enough that calling each member's kernel costs
                                 * little (1024: the relu-gradient mask ran 2.5x slower) */
  FUSE_MAX_PARTS = 16,
  MIN_ELEMENTWISE_PART = 32768, /* elements touched: below this a part costs more than it saves */
  MIN_HEAVY_PART = 8192,        /* matmul, conv, reductions: more work per element touched */
};

struct fg_program {
  const fg_graph *src;
  fg_graph *g;          /* compiled graph, owned */
  int n_out;
  fg_node *outs;        /* in g */
  int32_t n_steps;
  fg_memplan_step *steps;
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
  int64_t prof_runs;
  double *prof_step_ms; /* per step, for the breakdown by op and shapes */
  int prof_rows;        /* rows of that breakdown */
  fg_program_stats stats;
};

static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static bool env_flag(const char *name) {
  const char *v = getenv(name);
  return v && *v && strcmp(v, "0") != 0;
}

/* Rows of the profile's breakdown by op and shapes: FG_PROFILE=N for N > 1, else 15. */
static int profile_rows(void) {
  const char *v = getenv("FG_PROFILE");
  long n = v ? strtol(v, NULL, 10) : 0;
  return n > 1 && n < 100000 ? (int)n : 15;
}

/* ------------------------------------------------------------------ compiling ---- */

static fg_status resolve_opts(const fg_program_opts *in, fg_program_opts *o, fg_err *e) {
  if (in) *o = *in;
  else memset(o, 0, sizeof *o);
  uint32_t env_disabled;
  fg_status st = fg_pass_parse_list(getenv("FG_DISABLE_PASSES"), &env_disabled, e);
  if (st != FG_OK) return st;
  o->disabled_passes |= env_disabled;
  o->poison_freed = o->poison_freed || env_flag("FG_POISON_FREED");
  o->profile = o->profile || env_flag("FG_PROFILE");
  o->verify = o->verify || env_flag("FG_VERIFY_PASSES");
  if (!o->dump_dir) o->dump_dir = getenv("FG_DUMP_PASSES");
  if (o->n_threads <= 0 && getenv("FG_THREADS")) o->n_threads = atoi(getenv("FG_THREADS"));
  return FG_OK;
}

static fg_status copy_needed(fg_program *p, fg_graph *src, int n_out, const fg_node *outs,
                             const fg_program_opts *o, fg_err *e) {
  /* the first rewrite copies the needed nodes out of the user's graph, which stays as it is */
  fg_pass_ctx c = {.g = src, .borrowed = true, .n_out = n_out, .outs = p->outs, .e = e,
                   .keep_dead = o->disabled_passes & FG_PASS_BIT(DCE)};
  memcpy(p->outs, outs, sizeof *outs * (size_t)n_out);
  fg_status st = fg_pass_rewrite(&c, NULL, NULL);
  if (st != FG_OK) return st;
  p->stats.nodes_in = fg_graph_node_count(c.g);
  st = fg_passes_run(&c, o->disabled_passes, o->verify, o->dump_dir, p->stats.nodes_after);
  p->g = c.g;
  return st;
}

/* Steps: every compute node that is not inside a fused group, in id order (the scheduler may
 * reorder them); a group's step
 * reads the external inputs of all its members. */
static fg_status plan_steps(fg_program *p, fg_err *e) {
  int32_t n = fg_graph_node_count(p->g), n_reads = 0;
  for (fg_node i = 0; i < n; i++) n_reads += fg_node_num_inputs(p->g, i);
  p->steps = calloc((size_t)n + 1, sizeof *p->steps);
  p->reads = malloc(sizeof *p->reads * ((size_t)n_reads + 1));
  if (!p->steps || !p->reads) return fg_err_set(e, FG_E_NOMEM, "program: out of memory for steps");
  fg_node *r = p->reads;
  for (fg_node i = 0; i < n; i++) {
    if ((fg_op_get(fg_node_op(p->g, i))->flags & FG_OPF_LEAF) || fg_fusion_is_internal(&p->fusion, i))
      continue;
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

static fg_status plan_memory(fg_program *p, const fg_program_opts *o, fg_err *e) {
  bool memplan = !(o->disabled_passes & FG_PASS_BIT(MEMPLAN));
  uint8_t *planned = planned_nodes(p);
  if (!planned) return fg_err_set(e, FG_E_NOMEM, "program: out of memory");
  fg_status st = FG_OK;
  if (!(o->disabled_passes & FG_PASS_BIT(SCHEDULE)))
    st = fg_schedule_steps(p->g, p->n_steps, p->steps, planned, e);
  if (!memplan) memset(planned, 0, (size_t)fg_graph_node_count(p->g));
  if (st == FG_OK) st = fg_memplan_build(p->g, p->n_steps, p->steps, planned, memplan, &p->plan, e);
  free(planned);
  if (st != FG_OK) return st;
  if (!(p->arena = fg_buffer_new(p->plan.arena_bytes)))
    return fg_err_set(e, FG_E_NOMEM, "program: out of memory for a %zu-byte arena", p->plan.arena_bytes);
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
    if (r->op == FG_OP_CONST && fg_tensor_view(&p->value[i], r->value, e) != FG_OK) return e->status;
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

static void fill_stats(fg_program *p, double t0) {
  p->stats.nodes_compiled = fg_graph_node_count(p->g);
  p->stats.n_steps = p->n_steps;
  p->stats.n_groups = p->fusion.n_groups;
  for (int32_t gi = 0; gi < p->fusion.n_groups; gi++) p->stats.n_fused += p->fusion.n_members[gi];
  p->stats.arena_bytes = p->plan.arena_bytes;
  p->stats.naive_bytes = p->plan.naive_bytes;
  p->stats.n_in_place = p->plan.n_in_place;
  p->stats.n_threads = fg_pool_size(p->pool);
  p->stats.compile_ms = now_ms() - t0;
}

static fg_status compile(fg_program *p, fg_graph *g, int n_out, const fg_node *outs,
                         const fg_program_opts *o, fg_err *e) {
  double t0 = now_ms();
  fg_status st = copy_needed(p, g, n_out, outs, o, e);
  if (st == FG_OK) {
    if (o->disabled_passes & FG_PASS_BIT(FUSE)) {
      st = fg_fusion_plan(p->g, 0, NULL, &p->fusion, e); /* empty plan with arrays */
      for (fg_node i = 0; st == FG_OK && i < fg_graph_node_count(p->g); i++) p->fusion.group_of[i] = -1;
      p->fusion.n_groups = 0;
    } else {
      st = fg_fusion_plan(p->g, p->n_out, p->outs, &p->fusion, e);
    }
  }
  if (st == FG_OK) st = plan_steps(p, e);
  if (st == FG_OK) st = plan_values(p, e);
  if (st == FG_OK) st = plan_memory(p, o, e);
  if (st == FG_OK) st = make_pool(p, o, e);
  if (st == FG_OK) fill_stats(p, t0);
  return st;
}

fg_status fg_program_new_opts(fg_program **out, fg_graph *g, int n_out, const fg_node *outs,
                              const fg_program_opts *opts, fg_err *e) {
  *out = NULL;
  if (!g || n_out < 0 || (n_out && !outs)) return fg_err_set(e, FG_E_MISUSE, "program: no graph or outputs");
  if (fg_graph_status(g) != FG_OK)
    return fg_err_set(e, fg_graph_status(g), "program: the graph is in error: %s", fg_graph_errmsg(g));
  for (int j = 0; j < n_out; j++)
    if (!fg_node_valid(g, outs[j]))
      return fg_err_set(e, FG_E_MISUSE, "program: output %d (id %d) is not a node of the graph", j, outs[j]);
  fg_program_opts o;
  fg_status st = resolve_opts(opts, &o, e);
  if (st != FG_OK) return st;
  fg_program *p = calloc(1, sizeof *p);
  if (!p || !(p->outs = malloc(sizeof *p->outs * ((size_t)n_out + 1)))) {
    free(p);
    return fg_err_set(e, FG_E_NOMEM, "program: out of memory");
  }
  p->src = g;
  p->n_out = n_out;
  p->poison = o.poison_freed;
  p->profile = o.profile;
  p->prof_rows = profile_rows();
  st = compile(p, g, n_out, outs, &o, e);
  if (st == FG_OK && p->profile && !(p->prof_step_ms = calloc((size_t)p->n_steps + 1, sizeof(double))))
    st = fg_err_set(e, FG_E_NOMEM, "program: out of memory");
  if (st != FG_OK) {
    fg_program_free(p);
    return st;
  }
  *out = p;
  return FG_OK;
}

fg_status fg_program_new(fg_program **out, fg_graph *g, int n_out, const fg_node *outs, fg_err *e) {
  return fg_program_new_opts(out, g, n_out, outs, NULL, e);
}

void fg_program_free(fg_program *p) {
  if (!p) return;
  for (int32_t i = 0; p->value && p->g && i < fg_graph_node_count(p->g); i++) fg_tensor_free(p->value[i]);
  free(p->value);
  fg_buffer_release(p->arena);
  fg_memplan_free(&p->plan);
  fg_fusion_free(&p->fusion);
  if (p->own_pool) fg_pool_free(p->pool);
  free(p->scratch);
  free(p->steps);
  free(p->prof_step_ms);
  free(p->reads);
  free(p->poison_off);
  free(p->poison_ids);
  free(p->leaves);
  free(p->outs);
  fg_graph_free(p->g);
  free(p);
}

/* ------------------------------------------------------------------ binding ---- */

fg_status fg_program_bind(fg_program *p, const char *name, const fg_tensor *t, fg_err *e) {
  if (!p || !name || !t) return fg_err_set(e, FG_E_MISUSE, "bind: no program, name or tensor");
  fg_node n = fg_graph_find(p->g, name);
  if (n == FG_NONE) {
    if (fg_graph_find(p->src, name) != FG_NONE) return FG_OK; /* not needed by the outputs */
    return fg_err_set(e, FG_E_NOTFOUND, "bind: the graph has no input or parameter '%s'", name);
  }
  fg_shape want = fg_node_shape(p->g, n);
  if (t->dtype != fg_node_dtype(p->g, n) || !fg_shape_equal(&t->shape, &want)) {
    char a[128], b[128];
    return fg_err_set(e, FG_E_SHAPE, "bind '%s': got %s %s, the graph expects %s %s", name,
                        fg_dtype_name(t->dtype), fg_shape_str(&t->shape, a, sizeof a),
                        fg_dtype_name(fg_node_dtype(p->g, n)), fg_shape_str(&want, b, sizeof b));
  }
  fg_tensor *v;
  /* Contiguous tensors are shared (an optimiser's in-place update is seen); a strided view
   * is copied, since kernels read contiguous memory. */
  fg_status st = fg_tensor_is_contiguous(t) ? fg_tensor_view(&v, t, e) : fg_tensor_copy(&v, t, t->dtype, e);
  if (st != FG_OK) return st;
  fg_tensor_free(p->value[n]);
  p->value[n] = v;
  return FG_OK;
}

static fg_status check_bound(fg_program *p, fg_err *e) {
  for (int32_t i = 0; i < p->n_leaves; i++) {
    fg_node n = p->leaves[i];
    if (!p->value[n])
      return fg_err_set(e, FG_E_MISUSE, "run: %s '%s' is not bound (fg_program_bind)",
                          fg_node_op(p->g, n) == FG_OP_INPUT ? "input" : "parameter", fg_node_name(p->g, n));
  }
  return FG_OK;
}

/* ------------------------------------------------------------------ running ---- */

enum { MAX_STEP_INPUTS = 64, MAX_PARTS = FG_POOL_MAX_FIXED_PARTS };

typedef struct step_job {
  fg_program *p;
  fg_node node;
  const fg_node_rec *r;
  fg_kernel_fn kernel;
  const void *in[MAX_STEP_INPUTS];
  fg_shape shape[MAX_STEP_INPUTS];
  fg_dtype dtype[MAX_STEP_INPUTS];
  fg_status status[MAX_PARTS];
  fg_err err[MAX_PARTS];
} step_job;

static void node_part(void *ctx, int part, int n_parts) {
  step_job *j = ctx;
  fg_kargs k = {.attr = j->r->attr, .n_in = j->r->n_in, .in = j->in, .in_shape = j->shape,
                .in_dtype = j->dtype, .out = fg_tensor_data(j->p->value[j->node]),
                .out_shape = j->r->shape, .ith = part, .nth = n_parts,
                .rng_offset = j->p->rng_offset, .value = j->r->value, .err = &j->err[part]};
  j->status[part] = j->kernel(&k);
}

static fg_kernel_fn kernel_of(const fg_node_rec *r) {
  const fg_op_def *def = fg_op_get(r->op);
  return r->dtype == FG_F64 ? def->kernel_f64 : def->kernel_f32;
}

static fg_status step_status(fg_program *p, step_job *j, int n_parts, fg_err *e) {
  for (int i = 0; i < n_parts; i++) /* the first failing part, in part order */
    if (j->status[i] != FG_OK) {
      const fg_node_rec *r = fg_graph_node(p->g, j->node);
      return fg_err_set(e, j->status[i], "run: node %d (op '%s'%s%s): %s", j->node,
                          fg_op_get(r->op)->name, r->name ? ", named " : "", r->name ? r->name : "",
                          j->err[i].msg[0] ? j->err[i].msg : fg_status_str(j->status[i]));
    }
  return FG_OK;
}

/* Kernels split their output among parts, so there are at most as many parts as outputs; the
 * work of a part is measured in elements touched (its outputs and its share of the inputs),
 * so a reduction to a few outputs of a large input is still split. */
static int parts_for(const step_job *j) {
  int64_t outputs = fg_shape_count(&j->r->shape), touched = outputs;
  for (int k = 0; k < j->r->n_in; k++) touched += fg_shape_count(&j->shape[k]);
  bool light = fg_op_get(j->r->op)->flags & FG_OPF_ELEMENTWISE;
  int parts = fg_pool_parts_fixed(touched, light ? MIN_ELEMENTWISE_PART : MIN_HEAVY_PART);
  return outputs < parts ? (int)(outputs > 0 ? outputs : 1) : parts;
}

static fg_status run_node(fg_program *p, fg_node n, step_job *j, fg_err *e) {
  j->r = fg_graph_node(p->g, n);
  j->node = n;
  j->kernel = kernel_of(j->r);
  if (!j->kernel) return fg_err_set(e, FG_E_INTERNAL, "run: op '%s' has no kernel", fg_op_get(j->r->op)->name);
  if (j->r->n_in > MAX_STEP_INPUTS)
    return fg_err_set(e, FG_E_INTERNAL, "run: node %d has more than %d inputs", n, MAX_STEP_INPUTS);
  for (int k = 0; k < j->r->n_in; k++) {
    const fg_tensor *v = p->value[fg_node_input(p->g, n, k)];
    j->in[k] = fg_tensor_data(v), j->shape[k] = v->shape, j->dtype[k] = v->dtype;
  }
  int n_parts = parts_for(j);
  for (int i = 0; i < n_parts; i++) j->status[i] = FG_OK, j->err[i].msg[0] = '\0';
  fg_pool_run(p->pool, node_part, j, n_parts);
  return step_status(p, j, n_parts, e);
}

/* ---- fused groups: each part runs the members over its tiles ---- */

typedef struct group_job {
  fg_program *p;
  int32_t group;
  int64_t count;  /* elements of the root's output */
  int n_parts;
  fg_status status[FUSE_MAX_PARTS];
  fg_err err[FUSE_MAX_PARTS];
} group_job;

static const void *tile_input(const group_job *j, const fg_node *members, int32_t nm, fg_node in,
                              double *tiles, int64_t t0, fg_shape *shape, int64_t len) {
  for (int32_t m = 0; m < nm; m++)
    if (members[m] == in) {
      *shape = fg_shape1(len);
      return tiles + (size_t)m * FUSE_TILE;
    }
  const fg_tensor *v = j->p->value[in];
  if (fg_tensor_numel(v) == 1) {
    *shape = fg_shape0();
    return fg_tensor_data(v);
  }
  *shape = fg_shape1(len);
  return (const char *)fg_tensor_data(v) + (size_t)t0 * fg_dtype_size(v->dtype);
}

static fg_status run_member(const group_job *j, const fg_node *members, int32_t nm, int32_t m,
                            double *tiles, int64_t t0, int64_t len, fg_err *err) {
  fg_program *p = j->p;
  const fg_node_rec *r = fg_graph_node(p->g, members[m]);
  const void *in[8];
  fg_shape shape[8];
  fg_dtype dtype[8];
  for (int k = 0; k < r->n_in; k++) {
    fg_node x = fg_node_input(p->g, members[m], k);
    in[k] = tile_input(j, members, nm, x, tiles, t0, &shape[k], len);
    dtype[k] = fg_node_dtype(p->g, x);
  }
  bool root = m == nm - 1;
  void *out = root ? (char *)fg_tensor_data(p->value[members[m]]) + (size_t)t0 * fg_dtype_size(r->dtype)
                   : (void *)(tiles + (size_t)m * FUSE_TILE);
  fg_kargs k = {.attr = r->attr, .n_in = r->n_in, .in = in, .in_shape = shape, .in_dtype = dtype,
                .out = out, .out_shape = fg_shape1(len), .ith = 0, .nth = 1,
                .rng_offset = p->rng_offset, .err = err};
  return kernel_of(r)(&k);
}

static void group_part(void *ctx, int part, int n_parts) {
  group_job *j = ctx;
  fg_program *p = j->p;
  const fg_node *members = p->fusion.members + (size_t)j->group * FG_FUSE_MAX_MEMBERS;
  int32_t nm = p->fusion.n_members[j->group];
  double *tiles = (double *)((char *)p->scratch + (size_t)part * p->scratch_part_bytes);
  int64_t n_tiles = (j->count + FUSE_TILE - 1) / FUSE_TILE, b, e;
  fg_pool_range(n_tiles, part, n_parts, &b, &e);
  j->status[part] = FG_OK;
  for (int64_t t = b; t < e && j->status[part] == FG_OK; t++) {
    int64_t t0 = t * FUSE_TILE, len = j->count - t0 < FUSE_TILE ? j->count - t0 : FUSE_TILE;
    for (int32_t m = 0; m < nm && j->status[part] == FG_OK; m++)
      j->status[part] = run_member(j, members, nm, m, tiles, t0, len, &j->err[part]);
  }
}

static fg_status run_group(fg_program *p, fg_node root, fg_err *e) {
  group_job j = {.p = p, .group = p->fusion.group_of[root]};
  fg_shape s = fg_node_shape(p->g, root);
  j.count = fg_shape_count(&s);
  int64_t n_tiles = (j.count + FUSE_TILE - 1) / FUSE_TILE;
  int parts = fg_pool_parts_fixed(j.count, MIN_ELEMENTWISE_PART);
  if (parts > FUSE_MAX_PARTS) parts = FUSE_MAX_PARTS;
  if (parts > n_tiles) parts = (int)n_tiles;
  if (parts < 1) parts = 1;
  j.n_parts = parts;
  for (int i = 0; i < parts; i++) j.err[i].msg[0] = '\0';
  fg_pool_run(p->pool, group_part, &j, parts);
  for (int i = 0; i < parts; i++)
    if (j.status[i] != FG_OK)
      return fg_err_set(e, j.status[i], "run: fused group ending at node %d: %s", root,
                          j.err[i].msg[0] ? j.err[i].msg : fg_status_str(j.status[i]));
  return FG_OK;
}

/* Debug mode: NaN (all-ones bytes) over every range whose last reader just ran, so a plan that
 * hands out a range still in use shows up as NaN in the results. */
static void poison_dead(fg_program *p, int32_t s) {
  for (int32_t i = p->poison_off[s]; i < p->poison_off[s + 1]; i++) {
    fg_tensor *v = p->value[p->poison_ids[i]];
    memset(fg_tensor_data(v), 0xff, (size_t)fg_tensor_numel(v) * fg_dtype_size(v->dtype));
  }
}

fg_status fg_program_run(fg_program *p, fg_err *e) {
  if (!p) return fg_err_set(e, FG_E_MISUSE, "run: no program");
  fg_status st = check_bound(p, e);
  step_job *job = st == FG_OK ? malloc(sizeof *job) : NULL;
  if (st == FG_OK && !job) st = fg_err_set(e, FG_E_NOMEM, "run: out of memory");
  if (job) job->p = p;
  for (int32_t s = 0; st == FG_OK && s < p->n_steps; s++) {
    fg_node n = p->steps[s].node;
    bool fused = p->fusion.group_of[n] >= 0;
    double t0 = p->profile ? now_ms() : 0;
    st = fused ? run_group(p, n, e) : run_node(p, n, job, e);
    if (p->profile) {
      int slot = fused ? FG_OP_COUNT : fg_node_op(p->g, n);
      double ms = now_ms() - t0;
      p->prof_ms[slot] += ms;
      p->prof_step_ms[s] += ms;
      p->prof_calls[slot]++;
    }
    if (p->poison) poison_dead(p, s);
  }
  p->prof_runs++;
  free(job);
  return st;
}

const fg_tensor *fg_program_output(const fg_program *p, int i) {
  return (p && i >= 0 && i < p->n_out) ? p->value[p->outs[i]] : NULL;
}

int fg_program_num_outputs(const fg_program *p) { return p ? p->n_out : 0; }
void fg_program_set_rng_offset(fg_program *p, uint64_t offset) { if (p) p->rng_offset = offset; }
const fg_program_stats *fg_program_get_stats(const fg_program *p) { return p ? &p->stats : NULL; }
const fg_graph *fg_program_graph(const fg_program *p) { return p ? p->g : NULL; }
const int32_t *fg_program_groups(const fg_program *p) { return p ? p->fusion.group_of : NULL; }

/* "op [in shapes] -> [out shape]" of step s (fused groups by their last node). */
static void step_label(const fg_program *p, int32_t s, char *buf, size_t cap) {
  fg_node n = p->steps[s].node;
  bool fused = p->fusion.group_of[n] >= 0;
  char sh[96];
  size_t used = (size_t)snprintf(buf, cap, "%s", fused ? "fused" : fg_op_get(fg_node_op(p->g, n))->name);
  for (int i = 0; !fused && i < fg_node_num_inputs(p->g, n) && used < cap; i++) {
    fg_shape is = fg_node_shape(p->g, fg_node_input(p->g, n, i));
    used += (size_t)snprintf(buf + used, cap - used, " %s", fg_shape_str(&is, sh, sizeof sh));
  }
  fg_shape os = fg_node_shape(p->g, n);
  if (used < cap) snprintf(buf + used, cap - used, " -> %s", fg_shape_str(&os, sh, sizeof sh));
}

/* The second table: steps grouped by op and shapes, the p->prof_rows costliest. */
static size_t profile_by_shape(const fg_program *p, double total, char *buf, size_t cap) {
  typedef struct { char label[240]; double ms; int count; } row;
  row *rows = calloc((size_t)p->n_steps + 1, sizeof *rows);
  if (!rows) return 0;
  int n_rows = 0;
  for (int32_t s = 0; s < p->n_steps; s++) {
    char label[240];
    step_label(p, s, label, sizeof label);
    int r = 0;
    while (r < n_rows && strcmp(rows[r].label, label) != 0) r++;
    if (r == n_rows) memcpy(rows[n_rows++].label, label, sizeof label);
    rows[r].ms += p->prof_step_ms[s], rows[r].count++;
  }
  double runs = p->prof_runs ? (double)p->prof_runs : 1;
  size_t used = (size_t)snprintf(buf, cap, "\n%-84s %9s %6s %7s\n", "costliest op and shapes",
                                 "ms/run", "count", "share");
  for (int k = 0; k < p->prof_rows && k < n_rows && used < cap; k++) {
    int best = k;
    for (int r = k + 1; r < n_rows; r++)
      if (rows[r].ms > rows[best].ms) best = r;
    row t = rows[k];
    rows[k] = rows[best], rows[best] = t;
    used += (size_t)snprintf(buf + used, cap - used, "%-84.84s %9.3f %6d %6.1f%%\n", rows[k].label,
                             rows[k].ms / runs, rows[k].count,
                             total > 0 ? 100 * rows[k].ms / total : 0);
  }
  free(rows);
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
  size_t used = (size_t)snprintf(buf, cap, "%-20s %10s %8s %10s %7s\n", "op", "ms/run", "calls", "us/call", "share");
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
  if (used < cap && p->prof_runs > 0) profile_by_shape(p, total, buf + used, cap - used);
  return buf;
}
