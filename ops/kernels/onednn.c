/* oneDNN behind conv2d, its transposes and matmul (ops/kernels/onednn.h): the only file that
 * calls oneDNN (the 2.x C API Debian 12 ships).
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

#include <math.h>
#include <omp.h>
#include <oneapi/dnnl/dnnl.h>
#include <oneapi/dnnl/dnnl_debug.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/runtime/threadpool.h"
#include "core/vec.h"
#include "ops/kernels/conv_internal.h"

enum {
  CONV_MAX_PARTS = 16, /* forward and input gradient: parts of the batch */
  WGRAD_MAX_PARTS = 4, /* weight gradient: each part adds a partial gradient to sum */
  MATMUL_MIN_ROWS = 32,
  SUM_MIN_ELEMS = 16384, /* per part of the weight gradient's sum */
  JOB_SLOTS = 12,
  JOB_EXECS = 6,
  EXEC_ARGS = 5,
  ALIGN = 64,
};

/* ---- the engine, threads ---- */

static dnnl_engine_t engine;
static pthread_once_t engine_once = PTHREAD_ONCE_INIT;

static void engine_make(void) {
  if (dnnl_engine_create(&engine, dnnl_cpu, 0) != dnnl_success) engine = NULL;
}

static dnnl_engine_t the_engine(void) {
  pthread_once(&engine_once, engine_make);
  return engine;
}

/* Sets the calling thread's OpenMP thread count to 1 (oneDNN then runs inline) and returns the
 * previous one, for threads_restore. */
static int threads_one(void) {
  int n = omp_get_max_threads();
  if (n != 1) omp_set_num_threads(1);
  return n;
}

static void threads_restore(int n) {
  if (n != 1) omp_set_num_threads(n);
}

/* ---- slots, jobs and the state that owns them ---- */

enum { FROM_IN0, FROM_IN1, FROM_IN2, FROM_OUT, FROM_SCRATCH };
#define PAD_PENDING ((size_t)-1) /* a scratchpad slot placed when its job is complete */

typedef struct slot {
  dnnl_memory_t mem;
  int from;    /* FROM_*: what its offset is from */
  size_t off;  /* bytes */
  void *bound; /* where mem points now */
} slot;

typedef struct exec {
  dnnl_primitive_t prim; /* owned by the state */
  int n_args;
  int arg[EXEC_ARGS], slot[EXEC_ARGS];
} exec;

typedef struct job {
  dnnl_stream_t stream;
  int n_slots, n_execs;
  slot slots[JOB_SLOTS];
  exec execs[JOB_EXECS];
  size_t pad_bytes; /* the largest scratchpad of its primitives */
} job;

/* What each phase of a run does. */
enum { PH_WEIGHTS, PH_MAIN, PH_SUM };

typedef struct state {
  int n_phases, phase_of[FG_KERNEL_MAX_PHASES];
  int n_jobs, n_wjobs; /* PH_MAIN: one job per part; PH_WEIGHTS: one per batch size */
  job *jobs, wjobs[2];
  size_t w_elems, partials_off; /* PH_SUM: weight-gradient elements and where partials are */
  int sum_parts;
  int64_t n_prims, cap_prims;
  dnnl_primitive_t *prims; /* every primitive its jobs run, owned */
} state;

/* Making a state: the first failure is kept, later calls do nothing. */
typedef struct builder {
  state *s;
  dnnl_status_t st;
  size_t scratch; /* bytes of scratch handed out so far */
} builder;

static bool ok(builder *b, dnnl_status_t st) {
  if (b->st == dnnl_success) b->st = st;
  return b->st == dnnl_success;
}

static size_t scratch_take(builder *b, size_t bytes) {
  size_t at = b->scratch;
  b->scratch += (bytes + ALIGN - 1) / ALIGN * ALIGN;
  return at;
}

static int slot_new(builder *b, job *j, const dnnl_memory_desc_t *md, int from, size_t off) {
  if (b->st != dnnl_success) return -1;
  if (j->n_slots == JOB_SLOTS) {
    ok(b, dnnl_runtime_error);
    return -1;
  }
  slot *s = &j->slots[j->n_slots];
  if (!ok(b, dnnl_memory_create(&s->mem, md, the_engine(), DNNL_MEMORY_NONE))) return -1;
  s->from = from, s->off = off, s->bound = NULL;
  return j->n_slots++;
}

static const dnnl_memory_desc_t *slot_md(const job *j, int slot) {
  const dnnl_memory_desc_t *md = NULL;
  dnnl_memory_get_memory_desc(j->slots[slot].mem, &md);
  return md;
}

static dnnl_primitive_attr_t user_scratchpad_attr(builder *b) {
  dnnl_primitive_attr_t attr = NULL;
  if (ok(b, dnnl_primitive_attr_create(&attr)))
    ok(b, dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user));
  return attr;
}

/* Adds a run of pd's primitive to j with these arguments, and its scratchpad. */
static void exec_add(builder *b, job *j, const_dnnl_primitive_desc_t pd, int n, const int *args,
                     const int *slots) {
  if (b->st != dnnl_success) return;
  if (j->n_execs == JOB_EXECS || n + 1 > EXEC_ARGS) {
    ok(b, dnnl_runtime_error);
    return;
  }
  if (!FG_VEC_RESERVE(b->s->prims, b->s->cap_prims, b->s->n_prims + 1)) {
    ok(b, dnnl_out_of_memory);
    return;
  }
  exec *x = &j->execs[j->n_execs];
  if (!ok(b, dnnl_primitive_create(&x->prim, pd))) return;
  b->s->prims[b->s->n_prims++] = x->prim;
  x->n_args = n;
  for (int i = 0; i < n; i++) x->arg[i] = args[i], x->slot[i] = slots[i];
  const dnnl_memory_desc_t *pad = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
  size_t bytes = pad ? dnnl_memory_desc_get_size(pad) : 0;
  if (bytes) {
    x->arg[x->n_args] = DNNL_ARG_SCRATCHPAD;
    x->slot[x->n_args++] = slot_new(b, j, pad, FROM_SCRATCH, PAD_PENDING);
    if (bytes > j->pad_bytes) j->pad_bytes = bytes;
  }
  j->n_execs++;
}

/* A reorder between two slots of j. */
static void reorder_add(builder *b, job *j, int from, int to) {
  if (b->st != dnnl_success) return;
  dnnl_primitive_attr_t attr = user_scratchpad_attr(b);
  dnnl_primitive_desc_t pd = NULL;
  if (ok(b, dnnl_reorder_primitive_desc_create(&pd, slot_md(j, from), the_engine(),
                                                slot_md(j, to), the_engine(), attr)))
    exec_add(b, j, pd, 2, (const int[]){DNNL_ARG_FROM, DNNL_ARG_TO}, (const int[]){from, to});
  dnnl_primitive_desc_destroy(pd);
  dnnl_primitive_attr_destroy(attr);
}

/* The slot a primitive gets for an operand in `user` memory of layout user_md: that memory when
 * it chose the same layout, else scratch in its layout (*user_slot is then the user memory's
 * slot, for the reorder the caller adds; -1 otherwise). */
static int operand(builder *b, job *j, const dnnl_memory_desc_t *user_md,
                   const dnnl_memory_desc_t *chosen, int from, size_t off, int *user_slot) {
  int user = slot_new(b, j, user_md, from, off);
  if (b->st != dnnl_success || dnnl_memory_desc_equal(user_md, chosen)) {
    *user_slot = -1;
    return user;
  }
  *user_slot = user;
  return slot_new(b, j, chosen, FROM_SCRATCH, scratch_take(b, dnnl_memory_desc_get_size(chosen)));
}

static int input(builder *b, job *j, const dnnl_memory_desc_t *user_md,
                 const dnnl_memory_desc_t *chosen, int from, size_t off) {
  int user, s = operand(b, j, user_md, chosen, from, off, &user);
  if (user >= 0) reorder_add(b, j, user, s);
  return s;
}

/* Places j's scratchpad slots in one range of scratch, and makes its stream. */
static void job_finish(builder *b, job *j) {
  size_t at = j->pad_bytes ? scratch_take(b, j->pad_bytes) : 0;
  for (int i = 0; i < j->n_slots; i++)
    if (j->slots[i].off == PAD_PENDING) j->slots[i].off = at;
  if (b->st == dnnl_success)
    ok(b, dnnl_stream_create(&j->stream, the_engine(), dnnl_stream_default_flags));
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

static state *state_new(int n_jobs) {
  state *s = calloc(1, sizeof *s);
  if (s && !(s->jobs = calloc((size_t)n_jobs, sizeof *s->jobs))) {
    free(s);
    return NULL;
  }
  if (s) s->n_jobs = n_jobs;
  return s;
}

/* Ends a prepare: the state and its scratch on success, else everything freed and why. */
static fg_status prepare_end(builder *b, fg_kprep *a, void **out, int saved_threads,
                             const char *what, fg_err *e) {
  threads_restore(saved_threads);
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
  int saved = threads_one();
  fg_status st = FG_OK;
  switch (s->phase_of[k->phase]) {
  case PH_WEIGHTS: st = k->ith < s->n_wjobs ? job_run(&s->wjobs[k->ith], k) : FG_OK; break;
  case PH_MAIN: st = k->ith < s->n_jobs ? job_run(&s->jobs[k->ith], k) : FG_OK; break;
  default: sum_partials(s, k); break;
  }
  threads_restore(saved);
  return st;
}

fg_status fg_onednn_conv_f32(const fg_kargs *k) { return run_phase(k); }
fg_status fg_onednn_matmul_f32(const fg_kargs *k) { return run_phase(k); }

/* ---- parts ---- */

/* Part p of n items in `parts` parts: the larger ones first, two sizes at most (set 0 and 1). */
static void part_range(int64_t n, int parts, int p, int64_t *first, int64_t *count, int *set) {
  int64_t end;
  fg_split_range(n, p, parts, first, &end);
  *count = end - *first;
  *set = (n % parts) && *count == n / parts ? 1 : 0;
}

static int parts_for(int given, int64_t items, int64_t cap) {
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
static void describe_pd(const_dnnl_primitive_desc_t pd, const dnnl_memory_desc_t *in,
                        const dnnl_memory_desc_t *out, fg_kprep *a) {
  const char *impl = "";
  char li[32], lo[32];
  dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
  layout_name(in, li, sizeof li);
  layout_name(out, lo, sizeof lo);
  snprintf(a->info, sizeof a->info, "%s %s>%s", impl, li, lo);
}

/* ---- convolutions ---- */

static void dims4(dnnl_dims_t d, int64_t a, int64_t b, int64_t c, int64_t e) {
  d[0] = a, d[1] = b, d[2] = c, d[3] = e;
}

/* Memory descriptors of a conv with batch nb: x, w, y in NCHW / OIHW or any; the bias as
 * [1, O, 1, 1] (added by a post-op).  x or y may be in the blocked layout nChw16c instead of
 * NCHW (xb, yb: the program keeps that value blocked, fg_kargs.blocked). */
typedef struct conv_mds {
  dnnl_memory_desc_t x, w, b, y;
} conv_mds;

static void conv_mds_init(builder *b, conv_mds *m, const conv_geom *g, int64_t nb, bool any,
                          bool xb, bool yb) {
  dnnl_dims_t x, w, y, bias = {1, g->o, 1, 1};
  dims4(x, nb, g->c, g->h, g->w), dims4(w, g->o, g->c, g->kh, g->kw);
  dims4(y, nb, g->o, g->ho, g->wo);
  dnnl_format_tag_t xt = any ? dnnl_format_tag_any : xb ? dnnl_aBcd16b : dnnl_nchw;
  dnnl_format_tag_t yt = any ? dnnl_format_tag_any : yb ? dnnl_aBcd16b : dnnl_nchw;
  ok(b, dnnl_memory_desc_init_by_tag(&m->x, 4, x, dnnl_f32, xt));
  ok(b, dnnl_memory_desc_init_by_tag(&m->w, 4, w, dnnl_f32, any ? dnnl_format_tag_any : dnnl_oihw));
  ok(b, dnnl_memory_desc_init_by_tag(&m->y, 4, y, dnnl_f32, yt));
  ok(b, dnnl_memory_desc_init_by_tag(&m->b, 4, bias, dnnl_f32, dnnl_nchw));
}

/* conv2d_bias_act's epilogue as post-ops after the accumulation: + bias, then max(x, 0) as a
 * clip to [0, inf], which rounds and treats -0 and NaN as the separate add and relu kernels do
 * (bit-identical, so the epilogue pass stays exact). */
static void epilogue_attr(builder *b, dnnl_primitive_attr_t attr, const conv_mds *m, bool relu) {
  dnnl_post_ops_t po = NULL;
  if (ok(b, dnnl_post_ops_create(&po)) &&
      ok(b, dnnl_post_ops_append_binary(po, dnnl_binary_add, &m->b)) &&
      (!relu || ok(b, dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_clip, 0.0f, INFINITY))))
    ok(b, dnnl_primitive_attr_set_post_ops(attr, po));
  dnnl_post_ops_destroy(po);
}

/* The primitive descriptor of one conv op at batch nb (NULL after a failure). */
static dnnl_primitive_desc_t conv_pd(builder *b, const conv_geom *g, conv_kind kind, int64_t nb,
                                     bool any, bool bias, bool relu) {
  conv_mds m;
  conv_mds_init(b, &m, g, nb, any, false, false);
  dnnl_dims_t strides = {g->sh, g->sw}, dil = {g->dh - 1, g->dw - 1}, pl = {g->ph, g->pw};
  dnnl_dims_t pr = {(g->ho - 1) * g->sh + (g->kh - 1) * g->dh + 1 - g->h - g->ph,
                    (g->wo - 1) * g->sw + (g->kw - 1) * g->dw + 1 - g->w - g->pw};
  dnnl_convolution_desc_t fwd, cd;
  dnnl_primitive_attr_t attr = user_scratchpad_attr(b);
  dnnl_primitive_desc_t hint = NULL, pd = NULL;
  dnnl_alg_kind_t alg = dnnl_convolution_direct;
  ok(b, dnnl_dilated_convolution_forward_desc_init(&fwd, dnnl_forward_training, alg, &m.x, &m.w,
                                                   NULL, &m.y, strides, dil, pl, pr));
  if (kind == CONV_FORWARD && bias) epilogue_attr(b, attr, &m, relu);
  if (kind == CONV_FORWARD) {
    if (b->st == dnnl_success)
      ok(b, dnnl_primitive_desc_create(&pd, &fwd, attr, the_engine(), NULL));
  } else if (b->st == dnnl_success &&
             ok(b, dnnl_primitive_desc_create(&hint, &fwd, NULL, the_engine(), NULL))) {
    if (kind == CONV_INPUT_GRAD)
      ok(b, dnnl_dilated_convolution_backward_data_desc_init(&cd, alg, &m.x, &m.w, &m.y, strides,
                                                             dil, pl, pr));
    else
      ok(b, dnnl_dilated_convolution_backward_weights_desc_init(&cd, alg, &m.x, &m.w, NULL, &m.y,
                                                                strides, dil, pl, pr));
    if (b->st == dnnl_success)
      ok(b, dnnl_primitive_desc_create(&pd, &cd, attr, the_engine(), hint));
  }
  dnnl_primitive_desc_destroy(hint);
  dnnl_primitive_attr_destroy(attr);
  return b->st == dnnl_success ? pd : NULL;
}

/* The mds a conv's primitive chose: its activation input (x or dy), weights, and output. */
typedef struct conv_chosen {
  const dnnl_memory_desc_t *in, *w, *in2, *out;
} conv_chosen;

static conv_chosen chosen_of(const_dnnl_primitive_desc_t pd, conv_kind kind) {
  conv_chosen c = {0};
  switch (kind) {
  case CONV_FORWARD:
    c.in = dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0);
    c.w = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    c.out = dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0);
    break;
  case CONV_INPUT_GRAD:
    c.in = dnnl_primitive_desc_query_md(pd, dnnl_query_diff_dst_md, 0);
    c.w = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    c.out = dnnl_primitive_desc_query_md(pd, dnnl_query_diff_src_md, 0);
    break;
  default:
    c.in = dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0);
    c.in2 = dnnl_primitive_desc_query_md(pd, dnnl_query_diff_dst_md, 0);
    c.out = dnnl_primitive_desc_query_md(pd, dnnl_query_diff_weights_md, 0);
    break;
  }
  return c;
}

/* What a conv prepare knows while it builds. */
typedef struct conv_build {
  conv_geom g;
  conv_kind kind;
  bool bias, relu;
  dnnl_primitive_desc_t pd[2]; /* per batch size */
  conv_mds user[2];            /* NCHW / OIHW per batch size */
  size_t wbuf[2];              /* scratch offset of the weights in the layout of set s */
  bool wreorder[2];
} conv_build;

/* Set s's weights job: user weights reordered into the layout its primitive chose. */
static void weights_job(builder *b, conv_build *c, int s) {
  job *j = &b->s->wjobs[s];
  conv_chosen ch = chosen_of(c->pd[s], c->kind);
  c->wreorder[s] = !dnnl_memory_desc_equal(&c->user[s].w, ch.w);
  if (c->wreorder[s]) {
    c->wbuf[s] = scratch_take(b, dnnl_memory_desc_get_size(ch.w));
    int from = slot_new(b, j, &c->user[s].w, FROM_IN1, 0);
    reorder_add(b, j, from, slot_new(b, j, ch.w, FROM_SCRATCH, c->wbuf[s]));
  }
  job_finish(b, j);
}

/* Part p's job: batch n0 .. n0 + nb of its set s. */
static void conv_part(builder *b, conv_build *c, job *j, int p, int64_t n0, int s) {
  const conv_geom *g = &c->g;
  conv_chosen ch = chosen_of(c->pd[s], c->kind);
  const conv_mds *u = &c->user[s];
  size_t xo = (size_t)(n0 * g->c * g->h * g->w) * 4, yo = (size_t)(n0 * g->o * g->ho * g->wo) * 4;
  int out_user, out, args[4], slots[4], n = 0;
  if (c->kind == CONV_WEIGHT_GRAD) {
    slots[n] = input(b, j, &u->x, ch.in, FROM_IN0, xo), args[n++] = DNNL_ARG_SRC;
    slots[n] = input(b, j, &u->y, ch.in2, FROM_IN1, yo), args[n++] = DNNL_ARG_DIFF_DST;
    size_t at = p == 0 ? 0 : b->s->partials_off + (size_t)(p - 1) * b->s->w_elems * 4;
    out = operand(b, j, &u->w, ch.out, p == 0 ? FROM_OUT : FROM_SCRATCH, at, &out_user);
    args[n] = DNNL_ARG_DIFF_WEIGHTS;
  } else {
    bool fwd = c->kind == CONV_FORWARD;
    slots[n] = input(b, j, fwd ? &u->x : &u->y, ch.in, FROM_IN0, fwd ? xo : yo);
    args[n++] = fwd ? DNNL_ARG_SRC : DNNL_ARG_DIFF_DST;
    slots[n] = c->wreorder[s] ? slot_new(b, j, ch.w, FROM_SCRATCH, c->wbuf[s])
                              : slot_new(b, j, &u->w, FROM_IN1, 0);
    args[n++] = DNNL_ARG_WEIGHTS;
    if (c->bias) {
      slots[n] = slot_new(b, j, &u->b, FROM_IN2, 0);
      args[n++] = DNNL_ARG_ATTR_MULTIPLE_POST_OP(0) | DNNL_ARG_SRC_1;
    }
    out = operand(b, j, fwd ? &u->y : &u->x, ch.out, FROM_OUT, fwd ? yo : xo, &out_user);
    args[n] = fwd ? DNNL_ARG_DST : DNNL_ARG_DIFF_SRC;
  }
  slots[n++] = out;
  exec_add(b, j, c->pd[s], n, args, slots);
  if (out_user >= 0) reorder_add(b, j, out, out_user);
  job_finish(b, j);
}

/* The activations a program may hand this conv in the blocked layout nChw16c, or have it
 * write so (fg_kprep.blocked_ok): those with channels a multiple of 16, when the primitive
 * chooses its layouts.  Where it chose nChw16c too, no reorder runs; where it chose another
 * (plain NCHW for 2 or 4 input channels, 8-channel blocks for some weight gradients), it
 * reorders from or to nChw16c instead of NCHW, at the same cost. */
static uint32_t blocked_ok_of(const conv_geom *g, conv_kind kind) {
  bool x = g->c % 16 == 0, y = g->o % 16 == 0;
  switch (kind) {
  case CONV_FORWARD: return (x ? 1u : 0) | (y ? FG_BLOCKED_OUT : 0);      /* x -> y */
  case CONV_INPUT_GRAD: return (y ? 1u : 0) | (x ? FG_BLOCKED_OUT : 0);   /* dy -> dx */
  default: return (x ? 1u : 0) | (y ? 2u : 0);                            /* x, dy -> dw */
  }
}

/* Which of x and y the program gives or wants blocked (fg_kprep.blocked, by operand). */
static void blocked_xy(uint32_t blocked, conv_kind kind, bool *xb, bool *yb) {
  switch (kind) {
  case CONV_FORWARD: *xb = blocked & 1u, *yb = blocked & FG_BLOCKED_OUT; break;
  case CONV_INPUT_GRAD: *yb = blocked & 1u, *xb = blocked & FG_BLOCKED_OUT; break;
  default: *xb = blocked & 1u, *yb = blocked & 2u; break;
  }
}

static fg_status conv_prepare(fg_kprep *a, void **out, bool any, fg_err *e) {
  conv_build c = {.kind = fg_conv_kind_of(a->op)};
  c.g = fg_conv_geom_of(a->attr, a->in_shape, &a->out_shape, c.kind);
  c.bias = a->op == FG_OP_CONV2D_BIAS_ACT;
  c.relu = c.bias && ((const fg_conv2d_bias_act_attr *)a->attr)->relu;
  const conv_geom *g = &c.g;
  if (a->out_dtype != FG_F32 || !the_engine() || g->n * g->c * g->o * g->ho * g->wo == 0)
    return fg_err_set(e, FG_E_MISUSE, "oneDNN computes non-empty float32 convolutions only");
  bool wgrad = c.kind == CONV_WEIGHT_GRAD;
  int given = a->parts[0];
  int parts = parts_for(given, g->n, wgrad ? WGRAD_MAX_PARTS : CONV_MAX_PARTS);
  builder b = {.s = state_new(parts)};
  int saved = threads_one();
  bool xb, yb;
  blocked_xy(any ? a->blocked : 0, c.kind, &xb, &yb);
  if (!b.s) ok(&b, dnnl_out_of_memory);
  a->blocked_ok = any ? blocked_ok_of(g, c.kind) : 0;
  for (int s = 0; s < (g->n % parts ? 2 : 1) && b.st == dnnl_success; s++) {
    int64_t nb = g->n / parts + (g->n % parts && s == 0 ? 1 : 0);
    conv_mds_init(&b, &c.user[s], g, nb, false, xb, yb);
    c.pd[s] = conv_pd(&b, g, c.kind, nb, any, c.bias, c.relu);
  }
  if (b.st == dnnl_success) {
    state *st = b.s;
    st->w_elems = (size_t)(g->o * g->c * g->kh * g->kw);
    if (wgrad) st->partials_off = scratch_take(&b, (size_t)(parts - 1) * st->w_elems * 4);
    st->n_wjobs = wgrad ? 0 : g->n % parts ? 2 : 1;
    for (int s = 0; s < st->n_wjobs; s++) weights_job(&b, &c, s);
    for (int p = 0; p < parts; p++) {
      int64_t n0, nb;
      int s;
      part_range(g->n, parts, p, &n0, &nb, &s);
      conv_part(&b, &c, &st->jobs[p], p, n0, s);
    }
    bool reorder_w = st->n_wjobs && (c.wreorder[0] || c.wreorder[1]);
    st->n_phases = 0;
    if (reorder_w) st->phase_of[st->n_phases] = PH_WEIGHTS, a->parts[st->n_phases++] = st->n_wjobs;
    st->phase_of[st->n_phases] = PH_MAIN, a->parts[st->n_phases++] = parts;
    st->sum_parts = parts_for(given, (int64_t)st->w_elems / SUM_MIN_ELEMS, CONV_MAX_PARTS);
    if (wgrad && parts > 1)
      st->phase_of[st->n_phases] = PH_SUM, a->parts[st->n_phases++] = st->sum_parts;
    conv_chosen ch = chosen_of(c.pd[0], c.kind);
    describe_pd(c.pd[0], ch.in, ch.out, a);
  }
  for (int s = 0; s < 2; s++) dnnl_primitive_desc_destroy(c.pd[s]);
  return prepare_end(&b, a, out, saved, "convolution", e);
}

fg_status fg_onednn_conv_prepare(fg_kprep *a, void **state, fg_err *e) {
  return conv_prepare(a, state, true, e);
}
fg_status fg_onednn_conv_prepare_nchw(fg_kprep *a, void **state, fg_err *e) {
  return conv_prepare(a, state, false, e);
}

/* ---- matmul ---- */

/* A matmul as oneDNN sees it: rows mode, one [R, K] @ [K, N] split by rows; or batch mode,
 * [Ba, M, K] @ [Bb, K, N] with Ba, Bb each 1 or B, split by batch items. */
typedef struct mm_geom {
  bool ta, tb, rows;
  int64_t batch, ba, bb, m, k, n;
} mm_geom;

static bool mm_geom_of(const fg_kprep *a, mm_geom *g) {
  const fg_matmul_attr *at = a->attr;
  const fg_shape *sa = &a->in_shape[0], *sb = &a->in_shape[1];
  g->ta = at->trans_a, g->tb = at->trans_b;
  g->m = a->out_shape.d[a->out_shape.ndim - 2], g->n = a->out_shape.d[a->out_shape.ndim - 1];
  g->k = sa->d[sa->ndim - (g->ta ? 2 : 1)];
  g->batch = fg_shape_count(&a->out_shape) / (g->m * g->n > 0 ? g->m * g->n : 1);
  g->ba = fg_shape_count(sa) / (g->m * g->k > 0 ? g->m * g->k : 1);
  g->bb = fg_shape_count(sb) / (g->k * g->n > 0 ? g->k * g->n : 1);
  /* each operand's batch is whole or absent: its element count says which */
  if ((g->ba != 1 && g->ba != g->batch) || (g->bb != 1 && g->bb != g->batch)) return false;
  g->rows = g->batch == 1 || (g->bb == 1 && !g->ta && g->ba == g->batch);
  return g->batch * g->m * g->n * g->k > 0;
}

/* Descriptor of an operand read as [nb, r, c] (batched) or [r, c]: stored row-major with
 * rows ld apart, or transposed (stored [c, ld]) when t; batch items bstride apart. */
static void mm_md(builder *b, dnnl_memory_desc_t *md, bool batched, int64_t nb, int64_t r,
                  int64_t c, bool t, int64_t ld, int64_t bstride) {
  dnnl_dims_t d = {nb, r, c}, s = {bstride, t ? 1 : ld, t ? ld : 1};
  int off = batched ? 0 : 1;
  ok(b, dnnl_memory_desc_init_by_strides(md, 3 - off, d + off, dnnl_f32, s + off));
}

/* Part p's job over items i0 .. i0 + ni (rows or batch items). */
static void mm_part(builder *b, const mm_geom *g, job *j, int64_t i0, int64_t ni) {
  dnnl_memory_desc_t a, w, d;
  int64_t rows = g->rows ? ni : g->m, nb = g->rows ? 1 : ni;
  bool batched = !g->rows;
  mm_md(b, &a, batched, g->ba == 1 ? 1 : nb, rows, g->k, g->ta, g->ta ? g->m : g->k, g->m * g->k);
  mm_md(b, &w, batched, g->bb == 1 ? 1 : nb, g->k, g->n, g->tb, g->tb ? g->k : g->n, g->k * g->n);
  mm_md(b, &d, batched, nb, rows, g->n, false, g->n, g->m * g->n);
  size_t ao = g->rows ? (size_t)(g->ta ? i0 : i0 * g->k) * 4
              : g->ba == 1 ? 0 : (size_t)(i0 * g->m * g->k) * 4;
  size_t wo = g->rows || g->bb == 1 ? 0 : (size_t)(i0 * g->k * g->n) * 4;
  size_t dofs = (size_t)(g->rows ? i0 * g->n : i0 * g->m * g->n) * 4;
  dnnl_matmul_desc_t md;
  dnnl_primitive_attr_t attr = user_scratchpad_attr(b);
  dnnl_primitive_desc_t pd = NULL;
  if (ok(b, dnnl_matmul_desc_init(&md, &a, &w, NULL, &d)) &&
      ok(b, dnnl_primitive_desc_create(&pd, &md, attr, the_engine(), NULL))) {
    int slots[3] = {slot_new(b, j, &a, FROM_IN0, ao), slot_new(b, j, &w, FROM_IN1, wo),
                    slot_new(b, j, &d, FROM_OUT, dofs)};
    exec_add(b, j, pd, 3, (const int[]){DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_DST}, slots);
  }
  dnnl_primitive_desc_destroy(pd);
  dnnl_primitive_attr_destroy(attr);
  job_finish(b, j);
}

fg_status fg_onednn_matmul_prepare(fg_kprep *a, void **out, fg_err *e) {
  mm_geom g;
  if (a->out_dtype != FG_F32 || !the_engine() || !mm_geom_of(a, &g))
    return fg_err_set(e, FG_E_MISUSE, "oneDNN computes non-empty float32 matmuls whose batch "
                      "dims are whole or absent on each side");
  int64_t items = g.rows ? g.batch * g.m : g.batch;
  int parts = parts_for(a->parts[0], g.rows ? (items + MATMUL_MIN_ROWS - 1) / MATMUL_MIN_ROWS
                                            : items, FG_POOL_MAX_FIXED_PARTS);
  builder b = {.s = state_new(parts)};
  int saved = threads_one();
  if (!b.s) ok(&b, dnnl_out_of_memory);
  for (int p = 0; p < parts && b.st == dnnl_success; p++) {
    int64_t i0, ni;
    int s;
    part_range(items, parts, p, &i0, &ni, &s);
    mm_part(&b, &g, &b.s->jobs[p], i0, ni);
  }
  if (b.st == dnnl_success) {
    b.s->n_phases = 1, b.s->phase_of[0] = PH_MAIN, a->parts[0] = parts;
    snprintf(a->info, sizeof a->info, "%s", g.rows ? "rows" : "batch");
  }
  return prepare_end(&b, a, out, saved, "matmul", e);
}

/* ---- GEMM, and what the library is ---- */

bool fg_onednn_sgemm(const fg_gemm_dims *d, const float *a, const float *b, float *c) {
  int saved = threads_one();
  dnnl_status_t st = dnnl_sgemm(d->ta ? 'T' : 'N', d->tb ? 'T' : 'N', d->m, d->n, d->k, 1.0f, a,
                                d->lda, b, d->ldb, d->accumulate ? 1.0f : 0.0f, c, d->ldc);
  threads_restore(saved);
  return st == dnnl_success;
}

const char *fg_onednn_describe(char *buf, size_t cap) {
  const dnnl_version_t *v = dnnl_version();
  snprintf(buf, cap, "oneDNN %d.%d.%d, ISA %s", v->major, v->minor, v->patch,
           dnnl_cpu_isa2str(dnnl_get_effective_cpu_isa()));
  return buf;
}
