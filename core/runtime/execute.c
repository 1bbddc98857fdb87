/* Running a program: a run walks the planned steps; each step's kernel is split into parts
 * that the thread pool spreads over the cores, and a fused group runs its members' kernels
 * tile by tile.  The partition never depends on the thread count (fg_pool_parts_fixed; a
 * split-free op's outputs do not depend on it at all), and each part writes its own outputs,
 * so results are bit-identical for any number of threads. */
#include <stdlib.h>
#include <string.h>

#include "core/runtime/program_internal.h"

enum {
  MIN_ELEMENTWISE_PART = 32768, /* elements touched: below this a part costs more than it saves */
  MIN_COSTLY_PART = 4096,       /* elements of an op (or a fused group with one) that calls libm
                                 * per element: 25,088 logsigmoids ran on one thread in 0.27 ms */
  MIN_HEAVY_PART = 8192,        /* matmul, conv, reductions: more work per element touched */
};

static fg_status check_bound(fg_program *p, fg_err *e) {
  for (int32_t i = 0; i < p->n_leaves; i++) {
    fg_node n = p->leaves[i];
    if (!p->value[n])
      return fg_err_set(e, FG_E_MISUSE, "run: %s '%s' is not bound (fg_program_bind)",
                        fg_node_op(p->g, n) == FG_OP_INPUT ? "input" : "parameter",
                        fg_node_name(p->g, n));
  }
  return FG_OK;
}

enum { MAX_STEP_INPUTS = 64, MAX_PARTS = FG_POOL_MAX_FIXED_PARTS };

/* One kernel run split into parts: each part gets base's arguments with its own ith, nth,
 * phase and error. */
typedef struct part_job {
  fg_kernel_fn kernel;
  const fg_kargs *base;
  int phase;
  fg_status status[MAX_PARTS];
  fg_err err[MAX_PARTS];
} part_job;

static void kernel_part(void *ctx, int part, int n_parts) {
  part_job *j = ctx;
  fg_kargs k = *j->base;
  k.ith = part, k.nth = n_parts, k.phase = j->phase, k.err = &j->err[part];
  j->status[part] = j->kernel(&k);
}

fg_status fg__run_kernel(fg_pool *pool, fg_kernel_fn kernel, const fg_kargs *base, int n_phases,
                         const int *parts, fg_err *e) {
  part_job *j = malloc(sizeof *j);
  if (!j) return fg_err_set(e, FG_E_NOMEM, "out of memory");
  j->kernel = kernel, j->base = base;
  fg_status st = FG_OK;
  for (int ph = 0; st == FG_OK && ph < n_phases; ph++) {
    int n = parts[ph] < 1 ? 1 : parts[ph] > MAX_PARTS ? MAX_PARTS : parts[ph];
    for (int i = 0; i < n; i++) j->status[i] = FG_OK, j->err[i].msg[0] = '\0';
    j->phase = ph;
    fg_pool_run(pool, kernel_part, j, n);
    for (int i = 0; i < n && st == FG_OK; i++) /* the first failing part, in part order */
      if ((st = j->status[i]) != FG_OK)
        fg_err_set(e, st, "%s", j->err[i].msg[0] ? j->err[i].msg : fg_status_str(st));
  }
  free(j);
  return st;
}

static fg_kernel_fn kernel_of(const fg_node_rec *r, const fg_kernel_choice *c) {
  if (c->impl) return r->dtype == FG_F64 ? c->impl->kernel_f64 : c->impl->kernel_f32;
  const fg_op_def *def = fg_op_get(r->op);
  return r->dtype == FG_F64 ? def->kernel_f64 : def->kernel_f32;
}

/* Kernels split their output among parts, so there are at most as many parts as outputs; the
 * work of a part is measured in elements touched (its outputs and its share of the inputs),
 * so a reduction to a few outputs of a large input is still split.  A split-free op (a sum or
 * max over outer axes) gets no more parts than threads: each part reads, per image, one
 * contiguous block of its channels, and 64 parts of 2 channels each read 1.5 KB blocks 50 KB
 * apart, which the hardware prefetchers do not follow.  [64, 128, 14, 14] -> [128] on data not
 * in cache, 2 threads: 0.49 ms in 64 parts, 0.31 in 16, 0.21 in 2 (AMD EPYC, eight such sums
 * in one program, best of 50 runs, one process per part count, one after the other).  Its
 * outputs do not depend on the split, so results stay the same for any number of threads. */
int fg__program_parts_for(const fg_graph *g, fg_node n, int n_threads) {
  fg_shape os = fg_node_shape(g, n);
  int64_t outputs = fg_shape_count(&os), touched = outputs;
  for (int k = 0; k < fg_node_num_inputs(g, n); k++) {
    fg_shape is = fg_node_shape(g, fg_node_input(g, n, k));
    touched += fg_shape_count(&is);
  }
  uint32_t flags = fg_op_get(fg_node_op(g, n))->flags;
  int64_t min_part = !(flags & FG_OPF_ELEMENTWISE) ? MIN_HEAVY_PART
                     : flags & FG_OPF_COSTLY       ? MIN_COSTLY_PART
                                                   : MIN_ELEMENTWISE_PART;
  int parts = fg_pool_parts_fixed(touched, min_part);
  if ((flags & FG_OPF_SPLIT_FREE) && parts > n_threads) parts = n_threads > 1 ? n_threads : 1;
  return outputs < parts ? (int)(outputs > 0 ? outputs : 1) : parts;
}

/* Step s's scratch: a range of the arena, or its own buffer when memory is not planned. */
static void *scratch_of(const fg_program *p, int32_t s) {
  if (p->plan.scratch_offset[s] >= 0) return (char *)p->arena->data + p->plan.scratch_offset[s];
  return p->step_scratch ? p->step_scratch[s] : NULL;
}

static fg_status run_node(fg_program *p, int32_t s, fg_err *e) {
  fg_node n = p->steps[s].node;
  const fg_node_rec *r = fg_graph_node(p->g, n);
  const fg_kernel_choice *c = &p->kernels[s];
  fg_kernel_fn kernel = kernel_of(r, c);
  if (!kernel)
    return fg_err_set(e, FG_E_INTERNAL, "run: op '%s' has no kernel", fg_op_get(r->op)->name);
  if (r->n_in > MAX_STEP_INPUTS)
    return fg_err_set(e, FG_E_INTERNAL, "run: node %d has more than %d inputs", n, MAX_STEP_INPUTS);
  const void *in[MAX_STEP_INPUTS];
  fg_shape shape[MAX_STEP_INPUTS];
  fg_dtype dtype[MAX_STEP_INPUTS];
  for (int k = 0; k < r->n_in; k++) {
    const fg_tensor *v = p->value[fg_node_input(p->g, n, k)];
    in[k] = fg_tensor_data(v), shape[k] = v->shape, dtype[k] = v->dtype;
  }
  fg_kargs k = {.attr = r->attr, .n_in = r->n_in, .in = in, .in_shape = shape, .in_dtype = dtype,
                .out = fg_tensor_data(p->value[n]), .out_shape = r->shape,
                .rng_offset = p->rng_offset, .value = r->value, .state = c->state,
                .scratch = scratch_of(p, s), .blocked = p->step_blocked[s]};
  int native_parts = p->step_parts[s];
  fg_status st = c->impl ? fg__run_kernel(p->pool, kernel, &k, c->prep.n_phases, c->prep.parts, e)
                         : fg__run_kernel(p->pool, kernel, &k, 1, &native_parts, e);
  if (st != FG_OK)
    return fg_err_prefix(e, st, "run: node %d (op '%s'%s%s)", n, fg_op_get(r->op)->name,
                         r->name ? ", named " : "", r->name ? r->name : "");
  return FG_OK;
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
  void *out = root ? (char *)fg_tensor_data(p->value[members[m]]) +
                         (size_t)t0 * fg_dtype_size(r->dtype)
                   : (void *)(tiles + (size_t)m * FUSE_TILE);
  fg_kargs k = {.attr = r->attr, .n_in = r->n_in, .in = in, .in_shape = shape, .in_dtype = dtype,
                .out = out, .out_shape = fg_shape1(len), .ith = 0, .nth = 1,
                .rng_offset = p->rng_offset, .err = err};
  const fg_op_def *def = fg_op_get(r->op);
  return (r->dtype == FG_F64 ? def->kernel_f64 : def->kernel_f32)(&k);
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

int fg__program_group_parts(const fg_program *p, int32_t group) {
  const fg_node *members = p->fusion.members + (size_t)group * FG_FUSE_MAX_MEMBERS;
  int32_t nm = p->fusion.n_members[group];
  fg_shape s = fg_node_shape(p->g, members[nm - 1]);
  int64_t count = fg_shape_count(&s), n_tiles = (count + FUSE_TILE - 1) / FUSE_TILE;
  bool costly = false;
  for (int32_t m = 0; m < nm; m++)
    costly = costly || (fg_op_get(fg_node_op(p->g, members[m]))->flags & FG_OPF_COSTLY);
  int parts = fg_pool_parts_fixed(count, costly ? MIN_COSTLY_PART : MIN_ELEMENTWISE_PART);
  if (parts > FUSE_MAX_PARTS) parts = FUSE_MAX_PARTS;
  if (parts > n_tiles) parts = (int)n_tiles;
  return parts < 1 ? 1 : parts;
}

static fg_status run_group(fg_program *p, int32_t step, fg_err *e) {
  fg_node root = p->steps[step].node;
  group_job j = {.p = p, .group = p->fusion.group_of[root]};
  fg_shape s = fg_node_shape(p->g, root);
  j.count = fg_shape_count(&s);
  int parts = j.n_parts = p->step_parts[step]; /* fg__program_group_parts, when compiled */
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
  void *scratch = scratch_of(p, s);
  if (scratch) /* a kernel's scratch lives for its step only */
    memset(scratch, 0xff, p->kernels[s].prep.scratch_bytes);
}

fg_status fg_program_run(fg_program *p, fg_err *e) {
  if (!p) return fg_err_set(e, FG_E_MISUSE, "run: no program");
  fg_status st = check_bound(p, e);
  if (p->profile) fg__program_profile_run_start(p);
  for (int32_t s = 0; st == FG_OK && s < p->n_steps; s++) {
    fg_node n = p->steps[s].node;
    bool fused = p->fusion.group_of[n] >= 0;
    double t0 = p->profile ? fg__program_now_ms() : 0;
    st = fused ? run_group(p, s, e) : run_node(p, s, e);
    if (p->profile) fg__program_profile_step(p, s, fg__program_now_ms() - t0);
    if (p->poison) poison_dead(p, s);
  }
  p->prof_runs++;
  return st;
}
