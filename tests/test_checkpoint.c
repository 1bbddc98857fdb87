/* Checkpoints: round trip, exact resume, saves killed mid-write, truncated, corrupt and foreign
 * files, a checkpoint of another model or another run, and the non-finite count across a
 * resume, on the models of trainer_fixture.h. */
#include <criterion/logging.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>

#include "core/formats/safetensors.h"
#include "flows/train/checkpoint.h"
#include "io_helpers.h"
#include "trainer_fixture.h"

TestSuite(checkpoint, .init = io_setup, .fini = io_teardown);

static void save_ok(fg_trainer *t, const char *path, const char *spec) {
  fg_err e;
  cr_assert_eq(fg_trainer_save(t, path, spec, &e), FG_OK, "%s", e.msg);
}

static void load_ok(fg_trainer *t, const char *path) {
  fg_err e;
  cr_assert_eq(fg_trainer_load(t, path, &e), FG_OK, "%s", e.msg);
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

Test(checkpoint, checkpoint_round_trip_restores_weights_optimiser_ema_and_step) {
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
Test(checkpoint, resume_is_exact_on_continuous_data) { assert_exact_resume(&TOY, 5); }

/* the dequantisation noise depends on the step, and actnorm's data-dependent initialisation must
 * not run again after a load */
Test(checkpoint, resume_is_exact_on_dequantised_images) { assert_exact_resume(&IMAGE, 3); }

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

Test(checkpoint, a_save_killed_mid_write_leaves_a_loadable_checkpoint) {
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

Test(checkpoint, truncated_corrupt_and_foreign_files_are_rejected_and_change_nothing) {
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
Test(checkpoint, a_checkpoint_of_another_model_is_rejected_and_changes_nothing) {
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
Test(checkpoint, a_resume_with_another_seed_is_rejected) {
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

/* ---- 4. the non-finite guard across a resume ---- */

/* The count of skips in a row is saved: two skips, a checkpoint, a fresh trainer that loads it,
 * and its first skip is the third in a row. */
Test(checkpoint, skips_in_a_row_count_across_a_resume) {
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
