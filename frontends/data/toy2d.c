/* 2-D toy distributions (see frontends/data/toy2d.h for each one's parameters), drawn from the
 * counter-based RNG: every random number is a function of (seed, purpose, point index), so a
 * data set depends on nothing but its arguments. */
#include <math.h>
#include <stdlib.h>
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

/* ---- the published settings, the exact densities, their entropies ---- */

typedef struct toy_settings {
  const char *name;
  double noise, scale;
} toy_settings;

/* FFJORD's lib/toy_data.py: 8gaussians has radius 4 and std 0.5, both divided by 1.414. */
static const toy_settings ffjord[] = {
    {"moons", 0.1, 2.0},
    {"8gaussians", 0.5 / 1.414, 4.0 / 1.414},
    {"checkerboard", 0.0, 2.0},
    {"rings", 0.08, 3.0},
};

fg_status fg_toy2d_defaults(const char *name, double *noise, double *scale, fg_err *e) {
  for (size_t i = 0; i < sizeof ffjord / sizeof *ffjord; i++)
    if (name && strcmp(name, ffjord[i].name) == 0) {
      *noise = ffjord[i].noise, *scale = ffjord[i].scale;
      return FG_OK;
    }
  return fg_err_set(e, FG_E_NOTFOUND, "unknown toy data set '%s'; known: %s",
                    name ? name : "(null)", fg_toy2d_names());
}

/* log Σ exp(v[i]), v holding n values */
static double log_sum_exp(const double *v, int n) {
  double m = -INFINITY, s = 0;
  for (int i = 0; i < n; i++) m = v[i] > m ? v[i] : m;
  if (!isfinite(m)) return m;
  for (int i = 0; i < n; i++) s += exp(v[i] - m);
  return m + log(s);
}

/* log of a 2-D isotropic normal density's constant 1 / (2π σ²) */
static double log_norm2(double sigma) { return -log(2 * TOY_PI * sigma * sigma); }

enum { ARC_POINTS = 4096 };

/* moons in the generator's unscaled coordinates u: half the mass on each arc, uniform in angle,
 * blurred by N(0, σ²). */
static double moons_log_density(double ux, double uy, double sigma, double *terms) {
  double inv = 1 / (2 * sigma * sigma);
  for (int j = 0; j < ARC_POINTS; j++) {
    double t = (j + 0.5) * TOY_PI / ARC_POINTS, c = cos(t), s = sin(t);
    double d0 = (ux - c) * (ux - c) + (uy - s) * (uy - s);
    double d1 = (ux - 1 + c) * (ux - 1 + c) + (uy - 0.5 + s) * (uy - 0.5 + s);
    terms[j] = -d0 * inv, terms[ARC_POINTS + j] = -d1 * inv;
  }
  return log_sum_exp(terms, 2 * ARC_POINTS) - log(2.0 * ARC_POINTS) + log_norm2(sigma);
}

/* log(I0(x) e^-x) for x >= 0: the power series up to 30, the asymptotic series beyond. */
static double log_i0e(double x) {
  if (x < 30) {
    double term = 1, sum = 1, q = x * x / 4;
    for (int k = 1; k < 200 && term > 1e-17 * sum; k++) {
      term *= q / ((double)k * k);
      sum += term;
    }
    return log(sum) - x;
  }
  double r = 1 / (8 * x), a = 1 + r * (1 + r * (9.0 / 2 + r * (75.0 / 2 + r * 3675.0 / 8)));
  return log(a) - 0.5 * log(2 * TOY_PI * x);
}

/* rings: a quarter of the mass on each circle, uniform in angle, blurred by N(0, σ²):
 * (1 / 2πσ²) exp(-(ρ - R)² / 2σ²) I0e(ρR / σ²) per circle. */
static double rings_log_density(double x, double y, double sigma, double scale) {
  static const double radius[4] = {1.0, 0.75, 0.5, 0.25};
  double rho = hypot(x, y), terms[4];
  for (int r = 0; r < 4; r++) {
    double big_r = scale * radius[r], d = rho - big_r;
    double bessel = log_i0e(rho * big_r / (sigma * sigma));
    terms[r] = log(0.25) + log_norm2(sigma) - d * d / (2 * sigma * sigma) + bessel;
  }
  return log_sum_exp(terms, 4);
}

static double eight_log_density(double x, double y, double sigma, double scale) {
  double terms[8];
  for (int k = 0; k < 8; k++) {
    double cx = scale * cos(k * TOY_PI / 4), cy = scale * sin(k * TOY_PI / 4);
    double d2 = (x - cx) * (x - cx) + (y - cy) * (y - cy);
    terms[k] = log(0.125) + log_norm2(sigma) - d2 / (2 * sigma * sigma);
  }
  return log_sum_exp(terms, 8);
}

/* P(a <= u + N(0, σ²) ... ): the mass of [a, b) seen from u, or the indicator when σ is 0 */
static double interval_mass(double u, double a, double b, double sigma) {
  if (sigma == 0) return u >= a && u < b ? 1.0 : 0.0;
  return 0.5 * (erfc((a - u) / (sigma * sqrt(2.0))) - erfc((b - u) / (sigma * sqrt(2.0))));
}

/* checkerboard in unscaled coordinates: density 1/8 on the 8 unit squares with floor(x) +
 * floor(y) even in [-2, 2]², blurred by N(0, σ²). */
static double checkerboard_log_density(double ux, double uy, double sigma) {
  double p = 0;
  for (int fx = -2; fx < 2; fx++)
    for (int fy = -2; fy < 2; fy++)
      if (((fx + fy) % 2 + 2) % 2 == 0)
        p += interval_mass(ux, fx, fx + 1, sigma) * interval_mass(uy, fy, fy + 1, sigma) / 8;
  return log(p);
}

fg_status fg_toy2d_log_density(const char *name, double noise, double scale, int64_t n,
                               const double *xy, double *out, fg_err *e) {
  double dn, ds;
  fg_status st = fg_toy2d_defaults(name, &dn, &ds, e);
  if (st == FG_OK) st = toy_check_args(name, n, noise, scale, e);
  if (st != FG_OK) return st;
  bool board = strcmp(name, "checkerboard") == 0, moons = strcmp(name, "moons") == 0;
  if (noise == 0 && !board)
    return fg_err_set(e, FG_E_MISUSE, "toy data '%s': without noise it has no density", name);
  double *terms = moons ? malloc(sizeof *terms * 2 * ARC_POINTS) : NULL;
  if (moons && !terms) return fg_err_set(e, FG_E_NOMEM, "toy data '%s': out of memory", name);
  for (int64_t i = 0; i < n; i++) {
    double x = xy[2 * i], y = xy[2 * i + 1];
    if (moons)
      out[i] = moons_log_density(x / scale + 0.5, y / scale + 0.25, noise, terms) - 2 * log(scale);
    else if (!strcmp(name, "rings")) out[i] = rings_log_density(x, y, noise, scale);
    else if (!strcmp(name, "8gaussians")) out[i] = eight_log_density(x, y, noise, scale);
    else out[i] = checkerboard_log_density(x / scale, y / scale, noise) - 2 * log(scale);
  }
  free(terms);
  return FG_OK;
}

fg_status fg_toy2d_entropy(const char *name, double noise, double scale, int64_t samples,
                           uint64_t seed, double *entropy, double *std_error, fg_err *e) {
  fg_tensor *t;
  fg_status st = fg_toy2d_generate(&t, name, samples, noise, scale, seed, e);
  if (st != FG_OK) return st;
  double *xy = malloc(sizeof *xy * (size_t)(2 * samples));
  double *logp = malloc(sizeof *logp * (size_t)samples);
  const float *v = fg_tensor_data(t);
  if (xy && logp) {
    for (int64_t i = 0; i < 2 * samples; i++) xy[i] = v[i];
    st = fg_toy2d_log_density(name, noise, scale, samples, xy, logp, e);
  } else {
    st = fg_err_set(e, FG_E_NOMEM, "toy data '%s': out of memory", name);
  }
  if (st == FG_OK) {
    double sum = 0, sq = 0;
    for (int64_t i = 0; i < samples; i++) sum += logp[i], sq += logp[i] * logp[i];
    double mean = sum / (double)samples, var = sq / (double)samples - mean * mean;
    *entropy = -mean;
    *std_error = sqrt((var > 0 ? var : 0) / (double)samples);
  }
  free(xy), free(logp);
  fg_tensor_free(t);
  return st;
}

fg_status fg_toy2d_generate(fg_tensor **out, const char *name, int64_t n, double noise,
                            double scale, uint64_t seed, fg_err *e) {
  return fg_toy2d_generate_labeled(out, NULL, name, n, noise, scale, seed, e);
}
