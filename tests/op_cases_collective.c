/* Cases for the collectives (ops/collective.c): allreduce_sum alone (no reducer: the identity)
 * and under a stand-in reducer for three processes that hold the same value (the sum is 3x),
 * so the gradient check checks the VJP (the same sum of the incoming gradients).  The
 * criterion tests at the end check that the compiler neither folds the exchange into compile
 * time nor merges two of them, and that a reducer's failure is the run's. */
#include <criterion/criterion.h>
#include <string.h>

#include "core/ir/op.h"
#include "core/runtime/program.h"
#include "tests/op_cases.h"

typedef struct stand_in {
  int calls;
  fg_status fail; /* FG_OK, or what every call returns */
} stand_in;

/* Three processes with the same values: every value times 3. */
static fg_status sum_of_three(void *ctx, void *values, int64_t n, fg_dtype dtype, fg_err *e) {
  stand_in *s = ctx;
  s->calls++;
  if (s->fail != FG_OK) return fg_err_set(e, s->fail, "stand-in reducer fails");
  for (int64_t i = 0; i < n; i++)
    if (dtype == FG_F32) ((float *)values)[i] *= 3.0f;
    else ((double *)values)[i] *= 3.0;
  return FG_OK;
}

static stand_in three_state;
static const fg_reducer three = {.ctx = &three_state, .size = 3, .sum = sum_of_three};

static fg_node build_alone(fg_graph *g, const fg_node *in, const void *ctx) {
  (void)ctx;
  return fg_allreduce_sum(g, in[0], NULL);
}
static void ref_alone(const fg_tensor *const *in, fg_tensor *out, const void *ctx) {
  (void)ctx;
  for (int64_t j = 0; j < fg_tensor_numel(out); j++) fg_tensor_set(out, j, fg_tensor_get(in[0], j));
}

/* sum(x²)·x summed by three: the gradient goes through two exchanges (forward and VJP) */
static fg_node build_three(fg_graph *g, const fg_node *in, const void *ctx) {
  (void)ctx;
  fg_node s = fg_allreduce_sum(g, fg_sum(g, fg_square(g, in[0]), FG_ALL_AXES, false), &three);
  return fg_mul(g, in[0], s);
}
static void ref_three(const fg_tensor *const *in, fg_tensor *out, const void *ctx) {
  (void)ctx;
  double s = 0;
  for (int64_t j = 0; j < fg_tensor_numel(in[0]); j++) s += fg_tensor_get(in[0], j) * fg_tensor_get(in[0], j);
  for (int64_t j = 0; j < fg_tensor_numel(out); j++) fg_tensor_set(out, j, fg_tensor_get(in[0], j) * 3 * s);
}

#define S2(a, b) {2, {a, b}}

static const op_case cases[] = {
    {"allreduce_sum", "no reducer: the identity", 1, {S2(3, 4)}, -2, 2, build_alone, NULL, ref_alone,
     .gradgrad = true},
    {"allreduce_sum", "three processes, same values", 1, {S2(2, 3)}, -1, 1, build_three, NULL, ref_three,
     .gradgrad = true},
};

const op_case_list op_cases_collective = {"collective", cases, sizeof cases / sizeof *cases, NULL, 0};

/* ---- the compiler leaves the exchange to run time ---- */

static fg_err terr;

/* Runs outs of g once; returns the reducer's calls made while compiling and in total. */
static void compile_and_run(fg_graph *g, int n, const fg_node *outs, stand_in *s, int *at_compile,
                            fg_status *run) {
  fg_program *p;
  s->calls = 0;
  cr_assert_eq(fg_program_new(&p, g, n, outs, &terr), FG_OK, "%s", terr.msg);
  *at_compile = s->calls;
  *run = fg_program_run(p, &terr);
  fg_program_free(p);
}

Test(collective, not_folded_nor_merged) {
  stand_in s = {0};
  fg_reducer r = {.ctx = &s, .size = 3, .sum = sum_of_three};
  fg_graph *g;
  cr_assert_eq(fg_graph_new(&g, NULL), FG_OK);
  fg_node c = fg_scalar(g, 2.0, FG_F32);
  fg_node outs[2] = {fg_allreduce_sum(g, c, &r), fg_allreduce_sum(g, c, &r)};
  int at_compile;
  fg_status st;
  compile_and_run(g, 2, outs, &s, &at_compile, &st);
  cr_assert_eq(at_compile, 0, "a constant's sum is not folded: it needs the other processes");
  cr_assert_eq(st, FG_OK, "%s", terr.msg);
  cr_assert_eq(s.calls, 2, "two exchanges stay two: each process must make the same calls");
  fg_graph_free(g);
}

Test(collective, a_failed_exchange_fails_the_run) {
  stand_in s = {.fail = FG_E_IO};
  fg_reducer r = {.ctx = &s, .size = 3, .sum = sum_of_three};
  fg_graph *g;
  cr_assert_eq(fg_graph_new(&g, NULL), FG_OK);
  fg_node y = fg_allreduce_sum(g, fg_input(g, "x", FG_F64, fg_shape1(4)), &r);
  fg_program *p;
  fg_tensor *x;
  cr_assert_eq(fg_program_new(&p, g, 1, &y, &terr), FG_OK, "%s", terr.msg);
  cr_assert_eq(fg_tensor_new(&x, FG_F64, &(fg_shape){1, {4}}, NULL), FG_OK);
  cr_assert_eq(fg_program_bind(p, "x", x, &terr), FG_OK, "%s", terr.msg);
  cr_assert_eq(fg_program_run(p, &terr), FG_E_IO);
  cr_assert(strstr(terr.msg, "allreduce_sum") && strstr(terr.msg, "stand-in reducer fails"), "%s", terr.msg);
  fg_tensor_free(x);
  fg_program_free(p);
  fg_graph_free(g);
}
