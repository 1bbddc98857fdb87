/* The Python extension flowgrad._flowgrad: what its files share.  The package's __init__.py
 * (frontends/python/flowgrad/) is the documented API; this module is its engine and checks
 * every argument again, so calling it directly with anything cannot crash the interpreter.
 *
 * Only flowgrad's public API is used (the umbrella header), so the library's internals can
 * move without breaking the binding.
 *
 * Threads: flowgrad work runs with the GIL released.  Each Flow has a lock (re-entrant for
 * its owning thread, so a training callback may use the flow it trains), and the module's
 * thread pool, shared by every cached program, has one lock of its own. */
#ifndef FGPY_EXT_H
#define FGPY_EXT_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <pythread.h>

#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#define PY_ARRAY_UNIQUE_SYMBOL fgpy_numpy_api
#ifndef FGPY_IMPORTS_NUMPY
#define NO_IMPORT_ARRAY
#endif
#include <numpy/arrayobject.h>

#include <flowgrad/flowgrad.h>

/* ---- errors (module.c) ---- */
/* flowgrad.Error (a RuntimeError with .status, e.g. "FG_E_FORMAT", and .message). */
extern PyObject *fgpy_error_type;
/* Raises flowgrad.Error for st with msg (MemoryError for FG_E_NOMEM); returns NULL. */
PyObject *fgpy_raise(fg_status st, const char *msg);
/* The graph's sticky error, prefixed with `what`. */
PyObject *fgpy_raise_graph(const fg_graph *g, const char *what);

/* ---- module state (module.c) ---- */
/* The registry every spec is parsed with: the built-ins and every loaded plugin. */
fg_registry *fgpy_registry(void);
/* Runs p on the module's pool, GIL released; the caller holds its flow's lock. */
fg_status fgpy_run_program(fg_program *p, fg_err *e);
/* Compiles outs of g on the module's pool (GIL released). */
fg_status fgpy_compile(fg_program **p, fg_graph *g, int n_out, const fg_node *outs, fg_err *e);

/* ---- NumPy arrays and tensors (arrays.c) ---- */
int fgpy_numpy_init(void);
int fgpy_npy_type(fg_dtype t);
/* "float32" / "float64" -> dtype; -1 with ValueError otherwise. */
int fgpy_dtype_parse(const char *name, fg_dtype *out);

/* A tensor viewing a NumPy array's memory (no copy).  It holds a reference to the array, so the
 * memory stays valid while any program is bound to it; a program's binding holds one to `buf`,
 * whose count this module owns (the array's memory is never freed by flowgrad). */
typedef struct fgpy_view {
  fg_buffer buf;
  fg_tensor t;
  PyObject *array;
} fgpy_view;

/* A view of obj, which must be an ndarray of dtype `want`, C-contiguous and aligned, with at
 * most FG_MAX_DIMS axes; TypeError / ValueError naming `what` otherwise (NULL). */
fgpy_view *fgpy_view_new(PyObject *obj, fg_dtype want, const char *what);
/* Drops the view once nothing is bound to it any more (a view still referenced elsewhere is
 * kept alive, with its array, rather than freed under a reader).  NULL is a no-op. */
void fgpy_view_free(fgpy_view *v);
/* A new ndarray holding a copy of t. */
PyObject *fgpy_array_copy(const fg_tensor *t);
/* An ndarray over t's memory that owns t (freed with the array); t must be contiguous. */
PyObject *fgpy_array_take(fg_tensor *t);
/* A tuple of Python ints from a shape (from axis `first` on). */
PyObject *fgpy_shape_tuple(const fg_shape *s, int first);
/* A shape from a sequence of non-negative ints; -1 with ValueError / TypeError otherwise. */
int fgpy_shape_parse(PyObject *seq, fg_shape *out, const char *what);

/* ---- Flow objects (flow.c, flow_run.c) ---- */
enum { FGPY_LOG_PROB, FGPY_FORWARD, FGPY_INVERSE, FGPY_SAMPLE, FGPY_KINDS };
/* Inputs of one cached program: x, or z and the factored-out latents. */
enum { FGPY_MAX_INPUTS = 32 };

/* What a cached program was compiled for; compared bytewise (zero-filled before use). */
typedef struct fgpy_key {
  int kind, n_in;
  fg_dtype dtype;
  double temperature;
  int64_t n;
  fg_shape shapes[FGPY_MAX_INPUTS];
} fgpy_key;

/* The last program of one kind, kept so that repeated calls with the same shapes run without
 * compiling; its inputs stay bound to the views of the last call's arrays. */
typedef struct fgpy_cached {
  fgpy_key key;
  fg_graph *g;
  fg_program *p;
  fgpy_view *views[FGPY_MAX_INPUTS];
} fgpy_cached;

typedef struct FlowObject {
  PyObject_HEAD
  fg_flow *flow;
  char *spec_text; /* rebuilds the flow (saved in checkpoints) */
  char *name; /* where the spec came from, for messages */
  fg_train_settings train;
  bool discrete; /* 8-bit levels (images) or continuous data */
  int n_latents; /* parts factored out by the forward pass (split layers) */
  fg_shape latents[FGPY_MAX_INPUTS]; /* their per-sample shapes, in forward order */
  fgpy_cached cache[FGPY_KINDS];
  PyThread_type_lock lock;
  unsigned long owner;
  int depth;
} FlowObject;

extern PyTypeObject fgpy_flow_type;
/* Takes the flow's lock (GIL released while waiting); re-entrant for the owning thread. */
void fgpy_flow_lock(FlowObject *f);
void fgpy_flow_unlock(FlowObject *f);
/* A Flow for fl (owned from now on, freed on failure) built from spec_text. */
PyObject *fgpy_flow_wrap(fg_flow *fl, const char *spec_text, const char *name,
                         const fg_train_settings *train, bool discrete);
/* The methods that run programs (flow_run.c), in the type's method table. */
PyObject *fgpy_flow_log_prob(FlowObject *self, PyObject *args);
PyObject *fgpy_flow_forward(FlowObject *self, PyObject *args);
PyObject *fgpy_flow_inverse(FlowObject *self, PyObject *args);
PyObject *fgpy_flow_sample(FlowObject *self, PyObject *args);
PyObject *fgpy_flow_run_layer(FlowObject *self, PyObject *args);
void fgpy_cached_clear(fgpy_cached *c);

/* ---- training (train.c) ---- */
PyObject *fgpy_train(PyObject *mod, PyObject *args, PyObject *kw);
PyObject *fgpy_settings_dict(const fg_train_settings *s);

#endif
