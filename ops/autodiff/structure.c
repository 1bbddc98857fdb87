/* The dependency structure of y on x (see structure.h).  One sweep over the nodes between x and
 * y in id order (a topological order): each node's per-sample dependency sets are the union,
 * over the "edges" its op's rule lists (output element e reads input k's element e'), of its
 * inputs' sets; bit sets of D bits per element, freed once a node's last reader is done. */
#include "ops/autodiff/structure.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/ir/op.h"
#include "core/ir/op_attrs.h"
#include "core/vec.h"

enum { DEP_NONE, DEP_SETS, DEP_FULL };
/* Bit sets alive at once; beyond this the analysis gives up (the dense route remains). */
#define BUDGET_BYTES ((size_t)256 << 20)

typedef struct node_dep {
  uint8_t kind;
  bool direct;
  int64_t n;      /* elements per sample */
  fg_shape shape; /* the per-sample shape: the node's without axis 0 */
  uint64_t *bits; /* n sets of W words */
  int32_t *pos;   /* direct nodes: the one x element each element depends on directly, or -1 */
} node_dep;

typedef struct analysis {
  const fg_graph *g;
  fg_node x, y;
  int64_t batch, D, W;
  node_dep *dep;    /* node n at dep[n - x] */
  fg_node *last_use;
  uint8_t *reaches; /* node n reaches y */
  size_t live;
  bool cut_ok;
  uint8_t *is_cut;
  fg_node *cuts;
  int64_t n_cuts, cap_cuts;
  char why[160];     /* why no structure: the first reason met */
  char cut_why[160]; /* why the cuts do not give the diagonal */
} analysis;

static void give_up(analysis *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void give_up(analysis *a, const char *fmt, ...) {
  if (a->why[0]) return; /* the first reason is the one to report */
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(a->why, sizeof a->why, fmt, ap);
  va_end(ap);
}

static node_dep *dep_of(analysis *a, fg_node n) {
  return n >= a->x && n <= a->y ? &a->dep[n - a->x] : NULL;
}

static uint8_t kind_of(analysis *a, fg_node n) {
  node_dep *d = dep_of(a, n);
  return d ? d->kind : DEP_NONE;
}

static void release(analysis *a, node_dep *d) {
  if (d->bits) a->live -= (size_t)d->n * (size_t)a->W * sizeof *d->bits;
  free(d->bits), free(d->pos);
  d->bits = NULL, d->pos = NULL;
}

/* ---- per-sample coordinates ---- */

static void unravel(const fg_shape *s, int64_t flat, int64_t *c) {
  for (int d = (int)s->ndim - 1; d >= 0; d--) {
    c[d] = s->d[d] ? flat % s->d[d] : 0;
    flat = s->d[d] ? flat / s->d[d] : 0;
  }
}

static int64_t ravel(const fg_shape *s, const int64_t *c) {
  int64_t flat = 0;
  for (int d = 0; d < s->ndim; d++) flat = flat * s->d[d] + c[d];
  return flat;
}

/* c read by a shape that broadcasts to c's shape (size-1 axes read at 0). */
static int64_t ravel_bcast(const fg_shape *s, const int64_t *c) {
  int64_t flat = 0;
  for (int d = 0; d < s->ndim; d++) flat = flat * s->d[d] + (s->d[d] == 1 ? 0 : c[d]);
  return flat;
}

/* ---- one node: its rule lists edges, emit consumes them ---- */

typedef struct pass pass;
struct pass {
  analysis *a;
  fg_node n;
  node_dep *out;
  int n_in;
  node_dep **in;    /* NULL for inputs that carry no dependency */
  uint8_t *direct;  /* input k is direct */
  bool conflict;    /* an element reads two different x elements directly */
  void (*emit)(pass *p, int64_t out_e, int k, int64_t in_e);
};

static void union_edge(pass *p, int64_t out_e, int k, int64_t in_e) {
  const node_dep *in = p->in[k];
  if (!in) return;
  int64_t w = p->a->W;
  uint64_t *dst = p->out->bits + out_e * w;
  const uint64_t *src = in->bits + in_e * w;
  for (int64_t i = 0; i < w; i++) dst[i] |= src[i];
  if (!p->direct[k] || !p->out->pos) return;
  int32_t from = in->pos[in_e], *to = &p->out->pos[out_e];
  if (from < 0) return;
  if (*to < 0) *to = from;
  else if (*to != from) p->conflict = true;
}

/* A cut element may feed an element of a direct node only if it does not depend on the x
 * element that element directly depends on (on none, for an element with no direct one). */
static void check_edge(pass *p, int64_t out_e, int k, int64_t in_e) {
  if (!p->in[k] || p->direct[k]) return;
  const uint64_t *src = p->in[k]->bits + in_e * p->a->W;
  int32_t at = p->out->pos[out_e];
  bool hit = false;
  if (at >= 0) hit = (src[at / 64] >> (at % 64)) & 1u;
  else
    for (int64_t i = 0; i < p->a->W && !hit; i++) hit = src[i] != 0;
  if (hit && p->a->cut_ok) {
    p->a->cut_ok = false;
    snprintf(p->a->cut_why, sizeof p->a->cut_why, "a value computed from x_i feeds y_i both "
             "directly and through node %d", fg_node_input(p->a->g, p->n, k));
  }
}

/* ---- the rules: each returns false for a case it does not cover ---- */

static const fg_shape *in_shape(const pass *p, int k) { return &p->in[k]->shape; }

static bool rule_elementwise(pass *p) {
  int64_t c[FG_MAX_DIMS];
  for (int k = 0; k < p->n_in; k++)
    if (p->in[k] && in_shape(p, k)->ndim != p->out->shape.ndim) return false;
  for (int64_t e = 0; e < p->out->n; e++) {
    unravel(&p->out->shape, e, c);
    for (int k = 0; k < p->n_in; k++)
      if (p->in[k]) p->emit(p, e, k, ravel_bcast(in_shape(p, k), c));
  }
  return true;
}

static bool rule_identity(pass *p) {
  if (!p->in[0] || p->in[0]->n != p->out->n) return false;
  for (int64_t e = 0; e < p->out->n; e++) p->emit(p, e, 0, e);
  return true;
}

static bool rule_slice(pass *p, const fg_slice_attr *at) {
  if (at->start[0] != 0 || at->step[0] != 1 || at->stop[0] != p->a->batch) return false;
  int64_t c[FG_MAX_DIMS];
  for (int64_t e = 0; e < p->out->n; e++) {
    unravel(&p->out->shape, e, c);
    for (int d = 0; d < p->out->shape.ndim; d++) c[d] = at->start[d + 1] + c[d] * at->step[d + 1];
    p->emit(p, e, 0, ravel(in_shape(p, 0), c));
  }
  return true;
}

static bool rule_pad(pass *p, const fg_pad_attr *at) {
  if (at->lo[0] || at->hi[0] || at->interior[0]) return false;
  int64_t c[FG_MAX_DIMS];
  for (int64_t e = 0; e < p->out->n; e++) {
    unravel(&p->out->shape, e, c);
    bool inside = true;
    for (int d = 0; d < p->out->shape.ndim && inside; d++) {
      int64_t t = c[d] - at->lo[d + 1], every = at->interior[d + 1] + 1;
      inside = t >= 0 && t % every == 0 && t / every < in_shape(p, 0)->d[d];
      c[d] = t / every;
    }
    if (inside) p->emit(p, e, 0, ravel(in_shape(p, 0), c));
  }
  return true;
}

static bool rule_concat(pass *p, const fg_concat_attr *at) {
  int ax = at->axis - 1;
  if (ax < 0) return false;
  const fg_graph *g = p->a->g;
  int64_t c[FG_MAX_DIMS];
  for (int64_t e = 0; e < p->out->n; e++) {
    unravel(&p->out->shape, e, c);
    int k = 0;
    for (int64_t len; c[ax] >= (len = fg_node_shape(g, fg_node_input(g, p->n, k)).d[ax + 1]); k++)
      c[ax] -= len;
    if (p->in[k]) p->emit(p, e, k, ravel(in_shape(p, k), c));
  }
  return true;
}

static bool rule_permute(pass *p, const fg_permute_attr *at) {
  if (at->perm[0] != 0) return false;
  int64_t c[FG_MAX_DIMS], ci[FG_MAX_DIMS];
  for (int64_t e = 0; e < p->out->n; e++) {
    unravel(&p->out->shape, e, c);
    for (int d = 0; d < p->out->shape.ndim; d++) ci[at->perm[d + 1] - 1] = c[d];
    p->emit(p, e, 0, ravel(in_shape(p, 0), ci));
  }
  return true;
}

static bool rule_reduce(pass *p, const fg_reduce_attr *at) {
  if (at->axes & 1u) return false; /* over the batch */
  const fg_shape *is = in_shape(p, 0);
  int64_t c[FG_MAX_DIMS], oc[FG_MAX_DIMS];
  for (int64_t e = 0; e < p->in[0]->n; e++) {
    unravel(is, e, c);
    int j = 0;
    for (int d = 0; d < is->ndim; d++) {
      bool reduced = (at->axes >> (d + 1)) & 1u;
      if (!reduced) oc[j++] = c[d];
      else if (at->keepdims) oc[j++] = 0;
    }
    p->emit(p, ravel(&p->out->shape, oc), 0, e);
  }
  return true;
}

static bool rule_gather(pass *p, const fg_gather_attr *at) {
  int ax = at->axis - 1;
  if (ax < 0 || !p->in[0] || in_shape(p, 0)->ndim != p->out->shape.ndim) return false;
  const fg_shape *ds = in_shape(p, 0);
  int64_t c[FG_MAX_DIMS];
  for (int64_t e = 0; e < p->out->n; e++) {
    unravel(&p->out->shape, e, c);
    for (int64_t t = 0; t < ds->d[ax]; t++) { /* the index is not known: any element */
      c[ax] = t;
      p->emit(p, e, 0, ravel_bcast(ds, c));
    }
  }
  return true;
}

static bool rule_cumsum(pass *p, const fg_cumsum_attr *at) {
  int ax = at->axis - 1;
  if (ax < 0) return false;
  int64_t c[FG_MAX_DIMS];
  for (int64_t e = 0; e < p->out->n; e++) {
    unravel(&p->out->shape, e, c);
    int64_t mine = c[ax], n = p->out->shape.d[ax];
    for (int64_t t = at->reverse ? mine : 0; t < (at->reverse ? n : mine + 1); t++) {
      c[ax] = t;
      p->emit(p, e, 0, ravel(&p->out->shape, c));
    }
  }
  return true;
}

/* Which elements of an x-independent matrix may be non-zero: a constant's, a fill's, and for a
 * product the elements neither factor zeroes (a MADE weight times its mask); casts are looked
 * through, anything else may be non-zero anywhere. */
static fg_node through_casts(const fg_graph *g, fg_node n) {
  while (fg_node_op(g, n) == FG_OP_CAST) n = fg_node_input(g, n, 0);
  return n;
}

static void leaf_nonzero(const fg_graph *g, fg_node n, int64_t count, uint8_t *nz) {
  n = through_casts(g, n);
  const fg_node_rec *r = fg_graph_node(g, n);
  fg_shape s = fg_node_shape(g, n);
  bool known = fg_shape_count(&s) == count;
  for (int64_t i = 0; i < count; i++)
    nz[i] = !known || r->op == FG_OP_PARAM || r->op == FG_OP_INPUT ? 1
            : r->op == FG_OP_CONST ? fg_tensor_get(r->value, i) != 0
            : r->op == FG_OP_FILL  ? ((const fg_source_attr *)r->attr)->a != 0
                                   : 1;
}

static void nonzero_pattern(const fg_graph *g, fg_node n, int64_t count, uint8_t *nz) {
  n = through_casts(g, n);
  if (fg_node_op(g, n) != FG_OP_MUL) {
    leaf_nonzero(g, n, count, nz);
    return;
  }
  uint8_t *other = malloc((size_t)count + 1);
  leaf_nonzero(g, fg_node_input(g, n, 0), count, nz);
  if (!other) return; /* keeps the first factor's pattern: still a superset of the product's */
  leaf_nonzero(g, fg_node_input(g, n, 1), count, other);
  for (int64_t i = 0; i < count; i++) nz[i] &= other[i];
  free(other);
}

/* matmul with one x-dependent operand [batch, ..., r, c] (rank >= 3, or [batch, k] on the left)
 * and an x-independent matrix on the other side. */
static bool rule_matmul(pass *p, const fg_matmul_attr *at) {
  const fg_graph *g = p->a->g;
  int dk = p->in[0] ? 0 : 1, wk = 1 - dk;
  if (!p->in[dk] || p->in[wk]) return false; /* both sides depend on x */
  fg_shape ws = fg_node_shape(g, fg_node_input(g, p->n, wk)), ds = *in_shape(p, dk);
  for (int d = 0; d + 2 < ws.ndim; d++)
    if (ws.d[d] != 1) return false;
  bool vec = ds.ndim == 1; /* [batch, k] @ W */
  if (vec && (dk != 0 || at->trans_a)) return false;
  int64_t wr = ws.d[ws.ndim - 2], wc = ws.d[ws.ndim - 1], inner = vec ? ds.d[0] : 0;
  uint8_t *nz = malloc((size_t)(wr * wc) + 1);
  if (!nz) return false;
  nonzero_pattern(g, fg_node_input(g, p->n, wk), wr * wc, nz);
  bool wt = dk == 0 ? at->trans_b : at->trans_a, xt = dk == 0 ? at->trans_a : at->trans_b;
  if (!vec) inner = dk == 0 ? ds.d[ds.ndim - (xt ? 2 : 1)] : ds.d[ds.ndim - (xt ? 1 : 2)];
  int64_t c[FG_MAX_DIMS], dc[FG_MAX_DIMS];
  int last = (int)p->out->shape.ndim - 1;
  for (int64_t e = 0; e < p->out->n; e++) {
    unravel(&p->out->shape, e, c);
    memcpy(dc, c, sizeof c);
    int64_t i = vec ? 0 : c[last - 1], j = c[last];
    for (int64_t l = 0; l < inner; l++) {
      /* W(l, j) on the right, W(i, l) on the left, stored transposed or not */
      int64_t r = dk == 0 ? l : i, col = dk == 0 ? j : l;
      if (!nz[wt ? col * wc + r : r * wc + col]) continue;
      if (vec) dc[0] = l;
      else if (dk == 0) dc[last - 1] = xt ? l : i, dc[last] = xt ? i : l;
      else dc[last - 1] = xt ? j : l, dc[last] = xt ? l : j;
      p->emit(p, e, dk, ravel_bcast(&ds, dc));
    }
  }
  free(nz);
  return true;
}

static bool apply_rule(pass *p) {
  const fg_graph *g = p->a->g;
  int op = fg_node_op(g, p->n);
  const void *attr = fg_node_attr(g, p->n);
  if (fg_op_get(op)->flags & FG_OPF_ELEMENTWISE) return rule_elementwise(p);
  switch (op) {
  case FG_OP_BROADCAST_TO: return rule_elementwise(p);
  case FG_OP_RESHAPE:
  case FG_OP_AFTER: return rule_identity(p);
  case FG_OP_SLICE: return rule_slice(p, attr);
  case FG_OP_PAD: return rule_pad(p, attr);
  case FG_OP_CONCAT: return rule_concat(p, attr);
  case FG_OP_PERMUTE: return rule_permute(p, attr);
  case FG_OP_SUM:
  case FG_OP_MAX: return rule_reduce(p, attr);
  case FG_OP_MATMUL: return rule_matmul(p, attr);
  case FG_OP_GATHER: return rule_gather(p, attr);
  case FG_OP_CUMSUM: return rule_cumsum(p, attr);
  default: return false;
  }
}

/* ---- the sweep ---- */

static bool alloc_sets(analysis *a, node_dep *d, const fg_shape *full) {
  d->shape.ndim = full->ndim - 1;
  for (int i = 1; i < full->ndim; i++) d->shape.d[i - 1] = full->d[i];
  d->n = fg_shape_count(&d->shape);
  size_t bytes = (size_t)d->n * (size_t)a->W * sizeof *d->bits;
  if (a->live + bytes > BUDGET_BYTES) return false;
  d->bits = calloc((size_t)d->n * (size_t)a->W + 1, sizeof *d->bits);
  if (d->bits) a->live += bytes;
  return d->bits != NULL;
}

static bool add_cut(analysis *a, fg_node c) {
  if (a->is_cut[c - a->x]) return true;
  if (!FG_VEC_RESERVE(a->cuts, a->cap_cuts, a->n_cuts + 1)) return false;
  a->is_cut[c - a->x] = 1;
  a->cuts[a->n_cuts++] = c;
  return true;
}

/* The inputs that carry a dependency into node n: differentiable and depending on x. */
static int dependent_inputs(analysis *a, fg_node n, pass *p, bool *full) {
  const fg_op_def *def = fg_op_get(fg_node_op(a->g, n));
  int count = 0;
  for (int k = 0; k < p->n_in; k++) {
    fg_node in = fg_node_input(a->g, n, k);
    bool nondiff = (def->flags & (FG_OPF_NODIFF | FG_OPF_LEAF)) ||
                   (k < 32 && (def->nondiff_inputs >> k) & 1u);
    if (nondiff || kind_of(a, in) == DEP_NONE) continue;
    if (kind_of(a, in) == DEP_FULL) *full = true;
    p->in[k] = dep_of(a, in);
    p->direct[k] = p->in[k]->direct;
    count++;
  }
  return count;
}

/* Fills node n's sets (and, when it is direct, its positions and cuts); false when out of
 * memory. */
static bool visit(analysis *a, fg_node n, pass *p) {
  node_dep *out = dep_of(a, n);
  bool full = false;
  if (!dependent_inputs(a, n, p, &full)) return true; /* DEP_NONE */
  out->kind = DEP_FULL;
  const char *op = fg_op_get(fg_node_op(a->g, n))->name;
  fg_shape s = fg_node_shape(a->g, n);
  if (full) return true;
  if (s.ndim < 1 || s.d[0] != a->batch) {
    give_up(a, "node %d (op '%s') moves or drops the batch axis", n, op);
    return true;
  }
  if (!alloc_sets(a, out, &s)) {
    give_up(a, "the analysis would need more than %zu MB", BUDGET_BYTES >> 20);
    return true;
  }
  bool any_direct = false;
  for (int k = 0; k < p->n_in; k++) any_direct |= p->in[k] && p->direct[k];
  if (any_direct && !(out->pos = malloc(sizeof *out->pos * (size_t)(out->n + 1)))) return false;
  for (int64_t e = 0; any_direct && e < out->n; e++) out->pos[e] = -1;
  p->out = out, p->emit = union_edge;
  if (!apply_rule(p)) {
    give_up(a, "node %d (op '%s') has no structure rule for its operands", n, op);
    release(a, out);
    return true;
  }
  out->kind = DEP_SETS;
  out->direct = any_direct && !p->conflict;
  if (!out->direct) {
    free(out->pos);
    out->pos = NULL;
    return true;
  }
  p->emit = check_edge;
  apply_rule(p);
  for (int k = 0; k < p->n_in; k++)
    if (p->in[k] && !p->direct[k] && !add_cut(a, fg_node_input(a->g, n, k))) return false;
  return true;
}

static bool sweep(analysis *a) {
  int max_in = 1;
  for (fg_node n = a->x + 1; n <= a->y; n++)
    if (fg_node_num_inputs(a->g, n) > max_in) max_in = fg_node_num_inputs(a->g, n);
  pass p = {.a = a};
  p.in = calloc((size_t)max_in, sizeof *p.in);
  p.direct = calloc((size_t)max_in, 1);
  bool ok = p.in && p.direct;
  for (fg_node n = a->x + 1; ok && n <= a->y; n++) {
    if (!a->reaches[n - a->x]) continue;
    p.n = n, p.n_in = fg_node_num_inputs(a->g, n), p.conflict = false, p.out = NULL;
    memset(p.in, 0, sizeof *p.in * (size_t)p.n_in);
    memset(p.direct, 0, (size_t)p.n_in);
    ok = visit(a, n, &p);
    for (int k = 0; k < p.n_in; k++) { /* inputs read for the last time */
      fg_node in = fg_node_input(a->g, n, k);
      if (in > a->x && in != a->y && a->last_use[in - a->x] == n) release(a, dep_of(a, in));
    }
  }
  free(p.in), free(p.direct);
  return ok;
}

/* ---- what y's sets say ---- */

static bool bit(const uint64_t *set, int64_t i) { return (set[i / 64] >> (i % 64)) & 1u; }

static bool is_diagonal(const analysis *a, const node_dep *y) {
  for (int64_t i = 0; i < y->n; i++)
    for (int64_t w = 0; w < a->W; w++) {
      uint64_t own = i / 64 == w ? (uint64_t)1 << (i % 64) : 0;
      if (y->bits[i * a->W + w] & ~own) return false;
    }
  return true;
}

/* Triangular in some order: the graph "y_i depends on x_j" (j != i) has no cycle (Kahn). */
static bool is_triangular(const analysis *a, const node_dep *y) {
  int64_t w = a->W, left = y->n;
  uint64_t *done = calloc((size_t)w + 1, sizeof *done);
  if (!done) return false;
  for (bool progress = true; progress && left > 0;) {
    progress = false;
    for (int64_t i = 0; i < y->n; i++) {
      if (bit(done, i)) continue;
      bool ready = true;
      for (int64_t k = 0; k < w && ready; k++) {
        uint64_t own = i / 64 == k ? (uint64_t)1 << (i % 64) : 0;
        ready = (y->bits[i * w + k] & ~own & ~done[k]) == 0;
      }
      if (ready) done[i / 64] |= (uint64_t)1 << (i % 64), left--, progress = true;
    }
  }
  free(done);
  return left == 0;
}

static void classify(analysis *a, fg_structure *out) {
  node_dep *y = dep_of(a, a->y);
  if (y->kind == DEP_FULL) return;
  if (y->kind == DEP_NONE) { /* y does not depend on x: a zero diagonal */
    out->kind = FG_JACOBIAN_DIAGONAL;
    out->diagonal_by_cut = true;
    return;
  }
  if (is_diagonal(a, y)) out->kind = FG_JACOBIAN_DIAGONAL;
  else if (is_triangular(a, y)) out->kind = FG_JACOBIAN_TRIANGULAR;
  else {
    give_up(a, "y's elements depend on x's in a cycle (neither diagonal nor triangular)");
    return;
  }
  bool aligned = y->direct;
  for (int64_t i = 0; aligned && i < y->n; i++) aligned = y->pos[i] < 0 || y->pos[i] == i;
  if (!aligned) give_up(a, "y is not an elementwise function of x once its conditioners are fixed");
  else if (!a->cut_ok) give_up(a, "%s", a->cut_why);
  out->diagonal_by_cut = aligned && a->cut_ok;
}

static bool prepare(analysis *a) {
  int64_t span = a->y - a->x + 1;
  a->dep = calloc((size_t)span, sizeof *a->dep);
  a->last_use = malloc(sizeof *a->last_use * (size_t)span);
  a->reaches = calloc((size_t)span, 1);
  a->is_cut = calloc((size_t)span, 1);
  if (!a->dep || !a->last_use || !a->reaches || !a->is_cut) return false;
  a->reaches[span - 1] = 1;
  for (int64_t i = 0; i < span; i++) a->last_use[i] = FG_NONE;
  for (fg_node n = a->y; n > a->x; n--) {
    for (int k = 0; k < fg_node_num_inputs(a->g, n); k++) {
      fg_node in = fg_node_input(a->g, n, k);
      if (in < a->x || !a->reaches[n - a->x]) continue;
      a->reaches[in - a->x] = 1;
      if (a->last_use[in - a->x] < n) a->last_use[in - a->x] = n;
    }
  }
  node_dep *x = &a->dep[0];
  fg_shape xs = fg_node_shape(a->g, a->x);
  if (!alloc_sets(a, x, &xs) || !(x->pos = malloc(sizeof *x->pos * (size_t)(x->n + 1))))
    return false;
  x->kind = DEP_SETS, x->direct = true;
  for (int64_t e = 0; e < x->n; e++) {
    x->bits[e * a->W + e / 64] = (uint64_t)1 << (e % 64);
    x->pos[e] = (int32_t)e;
  }
  return true;
}

fg_status fg_structure_find(fg_structure *out, const fg_graph *g, fg_node x, fg_node y) {
  memset(out, 0, sizeof *out);
  out->kind = FG_JACOBIAN_DENSE;
  fg_shape xs = fg_node_shape(g, x);
  analysis a = {.g = g, .x = x, .y = y, .cut_ok = true};
  a.batch = xs.ndim ? xs.d[0] : 0;
  a.D = a.batch ? fg_shape_count(&xs) / a.batch : 0;
  a.W = (a.D + 63) / 64;
  if (y < x || a.D < 1 || a.D > INT32_MAX) {
    snprintf(out->why, sizeof out->why, "x and y are not a batch of events in order");
    return FG_OK;
  }
  bool ok = prepare(&a) && sweep(&a);
  if (ok) classify(&a, out);
  snprintf(out->why, sizeof out->why, "%s", a.why);
  if (ok && out->diagonal_by_cut) {
    out->cuts = a.cuts, out->n_cuts = (int)a.n_cuts;
    a.cuts = NULL;
  }
  for (int64_t i = 0; a.dep && i <= y - x; i++) release(&a, &a.dep[i]);
  free(a.dep), free(a.last_use), free(a.reaches), free(a.is_cut), free(a.cuts);
  return ok ? FG_OK : FG_E_NOMEM;
}

void fg_structure_free(fg_structure *s) {
  free(s->cuts);
  s->cuts = NULL, s->n_cuts = 0;
}
