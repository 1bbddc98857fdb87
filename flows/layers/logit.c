/* "logit": RealNVP's pre-processing of data in [0, 1] (dequantised pixels),
 *   u = alpha + (1 - 2·alpha)·x,   y = logit(u) = log u - log(1 - u),
 * so the image of [0, 1] stays away from ±inf by alpha.  The exact log-det, with the (1 - 2·alpha)
 * factor that bits/dim accounting needs:
 *   log|det| = Σ [log(1 - 2·alpha) - log u - log(1 - u)]   over the event, per sample.
 * Inverse: x = (sigmoid(y) - alpha) / (1 - 2·alpha).  alpha must be in [0, 0.5); with alpha = 0
 * the domain is the open interval (0, 1).  Values are not known while the graph is built, so an
 * input outside the domain gives NaN (and x = 0 or 1 with alpha = 0 gives ±inf) at run time;
 * check_lo/check_hi declare the domain to the verification, which tests the edges. */
#include <math.h>
#include <stdlib.h>

#include "flows/layers/layer_util.h"
#include "flows/layers/layers.h"
#include "ops/ops.h"

typedef struct logit_state {
  double alpha;
} logit_state;

static fg_status logit_create(void **state, fg_err *e, double alpha) {
  if (!(alpha >= 0.0 && alpha < 0.5))
    return fg_err_set(e, FG_E_MISUSE, "logit: argument 'alpha' must be in [0, 0.5), got %g "
                      "(RealNVP uses 0.05)", alpha);
  logit_state *s = malloc(sizeof *s);
  if (!s) return fg_err_set(e, FG_E_NOMEM, "logit: out of memory");
  s->alpha = alpha;
  *state = s;
  return FG_OK;
}

static void logit_destroy(void *state) { free(state); }

/* Σ over the event of log u + log(1 - u), the data-dependent part of -log|det|. */
static fg_node log_u_one_minus_u(fg_graph *g, fg_node u) {
  return fg__sum_event(g, fg_add(g, fg_log(g, u), fg_log1p(g, fg_neg(g, u))));
}

static double event_size(fg_graph *g, fg_node x) {
  fg_shape s = fg_node_shape(g, x);
  return (double)(fg_shape_count(&s) / (s.d[0] ? s.d[0] : 1));
}

static fg_status logit_forward(void *state, fg_flow_ctx *c, fg_node x, fg_node *y,
                               fg_node *logdet) {
  logit_state *s = state;
  fg_graph *g = fg_flow_graph(c);
  fg_status st = fg__layer_expect_rank(c, x, 1, FG_MAX_DIMS, "[B, ...]");
  if (st != FG_OK) return st;
  fg_node u = fg_add_scalar(g, fg_mul_scalar(g, x, 1.0 - 2.0 * s->alpha), s->alpha);
  *y = fg_sub(g, fg_log(g, u), fg_log1p(g, fg_neg(g, u)));
  double constant = event_size(g, x) * log1p(-2.0 * s->alpha);
  *logdet = fg_add_scalar(g, fg_neg(g, log_u_one_minus_u(g, u)), constant);
  return fg_graph_status(g);
}

static fg_status logit_inverse(void *state, fg_flow_ctx *c, fg_node y, fg_node *x,
                               fg_node *logdet) {
  logit_state *s = state;
  fg_graph *g = fg_flow_graph(c);
  fg_status st = fg__layer_expect_rank(c, y, 1, FG_MAX_DIMS, "[B, ...]");
  if (st != FG_OK) return st;
  *x =
      fg_mul_scalar(g, fg_add_scalar(g, fg_sigmoid(g, y), -s->alpha), 1.0 / (1.0 - 2.0 * s->alpha));
  /* log u + log(1 - u) = logsigmoid(y) + logsigmoid(-y), stable for large |y| */
  fg_node both = fg_add(g, fg_logsigmoid(g, y), fg_logsigmoid(g, fg_neg(g, y)));
  double constant = -event_size(g, y) * log1p(-2.0 * s->alpha);
  *logdet = fg_add_scalar(g, fg__sum_event(g, both), constant);
  return fg_graph_status(g);
}

static const fg_arg_spec logit_args[] = {
    {"alpha", FG_ARG_DOUBLE, "0.05",
     "x in [0, 1] is mapped into [alpha, 1 - alpha] before the logit"},
};

const fg_bijector_type fg_bijector_logit = {
    .abi_version = FG_BIJECTOR_ABI_VERSION,
    .name = "logit",
    .doc = "RealNVP pre-processing y = logit(alpha + (1 - 2 alpha) x) for x in [0, 1]",
    .n_args = 1,
    .args = logit_args,
    .create = (void (*)(void))logit_create,
    .destroy = logit_destroy,
    .forward = logit_forward,
    .inverse = logit_inverse,
    .check_event = {1, {6}},
    .check_args = "alpha=0.05",
    .check_lo = 0.0,
    .check_hi = 1.0,
};
