/* libm's functions over float32 arrays (ops/kernels/vmath.h).
 *
 * The scalar functions cost a call and a few nanoseconds per element: Glow's affine couplings
 * (a sigmoid scale and its log) then spent more time in a [64, 2, 14, 14] elementwise group than
 * in convolutions ten times its size.  glibc's libmvec has the same functions over a 16-lane
 * (AVX-512) or 8-lane (AVX2) vector, each lane independent, within a few ulp of libm's (its
 * documented error bounds), and 6x (exp) to 20x (log1p) faster (25,088 floats, one thread,
 * AMD EPYC).  The compiler only calls
 * them under -ffast-math, which would also drop NaN and infinity handling from every kernel, so
 * they are called by name, with the vector function ABI's names (_ZGV<isa>N<lanes>v_<name>).
 *
 * Determinism: an element's value depends only on the element, never on its position, because
 * a tail is padded into a full vector rather than finished with the scalar function.  It does
 * depend on the instruction set (the AVX-512 and AVX2 variants are separate implementations),
 * which is fixed for a process.  float64 kernels keep libm's scalar functions. */
#include "ops/kernels/vmath.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#if defined(FG_HAVE_LIBMVEC) && defined(__x86_64__) && defined(__GNUC__)
#define VMATH_X86 1
#include <immintrin.h>
#endif

static float scalar_one(fg_vmath_fn f, float x) {
  switch (f) {
  case FG_VMATH_EXP: return expf(x);
  case FG_VMATH_LOG: return logf(x);
  case FG_VMATH_LOG1P: return log1pf(x);
  case FG_VMATH_EXPM1: return expm1f(x);
  default: return tanhf(x);
  }
}

static void scalar_all(fg_vmath_fn f, const float *x, float *y, int64_t n) {
  for (int64_t i = 0; i < n; i++) y[i] = scalar_one(f, x[i]);
}

#ifdef VMATH_X86
#define Z_TARGET __attribute__((target("avx512f")))
#define D_TARGET __attribute__((target("avx2")))

/* The vector variants (glibc >= 2.35 for log1p, expm1 and tanh; 2.22 for exp and log). */
Z_TARGET __m512 _ZGVeN16v_expf(__m512);
Z_TARGET __m512 _ZGVeN16v_logf(__m512);
Z_TARGET __m512 _ZGVeN16v_log1pf(__m512);
Z_TARGET __m512 _ZGVeN16v_expm1f(__m512);
Z_TARGET __m512 _ZGVeN16v_tanhf(__m512);
D_TARGET __m256 _ZGVdN8v_expf(__m256);
D_TARGET __m256 _ZGVdN8v_logf(__m256);
D_TARGET __m256 _ZGVdN8v_log1pf(__m256);
D_TARGET __m256 _ZGVdN8v_expm1f(__m256);
D_TARGET __m256 _ZGVdN8v_tanhf(__m256);

typedef __m512 (*zfn)(__m512);
typedef __m256 (*dfn)(__m256);
static const zfn zfns[FG_VMATH_FN_COUNT] = {_ZGVeN16v_expf, _ZGVeN16v_logf, _ZGVeN16v_log1pf,
                                            _ZGVeN16v_expm1f, _ZGVeN16v_tanhf};
static const dfn dfns[FG_VMATH_FN_COUNT] = {_ZGVdN8v_expf, _ZGVdN8v_logf, _ZGVdN8v_log1pf,
                                            _ZGVdN8v_expm1f, _ZGVdN8v_tanhf};

/* The tail is read into a zeroed vector (every function is defined at 0) and only its own
 * lanes are stored. */
Z_TARGET static void z_all(fg_vmath_fn f, const float *x, float *y, int64_t n) {
  zfn fn = zfns[f];
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, fn(_mm512_loadu_ps(x + i)));
  if (i < n) {
    __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
    _mm512_mask_storeu_ps(y + i, m, fn(_mm512_maskz_loadu_ps(m, x + i)));
  }
}

D_TARGET static void d_all(fg_vmath_fn f, const float *x, float *y, int64_t n) {
  dfn fn = dfns[f];
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, fn(_mm256_loadu_ps(x + i)));
  if (i < n) {
    float lane[8] = {0};
    memcpy(lane, x + i, sizeof(float) * (size_t)(n - i));
    _mm256_storeu_ps(lane, fn(_mm256_loadu_ps(lane)));
    memcpy(y + i, lane, sizeof(float) * (size_t)(n - i));
  }
}
#endif

/* The widest set this CPU runs and this build has. */
static fg_vmath_isa cpu_best(void) {
  fg_vmath_isa best = FG_VMATH_SCALAR;
#ifdef VMATH_X86
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) best = FG_VMATH_AVX2;
  if (__builtin_cpu_supports("avx512f")) best = FG_VMATH_AVX512;
#endif
  return best;
}

/* That, capped by FG_MATH_ISA. */
static fg_vmath_isa capped(fg_vmath_isa best) {
  const char *cap = getenv("FG_MATH_ISA");
  if (cap && strcmp(cap, "scalar") == 0) return FG_VMATH_SCALAR;
  if (cap && strcmp(cap, "avx2") == 0 && best > FG_VMATH_AVX2) return FG_VMATH_AVX2;
  return best;
}

/* Both worked out once (a benign race: every thread computes the same values). */
static atomic_int cpu_isa = -1, used_isa = -1;

static void read_isas(void) {
  fg_vmath_isa best = cpu_best();
  atomic_store_explicit(&cpu_isa, (int)best, memory_order_relaxed);
  atomic_store_explicit(&used_isa, (int)capped(best), memory_order_relaxed);
}

fg_vmath_isa fg_vmath_isa_used(void) {
  if (atomic_load_explicit(&used_isa, memory_order_relaxed) < 0) read_isas();
  return (fg_vmath_isa)atomic_load_explicit(&used_isa, memory_order_relaxed);
}

void fg_vmath_f32_isa(fg_vmath_isa isa, fg_vmath_fn f, const float *x, float *y, int64_t n) {
  if (atomic_load_explicit(&cpu_isa, memory_order_relaxed) < 0) read_isas();
  if ((int)isa > atomic_load_explicit(&cpu_isa, memory_order_relaxed)) isa = FG_VMATH_SCALAR;
#ifdef VMATH_X86
  if (isa == FG_VMATH_AVX512) {
    z_all(f, x, y, n);
    return;
  }
  if (isa == FG_VMATH_AVX2) {
    d_all(f, x, y, n);
    return;
  }
#endif
  scalar_all(f, x, y, n);
}

void fg_vmath_f32(fg_vmath_fn f, const float *x, float *y, int64_t n) {
  fg_vmath_f32_isa(fg_vmath_isa_used(), f, x, y, n);
}
