/* Every latent of a flow, and class labels as contexts (see flow.h). */
#include <math.h>

#include "flows/flow_internal.h"

fg_status fg_flow_encode_latents(fg_flow *f, fg_graph *g, fg_node x, fg_node context,
                                 fg_node *latents, fg_node *logdet) {
  for (int i = 0; i < f->n_latents; i++) latents[i] = FG_POISON;
  fg_flow_ctx *c = fg__flow_ctx(f, g, (fg__flow_mode){.seed = f->cfg.seed}, context);
  fg_node z, ld = FG_POISON;
  if (c && fg__flow_encode_in(f, c, x, &z, &ld) == FG_OK) {
    int n = fg_flow_num_latents(c) + 1;
    if (n != f->n_latents)
      fg_graph_fail(g, FG_E_INTERNAL, "flow: %d latents, where the flow was built with %d", n,
                    f->n_latents);
    for (int i = n - 2; i >= 0 && fg_graph_status(g) == FG_OK; i--)
      latents[i] = fg_flow_pop_latent(c);
    if (fg_graph_status(g) == FG_OK) latents[n - 1] = z;
  }
  if (logdet) *logdet = ld;
  fg_flow_ctx_free(c);
  return fg_graph_status(g);
}

/* latents[i] must be [B, latent i...] in the flow's dtype, one B for all. */
static fg_status check_latents(const fg_flow *f, fg_graph *g, const fg_node *latents,
                               int64_t *batch) {
  *batch = fg_node_shape(g, latents[f->n_latents - 1]).d[0];
  for (int i = 0; i < f->n_latents && fg_graph_status(g) == FG_OK; i++) {
    fg_shape s = fg_node_shape(g, latents[i]), want = fg__with_batch(*batch, &f->latent_shapes[i]);
    char a[128], b[128];
    if (!fg_shape_equal(&s, &want) || fg_node_dtype(g, latents[i]) != f->cfg.dtype)
      return fg_graph_fail_status(g, FG_E_SHAPE, "flow: latent %d is %s %s; decoding needs %s %s",
                                  i, fg_dtype_name(fg_node_dtype(g, latents[i])),
                                  fg_shape_str(&s, a, sizeof a), fg_dtype_name(f->cfg.dtype),
                                  fg_shape_str(&want, b, sizeof b));
  }
  return fg_graph_status(g);
}

fg_status fg_flow_decode_latents(fg_flow *f, fg_graph *g, const fg_node *latents, fg_node context,
                                 fg_node *x) {
  *x = FG_POISON;
  int64_t batch;
  if (fg_graph_status(g) != FG_OK || check_latents(f, g, latents, &batch) != FG_OK ||
      fg__flow_check_context(f, g, context, batch) != FG_OK)
    return fg_graph_status(g);
  fg_flow_ctx *c = fg__flow_ctx(f, g, (fg__flow_mode){.seed = f->cfg.seed}, context);
  for (int i = 0; c && i < f->n_latents - 1; i++) fg_flow_push_latent(c, latents[i]);
  fg_node ld;
  if (c && fg_graph_status(g) == FG_OK)
    fg_bijector_inverse(f->b, c, latents[f->n_latents - 1], x, &ld);
  fg_flow_ctx_free(c);
  return fg_graph_status(g);
}

fg_status fg_flow_class_context(fg_tensor **out, const fg_flow *f, const fg_tensor *labels,
                                fg_err *e) {
  *out = NULL;
  int64_t k = f->cfg.context;
  if (k < 1) return fg_err_set(e, FG_E_MISUSE, "class context: the flow is not conditional");
  if (labels->shape.ndim != 1)
    return fg_err_set(e, FG_E_SHAPE, "class context: labels must be [N], one per sample");
  int64_t n = labels->shape.d[0];
  for (int64_t i = 0; i < n; i++) {
    double v = fg_tensor_get(labels, i);
    if (!(v >= 0 && v < (double)k && v == floor(v)))
      return fg_err_set(e, FG_E_FORMAT, "class context: label %lld is %g; this flow has classes "
                        "0..%lld", (long long)i, v, (long long)(k - 1));
  }
  fg_shape s = fg_shape2(n, k);
  fg_status st = fg_tensor_new(out, f->cfg.dtype, &s, e); /* zeroed */
  for (int64_t i = 0; st == FG_OK && i < n; i++)
    fg_tensor_set(*out, i * k + (int64_t)fg_tensor_get(labels, i), 1.0);
  return st;
}
