/* Fixed channel permutations: "reverse" (RealNVP/Glow's reversal), "shuffle" (a fixed random
 * permutation, Glow's permutation 1) and "permute" (one given by the user).  They act on axis 1
 * of x [B, C, ...]: the channels of an image, the features of a vector.  Log-det 0.
 *
 * Applied as a product with a constant permutation matrix along the channel axis (the engine
 * has no gather): one GEMM, whose gradient is the transposed permutation.  Every output is
 * 1·x plus zeros, so the values are exact; only a non-finite input spreads to other channels
 * (0·inf), which a flow's NaN checks report anyway. */
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "flows/layers/layer_util.h"
#include "flows/layers/layers.h"
#include "ops/ops.h"

typedef enum perm_kind { PERM_REVERSE, PERM_SHUFFLE, PERM_GIVEN } perm_kind;

typedef struct perm_state {
  perm_kind kind;
  int64_t seed;   /* shuffle */
  int64_t n;      /* given: its length */
  int64_t *given; /* given: output channel i takes input channel given[i] */
} perm_state;

static void perm_destroy(void *state) {
  perm_state *s = state;
  if (!s) return;
  free(s->given);
  free(s);
}

static fg_status perm_new(void **state, fg_err *e, perm_kind kind, const char *name) {
  perm_state *s = calloc(1, sizeof *s);
  if (!s) return fg_err_set(e, FG_E_NOMEM, "%s: out of memory", name);
  s->kind = kind;
  *state = s;
  return FG_OK;
}

static fg_status reverse_create(void **state, fg_err *e) {
  return perm_new(state, e, PERM_REVERSE, "reverse");
}

static fg_status shuffle_create(void **state, fg_err *e, int64_t seed) {
  fg_status st = perm_new(state, e, PERM_SHUFFLE, "shuffle");
  if (st == FG_OK) ((perm_state *)*state)->seed = seed;
  return st;
}

/* A valid permutation of 0..n-1: every index in range and none twice. */
static fg_status validate_perm(const fg_ints *perm, fg_err *e) {
  if (!perm || perm->n < 1 || !perm->v)
    return fg_err_set(e, FG_E_MISUSE, "permute: argument 'perm' must list at least one index");
  bool *seen = calloc((size_t)perm->n, sizeof *seen);
  if (!seen) return fg_err_set(e, FG_E_NOMEM, "permute: out of memory");
  fg_status st = FG_OK;
  for (int64_t i = 0; i < perm->n && st == FG_OK; i++) {
    int64_t v = perm->v[i];
    if (v < 0 || v >= perm->n)
      st = fg_err_set(e, FG_E_MISUSE, "permute: argument 'perm': entry %lld is %lld, outside "
                      "[0, %lld) (a permutation of the %lld channels)", (long long)i, (long long)v,
                      (long long)perm->n, (long long)perm->n);
    else if (seen[v])
      st = fg_err_set(e, FG_E_MISUSE, "permute: argument 'perm': %lld appears twice, so it is "
                      "not a permutation of 0..%lld", (long long)v, (long long)perm->n - 1);
    else
      seen[v] = true;
  }
  free(seen);
  return st;
}

static fg_status permute_create(void **state, fg_err *e, const fg_ints *perm) {
  fg_status st = validate_perm(perm, e);
  if (st != FG_OK) return st;
  int64_t *copy = malloc(sizeof *copy * (size_t)perm->n);
  if (!copy) return fg_err_set(e, FG_E_NOMEM, "permute: out of memory");
  memcpy(copy, perm->v, sizeof *copy * (size_t)perm->n);
  st = perm_new(state, e, PERM_GIVEN, "permute");
  if (st != FG_OK) {
    free(copy);
    return st;
  }
  perm_state *s = *state;
  s->n = perm->n;
  s->given = copy;
  return FG_OK;
}

/* Fisher-Yates driven by the counter-based generator: a pure function of the seed. */
static void shuffle_indices(int64_t *p, int64_t n, uint64_t seed) {
  for (int64_t i = 0; i < n; i++) p[i] = i;
  for (int64_t i = n - 1; i > 0; i--) {
    int64_t j = (int64_t)(fg_rng_uniform(seed, (uint64_t)i) * (double)(i + 1));
    if (j > i) j = i; /* guards the rounding of u·(i+1) for u just below 1 */
    int64_t t = p[i];
    p[i] = p[j], p[j] = t;
  }
}

/* The permutation for c channels into p (c entries), or an error naming the mismatch. */
static fg_status channel_perm(perm_state *s, fg_flow_ctx *c, fg_shape xs, int64_t *p) {
  int64_t n = xs.d[1];
  switch (s->kind) {
  case PERM_REVERSE:
    for (int64_t i = 0; i < n; i++) p[i] = n - 1 - i;
    return FG_OK;
  case PERM_SHUFFLE: shuffle_indices(p, n, fg__layer_seed(c, s->seed)); return FG_OK;
  case PERM_GIVEN:
    if (s->n != n) {
      char buf[128];
      return fg__layer_fail(c, FG_E_SHAPE, "perm has %lld entries but the input has %lld "
                            "channels, got %s", (long long)s->n, (long long)n,
                            fg__batch_shape_str(&xs, buf, sizeof buf));
    }
    memcpy(p, s->given, sizeof *p * (size_t)n);
    return FG_OK;
  }
  return fg__layer_fail(c, FG_E_INTERNAL, "unknown permutation kind");
}

/* The [C, C] matrix P with P[i][p[i]] = 1, so (P x)_i = x_{p[i]}. */
static fg_node perm_matrix(perm_state *s, fg_flow_ctx *c, fg_node x) {
  fg_graph *g = fg_flow_graph(c);
  fg_shape xs = fg_node_shape(g, x);
  int64_t n = xs.d[1];
  int64_t *p = malloc(sizeof *p * (size_t)n);
  double *m = calloc((size_t)(n * n), sizeof *m);
  fg_node out = FG_POISON;
  if (!p || !m)
    fg__layer_fail(c, FG_E_NOMEM, "out of memory for a %lld-channel permutation", (long long)n);
  else if (channel_perm(s, c, xs, p) == FG_OK) {
    for (int64_t i = 0; i < n; i++) m[i * n + p[i]] = 1.0;
    out = fg_constant_values(g, fg_node_dtype(g, x), fg_shape2(n, n), m);
  }
  free(p), free(m);
  return out;
}

static fg_status perm_apply(void *state, fg_flow_ctx *c, fg_node in, fg_node *out, fg_node *logdet,
                            bool inverse) {
  fg_graph *g = fg_flow_graph(c);
  fg_status st = fg__layer_expect_rank(c, in, 2, FG_MAX_DIMS, "[B, C, ...] (channels on axis 1)");
  if (st != FG_OK) return st;
  fg_node p = perm_matrix(state, c, in);
  *out = fg__channel_mix(g, p, in, inverse); /* P^T = P^-1 */
  *logdet = fg__batch_fill(g, in, 0.0);
  return fg_graph_status(g);
}

static fg_status perm_forward(void *state, fg_flow_ctx *c, fg_node x, fg_node *y, fg_node *logdet) {
  return perm_apply(state, c, x, y, logdet, false);
}

static fg_status perm_inverse(void *state, fg_flow_ctx *c, fg_node y, fg_node *x, fg_node *logdet) {
  return perm_apply(state, c, y, x, logdet, true);
}

const fg_bijector_type fg_bijector_reverse = {
    .abi_version = FG_BIJECTOR_ABI_VERSION,
    .name = "reverse",
    .doc = "reverses the channel axis (features of a vector); log-det 0",
    .create = (void (*)(void))reverse_create,
    .destroy = perm_destroy,
    .forward = perm_forward,
    .inverse = perm_inverse,
    .check_event = {3, {4, 2, 2}},
    .check_args = "",
    .check_lo = -2.0,
    .check_hi = 2.0,
};

static const fg_arg_spec shuffle_args[] = {
    {"seed", FG_ARG_INT, "0", "the permutation is drawn from this seed and the layer's name"},
};

const fg_bijector_type fg_bijector_shuffle = {
    .abi_version = FG_BIJECTOR_ABI_VERSION,
    .name = "shuffle",
    .doc = "a fixed random permutation of the channels (features); log-det 0",
    .n_args = 1,
    .args = shuffle_args,
    .create = (void (*)(void))shuffle_create,
    .destroy = perm_destroy,
    .forward = perm_forward,
    .inverse = perm_inverse,
    .check_event = {1, {6}},
    .check_args = "seed=3",
    .check_lo = -2.0,
    .check_hi = 2.0,
};

static const fg_arg_spec permute_args[] = {
    {"perm", FG_ARG_INTS, NULL, "output channel i takes input channel perm[i]"},
};

const fg_bijector_type fg_bijector_permute = {
    .abi_version = FG_BIJECTOR_ABI_VERSION,
    .name = "permute",
    .doc = "a given permutation of the channels (features): output i is input perm[i]; log-det 0",
    .n_args = 1,
    .args = permute_args,
    .create = (void (*)(void))permute_create,
    .destroy = perm_destroy,
    .forward = perm_forward,
    .inverse = perm_inverse,
    .check_event = {3, {4, 2, 2}},
    .check_args = "perm=[2, 0, 3, 1]",
    .check_lo = -2.0,
    .check_hi = 2.0,
};
