/* Log-determinants of a map's Jacobian, derived from the graph of the map (how a bijector that
 * declares no log-det gets one, flows/bijector.h).  x and y are batches [batch, event...] with
 * the same number of elements per sample; samples are taken as independent; the log-dets are
 * [batch], log|det dy/dx| of each sample.
 *
 * Cost.  fg_logdet_derived first looks at the graph between x and y (once, when the graph is
 * built: time about the elements of the nodes in between times D/64 words, D = elements per
 * sample) for the structure of dy/dx:
 *   diagonal    y_i depends on x_i alone (an elementwise map, however it is computed: gathers
 *               of spline bins, cumsums of parameters, masks);
 *   triangular  in some order of the elements y_i depends on x_i and earlier x_j only
 *               (autoregressive maps, couplings), with y_i an elementwise function of x_i once
 *               the values computed from the other x_j (the conditioner's outputs) are fixed.
 * Either way the log-det is the sum of log|dy_i/dx_i|, and those D diagonal entries come from
 * ONE vector-Jacobian product through the elementwise part (the conditioners held fixed): O(D)
 * per sample, about the cost of one more forward pass, at any event size.
 * When no structure is found it falls back to fg_jacobian_logdet, the dense route: one
 * vector-Jacobian product PER EVENT ELEMENT to build the D x D Jacobian, then an LU
 * factorisation, O(D) backward passes plus O(D^3) per sample (and the training graph
 * differentiates all of it again), so it is limited to FG_DERIVED_LOGDET_MAX_EVENT elements:
 * on a 64-dimensional event it makes a training step tens of times slower than a declared or
 * structured log-det.  Declare the log-det of a map the analysis cannot see through (a
 * convolution, a dense matrix, a reduction over the event mixing every element). */
#ifndef FG_JACOBIAN_H
#define FG_JACOBIAN_H

#include "core/ir/graph.h"

/* Largest event (elements per sample) whose log-det the engine derives by the dense route. */
#define FG_DERIVED_LOGDET_MAX_EVENT 256

typedef enum fg_jacobian_kind {
  FG_JACOBIAN_DIAGONAL,   /* y_i depends on x_i only */
  FG_JACOBIAN_TRIANGULAR, /* triangular in some order of the elements (autoregressive) */
  FG_JACOBIAN_DENSE,      /* no structure used: the dense Jacobian and its LU */
} fg_jacobian_kind;

/* "diagonal", "triangular", "dense". */
const char *fg_jacobian_kind_name(fg_jacobian_kind k);

/* log|det dy/dx| per sample by the cheapest exact route the graph allows (above); *route (may
 * be NULL) gets the one taken.  `who` names the map in messages ("3.my_spline"). */
fg_node fg_logdet_derived(fg_graph *g, fg_node x, fg_node y, const char *who,
                          fg_jacobian_kind *route);

/* The dense route: one VJP per event element (samples are independent, so one VJP gives that
 * row of every sample's Jacobian), stacked, then slogdet.  For events up to
 * FG_DERIVED_LOGDET_MAX_EVENT elements; y must have x's element count.  Also an independent
 * check of any other log-det (flowgrad check compares with it). */
fg_node fg_jacobian_logdet(fg_graph *g, fg_node x, fg_node y, const char *who);

#endif
