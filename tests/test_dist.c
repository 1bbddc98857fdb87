/* Data-parallel training (flows/train/dist.h, the trainer's rank-aware step, `flowgrad train`
 * under mpirun), on one machine: `mpirun --allow-run-as-root --oversubscribe -np N` runs the
 * flowgrad command (FG_CLI) and tests/dist_worker.c (FG_DIST_WORKER), as a user would.
 *   - the reproducible sum: exact, the same on every rank, the same from run to run; the
 *     trainer's sharded test evaluation: bit for bit a single process's;
 *   - two ranks (and four) against one process, with the same global batch: moons (with
 *     clipping and EMA), class-conditional moons (labels sharded with the rows), a tiny Glow on 8x8 images (actnorm's initialisation, dequantisation
 *     noise, learned prior, warm-up, EMA), a flow with batch-norm (statistics of the global
 *     batch; trained with SGD, since Adam turns the round-off in the exactly-zero gradients of
 *     a batch-norm's shift and scale into steps of the learning rate, so that any two orders
 *     of summation differ by that much): the parameters agree within MATCH_TOL, and two runs of
 *     a job are byte-identical and time no kernel (recompute mode too);
 *   - resuming: exact with the same number of ranks, and (with a warning) close with another;
 *   - a non-finite row in one rank's shard: every rank skips the step, as one process does;
 *   - a signal to one rank, a rank that fails to start, a failed save on rank 0, a rank
 *     killed: every rank stops, no hang, and the checkpoint is intact.
 * FG_THREADS=1 in every rank: two ranks on two cores. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <math.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <sys/wait.h>
#include <time.h>

#include "core/formats/safetensors.h"
#include "core/rng.h"
#include "flows/train/checkpoint.h"
#include "io_helpers.h"

extern char **environ;

TestSuite(dist, .init = io_setup, .fini = io_teardown);

/* Parameters of one process and of a job agree this closely after the runs below (largest
 * absolute difference); measured: README, "Data-parallel training". */
#define MATCH_TOL 1e-6

enum { HANG_SECONDS = 120 };

static const char MOONS_SPEC[] =
    "data moons n=2048 test_n=300 noise=0.1 scale=2\n"
    "flow\n"
    "  repeat 4\n"
    "    affine_coupling mask=half, parity={i%2}, net=mlp, hidden=48, blocks=1, scale=exp_tanh\n"
    "  end\n"
    "end\n"
    "train\n  batch 64\n  lr 2e-3\n  clip 0.5\n  ema 0.99\n  seed 1\nend\n";

/* labels from the data source: each row's moon one-hot as the context, per shard */
static const char COND_MOONS_SPEC[] =
    "data moons n=1024 test_n=200 noise=0.1 scale=2\n"
    "classes 2\n"
    "prior conditional\n"
    "flow\n"
    "  repeat 2\n"
    "    cond_affine_coupling mask=half, parity={i%2}, net=mlp, hidden=16, blocks=1\n"
    "  end\n"
    "end\n"
    "train\n  batch 32\n  lr 2e-3\n  ema 0.9\n  seed 6\nend\n";

static const char BATCHNORM_SPEC[] =
    "data moons n=2048 test_n=300 noise=0.1 scale=2\n"
    "flow\n"
    "  repeat 2\n"
    "    affine_coupling mask=half, parity={i%2}, net=mlp, hidden=8, blocks=1\n"
    "    batchnorm momentum=0.2\n"
    "  end\n"
    "end\n"
    "train\n  batch 32\n  optimizer sgd\n  lr 1e-2\n  seed 4\nend\n";

/* 1x8x8 images of 5 bits: two levels, a split, a learned prior (a format: the data's paths) */
static const char GLOW_SPEC[] =
    "data npy:%s,%s\n"
    "prior learned\n"
    "flow\n"
    "  affine shift=-0.5\n"
    "  levels 2\n"
    "    squeeze\n"
    "    repeat 2\n"
    "      actnorm\n"
    "      conv1x1_lu\n"
    "      affine_coupling mask=channel, parity={i%%2}, net=glow, hidden=8, scale=sigmoid\n"
    "    end\n"
    "    split\n"
    "  end\n"
    "end\n"
    "train\n  batch 16\n  lr 2e-3\n  warmup 5\n  n_bits 5\n  ema 0.9\n  seed 2\nend\n";

/* exp overflows float32 on the row of 1e30 (row 5 of 8): layer 1 goes non-finite */
static const char POISON_SPEC[] =
    "data npy:%s\n"
    "flow\n  scale\n  exp\n  affine_coupling mask=half, parity=0, net=mlp, hidden=8, blocks=1\nend\n"
    "train\n  batch 4\n  lr 1e-2\n  seed 5\n  max_nonfinite 3\nend\n";

/* ---- running commands ---- */

static void write_text(const char *name, const char *text) { io_write(io_path(name), text, strlen(text)); }

/* The mpirun command line for n ranks (every rank single-threaded). */
static const char *mpirun(int n) {
  static char buf[512];
  const char *m = getenv("FG_MPIRUN");
  cr_assert_not_null(m, "FG_MPIRUN names mpirun");
  snprintf(buf, sizeof buf, "%s --allow-run-as-root --oversubscribe -np %d", m, n);
  return buf;
}

static const char *cli(void) {
  const char *c = getenv("FG_CLI");
  cr_assert_not_null(c, "FG_CLI names the flowgrad command");
  return c;
}

/* Runs a shell command in the test's directory, its output into `log`; the exit status (124
 * when it had to be stopped after HANG_SECONDS). */
__attribute__((format(printf, 2, 3))) static int sh(const char *log, const char *fmt, ...) {
  char cmd[2048], full[2600];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(cmd, sizeof cmd, fmt, ap);
  va_end(ap);
  snprintf(full, sizeof full, "cd %s && FG_THREADS=1 timeout -k 5 %d sh -c '%s' >%s 2>&1", io_dir,
           HANG_SECONDS, cmd, log);
  int st = system(full);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static char *log_text(const char *log) {
  size_t n;
  uint8_t *b = io_read(io_path(log), &n);
  b[n] = '\0';
  return (char *)b;
}

/* Trains spec for `steps` steps into out/ on n ranks (0: one process, no mpirun), with the
 * variable assignments `env` (or NULL) in every rank's environment. */
static void train_env(const char *env, const char *spec, int n, int steps, const char *out,
                      const char *extra) {
  char log[80];
  snprintf(log, sizeof log, "%s.log", out);
  int code = sh(log, "%s %s %s train %s --steps %d --out %s --no-dump %s", env ? env : "",
                n ? mpirun(n) : "", cli(), spec, steps, out, extra ? extra : "");
  char *text = log_text(log);
  cr_assert_eq(code, 0, "training %s on %d ranks exited %d:\n%s", spec, n, code, text);
  free(text);
}

static void train(const char *spec, int n, int steps, const char *out, const char *extra) {
  train_env(NULL, spec, n, steps, out, extra);
}

/* ---- comparing checkpoints ---- */

static const char *ckpt(const char *out) {
  static char bufs[4][128];
  static int next;
  char *b = bufs[next++ % 4];
  snprintf(b, sizeof bufs[0], "%s/checkpoint.safetensors", out);
  return io_path(b);
}

static bool same_file(const char *a, const char *b) {
  size_t na, nb;
  uint8_t *x = io_read(a, &na), *y = io_read(b, &nb);
  bool same = na == nb && memcmp(x, y, na) == 0;
  free(x), free(y);
  return same;
}

/* The largest |a - b| over the parameters and EMA weights ("param/...", "ema/...") of two
 * checkpoints of one model. */
static double param_diff(const char *a, const char *b) {
  fg_safetensors *fa, *fb;
  fg_err e;
  cr_assert_eq(fg_safetensors_open(&fa, a, &e), FG_OK, "%s", e.msg);
  cr_assert_eq(fg_safetensors_open(&fb, b, &e), FG_OK, "%s", e.msg);
  double worst = 0;
  int params = 0;
  for (size_t i = 0; i < fg_safetensors_count(fa); i++) {
    const char *name = fg_safetensors_entry(fa, i)->name;
    if (strncmp(name, "param/", 6) && strncmp(name, "ema/", 4)) continue;
    fg_tensor *x, *y;
    cr_assert_eq(fg_safetensors_get(&x, fa, name, &e), FG_OK, "%s", e.msg);
    cr_assert_eq(fg_safetensors_get(&y, fb, name, &e), FG_OK, "%s: %s", b, e.msg);
    for (int64_t j = 0; j < fg_tensor_numel(x); j++) {
      double d = fabs(fg_tensor_get(x, j) - fg_tensor_get(y, j));
      cr_assert(isfinite(d), "%s[%lld] is not finite", name, (long long)j);
      worst = d > worst ? d : worst;
    }
    fg_tensor_free(x), fg_tensor_free(y);
    params++;
  }
  cr_assert_gt(params, 0);
  fg_safetensors_close(fa), fg_safetensors_close(fb);
  return worst;
}

static int64_t ckpt_step(const char *path) {
  fg_checkpoint_meta m;
  fg_err e;
  cr_assert_eq(fg_checkpoint_read_meta(path, &m, &e), FG_OK, "the checkpoint is intact: %s", e.msg);
  int64_t step = m.step;
  fg_checkpoint_meta_free(&m);
  return step;
}

/* Whether directory `dir` exists and holds a file. */
static bool has_files(const char *dir) {
  DIR *d = opendir(dir);
  bool any = false;
  for (struct dirent *de; d && !any && (de = readdir(d));) any = de->d_name[0] != '.';
  if (d) closedir(d);
  return any;
}

/* One process and a job of n ranks on spec; with `repeat`, two runs of the job byte for byte
 * the same.  The second run may keep timed kernel choices in a file (FG_KERNEL_CACHE): a job
 * times none, in any of its programs (a choice timed afresh by each run could differ, and the
 * runs with it), so no file appears. */
static void one_vs_job(const char *spec, int n, int steps, bool repeat) {
  train(spec, 0, steps, "one", NULL);
  train(spec, n, steps, "job", NULL);
  if (repeat) {
    char env[160];
    snprintf(env, sizeof env, "FG_KERNEL_CACHE=%s", io_path("kernel-cache"));
    train_env(env, spec, n, steps, "again", NULL);
    cr_assert(same_file(ckpt("job"), ckpt("again")), "two runs of the %d-rank job are bit-identical", n);
    cr_assert(!has_files(io_path("kernel-cache")), "the %d-rank job timed no kernel", n);
  }
  double d = param_diff(ckpt("one"), ckpt("job"));
  cr_log_info("%s, %d steps, 1 process vs %d ranks: largest parameter difference %.3g", spec, steps, n, d);
  cr_assert(d <= MATCH_TOL, "%s: %d ranks differ from one process by %.3g (> %g)", spec, n, d, MATCH_TOL);
  char *text = log_text("job.log");
  cr_assert(strstr(text, "data-parallel:"), "the job reports itself:\n%s", text);
  free(text);
}

/* ---- data ---- */

/* A .npy file with the given header dict and data. */
static void write_npy(const char *name, const char *dict, const void *data, size_t len) {
  char head[256];
  size_t dlen = strlen(dict), hlen = (10 + dlen + 1 + 63) / 64 * 64 - 10;
  memcpy(head, "\x93NUMPY\x01\x00", 8);
  head[8] = (char)(hlen & 0xff), head[9] = (char)(hlen >> 8);
  memcpy(head + 10, dict, dlen);
  memset(head + 10 + dlen, ' ', hlen - dlen - 1);
  head[10 + hlen - 1] = '\n';
  FILE *f = fopen(io_path(name), "wb");
  cr_assert_not_null(f);
  cr_assert_eq(fwrite(head, 1, 10 + hlen, f), 10 + hlen);
  cr_assert_eq(fwrite(data, 1, len, f), len);
  cr_assert_eq(fclose(f), 0);
}

/* n 8x8 images: a blob whose place and brightness vary, plus noise (levels 0..255). */
static void write_images(const char *name, int n, uint64_t seed) {
  uint8_t *px = malloc((size_t)n * 64);
  for (int i = 0; i < n; i++) {
    double cx = 2 + 4 * fg_rng_uniform(seed, 3 * (uint64_t)i), cy = 2 + 4 * fg_rng_uniform(seed, 3 * (uint64_t)i + 1);
    for (int p = 0; p < 64; p++) {
      double r2 = (p / 8 - cy) * (p / 8 - cy) + (p % 8 - cx) * (p % 8 - cx);
      double v = 220 * exp(-r2 / 4) + 30 * fg_rng_uniform(seed + 1, (uint64_t)(i * 64 + p));
      px[i * 64 + p] = (uint8_t)(v > 255 ? 255 : v);
    }
  }
  char dict[128];
  snprintf(dict, sizeof dict, "{'descr': '|u1', 'fortran_order': False, 'shape': (%d, 1, 8, 8), }", n);
  write_npy(name, dict, px, (size_t)n * 64);
  free(px);
}

static void write_glow_spec(void) {
  char text[2048];
  write_images("train.npy", 96, 5);
  write_images("test.npy", 40, 6);
  snprintf(text, sizeof text, GLOW_SPEC, io_path("train.npy"), io_path("test.npy"));
  write_text("glow.flow", text);
}

/* ---- the sum ---- */

Test(dist, the_sum_and_the_sharded_evaluation_are_exact) {
  const char *worker = getenv("FG_DIST_WORKER");
  cr_assert_not_null(worker);
  char *first = NULL;
  for (int run = 0; run < 2; run++) {
    int code = sh("sum.log", "%s %s", mpirun(3), worker);
    char *text = log_text("sum.log");
    cr_assert_eq(code, 0, "the worker's checks:\n%s", text);
    cr_assert(strstr(text, "sums "), "%s", text);
    if (run == 1) cr_assert(!strncmp(strstr(text, "sums "), strstr(first, "sums "), 21), "two runs sum the same:\n%s\n%s", first, text);
    if (run == 0) first = text;
    else free(text);
  }
  free(first);
}

/* ---- the same training as one process ---- */

/* The moons flow has more parameters than FG_DIST_RING_MIN, so its gradients go round the
 * ring: of two ranks, and of four.  (The tiny Glow's and the batch-norm flow's have fewer:
 * gathered and added in rank order.) */
Test(dist, moons_on_two_and_four_ranks_is_one_process) {
  write_text("moons.flow", MOONS_SPEC);
  one_vs_job("moons.flow", 2, 30, true);
  train("moons.flow", 4, 30, "four", NULL);
  double d = param_diff(ckpt("one"), ckpt("four"));
  cr_log_info("moons.flow, 30 steps, 1 process vs 4 ranks: largest parameter difference %.3g", d);
  cr_assert(d <= MATCH_TOL, "4 ranks differ from one process by %.3g (> %g)", d, MATCH_TOL);
}

/* A class-conditional flow: each rank's shard of the batch comes with the shard's labels, in
 * training and in the sharded evaluation. */
Test(dist, a_conditional_flow_on_two_ranks_is_one_process) {
  write_text("cond.flow", COND_MOONS_SPEC);
  one_vs_job("cond.flow", 2, 20, false);
  char *one = log_text("one.log"), *job = log_text("job.log");
  cr_assert(strstr(one, "test nats: ") && strstr(job, "test nats: "), "%s\n%s", one, job);
  free(one), free(job);
}

/* ... and resuming: exact with the same number of ranks, and (with a warning) equal up to
 * rounding with another. */
Test(dist, tiny_glow_on_two_ranks_is_one_process_and_resumes_exactly) {
  write_glow_spec();
  one_vs_job("glow.flow", 2, 12, true);
  char *one = log_text("one.log"), *job = log_text("job.log");
  /* evaluation is split by chunks of the test set and summed exactly */
  cr_assert(strstr(one, "test bits/dim: ") && strstr(job, "test bits/dim: "), "%s\n%s", one, job);
  free(one), free(job);
  train("glow.flow", 2, 6, "half", NULL);
  char resume[256];
  snprintf(resume, sizeof resume, "--resume %s", ckpt("half"));
  train("glow.flow", 2, 12, "resumed", resume);
  cr_assert(same_file(ckpt("job"), ckpt("resumed")), "a resumed job continues bit for bit");
  train("glow.flow", 0, 12, "single", resume);
  char *text = log_text("single.log");
  cr_assert(strstr(text, "warning:") && strstr(text, "2 process(es)"), "%s", text);
  free(text);
  double d = param_diff(ckpt("job"), ckpt("single"));
  cr_assert(d <= MATCH_TOL, "one process resuming a 2-rank checkpoint: %.3g", d);
  /* in recompute mode too, the round-trip check's programs included */
  char env[160];
  snprintf(env, sizeof env, "FG_KERNEL_CACHE=%s", io_path("kernel-cache-rc"));
  train_env(env, "glow.flow", 2, 2, "recomputed", "--recompute");
  text = log_text("recomputed.log");
  cr_assert(strstr(text, "recompute:"), "the job recomputes:\n%s", text);
  free(text);
  cr_assert(!has_files(io_path("kernel-cache-rc")),
            "the 2-rank job in recompute mode timed no kernel");
}

Test(dist, batchnorm_uses_the_global_batch) {
  write_text("bn.flow", BATCHNORM_SPEC);
  one_vs_job("bn.flow", 2, 20, false);
}

Test(dist, the_batch_must_split_evenly) {
  write_text("moons.flow", MOONS_SPEC);
  int code = sh("odd.log", "%s %s train moons.flow --steps 2 --out odd --no-dump", mpirun(3), cli());
  char *text = log_text("odd.log");
  cr_assert_eq(code, 2, "a usage error on every rank:\n%s", text);
  cr_assert(strstr(text, "multiple of 3"), "%s", text);
  free(text);
}

/* ---- the non-finite guard ---- */

Test(dist, every_rank_skips_a_non_finite_step) {
  float rows[16];
  for (int i = 0; i < 16; i++) rows[i] = (float)fg_rng_normal(9, (uint64_t)i);
  rows[10] = 1e30f;
  write_npy("poison.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (8, 2), }", rows, sizeof rows);
  char spec[512];
  snprintf(spec, sizeof spec, POISON_SPEC, io_path("poison.npy"));
  write_text("poison.flow", spec);
  train("poison.flow", 0, 6, "one", NULL);
  train("poison.flow", 2, 6, "job", NULL);
  char *one = log_text("one.log"), *job = log_text("job.log");
  int skipped = 0;
  for (const char *p = job; (p = strstr(p, " skipped: ")); p++) skipped++;
  cr_assert_eq(skipped, 3, "one skip per epoch of two batches, reported once:\n%s", job);
  for (char *line = strtok(one, "\n"); line; line = strtok(NULL, "\n")) /* the same steps and layer */
    if (strstr(line, " skipped: ")) cr_assert(strstr(job, line), "the job reports '%s' too:\n%s", line, job);
  cr_assert(strstr(job, "1.exp"), "the first bad layer over both shards: %s", job);
  cr_assert(param_diff(ckpt("one"), ckpt("job")) <= MATCH_TOL);
  free(one), free(job);
}

/* ---- stopping ---- */

/* Starts mpirun with n ranks on a long moons run (a checkpoint every 2 steps); its pid. */
static pid_t start_job(int n, const char *out) {
  write_text("moons.flow", MOONS_SPEC);
  char cmd[1024];
  snprintf(cmd, sizeof cmd, "cd %s && exec env FG_THREADS=1 %s %s train moons.flow --steps 1000000 "
           "--checkpoint-every 2 --out %s --no-dump >%s.log 2>&1", io_dir, mpirun(n), cli(), out, out);
  pid_t pid;
  char *argv[] = {"sh", "-c", cmd, NULL};
  cr_assert_eq(posix_spawn(&pid, "/bin/sh", NULL, NULL, argv, environ), 0);
  return pid;
}

static void sleep_ms(int ms) { nanosleep(&(struct timespec){ms / 1000, (ms % 1000) * 1000000L}, NULL); }

/* Waits for path to exist (a first checkpoint); false after HANG_SECONDS. */
static bool wait_for_file(const char *path) {
  for (int i = 0; i < HANG_SECONDS * 10; i++, sleep_ms(100))
    if (access(path, F_OK) == 0) return true;
  return false;
}

/* The exit status of pid, or -1 when it is still running after HANG_SECONDS (then killed). */
static int wait_exit(pid_t pid) {
  for (int i = 0; i < HANG_SECONDS * 10; i++, sleep_ms(100)) {
    int st;
    if (waitpid(pid, &st, WNOHANG) == pid) return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  }
  kill(pid, SIGKILL);
  waitpid(pid, NULL, 0);
  return -1;
}

/* Whether process pid's parent is `parent` and its environment holds `var`. */
static bool child_with(const char *pid, pid_t parent, const char *var) {
  char path[300], stat[512];
  snprintf(path, sizeof path, "/proc/%s/stat", pid);
  FILE *f = fopen(path, "r");
  if (!f) return false;
  size_t n = fread(stat, 1, sizeof stat - 1, f);
  fclose(f);
  stat[n] = '\0';
  const char *end_of_name = strrchr(stat, ')');
  int ppid = 0;
  if (!end_of_name || sscanf(end_of_name + 2, "%*c %d", &ppid) != 1 || ppid != parent) return false;
  snprintf(path, sizeof path, "/proc/%s/environ", pid); /* read to the end: /proc has no size */
  static char env[1 << 16];
  size_t len = (f = fopen(path, "r")) ? fread(env, 1, sizeof env - 1, f) : 0;
  if (f) fclose(f);
  env[len] = '\0';
  bool found = false;
  for (size_t at = 0; at < len && !found; at += strlen(env + at) + 1) found = !strcmp(env + at, var);
  return found;
}

/* The pid of rank `rank` among mpirun's children, or 0. */
static pid_t rank_pid(pid_t parent, int rank) {
  char want[64];
  snprintf(want, sizeof want, "OMPI_COMM_WORLD_RANK=%d", rank);
  DIR *d = opendir("/proc");
  cr_assert_not_null(d);
  pid_t found = 0;
  for (struct dirent *de; !found && (de = readdir(d));)
    if (de->d_name[0] >= '1' && de->d_name[0] <= '9' && child_with(de->d_name, parent, want))
      found = (pid_t)atoi(de->d_name);
  closedir(d);
  return found;
}

/* A 2-rank job into out/ once it has saved a first checkpoint: mpirun's pid, rank 1's in *rank1. */
static pid_t job_under_way(const char *out, pid_t *rank1) {
  pid_t job = start_job(2, out);
  cr_assert(wait_for_file(ckpt(out)), "the job makes a first checkpoint");
  *rank1 = 0;
  for (int i = 0; i < 50 && !*rank1; i++, sleep_ms(100)) *rank1 = rank_pid(job, 1);
  cr_assert_neq(*rank1, 0, "rank 1 found among mpirun's children");
  return job;
}

Test(dist, a_signal_to_one_rank_stops_every_rank_with_the_checkpoint_saved) {
  pid_t rank1, job = job_under_way("sig", &rank1);
  kill(rank1, SIGINT); /* Ctrl-C reaching one rank only */
  int code = wait_exit(job);
  char *text = log_text("sig.log");
  /* exit 130 as for one process (tools/cli/cli.h: EXIT_INTERRUPTED), the checkpoint saved */
  cr_assert_eq(code, 130, "every rank stopped cleanly (exit %d):\n%s", code, text);
  cr_assert(strstr(text, "interrupted: checkpoint saved"), "%s", text);
  cr_assert_gt(ckpt_step(ckpt("sig")), 0);
  free(text);
}

Test(dist, a_killed_rank_ends_the_job_and_the_checkpoint_stays_intact) {
  pid_t rank1, job = job_under_way("kill", &rank1);
  sleep_ms(300);
  kill(rank1, SIGKILL);
  int code = wait_exit(job);
  char *text = log_text("kill.log");
  cr_assert(code > 0, "mpirun ends the job (exit %d) instead of leaving rank 0 waiting:\n%s", code, text);
  cr_assert_geq(ckpt_step(ckpt("kill")), 2);
  free(text);
}

Test(dist, a_rank_that_fails_to_start_stops_the_others) {
  write_text("moons.flow", MOONS_SPEC);
  /* MPMD: rank 1 is told to resume from a checkpoint that does not exist */
  int code = sh("start.log", "%s %s train moons.flow --steps 4 --out start --no-dump : -np 1 %s train "
                "moons.flow --steps 4 --out start --no-dump --resume missing.safetensors",
                mpirun(1), cli(), cli());
  char *text = log_text("start.log");
  cr_assert(code != 0 && code != 124, "the job fails without hanging (exit %d):\n%s", code, text);
  cr_assert(strstr(text, "missing.safetensors"), "rank 1 says why:\n%s", text);
  cr_assert(strstr(text, "rank 1 failed"), "rank 0 names it:\n%s", text);
  free(text);
}

Test(dist, a_failed_save_on_rank_0_stops_every_rank) {
  write_text("moons.flow", MOONS_SPEC);
  write_text("taken", "a file where the output directory should be\n");
  /* only rank 0 writes: its first checkpoint fails (taken/ is not a directory) */
  int code = sh("save.log", "%s %s train moons.flow --steps 100 --checkpoint-every 2 --out taken --no-dump",
                mpirun(2), cli());
  char *text = log_text("save.log");
  cr_assert_eq(code, 4, "an I/O error on every rank, no hang (exit %d):\n%s", code, text);
  cr_assert(strstr(text, "rank 0 failed"), "rank 1 learns of it:\n%s", text);
  cr_assert(!strstr(text, "trained 100 steps"), "training stopped at the failed save:\n%s", text);
  free(text);
}
