/* Data sources named by one string, as in a spec's `data` line:
 *   fashion-mnist                   Debian's dataset-fashion-mnist (or $FG_DATA_DIR), 60000/10000
 *   mnist:<dir>                     <dir>/{train,t10k}-images-idx3-ubyte[.gz]
 *   cifar10:<dir>                   <dir>/data_batch_{1..5}.bin and <dir>/test_batch.bin
 *   npy:<train.npy>[,<test.npy>] [labels=<train_labels.npy>[,<test_labels.npy>]]
 *                                   uint8 or float32 arrays [N, ...], labels [N]
 *   moons|8gaussians|checkerboard|rings [n=N] [test_n=N] [noise=S] [scale=S] [seed=K]
 *                                   2-D toys (frontends/data/toy2d.h documents each generator);
 *                                   n and test_n are integers from 1 to FG_TOY_MAX_POINTS (10000
 *                                   and 5000 by default), seed one from 0 to 2^53, each setting
 *                                   given at most once; noise and scale default to FFJORD's
 *                                   for each set
 * A training or test set of no samples is refused (FG_E_FORMAT), as is a malformed setting.
 * Images are integer levels 0..255 and `discrete` (train with dequantisation, report bits/dim);
 * .npy data is discrete when every value is an integer in 0..255; toys are continuous.
 *
 * Labels.  Where the format has them, the class of every sample comes with it, as float32 [N]
 * class indices: Fashion-MNIST and MNIST from the IDX label files ({train,t10k}-labels-idx1-
 * ubyte, optional for mnist:), CIFAR-10 from its records, npy from the labels= files, toys from
 * the component each point was drawn from.  Elsewhere the labels are NULL. */
#ifndef FG_DATA_SOURCE_H
#define FG_DATA_SOURCE_H

#include <stdbool.h>

#include "core/tensor.h"

/* The most points a toy data set may have (8 bytes each: 800 MB), and the largest seed. */
#define FG_TOY_MAX_POINTS 100000000
#define FG_TOY_MAX_SEED 9007199254740992LL
/* Largest class index a label may hold. */
#define FG_DATA_MAX_CLASSES 65535

typedef struct fg_data {
  fg_tensor *train, *test; /* [N, event...]; test may be NULL (npy without a test file) */
  fg_tensor *train_labels, *test_labels; /* [N] class indices, or NULL (see "Labels") */
  int64_t classes;         /* 1 + the largest label; 0 without labels */
  bool discrete;
} fg_data;

/* `limit` > 0 keeps only the first `limit` training samples (and labels; quick runs and
 * tests).  Labels are checked to be one per sample and whole numbers >= 0.  *out owns its
 * tensors (fg_data_free); on failure it holds none. */
fg_status fg_data_open(fg_data *out, const char *source, int64_t limit, fg_err *e);
void fg_data_free(fg_data *d);
/* The name of class k of a source's labels ("Trouser" for fashion-mnist, "cat" for cifar10:,
 * "upper moon" for moons...), or NULL when the source has no names for them (MNIST's digits,
 * npy). */
const char *fg_data_class_name(const char *source, int64_t k);

#endif
