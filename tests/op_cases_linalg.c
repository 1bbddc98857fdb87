/* Cases for the linear-algebra family (ops/linalg.c).  The references share nothing with the
 * kernels: determinants by Laplace (cofactor) expansion, LU by textbook right-looking
 * elimination, solves and inverses by Gauss-Jordan elimination on [A | B], triangular solves
 * by writing the triangle out as a dense matrix.
 *
 * Random entries in [-1, 1) make badly conditioned matrices now and then, so the cases that
 * are gradchecked condition their matrix inside the build (A + shift·I, rows optionally
 * reversed so that every elimination step must pivot); the reference applies the same. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/ir/op.h"
#include "tests/op_cases.h"

typedef struct la_ctx {
  double shift;      /* added to input 0's diagonal */
  bool reverse_rows; /* then input 0's rows reversed: pivoting needed, det sign (-1)^(n/2) */
  bool lower, unit, transpose; /* triangular_solve / lu_solve flags */
  bool inverse;      /* lu_solve case built with fg_inverse (one input) */
} la_ctx;

/* ---- building ---- */

static fg_node constant_matrix(fg_graph *g, int64_t n, fg_dtype t, bool reversal) {
  fg_tensor *m;
  fg_shape s = fg_shape2(n, n);
  if (fg_tensor_new(&m, t, &s, NULL) != FG_OK) return fg_graph_fail(g, FG_E_NOMEM, "test");
  for (int64_t i = 0; i < n; i++) fg_tensor_set(m, i * n + (reversal ? n - 1 - i : i), 1.0);
  fg_node c = fg_constant(g, m);
  fg_tensor_free(m);
  return c;
}

static fg_node condition(fg_graph *g, fg_node a, const la_ctx *c) {
  fg_shape s = fg_node_shape(g, a);
  int64_t n = s.d[s.ndim - 1];
  fg_dtype t = fg_node_dtype(g, a);
  if (c->shift != 0) a = fg_add(g, a, fg_mul_scalar(g, constant_matrix(g, n, t, false), c->shift));
  if (c->reverse_rows) a = fg_matmul(g, constant_matrix(g, n, t, true), a);
  return a;
}

static fg_node build_lu(fg_graph *g, const fg_node *in, const void *ctx) {
  return fg_lu(g, condition(g, in[0], ctx));
}
static fg_node build_slogdet(fg_graph *g, const fg_node *in, const void *ctx) {
  return fg_slogdet(g, condition(g, in[0], ctx));
}
static fg_node build_det_sign(fg_graph *g, const fg_node *in, const void *ctx) {
  return fg_det_sign(g, condition(g, in[0], ctx));
}
static fg_node build_lu_solve(fg_graph *g, const fg_node *in, const void *ctx) {
  const la_ctx *c = ctx;
  fg_node a = condition(g, in[0], c);
  if (c->inverse) return fg_inverse(g, a);
  return fg_lu_solve(g, a, fg_lu(g, a), in[1], c->transpose);
}
static fg_node build_triangular(fg_graph *g, const fg_node *in, const void *ctx) {
  const la_ctx *c = ctx;
  return fg_triangular_solve(g, condition(g, in[0], c), in[1], c->lower, c->unit, c->transpose);
}

/* ---- references (plain double) ---- */

static int64_t mat_n(const fg_tensor *t) { return t->shape.d[t->shape.ndim - 1]; }
static int64_t mat_batch(const fg_tensor *t) {
  int64_t b = 1;
  for (int i = 0; i < t->shape.ndim - 2; i++) b *= t->shape.d[i];
  return b;
}
static const double *data(const fg_tensor *t) { return fg_tensor_data(t); }

/* Matrix `b` of out's batch read from `in` under NumPy batch broadcasting. */
static int64_t batch_index(const fg_tensor *in, const fg_tensor *out, int64_t b) {
  int in_nb = in->shape.ndim - 2, out_nb = out->shape.ndim - 2;
  int64_t idx = 0, mult = 1;
  for (int d = out_nb - 1; d >= 0; d--) {
    int64_t od = out->shape.d[d], i = b % od;
    b /= od;
    int j = in_nb - out_nb + d;
    if (j >= 0) {
      if (in->shape.d[j] != 1) idx += i * mult;
      mult *= in->shape.d[j];
    }
  }
  return idx;
}

/* m (n x n) = the conditioned copy of a, as build's condition() makes it. */
static void ref_condition(const double *a, int64_t n, const la_ctx *c, double *m) {
  for (int64_t i = 0; i < n; i++)
    for (int64_t j = 0; j < n; j++) {
      int64_t src = c->reverse_rows ? n - 1 - i : i;
      m[i * n + j] = a[src * n + j] + (src == j ? c->shift : 0);
    }
}

/* Laplace expansion along the first row. */
static double ref_det(const double *m, int64_t n) {
  if (n == 0) return 1;
  if (n == 1) return m[0];
  double det = 0, *minor = malloc(sizeof *minor * (size_t)((n - 1) * (n - 1)));
  for (int64_t col = 0; col < n; col++) {
    for (int64_t i = 1; i < n; i++)
      for (int64_t j = 0, k = 0; j < n; j++)
        if (j != col) minor[(i - 1) * (n - 1) + k++] = m[i * n + j];
    det += (col % 2 ? -1 : 1) * m[col] * ref_det(minor, n - 1);
  }
  free(minor);
  return det;
}

/* Gauss-Jordan on [m | x]: x (n x k) becomes m^-1 x. */
static void ref_gauss_jordan(const double *m_in, int64_t n, double *x, int64_t k) {
  double *m = malloc(sizeof *m * (size_t)(n * n + 1));
  memcpy(m, m_in, sizeof *m * (size_t)(n * n));
  for (int64_t col = 0; col < n; col++) {
    int64_t p = col;
    for (int64_t i = col + 1; i < n; i++)
      if (fabs(m[i * n + col]) > fabs(m[p * n + col])) p = i;
    for (int64_t j = 0; j < n; j++) {
      double t = m[col * n + j]; m[col * n + j] = m[p * n + j]; m[p * n + j] = t;
    }
    for (int64_t j = 0; j < k; j++) {
      double t = x[col * k + j]; x[col * k + j] = x[p * k + j]; x[p * k + j] = t;
    }
    double d = m[col * n + col];
    for (int64_t j = 0; j < n; j++) m[col * n + j] /= d;
    for (int64_t j = 0; j < k; j++) x[col * k + j] /= d;
    for (int64_t i = 0; i < n; i++) {
      if (i == col) continue;
      double f = m[i * n + col];
      for (int64_t j = 0; j < n; j++) m[i * n + j] -= f * m[col * n + j];
      for (int64_t j = 0; j < k; j++) x[i * k + j] -= f * x[col * k + j];
    }
  }
  free(m);
}

static void ref_lu(const fg_tensor *const *in, fg_tensor *out, const void *ctx) {
  int64_t n = mat_n(in[0]);
  double *m = malloc(sizeof *m * (size_t)(n * n + 1));
  for (int64_t b = 0; b < mat_batch(in[0]); b++) {
    ref_condition(data(in[0]) + b * n * n, n, ctx, m);
    double *f = (double *)fg_tensor_data(out) + b * n * (n + 1);
    for (int64_t k = 0; k < n; k++) { /* eliminate below (k, k) after the largest pivot */
      int64_t p = k;
      for (int64_t i = k + 1; i < n; i++)
        if (fabs(m[i * n + k]) > fabs(m[p * n + k])) p = i;
      for (int64_t j = 0; j < n; j++) {
        double t = m[k * n + j]; m[k * n + j] = m[p * n + j]; m[p * n + j] = t;
      }
      f[k * (n + 1) + n] = (double)p;
      for (int64_t i = k + 1; i < n; i++) {
        if (m[k * n + k] != 0) m[i * n + k] /= m[k * n + k];
        for (int64_t j = k + 1; j < n; j++) m[i * n + j] -= m[i * n + k] * m[k * n + j];
      }
    }
    for (int64_t i = 0; i < n; i++)
      for (int64_t j = 0; j < n; j++) f[i * (n + 1) + j] = m[i * n + j];
  }
  free(m);
}

static void ref_slogdet(const fg_tensor *const *in, fg_tensor *out, const void *ctx) {
  int64_t n = mat_n(in[0]);
  double *m = malloc(sizeof *m * (size_t)(n * n + 1));
  for (int64_t b = 0; b < mat_batch(in[0]); b++) {
    ref_condition(data(in[0]) + b * n * n, n, ctx, m);
    fg_tensor_set(out, b, log(fabs(ref_det(m, n))));
  }
  free(m);
}

static void ref_det_sign(const fg_tensor *const *in, fg_tensor *out, const void *ctx) {
  int64_t n = mat_n(in[0]);
  double *m = malloc(sizeof *m * (size_t)(n * n + 1));
  for (int64_t b = 0; b < mat_batch(in[0]); b++) {
    ref_condition(data(in[0]) + b * n * n, n, ctx, m);
    double d = ref_det(m, n);
    fg_tensor_set(out, b, d > 0 ? 1 : d < 0 ? -1 : 0);
  }
  free(m);
}

static void ref_lu_solve(const fg_tensor *const *in, fg_tensor *out, const void *ctx) {
  const la_ctx *c = ctx;
  int64_t n = mat_n(in[0]), k = mat_n(out);
  double *m = malloc(sizeof *m * (size_t)(n * n + 1));
  double *mt = malloc(sizeof *mt * (size_t)(n * n + 1));
  for (int64_t b = 0; b < mat_batch(out); b++) {
    ref_condition(data(in[0]) + batch_index(in[0], out, b) * n * n, n, c, m);
    for (int64_t i = 0; i < n; i++)
      for (int64_t j = 0; j < n; j++) mt[i * n + j] = c->transpose ? m[j * n + i] : m[i * n + j];
    double *x = (double *)fg_tensor_data(out) + b * n * k;
    for (int64_t i = 0; i < n * k; i++)
      x[i] = c->inverse ? (i / k == i % k) : data(in[1])[batch_index(in[1], out, b) * n * k + i];
    ref_gauss_jordan(mt, n, x, k);
  }
  free(m), free(mt);
}

/* Writes op(T) out densely (only the triangle read, ones for a unit diagonal), then solves. */
static void ref_triangular(const fg_tensor *const *in, fg_tensor *out, const void *ctx) {
  const la_ctx *c = ctx;
  int64_t n = mat_n(in[0]), k = mat_n(out);
  double *m = malloc(sizeof *m * (size_t)(n * n + 1)), *d = malloc(sizeof *d * (size_t)(n * n + 1));
  for (int64_t b = 0; b < mat_batch(out); b++) {
    ref_condition(data(in[0]) + batch_index(in[0], out, b) * n * n, n, c, m);
    for (int64_t i = 0; i < n; i++)
      for (int64_t j = 0; j < n; j++) {
        bool kept = c->lower ? j < i : j > i;
        double v = i == j ? (c->unit ? 1 : m[i * n + j]) : kept ? m[i * n + j] : 0;
        d[c->transpose ? j * n + i : i * n + j] = v;
      }
    double *x = (double *)fg_tensor_data(out) + b * n * k;
    memcpy(x, data(in[1]) + batch_index(in[1], out, b) * n * k, sizeof *x * (size_t)(n * k));
    ref_gauss_jordan(d, n, x, k);
  }
  free(m), free(d);
}

/* ---- the cases ---- */

#define CTX(...) (&(const la_ctx){__VA_ARGS__})
#define S2(a, b) {2, {a, b}}
#define S3(a, b, c) {3, {a, b, c}}

static const op_case cases[] = {
    /* lu: pivots and factors against textbook elimination */
    {"lu", "4x4 random: pivoting on random entries", 1, {S2(4, 4)}, -1, 1, build_lu, CTX(0),
     ref_lu, .no_grad = true},
    {"lu", "rows reversed: every step pivots", 1, {S2(5, 5)}, -1, 1, build_lu,
     CTX(.shift = 3, .reverse_rows = true), ref_lu, .no_grad = true},
    {"lu", "batch [2, 3, 3]", 1, {S3(2, 3, 3)}, -1, 1, build_lu, CTX(0), ref_lu, .no_grad = true},
    {"lu", "1x1", 1, {S2(1, 1)}, -2, -0.5, build_lu, CTX(0), ref_lu, .no_grad = true},
    {"lu", "zero-sized batch [0, 3, 3]", 1, {S3(0, 3, 3)}, -1, 1, build_lu, CTX(0), ref_lu,
     .no_grad = true},

    /* slogdet: log|det| against cofactor expansion, gradient A^-T */
    {"slogdet", "3x3 well conditioned", 1, {S2(3, 3)}, -1, 1, build_slogdet, CTX(.shift = 3),
     ref_slogdet, .gradgrad = true},
    {"slogdet", "batch [2, 3, 3] rows reversed: pivoting, negative det", 1, {S3(2, 3, 3)}, -1,
     1, build_slogdet, CTX(.shift = 3, .reverse_rows = true), ref_slogdet, .gradgrad = true},
    {"slogdet", "1x1 negative: gradient 1/a", 1, {S2(1, 1)}, -2, -0.5, build_slogdet, CTX(0),
     ref_slogdet, .gradgrad = true},
    {"slogdet", "batch of one [1, 4, 4]", 1, {S3(1, 4, 4)}, -1, 1, build_slogdet,
     CTX(.shift = 4), ref_slogdet, .no_grad = false},
    {"slogdet", "zero-sized batch [0, 2, 2]", 1, {S3(0, 2, 2)}, -1, 1, build_slogdet,
     CTX(.shift = 3), ref_slogdet, .no_grad = false},
    {"slogdet", "det ~1e48, beyond float32 range (log-sum in float64)", 1, {S2(8, 8)}, -1, 1,
     build_slogdet, CTX(.shift = 1e6), ref_slogdet, .no_grad = true},

    /* det_sign */
    {"det_sign", "batch [4, 3, 3] rows reversed (one swap)", 1, {S3(4, 3, 3)}, -1, 1,
     build_det_sign,
     CTX(.shift = 3, .reverse_rows = true), ref_det_sign, .no_grad = true},
    {"det_sign", "4x4 rows reversed (two swaps)", 1, {S2(4, 4)}, -1, 1, build_det_sign,
     CTX(.shift = 3, .reverse_rows = true), ref_det_sign, .no_grad = true},
    {"det_sign", "batch [3, 2, 2] random signs", 1, {S3(3, 2, 2)}, -1, 1, build_det_sign,
     CTX(0), ref_det_sign, .no_grad = true},
    {"det_sign", "1x1 negative", 1, {S2(1, 1)}, -2, -0.5, build_det_sign, CTX(0), ref_det_sign,
     .no_grad = true},

    /* lu_solve, through solve, lu_solve and inverse */
    {"lu_solve", "solve 3x3, B [3, 2]", 2, {S2(3, 3), S2(3, 2)}, -1, 1, build_lu_solve,
     CTX(.shift = 3), ref_lu_solve, .gradgrad = true},
    {"lu_solve", "transposed, batch [2, 3, 3], B [2, 3, 1]", 2, {S3(2, 3, 3), S3(2, 3, 1)}, -1,
     1, build_lu_solve, CTX(.shift = 3, .transpose = true), ref_lu_solve, .gradgrad = true},
    {"lu_solve", "rows reversed: pivoting", 2, {S2(4, 4), S2(4, 2)}, -1, 1, build_lu_solve,
     CTX(.shift = 3, .reverse_rows = true), ref_lu_solve, .no_grad = false},
    {"lu_solve", "transposed, rows reversed", 2, {S2(4, 4), S2(4, 3)}, -1, 1, build_lu_solve,
     CTX(.shift = 3, .reverse_rows = true, .transpose = true), ref_lu_solve, .no_grad = false},
    {"lu_solve", "A [2, 3, 3] broadcast with B [3, 2]", 2, {S3(2, 3, 3), S2(3, 2)}, -1, 1,
     build_lu_solve, CTX(.shift = 3), ref_lu_solve, .no_grad = false},
    {"lu_solve", "A [3, 3] broadcast with B [2, 3, 2]", 2, {S2(3, 3), S3(2, 3, 2)}, -1, 1,
     build_lu_solve, CTX(.shift = 3), ref_lu_solve, .no_grad = false},
    {"lu_solve", "1x1", 2, {S2(1, 1), S2(1, 3)}, 0.5, 2, build_lu_solve, CTX(0), ref_lu_solve,
     .gradgrad = true},
    {"lu_solve", "zero-sized batch [0, 2, 2]", 2, {S3(0, 2, 2), S3(0, 2, 1)}, -1, 1,
     build_lu_solve, CTX(.shift = 3), ref_lu_solve, .no_grad = false},
    {"lu_solve", "inverse, batch [2, 3, 3]", 1, {S3(2, 3, 3)}, -1, 1, build_lu_solve,
     CTX(.shift = 3, .inverse = true), ref_lu_solve, .gradgrad = true},
    {"lu_solve", "inverse, rows reversed", 1, {S2(4, 4)}, -1, 1, build_lu_solve,
     CTX(.shift = 3, .reverse_rows = true, .inverse = true), ref_lu_solve, .no_grad = false},

    /* triangular_solve: each triangle, transposed or not, unit diagonal or not */
    {"triangular_solve", "lower", 2, {S2(3, 3), S2(3, 2)}, -1, 1, build_triangular,
     CTX(.shift = 3, .lower = true), ref_triangular, .gradgrad = true},
    {"triangular_solve", "upper, transposed", 2, {S2(4, 4), S2(4, 2)}, -1, 1, build_triangular,
     CTX(.shift = 3, .transpose = true), ref_triangular, .gradgrad = true},
    {"triangular_solve", "lower, unit diagonal, transposed", 2, {S2(3, 3), S2(3, 1)}, -1, 1,
     build_triangular, CTX(.lower = true, .unit = true, .transpose = true), ref_triangular,
     .no_grad = false},
    {"triangular_solve", "upper, unit diagonal", 2, {S2(3, 3), S2(3, 2)}, -1, 1,
     build_triangular, CTX(.unit = true), ref_triangular, .no_grad = false},
    {"triangular_solve", "T [2, 3, 3] broadcast with B [3, 2], lower", 2, {S3(2, 3, 3), S2(3, 2)},
     -1, 1, build_triangular, CTX(.shift = 3, .lower = true), ref_triangular, .no_grad = false},
    {"triangular_solve", "1x1 upper", 2, {S2(1, 1), S2(1, 2)}, 0.5, 2, build_triangular, CTX(0),
     ref_triangular, .no_grad = false},
    {"triangular_solve", "zero-sized batch", 2, {S3(0, 2, 2), S3(0, 2, 2)}, -1, 1,
     build_triangular, CTX(.shift = 3, .lower = true), ref_triangular, .no_grad = false},
};

/* ---- shape rules that must refuse ---- */

static void bad_lu_not_square(fg_graph *g) {
  fg_lu(g, fg_input(g, "a", FG_F64, fg_shape3(2, 3, 4)));
}
static void bad_lu_vector(fg_graph *g) { fg_lu(g, fg_input(g, "a", FG_F64, fg_shape1(3))); }
static void bad_solve_rows(fg_graph *g) {
  fg_solve(g, fg_input(g, "a", FG_F64, fg_shape2(3, 3)), fg_input(g, "b", FG_F64, fg_shape2(4, 2)));
}
static void bad_solve_batch(fg_graph *g) {
  fg_solve(g, fg_input(g, "a", FG_F64, fg_shape3(2, 3, 3)),
           fg_input(g, "b", FG_F64, fg_shape3(3, 3, 1)));
}
static void bad_solve_dtype(fg_graph *g) {
  fg_solve(g, fg_input(g, "a", FG_F64, fg_shape2(3, 3)), fg_input(g, "b", FG_F32, fg_shape2(3, 1)));
}
static void bad_lu_of_other(fg_graph *g) {
  fg_node a = fg_input(g, "a", FG_F64, fg_shape2(3, 3));
  fg_node c = fg_input(g, "c", FG_F64, fg_shape2(3, 3));
  fg_lu_solve(g, a, fg_lu(g, c), fg_input(g, "b", FG_F64, fg_shape2(3, 1)), false);
}
static void bad_slogdet_factors(fg_graph *g) { /* bypasses the builder: the shape rule checks */
  fg_node in[2] = {fg_input(g, "a", FG_F64, fg_shape2(3, 3)),
                   fg_input(g, "f", FG_F64, fg_shape2(3, 3))};
  fg_graph_add_node(g, fg_op_find("slogdet"), 2, in, NULL);
}
static void bad_det_sign_input(fg_graph *g) {
  fg_node f = fg_input(g, "f", FG_F64, fg_shape2(3, 3));
  fg_graph_add_node(g, fg_op_find("det_sign"), 1, &f, NULL);
}
static void bad_triangular_rhs(fg_graph *g) {
  fg_triangular_solve(g, fg_input(g, "t", FG_F32, fg_shape2(3, 3)),
                      fg_input(g, "b", FG_F32, fg_shape1(3)), true, false, false);
}

static const op_reject_case rejects[] = {
    {"lu", "[2, 3, 4] is not square", bad_lu_not_square, FG_E_SHAPE, "op 'lu'"},
    {"lu", "a vector", bad_lu_vector, FG_E_SHAPE, "must be a matrix"},
    {"lu_solve", "B has 4 rows for a 3x3 A", bad_solve_rows, FG_E_SHAPE, "op 'lu_solve'"},
    {"lu_solve", "batches [2] and [3]", bad_solve_batch, FG_E_SHAPE, "do not broadcast"},
    {"lu_solve", "float64 A, float32 B", bad_solve_dtype, FG_E_DTYPE, "lu_solve"},
    {"lu_solve", "LU of another matrix", bad_lu_of_other, FG_E_MISUSE, "must be fg_lu of input 0"},
    {"slogdet", "factors [3, 3] for a 3x3 A", bad_slogdet_factors, FG_E_SHAPE, "op 'slogdet'"},
    {"det_sign", "[3, 3] is not packed LU", bad_det_sign_input, FG_E_SHAPE, "op 'det_sign'"},
    {"triangular_solve", "B is a vector", bad_triangular_rhs, FG_E_SHAPE, "op 'triangular_solve'"},
};

const op_case_list op_cases_linalg = {"linalg", cases, sizeof cases / sizeof *cases, rejects,
                                      sizeof rejects / sizeof *rejects};
