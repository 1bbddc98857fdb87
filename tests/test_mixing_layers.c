/* The built-in channel-mixing layers of flows/layers/layers.h: permutations (reverse,
 * shuffle, permute) move whole channels, shuffles differ per layer and repeat per build, and
 * Glow's 1x1 convolutions (plain and LU) have the log-det H W log|det W| in both precisions. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "flows/layers/layers.h"
#include "ops/ops.h"
#include "tests/layer_rig.h"

/* ---- permutations ---- */

/* y for x[b][c] = 10·c + b, a vector layer of n features. */
static fg_program *permuted_vector(const char *type, const char *args, int n, rig *r) {
  fg_bijector *b = make(type, args);
  *r = rig_open(NULL, (fg_flow_ctx_opts){.dtype = FG_F64});
  fg_node x = fg_input(r->g, "x", FG_F64, fg_shape2(2, n)), y, ld;
  cr_assert_eq(fg_bijector_forward(b, r->c, x, &y, &ld), FG_OK, "%s", fg_graph_errmsg(r->g));
  fg_tensor *xv;
  fg_shape xs = fg_shape2(2, n);
  cr_assert_eq(fg_tensor_new(&xv, FG_F64, &xs, NULL), FG_OK);
  for (int i = 0; i < 2 * n; i++) fg_tensor_set(xv, i, 10.0 * (i % n) + i / n);
  fg_node outs[2] = {y, ld};
  fg_program *p = run(r, 2, outs, xv);
  fg_tensor_free(xv);
  fg_bijector_free(b);
  return p;
}

Test(layers, permutations_move_whole_channels) {
  rig r;
  fg_program *p = permuted_vector("reverse", "", 5, &r);
  for (int c = 0; c < 5; c++) cr_expect_eq(at(p, 0, 5 + c), 10.0 * (4 - c) + 1);
  cr_expect_eq(at(p, 1, 0), 0.0);
  fg_program_free(p);
  rig_close(&r);

  p = permuted_vector("permute", "perm=[2, 0, 3, 1]", 4, &r);
  const int perm[4] = {2, 0, 3, 1};
  for (int c = 0; c < 4; c++) cr_expect_eq(at(p, 0, c), 10.0 * perm[c], "output %d takes input perm[%d]", c, c);
  fg_program_free(p);
  rig_close(&r);

  /* a shuffle is some permutation of the features: each value exactly once */
  p = permuted_vector("shuffle", "seed=4", 12, &r);
  bool seen[12] = {false}, moved = false;
  for (int c = 0; c < 12; c++) {
    int from = (int)(at(p, 0, c) / 10.0);
    cr_assert(from >= 0 && from < 12 && !seen[from] && at(p, 0, c) == 10.0 * from);
    seen[from] = true;
    moved |= from != c;
  }
  cr_expect(moved, "a 12-feature shuffle left every feature in place");
  fg_program_free(p);
  rig_close(&r);
}

/* Two shuffles with the same seed in one chain differ (the layer's name is in the seed); the
 * same chain built twice gives the same permutations. */
static void chained_shuffles(double *out) {
  fg_bijector *kids[2] = {make("shuffle", "seed=1"), make("shuffle", "seed=1")}, *chain;
  fg_err e;
  cr_assert_eq(fg_bijector_chain(&chain, 2, kids, &e), FG_OK, "%s", e.msg);
  rig r = rig_open(NULL, (fg_flow_ctx_opts){.dtype = FG_F64});
  fg_node x = fg_input(r.g, "x", FG_F64, fg_shape2(1, 10)), y1, ld1, y2, ld2;
  /* each child builds under its own name, "0.shuffle." and "1.shuffle." */
  cr_assert_eq(fg_bijector_forward(fg_bijector_child(chain, 0), r.c, x, &y1, &ld1), FG_OK);
  cr_assert_eq(fg_bijector_forward(fg_bijector_child(chain, 1), r.c, x, &y2, &ld2), FG_OK);
  fg_tensor *xv = random_tensor(FG_F64, fg_shape2(1, 10), 9, 0, 1);
  fg_node outs[2] = {y1, y2};
  fg_program *p = run(&r, 2, outs, xv);
  for (int i = 0; i < 10; i++) out[i] = at(p, 0, i), out[10 + i] = at(p, 1, i);
  fg_program_free(p);
  fg_tensor_free(xv);
  rig_close(&r);
  fg_bijector_free(chain);
}

Test(layers, shuffles_differ_per_layer_and_repeat_per_build) {
  double a[20], b[20];
  chained_shuffles(a);
  chained_shuffles(b);
  cr_expect(memcmp(a, b, sizeof a) == 0, "the same model must get the same permutations");
  cr_expect(memcmp(a, a + 10, sizeof a / 2) != 0, "layers 0 and 1 got the same permutation");
}

/* ---- 1x1 convolutions ---- */

/* W of a conv1x1 / conv1x1_lu layer with c channels, read off y = x W^T at x = I, in `ps`. */
static void weight_of(fg_bijector *b, fg_params *ps, int c, double *w) {
  rig r = rig_open(ps, (fg_flow_ctx_opts){.dtype = FG_F64});
  fg_node x = fg_input(r.g, "x", FG_F64, fg_shape2(c, c)), y, ld;
  cr_assert_eq(fg_bijector_forward(b, r.c, x, &y, &ld), FG_OK, "%s", fg_graph_errmsg(r.g));
  fg_tensor *eye;
  fg_shape s = fg_shape2(c, c);
  cr_assert_eq(fg_tensor_new(&eye, FG_F64, &s, NULL), FG_OK);
  for (int i = 0; i < c; i++) fg_tensor_set(eye, i * c + i, 1.0);
  fg_program *p = run(&r, 1, &y, eye);
  for (int i = 0; i < c; i++)
    for (int j = 0; j < c; j++) w[i * c + j] = at(p, 0, j * c + i); /* row j of y is column j of W */
  fg_program_free(p);
  fg_tensor_free(eye);
  rig_close(&r);
}

/* The [B] log-det of b on a [2, c, h, w] image of dtype t, parameters from ps (F64 store). */
static double image_logdet(fg_bijector *b, fg_params *ps, int c, int h, int w, fg_dtype t) {
  rig r = rig_open(ps, (fg_flow_ctx_opts){.dtype = FG_F64});
  fg_shape xs = fg_shape4(2, c, h, w);
  fg_node x = fg_input(r.g, "x", t, xs), y, ld;
  cr_assert_eq(fg_bijector_forward(b, r.c, x, &y, &ld), FG_OK, "%s", fg_graph_errmsg(r.g));
  cr_assert_eq(fg_node_dtype(r.g, ld), t);
  fg_tensor *xv = random_tensor(t, xs, 2, -1, 1);
  fg_program *p = run(&r, 1, &ld, xv);
  double v = at(p, 0, 0);
  cr_expect_eq(at(p, 0, 1), v, "the log-det of a linear layer is the same for every sample");
  fg_program_free(p);
  fg_tensor_free(xv);
  rig_close(&r);
  return v;
}

/* max |W W^T - I| of an n x n row-major W: 0 for a rotation. */
static double gram_error(const double *w, int n) {
  double err = 0;
  for (int i = 0; i < n; i++)
    for (int j = 0; j < n; j++) {
      double dot = 0;
      for (int k = 0; k < n; k++) dot += w[i * n + k] * w[j * n + k];
      err = fmax(err, fabs(dot - (i == j)));
    }
  return err;
}

Test(layers, conv1x1_logdet_is_hw_log_abs_det_w_in_both_precisions) {
  fg_bijector *b = make("conv1x1", "");
  fg_params *ps;
  fg_params_new(&ps, 21, NULL);
  double w[16], w_copy[16];
  weight_of(b, ps, 4, w);
  double gram_err = gram_error(w, 4); /* W starts as a rotation: W W^T = I */
  cr_expect(gram_err < 1e-12, "W W^T - I = %g at init", gram_err);
  perturb(ps, 0.3, 5); /* away from |det| = 1, so the log-det is not trivially 0 */
  weight_of(b, ps, 4, w);
  memcpy(w_copy, w, sizeof w);
  double expect = 3 * 5 * log_abs_det(w_copy, 4);
  cr_assert(fabs(expect) > 0.1, "the perturbed W should have |det| away from 1");
  double ld64 = image_logdet(b, ps, 4, 3, 5, FG_F64), ld32 = image_logdet(b, ps, 4, 3, 5, FG_F32);
  cr_expect(fabs(ld64 - expect) < 1e-10 * (1 + fabs(expect)), "float64 log-det %.15g, H·W·log|det W| %.15g", ld64, expect);
  cr_expect(fabs(ld32 - ld64) < 1e-5 * (1 + fabs(expect)), "float32 log-det %.9g vs float64 %.9g", ld32, ld64);
  fg_params_free(ps);
  fg_bijector_free(b);
}

Test(layers, conv1x1_lu_reconstructs_a_rotation_and_its_logdet_is_slogdet) {
  fg_bijector *b = make("conv1x1_lu", "seed=3");
  fg_params *ps;
  fg_params_new(&ps, 8, NULL);
  double w[25], w_copy[25];
  weight_of(b, ps, 5, w);
  double gram_err = gram_error(w, 5);
  cr_expect(gram_err < 1e-12, "P L U of the initial factors is a rotation: W W^T - I = %g", gram_err);
  cr_expect_eq(fg_params_count(ps), 3, "lower_offset, upper_offset, log_s_offset");
  cr_expect_not_null(fg_params_find(ps, "conv1x1_lu.log_s_offset"));
  perturb(ps, 0.3, 6);
  weight_of(b, ps, 5, w);
  memcpy(w_copy, w, sizeof w);
  double expect = 2 * 4 * log_abs_det(w_copy, 5);
  cr_assert(fabs(expect) > 0.1);
  double ld = image_logdet(b, ps, 5, 2, 4, FG_F64);
  cr_expect(fabs(ld - expect) < 1e-10 * (1 + fabs(expect)), "log-det %.15g vs H·W·log|det W| %.15g", ld, expect);
  cr_expect(fabs(image_logdet(b, ps, 5, 2, 4, FG_F32) - expect) < 1e-5 * (1 + fabs(expect)));
  fg_params_free(ps);
  fg_bijector_free(b);
}
