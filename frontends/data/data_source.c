#include "frontends/data/data_source.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/formats/cifar.h"
#include "core/formats/idx.h"
#include "core/formats/npy.h"
#include "core/size.h"
#include "frontends/data/fashion_mnist.h"
#include "frontends/data/toy2d.h"

void fg_data_free(fg_data *d) {
  fg_tensor_free(d->train);
  fg_tensor_free(d->test);
  fg_tensor_free(d->train_labels);
  fg_tensor_free(d->test_labels);
  memset(d, 0, sizeof *d);
}

/* <dir>/<name> or <dir>/<name>.gz, whichever exists. */
static void find_file(const char *dir, const char *name, char *out, size_t cap) {
  snprintf(out, cap, "%s/%s", dir, name);
  if (access(out, R_OK) == 0) return;
  snprintf(out, cap, "%s/%s.gz", dir, name);
}

static fg_status concat_rows(fg_tensor **parts, int n, fg_tensor **out, fg_err *e) {
  fg_shape s = parts[0]->shape;
  s.d[0] = 0;
  for (int i = 0; i < n; i++) s.d[0] += parts[i]->shape.d[0];
  fg_status st = fg_tensor_new(out, FG_F32, &s, e);
  size_t at = 0;
  for (int i = 0; st == FG_OK && i < n; i++) {
    size_t bytes = (size_t)fg_tensor_numel(parts[i]) * sizeof(float);
    memcpy((char *)fg_tensor_data(*out) + at, fg_tensor_data(parts[i]), bytes);
    at += bytes;
  }
  return st;
}

static fg_status open_cifar(const char *dir, fg_data *d, fg_err *e) {
  fg_tensor *parts[5] = {0}, *labels[5] = {0};
  char path[4096];
  fg_status st = FG_OK;
  for (int i = 0; st == FG_OK && i < 5; i++) {
    char name[32];
    snprintf(name, sizeof name, "data_batch_%d.bin", i + 1);
    find_file(dir, name, path, sizeof path);
    st = fg_cifar_load(&parts[i], &labels[i], path, e);
  }
  if (st == FG_OK) st = concat_rows(parts, 5, &d->train, e);
  if (st == FG_OK) st = concat_rows(labels, 5, &d->train_labels, e);
  for (int i = 0; i < 5; i++) fg_tensor_free(parts[i]), fg_tensor_free(labels[i]);
  find_file(dir, "test_batch.bin", path, sizeof path);
  if (st == FG_OK) st = fg_cifar_load(&d->test, &d->test_labels, path, e);
  d->discrete = true;
  return st;
}

/* An IDX label file next to the images, when there is one (MNIST copies often lack them). */
static fg_status optional_labels(const char *dir, const char *name, fg_tensor **out, fg_err *e) {
  char path[4096];
  find_file(dir, name, path, sizeof path);
  return access(path, R_OK) == 0 ? fg_idx_load(out, path, e) : FG_OK;
}

static fg_status open_mnist(const char *dir, fg_data *d, fg_err *e) {
  char path[4096];
  find_file(dir, "train-images-idx3-ubyte", path, sizeof path);
  fg_status st = fg_idx_load(&d->train, path, e);
  find_file(dir, "t10k-images-idx3-ubyte", path, sizeof path);
  if (st == FG_OK) st = fg_idx_load(&d->test, path, e);
  if (st == FG_OK) st = optional_labels(dir, "train-labels-idx1-ubyte", &d->train_labels, e);
  if (st == FG_OK && d->train_labels)
    st = optional_labels(dir, "t10k-labels-idx1-ubyte", &d->test_labels, e);
  d->discrete = true;
  return st;
}

static bool all_levels(const fg_tensor *t) {
  const float *v = fg_tensor_data(t);
  for (int64_t i = 0; i < fg_tensor_numel(t); i++)
    if (!(v[i] >= 0 && v[i] <= 255 && v[i] == floorf(v[i]))) return false;
  return true;
}

/* "<train>[,<test>]": loads one or two .npy files. */
static fg_status npy_pair(char *files, fg_tensor **train, fg_tensor **test, fg_err *e) {
  char *comma = strchr(files, ',');
  if (comma) *comma = '\0';
  fg_status st = fg_npy_load(train, files, e);
  if (st == FG_OK && comma) st = fg_npy_load(test, comma + 1, e);
  return st;
}

static fg_status open_npy(const char *files, fg_data *d, fg_err *e) {
  char *copy = strdup(files);
  if (!copy) return fg_err_set(e, FG_E_NOMEM, "out of memory");
  char *labels = strstr(copy, " labels=");
  if (labels) *labels = '\0', labels += strlen(" labels=");
  fg_status st = npy_pair(copy, &d->train, &d->test, e);
  if (st == FG_OK && d->train->shape.ndim < 2)
    st = fg_err_set(e, FG_E_SHAPE, "%s: expected an array [N, ...] of samples", copy);
  if (st == FG_OK && labels) st = npy_pair(labels, &d->train_labels, &d->test_labels, e);
  if (st == FG_OK && labels && d->test && !d->test_labels)
    st = fg_err_set(e, FG_E_MISUSE, "npy:%s: labels for the training set only; give the test "
                    "set's too (labels=<train>,<test>)", files);
  free(copy);
  d->discrete = st == FG_OK && all_levels(d->train) && (!d->test || all_levels(d->test));
  return st;
}

/* "moons n=5000 noise=0.1": the generator name, then key=value settings, each at most once;
 * noise and scale default to the generator's published ones (fg_toy2d_defaults). */
typedef struct toy_settings {
  double n, test_n, noise, scale, seed;
} toy_settings;

static double *toy_slot(toy_settings *t, const char *key) {
  return !strcmp(key, "n")     ? &t->n
      : !strcmp(key, "test_n") ? &t->test_n
      : !strcmp(key, "noise")  ? &t->noise
      : !strcmp(key, "scale")  ? &t->scale
      : !strcmp(key, "seed")   ? &t->seed
                               : NULL;
}

static fg_status parse_toy(const char *source, const char *p, toy_settings *t, fg_err *e) {
  unsigned seen = 0;
  while (*(p += strspn(p, " \t,"))) {
    char key[32];
    double v;
    int used = 0;
    if (sscanf(p, "%31[a-z_]=%lf%n", key, &v, &used) != 2 || !strchr(" \t,", p[used]))
      return fg_err_set(
          e, FG_E_FORMAT,
          "data '%s': expected key=value at '%s' (keys n, test_n, noise, scale, seed)", source, p);
    double *slot = toy_slot(t, key);
    if (!slot)
      return fg_err_set(e, FG_E_FORMAT,
                        "data '%s': unknown setting '%s' (n, test_n, noise, scale, seed)", source,
                        key);
    unsigned bit = 1u << (slot - &t->n);
    if (seen & bit) return fg_err_set(e, FG_E_FORMAT, "data '%s': '%s' given twice", source, key);
    seen |= bit;
    *slot = v;
    p += used;
  }
  return FG_OK;
}

/* The settings as the generator takes them: counts and the seed are integers in range (any
 * other double would not convert to one), noise and scale finite. */
static fg_status toy_counts(const char *source, const toy_settings *t, int64_t *n, int64_t *test_n,
                            int64_t *seed, fg_err *e) {
  static const char *const names[] = {"n", "test_n"};
  const double v[] = {t->n, t->test_n};
  int64_t *out[] = {n, test_n};
  for (int i = 0; i < 2; i++)
    if (!fg_size_from_double(v[i], 1, FG_TOY_MAX_POINTS, out[i]))
      return fg_err_set(e, FG_E_FORMAT, "data '%s': %s must be an integer from 1 to %lld, got %g",
                        source, names[i], (long long)FG_TOY_MAX_POINTS, v[i]);
  if (!fg_size_from_double(t->seed, 0, FG_TOY_MAX_SEED, seed))
    return fg_err_set(e, FG_E_FORMAT, "data '%s': seed must be an integer from 0 to %lld, got %g",
                      source, (long long)FG_TOY_MAX_SEED, t->seed);
  if (!isfinite(t->noise) || t->noise < 0)
    return fg_err_set(e, FG_E_FORMAT, "data '%s': noise must be a finite number >= 0, got %g",
                      source, t->noise);
  if (!isfinite(t->scale) || t->scale <= 0)
    return fg_err_set(e, FG_E_FORMAT, "data '%s': scale must be a finite number > 0, got %g",
                      source, t->scale);
  return FG_OK;
}

static fg_status open_toy(const char *source, fg_data *d, fg_err *e) {
  char name[32] = {0};
  toy_settings t = {.n = 10000, .test_n = 5000, .seed = 0};
  size_t len = strcspn(source, " \t");
  snprintf(name, sizeof name, "%.*s", (int)len, source);
  int64_t n, test_n, seed;
  fg_status st = fg_toy2d_defaults(name, &t.noise, &t.scale, e);
  if (st == FG_OK) st = parse_toy(source, source + len, &t, e);
  if (st == FG_OK) st = toy_counts(source, &t, &n, &test_n, &seed, e);
  if (st == FG_OK)
    st = fg_toy2d_generate_labeled(&d->train, &d->train_labels, name, n, t.noise, t.scale,
                                   (uint64_t)seed, e);
  if (st == FG_OK)
    st = fg_toy2d_generate_labeled(&d->test, &d->test_labels, name, test_n, t.noise, t.scale,
                                   (uint64_t)seed + 1000003, e);
  d->discrete = false;
  return st;
}

static fg_status keep_first(fg_tensor **t, int64_t limit, fg_err *e) {
  if (limit <= 0 || !*t || (*t)->shape.d[0] <= limit) return FG_OK;
  fg_tensor *view, *copy;
  fg_status st = fg_tensor_slice0(&view, *t, 0, limit, e);
  if (st == FG_OK) st = fg_tensor_copy(&copy, view, (*t)->dtype, e);
  if (st == FG_OK) {
    fg_tensor_free(*t);
    *t = copy;
  }
  fg_tensor_free(view);
  return st;
}

/* Labels: one per sample, whole numbers >= 0; `classes` is one more than the largest. */
static fg_status check_labels(fg_data *d, const char *source, fg_err *e) {
  const fg_tensor *sets[2] = {d->train, d->test}, *labels[2] = {d->train_labels, d->test_labels};
  const char *names[2] = {"training", "test"};
  for (int k = 0; k < 2; k++) {
    if (!labels[k]) continue;
    if (labels[k]->shape.ndim != 1 || !sets[k] || labels[k]->shape.d[0] != sets[k]->shape.d[0])
      return fg_err_set(e, FG_E_FORMAT,
                        "data '%s': %s labels must be [N], one per sample (%lld "
                        "samples)",
                        source, names[k], sets[k] ? (long long)sets[k]->shape.d[0] : 0LL);
    for (int64_t i = 0; i < labels[k]->shape.d[0]; i++) {
      double v = fg_tensor_get(labels[k], i);
      if (!(v >= 0 && v <= FG_DATA_MAX_CLASSES && v == floor(v)))
        return fg_err_set(e, FG_E_FORMAT, "data '%s': %s label %lld is %g, not a class index "
                          "0..%d", source, names[k], (long long)i, v, FG_DATA_MAX_CLASSES);
      if (v + 1 > (double)d->classes) d->classes = (int64_t)v + 1;
    }
  }
  return FG_OK;
}

fg_status fg_data_open(fg_data *out, const char *source, int64_t limit, fg_err *e) {
  memset(out, 0, sizeof *out);
  if (!source || !*source)
    return fg_err_set(e, FG_E_MISUSE, "no data source (a spec's `data` line)");
  fg_status st;
  if (!strcmp(source, "fashion-mnist")) {
    st = fg_dataset_fashion_mnist_load(&out->train, &out->train_labels, "train", e);
    if (st == FG_OK) st = fg_dataset_fashion_mnist_load(&out->test, &out->test_labels, "test", e);
    out->discrete = true;
  } else if (!strncmp(source, "mnist:", 6)) st = open_mnist(source + 6, out, e);
  else if (!strncmp(source, "cifar10:", 8)) st = open_cifar(source + 8, out, e);
  else if (!strncmp(source, "npy:", 4)) st = open_npy(source + 4, out, e);
  else st = open_toy(source, out, e);
  if (st == FG_OK) st = keep_first(&out->train, limit, e);
  /* a set of no samples has nothing to train on, however wide its samples claim to be */
  if (st == FG_OK && (out->train->shape.d[0] == 0 || (out->test && out->test->shape.d[0] == 0)))
    st = fg_err_set(e, FG_E_FORMAT, "data '%s': the %s set has no samples", source,
                    out->train->shape.d[0] == 0 ? "training" : "test");
  if (st == FG_OK) st = keep_first(&out->train_labels, limit, e);
  if (st == FG_OK) st = check_labels(out, source, e);
  if (st != FG_OK) fg_data_free(out);
  return st;
}

static const char *const fashion_mnist_classes[] = {"T-shirt/top", "Trouser", "Pullover", "Dress",
                                                    "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                                                    "Ankle boot"};
static const char *const cifar10_classes[] = {"airplane", "automobile", "bird", "cat", "deer",
                                              "dog", "frog", "horse", "ship", "truck"};
static const char *const moons_classes[] = {"upper moon", "lower moon"};
static const char *const rings_classes[] = {"outer ring", "ring 2", "ring 3", "inner ring"};

const char *fg_data_class_name(const char *source, int64_t k) {
  static const struct {
    const char *prefix;
    const char *const *names;
    int64_t n;
  } known[] = {{"fashion-mnist", fashion_mnist_classes, 10}, {"cifar10:", cifar10_classes, 10},
               {"moons", moons_classes, 2}, {"rings", rings_classes, 4}};
  for (size_t i = 0; source && i < sizeof known / sizeof *known; i++)
    if (!strncmp(source, known[i].prefix, strlen(known[i].prefix)))
      return k >= 0 && k < known[i].n ? known[i].names[k] : NULL;
  return NULL;
}
