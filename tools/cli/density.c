/* flowgrad density: a 2-D model's density p(x) as a heatmap with the training points on it, the
 * standard figure of 2-D flow papers (also written by `train` for 2-D data). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/formats/plot.h"
#include "tools/cli/cli.h"

/* The box of the preview points: their 0.5 to 99.5 percentile range widened by 15 % a side, as
 * fg_plot_scatter fits it, made square so the picture keeps the aspect. */
static fg_plot_box points_box(const fg_tensor *p) {
  fg_plot_box b = {INFINITY, -INFINITY, INFINITY, -INFINITY};
  for (int64_t i = 0; i < p->shape.d[0]; i++) {
    double x = fg_tensor_get(p, 2 * i), y = fg_tensor_get(p, 2 * i + 1);
    if (!isfinite(x) || !isfinite(y)) continue;
    b.x0 = fmin(b.x0, x), b.x1 = fmax(b.x1, x), b.y0 = fmin(b.y0, y), b.y1 = fmax(b.y1, y);
  }
  double cx = (b.x0 + b.x1) / 2, cy = (b.y0 + b.y1) / 2;
  double half = 0.575 * fmax(b.x1 - b.x0, b.y1 - b.y0);
  if (!(half > 0) || !isfinite(half)) cx = cy = 0, half = 1;
  return (fg_plot_box){cx - half, cx + half, cy - half, cy + half};
}

/* The lattice's points, row 0 at the top: [grid², 2]. */
static fg_status lattice(const fg_plot_box *b, int64_t grid, fg_dtype t, fg_tensor **out,
                         fg_err *e) {
  fg_shape s = fg_shape2(grid * grid, 2);
  fg_status st = fg_tensor_new(out, t, &s, e);
  for (int64_t i = 0; st == FG_OK && i < grid; i++)
    for (int64_t j = 0; j < grid; j++) {
      fg_tensor_set(*out, 2 * (i * grid + j),
                    b->x0 + ((double)j + 0.5) * (b->x1 - b->x0) / (double)grid);
      fg_tensor_set(*out, 2 * (i * grid + j) + 1,
                    b->y1 - ((double)i + 0.5) * (b->y1 - b->y0) / (double)grid);
    }
  return st;
}

/* Weights of the classes in the mixture p(x) = Σ_k w_k p(x | k): klass alone, or the preview
 * labels' frequencies (uniform without them). */
static void class_weights(const cli_model *m, int64_t klass, double *w) {
  int64_t k = cli_classes(m), n = m->preview_labels ? m->preview_labels->shape.d[0] : 0;
  for (int64_t c = 0; c < k; c++) w[c] = klass >= 0 ? (c == klass) : n ? 0 : 1.0 / (double)k;
  for (int64_t i = 0; klass < 0 && i < n; i++)
    w[(int64_t)fg_tensor_get(m->preview_labels, i)] += 1.0 / (double)n;
}

/* p(x) at the lattice points into density [grid, grid]: one log-prob program, run once per
 * class of a conditional model (its context bound to that class) and mixed. */
static fg_status evaluate(cli_model *m, int64_t klass, const fg_tensor *pts, fg_tensor *density,
                          fg_err *e) {
  int64_t n = pts->shape.d[0], k = cli_classes(m);
  double *w = calloc((size_t)(k > 0 ? k : 1), sizeof *w);
  fg_graph *g = NULL;
  fg_status st = w ? fg_graph_new(&g, e) : fg_err_set(e, FG_E_NOMEM, "out of memory");
  fg_node logp;
  if (st == FG_OK && fg_flow_log_prob_cond(m->flow, g, fg_input(g, "x", pts->dtype, pts->shape),
                                           cli_context_input(m, g, n), false, &logp, NULL) != FG_OK)
    st = fg_err_set(e, fg_graph_status(g), "%s", fg_graph_errmsg(g));
  if (k) class_weights(m, klass, w);
  else w[0] = 1;
  for (int64_t c = 0; st == FG_OK && c < (k ? k : 1); c++) {
    if (w[c] == 0) continue;
    fg_tensor *labels = NULL, *ctx = NULL, *lp = NULL;
    fg_shape ls = fg_shape1(n);
    if (k && (st = fg_tensor_new(&labels, FG_F32, &ls, e)) == FG_OK)
      for (int64_t i = 0; i < n; i++) fg_tensor_set(labels, i, (double)c);
    if (st == FG_OK) st = cli_context(m, labels, &ctx, e);
    cli_input in[2] = {{"x", pts}, {"context", ctx}};
    if (st == FG_OK) st = cli_run(m, g, logp, 2, in, &lp, e);
    for (int64_t i = 0; st == FG_OK && i < n; i++)
      fg_tensor_set(density, i, fg_tensor_get(density, i) + w[c] * exp(fg_tensor_get(lp, i)));
    fg_tensor_free(labels), fg_tensor_free(ctx), fg_tensor_free(lp);
  }
  fg_graph_free(g);
  free(w);
  return st;
}

/* The preview points of class klass (all of them for CLI_NO_CLASS / CLI_ALL_CLASSES). */
static fg_status points_of(const cli_model *m, int64_t klass, fg_tensor **out, fg_err *e) {
  const fg_tensor *p = m->preview, *l = m->preview_labels;
  int64_t n = 0;
  for (int64_t i = 0; i < p->shape.d[0]; i++)
    n += klass < 0 || !l || fg_tensor_get(l, i) == (double)klass;
  fg_shape s = fg_shape2(n, 2);
  fg_status st = fg_tensor_new(out, FG_F32, &s, e);
  for (int64_t i = 0, at = 0; st == FG_OK && i < p->shape.d[0]; i++) {
    if (!(klass < 0 || !l || fg_tensor_get(l, i) == (double)klass)) continue;
    fg_tensor_set(*out, 2 * at, fg_tensor_get(p, 2 * i));
    fg_tensor_set(*out, 2 * at + 1, fg_tensor_get(p, 2 * i + 1));
    at++;
  }
  return st;
}

fg_status cli_write_density(cli_model *m, int64_t klass, int64_t grid, const char *path,
                            fg_err *e) {
  if (!cli_is_2d(m))
    return fg_err_set(e, FG_E_MISUSE, "a density picture needs a model of 2-D points");
  if (!m->preview) return fg_err_set(e, FG_E_MISUSE, "a density picture needs the training points");
  if (grid < 8 || grid > 2000) return fg_err_set(e, FG_E_MISUSE, "--grid must be 8..2000");
  fg_plot_box box = points_box(m->preview);
  fg_tensor *pts = NULL, *density = NULL, *shown = NULL;
  fg_shape ds = fg_shape2(grid, grid);
  fg_status st = lattice(&box, grid, fg_flow_get_config(m->flow)->dtype, &pts, e);
  if (st == FG_OK) st = fg_tensor_new(&density, FG_F64, &ds, e);
  if (st == FG_OK) st = evaluate(m, klass, pts, density, e);
  if (st == FG_OK) st = points_of(m, klass, &shown, e);
  char title[160], name[64];
  if (klass >= 0)
    snprintf(title, sizeof title, "p(x | %s), %lld training points",
             cli_class_name(m, klass, name, sizeof name),
             (long long)(shown ? shown->shape.d[0] : 0));
  else
    snprintf(title, sizeof title, "p(x) and %lld training points",
             (long long)(shown ? shown->shape.d[0] : 0));
  fg_plot_opts o = {.title = title, .x_label = "x1", .y_label = "x2", .box = &box};
  if (st == FG_OK) st = fg_plot_density(path, density, shown, &o, e);
  fg_tensor_free(pts), fg_tensor_free(density), fg_tensor_free(shown);
  return st;
}

static const cli_opt options[] = {
    {"--class", CLI_TEXT, 0, 0},
    {"--grid", CLI_INT, 2, 4000},
    {"--out", CLI_TEXT, 0, 0},
    CLI_PLUGIN_OPT,
    {NULL, CLI_FLAG, 0, 0},
};

static int run_density(int argc, char **argv) {
  const char *ckpt;
  int code = cli_checkpoint_arg(argc, argv, "density", options, &ckpt);
  if (code != EXIT_OK) return code;
  cli_model m;
  code = cli_model_from_checkpoint(&m, "density", ckpt, argc, argv, true);
  const char *v, *out = (v = cli_option(argc, argv, "--out")) ? v : "density.png";
  int64_t klass = CLI_NO_CLASS, grid = cli_int(argc, argv, "--grid", 200);
  if (code == EXIT_OK && (v = cli_option(argc, argv, "--class")) && strcmp(v, "all"))
    code = cli_class_arg(&m, "density", v, &klass);
  fg_err e;
  fg_status st = code == EXIT_OK ? cli_model_keep_preview(&m, &e) : FG_OK;
  if (code == EXIT_OK && st == FG_OK) st = cli_write_density(&m, klass, grid, out, &e);
  if (code == EXIT_OK && st != FG_OK) code = cli_fail("density", st, e.msg);
  if (code == EXIT_OK)
    printf("density on a %lld x %lld grid: %s\n", (long long)grid, (long long)grid, out);
  cli_model_free(&m);
  return code;
}

const cli_command cli_density = {
    "density", "a 2-D model's density p(x) as a heatmap with the training points on it",
    "usage: flowgrad density CHECKPOINT [--class K|NAME] [--grid 200] [--out density.png]\n"
    "                        [--plugin lib.so]...\n\n"
    "Evaluates the model's p(x) on a grid x grid lattice over the box of its training points and\n"
    "writes it as a heatmap (viridis, linear from 0 to the highest density) with the first 2000\n"
    "training points drawn over it.  For a class-conditional model, --class K shows p(x | K) and\n"
    "that class's points; without it, the mixture over classes weighted by their frequency.\n",
    run_density};
