/* bench_dist: the training step of a Glow (flows/models.h, as bench_flows builds it) in a
 * data-parallel job, one JSON line from rank 0.  Compare one process with N ranks on the same
 * global batch:
 *
 *   FG_THREADS=2 build/tools/bench_dist                       # 1 rank x 2 threads
 *   mpirun -np 2 -x FG_THREADS=1 build/tools/bench_dist       # 2 ranks x 1 thread
 *
 * Options: --K 8 --L 2 --hidden 128 --batch 64 (global) --warmup 3 --reps 20.
 * Each rank trains with fg_trainer_new_dist on the Fashion-MNIST training images (Adam, lr
 * 1e-3).  Reported (rank 0's clock; every step ends with the exchanges, so the ranks keep
 * step): the median step time and the images per second it gives, the median time of the
 * gradient sum within a step ("sum_ms", which begins once every rank has sent its loss, so it
 * is the exchange itself, not waiting for the slowest rank) and its share of the step, then the
 * sum alone: the median of `reps` sums of the same number of values outside training
 * ("sum_alone_ms").  Also the parameter count and bytes per sum, the load average when the
 * run began and the CPU model, since the machine may be shared. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "flows/models.h"
#include "flows/train/dist.h"
#include "flows/train/trainer.h"
#include "frontends/data/fashion_mnist.h"

enum { MAX_REPS = 1000 };

typedef struct opts {
  int K, L, hidden, batch, warmup, reps;
} opts;

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* The first line of /proc/loadavg and the CPU's model name, for the record. */
static void machine(char *load, size_t load_cap, char *cpu, size_t cpu_cap) {
  snprintf(load, load_cap, "?");
  snprintf(cpu, cpu_cap, "?");
  FILE *f = fopen("/proc/loadavg", "r");
  if (f && fgets(load, (int)load_cap, f)) load[strcspn(load, "\n")] = '\0';
  if (f) fclose(f);
  char line[256];
  if (!(f = fopen("/proc/cpuinfo", "r"))) return;
  while (fgets(line, sizeof line, f))
    if (!strncmp(line, "model name", 10) && strchr(line, ':')) {
      snprintf(cpu, cpu_cap, "%s", strchr(line, ':') + 2);
      cpu[strcspn(cpu, "\n")] = '\0';
      break;
    }
  fclose(f);
}

static int parse_opts(int argc, char **argv, opts *o) {
  *o = (opts){.K = 8, .L = 2, .hidden = 128, .batch = 64, .warmup = 3, .reps = 20};
  for (int i = 1; i + 1 < argc; i += 2) {
    struct { const char *name; int *dst;
    } ints[] = {{"--K", &o->K},         {"--L", &o->L},           {"--hidden", &o->hidden},
                {"--batch", &o->batch}, {"--warmup", &o->warmup}, {"--reps", &o->reps}};
    bool known = false;
    for (size_t j = 0; j < sizeof ints / sizeof *ints && !known; j++)
      if (!strcmp(argv[i], ints[j].name)) *ints[j].dst = atoi(argv[i + 1]), known = true;
    if (!known) return 2;
  }
  bool ok = argc % 2 == 1 && o->K > 0 && o->L > 0 && o->hidden > 0 && o->batch > 0 &&
            o->warmup >= 0 && o->reps > 0 && o->reps <= MAX_REPS;
  return ok ? 0 : 2;
}

typedef struct run {
  double step[MAX_REPS], sum[MAX_REPS], alone[MAX_REPS];
} run;

/* warmup + reps training steps, then reps sums of the gradient's size on their own. */
static fg_status measure(fg_trainer *t, fg_dist *d, const opts *o, int64_t n_params, run *r,
                         fg_err *e) {
  fg_status st = FG_OK;
  for (int i = 0; st == FG_OK && i < o->warmup + 1; i++)
    st = fg_trainer_step(t, NULL, e); /* + data init */
  for (int i = 0; st == FG_OK && i < o->reps; i++) {
    double s0 = fg_dist_get_stats(d).sum_seconds, t0 = now_s();
    st = fg_trainer_step(t, NULL, e);
    r->step[i] = now_s() - t0, r->sum[i] = fg_dist_get_stats(d).sum_seconds - s0;
  }
  float *v = st == FG_OK ? calloc((size_t)n_params, sizeof *v) : NULL;
  if (st == FG_OK && !v) st = fg_err_set(e, FG_E_NOMEM, "out of memory");
  for (int i = 0; st == FG_OK && i < o->reps; i++) {
    double t0 = now_s();
    st = fg_dist_sum(d, v, n_params, FG_F32, e);
    r->alone[i] = now_s() - t0;
  }
  free(v);
  return st;
}

static void report(const opts *o, fg_dist *d, int64_t n_params, run *r, const char *load,
                   const char *cpu) {
  double step = median(r->step, o->reps), sum = median(r->sum, o->reps),
         alone = median(r->alone, o->reps);
  const char *threads = getenv("FG_THREADS");
  printf(
      "{\"model\": \"glow\", \"K\": %d, \"L\": %d, \"hidden\": %d, \"batch\": %d, \"ranks\": %d, "
      "\"threads_per_rank\": %s, \"params\": %lld, \"sum_bytes\": %lld, \"step_ms\": %.2f, "
      "\"img_per_s\": %.1f, \"sum_ms\": %.3f, \"sum_share\": %.4f, \"sum_alone_ms\": %.3f, "
      "\"reps\": %d, \"loadavg_at_start\": \"%s\", \"cpu\": \"%s\"}\n",
      o->K, o->L, o->hidden, o->batch, fg_dist_size(d), threads ? threads : "\"cores\"",
      (long long)n_params, (long long)n_params * 4, 1e3 * step, o->batch / step, 1e3 * sum,
      sum / step, 1e3 * alone, o->reps, load, cpu);
}

int main(int argc, char **argv) {
  opts o;
  if (parse_opts(argc, argv, &o)) {
    fprintf(stderr,
            "usage: bench_dist [--K n] [--L n] [--hidden n] [--batch n] [--warmup n] [--reps n]\n");
    return 2;
  }
  char load[128], cpu[128];
  machine(load, sizeof load, cpu, sizeof cpu);
  fg_err e;
  fg_dist *d = NULL;
  fg_flow *flow = NULL;
  fg_tensor *images = NULL;
  fg_trainer *t = NULL;
  fg_status st = fg_dist_new(&d, &e);
  fg_model_opts m = {.event = {3, {1, 28, 28}}, .dtype = FG_F32};
  fg_glow_config c = fg_glow_defaults();
  c.levels = o.L, c.steps = o.K, c.hidden = o.hidden, c.learn_top = false;
  if (st == FG_OK) st = fg_glow_new(&flow, NULL, &m, &c, &e);
  if (st == FG_OK) st = fg_dataset_fashion_mnist_load(&images, NULL, "train", &e);
  fg_train_settings s = fg_train_defaults();
  s.batch = o.batch;
  fg_trainer_data data = {.train = images, .discrete = true};
  if (st == FG_OK) st = fg_trainer_new_dist(&t, flow, &s, &data, 0, d, &e);
  fg_tensor_free(images);
  run *r = calloc(1, sizeof *r);
  if (st == FG_OK && !r) st = fg_err_set(&e, FG_E_NOMEM, "out of memory");
  st = fg_dist_agree(d, st, &e);
  int64_t n_params = flow ? fg_flow_num_scalars(flow) : 0;
  if (st == FG_OK) st = measure(t, d, &o, n_params, r, &e);
  if (st == FG_OK && fg_dist_rank(d) == 0) report(&o, d, n_params, r, load, cpu);
  if (st != FG_OK) fprintf(stderr, "bench_dist (rank %d): %s\n", fg_dist_rank(d), e.msg);
  free(r);
  fg_trainer_free(t);
  fg_flow_free(flow);
  if (st != FG_OK && fg_dist_size(d) > 1) fg_dist_abort(d, 1); /* the others may be waiting */
  fg_dist_free(d);
  return st == FG_OK ? 0 : 1;
}
