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
 *                  k·45°, k chosen uniformly per point.  (FFJORD: scale 2.83, noise 0.35.)
 *   "checkerboard" uniform on the 8 dark squares of a 4x4 board of unit squares covering
 *                  [-2, 2]², plus Gaussian noise of std `noise`, all multiplied by `scale`.
 *                  (FFJORD: noise 0, scale 2.)
 *   "rings"        4 concentric circles of radii scale·{1, 0.75, 0.5, 0.25}, points evenly
 *                  spaced (n/4 on each of the three outer rings, the rest on the innermost),
 *                  Gaussian noise of std `noise` added; shuffled.  (FFJORD: scale 3, noise 0.08.)
 * n >= 1, noise >= 0 and scale > 0 (both finite); an unknown name's error lists the names.
 * The caller owns *out; on failure it is NULL. */
fg_status fg_toy2d_generate(fg_tensor **out, const char *name, int64_t n, double noise, double scale, uint64_t seed, fg_err *e);
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

#endif
