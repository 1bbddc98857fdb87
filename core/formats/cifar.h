/* CIFAR-10 binary batches, plain or gzip.
 *
 * Every loader returns new float32 tensors (free with fg_tensor_free) holding the stored byte
 * values as they are (0..255 for images, class indices for labels): scaling and dequantisation
 * belong to the trainer.  A malformed file is rejected with an error whose message starts with
 * the file's path and says what is wrong (magic, counts, sizes, truncation, trailing bytes,
 * corrupt gzip data); nothing is allocated on the strength of a size a header declares until
 * that much data has actually been read.  On failure the output tensors are NULL. */
#ifndef FG_FORMATS_CIFAR_H
#define FG_FORMATS_CIFAR_H

#include <stdint.h>

#include "core/status.h"
#include "core/tensor.h"

/* --- CIFAR-10 binary batches, core/formats/cifar.c ----------------------------------------------
 * Records of 1 label byte (0..9) and 3072 pixel bytes (1024 red, 1024 green, 1024 blue, each
 * row-major 32x32); the file (gzip or plain) must hold a whole, non-zero number of records.
 * images [N, 3, 32, 32]; labels [N] (either output may be NULL when not wanted). */
fg_status fg_cifar_load(fg_tensor **images, fg_tensor **labels, const char *path, fg_err *e);

#endif
