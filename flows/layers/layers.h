/* Built-in layer types: permutations, 1x1 convolutions, normalisations, squeeze, split and the
 * elementwise bijectors.  Each is registered in flows/layers/builtins.c; use them through a registry
 * by name (fg_registry_find(r, "actnorm")) — these symbols exist for that list and for tests.
 *
 * Every type takes x as [B, C, ...]: axis 1 holds the channels of an image [B, C, H, W] or the
 * features of a vector [B, D].  Parameter names (local to the layer's prefix) are given with
 * each type. */
#ifndef FG_LAYERS_H
#define FG_LAYERS_H

#include "flows/bijector.h"

/* flows/layers/permute.c: fixed permutations of axis 1, log-det 0. */
extern const fg_bijector_type fg_bijector_reverse; /* "reverse" */
extern const fg_bijector_type fg_bijector_shuffle; /* "shuffle": seed int = 0 */
extern const fg_bijector_type fg_bijector_permute; /* "permute": perm ints (required) */

/* flows/layers/conv1x1.c: "conv1x1", Glow's invertible 1x1 convolution; parameter "weight" [C, C]
 * (a random rotation at init); log|det| and the inverse computed in float64. */
extern const fg_bijector_type fg_bijector_conv1x1;
/* flows/layers/conv1x1_lu.c: "conv1x1_lu": seed int = 0; W = P L (U + diag(sign exp(log|s|))) with
 * parameters "lower_offset", "upper_offset" [C, C] and "log_s_offset" [C] (see the file). */
extern const fg_bijector_type fg_bijector_conv1x1_lu;

/* flows/layers/actnorm.c: "actnorm", y = (x + bias) exp(logs) per channel; parameters "bias", "logs"
 * [C]; data-dependent initialisation. */
extern const fg_bijector_type fg_bijector_actnorm;
/* flows/layers/batchnorm.c: "batchnorm": momentum double = 0.1, eps double = 1e-5; parameters
 * "log_gamma", "beta", "running_mean", "running_var" [C]. */
extern const fg_bijector_type fg_bijector_batchnorm;

/* flows/layers/squeeze.c: "squeeze", 2x2 space-to-depth, log-det 0. */
extern const fg_bijector_type fg_bijector_squeeze;
/* flows/layers/split.c: "split", factors out the second half of the channels under a learned
 * conditional prior; parameters "prior.weight", "prior.bias", "prior.logs". */
extern const fg_bijector_type fg_bijector_split;

/* flows/layers/logit.c: "logit": alpha double = 0.05, y = logit(alpha + (1 - 2 alpha) x). */
extern const fg_bijector_type fg_bijector_logit;
/* flows/layers/elementwise_bijectors.c */
extern const fg_bijector_type fg_bijector_exp;     /* "exp" */
extern const fg_bijector_type fg_bijector_sigmoid; /* "sigmoid" */
extern const fg_bijector_type fg_bijector_affine;  /* "affine": scale double = 1, shift double = 0 */
extern const fg_bijector_type fg_bijector_flatten; /* "flatten": event ints (required) */
extern const fg_bijector_type fg_bijector_scale;   /* "scale": parameter "log_scale" [event] */

#endif
