/* The direct path's inner kernels (ops/kernels/conv_direct.h): two register-blocked loops, one
 * that accumulates shifted streams into a few output rows (conv2d and its input gradient) and one
 * that takes dot products of shifted streams with a few rows (the weight gradient).
 *
 * Two families, picked by CPU at first use:
 *  - 256-bit, GCC vector extensions, 4 rows x 2 vectors per block: portable (lowered to SSE
 *    pairs without AVX) and compiled for AVX2 on x86-64.  These loops are bound by loads and
 *    broadcasts: 2 stream loads and 4 weight broadcasts feed 8 multiply-adds per tap.
 *  - 512-bit AVX-512F with FMA, 4 rows x up to 6 vectors (24 of the 32 registers hold sums):
 *    6 stream loads and 4 broadcasts feed 24 fused multiply-adds per tap, and the weight
 *    gradient blocks 6 taps x 4 rows so that each loaded vector serves 4 or 6 products, and
 *    keeps its sums in registers across a group of images.  On Glow's output convolutions
 *    (128->4 and 128->8 3x3) this is far faster than the 256-bit family; tools/bench/bench_dense
 *    with FG_CONV_ISA=avx2 in the environment measures the difference. */
#include <stdlib.h>
#include <string.h>

#include "ops/kernels/conv_direct.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif

/* ---- 256-bit kernels, stamped for float and double (and for AVX2 where present) ----
 * Explicit 32-byte vectors (GCC/Clang vector extensions) so that the register blocking is what
 * is written, not what the vectoriser decides; without AVX they lower to SSE pairs.  (FMA
 * contraction was measured too: no gain, the loops are bound by loads, not arithmetic.) */
typedef float vf32 __attribute__((vector_size(32)));
typedef double vf64 __attribute__((vector_size(32)));
#define VLOAD(v, p) memcpy(&(v), (p), sizeof(v))
#define VSTORE(p, v) memcpy((p), &(v), sizeof(v))

#define DIRECT_DEFINE(T, V, SUF, ATTR)                                                        \
  /* out[o][s..s+2VL) = sum_t wt[t ldw + o] src[off[t] + s..], for 4 channels o. */             \
  ATTR static void rows4_##SUF(const T *src, const int64_t *off, int64_t taps, const T *wt,    \
                               int64_t ldw, int64_t s, int64_t len, T *out) {                 \
    enum { VL = sizeof(V) / sizeof(T) };                                                      \
    V a00 = {0}, a01 = {0}, a10 = {0}, a11 = {0}, a20 = {0}, a21 = {0}, a30 = {0}, a31 = {0}; \
    for (int64_t t = 0; t < taps; t++) {                                                      \
      const T *xs = src + off[t] + s, *w = wt + t * ldw;                                      \
      V x0, x1;                                                                               \
      VLOAD(x0, xs), VLOAD(x1, xs + VL);                                                      \
      a00 += w[0] * x0, a01 += w[0] * x1, a10 += w[1] * x0, a11 += w[1] * x1;                 \
      a20 += w[2] * x0, a21 += w[2] * x1, a30 += w[3] * x0, a31 += w[3] * x1;                 \
    }                                                                                         \
    VSTORE(out + s, a00), VSTORE(out + s + VL, a01);                                          \
    VSTORE(out + len + s, a10), VSTORE(out + len + s + VL, a11);                              \
    VSTORE(out + 2 * len + s, a20), VSTORE(out + 2 * len + s + VL, a21);                      \
    VSTORE(out + 3 * len + s, a30), VSTORE(out + 3 * len + s + VL, a31);                      \
  }                                                                                           \
                                                                                              \
  ATTR static void rows1_##SUF(const T *src, const int64_t *off, int64_t taps, const T *wt,    \
                               int64_t ldw, int64_t s, T *out) {                              \
    enum { VL = sizeof(V) / sizeof(T) };                                                      \
    V a0 = {0}, a1 = {0};                                                                     \
    for (int64_t t = 0; t < taps; t++) {                                                      \
      V x0, x1;                                                                               \
      VLOAD(x0, src + off[t] + s), VLOAD(x1, src + off[t] + s + VL);                          \
      a0 += wt[t * ldw] * x0, a1 += wt[t * ldw] * x1;                                         \
    }                                                                                         \
    VSTORE(out + s, a0), VSTORE(out + s + VL, a1);                                            \
  }                                                                                           \
                                                                                              \
  /* out[o][s] = sum_t wt[t ldw + o] src[off[t] + s] for o < ob, s < len (rows of len), where \
   * len is a multiple of DIRECT_JB (callers pad the source so the last block reads zeros). */ \
  ATTR static void direct_rows_##SUF(const void *srcv, const int64_t *off, int64_t taps,       \
                                     const void *wtv, int64_t ldw, int64_t ob, int64_t len,   \
                                     void *outv) {                                            \
    enum { JB = 2 * sizeof(V) / sizeof(T) };                                                  \
    const T *src = srcv, *wt = wtv;                                                           \
    T *out = outv;                                                                            \
    int64_t o = 0;                                                                            \
    for (; o + 4 <= ob; o += 4)                                                               \
      for (int64_t s = 0; s < len; s += JB)                                                   \
        rows4_##SUF(src, off, taps, wt + o, ldw, s, len, out + o * len);                      \
    for (; o < ob; o++)                                                                       \
      for (int64_t s = 0; s < len; s += JB)                                                   \
        rows1_##SUF(src, off, taps, wt + o, ldw, s, out + o * len);                           \
  }                                                                                           \
                                                                                              \
  /* acc[o] += sum_{s < len} a[s] b[o ldb + s] for 4 rows o: a is loaded once for all four. */ \
  ATTR static void dots4_##SUF(const T *a, const T *b, int64_t ldb, int64_t len, T *acc) {     \
    enum { VL = sizeof(V) / sizeof(T) };                                                      \
    V s0 = {0}, s1 = {0}, s2 = {0}, s3 = {0};                                                 \
    for (int64_t s = 0; s < len; s += VL) {                                                   \
      V x, y0, y1, y2, y3;                                                                    \
      VLOAD(x, a + s), VLOAD(y0, b + s), VLOAD(y1, b + ldb + s);                              \
      VLOAD(y2, b + 2 * ldb + s), VLOAD(y3, b + 3 * ldb + s);                                 \
      s0 += x * y0, s1 += x * y1, s2 += x * y2, s3 += x * y3;                                 \
    }                                                                                         \
    for (int l = 0; l < VL; l++) acc[0] += s0[l], acc[1] += s1[l], acc[2] += s2[l], acc[3] += s3[l]; \
  }                                                                                           \
                                                                                              \
  /* acc[o] += sum_{s < len} a[s] b[o ldb + s] for o < nb; len is a multiple of DIRECT_JB. */ \
  ATTR static void direct_dots_##SUF(const void *av, const void *bv, int64_t ldb, int64_t nb,  \
                                     int64_t len, void *accv) {                               \
    enum { VL = sizeof(V) / sizeof(T), JB = 2 * VL };                                         \
    const T *a = av, *b = bv;                                                                 \
    T *acc = accv;                                                                            \
    int64_t o = 0;                                                                            \
    for (; o + 4 <= nb; o += 4) dots4_##SUF(a, b + o * ldb, ldb, len, acc + o);               \
    for (; o < nb; o++) {                                                                     \
      const T *bo = b + o * ldb;                                                              \
      V s0 = {0}, s1 = {0};                                                                   \
      for (int64_t s = 0; s < len; s += JB) {                                                 \
        V x0, x1, y0, y1;                                                                     \
        VLOAD(x0, a + s), VLOAD(x1, a + s + VL), VLOAD(y0, bo + s), VLOAD(y1, bo + s + VL);   \
        s0 += x0 * y0, s1 += x1 * y1;                                                         \
      }                                                                                       \
      s0 += s1;                                                                               \
      for (int l = 0; l < VL; l++) acc[o] += s0[l];                                           \
    }                                                                                         \
  }

DIRECT_DEFINE(float, vf32, f32, )
DIRECT_DEFINE(double, vf64, f64, )
#if defined(__x86_64__) && defined(__GNUC__)
#define FG_DIRECT_X86 1
DIRECT_DEFINE(float, vf32, f32_avx2, __attribute__((target("avx2"))))
DIRECT_DEFINE(double, vf64, f64_avx2, __attribute__((target("avx2"))))
#endif

/* The weight-gradient loop on top of a 256-bit family's dot kernel: one call per tap. */
#define WDOTS_DEFINE(T, SUF, ATTR)                                                            \
  ATTR static void wdots_##SUF(const void *srcv, int64_t src_step, const int64_t *off,       \
                               int64_t taps, const void *bv, int64_t b_step, int64_t ldb,     \
                               int64_t nb, int64_t n_img, int64_t len, void *accv) {          \
    const T *src = srcv, *b = bv;                                                             \
    T *acc = accv;                                                                            \
    for (int64_t i = 0; i < n_img; i++)                                                       \
      for (int64_t t = 0; t < taps; t++)                                                      \
        direct_dots_##SUF(src + i * src_step + off[t], b + i * b_step, ldb, nb, len,          \
                          acc + t * nb);                                                      \
  }

WDOTS_DEFINE(float, f32, )
WDOTS_DEFINE(double, f64, )
#ifdef FG_DIRECT_X86
WDOTS_DEFINE(float, f32_avx2, __attribute__((target("avx2"))))
WDOTS_DEFINE(double, f64_avx2, __attribute__((target("avx2"))))
#endif

/* The crop of wide rows, with the epilogue (fg_conv_direct_kernels.crop): loops the compiler
 * vectorises, one per case so that no case pays for another's test. */
#define CROP_DEFINE(T, SUF)                                                                   \
  static void crop_##SUF(const void *inv, int64_t wd, int64_t rows, int64_t wo,               \
                         const void *bias, bool relu, void *outv, int64_t ldo) {              \
    const T *in = inv;                                                                        \
    T *out = outv, b = bias ? *(const T *)bias : 0;                                           \
    for (int64_t i = 0; i < rows; i++, in += wd, out += ldo)                                  \
      if (!bias)                                                                              \
        for (int64_t j = 0; j < wo; j++) out[j] = in[j];                                      \
      else if (relu)                                                                          \
        for (int64_t j = 0; j < wo; j++) out[j] = in[j] + b > 0 ? in[j] + b : 0;              \
      else                                                                                    \
        for (int64_t j = 0; j < wo; j++) out[j] = in[j] + b;                                  \
  }
CROP_DEFINE(float, f32)
CROP_DEFINE(double, f64)

/* ---- 512-bit kernels (AVX-512F + FMA), stamped for float and double ----
 * A block is a fixed (rows x vectors) or (taps x rows) shape with its sums in registers: the
 * block functions are always inlined with constant shapes, so the loops over them unroll and
 * the arrays become registers. */
#ifdef FG_DIRECT_X86
#define Z_ATTR __attribute__((target("avx512f,fma")))
#define Z_BLOCK static inline __attribute__((always_inline, target("avx512f,fma")))

#define Z_DEFINE(T, SUF, VEC, LOADU, SET1, FMADD, ZERO, REDUCE, MASK, COMPRESS, MASK_STOREU,   \
                 ADD, MAX)                                                                     \
  enum { ZVL_##SUF = 64 / sizeof(T) };                                                          \
                                                                                                \
  /* Where zrows_crop stores (fg_conv_direct_kernels.rows_crop): planes ldo apart, vector v of  \
   * the wide rows to lanes keep[v] compressed, from first[v] on; with the epilogue. */          \
  typedef struct zdst_##SUF {                                                                   \
    const uint32_t *keep;                                                                       \
    const int64_t *first;                                                                       \
    int64_t ldo;                                                                                \
    const T *bias;                                                                              \
    bool relu;                                                                                  \
    T *out;                                                                                     \
  } zdst_##SUF;                                                                                 \
                                                                                                \
  /* Sums of OB rows, vectors v0.. into d's planes: the lanes kept are consecutive outputs, so  \
   * they go compressed into one masked store (a wide row of 16 for 14 columns: the first 14    \
   * lanes, no compress).  Compressed in a register: the compress to memory is microcoded and   \
   * slow on some CPUs (AMD's Zen 4). */                                                        \
  Z_BLOCK void zstore_crop_##SUF(const zdst_##SUF *d, int64_t v0, const VEC *acc, const int OB, \
                                 const int NV) {                                                \
    _Pragma("GCC unroll 6") for (int v = 0; v < NV; v++) {                                      \
      unsigned m = d->keep[v0 + v];                                                             \
      if (!m) continue;                                                                         \
      MASK kept = (MASK)((1u << __builtin_popcount(m)) - 1);                                    \
      _Pragma("GCC unroll 4") for (int o = 0; o < OB; o++) {                                    \
        VEC y = acc[o * 6 + v];                                                                 \
        if (d->bias) y = ADD(y, SET1(d->bias[o]));                                              \
        if (d->bias && d->relu) y = MAX(y, ZERO());                                             \
        if (m != kept) y = COMPRESS((MASK)m, y);                                                \
        MASK_STOREU(d->out + o * d->ldo + d->first[v0 + v], kept, y);                           \
      }                                                                                         \
    }                                                                                           \
  }                                                                                             \
                                                                                                \
  /* Rows o < OB, vectors v < NV from wide index s0 (src already offset by s0) into dst's      \
   * planes. */                                                                                 \
  Z_BLOCK void zrows_blk_##SUF(const T *src, const int64_t *off, int64_t taps, const T *wt,    \
                               int64_t ldw, const zdst_##SUF *dst, int64_t s0, const int OB,    \
                               const int NV) {                                                  \
    VEC acc[4][6];                                                                              \
    _Pragma("GCC unroll 4") for (int o = 0; o < OB; o++)                                        \
      _Pragma("GCC unroll 6") for (int v = 0; v < NV; v++) acc[o][v] = ZERO();                  \
    for (int64_t t = 0; t < taps; t++) {                                                        \
      const T *xs = src + off[t], *w = wt + t * ldw;                                            \
      VEC x[6];                                                                                 \
      _Pragma("GCC unroll 6") for (int v = 0; v < NV; v++) x[v] = LOADU(xs + v * ZVL_##SUF);    \
      _Pragma("GCC unroll 4") for (int o = 0; o < OB; o++) {                                    \
        VEC wv = SET1(w[o]);                                                                    \
        _Pragma("GCC unroll 6") for (int v = 0; v < NV; v++) acc[o][v] = FMADD(wv, x[v], acc[o][v]); \
      }                                                                                         \
    }                                                                                           \
    zstore_crop_##SUF(dst, s0 / ZVL_##SUF, &acc[0][0], OB, NV);                                 \
  }                                                                                             \
                                                                                                \
  /* All of len for OB rows: blocks of 6 vectors, then the remainder in one block. */           \
  Z_BLOCK void zrows_span_##SUF(const T *src, const int64_t *off, int64_t taps, const T *wt,   \
                                int64_t ldw, int64_t len, const zdst_##SUF *dst, const int OB) { \
    int64_t nvec = len / ZVL_##SUF, v = 0;                                                      \
    for (; v + 6 <= nvec; v += 6)                                                               \
      zrows_blk_##SUF(src + v * ZVL_##SUF, off, taps, wt, ldw, dst, v * ZVL_##SUF, OB, 6);      \
    const T *s = src + v * ZVL_##SUF;                                                           \
    int64_t s0 = v * ZVL_##SUF;                                                                 \
    switch (nvec - v) {                                                                         \
    case 5: zrows_blk_##SUF(s, off, taps, wt, ldw, dst, s0, OB, 5); break;                      \
    case 4: zrows_blk_##SUF(s, off, taps, wt, ldw, dst, s0, OB, 4); break;                      \
    case 3: zrows_blk_##SUF(s, off, taps, wt, ldw, dst, s0, OB, 3); break;                      \
    case 2: zrows_blk_##SUF(s, off, taps, wt, ldw, dst, s0, OB, 2); break;                      \
    case 1: zrows_blk_##SUF(s, off, taps, wt, ldw, dst, s0, OB, 1); break;                      \
    default: break;                                                                             \
    }                                                                                           \
  }                                                                                             \
                                                                                                \
  Z_ATTR static void zrows_crop_##SUF(const void *srcv, const int64_t *off, int64_t taps,       \
                                      const void *wtv, int64_t ldw, int64_t ob, int64_t len,    \
                                      const uint32_t *keep, const int64_t *first,               \
                                      const void *biasv, bool relu, void *outv, int64_t ldo) {  \
    const T *src = srcv, *wt = wtv, *bias = biasv;                                              \
    for (int64_t o = 0; o < ob; o += 4) { /* blocks of 4 rows, then the rest */                 \
      zdst_##SUF d = {keep, first, ldo, bias ? bias + o : NULL, relu, (T *)outv + o * ldo};     \
      switch (ob - o < 4 ? ob - o : 4) {                                                        \
      case 4: zrows_span_##SUF(src, off, taps, wt + o, ldw, len, &d, 4); break;                 \
      case 3: zrows_span_##SUF(src, off, taps, wt + o, ldw, len, &d, 3); break;                 \
      case 2: zrows_span_##SUF(src, off, taps, wt + o, ldw, len, &d, 2); break;                 \
      default: zrows_span_##SUF(src, off, taps, wt + o, ldw, len, &d, 1); break;                \
      }                                                                                         \
    }                                                                                           \
  }                                                                                             \
                                                                                                \
  /* acc[t nb + o] += dots of src + off[t] with b + o ldb for t < TB, o < OB, over nvec   \
   * vectors of each of n_img images: the sums stay in registers across images. */          \
  Z_BLOCK void zdots_blk_##SUF(const T *src, int64_t src_step, const int64_t *off, const T *b, \
                               int64_t b_step, int64_t ldb, int64_t n_img, int64_t nvec,       \
                               int64_t nb, T *acc, const int TB, const int OB) {               \
    VEC sum[6][4];                                                                              \
    _Pragma("GCC unroll 6") for (int t = 0; t < TB; t++)                                        \
      _Pragma("GCC unroll 4") for (int o = 0; o < OB; o++) sum[t][o] = ZERO();                  \
    for (int64_t i = 0; i < n_img; i++) {                                                       \
      const T *xs[6], *bi = b + i * b_step;                                                     \
      _Pragma("GCC unroll 6") for (int t = 0; t < TB; t++) xs[t] = src + i * src_step + off[t]; \
      for (int64_t v = 0; v < nvec; v++) {                                                      \
        VEC y[4];                                                                               \
        _Pragma("GCC unroll 4") for (int o = 0; o < OB; o++)                                    \
          y[o] = LOADU(bi + o * ldb + v * ZVL_##SUF);                                           \
        _Pragma("GCC unroll 6") for (int t = 0; t < TB; t++) {                                  \
          VEC x = LOADU(xs[t] + v * ZVL_##SUF);                                                 \
          _Pragma("GCC unroll 4") for (int o = 0; o < OB; o++) sum[t][o] = FMADD(x, y[o], sum[t][o]); \
        }                                                                                       \
      }                                                                                         \
    }                                                                                           \
    _Pragma("GCC unroll 6") for (int t = 0; t < TB; t++)                                        \
      _Pragma("GCC unroll 4") for (int o = 0; o < OB; o++) acc[t * nb + o] += REDUCE(sum[t][o]); \
  }                                                                                             \
                                                                                                \
  /* TB taps from off[0] against all nb rows: blocks of 4 rows, then single rows. */           \
  Z_BLOCK void zdots_taps_##SUF(const T *src, int64_t src_step, const int64_t *off, const T *b, \
                                int64_t b_step, int64_t ldb, int64_t n_img, int64_t nvec,      \
                                int64_t nb, T *acc, const int TB) {                            \
    int64_t o = 0;                                                                              \
    for (; o + 4 <= nb; o += 4)                                                                 \
      zdots_blk_##SUF(src, src_step, off, b + o * ldb, b_step, ldb, n_img, nvec, nb, acc + o, TB, 4); \
    for (; o < nb; o++)                                                                         \
      zdots_blk_##SUF(src, src_step, off, b + o * ldb, b_step, ldb, n_img, nvec, nb, acc + o, TB, 1); \
  }                                                                                             \
                                                                                                \
  Z_ATTR static void zwdots_##SUF(const void *srcv, int64_t src_step, const int64_t *off,       \
                                  int64_t taps, const void *bv, int64_t b_step, int64_t ldb,    \
                                  int64_t nb, int64_t n_img, int64_t len, void *accv) {         \
    const T *src = srcv, *b = bv;                                                               \
    T *acc = accv;                                                                              \
    int64_t nvec = len / ZVL_##SUF, t = 0;                                                      \
    for (; t + 6 <= taps; t += 6)                                                               \
      zdots_taps_##SUF(src, src_step, off + t, b, b_step, ldb, n_img, nvec, nb, acc + t * nb, 6); \
    for (; t < taps; t++)                                                                       \
      zdots_taps_##SUF(src, src_step, off + t, b, b_step, ldb, n_img, nvec, nb, acc + t * nb, 1); \
  }

/* The crop with masked loads and stores: a row of Glow's 14 or 7 columns is one vector, where
 * the loops above take a scalar tail (and the separate copy and epilogue cost as much as the
 * 2->128 conv's arithmetic).  max(x, 0) returns 0 for NaN and for -0, as the C epilogue. */
#define ZCROP_DEFINE(T, SUF, VEC, MASK, MASKZ_LOADU, MASK_STOREU, SET1, ADD, MAX, ZERO)         \
  Z_ATTR static void zcrop_##SUF(const void *inv, int64_t wd, int64_t rows, int64_t wo,         \
                                 const void *bias, bool relu, void *outv, int64_t ldo) {        \
    const T *in = inv;                                                                          \
    T *out = outv;                                                                              \
    VEC b = bias ? SET1(*(const T *)bias) : ZERO(), zero = ZERO();                              \
    for (int64_t i = 0; i < rows; i++, in += wd, out += ldo)                                    \
      for (int64_t j = 0; j < wo; j += ZVL_##SUF) {                                             \
        int64_t n = wo - j < ZVL_##SUF ? wo - j : ZVL_##SUF;                                    \
        MASK m = (MASK)((1u << n) - 1);                                                         \
        VEC x = MASKZ_LOADU(m, in + j);                                                         \
        if (bias) x = ADD(x, b);                                                                \
        if (bias && relu) x = MAX(x, zero);                                                     \
        MASK_STOREU(out + j, m, x);                                                             \
      }                                                                                         \
  }

Z_DEFINE(float, f32, __m512, _mm512_loadu_ps, _mm512_set1_ps, _mm512_fmadd_ps,
         _mm512_setzero_ps, _mm512_reduce_add_ps, __mmask16, _mm512_maskz_compress_ps,
         _mm512_mask_storeu_ps, _mm512_add_ps, _mm512_max_ps)
Z_DEFINE(double, f64, __m512d, _mm512_loadu_pd, _mm512_set1_pd,
         _mm512_fmadd_pd, _mm512_setzero_pd, _mm512_reduce_add_pd, __mmask8,
         _mm512_maskz_compress_pd, _mm512_mask_storeu_pd, _mm512_add_pd, _mm512_max_pd)
ZCROP_DEFINE(float, f32, __m512, __mmask16, _mm512_maskz_loadu_ps, _mm512_mask_storeu_ps,
             _mm512_set1_ps, _mm512_add_ps, _mm512_max_ps, _mm512_setzero_ps)
ZCROP_DEFINE(double, f64, __m512d, __mmask8, _mm512_maskz_loadu_pd, _mm512_mask_storeu_pd,
             _mm512_set1_pd, _mm512_add_pd, _mm512_max_pd, _mm512_setzero_pd)
#endif

void fg_conv_crop_lanes(int64_t len, int64_t lanes, int64_t wd, int64_t ho, int64_t wo,
                        uint32_t *keep, int64_t *first) {
  for (int64_t v = 0, i = 0, j = 0; v < len / lanes; v++) {
    keep[v] = 0, first[v] = 0;
    for (int64_t l = 0; l < lanes; l++) {
      if (i < ho && j < wo) {
        if (!keep[v]) first[v] = i * wo + j;
        keep[v] |= 1u << l;
      }
      if (++j == wd) j = 0, i++;
    }
  }
}

/* ---- choice ---- */

enum { ISA_GENERIC, ISA_AVX2, ISA_AVX512 };

/* The best family the CPU runs, capped by FG_CONV_ISA. */
static int pick_isa(void) {
  int best = ISA_GENERIC;
#ifdef FG_DIRECT_X86
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2")) best = ISA_AVX2;
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma")) best = ISA_AVX512;
#endif
  const char *cap = getenv("FG_CONV_ISA");
  if (cap && strcmp(cap, "generic") == 0) return ISA_GENERIC;
  if (cap && strcmp(cap, "avx2") == 0 && best > ISA_AVX2) return ISA_AVX2;
  return best;
}

fg_conv_direct_kernels fg_conv_direct_kernels_for(fg_dtype t) {
  static int isa = -1; /* a benign race: every thread computes the same value */
  int i = __atomic_load_n(&isa, __ATOMIC_RELAXED);
  if (i < 0) __atomic_store_n(&isa, i = pick_isa(), __ATOMIC_RELAXED);
  bool f32 = t == FG_F32;
  fg_conv_direct_kernels k = {f32 ? direct_rows_f32 : direct_rows_f64, NULL,
                              f32 ? wdots_f32 : wdots_f64, f32 ? crop_f32 : crop_f64, "generic"};
#ifdef FG_DIRECT_X86
  if (i == ISA_AVX2)
    k = (fg_conv_direct_kernels){f32 ? direct_rows_f32_avx2 : direct_rows_f64_avx2, NULL,
                                 f32 ? wdots_f32_avx2 : wdots_f64_avx2, k.crop, "avx2"};
  if (i == ISA_AVX512)
    k = (fg_conv_direct_kernels){NULL, f32 ? zrows_crop_f32 : zrows_crop_f64,
                                 f32 ? zwdots_f32 : zwdots_f64, f32 ? zcrop_f32 : zcrop_f64,
                                 "avx512"};
#endif
  return k;
}
