/* Internal to ops/: the register-blocked inner kernels of conv2d's direct path
 * (ops/kernels/conv.c describes the path: stride 1, each tap a shifted contiguous stream of a
 * zero-padded image). */
#ifndef FG_CONV_DIRECT_H
#define FG_CONV_DIRECT_H

#include <stdbool.h>
#include <stdint.h>

#include "core/shape.h"

/* Lengths the kernels take are multiples of this many bytes (one 512-bit vector, two 256-bit
 * ones), and every buffer they read carries this many bytes of zeros past its last element. */
enum { FG_DIRECT_BLOCK_BYTES = 64 };

typedef struct fg_conv_direct_kernels {
  /* out[o len + s] = sum_{t < taps} wt[t ldw + o] src[off[t] + s]  for o < ob, s < len; NULL
   * in the family with rows_crop (below), which its callers use instead. */
  void (*rows)(const void *src, const int64_t *off, int64_t taps, const void *wt, int64_t ldw,
               int64_t ob, int64_t len, void *out);
  /* rows, with the crop (below) on the way, stored from registers without the wide rows: of
   * the sums rows gives at s = v L + l (L = FG_DIRECT_BLOCK_BYTES over the element size), the
   * lanes l set in keep[v] go, act(bias[o] + sum), to out[o ldo + first[v]] and on, in order
   * (fg_conv_crop_lanes makes keep and first for planes of ho x wo from wide rows of wd; bias
   * NULL: the sums as they are; relu as crop's).  NULL in families without masked stores:
   * their callers crop. */
  void (*rows_crop)(const void *src, const int64_t *off, int64_t taps, const void *wt,
                    int64_t ldw, int64_t ob, int64_t len, const uint32_t *keep,
                    const int64_t *first, const void *bias, bool relu, void *out, int64_t ldo);
  /* acc[t nb + o] += sum_{i < n_img} sum_{s < len} src[i src_step + off[t] + s]
   *                                                  b[i b_step + o ldb + s]
   * for t < taps, o < nb: one dot product per (tap, row), summed over n_img images. */
  void (*wdots)(const void *src, int64_t src_step, const int64_t *off, int64_t taps,
                const void *b, int64_t b_step, int64_t ldb, int64_t nb, int64_t n_img,
                int64_t len, void *acc);
  /* out[i ldo + j] = act(in[i wd + j] + *bias) for i < rows, j < wo: the columns kept of wide
   * rows (ldo = wo), or rows spread into zero-padded planes (wd = wo), with conv2d_bias_act's
   * epilogue on the way (bias NULL: copied as they are; relu: x + b > 0 ? x + b : 0, so NaN
   * gives 0, as the separate ops and epilogue do). */
  void (*crop)(const void *in, int64_t wd, int64_t rows, int64_t wo, const void *bias, bool relu,
               void *out, int64_t ldo);
  const char *isa; /* "avx512", "avx2" or "generic": which instantiation was chosen */
} fg_conv_direct_kernels;

/* rows_crop's lanes for planes of ho x wo from wide rows of wd, over len wide positions (a
 * multiple of lanes, the vector's elements): keep[v] bit l where s = v lanes + l is inside a
 * plane's row (s % wd < wo, s / wd < ho), first[v] the output index of its first such lane. */
void fg_conv_crop_lanes(int64_t len, int64_t lanes, int64_t wd, int64_t ho, int64_t wo,
                        uint32_t *keep, int64_t *first);

/* The fastest instantiation this CPU runs, for float or double; chosen once.
 * FG_CONV_ISA=avx2 or =generic in the environment caps it (tests run every instantiation). */
fg_conv_direct_kernels fg_conv_direct_kernels_for(fg_dtype t);

#endif
