/* 2-D toy data sets: pure functions of their parameters and a seed. */
#ifndef FG_DATA_TOY2D_H
#define FG_DATA_TOY2D_H

#include <stdint.h>

#include "core/status.h"
#include "core/tensor.h"

/* --- 2-D toy data, frontends/data/toy2d.c -------------------------------------------------------
 * n points as an [n, 2] float32 tensor, a pure function of (name, n, noise, scale, seed):
 *   "moons"        sklearn's make_moons: an upper unit half circle centred at (0, 0) and a lower
 *                  one centred at (1, 0.5), points evenly spaced along each (n/2 on the upper,
 *                  the rest on the lower), Gaussian noise of std `noise` added, then shifted by
 *                  (-0.5, -0.25) so the set is centred and multiplied by `scale`; shuffled.
 *                  (FFJORD's moons: noise 0.1, scale 2.)
 *   "8gaussians"   8 Gaussians of std `noise` centred on a circle of radius `scale` at angles
 *                  k·45°, k chosen uniformly per point.  (FFJORD: radius 4 and std 0.5, both
 *                  divided by 1.414: scale 2.8289, noise 0.35361.)
 *   "checkerboard" uniform on the 8 dark squares of a 4x4 board of unit squares covering
 *                  [-2, 2]², plus Gaussian noise of std `noise`, all multiplied by `scale`.
 *                  (FFJORD: noise 0, scale 2.)
 *   "rings"        4 concentric circles of radii scale·{1, 0.75, 0.5, 0.25}, points evenly
 *                  spaced (n/4 on each of the three outer rings, the rest on the innermost),
 *                  Gaussian noise of std `noise` added; shuffled.  (FFJORD: scale 3, noise 0.08.)
 * n >= 1, noise >= 0 and scale > 0 (both finite); an unknown name's error lists the names.
 * The caller owns *out; on failure it is NULL. */
fg_status fg_toy2d_generate(fg_tensor **out, const char *name, int64_t n, double noise,
                            double scale, uint64_t seed, fg_err *e);
/* The same points with their class labels [n] (float32): the component each point was drawn
 * from — moons 0 (upper) / 1 (lower), 8gaussians 0..7 (by angle), checkerboard 0..7 (the dark
 * square: 2 x column + upper band), rings 0..3 (outer to inner).  labels may be NULL. */
fg_status fg_toy2d_generate_labeled(fg_tensor **out, fg_tensor **labels, const char *name,
                                    int64_t n, double noise, double scale, uint64_t seed,
                                    fg_err *e);
/* Classes of a toy set's labels (2 for moons, 8, 8, 4); 0 for an unknown name. */
int fg_toy2d_classes(const char *name);
/* The known names, comma separated ("moons, 8gaussians, checkerboard, rings"). */
const char *fg_toy2d_names(void);
/* The published settings of `name` (FFJORD's lib/toy_data.py, above): what a data source uses
 * when the noise or scale is not given.  FG_E_NOTFOUND for an unknown name. */
fg_status fg_toy2d_defaults(const char *name, double *noise, double *scale, fg_err *e);

/* The exact density of the distribution `name` draws from, as n grows (the evenly spaced
 * points of moons and rings become uniform along their curves): log p at the n points
 * xy[2i], xy[2i + 1], into out[0..n).  Moons integrates the noise's Gaussian along its arcs
 * numerically (a 4096-point midpoint rule per arc), rings in closed form through the modified
 * Bessel function I0, 8gaussians is a Gaussian mixture, checkerboard a sum over the squares of
 * products of normal CDF differences (a step function when noise is 0).  noise must be > 0
 * except for checkerboard. */
fg_status fg_toy2d_log_density(const char *name, double noise, double scale, int64_t n,
                               const double *xy, double *out, fg_err *e);
/* Its differential entropy in nats, -E[log p], by Monte Carlo over `samples` points the
 * generator draws with `seed`, and the estimate's standard error. */
fg_status fg_toy2d_entropy(const char *name, double noise, double scale, int64_t samples,
                           uint64_t seed, double *entropy, double *std_error, fg_err *e);

#endif
