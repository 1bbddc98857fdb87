/* Checkpoints: a trainer's state in one safetensors file (readable by Python's safetensors and
 * PyTorch), written atomically (core/formats/safetensors.h), so a save killed midway leaves the
 * previous checkpoint.
 *
 * Layout (format "flowgrad-checkpoint-1").  One tensor per entry, named by what it holds and
 * the parameter's name in the store:
 *   param/<name>            the parameter
 *   optim/<slot>/<name>     the optimiser's moments ("exp_avg", ...: fg_optim_slot_name)
 *   ema/<name>              the Polyak average (only when training with ema > 0)
 * and string metadata:
 *   format              "flowgrad-checkpoint-1"
 *   step, optim_step    steps taken by the trainer and by the optimiser
 *   skipped_in_a_row    non-finite steps just before the save (absent in older files: 0)
 *   seed, n_bits        the run's seed (batch order, noise) and data bits
 *   optimizer           adam | adamax | sgd
 *   event               the per-sample shape, "[1, 28, 28]"
 *   discrete            "true" for images (bits/dim), "false" otherwise
 *   spec                the spec text the model was built from
 *   ranks               processes of the data-parallel job that wrote it (absent: 1)
 *
 * Every loader checks each entry it reads (name, dtype, shape) before it changes anything, so
 * a truncated, corrupt or foreign file, or one of another model, is refused with a message and
 * loses nothing. */
#ifndef FG_CHECKPOINT_H
#define FG_CHECKPOINT_H

#include <stdbool.h>
#include <stdint.h>

#include "flows/flow.h"
#include "flows/train/trainer.h"

/* Saves t's parameters, optimiser moments, EMA weights and step, with spec_text (may be NULL)
 * in the metadata.  In a data-parallel job every process calls it: they check that their
 * copies agree (FG_E_INTERNAL otherwise), rank 0 writes, and every process returns rank 0's
 * status. */
fg_status fg_trainer_save(fg_trainer *t, const char *path, const char *spec_text, fg_err *e);
/* Restores what fg_trainer_save saved, so training continues exactly where it stopped.  The
 * checkpoint must come from the same run: its seed, n_bits and event shape must be t's.  In a
 * data-parallel job every process loads it (no exchange: agree on the status with
 * fg_dist_agree).  A job of another size continues with the same batches and noise, and
 * results equal up to rounding (fg_checkpoint_meta's ranks says which size wrote it). */
fg_status fg_trainer_load(fg_trainer *t, const char *path, fg_err *e);

/* Reading a checkpoint without a trainer (sampling, evaluation, interpolation). */
typedef struct fg_checkpoint_meta {
  char *spec;        /* the spec text the model was built from (owned) */
  fg_shape event;    /* per-sample shape of the data */
  int64_t n_bits;
  bool discrete;
  int64_t step;
  int64_t ranks;     /* processes of the job that wrote it (1 when not recorded) */
} fg_checkpoint_meta;
/* Fills *m; on failure *m holds nothing to free. */
fg_status fg_checkpoint_read_meta(const char *path, fg_checkpoint_meta *m, fg_err *e);
void fg_checkpoint_meta_free(fg_checkpoint_meta *m);
/* Copies the checkpoint's weights (its EMA weights when it has them and prefer_ema) into f's
 * parameters; every entry is checked before any parameter changes. */
fg_status fg_checkpoint_load_params(fg_flow *f, const char *path, bool prefer_ema, fg_err *e);

#endif
