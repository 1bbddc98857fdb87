/* flowgrad train: train a flow from a spec, with progress, checkpoints, test evaluation,
 * samples and a graph dump. */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/ir/dot.h"
#include "core/formats/png_grid.h"
#include "core/runtime/program.h"
#include "tools/cli/cli.h"

static volatile sig_atomic_t interrupted;
static void on_interrupt(int sig) {
  (void)sig;
  interrupted = 1;
}

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

typedef struct run_opts {
  int64_t steps, checkpoint_every, limit;
  double minutes;
  const char *out, *resume;
  int threads;
  bool dump;
  fg_dist *dist; /* the data-parallel job (one process without mpirun); rank 0 reports */
} run_opts;

/* ---- data-parallel jobs: every rank reaches these points, whatever happened to it ---- */

/* Every rank's exit code so far: the lowest failed rank's, the same on every rank (rank 0 names
 * it when it did not fail itself; a failed rank has printed why). */
static int agree(fg_dist *d, int code) {
  int n = fg_dist_size(d);
  if (n == 1) return code;
  int32_t mine = code, *all = malloc(sizeof *all * (size_t)n);
  if (!all || fg_dist_gather(d, &mine, sizeof mine, all, NULL) != FG_OK) {
    fg_dist_mark_broken(d);
    free(all);
    return code != EXIT_OK ? code : EXIT_JOB_FAILED;
  }
  for (int r = 0; r < n; r++)
    if (all[r] != EXIT_OK) {
      if (code == EXIT_OK && fg_dist_rank(d) == 0) fprintf(stderr, "flowgrad train: rank %d failed (exit code %d)\n", r, all[r]);
      code = all[r];
      break;
    }
  free(all);
  return code;
}

/* Whether any rank asks to stop (*interrupt: because of a signal); every rank stops together. */
static fg_status agree_stop(fg_dist *d, bool done, bool *stop, bool *interrupt, fg_err *e) {
  uint32_t flags;
  fg_status st = fg_dist_or(d, (done ? 1u : 0u) | (interrupted ? 2u : 0u), &flags, e);
  *stop = st != FG_OK || flags != 0, *interrupt = flags & 2u;
  return st;
}

static void path_in(char *buf, size_t cap, const char *dir, const char *name) { snprintf(buf, cap, "%s/%s", dir, name); }

/* Shows the run's global step; rate and ETA come from this session's steps (since `start`). */
static void progress(const fg_trainer *t, const fg_train_step_info *info, int64_t start, const run_opts *o,
                     double elapsed, double *last_log, bool tty) {
  if (fg_dist_rank(o->dist) != 0) return;
  int64_t session = info->step - start;
  double per_s = (double)session * (double)fg_trainer_batch(t) / (elapsed > 0 ? elapsed : 1);
  double left = -1;
  if (o->steps) left = elapsed / (double)session * (double)(o->steps - info->step);
  if (o->minutes) {
    double by_time = o->minutes * 60 - elapsed;
    left = left < 0 || by_time < left ? by_time : left;
  }
  if (info->skipped) fprintf(stderr, "%sstep %lld skipped: non-finite loss or gradient, first at %s\n", tty ? "\n" : "",
                             (long long)info->step, info->bad_layer);
  if (tty) {
    fprintf(stderr, "\r  step %6lld  loss %8.4f %s  %7.1f samples/s  ETA %3d:%02d ", (long long)info->step, info->loss,
            fg_trainer_unit(t), per_s, left > 0 ? (int)left / 60 : 0, left > 0 ? (int)left % 60 : 0);
    return;
  }
  if (elapsed - *last_log >= 10 || session == 1) {
    fprintf(stderr, "step %lld  loss %.4f %s  %.1f samples/s  elapsed %.0fs\n", (long long)info->step, info->loss,
            fg_trainer_unit(t), per_s, elapsed);
    *last_log = elapsed;
  }
}

static int save(fg_trainer *t, const cli_model *m, const char *out) {
  char path[4096];
  fg_err e;
  path_in(path, sizeof path, out, "checkpoint.safetensors");
  fg_status st = fg_trainer_save(t, path, m->spec_text, &e);
  return st == FG_OK ? EXIT_OK : cli_fail("train", st, e.msg);
}

static void dump_graph(cli_model *m, const char *out) {
  fg_graph *g;
  fg_err e;
  if (fg_graph_new(&g, &e) != FG_OK) {
    fprintf(stderr, "warning: no graph drawing: %s\n", e.msg);
    return;
  }
  fg_shape s = fg_flow_get_config(m->flow)->event, b = s;
  b.ndim = s.ndim + 1, b.d[0] = 1;
  for (int i = 0; i < s.ndim; i++) b.d[i + 1] = s.d[i];
  fg_node x = fg_input(g, "x", FG_F32, b), logp;
  char path[4096];
  if (fg_flow_log_prob(m->flow, g, x, false, &logp) == FG_OK) {
    path_in(path, sizeof path, out, "graph.dot");
    fg_dot_opts o = {.title = "log p(x), one sample", .outputs = &logp, .n_outputs = 1};
    if (fg_dot_write(g, &o, FG_DOT_DOT, path, &e) == FG_OK) printf("graph (%d nodes): %s\n", fg_graph_node_count(g), path);
    if (fg_graph_node_count(g) <= 1500) { /* Graphviz layout grows fast with size */
      path_in(path, sizeof path, out, "graph.svg");
      if (fg_dot_write(g, &o, FG_DOT_SVG, path, &e) == FG_OK) printf("graph drawing: %s\n", path);
    }
  }
  fg_graph_free(g);
}

static int parse_opts(int argc, char **argv, run_opts *o) {
  memset(o, 0, sizeof *o);
  o->out = cli_option(argc, argv, "--out") ? cli_option(argc, argv, "--out") : "run";
  o->resume = cli_option(argc, argv, "--resume");
  o->dump = !cli_flag(argc, argv, "--no-dump");
  const char *v;
  if ((v = cli_option(argc, argv, "--steps"))) o->steps = atoll(v);
  if ((v = cli_option(argc, argv, "--minutes"))) o->minutes = atof(v);
  if ((v = cli_option(argc, argv, "--threads"))) o->threads = atoi(v);
  if ((v = cli_option(argc, argv, "--limit"))) o->limit = atoll(v);
  o->checkpoint_every = (v = cli_option(argc, argv, "--checkpoint-every")) ? atoll(v) : 500;
  if (o->steps < 0 || o->minutes < 0 || o->threads < 0 || o->checkpoint_every < 0) {
    fprintf(stderr, "flowgrad train: --steps, --minutes, --threads and --checkpoint-every must be >= 0\n");
    return EXIT_USAGE;
  }
  return EXIT_OK;
}

/* Recompute mode: how many layers rebuild their activations, the training program's planned
 * peak of intermediate values, and (after a round-trip check) which layers fell back. */
static void recompute_report(const fg_trainer *t, const fg_train_step_info *info) {
  const fg_recompute *rc = fg_trainer_recompute(t);
  if (!rc) return;
  if (!info) {
    printf("recompute: %d of %d layers rebuild their activations in the backward pass; planned peak %.1f MiB\n",
           fg_recompute_num_recomputed(rc), fg_recompute_num_blocks(rc),
           (double)fg_trainer_program_stats(t)->arena_bytes / (1 << 20));
    return;
  }
  if (info->recompute_fallbacks == 0) return;
  fprintf(stderr, "\nstep %lld: %d layer(s) keep their activations from now on (round trip over recompute_tol):",
          (long long)info->step, info->recompute_fallbacks);
  for (int i = 0; i < fg_recompute_num_blocks(rc); i++)
    if (fg_recompute_block_mode(rc, i) == FG_BLOCK_STORED_ROUND_TRIP)
      fprintf(stderr, " %s (%.2g)", fg_recompute_block_name(rc, i), fg_recompute_block_error(rc, i));
  fprintf(stderr, "\n");
  recompute_report(t, NULL);
}

/* With several ranks: the share of the step spent summing over them (rank 0's view). */
static void dist_report(const run_opts *o, const fg_dist_stats *before, int64_t steps, double seconds) {
  fg_dist_stats now = fg_dist_get_stats(o->dist);
  double sum_s = now.sum_seconds - before->sum_seconds;
  if (fg_dist_size(o->dist) == 1 || steps == 0) return;
  printf("data-parallel: %d ranks; summing over them took %.2f ms per step (%.1f%% of the step), "
         "%.0f values per step\n", fg_dist_size(o->dist), 1e3 * sum_s / (double)steps,
         100 * sum_s / seconds, (double)(now.sum_values - before->sum_values) / (double)steps);
}

static int train_loop(fg_trainer *t, cli_model *m, const run_opts *o, bool *interrupt) {
  bool tty = isatty(STDERR_FILENO) && fg_dist_rank(o->dist) == 0, stop = false;
  double t0 = now_s(), last_log = -1e9;
  int64_t start = fg_trainer_step_count(t);
  fg_dist_stats before = fg_dist_get_stats(o->dist);
  fg_err e;
  for (;;) {
    int64_t done = fg_trainer_step_count(t);
    bool finished = (o->steps && done >= o->steps) || (o->minutes && now_s() - t0 >= o->minutes * 60);
    fg_status st = agree_stop(o->dist, finished, &stop, interrupt, &e);
    if (st != FG_OK) return cli_fail("train", st, e.msg);
    if (stop) break;
    fg_train_step_info info;
    st = fg_trainer_step(t, &info, &e);
    if (st != FG_OK) {
      if (tty) fputc('\n', stderr);
      if (!fg_dist_broken(o->dist)) save(t, m, o->out);
      return cli_fail("train", st, e.msg);
    }
    recompute_report(t, &info);
    progress(t, &info, start, o, now_s() - t0, &last_log, tty);
    if (o->checkpoint_every && info.step % o->checkpoint_every == 0 && save(t, m, o->out) != EXIT_OK) return EXIT_IO;
  }
  if (tty) fputc('\n', stderr);
  printf("trained %lld steps in %.1f s%s\n", (long long)(fg_trainer_step_count(t) - start), now_s() - t0,
         *interrupt ? " (interrupted: checkpoint saved, resume with --resume)" : "");
  dist_report(o, &before, fg_trainer_step_count(t) - start, now_s() - t0);
  return EXIT_OK;
}

/* Saving and evaluating involve every rank; samples and drawings are rank 0's.  A job stopped
 * by a signal only saves: mpirun kills its ranks a second after passing a signal on. */
static int finish(fg_trainer *t, cli_model *m, const run_opts *o, bool interrupt) {
  int code = save(t, m, o->out);
  bool report = fg_dist_rank(o->dist) == 0;
  if (interrupt && fg_dist_size(o->dist) > 1) {
    if (code == EXIT_OK) printf("checkpoint: %s/checkpoint.safetensors (flowgrad eval gives its test loss)\n", o->out);
    return code;
  }
  char path[4096];
  fg_err e;
  path_in(path, sizeof path, o->out, "checkpoint.safetensors");
  if (code == EXIT_OK) printf("checkpoint: %s\n", path);
  double test;
  if (code == EXIT_OK && fg_trainer_data_rows(t, true) > 0) {
    fg_status st = fg_trainer_evaluate(t, &test, &e);
    if (st != FG_OK) return cli_fail("train", st, e.msg);
    printf("test %s: %.4f\n", fg_trainer_unit(t), test);
  }
  if (code == EXIT_OK && m->discrete && report) {
    fg_trainer_use_ema(t);
    path_in(path, sizeof path, o->out, "samples.png");
    fg_status st = cli_write_samples(m, 64, m->spec->train.temperature, (uint64_t)m->spec->train.seed + 1, path, &e);
    if (st != FG_OK) return cli_fail("train", st, e.msg);
    printf("samples (temperature %.2f): %s\n", m->spec->train.temperature, path);
  }
  if (code == EXIT_OK && o->dump && report) dump_graph(m, o->out);
  if (getenv("FG_PROFILE") && report) {
    char table[8192];
    printf("\nper-op profile of the training program:\n%s", fg_trainer_profile(t, table, sizeof table));
  }
  return code;
}

/* Resuming: every rank loads the checkpoint; a job of another size than the one that wrote it
 * goes on with the same batches and noise, but no longer bit for bit. */
static int resume(fg_trainer *t, const run_opts *o) {
  fg_err e;
  fg_checkpoint_meta meta;
  fg_status st = fg_trainer_load(t, o->resume, &e);
  if (st == FG_OK) st = fg_checkpoint_read_meta(o->resume, &meta, &e);
  if (st != FG_OK) return cli_fail("train", st, e.msg);
  printf("resumed from %s at step %lld\n", o->resume, (long long)fg_trainer_step_count(t));
  if (meta.ranks != fg_dist_size(o->dist) && fg_dist_rank(o->dist) == 0)
    fprintf(stderr, "warning: %s was written by a job of %lld process(es), this one has %d: the "
            "batches and noise are the same, the results equal up to rounding but not bit for bit\n",
            o->resume, (long long)meta.ranks, fg_dist_size(o->dist));
  fg_checkpoint_meta_free(&meta);
  return EXIT_OK;
}

/* One rank's share of `flowgrad train` (the whole of it for one process). */
static int train_job(int argc, char **argv, const char *spec_path, run_opts *o) {
  cli_model m = {0};
  int code = mkdir(o->out, 0777) != 0 && errno != EEXIST
                 ? cli_fail("train", FG_E_IO, "cannot create the output directory")
                 : cli_model_from_spec(&m, "train", spec_path, argc, argv, o->limit);
  code = agree(o->dist, code);
  fg_trainer *t = NULL;
  fg_err e;
  bool interrupt = false;
  if (code == EXIT_OK) {
    if (!o->steps && !o->minutes) o->steps = m.spec->train.steps, o->minutes = m.spec->train.minutes;
    if (!o->steps && !o->minutes) o->steps = 1000;
    if (cli_flag(argc, argv, "--recompute")) m.spec->train.recompute = true;
    fg_trainer_data d = {m.data.train, m.data.test, m.data.discrete};
    fg_status st = fg_trainer_new_dist(&t, m.flow, &m.spec->train, &d, o->threads, o->dist, &e);
    code = agree(o->dist, st == FG_OK ? EXIT_OK : cli_fail("train", st, e.msg));
    fg_data_free(&m.data); /* the trainer keeps its own (compact) copy */
  }
  if (code == EXIT_OK) code = agree(o->dist, o->resume ? resume(t, o) : EXIT_OK);
  if (code == EXIT_OK) {
    printf("%s: %lld parameters, %lld training samples of %lld dims, batch %lld\n", spec_path,
           (long long)fg_flow_num_scalars(m.flow), (long long)fg_trainer_data_rows(t, false), (long long)fg_flow_dims(m.flow),
           (long long)fg_trainer_batch(t));
    if (fg_dist_size(o->dist) > 1)
      printf("data-parallel: %d ranks of %lld samples each per batch\n", fg_dist_size(o->dist),
             (long long)(fg_trainer_batch(t) / fg_dist_size(o->dist)));
    recompute_report(t, NULL);
    signal(SIGINT, on_interrupt);
    signal(SIGTERM, on_interrupt);
    code = train_loop(t, &m, o, &interrupt);
  }
  if (code == EXIT_OK) code = finish(t, &m, o, interrupt);
  if (!fg_dist_broken(o->dist)) code = agree(o->dist, code);
  fg_trainer_free(t);
  cli_model_free(&m);
  return code;
}

static int run_train(int argc, char **argv) {
  static const char *const valued[] = {"--steps", "--minutes", "--out", "--resume", "--threads", "--limit",
                                       "--checkpoint-every", "--plugin", NULL};
  const char *spec_path[2];
  if (cli_positionals(argc, argv, spec_path, 2, valued) != 1) {
    fprintf(stderr, "usage: flowgrad train SPEC [options] (flowgrad train --help)\n");
    return EXIT_USAGE;
  }
  run_opts o;
  int code = parse_opts(argc, argv, &o);
  if (code != EXIT_OK) return code;
  fg_err e;
  fg_status st = fg_dist_new(&o.dist, &e);
  if (st != FG_OK) return cli_fail("train", st, e.msg);
  /* under mpirun the other ranks work silently: rank 0 speaks for the job */
  if (fg_dist_rank(o.dist) != 0 && !freopen("/dev/null", "w", stdout)) code = EXIT_IO;
  code = agree(o.dist, code);
  if (code == EXIT_OK) code = train_job(argc, argv, spec_path[0], &o);
  if (fg_dist_broken(o.dist)) fg_dist_abort(o.dist, code); /* a rank is stuck in an exchange */
  fg_dist_free(o.dist);
  return code;
}

const cli_command cli_train = {
    "train", "train a flow from a spec file (progress, checkpoints, test bits/dim, samples)",
    "usage: flowgrad train SPEC [--steps N] [--minutes M] [--out DIR] [--resume CHECKPOINT]\n"
    "                      [--threads N] [--limit N] [--checkpoint-every N] [--plugin lib.so] [--no-dump]\n"
    "                      [--recompute]\n\n"
    "Trains the model of SPEC (examples/*.flow) on its data.  Stops after --steps or --minutes\n"
    "(default: the spec's train settings), on Ctrl-C, or after too many non-finite steps in a\n"
    "row.  Writes DIR/checkpoint.safetensors (also every --checkpoint-every steps, atomically),\n"
    "then prints the test loss (bits/dim for images, nats for 2-D data), writes DIR/samples.png\n"
    "(images) and DIR/graph.dot (+ graph.svg) of the log-prob graph.  --resume continues a run\n"
    "exactly (same batches, noise and updates).  --limit N keeps N training samples.\n"
    "--recompute (the spec's `recompute true`) keeps memory flat in depth: the backward pass\n"
    "rebuilds each layer's activations from its output through its inverse.\n\n"
    "Under `mpirun -np N` (a build with MPI) the N processes train one model together, each on\n"
    "its share of every batch (the batch must be a multiple of N); rank 0 prints and writes.\n",
    run_train};
