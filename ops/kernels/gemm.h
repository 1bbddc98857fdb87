/* Internal to ops/ (and its tests): the one GEMM that matmul and conv kernels call, with the
 * BLAS / portable-kernel choice and the BLAS thread policy behind it (ops/kernels/gemm.c). */
#ifndef FG_OPS_GEMM_H
#define FG_OPS_GEMM_H

#include <stdbool.h>
#include <stdint.h>

#include "core/shape.h"
#include "core/status.h"

/* C (m x n, row stride ldc) = op(A) op(B), or += with `accumulate`; op(X) = X^T when trans.
 * Row-major: A is stored m x k (lda >= k), or k x m (lda >= m) when ta; B likewise k x n or
 * n x k.  k == 0 gives zeros (or leaves C alone when accumulating). */
typedef struct fg_gemm_dims {
  bool ta, tb, accumulate;
  int64_t m, n, k;
  int64_t lda, ldb, ldc;
} fg_gemm_dims;

/* Uses oneDNN's sgemm (float32) or CBLAS when the library was built with them and FG_NO_BLAS
 * is unset (or "0") in the environment, read once; the portable kernel otherwise.  `nth` is
 * the number of parts of the calling kernel that have work: it sets the BLAS thread policy
 * (ops/kernels/gemm.c).  a, b, c are float or double as t says.  Fails only with FG_E_NOMEM
 * (the portable kernel's packing buffer). */
fg_status fg_gemm(fg_dtype t, const fg_gemm_dims *d, const void *a, const void *b, void *c,
                  int nth);
/* The portable cache-blocked kernel alone (the fallback; exposed so tests compare it). */
fg_status fg_gemm_plain(fg_dtype t, const fg_gemm_dims *d, const void *a, const void *b,
                        void *c);
/* True when fg_gemm goes to CBLAS (for float64, and float32 without oneDNN). */
bool fg_gemm_uses_blas(void);
/* True when fg_gemm goes to oneDNN for float32. */
bool fg_gemm_uses_onednn(void);

/* Kernels get nth parts from the executor (up to 64, fixed by the output size, not by the
 * thread count, so that results never depend on threads).  GEMM-based kernels use only as many
 * of them as keep each part's GEMM efficient, and leave the rest empty; the partition still
 * depends only on nth and the shapes.
 * How many parts for `items` work items when each part should get at least min_items. */
static inline int fg_parts_for(int64_t items, int64_t min_items, int nth) {
  int64_t p = min_items > 0 ? items / min_items : items;
  return p < 1 ? 1 : p < nth ? (int)p : nth;
}
/* A grid of *pr x *pc <= nth tiles over an m x n output, each at least min_m x min_n (or the
 * whole extent): rows are split first, since a row split shares op(B) and copies nothing. */
static inline void fg_tile_grid(int64_t m, int64_t n, int64_t min_m, int64_t min_n, int nth,
                                int *pr, int *pc) {
  *pr = fg_parts_for(m, min_m, nth);
  *pc = fg_parts_for(n, min_n, nth / *pr);
}

#endif
