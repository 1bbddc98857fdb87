/* Internal to the built-in layers: the monotone rational-quadratic spline of Durkan et al.
 * (2019, "Neural Spline Flows") with linear tails, as graph ops, shared by the elementwise type
 * "rq_spline" (flows/layers/spline.c), the coupling "rq_coupling" (coupling_spline.c) and the
 * autoregressive "maf"/"iaf" with transform=spline (autoregressive.c).
 *
 * On [-bound, bound] the map is a spline of `bins` rational-quadratic pieces through K + 1
 * knots; outside it is the identity, and the derivative at both ends is 1, so the whole map is
 * continuous with a continuous derivative.  Its 3K - 1 raw parameters per element are
 *   K widths and K heights (softmax-normalised, each at least min_width / min_height of the
 *   interval) and K - 1 interior derivatives (min_derivative + softplus, shifted so that a raw
 *   0 is a derivative of exactly 1).
 * All-zero parameters are the identity, so a zero-initialised conditioner starts a flow there. */
#ifndef FG_LAYERS_SPLINE_H
#define FG_LAYERS_SPLINE_H

#include <stdbool.h>
#include <stdint.h>

#include "flows/bijector.h"

typedef struct fg__spline_opts {
  int64_t bins;
  double bound, min_width, min_height, min_derivative;
} fg__spline_opts;

/* The constructor arguments every spline type takes, in this order (after its own). */
#define FG__SPLINE_ARG_SPECS                                                                  \
  {"bins", FG_ARG_INT, "8", "rational-quadratic pieces on [-bound, bound]"},                  \
      {"bound", FG_ARG_DOUBLE, "3", "the spline's interval [-bound, bound]; identity outside"}, \
      {"min_width", FG_ARG_DOUBLE, "1e-3", "smallest bin width, as a fraction of 2 bound"},      \
      {"min_height", FG_ARG_DOUBLE, "1e-3", "smallest bin height, as a fraction of 2 bound"},    \
      {"min_derivative", FG_ARG_DOUBLE, "1e-3", "smallest derivative at a knot"}

/* Validates the arguments (each message names its argument). */
fg_status fg__spline_opts_parse(fg__spline_opts *out, int64_t bins, double bound, double min_width,
                                double min_height, double min_derivative, fg_err *e);
/* Raw parameters per element: 3 bins - 1. */
int64_t fg__spline_params(const fg__spline_opts *o);

/* The spline of x [B, S...] with raw parameters u [B or 1, S..., 3K-1] (broadcast over the
 * batch), or its inverse.  Returns the image and sets *log_deriv [B, S...] to log dy/dx of the
 * FORWARD map at the point (x, or the inverse's result), 0 on the tails. */
fg_node fg__rq_spline(fg_graph *g, const fg__spline_opts *o, fg_node x, fg_node u, bool inverse,
                      fg_node *log_deriv);

#endif
