/* "split": Glow's split2d (multiscale factor-out).  Of x [B, C, ...] it keeps the first C/2
 * channels y and factors out the rest, z, under a learned conditional prior
 * N(z; mean(y), exp(logs(y))²):
 *   forward:  y = x[:, :C/2], log-det := log N(z; mean, exp(logs)) summed per sample, and z is
 *             pushed on the context's latent stack (fg_flow_push_latent);
 *   inverse:  z popped back (reconstruction) or drawn as mean + exp(logs)·T·ε (sampling, at the
 *             context's temperature T), then x = concat(y, z); its log-det is -log N(z; ...),
 *             so forward and inverse log-dets stay negatives of each other.
 * The prior is openai/glow's split2d_prior: a zero-initialised 3x3 convolution of y ("same"
 * zero padding) with a bias and Glow's exp(3·logs) output gain, parameters "prior.weight"
 * [C, C/2, 3, 3], "prior.bias" and "prior.logs" [C]; its outputs are interleaved as Glow's
 * (mean = h[:, 0::2], logs = h[:, 1::2]).  So the prior starts as N(0, I).  Vectors [B, D] get
 * the same with a zero-initialised dense layer ("prior.weight" [D, D/2]).
 *
 * "cond_split" (FG_BIJ_CONTEXT) adds the flow's context to the prior, per level, as
 * openai/glow's ycond does for its top prior: the prior's pre-activation h gets a learned linear
 * map of the context, one value per element of h ("prior.context" [n, 2·C/2·H·W], zero at
 * init), so each class has its own mean and log-scale map for the factored-out half. */
#include "flows/distribution.h"
#include "flows/layers/layer_util.h"
#include "flows/layers/layers.h"
#include "ops/ops.h"

/* Glow's conv2d_zeros gain: the output is multiplied by exp(LOGSCALE_FACTOR·logs). */
static const double LOGSCALE_FACTOR = 3.0;

static fg_status split_create(void **state, fg_err *e) {
  (void)e;
  *state = NULL;
  return FG_OK;
}

/* [B, C] or [B, C, H, W]; with `full`, C is the input's and must be even. */
static fg_status expect_splittable(fg_flow_ctx *c, fg_node x, bool full) {
  fg_graph *g = fg_flow_graph(c);
  fg_status st = fg__layer_expect_rank(c, x, 2, 4, "a vector [B, D] or an image [B, C, H, W]");
  if (st != FG_OK) return st;
  fg_shape s = fg_node_shape(g, x);
  if (s.ndim == 3) {
    char buf[128];
    return fg__layer_fail(c, FG_E_SHAPE, "needs a vector [B, D] or an image [B, C, H, W], got %s",
                          fg__batch_shape_str(&s, buf, sizeof buf));
  }
  if (full && (s.d[1] < 2 || s.d[1] % 2)) {
    char buf[128];
    return fg__layer_fail(c, FG_E_SHAPE,
                          "split needs an even channel count (it keeps half), got %s",
                          fg__batch_shape_str(&s, buf, sizeof buf));
  }
  return FG_OK;
}

/* Every other channel of h starting at `first`: Glow's interleaved mean / log-scale. */
static fg_node every_other_channel(fg_graph *g, fg_node h, int64_t first) {
  fg_shape s = fg_node_shape(g, h);
  int64_t start[FG_MAX_DIMS] = {0}, stop[FG_MAX_DIMS], step[FG_MAX_DIMS];
  for (int i = 0; i < s.ndim; i++) stop[i] = s.d[i], step[i] = 1;
  start[1] = first, step[1] = 2;
  return fg_slice(g, h, start, stop, step);
}

/* The prior's mean and log-scale for z (same shape as y) given the kept half y (and the
 * context, for cond_split). */
static void prior_of(fg_flow_ctx *c, fg_node y, bool conditional, fg_node *mean, fg_node *logs) {
  fg_graph *g = fg_flow_graph(c);
  fg_shape ys = fg_node_shape(g, y);
  int64_t kept = ys.d[1], out = 2 * kept;
  fg_init zeros = {FG_INIT_ZEROS, 0, 0};
  fg_node h;
  if (ys.ndim == 4) {
    fg_node w = fg__param_like(c, "prior.weight", fg_shape4(out, kept, 3, 3), zeros, y);
    fg_conv2d_opts o = fg_conv2d_defaults();
    o.padding[0] = o.padding[1] = 1;
    h = fg_conv2d(g, y, w, FG_NONE, &o);
  } else {
    fg_node w = fg__param_like(c, "prior.weight", fg_shape2(out, kept), zeros, y);
    h = fg_matmul_t(g, y, w, false, true);
  }
  if (conditional) {
    fg_shape hs = fg_node_shape(g, h), per_sample = {.ndim = hs.ndim - 1};
    for (int i = 1; i < hs.ndim; i++) per_sample.d[i - 1] = hs.d[i];
    h = fg_add(g, h, fg_flow_context_linear(c, "prior.context", per_sample, y));
  }
  fg_node bias = fg__param_like(c, "prior.bias", fg_shape1(out), zeros, y);
  fg_node gain = fg_exp(
      g,
      fg_mul_scalar(g, fg__param_like(c, "prior.logs", fg_shape1(out), zeros, y), LOGSCALE_FACTOR));
  h = fg_mul(g, fg_add(g, h, fg__per_channel(g, bias, h)), fg__per_channel(g, gain, h));
  *mean = every_other_channel(g, h, 0);
  *logs = every_other_channel(g, h, 1);
}

/* split's state is NULL; cond_split's points at this. */
static const bool CONDITIONAL = true;

static fg_status cond_split_create(void **state, fg_err *e) {
  (void)e;
  *state = (void *)&CONDITIONAL;
  return FG_OK;
}

static fg_status split_forward(void *state, fg_flow_ctx *c, fg_node x, fg_node *y,
                               fg_node *logdet) {
  fg_graph *g = fg_flow_graph(c);
  fg_status st = expect_splittable(c, x, true);
  if (st != FG_OK) return st;
  int64_t ch = fg_node_shape(g, x).d[1];
  *y = fg_slice_axis(g, x, 1, 0, ch / 2);
  fg_node z = fg_slice_axis(g, x, 1, ch / 2, ch), mean, logs;
  prior_of(c, *y, state != NULL, &mean, &logs);
  *logdet = fg_diag_normal_log_prob(g, z, mean, logs);
  if (fg_graph_status(g) != FG_OK) return fg_graph_status(g);
  return fg_flow_push_latent(c, z);
}

/* The factored-out part for the kept half y: drawn when sampling, else the one forward kept. */
static fg_node latent_for(fg_flow_ctx *c, fg_node y, fg_node mean, fg_node logs) {
  fg_graph *g = fg_flow_graph(c);
  fg_shape ys = fg_node_shape(g, y);
  if (fg_flow_sampling(c))
    return fg_diag_normal_sample(g, mean, logs, fg_flow_temperature(c), fg_flow_next_seed(c),
                                 fg_node_dtype(g, y), ys);
  fg_node z = fg_flow_pop_latent(c);
  if (z < 0) return z;
  fg_shape zs = fg_node_shape(g, z);
  if (!fg_shape_equal(&zs, &ys)) {
    char a[128], b[128];
    fg__layer_fail(c, FG_E_SHAPE, "the latent on the stack is %s but this split factored out %s "
                   "(latents are popped in reverse order of the forward pass)",
                   fg__batch_shape_str(&zs, a, sizeof a), fg__batch_shape_str(&ys, b, sizeof b));
    return FG_POISON;
  }
  return z;
}

static fg_status split_inverse(void *state, fg_flow_ctx *c, fg_node y, fg_node *x,
                               fg_node *logdet) {
  fg_graph *g = fg_flow_graph(c);
  fg_status st = expect_splittable(c, y, false);
  if (st != FG_OK) return st;
  fg_node mean, logs;
  prior_of(c, y, state != NULL, &mean, &logs);
  fg_node z = latent_for(c, y, mean, logs);
  fg_node parts[2] = {y, z};
  *x = fg_concat(g, 2, parts, 1);
  *logdet = fg_neg(g, fg_diag_normal_log_prob(g, z, mean, logs));
  return fg_graph_status(g);
}

const fg_bijector_type fg_bijector_split = {
    .abi_version = FG_BIJECTOR_ABI_VERSION,
    .name = "split",
    .doc = "factors out the second half of the channels under a learned conditional Gaussian prior",
    .create = (void (*)(void))split_create,
    .forward = split_forward,
    .inverse = split_inverse,
    .check_event = {3, {4, 2, 2}},
    .check_args = "",
    .check_lo = -2.0,
    .check_hi = 2.0,
    .flags = FG_BIJ_FACTOR_OUT,
};

const fg_bijector_type fg_bijector_cond_split = {
    .abi_version = FG_BIJECTOR_ABI_VERSION,
    .name = "cond_split",
    .doc = "split whose prior for the factored-out half also depends on the context (per level)",
    .create = (void (*)(void))cond_split_create,
    .forward = split_forward,
    .inverse = split_inverse,
    .check_event = {3, {4, 2, 2}},
    .check_args = "",
    .check_lo = -2.0,
    .check_hi = 2.0,
    .flags = FG_BIJ_FACTOR_OUT | FG_BIJ_CONTEXT,
};
