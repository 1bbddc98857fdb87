/* NumPy .npy arrays.
 *
 * Every loader returns new float32 tensors (free with fg_tensor_free) holding the stored byte
 * values as they are (0..255 for images, class indices for labels): scaling and dequantisation
 * belong to the trainer.  A malformed file is rejected with an error whose message starts with
 * the file's path and says what is wrong (magic, counts, sizes, truncation, trailing bytes,
 * corrupt gzip data); nothing is allocated on the strength of a size a header declares until
 * that much data has actually been read.  On failure the output tensors are NULL. */
#ifndef FG_FORMATS_NPY_H
#define FG_FORMATS_NPY_H

#include <stdint.h>

#include "core/status.h"
#include "core/tensor.h"

/* --- NumPy .npy, core/formats/npy.c -------------------------------------------------------------
 * Format versions 1.0, 2.0 and 3.0; 'descr' '|u1' (uint8) or '<f4' (little-endian float32),
 * 'fortran_order' False, 'shape' of at most 8 dimensions; the data must be exactly
 * shape x itemsize bytes.  float32 data must be finite: the first NaN or infinity is reported
 * with its index.  The result has the array's shape and dtype float32. */
fg_status fg_npy_load(fg_tensor **out, const char *path, fg_err *e);

#endif
