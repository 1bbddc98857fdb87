/* bench_logdet: what a log-det costs when a bijector leaves it to the engine.  Trains the same
 * flow — `layers` elementwise rational-quadratic splines (rq_spline, 8 bins) on D-dimensional
 * data — for `steps` Adam steps three ways and prints, per way, the wall time, the training
 * program's nodes and the final batch NLL (which must agree):
 *   declared  the built-in rq_spline, whose forward gives its log-det;
 *   derived   the same forward with the log-det left out (*logdet = FG_NONE): the engine finds
 *             the diagonal structure and takes the diagonal with one VJP (ops/autodiff/jacobian.h);
 *   dense     the same forward declaring the dense autodiff Jacobian's slogdet, the route the
 *             engine took for every undeclared log-det before it looked for structure.
 *
 *   build/tools/bench_logdet [--dim 64] [--layers 2] [--steps 200] [--batch 256] [--skip-dense]
 *
 * The data: x_j = sinh(0.8 z_j + 0.3) with z standard normal, skewed and heavy-tailed so the
 * splines have something to learn; a pure function of the seed. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/rng.h"
#include "flows/flow.h"
#include "flows/layers/layers.h"
#include "flows/registry.h"
#include "flows/train/trainer.h"

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* The rq_spline forward with its log-det dropped, or replaced by the dense Jacobian's. */
static fg_status derived_forward(void *s, fg_flow_ctx *c, fg_node x, fg_node *y, fg_node *ld) {
  fg_status st = fg_bijector_rq_spline.forward(s, c, x, y, ld);
  *ld = FG_NONE;
  return st;
}

static fg_status dense_forward(void *s, fg_flow_ctx *c, fg_node x, fg_node *y, fg_node *ld) {
  fg_status st = fg_bijector_rq_spline.forward(s, c, x, y, ld);
  *ld = fg_jacobian_logdet(fg_flow_graph(c), x, *y, fg_flow_ctx_prefix(c));
  return st;
}

typedef fg_status (*forward_fn)(void *, fg_flow_ctx *, fg_node, fg_node *, fg_node *);

static fg_bijector_type variant(const char *name, forward_fn forward) {
  fg_bijector_type t = fg_bijector_rq_spline;
  t.name = name;
  t.forward = forward;
  return t;
}

static fg_tensor *make_data(int64_t n, int64_t d, uint64_t seed) {
  fg_tensor *x;
  fg_shape s = fg_shape2(n, d);
  if (fg_tensor_new(&x, FG_F32, &s, NULL) != FG_OK) return NULL;
  for (int64_t i = 0; i < n * d; i++)
    fg_tensor_set(x, i, sinh(0.8 * fg_rng_normal(seed, (uint64_t)i) + 0.3));
  return x;
}

typedef struct result {
  double seconds, nll;
  int nodes;
} result;

static int fail(const char *type, const fg_err *e) {
  fprintf(stderr, "%s: %s\n", type, e->msg);
  return 1;
}

static int train(const fg_registry *r, const char *type, int64_t dim, int layers, int64_t steps,
                 int64_t batch, const fg_tensor *data, result *out) {
  fg_err e;
  fg_bijector *kids[64], *chain;
  for (int i = 0; i < layers; i++)
    if (fg_bijector_new_from_text(&kids[i], fg_registry_find(r, type), "bins=8, bound=4", &e))
      return fail(type, &e);
  fg_flow *f;
  fg_trainer *t;
  fg_train_settings s = fg_train_defaults();
  s.batch = batch, s.lr = 3e-3;
  fg_trainer_data td = {.train = data};
  if (fg_bijector_chain(&chain, layers, kids, &e) != FG_OK ||
      fg_flow_new(&f, chain, FG_BASE_NORMAL, fg_shape1(dim), 1, &e) != FG_OK)
    return fail(type, &e);
  double t0 = now_s();
  if (fg_trainer_new(&t, f, &s, &td, 0, &e) != FG_OK) return fail(type, &e);
  fg_train_step_info info;
  for (int64_t i = 0; i < steps; i++)
    if (fg_trainer_step(t, &info, &e) != FG_OK) return fail(type, &e);
  out->seconds = now_s() - t0;
  out->nll = info.loss;
  out->nodes = fg_trainer_program_stats(t)->nodes_in;
  fg_trainer_free(t);
  fg_flow_free(f);
  return 0;
}

static const char *opt(int argc, char **argv, const char *name, const char *dflt) {
  for (int i = 1; i + 1 < argc; i++)
    if (!strcmp(argv[i], name)) return argv[i + 1];
  return dflt;
}

int main(int argc, char **argv) {
  int64_t dim = atoll(opt(argc, argv, "--dim", "64"));
  int64_t steps = atoll(opt(argc, argv, "--steps", "200"));
  int64_t batch = atoll(opt(argc, argv, "--batch", "256"));
  int layers = atoi(opt(argc, argv, "--layers", "2"));
  bool skip_dense = false;
  for (int i = 1; i < argc; i++) skip_dense |= !strcmp(argv[i], "--skip-dense");
  if (dim < 1 || steps < 1 || batch < 1 || layers < 1 || layers > 64) {
    fprintf(stderr, "usage: bench_logdet [--dim 64] [--layers 2] [--steps 200] [--batch 256] "
                    "[--skip-dense]\n");
    return 2;
  }
  static fg_bijector_type derived, dense;
  derived = variant("rq_spline_derived", derived_forward);
  dense = variant("rq_spline_dense", dense_forward);
  fg_registry *r;
  fg_err e;
  if (fg_registry_new(&r, &e) != FG_OK || fg_registry_add_builtins(r, &e) != FG_OK ||
      fg_registry_add(r, &derived, &e) != FG_OK || fg_registry_add(r, &dense, &e) != FG_OK)
    return fail("registry", &e);
  fg_tensor *data = make_data(8192, dim, 5);
  if (!data) return 1;
  const char *types[3] = {"rq_spline", "rq_spline_derived", "rq_spline_dense"};
  const char *labels[3] = {"declared", "derived", "dense"};
  printf("%d rq_spline layers, D = %lld, batch %lld, %lld Adam steps\n", layers, (long long)dim,
         (long long)batch, (long long)steps);
  result res[3];
  int code = 0;
  for (int k = 0; k < (skip_dense ? 2 : 3) && !code; k++) {
    code = train(r, types[k], dim, layers, steps, batch, data, &res[k]);
    if (!code)
      printf("%-9s %8.2f s  %6d nodes  final batch NLL %.4f  (%.2fx the declared time)\n",
             labels[k], res[k].seconds, res[k].nodes, res[k].nll, res[k].seconds / res[0].seconds);
  }
  fg_tensor_free(data);
  fg_registry_free(r);
  return code;
}
