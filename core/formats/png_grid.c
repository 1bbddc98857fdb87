/* Image grids (png_grid.h): the images are placed, zoomed, on a raster framed by grey lines,
 * with text margins when there are labels, and the raster is written as a PNG. */
#include "core/formats/png_grid.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/formats/raster.h"

#define GRID_PAD_VALUE 128
#define TEXT_COLOR 0x202020
#define MARGIN_COLOR 0xffffff

typedef struct grid_geom {
  int64_t n, c, h, w;    /* images */
  int64_t rows, cols;    /* cells */
  int64_t zoom;          /* pixels per image pixel */
  int64_t left, top;     /* text margins */
  int64_t width, height; /* pixels of the whole picture */
  int text;              /* font scale */
} grid_geom;

static fg_status grid_check_shape(const char *path, const fg_tensor *t, const fg_png_grid_opts *o,
                                  grid_geom *g, fg_err *e) {
  char s[128];
  if (t->shape.ndim != 4 || (t->shape.d[1] != 1 && t->shape.d[1] != 3))
    return fg_err_set(e, FG_E_SHAPE, "%s: images of shape %s; a PNG grid needs [N, C, H, W] with "
                      "C = 1 or 3", path, fg_shape_str(&t->shape, s, sizeof s));
  if (t->shape.d[0] == 0 || t->shape.d[2] == 0 || t->shape.d[3] == 0)
    return fg_err_set(e, FG_E_SHAPE, "%s: images of shape %s have no pixels", path,
                      fg_shape_str(&t->shape, s, sizeof s));
  if (o->cols < 0) return fg_err_set(e, FG_E_MISUSE, "%s: %lld columns", path, (long long)o->cols);
  if (o->zoom < 0 || o->zoom > 64)
    return fg_err_set(e, FG_E_MISUSE, "%s: zoom %lld (0 for automatic, or 1..64)", path,
                      (long long)o->zoom);
  g->n = t->shape.d[0], g->c = t->shape.d[1], g->h = t->shape.d[2], g->w = t->shape.d[3];
  g->cols = o->cols > 0 ? o->cols : (int64_t)ceil(sqrt((double)g->n));
  if (g->cols > g->n) g->cols = g->n;
  g->rows = (g->n + g->cols - 1) / g->cols;
  g->zoom = o->zoom                        ? o->zoom
            : g->h >= FG_PNG_GRID_MIN_CELL ? 1
                                           : (FG_PNG_GRID_MIN_CELL + g->h - 1) / g->h;
  /* 1-pixel lines between and around cells; the side checks also rule out overflow below */
  int64_t side = FG_RASTER_MAX_SIDE / 2;
  if (g->w > side / g->zoom || g->h > side / g->zoom || g->cols > side / (g->w * g->zoom + 1) ||
      g->rows > side / (g->h * g->zoom + 1))
    return fg_err_set(e, FG_E_SHAPE, "%s: a grid of %lld x %lld images of %lld x %lld exceeds "
                      "PNG's size limit", path, (long long)g->rows, (long long)g->cols,
                      (long long)g->h, (long long)g->w);
  return FG_OK;
}

/* Text margins: the caption and column labels above, the row labels on the left. */
static void grid_margins(const fg_png_grid_opts *o, grid_geom *g) {
  g->text = g->h * g->zoom >= 48 ? 2 : 1;
  int64_t line = fg_raster_text_height(g->text) + 4 * g->text, widest = 0;
  g->top = (o->caption ? line : 0) + (o->col_labels ? line : 0);
  for (int64_t r = 0; o->row_labels && r < g->rows; r++) {
    int64_t w = fg_raster_text_width(o->row_labels[r] ? o->row_labels[r] : "", g->text);
    if (w > widest) widest = w;
  }
  g->left = o->row_labels ? widest + 6 * g->text : 0;
  if (g->top && g->left == 0) g->left = 2 * g->text; /* room for a caption's first letter */
  g->width = g->left + g->cols * (g->w * g->zoom + 1) + 1;
  g->height = g->top + g->rows * (g->h * g->zoom + 1) + 1;
  if (o->caption) {
    int64_t need = 2 * g->text + fg_raster_text_width(o->caption, g->text) + 2 * g->text;
    if (need > g->width) g->width = need;
  }
}

static fg_status grid_pixel(const char *path, const fg_tensor *t, int64_t flat, double scale,
                            const grid_geom *g, uint8_t *out, fg_err *e) {
  double v = fg_tensor_get(t, flat);
  if (isnan(v)) {
    int64_t x = flat % g->w, y = flat / g->w % g->h, c = flat / (g->w * g->h) % g->c;
    return fg_err_set(e, FG_E_NUMERIC, "%s: image %lld has NaN at channel %lld, row %lld, "
                      "column %lld", path, (long long)(flat / (g->w * g->h * g->c)), (long long)c,
                      (long long)y, (long long)x);
  }
  v *= scale;
  *out = (uint8_t)(v <= 0 ? 0 : v >= 255 ? 255 : lround(v));
  return FG_OK;
}

/* Copies image i, zoomed, into its cell of the canvas. */
static fg_status grid_place(const char *path, const fg_tensor *t, int64_t i, double scale,
                            const grid_geom *g, fg_raster *canvas, fg_err *e) {
  int64_t z = g->zoom, x0 = g->left + i % g->cols * (g->w * z + 1) + 1;
  int64_t y0 = g->top + i / g->cols * (g->h * z + 1) + 1;
  for (int64_t c = 0; c < g->c; c++)
    for (int64_t y = 0; y < g->h; y++)
      for (int64_t x = 0; x < g->w; x++) {
        uint8_t v = 0;
        fg_status st = grid_pixel(path, t, ((i * g->c + c) * g->h + y) * g->w + x, scale, g, &v, e);
        if (st != FG_OK) return st;
        for (int64_t dy = 0; dy < z; dy++)
          for (int64_t dx = 0; dx < z; dx++)
            canvas->px[((y0 + y * z + dy) * canvas->width + x0 + x * z + dx) * g->c + c] = v;
      }
  return FG_OK;
}

static void grid_text(const fg_png_grid_opts *o, const grid_geom *g, fg_raster *canvas) {
  int64_t line = fg_raster_text_height(g->text) + 4 * g->text, y = 2 * g->text;
  if (o->caption) {
    fg_raster_text(canvas, 2 * g->text, y, o->caption, g->text, TEXT_COLOR);
    y += line;
  }
  int64_t cell_w = g->w * g->zoom + 1, cell_h = g->h * g->zoom + 1;
  for (int64_t k = 0; o->col_labels && k < g->cols; k++) {
    const char *s = o->col_labels[k] ? o->col_labels[k] : "";
    int64_t x = g->left + k * cell_w + (cell_w - fg_raster_text_width(s, g->text)) / 2;
    fg_raster_text(canvas, x, y, s, g->text, TEXT_COLOR);
  }
  for (int64_t r = 0; o->row_labels && r < g->rows; r++) {
    int64_t yy = g->top + r * cell_h + (cell_h - fg_raster_text_height(g->text)) / 2;
    fg_raster_text(canvas, 3 * g->text, yy, o->row_labels[r] ? o->row_labels[r] : "", g->text,
                   TEXT_COLOR);
  }
}

fg_status fg_png_grid_write_opts(const char *path, const fg_tensor *images,
                                 const fg_png_grid_opts *o, fg_err *e) {
  grid_geom g = {0};
  fg_status st = grid_check_shape(path, images, o, &g, e);
  if (st != FG_OK) return st;
  grid_margins(o, &g);
  fg_raster *canvas;
  st = fg_raster_new(&canvas, g.width, g.height, (int)g.c, MARGIN_COLOR, e);
  if (st != FG_OK) return fg_err_prefix(e, st, "%s", path);
  fg_raster_rect(canvas, g.left, g.top, g.cols * (g.w * g.zoom + 1) + 1, g.height - g.top,
                 GRID_PAD_VALUE * 0x010101u);
  double scale = o->flags & FG_PNG_GRID_RANGE_255 ? 1.0 : 255.0;
  for (int64_t i = 0; i < g.n && st == FG_OK; i++)
    st = grid_place(path, images, i, scale, &g, canvas, e);
  grid_text(o, &g, canvas);
  if (st == FG_OK) st = fg_raster_write_png(canvas, path, e);
  fg_raster_free(canvas);
  return st;
}

fg_status fg_png_grid_write(const char *path, const fg_tensor *images, int64_t cols, unsigned flags,
                            fg_err *e) {
  fg_png_grid_opts o = {.cols = cols, .flags = flags, .zoom = 1};
  return fg_png_grid_write_opts(path, images, &o, e);
}
