/* flowgrad sample: draw samples from a checkpoint as a PNG grid (also the samples `train` writes). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/formats/png_grid.h"
#include "core/runtime/program.h"
#include "ops/ops.h"
#include "tools/cli/cli.h"

static int64_t grid_cols(int64_t n) {
  int64_t c = (int64_t)ceil(sqrt((double)n));
  return c < 1 ? 1 : c;
}

/* An under-trained flow's inverse can overflow on some latents (a coupling divides by a scale
 * near 0): such images are drawn mid-grey and counted, so the rest of the grid is still shown. */
static int64_t grey_out_non_finite(fg_tensor *v) {
  int64_t n = v->shape.d[0], per = n ? fg_tensor_numel(v) / n : 0, bad = 0;
  for (int64_t i = 0; i < n; i++) {
    bool finite = true;
    for (int64_t j = 0; j < per && finite; j++) finite = isfinite(fg_tensor_get(v, i * per + j));
    if (finite) continue;
    bad++;
    for (int64_t j = 0; j < per; j++) fg_tensor_set(v, i * per + j, 0.5);
  }
  return bad;
}

static bool finite_tensor(const fg_tensor *v) {
  for (int64_t i = 0; i < fg_tensor_numel(v); i++)
    if (!isfinite(fg_tensor_get(v, i))) return false;
  return true;
}

/* Re-runs the same sampling one top-level layer at a time (fg_flow_sample_steps: the same
 * draws) and names the first layer whose inverse left the float range, into out. */
static void name_overflowing_layer(cli_model *m, int64_t n, double temperature, uint64_t seed,
                                   char *out, size_t cap) {
  snprintf(out, cap, "no single layer found");
  int need = fg_bijector_num_children(fg_flow_bijector(m->flow)) + 2;
  fg_graph *g = NULL;
  fg_node *steps = malloc(sizeof *steps * (size_t)need);
  const char **names = malloc(sizeof *names * (size_t)need);
  fg_program *p = NULL;
  int n_steps = 0;
  if (steps && names && fg_graph_new(&g, NULL) == FG_OK &&
      fg_flow_sample_steps(m->flow, g, n, temperature, seed, need, steps, names, &n_steps) == FG_OK &&
      fg_program_new(&p, g, n_steps, steps, NULL) == FG_OK &&
      fg_params_bind(fg_flow_params(m->flow), p, NULL) == FG_OK && fg_program_run(p, NULL) == FG_OK)
    for (int i = 0; i < n_steps; i++)
      if (!finite_tensor(fg_program_output(p, i))) {
        int len = (int)strlen(names[i]);
        while (len > 0 && names[i][len - 1] == '.') len--; /* prefixes end in a dot */
        snprintf(out, cap, "first at layer %.*s, step %d of %d from the latent", len, names[i], i,
                 n_steps - 1);
        break;
      }
  fg_program_free(p);
  free(steps), free(names);
  fg_graph_free(g);
}

fg_status cli_write_samples(cli_model *m, int64_t n, double temperature, uint64_t seed,
                            const char *path, fg_err *e) {
  fg_graph *g;
  fg_status st = fg_graph_new(&g, e);
  if (st != FG_OK) return st;
  fg_node x;
  fg_tensor *v = NULL;
  st = fg_flow_sample(m->flow, g, n, temperature > 0 ? temperature : 1e-9, seed, &x);
  if (st != FG_OK) st = fg_err_set(e, st, "building the sampler: %s", fg_graph_errmsg(g));
  if (st == FG_OK) st = cli_run_one(m, g, x, NULL, NULL, &v, e);
  int64_t bad = st == FG_OK ? grey_out_non_finite(v) : 0;
  if (bad) {
    char where[256];
    name_overflowing_layer(m, n, temperature > 0 ? temperature : 1e-9, seed, where, sizeof where);
    fprintf(stderr, "warning: %lld of %lld samples are not finite (the inverse left the float range at temperature %.2f, "
                    "%s); drawn grey in %s\n", (long long)bad, (long long)n, temperature, where, path);
  }
  if (st == FG_OK) st = fg_png_grid_write(path, v, grid_cols(n), 0, e);
  fg_tensor_free(v);
  fg_graph_free(g);
  return st;
}

static int run_sample(int argc, char **argv) {
  const char *ckpt;
  int code = cli_checkpoint_arg(argc, argv, "sample", &ckpt);
  cli_model m;
  if (code == EXIT_OK) code = cli_model_from_checkpoint(&m, "sample", ckpt, argc, argv, false);
  else return code;
  const char *v;
  int64_t n = (v = cli_option(argc, argv, "--n")) ? atoll(v) : 64;
  double temp = (v = cli_option(argc, argv, "--temperature")) ? atof(v) : m.spec ? m.spec->train.temperature : 0.7;
  uint64_t seed = (v = cli_option(argc, argv, "--seed")) ? strtoull(v, NULL, 10) : 1;
  const char *out = (v = cli_option(argc, argv, "--out")) ? v : "samples.png";
  if (code == EXIT_OK && (n < 1 || temp < 0)) code = cli_fail("sample", FG_E_MISUSE, "--n must be >= 1 and --temperature >= 0");
  if (code == EXIT_OK && !m.discrete) code = cli_fail("sample", FG_E_MISUSE, "samples are written as images; this model is not an image model");
  fg_err e;
  fg_status st = code == EXIT_OK ? cli_write_samples(&m, n, temp, seed, out, &e) : FG_OK;
  if (st != FG_OK) code = cli_fail("sample", st, e.msg);
  if (code == EXIT_OK) printf("%lld samples at temperature %.2f: %s\n", (long long)n, temp, out);
  cli_model_free(&m);
  return code;
}

const cli_command cli_sample = {
    "sample", "draw samples from a trained model as a PNG grid",
    "usage: flowgrad sample CHECKPOINT [--n 64] [--temperature T] [--seed S] [--out samples.png]\n\n"
    "Rebuilds the model from the spec stored in the checkpoint, loads its (EMA) weights and writes\n"
    "n samples drawn at temperature T (default: the spec's) as one PNG grid.\n",
    run_sample};
