/* bench_dense: GFLOP/s of matmul and conv2d, forward and backward, at the shapes a Glow on
 * 28x28 images uses (batch 64, float32), run through the public program API, printed next to
 * cblas_sgemm at 1024^3 measured in the same run, as ratios, and the ceiling no kernel can pass:
 * the rate of independent fused multiply-adds on as many threads.  Without BLAS (a build
 * without it, or FG_NO_BLAS=1) the reference is the engine's portable GEMM: one 1024^3 matmul
 * node on one thread.
 *
 * Programs pick each node's implementation as FG_KERNELS says (by timing them, by default); a
 * second table gives, per op and direction, the implementation picked (for oneDNN: its own
 * implementation and ISA, and the activations' layouts in>out) and the rates of the native
 * kernels alone (FG_KERNELS=native) and of oneDNN alone (=onednn) where the build has it.
 *
 *   meson compile -C build && ./build/tools/bench_dense [reps [label-substring]]
 *
 * FLOPs count the direct convolution, 2 N O Ho Wo C KH KW per pass; backward is the input and
 * the weight gradient (two passes), as autodiff's fg_vjp builds them; dA and dB are the two
 * gradients alone (input and weight for a convolution).  Each figure is the
 * median of `reps` timed runs (default 15) after one warm-up run.  Threads: FG_THREADS for the
 * engine; OPENBLAS_NUM_THREADS for the reference sgemm (the engine's own GEMM calls run one
 * BLAS thread each whenever a kernel is split, see ops/kernels/gemm.c), so compare like with
 * like:
 *   OPENBLAS_NUM_THREADS=1 FG_THREADS=1 ./build/tools/bench_dense     (one core)
 *   ./build/tools/bench_dense                                          (all cores) */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/ir/op.h"
#include "core/rng.h"
#include "core/runtime/program.h"
#include "ops/autodiff/autodiff.h"
#include "ops/kernel_info.h"
#include "ops/ops.h"

#ifdef FG_HAVE_CBLAS
#include <cblas.h>
#endif
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif

static int g_reps = 15;
#ifdef FG_HAVE_CBLAS
static int g_blas_threads = 1; /* OpenBLAS's own setting at start, for the reference */
#endif
static const char *g_only; /* run only the rows whose label contains this */

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double median(double *t, int n) {
  qsort(t, (size_t)n, sizeof *t, cmp_double);
  return t[n / 2];
}

static void die(const char *what, const char *msg) {
  fprintf(stderr, "bench_dense: %s: %s\n", what, msg);
  exit(1);
}

/* Median seconds of one run of p, over `reps` runs (at most 64). */
static double time_program(fg_program *p, int reps) {
  double t[64];
  int n = reps < 64 ? reps : 64;
  fg_err e;
  if (fg_program_run(p, &e) != FG_OK) die("run", e.msg);
  for (int i = 0; i < n; i++) {
    double t0 = now();
    if (fg_program_run(p, &e) != FG_OK) die("run", e.msg);
    t[i] = now() - t0;
  }
  return median(t, n);
}

static void bind_random(fg_program *p, const char *name, fg_shape s, double scale, uint64_t seed) {
  fg_tensor *t;
  fg_err e;
  if (fg_tensor_new(&t, FG_F32, &s, &e) != FG_OK) die("tensor", e.msg);
  for (int64_t i = 0; i < fg_tensor_numel(t); i++)
    fg_tensor_set(t, i, scale * (2 * fg_rng_uniform(seed, (uint64_t)i) - 1));
  if (fg_program_bind(p, name, t, &e) != FG_OK) die("bind", e.msg);
  fg_tensor_free(t);
}

/* The implementation node-of-interest of p runs: its first node that has several. */
static void kernel_of(const fg_program *p, char *buf, size_t cap) {
  const fg_graph *g = fg_program_graph(p);
  snprintf(buf, cap, "-");
  for (fg_node n = 0; n < fg_graph_node_count(g); n++)
    if (fg_program_node_kernel(p, n)) {
      snprintf(buf, cap, "%s", fg_program_node_kernel(p, n));
      return;
    }
}

/* Seconds of the forward, both gradients, and each gradient alone, and what computed them. */
typedef struct timing {
  double fwd, bwd, da, db;
  char kernel[3][128]; /* forward, dA, dB */
} timing;

/* Builds y = f(a, b) on inputs "a", "b" (and "dy" for the backward graph) and times its
 * programs, made with `kernels` (NULL: FG_KERNELS); all: also the backward of both. */
typedef fg_node (*build2_fn)(fg_graph *g, fg_node a, fg_node b, const void *ctx);

static void time_fwd_bwd(build2_fn build, const void *ctx, fg_shape sa, fg_shape sb,
                         double b_scale, const char *kernels, bool all, timing *t) {
  fg_graph *g;
  fg_graph_new(&g, NULL);
  if (!g) die("graph", "out of memory");
  fg_node a = fg_input(g, "a", FG_F32, sa), b = fg_input(g, "b", FG_F32, sb);
  fg_node y = build(g, a, b, ctx);
  fg_node dy = fg_input(g, "dy", FG_F32, fg_node_shape(g, y));
  fg_node wrt[2] = {a, b}, grads[2];
  if (fg_vjp(g, 1, &y, &dy, 2, wrt, grads) != FG_OK) die("vjp", fg_graph_errmsg(g));
  fg_program_opts opts = {.kernels = kernels};
  fg_program *p[4] = {0};
  fg_node *outs[4] = {&y, &grads[0], &grads[1], grads};
  int n_outs[4] = {1, 1, 1, 2};
  fg_err e;
  for (int i = 0; i < (all ? 4 : 3); i++) {
    if (fg_program_new_opts(&p[i], g, n_outs[i], outs[i], &opts, &e) != FG_OK)
      die("program", e.msg);
    bind_random(p[i], "a", sa, 1, 1), bind_random(p[i], "b", sb, b_scale, 2);
    if (i > 0) bind_random(p[i], "dy", fg_node_shape(g, y), 1, 3);
    if (i < 3) kernel_of(p[i], t->kernel[i], sizeof t->kernel[i]);
  }
  t->fwd = time_program(p[0], g_reps);
  t->da = time_program(p[1], g_reps);
  t->db = time_program(p[2], g_reps);
  t->bwd = all ? time_program(p[3], g_reps) : t->da + t->db;
  for (int i = 0; i < 4; i++) fg_program_free(p[i]);
  fg_graph_free(g);
}

/* ---- the reference: one sgemm at 1024^3 ---- */

enum { REF_N = 1024 };

/* Whether the engine's GEMM goes to BLAS: built with it, and FG_NO_BLAS unset or "0" (the
 * rule ops/kernels/gemm.c applies). */
static bool engine_uses_blas(void) {
#ifdef FG_HAVE_CBLAS
  const char *s = getenv("FG_NO_BLAS");
  return !(s && *s && strcmp(s, "0") != 0);
#else
  return false;
#endif
}

#ifdef FG_HAVE_CBLAS
/* cblas_sgemm itself, on OpenBLAS's own thread count. */
static double cblas_gflops(void) {
  enum { N = REF_N };
  float *a = malloc(sizeof(float) * N * N), *b = malloc(sizeof(float) * N * N);
  float *c = malloc(sizeof(float) * N * N);
  if (!a || !b || !c) die("sgemm", "out of memory");
  for (int i = 0; i < N * N; i++) a[i] = b[i] = (float)(fg_rng_uniform(9, (uint64_t)i) - 0.5);
  double t[64];
  int n = g_reps < 64 ? g_reps : 64;
  openblas_set_num_threads(g_blas_threads); /* the engine's policy may have changed it */
  for (int i = -1; i < n; i++) {
    double t0 = now();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, N, N, 1.0f, a, N, b, N, 0.0f, c, N);
    if (i >= 0) t[i] = now() - t0;
  }
  free(a), free(b), free(c);
  return 2.0 * N * N * N / median(t, n) * 1e-9;
}
#endif

/* The portable GEMM as the engine runs it without BLAS: one matmul node at 1024^3 in a program
 * on one thread (the median of 3 runs). */
static double portable_gflops(void) {
  fg_graph *g;
  fg_err e;
  if (fg_graph_new(&g, &e) != FG_OK) die("graph", e.msg);
  fg_shape s = fg_shape2(REF_N, REF_N);
  fg_node y = fg_matmul(g, fg_input(g, "a", FG_F32, s), fg_input(g, "b", FG_F32, s));
  fg_program_opts opts = {.n_threads = 1};
  fg_program *p;
  if (fg_program_new_opts(&p, g, 1, &y, &opts, &e) != FG_OK) die("reference program", e.msg);
  bind_random(p, "a", s, 0.5, 9);
  bind_random(p, "b", s, 0.5, 10);
  double secs = time_program(p, 3);
  fg_program_free(p);
  fg_graph_free(g);
  return 2.0 * REF_N * REF_N * REF_N / secs * 1e-9;
}

/* The portable GEMM's rate while the engine uses BLAS: FG_NO_BLAS is read once per process (at
 * its first GEMM), so a child process that sets it measures it; 0 if that fails. */
static double portable_gflops_in_child(void) {
  int fd[2];
  if (pipe(fd) != 0) return 0;
  fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) {
    close(fd[0]);
    setenv("FG_NO_BLAS", "1", 1);
    double rate = portable_gflops();
    _exit(write(fd[1], &rate, sizeof rate) == (ssize_t)sizeof rate ? 0 : 1);
  }
  close(fd[1]);
  double rate = 0;
  if (pid < 0 || read(fd[0], &rate, sizeof rate) != (ssize_t)sizeof rate) rate = 0;
  close(fd[0]);
  if (pid > 0) waitpid(pid, NULL, 0);
  return rate;
}

/* GFLOP/s of the reference: cblas_sgemm when the engine uses BLAS, else its portable GEMM. */
static double reference_gflops(bool blas) {
#ifdef FG_HAVE_CBLAS
  if (blas) return cblas_gflops();
#endif
  (void)blas;
  return portable_gflops();
}

/* ---- the machine's ceiling: fused multiply-adds with nothing else in the way ----
 * 16 independent chains of 512-bit (else 256-bit) FMAs per thread, on as many threads as the
 * engine uses, all at once: no conv or GEMM can beat this rate, so it bounds any speed-up. */
#if defined(__x86_64__) && defined(__GNUC__)
enum { PEAK_ITERS = 20000000 };

/* One thread's chains in one vector width: returns their sum so that nothing is optimised away. */
#define FMA_CHAINS_DEFINE(NAME, ISA, VEC, LANES, SET1, FMADD, STOREU)                          \
  __attribute__((target(ISA))) static float NAME(void) {                                      \
    VEC a[16], x = SET1(0.999f), y = SET1(1e-4f);                                             \
    for (int i = 0; i < 16; i++) a[i] = SET1((float)i * 1e-3f);                               \
    for (long n = 0; n < PEAK_ITERS; n++)                                                     \
      _Pragma("GCC unroll 16") for (int i = 0; i < 16; i++) a[i] = FMADD(a[i], x, y);         \
    float s = 0, lane[LANES];                                                                 \
    for (int i = 0; i < 16; i++) {                                                            \
      STOREU(lane, a[i]);                                                                     \
      for (int l = 0; l < LANES; l++) s += lane[l];                                           \
    }                                                                                         \
    return s;                                                                                 \
  }
FMA_CHAINS_DEFINE(fma_chains_512, "avx512f,fma", __m512, 16, _mm512_set1_ps, _mm512_fmadd_ps,
                  _mm512_storeu_ps)
FMA_CHAINS_DEFINE(fma_chains_256, "avx2,fma", __m256, 8, _mm256_set1_ps, _mm256_fmadd_ps,
                  _mm256_storeu_ps)

static bool g_peak_512;
static void *fma_thread(void *out) {
  *(float *)out = g_peak_512 ? fma_chains_512() : fma_chains_256();
  return NULL;
}

/* GFLOP/s of `threads` threads running the chains at once, or 0 without AVX2 + FMA. */
static double fma_peak_gflops(int threads, const char **isa) {
  __builtin_cpu_init();
  g_peak_512 = __builtin_cpu_supports("avx512f");
  if (!g_peak_512 && !(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))) return 0;
  *isa = g_peak_512 ? "AVX-512" : "AVX2";
  enum { MAX_PEAK_THREADS = 64 };
  pthread_t th[MAX_PEAK_THREADS];
  float sink[MAX_PEAK_THREADS];
  threads = threads < 1 ? 1 : threads > MAX_PEAK_THREADS ? MAX_PEAK_THREADS : threads;
  double t0 = now();
  int started = 0;
  for (; started < threads; started++)
    if (pthread_create(&th[started], NULL, fma_thread, &sink[started]) != 0) break;
  for (int i = 0; i < started; i++) pthread_join(th[i], NULL);
  double lanes = g_peak_512 ? 16 : 8;
  return started * 2.0 * lanes * 16 * PEAK_ITERS / (now() - t0) * 1e-9;
}
#else
static double fma_peak_gflops(int threads, const char **isa) {
  (void)threads, (void)isa;
  return 0;
}
#endif

/* ---- the shapes ---- */

typedef struct conv_shape {
  const char *label;
  int64_t cin, cout, k, hw;
  double w_scale; /* 0: the zero-initialised output conv */
} conv_shape;

static fg_node build_conv(fg_graph *g, fg_node x, fg_node w, const void *ctx) {
  const conv_shape *s = ctx;
  fg_conv2d_opts o = fg_conv2d_defaults();
  o.padding[0] = o.padding[1] = s->k / 2;
  return fg_conv2d(g, x, w, FG_NONE, &o);
}

static fg_node build_matmul(fg_graph *g, fg_node a, fg_node b, const void *ctx) {
  (void)ctx;
  return fg_matmul(g, a, b);
}

static bool wanted(const char *label) { return !g_only || strstr(label, g_only) != NULL; }

typedef struct table_row {
  const char *label;
  double fwd, bwd, fb, da, db; /* GFLOP/s */
  timing chosen, native, onednn;
  double flops;
} table_row;

static table_row make_row(const char *label, double flops, const timing *t) {
  return (table_row){label, flops / t->fwd * 1e-9, 2 * flops / t->bwd * 1e-9,
                     3 * flops / (t->fwd + t->bwd) * 1e-9, flops / t->da * 1e-9,
                     flops / t->db * 1e-9, .chosen = *t, .flops = flops};
}

static void print_row(const table_row *r, double ref) {
  printf("%-36s %8.1f %6.0f%% %8.1f %6.0f%% %8.1f %6.0f%% %8.1f %8.1f\n", r->label, r->fwd,
         100 * r->fwd / ref, r->bwd, 100 * r->bwd / ref, r->fb, 100 * r->fb / ref, r->da, r->db);
}

/* The second table: per direction, what ran, and the native and oneDNN rates alone. */
static void print_kernels(const table_row *r, bool onednn) {
  static const char *const dirs[3] = {"fwd", "dA", "dB"};
  for (int d = 0; d < 3; d++) {
    const double s[3][3] = {{r->chosen.fwd, r->chosen.da, r->chosen.db},
                            {r->native.fwd, r->native.da, r->native.db},
                            {r->onednn.fwd, r->onednn.da, r->onednn.db}};
    printf("%-36s %-3s %8.1f %8.1f", d ? "" : r->label, dirs[d], r->flops / s[0][d] * 1e-9,
           r->flops / s[1][d] * 1e-9);
    if (onednn) printf(" %8.1f", r->flops / s[2][d] * 1e-9);
    printf("  %s\n", r->chosen.kernel[d]);
  }
}

static bool built_with_onednn(void) {
  char buf[256];
  return strncmp(fg_kernel_libraries(buf, sizeof buf), "oneDNN", 6) == 0;
}

/* Times one shape with the chosen kernels, the native ones and oneDNN's. */
static table_row measure(const char *label, double flops, build2_fn build, const void *ctx,
                         fg_shape sa, fg_shape sb, double b_scale, bool onednn) {
  timing chosen, native, dnnl = {0};
  time_fwd_bwd(build, ctx, sa, sb, b_scale, NULL, true, &chosen);
  time_fwd_bwd(build, ctx, sa, sb, b_scale, "native", false, &native);
  if (onednn) time_fwd_bwd(build, ctx, sa, sb, b_scale, "onednn", false, &dnnl);
  table_row r = make_row(label, flops, &chosen);
  r.native = native, r.onednn = dnnl;
  return r;
}

int main(int argc, char **argv) {
  if (argc > 1) g_reps = atoi(argv[1]) > 0 ? atoi(argv[1]) : g_reps;
  if (argc > 2) g_only = argv[2];
  const int64_t batch = 64;
  const char *coretype = getenv("OPENBLAS_CORETYPE");
  bool blas = engine_uses_blas(), onednn = built_with_onednn();
  char libs[512];
  printf("kernels: %s; FG_KERNELS=%s\n", fg_kernel_libraries(libs, sizeof libs),
         getenv("FG_KERNELS") ? getenv("FG_KERNELS") : "(unset: timed)");
#ifdef FG_HAVE_CBLAS
  g_blas_threads = openblas_get_num_threads();
  printf("BLAS: %s (%s), %d threads, OPENBLAS_CORETYPE=%s%s\n", openblas_get_config(),
         openblas_get_corename(), g_blas_threads, coretype ? coretype : "(unset)",
         blas ? "" : "; FG_NO_BLAS set: flowgrad uses its portable GEMM");
#else
  printf("BLAS: none (portable GEMM), OPENBLAS_CORETYPE=%s\n", coretype ? coretype : "(unset)");
#endif
  double portable = blas ? portable_gflops_in_child() : 0; /* before this process runs a GEMM */
  /* The reference is timed before and after the table and the higher rate kept, so that load
   * from other processes during one of them lowers no ratio in our favour. */
  double ref = reference_gflops(blas);
  if (blas) printf("portable sgemm at 1024^3: %.1f GFLOP/s\n", portable);
  printf("float32, batch %lld, median of %d runs; f+b = forward and both gradients; "
         "FG_THREADS=%s\n\n",
         (long long)batch, g_reps, getenv("FG_THREADS") ? getenv("FG_THREADS") : "(cores)");
  printf("%-36s %8s %7s %8s %7s %8s %7s %8s %8s\n", "op", "fwd GF/s", "ratio", "bwd GF/s", "ratio",
         "f+b GF/s", "ratio", "dA GF/s", "dB GF/s");

  static const conv_shape convs[] = {
      {"conv 2->128 3x3 @14x14", 2, 128, 3, 14, 1},
      {"conv 128->128 1x1 @14x14", 128, 128, 1, 14, 1},
      {"conv 128->4 3x3 @14x14 (zero w)", 128, 4, 3, 14, 0},
      {"conv 4->256 3x3 @7x7", 4, 256, 3, 7, 1},
      {"conv 128->128 3x3 @14x14 (RealNVP)", 128, 128, 3, 14, 1},
      {"conv 4->128 3x3 @7x7", 4, 128, 3, 7, 1},
      {"conv 128->128 1x1 @7x7", 128, 128, 1, 7, 1},
      {"conv 128->8 3x3 @7x7 (zero w)", 128, 8, 3, 7, 0},
      {"conv 64->64 3x3 @28x28 (RealNVP)", 64, 64, 3, 28, 1},
      {"conv 64->64 3x3 @14x14 (RealNVP)", 64, 64, 3, 14, 1},
      {"conv 256->256 1x1 @14x14 (Glow h256)", 256, 256, 1, 14, 1},
      {"conv 2->256 3x3 @14x14 (Glow h256)", 2, 256, 3, 14, 1},
      {"conv 256->4 3x3 @14x14 (Glow h256)", 256, 4, 3, 14, 0},
      {"conv 256->8 3x3 @7x7 (Glow h256)", 256, 8, 3, 7, 0},
  };
  static const int64_t mms[][4] = {{1, 12544, 128, 128}, {batch, 196, 128, 128},
                                   {1, 1024, 1024, 1024}};
  static const char *mm_labels[] = {"matmul [12544,128]@[128,128]", "matmul [64,196,128]@[128,128]",
                                    "matmul [1024,1024]@[1024,1024]"};
  table_row rows[sizeof convs / sizeof *convs + sizeof mms / sizeof *mms];
  int n_rows = 0;
  for (size_t i = 0; i < sizeof convs / sizeof *convs; i++) {
    const conv_shape *s = &convs[i];
    if (!wanted(s->label)) continue;
    double flops = 2.0 * (double)(batch * s->cout * s->hw * s->hw * s->cin * s->k * s->k);
    rows[n_rows++] = measure(s->label, flops, build_conv, s, fg_shape4(batch, s->cin, s->hw, s->hw),
                             fg_shape4(s->cout, s->cin, s->k, s->k), s->w_scale, onednn);
  }

  for (size_t i = 0; i < sizeof mms / sizeof *mms; i++) {
    const int64_t *m = mms[i];
    if (!wanted(mm_labels[i])) continue;
    fg_shape sa = m[0] > 1 ? fg_shape3(m[0], m[1], m[2]) : fg_shape2(m[1], m[2]);
    rows[n_rows++] = measure(mm_labels[i], 2.0 * (double)(m[0] * m[1] * m[2] * m[3]),
                             build_matmul, NULL, sa, fg_shape2(m[2], m[3]), 1, onednn);
  }
  double ref_after = reference_gflops(blas);
  for (int i = 0; i < n_rows; i++) print_row(&rows[i], ref > ref_after ? ref : ref_after);
  printf("\nreference: %s at 1024^3: %.1f GFLOP/s before, %.1f after; ratios are against the "
         "higher\n", blas ? "cblas_sgemm" : "portable sgemm", ref, ref_after);
  printf("\n%-36s %-3s %8s %8s%s  %s\n", "kernels per op (GF/s)", "dir", "chosen", "native",
         onednn ? "   onednn" : "", "chosen kernel");
  for (int i = 0; i < n_rows; i++) print_kernels(&rows[i], onednn);
  printf("\n");
  const char *env_threads = getenv("FG_THREADS"), *isa = NULL;
  int threads = env_threads && atoi(env_threads) > 0 ? atoi(env_threads)
                                                     : (int)sysconf(_SC_NPROCESSORS_ONLN);
  double peak = fma_peak_gflops(threads, &isa);
  if (peak > 0)
    printf("ceiling: %s fused multiply-adds alone, on %d thread(s) at once: %.1f GFLOP/s\n", isa,
           threads, peak);
  return 0;
}
