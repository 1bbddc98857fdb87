/* 2-D toy distributions (see frontends/data/toy2d.h for each one's parameters), drawn from the
 * counter-based RNG: every random number is a function of (seed, purpose, point index), so a
 * data set depends on nothing but its arguments. */
#include <math.h>
#include <string.h>

#include "frontends/data/toy2d.h"
#include "core/rng.h"

#define TOY_PI 3.14159265358979323846

/* Independent streams per purpose, derived from the caller's seed. */
enum { TOY_STREAM_NOISE = 1, TOY_STREAM_SHUFFLE, TOY_STREAM_PICK, TOY_STREAM_POS };

static uint64_t toy_stream(uint64_t seed, int purpose) {
  return fg_rng_bits(seed, 0x746f793264000000ull + (uint64_t)purpose);
}

/* numpy.linspace(start, stop, m, endpoint) at k */
static double toy_linspace(double start, double stop, int64_t m, bool endpoint, int64_t k) {
  int64_t div = endpoint ? m - 1 : m;
  return div > 0 ? start + (stop - start) * (double)k / (double)div : start;
}

/* Gaussian noise of std sigma added to every coordinate (two normals per point). */
static void toy_add_noise(float *xy, int64_t n, double sigma, uint64_t seed) {
  if (sigma == 0) return;
  uint64_t s = toy_stream(seed, TOY_STREAM_NOISE);
  for (int64_t i = 0; i < 2 * n; i++)
    xy[i] = (float)(xy[i] + sigma * fg_rng_normal(s, (uint64_t)i));
}

/* Fisher-Yates over points (and their labels), so that ordered constructions come out in
 * random order. */
static void toy_shuffle(float *xy, float *label, int64_t n, uint64_t seed) {
  uint64_t s = toy_stream(seed, TOY_STREAM_SHUFFLE);
  for (int64_t i = n - 1; i > 0; i--) {
    int64_t j = (int64_t)(fg_rng_bits(s, (uint64_t)i) % (uint64_t)(i + 1));
    float x = xy[2 * i], y = xy[2 * i + 1], l = label[i];
    xy[2 * i] = xy[2 * j];
    xy[2 * i + 1] = xy[2 * j + 1];
    label[i] = label[j];
    xy[2 * j] = x;
    xy[2 * j + 1] = y;
    label[j] = l;
  }
}

static void toy_moons(float *xy, float *label, int64_t n, double noise, double scale,
                      uint64_t seed) {
  int64_t n_out = n / 2, n_in = n - n_out;
  for (int64_t k = 0; k < n_out; k++) {
    double t = toy_linspace(0, TOY_PI, n_out, true, k);
    xy[2 * k] = (float)cos(t);
    xy[2 * k + 1] = (float)sin(t);
    label[k] = 0;
  }
  for (int64_t k = 0; k < n_in; k++) {
    double t = toy_linspace(0, TOY_PI, n_in, true, k);
    xy[2 * (n_out + k)] = (float)(1 - cos(t));
    xy[2 * (n_out + k) + 1] = (float)(1 - sin(t) - 0.5);
    label[n_out + k] = 1;
  }
  toy_shuffle(xy, label, n, seed);
  toy_add_noise(xy, n, noise, seed);
  for (int64_t i = 0; i < n; i++) {
    xy[2 * i] = (float)((xy[2 * i] - 0.5) * scale);
    xy[2 * i + 1] = (float)((xy[2 * i + 1] - 0.25) * scale);
  }
}

static void toy_8gaussians(float *xy, float *label, int64_t n, double noise, double scale,
                           uint64_t seed) {
  uint64_t s = toy_stream(seed, TOY_STREAM_PICK);
  for (int64_t i = 0; i < n; i++) {
    uint64_t k = fg_rng_bits(s, (uint64_t)i) % 8;
    double angle = (double)k * (TOY_PI / 4);
    label[i] = (float)k;
    xy[2 * i] = (float)(scale * cos(angle));
    xy[2 * i + 1] = (float)(scale * sin(angle));
  }
  toy_add_noise(xy, n, noise, seed);
}

/* FFJORD's construction: x uniform on [-2, 2), y on one of two unit bands picked at random,
 * shifted up by one where floor(x) is odd, so floor(x) + floor(y) is always even. */
static void toy_checkerboard(float *xy, float *label, int64_t n, double noise, double scale,
                             uint64_t seed) {
  uint64_t s = toy_stream(seed, TOY_STREAM_POS);
  for (int64_t i = 0; i < n; i++) {
    double x = fg_rng_uniform(s, 3 * (uint64_t)i) * 4 - 2;
    double band = (double)(fg_rng_bits(s, 3 * (uint64_t)i + 1) & 1) * 2;
    double y = fg_rng_uniform(s, 3 * (uint64_t)i + 2) - band;
    int64_t fx = (int64_t)floor(x);
    y += (double)(((fx % 2) + 2) % 2);
    label[i] = (float)(2 * (fx + 2) + (y >= 0)); /* which dark square: column, then band */
    xy[2 * i] = (float)x;
    xy[2 * i + 1] = (float)y;
  }
  toy_add_noise(xy, n, noise, seed);
  for (int64_t i = 0; i < 2 * n; i++) xy[i] = (float)(xy[i] * scale);
}

static void toy_rings(float *xy, float *label, int64_t n, double noise, double scale,
                      uint64_t seed) {
  static const double radius[4] = {1.0, 0.75, 0.5, 0.25};
  int64_t quarter = n / 4, at = 0;
  for (int r = 0; r < 4; r++) {
    int64_t m = r < 3 ? quarter : n - 3 * quarter;
    for (int64_t k = 0; k < m; k++, at++) {
      double t = toy_linspace(0, 2 * TOY_PI, m, false, k);
      xy[2 * at] = (float)(scale * radius[r] * cos(t));
      xy[2 * at + 1] = (float)(scale * radius[r] * sin(t));
      label[at] = (float)r;
    }
  }
  toy_shuffle(xy, label, n, seed);
  toy_add_noise(xy, n, noise, seed);
}

typedef void (*toy_fn)(float *xy, float *label, int64_t n, double noise, double scale,
                       uint64_t seed);

static const struct {
  const char *name;
  toy_fn fn;
  int classes;
} toy_table[] = {
    {"moons", toy_moons, 2},
    {"8gaussians", toy_8gaussians, 8},
    {"checkerboard", toy_checkerboard, 8},
    {"rings", toy_rings, 4},
};

int fg_toy2d_classes(const char *name) {
  for (size_t i = 0; name && i < sizeof toy_table / sizeof *toy_table; i++)
    if (strcmp(name, toy_table[i].name) == 0) return toy_table[i].classes;
  return 0;
}

const char *fg_toy2d_names(void) { return "moons, 8gaussians, checkerboard, rings"; }

static fg_status toy_check_args(const char *name, int64_t n, double noise, double scale,
                                fg_err *e) {
  if (n < 1 || n > INT64_MAX / 8)
    return fg_err_set(e, FG_E_MISUSE, "toy data '%s': n = %lld points; it must be at least 1", name,
                      (long long)n);
  if (!isfinite(noise) || noise < 0)
    return fg_err_set(e, FG_E_MISUSE, "toy data '%s': noise %g must be finite and >= 0", name,
                      noise);
  if (!isfinite(scale) || scale <= 0)
    return fg_err_set(e, FG_E_MISUSE, "toy data '%s': scale %g must be finite and > 0", name,
                      scale);
  return FG_OK;
}

fg_status fg_toy2d_generate_labeled(fg_tensor **out, fg_tensor **labels, const char *name,
                                    int64_t n, double noise, double scale, uint64_t seed,
                                    fg_err *e) {
  *out = NULL;
  if (labels) *labels = NULL;
  if (!name) name = "(null)";
  toy_fn fn = NULL;
  for (size_t i = 0; i < sizeof toy_table / sizeof *toy_table; i++)
    if (strcmp(name, toy_table[i].name) == 0) fn = toy_table[i].fn;
  if (!fn)
    return fg_err_set(e, FG_E_NOTFOUND, "unknown toy data set '%s'; known: %s", name,
                      fg_toy2d_names());
  fg_status st = toy_check_args(name, n, noise, scale, e);
  if (st != FG_OK) return st;
  fg_shape shape = fg_shape2(n, 2), lshape = fg_shape1(n);
  fg_tensor *lab = NULL;
  st = fg_tensor_new(out, FG_F32, &shape, e);
  if (st == FG_OK) st = fg_tensor_new(&lab, FG_F32, &lshape, e);
  if (st != FG_OK) {
    fg_tensor_free(*out);
    *out = NULL;
    return st;
  }
  fn(fg_tensor_data(*out), fg_tensor_data(lab), n, noise, scale, seed);
  if (labels) *labels = lab;
  else fg_tensor_free(lab);
  return FG_OK;
}

fg_status fg_toy2d_generate(fg_tensor **out, const char *name, int64_t n, double noise,
                            double scale, uint64_t seed, fg_err *e) {
  return fg_toy2d_generate_labeled(out, NULL, name, n, noise, scale, seed, e);
}
