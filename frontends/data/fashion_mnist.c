/* The default data set, Fashion-MNIST, as Debian's dataset-fashion-mnist package installs it:
 * four IDX files named as in the original distribution. */
#include "core/formats/idx.h"
#include "frontends/data/fashion_mnist.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *fg_dataset_fashion_mnist_dir(void) {
  const char *dir = getenv("FG_DATA_DIR");
  return dir && dir[0] ? dir : FG_FASHION_MNIST_DEFAULT_DIR;
}

/* "<dir>/<stem>.gz" when present, else "<dir>/<stem>" (an uncompressed copy); the error for a
 * missing file names the .gz form, which is what the package installs. */
static fg_status fmnist_path(const char *stem, char *buf, size_t cap, fg_err *e) {
  const char *dir = fg_dataset_fashion_mnist_dir();
  if ((size_t)snprintf(buf, cap, "%s/%s.gz", dir, stem) >= cap)
    return fg_err_set(e, FG_E_MISUSE, "Fashion-MNIST directory path is too long: %s", dir);
  if (access(buf, F_OK) == 0) return FG_OK;
  snprintf(buf, cap, "%s/%s", dir, stem);
  if (access(buf, F_OK) == 0) return FG_OK;
  snprintf(buf, cap, "%s/%s.gz", dir, stem);
  return fg_err_set(e, FG_E_NOTFOUND,
                    "%s: not found; install Debian's dataset-fashion-mnist package "
                    "(tools/setup.sh does) or set FG_DATA_DIR to a directory holding the "
                    "Fashion-MNIST IDX files",
                    buf);
}

static fg_status fmnist_load_file(const char *stem, fg_tensor **out, fg_err *e) {
  char path[4096];
  fg_status st = fmnist_path(stem, path, sizeof path, e);
  return st != FG_OK ? st : fg_idx_load(out, path, e);
}

/* Images must be [N, 1, 28, 28] and labels [N] in 0..9, so that a wrong file under the right
 * name is caught here and not as a shape error deep in training. */
static fg_status fmnist_check(const fg_tensor *images, const fg_tensor *labels, fg_err *e) {
  const char *dir = fg_dataset_fashion_mnist_dir();
  if (images && (images->shape.ndim != 4 || images->shape.d[2] != 28 || images->shape.d[3] != 28))
    return fg_err_set(e, FG_E_FORMAT,
                      "%s: the Fashion-MNIST images file does not hold 28x28 "
                      "images",
                      dir);
  if (labels && labels->shape.ndim != 1)
    return fg_err_set(e, FG_E_FORMAT, "%s: the Fashion-MNIST labels file holds images", dir);
  if (images && labels && images->shape.d[0] != labels->shape.d[0])
    return fg_err_set(e, FG_E_FORMAT, "%s: %lld images but %lld labels", dir,
                      (long long)images->shape.d[0], (long long)labels->shape.d[0]);
  const float *l = labels ? fg_tensor_data(labels) : NULL;
  for (int64_t i = 0; l && i < labels->shape.d[0]; i++)
    if (l[i] > 9)
      return fg_err_set(e, FG_E_FORMAT, "%s: label %lld is %g; Fashion-MNIST labels are 0..9", dir,
                        (long long)i, (double)l[i]);
  return FG_OK;
}

fg_status fg_dataset_fashion_mnist_load(fg_tensor **images, fg_tensor **labels, const char *split,
                                        fg_err *e) {
  if (images) *images = NULL;
  if (labels) *labels = NULL;
  const char *prefix = !split                        ? NULL
                       : strcmp(split, "train") == 0 ? "train"
                       : strcmp(split, "test") == 0  ? "t10k"
                                                     : NULL;
  if (!prefix)
    return fg_err_set(e, FG_E_MISUSE, "unknown Fashion-MNIST split '%s'; known: train, test",
                      split ? split : "(null)");
  char stem[64];
  fg_tensor *im = NULL, *lb = NULL;
  fg_status st = FG_OK;
  if (images) {
    snprintf(stem, sizeof stem, "%s-images-idx3-ubyte", prefix);
    st = fmnist_load_file(stem, &im, e);
  }
  if (st == FG_OK && labels) {
    snprintf(stem, sizeof stem, "%s-labels-idx1-ubyte", prefix);
    st = fmnist_load_file(stem, &lb, e);
  }
  if (st == FG_OK) st = fmnist_check(im, lb, e);
  if (st != FG_OK) {
    fg_tensor_free(im);
    fg_tensor_free(lb);
    return st;
  }
  if (images) *images = im;
  if (labels) *labels = lb;
  return FG_OK;
}
