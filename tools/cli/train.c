/* flowgrad train: train a flow from a spec, with progress, checkpoints, test evaluation,
 * samples and a graph dump. */
#include <errno.h>
#include <math.h>
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
#include "tools/cli/metrics.h"

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
} run_opts;

static void path_in(char *buf, size_t cap, const char *dir, const char *name) { snprintf(buf, cap, "%s/%s", dir, name); }

/* Shows the run's global step; rate and ETA come from this session's steps (since `start`). */
static void progress(const fg_trainer *t, const fg_train_step_info *info, int64_t start, const run_opts *o,
                     double elapsed, double *last_log, bool tty) {
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

/* The checkpoint, and with it the run's record (metrics.csv, loss.png). */
static int save(fg_trainer *t, const cli_model *m, const char *out, const cli_metrics *metrics) {
  char path[4096];
  fg_err e;
  path_in(path, sizeof path, out, "checkpoint.safetensors");
  fg_status st = fg_trainer_save(t, path, m->spec_text, &e);
  if (st == FG_OK && metrics && cli_metrics_write(metrics, out, fg_trainer_unit(t), &e) != FG_OK)
    fprintf(stderr, "warning: no training record: %s\n", e.msg);
  return st == FG_OK ? EXIT_OK : cli_fail("train", st, e.msg);
}

/* A test evaluation during training (every eval_every steps), into the record. */
static int evaluate_now(fg_trainer *t, cli_metrics *metrics, bool tty) {
  fg_err e;
  double test;
  fg_status st = fg_trainer_evaluate(t, &test, &e);
  if (st != FG_OK) return cli_fail("train", st, e.msg);
  fprintf(stderr, "%sstep %lld  test %.4f %s\n", tty ? "\n" : "",
          (long long)fg_trainer_step_count(t), test, fg_trainer_unit(t));
  cli_metrics_test(metrics, fg_trainer_step_count(t), test);
  return EXIT_OK;
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
  if (fg_flow_log_prob_cond(m->flow, g, x, cli_context_input(m, g, 1), false, &logp, NULL) ==
      FG_OK) {
    path_in(path, sizeof path, out, "graph.dot");
    fg_dot_opts o = {
        .title = "log p(x), one sample", .outputs = &logp, .n_outputs = 1, .layers = true};
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

static int train_loop(fg_trainer *t, cli_model *m, const run_opts *o, cli_metrics *metrics) {
  bool tty = isatty(STDERR_FILENO);
  double t0 = now_s(), last_log = -1e9;
  int64_t start = fg_trainer_step_count(t), eval_every = m->spec->train.eval_every;
  fg_err e;
  while (!interrupted) {
    int64_t done = fg_trainer_step_count(t);
    if (o->steps && done >= o->steps) break;
    if (o->minutes && now_s() - t0 >= o->minutes * 60) break;
    fg_train_step_info info;
    double before = now_s();
    fg_status st = fg_trainer_step(t, &info, &e);
    if (st != FG_OK) {
      if (tty) fputc('\n', stderr);
      save(t, m, o->out, metrics);
      return cli_fail("train", st, e.msg);
    }
    cli_metrics_add(metrics, info.step, info.loss,
                    (double)fg_trainer_batch(t) / fmax(now_s() - before, 1e-9), info.lr);
    recompute_report(t, &info);
    progress(t, &info, start, o, now_s() - t0, &last_log, tty);
    if (eval_every && info.step % eval_every == 0 && fg_trainer_data_rows(t, true) > 0 &&
        evaluate_now(t, metrics, tty) != EXIT_OK)
      return EXIT_JOB_FAILED;
    if (o->checkpoint_every && info.step % o->checkpoint_every == 0 &&
        save(t, m, o->out, metrics) != EXIT_OK)
      return EXIT_IO;
  }
  if (tty) fputc('\n', stderr);
  printf("trained %lld steps in %.1f s%s\n", (long long)(fg_trainer_step_count(t) - start), now_s() - t0,
         interrupted ? " (interrupted: checkpoint saved, resume with --resume)" : "");
  return EXIT_OK;
}

/* samples.png (images: a grid, by class for a conditional model; 2-D points: a scatter plot)
 * and for 2-D data density.png, drawn with the EMA weights. */
static int pictures(fg_trainer *t, cli_model *m, const run_opts *o) {
  char path[4096];
  fg_err e;
  if (!m->discrete && !cli_is_2d(m)) return EXIT_OK;
  fg_trainer_use_ema(t);
  path_in(path, sizeof path, o->out, "samples.png");
  int64_t n = cli_is_2d(m) ? 2000 : cli_classes(m) ? 10 : 64;
  double temperature = m->discrete ? m->spec->train.temperature : 1.0;
  fg_status st = cli_write_samples(m, CLI_ALL_CLASSES, n, temperature,
                                   (uint64_t)m->spec->train.seed + 1, path, &e);
  if (st != FG_OK) return cli_fail("train", st, e.msg);
  printf("samples (temperature %.2f): %s\n", temperature, path);
  if (!cli_is_2d(m)) return EXIT_OK;
  path_in(path, sizeof path, o->out, "density.png");
  if ((st = cli_write_density(m, CLI_NO_CLASS, 200, path, &e)) != FG_OK)
    return cli_fail("train", st, e.msg);
  printf("density: %s\n", path);
  return EXIT_OK;
}

static int finish(fg_trainer *t, cli_model *m, const run_opts *o, cli_metrics *metrics) {
  int code = save(t, m, o->out, metrics);
  char path[4096];
  fg_err e;
  path_in(path, sizeof path, o->out, "checkpoint.safetensors");
  if (code == EXIT_OK) printf("checkpoint: %s\n", path);
  double test;
  if (code == EXIT_OK && fg_trainer_data_rows(t, true) > 0) {
    fg_status st = fg_trainer_evaluate(t, &test, &e);
    if (st != FG_OK) return cli_fail("train", st, e.msg);
    printf("test %s: %.4f\n", fg_trainer_unit(t), test);
    cli_metrics_test(metrics, fg_trainer_step_count(t), test);
  }
  if (code == EXIT_OK && cli_metrics_write(metrics, o->out, fg_trainer_unit(t), &e) == FG_OK)
    printf("record: %s/metrics.csv, %s/loss.png\n", o->out, o->out);
  if (code == EXIT_OK) code = pictures(t, m, o);
  if (code == EXIT_OK && o->dump) dump_graph(m, o->out);
  if (getenv("FG_PROFILE")) {
    char table[8192];
    printf("\nper-op profile of the training program:\n%s", fg_trainer_profile(t, table, sizeof table));
  }
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
  if (mkdir(o.out, 0777) != 0 && errno != EEXIST) return cli_fail("train", FG_E_IO, "cannot create the output directory");
  cli_model m;
  code = cli_model_from_spec(&m, "train", spec_path[0], argc, argv, o.limit);
  fg_trainer *t = NULL;
  fg_err e;
  if (code == EXIT_OK) {
    if (!o.steps && !o.minutes) o.steps = m.spec->train.steps, o.minutes = m.spec->train.minutes;
    if (!o.steps && !o.minutes) o.steps = 1000;
    if (cli_flag(argc, argv, "--recompute")) m.spec->train.recompute = true;
    fg_trainer_data d = {m.data.train, m.data.test, m.data.discrete, m.data.train_labels,
                         m.data.test_labels};
    fg_status st = fg_trainer_new(&t, m.flow, &m.spec->train, &d, o.threads, &e);
    if (st == FG_OK) st = cli_model_keep_preview(&m, &e); /* points for the 2-D pictures */
    if (st != FG_OK) code = cli_fail("train", st, e.msg);
    fg_data_free(&m.data); /* the trainer keeps its own (compact) copy */
  }
  cli_metrics metrics = {0};
  if (code == EXIT_OK && o.resume) {
    fg_status st = fg_trainer_load(t, o.resume, &e);
    if (st != FG_OK) code = cli_fail("train", st, e.msg);
    else printf("resumed from %s at step %lld\n", o.resume, (long long)fg_trainer_step_count(t));
    if (st == FG_OK) cli_metrics_resume(&metrics, o.out, fg_trainer_step_count(t));
  }
  if (code == EXIT_OK) {
    printf("%s: %lld parameters, %lld training samples of %lld dims, batch %lld\n", spec_path[0],
           (long long)fg_flow_num_scalars(m.flow), (long long)fg_trainer_data_rows(t, false), (long long)fg_flow_dims(m.flow),
           (long long)fg_trainer_batch(t));
    recompute_report(t, NULL);
    signal(SIGINT, on_interrupt);
    signal(SIGTERM, on_interrupt);
    code = train_loop(t, &m, &o, &metrics);
  }
  if (code == EXIT_OK) code = finish(t, &m, &o, &metrics);
  cli_metrics_free(&metrics);
  fg_trainer_free(t);
  cli_model_free(&m);
  return code;
}

const cli_command cli_train = {
    "train", "train a flow from a spec file (progress, checkpoints, test bits/dim, samples)",
    "usage: flowgrad train SPEC [--steps N] [--minutes M] [--out DIR] [--resume CHECKPOINT]\n"
    "                      [--threads N] [--limit N] [--checkpoint-every N] [--plugin lib.so] [--no-dump]\n"
    "                      [--recompute]\n\n"
    "Trains the model of SPEC (examples/*.flow) on its data.  Stops after --steps or --minutes\n"
    "(default: the spec's train settings), on Ctrl-C, or after too many non-finite steps in a\n"
    "row.  Writes DIR/checkpoint.safetensors (also every --checkpoint-every steps, atomically)\n"
    "with DIR/metrics.csv (step, loss, test loss when evaluated, samples/s, lr) and DIR/loss.png,\n"
    "then prints the test loss (bits/dim for images, nats for 2-D data; also every eval_every\n"
    "steps of the spec), writes DIR/samples.png (an image grid, one row per class for a\n"
    "class-conditional model; a scatter plot for 2-D data, and DIR/density.png) and DIR/graph.dot\n"
    "(+ graph.svg) of the log-prob graph.  --resume continues a run exactly (same batches, noise\n"
    "and updates) and its record.  --limit N keeps N training samples.\n"
    "--recompute (the spec's `recompute true`) keeps memory flat in depth: the backward pass\n"
    "rebuilds each layer's activations from its output through its inverse.\n",
    run_train};
