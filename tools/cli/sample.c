/* flowgrad sample / eval / interpolate: use a trained checkpoint. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/formats/png_grid.h"
#include "core/runtime/program.h"
#include "ops/ops.h"
#include "tools/cli/cli.h"

static const char *const valued[] = {"--n", "--temperature", "--out", "--seed", "--steps", "--pairs", "--plugin", "--threads", NULL};

static int64_t grid_cols(int64_t n) {
  int64_t c = (int64_t)ceil(sqrt((double)n));
  return c < 1 ? 1 : c;
}

/* Runs a one-output program over the flow's parameters; returns the output (a new tensor). */
static fg_status run_one(cli_model *m, fg_graph *g, fg_node out, const char *input, const fg_tensor *x,
                         fg_tensor **result, fg_err *e) {
  fg_program *p;
  fg_status st = fg_program_new(&p, g, 1, &out, e);
  if (st != FG_OK) return st;
  st = fg_params_bind(fg_flow_params(m->flow), p, e);
  if (st == FG_OK && input) st = fg_program_bind(p, input, x, e);
  if (st == FG_OK) st = fg_program_run(p, e);
  if (st == FG_OK) st = fg_tensor_copy(result, fg_program_output(p, 0), FG_F32, e);
  fg_program_free(p);
  return st;
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

int cli_write_samples(cli_model *m, int64_t n, double temperature, uint64_t seed, const char *path, fg_err *e) {
  fg_graph *g;
  fg_status st = fg_graph_new(&g, e);
  if (st != FG_OK) return st;
  fg_node x;
  fg_tensor *v = NULL;
  st = fg_flow_sample(m->flow, g, n, temperature > 0 ? temperature : 1e-9, seed, &x);
  if (st != FG_OK) st = fg_err_set(e, st, "building the sampler: %s", fg_graph_errmsg(g));
  if (st == FG_OK) st = run_one(m, g, x, NULL, NULL, &v, e);
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

static int checkpoint_arg(int argc, char **argv, const char *cmd, const char **ckpt) {
  if (cli_positionals(argc, argv, ckpt, 1, valued) != 1) {
    fprintf(stderr, "usage: flowgrad %s CHECKPOINT [options] (flowgrad %s --help)\n", cmd, cmd);
    return EXIT_USAGE;
  }
  return EXIT_OK;
}

static int run_sample(int argc, char **argv) {
  const char *ckpt;
  int code = checkpoint_arg(argc, argv, "sample", &ckpt);
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

static int run_eval(int argc, char **argv) {
  const char *ckpt;
  int code = checkpoint_arg(argc, argv, "eval", &ckpt);
  if (code != EXIT_OK) return code;
  cli_model m;
  code = cli_model_from_checkpoint(&m, "eval", ckpt, argc, argv, true);
  fg_trainer *t = NULL;
  fg_err e;
  double mean = 0;
  fg_status st = FG_OK;
  if (code == EXIT_OK) {
    fg_trainer_data d = {m.data.train, m.data.test, m.data.discrete};
    const char *v = cli_option(argc, argv, "--threads");
    st = fg_trainer_new(&t, m.flow, &m.spec->train, &d, v ? atoi(v) : 0, &e);
    if (st == FG_OK) st = fg_trainer_load(t, ckpt, &e); /* the EMA weights, as training evaluated */
    if (st == FG_OK) st = fg_trainer_evaluate(t, &mean, &e);
    if (st != FG_OK) code = cli_fail("eval", st, e.msg);
  }
  if (code == EXIT_OK) printf("test %s: %.4f (step %lld)\n", fg_trainer_unit(t), mean, (long long)fg_trainer_step_count(t));
  fg_trainer_free(t);
  cli_model_free(&m);
  return code;
}

/* ---- interpolation in latent space, factored-out latents included ---- */

static fg_node mix_rows(fg_graph *g, fg_node v, int64_t steps) {
  fg_shape s = fg_node_shape(g, v), alpha_shape = s;
  alpha_shape.d[0] = steps;
  for (int i = 1; i < s.ndim; i++) alpha_shape.d[i] = 1;
  fg_tensor *a;
  if (fg_tensor_new(&a, fg_node_dtype(g, v), &alpha_shape, NULL) != FG_OK) return FG_POISON;
  for (int64_t j = 0; j < steps; j++) fg_tensor_set(a, j, steps > 1 ? (double)j / (double)(steps - 1) : 0);
  fg_node alpha = fg_constant_take(g, a), first = fg_slice_axis(g, v, 0, 0, 1), second = fg_slice_axis(g, v, 0, 1, 2);
  return fg_add(g, fg_mul(g, first, fg_sub(g, fg_scalar(g, 1.0, fg_node_dtype(g, v)), alpha)), fg_mul(g, second, alpha));
}

static fg_status interpolate_pair(cli_model *m, const fg_tensor *pair, int64_t steps, fg_tensor **out, fg_err *e) {
  fg_graph *g;
  fg_flow_ctx *enc = NULL, *dec = NULL;
  fg_flow_ctx_opts co = {.dtype = fg_flow_get_config(m->flow)->dtype};
  fg_status st = fg_flow_ctx_new_graph(&enc, &g, fg_flow_params(m->flow), &co, e);
  if (st != FG_OK) return st;
  if (st == FG_OK) st = fg_flow_ctx_new(&dec, g, fg_flow_params(m->flow), &co, e);
  fg_node x = fg_input(g, "x", co.dtype, pair->shape), z, ld, back;
  double bins = m->discrete ? (double)(1 << m->n_bits) : 1;
  fg_node y = m->discrete ? fg_mul_scalar(g, fg_add_scalar(g, fg_mul_scalar(g, x, bins / 256.0), 0.5), 1.0 / bins) : x;
  if (st == FG_OK) fg_bijector_forward(fg_flow_bijector(m->flow), enc, y, &z, &ld);
  int n_lat = enc ? fg_flow_num_latents(enc) : 0;
  fg_node *lat = calloc((size_t)n_lat + 1, sizeof *lat);
  for (int i = n_lat - 1; lat && i >= 0; i--) lat[i] = fg_flow_pop_latent(enc); /* pushed 0..n-1 */
  for (int i = 0; lat && i < n_lat; i++) fg_flow_push_latent(dec, mix_rows(g, lat[i], steps));
  if (st == FG_OK) fg_bijector_inverse(fg_flow_bijector(m->flow), dec, mix_rows(g, z, steps), &back, &ld);
  if (st == FG_OK && fg_graph_status(g) != FG_OK) st = fg_err_set(e, fg_graph_status(g), "%s", fg_graph_errmsg(g));
  if (st == FG_OK && !lat) st = fg_err_set(e, FG_E_NOMEM, "out of memory");
  if (st == FG_OK) st = run_one(m, g, back, "x", pair, out, e);
  free(lat);
  fg_flow_ctx_free(enc);
  fg_flow_ctx_free(dec);
  fg_graph_free(g);
  return st;
}

static int run_interpolate(int argc, char **argv) {
  const char *ckpt;
  int code = checkpoint_arg(argc, argv, "interpolate", &ckpt);
  if (code != EXIT_OK) return code;
  cli_model m;
  code = cli_model_from_checkpoint(&m, "interpolate", ckpt, argc, argv, true);
  const char *v;
  int64_t steps = (v = cli_option(argc, argv, "--steps")) ? atoll(v) : 8, pairs = (v = cli_option(argc, argv, "--pairs")) ? atoll(v) : 4;
  const char *out = (v = cli_option(argc, argv, "--out")) ? v : "interpolation.png";
  if (code == EXIT_OK && (!m.discrete || !m.data.test || m.data.test->shape.d[0] < 2 * pairs || steps < 2 || pairs < 1))
    code = cli_fail("interpolate", FG_E_MISUSE, "needs an image model, --steps >= 2, --pairs >= 1 and 2 test images per pair");
  fg_tensor *rows = NULL;
  fg_err e;
  for (int64_t k = 0; code == EXIT_OK && k < pairs; k++) {
    fg_tensor *pair, *mixed;
    fg_status st = fg_tensor_slice0(&pair, m.data.test, 2 * k, 2 * k + 2, &e);
    if (st == FG_OK) st = interpolate_pair(&m, pair, steps, &mixed, &e);
    fg_tensor_free(pair);
    if (st != FG_OK) {
      code = cli_fail("interpolate", st, e.msg);
      break;
    }
    if (!rows) {
      fg_shape s = mixed->shape;
      s.d[0] = steps * pairs;
      if (fg_tensor_new(&rows, FG_F32, &s, &e) != FG_OK) code = cli_fail("interpolate", FG_E_NOMEM, e.msg);
    }
    if (rows) memcpy((float *)fg_tensor_data(rows) + k * fg_tensor_numel(mixed), fg_tensor_data(mixed), (size_t)fg_tensor_numel(mixed) * sizeof(float));
    fg_tensor_free(mixed);
  }
  if (code == EXIT_OK) {
    fg_status st = fg_png_grid_write(out, rows, steps, 0, &e);
    if (st != FG_OK) code = cli_fail("interpolate", st, e.msg);
    else printf("%lld interpolations of %lld steps between test images: %s\n", (long long)pairs, (long long)steps, out);
  }
  fg_tensor_free(rows);
  cli_model_free(&m);
  return code;
}

const cli_command cli_sample = {
    "sample", "draw samples from a trained model as a PNG grid",
    "usage: flowgrad sample CHECKPOINT [--n 64] [--temperature T] [--seed S] [--out samples.png]\n\n"
    "Rebuilds the model from the spec stored in the checkpoint, loads its (EMA) weights and writes\n"
    "n samples drawn at temperature T (default: the spec's) as one PNG grid.\n",
    run_sample};

const cli_command cli_eval = {
    "eval", "test-set loss of a checkpoint (bits/dim for images)",
    "usage: flowgrad eval CHECKPOINT [--threads N]\n\n"
    "Evaluates the checkpoint's (EMA) weights on the test split of its spec's data, with the same\n"
    "fixed dequantisation noise training used, and prints the mean bits/dim (nats for 2-D data).\n",
    run_eval};

const cli_command cli_interpolate = {
    "interpolate", "interpolate between test images in latent space",
    "usage: flowgrad interpolate CHECKPOINT [--pairs 4] [--steps 8] [--out interpolation.png]\n\n"
    "Encodes pairs of test images (every factored-out latent too), blends the latents linearly in\n"
    "--steps steps and decodes each blend; one row of the PNG grid per pair.\n",
    run_interpolate};
