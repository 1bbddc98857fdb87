/* Conditioner networks: the small nets a coupling layer runs on the part of its input that it
 * leaves unchanged, to get the shift and log-scale of the part it transforms.  A conditioner is
 * a spec ({kind, hidden, blocks}) plus one function that builds it as graph ops; its parameters
 * are created with fg_flow_param under a local scope ("net" gives "net.out.w"), so they live in
 * the bijector's namespace and every graph built from the same store shares them.
 *
 * Every kind's last layer is zero-initialised, so a coupling layer starts as the identity (or,
 * with Glow's sigmoid scale, a fixed rescaling) and a deep stack is stable at the start.
 *
 *   "mlp"    any input [B, F, ...]: flattened per sample, then `blocks` x (Linear(hidden) - ReLU)
 *            and a zero-initialised Linear; the output is reshaped to [B, out, ...] with the
 *            input's trailing axes (so a vector net can also condition a small image).
 *            Parameters: hidden<i>.w [in, hidden], hidden<i>.b [hidden], out.w, out.b.
 *   "glow"   images [B, C, H, W], openai/glow's coupling net: conv3x3(hidden) - ReLU -
 *            conv1x1(hidden) - ReLU - conv2d_zeros 3x3(out), "same" padding.  conv2d_zeros is a
 *            zero-initialised conv with bias whose output is multiplied by exp(3 * logs), logs a
 *            zero-initialised per-channel parameter (the factor 3 speeds up its learning rate).
 *            Parameters: conv1.{w,b}, conv2.{w,b}, out.{w,b,logs}.
 *   "resnet" images [B, C, H, W], RealNVP's residual net, simplified: conv3x3(hidden) in,
 *            `blocks` x [ReLU, conv3x3, ReLU, conv3x3] + skip, ReLU, zero-initialised conv3x3
 *            out.  Parameters: in.{w,b}, block<i>.conv1.{w,b}, block<i>.conv2.{w,b}, out.{w,b}.
 *
 * `hidden` is the width of every hidden layer; `blocks` is the number of hidden layers of "mlp"
 * and of residual blocks of "resnet" ("glow" has a fixed depth and ignores it). */
#ifndef FG_CONDITIONER_H
#define FG_CONDITIONER_H

#include <stdbool.h>
#include <stdint.h>

#include "flows/bijector.h"

typedef enum fg_conditioner_kind {
  FG_COND_MLP,
  FG_COND_GLOW,
  FG_COND_RESNET,
} fg_conditioner_kind;

/* Upper bounds that keep parameter shapes far from overflow; real nets are much smaller. */
#define FG_CONDITIONER_MAX_HIDDEN 65536
#define FG_CONDITIONER_MAX_BLOCKS 1024

typedef struct fg_conditioner {
  fg_conditioner_kind kind;
  int64_t hidden;
  int64_t blocks;
} fg_conditioner;

/* Fills *out from the constructor arguments of a coupling type.  Unknown kinds list the
 * accepted ones; hidden must be in 1..MAX_HIDDEN and blocks in 0..MAX_BLOCKS; each message
 * names its argument ("argument 'hidden': ..."), the caller adds the type's name. */
fg_status fg_conditioner_parse(fg_conditioner *out, const char *kind,
                               int64_t hidden, int64_t blocks, fg_err *e);
const char *fg_conditioner_kind_name(fg_conditioner_kind k);
/* True for the kinds that need images [B, C, H, W] (the convolutional ones). */
bool fg_conditioner_needs_images(const fg_conditioner *net);

/* Builds the net on h and returns its output: h's shape with axis 1 replaced by out_features
 * (h's dtype, which must be the parameters' dtype).  Parameters are "<scope>.<layer>.<w|b>"
 * under the bijector's prefix.  A shape the kind cannot take fails the graph with a message
 * naming the layer prefix, the scope and the shape; returns FG_POISON then. */
fg_node fg_conditioner_apply(const fg_conditioner *net, fg_flow_ctx *c, const char *scope,
                             fg_node h, int64_t out_features);

/* MADE (Germain et al. 2015), the autoregressive conditioner of MAF and IAF: on x [B, D] an
 * MLP of `blocks` masked hidden layers of width `hidden` (ReLU) and a masked, zero-initialised
 * output layer, giving [B, D, per_input]: row i holds element i's outputs, which depend only on
 * the x_j before i in the order 1..D (or D..1 with `reversed`).  Degrees: input j has j + 1 (or
 * D - j), hidden unit k has k mod (D - 1) + 1; a weight is kept from degree a to a hidden unit
 * of degree b >= a and to an output of degree b > a (the masks are constants multiplied into
 * the weights).  Parameters "<scope>.hidden<i>.{w,b}" (w [in, hidden], the full matrix) and
 * "<scope>.out.{w,b}". */
fg_node fg_made_apply(fg_flow_ctx *c, const char *scope, fg_node x, int64_t hidden,
                      int64_t blocks, int64_t per_input, bool reversed);

#endif
