/* "batchnorm": the batch-normalisation bijector of RealNVP (and nflows' BatchNormTransform),
 * per channel (per feature for vectors):
 *   y = (x - mean)·exp(log_gamma) / sqrt(var + eps) + beta,
 *   log|det| = S·Σ (log_gamma - ½·log(var + eps))   per sample (S = H·W pixels).
 * Parameters "log_gamma", "beta" (learned, zero at creation), "running_mean" (zeros) and
 * "running_var" (ones), all [C].
 *
 * Which statistics: a training graph (fg_flow_training) normalises with the batch's mean and
 * (biased) variance, and gradients flow through them, as in PyTorch; any other graph uses the
 * running averages.  The inverse exists only with the running averages, since with batch
 * statistics a sample's output depends on the rest of the batch; building it in a training
 * graph is an error that says so.  In a data-parallel job (fg_flow_replicas) the batch is the
 * global one: its statistics are summed over the processes inside the graph, in the forward
 * pass and, through the sum's VJP, in the backward pass.
 *
 * How the running averages move: graphs cannot write parameters, so a training graph records,
 * through fg_flow_init_param, the updated averages
 *   running_mean <- (1 - momentum)·running_mean + momentum·mean,
 *   running_var  <- (1 - momentum)·running_var + momentum·var·n/(n-1)   (n values per channel)
 * as values of that graph; a trainer that evaluates the context's init requests after each
 * step and copies them into the store (as it does for the initialisation pass) keeps them
 * current, exactly as PyTorch's in-place update does.  data_init sets them to the statistics of
 * the initialisation batch, so evaluation is calibrated from the start; when a context holds
 * both kinds of request for this layer, the data_init one is kept and the update is not
 * recorded.  The running averages get no gradient from any loss. */
#include <math.h>
#include <stdlib.h>

#include "flows/layers/layer_util.h"
#include "flows/layers/layers.h"
#include "ops/ops.h"

typedef struct bn_state {
  double momentum, eps;
} bn_state;

static fg_status bn_create(void **state, fg_err *e, double momentum, double eps) {
  if (!(momentum >= 0.0 && momentum <= 1.0))
    return fg_err_set(e, FG_E_MISUSE, "batchnorm: argument 'momentum' must be in [0, 1], got %g",
                      momentum);
  if (!(eps > 0.0 && isfinite(eps)))
    return fg_err_set(e, FG_E_MISUSE,
                      "batchnorm: argument 'eps' must be positive and finite, got %g", eps);
  bn_state *s = malloc(sizeof *s);
  if (!s) return fg_err_set(e, FG_E_NOMEM, "batchnorm: out of memory");
  s->momentum = momentum, s->eps = eps;
  *state = s;
  return FG_OK;
}

static void bn_destroy(void *state) { free(state); }

static fg_status expect_channels(fg_flow_ctx *c, fg_node x) {
  return fg__layer_expect_rank(c, x, 2, FG_MAX_DIMS, "[B, C, ...] (channels on axis 1)");
}

typedef struct bn_stats {
  fg_node mean, var; /* [C], in x's dtype */
} bn_stats;

static fg_node running(fg_flow_ctx *c, const char *name, double init, fg_node x) {
  int64_t ch = fg_node_shape(fg_flow_graph(c), x).d[1];
  return fg__param_like(c, name, fg_shape1(ch), (fg_init){FG_INIT_CONST, init, 0}, x);
}

/* Mean and biased variance over the batch and spatial axes. */
static bn_stats batch_stats(fg_graph *g, fg_node x) {
  bn_stats b;
  fg__channel_moments(g, x, &b.mean, &b.var);
  return b;
}

/* The variance the running average tracks: unbiased (n/(n-1)), as PyTorch; biased for n = 1.
 * n counts the values of every process's part of the batch. */
static fg_node unbiased(fg_graph *g, fg_node var, fg_node x, int processes) {
  fg_shape xs = fg_node_shape(g, x);
  double n = (double)xs.d[0] * (double)fg__spatial_size(&xs) * processes;
  return n > 1 ? fg_mul_scalar(g, var, n / (n - 1)) : var;
}

/* Records the moving-average update of one running statistic (in the parameter's dtype). */
static fg_status record_update(fg_flow_ctx *c, const char *name, double init, double momentum,
                               fg_node batch_value, fg_node x) {
  fg_graph *g = fg_flow_graph(c);
  int64_t ch = fg_node_shape(g, x).d[1];
  fg_node p = fg_flow_param(c, name, fg_shape1(ch), (fg_init){FG_INIT_CONST, init, 0});
  fg_node old = fg__as_dtype(g, p, fg_node_dtype(g, x));
  fg_node fresh = fg_stop_gradient(g, batch_value);
  fg_node next =
      fg_add(g, fg_mul_scalar(g, old, 1.0 - momentum), fg_mul_scalar(g, fresh, momentum));
  return fg_flow_init_param(c, name, fg__as_dtype(g, next, fg_node_dtype(g, p)));
}

/* The batch's statistics; in a data-parallel job, over the global batch (sync batch-norm), so
 * every process normalises as one process would and the running averages stay the same on all. */
static fg_status training_stats(bn_state *s, fg_flow_ctx *c, fg_node x, bn_stats *out) {
  fg_graph *g = fg_flow_graph(c);
  const fg_reducer *r = fg_flow_replicas(c);
  fg__channel_moments_over(g, x, r, &out->mean, &out->var);
  if (fg__has_init_request(c, "running_mean")) return fg_graph_status(g);
  fg_status st = record_update(c, "running_mean", 0.0, s->momentum, out->mean, x);
  if (st == FG_OK)
    st = record_update(c, "running_var", 1.0, s->momentum,
                       unbiased(g, out->var, x, r ? r->size : 1), x);
  return st;
}

/* log(exp(log_gamma) / sqrt(var + eps)) per channel: the per-pixel log-scale. */
static fg_node log_scale(fg_graph *g, fg_node log_gamma, fg_node var, double eps) {
  return fg_sub(g, log_gamma, fg_mul_scalar(g, fg_log(g, fg_add_scalar(g, var, eps)), 0.5));
}

/* The layer's parameters, created in this order (the store's order) on first use. */
typedef struct bn_params {
  fg_node log_gamma, beta;
  bn_stats running;
} bn_params;

static bn_params params_of(fg_flow_ctx *c, fg_node x) {
  int64_t ch = fg_node_shape(fg_flow_graph(c), x).d[1];
  fg_init zeros = {FG_INIT_ZEROS, 0, 0};
  bn_params p;
  p.log_gamma = fg__param_like(c, "log_gamma", fg_shape1(ch), zeros, x);
  p.beta = fg__param_like(c, "beta", fg_shape1(ch), zeros, x);
  p.running = (bn_stats){running(c, "running_mean", 0.0, x), running(c, "running_var", 1.0, x)};
  return p;
}

/* y = (x - mean)·exp(log_gamma) / sqrt(var + eps) + beta with statistics b, or its inverse. */
static fg_node normalise(const bn_state *s, fg_graph *g, const bn_params *p, const bn_stats *b,
                         fg_node in, bool inverse, fg_node *logdet) {
  fg__channel_affine map = {.shift_in = fg_neg(g, b->mean),
                            .log_scale = log_scale(g, p->log_gamma, b->var, s->eps),
                            .shift_out = p->beta};
  return fg__channel_affine_apply(g, &map, in, inverse, logdet);
}

static fg_status bn_forward(void *state, fg_flow_ctx *c, fg_node x, fg_node *y, fg_node *logdet) {
  bn_state *s = state;
  fg_graph *g = fg_flow_graph(c);
  fg_status st = expect_channels(c, x);
  if (st != FG_OK) return st;
  bn_params p = params_of(c, x);
  bn_stats b = p.running;
  if (fg_flow_training(c) && (st = training_stats(s, c, x, &b)) != FG_OK) return st;
  *y = normalise(s, g, &p, &b, x, false, logdet);
  return fg_graph_status(g);
}

static fg_status bn_inverse(void *state, fg_flow_ctx *c, fg_node y, fg_node *x, fg_node *logdet) {
  fg_graph *g = fg_flow_graph(c);
  fg_status st = expect_channels(c, y);
  if (st != FG_OK) return st;
  if (fg_flow_training(c))
    return fg__layer_fail(c, FG_E_MISUSE, "the inverse of batchnorm uses the running statistics; "
                          "build it in an evaluation graph (training = false), since with batch "
                          "statistics a sample's output depends on the rest of the batch");
  bn_params p = params_of(c, y);
  *x = normalise(state, g, &p, &p.running, y, true, logdet);
  return fg_graph_status(g);
}

/* Running statistics := the initialisation batch's mean and unbiased variance. */
static fg_status bn_data_init(void *state, fg_flow_ctx *c, fg_node x) {
  (void)state;
  fg_graph *g = fg_flow_graph(c);
  fg_status st = expect_channels(c, x);
  if (st != FG_OK) return st;
  int64_t ch = fg_node_shape(g, x).d[1];
  fg_dtype pt = fg_node_dtype(
      g, fg_flow_param(c, "running_mean", fg_shape1(ch), (fg_init){FG_INIT_ZEROS, 0, 0}));
  fg_flow_param(c, "running_var", fg_shape1(ch), (fg_init){FG_INIT_CONST, 1.0, 0});
  bn_stats b = batch_stats(g, x);
  st = fg_flow_init_param(c, "running_mean", fg__as_dtype(g, b.mean, pt));
  if (st == FG_OK)
    st = fg_flow_init_param(c, "running_var", fg__as_dtype(g, unbiased(g, b.var, x, 1), pt));
  return st != FG_OK ? st : fg_graph_status(g);
}

static const fg_arg_spec bn_args[] = {
    {"momentum", FG_ARG_DOUBLE, "0.1", "weight of the batch statistics in the running averages"},
    {"eps", FG_ARG_DOUBLE, "1e-5", "added to the variance before the square root"},
};

const fg_bijector_type fg_bijector_batchnorm = {
    .abi_version = FG_BIJECTOR_ABI_VERSION,
    .name = "batchnorm",
    .doc =
        "batch-norm bijector (RealNVP): batch statistics in training, running averages otherwise",
    .n_args = 2,
    .args = bn_args,
    .create = (void (*)(void))bn_create,
    .destroy = bn_destroy,
    .forward = bn_forward,
    .inverse = bn_inverse,
    .data_init = bn_data_init,
    .check_event = {3, {3, 2, 2}},
    .check_args = "momentum=0.1, eps=1e-5",
    .check_lo = -2.0,
    .check_hi = 2.0,
};
