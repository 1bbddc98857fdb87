/* Plots as PNG files (drawn on core/formats/raster.h, no plotting library): the pictures of a
 * 2-D flow (samples as a scatter plot, the density p(x) as a heatmap with the training points
 * on it) and of a training run (loss curves).  Each has axes with round tick values, a title
 * and axis names in the built-in bitmap font.  Files replace their path atomically. */
#ifndef FG_PLOT_H
#define FG_PLOT_H

#include <stdbool.h>
#include <stdint.h>

#include "core/status.h"
#include "core/tensor.h"

/* The data coordinates a plot shows: x in [x0, x1], y in [y0, y1] (y1 at the top). */
typedef struct fg_plot_box {
  double x0, x1, y0, y1;
} fg_plot_box;

typedef struct fg_plot_opts {
  int64_t width, height; /* pixels of the whole picture; 0: 640 x 640, or 800 x 480 for lines */
  const char *title;           /* above the plot, or NULL */
  const char *x_label, *y_label; /* axis names, or NULL */
  const fg_plot_box *box;      /* NULL: fitted to the data (a margin added) */
} fg_plot_opts;

/* points [N, 2] (any float dtype) as dots, coloured by class when labels [N] (class indices) is
 * given (fg_raster_class_color), one colour otherwise.  The fitted box covers the 0.5 to 99.5
 * percentiles of each coordinate, so a few far outliers do not shrink the rest to a dot.
 * Non-finite points are left out. */
fg_status fg_plot_scatter(const char *path, const fg_tensor *points, const fg_tensor *labels,
                          const fg_plot_opts *o, fg_err *e);

/* A heatmap of values [H, W] >= 0 over o->box (required): values[i, j] is shown at
 * x = x0 + (j + 0.5)(x1 - x0)/W, y = y1 - (i + 0.5)(y1 - y0)/H (row 0 at the top), coloured
 * with viridis from 0 to the largest value; then points [N, 2] (may be NULL) drawn over it as
 * small white dots. */
fg_status fg_plot_density(const char *path, const fg_tensor *values, const fg_tensor *points,
                          const fg_plot_opts *o, fg_err *e);

/* One curve of a line chart: n points (x[i], y[i]) joined by a line, or drawn as dots.
 * Non-finite points are skipped. */
typedef struct fg_plot_series {
  const double *x, *y;
  int64_t n;
  const char *name; /* in the legend, or NULL */
  uint32_t color;   /* 0xRRGGBB */
  bool dots;
} fg_plot_series;

/* The series on one pair of axes, with a legend of their names. */
fg_status fg_plot_lines(const char *path, const fg_plot_series *series, int n_series,
                        const fg_plot_opts *o, fg_err *e);

#endif
