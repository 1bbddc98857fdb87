/* Internal to ops/: FG_SIMD_CLONES before a kernel function compiles it for AVX-512 and AVX2 as
 * well as the baseline, and the loader picks the widest the CPU runs (GCC function
 * multi-versioning, an ifunc): the baseline x86-64 build vectorises loops 4 floats wide only. */
#ifndef FG_OPS_SIMD_H
#define FG_OPS_SIMD_H

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__ELF__)
#define FG_SIMD_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define FG_SIMD_CLONES
#endif

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#include <stdint.h>
/* The first n of a vector's 16 lanes (none from n <= 0, all from 16 on): a row's tail in the
 * AVX-512 kernels' masked loads and stores. */
static inline __mmask16 fg_lanes16(int64_t n) {
  return n >= 16 ? (__mmask16)0xffff : n > 0 ? (__mmask16)((1u << n) - 1) : 0;
}
#endif

#endif
