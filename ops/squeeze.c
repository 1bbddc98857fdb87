/* Squeeze (2x2 space-to-depth) and its inverse, as builders over reshape and permute rather
 * than ops of their own: the gradient of a squeeze is an unsqueeze and vice versa, and both
 * come free from reshape's and permute's VJPs, as does the second derivative; there is no
 * kernel to keep in two dtypes, no op to gradcheck separately, and a later pass that elides
 * copies or fuses a permute into its consumer makes them as cheap as a dedicated kernel.
 *
 * Layout (NCHW): output channel c*4 + dy*2 + dx holds pixel (2i + dy, 2j + dx) of input
 * channel c, which is Glow's squeeze2d and PyTorch's pixel_unshuffle(x, 2). */
#include "core/ir/graph.h"
#include "ops/ops.h"

/* x must be a valid node of rank 4; the message names the builder and the shape. */
static bool check_nchw(fg_graph *g, fg_node x, const char *who) {
  if (fg_graph_status(g) != FG_OK) return false;
  if (!fg_node_valid(g, x)) {
    if (x != FG_POISON) fg_graph_fail(g, FG_E_MISUSE, "%s: input (id %d) is not a node", who, x);
    return false;
  }
  fg_shape s = fg_node_shape(g, x);
  if (s.ndim == 4) return true;
  char buf[160];
  fg_graph_fail(g, FG_E_SHAPE, "%s: input %s must be [N, C, H, W]", who,
                fg_shape_str(&s, buf, sizeof buf));
  return false;
}

fg_node fg_squeeze2d(fg_graph *g, fg_node x) {
  if (!check_nchw(g, x, "squeeze2d")) return FG_POISON;
  fg_shape s = fg_node_shape(g, x);
  int64_t n = s.d[0], c = s.d[1], h = s.d[2], w = s.d[3];
  if (h % 2 || w % 2) {
    char buf[160];
    return fg_graph_fail(g, FG_E_SHAPE, "squeeze2d: input %s has an odd %s (%lld); 2x2 "
                         "space-to-depth needs even height and width",
                         fg_shape_str(&s, buf, sizeof buf), h % 2 ? "height" : "width",
                         (long long)(h % 2 ? h : w));
  }
  int64_t split[6] = {n, c, h / 2, 2, w / 2, 2}, packed[4] = {n, 4 * c, h / 2, w / 2};
  static const int to_channels[6] = {0, 1, 3, 5, 2, 4}; /* [N, C, dy, dx, H/2, W/2] */
  fg_shape s6, s4;
  fg_shape_make(&s6, 6, split, NULL);
  fg_shape_make(&s4, 4, packed, NULL);
  return fg_reshape(g, fg_permute(g, fg_reshape(g, x, s6), to_channels), s4);
}

fg_node fg_unsqueeze2d(fg_graph *g, fg_node x) {
  if (!check_nchw(g, x, "unsqueeze2d")) return FG_POISON;
  fg_shape s = fg_node_shape(g, x);
  int64_t n = s.d[0], c4 = s.d[1], h = s.d[2], w = s.d[3];
  if (c4 % 4) {
    char buf[160];
    return fg_graph_fail(g, FG_E_SHAPE, "unsqueeze2d: input %s has %lld channels; 2x2 "
                         "depth-to-space needs a multiple of 4", fg_shape_str(&s, buf, sizeof buf),
                         (long long)c4);
  }
  int64_t split[6] = {n, c4 / 4, 2, 2, h, w}, spread[4] = {n, c4 / 4, 2 * h, 2 * w};
  static const int to_space[6] = {0, 1, 4, 2, 5, 3}; /* [N, C, H, dy, W, dx] */
  fg_shape s6, s4;
  fg_shape_make(&s6, 6, split, NULL);
  fg_shape_make(&s4, 4, spread, NULL);
  return fg_reshape(g, fg_permute(g, fg_reshape(g, x, s6), to_space), s4);
}
