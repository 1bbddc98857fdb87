/* Linear algebra: LU with partial pivoting, log|det|, the sign of det, solves with saved LU
 * factors and triangular solves.  Inverse and solve are builders over these.
 *
 * Multi-output factorisations as one-output nodes.  A node has exactly one output, so what
 * LAPACK returns together is several nodes here:
 *   lu(A)                       [..., n, n+1]  L, U and the pivots packed (layout below); NODIFF
 *   slogdet(A, LU)              [...]          log|det A|, from U's diagonal
 *   det_sign(LU)                [...]          +1, -1 or 0; NODIFF
 *   lu_solve(A, LU, B; t)       A^-1 B, or A^-T B when t is set
 *   triangular_solve(T, B; lower, unit, t)     T^-1 B or T^-T B
 * The ops that need the factors take A itself as input 0 and LU only as a non-differentiable
 * cache (nondiff_inputs bit 1): the kernels read LU and never A, while the VJPs differentiate
 * with respect to A.  Gradients therefore reach A without differentiating the factorisation
 * (whose pivoting has no useful derivative), and each VJP is written with these same ops and
 * matmul, so second derivatives come free:
 *   d log|det A| = lu_solve(A, LU, g·I; t=1) = g·A^-T    (a solve with the saved factors whose
 *                                                          solution is the gradient itself)
 *   lu_solve:  gB = lu_solve(A, LU, g; !t),  gA = -gB X^T  (or -X gB^T when t)
 * The public builders look for an existing lu node of A before adding one, so slogdet,
 * det_sign, solve and inverse of one matrix share one factorisation even with CSE off; the
 * VJPs pass the LU node they were given.  fg_lu_solve insists that its LU input is fg_lu(A),
 * because a mismatched pair would give values of one matrix and gradients of another.
 *
 * Packed layout (LAPACK's getrf with 0-based pivots): for each matrix, row i of the n+1 columns
 * holds L[i][0..i) (unit lower, diagonal implicit), U[i][i..n) and, in column n, piv[i]: at
 * step i rows i and piv[i] (>= i) were swapped, so P A = L U where P applies the swaps in
 * order.  Pivots are small exact integers, exact in float32 for any n below 2^24.
 *
 * Numerics.  The factorisation is Crout-ordered: every entry of U, and of L before its division
 * by the pivot, is one dot product accumulated in double and rounded once, so float32 factors
 * carry no accumulated float32 rounding (float32 inverses were too inaccurate for the reverse
 * pass of PyTorch Glow ports).
 * Substitutions and log|det| accumulate in double as well.  An exactly zero pivot is not an
 * error for lu: it is recorded as a zero on U's diagonal, which makes log|det| = -inf and the
 * sign 0, values evaluation code can act on.  Ops that would divide by it (lu_solve and
 * triangular_solve, hence solve, inverse and the gradient of log|det|) fail with FG_E_NUMERIC
 * and a message naming the matrix of the batch: loudly, never a silent NaN or Inf.
 *
 * Threads: each kernel splits the batch of matrices with fg_split_range and computes every
 * matrix whole, in a fixed order, so results are bit-identical for any thread count.
 * float32 and float64 kernels are stamped from one source by the DEF_* macros below. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/ir/op.h"
#include "ops/ops.h"

/* ---- shapes ---- */

static int64_t last_dim(const fg_shape *s, int from_end) { return s->d[s->ndim - from_end]; }

/* The batch part of a matrix shape: every dimension but the last two. */
static fg_shape batch_of(const fg_shape *s) {
  fg_shape b = {.ndim = s->ndim - 2};
  for (int i = 0; i < b.ndim; i++) b.d[i] = s->d[i];
  return b;
}

static int64_t batch_count(const fg_shape *s) {
  fg_shape b = batch_of(s);
  return fg_shape_count(&b);
}

/* The flat index, in the batch of `in`, of the matrix that NumPy broadcasting pairs with
 * matrix `b` of the batch of `out` (batch dims right-aligned, size-1 dims repeated). */
static int64_t broadcast_batch_index(const fg_shape *in, const fg_shape *out, int64_t b) {
  int in_nb = in->ndim - 2, out_nb = out->ndim - 2;
  int64_t index = 0, stride = 1;
  for (int i = 1; i <= out_nb; i++) {
    int64_t size = out->d[out_nb - i], coord = b % size;
    b /= size;
    if (i > in_nb) continue;
    int64_t in_size = in->d[in_nb - i];
    if (in_size != 1) index += coord * stride;
    stride *= in_size;
  }
  return index;
}

/* ---- shape rules ---- */

static fg_status reject(fg_infer_args *a, fg_status s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static fg_status reject(fg_infer_args *a, fg_status s, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(a->why, sizeof a->why, fmt, ap);
  va_end(ap);
  return s;
}

static fg_status expect_same_dtypes(fg_infer_args *a) {
  for (int i = 1; i < a->n_in; i++)
    if (a->in_dtype[i] != a->in_dtype[0])
      return reject(a, FG_E_DTYPE, "input %d is %s but input 0 is %s", i,
                    fg_dtype_name(a->in_dtype[i]), fg_dtype_name(a->in_dtype[0]));
  return FG_OK;
}

/* Input i must be a square matrix or a batch of them. */
static fg_status expect_square(fg_infer_args *a, int i) {
  const fg_shape *s = &a->in_shape[i];
  if (s->ndim < 2)
    return reject(a, FG_E_SHAPE, "input %d must be a matrix [..., n, n]; it has %d dims", i,
                  (int)s->ndim);
  if (last_dim(s, 1) != last_dim(s, 2))
    return reject(a, FG_E_SHAPE, "input %d must be square [..., n, n]; it is %lld x %lld", i,
                  (long long)last_dim(s, 2), (long long)last_dim(s, 1));
  return FG_OK;
}

/* Input i must be the packed factors [..., n, n+1] of the square input 0 (same batch). */
static fg_status expect_factors_of_input0(fg_infer_args *a, int i) {
  const fg_shape *A = &a->in_shape[0], *lu = &a->in_shape[i];
  bool ok = lu->ndim == A->ndim;
  for (int d = 0; ok && d < A->ndim - 1; d++) ok = lu->d[d] == A->d[d];
  if (!ok || last_dim(lu, 1) != last_dim(A, 1) + 1)
    return reject(a, FG_E_SHAPE, "input %d must be the LU factors of input 0, shaped "
                  "[..., n, n+1] with n = %lld and input 0's batch", i, (long long)last_dim(A, 1));
  return FG_OK;
}

/* Output [batch of a and b broadcast, n, k] for a square [..., n, n] and b [..., n, k]. */
static fg_status infer_solve_output(fg_infer_args *a, int ia, int ib) {
  const fg_shape *A = &a->in_shape[ia], *B = &a->in_shape[ib];
  if (B->ndim < 2)
    return reject(a, FG_E_SHAPE, "the right-hand side (input %d) must be a matrix [..., n, k]; "
                  "it has %d dims", ib, (int)B->ndim);
  if (last_dim(B, 2) != last_dim(A, 1))
    return reject(a, FG_E_SHAPE, "the right-hand side has %lld rows but the matrix is %lld x %lld",
                  (long long)last_dim(B, 2), (long long)last_dim(A, 1), (long long)last_dim(A, 1));
  fg_shape ba = batch_of(A), bb = batch_of(B), out;
  if (!fg_shape_broadcast(&ba, &bb, &out))
    return reject(a, FG_E_SHAPE, "the batch dims of inputs %d and %d do not broadcast", ia, ib);
  out.d[out.ndim++] = last_dim(B, 2);
  out.d[out.ndim++] = last_dim(B, 1);
  a->out_shape = out;
  return FG_OK;
}

static fg_status infer_lu(fg_infer_args *a) {
  fg_status st = expect_square(a, 0);
  if (st != FG_OK) return st;
  a->out_shape.d[a->out_shape.ndim - 1] += 1;
  return FG_OK;
}

static fg_status infer_slogdet(fg_infer_args *a) {
  fg_status st = expect_same_dtypes(a);
  if (st == FG_OK) st = expect_square(a, 0);
  if (st == FG_OK) st = expect_factors_of_input0(a, 1);
  if (st == FG_OK) a->out_shape = batch_of(&a->in_shape[0]);
  return st;
}

static fg_status infer_det_sign(fg_infer_args *a) {
  const fg_shape *lu = &a->in_shape[0];
  if (lu->ndim < 2 || last_dim(lu, 1) != last_dim(lu, 2) + 1)
    return reject(a, FG_E_SHAPE, "input must be LU factors [..., n, n+1] (the output of lu)");
  a->out_shape = batch_of(lu);
  return FG_OK;
}

static fg_status infer_lu_solve(fg_infer_args *a) {
  fg_status st = expect_same_dtypes(a);
  if (st == FG_OK) st = expect_square(a, 0);
  if (st == FG_OK) st = expect_factors_of_input0(a, 1);
  if (st == FG_OK) st = infer_solve_output(a, 0, 2);
  return st;
}

static fg_status infer_triangular_solve(fg_infer_args *a) {
  fg_status st = expect_same_dtypes(a);
  if (st == FG_OK) st = expect_square(a, 0);
  if (st == FG_OK) st = infer_solve_output(a, 0, 1);
  return st;
}

/* ---- type-generic numerics, stamped for float and double ---- */

/* Factors the n x n matrix at a (row stride ld >= n+1) in place and writes the pivots into
 * column n.  Column j: U's entries above the diagonal, then the candidates for the pivot, each
 * one dot product in double; the largest candidate (the first, on ties) becomes the pivot. */
#define DEF_LU_FACTOR(T)                                                                  \
  static void lu_factor_##T(T *a, int64_t n, int64_t ld) {                                \
    for (int64_t j = 0; j < n; j++) {                                                     \
      for (int64_t i = 0; i < n; i++) {                                                   \
        int64_t kmax = i < j ? i : j;                                                     \
        double s = a[i * ld + j];                                                         \
        for (int64_t k = 0; k < kmax; k++) s -= (double)a[i * ld + k] * a[k * ld + j];    \
        a[i * ld + j] = (T)s;                                                             \
      }                                                                                   \
      int64_t p = j;                                                                      \
      for (int64_t i = j + 1; i < n; i++)                                                 \
        if (fabs((double)a[i * ld + j]) > fabs((double)a[p * ld + j])) p = i;             \
      for (int64_t c = 0; p != j && c < n; c++) {                                         \
        T t = a[j * ld + c];                                                              \
        a[j * ld + c] = a[p * ld + c];                                                    \
        a[p * ld + c] = t;                                                                \
      }                                                                                   \
      a[j * ld + n] = (T)p;                                                               \
      double pivot = a[j * ld + j];                                                       \
      /* a zero pivot means the whole candidate column is zero: L's column stays zero */  \
      for (int64_t i = j + 1; pivot != 0 && i < n; i++)                                   \
        a[i * ld + j] = (T)(a[i * ld + j] / pivot);                                       \
    }                                                                                     \
  }

/* Solves op(M) X = X in place, M n x n triangular (row stride ld), X n x k (row stride k):
 * `lower` says which triangle of M is read, `trans` uses M^T, `unit` takes the diagonal as
 * ones without reading it.  The caller has checked that the diagonal has no zero. */
#define DEF_TRIANGULAR(T)                                                                 \
  static void triangular_##T(const T *m, int64_t ld, int64_t n, T *x, int64_t k,          \
                             bool lower, bool trans, bool unit) {                         \
    bool forward = lower != trans; /* op(M) is lower triangular */                        \
    for (int64_t c = 0; c < k; c++)                                                       \
      for (int64_t step = 0; step < n; step++) {                                          \
        int64_t i = forward ? step : n - 1 - step;                                        \
        int64_t j0 = forward ? 0 : i + 1, j1 = forward ? i : n;                           \
        double s = x[i * k + c];                                                          \
        for (int64_t j = j0; j < j1; j++)                                                 \
          s -= (double)(trans ? m[j * ld + i] : m[i * ld + j]) * x[j * k + c];            \
        if (!unit) s /= m[i * ld + i];                                                    \
        x[i * k + c] = (T)s;                                                              \
      }                                                                                   \
  }

/* Row swaps of the pivots in column n of lu applied to X (n x k): in order for P X, in
 * reverse order for P^T X. */
#define DEF_PIVOTS(T)                                                                     \
  static void apply_pivots_##T(const T *lu, int64_t ld, int64_t n, T *x, int64_t k,       \
                               bool reverse) {                                            \
    for (int64_t s = 0; s < n; s++) {                                                     \
      int64_t i = reverse ? n - 1 - s : s, p = (int64_t)lu[i * ld + n];                   \
      for (int64_t c = 0; p != i && c < k; c++) {                                         \
        T t = x[i * k + c];                                                               \
        x[i * k + c] = x[p * k + c];                                                      \
        x[p * k + c] = t;                                                                 \
      }                                                                                   \
    }                                                                                     \
  }                                                                                       \
  /* Pivots are trusted only as lu writes them: each piv[i] an integer in [i, n). */       \
  static bool pivots_valid_##T(const T *lu, int64_t ld, int64_t n) {                      \
    for (int64_t i = 0; i < n; i++) {                                                     \
      double p = lu[i * ld + n];                                                          \
      if (!(p >= (double)i && p < (double)n) || p != floor(p)) return false;              \
    }                                                                                     \
    return true;                                                                          \
  }                                                                                       \
  /* The first diagonal entry that is zero or not finite, or -1 when there is none. */    \
  static int64_t bad_diagonal_##T(const T *m, int64_t ld, int64_t n) {                    \
    for (int64_t i = 0; i < n; i++)                                                       \
      if (m[i * ld + i] == 0 || !isfinite(m[i * ld + i])) return i;                       \
    return -1;                                                                            \
  }

DEF_LU_FACTOR(float)
DEF_LU_FACTOR(double)
DEF_TRIANGULAR(float)
DEF_TRIANGULAR(double)
DEF_PIVOTS(float)
DEF_PIVOTS(double)

/* ---- kernel errors ---- */

/* `why` ends the message for an exact zero: a hint at which uses need an invertible matrix. */
static fg_status singular_error(const fg_kargs *k, const char *op, int64_t matrix, int64_t row,
                                double diag, const char *role, const char *why) {
  if (diag == 0)
    return fg_err_set(k->err, FG_E_NUMERIC,
                      "%s: matrix %lld of the batch is exactly singular (%s diagonal entry %lld "
                      "is zero)%s", op, (long long)matrix, role, (long long)row, why);
  return fg_err_set(k->err, FG_E_NUMERIC,
                    "%s: matrix %lld of the batch has a non-finite %s diagonal entry %lld (%g); "
                    "its input holds NaN or Inf", op, (long long)matrix, role, (long long)row,
                    diag);
}

static fg_status corrupt_pivots(const fg_kargs *k, int64_t matrix) {
  return fg_err_set(k->err, FG_E_MISUSE,
                    "lu_solve: matrix %lld: the pivot column of input 1 is not valid; input 1 "
                    "must be the output of lu", (long long)matrix);
}

/* ---- kernels ---- */

#define LU_HINT "; solve, inverse and the gradient of log|det| need an invertible matrix"

#define DEF_KERNELS(T, sfx)                                                               \
  static fg_status lu_##sfx(const fg_kargs *k) {                                          \
    int64_t n = last_dim(&k->in_shape[0], 1), b0, b1;                                     \
    fg_split_range(batch_count(&k->in_shape[0]), k->ith, k->nth, &b0, &b1);               \
    const T *a = k->in[0];                                                                \
    T *out = k->out;                                                                      \
    for (int64_t b = b0; b < b1; b++) {                                                   \
      T *f = out + b * n * (n + 1);                                                       \
      for (int64_t i = 0; i < n; i++)                                                     \
        memcpy(f + i * (n + 1), a + (b * n + i) * n, sizeof(T) * (size_t)n);              \
      lu_factor_##T(f, n, n + 1);                                                         \
    }                                                                                     \
    return FG_OK;                                                                         \
  }                                                                                       \
                                                                                          \
  /* log|det| = sum of log|U_ii|, in double: no overflow for any representable input. */ \
  static fg_status slogdet_##sfx(const fg_kargs *k) {                                     \
    int64_t n = last_dim(&k->in_shape[0], 1), b0, b1;                                     \
    fg_split_range(batch_count(&k->in_shape[0]), k->ith, k->nth, &b0, &b1);               \
    const T *lu = k->in[1];                                                               \
    T *out = k->out;                                                                      \
    for (int64_t b = b0; b < b1; b++) {                                                   \
      const T *f = lu + b * n * (n + 1);                                                  \
      double s = 0;                                                                       \
      for (int64_t i = 0; i < n; i++) {                                                   \
        double u = fabs((double)f[i * (n + 1) + i]);                                      \
        s = u == 0 ? -INFINITY : s + log(u);                                              \
        if (u == 0) break;                                                                \
      }                                                                                   \
      out[b] = (T)s;                                                                      \
    }                                                                                     \
    return FG_OK;                                                                         \
  }                                                                                       \
                                                                                          \
  /* sign(det A) = sign(det P) * prod sign(U_ii): each pivot that swapped a row flips it. */ \
  static fg_status det_sign_##sfx(const fg_kargs *k) {                                    \
    int64_t n = last_dim(&k->in_shape[0], 2), b0, b1;                                     \
    fg_split_range(batch_count(&k->in_shape[0]), k->ith, k->nth, &b0, &b1);               \
    const T *lu = k->in[0];                                                               \
    T *out = k->out;                                                                      \
    for (int64_t b = b0; b < b1; b++) {                                                   \
      const T *f = lu + b * n * (n + 1);                                                  \
      double sign = 1;                                                                    \
      for (int64_t i = 0; i < n; i++) {                                                   \
        double u = f[i * (n + 1) + i];                                                    \
        if (u == 0 || u != u) { /* singular: 0; NaN in: NaN out */                        \
          sign = u;                                                                       \
          break;                                                                          \
        }                                                                                 \
        if ((u < 0) != (f[i * (n + 1) + n] != (double)i)) sign = -sign;                   \
      }                                                                                   \
      out[b] = (T)(sign == 0 ? 0 : sign); /* no -0 */                                     \
    }                                                                                     \
    return FG_OK;                                                                         \
  }                                                                                       \
                                                                                          \
  static fg_status lu_solve_##sfx(const fg_kargs *k) {                                    \
    const fg_lu_solve_attr *at = k->attr;                                                 \
    const fg_shape *as = &k->in_shape[0], *bs = &k->in_shape[2];                          \
    int64_t n = last_dim(as, 1), nk = last_dim(bs, 1), b0, b1;                            \
    fg_split_range(batch_count(&k->out_shape), k->ith, k->nth, &b0, &b1);                 \
    const T *lu = k->in[1], *rhs = k->in[2];                                              \
    T *out = k->out;                                                                      \
    for (int64_t b = b0; b < b1; b++) {                                                   \
      int64_t ia = broadcast_batch_index(as, &k->out_shape, b);                           \
      const T *f = lu + ia * n * (n + 1);                                                 \
      if (!pivots_valid_##T(f, n + 1, n)) return corrupt_pivots(k, ia);                   \
      int64_t bad = bad_diagonal_##T(f, n + 1, n);                                        \
      if (bad >= 0)                                                                       \
        return singular_error(k, "lu_solve", ia, bad, f[bad * (n + 2)], "U's", LU_HINT);           \
      T *x = out + b * n * nk;                                                            \
      memcpy(x, rhs + broadcast_batch_index(bs, &k->out_shape, b) * n * nk,               \
             sizeof(T) * (size_t)(n * nk));                                               \
      if (!at->transpose) { /* L U x = P b */                                             \
        apply_pivots_##T(f, n + 1, n, x, nk, false);                                      \
        triangular_##T(f, n + 1, n, x, nk, true, false, true);                            \
        triangular_##T(f, n + 1, n, x, nk, false, false, false);                          \
      } else { /* U^T L^T (P x) = b */                                                    \
        triangular_##T(f, n + 1, n, x, nk, false, true, false);                           \
        triangular_##T(f, n + 1, n, x, nk, true, true, true);                             \
        apply_pivots_##T(f, n + 1, n, x, nk, true);                                       \
      }                                                                                   \
    }                                                                                     \
    return FG_OK;                                                                         \
  }                                                                                       \
                                                                                          \
  static fg_status triangular_solve_##sfx(const fg_kargs *k) {                            \
    const fg_triangular_solve_attr *at = k->attr;                                         \
    const fg_shape *ts = &k->in_shape[0], *bs = &k->in_shape[1];                          \
    int64_t n = last_dim(ts, 1), nk = last_dim(bs, 1), b0, b1;                            \
    fg_split_range(batch_count(&k->out_shape), k->ith, k->nth, &b0, &b1);                 \
    const T *tri = k->in[0], *rhs = k->in[1];                                             \
    T *out = k->out;                                                                      \
    for (int64_t b = b0; b < b1; b++) {                                                   \
      int64_t it = broadcast_batch_index(ts, &k->out_shape, b);                           \
      const T *m = tri + it * n * n;                                                      \
      int64_t bad = at->unit_diagonal ? -1 : bad_diagonal_##T(m, n, n);                   \
      if (bad >= 0)                                                                       \
        return singular_error(k, "triangular_solve", it, bad, m[bad * (n + 1)], "its", "");   \
      T *x = out + b * n * nk;                                                            \
      memcpy(x, rhs + broadcast_batch_index(bs, &k->out_shape, b) * n * nk,               \
             sizeof(T) * (size_t)(n * nk));                                               \
      triangular_##T(m, n, n, x, nk, at->lower, at->transpose, at->unit_diagonal);        \
    }                                                                                     \
    return FG_OK;                                                                         \
  }

DEF_KERNELS(float, f32)
DEF_KERNELS(double, f64)

/* ---- constants for the VJPs and builders ---- */

/* An n x n constant: `diag` on the diagonal, `below` under it, `above` over it. */
static fg_node banded_constant(fg_graph *g, int64_t n, fg_dtype t, double below, double diag,
                               double above) {
  fg_tensor *m;
  fg_err e;
  fg_shape s = fg_shape2(n, n);
  if (fg_tensor_new(&m, t, &s, &e) != FG_OK)
    return fg_graph_fail(g, e.status, "linalg: %s", e.msg);
  for (int64_t i = 0; i < n; i++)
    for (int64_t j = 0; j < n; j++)
      fg_tensor_set(m, i * n + j, i > j ? below : i == j ? diag : above);
  fg_node c = fg_constant(g, m);
  fg_tensor_free(m);
  return c;
}

static fg_node identity(fg_graph *g, int64_t n, fg_dtype t) {
  return banded_constant(g, n, t, 0, 1, 0);
}

/* ---- VJPs ---- */

/* d log|det A| / dA = A^-T: the solution of A^T X = g·I with the saved factors. */
static fg_status slogdet_vjp(fg_graph *g, fg_node node, fg_node gout, uint32_t need,
                             fg_node *gin) {
  (void)need; /* only input 0 is differentiable */
  fg_node a = fg_node_input(g, node, 0), lu = fg_node_input(g, node, 1);
  fg_shape s = fg_node_shape(g, a);
  int64_t n = last_dim(&s, 1);
  s.d[s.ndim - 1] = s.d[s.ndim - 2] = 1;
  fg_node rhs = fg_mul(g, fg_reshape(g, gout, s), identity(g, n, fg_node_dtype(g, a)));
  gin[0] = fg_lu_solve(g, a, lu, rhs, true);
  return fg_graph_status(g);
}

/* X = A^-1 B: gB = A^-T g, gA = -gB X^T.  X = A^-T B: gB = A^-1 g, gA = -X gB^T.
 * gA has the output's batch; autodiff sums it down to A's when the batch was broadcast. */
static fg_status lu_solve_vjp(fg_graph *g, fg_node node, fg_node gout, uint32_t need,
                              fg_node *gin) {
  fg_node a = fg_node_input(g, node, 0), lu = fg_node_input(g, node, 1);
  bool t = ((const fg_lu_solve_attr *)fg_node_attr(g, node))->transpose;
  fg_node gb = fg_lu_solve(g, a, lu, gout, !t);
  if (need & (1u << 2)) gin[2] = gb;
  if (need & 1u)
    gin[0] = fg_neg(g, t ? fg_matmul_t(g, node, gb, false, true)
                         : fg_matmul_t(g, gb, node, false, true));
  return fg_graph_status(g);
}

/* As lu_solve's, with gT kept to the triangle the kernel reads (a constant mask of -1 there
 * folds the negation in); a unit diagonal is not read, so it gets no gradient either. */
static fg_status triangular_solve_vjp(fg_graph *g, fg_node node, fg_node gout, uint32_t need,
                                      fg_node *gin) {
  fg_node tri = fg_node_input(g, node, 0);
  const fg_triangular_solve_attr *at = fg_node_attr(g, node);
  fg_node gb = fg_triangular_solve(g, tri, gout, at->lower, at->unit_diagonal, !at->transpose);
  if (need & 2u) gin[1] = gb;
  if (need & 1u) {
    fg_shape s = fg_node_shape(g, tri);
    double diag = at->unit_diagonal ? 0 : -1;
    fg_node mask = banded_constant(g, last_dim(&s, 1), fg_node_dtype(g, tri),
                                   at->lower ? -1 : 0, diag, at->lower ? 0 : -1);
    fg_node outer = at->transpose ? fg_matmul_t(g, node, gb, false, true)
                                  : fg_matmul_t(g, gb, node, false, true);
    gin[0] = fg_mul(g, outer, mask);
  }
  return fg_graph_status(g);
}

/* ---- descriptors ---- */

const fg_op_def fg_opdef_lu = {
    .name = "lu", .n_in = 1, .flags = FG_OPF_NODIFF, .infer = infer_lu,
    .kernel_f32 = lu_f32, .kernel_f64 = lu_f64};

const fg_op_def fg_opdef_slogdet = {
    .name = "slogdet", .n_in = 2, .nondiff_inputs = 1u << 1, .infer = infer_slogdet,
    .kernel_f32 = slogdet_f32, .kernel_f64 = slogdet_f64, .vjp = slogdet_vjp};

const fg_op_def fg_opdef_det_sign = {
    .name = "det_sign", .n_in = 1, .flags = FG_OPF_NODIFF, .infer = infer_det_sign,
    .kernel_f32 = det_sign_f32, .kernel_f64 = det_sign_f64};

const fg_op_def fg_opdef_lu_solve = {
    .name = "lu_solve", .n_in = 3, .nondiff_inputs = 1u << 1,
    .attr_size = sizeof(fg_lu_solve_attr), .infer = infer_lu_solve,
    .kernel_f32 = lu_solve_f32, .kernel_f64 = lu_solve_f64, .vjp = lu_solve_vjp};

const fg_op_def fg_opdef_triangular_solve = {
    .name = "triangular_solve", .n_in = 2, .attr_size = sizeof(fg_triangular_solve_attr),
    .infer = infer_triangular_solve, .kernel_f32 = triangular_solve_f32,
    .kernel_f64 = triangular_solve_f64, .vjp = triangular_solve_vjp};

/* ---- builders ---- */

static bool usable(fg_graph *g, fg_node x) {
  return fg_graph_status(g) == FG_OK && fg_node_valid(g, x);
}

/* An lu node of a already in the graph (it can only come after a), or FG_NONE. */
static fg_node existing_lu(const fg_graph *g, fg_node a) {
  for (fg_node i = a + 1; i < fg_graph_node_count(g); i++) {
    const fg_node_rec *r = fg_graph_node(g, i);
    if (r->op == FG_OP_LU && fg_node_input(g, i, 0) == a) return i;
  }
  return FG_NONE;
}

fg_node fg_lu(fg_graph *g, fg_node a) {
  if (usable(g, a)) {
    fg_node found = existing_lu(g, a);
    if (found != FG_NONE) return found;
  }
  return fg_graph_add_node(g, FG_OP_LU, 1, &a, NULL);
}

fg_node fg_lu_solve(fg_graph *g, fg_node a, fg_node lu, fg_node b, bool transpose) {
  if (usable(g, a) && usable(g, lu) &&
      (fg_node_op(g, lu) != FG_OP_LU || fg_node_input(g, lu, 0) != a))
    return fg_graph_fail(g, FG_E_MISUSE, "op 'lu_solve': input 1 (node %d) must be fg_lu of "
                         "input 0 (node %d)", lu, a);
  fg_lu_solve_attr attr;
  memset(&attr, 0, sizeof attr);
  attr.transpose = transpose;
  fg_node in[3] = {a, lu, b};
  return fg_graph_add_node(g, FG_OP_LU_SOLVE, 3, in, &attr);
}

fg_node fg_slogdet(fg_graph *g, fg_node a) {
  fg_node in[2] = {a, fg_lu(g, a)};
  return fg_graph_add_node(g, FG_OP_SLOGDET, 2, in, NULL);
}

fg_node fg_det_sign(fg_graph *g, fg_node a) {
  fg_node lu = fg_lu(g, a);
  return fg_graph_add_node(g, FG_OP_DET_SIGN, 1, &lu, NULL);
}

fg_node fg_solve(fg_graph *g, fg_node a, fg_node b) {
  return fg_lu_solve(g, a, fg_lu(g, a), b, false);
}

/* A^-1 as the solution of A X = I: the identity broadcasts over A's batch. */
fg_node fg_inverse(fg_graph *g, fg_node a) {
  fg_node lu = fg_lu(g, a);
  if (lu < 0) return lu;
  fg_shape s = fg_node_shape(g, a);
  return fg_lu_solve(g, a, lu, identity(g, last_dim(&s, 1), fg_node_dtype(g, a)), false);
}

fg_node fg_triangular_solve(fg_graph *g, fg_node t, fg_node b, bool lower, bool unit_diagonal,
                            bool transpose) {
  fg_triangular_solve_attr attr;
  memset(&attr, 0, sizeof attr);
  attr.lower = lower;
  attr.unit_diagonal = unit_diagonal;
  attr.transpose = transpose;
  fg_node in[2] = {t, b};
  return fg_graph_add_node(g, FG_OP_TRIANGULAR_SOLVE, 2, in, &attr);
}
