/* The trainer's state, shared by flows/train/trainer.c (the loop) and flows/train/checkpoint.c
 * (saving it and loading it back).  Internal: not installed. */
#ifndef FG_TRAINER_INTERNAL_H
#define FG_TRAINER_INTERNAL_H

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
  fg_tensor *context;       /* its labels one-hot [B, classes] (conditional flows), or NULL */
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
};

/* The training graph and program built again (after the flow's buffers changed: graphs take
 * their values when they are built). */
fg_status fg__trainer_rebuild(fg_trainer *t, fg_err *e);
/* Frees t's run information (checkpoint.c). */
void fg__trainer_info_free(fg_trainer *t);

#endif
