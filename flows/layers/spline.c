/* The rational-quadratic spline (spline.h) and the elementwise type built on it:
 *   "rq_spline": y = spline(x) per element, with its own learned parameters "widths" and
 *                "heights" [event..., bins] and "derivatives" [event..., bins - 1], zero at
 *                creation (the identity); log|det| = Σ log spline'(x). */
#include "flows/layers/spline.h"

#include <math.h>
#include <stdlib.h>

#include "flows/layers/layer_util.h"
#include "flows/layers/layers.h"
#include "ops/ops.h"

fg_status fg__spline_opts_parse(fg__spline_opts *out, int64_t bins, double bound, double min_width,
                                double min_height, double min_derivative, fg_err *e) {
  if (bins < 1 || bins > 1024)
    return fg_err_set(e, FG_E_MISUSE, "argument 'bins': %lld is not a count in 1..1024",
                      (long long)bins);
  if (!(bound > 0) || !isfinite(bound))
    return fg_err_set(e, FG_E_MISUSE, "argument 'bound': %g must be positive and finite", bound);
  if (!(min_width > 0) || !(min_width * (double)bins < 1))
    return fg_err_set(e, FG_E_MISUSE, "argument 'min_width': %g must be > 0 and below 1/bins "
                      "(%g)", min_width, 1.0 / (double)bins);
  if (!(min_height > 0) || !(min_height * (double)bins < 1))
    return fg_err_set(e, FG_E_MISUSE, "argument 'min_height': %g must be > 0 and below 1/bins "
                      "(%g)", min_height, 1.0 / (double)bins);
  if (!(min_derivative > 0) || !(min_derivative < 1))
    return fg_err_set(e, FG_E_MISUSE, "argument 'min_derivative': %g must be in (0, 1)",
                      min_derivative);
  *out = (fg__spline_opts){bins, bound, min_width, min_height, min_derivative};
  return FG_OK;
}

int64_t fg__spline_params(const fg__spline_opts *o) { return 3 * o->bins - 1; }

/* [.., 1] filled with v, in u's shape otherwise. */
static fg_node edge(fg_graph *g, fg_node u, double v) {
  fg_shape s = fg_node_shape(g, u);
  s.d[s.ndim - 1] = 1;
  return fg_fill(g, v, fg_node_dtype(g, u), s);
}

/* K bin sizes from K raw values (softmax, at least min_size each, scaled onto [-bound, bound])
 * and the K + 1 knots they put there, both ends exact.  The sizes are taken as they are, not
 * as differences of knots: a narrow bin far from -bound would lose most of its digits. */
static fg_node knots(fg_graph *g, const fg__spline_opts *o, fg_node raw, double min_size,
                     fg_node *sizes) {
  int last = (int)fg_node_shape(g, raw).ndim - 1;
  int64_t k = o->bins;
  fg_node p = fg_exp(g, fg_sub(g, raw, fg_logsumexp(g, raw, FG_AXIS(last), true)));
  fg_node share = fg_add_scalar(g, fg_mul_scalar(g, p, 1 - min_size * (double)k), min_size);
  *sizes = fg_mul_scalar(g, share, 2 * o->bound);
  fg_node cum = fg_add_scalar(g, fg_cumsum(g, *sizes, last, false), -o->bound);
  fg_node parts[3];
  parts[0] = edge(g, raw, -o->bound);
  parts[1] = fg_slice_axis(g, cum, last, 0, k - 1);
  parts[2] = edge(g, raw, o->bound);
  return fg_concat(g, 3, parts, last);
}

/* The K + 1 knot derivatives: 1 at both ends (the linear tails' slope), the interior ones
 * min_derivative + softplus(raw + c) with c making raw 0 a derivative of 1. */
static fg_node knot_derivatives(fg_graph *g, const fg__spline_opts *o, fg_node raw) {
  int last = (int)fg_node_shape(g, raw).ndim - 1;
  double c = log(expm1(1 - o->min_derivative));
  fg_node inner = fg_add_scalar(g, fg_softplus(g, fg_add_scalar(g, raw, c)), o->min_derivative);
  fg_node parts[3];
  parts[0] = edge(g, raw, 1.0);
  parts[1] = inner;
  parts[2] = edge(g, raw, 1.0);
  return fg_concat(g, 3, parts, last);
}

/* The values of one bin, each [B, S..., 1]. */
typedef struct bin_values {
  fg_node x0, width, y0, height, d0, d1, slope;
} bin_values;

static bin_values look_up(fg_graph *g, const fg__spline_opts *o, fg_node u, fg_node at,
                          bool inverse) {
  int last = (int)fg_node_shape(g, u).ndim - 1;
  int64_t k = o->bins;
  fg_node widths, heights;
  fg_node kx = knots(g, o, fg_slice_axis(g, u, last, 0, k), o->min_width, &widths);
  fg_node ky = knots(g, o, fg_slice_axis(g, u, last, k, 2 * k), o->min_height, &heights);
  fg_node kd = knot_derivatives(g, o, fg_slice_axis(g, u, last, 2 * k, 3 * k - 1));
  /* the bin: how many interior knots are <= the point, so 0..K-1 */
  fg_node table = fg_slice_axis(g, inverse ? ky : kx, last, 1, k);
  fg_node bin = fg_searchsorted(g, table, at, true);
  bin_values v;
  v.x0 = fg_gather(g, kx, bin, last), v.width = fg_gather(g, widths, bin, last);
  v.y0 = fg_gather(g, ky, bin, last), v.height = fg_gather(g, heights, bin, last);
  v.d0 = fg_gather(g, kd, bin, last), v.d1 = fg_gather(g, kd, fg_add_scalar(g, bin, 1.0), last);
  v.slope = fg_div(g, v.height, v.width);
  return v;
}

/* log of the forward derivative at position xi in the bin:
 * s² (d1 ξ² + 2 s ξ(1-ξ) + d0 (1-ξ)²) / (s + (d1 + d0 - 2s) ξ(1-ξ))² */
static fg_node log_derivative(fg_graph *g, const bin_values *v, fg_node xi, fg_node denom) {
  fg_node one_minus = fg_add_scalar(g, fg_neg(g, xi), 1.0);
  fg_node middle = fg_mul_scalar(g, fg_mul(g, v->slope, fg_mul(g, xi, one_minus)), 2.0);
  fg_node inner = fg_add(g, fg_add(g, fg_mul(g, v->d1, fg_square(g, xi)), middle),
                         fg_mul(g, v->d0, fg_square(g, one_minus)));
  return fg_sub(g, fg_add(g, fg_mul_scalar(g, fg_log(g, v->slope), 2.0), fg_log(g, inner)),
                fg_mul_scalar(g, fg_log(g, denom), 2.0));
}

/* s + (d1 + d0 - 2s) ξ(1-ξ), written s (ξ² + (1-ξ)²) + (d1 + d0) ξ(1-ξ): a sum of positive
 * terms, where the first form cancels for steep bins (s > (d0 + d1) / 2). */
static fg_node denominator(fg_graph *g, const bin_values *v, fg_node xi) {
  fg_node one_minus = fg_add_scalar(g, fg_neg(g, xi), 1.0);
  fg_node ends = fg_add(g, fg_square(g, xi), fg_square(g, one_minus));
  fg_node bend = fg_mul(g, fg_add(g, v->d1, v->d0), fg_mul(g, xi, one_minus));
  return fg_add(g, fg_mul(g, v->slope, ends), bend);
}

static fg_node forward_in_bin(fg_graph *g, const bin_values *v, fg_node x, fg_node *log_deriv) {
  fg_node xi = fg_div(g, fg_sub(g, x, v->x0), v->width);
  fg_node t = fg_mul(g, xi, fg_add_scalar(g, fg_neg(g, xi), 1.0));
  fg_node rise = fg_add(g, fg_mul(g, v->slope, fg_square(g, xi)), fg_mul(g, v->d0, t));
  fg_node num = fg_mul(g, v->height, rise);
  fg_node den = denominator(g, v, xi);
  *log_deriv = log_derivative(g, v, xi, den);
  return fg_add(g, v->y0, fg_div(g, num, den));
}

/* The root of a ξ² + b ξ + c = 0 in [0, 1]; a = h (s - d0) + Δ k, b = h d0 - Δ k,
 * c = -s Δ with Δ = y - y0, k = d1 + d0 - 2s.  It is 2c / (-b - sqrt(b² - 4ac)) =
 * (-b + sqrt(b² - 4ac)) / 2a, the first free of cancellation where b >= 0, the second where
 * b < 0 (and then a >= -b > 0, so the denominator a is only ever used where it is safe;
 * elsewhere it reads 1). */
static fg_node inverse_in_bin(fg_graph *g, const bin_values *v, fg_node y, fg_node *log_deriv) {
  fg_node delta = fg_sub(g, y, v->y0);
  fg_node bend = fg_sub(g, fg_add(g, v->d1, v->d0), fg_mul_scalar(g, v->slope, 2.0));
  fg_node dk = fg_mul(g, delta, bend);
  fg_node a = fg_add(g, fg_mul(g, v->height, fg_sub(g, v->slope, v->d0)), dk);
  fg_node b = fg_sub(g, fg_mul(g, v->height, v->d0), dk);
  fg_node c = fg_neg(g, fg_mul(g, v->slope, delta));
  fg_node disc = fg_sub(g, fg_square(g, b), fg_mul_scalar(g, fg_mul(g, a, c), 4.0));
  fg_node root = fg_sqrt(g, fg_clamp(g, disc, 0, INFINITY));
  fg_node one = fg_ones_like(g, b), b_negative = fg_less(g, b, fg_zeros_like(g, b));
  fg_node den_c = fg_where(g, b_negative, fg_neg(g, one), fg_sub(g, fg_neg(g, b), root));
  fg_node via_c = fg_div(g, fg_mul_scalar(g, c, 2.0), den_c);
  fg_node den_a = fg_mul_scalar(g, fg_where(g, b_negative, a, one), 2.0);
  fg_node via_a = fg_div(g, fg_sub(g, root, b), den_a);
  fg_node xi = fg_where(g, b_negative, via_a, via_c);
  *log_deriv = log_derivative(g, v, xi, denominator(g, v, xi));
  return fg_add(g, v->x0, fg_mul(g, xi, v->width));
}

fg_node fg__rq_spline(fg_graph *g, const fg__spline_opts *o, fg_node x, fg_node u, bool inverse,
                      fg_node *log_deriv) {
  *log_deriv = FG_POISON;
  if (fg_graph_status(g) != FG_OK) return FG_POISON;
  fg_shape xs = fg_node_shape(g, x), x1 = xs;
  x1.d[x1.ndim++] = 1;
  fg_dtype t = fg_node_dtype(g, x);
  fg_node at = fg_reshape(g, x, x1);
  /* outside [-bound, bound] the identity; the spline itself only ever sees points inside, so
   * neither its value nor its gradient can be inf or NaN where the tail is used */
  fg_node inside = fg_logical_and(g, fg_greater_equal(g, at, fg_scalar(g, -o->bound, t)),
                                  fg_less_equal(g, at, fg_scalar(g, o->bound, t)));
  fg_node clamped = fg_clamp(g, at, -o->bound, o->bound), ld;
  bin_values v = look_up(g, o, u, clamped, inverse);
  fg_node out = inverse ? inverse_in_bin(g, &v, clamped, &ld) : forward_in_bin(g, &v, clamped, &ld);
  *log_deriv = fg_reshape(g, fg_where(g, inside, ld, fg_scalar(g, 0.0, t)), xs);
  return fg_reshape(g, fg_where(g, inside, out, at), xs);
}

/* ---- "rq_spline": the elementwise type ---- */

static fg_status rq_create(void **state, fg_err *e, int64_t bins, double bound, double min_width,
                           double min_height, double min_derivative) {
  fg__spline_opts o;
  fg_status st = fg__spline_opts_parse(&o, bins, bound, min_width, min_height, min_derivative, e);
  if (st != FG_OK) return st;
  fg__spline_opts *s = malloc(sizeof *s);
  if (!s) return fg_err_set(e, FG_E_NOMEM, "rq_spline: out of memory");
  *s = o;
  *state = s;
  return FG_OK;
}

/* The raw parameters [1, event..., 3K - 1] from the three learned tables. */
static fg_node own_params(const fg__spline_opts *o, fg_flow_ctx *c, fg_node x) {
  fg_graph *g = fg_flow_graph(c);
  fg_shape xs = fg_node_shape(g, x), ev = {.ndim = xs.ndim};
  for (int i = 1; i < xs.ndim; i++) ev.d[i - 1] = xs.d[i];
  fg_init zeros = {FG_INIT_ZEROS, 0, 0};
  fg_shape sw = ev, sd = ev;
  sw.d[ev.ndim - 1] = o->bins, sd.d[ev.ndim - 1] = o->bins - 1;
  fg_node parts[3]; /* created in this order, so the store's order is fixed */
  parts[0] = fg__param_like(c, "widths", sw, zeros, x);
  parts[1] = fg__param_like(c, "heights", sw, zeros, x);
  parts[2] = fg__param_like(c, "derivatives", sd, zeros, x);
  fg_node u = fg_concat(g, 3, parts, (int)ev.ndim - 1);
  fg_shape us = fg_node_shape(g, u), batched = {.ndim = us.ndim + 1, .d = {1}};
  for (int i = 0; i < us.ndim; i++) batched.d[i + 1] = us.d[i];
  return fg_reshape(g, u, batched);
}

static fg_status rq_run(void *state, fg_flow_ctx *c, fg_node in, bool inverse, fg_node *out,
                        fg_node *logdet) {
  fg_graph *g = fg_flow_graph(c);
  fg_status st = fg__layer_expect_rank(c, in, 2, FG_MAX_DIMS - 1, "[B, ...]");
  if (st != FG_OK) return st;
  fg_node ld;
  *out = fg__rq_spline(g, state, in, own_params(state, c, in), inverse, &ld);
  fg_node total = fg__sum_event(g, ld);
  *logdet = inverse ? fg_neg(g, total) : total;
  return fg_graph_status(g);
}

static fg_status rq_forward(void *state, fg_flow_ctx *c, fg_node x, fg_node *y, fg_node *logdet) {
  return rq_run(state, c, x, false, y, logdet);
}

static fg_status rq_inverse(void *state, fg_flow_ctx *c, fg_node y, fg_node *x, fg_node *logdet) {
  return rq_run(state, c, y, true, x, logdet);
}

static const fg_arg_spec rq_args[] = {FG__SPLINE_ARG_SPECS};

const fg_bijector_type fg_bijector_rq_spline = {
    .abi_version = FG_BIJECTOR_ABI_VERSION,
    .name = "rq_spline",
    .doc = "elementwise rational-quadratic spline (Durkan et al. 2019), linear tails, learned "
           "knots",
    .n_args = (int)(sizeof rq_args / sizeof rq_args[0]),
    .args = rq_args,
    .create = (void (*)(void))rq_create,
    .destroy = free,
    .forward = rq_forward,
    .inverse = rq_inverse,
    .check_event = {1, {5}},
    .check_args = "bins=5, bound=2.5",
    .check_lo = -3.5,
    .check_hi = 3.5,
};
