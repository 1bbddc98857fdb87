/* Cases for leaves and sources (ops/source.c). */
#include <string.h>

#include "core/rng.h"
#include "tests/op_cases.h"

static void ref_copy(const fg_tensor *const *in, fg_tensor *out, const void *ctx) {
  (void)ctx;
  for (int64_t j = 0; j < fg_tensor_numel(out); j++) fg_tensor_set(out, j, fg_tensor_get(in[0], j));
}

static fg_node build_input(fg_graph *g, const fg_node *in, const void *ctx) {
  (void)g, (void)ctx;
  return in[0];
}

/* x + const, the constant holding 0.25·j at element j */
static fg_node build_const(fg_graph *g, const fg_node *in, const void *ctx) {
  (void)ctx;
  fg_shape s = fg_node_shape(g, in[0]);
  fg_tensor *t;
  if (fg_tensor_new(&t, fg_node_dtype(g, in[0]), &s, NULL) != FG_OK) return FG_POISON;
  for (int64_t j = 0; j < fg_tensor_numel(t); j++) fg_tensor_set(t, j, 0.25 * (double)j);
  fg_node c = fg_constant(g, t);
  fg_tensor_free(t);
  return fg_add(g, in[0], c);
}
static void ref_const(const fg_tensor *const *in, fg_tensor *out, const void *ctx) {
  (void)ctx;
  for (int64_t j = 0; j < fg_tensor_numel(out); j++)
    fg_tensor_set(out, j, fg_tensor_get(in[0], j) + 0.25 * (double)j);
}

/* x + fg_constant_values(...) holding 0.25·j: the one-call builder from a C array */
static fg_node build_const_values(fg_graph *g, const fg_node *in, const void *ctx) {
  (void)ctx;
  double v[6];
  for (int j = 0; j < 6; j++) v[j] = 0.25 * j;
  return fg_add(g, in[0], fg_constant_values(g, fg_node_dtype(g, in[0]), fg_shape2(2, 3), v));
}

/* x · p for a parameter p; the table test binds every parameter to all-0.5 values. */
static fg_node build_param(fg_graph *g, const fg_node *in, const void *ctx) {
  (void)ctx;
  return fg_mul(g, in[0], fg_param(g, "p", fg_node_dtype(g, in[0]), fg_node_shape(g, in[0])));
}
static void ref_param(const fg_tensor *const *in, fg_tensor *out, const void *ctx) {
  (void)ctx;
  for (int64_t j = 0; j < fg_tensor_numel(out); j++) fg_tensor_set(out, j, 0.5 * fg_tensor_get(in[0], j));
}

static fg_node build_fill(fg_graph *g, const fg_node *in, const void *ctx) {
  (void)ctx;
  return fg_add(g, in[0], fg_fill(g, 3.0, fg_node_dtype(g, in[0]), fg_shape1(4)));
}
static void ref_fill(const fg_tensor *const *in, fg_tensor *out, const void *ctx) {
  (void)ctx;
  for (int64_t j = 0; j < fg_tensor_numel(out); j++) fg_tensor_set(out, j, fg_tensor_get(in[0], j) + 3.0);
}

/* The draws are a documented function of (seed, index); the reference applies that contract
 * (the statistics of the draws are tested in test_graph.c). */
static fg_node build_uniform(fg_graph *g, const fg_node *in, const void *ctx) {
  (void)ctx;
  return fg_add(g, in[0], fg_random_uniform(g, 7, -2.0, 3.0, fg_node_dtype(g, in[0]), fg_node_shape(g, in[0])));
}
static void ref_uniform(const fg_tensor *const *in, fg_tensor *out, const void *ctx) {
  (void)ctx;
  for (int64_t j = 0; j < fg_tensor_numel(out); j++)
    fg_tensor_set(out, j, fg_tensor_get(in[0], j) + (-2.0 + 5.0 * fg_rng_uniform(7, (uint64_t)j)));
}
static fg_node build_normal(fg_graph *g, const fg_node *in, const void *ctx) {
  (void)ctx;
  return fg_add(g, in[0], fg_random_normal(g, 9, 1.0, 0.5, fg_node_dtype(g, in[0]), fg_node_shape(g, in[0])));
}
static void ref_normal(const fg_tensor *const *in, fg_tensor *out, const void *ctx) {
  (void)ctx;
  for (int64_t j = 0; j < fg_tensor_numel(out); j++)
    fg_tensor_set(out, j, fg_tensor_get(in[0], j) + 1.0 + 0.5 * fg_rng_normal(9, (uint64_t)j));
}

static const op_case cases[] = {
    {"input", "identity [2, 3]", 1, {{2, {2, 3}}}, -1, 1, build_input, NULL, ref_copy, .gradgrad = true},
    {"input", "0-d", 1, {{0, {0}}}, -1, 1, build_input, NULL, ref_copy},
    {"input", "zero-sized [0, 3]", 1, {{2, {0, 3}}}, -1, 1, build_input, NULL, ref_copy},
    {"const", "x + const [2, 3]", 1, {{2, {2, 3}}}, -1, 1, build_const, NULL, ref_const},
    {"const", "x + fg_constant_values [2, 3]", 1, {{2, {2, 3}}}, -1, 1, build_const_values, NULL, ref_const},
    {"param", "x * param [3]", 1, {{1, {3}}}, -1, 1, build_param, NULL, ref_param, .no_grad = true},
    {"fill", "[3, 4] + fill [4]", 1, {{2, {3, 4}}}, -1, 1, build_fill, NULL, ref_fill},
    {"random_uniform", "x + U[-2, 3)", 1, {{2, {5, 7}}}, -1, 1, build_uniform, NULL, ref_uniform},
    {"random_normal", "x + N(1, 0.5)", 1, {{2, {5, 7}}}, -1, 1, build_normal, NULL, ref_normal},
};

static void bad_negative_dim(fg_graph *g) { fg_input(g, "x", FG_F32, fg_shape2(2, -3)); }
static void bad_duplicate_name(fg_graph *g) {
  fg_input(g, "x", FG_F32, fg_shape1(2));
  fg_param(g, "x", FG_F32, fg_shape1(2));
}
static void bad_std(fg_graph *g) { fg_random_normal(g, 1, 0.0, -1.0, FG_F32, fg_shape1(3)); }
static void bad_overflow(fg_graph *g) {
  fg_input(g, "x", FG_F32, fg_shape3(INT64_MAX / 2, 4, 4));
}

static const op_reject_case rejects[] = {
    {"input", "negative dimension", bad_negative_dim, FG_E_SHAPE, "input"},
    {"param", "name already used", bad_duplicate_name, FG_E_EXISTS, "'x'"},
    {"random_normal", "negative std", bad_std, FG_E_MISUSE, "random_normal"},
    {"input", "element count overflows", bad_overflow, FG_E_OVERFLOW, "overflow"},
};

const op_case_list op_cases_source = {"source", cases, sizeof cases / sizeof *cases, rejects,
                                      sizeof rejects / sizeof *rejects};
