/* flowgrad interpolate: blend test images in latent space (factored-out latents included). */
#include <stdlib.h>
#include <string.h>

#include "core/formats/png_grid.h"
#include "ops/ops.h"
#include "tools/cli/cli.h"

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
  if (st == FG_OK) st = cli_run_one(m, g, back, "x", pair, out, e);
  free(lat);
  fg_flow_ctx_free(enc);
  fg_flow_ctx_free(dec);
  fg_graph_free(g);
  return st;
}

static const cli_opt options[] = {
    {"--pairs", CLI_INT, 1, 1024},
    {"--steps", CLI_INT, 2, 1024},
    {"--out", CLI_TEXT, 0, 0},
    CLI_THREADS_OPT,
    CLI_PLUGIN_OPT,
    {NULL, CLI_FLAG, 0, 0},
};

static int run_interpolate(int argc, char **argv) {
  const char *ckpt;
  int code = cli_checkpoint_arg(argc, argv, "interpolate", options, &ckpt);
  if (code != EXIT_OK) return code;
  cli_model m;
  code = cli_model_from_checkpoint(&m, "interpolate", ckpt, argc, argv, true);
  int64_t steps = cli_int(argc, argv, "--steps", 8), pairs = cli_int(argc, argv, "--pairs", 4);
  const char *out =
      cli_option(argc, argv, "--out") ? cli_option(argc, argv, "--out") : "interpolation.png";
  if (code == EXIT_OK && (!m.discrete || !m.data.test || m.data.test->shape.d[0] < 2 * pairs))
    code = cli_fail("interpolate", FG_E_MISUSE, "needs an image model and 2 test images per pair");
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

const cli_command cli_interpolate = {
    "interpolate", "interpolate between test images in latent space",
    "usage: flowgrad interpolate CHECKPOINT [--pairs 4] [--steps 8] [--out interpolation.png]\n"
    "                            [--plugin lib.so]...\n\n"
    "Encodes pairs of test images (every factored-out latent too), blends the latents linearly in\n"
    "--steps steps (2 to 1024) and decodes each blend; one row of the PNG grid per pair (1 to\n"
    "1024).  --plugin loads a plugin the checkpoint's spec needs (the error names it).\n",
    run_interpolate};
