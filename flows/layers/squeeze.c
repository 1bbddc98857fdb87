/* "squeeze": 2x2 space-to-depth, [B, C, H, W] -> [B, 4C, H/2, W/2] (Glow's squeeze2d; output
 * channel 4c + 2dy + dx holds pixel (2i + dy, 2j + dx) of channel c).  A reordering of the
 * elements, so log-det 0.  The inverse is unsqueeze (depth-to-space). */
#include "flows/layers/layer_util.h"
#include "flows/layers/layers.h"
#include "ops/ops.h"

static fg_status squeeze_create(void **state, fg_err *e) {
  (void)e;
  *state = NULL;
  return FG_OK;
}

static fg_status squeeze_forward(void *state, fg_flow_ctx *c, fg_node x, fg_node *y,
                                 fg_node *logdet) {
  (void)state;
  fg_graph *g = fg_flow_graph(c);
  fg_status st = fg__layer_expect_rank(c, x, 4, 4, "an image [B, C, H, W]");
  if (st != FG_OK) return st;
  fg_shape xs = fg_node_shape(g, x);
  if (xs.d[2] % 2 || xs.d[3] % 2) {
    char buf[128];
    return fg__layer_fail(c, FG_E_SHAPE, "squeeze needs even H and W, got %s",
                          fg__batch_shape_str(&xs, buf, sizeof buf));
  }
  *y = fg_squeeze2d(g, x);
  *logdet = fg__batch_fill(g, x, 0.0);
  return fg_graph_status(g);
}

static fg_status squeeze_inverse(void *state, fg_flow_ctx *c, fg_node y, fg_node *x,
                                 fg_node *logdet) {
  (void)state;
  fg_graph *g = fg_flow_graph(c);
  fg_status st = fg__layer_expect_rank(c, y, 4, 4, "an image [B, C, H, W]");
  if (st != FG_OK) return st;
  fg_shape ys = fg_node_shape(g, y);
  if (ys.d[1] % 4) {
    char buf[128];
    return fg__layer_fail(c, FG_E_SHAPE, "the inverse of squeeze needs a channel count divisible "
                          "by 4, got %s", fg__batch_shape_str(&ys, buf, sizeof buf));
  }
  *x = fg_unsqueeze2d(g, y);
  *logdet = fg__batch_fill(g, y, 0.0);
  return fg_graph_status(g);
}

const fg_bijector_type fg_bijector_squeeze = {
    .abi_version = FG_BIJECTOR_ABI_VERSION,
    .name = "squeeze",
    .doc = "2x2 space-to-depth, [B, C, H, W] -> [B, 4C, H/2, W/2]; log-det 0",
    .create = (void (*)(void))squeeze_create,
    .forward = squeeze_forward,
    .inverse = squeeze_inverse,
    .check_event = {3, {2, 2, 4}},
    .check_args = "",
    .check_lo = -2.0,
    .check_hi = 2.0,
};
