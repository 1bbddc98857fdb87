/* Helpers shared by the built-in layer types (flows/layers/permute.c, conv1x1.c, actnorm.c, ...):
 * shape checks with messages that name the layer, per-channel broadcasting, channel mixing by
 * a [C, C] matrix, per-sample log-dets.  Internal: not part of the bijector contract.
 *
 * The layers see x as [B, C, ...]: axis 0 the batch, axis 1 the channels (images [B, C, H, W])
 * or features (vectors [B, D]); the axes after it are "spatial" (S = their product, 1 for
 * vectors), over which a per-channel map repeats, so its log-det is S times the per-pixel one. */
#ifndef FG_LAYER_UTIL_H
#define FG_LAYER_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "flows/bijector.h"

/* Records "<layer prefix>: <message>" as the graph's (sticky) error; returns its status. */
fg_status fg__layer_fail(fg_flow_ctx *c, fg_status s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* "[B, 3, 5, 4]": a shape with the batch axis written B (messages about the event). */
const char *fg__batch_shape_str(const fg_shape *s, char *buf, size_t cap);
/* FG_OK when x is [B, C, ...] with min_ndim <= ndim <= max_ndim; else fails naming `layer`'s
 * needs ("an image [B, C, H, W]") and x's shape.  Also passes a graph error already set. */
fg_status fg__layer_expect_rank(fg_flow_ctx *c, fg_node x, int min_ndim, int max_ndim,
                                const char *needs);

/* The channel count C of x [B, C, ...] for a layer that mixes channels with a C x C matrix:
 * checks x's rank, and C <= FG_MAX_MIX_CHANNELS (FG_E_LIMIT naming the layer), before any
 * C·C array is made. */
fg_status fg__layer_mix_channels(fg_flow_ctx *c, fg_node x, int64_t *n);
/* Product of the axes after the channel axis (1 for [B, D]). */
int64_t fg__spatial_size(const fg_shape *s);
/* n in dtype t (a cast only when it differs). */
fg_node fg__as_dtype(fg_graph *g, fg_node n, fg_dtype t);
/* A layer parameter in x's dtype (cast when the store's dtype differs). */
fg_node fg__param_like(fg_flow_ctx *c, const char *name, fg_shape shape, fg_init init, fg_node x);
/* v [C] reshaped to [1, C, 1, ...] so it broadcasts over x [B, C, ...]. */
fg_node fg__per_channel(fg_graph *g, fg_node v, fg_node x);
/* y[:, i, ...] = sum_j W[i][j] x[:, j, ...] (W^T with transpose): a 1x1 convolution for
 * images, x W^T for vectors. */
fg_node fg__channel_mix(fg_graph *g, fg_node w, fg_node x, bool transpose);
/* A 0-d (or one-element) value repeated for every sample of x: [B]. */
fg_node fg__per_sample(fg_graph *g, fg_node scalar, fg_node x);
/* [B] filled with v, in x's dtype. */
fg_node fg__batch_fill(fg_graph *g, fg_node x, double v);
/* v [B, ...] summed over every axis but the batch: [B]. */
fg_node fg__sum_event(fg_graph *g, fg_node v);
/* Mean over the batch and spatial axes: [B, C, ...] -> [C]. */
fg_node fg__channel_mean(fg_graph *g, fg_node x);
/* Each channel's mean and biased variance over the batch and spatial axes: [C] each (the
 * statistics actnorm initialises from and batchnorm normalises with). */
void fg__channel_moments(fg_graph *g, fg_node x, fg_node *mean, fg_node *var);
/* The same over the global batch of a data-parallel job whose processes r sums over, each
 * holding x's batch size of it (NULL r: fg__channel_moments): the sums of x and of the squared
 * deviations are exchanged, so every process gets the one-process statistics up to rounding. */
void fg__channel_moments_over(fg_graph *g, fg_node x, const fg_reducer *r, fg_node *mean,
                              fg_node *var);
/* sign·S·Σ v for [C] values v, repeated for every sample of x: [B].  The log-det of a map that
 * scales channel c by exp(v[c]) at every one of the S pixels. */
fg_node fg__channel_logdet(fg_graph *g, fg_node v, fg_node x, double sign);

/* The per-channel affine map that actnorm and batchnorm are, on x [B, C, ...]:
 *   y = (x + shift_in)·exp(log_scale) + shift_out,   log|det dy/dx| = S·Σ log_scale,
 * with [C] values in x's dtype; either shift may be FG_NONE (none). */
typedef struct fg__channel_affine {
  fg_node shift_in, log_scale, shift_out;
} fg__channel_affine;
/* y from x, or with inverse x = (y - shift_out)·exp(-log_scale) - shift_in from y; *logdet gets
 * the map's log-det per sample (negated for the inverse). */
fg_node fg__channel_affine_apply(fg_graph *g, const fg__channel_affine *a, fg_node x, bool inverse,
                                 fg_node *logdet);
/* The [n, n] permutation matrix of idx (n indices, as doubles): M[i][idx[i]] = 1, or with
 * by_column M[idx[i]][i] = 1 (its transpose).  idx must be a permutation (fg__check_permutation).
 */
fg_node fg__permutation_matrix(fg_graph *g, const double *idx, int64_t n, bool by_column,
                               fg_dtype t);
/* Buffer checks (fg_buffer_check): a vector holding a permutation of 0..n-1; values 1 or -1. */
fg_status fg__check_permutation(const fg_tensor *v, fg_err *e);
fg_status fg__check_signs(const fg_tensor *v, fg_err *e);
/* A seed for a layer's fixed random structure (shuffle, LU permutation): a hash of the seed
 * argument and the layer's prefix, so two layers of one model built with the same seed
 * argument still get different draws, and every graph of the model gets the same one. */
uint64_t fg__layer_seed(const fg_flow_ctx *c, int64_t seed);
/* Is there a data-init request for this layer's parameter `name` in c already? */
bool fg__has_init_request(const fg_flow_ctx *c, const char *name);

#endif
