/* The training loop (see trainer.h for what it guarantees). */
#include "flows/train/trainer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/ir/op.h"
#include "core/runtime/program.h"
#include "core/rng.h"
#include "flows/train/trainer_internal.h"
#include "ops/ops.h"

enum { EVAL_RNG_OFFSET = 1u << 30 }; /* evaluation noise: far from any training step's */

fg_train_settings fg_train_defaults(void) {
  fg_train_settings t = {.batch = 64,
                         .lr = 1e-3,
                         .n_bits = 8,
                         .max_nonfinite = 10,
                         .temperature = 0.7,
                         .recompute_tol = 1e-4,
                         .gamma = 0.1};
  snprintf(t.optimizer, sizeof t.optimizer, "adam");
  snprintf(t.schedule, sizeof t.schedule, "constant");
  return t;
}

const char *fg_trainer_unit(const fg_trainer *t) { return t->discrete ? "bits/dim" : "nats"; }
int64_t fg_trainer_step_count(const fg_trainer *t) { return t->step; }
int64_t fg_trainer_data_rows(const fg_trainer *t, bool test) {
  return test ? t->n_test : t->n_train;
}
int64_t fg_trainer_batch(const fg_trainer *t) { return t->batch; }

static fg_shape batch_shape(const fg_flow *f, int64_t b) {
  fg_shape ev = fg_flow_get_config(f)->event, s = ev;
  s.ndim = ev.ndim + 1;
  s.d[0] = b;
  for (int i = 0; i < ev.ndim; i++) s.d[i + 1] = ev.d[i];
  return s;
}

/* Levels 0..255 reduced to 2^n_bits levels (floor), or the values as they are; with their labels
 * for a conditional flow. */
static fg_status prepare_data(fg_trainer *t, const fg_tensor *src, const fg_tensor *labels,
                              fg_train_data *dst, const char *what, fg_err *e) {
  fg_shape ev = fg_flow_get_config(t->f)->event;
  if (src->shape.ndim != ev.ndim + 1)
    return fg_err_set(e, FG_E_SHAPE, "%s data must be [N, event...]", what);
  for (int i = 0; i < ev.ndim; i++)
    if (src->shape.d[i + 1] != ev.d[i]) {
      char a[128], b[128];
      return fg_err_set(e, FG_E_SHAPE, "%s data has samples of shape %s but the flow's event is %s",
                        what, fg_shape_str(&src->shape, a, sizeof a),
                        fg_shape_str(&ev, b, sizeof b));
    }
  return fg_train_data_init(dst, src, labels, t->classes, t->discrete, t->s.n_bits,
                            fg_flow_get_config(t->f)->dtype, what, e);
}

/* The seed of the training noise u ~ U[0, 1): element i of step k's global batch draws
 * fg_rng_uniform(NOISE_SEED, ((k + 1) << 40) + i), as a random_uniform node of the whole batch
 * would in a program run at rng offset k + 1 (ops/source.c), so each process draws exactly
 * its shard's share of the one-process noise. */
static uint64_t noise_seed(const fg_trainer *t) { return (uint64_t)t->s.seed * 7919u + 1; }

/* y = (x + u) / bins inside the graph for images, u an input (the step's noise) or, with
 * u == FG_NONE, drawn in the graph (evaluation); x itself otherwise. */
static fg_node model_input(const fg_trainer *t, fg_graph *g, fg_node x, fg_node u) {
  if (!t->discrete) return x;
  if (u == FG_NONE)
    u = fg_random_uniform(g, noise_seed(t), 0.0, 1.0, fg_node_dtype(g, x), fg_node_shape(g, x));
  return fg_mul_scalar(g, fg_add(g, x, u), 1.0 / t->n_bins);
}

/* The "context" input of a graph over a batch of n (conditional flows; FG_NONE otherwise). */
static fg_node context_input(const fg_trainer *t, fg_graph *g, int64_t n) {
  if (!t->classes) return FG_NONE;
  return fg_input(g, "context", fg_flow_get_config(t->f)->dtype, fg_shape2(n, t->classes));
}

/* How the trainer's programs are compiled: on its pool; in a data-parallel job without timed
 * kernel choices, so that every rank, and every run of the job, computes with the same kernels
 * (a choice timed in each process may differ between them in the last bits: README, "Kernels"). */
static fg_program_opts program_opts(const fg_trainer *t) {
  return (fg_program_opts){.pool = t->pool, .deterministic = fg_dist_size(t->dist) > 1};
}

/* The training batch's noise input (images), FG_NONE otherwise. */
static fg_node noise_input(const fg_trainer *t, fg_graph *g) {
  return t->u ? fg_input(g, "u", t->u->dtype, t->u->shape) : FG_NONE;
}

/* Programs' rng offset at the current step: step + 1 for one process; in a job, distinct per
 * process (for layers that draw noise themselves). */
static uint64_t rng_offset(const fg_trainer *t) {
  uint64_t ranks = (uint64_t)fg_dist_size(t->dist), rank = (uint64_t)fg_dist_rank(t->dist);
  return (uint64_t)(t->step + 1) * ranks + rank;
}

/* Binds the current batch (its noise and labels too) to p. */
static fg_status bind_batch(const fg_trainer *t, fg_program *p, fg_err *e) {
  fg_status st = fg_program_bind(p, "x", t->x, e);
  if (st == FG_OK && t->u) st = fg_program_bind(p, "u", t->u, e);
  if (st == FG_OK && t->context) st = fg_program_bind(p, "context", t->context, e);
  return st;
}

/* Loss and parameter gradients (outs[0], outs[1..]): block by block in recompute mode. */
static fg_status loss_and_grads(fg_trainer *t, fg_node x, fg_node *outs) {
  fg_node in = model_input(t, t->g, x, noise_input(t, t->g));
  fg_node context = context_input(t, t->g, t->shard);
  if (t->rc) return fg_recompute_loss_grads(t->rc, t->g, in, &outs[0], outs + 1, &t->updates);
  if (fg_flow_nll_loss_cond(t->f, t->g, in, context, true, &outs[0], &t->updates) != FG_OK)
    return fg_graph_status(t->g);
  return fg_flow_param_grads(t->f, t->g, outs[0], outs + 1);
}

/* The training graph and program (x already allocated). */
static fg_status build_training(fg_trainer *t, fg_err *e) {
  fg_status st = fg_graph_new(&t->g, e);
  if (st != FG_OK) return st;
  fg_node x = fg_input(t->g, "x", fg_flow_get_config(t->f)->dtype, t->x->shape);
  t->n_params = fg_flow_num_params(t->f);
  fg_node *outs = malloc(sizeof *outs * (size_t)(1 + t->n_params));
  if (!outs) return fg_err_set(e, FG_E_NOMEM, "out of memory");
  st = loss_and_grads(t, x, outs);
  int n_up = fg_flow_updates_count(t->updates), n_out = 1 + t->n_params + n_up;
  fg_node *all = st == FG_OK ? realloc(outs, sizeof *outs * (size_t)n_out) : outs;
  if (all) outs = all;
  else st = FG_E_NOMEM;
  for (int i = 0; st == FG_OK && i < n_up; i++)
    outs[1 + t->n_params + i] = fg_flow_updates_node(t->updates, i);
  if (st != FG_OK) {
    free(outs);
    return fg_err_set(e, st, "building the training graph: %s",
                      fg_graph_status(t->g) != FG_OK ? fg_graph_errmsg(t->g) : fg_status_str(st));
  }
  fg_program_opts po = program_opts(t);
  st = fg_program_new_opts(&t->prog, t->g, n_out, outs, &po, e);
  free(outs);
  if (st == FG_OK) st = fg_params_bind(fg_flow_params(t->f), t->prog, e);
  if (st == FG_OK) st = bind_batch(t, t->prog, e);
  for (fg_node n = 0; n < fg_graph_node_count(t->g); n++)
    t->graph_collectives = t->graph_collectives || fg_node_op(t->g, n) == FG_OP_ALLREDUCE_SUM;
  return st;
}

/* After blocks fell back to stored activations, or the buffers changed: the same program again. */
fg_status fg__trainer_rebuild(fg_trainer *t, fg_err *e) {
  fg_program_free(t->prog);
  fg_graph_free(t->g);
  fg_flow_updates_free(t->updates);
  t->prog = NULL, t->g = NULL, t->updates = NULL;
  return build_training(t, e);
}

static fg_status make_optimiser(fg_trainer *t, fg_err *e) {
  fg_optim_kind kind;
  fg_status st = fg_optim_kind_parse(t->s.optimizer, &kind, e);
  if (st != FG_OK) return st;
  fg_optim_config c = fg_optim_defaults(kind);
  c.lr = t->s.lr;
  c.clip_norm = t->s.clip;
  c.warmup_steps = t->s.warmup;
  st = fg_lr_schedule_parse(t->s.schedule, &c.schedule, e);
  if (st != FG_OK) return st;
  c.decay_steps = t->s.decay_steps ? t->s.decay_steps : t->s.steps;
  c.lr_min = t->s.lr_min, c.step_every = t->s.step_every, c.gamma = t->s.gamma;
  st = fg_optim_new_for_params(&t->opt, &c, fg_flow_params(t->f), e);
  if (st != FG_OK || t->s.ema <= 0) return st;
  fg_params *ps = fg_flow_params(t->f);
  t->ema = calloc((size_t)t->n_params + 1, sizeof *t->ema);
  if (!t->ema) return fg_err_set(e, FG_E_NOMEM, "out of memory");
  for (int i = 0; st == FG_OK && i < t->n_params; i++)
    st = fg_tensor_copy(&t->ema[i], fg_params_tensor(ps, i), fg_params_tensor(ps, i)->dtype, e);
  return st;
}

static fg_status check_settings(const fg_flow *f, const fg_train_settings *s,
                                const fg_trainer_data *d, fg_err *e) {
  if (s->batch < 1) return fg_err_set(e, FG_E_MISUSE, "batch must be >= 1");
  if (s->n_bits < 1 || s->n_bits > 8)
    return fg_err_set(e, FG_E_MISUSE, "n_bits must be 1..8, got %lld", (long long)s->n_bits);
  if (!d || !d->train || d->train->shape.ndim < 1)
    return fg_err_set(e, FG_E_MISUSE, "no training data");
  if (d->train->shape.d[0] < s->batch)
    return fg_err_set(e, FG_E_MISUSE,
                      "the training set has %lld samples, fewer than one batch of %lld",
                      (long long)d->train->shape.d[0], (long long)s->batch);
  if (s->ema < 0 || s->ema >= 1)
    return fg_err_set(e, FG_E_MISUSE, "ema must be in [0, 1), got %g", s->ema);
  if (isnan(s->recompute_tol)) return fg_err_set(e, FG_E_MISUSE, "recompute_tol must be a number");
  if (s->recompute && fg_flow_context_size(f) > 0)
    return fg_err_set(e, FG_E_MISUSE,
                      "recompute mode does not take a conditional flow's context yet");
  if (s->recompute_check < 0)
    return fg_err_set(e, FG_E_MISUSE, "recompute_check must be >= 0, got %lld",
                      (long long)s->recompute_check);
  return FG_OK;
}

fg_status fg_trainer_new(fg_trainer **out, fg_flow *f, const fg_train_settings *s,
                         const fg_trainer_data *data, int n_threads, fg_err *e) {
  return fg_trainer_new_dist(out, f, s, data, n_threads, NULL, e);
}

fg_status fg_trainer_new_dist(fg_trainer **out, fg_flow *f, const fg_train_settings *s,
                              const fg_trainer_data *data, int n_threads, fg_dist *dist,
                              fg_err *e) {
  *out = NULL;
  fg_status st = check_settings(f, s, data, e);
  if (st != FG_OK) return st;
  fg_trainer *t = calloc(1, sizeof *t);
  if (!t) return fg_err_set(e, FG_E_NOMEM, "out of memory");
  t->f = f, t->s = *s, t->discrete = data->discrete, t->batch = s->batch, t->perm_epoch = -1;
  t->n_bins = t->discrete ? (double)(1 << s->n_bits) : 1.0;
  t->classes = fg_flow_context_size(f);
  t->dist = dist;
  fg_flow_set_replicas(f, fg_dist_reducer(dist));
  st = fg__trainer_shard(t, e);
  if (st == FG_OK) st = prepare_data(t, data->train, data->train_labels, &t->train, "training", e);
  if (st == FG_OK && data->test)
    st = prepare_data(t, data->test, data->test_labels, &t->test, "test", e);
  if (st == FG_OK) {
    t->n_train = t->train.n;
    t->n_test = data->test ? t->test.n : 0;
    t->perm = malloc(sizeof *t->perm * (size_t)t->n_train);
    if (!t->perm) st = fg_err_set(e, FG_E_NOMEM, "out of memory");
  }
  if (st == FG_OK)
    st = fg_pool_new(
        &t->pool,
        n_threads > 0 ? n_threads : (getenv("FG_THREADS") ? atoi(getenv("FG_THREADS")) : 0), e);
  fg_shape bs = batch_shape(f, t->shard);
  if (st == FG_OK) st = fg_tensor_new(&t->x, fg_flow_get_config(f)->dtype, &bs, e);
  if (st == FG_OK && t->discrete) st = fg_tensor_new(&t->u, fg_flow_get_config(f)->dtype, &bs, e);
  fg_shape cs = fg_shape2(t->shard, t->classes);
  if (st == FG_OK && t->classes)
    st = fg_tensor_new(&t->context, fg_flow_get_config(f)->dtype, &cs, e);
  if (st == FG_OK && s->recompute) st = fg_recompute_new(&t->rc, f, e);
  if (st == FG_OK) st = build_training(t, e);
  if (st == FG_OK) st = make_optimiser(t, e);
  if (st != FG_OK) {
    fg_trainer_free(t);
    return st;
  }
  *out = t;
  return FG_OK;
}

void fg_trainer_free(fg_trainer *t) {
  if (!t) return;
  fg_flow_set_replicas(t->f, NULL);
  fg__trainer_dist_free(t);
  fg_program_free(t->prog);
  fg_graph_free(t->g);
  fg_flow_updates_free(t->updates);
  fg_optim_free(t->opt);
  fg_recompute_free(t->rc);
  for (int i = 0; t->ema && i < t->n_params; i++) fg_tensor_free(t->ema[i]);
  free(t->ema);
  fg_tensor_free(t->x);
  fg_tensor_free(t->context);
  fg_train_data_free(&t->train);
  fg_train_data_free(&t->test);
  fg_pool_free(t->pool);
  free(t->perm);
  fg__trainer_info_free(t);
  free(t);
}

/* ---- batches ---- */

static void shuffle_epoch(fg_trainer *t, int64_t epoch) {
  for (int64_t i = 0; i < t->n_train; i++) t->perm[i] = i;
  for (int64_t i = t->n_train - 1; i > 0; i--) { /* Fisher-Yates from (seed, epoch) */
    int64_t j = (int64_t)(fg_rng_bits((uint64_t)t->s.seed ^ 0x5eedull,
                                      (uint64_t)epoch * 0x100000000ull + (uint64_t)i) %
                          (uint64_t)(i + 1));
    int64_t tmp = t->perm[i];
    t->perm[i] = t->perm[j], t->perm[j] = tmp;
  }
  t->perm_epoch = epoch;
}

/* The training rows of global batch `step`: rows [k·B, (k+1)·B) of epoch e's permutation.  This
 * is the one place that decides which rows a step reads (a process of a job takes its shard of
 * them in load_batch); the batch's samples and labels are then gathered from the same rows. */
static const int64_t *batch_rows(fg_trainer *t, int64_t step) {
  int64_t per_epoch = t->n_train / t->batch, epoch = step / per_epoch, k = step % per_epoch;
  if (epoch != t->perm_epoch) shuffle_epoch(t, epoch);
  return t->perm + k * t->batch;
}

/* This process's shard of the step's batch, with its labels and its noise (see noise_seed). */
static void load_batch(fg_trainer *t, int64_t step) {
  fg_train_data_rows(&t->train, batch_rows(t, step) + t->shard_start, 0, t->shard, t->x,
                     t->context);
  if (!t->u) return;
  uint64_t at = ((uint64_t)(step + 1) << 40) + (uint64_t)(t->shard_start * t->train.row);
  int64_t n = fg_tensor_numel(t->u);
  if (t->u->dtype == FG_F32) {
    float *u = fg_tensor_data(t->u);
    for (int64_t i = 0; i < n; i++) u[i] = (float)fg_rng_uniform(noise_seed(t), at + (uint64_t)i);
  } else {
    double *u = fg_tensor_data(t->u);
    for (int64_t i = 0; i < n; i++) u[i] = fg_rng_uniform(noise_seed(t), at + (uint64_t)i);
  }
}

/* ---- the non-finite guard ---- */

/* Runs the top-level layers one by one on the current batch (same noise) and returns the
 * index of the first whose output (2i) or log-det (2i + 1) is not finite; 2n when none is, or
 * when the diagnosis cannot run. */
static int first_bad_output(fg_trainer *t) {
  fg_bijector *chain = fg_flow_bijector(t->f);
  int n = fg_bijector_num_children(chain), bad = 2 * n;
  fg_graph *g = NULL;
  fg_flow_ctx *c = NULL;
  fg_program *p = NULL;
  fg_node *outs = malloc(sizeof *outs * (size_t)(2 * n + 2));
  fg_flow_ctx_opts co = {.dtype = fg_flow_get_config(t->f)->dtype, .training = true,
                         .replicas = fg_flow_get_replicas(t->f)};
  if (outs && n > 0 && fg_flow_ctx_new_graph(&c, &g, fg_flow_params(t->f), &co, NULL) == FG_OK) {
    fg_node cur = model_input(t, g, fg_input(g, "x", co.dtype, t->x->shape), noise_input(t, g));
    fg_node context = context_input(t, g, t->shard);
    if (context != FG_NONE) fg_flow_ctx_set_context(c, context);
    for (int i = 0; i < n; i++) {
      fg_node ld;
      fg_bijector_forward(fg_bijector_child(chain, i), c, cur, &cur, &ld);
      outs[2 * i] = cur, outs[2 * i + 1] = ld;
    }
    fg_program_opts po = program_opts(t);
    if (fg_graph_status(g) != FG_OK || fg_program_new_opts(&p, g, 2 * n, outs, &po, NULL) != FG_OK)
      p = NULL;
  }
  /* a program that exchanges batch statistics runs on every process or on none */
  bool ready = p && fg_params_bind(fg_flow_params(t->f), p, NULL) == FG_OK &&
               bind_batch(t, p, NULL) == FG_OK;
  if (!t->graph_collectives || fg__trainer_lowest(t, ready) == 1) {
    fg_program_set_rng_offset(p, rng_offset(t));
    if (ready && fg_program_run(p, NULL) == FG_OK)
      for (int i = 0; i < 2 * n && bad == 2 * n; i++)
        if (!fg_tensor_all_finite(fg_program_output(p, i))) bad = i;
  }
  fg_program_free(p);
  fg_flow_ctx_free(c);
  free(outs);
  fg_graph_free(g);
  return bad;
}

/* Names the first layer that produced a non-finite value, over every process's shard. */
static void find_bad_layer(fg_trainer *t, char *out, size_t cap) {
  fg_bijector *chain = fg_flow_bijector(t->f);
  int n = fg_bijector_num_children(chain), bad = fg__trainer_lowest(t, first_bad_output(t));
  if (bad >= 2 * n) snprintf(out, cap, "(no single layer: the loss or a gradient overflowed)");
  else
    snprintf(out, cap, "%s (its %s)", fg_bijector_prefix(fg_bijector_child(chain, bad / 2)),
             bad % 2 ? "log-det" : "output");
}

/* ---- a step ---- */

/* The current global batch as the model sees it: images dequantised with fixed host-side
 * noise, and (with `context`, for a conditional flow) its labels one-hot.  Every process makes
 * the whole batch (each holds all the data), so what is computed from it (data-dependent
 * initialisation, the round-trip check) is the same everywhere. */
static fg_status model_batch(fg_trainer *t, fg_tensor **y, fg_tensor **context, fg_err *e) {
  fg_shape bs = batch_shape(t->f, t->batch), cs = fg_shape2(t->batch, t->classes);
  fg_status st = fg_tensor_new(y, t->x->dtype, &bs, e);
  if (st == FG_OK && context && t->classes) st = fg_tensor_new(context, t->x->dtype, &cs, e);
  if (st == FG_OK)
    fg_train_data_rows(&t->train, batch_rows(t, t->step), 0, t->batch, *y,
                       context ? *context : NULL);
  if (st == FG_OK && t->discrete)
    for (int64_t i = 0; i < fg_tensor_numel(*y); i++)
      fg_tensor_set(*y, i,
                    (fg_tensor_get(*y, i) + fg_rng_uniform((uint64_t)t->s.seed + 99, (uint64_t)i)) /
                        t->n_bins);
  return st;
}

/* Data-dependent initialisation on the global batch; then rank 0's result is everyone's, so
 * the replicas start identical whatever CPUs they run on.  Its programs are the trainer's
 * (deterministic in a job), so two runs of a job start from the same bits. */
static fg_status data_init(fg_trainer *t, fg_err *e) {
  fg_tensor *y = NULL, *context = NULL;
  fg_status st = model_batch(t, &y, &context, e);
  fg_program_opts po = program_opts(t);
  if (st == FG_OK) st = fg_flow_data_init_opts(t->f, y, context, &po, e);
  fg_tensor_free(context);
  fg_tensor_free(y);
  st = fg_dist_agree(t->dist, st, e);
  if (st == FG_OK) st = fg__trainer_share_params(t, e);
  if (st != FG_OK) return st;
  for (int i = 0; t->ema && i < t->n_params; i++) /* EMA starts at the initialised weights */
    memcpy(fg_tensor_data(t->ema[i]), fg_tensor_data(fg_params_tensor(fg_flow_params(t->f), i)),
           (size_t)fg_tensor_numel(t->ema[i]) * fg_dtype_size(t->ema[i]->dtype));
  return FG_OK;
}

/* Recompute mode: the round-trip check on the current batch, when due (the first step of a
 * session, then every recompute_check steps); blocks that fail it keep their activations from
 * now on, which needs a new program. */
static fg_status check_round_trips(fg_trainer *t, fg_train_step_info *info, fg_err *e) {
  bool due = !t->rc_checked || (t->s.recompute_check > 0 && t->step % t->s.recompute_check == 0);
  if (!t->rc || !due) return FG_OK;
  fg_tensor *y = NULL;
  fg_status st = model_batch(t, &y, NULL, e);
  fg_program_opts po = program_opts(t);
  if (st == FG_OK)
    st = fg_recompute_check(t->rc, y, t->s.recompute_tol, &po, &info->recompute_fallbacks, e);
  fg_tensor_free(y);
  t->rc_checked = true;
  if (st == FG_OK && info->recompute_fallbacks > 0) st = fg__trainer_rebuild(t, e);
  return st;
}

/* The decay warms up as TensorFlow's ExponentialMovingAverage(num_updates) does: update n uses
 * min(ema, (1 + n) / (10 + n)), so the average forgets the initial weights as fast as the
 * training moves away from them instead of keeping ema^n of them (5 % after 3000 steps at
 * 0.999, which is enough to spoil a sharp 2-D density). */
static void update_ema(fg_trainer *t) {
  double n = (double)fg_optim_get_step(t->opt), d = fmin(t->s.ema, (1 + n) / (10 + n));
  for (int i = 0; t->ema && i < t->n_params; i++) {
    const fg_tensor *p = fg_params_tensor(fg_flow_params(t->f), i);
    for (int64_t j = 0; j < fg_tensor_numel(p); j++)
      fg_tensor_set(t->ema[i], j, d * fg_tensor_get(t->ema[i], j) + (1 - d) * fg_tensor_get(p, j));
  }
}

static double loss_in_unit(const fg_trainer *t, double nll) {
  return t->discrete ? fg_bits_per_dim(-nll, fg_flow_dims(t->f), t->n_bins) : nll;
}

static fg_status apply_step(fg_trainer *t, fg_train_step_info *info, fg_err *e) {
  const fg_tensor **grads = malloc(sizeof *grads * ((size_t)t->n_params + 1));
  if (!grads) return fg_err_set(e, FG_E_NOMEM, "out of memory");
  /* every process gets the same gradients, so the global norm, clipping, the update and the
   * EMA below are the same everywhere and the replicas stay identical */
  fg_status st = fg__trainer_gradients(t, grads, e);
  fg_optim_step_info oi = {.grad_norm = NAN};
  if (st == FG_OK) st = fg_optim_step(t->opt, (const fg_tensor *const *)grads, &oi, e);
  free(grads);
  info->grad_norm = oi.grad_norm, info->lr = oi.lr;
  if (st != FG_OK) return st;
  int n_up = fg_flow_updates_count(t->updates);
  if (n_up) {
    const fg_tensor **vals = malloc(sizeof *vals * (size_t)n_up);
    if (!vals) return fg_err_set(e, FG_E_NOMEM, "out of memory");
    for (int i = 0; i < n_up; i++) vals[i] = fg_program_output(t->prog, 1 + t->n_params + i);
    st = fg_flow_updates_apply(t->f, t->updates, (const fg_tensor *const *)vals, e);
    free(vals);
  }
  update_ema(t);
  return st;
}

fg_status fg_trainer_step(fg_trainer *t, fg_train_step_info *info, fg_err *e) {
  fg_train_step_info local;
  if (!info) info = &local;
  memset(info, 0, sizeof *info);
  load_batch(t, t->step);
  fg_status st = FG_OK;
  if (!t->initialised) {
    if ((st = data_init(t, e)) != FG_OK) return st;
    t->initialised = true;
  }
  if ((st = fg_dist_agree(t->dist, check_round_trips(t, info, e), e)) != FG_OK) return st;
  fg_program_set_rng_offset(t->prog, rng_offset(t));
  if ((st = fg_program_run(t->prog, e)) != FG_OK) {
    fg_err_prefix(e, st, "training step %lld", (long long)t->step);
    /* the other processes wait inside the program for this one's batch statistics */
    if (t->graph_collectives) fg_dist_mark_broken(t->dist);
    if (t->graph_collectives || fg_dist_size(t->dist) == 1) return st;
  }
  double nll = st == FG_OK ? fg_tensor_get(fg_program_output(t->prog, 0), 0) : NAN;
  if ((st = fg__trainer_exchange_loss(t, st, &nll, e)) != FG_OK) return st;
  info->loss = loss_in_unit(t, nll);
  st = isfinite(nll) ? apply_step(t, info, e) : FG_E_NUMERIC;
  info->step = ++t->step;
  if (st == FG_OK) {
    t->bad_in_a_row = 0;
    return FG_OK;
  }
  if (st != FG_E_NUMERIC) return st;
  info->skipped = true;
  t->step--; /* diagnose with this step's noise */
  find_bad_layer(t, info->bad_layer, sizeof info->bad_layer);
  t->step++;
  if (++t->bad_in_a_row >= t->s.max_nonfinite)
    return fg_err_set(
        e, FG_E_NUMERIC,
        "%lld steps in a row had a non-finite loss or gradient "
        "(the last at step %lld, first bad layer %s); lower the learning rate or add clipping",
        (long long)t->bad_in_a_row, (long long)t->step, info->bad_layer);
  return FG_OK;
}

/* ---- evaluation ---- */

static void swap_ema(fg_trainer *t) {
  for (int i = 0; t->ema && i < t->n_params; i++) {
    /* programs hold the parameter's buffer, so the contents are swapped, not the buffers */
    fg_tensor *p = fg_params_tensor(fg_flow_params(t->f), i);
    size_t bytes = (size_t)fg_tensor_numel(p) * fg_dtype_size(p->dtype);
    char *a = fg_tensor_data(p), *b = fg_tensor_data(t->ema[i]);
    for (size_t k = 0; k < bytes; k++) {
      char c = a[k];
      a[k] = b[k], b[k] = c;
    }
  }
}

void fg_trainer_use_ema(fg_trainer *t) {
  for (int i = 0; t->ema && i < t->n_params; i++) {
    fg_tensor *p = fg_params_tensor(fg_flow_params(t->f), i);
    memcpy(fg_tensor_data(p), fg_tensor_data(t->ema[i]),
           (size_t)fg_tensor_numel(p) * fg_dtype_size(p->dtype));
  }
}

/* A log-prob program for batches of n test rows: compiled once, run for every batch of that size.
 */
typedef struct eval_prog {
  fg_graph *g;
  fg_program *p;
  fg_tensor *x, *context; /* context: one-hot labels of a conditional flow, or NULL */
  int64_t n;
} eval_prog;

static void eval_prog_free(eval_prog *ep) {
  fg_tensor_free(ep->x);
  fg_tensor_free(ep->context);
  fg_program_free(ep->p);
  fg_graph_free(ep->g);
  memset(ep, 0, sizeof *ep);
}

static fg_status eval_prog_make(fg_trainer *t, int64_t n, eval_prog *ep, fg_err *e) {
  fg_status st = fg_graph_new(&ep->g, e);
  if (st != FG_OK) return fg_err_prefix(e, st, "evaluation");
  ep->n = n;
  fg_shape bs = batch_shape(t->f, n);
  fg_node x = fg_input(ep->g, "x", fg_flow_get_config(t->f)->dtype, bs), logp;
  st = fg_flow_log_prob_cond(t->f, ep->g, model_input(t, ep->g, x, FG_NONE),
                             context_input(t, ep->g, n), false, &logp, NULL);
  fg_node total = fg_sum(ep->g, logp, FG_ALL_AXES, false);
  fg_program_opts po = program_opts(t);
  if (st == FG_OK)
    st = fg_program_new_opts(&ep->p, ep->g, 1, &total, &po, e);
  else
    fg_err_set(e, st, "%s", fg_graph_errmsg(ep->g));
  if (st == FG_OK) st = fg_params_bind(fg_flow_params(t->f), ep->p, e);
  if (st == FG_OK) st = fg_tensor_new(&ep->x, fg_flow_get_config(t->f)->dtype, &bs, e);
  if (st == FG_OK) st = fg_program_bind(ep->p, "x", ep->x, e);
  fg_shape cs = fg_shape2(n, t->classes);
  if (st == FG_OK && t->classes)
    st = fg_tensor_new(&ep->context, fg_flow_get_config(t->f)->dtype, &cs, e);
  if (st == FG_OK && ep->context) st = fg_program_bind(ep->p, "context", ep->context, e);
  return st;
}

/* Sum of log p over rows [start, start + ep->n) of the test set. */
static fg_status eval_rows(fg_trainer *t, eval_prog *ep, int64_t start, double *sum, fg_err *e) {
  fg_train_data_rows(&t->test, NULL, start, ep->n, ep->x, ep->context);
  fg_program_set_rng_offset(ep->p, EVAL_RNG_OFFSET + (uint64_t)start);
  fg_status st = fg_program_run(ep->p, e);
  if (st != FG_OK) return fg_err_prefix(e, st, "evaluation");
  *sum += fg_tensor_get(fg_program_output(ep->p, 0), 0);
  return FG_OK;
}

/* Evaluates the chunks of the first `total` test rows (chunk j: rows [j·B, (j+1)·B), the last
 * one shorter) in rounds of one chunk per process, chunk j on rank j mod N, its sum into
 * sums[j]; after each round the processes agree to go on (no failure, no progress callback
 * said stop).  *done: the rows of the rounds done. */
static fg_status eval_chunks(fg_trainer *t, const fg_eval_opts *o, int64_t total, double *sums,
                             int64_t *done, fg_err *e) {
  int64_t n_chunks = (total + t->batch - 1) / t->batch, ranks = fg_dist_size(t->dist);
  fg_status st = FG_OK;
  eval_prog full = {0}, rest = {0}; /* batches of the training batch size, then the remainder */
  bool go_on = true;
  for (int64_t round = 0; st == FG_OK && go_on && round * ranks < n_chunks; round++) {
    int64_t j = round * ranks + fg_dist_rank(t->dist), start = j * t->batch;
    eval_prog *ep = total - start < t->batch ? &rest : &full;
    if (j < n_chunks && !ep->p)
      st = eval_prog_make(t, ep == &rest ? total - start : t->batch, ep, e);
    if (st == FG_OK && j < n_chunks) st = eval_rows(t, ep, start, &sums[j], e);
    if ((st = fg_dist_agree(t->dist, st, e)) != FG_OK) break;
    int64_t end = (round + 1) * ranks * t->batch;
    *done = end < total ? end : total;
    if (o && o->progress) go_on = o->progress(o->ud, *done, total);
    go_on = fg__trainer_lowest(t, go_on);
  }
  eval_prog_free(&full);
  eval_prog_free(&rest);
  return st;
}

/* The chunks' sums are summed over the processes (each slot holds one process's value and
 * zeros: exact) and then added in chunk order, so the mean is bit for bit the one-process mean
 * for any N. */
fg_status fg_trainer_evaluate_opts(fg_trainer *t, const fg_eval_opts *o, double *mean,
                                   int64_t *rows, fg_err *e) {
  if (rows) *rows = 0;
  if (!t->n_test) return fg_err_set(e, FG_E_MISUSE, "no test data to evaluate on");
  if (o && o->max_rows < 0) return fg_err_set(e, FG_E_MISUSE, "evaluation: max_rows must be >= 0");
  int64_t total = o && o->max_rows && o->max_rows < t->n_test ? o->max_rows : t->n_test, done = 0;
  int64_t n_chunks = (total + t->batch - 1) / t->batch;
  double *sums = calloc((size_t)n_chunks, sizeof *sums), sum = 0;
  fg_status st = sums ? FG_OK : fg_err_set(e, FG_E_NOMEM, "out of memory");
  st = fg_dist_agree(t->dist, st, e);
  swap_ema(t);
  if (st == FG_OK) st = eval_chunks(t, o, total, sums, &done, e);
  swap_ema(t);
  if (st == FG_OK) st = fg_dist_sum(t->dist, sums, n_chunks, FG_F64, e);
  for (int64_t j = 0; st == FG_OK && j * t->batch < done; j++) sum += sums[j];
  free(sums);
  if (st == FG_OK && done == 0)
    st = fg_err_set(e, FG_E_ABORTED, "evaluation stopped before its first batch");
  if (st == FG_OK) *mean = loss_in_unit(t, -sum / (double)done);
  if (st == FG_OK && rows) *rows = done;
  return st;
}

fg_status fg_trainer_evaluate(fg_trainer *t, double *mean, fg_err *e) {
  return fg_trainer_evaluate_opts(t, NULL, mean, NULL, e);
}

const fg_recompute *fg_trainer_recompute(const fg_trainer *t) { return t->rc; }
const fg_program_stats *fg_trainer_program_stats(const fg_trainer *t) {
  return fg_program_get_stats(t->prog);
}

const char *fg_trainer_profile(const fg_trainer *t, char *buf, size_t cap) {
  return fg_program_profile(t->prog, buf, cap);
}
