/* The 1x1 convs' own float32 kernel (the implementation "pointwise"): y = act(bias + A x) for
 * one image's planes x [K][N] (N contiguous, as NCHW and conv2d_chain's channel-major groups
 * lie), or for several images with their columns run through as one, A the weights: W [O][C]
 * for the forward, W^T for the input gradient.
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
 * slice packed contiguous (the image's rows start anywhere; the packed rows are aligned; a
 * vector may take its last lanes from the next image's rows); down M, blocks of 8 rows (then
 * 4, 1) whose 8 x 3 sums stay in 24 registers over the slice.  Several images go in chunks of
 * PW_CHUNK vectors through all the depth.
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
#include "ops/kernels/simd.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define PW_X86 1
#endif

enum {
  PW_KC = 128, /* depth slice: a packed panel of 128 x 48 floats (24 KiB) stays in L1 */
  PW_NV = 3,   /* vectors of 16 in a panel: 8 x 3 sums in registers */
  PW_MR = 8,   /* rows of a block */
  PW_CHUNK = 12, /* vectors of columns a chunk of several images' takes through all the depth */
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

/* Where a vector of 16 columns lies in b, c or the mask, at their row 0: lanes m[0] at
 * off[0] + lane, and lanes m[1] (past an image's last column, in the next image) at off[1] +
 * lane, m[1] 0 where the vector stays in one image. */
typedef struct pw_vec {
  int64_t off[2];
  __mmask16 m[2];
} pw_vec;

/* The vector of columns col.. (of cols in all, n an image, images image_stride apart). */
static pw_vec pw_locate(int64_t col, int64_t cols, int64_t n, int64_t image_stride) {
  int64_t image = col / n, at = col % n, live = min64(16, cols - col);
  int64_t here = min64(live, n - at);
  pw_vec v = {.off = {image * image_stride + at, (image + 1) * image_stride - here},
              .m = {fg_lanes16(here), (__mmask16)(fg_lanes16(live) & ~fg_lanes16(here))}};
  return v;
}

/* One block's task: rows [m, m + MR) of a panel of nv vectors, over one depth slice. */
typedef struct pw_block {
  const float *a;   /* a(m, k0) */
  int64_t a_row, a_depth, a_block;
  const float *bp;  /* the packed panel: kc rows of nv 16 floats */
  int64_t kc;
  float *c;         /* c's row m (its columns where cv says) */
  int64_t ldc;
  const pw_vec *cv; /* the panel's vectors in c and the mask */
  bool first, final; /* the first slice stores, later ones add; the final one applies act */
  const float *bias; /* bias(m), or NULL */
  bool relu;
  const float *mask; /* the mask's row m, at ldc too, or NULL */
  const float *pf;   /* the next images' lines this block prefetches into L2 (pf_lines) */
  int64_t pf_lines;
} pw_block;

/* v's lanes of the row at base (of b, c or the mask), zeros in the others. */
PW_BLOCK __m512 pw_load(const float *base, const pw_vec *v) {
  __m512 y = _mm512_maskz_loadu_ps(v->m[0], base + v->off[0]);
  return v->m[1] ? _mm512_mask_loadu_ps(y, v->m[1], base + v->off[1]) : y;
}

PW_BLOCK void pw_store(const pw_block *b, const __m512 *acc, const int MR, const int NV) {
  _Pragma("GCC unroll 8") for (int i = 0; i < MR; i++) {
    __m512 bias = b->final && b->bias ? _mm512_set1_ps(b->bias[i]) : _mm512_setzero_ps();
    _Pragma("GCC unroll 3") for (int v = 0; v < NV; v++) {
      const pw_vec *cv = &b->cv[v];
      float *row = b->c + i * b->ldc;
      __m512 y = acc[i * NV + v];
      if (!b->first) y = _mm512_add_ps(y, pw_load(row, cv));
      if (b->final && b->bias) y = _mm512_add_ps(y, bias);
      /* max(y, 0) gives 0 for NaN, as the epilogue's y > 0 ? y : 0 does */
      if (b->final && b->relu) y = _mm512_max_ps(y, _mm512_setzero_ps());
      if (b->final && b->mask) { /* y * (mask > 0): times 1 or 0, as the separate ops */
        __m512 mv = pw_load(b->mask + i * b->ldc, cv);
        __mmask16 pos = _mm512_cmp_ps_mask(mv, _mm512_setzero_ps(), _CMP_GT_OQ);
        y = _mm512_mul_ps(y, _mm512_maskz_mov_ps(pos, _mm512_set1_ps(1.0f)));
      }
      _mm512_mask_storeu_ps(row + cv->off[0], cv->m[0], y);
      if (cv->m[1]) _mm512_mask_storeu_ps(row + cv->off[1], cv->m[1], y);
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

/* The images to come, prefetched into L2 a share to each block of rows, which issues its
 * lines one a depth step: in bursts (a block's share at once) they outran the core's misses in
 * flight where the blocks are few (36 rows: 62 lines a block), and helped nothing ([36, 256] x
 * [256, 196] over 64 images from memory, one core of "Intel(R) Xeon(R) Processor": 2.47-2.66
 * ms spread against 3.09-3.30 in bursts, 3.02-3.33 without prefetching; runs alternating).
 * Image `images` is the next call's b (g->next), if any. */
typedef struct pw_prefetch {
  const fg_pointwise_gemm *g;
  int64_t images;      /* g's, at least 1 */
  int64_t image, line; /* the next line to issue */
  int64_t lines;       /* an image's: k rows at ldb */
  int64_t until;       /* the images before it are to be issued */
  int64_t per;         /* lines a block */
} pw_prefetch;

static const float *pw_image_b(const pw_prefetch *pf, int64_t image) {
  return image < pf->images ? pf->g->b + image * pf->g->b_image : pf->g->next;
}

PW_BLOCK void pw_prefetch_share(pw_prefetch *pf, pw_block *b) {
  b->pf_lines = 0;
  if (pf->image >= pf->until) return;
  b->pf = pw_image_b(pf, pf->image) + pf->line * 16;
  b->pf_lines = min64(pf->per, pf->lines - pf->line);
  pf->line += b->pf_lines;
  if (pf->line == pf->lines) pf->image++, pf->line = 0;
}

/* Lines a block for a chunk of `blocks` blocks: the images the next chunk reads (its last
 * column's and those before it) by the time it starts, or the next call's first. */
static void pw_prefetch_plan(pw_prefetch *pf, int64_t next_end, int64_t blocks) {
  pf->until = next_end > 0 ? (next_end - 1) / pf->g->n + 1 : pf->images + (pf->g->next ? 1 : 0);
  int64_t left = (pf->until - pf->image) * pf->lines - pf->line;
  pf->per = left > 0 ? (left + blocks - 1) / blocks : 0;
}

/* A panel of NV vectors, all its row blocks. */
PW_BLOCK void pw_panel(pw_block b, int64_t m, pw_prefetch *pf, const int NV) {
  int64_t i = 0;
  const float *bias = b.bias;
  for (; i + 8 <= m; i += 8) {
    pw_prefetch_share(pf, &b);
    for (int64_t r = 8; (b.first || (b.final && b.mask)) && r < 16 && i + r < m; r++)
      for (int v = 0; v < NV; v++)
        for (int h = 0; h < 2 && b.cv[v].m[h]; h++) {
          int64_t at = r * b.ldc + b.cv[v].off[h];
          if (b.first) /* the next block's sums' lines, which this slice writes first */
            _mm_prefetch((const char *)(b.c + at), _MM_HINT_ET0);
          if (b.final && b.mask) /* and its mask's, which this slice reads */
            _mm_prefetch((const char *)(b.mask + at), _MM_HINT_T0);
        }
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

/* bp[p][16 v + l] = x(p, the column of v's lane l), zeros where v has no lane l. */
PW_BLOCK void pw_pack(const float *x, int64_t ldx, int64_t kc, const pw_vec *bv, int nv,
                      float *bp) {
  for (int64_t p = 0; p < kc; p++)
    for (int v = 0; v < nv; v++)
      _mm512_store_ps(bp + (p * nv + v) * 16, pw_load(x + p * ldx, &bv[v]));
}

/* Vectors of a panel starting with `left` vectors to go. */
static int panel_vectors(int64_t left) {
  return left == 4 ? 2 : left >= PW_NV ? PW_NV : (int)left; /* 4 vectors: 2 + 2 */
}

/* The blocks a chunk of nvec vectors runs (depth slices x panels x row blocks of 8, 4, 1). */
static int64_t blocks_of(const fg_pointwise_gemm *g, int64_t nvec) {
  int64_t panels = 0;
  for (int64_t v0 = 0; v0 < nvec; v0 += panel_vectors(nvec - v0)) panels++;
  return (g->k + PW_KC - 1) / PW_KC * panels * (g->m / 8 + g->m % 8 / 4 + g->m % 4);
}

/* The columns [16 v0, 16 (v0 + nvec)) of all images (cols in all) through all the depth. */
PW_ATTR static void pw_chunk(const fg_pointwise_gemm *g, int64_t v0, int64_t nvec,
                             int64_t cols, pw_prefetch *pf) {
  float bp[PW_KC * PW_NV * 16] __attribute__((aligned(64)));
  for (int64_t k0 = 0; k0 < g->k; k0 += PW_KC) {
    int64_t kc = min64(PW_KC, g->k - k0);
    for (int64_t v = v0; v < v0 + nvec;) {
      int nv = panel_vectors(v0 + nvec - v);
      pw_vec bv[PW_NV], cv[PW_NV];
      for (int u = 0; u < nv; u++) {
        bv[u] = pw_locate(16 * (v + u), cols, g->n, g->b_image);
        cv[u] = pw_locate(16 * (v + u), cols, g->n, g->c_image);
      }
      pw_pack(g->b + k0 * g->ldb, g->ldb, kc, bv, nv, bp);
      pw_block b = {.a = g->a + k0 * g->a_depth, .a_row = g->a_row, .a_depth = g->a_depth,
                    .a_block = g->a_block ? g->a_block : 8 * g->a_row,
                    .bp = bp, .kc = kc, .c = g->c, .ldc = g->ldc, .cv = cv,
                    .first = k0 == 0, .final = k0 + kc == g->k, .bias = g->bias,
                    .relu = g->relu, .mask = g->mask};
      if (nv == 3) pw_panel(b, g->m, pf, 3);
      else if (nv == 2) pw_panel(b, g->m, pf, 2);
      else pw_panel(b, g->m, pf, 1);
      v += nv;
    }
  }
}

/* One image: its columns in one chunk.  Several: chunks of PW_CHUNK vectors, whose sums (m x
 * 192 floats) stay in L2 from one depth slice to the next. */
PW_ATTR static void pw_gemm(const fg_pointwise_gemm *g) {
  int64_t images = g->images > 1 ? g->images : 1, cols = images * g->n;
  int64_t nvec = (cols + 15) / 16, chunk = images > 1 ? PW_CHUNK : nvec;
  pw_prefetch pf = {.g = g, .images = images, .lines = g->k * g->ldb / 16};
  pf.image = min64(16 * min64(chunk, nvec), cols) / g->n;
  for (int64_t v0 = 0; v0 < nvec; v0 += chunk) {
    int64_t here = min64(chunk, nvec - v0), next_end = min64(16 * (v0 + here + chunk), cols);
    pw_prefetch_plan(&pf, v0 + here < nvec ? next_end : 0, blocks_of(g, here));
    pw_chunk(g, v0, here, cols, &pf);
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
  if (g->m <= 0 || g->n <= 0) return;
  if (g->images <= 1 || g->n >= 16) {
    pw_gemm(g);
    return;
  }
  /* images narrower than a vector, whose vectors would cross more than one image: one by one */
  for (int64_t t = 0; t < g->images; t++) {
    fg_pointwise_gemm one = *g;
    one.images = 1;
    one.b = g->b + t * g->b_image, one.c = g->c + t * g->c_image;
    one.mask = g->mask ? g->mask + t * g->c_image : NULL;
    one.next = t + 1 < g->images ? g->b + (t + 1) * g->b_image : g->next;
    pw_gemm(&one);
  }
#else
  (void)g;
#endif
}
