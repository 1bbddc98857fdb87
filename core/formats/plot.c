/* Plots (plot.h): a frame of axes with round ticks, and the three kinds drawn inside it. */
#include "core/formats/plot.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/formats/raster.h"

#define INK 0x202020
#define GRID 0xe4e4e4
#define PAPER 0xffffff
#define TEXT 2 /* font scale */

/* Where the plot area sits in the picture, and the data box it shows. */
typedef struct frame {
  fg_raster *r;
  int64_t left, top, right, bottom; /* the plot area: [left, right) x [top, bottom) */
  fg_plot_box box;
} frame;

static double to_px(const frame *f, double x) {
  return (double)f->left +
         (x - f->box.x0) / (f->box.x1 - f->box.x0) * (double)(f->right - f->left - 1);
}

static double to_py(const frame *f, double y) {
  return (double)f->bottom - 1 -
         (y - f->box.y0) / (f->box.y1 - f->box.y0) * (double)(f->bottom - f->top - 1);
}

/* A round step (1, 2 or 5 times a power of ten) giving about 5 ticks over [lo, hi]. */
static double tick_step(double lo, double hi) {
  double raw = (hi - lo) / 5, p = pow(10, floor(log10(raw))), m = raw / p;
  return (m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10) * p;
}

static void tick_text(char *buf, size_t cap, double v, double step) {
  if (fabs(v) < step * 1e-6) v = 0;
  snprintf(buf, cap, "%.*f", step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9), v);
  if (fabs(v) >= 1e5 || (v != 0 && fabs(v) < 1e-3)) snprintf(buf, cap, "%.2g", v);
}

static void draw_ticks(frame *f, bool grid_lines) {
  double sx = tick_step(f->box.x0, f->box.x1), sy = tick_step(f->box.y0, f->box.y1);
  char buf[32];
  for (double v = ceil(f->box.x0 / sx) * sx; v <= f->box.x1 + sx * 1e-9; v += sx) {
    double px = to_px(f, v);
    if (grid_lines) fg_raster_line(f->r, px, (double)f->top, px, (double)f->bottom - 1, 1, GRID);
    fg_raster_line(f->r, px, (double)f->bottom, px, (double)f->bottom + 4, 1, INK);
    tick_text(buf, sizeof buf, v, sx);
    fg_raster_text(f->r, lround(px) - fg_raster_text_width(buf, TEXT) / 2, f->bottom + 8, buf, TEXT,
                   INK);
  }
  for (double v = ceil(f->box.y0 / sy) * sy; v <= f->box.y1 + sy * 1e-9; v += sy) {
    double py = to_py(f, v);
    if (grid_lines) fg_raster_line(f->r, (double)f->left, py, (double)f->right - 1, py, 1, GRID);
    fg_raster_line(f->r, (double)f->left - 5, py, (double)f->left - 1, py, 1, INK);
    tick_text(buf, sizeof buf, v, sy);
    fg_raster_text(f->r, f->left - 8 - fg_raster_text_width(buf, TEXT),
                   lround(py) - fg_raster_text_height(TEXT) / 2, buf, TEXT, INK);
  }
}

/* Text centred over the plot area, at half size when it would not fit the picture. */
static void centred_text(frame *f, int64_t y, const char *text) {
  int scale = fg_raster_text_width(text, TEXT) + 8 <= f->r->width ? TEXT : 1;
  int64_t x = (f->left + f->right - fg_raster_text_width(text, scale)) / 2;
  if (x + fg_raster_text_width(text, scale) + 4 > f->r->width)
    x = f->r->width - 4 - fg_raster_text_width(text, scale);
  fg_raster_text(f->r, x < 4 ? 4 : x, y, text, scale, INK);
}

static void draw_labels(frame *f, const fg_plot_opts *o) {
  if (o->title) centred_text(f, 10, o->title);
  if (o->x_label) centred_text(f, f->bottom + 30, o->x_label);
  if (o->y_label)
    fg_raster_text(f->r, 8, f->top - fg_raster_text_height(TEXT) - 8, o->y_label, TEXT, INK);
}

static void draw_border(frame *f) {
  double l = (double)f->left - 1, t = (double)f->top - 1, r = (double)f->right,
         b = (double)f->bottom;
  fg_raster_line(f->r, l, t, r, t, 1, INK);
  fg_raster_line(f->r, l, b, r, b, 1, INK);
  fg_raster_line(f->r, l, t, l, b, 1, INK);
  fg_raster_line(f->r, r, t, r, b, 1, INK);
}

static fg_status frame_new(frame *f, const fg_plot_opts *o, int64_t dw, int64_t dh,
                           const fg_plot_box *box, const char *path, fg_err *e) {
  int64_t w = o->width > 0 ? o->width : dw, h = o->height > 0 ? o->height : dh;
  if (w < 200 || h < 150 || w > 20000 || h > 20000)
    return fg_err_set(e, FG_E_MISUSE, "%s: a plot of %lld x %lld pixels (200 x 150 to 20000 x "
                      "20000)", path, (long long)w, (long long)h);
  if (!(box->x1 > box->x0) || !(box->y1 > box->y0) || !isfinite(box->x1 - box->x0) ||
      !isfinite(box->y1 - box->y0))
    return fg_err_set(e, FG_E_MISUSE, "%s: an empty or non-finite plot box [%g, %g] x [%g, %g]",
                      path, box->x0, box->x1, box->y0, box->y1);
  fg_status st = fg_raster_new(&f->r, w, h, 3, PAPER, e);
  if (st != FG_OK) return fg_err_prefix(e, st, "%s", path);
  f->left = 90, f->top = o->title || o->y_label ? 50 : 20, f->right = w - 20,
  f->bottom = h - (o->x_label ? 60 : 40);
  f->box = *box;
  return FG_OK;
}

static fg_status frame_finish(frame *f, const fg_plot_opts *o, const char *path, fg_err *e) {
  draw_border(f);
  draw_labels(f, o);
  fg_status st = fg_raster_write_png(f->r, path, e);
  fg_raster_free(f->r);
  return st;
}

/* ---- fitting a box to data ---- */

static int by_value(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* The [0.5, 99.5] percentile range of coordinate k of finite points, widened by 10 % a side. */
static fg_status fit_axis(const fg_tensor *p, int k, double *lo, double *hi, fg_err *e) {
  int64_t n = p->shape.d[0], m = 0;
  double *v = malloc(sizeof *v * (size_t)(n > 0 ? n : 1));
  if (!v) return fg_err_set(e, FG_E_NOMEM, "plot: out of memory");
  for (int64_t i = 0; i < n; i++) {
    double a = fg_tensor_get(p, 2 * i), b = fg_tensor_get(p, 2 * i + 1);
    if (isfinite(a) && isfinite(b)) v[m++] = k ? b : a;
  }
  qsort(v, (size_t)m, sizeof *v, by_value);
  double a = m ? v[(int64_t)(0.005 * (double)(m - 1))] : -1,
         b = m ? v[(int64_t)ceil(0.995 * (double)(m - 1))] : 1;
  free(v);
  double pad = b > a ? 0.1 * (b - a) : 1;
  *lo = a - pad, *hi = b + pad;
  return FG_OK;
}

static fg_status check_points(const char *path, const fg_tensor *p, const fg_tensor *labels,
                              fg_err *e) {
  char s[128];
  if (p && (p->shape.ndim != 2 || p->shape.d[1] != 2))
    return fg_err_set(e, FG_E_SHAPE, "%s: points of shape %s; a 2-D plot needs [N, 2]", path,
                      fg_shape_str(&p->shape, s, sizeof s));
  if (labels && (labels->shape.ndim != 1 || labels->shape.d[0] != p->shape.d[0]))
    return fg_err_set(e, FG_E_SHAPE, "%s: labels of shape %s for %lld points", path,
                      fg_shape_str(&labels->shape, s, sizeof s), (long long)p->shape.d[0]);
  return FG_OK;
}

static void draw_points(frame *f, const fg_tensor *p, const fg_tensor *labels, double radius,
                        uint32_t color, double alpha) {
  for (int64_t i = 0; i < p->shape.d[0]; i++) {
    double x = fg_tensor_get(p, 2 * i), y = fg_tensor_get(p, 2 * i + 1);
    if (!isfinite(x) || !isfinite(y) || x < f->box.x0 || x > f->box.x1 || y < f->box.y0 ||
        y > f->box.y1)
      continue;
    uint32_t c = labels ? fg_raster_class_color((int64_t)fg_tensor_get(labels, i)) : color;
    fg_raster_disc(f->r, to_px(f, x), to_py(f, y), radius, c, alpha);
  }
}

fg_status fg_plot_scatter(const char *path, const fg_tensor *points, const fg_tensor *labels,
                          const fg_plot_opts *o, fg_err *e) {
  fg_status st = check_points(path, points, labels, e);
  fg_plot_box box = o->box ? *o->box : (fg_plot_box){0};
  if (st == FG_OK && !o->box) st = fit_axis(points, 0, &box.x0, &box.x1, e);
  if (st == FG_OK && !o->box) st = fit_axis(points, 1, &box.y0, &box.y1, e);
  frame f;
  if (st == FG_OK) st = frame_new(&f, o, 640, 640, &box, path, e);
  if (st != FG_OK) return st;
  draw_ticks(&f, true);
  /* many points: smaller and lighter, so that density still shows */
  double n = (double)points->shape.d[0], alpha = n > 5000 ? 0.35 : n > 1000 ? 0.6 : 0.9;
  draw_points(&f, points, labels, n > 5000 ? 1.2 : 1.8, 0x1f77b4, alpha);
  return frame_finish(&f, o, path, e);
}

fg_status fg_plot_density(const char *path, const fg_tensor *values, const fg_tensor *points,
                          const fg_plot_opts *o, fg_err *e) {
  char s[128];
  if (values->shape.ndim != 2 || values->shape.d[0] < 1 || values->shape.d[1] < 1)
    return fg_err_set(e, FG_E_SHAPE, "%s: density values of shape %s; a heatmap needs [H, W]", path,
                      fg_shape_str(&values->shape, s, sizeof s));
  if (!o->box) return fg_err_set(e, FG_E_MISUSE, "%s: a density plot needs its box", path);
  fg_status st = check_points(path, points, NULL, e);
  frame f;
  if (st == FG_OK) st = frame_new(&f, o, 640, 640, o->box, path, e);
  if (st != FG_OK) return st;
  int64_t gh = values->shape.d[0], gw = values->shape.d[1];
  double top = 0;
  for (int64_t i = 0; i < gh * gw; i++)
    if (isfinite(fg_tensor_get(values, i)) && fg_tensor_get(values, i) > top)
      top = fg_tensor_get(values, i);
  for (int64_t py = f.top; py < f.bottom; py++)
    for (int64_t px = f.left; px < f.right; px++) {
      int64_t j = (px - f.left) * gw / (f.right - f.left),
              i = (py - f.top) * gh / (f.bottom - f.top);
      double v = fg_tensor_get(values, i * gw + j);
      fg_raster_put(f.r, px, py, fg_raster_viridis(top > 0 && isfinite(v) ? v / top : 0), 1.0);
    }
  draw_ticks(&f, false);
  if (points) draw_points(&f, points, NULL, 0.9, 0xffffff, 0.45);
  return frame_finish(&f, o, path, e);
}

/* ---- line charts ---- */

static fg_plot_box fit_series(const fg_plot_series *s, int n) {
  fg_plot_box b = {INFINITY, -INFINITY, INFINITY, -INFINITY};
  for (int k = 0; k < n; k++)
    for (int64_t i = 0; i < s[k].n; i++) {
      if (!isfinite(s[k].x[i]) || !isfinite(s[k].y[i])) continue;
      b.x0 = fmin(b.x0, s[k].x[i]), b.x1 = fmax(b.x1, s[k].x[i]);
      b.y0 = fmin(b.y0, s[k].y[i]), b.y1 = fmax(b.y1, s[k].y[i]);
    }
  if (!(b.x1 > b.x0)) b.x0 = isfinite(b.x0) ? b.x0 - 1 : 0, b.x1 = b.x0 + 2;
  if (!(b.y1 > b.y0)) b.y0 = isfinite(b.y0) ? b.y0 - 1 : 0, b.y1 = b.y0 + 2;
  double pad = 0.05 * (b.y1 - b.y0);
  b.y0 -= pad, b.y1 += pad;
  return b;
}

static void draw_series(frame *f, const fg_plot_series *s) {
  bool have_last = false;
  double lx = 0, ly = 0;
  for (int64_t i = 0; i < s->n; i++) {
    if (!isfinite(s->x[i]) || !isfinite(s->y[i])) continue;
    double x = to_px(f, s->x[i]), y = to_py(f, fmax(fmin(s->y[i], f->box.y1), f->box.y0));
    if (s->dots) fg_raster_disc(f->r, x, y, 3.5, s->color, 1.0);
    else if (have_last) fg_raster_line(f->r, lx, ly, x, y, 2, s->color);
    lx = x, ly = y, have_last = true;
  }
}

static void draw_legend(frame *f, const fg_plot_series *s, int n) {
  int64_t y = f->top + 10;
  for (int k = 0; k < n; k++) {
    if (!s[k].name) continue;
    int64_t x = f->right - 12 - fg_raster_text_width(s[k].name, TEXT) - 28;
    if (s[k].dots) fg_raster_disc(f->r, (double)x + 10, (double)y + 7, 3.5, s[k].color, 1.0);
    else
      fg_raster_line(f->r, (double)x, (double)y + 7, (double)x + 20, (double)y + 7, 2, s[k].color);
    fg_raster_text(f->r, x + 28, y, s[k].name, TEXT, INK);
    y += 22;
  }
}

fg_status fg_plot_lines(const char *path, const fg_plot_series *series, int n_series,
                        const fg_plot_opts *o, fg_err *e) {
  fg_plot_box box = o->box ? *o->box : fit_series(series, n_series);
  frame f;
  fg_status st = frame_new(&f, o, 800, 480, &box, path, e);
  if (st != FG_OK) return st;
  draw_ticks(&f, true);
  for (int k = 0; k < n_series; k++) draw_series(&f, &series[k]);
  draw_legend(&f, series, n_series);
  return frame_finish(&f, o, path, e);
}
