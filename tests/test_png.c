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
