/* PNG grids: written with fg_png_grid_write, read back with libpng, compared pixel by pixel. */
#include <math.h>
#include <png.h>

#include "core/formats/png_grid.h"
#include "io_helpers.h"

TestSuite(png, .init = io_setup, .fini = io_teardown);

typedef struct png_pixels {
  uint32_t width, height, channels;
  uint8_t *px;
} png_pixels;

/* Reads a PNG as stored (grey or RGB, 8-bit) with libpng's simplified API. */
static png_pixels png_load(const char *path, uint32_t format) {
  png_image img;
  memset(&img, 0, sizeof img);
  img.version = PNG_IMAGE_VERSION;
  cr_assert(png_image_begin_read_from_file(&img, path), "libpng reads %s: %s", path, img.message);
  cr_assert_eq(img.format, format, "stored format");
  png_pixels p = {img.width, img.height, PNG_IMAGE_PIXEL_CHANNELS(format), NULL};
  p.px = malloc(PNG_IMAGE_SIZE(img));
  cr_assert(png_image_finish_read(&img, NULL, p.px, 0, NULL), "%s", img.message);
  return p;
}

static uint8_t px_at(const png_pixels *p, uint32_t x, uint32_t y, uint32_t c) {
  return p->px[((size_t)y * p->width + x) * p->channels + c];
}

Test(png, grey_grid_layout_and_values) {
  fg_tensor *t;
  fg_shape s = fg_shape4(5, 1, 4, 3); /* 5 images of 4 rows x 3 columns */
  cr_assert_eq(fg_tensor_new(&t, FG_F32, &s, NULL), FG_OK);
  for (int64_t i = 0; i < 60; i++) fg_tensor_set(t, i, (double)i / 59);
  fg_err e;
  cr_assert_eq(fg_png_grid_write(io_path("g.png"), t, 3, 0, &e), FG_OK, "%s", e.msg);
  png_pixels p = png_load(io_path("g.png"), PNG_FORMAT_GRAY);
  cr_assert(p.width == 3 * 4 + 1 && p.height == 2 * 5 + 1, "%ux%u", p.width, p.height);
  for (int64_t i = 0; i < 5; i++)
    for (int y = 0; y < 4; y++)
      for (int x = 0; x < 3; x++) {
        uint32_t gx = (uint32_t)(i % 3 * 4 + 1 + x), gy = (uint32_t)(i / 3 * 5 + 1 + y);
        double v = fg_tensor_get(t, (i * 4 + y) * 3 + x);
        cr_assert_eq(px_at(&p, gx, gy, 0), (uint8_t)lround(v * 255), "image %lld (%d, %d)",
                     (long long)i, x, y);
      }
  for (uint32_t x = 0; x < p.width; x++) cr_assert_eq(px_at(&p, x, 0, 0), 128, "top frame");
  for (uint32_t y = 0; y < p.height; y++) cr_assert_eq(px_at(&p, 4, y, 0), 128, "separator");
  cr_assert_eq(px_at(&p, 3 * 4 - 1, 5 + 2, 0), 128, "the cell past the last image is empty");
  free(p.px);
  fg_tensor_free(t);
}

/* RGB from an [N, H, W, C] buffer permuted to [N, C, H, W] (a strided view), F64, 0..255. */
Test(png, rgb_from_a_view_in_byte_range) {
  fg_tensor *nhwc, *nchw;
  fg_shape s = fg_shape4(2, 2, 2, 3);
  cr_assert_eq(fg_tensor_new(&nhwc, FG_F64, &s, NULL), FG_OK);
  for (int64_t i = 0; i < 24; i++) fg_tensor_set(nhwc, i, (double)(i * 10));
  int perm[4] = {0, 3, 1, 2};
  cr_assert_eq(fg_tensor_permute(&nchw, nhwc, perm, NULL), FG_OK);
  fg_err e;
  cr_assert_eq(fg_png_grid_write(io_path("c.png"), nchw, 0, FG_PNG_GRID_RANGE_255, &e), FG_OK, "%s",
               e.msg);
  png_pixels p = png_load(io_path("c.png"), PNG_FORMAT_RGB);
  cr_assert(p.width == 2 * 3 + 1 && p.height == 1 * 3 + 1, "2 images: 2 columns, 1 row");
  for (int n = 0; n < 2; n++)
    for (int y = 0; y < 2; y++)
      for (int x = 0; x < 2; x++)
        for (int c = 0; c < 3; c++)
          cr_assert_eq(px_at(&p, (uint32_t)(n * 3 + 1 + x), (uint32_t)(1 + y), (uint32_t)c),
                       (((n * 2 + y) * 2 + x) * 3 + c) * 10);
  free(p.px);
  fg_tensor_free(nchw);
  fg_tensor_free(nhwc);
}

Test(png, clamps_and_default_columns) {
  fg_tensor *t;
  fg_shape s = fg_shape4(10, 1, 1, 4);
  cr_assert_eq(fg_tensor_new(&t, FG_F32, &s, NULL), FG_OK);
  double v[4] = {-1, 2, INFINITY, -INFINITY};
  for (int i = 0; i < 4; i++) fg_tensor_set(t, i, v[i]);
  fg_err e;
  cr_assert_eq(fg_png_grid_write(io_path("k.png"), t, 0, 0, &e), FG_OK, "%s", e.msg);
  png_pixels p = png_load(io_path("k.png"), PNG_FORMAT_GRAY);
  cr_assert(p.width == 4 * 5 + 1 && p.height == 3 * 2 + 1, "ceil(sqrt(10)) = 4 columns, 3 rows");
  uint8_t want[4] = {0, 255, 255, 0};
  for (uint32_t x = 0; x < 4; x++) cr_assert_eq(px_at(&p, 1 + x, 1, 0), want[x]);
  free(p.px);
  fg_tensor_free(t);
}

Test(png, errors) {
  fg_tensor *t;
  fg_err e;
  fg_shape s = fg_shape4(2, 2, 4, 4);
  cr_assert_eq(fg_tensor_new(&t, FG_F32, &s, NULL), FG_OK);
  io_assert_error(fg_png_grid_write(io_path("x.png"), t, 0, 0, &e), FG_E_SHAPE, e, io_path("x.png"),
                  "C = 1 or 3");
  fg_tensor_free(t);
  s = fg_shape3(2, 4, 4);
  cr_assert_eq(fg_tensor_new(&t, FG_F32, &s, NULL), FG_OK);
  io_assert_error(fg_png_grid_write(io_path("x.png"), t, 0, 0, &e), FG_E_SHAPE, e, io_path("x.png"),
                  "[N, C, H, W]");
  fg_tensor_free(t);
  s = fg_shape4(0, 1, 4, 4);
  cr_assert_eq(fg_tensor_new(&t, FG_F32, &s, NULL), FG_OK);
  io_assert_error(fg_png_grid_write(io_path("x.png"), t, 0, 0, &e), FG_E_SHAPE, e, io_path("x.png"),
                  "have no pixels");
  fg_tensor_free(t);
  s = fg_shape4(3, 3, 4, 5);
  cr_assert_eq(fg_tensor_new(&t, FG_F32, &s, NULL), FG_OK);
  fg_tensor_set(t, ((2 * 3 + 1) * 4 + 3) * 5 + 2, NAN);
  io_assert_error(fg_png_grid_write(io_path("x.png"), t, 0, 0, &e), FG_E_NUMERIC, e,
                  io_path("x.png"), "image 2 has NaN at channel 1, row 3, column 2");
  fg_tensor_set(t, ((2 * 3 + 1) * 4 + 3) * 5 + 2, 0);
  io_assert_error(fg_png_grid_write(io_path("none/x.png"), t, 0, 0, &e), FG_E_IO, e,
                  io_path("none/x.png"), "cannot create the temporary file");
  io_assert_error(fg_png_grid_write(io_dir, t, 0, 0, &e), FG_E_IO, e, io_dir,
                  "cannot replace it: Is a directory");
  io_assert_error(fg_png_grid_write(io_path("x.png"), t, -2, 0, &e), FG_E_MISUSE, e,
                  io_path("x.png"), "-2 columns");
  cr_assert_neq(access(io_path("x.png"), F_OK), 0, "no file from a failed call");
  fg_tensor_free(t);
}

/* ---- zoom, labels, rasters and plots ---- */

#include "core/formats/plot.h"
#include "core/formats/raster.h"

Test(png, zoomed_grid_with_labels_has_the_expected_size) {
  fg_tensor *t;
  fg_shape s = fg_shape4(5, 1, 4, 3);
  cr_assert_eq(fg_tensor_new(&t, FG_F32, &s, NULL), FG_OK);
  for (int64_t i = 0; i < 60; i++) fg_tensor_set(t, i, (double)i / 59);
  const char *rows[2] = {"r0", "r1"}, *cols[3] = {"a", "b", "c"};
  fg_png_grid_opts o = {
      .cols = 3, .zoom = 2, .caption = "ab", .row_labels = rows, .col_labels = cols};
  fg_err e;
  cr_assert_eq(fg_png_grid_write_opts(io_path("z.png"), t, &o, &e), FG_OK, "%s", e.msg);
  png_pixels p = png_load(io_path("z.png"), PNG_FORMAT_GRAY);
  /* text at scale 1: lines of 7 + 4 pixels (caption, column labels) above; the widest row label
   * (2 glyphs: 11 pixels) + 6 on the left; cells of 3·2 x 4·2 pixels plus their 1-pixel lines */
  int64_t left = 11 + 6, top = 2 * 11;
  cr_assert(p.width == left + 3 * (3 * 2 + 1) + 1 && p.height == top + 2 * (4 * 2 + 1) + 1, "%ux%u",
            p.width, p.height);
  for (int y = 0; y < 4; y++) /* image 0 pixel (x, y) fills a 2 x 2 block */
    for (int x = 0; x < 3; x++)
      for (int d = 0; d < 4; d++)
        cr_assert_eq(
            px_at(&p, (uint32_t)(left + 1 + 2 * x + d % 2), (uint32_t)(top + 1 + 2 * y + d / 2), 0),
            (uint8_t)lround(fg_tensor_get(t, y * 3 + x) * 255));
  int dark = 0;
  for (uint32_t y = 0; y < (uint32_t)top; y++)
    for (uint32_t x = 0; x < p.width; x++) dark += px_at(&p, x, y, 0) < 64;
  cr_assert_gt(dark, 10, "the caption and column labels are written");
  free(p.px);
  fg_tensor_free(t);
}

Test(png, a_28x28_image_is_zoomed_to_84_pixels) {
  fg_tensor *t;
  fg_shape s = fg_shape4(64, 1, 28, 28);
  cr_assert_eq(fg_tensor_new(&t, FG_F32, &s, NULL), FG_OK);
  fg_png_grid_opts o = {.cols = 8};
  fg_err e;
  cr_assert_eq(fg_png_grid_write_opts(io_path("s.png"), t, &o, &e), FG_OK, "%s", e.msg);
  png_pixels p = png_load(io_path("s.png"), PNG_FORMAT_GRAY);
  cr_assert(p.width == 8 * 85 + 1 && p.height == 8 * 85 + 1,
            "%ux%u (a 64-image grid was 233 x 233)", p.width, p.height);
  free(p.px);
  o.zoom = 65;
  io_assert_error(fg_png_grid_write_opts(io_path("s.png"), t, &o, &e), FG_E_MISUSE, e,
                  io_path("s.png"), "zoom 65");
  fg_tensor_free(t);
}

Test(png, raster_draws_and_writes_grey_and_rgb) {
  fg_raster *r;
  fg_err e;
  cr_assert_eq(fg_raster_new(&r, 10, 7, 3, 0xffffff, &e), FG_OK);
  fg_raster_rect(r, 2, 1, 3, 2, 0xff0000);
  fg_raster_rect(r, -5, 6, 100, 100, 0x0000ff); /* clipped to the last row */
  fg_raster_put(r, 9, 0, 0x00ff00, 0.5);        /* half green over white */
  cr_assert_eq(fg_raster_write_png(r, io_path("r.png"), &e), FG_OK, "%s", e.msg);
  png_pixels p = png_load(io_path("r.png"), PNG_FORMAT_RGB);
  cr_assert(p.width == 10 && p.height == 7);
  cr_assert(px_at(&p, 2, 1, 0) == 255 && px_at(&p, 2, 1, 1) == 0 && px_at(&p, 4, 2, 2) == 0,
            "red rectangle");
  cr_assert(px_at(&p, 5, 1, 1) == 255, "only 3 wide");
  cr_assert(px_at(&p, 0, 6, 2) == 255 && px_at(&p, 0, 6, 0) == 0, "blue last row");
  cr_assert(px_at(&p, 9, 0, 0) == 128 && px_at(&p, 9, 0, 1) == 255, "blended");
  free(p.px);
  fg_raster_free(r);
  cr_assert_eq(fg_raster_new(&r, 4, 4, 1, 0x000000, &e), FG_OK);
  fg_raster_put(r, 1, 1, 0xffffff, 1.0);
  cr_assert_eq(fg_raster_write_png(r, io_path("g.png"), &e), FG_OK, "%s", e.msg);
  p = png_load(io_path("g.png"), PNG_FORMAT_GRAY);
  cr_assert(px_at(&p, 1, 1, 0) == 255 && px_at(&p, 0, 0, 0) == 0, "grey stores luminance");
  free(p.px);
  fg_raster_free(r);
  cr_assert_eq(fg_raster_text_width("abc", 2), (3 * 6 - 1) * 2);
  cr_assert_eq(fg_raster_new(&r, 0, 4, 3, 0, &e), FG_E_MISUSE);
  cr_assert_eq(fg_raster_new(&r, 4, 4, 2, 0, &e), FG_E_MISUSE);
}

/* n points on a circle of radius 2, labels alternating. */
static void circle(int64_t n, fg_tensor **pts, fg_tensor **labels) {
  fg_shape s = fg_shape2(n, 2), l = fg_shape1(n);
  cr_assert_eq(fg_tensor_new(pts, FG_F32, &s, NULL), FG_OK);
  cr_assert_eq(fg_tensor_new(labels, FG_F32, &l, NULL), FG_OK);
  for (int64_t i = 0; i < n; i++) {
    fg_tensor_set(*pts, 2 * i, 2 * cos(0.1 * (double)i)),
        fg_tensor_set(*pts, 2 * i + 1, 2 * sin(0.1 * (double)i));
    fg_tensor_set(*labels, i, (double)(i % 2));
  }
}

Test(png, plots_decode_with_the_expected_size) {
  fg_tensor *pts, *labels, *values;
  circle(300, &pts, &labels);
  fg_err e;
  fg_plot_opts o = {.title = "scatter", .x_label = "x1", .y_label = "x2"};
  cr_assert_eq(fg_plot_scatter(io_path("sc.png"), pts, labels, &o, &e), FG_OK, "%s", e.msg);
  png_pixels p = png_load(io_path("sc.png"), PNG_FORMAT_RGB);
  cr_assert(p.width == 640 && p.height == 640, "%ux%u", p.width, p.height);
  int blue = 0, orange = 0; /* the two classes' colours (#1f77b4, #ff7f0e), blended over white */
  for (uint32_t i = 0; i < p.width * p.height; i++) {
    int r = p.px[3 * i], b = p.px[3 * i + 2];
    blue += b - r > 60, orange += r - b > 60;
  }
  cr_assert(blue > 100 && orange > 100, "both classes drawn: %d / %d pixels", blue, orange);
  free(p.px);
  fg_shape vs = fg_shape2(20, 30);
  cr_assert_eq(fg_tensor_new(&values, FG_F64, &vs, NULL), FG_OK);
  for (int64_t i = 0; i < 600; i++) fg_tensor_set(values, i, (double)(i % 30));
  fg_plot_box box = {-3, 3, -3, 3};
  fg_plot_opts d = {.width = 300, .height = 200, .box = &box};
  cr_assert_eq(fg_plot_density(io_path("d.png"), values, pts, &d, &e), FG_OK, "%s", e.msg);
  p = png_load(io_path("d.png"), PNG_FORMAT_RGB);
  cr_assert(p.width == 300 && p.height == 200, "%ux%u", p.width, p.height);
  free(p.px);
  double x[3] = {0, 1, 2}, y[3] = {3, 2, 2.5};
  fg_plot_series s = {x, y, 3, "loss", 0x1f77b4, false};
  fg_plot_opts l = {0};
  cr_assert_eq(fg_plot_lines(io_path("l.png"), &s, 1, &l, &e), FG_OK, "%s", e.msg);
  p = png_load(io_path("l.png"), PNG_FORMAT_RGB);
  cr_assert(p.width == 800 && p.height == 480, "%ux%u", p.width, p.height);
  free(p.px);
  d.box = NULL;
  io_assert_error(fg_plot_density(io_path("x.png"), values, pts, &d, &e), FG_E_MISUSE, e,
                  io_path("x.png"), "needs its box");
  io_assert_error(fg_plot_scatter(io_path("x.png"), values, NULL, &o, &e), FG_E_SHAPE, e,
                  io_path("x.png"), "[N, 2]");
  fg_tensor_free(pts), fg_tensor_free(labels), fg_tensor_free(values);
}
