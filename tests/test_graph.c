#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "core/ir/op.h"
#include "core/runtime/program.h"
#include "ops/ops.h"

/* Error detail of the last failing library call, for assertion messages. */
static fg_err terr __attribute__((unused));

static fg_tensor *tensor_of(fg_dtype t, fg_shape s, double v) {
  fg_tensor *x;
  cr_assert_eq(fg_tensor_new(&x, t, &s, NULL), FG_OK);
  fg_tensor_fill(x, v);
  return x;
}

Test(graph, sticky_error_names_op_and_shapes) {
  fg_graph *g;
  fg_graph_new(&g, NULL);
  fg_node a = fg_input(g, "a", FG_F32, fg_shape2(2, 3));
  fg_node b = fg_input(g, "b", FG_F32, fg_shape2(4, 5));
  fg_node c = fg_matmul(g, a, b);
  cr_assert_eq(c, FG_POISON);
  cr_assert_eq(fg_graph_status(g), FG_E_SHAPE);
  const char *msg = fg_graph_errmsg(g);
  cr_assert(strstr(msg, "matmul") && strstr(msg, "[2, 3]") && strstr(msg, "[4, 5]"), "%s", msg);
  /* later calls return poison and keep the first message */
  cr_assert_eq(fg_exp(g, c), FG_POISON);
  cr_assert_eq(fg_add(g, a, a), FG_POISON);
  cr_assert_str_eq(fg_graph_errmsg(g), msg);
  fg_program *p;
  fg_err e;
  cr_assert_eq(fg_program_new(&p, g, 1, &a, &e), FG_E_SHAPE);
  cr_assert(strstr(e.msg, "matmul") != NULL, "%s", e.msg);
  fg_graph_free(g);
}

Test(graph, foreign_ids_are_misuse) {
  fg_graph *g;
  fg_graph_new(&g, NULL);
  cr_assert_eq(fg_exp(g, 42), FG_POISON);
  cr_assert_eq(fg_graph_status(g), FG_E_MISUSE);
  cr_assert(strstr(fg_graph_errmsg(g), "not a node") != NULL);
  fg_graph_free(g);
}

Test(graph, ids_are_dense_and_grow_without_cap) {
  fg_graph *g;
  fg_graph_new(&g, NULL);
  fg_node x = fg_input(g, "x", FG_F32, fg_shape1(1));
  for (int i = 0; i < 100000; i++) x = fg_add_scalar(g, x, 1.0);
  cr_assert_eq(fg_graph_status(g), FG_OK);
  cr_assert_eq(fg_graph_node_count(g), 200001);
  cr_assert_eq(x, 200000);
  fg_graph_free(g);
}

Test(program, runs_and_rebinds_without_replanning) {
  fg_graph *g;
  fg_graph_new(&g, NULL);
  fg_node x = fg_input(g, "x", FG_F32, fg_shape1(3));
  fg_node w = fg_param(g, "w", FG_F32, fg_shape1(3));
  fg_node y = fg_add(g, fg_mul(g, x, w), fg_scalar(g, 1.0, FG_F32));
  fg_program *p;
  cr_assert_eq(fg_program_new(&p, g, 1, &y, NULL), FG_OK);
  fg_tensor *xv = tensor_of(FG_F32, fg_shape1(3), 2.0), *wv = tensor_of(FG_F32, fg_shape1(3), 3.0);
  cr_assert_eq(fg_program_run(p, &terr), FG_E_MISUSE, "unbound inputs are an error");
  cr_assert(strstr(terr.msg, "'x'") != NULL, "%s", terr.msg);
  cr_assert_eq(fg_program_bind(p, "x", xv, &terr), FG_OK);
  cr_assert_eq(fg_program_bind(p, "w", wv, &terr), FG_OK);
  cr_assert_eq(fg_program_run(p, &terr), FG_OK);
  cr_assert_eq(fg_tensor_get(fg_program_output(p, 0), 2), 7.0);
  /* parameters are shared, not copied: an in-place update is seen by the next run */
  fg_tensor_fill(wv, 10.0);
  cr_assert_eq(fg_program_run(p, &terr), FG_OK);
  cr_assert_eq(fg_tensor_get(fg_program_output(p, 0), 0), 21.0);
  fg_tensor_free(xv), fg_tensor_free(wv);
  fg_program_free(p);
  fg_graph_free(g);
}

Test(program, bind_checks_name_shape_and_dtype) {
  fg_graph *g;
  fg_graph_new(&g, NULL);
  fg_node x = fg_input(g, "x", FG_F32, fg_shape2(2, 2));
  fg_program *p;
  cr_assert_eq(fg_program_new(&p, g, 1, &x, NULL), FG_OK);
  fg_tensor *wrong_shape = tensor_of(FG_F32, fg_shape1(4), 0), *wrong_dtype = tensor_of(FG_F64, fg_shape2(2, 2), 0);
  cr_assert_eq(fg_program_bind(p, "y", wrong_shape, &terr), FG_E_NOTFOUND);
  cr_assert_eq(fg_program_bind(p, "x", wrong_shape, &terr), FG_E_SHAPE);
  cr_assert(strstr(terr.msg, "[4]") && strstr(terr.msg, "[2, 2]"));
  cr_assert_eq(fg_program_bind(p, "x", wrong_dtype, &terr), FG_E_SHAPE);
  cr_assert(strstr(terr.msg, "float64") != NULL);
  fg_tensor_free(wrong_shape), fg_tensor_free(wrong_dtype);
  fg_program_free(p);
  fg_graph_free(g);
}

static void draw(fg_node (*make)(fg_graph *, uint64_t, double, double, fg_dtype, fg_shape),
                 double a, double b, uint64_t offset, fg_tensor **out) {
  fg_graph *g;
  fg_graph_new(&g, NULL);
  fg_node r = make(g, 42, a, b, FG_F64, fg_shape1(20000));
  fg_program *p;
  cr_assert_eq(fg_program_new(&p, g, 1, &r, NULL), FG_OK);
  fg_program_set_rng_offset(p, offset);
  cr_assert_eq(fg_program_run(p, &terr), FG_OK);
  cr_assert_eq(fg_tensor_copy(out, fg_program_output(p, 0), FG_F64, NULL), FG_OK);
  fg_program_free(p);
  fg_graph_free(g);
}

static void moments(const fg_tensor *t, double *mean, double *var) {
  double s = 0, s2 = 0;
  int64_t n = fg_tensor_numel(t);
  for (int64_t i = 0; i < n; i++) s += fg_tensor_get(t, i);
  *mean = s / n;
  for (int64_t i = 0; i < n; i++) s2 += pow(fg_tensor_get(t, i) - *mean, 2);
  *var = s2 / (n - 1);
}

Test(random, normal_and_uniform_statistics_and_streams) {
  fg_tensor *a, *b, *c;
  double m, v;
  draw(fg_random_normal, 1.0, 2.0, 0, &a);
  moments(a, &m, &v);
  cr_assert(fabs(m - 1.0) < 0.05 && fabs(v - 4.0) < 0.15, "normal mean %g var %g", m, v);
  draw(fg_random_normal, 1.0, 2.0, 0, &b);
  cr_assert_eq(memcmp(fg_tensor_data(a), fg_tensor_data(b), 20000 * 8), 0, "same seed, same draws");
  draw(fg_random_normal, 1.0, 2.0, 1, &c);
  cr_assert_neq(fg_tensor_get(a, 0), fg_tensor_get(c, 0), "a new rng offset gives new draws");
  fg_tensor_free(a), fg_tensor_free(b), fg_tensor_free(c);
  draw(fg_random_uniform, -1.0, 3.0, 0, &a);
  moments(a, &m, &v);
  cr_assert(fabs(m - 1.0) < 0.05 && fabs(v - 16.0 / 12) < 0.05, "uniform mean %g var %g", m, v);
  for (int64_t i = 0; i < 20000; i++) cr_assert(fg_tensor_get(a, i) >= -1 && fg_tensor_get(a, i) < 3);
  fg_tensor_free(a);
}
