/* Internal to ops/ (and tests/tools): the one GEMM that matmul and conv kernels call, with the
 * BLAS / portable-kernel choice and the BLAS thread policy behind it (see ops/matmul.c). */
#ifndef FG_MATMUL_KERNELS_H
#define FG_MATMUL_KERNELS_H

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

/* Uses CBLAS when the library was built with it and FG_NO_BLAS is unset (or "0") in the
 * environment, read once; the portable kernel otherwise.  `nth` is the number of parts the
 * engine split the calling kernel into: it sets the BLAS thread policy.  a, b, c are float or
 * double as t says.  Fails only with FG_E_NOMEM (the portable kernel's packing buffer). */
fg_status fg_gemm(fg_dtype t, const fg_gemm_dims *d, const void *a, const void *b, void *c,
                  int nth);
/* The portable cache-blocked kernel alone (the fallback; exposed so tests compare it). */
fg_status fg_gemm_plain(fg_dtype t, const fg_gemm_dims *d, const void *a, const void *b,
                        void *c);
/* True when fg_gemm goes to CBLAS. */
bool fg_gemm_uses_blas(void);

#endif
