/* libm's functions over float32 arrays (ops/kernels/vmath.c) and the float32 elementwise
 * kernels over them: values within a few ulp of libm's in double, special values as libm gives
 * them, and an element's value independent of where a kernel's share begins and ends, in every
 * instruction set this CPU runs. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "core/ir/op.h"
#include "ops/kernels/vmath.h"

static const fg_vmath_isa isas[] = {FG_VMATH_SCALAR, FG_VMATH_AVX2, FG_VMATH_AVX512};
static const char *const isa_names[] = {"scalar", "avx2", "avx512"};
static const char *const fn_names[] = {"exp", "log", "log1p", "expm1", "tanh"};

static double ref(fg_vmath_fn f, double x) {
  switch (f) {
    case FG_VMATH_EXP:
      return exp(x);
    case FG_VMATH_LOG:
      return log(x);
    case FG_VMATH_LOG1P:
      return log1p(x);
    case FG_VMATH_EXPM1:
      return expm1(x);
    default:
      return tanh(x);
  }
}

/* Distance in representable floats (both finite, or equal). */
static int64_t ulps(float a, float b) {
  if (a == b) return 0;
  int32_t ia, ib;
  memcpy(&ia, &a, 4), memcpy(&ib, &b, 4);
  int64_t la = ia < 0 ? (int64_t)INT32_MIN - ia : ia, lb = ib < 0 ? (int64_t)INT32_MIN - ib : ib;
  return la > lb ? la - lb : lb - la;
}

/* A sweep over each function's useful range, with the edges libm treats specially. */
enum { N_SWEEP = 4000 };
static int sweep(fg_vmath_fn f, float *x) {
  double lo = f == FG_VMATH_LOG ? 1e-30 : f == FG_VMATH_LOG1P ? -0.999 : -87;
  double hi = f == FG_VMATH_EXP || f == FG_VMATH_EXPM1 ? 88 : f == FG_VMATH_TANH ? 20 : 1e30;
  bool geometric = f == FG_VMATH_LOG || f == FG_VMATH_LOG1P;
  for (int i = 0; i < N_SWEEP; i++) {
    double t = (double)i / (N_SWEEP - 1);
    x[i] = geometric && i > 0 ? (float)(lo + (hi - lo) * pow(t, 12)) : (float)(lo + (hi - lo) * t);
  }
  const float edges[] = {0.0f, -0.0f, 1e-8f, -1e-8f, 0.5f, 1.0f, -1.0f, 1e-40f};
  memcpy(x + N_SWEEP, edges, sizeof edges);
  return N_SWEEP + (int)(sizeof edges / sizeof edges[0]);
}

Test(vmath, every_function_is_within_4_ulp_of_libm_in_double_in_every_set) {
  static float x[N_SWEEP + 16], y[N_SWEEP + 16];
  for (size_t s = 0; s < sizeof isas / sizeof isas[0]; s++)
    for (int f = 0; f < FG_VMATH_FN_COUNT; f++) {
      int n = sweep((fg_vmath_fn)f, x);
      fg_vmath_f32_isa(isas[s], (fg_vmath_fn)f, x, y, n);
      for (int i = 0; i < n; i++) {
        double r = ref((fg_vmath_fn)f, x[i]);
        if (!isfinite((float)r)) continue; /* overflows: checked with the special values */
        cr_assert_leq(ulps(y[i], (float)r), 4, "%s %s(%.9g) = %.9g, libm %.9g", isa_names[s],
                      fn_names[f], x[i], y[i], r);
      }
    }
}

Test(vmath, special_values_come_out_as_libm_gives_them) {
  const float in[] = {NAN, INFINITY, -INFINITY, 0.0f, -1.0f, 100.0f};
  float out[6];
  for (size_t s = 0; s < sizeof isas / sizeof isas[0]; s++)
    for (int f = 0; f < FG_VMATH_FN_COUNT; f++) {
      fg_vmath_f32_isa(isas[s], (fg_vmath_fn)f, in, out, 6);
      for (int i = 0; i < 6; i++) {
        float r = (float)ref((fg_vmath_fn)f, in[i]);
        if (isnan(r))
          cr_assert(isnan(out[i]), "%s %s(%g) = %g", isa_names[s], fn_names[f], in[i], out[i]);
        else if (isinf(r) || r == 0)
          cr_assert_eq(out[i], r, "%s %s(%g) = %g, libm %g", isa_names[s], fn_names[f], in[i],
                       out[i], r);
      }
    }
}

/* Deterministic inputs spread over [-12, 12] with all the low mantissa bits in play. */
static void spread(float *x, int n) {
  uint32_t s = 12345;
  for (int i = 0; i < n; i++) {
    s = s * 1664525u + 1013904223u;
    x[i] = ((float)(s >> 8) / (float)(1u << 24) - 0.5f) * 24.0f;
  }
}

/* The whole array against the same array in pieces of every length from 1 to 40: a piece's
 * tail must go through the same function as the body (a scalar tail would differ in the last
 * bits for some elements). */
Test(vmath, an_elements_value_does_not_depend_on_where_a_share_ends) {
  enum { N = 1000 };
  static float x[N], whole[N], pieces[N];
  spread(x, N);
  for (size_t s = 0; s < sizeof isas / sizeof isas[0]; s++)
    for (int f = 0; f < FG_VMATH_FN_COUNT; f++) {
      const float *in = x;
      float shifted[N];
      if (f == FG_VMATH_LOG || f == FG_VMATH_LOG1P) { /* their domain */
        for (int i = 0; i < N; i++) shifted[i] = fabsf(x[i]);
        in = shifted;
      }
      fg_vmath_f32_isa(isas[s], (fg_vmath_fn)f, in, whole, N);
      for (int len = 1; len <= 40; len++) {
        for (int i = 0; i < N; i += len)
          fg_vmath_f32_isa(isas[s], (fg_vmath_fn)f, in + i, pieces + i, N - i < len ? N - i : len);
        cr_assert_arr_eq(whole, pieces, sizeof whole, "%s %s in pieces of %d", isa_names[s],
                         fn_names[f], len);
      }
    }
}

/* ---- the float32 kernels ---- */

static void run_f32(int op, const float *in, float *out, int n, int ith, int nth) {
  const void *ins[1] = {in};
  fg_shape shape = fg_shape1(n);
  fg_dtype dt = FG_F32;
  fg_kargs k = {.n_in = 1,
                .in = ins,
                .in_shape = &shape,
                .in_dtype = &dt,
                .out = out,
                .out_shape = shape,
                .ith = ith,
                .nth = nth};
  cr_assert_eq(fg_op_get(op)->kernel_f32(&k), FG_OK);
}

static double sigmoid_ref(double x) { return 1 / (1 + exp(-x)); }
static double softplus_ref(double x) { return x > 0 ? x + log1p(exp(-x)) : log1p(exp(x)); }
static double logsigmoid_ref(double x) { return -softplus_ref(-x); }

Test(vmath, sigmoid_softplus_and_logsigmoid_kernels_match_double_and_keep_special_values) {
  enum { N = 2000 };
  static float x[N + 8], y[N + 8];
  spread(x, N);
  for (int i = 0; i < N; i++) x[i] *= 8; /* into the saturated tails too */
  const float specials[] = {NAN, INFINITY, -INFINITY, 0.0f, -0.0f, 1e-30f, -1e-30f, 88.0f};
  memcpy(x + N, specials, sizeof specials);
  const struct {
    int op;
    double (*ref)(double);
    const char *name;
  } ks[] = {{FG_OP_SIGMOID, sigmoid_ref, "sigmoid"},
            {FG_OP_SOFTPLUS, softplus_ref, "softplus"},
            {FG_OP_LOGSIGMOID, logsigmoid_ref, "logsigmoid"}};
  for (size_t c = 0; c < sizeof ks / sizeof ks[0]; c++) {
    run_f32(ks[c].op, x, y, N + 8, 0, 1);
    for (int i = 0; i < N + 8; i++) {
      float r = (float)ks[c].ref(x[i]);
      if (isnan(r))
        cr_assert(isnan(y[i]), "%s(%g) = %g", ks[c].name, x[i], y[i]);
      else if (isinf(r) || r == 0)
        cr_assert_eq(y[i], r, "%s(%g) = %g, want %g", ks[c].name, x[i], y[i], r);
      else
        cr_assert_leq(ulps(y[i], r), 8, "%s(%.9g) = %.9g, want %.9g", ks[c].name, x[i], y[i], r);
    }
  }
}

Test(vmath, float32_kernels_give_the_same_bits_for_any_split) {
  enum { N = 777 };
  static float x[N], one[N], split[N];
  spread(x, N);
  const int ops[] = {FG_OP_EXP,     FG_OP_EXPM1,    FG_OP_TANH,
                     FG_OP_SIGMOID, FG_OP_SOFTPLUS, FG_OP_LOGSIGMOID};
  for (size_t o = 0; o < sizeof ops / sizeof ops[0]; o++) {
    run_f32(ops[o], x, one, N, 0, 1);
    for (int nth = 2; nth <= 9; nth++) {
      memset(split, 0, sizeof split);
      for (int ith = 0; ith < nth; ith++) run_f32(ops[o], x, split, N, ith, nth);
      cr_assert_arr_eq(one, split, sizeof one, "%s in %d parts", fg_op_get(ops[o])->name, nth);
    }
  }
}
