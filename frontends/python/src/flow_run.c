/* Flow methods that run programs: log_prob, forward, inverse, sample, run_layer.  Each kind
 * keeps its last compiled program (keyed by input shapes, dtype and temperature) and re-binds
 * its inputs to views of the new arrays, so repeated calls with the same shapes neither compile
 * nor copy their inputs. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ext.h"

void fgpy_cached_clear(fgpy_cached *c) {
  fg_program_free(c->p); /* drops the program's references to the views first */
  fg_graph_free(c->g);
  for (int i = 0; i < FGPY_MAX_INPUTS; i++) fgpy_view_free(c->views[i]);
  memset(c, 0, sizeof *c);
}

static void input_name(char *buf, size_t cap, int i) { snprintf(buf, cap, "in%d", i); }

static fg_node input(fg_graph *g, const fgpy_key *k, int i) {
  char name[16];
  input_name(name, sizeof name, i);
  return fg_input(g, name, k->dtype, k->shapes[i]);
}

static fg_flow_ctx *make_ctx(FlowObject *self, fg_graph *g) {
  const fg_flow_config *cfg = fg_flow_get_config(self->flow);
  fg_flow_ctx_opts o = {.dtype = cfg->dtype, .seed = cfg->seed};
  fg_flow_ctx *c = NULL;
  fg_err e;
  if (fg_flow_ctx_new(&c, g, fg_flow_params(self->flow), &o, &e) != FG_OK)
    fg_graph_fail(g, e.status, "%s", e.msg);
  return c;
}

/* ---- graph builders: outputs into outs, their count into *n_out ---- */

typedef void (*build_fn)(FlowObject *self, const fgpy_key *k, fg_graph *g, fg_node *outs,
                         int *n_out);

static void build_log_prob(FlowObject *self, const fgpy_key *k, fg_graph *g, fg_node *outs,
                           int *n_out) {
  *n_out = 1;
  fg_flow_log_prob(self->flow, g, input(g, k, 0), false, &outs[0]);
}

/* forward or inverse of layer `layer` of the chain (-1: the whole flow). */
static void build_bijector(FlowObject *self, const fgpy_key *k, fg_graph *g, fg_node *outs,
                           int *n_out, bool inverse, int layer) {
  fg_bijector *b = fg_flow_bijector(self->flow);
  if (layer >= 0) b = fg_bijector_num_children(b) > 0 ? fg_bijector_child(b, layer) : b;
  fg_flow_ctx *c = make_ctx(self, g);
  *n_out = 2;
  if (!c) return;
  fg_node x = input(g, k, 0);
  if (inverse) {
    for (int i = 1; i < k->n_in; i++) fg_flow_push_latent(c, input(g, k, i)); /* forward order */
    fg_bijector_inverse(b, c, x, &outs[0], &outs[1]);
    if (fg_graph_status(g) == FG_OK && fg_flow_num_latents(c) > 0)
      fg_graph_fail(g, FG_E_MISUSE, "%d factored-out parts were not used", fg_flow_num_latents(c));
  } else {
    fg_bijector_forward(b, c, x, &outs[0], &outs[1]);
    int n = fg_flow_num_latents(c);
    if (layer < 0 && fg_graph_status(g) == FG_OK && n == self->n_latents) {
      for (int i = n - 1; i >= 0; i--) outs[2 + i] = fg_flow_pop_latent(c);
      *n_out = 2 + n;
    }
  }
  fg_flow_ctx_free(c);
}

static void build_forward(FlowObject *self, const fgpy_key *k, fg_graph *g, fg_node *outs,
                          int *n_out) {
  build_bijector(self, k, g, outs, n_out, false, -1);
}

static void build_inverse(FlowObject *self, const fgpy_key *k, fg_graph *g, fg_node *outs,
                          int *n_out) {
  build_bijector(self, k, g, outs, n_out, true, -1);
}

static void build_sample(FlowObject *self, const fgpy_key *k, fg_graph *g, fg_node *outs,
                         int *n_out) {
  *n_out = 1;
  fg_flow_sample(self->flow, g, k->n, k->temperature, 0, &outs[0]);
}

/* ---- compiling, binding, running ---- */

/* Builds and compiles c's program for key k (c cleared first). */
static int compile_into(FlowObject *self, fgpy_cached *c, const fgpy_key *k, build_fn build) {
  fgpy_cached_clear(c);
  fg_err e;
  fg_status st = fg_graph_new(&c->g, &e);
  if (st != FG_OK) {
    fgpy_raise(st, e.msg);
    return -1;
  }
  fg_node outs[FGPY_MAX_INPUTS + 2];
  int n_out = 0;
  build(self, k, c->g, outs, &n_out);
  if (fg_graph_status(c->g) != FG_OK) {
    fgpy_raise_graph(c->g, self->name);
    fgpy_cached_clear(c);
    return -1;
  }
  st = fgpy_compile(&c->p, c->g, n_out, outs, &e);
  if (st == FG_OK) st = fg_params_bind(fg_flow_params(self->flow), c->p, &e);
  if (st != FG_OK) {
    fgpy_raise(st, e.msg);
    fgpy_cached_clear(c);
    return -1;
  }
  c->key = *k;
  return 0;
}

/* Binds views[0..n) as in0..: the program lets go of the previous views, which are freed. */
static int bind_inputs(fgpy_cached *c, fgpy_view **views, int n) {
  for (int i = 0; i < n; i++) {
    char name[16];
    fg_err e;
    input_name(name, sizeof name, i);
    fg_status st = fg_program_bind(c->p, name, &views[i]->t, &e);
    if (st != FG_OK) {
      fgpy_raise(st, e.msg);
      return -1;
    }
    fgpy_view_free(c->views[i]);
    c->views[i] = views[i];
    views[i] = NULL;
  }
  return 0;
}

/* Runs c's program and returns its outputs as a tuple of new arrays. */
static PyObject *run_outputs(fgpy_cached *c) {
  fg_err e;
  fg_status st = fgpy_run_program(c->p, &e);
  if (st != FG_OK) return fgpy_raise(st, e.msg);
  int n = fg_program_num_outputs(c->p);
  PyObject *out = PyTuple_New(n);
  for (int i = 0; out && i < n; i++) {
    PyObject *a = fgpy_array_copy(fg_program_output(c->p, i));
    if (!a)
      Py_CLEAR(out);
    else
      PyTuple_SET_ITEM(out, i, a);
  }
  return out;
}

/* The whole call: the cached program of k's kind (rebuilt when k differs), inputs bound, run.
 * Takes over views[0..k->n_in) (freed on failure). */
static PyObject *call(FlowObject *self, const fgpy_key *k, fgpy_view **views, build_fn build) {
  fgpy_flow_lock(self);
  fgpy_cached *c = &self->cache[k->kind];
  PyObject *out = NULL;
  if ((c->p && !memcmp(&c->key, k, sizeof *k)) || compile_into(self, c, k, build) == 0)
    if (bind_inputs(c, views, k->n_in) == 0) out = run_outputs(c);
  fgpy_flow_unlock(self);
  for (int i = 0; i < k->n_in; i++) fgpy_view_free(views[i]);
  return out;
}

/* ---- argument checks ---- */

static void key_init(fgpy_key *k, int kind, FlowObject *self) {
  memset(k, 0, sizeof *k);
  k->kind = kind;
  k->dtype = fg_flow_get_config(self->flow)->dtype;
}

/* A view of obj whose shape must be [B, per_sample...] (B >= 1; B == *batch unless it is -1). */
static fgpy_view *batch_view(PyObject *obj, fg_dtype t, const fg_shape *per_sample, int64_t *batch,
                             const char *what) {
  fgpy_view *v = fgpy_view_new(obj, t, what);
  if (!v) return NULL;
  const fg_shape *s = &v->t.shape;
  bool ok = s->ndim == per_sample->ndim + 1 && s->d[0] >= 1 && (*batch < 0 || s->d[0] == *batch);
  for (int i = 0; ok && i < per_sample->ndim; i++) ok = s->d[i + 1] == per_sample->d[i];
  if (!ok) {
    char want[128], got[128];
    PyErr_Format(PyExc_ValueError, "%s has shape %s; expected [batch] + %s%s", what,
                 fg_shape_str(s, got, sizeof got), fg_shape_str(per_sample, want, sizeof want),
                 *batch >= 0 ? " with the batch of z" : "");
    fgpy_view_free(v);
    return NULL;
  }
  *batch = s->d[0];
  return v;
}

/* The outputs of a program of `kind` over x (log_prob, forward). */
static PyObject *run_on_x(FlowObject *self, PyObject *args, int kind, build_fn build) {
  PyObject *x;
  if (!PyArg_ParseTuple(args, "O", &x)) return NULL;
  fgpy_key k;
  key_init(&k, kind, self);
  int64_t batch = -1;
  fgpy_view *v = batch_view(x, k.dtype, &fg_flow_get_config(self->flow)->event, &batch, "x");
  if (!v) return NULL;
  k.n_in = 1, k.shapes[0] = v->t.shape;
  return call(self, &k, &v, build);
}

PyObject *fgpy_flow_log_prob(FlowObject *self, PyObject *args) {
  PyObject *out = run_on_x(self, args, FGPY_LOG_PROB, build_log_prob);
  PyObject *logp = out ? PyTuple_GET_ITEM(out, 0) : NULL;
  Py_XINCREF(logp);
  Py_XDECREF(out);
  return logp;
}

/* (z, logdet, [latents]) */
PyObject *fgpy_flow_forward(FlowObject *self, PyObject *args) {
  PyObject *out = run_on_x(self, args, FGPY_FORWARD, build_forward);
  if (!out) return NULL;
  PyObject *lat = PyTuple_GetSlice(out, 2, PyTuple_GET_SIZE(out));
  PyObject *lat_list = lat ? PySequence_List(lat) : NULL;
  PyObject *r = NULL;
  if (lat_list)
    r = Py_BuildValue("(OON)", PyTuple_GET_ITEM(out, 0), PyTuple_GET_ITEM(out, 1), lat_list);
  Py_XDECREF(lat);
  Py_DECREF(out);
  return r;
}

/* inverse(z, latents) -> (x, logdet) */
PyObject *fgpy_flow_inverse(FlowObject *self, PyObject *args) {
  PyObject *z, *latents;
  if (!PyArg_ParseTuple(args, "OO!", &z, &PyList_Type, &latents)) return NULL;
  Py_ssize_t n = PyList_GET_SIZE(latents);
  if (n != self->n_latents)
    return PyErr_Format(PyExc_ValueError, "this flow factors out %d parts; got %zd latents",
                        self->n_latents, n);
  fgpy_key k;
  key_init(&k, FGPY_INVERSE, self);
  fgpy_view *views[FGPY_MAX_INPUTS] = {0};
  int64_t batch = -1;
  fg_shape top = fg_flow_latent_shape(self->flow);
  views[0] = batch_view(z, k.dtype, &top, &batch, "z");
  for (Py_ssize_t i = 0; views[0] && i < n; i++) {
    char what[32];
    snprintf(what, sizeof what, "latent %zd", i);
    if (!(views[i + 1] =
              batch_view(PyList_GET_ITEM(latents, i), k.dtype, &self->latents[i], &batch, what)))
      break;
  }
  k.n_in = 1 + (int)n;
  for (int i = 0; i < k.n_in; i++)
    if (!views[i]) {
      for (int j = 0; j < k.n_in; j++) fgpy_view_free(views[j]);
      return NULL;
    }
  for (int i = 0; i < k.n_in; i++) k.shapes[i] = views[i]->t.shape;
  return call(self, &k, views, build_inverse);
}

PyObject *fgpy_flow_sample(FlowObject *self, PyObject *args) {
  long long n;
  double temperature;
  PyObject *seed_obj;
  if (!PyArg_ParseTuple(args, "LdO!", &n, &temperature, &PyLong_Type, &seed_obj)) return NULL;
  unsigned long long seed =
      PyLong_AsUnsignedLongLong(seed_obj); /* OverflowError outside 0..2^64-1 */
  if (PyErr_Occurred()) return NULL;
  if (n < 1 || n > ((long long)1 << 31))
    return PyErr_Format(PyExc_ValueError, "n must be in 1..2^31, got %lld", n);
  if (!(temperature >= 0 && temperature <= 1e6))
    return PyErr_Format(PyExc_ValueError, "temperature must be a number in [0, 1e6], got %g",
                        temperature);
  fgpy_key k;
  key_init(&k, FGPY_SAMPLE, self);
  k.n = n;
  k.temperature =
      temperature > 1e-30 ? temperature : 1e-30; /* 0: the mode (fg_flow_sample reads 0 as 1) */
  fgpy_flow_lock(self);
  fgpy_cached *c = &self->cache[FGPY_SAMPLE];
  PyObject *out = NULL;
  if ((c->p && !memcmp(&c->key, &k, sizeof k)) || compile_into(self, c, &k, build_sample) == 0) {
    fg_program_set_rng_offset(c->p, seed);
    out = run_outputs(c);
  }
  fgpy_flow_unlock(self);
  if (!out) return NULL;
  PyObject *x = PyTuple_GET_ITEM(out, 0);
  Py_INCREF(x);
  Py_DECREF(out);
  return x;
}

/* run_layer(i, x, inverse) -> (y, logdet): one top-level layer, in x's dtype (float64 gives a
 * float32 flow's layer in float64), compiled for this call only. */
PyObject *fgpy_flow_run_layer(FlowObject *self, PyObject *args) {
  int index, inverse;
  PyObject *x;
  if (!PyArg_ParseTuple(args, "iOp", &index, &x, &inverse)) return NULL;
  int n = fg_bijector_num_children(fg_flow_bijector(self->flow));
  if (index < 0 || index >= (n > 0 ? n : 1))
    return PyErr_Format(PyExc_IndexError, "no layer %d", index);
  bool f64 = PyArray_Check(x) && PyArray_TYPE((PyArrayObject *)x) == NPY_FLOAT64;
  fgpy_view *v = fgpy_view_new(x, f64 ? FG_F64 : FG_F32, "x");
  if (!v) return NULL;
  if (v->t.shape.ndim < 1 || v->t.shape.d[0] < 1) {
    fgpy_view_free(v);
    return PyErr_Format(PyExc_ValueError, "x needs a batch axis of at least one sample");
  }
  fgpy_key k;
  key_init(&k, FGPY_KINDS, self);
  k.dtype = v->t.dtype, k.n_in = 1, k.shapes[0] = v->t.shape;
  fgpy_cached c = {0};
  fgpy_flow_lock(self);
  PyObject *out = NULL;
  fg_graph *g;
  fg_err e;
  fg_status st = fg_graph_new(&g, &e);
  fg_node outs[2];
  int n_out;
  if (st == FG_OK) build_bijector(self, &k, g, outs, &n_out, inverse, index);
  if (st != FG_OK)
    fgpy_raise(st, e.msg);
  else if (fg_graph_status(g) != FG_OK)
    fgpy_raise_graph(g, self->name);
  else if ((st = fgpy_compile(&c.p, g, 2, outs, &e)) != FG_OK ||
           (st = fg_params_bind(fg_flow_params(self->flow), c.p, &e)) != FG_OK)
    fgpy_raise(st, e.msg);
  else if (bind_inputs(&c, &v, 1) == 0)
    out = run_outputs(&c);
  c.g = g;
  fgpy_cached_clear(&c);
  fgpy_flow_unlock(self);
  fgpy_view_free(v);
  return out;
}
