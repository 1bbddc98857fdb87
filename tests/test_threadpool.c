#include <criterion/criterion.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/runtime/program_internal.h"
#include "core/runtime/threadpool.h"
#include "ops/ops.h"

/* ---- helpers ---- */

typedef struct count_ctx {
  _Atomic int *runs; /* runs[part] */
  int n_parts;
  _Atomic int bad_n_parts; /* calls that saw another n_parts */
} count_ctx;

static void count_task(void *ctx_, int part, int n_parts) {
  count_ctx *c = ctx_;
  if (n_parts != c->n_parts || part < 0 || part >= n_parts) {
    atomic_fetch_add(&c->bad_n_parts, 1);
    return;
  }
  atomic_fetch_add_explicit(&c->runs[part], 1, memory_order_relaxed);
}

/* Runs `jobs` jobs of n_parts parts each and checks that every part ran exactly once. */
static void check_each_part_once(fg_pool *p, int n_parts, int jobs) {
  _Atomic int runs[1024];
  cr_assert(n_parts <= 1024);
  count_ctx c = {.runs = runs, .n_parts = n_parts};
  atomic_init(&c.bad_n_parts, 0);
  for (int j = 0; j < jobs; j++) {
    for (int i = 0; i < n_parts; i++) atomic_init(&runs[i], 0);
    fg_pool_run(p, count_task, &c, n_parts);
    cr_assert_eq(atomic_load(&c.bad_n_parts), 0, "a part saw the wrong n_parts");
    for (int i = 0; i < n_parts; i++)
      cr_assert_eq(atomic_load(&runs[i]), 1, "pool of %d, %d parts, job %d: part %d ran %d times",
                   fg_pool_size(p), n_parts, j, i, atomic_load(&runs[i]));
  }
}

static fg_pool *new_pool(int n_threads) {
  fg_pool *p;
  fg_err e = {0};
  cr_assert_eq(fg_pool_new(&p, n_threads, &e), FG_OK, "%s", e.msg);
  return p;
}

static double cpu_seconds(void) {
  struct timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

static double wall_seconds(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

static void sleep_ms(int ms) {
  struct timespec t = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
  while (nanosleep(&t, &t) != 0) {
  }
}

/* ---- lifetime ---- */

Test(threadpool, sizes) {
  int sizes[] = {1, 2, 4};
  for (int i = 0; i < 3; i++) {
    fg_pool *p = new_pool(sizes[i]);
    cr_assert_eq(fg_pool_size(p), sizes[i]);
    fg_pool_free(p);
  }
  fg_pool *p = new_pool(0);
  long cores = sysconf(_SC_NPROCESSORS_ONLN);
  cr_assert_eq(fg_pool_size(p), cores < 1 ? 1 : (int)cores, "0 means the online cores");
  fg_pool_free(p);
  p = new_pool(-3);
  cr_assert_geq(fg_pool_size(p), 1);
  fg_pool_free(p);
  cr_assert_eq(fg_pool_size(NULL), 1);
  fg_pool_free(NULL);
}

Test(threadpool, too_many_threads_is_an_error) {
  fg_pool *p = (fg_pool *)1;
  fg_err e = {0};
  cr_assert_eq(fg_pool_new(&p, FG_POOL_MAX_THREADS + 1, &e), FG_E_MISUSE);
  cr_assert_null(p);
  cr_assert_eq(e.status, FG_E_MISUSE);
  cr_assert(strstr(e.msg, "threads"), "message: %s", e.msg);
}

Test(threadpool, create_and_free_repeatedly) {
  for (int i = 0; i < 30; i++) {
    fg_pool *p = new_pool(1 + i % 4);
    if (i % 3 == 0) check_each_part_once(p, 7, 2);
    if (i % 5 == 0) sleep_ms(1); /* free with the workers asleep, not only spinning */
    fg_pool_free(p);
  }
}

/* ---- every part exactly once ---- */

Test(threadpool, every_part_runs_once) {
  int sizes[] = {1, 2, 3, 4};
  int parts[] = {0, 1, 2, 3, 4, 5, 7, 8, 16, 17, 64, 1000};
  for (int s = 0; s < 4; s++) {
    fg_pool *p = new_pool(sizes[s]);
    for (size_t k = 0; k < sizeof parts / sizeof *parts; k++)
      check_each_part_once(p, parts[k], 50);
    fg_pool_free(p);
  }
}

Test(threadpool, null_pool_runs_inline) {
  check_each_part_once(NULL, 0, 1);
  check_each_part_once(NULL, 1, 3);
  check_each_part_once(NULL, 9, 3);
}

Test(threadpool, wakes_sleeping_workers) {
  fg_pool *p = new_pool(4);
  for (int j = 0; j < 6; j++) {
    sleep_ms(2); /* well past the spin: every worker is blocked */
    check_each_part_once(p, j % 2 ? 2 : 12, 1);
  }
  fg_pool_free(p);
}

/* Parts slower than the spin, so the caller blocks waiting for the workers' last parts. */
typedef struct slow_ctx {
  _Atomic int done;
  int stamp[4];
} slow_ctx;

static void slow_task(void *ctx_, int part, int n_parts) {
  (void)n_parts;
  slow_ctx *c = ctx_;
  sleep_ms(3);
  c->stamp[part] = part + 100; /* plain write: visible to the caller after fg_pool_run */
  atomic_fetch_add(&c->done, 1);
}

Test(threadpool, caller_waits_for_slow_parts) {
  fg_pool *p = new_pool(4);
  for (int j = 0; j < 3; j++) {
    slow_ctx c = {0};
    fg_pool_run(p, slow_task, &c, 4);
    cr_assert_eq(atomic_load(&c.done), 4);
    for (int i = 0; i < 4; i++) cr_assert_eq(c.stamp[i], i + 100);
  }
  fg_pool_free(p);
}

/* Each of the two parts waits (up to 2 s) to see the other one started: they can only both
 * see it when two threads run them at once, so this proves the workers take part. */
typedef struct meet_ctx {
  _Atomic int started;
  _Atomic int met;
} meet_ctx;

static void meet_task(void *ctx_, int part, int n_parts) {
  (void)part, (void)n_parts;
  meet_ctx *c = ctx_;
  atomic_fetch_add(&c->started, 1);
  double deadline = wall_seconds() + 2.0;
  while (atomic_load(&c->started) < 2 && wall_seconds() < deadline) {
  }
  if (atomic_load(&c->started) == 2) atomic_fetch_add(&c->met, 1);
}

Test(threadpool, parts_run_concurrently) {
  fg_pool *p = new_pool(2);
  for (int j = 0; j < 3; j++) {
    if (j == 2) sleep_ms(2); /* once more with the worker asleep */
    meet_ctx c;
    atomic_init(&c.started, 0);
    atomic_init(&c.met, 0);
    fg_pool_run(p, meet_task, &c, 2);
    cr_assert_eq(atomic_load(&c.met), 2, "job %d: the two parts did not overlap", j);
  }
  fg_pool_free(p);
}

/* ---- results independent of the thread count ---- */

#define N_VALUES 100003

typedef struct sum_ctx {
  const float *x;
  float *y;          /* y[i] = f(x[i]): disjoint writes */
  double *partials;  /* one per part, combined in part order */
} sum_ctx;

static void sum_task(void *ctx_, int part, int n_parts) {
  sum_ctx *c = ctx_;
  int64_t b, e;
  fg_pool_range(N_VALUES, part, n_parts, &b, &e);
  double s = 0;
  for (int64_t i = b; i < e; i++) {
    c->y[i] = c->x[i] * c->x[i] + 0.5f * c->x[i];
    s += (double)c->x[i] / (double)(i + 1);
  }
  c->partials[part] = s;
}

static double run_sum(fg_pool *p, const float *x, float *y) {
  double partials[FG_POOL_MAX_FIXED_PARTS];
  int n_parts = fg_pool_parts_fixed(N_VALUES, 1000);
  sum_ctx c = {x, y, partials};
  fg_pool_run(p, sum_task, &c, n_parts);
  double total = 0;
  for (int i = 0; i < n_parts; i++) total += partials[i];
  return total;
}

Test(threadpool, results_independent_of_thread_count) {
  static float x[N_VALUES], y_ref[N_VALUES], y[N_VALUES];
  uint32_t state = 12345;
  for (int i = 0; i < N_VALUES; i++) {
    state = state * 1664525u + 1013904223u;
    x[i] = (float)(state >> 8) / (float)(1 << 24) - 0.5f;
  }
  double ref = run_sum(NULL, x, y_ref);
  int sizes[] = {1, 2, 3, 4};
  for (int s = 0; s < 4; s++) {
    fg_pool *p = new_pool(sizes[s]);
    for (int rep = 0; rep < 5; rep++) {
      memset(y, 0, sizeof y);
      double got = run_sum(p, x, y);
      cr_assert(memcmp(&got, &ref, sizeof got) == 0, "%d threads: sum %.17g vs %.17g",
                sizes[s], got, ref);
      cr_assert(memcmp(y, y_ref, sizeof y) == 0, "%d threads: elementwise output differs",
                sizes[s]);
    }
    fg_pool_free(p);
  }
}

/* How the executor splits a step (fg__program_parts_for): a cheap elementwise op of 25,088
 * elements (Glow's [64, 2, 14, 14]) stays one part, the same size of an op that calls libm per
 * element (exp, log-sigmoid, tanh) is split, and the split is the same in any process: it
 * depends on the shapes alone. */
Test(threadpool, elementwise_ops_calling_libm_split_at_fewer_elements) {
  fg_graph *g;
  cr_assert_eq(fg_graph_new(&g, NULL), FG_OK);
  fg_node x = fg_input(g, "x", FG_F32, fg_shape4(64, 2, 14, 14));
  fg_node cheap[] = {fg_relu(g, x), fg_square(g, x), fg_neg(g, x)};
  fg_node costly[] = {fg_exp(g, x), fg_logsigmoid(g, x), fg_tanh(g, x), fg_sigmoid(g, x)};
  for (size_t i = 0; i < sizeof cheap / sizeof *cheap; i++)
    cr_expect_eq(fg__program_parts_for(g, cheap[i], 8), 1, "%s",
                 fg_op_get(fg_node_op(g, cheap[i]))->name);
  for (size_t i = 0; i < sizeof costly / sizeof *costly; i++)
    cr_expect_geq(fg__program_parts_for(g, costly[i], 8), 4, "%s",
                  fg_op_get(fg_node_op(g, costly[i]))->name);
  fg_graph_free(g);
}

/* The same for a fused group, decided when the program is compiled: a group with a member that
 * calls libm splits at fewer elements than one of cheap members. */
static int group_parts(bool costly) {
  fg_graph *g;
  cr_assert_eq(fg_graph_new(&g, NULL), FG_OK);
  fg_node x = fg_input(g, "x", FG_F32, fg_shape4(64, 2, 14, 14));
  fg_node y = fg_neg(g, costly ? fg_exp(g, x) : fg_relu(g, x));
  fg_program *p;
  cr_assert_eq(fg_program_new(&p, g, 1, &y, NULL), FG_OK);
  int parts = -1;
  for (int32_t s = 0; s < p->n_steps; s++)
    if (p->fusion.group_of[p->steps[s].node] >= 0) parts = p->step_parts[s];
  fg_program_free(p);
  fg_graph_free(g);
  return parts;
}

Test(threadpool, fused_groups_calling_libm_split_at_fewer_elements) {
  cr_expect_eq(group_parts(false), 1, "relu, neg");
  cr_expect_geq(group_parts(true), 4, "exp, neg");
}

/* A sum or max over outer axes (a bias gradient) is split among no more parts than threads:
 * more, smaller parts read small blocks far apart (execute.c).  Its outputs do not depend on
 * the split, so programs with 1 to 4 threads give the same bits, over row runs (axes 0, 2, 3)
 * and over a strided axis (axis 0 of [N, C]) alike. */
Test(threadpool, reductions_split_by_threads_give_the_same_bits) {
  fg_graph *g;
  cr_assert_eq(fg_graph_new(&g, NULL), FG_OK);
  fg_node x = fg_input(g, "x", FG_F32, fg_shape4(16, 40, 14, 14));
  fg_node m = fg_input(g, "m", FG_F32, fg_shape2(3000, 24));
  fg_node outs[] = {fg_sum(g, x, FG_AXIS(0) | FG_AXIS(2) | FG_AXIS(3), false),
                    fg_max(g, x, FG_AXIS(0) | FG_AXIS(2) | FG_AXIS(3), false),
                    fg_sum(g, m, FG_AXIS(0), false)};
  enum { N_OUTS = sizeof outs / sizeof *outs };
  cr_expect_leq(fg__program_parts_for(g, outs[0], 2), 2);
  cr_expect_leq(fg__program_parts_for(g, outs[2], 3), 3);
  cr_expect_eq(fg__program_parts_for(g, outs[0], 1), 1);
  cr_expect_geq(fg__program_parts_for(g, outs[0], 8), 2, "still split on more threads");
  fg_tensor *ref[N_OUTS] = {NULL};
  for (int threads = 1; threads <= 4; threads++) {
    fg_program *p;
    cr_assert_eq(fg_program_new_opts(&p, g, N_OUTS, outs, &(fg_program_opts){.n_threads = threads},
                                     NULL),
                 FG_OK);
    const char *names[] = {"x", "m"};
    for (int i = 0; i < 2; i++) {
      fg_shape sh = fg_node_shape(g, i == 0 ? x : m);
      fg_tensor *t;
      cr_assert_eq(fg_tensor_new(&t, FG_F32, &sh, NULL), FG_OK);
      float *d = fg_tensor_data(t);
      uint32_t state = 777u + (uint32_t)i;
      for (int64_t k = 0; k < fg_tensor_numel(t); k++) {
        state = state * 1664525u + 1013904223u;
        d[k] = (float)(state >> 8) / (float)(1 << 20) - 8.0f;
      }
      cr_assert_eq(fg_program_bind(p, names[i], t, NULL), FG_OK);
      fg_tensor_free(t);
    }
    cr_assert_eq(fg_program_run(p, NULL), FG_OK);
    for (int o = 0; o < N_OUTS; o++) {
      const fg_tensor *got = fg_program_output(p, o);
      if (!ref[o]) {
        cr_assert_eq(fg_tensor_copy(&ref[o], got, FG_F32, NULL), FG_OK);
        continue;
      }
      cr_expect(memcmp(fg_tensor_data(got), fg_tensor_data(ref[o]),
                       sizeof(float) * (size_t)fg_tensor_numel(got)) == 0,
                "output %d with %d threads differs from 1 thread's", o, threads);
    }
    fg_program_free(p);
  }
  for (int o = 0; o < N_OUTS; o++) fg_tensor_free(ref[o]);
  fg_graph_free(g);
}

/* ---- idle workers sleep ---- */

static void empty_task(void *ctx, int part, int n_parts) {
  (void)ctx, (void)part, (void)n_parts;
}

/* CPU the process uses while idle for 200 ms, the least over a few windows: OpenBLAS's own
 * threads (loaded with libflowgrad) spin for ~0.1 s after the library loads, and on a loaded
 * machine a late-scheduled worker may spend its short spin inside a window.  A pool that never
 * blocks burns in every window, so the least still catches it. */
static double idle_cpu_seconds(void) {
  double least = 1e9;
  for (int w = 0; w < 4; w++) {
    double before = cpu_seconds();
    sleep_ms(200);
    double used = cpu_seconds() - before;
    least = used < least ? used : least;
  }
  return least;
}

Test(threadpool, idle_workers_do_not_burn_cpu) {
  fg_pool *p = new_pool(4); /* oversubscribed on small machines: all the more reason */
  check_each_part_once(p, 16, 3);
  fg_pool_run(p, empty_task, NULL, 4);
  double used = idle_cpu_seconds();
  cr_assert_lt(used, 0.030, "idle pool used %.1f ms of CPU in 200 ms", used * 1e3);
  fg_pool_free(p);
}

/* ---- stress ---- */

static void add_task(void *ctx, int part, int n_parts) {
  (void)n_parts;
  atomic_fetch_add_explicit((_Atomic int64_t *)ctx, part + 1, memory_order_relaxed);
}

Test(threadpool, many_tiny_jobs, .timeout = 20) {
  fg_pool *p = new_pool(2);
  _Atomic int64_t total;
  atomic_init(&total, 0);
  int64_t expect = 0;
  double t0 = wall_seconds();
  for (int j = 0; j < 20000; j++) {
    int n_parts = 2 + j % 3;
    fg_pool_run(p, add_task, &total, n_parts);
    expect += (int64_t)n_parts * (n_parts + 1) / 2;
    if (j % 997 == 0) cr_assert_eq(atomic_load(&total), expect, "job %d", j);
  }
  double secs = wall_seconds() - t0;
  cr_assert_eq(atomic_load(&total), expect);
  cr_assert_lt(secs, 5.0, "20,000 tiny jobs took %.2f s", secs);
  fg_pool_free(p);
}

/* ---- splitting helpers ---- */

Test(threadpool, parts_helper) {
  fg_pool *p4 = new_pool(4), *p1 = new_pool(1);
  cr_assert_eq(fg_pool_parts(p4, 10, 1000), 1, "tiny ops are not split");
  cr_assert_eq(fg_pool_parts(p4, 0, 1000), 1);
  cr_assert_eq(fg_pool_parts(p4, -5, 1000), 1);
  cr_assert_eq(fg_pool_parts(p4, 2500, 1000), 2, "no part below the minimum");
  cr_assert_eq(fg_pool_parts(p4, 1 << 30, 1000), 4 * FG_POOL_PARTS_PER_THREAD);
  cr_assert_eq(fg_pool_parts(p4, 100, 0), 16, "a minimum below 1 counts as 1");
  cr_assert_eq(fg_pool_parts(p1, 1 << 30, 1), 1);
  cr_assert_eq(fg_pool_parts(NULL, 1 << 30, 1), 1);
  cr_assert_eq(fg_pool_parts(p4, INT64_MAX, 1), 16);
  cr_assert_eq(fg_pool_parts_fixed(INT64_MAX, 1), FG_POOL_MAX_FIXED_PARTS);
  cr_assert_eq(fg_pool_parts_fixed(5000, 1000), 5);
  cr_assert_eq(fg_pool_parts_fixed(999, 1000), 1);
  fg_pool_free(p4);
  fg_pool_free(p1);
}

Test(threadpool, range_helper) {
  int64_t ns[] = {0, 1, 3, 10, 17, 1000003};
  int parts[] = {1, 2, 3, 7, 16};
  for (size_t a = 0; a < sizeof ns / sizeof *ns; a++) {
    for (size_t k = 0; k < sizeof parts / sizeof *parts; k++) {
      int64_t next = 0, n = ns[a];
      for (int i = 0; i < parts[k]; i++) {
        int64_t b, e;
        fg_pool_range(n, i, parts[k], &b, &e);
        cr_assert_eq(b, next, "ranges are contiguous");
        cr_assert_geq(e, b);
        int64_t len = e - b, q = n / parts[k];
        cr_assert(len == q || len == q + 1, "balanced: %lld of %lld in %d", (long long)len,
                  (long long)n, parts[k]);
        next = e;
      }
      cr_assert_eq(next, n, "ranges cover [0, n)");
    }
  }
  int64_t b, e;
  fg_pool_range(INT64_MAX, 7, 8, &b, &e);
  cr_assert_eq(e, INT64_MAX, "no overflow on huge n");
}
