/* Thread pool: one job at a time, split into parts claimed by every thread.
 *
 * The job word.  One 64-bit atomic holds the job's generation (high 32 bits) and the number of
 * parts not yet claimed (low 32 bits).  Publishing a job is one store of (generation, n_parts);
 * idle workers watch the generation change; a thread claims a part with a compare-and-swap that
 * also checks the generation, so a worker that wakes up late for an old job can never claim a
 * part of a newer one with the old job's function.  The job's fields (fn, ctx, n_parts) are
 * plain: they are read only after a successful claim, which both synchronises with their
 * publication and keeps the job from finishing (and the caller from overwriting them) before
 * the claimed part is done.  (A stale claim could only succeed if the 32-bit generation wrapped
 * all the way round while a thread sat between two instructions: 2^32 jobs.)
 *
 * Completion.  `pending` counts parts not yet finished; the caller returns once it reaches 0.
 * Every decrement belongs to a part of the current job, so no late decrement from an old job
 * can disturb a new one.
 *
 * Sleeping.  Spinners are timed by the clock (FG_POOL_SPIN_NS), then block on a condition
 * variable.  Sleepers announce themselves in an atomic counter (workers) or flag (caller)
 * before re-checking their condition under the mutex; the waker changes the condition and then
 * reads the counter, all seq_cst, so either the sleeper sees the change or the waker sees the
 * sleeper and signals it under the mutex.  A wake-up is never lost and the fast path (nobody
 * asleep) takes no lock. */
#include "core/runtime/threadpool.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/ir/op.h"

/* Threads spin on and write these words: keep each on its own cache line. */
#define CACHE_LINE 64

struct fg_pool {
  /* (generation << 32) | parts not yet claimed */
  alignas(CACHE_LINE) _Atomic uint64_t job;
  /* parts not yet finished */
  alignas(CACHE_LINE) _Atomic int pending;

  /* The job, written by the caller before it publishes `job`. */
  alignas(CACHE_LINE) fg_pool_task fn;
  void *ctx;
  int n_parts;
  uint32_t generation; /* the caller's copy of the current generation */

  int n_threads; /* workers + caller */
  int n_workers;
  pthread_t *workers;

  pthread_mutex_t lock;
  pthread_cond_t wake; /* workers wait here for a new generation */
  pthread_cond_t done; /* the caller waits here for pending == 0 */
  _Atomic int sleepers;        /* workers blocked (or about to block) on wake */
  _Atomic bool caller_waiting; /* the caller blocked (or about to block) on done */
  _Atomic bool stop;
};

static uint32_t job_generation(uint64_t job) { return (uint32_t)(job >> 32); }
static uint32_t job_unclaimed(uint64_t job) { return (uint32_t)job; }

/* Tells the core (and a hyperthread sibling) that this is a spin loop. */
static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield" ::: "memory");
#else
  atomic_signal_fence(memory_order_seq_cst);
#endif
}

static int64_t now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

/* ---- running parts (workers and caller alike) ---- */

/* Claims the next part of job `gen`; false once that job has no unclaimed part left (or has
 * been replaced by a newer one). */
static bool claim_part(fg_pool *p, uint32_t gen, int *part) {
  uint64_t job = atomic_load_explicit(&p->job, memory_order_relaxed);
  for (;;) {
    if (job_generation(job) != gen || job_unclaimed(job) == 0) return false;
    /* acquire: pairs with the caller's publishing store, so fn/ctx/n_parts are visible */
    if (atomic_compare_exchange_weak_explicit(&p->job, &job, job - 1, memory_order_acquire,
                                              memory_order_relaxed))
      break;
  }
  *part = p->n_parts - (int)job_unclaimed(job);
  return true;
}

static void finish_part(fg_pool *p) {
  /* release (seq_cst): the part's writes happen before the caller sees pending == 0 */
  if (atomic_fetch_sub(&p->pending, 1) == 1 && atomic_load(&p->caller_waiting)) {
    pthread_mutex_lock(&p->lock);
    pthread_cond_signal(&p->done);
    pthread_mutex_unlock(&p->lock);
  }
}

static void run_parts(fg_pool *p, uint32_t gen) {
  int part;
  while (claim_part(p, gen, &part)) {
    p->fn(p->ctx, part, p->n_parts);
    finish_part(p); /* after this the job may be gone: touch nothing of it */
  }
}

/* ---- workers ---- */

/* Waits until a job newer than `seen` is published; returns its generation, or false when the
 * pool is shutting down. */
static bool wait_for_job(fg_pool *p, uint32_t seen, uint32_t *gen) {
  int64_t deadline = now_ns() + FG_POOL_SPIN_NS;
  for (;;) {
    if (atomic_load_explicit(&p->stop, memory_order_relaxed)) return false;
    uint64_t job = atomic_load_explicit(&p->job, memory_order_relaxed);
    if (job_generation(job) != seen) {
      *gen = job_generation(job);
      return true;
    }
    if (now_ns() >= deadline) break;
    cpu_relax();
  }
  pthread_mutex_lock(&p->lock);
  atomic_fetch_add(&p->sleepers, 1);
  while (!atomic_load(&p->stop) && job_generation(atomic_load(&p->job)) == seen)
    pthread_cond_wait(&p->wake, &p->lock);
  atomic_fetch_sub(&p->sleepers, 1);
  bool stop = atomic_load(&p->stop);
  *gen = job_generation(atomic_load(&p->job));
  pthread_mutex_unlock(&p->lock);
  return !stop;
}

static void *worker_main(void *arg) {
  fg_pool *p = arg;
  uint32_t seen = 0, gen;
  while (wait_for_job(p, seen, &gen)) {
    run_parts(p, gen);
    seen = gen;
  }
  return NULL;
}

/* Wakes enough sleeping workers for `wanted` parts; called after the job is published. */
static void wake_workers(fg_pool *p, int wanted) {
  if (atomic_load(&p->sleepers) == 0) return; /* seq_cst: see the comment at the top */
  /* Taking the lock orders us after any sleeper's check of the job word: from here on each
   * one is either waiting on the condvar or will see the new job.  Signalling after unlocking
   * spares the woken threads from blocking again on a mutex we still hold. */
  pthread_mutex_lock(&p->lock);
  int asleep = atomic_load_explicit(&p->sleepers, memory_order_relaxed);
  pthread_mutex_unlock(&p->lock);
  if (wanted >= asleep) {
    pthread_cond_broadcast(&p->wake);
  } else {
    for (int i = 0; i < wanted; i++) pthread_cond_signal(&p->wake);
  }
}

/* The caller, having run out of parts to claim, waits for the workers' last ones. */
static void wait_for_parts(fg_pool *p) {
  int64_t deadline = now_ns() + FG_POOL_SPIN_NS;
  while (atomic_load_explicit(&p->pending, memory_order_acquire) != 0) {
    if (now_ns() >= deadline) break;
    cpu_relax();
  }
  if (atomic_load_explicit(&p->pending, memory_order_acquire) == 0) return;
  pthread_mutex_lock(&p->lock);
  atomic_store(&p->caller_waiting, true);
  while (atomic_load(&p->pending) != 0) pthread_cond_wait(&p->done, &p->lock);
  atomic_store(&p->caller_waiting, false);
  pthread_mutex_unlock(&p->lock);
}

void fg_pool_run(fg_pool *p, fg_pool_task fn, void *ctx, int n_parts) {
  if (!p || p->n_workers == 0 || n_parts <= 1) {
    for (int i = 0; i < n_parts; i++) fn(ctx, i, n_parts);
    return;
  }
  p->fn = fn;
  p->ctx = ctx;
  p->n_parts = n_parts;
  atomic_store_explicit(&p->pending, n_parts, memory_order_relaxed);
  p->generation++;
  /* seq_cst store: publishes the fields above (release) and orders before the sleeper check */
  atomic_store(&p->job, (uint64_t)p->generation << 32 | (uint32_t)n_parts);
  wake_workers(p, n_parts - 1);
  run_parts(p, p->generation);
  wait_for_parts(p);
}

/* ---- lifetime ---- */

static int online_cores(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  if (n < 1) return 1;
  return n > FG_POOL_MAX_THREADS ? FG_POOL_MAX_THREADS : (int)n;
}

/* Wakes every worker for good and joins the first n_started. */
static void stop_workers(fg_pool *p, int n_started) {
  pthread_mutex_lock(&p->lock);
  atomic_store(&p->stop, true);
  pthread_cond_broadcast(&p->wake);
  pthread_mutex_unlock(&p->lock);
  for (int i = 0; i < n_started; i++) pthread_join(p->workers[i], NULL);
}

/* Starts the workers with every signal blocked, so that signals meant for the application
 * are delivered to its own threads, never to ours.  Returns how many were started. */
static int start_workers(fg_pool *p, int *err) {
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int started = 0;
  *err = 0;
  while (started < p->n_workers) {
    *err = pthread_create(&p->workers[started], NULL, worker_main, p);
    if (*err) break;
    started++;
  }
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  return started;
}

static void destroy(fg_pool *p) {
  pthread_cond_destroy(&p->done);
  pthread_cond_destroy(&p->wake);
  pthread_mutex_destroy(&p->lock);
  free(p->workers);
  free(p);
}

fg_status fg_pool_new(fg_pool **out, int n_threads, fg_err *e) {
  *out = NULL;
  if (n_threads > FG_POOL_MAX_THREADS)
    return fg_err_set(e, FG_E_MISUSE, "fg_pool_new: %d threads requested, at most %d",
                      n_threads, FG_POOL_MAX_THREADS);
  if (n_threads <= 0) n_threads = online_cores();
  /* aligned_alloc: the struct's cache-line alignment is more than malloc promises */
  size_t size = (sizeof(fg_pool) + CACHE_LINE - 1) / CACHE_LINE * CACHE_LINE;
  fg_pool *p = aligned_alloc(CACHE_LINE, size);
  if (!p) return fg_err_set(e, FG_E_NOMEM, "fg_pool_new: out of memory");
  memset(p, 0, size);
  p->n_threads = n_threads;
  p->n_workers = n_threads - 1;
  p->workers = calloc(p->n_workers > 0 ? (size_t)p->n_workers : 1, sizeof *p->workers);
  if (!p->workers) {
    free(p);
    return fg_err_set(e, FG_E_NOMEM, "fg_pool_new: out of memory");
  }
  atomic_init(&p->job, 0);
  atomic_init(&p->pending, 0);
  atomic_init(&p->sleepers, 0);
  atomic_init(&p->caller_waiting, false);
  atomic_init(&p->stop, false);
  pthread_mutex_init(&p->lock, NULL);
  pthread_cond_init(&p->wake, NULL);
  pthread_cond_init(&p->done, NULL);

  int err;
  int started = start_workers(p, &err);
  if (started < p->n_workers) {
    stop_workers(p, started);
    destroy(p);
    return fg_err_set(e, FG_E_NOMEM,
                      "fg_pool_new: cannot start worker thread %d of %d (pthread_create: %s)",
                      started + 1, n_threads - 1,
                      err == EAGAIN ? "EAGAIN, thread or memory limit reached" : strerror(err));
  }
  *out = p;
  return FG_OK;
}

void fg_pool_free(fg_pool *p) {
  if (!p) return;
  stop_workers(p, p->n_workers);
  destroy(p);
}

int fg_pool_size(const fg_pool *p) { return p ? p->n_threads : 1; }

/* ---- splitting work ---- */

static int parts_for(int64_t work_items, int64_t min_items_per_part, int64_t max_parts) {
  if (work_items <= 0 || max_parts <= 1) return 1;
  if (min_items_per_part < 1) min_items_per_part = 1;
  int64_t parts = work_items / min_items_per_part;
  if (parts > max_parts) parts = max_parts;
  return parts < 1 ? 1 : (int)parts;
}

int fg_pool_parts(const fg_pool *p, int64_t work_items, int64_t min_items_per_part) {
  int64_t max_parts = (int64_t)fg_pool_size(p) * FG_POOL_PARTS_PER_THREAD;
  if (fg_pool_size(p) == 1) max_parts = 1; /* splitting for one thread is pure overhead */
  return parts_for(work_items, min_items_per_part, max_parts);
}

int fg_pool_parts_fixed(int64_t work_items, int64_t min_items_per_part) {
  return parts_for(work_items, min_items_per_part, FG_POOL_MAX_FIXED_PARTS);
}

void fg_pool_range(int64_t n, int part, int n_parts, int64_t *begin, int64_t *end) {
  if (n_parts < 1 || n <= 0) {
    *begin = *end = 0;
    return;
  }
  fg_split_range(n, part, n_parts, begin, end); /* the split kernels make of their output */
}
