/* A flow model: a bijector (usually a chain) from data x to a latent z, a base distribution on z
 * and the parameter store both draw on.
 *
 *   log p(x) = log p_base(z) + Σ_layers log|det ∂y/∂x|        z = f(x), per sample ([batch])
 *
 * Factor-out layers (split) remove part of their input on the way: their log-dets already
 * carry the log-density of what they removed under its (learned, conditional) prior, so the
 * sum above is the whole log-density.
 *
 * Every builder below appends to a graph the caller owns: the caller makes the input node x,
 * compiles a program for the outputs it wants, binds x and the parameters (fg_params_bind with
 * fg_flow_params) and runs it.  Parameters live in the flow's store, outside graphs, so the
 * training, log-prob and sampling programs share them and an optimiser updates them in place.
 *
 * Parameter names.  A chain names child i "<i>.<type>." and a parameter is that prefix plus the
 * layer's local name: "3.actnorm.logs", "5.affine_coupling.net.out.w"; a chain inside a chain
 * adds a level ("2.chain.0.actnorm.bias").  The learned base distribution adds "prior.mean" and
 * "prior.logstd", each of the latent's per-sample shape.  Every parameter exists once
 * fg_flow_new returns (it builds the forward graph once to create them), in the order the
 * forward pass meets them: that order is the store's, the optimiser's and fg_flow_param_grads'.
 *
 * Conditional flows.  A flow made with config.context = n > 0 models p(x | c) for a context c of
 * n features per sample: a class label as a one-hot vector (fg_flow_class_context), or any
 * vector.  The layers whose type is flagged FG_BIJ_CONTEXT (cond_affine_coupling,
 * cond_additive_coupling, cond_split) and the FG_BASE_CONDITIONAL prior read it; the others
 * never see it.  Every builder that takes x (or draws samples) has a _cond form taking the
 * context as a node [B, n] of the flow's dtype; the plain forms pass none, which a conditional
 * flow refuses naming the first layer that needed it. */
#ifndef FG_FLOW_H
#define FG_FLOW_H

#include <stdbool.h>
#include <stdint.h>

#include "core/ir/graph.h"
#include "flows/bijector.h"
#include "flows/params.h"

typedef enum fg_base_kind {
  FG_BASE_NORMAL,  /* N(0, I) */
  FG_BASE_LEARNED, /* N(prior.mean, exp(prior.logstd)²), diagonal, both zero-initialised
                    * (Glow's learned top prior: a per-position mean and log-scale) */
  FG_BASE_CONDITIONAL, /* conditional flows: the learned prior plus a learned embedding of the
                        * context, N(prior.mean + c·prior.context_mean, exp(prior.logstd +
                        * c·prior.context_logstd)²), the context maps [n, latent numel] zero at
                        * init (openai/glow's ycond top prior, per position) */
} fg_base_kind;

/* Limits on sizes that may come from untrusted input (a checkpoint's metadata, a data file),
 * checked before anything is allocated (FG_E_LIMIT): the elements of one sample (a 3x2048x2048
 * image has 12.6 M), and by default the scalars of all parameters together (1 GiB of float32). */
#define FG_FLOW_MAX_EVENT (1LL << 24)
#define FG_FLOW_MAX_PARAMS (1LL << 28)
/* Upper bound on a context's features (class counts), far above any real one. */
#define FG_FLOW_MAX_CONTEXT 65536

typedef struct fg_flow_config {
  fg_base_kind base;
  fg_shape event;  /* per-sample shape of x (no batch axis): [2] for moons, [1, 28, 28] */
  fg_dtype dtype;  /* of the parameters and of every graph's x: FG_F32 (default) or FG_F64 */
  uint64_t seed;   /* parameter initialisation and the noise of stochastic layers */
  int64_t max_params; /* most parameter scalars the layers may create; 0: FG_FLOW_MAX_PARAMS */
  int64_t context; /* features of the context per sample (classes, for one-hot labels); 0: none */
} fg_flow_config;

typedef struct fg_flow fg_flow;
typedef struct fg_flow_updates fg_flow_updates; /* see "State updates" below */

/* A flow over x of per-sample shape `event`, float32.  Takes ownership of b (also on failure).
 * Builds the forward graph once (batch 2) to create every parameter and to learn the latent's
 * shape; a layer that does not fit the event fails here with the layer's message. */
fg_status fg_flow_new(fg_flow **out, fg_bijector *b, fg_base_kind base, fg_shape event,
                      uint64_t seed, fg_err *e);
fg_status fg_flow_new_config(fg_flow **out, fg_bijector *b, const fg_flow_config *cfg, fg_err *e);
void fg_flow_free(fg_flow *f);

fg_bijector *fg_flow_bijector(const fg_flow *f);
fg_params *fg_flow_params(const fg_flow *f);
const fg_flow_config *fg_flow_get_config(const fg_flow *f);
/* Per-sample shape of the top latent z (smaller than the event when layers factor out). */
fg_shape fg_flow_latent_shape(const fg_flow *f);
/* Elements per sample of x (D in bits/dim). */
int64_t fg_flow_dims(const fg_flow *f);
int fg_flow_num_params(const fg_flow *f);
int64_t fg_flow_num_scalars(const fg_flow *f); /* total parameter count */
/* Data-parallel training (flows/train/dist.h): training graphs built from now on (log-prob,
 * loss, recomputation's) compute batch statistics over the processes r sums over
 * (fg_flow_replicas), each process holding its part of the batch; NULL (the default) for a
 * single process.  r is borrowed.  Data-dependent initialisation never uses it. */
void fg_flow_set_replicas(fg_flow *f, const fg_reducer *r);
const fg_reducer *fg_flow_get_replicas(const fg_flow *f);

/* log p(x) per sample ([B]) for x [B, event...] of the flow's dtype.  training: batch-norm
 * layers use batch statistics.  Errors: the graph's (sticky) status, message on the graph. */
fg_status fg_flow_log_prob(fg_flow *f, fg_graph *g, fg_node x, bool training, fg_node *logp);
/* The pieces of log p(x): z = f(x) (top latent) and Σ log-dets ([B]). */
fg_status fg_flow_encode(fg_flow *f, fg_graph *g, fg_node x, bool training, fg_node *z,
                         fg_node *logdet);
/* log p_base(z) per sample for z [B, latent...]. */
fg_status fg_flow_base_log_prob(fg_flow *f, fg_graph *g, fg_node z, fg_node *logp);
/* n samples x = f⁻¹(z): z drawn from the base at `temperature` (its std multiplied by it;
 * 0 means 1), and factored-out parts drawn by their priors at the same temperature.  Evaluation
 * mode; `seed` fixes the draws (a program's rng offset varies them per run). */
fg_status fg_flow_sample(fg_flow *f, fg_graph *g, int64_t n, double temperature, uint64_t seed,
                         fg_node *x);
/* fg_flow_sample one top-level layer at a time, for finding where a sample leaves the float
 * range: steps[0] is the base draw z, steps[i] (i >= 1) the value after the inverse of the
 * i-th layer from the top, and the last step equals fg_flow_sample's x for the same arguments
 * bit for bit (the same draws in the same order).  names[i] is the layer's prefix ("1.exp"; "z"
 * for the base draw), borrowed from the flow.  At most cap steps: *n_steps is the number
 * written, or the number needed when cap is too small (then FG_E_MISUSE). */
fg_status fg_flow_sample_steps(fg_flow *f, fg_graph *g, int64_t n, double temperature,
                               uint64_t seed, int cap, fg_node *steps, const char **names,
                               int *n_steps);
/* f⁻¹(f(x)), the factored-out parts kept from the forward pass (evaluation mode): equal to x up
 * to rounding, which is what the round-trip tests measure. */
fg_status fg_flow_reconstruct(fg_flow *f, fg_graph *g, fg_node x, fg_node *x_again);

/* ---- conditional forms (see "Conditional flows" above): context [B, n], or FG_NONE ---- */
fg_status fg_flow_log_prob_cond(fg_flow *f, fg_graph *g, fg_node x, fg_node context, bool training,
                                fg_node *logp, fg_flow_updates **updates); /* updates may be NULL */
fg_status fg_flow_nll_loss_cond(fg_flow *f, fg_graph *g, fg_node x, fg_node context, bool training,
                                fg_node *loss, fg_flow_updates **updates);
/* n samples of x given their contexts (context [n, features]). */
fg_status fg_flow_sample_cond(fg_flow *f, fg_graph *g, int64_t n, fg_node context,
                              double temperature, uint64_t seed, fg_node *x);
fg_status fg_flow_sample_steps_cond(fg_flow *f, fg_graph *g, int64_t n, fg_node context,
                                    double temperature, uint64_t seed, int cap, fg_node *steps,
                                    const char **names, int *n_steps);
/* Features of the context per sample: config.context (0 for an unconditional flow). */
int64_t fg_flow_context_size(const fg_flow *f);
/* Class labels [N] (integers 0..classes-1, any dtype) as contexts: one-hot rows [N, classes]
 * in the flow's dtype, classes = config.context.  A label outside that range, or not an
 * integer, is FG_E_FORMAT naming its index.  *out is the caller's; NULL on failure. */
fg_status fg_flow_class_context(fg_tensor **out, const fg_flow *f, const fg_tensor *labels,
                                fg_err *e);

/* ---- every latent ----
 * A multi-scale flow factors parts of x out on the way to its top latent; together they are the
 * whole latent code of x, and x is a function of them.  Latent i < n-1 is what the i-th
 * factor-out layer (in forward order) removed; latent n-1 is the top latent z of
 * fg_flow_encode.  A single-scale flow has one latent, z.  Evaluation mode. */
int fg_flow_latent_count(const fg_flow *f);
/* Per-sample shape of latent i (no batch axis); a zero shape for i out of range. */
fg_shape fg_flow_latent_shape_at(const fg_flow *f, int i);
/* latents[0 .. fg_flow_latent_count) of x [B, event...] (each [B, latent i...]) and the Σ of
 * log-dets fg_flow_encode gives (logdet may be NULL).  context: FG_NONE or [B, features]. */
fg_status fg_flow_encode_latents(fg_flow *f, fg_graph *g, fg_node x, fg_node context,
                                 fg_node *latents, fg_node *logdet);
/* x [B, event...] from all its latents (each [B, latent i...], one B): the inverse of
 * fg_flow_encode_latents, to rounding. */
fg_status fg_flow_decode_latents(fg_flow *f, fg_graph *g, const fg_node *latents, fg_node context,
                                 fg_node *x);

/* State updates a training graph carries: values that parameters should take after a step
 * but that no gradient moves (batch-norm's running averages, recorded by the layers through
 * fg_flow_init_param).  Add the nodes to the training program's outputs, run, and hand the
 * outputs to fg_flow_updates_apply. */
int fg_flow_updates_count(const fg_flow_updates *u); /* 0 for NULL */
fg_node fg_flow_updates_node(const fg_flow_updates *u, int i);
const char *fg_flow_updates_name(const fg_flow_updates *u, int i); /* full parameter name */
/* Copies values[i] (the run's output for node i) into the store. */
fg_status fg_flow_updates_apply(fg_flow *f, const fg_flow_updates *u,
                                const fg_tensor *const *values, fg_err *e);
void fg_flow_updates_free(fg_flow_updates *u);
/* The requests a context has recorded so far, copied (NULL when there are none, and when
 * memory ran out, which sets *nomem): for builders that run the layers themselves
 * (flows/train/recompute_grads.c). */
fg_flow_updates *fg_flow_updates_from_ctx(fg_flow_ctx *c, bool *nomem);

/* fg_flow_log_prob that also returns the graph's state updates (*updates: NULL when the graph
 * has none; otherwise the caller frees it). */
fg_status fg_flow_log_prob_updates(fg_flow *f, fg_graph *g, fg_node x, bool training, fg_node *logp,
                                   fg_flow_updates **updates);
/* Mean of -log p(x) over the batch, in nats: the usual training loss ([] scalar).  updates may
 * be NULL (then batch-norm's running averages are not tracked). */
fg_status fg_flow_nll_loss(fg_flow *f, fg_graph *g, fg_node x, bool training, fg_node *loss,
                           fg_flow_updates **updates);
/* Gradients of `loss` with respect to every parameter, in store order (grads has
 * fg_flow_num_params entries).  A parameter the loss does not use gets zeros: so do
 * batch-norm's running averages, which an optimiser then leaves alone (give them no weight
 * decay: fg_optim_set_weight_decay). */
fg_status fg_flow_param_grads(fg_flow *f, fg_graph *g, fg_node loss, fg_node *grads);

/* Data-dependent initialisation (actnorm's): walks the layers in order; for each that asks
 * for one, it runs the layers before it on `batch` ([B, event...], any dtype; converted),
 * computes the requested values on that layer's input and writes them into the store, so
 * later layers see the initialised earlier ones.  Chains are walked into; an inverted
 * bijector is run as a whole and not initialised.  Runs in training mode.  Call once, before
 * training. */
fg_status fg_flow_data_init(fg_flow *f, const fg_tensor *batch, fg_err *e);
/* The same for a conditional flow: context [B, features] goes with the batch (NULL: none). */
fg_status fg_flow_data_init_cond(fg_flow *f, const fg_tensor *batch, const fg_tensor *context,
                                 fg_err *e);
/* The same, its programs compiled with opts (NULL: the defaults): a trainer's pool, say, and
 * `deterministic` where two processes must start from the same bits (the timed kernel choice
 * may pick other kernels in another process, whose results differ in the last bits). */
fg_status fg_flow_data_init_opts(fg_flow *f, const fg_tensor *batch, const fg_tensor *context,
                                 const fg_program_opts *opts, fg_err *e);

/* ---- bits per dimension ----
 * For data quantised to n_bins levels and scaled to [0, 1) (y = (x + u) / n_bins), a density
 * over y relates to the discrete likelihood by D·log n_bins, so
 *   bpd = (-log p(y) + D·ln n_bins) / (D·ln 2).
 * n_bins = 256 for 8-bit images; n_bins = 1 gives plain -log p / (D ln 2). */
double fg_bits_per_dim(double log_prob, int64_t dims, double n_bins);
/* The same per sample in a graph: logp [B] -> bpd [B]. */
fg_node fg_flow_bits_per_dim(fg_graph *g, fg_node logp, int64_t dims, double n_bins);

#endif
