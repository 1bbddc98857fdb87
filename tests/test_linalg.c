/* Linear algebra and squeeze beyond the op table's random cases: singular and nearly singular
 * matrices, pivoting, the loud failure of solves at singular matrices, factor reconstruction,
 * thread-count invariance of every kernel, and squeeze's layout, round trip and rejections. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "ops/autodiff/autodiff.h"
#include "ops/autodiff/gradcheck.h"
#include "core/ir/op.h"
#include "core/runtime/program.h"
#include "core/rng.h"
#include "ops/ops.h"

/* Error detail of the last failing library call, for assertion messages. */
static fg_err terr __attribute__((unused));

static fg_tensor *tensor_of(fg_dtype t, fg_shape s, const double *v) {
  fg_tensor *x;
  cr_assert_eq(fg_tensor_new(&x, t, &s, NULL), FG_OK);
  for (int64_t i = 0; i < fg_tensor_numel(x); i++) fg_tensor_set(x, i, v[i]);
  return x;
}

static fg_tensor *random_tensor(fg_dtype t, fg_shape s, uint64_t seed, double lo, double hi) {
  fg_tensor *x;
  cr_assert_eq(fg_tensor_new(&x, t, &s, NULL), FG_OK);
  for (int64_t i = 0; i < fg_tensor_numel(x); i++)
    fg_tensor_set(x, i, lo + (hi - lo) * fg_rng_uniform(seed, (uint64_t)i));
  return x;
}

/* Plans outs over g, binds input "a" (and "b" when given) and runs; returns the run status. */
static fg_status run(fg_graph *g, int n_out, const fg_node *outs, const fg_tensor *a,
                     const fg_tensor *b, fg_program **out) {
  cr_assert_eq(fg_graph_status(g), FG_OK, "%s", fg_graph_errmsg(g));
  fg_err e;
  cr_assert_eq(fg_program_new(out, g, n_out, outs, &e), FG_OK, "%s", e.msg);
  cr_assert_eq(fg_program_bind(*out, "a", a, &terr), FG_OK, "%s", terr.msg);
  if (b) cr_assert_eq(fg_program_bind(*out, "b", b, &terr), FG_OK, "%s", terr.msg);
  return fg_program_run(*out, &terr);
}

static double out_at(const fg_program *p, int i, int64_t j) {
  return fg_tensor_get(fg_program_output(p, i), j);
}

/* ---- singular matrices: -inf and sign 0 for evaluation, FG_E_NUMERIC for solves ---- */

/* Matrix 0 is regular (det 5), matrix 1 exactly singular in any precision. */
static const double batch_with_singular[] = {2, 1, 1, 3, 1, 2, 2, 4};

static void check_singular_eval(fg_dtype t) {
  fg_graph *g;
  fg_graph_new(&g, NULL);
  fg_node a = fg_input(g, "a", t, fg_shape3(2, 2, 2));
  fg_node outs[2] = {fg_slogdet(g, a), fg_det_sign(g, a)};
  fg_tensor *x = tensor_of(t, fg_shape3(2, 2, 2), batch_with_singular);
  fg_program *p;
  cr_assert_eq(run(g, 2, outs, x, NULL, &p), FG_OK, "%s", terr.msg);
  cr_expect_float_eq(out_at(p, 0, 0), log(5.0), 1e-6);
  cr_expect(isinf(out_at(p, 0, 1)) && out_at(p, 0, 1) < 0, "log|det| of a singular matrix is %g",
            out_at(p, 0, 1));
  cr_expect_eq(out_at(p, 1, 0), 1.0);
  cr_expect_eq(out_at(p, 1, 1), 0.0);
  fg_program_free(p);
  fg_tensor_free(x);
  fg_graph_free(g);
}

Test(linalg, singular_gives_minus_inf_and_sign_zero) {
  check_singular_eval(FG_F64);
  check_singular_eval(FG_F32);
}

typedef fg_node (*unary_builder)(fg_graph *, fg_node);

static fg_node solve_ones(fg_graph *g, fg_node a) {
  return fg_solve(g, a, fg_fill(g, 1.0, fg_node_dtype(g, a), fg_shape2(2, 1)));
}
/* The gradient of log|det| is the training-time use of a singular matrix. */
static fg_node slogdet_grad(fg_graph *g, fg_node a) {
  fg_node grad;
  fg_grad(g, fg_sum(g, fg_slogdet(g, a), FG_ALL_AXES, false), 1, &a, &grad);
  return grad;
}

static void check_fails_loudly(unary_builder build, fg_dtype t, const char *what) {
  fg_graph *g;
  fg_graph_new(&g, NULL);
  fg_node a = fg_input(g, "a", t, fg_shape3(2, 2, 2));
  fg_node y = build(g, a);
  fg_tensor *x = tensor_of(t, fg_shape3(2, 2, 2), batch_with_singular);
  fg_program *p;
  cr_expect_eq(run(g, 1, &y, x, NULL, &p), FG_E_NUMERIC, "%s of a singular matrix: %s", what,
               terr.msg);
  const char *msg = terr.msg;
  cr_expect(strstr(msg, "matrix 1 of the batch") && strstr(msg, "singular"),
            "%s: the message should name the singular matrix: \"%s\"", what, msg);
  fg_program_free(p);
  fg_tensor_free(x);
  fg_graph_free(g);
}

Test(linalg, solve_inverse_and_gradient_fail_loudly_at_singular) {
  for (int t = 0; t < FG_DTYPE_COUNT; t++) {
    check_fails_loudly(solve_ones, (fg_dtype)t, "solve");
    check_fails_loudly(fg_inverse, (fg_dtype)t, "inverse");
    check_fails_loudly(slogdet_grad, (fg_dtype)t, "gradient of log|det|");
  }
}

Test(linalg, triangular_zero_diagonal_fails_loudly) {
  fg_graph *g;
  fg_graph_new(&g, NULL);
  fg_node a = fg_input(g, "a", FG_F64, fg_shape2(2, 2));
  fg_node y = fg_triangular_solve(g, a, fg_fill(g, 1.0, FG_F64, fg_shape2(2, 1)), false, false,
                                  false);
  fg_tensor *x = tensor_of(FG_F64, fg_shape2(2, 2), (const double[]){1, 5, 0, 0});
  fg_program *p;
  cr_expect_eq(run(g, 1, &y, x, NULL, &p), FG_E_NUMERIC);
  cr_expect(strstr(terr.msg, "triangular_solve: matrix 0 of the batch is exactly "
                   "singular (its diagonal entry 1 is zero)"), "%s", terr.msg);
  fg_program_free(p);
  fg_tensor_free(x);
  fg_graph_free(g);
}

Test(linalg, nan_input_is_reported_not_propagated_by_solve) {
  fg_graph *g;
  fg_graph_new(&g, NULL);
  fg_node a = fg_input(g, "a", FG_F32, fg_shape2(2, 2));
  fg_node y = fg_inverse(g, a);
  fg_tensor *x = tensor_of(FG_F32, fg_shape2(2, 2), (const double[]){1, 0, 0, NAN});
  fg_program *p;
  cr_expect_eq(run(g, 1, &y, x, NULL, &p), FG_E_NUMERIC);
  cr_expect(strstr(terr.msg, "non-finite"), "%s", terr.msg);
  fg_program_free(p);
  fg_tensor_free(x);
  fg_graph_free(g);
}

Test(linalg, one_by_one) {
  fg_graph *g;
  fg_graph_new(&g, NULL);
  fg_node a = fg_input(g, "a", FG_F64, fg_shape3(3, 1, 1));
  fg_node outs[3] = {fg_slogdet(g, a), fg_det_sign(g, a), fg_lu(g, a)};
  fg_tensor *x = tensor_of(FG_F64, fg_shape3(3, 1, 1), (const double[]){-2, 0, 0.5});
  fg_program *p;
  cr_assert_eq(run(g, 3, outs, x, NULL, &p), FG_OK, "%s", terr.msg);
  cr_expect_float_eq(out_at(p, 0, 0), log(2.0), 1e-15);
  cr_expect(isinf(out_at(p, 0, 1)) && out_at(p, 0, 1) < 0);
  cr_expect_float_eq(out_at(p, 0, 2), log(0.5), 1e-15);
  cr_expect_eq(out_at(p, 1, 0), -1.0);
  cr_expect_eq(out_at(p, 1, 1), 0.0);
  cr_expect_eq(out_at(p, 1, 2), 1.0);
  const double lu[] = {-2, 0, 0, 0, 0.5, 0}; /* [u, pivot] per matrix */
  for (int i = 0; i < 6; i++) cr_expect_eq(out_at(p, 2, i), lu[i], "lu element %d", i);
  fg_program_free(p);
  fg_tensor_free(x);
  fg_graph_free(g);
}

/* d log|a| / da = 1/a also for a 1x1 matrix (PyTorch once returned 0 here). */
Test(linalg, one_by_one_gradient) {
  fg_graph *g;
  fg_graph_new(&g, NULL);
  fg_node a = fg_input(g, "a", FG_F64, fg_shape2(1, 1)), grad;
  cr_assert_eq(fg_grad(g, fg_sum(g, fg_slogdet(g, a), FG_ALL_AXES, false), 1, &a, &grad), FG_OK);
  fg_tensor *x = tensor_of(FG_F64, fg_shape2(1, 1), (const double[]){-4});
  fg_program *p;
  cr_assert_eq(run(g, 1, &grad, x, NULL, &p), FG_OK, "%s", terr.msg);
  cr_expect_float_eq(out_at(p, 0, 0), -0.25, 1e-15);
  fg_program_free(p);
  fg_tensor_free(x);
  fg_graph_free(g);
}

/* ---- pivoting ---- */

Test(linalg, permutation_matrix_needs_pivoting) {
  for (int t = 0; t < FG_DTYPE_COUNT; t++) {
    fg_graph *g;
    fg_graph_new(&g, NULL);
    fg_node a = fg_input(g, "a", (fg_dtype)t, fg_shape2(2, 2));
    fg_node b = fg_input(g, "b", (fg_dtype)t, fg_shape2(2, 1));
    fg_node outs[5] = {fg_lu(g, a), fg_slogdet(g, a), fg_det_sign(g, a), fg_inverse(g, a),
                       fg_solve(g, a, b)};
    fg_tensor *x = tensor_of((fg_dtype)t, fg_shape2(2, 2), (const double[]){0, 1, 1, 0});
    fg_tensor *rhs = tensor_of((fg_dtype)t, fg_shape2(2, 1), (const double[]){3, 7});
    fg_program *p;
    cr_assert_eq(run(g, 5, outs, x, rhs, &p), FG_OK, "%s", terr.msg);
    const double lu[] = {1, 0, 1, 0, 1, 1}; /* rows swapped at step 0, L = I, U = I */
    for (int i = 0; i < 6; i++) cr_expect_eq(out_at(p, 0, i), lu[i], "lu element %d", i);
    cr_expect_eq(out_at(p, 1, 0), 0.0);
    cr_expect_eq(out_at(p, 2, 0), -1.0);
    for (int i = 0; i < 4; i++) cr_expect_eq(out_at(p, 3, i), fg_tensor_get(x, i));
    cr_expect_eq(out_at(p, 4, 0), 7.0);
    cr_expect_eq(out_at(p, 4, 1), 3.0);
    fg_program_free(p);
    fg_tensor_free(x), fg_tensor_free(rhs);
    fg_graph_free(g);
  }
}

/* P^T L U must give back A, with pivots that are exact integers in [i, n). */
static void check_reconstruction(fg_dtype t, int64_t n, double tol) {
  fg_graph *g;
  fg_graph_new(&g, NULL);
  fg_node a = fg_input(g, "a", t, fg_shape2(n, n));
  fg_node f = fg_lu(g, a);
  fg_tensor *x = random_tensor(t, fg_shape2(n, n), 7, -1, 1);
  fg_program *p;
  cr_assert_eq(run(g, 1, &f, x, NULL, &p), FG_OK, "%s", terr.msg);
  const fg_tensor *lu = fg_program_output(p, 0);
  double m[64];
  for (int64_t i = 0; i < n; i++)
    for (int64_t j = 0; j < n; j++) {
      double s = 0;
      for (int64_t k = 0; k <= (i < j ? i : j); k++) {
        double l = k == i ? 1 : fg_tensor_get(lu, i * (n + 1) + k);
        s += l * fg_tensor_get(lu, k * (n + 1) + j);
      }
      m[i * n + j] = s;
    }
  for (int64_t i = n - 1; i >= 0; i--) { /* undo the swaps, last first: P^T (L U) */
    double piv = fg_tensor_get(lu, i * (n + 1) + n);
    cr_assert(piv == floor(piv) && piv >= (double)i && piv < (double)n, "pivot %lld is %g",
              (long long)i, piv);
    for (int64_t j = 0; j < n; j++) {
      double tmp = m[i * n + j];
      m[i * n + j] = m[(int64_t)piv * n + j];
      m[(int64_t)piv * n + j] = tmp;
    }
  }
  for (int64_t i = 0; i < n * n; i++)
    cr_expect(fabs(m[i] - fg_tensor_get(x, i)) <= tol, "%s: (P^T L U)[%lld] = %.9g, A = %.9g",
              fg_dtype_name(t), (long long)i, m[i], fg_tensor_get(x, i));
  fg_program_free(p);
  fg_tensor_free(x);
  fg_graph_free(g);
}

Test(linalg, lu_reconstructs_the_matrix) {
  check_reconstruction(FG_F64, 8, 1e-14);
  check_reconstruction(FG_F32, 8, 1e-6);
}

/* ---- nearly singular ---- */

/* det of the n x n Hilbert matrix is c_n^4 / c_2n with c_n = prod_{i<n} i!. */
static double hilbert_logdet(int n) {
  double log_c_n = 0, log_c_2n = 0;
  for (int i = 1; i < 2 * n; i++) {
    if (i < n) log_c_n += lgamma(i + 1.0);
    log_c_2n += lgamma(i + 1.0);
  }
  return 4 * log_c_n - log_c_2n;
}

Test(linalg, nearly_singular_hilbert) {
  enum { N = 7 }; /* condition number ~5e8 */
  double h[N * N];
  for (int i = 0; i < N; i++)
    for (int j = 0; j < N; j++) h[i * N + j] = 1.0 / (i + j + 1);
  fg_graph *g;
  fg_graph_new(&g, NULL);
  fg_node a = fg_input(g, "a", FG_F64, fg_shape2(N, N));
  fg_node outs[2] = {fg_slogdet(g, a), fg_matmul(g, a, fg_inverse(g, a))};
  fg_tensor *x = tensor_of(FG_F64, fg_shape2(N, N), h);
  fg_program *p;
  cr_assert_eq(run(g, 2, outs, x, NULL, &p), FG_OK, "%s", terr.msg);
  double want = hilbert_logdet(N);
  cr_expect(fabs(out_at(p, 0, 0) - want) <= 1e-8 * fabs(want), "log|det H7| = %.15g, want %.15g",
            out_at(p, 0, 0), want);
  for (int i = 0; i < N * N; i++)
    cr_expect(fabs(out_at(p, 1, i) - (i / N == i % N)) <= 1e-6, "(H H^-1)[%d] = %g", i,
              out_at(p, 1, i));
  fg_program_free(p);
  fg_tensor_free(x);
  fg_graph_free(g);
}

/* det = 2^-10 exactly, representable in float32 and found exactly by elimination. */
Test(linalg, nearly_singular_float32) {
  fg_graph *g;
  fg_graph_new(&g, NULL);
  fg_node a = fg_input(g, "a", FG_F32, fg_shape2(2, 2));
  fg_node outs[2] = {fg_slogdet(g, a), fg_inverse(g, a)};
  double e = ldexp(1, -10);
  fg_tensor *x = tensor_of(FG_F32, fg_shape2(2, 2), (const double[]){1, 1, 1, 1 + e});
  fg_program *p;
  cr_assert_eq(run(g, 2, outs, x, NULL, &p), FG_OK, "%s", terr.msg);
  cr_expect_float_eq(out_at(p, 0, 0), -10 * log(2.0), 1e-6);
  const double inv[] = {(1 + e) / e, -1 / e, -1 / e, 1 / e};
  for (int i = 0; i < 4; i++)
    cr_expect(fabs(out_at(p, 1, i) - inv[i]) <= 1e-6 * fabs(inv[i]), "inverse[%d] = %g, want %g",
              i, out_at(p, 1, i), inv[i]);
  fg_program_free(p);
  fg_tensor_free(x);
  fg_graph_free(g);
}

/* ---- sharing and gradients of composites ---- */

Test(linalg, one_factorisation_per_matrix) {
  fg_graph *g;
  fg_graph_new(&g, NULL);
  fg_node a = fg_input(g, "a", FG_F64, fg_shape2(3, 3));
  fg_node ld = fg_slogdet(g, a), grad;
  fg_det_sign(g, a);
  fg_inverse(g, a);
  fg_solve(g, a, fg_fill(g, 1, FG_F64, fg_shape2(3, 1)));
  cr_assert_eq(fg_grad(g, ld, 1, &a, &grad), FG_OK, "%s", fg_graph_errmsg(g));
  int lus = 0;
  for (fg_node i = 0; i < fg_graph_node_count(g); i++) lus += fg_node_op(g, i) == fg_op_find("lu");
  cr_expect_eq(lus, 1, "%d lu nodes for one matrix", lus);
  fg_graph_free(g);
}

static fg_node build_inverse(fg_graph *g, const fg_node *in, void *ud) {
  (void)ud;
  fg_node eye3 = fg_mul_scalar(g, fg_inverse(g, fg_inverse(g, in[1])), 3.0); /* 3I, via inverses */
  return fg_inverse(g, fg_add(g, in[0], eye3));
}

Test(linalg, inverse_gradgrad_through_nested_inverses) {
  fg_tensor *x[2] = {random_tensor(FG_F64, fg_shape3(2, 3, 3), 11, -1, 1),
                     tensor_of(FG_F64, fg_shape2(3, 3),
                               (const double[]){1, 0, 0, 0, 1, 0, 0, 0, 1})};
  fg_gradcheck_opts o = {.skip_mask = 2};
  fg_gradcheck_report rep;
  cr_expect_eq(fg_gradcheck(build_inverse, NULL, 2, x, &o, &rep), FG_OK, "%s", rep.msg);
  cr_expect_eq(fg_gradgradcheck(build_inverse, NULL, 2, x, &o, &rep), FG_OK, "%s", rep.msg);
  fg_tensor_free(x[0]), fg_tensor_free(x[1]);
}

/* ---- every kernel gives the same bits for any split of its batch ---- */

typedef struct kernel_case {
  const char *op;
  int n_in;
  fg_shape in[3];
  fg_shape out;
  const void *attr;
} kernel_case;

static void run_split(const fg_op_def *d, fg_dtype t, const kernel_case *c, void *const *in,
                      void *out, int nth) {
  fg_dtype dts[3] = {t, t, t};
  for (int ith = 0; ith < nth; ith++) {
    fg_err err;
    fg_kargs k = {.attr = c->attr, .n_in = c->n_in, .in = (const void *const *)in,
                  .in_shape = c->in, .in_dtype = dts, .out = out, .out_shape = c->out,
                  .ith = ith, .nth = nth, .err = &err};
    cr_assert_eq((t == FG_F64 ? d->kernel_f64 : d->kernel_f32)(&k), FG_OK, "%s: %s", c->op,
                 err.msg);
  }
}

static void check_split_invariance(const kernel_case *c, fg_dtype t) {
  const fg_op_def *d = fg_op_get(fg_op_find(c->op));
  fg_tensor *x[3], *y1, *y5;
  void *in[3];
  for (int i = 0; i < c->n_in; i++) {
    x[i] = random_tensor(t, c->in[i], 20 + (uint64_t)i, -1, 1);
    in[i] = fg_tensor_data(x[i]);
  }
  if (c->n_in == 3) { /* lu_solve: input 1 must be real factors of a well-conditioned input 0 */
    for (int64_t b = 0; b < c->in[0].d[0]; b++)
      for (int64_t i = 0; i < 4; i++) fg_tensor_set(x[0], b * 16 + i * 5, 3.0);
    kernel_case lu = {"lu", 1, {c->in[0]}, c->in[1], NULL};
    run_split(fg_op_get(fg_op_find("lu")), t, &lu, in, in[1], 1);
  }
  cr_assert_eq(fg_tensor_new(&y1, t, &c->out, NULL), FG_OK);
  cr_assert_eq(fg_tensor_new(&y5, t, &c->out, NULL), FG_OK);
  run_split(d, t, c, in, fg_tensor_data(y1), 1);
  run_split(d, t, c, in, fg_tensor_data(y5), 5);
  size_t bytes = (size_t)fg_tensor_numel(y1) * fg_dtype_size(t);
  cr_expect(memcmp(fg_tensor_data(y1), fg_tensor_data(y5), bytes) == 0,
            "%s %s: 1 part and 5 parts differ", c->op, fg_dtype_name(t));
  for (int i = 0; i < c->n_in; i++) fg_tensor_free(x[i]);
  fg_tensor_free(y1), fg_tensor_free(y5);
}

Test(linalg, kernels_are_bit_identical_for_any_thread_count) {
  static const fg_lu_solve_attr lt = {1};
  static const fg_triangular_solve_attr tt = {.lower = 1, .transpose = 1};
  /* well-conditioned enough: random [-1, 1) of size 4 with diagonals that rarely vanish; the
   * kernels' results need not be accurate here, only identical */
  const kernel_case cases[] = {
      {"lu", 1, {{3, {7, 4, 4}}}, {3, {7, 4, 5}}, NULL},
      {"slogdet", 2, {{3, {7, 4, 4}}, {3, {7, 4, 5}}}, {1, {7}}, NULL},
      {"det_sign", 1, {{3, {7, 4, 5}}}, {1, {7}}, NULL},
      {"lu_solve", 3, {{3, {7, 4, 4}}, {3, {7, 4, 5}}, {3, {7, 4, 3}}}, {3, {7, 4, 3}}, &lt},
      {"triangular_solve", 2, {{2, {4, 4}}, {3, {7, 4, 2}}}, {3, {7, 4, 2}}, &tt},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
    for (int t = 0; t < FG_DTYPE_COUNT; t++) check_split_invariance(&cases[i], (fg_dtype)t);
}

/* ---- squeeze ---- */

Test(squeeze, layout_matches_pixel_unshuffle_and_round_trips) {
  const int64_t N = 2, C = 3, H = 4, W = 6;
  fg_graph *g;
  fg_graph_new(&g, NULL);
  fg_node a = fg_input(g, "a", FG_F64, fg_shape4(N, C, H, W));
  fg_node sq = fg_squeeze2d(g, a), outs[2] = {sq, fg_unsqueeze2d(g, sq)};
  cr_assert_eq(fg_graph_status(g), FG_OK, "%s", fg_graph_errmsg(g));
  fg_shape s = fg_node_shape(g, sq), want = fg_shape4(N, 4 * C, H / 2, W / 2);
  cr_assert(fg_shape_equal(&s, &want));
  fg_tensor *x = random_tensor(FG_F64, fg_shape4(N, C, H, W), 3, -1, 1);
  fg_program *p;
  cr_assert_eq(run(g, 2, outs, x, NULL, &p), FG_OK, "%s", terr.msg);
  for (int64_t n = 0; n < N; n++)
    for (int64_t c = 0; c < 4 * C; c++)
      for (int64_t i = 0; i < H / 2; i++)
        for (int64_t j = 0; j < W / 2; j++) {
          int64_t src_c = c / 4, dy = (c % 4) / 2, dx = c % 2;
          double got = out_at(p, 0, ((n * 4 * C + c) * (H / 2) + i) * (W / 2) + j);
          double src = fg_tensor_get(x, ((n * C + src_c) * H + 2 * i + dy) * W + 2 * j + dx);
          cr_expect_eq(got, src, "squeeze [%lld, %lld, %lld, %lld]", (long long)n, (long long)c,
                       (long long)i, (long long)j);
        }
  for (int64_t i = 0; i < N * C * H * W; i++) cr_expect_eq(out_at(p, 1, i), fg_tensor_get(x, i));
  fg_program_free(p);
  fg_tensor_free(x);
  fg_graph_free(g);
}

static void expect_rejected(fg_node (*f)(fg_graph *, fg_node), fg_shape s, const char *mention) {
  fg_graph *g;
  fg_graph_new(&g, NULL);
  fg_node y = f(g, fg_input(g, "a", FG_F32, s));
  cr_expect_eq(y, FG_POISON);
  cr_expect_eq(fg_graph_status(g), FG_E_SHAPE);
  cr_expect(strstr(fg_graph_errmsg(g), mention), "\"%s\" should mention \"%s\"",
            fg_graph_errmsg(g), mention);
  fg_graph_free(g);
}

Test(squeeze, rejects_odd_sizes_and_bad_ranks) {
  expect_rejected(fg_squeeze2d, fg_shape4(1, 2, 5, 4),
                  "squeeze2d: input [1, 2, 5, 4] has an odd height (5)");
  expect_rejected(fg_squeeze2d, fg_shape4(1, 2, 4, 3), "odd width (3)");
  expect_rejected(fg_squeeze2d, fg_shape3(2, 4, 4), "must be [N, C, H, W]");
  expect_rejected(fg_unsqueeze2d, fg_shape4(1, 6, 2, 2),
                  "unsqueeze2d: input [1, 6, 2, 2] has 6 channels");
}

static fg_node build_squeeze(fg_graph *g, const fg_node *in, void *ud) {
  (void)ud;
  return fg_mul(g, fg_squeeze2d(g, in[0]), fg_squeeze2d(g, in[0]));
}

Test(squeeze, gradcheck) {
  fg_tensor *x = random_tensor(FG_F64, fg_shape4(1, 2, 2, 4), 5, -1, 1);
  fg_gradcheck_report rep;
  cr_expect_eq(fg_gradcheck(build_squeeze, NULL, 1, &x, NULL, &rep), FG_OK, "%s", rep.msg);
  fg_tensor_free(x);
}
