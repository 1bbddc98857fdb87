/* Cases for the indexing family (ops/index.c): gather, scatter_add and searchsorted.  Indices
 * are constants fixed by each case (kept in the case's context), so the references read them
 * directly; references walk multi-indices one element at a time.  The criterion tests at the
 * end check out-of-range indices and thread-count independence. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "core/ir/op.h"
#include "core/runtime/program.h"
#include "tests/op_cases.h"

static void unravel(const fg_shape *s, int64_t flat, int64_t *idx) {
  for (int d = (int)s->ndim - 1; d >= 0; d--) {
    idx[d] = flat % s->d[d];
    flat /= s->d[d];
  }
}

/* Flat index into s of multi-index idx, reading size-1 axes at 0 (broadcast). */
static int64_t ravel_bcast(const fg_shape *s, const int64_t *idx) {
  int64_t flat = 0;
  for (int d = 0; d < s->ndim; d++) flat = flat * s->d[d] + (s->d[d] == 1 ? 0 : idx[d]);
  return flat;
}

/* An index table: its shape and values. */
typedef struct index_ctx {
  int axis;
  fg_shape shape;
  double v[24];
  int64_t size; /* scatter_add's output size along the axis */
} index_ctx;

static fg_node index_node(fg_graph *g, const index_ctx *c, fg_dtype t) {
  return fg_constant_values(g, t, c->shape, c->v);
}

/* ---- gather ---- */

static fg_node build_gather(fg_graph *g, const fg_node *in, const void *ctx) {
  const index_ctx *c = ctx;
  return fg_gather(g, in[0], index_node(g, c, fg_node_dtype(g, in[0])), c->axis);
}
static void ref_gather(const fg_tensor *const *in, fg_tensor *out, const void *ctx) {
  const index_ctx *c = ctx;
  int64_t idx[FG_MAX_DIMS];
  for (int64_t j = 0; j < fg_tensor_numel(out); j++) {
    unravel(&out->shape, j, idx);
    int64_t at = (int64_t)c->v[ravel_bcast(&c->shape, idx)];
    idx[c->axis] = at;
    fg_tensor_set(out, j, fg_tensor_get(in[0], ravel_bcast(&in[0]->shape, idx)));
  }
}

/* ---- scatter_add ---- */

static fg_node build_scatter(fg_graph *g, const fg_node *in, const void *ctx) {
  const index_ctx *c = ctx;
  return fg_scatter_add(g, in[0], index_node(g, c, fg_node_dtype(g, in[0])), c->axis, c->size);
}
static void ref_scatter(const fg_tensor *const *in, fg_tensor *out, const void *ctx) {
  const index_ctx *c = ctx;
  int64_t idx[FG_MAX_DIMS];
  fg_tensor_fill(out, 0.0);
  for (int64_t j = 0; j < fg_tensor_numel(in[0]); j++) {
    unravel(&in[0]->shape, j, idx);
    idx[c->axis] = (int64_t)c->v[ravel_bcast(&c->shape, idx)];
    int64_t o = 0;
    for (int d = 0; d < out->shape.ndim; d++) o = o * out->shape.d[d] + idx[d];
    fg_tensor_set(out, o, fg_tensor_get(out, o) + fg_tensor_get(in[0], j));
  }
}

/* ---- searchsorted: the table is made sorted from input 0 (a running sum of exp), the values
 * are input 1 scaled onto its range; the reference counts by a linear scan ---- */

typedef struct search_ctx {
  bool right, ties; /* ties: the values are the table's own elements */
} search_ctx;

static fg_node sorted_of(fg_graph *g, fg_node x) {
  return fg_add_scalar(g, fg_cumsum(g, fg_exp(g, x), -1, false), -3.0);
}
static fg_node build_search(fg_graph *g, const fg_node *in, const void *ctx) {
  const search_ctx *c = ctx;
  fg_node sorted = sorted_of(g, in[0]);
  fg_node values = c->ties ? sorted : fg_mul_scalar(g, in[1], 4.0);
  return fg_searchsorted(g, sorted, values, c->right);
}
static void ref_search(const fg_tensor *const *in, fg_tensor *out, const void *ctx) {
  const search_ctx *c = ctx;
  const fg_shape *xs = &in[0]->shape;
  int last = (int)xs->ndim - 1;
  int64_t k = xs->d[last], idx[FG_MAX_DIMS];
  double sorted[16];
  for (int64_t j = 0; j < fg_tensor_numel(out); j++) {
    unravel(&out->shape, j, idx);
    double acc = -3.0, v;
    int64_t mine = idx[last];
    for (int64_t t = 0; t < k; t++) {
      idx[last] = t;
      acc += exp(fg_tensor_get(in[0], ravel_bcast(xs, idx)));
      sorted[t] = acc;
    }
    if (c->ties) {
      v = sorted[mine];
    } else {
      idx[last] = mine;
      v = 4.0 * fg_tensor_get(in[1], ravel_bcast(&in[1]->shape, idx));
    }
    int64_t n = 0;
    for (int64_t t = 0; t < k; t++) n += c->right ? sorted[t] <= v : sorted[t] < v;
    fg_tensor_set(out, j, (double)n);
  }
}

#define S2(a, b) {2, {a, b}}
#define S3(a, b, c) {3, {a, b, c}}

static const index_ctx gather_rows = {1, S2(3, 2), {4, 0, 2, 2, 1, 3}, 0};
static const index_ctx gather_axis0 = {0, S2(2, 3), {1, 0, 2, 2, 2, 0}, 0};
static const index_ctx gather_bcast = {2, S3(3, 4, 1), {0, 5, 1, 2, 3, 4, 5, 0, 2, 2, 1, 3}, 0};
static const index_ctx scatter_rows = {1, S2(3, 4), {0, 2, 2, 4, 1, 1, 1, 1, 3, 0, 4, 2}, 5};
static const index_ctx scatter_bcast = {0, S2(3, 1), {1, 0, 1}, 2};

static const op_case cases[] = {
    {"gather", "axis 1 of [3,5], repeats", 2, {S2(3, 5)}, -2, 2, build_gather, &gather_rows, ref_gather, .gradgrad = true},
    {"gather", "axis 0 of [3,3]", 1, {S2(3, 3)}, -2, 2, build_gather, &gather_axis0, ref_gather},
    {"gather", "data [1,4,6] broadcast over indices [3,4,1]", 1, {S3(1, 4, 6)}, -2, 2, build_gather, &gather_bcast, ref_gather, .gradgrad = true},
    {"scatter_add", "[3,4] into [3,5] along axis 1", 1, {S2(3, 4)}, -2, 2, build_scatter, &scatter_rows, ref_scatter, .gradgrad = true},
    {"scatter_add", "indices [3,1] broadcast over [3,2], axis 0", 1, {S2(3, 2)}, -2, 2, build_scatter, &scatter_bcast, ref_scatter},
    {"searchsorted", "left, [3,6] table, [3,4] values", 2, {S2(3, 6), S2(3, 4)}, -1, 1, build_search, &(const search_ctx){false, false}, ref_search, .no_grad = true},
    {"searchsorted", "right, table [1,5] broadcast over values [4,3]", 2, {S2(1, 5), S2(4, 3)}, -1, 1, build_search, &(const search_ctx){true, false}, ref_search, .no_grad = true},
    {"searchsorted", "left on ties", 1, {S2(2, 5)}, -1, 1, build_search, &(const search_ctx){false, true}, ref_search, .no_grad = true},
    {"searchsorted", "right on ties", 1, {S2(2, 5)}, -1, 1, build_search, &(const search_ctx){true, true}, ref_search, .no_grad = true},
};

static fg_node in_f32(fg_graph *g, const char *name, fg_shape s) { return fg_input(g, name, FG_F32, s); }
static void bad_gather_rank(fg_graph *g) { fg_gather(g, in_f32(g, "a", fg_shape2(2, 3)), in_f32(g, "i", fg_shape1(2)), 1); }
static void bad_gather_axis(fg_graph *g) { fg_gather(g, in_f32(g, "a", fg_shape2(2, 3)), in_f32(g, "i", fg_shape2(2, 1)), 2); }
static void bad_gather_bcast(fg_graph *g) { fg_gather(g, in_f32(g, "a", fg_shape2(2, 3)), in_f32(g, "i", fg_shape2(3, 1)), 1); }
static void bad_gather_dtype(fg_graph *g) { fg_gather(g, in_f32(g, "a", fg_shape2(2, 3)), fg_input(g, "i", FG_F64, fg_shape2(2, 1)), 1); }
static void bad_scatter_shape(fg_graph *g) { fg_scatter_add(g, in_f32(g, "a", fg_shape2(2, 3)), in_f32(g, "i", fg_shape2(2, 1)), 1, 4); }
static void bad_search_rank(fg_graph *g) { fg_searchsorted(g, in_f32(g, "a", fg_shape2(2, 3)), in_f32(g, "v", fg_shape1(2)), false); }

static const op_reject_case rejects[] = {
    {"gather", "indices of another rank", bad_gather_rank, FG_E_SHAPE, "op 'gather'"},
    {"gather", "axis 2 of a 2-d input", bad_gather_axis, FG_E_SHAPE, "axis 2"},
    {"gather", "axis 0 sizes 2 and 3", bad_gather_bcast, FG_E_SHAPE, "do not broadcast"},
    {"gather", "float64 indices for float32 data", bad_gather_dtype, FG_E_DTYPE, "dtype"},
    {"scatter_add", "indices shorter than the values along the axis", bad_scatter_shape, FG_E_SHAPE, "scatter_add"},
    {"searchsorted", "values of another rank", bad_search_rank, FG_E_SHAPE, "searchsorted"},
};

const op_case_list op_cases_index = {"index", cases, sizeof cases / sizeof *cases, rejects,
                                     sizeof rejects / sizeof *rejects};

/* ---- criterion tests beyond the table ---- */

/* gather(x, constant indices) on x = 0..n-1; the run's status and message. */
static fg_status run_gather(const double *index, fg_err *e) {
  fg_graph *g;
  fg_graph_new(&g, NULL);
  fg_node x = fg_input(g, "x", FG_F64, fg_shape2(1, 4));
  fg_node y = fg_gather(g, x, fg_constant_values(g, FG_F64, fg_shape2(1, 2), index), 1);
  fg_program *p;
  cr_assert_eq(fg_program_new(&p, g, 1, &y, e), FG_OK, "%s", e->msg);
  fg_tensor *xv;
  fg_shape s = fg_shape2(1, 4);
  const double vals[4] = {0, 1, 2, 3};
  cr_assert_eq(fg_tensor_from_data(&xv, FG_F64, &s, vals, NULL), FG_OK);
  cr_assert_eq(fg_program_bind(p, "x", xv, e), FG_OK);
  fg_status st = fg_program_run(p, e);
  if (st == FG_OK) cr_expect_eq(fg_tensor_get(fg_program_output(p, 0), 1), index[1]);
  fg_tensor_free(xv);
  fg_program_free(p);
  fg_graph_free(g);
  return st;
}

Test(index, bad_indices_fail_the_run_naming_the_index) {
  fg_err e;
  const double ok[2] = {3, 1}, past[2] = {0, 4}, negative[2] = {-1, 0}, fraction[2] = {0.5, 0};
  cr_expect_eq(run_gather(ok, &e), FG_OK, "%s", e.msg);
  cr_expect_eq(run_gather(past, &e), FG_E_MISUSE);
  cr_expect(strstr(e.msg, "gather") && strstr(e.msg, "index 4") && strstr(e.msg, "[0, 4)"), "%s", e.msg);
  cr_expect_eq(run_gather(negative, &e), FG_E_MISUSE);
  cr_expect_eq(run_gather(fraction, &e), FG_E_MISUSE);
  cr_expect(strstr(e.msg, "0.5"), "%s", e.msg);
}

Test(index, searchsorted_puts_nan_in_bin_zero) {
  fg_graph *g;
  fg_graph_new(&g, NULL);
  const double table[3] = {-1, 0, 1}, values[3] = {NAN, 0, 5};
  fg_node t = fg_constant_values(g, FG_F32, fg_shape2(1, 3), table);
  fg_node v = fg_constant_values(g, FG_F32, fg_shape2(1, 3), values);
  fg_node y = fg_searchsorted(g, t, v, true);
  fg_program *p;
  fg_err e;
  cr_assert_eq(fg_program_new(&p, g, 1, &y, &e), FG_OK, "%s", e.msg);
  cr_assert_eq(fg_program_run(p, &e), FG_OK, "%s", e.msg);
  const double want[3] = {0, 2, 3};
  for (int i = 0; i < 3; i++) cr_expect_eq(fg_tensor_get(fg_program_output(p, 0), i), want[i], "value %d", i);
  fg_program_free(p);
  fg_graph_free(g);
}

/* Runs an op's float64 kernel over its whole output split into nth parts. */
static void run_split(const fg_op_def *d, const void *attr, int n_in, const void *const *ins,
                      const fg_shape *in_shapes, fg_shape out_shape, double *out, int nth) {
  const fg_dtype dts[2] = {FG_F64, FG_F64};
  for (int ith = 0; ith < nth; ith++) {
    fg_kargs k = {.attr = attr, .n_in = n_in, .in = ins, .in_shape = in_shapes, .in_dtype = dts,
                  .out = out, .out_shape = out_shape, .ith = ith, .nth = nth};
    cr_assert_eq(d->kernel_f64(&k), FG_OK);
  }
}

Test(index, kernels_give_the_same_bits_for_any_thread_count) {
  enum { R = 7, M = 9, N = 5 };
  double src[R * M], index[R * M], one[R * N], many[R * N];
  for (int i = 0; i < R * M; i++) src[i] = sin(i * 0.7) * 100, index[i] = (double)((i * 7) % N);
  const fg_shape shapes[2] = {S2(R, M), S2(R, M)};
  const void *ins[2] = {src, index};
  fg_gather_attr at;
  memset(&at, 0, sizeof at);
  at.axis = 1, at.size = N;
  run_split(&fg_opdef_scatter_add, &at, 2, ins, shapes, fg_shape2(R, N), one, 1);
  for (int nth = 2; nth <= 6; nth++) {
    memset(many, 0xff, sizeof many);
    run_split(&fg_opdef_scatter_add, &at, 2, ins, shapes, fg_shape2(R, N), many, nth);
    cr_expect_eq(memcmp(one, many, sizeof one), 0, "scatter_add, %d parts", nth);
  }
}
