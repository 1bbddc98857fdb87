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

#endif
