/* The Flow type: construction from a spec or a checkpoint, parameters in and out, checkpoints,
 * graph dumps.  The methods that run programs are in flow_run.c. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ext.h"

void fgpy_flow_lock(FlowObject *f) {
  unsigned long me = PyThread_get_thread_ident();
  if (f->depth > 0 && f->owner == me) {
    f->depth++;
    return;
  }
  Py_BEGIN_ALLOW_THREADS
  PyThread_acquire_lock(f->lock, WAIT_LOCK);
  Py_END_ALLOW_THREADS
  f->owner = me;
  f->depth = 1;
}

void fgpy_flow_unlock(FlowObject *f) {
  if (--f->depth == 0) PyThread_release_lock(f->lock);
}

static void flow_dealloc(FlowObject *self) {
  for (int k = 0; k < FGPY_KINDS; k++) fgpy_cached_clear(&self->cache[k]);
  fg_flow_free(self->flow);
  free(self->spec_text);
  free(self->name);
  if (self->lock) PyThread_free_lock(self->lock);
  Py_TYPE(self)->tp_free((PyObject *)self);
}

/* The per-sample shapes of what the forward pass factors out, from a batch-1 graph. */
static fg_status find_latents(FlowObject *self, fg_err *e) {
  fg_graph *g;
  fg_status st = fg_graph_new(&g, e);
  if (st != FG_OK) return st;
  const fg_flow_config *cfg = fg_flow_get_config(self->flow);
  fg_shape xs = {.ndim = cfg->event.ndim + 1, .d = {1}};
  for (int i = 0; i < cfg->event.ndim; i++) xs.d[i + 1] = cfg->event.d[i];
  fg_flow_ctx_opts o = {.dtype = cfg->dtype, .seed = cfg->seed};
  fg_flow_ctx *c = NULL;
  st = fg_flow_ctx_new(&c, g, fg_flow_params(self->flow), &o, e);
  fg_node z, ld;
  if (st == FG_OK)
    fg_bijector_forward(fg_flow_bijector(self->flow), c, fg_input(g, "x", cfg->dtype, xs), &z, &ld);
  int n = c ? fg_flow_num_latents(c) : 0;
  if (st == FG_OK && fg_graph_status(g) != FG_OK)
    st = fg_err_set(e, fg_graph_status(g), "%s", fg_graph_errmsg(g));
  if (st == FG_OK && n >= FGPY_MAX_INPUTS)
    st = fg_err_set(e, FG_E_MISUSE, "the flow factors out %d parts; the binding takes at most %d",
                    n, FGPY_MAX_INPUTS - 1);
  for (int i = n - 1; st == FG_OK && i >= 0; i--) { /* pushed in forward order */
    fg_shape s = fg_node_shape(g, fg_flow_pop_latent(c));
    self->latents[i] = (fg_shape){.ndim = s.ndim - 1};
    for (int k = 1; k < s.ndim; k++) self->latents[i].d[k - 1] = s.d[k];
  }
  self->n_latents = st == FG_OK ? n : 0;
  fg_flow_ctx_free(c);
  fg_graph_free(g);
  return st;
}

PyObject *fgpy_flow_wrap(fg_flow *fl, const char *spec_text, const char *name,
                         const fg_train_settings *train, bool discrete) {
  FlowObject *self = (FlowObject *)fgpy_flow_type.tp_alloc(&fgpy_flow_type, 0);
  if (!self) {
    fg_flow_free(fl);
    return NULL;
  }
  self->flow = fl;
  self->train = *train;
  self->discrete = discrete;
  self->spec_text = strdup(spec_text);
  self->name = strdup(name);
  self->lock = PyThread_allocate_lock();
  if (!self->spec_text || !self->name || !self->lock) {
    Py_DECREF(self);
    return PyErr_NoMemory();
  }
  fg_err e;
  fg_status st = find_latents(self, &e);
  if (st != FG_OK) {
    Py_DECREF(self);
    return fgpy_raise(st, e.msg);
  }
  return (PyObject *)self;
}

/* A flow of spec s (its bijector taken over) for events `event`. */
static fg_status build_flow(fg_flow **out, fg_spec *s, fg_shape event, fg_dtype t, uint64_t seed,
                            fg_err *e) {
  fg_flow_config cfg = fg_spec_flow_config(s, event); /* a conditional spec gives a flow that
                                                        * asks for a context it is not given */
  cfg.dtype = t;
  cfg.seed = seed;
  fg_bijector *b = s->flow;
  s->flow = NULL;
  return fg_flow_new_config(out, b, &cfg, e);
}

/* The event shape and discreteness of the spec's own data (its first sample). */
static fg_status data_event(const fg_spec *s, fg_shape *event, bool *discrete, fg_err *e) {
  fg_data d;
  fg_status st;
  Py_BEGIN_ALLOW_THREADS
  st = fg_data_open(&d, s->data, 1, e);
  Py_END_ALLOW_THREADS
  if (st != FG_OK) return st;
  *event = (fg_shape){.ndim = d.train->shape.ndim - 1};
  for (int i = 1; i < d.train->shape.ndim; i++) event->d[i - 1] = d.train->shape.d[i];
  *discrete = d.discrete;
  fg_data_free(&d);
  return FG_OK;
}

PyObject *fgpy_flow_from_spec(PyObject *mod, PyObject *args) {
  (void)mod;
  const char *text, *name, *dtype_name;
  PyObject *event_obj, *seed_obj, *discrete_obj;
  if (!PyArg_ParseTuple(args, "ssOOsO", &text, &name, &event_obj, &seed_obj, &dtype_name,
                        &discrete_obj))
    return NULL;
  fg_dtype t;
  fg_shape event = {0};
  unsigned long long seed = 0;
  if (fgpy_dtype_parse(dtype_name, &t) < 0) return NULL;
  if (event_obj != Py_None && fgpy_shape_parse(event_obj, &event, "event") < 0) return NULL;
  if (seed_obj != Py_None &&
      ((seed = PyLong_AsUnsignedLongLong(seed_obj)) == (unsigned long long)-1) && PyErr_Occurred())
    return PyErr_Format(PyExc_ValueError, "seed must be an int in 0..2^64-1");
  fg_spec *s;
  fg_err e;
  fg_status st = fg_spec_parse(&s, text, name, fgpy_registry(), &e);
  if (st != FG_OK) return fgpy_raise(st, e.msg);
  bool discrete = event.ndim == 3;
  if (event_obj == Py_None && !s->data) {
    fg_spec_free(s);
    return PyErr_Format(PyExc_ValueError,
                        "%s has no 'data' line to take the event shape from: pass event=", name);
  }
  if (event_obj == Py_None) st = data_event(s, &event, &discrete, &e);
  if (discrete_obj != Py_None) discrete = PyObject_IsTrue(discrete_obj) == 1;
  fg_flow *fl = NULL;
  if (st == FG_OK) {
    st = build_flow(&fl, s, event, t, seed_obj != Py_None ? seed : (uint64_t)s->train.seed, &e);
    if (st != FG_OK) fg_err_prefix(&e, st, "%s", name);
  }
  fg_train_settings train = s->train;
  fg_spec_free(s);
  if (st != FG_OK) return fgpy_raise(st, e.msg);
  return fgpy_flow_wrap(fl, text, name, &train, discrete);
}

/* The dtype of the checkpoint's parameters (F64 when its first "param/" entry is). */
static fg_status checkpoint_dtype(const char *path, fg_dtype *t, fg_err *e) {
  fg_safetensors *f;
  fg_status st = fg_safetensors_open(&f, path, e);
  if (st != FG_OK) return st;
  *t = FG_F32;
  for (size_t i = 0; i < fg_safetensors_count(f); i++) {
    const fg_safetensors_info *info = fg_safetensors_entry(f, i);
    if (!strncmp(info->name, "param/", 6)) {
      *t = !strcmp(info->dtype, "F64") ? FG_F64 : FG_F32;
      break;
    }
  }
  fg_safetensors_close(f);
  return FG_OK;
}

PyObject *fgpy_flow_load(PyObject *mod, PyObject *args) {
  (void)mod;
  const char *path;
  if (!PyArg_ParseTuple(args, "s", &path)) return NULL;
  fg_checkpoint_meta meta;
  fg_err e;
  fg_dtype t = FG_F32;
  fg_status st = fg_checkpoint_read_meta(path, &meta, &e);
  if (st != FG_OK) return fgpy_raise(st, e.msg);
  fg_spec *s = NULL;
  fg_flow *fl = NULL;
  st = checkpoint_dtype(path, &t, &e);
  if (st == FG_OK) st = fg_spec_parse(&s, meta.spec, path, fgpy_registry(), &e);
  if (st == FG_OK) st = build_flow(&fl, s, meta.event, t, (uint64_t)s->train.seed, &e);
  if (st == FG_OK) st = fg_checkpoint_load_params(fl, path, true, &e);
  if (st == FG_OK) s->train.n_bits = meta.n_bits;
  PyObject *out =
      st == FG_OK ? fgpy_flow_wrap(fl, meta.spec, path, &s->train, meta.discrete) : NULL;
  if (st != FG_OK) {
    fg_flow_free(fl);
    fgpy_raise(st, e.msg);
  }
  fg_spec_free(s);
  fg_checkpoint_meta_free(&meta);
  return out;
}

/* ---- parameters ---- */

static PyObject *flow_state_dict(FlowObject *self, PyObject *unused) {
  (void)unused;
  fg_params *ps = fg_flow_params(self->flow);
  PyObject *d = PyDict_New();
  for (int i = 0; d && i < fg_params_count(ps); i++) {
    PyObject *a = fgpy_array_copy(fg_params_tensor(ps, i));
    if (!a || PyDict_SetItemString(d, fg_params_name(ps, i), a) < 0) Py_CLEAR(d);
    Py_XDECREF(a);
  }
  return d;
}

/* Checks one (name, array) item against the store; its tensor in *dst. */
static int check_item(FlowObject *self, PyObject *item, const char **name, PyArrayObject **arr,
                      fg_tensor **dst) {
  PyObject *a;
  if (!PyTuple_Check(item) || !PyArg_ParseTuple(item, "sO", name, &a)) {
    PyErr_SetString(PyExc_TypeError, "load_state_dict takes (name, array) pairs");
    return -1;
  }
  *dst = fg_params_find(fg_flow_params(self->flow), *name);
  if (!*dst) {
    PyErr_Format(PyExc_KeyError, "the flow has no parameter '%s'", *name);
    return -1;
  }
  fgpy_view *v = fgpy_view_new(a, (*dst)->dtype, *name);
  if (!v) return -1;
  bool same = fg_shape_equal(&v->t.shape, &(*dst)->shape);
  fgpy_view_free(v);
  if (!same) {
    char want[128];
    PyErr_Format(PyExc_ValueError, "parameter '%s' has shape %s", *name,
                 fg_shape_str(&(*dst)->shape, want, sizeof want));
    return -1;
  }
  *arr = (PyArrayObject *)a;
  int64_t n = fg_tensor_numel(*dst);
  for (int64_t i = 0; i < n; i++) {
    double x = (*dst)->dtype == FG_F64 ? ((double *)PyArray_DATA(*arr))[i]
                                       : ((float *)PyArray_DATA(*arr))[i];
    if (!isfinite(x)) {
      PyErr_Format(PyExc_ValueError, "parameter '%s' is not finite at element %lld", *name,
                   (long long)i);
      return -1;
    }
  }
  return 0;
}

/* Every item is checked before any parameter changes. */
static PyObject *flow_load_state_dict(FlowObject *self, PyObject *args) {
  PyObject *items;
  int strict;
  if (!PyArg_ParseTuple(args, "O!p", &PyList_Type, &items, &strict)) return NULL;
  fgpy_flow_lock(self); /* then nothing below releases the GIL: the list cannot change */
  Py_ssize_t n = PyList_GET_SIZE(items);
  fg_params *ps = fg_flow_params(self->flow);
  int rc = 0;
  if (strict && n != fg_params_count(ps)) {
    PyErr_Format(PyExc_ValueError, "strict: the flow has %d parameters, the state dict %zd",
                 fg_params_count(ps), n);
    rc = -1;
  }
  for (int pass = 0; rc == 0 && pass < 2; pass++)
    for (Py_ssize_t i = 0; rc == 0 && i < n; i++) {
      const char *name;
      PyArrayObject *a;
      fg_tensor *dst;
      rc = check_item(self, PyList_GET_ITEM(items, i), &name, &a, &dst);
      if (rc == 0 && pass == 1)
        memcpy(fg_tensor_data(dst), PyArray_DATA(a),
               (size_t)fg_tensor_numel(dst) * fg_dtype_size(dst->dtype));
    }
  fgpy_flow_unlock(self);
  if (rc < 0) return NULL;
  Py_RETURN_NONE;
}

static PyObject *flow_data_init(FlowObject *self, PyObject *args) {
  PyObject *x;
  if (!PyArg_ParseTuple(args, "O", &x)) return NULL;
  fgpy_view *v = fgpy_view_new(x, fg_flow_get_config(self->flow)->dtype, "x");
  if (!v) return NULL;
  fg_err e;
  fg_status st;
  fgpy_flow_lock(self);
  Py_BEGIN_ALLOW_THREADS
  st = fg_flow_data_init(self->flow, &v->t, &e);
  Py_END_ALLOW_THREADS
  fgpy_flow_unlock(self);
  fgpy_view_free(v);
  if (st != FG_OK) return fgpy_raise(st, e.msg);
  Py_RETURN_NONE;
}

/* A checkpoint of the current weights as `flowgrad train` writes one (zero optimiser state, step
 * 0), so `flowgrad eval`, `sample` and `train --resume` take it: written by a trainer over one
 * placeholder sample, whose program is compiled at batch 1 and never run. */
static PyObject *flow_save(FlowObject *self, PyObject *args) {
  const char *path;
  if (!PyArg_ParseTuple(args, "s", &path)) return NULL;
  const fg_flow_config *cfg = fg_flow_get_config(self->flow);
  fg_shape one = {.ndim = cfg->event.ndim + 1, .d = {1}};
  for (int i = 0; i < cfg->event.ndim; i++) one.d[i + 1] = cfg->event.d[i];
  fg_train_settings s = self->train;
  s.batch = 1, s.recompute = false;
  fg_tensor *placeholder;
  fg_trainer *t = NULL;
  fg_err e;
  fg_status st = fg_tensor_new(&placeholder, cfg->dtype, &one, &e);
  if (st != FG_OK) return fgpy_raise(st, e.msg);
  fg_trainer_data d = {.train = placeholder, .discrete = self->discrete};
  fgpy_flow_lock(self);
  Py_BEGIN_ALLOW_THREADS
  st = fg_trainer_new(&t, self->flow, &s, &d, 1, &e);
  if (st == FG_OK) st = fg_trainer_save(t, path, self->spec_text, &e);
  fg_trainer_free(t);
  Py_END_ALLOW_THREADS
  fgpy_flow_unlock(self);
  fg_tensor_free(placeholder);
  if (st != FG_OK) return fgpy_raise(st, e.msg);
  Py_RETURN_NONE;
}

/* ---- graph dumps ---- */

static fg_status build_dump(FlowObject *self, const char *what, int64_t batch, fg_graph *g,
                            fg_node *out) {
  const fg_flow_config *cfg = fg_flow_get_config(self->flow);
  if (!strcmp(what, "sample")) return fg_flow_sample(self->flow, g, batch, 1.0, 1, out);
  fg_shape xs = {.ndim = cfg->event.ndim + 1, .d = {batch}};
  for (int i = 0; i < cfg->event.ndim; i++) xs.d[i + 1] = cfg->event.d[i];
  fg_node x = fg_input(g, "x", cfg->dtype, xs);
  if (!strcmp(what, "logprob")) return fg_flow_log_prob(self->flow, g, x, false, out);
  fg_status st = fg_flow_nll_loss(self->flow, g, x, true, out, NULL);
  int n = fg_flow_num_params(self->flow);
  fg_node *grads = malloc(sizeof *grads * ((size_t)n + 1));
  if (!grads) return fg_graph_fail_status(g, FG_E_NOMEM, "out of memory");
  if (st == FG_OK) st = fg_flow_param_grads(self->flow, g, *out, grads);
  for (int i = 0; st == FG_OK && i < n; i++) /* one output that keeps every gradient alive */
    *out = fg_add(g, *out, fg_sum(g, grads[i], FG_ALL_AXES, false));
  free(grads);
  return fg_graph_status(g);
}

static PyObject *flow_dump(FlowObject *self, PyObject *args) {
  const char *path, *what;
  long long batch;
  int compiled;
  if (!PyArg_ParseTuple(args, "ssLp", &path, &what, &batch, &compiled)) return NULL;
  if (strcmp(what, "logprob") && strcmp(what, "train") && strcmp(what, "sample"))
    return PyErr_Format(PyExc_ValueError, "what must be 'logprob', 'train' or 'sample', got '%s'",
                        what);
  if (batch < 1 || batch > 65536)
    return PyErr_Format(PyExc_ValueError, "batch must be in 1..65536");
  fg_err e;
  fg_dot_format fmt;
  fg_status st = fg_dot_format_of(path, &fmt, &e);
  if (st != FG_OK) return fgpy_raise(st, e.msg);
  fg_graph *g;
  if ((st = fg_graph_new(&g, &e)) != FG_OK) return fgpy_raise(st, e.msg);
  fg_node root = FG_NONE;
  fg_program *p = NULL;
  fgpy_flow_lock(self);
  st = build_dump(self, what, batch, g, &root);
  if (st != FG_OK) st = fg_err_set(&e, st, "%s", fg_graph_errmsg(g));
  if (st == FG_OK && compiled) st = fg_program_new(&p, g, 1, &root, &e);
  if (st == FG_OK) {
    fg_dot_opts o = {.title = what,
                     .group = p ? fg_program_groups(p) : NULL,
                     .outputs = p ? NULL : &root,
                     .n_outputs = p ? 0 : 1};
    const fg_graph *shown = p ? fg_program_graph(p) : g;
    Py_BEGIN_ALLOW_THREADS
    st = fg_dot_write(shown, &o, fmt, path, &e);
    Py_END_ALLOW_THREADS
  }
  fgpy_flow_unlock(self);
  int nodes = fg_graph_node_count(p ? fg_program_graph(p) : g);
  fg_program_free(p);
  fg_graph_free(g);
  if (st != FG_OK) return fgpy_raise(st, e.msg);
  return PyLong_FromLong(nodes);
}

/* ---- attributes ---- */

static PyObject *get_event(FlowObject *self, void *c) {
  (void)c;
  return fgpy_shape_tuple(&fg_flow_get_config(self->flow)->event, 0);
}

static PyObject *get_latent_shapes(FlowObject *self, void *c) {
  (void)c;
  fg_shape top = fg_flow_latent_shape(self->flow);
  PyObject *out = PyList_New(0), *s = fgpy_shape_tuple(&top, 0);
  if (!out || !s || PyList_Append(out, s) < 0) Py_CLEAR(out);
  Py_XDECREF(s);
  for (int i = 0; out && i < self->n_latents; i++) {
    s = fgpy_shape_tuple(&self->latents[i], 0);
    if (!s || PyList_Append(out, s) < 0) Py_CLEAR(out);
    Py_XDECREF(s);
  }
  return out;
}

static PyObject *get_layers(FlowObject *self, void *c) {
  (void)c;
  fg_bijector *b = fg_flow_bijector(self->flow);
  int n = fg_bijector_num_children(b);
  PyObject *out = PyList_New(0);
  for (int i = 0; out && i < (n > 0 ? n : 1); i++) {
    fg_bijector *k = n > 0 ? fg_bijector_child(b, i) : b;
    const fg_bijector_type *t = fg_bijector_type_of(k);
    const char *prefix = fg_bijector_prefix(k);
    size_t len = strlen(prefix);
    const char *type = t ? t->name : fg_bijector_num_children(k) ? "chain" : "inverted";
    if (len && prefix[len - 1] == '.') len--;
    PyObject *item = Py_BuildValue("(s#s)", prefix, (Py_ssize_t)len, type);
    if (!item || PyList_Append(out, item) < 0) Py_CLEAR(out);
    Py_XDECREF(item);
  }
  return out;
}

static PyObject *get_info(FlowObject *self, void *c) {
  (void)c;
  const fg_flow_config *cfg = fg_flow_get_config(self->flow);
  return Py_BuildValue(
      "{s:s,s:s,s:s,s:O,s:L,s:K,s:s,s:N}", "dtype", fg_dtype_name(cfg->dtype), "spec",
      self->spec_text, "name", self->name, "discrete", self->discrete ? Py_True : Py_False,
      "num_params", (long long)fg_flow_num_scalars(self->flow), "seed",
      (unsigned long long)cfg->seed, "prior",
      cfg->base == FG_BASE_LEARNED         ? "learned"
      : cfg->base == FG_BASE_CONDITIONAL ? "conditional"
                                         : "normal",
      "train", fgpy_settings_dict(&self->train));
}

/* {kind: [address of each bound input's memory]}: what the tests check "no copy" with. */
static PyObject *flow_bound(FlowObject *self, PyObject *unused) {
  (void)unused;
  static const char *const kinds[FGPY_KINDS] = {"log_prob", "forward", "inverse", "sample"};
  PyObject *d = PyDict_New();
  for (int k = 0; d && k < FGPY_KINDS; k++) {
    const fgpy_cached *c = &self->cache[k];
    PyObject *list = PyList_New(0);
    for (int i = 0; list && c->p && i < c->key.n_in; i++) {
      PyObject *a = c->views[i] ? PyLong_FromVoidPtr(c->views[i]->buf.data) : NULL;
      if (!a || PyList_Append(list, a) < 0) Py_CLEAR(list);
      Py_XDECREF(a);
    }
    if (!list || PyDict_SetItemString(d, kinds[k], list) < 0) Py_CLEAR(d);
    Py_XDECREF(list);
  }
  return d;
}

static PyGetSetDef flow_getset[] = {
    {"event", (getter)get_event, NULL, "per-sample shape of x", NULL},
    {"latent_shapes", (getter)get_latent_shapes, NULL,
     "per-sample shapes: top latent, then factored-out parts", NULL},
    {"layers", (getter)get_layers, NULL, "[(prefix, type)] of the top-level layers", NULL},
    {"info", (getter)get_info, NULL,
     "dtype, spec, name, discrete, num_params, seed, prior, train settings", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMethodDef flow_methods[] = {
    {"log_prob", (PyCFunction)fgpy_flow_log_prob, METH_VARARGS, "log_prob(x) -> [B]"},
    {"forward", (PyCFunction)fgpy_flow_forward, METH_VARARGS,
     "forward(x) -> (z, logdet, [latents])"},
    {"inverse", (PyCFunction)fgpy_flow_inverse, METH_VARARGS,
     "inverse(z, [latents]) -> (x, logdet)"},
    {"sample", (PyCFunction)fgpy_flow_sample, METH_VARARGS, "sample(n, temperature, seed) -> x"},
    {"run_layer", (PyCFunction)fgpy_flow_run_layer, METH_VARARGS,
     "run_layer(i, x, inverse) -> (y, logdet)"},
    {"state_dict", (PyCFunction)flow_state_dict, METH_NOARGS, "state_dict() -> {name: array}"},
    {"load_state_dict", (PyCFunction)flow_load_state_dict, METH_VARARGS,
     "load_state_dict([(name, array)], strict)"},
    {"data_init", (PyCFunction)flow_data_init, METH_VARARGS,
     "data_init(x): actnorm's data-dependent initialisation"},
    {"save", (PyCFunction)flow_save, METH_VARARGS, "save(path): a flowgrad checkpoint"},
    {"dump", (PyCFunction)flow_dump, METH_VARARGS,
     "dump(path, what, batch, compiled) -> node count"},
    {"_bound", (PyCFunction)flow_bound, METH_NOARGS,
     "{kind: [addresses of the bound inputs' memory]}"},
    {NULL, NULL, 0, NULL},
};

PyTypeObject fgpy_flow_type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "flowgrad._flowgrad.Flow",
    .tp_basicsize = sizeof(FlowObject),
    .tp_dealloc = (destructor)flow_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A flow (made by flow_from_spec / flow_load; use flowgrad.Flow).",
    .tp_methods = flow_methods,
    .tp_getset = flow_getset,
};
