/* The dense kernels below the op table: the shared GEMM (portable kernel and BLAS dispatch)
 * against a naive triple loop across block edges, transposes, leading dimensions and
 * accumulation; and the matmul and conv kernels split into parts run on concurrent threads, as
 * the threaded executor will, against one part and against naive loops (with shapes large
 * enough that conv processes its scratch in chunks). */
#include <criterion/criterion.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/ir/op.h"
#include "core/rng.h"
#include "ops/kernels/gemm.h"
#include "ops/ops.h"

/* ---- buffers ---- */

static double *random_doubles(int64_t n, uint64_t seed) {
  double *p = malloc(sizeof *p * (size_t)(n > 0 ? n : 1));
  cr_assert_not_null(p);
  for (int64_t i = 0; i < n; i++) p[i] = 2 * fg_rng_uniform(seed, (uint64_t)i) - 1;
  return p;
}

/* A copy of src in dtype t. */
static void *typed_copy(const double *src, int64_t n, fg_dtype t) {
  void *p = malloc(fg_dtype_size(t) * (size_t)(n > 0 ? n : 1));
  cr_assert_not_null(p);
  for (int64_t i = 0; i < n; i++) {
    if (t == FG_F32) ((float *)p)[i] = (float)src[i];
    else ((double *)p)[i] = src[i];
  }
  return p;
}

static double get(const void *p, fg_dtype t, int64_t i) {
  return t == FG_F32 ? ((const float *)p)[i] : ((const double *)p)[i];
}

static void *nan_filled(int64_t n, fg_dtype t) {
  double *d = malloc(sizeof *d * (size_t)(n > 0 ? n : 1));
  cr_assert_not_null(d);
  for (int64_t i = 0; i < n; i++) d[i] = NAN;
  void *p = typed_copy(d, n, t);
  free(d);
  return p;
}

static double tol_for(fg_dtype t, int64_t terms) {
  return (t == FG_F32 ? 2e-6 : 1e-14) * (double)(terms + 1);
}

/* ---- GEMM ---- */

static double op_at(const double *x, bool trans, int64_t ld, int64_t r, int64_t c) {
  return trans ? x[c * ld + r] : x[r * ld + c];
}

static void naive_gemm(const fg_gemm_dims *d, const double *a, const double *b, double *c) {
  for (int64_t i = 0; i < d->m; i++)
    for (int64_t j = 0; j < d->n; j++) {
      double s = d->accumulate ? c[i * d->ldc + j] : 0;
      for (int64_t p = 0; p < d->k; p++)
        s += op_at(a, d->ta, d->lda, i, p) * op_at(b, d->tb, d->ldb, p, j);
      c[i * d->ldc + j] = s;
    }
}

/* Runs one GEMM (portable or dispatched) on random data with `pad` extra elements per leading
 * dimension; C starts as NaN unless accumulating, so a kernel that reads C under beta = 0
 * fails, and C's padding must come back untouched. */
static void check_gemm(fg_dtype t, bool ta, bool tb, bool acc, int64_t m, int64_t n, int64_t k,
                       int64_t pad, bool plain) {
  fg_gemm_dims d = {.ta = ta, .tb = tb, .accumulate = acc, .m = m, .n = n, .k = k,
                    .lda = (ta ? m : k) + pad, .ldb = (tb ? k : n) + pad, .ldc = n + pad};
  int64_t na = (ta ? k : m) * d.lda, nb = (tb ? n : k) * d.ldb, nc = m * d.ldc;
  double *a = random_doubles(na, 1), *b = random_doubles(nb, 2), *c = random_doubles(nc, 3);
  for (int64_t i = 0; i < m; i++)
    for (int64_t j = 0; j < d.ldc; j++)
      if (!acc || j >= n) c[i * d.ldc + j] = NAN;
  void *ta_ = typed_copy(a, na, t), *tb_ = typed_copy(b, nb, t), *tc = typed_copy(c, nc, t);
  fg_status st = plain ? fg_gemm_plain(t, &d, ta_, tb_, tc) : fg_gemm(t, &d, ta_, tb_, tc, 1);
  cr_assert_eq(st, FG_OK);
  naive_gemm(&d, a, b, c);
  for (int64_t i = 0; i < m; i++)
    for (int64_t j = 0; j < d.ldc; j++) {
      double got = get(tc, t, i * d.ldc + j), want = c[i * d.ldc + j];
      if (j >= n) {
        cr_assert(isnan(got), "padding of C at (%lld, %lld) was written", (long long)i,
                  (long long)j);
        continue;
      }
      cr_assert(fabs(got - want) <= tol_for(t, k),
                "%s gemm %s ta=%d tb=%d acc=%d %lldx%lldx%lld pad %lld: C[%lld,%lld] = %.17g, "
                "want %.17g", plain ? "portable" : "dispatched", fg_dtype_name(t), ta, tb, acc,
                (long long)m, (long long)n, (long long)k, (long long)pad, (long long)i,
                (long long)j, got, want);
    }
  free(a), free(b), free(c), free(ta_), free(tb_), free(tc);
}

/* Sizes straddle the portable kernel's blocks (4 rows, 128 deep, 256 wide) and hit the empty
 * and k = 0 edges. */
static const int64_t gemm_sizes[][3] = {{1, 1, 1},   {5, 3, 7},    {4, 256, 128}, {7, 300, 130},
                                        {9, 257, 129}, {3, 0, 4},  {0, 3, 4},     {2, 3, 0},
                                        {13, 1, 260}};

static void check_all_gemms(bool plain) {
  for (size_t s = 0; s < sizeof gemm_sizes / sizeof *gemm_sizes; s++)
    for (int flags = 0; flags < 8; flags++)
      for (int t = 0; t < 2; t++)
        check_gemm(t ? FG_F64 : FG_F32, flags & 1, flags & 2, flags & 4, gemm_sizes[s][0],
                   gemm_sizes[s][1], gemm_sizes[s][2], (int64_t)(s % 2) * 3, plain);
}

Test(gemm, portable_kernel_matches_naive_loops) { check_all_gemms(true); }
Test(gemm, dispatched_kernel_matches_naive_loops) { check_all_gemms(false); }

Test(gemm, blas_is_used_exactly_when_built_with_it_and_not_disabled) {
  const char *env = getenv("FG_NO_BLAS");
  bool disabled = env && *env && strcmp(env, "0") != 0;
#ifdef FG_HAVE_CBLAS
  cr_assert_eq(fg_gemm_uses_blas(), !disabled);
#else
  (void)disabled;
  cr_assert_not(fg_gemm_uses_blas());
#endif
}

/* ---- kernels split into parts on concurrent threads ---- */

typedef struct part_job {
  fg_kernel_fn fn;
  fg_kargs k;
  fg_err err;
  fg_status st;
} part_job;

static void *run_part(void *arg) {
  part_job *j = arg;
  j->k.err = &j->err;
  j->st = j->fn(&j->k);
  return NULL;
}

/* Runs op's kernel in dtype t as nth parts, one thread each, into out. */
static void run_parts(int op, fg_dtype t, const void *attr, int n_in, const void *const *in,
                      const fg_shape *in_shape, void *out, fg_shape out_shape, int nth) {
  const fg_op_def *def = fg_op_get(op);
  fg_dtype dts[4] = {t, t, t, t};
  part_job *jobs = calloc((size_t)nth, sizeof *jobs);
  pthread_t *tid = calloc((size_t)nth, sizeof *tid);
  cr_assert(jobs && tid);
  for (int i = 0; i < nth; i++) {
    jobs[i].fn = t == FG_F32 ? def->kernel_f32 : def->kernel_f64;
    jobs[i].k = (fg_kargs){.attr = attr, .n_in = n_in, .in = in, .in_shape = in_shape,
                           .in_dtype = dts, .out = out, .out_shape = out_shape, .ith = i,
                           .nth = nth};
    cr_assert_eq(pthread_create(&tid[i], NULL, run_part, &jobs[i]), 0);
  }
  for (int i = 0; i < nth; i++) pthread_join(tid[i], NULL);
  for (int i = 0; i < nth; i++)
    cr_assert_eq(jobs[i].st, FG_OK, "%s part %d/%d: %s", def->name, i, nth, jobs[i].err.msg);
  free(jobs), free(tid);
}

/* Runs the kernel as 1 part and as each of several part counts (over NaN-filled outputs, so
 * an element no part writes shows), and compares with `want` (double). */
static void check_splits(int op, const void *attr, int n_in, const double *const *in64,
                         const fg_shape *in_shape, fg_shape out_shape, const double *want,
                         int64_t terms) {
  static const int part_counts[] = {1, 2, 3, 5, 8, 64};
  int64_t n_out = fg_shape_count(&out_shape);
  for (int ti = 0; ti < 2; ti++) {
    fg_dtype t = ti ? FG_F64 : FG_F32;
    void *in[4];
    for (int i = 0; i < n_in; i++) in[i] = typed_copy(in64[i], fg_shape_count(&in_shape[i]), t);
    for (size_t pc = 0; pc < sizeof part_counts / sizeof *part_counts; pc++) {
      void *out = nan_filled(n_out, t);
      run_parts(op, t, attr, n_in, (const void *const *)in, in_shape, out, out_shape,
                part_counts[pc]);
      for (int64_t e = 0; e < n_out; e++)
        cr_assert(fabs(get(out, t, e) - want[e]) <= tol_for(t, terms) * (1 + fabs(want[e])),
                  "%s %s in %d parts: element %lld = %.17g, want %.17g", fg_op_get(op)->name,
                  fg_dtype_name(t), part_counts[pc], (long long)e, get(out, t, e), want[e]);
      free(out);
    }
    for (int i = 0; i < n_in; i++) free(in[i]);
  }
}

Test(matmul, any_split_into_threads_matches_naive_loops) {
  /* a [2,1,20,70] read transposed is [2,1,70,20]; b [3,140,20] read transposed is [3,20,140];
   * out [2,3,70,140]: 420 rows and 140 columns, enough for 64 x 64 tiles in both directions,
   * some spanning two matrices. */
  enum { M = 70, K = 20, N = 140 };
  fg_shape in_shape[2] = {fg_shape4(2, 1, K, M), fg_shape3(3, N, K)};
  fg_shape out_shape = fg_shape4(2, 3, M, N);
  double *a = random_doubles(2 * K * M, 4), *b = random_doubles(3 * N * K, 5);
  double *want = calloc(6 * M * N, sizeof *want);
  for (int64_t i0 = 0; i0 < 2; i0++)
    for (int64_t i1 = 0; i1 < 3; i1++)
      for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
          double s = 0;
          for (int64_t p = 0; p < K; p++)
            s += a[i0 * K * M + p * M + i] * b[i1 * N * K + j * K + p];
          want[((i0 * 3 + i1) * M + i) * N + j] = s;
        }
  fg_matmul_attr attr;
  memset(&attr, 0, sizeof attr);
  attr.trans_a = attr.trans_b = 1;
  const double *in[2] = {a, b};
  check_splits(FG_OP_MATMUL, &attr, 2, in, in_shape, out_shape, want, K);
  free(a), free(b), free(want);
}

/* ---- conv: naive loops over one geometry ---- */

typedef struct geom {
  int64_t n, c, h, w, o, kh, kw;
  fg_conv2d_opts opts;
} geom;

static int64_t extent(int64_t in, int64_t k, int64_t s, int64_t p, int64_t d) {
  return (in + 2 * p - d * (k - 1) - 1) / s + 1;
}

/* y, gx and gw for x, w and dy, accumulated by direct loops. */
static void naive_conv(const geom *g, const double *x, const double *w, const double *dy,
                       double *y, double *gx, double *gw) {
  const fg_conv2d_opts *o = &g->opts;
  int64_t ho = extent(g->h, g->kh, o->stride[0], o->padding[0], o->dilation[0]);
  int64_t wo = extent(g->w, g->kw, o->stride[1], o->padding[1], o->dilation[1]);
  for (int64_t n = 0; n < g->n; n++)
    for (int64_t oc = 0; oc < g->o; oc++)
      for (int64_t i = 0; i < ho; i++)
        for (int64_t j = 0; j < wo; j++)
          for (int64_t c = 0; c < g->c; c++)
            for (int64_t p = 0; p < g->kh; p++)
              for (int64_t q = 0; q < g->kw; q++) {
                int64_t hh = i * o->stride[0] - o->padding[0] + p * o->dilation[0];
                int64_t ww = j * o->stride[1] - o->padding[1] + q * o->dilation[1];
                if (hh < 0 || hh >= g->h || ww < 0 || ww >= g->w) continue;
                int64_t xi = ((n * g->c + c) * g->h + hh) * g->w + ww;
                int64_t wi = ((oc * g->c + c) * g->kh + p) * g->kw + q;
                int64_t yi = ((n * g->o + oc) * ho + i) * wo + j;
                y[yi] += x[xi] * w[wi];
                gx[xi] += dy[yi] * w[wi];
                gw[wi] += x[xi] * dy[yi];
              }
}

static void check_conv_geometry(const geom *g) {
  const fg_conv2d_opts *o = &g->opts;
  int64_t ho = extent(g->h, g->kh, o->stride[0], o->padding[0], o->dilation[0]);
  int64_t wo = extent(g->w, g->kw, o->stride[1], o->padding[1], o->dilation[1]);
  fg_shape xs = fg_shape4(g->n, g->c, g->h, g->w), ws = fg_shape4(g->o, g->c, g->kh, g->kw);
  fg_shape ys = fg_shape4(g->n, g->o, ho, wo);
  int64_t nx = fg_shape_count(&xs), nw = fg_shape_count(&ws), ny = fg_shape_count(&ys);
  double *x = random_doubles(nx, 6), *w = random_doubles(nw, 7), *dy = random_doubles(ny, 8);
  double *y = calloc((size_t)ny, sizeof *y), *gx = calloc((size_t)nx, sizeof *gx);
  double *gw = calloc((size_t)nw, sizeof *gw);
  naive_conv(g, x, w, dy, y, gx, gw);
  fg_conv2d_attr attr;
  memset(&attr, 0, sizeof attr);
  attr.geom = *o;
  int64_t taps = g->c * g->kh * g->kw;
  const double *fwd_in[2] = {x, w}, *ig_in[2] = {dy, w}, *wg_in[2] = {x, dy};
  fg_shape fwd_shapes[2] = {xs, ws}, ig_shapes[2] = {ys, ws}, wg_shapes[2] = {xs, ys};
  check_splits(FG_OP_CONV2D, &attr, 2, fwd_in, fwd_shapes, ys, y, taps);
  /* conv2d_bias_act (relu) on the same path: the epilogue of every forward kernel */
  double *b = random_doubles(g->o, 9), *yb = calloc((size_t)ny, sizeof *yb);
  for (int64_t i = 0; i < ny; i++) {
    double v = y[i] + b[i / (ho * wo) % g->o];
    yb[i] = v > 0 ? v : 0;
  }
  fg_conv2d_bias_act_attr ba = {.geom = *o, .relu = 1};
  const double *ba_in[3] = {x, w, b};
  fg_shape ba_shapes[3] = {xs, ws, fg_shape1(g->o)};
  check_splits(FG_OP_CONV2D_BIAS_ACT, &ba, 3, ba_in, ba_shapes, ys, yb, taps + 1);
  free(b), free(yb);
  attr.size[0] = g->h, attr.size[1] = g->w;
  check_splits(FG_OP_CONV2D_INPUT_GRAD, &attr, 2, ig_in, ig_shapes, xs, gx, g->o * g->kh * g->kw);
  attr.size[0] = g->kh, attr.size[1] = g->kw;
  check_splits(FG_OP_CONV2D_WEIGHT_GRAD, &attr, 2, wg_in, wg_shapes, ws, gw, g->n * ho * wo);
  free(x), free(w), free(dy), free(y), free(gx), free(gw);
}

Test(conv, any_split_into_threads_matches_naive_loops) {
  geom g = {.n = 3, .c = 4, .h = 9, .w = 8, .o = 5, .kh = 3, .kw = 2,
            .opts = {{2, 1}, {1, 2}, {1, 2}}};
  check_conv_geometry(&g);
}

/* Big enough that the im2col kernels use several parts: 256 output pixels, 32 (image,
 * channel) items, and 130 x 144 weight-gradient tiles. */
Test(conv, tiled_split_into_threads_matches_naive_loops) {
  geom g = {.n = 2, .c = 16, .h = 16, .w = 16, .o = 130, .kh = 3, .kw = 3,
            .opts = {{2, 1}, {1, 1}, {1, 1}}};
  check_conv_geometry(&g);
}

/* Stride 1 with 6 output and 5 input channels: the direct kernel's 4-channel blocks and its
 * single-channel remainder, with padding on one axis and dilation on the other. */
Test(conv, stride_one_split_into_threads_matches_naive_loops) {
  geom g = {.n = 2, .c = 5, .h = 6, .w = 9, .o = 6, .kh = 2, .kw = 3,
            .opts = {{1, 1}, {1, 0}, {2, 1}}};
  check_conv_geometry(&g);
}

Test(conv, pointwise_split_into_threads_matches_naive_loops) {
  geom g = {.n = 3, .c = 6, .h = 5, .w = 7, .o = 4, .kh = 1, .kw = 1,
            .opts = {{1, 1}, {0, 0}, {1, 1}}};
  check_conv_geometry(&g);
}

/* The direct kernels' register blocks and their remainders: 12x12 padded to 14-wide rows is
 * 166 outputs per plane (11 float vectors: a block of 6 and one of 5; 22 double vectors),
 * 7 output channels (a block of 4 and one of 3), 45 taps (7 blocks of 6 and 3 single taps). */
Test(conv, direct_blocks_and_remainders_match_naive_loops) {
  geom g = {.n = 3, .c = 5, .h = 12, .w = 12, .o = 7, .kh = 3, .kw = 3,
            .opts = {{1, 1}, {1, 1}, {1, 1}}};
  check_conv_geometry(&g);
}

/* Rows wider than one 512-bit vector on both sides of the direct kernels' copies (21 columns
 * padded to 25, 23 outputs per row), and padding the input gradient crops (a 3x1 kernel
 * padded by 1 column: its correlation starts one column inside dy). */
Test(conv, direct_wide_and_cropped_rows_match_naive_loops) {
  geom wide = {.n = 2, .c = 3, .h = 5, .w = 21, .o = 6, .kh = 3, .kw = 3,
               .opts = {{1, 1}, {1, 2}, {1, 1}}};
  check_conv_geometry(&wide);
  geom cropped = {.n = 2, .c = 4, .h = 6, .w = 19, .o = 5, .kh = 3, .kw = 1,
                  .opts = {{1, 1}, {2, 1}, {1, 1}}};
  check_conv_geometry(&cropped);
}

/* 70 output channels: the direct weight gradient splits over output channels too (under
 * FG_CONV_PATH=direct; by default this shape runs im2col + GEMM), with 2 and 1 channel
 * remainders in the 4-row blocks of the forward and input-gradient kernels. */
Test(conv, direct_weight_grad_channel_tiles_match_naive_loops) {
  geom g = {.n = 2, .c = 3, .h = 9, .w = 9, .o = 70, .kh = 3, .kw = 3,
            .opts = {{1, 1}, {1, 1}, {1, 1}}};
  check_conv_geometry(&g);
}

/* 24x24 images (576 pixels), 40 output channels and 36 taps: the weight gradient runs direct
 * on large images whatever the channel counts. */
Test(conv, large_images_weight_grad_matches_naive_loops) {
  geom g = {.n = 2, .c = 4, .h = 24, .w = 24, .o = 40, .kh = 3, .kw = 3,
            .opts = {{1, 1}, {1, 1}, {1, 1}}};
  check_conv_geometry(&g);
}

/* 32 -> 36 channels, 3x3: many channels on both sides but 10,368 weights, so by default all
 * three ops run direct; their weight transposes cross 16x16 tiles with remainders (36 x 288). */
Test(conv, many_channels_small_weights_match_naive_loops) {
  geom g = {.n = 2, .c = 32, .h = 6, .w = 7, .o = 36, .kh = 3, .kw = 3,
            .opts = {{1, 1}, {1, 1}, {1, 1}}};
  check_conv_geometry(&g);
}

/* 5 images of 4 channels at 45x45: the direct weight gradient's padded images take more than
 * its group bound (2^15 elements) together, so it sums groups of 2, 2 and 1 images. */
Test(conv, direct_weight_grad_image_groups_match_naive_loops) {
  geom g = {.n = 5, .c = 4, .h = 45, .w = 45, .o = 2, .kh = 3, .kw = 3,
            .opts = {{1, 1}, {1, 1}, {1, 1}}};
  check_conv_geometry(&g);
}

/* 64 channels of 45x45 with a 3x3 kernel: every im2col kernel's scratch (2^20 elements) holds
 * less than one image's column matrix, so each works in chunks, and the weight gradient sums
 * chunks of one image (under FG_CONV_PATH=gemm; by default this shape runs direct). */
Test(conv, chunked_scratch_matches_naive_loops, .timeout = 120) {
  geom g = {.n = 2, .c = 64, .h = 45, .w = 45, .o = 2, .kh = 3, .kw = 3,
            .opts = {{1, 1}, {1, 1}, {1, 1}}};
  check_conv_geometry(&g);
}
