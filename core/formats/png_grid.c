/* The grid is composed in memory as 8-bit grey or RGB and written with libpng's simplified
 * API, which reports failures in a message instead of longjmp-ing out of our frames, into a
 * file that replaces path atomically (core/atomic_file.h). */
#include "core/formats/png_grid.h"

#include <math.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/atomic_file.h"

#define GRID_PAD_VALUE 128
/* PNG's dimension limit (2^31 - 1) */
#define GRID_MAX_SIDE 0x7fffffff

typedef struct grid_geom {
  int64_t n, c, h, w;    /* images */
  int64_t rows, cols;    /* cells */
  int64_t width, height; /* pixels of the whole grid */
} grid_geom;

static fg_status grid_check_shape(const char *path, const fg_tensor *t, int64_t cols, grid_geom *g,
                                  fg_err *e) {
  char s[128];
  if (t->shape.ndim != 4 || (t->shape.d[1] != 1 && t->shape.d[1] != 3))
    return fg_err_set(e, FG_E_SHAPE,
                      "%s: images of shape %s; a PNG grid needs [N, C, H, W] with "
                      "C = 1 or 3",
                      path, fg_shape_str(&t->shape, s, sizeof s));
  if (t->shape.d[0] == 0 || t->shape.d[2] == 0 || t->shape.d[3] == 0)
    return fg_err_set(e, FG_E_SHAPE, "%s: images of shape %s have no pixels", path,
                      fg_shape_str(&t->shape, s, sizeof s));
  if (cols < 0) return fg_err_set(e, FG_E_MISUSE, "%s: %lld columns", path, (long long)cols);
  g->n = t->shape.d[0], g->c = t->shape.d[1], g->h = t->shape.d[2], g->w = t->shape.d[3];
  g->cols = cols > 0 ? cols : (int64_t)ceil(sqrt((double)g->n));
  if (g->cols > g->n) g->cols = g->n;
  g->rows = (g->n + g->cols - 1) / g->cols;
  /* 1-pixel lines between and around cells; the side checks also rule out overflow below */
  if (g->w > GRID_MAX_SIDE || g->h > GRID_MAX_SIDE || g->cols > GRID_MAX_SIDE / (g->w + 1) ||
      g->rows > GRID_MAX_SIDE / (g->h + 1))
    return fg_err_set(e, FG_E_SHAPE,
                      "%s: a grid of %lld x %lld images of %lld x %lld exceeds "
                      "PNG's size limit",
                      path, (long long)g->rows, (long long)g->cols, (long long)g->h,
                      (long long)g->w);
  g->width = g->cols * (g->w + 1) + 1;
  g->height = g->rows * (g->h + 1) + 1;
  return FG_OK;
}

static fg_status grid_pixel(const char *path, const fg_tensor *t, int64_t flat, double scale,
                            const grid_geom *g, uint8_t *out, fg_err *e) {
  double v = fg_tensor_get(t, flat);
  if (isnan(v)) {
    int64_t x = flat % g->w, y = flat / g->w % g->h, c = flat / (g->w * g->h) % g->c;
    return fg_err_set(e, FG_E_NUMERIC,
                      "%s: image %lld has NaN at channel %lld, row %lld, "
                      "column %lld",
                      path, (long long)(flat / (g->w * g->h * g->c)), (long long)c, (long long)y,
                      (long long)x);
  }
  v *= scale;
  *out = (uint8_t)(v <= 0 ? 0 : v >= 255 ? 255 : lround(v));
  return FG_OK;
}

/* Copies image i into its cell of the interleaved 8-bit canvas. */
static fg_status grid_place(const char *path, const fg_tensor *t, int64_t i, double scale,
                            const grid_geom *g, uint8_t *canvas, fg_err *e) {
  int64_t x0 = i % g->cols * (g->w + 1) + 1, y0 = i / g->cols * (g->h + 1) + 1;
  for (int64_t c = 0; c < g->c; c++)
    for (int64_t y = 0; y < g->h; y++)
      for (int64_t x = 0; x < g->w; x++) {
        int64_t flat = ((i * g->c + c) * g->h + y) * g->w + x;
        uint8_t *px = canvas + ((y0 + y) * g->width + x0 + x) * g->c + c;
        fg_status st = grid_pixel(path, t, flat, scale, g, px, e);
        if (st != FG_OK) return st;
      }
  return FG_OK;
}

typedef struct grid_file {
  const char *path;
  const grid_geom *g;
  const uint8_t *canvas;
} grid_file;

static fg_status grid_write(FILE *fp, void *ctx, fg_err *e) {
  const grid_file *f = ctx;
  png_image img;
  memset(&img, 0, sizeof img);
  img.version = PNG_IMAGE_VERSION;
  img.width = (png_uint_32)f->g->width;
  img.height = (png_uint_32)f->g->height;
  img.format = f->g->c == 3 ? PNG_FORMAT_RGB : PNG_FORMAT_GRAY;
  int ok = png_image_write_to_stdio(&img, fp, 0, f->canvas, 0, NULL);
  char msg[sizeof img.message];
  memcpy(msg, img.message, sizeof msg);
  png_image_free(&img);
  if (ok || ferror(fp)) return FG_OK; /* a failed write is reported by fg_atomic_file_write */
  return fg_err_set(e, FG_E_IO, "%s: writing the PNG failed: %s", f->path,
                    msg[0] ? msg : "libpng gave no reason");
}

fg_status fg_png_grid_write(const char *path, const fg_tensor *images, int64_t cols, unsigned flags,
                            fg_err *e) {
  grid_geom g = {0};
  fg_status st = grid_check_shape(path, images, cols, &g, e);
  if (st != FG_OK) return st;
  size_t bytes = (size_t)g.width * (size_t)g.height * (size_t)g.c;
  uint8_t *canvas = malloc(bytes);
  if (!canvas) return fg_err_set(e, FG_E_NOMEM, "%s: out of memory for %zu bytes", path, bytes);
  memset(canvas, GRID_PAD_VALUE, bytes);
  double scale = flags & FG_PNG_GRID_RANGE_255 ? 1.0 : 255.0;
  for (int64_t i = 0; i < g.n && st == FG_OK; i++)
    st = grid_place(path, images, i, scale, &g, canvas, e);
  if (st == FG_OK) st = fg_atomic_file_write(path, grid_write, &(grid_file){path, &g, canvas}, e);
  free(canvas);
  return st;
}
