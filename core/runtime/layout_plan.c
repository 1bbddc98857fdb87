/* The layout plan (core/ir/op.h, "Layouts"): which values a program keeps in oneDNN's blocked
 * layout nChw16c, decided once each step's implementation is chosen (node by node, then for the
 * plan as a whole: layout_choice.c, which asks here what the plan would be for other kernels).
 *
 * A oneDNN convolution computes on nChw16c; handed NCHW it reorders its activations in and its
 * result out on every run, which costs it 10-45 % on Glow's and RealNVP's shapes.  Between two
 * such convolutions the reorder out and the reorder in cancel, so the value may as well stay
 * blocked, provided every step that reads it takes it blocked.  Who takes a blocked value:
 *   - an implementation that says so for that operand (fg_kprep.blocked_ok: oneDNN's
 *     convolutions, for the activations their primitive chose blocked), for some operands
 *     only with its output blocked too (fg_kprep.blocked_tied: conv2d_input_grad_relu's y,
 *     which it reads elementwise with the output);
 *   - an elementwise step (a fused group or one elementwise op) whose full-size operands and
 *     output all have one shape, provided its output is blocked too: element i is then the same
 *     element of each, whatever the order;
 *   - a per-channel sum over (N, H, W), a bias gradient (reduce.c has the blocked loop).
 * Who can make one: an implementation that says so for its output (and has its tied inputs
 * blocked), or such an elementwise step whose full-size inputs are all blocked.
 *
 * The plan is the largest set of values closed under these rules: it starts from every
 * candidate (float32, 4-D, channels a multiple of 16, so there is no padding and the memory
 * plan is unchanged; computed by a step; not a program output) and drops each value that breaks
 * a rule until none does.  No reorder is ever added: a value with a reader that needs NCHW
 * stays NCHW.  The convolutions that read or write a blocked value are then prepared again for
 * it; if one fails, the whole plan is dropped (every value row-major, as with the pass off). */
#include <stdlib.h>
#include <string.h>

#include "core/ir/op_attrs.h"
#include "core/runtime/program_internal.h"

typedef struct layout_ctx {
  fg_program *p;
  const fg_kernel_choice *kernels; /* per step: the implementations the plan is made for */
  uint8_t *blocked;  /* per node: still in the set */
  uint8_t *agnostic; /* per step: elementwise over operands of one shape */
  int32_t *reader_off, *readers; /* node v is read by steps readers[reader_off[v] ..
                                    reader_off[v + 1]) (once per read) */
} layout_ctx;

static bool is_candidate(const fg_program *p, fg_node v) {
  fg_shape s = fg_node_shape(p->g, v);
  for (int j = 0; j < p->n_out; j++)
    if (p->outs[j] == v) return false;
  return fg_node_dtype(p->g, v) == FG_F32 && s.ndim == 4 && s.d[1] % 16 == 0 &&
         fg_shape_count(&s) > 0;
}

uint32_t *fg__layout_blockable(const fg_program *p) {
  int32_t n = fg_graph_node_count(p->g);
  uint32_t *mask = calloc((size_t)p->n_steps + 1, sizeof *mask);
  uint8_t *computed = calloc((size_t)n + 1, 1); /* values a step writes */
  for (int32_t s = 0; mask && computed && s < p->n_steps; s++) computed[p->steps[s].node] = 1;
  for (int32_t s = 0; mask && computed && s < p->n_steps; s++) {
    fg_node v = p->steps[s].node;
    if (p->fusion.group_of[v] >= 0) continue;
    mask[s] = is_candidate(p, v) ? FG_BLOCKED_OUT : 0;
    for (int i = 0; i < fg_node_num_inputs(p->g, v) && i < 31; i++) {
      fg_node in = fg_node_input(p->g, v, i);
      if (computed[in] && is_candidate(p, in)) mask[s] |= 1u << i;
    }
  }
  if (!computed) free(mask), mask = NULL;
  free(computed);
  return mask;
}

/* Step s is elementwise over operands of one shape (fused groups always are elementwise). */
static bool is_agnostic(const fg_program *p, int32_t s) {
  fg_node n = p->steps[s].node;
  uint32_t flags = fg_op_get(fg_node_op(p->g, n))->flags;
  if (p->fusion.group_of[n] < 0 && (!(flags & FG_OPF_ELEMENTWISE) || (flags & FG_OPF_RANDOM)))
    return false;
  fg_shape out = fg_node_shape(p->g, n);
  for (int32_t r = 0; r < p->steps[s].n_reads; r++) {
    fg_shape in = fg_node_shape(p->g, p->steps[s].reads[r]);
    if (fg_shape_count(&in) != 1 && !fg_shape_equal(&in, &out)) return false;
  }
  return true;
}

/* Step s is a float32 sum of a 4-D value over N, H and W. */
static bool is_channel_sum(const fg_program *p, int32_t s) {
  fg_node n = p->steps[s].node;
  if (fg_node_op(p->g, n) != FG_OP_SUM || p->fusion.group_of[n] >= 0 ||
      fg_node_dtype(p->g, n) != FG_F32)
    return false;
  const fg_reduce_attr *at = fg_node_attr(p->g, n);
  fg_shape in = fg_node_shape(p->g, fg_node_input(p->g, n, 0));
  return in.ndim == 4 && at->axes == (FG_AXIS(0) | FG_AXIS(2) | FG_AXIS(3));
}

/* Step t takes value v blocked (v is among its reads). */
static bool takes(const layout_ctx *c, int32_t t, fg_node v) {
  const fg_program *p = c->p;
  fg_node n = p->steps[t].node;
  if (c->agnostic[t]) return c->blocked[n];
  if (is_channel_sum(p, t)) return true;
  const fg_kernel_choice *k = &c->kernels[t];
  if (!k->impl || p->fusion.group_of[n] >= 0) return false;
  for (int i = 0; i < fg_node_num_inputs(p->g, n); i++) {
    if (fg_node_input(p->g, n, i) != v) continue;
    if (!(k->prep.blocked_ok & (1u << i))) return false;
    if ((k->prep.blocked_tied & (1u << i)) && !c->blocked[n]) return false;
  }
  return true;
}

/* Step s can write its output blocked. */
static bool makes(const layout_ctx *c, int32_t s) {
  const fg_program *p = c->p;
  if (c->agnostic[s]) {
    for (int32_t r = 0; r < p->steps[s].n_reads; r++) {
      fg_node in = p->steps[s].reads[r];
      fg_shape sh = fg_node_shape(p->g, in);
      if (fg_shape_count(&sh) != 1 && !c->blocked[in]) return false;
    }
    return true;
  }
  const fg_kernel_choice *k = &c->kernels[s];
  if (!k->impl || !(k->prep.blocked_ok & FG_BLOCKED_OUT)) return false;
  fg_node n = p->steps[s].node;
  for (int i = 0; i < fg_node_num_inputs(p->g, n) && i < 31; i++)
    if ((k->prep.blocked_tied & (1u << i)) && !c->blocked[fg_node_input(p->g, n, i)])
      return false;
  return true;
}

/* The steps reading each node (counting sort of every step's reads by node). */
static bool index_readers(layout_ctx *c, int32_t n) {
  const fg_program *p = c->p;
  int32_t total = 0;
  c->reader_off = calloc((size_t)n + 2, sizeof *c->reader_off);
  for (int32_t s = 0; s < p->n_steps; s++) total += p->steps[s].n_reads;
  c->readers = malloc(sizeof *c->readers * ((size_t)total + 1));
  if (!c->reader_off || !c->readers) return false;
  for (int32_t s = 0; s < p->n_steps; s++)
    for (int32_t r = 0; r < p->steps[s].n_reads; r++) c->reader_off[p->steps[s].reads[r] + 2]++;
  for (int32_t v = 0; v < n; v++) c->reader_off[v + 2] += c->reader_off[v + 1];
  for (int32_t s = 0; s < p->n_steps; s++) /* reader_off[v + 1] runs from v's start to its end */
    for (int32_t r = 0; r < p->steps[s].n_reads; r++)
      c->readers[c->reader_off[p->steps[s].reads[r] + 1]++] = s;
  return true;
}

/* Drops values that break a rule until none does. */
static void settle(layout_ctx *c) {
  const fg_program *p = c->p;
  for (bool changed = true; changed;) {
    changed = false;
    for (int32_t s = 0; s < p->n_steps; s++) {
      fg_node v = p->steps[s].node;
      if (!c->blocked[v]) continue;
      bool ok = makes(c, s);
      for (int32_t i = c->reader_off[v]; ok && i < c->reader_off[v + 1]; i++)
        ok = takes(c, c->readers[i], v);
      if (!ok) c->blocked[v] = 0, changed = true;
    }
  }
}

/* Step s's operands in the plan (fg_kargs.blocked bits). */
static uint32_t step_mask(const layout_ctx *c, int32_t s) {
  const fg_program *p = c->p;
  fg_node n = p->steps[s].node;
  if (p->fusion.group_of[n] >= 0) return 0;
  uint32_t mask = c->blocked[n] ? FG_BLOCKED_OUT : 0;
  for (int i = 0; i < fg_node_num_inputs(p->g, n) && i < 31; i++)
    if (c->blocked[fg_node_input(p->g, n, i)]) mask |= 1u << i;
  return mask;
}

/* Prepares the implementations that see a blocked operand again, all or none. */
static fg_status reprepare(const layout_ctx *c, bool *applied, fg_err *e) {
  fg_program *p = c->p;
  fg_kernel_choice *fresh = calloc((size_t)p->n_steps + 1, sizeof *fresh);
  if (!fresh) return fg_err_set(e, FG_E_NOMEM, "program: out of memory planning layouts");
  bool ok = true;
  for (int32_t s = 0; ok && s < p->n_steps; s++)
    if (p->kernels[s].impl && p->step_blocked[s])
      ok = fg__kernel_reprepare(&fresh[s], &p->kernels[s], p->g, p->steps[s].node,
                                p->step_parts[s], p->step_blocked[s]);
  for (int32_t s = 0; s < p->n_steps; s++) {
    if (!fresh[s].impl) continue;
    if (ok) fg__kernel_choice_release(&p->kernels[s]), p->kernels[s] = fresh[s];
    else fg__kernel_choice_release(&fresh[s]);
  }
  free(fresh);
  *applied = ok;
  return FG_OK;
}

static void ctx_free(layout_ctx *c) {
  free(c->blocked), free(c->agnostic), free(c->reader_off), free(c->readers);
}

/* The largest closed set for the implementations in kernels, into c (whose arrays it makes). */
static fg_status plan_set(layout_ctx *c, fg_err *e) {
  fg_program *p = c->p;
  int32_t n = fg_graph_node_count(p->g);
  c->blocked = calloc((size_t)n + 1, 1);
  c->agnostic = calloc((size_t)p->n_steps + 1, 1);
  if (!c->blocked || !c->agnostic || !index_readers(c, n))
    return fg_err_set(e, FG_E_NOMEM, "program: out of memory planning layouts");
  for (int32_t s = 0; s < p->n_steps; s++) {
    fg_node v = p->steps[s].node;
    c->agnostic[s] = is_agnostic(p, s);
    c->blocked[v] = is_candidate(p, v);
  }
  settle(c);
  return FG_OK;
}

fg_status fg__layout_masks(fg_program *p, const fg_kernel_choice *kernels, uint32_t *masks,
                           fg_err *e) {
  layout_ctx c = {.p = p, .kernels = kernels};
  fg_status st = plan_set(&c, e);
  for (int32_t s = 0; st == FG_OK && s < p->n_steps; s++) masks[s] = step_mask(&c, s);
  ctx_free(&c);
  return st;
}

fg_status fg__program_plan_layouts(fg_program *p, bool enabled, fg_err *e) {
  p->step_blocked = calloc((size_t)p->n_steps + 1, sizeof *p->step_blocked);
  layout_ctx c = {.p = p, .kernels = p->kernels};
  fg_status st = p->step_blocked ? FG_OK : fg_err_set(e, FG_E_NOMEM, "program: out of memory");
  if (st != FG_OK || !enabled) return st;
  st = plan_set(&c, e);
  int32_t count = 0;
  for (int32_t s = 0; st == FG_OK && s < p->n_steps; s++) {
    p->step_blocked[s] = step_mask(&c, s);
    count += c.blocked[p->steps[s].node];
  }
  bool applied = true;
  if (st == FG_OK && count) st = reprepare(&c, &applied, e);
  if (st == FG_OK && !applied) { /* a convolution refused: everything row-major */
    memset(p->step_blocked, 0, sizeof *p->step_blocked * (size_t)p->n_steps);
    count = 0;
  }
  p->stats.n_blocked = count;
  ctx_free(&c);
  return st;
}
