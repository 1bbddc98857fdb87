/* Data-parallel training across processes: which process of a job this is ("rank" r of N) and
 * the few collective operations a trainer needs.  Under `mpirun -np N` in a build with MPI
 * (meson feature `mpi`), fg_dist_new joins the job (MPI_Init); in any other case it is a single
 * process (rank 0 of 1) and no MPI function is ever called, so a build with MPI runs every
 * command as one without.  NULL stands for a single process everywhere below.
 *
 * Every rank must make the same calls in the same order with the same sizes (they are
 * collectives); a call that fails on one rank cannot be matched by the others, so a caller
 * learns about failures with fg_dist_agree at points every rank reaches, and ends the job with
 * fg_dist_abort only where that is impossible (fg_dist_broken).
 *
 * The sum is reproducible: the order of its additions depends only on (n, N), never on timing,
 * so a run on N ranks is bit-identical from one run to the next (MPI_Allreduce promises no
 * order).  Large sums run as a ring (reduce-scatter, then all-gather): each rank sends and
 * receives 2·(N-1)/N of the values, whatever N, and chunk c is summed starting at rank c and
 * going round the ring.  Small ones (fewer than FG_DIST_RING_MIN values) gather every rank's
 * values and add them in rank order: one round of latency instead of 2·(N-1). */
#ifndef FG_DIST_H
#define FG_DIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/ir/op_attrs.h"
#include "core/shape.h"
#include "core/status.h"

/* Sums of at least this many values use the ring. */
#define FG_DIST_RING_MIN 4096

typedef struct fg_dist fg_dist;

/* The job this process was launched in: N ranks under mpirun (when built with MPI), else one
 * process.  On failure *out is NULL. */
fg_status fg_dist_new(fg_dist **out, fg_err *e);
/* Leaves the job (MPI_Finalize) and frees d; NULL is a no-op.  Every rank calls it. */
void fg_dist_free(fg_dist *d);

int fg_dist_rank(const fg_dist *d); /* 0 for NULL */
int fg_dist_size(const fg_dist *d); /* 1 for NULL */
/* True when the job runs on MPI (even with N = 1); false for a single process. */
bool fg_dist_is_mpi(const fg_dist *d);

/* values[0..n) (float32 or float64) := their sum over the ranks, on every rank, in the fixed
 * order described above.  A no-op for a single process. */
fg_status fg_dist_sum(fg_dist *d, void *values, int64_t n, fg_dtype dtype, fg_err *e);
/* all[r·bytes .. (r+1)·bytes) := rank r's `mine`, for every r (all holds size·bytes). */
fg_status fg_dist_gather(fg_dist *d, const void *mine, size_t bytes, void *all, fg_err *e);
/* buf := root's buf on every rank. */
fg_status fg_dist_broadcast(fg_dist *d, void *buf, size_t bytes, int root, fg_err *e);
/* *any := the bitwise or of every rank's `mine` (flags one rank raises for all). */
fg_status fg_dist_or(fg_dist *d, uint32_t mine, uint32_t *any, fg_err *e);
/* Whether every rank got FG_OK: returns `mine` (its message already in e) when this rank
 * failed, else the status of the lowest failed rank, with a message naming it ("rank 1
 * failed: input/output error; its own message says why"), else FG_OK. */
fg_status fg_dist_agree(fg_dist *d, fg_status mine, fg_err *e);

/* A reducer (core/ir/op_attrs.h) whose sum is fg_dist_sum, for collectives inside graphs
 * (fg_allreduce_sum: batch-norm statistics over the global batch); NULL for a single process
 * and for N = 1.  Borrowed: lives as long as d. */
const fg_reducer *fg_dist_reducer(fg_dist *d);

/* A collective was left unmatched (one rank stopped inside a program that the others are still
 * running): only fg_dist_abort ends such a job.  The trainer marks it; its caller checks. */
void fg_dist_mark_broken(fg_dist *d);
bool fg_dist_broken(const fg_dist *d);
/* Ends every rank of the job now with exit status `code` (MPI_Abort); for callers that cannot
 * reach an agreement point.  Returns only for a single process (it does nothing then). */
void fg_dist_abort(fg_dist *d, int code);

/* Time spent in fg_dist_sum and what it moved, since fg_dist_new. */
typedef struct fg_dist_stats {
  double sum_seconds;
  int64_t sum_calls, sum_values;
} fg_dist_stats;
fg_dist_stats fg_dist_get_stats(const fg_dist *d);

#endif
