/* The executor: runs the nodes an output needs, in id order (a topological order), each
 * node's kernel over contiguous buffers.  Every compute node's buffer is allocated when the
 * program is planned, so a run allocates nothing. */
#include "core/program.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/op.h"

struct fg_program {
  fg_graph *g;
  int n_out;
  fg_node *outs;
  int32_t n_nodes;   /* graph size when planned */
  int32_t n_sched;
  fg_node *sched;    /* compute nodes to run, ascending id */
  int32_t n_leaves;
  fg_node *leaves;   /* inputs and parameters the outputs need: must be bound to run */
  fg_tensor **value; /* per node: its current value (owned, bound or the graph's constant) */
  uint8_t *owned;    /* per node: value[i] allocated by the program */
  uint64_t rng_offset;
  char errmsg[768];
};

static fg_status program_fail(fg_program *p, fg_status s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static fg_status program_fail(fg_program *p, fg_status s, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(p->errmsg, sizeof p->errmsg, fmt, ap);
  va_end(ap);
  return s;
}

/* Marks every node some output depends on; returns how many compute nodes there are. */
static int32_t mark_needed(const fg_graph *g, const fg_node *outs, int n_out, uint8_t *needed) {
  int32_t n = fg_graph_node_count(g), count = 0;
  for (int j = 0; j < n_out; j++) needed[outs[j]] = 1;
  for (int32_t i = n - 1; i >= 0; i--) {
    if (!needed[i]) continue;
    for (int k = 0; k < fg_node_num_inputs(g, i); k++) needed[fg_node_input(g, i, k)] = 1;
    if (!(fg_op_get(fg_node_op(g, i))->flags & FG_OPF_LEAF)) count++;
  }
  return count;
}

static fg_status plan_buffers(fg_program *p, const uint8_t *needed, fg_err *e) {
  for (int32_t i = 0; i < p->n_nodes; i++) {
    if (!needed[i]) continue;
    const fg_node_rec *r = fg_graph_node(p->g, i);
    if (r->op == FG_OP_CONST) {
      p->value[i] = r->value;
      continue;
    }
    if (fg_op_get(r->op)->flags & FG_OPF_LEAF) { /* input or param: bound later */
      p->leaves[p->n_leaves++] = i;
      continue;
    }
    p->sched[p->n_sched++] = i;
    fg_status st = fg_tensor_new(&p->value[i], (fg_dtype)r->dtype, &r->shape, e);
    if (st != FG_OK) return st;
    p->owned[i] = 1;
  }
  return FG_OK;
}

fg_status fg_program_new(fg_program **out, fg_graph *g, int n_out, const fg_node *outs,
                         fg_err *e) {
  *out = NULL;
  if (!g) return fg_err_set(e, FG_E_MISUSE, "program: no graph");
  if (fg_graph_status(g) != FG_OK)
    return fg_err_set(e, fg_graph_status(g), "program: the graph is in error: %s",
                      fg_graph_errmsg(g));
  for (int j = 0; j < n_out; j++)
    if (!fg_node_valid(g, outs[j]))
      return fg_err_set(e, FG_E_MISUSE, "program: output %d (id %d) is not a node of the graph",
                        j, outs[j]);
  fg_program *p = calloc(1, sizeof *p);
  int32_t n = fg_graph_node_count(g);
  uint8_t *needed = calloc((size_t)n + 1, 1);
  if (p) {
    p->g = g;
    p->n_out = n_out;
    p->n_nodes = n;
    p->outs = malloc(sizeof *p->outs * ((size_t)n_out + 1));
    p->value = calloc((size_t)n + 1, sizeof *p->value);
    p->owned = calloc((size_t)n + 1, 1);
  }
  if (!p || !needed || !p->outs || !p->value || !p->owned) {
    free(needed);
    fg_program_free(p);
    return fg_err_set(e, FG_E_NOMEM, "program: out of memory planning %d nodes", n);
  }
  memcpy(p->outs, outs, sizeof *outs * (size_t)n_out);
  p->sched = malloc(sizeof *p->sched * ((size_t)mark_needed(g, outs, n_out, needed) + 1));
  p->leaves = malloc(sizeof *p->leaves * ((size_t)n + 1));
  fg_status st = p->sched && p->leaves ? plan_buffers(p, needed, e)
                          : fg_err_set(e, FG_E_NOMEM, "program: out of memory for the schedule");
  free(needed);
  if (st != FG_OK) {
    fg_program_free(p);
    return st;
  }
  *out = p;
  return FG_OK;
}

void fg_program_free(fg_program *p) {
  if (!p) return;
  if (p->value)
    for (int32_t i = 0; i < p->n_nodes; i++) {
      int op = fg_node_op(p->g, i);
      if (p->owned && p->owned[i]) fg_tensor_free(p->value[i]);
      else if (op == FG_OP_INPUT || op == FG_OP_PARAM) fg_tensor_free(p->value[i]);
    }
  free(p->value);
  free(p->owned);
  free(p->outs);
  free(p->sched);
  free(p->leaves);
  free(p);
}

fg_status fg_program_bind(fg_program *p, const char *name, const fg_tensor *t) {
  if (!p || !name || !t) return FG_E_MISUSE;
  fg_node n = fg_graph_find(p->g, name);
  if (n == FG_NONE || n >= p->n_nodes)
    return program_fail(p, FG_E_NOTFOUND, "bind: the graph has no input or parameter '%s'", name);
  fg_shape want = fg_node_shape(p->g, n);
  if (t->dtype != fg_node_dtype(p->g, n) || !fg_shape_equal(&t->shape, &want)) {
    char a[128], b[128];
    return program_fail(p, FG_E_SHAPE, "bind '%s': got %s %s, the graph expects %s %s", name,
                        fg_dtype_name(t->dtype), fg_shape_str(&t->shape, a, sizeof a),
                        fg_dtype_name(fg_node_dtype(p->g, n)), fg_shape_str(&want, b, sizeof b));
  }
  fg_err e;
  fg_tensor *v;
  /* Contiguous tensors are shared (an optimiser's in-place update is seen); a strided view
   * is copied, since kernels read contiguous memory. */
  fg_status st = fg_tensor_is_contiguous(t) ? fg_tensor_view(&v, t, &e)
                                            : fg_tensor_copy(&v, t, t->dtype, &e);
  if (st != FG_OK) return program_fail(p, st, "bind '%s': %s", name, e.msg);
  fg_tensor_free(p->value[n]);
  p->value[n] = v;
  return FG_OK;
}

static fg_status check_bound(fg_program *p) {
  for (int32_t i = 0; i < p->n_leaves; i++) {
    fg_node n = p->leaves[i];
    if (!p->value[n])
      return program_fail(p, FG_E_MISUSE, "run: %s '%s' is not bound (fg_program_bind)",
                          fg_node_op(p->g, n) == FG_OP_INPUT ? "input" : "parameter",
                          fg_node_name(p->g, n));
  }
  return FG_OK;
}

static fg_status run_node(fg_program *p, fg_node n) {
  const fg_node_rec *r = fg_graph_node(p->g, n);
  const fg_op_def *def = fg_op_get(r->op);
  enum { SMALL = 8 };
  const void *in_small[SMALL];
  fg_shape shape_small[SMALL];
  fg_dtype dtype_small[SMALL];
  bool heap = r->n_in > SMALL;
  const void **in = heap ? malloc(sizeof *in * (size_t)r->n_in) : in_small;
  fg_shape *shapes = heap ? malloc(sizeof *shapes * (size_t)r->n_in) : shape_small;
  fg_dtype *dtypes = heap ? malloc(sizeof *dtypes * (size_t)r->n_in) : dtype_small;
  if (!in || !shapes || !dtypes) {
    if (heap) free(in), free(shapes), free(dtypes);
    return program_fail(p, FG_E_NOMEM, "run: out of memory at node %d", n);
  }
  for (int k = 0; k < r->n_in; k++) {
    const fg_tensor *v = p->value[fg_node_input(p->g, n, k)];
    in[k] = fg_tensor_data(v);
    shapes[k] = v->shape;
    dtypes[k] = v->dtype;
  }
  fg_err err;
  fg_err_clear(&err);
  fg_kargs k = {.attr = r->attr, .n_in = r->n_in, .in = in, .in_shape = shapes,
                .in_dtype = dtypes, .out = fg_tensor_data(p->value[n]), .out_shape = r->shape,
                .ith = 0, .nth = 1, .rng_offset = p->rng_offset, .value = r->value, .err = &err};
  fg_kernel_fn kernel = r->dtype == FG_F64 ? def->kernel_f64 : def->kernel_f32;
  fg_status st = kernel ? kernel(&k) : FG_E_INTERNAL;
  if (heap) free(in), free(shapes), free(dtypes);
  if (st != FG_OK)
    return program_fail(p, st, "run: node %d (op '%s'%s%s): %s", n, def->name,
                        r->name ? ", named " : "", r->name ? r->name : "",
                        err.msg[0] ? err.msg : kernel ? fg_status_str(st) : "op has no kernel");
  return FG_OK;
}

fg_status fg_program_run(fg_program *p) {
  if (!p) return FG_E_MISUSE;
  p->errmsg[0] = '\0';
  fg_status st = check_bound(p);
  for (int32_t s = 0; st == FG_OK && s < p->n_sched; s++) st = run_node(p, p->sched[s]);
  return st;
}

const fg_tensor *fg_program_output(const fg_program *p, int i) {
  return (p && i >= 0 && i < p->n_out) ? p->value[p->outs[i]] : NULL;
}

int fg_program_num_outputs(const fg_program *p) { return p ? p->n_out : 0; }
void fg_program_set_rng_offset(fg_program *p, uint64_t offset) { if (p) p->rng_offset = offset; }
const char *fg_program_errmsg(const fg_program *p) { return p ? p->errmsg : "no program"; }
