/* The flow's state and the helpers its builders share (flows/flow.c, flow_init.c,
 * flow_latents.c).  Internal: not installed. */
#ifndef FG_FLOW_INTERNAL_H
#define FG_FLOW_INTERNAL_H

#include "flows/flow.h"

struct fg_flow {
  fg_bijector *b;
  fg_params *ps;
  fg_flow_config cfg;
  fg_shape zshape; /* per sample */
  int64_t dims;
  int n_latents;         /* factored-out parts + the top latent */
  fg_shape *latent_shapes; /* per sample, in the order fg_flow_encode_latents gives them */
  const fg_reducer *replicas; /* training graphs of a data-parallel job */
};

/* How a graph is built: training (batch statistics), sampling (draw factored-out parts). */
typedef struct fg__flow_mode {
  bool training, sampling;
  double temperature;
  uint64_t seed;
} fg__flow_mode;

/* A context for building f into g, with `context` (FG_NONE or a checked [B, n] node) set; NULL
 * with the graph's error set when it cannot be made. */
fg_flow_ctx *fg__flow_ctx(const fg_flow *f, fg_graph *g, fg__flow_mode m, fg_node context);
/* [batch, event...] */
fg_shape fg__with_batch(int64_t batch, const fg_shape *event);
/* x must be [B, event...] in the flow's dtype; the context [B, n] for a conditional flow and
 * FG_NONE otherwise.  Fails the graph naming what is wrong. */
fg_status fg__flow_check_inputs(const fg_flow *f, fg_graph *g, fg_node x, fg_node context);
/* The same for a context alone, for a batch of `batch` samples. */
fg_status fg__flow_check_context(const fg_flow *f, fg_graph *g, fg_node context, int64_t batch);
/* z = f(x) and Σ log-dets, built in c (the factored-out parts stay on c's latent stack). */
fg_status fg__flow_encode_in(fg_flow *f, fg_flow_ctx *c, fg_node x, fg_node *z, fg_node *logdet);
/* log p_base(z) and a draw of n top latents, in c (the conditional prior reads c's context). */
fg_node fg__flow_base_log_prob(const fg_flow *f, fg_flow_ctx *c, fg_node z);
fg_node fg__flow_base_sample(const fg_flow *f, fg_flow_ctx *c, int64_t n, double temperature);
/* Copies v into parameter `name` of the store (same element count, every value finite), for
 * data-dependent initialisation and state updates; `what` starts the messages. */
fg_status fg__flow_write_param(fg_flow *f, const char *name, const fg_tensor *v, const char *what,
                               fg_err *e);

#endif
