/* Shape ops: reshape, permute, slice, pad, concat, broadcast_to and after.  None computes anything;
 * each moves elements, so each kernel is a walk over its share of the output:
 *  - reshape, permute, slice and broadcast_to are one strided gather (output axis i steps the
 *    input by stride[i]), differing only in how they make the strides;
 *  - concat copies contiguous runs from each input in turn;
 *  - pad fills with the constant and drops the input elements into place.
 *  - after is its first input, copied only when it cannot run in place.
 * Their VJPs are each other: slice <-> pad, concat -> slices, broadcast_to -> sum_to. */
#include <stdio.h>
#include <string.h>

#include "core/ir/op.h"
#include "ops/ops.h"

/* ---- helpers for shape rules and builders ---- */

/* "[1, 0, 2]" for n int64 values. */
static const char *ints_str(const int64_t *v, int n, char *buf, size_t cap) {
  size_t used = (size_t)snprintf(buf, cap, "[");
  for (int i = 0; i < n && used < cap; i++)
    used += (size_t)snprintf(buf + used, cap - used, i ? ", %lld" : "%lld", (long long)v[i]);
  if (used < cap) snprintf(buf + used, cap - used, "]");
  return buf;
}

/* Checks a target shape given as an attribute (reshape, broadcast_to). */
static fg_status check_target(const fg_shape *s, char *why, size_t cap) {
  if (s->ndim < 0 || s->ndim > FG_MAX_DIMS) {
    snprintf(why, cap, "target shape has %d dimensions; flowgrad supports 0 to %d", (int)s->ndim,
             FG_MAX_DIMS);
    return FG_E_SHAPE;
  }
  char buf[160];
  for (int i = 0; i < s->ndim; i++) {
    if (s->d[i] < 0) {
      snprintf(why, cap, "target shape %s has a negative size on axis %d",
               fg_shape_str(s, buf, sizeof buf), i);
      return FG_E_SHAPE;
    }
  }
  int64_t n;
  if (fg_shape_numel(s, &n, NULL) != FG_OK) {
    snprintf(why, cap, "target shape %s has more elements than int64 holds",
             fg_shape_str(s, buf, sizeof buf));
    return FG_E_OVERFLOW;
  }
  return FG_OK;
}

/* A shape as an attribute: dimensions past ndim zeroed, since attributes hash bytewise. */
static fg_shape attr_shape(const fg_shape *s) {
  fg_shape out;
  memset(&out, 0, sizeof out);
  out.ndim = s->ndim;
  int n = s->ndim < 0 ? 0 : s->ndim > FG_MAX_DIMS ? FG_MAX_DIMS : s->ndim;
  for (int i = 0; i < n; i++) out.d[i] = s->d[i];
  return out;
}

/* True when x already has `shape`, so a reshape or broadcast to it is x itself.  Never true
 * once the graph is in error, so builders still return FG_POISON then. */
static bool already_shaped(fg_graph *g, fg_node x, const fg_shape *shape) {
  if (fg_graph_status(g) != FG_OK || !fg_node_valid(g, x)) return false;
  fg_shape xs = fg_node_shape(g, x);
  return fg_shape_equal(&xs, shape);
}

/* Fails the graph for a check only a builder can make (it has no attribute to carry the bad
 * value to the shape rule), worded like the graph's own shape errors:
 * "op 'slice' on inputs float32 [2, 3]: <why>". */
static fg_node fail_like_infer(fg_graph *g, const char *op, fg_node x, const char *why) {
  char buf[160];
  fg_shape xs = fg_node_shape(g, x);
  return fg_graph_fail(g, FG_E_SHAPE, "op '%s' on inputs %s %s: %s", op,
                       fg_dtype_name(fg_node_dtype(g, x)), fg_shape_str(&xs, buf, sizeof buf), why);
}

/* Python-style negative axis, counted from the end of x's axes. */
static int normalize_axis(fg_graph *g, fg_node x, int axis) {
  return axis < 0 ? axis + fg_node_shape(g, x).ndim : axis;
}

/* ---- the strided gather shared by reshape, permute, slice and broadcast_to ---- */

typedef struct gather_plan {
  int ndim;                    /* >= 1 */
  int64_t d[FG_MAX_DIMS];      /* output shape */
  int64_t stride[FG_MAX_DIMS]; /* input step per unit of output axis i (0: broadcast) */
  int64_t base;                /* input offset of output element 0 */
} gather_plan;

static void gather_plan_init(gather_plan *p, const fg_shape *out) {
  memset(p, 0, sizeof *p);
  p->ndim = out->ndim;
  for (int i = 0; i < out->ndim; i++) p->d[i] = out->d[i];
}

/* Merges output axes that the input steps through as one (a contiguous pair), so that the
 * inner loop runs as long as possible; a 0-d output becomes [1]. */
static void gather_plan_simplify(gather_plan *p) {
  int n = 0;
  for (int i = 0; i < p->ndim; i++) {
    if (p->d[i] == 1) continue;
    if (n > 0 && p->stride[n - 1] == p->stride[i] * p->d[i]) {
      p->d[n - 1] *= p->d[i];
      p->stride[n - 1] = p->stride[i];
    } else {
      p->d[n] = p->d[i];
      p->stride[n++] = p->stride[i];
    }
  }
  if (n == 0) p->d[n] = 1, p->stride[n++] = 0;
  p->ndim = n;
}

/* Position of the walk over the output: its multi-index and the input offset there. */
typedef struct gather_cursor {
  int64_t idx[FG_MAX_DIMS];
  int64_t off;
} gather_cursor;

static void gather_cursor_start(gather_cursor *c, const gather_plan *p, int64_t flat) {
  c->off = p->base;
  for (int i = p->ndim - 1; i >= 0; i--) {
    c->idx[i] = flat % p->d[i];
    flat /= p->d[i];
    c->off += c->idx[i] * p->stride[i];
  }
}

/* Elements left on the current innermost row, at most `limit`. */
static int64_t gather_cursor_run(const gather_cursor *c, const gather_plan *p, int64_t limit) {
  int64_t left = p->d[p->ndim - 1] - c->idx[p->ndim - 1];
  return left < limit ? left : limit;
}

/* Moves `run` elements on along the innermost row, carrying into outer axes at its end. */
static void gather_cursor_skip(gather_cursor *c, const gather_plan *p, int64_t run) {
  int last = p->ndim - 1;
  c->idx[last] += run;
  c->off += run * p->stride[last];
  for (int i = last; i > 0 && c->idx[i] == p->d[i]; i--) {
    c->off += p->stride[i - 1] - c->idx[i] * p->stride[i];
    c->idx[i] = 0;
    c->idx[i - 1]++;
  }
}

/* The kernel's share of the output through plan p.  Each output element is one load and one
 * store, so any split of the output gives the same bits. */
#define DEFINE_GATHER(T, sfx)                                                              \
  static void gather_##sfx(const fg_kargs *k, const gather_plan *p) {                     \
    int64_t b, e;                                                                          \
    fg_split_range(fg_shape_count(&k->out_shape), k->ith, k->nth, &b, &e);                 \
    if (b >= e) return;                                                                    \
    const T *in = k->in[0];                                                                \
    T *out = k->out;                                                                       \
    gather_cursor c;                                                                       \
    gather_cursor_start(&c, p, b);                                                         \
    for (int64_t o = b; o < e;) {                                                          \
      int64_t run = gather_cursor_run(&c, p, e - o), s = p->stride[p->ndim - 1];           \
      const T *src = in + c.off;                                                           \
      for (int64_t j = 0; j < run; j++) out[o + j] = src[j * s];                           \
      o += run;                                                                            \
      gather_cursor_skip(&c, p, run);                                                      \
    }                                                                                      \
  }
DEFINE_GATHER(float, f32)
DEFINE_GATHER(double, f64)

/* Kernels op##_f32 / op##_f64 that gather through the plan op##_plan(k, &plan) makes. */
#define DEFINE_GATHER_KERNEL(op, sfx)                                                      \
  static fg_status op##_##sfx(const fg_kargs *k) {                                         \
    gather_plan p;                                                                         \
    op##_plan(k, &p);                                                                      \
    gather_plan_simplify(&p);                                                              \
    gather_##sfx(k, &p);                                                                   \
    return FG_OK;                                                                          \
  }
#define DEFINE_GATHER_KERNELS(op) DEFINE_GATHER_KERNEL(op, f32) DEFINE_GATHER_KERNEL(op, f64)

/* ---- reshape ---- */

static fg_status reshape_infer(fg_infer_args *a) {
  const fg_reshape_attr *at = a->attr;
  fg_status st = check_target(&at->shape, a->why, sizeof a->why);
  if (st != FG_OK) return st;
  int64_t from = fg_shape_count(&a->in_shape[0]), to = fg_shape_count(&at->shape);
  if (from != to) {
    char buf[160];
    snprintf(a->why, sizeof a->why, "reshape of %lld elements to %s (%lld elements)",
             (long long)from, fg_shape_str(&at->shape, buf, sizeof buf), (long long)to);
    return FG_E_SHAPE;
  }
  a->out_shape = at->shape;
  return FG_OK;
}

/* Row-major order is unchanged: a flat copy. */
static void reshape_plan(const fg_kargs *k, gather_plan *p) {
  fg_shape flat = fg_shape1(fg_shape_count(&k->out_shape));
  gather_plan_init(p, &flat);
  p->stride[0] = 1;
}
DEFINE_GATHER_KERNELS(reshape)

static fg_status reshape_vjp(fg_graph *g, fg_node node, fg_node gout, uint32_t need,
                             fg_node *gin) {
  if (need & 1u) gin[0] = fg_reshape(g, gout, fg_node_shape(g, fg_node_input(g, node, 0)));
  return fg_graph_status(g);
}

const fg_op_def fg_opdef_reshape = {
    .name = "reshape",
    .n_in = 1,
    .flags = FG_OPF_INPLACE_OK, /* out[i] = in[i] */
    .attr_size = sizeof(fg_reshape_attr),
    .infer = reshape_infer,
    .kernel_f32 = reshape_f32,
    .kernel_f64 = reshape_f64,
    .vjp = reshape_vjp,
};

fg_node fg_reshape(fg_graph *g, fg_node x, fg_shape shape) {
  fg_reshape_attr at;
  memset(&at, 0, sizeof at);
  at.shape = attr_shape(&shape);
  if (already_shaped(g, x, &at.shape)) return x;
  return fg_graph_add_node(g, FG_OP_RESHAPE, 1, &x, &at);
}

/* ---- permute ---- */

static const char *perm_str(const int32_t *perm, int n, char *buf, size_t cap) {
  int64_t v[FG_MAX_DIMS];
  for (int i = 0; i < n; i++) v[i] = perm[i];
  return ints_str(v, n, buf, cap);
}

static fg_status permute_infer(fg_infer_args *a) {
  const fg_permute_attr *at = a->attr;
  const fg_shape *in = &a->in_shape[0];
  bool seen[FG_MAX_DIMS] = {false};
  char buf[96];
  for (int i = 0; i < in->ndim; i++) {
    int32_t ax = at->perm[i];
    if (ax < 0 || ax >= in->ndim) {
      snprintf(a->why, sizeof a->why, "permutation %s names axis %d of a %d-d input",
               perm_str(at->perm, in->ndim, buf, sizeof buf), (int)ax, (int)in->ndim);
      return FG_E_SHAPE;
    }
    if (seen[ax]) {
      snprintf(a->why, sizeof a->why, "permutation %s repeats axis %d",
               perm_str(at->perm, in->ndim, buf, sizeof buf), (int)ax);
      return FG_E_SHAPE;
    }
    seen[ax] = true;
    a->out_shape.d[i] = in->d[ax];
  }
  return FG_OK;
}

static void permute_plan(const fg_kargs *k, gather_plan *p) {
  const fg_permute_attr *at = k->attr;
  int64_t in_stride[FG_MAX_DIMS];
  fg_shape_strides(&k->in_shape[0], in_stride);
  gather_plan_init(p, &k->out_shape);
  for (int i = 0; i < p->ndim; i++) p->stride[i] = in_stride[at->perm[i]];
}
DEFINE_GATHER_KERNELS(permute)

static fg_status permute_vjp(fg_graph *g, fg_node node, fg_node gout, uint32_t need,
                             fg_node *gin) {
  if (!(need & 1u)) return fg_graph_status(g);
  const fg_permute_attr *at = fg_node_attr(g, node);
  int n = fg_node_shape(g, node).ndim, inverse[FG_MAX_DIMS];
  for (int i = 0; i < n; i++) inverse[at->perm[i]] = i;
  gin[0] = fg_permute(g, gout, inverse);
  return fg_graph_status(g);
}

const fg_op_def fg_opdef_permute = {
    .name = "permute",
    .n_in = 1,
    .attr_size = sizeof(fg_permute_attr),
    .infer = permute_infer,
    .kernel_f32 = permute_f32,
    .kernel_f64 = permute_f64,
    .vjp = permute_vjp,
};

fg_node fg_permute(fg_graph *g, fg_node x, const int *perm) {
  if (!perm) return fg_graph_fail(g, FG_E_MISUSE, "permute: the permutation is NULL");
  fg_permute_attr at;
  memset(&at, 0, sizeof at);
  int n = fg_node_shape(g, x).ndim;
  for (int i = 0; i < n; i++) at.perm[i] = perm[i];
  return fg_graph_add_node(g, FG_OP_PERMUTE, 1, &x, &at);
}

fg_node fg_transpose(fg_graph *g, fg_node x) {
  fg_shape xs = fg_node_shape(g, x);
  int perm[FG_MAX_DIMS];
  for (int i = 0; i < xs.ndim; i++) perm[i] = i;
  if (xs.ndim >= 2) {
    perm[xs.ndim - 2] = xs.ndim - 1;
    perm[xs.ndim - 1] = xs.ndim - 2;
  } else if (fg_graph_status(g) == FG_OK && fg_node_valid(g, x)) {
    return fail_like_infer(g, "permute", x, "transpose swaps the last two axes, so it needs at "
                           "least 2 dimensions");
  }
  return fg_permute(g, x, perm);
}

/* ---- slice ---- */

/* Why slice bounds on axis i of size d are wrong, or NULL when they are fine. */
static const char *slice_bounds_error(const fg_slice_attr *at, int i, int64_t d, char *why,
                                      size_t cap) {
  long long start = at->start[i], stop = at->stop[i], step = at->step[i];
  if (start < 0)
    snprintf(why, cap, "slice start %lld on axis %d is negative", start, i);
  else if (stop > d)
    snprintf(why, cap, "slice stop %lld beyond axis %d of size %lld", stop, i, (long long)d);
  else if (start > stop)
    snprintf(why, cap, "slice start %lld after stop %lld on axis %d", start, stop, i);
  else if (step < 1)
    snprintf(why, cap, "slice step %lld on axis %d must be at least 1", step, i);
  else
    return NULL;
  return why;
}

static fg_status slice_infer(fg_infer_args *a) {
  const fg_slice_attr *at = a->attr;
  const fg_shape *in = &a->in_shape[0];
  for (int i = 0; i < in->ndim; i++) {
    if (slice_bounds_error(at, i, in->d[i], a->why, sizeof a->why)) return FG_E_SHAPE;
    int64_t len = at->stop[i] - at->start[i];
    a->out_shape.d[i] = len == 0 ? 0 : (len - 1) / at->step[i] + 1;
  }
  return FG_OK;
}

static void slice_plan(const fg_kargs *k, gather_plan *p) {
  const fg_slice_attr *at = k->attr;
  int64_t in_stride[FG_MAX_DIMS];
  fg_shape_strides(&k->in_shape[0], in_stride);
  gather_plan_init(p, &k->out_shape);
  for (int i = 0; i < p->ndim; i++) {
    p->stride[i] = in_stride[i] * at->step[i];
    p->base += in_stride[i] * at->start[i];
  }
}
DEFINE_GATHER_KERNELS(slice)

/* The slice's elements go back where they came from; zeros between and around them. */
static fg_status slice_vjp(fg_graph *g, fg_node node, fg_node gout, uint32_t need,
                           fg_node *gin) {
  if (!(need & 1u)) return fg_graph_status(g);
  const fg_slice_attr *at = fg_node_attr(g, node);
  fg_shape xs = fg_node_shape(g, fg_node_input(g, node, 0)), os = fg_node_shape(g, node);
  int64_t lo[FG_MAX_DIMS], hi[FG_MAX_DIMS], interior[FG_MAX_DIMS];
  for (int i = 0; i < xs.ndim; i++) {
    int64_t end = os.d[i] == 0 ? at->start[i] : at->start[i] + (os.d[i] - 1) * at->step[i] + 1;
    lo[i] = at->start[i];
    hi[i] = xs.d[i] - end;
    interior[i] = at->step[i] - 1;
  }
  gin[0] = fg_pad(g, gout, lo, hi, interior, 0.0);
  return fg_graph_status(g);
}

const fg_op_def fg_opdef_slice = {
    .name = "slice",
    .n_in = 1,
    .attr_size = sizeof(fg_slice_attr),
    .infer = slice_infer,
    .kernel_f32 = slice_f32,
    .kernel_f64 = slice_f64,
    .vjp = slice_vjp,
};

fg_node fg_slice(fg_graph *g, fg_node x, const int64_t *start, const int64_t *stop,
                 const int64_t *step) {
  if (!start || !stop) return fg_graph_fail(g, FG_E_MISUSE, "slice: start or stop is NULL");
  fg_slice_attr at;
  memset(&at, 0, sizeof at);
  int n = fg_node_shape(g, x).ndim;
  for (int i = 0; i < n; i++) {
    at.start[i] = start[i];
    at.stop[i] = stop[i];
    at.step[i] = step ? step[i] : 1;
  }
  return fg_graph_add_node(g, FG_OP_SLICE, 1, &x, &at);
}

fg_node fg_slice_axis(fg_graph *g, fg_node x, int axis, int64_t start, int64_t stop) {
  fg_shape xs = fg_node_shape(g, x);
  int ax = normalize_axis(g, x, axis);
  if ((ax < 0 || ax >= xs.ndim) && fg_graph_status(g) == FG_OK && fg_node_valid(g, x)) {
    char why[96];
    snprintf(why, sizeof why, "slice_axis axis %d is not an axis of a %d-d input", axis, (int)xs.ndim);
    return fail_like_infer(g, "slice", x, why);
  }
  int64_t lo[FG_MAX_DIMS], hi[FG_MAX_DIMS];
  for (int i = 0; i < xs.ndim; i++) {
    lo[i] = i == ax ? start : 0;
    hi[i] = i == ax ? stop : xs.d[i];
  }
  return fg_slice(g, x, lo, hi, NULL);
}

/* ---- pad ---- */

/* Why the padding of axis i is wrong (a negative amount), or NULL when it is fine. */
static const char *pad_amount_error(const fg_pad_attr *at, int i, char *why, size_t cap) {
  const char *names[3] = {"lo", "hi", "interior"};
  const int64_t amounts[3] = {at->lo[i], at->hi[i], at->interior[i]};
  for (int j = 0; j < 3; j++) {
    if (amounts[j] < 0) {
      snprintf(why, cap, "pad %s on axis %d is %lld; padding must be >= 0", names[j], i,
               (long long)amounts[j]);
      return why;
    }
  }
  return NULL;
}

static fg_status pad_infer(fg_infer_args *a) {
  const fg_pad_attr *at = a->attr;
  const fg_shape *in = &a->in_shape[0];
  for (int i = 0; i < in->ndim; i++) {
    if (pad_amount_error(at, i, a->why, sizeof a->why)) return FG_E_SHAPE;
    int64_t d = in->d[i], gaps = d > 0 ? d - 1 : 0, size;
    if (__builtin_mul_overflow(gaps, at->interior[i], &size) ||
        __builtin_add_overflow(size, d, &size) || __builtin_add_overflow(size, at->lo[i], &size) ||
        __builtin_add_overflow(size, at->hi[i], &size)) {
      snprintf(a->why, sizeof a->why, "padded axis %d has more elements than int64 holds", i);
      return FG_E_OVERFLOW;
    }
    a->out_shape.d[i] = size;
  }
  int64_t n;
  if (fg_shape_numel(&a->out_shape, &n, NULL) != FG_OK) {
    char buf[160];
    snprintf(a->why, sizeof a->why, "padded shape %s has more elements than int64 holds",
             fg_shape_str(&a->out_shape, buf, sizeof buf));
    return FG_E_OVERFLOW;
  }
  return FG_OK;
}

/* Output axis i holds input element t at lo[i] + t * step[i] (step = interior + 1). */
typedef struct pad_plan {
  int ndim; /* >= 1 */
  int64_t out_d[FG_MAX_DIMS], in_d[FG_MAX_DIMS], in_s[FG_MAX_DIMS];
  int64_t lo[FG_MAX_DIMS], step[FG_MAX_DIMS];
} pad_plan;

static void pad_plan_make(const fg_kargs *k, pad_plan *p) {
  const fg_pad_attr *at = k->attr;
  const fg_shape *in = &k->in_shape[0];
  memset(p, 0, sizeof *p);
  fg_shape_strides(in, p->in_s);
  p->ndim = in->ndim;
  for (int i = 0; i < in->ndim; i++) {
    p->out_d[i] = k->out_shape.d[i];
    p->in_d[i] = in->d[i];
    p->lo[i] = at->lo[i];
    p->step[i] = at->interior[i] + 1;
  }
  if (p->ndim == 0) { /* a 0-d pad is a copy: walk it as one row of one element */
    p->ndim = 1;
    p->out_d[0] = p->in_d[0] = p->step[0] = 1;
  }
}

/* Input offset of output row `row` (every axis but the last), or -1 when the row lies in
 * padding. */
static int64_t pad_row_source(const pad_plan *p, int64_t row) {
  int64_t off = 0;
  for (int i = p->ndim - 2; i >= 0; i--) {
    int64_t t = row % p->out_d[i] - p->lo[i];
    row /= p->out_d[i];
    if (t < 0 || t % p->step[i] != 0 || t / p->step[i] >= p->in_d[i]) return -1;
    off += t / p->step[i] * p->in_s[i];
  }
  return off;
}

/* First input element of the last axis that lands at or after output column c. */
static int64_t pad_first_element(const pad_plan *p, int64_t c) {
  int last = p->ndim - 1;
  if (c <= p->lo[last]) return 0;
  return (c - p->lo[last] + p->step[last] - 1) / p->step[last];
}

/* Row by row over the share: fill with the constant, then place the input elements. */
#define DEFINE_PAD_KERNEL(T, sfx)                                                          \
  static fg_status pad_##sfx(const fg_kargs *k) {                                          \
    const fg_pad_attr *at = k->attr;                                                       \
    pad_plan p;                                                                            \
    pad_plan_make(k, &p);                                                                  \
    int64_t b, e;                                                                          \
    fg_split_range(fg_shape_count(&k->out_shape), k->ith, k->nth, &b, &e);                 \
    const T *in = k->in[0];                                                                \
    T *out = k->out, value = (T)at->value;                                                 \
    int last = p.ndim - 1;                                                                 \
    int64_t w = p.out_d[last], lo = p.lo[last], step = p.step[last], n = p.in_d[last];     \
    for (int64_t o = b; o < e;) {                                                          \
      int64_t row = o / w, c0 = o % w, c1 = c0 + (e - o) < w ? c0 + (e - o) : w;           \
      T *dst = out + row * w;                                                              \
      for (int64_t c = c0; c < c1; c++) dst[c] = value;                                    \
      int64_t src = pad_row_source(&p, row);                                               \
      if (src >= 0)                                                                        \
        for (int64_t t = pad_first_element(&p, c0); t < n && lo + t * step < c1; t++)      \
          dst[lo + t * step] = in[src + t];                                                \
      o += c1 - c0;                                                                        \
    }                                                                                      \
    return FG_OK;                                                                          \
  }
DEFINE_PAD_KERNEL(float, f32)
DEFINE_PAD_KERNEL(double, f64)

/* The input's elements are a strided slice of the padded output. */
static fg_status pad_vjp(fg_graph *g, fg_node node, fg_node gout, uint32_t need, fg_node *gin) {
  if (!(need & 1u)) return fg_graph_status(g);
  const fg_pad_attr *at = fg_node_attr(g, node);
  fg_shape xs = fg_node_shape(g, fg_node_input(g, node, 0));
  int64_t start[FG_MAX_DIMS], stop[FG_MAX_DIMS], step[FG_MAX_DIMS];
  for (int i = 0; i < xs.ndim; i++) {
    step[i] = at->interior[i] + 1;
    start[i] = at->lo[i];
    stop[i] = xs.d[i] == 0 ? start[i] : start[i] + (xs.d[i] - 1) * step[i] + 1;
  }
  gin[0] = fg_slice(g, gout, start, stop, step);
  return fg_graph_status(g);
}

const fg_op_def fg_opdef_pad = {
    .name = "pad",
    .n_in = 1,
    .attr_size = sizeof(fg_pad_attr),
    .infer = pad_infer,
    .kernel_f32 = pad_f32,
    .kernel_f64 = pad_f64,
    .vjp = pad_vjp,
};

fg_node fg_pad(fg_graph *g, fg_node x, const int64_t *lo, const int64_t *hi,
               const int64_t *interior, double value) {
  if (!lo || !hi) return fg_graph_fail(g, FG_E_MISUSE, "pad: lo or hi is NULL");
  fg_pad_attr at;
  memset(&at, 0, sizeof at);
  int n = fg_node_shape(g, x).ndim;
  for (int i = 0; i < n; i++) {
    at.lo[i] = lo[i];
    at.hi[i] = hi[i];
    at.interior[i] = interior ? interior[i] : 0;
  }
  at.value = value;
  return fg_graph_add_node(g, FG_OP_PAD, 1, &x, &at);
}

/* ---- concat ---- */

static fg_status concat_infer(fg_infer_args *a) {
  const fg_concat_attr *at = a->attr;
  if (a->n_in < 1) {
    snprintf(a->why, sizeof a->why, "concat needs at least one input");
    return FG_E_SHAPE;
  }
  const fg_shape *first = &a->in_shape[0];
  int axis = at->axis;
  if (axis < 0 || axis >= first->ndim) {
    snprintf(a->why, sizeof a->why, "concat axis %d is not an axis of a %d-d input", axis,
             (int)first->ndim);
    return FG_E_SHAPE;
  }
  char sa[160], sb[160];
  int64_t total = 0;
  for (int k = 0; k < a->n_in; k++) {
    const fg_shape *s = &a->in_shape[k];
    if (a->in_dtype[k] != a->in_dtype[0]) {
      snprintf(a->why, sizeof a->why, "concat inputs differ in dtype: input 0 is %s, input %d "
               "is %s", fg_dtype_name(a->in_dtype[0]), k, fg_dtype_name(a->in_dtype[k]));
      return FG_E_DTYPE;
    }
    int differ = s->ndim != first->ndim ? -1 : FG_MAX_DIMS;
    for (int i = 0; differ == FG_MAX_DIMS && i < s->ndim; i++)
      if (i != axis && s->d[i] != first->d[i]) differ = i;
    if (differ == -1)
      snprintf(a->why, sizeof a->why, "concat inputs differ in rank: %s vs %s",
               fg_shape_str(first, sa, sizeof sa), fg_shape_str(s, sb, sizeof sb));
    else if (differ != FG_MAX_DIMS)
      snprintf(a->why, sizeof a->why, "concat inputs differ on axis %d: %s vs %s", differ,
               fg_shape_str(first, sa, sizeof sa), fg_shape_str(s, sb, sizeof sb));
    if (differ != FG_MAX_DIMS) return FG_E_SHAPE;
    if (__builtin_add_overflow(total, s->d[axis], &total)) {
      snprintf(a->why, sizeof a->why, "concat axis %d totals more than int64 holds", axis);
      return FG_E_OVERFLOW;
    }
  }
  a->out_shape.d[axis] = total;
  int64_t n;
  if (fg_shape_numel(&a->out_shape, &n, NULL) != FG_OK) {
    snprintf(a->why, sizeof a->why, "concatenated shape %s has more elements than int64 holds",
             fg_shape_str(&a->out_shape, sa, sizeof sa));
    return FG_E_OVERFLOW;
  }
  return FG_OK;
}

/* Elements of input i in one output row: its extent on the axis times the inner size. */
static int64_t concat_segment(const fg_kargs *k, int i, int axis, int64_t inner) {
  return k->in_shape[i].d[axis] * inner;
}

/* The output, row by row (a row = everything from the axis inward), is the inputs' rows one
 * after another; the share is copied as contiguous runs, so it is bit-exact for any split. */
static fg_status concat_copy(const fg_kargs *k, size_t elem) {
  const fg_concat_attr *at = k->attr;
  int axis = at->axis;
  int64_t inner = 1, b, e;
  for (int i = axis + 1; i < k->out_shape.ndim; i++) inner *= k->out_shape.d[i];
  fg_split_range(fg_shape_count(&k->out_shape), k->ith, k->nth, &b, &e);
  if (b >= e) return FG_OK;
  int64_t row_len = k->out_shape.d[axis] * inner, row = b / row_len, col = b % row_len;
  int i = 0;
  for (; col >= concat_segment(k, i, axis, inner); i++) col -= concat_segment(k, i, axis, inner);
  char *out = k->out;
  for (int64_t o = b; o < e;) {
    int64_t seg = concat_segment(k, i, axis, inner), run = seg - col;
    if (run > e - o) run = e - o;
    const char *src = (const char *)k->in[i] + (size_t)(row * seg + col) * elem;
    memcpy(out + (size_t)o * elem, src, (size_t)run * elem);
    o += run;
    col += run;
    /* next non-empty input, wrapping to the next row */
    while (o < e && col == concat_segment(k, i, axis, inner)) {
      col = 0;
      if (++i == k->n_in) i = 0, row++;
    }
  }
  return FG_OK;
}

static fg_status concat_f32(const fg_kargs *k) { return concat_copy(k, sizeof(float)); }
static fg_status concat_f64(const fg_kargs *k) { return concat_copy(k, sizeof(double)); }

static fg_status concat_vjp(fg_graph *g, fg_node node, fg_node gout, uint32_t need,
                            fg_node *gin) {
  const fg_concat_attr *at = fg_node_attr(g, node);
  int n = fg_node_num_inputs(g, node);
  int64_t off = 0;
  for (int i = 0; i < n; i++) {
    int64_t len = fg_node_shape(g, fg_node_input(g, node, i)).d[at->axis];
    /* `need` has 32 bits; inputs past them are always differentiated */
    if (i >= 32 || (need >> i & 1u)) gin[i] = fg_slice_axis(g, gout, at->axis, off, off + len);
    off += len;
  }
  return fg_graph_status(g);
}

const fg_op_def fg_opdef_concat = {
    .name = "concat",
    .n_in = 1,
    .flags = FG_OPF_VARIADIC,
    .attr_size = sizeof(fg_concat_attr),
    .infer = concat_infer,
    .kernel_f32 = concat_f32,
    .kernel_f64 = concat_f64,
    .vjp = concat_vjp,
};

fg_node fg_concat(fg_graph *g, int n, const fg_node *xs, int axis) {
  if (n < 1 || !xs)
    return fg_graph_fail(g, FG_E_MISUSE, "concat: needs at least one input (got %d)", n);
  fg_concat_attr at;
  memset(&at, 0, sizeof at);
  at.axis = normalize_axis(g, xs[0], axis);
  return fg_graph_add_node(g, FG_OP_CONCAT, n, xs, &at);
}

/* ---- broadcast_to ---- */

static fg_status broadcast_infer(fg_infer_args *a) {
  const fg_broadcast_attr *at = a->attr;
  fg_status st = check_target(&at->shape, a->why, sizeof a->why);
  if (st != FG_OK) return st;
  const fg_shape *in = &a->in_shape[0], *to = &at->shape;
  char sa[160], sb[160];
  if (in->ndim > to->ndim) {
    snprintf(a->why, sizeof a->why, "cannot broadcast %s to %s, which has fewer dimensions",
             fg_shape_str(in, sa, sizeof sa), fg_shape_str(to, sb, sizeof sb));
    return FG_E_SHAPE;
  }
  int lead = to->ndim - in->ndim;
  for (int i = 0; i < in->ndim; i++) {
    if (in->d[i] != 1 && in->d[i] != to->d[lead + i]) {
      snprintf(a->why, sizeof a->why, "cannot broadcast %s to %s: axis %d has size %lld, "
               "neither 1 nor %lld", fg_shape_str(in, sa, sizeof sa),
               fg_shape_str(to, sb, sizeof sb), i, (long long)in->d[i],
               (long long)to->d[lead + i]);
      return FG_E_SHAPE;
    }
  }
  a->out_shape = *to;
  return FG_OK;
}

static void broadcast_to_plan(const fg_kargs *k, gather_plan *p) {
  gather_plan_init(p, &k->out_shape);
  fg_shape_broadcast_strides(&k->in_shape[0], &k->out_shape, p->stride);
}
DEFINE_GATHER_KERNELS(broadcast_to)

static fg_status broadcast_vjp(fg_graph *g, fg_node node, fg_node gout, uint32_t need,
                               fg_node *gin) {
  if (need & 1u) gin[0] = fg_sum_to(g, gout, fg_node_shape(g, fg_node_input(g, node, 0)));
  return fg_graph_status(g);
}

const fg_op_def fg_opdef_broadcast_to = {
    .name = "broadcast_to",
    .n_in = 1,
    .attr_size = sizeof(fg_broadcast_attr),
    .infer = broadcast_infer,
    .kernel_f32 = broadcast_to_f32,
    .kernel_f64 = broadcast_to_f64,
    .vjp = broadcast_vjp,
};

fg_node fg_broadcast_to(fg_graph *g, fg_node x, fg_shape shape) {
  fg_broadcast_attr at;
  memset(&at, 0, sizeof at);
  at.shape = attr_shape(&shape);
  if (already_shaped(g, x, &at.shape)) return x;
  return fg_graph_add_node(g, FG_OP_BROADCAST_TO, 1, &x, &at);
}

/* ---- after: x, once a dependency has been computed ---- */

static fg_status after_infer(fg_infer_args *a) {
  (void)a; /* input 0's shape and dtype, pre-set */
  return FG_OK;
}

/* out = in[0]; in[1] is only waited for.  In place (out == in[0]) there is nothing to move. */
static fg_status after_copy(const fg_kargs *k, size_t elem) {
  int64_t b, e;
  fg_split_range(fg_shape_count(&k->out_shape), k->ith, k->nth, &b, &e);
  if (k->out != k->in[0] && e > b)
    memcpy((char *)k->out + (size_t)b * elem, (const char *)k->in[0] + (size_t)b * elem, (size_t)(e - b) * elem);
  return FG_OK;
}
static fg_status after_f32(const fg_kargs *k) { return after_copy(k, sizeof(float)); }
static fg_status after_f64(const fg_kargs *k) { return after_copy(k, sizeof(double)); }

static fg_status after_vjp(fg_graph *g, fg_node node, fg_node gout, uint32_t need, fg_node *gin) {
  (void)node;
  if (need & 1u) gin[0] = gout;
  return fg_graph_status(g);
}

const fg_op_def fg_opdef_after = {
    .name = "after",
    .n_in = 2,
    .flags = FG_OPF_INPLACE_OK, /* out[i] = in[i] */
    .nondiff_inputs = 1u << 1,
    .infer = after_infer,
    .kernel_f32 = after_f32,
    .kernel_f64 = after_f64,
    .vjp = after_vjp,
};

fg_node fg_after(fg_graph *g, fg_node x, fg_node dep) {
  fg_node in[2] = {x, dep};
  return fg_graph_add_node(g, FG_OP_AFTER, 2, in, NULL);
}
