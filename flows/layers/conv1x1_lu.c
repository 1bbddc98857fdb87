/* "conv1x1_lu": Glow's LU-parameterised invertible 1x1 convolution,
 *   W = P·L·(U + diag(sign·exp(log|s|))),
 * P a fixed permutation, L unit lower triangular, U strictly upper triangular, sign fixed and
 * log|s| learned, so log|det W| = Σ log|s| exactly and W can never become singular
 * (openai/glow#40).  log|det| = S·Σ log|s| per sample (S = H·W pixels).
 *
 * Initialisation, as Glow: P, L, U and s come from the LU factorisation (partial pivoting) of
 * a random rotation, so W starts as that rotation.  The rotation is drawn from the `seed`
 * argument and the layer's prefix (fg__layer_seed), so the layers of a model differ.  The
 * factors are the layer's buffers (fg_flow_buffers): "perm" [C] (P[perm[i]][i] = 1), "lower"
 * and "upper" [C, C] (the strict parts of L0 and U0'), "sign" and "log_s" [C], computed on the
 * first build and kept in the store, so every graph of a model, and a model loaded from a
 * checkpoint (which saves them as "buffer/<layer>.perm", ...), uses the same factors whatever
 * the generator would draw.  The parameter store can only start a parameter from a fixed
 * recipe, not from values computed here, so the learned parameters are offsets from the
 * initial factors, zero at the start:
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

typedef struct lu_state {
  int64_t seed;
} lu_state;

/* The buffers, in fg_flow_buffers order. */
enum { B_PERM, B_LOWER, B_UPPER, B_SIGN, B_LOG_S, N_BUFFERS };

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

/* What fill_factors needs: the channel count and the rotation's seed. */
typedef struct lu_fill {
  int64_t n;
  uint64_t key;
} lu_fill;

/* The factors of this layer's initial rotation into the (zero-filled) buffers. */
static fg_status fill_factors(void *ud, fg_tensor *const *b, fg_err *e) {
  const lu_fill *f = ud;
  int64_t n = f->n; /* <= FG_MAX_MIX_CHANNELS: n·n fits */
  double *a = malloc(sizeof *a * (size_t)(n * n));
  int64_t *perm = malloc(sizeof *perm * (size_t)n);
  if (!a || !perm) {
    free(a), free(perm);
    return fg_err_set(e, FG_E_NOMEM, "out of memory for a %lld-channel LU", (long long)n);
  }
  random_rotation(a, n, f->key);
  lu_in_place(a, perm, n);
  double *p = fg_tensor_data(b[B_PERM]), *lower = fg_tensor_data(b[B_LOWER]),
         *upper = fg_tensor_data(b[B_UPPER]);
  double *sign = fg_tensor_data(b[B_SIGN]), *log_s = fg_tensor_data(b[B_LOG_S]);
  for (int64_t i = 0; i < n; i++) {
    p[i] = (double)perm[i]; /* rotation = P·(L U) with P[perm[i]][i] = 1 */
    for (int64_t j = 0; j < n; j++) {
      if (j < i) lower[i * n + j] = a[i * n + j];
      if (j > i) upper[i * n + j] = a[i * n + j];
    }
    sign[i] = a[i * n + i] < 0 ? -1.0 : 1.0;
    log_s[i] = log(fabs(a[i * n + i]));
  }
  free(a), free(perm);
  return FG_OK;
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

/* The factors as graph values in x's dtype, and P. */
typedef struct lu_nodes {
  fg_node lower, upper, log_s; /* L (unit diagonal), U' = U + diag(sign·exp(log|s|)), log|s| */
  fg_node p; /* [C, C] in float64 */
} lu_nodes;

static const double *values_of(const fg_tensor *t) { return fg_tensor_data((fg_tensor *)t); }

static lu_nodes build_factors(const fg_tensor *const *b, fg_flow_ctx *c, fg_node x, int64_t n) {
  fg_graph *g = fg_flow_graph(c);
  fg_dtype t = fg_node_dtype(g, x);
  fg_shape sq = fg_shape2(n, n), vec = fg_shape1(n);
  fg_init zeros = {FG_INIT_ZEROS, 0, 0};
  fg_node eye = mask_matrix(g, n, 0, t);
  fg_node dl = fg__param_like(c, "lower_offset", sq, zeros, x);
  fg_node du = fg__param_like(c, "upper_offset", sq, zeros, x);
  fg_node dls = fg__param_like(c, "log_s_offset", vec, zeros, x);
  lu_nodes f;
  fg_node lower0 = fg_constant_values(g, t, sq, values_of(b[B_LOWER]));
  f.lower = fg_add(g, fg_mul(g, fg_add(g, lower0, dl), mask_matrix(g, n, -1, t)), eye);
  f.log_s = fg_add(g, fg_constant_values(g, t, vec, values_of(b[B_LOG_S])), dls);
  fg_node diag =
      fg_mul(g, fg_constant_values(g, t, vec, values_of(b[B_SIGN])), fg_exp(g, f.log_s)); /* s */
  fg_node upper0 = fg_constant_values(g, t, sq, values_of(b[B_UPPER]));
  fg_node strict = fg_mul(g, fg_add(g, upper0, du), mask_matrix(g, n, 1, t));
  f.upper = fg_add(g, strict, fg_mul(g, eye, fg_reshape(g, diag, fg_shape2(1, n))));
  f.p = fg__permutation_matrix(g, values_of(b[B_PERM]), n, true, FG_F64);
  return f;
}

/* Shared prologue: shape check, the layer's buffers, the factor nodes. */
static fg_status prepare(const lu_state *s, fg_flow_ctx *c, fg_node x, lu_nodes *f, int64_t *n) {
  fg_status st = fg__layer_mix_channels(c, x, n);
  if (st != FG_OK) return st;
  const fg_shape sq = fg_shape2(*n, *n), vec = fg_shape1(*n);
  const fg_buffer_decl decls[N_BUFFERS] = {{"perm", vec, fg__check_permutation},
                                           {"lower", sq, NULL},
                                           {"upper", sq, NULL},
                                           {"sign", vec, fg__check_signs},
                                           {"log_s", vec, NULL}};
  lu_fill fill = {*n, fg__layer_seed(c, s->seed)};
  const fg_tensor *b[N_BUFFERS];
  if (fg_flow_buffers(c, N_BUFFERS, decls, fill_factors, &fill, b) == FG_OK)
    *f = build_factors(b, c, x, *n);
  return fg_graph_status(fg_flow_graph(c));
}

static fg_status lu_forward(void *state, fg_flow_ctx *c, fg_node x, fg_node *y, fg_node *logdet) {
  fg_graph *g = fg_flow_graph(c);
  lu_nodes f;
  int64_t n;
  if (prepare(state, c, x, &f, &n) != FG_OK) return fg_graph_status(g);
  fg_node w =
      fg_matmul(g, fg__as_dtype(g, f.p, fg_node_dtype(g, x)), fg_matmul(g, f.lower, f.upper));
  *y = fg__channel_mix(g, w, x, false);
  *logdet = fg__channel_logdet(g, f.log_s, x, 1.0);
  return fg_graph_status(g);
}

static fg_status lu_inverse(void *state, fg_flow_ctx *c, fg_node y, fg_node *x, fg_node *logdet) {
  fg_graph *g = fg_flow_graph(c);
  lu_nodes f;
  int64_t n;
  if (prepare(state, c, y, &f, &n) != FG_OK) return fg_graph_status(g);
  /* W^-1 = U'^-1 (L^-1 P^T), both solves in float64 */
  fg_node pt = fg_transpose(g, f.p);
  fg_node l_pt = fg_triangular_solve(g, fg__as_dtype(g, f.lower, FG_F64), pt, true, true, false);
  fg_node w_inv =
      fg_triangular_solve(g, fg__as_dtype(g, f.upper, FG_F64), l_pt, false, false, false);
  *x = fg__channel_mix(g, fg__as_dtype(g, w_inv, fg_node_dtype(g, y)), y, false);
  *logdet = fg__channel_logdet(g, f.log_s, y, -1.0);
  return fg_graph_status(g);
}

static const fg_arg_spec lu_args[] = {
    {"seed", FG_ARG_INT, "0",
     "the initial rotation (and so P) is drawn from this seed and the layer's name"},
};

const fg_bijector_type fg_bijector_conv1x1_lu = {
    .abi_version = FG_BIJECTOR_ABI_VERSION,
    .name = "conv1x1_lu",
    .doc =
        "Glow's LU-parameterised invertible 1x1 convolution: W = P L (U + diag(sign exp(log|s|)))",
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
