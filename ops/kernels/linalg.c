/* The linear-algebra kernels (ops/linalg.c defines the ops and the packed LU layout).
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
#include <string.h>

#include "ops/kernels/kernels.h"

/* ---- shapes ---- */

static int64_t last_dim(const fg_shape *s, int from_end) { return s->d[s->ndim - from_end]; }

static int64_t batch_count(const fg_shape *s) {
  fg_shape b = fg_matrix_batch(s);
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
  fg_status fg_kernel_lu_##sfx(const fg_kargs *k) {                                          \
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
  fg_status fg_kernel_slogdet_##sfx(const fg_kargs *k) {                                     \
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
  fg_status fg_kernel_det_sign_##sfx(const fg_kargs *k) {                                    \
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
  fg_status fg_kernel_lu_solve_##sfx(const fg_kargs *k) {                                    \
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
  fg_status fg_kernel_triangular_solve_##sfx(const fg_kargs *k) {                            \
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
