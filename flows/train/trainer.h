/* Training a flow: the loop a `flowgrad train` runs, as a library.
 *
 * Data.  Images are integer levels 0..255 ([N, C, H, W] float tensors); with n_bits < 8 they are
 * first reduced to 2^n_bits levels (Glow's n_bits_x).  Each step dequantises its batch inside
 * the graph, y = (x + u) / 2^n_bits with u ~ U[0, 1) drawn from the counter-based RNG at
 * (seed, step, element of the batch), so the noise is fresh every step and identical when a
 * run is resumed.
 * Continuous data (2-D toys, .npy floats) is used as it is.
 *
 * Loss and units.  The loss is the batch mean of -log p(y) in nats; images report bits/dim
 *   bpd = (-log p(y) + D·ln 2^n_bits) / (D·ln 2),
 * exact whatever bijectors the flow has (a logit pre-processing layer's log-det is in log p).
 * Toy data reports nats.
 *
 * Order and resume.  Batch k of epoch e is rows perm_e[k·B, (k+1)·B) of a permutation drawn from
 * (seed, e); the step counter alone says where a run is, so a checkpoint holds parameters,
 * optimiser moments, EMA weights and the step, and resuming continues exactly (same batches,
 * same noise, same updates).  A conditional flow's labels are gathered from the same rows.
 *
 * Conditional flows.  The training program has a second input, "context" [B, classes]: the
 * batch's labels one-hot.  Recompute mode does not take a context yet (refused).
 *
 * EMA weights (ema > 0).  An exponential moving average of the weights, for evaluation and
 * sampling; update n uses the decay min(ema, (1 + n) / (10 + n)) (TensorFlow's
 * ExponentialMovingAverage with num_updates), so the average starts from the first trained
 * weights rather than holding ema^n of the initial ones.  It helps when the weights still jitter
 * at the end of training (a constant or slowly decaying learning rate): it averages about the
 * last 1 / (1 - ema) steps.  With a schedule that decays to a small rate the last weights are
 * already that average and EMA changes little; 1 / (1 - ema) should stay well below the steps.
 *
 * Data-parallel training (fg_trainer_new_dist, flows/train/dist.h).  Each of the job's N
 * processes holds all the data and trains on its shard of every global batch: rows
 * [r·B/N, (r+1)·B/N) of it for rank r (B must be a multiple of N), with exactly the noise one
 * process would draw for them.  The loss is the mean of the shards' means and the gradients
 * their mean, summed in a fixed order (fg_dist_sum), so every process applies the same update
 * (global-norm clipping, warm-up, EMA included) and the replicas stay identical; a run is
 * bit-identical from one run to the next for a given N and equal to the one-process run up to
 * float rounding.  Batch-norm normalises with the global batch's statistics (the flow's
 * replicas).  Data-dependent initialisation and the round-trip check run on the whole global
 * batch in every process, and rank 0's initialised weights are broadcast.  The non-finite
 * guard decides on the global loss and gradient norm, so all processes skip together, and the
 * layer named is the first over all shards.  Evaluation is split by chunks of the test set
 * and exact.  A failure inside a step is agreed on: every process returns an error (the
 * failed one its own); only a failure inside a training program that exchanges batch
 * statistics cannot be, and marks the job broken (fg_dist_broken).
 *
 * Non-finite guard.  A step whose loss or gradient norm is not finite is skipped (no update);
 * the first top-level layer whose output or log-det went non-finite is named; after
 * max_nonfinite skipped steps in a row the step returns FG_E_NUMERIC.
 *
 * Memory flat in depth (recompute = true).  The training program keeps no layer's activations
 * from the forward to the backward pass: each layer rebuilds its input from its output through
 * its inverse when the backward pass reaches it (flows/train/recompute.h), so peak memory stays
 * about one layer's whatever the depth, for roughly one more forward pass of compute.  The
 * gradients are the stored mode's up to rounding.  Layers that cannot be inverted from their output
 * in training mode keep their activations.  On the first step of a session (after data-dependent
 * initialisation) and every recompute_check steps, each recomputed layer's round trip is
 * checked on the current batch; a layer whose relative error exceeds recompute_tol keeps its
 * activations from then on (the program is rebuilt), reported in the step's
 * recompute_fallbacks and by fg_trainer_recompute. */
#ifndef FG_TRAINER_H
#define FG_TRAINER_H

#include <stdbool.h>
#include <stdint.h>

#include "core/runtime/program.h"
#include "flows/flow.h"
#include "flows/train/dist.h"
#include "flows/train/optim.h"
#include "flows/train/recompute.h"

typedef struct fg_train_settings {
  int64_t batch;        /* 64 */
  int64_t steps;        /* 0: until `minutes` */
  double minutes;       /* 0: until `steps` */
  double lr;            /* 1e-3 */
  int64_t warmup;       /* steps of linear warm-up, 0 */
  char schedule[16];    /* after warm-up: constant | cosine | step (flows/train/optim.h) */
  double lr_min;        /* cosine: the rate it ends at, 0 */
  int64_t decay_steps;  /* cosine: the step it ends at; 0 = `steps` */
  int64_t step_every;   /* step: steps between decays */
  double gamma;         /* step: the factor of each decay, 0.1 */
  double clip;          /* global gradient-norm clip, 0 = off */
  double ema;           /* Polyak decay for evaluation weights, 0 = off (below) */
  char optimizer[16];   /* adam | adamax | sgd */
  int64_t n_bits;       /* 8; fewer bits reduce the data first (Glow's n_bits_x) */
  int64_t seed;         /* 0 */
  int64_t eval_every;   /* steps between test evaluations, 0 = at the end only */
  int64_t max_nonfinite;/* consecutive skipped steps before giving up, 10 */
  double temperature;   /* for samples, 0.7 */
  bool recompute;       /* rebuild activations through inverses in the backward pass, false */
  double recompute_tol; /* round-trip relative error above which a layer keeps them, 1e-4 */
  int64_t recompute_check; /* steps between round-trip checks, 0 = the first step only */
} fg_train_settings;

/* Defaults for every setting. */
fg_train_settings fg_train_defaults(void);

typedef struct fg_trainer_data {
  const fg_tensor *train;  /* [N, event...] */
  const fg_tensor *test;   /* [M, event...], may be NULL */
  bool discrete;           /* integer levels 0..255 (images): dequantise, report bits/dim */
  /* Class labels [N] and [M] (0..classes-1): required by a conditional flow (config.context =
   * classes), which sees each sample's label one-hot as its context; ignored otherwise.  They
   * follow their samples through shuffling, batching and resuming. */
  const fg_tensor *train_labels, *test_labels;
} fg_trainer_data;

typedef struct fg_train_step_info {
  int64_t step;          /* steps taken, skipped ones included */
  double loss;           /* this batch, in the trainer's unit (fg_trainer_unit) */
  double grad_norm;
  double lr;
  bool skipped;          /* non-finite: no update was made */
  char bad_layer[160];   /* for a skipped step: the first layer that produced a non-finite value */
  int recompute_fallbacks; /* layers that this step's round-trip check made keep their activations
                            */
} fg_train_step_info;

typedef struct fg_trainer fg_trainer;

/* A trainer for flow f (borrowed; its parameters are updated in place).  Copies the data it
 * keeps (reduced to n_bits levels).  n_threads 0: FG_THREADS or the online cores.  On failure
 * *out is NULL and f is as it was. */
fg_status fg_trainer_new(fg_trainer **out, fg_flow *f, const fg_train_settings *s,
                         const fg_trainer_data *data, int n_threads, fg_err *e);
/* The same for one process of a data-parallel job (dist borrowed, must outlive the trainer;
 * NULL is fg_trainer_new).  Every process calls it with the same flow, settings and data, and
 * then every fg_trainer_step, fg_trainer_evaluate, fg_trainer_save and fg_trainer_load in the
 * same order.  Sets f's replicas (fg_flow_set_replicas) until fg_trainer_free. */
fg_status fg_trainer_new_dist(fg_trainer **out, fg_flow *f, const fg_train_settings *s,
                              const fg_trainer_data *data, int n_threads, fg_dist *dist, fg_err *e);
void fg_trainer_free(fg_trainer *t);
/* One step (the first one runs the data-dependent initialisation on its batch). */
fg_status fg_trainer_step(fg_trainer *t, fg_train_step_info *info, fg_err *e);
/* Mean loss over the test set (in the trainer's unit), with EMA weights when ema > 0 and a
 * fixed dequantisation noise, so two evaluations of the same weights agree exactly. */
fg_status fg_trainer_evaluate(fg_trainer *t, double *mean, fg_err *e);
/* Evaluation in parts, for a caller that shows progress, bounds its time or wants a subset. */
typedef struct fg_eval_opts {
  int64_t max_rows; /* the first max_rows test rows (0: all) */
  /* Called after each batch with the rows done and the rows to do; returning false stops there
   * (the mean is then over the rows done).  May be NULL. */
  bool (*progress)(void *ud, int64_t done, int64_t total);
  void *ud;
} fg_eval_opts;
/* fg_trainer_evaluate over the rows o selects (o may be NULL: all); *rows (may be NULL) gets the
 * rows the mean is over.  FG_E_ABORTED when progress stopped it before the first batch was done.
 * In a data-parallel job every process calls it with the same max_rows: the processes evaluate
 * one batch each per round, progress is called after each round on each process, and all of
 * them stop after the round where any progress returned false. */
fg_status fg_trainer_evaluate_opts(fg_trainer *t, const fg_eval_opts *o, double *mean,
                                   int64_t *rows, fg_err *e);
const char *fg_trainer_unit(const fg_trainer *t); /* "bits/dim" or "nats" */
int64_t fg_trainer_step_count(const fg_trainer *t);
int64_t fg_trainer_batch(const fg_trainer *t);
/* Rows of the training (or test) data the trainer keeps: its own copy, so the caller may free
 * the tensors it passed in once fg_trainer_new returns. */
int64_t fg_trainer_data_rows(const fg_trainer *t, bool test);
/* Saving a trainer and resuming it: flows/train/checkpoint.h. */

/* Puts the EMA weights (if any) into the flow's parameters, for sampling after training. */
void fg_trainer_use_ema(fg_trainer *t);
/* With recompute: the layers ("blocks") and which of them rebuild their activations; NULL
 * otherwise.  Borrowed. */
const fg_recompute *fg_trainer_recompute(const fg_trainer *t);
/* The training program's compile statistics (planned peak bytes of intermediate values...). */
const fg_program_stats *fg_trainer_program_stats(const fg_trainer *t);
/* The per-op profile of the training program (FG_PROFILE=1), into buf. */
const char *fg_trainer_profile(const fg_trainer *t, char *buf, size_t cap);

#endif
