/* Affine coupling (RealNVP, Glow): the conditioner's output on the conditioning part gives a
 * shift t (its even channels) and a raw scale h (its odd channels, openai/glow's order), and the
 * transformed part is scaled and shifted.  Two bounded scales:
 *   "exp_tanh" (RealNVP): log-scale s = c·tanh(h), c a learned per-channel (per-feature for
 *              vectors) parameter "rescale" initialised to 1, so |s| <= |c|;
 *              y_b = x_b·exp(s) + t, x_b = (y_b - t) / exp(s).
 *   "sigmoid"  (Glow): scale = sigmoid(h + 2), log-scale logsigmoid(h + 2) (scale ~0.88 at
 *              init, as in openai/glow); y_b = (x_b + t)·scale, x_b = y_b / scale - t.
 * The log-det is the sum of the log-scales over the transformed positions, [B]; the inverse
 * declares its negation. */
#include <stdlib.h>
#include <string.h>

#include "flows/layers/coupling.h"
#include "ops/ops.h"

#define TYPE_NAME "affine_coupling"

typedef enum scale_kind { SCALE_EXP_TANH, SCALE_SIGMOID } scale_kind;

typedef struct affine_state {
  fg_coupling_spec spec;
  scale_kind scale;
} affine_state;

#define AFFINE_ARGS                                                                                \
  {"mask", FG_ARG_STRING, "checkerboard",                                                          \
   "checkerboard | channel (images), half | alternate (vectors)"},                                 \
      {"parity", FG_ARG_INT, "0", "0 or 1: which part of the mask is transformed"},                \
      {"net", FG_ARG_STRING, "resnet", "conditioner: mlp | glow | resnet"},                        \
      {"hidden", FG_ARG_INT, "64", "width of the conditioner's hidden layers"},                    \
      {"blocks", FG_ARG_INT, "2", "hidden layers (mlp) or residual blocks (resnet)"},              \
      {"scale", FG_ARG_STRING, "exp_tanh",                                                         \
       "exp_tanh (RealNVP c*tanh(h) log-scale) | sigmoid (Glow sigmoid(h + 2))"}

static const fg_arg_spec affine_args[] = {AFFINE_ARGS};
static const fg_arg_spec cond_affine_args[] = {AFFINE_ARGS, FG_COUPLING_EMBED_ARG};

static fg_status parse_scale(scale_kind *out, const char *scale, fg_err *e) {
  if (scale && strcmp(scale, "exp_tanh") == 0) *out = SCALE_EXP_TANH;
  else if (scale && strcmp(scale, "sigmoid") == 0) *out = SCALE_SIGMOID;
  else
    return fg_err_set(e, FG_E_MISUSE, "argument 'scale': unknown scale \"%s\" (accepted: "
                      "exp_tanh for RealNVP's c*tanh(h) log-scale, sigmoid for Glow's "
                      "sigmoid(h + 2))", scale ? scale : "(null)");
  return FG_OK;
}

static fg_status affine_state_new(void **state, const affine_state *st, fg_err *e) {
  affine_state *s = malloc(sizeof *s);
  if (!s) return fg_err_set(e, FG_E_NOMEM, "%s: out of memory", TYPE_NAME);
  *s = *st;
  *state = s;
  return FG_OK;
}

static fg_status affine_create(void **state, fg_err *e, const char *mask, int64_t parity,
                               const char *net, int64_t hidden, int64_t blocks, const char *scale) {
  *state = NULL;
  affine_state st;
  fg_status rc = fg_coupling_spec_parse(&st.spec, mask, parity, net, hidden, blocks, e);
  if (rc == FG_OK) rc = parse_scale(&st.scale, scale, e);
  return rc == FG_OK ? affine_state_new(state, &st, e) : rc;
}

static fg_status cond_affine_create(void **state, fg_err *e, const char *mask, int64_t parity,
                                    const char *net, int64_t hidden, int64_t blocks,
                                    const char *scale, int64_t embed) {
  *state = NULL;
  affine_state st;
  fg_status rc = fg_coupling_spec_parse(&st.spec, mask, parity, net, hidden, blocks, e);
  if (rc == FG_OK) rc = parse_scale(&st.scale, scale, e);
  if (rc == FG_OK) rc = fg_coupling_spec_conditional(&st.spec, embed, e);
  return rc == FG_OK ? affine_state_new(state, &st, e) : rc;
}

static void affine_destroy(void *state) { free(state); }

/* RealNVP's c·tanh(h): c has one entry per channel of the transformed part, broadcast over the
 * batch and the pixels. */
static fg_node tanh_log_scale(fg_flow_ctx *c, fg_node raw) {
  fg_graph *g = fg_flow_graph(c);
  fg_shape rs = fg_node_shape(g, raw), cs = rs;
  for (int i = 0; i < cs.ndim; i++) cs.d[i] = i == 1 ? rs.d[1] : 1;
  fg_init ones = {FG_INIT_CONST, 1.0, 0};
  fg_node rescale = fg_flow_param(c, "rescale", fg_shape1(rs.d[1]), ones);
  if (fg_graph_status(g) == FG_OK && fg_node_dtype(g, rescale) != fg_node_dtype(g, raw))
    rescale = fg_cast(g, rescale, fg_node_dtype(g, raw)); /* a store of another dtype */
  return fg_mul(g, fg_tanh(g, raw), fg_reshape(g, rescale, cs));
}

static fg_node log_scale_of(const affine_state *s, fg_flow_ctx *c, fg_node raw) {
  fg_graph *g = fg_flow_graph(c);
  if (s->scale == SCALE_SIGMOID) return fg_logsigmoid(g, fg_add_scalar(g, raw, 2.0));
  return tanh_log_scale(c, raw);
}

/* The scale is exp(log-scale) for both kinds, so that with a checkerboard mask the restricted
 * log-scale 0 gives a scale of exactly 1 at the conditioning pixels. */
static fg_node scale_shift(const void *state, fg_flow_ctx *c, const fg_coupling_parts *p,
                           fg_node net_out, bool inverse, fg_node *log_scale) {
  const affine_state *s = state;
  fg_graph *g = fg_flow_graph(c);
  fg_node t = fg_coupling_restrict(c, p, fg_coupling_every_other(g, net_out, 0));
  fg_node raw = fg_coupling_every_other(g, net_out, 1);
  fg_node ls = fg_coupling_restrict(c, p, log_scale_of(s, c, raw));
  fg_node scale = fg_exp(g, ls), x = p->active;
  *log_scale = ls;
  if (s->scale == SCALE_SIGMOID) /* openai/glow: z2 += shift; z2 *= scale (reverse: /=, -=) */
    return inverse ? fg_sub(g, fg_div(g, x, scale), t) : fg_mul(g, fg_add(g, x, t), scale);
  return inverse ? fg_div(g, fg_sub(g, x, t), scale) : fg_add(g, fg_mul(g, x, scale), t);
}

static const fg_coupling_rule affine_rule = {2, scale_shift};

static fg_status affine_forward(void *state, fg_flow_ctx *c, fg_node x, fg_node *y,
                                fg_node *logdet) {
  const affine_state *s = state;
  return fg_coupling_run(&s->spec, &affine_rule, s, c, x, false, y, logdet);
}

static fg_status affine_inverse(void *state, fg_flow_ctx *c, fg_node y, fg_node *x,
                                fg_node *logdet) {
  const affine_state *s = state;
  return fg_coupling_run(&s->spec, &affine_rule, s, c, y, true, x, logdet);
}

const fg_bijector_type fg_bijector_affine_coupling = {
    .abi_version = FG_BIJECTOR_ABI_VERSION,
    .name = TYPE_NAME,
    .doc = "RealNVP/Glow affine coupling y_b = x_b*exp(s(x_a)) + t(x_a) with a bounded scale",
    .n_args = (int)(sizeof affine_args / sizeof affine_args[0]),
    .args = affine_args,
    .create = (void (*)(void))affine_create,
    .destroy = affine_destroy,
    .forward = affine_forward,
    .inverse = affine_inverse,
    .check_event = {3, {2, 4, 4}},
    .check_args = "hidden=4, blocks=1",
    .check_lo = -2,
    .check_hi = 2,
};

/* The same with a conditioner that also sees the flow's context (coupling.h). */
const fg_bijector_type fg_bijector_cond_affine_coupling = {
    .abi_version = FG_BIJECTOR_ABI_VERSION,
    .name = "cond_affine_coupling",
    .doc = "affine_coupling whose conditioner also sees the context: s(x_a, c), t(x_a, c)",
    .n_args = (int)(sizeof cond_affine_args / sizeof cond_affine_args[0]),
    .args = cond_affine_args,
    .create = (void (*)(void))cond_affine_create,
    .destroy = affine_destroy,
    .forward = affine_forward,
    .inverse = affine_inverse,
    .check_event = {3, {2, 4, 4}},
    .check_args = "hidden=4, blocks=1",
    .check_lo = -2,
    .check_hi = 2,
    .flags = FG_BIJ_CONTEXT,
};
