/* What a data-parallel job adds to the trainer's step (trainer_internal.h, trainer.h): the
 * shard of the batch, the exchange of the loss and of the gradients, identical replicas. */
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "flows/train/trainer_internal.h"

static bool one_process(const fg_trainer *t) { return fg_dist_size(t->dist) == 1; }

fg_status fg__trainer_shard(fg_trainer *t, fg_err *e) {
  int n = fg_dist_size(t->dist);
  if (t->batch % n)
    return fg_err_set(e, FG_E_MISUSE, "batch %lld does not split evenly over %d processes: use a "
                      "batch that is a multiple of %d", (long long)t->batch, n, n);
  t->shard = t->batch / n;
  t->shard_start = t->shard * fg_dist_rank(t->dist);
  return FG_OK;
}

typedef struct step_report {
  double nll;     /* mean over the process's shard */
  int32_t status; /* of its training program's run */
  int32_t reserved;
} step_report;

fg_status fg__trainer_exchange_loss(fg_trainer *t, fg_status run, double *nll, fg_err *e) {
  if (one_process(t)) return run;
  int n = fg_dist_size(t->dist);
  step_report mine = {.nll = run == FG_OK ? *nll : 0, .status = run},
              *all = malloc(sizeof *all * (size_t)n);
  fg_err local;
  fg_status st = all ? fg_dist_gather(t->dist, &mine, sizeof mine, all, &local)
                     : fg_err_set(&local, FG_E_NOMEM, "out of memory");
  if (st != FG_OK) fg_dist_mark_broken(t->dist); /* the others may have gone on */
  if (run != FG_OK || st != FG_OK) {
    free(all);
    return run != FG_OK ? run : fg_err_set(e, st, "%s", local.msg);
  }
  double sum = 0; /* in rank order: the same on every process */
  for (int r = 0; r < n && st == FG_OK; r++) {
    if (all[r].status != FG_OK)
      st = fg_err_set(e, (fg_status)all[r].status,
                      "rank %d failed in training step %lld: %s; its "
                      "own message says why",
                      r, (long long)t->step, fg_status_str((fg_status)all[r].status));
    sum += all[r].nll;
  }
  free(all);
  *nll = sum / n;
  return st;
}

/* t->summed ([parameter count]) and one view of it per parameter. */
static fg_status make_summed(fg_trainer *t, fg_err *e) {
  fg_params *ps = fg_flow_params(t->f);
  fg_shape all = fg_shape1(fg_params_numel(ps));
  fg_status st = fg_tensor_new(&t->summed, fg_flow_get_config(t->f)->dtype, &all, e);
  if (st == FG_OK && !(t->summed_grads = calloc((size_t)t->n_params + 1, sizeof *t->summed_grads)))
    st = fg_err_set(e, FG_E_NOMEM, "out of memory");
  int64_t at = 0;
  for (int i = 0; st == FG_OK && i < t->n_params; i++) {
    const fg_tensor *p = fg_params_tensor(ps, i);
    fg_tensor *flat;
    st = fg_tensor_slice0(&flat, t->summed, at, at + fg_tensor_numel(p), e);
    if (st == FG_OK) st = fg_tensor_reshape(&t->summed_grads[i], flat, &p->shape, e);
    fg_tensor_free(flat);
    at += fg_tensor_numel(p);
  }
  return st;
}

/* The program's gradients into t->summed, summed over the processes, divided by their number:
 * each process's loss is the mean over its shard, the global loss the mean of those. */
static fg_status sum_gradients(fg_trainer *t, fg_err *e) {
  size_t es = fg_dtype_size(t->summed->dtype);
  for (int i = 0; i < t->n_params; i++) {
    const fg_tensor *g = fg_program_output(t->prog, 1 + i);
    memcpy(fg_tensor_data(t->summed_grads[i]), fg_tensor_data(g), (size_t)fg_tensor_numel(g) * es);
  }
  int64_t n = fg_tensor_numel(t->summed);
  fg_status st = fg_dist_sum(t->dist, fg_tensor_data(t->summed), n, t->summed->dtype, e);
  if (st != FG_OK) {
    fg_dist_mark_broken(t->dist);
    return st;
  }
  int k = fg_dist_size(t->dist);
  if (t->summed->dtype == FG_F32)
    for (float *v = fg_tensor_data(t->summed), *end = v + n; v < end; v++) *v /= (float)k;
  else
    for (double *v = fg_tensor_data(t->summed), *end = v + n; v < end; v++) *v /= k;
  return FG_OK;
}

fg_status fg__trainer_gradients(fg_trainer *t, const fg_tensor **grads, fg_err *e) {
  fg_status st = FG_OK;
  if (!one_process(t) && !t->summed) st = make_summed(t, e);
  if (st == FG_OK && !one_process(t)) st = sum_gradients(t, e);
  for (int i = 0; st == FG_OK && i < t->n_params; i++)
    grads[i] = one_process(t) ? fg_program_output(t->prog, 1 + i) : t->summed_grads[i];
  return st;
}

fg_status fg__trainer_share_params(fg_trainer *t, fg_err *e) {
  fg_params *ps = fg_flow_params(t->f);
  fg_status st = FG_OK;
  for (int i = 0; st == FG_OK && !one_process(t) && i < t->n_params; i++) {
    fg_tensor *p = fg_params_tensor(ps, i);
    st = fg_dist_broadcast(t->dist, fg_tensor_data(p),
                           (size_t)fg_tensor_numel(p) * fg_dtype_size(p->dtype), 0, e);
  }
  if (st != FG_OK) fg_dist_mark_broken(t->dist);
  return st;
}

static void hash_tensor(XXH3_state_t *h, const fg_tensor *v) {
  XXH3_64bits_update(h, fg_tensor_data(v), (size_t)fg_tensor_numel(v) * fg_dtype_size(v->dtype));
}

/* A hash of everything a checkpoint holds. */
static uint64_t state_hash(const fg_trainer *t) {
  XXH3_state_t *h = XXH3_createState();
  if (!h) return 0;
  XXH3_64bits_reset(h);
  fg_params *ps = fg_flow_params(t->f);
  for (int i = 0; i < t->n_params; i++) {
    hash_tensor(h, fg_params_tensor(ps, i));
    for (int s = 0; s < fg_optim_num_slots(t->opt); s++)
      hash_tensor(h, fg_optim_slot(t->opt, i, s));
    if (t->ema) hash_tensor(h, t->ema[i]);
  }
  int64_t counters[3] = {t->step, fg_optim_get_step(t->opt), t->bad_in_a_row};
  XXH3_64bits_update(h, counters, sizeof counters);
  uint64_t v = XXH3_64bits_digest(h);
  XXH3_freeState(h);
  return v;
}

fg_status fg__trainer_check_replicas(fg_trainer *t, fg_err *e) {
  if (one_process(t)) return FG_OK;
  int n = fg_dist_size(t->dist);
  uint64_t mine = state_hash(t), *all = malloc(sizeof *all * (size_t)n);
  if (!all) return fg_err_set(e, FG_E_NOMEM, "out of memory");
  fg_status st = fg_dist_gather(t->dist, &mine, sizeof mine, all, e);
  for (int r = 1; st == FG_OK && r < n; r++)
    if (all[r] != all[0] || all[r] == 0)
      st = fg_err_set(e, FG_E_INTERNAL, "the copies of the model differ between rank 0 and rank %d "
                      "at step %lld: the job's processes must run the same build on the same data",
                      r, (long long)t->step);
  free(all);
  return st;
}

int fg__trainer_lowest(fg_trainer *t, int mine) {
  if (one_process(t)) return mine;
  int n = fg_dist_size(t->dist);
  int32_t m = mine, *all = malloc(sizeof *all * (size_t)n);
  if (all && fg_dist_gather(t->dist, &m, sizeof m, all, NULL) == FG_OK)
    for (int r = 0; r < n; r++) mine = all[r] < mine ? all[r] : mine;
  else fg_dist_mark_broken(t->dist);
  free(all);
  return mine;
}

void fg__trainer_dist_free(fg_trainer *t) {
  for (int i = 0; t->summed_grads && i < t->n_params; i++) fg_tensor_free(t->summed_grads[i]);
  free(t->summed_grads);
  fg_tensor_free(t->summed);
  fg_tensor_free(t->u);
}
