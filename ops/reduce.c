/* Reductions over a set of axes (a bit mask): the primitives sum and max, and the composites
 * mean, logsumexp and sum_to, which are graph macros over primitives with no descriptor.
 *
 * Both kernels share one plan: adjacent axes of the same kind (reduced or kept) merge and
 * size-1 axes drop out, so any reduction becomes "kept rows x reduced blocks x an inner run of
 * kept elements that are contiguous in input and output".  Each output element accumulates its
 * inputs in row-major order of the reduced axes, in double, whatever part of the output a
 * thread owns, so results are bit-identical for any thread count. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/ir/op.h"
#include "ops/ops.h"
#include "ops/kernels/simd.h"

/* ---- axes ---- */

static uint32_t all_axes_of(int ndim) { return (1u << ndim) - 1u; }

/* FG_ALL_AXES resolved against the input's rank; other masks pass through unchanged (the
 * shape rule rejects bits beyond the rank). */
static uint32_t resolve_axes(uint32_t axes, int ndim) {
  return axes == FG_ALL_AXES ? all_axes_of(ndim) : axes;
}

/* The shape after reducing `axes`: reduced axes dropped, or kept with size 1. */
static fg_shape reduced_shape(const fg_shape *in, uint32_t axes, bool keepdims) {
  fg_shape out;
  memset(&out, 0, sizeof out);
  for (int i = 0; i < in->ndim; i++) {
    if (!(axes & FG_AXIS(i)))
      out.d[out.ndim++] = in->d[i];
    else if (keepdims)
      out.d[out.ndim++] = 1;
  }
  return out;
}

static fg_status reduce_infer(fg_infer_args *a) {
  const fg_reduce_attr *at = a->attr;
  const fg_shape *in = &a->in_shape[0];
  uint32_t axes = resolve_axes(at->axes, in->ndim);
  uint32_t extra = axes & ~all_axes_of(in->ndim);
  if (extra) {
    snprintf(a->why, sizeof a->why,
             "axes mask 0x%x names axis %d, but the input has %d axes (use FG_ALL_AXES for all)",
             at->axes, __builtin_ctz(extra), (int)in->ndim);
    return FG_E_SHAPE;
  }
  a->out_shape = reduced_shape(in, axes, at->keepdims != 0);
  return FG_OK;
}

/* ---- kernel plan ---- */

/* Output element o = row * inner + col reads input elements
 *   row_offset(row) + red_offset(r) + t * last_s + col
 * for every combination r of the outer reduced groups and t < last_d. */
typedef struct reduce_plan {
  bool empty_input;                             /* every reduction is over zero elements */
  int n_keep, n_red;                            /* outer kept / reduced groups */
  int64_t keep_d[FG_MAX_DIMS], keep_s[FG_MAX_DIMS];
  int64_t red_d[FG_MAX_DIMS], red_s[FG_MAX_DIMS];
  int64_t last_d, last_s;                       /* innermost reduced group */
  int64_t inner;                                /* trailing kept run, contiguous */
} reduce_plan;

/* Groups adjacent axes of one kind; returns the group count. */
static int group_axes(const fg_shape *in, uint32_t axes, int64_t *gd, bool *gred) {
  int n = 0;
  for (int i = 0; i < in->ndim; i++) {
    if (in->d[i] == 1) continue; /* moves no offset and changes no order */
    bool red = (axes & FG_AXIS(i)) != 0;
    if (n > 0 && gred[n - 1] == red) {
      gd[n - 1] *= in->d[i];
    } else {
      gd[n] = in->d[i];
      gred[n++] = red;
    }
  }
  return n;
}

static void reduce_plan_make(const fg_shape *in, uint32_t axes, reduce_plan *p) {
  memset(p, 0, sizeof *p);
  /* An empty input makes every output element an empty reduction; deciding that first keeps
   * the group products below (bounded by the input's size) from overflowing. */
  p->empty_input = fg_shape_count(in) == 0;
  if (p->empty_input) return;
  int64_t gd[FG_MAX_DIMS], gs[FG_MAX_DIMS];
  bool gred[FG_MAX_DIMS];
  int n = group_axes(in, axes, gd, gred);
  for (int i = n - 1; i >= 0; i--) gs[i] = i == n - 1 ? 1 : gs[i + 1] * gd[i + 1];
  p->inner = 1;
  if (n > 0 && !gred[n - 1]) p->inner = gd[--n];
  p->last_d = 1; /* no reduced group at all: each output reads exactly one input */
  if (n > 0) {
    p->last_d = gd[n - 1];
    p->last_s = gs[n - 1];
    n--;
  }
  for (int i = 0; i < n; i++) {
    if (gred[i]) {
      p->red_d[p->n_red] = gd[i];
      p->red_s[p->n_red++] = gs[i];
    } else {
      p->keep_d[p->n_keep] = gd[i];
      p->keep_s[p->n_keep++] = gs[i];
    }
  }
}

/* Input offset of output row `row` (row-major over the outer kept groups). */
static int64_t row_offset(const reduce_plan *p, int64_t row) {
  int64_t off = 0;
  for (int i = p->n_keep - 1; i >= 0; i--) {
    off += (row % p->keep_d[i]) * p->keep_s[i];
    row /= p->keep_d[i];
  }
  return off;
}

/* Row-major walk over the outer reduced groups. */
typedef struct red_cursor {
  int64_t idx[FG_MAX_DIMS];
  int64_t off;
} red_cursor;

static void red_cursor_start(red_cursor *c) { memset(c, 0, sizeof *c); }

/* Steps to the next combination; false after the last one. */
static bool red_cursor_next(red_cursor *c, const reduce_plan *p) {
  for (int i = p->n_red - 1; i >= 0; i--) {
    c->off += p->red_s[i];
    if (++c->idx[i] < p->red_d[i]) return true;
    c->off -= c->idx[i] * p->red_s[i];
    c->idx[i] = 0;
  }
  return false;
}

/* The kernel's share of the output, and the plan for it. */
static void reduce_prepare(const fg_kargs *k, reduce_plan *p, int64_t *b, int64_t *e) {
  const fg_reduce_attr *at = k->attr;
  const fg_shape *in = &k->in_shape[0];
  reduce_plan_make(in, resolve_axes(at->axes, in->ndim), p);
  fg_split_range(fg_shape_count(&k->out_shape), k->ith, k->nth, b, e);
}

/* Columns accumulated together: enough for a vector loop, small enough for the stack. */
#define REDUCE_CHUNK 64

#define SUM_INIT 0.0
#define SUM_COMBINE(acc, v) ((acc) += (v))
#define MAX_INIT (-INFINITY)
/* NaN wins, as in NumPy and PyTorch: once acc is NaN no comparison replaces it. */
#define MAX_COMBINE(acc, v) ((acc) = ((v) > (acc) || isnan(v)) ? (v) : (acc))

/* Reducing contiguous runs (the innermost axes reduced, as in a bias gradient or a per-sample
 * log-det): ROW_LANES independent accumulators break the dependency chain of one running sum
 * and let the compiler vectorise; they are combined in a fixed order, so the result does not
 * depend on how the outputs were split among threads. */
#define ROW_LANES 8
#define DEFINE_REDUCE_ROWS(op, T, sfx, INIT, COMBINE)                                   \
  FG_SIMD_CLONES static double op##_rows_##sfx(const T *base, const reduce_plan *p) {    \
    double lane[ROW_LANES];                                                              \
    for (int j = 0; j < ROW_LANES; j++) lane[j] = (INIT);                                \
    red_cursor c;                                                                        \
    red_cursor_start(&c);                                                                \
    do {                                                                                 \
      const T *v = base + c.off;                                                         \
      int64_t t = 0;                                                                     \
      for (; t + ROW_LANES <= p->last_d; t += ROW_LANES)                                 \
        for (int j = 0; j < ROW_LANES; j++) COMBINE(lane[j], (double)v[t + j]);          \
      for (; t < p->last_d; t++) COMBINE(lane[t % ROW_LANES], (double)v[t]);             \
    } while (red_cursor_next(&c, p));                                                    \
    double acc = lane[0];                                                                \
    for (int j = 1; j < ROW_LANES; j++) COMBINE(acc, lane[j]);                           \
    return acc;                                                                          \
  }

DEFINE_REDUCE_ROWS(sum, float, f32, SUM_INIT, SUM_COMBINE)
DEFINE_REDUCE_ROWS(sum, double, f64, SUM_INIT, SUM_COMBINE)
DEFINE_REDUCE_ROWS(max, float, f32, MAX_INIT, MAX_COMBINE)
DEFINE_REDUCE_ROWS(max, double, f64, MAX_INIT, MAX_COMBINE)

/* One body for every (op, type) pair: stamps out op##_##sfx. */
#define DEFINE_REDUCE_KERNEL(op, T, sfx, INIT, COMBINE)                                 \
  FG_SIMD_CLONES static fg_status op##_##sfx(const fg_kargs *k) {                        \
    reduce_plan p;                                                                       \
    int64_t b, e;                                                                        \
    reduce_prepare(k, &p, &b, &e);                                                       \
    const T *in = k->in[0];                                                              \
    T *out = k->out;                                                                     \
    if (p.empty_input) {                                                                 \
      for (int64_t o = b; o < e; o++) out[o] = (T)(INIT);                                \
      return FG_OK;                                                                      \
    }                                                                                    \
    if (p.inner == 1 && p.last_s == 1) {                                                 \
      for (int64_t o = b; o < e; o++)                                                    \
        out[o] = (T)op##_rows_##sfx(in + row_offset(&p, o), &p);                         \
      return FG_OK;                                                                      \
    }                                                                                    \
    double acc[REDUCE_CHUNK];                                                            \
    for (int64_t o = b; o < e;) {                                                        \
      int64_t col = o % p.inner, n = p.inner - col;                                      \
      if (n > e - o) n = e - o;                                                          \
      if (n > REDUCE_CHUNK) n = REDUCE_CHUNK;                                            \
      for (int64_t j = 0; j < n; j++) acc[j] = (INIT);                                   \
      const T *base = in + row_offset(&p, o / p.inner) + col;                            \
      red_cursor c;                                                                      \
      red_cursor_start(&c);                                                              \
      do {                                                                               \
        for (int64_t t = 0; t < p.last_d; t++) {                                         \
          const T *v = base + c.off + t * p.last_s;                                      \
          for (int64_t j = 0; j < n; j++) COMBINE(acc[j], (double)v[j]);                 \
        }                                                                                \
      } while (red_cursor_next(&c, &p));                                                 \
      for (int64_t j = 0; j < n; j++) out[o + j] = (T)acc[j];                            \
      o += n;                                                                            \
    }                                                                                    \
    return FG_OK;                                                                        \
  }

DEFINE_REDUCE_KERNEL(sum, float, f32, SUM_INIT, SUM_COMBINE)
DEFINE_REDUCE_KERNEL(sum, double, f64, SUM_INIT, SUM_COMBINE)
DEFINE_REDUCE_KERNEL(max, float, f32, MAX_INIT, MAX_COMBINE)
DEFINE_REDUCE_KERNEL(max, double, f64, MAX_INIT, MAX_COMBINE)

/* ---- gradients ---- */

/* The reduced axes of `node` and the keepdims shape of its output. */
static fg_shape node_keep_shape(fg_graph *g, fg_node node, fg_shape *in_shape, uint32_t *axes) {
  const fg_reduce_attr *at = fg_node_attr(g, node);
  *in_shape = fg_node_shape(g, fg_node_input(g, node, 0));
  *axes = resolve_axes(at->axes, in_shape->ndim);
  return reduced_shape(in_shape, *axes, true);
}

/* Every input element of a sum receives its row's gradient. */
static fg_status sum_vjp(fg_graph *g, fg_node node, fg_node gout, uint32_t need, fg_node *gin) {
  if (!(need & 1u)) return fg_graph_status(g);
  fg_shape xs;
  uint32_t axes;
  fg_shape ks = node_keep_shape(g, node, &xs, &axes);
  gin[0] = fg_broadcast_to(g, fg_reshape(g, gout, ks), xs);
  return fg_graph_status(g);
}

/* The gradient goes to the elements equal to the max, shared evenly among ties (as PyTorch's
 * amax does), so the rule is symmetric and its own VJP is well defined. */
static fg_status max_vjp(fg_graph *g, fg_node node, fg_node gout, uint32_t need, fg_node *gin) {
  if (!(need & 1u)) return fg_graph_status(g);
  fg_node x = fg_node_input(g, node, 0);
  fg_shape xs;
  uint32_t axes;
  fg_shape ks = node_keep_shape(g, node, &xs, &axes);
  fg_node is_max = fg_equal(g, x, fg_reshape(g, node, ks));
  fg_node ties = fg_sum(g, is_max, axes, true);
  gin[0] = fg_mul(g, is_max, fg_div(g, fg_reshape(g, gout, ks), ties));
  return fg_graph_status(g);
}

const fg_op_def fg_opdef_sum = {
    .name = "sum",
    .n_in = 1,
    .attr_size = sizeof(fg_reduce_attr),
    .infer = reduce_infer,
    .kernel_f32 = sum_f32,
    .kernel_f64 = sum_f64,
    .vjp = sum_vjp,
};

const fg_op_def fg_opdef_max = {
    .name = "max",
    .n_in = 1,
    .attr_size = sizeof(fg_reduce_attr),
    .infer = reduce_infer,
    .kernel_f32 = max_f32,
    .kernel_f64 = max_f64,
    .vjp = max_vjp,
};

/* ---- builders ---- */

static fg_node reduce_node(fg_graph *g, int op, fg_node x, uint32_t axes, bool keepdims) {
  fg_reduce_attr at;
  memset(&at, 0, sizeof at);
  /* Resolved here so that sum over FG_ALL_AXES and over every axis by name hash alike. */
  at.axes = resolve_axes(axes, fg_node_shape(g, x).ndim);
  at.keepdims = keepdims ? 1u : 0u;
  return fg_graph_add_node(g, op, 1, &x, &at);
}

fg_node fg_sum(fg_graph *g, fg_node x, uint32_t axes, bool keepdims) {
  return reduce_node(g, FG_OP_SUM, x, axes, keepdims);
}

fg_node fg_max(fg_graph *g, fg_node x, uint32_t axes, bool keepdims) {
  return reduce_node(g, FG_OP_MAX, x, axes, keepdims);
}

fg_node fg_mean(fg_graph *g, fg_node x, uint32_t axes, bool keepdims) {
  fg_node s = fg_sum(g, x, axes, keepdims);
  if (s == FG_POISON) return s;
  fg_shape xs = fg_node_shape(g, x);
  uint32_t mask = resolve_axes(axes, xs.ndim);
  double count = 1.0;
  for (int i = 0; i < xs.ndim; i++)
    if (mask & FG_AXIS(i)) count *= (double)xs.d[i];
  /* An empty reduction gives 0 * inf = NaN, the mean of nothing, as in NumPy and PyTorch. */
  return fg_mul_scalar(g, s, 1.0 / count);
}

fg_node fg_logsumexp(fg_graph *g, fg_node x, uint32_t axes, bool keepdims) {
  fg_dtype t = fg_node_dtype(g, x);
  /* The shift is a constant as far as gradients go: the result does not depend on it. */
  fg_node m = fg_stop_gradient(g, fg_max(g, x, axes, true));
  /* A row whose max is infinite (all -inf, empty, or holding +inf) would compute
   * inf - inf = NaN; shifting it by 0 instead gives log(0) = -inf or log(inf) = inf. */
  fg_node inf_row = fg_equal(g, fg_abs(g, m), fg_scalar(g, INFINITY, t));
  fg_node shift = fg_where(g, inf_row, fg_scalar(g, 0.0, t), m);
  fg_node s = fg_sum(g, fg_exp(g, fg_sub(g, x, shift)), axes, keepdims);
  if (!keepdims) shift = fg_reshape(g, shift, fg_node_shape(g, s));
  return fg_add(g, fg_log(g, s), shift);
}

/* The axes to sum so that `from` becomes `to`: the leading extra axes and those where `to`
 * has size 1.  False when `to` does not broadcast to `from`. */
static bool sum_to_axes(const fg_shape *from, const fg_shape *to, uint32_t *axes) {
  if (to->ndim < 0 || to->ndim > from->ndim) return false;
  int lead = from->ndim - to->ndim;
  *axes = all_axes_of(lead);
  for (int i = 0; i < to->ndim; i++) {
    int64_t f = from->d[lead + i], t = to->d[i];
    if (t == f) continue;
    if (t != 1) return false;
    *axes |= FG_AXIS(lead + i);
  }
  return true;
}

fg_node fg_sum_to(fg_graph *g, fg_node x, fg_shape shape) {
  if (fg_graph_status(g) != FG_OK) return FG_POISON;
  if (!fg_node_valid(g, x))
    return fg_graph_fail(g, FG_E_MISUSE, "sum_to: input %d is not a node of this graph", (int)x);
  fg_shape xs = fg_node_shape(g, x);
  /* The common case in autodiff: nothing was broadcast, so no node is added. */
  if (fg_shape_equal(&xs, &shape)) return x;
  uint32_t axes;
  if (!sum_to_axes(&xs, &shape, &axes)) {
    char a[160], b[160] = "(invalid shape)";
    if (shape.ndim >= 0 && shape.ndim <= FG_MAX_DIMS) fg_shape_str(&shape, b, sizeof b);
    return fg_graph_fail(g, FG_E_SHAPE, "sum_to: cannot sum %s down to %s, which does not "
                         "broadcast to it", fg_shape_str(&xs, a, sizeof a), b);
  }
  return fg_reshape(g, fg_sum(g, x, axes, false), shape);
}
