/* The one GEMM that matmul and conv kernels call (ops/kernels/gemm.h), and the choice behind
 * it.
 *
 * Libraries.  A float32 GEMM goes to oneDNN's sgemm when the library was built with oneDNN
 * (ops/kernels/onednn.c), which generates its code for the CPU it runs on.  Otherwise, and for
 * float64, it goes to CBLAS when meson found OpenBLAS (option `blas`, on by default when
 * present).  Without either, or when FG_NO_BLAS=1 is in the environment (read once, so tests
 * and benchmarks can compare), it runs the portable cache-blocked kernel below, which is
 * written once and stamped for float and double.
 *
 * OpenBLAS's CPU guess.  Debian's OpenBLAS is built for many CPUs and picks its kernels by CPU
 * model; on a model it does not know it falls back to its Prescott (SSE3) kernels, several
 * times slower than the AVX2 or AVX-512 ones the CPU has.  Unless OPENBLAS_CORETYPE names a
 * core, flowgrad replaces such a fallback, once, before its first BLAS call, with the kernels
 * the CPU's features call for (correct_openblas_core).
 *
 * Threads.  The engine owns parallelism: a kernel gets (ith, nth) and computes only its share.
 * GEMM-based kernels (ops/kernels/matmul.c, the conv drivers) use only as many of the nth
 * parts as keep each part's GEMM efficient (fg_tile_grid) and pass that effective count here.
 * oneDNN's sgemm always runs on the calling thread alone (results then never depend on the
 * thread count).  OpenBLAS keeps its own pool, and letting both pools run would put (engine
 * threads) x (BLAS threads) runnable threads on the cores, which collapses throughput on small
 * or shared machines.  The policy, applied before every BLAS call, on the kernel's *effective*
 * part count (the parts that have work):
 *   - more than one: OpenBLAS runs 1 thread per call, so the engine's threads are the only
 *     ones computing;
 *   - one (a small GEMM, or a single-threaded program): OpenBLAS gets back the thread count it
 *     had when flowgrad first called it (OPENBLAS_NUM_THREADS or the core count); the executor
 *     runs one node at a time, so the pool's other threads are idle and a lone GEMM may use
 *     the cores.  (OpenBLAS itself stays single-threaded below its size threshold.)
 * openblas_set_num_threads is process-wide, so the current setting is tracked in an atomic and
 * changed only on a transition, under a mutex so that the recorded and the real setting never
 * disagree.  A kernel that runs others on its share (conv2d_chain, by groups of images) tells them
 * how many of its parts run at once (fg_kargs.outer_parts), and they pass the larger count. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "ops/kernel_info.h"
#include "ops/kernels/gemm.h"
#include "ops/kernels/onednn.h"

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

/* FG_NO_BLAS unset (or "0"): the GEMM libraries may be used.  Read once. */
static bool libraries_enabled(void) {
  static atomic_int enabled = -1;
  int on = atomic_load(&enabled);
  if (on < 0) {
    const char *s = getenv("FG_NO_BLAS");
    on = !(s && *s && strcmp(s, "0") != 0);
    atomic_store(&enabled, on);
  }
  return on != 0;
}

/* ---- CBLAS, its CPU guess and its thread policy (see the top of the file) ---- */
#ifdef FG_HAVE_CBLAS
static atomic_int blas_default_threads; /* 0: not recorded yet */
static atomic_int blas_threads_now;     /* what we last set; 0: untouched (the default) */
static pthread_mutex_t blas_threads_lock = PTHREAD_MUTEX_INITIALIZER;
static char core_corrected[64];          /* "Prescott -> SkylakeX" once corrected */

/* OpenBLAS's own (exported by its DYNAMIC_ARCH builds; weak: absent elsewhere). */
extern void gotoblas_dynamic_init(void) __attribute__((weak));
extern void gotoblas_dynamic_quit(void) __attribute__((weak));

/* The OpenBLAS core for this CPU's vector features, or NULL when none beats a fallback. */
static const char *core_for_cpu(void) {
#if defined(__x86_64__) && defined(__GNUC__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq"))
    return __builtin_cpu_supports("avx512bf16") ? "Cooperlake" : "SkylakeX";
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
#endif
  return NULL;
}

/* OpenBLAS's fallbacks: cores older than AVX2 that it picks for a model it does not know. */
static bool is_fallback_core(const char *core) {
  static const char *const old_cores[] = {"Prescott", "Core2", "Penryn", "Dunnington",
                                          "Nehalem", "Sandybridge", "Unknown", "generic"};
  for (size_t i = 0; core && i < sizeof old_cores / sizeof *old_cores; i++)
    if (strcmp(core, old_cores[i]) == 0) return true;
  return false;
}

/* Replaces a fallback core by the CPU's own (see the top of the file).  OpenBLAS reads
 * OPENBLAS_CORETYPE only when it picks its core, so it is set for that moment alone. */
static void correct_openblas_core(void) {
  const char *now = openblas_get_corename(), *want = core_for_cpu();
  if (getenv("OPENBLAS_CORETYPE") || !gotoblas_dynamic_init || !gotoblas_dynamic_quit ||
      !is_fallback_core(now) || !want)
    return;
  char was[24];
  snprintf(was, sizeof was, "%s", now);
  setenv("OPENBLAS_CORETYPE", want, 1);
  gotoblas_dynamic_quit();
  gotoblas_dynamic_init();
  unsetenv("OPENBLAS_CORETYPE");
  snprintf(core_corrected, sizeof core_corrected, "%s -> %s", was, openblas_get_corename());
}

static int blas_default(void) {
  int def = atomic_load(&blas_default_threads);
  if (def > 0) return def;
  pthread_mutex_lock(&blas_threads_lock);
  def = atomic_load(&blas_default_threads);
  if (def == 0) { /* flowgrad's first BLAS call */
    correct_openblas_core();
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
  return libraries_enabled();
#else
  return false;
#endif
}

bool fg_gemm_uses_onednn(void) {
#ifdef FG_HAVE_DNNL
  return libraries_enabled();
#else
  return false;
#endif
}

fg_status fg_gemm(fg_dtype t, const fg_gemm_dims *d, const void *a, const void *b, void *c,
                  int nth) {
  if (d->m == 0 || d->n == 0) return FG_OK;
  /* k == 0 goes to the portable kernel, which just zero-fills: BLAS argument checks reject
   * the lda = 0 such a call would have. */
#ifdef FG_HAVE_DNNL
  if (d->k > 0 && t == FG_F32 && fg_gemm_uses_onednn() && fg_onednn_sgemm(d, a, b, c))
    return FG_OK;
#endif
#ifdef FG_HAVE_CBLAS
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

const char *fg_kernel_libraries(char *buf, size_t cap) {
  size_t used = 0;
  buf[0] = '\0';
#ifdef FG_HAVE_DNNL
  char dnnl[96];
  used += (size_t)snprintf(buf, cap, "%s%s", fg_onednn_describe(dnnl, sizeof dnnl),
                           libraries_enabled() ? "" : " (off: FG_NO_BLAS)");
#endif
#ifdef FG_HAVE_CBLAS
  if (used < cap) {
    if (libraries_enabled()) blas_default(); /* makes the core correction, if any, now */
    const char *env = getenv("OPENBLAS_CORETYPE");
    used += (size_t)snprintf(buf + used, cap - used, "%sOpenBLAS %s, core %s%s%s%s%s",
                             used ? "; " : "", openblas_get_config(), openblas_get_corename(),
                             core_corrected[0] ? " (corrected: " : "", core_corrected,
                             core_corrected[0] ? ")" : "", env ? " (OPENBLAS_CORETYPE)" : "");
  }
#endif
  if (used == 0) snprintf(buf, cap, "none: the portable GEMM and native kernels");
  return buf;
}
