/* Rational-quadratic spline coupling (Neural Spline Flows, Durkan et al. 2019): the conditioner's
 * output on the conditioning part gives, per transformed element, the 3·bins - 1 raw parameters
 * of a monotone spline with linear tails (flows/layers/spline.h), and the transformed part goes
 * through it.  The log-det is the sum of log spline'(x_b) over the transformed positions; the
 * inverse solves each piece's quadratic.  A zero-initialised conditioner makes it the identity.
 *
 * Conditioner output layout: [B, A·P, ...] for A transformed channels (features) and P raw
 * parameters, read as [B, A, P, ...] (element a's parameters are channels a·P .. a·P + P - 1). */
#include <stdlib.h>

#include "flows/layers/coupling.h"
#include "flows/layers/spline.h"
#include "ops/ops.h"

#define TYPE_NAME "rq_coupling"

typedef struct spline_coupling {
  fg_coupling_spec spec;
  fg__spline_opts spline;
} spline_coupling;

static const fg_arg_spec spline_args[] = {
    {"mask", FG_ARG_STRING, "half", "checkerboard | channel (images), half | alternate (vectors)"},
    {"parity", FG_ARG_INT, "0", "0 or 1: which part of the mask is transformed"},
    {"net", FG_ARG_STRING, "mlp", "conditioner: mlp | glow | resnet"},
    {"hidden", FG_ARG_INT, "64", "width of the conditioner's hidden layers"},
    {"blocks", FG_ARG_INT, "2", "hidden layers (mlp) or residual blocks (resnet)"},
    FG__SPLINE_ARG_SPECS,
};

static fg_status spline_create(void **state, fg_err *e, const char *mask, int64_t parity,
                               const char *net, int64_t hidden, int64_t blocks, int64_t bins,
                               double bound, double min_width, double min_height,
                               double min_derivative) {
  *state = NULL;
  spline_coupling sc;
  fg_status st = fg_coupling_spec_parse(&sc.spec, mask, parity, net, hidden, blocks, e);
  if (st == FG_OK)
    st = fg__spline_opts_parse(&sc.spline, bins, bound, min_width, min_height, min_derivative, e);
  if (st != FG_OK) return st;
  spline_coupling *s = malloc(sizeof *s);
  if (!s) return fg_err_set(e, FG_E_NOMEM, "%s: out of memory", TYPE_NAME);
  *s = sc;
  *state = s;
  return FG_OK;
}

/* [B, A·P, S...] -> [B, A, S..., P]: each element's parameters on the last axis. */
static fg_node params_last(fg_graph *g, fg_node net_out, int64_t per_element) {
  fg_shape s = fg_node_shape(g, net_out), split = s;
  split.ndim = s.ndim + 1;
  split.d[1] = s.d[1] / per_element, split.d[2] = per_element;
  for (int i = 2; i < s.ndim; i++) split.d[i + 1] = s.d[i];
  fg_node u = fg_reshape(g, net_out, split);
  if (s.ndim == 2) return u;
  int perm[FG_MAX_DIMS] = {0, 1};
  for (int i = 2; i < split.ndim - 1; i++) perm[i] = i + 1;
  perm[split.ndim - 1] = 2;
  return fg_permute(g, u, perm);
}

static fg_node spline_rule(const void *state, fg_flow_ctx *c, const fg_coupling_parts *p,
                           fg_node net_out, bool inverse, fg_node *log_scale) {
  const spline_coupling *s = state;
  fg_graph *g = fg_flow_graph(c);
  fg_node u = params_last(g, net_out, fg__spline_params(&s->spline)), ld;
  fg_node out = fg__rq_spline(g, &s->spline, p->active, u, inverse, &ld);
  *log_scale = fg_coupling_restrict(c, p, ld);
  if (p->active_mask == FG_NONE) return out;
  /* checkerboard: the conditioning pixels pass through exactly */
  return fg_add(g, p->active, fg_coupling_restrict(c, p, fg_sub(g, out, p->active)));
}

static fg_status spline_forward(void *state, fg_flow_ctx *c, fg_node x, fg_node *y,
                                fg_node *logdet) {
  const spline_coupling *s = state;
  fg_coupling_rule rule = {(int)fg__spline_params(&s->spline), spline_rule};
  return fg_coupling_run(&s->spec, &rule, s, c, x, false, y, logdet);
}

static fg_status spline_inverse(void *state, fg_flow_ctx *c, fg_node y, fg_node *x,
                                fg_node *logdet) {
  const spline_coupling *s = state;
  fg_coupling_rule rule = {(int)fg__spline_params(&s->spline), spline_rule};
  return fg_coupling_run(&s->spec, &rule, s, c, y, true, x, logdet);
}

const fg_bijector_type fg_bijector_rq_coupling = {
    .abi_version = FG_BIJECTOR_ABI_VERSION,
    .name = TYPE_NAME,
    .doc = "Neural Spline Flow coupling: x_b through a rational-quadratic spline whose knots a "
           "net of x_a gives",
    .n_args = (int)(sizeof spline_args / sizeof spline_args[0]),
    .args = spline_args,
    .create = (void (*)(void))spline_create,
    .destroy = free,
    .forward = spline_forward,
    .inverse = spline_inverse,
    .check_event = {1, {5}},
    .check_args = "mask=alternate, hidden=8, blocks=1, bins=4, bound=2.5",
    .check_lo = -3.5,
    .check_hi = 3.5,
};
