/* The trainer: checkpoints (round trip, exact resume, saves killed mid-write, truncated, corrupt
 * and foreign files) and the non-finite guard, on two tiny models built from spec text as the
 * CLI builds them: a 2-D toy (continuous data, nats) and a one-step Glow on 1x4x4 images
 * (integer levels, 5 bits, dequantised in the graph, bits/dim, EMA weights). */
#include <criterion/logging.h>
#include <math.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>

#include "core/rng.h"
#include "core/formats/safetensors.h"
#include "frontends/spec/spec.h"
#include "io_helpers.h"

TestSuite(trainer, .init = io_setup, .fini = io_teardown);

static const char TOY_SPEC[] =
    "data moons\n"
    "flow\n"
    "  affine_coupling mask=half, parity=0, net=mlp, hidden=8, blocks=1\n"
    "  affine_coupling mask=half, parity=1, net=mlp, hidden=8, blocks=1\n"
    "end\n"
    "train\n  batch 8\n  lr 1e-2\n  seed 3\nend\n";

/* warm-up makes the learning rate depend on the optimiser's step, so a resumed run that lost
 * the step would show it in info.lr */
static const char IMAGE_SPEC[] =
    "data mnist\n"
    "prior learned\n"
    "flow\n"
    "  affine shift=-0.5\n"
    "  squeeze\n"
    "  actnorm\n"
    "  conv1x1_lu\n"
    "  affine_coupling mask=channel, parity=0, net=glow, hidden=4, scale=sigmoid\n"
    "end\n"
    "train\n  batch 4\n  lr 1e-2\n  warmup 10\n  n_bits 5\n  ema 0.9\n  seed 7\nend\n";

/* Same layer names as TOY_SPEC, wider conditioners: every shape differs. */
static const char TOY_WIDE_SPEC[] =
    "data moons\n"
    "flow\n"
    "  affine_coupling mask=half, parity=0, net=mlp, hidden=16, blocks=1\n"
    "  affine_coupling mask=half, parity=1, net=mlp, hidden=16, blocks=1\n"
    "end\n"
    "train\n  batch 8\n  lr 1e-2\n  seed 3\nend\n";

/* TOY_SPEC plus a third coupling: the first two match the file, the third is missing from it. */
static const char TOY_DEEP_SPEC[] =
    "data moons\n"
    "flow\n"
    "  affine_coupling mask=half, parity=0, net=mlp, hidden=8, blocks=1\n"
    "  affine_coupling mask=half, parity=1, net=mlp, hidden=8, blocks=1\n"
    "  affine_coupling mask=half, parity=0, net=mlp, hidden=8, blocks=1\n"
    "end\n"
    "train\n  batch 8\n  lr 1e-2\n  seed 3\nend\n";

/* exp overflows float32 above ~88.7: a row of 1e30 passes `scale` (finite) and makes layer 1
 * (exp) the first non-finite one; later layers and the loss follow. */
static const char POISON_SPEC[] =
    "data moons\n"
    "flow\n"
    "  scale\n"
    "  exp\n"
    "  affine_coupling mask=half, parity=0, net=mlp, hidden=8, blocks=1\n"
    "end\n"
    "train\n  batch 4\n  lr 1e-2\n  seed 5\n  max_nonfinite 3\nend\n";

typedef struct kind {
  const char *spec;
  fg_shape event;
  bool discrete;
  int64_t n_train, n_test;
} kind;

/* n_test is not a multiple of the batch, so evaluation runs a remainder chunk too */
static const kind TOY = {TOY_SPEC, {1, {2}}, false, 32, 10};
static const kind IMAGE = {IMAGE_SPEC, {3, {1, 4, 4}}, true, 16, 6};

enum { THREADS = 2 }; /* a real pool, so exactness does not rest on running single-threaded */

/* ---- building ---- */

/* A flow from spec text, as the CLI builds one; *s gets the spec's settings. */
static fg_flow *flow_from_spec(const char *text, fg_shape event, fg_train_settings *s) {
  fg_err e;
  fg_registry *r;
  fg_registry_new(&r, NULL);
  cr_assert_not_null(r);
  cr_assert_eq(fg_registry_add_builtins(r, &e), FG_OK, "%s", e.msg);
  fg_spec *spec;
  cr_assert_eq(fg_spec_parse(&spec, text, "test.flow", r, &e), FG_OK, "%s", e.msg);
  fg_base_kind base = strcmp(spec->prior, "learned") ? FG_BASE_NORMAL : FG_BASE_LEARNED;
  fg_bijector *b = spec->flow;
  spec->flow = NULL; /* the flow owns it now */
  fg_flow *f;
  cr_assert_eq(fg_flow_new(&f, b, base, event, (uint64_t)spec->train.seed, &e), FG_OK, "%s", e.msg);
  if (s) *s = spec->train;
  fg_spec_free(spec);
  fg_registry_free(r);
  return f;
}

/* n samples of the kind's event: levels 0..255 for images, N(0, 1) values otherwise. */
static fg_tensor *make_data(const kind *k, int64_t n, uint64_t seed) {
  fg_shape s = {.ndim = k->event.ndim + 1, .d = {n}};
  for (int i = 0; i < k->event.ndim; i++) s.d[i + 1] = k->event.d[i];
  fg_tensor *x;
  cr_assert_eq(fg_tensor_new(&x, FG_F32, &s, NULL), FG_OK);
  for (int64_t i = 0; i < fg_tensor_numel(x); i++)
    fg_tensor_set(x, i, k->discrete ? (double)(fg_rng_bits(seed, (uint64_t)i) % 256) : fg_rng_normal(seed, (uint64_t)i));
  return x;
}

static fg_trainer *trainer_for(fg_flow *f, const fg_train_settings *s, const fg_tensor *train,
                               const fg_tensor *test, bool discrete) {
  fg_trainer_data d = {.train = train, .test = test, .discrete = discrete};
  fg_trainer *t;
  fg_err e;
  cr_assert_eq(fg_trainer_new(&t, f, s, &d, THREADS, &e), FG_OK, "%s", e.msg);
  return t;
}

typedef struct model {
  fg_flow *f;
  fg_trainer *t;
} model;

/* A fresh model of kind k with a trainer over the kind's data (the same data every time). */
static model model_new_spec(const kind *k, const char *spec) {
  fg_train_settings s;
  model m = {.f = flow_from_spec(spec, k->event, &s)};
  fg_tensor *train = make_data(k, k->n_train, 11), *test = make_data(k, k->n_test, 12);
  m.t = trainer_for(m.f, &s, train, test, k->discrete);
  fg_tensor_free(train);
  fg_tensor_free(test);
  return m;
}

static model model_new(const kind *k) { return model_new_spec(k, k->spec); }

static void model_free(model *m) {
  fg_trainer_free(m->t); /* before the flow it borrows */
  fg_flow_free(m->f);
  m->t = NULL, m->f = NULL;
}

/* ---- comparing parameters ---- */

static bool same_bytes(const fg_tensor *a, const fg_tensor *b) {
  return a->dtype == b->dtype && fg_shape_equal(&a->shape, &b->shape) &&
         memcmp(fg_tensor_data(a), fg_tensor_data(b), (size_t)fg_tensor_numel(a) * fg_dtype_size(a->dtype)) == 0;
}

/* Same names, dtypes, shapes and bit patterns. */
static bool flows_equal(const fg_flow *a, const fg_flow *b) {
  const fg_params *pa = fg_flow_params(a), *pb = fg_flow_params(b);
  if (fg_params_count(pa) != fg_params_count(pb)) return false;
  for (int i = 0; i < fg_params_count(pa); i++)
    if (strcmp(fg_params_name(pa, i), fg_params_name(pb, i)) || !same_bytes(fg_params_tensor(pa, i), fg_params_tensor(pb, i)))
      return false;
  return true;
}

/* Copies of every parameter, to compare with later. */
typedef struct snapshot {
  int n;
  fg_tensor **v;
} snapshot;

static snapshot snapshot_take(const fg_flow *f) {
  const fg_params *ps = fg_flow_params(f);
  snapshot s = {fg_params_count(ps), calloc((size_t)fg_params_count(ps) + 1, sizeof(fg_tensor *))};
  cr_assert_not_null(s.v);
  for (int i = 0; i < s.n; i++)
    cr_assert_eq(fg_tensor_copy(&s.v[i], fg_params_tensor(ps, i), fg_params_tensor(ps, i)->dtype, NULL), FG_OK);
  return s;
}

static bool snapshot_matches(const snapshot *s, const fg_flow *f) {
  const fg_params *ps = fg_flow_params(f);
  if (fg_params_count(ps) != s->n) return false;
  for (int i = 0; i < s->n; i++)
    if (!same_bytes(fg_params_tensor(ps, i), s->v[i])) return false;
  return true;
}

static void snapshot_free(snapshot *s) {
  for (int i = 0; i < s->n; i++) fg_tensor_free(s->v[i]);
  free(s->v);
}

/* ---- running ---- */

static fg_train_step_info step_ok(fg_trainer *t) {
  fg_train_step_info info;
  fg_err e;
  cr_assert_eq(fg_trainer_step(t, &info, &e), FG_OK, "%s", e.msg);
  cr_assert(!info.skipped, "step %lld was skipped (bad layer %s)", (long long)info.step, info.bad_layer);
  cr_assert(isfinite(info.loss), "step %lld: loss %g", (long long)info.step, info.loss);
  return info;
}

static void train_steps(fg_trainer *t, int n, fg_train_step_info *infos) {
  for (int i = 0; i < n; i++) {
    fg_train_step_info info = step_ok(t);
    if (infos) infos[i] = info;
  }
}

static void save_ok(fg_trainer *t, const char *path, const char *spec) {
  fg_err e;
  cr_assert_eq(fg_trainer_save(t, path, spec, &e), FG_OK, "%s", e.msg);
}

static void load_ok(fg_trainer *t, const char *path) {
  fg_err e;
  cr_assert_eq(fg_trainer_load(t, path, &e), FG_OK, "%s", e.msg);
}

static double evaluate_ok(fg_trainer *t) {
  double v;
  fg_err e;
  cr_assert_eq(fg_trainer_evaluate(t, &v, &e), FG_OK, "%s", e.msg);
  cr_assert(isfinite(v));
  return v;
}

/* ---- 1. round trip ---- */

static void assert_meta(const char *path, const kind *k, int64_t n_bits, int64_t step) {
  fg_checkpoint_meta m;
  fg_err e;
  cr_assert_eq(fg_checkpoint_read_meta(path, &m, &e), FG_OK, "%s", e.msg);
  cr_assert_str_eq(m.spec, k->spec);
  cr_assert(fg_shape_equal(&m.event, &k->event));
  cr_assert_eq(m.n_bits, n_bits);
  cr_assert_eq(m.discrete, k->discrete);
  cr_assert_eq(m.step, step);
  fg_checkpoint_meta_free(&m);
}

/* A fresh flow (no trainer) takes the checkpoint's weights: its raw ones or its EMA ones. */
static fg_flow *flow_loaded_from(const char *path, const kind *k, bool prefer_ema) {
  fg_flow *f = flow_from_spec(k->spec, k->event, NULL);
  fg_err e;
  cr_assert_eq(fg_checkpoint_load_params(f, path, prefer_ema, &e), FG_OK, "%s", e.msg);
  return f;
}

static void assert_same_step(const fg_train_step_info *a, const fg_train_step_info *b) {
  cr_assert(a->loss == b->loss, "loss %.17g vs %.17g", a->loss, b->loss);
  cr_assert(a->grad_norm == b->grad_norm, "grad norm %.17g vs %.17g", a->grad_norm, b->grad_norm);
  cr_assert(a->lr == b->lr, "lr %.17g vs %.17g", a->lr, b->lr);
  cr_assert_eq(a->step, b->step);
}

Test(trainer, checkpoint_round_trip_restores_weights_optimiser_ema_and_step) {
  model a = model_new(&IMAGE), b = model_new(&IMAGE);
  train_steps(a.t, 3, NULL);
  const char *path = io_path("a.safetensors");
  save_ok(a.t, path, IMAGE.spec);
  cr_assert(!flows_equal(a.f, b.f), "training moved the weights, so the load has work to do");
  load_ok(b.t, path);
  cr_assert(flows_equal(a.f, b.f));
  cr_assert_eq(fg_trainer_step_count(b.t), 3);
  assert_meta(path, &IMAGE, 5, 3);
  fg_flow *c = flow_loaded_from(path, &IMAGE, false);
  cr_assert(flows_equal(a.f, c), "fg_checkpoint_load_params gives the saved weights");
  fg_flow_free(c);
  /* Adam's moments, its step (warm-up: info.lr) and the EMA weights (evaluation) are not
   * visible as tensors: identical next steps and evaluations show they came back */
  for (int i = 0; i < 2; i++) {
    fg_train_step_info ia = step_ok(a.t), ib = step_ok(b.t);
    assert_same_step(&ia, &ib);
    cr_assert(flows_equal(a.f, b.f), "after step %lld", (long long)ia.step);
  }
  cr_assert(evaluate_ok(a.t) == evaluate_ok(b.t));
  /* the EMA entries: fg_checkpoint_load_params(prefer_ema) gives what fg_trainer_use_ema does */
  save_ok(a.t, path, IMAGE.spec);
  fg_flow *ema = flow_loaded_from(path, &IMAGE, true);
  snapshot raw = snapshot_take(a.f);
  fg_trainer_use_ema(a.t);
  cr_assert(!snapshot_matches(&raw, a.f), "the EMA weights differ from the raw ones");
  cr_assert(flows_equal(a.f, ema));
  snapshot_free(&raw);
  fg_flow_free(ema);
  model_free(&a);
  model_free(&b);
}

/* ---- 2. exact resume ---- */

enum { MAX_RESUME = 16 };

/* Run A: 2n steps.  Run B: n steps, save, free everything, rebuild, load, n more.  Every loss,
 * gradient norm and learning rate, the final weights and the evaluation agree bit for bit. */
static void assert_exact_resume(const kind *k, int n) {
  cr_assert_leq(2 * n, MAX_RESUME);
  fg_train_step_info straight[MAX_RESUME], resumed[MAX_RESUME];
  model a = model_new(k);
  train_steps(a.t, 2 * n, straight);
  model b = model_new(k);
  train_steps(b.t, n, resumed);
  const char *path = io_path("resume.safetensors");
  save_ok(b.t, path, k->spec);
  model_free(&b);
  b = model_new(k);
  load_ok(b.t, path);
  train_steps(b.t, n, resumed + n);
  for (int i = 0; i < 2 * n; i++) assert_same_step(&straight[i], &resumed[i]);
  cr_assert(straight[0].loss != straight[2 * n - 1].loss, "the runs did train");
  cr_assert(flows_equal(a.f, b.f));
  cr_assert_eq(fg_trainer_step_count(b.t), 2 * n);
  cr_assert(evaluate_ok(a.t) == evaluate_ok(b.t));
  model_free(&a);
  model_free(&b);
}

/* 4 batches an epoch: resuming after 5 of 10 steps is mid-epoch and the run crosses two epochs */
Test(trainer, resume_is_exact_on_continuous_data) { assert_exact_resume(&TOY, 5); }

/* the dequantisation noise depends on the step, and actnorm's data-dependent initialisation must
 * not run again after a load */
Test(trainer, resume_is_exact_on_dequantised_images) { assert_exact_resume(&IMAGE, 3); }

/* ---- 3. crash safety and bad files ---- */

/* A child that saves t to path over and over, to be killed at some moment; it writes a byte to
 * *saved_fd once its first save is complete. */
static pid_t fork_saver(fg_trainer *t, const char *path, int *saved_fd) {
  int fds[2];
  cr_assert_eq(pipe(fds), 0);
  pid_t pid = fork();
  cr_assert_neq(pid, -1);
  if (pid == 0) {
    close(fds[0]);
    for (int i = 0; i < 1000000; i++) {
      if (fg_trainer_save(t, path, TOY_SPEC, NULL) != FG_OK) _exit(2);
      if (i == 0 && write(fds[1], "s", 1) != 1) _exit(3);
    }
    _exit(0);
  }
  close(fds[1]);
  *saved_fd = fds[0];
  return pid;
}

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0) {}
}

static void kill_and_reap(pid_t pid) {
  kill(pid, SIGKILL);
  int status;
  cr_assert_eq(waitpid(pid, &status, 0), pid);
  cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "the saver was killed, not ended (status %d)", status);
}

static bool exists(const char *path) { return access(path, F_OK) == 0; }

static const char *tmp_name(const char *path, long pid) {
  static char buf[600];
  snprintf(buf, sizeof buf, "%s.tmp.%ld", path, pid);
  return buf;
}

/* The file loads whole and is one of the two checkpoints; returns true for the newer one. */
static bool holds_old_or_new(model *v, const char *path, const snapshot *old, const snapshot *new, int ms) {
  fg_err e;
  cr_assert_eq(fg_trainer_load(v->t, path, &e), FG_OK, "after a kill at %d ms: %s", ms, e.msg);
  int64_t step = fg_trainer_step_count(v->t);
  cr_assert(step == 2 || step == 5, "after a kill at %d ms: step %lld", ms, (long long)step);
  cr_assert(snapshot_matches(step == 2 ? old : new, v->f), "after a kill at %d ms: weights of step %lld", ms,
            (long long)step);
  return step == 5;
}

/* Checkpoint 1 (step 2) is on disk; a child saving step 5 over and over is killed ms after it
 * starts, or ms after its first save completed (then only the new checkpoint may be there).
 * Returns whether the kill left a partial temporary file. */
static bool kill_a_saver(model *m, model *v, const char *path, int ms, bool after_a_save, const snapshot *old,
                         const snapshot *new) {
  int saved;
  pid_t pid = fork_saver(m->t, path, &saved);
  char c;
  if (after_a_save) cr_assert_eq(read(saved, &c, 1), 1, "the saver completed a save");
  sleep_ms(ms);
  kill_and_reap(pid);
  close(saved);
  bool is_new = holds_old_or_new(v, path, old, new, ms);
  cr_assert(is_new || !after_a_save, "a completed save stays, %d ms later", ms);
  return exists(tmp_name(path, pid));
}

Test(trainer, a_save_killed_mid_write_leaves_a_loadable_checkpoint) {
  model m = model_new(&TOY), v = model_new(&TOY);
  const char *path = io_path("ckpt.safetensors");
  train_steps(m.t, 2, NULL);
  save_ok(m.t, path, TOY_SPEC);
  size_t old_len;
  uint8_t *old_bytes = io_read(path, &old_len);
  snapshot old = snapshot_take(m.f);
  train_steps(m.t, 3, NULL);
  snapshot new = snapshot_take(m.f);
  int torn = 0;
  for (int ms = 0; ms <= 20; ms++)
    for (int after_a_save = 0; after_a_save < 2; after_a_save++) {
      io_write(path, old_bytes, old_len); /* checkpoint 1 again */
      torn += kill_a_saver(&m, &v, path, ms, after_a_save, &old, &new);
    }
  cr_log_info("42 kills, %d inside a write (a partial temporary file left)", torn);
  /* a leftover under the very name this process writes to (a recycled pid), and another one:
   * the next save truncates the first and renames it away, and neither disturbs a load */
  io_write(tmp_name(path, (long)getpid()), "garbage", 7);
  io_write(tmp_name(path, 1), "garbage", 7);
  save_ok(m.t, path, TOY_SPEC);
  cr_assert(!exists(tmp_name(path, (long)getpid())));
  cr_assert(holds_old_or_new(&v, path, &old, &new, -1));
  free(old_bytes);
  snapshot_free(&old);
  snapshot_free(&new);
  model_free(&m);
  model_free(&v);
}

/* fg_trainer_load and fg_checkpoint_load_params both refuse path, the first with a message
 * naming it and `needle`, and v's weights and step stay as they were. */
static void assert_rejected(model *v, const char *path, const char *needle) {
  snapshot before = snapshot_take(v->f);
  int64_t step = fg_trainer_step_count(v->t);
  fg_err e;
  fg_status st = fg_trainer_load(v->t, path, &e);
  cr_assert_neq(st, FG_OK, "%s was accepted", path);
  cr_assert(strstr(e.msg, path) && strstr(e.msg, needle), "message names %s and says '%s': %s", path, needle, e.msg);
  cr_assert(snapshot_matches(&before, v->f), "a rejected load changed nothing (%s)", needle);
  cr_assert_eq(fg_trainer_step_count(v->t), step);
  cr_assert_neq(fg_checkpoint_load_params(v->f, path, false, &e), FG_OK);
  cr_assert(snapshot_matches(&before, v->f));
  snapshot_free(&before);
}

/* A broken file is no checkpoint for the readers that need no trainer either. */
static void assert_broken(model *v, const char *path, const char *needle) {
  assert_rejected(v, path, needle);
  fg_checkpoint_meta m;
  fg_err e;
  cr_assert_neq(fg_checkpoint_read_meta(path, &m, &e), FG_OK, "%s was accepted", path);
  cr_assert(strstr(e.msg, path), "%s", e.msg);
}

/* A copy of the first len bytes of `bytes`, with byte `at` set to `value` when at >= 0. */
static const char *broken_copy(const char *name, const uint8_t *bytes, size_t len, long at, uint8_t value) {
  uint8_t *copy = malloc(len + 1);
  cr_assert_not_null(copy);
  memcpy(copy, bytes, len);
  if (at >= 0) copy[at] = value;
  const char *path = io_path(name);
  io_write(path, copy, len);
  free(copy);
  return path;
}

Test(trainer, truncated_corrupt_and_foreign_files_are_rejected_and_change_nothing) {
  model m = model_new(&TOY), v = model_new(&TOY);
  train_steps(m.t, 2, NULL);
  train_steps(v.t, 1, NULL); /* v has weights of its own, unlike the file's */
  const char *good = io_path("good.safetensors");
  save_ok(m.t, good, TOY_SPEC);
  size_t len;
  uint8_t *bytes = io_read(good, &len);
  assert_broken(&v, broken_copy("cut-data.safetensors", bytes, len - 7, -1, 0), "the file is truncated");
  assert_broken(&v, broken_copy("cut-header.safetensors", bytes, 40, -1, 0), "truncated?");
  assert_broken(&v, broken_copy("long-header.safetensors", bytes, len, 7, 0x7f), "exceeds");
  assert_broken(&v, broken_copy("bad-json.safetensors", bytes, len, 9, '#'), "not valid JSON");
  free(bytes);
  /* a valid safetensors file that is no checkpoint of ours */
  fg_tensor *w = make_data(&TOY, 1, 1);
  fg_safetensors_item item = {.name = "w", .tensor = w};
  const char *foreign = io_path("foreign.safetensors");
  cr_assert_eq(fg_safetensors_write(foreign, &item, 1, NULL, 0, NULL), FG_OK);
  fg_tensor_free(w);
  assert_broken(&v, foreign, "not a flowgrad checkpoint");
  /* and the trainer is still good for work and for the right file */
  step_ok(v.t);
  load_ok(v.t, good);
  cr_assert(flows_equal(m.f, v.f));
  model_free(&m);
  model_free(&v);
}

/* A checkpoint of another model: shapes that differ (wider conditioners), and a model with an
 * extra layer, whose first two layers would load if the loader went entry by entry. */
Test(trainer, a_checkpoint_of_another_model_is_rejected_and_changes_nothing) {
  model m = model_new(&TOY), wide = model_new_spec(&TOY, TOY_WIDE_SPEC), deep = model_new_spec(&TOY, TOY_DEEP_SPEC);
  train_steps(m.t, 2, NULL);
  const char *path = io_path("toy.safetensors");
  save_ok(m.t, path, TOY_SPEC);
  assert_rejected(&wide, path, "entry 'param/0.affine_coupling.");
  fg_err e;
  cr_assert_neq(fg_trainer_load(wide.t, path, &e), FG_OK);
  cr_assert(strstr(e.msg, "this model has"), "the message gives both shapes: %s", e.msg);
  assert_rejected(&deep, path, "no tensor named 'param/2.affine_coupling.");
  model_free(&m);
  model_free(&wide);
  model_free(&deep);
}

/* Resuming with another seed would silently change the batches and the noise. */
Test(trainer, a_resume_with_another_seed_is_rejected) {
  model m = model_new(&TOY);
  train_steps(m.t, 2, NULL);
  const char *path = io_path("seeded.safetensors");
  save_ok(m.t, path, TOY_SPEC);
  char other[sizeof TOY_SPEC];
  memcpy(other, TOY_SPEC, sizeof TOY_SPEC);
  char *seed = strstr(other, "seed 3");
  cr_assert_not_null(seed);
  seed[5] = '4';
  model v = model_new_spec(&TOY, other);
  snapshot before = snapshot_take(v.f);
  fg_err e;
  cr_assert_eq(fg_trainer_load(v.t, path, &e), FG_E_FORMAT);
  cr_assert(strstr(e.msg, path) && strstr(e.msg, "seed 3") && strstr(e.msg, "have 4"), "%s", e.msg);
  cr_assert(snapshot_matches(&before, v.f), "a rejected load changed nothing");
  cr_assert_eq(fg_trainer_step_count(v.t), 0);
  snapshot_free(&before);
  model_free(&m);
  model_free(&v);
}

/* ---- 4. the non-finite guard ---- */

Test(trainer, non_finite_or_out_of_range_data_is_rejected) {
  fg_train_settings s;
  fg_flow *f = flow_from_spec(TOY_SPEC, TOY.event, &s);
  fg_tensor *good = make_data(&TOY, 8, 1), *bad = make_data(&TOY, 8, 1);
  fg_tensor_set(bad, 7, NAN);
  fg_trainer_data d = {.train = bad};
  fg_trainer *t;
  fg_err e;
  cr_assert_eq(fg_trainer_new(&t, f, &s, &d, THREADS, &e), FG_E_FORMAT);
  cr_assert_null(t);
  cr_assert(strstr(e.msg, "element 7 is not finite"), "%s", e.msg);
  fg_tensor_set(bad, 7, INFINITY);
  d = (fg_trainer_data){.train = good, .test = bad};
  cr_assert_eq(fg_trainer_new(&t, f, &s, &d, THREADS, &e), FG_E_FORMAT, "an infinite test value too");
  cr_assert(strstr(e.msg, "not finite"), "%s", e.msg);
  fg_tensor_free(good);
  fg_tensor_free(bad);
  fg_flow_free(f);
  /* image levels must be 0..255 */
  f = flow_from_spec(IMAGE_SPEC, IMAGE.event, &s);
  bad = make_data(&IMAGE, 4, 1);
  fg_tensor_set(bad, 5, 300);
  d = (fg_trainer_data){.train = bad, .discrete = true};
  cr_assert_eq(fg_trainer_new(&t, f, &s, &d, THREADS, &e), FG_E_FORMAT);
  cr_assert(strstr(e.msg, "outside 0..255"), "%s", e.msg);
  fg_tensor_free(bad);
  fg_flow_free(f);
}

/* 8 rows of N(0, 1) with row `bad` all 1e30 (finite data: the trainer accepts it). */
static fg_tensor *poisoned_rows(int64_t bad) {
  fg_tensor *x = make_data(&TOY, 8, 21);
  fg_tensor_set(x, 2 * bad, 1e30);
  fg_tensor_set(x, 2 * bad + 1, 1e30);
  return x;
}

static model poisoned_model(int64_t batch) {
  fg_train_settings s;
  model m = {.f = flow_from_spec(POISON_SPEC, TOY.event, &s)};
  s.batch = batch;
  fg_tensor *x = poisoned_rows(5);
  m.t = trainer_for(m.f, &s, x, NULL, false);
  fg_tensor_free(x);
  return m;
}

/* One step that the poisoned row must make skipped: nothing moved, layer 1 (exp) named. */
static void assert_skipped(const fg_train_step_info *info, const snapshot *before, const fg_flow *f) {
  cr_assert(!isfinite(info->loss), "step %lld: loss %g", (long long)info->step, info->loss);
  cr_assert(snapshot_matches(before, f), "a skipped step changes no weight");
  cr_assert(strstr(info->bad_layer, "1.exp"), "step %lld names layer 1.exp: '%s'", (long long)info->step,
            info->bad_layer);
}

/* Batch 4 of 8 rows: each epoch has exactly one batch with the poisoned row, whichever order the
 * shuffle picks, so every epoch has one skipped step and one real update. */
Test(trainer, a_poisoned_batch_is_skipped_and_training_goes_on) {
  model m = poisoned_model(4);
  for (int epoch = 0; epoch < 3; epoch++) {
    int skipped = 0;
    for (int k = 0; k < 2; k++) {
      snapshot before = snapshot_take(m.f);
      fg_train_step_info info;
      fg_err e;
      /* max_nonfinite 3: two skips in a row (across an epoch boundary) must not stop training */
      cr_assert_eq(fg_trainer_step(m.t, &info, &e), FG_OK, "%s", e.msg);
      cr_assert_eq(info.step, 2 * epoch + k + 1, "skipped steps count");
      if (info.skipped) {
        assert_skipped(&info, &before, m.f);
        skipped++;
      } else {
        cr_assert(isfinite(info.loss) && isfinite(info.grad_norm));
        cr_assert(!snapshot_matches(&before, m.f), "a finite step updates the weights");
        cr_assert_str_empty(info.bad_layer);
      }
      snapshot_free(&before);
    }
    cr_assert_eq(skipped, 1, "epoch %d: exactly the batch with the poisoned row is skipped", epoch);
  }
  model_free(&m);
}

/* Batch 8: every step sees the poisoned row; the third skip in a row stops with FG_E_NUMERIC. */
Test(trainer, max_nonfinite_skips_in_a_row_stop_training) {
  model m = poisoned_model(8);
  snapshot initial = snapshot_take(m.f);
  for (int i = 1; i <= 3; i++) {
    fg_train_step_info info;
    fg_err e;
    fg_status st = fg_trainer_step(m.t, &info, &e);
    cr_assert(info.skipped);
    assert_skipped(&info, &initial, m.f);
    if (i < 3) {
      cr_assert_eq(st, FG_OK, "step %d: %s", i, e.msg);
      continue;
    }
    cr_assert_eq(st, FG_E_NUMERIC, "the third skip in a row stops training");
    cr_assert(strstr(e.msg, "3 steps in a row") && strstr(e.msg, "1.exp"), "%s", e.msg);
  }
  cr_assert_eq(fg_trainer_step_count(m.t), 3);
  snapshot_free(&initial);
  model_free(&m);
}

/* The count of skips in a row is saved: two skips, a checkpoint, a fresh trainer that loads it,
 * and its first skip is the third in a row. */
Test(trainer, skips_in_a_row_count_across_a_resume) {
  model a = poisoned_model(8), b = poisoned_model(8);
  fg_train_step_info info;
  fg_err e;
  for (int i = 0; i < 2; i++) cr_assert_eq(fg_trainer_step(a.t, &info, &e), FG_OK, "%s", e.msg);
  const char *path = io_path("skips.safetensors");
  save_ok(a.t, path, POISON_SPEC);
  load_ok(b.t, path);
  cr_assert_eq(fg_trainer_step(b.t, &info, &e), FG_E_NUMERIC, "the third skip in a row, after the resume");
  cr_assert(strstr(e.msg, "3 steps in a row"), "%s", e.msg);
  model_free(&a), model_free(&b);
}
