/* Training from Python: the loop of `flowgrad train` (flows/train/trainer.h) with a callback per
 * step, checkpoints, Ctrl-C, and the test loss at the end. */
#include <math.h>
#include <string.h>
#include <time.h>

#include "ext.h"

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

PyObject *fgpy_settings_dict(const fg_train_settings *s) {
  return Py_BuildValue("{s:L,s:L,s:d,s:d,s:L,s:s,s:d,s:L,s:L,s:d,s:d,s:d,s:s,s:L,s:L,s:L,s:L,"
                       "s:d,s:O}",
                       "batch", (long long)s->batch, "steps", (long long)s->steps, "minutes",
                       s->minutes, "lr", s->lr, "warmup", (long long)s->warmup, "schedule",
                       s->schedule, "lr_min", s->lr_min, "decay_steps", (long long)s->decay_steps,
                       "step_every", (long long)s->step_every, "gamma", s->gamma, "clip", s->clip,
                       "ema", s->ema,
                       "optimizer", s->optimizer, "n_bits", (long long)s->n_bits, "seed",
                       (long long)s->seed, "eval_every", (long long)s->eval_every, "max_nonfinite",
                       (long long)s->max_nonfinite, "temperature", s->temperature, "recompute",
                       s->recompute ? Py_True : Py_False);
}

typedef struct train_args {
  FlowObject *flow;
  PyObject *train, *test, *callback;
  int discrete, threads;
  long long steps, checkpoint_every;
  double minutes;
  const char *out, *resume;
} train_args;

/* An optional array as a view of its own float dtype (NULL for None: *v stays NULL). */
static int data_view(PyObject *obj, fgpy_view **v, const char *what) {
  *v = NULL;
  if (obj == Py_None) return 0;
  bool f64 = PyArray_Check(obj) && PyArray_TYPE((PyArrayObject *)obj) == NPY_FLOAT64;
  *v = fgpy_view_new(obj, f64 ? FG_F64 : FG_F32, what);
  return *v ? 0 : -1;
}

static PyObject *step_dict(const fg_train_step_info *info, double seconds) {
  return Py_BuildValue("{s:L,s:d,s:d,s:d,s:O,s:s,s:d}", "step", (long long)info->step, "loss",
                       info->loss, "grad_norm", info->grad_norm, "lr", info->lr, "skipped",
                       info->skipped ? Py_True : Py_False, "bad_layer", info->bad_layer, "seconds",
                       seconds);
}

static int save(fg_trainer *t, const train_args *a) {
  if (!a->out) return 0;
  fg_err e;
  fg_status st;
  Py_BEGIN_ALLOW_THREADS
  st = fg_trainer_save(t, a->out, a->flow->spec_text, &e);
  Py_END_ALLOW_THREADS
  if (st != FG_OK) {
    fgpy_raise(st, e.msg);
    return -1;
  }
  return 0;
}

/* Calls the callback; 1 to go on, 0 when it returned False, -1 on an exception. */
static int notify(const train_args *a, const fg_train_step_info *info, double seconds) {
  if (a->callback == Py_None) return 1;
  PyObject *d = step_dict(info, seconds);
  PyObject *r = d ? PyObject_CallOneArg(a->callback, d) : NULL;
  Py_XDECREF(d);
  if (!r) return -1;
  int go_on = r != Py_False;
  Py_DECREF(r);
  return go_on;
}

/* Steps until steps / minutes / the callback / Ctrl-C says stop; *why says which.  -1 with an
 * exception set (after saving the checkpoint, when there is one to write). */
static int loop(fg_trainer *t, const train_args *a, double *last_loss, const char **why) {
  double t0 = now_s();
  for (;;) {
    int64_t done = fg_trainer_step_count(t);
    *why = a->steps && done >= a->steps ? "steps" : NULL;
    if (!*why && a->minutes > 0 && now_s() - t0 >= a->minutes * 60) *why = "minutes";
    if (*why) return 0;
    fg_train_step_info info;
    fg_err e;
    fg_status st;
    Py_BEGIN_ALLOW_THREADS
    st = fg_trainer_step(t, &info, &e);
    Py_END_ALLOW_THREADS
    if (st != FG_OK) {
      save(t, a);
      PyErr_Clear();
      fgpy_raise(st, e.msg);
      return -1;
    }
    *last_loss = info.loss;
    int go_on = notify(a, &info, now_s() - t0);
    if (go_on < 0 || PyErr_CheckSignals() < 0) { /* an exception: keep it, save what there is */
      PyObject *type, *value, *tb;
      PyErr_Fetch(&type, &value, &tb);
      save(t, a);
      PyErr_Clear();
      PyErr_Restore(type, value, tb);
      return -1;
    }
    if (go_on == 0) {
      *why = "callback";
      return 0;
    }
    if (a->checkpoint_every && info.step % a->checkpoint_every == 0 && save(t, a) < 0) return -1;
  }
}

/* Saves, evaluates the test set, puts the EMA weights into the flow. */
static PyObject *finish(fg_trainer *t, const train_args *a, double loss, const char *why,
                        double seconds, int64_t start) {
  if (save(t, a) < 0) return NULL;
  PyObject *test = Py_None;
  Py_INCREF(test);
  if (fg_trainer_data_rows(t, true) > 0) {
    double mean = 0;
    fg_err e;
    fg_status st;
    Py_BEGIN_ALLOW_THREADS
    st = fg_trainer_evaluate(t, &mean, &e);
    Py_END_ALLOW_THREADS
    Py_DECREF(test);
    if (st != FG_OK) return fgpy_raise(st, e.msg);
    test = PyFloat_FromDouble(mean);
  }
  fg_trainer_use_ema(t);
  return Py_BuildValue(
      "{s:L,s:L,s:d,s:N,s:s,s:z,s:s,s:d}", "step", (long long)fg_trainer_step_count(t), "steps",
      (long long)(fg_trainer_step_count(t) - start), "loss", loss, "test_loss", test, "unit",
      fg_trainer_unit(t), "checkpoint", a->out, "stopped", why, "seconds", seconds);
}

static PyObject *run(const train_args *a, fgpy_view *train, fgpy_view *test) {
  FlowObject *f = a->flow;
  fg_train_settings s = f->train;
  if (a->steps) s.steps = a->steps; /* the run's length: where a cosine schedule ends by default */
  fg_trainer_data d = {.train = &train->t, .test = test ? &test->t : NULL, .discrete = a->discrete};
  fg_trainer *t = NULL;
  fg_err e;
  fg_status st;
  Py_BEGIN_ALLOW_THREADS
  st = fg_trainer_new(&t, f->flow, &s, &d, a->threads, &e); /* copies the data it keeps */
  if (st == FG_OK && a->resume) st = fg_trainer_load(t, a->resume, &e);
  Py_END_ALLOW_THREADS
  if (st != FG_OK) {
    fg_trainer_free(t);
    return fgpy_raise(st, e.msg);
  }
  int64_t start = fg_trainer_step_count(t);
  double t0 = now_s(), loss = NAN;
  const char *why = "steps";
  PyObject *out =
      loop(t, a, &loss, &why) == 0 ? finish(t, a, loss, why, now_s() - t0, start) : NULL;
  fg_trainer_free(t);
  return out;
}

PyObject *fgpy_train(PyObject *mod, PyObject *args, PyObject *kw) {
  (void)mod;
  static char *names[] = {
      "flow",   "train",    "test",    "discrete",         "steps", "minutes", "out",
      "resume", "callback", "threads", "checkpoint_every", NULL};
  train_args a = {0};
  if (!PyArg_ParseTupleAndKeywords(args, kw, "O!OOpLdzzOiL", names, &fgpy_flow_type, &a.flow,
                                   &a.train, &a.test, &a.discrete, &a.steps, &a.minutes, &a.out,
                                   &a.resume, &a.callback, &a.threads, &a.checkpoint_every))
    return NULL;
  if (a.steps < 0 || !(a.minutes >= 0 && a.minutes < 1e9) || a.threads < 0 ||
      a.threads > FG_POOL_MAX_THREADS || a.checkpoint_every < 0 || (!a.steps && !a.minutes))
    return PyErr_Format(PyExc_ValueError,
                        "train: steps >= 0 and minutes >= 0 (not both 0), threads in 0..%d, "
                        "checkpoint_every >= 0",
                        FG_POOL_MAX_THREADS);
  if (a.callback != Py_None && !PyCallable_Check(a.callback))
    return PyErr_Format(PyExc_TypeError, "callback must be callable");
  fgpy_view *train, *test;
  if (a.train == Py_None) return PyErr_Format(PyExc_ValueError, "train: no training data");
  if (data_view(a.train, &train, "train data") < 0) return NULL;
  if (data_view(a.test, &test, "test data") < 0) {
    fgpy_view_free(train);
    return NULL;
  }
  fgpy_flow_lock(a.flow);
  PyObject *out = run(&a, train, test);
  fgpy_flow_unlock(a.flow);
  fgpy_view_free(train);
  fgpy_view_free(test);
  return out;
}
