/* oneDNN behind conv2d, its transposes and matmul (ops/kernels/onednn.h): the engine, the
 * threads, and the runner that makes and runs primitives inside flowgrad's programs
 * (onednn_internal.h); the convolutions' primitives are in onednn_conv.c, the matmul's in
 * onednn_matmul.c.  These three files are the only ones that call oneDNN (the 2.x C API Debian
 * 12 ships).
 *
 * Primitives are made once, when a program is compiled (prepare), and run every time it runs.
 * What a run needs besides its inputs and output — activations in the layout a primitive
 * chose, weights reordered for it, oneDNN's own work space, partial weight gradients — lives in
 * the scratch memory the program's memory plan gives the step.
 *
 * Threads.  Debian's oneDNN threads with OpenMP; flowgrad's pool already has a thread per core.
 * So every primitive is made for one thread (the OpenMP thread count of the calling thread is
 * 1 while oneDNN is called, and restored after) and a node is split into a fixed number of
 * parts of its batch (or rows), one primitive run per part, which the pool spreads over its
 * threads.  No OpenMP team is ever started: nothing oversubscribes the cores or spins after a
 * call.  The split depends only on the shapes, each part writes its own outputs, and a weight
 * gradient is the sum of per-part partial gradients added in part order in a second phase, so
 * results are bit-identical for any thread count.
 *
 * A run is a list of jobs; a job is the primitive runs of one part (reorders in, the
 * convolution, reorders out), over memory objects ("slots") that point into the inputs, the
 * output or the scratch, re-pointed only when those move. */
#include "ops/kernels/onednn.h"

#include <omp.h>
#include <oneapi/dnnl/dnnl.h>
#include <oneapi/dnnl/dnnl_debug.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/runtime/threadpool.h"
#include "core/vec.h"
#include "ops/kernels/onednn_internal.h"

/* ---- the engine, threads ---- */

static dnnl_engine_t engine;
static pthread_once_t engine_once = PTHREAD_ONCE_INIT;

static void engine_make(void) {
  if (dnnl_engine_create(&engine, dnnl_cpu, 0) != dnnl_success) engine = NULL;
}

dnnl_engine_t fg_dnn_engine(void) {
  pthread_once(&engine_once, engine_make);
  return engine;
}

/* Sets the calling thread's OpenMP thread count to 1 (oneDNN then runs inline) and returns the
 * previous one, for threads_restore. */
int fg_dnn_threads_one(void) {
  int n = omp_get_max_threads();
  if (n != 1) omp_set_num_threads(1);
  return n;
}

void fg_dnn_threads_restore(int n) {
  if (n != 1) omp_set_num_threads(n);
}

/* ---- slots, jobs and the state that owns them ---- */


bool fg_dnn_ok(builder *b, dnnl_status_t st) {
  if (b->st == dnnl_success) b->st = st;
  return b->st == dnnl_success;
}

size_t fg_dnn_scratch_take(builder *b, size_t bytes) {
  size_t at = b->scratch;
  b->scratch += (bytes + ALIGN - 1) / ALIGN * ALIGN;
  return at;
}

int fg_dnn_slot_new(builder *b, job *j, const dnnl_memory_desc_t *md, int from, size_t off) {
  if (b->st != dnnl_success) return -1;
  if (j->n_slots == JOB_SLOTS) {
    fg_dnn_ok(b, dnnl_runtime_error);
    return -1;
  }
  slot *s = &j->slots[j->n_slots];
  if (!fg_dnn_ok(b, dnnl_memory_create(&s->mem, md, fg_dnn_engine(), DNNL_MEMORY_NONE))) return -1;
  s->from = from, s->off = off, s->bound = NULL;
  return j->n_slots++;
}

static const dnnl_memory_desc_t *slot_md(const job *j, int slot) {
  const dnnl_memory_desc_t *md = NULL;
  dnnl_memory_get_memory_desc(j->slots[slot].mem, &md);
  return md;
}

dnnl_primitive_attr_t fg_dnn_scratchpad_attr(builder *b) {
  dnnl_primitive_attr_t attr = NULL;
  if (fg_dnn_ok(b, dnnl_primitive_attr_create(&attr)))
    fg_dnn_ok(b, dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user));
  return attr;
}

/* Adds a run of pd's primitive to j with these arguments, and its scratchpad. */
void fg_dnn_exec_add(builder *b, job *j, const_dnnl_primitive_desc_t pd, int n, const int *args,
                     const int *slots) {
  if (b->st != dnnl_success) return;
  if (j->n_execs == JOB_EXECS || n + 1 > EXEC_ARGS) {
    fg_dnn_ok(b, dnnl_runtime_error);
    return;
  }
  if (!FG_VEC_RESERVE(b->s->prims, b->s->cap_prims, b->s->n_prims + 1)) {
    fg_dnn_ok(b, dnnl_out_of_memory);
    return;
  }
  exec *x = &j->execs[j->n_execs];
  if (!fg_dnn_ok(b, dnnl_primitive_create(&x->prim, pd))) return;
  b->s->prims[b->s->n_prims++] = x->prim;
  x->n_args = n;
  for (int i = 0; i < n; i++) x->arg[i] = args[i], x->slot[i] = slots[i];
  const dnnl_memory_desc_t *pad = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
  size_t bytes = pad ? dnnl_memory_desc_get_size(pad) : 0;
  if (bytes) {
    x->arg[x->n_args] = DNNL_ARG_SCRATCHPAD;
    x->slot[x->n_args++] = fg_dnn_slot_new(b, j, pad, FROM_SCRATCH, PAD_PENDING);
    if (bytes > j->pad_bytes) j->pad_bytes = bytes;
  }
  j->n_execs++;
}

/* A reorder between two slots of j. */
void fg_dnn_reorder_add(builder *b, job *j, int from, int to) {
  if (b->st != dnnl_success) return;
  dnnl_primitive_attr_t attr = fg_dnn_scratchpad_attr(b);
  dnnl_primitive_desc_t pd = NULL;
  if (fg_dnn_ok(b, dnnl_reorder_primitive_desc_create(&pd, slot_md(j, from), fg_dnn_engine(),
                                                slot_md(j, to), fg_dnn_engine(), attr)))
    fg_dnn_exec_add(b, j, pd, 2, (const int[]){DNNL_ARG_FROM, DNNL_ARG_TO},
                    (const int[]){from, to});
  dnnl_primitive_desc_destroy(pd);
  dnnl_primitive_attr_destroy(attr);
}

/* The slot a primitive gets for an operand in `user` memory of layout user_md: that memory when
 * it chose the same layout, else scratch in its layout (*user_slot is then the user memory's
 * slot, for the reorder the caller adds; -1 otherwise). */
int fg_dnn_operand(builder *b, job *j, const dnnl_memory_desc_t *user_md,
                   const dnnl_memory_desc_t *chosen, int from, size_t off, int *user_slot) {
  int user = fg_dnn_slot_new(b, j, user_md, from, off);
  if (b->st != dnnl_success || dnnl_memory_desc_equal(user_md, chosen)) {
    *user_slot = -1;
    return user;
  }
  *user_slot = user;
  return fg_dnn_slot_new(b, j, chosen, FROM_SCRATCH,
                         fg_dnn_scratch_take(b, dnnl_memory_desc_get_size(chosen)));
}

int fg_dnn_input(builder *b, job *j, const dnnl_memory_desc_t *user_md,
                 const dnnl_memory_desc_t *chosen, int from, size_t off) {
  int user, s = fg_dnn_operand(b, j, user_md, chosen, from, off, &user);
  if (user >= 0) fg_dnn_reorder_add(b, j, user, s);
  return s;
}

/* Places j's scratchpad slots in one range of scratch, and makes its stream. */
void fg_dnn_job_finish(builder *b, job *j) {
  size_t at = j->pad_bytes ? fg_dnn_scratch_take(b, j->pad_bytes) : 0;
  for (int i = 0; i < j->n_slots; i++)
    if (j->slots[i].off == PAD_PENDING) j->slots[i].off = at;
  if (b->st == dnnl_success)
    fg_dnn_ok(b, dnnl_stream_create(&j->stream, fg_dnn_engine(), dnnl_stream_default_flags));
}

static void job_free(job *j) {
  for (int i = 0; i < j->n_slots; i++) dnnl_memory_destroy(j->slots[i].mem);
  if (j->stream) dnnl_stream_destroy(j->stream);
}

void fg_onednn_release(void *p) {
  state *s = p;
  if (!s) return;
  for (int i = 0; s->jobs && i < s->n_jobs; i++) job_free(&s->jobs[i]);
  for (int i = 0; i < 2; i++) job_free(&s->wjobs[i]);
  for (int64_t i = 0; i < s->n_prims; i++) dnnl_primitive_destroy(s->prims[i]);
  free(s->prims);
  free(s->jobs);
  free(s);
}

state *fg_dnn_state_new(int n_jobs) {
  state *s = calloc(1, sizeof *s);
  if (s && !(s->jobs = calloc((size_t)n_jobs, sizeof *s->jobs))) {
    free(s);
    return NULL;
  }
  if (s) s->n_jobs = n_jobs;
  return s;
}

/* Ends a prepare: the state and its scratch on success, else everything freed and why. */
fg_status fg_dnn_prepare_end(builder *b, fg_kprep *a, void **out, int saved_threads,
                             const char *what, fg_err *e) {
  fg_dnn_threads_restore(saved_threads);
  if (b->st != dnnl_success) {
    fg_onednn_release(b->s);
    return fg_err_set(e, b->st == dnnl_out_of_memory ? FG_E_NOMEM : FG_E_MISUSE,
                      "oneDNN has no %s for this node: %s", what, dnnl_status2str(b->st));
  }
  a->n_phases = b->s->n_phases;
  a->scratch_bytes = b->scratch;
  *out = b->s;
  return FG_OK;
}

/* ---- running ---- */

static void *base_of(const fg_kargs *k, int from) {
  return from == FROM_OUT ? k->out : from == FROM_SCRATCH ? k->scratch : (void *)k->in[from];
}

static fg_status job_run(job *j, const fg_kargs *k) {
  dnnl_status_t st = dnnl_success;
  for (int i = 0; st == dnnl_success && i < j->n_slots; i++) {
    slot *s = &j->slots[i];
    void *p = (char *)base_of(k, s->from) + s->off;
    if (p != s->bound && (st = dnnl_memory_set_data_handle(s->mem, p)) == dnnl_success)
      s->bound = p;
  }
  for (int x = 0; st == dnnl_success && x < j->n_execs; x++) {
    const exec *e = &j->execs[x];
    dnnl_exec_arg_t args[EXEC_ARGS];
    for (int i = 0; i < e->n_args; i++)
      args[i] = (dnnl_exec_arg_t){e->arg[i], j->slots[e->slot[i]].mem};
    st = dnnl_primitive_execute(e->prim, j->stream, e->n_args, args);
  }
  if (st == dnnl_success && j->n_execs) st = dnnl_stream_wait(j->stream);
  if (st != dnnl_success)
    return fg_err_set(k->err, FG_E_INTERNAL, "oneDNN: %s", dnnl_status2str(st));
  return FG_OK;
}

/* The weight gradient: out += partials 1.. of the other parts, in part order, over this part's
 * share of the elements. */
static void sum_partials(const state *s, const fg_kargs *k) {
  int64_t b, e, n_partials = s->n_jobs - 1;
  fg_split_range((int64_t)s->w_elems, k->ith, k->nth, &b, &e);
  float *out = k->out;
  const float *partials = (const float *)((const char *)k->scratch + s->partials_off);
  for (int64_t p = 0; p < n_partials; p++)
    for (int64_t i = b; i < e; i++) out[i] += partials[p * (int64_t)s->w_elems + i];
}

static fg_status run_phase(const fg_kargs *k) {
  state *s = k->state;
  int saved = fg_dnn_threads_one();
  fg_status st = FG_OK;
  switch (s->phase_of[k->phase]) {
  case PH_WEIGHTS: st = k->ith < s->n_wjobs ? job_run(&s->wjobs[k->ith], k) : FG_OK; break;
  case PH_MAIN: st = k->ith < s->n_jobs ? job_run(&s->jobs[k->ith], k) : FG_OK; break;
  default: sum_partials(s, k); break;
  }
  fg_dnn_threads_restore(saved);
  return st;
}

fg_status fg_onednn_conv_f32(const fg_kargs *k) { return run_phase(k); }
fg_status fg_onednn_matmul_f32(const fg_kargs *k) { return run_phase(k); }

/* ---- parts ---- */

/* Part p of n items in `parts` parts: the larger ones first, two sizes at most (set 0 and 1). */
void fg_dnn_part_range(int64_t n, int parts, int p, int64_t *first, int64_t *count, int *set) {
  int64_t end;
  fg_split_range(n, p, parts, first, &end);
  *count = end - *first;
  *set = (n % parts) && *count == n / parts ? 1 : 0;
}

int fg_dnn_parts_for(int given, int64_t items, int64_t cap) {
  int64_t p = items < cap ? items : cap;
  p = p < given ? p : given;
  return p < 1 ? 1 : (int)p;
}

/* ---- layout names, for benchmarks ---- */

/* "aBcd16b" (oneDNN's verbose notation: outer dims by stride, capitals blocked, then blocks). */
static void layout_name(const dnnl_memory_desc_t *md, char *buf, size_t cap) {
  const dnnl_blocking_desc_t *blk = &md->format_desc.blocking;
  int used[DNNL_MAX_NDIMS] = {0};
  size_t at = 0;
  buf[0] = '\0';
  if (md->format_kind != dnnl_blocked) return;
  for (int k = 0; k < md->ndims && at + 1 < cap; k++) {
    int best = -1;
    for (int i = 0; i < md->ndims; i++)
      if (!used[i] && (best < 0 || blk->strides[i] > blk->strides[best])) best = i;
    used[best] = 1;
    bool blocked = false;
    for (int j = 0; j < blk->inner_nblks; j++) blocked |= blk->inner_idxs[j] == best;
    buf[at++] = (char)((blocked ? 'A' : 'a') + best);
    buf[at] = '\0';
  }
  for (int j = 0; j < blk->inner_nblks && at < cap; j++)
    at += (size_t)snprintf(buf + at, cap - at, "%lld%c", (long long)blk->inner_blks[j],
                           (char)('a' + blk->inner_idxs[j]));
}

/* "jit:avx512_core abcd>aBcd16b": the implementation, its activation input's and output's
 * layouts. */
void fg_dnn_describe_pd(const_dnnl_primitive_desc_t pd, const dnnl_memory_desc_t *in,
                        const dnnl_memory_desc_t *out, fg_kprep *a) {
  const char *impl = "";
  char li[32], lo[32];
  dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
  layout_name(in, li, sizeof li);
  layout_name(out, lo, sizeof lo);
  snprintf(a->info, sizeof a->info, "%s %s>%s", impl, li, lo);
}

/* ---- GEMM, and what the library is ---- */

bool fg_onednn_sgemm(const fg_gemm_dims *d, const float *a, const float *b, float *c) {
  int saved = fg_dnn_threads_one();
  dnnl_status_t st = dnnl_sgemm(d->ta ? 'T' : 'N', d->tb ? 'T' : 'N', d->m, d->n, d->k, 1.0f, a,
                                d->lda, b, d->ldb, d->accumulate ? 1.0f : 0.0f, c, d->ldc);
  fg_dnn_threads_restore(saved);
  return st == dnnl_success;
}

const char *fg_onednn_describe(char *buf, size_t cap) {
  const dnnl_version_t *v = dnnl_version();
  snprintf(buf, cap, "oneDNN %d.%d.%d, ISA %s", v->major, v->minor, v->patch,
           dnnl_cpu_isa2str(dnnl_get_effective_cpu_isa()));
  return buf;
}
