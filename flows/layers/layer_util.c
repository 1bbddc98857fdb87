#include "flows/layers/layer_util.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "ops/ops.h"

/* The prefix without its trailing dot: "3.actnorm." names the layer "3.actnorm". */
static int prefix_len(const char *p) {
  size_t n = strlen(p);
  return (int)(n && p[n - 1] == '.' ? n - 1 : n);
}

fg_status fg__layer_fail(fg_flow_ctx *c, fg_status s, const char *fmt, ...) {
  fg_err what;
  va_list ap;
  va_start(ap, fmt);
  fg_err_vset(&what, s, fmt, ap);
  va_end(ap);
  fg_graph *g = fg_flow_graph(c);
  const char *p = fg_flow_ctx_prefix(c);
  fg_graph_fail(g, s, "%.*s: %s", prefix_len(p), p, what.msg);
  return fg_graph_status(g);
}

const char *fg__batch_shape_str(const fg_shape *s, char *buf, size_t cap) {
  size_t at = 0;
  at += (size_t)snprintf(buf, cap, "[");
  for (int i = 0; i < s->ndim && at < cap; i++)
    at += i == 0 ? (size_t)snprintf(buf + at, cap - at, "B")
                 : (size_t)snprintf(buf + at, cap - at, ", %lld", (long long)s->d[i]);
  if (at < cap) snprintf(buf + at, cap - at, "]");
  return buf;
}

fg_status fg__layer_expect_rank(fg_flow_ctx *c, fg_node x, int min_ndim, int max_ndim,
                                const char *needs) {
  fg_graph *g = fg_flow_graph(c);
  if (fg_graph_status(g) != FG_OK) return fg_graph_status(g);
  fg_shape s = fg_node_shape(g, x);
  if (s.ndim >= min_ndim && s.ndim <= max_ndim) return FG_OK;
  char buf[128];
  return fg__layer_fail(c, FG_E_SHAPE, "needs %s, got %s", needs,
                        fg__batch_shape_str(&s, buf, sizeof buf));
}

fg_status fg__layer_mix_channels(fg_flow_ctx *c, fg_node x, int64_t *n) {
  fg_status st = fg__layer_expect_rank(c, x, 2, FG_MAX_DIMS, "[B, C, ...] (channels on axis 1)");
  if (st != FG_OK) return st;
  *n = fg_node_shape(fg_flow_graph(c), x).d[1];
  if (*n <= FG_MAX_MIX_CHANNELS) return FG_OK;
  return fg__layer_fail(c, FG_E_LIMIT,
                        "mixes its %lld channels with a C x C matrix; flowgrad "
                        "accepts at most FG_MAX_MIX_CHANNELS = %d channels here",
                        (long long)*n, FG_MAX_MIX_CHANNELS);
}

int64_t fg__spatial_size(const fg_shape *s) {
  int64_t n = 1;
  for (int i = 2; i < s->ndim; i++) n *= s->d[i];
  return n;
}

fg_node fg__as_dtype(fg_graph *g, fg_node n, fg_dtype t) {
  return n < 0 || fg_node_dtype(g, n) == t ? n : fg_cast(g, n, t);
}

fg_node fg__param_like(fg_flow_ctx *c, const char *name, fg_shape shape, fg_init init, fg_node x) {
  fg_graph *g = fg_flow_graph(c);
  return fg__as_dtype(g, fg_flow_param(c, name, shape, init), fg_node_dtype(g, x));
}

fg_node fg__per_channel(fg_graph *g, fg_node v, fg_node x) {
  fg_shape xs = fg_node_shape(g, x), s = xs;
  for (int i = 0; i < s.ndim; i++) s.d[i] = i == 1 ? xs.d[1] : 1;
  return fg_reshape(g, v, s);
}

fg_node fg__channel_mix(fg_graph *g, fg_node w, fg_node x, bool transpose) {
  fg_shape xs = fg_node_shape(g, x);
  if (fg_graph_status(g) != FG_OK) return FG_POISON;
  /* vectors: one GEMM over the whole batch, y = x W^T */
  if (xs.ndim == 2) return fg_matmul_t(g, x, w, false, !transpose);
  /* images: [B, C, S] batched W @ x, so the [C, C] matrix broadcasts over the batch */
  fg_node x3 = fg_reshape(g, x, fg_shape3(xs.d[0], xs.d[1], fg__spatial_size(&xs)));
  return fg_reshape(g, fg_matmul_t(g, w, x3, transpose, false), xs);
}

fg_node fg__per_sample(fg_graph *g, fg_node scalar, fg_node x) {
  fg_shape xs = fg_node_shape(g, x);
  if (fg_graph_status(g) != FG_OK) return FG_POISON;
  return fg_broadcast_to(g, fg_reshape(g, scalar, fg_shape0()), fg_shape1(xs.d[0]));
}

fg_node fg__batch_fill(fg_graph *g, fg_node x, double v) {
  fg_shape xs = fg_node_shape(g, x);
  if (fg_graph_status(g) != FG_OK) return FG_POISON;
  return fg_fill(g, v, fg_node_dtype(g, x), fg_shape1(xs.d[0]));
}

fg_node fg__sum_event(fg_graph *g, fg_node v) {
  fg_shape s = fg_node_shape(g, v);
  uint32_t axes = 0;
  for (int i = 1; i < s.ndim; i++) axes |= FG_AXIS(i);
  return axes ? fg_sum(g, v, axes, false) : v;
}

fg_node fg__channel_mean(fg_graph *g, fg_node x) {
  fg_shape s = fg_node_shape(g, x);
  uint32_t axes = FG_AXIS(0);
  for (int i = 2; i < s.ndim; i++) axes |= FG_AXIS(i);
  return fg_mean(g, x, axes, false);
}

void fg__channel_moments(fg_graph *g, fg_node x, fg_node *mean, fg_node *var) {
  *mean = fg__channel_mean(g, x);
  *var = fg__channel_mean(g, fg_square(g, fg_sub(g, x, fg__per_channel(g, *mean, x))));
}

/* The mean over the batch and spatial axes of every process's x. */
static fg_node global_channel_mean(fg_graph *g, fg_node x, const fg_reducer *r) {
  fg_shape s = fg_node_shape(g, x);
  uint32_t axes = FG_AXIS(0);
  for (int i = 2; i < s.ndim; i++) axes |= FG_AXIS(i);
  double count = (double)s.d[0] * (double)fg__spatial_size(&s) * (double)r->size;
  return fg_mul_scalar(g, fg_allreduce_sum(g, fg_sum(g, x, axes, false), r), 1.0 / count);
}

void fg__channel_moments_over(fg_graph *g, fg_node x, const fg_reducer *r, fg_node *mean,
                              fg_node *var) {
  if (!r) {
    fg__channel_moments(g, x, mean, var);
    return;
  }
  *mean = global_channel_mean(g, x, r);
  *var = global_channel_mean(g, fg_square(g, fg_sub(g, x, fg__per_channel(g, *mean, x))), r);
}

fg_node fg__channel_logdet(fg_graph *g, fg_node v, fg_node x, double sign) {
  fg_shape xs = fg_node_shape(g, x);
  fg_node total = fg_sum(g, v, FG_ALL_AXES, false);
  return fg__per_sample(g, fg_mul_scalar(g, total, sign * (double)fg__spatial_size(&xs)), x);
}

fg_node fg__channel_affine_apply(fg_graph *g, const fg__channel_affine *a, fg_node x, bool inverse,
                                 fg_node *logdet) {
  fg_node out;
  if (inverse) {
    fg_node y = a->shift_out == FG_NONE ? x : fg_sub(g, x, fg__per_channel(g, a->shift_out, x));
    fg_node unscaled = fg_mul(g, y, fg__per_channel(g, fg_exp(g, fg_neg(g, a->log_scale)), x));
    out = a->shift_in == FG_NONE ? unscaled
                                 : fg_sub(g, unscaled, fg__per_channel(g, a->shift_in, x));
  } else {
    fg_node shifted = a->shift_in == FG_NONE ? x : fg_add(g, x, fg__per_channel(g, a->shift_in, x));
    fg_node scaled = fg_mul(g, shifted, fg__per_channel(g, fg_exp(g, a->log_scale), x));
    out = a->shift_out == FG_NONE ? scaled : fg_add(g, scaled, fg__per_channel(g, a->shift_out, x));
  }
  *logdet = fg__channel_logdet(g, a->log_scale, x, inverse ? -1.0 : 1.0);
  return out;
}

fg_node fg__permutation_matrix(fg_graph *g, const double *idx, int64_t n, bool by_column,
                               fg_dtype t) {
  double *m = calloc((size_t)(n * n), sizeof *m); /* n <= FG_MAX_MIX_CHANNELS: n·n fits */
  if (!m)
    return fg_graph_fail(g, FG_E_NOMEM, "out of memory for a %lld-channel permutation",
                         (long long)n);
  for (int64_t i = 0; i < n; i++) {
    int64_t j = (int64_t)idx[i];
    m[by_column ? j * n + i : i * n + j] = 1.0;
  }
  fg_node out = fg_constant_values(g, t, fg_shape2(n, n), m);
  free(m);
  return out;
}

fg_status fg__check_permutation(const fg_tensor *v, fg_err *e) {
  int64_t n = fg_tensor_numel(v);
  if (v->shape.ndim != 1) return fg_err_set(e, FG_E_FORMAT, "a permutation must be a vector");
  bool *seen = calloc((size_t)n + 1, sizeof *seen);
  if (!seen) return fg_err_set(e, FG_E_NOMEM, "out of memory checking a permutation");
  fg_status st = FG_OK;
  for (int64_t i = 0; i < n && st == FG_OK; i++) {
    double x = fg_tensor_get(v, i);
    if (!(x >= 0 && x < (double)n && x == floor(x)) || seen[(int64_t)x])
      st = fg_err_set(e, FG_E_FORMAT, "entry %lld is %g: not a permutation of 0..%lld",
                      (long long)i, x, (long long)n - 1);
    else
      seen[(int64_t)x] = true;
  }
  free(seen);
  return st;
}

fg_status fg__check_signs(const fg_tensor *v, fg_err *e) {
  for (int64_t i = 0; i < fg_tensor_numel(v); i++) {
    double x = fg_tensor_get(v, i);
    if (x != 1.0 && x != -1.0)
      return fg_err_set(e, FG_E_FORMAT, "entry %lld is %g; signs are 1 or -1", (long long)i, x);
  }
  return FG_OK;
}

uint64_t fg__layer_seed(const fg_flow_ctx *c, int64_t seed) {
  const char *p = fg_flow_ctx_prefix(c);
  return XXH3_64bits_withSeed(p, strlen(p), (uint64_t)seed);
}

bool fg__has_init_request(const fg_flow_ctx *c, const char *name) {
  const char *p = fg_flow_ctx_prefix(c);
  size_t np = strlen(p);
  for (int i = 0; i < fg_flow_ctx_num_inits(c); i++) {
    const char *full = fg_flow_ctx_init_name(c, i);
    if (strncmp(full, p, np) == 0 && strcmp(full + np, name) == 0) return true;
  }
  return false;
}
