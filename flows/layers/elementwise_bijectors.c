/* Elementwise bijectors on x [B, ...]; every log-det is a sum over the event per sample.
 *   "exp":     y = exp(x),                 log|det| = Σ x
 *   "sigmoid": y = sigmoid(x),             log|det| = Σ logsigmoid(x) + logsigmoid(-x)
 *   "affine":  y = scale·x + shift,        log|det| = D·log|scale|     (fixed scale and shift)
 *   "scale":   y = x·exp(log_scale),       log|det| = Σ log_scale
 *              NICE's learned diagonal scaling: parameter "log_scale" with the event's shape
 *              (one log-scale per feature), zero at creation. */
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

static fg_status sigmoid_forward(void *state, fg_flow_ctx *c, fg_node x, fg_node *y, fg_node *logdet) {
  (void)state;
  fg_graph *g = fg_flow_graph(c);
  fg_status st = expect_batch(c, x);
  if (st != FG_OK) return st;
  *y = fg_sigmoid(g, x);
  /* log σ'(x) = log σ(x) + log σ(-x), without the cancellation of log(y·(1 - y)) */
  *logdet = fg__sum_event(g, fg_add(g, fg_logsigmoid(g, x), fg_logsigmoid(g, fg_neg(g, x))));
  return fg_graph_status(g);
}

static fg_status sigmoid_inverse(void *state, fg_flow_ctx *c, fg_node y, fg_node *x, fg_node *logdet) {
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

static fg_status affine_forward(void *state, fg_flow_ctx *c, fg_node x, fg_node *y, fg_node *logdet) {
  affine_state *s = state;
  fg_graph *g = fg_flow_graph(c);
  fg_status st = expect_batch(c, x);
  if (st != FG_OK) return st;
  *y = fg_add_scalar(g, fg_mul_scalar(g, x, s->scale), s->shift);
  *logdet = fg__batch_fill(g, x, event_size(g, x) * log(fabs(s->scale)));
  return fg_graph_status(g);
}

static fg_status affine_inverse(void *state, fg_flow_ctx *c, fg_node y, fg_node *x, fg_node *logdet) {
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

static fg_status scale_forward(void *state, fg_flow_ctx *c, fg_node x, fg_node *y, fg_node *logdet) {
  (void)state;
  fg_graph *g = fg_flow_graph(c);
  fg_status st = expect_batch(c, x);
  if (st != FG_OK) return st;
  fg_node s = log_scale_of(c, x);
  *y = fg_mul(g, x, fg_exp(g, s));
  *logdet = scale_logdet(g, s, x, 1.0);
  return fg_graph_status(g);
}

static fg_status scale_inverse(void *state, fg_flow_ctx *c, fg_node y, fg_node *x, fg_node *logdet) {
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
