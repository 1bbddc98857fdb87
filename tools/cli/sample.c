/* flowgrad sample: draw samples from a checkpoint as a picture (also the samples `train`
 * writes): a PNG grid of images, or a scatter plot of 2-D points; by class for a conditional
 * model. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/formats/plot.h"
#include "core/formats/png_grid.h"
#include "core/runtime/program.h"
#include "ops/ops.h"
#include "tools/cli/cli.h"

enum { SAMPLE_CHUNK = 256 }; /* samples drawn by one program run: memory stays a chunk's */
#define FG_SAMPLE_MAX 100000 /* --n: the PNG grid of 100000 28x28 images is 8876 px square */

/* What a draw is: how many, their contexts (NULL: unconditional), temperature and seed; `chunk`
 * is the rng offset of a part drawn by one program run. */
typedef struct draw {
  int64_t n;
  const fg_tensor *context;
  double temperature;
  uint64_t seed, chunk;
} draw;

/* Re-runs the same sampling one top-level layer at a time (fg_flow_sample_steps: the same
 * draws) and names the first layer whose inverse left the float range, into out. */
static void name_overflowing_layer(cli_model *m, const draw *d, char *out, size_t cap) {
  snprintf(out, cap, "no single layer found");
  int need = fg_bijector_num_children(fg_flow_bijector(m->flow)) + 2;
  fg_graph *g = NULL;
  fg_node *steps = malloc(sizeof *steps * (size_t)need);
  const char **names = malloc(sizeof *names * (size_t)need);
  fg_program *p = NULL;
  int n_steps = 0;
  bool ready =
      steps && names && fg_graph_new(&g, NULL) == FG_OK &&
      fg_flow_sample_steps_cond(m->flow, g, d->n, cli_context_input(m, g, d->n), d->temperature,
                                d->seed, need, steps, names, &n_steps) == FG_OK &&
      cli_program(m, g, n_steps, steps, &p, NULL) == FG_OK &&
      (!d->context || fg_program_bind(p, "context", d->context, NULL) == FG_OK);
  if (ready) fg_program_set_rng_offset(p, d->chunk); /* the draws of the part that overflowed */
  if (ready && fg_program_run(p, NULL) == FG_OK)
    for (int i = 0; i < n_steps; i++)
      if (!fg_tensor_all_finite(fg_program_output(p, i))) {
        int len = (int)strlen(names[i]);
        while (len > 0 && names[i][len - 1] == '.') len--; /* prefixes end in a dot */
        snprintf(out, cap, "first at layer %.*s, step %d of %d from the latent", len, names[i], i,
                 n_steps - 1);
        break;
      }
  fg_program_free(p);
  free(steps);
  free(names);
  fg_graph_free(g);
}

/* A sampling program for d->n samples over m's parameters, its context bound (*g and *p the
 * caller's to free). */
static fg_status sampler(cli_model *m, const draw *d, fg_graph **g, fg_program **p, fg_err *e) {
  fg_status st = fg_graph_new(g, e);
  if (st != FG_OK) return st;
  fg_node x;
  if (fg_flow_sample_cond(m->flow, *g, d->n, cli_context_input(m, *g, d->n), d->temperature,
                          d->seed, &x) != FG_OK)
    return fg_err_set(e, fg_graph_status(*g), "building the sampler: %s", fg_graph_errmsg(*g));
  st = cli_program(m, *g, 1, &x, p, e);
  if (st == FG_OK && d->context) st = fg_program_bind(*p, "context", d->context, e);
  return st;
}

/* Part [start, start + n) of the draw d: its own contexts, its chunk's rng offset. */
static fg_status draw_part(const draw *d, int64_t start, int64_t n, draw *part, fg_tensor **ctx,
                           fg_err *e) {
  *part = *d;
  part->n = n;
  part->chunk = (uint64_t)(start / SAMPLE_CHUNK);
  *ctx = NULL;
  if (!d->context) return FG_OK;
  fg_status st = fg_tensor_slice0(ctx, d->context, start, start + n, e);
  part->context = *ctx;
  return st;
}

/* Draws d->n samples SAMPLE_CHUNK at a time, one program per part size (full parts, then the
 * remainder); part k draws at rng offset k, so the first SAMPLE_CHUNK samples do not depend on
 * n.  *all gets [n, event...] (float32); `where` names the layer of the first overflow. */
static fg_status draw_in_parts(cli_model *m, const draw *d, fg_tensor **all, char *where,
                               size_t cap, fg_err *e) {
  fg_graph *g = NULL;
  fg_program *p = NULL;
  int64_t built = 0;
  fg_status st = FG_OK;
  for (int64_t start = 0; st == FG_OK && start < d->n; start += SAMPLE_CHUNK) {
    draw part;
    fg_tensor *ctx;
    int64_t k = d->n - start < SAMPLE_CHUNK ? d->n - start : SAMPLE_CHUNK;
    st = draw_part(d, start, k, &part, &ctx, e);
    if (st == FG_OK && k != built) {
      fg_program_free(p);
      fg_graph_free(g);
      p = NULL;
      g = NULL;
      built = k;
      st = sampler(m, &part, &g, &p, e);
    } else if (st == FG_OK && ctx) {
      st = fg_program_bind(p, "context", ctx, e);
    }
    if (st == FG_OK) {
      fg_program_set_rng_offset(p, part.chunk);
      st = fg_program_run(p, e);
    }
    const fg_tensor *out = st == FG_OK ? fg_program_output(p, 0) : NULL;
    fg_shape s = out ? out->shape : (fg_shape){0};
    s.d[0] = d->n;
    if (out && !*all) st = fg_tensor_new(all, FG_F32, &s, e);
    int64_t per = out ? fg_tensor_numel(out) / k : 0;
    for (int64_t i = 0; st == FG_OK && i < k * per; i++)
      fg_tensor_set(*all, start * per + i, fg_tensor_get(out, i));
    if (st == FG_OK && !where[0] && !fg_tensor_all_finite(out))
      name_overflowing_layer(m, &part, where, cap);
    fg_tensor_free(ctx); /* a view: the program keeps nothing of it past the run */
  }
  fg_program_free(p);
  fg_graph_free(g);
  return st;
}

/* d->n samples [n, event...] (float32), non-finite ones of an image model greyed out (warned). */
static fg_status draw_samples(cli_model *m, const draw *d, const char *path, fg_tensor **out,
                              fg_err *e) {
  char where[256] = "";
  fg_status st = draw_in_parts(m, d, out, where, sizeof where, e);
  int64_t bad = st == FG_OK && !cli_is_2d(m) ? cli_grey_out_non_finite(*out) : 0;
  if (bad)
    fprintf(stderr,
            "warning: %lld of %lld samples are not finite (the inverse left the float range at "
            "temperature %.2f, %s); drawn grey in %s\n",
            (long long)bad, (long long)d->n, d->temperature, where, path);
  return st;
}

/* The classes of the samples: klass for all n, or n of each class in turn (CLI_ALL_CLASSES); NULL
 * for an unconditional model. */
static fg_status sample_labels(const cli_model *m, int64_t klass, int64_t n, fg_tensor **labels,
                               int64_t *total, fg_err *e) {
  *labels = NULL, *total = n;
  int64_t k = cli_classes(m);
  if (!k) return FG_OK;
  if (klass == CLI_ALL_CLASSES || klass == CLI_NO_CLASS) *total = n * k;
  fg_shape s = fg_shape1(*total);
  fg_status st = fg_tensor_new(labels, FG_F32, &s, e);
  for (int64_t i = 0; st == FG_OK && i < *total; i++)
    fg_tensor_set(*labels, i, klass >= 0 ? (double)klass : (double)(i / n));
  return st;
}

static fg_status write_image_grid(cli_model *m, const fg_tensor *v, int64_t klass, int64_t n,
                                  double temperature, const char *path, fg_err *e) {
  int64_t k = cli_classes(m), rows = k && klass < 0 ? k : 0;
  char caption[160], name[64], (*names)[64] = rows ? calloc((size_t)rows, sizeof *names) : NULL;
  const char **labels = rows ? calloc((size_t)rows, sizeof *labels) : NULL;
  if (rows && (!names || !labels)) {
    free(names), free(labels);
    return fg_err_set(e, FG_E_NOMEM, "out of memory");
  }
  for (int64_t r = 0; r < rows; r++) labels[r] = cli_class_name(m, r, names[r], sizeof names[r]);
  if (klass >= 0)
    snprintf(caption, sizeof caption, "%lld samples of %s, temperature %.2f", (long long)n,
             cli_class_name(m, klass, name, sizeof name), temperature);
  else
    snprintf(caption, sizeof caption, "%lld samples%s, temperature %.2f", (long long)v->shape.d[0],
             rows ? ", one row per class" : "", temperature);
  int64_t cols = rows ? n : (int64_t)ceil(sqrt((double)v->shape.d[0]));
  fg_png_grid_opts o = {.cols = cols, .caption = caption, .row_labels = labels};
  fg_status st = fg_png_grid_write_opts(path, v, &o, e);
  free(names), free(labels);
  return st;
}

static fg_status write_scatter(cli_model *m, const fg_tensor *v, const fg_tensor *labels,
                               int64_t klass, double temperature, const char *path, fg_err *e) {
  char title[160], name[64];
  if (klass >= 0)
    snprintf(title, sizeof title, "%lld samples of %s, T = %.2f", (long long)v->shape.d[0],
             cli_class_name(m, klass, name, sizeof name), temperature);
  else
    snprintf(title, sizeof title, "%lld samples%s, T = %.2f", (long long)v->shape.d[0],
             labels ? " (colour: class)" : "", temperature);
  fg_plot_opts o = {.title = title, .x_label = "x1", .y_label = "x2"};
  return fg_plot_scatter(path, v, klass >= 0 ? NULL : labels, &o, e);
}

fg_status cli_write_samples(cli_model *m, int64_t klass, int64_t n, double temperature,
                            uint64_t seed, const char *path, fg_err *e) {
  if (!m->discrete && !cli_is_2d(m))
    return fg_err_set(e, FG_E_MISUSE, "samples are drawn as images or as 2-D points; this model is "
                      "neither");
  fg_tensor *labels = NULL, *context = NULL, *v = NULL;
  int64_t total;
  fg_status st = sample_labels(m, klass, n, &labels, &total, e);
  if (st == FG_OK) st = cli_context(m, labels, &context, e);
  draw d = {total, context, temperature > 0 ? temperature : 1e-9, seed, 0};
  if (st == FG_OK) st = draw_samples(m, &d, path, &v, e);
  if (st == FG_OK && cli_is_2d(m)) st = write_scatter(m, v, labels, klass, temperature, path, e);
  else if (st == FG_OK) st = write_image_grid(m, v, klass, n, temperature, path, e);
  fg_tensor_free(labels), fg_tensor_free(context), fg_tensor_free(v);
  return st;
}

static const cli_opt options[] = {
    {"--n", CLI_INT, 1, FG_SAMPLE_MAX},
    {"--class", CLI_TEXT, 0, 0},
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
  const char *klass_text = cli_option(argc, argv, "--class");
  int64_t klass = CLI_NO_CLASS;
  if (code == EXIT_OK && klass_text) code = cli_class_arg(&m, "sample", klass_text, &klass);
  bool two_d = code == EXIT_OK && cli_is_2d(&m);
  int64_t n = cli_int(argc, argv, "--n",
                      two_d                                              ? 2000
                      : code == EXIT_OK && cli_classes(&m) && klass < 0 ? 10
                                                                         : 64);
  double temp = cli_num(argc, argv, "--temperature",
                        two_d    ? 1.0
                        : m.spec ? m.spec->train.temperature
                                 : 0.7);
  uint64_t seed = (uint64_t)cli_int(argc, argv, "--seed", 1);
  const char *out =
      cli_option(argc, argv, "--out") ? cli_option(argc, argv, "--out") : "samples.png";
  if (code == EXIT_OK && cli_classes(&m) && klass < 0 && n * cli_classes(&m) > FG_SAMPLE_MAX)
    code = cli_fail("sample", FG_E_LIMIT, "--n of every class: at most 100000 samples in all");
  fg_err e;
  fg_status st = code == EXIT_OK ? cli_write_samples(&m, klass, n, temp, seed, out, &e) : FG_OK;
  if (st != FG_OK) code = cli_fail("sample", st, e.msg);
  int64_t total = code == EXIT_OK && cli_classes(&m) && klass < 0 ? n * cli_classes(&m) : n;
  if (code == EXIT_OK)
    printf("%lld samples at temperature %.2f: %s\n", (long long)total, temp, out);
  cli_model_free(&m);
  return code;
}

const cli_command cli_sample = {
    "sample", "draw samples from a trained model as a PNG (image grid, or 2-D scatter plot)",
    "usage: flowgrad sample CHECKPOINT [--n N] [--class K|NAME|all] [--temperature T] [--seed S]\n"
    "                       [--out samples.png] [--plugin lib.so]...\n\n"
    "Rebuilds the model from the spec stored in the checkpoint, loads its (EMA) weights and draws\n"
    "samples at temperature T (default: the spec's; 1 for 2-D points): an image model's as one\n"
    "PNG grid, each image zoomed so a 28x28 one is 84x84 pixels (default --n 64); a 2-D model's\n"
    "as a scatter plot (default --n 2000).  A class-conditional model (a spec with `classes N`)\n"
    "draws them given a class: --class K (an index or a class name such as Trouser) draws n of\n"
    "class K; --class all (the default) n of every class, one row per class (default --n 10), or\n"
    "one colour per class for 2-D points.  At most 100000 samples, drawn 256 at a time.  --plugin\n"
    "loads a plugin the checkpoint's spec needs (the error names it).\n",
    run_sample};
