/* The flow-spec language: a small text format describing a model and how to train it.
 *
 *   # Glow on Fashion-MNIST                      comments start with #
 *   data fashion-mnist                           what to train on (see fg_spec.data)
 *   prior learned                                normal | learned (diagonal Gaussian) |
 *                                                conditional (needs `classes`)
 *   flow                                         the bijector, one layer per line
 *     levels 2                                   a multi-scale level, repeated; a `split`
 *       squeeze                                  inside is left out at the last level
 *       repeat 8                                 a block repeated N times
 *         actnorm
 *         conv1x1_lu
 *         affine_coupling mask=channel, parity=0, net=glow, hidden=128, scale=sigmoid
 *       end
 *       split
 *     end
 *   end
 *   train                                        settings, `key value` per line
 *     batch 64
 *     lr 1e-3
 *     warmup 200                                 linear warm-up, then the schedule:
 *     schedule cosine                            constant | cosine (to lr_min at decay_steps,
 *     lr_min 1e-5                                default the steps) | step (x gamma every
 *                                                step_every steps), flows/train/optim.h
 *     recompute true                             memory flat in depth (flows/train/trainer.h)
 *   end
 *
 * A layer line is a registered bijector type followed by its arguments as `name=value` pairs
 * (separated by commas or spaces; lists as [1, 2, 3]); types and arguments are resolved through
 * the registry and each constructor is called through libffi, so a plugin's types work in a
 * spec with no glue.  `{i}` in an argument value is replaced by the repeat index (0-based) and
 * `{i%2}` by its parity, for alternating masks.  Errors name file:line:column, what was found
 * and what was expected.
 *
 * Limits (a spec may come from an untrusted checkpoint): the flow expands to at most
 * FG_SPEC_MAX_LAYERS layers, counted (repeat counts multiplied, overflow-checked) before any is
 * built (FG_E_LIMIT); a flow of no layers is an error.  Train settings are checked where they
 * are written: integers >= 0 (batch and max_nonfinite >= 1, n_bits 1..8), numbers finite, lr > 0,
 * ema in [0, 1), clip, minutes, temperature and recompute_tol >= 0.
 *
 * Class-conditional models.  A top-level line `classes N` makes the model conditional on the
 * data's class labels (0..N-1, one-hot as the flow's context: flows/flow.h): conditional layer
 * types (cond_affine_coupling, cond_additive_coupling, cond_split: `flowgrad list`) see the
 * label, and `prior conditional` gives the top latent a learned per-class mean and log-std.
 * examples/cond-glow-fmnist.flow is a class-conditional Glow.  `levels` leaves out every
 * factor-out layer (split, cond_split) at its last level. */
#ifndef FG_SPEC_H
#define FG_SPEC_H

#include "flows/registry.h"
#include "flows/train/trainer.h"

/* Most layers a flow may expand to. */
#define FG_SPEC_MAX_LAYERS 10000

/* Where a top-level line or a train setting was written (fg_spec_where). */
typedef struct fg_spec_place {
  char key[32];
  int line, col;
} fg_spec_place;

typedef struct fg_spec {
  char *path;
  char *data;     /* "fashion-mnist", "mnist:<dir>", "cifar10:<dir>", "npy:<file>", "moons", ... */
  char *prior;    /* "normal", "learned" or "conditional" */
  int64_t classes; /* `classes N`: class-conditional on labels 0..N-1; 0: unconditional */
  fg_bijector *flow;
  fg_train_settings train;
  /* The plugins whose types the flow uses, one "<type>=<plugin path>" line each (the path made
   * absolute where it can be); NULL when it uses built-in types only.  A checkpoint records it,
   * so a command loading one can say which plugin to pass. */
  char *plugins;
  fg_spec_place places[24]; /* 'data', 'prior' and each train setting written, by key */
  int n_places;
} fg_spec;

/* Parses text (path is only used in messages); the flow's types come from r (borrowed: a
 * plugin's types must stay loaded while the flow lives).  On failure *out is NULL and nothing
 * is left to free.  The spec owns its flow: to keep the bijector after fg_spec_free, take it
 * (b = s->flow; s->flow = NULL), as a caller handing it to fg_flow_new does. */
fg_status fg_spec_parse(fg_spec **out, const char *text, const char *path, const fg_registry *r,
                        fg_err *e);
/* "<file>:<line>:<column>" of the value of `key` (a train setting such as "batch", or "data",
 * "prior") in buf, for errors found after parsing (a batch larger than the data set); "<file>"
 * when the spec leaves key at its default.  Returns buf. */
const char *fg_spec_where(const fg_spec *s, const char *key, char *buf, size_t cap);
/* fg_spec_read_file, then fg_spec_parse. */
fg_status fg_spec_load(fg_spec **out, const char *path, const fg_registry *r, fg_err *e);
/* The text of a spec file (at most 16 MiB, no NUL byte), owned by the caller (free()). */
fg_status fg_spec_read_file(char **out, const char *path, fg_err *e);
void fg_spec_free(fg_spec *s);
/* The flow configuration the spec describes for data of per-sample shape `event`: its prior,
 * its context (classes), the training seed as initialisation seed, float32. */
fg_flow_config fg_spec_flow_config(const fg_spec *s, fg_shape event);

#endif
