/* Choosing each step's implementation when a program is compiled (kernel_choice.h): the rules
 * of FG_KERNELS, the timing of the candidates, and the process-wide memory of what was chosen.
 *
 * Timing.  Every implementation that prepares for the node runs it on the program's pool, on
 * buffers of the node's shapes filled with small values: once each to warm up (first touch, JIT
 * caches), then TIME_RUNS rounds in which every candidate runs once, in turn, and each one's
 * median run counts.  Like with like: on a shared machine the load changes from one millisecond
 * to the next, so candidates timed one after another (all of A's runs, then all of B's) see
 * different machines, and the fastest run of each measures it undisturbed, while the program
 * will run under the same load as the rest of the process.  Rounds put every candidate under the
 * same conditions, and the median prefers the implementation that stays fast when a thread loses
 * its core (fewer, longer parts wait longer for a straggler).  A candidate over SLOWER_CUTOFF
 * times the best in the first round is dropped after it.  Ties go to the earlier one in the
 * op's list.  The native kernels (the descriptor's, by their fixed rules) run in the rounds too,
 * as the baseline: another implementation replaces them only when its median is under
 * (100 - CLEAR_WIN_PCT) % of theirs; one that computes exactly as they do (fg_kprep.as_native,
 * e.g. the conv path the fixed rules pick) is not timed apart from them.  A near tie gains
 * nothing, and on a busy machine a choice between near ties is the noise's; the fixed rules
 * also pick the same in every process.
 *
 * Memory.  Choices are keyed by op, dtype, attributes, input and output shapes and the
 * executor's part count, and kept for the life of the process: programs with the same shapes
 * (training, log-prob and sampling programs of one model) time each shape once and agree.
 * Results of different implementations differ in the last bits, so the choices also go to a
 * file (kernel_cache.h) that later processes on the machine read first: a second run, or a
 * resume in a new process, computes with the same kernels.  FG_KERNELS with no `auto`, or
 * FG_DETERMINISTIC, makes the choice fixed without any file. */
#include "core/runtime/kernel_choice.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <xxhash.h>

#include "core/buffer.h"
#include "core/runtime/kernel_cache.h"
#include "core/vec.h"

enum {
  TIME_RUNS = 5, /* odd: the median is one run */
  SLOWER_CUTOFF = 3,
  CLEAR_WIN_PCT = 10, /* how much faster than the native kernels another must be */
  MAX_NODE_INPUTS = 16, /* ops with alternatives have a few inputs */
  KEY_MAX = 1024,
};

/* ---- FG_KERNELS ---- */

static bool word_is(const char *w, size_t len, const char *name) {
  return strlen(name) == len && strncmp(w, name, len) == 0;
}

/* The ops a target names: an op name, a prefix ending in '*', or '*'. */
static bool target_matches(const char *t, size_t len, const char *op) {
  if (len > 0 && t[len - 1] == '*') return strncmp(op, t, len - 1) == 0;
  return word_is(t, len, op);
}

static int impl_index(const fg_op_def *d, const char *w, size_t len) {
  for (int i = 0; i < d->n_impls; i++)
    if (word_is(w, len, d->impls[i].name)) return i;
  return -1;
}

/* Applies one rule; returns the number of ops it set. */
static int apply_rule(fg_kernel_rules *r, const char *t, size_t tlen, const char *c, size_t clen) {
  int set = 0;
  for (int op = 0; op < FG_OP_COUNT; op++) {
    const fg_op_def *d = fg_op_get(op);
    if (!d->n_impls || !target_matches(t, tlen, d->name)) continue;
    int impl = impl_index(d, c, clen);
    bool keyword = word_is(c, clen, "auto") || word_is(c, clen, "native");
    if (!keyword && impl < 0) continue;
    r->mode[op] = word_is(c, clen, "auto") ? KRULE_AUTO : keyword ? KRULE_NATIVE : KRULE_IMPL;
    r->impl[op] = (int8_t)impl;
    set++;
  }
  return set;
}

/* "conv2d (onednn, direct), matmul (onednn, gemm)": what a rule may name. */
static void list_impls(char *buf, size_t cap) {
  size_t used = 0;
  buf[0] = '\0';
  for (int op = 0; op < FG_OP_COUNT && used < cap; op++) {
    const fg_op_def *d = fg_op_get(op);
    if (!d->n_impls) continue;
    used += (size_t)snprintf(buf + used, cap - used, "%s%s (", used ? ", " : "", d->name);
    for (int i = 0; i < d->n_impls && used < cap; i++)
      used += (size_t)snprintf(buf + used, cap - used, "%s%s", i ? ", " : "", d->impls[i].name);
    if (used < cap) used += (size_t)snprintf(buf + used, cap - used, ")");
  }
}

fg_status fg__kernel_rules_parse(fg_kernel_rules *r, const char *text, fg_err *e) {
  memset(r, 0, sizeof *r);
  for (const char *p = text ? text : ""; *p;) {
    size_t len = strcspn(p, ", ");
    const char *eq = memchr(p, '=', len);
    const char *t = eq ? p : "*", *c = eq ? eq + 1 : p;
    size_t tlen = eq ? (size_t)(eq - p) : 1, clen = eq ? len - tlen - 1 : len;
    if (len && apply_rule(r, t, tlen, c, clen) == 0) {
      char known[768];
      list_impls(known, sizeof known);
      return fg_err_set(e, FG_E_MISUSE, "FG_KERNELS: '%.*s' names no op with that kernel (auto, "
                        "native, or one of %s)", (int)len, p, known);
    }
    p += len;
    p += strspn(p, ", ");
  }
  return FG_OK;
}

/* ---- the process's memory of choices ---- */

typedef struct remembered {
  size_t key_len;
  unsigned char *key;
  int impl; /* -1: native */
} remembered;

static pthread_mutex_t memory_lock = PTHREAD_MUTEX_INITIALIZER;
static remembered *memory;
static int64_t memory_len, memory_cap;

static size_t append(unsigned char *key, size_t at, const void *p, size_t n) {
  if (n && at + n <= KEY_MAX) memcpy(key + at, p, n); /* p is NULL for an op without attributes */
  return at + n;
}

/* The node's key: op, dtype, attributes, input shapes and dtypes, output shape, parts. */
static size_t make_key(unsigned char *key, const fg_graph *g, fg_node n, int parts) {
  const fg_node_rec *r = fg_graph_node(g, n);
  size_t at = append(key, 0, &r->op, sizeof r->op);
  at = append(key, at, &r->dtype, sizeof r->dtype);
  at = append(key, at, r->attr, r->attr ? fg_op_get(r->op)->attr_size : 0);
  for (int i = 0; i < r->n_in; i++) {
    fg_node x = fg_node_input(g, n, i);
    fg_shape s = fg_node_shape(g, x);
    uint8_t t = (uint8_t)fg_node_dtype(g, x);
    at = append(key, at, &s, sizeof s);
    at = append(key, at, &t, 1);
  }
  at = append(key, at, &r->shape, sizeof r->shape);
  return append(key, at, &parts, sizeof parts);
}

/* Adds key -> impl to the memory unless the key is there (the first choice stays); forgetting
 * it when out of memory only costs a later re-timing. */
static void memory_add(const unsigned char *key, size_t len, int impl) {
  unsigned char *copy = malloc(len);
  if (!copy) return;
  memcpy(copy, key, len);
  pthread_mutex_lock(&memory_lock);
  bool known = false;
  for (int64_t i = 0; i < memory_len && !known; i++)
    known = memory[i].key_len == len && memcmp(memory[i].key, key, len) == 0;
  if (!known && FG_VEC_RESERVE(memory, memory_cap, memory_len + 1)) {
    memory[memory_len++] = (remembered){len, copy, impl};
    copy = NULL;
  }
  pthread_mutex_unlock(&memory_lock);
  free(copy);
}

static pthread_once_t cache_once = PTHREAD_ONCE_INIT;
static void load_cache(void) { fg__kernel_cache_load(memory_add); }

/* The remembered choice for key (this process's, or one the cache file kept), or -2. */
static int recall(const unsigned char *key, size_t len) {
  pthread_once(&cache_once, load_cache);
  int found = -2;
  pthread_mutex_lock(&memory_lock);
  for (int64_t i = 0; i < memory_len && found == -2; i++)
    if (memory[i].key_len == len && memcmp(memory[i].key, key, len) == 0) found = memory[i].impl;
  pthread_mutex_unlock(&memory_lock);
  return found;
}

/* Remembers a timed choice, here and in the cache file for later processes. */
static void remember(const unsigned char *key, size_t len, int impl) {
  memory_add(key, len, impl);
  fg__kernel_cache_store(key, len, impl);
}

/* ---- preparing and timing one candidate ---- */

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* The node's shapes, for prepare and for the timing buffers. */
typedef struct node_view {
  const fg_node_rec *r;
  fg_shape in_shape[MAX_NODE_INPUTS];
  fg_dtype in_dtype[MAX_NODE_INPUTS];
} node_view;

static void prep_init(fg_kprep *a, const node_view *v, int parts) {
  memset(a, 0, sizeof *a);
  *a = (fg_kprep){.op = v->r->op, .attr = v->r->attr, .n_in = v->r->n_in, .in_shape = v->in_shape,
                  .in_dtype = v->in_dtype, .out_shape = v->r->shape,
                  .out_dtype = (fg_dtype)v->r->dtype, .n_phases = 1, .parts = {parts}};
}

static fg_kernel_fn kernel_for(const fg_kernel_impl *impl, const fg_node_rec *r) {
  return r->dtype == FG_F64 ? impl->kernel_f64 : impl->kernel_f32;
}

/* The kernel candidate c runs: its implementation's, or the descriptor's (native). */
static fg_kernel_fn kernel_of(const fg_kernel_choice *c, const fg_node_rec *r) {
  const fg_op_def *d = fg_op_get(r->op);
  return c->impl ? kernel_for(c->impl, r) : r->dtype == FG_F64 ? d->kernel_f64 : d->kernel_f32;
}

static bool prep_valid(const fg_kprep *a) {
  if (a->n_phases < 1 || a->n_phases > FG_KERNEL_MAX_PHASES) return false;
  for (int ph = 0; ph < a->n_phases; ph++)
    if (a->parts[ph] < 1 || a->parts[ph] > FG_POOL_MAX_FIXED_PARTS) return false;
  return true;
}

/* Prepares impl for the node into c; false when it does not compute it. */
static bool try_prepare(fg_kernel_choice *c, const fg_kernel_impl *impl, const node_view *v,
                        int parts, uint32_t blocked, fg_err *why) {
  memset(c, 0, sizeof *c);
  prep_init(&c->prep, v, parts);
  c->prep.blocked = blocked;
  if (!kernel_for(impl, v->r)) {
    fg_err_set(why, FG_E_MISUSE, "no kernel for this dtype");
    return false;
  }
  if (impl->prepare && impl->prepare(&c->prep, &c->state, why) != FG_OK) {
    if (impl->release && c->state) impl->release(c->state);
    memset(c, 0, sizeof *c);
    return false;
  }
  c->impl = impl;
  if (!prep_valid(&c->prep)) { /* a broken implementation is one that does not apply */
    fg__kernel_choice_release(c);
    return false;
  }
  return true;
}

/* Buffers of the node's shapes, for timing.  fg_buffers: the large ones get pages of their own
 * (core/buffer.c), returned to the system when released.  From the heap, the timing buffers of
 * the largest shapes stayed in a process's resident size below the arena made after them: Glow
 * K=16's training process peaked 67 MiB higher (459 against 393 MiB) when it timed its kernels
 * than when it read their choice from the cache ("Intel(R) Xeon(R) Processor", 2 cores). */
typedef struct bench_bufs {
  fg_buffer *in[MAX_NODE_INPUTS];
  fg_buffer *out;
  fg_buffer *scratch;
} bench_bufs;

static fg_buffer *filled(const fg_shape *s, fg_dtype t) {
  size_t n = (size_t)fg_shape_count(s);
  fg_buffer *b = NULL;
  fg_err e;
  if (fg_buffer_new(&b, (n ? n : 1) * fg_dtype_size(t), &e) != FG_OK) return NULL;
  for (size_t i = 0; i < n; i++) {
    double v = 0.01 * (double)((int)(i % 13) - 6);
    if (t == FG_F64) ((double *)b->data)[i] = v;
    else ((float *)b->data)[i] = (float)v;
  }
  return b;
}

static void bufs_free(bench_bufs *b, int n_in) {
  for (int i = 0; i < n_in; i++) fg_buffer_release(b->in[i]);
  fg_buffer_release(b->out);
  fg_buffer_release(b->scratch);
}

static bool bufs_make(bench_bufs *b, const node_view *v) {
  memset(b, 0, sizeof *b);
  bool ok = (b->out = filled(&v->r->shape, (fg_dtype)v->r->dtype)) != NULL;
  for (int i = 0; ok && i < v->r->n_in; i++)
    ok = (b->in[i] = filled(&v->in_shape[i], v->in_dtype[i])) != NULL;
  return ok;
}

static bool bufs_scratch(bench_bufs *b, size_t bytes) {
  if (b->scratch && bytes <= b->scratch->bytes) return true;
  fg_buffer_release(b->scratch);
  b->scratch = NULL;
  fg_err e;
  return fg_buffer_new(&b->scratch, bytes, &e) == FG_OK;
}

/* The timing arguments of candidate c on b's buffers. */
static fg_kargs timing_args(const fg_kernel_choice *c, const node_view *v, bench_bufs *b,
                            const void **in) {
  for (int i = 0; i < v->r->n_in; i++) in[i] = b->in[i]->data;
  return (fg_kargs){.attr = v->r->attr, .n_in = v->r->n_in, .in = (const void *const *)in,
                    .in_shape = v->in_shape, .in_dtype = v->in_dtype, .out = b->out->data,
                    .out_shape = v->r->shape, .state = c->state,
                    .scratch = c->prep.scratch_bytes ? b->scratch->data : NULL};
}

/* Seconds of one run of c (a large value when it fails). */
static double time_once(const fg_kernel_choice *c, const node_view *v, bench_bufs *b,
                        fg_pool *pool) {
  fg_err err;
  const void *in[MAX_NODE_INPUTS];
  fg_kargs k = timing_args(c, v, b, in);
  double t0 = now_s();
  if (fg__run_kernel(pool, kernel_of(c, v->r), &k, c->prep.n_phases, c->prep.parts,
                     &err) != FG_OK)
    return 1e30;
  return now_s() - t0;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Fills score[i] with candidate i's median run in seconds (1e30: not a candidate (!live[i]),
 * failed, or with `cutoff` dropped), timing all of them in rounds (see the top of the file);
 * false when out of memory. */
static bool time_rounds(const fg_kernel_choice *cand, const bool *live, int n, const node_view *v,
                        bench_bufs *b, fg_pool *pool, bool cutoff, double *score) {
  double *runs = calloc((size_t)n * TIME_RUNS, sizeof *runs);
  size_t scratch = 0;
  for (int i = 0; i < n; i++)
    if (live[i] && cand[i].prep.scratch_bytes > scratch) scratch = cand[i].prep.scratch_bytes;
  if (!runs || !bufs_scratch(b, scratch)) {
    free(runs);
    return false;
  }
  for (int i = 0; i < n; i++) /* warm-up; a failing candidate is out */
    score[i] = live[i] && time_once(&cand[i], v, b, pool) < 1e30 ? 0 : 1e30;
  for (int round = 0; round < TIME_RUNS; round++) {
    double best = 1e30;
    for (int i = 0; i < n; i++) {
      if (score[i] >= 1e30) continue;
      runs[i * TIME_RUNS + round] = time_once(&cand[i], v, b, pool);
      if (runs[i * TIME_RUNS + round] >= 1e30) score[i] = 1e30;
      else if (runs[i * TIME_RUNS + round] < best) best = runs[i * TIME_RUNS + round];
    }
    for (int i = 0; cutoff && round == 0 && i < n; i++)
      if (runs[i * TIME_RUNS] > SLOWER_CUTOFF * best) score[i] = 1e30;
  }
  for (int i = 0; i < n; i++) {
    if (score[i] >= 1e30) continue;
    qsort(runs + i * TIME_RUNS, TIME_RUNS, sizeof *runs, cmp_double);
    score[i] = runs[i * TIME_RUNS + TIME_RUNS / 2];
  }
  free(runs);
  return true;
}

/* ---- choosing ---- */

static void set_label(fg_kernel_choice *c) {
  if (!c->impl) snprintf(c->label, sizeof c->label, "native");
  else snprintf(c->label, sizeof c->label, "%s%s%s", c->impl->name, c->prep.info[0] ? ": " : "",
                c->prep.info);
}

/* The index of the implementation to run, by the scores of cand[0..n) and of the native
 * kernels, `native`: the fastest, if it clearly beats them (see the top of the file); -1 for
 * native. */
static int pick(const fg_kernel_choice *cand, const double *score, int n, double native) {
  int best = -1;
  for (int i = 0; i < n; i++)
    if (cand[i].impl && score[i] < 1e30 && (best < 0 || score[i] < score[best])) best = i;
  if (best >= 0 && native < 1e30 && score[best] * 100 > native * (100 - CLEAR_WIN_PCT))
    return -1;
  return best;
}

/* The implementation to run for the node, into c (native when none computes it or none is
 * clearly faster than native); its index, or -1.  A lone candidate is not timed. */
static int choose_by_time(fg_kernel_choice *c, const node_view *v, int parts, fg_pool *pool,
                          bool *nomem) {
  const fg_op_def *d = fg_op_get(v->r->op);
  int n = d->n_impls; /* cand[n]: the native kernels, the baseline */
  fg_kernel_choice *cand = calloc((size_t)n + 1, sizeof *cand);
  double *score = calloc((size_t)n + 1, sizeof *score);
  bool *live = calloc((size_t)n + 1, sizeof *live);
  bench_bufs b = {0};
  int n_ok = 0, chosen = -1;
  bool ok = cand && score && live;
  for (int i = 0; ok && i < n; i++)
    n_ok += live[i] = try_prepare(&cand[i], &d->impls[i], v, parts, 0, NULL);
  if (ok && n_ok > 1) {
    prep_init(&cand[n].prep, v, parts);
    live[n] = true;
    for (int i = 0; i < n; i++) /* the native kernels' twin is timed as them */
      if (live[i] && cand[i].prep.as_native) live[i] = false, score[i] = 1e30;
    ok = bufs_make(&b, v) && time_rounds(cand, live, n + 1, v, &b, pool, true, score);
  }
  if (!ok) *nomem = true;
  else chosen = pick(cand, score, n, n_ok > 1 ? score[n] : 1e30);
  for (int i = 0; cand && i < n; i++)
    if (i == chosen) *c = cand[i];
    else fg__kernel_choice_release(&cand[i]);
  bufs_free(&b, v->r->n_in);
  free(live);
  free(score);
  free(cand);
  return chosen;
}

static void view_inputs(node_view *v, const fg_graph *g, fg_node n) {
  for (int i = 0; i < v->r->n_in && i < MAX_NODE_INPUTS; i++) {
    v->in_shape[i] = fg_node_shape(g, fg_node_input(g, n, i));
    v->in_dtype[i] = fg_node_dtype(g, fg_node_input(g, n, i));
  }
}

fg_status fg__kernel_choose(fg_kernel_choice *c, const fg_graph *g, fg_node n, int parts,
                            const fg_kernel_rules *rules, fg_pool *pool, fg_err *e) {
  memset(c, 0, sizeof *c);
  node_view v = {.r = fg_graph_node(g, n)};
  const fg_op_def *d = fg_op_get(v.r->op);
  if (!d->n_impls || v.r->n_in > MAX_NODE_INPUTS || rules->mode[v.r->op] == KRULE_NATIVE) {
    set_label(c);
    return FG_OK;
  }
  view_inputs(&v, g, n);
  unsigned char key[KEY_MAX];
  size_t key_len = make_key(key, g, n, parts);
  int impl = rules->mode[v.r->op] == KRULE_IMPL ? rules->impl[v.r->op]
             : key_len <= KEY_MAX                ? recall(key, key_len)
                                                 : -2;
  if (impl >= d->n_impls) impl = -2; /* a cache line no build of this fingerprint wrote */
  fg_err why = {0};
  if (impl >= 0 && !try_prepare(c, &d->impls[impl], &v, parts, 0, &why)) impl = -1;
  if (impl == -2) {
    bool nomem = false;
    impl = choose_by_time(c, &v, parts, pool, &nomem);
    if (nomem) return fg_err_set(e, FG_E_NOMEM, "program: out of memory timing kernels");
    if (key_len <= KEY_MAX) remember(key, key_len, impl);
  }
  set_label(c);
  if (why.msg[0]) /* a pinned implementation that does not apply: say why, for benchmarks */
    snprintf(c->label, sizeof c->label, "native (%s)", why.msg);
  return FG_OK;
}

/* ---- what the layout plan's choice of kernels needs (layout_choice.c) ---- */

bool fg__kernel_alternative(fg_kernel_choice *c, const fg_graph *g, fg_node n, int parts,
                            uint32_t blockable, const fg_kernel_impl *current) {
  node_view v = {.r = fg_graph_node(g, n)};
  const fg_op_def *d = fg_op_get(v.r->op);
  memset(c, 0, sizeof *c);
  if (!blockable || v.r->n_in > MAX_NODE_INPUTS) return false;
  view_inputs(&v, g, n);
  for (int i = 0; i < d->n_impls; i++) {
    if (&d->impls[i] == current || !try_prepare(c, &d->impls[i], &v, parts, 0, NULL)) continue;
    if (c->prep.blocked_ok & blockable) {
      set_label(c);
      return true;
    }
    fg__kernel_choice_release(c);
  }
  memset(c, 0, sizeof *c);
  return false;
}

fg_status fg__kernel_time(const fg_kernel_choice *const *cand, const uint32_t *blocked, int n,
                          const fg_graph *g, fg_node node, int parts, fg_pool *pool, double *secs,
                          fg_err *e) {
  node_view v = {.r = fg_graph_node(g, node)};
  if (n > 8 || v.r->n_in > MAX_NODE_INPUTS)
    return fg_err_set(e, FG_E_INTERNAL, "program: too many kernels to time at once");
  view_inputs(&v, g, node);
  fg_kernel_choice run[8];
  bool live[8];
  bench_bufs b = {0};
  for (int i = 0; i < n; i++) { /* each as it would run: prepared for its operands' layouts */
    memset(&run[i], 0, sizeof run[i]);
    live[i] = cand[i]->impl ? try_prepare(&run[i], cand[i]->impl, &v, parts, blocked[i], NULL)
                            : (prep_init(&run[i].prep, &v, parts), true);
  }
  bool ok = bufs_make(&b, &v) && time_rounds(run, live, n, &v, &b, pool, false, secs);
  for (int i = 0; i < n; i++) fg__kernel_choice_release(&run[i]);
  bufs_free(&b, v.r->n_in);
  return ok ? FG_OK : fg_err_set(e, FG_E_NOMEM, "program: out of memory timing kernels");
}

uint64_t fg__kernel_node_hash(const fg_graph *g, fg_node n, int parts) {
  unsigned char key[KEY_MAX];
  size_t len = make_key(key, g, n, parts);
  return XXH3_64bits(key, len < KEY_MAX ? len : KEY_MAX);
}

int fg__kernel_recall(const unsigned char *key, size_t len) { return recall(key, len); }
void fg__kernel_remember(const unsigned char *key, size_t len, int value) {
  remember(key, len, value);
}

bool fg__kernel_reprepare(fg_kernel_choice *out, const fg_kernel_choice *c, const fg_graph *g,
                          fg_node n, int parts, uint32_t blocked) {
  node_view v = {.r = fg_graph_node(g, n)};
  memset(out, 0, sizeof *out);
  if (!c->impl || v.r->n_in > MAX_NODE_INPUTS) return false;
  view_inputs(&v, g, n);
  if (!try_prepare(out, c->impl, &v, parts, blocked, NULL)) return false;
  set_label(out);
  return true;
}

void fg__kernel_choice_release(fg_kernel_choice *c) {
  if (c->impl && c->impl->release && c->state) c->impl->release(c->state);
  c->state = NULL;
  c->impl = NULL;
}
