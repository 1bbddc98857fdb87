/* NumPy arrays and flowgrad tensors: views without copies one way, copies (or handed-over
 * tensors) the other. */
#define FGPY_IMPORTS_NUMPY
#include "ext.h"

int fgpy_numpy_init(void) {
  import_array1(-1);
  return 0;
}

int fgpy_npy_type(fg_dtype t) { return t == FG_F64 ? NPY_FLOAT64 : NPY_FLOAT32; }

int fgpy_dtype_parse(const char *name, fg_dtype *out) {
  if (name && !strcmp(name, "float32"))
    *out = FG_F32;
  else if (name && !strcmp(name, "float64"))
    *out = FG_F64;
  else {
    PyErr_Format(PyExc_ValueError, "dtype must be 'float32' or 'float64', got %s",
                 name ? name : "None");
    return -1;
  }
  return 0;
}

fgpy_view *fgpy_view_new(PyObject *obj, fg_dtype want, const char *what) {
  if (!PyArray_Check(obj)) {
    PyErr_Format(PyExc_TypeError, "%s must be a numpy.ndarray, got %s", what,
                 Py_TYPE(obj)->tp_name);
    return NULL;
  }
  PyArrayObject *a = (PyArrayObject *)obj;
  if (PyArray_TYPE(a) != fgpy_npy_type(want) || !PyArray_ISNOTSWAPPED(a)) {
    PyErr_Format(PyExc_TypeError, "%s must be a native-endian %s array", what, fg_dtype_name(want));
    return NULL;
  }
  if (!PyArray_IS_C_CONTIGUOUS(a) || !PyArray_ISALIGNED(a)) {
    PyErr_Format(PyExc_ValueError, "%s must be C-contiguous and aligned (numpy.ascontiguousarray)",
                 what);
    return NULL;
  }
  int nd = PyArray_NDIM(a);
  if (nd > FG_MAX_DIMS) {
    PyErr_Format(PyExc_ValueError, "%s has %d axes; flowgrad takes at most %d", what, nd,
                 FG_MAX_DIMS);
    return NULL;
  }
  fgpy_view *v = calloc(1, sizeof *v);
  if (!v) return (fgpy_view *)PyErr_NoMemory();
  v->t.shape.ndim = nd;
  for (int i = 0; i < nd; i++) v->t.shape.d[i] = (int64_t)PyArray_DIM(a, i);
  fg_shape_strides(&v->t.shape, v->t.strides);
  v->t.dtype = want;
  v->t.buf = &v->buf;
  v->buf.refcount = 1; /* ours: never released through fg_buffer_release */
  v->buf.bytes = (size_t)PyArray_NBYTES(a);
  v->buf.data = PyArray_DATA(a);
  Py_INCREF(obj);
  v->array = obj;
  return v;
}

void fgpy_view_free(fgpy_view *v) {
  if (!v) return;
  if (v->buf.refcount != 1) return; /* still bound somewhere: keep memory and array alive */
  Py_DECREF(v->array);
  free(v);
}

PyObject *fgpy_shape_tuple(const fg_shape *s, int first) {
  PyObject *t = PyTuple_New(s->ndim > first ? s->ndim - first : 0);
  for (int i = first; t && i < s->ndim; i++) {
    PyObject *d = PyLong_FromLongLong((long long)s->d[i]);
    if (!d) {
      Py_DECREF(t);
      return NULL;
    }
    PyTuple_SET_ITEM(t, i - first, d);
  }
  return t;
}

int fgpy_shape_parse(PyObject *seq, fg_shape *out, const char *what) {
  memset(out, 0, sizeof *out);
  PyObject *fast = PySequence_Fast(seq, "");
  if (!fast) {
    PyErr_Format(PyExc_TypeError, "%s must be a sequence of ints", what);
    return -1;
  }
  Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
  int rc = 0;
  if (n < 1 || n >= FG_MAX_DIMS) {
    PyErr_Format(PyExc_ValueError, "%s needs 1 to %d axes, got %zd", what, FG_MAX_DIMS - 1, n);
    rc = -1;
  }
  for (Py_ssize_t i = 0; rc == 0 && i < n; i++) {
    PyObject *item = PySequence_Fast_GET_ITEM(fast, i);
    PyObject *index = PyBool_Check(item) ? NULL : PyNumber_Index(item); /* ints, numpy ints */
    long long d = index ? PyLong_AsLongLong(index) : -1;
    Py_XDECREF(index);
    if (PyErr_Occurred()) PyErr_Clear();
    if (d < 1 || d > ((long long)1 << 40)) {
      PyErr_Format(PyExc_ValueError, "%s: axis %zd must be an int in 1..2^40", what, i);
      rc = -1;
    } else {
      out->d[i] = d;
    }
  }
  out->ndim = rc == 0 ? n : 0;
  Py_DECREF(fast);
  return rc;
}

PyObject *fgpy_array_copy(const fg_tensor *t) {
  npy_intp dims[FG_MAX_DIMS];
  for (int i = 0; i < t->shape.ndim; i++) dims[i] = (npy_intp)t->shape.d[i];
  PyObject *a = PyArray_SimpleNew((int)t->shape.ndim, dims, fgpy_npy_type(t->dtype));
  if (!a) return NULL;
  size_t bytes = (size_t)fg_tensor_numel(t) * fg_dtype_size(t->dtype);
  if (fg_tensor_is_contiguous(t)) {
    if (bytes) memcpy(PyArray_DATA((PyArrayObject *)a), fg_tensor_data(t), bytes);
    return a;
  }
  fg_tensor *c;
  fg_err e;
  fg_status st = fg_tensor_copy(&c, t, t->dtype, &e);
  if (st != FG_OK) {
    Py_DECREF(a);
    return fgpy_raise(st, e.msg);
  }
  if (bytes) memcpy(PyArray_DATA((PyArrayObject *)a), fg_tensor_data(c), bytes);
  fg_tensor_free(c);
  return a;
}

static void free_capsule(PyObject *cap) {
  fg_tensor_free(PyCapsule_GetPointer(cap, "flowgrad.tensor"));
}

PyObject *fgpy_array_take(fg_tensor *t) {
  if (!fg_tensor_is_contiguous(t)) {
    PyObject *a = fgpy_array_copy(t);
    fg_tensor_free(t);
    return a;
  }
  PyObject *cap = PyCapsule_New(t, "flowgrad.tensor", free_capsule);
  if (!cap) {
    fg_tensor_free(t);
    return NULL;
  }
  npy_intp dims[FG_MAX_DIMS];
  for (int i = 0; i < t->shape.ndim; i++) dims[i] = (npy_intp)t->shape.d[i];
  PyObject *a = PyArray_SimpleNewFromData((int)t->shape.ndim, dims, fgpy_npy_type(t->dtype),
                                          fg_tensor_data(t));
  if (!a || PyArray_SetBaseObject((PyArrayObject *)a, cap) < 0) { /* the base is stolen */
    Py_XDECREF(a);
    if (!a) Py_DECREF(cap);
    return NULL;
  }
  return a;
}
