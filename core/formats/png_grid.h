/* Image grids as PNG files (libpng), for samples, reconstructions and interpolations. */
#ifndef FG_PNG_GRID_H
#define FG_PNG_GRID_H

#include <stdint.h>

#include "core/status.h"
#include "core/tensor.h"

/* Pixel values are in [0, 255] (raw data) rather than [0, 1] (model space). */
#define FG_PNG_GRID_RANGE_255 1u

/* Writes images [N, C, H, W] (C = 1 for grey, 3 for RGB; F32 or F64, any view) as one PNG of
 * rows x cols cells, where cols is given (0 picks ceil(sqrt(N))) and rows = ceil(N / cols).
 * Cells are separated and framed by 1-pixel lines of mid grey (128), which also fills cells
 * past the last image.  Values are scaled by 255 (unless FG_PNG_GRID_RANGE_255), clamped to
 * [0, 255] (so ±inf saturate) and rounded; a NaN is an error naming the image and pixel.
 * The file replaces path atomically: on failure whatever was at path is untouched. */
fg_status fg_png_grid_write(const char *path, const fg_tensor *images, int64_t cols, unsigned flags,
                            fg_err *e);

#endif
