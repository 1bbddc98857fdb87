/* Class means of a flow's latents and the attribute edits built on them (openai/glow's
 * manipulation: the difference of the mean latents of two groups is a direction in latent
 * space; moving an image's latents along it and decoding changes that attribute).
 *
 * The latents are all of them (flows/flow.h "every latent": the factored-out parts and the
 * top), so an edit moves every scale of a multi-scale model.  A conditional flow encodes each
 * sample with its own label as context; an edit decodes with the source image's context. */
#ifndef FG_CLASS_MEANS_H
#define FG_CLASS_MEANS_H

#include <stdint.h>

#include "flows/flow.h"

typedef struct fg_class_means {
  int n_latents;
  int64_t classes;
  fg_tensor **mean; /* per latent i: [classes, latent i...], float64 (zeros for an empty class) */
  int64_t *count;   /* samples of each class */
} fg_class_means;

/* Means over x [N, event...] (model space: what log p is evaluated on, e.g. dequantised images
 * in [0, 1)) with labels [N] in 0..classes-1, encoded `batch` samples at a time.  *out is the
 * caller's (fg_class_means_free); NULL on failure. */
fg_status fg_class_means_compute(fg_class_means **out, fg_flow *f, const fg_tensor *x,
                                 const fg_tensor *labels, int64_t classes, int64_t batch,
                                 fg_err *e);
void fg_class_means_free(fg_class_means *m);

/* A safetensors file of the means ("latent<i>", "count") with `tag` (any text saying what they
 * were computed from, such as the checkpoint's step and size) in its metadata. */
fg_status fg_class_means_save(const fg_class_means *m, const char *path, const char *tag,
                              fg_err *e);
/* Loads what fg_class_means_save wrote for this flow: FG_E_NOTFOUND when there is no file,
 * FG_E_FORMAT when its tag is not `tag` or its shapes are not f's latents'. */
fg_status fg_class_means_load(fg_class_means **out, const fg_flow *f, const char *path,
                              const char *tag, fg_err *e);

/* x [B, event...] moved from class `from` towards class `to`: its latents plus
 * scales[k]·(mean[to] - mean[from]) each, decoded; *out is [n_scales·B, event...] with the B
 * images of scale k at rows k·B... (scale 0 reconstructs x).  context: x's, for a conditional
 * flow (FG_NONE otherwise). */
fg_status fg_flow_edit_latents(fg_flow *f, fg_graph *g, fg_node x, fg_node context,
                               const fg_class_means *m, int64_t from, int64_t to, int n_scales,
                               const double *scales, fg_node *out);

#endif
