/* Elementwise bijectors on x [B, ...]; every log-det is a sum over the event per sample.
 *   "exp":     y = exp(x),                 log|det| = Σ x
 *   "sigmoid": y = sigmoid(x),             log|det| = Σ logsigmoid(x) + logsigmoid(-x)
 *   "affine":  y = scale·x + shift,        log|det| = D·log|scale|     (fixed scale and shift)
 *   "scale":   y = x·exp(log_scale),       log|det| = Σ log_scale
 *              NICE's learned diagonal scaling: parameter "log_scale" with the event's shape
 *              (one log-scale per feature), zero at creation.
 * and the fixed maps TensorFlow Probability users reach for:
 *   "tanh":        y = tanh(x), onto (-1, 1)       log|det| = Σ 2 (log 2 - x - softplus(-2x))
 *   "softplus":    y = log(1 + e^x), onto (0, ∞)   log|det| = Σ logsigmoid(x)
 *   "leaky_relu":  y = x (x >= 0), alpha·x (x < 0) log|det| = Σ_{x<0} log alpha   (alpha > 0)
 *   "power":       y = x^power on (0, ∞)           log|det| = Σ log power + (power - 1) log x
 *   "kumaraswamy": y = 1 - (1 - x^a)^b on (0, 1), the Kumaraswamy(a, b) CDF,
 *                  log|det| = Σ log(a b) + (a - 1) log x + (b - 1) log(1 - x^a). */
#include <math.h>
#include <stdlib.h>

#include "flows/layers/layer_util.h"
#include "flows/layers/layers.h"
#include "ops/ops.h"

static fg_status no_state(void **state, fg_err *e) {
  (void)e;
  *state = NULL;
  return FG_OK;
}

static fg_status expect_batch(fg_flow_ctx *c, fg_node x) {
  return fg__layer_expect_rank(c, x, 1, FG_MAX_DIMS, "[B, ...]");
}

/* Elements per sample. */
static double event_size(fg_graph *g, fg_node x) {
  fg_shape s = fg_node_shape(g, x);
  return (double)(fg_shape_count(&s) / (s.d[0] ? s.d[0] : 1));
}

/* ---- exp ---- */

static fg_status exp_forward(void *state, fg_flow_ctx *c, fg_node x, fg_node *y, fg_node *logdet) {
  (void)state;
  fg_graph *g = fg_flow_graph(c);
  fg_status st = expect_batch(c, x);
  if (st != FG_OK) return st;
  *y = fg_exp(g, x);
  *logdet = fg__sum_event(g, x);
  return fg_graph_status(g);
}

static fg_status exp_inverse(void *state, fg_flow_ctx *c, fg_node y, fg_node *x, fg_node *logdet) {
  (void)state;
  fg_graph *g = fg_flow_graph(c);
  fg_status st = expect_batch(c, y);
  if (st != FG_OK) return st;
  *x = fg_log(g, y);
  *logdet = fg_neg(g, fg__sum_event(g, *x));
  return fg_graph_status(g);
}

const fg_bijector_type fg_bijector_exp = {
    .abi_version = FG_BIJECTOR_ABI_VERSION,
    .name = "exp",
    .doc = "y = exp(x) elementwise",
    .create = (void (*)(void))no_state,
    .forward = exp_forward,
    .inverse = exp_inverse,
    .check_event = {1, {6}},
    .check_args = "",
    .check_lo = -2.0,
    .check_hi = 2.0,
};

/* ---- sigmoid ---- */

static fg_status sigmoid_forward(void *state, fg_flow_ctx *c, fg_node x, fg_node *y,
                                 fg_node *logdet) {
  (void)state;
  fg_graph *g = fg_flow_graph(c);
  fg_status st = expect_batch(c, x);
  if (st != FG_OK) return st;
  *y = fg_sigmoid(g, x);
  /* log σ'(x) = log σ(x) + log σ(-x), without the cancellation of log(y·(1 - y)) */
  *logdet = fg__sum_event(g, fg_add(g, fg_logsigmoid(g, x), fg_logsigmoid(g, fg_neg(g, x))));
  return fg_graph_status(g);
}

static fg_status sigmoid_inverse(void *state, fg_flow_ctx *c, fg_node y, fg_node *x,
                                 fg_node *logdet) {
  (void)state;
  fg_graph *g = fg_flow_graph(c);
  fg_status st = expect_batch(c, y);
  if (st != FG_OK) return st;
  fg_node log_y = fg_log(g, y), log_1my = fg_log1p(g, fg_neg(g, y));
  *x = fg_sub(g, log_y, log_1my);
  *logdet = fg_neg(g, fg__sum_event(g, fg_add(g, log_y, log_1my)));
  return fg_graph_status(g);
}

const fg_bijector_type fg_bijector_sigmoid = {
    .abi_version = FG_BIJECTOR_ABI_VERSION,
    .name = "sigmoid",
    .doc = "y = sigmoid(x) elementwise, onto (0, 1)",
    .create = (void (*)(void))no_state,
    .forward = sigmoid_forward,
    .inverse = sigmoid_inverse,
    .check_event = {1, {6}},
    .check_args = "",
    .check_lo = -3.0,
    .check_hi = 3.0,
};

/* ---- affine ---- */

typedef struct affine_state {
  double scale, shift;
} affine_state;

static fg_status affine_create(void **state, fg_err *e, double scale, double shift) {
  if (scale == 0.0 || !isfinite(scale))
    return fg_err_set(e, FG_E_MISUSE, "affine: argument 'scale' must be non-zero and finite "
                      "(a zero scale is not invertible), got %g", scale);
  if (!isfinite(shift))
    return fg_err_set(e, FG_E_MISUSE, "affine: argument 'shift' must be finite, got %g", shift);
  affine_state *s = malloc(sizeof *s);
  if (!s) return fg_err_set(e, FG_E_NOMEM, "affine: out of memory");
  s->scale = scale, s->shift = shift;
  *state = s;
  return FG_OK;
}

static fg_status affine_forward(void *state, fg_flow_ctx *c, fg_node x, fg_node *y,
                                fg_node *logdet) {
  affine_state *s = state;
  fg_graph *g = fg_flow_graph(c);
  fg_status st = expect_batch(c, x);
  if (st != FG_OK) return st;
  *y = fg_add_scalar(g, fg_mul_scalar(g, x, s->scale), s->shift);
  *logdet = fg__batch_fill(g, x, event_size(g, x) * log(fabs(s->scale)));
  return fg_graph_status(g);
}

static fg_status affine_inverse(void *state, fg_flow_ctx *c, fg_node y, fg_node *x,
                                fg_node *logdet) {
  affine_state *s = state;
  fg_graph *g = fg_flow_graph(c);
  fg_status st = expect_batch(c, y);
  if (st != FG_OK) return st;
  *x = fg_mul_scalar(g, fg_add_scalar(g, y, -s->shift), 1.0 / s->scale);
  *logdet = fg__batch_fill(g, y, -event_size(g, y) * log(fabs(s->scale)));
  return fg_graph_status(g);
}

static const fg_arg_spec affine_args[] = {
    {"scale", FG_ARG_DOUBLE, "1", "the multiplier (non-zero)"},
    {"shift", FG_ARG_DOUBLE, "0", "added after scaling"},
};

const fg_bijector_type fg_bijector_affine = {
    .abi_version = FG_BIJECTOR_ABI_VERSION,
    .name = "affine",
    .doc = "y = scale x + shift elementwise, fixed scale and shift",
    .n_args = 2,
    .args = affine_args,
    .create = (void (*)(void))affine_create,
    .destroy = free,
    .forward = affine_forward,
    .inverse = affine_inverse,
    .check_event = {1, {6}},
    .check_args = "scale=-1.5, shift=0.25",
    .check_lo = -2.0,
    .check_hi = 2.0,
};

/* ---- scale (NICE's diagonal scaling) ---- */

/* The per-feature log-scales: the event's shape, broadcast over the batch. */
static fg_node log_scale_of(fg_flow_ctx *c, fg_node x) {
  fg_shape xs = fg_node_shape(fg_flow_graph(c), x), event = xs;
  event.ndim = xs.ndim - 1;
  for (int i = 0; i < event.ndim; i++) event.d[i] = xs.d[i + 1];
  for (int i = event.ndim; i < FG_MAX_DIMS; i++) event.d[i] = 0;
  return fg__param_like(c, "log_scale", event, (fg_init){FG_INIT_ZEROS, 0, 0}, x);
}

/* Σ of the log-scales, the same for every sample. */
static fg_node scale_logdet(fg_graph *g, fg_node s, fg_node x, double sign) {
  fg_node total = fg_sum(g, s, FG_ALL_AXES, false);
  return fg__per_sample(g, sign > 0 ? total : fg_neg(g, total), x);
}

static fg_status scale_forward(void *state, fg_flow_ctx *c, fg_node x, fg_node *y,
                               fg_node *logdet) {
  (void)state;
  fg_graph *g = fg_flow_graph(c);
  fg_status st = expect_batch(c, x);
  if (st != FG_OK) return st;
  fg_node s = log_scale_of(c, x);
  *y = fg_mul(g, x, fg_exp(g, s));
  *logdet = scale_logdet(g, s, x, 1.0);
  return fg_graph_status(g);
}

static fg_status scale_inverse(void *state, fg_flow_ctx *c, fg_node y, fg_node *x,
                               fg_node *logdet) {
  (void)state;
  fg_graph *g = fg_flow_graph(c);
  fg_status st = expect_batch(c, y);
  if (st != FG_OK) return st;
  fg_node s = log_scale_of(c, y);
  *x = fg_mul(g, y, fg_exp(g, fg_neg(g, s)));
  *logdet = scale_logdet(g, s, y, -1.0);
  return fg_graph_status(g);
}

const fg_bijector_type fg_bijector_scale = {
    .abi_version = FG_BIJECTOR_ABI_VERSION,
    .name = "scale",
    .doc = "NICE's learned diagonal scaling, y = x exp(log_scale), one log-scale per feature",
    .create = (void (*)(void))no_state,
    .forward = scale_forward,
    .inverse = scale_inverse,
    .check_event = {1, {6}},
    .check_args = "",
    .check_lo = -2.0,
    .check_hi = 2.0,
};

/* ---- fixed elementwise maps: one table of forward, inverse and log-det per type ---- */

/* y from x (inverse: x from y) and the forward log-derivative per element at x (or, inverse,
 * at the x found); `a`, `b` are the type's numbers. */
typedef fg_node (*map_fn)(fg_graph *g, fg_node in, double a, double b, bool inverse,
                          fg_node *log_deriv);

typedef struct map_state {
  map_fn fn;
  double a, b;
} map_state;

static fg_status map_run(void *state, fg_flow_ctx *c, fg_node in, bool inverse, fg_node *out,
                         fg_node *logdet) {
  const map_state *s = state;
  fg_graph *g = fg_flow_graph(c);
  fg_status st = expect_batch(c, in);
  if (st != FG_OK) return st;
  fg_node ld;
  *out = s->fn(g, in, s->a, s->b, inverse, &ld);
  *logdet = inverse ? fg_neg(g, fg__sum_event(g, ld)) : fg__sum_event(g, ld);
  return fg_graph_status(g);
}

static fg_status map_forward(void *state, fg_flow_ctx *c, fg_node x, fg_node *y, fg_node *logdet) {
  return map_run(state, c, x, false, y, logdet);
}

static fg_status map_inverse(void *state, fg_flow_ctx *c, fg_node y, fg_node *x, fg_node *logdet) {
  return map_run(state, c, y, true, x, logdet);
}

static fg_status map_new(void **state, fg_err *e, map_fn fn, double a, double b) {
  map_state *s = malloc(sizeof *s);
  if (!s) return fg_err_set(e, FG_E_NOMEM, "out of memory");
  *s = (map_state){fn, a, b};
  *state = s;
  return FG_OK;
}

static fg_node scalar_like(fg_graph *g, fg_node x, double v) {
  return fg_scalar(g, v, fg_node_dtype(g, x));
}

/* tanh: log(1 - tanh²x) = 2 (log 2 - x - softplus(-2x)), exact where 1 - y² rounds to 0;
 * atanh(y) = (log1p(y) - log1p(-y)) / 2. */
static fg_node tanh_map(fg_graph *g, fg_node in, double a, double b, bool inverse, fg_node *ld) {
  (void)a, (void)b;
  fg_node x = in;
  if (inverse) x = fg_mul_scalar(g, fg_sub(g, fg_log1p(g, in), fg_log1p(g, fg_neg(g, in))), 0.5);
  fg_node minus = fg_add(g, x, fg_softplus(g, fg_mul_scalar(g, x, -2.0)));
  *ld = fg_mul_scalar(g, fg_add_scalar(g, fg_neg(g, minus), log(2.0)), 2.0);
  return inverse ? x : fg_tanh(g, in);
}

/* softplus: the inverse of y = log(1 + e^x) is y + log(-expm1(-y)), no overflow for large y. */
static fg_node softplus_map(fg_graph *g, fg_node in, double a, double b, bool inverse,
                            fg_node *ld) {
  (void)a, (void)b;
  fg_node x = inverse ? fg_add(g, in, fg_log(g, fg_neg(g, fg_expm1(g, fg_neg(g, in))))) : in;
  *ld = fg_logsigmoid(g, x);
  return inverse ? x : fg_softplus(g, in);
}

static fg_node leaky_map(fg_graph *g, fg_node in, double alpha, double b, bool inverse,
                         fg_node *ld) {
  (void)b;
  fg_node negative = fg_less(g, in, scalar_like(g, in, 0.0)); /* x < 0 exactly when y < 0 */
  *ld = fg_where(g, negative, scalar_like(g, in, log(alpha)), scalar_like(g, in, 0.0));
  return fg_where(g, negative, fg_mul_scalar(g, in, inverse ? 1.0 / alpha : alpha), in);
}

static fg_node power_map(fg_graph *g, fg_node in, double p, double b, bool inverse, fg_node *ld) {
  (void)b;
  fg_node x = inverse ? fg_pow(g, in, 1.0 / p) : in;
  *ld = fg_add_scalar(g, fg_mul_scalar(g, fg_log(g, x), p - 1.0), log(p));
  return inverse ? x : fg_pow(g, in, p);
}

/* Kumaraswamy CDF, in logs: 1 - x^a = -expm1(a log x), (1 - x^a)^b = exp(b log1p(-x^a)). */
static fg_node kumaraswamy_map(fg_graph *g, fg_node in, double a, double b, bool inverse,
                               fg_node *ld) {
  fg_node x = in;
  if (inverse) { /* x = (1 - (1 - y)^(1/b))^(1/a) */
    fg_node inner = fg_neg(g, fg_expm1(g, fg_mul_scalar(g, fg_log1p(g, fg_neg(g, in)), 1.0 / b)));
    x = fg_exp(g, fg_mul_scalar(g, fg_log(g, inner), 1.0 / a));
  }
  fg_node a_log_x = fg_mul_scalar(g, fg_log(g, x), a);
  fg_node log1m_xa = fg_log(g, fg_neg(g, fg_expm1(g, a_log_x)));
  fg_node terms = fg_add(g, fg_mul_scalar(g, a_log_x, (a - 1.0) / a),
                         fg_mul_scalar(g, log1m_xa, b - 1.0));
  *ld = fg_add_scalar(g, terms, log(a * b));
  return inverse ? x : fg_neg(g, fg_expm1(g, fg_mul_scalar(g, log1m_xa, b)));
}

static fg_status tanh_create(void **state, fg_err *e) { return map_new(state, e, tanh_map, 0, 0); }
static fg_status softplus_create(void **state, fg_err *e) {
  return map_new(state, e, softplus_map, 0, 0);
}

static fg_status leaky_create(void **state, fg_err *e, double alpha) {
  if (!(alpha > 0) || !isfinite(alpha))
    return fg_err_set(e, FG_E_MISUSE, "leaky_relu: argument 'alpha' must be positive and finite "
                      "(a slope of 0 is not invertible), got %g", alpha);
  return map_new(state, e, leaky_map, alpha, 0);
}

static fg_status power_create(void **state, fg_err *e, double power) {
  if (!(power > 0) || !isfinite(power))
    return fg_err_set(e, FG_E_MISUSE, "power: argument 'power' must be positive and finite, "
                      "got %g", power);
  return map_new(state, e, power_map, power, 0);
}

static fg_status kumaraswamy_create(void **state, fg_err *e, double a, double b) {
  if (!(a > 0) || !(b > 0) || !isfinite(a) || !isfinite(b))
    return fg_err_set(e, FG_E_MISUSE, "kumaraswamy: arguments 'a' and 'b' must be positive and "
                      "finite, got %g and %g", a, b);
  return map_new(state, e, kumaraswamy_map, a, b);
}

static const fg_arg_spec leaky_args[] = {{"alpha", FG_ARG_DOUBLE, "0.1", "slope for x < 0 (> 0)"}};
static const fg_arg_spec power_args[] = {{"power", FG_ARG_DOUBLE, "2", "the exponent (> 0)"}};
static const fg_arg_spec kumaraswamy_args[] = {
    {"a", FG_ARG_DOUBLE, "2", "concentration a (> 0), TFP's concentration1"},
    {"b", FG_ARG_DOUBLE, "3", "concentration b (> 0), TFP's concentration0"},
};

#define MAP_TYPE(type, doc_text, create_fn, arg_list, n, args_text, lo, hi)                     \
  const fg_bijector_type fg_bijector_##type = {                                                 \
      .abi_version = FG_BIJECTOR_ABI_VERSION, .name = #type, .doc = doc_text, .n_args = n,       \
      .args = arg_list, .create = (void (*)(void))create_fn, .destroy = free,                    \
      .forward = map_forward, .inverse = map_inverse, .check_event = {1, {6}},                   \
      .check_args = args_text, .check_lo = lo, .check_hi = hi}

MAP_TYPE(tanh, "y = tanh(x) elementwise, onto (-1, 1)", tanh_create, NULL, 0, "", -3.0, 3.0);
MAP_TYPE(softplus, "y = log(1 + exp(x)) elementwise, onto (0, inf)", softplus_create, NULL, 0, "",
         -4.0, 4.0);
MAP_TYPE(leaky_relu, "y = x for x >= 0, alpha x below: invertible for alpha > 0", leaky_create,
         leaky_args, 1, "alpha=0.3", -2.0, 2.0);
MAP_TYPE(power, "y = x^power elementwise on (0, inf)", power_create, power_args, 1, "power=1.7",
         0.0, 3.0);
MAP_TYPE(kumaraswamy, "y = 1 - (1 - x^a)^b on (0, 1), the Kumaraswamy CDF", kumaraswamy_create,
         kumaraswamy_args, 2, "a=1.5, b=2.5", 0.0, 1.0);
