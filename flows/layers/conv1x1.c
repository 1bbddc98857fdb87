/* "conv1x1": Glow's invertible 1x1 convolution, y[:, i] = sum_j W[i][j] x[:, j] at every pixel,
 * with a plain learned W [C, C] ("weight") initialised as a random rotation.
 *
 * log|det| = S·log|det W| (S = H·W pixels; the factor is per-sample, as in openai/glow).  The
 * determinant and the inverse are computed in float64 even for float32 flows: float32 matrix
 * inverses are too inaccurate for reconstruction (chaiyujin/glow-pytorch#7) and openai/glow
 * takes the determinant in float64.  A W that has gone singular gives log|det| = -inf and an
 * inverse that fails at run time with FG_E_NUMERIC, never silent garbage; "conv1x1_lu" cannot
 * become singular. */
#include "flows/layers/layer_util.h"
#include "flows/layers/layers.h"
#include "ops/ops.h"

static fg_status conv1x1_create(void **state, fg_err *e) {
  (void)e;
  *state = NULL; /* everything lives in the parameter */
  return FG_OK;
}

/* W as stored (the parameter store's dtype). */
static fg_node weight(fg_flow_ctx *c, fg_node x) {
  int64_t ch = fg_node_shape(fg_flow_graph(c), x).d[1];
  return fg_flow_param(c, "weight", fg_shape2(ch, ch), (fg_init){FG_INIT_ORTHOGONAL, 0, 0});
}

/* sign·S·log|det W| as a [B] log-det in x's dtype, from W in float64. */
static fg_node logdet_of(fg_graph *g, fg_node w64, fg_node x, double sign) {
  fg_shape xs = fg_node_shape(g, x);
  fg_node ld = fg_mul_scalar(g, fg_slogdet(g, w64), sign * (double)fg__spatial_size(&xs));
  return fg__per_sample(g, fg__as_dtype(g, ld, fg_node_dtype(g, x)), x);
}

static fg_status conv1x1_forward(void *state, fg_flow_ctx *c, fg_node x, fg_node *y,
                                 fg_node *logdet) {
  (void)state;
  fg_graph *g = fg_flow_graph(c);
  int64_t channels;
  fg_status st = fg__layer_mix_channels(c, x, &channels);
  if (st != FG_OK) return st;
  fg_node w = weight(c, x);
  *y = fg__channel_mix(g, fg__as_dtype(g, w, fg_node_dtype(g, x)), x, false);
  *logdet = logdet_of(g, fg__as_dtype(g, w, FG_F64), x, 1.0);
  return fg_graph_status(g);
}

static fg_status conv1x1_inverse(void *state, fg_flow_ctx *c, fg_node y, fg_node *x,
                                 fg_node *logdet) {
  (void)state;
  fg_graph *g = fg_flow_graph(c);
  int64_t channels;
  fg_status st = fg__layer_mix_channels(c, y, &channels);
  if (st != FG_OK) return st;
  fg_node w64 = fg__as_dtype(g, weight(c, y), FG_F64);
  fg_node w_inv = fg__as_dtype(g, fg_inverse(g, w64), fg_node_dtype(g, y));
  *x = fg__channel_mix(g, w_inv, y, false);
  *logdet = logdet_of(g, w64, y, -1.0);
  return fg_graph_status(g);
}

const fg_bijector_type fg_bijector_conv1x1 = {
    .abi_version = FG_BIJECTOR_ABI_VERSION,
    .name = "conv1x1",
    .doc = "Glow's invertible 1x1 convolution with a plain weight [C, C] (random rotation at init)",
    .create = (void (*)(void))conv1x1_create,
    .forward = conv1x1_forward,
    .inverse = conv1x1_inverse,
    .check_event = {3, {3, 2, 2}},
    .check_args = "",
    .check_lo = -2.0,
    .check_hi = 2.0,
};
