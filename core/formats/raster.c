/* Rasters (raster.h): drawing primitives on an 8-bit canvas and the PNG writer, which uses
 * libpng's simplified API (failures come back as a message, not a longjmp out of our frames)
 * into a file that replaces the target atomically (core/atomic_file.h). */
#include "core/formats/raster.h"

#include <math.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/atomic_file.h"
#include "core/formats/bitmap_font.h"

fg_status fg_raster_new(fg_raster **out, int64_t width, int64_t height, int channels, uint32_t fill,
                        fg_err *e) {
  *out = NULL;
  if (width < 1 || height < 1 || width > FG_RASTER_MAX_SIDE || height > FG_RASTER_MAX_SIDE ||
      (channels != 1 && channels != 3))
    return fg_err_set(e, FG_E_MISUSE, "raster: %lld x %lld pixels of %d channels (sides 1..%d, "
                      "1 or 3 channels)", (long long)width, (long long)height, channels,
                      FG_RASTER_MAX_SIDE);
  fg_raster *r = calloc(1, sizeof *r);
  size_t bytes = (size_t)width * (size_t)height * (size_t)channels;
  if (r) r->px = malloc(bytes);
  if (!r || !r->px) {
    free(r);
    return fg_err_set(e, FG_E_NOMEM, "raster: out of memory for %lld x %lld pixels",
                      (long long)width, (long long)height);
  }
  r->width = width, r->height = height, r->channels = channels;
  fg_raster_rect(r, 0, 0, width, height, fill);
  *out = r;
  return FG_OK;
}

void fg_raster_free(fg_raster *r) {
  if (!r) return;
  free(r->px);
  free(r);
}

static uint8_t channel(uint32_t rgb, int c) { return (uint8_t)(rgb >> (16 - 8 * c)); }

/* Rec. 601 luma, what a grey canvas stores of a colour. */
static uint8_t luma(uint32_t rgb) {
  return (uint8_t)lround(0.299 * channel(rgb, 0) + 0.587 * channel(rgb, 1) +
                         0.114 * channel(rgb, 2));
}

void fg_raster_put(fg_raster *r, int64_t x, int64_t y, uint32_t rgb, double alpha) {
  if (x < 0 || y < 0 || x >= r->width || y >= r->height || !(alpha > 0)) return;
  if (alpha > 1) alpha = 1;
  uint8_t *p = r->px + ((size_t)y * (size_t)r->width + (size_t)x) * (size_t)r->channels;
  for (int c = 0; c < r->channels; c++) {
    double v = r->channels == 1 ? luma(rgb) : channel(rgb, c);
    p[c] = (uint8_t)lround(alpha * v + (1 - alpha) * p[c]);
  }
}

void fg_raster_rect(fg_raster *r, int64_t x, int64_t y, int64_t w, int64_t h, uint32_t rgb) {
  int64_t x0 = x < 0 ? 0 : x, y0 = y < 0 ? 0 : y;
  int64_t x1 = x + w > r->width ? r->width : x + w, y1 = y + h > r->height ? r->height : y + h;
  for (int64_t j = y0; j < y1; j++)
    for (int64_t i = x0; i < x1; i++) fg_raster_put(r, i, j, rgb, 1.0);
}

void fg_raster_disc(fg_raster *r, double cx, double cy, double radius, uint32_t rgb, double alpha) {
  if (!isfinite(cx) || !isfinite(cy) || fabs(cx) > 1e9 || fabs(cy) > 1e9) return;
  int64_t x0 = (int64_t)floor(cx - radius), x1 = (int64_t)ceil(cx + radius);
  int64_t y0 = (int64_t)floor(cy - radius), y1 = (int64_t)ceil(cy + radius);
  for (int64_t y = y0; y <= y1; y++)
    for (int64_t x = x0; x <= x1; x++) {
      double d = hypot((double)x - cx, (double)y - cy);
      if (d <= radius + 0.5)
        fg_raster_put(r, x, y, rgb, alpha * (d <= radius - 0.5 ? 1 : radius + 0.5 - d));
    }
}

void fg_raster_line(fg_raster *r, double x0, double y0, double x1, double y1, double width,
                    uint32_t rgb) {
  double len = hypot(x1 - x0, y1 - y0);
  if (!isfinite(len) || len > 1e7) return;
  int64_t steps = (int64_t)ceil(len * 2) + 1;
  for (int64_t k = 0; k <= steps; k++) { /* discs every half pixel: a line of even width */
    double t = (double)k / (double)steps;
    double x = x0 + t * (x1 - x0), y = y0 + t * (y1 - y0);
    if (width <= 1.0) fg_raster_put(r, lround(x), lround(y), rgb, 1.0);
    else fg_raster_disc(r, x, y, width / 2, rgb, 1.0);
  }
}

int64_t fg_raster_text_width(const char *text, int scale) {
  int64_t n = (int64_t)strlen(text);
  return n ? (n * (FG_FONT_WIDTH + 1) - 1) * scale : 0;
}

int64_t fg_raster_text_height(int scale) { return FG_FONT_HEIGHT * scale; }

int64_t fg_raster_text(fg_raster *r, int64_t x, int64_t y, const char *text, int scale,
                       uint32_t rgb) {
  int64_t at = x;
  for (const char *s = text; *s; s++, at += (FG_FONT_WIDTH + 1) * scale) {
    const uint8_t *rows = fg_font_glyph(*s);
    for (int j = 0; j < FG_FONT_HEIGHT; j++)
      for (int i = 0; i < FG_FONT_WIDTH; i++)
        if (rows[j] >> (FG_FONT_WIDTH - 1 - i) & 1)
          fg_raster_rect(r, at + i * scale, y + j * scale, scale, scale, rgb);
  }
  return fg_raster_text_width(text, scale);
}

typedef struct png_file {
  const char *path;
  const fg_raster *r;
} png_file;

static fg_status png_write(FILE *fp, void *ctx, fg_err *e) {
  const png_file *f = ctx;
  png_image img;
  memset(&img, 0, sizeof img);
  img.version = PNG_IMAGE_VERSION;
  img.width = (png_uint_32)f->r->width;
  img.height = (png_uint_32)f->r->height;
  img.format = f->r->channels == 3 ? PNG_FORMAT_RGB : PNG_FORMAT_GRAY;
  int ok = png_image_write_to_stdio(&img, fp, 0, f->r->px, 0, NULL);
  char msg[sizeof img.message];
  memcpy(msg, img.message, sizeof msg);
  png_image_free(&img);
  if (ok || ferror(fp)) return FG_OK; /* a failed write is reported by fg_atomic_file_write */
  return fg_err_set(e, FG_E_IO, "%s: writing the PNG failed: %s", f->path,
                    msg[0] ? msg : "libpng gave no reason");
}

fg_status fg_raster_write_png(const fg_raster *r, const char *path, fg_err *e) {
  return fg_atomic_file_write(path, png_write, &(png_file){path, r}, e);
}

/* viridis sampled at 9 evenly spaced points, linearly interpolated between them */
static const uint32_t viridis[] = {0x440154, 0x472d7b, 0x3b528b, 0x2c728e, 0x21918c,
                                   0x28ae80, 0x5ec962, 0xaddc30, 0xfde725};

uint32_t fg_raster_viridis(double t) {
  enum { N = sizeof viridis / sizeof *viridis };
  if (!(t > 0)) t = 0;
  if (t > 1) t = 1;
  double at = t * (N - 1);
  int k = (int)at;
  if (k >= N - 1) return viridis[N - 1];
  double f = at - k;
  uint32_t out = 0;
  for (int c = 0; c < 3; c++)
    out = out << 8 |
          (uint32_t)lround((1 - f) * channel(viridis[k], c) + f * channel(viridis[k + 1], c));
  return out;
}

uint32_t fg_raster_class_color(int64_t k) {
  static const uint32_t tableau[] = {0x1f77b4, 0xff7f0e, 0x2ca02c, 0xd62728, 0x9467bd,
                                     0x8c564b, 0xe377c2, 0x7f7f7f, 0xbcbd22, 0x17becf};
  enum { N = sizeof tableau / sizeof *tableau };
  return tableau[(k % N + N) % N];
}
