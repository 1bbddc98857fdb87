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
  model v = model_new_spec(&TOY, spec_with(TOY_SPEC, "seed 3", "seed 4"));
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

/* ---- 5. self-contained checkpoints: buffers ---- */

/* 1x4x4 images squeezed to 4x2x2: a shuffle and a conv1x1_lu, whose permutations, signs and
 * starting factors are buffers. */
static const char BUF_SPEC[] =
    "data mnist\n"
    "flow\n"
    "  affine shift=-0.5\n"
    "  squeeze\n"
    "  shuffle seed=2\n"
    "  conv1x1_lu\n"
    "  affine_coupling mask=channel, parity=0, net=glow, hidden=4, scale=sigmoid\n"
    "end\n"
    "train\n  batch 4\n  lr 1e-2\n  n_bits 5\n  seed 7\nend\n";

/* What a change to flowgrad's generator would do to a model's layers: other permutations and
 * other starting factors (each permutation reversed, every log|s0| moved). */
static void draw_other_buffers(fg_flow *f) {
  fg_params *ps = fg_flow_params(f);
  cr_assert_eq(fg_params_num_buffers(ps), 6, "shuffle: perm; conv1x1_lu: perm, lower, upper, sign, log_s");
  for (int i = 0; i < fg_params_num_buffers(ps); i++) {
    fg_tensor *b = fg_params_buffer(ps, i);
    const char *name = fg_params_buffer_name(ps, i);
    int64_t n = fg_tensor_numel(b);
    size_t len = strlen(name);
    if (len > 5 && !strcmp(name + len - 5, ".perm"))
      for (int64_t j = 0; j < n / 2; j++) {
        double a = fg_tensor_get(b, j);
        fg_tensor_set(b, j, fg_tensor_get(b, n - 1 - j));
        fg_tensor_set(b, n - 1 - j, a);
      }
    if (len > 6 && !strcmp(name + len - 6, ".log_s"))
      for (int64_t j = 0; j < n; j++) fg_tensor_set(b, j, fg_tensor_get(b, j) + 0.25);
  }
}

/* log p of 4 fixed images under f, in a graph built now. */
static fg_tensor *log_probs(fg_flow *f) {
  fg_tensor *x = make_data(&IMAGE, 4, 5);
  for (int64_t i = 0; i < fg_tensor_numel(x); i++) fg_tensor_set(x, i, (fg_tensor_get(x, i) + 0.5) / 256);
  fg_graph *g;
  fg_graph_new(&g, NULL);
  fg_node in = fg_input(g, "x", FG_F32, x->shape), logp;
  cr_assert_eq(fg_flow_log_prob(f, g, in, false, &logp), FG_OK, "%s", fg_graph_errmsg(g));
  fg_program *p;
  fg_err e;
  cr_assert_eq(fg_program_new(&p, g, 1, &logp, &e), FG_OK, "%s", e.msg);
  cr_assert_eq(fg_params_bind(fg_flow_params(f), p, &e), FG_OK, "%s", e.msg);
  cr_assert_eq(fg_program_bind(p, "x", x, &e), FG_OK, "%s", e.msg);
  cr_assert_eq(fg_program_run(p, &e), FG_OK, "%s", e.msg);
  fg_tensor *out;
  cr_assert_eq(fg_tensor_copy(&out, fg_program_output(p, 0), FG_F32, NULL), FG_OK);
  fg_program_free(p);
  fg_graph_free(g);
  fg_tensor_free(x);
  return out;
}

/* A model of BUF_SPEC whose buffers are not what its layers draw, with a trainer built after. */
static model other_buffers_model(void) {
  fg_train_settings s;
  model m = {.f = flow_from_spec(BUF_SPEC, IMAGE.event, &s)};
  draw_other_buffers(m.f);
  fg_tensor *train = make_data(&IMAGE, IMAGE.n_train, 11), *test = make_data(&IMAGE, IMAGE.n_test, 12);
  m.t = trainer_for(m.f, &s, train, test, true);
  fg_tensor_free(train);
  fg_tensor_free(test);
  return m;
}

Test(checkpoint, buffers_make_a_checkpoint_independent_of_the_generator) {
  model a = other_buffers_model();
  const char *path = io_path("buffers.safetensors");
  save_ok(a.t, path, BUF_SPEC);
  fg_safetensors *file;
  cr_assert_eq(fg_safetensors_open(&file, path, NULL), FG_OK);
  const char *names[] = {"buffer/2.shuffle.perm", "buffer/3.conv1x1_lu.perm", "buffer/3.conv1x1_lu.lower",
                         "buffer/3.conv1x1_lu.upper", "buffer/3.conv1x1_lu.sign", "buffer/3.conv1x1_lu.log_s"};
  for (int i = 0; i < 6; i++) {
    const fg_safetensors_info *info = fg_safetensors_find(file, names[i]);
    cr_assert(info && !strcmp(info->dtype, "F64"), "%s is saved as F64", names[i]);
  }
  fg_safetensors_close(file);
  /* a fresh model draws the generator's buffers; loading replaces them with the saved ones */
  fg_tensor *want = log_probs(a.f);
  fg_flow *b = flow_from_spec(BUF_SPEC, IMAGE.event, NULL);
  fg_tensor *before = log_probs(b);
  cr_assert(!same_bytes(want, before), "other buffers give other log-probs: the test can fail");
  fg_err e;
  cr_assert_eq(fg_checkpoint_load_params(b, path, false, &e), FG_OK, "%s", e.msg);
  fg_tensor *after = log_probs(b);
  cr_assert(same_bytes(want, after), "the loaded model is the saved one, bit for bit");
  fg_tensor_free(want), fg_tensor_free(before), fg_tensor_free(after);
  fg_flow_free(b);
  model_free(&a);
}

/* A trainer built before the load (as --resume builds it) trains with the loaded buffers. */
Test(checkpoint, a_resume_trains_with_the_saved_buffers) {
  model a = other_buffers_model(), b = model_new_spec(&IMAGE, BUF_SPEC);
  train_steps(a.t, 2, NULL);
  const char *path = io_path("resume-buffers.safetensors");
  save_ok(a.t, path, BUF_SPEC);
  load_ok(b.t, path);
  for (int i = 0; i < 2; i++) {
    fg_train_step_info ia = step_ok(a.t), ib = step_ok(b.t);
    assert_same_step(&ia, &ib);
  }
  cr_assert(flows_equal(a.f, b.f));
  model_free(&a);
  model_free(&b);
}

/* A copy of src at dst with every entry edit() keeps (it may change the tensor), metadata kept. */
typedef bool (*entry_edit)(const char *name, fg_tensor *t);

static void rewrite(const char *src, const char *dst, entry_edit edit) {
  fg_safetensors *f;
  fg_err e;
  cr_assert_eq(fg_safetensors_open(&f, src, &e), FG_OK, "%s", e.msg);
  size_t n = fg_safetensors_count(f), kept = 0, n_meta = fg_safetensors_meta_count(f);
  fg_safetensors_item *items = calloc(n + 1, sizeof *items);
  fg_safetensors_kv *meta = calloc(n_meta + 1, sizeof *meta);
  fg_tensor **tensors = calloc(n + 1, sizeof *tensors);
  for (size_t i = 0; i < n; i++) {
    const char *name = fg_safetensors_entry(f, i)->name;
    cr_assert_eq(fg_safetensors_get(&tensors[i], f, name, &e), FG_OK, "%s", e.msg);
    if (edit(name, tensors[i])) items[kept++] = (fg_safetensors_item){.name = name, .tensor = tensors[i]};
  }
  for (size_t i = 0; i < n_meta; i++) {
    meta[i].key = fg_safetensors_meta_key(f, i);
    meta[i].value = fg_safetensors_meta(f, meta[i].key);
  }
  cr_assert_eq(fg_safetensors_write(dst, items, kept, meta, n_meta, &e), FG_OK, "%s", e.msg);
  for (size_t i = 0; i < n; i++) fg_tensor_free(tensors[i]);
  free(items), free(meta), free(tensors);
  fg_safetensors_close(f);
}

static bool drop_buffers(const char *name, fg_tensor *t) {
  (void)t;
  return strncmp(name, "buffer/", 7) != 0;
}

static bool drop_one_buffer(const char *name, fg_tensor *t) {
  (void)t;
  return strcmp(name, "buffer/3.conv1x1_lu.sign") != 0;
}

static bool repeat_an_index(const char *name, fg_tensor *t) {
  if (!strcmp(name, "buffer/2.shuffle.perm")) fg_tensor_set(t, 1, fg_tensor_get(t, 0));
  return true;
}

static bool flip_a_sign_to_two(const char *name, fg_tensor *t) {
  if (!strcmp(name, "buffer/3.conv1x1_lu.sign")) fg_tensor_set(t, 0, 2.0);
  return true;
}

static bool nan_in_a_buffer(const char *name, fg_tensor *t) {
  if (!strcmp(name, "buffer/3.conv1x1_lu.log_s")) fg_tensor_set(t, 2, NAN);
  return true;
}

static bool nan_in_a_parameter(const char *name, fg_tensor *t) {
  if (!strcmp(name, "param/3.conv1x1_lu.log_s_offset")) fg_tensor_set(t, 1, NAN);
  return true;
}

static bool inf_in_a_moment(const char *name, fg_tensor *t) {
  if (!strncmp(name, "optim/", 6)) fg_tensor_set(t, 0, INFINITY);
  return true;
}

/* Checkpoints written before buffers existed load, and the layers keep what they drew. */
Test(checkpoint, a_checkpoint_without_buffers_still_loads) {
  model a = model_new_spec(&IMAGE, BUF_SPEC);
  train_steps(a.t, 1, NULL);
  const char *path = io_path("new.safetensors"), *old = io_path("old.safetensors");
  save_ok(a.t, path, BUF_SPEC);
  rewrite(path, old, drop_buffers);
  fg_flow *b = flow_from_spec(BUF_SPEC, IMAGE.event, NULL);
  fg_err e;
  cr_assert_eq(fg_checkpoint_load_params(b, old, false, &e), FG_OK, "%s", e.msg);
  fg_tensor *want = log_probs(a.f), *got = log_probs(b);
  cr_assert(same_bytes(want, got));
  fg_tensor_free(want), fg_tensor_free(got);
  fg_flow_free(b);
  model v = model_new_spec(&IMAGE, BUF_SPEC);
  load_ok(v.t, old);
  model_free(&v);
  model_free(&a);
}

/* Buffers and parameters from a file are checked before anything changes: a permutation that is
 * none, a sign of 2, NaN or inf anywhere, a file with only some buffers. */
Test(checkpoint, hostile_buffers_and_non_finite_values_are_refused) {
  model a = model_new_spec(&IMAGE, BUF_SPEC), v = model_new_spec(&IMAGE, BUF_SPEC);
  train_steps(a.t, 1, NULL);
  const char *good = io_path("good.safetensors");
  save_ok(a.t, good, BUF_SPEC);
  static const struct {
    entry_edit edit;
    const char *needle;
  } cases[] = {
      {repeat_an_index, "buffer '2.shuffle.perm': entry 1"},
      {flip_a_sign_to_two, "signs are 1 or -1"},
      {nan_in_a_buffer, "buffer '3.conv1x1_lu.log_s': element 2 is nan"},
      {nan_in_a_parameter, "entry 'param/3.conv1x1_lu.log_s_offset' element 1 is nan"},
      {inf_in_a_moment, "is inf"},
      {drop_one_buffer, "no tensor named 'buffer/3.conv1x1_lu.sign'"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    const char *bad = io_path("bad.safetensors");
    rewrite(good, bad, cases[i].edit);
    snapshot before = snapshot_take(v.f);
    fg_tensor *lp = log_probs(v.f);
    fg_err e;
    cr_expect_eq(fg_trainer_load(v.t, bad, &e), FG_E_FORMAT, "case %zu accepted", i);
    cr_expect(strstr(e.msg, cases[i].needle) && strstr(e.msg, bad), "case %zu: expected '%s' in: %s", i,
              cases[i].needle, e.msg);
    if (cases[i].edit != inf_in_a_moment)
      cr_expect_neq(fg_checkpoint_load_params(v.f, bad, false, &e), FG_OK, "case %zu", i);
    fg_tensor *after = log_probs(v.f);
    cr_expect(snapshot_matches(&before, v.f) && same_bytes(lp, after), "case %zu changed the model", i);
    snapshot_free(&before);
    fg_tensor_free(lp), fg_tensor_free(after);
  }
  model_free(&a);
  model_free(&v);
}

/* ---- 6. what a resume must keep: data, row limit, learning rate; the plugins a spec needs ---- */

static void set_info_ok(fg_trainer *t, const char *key, const char *value, bool must_match) {
  fg_err e;
  cr_assert_eq(fg_trainer_set_info(t, key, value, must_match, &e), FG_OK, "%s", e.msg);
}

Test(checkpoint, a_resume_with_other_data_limit_or_lr_is_refused) {
  model m = model_new(&TOY);
  set_info_ok(m.t, "data", "moons n=32", true);
  set_info_ok(m.t, "limit", "0", true);
  train_steps(m.t, 1, NULL);
  const char *path = io_path("run.safetensors");
  save_ok(m.t, path, TOY_SPEC);
  static const char *const other[][3] = {{"data", "moons n=64", "checkpoint has data moons n=32"},
                                         {"limit", "16", "checkpoint has limit 0, these settings have 16"}};
  for (int i = 0; i < 2; i++) {
    model v = model_new(&TOY);
    set_info_ok(v.t, "data", "moons n=32", true);
    set_info_ok(v.t, other[i][0], other[i][1], true);
    fg_err e;
    cr_expect_eq(fg_trainer_load(v.t, path, &e), FG_E_FORMAT);
    cr_expect(strstr(e.msg, other[i][2]), "%s", e.msg);
    cr_expect_eq(fg_trainer_step_count(v.t), 0);
    model_free(&v);
  }
  model v = model_new_spec(&TOY, spec_with(TOY_SPEC, "lr 1e-2", "lr 1e-3"));
  fg_err e;
  cr_expect_eq(fg_trainer_load(v.t, path, &e), FG_E_FORMAT);
  cr_expect(strstr(e.msg, "checkpoint has lr 0.01") && strstr(e.msg, "0.001"), "%s", e.msg);
  model_free(&v);
  /* the same data (and a caller that records nothing) resumes */
  v = model_new(&TOY);
  set_info_ok(v.t, "data", "moons n=32", true);
  load_ok(v.t, path);
  model_free(&v);
  v = model_new(&TOY);
  load_ok(v.t, path);
  model_free(&v);
  cr_assert_eq(fg_trainer_set_info(m.t, "step", "9", false, &e), FG_E_MISUSE, "the checkpoint's own keys are refused");
  model_free(&m);
}

Test(checkpoint, the_plugins_a_spec_needs_are_recorded_and_named_when_missing) {
  model m = model_new(&TOY);
  set_info_ok(m.t, "plugins", "sinh_arcsinh=/opt/x/libplugin_sinh_arcsinh.so\n", false);
  const char *path = io_path("plugin.safetensors");
  save_ok(m.t, path, TOY_SPEC);
  fg_checkpoint_meta meta;
  fg_err e;
  cr_assert_eq(fg_checkpoint_read_meta(path, &meta, &e), FG_OK, "%s", e.msg);
  cr_assert_str_eq(meta.plugins, "sinh_arcsinh=/opt/x/libplugin_sinh_arcsinh.so\n");
  fg_registry *r;
  fg_registry_new(&r, NULL);
  fg_registry_add_builtins(r, NULL);
  cr_assert_eq(fg_checkpoint_check_plugins(&meta, r, &e), FG_E_PLUGIN);
  cr_assert(strstr(e.msg, "'sinh_arcsinh'") && strstr(e.msg, "--plugin /opt/x/libplugin_sinh_arcsinh.so"),
            "%s", e.msg);
  fg_checkpoint_meta_free(&meta);
  fg_registry_free(r);
  model_free(&m);
}
