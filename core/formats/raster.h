/* Rasters: an 8-bit grey or RGB canvas to draw pictures on (image grids, scatter plots,
 * heatmaps, curves) and write as PNG through libpng.  Drawing is clipped to the canvas, so a
 * caller may draw partly or wholly outside it; colours are 0xRRGGBB, stored as their luminance
 * on a grey canvas.  Text uses a built-in 5x7 bitmap font (printable ASCII; anything else is
 * drawn as '?'), scaled by a whole factor. */
#ifndef FG_RASTER_H
#define FG_RASTER_H

#include <stdint.h>

#include "core/status.h"

typedef struct fg_raster {
  int64_t width, height;
  int channels; /* 1 (grey) or 3 (RGB) */
  uint8_t *px;  /* height rows of width x channels bytes, top row first */
} fg_raster;

/* PNG's side limit, and ours. */
#define FG_RASTER_MAX_SIDE 0x7fffffff

/* A width x height canvas filled with `fill`; channels 1 or 3.  *out is NULL on failure. */
fg_status fg_raster_new(fg_raster **out, int64_t width, int64_t height, int channels, uint32_t fill,
                        fg_err *e);
void fg_raster_free(fg_raster *r);

/* Pixel (x, y) := rgb blended over it with opacity alpha in [0, 1]. */
void fg_raster_put(fg_raster *r, int64_t x, int64_t y, uint32_t rgb, double alpha);
/* A filled rectangle [x, x + w) x [y, y + h). */
void fg_raster_rect(fg_raster *r, int64_t x, int64_t y, int64_t w, int64_t h, uint32_t rgb);
/* A straight line between two points (pixel centres at whole coordinates), `width` pixels wide. */
void fg_raster_line(fg_raster *r, double x0, double y0, double x1, double y1, double width,
                    uint32_t rgb);
/* A filled disc. */
void fg_raster_disc(fg_raster *r, double cx, double cy, double radius, uint32_t rgb, double alpha);

/* Text with its top-left corner at (x, y), each font pixel `scale` x `scale`; returns its width. */
int64_t fg_raster_text(fg_raster *r, int64_t x, int64_t y, const char *text, int scale,
                       uint32_t rgb);
int64_t fg_raster_text_width(const char *text, int scale);
int64_t fg_raster_text_height(int scale);

/* Writes r as a PNG (grey or RGB, 8-bit) replacing path atomically: on failure whatever was at
 * path is untouched. */
fg_status fg_raster_write_png(const fg_raster *r, const char *path, fg_err *e);

/* Colour maps: viridis at t in [0, 1] (clamped), and well-separated colours for classes
 * (Tableau's 10, repeating). */
uint32_t fg_raster_viridis(double t);
uint32_t fg_raster_class_color(int64_t k);

#endif
