/* Class means of latents, their cache file, and edits along class directions (class_means.h). */
#include "flows/class_means.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/formats/safetensors.h"
#include "core/runtime/program.h"
#include "ops/ops.h"

static const char FORMAT[] = "flowgrad-class-means-1";

void fg_class_means_free(fg_class_means *m) {
  if (!m) return;
  for (int i = 0; m->mean && i < m->n_latents; i++) fg_tensor_free(m->mean[i]);
  free(m->mean);
  free(m->count);
  free(m);
}

/* Zeroed means for f's latents and `classes` classes. */
static fg_status means_new(fg_class_means **out, const fg_flow *f, int64_t classes, fg_err *e) {
  fg_class_means *m = calloc(1, sizeof *m);
  fg_status st = m ? FG_OK : FG_E_NOMEM;
  if (m) {
    m->n_latents = fg_flow_latent_count(f), m->classes = classes;
    m->mean = calloc((size_t)m->n_latents, sizeof *m->mean);
    m->count = calloc((size_t)classes, sizeof *m->count);
    if (!m->mean || !m->count) st = FG_E_NOMEM;
  }
  for (int i = 0; st == FG_OK && i < m->n_latents; i++) {
    fg_shape ls = fg_flow_latent_shape_at(f, i), s = {.ndim = ls.ndim + 1};
    s.d[0] = classes;
    for (int k = 0; k < ls.ndim; k++) s.d[k + 1] = ls.d[k];
    st = fg_tensor_new(&m->mean[i], FG_F64, &s, NULL);
  }
  if (st != FG_OK) {
    fg_class_means_free(m);
    return fg_err_set(e, st, "class means: out of memory");
  }
  *out = m;
  return FG_OK;
}

/* ---- computing ---- */

typedef struct encoder {
  fg_graph *g;
  fg_program *p;
  int64_t batch;
} encoder;

static void encoder_free(encoder *en) {
  fg_program_free(en->p);
  fg_graph_free(en->g);
  memset(en, 0, sizeof *en);
}

/* A program encoding `batch` samples ("x", "context" for a conditional flow) to every latent. */
static fg_status encoder_new(encoder *en, fg_flow *f, int64_t batch, fg_err *e) {
  memset(en, 0, sizeof *en);
  en->batch = batch;
  fg_status st = fg_graph_new(&en->g, e);
  if (st != FG_OK) return st;
  const fg_flow_config *cfg = fg_flow_get_config(f);
  fg_shape xs = {.ndim = cfg->event.ndim + 1};
  xs.d[0] = batch;
  for (int i = 0; i < cfg->event.ndim; i++) xs.d[i + 1] = cfg->event.d[i];
  fg_node x = fg_input(en->g, "x", cfg->dtype, xs), ctx = FG_NONE;
  if (cfg->context) ctx = fg_input(en->g, "context", cfg->dtype, fg_shape2(batch, cfg->context));
  int n = fg_flow_latent_count(f);
  fg_node *lat = malloc(sizeof *lat * (size_t)n);
  if (!lat) return fg_err_set(e, FG_E_NOMEM, "class means: out of memory");
  if (fg_flow_encode_latents(f, en->g, x, ctx, lat, NULL) != FG_OK)
    st = fg_err_set(e, fg_graph_status(en->g), "class means: %s", fg_graph_errmsg(en->g));
  if (st == FG_OK) st = fg_program_new(&en->p, en->g, n, lat, e);
  if (st == FG_OK) st = fg_params_bind(fg_flow_params(f), en->p, e);
  free(lat);
  return st;
}

/* Adds the latents of rows [start, start + n) to the class sums. */
static fg_status encode_rows(encoder *en, fg_flow *f, const fg_tensor *x, const fg_tensor *labels,
                             int64_t start, fg_class_means *m, fg_err *e) {
  fg_tensor *xs = NULL, *ls = NULL, *xc = NULL, *ctx = NULL;
  fg_status st = fg_tensor_slice0(&xs, x, start, start + en->batch, e);
  if (st == FG_OK) st = fg_tensor_copy(&xc, xs, fg_flow_get_config(f)->dtype, e);
  if (st == FG_OK) st = fg_tensor_slice0(&ls, labels, start, start + en->batch, e);
  if (st == FG_OK && fg_flow_context_size(f)) st = fg_flow_class_context(&ctx, f, ls, e);
  if (st == FG_OK) st = fg_program_bind(en->p, "x", xc, e);
  if (st == FG_OK && ctx) st = fg_program_bind(en->p, "context", ctx, e);
  if (st == FG_OK) st = fg_program_run(en->p, e);
  for (int i = 0; st == FG_OK && i < m->n_latents; i++) {
    const fg_tensor *z = fg_program_output(en->p, i);
    int64_t per = fg_tensor_numel(z) / en->batch;
    for (int64_t r = 0; r < en->batch; r++) {
      int64_t k = (int64_t)fg_tensor_get(ls, r);
      for (int64_t j = 0; j < per; j++)
        fg_tensor_set(m->mean[i], k * per + j,
                      fg_tensor_get(m->mean[i], k * per + j) + fg_tensor_get(z, r * per + j));
    }
  }
  for (int64_t r = 0; st == FG_OK && r < en->batch; r++) m->count[(int64_t)fg_tensor_get(ls, r)]++;
  fg_tensor_free(xs), fg_tensor_free(xc), fg_tensor_free(ls), fg_tensor_free(ctx);
  return st;
}

static fg_status check_labels(const fg_tensor *x, const fg_tensor *labels, int64_t classes,
                              fg_err *e) {
  if (classes < 1 || labels->shape.ndim != 1 || x->shape.ndim < 1 ||
      labels->shape.d[0] != x->shape.d[0])
    return fg_err_set(e, FG_E_SHAPE,
                      "class means: need labels [N] for data [N, ...] and classes >= 1");
  for (int64_t i = 0; i < labels->shape.d[0]; i++) {
    double v = fg_tensor_get(labels, i);
    if (!(v >= 0 && v < (double)classes && (double)(int64_t)v == v))
      return fg_err_set(e, FG_E_FORMAT, "class means: label %lld is %g, not a class 0..%lld",
                        (long long)i, v, (long long)(classes - 1));
  }
  return FG_OK;
}

fg_status fg_class_means_compute(fg_class_means **out, fg_flow *f, const fg_tensor *x,
                                 const fg_tensor *labels, int64_t classes, int64_t batch,
                                 fg_err *e) {
  *out = NULL;
  fg_status st = check_labels(x, labels, classes, e);
  if (st != FG_OK) return st;
  int64_t n = x->shape.d[0];
  if (batch < 1 || batch > n) batch = n;
  fg_class_means *m;
  if ((st = means_new(&m, f, classes, e)) != FG_OK) return st;
  encoder full, rest = {0};
  st = encoder_new(&full, f, batch, e);
  int64_t done = 0;
  for (; st == FG_OK && done + batch <= n; done += batch)
    st = encode_rows(&full, f, x, labels, done, m, e);
  if (st == FG_OK && done < n && (st = encoder_new(&rest, f, n - done, e)) == FG_OK)
    st = encode_rows(&rest, f, x, labels, done, m, e);
  encoder_free(&full), encoder_free(&rest);
  for (int i = 0; st == FG_OK && i < m->n_latents; i++) {
    int64_t per = fg_tensor_numel(m->mean[i]) / classes;
    for (int64_t k = 0; k < classes; k++)
      for (int64_t j = 0; m->count[k] && j < per; j++)
        fg_tensor_set(m->mean[i], k * per + j,
                      fg_tensor_get(m->mean[i], k * per + j) / (double)m->count[k]);
  }
  if (st != FG_OK) {
    fg_class_means_free(m);
    return st;
  }
  *out = m;
  return FG_OK;
}

/* ---- the cache file ---- */

fg_status fg_class_means_save(const fg_class_means *m, const char *path, const char *tag,
                              fg_err *e) {
  fg_safetensors_item *items = calloc((size_t)m->n_latents + 1, sizeof *items);
  char (*names)[32] = calloc((size_t)m->n_latents, sizeof *names);
  fg_status st = items && names ? FG_OK : fg_err_set(e, FG_E_NOMEM, "%s: out of memory", path);
  for (int i = 0; st == FG_OK && i < m->n_latents; i++) {
    snprintf(names[i], sizeof names[i], "latent%d", i);
    items[i] = (fg_safetensors_item){.name = names[i], .tensor = m->mean[i]};
  }
  items[m->n_latents] = (fg_safetensors_item){.name = "count", .dtype = "I64",
                                              .shape = fg_shape1(m->classes), .data = m->count};
  fg_safetensors_kv meta[] = {{"format", FORMAT}, {"tag", tag ? tag : ""}};
  if (st == FG_OK) st = fg_safetensors_write(path, items, (size_t)m->n_latents + 1, meta, 2, e);
  free(items);
  free(names);
  return st;
}

static fg_status load_entries(fg_class_means *m, fg_safetensors *file, const char *path,
                              fg_err *e) {
  fg_status st = FG_OK;
  for (int i = 0; st == FG_OK && i < m->n_latents; i++) {
    char name[32];
    snprintf(name, sizeof name, "latent%d", i);
    fg_tensor *v = NULL;
    st = fg_safetensors_get(&v, file, name, e);
    if (st == FG_OK && !fg_shape_equal(&v->shape, &m->mean[i]->shape))
      st = fg_err_set(e, FG_E_FORMAT, "%s: '%s' does not fit this model's latents", path, name);
    for (int64_t j = 0; st == FG_OK && j < fg_tensor_numel(v); j++)
      fg_tensor_set(m->mean[i], j, fg_tensor_get(v, j));
    fg_tensor_free(v);
  }
  const fg_safetensors_info *c = st == FG_OK ? fg_safetensors_find(file, "count") : NULL;
  if (st == FG_OK && (!c || c->ndim != 1 || c->dims[0] != m->classes || strcmp(c->dtype, "I64")))
    st = fg_err_set(e, FG_E_FORMAT, "%s: 'count' missing or not %lld classes", path,
                    (long long)m->classes);
  if (st == FG_OK)
    st = fg_safetensors_read_raw(file, "count", m->count, sizeof *m->count * (size_t)m->classes, e);
  return st;
}

fg_status fg_class_means_load(fg_class_means **out, const fg_flow *f, const char *path,
                              const char *tag, fg_err *e) {
  *out = NULL;
  FILE *probe = fopen(path, "rb");
  if (!probe) return fg_err_set(e, FG_E_NOTFOUND, "%s: no class means", path);
  fclose(probe);
  fg_safetensors *file;
  fg_status st = fg_safetensors_open(&file, path, e);
  if (st != FG_OK) return st;
  const char *format = fg_safetensors_meta(file, "format"),
             *have = fg_safetensors_meta(file, "tag");
  const fg_safetensors_info *c = fg_safetensors_find(file, "count");
  fg_class_means *m = NULL;
  if (!format || strcmp(format, FORMAT) || !have || strcmp(have, tag ? tag : "") || !c ||
      c->ndim != 1)
    st = fg_err_set(e, FG_E_FORMAT, "%s: class means of another model or checkpoint", path);
  if (st == FG_OK) st = means_new(&m, f, c->dims[0], e);
  if (st == FG_OK) st = load_entries(m, file, path, e);
  fg_safetensors_close(file);
  if (st != FG_OK) {
    fg_class_means_free(m);
    return st;
  }
  *out = m;
  return FG_OK;
}

/* ---- edits ---- */

/* scale·(mean[to] - mean[from]) of latent i as a constant [1, latent i...]. */
static fg_node direction(fg_graph *g, const fg_class_means *m, int i, int64_t from, int64_t to,
                         double scale, fg_dtype t) {
  fg_shape s = m->mean[i]->shape;
  s.d[0] = 1;
  int64_t per = fg_shape_count(&s);
  fg_tensor *d;
  if (fg_tensor_new(&d, t, &s, NULL) != FG_OK)
    return fg_graph_fail(g, FG_E_NOMEM, "edit: out of memory");
  for (int64_t j = 0; j < per; j++)
    fg_tensor_set(d, j,
                  scale * (fg_tensor_get(m->mean[i], to * per + j) -
                           fg_tensor_get(m->mean[i], from * per + j)));
  return fg_constant_take(g, d);
}

fg_status fg_flow_edit_latents(fg_flow *f, fg_graph *g, fg_node x, fg_node context,
                               const fg_class_means *m, int64_t from, int64_t to, int n_scales,
                               const double *scales, fg_node *out) {
  *out = FG_POISON;
  int n = fg_flow_latent_count(f);
  if (m->n_latents != n || from < 0 || to < 0 || from >= m->classes || to >= m->classes ||
      n_scales < 1)
    return fg_graph_fail_status(g, FG_E_MISUSE,
                                "edit: classes %lld -> %lld of %lld, %d scales, "
                                "means of %d latents for a flow of %d",
                                (long long)from, (long long)to, (long long)m->classes, n_scales,
                                m->n_latents, n);
  fg_node *lat = calloc((size_t)n * 2 + (size_t)n_scales, sizeof *lat), *moved = lat + n,
          *parts = moved + n;
  if (!lat) return fg_graph_fail_status(g, FG_E_NOMEM, "edit: out of memory");
  fg_dtype t = fg_flow_get_config(f)->dtype;
  if (fg_flow_encode_latents(f, g, x, context, lat, NULL) == FG_OK) {
    for (int i = 0; i < n; i++) { /* the B images at every scale, scale by scale */
      for (int k = 0; k < n_scales; k++)
        parts[k] = fg_add(g, lat[i], direction(g, m, i, from, to, scales[k], t));
      moved[i] = fg_concat(g, n_scales, parts, 0);
    }
    for (int k = 0; context != FG_NONE && k < n_scales; k++) parts[k] = context;
    fg_node tiled = context != FG_NONE ? fg_concat(g, n_scales, parts, 0) : FG_NONE;
    fg_flow_decode_latents(f, g, moved, tiled, out);
  }
  free(lat);
  return fg_graph_status(g);
}
