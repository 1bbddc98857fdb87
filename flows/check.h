/* Verifying a bijector, in float64: inverse(forward(x)) = x; its log-det against an
 * independent computation; forward log-det = -inverse log-det at f(x); finite outputs near the
 * edges of the input domain; and gradcheck of y and the log-det with respect to x and every
 * parameter.  Parameters are perturbed randomly first, so layers that start as the identity
 * (zero-initialised last layers) are checked in earnest.
 *
 * The log-det's reference: a declared log-det, or one the engine derived from the structure of
 * the forward graph (diagonal or triangular, ops/autodiff/jacobian.h), is compared with
 * slogdet of the dense Jacobian built by autodiff; a log-det the engine derived by that very
 * dense route is compared with slogdet of a central finite-difference Jacobian instead (2·D
 * runs of the forward), so no log-det is ever compared with itself. *
 * A conditional type (FG_BIJ_CONTEXT) is checked with a random context of 3 N(0, 1) features
 * per sample: every check above at that context (the gradcheck also w.r.t. the context), and
 * its output or log-det must change when the context does. */
#ifndef FG_CHECK_H
#define FG_CHECK_H

#include "ops/autodiff/gradcheck.h"
#include "flows/bijector.h"

typedef struct fg_check_opts {
  fg_shape event;          /* per-sample shape; ndim 0 means the type's check_event */
  int batch;               /* default 3 */
  double lo, hi;           /* input domain; both 0 means the type's check_lo/check_hi */
  double tol;              /* round trip and log-det tolerance (absolute + relative); 1e-6 */
  double perturb;          /* std of the random change to every parameter; default 0.1 */
  bool skip_gradcheck;
  uint64_t seed;           /* inputs and parameter perturbations are drawn from it */
  const char *args;        /* constructor arguments (fg_bijector_check_type); NULL: the type's
                              check_args */
} fg_check_opts;

typedef struct fg_check_report {
  bool passed;
  double roundtrip_err;      /* max |inverse(forward(x)) - x| */
  double logdet_err;         /* max |log-det - reference| (NaN: not applicable) */
  bool logdet_vs_fd;         /* the reference was a finite-difference Jacobian (above) */
  fg_logdet_sources sources; /* how the forward log-dets came about */
  double inverse_logdet_err; /* max |fldj(x) + ildj(f(x))| */
  bool edges_finite;
  fg_gradcheck_report grad;
  char msg[2048];            /* one line per check, and what failed */
} fg_check_report;

/* Checks b (built with its parameters in a fresh store) on random inputs of the event shape. */
fg_status fg_bijector_check(fg_bijector *b, const fg_bijector_type *t, const fg_check_opts *o,
                            fg_check_report *r);
/* Constructs type t from o->args (default t->check_args) and checks it. */
fg_status fg_bijector_check_type(const fg_bijector_type *t, const fg_check_opts *o,
                                 fg_check_report *r);

#endif
