/* Fashion-MNIST from Debian's dataset-fashion-mnist package (or FG_DATA_DIR). */
#ifndef FG_DATA_FASHION_MNIST_H
#define FG_DATA_FASHION_MNIST_H

#include <stdint.h>

#include "core/status.h"
#include "core/tensor.h"

/* --- Fashion-MNIST, frontends/data/fashion_mnist.c ----------------------------------------------
 * Debian's dataset-fashion-mnist package installs the four IDX files (gzip) in this directory;
 * the environment variable FG_DATA_DIR, when set and non-empty, names another directory holding
 * the same file names (.gz or uncompressed). */
#define FG_FASHION_MNIST_DEFAULT_DIR "/usr/share/datasets/fashion-mnist"
const char *fg_dataset_fashion_mnist_dir(void);
/* split "train" (60000 images) or "test" (10000): images [N, 1, 28, 28] and labels [N], checked
 * to agree in N; either output may be NULL when not wanted.  The caller owns what it gets; on
 * failure both are NULL. */
fg_status fg_dataset_fashion_mnist_load(fg_tensor **images, fg_tensor **labels, const char *split,
                                        fg_err *e);

#endif
