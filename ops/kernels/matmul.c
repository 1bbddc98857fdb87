/* The matmul kernel (ops/matmul.c defines the op): batched, with NumPy-broadcast batch dims and
 * either operand read transposed, over the shared GEMM (ops/kernels/gemm.c), or a row loop
 * where the inner dimension is at most SHORT_K (matmul_short_k).
 *
 * The executor fixes nth from the output size alone (up to 64 parts, whatever the thread
 * count, so results are bit-identical for any number of threads), which is finer than a GEMM
 * likes: each part's GEMM packs its slices of both operands.  So the output (batch*m rows
 * flattened, times n columns) is tiled into at most nth tiles of at least MATMUL_MIN_TILE
 * square, leaving the other parts empty; each part makes one GEMM per batch matrix its tile
 * touches.  The conv drivers partition their own way, by the same rule. */
#include "ops/kernels/gemm.h"
#include "ops/kernels/kernels.h"
#include "ops/kernels/simd.h"

/* Offset, in matrices, of output batch item `bi` inside an operand read with broadcast
 * strides `str` (in matrices) over the output batch shape `ob`. */
static int64_t batch_offset(int64_t bi, const fg_shape *ob, const int64_t *str) {
  int64_t off = 0;
  for (int i = ob->ndim - 1; i >= 0; i--) {
    off += (bi % ob->d[i]) * str[i];
    bi /= ob->d[i];
  }
  return off;
}

/* Output tiles of at least MATMUL_MIN_TILE x MATMUL_MIN_TILE: every tile's GEMM packs its
 * slices of op(A) and op(B), and this keeps that copying under 1/64 of the arithmetic. */
enum {
  MATMUL_MIN_TILE = 64,
  SHORT_K = 16,                /* inner dimensions this short skip the GEMM (matmul_short_k) */
  SHORT_K_MIN_PART = 1 << 14,  /* output elements of a part there */
};

/* ---- a short inner dimension ----
 * Glow's invertible 1x1 convs are [4, 4] @ [64, 4, 196]: a GEMM per batch matrix packs both
 * operands for 4 multiply-adds per output element, 32-38 us a call in the log-prob program
 * where the whole product is 0.4 MFLOP (18 us with the loop below; "Intel(R) Xeon(R)
 * Processor", 2 cores, FG_PROFILE).  Each output row is instead sum_p a[i][p] b[p][:], its
 * terms in p order, vectorised along the row (any split of the rows gives the same bits). */
#define DEFINE_ROW_SHORT_K(T, SUF)                                                            \
  FG_SIMD_CLONES static void row_short_k_##SUF(const T *a, int64_t a_step, const T *b,         \
                                               int64_t ldb, int64_t kk, int64_t n, T *o) {     \
    for (int64_t j = 0; j < n; j++) o[j] = a[0] * b[j];                                       \
    for (int64_t p = 1; p < kk; p++) {                                                        \
      T ap = a[p * a_step];                                                                   \
      const T *restrict bp = b + p * ldb;                                                     \
      for (int64_t j = 0; j < n; j++) o[j] += ap * bp[j];                                     \
    }                                                                                         \
  }
DEFINE_ROW_SHORT_K(float, f32)
DEFINE_ROW_SHORT_K(double, f64)

/* Rows of all batches flattened, split into parts of at least SHORT_K_MIN_PART outputs. */
static void matmul_short_k(const fg_kargs *k, fg_dtype t, const fg_shape *ob,
                           const int64_t *astr, const int64_t *bstr, int64_t m, int64_t n,
                           int64_t kk) {
  const fg_matmul_attr *at = k->attr;
  int64_t rows_all = fg_shape_count(ob) * m, r0, r1;
  int parts = fg_parts_for(rows_all, (SHORT_K_MIN_PART + n - 1) / n, k->nth);
  if (k->ith >= parts) return;
  fg_split_range(rows_all, k->ith, parts, &r0, &r1);
  for (int64_t r = r0; r < r1; r++) {
    int64_t bi = r / m, i = r % m;
    int64_t aoff = batch_offset(bi, ob, astr) * m * kk + (at->trans_a ? i : i * kk);
    int64_t boff = batch_offset(bi, ob, bstr) * kk * n, step = at->trans_a ? m : 1;
    if (t == FG_F32)
      row_short_k_f32((const float *)k->in[0] + aoff, step, (const float *)k->in[1] + boff, n,
                      kk, n, (float *)k->out + r * n);
    else
      row_short_k_f64((const double *)k->in[0] + aoff, step, (const double *)k->in[1] + boff,
                      n, kk, n, (double *)k->out + r * n);
  }
}

static fg_status matmul_run(const fg_kargs *k, fg_dtype t) {
  const fg_matmul_attr *at = k->attr;
  const fg_shape *sa = &k->in_shape[0], *sb = &k->in_shape[1];
  fg_shape ba = fg_matrix_batch(sa), bb = fg_matrix_batch(sb);
  fg_shape ob = fg_matrix_batch(&k->out_shape);
  int64_t astr[FG_MAX_DIMS], bstr[FG_MAX_DIMS];
  fg_shape_broadcast_strides(&ba, &ob, astr);
  fg_shape_broadcast_strides(&bb, &ob, bstr);
  int64_t m = k->out_shape.d[k->out_shape.ndim - 2], n = k->out_shape.d[k->out_shape.ndim - 1];
  int64_t kk = sa->d[sa->ndim - (at->trans_a ? 2 : 1)], rows_all = fg_shape_count(&ob) * m;
  size_t es = fg_dtype_size(t);
  if (kk >= 1 && kk <= SHORT_K && !at->trans_b && n > 0) {
    matmul_short_k(k, t, &ob, astr, bstr, m, n, kk);
    return FG_OK;
  }
  int pr, pc;
  fg_tile_grid(rows_all, n, MATMUL_MIN_TILE, MATMUL_MIN_TILE, k->nth, &pr, &pc);
  if (k->ith >= pr * pc) return FG_OK;
  int64_t r0, r1, c0, c1; /* rows of all batches flattened, so a tile may span matrices */
  fg_split_range(rows_all, k->ith / pc, pr, &r0, &r1);
  fg_split_range(n, k->ith % pc, pc, &c0, &c1);
  for (int64_t r = r0; r < r1;) {
    int64_t bi = r / m, i0 = r % m, rows = m - i0 < r1 - r ? m - i0 : r1 - r;
    fg_gemm_dims d = {.ta = at->trans_a, .tb = at->trans_b, .accumulate = false,
                      .m = rows, .n = c1 - c0, .k = kk,
                      .lda = at->trans_a ? m : kk, .ldb = at->trans_b ? kk : n, .ldc = n};
    int64_t aoff = batch_offset(bi, &ob, astr) * m * kk + (at->trans_a ? i0 : i0 * kk);
    int64_t boff = batch_offset(bi, &ob, bstr) * kk * n + (at->trans_b ? c0 * kk : c0);
    fg_status st = fg_gemm(t, &d, (const char *)k->in[0] + es * (size_t)aoff,
                           (const char *)k->in[1] + es * (size_t)boff,
                           (char *)k->out + es * (size_t)((bi * m + i0) * n + c0), pr * pc);
    if (st != FG_OK) return fg_err_set(k->err, st, "matmul: no memory for the GEMM's buffer");
    r += rows;
  }
  return FG_OK;
}

fg_status fg_kernel_matmul_f32(const fg_kargs *k) { return matmul_run(k, FG_F32); }
fg_status fg_kernel_matmul_f64(const fg_kargs *k) { return matmul_run(k, FG_F64); }
