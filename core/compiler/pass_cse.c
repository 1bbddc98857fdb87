/* Common-subexpression merging.  A node's key is XXH3 over (op, dtype, shape, attribute bytes,
 * input ids in the new graph, and a constant's data); every hash hit is confirmed by a full
 * structural compare, so a collision can never merge two different nodes.  Commutative ops
 * have their two inputs sorted first; random ops and named leaves are never merged. */
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "core/ir/op.h"
#include "core/compiler/pass.h"

typedef struct cse_table {
  uint64_t *hash;
  fg_node *node; /* FG_NONE = empty slot */
  size_t cap;    /* power of two */
} cse_table;

static bool mergeable(const fg_op_def *def, int op) {
  if (def->flags & FG_OPF_RANDOM) return false;
  return op != FG_OP_INPUT && op != FG_OP_PARAM;
}

/* The inputs as compared: sorted for commutative ops, so a+b and b+a meet. */
static void canonical_inputs(const fg_op_def *def, int n_in, const fg_node *in, fg_node *out) {
  memcpy(out, in, sizeof *in * (size_t)n_in);
  if ((def->flags & FG_OPF_COMMUTATIVE) && n_in == 2 && out[0] > out[1]) {
    fg_node t = out[0];
    out[0] = out[1], out[1] = t;
  }
}

static uint64_t key_of(const fg_node_rec *r, const fg_op_def *def, const fg_node *in) {
  uint64_t h = XXH3_64bits_withSeed(&r->op, sizeof r->op, 0x666c6f77ull);
  h = XXH3_64bits_withSeed(&r->dtype, sizeof r->dtype, h);
  h = XXH3_64bits_withSeed(r->shape.d, sizeof *r->shape.d * (size_t)r->shape.ndim,
                           h ^ (uint64_t)r->shape.ndim);
  if (def->attr_size) h = XXH3_64bits_withSeed(r->attr, def->attr_size, h);
  if (r->n_in) h = XXH3_64bits_withSeed(in, sizeof *in * (size_t)r->n_in, h);
  if (r->value) {
    size_t bytes = (size_t)fg_tensor_numel(r->value) * fg_dtype_size(r->value->dtype);
    h = XXH3_64bits_withSeed(fg_tensor_data(r->value), bytes, h);
  }
  return h;
}

static bool same_node(const fg_graph *dst, fg_node existing, const fg_node_rec *r,
                      const fg_op_def *def, const fg_node *in) {
  const fg_node_rec *e = fg_graph_node(dst, existing);
  if (e->op != r->op || e->dtype != r->dtype || e->n_in != r->n_in ||
      !fg_shape_equal(&e->shape, &r->shape))
    return false;
  if (def->attr_size && memcmp(e->attr, r->attr, def->attr_size) != 0) return false;
  fg_node ein[2];
  for (int k = 0; k < r->n_in; k++) {
    fg_node a = fg_node_input(dst, existing, k);
    if (r->n_in == 2 && (def->flags & FG_OPF_COMMUTATIVE)) {
      ein[0] = fg_node_input(dst, existing, 0), ein[1] = fg_node_input(dst, existing, 1);
      canonical_inputs(def, 2, ein, ein);
      a = ein[k];
    }
    if (a != in[k]) return false;
  }
  if (r->value) {
    size_t bytes = (size_t)fg_tensor_numel(r->value) * fg_dtype_size(r->value->dtype);
    if (memcmp(fg_tensor_data(e->value), fg_tensor_data(r->value), bytes) != 0) return false;
  }
  return true;
}

static fg_node cse_emit(fg_pass_ctx *c, fg_graph *dst, const fg_graph *src, fg_node n,
                        const fg_node *inputs, void *state) {
  cse_table *t = state;
  const fg_node_rec *r = fg_graph_node(src, n);
  const fg_op_def *def = fg_op_get(r->op);
  if (!mergeable(def, r->op) || r->n_in > 16) return fg_graph_copy_node(dst, src, n, inputs);
  fg_node in[16];
  canonical_inputs(def, r->n_in, inputs, in);
  uint64_t h = key_of(r, def, in);
  size_t slot = (size_t)h & (t->cap - 1);
  for (; t->node[slot] != FG_NONE; slot = (slot + 1) & (t->cap - 1))
    if (t->hash[slot] == h && same_node(dst, t->node[slot], r, def, in)) {
      c->changes++;
      return t->node[slot];
    }
  fg_node copy = fg_graph_copy_node(dst, src, n, inputs);
  t->hash[slot] = h;
  t->node[slot] = copy;
  return copy;
}

fg_status fg_pass_cse(fg_pass_ctx *c) {
  cse_table t = {.cap = 64};
  while (t.cap < 2 * (size_t)fg_graph_node_count(c->g) + 2) t.cap *= 2;
  t.hash = malloc(sizeof *t.hash * t.cap);
  t.node = malloc(sizeof *t.node * t.cap);
  fg_status st;
  if (!t.hash || !t.node) st = fg_err_set(c->e, FG_E_NOMEM, "cse: out of memory");
  else {
    for (size_t i = 0; i < t.cap; i++) t.node[i] = FG_NONE;
    st = fg_pass_rewrite(c, cse_emit, &t);
  }
  free(t.hash);
  free(t.node);
  return st;
}
