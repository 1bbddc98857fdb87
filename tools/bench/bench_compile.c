/* bench_compile: what the compiler does to a Glow-like training graph (forward, log-det, NLL
 * and the gradient of every parameter): node counts before and after the passes, kernel
 * launches, peak activation bytes with and without memory planning, compile time, and run
 * time at 1 and 2 threads, measured side by side in one invocation.
 *
 *   build/tools/bench_compile [--K 8] [--L 2] [--hidden 128] [--batch 16] [--runs 5]
 *
 * The model: L levels of [squeeze, K x (actnorm, invertible 1x1 conv, affine coupling with
 * Glow's conv3x3-ReLU-conv1x1-ReLU-conv3x3 network and sigmoid(h + 2) scale), split] on
 * 1x28x28 images, standard-normal prior; what flows/ will build, written out with ops here so
 * the benchmark stands on the engine alone. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ops/autodiff/autodiff.h"
#include "core/runtime/program.h"
#include "core/rng.h"
#include "ops/ops.h"

typedef struct model {
  fg_graph *g;
  int n_params;
  fg_node params[1024];
  fg_node logdet;
  int hidden;
} model;

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static fg_node param(model *m, const char *kind, int i, fg_shape s) {
  char name[64];
  snprintf(name, sizeof name, "%s.%d", kind, i);
  fg_node p = fg_param(m->g, name, FG_F32, s);
  m->params[m->n_params++] = p;
  return p;
}

static fg_node per_channel(fg_graph *g, fg_node v, int64_t c) {
  return fg_reshape(g, v, fg_shape4(1, c, 1, 1));
}

static fg_node add_logdet(model *m, fg_node ld) {
  return m->logdet = m->logdet == FG_NONE ? ld : fg_add(m->g, m->logdet, ld);
}

static fg_node actnorm(model *m, fg_node x, int i) {
  fg_graph *g = m->g;
  fg_shape s = fg_node_shape(g, x);
  fg_node logs = param(m, "actnorm.logs", i, fg_shape1(s.d[1])),
          bias = param(m, "actnorm.bias", i, fg_shape1(s.d[1]));
  fg_node y = fg_mul(g, fg_add(g, x, per_channel(g, bias, s.d[1])),
                     per_channel(g, fg_exp(g, logs), s.d[1]));
  add_logdet(m, fg_mul_scalar(g, fg_sum(g, logs, FG_ALL_AXES, false), (double)(s.d[2] * s.d[3])));
  return y;
}

static fg_node invconv(model *m, fg_node x, int i) {
  fg_graph *g = m->g;
  fg_shape s = fg_node_shape(g, x);
  fg_node w = param(m, "invconv.w", i, fg_shape2(s.d[1], s.d[1]));
  fg_node y = fg_conv2d(g, x, fg_reshape(g, w, fg_shape4(s.d[1], s.d[1], 1, 1)), FG_NONE, NULL);
  add_logdet(m, fg_mul_scalar(g, fg_slogdet(g, w), (double)(s.d[2] * s.d[3])));
  return y;
}

static fg_node coupling(model *m, fg_node x, int i) {
  fg_graph *g = m->g;
  fg_shape s = fg_node_shape(g, x);
  int64_t c = s.d[1], half = c / 2;
  fg_conv2d_opts same = fg_conv2d_defaults();
  same.padding[0] = same.padding[1] = 1;
  fg_node xa = fg_slice_axis(g, x, 1, 0, half), xb = fg_slice_axis(g, x, 1, half, c);
  fg_node w1 = param(m, "coupling.w1", i, fg_shape4(m->hidden, half, 3, 3)),
          b1 = param(m, "coupling.b1", i, fg_shape1(m->hidden));
  fg_node w2 = param(m, "coupling.w2", i, fg_shape4(m->hidden, m->hidden, 1, 1)),
          b2 = param(m, "coupling.b2", i, fg_shape1(m->hidden));
  fg_node w3 = param(m, "coupling.w3", i, fg_shape4(2 * (c - half), m->hidden, 3, 3));
  fg_node b3 = param(m, "coupling.b3", i, fg_shape1(2 * (c - half)));
  fg_node h = fg_relu(g, fg_conv2d(g, xa, w1, b1, &same));
  h = fg_relu(g, fg_conv2d(g, h, w2, b2, NULL));
  h = fg_conv2d(g, h, w3, b3, &same);
  /* shift and scale from interleaved channels of h (Glow's "cross" split) */
  fg_node shift =
      fg_slice(g, h, (int64_t[]){0, 0, 0, 0}, (int64_t[]){s.d[0], 2 * (c - half), s.d[2], s.d[3]},
               (int64_t[]){1, 2, 1, 1});
  fg_node raw =
      fg_slice(g, h, (int64_t[]){0, 1, 0, 0}, (int64_t[]){s.d[0], 2 * (c - half), s.d[2], s.d[3]},
               (int64_t[]){1, 2, 1, 1});
  fg_node logscale = fg_logsigmoid(g, fg_add_scalar(g, raw, 2.0));
  fg_node yb = fg_mul(g, fg_add(g, xb, shift), fg_exp(g, logscale));
  add_logdet(m, fg_sum(g, logscale, FG_AXIS(1) | FG_AXIS(2) | FG_AXIS(3), false));
  return fg_concat(g, 2, (fg_node[]){xa, yb}, 1);
}

static fg_node gaussian_nll(fg_graph *g, fg_node z) {
  fg_shape s = fg_node_shape(g, z);
  fg_node sq = fg_sum(g, fg_square(g, z), FG_AXIS(1) | FG_AXIS(2) | FG_AXIS(3), false);
  double per = 0.5 * 1.8378770664093453 * (double)(s.d[1] * s.d[2] * s.d[3]);
  return fg_add_scalar(g, fg_mul_scalar(g, sq, 0.5), per);
}

/* The mean NLL over the batch: sum of the prior terms minus the log-det. */
static fg_node build_glow(model *m, int K, int L, int batch) {
  if (fg_graph_new(&m->g, NULL) != FG_OK) return FG_POISON; /* fg_grad then says "no graph" */
  fg_graph *g = m->g;
  m->logdet = FG_NONE;
  fg_node x = fg_input(g, "x", FG_F32, fg_shape4(batch, 1, 28, 28)), nll = FG_NONE;
  int step = 0;
  for (int l = 0; l < L; l++) {
    x = fg_squeeze2d(g, x);
    for (int k = 0; k < K; k++, step++)
      x = coupling(m, invconv(m, actnorm(m, x, step), step), step);
    if (l < L - 1) {
      fg_shape s = fg_node_shape(g, x);
      fg_node z = fg_slice_axis(g, x, 1, s.d[1] / 2, s.d[1]);
      nll = nll == FG_NONE ? gaussian_nll(g, z) : fg_add(g, nll, gaussian_nll(g, z));
      x = fg_slice_axis(g, x, 1, 0, s.d[1] / 2);
    }
  }
  nll = nll == FG_NONE ? gaussian_nll(g, x) : fg_add(g, nll, gaussian_nll(g, x));
  return fg_mean(g, fg_sub(g, nll, m->logdet), FG_ALL_AXES, false);
}

static void fill_params(const model *m, fg_program *p, fg_tensor **store) {
  for (int i = 0; i < m->n_params; i++) {
    fg_shape s = fg_node_shape(m->g, m->params[i]);
    fg_tensor_new(&store[i], FG_F32, &s, NULL);
    const char *name = fg_node_name(m->g, m->params[i]);
    bool square = strstr(name, "invconv") != NULL;
    for (int64_t j = 0; j < fg_tensor_numel(store[i]); j++)
      fg_tensor_set(store[i], j,
                    square ? (j % (s.d[0] + 1) == 0 ? 1.0 : 0.01 * fg_rng_normal(i, (uint64_t)j))
                           : 0.05 * fg_rng_normal(i, (uint64_t)j));
    fg_program_bind(p, name, store[i], NULL);
  }
}

typedef struct result {
  fg_program_stats stats;
  double run_ms;
} result;

static int measure(model *m, int n_out, const fg_node *outs, const fg_program_opts *o, int runs,
                   const fg_tensor *x, result *r) {
  fg_program *p;
  fg_err e;
  if (fg_program_new_opts(&p, m->g, n_out, outs, o, &e) != FG_OK) {
    fprintf(stderr, "bench_compile: %s\n", e.msg);
    return 1;
  }
  fg_tensor **store = calloc((size_t)m->n_params, sizeof *store);
  fill_params(m, p, store);
  fg_program_bind(p, "x", x, NULL);
  double best = 1e30;
  for (int i = 0; i <= runs; i++) {
    double t0 = now_s();
    if (fg_program_run(p, &e) != FG_OK) {
      fprintf(stderr, "bench_compile: %s\n", e.msg);
      return 1;
    }
    double dt = now_s() - t0;
    if (i > 0 && dt < best) best = dt; /* run 0 warms caches */
  }
  r->stats = *fg_program_get_stats(p);
  if (o->profile || getenv("FG_PROFILE")) {
    char table[8192];
    printf("\n%s\n", fg_program_profile(p, table, sizeof table));
  }
  r->run_ms = best * 1e3;
  for (int i = 0; i < m->n_params; i++) fg_tensor_free(store[i]);
  free(store);
  fg_program_free(p);
  return 0;
}

int main(int argc, char **argv) {
  int K = 8, L = 2, hidden = 128, batch = 16, runs = 5;
  for (int i = 1; i + 1 < argc; i += 2) {
    int v = atoi(argv[i + 1]);
    if (!strcmp(argv[i], "--K")) K = v;
    else if (!strcmp(argv[i], "--L")) L = v;
    else if (!strcmp(argv[i], "--hidden")) hidden = v;
    else if (!strcmp(argv[i], "--batch")) batch = v;
    else if (!strcmp(argv[i], "--runs")) runs = v;
    else {
      fprintf(stderr, "usage: bench_compile [--K n] [--L n] [--hidden n] [--batch n] [--runs n]\n");
      return 2;
    }
  }
  model m = {.hidden = hidden};
  fg_node loss = build_glow(&m, K, L, batch);
  fg_node *outs = malloc(sizeof *outs * ((size_t)m.n_params + 1));
  outs[0] = loss;
  if (fg_grad(m.g, loss, m.n_params, m.params, outs + 1) != FG_OK) {
    fprintf(stderr, "bench_compile: %s\n", fg_graph_errmsg(m.g));
    return 1;
  }
  fg_tensor *x;
  fg_shape xs = fg_shape4(batch, 1, 28, 28);
  fg_tensor_new(&x, FG_F32, &xs, NULL);
  for (int64_t j = 0; j < fg_tensor_numel(x); j++)
    fg_tensor_set(x, j, fg_rng_uniform(99, (uint64_t)j) - 0.5);

  const char *coretype = getenv("OPENBLAS_CORETYPE");
  printf("Glow-like training graph: K=%d L=%d hidden=%d batch=%d, 1x28x28; OPENBLAS_CORETYPE=%s\n",
         K, L, hidden, batch, coretype ? coretype : "(unset)");
  printf("graph as built: %d nodes (forward + backward), %d parameters\n\n",
         fg_graph_node_count(m.g), m.n_params);

  struct { const char *label; fg_program_opts o; } cfg[] = {
      {"no passes, 1 thread", {.n_threads = 1, .disabled_passes = 0xffffffffu}},
      {"all passes, 1 thread", {.n_threads = 1}},
      {"all passes, 2 threads", {.n_threads = 2}},
      {"all but memplan, 2 thr.", {.n_threads = 2, .disabled_passes = FG_PASS_BIT(MEMPLAN)}},
  };
  printf("%-24s %7s %7s %7s %6s %12s %12s %10s %10s\n", "configuration", "needed", "after",
         "launch", "fused", "peak act.", "one-each", "compile", "run");
  for (size_t i = 0; i < sizeof cfg / sizeof *cfg; i++) {
    result r;
    if (measure(&m, m.n_params + 1, outs, &cfg[i].o, runs, x, &r)) return 1;
    const fg_program_stats *s = &r.stats;
    printf("%-24s %7d %7d %7d %6d %9.1f MiB %9.1f MiB %7.1f ms %7.1f ms\n", cfg[i].label,
           s->nodes_in, s->nodes_compiled, s->n_steps, s->n_fused,
           (double)(s->arena_bytes ? s->arena_bytes : s->naive_bytes) / 1048576.0,
           (double)s->naive_bytes / 1048576.0, s->compile_ms, r.run_ms);
  }
  printf(
      "\nneeded: nodes the outputs need; after: after the graph passes; launch: kernel launches "
      "per\n"
      "run; peak act.: planned arena of intermediate values (one-each: a buffer per value);\n"
      "run: best of %d runs of forward + backward.\n",
      runs);
  fg_tensor_free(x);
  free(outs);
  fg_graph_free(m.g);
  return 0;
}
