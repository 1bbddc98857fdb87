/* Data-parallel jobs (dist.h): the reproducible sum and the agreement calls, over the transport
 * of dist_transport.h (MPI, or none). */
#include "flows/train/dist.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/ir/op.h"
#include "flows/train/dist_transport.h"

struct fg_dist {
  fg__dist_comm *comm; /* NULL: a single process */
  int rank, size;
  bool broken;
  fg_reducer reducer;
  fg_dist_stats stats;
  void *scratch; /* the ring's incoming chunk, or the gathered values */
  size_t scratch_bytes;
};

static fg_status reducer_sum(void *ctx, void *values, int64_t n, fg_dtype dtype, fg_err *e) {
  return fg_dist_sum(ctx, values, n, dtype, e);
}

fg_status fg_dist_new(fg_dist **out, fg_err *e) {
  *out = NULL;
  fg_dist *d = calloc(1, sizeof *d);
  if (!d) return fg_err_set(e, FG_E_NOMEM, "dist: out of memory");
  fg_status st = fg__dist_join(&d->comm, &d->rank, &d->size, e);
  if (st != FG_OK) {
    free(d);
    return st;
  }
  d->reducer = (fg_reducer){.ctx = d, .size = d->size, .sum = reducer_sum};
  *out = d;
  return FG_OK;
}

void fg_dist_free(fg_dist *d) {
  if (!d) return;
  fg__dist_leave(d->comm);
  free(d->scratch);
  free(d);
}

int fg_dist_rank(const fg_dist *d) { return d ? d->rank : 0; }
int fg_dist_size(const fg_dist *d) { return d ? d->size : 1; }
bool fg_dist_is_mpi(const fg_dist *d) { return d && d->comm; }
const fg_reducer *fg_dist_reducer(fg_dist *d) { return d && d->size > 1 ? &d->reducer : NULL; }
void fg_dist_mark_broken(fg_dist *d) {
  if (d) d->broken = true;
}
bool fg_dist_broken(const fg_dist *d) { return d && d->broken; }
fg_dist_stats fg_dist_get_stats(const fg_dist *d) { return d ? d->stats : (fg_dist_stats){0}; }

void fg_dist_abort(fg_dist *d, int code) {
  if (fg_dist_is_mpi(d)) fg__dist_abort(d->comm, code);
}

static bool job(const fg_dist *d) { return d && d->comm && d->size > 1; }

static fg_status scratch(fg_dist *d, size_t bytes, fg_err *e) {
  if (bytes <= d->scratch_bytes) return FG_OK;
  void *p = realloc(d->scratch, bytes);
  if (!p) return fg_err_set(e, FG_E_NOMEM, "dist: out of memory for %zu bytes", bytes);
  d->scratch = p, d->scratch_bytes = bytes;
  return FG_OK;
}

/* ---- the sum ---- */

/* acc[i] = acc[i] + in[i] */
static void add_into(void *acc, const void *in, int64_t n, fg_dtype dtype) {
  if (dtype == FG_F32) {
    float *a = acc;
    const float *b = in;
    for (int64_t i = 0; i < n; i++) a[i] += b[i];
  } else {
    double *a = acc;
    const double *b = in;
    for (int64_t i = 0; i < n; i++) a[i] += b[i];
  }
}

/* Small sums: every rank's values gathered, then added in rank order. */
static fg_status sum_gathered(fg_dist *d, void *values, int64_t n, fg_dtype dtype, fg_err *e) {
  size_t bytes = (size_t)n * fg_dtype_size(dtype);
  fg_status st = scratch(d, bytes * (size_t)d->size, e);
  if (st == FG_OK) st = fg__dist_allgather(d->comm, values, bytes, d->scratch, e);
  if (st != FG_OK) return st;
  memcpy(values, d->scratch, bytes);
  for (int r = 1; r < d->size; r++)
    add_into(values, (char *)d->scratch + bytes * (size_t)r, n, dtype);
  return FG_OK;
}

/* Chunk c of the ring: values [begin, end) (fg_split_range over the ranks). */
static void chunk(int64_t n, int size, int c, int64_t *begin, int64_t *end) {
  fg_split_range(n, c, size, begin, end);
}

/* Reduce-scatter then all-gather round the ring r -> r+1.  At step s of the first phase rank r
 * passes chunk r-s on and adds chunk r-s-1 from rank r-1 to its own, so chunk c is summed
 * starting at rank c, in ring order, and rank r ends with chunk r+1 complete; the second phase
 * passes the complete chunks round. */
static fg_status sum_ring(fg_dist *d, void *values, int64_t n, fg_dtype dtype, fg_err *e) {
  int r = d->rank, N = d->size, to = (r + 1) % N, from = (r + N - 1) % N;
  size_t es = fg_dtype_size(dtype);
  fg_status st = scratch(d, (size_t)(n / N + 1) * es, e);
  char *v = values;
  for (int s = 0; st == FG_OK && s < 2 * (N - 1); s++) {
    bool reduce = s < N - 1;
    int k = reduce ? s : s - (N - 1);
    int out_c = (r - k + (reduce ? 0 : 1) + N) % N, in_c = (r - k - (reduce ? 1 : 0) + N) % N;
    int64_t ob, oe, ib, ie;
    chunk(n, N, out_c, &ob, &oe);
    chunk(n, N, in_c, &ib, &ie);
    void *into = reduce ? d->scratch : v + (size_t)ib * es;
    st = fg__dist_sendrecv(d->comm, to, v + (size_t)ob * es, (size_t)(oe - ob) * es, from, into,
                           (size_t)(ie - ib) * es, e);
    if (st == FG_OK && reduce) add_into(v + (size_t)ib * es, d->scratch, ie - ib, dtype);
  }
  return st;
}

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

fg_status fg_dist_sum(fg_dist *d, void *values, int64_t n, fg_dtype dtype, fg_err *e) {
  if (!job(d) || n <= 0) return FG_OK;
  if (dtype != FG_F32 && dtype != FG_F64)
    return fg_err_set(e, FG_E_DTYPE, "dist: sums float32 or float64");
  double t0 = now_s();
  fg_status st = n < FG_DIST_RING_MIN ? sum_gathered(d, values, n, dtype, e)
                                      : sum_ring(d, values, n, dtype, e);
  d->stats.sum_seconds += now_s() - t0;
  d->stats.sum_calls++;
  d->stats.sum_values += n;
  return st;
}

/* ---- the others ---- */

fg_status fg_dist_gather(fg_dist *d, const void *mine, size_t bytes, void *all, fg_err *e) {
  if (!job(d)) {
    memmove(all, mine, bytes);
    return FG_OK;
  }
  return fg__dist_allgather(d->comm, mine, bytes, all, e);
}

fg_status fg_dist_broadcast(fg_dist *d, void *buf, size_t bytes, int root, fg_err *e) {
  return job(d) ? fg__dist_bcast(d->comm, buf, bytes, root, e) : FG_OK;
}

fg_status fg_dist_or(fg_dist *d, uint32_t mine, uint32_t *any, fg_err *e) {
  *any = mine;
  if (!job(d)) return FG_OK;
  fg_status st = scratch(d, sizeof mine * (size_t)d->size, e);
  if (st == FG_OK) st = fg__dist_allgather(d->comm, &mine, sizeof mine, d->scratch, e);
  for (int r = 0; st == FG_OK && r < d->size; r++) *any |= ((uint32_t *)d->scratch)[r];
  return st;
}

fg_status fg_dist_agree(fg_dist *d, fg_status mine, fg_err *e) {
  if (!job(d)) return mine;
  int32_t code = mine;
  fg_err local;
  fg_status st = scratch(d, sizeof code * (size_t)d->size, &local);
  if (st == FG_OK) st = fg__dist_allgather(d->comm, &code, sizeof code, d->scratch, &local);
  if (st != FG_OK) { /* the agreement itself failed: nothing more can be agreed */
    d->broken = true;
    return mine != FG_OK ? mine : fg_err_set(e, st, "%s", local.msg);
  }
  if (mine != FG_OK) return mine;
  for (int r = 0; r < d->size; r++) {
    fg_status theirs = (fg_status)((int32_t *)d->scratch)[r];
    if (theirs != FG_OK)
      return fg_err_set(e, theirs, "rank %d failed: %s; its own message says why", r,
                        fg_status_str(theirs));
  }
  return FG_OK;
}
