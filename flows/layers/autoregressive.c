/* Masked autoregressive flows (Papamakarios et al. 2017) and inverse autoregressive flows
 * (Kingma et al. 2016) on x [B, ...], flattened to D elements: a MADE conditioner
 * (flows/layers/conditioner.h) gives element i's transform parameters from the elements before
 * it, and element i goes through a monotone elementwise transform T with them:
 *   transform=affine  T(u) = u·exp(s) + m, s = c·tanh(raw) with a learned per-element "rescale"
 *                     c (1 at creation), as RealNVP bounds its scales;
 *   transform=spline  T = the rational-quadratic spline with linear tails (flows/layers/spline.h),
 *                     3·bins - 1 parameters per element.
 *   "maf" forward (data -> latent, the density direction) is one pass: y = T(x; MADE(x)).  Its
 *         inverse (sampling) solves T(x; MADE(x)) = y by D passes, x <- T^-1(y; MADE(x)) from
 *         x = 0: after pass k the first k elements in the order are exact.
 *   "iaf" the other way round: forward x -> z takes D passes (z <- T^-1(x; MADE(z))), inverse
 *         (sampling) is one pass x = T(z; MADE(z)).
 * The log-det is Σ log T' (declared; the engine would find the same triangular structure).  The
 * MADE's output layer is zero-initialised, so both start as the identity.  Parameters:
 * "made.hidden<i>.{w,b}", "made.out.{w,b}", and "rescale" [D] (affine). */
#include <stdlib.h>
#include <string.h>

#include "flows/layers/conditioner.h"
#include "flows/layers/layer_util.h"
#include "flows/layers/layers.h"
#include "flows/layers/spline.h"
#include "ops/ops.h"

typedef struct ar_state {
  bool iaf, spline, reversed;
  int64_t hidden, blocks;
  fg__spline_opts spline_opts;
} ar_state;

static const fg_arg_spec ar_args[] = {
    {"transform", FG_ARG_STRING, "affine", "affine | spline: the map of each element"},
    {"hidden", FG_ARG_INT, "64", "width of the MADE's hidden layers"},
    {"blocks", FG_ARG_INT, "2", "hidden layers of the MADE"},
    {"reversed", FG_ARG_BOOL, "false", "order the elements D..1 instead of 1..D"},
    FG__SPLINE_ARG_SPECS,
};

static fg_status ar_create(ar_state *s, fg_err *e, const char *transform, int64_t hidden,
                           int64_t blocks, int reversed, int64_t bins, double bound,
                           double min_width, double min_height, double min_derivative) {
  memset(s, 0, sizeof *s);
  if (!transform || (strcmp(transform, "affine") && strcmp(transform, "spline")))
    return fg_err_set(e, FG_E_MISUSE, "argument 'transform': unknown transform \"%s\" "
                      "(accepted: affine, spline)", transform ? transform : "(null)");
  fg_conditioner net; /* the same limits on hidden and blocks as the couplings' MLP */
  fg_status st = fg_conditioner_parse(&net, "mlp", hidden, blocks, e);
  if (st != FG_OK) return st;
  s->spline = !strcmp(transform, "spline");
  s->hidden = hidden, s->blocks = blocks, s->reversed = reversed != 0;
  return fg__spline_opts_parse(&s->spline_opts, bins, bound, min_width, min_height,
                               min_derivative, e);
}

#define AR_CREATE(kind, is_iaf)                                                                  \
  static fg_status kind##_create(void **state, fg_err *e, const char *transform, int64_t hidden, \
                                 int64_t blocks, int reversed, int64_t bins, double bound,       \
                                 double min_width, double min_height, double min_derivative) {   \
    ar_state s;                                                                                  \
    fg_status st = ar_create(&s, e, transform, hidden, blocks, reversed, bins, bound, min_width, \
                             min_height, min_derivative);                                        \
    if (st != FG_OK) return st;                                                                  \
    s.iaf = is_iaf;                                                                              \
    ar_state *out = malloc(sizeof *out);                                                         \
    if (!out) return fg_err_set(e, FG_E_NOMEM, #kind ": out of memory");                        \
    *out = s;                                                                                    \
    *state = out;                                                                                \
    return FG_OK;                                                                                \
  }
AR_CREATE(maf, false)
AR_CREATE(iaf, true)

static int64_t per_input(const ar_state *s) {
  return s->spline ? fg__spline_params(&s->spline_opts) : 2;
}

/* T(u) (or T^-1(u)) with parameters p [B, D, P]; *ld = log T' per element at the forward point. */
static fg_node transform(const ar_state *s, fg_flow_ctx *c, fg_node u, fg_node p, bool inverse,
                         fg_node *ld) {
  fg_graph *g = fg_flow_graph(c);
  if (s->spline) return fg__rq_spline(g, &s->spline_opts, u, p, inverse, ld);
  fg_shape us = fg_node_shape(g, u);
  fg_node shift = fg_reshape(g, fg_slice_axis(g, p, 2, 0, 1), us);
  fg_node raw = fg_reshape(g, fg_slice_axis(g, p, 2, 1, 2), us);
  fg_init ones = {FG_INIT_CONST, 1, 0};
  fg_node rescale = fg__param_like(c, "rescale", fg_shape1(us.d[1]), ones, u);
  *ld = fg_mul(g, rescale, fg_tanh(g, raw));
  return inverse ? fg_mul(g, fg_sub(g, u, shift), fg_exp(g, fg_neg(g, *ld)))
                 : fg_add(g, fg_mul(g, u, fg_exp(g, *ld)), shift);
}

static fg_node made(const ar_state *s, fg_flow_ctx *c, fg_node cond) {
  return fg_made_apply(c, "made", cond, s->hidden, s->blocks, per_input(s), s->reversed);
}

/* One pass: T(in; MADE(in)), log-det Σ log T'. */
static fg_node fast_pass(const ar_state *s, fg_flow_ctx *c, fg_node in, fg_node *logdet) {
  fg_node ld, out = transform(s, c, in, made(s, c, in), false, &ld);
  *logdet = fg__sum_event(fg_flow_graph(c), ld);
  return out;
}

/* The out with T(out; MADE(out)) = in, by D passes; log-det -Σ log T' at out. */
static fg_node slow_pass(const ar_state *s, fg_flow_ctx *c, fg_node in, fg_node *logdet) {
  fg_graph *g = fg_flow_graph(c);
  int64_t d = fg_node_shape(g, in).d[1];
  fg_node out = fg_zeros_like(g, in), ld = FG_NONE;
  for (int64_t pass = 0; pass < d && fg_graph_status(g) == FG_OK; pass++)
    out = transform(s, c, in, made(s, c, out), true, &ld);
  *logdet = fg_neg(g, fg__sum_event(g, ld));
  return out;
}

static fg_status ar_run(void *state, fg_flow_ctx *c, fg_node in, bool inverse, fg_node *out,
                        fg_node *logdet) {
  const ar_state *s = state;
  fg_graph *g = fg_flow_graph(c);
  fg_status st = fg__layer_expect_rank(c, in, 2, FG_MAX_DIMS, "[B, ...]");
  if (st != FG_OK) return st;
  fg_shape xs = fg_node_shape(g, in);
  int64_t per_sample = fg_shape_count(&xs) / (xs.d[0] ? xs.d[0] : 1);
  fg_node flat = fg_reshape(g, in, fg_shape2(xs.d[0], per_sample));
  bool fast = inverse == s->iaf; /* maf forward, iaf inverse */
  fg_node r = fast ? fast_pass(s, c, flat, logdet) : slow_pass(s, c, flat, logdet);
  *out = fg_reshape(g, r, xs);
  return fg_graph_status(g);
}

static fg_status ar_forward(void *state, fg_flow_ctx *c, fg_node x, fg_node *y, fg_node *logdet) {
  return ar_run(state, c, x, false, y, logdet);
}

static fg_status ar_inverse(void *state, fg_flow_ctx *c, fg_node y, fg_node *x, fg_node *logdet) {
  return ar_run(state, c, y, true, x, logdet);
}

const fg_bijector_type fg_bijector_maf = {
    .abi_version = FG_BIJECTOR_ABI_VERSION,
    .name = "maf",
    .doc = "masked autoregressive flow (MADE conditioner): one-pass density, D-pass sampling",
    .n_args = (int)(sizeof ar_args / sizeof ar_args[0]),
    .args = ar_args,
    .create = (void (*)(void))maf_create,
    .destroy = free,
    .forward = ar_forward,
    .inverse = ar_inverse,
    .check_event = {1, {4}},
    .check_args = "hidden=8, blocks=1",
    .check_lo = -2,
    .check_hi = 2,
};

const fg_bijector_type fg_bijector_iaf = {
    .abi_version = FG_BIJECTOR_ABI_VERSION,
    .name = "iaf",
    .doc = "inverse autoregressive flow (MADE conditioner): one-pass sampling, D-pass density",
    .n_args = (int)(sizeof ar_args / sizeof ar_args[0]),
    .args = ar_args,
    .create = (void (*)(void))iaf_create,
    .destroy = free,
    .forward = ar_forward,
    .inverse = ar_inverse,
    .check_event = {1, {4}},
    .check_args = "transform=spline, hidden=8, blocks=1, bins=4, reversed=true",
    .check_lo = -3,
    .check_hi = 3,
};
