/* Conditioner networks (see conditioner.h). */
#include "flows/layers/conditioner.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/ops.h"

static const char *const kind_names[] = {"mlp", "glow", "resnet"};
enum { N_KINDS = (int)(sizeof kind_names / sizeof kind_names[0]) };

const char *fg_conditioner_kind_name(fg_conditioner_kind k) {
  return (unsigned)k < N_KINDS ? kind_names[k] : "?";
}

bool fg_conditioner_needs_images(const fg_conditioner *net) { return net->kind != FG_COND_MLP; }

fg_status fg_conditioner_parse(fg_conditioner *out, const char *kind,
                               int64_t hidden, int64_t blocks, fg_err *e) {
  int k = 0;
  while (k < N_KINDS && !(kind && strcmp(kind, kind_names[k]) == 0)) k++;
  if (k == N_KINDS)
    return fg_err_set(e, FG_E_MISUSE, "argument 'net': unknown conditioner \"%s\" (accepted: "
                      "mlp for vectors or small images, glow and resnet for images)",
                      kind ? kind : "(null)");
  if (hidden < 1 || hidden > FG_CONDITIONER_MAX_HIDDEN)
    return fg_err_set(e, FG_E_MISUSE, "argument 'hidden': %lld is not a width in 1..%d",
                      (long long)hidden, FG_CONDITIONER_MAX_HIDDEN);
  if (blocks < 0 || blocks > FG_CONDITIONER_MAX_BLOCKS)
    return fg_err_set(e, FG_E_MISUSE, "argument 'blocks': %lld is not a count in 0..%d",
                      (long long)blocks, FG_CONDITIONER_MAX_BLOCKS);
  *out = (fg_conditioner){(fg_conditioner_kind)k, hidden, blocks};
  return FG_OK;
}

/* ---- building blocks ---- */

/* The bijector prefix without its trailing dot, for messages ("3.affine_coupling"). */
static const char *layer_label(fg_flow_ctx *c, char *buf, size_t cap) {
  const char *p = fg_flow_ctx_prefix(c);
  size_t n = strlen(p);
  if (n && p[n - 1] == '.') n--;
  snprintf(buf, cap, "%.*s", (int)n, n ? p : "conditioner");
  return buf;
}

/* "<scope>.<layer>.<leaf>" in the dtype of `like` (the store may hold another dtype: a float32
 * model evaluated on float64 data computes in float64). */
static fg_node param(fg_flow_ctx *c, const char *scope, const char *layer, const char *leaf,
                     fg_shape shape, fg_init init, fg_node like) {
  char name[256];
  snprintf(name, sizeof name, "%s.%s.%s", scope, layer, leaf);
  fg_graph *g = fg_flow_graph(c);
  fg_node p = fg_flow_param(c, name, shape, init);
  fg_dtype t = fg_node_dtype(g, like);
  return fg_graph_status(g) == FG_OK && fg_node_dtype(g, p) != t ? fg_cast(g, p, t) : p;
}

/* PyTorch's default for Linear and Conv2d weights (kaiming-uniform with a = sqrt(5)):
 * U(-1/sqrt(fan_in), 1/sqrt(fan_in)), which keeps activations O(1) without normalisation. */
static fg_init fan_in_uniform(int64_t fan_in) {
  double bound = 1.0 / sqrt((double)(fan_in > 0 ? fan_in : 1));
  return (fg_init){FG_INIT_UNIFORM, -bound, bound};
}

static const fg_init zeros = {FG_INIT_ZEROS, 0, 0};

/* h [B, in] -> h @ (w * mask) + b, [B, out]; mask [in, out] is FG_NONE for none. */
static fg_node masked_linear(fg_flow_ctx *c, const char *scope, const char *layer, fg_node h,
                             int64_t out, bool zero_init, fg_node mask) {
  fg_graph *g = fg_flow_graph(c);
  int64_t in = fg_node_shape(g, h).d[1];
  fg_init init = zero_init ? zeros : fan_in_uniform(in);
  fg_node w = param(c, scope, layer, "w", fg_shape2(in, out), init, h);
  fg_node b = param(c, scope, layer, "b", fg_shape1(out), init, h);
  return fg_add(g, fg_matmul(g, h, mask == FG_NONE ? w : fg_mul(g, w, mask)), b);
}

static fg_node linear(fg_flow_ctx *c, const char *scope, const char *layer, fg_node h,
                      int64_t out, bool zero_init) {
  return masked_linear(c, scope, layer, h, out, zero_init, FG_NONE);
}

/* A k x k convolution with bias and "same" zero padding (k odd). */
static fg_node conv(fg_flow_ctx *c, const char *scope, const char *layer, fg_node h, int64_t k,
                    int64_t out, fg_init w_init) {
  fg_graph *g = fg_flow_graph(c);
  int64_t in = fg_node_shape(g, h).d[1];
  fg_node w = param(c, scope, layer, "w", fg_shape4(out, in, k, k), w_init, h);
  fg_node b = param(c, scope, layer, "b", fg_shape1(out), zeros, h);
  fg_conv2d_opts o = fg_conv2d_defaults();
  o.padding[0] = o.padding[1] = k / 2;
  return fg_conv2d(g, h, w, b, &o);
}

static fg_init conv_init(fg_node h, fg_graph *g, int64_t k) {
  return fan_in_uniform(fg_node_shape(g, h).d[1] * k * k);
}

/* ---- the nets ---- */

static fg_node mlp(const fg_conditioner *net, fg_flow_ctx *c, const char *scope, fg_node h,
                   int64_t out_features) {
  fg_graph *g = fg_flow_graph(c);
  fg_shape s = fg_node_shape(g, h), out_shape = s;
  int64_t batch = s.d[0], per_sample = fg_shape_count(&s) / (batch ? batch : 1);
  out_shape.d[1] = out_features;
  int64_t out_per_sample = fg_shape_count(&out_shape) / (batch ? batch : 1);
  fg_node a = fg_reshape(g, h, fg_shape2(batch, per_sample));
  for (int64_t i = 0; i < net->blocks; i++) {
    char layer[32];
    snprintf(layer, sizeof layer, "hidden%lld", (long long)i);
    a = fg_relu(g, linear(c, scope, layer, a, net->hidden, false));
  }
  a = linear(c, scope, "out", a, out_per_sample, true);
  return fg_reshape(g, a, out_shape);
}

/* openai/glow's f(): hidden convs there have actnorm instead of a bias and "edge_bias" padding
 * (an extra input channel marking the border); here they have a plain bias and zero padding.
 * Without that actnorm, openai/glow's N(0, 0.05) weights leave the first conv's features ~3x
 * too small for a 2-channel input (fan-in 18) and learning starts slowly; the fan-in uniform
 * init (PyTorch's default, as the peer reference uses) keeps them at unit scale. */
static fg_node glow(const fg_conditioner *net, fg_flow_ctx *c, const char *scope, fg_node h,
                    int64_t out_features) {
  fg_graph *g = fg_flow_graph(c);
  h = fg_relu(g, conv(c, scope, "conv1", h, 3, net->hidden, conv_init(h, g, 3)));
  h = fg_relu(g, conv(c, scope, "conv2", h, 1, net->hidden, conv_init(h, g, 1)));
  fg_node out = conv(c, scope, "out", h, 3, out_features, zeros);
  fg_node logs = param(c, scope, "out", "logs", fg_shape1(out_features), zeros, out);
  fg_node gain = fg_exp(g, fg_mul_scalar(g, logs, 3.0));
  return fg_mul(g, out, fg_reshape(g, gain, fg_shape4(1, out_features, 1, 1)));
}

/* RealNVP's ResNet without its batch-norm and weight-norm (the paper's nets normalise every
 * conv; the zero-initialised output layer and the bounded scale keep this one stable) and
 * without the concatenated [x, -x] ReLU input. */
static fg_node resnet(const fg_conditioner *net, fg_flow_ctx *c, const char *scope, fg_node h,
                      int64_t out_features) {
  fg_graph *g = fg_flow_graph(c);
  h = conv(c, scope, "in", h, 3, net->hidden, conv_init(h, g, 3));
  for (int64_t i = 0; i < net->blocks; i++) {
    char l1[48], l2[48];
    snprintf(l1, sizeof l1, "block%lld.conv1", (long long)i);
    snprintf(l2, sizeof l2, "block%lld.conv2", (long long)i);
    fg_node r = fg_relu(g, h);
    r = conv(c, scope, l1, r, 3, net->hidden, conv_init(r, g, 3));
    r = fg_relu(g, r);
    r = conv(c, scope, l2, r, 3, net->hidden, conv_init(r, g, 3));
    h = fg_add(g, h, r);
  }
  return conv(c, scope, "out", fg_relu(g, h), 3, out_features, zeros);
}

fg_node fg_conditioner_apply(const fg_conditioner *net, fg_flow_ctx *c, const char *scope,
                             fg_node h, int64_t out_features) {
  fg_graph *g = fg_flow_graph(c);
  if (fg_graph_status(g) != FG_OK) return FG_POISON;
  fg_shape s = fg_node_shape(g, h);
  char label[160], shape[160];
  if (s.ndim < 2 || out_features < 1 || (fg_conditioner_needs_images(net) && s.ndim != 4))
    return fg_graph_fail(g, FG_E_SHAPE, "%s: conditioner '%s' (%s) needs %s with %lld outputs; "
                         "got input %s", layer_label(c, label, sizeof label), scope,
                         fg_conditioner_kind_name(net->kind),
                         fg_conditioner_needs_images(net) ? "images [B, C, H, W]"
                                                          : "an input [B, F, ...]",
                         (long long)out_features, fg_shape_str(&s, shape, sizeof shape));
  switch (net->kind) {
  case FG_COND_MLP: return mlp(net, c, scope, h, out_features);
  case FG_COND_GLOW: return glow(net, c, scope, h, out_features);
  case FG_COND_RESNET: return resnet(net, c, scope, h, out_features);
  }
  return fg_graph_fail(g, FG_E_INTERNAL, "conditioner: unknown kind %d", (int)net->kind);
}

/* ---- MADE ---- */

/* The [n_in, n_out] mask keeping a connection from degree in[j] to degree out[k] when
 * out[k] >= in[j] + strict. */
static fg_node degree_mask(fg_graph *g, fg_dtype t, const int64_t *in, int64_t n_in,
                           const int64_t *out, int64_t n_out, int strict) {
  double *m = malloc(sizeof *m * (size_t)(n_in * n_out + 1));
  if (!m) return fg_graph_fail(g, FG_E_NOMEM, "out of memory for a MADE mask");
  for (int64_t j = 0; j < n_in; j++)
    for (int64_t k = 0; k < n_out; k++) m[j * n_out + k] = out[k] >= in[j] + strict;
  fg_node mask = fg_constant_values(g, t, fg_shape2(n_in, n_out), m);
  free(m);
  return mask;
}

static fg_node made_layers(fg_flow_ctx *c, const char *scope, fg_node x, int64_t hidden,
                           int64_t blocks, int64_t per_input, const int64_t *in_deg,
                           int64_t *hid_deg, int64_t *out_deg) {
  fg_graph *g = fg_flow_graph(c);
  fg_dtype t = fg_node_dtype(g, x);
  int64_t d = fg_node_shape(g, x).d[1];
  for (int64_t k = 0; k < hidden; k++) hid_deg[k] = k % (d > 1 ? d - 1 : 1) + 1;
  for (int64_t i = 0; i < d * per_input; i++) out_deg[i] = in_deg[i / per_input];
  fg_node h = x;
  const int64_t *prev = in_deg;
  int64_t width = d;
  for (int64_t i = 0; i < blocks; i++) {
    char layer[32];
    snprintf(layer, sizeof layer, "hidden%lld", (long long)i);
    fg_node mask = degree_mask(g, t, prev, width, hid_deg, hidden, 0);
    h = fg_relu(g, masked_linear(c, scope, layer, h, hidden, false, mask));
    prev = hid_deg, width = hidden;
  }
  fg_node mask = degree_mask(g, t, prev, width, out_deg, d * per_input, 1);
  fg_node out = masked_linear(c, scope, "out", h, d * per_input, true, mask);
  return fg_reshape(g, out, fg_shape3(fg_node_shape(g, x).d[0], d, per_input));
}

fg_node fg_made_apply(fg_flow_ctx *c, const char *scope, fg_node x, int64_t hidden,
                      int64_t blocks, int64_t per_input, bool reversed) {
  fg_graph *g = fg_flow_graph(c);
  fg_shape s = fg_node_shape(g, x);
  if (fg_graph_status(g) != FG_OK) return FG_POISON;
  char label[160], shape[160];
  if (s.ndim != 2 || s.d[1] < 1 || hidden < 1 || blocks < 0 || per_input < 1)
    return fg_graph_fail(g, FG_E_SHAPE, "%s: MADE '%s' needs vectors [B, D], hidden >= 1 and "
                         "outputs per input >= 1; got input %s",
                         layer_label(c, label, sizeof label), scope,
                         fg_shape_str(&s, shape, sizeof shape));
  int64_t d = s.d[1];
  int64_t *deg = malloc(sizeof *deg * (size_t)(d + hidden + d * per_input));
  if (!deg) return fg_graph_fail(g, FG_E_NOMEM, "out of memory for MADE degrees");
  for (int64_t j = 0; j < d; j++) deg[j] = reversed ? d - j : j + 1;
  fg_node out = made_layers(c, scope, x, hidden, blocks, per_input, deg, deg + d, deg + d + hidden);
  free(deg);
  return out;
}
