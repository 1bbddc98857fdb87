#include "flows/params.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "core/rng.h"
#include "core/size.h"
#include "core/vec.h"

typedef struct param_entry {
  char *name;
  fg_tensor *value;
  fg_init init;
} param_entry;

typedef struct buffer_entry {
  char *name;
  fg_tensor *value;
  fg_buffer_check check;
} buffer_entry;

struct fg_params {
  uint64_t seed;
  int64_t limit,
      scalars; /* the most scalars parameters and buffers may hold (0: any), and theirs */
  param_entry *items;
  int64_t cap;
  int n;
  buffer_entry *buffers;
  int64_t cap_buffers;
  int n_buffers;
};

fg_status fg_params_new(fg_params **out, uint64_t seed, fg_err *e) {
  fg_params *ps = calloc(1, sizeof *ps);
  *out = ps;
  if (!ps) return fg_err_set(e, FG_E_NOMEM, "parameters: out of memory");
  ps->seed = seed;
  return FG_OK;
}

void fg_params_free(fg_params *ps) {
  if (!ps) return;
  for (int i = 0; i < ps->n; i++) {
    free(ps->items[i].name);
    fg_tensor_free(ps->items[i].value);
  }
  for (int i = 0; i < ps->n_buffers; i++) {
    free(ps->buffers[i].name);
    fg_tensor_free(ps->buffers[i].value);
  }
  free(ps->buffers);
  free(ps->items);
  free(ps);
}

static int index_of(const fg_params *ps, const char *name) {
  for (int i = 0; i < ps->n; i++)
    if (strcmp(ps->items[i].name, name) == 0) return i;
  return -1;
}

/* Modified Gram-Schmidt on the rows of a Gaussian matrix: a random rotation. */
static void orthogonal_rows(double *m, int64_t n, uint64_t seed) {
  for (int64_t i = 0; i < n * n; i++) m[i] = fg_rng_normal(seed, (uint64_t)i);
  for (int64_t r = 0; r < n; r++) {
    double *row = m + r * n;
    for (int64_t q = 0; q < r; q++) {
      const double *prev = m + q * n;
      double dot = 0;
      for (int64_t j = 0; j < n; j++) dot += row[j] * prev[j];
      for (int64_t j = 0; j < n; j++) row[j] -= dot * prev[j];
    }
    double norm = 0;
    for (int64_t j = 0; j < n; j++) norm += row[j] * row[j];
    norm = sqrt(norm);
    for (int64_t j = 0; j < n; j++) row[j] = norm > 0 ? row[j] / norm : (j == r);
  }
}

static fg_status draw(fg_tensor *t, fg_init init, uint64_t seed, fg_err *e) {
  int64_t n = fg_tensor_numel(t);
  const fg_shape *s = &t->shape;
  int64_t rows = s->ndim >= 2 ? s->d[s->ndim - 2] : 1, cols = s->ndim >= 1 ? s->d[s->ndim - 1] : 1;
  switch (init.kind) {
  case FG_INIT_ZEROS: fg_tensor_fill(t, 0.0); return FG_OK;
  case FG_INIT_CONST: fg_tensor_fill(t, init.a); return FG_OK;
  case FG_INIT_NORMAL:
    for (int64_t i = 0; i < n; i++)
      fg_tensor_set(t, i, init.a + init.b * fg_rng_normal(seed, (uint64_t)i));
    return FG_OK;
  case FG_INIT_UNIFORM:
    for (int64_t i = 0; i < n; i++)
      fg_tensor_set(t, i, init.a + (init.b - init.a) * fg_rng_uniform(seed, (uint64_t)i));
    return FG_OK;
  case FG_INIT_IDENTITY:
    for (int64_t i = 0; i < n; i++)
      fg_tensor_set(t, i, (i % (rows * cols)) / cols == i % cols ? 1.0 : 0.0);
    return FG_OK;
  case FG_INIT_ORTHOGONAL: {
    if (s->ndim != 2 || rows != cols)
      return fg_err_set(e, FG_E_SHAPE, "an orthogonal initialisation needs a square matrix");
    double *m = malloc(sizeof *m * (size_t)(rows * cols + 1));
    if (!m) return fg_err_set(e, FG_E_NOMEM, "out of memory initialising a parameter");
    orthogonal_rows(m, rows, seed);
    for (int64_t i = 0; i < n; i++) fg_tensor_set(t, i, m[i]);
    free(m);
    return FG_OK;
  }
  }
  return fg_err_set(e, FG_E_MISUSE, "unknown initialisation kind %d", (int)init.kind);
}

static uint64_t seed_for(const fg_params *ps, const char *name) {
  return XXH3_64bits_withSeed(name, strlen(name), ps->seed);
}

void fg_params_set_limit(fg_params *ps, int64_t max_scalars) { ps->limit = max_scalars; }

/* Whether a new parameter of shape s fits the store's limit; *numel gets its size. */
static fg_status check_room(const fg_params *ps, const char *name, const fg_shape *s,
                            int64_t *numel, fg_err *e) {
  fg_status st = fg_shape_numel(s, numel, e);
  int64_t total;
  if (st != FG_OK || ps->limit == 0) return st;
  if (!fg_size_add(ps->scalars, *numel, &total) || total > ps->limit) {
    char buf[128];
    return fg_err_set(e, FG_E_LIMIT,
                      "'%s' %s would bring the model past %lld parameters (scalars, "
                      "buffers included; it has %lld; fg_flow_config.max_params)",
                      name, fg_shape_str(s, buf, sizeof buf), (long long)ps->limit,
                      (long long)ps->scalars);
  }
  return FG_OK;
}

fg_status fg_params_get_or_create(fg_tensor **out, fg_params *ps, const char *name, fg_dtype t,
                                  fg_shape shape, fg_init init, fg_err *e) {
  int i = index_of(ps, name);
  if (i >= 0) {
    fg_tensor *v = ps->items[i].value;
    if (v->dtype != t || !fg_shape_equal(&v->shape, &shape)) {
      char a[128], b[128];
      return fg_err_set(e, FG_E_SHAPE, "parameter '%s' exists as %s %s; asked for %s %s", name,
                        fg_dtype_name(v->dtype), fg_shape_str(&v->shape, a, sizeof a),
                        fg_dtype_name(t), fg_shape_str(&shape, b, sizeof b));
    }
    *out = v;
    return FG_OK;
  }
  int64_t numel;
  fg_status st = check_room(ps, name, &shape, &numel, e);
  if (st != FG_OK) return st;
  if (!FG_VEC_RESERVE(ps->items, ps->cap, ps->n + 1))
    return fg_err_set(e, FG_E_NOMEM, "out of memory for parameter '%s'", name);
  fg_tensor *v = NULL;
  st = fg_tensor_new(&v, t, &shape, e);
  if (st == FG_OK) st = draw(v, init, seed_for(ps, name), e);
  char *copy = NULL;
  if (st == FG_OK && !(copy = strdup(name)))
    st = fg_err_set(e, FG_E_NOMEM, "out of memory for parameter '%s'", name);
  if (st != FG_OK) {
    fg_tensor_free(v);
    return st;
  }
  ps->items[ps->n++] = (param_entry){copy, v, init};
  ps->scalars += numel;
  *out = v;
  return FG_OK;
}

fg_tensor *fg_params_find(const fg_params *ps, const char *name) {
  int i = index_of(ps, name);
  return i >= 0 ? ps->items[i].value : NULL;
}

int fg_params_count(const fg_params *ps) { return ps ? ps->n : 0; }
const char *fg_params_name(const fg_params *ps, int i) { return ps->items[i].name; }
fg_tensor *fg_params_tensor(const fg_params *ps, int i) { return ps->items[i].value; }

int64_t fg_params_numel(const fg_params *ps) {
  int64_t n = 0;
  for (int i = 0; i < ps->n; i++) n += fg_tensor_numel(ps->items[i].value);
  return n;
}

fg_status fg_params_bind(const fg_params *ps, fg_program *p, fg_err *e) {
  for (int i = 0; i < ps->n; i++) {
    fg_status st = fg_program_bind(p, ps->items[i].name, ps->items[i].value, e);
    if (st != FG_OK && st != FG_E_NOTFOUND)
      return fg_err_prefix(e, st, "binding parameter '%s'", ps->items[i].name);
  }
  return FG_OK;
}

fg_status fg_params_reset(fg_params *ps, int i, fg_err *e) {
  if (i < 0 || i >= ps->n) return fg_err_set(e, FG_E_MISUSE, "no parameter %d", i);
  return draw(ps->items[i].value, ps->items[i].init, seed_for(ps, ps->items[i].name), e);
}

/* ---- buffers ---- */

static int buffer_index(const fg_params *ps, const char *name) {
  for (int i = 0; i < ps->n_buffers; i++)
    if (strcmp(ps->buffers[i].name, name) == 0) return i;
  return -1;
}

fg_status fg_params_add_buffer(fg_params *ps, const char *name, fg_tensor *v, fg_buffer_check check,
                               fg_err *e) {
  int64_t numel;
  fg_status st = buffer_index(ps, name) >= 0
      ? fg_err_set(e, FG_E_EXISTS, "buffer '%s' exists already", name)
      : v->dtype != FG_F64 ? fg_err_set(e, FG_E_DTYPE, "buffer '%s' must be float64", name)
                           : check_room(ps, name, &v->shape, &numel, e);
  char *copy = NULL;
  if (st == FG_OK &&
      (!FG_VEC_RESERVE(ps->buffers, ps->cap_buffers, ps->n_buffers + 1) || !(copy = strdup(name))))
    st = fg_err_set(e, FG_E_NOMEM, "out of memory for buffer '%s'", name);
  if (st != FG_OK) {
    fg_tensor_free(v);
    return st;
  }
  ps->buffers[ps->n_buffers++] = (buffer_entry){copy, v, check};
  ps->scalars += numel;
  return FG_OK;
}

fg_tensor *fg_params_find_buffer(const fg_params *ps, const char *name) {
  int i = buffer_index(ps, name);
  return i >= 0 ? ps->buffers[i].value : NULL;
}

int fg_params_num_buffers(const fg_params *ps) { return ps ? ps->n_buffers : 0; }
const char *fg_params_buffer_name(const fg_params *ps, int i) { return ps->buffers[i].name; }
fg_tensor *fg_params_buffer(const fg_params *ps, int i) { return ps->buffers[i].value; }

fg_status fg_params_check_buffer(const fg_params *ps, int i, const fg_tensor *v, fg_err *e) {
  const buffer_entry *b = &ps->buffers[i];
  if (v->dtype != FG_F64 || !fg_shape_equal(&v->shape, &b->value->shape)) {
    char a[128], c[128];
    return fg_err_set(e, FG_E_FORMAT, "buffer '%s' is float64 %s; the value given is %s %s",
                      b->name, fg_shape_str(&b->value->shape, a, sizeof a), fg_dtype_name(v->dtype),
                      fg_shape_str(&v->shape, c, sizeof c));
  }
  for (int64_t j = 0; j < fg_tensor_numel(v); j++)
    if (!isfinite(fg_tensor_get(v, j)))
      return fg_err_set(e, FG_E_FORMAT, "buffer '%s': element %lld is %g", b->name, (long long)j,
                        fg_tensor_get(v, j));
  fg_status st = b->check ? b->check(v, e) : FG_OK;
  return st == FG_OK ? FG_OK : fg_err_prefix(e, FG_E_FORMAT, "buffer '%s'", b->name);
}
