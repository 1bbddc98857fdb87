/* flowgrad sample: draw samples from a checkpoint as a PNG grid (also the samples `train` writes). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/formats/png_grid.h"
#include "core/runtime/program.h"
#include "ops/ops.h"
#include "tools/cli/cli.h"

enum { SAMPLE_CHUNK = 256 }; /* samples drawn by one program run: memory stays a chunk's */
#define FG_SAMPLE_MAX 100000 /* --n: the PNG grid of 100000 28x28 images is 8876 px square */

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

/* Re-runs the same sampling (n samples drawn at rng offset `chunk`) one top-level layer at a
 * time (fg_flow_sample_steps: the same draws) and names the first layer whose inverse left the
 * float range, into out. */
static void name_overflowing_layer(cli_model *m, int64_t n, double temperature, uint64_t seed,
                                   uint64_t chunk, char *out, size_t cap) {
  snprintf(out, cap, "no single layer found");
  int need = fg_bijector_num_children(fg_flow_bijector(m->flow)) + 2;
  fg_graph *g = NULL;
  fg_node *steps = malloc(sizeof *steps * (size_t)need);
  const char **names = malloc(sizeof *names * (size_t)need);
  fg_program *p = NULL;
  int n_steps = 0;
  if (steps && names && fg_graph_new(&g, NULL) == FG_OK &&
      fg_flow_sample_steps(m->flow, g, n, temperature, seed, need, steps, names, &n_steps) ==
          FG_OK &&
      fg_program_new(&p, g, n_steps, steps, NULL) == FG_OK &&
      fg_params_bind(fg_flow_params(m->flow), p, NULL) == FG_OK) {
    fg_program_set_rng_offset(p, chunk);
    if (fg_program_run(p, NULL) == FG_OK)
      for (int i = 0; i < n_steps; i++)
        if (!finite_tensor(fg_program_output(p, i))) {
          int len = (int)strlen(names[i]);
          while (len > 0 && names[i][len - 1] == '.') len--; /* prefixes end in a dot */
          snprintf(out, cap, "first at layer %.*s, step %d of %d from the latent", len, names[i], i,
                   n_steps - 1);
          break;
        }
  }
  fg_program_free(p);
  free(steps), free(names);
  fg_graph_free(g);
}

/* A sampling program for n samples over m's parameters (*g and *p the caller's to free). */
static fg_status sampler(cli_model *m, int64_t n, double temperature, uint64_t seed, fg_graph **g,
                         fg_program **p, fg_err *e) {
  fg_status st = fg_graph_new(g, e);
  if (st != FG_OK) return st;
  fg_node x;
  if ((st = fg_flow_sample(m->flow, *g, n, temperature, seed, &x)) != FG_OK)
    return fg_err_set(e, st, "building the sampler: %s", fg_graph_errmsg(*g));
  st = fg_program_new(p, *g, 1, &x, e);
  return st == FG_OK ? fg_params_bind(fg_flow_params(m->flow), *p, e) : st;
}

/* Samples n at a time, one program per batch size: SAMPLE_CHUNK rows, then the remainder.  Chunk
 * k draws at rng offset k, so the first SAMPLE_CHUNK samples do not depend on n. */
static fg_status draw_samples(cli_model *m, int64_t n, double temperature, uint64_t seed,
                              fg_tensor **all, char *where, size_t cap, fg_err *e) {
  fg_graph *g = NULL;
  fg_program *p = NULL;
  int64_t built = 0;
  fg_status st = FG_OK;
  for (int64_t start = 0; st == FG_OK && start < n; start += SAMPLE_CHUNK) {
    int64_t k = n - start < SAMPLE_CHUNK ? n - start : SAMPLE_CHUNK;
    if (k != built) {
      fg_program_free(p), fg_graph_free(g);
      p = NULL, g = NULL, built = k;
      if ((st = sampler(m, k, temperature, seed, &g, &p, e)) != FG_OK) break;
    }
    fg_program_set_rng_offset(p, (uint64_t)(start / SAMPLE_CHUNK));
    if ((st = fg_program_run(p, e)) != FG_OK) break;
    const fg_tensor *out = fg_program_output(p, 0);
    fg_shape s = out->shape;
    s.d[0] = n;
    if (!*all && (st = fg_tensor_new(all, FG_F32, &s, e)) != FG_OK) break;
    int64_t per = fg_tensor_numel(out) / k;
    for (int64_t i = 0; i < k * per; i++)
      fg_tensor_set(*all, start * per + i, fg_tensor_get(out, i));
    if (!where[0] && !finite_tensor(out))
      name_overflowing_layer(m, k, temperature, seed, (uint64_t)(start / SAMPLE_CHUNK), where, cap);
  }
  fg_program_free(p);
  fg_graph_free(g);
  return st;
}

fg_status cli_write_samples(cli_model *m, int64_t n, double temperature, uint64_t seed,
                            const char *path, fg_err *e) {
  fg_tensor *v = NULL;
  char where[256] = "";
  double temp = temperature > 0 ? temperature : 1e-9;
  fg_status st = draw_samples(m, n, temp, seed, &v, where, sizeof where, e);
  int64_t bad = st == FG_OK ? grey_out_non_finite(v) : 0;
  if (bad)
    fprintf(stderr,
            "warning: %lld of %lld samples are not finite (the inverse left the float range at "
            "temperature %.2f, "
            "%s); drawn grey in %s\n",
            (long long)bad, (long long)n, temperature, where, path);
  if (st == FG_OK) st = fg_png_grid_write(path, v, grid_cols(n), 0, e);
  fg_tensor_free(v);
  return st;
}

static const cli_opt options[] = {
    {"--n", CLI_INT, 1, FG_SAMPLE_MAX},
    {"--temperature", CLI_NUM, 0, 1e6},
    {"--seed", CLI_INT, 0, 9.2e18},
    {"--out", CLI_TEXT, 0, 0},
    CLI_THREADS_OPT,
    CLI_PLUGIN_OPT,
    {NULL, CLI_FLAG, 0, 0},
};

static int run_sample(int argc, char **argv) {
  const char *ckpt;
  int code = cli_checkpoint_arg(argc, argv, "sample", options, &ckpt);
  if (code != EXIT_OK) return code;
  cli_model m;
  code = cli_model_from_checkpoint(&m, "sample", ckpt, argc, argv, false);
  int64_t n = cli_int(argc, argv, "--n", 64);
  double temp = cli_num(argc, argv, "--temperature", m.spec ? m.spec->train.temperature : 0.7);
  uint64_t seed = (uint64_t)cli_int(argc, argv, "--seed", 1);
  const char *out =
      cli_option(argc, argv, "--out") ? cli_option(argc, argv, "--out") : "samples.png";
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
    "usage: flowgrad sample CHECKPOINT [--n 64] [--temperature T] [--seed S] [--out samples.png]\n"
    "                       [--plugin lib.so]...\n\n"
    "Rebuilds the model from the spec stored in the checkpoint, loads its (EMA) weights and "
    "writes\n"
    "n samples (1 to 100000, drawn 256 at a time) at temperature T (default: the spec's) as one\n"
    "PNG grid.  --plugin loads a plugin the checkpoint's spec needs (the error names it).\n",
    run_sample};
