/* The optimisers (flows/train/optim.h): SGD, Adam and Adamax updates against hand-computed
 * values in float32 and float64, convergence, gradient clipping, skipped non-finite steps,
 * warm-up, and their state and configuration checks. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "core/runtime/program.h"
#include "flows/train/optim.h"
#include "ops/autodiff/autodiff.h"
#include "ops/ops.h"

/* Error detail of the last failing library call, for assertion messages. */
static fg_err terr;

static fg_tensor *vec3(fg_dtype t, double a, double b, double c) {
  const double v[3] = {a, b, c};
  fg_tensor *x;
  cr_assert_eq(fg_tensor_new(&x, t, &(fg_shape){1, {3}}, NULL), FG_OK);
  for (int i = 0; i < 3; i++) fg_tensor_set(x, i, v[i]);
  return x;
}

/* Two steps from p = (1, -2, 0.5) with gradients (0.1, -0.3, 2) then (-0.2, 0.4, 1); the
 * expected values are PyTorch's update rules worked through by hand (in double). */
static void two_steps(fg_optim_config cfg, const double want[2][3], double tol) {
  for (int dt = 0; dt < 2; dt++) {
    fg_dtype t = dt ? FG_F64 : FG_F32;
    fg_tensor *p = vec3(t, 1.0, -2.0, 0.5), *g1 = vec3(t, 0.1, -0.3, 2.0), *g2 = vec3(t, -0.2, 0.4, 1.0);
    fg_optim *o;
    fg_err e;
    cr_assert_eq(fg_optim_new(&o, &cfg, 1, &p, &e), FG_OK, "%s", e.msg);
    const fg_tensor *gs[2] = {g1, g2};
    for (int s = 0; s < 2; s++) {
      cr_assert_eq(fg_optim_step(o, &gs[s], NULL, &e), FG_OK, "%s", e.msg);
      for (int i = 0; i < 3; i++)
        cr_assert(fabs(fg_tensor_get(p, i) - want[s][i]) < (dt ? tol : 1e-6), "%s %s step %d element %d: %.17g, want %.17g",
                  fg_optim_kind_name(cfg.kind), fg_dtype_name(t), s + 1, i, fg_tensor_get(p, i), want[s][i]);
    }
    cr_assert_eq(fg_optim_get_step(o), 2);
    fg_optim_free(o);
    fg_tensor_free(p), fg_tensor_free(g1), fg_tensor_free(g2);
  }
}

Test(optim, sgd_with_momentum_and_weight_decay_matches_hand_computed_steps) {
  fg_optim_config c = fg_optim_defaults(FG_OPTIM_SGD);
  c.lr = 0.1, c.momentum = 0.9, c.weight_decay = 0.01;
  const double want[2][3] = {{0.989, -1.968, 0.2995}, {0.998111, -1.977232, 0.0187505}};
  two_steps(c, want, 1e-12);
}

Test(optim, adam_matches_hand_computed_steps) {
  fg_optim_config c = fg_optim_defaults(FG_OPTIM_ADAM);
  c.lr = 0.01;
  const double want[2][3] = {{0.99000000099999985, -1.9900000003333334, 0.49000000005},
                             {0.99366103603884881, -1.9919351043699691, 0.48067820372085102}};
  two_steps(c, want, 1e-12);
  c.weight_decay = 0.1, c.decoupled_weight_decay = true; /* AdamW */
  const double want_w[2][3] = {{0.98900000099999985, -1.9880000003333334, 0.48950000004999999},
                               {0.99167203603784881, -1.9879471043696357, 0.47968870372080102}};
  two_steps(c, want_w, 1e-12);
}

Test(optim, adamax_matches_hand_computed_steps) {
  fg_optim_config c = fg_optim_defaults(FG_OPTIM_ADAMAX);
  cr_assert_float_eq(c.lr, 2e-3, 0, "torch.optim.Adamax's default");
  const double want[2][3] = {{0.99800000020000001, -1.9980000000666667, 0.49800000001},
                             {0.99857894753947374, -1.998342105321272, 0.49652484064747959}};
  two_steps(c, want, 1e-12);
}

/* loss = Σ a_i (p_i - target_i)² through the engine: its gradient program feeds the optimiser. */
static double minimise_quadratic(fg_optim_config cfg, int steps) {
  fg_graph *g;
  fg_graph_new(&g, NULL);
  fg_node p = fg_param(g, "p", FG_F32, fg_shape1(3)), grad;
  fg_tensor *a = vec3(FG_F32, 1.0, 10.0, 0.5), *target = vec3(FG_F32, 3.0, -1.0, 0.25);
  fg_node diff = fg_sub(g, p, fg_constant(g, target));
  fg_node loss = fg_sum(g, fg_mul(g, fg_constant(g, a), fg_square(g, diff)), FG_ALL_AXES, false);
  cr_assert_eq(fg_grad(g, loss, 1, &p, &grad), FG_OK, "%s", fg_graph_errmsg(g));
  fg_program *prog;
  fg_err e;
  cr_assert_eq(fg_program_new(&prog, g, 1, &grad, &e), FG_OK, "%s", e.msg);
  fg_tensor *pv = vec3(FG_F32, 0, 0, 0);
  fg_optim *o;
  cr_assert_eq(fg_optim_new(&o, &cfg, 1, &pv, &e), FG_OK, "%s", e.msg);
  cr_assert_eq(fg_program_bind(prog, "p", pv, &terr), FG_OK);
  for (int s = 0; s < steps; s++) {
    cr_assert_eq(fg_program_run(prog, &terr), FG_OK, "%s", terr.msg);
    const fg_tensor *gr = fg_program_output(prog, 0);
    cr_assert_eq(fg_optim_step(o, &gr, NULL, &e), FG_OK, "%s", e.msg);
  }
  double err = 0;
  for (int i = 0; i < 3; i++) err = fmax(err, fabs(fg_tensor_get(pv, i) - fg_tensor_get(target, i)));
  fg_optim_free(o);
  fg_tensor_free(pv), fg_tensor_free(a), fg_tensor_free(target);
  fg_program_free(prog);
  fg_graph_free(g);
  return err;
}

Test(optim, every_kind_converges_on_a_quadratic) {
  fg_optim_config sgd = fg_optim_defaults(FG_OPTIM_SGD), adam = fg_optim_defaults(FG_OPTIM_ADAM),
                  adamax = fg_optim_defaults(FG_OPTIM_ADAMAX);
  sgd.lr = 0.02, sgd.momentum = 0.5;
  adam.lr = 0.05, adamax.lr = 0.05;
  double e1 = minimise_quadratic(sgd, 300), e2 = minimise_quadratic(adam, 600), e3 = minimise_quadratic(adamax, 600);
  cr_assert(e1 < 1e-4, "sgd: %g", e1);
  cr_assert(e2 < 1e-2, "adam: %g", e2);
  cr_assert(e3 < 1e-2, "adamax: %g", e3);
}

Test(optim, clipping_scales_gradients_to_the_max_norm) {
  fg_optim_config c = fg_optim_defaults(FG_OPTIM_SGD);
  c.lr = 1.0, c.clip_norm = 2.0;
  fg_tensor *p[2] = {vec3(FG_F32, 0, 0, 0), vec3(FG_F64, 0, 0, 0)};
  fg_tensor *g[2] = {vec3(FG_F32, 3, 0, 4), vec3(FG_F64, 0, 0, 5)}; /* global norm √50 */
  fg_optim *o;
  fg_err e;
  cr_assert_eq(fg_optim_new(&o, &c, 2, p, &e), FG_OK, "%s", e.msg);
  fg_optim_step_info info;
  cr_assert_eq(fg_optim_step(o, (const fg_tensor *const *)g, &info, &e), FG_OK, "%s", e.msg);
  cr_assert_float_eq(info.grad_norm, sqrt(50.0), 1e-12);
  cr_assert_float_eq(info.scale, 2.0 / sqrt(50.0), 1e-12);
  const fg_tensor *moved[2] = {p[0], p[1]};
  cr_assert_float_eq(fg_grad_global_norm(2, moved), 2.0, 1e-6, "the update of lr 1 is the clipped gradient");
  cr_assert_float_eq(fg_tensor_get(p[1], 2), -5.0 * 2.0 / sqrt(50.0), 1e-12);
  /* below the limit nothing is scaled */
  fg_tensor_fill(g[0], 0.1), fg_tensor_fill(g[1], 0.1);
  cr_assert_eq(fg_optim_step(o, (const fg_tensor *const *)g, &info, &e), FG_OK);
  cr_assert_eq(info.scale, 1.0);
  fg_optim_free(o);
  for (int i = 0; i < 2; i++) fg_tensor_free(p[i]), fg_tensor_free(g[i]);
}

Test(optim, a_non_finite_gradient_norm_skips_the_step) {
  fg_optim_config c = fg_optim_defaults(FG_OPTIM_ADAM);
  fg_tensor *p = vec3(FG_F32, 1, 2, 3), *g = vec3(FG_F32, 0.5, NAN, 0.5);
  fg_optim *o;
  fg_err e;
  cr_assert_eq(fg_optim_new(&o, &c, 1, &p, &e), FG_OK);
  fg_optim_step_info info;
  const fg_tensor *gs = g;
  cr_assert_eq(fg_optim_step(o, &gs, &info, &e), FG_E_NUMERIC);
  cr_assert(isnan(info.grad_norm));
  cr_assert(strstr(e.msg, "skipped"), "%s", e.msg);
  cr_assert_eq(fg_optim_get_step(o), 0);
  cr_assert_eq(fg_tensor_get(p, 0), 1.0);
  cr_assert_eq(fg_tensor_get(fg_optim_slot(o, 0, 0), 0), 0.0, "no moment moved");
  fg_optim_free(o);
  fg_tensor_free(p), fg_tensor_free(g);
}

Test(optim, warmup_ramps_the_rate_linearly) {
  fg_optim_config c = fg_optim_defaults(FG_OPTIM_SGD);
  c.lr = 0.8, c.warmup_steps = 4;
  fg_tensor *p = vec3(FG_F64, 0, 0, 0), *g = vec3(FG_F64, 1, 1, 1);
  fg_optim *o;
  fg_err e;
  cr_assert_eq(fg_optim_new(&o, &c, 1, &p, &e), FG_OK);
  const double want[6] = {0.2, 0.4, 0.6, 0.8, 0.8, 0.8};
  double before = 0;
  for (int s = 0; s < 6; s++) {
    fg_optim_step_info info;
    const fg_tensor *gs = g;
    cr_assert_eq(fg_optim_step(o, &gs, &info, &e), FG_OK);
    cr_assert_float_eq(info.lr, want[s], 1e-12, "step %d", s + 1);
    cr_assert_float_eq(fg_optim_lr_at(&c, s + 1), want[s], 1e-12);
    cr_assert_float_eq(before - fg_tensor_get(p, 0), want[s], 1e-12, "the update used the ramped rate");
    before = fg_tensor_get(p, 0);
  }
  fg_optim_free(o);
  fg_tensor_free(p), fg_tensor_free(g);
}

Test(optim, state_is_exposed_and_configs_are_checked) {
  fg_optim_config c = fg_optim_defaults(FG_OPTIM_ADAMAX);
  fg_tensor *p = vec3(FG_F32, 1, 2, 3), *g = vec3(FG_F32, 1, -1, 0.5);
  fg_optim *o;
  fg_err e;
  cr_assert_eq(fg_optim_new(&o, &c, 1, &p, &e), FG_OK);
  cr_assert_eq(fg_optim_num_slots(o), 2);
  cr_assert_str_eq(fg_optim_slot_name(o, 0), "exp_avg");
  cr_assert_str_eq(fg_optim_slot_name(o, 1), "exp_inf");
  const fg_tensor *gs = g;
  cr_assert_eq(fg_optim_step(o, &gs, NULL, &e), FG_OK);
  cr_assert_float_eq(fg_tensor_get(fg_optim_slot(o, 0, 0), 1), -0.1, 1e-7, "m = (1 - β1) g");
  cr_assert_float_eq(fg_tensor_get(fg_optim_slot(o, 0, 1), 2), 0.5, 1e-7, "u = |g| + eps");
  cr_assert_null(fg_optim_slot(o, 0, 2));
  fg_optim_set_step(o, 10);
  cr_assert_eq(fg_optim_get_step(o), 10);
  fg_optim_free(o);
  c.beta2 = 1.0;
  cr_assert_eq(fg_optim_new(&o, &c, 1, &p, &e), FG_E_MISUSE);
  cr_assert(strstr(e.msg, "beta2"), "%s", e.msg);
  fg_optim_kind k;
  cr_assert_eq(fg_optim_kind_parse("adamax", &k, &e), FG_OK);
  cr_assert_eq(k, FG_OPTIM_ADAMAX);
  cr_assert_eq(fg_optim_kind_parse("rmsprop", &k, &e), FG_E_NOTFOUND);
  cr_assert(strstr(e.msg, "sgd, adam, adamax"), "%s", e.msg);
  fg_tensor_free(p), fg_tensor_free(g);
}
