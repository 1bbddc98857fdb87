/* "flatten": [B, event...] -> [B, D], for vector layers (NICE's MLP couplings) on images.  The
 * event shape is an argument, not learned from a forward pass, so a sampling graph (which only
 * runs the inverse) knows what to restore.  A reordering of nothing: log-det 0. */
#include <stdlib.h>
#include <string.h>

#include "flows/layers/layer_util.h"
#include "flows/layers/layers.h"
#include "ops/ops.h"

typedef struct flatten_state {
  fg_shape event;
} flatten_state;

static fg_status flatten_create(void **state, fg_err *e, const fg_ints *event) {
  if (event->n < 1 || event->n >= FG_MAX_DIMS)
    return fg_err_set(e, FG_E_MISUSE, "argument 'event': 1 to %d sizes, got %lld", FG_MAX_DIMS - 1,
                      (long long)event->n);
  flatten_state *s = calloc(1, sizeof *s);
  if (!s) return fg_err_set(e, FG_E_NOMEM, "out of memory");
  s->event.ndim = event->n;
  for (int64_t i = 0; i < event->n; i++) {
    if (event->v[i] < 1) {
      free(s);
      return fg_err_set(e, FG_E_MISUSE, "argument 'event': size %lld of axis %lld is not positive",
                        (long long)event->v[i], (long long)i);
    }
    s->event.d[i] = event->v[i];
  }
  *state = s;
  return FG_OK;
}

static fg_shape with_batch(int64_t b, const fg_shape *event) {
  fg_shape s = fg_shape0();
  s.ndim = event->ndim + 1;
  s.d[0] = b;
  for (int i = 0; i < event->ndim; i++) s.d[i + 1] = event->d[i];
  return s;
}

static fg_status flatten_forward(void *state, fg_flow_ctx *c, fg_node x, fg_node *y,
                                 fg_node *logdet) {
  flatten_state *s = state;
  fg_graph *g = fg_flow_graph(c);
  fg_shape xs = fg_node_shape(g, x), want = with_batch(xs.d[0], &s->event);
  if (!fg_shape_equal(&xs, &want)) {
    char a[128], b[128];
    return fg__layer_fail(c, FG_E_SHAPE, "flatten was made for events %s, got input %s",
                          fg__batch_shape_str(&want, a, sizeof a),
                          fg__batch_shape_str(&xs, b, sizeof b));
  }
  *y = fg_reshape(g, x, fg_shape2(xs.d[0], fg_shape_count(&s->event)));
  *logdet = fg__batch_fill(g, x, 0.0);
  return fg_graph_status(g);
}

static fg_status flatten_inverse(void *state, fg_flow_ctx *c, fg_node y, fg_node *x,
                                 fg_node *logdet) {
  flatten_state *s = state;
  fg_graph *g = fg_flow_graph(c);
  fg_shape ys = fg_node_shape(g, y);
  if (ys.ndim != 2 || ys.d[1] != fg_shape_count(&s->event)) {
    char b[128];
    return fg__layer_fail(c, FG_E_SHAPE, "the inverse of flatten needs [B, %lld], got %s",
                          (long long)fg_shape_count(&s->event),
                          fg__batch_shape_str(&ys, b, sizeof b));
  }
  *x = fg_reshape(g, y, with_batch(ys.d[0], &s->event));
  *logdet = fg__batch_fill(g, y, 0.0);
  return fg_graph_status(g);
}

static const fg_arg_spec flatten_args[] = {
    {"event", FG_ARG_INTS, NULL, "the per-sample shape flattened, e.g. [1, 28, 28]"}};

const fg_bijector_type fg_bijector_flatten = {
    .abi_version = FG_BIJECTOR_ABI_VERSION,
    .name = "flatten",
    .doc = "[B, event...] -> [B, D] (vector layers on images); event given as an argument",
    .n_args = 1,
    .args = flatten_args,
    .create = (void (*)(void))flatten_create,
    .destroy = free,
    .forward = flatten_forward,
    .inverse = flatten_inverse,
    .check_event = {3, {1, 2, 3}},
    .check_args = "event=[1, 2, 3]",
};
