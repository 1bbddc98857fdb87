#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "ops/autodiff/autodiff.h"
#include "core/ir/op.h"
#include "core/runtime/program.h"
#include "ops/ops.h"

/* Error detail of the last failing library call, for assertion messages. */
static fg_err terr __attribute__((unused));

/* Evaluates nodes of g with x bound to the given values; returns element 0 of each. */
static void eval(fg_graph *g, int n, const fg_node *nodes, const char *name, fg_shape s,
                 const double *vals, double *out0, fg_tensor **keep) {
  fg_program *p;
  fg_err e;
  cr_assert_eq(fg_program_new(&p, g, n, nodes, &e), FG_OK, "%s", e.msg);
  fg_tensor *x;
  cr_assert_eq(fg_tensor_from_data(&x, FG_F64, &s, vals, NULL), FG_OK);
  cr_assert_eq(fg_program_bind(p, name, x, &terr), FG_OK);
  cr_assert_eq(fg_program_run(p, &terr), FG_OK, "%s", terr.msg);
  for (int i = 0; i < n; i++) {
    if (out0) out0[i] = fg_tensor_get(fg_program_output(p, i), 0);
    if (keep) cr_assert_eq(fg_tensor_copy(&keep[i], fg_program_output(p, i), FG_F64, NULL), FG_OK);
  }
  fg_tensor_free(x);
  fg_program_free(p);
}

Test(autodiff, uses_are_summed_and_second_derivatives_work) {
  fg_graph *g;
  fg_graph_new(&g, NULL);
  fg_node x = fg_input(g, "x", FG_F64, fg_shape0());
  /* y = x^3 + x·x + x: dy/dx = 3x² + 2x + 1, d²y/dx² = 6x + 2 */
  fg_node y = fg_add(g, fg_add(g, fg_pow(g, x, 3), fg_mul(g, x, x)), x);
  fg_node dy, d2y;
  cr_assert_eq(fg_grad(g, y, 1, &x, &dy), FG_OK, "%s", fg_graph_errmsg(g));
  cr_assert_eq(fg_grad(g, dy, 1, &x, &d2y), FG_OK, "%s", fg_graph_errmsg(g));
  double v = 1.5, out[3];
  fg_node nodes[3] = {y, dy, d2y};
  eval(g, 3, nodes, "x", fg_shape0(), &v, out, NULL);
  cr_assert_float_eq(out[1], 3 * v * v + 2 * v + 1, 1e-12);
  cr_assert_float_eq(out[2], 6 * v + 2, 1e-12);
  fg_graph_free(g);
}

Test(autodiff, broadcast_gradients_are_summed_to_the_input_shape) {
  fg_graph *g;
  fg_graph_new(&g, NULL);
  fg_node x = fg_input(g, "x", FG_F64, fg_shape2(2, 3));
  fg_node b = fg_param(g, "b", FG_F64, fg_shape1(3));
  fg_node loss = fg_sum(g, fg_mul(g, fg_add(g, x, b), fg_scalar(g, 2.0, FG_F64)), FG_ALL_AXES, false);
  fg_node gb;
  cr_assert_eq(fg_grad(g, loss, 1, &b, &gb), FG_OK, "%s", fg_graph_errmsg(g));
  fg_shape s = fg_node_shape(g, gb);
  cr_assert(s.ndim == 1 && s.d[0] == 3);
  fg_program *p;
  cr_assert_eq(fg_program_new(&p, g, 1, &gb, NULL), FG_OK);
  fg_tensor *xv, *bv;
  fg_shape xs = fg_shape2(2, 3), bs = fg_shape1(3);
  fg_tensor_new(&xv, FG_F64, &xs, NULL), fg_tensor_new(&bv, FG_F64, &bs, NULL);
  fg_program_bind(p, "x", xv, &terr), fg_program_bind(p, "b", bv, &terr);
  cr_assert_eq(fg_program_run(p, &terr), FG_OK);
  for (int i = 0; i < 3; i++) cr_assert_eq(fg_tensor_get(fg_program_output(p, 0), i), 4.0);
  fg_tensor_free(xv), fg_tensor_free(bv);
  fg_program_free(p);
  fg_graph_free(g);
}

Test(autodiff, unrelated_wrt_gets_zeros_and_off_path_nodes_are_not_differentiated) {
  fg_graph *g;
  fg_graph_new(&g, NULL);
  fg_node x = fg_input(g, "x", FG_F64, fg_shape1(4));
  fg_node z = fg_input(g, "z", FG_F64, fg_shape1(4));
  fg_node side = fg_exp(g, fg_exp(g, fg_exp(g, z))); /* feeds the loss, but not from x */
  fg_node loss = fg_sum(g, fg_add(g, fg_square(g, x), side), FG_ALL_AXES, false);
  fg_node unrelated = fg_input(g, "u", FG_F64, fg_shape1(2));
  int32_t before = fg_graph_node_count(g);
  fg_node wrt[2] = {x, unrelated}, grads[2];
  cr_assert_eq(fg_grad(g, loss, 2, wrt, grads), FG_OK, "%s", fg_graph_errmsg(g));
  for (fg_node n = before; n < fg_graph_node_count(g); n++)
    cr_assert_neq(fg_node_op(g, n), FG_OP_EXP, "the exp chain on z is off the path from x");
  cr_assert_eq(fg_node_op(g, grads[1]), FG_OP_FILL, "an unrelated wrt gets zeros");
  cr_assert(fg_graph_node(g, grads[0])->flags & FG_NODE_GRAD);
  fg_graph_free(g);
}

Test(autodiff, stop_gradient_blocks) {
  fg_graph *g;
  fg_graph_new(&g, NULL);
  fg_node x = fg_input(g, "x", FG_F64, fg_shape0());
  fg_node y = fg_mul(g, fg_stop_gradient(g, x), x); /* d/dx = stop(x) = x, not 2x */
  fg_node dy;
  cr_assert_eq(fg_grad(g, y, 1, &x, &dy), FG_OK);
  double v = 3.0, out;
  eval(g, 1, &dy, "x", fg_shape0(), &v, &out, NULL);
  cr_assert_eq(out, 3.0);
  fg_graph_free(g);
}

Test(autodiff, loss_must_be_scalar_and_seeds_must_match) {
  fg_graph *g;
  fg_graph_new(&g, NULL);
  fg_node x = fg_input(g, "x", FG_F64, fg_shape1(3));
  fg_node y = fg_exp(g, x), dx;
  cr_assert_eq(fg_grad(g, y, 1, &x, &dx), FG_E_SHAPE);
  cr_assert(strstr(fg_graph_errmsg(g), "one element") != NULL, "%s", fg_graph_errmsg(g));
  cr_assert_eq(dx, FG_POISON);
  fg_graph_free(g);

  fg_graph_new(&g, NULL);
  x = fg_input(g, "x", FG_F64, fg_shape1(3));
  y = fg_exp(g, x);
  fg_node seed = fg_input(g, "s", FG_F64, fg_shape1(4));
  cr_assert_eq(fg_vjp(g, 1, &y, &seed, 1, &x, &dx), FG_E_SHAPE);
  cr_assert(strstr(fg_graph_errmsg(g), "seed") != NULL, "%s", fg_graph_errmsg(g));
  fg_graph_free(g);
}

Test(autodiff, vjp_with_seed) {
  fg_graph *g;
  fg_graph_new(&g, NULL);
  fg_node x = fg_input(g, "x", FG_F64, fg_shape1(3));
  fg_node y = fg_mul(g, x, x);
  fg_node s = fg_fill(g, 2.0, FG_F64, fg_shape1(3)), dx;
  cr_assert_eq(fg_vjp(g, 1, &y, &s, 1, &x, &dx), FG_OK);
  double v[3] = {1, 2, 3};
  fg_tensor *out;
  eval(g, 1, &dx, "x", fg_shape1(3), v, NULL, &out);
  for (int i = 0; i < 3; i++) cr_assert_eq(fg_tensor_get(out, i), 4.0 * v[i]);
  fg_tensor_free(out);
  fg_graph_free(g);
}
