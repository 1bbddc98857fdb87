#include <criterion/criterion.h>
#include <string.h>

#include "ops/autodiff/gradcheck.h"
#include "ops/ops.h"

static fg_tensor *values(fg_shape s, double start, double step) {
  fg_tensor *t;
  cr_assert_eq(fg_tensor_new(&t, FG_F64, &s, NULL), FG_OK);
  for (int64_t i = 0; i < fg_tensor_numel(t); i++) fg_tensor_set(t, i, start + step * (double)i);
  return t;
}

static fg_node softplus_affine(fg_graph *g, const fg_node *in, void *ud) {
  (void)ud; /* sum(softplus(W·x + b)) */
  return fg_sum(g, fg_softplus(g, fg_add(g, fg_matmul(g, in[0], in[1]), in[2])), FG_ALL_AXES, false);
}

Test(gradcheck, passes_on_a_correct_gradient) {
  fg_tensor *in[3] = {values(fg_shape2(3, 4), -0.5, 0.1), values(fg_shape2(4, 2), 0.3, -0.07),
                      values(fg_shape1(2), 0.1, 0.2)};
  fg_gradcheck_report rep;
  cr_assert_eq(fg_gradcheck(softplus_affine, NULL, 3, in, NULL, &rep), FG_OK, "%s", rep.msg);
  cr_assert(rep.passed);
  cr_assert_eq(rep.n_checked, 12 + 8 + 2);
  cr_assert_eq(fg_gradgradcheck(softplus_affine, NULL, 3, in, NULL, &rep), FG_OK, "%s", rep.msg);
  for (int i = 0; i < 3; i++) fg_tensor_free(in[i]);
}

/* stop_gradient(x)·x has derivative x by the engine's rules but 2x numerically: gradcheck must
 * see the disagreement and say where it is worst. */
static fg_node wrong_by_design(fg_graph *g, const fg_node *in, void *ud) {
  (void)ud;
  return fg_mul(g, fg_stop_gradient(g, in[0]), in[0]);
}

Test(gradcheck, reports_the_worst_element_of_a_wrong_gradient) {
  fg_tensor *x = values(fg_shape1(4), 1.0, 1.0); /* 1, 2, 3, 4 */
  fg_gradcheck_report rep;
  cr_assert_eq(fg_gradcheck(wrong_by_design, NULL, 1, &x, NULL, &rep), FG_E_NUMERIC);
  cr_assert_not(rep.passed);
  cr_assert_eq(rep.input, 0);
  cr_assert_eq(rep.in_index, 3, "worst where x is largest");
  cr_assert_eq(rep.out_index, 3);
  cr_assert_float_eq(rep.analytic, 4.0, 1e-9);
  cr_assert_float_eq(rep.numeric, 8.0, 1e-5);
  cr_assert(strstr(rep.msg, "FAILED") && strstr(rep.msg, "element 3"), "%s", rep.msg);
  fg_tensor_free(x);
}

static fg_node bad_shapes(fg_graph *g, const fg_node *in, void *ud) {
  (void)ud;
  return fg_add(g, in[0], in[1]);
}

Test(gradcheck, explains_a_build_failure) {
  fg_tensor *in[2] = {values(fg_shape1(3), 0, 1), values(fg_shape1(4), 0, 1)};
  fg_gradcheck_report rep;
  cr_assert_eq(fg_gradcheck(bad_shapes, NULL, 2, in, NULL, &rep), FG_E_SHAPE);
  cr_assert(strstr(rep.msg, "could not run") && strstr(rep.msg, "add"), "%s", rep.msg);
  for (int i = 0; i < 2; i++) fg_tensor_free(in[i]);
}

Test(gradcheck, skip_mask_leaves_inputs_unchecked) {
  fg_tensor *in[3] = {values(fg_shape2(3, 4), -0.5, 0.1), values(fg_shape2(4, 2), 0.3, -0.07),
                      values(fg_shape1(2), 0.1, 0.2)};
  fg_gradcheck_opts o = {.skip_mask = 1u << 0};
  fg_gradcheck_report rep;
  cr_assert_eq(fg_gradcheck(softplus_affine, NULL, 3, in, &o, &rep), FG_OK, "%s", rep.msg);
  cr_assert_eq(rep.n_checked, 8 + 2);
  for (int i = 0; i < 3; i++) fg_tensor_free(in[i]);
}
