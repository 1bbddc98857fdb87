/* "actnorm": Glow's activation normalisation, y = (x + bias)·exp(logs) per channel (per feature
 * for vectors), parameters "bias" and "logs" [C], zero at creation (the identity).
 * log|det| = S·Σ logs per sample (S = H·W pixels).
 *
 * Data-dependent initialisation (data_init) on a batch: bias = -mean and
 * logs = -log(std + eps) per channel over the batch and spatial axes, so that batch comes out
 * with zero mean and unit variance.  A channel whose std is <= eps (a constant channel, or any
 * channel of a batch of one vector) carries no scale information: it keeps logs = 0 instead of
 * a 1/eps scale that would blow up every later, non-constant input.  Nothing here can produce
 * inf or NaN from finite data. */
#include "flows/layers/layer_util.h"
#include "flows/layers/layers.h"
#include "ops/ops.h"

/* Glow's epsilon (openai/glow: logs = log(1 / (std + 1e-6))). */
static const double ACTNORM_EPS = 1e-6;

static fg_status actnorm_create(void **state, fg_err *e) {
  (void)e;
  *state = NULL; /* everything lives in the parameters */
  return FG_OK;
}

static fg_status expect_channels(fg_flow_ctx *c, fg_node x) {
  return fg__layer_expect_rank(c, x, 2, FG_MAX_DIMS, "[B, C, ...] (channels on axis 1)");
}

/* The parameters as [C] values in x's dtype. */
static void params_of(fg_flow_ctx *c, fg_node x, fg_node *bias, fg_node *logs) {
  int64_t ch = fg_node_shape(fg_flow_graph(c), x).d[1];
  fg_init zeros = {FG_INIT_ZEROS, 0, 0};
  *bias = fg__param_like(c, "bias", fg_shape1(ch), zeros, x);
  *logs = fg__param_like(c, "logs", fg_shape1(ch), zeros, x);
}

/* y = (x + bias)·exp(logs), or its inverse. */
static fg_status actnorm_run(fg_flow_ctx *c, fg_node in, bool inverse, fg_node *out,
                             fg_node *logdet) {
  fg_graph *g = fg_flow_graph(c);
  fg_status st = expect_channels(c, in);
  if (st != FG_OK) return st;
  fg_node bias, logs;
  params_of(c, in, &bias, &logs);
  fg__channel_affine map = {.shift_in = bias, .log_scale = logs, .shift_out = FG_NONE};
  *out = fg__channel_affine_apply(g, &map, in, inverse, logdet);
  return fg_graph_status(g);
}

static fg_status actnorm_forward(void *state, fg_flow_ctx *c, fg_node x, fg_node *y,
                                 fg_node *logdet) {
  (void)state;
  return actnorm_run(c, x, false, y, logdet);
}

static fg_status actnorm_inverse(void *state, fg_flow_ctx *c, fg_node y, fg_node *x,
                                 fg_node *logdet) {
  (void)state;
  return actnorm_run(c, y, true, x, logdet);
}

/* bias = -mean, logs = -log(std + eps) (0 where std <= eps), in the parameters' dtype. */
static fg_status actnorm_data_init(void *state, fg_flow_ctx *c, fg_node x) {
  (void)state;
  fg_graph *g = fg_flow_graph(c);
  fg_status st = expect_channels(c, x);
  if (st != FG_OK) return st;
  int64_t ch = fg_node_shape(g, x).d[1];
  fg_init zeros = {FG_INIT_ZEROS, 0, 0};
  /* created here if absent, and their dtype is the one the values must have */
  fg_dtype pt = fg_node_dtype(g, fg_flow_param(c, "bias", fg_shape1(ch), zeros));
  fg_flow_param(c, "logs", fg_shape1(ch), zeros);
  fg_node mean, var;
  fg__channel_moments(g, x, &mean, &var);
  fg_node std = fg_sqrt(g, var);
  fg_node scaled = fg_neg(g, fg_log(g, fg_add_scalar(g, std, ACTNORM_EPS)));
  fg_node informative = fg_greater(g, std, fg_scalar(g, ACTNORM_EPS, fg_node_dtype(g, x)));
  fg_node logs = fg_where(g, informative, scaled, fg_zeros_like(g, scaled));
  st = fg_flow_init_param(c, "bias", fg__as_dtype(g, fg_neg(g, mean), pt));
  if (st == FG_OK) st = fg_flow_init_param(c, "logs", fg__as_dtype(g, logs, pt));
  return st != FG_OK ? st : fg_graph_status(g);
}

const fg_bijector_type fg_bijector_actnorm = {
    .abi_version = FG_BIJECTOR_ABI_VERSION,
    .name = "actnorm",
    .doc =
        "per-channel scale and bias, y = (x + bias) exp(logs), with data-dependent initialisation",
    .create = (void (*)(void))actnorm_create,
    .forward = actnorm_forward,
    .inverse = actnorm_inverse,
    .data_init = actnorm_data_init,
    .check_event = {3, {3, 2, 2}},
    .check_args = "",
    .check_lo = -2.0,
    .check_hi = 2.0,
};
