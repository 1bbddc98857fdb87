/* Coupling layers' shared machinery: masks, split and merge, the coupling step (coupling.h). */
#include "flows/layers/coupling.h"

#include <stdio.h>
#include <string.h>

#include "flows/layers/layer_util.h"
#include "ops/ops.h"

static const char *const mask_names[] = {"checkerboard", "channel", "half", "alternate"};
enum { N_MASKS = (int)(sizeof mask_names / sizeof mask_names[0]) };

const char *fg_coupling_mask_name(fg_mask_kind k) {
  return (unsigned)k < N_MASKS ? mask_names[k] : "?";
}

bool fg_coupling_mask_for_images(fg_mask_kind k) {
  return k == FG_MASK_CHECKERBOARD || k == FG_MASK_CHANNEL;
}

fg_status fg_coupling_spec_parse(fg_coupling_spec *out, const char *mask,
                                 int64_t parity, const char *net, int64_t hidden, int64_t blocks,
                                 fg_err *e) {
  int k = 0;
  while (k < N_MASKS && !(mask && strcmp(mask, mask_names[k]) == 0)) k++;
  if (k == N_MASKS)
    return fg_err_set(e, FG_E_MISUSE, "argument 'mask': unknown mask \"%s\" (accepted: "
                      "checkerboard and channel for images [B, C, H, W], half and alternate for "
                      "vectors [B, D])", mask ? mask : "(null)");
  if (parity != 0 && parity != 1)
    return fg_err_set(e, FG_E_MISUSE, "argument 'parity': %lld is neither 0 nor 1 (which of "
                      "the two parts is transformed)", (long long)parity);
  fg_conditioner cond;
  fg_status st = fg_conditioner_parse(&cond, net, hidden, blocks, e);
  if (st != FG_OK) return st;
  if (fg_conditioner_needs_images(&cond) && !fg_coupling_mask_for_images((fg_mask_kind)k))
    return fg_err_set(e, FG_E_MISUSE, "argument 'net': conditioner \"%s\" is convolutional and "
                      "mask \"%s\" is for vectors [B, D]; use net=mlp, or mask=checkerboard or "
                      "channel for images", net, mask);
  *out = (fg_coupling_spec){.mask = (fg_mask_kind)k, .parity = (int)parity, .net = cond};
  return FG_OK;
}

fg_status fg_coupling_spec_conditional(fg_coupling_spec *s, int64_t embed, fg_err *e) {
  if (embed < 0 || embed > FG_CONDITIONER_MAX_HIDDEN)
    return fg_err_set(e, FG_E_MISUSE, "argument 'embed': %lld is not a width in 0..%d (0: the "
                      "context as given)", (long long)embed, FG_CONDITIONER_MAX_HIDDEN);
  s->conditional = true;
  s->embed = embed;
  return FG_OK;
}

/* ---- split and merge ---- */

static const char *layer_label(fg_flow_ctx *c, char *buf, size_t cap) {
  const char *p = fg_flow_ctx_prefix(c);
  size_t n = strlen(p);
  if (n && p[n - 1] == '.') n--;
  snprintf(buf, cap, "%.*s", (int)n, n ? p : "coupling");
  return buf;
}

/* Whether x's shape fits the mask; fails the graph naming layer, mask and shape if not. */
static bool shape_fits(const fg_coupling_spec *s, fg_flow_ctx *c, fg_node x) {
  fg_graph *g = fg_flow_graph(c);
  fg_shape xs = fg_node_shape(g, x);
  bool images = fg_coupling_mask_for_images(s->mask);
  bool ok = images ? xs.ndim == 4 : xs.ndim == 2;
  const char *need = "vectors [batch, D] with D >= 2 (mask=checkerboard or channel is for images)";
  if (s->mask == FG_MASK_CHECKERBOARD) {
    ok = ok && xs.d[2] * xs.d[3] >= 2;
    need = "images [batch, C, H, W] with at least two pixels";
  } else if (s->mask == FG_MASK_CHANNEL) {
    ok = ok && xs.d[1] >= 2;
    need = "images [batch, C, H, W] with C >= 2 (mask=checkerboard splits one channel)";
  } else {
    ok = ok && xs.d[1] >= 2;
  }
  if (ok) return true;
  char label[160], shape[160];
  fg_graph_fail(g, FG_E_SHAPE, "%s: mask '%s' needs %s; got input %s",
                layer_label(c, label, sizeof label), fg_coupling_mask_name(s->mask), need,
                fg_shape_str(&xs, shape, sizeof shape));
  return false;
}

/* RealNVP's checkerboard b [1, 1, H, W] (1 where a pixel conditions), or its complement. */
static fg_node checkerboard(fg_graph *g, fg_dtype t, int64_t h, int64_t w, int parity,
                            bool complement) {
  fg_shape s = fg_shape4(1, 1, h, w);
  fg_tensor *m;
  if (fg_tensor_new(&m, t, &s, NULL) != FG_OK)
    return fg_graph_fail(g, FG_E_NOMEM, "out of memory for a checkerboard mask");
  for (int64_t i = 0; i < h; i++)
    for (int64_t j = 0; j < w; j++)
      fg_tensor_set(m, i * w + j, ((i + j + parity) % 2 == 0) != complement ? 1.0 : 0.0);
  return fg_constant_take(g, m);
}

static void split_checkerboard(const fg_coupling_spec *s, fg_graph *g, fg_node x,
                               fg_coupling_parts *p) {
  fg_shape xs = fg_node_shape(g, x);
  fg_dtype t = fg_node_dtype(g, x);
  fg_node b = checkerboard(g, t, xs.d[2], xs.d[3], s->parity, false);
  fg_node mask_channel = fg_broadcast_to(g, b, fg_shape4(xs.d[0], 1, xs.d[2], xs.d[3]));
  fg_node both[2] = {fg_mul(g, x, b), mask_channel};
  p->cond = fg_concat(g, 2, both, 1);
  p->active = x;
  p->kept = FG_NONE;
  p->active_mask = checkerboard(g, t, xs.d[2], xs.d[3], s->parity, true);
}

fg_node fg_coupling_every_other(fg_graph *g, fg_node x, int64_t start) {
  fg_shape xs = fg_node_shape(g, x);
  int64_t lo[FG_MAX_DIMS] = {0}, hi[FG_MAX_DIMS], step[FG_MAX_DIMS];
  for (int i = 0; i < xs.ndim; i++) hi[i] = xs.d[i], step[i] = 1;
  lo[1] = start, step[1] = 2;
  return fg_slice(g, x, lo, hi, step);
}

/* Splits axis 1 into (first, second); the parity says which one is transformed. */
static void split_partition(const fg_coupling_spec *s, fg_graph *g, fg_node x,
                            fg_coupling_parts *p) {
  int64_t n = fg_node_shape(g, x).d[1];
  fg_node first, second;
  if (s->mask == FG_MASK_ALTERNATE) {
    first = fg_coupling_every_other(g, x, 0), second = fg_coupling_every_other(g, x, 1);
  } else {
    first = fg_slice_axis(g, x, 1, 0, n / 2), second = fg_slice_axis(g, x, 1, n / 2, n);
  }
  p->kept = s->parity ? second : first;
  p->active = s->parity ? first : second;
  p->cond = p->kept;
  p->active_mask = FG_NONE;
}

/* The inverse of fg_coupling_every_other: even [B, ceil(n/2)] and odd [B, floor(n/2)] back to
 * [B, n], by spreading each with zeros between its elements (interior padding) and adding. */
static fg_node interleave(fg_graph *g, fg_node even, fg_node odd, int64_t n) {
  int64_t ne = fg_node_shape(g, even).d[1], no = fg_node_shape(g, odd).d[1];
  int64_t zero[2] = {0, 0}, interior[2] = {0, 1};
  int64_t hi_even[2] = {0, n - (2 * ne - 1)}, lo_odd[2] = {0, 1}, hi_odd[2] = {0, n - 2 * no};
  return fg_add(g, fg_pad(g, even, zero, hi_even, interior, 0.0),
                fg_pad(g, odd, lo_odd, hi_odd, interior, 0.0));
}

static fg_node merge(const fg_coupling_spec *s, fg_graph *g, const fg_coupling_parts *p,
                     fg_node active_out, int64_t n) {
  if (s->mask == FG_MASK_CHECKERBOARD) return active_out;
  fg_node first = s->parity ? active_out : p->kept, second = s->parity ? p->kept : active_out;
  if (s->mask == FG_MASK_ALTERNATE) return interleave(g, first, second, n);
  fg_node both[2] = {first, second};
  return fg_concat(g, 2, both, 1);
}

fg_node fg_coupling_restrict(fg_flow_ctx *c, const fg_coupling_parts *p, fg_node v) {
  if (p->active_mask == FG_NONE) return v;
  return fg_mul(fg_flow_graph(c), v, p->active_mask);
}

/* Sum over every axis but the batch: [B, ...] -> [B]. */
static fg_node event_sum(fg_graph *g, fg_node v) {
  int64_t nd = fg_node_shape(g, v).ndim;
  uint32_t axes = 0;
  for (int64_t i = 1; i < nd; i++) axes |= FG_AXIS(i);
  return fg_sum(g, v, axes, false);
}

/* The conditioner's input with the context appended (conditional types): the context (or its
 * embedding) [B, E] as E more channels, constant over the pixels of an image. */
static fg_node with_context(const fg_coupling_spec *s, fg_flow_ctx *c, fg_node cond) {
  fg_graph *g = fg_flow_graph(c);
  fg_node ctx = fg__as_dtype(g, fg_flow_context(c), fg_node_dtype(g, cond));
  fg_shape cs = fg_node_shape(g, cond), xs = fg_node_shape(g, ctx);
  if (s->embed > 0) {
    fg_init normal = {FG_INIT_NORMAL, 0, 1};
    fg_node w = fg__param_like(c, "net.embed.w", fg_shape2(xs.d[1], s->embed), normal, cond);
    ctx = fg_matmul(g, ctx, w);
  }
  if (cs.ndim == 4) {
    int64_t width = fg_node_shape(g, ctx).d[1];
    ctx = fg_broadcast_to(g, fg_reshape(g, ctx, fg_shape4(cs.d[0], width, 1, 1)),
                          fg_shape4(cs.d[0], width, cs.d[2], cs.d[3]));
  }
  fg_node both[2] = {cond, ctx};
  return fg_concat(g, 2, both, 1);
}

fg_status fg_coupling_run(const fg_coupling_spec *s, const fg_coupling_rule *rule,
                          const void *rule_state, fg_flow_ctx *c, fg_node in, bool inverse,
                          fg_node *out, fg_node *logdet) {
  fg_graph *g = fg_flow_graph(c);
  *out = *logdet = FG_POISON;
  if (fg_graph_status(g) != FG_OK || !shape_fits(s, c, in)) return fg_graph_status(g);
  fg_shape xs = fg_node_shape(g, in);
  fg_coupling_parts p;
  if (s->mask == FG_MASK_CHECKERBOARD) split_checkerboard(s, g, in, &p);
  else split_partition(s, g, in, &p);
  if (s->conditional) p.cond = with_context(s, c, p.cond);
  int64_t channels = fg_node_shape(g, p.active).d[1];
  fg_node net_out =
      fg_conditioner_apply(&s->net, c, "net", p.cond, rule->outputs_per_channel * channels);
  if (fg_graph_status(g) != FG_OK) return fg_graph_status(g);
  fg_node log_scale = FG_NONE;
  fg_node active_out = rule->apply(rule_state, c, &p, net_out, inverse, &log_scale);
  *out = merge(s, g, &p, active_out, xs.d[1]);
  if (log_scale == FG_NONE) *logdet = fg_fill(g, 0.0, fg_node_dtype(g, in), fg_shape1(xs.d[0]));
  else *logdet = inverse ? fg_neg(g, event_sum(g, log_scale)) : event_sum(g, log_scale);
  return fg_graph_status(g);
}
