/* Derived log-dets (jacobian.h): the structured route over ops/autodiff/structure.c's analysis,
 * and the dense one. */
#include "ops/autodiff/jacobian.h"

#include <stdlib.h>

#include "ops/autodiff/autodiff.h"
#include "ops/autodiff/structure.h"
#include "ops/ops.h"

const char *fg_jacobian_kind_name(fg_jacobian_kind k) {
  static const char *const names[] = {"diagonal", "triangular", "dense"};
  return (unsigned)k <= FG_JACOBIAN_DENSE ? names[k] : "?";
}

/* Elements per sample of x and y, or a graph error naming `who` when they differ. */
static int64_t event_size(fg_graph *g, fg_node x, fg_node y, const char *who) {
  fg_shape xs = fg_node_shape(g, x), ys = fg_node_shape(g, y);
  int64_t batch = xs.ndim ? xs.d[0] : 1, dx = fg_shape_count(&xs) / (batch ? batch : 1);
  int64_t dy = fg_shape_count(&ys) / (batch ? batch : 1);
  if (dx != dy || xs.ndim < 1 || ys.ndim < 1 || ys.d[0] != batch) {
    fg_graph_fail(g, FG_E_SHAPE, "%s: cannot derive a log-det: the event changes size (%lld to "
                  "%lld elements per sample)", who, (long long)dx, (long long)dy);
    return -1;
  }
  return dx;
}

/* One-hot seed for output element i of every sample: [1, event...] broadcast to y's shape. */
static fg_node one_hot_seed(fg_graph *g, fg_node y, int64_t i) {
  fg_shape s = fg_node_shape(g, y), one = s;
  one.d[0] = 1;
  fg_tensor *t;
  if (fg_tensor_new(&t, fg_node_dtype(g, y), &one, NULL) != FG_OK)
    return fg_graph_fail(g, FG_E_NOMEM, "out of memory deriving a log-det");
  fg_tensor_set(t, i, 1.0);
  return fg_broadcast_to(g, fg_constant_take(g, t), s);
}

static fg_node dense_logdet(fg_graph *g, fg_node x, fg_node y, int64_t dx, const char *who,
                            const char *why) {
  fg_shape xs = fg_node_shape(g, x);
  if (dx > FG_DERIVED_LOGDET_MAX_EVENT)
    return fg_graph_fail(g, FG_E_MISUSE, "%s: no log-det given, no diagonal or triangular "
                         "structure found%s%s%s, and the event has %lld elements; the engine "
                         "derives dense log-dets only up to %d (declare one)", who,
                         why ? " (" : "", why ? why : "", why ? ")" : "", (long long)dx,
                         FG_DERIVED_LOGDET_MAX_EVENT);
  fg_node *rows = malloc(sizeof *rows * (size_t)(dx + 1));
  if (!rows) return fg_graph_fail(g, FG_E_NOMEM, "out of memory deriving a log-det");
  for (int64_t i = 0; i < dx && fg_graph_status(g) == FG_OK; i++) {
    fg_node seed = one_hot_seed(g, y, i), gx;
    if (fg_vjp(g, 1, &y, &seed, 1, &x, &gx) != FG_OK) break;
    rows[i] = fg_reshape(g, gx, fg_shape3(xs.d[0], 1, dx));
  }
  fg_node jac = fg_graph_status(g) == FG_OK ? fg_concat(g, (int)dx, rows, 1) : FG_POISON;
  free(rows);
  return fg_slogdet(g, jac);
}

fg_node fg_jacobian_logdet(fg_graph *g, fg_node x, fg_node y, const char *who) {
  if (fg_graph_status(g) != FG_OK) return FG_POISON;
  int64_t dx = event_size(g, x, y, who);
  return dx < 0 ? FG_POISON : dense_logdet(g, x, y, dx, who, NULL);
}

/* Σ log|dy_i/dx_i| per sample: with the cuts fixed, dy/dx is diagonal, so the VJP of a seed of
 * ones is that diagonal. */
static fg_node diagonal_logdet(fg_graph *g, fg_node x, fg_node y, const fg_structure *s) {
  fg_node seed = fg_ones_like(g, y), diag;
  if (fg_vjp_cut(g, 1, &y, &seed, 1, &x, s->n_cuts, s->cuts, &diag) != FG_OK) return FG_POISON;
  fg_node logs = fg_log(g, fg_abs(g, diag));
  uint32_t axes = 0;
  for (int i = 1; i < fg_node_shape(g, x).ndim; i++) axes |= FG_AXIS(i);
  return axes ? fg_sum(g, logs, axes, false) : logs;
}

fg_node fg_logdet_derived(fg_graph *g, fg_node x, fg_node y, const char *who,
                          fg_jacobian_kind *route) {
  if (route) *route = FG_JACOBIAN_DENSE;
  if (fg_graph_status(g) != FG_OK) return FG_POISON;
  int64_t dx = event_size(g, x, y, who);
  if (dx < 0) return FG_POISON;
  fg_structure s;
  if (fg_structure_find(&s, g, x, y) != FG_OK)
    return fg_graph_fail(g, FG_E_NOMEM, "%s: out of memory analysing the Jacobian", who);
  fg_node ld;
  if (s.kind != FG_JACOBIAN_DENSE && s.diagonal_by_cut) {
    ld = diagonal_logdet(g, x, y, &s);
    if (route) *route = s.kind;
  } else {
    ld = dense_logdet(g, x, y, dx, who, s.why[0] ? s.why : NULL);
  }
  fg_structure_free(&s);
  return ld;
}
