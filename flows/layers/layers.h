/* Built-in layer types: permutations, 1x1 convolutions, normalisations, squeeze, split and the
 * elementwise bijectors, and the couplings (flows/layers/coupling.h).  Each is registered from
 * the one list below; use them through a registry by name (fg_registry_find(r, "actnorm")) —
 * these symbols exist for that list and for tests.
 *
 * Every type takes x as [B, C, ...]: axis 1 holds the channels of an image [B, C, H, W] or the
 * features of a vector [B, D].  Parameter names (local to the layer's prefix) are given with
 * each type. */
#ifndef FG_LAYERS_H
#define FG_LAYERS_H

#include "flows/bijector.h"

/* Every built-in type, once, in registration order: X(name) stands for the type registered as
 * "name" and defined as fg_bijector_<name>.  The declarations below and the registry's list
 * (flows/layers/builtins.c) are both generated from it, so they cannot drift apart. */
#define FG_BUILTIN_BIJECTORS(X)                                                                    \
  /* flows/layers/coupling_additive.c, coupling_affine.c (shared parts: coupling.h) */             \
  X(additive_coupling)  /* NICE: mask, parity, net, hidden, blocks */                              \
  X(affine_coupling)    /* RealNVP, Glow: as additive_coupling, plus scale */                      \
  /* conditional (FG_BIJ_CONTEXT): the conditioner also sees the flow's context */                 \
  X(cond_additive_coupling) /* additive_coupling's arguments, plus embed */                        \
  X(cond_affine_coupling)   /* affine_coupling's arguments, plus embed */                          \
  /* flows/layers/permute.c: fixed permutations of axis 1, log-det 0 */                            \
  X(reverse)                                                                                       \
  X(shuffle)            /* seed int = 0 */                                                         \
  X(permute)            /* perm ints (required) */                                                 \
  /* flows/layers/conv1x1.c: Glow's invertible 1x1 convolution; parameter "weight" [C, C] (a       \
   * random rotation at init); log|det| and the inverse computed in float64 */                     \
  X(conv1x1)                                                                                       \
  /* flows/layers/conv1x1_lu.c: W = P L (U + diag(sign exp(log|s|))) with parameters               \
   * "lower_offset", "upper_offset" [C, C] and "log_s_offset" [C] (see the file) */                \
  X(conv1x1_lu)         /* seed int = 0 */                                                         \
  /* flows/layers/actnorm.c: y = (x + bias) exp(logs) per channel; parameters "bias", "logs"       \
   * [C]; data-dependent initialisation */                                                         \
  X(actnorm)                                                                                       \
  /* flows/layers/batchnorm.c: RealNVP's batch normalisation; parameters "log_gamma", "beta",      \
   * "running_mean", "running_var" [C] */                                                          \
  X(batchnorm)          /* momentum double = 0.1, eps double = 1e-5 */                             \
  /* flows/layers/squeeze.c: 2x2 space-to-depth, log-det 0 */                                      \
  X(squeeze)                                                                                       \
  /* flows/layers/split.c: factors out the second half of the channels under a learned             \
   * conditional prior; parameters "prior.weight", "prior.bias", "prior.logs" */                   \
  X(split)                                                                                         \
  /* flows/layers/split.c: split whose prior also depends on the context ("prior.context") */      \
  X(cond_split)                                                                                    \
  /* flows/layers/logit.c: y = logit(alpha + (1 - 2 alpha) x) */                                   \
  X(logit)              /* alpha double = 0.05 */                                                  \
  /* flows/layers/elementwise_bijectors.c */                                                       \
  X(exp)                                                                                           \
  X(sigmoid)                                                                                       \
  X(affine)             /* scale double = 1, shift double = 0 */                                   \
  X(scale)              /* parameter "log_scale" [event] */                                        \
  X(tanh)                                                                                          \
  X(softplus)                                                                                      \
  X(leaky_relu)         /* alpha double = 0.1 */                                                   \
  X(power)              /* power double = 2, on (0, inf) */                                        \
  X(kumaraswamy)        /* a double = 2, b double = 3, on (0, 1) */                                \
  /* flows/layers/flatten.c */                                                                     \
  X(flatten)            /* event ints (required) */                                                \
  /* flows/layers/spline.c, coupling_spline.c: rational-quadratic splines (Durkan et al. 2019)     \
   * with linear tails; bins int = 8, bound double = 3, min_width, min_height, min_derivative */   \
  X(rq_spline)          /* parameters "widths", "heights" [event, bins], "derivatives" */          \
  X(rq_coupling)        /* Neural Spline Flow coupling: mask, parity, net, hidden, blocks */       \
  /* flows/layers/autoregressive.c: MADE-conditioned (flows/layers/conditioner.h) */               \
  X(maf)                /* transform affine | spline, hidden, blocks, reversed, spline args */     \
  X(iaf)                /* the same, fast in the inverse (sampling) direction */

#define FG_DECLARE_BIJECTOR_(name) extern const fg_bijector_type fg_bijector_##name;
FG_BUILTIN_BIJECTORS(FG_DECLARE_BIJECTOR_)
#undef FG_DECLARE_BIJECTOR_

#endif
