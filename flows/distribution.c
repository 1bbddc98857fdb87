#include "flows/distribution.h"

#include <math.h>

#include "ops/ops.h"

static const double HALF_LOG_2PI = 0.91893853320467274178;

/* Sum over every axis but the batch axis: [B, ...] -> [B]. */
static fg_node sum_event(fg_graph *g, fg_node v) {
  fg_shape s = fg_node_shape(g, v);
  uint32_t axes = 0;
  for (int i = 1; i < s.ndim; i++) axes |= FG_AXIS(i);
  return axes ? fg_sum(g, v, axes, false) : v;
}

static int64_t event_size(fg_graph *g, fg_node z) {
  fg_shape s = fg_node_shape(g, z);
  return s.ndim ? fg_shape_count(&s) / (s.d[0] ? s.d[0] : 1) : 1;
}

fg_node fg_normal_log_prob(fg_graph *g, fg_node z) {
  fg_node sq = sum_event(g, fg_square(g, z));
  return fg_add_scalar(g, fg_mul_scalar(g, sq, -0.5), -HALF_LOG_2PI * (double)event_size(g, z));
}

fg_node fg_diag_normal_log_prob(fg_graph *g, fg_node z, fg_node mean, fg_node logstd) {
  /* -0.5·((z - m)·exp(-s))² - s - 0.5·log(2π), summed over the event */
  fg_node u = fg_mul(g, fg_sub(g, z, mean), fg_exp(g, fg_neg(g, logstd)));
  fg_node per = fg_sub(g, fg_mul_scalar(g, fg_square(g, u), -0.5), logstd); /* z's shape */
  return fg_add_scalar(g, sum_event(g, per), -HALF_LOG_2PI * (double)event_size(g, z));
}

fg_node fg_diag_normal_sample(fg_graph *g, fg_node mean, fg_node logstd, double temperature,
                              uint64_t seed, fg_dtype t, fg_shape shape) {
  fg_node eps = fg_random_normal(g, seed, 0.0, temperature, t, shape);
  if (logstd != FG_NONE) eps = fg_mul(g, eps, fg_exp(g, logstd));
  return mean != FG_NONE ? fg_add(g, eps, mean) : eps;
}
