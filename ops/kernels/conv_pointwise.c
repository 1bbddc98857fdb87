/* The 1x1 convs' own float32 kernel (the implementation "pointwise"): y = act(bias + A x) for
 * one image's planes x [K][N] (N contiguous, as NCHW and conv2d_chain's channel-major groups
 * lie), A the weights: W [O][C] for the forward, W^T for the input gradient.
 *
 * Why a kernel of its own beside oneDNN's sgemm, which the GEMM path calls: in the programs the
 * 1x1 convs' images come from memory (written long before), and sgemm packs every image's
 * operands before it multiplies, waiting on those reads.  This kernel reads W in place (its
 * columns broadcast) or W^T packed once a part (fg_conv_pointwise_pack_rows: in place its rows
 * would be 1 KiB apart at 256 channels), packs only a panel of the image at a time, prefetches
 * the next image into L2 and the sums' lines before it writes them, and applies bias and relu
 * (or conv2d_input_grad_relu's mask) as the last sums leave the registers, not in a pass of
 * their own.  One-conv programs, 256 ->
 * 256 at 14x14, batch 64, 2 threads, caches flushed before each run: the input gradient 5.45-
 * 5.67 ms against the GEMM path's 6.04-6.16 (5 alternating pairs), the forward 5.97-6.07
 * against 6.13-6.15 (3 pairs; "Intel(R) Xeon(R) Processor", 2 cores).
 *
 * Blocking: depth slices of PW_KC; across N, panels of up to PW_NV vectors of 16, the panel's
 * slice packed contiguous (the image's rows start anywhere; the packed rows are aligned);
 * down M, blocks of 8 rows (then 4, 1) whose 8 x 3 sums stay in 24 registers over the slice.
 * A stand-alone prototype of these blocks ran 175-190 GFLOP/s on one core of that Xeon on an
 * image in L2, as sgemm does, where a loop of FMAs alone reaches 240.
 * Sums run in a fixed order for every shape, so results never depend on the thread count; they
 * differ from sgemm's in the last bits, as any two implementations do.
 * AVX-512 only (checked at run time, compiled with target attributes): elsewhere, under
 * FG_CONV_ISA=avx2 or =generic, or for float64, the implementation declines and the others
 * compute. */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "ops/kernels/conv_internal.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define PW_X86 1
#endif

enum {
  PW_KC = 128, /* depth slice: a packed panel of 128 x 48 floats (24 KiB) stays in L1 */
  PW_NV = 3,   /* vectors of 16 in a panel: 8 x 3 sums in registers */
  PW_MR = 8,   /* rows of a block */
};

/* The direct kernels' choice of instruction set (AVX-512F and FMA), so that FG_CONV_ISA=avx2
 * or =generic caps this kernel too, and tests see what a CPU without AVX-512 runs. */
bool fg_conv_pointwise_available(fg_dtype t) {
#ifdef PW_X86
  return t == FG_F32 && strcmp(fg_conv_direct_kernels_for(FG_F32).isa, "avx512") == 0;
#else
  (void)t;
  return false;
#endif
}

#ifdef PW_X86
#define PW_BLOCK static inline __attribute__((always_inline, target("avx512f,fma")))
#define PW_ATTR __attribute__((target("avx512f,fma")))

/* One block's task: rows [m, m + MR) of a panel of nv vectors, over one depth slice. */
typedef struct pw_block {
  const float *a;   /* a(m, k0) */
  int64_t a_row, a_depth, a_block;
  const float *bp;  /* the packed panel: kc rows of nv 16 floats */
  int64_t kc;
  float *c;         /* c(m, panel's first column) */
  int64_t ldc;
  __mmask16 last;   /* the panel's last vector's lanes */
  bool first, final; /* the first slice stores, later ones add; the final one applies act */
  const float *bias; /* bias(m), or NULL */
  bool relu;
  const float *mask; /* mask(m, the panel's first column), at ldc too, or NULL */
  const float *pf;   /* the next image's lines this block prefetches into L2 (pf_lines) */
  int64_t pf_lines;
} pw_block;

PW_BLOCK void pw_store(const pw_block *b, const __m512 *acc, const int MR, const int NV) {
  _Pragma("GCC unroll 8") for (int i = 0; i < MR; i++) {
    __m512 bias = b->final && b->bias ? _mm512_set1_ps(b->bias[i]) : _mm512_setzero_ps();
    _Pragma("GCC unroll 3") for (int v = 0; v < NV; v++) {
      __mmask16 m = v == NV - 1 ? b->last : (__mmask16)0xffff;
      float *at = b->c + i * b->ldc + 16 * v;
      __m512 y = acc[i * NV + v];
      if (!b->first) y = _mm512_add_ps(y, _mm512_maskz_loadu_ps(m, at));
      if (b->final && b->bias) y = _mm512_add_ps(y, bias);
      /* max(y, 0) gives 0 for NaN, as the epilogue's y > 0 ? y : 0 does */
      if (b->final && b->relu) y = _mm512_max_ps(y, _mm512_setzero_ps());
      if (b->final && b->mask) { /* y * (mask > 0): times 1 or 0, as the separate ops */
        __m512 mv = _mm512_maskz_loadu_ps(m, b->mask + i * b->ldc + 16 * v);
        __mmask16 pos = _mm512_cmp_ps_mask(mv, _mm512_setzero_ps(), _CMP_GT_OQ);
        y = _mm512_mul_ps(y, _mm512_maskz_mov_ps(pos, _mm512_set1_ps(1.0f)));
      }
      _mm512_mask_storeu_ps(at, m, y);
    }
  }
}

PW_BLOCK void pw_rows_pf(const pw_block *b, const int MR, const int NV, const bool PF) {
  __m512 acc[PW_MR * PW_NV];
  _Pragma("GCC unroll 24") for (int i = 0; i < MR * NV; i++) acc[i] = _mm512_setzero_ps();
  const float *rows[PW_MR];
  _Pragma("GCC unroll 8") for (int i = 0; i < MR; i++) rows[i] = b->a + i * b->a_row;
  int64_t pf_step = (b->pf_lines + b->kc - 1) / b->kc; /* lines a depth step */
  for (int64_t p = 0; p < b->kc; p++) {
    for (int64_t q = p * pf_step; PF && q < (p + 1) * pf_step && q < b->pf_lines; q++)
      _mm_prefetch((const char *)(b->pf + q * 16), _MM_HINT_T1);
    __m512 x[PW_NV];
    _Pragma("GCC unroll 3") for (int v = 0; v < NV; v++)
      x[v] = _mm512_load_ps(b->bp + (p * NV + v) * 16);
    int64_t at = p * b->a_depth;
    _Pragma("GCC unroll 8") for (int i = 0; i < MR; i++) {
      __m512 w = _mm512_set1_ps(rows[i][at]);
      _Pragma("GCC unroll 3") for (int v = 0; v < NV; v++)
        acc[i * NV + v] = _mm512_fmadd_ps(w, x[v], acc[i * NV + v]);
    }
  }
  pw_store(b, acc, MR, NV);
}

/* The block, with the prefetches' loop only where it has lines to prefetch (a chain's groups,
 * in cache, have none: there the loop's test alone cost Glow K=16's log-prob chains ~4 %,
 * FG_PROFILE alternating with the build before, "Intel(R) Xeon(R) Processor", 2 cores). */
PW_BLOCK void pw_rows(const pw_block *b, const int MR, const int NV) {
  if (b->pf_lines > 0) pw_rows_pf(b, MR, NV, true);
  else pw_rows_pf(b, MR, NV, false);
}

/* Lines of the next image to prefetch into L2, a share to each block of rows, which issues
 * them one a depth step: in bursts (a block's share at once) they outran the core's misses in
 * flight where the blocks are few (36 rows: 62 lines a block), and helped nothing ([36, 256] x
 * [256, 196] over 64 images from memory, one core of "Intel(R) Xeon(R) Processor": 2.47-2.66
 * ms spread against 3.09-3.30 in bursts, 3.02-3.33 without prefetching; runs alternating). */
typedef struct pw_prefetch {
  const float *next;
  int64_t lines, per, line;
} pw_prefetch;

PW_BLOCK void pw_prefetch_share(pw_prefetch *pf, pw_block *b) {
  b->pf = pf->next + pf->line * 16;
  b->pf_lines = min64(pf->per, pf->lines - pf->line);
  pf->line += b->pf_lines;
}

/* A panel of NV vectors, all its row blocks. */
PW_BLOCK void pw_panel(pw_block b, int64_t m, pw_prefetch *pf, const int NV) {
  int64_t i = 0;
  const float *bias = b.bias;
  for (; i + 8 <= m; i += 8) {
    pw_prefetch_share(pf, &b);
    if (b.first) /* the next block's sums' lines, which this slice writes first */
      for (int64_t r = 8; r < 16 && i + r < m; r++)
        for (int v = 0; v < NV; v++)
          _mm_prefetch((const char *)(b.c + r * b.ldc + 16 * v), _MM_HINT_ET0);
    if (b.final && b.mask) /* and its mask's, which this slice reads */
      for (int64_t r = 8; r < 16 && i + r < m; r++)
        for (int v = 0; v < NV; v++)
          _mm_prefetch((const char *)(b.mask + r * b.ldc + 16 * v), _MM_HINT_T0);
    b.bias = bias ? bias + i : NULL;
    pw_rows(&b, 8, NV);
    b.a += b.a_block, b.c += 8 * b.ldc, b.mask = b.mask ? b.mask + 8 * b.ldc : NULL;
  }
  for (; i + 4 <= m; i += 4) {
    pw_prefetch_share(pf, &b);
    b.bias = bias ? bias + i : NULL;
    pw_rows(&b, 4, NV);
    b.a += 4 * b.a_row, b.c += 4 * b.ldc, b.mask = b.mask ? b.mask + 4 * b.ldc : NULL;
  }
  for (; i < m; i++) {
    pw_prefetch_share(pf, &b);
    b.bias = bias ? bias + i : NULL;
    pw_rows(&b, 1, NV);
    b.a += b.a_row, b.c += b.ldc, b.mask = b.mask ? b.mask + b.ldc : NULL;
  }
}

/* bp[p][16 v + l] = x(k0 + p, j0 + 16 v + l), zeros past the panel's n columns. */
PW_BLOCK void pw_pack(const float *x, int64_t ldx, int64_t kc, int64_t n, int nv, float *bp) {
  for (int64_t p = 0; p < kc; p++)
    for (int v = 0; v < nv; v++) {
      int64_t left = n - 16 * v;
      __mmask16 m = left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1);
      _mm512_store_ps(bp + (p * nv + v) * 16, _mm512_maskz_loadu_ps(m, x + p * ldx + 16 * v));
    }
}

/* Vectors of a panel starting with `left` vectors to go. */
static int panel_vectors(int64_t left) {
  return left == 4 ? 2 : left >= PW_NV ? PW_NV : (int)left; /* 4 vectors: 2 + 2 */
}

/* The blocks pw_gemm runs (depth slices x panels x row blocks of 8, 4 and 1). */
static int64_t blocks_of(const fg_pointwise_gemm *g, int64_t nvec) {
  int64_t panels = 0;
  for (int64_t v0 = 0; v0 < nvec; v0 += panel_vectors(nvec - v0)) panels++;
  return (g->k + PW_KC - 1) / PW_KC * panels * (g->m / 8 + g->m % 8 / 4 + g->m % 4);
}

PW_ATTR static void pw_gemm(const fg_pointwise_gemm *g) {
  float bp[PW_KC * PW_NV * 16] __attribute__((aligned(64)));
  int64_t nvec = (g->n + 15) / 16, blocks = blocks_of(g, nvec);
  pw_prefetch pf = {.next = g->next, .lines = g->next ? g->k * g->ldb / 16 : 0};
  pf.per = (pf.lines + blocks - 1) / blocks;
  for (int64_t k0 = 0; k0 < g->k; k0 += PW_KC) {
    int64_t kc = min64(PW_KC, g->k - k0);
    for (int64_t v0 = 0; v0 < nvec;) {
      int64_t left = nvec - v0;
      int nv = panel_vectors(left);
      int64_t cols = min64(16 * nv, g->n - 16 * v0), tail = cols - 16 * (nv - 1);
      pw_pack(g->b + k0 * g->ldb + 16 * v0, g->ldb, kc, cols, nv, bp);
      pw_block b = {.a = g->a + k0 * g->a_depth, .a_row = g->a_row, .a_depth = g->a_depth,
                    .a_block = g->a_block ? g->a_block : 8 * g->a_row,
                    .bp = bp, .kc = kc, .c = g->c + 16 * v0, .ldc = g->ldc,
                    .last = tail >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << tail) - 1),
                    .first = k0 == 0, .final = k0 + kc == g->k, .bias = g->bias,
                    .relu = g->relu, .mask = g->mask ? g->mask + 16 * v0 : NULL};
      if (nv == 3) pw_panel(b, g->m, &pf, 3);
      else if (nv == 2) pw_panel(b, g->m, &pf, 2);
      else pw_panel(b, g->m, &pf, 1);
      v0 += nv;
    }
  }
}
#endif

void fg_conv_pointwise_pack_rows(const float *a, int64_t m, int64_t k, int64_t a_row,
                                 int64_t a_depth, float *ap) {
  /* p outer: a W^T read a row of W at a time, as it lies */
  for (int64_t p = 0; p < k; p++)
    for (int64_t i0 = 0; i0 < m; i0 += PW_MR)
      for (int64_t i = 0; i < PW_MR; i++)
        ap[(i0 * k + p * PW_MR) + i] = i0 + i < m ? a[(i0 + i) * a_row + p * a_depth] : 0;
}

void fg_conv_pointwise_gemm(const fg_pointwise_gemm *g) {
#ifdef PW_X86
  if (g->m > 0 && g->n > 0) pw_gemm(g);
#else
  (void)g;
#endif
}
