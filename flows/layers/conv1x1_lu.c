/* "conv1x1_lu": Glow's LU-parameterised invertible 1x1 convolution,
 *   W = P·L·(U + diag(sign·exp(log|s|))),
 * P a fixed permutation, L unit lower triangular, U strictly upper triangular, sign fixed and
 * log|s| learned, so log|det W| = Σ log|s| exactly and W can never become singular
 * (openai/glow#40).  log|det| = S·Σ log|s| per sample (S = H·W pixels).
 *
 * Initialisation, as Glow: P, L, U and s come from the LU factorisation (partial pivoting) of
 * a random rotation, so W starts as that rotation.  The rotation is a pure function of the
 * `seed` argument and the layer's prefix (fg__layer_seed) and of C, so every graph of a model
 * rebuilds the same P, and the layers of a model differ.  The parameter store can only start a
 * parameter from a fixed recipe (zeros, a rotation...), not from values computed here, so the
 * learned parameters are offsets from the initial factors, zero at the start:
 *   L = I + strict_lower(L0 + "lower_offset"),  U = strict_upper(U0 + "upper_offset"),
 *   log|s| = log|s0| + "log_s_offset".
 * A constant shift of a parameter changes neither the gradients nor SGD/Adam updates, so this
 * trains exactly as storing L, U, log|s| themselves would (only a weight decay would pull toward
 * the initial factors instead of toward zero), and it needs no initialisation pass.
 * The inverse W^-1 = U'^-1 L^-1 P^T is formed with two triangular solves in float64. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "flows/layers/layer_util.h"
#include "flows/layers/layers.h"
#include "ops/ops.h"

/* The initial factors for C = n channels: recomputed at every graph build (O(C³), negligible
 * next to the graph), so the state stays immutable and one instance may be built concurrently. */
typedef struct lu_init {
  int64_t n;
  double *p;      /* [n, n] permutation matrix, W0 = P L0 U0' */
  double *lower;  /* [n, n] strictly lower part of L0 */
  double *upper;  /* [n, n] strictly upper part of U0' */
  double *sign;   /* [n] sign of the diagonal s0 */
  double *log_s;  /* [n] log|s0| */
} lu_init;

typedef struct lu_state {
  int64_t seed;
} lu_state;

static void init_clear(lu_init *k) {
  free(k->p), free(k->lower), free(k->upper), free(k->sign), free(k->log_s);
  memset(k, 0, sizeof *k);
}

static fg_status lu_create(void **state, fg_err *e, int64_t seed) {
  lu_state *s = calloc(1, sizeof *s);
  if (!s) return fg_err_set(e, FG_E_NOMEM, "conv1x1_lu: out of memory");
  s->seed = seed;
  *state = s;
  return FG_OK;
}

/* A random rotation: modified Gram-Schmidt on the rows of a Gaussian matrix. */
static void random_rotation(double *m, int64_t n, uint64_t seed) {
  for (int64_t i = 0; i < n * n; i++) m[i] = fg_rng_normal(seed, (uint64_t)i);
  for (int64_t r = 0; r < n; r++) {
    double *row = m + r * n, norm = 0;
    for (int64_t q = 0; q < r; q++) {
      const double *prev = m + q * n;
      double dot = 0;
      for (int64_t j = 0; j < n; j++) dot += row[j] * prev[j];
      for (int64_t j = 0; j < n; j++) row[j] -= dot * prev[j];
    }
    for (int64_t j = 0; j < n; j++) norm += row[j] * row[j];
    norm = sqrt(norm);
    /* a Gaussian matrix is singular with probability 0; the unit row keeps this total */
    for (int64_t j = 0; j < n; j++) row[j] = norm > 0 ? row[j] / norm : (double)(j == r);
  }
}

/* In-place LU with partial pivoting: a holds L (strictly below) and U (on and above the
 * diagonal) of the row-permuted a; row i of the result is row perm[i] of the input. */
static void lu_in_place(double *a, int64_t *perm, int64_t n) {
  for (int64_t i = 0; i < n; i++) perm[i] = i;
  for (int64_t k = 0; k < n; k++) {
    int64_t piv = k;
    for (int64_t i = k + 1; i < n; i++)
      if (fabs(a[i * n + k]) > fabs(a[piv * n + k])) piv = i;
    if (piv != k) {
      for (int64_t j = 0; j < n; j++) {
        double t = a[k * n + j];
        a[k * n + j] = a[piv * n + j], a[piv * n + j] = t;
      }
      int64_t t = perm[k];
      perm[k] = perm[piv], perm[piv] = t;
    }
    for (int64_t i = k + 1; i < n; i++) {
      a[i * n + k] /= a[k * n + k];
      for (int64_t j = k + 1; j < n; j++) a[i * n + j] -= a[i * n + k] * a[k * n + j];
    }
  }
}

/* Splits the packed factors of the rotation into the lu_init arrays. */
static void fill_factors(lu_init *k, const double *a, const int64_t *perm) {
  int64_t n = k->n;
  for (int64_t i = 0; i < n; i++) {
    k->p[perm[i] * n + i] = 1.0; /* rotation = P·(L U) with P[perm[i]][i] = 1 */
    for (int64_t j = 0; j < n; j++) {
      if (j < i) k->lower[i * n + j] = a[i * n + j];
      if (j > i) k->upper[i * n + j] = a[i * n + j];
    }
    k->sign[i] = a[i * n + i] < 0 ? -1.0 : 1.0;
    k->log_s[i] = log(fabs(a[i * n + i]));
  }
}

/* The factors of this layer's initial rotation for n channels into k (memset to 0 first). */
static fg_status compute_init(lu_init *k, const lu_state *s, fg_flow_ctx *c, int64_t n) {
  uint64_t key = fg__layer_seed(c, s->seed);
  size_t nn = (size_t)(n * n);
  double *a = malloc(sizeof *a * nn);
  int64_t *perm = malloc(sizeof *perm * (size_t)n);
  k->p = calloc(nn, sizeof *k->p), k->lower = calloc(nn, sizeof *k->lower);
  k->upper = calloc(nn, sizeof *k->upper);
  k->sign = malloc(sizeof *k->sign * (size_t)n), k->log_s = malloc(sizeof *k->log_s * (size_t)n);
  bool ok = a && perm && k->p && k->lower && k->upper && k->sign && k->log_s;
  if (ok) {
    k->n = n;
    random_rotation(a, n, key);
    lu_in_place(a, perm, n);
    fill_factors(k, a, perm);
  } else
    init_clear(k);
  free(a), free(perm);
  return ok ? FG_OK : fg__layer_fail(c, FG_E_NOMEM, "out of memory for a %lld-channel LU", (long long)n);
}

/* A 0/1 matrix: which < 0 strictly lower, which > 0 strictly upper, which = 0 the identity. */
static fg_node mask_matrix(fg_graph *g, int64_t n, int which, fg_dtype t) {
  double *m = calloc((size_t)(n * n), sizeof *m);
  if (!m) return fg_graph_fail(g, FG_E_NOMEM, "out of memory for a mask");
  for (int64_t i = 0; i < n; i++)
    for (int64_t j = 0; j < n; j++) m[i * n + j] = which < 0 ? j < i : which > 0 ? j > i : j == i;
  fg_node out = fg_constant_values(g, t, fg_shape2(n, n), m);
  free(m);
  return out;
}

/* The factors as graph values in x's dtype. */
typedef struct lu_nodes {
  fg_node lower, upper, log_s; /* L (unit diagonal), U' = U + diag(sign·exp(log|s|)), log|s| */
} lu_nodes;

static lu_nodes build_factors(const lu_init *k, fg_flow_ctx *c, fg_node x) {
  fg_graph *g = fg_flow_graph(c);
  fg_dtype t = fg_node_dtype(g, x);
  int64_t n = k->n;
  fg_shape sq = fg_shape2(n, n), vec = fg_shape1(n);
  fg_init zeros = {FG_INIT_ZEROS, 0, 0};
  fg_node eye = mask_matrix(g, n, 0, t);
  fg_node dl = fg__param_like(c, "lower_offset", sq, zeros, x);
  fg_node du = fg__param_like(c, "upper_offset", sq, zeros, x);
  fg_node dls = fg__param_like(c, "log_s_offset", vec, zeros, x);
  lu_nodes f;
  fg_node lower = fg_add(g, fg_constant_values(g, t, sq, k->lower), dl);
  f.lower = fg_add(g, fg_mul(g, lower, mask_matrix(g, n, -1, t)), eye);
  f.log_s = fg_add(g, fg_constant_values(g, t, vec, k->log_s), dls);
  fg_node diag = fg_mul(g, fg_constant_values(g, t, vec, k->sign), fg_exp(g, f.log_s)); /* s */
  fg_node upper = fg_add(g, fg_constant_values(g, t, sq, k->upper), du);
  fg_node strict = fg_mul(g, upper, mask_matrix(g, n, 1, t));
  f.upper = fg_add(g, strict, fg_mul(g, eye, fg_reshape(g, diag, fg_shape2(1, n))));
  return f;
}

/* Shared prologue: shape check, initial factors (freed by the caller), factor nodes. */
static fg_status prepare(const lu_state *s, fg_flow_ctx *c, fg_node x, lu_init *k, lu_nodes *f) {
  memset(k, 0, sizeof *k);
  fg_status st = fg__layer_expect_rank(c, x, 2, FG_MAX_DIMS, "[B, C, ...] (channels on axis 1)");
  if (st == FG_OK) st = compute_init(k, s, c, fg_node_shape(fg_flow_graph(c), x).d[1]);
  if (st == FG_OK) *f = build_factors(k, c, x);
  return st != FG_OK ? st : fg_graph_status(fg_flow_graph(c));
}

static fg_status lu_forward(void *state, fg_flow_ctx *c, fg_node x, fg_node *y, fg_node *logdet) {
  fg_graph *g = fg_flow_graph(c);
  lu_init k;
  lu_nodes f;
  fg_status st = prepare(state, c, x, &k, &f);
  if (st == FG_OK) {
    fg_node p = fg_constant_values(g, fg_node_dtype(g, x), fg_shape2(k.n, k.n), k.p);
    fg_node w = fg_matmul(g, p, fg_matmul(g, f.lower, f.upper));
    *y = fg__channel_mix(g, w, x, false);
    *logdet = fg__channel_logdet(g, f.log_s, x, 1.0);
  }
  init_clear(&k);
  return st != FG_OK ? st : fg_graph_status(g);
}

static fg_status lu_inverse(void *state, fg_flow_ctx *c, fg_node y, fg_node *x, fg_node *logdet) {
  fg_graph *g = fg_flow_graph(c);
  lu_init k;
  lu_nodes f;
  fg_status st = prepare(state, c, y, &k, &f);
  if (st == FG_OK) {
    /* W^-1 = U'^-1 (L^-1 P^T), both solves in float64 */
    fg_node pt = fg_transpose(g, fg_constant_values(g, FG_F64, fg_shape2(k.n, k.n), k.p));
    fg_node l_pt = fg_triangular_solve(g, fg__as_dtype(g, f.lower, FG_F64), pt, true, true, false);
    fg_node w_inv = fg_triangular_solve(g, fg__as_dtype(g, f.upper, FG_F64), l_pt, false, false, false);
    *x = fg__channel_mix(g, fg__as_dtype(g, w_inv, fg_node_dtype(g, y)), y, false);
    *logdet = fg__channel_logdet(g, f.log_s, y, -1.0);
  }
  init_clear(&k);
  return st != FG_OK ? st : fg_graph_status(g);
}

static const fg_arg_spec lu_args[] = {
    {"seed", FG_ARG_INT, "0", "the initial rotation (and so P) is drawn from this seed and the layer's name"},
};

const fg_bijector_type fg_bijector_conv1x1_lu = {
    .abi_version = FG_BIJECTOR_ABI_VERSION,
    .name = "conv1x1_lu",
    .doc = "Glow's LU-parameterised invertible 1x1 convolution: W = P L (U + diag(sign exp(log|s|)))",
    .n_args = 1,
    .args = lu_args,
    .create = (void (*)(void))lu_create,
    .destroy = free,
    .forward = lu_forward,
    .inverse = lu_inverse,
    .check_event = {3, {4, 2, 2}},
    .check_args = "seed=1",
    .check_lo = -2.0,
    .check_hi = 2.0,
};
