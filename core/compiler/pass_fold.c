/* Constant folding: a node whose inputs are all constants (or fills) is computed once, at
 * compile time, by the same kernel that would run it (never a second arithmetic), and replaced
 * by a constant.  Outputs larger than FOLD_MAX_ELEMENTS stay in the graph: folding them would
 * trade a cheap kernel for a large constant. */
#include <stdlib.h>
#include <string.h>

#include "core/ir/op.h"
#include "core/compiler/pass.h"
#include "core/ir/op_attrs.h"

enum { FOLD_MAX_ELEMENTS = 1 << 16 };

static bool is_constant(const fg_graph *g, fg_node n) {
  int op = fg_node_op(g, n);
  return op == FG_OP_CONST || op == FG_OP_FILL;
}

/* The value of a const or fill input as a contiguous tensor (a new reference). */
static fg_tensor *value_of(const fg_graph *g, fg_node n) {
  const fg_node_rec *r = fg_graph_node(g, n);
  fg_tensor *t;
  if (r->op == FG_OP_CONST) return fg_tensor_view(&t, r->value, NULL) == FG_OK ? t : NULL;
  if (fg_tensor_new(&t, (fg_dtype)r->dtype, &r->shape, NULL) != FG_OK) return NULL;
  fg_tensor_fill(t, ((const fg_source_attr *)r->attr)->a);
  return t;
}

static bool foldable(const fg_graph *src, fg_node n, const fg_graph *dst, const fg_node *inputs) {
  const fg_node_rec *r = fg_graph_node(src, n);
  const fg_op_def *def = fg_op_get(r->op);
  if (r->n_in == 0 || r->n_in > 8 || (def->flags & (FG_OPF_LEAF | FG_OPF_RANDOM))) return false;
  if (fg_shape_count(&r->shape) > FOLD_MAX_ELEMENTS) return false;
  for (int k = 0; k < r->n_in; k++)
    if (!is_constant(dst, inputs[k])) return false;
  return true;
}

/* Runs n's kernel on constant inputs; NULL if anything fails (the node then stays, and the
 * same failure is reported when the program runs). */
static fg_tensor *evaluate(const fg_graph *src, fg_node n, const fg_graph *dst,
                           const fg_node *inputs) {
  const fg_node_rec *r = fg_graph_node(src, n);
  const fg_op_def *def = fg_op_get(r->op);
  fg_tensor *in[8] = {0}, *out = NULL;
  const void *ptr[8];
  fg_shape shapes[8];
  fg_dtype dtypes[8];
  bool ok = fg_tensor_new(&out, (fg_dtype)r->dtype, &r->shape, NULL) == FG_OK;
  for (int k = 0; ok && k < r->n_in; k++) {
    ok = (in[k] = value_of(dst, inputs[k])) != NULL;
    if (ok) ptr[k] = fg_tensor_data(in[k]), shapes[k] = in[k]->shape, dtypes[k] = in[k]->dtype;
  }
  if (ok) {
    fg_err err;
    fg_kargs ka = {.attr = r->attr, .n_in = r->n_in, .in = ptr, .in_shape = shapes,
                   .in_dtype = dtypes, .out = fg_tensor_data(out), .out_shape = r->shape,
                   .ith = 0, .nth = 1, .err = &err};
    fg_kernel_fn kernel = r->dtype == FG_F64 ? def->kernel_f64 : def->kernel_f32;
    ok = kernel && kernel(&ka) == FG_OK;
  }
  for (int k = 0; k < r->n_in; k++) fg_tensor_free(in[k]);
  if (!ok) fg_tensor_free(out);
  return ok ? out : NULL;
}

static fg_node fold_emit(fg_pass_ctx *c, fg_graph *dst, const fg_graph *src, fg_node n,
                         const fg_node *inputs, void *state) {
  (void)state;
  if (!foldable(src, n, dst, inputs)) return fg_graph_copy_node(dst, src, n, inputs);
  fg_tensor *v = evaluate(src, n, dst, inputs);
  if (!v) return fg_graph_copy_node(dst, src, n, inputs);
  fg_node k = fg_constant_take(dst, v);
  const fg_node_rec *r = fg_graph_node(src, n);
  if (k >= 0 && r->name) fg_node_set_name(dst, k, r->name);
  if (k >= 0) fg_graph_mark(dst, k, r->flags), c->changes++;
  return k;
}

fg_status fg_pass_fold(fg_pass_ctx *c) { return fg_pass_rewrite(c, fold_emit, NULL); }
