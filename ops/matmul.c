/* matmul: a [..., m, k] @ b [..., k, n] with NumPy-broadcast batch dims and transposes as
 * attributes, and the GEMM that matmul and conv kernels share (ops/kernels/gemm.h).
 *
 * BLAS.  When meson finds OpenBLAS (option `blas`, on by default when present) the GEMM calls
 * cblas_sgemm / cblas_dgemm; otherwise, or when FG_NO_BLAS=1 is in the environment (read once,
 * so tests and benchmarks can compare), it runs the portable cache-blocked kernel below, which
 * is written once and stamped for float and double.
 *
 * Threads.  The engine owns parallelism: a kernel gets (ith, nth) and computes only its share.
 * The executor fixes nth from the output size alone (up to 64 parts, whatever the thread
 * count, so results are bit-identical for any number of threads), which is finer than a GEMM
 * likes: each part's GEMM packs its slices of both operands.  So matmul tiles its output
 * (batch*m rows flattened, times n columns) into at most nth tiles of at least 64 x 64 and
 * leaves the other parts empty; each part makes one BLAS call per batch matrix its tile
 * touches.  conv partitions its own way (ops/conv.c), by the same rule.
 * OpenBLAS keeps its own pool, and letting both pools run would put (engine threads) x (BLAS
 * threads) runnable threads on the cores, which collapses throughput on small or shared
 * machines.  The policy, applied before every BLAS call, on the kernel's *effective* part
 * count (the parts that have work):
 *   - more than one: OpenBLAS runs 1 thread per call, so the engine's threads are the only
 *     ones computing;
 *   - one (a small GEMM, or a single-threaded program): OpenBLAS gets back the thread count it
 *     had when flowgrad first called it (OPENBLAS_NUM_THREADS or the core count); the executor
 *     runs one node at a time, so the pool's other threads are idle and a lone GEMM may use
 *     the cores.  (OpenBLAS itself stays single-threaded below its size threshold.)
 * openblas_set_num_threads is process-wide, so the current setting is tracked in an atomic and
 * changed only on a transition, under a mutex so that the recorded and the real setting never
 * disagree.  An executor that ran several single-part GEMM kernels at once would oversubscribe;
 * if one ever does, it should tell kernels (a field in fg_kargs) and this policy should read it. */
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/ir/op.h"
#include "ops/kernels/gemm.h"
#include "ops/ops.h"

#ifdef FG_HAVE_CBLAS
#include <cblas.h>
#endif

/* ---- the portable kernel ----
 * C is computed in column panels of GEMM_NC and depth slices of GEMM_KC: op(B)'s slice is
 * packed contiguous (which also absorbs tb), then four rows of C at a time stream across it,
 * so each packed B element loaded serves four multiply-adds and the inner loop vectorises. */
enum { GEMM_KC = 128, GEMM_NC = 256 };

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

#define FG_GEMM_PLAIN_DEFINE(T, SUF)                                                          \
  static T a_at_##SUF(const fg_gemm_dims *d, const T *a, int64_t i, int64_t p) {              \
    return d->ta ? a[p * d->lda + i] : a[i * d->lda + p];                                     \
  }                                                                                           \
                                                                                              \
  /* bp[p][j] = op(B)[p0 + p][j0 + j] for a kc x nc slice. */                                 \
  static void pack_b_##SUF(const fg_gemm_dims *d, const T *b, int64_t p0, int64_t kc,         \
                           int64_t j0, int64_t nc, T *bp) {                                   \
    for (int64_t p = 0; p < kc; p++)                                                          \
      for (int64_t j = 0; j < nc; j++)                                                        \
        bp[p * nc + j] = d->tb ? b[(j0 + j) * d->ldb + p0 + p] : b[(p0 + p) * d->ldb + j0 + j]; \
  }                                                                                           \
                                                                                              \
  static void rows4_##SUF(const fg_gemm_dims *d, const T *a, int64_t i, int64_t p0,           \
                          int64_t kc, const T *bp, int64_t nc, T *c) {                        \
    T *restrict c0 = c, *restrict c1 = c + d->ldc, *restrict c2 = c + 2 * d->ldc;             \
    T *restrict c3 = c + 3 * d->ldc;                                                          \
    for (int64_t p = 0; p < kc; p++) {                                                        \
      T a0 = a_at_##SUF(d, a, i, p0 + p), a1 = a_at_##SUF(d, a, i + 1, p0 + p);               \
      T a2 = a_at_##SUF(d, a, i + 2, p0 + p), a3 = a_at_##SUF(d, a, i + 3, p0 + p);           \
      const T *restrict br = bp + p * nc;                                                     \
      for (int64_t j = 0; j < nc; j++) {                                                      \
        c0[j] += a0 * br[j];                                                                  \
        c1[j] += a1 * br[j];                                                                  \
        c2[j] += a2 * br[j];                                                                  \
        c3[j] += a3 * br[j];                                                                  \
      }                                                                                       \
    }                                                                                         \
  }                                                                                           \
                                                                                              \
  static void row1_##SUF(const fg_gemm_dims *d, const T *a, int64_t i, int64_t p0,            \
                         int64_t kc, const T *bp, int64_t nc, T *restrict c) {                \
    for (int64_t p = 0; p < kc; p++) {                                                        \
      T ai = a_at_##SUF(d, a, i, p0 + p);                                                     \
      const T *restrict br = bp + p * nc;                                                     \
      for (int64_t j = 0; j < nc; j++) c[j] += ai * br[j];                                    \
    }                                                                                         \
  }                                                                                           \
                                                                                              \
  static fg_status gemm_plain_##SUF(const fg_gemm_dims *d, const T *a, const T *b, T *c) {    \
    if (!d->accumulate)                                                                       \
      for (int64_t i = 0; i < d->m; i++)                                                      \
        for (int64_t j = 0; j < d->n; j++) c[i * d->ldc + j] = 0;                             \
    if (d->m == 0 || d->n == 0 || d->k == 0) return FG_OK;                                    \
    T *bp = malloc(sizeof(T) * (size_t)(min64(d->k, GEMM_KC) * min64(d->n, GEMM_NC)));        \
    if (!bp) return FG_E_NOMEM;                                                               \
    for (int64_t j0 = 0; j0 < d->n; j0 += GEMM_NC) {                                          \
      int64_t nc = min64(GEMM_NC, d->n - j0);                                                 \
      for (int64_t p0 = 0; p0 < d->k; p0 += GEMM_KC) {                                        \
        int64_t kc = min64(GEMM_KC, d->k - p0), i = 0;                                        \
        pack_b_##SUF(d, b, p0, kc, j0, nc, bp);                                               \
        for (; i + 4 <= d->m; i += 4) rows4_##SUF(d, a, i, p0, kc, bp, nc, c + i * d->ldc + j0); \
        for (; i < d->m; i++) row1_##SUF(d, a, i, p0, kc, bp, nc, c + i * d->ldc + j0);       \
      }                                                                                       \
    }                                                                                         \
    free(bp);                                                                                 \
    return FG_OK;                                                                             \
  }

FG_GEMM_PLAIN_DEFINE(float, f32)
FG_GEMM_PLAIN_DEFINE(double, f64)

fg_status fg_gemm_plain(fg_dtype t, const fg_gemm_dims *d, const void *a, const void *b,
                        void *c) {
  return t == FG_F32 ? gemm_plain_f32(d, a, b, c) : gemm_plain_f64(d, a, b, c);
}

/* ---- CBLAS and its thread policy (see the top of the file) ---- */
#ifdef FG_HAVE_CBLAS
static atomic_int blas_enabled = -1;  /* -1: FG_NO_BLAS not read yet */
static atomic_int blas_default_threads; /* 0: not recorded yet */
static atomic_int blas_threads_now;     /* what we last set; 0: untouched (the default) */
static pthread_mutex_t blas_threads_lock = PTHREAD_MUTEX_INITIALIZER;

static int blas_default(void) {
  int def = atomic_load(&blas_default_threads);
  if (def > 0) return def;
  pthread_mutex_lock(&blas_threads_lock);
  def = atomic_load(&blas_default_threads);
  if (def == 0) {
    def = openblas_get_num_threads();
    if (def < 1) def = 1;
    atomic_store(&blas_default_threads, def);
  }
  pthread_mutex_unlock(&blas_threads_lock);
  return def;
}

static void blas_threads_for(int nth) {
  int def = blas_default();
  int want = nth > 1 ? 1 : def;
  int now = atomic_load(&blas_threads_now);
  if ((now == 0 ? def : now) == want) return;
  pthread_mutex_lock(&blas_threads_lock);
  now = atomic_load(&blas_threads_now);
  if ((now == 0 ? def : now) != want) {
    openblas_set_num_threads(want);
    atomic_store(&blas_threads_now, want);
  }
  pthread_mutex_unlock(&blas_threads_lock);
}

/* BLAS takes blasint (32-bit on LP64 builds): larger problems stay on the portable kernel. */
static bool fits_blasint(const fg_gemm_dims *d) {
  int64_t v[] = {d->m, d->n, d->k, d->lda, d->ldb, d->ldc};
  for (size_t i = 0; i < sizeof v / sizeof *v; i++)
    if (v[i] != (int64_t)(blasint)v[i]) return false;
  return true;
}

static void gemm_blas(fg_dtype t, const fg_gemm_dims *d, const void *a, const void *b, void *c) {
  enum CBLAS_TRANSPOSE ta = d->ta ? CblasTrans : CblasNoTrans;
  enum CBLAS_TRANSPOSE tb = d->tb ? CblasTrans : CblasNoTrans;
  blasint m = (blasint)d->m, n = (blasint)d->n, k = (blasint)d->k;
  blasint lda = (blasint)d->lda, ldb = (blasint)d->ldb, ldc = (blasint)d->ldc;
  if (t == FG_F32)
    cblas_sgemm(CblasRowMajor, ta, tb, m, n, k, 1.0f, a, lda, b, ldb, d->accumulate ? 1.0f : 0.0f,
                c, ldc);
  else
    cblas_dgemm(CblasRowMajor, ta, tb, m, n, k, 1.0, a, lda, b, ldb, d->accumulate ? 1.0 : 0.0,
                c, ldc);
}
#endif

bool fg_gemm_uses_blas(void) {
#ifdef FG_HAVE_CBLAS
  int on = atomic_load(&blas_enabled);
  if (on < 0) {
    const char *s = getenv("FG_NO_BLAS");
    on = !(s && *s && strcmp(s, "0") != 0);
    atomic_store(&blas_enabled, on);
  }
  return on != 0;
#else
  return false;
#endif
}

fg_status fg_gemm(fg_dtype t, const fg_gemm_dims *d, const void *a, const void *b, void *c,
                  int nth) {
  if (d->m == 0 || d->n == 0) return FG_OK;
#ifdef FG_HAVE_CBLAS
  /* k == 0 goes to the portable kernel, which just zero-fills: BLAS argument checks reject
   * the lda = 0 such a call would have. */
  if (d->k > 0 && fg_gemm_uses_blas() && fits_blasint(d)) {
    blas_threads_for(nth);
    gemm_blas(t, d, a, b, c);
    return FG_OK;
  }
#else
  (void)nth;
#endif
  return fg_gemm_plain(t, d, a, b, c);
}

/* ---- the op ---- */

/* Batch dims of a >= 2-D shape (all but the last two). */
static fg_shape batch_of(const fg_shape *s) {
  fg_shape b;
  memset(&b, 0, sizeof b);
  b.ndim = s->ndim - 2;
  for (int i = 0; i < b.ndim; i++) b.d[i] = s->d[i];
  return b;
}

static fg_status matmul_infer(fg_infer_args *a) {
  const fg_matmul_attr *at = a->attr;
  const fg_shape *sa = &a->in_shape[0], *sb = &a->in_shape[1];
  char s0[96], s1[96];
  fg_shape_str(sa, s0, sizeof s0);
  fg_shape_str(sb, s1, sizeof s1);
  if (a->in_dtype[0] != a->in_dtype[1]) {
    snprintf(a->why, sizeof a->why, "operands of one dtype, got %s and %s",
             fg_dtype_name(a->in_dtype[0]), fg_dtype_name(a->in_dtype[1]));
    return FG_E_DTYPE;
  }
  if (sa->ndim < 2 || sb->ndim < 2) {
    snprintf(a->why, sizeof a->why,
             "both operands at least 2-D (a %s, b %s); reshape a vector to [1, k] or [k, 1]",
             s0, s1);
    return FG_E_SHAPE;
  }
  int64_t m = sa->d[sa->ndim - (at->trans_a ? 1 : 2)], ka = sa->d[sa->ndim - (at->trans_a ? 2 : 1)];
  int64_t kb = sb->d[sb->ndim - (at->trans_b ? 1 : 2)], n = sb->d[sb->ndim - (at->trans_b ? 2 : 1)];
  if (ka != kb) {
    snprintf(a->why, sizeof a->why,
             "inner dims to agree: a %s%s gives k = %lld, b %s%s gives k = %lld", s0,
             at->trans_a ? " (transposed)" : "", (long long)ka, s1,
             at->trans_b ? " (transposed)" : "", (long long)kb);
    return FG_E_SHAPE;
  }
  fg_shape ba = batch_of(sa), bb = batch_of(sb), out;
  if (!fg_shape_broadcast(&ba, &bb, &out)) {
    char s2[96], s3[96];
    snprintf(a->why, sizeof a->why, "batch dims %s (of a %s) and %s (of b %s) to broadcast",
             fg_shape_str(&ba, s2, sizeof s2), s0, fg_shape_str(&bb, s3, sizeof s3), s1);
    return FG_E_SHAPE;
  }
  out.d[out.ndim++] = m;
  out.d[out.ndim++] = n;
  int64_t numel;
  if (fg_shape_numel(&out, &numel, NULL) != FG_OK) {
    snprintf(a->why, sizeof a->why, "an output with fewer than 2^63 elements");
    return FG_E_OVERFLOW;
  }
  a->out_shape = out;
  return FG_OK;
}

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
enum { MATMUL_MIN_TILE = 64 };

static fg_status matmul_run(const fg_kargs *k, fg_dtype t) {
  const fg_matmul_attr *at = k->attr;
  const fg_shape *sa = &k->in_shape[0], *sb = &k->in_shape[1];
  fg_shape ba = batch_of(sa), bb = batch_of(sb), ob = batch_of(&k->out_shape);
  int64_t astr[FG_MAX_DIMS], bstr[FG_MAX_DIMS];
  fg_shape_broadcast_strides(&ba, &ob, astr);
  fg_shape_broadcast_strides(&bb, &ob, bstr);
  int64_t m = k->out_shape.d[k->out_shape.ndim - 2], n = k->out_shape.d[k->out_shape.ndim - 1];
  int64_t kk = sa->d[sa->ndim - (at->trans_a ? 2 : 1)], rows_all = fg_shape_count(&ob) * m;
  size_t es = fg_dtype_size(t);
  int pr, pc;
  fg_tile_grid(rows_all, n, MATMUL_MIN_TILE, MATMUL_MIN_TILE, k->nth, &pr, &pc);
  if (k->ith >= pr * pc) return FG_OK;
  int64_t r0, r1, c0, c1; /* rows of all batches flattened, so a tile may span matrices */
  fg_split_range(rows_all, k->ith / pc, pr, &r0, &r1);
  fg_split_range(n, k->ith % pc, pc, &c0, &c1);
  for (int64_t r = r0; r < r1;) {
    int64_t bi = r / m, i0 = r % m, rows = min64(m - i0, r1 - r);
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

static fg_status matmul_f32(const fg_kargs *k) { return matmul_run(k, FG_F32); }
static fg_status matmul_f64(const fg_kargs *k) { return matmul_run(k, FG_F64); }

/* C = op(A) op(B) with G = dL/dC:
 *   dL/dop(A) = G op(B)^T   so  dA = G op(B)^T,  or its transpose op(B) G^T when ta;
 *   dL/dop(B) = op(A)^T G   so  dB = op(A)^T G,  or its transpose G^T op(A) when tb.
 * Every product is a matmul_t, so no transpose is ever materialised, and each result has A's
 * (or B's) trailing dims with the output's batch dims, which autodiff sums down. */
static fg_status matmul_vjp(fg_graph *g, fg_node node, fg_node gout, uint32_t need,
                            fg_node *gin) {
  const fg_matmul_attr *at = fg_node_attr(g, node);
  bool ta = at->trans_a, tb = at->trans_b;
  fg_node a = fg_node_input(g, node, 0), b = fg_node_input(g, node, 1);
  if (need & 1u)
    gin[0] = ta ? fg_matmul_t(g, b, gout, tb, true) : fg_matmul_t(g, gout, b, false, !tb);
  if (need & 2u)
    gin[1] = tb ? fg_matmul_t(g, gout, a, true, ta) : fg_matmul_t(g, a, gout, !ta, false);
  return fg_graph_status(g);
}

fg_node fg_matmul_t(fg_graph *g, fg_node a, fg_node b, bool trans_a, bool trans_b) {
  fg_matmul_attr attr;
  memset(&attr, 0, sizeof attr);
  attr.trans_a = trans_a;
  attr.trans_b = trans_b;
  fg_node in[2] = {a, b};
  return fg_graph_add_node(g, FG_OP_MATMUL, 2, in, &attr);
}

fg_node fg_matmul(fg_graph *g, fg_node a, fg_node b) { return fg_matmul_t(g, a, b, false, false); }

const fg_op_def fg_opdef_matmul = {
    .name = "matmul",
    .n_in = 2,
    .attr_size = sizeof(fg_matmul_attr),
    .infer = matmul_infer,
    .kernel_f32 = matmul_f32,
    .kernel_f64 = matmul_f64,
    .vjp = matmul_vjp,
};
