/* Shape ops: reshape, permute, slice, pad, concat, broadcast_to and after.  None computes
 * anything; each moves elements (ops/kernels/shape.c).  Their VJPs are each other: slice <->
 * pad, concat -> slices, broadcast_to -> sum_to. */
#include <stdio.h>
#include <string.h>

#include "core/ir/op.h"
#include "ops/infer.h"
#include "ops/kernels/kernels.h"
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
static fg_status check_target(fg_infer_args *a, const fg_shape *s) {
  if (s->ndim < 0 || s->ndim > FG_MAX_DIMS)
    return fg_infer_fail(a, FG_E_SHAPE, "target shape has %d dimensions; flowgrad supports 0 to "
                         "%d", (int)s->ndim, FG_MAX_DIMS);
  char buf[160];
  for (int i = 0; i < s->ndim; i++)
    if (s->d[i] < 0)
      return fg_infer_fail(a, FG_E_SHAPE, "target shape %s has a negative size on axis %d",
                           fg_shape_str(s, buf, sizeof buf), i);
  int64_t n;
  if (fg_shape_numel(s, &n, NULL) != FG_OK)
    return fg_infer_fail(a, FG_E_OVERFLOW, "target shape %s has more elements than int64 holds",
                         fg_shape_str(s, buf, sizeof buf));
  return FG_OK;
}

/* Checks that the output shape's element count fits in int64 ("padded shape [..] has more
 * elements than int64 holds"). */
static fg_status check_out_count(fg_infer_args *a, const char *what) {
  int64_t n;
  char buf[160];
  if (fg_shape_numel(&a->out_shape, &n, NULL) != FG_OK)
    return fg_infer_fail(a, FG_E_OVERFLOW, "%s shape %s has more elements than int64 holds", what,
                         fg_shape_str(&a->out_shape, buf, sizeof buf));
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

/* One past the last of n elements taken every `step` from `start`: what a slice reads of an
 * axis, and where a pad puts its input's elements. */
static int64_t strided_end(int64_t start, int64_t n, int64_t step) {
  return n == 0 ? start : start + (n - 1) * step + 1;
}

/* Python-style negative axis, counted from the end of x's axes. */
static int normalize_axis(fg_graph *g, fg_node x, int axis) {
  return axis < 0 ? axis + fg_node_shape(g, x).ndim : axis;
}

/* ---- reshape ---- */

static fg_status reshape_infer(fg_infer_args *a) {
  const fg_reshape_attr *at = a->attr;
  fg_status st = check_target(a, &at->shape);
  if (st != FG_OK) return st;
  int64_t from = fg_shape_count(&a->in_shape[0]), to = fg_shape_count(&at->shape);
  char buf[160];
  if (from != to)
    return fg_infer_fail(a, FG_E_SHAPE, "reshape of %lld elements to %s (%lld elements)",
                         (long long)from, fg_shape_str(&at->shape, buf, sizeof buf),
                         (long long)to);
  a->out_shape = at->shape;
  return FG_OK;
}

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
    FG_KERNELS(reshape),
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
    if (ax < 0 || ax >= in->ndim)
      return fg_infer_fail(a, FG_E_SHAPE, "permutation %s names axis %d of a %d-d input",
                           perm_str(at->perm, in->ndim, buf, sizeof buf), (int)ax,
                           (int)in->ndim);
    if (seen[ax])
      return fg_infer_fail(a, FG_E_SHAPE, "permutation %s repeats axis %d",
                           perm_str(at->perm, in->ndim, buf, sizeof buf), (int)ax);
    seen[ax] = true;
    a->out_shape.d[i] = in->d[ax];
  }
  return FG_OK;
}

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
    FG_KERNELS(permute),
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

/* Checks the slice bounds on axis i of size d. */
static fg_status check_slice_bounds(fg_infer_args *a, const fg_slice_attr *at, int i,
                                    int64_t d) {
  long long start = at->start[i], stop = at->stop[i], step = at->step[i];
  if (start < 0)
    return fg_infer_fail(a, FG_E_SHAPE, "slice start %lld on axis %d is negative", start, i);
  if (stop > d)
    return fg_infer_fail(a, FG_E_SHAPE, "slice stop %lld beyond axis %d of size %lld", stop, i,
                         (long long)d);
  if (start > stop)
    return fg_infer_fail(a, FG_E_SHAPE, "slice start %lld after stop %lld on axis %d", start,
                         stop, i);
  if (step < 1)
    return fg_infer_fail(a, FG_E_SHAPE, "slice step %lld on axis %d must be at least 1", step,
                         i);
  return FG_OK;
}

static fg_status slice_infer(fg_infer_args *a) {
  const fg_slice_attr *at = a->attr;
  const fg_shape *in = &a->in_shape[0];
  for (int i = 0; i < in->ndim; i++) {
    fg_status st = check_slice_bounds(a, at, i, in->d[i]);
    if (st != FG_OK) return st;
    int64_t len = at->stop[i] - at->start[i];
    a->out_shape.d[i] = len == 0 ? 0 : (len - 1) / at->step[i] + 1;
  }
  return FG_OK;
}

/* The slice's elements go back where they came from; zeros between and around them. */
static fg_status slice_vjp(fg_graph *g, fg_node node, fg_node gout, uint32_t need,
                           fg_node *gin) {
  if (!(need & 1u)) return fg_graph_status(g);
  const fg_slice_attr *at = fg_node_attr(g, node);
  fg_shape xs = fg_node_shape(g, fg_node_input(g, node, 0)), os = fg_node_shape(g, node);
  int64_t lo[FG_MAX_DIMS], hi[FG_MAX_DIMS], interior[FG_MAX_DIMS];
  for (int i = 0; i < xs.ndim; i++) {
    lo[i] = at->start[i];
    hi[i] = xs.d[i] - strided_end(at->start[i], os.d[i], at->step[i]);
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
    FG_KERNELS(slice),
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
    snprintf(why, sizeof why, "slice_axis axis %d is not an axis of a %d-d input", axis,
             (int)xs.ndim);
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

/* Checks that no padding of axis i is negative. */
static fg_status check_pad_amounts(fg_infer_args *a, const fg_pad_attr *at, int i) {
  const char *names[3] = {"lo", "hi", "interior"};
  const int64_t amounts[3] = {at->lo[i], at->hi[i], at->interior[i]};
  for (int j = 0; j < 3; j++)
    if (amounts[j] < 0)
      return fg_infer_fail(a, FG_E_SHAPE, "pad %s on axis %d is %lld; padding must be >= 0",
                           names[j], i, (long long)amounts[j]);
  return FG_OK;
}

static fg_status pad_infer(fg_infer_args *a) {
  const fg_pad_attr *at = a->attr;
  const fg_shape *in = &a->in_shape[0];
  for (int i = 0; i < in->ndim; i++) {
    fg_status st = check_pad_amounts(a, at, i);
    if (st != FG_OK) return st;
    int64_t d = in->d[i], gaps = d > 0 ? d - 1 : 0, size;
    if (__builtin_mul_overflow(gaps, at->interior[i], &size) ||
        __builtin_add_overflow(size, d, &size) || __builtin_add_overflow(size, at->lo[i], &size) ||
        __builtin_add_overflow(size, at->hi[i], &size))
      return fg_infer_fail(a, FG_E_OVERFLOW, "padded axis %d has more elements than int64 holds",
                           i);
    a->out_shape.d[i] = size;
  }
  return check_out_count(a, "padded");
}

/* The input's elements are a strided slice of the padded output. */
static fg_status pad_vjp(fg_graph *g, fg_node node, fg_node gout, uint32_t need, fg_node *gin) {
  if (!(need & 1u)) return fg_graph_status(g);
  const fg_pad_attr *at = fg_node_attr(g, node);
  fg_shape xs = fg_node_shape(g, fg_node_input(g, node, 0));
  int64_t start[FG_MAX_DIMS], stop[FG_MAX_DIMS], step[FG_MAX_DIMS];
  for (int i = 0; i < xs.ndim; i++) {
    step[i] = at->interior[i] + 1;
    start[i] = at->lo[i];
    stop[i] = strided_end(start[i], xs.d[i], step[i]);
  }
  gin[0] = fg_slice(g, gout, start, stop, step);
  return fg_graph_status(g);
}

const fg_op_def fg_opdef_pad = {
    .name = "pad",
    .n_in = 1,
    .attr_size = sizeof(fg_pad_attr),
    .infer = pad_infer,
    FG_KERNELS(pad),
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
  if (a->n_in < 1) return fg_infer_fail(a, FG_E_SHAPE, "concat needs at least one input");
  const fg_shape *first = &a->in_shape[0];
  int axis = at->axis;
  if (axis < 0 || axis >= first->ndim)
    return fg_infer_fail(a, FG_E_SHAPE, "concat axis %d is not an axis of a %d-d input", axis,
                         (int)first->ndim);
  char sa[160], sb[160];
  int64_t total = 0;
  for (int k = 0; k < a->n_in; k++) {
    const fg_shape *s = &a->in_shape[k];
    if (a->in_dtype[k] != a->in_dtype[0])
      return fg_infer_fail(a, FG_E_DTYPE, "concat inputs differ in dtype: input 0 is %s, input "
                           "%d is %s", fg_dtype_name(a->in_dtype[0]), k,
                           fg_dtype_name(a->in_dtype[k]));
    if (s->ndim != first->ndim)
      return fg_infer_fail(a, FG_E_SHAPE, "concat inputs differ in rank: %s vs %s",
                           fg_shape_str(first, sa, sizeof sa), fg_shape_str(s, sb, sizeof sb));
    for (int i = 0; i < s->ndim; i++)
      if (i != axis && s->d[i] != first->d[i])
        return fg_infer_fail(a, FG_E_SHAPE, "concat inputs differ on axis %d: %s vs %s", i,
                             fg_shape_str(first, sa, sizeof sa), fg_shape_str(s, sb, sizeof sb));
    if (__builtin_add_overflow(total, s->d[axis], &total))
      return fg_infer_fail(a, FG_E_OVERFLOW, "concat axis %d totals more than int64 holds", axis);
  }
  a->out_shape.d[axis] = total;
  return check_out_count(a, "concatenated");
}

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
    FG_KERNELS(concat),
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
  fg_status st = check_target(a, &at->shape);
  if (st != FG_OK) return st;
  const fg_shape *in = &a->in_shape[0], *to = &at->shape;
  char sa[160], sb[160];
  if (in->ndim > to->ndim)
    return fg_infer_fail(a, FG_E_SHAPE, "cannot broadcast %s to %s, which has fewer dimensions",
                         fg_shape_str(in, sa, sizeof sa), fg_shape_str(to, sb, sizeof sb));
  int lead = to->ndim - in->ndim;
  for (int i = 0; i < in->ndim; i++)
    if (in->d[i] != 1 && in->d[i] != to->d[lead + i])
      return fg_infer_fail(a, FG_E_SHAPE, "cannot broadcast %s to %s: axis %d has size %lld, "
                           "neither 1 nor %lld", fg_shape_str(in, sa, sizeof sa),
                           fg_shape_str(to, sb, sizeof sb), i, (long long)in->d[i],
                           (long long)to->d[lead + i]);
  a->out_shape = *to;
  return FG_OK;
}

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
    FG_KERNELS(broadcast_to),
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
    FG_KERNELS(after),
    .vjp = after_vjp,
};

fg_node fg_after(fg_graph *g, fg_node x, fg_node dep) {
  fg_node in[2] = {x, dep};
  return fg_graph_add_node(g, FG_OP_AFTER, 2, in, NULL);
}
