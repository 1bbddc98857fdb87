/* The flowgrad command as a user (or a script) meets it: every option checked before anything
 * runs (exit 2 naming it), bad input exiting 3 with file:line, Ctrl-C exiting 130 with the
 * checkpoint saved, a second Ctrl-C stopping at once, --minutes bounding the evaluation too, help
 * texts, plugin hints, resume checks, batched sampling and leftover temporary files.  The built
 * command's path is compiled in (FLOWGRAD_EXE), as the example plugin's (PLUGIN_SINH_ARCSINH). */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <time.h>

#include "io_helpers.h"

extern char **environ;

TestSuite(cli, .init = io_setup, .fini = io_teardown, .timeout = 600);

static char out[1 << 16]; /* what the last command printed, stdout and stderr together */

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* Starts flowgrad with args (NULL-terminated), its output going to <tmpdir>/out.txt. */
static pid_t start(const char *const *args) {
  const char *argv[64] = {FLOWGRAD_EXE};
  int n = 1;
  while (args[n - 1] && n < 63) {
    argv[n] = args[n - 1];
    n++;
  }
  argv[n] = NULL;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, io_path("out.txt"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  pid_t pid;
  cr_assert_eq(posix_spawn(&pid, FLOWGRAD_EXE, &fa, NULL, (char *const *)argv, environ), 0);
  posix_spawn_file_actions_destroy(&fa);
  return pid;
}

static void read_output(void) {
  FILE *f = fopen(io_path("out.txt"), "rb");
  size_t n = f ? fread(out, 1, sizeof out - 1, f) : 0;
  out[n] = '\0';
  if (f) fclose(f);
}

/* The exit code (128 + signal for a signal), the output in `out`. */
static int finish(pid_t pid) {
  int status;
  cr_assert_eq(waitpid(pid, &status, 0), pid);
  read_output();
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

#define RUN(...) finish(start((const char *const[]){__VA_ARGS__, NULL}))

#define expect_exit(code, want, ...)                                                               \
  do {                                                                                             \
    int got_ = (code);                                                                             \
    cr_expect_eq(got_, want, "exit %d, expected %d; output:\n%s", got_, want, out);                \
    const char *needles_[] = {"", __VA_ARGS__};                                                    \
    for (size_t k_ = 0; k_ < sizeof needles_ / sizeof *needles_; k_++)                             \
      cr_expect(strstr(out, needles_[k_]) != NULL, "expected '%s' in:\n%s", needles_[k_], out);    \
  } while (0)

/* A path under the test's directory that stays valid (io_path's buffers rotate). */
static const char *path_of(const char *name) {
  static char pool[32][256];
  static int next;
  char *p = pool[next++ % 32];
  snprintf(p, sizeof pool[0], "%s", io_path(name));
  return p;
}

static const char *write_text(const char *name, const char *text) {
  const char *p = path_of(name);
  io_write(p, text, strlen(text));
  return p;
}

#define MOONS "data moons n=256 test_n=64\nflow\n  repeat 2\n    affine_coupling mask=half, " \
              "parity={i%2}, net=mlp, hidden=8, blocks=1\n  end\nend\n"

static const char *moons_spec(const char *train_block) {
  static char text[1024];
  snprintf(text, sizeof text, "%strain\n%send\n", MOONS, train_block);
  return write_text("moons.flow", text);
}

/* ---- options ---- */

Test(cli, unknown_and_malformed_options_are_usage_errors_naming_the_option) {
  const char *spec = moons_spec("  batch 16\n  steps 2\n");
  expect_exit(RUN("train", spec, "--bogus", "--out", path_of("run")), 2, "'--bogus'");
  expect_exit(RUN("train", spec, "--steps", "abc", "--out", path_of("run")), 2, "'--steps'", "'abc'");
  expect_exit(RUN("train", spec, "--out", path_of("run"), "--steps"), 2, "'--steps' needs a value");
  expect_exit(RUN("train", spec, "--steps", "5x", "--out", path_of("run")), 2, "'--steps'");
  expect_exit(RUN("train", spec, "--minutes", "inf", "--out", path_of("run")), 2, "'--minutes'");
  expect_exit(RUN("train", spec, "--threads", "-1", "--out", path_of("run")), 2, "'--threads'");
  expect_exit(RUN("sample", "x.safetensors", "--temperature", "nan"), 2, "'--temperature'", "'nan'");
  expect_exit(RUN("sample", "x.safetensors", "--n", "100001"), 2, "'--n'");
  expect_exit(RUN("eval", "x.safetensors", "--steps", "3"), 2, "unknown option '--steps'");
  expect_exit(RUN("interpolate", "x.safetensors", "--pairs", "0"), 2, "'--pairs'");
  expect_exit(RUN("dump", spec, "--batch", "two"), 2, "'--batch'");
  expect_exit(RUN("check", "--seed", "-3"), 2, "'--seed'");
  expect_exit(RUN("list", "--verbose"), 2, "unknown option '--verbose'");
  expect_exit(RUN("density", "x.safetensors", "--grid", "1"), 2, "'--grid'");
  expect_exit(RUN("edit", "x.safetensors", "--from", "0", "--to", "1", "--n", "-2"), 2, "'--n'");
  expect_exit(RUN("sample", "x.safetensors", "--class"), 2, "'--class' needs a value");
  expect_exit(RUN("dump", spec, "--layers", "3"), 2, "unknown option '--layers'");
  expect_exit(RUN("check", "--perturb", "0"), 2, "'--perturb'");
  expect_exit(RUN("check", "--seeds", "0"), 2, "'--seeds'");
  cr_expect(access(path_of("run"), F_OK) != 0, "nothing ran");
}

/* ---- bad input: exit 3 with where it is ---- */

Test(cli, spec_errors_found_after_parsing_are_bad_input_with_their_place) {
  const char *run = path_of("run");
  expect_exit(RUN("train", moons_spec("  batch 0\n"), "--out", run), 3, "moons.flow:8:9:", "expected an integer >= 1");
  expect_exit(RUN("train", moons_spec("  batch 1000\n"), "--out", run), 3, "moons.flow:8:9:",
              "batch 1000 is larger than the training set (256 samples)");
  expect_exit(RUN("train", moons_spec("  lr nan\n"), "--out", run), 3, "moons.flow:8:6:", "finite");
  const char *zero = write_text("zero.flow", "data moons n=0\nflow\n  reverse\nend\n");
  expect_exit(RUN("train", zero, "--out", run), 3, "zero.flow:1:6:", "n must be an integer from 1");
  const char *open = write_text("open.flow", "data moons\nflow\n  reverse\ntrain\n  batch 4\nend\n");
  expect_exit(RUN("train", open, "--out", run), 3, "open.flow:4:1:", "'end' missing");
}

/* A float32 .npy file of n values in the test's directory. */
static const char *write_npy(const char *name, const char *shape, const float *v, size_t n) {
  char dict[128];
  snprintf(dict, sizeof dict, "{'descr': '<f4', 'fortran_order': False, 'shape': %s, }", shape);
  const char *p = path_of(name);
  io_write_npy(p, dict, v, n * sizeof *v);
  return p;
}

Test(cli, non_finite_data_and_empty_or_huge_shapes_are_bad_input) {
  float v[8] = {0, 1, 2, 3, NAN, 5, 6, 7};
  char spec[512];
  snprintf(spec, sizeof spec, "data npy:%s\nflow\n  reverse\nend\ntrain\n  batch 2\nend\n",
           write_npy("nan.npy", "(4, 2)", v, 8));
  expect_exit(RUN("train", write_text("nan.flow", spec), "--out", path_of("run")), 3, "nan.flow:1:6:", "NaN");
  snprintf(spec, sizeof spec, "data npy:%s\nflow\n  reverse\nend\n", write_npy("wide.npy", "(0, 4294967296)", v, 0));
  expect_exit(RUN("train", write_text("wide.flow", spec), "--out", path_of("run")), 3, "no samples");
}

Test(cli, an_output_directory_that_cannot_be_made_names_the_path_and_the_reason) {
  const char *bad = path_of("missing/parent/run");
  expect_exit(RUN("train", moons_spec("  batch 16\n"), "--out", bad), 4, bad, "No such file or directory");
}

/* ---- help ---- */

Test(cli, help_lists_the_checkpoint_period_and_plugin_on_every_checkpoint_verb) {
  expect_exit(RUN("train", "--help"), 0, "default 500", "--eval-limit", "--minutes M", "exit 130", "--plugin");
  static const char *const verbs[] = {"eval", "sample", "interpolate", "dump"};
  for (int i = 0; i < 4; i++) expect_exit(RUN(verbs[i], "--help"), 0, "--plugin lib.so");
  expect_exit(RUN("--help"), 0, "130 interrupted");
}

Test(cli, a_plugin_name_without_a_slash_gets_a_hint) {
  expect_exit(RUN("list", "--plugin", "libnot_here.so"), 3, "write ./libnot_here.so");
}

/* ---- training runs ---- */

static const char *checkpoint_in(const char *dir) {
  static char pool[8][512];
  static int next;
  char *p = pool[next++ % 8];
  snprintf(p, sizeof pool[0], "%s/checkpoint.safetensors", dir);
  return p;
}

/* Waits (up to a minute) for the running command to print `needle`. */
static void wait_for_output(pid_t pid, const char *needle) {
  for (double t0 = now_s(); now_s() - t0 < 60;) {
    read_output();
    if (strstr(out, needle)) return;
    int status;
    cr_assert_eq(waitpid(pid, &status, WNOHANG), 0, "the command ended early:\n%s", out);
    struct timespec pause = {0, 20 * 1000 * 1000};
    nanosleep(&pause, NULL);
  }
  cr_assert_fail("no '%s' after a minute:\n%s", needle, out);
}

Test(cli, ctrl_c_saves_the_checkpoint_and_exits_130_and_a_second_one_stops_at_once) {
  const char *spec = moons_spec("  batch 16\n"), *run = path_of("run");
  pid_t pid = start((const char *const[]){"train", spec, "--steps", "100000000", "--out", run,
                                          "--checkpoint-every", "50", "--no-dump", NULL});
  wait_for_output(pid, "step 1 ");
  double t0 = now_s();
  kill(pid, SIGINT);
  expect_exit(finish(pid), 130, "interrupted: checkpoint saved", "--resume");
  cr_expect_lt(now_s() - t0, 20, "out within seconds, not after an evaluation");
  cr_expect(strstr(out, "test nats") == NULL, "no evaluation after Ctrl-C:\n%s", out);
  expect_exit(RUN("eval", checkpoint_in(run)), 0, "test nats");
  /* a second Ctrl-C ends the run at once; the last checkpoint is whole */
  pid = start((const char *const[]){"train", spec, "--steps", "100000000", "--out", run, "--checkpoint-every",
                                    "50", "--no-dump", "--resume", checkpoint_in(run), NULL});
  wait_for_output(pid, " loss ");
  struct timespec pause = {0, 300 * 1000 * 1000};
  nanosleep(&pause, NULL);
  kill(pid, SIGINT);
  kill(pid, SIGINT);
  expect_exit(finish(pid), 130);
  expect_exit(RUN("eval", checkpoint_in(run)), 0, "test nats");
}

/* A test set far too large to evaluate in the time: --minutes stops the evaluation at the limit
 * and says over how many samples the loss is. */
Test(cli, minutes_bound_the_evaluation_too) {
  const char *spec = write_text("big.flow", "data moons n=256 test_n=400000\nflow\n  affine_coupling mask=half, "
                                "parity=0, net=mlp, hidden=256, blocks=3\nend\ntrain\n  batch 8\nend\n");
  double t0 = now_s();
  expect_exit(RUN("train", spec, "--minutes", "0.05", "--out", path_of("run"), "--no-dump"), 0,
              "the --minutes limit", "of 400000 test samples");
  cr_expect_lt(now_s() - t0, 30, "3 seconds of budget; evaluating all 400000 samples takes far longer");
  expect_exit(RUN("eval", checkpoint_in(path_of("run")), "--eval-limit", "100"), 0, "the first 100 of 400000");
}

Test(cli, a_resume_with_other_data_or_limit_is_refused) {
  const char *run = path_of("run");
  expect_exit(RUN("train", moons_spec("  batch 16\n  steps 3\n"), "--out", run, "--no-dump"), 0, "test nats");
  const char *other = write_text("other.flow", "data moons n=300 test_n=64\nflow\n  repeat 2\n    affine_coupling "
                                 "mask=half, parity={i%2}, net=mlp, hidden=8, blocks=1\n  end\nend\ntrain\n  batch 16\nend\n");
  expect_exit(RUN("train", other, "--out", run, "--resume", checkpoint_in(run), "--steps", "6"), 3,
              "checkpoint has data moons n=256 test_n=64");
  expect_exit(RUN("train", moons_spec("  batch 16\n"), "--out", run, "--resume", checkpoint_in(run), "--steps", "6",
                  "--limit", "100"),
              3, "checkpoint has limit 0, these settings have 100");
  expect_exit(RUN("train", moons_spec("  batch 16\n"), "--out", run, "--resume", checkpoint_in(run), "--steps", "6",
                  "--no-dump"),
              0, "resumed from");
}

/* A checkpoint whose spec uses a plugin's type names the plugin when it is not given. */
Test(cli, a_checkpoint_names_the_plugin_its_spec_needs) {
  const char *spec = write_text("plugin.flow", "data moons n=256 test_n=64\nflow\n  sinh_arcsinh\n  affine_coupling "
                                "mask=half, parity=0, net=mlp, hidden=8, blocks=1\nend\ntrain\n  batch 16\n  steps 2\nend\n");
  const char *run = path_of("run");
  expect_exit(RUN("train", spec, "--out", run, "--plugin", PLUGIN_SINH_ARCSINH, "--no-dump"), 0, "test nats");
  expect_exit(RUN("eval", checkpoint_in(run)), 3, "'sinh_arcsinh'", "--plugin ", "libplugin_sinh_arcsinh.so");
  expect_exit(RUN("eval", checkpoint_in(run), "--plugin", PLUGIN_SINH_ARCSINH), 0, "test nats");
}

/* uint8-valued images [N, 1, 4, 4] as float32: an image model small enough for every build. */
static const char *image_spec(void) {
  static float v[64 * 16];
  for (int i = 0; i < 64 * 16; i++) v[i] = (float)((i * 37) % 256);
  char spec[512];
  snprintf(spec, sizeof spec, "data npy:%s,%s\nflow\n  affine shift=-0.5\n  squeeze\n  conv1x1_lu\n  affine_coupling "
           "mask=channel, parity=0, net=glow, hidden=4\nend\ntrain\n  batch 8\n  steps 2\nend\n",
           write_npy("img.npy", "(48, 1, 4, 4)", v, 48 * 16), write_npy("img_test.npy", "(16, 1, 4, 4)", v + 48 * 16, 256));
  return write_text("img.flow", spec);
}

Test(cli, sampling_many_goes_chunk_by_chunk) {
  const char *run = path_of("run");
  expect_exit(RUN("train", image_spec(), "--out", run, "--no-dump"), 0, "samples");
  const char *png = path_of("many.png");
  expect_exit(RUN("sample", checkpoint_in(run), "--n", "600", "--out", png), 0, "600 samples");
  cr_expect_eq(access(png, F_OK), 0);
}

Test(cli, non_finite_weights_in_a_checkpoint_are_refused) {
  const char *run = path_of("run");
  expect_exit(RUN("train", image_spec(), "--out", run, "--no-dump"), 0, "checkpoint");
  size_t len;
  uint8_t *bytes = io_read(checkpoint_in(run), &len);
  /* the last tensor's last element (little-endian float32 or float64 NaN bits at the end) */
  memset(bytes + len - 4, 0xff, 4);
  const char *bad = path_of("nan.safetensors");
  io_write(bad, bytes, len);
  free(bytes);
  expect_exit(RUN("eval", bad), 3, "nan");
  expect_exit(RUN("sample", bad, "--out", path_of("s.png")), 3, "nan");
}

/* Leftovers of an interrupted write (a dead writer's, unchanged for a while) go at the next save. */
Test(cli, leftover_temporary_files_are_cleaned) {
  const char *run = path_of("run");
  mkdir(run, 0777);
  char tmp[512];
  snprintf(tmp, sizeof tmp, "%s.tmp.%d", checkpoint_in(run), 999999999);
  io_write(tmp, "partial", 7);
  struct timespec t[2] = {{time(NULL) - 60, 0}, {time(NULL) - 60, 0}};
  cr_assert_eq(utimensat(AT_FDCWD, tmp, t, 0), 0);
  expect_exit(RUN("train", moons_spec("  batch 16\n  steps 2\n"), "--out", run, "--no-dump"), 0, "checkpoint");
  cr_expect_neq(access(tmp, F_OK), 0, "the stale temporary file was removed");
}

/* A 150-byte checkpoint whose metadata claims a 2^32-channel event: refused before anything of
 * that size is made (it used to overflow C·C in the reversal's permutation matrix). */
Test(cli, a_checkpoint_claiming_a_huge_event_is_refused) {
  static const char header[] =
      "{\"__metadata__\":{\"format\":\"flowgrad-checkpoint-1\",\"event\":\"[4294967296]\","
      "\"spec\":\"flow\\nreverse\\nend\\n\",\"n_bits\":\"8\",\"step\":\"0\",\"discrete\":\"true\"}}";
  uint8_t file[512];
  uint64_t n = sizeof header - 1;
  for (int i = 0; i < 8; i++) file[i] = (uint8_t)(n >> (8 * i));
  memcpy(file + 8, header, n);
  const char *path = path_of("huge.safetensors");
  io_write(path, file, 8 + n);
  expect_exit(RUN("sample", path, "--out", path_of("s.png")), 3, "4294967296", "FG_FLOW_MAX_EVENT");
  expect_exit(RUN("eval", path), 3, "no data source");
}
