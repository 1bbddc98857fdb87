/* Checkpoints: a trainer's state in one safetensors file (readable by Python's safetensors and
 * PyTorch), written atomically (core/formats/safetensors.h), so a save killed midway leaves the
 * previous checkpoint.
 *
 * Layout (format "flowgrad-checkpoint-1").  One tensor per entry, named by what it holds and
 * the parameter's name in the store:
 *   param/<name>            the parameter
 *   optim/<slot>/<name>     the optimiser's moments ("exp_avg", ...: fg_optim_slot_name)
 *   ema/<name>              the Polyak average (only when training with ema > 0)
 *   buffer/<name>           a layer's fixed tensor (flows/params.h: "buffer/3.conv1x1_lu.perm"),
 *                           float64; absent from checkpoints written before buffers existed
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
 *   lr, batch           the run's learning rate and batch (absent in older files)
 *   ...                 what the caller added with fg_trainer_set_info: `flowgrad train`
 *                       records "data" (the data source), "limit" and "plugins" (one
 *                       "<type>=<plugin path>" line per plugin type the spec uses)
 *
 * Every loader checks each entry it reads (name, dtype, shape, every value finite, a buffer's
 * own check: a permutation is one) before it changes anything, so a truncated, corrupt or
 * foreign file, or one of another model, is refused with a message and loses nothing.
 *
 * Buffers make a checkpoint self-contained: a model loaded from one uses the saved permutations
 * and starting factors, not what its layers would draw today.  A file with no buffer entries (an
 * older one) keeps the ones the layers made; a file with some must have all of the model's.
 * Graphs take buffer values when they are built: load before building programs (fg_trainer_load
 * rebuilds the trainer's own program when the buffers it loads differ). */
#ifndef FG_CHECKPOINT_H
#define FG_CHECKPOINT_H

#include <stdbool.h>
#include <stdint.h>

#include "flows/flow.h"
#include "flows/registry.h"
#include "flows/train/trainer.h"

/* Saves t's parameters, optimiser moments, EMA weights and step, with spec_text (may be NULL)
 * in the metadata.  In a data-parallel job every process calls it: they check that their
 * copies agree (FG_E_INTERNAL otherwise), rank 0 writes, and every process returns rank 0's
 * status. */
fg_status fg_trainer_save(fg_trainer *t, const char *path, const char *spec_text, fg_err *e);
/* Restores what fg_trainer_save saved, so training continues exactly where it stopped.  The
 * checkpoint must come from the same run: its seed, n_bits, event shape, lr and batch must be t's
 * (lr and batch when the file records them), and so must every fg_trainer_set_info value set
 * with must_match that the file also records; otherwise FG_E_FORMAT naming both values.
 * In a data-parallel job every process loads it (no exchange: agree on the status with
 * fg_dist_agree).  A job of another size continues with the same batches and noise, and
 * results equal up to rounding (fg_checkpoint_meta's ranks says which size wrote it). */
fg_status fg_trainer_load(fg_trainer *t, const char *path, fg_err *e);
/* Metadata saved with every later checkpoint of t, under key (not one of the keys above): the
 * data source, a row limit, the plugins the spec needs.  With must_match, fg_trainer_load refuses
 * a checkpoint that records another value for key (a resume on other data is not exact); one
 * that does not record key (an older file) is accepted.  Setting a key again replaces it. */
fg_status fg_trainer_set_info(fg_trainer *t, const char *key, const char *value, bool must_match,
                              fg_err *e);

/* Reading a checkpoint without a trainer (sampling, evaluation, interpolation). */
typedef struct fg_checkpoint_meta {
  char *spec;        /* the spec text the model was built from (owned) */
  char *plugins; /* "<type>=<path>" lines of the plugin types it uses (owned; NULL: none) */
  fg_shape event;    /* per-sample shape of the data */
  int64_t n_bits;
  bool discrete;
  int64_t step;
  int64_t ranks;     /* processes of the job that wrote it (1 when not recorded) */
} fg_checkpoint_meta;
/* Fills *m; on failure *m holds nothing to free. */
fg_status fg_checkpoint_read_meta(const char *path, fg_checkpoint_meta *m, fg_err *e);
void fg_checkpoint_meta_free(fg_checkpoint_meta *m);
/* FG_OK when r has every plugin type the checkpoint's spec uses; else FG_E_PLUGIN naming the
 * type, the plugin file it came from and how to pass it ("--plugin <path>"). */
fg_status fg_checkpoint_check_plugins(const fg_checkpoint_meta *m, const fg_registry *r, fg_err *e);
/* Copies the checkpoint's weights (its EMA weights when it has them and prefer_ema) into f's
 * parameters, and its buffers into f's; every entry is checked before anything changes. */
fg_status fg_checkpoint_load_params(fg_flow *f, const char *path, bool prefer_ema, fg_err *e);

#endif
