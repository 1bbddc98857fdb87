/* The float32 kernels of the taps path's gradients with few input channels (Glow's first conv
 * of a coupling net, 2 or 4 -> 256, 3x3; ops/kernels/conv_taps.c): dy [O][S] (S pixels a
 * plane) and X [R][S] (x's R = C KK tap planes, gathered with aligned planes),
 *  - the weight gradient's lanes: lanes[o][r][l] += sum over a group of images and their
 *    pixels p = 16 v + l of dy[o][p] X[r][p] (dot products along the pixels, 16 at a time,
 *    whose lanes wait in memory for the part's last group: fg_conv_taps_lanes_total);
 *  - an image's input gradient's tap planes: T[r][p] = sum_o wt[r][o] dy[o][p].
 * Why not sgemm: with R = 18 or 36 one side of each GEMM is small, and sgemm packs all of dy
 * for a few rows or columns, waiting on its reads from memory, twice an image.  These read dy
 * in place, row by row (4 rows at a time for the weight gradient, which the hardware
 * prefetchers stream), and fetch the next group's dy into L2 while they multiply.  One core of
 * "Intel(R) Xeon(R) Processor", 256 x 18 at 14x14, dy in L2: the weight gradient 101-121
 * GFLOP/s, the input gradient 124-145; in the op (2 -> 256 at 14x14, batch 64, 2 threads) 1.62-
 * 1.67 ms against sgemm's 1.91-1.93 warm, 1.65-1.67 against 1.94-2.04 on a dy just written.
 *
 * Blocking.  Weight gradient: 4 rows of dy x 6 tap planes, 24 sums in registers over all the
 * group's vectors, then added to their lanes.  Input gradient: 6 tap planes x up to 4 vectors
 * of pixels, 24 sums over all of O, wt's 6 rows broadcast.  A plane's last vector takes its live
 * lanes only (masked loads: dy past a row is the next row, which may hold anything).
 * Sums run in a fixed order for every shape: results never depend on the thread count.
 * AVX-512 only, where the 1x1 convs' kernel runs (fg_conv_pointwise_available); elsewhere
 * conv_taps.c takes its GEMMs. */
#include <stdbool.h>
#include <stdint.h>

#include "ops/kernels/conv_internal.h"
#include "ops/kernels/simd.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define FI_X86 1
#endif

enum {
  FI_OB = 4, /* dy rows of a weight-gradient block */
  FI_RB = 6, /* tap planes of a block (both gradients) */
  FI_PV = 4, /* vectors of pixels of an input-gradient block */
};

#ifdef FI_X86
#define FI_BLOCK static inline __attribute__((always_inline, target("avx512f,fma")))
#define FI_ATTR __attribute__((target("avx512f,fma")))

/* The next images' lines a block prefetches into L2, a few each vector step.  (The next
 * rows of dy into L1 as well: 97-98 GFLOP/s against 107-110 without, one core, dy in L2.) */
typedef struct fi_prefetch {
  const char *at;
  int64_t lines;
} fi_prefetch;

FI_BLOCK void fi_prefetch_some(fi_prefetch *pf, int64_t n) {
  for (int64_t q = 0; q < n && pf->lines > 0; q++, pf->lines--, pf->at += 64)
    _mm_prefetch(pf->at, _MM_HINT_T1);
}

/* 16 floats at p, or the lanes of m only (zeros elsewhere).  Masked loads in every step cost
 * the weight gradient a quarter of its speed (112-114 GFLOP/s against 148 on one core of
 * "Intel(R) Xeon(R) Processor", data in L1; they seem to take a uop on the FMA ports besides
 * the load), so only a plane's last vector takes them. */
FI_BLOCK __m512 fi_load(const float *p, __mmask16 m, const bool MASKED) {
  return MASKED ? _mm512_maskz_loadu_ps(m, p) : _mm512_loadu_ps(p);
}

/* One vector step of a weight-gradient block: dy's rows at dy, the planes at x. */
FI_BLOCK void fi_wgrad_step(__m512 *acc, const float *dy, const float *x, int64_t s,
                            int64_t xs, __mmask16 m, const int OB, const int RB,
                            const bool MASKED) {
  __m512 a[FI_OB];
  _Pragma("GCC unroll 4") for (int i = 0; i < OB; i++) a[i] = fi_load(dy + i * s, m, MASKED);
  /* a plane's vector at a time: 24 sums, 4 of dy and 1 of X in registers */
  _Pragma("GCC unroll 6") for (int j = 0; j < RB; j++) {
    __m512 b = fi_load(x + j * xs, m, MASKED);
    _Pragma("GCC unroll 4") for (int i = 0; i < OB; i++)
      acc[i * RB + j] = _mm512_fmadd_ps(a[i], b, acc[i * RB + j]);
  }
}

/* Weight gradient, dy rows [o, o + OB) x tap planes [r, r + RB): their sums over the images'
 * vectors (an image's last with tail lanes) added to their lanes. */
FI_BLOCK void fi_wgrad_block(const fg_taps_few_in *f, int64_t o, int64_t r, __mmask16 tail,
                             fi_prefetch *pf, const int OB, const int RB) {
  const int64_t s = f->s, nvec = (s + 15) / 16, rows = f->rows, xs = f->x_stride;
  __m512 acc[FI_OB * FI_RB];
  _Pragma("GCC unroll 24") for (int i = 0; i < OB * RB; i++) acc[i] = _mm512_setzero_ps();
  for (int64_t n = 0; n < f->images; n++) {
    const float *dy = f->dy + n * f->o * s + o * s, *x = f->x + (n * rows + r) * xs;
    for (int64_t v = 0; v + 1 < nvec; v++, dy += 16, x += 16) {
      fi_prefetch_some(pf, 2);
      fi_wgrad_step(acc, dy, x, s, xs, 0, OB, RB, false);
    }
    fi_wgrad_step(acc, dy, x, s, xs, tail, OB, RB, true);
  }
  bool first = f->first;
  float *lanes = f->lanes + (o * rows + r) * 16;
  _Pragma("GCC unroll 4") for (int i = 0; i < OB; i++, lanes += rows * 16)
    _Pragma("GCC unroll 6") for (int j = 0; j < RB; j++) {
      __m512 sum = acc[i * RB + j];
      if (!first) sum = _mm512_add_ps(_mm512_loadu_ps(lanes + 16 * j), sum);
      _mm512_storeu_ps(lanes + 16 * j, sum);
    }
}

/* All tap planes of dy rows [o, o + OB): blocks of 6 planes, then 3, then 1. */
FI_BLOCK void fi_wgrad_rows(const fg_taps_few_in *f, int64_t o, __mmask16 tail,
                            fi_prefetch *pf, const int OB) {
  int64_t r = 0;
  for (; r + 6 <= f->rows; r += 6) fi_wgrad_block(f, o, r, tail, pf, OB, 6);
  for (; r + 3 <= f->rows; r += 3) fi_wgrad_block(f, o, r, tail, pf, OB, 3);
  for (; r < f->rows; r++) fi_wgrad_block(f, o, r, tail, pf, OB, 1);
}

/* The lines of next (n floats) a block of rows prefetches: an even share of them, in order. */
static fi_prefetch fi_share(const float *next, int64_t n, int64_t block, int64_t blocks) {
  int64_t lines = next ? (n * 4 + 63) / 64 : 0, per = (lines + blocks - 1) / blocks;
  int64_t at = min64(block * per, lines);
  return (fi_prefetch){next ? (const char *)next + 64 * at : NULL, min64(per, lines - at)};
}

FI_ATTR static void fi_wgrad(const fg_taps_few_in *f) {
  int64_t nvec = (f->s + 15) / 16, o = 0, blocks = f->o / FI_OB + f->o % FI_OB;
  __mmask16 tail = fg_lanes16(f->s - 16 * (nvec - 1));
  for (int64_t b = 0; o < f->o; b++) {
    fi_prefetch pf = fi_share(f->next, f->next_floats, b, blocks);
    if (o + FI_OB <= f->o) fi_wgrad_rows(f, o, tail, &pf, FI_OB), o += FI_OB;
    else fi_wgrad_rows(f, o, tail, &pf, 1), o++;
  }
}

/* Input gradient, tap planes [r, r + RB) x vectors [v, v + PV) (the last of the plane with
 * tail lanes): T = wt dy over all of O. */
FI_BLOCK void fi_igrad_block(const fg_taps_few_in *f, int64_t r, int64_t v, __mmask16 tail,
                             fi_prefetch *pf, const int RB, const int PV, const bool TAIL) {
  __m512 acc[FI_RB * FI_PV];
  _Pragma("GCC unroll 24") for (int i = 0; i < RB * PV; i++) acc[i] = _mm512_setzero_ps();
  __mmask16 m[FI_PV]; /* the last vector's lanes, when it is the plane's last */
  _Pragma("GCC unroll 4") for (int u = 0; u < PV; u++)
    m[u] = TAIL && u == PV - 1 ? tail : (__mmask16)0xffff;
  const float *dy = f->dy + 16 * v, *w[FI_RB];
  _Pragma("GCC unroll 6") for (int i = 0; i < RB; i++) w[i] = f->wt + (r + i) * f->o;
  int64_t ld = f->s;
  for (int64_t o = 0; o < f->o; o++, dy += ld) {
    fi_prefetch_some(pf, 1);
    __m512 b[FI_PV];
    _Pragma("GCC unroll 4") for (int u = 0; u < PV; u++)
      b[u] = fi_load(dy + 16 * u, m[u], TAIL && u == PV - 1);
    _Pragma("GCC unroll 6") for (int i = 0; i < RB; i++) {
      __m512 a = _mm512_set1_ps(w[i][o]);
      _Pragma("GCC unroll 4") for (int u = 0; u < PV; u++)
        acc[i * PV + u] = _mm512_fmadd_ps(a, b[u], acc[i * PV + u]);
    }
  }
  _Pragma("GCC unroll 6") for (int i = 0; i < RB; i++)
    _Pragma("GCC unroll 4") for (int u = 0; u < PV; u++)
      _mm512_mask_storeu_ps(f->t + (r + i) * f->s + 16 * (v + u), m[u], acc[i * PV + u]);
}

/* All tap planes of vectors [v, v + PV). */
FI_BLOCK void fi_igrad_planes(const fg_taps_few_in *f, int64_t v, __mmask16 tail,
                              fi_prefetch *pf, const int PV, const bool TAIL) {
  int64_t r = 0;
  for (; r + 6 <= f->rows; r += 6) fi_igrad_block(f, r, v, tail, pf, 6, PV, TAIL);
  for (; r + 3 <= f->rows; r += 3) fi_igrad_block(f, r, v, tail, pf, 3, PV, TAIL);
  for (; r < f->rows; r++) fi_igrad_block(f, r, v, tail, pf, 1, PV, TAIL);
}

/* The same, whether or not the block ends the plane. */
FI_BLOCK void fi_igrad_vectors(const fg_taps_few_in *f, int64_t v, int64_t nvec,
                               __mmask16 tail, fi_prefetch *pf, const int PV) {
  if (v + PV == nvec) fi_igrad_planes(f, v, tail, pf, PV, true);
  else fi_igrad_planes(f, v, tail, pf, PV, false);
}

/* Vectors of a block with `left` vectors to go: 4s, ending in 3 + 2 or 3 + 3 rather than 1. */
static int fi_block_vectors(int64_t left) {
  return left == 5 || left == 6 ? 3 : left >= FI_PV ? FI_PV : (int)left;
}

FI_ATTR static void fi_igrad(const fg_taps_few_in *f) {
  int64_t nvec = (f->s + 15) / 16;
  __mmask16 tail = fg_lanes16(f->s - 16 * (nvec - 1));
  fi_prefetch pf = fi_share(f->next, f->next_floats, 0, 1); /* a line an o step */
  for (int64_t v = 0; v < nvec;) {
    int pv = fi_block_vectors(nvec - v);
    if (pv == 4) fi_igrad_vectors(f, v, nvec, tail, &pf, 4);
    else if (pv == 3) fi_igrad_vectors(f, v, nvec, tail, &pf, 3);
    else if (pv == 2) fi_igrad_vectors(f, v, nvec, tail, &pf, 2);
    else fi_igrad_vectors(f, v, nvec, tail, &pf, 1);
    v += pv;
  }
}
#endif

void fg_conv_taps_few_in_wgrad(const fg_taps_few_in *f) {
#ifdef FI_X86
  if (f->o > 0 && f->rows > 0 && f->s > 0) fi_wgrad(f);
#else
  (void)f;
#endif
}

void fg_conv_taps_few_in_igrad(const fg_taps_few_in *f) {
#ifdef FI_X86
  if (f->rows > 0 && f->s > 0) fi_igrad(f);
#else
  (void)f;
#endif
}

#ifdef FI_X86
/* A tree of adds across each vector's lanes (_mm512_reduce_add_ps: a fixed order, as a sum
 * over the lanes in order was, at half the cost: that took 17 % of the 4 -> 256 gradients at
 * 7x7, a total of 16 lanes for 256 x 36 weights in each of 8 parts). */
FI_ATTR static void fi_lanes_total(const float *lanes, int64_t n, float *out) {
  for (int64_t i = 0; i < n; i++) out[i] = _mm512_reduce_add_ps(_mm512_loadu_ps(lanes + 16 * i));
}
#endif

void fg_conv_taps_lanes_total(const float *lanes, int64_t n, float *out) {
#ifdef FI_X86
  fi_lanes_total(lanes, n, out);
#else
  (void)lanes, (void)n, (void)out;
#endif
}
