/* Parameter store: every parameter of a model by full name ("3.actnorm.logs"), with its
 * tensor and how it was initialised.  Parameters live outside graphs: one store serves the
 * training, log-prob and sampling programs (fg_params_bind binds them all by name), and the
 * optimiser updates the tensors in place. */
#ifndef FG_PARAMS_H
#define FG_PARAMS_H

#include <stdint.h>

#include "core/runtime/program.h"
#include "core/tensor.h"

typedef enum fg_init_kind {
  FG_INIT_ZEROS,
  FG_INIT_CONST,      /* every element a */
  FG_INIT_NORMAL,     /* N(a, b²) */
  FG_INIT_UNIFORM,    /* U[a, b) */
  FG_INIT_IDENTITY,   /* last two axes: identity (other axes repeat it) */
  FG_INIT_ORTHOGONAL, /* [n, n]: a random rotation (QR of a Gaussian matrix), as Glow's 1x1 conv */
} fg_init_kind;

typedef struct fg_init {
  fg_init_kind kind;
  double a, b;
} fg_init;

typedef struct fg_params fg_params;

/* seed makes every random initialisation a pure function of (seed, parameter name). */
/* A new, empty store in *out (NULL when out of memory). */
fg_status fg_params_new(fg_params **out, uint64_t seed, fg_err *e);
void fg_params_free(fg_params *ps);

/* The most scalars the store's parameters may hold together (0, the default: no limit).  A
 * parameter that would pass it is refused (FG_E_LIMIT) before it is allocated: shapes computed
 * from untrusted input (a spec's hidden=, a checkpoint's event) cannot exhaust memory. */
void fg_params_set_limit(fg_params *ps, int64_t max_scalars);
/* The parameter `name`, created with `init` if absent; an existing one must have this dtype and
 * shape (else FG_E_SHAPE naming both).  *out is borrowed from the store. */
fg_status fg_params_get_or_create(fg_tensor **out, fg_params *ps, const char *name, fg_dtype t,
                                  fg_shape shape, fg_init init, fg_err *e);
fg_tensor *fg_params_find(const fg_params *ps, const char *name); /* borrowed, NULL if absent */
int fg_params_count(const fg_params *ps);
const char *fg_params_name(const fg_params *ps, int i);
fg_tensor *fg_params_tensor(const fg_params *ps, int i);
int64_t fg_params_numel(const fg_params *ps); /* total scalar count */
/* Binds every parameter the program's graph has (names it lacks are skipped). */
fg_status fg_params_bind(const fg_params *ps, fg_program *p, fg_err *e);
/* Re-draws parameter i from its recorded init (used by tests and re-initialisation). */
fg_status fg_params_reset(fg_params *ps, int i, fg_err *e);

/* ---- buffers ----
 * Fixed float64 tensors of the model that are not trained: a permutation, signs, the starting
 * factors of an LU, whatever a layer derives once (from its seed) and must keep for the model's
 * life.  Layers declare them with fg_flow_buffers (flows/bijector.h); the store keeps them by
 * full name ("3.conv1x1_lu.perm") apart from the parameters (the optimiser never sees them), and
 * checkpoints save and restore them (flows/train/checkpoint.h), so a saved model does not depend
 * on how its layers computed them. */

/* Validates a value for a buffer (a permutation really is one ...); NULL: any finite values. */
typedef fg_status (*fg_buffer_check)(const fg_tensor *v, fg_err *e);

/* Adds buffer `name` holding v (float64, taken over also on failure; the store's scalar limit
 * counts it).  FG_E_EXISTS for a name already there. */
fg_status fg_params_add_buffer(fg_params *ps, const char *name, fg_tensor *v, fg_buffer_check check,
                               fg_err *e);
fg_tensor *fg_params_find_buffer(const fg_params *ps, const char *name); /* borrowed, or NULL */
int fg_params_num_buffers(const fg_params *ps);
const char *fg_params_buffer_name(const fg_params *ps, int i);
fg_tensor *fg_params_buffer(const fg_params *ps, int i);
/* Whether v may become buffer i's value: float64 of its shape, every element finite, and the
 * buffer's own check; FG_E_FORMAT naming the buffer otherwise.  Nothing changes. */
fg_status fg_params_check_buffer(const fg_params *ps, int i, const fg_tensor *v, fg_err *e);

#endif
