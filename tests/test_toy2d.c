/* 2-D toy generators: each one's geometry (exact without noise, statistical with it),
 * determinism per seed, and argument checking. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "frontends/data/toy2d.h"

static fg_tensor *toy(const char *name, int64_t n, double noise, double scale, uint64_t seed) {
  fg_tensor *t;
  fg_err e;
  cr_assert_eq(fg_toy2d_generate(&t, name, n, noise, scale, seed, &e), FG_OK, "%s", e.msg);
  cr_assert(t->dtype == FG_F32 && t->shape.ndim == 2 && t->shape.d[0] == n && t->shape.d[1] == 2);
  return t;
}

/* Distance from (x, y) (unshifted, unscaled moons coordinates) to the nearer moon arc, and
 * which arc that is (0 upper, 1 lower). */
static double moon_dist(double x, double y, int *which) {
  double up = y >= 0 ? fabs(hypot(x, y) - 1) : hypot(fabs(x) - 1, y);
  double cx = x - 1, cy = y - 0.5;
  double lo = cy <= 0 ? fabs(hypot(cx, cy) - 1) : hypot(fabs(cx) - 1, cy);
  *which = lo < up;
  return lo < up ? lo : up;
}

Test(toy2d, moons_lie_on_two_arcs) {
  int64_t n = 1001;
  double scale = 2;
  fg_tensor *t = toy("moons", n, 0, scale, 7);
  const float *p = fg_tensor_data(t);
  int count[2] = {0, 0}, first_half[2] = {0, 0};
  for (int64_t i = 0; i < n; i++) {
    int w;
    double d = moon_dist(p[2 * i] / scale + 0.5, p[2 * i + 1] / scale + 0.25, &w);
    cr_assert_lt(d, 1e-5, "point %lld is %g off the arcs", (long long)i, d);
    count[w]++;
    if (i < n / 2) first_half[w]++;
  }
  cr_assert(count[0] == n / 2 && count[1] == n - n / 2, "sklearn's split: %d %d", count[0],
            count[1]);
  cr_assert(first_half[0] > 150 && first_half[1] > 150, "shuffled: %d %d", first_half[0],
            first_half[1]);
  fg_tensor_free(t);
}

Test(toy2d, moons_noise_has_the_requested_spread) {
  int64_t n = 20000;
  double sigma = 0.05;
  fg_tensor *t = toy("moons", n, sigma, 1, 3);
  const float *p = fg_tensor_data(t);
  double sum = 0, mx = 0, my = 0;
  for (int64_t i = 0; i < n; i++) {
    int w;
    sum += moon_dist(p[2 * i] + 0.5, p[2 * i + 1] + 0.25, &w);
    mx += p[2 * i];
    my += p[2 * i + 1];
  }
  /* the distance to a curve of radius 1 is about |N(0, sigma)|, whose mean is sigma·sqrt(2/pi) */
  double mean = sum / (double)n, want = sigma * sqrt(2 / M_PI);
  cr_assert(fabs(mean - want) < 0.1 * want, "mean distance %g, expected about %g", mean, want);
  cr_assert(fabs(mx / (double)n) < 0.01 && fabs(my / (double)n) < 0.01, "centred: %g %g",
            mx / (double)n, my / (double)n);
  fg_tensor_free(t);
}

Test(toy2d, deterministic_per_seed) {
  const char *names[] = {"moons", "8gaussians", "checkerboard", "rings"};
  for (int k = 0; k < 4; k++) {
    fg_tensor *a = toy(names[k], 500, 0.1, 1.5, 42), *b = toy(names[k], 500, 0.1, 1.5, 42);
    fg_tensor *c = toy(names[k], 500, 0.1, 1.5, 43);
    cr_assert_eq(memcmp(fg_tensor_data(a), fg_tensor_data(b), 500 * 2 * sizeof(float)), 0,
                 "%s: same seed, same data", names[k]);
    cr_assert_neq(memcmp(fg_tensor_data(a), fg_tensor_data(c), 500 * 2 * sizeof(float)), 0,
                  "%s: another seed, other data", names[k]);
    fg_tensor_free(a);
    fg_tensor_free(b);
    fg_tensor_free(c);
  }
}

Test(toy2d, eight_gaussians) {
  int64_t n = 8000;
  double r = 2.5;
  fg_tensor *t = toy("8gaussians", n, 0, r, 1);
  const float *p = fg_tensor_data(t);
  int count[8] = {0};
  for (int64_t i = 0; i < n; i++) {
    cr_assert(fabs(hypot(p[2 * i], p[2 * i + 1]) - r) < 1e-5);
    double k = atan2(p[2 * i + 1], p[2 * i]) / (M_PI / 4);
    cr_assert(fabs(k - round(k)) < 1e-5, "on a multiple of 45 degrees");
    count[((int)lround(k) + 8) % 8]++;
  }
  for (int k = 0; k < 8; k++)
    cr_assert(count[k] > 850 && count[k] < 1150, "centre %d: %d", k, count[k]);
  fg_tensor_free(t);
  /* with noise: each point's offset from its centre has the requested std */
  double sigma = 0.2, ss = 0;
  t = toy("8gaussians", n, sigma, r, 1);
  p = fg_tensor_data(t);
  for (int64_t i = 0; i < n; i++) {
    double k = round(atan2(p[2 * i + 1], p[2 * i]) / (M_PI / 4));
    double dx = p[2 * i] - r * cos(k * M_PI / 4), dy = p[2 * i + 1] - r * sin(k * M_PI / 4);
    ss += dx * dx + dy * dy;
  }
  double std = sqrt(ss / (2.0 * (double)n));
  cr_assert(fabs(std - sigma) < 0.01, "std %g", std);
  fg_tensor_free(t);
}

Test(toy2d, checkerboard) {
  int64_t n = 16000;
  double scale = 2;
  fg_tensor *t = toy("checkerboard", n, 0, scale, 5);
  const float *p = fg_tensor_data(t);
  int cells[4][4] = {{0}};
  for (int64_t i = 0; i < n; i++) {
    double x = p[2 * i] / scale, y = p[2 * i + 1] / scale;
    cr_assert(x >= -2 && x < 2 && y >= -2 && y < 2, "inside the board: %g %g", x, y);
    int fx = (int)floor(x), fy = (int)floor(y);
    cr_assert_eq(((fx + fy) % 2 + 2) % 2, 0, "on a dark square: %g %g", x, y);
    cells[fx + 2][fy + 2]++;
  }
  for (int a = 0; a < 4; a++)
    for (int b = 0; b < 4; b++)
      if ((a + b) % 2 == 0)
        cr_assert(cells[a][b] > 1700 && cells[a][b] < 2300, "square %d %d: %d", a, b, cells[a][b]);
  fg_tensor_free(t);
}

Test(toy2d, rings) {
  int64_t n = 1003;
  double scale = 3;
  fg_tensor *t = toy("rings", n, 0, scale, 9);
  const float *p = fg_tensor_data(t);
  int count[4] = {0};
  for (int64_t i = 0; i < n; i++) {
    double r = hypot(p[2 * i], p[2 * i + 1]) / scale;
    int k = (int)lround((1 - r) / 0.25);
    cr_assert(k >= 0 && k < 4 && fabs(r - (1 - 0.25 * k)) < 1e-5, "radius %g", r);
    count[k]++;
  }
  cr_assert(count[0] == 250 && count[1] == 250 && count[2] == 250 && count[3] == 253,
            "FFJORD's split: %d %d %d %d", count[0], count[1], count[2], count[3]);
  fg_tensor_free(t);
}

Test(toy2d, bad_arguments) {
  fg_tensor *t;
  fg_err e;
  cr_assert_eq(fg_toy2d_generate(&t, "spirals", 10, 0, 1, 0, &e), FG_E_NOTFOUND);
  cr_assert(strstr(e.msg,
                   "unknown toy data set 'spirals'; known: moons, 8gaussians, "
                   "checkerboard, rings"),
            "%s", e.msg);
  cr_assert_eq(t, NULL);
  cr_assert_eq(fg_toy2d_generate(&t, "moons", 0, 0, 1, 0, &e), FG_E_MISUSE);
  cr_assert(strstr(e.msg, "n = 0"), "%s", e.msg);
  cr_assert_eq(fg_toy2d_generate(&t, "moons", 10, -0.1, 1, 0, &e), FG_E_MISUSE);
  cr_assert(strstr(e.msg, "noise"), "%s", e.msg);
  cr_assert_eq(fg_toy2d_generate(&t, "rings", 10, 0, NAN, 0, &e), FG_E_MISUSE);
  cr_assert(strstr(e.msg, "scale"), "%s", e.msg);
  cr_assert_eq(fg_toy2d_generate(&t, "rings", 10, 0, 0, 0, &e), FG_E_MISUSE);
  t = toy("moons", 1, 0, 1, 0); /* the smallest set still works */
  fg_tensor_free(t);
}

/* ---- published settings and exact densities ---- */

Test(toy2d, defaults_are_ffjords_settings) {
  double noise, scale;
  fg_err e;
  cr_assert_eq(fg_toy2d_defaults("8gaussians", &noise, &scale, &e), FG_OK);
  cr_expect_float_eq(noise, 0.5 / 1.414, 1e-15, "FFJORD: std 0.5, then divided by 1.414");
  cr_expect_float_eq(scale, 4.0 / 1.414, 1e-15, "FFJORD: radius 4, then divided by 1.414");
  cr_assert_eq(fg_toy2d_defaults("checkerboard", &noise, &scale, &e), FG_OK);
  cr_expect(noise == 0 && scale == 2);
  cr_assert_eq(fg_toy2d_defaults("rings", &noise, &scale, &e), FG_OK);
  cr_expect(noise == 0.08 && scale == 3);
  cr_assert_eq(fg_toy2d_defaults("moons", &noise, &scale, &e), FG_OK);
  cr_expect(noise == 0.1 && scale == 2);
  cr_expect_eq(fg_toy2d_defaults("spirals", &noise, &scale, &e), FG_E_NOTFOUND);
}

/* ∫ p over a grid covering the support (midpoint rule) */
static double integral(const char *name, double noise, double scale, double half, double step) {
  int64_t m = (int64_t)(2 * half / step), n = m * m;
  double *xy = malloc(sizeof *xy * (size_t)(2 * n)), *logp = malloc(sizeof *logp * (size_t)n), sum = 0;
  for (int64_t i = 0; i < m; i++)
    for (int64_t j = 0; j < m; j++) {
      xy[2 * (i * m + j)] = -half + (i + 0.5) * step;
      xy[2 * (i * m + j) + 1] = -half + (j + 0.5) * step;
    }
  fg_err e;
  cr_assert_eq(fg_toy2d_log_density(name, noise, scale, n, xy, logp, &e), FG_OK, "%s", e.msg);
  for (int64_t i = 0; i < n; i++) sum += exp(logp[i]) * step * step;
  free(xy), free(logp);
  return sum;
}

Test(toy2d, densities_integrate_to_one) {
  cr_expect_float_eq(integral("8gaussians", 0.5 / 1.414, 4.0 / 1.414, 5, 0.02), 1.0, 1e-4);
  cr_expect_float_eq(integral("rings", 0.08, 3, 4, 0.01), 1.0, 1e-4);
  cr_expect_float_eq(integral("checkerboard", 0.1, 2, 5, 0.02), 1.0, 1e-4);
  cr_expect_float_eq(integral("moons", 0.25, 2, 5, 0.05), 1.0, 1e-3);
}

/* Where the entropy is known in closed form, the Monte Carlo estimate finds it. */
Test(toy2d, entropies_match_closed_forms) {
  double h, se;
  fg_err e;
  cr_assert_eq(fg_toy2d_entropy("checkerboard", 0, 2, 20000, 1, &h, &se, &e), FG_OK, "%s", e.msg);
  cr_expect_float_eq(h, log(32.0), 1e-12, "uniform on 8 squares of side 2");
  cr_expect_lt(se, 1e-6);
  /* well separated Gaussians: log 8 + log(2 pi e sigma^2) */
  cr_assert_eq(fg_toy2d_entropy("8gaussians", 0.1, 3, 50000, 1, &h, &se, &e), FG_OK, "%s", e.msg);
  double want = log(8.0) + log(2 * M_PI * M_E * 0.01);
  cr_expect(fabs(h - want) < 4 * se + 1e-3, "%g vs %g (se %g)", h, want, se);
  cr_expect_eq(fg_toy2d_entropy("moons", 0, 2, 10, 1, &h, &se, &e), FG_E_MISUSE, "no noise, no density");
}
