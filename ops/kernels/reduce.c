/* The reduction kernels (ops/reduce.c defines sum and max).  Both share one plan: adjacent
 * axes of the same kind (reduced or kept) merge and size-1 axes drop out, so any reduction
 * becomes "kept rows x reduced blocks x an inner run of kept elements that are contiguous in
 * input and output".  Each output element accumulates its inputs in row-major order of the
 * reduced axes, in double, whatever part of the output a thread owns, so results are
 * bit-identical for any thread count. */
#include <math.h>
#include <string.h>

#include "ops/kernels/kernels.h"
#include "ops/kernels/simd.h"

/* Output element o = row * inner + col reads input elements
 *   row_offset(row) + red_offset(r) + t * last_s + col
 * for every combination r of the outer reduced groups and t < last_d. */
typedef struct reduce_plan {
  bool empty_input;                             /* every reduction is over zero elements */
  int n_keep, n_red;                            /* outer kept / reduced groups */
  int64_t keep_d[FG_MAX_DIMS], keep_s[FG_MAX_DIMS];
  int64_t red_d[FG_MAX_DIMS], red_s[FG_MAX_DIMS];
  int64_t last_d, last_s;                       /* innermost reduced group */
  int64_t inner;                                /* trailing kept run, contiguous */
} reduce_plan;

/* Groups adjacent axes of one kind; returns the group count. */
static int group_axes(const fg_shape *in, uint32_t axes, int64_t *gd, bool *gred) {
  int n = 0;
  for (int i = 0; i < in->ndim; i++) {
    if (in->d[i] == 1) continue; /* moves no offset and changes no order */
    bool red = (axes & FG_AXIS(i)) != 0;
    if (n > 0 && gred[n - 1] == red) {
      gd[n - 1] *= in->d[i];
    } else {
      gd[n] = in->d[i];
      gred[n++] = red;
    }
  }
  return n;
}

static void reduce_plan_make(const fg_shape *in, uint32_t axes, reduce_plan *p) {
  memset(p, 0, sizeof *p);
  /* An empty input makes every output element an empty reduction; deciding that first keeps
   * the group products below (bounded by the input's size) from overflowing. */
  p->empty_input = fg_shape_count(in) == 0;
  if (p->empty_input) return;
  int64_t gd[FG_MAX_DIMS], gs[FG_MAX_DIMS];
  bool gred[FG_MAX_DIMS];
  int n = group_axes(in, axes, gd, gred);
  for (int i = n - 1; i >= 0; i--) gs[i] = i == n - 1 ? 1 : gs[i + 1] * gd[i + 1];
  p->inner = 1;
  if (n > 0 && !gred[n - 1]) p->inner = gd[--n];
  p->last_d = 1; /* no reduced group at all: each output reads exactly one input */
  if (n > 0) {
    p->last_d = gd[n - 1];
    p->last_s = gs[n - 1];
    n--;
  }
  for (int i = 0; i < n; i++) {
    if (gred[i]) {
      p->red_d[p->n_red] = gd[i];
      p->red_s[p->n_red++] = gs[i];
    } else {
      p->keep_d[p->n_keep] = gd[i];
      p->keep_s[p->n_keep++] = gs[i];
    }
  }
}

/* Input offset of output row `row` (row-major over the outer kept groups). */
static int64_t row_offset(const reduce_plan *p, int64_t row) {
  int64_t off = 0;
  for (int i = p->n_keep - 1; i >= 0; i--) {
    off += (row % p->keep_d[i]) * p->keep_s[i];
    row /= p->keep_d[i];
  }
  return off;
}

/* Row-major walk over the outer reduced groups. */
typedef struct red_cursor {
  int64_t idx[FG_MAX_DIMS];
  int64_t off;
} red_cursor;

static void red_cursor_start(red_cursor *c) { memset(c, 0, sizeof *c); }

/* Steps to the next combination; false after the last one. */
static bool red_cursor_next(red_cursor *c, const reduce_plan *p) {
  for (int i = p->n_red - 1; i >= 0; i--) {
    c->off += p->red_s[i];
    if (++c->idx[i] < p->red_d[i]) return true;
    c->off -= c->idx[i] * p->red_s[i];
    c->idx[i] = 0;
  }
  return false;
}

/* The kernel's share of the output, and the plan for it. */
static void reduce_prepare(const fg_kargs *k, reduce_plan *p, int64_t *b, int64_t *e) {
  const fg_reduce_attr *at = k->attr;
  const fg_shape *in = &k->in_shape[0];
  reduce_plan_make(in, fg_reduce_axes(at->axes, in->ndim), p);
  fg_split_range(fg_shape_count(&k->out_shape), k->ith, k->nth, b, e);
}

/* Columns accumulated together: enough for a vector loop, small enough for the stack. */
#define REDUCE_CHUNK 64

#define SUM_INIT 0.0
#define SUM_COMBINE(acc, v) ((acc) += (v))
#define MAX_INIT (-INFINITY)
/* NaN wins, as in NumPy and PyTorch: once acc is NaN no comparison replaces it. */
#define MAX_COMBINE(acc, v) ((acc) = ((v) > (acc) || isnan(v)) ? (v) : (acc))

/* Reducing contiguous runs (the innermost axes reduced, as in a bias gradient or a per-sample
 * log-det): ROW_LANES independent accumulators per output break the dependency chain of one
 * running sum and let the compiler vectorise; they are combined in a fixed order, so the result
 * does not depend on how the outputs were split among threads; each output's lanes are copied
 * into a local array for its run so that they stay in registers.  ROW_CHUNK outputs are reduced
 * together, every output's run of one reduced block before the next block, so a bias gradient
 * over [N, C, H, W] reads each image's channels in memory order; each output still adds its
 * elements in the same order.  [64, 128, 14, 14] -> [128] on warm data, 2 threads: 0.26-0.35 ms
 * with 8 lanes one output at a time, 0.13-0.2 ms now (AMD EPYC).  A run's tail (4 of 196
 * elements, 17 of 49) goes through the lanes as a whole vector padded with INIT, which leaves a
 * lane as it was (a sum's lanes start at +0 and never become -0), so the results are the same
 * bits as one element at a time; Glow K=8's 7x7 bias-gradient sums 2.9 -> 2.2-2.3 ms a step
 * (FG_PROFILE, AMD EPYC, builds alternating). */
#define ROW_LANES FG_ROW_LANES
#define ROW_CHUNK 64
/* One run of len elements at v into the lanes l (a local array, so that they stay in
 * registers): whole vectors of ROW_LANES, then the tail padded with INIT. */
#define LANES_ADD_RUN(T, l, v, len, INIT, COMBINE)                                          \
  do {                                                                                    \
    int64_t t = 0;                                                                        \
    for (; t + ROW_LANES <= (len); t += ROW_LANES)                                        \
      for (int j = 0; j < ROW_LANES; j++) COMBINE(l[j], (double)(v)[t + j]);              \
    if (t < (len)) { /* the tail as a whole vector, the rest of it INIT */                 \
      T tail[ROW_LANES];                                                                  \
      for (int j = 0; j < ROW_LANES; j++) tail[j] = t + j < (len) ? (v)[t + j] : (T)(INIT); \
      for (int j = 0; j < ROW_LANES; j++) COMBINE(l[j], (double)tail[j]);                 \
    }                                                                                     \
  } while (0)
/* A row's lanes l combined in order into acc. */
#define LANES_TOTAL(acc, l, COMBINE)                                                       \
  do {                                                                                    \
    acc = (l)[0];                                                                         \
    for (int j = 1; j < ROW_LANES; j++) COMBINE(acc, (l)[j]);                             \
  } while (0)
#define DEFINE_REDUCE_ROWS(op, T, sfx, INIT, COMBINE)                                    \
  FG_SIMD_CLONES static void op##_rows_##sfx(const T *in, const reduce_plan *p, int64_t o0, \
                                             int64_t n, T *out) {                          \
    double lane[ROW_CHUNK][ROW_LANES];                                                    \
    int64_t base[ROW_CHUNK];                                                              \
    for (int64_t i = 0; i < n; i++) {                                                     \
      base[i] = row_offset(p, o0 + i);                                                    \
      for (int j = 0; j < ROW_LANES; j++) lane[i][j] = (INIT);                            \
    }                                                                                     \
    red_cursor c;                                                                         \
    red_cursor_start(&c);                                                                 \
    do {                                                                                  \
      for (int64_t i = 0; i < n; i++) {                                                   \
        const T *v = in + base[i] + c.off;                                                \
        double l[ROW_LANES]; /* in registers while the run is read */                     \
        memcpy(l, lane[i], sizeof l);                                                     \
        LANES_ADD_RUN(T, l, v, p->last_d, INIT, COMBINE);                                 \
        memcpy(lane[i], l, sizeof l);                                                     \
      }                                                                                   \
    } while (red_cursor_next(&c, p));                                                     \
    for (int64_t i = 0; i < n; i++) {                                                     \
      double acc;                                                                         \
      LANES_TOTAL(acc, lane[i], COMBINE);                                                 \
      out[o0 + i] = (T)acc;                                                               \
    }                                                                                     \
  }

DEFINE_REDUCE_ROWS(sum, float, f32, SUM_INIT, SUM_COMBINE)
DEFINE_REDUCE_ROWS(sum, double, f64, SUM_INIT, SUM_COMBINE)
DEFINE_REDUCE_ROWS(max, float, f32, MAX_INIT, MAX_COMBINE)
DEFINE_REDUCE_ROWS(max, double, f64, MAX_INIT, MAX_COMBINE)

/* The sum rows' lanes for kernels that meet the rows a block at a time (kernels.h). */
#define DEFINE_ROW_LANES_ADD(T, sfx)                                                          \
  FG_SIMD_CLONES static void row_lanes_add_##sfx(double *lanes, const T *x, int64_t rows,    \
                                                 int64_t len, int64_t ld) {                  \
    for (int64_t r = 0; r < rows; r++) {                                                     \
      double l[ROW_LANES];                                                                   \
      memcpy(l, lanes + r * ROW_LANES, sizeof l);                                            \
      LANES_ADD_RUN(T, l, x + r * ld, len, SUM_INIT, SUM_COMBINE);                           \
      memcpy(lanes + r * ROW_LANES, l, sizeof l);                                            \
    }                                                                                        \
  }
DEFINE_ROW_LANES_ADD(float, f32)
DEFINE_ROW_LANES_ADD(double, f64)

void fg_row_lanes_add_f64(double *lanes, const double *x, int64_t rows, int64_t len,
                          int64_t ld) {
  row_lanes_add_f64(lanes, x, rows, len, ld);
}

#if defined(__x86_64__) && defined(__GNUC__)
_Static_assert(ROW_LANES == 32, "row_lanes_add_f32_avx512 keeps a row's lanes in 4 x 8 doubles");
/* The same in AVX-512 by hand: a row's 32 lanes in four registers, the tail by masked loads
 * (zeros: +0, as the padded tail adds), so the same bits.  The compiled loop kept the lanes on
 * the stack around the tail: 1.7 % of Glow K=16's training step, where the conv weight
 * gradients sum each image's dy rows ("Intel(R) Xeon(R) Processor", perf). */
__attribute__((target("avx512f"))) static void row_lanes_add_f32_avx512(
    double *lanes, const float *x, int64_t rows, int64_t len, int64_t ld) {
  for (int64_t r = 0; r < rows; r++, lanes += ROW_LANES, x += ld) {
    __m512d l[4];
    _Pragma("GCC unroll 4") for (int j = 0; j < 4; j++) l[j] = _mm512_loadu_pd(lanes + 8 * j);
    int64_t t = 0;
    for (; t + ROW_LANES <= len; t += ROW_LANES)
      _Pragma("GCC unroll 4") for (int j = 0; j < 4; j++)
        l[j] = _mm512_add_pd(l[j], _mm512_cvtps_pd(_mm256_loadu_ps(x + t + 8 * j)));
    if (t < len) {
      int64_t left = len - t;
      for (int h = 0; h < 2; h++) {
        int64_t n = left - 16 * h;
        __m512 v = _mm512_maskz_loadu_ps(fg_lanes16(n), x + t + 16 * h);
        __m256 lo = _mm512_castps512_ps256(v);
        __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
        l[2 * h] = _mm512_add_pd(l[2 * h], _mm512_cvtps_pd(lo));
        l[2 * h + 1] = _mm512_add_pd(l[2 * h + 1], _mm512_cvtps_pd(hi));
      }
    }
    _Pragma("GCC unroll 4") for (int j = 0; j < 4; j++) _mm512_storeu_pd(lanes + 8 * j, l[j]);
  }
}
#endif

void fg_row_lanes_add_f32(double *lanes, const float *x, int64_t rows, int64_t len,
                          int64_t ld) {
#if defined(__x86_64__) && defined(__GNUC__)
  if (__builtin_cpu_supports("avx512f")) {
    row_lanes_add_f32_avx512(lanes, x, rows, len, ld);
    return;
  }
#endif
  row_lanes_add_f32(lanes, x, rows, len, ld);
}

double fg_row_lanes_total(const double *lanes) {
  double acc;
  LANES_TOTAL(acc, lanes, SUM_COMBINE);
  return acc;
}

/* One body for every (op, type) pair: stamps out fn. */
#define DEFINE_REDUCE_KERNEL(fn, op, T, sfx, INIT, COMBINE)                             \
  FG_SIMD_CLONES fg_status fn(const fg_kargs *k) {                                       \
    reduce_plan p;                                                                       \
    int64_t b, e;                                                                        \
    reduce_prepare(k, &p, &b, &e);                                                       \
    const T *in = k->in[0];                                                              \
    T *out = k->out;                                                                     \
    if (p.empty_input) {                                                                 \
      for (int64_t o = b; o < e; o++) out[o] = (T)(INIT);                                \
      return FG_OK;                                                                      \
    }                                                                                    \
    if (p.inner == 1 && p.last_s == 1) {                                                 \
      for (int64_t o = b; o < e; o += ROW_CHUNK)                                         \
        op##_rows_##sfx(in, &p, o, e - o < ROW_CHUNK ? e - o : ROW_CHUNK, out);          \
      return FG_OK;                                                                      \
    }                                                                                    \
    double acc[REDUCE_CHUNK];                                                            \
    for (int64_t o = b; o < e;) {                                                        \
      int64_t col = o % p.inner, n = p.inner - col;                                      \
      if (n > e - o) n = e - o;                                                          \
      if (n > REDUCE_CHUNK) n = REDUCE_CHUNK;                                            \
      for (int64_t j = 0; j < n; j++) acc[j] = (INIT);                                   \
      const T *base = in + row_offset(&p, o / p.inner) + col;                            \
      red_cursor c;                                                                      \
      red_cursor_start(&c);                                                              \
      do {                                                                               \
        for (int64_t t = 0; t < p.last_d; t++) {                                         \
          const T *v = base + c.off + t * p.last_s;                                      \
          for (int64_t j = 0; j < n; j++) COMBINE(acc[j], (double)v[j]);                 \
        }                                                                                \
      } while (red_cursor_next(&c, &p));                                                 \
      for (int64_t j = 0; j < n; j++) out[o + j] = (T)acc[j];                            \
      o += n;                                                                            \
    }                                                                                    \
    return FG_OK;                                                                        \
  }

/* The per-channel sum of a [N, C, H, W] float32 input in the blocked layout [N, C/16, H, W, 16]
 * (a bias gradient the layout plan kept blocked, core/ir/op.h).  The 16 channels of a block are
 * contiguous lanes; a part owns whole blocks (splitting a block would read it once per part),
 * and each channel adds its elements in double in a fixed order (image by image, positions
 * dealt round-robin to BLOCK_SUM_SETS accumulators for instruction-level parallelism, combined
 * in order), so results do not depend on the split. */
#define BLOCK_SUM_SETS 4
FG_SIMD_CLONES static fg_status channel_sum_blocked_f32(const fg_kargs *k) {
  const fg_shape *s = &k->in_shape[0];
  int64_t n = s->d[0], blocks = s->d[1] / 16, hw = s->d[2] * s->d[3], b, e;
  const float *in = k->in[0];
  float *out = k->out;
  fg_split_range(blocks, k->ith, k->nth, &b, &e);
  for (int64_t cb = b; cb < e; cb++) {
    double acc[BLOCK_SUM_SETS][16] = {{0}};
    for (int64_t i = 0; i < n; i++) {
      const float *v = in + (i * blocks + cb) * hw * 16;
      int64_t t = 0;
      for (; t + BLOCK_SUM_SETS <= hw; t += BLOCK_SUM_SETS)
        for (int a = 0; a < BLOCK_SUM_SETS; a++)
          for (int j = 0; j < 16; j++) acc[a][j] += (double)v[(t + a) * 16 + j];
      for (; t < hw; t++)
        for (int j = 0; j < 16; j++) acc[t % BLOCK_SUM_SETS][j] += (double)v[t * 16 + j];
    }
    for (int j = 0; j < 16; j++) {
      double sum = acc[0][j];
      for (int a = 1; a < BLOCK_SUM_SETS; a++) sum += acc[a][j];
      out[cb * 16 + j] = (float)sum;
    }
  }
  return FG_OK;
}

/* The float32 sum: over a blocked input only per channel (the one reduction the layout plan
 * gives a blocked input), else by the plan above. */
static DEFINE_REDUCE_KERNEL(sum_rowmajor_f32, sum, float, f32, SUM_INIT, SUM_COMBINE)
fg_status fg_kernel_sum_f32(const fg_kargs *k) {
  return k->blocked & 1u ? channel_sum_blocked_f32(k) : sum_rowmajor_f32(k);
}
DEFINE_REDUCE_KERNEL(fg_kernel_sum_f64, sum, double, f64, SUM_INIT, SUM_COMBINE)
DEFINE_REDUCE_KERNEL(fg_kernel_max_f32, max, float, f32, MAX_INIT, MAX_COMBINE)
DEFINE_REDUCE_KERNEL(fg_kernel_max_f64, max, double, f64, MAX_INIT, MAX_COMBINE)


/* cumsum: each part owns whole columns (every position but the axis), scanned in order and
 * accumulated in double, so results do not depend on the split. */
#define CUMSUM_BODY(T)                                                                  \
  const fg_cumsum_attr *at = k->attr;                                                   \
  const fg_shape *s = &k->in_shape[0];                                                  \
  const T *in = k->in[0];                                                               \
  T *out = k->out;                                                                      \
  int64_t n = s->d[at->axis], inner = 1, outer = 1, b, e;                               \
  for (int d = 0; d < s->ndim; d++)                                                     \
    if (d < at->axis) outer *= s->d[d];                                                 \
    else if (d > at->axis) inner *= s->d[d];                                            \
  fg_split_range(outer * inner, k->ith, k->nth, &b, &e);                                \
  for (int64_t col = b; col < e; col++) {                                               \
    int64_t base = col / inner * n * inner + col % inner;                               \
    double acc = 0;                                                                     \
    for (int64_t t = 0; t < n; t++) {                                                   \
      int64_t j = base + (at->reverse ? n - 1 - t : t) * inner;                         \
      acc += (double)in[j];                                                             \
      out[j] = (T)acc;                                                                  \
    }                                                                                   \
  }                                                                                     \
  return FG_OK;

fg_status fg_kernel_cumsum_f32(const fg_kargs *k) { CUMSUM_BODY(float) }
fg_status fg_kernel_cumsum_f64(const fg_kargs *k) { CUMSUM_BODY(double) }
