/* Coupling layers: what the additive (NICE) and affine (RealNVP, Glow) couplings share — masks,
 * the split of an input into the part that conditions and the part that is transformed, the
 * conditioner call, and putting the parts back together.
 *
 * Masks ("parity" 0 or 1 swaps the roles of the two parts):
 *   "checkerboard"  images [B, C, H, W]: pixel (i, j) conditions when (i + j + parity) is even,
 *                   for every channel.  As in RealNVP it works with constant masks over the whole
 *                   input: the net sees b·x (plus b as an extra channel, so it can tell a masked
 *                   pixel from a zero one), and its shift and log-scale are multiplied by 1 - b,
 *                   so conditioning pixels map to themselves exactly and add nothing to the
 *                   log-det.
 *   "channel"       images: channels [0, C/2) and [C/2, C); parity 0 transforms the second part
 *                   conditioned on the first (Glow's z2 given z1).
 *   "half"          vectors [B, D]: elements [0, D/2) and [D/2, D), as "channel".
 *   "alternate"     vectors: even and odd elements; parity 0 transforms the odd ones.
 * "channel", "half" and "alternate" slice the input, so the conditioner sees only the
 * conditioning part and its output covers only the transformed part; a concat (or, for
 * "alternate", an interleave by interior padding) puts the parts back. */
#ifndef FG_COUPLING_H
#define FG_COUPLING_H

#include <stdbool.h>
#include <stdint.h>

#include "flows/bijector.h"
#include "flows/layers/conditioner.h"
#include "flows/layers/layers.h" /* the registered types, fg_bijector_affine_coupling ... */

typedef enum fg_mask_kind {
  FG_MASK_CHECKERBOARD,
  FG_MASK_CHANNEL,
  FG_MASK_HALF,
  FG_MASK_ALTERNATE,
} fg_mask_kind;

/* What every coupling type is built from: its mask, which part it transforms, its net, and for
 * the conditional types (cond_*_coupling, flagged FG_BIJ_CONTEXT) how the net sees the flow's
 * context: the context vector [B, n] as given (embed 0: a one-hot label) or through a learned
 * linear embedding of width `embed` ("net.embed.w" [n, embed], N(0, 1) at init, as an embedding
 * table), broadcast over the pixels of an image and concatenated to the net's input as extra
 * channels (extra features for vectors). */
typedef struct fg_coupling_spec {
  fg_mask_kind mask;
  int parity;
  fg_conditioner net;
  bool conditional;
  int64_t embed;
} fg_coupling_spec;

/* The conditional types' extra constructor argument, after the shared ones. */
#define FG_COUPLING_EMBED_ARG                                                                      \
  {"embed", FG_ARG_INT, "0",                                                                       \
   "0: the conditioner sees the context as given (a one-hot label); N: a learned N-wide "          \
   "embedding of it"}
/* Validates `embed` (0..FG_CONDITIONER_MAX_HIDDEN) and marks s conditional. */
fg_status fg_coupling_spec_conditional(fg_coupling_spec *s, int64_t embed, fg_err *e);

const char *fg_coupling_mask_name(fg_mask_kind k);
/* True for the masks of images [B, C, H, W], false for those of vectors [B, D]. */
bool fg_coupling_mask_for_images(fg_mask_kind k);

/* Validates the shared constructor arguments; each message names the argument and what is
 * accepted.  A convolutional net with a vector mask is refused. */
fg_status fg_coupling_spec_parse(fg_coupling_spec *out, const char *mask,
                                 int64_t parity, const char *net, int64_t hidden, int64_t blocks,
                                 fg_err *e);

/* x split for one coupling step. */
typedef struct fg_coupling_parts {
  fg_node cond;        /* the conditioner's input */
  fg_node active;      /* what is transformed (checkerboard: all of x) */
  fg_node kept;        /* the conditioning part, put back unchanged (FG_NONE for checkerboard) */
  fg_node active_mask; /* checkerboard: 1 - b, [1, 1, H, W]; FG_NONE otherwise */
} fg_coupling_parts;

/* How a coupling type maps the transformed part, given the conditioner's output `net_out`
 * (active's shape with outputs_per_channel times its channels).  Returns the mapped part and
 * sets *log_scale to log|d out / d in| per element of the active part (restricted with
 * fg_coupling_restrict), or to FG_NONE when the map preserves volume. */
typedef struct fg_coupling_rule {
  int outputs_per_channel;
  fg_node (*apply)(const void *state, fg_flow_ctx *c, const fg_coupling_parts *p, fg_node net_out,
                   bool inverse, fg_node *log_scale);
} fg_coupling_rule;

/* Restricts a per-element quantity of the active part (a shift, a log-scale) to the transformed
 * positions: multiplies by 1 - b for checkerboard, returns v otherwise. */
fg_node fg_coupling_restrict(fg_flow_ctx *c, const fg_coupling_parts *p, fg_node v);

/* Elements start, start + 2, ... of axis 1 (Glow reads the shift and the scale of its net's
 * output from the even and the odd channels). */
fg_node fg_coupling_every_other(fg_graph *g, fg_node x, int64_t start);

/* One coupling step in either direction: split, conditioner "net", the rule, merge, and the
 * log-det (sum of the log-scales over the event, negated for the inverse; zeros [B] when the
 * rule preserves volume).  Shape errors name the layer prefix, the mask and the shape. */
fg_status fg_coupling_run(const fg_coupling_spec *s, const fg_coupling_rule *rule,
                          const void *rule_state, fg_flow_ctx *c, fg_node in, bool inverse,
                          fg_node *out, fg_node *logdet);

#endif
