/* NICE, RealNVP and Glow, composed of registered bijectors and sized by arguments.  The
 * architectures are the PyTorch reference's (../shared/peers/torch_flows.py), so benchmarks
 * compare like with like.  Each builder makes one flat chain, so parameter names are
 * "<layer index>.<type>.<local name>" (flows/flow.h); the layer lists below give the indices.
 *
 * NICE (Dinh et al. 2014): `couplings` additive couplings with alternating parity and MLP
 * conditioners (`blocks` hidden layers of `hidden` units, zero-initialised output layer), then
 * NICE's diagonal scaling:
 *   i < couplings:  i.additive_coupling   net.hidden<k>.{w,b}, net.out.{w,b}
 *   couplings:      <couplings>.scale     log_scale [event]
 * Vectors use mask "alternate" (odd/even elements, the paper's split) by default, images
 * "checkerboard" (the MLP sees the whole masked image).  The paper's MNIST model is
 * couplings 4, blocks 5, hidden 1000; the reference's moons model (--additive) is couplings 8,
 * blocks 2, hidden 256.
 *
 * RealNVP for images (Dinh et al. 2017, the reference's `realnvp`): optional logit
 * pre-processing, then per scale but the last: 3 checkerboard affine couplings (parity 0, 1, 0),
 * squeeze, 3 channel affine couplings (parity 0, 1, 0; conditioner width 2·hidden), split (half
 * the channels factored out); the last scale: 4 checkerboard couplings (parity 0, 1, 0, 1).
 * Couplings use the "resnet" conditioner (`blocks` residual blocks of width `hidden`) and the
 * c·tanh log-scale ("exp_tanh").  For [1, 28, 28] with 2 scales:
 *   0.logit  1-3 checkerboard  4.squeeze  5-7 channel  8.split  9-12 checkerboard
 * Coupling parameters: rescale [C'], net.in.{w,b}, net.block<k>.conv{1,2}.{w,b}, net.out.{w,b};
 * split: prior.{weight,bias,logs}.  One difference from the reference: its factored-out halves
 * have a fixed N(0, I) prior, ours the split layer's learned conditional prior, which is
 * zero-initialised and so starts as N(0, I).
 *
 * RealNVP for vectors (the reference's `moons`): `couplings` affine couplings with MLP
 * conditioners and alternating parity over mask "half" (by default), c·tanh log-scale.
 *
 * Glow (Kingma & Dhariwal 2018, the reference's `glow`): optionally x - 0.5 first ("affine"),
 * then per level: squeeze, `steps` x [actnorm, conv1x1_lu (or conv1x1), affine coupling with the
 * "glow" conditioner (width `hidden`), sigmoid(h + 2) scale and the channel mask], then split
 * after every level but the last; a learned diagonal prior on the top latent (or N(0, I), as
 * the reference).  For [1, 28, 28], levels 2, steps K and center on:
 *   0.affine  1.squeeze  2..3K+1 steps  3K+2.split  3K+3.squeeze  3K+4..6K+3 steps
 * with step k of a level as <j>.actnorm {bias, logs}, <j+1>.conv1x1_lu {lower_offset,
 * upper_offset, log_s_offset} (or conv1x1 {weight}), <j+2>.affine_coupling {net.conv1.{w,b},
 * net.conv2.{w,b}, net.out.{w,b,logs}}; the top prior is prior.mean and prior.logstd. */
#ifndef FG_MODELS_H
#define FG_MODELS_H

#include <stdbool.h>
#include <stdint.h>

#include "flows/flow.h"
#include "flows/registry.h"

/* Common to every builder: the data's per-sample shape, the dtype and the initialisation seed. */
typedef struct fg_model_opts {
  fg_shape event;
  fg_dtype dtype; /* FG_F32 (default) or FG_F64 */
  uint64_t seed;
} fg_model_opts;

/* NICE and RealNVP-for-vectors: a stack of MLP couplings. */
typedef struct fg_mlp_flow_config {
  int64_t couplings;
  int64_t hidden;
  int64_t blocks;   /* hidden layers per conditioner */
  const char *mask; /* NULL: NICE "alternate" (vectors) / "checkerboard" (images); RealNVP "half" */
} fg_mlp_flow_config;

typedef struct fg_realnvp_config {
  int64_t scales; /* >= 1; H and W must be divisible by 2^(scales - 1) */
  int64_t hidden;
  int64_t blocks; /* residual blocks per conditioner */
  bool logit;     /* prepend logit(alpha) (data in [0, 1]) */
  double alpha;
} fg_realnvp_config;

typedef struct fg_glow_config {
  int64_t levels; /* L >= 1; H and W must be divisible by 2^L */
  int64_t steps;  /* K >= 1 per level */
  int64_t hidden;
  bool lu;        /* conv1x1_lu (the reference) instead of conv1x1 */
  bool additive;  /* additive couplings (Glow's large-image configs) instead of affine */
  bool learn_top; /* learned diagonal prior on the top latent, else N(0, I) */
  bool center;    /* x - 0.5 first, for data in [0, 1) (the reference) */
} fg_glow_config;

/* Defaults: the paper's NICE (4, 1000, 5); the reference's moons RealNVP (8, 256, 2, "half");
 * the reference's image RealNVP (scales 2, hidden 64, blocks 4, logit on, alpha 0.05); the
 * reference's Glow (levels 2, steps 8, hidden 128, LU, affine, learned top, centred). */
fg_mlp_flow_config fg_nice_defaults(void);
fg_mlp_flow_config fg_realnvp_vector_defaults(void);
fg_realnvp_config fg_realnvp_defaults(void);
fg_glow_config fg_glow_defaults(void);

/* The bijector of each model (a chain), its types taken from r (NULL: the built-ins); the
 * flow builders below add the base distribution.  Errors name the model, the layer index and
 * type, and the argument or shape at fault.  On failure *out is NULL and every layer made so far
 * is freed.  r is borrowed: a plugin's types must stay loaded while the result lives. */
fg_status fg_nice_bijector(fg_bijector **out, const fg_registry *r, fg_shape event,
                           const fg_mlp_flow_config *cfg, fg_err *e);
fg_status fg_realnvp_vector_bijector(fg_bijector **out, const fg_registry *r, fg_shape event,
                                     const fg_mlp_flow_config *cfg, fg_err *e);
fg_status fg_realnvp_bijector(fg_bijector **out, const fg_registry *r, fg_shape event,
                              const fg_realnvp_config *cfg, fg_err *e);
fg_status fg_glow_bijector(fg_bijector **out, const fg_registry *r, fg_shape event,
                           const fg_glow_config *cfg, fg_err *e);

/* The flows: NICE and RealNVP with an N(0, I) base, Glow with the prior cfg->learn_top picks. */
fg_status fg_nice_new(fg_flow **out, const fg_registry *r, const fg_model_opts *m,
                      const fg_mlp_flow_config *cfg, fg_err *e);
fg_status fg_realnvp_vector_new(fg_flow **out, const fg_registry *r, const fg_model_opts *m,
                                const fg_mlp_flow_config *cfg, fg_err *e);
fg_status fg_realnvp_new(fg_flow **out, const fg_registry *r, const fg_model_opts *m,
                         const fg_realnvp_config *cfg, fg_err *e);
fg_status fg_glow_new(fg_flow **out, const fg_registry *r, const fg_model_opts *m,
                      const fg_glow_config *cfg, fg_err *e);

#endif
