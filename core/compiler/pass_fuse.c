#include "core/compiler/pass_fuse.h"

#include <stdlib.h>
#include <string.h>

#include "core/ir/op.h"
#include "core/compiler/pass.h"

/* Fusable: elementwise, and each input is either full-size (same element count as the output)
 * or a single element — the two layouts a tile can address without broadcasting strides. */
static bool fusable(const fg_graph *g, fg_node n) {
  const fg_node_rec *r = fg_graph_node(g, n);
  const fg_op_def *def = fg_op_get(r->op);
  if (!(def->flags & FG_OPF_ELEMENTWISE) || r->n_in == 0) return false;
  int64_t count = fg_shape_count(&r->shape);
  for (int k = 0; k < r->n_in; k++) {
    fg_shape s = fg_node_shape(g, fg_node_input(g, n, k));
    int64_t c = fg_shape_count(&s);
    if (c != count && c != 1) return false;
  }
  return count > 1;
}

/* Producer p can run inside consumer c's loop. */
static bool absorbable(const fg_graph *g, const int32_t *uses, fg_node p, fg_node c) {
  fg_shape ps = fg_node_shape(g, p), cs = fg_node_shape(g, c);
  return uses[p] == 1 && fusable(g, p) && fg_shape_count(&ps) == fg_shape_count(&cs);
}

static int cmp_node(const void *a, const void *b) {
  fg_node x = *(const fg_node *)a, y = *(const fg_node *)b;
  return (x > y) - (x < y);
}

/* Collects the group rooted at `root` by walking absorbable producers (an explicit stack). */
static int32_t collect_group(const fg_graph *g, const int32_t *uses, fg_node root, fg_node *out) {
  fg_node stack[FG_FUSE_MAX_MEMBERS];
  int32_t n = 0, top = 0;
  stack[top++] = root;
  while (top > 0 && n < FG_FUSE_MAX_MEMBERS) {
    fg_node m = stack[--top];
    out[n++] = m;
    for (int k = 0; k < fg_node_num_inputs(g, m); k++) {
      fg_node p = fg_node_input(g, m, k);
      if (absorbable(g, uses, p, m) && n + top < FG_FUSE_MAX_MEMBERS) stack[top++] = p;
    }
  }
  qsort(out, (size_t)n, sizeof *out, cmp_node);
  return n;
}

fg_status fg_fusion_plan(fg_fusion *f, const fg_graph *g, int n_out, const fg_node *outs,
                         fg_err *e) {
  memset(f, 0, sizeof *f);
  int32_t n = fg_graph_node_count(g);
  int32_t *uses;
  fg_status st = fg_pass_reader_counts(&uses, g, n_out, outs, e);
  if (st != FG_OK) return st;
  f->group_of = malloc(sizeof *f->group_of * ((size_t)n + 1));
  f->n_members = malloc(sizeof *f->n_members * ((size_t)n + 1));
  f->members = malloc(sizeof *f->members * FG_FUSE_MAX_MEMBERS * ((size_t)n + 1));
  if (!f->group_of || !f->n_members || !f->members) {
    free(uses);
    fg_fusion_free(f);
    return fg_err_set(e, FG_E_NOMEM, "fusion: out of memory");
  }
  for (fg_node i = 0; i < n; i++) f->group_of[i] = -1;
  /* roots first: the highest ids, so each chain is grown from its end */
  for (fg_node root = n - 1; root >= 0; root--) {
    if (f->group_of[root] >= 0 || !fusable(g, root)) continue;
    fg_node *m = f->members + (size_t)f->n_groups * FG_FUSE_MAX_MEMBERS;
    int32_t count = collect_group(g, uses, root, m);
    if (count < 2) continue;
    for (int32_t i = 0; i < count; i++) f->group_of[m[i]] = f->n_groups;
    f->n_members[f->n_groups++] = count;
  }
  free(uses);
  return FG_OK;
}

void fg_fusion_free(fg_fusion *f) {
  free(f->group_of);
  free(f->n_members);
  free(f->members);
  memset(f, 0, sizeof *f);
}

bool fg_fusion_is_internal(const fg_fusion *f, fg_node n) {
  if (!f->group_of || f->group_of[n] < 0) return false;
  int32_t gi = f->group_of[n];
  return f->members[(size_t)gi * FG_FUSE_MAX_MEMBERS + f->n_members[gi] - 1] != n;
}
