/* flowgrad edit: move test images of one class towards another along the difference of the
 * classes' mean latents (openai/glow's attribute manipulation), as a PNG grid. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/formats/plot.h"
#include "core/formats/png_grid.h"
#include "flows/class_means.h"
#include "tools/cli/cli.h"

enum { MAX_SCALES = 16 };

typedef struct edit_opts {
  int64_t from, to, n, per_class;
  double scales[MAX_SCALES];
  int n_scales;
  const char *out;
} edit_opts;

/* "-1,-0.5,0,1": at most MAX_SCALES numbers. */
static bool parse_scales(const char *text, edit_opts *o) {
  o->n_scales = 0;
  for (const char *s = text; *s && o->n_scales < MAX_SCALES;) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno) return false;
    o->scales[o->n_scales++] = v;
    s = *end == ',' ? end + 1 : end;
    if (*end && *end != ',') return false;
  }
  return o->n_scales > 0;
}

/* The cache beside the checkpoint: "run/checkpoint.safetensors" ->
 * "run/checkpoint.class-means.safetensors". */
static void cache_path(const char *ckpt, char *buf, size_t cap) {
  size_t n = strlen(ckpt), ext = strlen(".safetensors");
  if (n > ext && !strcmp(ckpt + n - ext, ".safetensors")) n -= ext;
  snprintf(buf, cap, "%.*s.class-means.safetensors", (int)n, ckpt);
}

/* What the means were computed from: the checkpoint's step, size and time, and the samples. */
static void cache_tag(const char *ckpt, int64_t per_class, char *buf, size_t cap) {
  struct stat sb;
  if (stat(ckpt, &sb) != 0) memset(&sb, 0, sizeof sb);
  snprintf(buf, cap, "size=%lld mtime=%lld per_class=%lld", (long long)sb.st_size,
           (long long)sb.st_mtime, (long long)per_class);
}

/* The first per_class training samples of every class (all with 0), as the model sees them. */
static fg_status training_subset(cli_model *m, int64_t per_class, fg_tensor **x, fg_tensor **labels,
                                 fg_err *e) {
  const fg_tensor *all = m->data.train, *lab = m->data.train_labels;
  int64_t n = all->shape.d[0], k = m->data.classes, keep = 0, row = fg_tensor_numel(all) / n;
  int64_t *taken = calloc((size_t)k, sizeof *taken), *rows = malloc(sizeof *rows * (size_t)n);
  fg_status st = taken && rows ? FG_OK : fg_err_set(e, FG_E_NOMEM, "out of memory");
  for (int64_t i = 0; st == FG_OK && i < n; i++) {
    int64_t c = (int64_t)fg_tensor_get(lab, i);
    if (per_class == 0 || taken[c] < per_class) rows[keep++] = i, taken[c]++;
  }
  fg_shape xs = all->shape, ls = fg_shape1(keep);
  xs.d[0] = keep;
  fg_tensor *raw = NULL;
  if (st == FG_OK) st = fg_tensor_new(&raw, FG_F32, &xs, e);
  if (st == FG_OK) st = fg_tensor_new(labels, FG_F32, &ls, e);
  for (int64_t i = 0; st == FG_OK && i < keep; i++) {
    fg_tensor_set(*labels, i, fg_tensor_get(lab, rows[i]));
    for (int64_t j = 0; j < row; j++)
      fg_tensor_set(raw, i * row + j, fg_tensor_get(all, rows[i] * row + j));
  }
  if (st == FG_OK) st = cli_model_input(m, raw, x, e);
  fg_tensor_free(raw);
  free(taken), free(rows);
  return st;
}

static fg_status class_means(cli_model *m, const char *ckpt, int64_t per_class,
                             fg_class_means **out, fg_err *e) {
  char path[4096], tag[256];
  cache_path(ckpt, path, sizeof path);
  cache_tag(ckpt, per_class, tag, sizeof tag);
  if (fg_class_means_load(out, m->flow, path, tag, e) == FG_OK) {
    printf("class means: %s (cached)\n", path);
    return FG_OK;
  }
  fg_tensor *x = NULL, *labels = NULL;
  fg_status st = training_subset(m, per_class, &x, &labels, e);
  if (st == FG_OK) {
    printf("class means of every latent over %lld training samples...\n", (long long)x->shape.d[0]);
    fflush(stdout);
    st = fg_class_means_compute(out, m->flow, x, labels, m->data.classes, 64, e);
  }
  if (st == FG_OK && fg_class_means_save(*out, path, tag, e) == FG_OK)
    printf("class means: %s\n", path);
  fg_tensor_free(x), fg_tensor_free(labels);
  return st;
}

/* The first n test images of class `from`, as the model sees them, and their labels. */
static fg_status sources(cli_model *m, const edit_opts *o, fg_tensor **x, fg_tensor **labels,
                         fg_err *e) {
  const fg_tensor *all = m->data.test, *lab = m->data.test_labels;
  int64_t row = fg_tensor_numel(all) / all->shape.d[0], found = 0;
  fg_shape xs = all->shape, ls = fg_shape1(o->n);
  xs.d[0] = o->n;
  fg_tensor *raw = NULL;
  fg_status st = fg_tensor_new(&raw, FG_F32, &xs, e);
  if (st == FG_OK) st = fg_tensor_new(labels, FG_F32, &ls, e);
  for (int64_t i = 0; st == FG_OK && i < all->shape.d[0] && found < o->n; i++) {
    if ((int64_t)fg_tensor_get(lab, i) != o->from) continue;
    fg_tensor_set(*labels, found, (double)o->from);
    for (int64_t j = 0; j < row; j++)
      fg_tensor_set(raw, found * row + j, fg_tensor_get(all, i * row + j));
    found++;
  }
  if (st == FG_OK && found < o->n)
    st = fg_err_set(e, FG_E_MISUSE,
                    "the test set has %lld images of class %lld, fewer than --n %lld",
                    (long long)found, (long long)o->from, (long long)o->n);
  if (st == FG_OK) st = cli_model_input(m, raw, x, e);
  fg_tensor_free(raw);
  return st;
}

/* Edited images, scale-major as fg_flow_edit_latents gives them, rearranged one source image per
 * row and one scale per column. */
static fg_status edit_grid(cli_model *m, const edit_opts *o, const fg_class_means *means,
                           fg_tensor **grid, fg_err *e) {
  fg_tensor *x = NULL, *labels = NULL, *ctx = NULL, *moved = NULL;
  fg_graph *g = NULL;
  fg_status st = sources(m, o, &x, &labels, e);
  if (st == FG_OK) st = cli_context(m, labels, &ctx, e);
  if (st == FG_OK) st = fg_graph_new(&g, e);
  fg_node out;
  if (st == FG_OK && fg_flow_edit_latents(m->flow, g, fg_input(g, "x", x->dtype, x->shape),
                                          cli_context_input(m, g, o->n), means, o->from, o->to,
                                          o->n_scales, o->scales, &out) != FG_OK)
    st = fg_err_set(e, fg_graph_status(g), "%s", fg_graph_errmsg(g));
  cli_input in[2] = {{"x", x}, {"context", ctx}};
  if (st == FG_OK) st = cli_run(m, g, out, 2, in, &moved, e);
  if (st == FG_OK) st = fg_tensor_new(grid, FG_F32, &moved->shape, e);
  int64_t per = st == FG_OK ? fg_tensor_numel(moved) / moved->shape.d[0] : 0;
  for (int64_t k = 0; st == FG_OK && k < o->n_scales; k++)
    for (int64_t b = 0; b < o->n; b++)
      memcpy((float *)fg_tensor_data(*grid) + (b * o->n_scales + k) * per,
             (const float *)fg_tensor_data(moved) + (k * o->n + b) * per,
             sizeof(float) * (size_t)per);
  fg_graph_free(g);
  fg_tensor_free(x), fg_tensor_free(labels), fg_tensor_free(ctx), fg_tensor_free(moved);
  return st;
}

/* 2-D points: every edited point, coloured by its scale (the order of --scales). */
static fg_status write_points(const edit_opts *o, const fg_tensor *grid, const char *title,
                              fg_err *e) {
  fg_tensor *scale_of;
  fg_shape s = fg_shape1(grid->shape.d[0]);
  fg_status st = fg_tensor_new(&scale_of, FG_F32, &s, e);
  for (int64_t i = 0; st == FG_OK && i < grid->shape.d[0]; i++)
    fg_tensor_set(scale_of, i, (double)(i % o->n_scales));
  fg_plot_opts po = {
      .title = title, .x_label = "x1 (colour: scale, in --scales order)", .y_label = "x2"};
  if (st == FG_OK) st = fg_plot_scatter(o->out, grid, scale_of, &po, e);
  fg_tensor_free(scale_of);
  return st;
}

static fg_status write_edit(cli_model *m, const edit_opts *o, fg_tensor *grid, fg_err *e) {
  char caption[256], a[64], b[64], cols[MAX_SCALES][16];
  const char *labels[MAX_SCALES];
  snprintf(caption, sizeof caption, "%s -> %s: latents + s (mean[%s] - mean[%s])",
           cli_class_name(m, o->from, a, sizeof a), cli_class_name(m, o->to, b, sizeof b), b, a);
  if (cli_is_2d(m)) return write_points(o, grid, caption, e);
  int64_t bad = cli_grey_out_non_finite(grid);
  if (bad)
    fprintf(stderr,
            "warning: %lld of %lld edited images are not finite (the inverse left the float range "
            "at a large scale); drawn grey in %s\n",
            (long long)bad, (long long)grid->shape.d[0], o->out);
  for (int k = 0; k < o->n_scales; k++) {
    snprintf(cols[k], sizeof cols[k], o->scales[k] == 0 ? "s = 0" : "%+g", o->scales[k]);
    labels[k] = cols[k];
  }
  fg_png_grid_opts go = {.cols = o->n_scales, .caption = caption, .col_labels = labels};
  return fg_png_grid_write_opts(o->out, grid, &go, e);
}

static int parse_opts(cli_model *m, int argc, char **argv, edit_opts *o, char *out, size_t cap) {
  const char *v, *from = cli_option(argc, argv, "--from"), *to = cli_option(argc, argv, "--to");
  if (!from || !to) return cli_fail("edit", FG_E_MISUSE, "--from and --to name the two classes");
  int code = cli_class_arg(m, "edit", from, &o->from);
  if (code == EXIT_OK) code = cli_class_arg(m, "edit", to, &o->to);
  if (code == EXIT_OK && (o->from < 0 || o->to < 0 || o->from == o->to))
    return cli_fail("edit", FG_E_MISUSE, "--from and --to must be two different classes");
  o->n = cli_int(argc, argv, "--n", 6);
  o->per_class = cli_int(argc, argv, "--per-class", 1000);
  if (code == EXIT_OK &&
      !parse_scales((v = cli_option(argc, argv, "--scales")) ? v : "-1,-0.5,0,0.5,1,1.5,2", o))
    return cli_fail("edit", FG_E_MISUSE, "--scales takes up to 16 numbers separated by commas");
  int64_t most = cli_is_2d(m) ? 10000 : 64; /* rows of a grid, or points of a scatter plot */
  if (code == EXIT_OK && (o->n < 1 || o->n > most || o->per_class < 0))
    return cli_fail("edit", FG_E_MISUSE,
                    "--n must be 1..64 (10000 for 2-D points) and --per-class >= 0");
  snprintf(out, cap, "edit-%lld-to-%lld.png", (long long)o->from, (long long)o->to);
  o->out = (v = cli_option(argc, argv, "--out")) ? v : out;
  return code;
}

static const cli_opt options[] = {
    {"--from", CLI_TEXT, 0, 0},
    {"--to", CLI_TEXT, 0, 0},
    {"--n", CLI_INT, 1, 10000},
    {"--per-class", CLI_INT, 0, 1e9},
    {"--scales", CLI_TEXT, 0, 0},
    {"--out", CLI_TEXT, 0, 0},
    CLI_PLUGIN_OPT,
    {NULL, CLI_FLAG, 0, 0},
};

static int run_edit(int argc, char **argv) {
  const char *ckpt;
  int code = cli_checkpoint_arg(argc, argv, "edit", options, &ckpt);
  if (code != EXIT_OK) return code;
  cli_model m;
  code = cli_model_from_checkpoint(&m, "edit", ckpt, argc, argv, true);
  if (code == EXIT_OK && (!m.data.train_labels || !m.data.test_labels || !m.data.test))
    code = cli_fail("edit", FG_E_MISUSE,
                    "edits need labelled training and test data (the spec's data has no labels)");
  edit_opts o;
  char default_out[64];
  if (code == EXIT_OK) code = parse_opts(&m, argc, argv, &o, default_out, sizeof default_out);
  fg_class_means *means = NULL;
  fg_tensor *grid = NULL;
  fg_err e;
  fg_status st = code == EXIT_OK ? class_means(&m, ckpt, o.per_class, &means, &e) : FG_OK;
  if (code == EXIT_OK && st == FG_OK) st = edit_grid(&m, &o, means, &grid, &e);
  if (code == EXIT_OK && st == FG_OK) st = write_edit(&m, &o, grid, &e);
  if (code == EXIT_OK && st != FG_OK) code = cli_fail("edit", st, e.msg);
  if (code == EXIT_OK)
    printf("%lld test images of class %lld moved towards class %lld at %d scales: %s\n",
           (long long)o.n, (long long)o.from, (long long)o.to, o.n_scales, o.out);
  fg_class_means_free(means);
  fg_tensor_free(grid);
  cli_model_free(&m);
  return code;
}

const cli_command cli_edit = {
    "edit", "move test images of one class towards another in latent space",
    "usage: flowgrad edit CHECKPOINT --from A --to B [--n 6] [--scales -1,-0.5,0,0.5,1,1.5,2]\n"
    "                     [--per-class 1000] [--out edit-A-to-B.png] [--plugin lib.so]...\n\n"
    "Computes the mean of every latent (all levels of a multi-scale model) over the first\n"
    "--per-class training images of each class (0: all of them) and caches it beside the\n"
    "checkpoint (CHECKPOINT.class-means.safetensors, recomputed when the checkpoint changes).\n"
    "Then takes the first --n test images of class A, adds s (mean[B] - mean[A]) to their\n"
    "latents for each scale s and decodes them: one row per image, one column per scale (s = 0\n"
    "is the reconstruction; 1 moves A's mean onto B's; negative scales move away from B).\n"
    "Classes are indices or names (Trouser).  A conditional model encodes and decodes with the\n"
    "image's own label.  A 2-D model's edits are drawn as points coloured by scale.\n",
    run_edit};
