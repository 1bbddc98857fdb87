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
#include "ops/kernel_info.h"
#include "tools/cli/cli.h"
#include "tools/cli/metrics.h"

enum { CHECKPOINT_EVERY = 500 }; /* steps between checkpoints, by default */

/* The first Ctrl-C (or SIGTERM) asks to stop after the current step; a second one ends the
 * process at once: a checkpoint being written is replaced atomically, so the last one stays. */
static volatile sig_atomic_t interrupted;
static void on_interrupt(int sig) {
  (void)sig;
  if (interrupted) {
    static const char msg[] = "\nflowgrad train: interrupted again: stopping now\n";
    ssize_t ignored = write(STDERR_FILENO, msg, sizeof msg - 1);
    (void)ignored;
    _exit(EXIT_INTERRUPTED);
  }
  interrupted = 1;
}

static void catch_interrupts(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_interrupt;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
}

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

typedef struct run_opts {
  int64_t steps, checkpoint_every, limit, eval_limit;
  double minutes, t0; /* t0: when the command started; --minutes counts from there */
  const char *out, *resume;
  int threads;
  bool dump, tty; /* tty: progress redraws its line (rank 0 on a terminal) */
  fg_dist *dist;  /* the data-parallel job (one process without mpirun); rank 0 reports */
} run_opts;

static const cli_opt options[] = {
    {"--steps", CLI_INT, 0, 1e15},
    {"--minutes", CLI_NUM, 0, 1e9},
    {"--out", CLI_TEXT, 0, 0},
    {"--resume", CLI_TEXT, 0, 0},
    CLI_THREADS_OPT,
    {"--limit", CLI_INT, 0, 1e15},
    {"--eval-limit", CLI_INT, 0, 1e15},
    {"--checkpoint-every", CLI_INT, 0, 1e15},
    CLI_PLUGIN_OPT,
    {"--no-dump", CLI_FLAG, 0, 0},
    {"--recompute", CLI_FLAG, 0, 0},
    {NULL, CLI_FLAG, 0, 0},
};

/* ---- data-parallel jobs: every rank reaches these points, whatever happened to it ---- */

static bool reporter(const run_opts *o) { return fg_dist_rank(o->dist) == 0; }

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
      if (code == EXIT_OK && fg_dist_rank(d) == 0)
        fprintf(stderr, "flowgrad train: rank %d failed (exit code %d)\n", r, all[r]);
      code = all[r];
      break;
    }
  free(all);
  return code;
}

/* Whether any rank asks to stop (`done`, or a signal); every rank stops together, and a signal
 * one rank got counts as every rank's (`interrupted`). */
static fg_status agree_stop(fg_dist *d, bool done, bool *stop, fg_err *e) {
  uint32_t flags;
  fg_status st = fg_dist_or(d, (done ? 1u : 0u) | (interrupted ? 2u : 0u), &flags, e);
  *stop = st != FG_OK || flags != 0;
  if (flags & 2u) interrupted = 1;
  return st;
}

static void path_in(char *buf, size_t cap, const char *dir, const char *name) {
  snprintf(buf, cap, "%s/%s", dir, name);
}

static double deadline(const run_opts *o) { return o->minutes ? o->t0 + o->minutes * 60 : 0; }

/* Shows the run's global step; rate and ETA come from this session's steps (since `start`). */
static void progress(const fg_trainer *t, const fg_train_step_info *info, int64_t start,
                     const run_opts *o, double elapsed, double *last_log) {
  if (!reporter(o)) return;
  int64_t session = info->step - start;
  double per_s = (double)session * (double)fg_trainer_batch(t) / (elapsed > 0 ? elapsed : 1);
  double left = -1;
  if (o->steps) left = elapsed / (double)session * (double)(o->steps - info->step);
  if (o->minutes) {
    double by_time = deadline(o) - now_s();
    left = left < 0 || by_time < left ? by_time : left;
  }
  if (info->skipped)
    fprintf(stderr, "%sstep %lld skipped: non-finite loss or gradient, first at %s\n",
            o->tty ? "\n" : "", (long long)info->step, info->bad_layer);
  if (o->tty) {
    fprintf(stderr, "\r  step %6lld  loss %8.4f %s  %7.1f samples/s  ETA %3d:%02d ",
            (long long)info->step, info->loss, fg_trainer_unit(t), per_s,
            left > 0 ? (int)left / 60 : 0, left > 0 ? (int)left % 60 : 0);
    return;
  }
  if (elapsed - *last_log >= 10 || session == 1) {
    fprintf(stderr, "step %lld  loss %.4f %s  %.1f samples/s  elapsed %.0fs\n",
            (long long)info->step, info->loss, fg_trainer_unit(t), per_s, elapsed);
    *last_log = elapsed;
  }
}

/* The checkpoint, and with it the run's record (metrics.csv, loss.png).  Every rank of a job
 * calls it; rank 0 writes both. */
static int save(fg_trainer *t, const cli_model *m, const run_opts *o, const cli_metrics *metrics) {
  char path[4096];
  fg_err e;
  path_in(path, sizeof path, o->out, "checkpoint.safetensors");
  fg_status st = fg_trainer_save(t, path, m->spec_text, &e);
  if (st == FG_OK && metrics && reporter(o) &&
      cli_metrics_write(metrics, o->out, fg_trainer_unit(t), &e) != FG_OK)
    fprintf(stderr, "warning: no training record: %s\n", e.msg);
  return st == FG_OK ? EXIT_OK : cli_fail("train", st, e.msg);
}

/* A test evaluation during training (every eval_every steps), into the record. */
static int evaluate_now(fg_trainer *t, cli_metrics *metrics, const run_opts *o) {
  fg_err e;
  double test;
  fg_status st = fg_trainer_evaluate(t, &test, &e);
  if (st != FG_OK) return cli_fail("train", st, e.msg);
  if (reporter(o))
    fprintf(stderr, "%sstep %lld  test %.4f %s\n", o->tty ? "\n" : "",
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
    if (fg_dot_write(g, &o, FG_DOT_DOT, path, &e) == FG_OK)
      printf("graph (%d nodes): %s\n", fg_graph_node_count(g), path);
    if (fg_graph_node_count(g) <= 1500) { /* Graphviz layout grows fast with size */
      path_in(path, sizeof path, out, "graph.svg");
      if (fg_dot_write(g, &o, FG_DOT_SVG, path, &e) == FG_OK) printf("graph drawing: %s\n", path);
    }
  }
  fg_graph_free(g);
}

static void parse_opts(int argc, char **argv, run_opts *o) {
  memset(o, 0, sizeof *o);
  o->t0 = now_s();
  o->tty = isatty(STDERR_FILENO);
  o->out = cli_option(argc, argv, "--out") ? cli_option(argc, argv, "--out") : "run";
  o->resume = cli_option(argc, argv, "--resume");
  o->dump = !cli_flag(argc, argv, "--no-dump");
  o->steps = cli_int(argc, argv, "--steps", 0);
  o->minutes = cli_num(argc, argv, "--minutes", 0);
  o->threads = (int)cli_int(argc, argv, "--threads", 0);
  o->limit = cli_int(argc, argv, "--limit", 0);
  o->eval_limit = cli_int(argc, argv, "--eval-limit", 0);
  o->checkpoint_every = cli_int(argc, argv, "--checkpoint-every", CHECKPOINT_EVERY);
}

/* Recompute mode: how many layers rebuild their activations, the training program's planned
 * peak of intermediate values, and (after a round-trip check) which layers fell back. */
static void recompute_report(const fg_trainer *t, const fg_train_step_info *info) {
  const fg_recompute *rc = fg_trainer_recompute(t);
  if (!rc) return;
  if (!info) {
    printf(
        "recompute: %d of %d layers rebuild their activations in the backward pass; planned peak "
        "%.1f MiB\n",
        fg_recompute_num_recomputed(rc), fg_recompute_num_blocks(rc),
        (double)fg_trainer_program_stats(t)->arena_bytes / (1 << 20));
    return;
  }
  if (info->recompute_fallbacks == 0) return;
  fprintf(stderr,
          "\nstep %lld: %d layer(s) keep their activations from now on (round trip over "
          "recompute_tol):",
          (long long)info->step, info->recompute_fallbacks);
  for (int i = 0; i < fg_recompute_num_blocks(rc); i++)
    if (fg_recompute_block_mode(rc, i) == FG_BLOCK_STORED_ROUND_TRIP)
      fprintf(stderr, " %s (%.2g)", fg_recompute_block_name(rc, i),
              fg_recompute_block_error(rc, i));
  fprintf(stderr, "\n");
  recompute_report(t, NULL);
}

/* Rows the test evaluation will cover. */
static int64_t eval_rows(const fg_trainer *t, const run_opts *o) {
  int64_t n = fg_trainer_data_rows(t, true);
  return o->eval_limit && o->eval_limit < n ? o->eval_limit : n;
}

/* With --minutes, the time the evaluation after training is expected to take, from this
 * session's step time (a log-prob pass costs about a third of a training step; half is
 * assumed, plus a few seconds for compiling and the samples), at most half the budget. */
static double time_to_finish(const fg_trainer *t, const run_opts *o, int64_t session_steps,
                             double train_s) {
  if (!o->minutes || session_steps == 0) return 0;
  double per_row = train_s / (double)session_steps / (double)fg_trainer_batch(t);
  double est = 0.5 * per_row * (double)eval_rows(t, o) + 3.0;
  return est < o->minutes * 30 ? est : o->minutes * 30;
}

/* With several ranks: the share of the step spent summing over them (rank 0's view). */
static void dist_report(const run_opts *o, const fg_dist_stats *before, int64_t steps,
                        double seconds) {
  fg_dist_stats now = fg_dist_get_stats(o->dist);
  double sum_s = now.sum_seconds - before->sum_seconds;
  if (fg_dist_size(o->dist) == 1 || steps == 0) return;
  printf("data-parallel: %d ranks; summing over them took %.2f ms per step (%.1f%% of the step), "
         "%.0f values per step\n", fg_dist_size(o->dist), 1e3 * sum_s / (double)steps,
         100 * sum_s / seconds, (double)(now.sum_values - before->sum_values) / (double)steps);
}

/* In a job every rank takes the same steps: they agree before each one whether to stop (the
 * --steps or --minutes end as any rank sees it, or a signal any rank got). */
static int train_loop(fg_trainer *t, cli_model *m, const run_opts *o, cli_metrics *metrics) {
  double t1 = now_s(), last_log = -1e9;
  int64_t start = fg_trainer_step_count(t), eval_every = m->spec->train.eval_every;
  fg_dist_stats dist_before = fg_dist_get_stats(o->dist);
  fg_err e;
  for (;;) {
    int64_t done = fg_trainer_step_count(t);
    bool stop, finished = interrupted || (o->steps && done >= o->steps) ||
        (o->minutes && now_s() + time_to_finish(t, o, done - start, now_s() - t1) >= deadline(o));
    fg_status st = agree_stop(o->dist, finished, &stop, &e);
    if (st != FG_OK) return cli_fail("train", st, e.msg);
    if (stop) break;
    fg_train_step_info info;
    double before = now_s();
    st = fg_trainer_step(t, &info, &e);
    if (st != FG_OK) {
      if (o->tty) fputc('\n', stderr);
      if (!fg_dist_broken(o->dist)) save(t, m, o, metrics);
      return cli_fail("train", st, e.msg);
    }
    cli_metrics_add(metrics, info.step, info.loss,
                    (double)fg_trainer_batch(t) / fmax(now_s() - before, 1e-9), info.lr);
    if (reporter(o)) recompute_report(t, &info);
    progress(t, &info, start, o, now_s() - t1, &last_log);
    if (eval_every && info.step % eval_every == 0 && fg_trainer_data_rows(t, true) > 0 &&
        evaluate_now(t, metrics, o) != EXIT_OK)
      return EXIT_JOB_FAILED;
    if (o->checkpoint_every && info.step % o->checkpoint_every == 0 &&
        save(t, m, o, metrics) != EXIT_OK)
      return EXIT_IO;
  }
  if (o->tty) fputc('\n', stderr);
  int64_t session = fg_trainer_step_count(t) - start;
  printf("trained %lld steps in %.1f s%s\n", (long long)session, now_s() - t1,
         interrupted ? " (interrupted)" : "");
  dist_report(o, &dist_before, session, now_s() - t1);
  return EXIT_OK;
}

/* The evaluation's progress, and where it stops: on Ctrl-C, or at --minutes' end. */
typedef struct eval_watch {
  const run_opts *o;
  double t0, last_log;
  const char *unit;
} eval_watch;

static bool eval_progress(void *ud, int64_t done, int64_t total) {
  eval_watch *w = ud;
  double now = now_s(), rate = (double)done / (now - w->t0 > 0 ? now - w->t0 : 1);
  if (!reporter(w->o))
    ; /* rank 0 shows the job's progress */
  else if (w->o->tty)
    fprintf(stderr, "\r  evaluating %lld/%lld test samples  %7.1f samples/s ", (long long)done,
            (long long)total, rate);
  else if (now - w->last_log >= 10 || done == total) {
    fprintf(stderr, "evaluating: %lld/%lld test samples, %.1f samples/s\n", (long long)done,
            (long long)total, rate);
    w->last_log = now;
  }
  return !interrupted && !(w->o->minutes && now >= deadline(w->o));
}

static int evaluate(fg_trainer *t, const run_opts *o, cli_metrics *metrics) {
  fg_err e;
  eval_watch w = {o, now_s(), now_s(), fg_trainer_unit(t)};
  fg_eval_opts eo = {.max_rows = o->eval_limit, .progress = eval_progress, .ud = &w};
  double test;
  int64_t rows, all = fg_trainer_data_rows(t, true);
  /* in a job the ranks evaluate their parts and stop together when any of them says stop */
  fg_status st = fg_trainer_evaluate_opts(t, &eo, &test, &rows, &e);
  if (o->tty) fputc('\n', stderr);
  if (st == FG_E_ABORTED) {
    printf("test %s: not evaluated (%s)\n", fg_trainer_unit(t),
           interrupted ? "interrupted" : "no time left");
    return EXIT_OK;
  }
  if (st != FG_OK) return cli_fail("train", st, e.msg);
  cli_metrics_test(metrics, fg_trainer_step_count(t), test);
  if (rows == all)
    printf("test %s: %.4f\n", fg_trainer_unit(t), test);
  else
    printf("test %s: %.4f over the first %lld of %lld test samples (%s)\n", fg_trainer_unit(t),
           test, (long long)rows, (long long)all,
           interrupted                 ? "interrupted"
               : rows == o->eval_limit ? "--eval-limit"
                                       : "the --minutes limit");
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

/* Saving and evaluating involve every rank; the record, samples and drawings are rank 0's.  A
 * run stopped by a signal only saves (mpirun kills a job's ranks a second after passing a
 * signal on). */
static int finish(fg_trainer *t, cli_model *m, const run_opts *o, int64_t session_steps,
                  cli_metrics *metrics) {
  char path[4096];
  path_in(path, sizeof path, o->out, "checkpoint.safetensors");
  /* what every rank does next depends on whether any rank was interrupted, as of now */
  fg_err e;
  bool stop;
  fg_status st = agree_stop(o->dist, false, &stop, &e);
  if (st != FG_OK) return cli_fail("train", st, e.msg);
  bool stopped = interrupted;
  /* nothing new to save after an interrupt before the first step: the last checkpoint stays */
  bool nothing_new = stopped && session_steps == 0, report = reporter(o);
  int code = nothing_new ? EXIT_OK : save(t, m, o, metrics);
  if (code == EXIT_OK && !nothing_new) printf("checkpoint: %s\n", path);
  if (code == EXIT_OK && !stopped && fg_trainer_data_rows(t, true) > 0)
    code = evaluate(t, o, metrics);
  if (code == EXIT_OK && !nothing_new && report &&
      cli_metrics_write(metrics, o->out, fg_trainer_unit(t), &e) == FG_OK)
    printf("record: %s/metrics.csv, %s/loss.png\n", o->out, o->out);
  bool time_left = !o->minutes || now_s() < deadline(o);
  if (code == EXIT_OK && !interrupted && time_left && report) code = pictures(t, m, o);
  if (code == EXIT_OK && !interrupted && time_left && o->dump && report) dump_graph(m, o->out);
  if (getenv("FG_PROFILE") && report) {
    char table[8192];
    printf("\nper-op profile of the training program:\n%s",
           fg_trainer_profile(t, table, sizeof table));
  }
  if (code == EXIT_OK && interrupted) {
    printf("interrupted: %s; continue with --resume %s\n",
           session_steps ? "checkpoint saved" : "no step taken", path);
    return EXIT_INTERRUPTED;
  }
  return code;
}

/* What a resume must match (the data and how much of it) and the plugins the spec needs. */
static int record_run(fg_trainer *t, const cli_model *m, const run_opts *o) {
  char limit[32];
  snprintf(limit, sizeof limit, "%lld", (long long)o->limit);
  fg_err e;
  fg_status st = fg_trainer_set_info(t, "data", m->spec->data, true, &e);
  if (st == FG_OK) st = fg_trainer_set_info(t, "limit", limit, true, &e);
  if (st == FG_OK && m->spec->plugins)
    st = fg_trainer_set_info(t, "plugins", m->spec->plugins, false, &e);
  return st == FG_OK ? EXIT_OK : cli_fail("train", st, e.msg);
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
  if (meta.ranks != fg_dist_size(o->dist) && reporter(o))
    fprintf(stderr, "warning: %s was written by a job of %lld process(es), this one has %d: the "
            "batches and noise are the same, the results equal up to rounding but not bit for "
            "bit\n", o->resume, (long long)meta.ranks, fg_dist_size(o->dist));
  fg_checkpoint_meta_free(&meta);
  return EXIT_OK;
}

/* Every rank makes its trainer (the same, over its shard of each batch); they agree on the
 * outcome of each part. */
static int make_trainer(fg_trainer **t, cli_model *m, const run_opts *o, bool recompute) {
  fg_err e;
  if (recompute) m->spec->train.recompute = true;
  fg_trainer_data d = {m->data.train, m->data.test, m->data.discrete, m->data.train_labels,
                       m->data.test_labels};
  fg_status st = fg_trainer_new_dist(t, m->flow, &m->spec->train, &d, o->threads, o->dist, &e);
  if (st == FG_OK) st = cli_model_keep_preview(m, &e); /* points for the 2-D pictures */
  fg_data_free(&m->data); /* the trainer keeps its own (compact) copy */
  int code = st == FG_OK ? record_run(*t, m, o) : cli_fail("train", st, e.msg);
  code = agree(o->dist, code);
  /* every rank agrees here, with --resume or not (an MPMD job may give it to some ranks) */
  if (code == EXIT_OK) code = agree(o->dist, o->resume ? resume(*t, o) : EXIT_OK);
  return code;
}

/* One rank's share of `flowgrad train` (the whole of it for one process). */
static int train_job(int argc, char **argv, const char *spec_path, run_opts *o) {
  cli_model m = {0};
  int code = EXIT_OK;
  if (mkdir(o->out, 0777) != 0 && errno != EEXIST) {
    fprintf(stderr, "flowgrad train: cannot create the output directory %s: %s\n", o->out,
            strerror(errno));
    code = EXIT_IO;
  }
  if (code == EXIT_OK) code = cli_model_from_spec(&m, "train", spec_path, argc, argv, o->limit);
  m.deterministic = fg_dist_size(o->dist) > 1; /* as the trainer's programs are in a job */
  if (code == EXIT_OK) code = cli_check_batch(&m, "train");
  code = agree(o->dist, code);
  fg_trainer *t = NULL;
  if (code == EXIT_OK) {
    if (!o->steps && !o->minutes) {
      o->steps = m.spec->train.steps;
      o->minutes = m.spec->train.minutes;
    }
    if (!o->steps && !o->minutes) o->steps = 1000;
    m.spec->train.steps = o->steps; /* the run's length: where a cosine schedule ends by default */
    code = make_trainer(&t, &m, o, cli_flag(argc, argv, "--recompute"));
  }
  cli_metrics metrics = {0};
  if (code == EXIT_OK && o->resume) cli_metrics_resume(&metrics, o->out, fg_trainer_step_count(t));
  int64_t start = t ? fg_trainer_step_count(t) : 0;
  if (code == EXIT_OK) {
    printf("%s: %lld parameters, %lld training samples of %lld dims, batch %lld\n", spec_path,
           (long long)fg_flow_num_scalars(m.flow), (long long)fg_trainer_data_rows(t, false),
           (long long)fg_flow_dims(m.flow), (long long)fg_trainer_batch(t));
    char libs[256];
    printf("kernels: %s\n", fg_kernel_libraries(libs, sizeof libs));
    if (fg_dist_size(o->dist) > 1)
      printf("data-parallel: %d ranks of %lld samples each per batch\n", fg_dist_size(o->dist),
             (long long)(fg_trainer_batch(t) / fg_dist_size(o->dist)));
    recompute_report(t, NULL);
    code = train_loop(t, &m, o, &metrics);
  }
  if (code == EXIT_OK)
    code = finish(t, &m, o, fg_trainer_step_count(t) - start, &metrics);
  else if (interrupted)
    code = EXIT_INTERRUPTED;
  if (!fg_dist_broken(o->dist)) code = agree(o->dist, code);
  cli_metrics_free(&metrics);
  fg_trainer_free(t);
  cli_model_free(&m);
  return code;
}

static int run_train(int argc, char **argv) {
  const char *spec_path[2];
  int n_pos;
  int code = cli_parse(argc, argv, "train", options, spec_path, 2, &n_pos);
  if (code != EXIT_OK) return code;
  if (n_pos != 1) {
    fprintf(stderr, "usage: flowgrad train SPEC [options] (flowgrad train --help)\n");
    return EXIT_USAGE;
  }
  catch_interrupts();
  run_opts o;
  parse_opts(argc, argv, &o);
  fg_err e;
  fg_status st = fg_dist_new(&o.dist, &e);
  if (st != FG_OK) return cli_fail("train", st, e.msg);
  /* under mpirun the other ranks work silently: rank 0 speaks for the job */
  o.tty = o.tty && reporter(&o);
  if (!reporter(&o) && !freopen("/dev/null", "w", stdout)) code = EXIT_IO;
  code = agree(o.dist, code);
  if (code == EXIT_OK) code = train_job(argc, argv, spec_path[0], &o);
  if (fg_dist_broken(o.dist)) fg_dist_abort(o.dist, code); /* a rank is stuck in an exchange */
  fg_dist_free(o.dist);
  return code;
}

const cli_command cli_train = {
    "train", "train a flow from a spec file (progress, checkpoints, test bits/dim, samples)",
    "usage: flowgrad train SPEC [--steps N] [--minutes M] [--out DIR] [--resume CHECKPOINT]\n"
    "                      [--threads N] [--limit N] [--eval-limit N] [--checkpoint-every N]\n"
    "                      [--plugin lib.so]... [--no-dump] [--recompute]\n\n"
    "Trains the model of SPEC (examples/*.flow) on its data.  Stops after --steps or --minutes\n"
    "(default: the spec's train settings), on Ctrl-C, or after too many non-finite steps in a\n"
    "row.  Writes DIR/checkpoint.safetensors every --checkpoint-every steps (default 500; 0: only\n"
    "at the end) and at the end, atomically, with DIR/metrics.csv (step, loss, test loss when\n"
    "evaluated, samples/s, lr) and DIR/loss.png; then prints the test loss (bits/dim for images,\n"
    "nats for 2-D data; also every eval_every steps of the spec), writes DIR/samples.png (an "
    "image\n"
    "grid, one row per class for a class-conditional model; a scatter plot for 2-D data, and\n"
    "DIR/density.png) and DIR/graph.dot (+ graph.svg) of the log-prob graph.\n"
    "  --minutes M      bounds the whole command's wall time, test evaluation included: training\n"
    "                   stops early enough to evaluate, and an evaluation still running at the\n"
    "                   limit stops there (the loss is then over the samples done, and says so)\n"
    "  --eval-limit N   evaluate on the first N test samples (default: all)\n"
    "  --resume CKPT    continue a run exactly (same batches, noise and updates) and its record;\n"
    "                   refused when the data source, --limit, seed, n_bits, lr or batch differ\n"
    "  --limit N        keep N training samples\n"
    "  --plugin lib.so  load a plugin's bijector types (its path: ./lib.so, not lib.so)\n"
    "  --recompute      (the spec's `recompute true`) keeps memory flat in depth: the backward\n"
    "                   pass rebuilds each layer's activations from its output via its inverse\n"
    "Ctrl-C stops after the current step and saves the checkpoint (exit 130); a second Ctrl-C\n"
    "stops at once, the last checkpoint intact.\n\n"
    "Under `mpirun -np N` (a build with MPI) the N processes train one model together, each on\n"
    "its share of every batch (the batch must be a multiple of N); rank 0 prints and writes.\n",
    run_train};
