/* Data sources named by one string, as in a spec's `data` line:
 *   fashion-mnist                   Debian's dataset-fashion-mnist (or $FG_DATA_DIR), 60000/10000
 *   mnist:<dir>                     <dir>/{train,t10k}-images-idx3-ubyte[.gz]
 *   cifar10:<dir>                   <dir>/data_batch_{1..5}.bin and <dir>/test_batch.bin
 *   npy:<train.npy>[,<test.npy>]    uint8 or float32 arrays [N, ...]
 *   moons|8gaussians|checkerboard|rings [n=N] [test_n=N] [noise=S] [scale=S] [seed=K]
 *                                   2-D toys (frontends/data/toy2d.h documents each generator);
 *                                   noise and scale default to FFJORD's for each set
 * Images are integer levels 0..255 and `discrete` (train with dequantisation, report bits/dim);
 * .npy data is discrete when every value is an integer in 0..255; toys are continuous. */
#ifndef FG_DATA_SOURCE_H
#define FG_DATA_SOURCE_H

#include <stdbool.h>

#include "core/tensor.h"

typedef struct fg_data {
  fg_tensor *train, *test; /* [N, event...]; test may be NULL (npy without a test file) */
  bool discrete;
} fg_data;

/* `limit` > 0 keeps only the first `limit` training samples (quick runs and tests).  *out owns
 * its tensors (fg_data_free); on failure it holds none. */
fg_status fg_data_open(fg_data *out, const char *source, int64_t limit, fg_err *e);
void fg_data_free(fg_data *d);

#endif
