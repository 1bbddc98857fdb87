/* A persistent pthread pool that splits one job into parts and runs them on every thread,
 * the caller included.  The executor uses it to split each kernel's work (rows, batch, tiles).
 *
 * Waiting never burns a core for long: between jobs an idle worker spins for about
 * FG_POOL_SPIN_NS, timed by the monotonic clock, and then sleeps on a condition variable; the
 * caller waits for the last part the same way.  So back-to-back small jobs pay no wake-up
 * latency, and an idle pool costs nothing on a small or shared machine.
 *
 * One caller at a time: fg_pool_run and fg_pool_free must not be called concurrently on the
 * same pool. */
#ifndef FG_THREADPOOL_H
#define FG_THREADPOOL_H

#include <stdint.h>

#include "core/status.h"

/* How long an idle thread spins before it sleeps.  Long enough to cover the gap between the
 * kernels of one program run, short enough that an idle pool is idle. */
#define FG_POOL_SPIN_NS 50000
/* Upper bound on n_threads: beyond it a request is a mistake, not a machine. */
#define FG_POOL_MAX_THREADS 1024
/* fg_pool_parts gives at most this many parts per thread: a few parts per thread even out
 * parts of unequal cost without making parts so small that claiming them dominates. */
#define FG_POOL_PARTS_PER_THREAD 4
/* fg_pool_parts_fixed gives at most this many parts, whatever the pool. */
#define FG_POOL_MAX_FIXED_PARTS 64

typedef struct fg_pool fg_pool;

/* A new pool in *out.  n_threads <= 0: the number of online cores
 * (sysconf(_SC_NPROCESSORS_ONLN)); 1: no worker threads at all (everything runs on the caller).
 * Threads = workers + the calling thread.  Fails with FG_E_MISUSE above FG_POOL_MAX_THREADS,
 * and with FG_E_NOMEM when a worker thread cannot be started (the threads already started are
 * joined; nothing leaks); *out is then NULL. */
fg_status fg_pool_new(fg_pool **out, int n_threads, fg_err *e);
/* Joins the workers; NULL is a no-op. */
void fg_pool_free(fg_pool *p);
/* Total threads including the caller; 1 for NULL. */
int fg_pool_size(const fg_pool *p);

typedef void (*fg_pool_task)(void *ctx, int part, int n_parts);

/* Runs fn(ctx, part, n_parts) for every part in [0, n_parts), spread over the pool's threads
 * (the caller takes part too), and returns when all parts are done; everything the parts wrote
 * is then visible to the caller.  Parts are claimed with an atomic counter, so which thread
 * runs which part varies, but the partition does not: a kernel that writes disjoint outputs per
 * part gives bit-identical results for any thread count.
 * p == NULL or n_parts <= 1 runs inline on the caller; n_parts <= 0 runs nothing.
 * Not reentrant: a task must not call fg_pool_run on the same pool. */
void fg_pool_run(fg_pool *p, fg_pool_task fn, void *ctx, int n_parts);

/* How many parts to split work_items items into on this pool: at least 1, at most
 * fg_pool_size(p) * FG_POOL_PARTS_PER_THREAD, and never so many that a part gets fewer than
 * min_items_per_part items (so tiny ops run inline, unsplit).  1 for a 1-thread or NULL pool.
 * The answer depends on the pool size, so use it only where the partition cannot change the
 * result (each part writes its own outputs, nothing is combined across parts). */
int fg_pool_parts(const fg_pool *p, int64_t work_items, int64_t min_items_per_part);

/* Like fg_pool_parts but independent of the pool: at most FG_POOL_MAX_FIXED_PARTS.  For
 * reductions that combine per-part partials in part order, which then give bit-identical
 * results for any thread count. */
int fg_pool_parts_fixed(int64_t work_items, int64_t min_items_per_part);

/* Part `part` of an even split of [0, n) into n_parts contiguous ranges: [*begin, *end).
 * Sizes differ by at most one, the larger ones first; a part may be empty when n < n_parts. */
void fg_pool_range(int64_t n, int part, int n_parts, int64_t *begin, int64_t *end);

#endif
