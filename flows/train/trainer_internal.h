/* The trainer's state, shared by flows/train/trainer.c (the loop) and flows/train/checkpoint.c
 * (saving it and loading it back).  Internal: not installed. */
#ifndef FG_TRAINER_INTERNAL_H
#define FG_TRAINER_INTERNAL_H

#include "flows/train/dist.h"
#include "flows/train/train_data.h"
#include "flows/train/trainer.h"

/* A metadata entry a caller added to every save (fg_trainer_set_info). */
typedef struct fg__run_info {
  char *key, *value;
  bool must_match; /* a resume refuses a checkpoint whose value differs */
} fg__run_info;

struct fg_trainer {
  fg_flow *f;
  fg_train_settings s;
  bool discrete;
  double n_bins;
  fg_train_data train, test; /* levels (discrete, as bytes) or values */
  int64_t n_train, n_test, batch;
  fg_pool *pool;
  fg_graph *g;              /* training graph */
  fg_program *prog;
  fg_tensor *x;             /* the batch the training program reads */
  fg_tensor *context;       /* its labels one-hot [shard, classes] (conditional flows), or NULL */
  int64_t classes;          /* the flow's context size: 0 unconditional */
  int n_params;
  fg_flow_updates *updates;
  fg_optim *opt;
  fg_tensor **ema;          /* NULL without EMA */
  fg_recompute *rc;         /* recompute mode's blocks, NULL otherwise */
  int64_t step, bad_in_a_row;
  bool initialised, rc_checked;
  int64_t *perm;            /* the current epoch's order */
  int64_t perm_epoch;
  fg__run_info *info; /* fg_trainer_set_info's entries (checkpoint.c) */
  int64_t n_info, cap_info;
  /* data-parallel training (trainer_dist.c); for one process: NULL, 0 and the whole batch */
  fg_dist *dist;            /* borrowed */
  int64_t shard,
      shard_start;          /* this process's rows of every global batch: [start, start + shard) */
  fg_tensor *u;             /* images: the shard's dequantisation noise, bound as "u" */
  bool graph_collectives;   /* the training program exchanges values itself (sync batch-norm) */
  fg_tensor *summed;        /* the gradients summed over the processes, packed */
  fg_tensor **summed_grads; /* per parameter, a view into summed */
};

/* The training graph and program built again (after the flow's buffers changed: graphs take
 * their values when they are built). */
fg_status fg__trainer_rebuild(fg_trainer *t, fg_err *e);
/* Frees t's run information (checkpoint.c). */
void fg__trainer_info_free(fg_trainer *t);

/* trainer_dist.c: what a data-parallel job adds to a step.  With one process each is a no-op
 * (or hands back what it was given). */
/* t->shard and t->shard_start from the job's size and rank; the batch must split evenly. */
fg_status fg__trainer_shard(fg_trainer *t, fg_err *e);
/* The loss of the global batch from every process's (*nll in, the mean out) and whether every
 * process's run succeeded (run: this one's status); the result is the same on every process. */
fg_status fg__trainer_exchange_loss(fg_trainer *t, fg_status run, double *nll, fg_err *e);
/* The parameter gradients of the global batch: *grads are the training program's outputs for
 * one process, else the views of t->summed holding their mean over the processes. */
fg_status fg__trainer_gradients(fg_trainer *t, const fg_tensor **grads, fg_err *e);
/* Rank 0's parameters, everyone's: the replicas start identical. */
fg_status fg__trainer_share_params(fg_trainer *t, fg_err *e);
/* FG_E_INTERNAL unless every process holds the same parameters, moments, EMA weights and step. */
fg_status fg__trainer_check_replicas(fg_trainer *t, fg_err *e);
/* The lowest of every process's `mine`. */
int fg__trainer_lowest(fg_trainer *t, int mine);
void fg__trainer_dist_free(fg_trainer *t);

#endif
