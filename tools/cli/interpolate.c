/* flowgrad interpolate: blend test images in latent space (every latent of a multi-scale model,
 * fg_flow_encode_latents), and for a conditional model their class contexts too. */
#include <stdlib.h>
#include <string.h>

#include "core/formats/png_grid.h"
#include "ops/ops.h"
#include "tools/cli/cli.h"

/* steps rows (1 - a)·v[0] + a·v[1] for a = 0 .. 1. */
static fg_node mix_rows(fg_graph *g, fg_node v, int64_t steps) {
  fg_shape s = fg_node_shape(g, v), alpha_shape = s;
  alpha_shape.d[0] = steps;
  for (int i = 1; i < s.ndim; i++) alpha_shape.d[i] = 1;
  fg_tensor *a;
  if (fg_tensor_new(&a, fg_node_dtype(g, v), &alpha_shape, NULL) != FG_OK) return FG_POISON;
  for (int64_t j = 0; j < steps; j++)
    fg_tensor_set(a, j, steps > 1 ? (double)j / (double)(steps - 1) : 0);
  fg_node alpha = fg_constant_take(g, a), first = fg_slice_axis(g, v, 0, 0, 1),
          second = fg_slice_axis(g, v, 0, 1, 2);
  return fg_add(g, fg_mul(g, first, fg_sub(g, fg_scalar(g, 1.0, fg_node_dtype(g, v)), alpha)),
                fg_mul(g, second, alpha));
}

/* The blends of one pair (model space, with its labels for a conditional model). */
static fg_status interpolate_pair(cli_model *m, const fg_tensor *pair, const fg_tensor *labels,
                                  int64_t steps, fg_tensor **out, fg_err *e) {
  fg_graph *g;
  fg_status st = fg_graph_new(&g, e);
  if (st != FG_OK) return st;
  int n = fg_flow_latent_count(m->flow);
  fg_node *lat = calloc((size_t)n, sizeof *lat), x = fg_input(g, "x", pair->dtype, pair->shape),
          back;
  fg_node ctx = cli_context_input(m, g, 2);
  if (!lat) st = fg_err_set(e, FG_E_NOMEM, "out of memory");
  if (st == FG_OK && fg_flow_encode_latents(m->flow, g, x, ctx, lat, NULL) == FG_OK) {
    for (int i = 0; i < n; i++) lat[i] = mix_rows(g, lat[i], steps);
    fg_flow_decode_latents(m->flow, g, lat, ctx == FG_NONE ? FG_NONE : mix_rows(g, ctx, steps),
                           &back);
  }
  fg_tensor *context = NULL;
  if (st == FG_OK) st = cli_context(m, labels, &context, e);
  cli_input in[2] = {{"x", pair}, {"context", context}};
  if (st == FG_OK) st = cli_run(m, g, back, 2, in, out, e);
  fg_tensor_free(context);
  free(lat);
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

/* Test images 2k and 2k+1 as the model sees them, and their labels (NULL without). */
static fg_status pair_of(cli_model *m, int64_t k, fg_tensor **pair, fg_tensor **labels, fg_err *e) {
  fg_tensor *raw = NULL;
  *pair = *labels = NULL;
  fg_status st = fg_tensor_slice0(&raw, m->data.test, 2 * k, 2 * k + 2, e);
  if (st == FG_OK) st = cli_model_input(m, raw, pair, e);
  if (st == FG_OK && m->data.test_labels)
    st = fg_tensor_slice0(labels, m->data.test_labels, 2 * k, 2 * k + 2, e);
  fg_tensor_free(raw);
  return st;
}

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
  if (code == EXIT_OK && cli_classes(&m) && !m.data.test_labels)
    code =
        cli_fail("interpolate", FG_E_MISUSE, "a conditional model needs the test images' labels");
  fg_tensor *rows = NULL;
  fg_err e;
  for (int64_t k = 0; code == EXIT_OK && k < pairs; k++) {
    fg_tensor *pair, *labels, *mixed = NULL;
    fg_status st = pair_of(&m, k, &pair, &labels, &e);
    if (st == FG_OK) st = interpolate_pair(&m, pair, labels, steps, &mixed, &e);
    fg_tensor_free(pair), fg_tensor_free(labels);
    if (st == FG_OK && !rows) {
      fg_shape s = mixed->shape;
      s.d[0] = steps * pairs;
      st = fg_tensor_new(&rows, FG_F32, &s, &e);
    }
    if (st == FG_OK)
      memcpy((float *)fg_tensor_data(rows) + k * fg_tensor_numel(mixed), fg_tensor_data(mixed),
             (size_t)fg_tensor_numel(mixed) * sizeof(float));
    fg_tensor_free(mixed);
    if (st != FG_OK) code = cli_fail("interpolate", st, e.msg);
  }
  int64_t bad = code == EXIT_OK ? cli_grey_out_non_finite(rows) : 0;
  if (bad)
    fprintf(stderr, "warning: %lld of %lld decoded blends are not finite; drawn grey in %s\n",
            (long long)bad, (long long)rows->shape.d[0], out);
  if (code == EXIT_OK) {
    fg_png_grid_opts o = {.cols = steps,
                          .caption = "latent interpolation between test images, one pair per row"};
    fg_status st = fg_png_grid_write_opts(out, rows, &o, &e);
    if (st != FG_OK) code = cli_fail("interpolate", st, e.msg);
    else
      printf("%lld interpolations of %lld steps between test images: %s\n", (long long)pairs,
             (long long)steps, out);
  }
  fg_tensor_free(rows);
  cli_model_free(&m);
  return code;
}

const cli_command cli_interpolate = {
    "interpolate", "interpolate between test images in latent space",
    "usage: flowgrad interpolate CHECKPOINT [--pairs 4] [--steps 8] [--out interpolation.png]\n"
    "                            [--plugin lib.so]...\n\n"
    "Encodes pairs of test images to all their latents (every level of a multi-scale model),\n"
    "blends the latents linearly in --steps steps (2 to 1024) and decodes each blend; one row of\n"
    "the PNG grid per pair (1 to 1024).  A class-conditional model blends the two images' one-hot\n"
    "labels the same way.  --plugin loads a plugin the checkpoint's spec needs (the error names\n"
    "it).\n",
    run_interpolate};
