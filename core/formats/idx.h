/* IDX files (the MNIST format), plain or gzip.
 *
 * Every loader returns new float32 tensors (free with fg_tensor_free) holding the stored byte
 * values as they are (0..255 for images, class indices for labels): scaling and dequantisation
 * belong to the trainer.  A malformed file is rejected with an error whose message starts with
 * the file's path and says what is wrong (magic, counts, sizes, truncation, trailing bytes,
 * corrupt gzip data); nothing is allocated on the strength of a size a header declares until
 * that much data has actually been read.  On failure the output tensors are NULL. */
#ifndef FG_FORMATS_IDX_H
#define FG_FORMATS_IDX_H

#include <stdint.h>

#include "core/status.h"
#include "core/tensor.h"

/* --- IDX (MNIST format), core/formats/idx.c -----------------------------------------------------
 * Magic 0x00000803 (unsigned bytes, 3 dims: N, H, W) gives images [N, 1, H, W]; magic
 * 0x00000801 (unsigned bytes, 1 dim: N) gives labels [N].  Dimensions are big-endian uint32,
 * none may be 0, and the data must be exactly their product in bytes.  The file may be gzip
 * compressed (detected from its content, not its name). */
fg_status fg_idx_load(fg_tensor **out, const char *path, fg_err *e);

#endif
