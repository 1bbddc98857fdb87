/* Trains RealNVP on two moons and prints the test negative log-likelihood in nats.
 *
 *   build/examples/two_moons [steps] [seed]          (defaults: 2000 steps, seed 0)
 *
 * The data (the PyTorch reference's sample_moons, i.e. scikit-learn's make_moons as FFJORD
 * uses it): point i lies on the upper half circle (cos t, sin t) when i is even and on the
 * lower one (1 - cos t, 0.5 - sin t) when i is odd, t ~ U[0, π); Gaussian noise of std 0.1 is
 * added to each coordinate, then the point is scaled by 2 and shifted by (-1, -0.2).  The
 * entropy of that distribution is about 2.39 nats, the best test NLL any model can reach;
 * within 0.1 of it is a good fit.  Every point is a pure function of (seed, stream, index)
 * (core/rng.h), so training batches are fresh at every step and the test set is fixed.
 *
 * The model is flows/models.h's RealNVP for vectors: 8 affine couplings alternating which
 * coordinate they transform, each conditioned by an MLP (2 hidden layers of 128 units; the
 * reference uses 256), with RealNVP's c·tanh log-scale, on an N(0, I) base.  Training: Adam,
 * batch 512, learning rate 2e-3 with 100 warm-up steps and a cosine decay to zero, gradient
 * norm clipped at 100. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <flowgrad/flowgrad.h>

enum { BATCH = 512, TEST_N = 20000, EVAL_EVERY = 500 };
static const double PI = 3.14159265358979323846;
static const double ENTROPY = 2.39;

/* Point `index` of moons stream `stream` into xy[0..1]. */
static void moon_point(uint64_t seed, uint64_t stream, uint64_t index, float *xy) {
  uint64_t s = fg_rng_bits(seed, stream), k = 4 * index;
  double t = PI * fg_rng_uniform(s, k);
  double x = cos(t), y = sin(t);
  if (index % 2) x = 1 - x, y = 0.5 - y;
  x += 0.1 * fg_rng_normal(s, k + 1);
  y += 0.1 * fg_rng_normal(s, k + 2);
  xy[0] = (float)(2 * x - 1), xy[1] = (float)(2 * y - 0.2);
}

static void moons(fg_tensor *out, uint64_t seed, uint64_t stream) {
  float *xy = fg_tensor_data(out);
  for (int64_t i = 0; i < out->shape.d[0]; i++) moon_point(seed, stream, (uint64_t)i, xy + 2 * i);
}

/* ---- the two programs: a training step (loss and gradients) and evaluation (log p) ---- */

typedef struct trainer {
  fg_flow *flow;
  fg_graph *g_train, *g_eval;
  fg_program *train, *eval;
  fg_tensor *batch, *test;
  fg_optim *opt;
  int n_params;
} trainer;

static int fail(const char *what, const char *msg) {
  fprintf(stderr, "two_moons: %s: %s\n", what, msg);
  return 1;
}

static int build_train(trainer *t) {
  fg_err e;
  if (fg_graph_new(&t->g_train, &e) != FG_OK) return fail("training graph", e.msg);
  fg_node x = fg_input(t->g_train, "x", FG_F32, fg_shape2(BATCH, 2)), loss;
  fg_node *outs = calloc((size_t)t->n_params + 1, sizeof *outs);
  if (!outs) return fail("training graph", "out of memory");
  fg_flow_nll_loss(t->flow, t->g_train, x, true, &loss, NULL);
  outs[0] = loss;
  if (fg_flow_param_grads(t->flow, t->g_train, loss, outs + 1) != FG_OK) {
    free(outs);
    return fail("training graph", fg_graph_errmsg(t->g_train));
  }
  fg_status st = fg_program_new(&t->train, t->g_train, t->n_params + 1, outs, &e);
  free(outs);
  if (st == FG_OK) st = fg_params_bind(fg_flow_params(t->flow), t->train, &e);
  if (st == FG_OK) st = fg_program_bind(t->train, "x", t->batch, &e);
  return st == FG_OK ? 0 : fail("training program", e.msg);
}

static int build_eval(trainer *t) {
  fg_err e;
  if (fg_graph_new(&t->g_eval, &e) != FG_OK) return fail("evaluation graph", e.msg);
  fg_node x = fg_input(t->g_eval, "x", FG_F32, t->test->shape), logp;
  if (fg_flow_log_prob(t->flow, t->g_eval, x, false, &logp) != FG_OK) return fail("evaluation graph", fg_graph_errmsg(t->g_eval));
  fg_node nll = fg_neg(t->g_eval, fg_mean(t->g_eval, logp, FG_ALL_AXES, false));
  fg_status st = fg_program_new(&t->eval, t->g_eval, 1, &nll, &e);
  if (st == FG_OK) st = fg_params_bind(fg_flow_params(t->flow), t->eval, &e);
  if (st == FG_OK) st = fg_program_bind(t->eval, "x", t->test, &e);
  return st == FG_OK ? 0 : fail("evaluation program", e.msg);
}

static int setup(trainer *t, uint64_t seed) {
  fg_err e;
  fg_mlp_flow_config cfg = fg_realnvp_vector_defaults();
  cfg.hidden = 128;
  fg_model_opts m = {.event = fg_shape1(2), .seed = seed};
  if (fg_realnvp_vector_new(&t->flow, NULL, &m, &cfg, &e) != FG_OK) return fail("model", e.msg);
  t->n_params = fg_flow_num_params(t->flow);
  if (fg_tensor_new(&t->batch, FG_F32, &(fg_shape){2, {BATCH, 2}}, &e) != FG_OK ||
      fg_tensor_new(&t->test, FG_F32, &(fg_shape){2, {TEST_N, 2}}, &e) != FG_OK)
    return fail("data", e.msg);
  moons(t->test, seed, 0); /* stream 0 is the test set; training batches use streams 1, 2, ... */
  fg_optim_config oc = fg_optim_defaults(FG_OPTIM_ADAM);
  oc.lr = 2e-3, oc.warmup_steps = 100, oc.clip_norm = 100;
  if (fg_optim_new_for_params(&t->opt, &oc, fg_flow_params(t->flow), &e) != FG_OK) return fail("optimiser", e.msg);
  return build_train(t) || build_eval(t);
}

static void teardown(trainer *t) {
  fg_program_free(t->train), fg_program_free(t->eval);
  fg_graph_free(t->g_train), fg_graph_free(t->g_eval);
  fg_tensor_free(t->batch), fg_tensor_free(t->test);
  fg_optim_free(t->opt);
  fg_flow_free(t->flow);
}

static double test_nll(trainer *t) {
  if (fg_program_run(t->eval, NULL) != FG_OK) return NAN;
  return fg_tensor_get(fg_program_output(t->eval, 0), 0);
}

/* One step on a fresh batch; returns its loss (NaN on a run failure). */
static double train_step(trainer *t, uint64_t seed, int64_t step, int64_t steps, double base_lr) {
  moons(t->batch, seed, (uint64_t)step + 1);
  fg_err e;
  if (fg_program_run(t->train, &e) != FG_OK) {
    fail("training step", e.msg);
    return NAN;
  }
  const fg_tensor **grads = malloc(sizeof *grads * (size_t)t->n_params);
  if (!grads) return NAN;
  for (int i = 0; i < t->n_params; i++) grads[i] = fg_program_output(t->train, i + 1);
  /* cosine decay to zero; warm-up is the optimiser's */
  fg_optim_set_lr(t->opt, base_lr * 0.5 * (1 + cos(PI * (double)step / (double)steps)));
  fg_status st = fg_optim_step(t->opt, grads, NULL, &e);
  free(grads);
  if (st == FG_E_NUMERIC) fprintf(stderr, "two_moons: %s\n", e.msg); /* skipped, carry on */
  return fg_tensor_get(fg_program_output(t->train, 0), 0);
}

static double wall_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int train(trainer *t, uint64_t seed, int64_t steps) {
  double base_lr = fg_optim_get_config(t->opt)->lr, run = 0;
  int64_t run_n = 0;
  double start = wall_seconds();
  printf("RealNVP, %lld parameters; batch %d, %lld steps\n", (long long)fg_flow_num_scalars(t->flow), BATCH,
         (long long)steps);
  printf("%6s %10s %10s %8s\n", "step", "train NLL", "test NLL", "wall s");
  for (int64_t s = 0; s < steps; s++) {
    double l = train_step(t, seed, s, steps, base_lr);
    if (isnan(l)) return 1;
    run += l, run_n++;
    if ((s + 1) % EVAL_EVERY == 0 || s + 1 == steps) {
      printf("%6lld %10.4f %10.4f %8.1f\n", (long long)(s + 1), run / (double)run_n, test_nll(t),
             wall_seconds() - start);
      fflush(stdout);
      run = 0, run_n = 0;
    }
  }
  return 0;
}

int main(int argc, char **argv) {
  int64_t steps = argc > 1 ? atoll(argv[1]) : 2000;
  uint64_t seed = argc > 2 ? strtoull(argv[2], NULL, 10) : 0;
  if (steps < 1) return fail("usage", "two_moons [steps >= 1] [seed]");
  trainer t = {0};
  int rc = setup(&t, seed) || train(&t, seed, steps);
  if (rc == 0) {
    double nll = test_nll(&t);
    printf("test NLL: %.4f nats on %d fresh points (entropy of the data ~%.2f; target <= %.2f)\n", nll, TEST_N,
           ENTROPY, ENTROPY + 0.1);
  }
  teardown(&t);
  return rc;
}
