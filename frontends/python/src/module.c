/* flowgrad._flowgrad: errors, the registry, the shared thread pool, and the functions that are
 * not methods of a Flow (registry listing, plugins, checks, specs, data sources). */
#include <dlfcn.h>
#include <stdlib.h>

#include "ext.h"

PyObject *fgpy_error_type;
static fg_registry *registry;
static fg_pool *pool;
static PyThread_type_lock pool_lock;

PyObject *fgpy_raise(fg_status st, const char *msg) {
  if (st == FG_E_NOMEM) return PyErr_Format(PyExc_MemoryError, "%s", msg);
  PyObject *exc = PyObject_CallFunction(fgpy_error_type, "s", msg);
  if (!exc) return NULL;
  PyObject *status = PyUnicode_FromString(fg_status_name(st));
  PyObject *message = PyUnicode_FromString(msg);
  if (status && message && PyObject_SetAttrString(exc, "status", status) == 0 &&
      PyObject_SetAttrString(exc, "message", message) == 0)
    PyErr_SetObject(fgpy_error_type, exc);
  Py_XDECREF(status);
  Py_XDECREF(message);
  Py_DECREF(exc);
  return NULL;
}

PyObject *fgpy_raise_graph(const fg_graph *g, const char *what) {
  char msg[2048];
  snprintf(msg, sizeof msg, "%s: %s", what, fg_graph_errmsg(g));
  return fgpy_raise(fg_graph_status(g), msg);
}

fg_registry *fgpy_registry(void) { return registry; }

fg_status fgpy_compile(fg_program **p, fg_graph *g, int n_out, const fg_node *outs, fg_err *e) {
  fg_status st;
  fg_program_opts o = {.pool = pool};
  Py_BEGIN_ALLOW_THREADS
  PyThread_acquire_lock(pool_lock, WAIT_LOCK); /* in case compiling ever runs on the pool */
  st = fg_program_new_opts(p, g, n_out, outs, &o, e);
  PyThread_release_lock(pool_lock);
  Py_END_ALLOW_THREADS
  return st;
}

fg_status fgpy_run_program(fg_program *p, fg_err *e) {
  fg_status st;
  Py_BEGIN_ALLOW_THREADS
  PyThread_acquire_lock(pool_lock, WAIT_LOCK);
  st = fg_program_run(p, e);
  PyThread_release_lock(pool_lock);
  Py_END_ALLOW_THREADS
  return st;
}

/* ---- registry, plugins, checks ---- */

static const char *const kind_names[] = {"int", "double", "bool", "string", "ints"};

static PyObject *arg_tuple(const fg_arg_spec *a) {
  const char *kind = (unsigned)a->kind < 5 ? kind_names[a->kind] : "?";
  return Py_BuildValue("(sszz)", a->name, kind, a->default_text, a->doc);
}

static PyObject *type_tuple(int i) {
  const fg_bijector_type *t = fg_registry_type(registry, i);
  PyObject *args = PyList_New(0);
  for (int k = 0; args && k < t->n_args; k++) {
    PyObject *a = arg_tuple(&t->args[k]);
    if (!a || PyList_Append(args, a) < 0) Py_CLEAR(args);
    Py_XDECREF(a);
  }
  if (!args) return NULL;
  return Py_BuildValue("(szNz)", t->name, t->doc, args, fg_registry_origin(registry, i));
}

static PyObject *py_registry(PyObject *mod, PyObject *unused) {
  (void)mod, (void)unused;
  PyObject *out = PyList_New(0);
  for (int i = 0; out && i < fg_registry_count(registry); i++) {
    PyObject *t = type_tuple(i);
    if (!t || PyList_Append(out, t) < 0) Py_CLEAR(out);
    Py_XDECREF(t);
  }
  return out;
}

static PyObject *py_load_plugin(PyObject *mod, PyObject *args) {
  (void)mod;
  const char *path;
  if (!PyArg_ParseTuple(args, "s", &path)) return NULL;
  int before = fg_registry_count(registry);
  fg_err e;
  fg_status st = fg_registry_load_plugin(registry, path, &e);
  if (st != FG_OK) return fgpy_raise(st, e.msg);
  PyObject *names = PyList_New(0);
  for (int i = before; names && i < fg_registry_count(registry); i++) {
    PyObject *n = PyUnicode_FromString(fg_registry_type(registry, i)->name);
    if (!n || PyList_Append(names, n) < 0) Py_CLEAR(names);
    Py_XDECREF(n);
  }
  return names;
}

static PyObject *report_tuple(const fg_check_report *r) {
  return Py_BuildValue("(OdddOs)", r->passed ? Py_True : Py_False, r->roundtrip_err, r->logdet_err,
                       r->inverse_logdet_err, r->edges_finite ? Py_True : Py_False, r->msg);
}

static PyObject *py_check(PyObject *mod, PyObject *args) {
  (void)mod;
  const char *name, *text;
  PyObject *event;
  fg_check_opts o = {0};
  int skip_grad;
  unsigned long long seed;
  if (!PyArg_ParseTuple(args, "szOiddpK", &name, &text, &event, &o.batch, &o.tol, &o.perturb,
                        &skip_grad, &seed))
    return NULL;
  o.skip_gradcheck = skip_grad, o.seed = seed;
  if (event != Py_None && fgpy_shape_parse(event, &o.event, "event") < 0) return NULL;
  if (o.batch < 1 || o.batch > 1024 || !(o.tol > 0) || !(o.perturb >= 0) || o.tol > 1 ||
      o.perturb > 10)
    return PyErr_Format(PyExc_ValueError,
                        "check: batch must be in 1..1024, tol in (0, 1], perturb in [0, 10]");
  fg_err e;
  const fg_bijector_type *t;
  fg_status st = fg_registry_lookup(&t, registry, name, &e);
  if (st != FG_OK) return fgpy_raise(st, e.msg);
  fg_bijector *b;
  if (!text) text = t->check_args ? t->check_args : "";
  if ((st = fg_bijector_new_from_text(&b, t, text, &e)) != FG_OK) return fgpy_raise(st, e.msg);
  fg_check_report *r = calloc(1, sizeof *r);
  if (!r) {
    fg_bijector_free(b);
    return PyErr_NoMemory();
  }
  Py_BEGIN_ALLOW_THREADS
  st = fg_bijector_check(b, t, &o, r);
  Py_END_ALLOW_THREADS
  fg_bijector_free(b);
  /* a failed check is a report; anything else (a shape the type refuses...) an error */
  PyObject *out = st == FG_OK || st == FG_E_NUMERIC ? report_tuple(r) : fgpy_raise(st, r->msg);
  free(r);
  return out;
}

/* ---- specs and data ---- */

static PyObject *py_parse_spec(PyObject *mod, PyObject *args) {
  (void)mod;
  const char *text, *name;
  if (!PyArg_ParseTuple(args, "ss", &text, &name)) return NULL;
  fg_spec *s;
  fg_err e;
  fg_status st = fg_spec_parse(&s, text, name, registry, &e);
  if (st != FG_OK) return fgpy_raise(st, e.msg);
  int layers = fg_bijector_num_children(s->flow);
  PyObject *out = Py_BuildValue("{s:z,s:s,s:i,s:N}", "data", s->data, "prior", s->prior, "layers",
                                layers, "train", fgpy_settings_dict(&s->train));
  fg_spec_free(s);
  return out;
}

static PyObject *py_open_data(PyObject *mod, PyObject *args) {
  (void)mod;
  const char *source;
  long long limit;
  if (!PyArg_ParseTuple(args, "sL", &source, &limit)) return NULL;
  if (limit < 0) return PyErr_Format(PyExc_ValueError, "limit must be >= 0");
  fg_data d;
  fg_err e;
  fg_status st;
  Py_BEGIN_ALLOW_THREADS
  st = fg_data_open(&d, source, limit, &e);
  Py_END_ALLOW_THREADS
  if (st != FG_OK) return fgpy_raise(st, e.msg);
  bool discrete = d.discrete;
  PyObject *train = fgpy_array_take(d.train);
  PyObject *test = d.test ? fgpy_array_take(d.test) : (Py_INCREF(Py_None), Py_None);
  if (!train || !test) {
    Py_XDECREF(train);
    Py_XDECREF(test);
    return NULL;
  }
  return Py_BuildValue("(NNO)", train, test, discrete ? Py_True : Py_False);
}

PyObject *fgpy_flow_from_spec(PyObject *mod, PyObject *args);
PyObject *fgpy_flow_load(PyObject *mod, PyObject *args);

static PyMethodDef module_methods[] = {
    {"registry", py_registry, METH_NOARGS,
     "registry() -> [(name, doc, [(arg, kind, default, doc)], plugin)]"},
    {"load_plugin", py_load_plugin, METH_VARARGS,
     "load_plugin(path) -> names of the types it added"},
    {"check", py_check, METH_VARARGS,
     "check(type, args_text|None, event|None, batch, tol, perturb, skip_gradcheck, seed) -> report "
     "tuple"},
    {"parse_spec", py_parse_spec, METH_VARARGS,
     "parse_spec(text, name) -> dict of the spec's data, prior, train"},
    {"open_data", py_open_data, METH_VARARGS,
     "open_data(source, limit) -> (train, test|None, discrete)"},
    {"flow_from_spec", fgpy_flow_from_spec, METH_VARARGS,
     "flow_from_spec(text, name, event|None, seed|None, dtype, discrete|None) -> Flow"},
    {"flow_load", fgpy_flow_load, METH_VARARGS, "flow_load(checkpoint) -> Flow"},
    {"train", (PyCFunction)(void (*)(void))fgpy_train, METH_VARARGS | METH_KEYWORDS,
     "train(flow, train, test, discrete, steps, minutes, out, resume, callback, threads, "
     "checkpoint_every)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "flowgrad._flowgrad",
    .m_doc = "flowgrad's C engine; use the flowgrad package.",
    .m_size = -1,
    .m_methods = module_methods,
};

/* Plugins resolve flowgrad's symbols against the library already in the process, but Python
 * loads extensions (and so libflowgrad) with RTLD_LOCAL: make the library's symbols global. */
static void export_flowgrad_symbols(void) {
  Dl_info info;
  if (dladdr((void *)(uintptr_t)fg_registry_new, &info) && info.dli_fname)
    dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_GLOBAL); /* kept open for good */
}

static int module_state_init(void) {
  fg_err e;
  fg_status st = fg_registry_new(&registry, &e);
  if (st == FG_OK) st = fg_registry_add_builtins(registry, &e);
  const char *env = getenv("FG_THREADS");
  if (st == FG_OK) st = fg_pool_new(&pool, env ? atoi(env) : 0, &e);
  if (st != FG_OK) {
    fgpy_raise(st, e.msg);
    return -1;
  }
  if (!(pool_lock = PyThread_allocate_lock())) {
    PyErr_NoMemory();
    return -1;
  }
  return 0;
}

PyMODINIT_FUNC PyInit__flowgrad(void) {
  if (fgpy_numpy_init() < 0) return NULL;
  PyObject *m = PyModule_Create(&module_def);
  if (!m) return NULL;
  export_flowgrad_symbols();
  fgpy_error_type = PyErr_NewExceptionWithDoc(
      "flowgrad.Error",
      "A flowgrad call failed: .message is flowgrad's message, .status its status name "
      "(\"FG_E_FORMAT\", \"FG_E_SHAPE\", ...).",
      PyExc_RuntimeError, NULL);
  if (!fgpy_error_type || PyModule_AddObject(m, "Error", fgpy_error_type) < 0 ||
      PyType_Ready(&fgpy_flow_type) < 0 || module_state_init() < 0) {
    Py_DECREF(m);
    return NULL;
  }
  Py_INCREF(fgpy_error_type); /* AddObject stole one; the C code keeps its own */
  Py_INCREF(&fgpy_flow_type);
  if (PyModule_AddObject(m, "Flow", (PyObject *)&fgpy_flow_type) < 0) {
    Py_DECREF(&fgpy_flow_type);
    Py_DECREF(m);
    return NULL;
  }
  return m;
}
