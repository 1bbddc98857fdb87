/* Data sets: loaders for image files and generators of 2-D toy data.
 *
 * Every loader returns new float32 tensors (free with fg_tensor_free) holding the stored byte
 * values as they are (0..255 for images, class indices for labels): scaling and dequantisation
 * belong to the trainer.  A malformed file is rejected with an error whose message starts with
 * the file's path and says what is wrong (magic, counts, sizes, truncation, trailing bytes,
 * corrupt gzip data); nothing is allocated on the strength of a size a header declares until
 * that much data has actually been read. */
#ifndef FG_DATASET_H
#define FG_DATASET_H

#include <stdint.h>

#include "core/status.h"
#include "core/tensor.h"

/* --- IDX (MNIST format), core/idx.c ------------------------------------------------------
 * Magic 0x00000803 (unsigned bytes, 3 dims: N, H, W) gives images [N, 1, H, W]; magic
 * 0x00000801 (unsigned bytes, 1 dim: N) gives labels [N].  Dimensions are big-endian uint32,
 * none may be 0, and the data must be exactly their product in bytes.  The file may be gzip
 * compressed (detected from its content, not its name). */
fg_status fg_idx_load(const char *path, fg_tensor **out, fg_err *e);

/* --- CIFAR-10 binary batches, core/cifar.c -----------------------------------------------
 * Records of 1 label byte (0..9) and 3072 pixel bytes (1024 red, 1024 green, 1024 blue, each
 * row-major 32x32); the file (gzip or plain) must hold a whole, non-zero number of records.
 * images [N, 3, 32, 32]; labels [N] (either output may be NULL when not wanted). */
fg_status fg_cifar_load(const char *path, fg_tensor **images, fg_tensor **labels, fg_err *e);

/* --- NumPy .npy, core/npy.c -----------------------------------------------------------------
 * Format versions 1.0, 2.0 and 3.0; 'descr' '|u1' (uint8) or '<f4' (little-endian float32),
 * 'fortran_order' False, 'shape' of at most 8 dimensions; the data must be exactly
 * shape x itemsize bytes.  float32 data must be finite: the first NaN or infinity is reported
 * with its index.  The result has the array's shape and dtype float32. */
fg_status fg_npy_load(const char *path, fg_tensor **out, fg_err *e);

/* --- 2-D toy data, core/toy2d.c -------------------------------------------------------------
 * n points as an [n, 2] float32 tensor, a pure function of (name, n, noise, scale, seed):
 *   "moons"        sklearn's make_moons: an upper unit half circle centred at (0, 0) and a lower
 *                  one centred at (1, 0.5), points evenly spaced along each (n/2 on the upper,
 *                  the rest on the lower), Gaussian noise of std `noise` added, then shifted by
 *                  (-0.5, -0.25) so the set is centred and multiplied by `scale`; shuffled.
 *                  (FFJORD's moons: noise 0.1, scale 2.)
 *   "8gaussians"   8 Gaussians of std `noise` centred on a circle of radius `scale` at angles
 *                  k·45°, k chosen uniformly per point.  (FFJORD: scale 2.83, noise 0.35.)
 *   "checkerboard" uniform on the 8 dark squares of a 4x4 board of unit squares covering
 *                  [-2, 2]², plus Gaussian noise of std `noise`, all multiplied by `scale`.
 *                  (FFJORD: noise 0, scale 2.)
 *   "rings"        4 concentric circles of radii scale·{1, 0.75, 0.5, 0.25}, points evenly
 *                  spaced (n/4 on each of the three outer rings, the rest on the innermost),
 *                  Gaussian noise of std `noise` added; shuffled.  (FFJORD: scale 3, noise 0.08.)
 * n >= 1, noise >= 0 and scale > 0 (both finite); an unknown name's error lists the names. */
fg_status fg_toy2d_generate(const char *name, int64_t n, double noise, double scale, uint64_t seed,
                            fg_tensor **out, fg_err *e);
/* The known names, comma separated ("moons, 8gaussians, checkerboard, rings"). */
const char *fg_toy2d_names(void);

/* --- Fashion-MNIST, core/dataset.c ----------------------------------------------------------
 * Debian's dataset-fashion-mnist package installs the four IDX files (gzip) in this directory;
 * the environment variable FG_DATA_DIR, when set and non-empty, names another directory holding
 * the same file names (.gz or uncompressed). */
#define FG_FASHION_MNIST_DEFAULT_DIR "/usr/share/datasets/fashion-mnist"
const char *fg_dataset_fashion_mnist_dir(void);
/* split "train" (60000 images) or "test" (10000): images [N, 1, 28, 28] and labels [N], checked
 * to agree in N; either output may be NULL when not wanted. */
fg_status fg_dataset_fashion_mnist_load(const char *split, fg_tensor **images, fg_tensor **labels,
                                        fg_err *e);

#endif
