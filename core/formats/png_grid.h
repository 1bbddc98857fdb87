/* Image grids as PNG files (libpng, through core/formats/raster.h), for samples,
 * reconstructions, interpolations and edits. */
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

/* Zoom 0 picks the smallest whole factor that makes an image at least this many pixels high
 * (a 28 x 28 image is drawn 84 x 84). */
#define FG_PNG_GRID_MIN_CELL 64

typedef struct fg_png_grid_opts {
  int64_t cols;                   /* as above: 0 picks ceil(sqrt(N)) */
  unsigned flags;                 /* FG_PNG_GRID_* */
  int64_t zoom;                   /* each pixel drawn zoom x zoom (nearest); 0: automatic */
  const char *caption;            /* a line of text above the grid, or NULL */
  const char *const *row_labels;  /* one per row, written left of it, or NULL */
  const char *const *col_labels;  /* one per column, written above it, or NULL */
} fg_png_grid_opts;

/* fg_png_grid_write with a zoom and labels: text (the raster module's bitmap font, dark on a
 * white margin) goes around the grid, which stays as described above. */
fg_status fg_png_grid_write_opts(const char *path, const fg_tensor *images,
                                 const fg_png_grid_opts *o, fg_err *e);

#endif
