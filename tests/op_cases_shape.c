/* Cases for the shape family (ops/shape.c): reshape, permute (and transpose), slice (and
 * slice_axis), pad, concat, broadcast_to and after.  Each reference maps indices explicitly through
 * multi-indices, one element at a time.  The criterion tests at the end check the exact
 * wording of the shape errors, the no-node paths, many-input concat and thread-count
 * independence of the kernels. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "ops/autodiff/autodiff.h"
#include "core/ir/op.h"
#include "core/runtime/program.h"
#include "tests/op_cases.h"

/* Error detail of the last failing library call, for assertion messages. */
static fg_err terr __attribute__((unused));

static void unravel(const fg_shape *s, int64_t flat, int64_t *idx) {
  for (int d = s->ndim - 1; d >= 0; d--) {
    idx[d] = flat % s->d[d];
    flat /= s->d[d];
  }
}

static int64_t ravel(const fg_shape *s, const int64_t *idx) {
  int64_t flat = 0;
  for (int d = 0; d < s->ndim; d++) flat = flat * s->d[d] + idx[d];
  return flat;
}

/* ---- reshape ---- */

static fg_node build_reshape(fg_graph *g, const fg_node *in, const void *ctx) {
  return fg_reshape(g, in[0], *(const fg_shape *)ctx);
}
static void ref_reshape(const fg_tensor *const *in, fg_tensor *out, const void *ctx) {
  (void)ctx;
  for (int64_t j = 0; j < fg_tensor_numel(out); j++) fg_tensor_set(out, j, fg_tensor_get(in[0], j));
}

/* ---- permute ---- */

typedef struct perm_ctx { int perm[FG_MAX_DIMS]; } perm_ctx;

static fg_node build_permute(fg_graph *g, const fg_node *in, const void *ctx) {
  return fg_permute(g, in[0], ((const perm_ctx *)ctx)->perm);
}
static fg_node build_transpose(fg_graph *g, const fg_node *in, const void *ctx) {
  (void)ctx;
  return fg_transpose(g, in[0]);
}
/* Output index i reads input index j with j[perm[a]] = i[a]. */
static void ref_permute(const fg_tensor *const *in, fg_tensor *out, const void *ctx) {
  const perm_ctx *c = ctx;
  int64_t oi[FG_MAX_DIMS], ii[FG_MAX_DIMS];
  for (int64_t j = 0; j < fg_tensor_numel(out); j++) {
    unravel(&out->shape, j, oi);
    for (int a = 0; a < out->shape.ndim; a++) ii[c->perm[a]] = oi[a];
    fg_tensor_set(out, j, fg_tensor_get(in[0], ravel(&in[0]->shape, ii)));
  }
}
static const perm_ctx swap_last_of_3 = {{0, 2, 1}};

/* ---- slice ---- */

typedef struct slice_ctx {
  int64_t start[FG_MAX_DIMS], stop[FG_MAX_DIMS], step[FG_MAX_DIMS];
  bool unit_step; /* pass NULL for step */
} slice_ctx;

static fg_node build_slice(fg_graph *g, const fg_node *in, const void *ctx) {
  const slice_ctx *c = ctx;
  return fg_slice(g, in[0], c->start, c->stop, c->unit_step ? NULL : c->step);
}
static void ref_slice(const fg_tensor *const *in, fg_tensor *out, const void *ctx) {
  const slice_ctx *c = ctx;
  int64_t idx[FG_MAX_DIMS];
  for (int64_t j = 0; j < fg_tensor_numel(out); j++) {
    unravel(&out->shape, j, idx);
    for (int a = 0; a < out->shape.ndim; a++) idx[a] = c->start[a] + idx[a] * (c->unit_step ? 1 : c->step[a]);
    fg_tensor_set(out, j, fg_tensor_get(in[0], ravel(&in[0]->shape, idx)));
  }
}

typedef struct slice_axis_ctx { int axis; int64_t start, stop; } slice_axis_ctx;

static fg_node build_slice_axis(fg_graph *g, const fg_node *in, const void *ctx) {
  const slice_axis_ctx *c = ctx;
  return fg_slice_axis(g, in[0], c->axis, c->start, c->stop);
}
static void ref_slice_axis(const fg_tensor *const *in, fg_tensor *out, const void *ctx) {
  const slice_axis_ctx *c = ctx;
  int axis = c->axis < 0 ? c->axis + out->shape.ndim : c->axis;
  int64_t idx[FG_MAX_DIMS];
  for (int64_t j = 0; j < fg_tensor_numel(out); j++) {
    unravel(&out->shape, j, idx);
    idx[axis] += c->start;
    fg_tensor_set(out, j, fg_tensor_get(in[0], ravel(&in[0]->shape, idx)));
  }
}

/* ---- pad ---- */

typedef struct pad_ctx {
  int64_t lo[FG_MAX_DIMS], hi[FG_MAX_DIMS], interior[FG_MAX_DIMS];
  double value;
  bool no_interior; /* pass NULL for interior */
} pad_ctx;

static fg_node build_pad(fg_graph *g, const fg_node *in, const void *ctx) {
  const pad_ctx *c = ctx;
  return fg_pad(g, in[0], c->lo, c->hi, c->no_interior ? NULL : c->interior, c->value);
}
/* Fill with the value, then put input element i at lo + i * (interior + 1) on each axis. */
static void ref_pad(const fg_tensor *const *in, fg_tensor *out, const void *ctx) {
  const pad_ctx *c = ctx;
  fg_tensor_fill(out, c->value);
  int64_t idx[FG_MAX_DIMS];
  for (int64_t j = 0; j < fg_tensor_numel(in[0]); j++) {
    unravel(&in[0]->shape, j, idx);
    for (int a = 0; a < in[0]->shape.ndim; a++)
      idx[a] = c->lo[a] + idx[a] * (c->no_interior ? 1 : c->interior[a] + 1);
    fg_tensor_set(out, ravel(&out->shape, idx), fg_tensor_get(in[0], j));
  }
}

/* ---- concat ---- */

typedef struct concat_ctx { int n, axis; } concat_ctx;

static fg_node build_concat(fg_graph *g, const fg_node *in, const void *ctx) {
  const concat_ctx *c = ctx;
  return fg_concat(g, c->n, in, c->axis);
}
static void ref_concat(const fg_tensor *const *in, fg_tensor *out, const void *ctx) {
  const concat_ctx *c = ctx;
  int axis = c->axis < 0 ? c->axis + out->shape.ndim : c->axis;
  int64_t idx[FG_MAX_DIMS];
  for (int64_t j = 0; j < fg_tensor_numel(out); j++) {
    unravel(&out->shape, j, idx);
    int k = 0;
    while (idx[axis] >= in[k]->shape.d[axis]) idx[axis] -= in[k++]->shape.d[axis];
    fg_tensor_set(out, j, fg_tensor_get(in[k], ravel(&in[k]->shape, idx)));
  }
}

/* ---- broadcast_to ---- */

static fg_node build_broadcast(fg_graph *g, const fg_node *in, const void *ctx) {
  return fg_broadcast_to(g, in[0], *(const fg_shape *)ctx);
}
static void ref_broadcast(const fg_tensor *const *in, fg_tensor *out, const void *ctx) {
  (void)ctx;
  const fg_shape *is = &in[0]->shape;
  int64_t oi[FG_MAX_DIMS], ii[FG_MAX_DIMS];
  for (int64_t j = 0; j < fg_tensor_numel(out); j++) {
    unravel(&out->shape, j, oi);
    for (int a = 0; a < is->ndim; a++) {
      int64_t o = oi[out->shape.ndim - is->ndim + a];
      ii[a] = is->d[a] == 1 ? 0 : o;
    }
    fg_tensor_set(out, j, fg_tensor_get(in[0], ravel(is, ii)));
  }
}

#define S0 {0, {0}}
#define S1(a) {1, {a}}
#define S2(a, b) {2, {a, b}}
#define S3(a, b, c) {3, {a, b, c}}
#define S4(a, b, c, d) {4, {a, b, c, d}}

/* ---- after ---- */

static fg_node build_after(fg_graph *g, const fg_node *in, const void *ctx) {
  (void)ctx;
  return fg_after(g, in[0], in[1]);
}
/* in[0] itself; in[1] (any shape) is only waited for. */
static void ref_after(const fg_tensor *const *in, fg_tensor *out, const void *ctx) {
  (void)ctx;
  for (int64_t j = 0; j < fg_tensor_numel(out); j++) fg_tensor_set(out, j, fg_tensor_get(in[0], j));
}

static const fg_shape to_6_4 = S2(6, 4), to_0d = S0, to_1_1 = S2(1, 1), to_0_5 = S2(0, 5),
                      to_2_3_4 = S3(2, 3, 4), to_2_4_3 = S3(2, 4, 3), to_2_3 = S2(2, 3),
                      to_2_5_3 = S3(2, 5, 3), to_3_1_2 = S3(3, 1, 2);

#define PERM(...) (&(const perm_ctx){{__VA_ARGS__}})
#define I64(...) {__VA_ARGS__}
#define SLICE(start, stop, step) (&(const slice_ctx){start, stop, step, false})
#define SLICE1(start, stop) (&(const slice_ctx){start, stop, {0}, true})
#define PAD(lo, hi, interior, v) (&(const pad_ctx){lo, hi, interior, v, false})
#define PAD0(lo, hi, v) (&(const pad_ctx){lo, hi, {0}, v, true})
#define CAT(n, axis) (&(const concat_ctx){n, axis})

static const op_case cases[] = {
    {"reshape", "[2,3,4] -> [6,4]", 1, {S3(2, 3, 4)}, -2, 2, build_reshape, &to_6_4, ref_reshape, .gradgrad = true},
    {"reshape", "[1] -> 0-d", 1, {S1(1)}, -2, 2, build_reshape, &to_0d, ref_reshape, .gradgrad = false},
    {"reshape", "0-d -> [1,1]", 1, {S0}, -2, 2, build_reshape, &to_1_1, ref_reshape, .gradgrad = false},
    {"reshape", "[3,0] -> [0,5] (no elements)", 1, {S2(3, 0)}, -2, 2, build_reshape, &to_0_5, ref_reshape, .gradgrad = false},
    {"permute", "4-D [2,3,4,5] by [2,0,3,1]", 1, {S4(2, 3, 4, 5)}, -2, 2, build_permute, PERM(2, 0, 3, 1), ref_permute, .gradgrad = true},
    {"permute", "2-D [3,5] by [1,0]", 1, {S2(3, 5)}, -2, 2, build_permute, PERM(1, 0), ref_permute, .gradgrad = false},
    {"permute", "identity [2,3] by [0,1]", 1, {S2(2, 3)}, -2, 2, build_permute, PERM(0, 1), ref_permute, .gradgrad = false},
    {"permute", "transpose of [2,3,4]", 1, {S3(2, 3, 4)}, -2, 2, build_transpose, &swap_last_of_3, ref_permute, .gradgrad = false},
    {"slice", "strided [7,5]: [1:7:2, 0:5:3]", 1, {S2(7, 5)}, -2, 2, build_slice, SLICE(I64(1, 0), I64(7, 5), I64(2, 3)), ref_slice, .gradgrad = true},
    {"slice", "3-D [4,5,6]: [1:3, 0:5:2, 2:6:4]", 1, {S3(4, 5, 6)}, -2, 2, build_slice, SLICE(I64(1, 0, 2), I64(3, 5, 6), I64(1, 2, 4)), ref_slice, .gradgrad = false},
    {"slice", "[10]: 2:9:3 (stop past the last element)", 1, {S1(10)}, -2, 2, build_slice, SLICE(I64(2), I64(9), I64(3)), ref_slice, .gradgrad = false},
    {"slice", "NULL step: [4,5] rows 1:3", 1, {S2(4, 5)}, -2, 2, build_slice, SLICE1(I64(1, 0), I64(3, 5)), ref_slice, .gradgrad = false},
    {"slice", "empty: [4,3] rows 2:2", 1, {S2(4, 3)}, -2, 2, build_slice, SLICE1(I64(2, 0), I64(2, 3)), ref_slice, .gradgrad = false},
    {"slice", "0-d", 1, {S0}, -2, 2, build_slice, SLICE1(I64(0), I64(0)), ref_slice, .gradgrad = false},
    {"slice", "slice_axis -1 of [3,6]: 2:5", 1, {S2(3, 6)}, -2, 2, build_slice_axis, &(const slice_axis_ctx){-1, 2, 5}, ref_slice_axis, .gradgrad = false},
    {"pad", "[3,4] lo [1,0] hi [2,1] interior [1,2], value 0.5", 1, {S2(3, 4)}, -2, 2, build_pad, PAD(I64(1, 0), I64(2, 1), I64(1, 2), 0.5), ref_pad, .gradgrad = true},
    {"pad", "NULL interior: [2,3] lo [0,2] hi [1,0]", 1, {S2(2, 3)}, -2, 2, build_pad, PAD0(I64(0, 2), I64(1, 0), -1.0), ref_pad, .gradgrad = false},
    {"pad", "3-D [2,3,2] interior [0,1,3]", 1, {S3(2, 3, 2)}, -2, 2, build_pad, PAD(I64(1, 0, 0), I64(0, 1, 2), I64(0, 1, 3), 0.0), ref_pad, .gradgrad = false},
    {"pad", "[5] interior 2 (strided-slice gradient shape)", 1, {S1(5)}, -2, 2, build_pad, PAD(I64(0), I64(0), I64(2), 0.0), ref_pad, .gradgrad = false},
    {"pad", "zero-sized axis [0,2]", 1, {S2(0, 2)}, -2, 2, build_pad, PAD(I64(1, 1), I64(2, 0), I64(3, 1), 2.0), ref_pad, .gradgrad = false},
    {"pad", "4-D channel pad [2,2,3,4] lo [0,1,0,0] hi [0,2,0,0] (unpadded axes joined)", 1, {S4(2, 2, 3, 4)}, -2, 2, build_pad, PAD0(I64(0, 1, 0, 0), I64(0, 2, 0, 0), 0.25), ref_pad, .gradgrad = false},
    {"pad", "3-D [2,3,4] interior [0,1,0]: an unpadded last axis that cannot join", 1, {S3(2, 3, 4)}, -2, 2, build_pad, PAD(I64(0, 1, 0), I64(1, 0, 0), I64(0, 1, 0), 0.0), ref_pad, .gradgrad = false},
    {"pad", "0-d (a copy)", 1, {S0}, -2, 2, build_pad, PAD0(I64(0), I64(0), 0.0), ref_pad, .gradgrad = false},
    {"concat", "3 inputs on the middle axis: [2,1,3] [2,4,3] [2,2,3]", 3, {S3(2, 1, 3), S3(2, 4, 3), S3(2, 2, 3)}, -2, 2, build_concat, CAT(3, 1), ref_concat, .gradgrad = true},
    {"concat", "axis 0: [2,3] [1,3]", 2, {S2(2, 3), S2(1, 3)}, -2, 2, build_concat, CAT(2, 0), ref_concat, .gradgrad = false},
    {"concat", "axis -1: [2,2] [2,3] [2,1]", 3, {S2(2, 2), S2(2, 3), S2(2, 1)}, -2, 2, build_concat, CAT(3, -1), ref_concat, .gradgrad = false},
    {"concat", "with an empty input: [2,0,3] [2,2,3]", 2, {S3(2, 0, 3), S3(2, 2, 3)}, -2, 2, build_concat, CAT(2, 1), ref_concat, .gradgrad = false},
    {"concat", "one input", 1, {S2(2, 3)}, -2, 2, build_concat, CAT(1, 1), ref_concat, .gradgrad = false},
    {"broadcast_to", "leading axes and 1s: [3,1] -> [2,3,4]", 1, {S2(3, 1)}, -2, 2, build_broadcast, &to_2_3_4, ref_broadcast, .gradgrad = true},
    {"broadcast_to", "[3] -> [2,4,3]", 1, {S1(3)}, -2, 2, build_broadcast, &to_2_4_3, ref_broadcast, .gradgrad = false},
    {"broadcast_to", "0-d -> [2,3]", 1, {S0}, -2, 2, build_broadcast, &to_2_3, ref_broadcast, .gradgrad = false},
    {"broadcast_to", "middle 1: [2,1,3] -> [2,5,3]", 1, {S3(2, 1, 3)}, -2, 2, build_broadcast, &to_2_5_3, ref_broadcast, .gradgrad = false},
    {"broadcast_to", "[1,1] -> [3,1,2]", 1, {S2(1, 1)}, -2, 2, build_broadcast, &to_3_1_2, ref_broadcast, .gradgrad = false},
    {"after", "[2,3] after a [4] (no gradient to it)", 2, {S2(2, 3), S1(4)}, -2, 2, build_after, NULL, ref_after, .skip_grad_mask = 1u << 1},
    {"after", "0-d after [2,2]", 2, {S0, S2(2, 2)}, -2, 2, build_after, NULL, ref_after, .skip_grad_mask = 1u << 1, .gradgrad = true},
};

/* ---- rejections ---- */

static fg_node in23(fg_graph *g) { return fg_input(g, "x", FG_F32, fg_shape2(2, 3)); }

static void bad_reshape_count(fg_graph *g) { fg_reshape(g, in23(g), fg_shape2(4, 2)); }
static void bad_reshape_negative(fg_graph *g) { fg_reshape(g, in23(g), fg_shape2(-2, -3)); }
static void bad_reshape_rank(fg_graph *g) {
  fg_shape s = fg_shape1(6);
  s.ndim = FG_MAX_DIMS + 1;
  fg_reshape(g, in23(g), s);
}
static void bad_permute_repeat(fg_graph *g) { fg_permute(g, in23(g), (const int[]){0, 0}); }
static void bad_permute_range(fg_graph *g) { fg_permute(g, in23(g), (const int[]){0, 2}); }
static void bad_permute_null(fg_graph *g) { fg_permute(g, in23(g), NULL); }
static void bad_transpose_1d(fg_graph *g) { fg_transpose(g, fg_input(g, "x", FG_F32, fg_shape1(3))); }
static void bad_slice_stop(fg_graph *g) {
  fg_slice(g, in23(g), (const int64_t[]){0, 0}, (const int64_t[]){2, 5}, NULL);
}
static void bad_slice_order(fg_graph *g) {
  fg_slice(g, in23(g), (const int64_t[]){2, 0}, (const int64_t[]){1, 3}, NULL);
}
static void bad_slice_step(fg_graph *g) {
  fg_slice(g, in23(g), (const int64_t[]){0, 0}, (const int64_t[]){2, 3}, (const int64_t[]){1, 0});
}
static void bad_slice_negative(fg_graph *g) {
  fg_slice(g, in23(g), (const int64_t[]){-1, 0}, (const int64_t[]){2, 3}, NULL);
}
static void bad_slice_axis(fg_graph *g) { fg_slice_axis(g, in23(g), 2, 0, 1); }
static void bad_pad_lo(fg_graph *g) {
  fg_pad(g, in23(g), (const int64_t[]){0, -1}, (const int64_t[]){0, 0}, NULL, 0.0);
}
static void bad_pad_interior(fg_graph *g) {
  fg_pad(g, in23(g), (const int64_t[]){0, 0}, (const int64_t[]){0, 0}, (const int64_t[]){-2, 0}, 0.0);
}
static void bad_pad_overflow(fg_graph *g) {
  fg_pad(g, in23(g), (const int64_t[]){0, 0}, (const int64_t[]){0, INT64_MAX - 2}, NULL, 0.0);
}
static void bad_concat_axis_size(fg_graph *g) {
  fg_node xs[2] = {fg_input(g, "a", FG_F32, fg_shape3(2, 3, 4)), fg_input(g, "b", FG_F32, fg_shape3(2, 3, 5))};
  fg_concat(g, 2, xs, 1);
}
static void bad_concat_dtype(fg_graph *g) {
  fg_node xs[2] = {fg_input(g, "a", FG_F32, fg_shape2(2, 3)), fg_input(g, "b", FG_F64, fg_shape2(2, 3))};
  fg_concat(g, 2, xs, 0);
}
static void bad_concat_rank(fg_graph *g) {
  fg_node xs[2] = {fg_input(g, "a", FG_F32, fg_shape2(2, 3)), fg_input(g, "b", FG_F32, fg_shape3(2, 3, 1))};
  fg_concat(g, 2, xs, 0);
}
static void bad_concat_axis(fg_graph *g) {
  fg_node x = in23(g);
  fg_concat(g, 1, &x, 2);
}
static void bad_concat_none(fg_graph *g) { fg_concat(g, 0, NULL, 0); }
static void bad_broadcast_size(fg_graph *g) { fg_broadcast_to(g, in23(g), fg_shape2(4, 3)); }
static void bad_broadcast_rank(fg_graph *g) { fg_broadcast_to(g, in23(g), fg_shape1(3)); }

static const op_reject_case rejects[] = {
    {"reshape", "6 elements to [4,2]", bad_reshape_count, FG_E_SHAPE, "reshape"},
    {"reshape", "negative size", bad_reshape_negative, FG_E_SHAPE, "reshape"},
    {"reshape", "9 dimensions", bad_reshape_rank, FG_E_SHAPE, "reshape"},
    {"permute", "repeated axis", bad_permute_repeat, FG_E_SHAPE, "permute"},
    {"permute", "axis out of range", bad_permute_range, FG_E_SHAPE, "permute"},
    {"permute", "NULL permutation", bad_permute_null, FG_E_MISUSE, "permute"},
    {"permute", "transpose of a 1-d input", bad_transpose_1d, FG_E_SHAPE, "op 'permute' on inputs float32 [3]: transpose"},
    {"slice", "stop beyond the axis", bad_slice_stop, FG_E_SHAPE, "slice"},
    {"slice", "start after stop", bad_slice_order, FG_E_SHAPE, "slice"},
    {"slice", "step 0", bad_slice_step, FG_E_SHAPE, "slice"},
    {"slice", "negative start", bad_slice_negative, FG_E_SHAPE, "slice"},
    {"slice", "slice_axis of a missing axis", bad_slice_axis, FG_E_SHAPE, "slice"},
    {"pad", "negative lo", bad_pad_lo, FG_E_SHAPE, "pad"},
    {"pad", "negative interior", bad_pad_interior, FG_E_SHAPE, "pad"},
    {"pad", "size overflows int64", bad_pad_overflow, FG_E_OVERFLOW, "pad"},
    {"concat", "sizes differ off the axis", bad_concat_axis_size, FG_E_SHAPE, "concat"},
    {"concat", "float32 with float64", bad_concat_dtype, FG_E_DTYPE, "concat"},
    {"concat", "ranks differ", bad_concat_rank, FG_E_SHAPE, "concat"},
    {"concat", "axis out of range", bad_concat_axis, FG_E_SHAPE, "concat"},
    {"concat", "no inputs", bad_concat_none, FG_E_MISUSE, "concat"},
    {"broadcast_to", "[2,3] to [4,3]", bad_broadcast_size, FG_E_SHAPE, "broadcast_to"},
    {"broadcast_to", "[2,3] to fewer axes", bad_broadcast_rank, FG_E_SHAPE, "broadcast_to"},
};

const op_case_list op_cases_shape = {"shape", cases, sizeof cases / sizeof *cases, rejects,
                                     sizeof rejects / sizeof *rejects};

/* ---- criterion tests beyond the table ---- */

/* The graph's message after running `build_bad` contains `want`. */
static void expect_message(void (*build_bad)(fg_graph *), const char *want) {
  fg_graph *g;
  fg_graph_new(&g, NULL);
  build_bad(g);
  cr_expect(strstr(fg_graph_errmsg(g), want) != NULL, "message \"%s\" lacks \"%s\"",
            fg_graph_errmsg(g), want);
  fg_graph_free(g);
}

Test(shape, errors_say_what_was_wrong) {
  expect_message(bad_reshape_count, "reshape of 6 elements to [4, 2] (8 elements)");
  expect_message(bad_permute_repeat, "permutation [0, 0] repeats axis 0");
  expect_message(bad_permute_range, "permutation [0, 2] names axis 2 of a 2-d input");
  expect_message(bad_slice_stop, "slice stop 5 beyond axis 1 of size 3");
  expect_message(bad_slice_order, "slice start 2 after stop 1 on axis 0");
  expect_message(bad_slice_step, "slice step 0 on axis 1 must be at least 1");
  expect_message(bad_pad_lo, "pad lo on axis 1 is -1");
  expect_message(bad_concat_axis_size, "concat inputs differ on axis 2: [2, 3, 4] vs [2, 3, 5]");
  expect_message(bad_concat_dtype, "input 0 is float32, input 1 is float64");
  expect_message(bad_broadcast_size, "cannot broadcast [2, 3] to [4, 3]");
  expect_message(bad_slice_axis, "op 'slice' on inputs float32 [2, 3]: slice_axis axis 2 is not");
}

Test(shape, no_op_reshape_and_broadcast_add_no_node) {
  fg_graph *g;
  fg_graph_new(&g, NULL);
  fg_node x = fg_input(g, "x", FG_F64, fg_shape2(2, 3));
  int32_t before = fg_graph_node_count(g);
  cr_expect_eq(fg_reshape(g, x, fg_shape2(2, 3)), x);
  cr_expect_eq(fg_broadcast_to(g, x, fg_shape2(2, 3)), x);
  cr_expect_eq(fg_graph_node_count(g), before);
  fg_graph_free(g);
}

Test(shape, poison_in_poison_out) {
  fg_graph *g;
  fg_graph_new(&g, NULL);
  fg_node x = fg_input(g, "x", FG_F64, fg_shape2(2, 3));
  fg_graph_fail(g, FG_E_SHAPE, "earlier failure");
  const int64_t z[2] = {0, 0};
  cr_expect_eq(fg_reshape(g, x, fg_shape2(2, 3)), FG_POISON, "no shortcut once in error");
  cr_expect_eq(fg_broadcast_to(g, FG_POISON, fg_shape2(2, 3)), FG_POISON);
  cr_expect_eq(fg_transpose(g, FG_POISON), FG_POISON);
  cr_expect_eq(fg_slice(g, FG_POISON, z, z, NULL), FG_POISON);
  cr_expect_eq(fg_slice_axis(g, FG_POISON, 0, 0, 0), FG_POISON);
  cr_expect_eq(fg_pad(g, FG_POISON, z, z, NULL, 0), FG_POISON);
  cr_expect_eq(fg_concat(g, 1, &x, 0), FG_POISON);
  cr_expect_str_eq(fg_graph_errmsg(g), "earlier failure");
  fg_graph_free(g);
}

/* Twelve inputs (more than the shape rule's small buffers), concatenated and weighted by
 * position: values and each input's gradient are known in closed form. */
Test(shape, concat_of_many_inputs) {
  enum { N = 12 };
  fg_graph *g;
  fg_graph_new(&g, NULL);
  fg_node xs[N], grads[N];
  char name[16];
  for (int i = 0; i < N; i++) {
    snprintf(name, sizeof name, "x%d", i);
    xs[i] = fg_input(g, name, FG_F64, fg_shape2(2, 1 + i % 3));
  }
  fg_node y = fg_concat(g, N, xs, 1);
  fg_shape ys = fg_node_shape(g, y);
  cr_assert_eq(ys.d[1], 4 * 1 + 4 * 2 + 4 * 3);
  /* loss = sum(y * w) with w[r, c] = c, so d loss / d x_i[r, j] = offset_i + j */
  fg_tensor *w;
  cr_assert_eq(fg_tensor_new(&w, FG_F64, &ys, NULL), FG_OK);
  for (int64_t j = 0; j < fg_tensor_numel(w); j++) fg_tensor_set(w, j, (double)(j % ys.d[1]));
  fg_node loss = fg_sum(g, fg_mul(g, y, fg_constant(g, w)), FG_ALL_AXES, false);
  cr_assert_eq(fg_grad(g, loss, N, xs, grads), FG_OK, "%s", fg_graph_errmsg(g));
  fg_node outs[N + 1];
  memcpy(outs, grads, sizeof grads);
  outs[N] = y;
  fg_program *p;
  fg_err e;
  cr_assert_eq(fg_program_new(&p, g, N + 1, outs, &e), FG_OK, "%s", e.msg);
  for (int i = 0; i < N; i++) {
    fg_tensor *t;
    fg_shape s = fg_node_shape(g, xs[i]);
    cr_assert_eq(fg_tensor_new(&t, FG_F64, &s, NULL), FG_OK);
    for (int64_t j = 0; j < fg_tensor_numel(t); j++) fg_tensor_set(t, j, 100.0 * i + (double)j);
    snprintf(name, sizeof name, "x%d", i);
    cr_assert_eq(fg_program_bind(p, name, t, &terr), FG_OK, "%s", terr.msg);
    fg_tensor_free(t);
  }
  cr_assert_eq(fg_program_run(p, &terr), FG_OK, "%s", terr.msg);
  const fg_tensor *yt = fg_program_output(p, N);
  int64_t off = 0;
  for (int i = 0; i < N; i++) {
    int64_t cols = 1 + i % 3;
    const fg_tensor *gt = fg_program_output(p, i);
    for (int64_t r = 0; r < 2; r++) {
      for (int64_t c = 0; c < cols; c++) {
        cr_expect_eq(fg_tensor_get(yt, r * ys.d[1] + off + c), 100.0 * i + (double)(r * cols + c));
        cr_expect_eq(fg_tensor_get(gt, r * cols + c), (double)(off + c), "grad of input %d", i);
      }
    }
    off += cols;
  }
  fg_program_free(p);
  fg_tensor_free(w);
  fg_graph_free(g);
}

/* ---- kernels split over any number of parts give the same bits ---- */

typedef struct kernel_case {
  const fg_op_def *def;
  const void *attr;
  int n_in;
  fg_shape in[3];
} kernel_case;

static void run_split(const kernel_case *kc, const void *const *ins, const fg_shape *out_shape,
                      double *out, int nth) {
  fg_dtype dt[3] = {FG_F64, FG_F64, FG_F64};
  for (int ith = 0; ith < nth; ith++) {
    fg_kargs k = {.attr = kc->attr, .n_in = kc->n_in, .in = ins, .in_shape = kc->in,
                  .in_dtype = dt, .out = out, .out_shape = *out_shape, .ith = ith, .nth = nth};
    cr_assert_eq(kc->def->kernel_f64(&k), FG_OK);
  }
}

static void check_split(const kernel_case *kc) {
  fg_dtype dt[3] = {FG_F64, FG_F64, FG_F64};
  fg_infer_args a = {.n_in = kc->n_in, .in_shape = kc->in, .in_dtype = dt, .attr = kc->attr,
                     .out_shape = kc->in[0], .out_dtype = FG_F64};
  cr_assert_eq(kc->def->infer(&a), FG_OK, "%s: %s", kc->def->name, a.why);
  static double data[3][4096], one[8192], many[8192];
  const void *ins[3] = {data[0], data[1], data[2]};
  for (int i = 0; i < 3; i++)
    for (int j = 0; j < 4096; j++) data[i][j] = 1000.0 * i + j;
  int64_t n = fg_shape_count(&a.out_shape);
  cr_assert(n <= 8192);
  run_split(kc, ins, &a.out_shape, one, 1);
  for (int nth = 2; nth <= 9; nth++) {
    memset(many, 0xff, sizeof many);
    run_split(kc, ins, &a.out_shape, many, nth);
    cr_expect_eq(memcmp(one, many, sizeof *one * (size_t)n), 0, "%s with %d parts",
                 kc->def->name, nth);
  }
}

Test(shape, kernels_give_the_same_bits_for_any_thread_count) {
  fg_reshape_attr re;
  memset(&re, 0, sizeof re);
  re.shape = fg_shape2(12, 10);
  fg_permute_attr pe;
  memset(&pe, 0, sizeof pe);
  memcpy(pe.perm, (const int32_t[]){3, 1, 0, 2}, 4 * sizeof(int32_t));
  fg_slice_attr sl;
  memset(&sl, 0, sizeof sl);
  memcpy(sl.start, (const int64_t[]){1, 0, 2}, 3 * sizeof(int64_t));
  memcpy(sl.stop, (const int64_t[]){6, 7, 9}, 3 * sizeof(int64_t));
  memcpy(sl.step, (const int64_t[]){2, 3, 1}, 3 * sizeof(int64_t));
  fg_pad_attr pa;
  memset(&pa, 0, sizeof pa);
  memcpy(pa.lo, (const int64_t[]){1, 0, 2}, 3 * sizeof(int64_t));
  memcpy(pa.hi, (const int64_t[]){0, 3, 1}, 3 * sizeof(int64_t));
  memcpy(pa.interior, (const int64_t[]){1, 0, 2}, 3 * sizeof(int64_t));
  pa.value = -7;
  fg_concat_attr ca = {1};
  fg_broadcast_attr br;
  memset(&br, 0, sizeof br);
  br.shape = fg_shape4(3, 4, 5, 6);
  const kernel_case kcs[] = {
      {&fg_opdef_reshape, &re, 1, {S3(4, 5, 6)}},
      {&fg_opdef_permute, &pe, 1, {S4(2, 3, 4, 5)}},
      {&fg_opdef_slice, &sl, 1, {S3(7, 8, 9)}},
      {&fg_opdef_pad, &pa, 1, {S3(3, 4, 5)}},
      {&fg_opdef_concat, &ca, 3, {S3(2, 3, 5), S3(2, 1, 5), S3(2, 4, 5)}},
      {&fg_opdef_broadcast_to, &br, 1, {S3(4, 1, 6)}},
  };
  for (size_t i = 0; i < sizeof kcs / sizeof *kcs; i++) check_split(&kcs[i]);
}
