/* Scaffolding shared by the built-in layers' tests (test_layers.c, test_mixing_layers.c):
 * layers made from their text arguments, a graph with a parameter store and a flow context,
 * programs run on it, random tensors and a reference log|det|.  Failures are criterion
 * assertions. */
#ifndef FG_TESTS_LAYER_RIG_H
#define FG_TESTS_LAYER_RIG_H

#include "core/runtime/program.h"
#include "flows/flow.h"

/* Every built-in layer type, by name. */
extern const char *const layer_types[];
extern const int n_layer_types;

const fg_bijector_type *type_named(const char *name);
/* A layer of type `name` made from its text arguments (asserts it is accepted). */
fg_bijector *make(const char *name, const char *args);
/* The message of a construction that must fail. */
const char *make_fails(const char *name, const char *args, fg_err *e);

/* A graph, a parameter store (shared when given) and a context over them. */
typedef struct rig {
  fg_graph *g;
  fg_params *ps;
  bool own_ps;
  fg_flow_ctx *c;
} rig;
rig rig_open(fg_params *shared, fg_flow_ctx_opts o);
void rig_close(rig *r);

/* Uniform in [lo, hi), by seed. */
fg_tensor *random_tensor(fg_dtype t, fg_shape s, uint64_t seed, double lo, double hi);
/* The event shape with a batch axis in front. */
fg_shape with_batch(int64_t batch, fg_shape event);
/* Plans outs, binds every parameter and the input "x" (when given), runs. */
fg_program *run(rig *r, int n, const fg_node *outs, const fg_tensor *x);
/* Element i of output `out`. */
double at(const fg_program *p, int out, int64_t i);
/* Moves every parameter off its initial value (identity-at-init layers would test nothing). */
void perturb(fg_params *ps, double std, uint64_t seed);
/* Evaluates the data-init requests recorded in r's context and writes them into the store,
 * as a trainer's initialisation pass does. */
void apply_inits(rig *r, const fg_tensor *x);
/* log|det| of an n x n row-major matrix (overwritten), by Gaussian elimination. */
double log_abs_det(double *a, int n);

#endif
