/* libm's functions over float32 arrays, through glibc's vector math library (libmvec), for the
 * elementwise kernels (ops/kernels/elementwise.c).  Internal to ops/. */
#ifndef FG_OPS_VMATH_H
#define FG_OPS_VMATH_H

#include <stdint.h>

typedef enum fg_vmath_fn {
  FG_VMATH_EXP,
  FG_VMATH_LOG,
  FG_VMATH_LOG1P,
  FG_VMATH_EXPM1,
  FG_VMATH_TANH,
  FG_VMATH_FN_COUNT
} fg_vmath_fn;

/* The instruction sets a vector variant exists for, widest last. */
typedef enum fg_vmath_isa { FG_VMATH_SCALAR, FG_VMATH_AVX2, FG_VMATH_AVX512 } fg_vmath_isa;

/* y[i] = f(x[i]) for i < n (y may be x).  Every element goes through the same function
 * whatever n and wherever the array starts: a tail shorter than a vector is padded to one, so
 * an element's value does not depend on how a kernel's output was split among parts. */
void fg_vmath_f32(fg_vmath_fn f, const float *x, float *y, int64_t n);

/* The set fg_vmath_f32 uses: the widest the CPU runs and the build has, capped by FG_MATH_ISA
 * (`avx2` or `scalar`) in the environment, read once. */
fg_vmath_isa fg_vmath_isa_used(void);
/* The same with the set given, for tests; a set the CPU or build lacks falls back to scalar. */
void fg_vmath_f32_isa(fg_vmath_isa isa, fg_vmath_fn f, const float *x, float *y, int64_t n);

#endif
