/* Bijectors.  A bijector type is registered with its name, its constructor's typed argument
 * list and functions that build forward (x -> y, log|det dy/dx|) and inverse graphs.  A type
 * writes only graph expressions: the engine derives every gradient; a type that gives no
 * inverse log-det gets the negated forward log-det at the inverse point; a type that gives no
 * log-det at all gets one derived by the engine (ops/autodiff/jacobian.h): in O(D) from the
 * diagonal when the graph of its forward shows an elementwise or triangular (autoregressive,
 * coupling) Jacobian, else from the dense Jacobian by autodiff + slogdet, D VJPs and an LU per
 * sample, for event sizes up to FG_DERIVED_LOGDET_MAX_EVENT only.  Built-in types register
 * exactly as plugins do (flows/registry.h).
 *
 * Shapes: x is [batch, event...]; log-dets are [batch]; dtype follows x. */
#ifndef FG_BIJECTOR_H
#define FG_BIJECTOR_H

#include <stdbool.h>
#include <stdint.h>

#include "core/ir/graph.h"
#include "core/ir/op_attrs.h"
#include "flows/params.h"
#include "ops/autodiff/jacobian.h" /* derived log-dets, FG_DERIVED_LOGDET_MAX_EVENT */

#define FG_BIJECTOR_ABI_VERSION 1u
/* Most channels a layer that mixes channels with a C x C matrix accepts (reverse, shuffle,
 * permute, conv1x1, conv1x1_lu): 4096² doubles are 128 MiB.  More is FG_E_LIMIT. */
#define FG_MAX_MIX_CHANNELS 4096

/* ---- constructor arguments ---- */
typedef enum fg_arg_kind {
  FG_ARG_INT,    /* passed to the constructor as int64_t */
  FG_ARG_DOUBLE, /* double */
  FG_ARG_BOOL,   /* int (0 or 1) */
  FG_ARG_STRING, /* const char * (valid during the call only) */
  FG_ARG_INTS,   /* const fg_ints * (valid during the call only) */
} fg_arg_kind;

typedef struct fg_ints {
  int64_t n;
  const int64_t *v;
} fg_ints;

typedef struct fg_arg_spec {
  const char *name;
  fg_arg_kind kind;
  const char *default_text; /* as written in a spec ("64", "true", "[0, 1]"); NULL: required */
  const char *doc;
} fg_arg_spec;

/* A parsed argument value (frontends fill these from text; see flows/bijector_args.c). */
typedef struct fg_arg_value {
  fg_arg_kind kind;
  int64_t i;
  double d;
  const char *s;
  fg_ints ints;
} fg_arg_value;

/* ---- the build context handed to forward / inverse ---- */
typedef struct fg_flow_ctx fg_flow_ctx;

/* The graph being built. */
fg_graph *fg_flow_graph(fg_flow_ctx *c);
/* A parameter of the current bijector: `name` is local ("logs"); the full name is the
 * bijector's prefix + name ("3.actnorm.logs").  Created in the store with `init` on first use;
 * afterwards the same tensor, so forward and inverse (and every graph) share it. */
fg_node fg_flow_param(fg_flow_ctx *c, const char *name, fg_shape shape, fg_init init);
/* The current bijector's fixed tensors ("buffers", flows/params.h): n of them declared together
 * by local name and shape, created (float64, zero-filled) and filled by fill(ud, values) on the
 * first build when none exists, and afterwards read back from the store, so every graph of the
 * model, and a model loaded from a checkpoint, sees the same values whatever fill would compute.
 * values[i] gets decls[i]'s tensor (borrowed, read-only).  Graphs take a buffer's values when
 * they are built (as constants): load a checkpoint before building programs.  Returns the
 * graph's status; a failure (fill's, a check's, a stored shape that differs) becomes its error. */
typedef struct fg_buffer_decl {
  const char *name; /* local: "perm" -> "3.conv1x1_lu.perm" */
  fg_shape shape;
  fg_buffer_check check; /* NULL: any finite values */
} fg_buffer_decl;
typedef fg_status (*fg_buffer_fill)(void *ud, fg_tensor *const *values, fg_err *e);
fg_status fg_flow_buffers(fg_flow_ctx *c, int n, const fg_buffer_decl *decls, fg_buffer_fill fill,
                          void *ud, const fg_tensor **values);
/* True while building a training graph (batch-norm uses batch statistics then). */
bool fg_flow_training(const fg_flow_ctx *c);
/* In a training graph of a data-parallel job (flows/train/dist.h), the reducer that sums over
 * its processes, each holding a part of the global batch: statistics of the batch are over the
 * global batch when a layer sums its parts with it (fg_allreduce_sum).  NULL otherwise. */
const fg_reducer *fg_flow_replicas(const fg_flow_ctx *c);
/* Factor-out layers (split): forward pushes the part it removes, with its log-prob already
 * added to the log-det; an inverse that reconstructs pops it back; an inverse that samples
 * (fg_flow_sampling) draws it instead at temperature fg_flow_temperature. */
fg_status fg_flow_push_latent(fg_flow_ctx *c, fg_node z);
fg_node fg_flow_pop_latent(fg_flow_ctx *c); /* FG_POISON (graph error set) when empty */
int fg_flow_num_latents(const fg_flow_ctx *c);
bool fg_flow_sampling(const fg_flow_ctx *c);
double fg_flow_temperature(const fg_flow_ctx *c);
/* The context of a conditional flow: per-sample features [batch, n] that every layer of the
 * flow may read (a one-hot class label: flows/flow.h), or FG_NONE for an unconditional one.
 * Only types flagged FG_BIJ_CONTEXT read it; building one of them with no context fails naming
 * the layer.  A conditional type reads it in both directions, so its log-det and inverse keep
 * their form: log|det ∂y/∂x| at fixed context. */
fg_node fg_flow_context(const fg_flow_ctx *c);
/* A learned linear map of the context to one value per element of `shape` (the per-sample shape
 * of what it conditions): context [B, n] @ W [n, prod(shape)], reshaped to [B, shape...], in
 * the dtype of `like`.  W is the current bijector's parameter `name` [n, prod(shape)], zero at
 * initialisation (a conditional layer starts as its unconditional self).  With a one-hot class
 * label as the context, row k of W is class k's learned embedding.  FG_POISON (graph error set)
 * when there is no context. */
fg_node fg_flow_context_linear(fg_flow_ctx *c, const char *name, fg_shape shape, fg_node like);
/* A fresh seed for a random draw in this graph (distinct per call, fixed per graph). */
uint64_t fg_flow_next_seed(fg_flow_ctx *c);
/* Data-dependent initialisation: set parameter `name` (local) to the value of `value` (a node
 * of the init graph, same shape) — computed on a batch, before training. */
fg_status fg_flow_init_param(fg_flow_ctx *c, const char *name, fg_node value);

/* ---- a bijector type ---- */
typedef struct fg_bijector_type {
  uint32_t abi_version; /* FG_BIJECTOR_ABI_VERSION */
  const char *name;     /* unique in a registry: "affine_coupling" */
  const char *doc;      /* one line */
  int n_args;
  const fg_arg_spec *args;
  /* The constructor, called through libffi from the declared argument list as
   *   fg_status create(void **state, fg_err *e, <arg 0>, <arg 1>, ...)
   * with the C types given in fg_arg_kind.  Stored as a generic function pointer. */
  void (*create)(void);
  void (*destroy)(void *state); /* NULL: nothing to free */
  /* x -> y.  Sets *logdet to log|det dy/dx| per sample ([batch]) or FG_NONE to have the engine
   * derive it.  Returns the graph's status. */
  fg_status (*forward)(void *state, fg_flow_ctx *c, fg_node x, fg_node *y, fg_node *logdet);
  /* y -> x, with *logdet = log|det dx/dy| or FG_NONE (the negated forward log-det at x). */
  fg_status (*inverse)(void *state, fg_flow_ctx *c, fg_node y, fg_node *x, fg_node *logdet);
  /* Optional: data-dependent initialisation from a batch x at this layer's input (actnorm):
   * calls fg_flow_init_param for the parameters it sets. */
  fg_status (*data_init)(void *state, fg_flow_ctx *c, fg_node x);
  /* For verification (fg_bijector_check) and docs: an event shape this type accepts (without
   * the batch axis), constructor arguments for it as spec text ("hidden=8"), and the input
   * domain [check_lo, check_hi] (e.g. (0, 1) for logit). */
  fg_shape check_event;
  const char *check_args;
  double check_lo, check_hi;
  /* FG_BIJ_* flags */
  uint32_t flags;
} fg_bijector_type;

enum {
  FG_BIJ_FACTOR_OUT = 1u << 0, /* removes dimensions (split): round trips need the latents */
  FG_BIJ_STOCHASTIC = 1u << 1, /* forward draws noise (dequantisation) */
  FG_BIJ_CONTEXT = 1u << 2, /* conditional: reads fg_flow_context (required) in both directions */
};

/* ---- instances ----
 * Ownership.  Every call that makes a bijector sets *out to NULL when it fails.  A type's
 * constructor that fails leaves nothing behind (its state is destroyed).  fg_bijector_chain and
 * fg_bijector_invert take ownership of the bijectors they are given whether they succeed or
 * not: on failure they free them, so a caller writes `st = fg_bijector_chain(&c, n, v, e);` and
 * frees neither the children nor (after a failure) anything else; only the array `children`
 * itself stays the caller's.  A bijector borrows its type: a plugin's types must stay loaded
 * (their registry alive) while any bijector of them lives. */
typedef struct fg_bijector fg_bijector;

/* Calls t's constructor through libffi with values matched to t->args (flows/bijector_create.c). */
fg_status fg_bijector_new(fg_bijector **out, const fg_bijector_type *t, const fg_arg_value *values,
                          fg_err *e);
/* Parses "hidden=8, mask=checkerboard" against t->args (defaults filled in, unknown names,
 * missing required ones and bad values rejected naming the argument), then fg_bijector_new.
 * The grammar: flows/bijector_args.c. */
fg_status fg_bijector_new_from_text(fg_bijector **out, const fg_bijector_type *t, const char *args,
                                    fg_err *e);
/* Composition: y = b[n-1](...b[0](x)) for b = children[0..n) (n >= 0; 0 is the identity).
 * Takes ownership of the children, also on failure (see above).  FG_E_MISUSE for n < 0,
 * children NULL with n > 0, or a NULL child (the others are freed). */
fg_status fg_bijector_chain(fg_bijector **out, int n, fg_bijector **children, fg_err *e);
/* Swaps forward and inverse.  Takes ownership of child, also on failure.  FG_E_MISUSE for a NULL
 * child. */
fg_status fg_bijector_invert(fg_bijector **out, fg_bijector *child, fg_err *e);
void fg_bijector_free(fg_bijector *b);

const fg_bijector_type *fg_bijector_type_of(const fg_bijector *b); /* NULL for chain/invert */
/* The parameter-name prefix of b (set by fg_bijector_set_prefix; chains number children). */
const char *fg_bijector_prefix(const fg_bijector *b);
fg_status fg_bijector_set_prefix(fg_bijector *b, const char *prefix, fg_err *e);

/* Walking compositions (a flow's data-init pass goes layer by layer). */
int fg_bijector_num_children(const fg_bijector *b); /* chain: its length; otherwise 0 */
fg_bijector *fg_bijector_child(const fg_bijector *b, int i);
bool fg_bijector_is_inverted(const fg_bijector *b);
/* The layers of b in forward order, chains opened (anything else, a leaf or an inversion, is
 * one layer): *out gets an array of *n pointers borrowed from b, which the caller free()s.  On
 * failure *out is NULL and *n 0. */
fg_status fg_bijector_leaves(fg_bijector ***out, int *n, fg_bijector *b, fg_err *e);
/* Runs b's data-dependent initialisation at input x (a leaf whose type has data_init; no-op
 * otherwise): the requests land in c (fg_flow_ctx_num_inits ...). */
fg_status fg_bijector_data_init(fg_bijector *b, fg_flow_ctx *c, fg_node x);

/* Builds y = f(x) and log|det| ([batch], FG_NONE never: derived when the type gives none). */
fg_status fg_bijector_forward(fg_bijector *b, fg_flow_ctx *c, fg_node x, fg_node *y,
                              fg_node *logdet);
fg_status fg_bijector_inverse(fg_bijector *b, fg_flow_ctx *c, fg_node y, fg_node *x,
                              fg_node *logdet);

/* ---- contexts ---- */
typedef struct fg_flow_ctx_opts {
  fg_dtype dtype;         /* of the parameters the bijectors create (F32 = 0 by default) */
  bool training;
  bool sampling;          /* inverse draws factored-out latents instead of popping them */
  double temperature;     /* 0 means 1 */
  uint64_t seed;
  bool params_as_inputs;  /* parameters become graph inputs (for gradchecking w.r.t. them) */
  const fg_reducer *replicas; /* training across processes: fg_flow_replicas (borrowed) */
} fg_flow_ctx_opts;

/* A context for building into g (borrowed, as ps is); o may be NULL (defaults). */
fg_status fg_flow_ctx_new(fg_flow_ctx **out, fg_graph *g, fg_params *ps, const fg_flow_ctx_opts *o,
                          fg_err *e);
/* A new graph in *g and a context for building into it: how a graph built layer by layer
 * starts.  On failure neither exists (*out and *g are NULL).  Free the context, then the graph. */
fg_status fg_flow_ctx_new_graph(fg_flow_ctx **out, fg_graph **g, fg_params *ps,
                                const fg_flow_ctx_opts *o, fg_err *e);
void fg_flow_ctx_free(fg_flow_ctx *c);
/* The data-dependent initialisation requests recorded by fg_flow_init_param. */
int fg_flow_ctx_num_inits(const fg_flow_ctx *c);
const char *fg_flow_ctx_init_name(const fg_flow_ctx *c, int i); /* full parameter name */
fg_node fg_flow_ctx_init_value(const fg_flow_ctx *c, int i);
/* Parameters created as graph inputs (params_as_inputs), in creation order. */
int fg_flow_ctx_num_param_nodes(const fg_flow_ctx *c);
fg_node fg_flow_ctx_param_node(const fg_flow_ctx *c, int i);
const char *fg_flow_ctx_param_name(const fg_flow_ctx *c, int i);
/* Makes fg_flow_param return `n` for the parameter with this full name (instead of a graph
 * parameter): how a gradient check feeds parameters as perturbable inputs. */
fg_status fg_flow_ctx_override_param(fg_flow_ctx *c, const char *full_name, fg_node n);
/* Sets the context the layers built in c see (FG_NONE, the default, for none): a node of c's
 * graph of shape [batch, n]. */
void fg_flow_ctx_set_context(fg_flow_ctx *c, fg_node context);
/* Sets the prefix that fg_flow_param prepends (bijectors do this for their children). */
fg_status fg_flow_ctx_set_prefix(fg_flow_ctx *c, const char *prefix);
const char *fg_flow_ctx_prefix(const fg_flow_ctx *c);
/* How the forward log-dets of the leaf bijectors built in c so far came about. */
typedef struct fg_logdet_sources {
  int declared;             /* given by the type */
  int diagonal, triangular; /* derived by the engine in O(D) from the structure it found */
  int dense;                /* derived from the dense Jacobian: D VJPs and an LU per sample */
} fg_logdet_sources;
fg_logdet_sources fg_flow_ctx_logdet_sources(const fg_flow_ctx *c);

#endif
