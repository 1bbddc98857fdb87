/* bench_flows: one flowgrad model configuration measured the way the PyTorch peer's `bench`
 * (../shared/peers/torch_flows.py) measures its own, printing one JSON line with the peer's
 * fields, so tools/bench/bench_vs_torch.py can put the two side by side.
 *
 *   build/tools/bench_flows --model glow --K 8 --L 2 --hidden 128 --batch 64 --threads 2
 *   build/tools/bench_flows --model realnvp --L 2 --hidden 64 --blocks 4 --batch 64
 *   build/tools/bench_flows --model moons --layers 8 --hidden 256 --batch 512
 *
 * Options (defaults as the peer's): --K 8 --L 2 --hidden (glow 128, realnvp 64, moons 256)
 * --blocks 4 --layers 8 --batch (64, moons 512) --eval-batch --sample-batch (= batch)
 * --threads 2 --warmup 5 --reps 20 --phases train,logprob,sample --seed 0 --lr 1e-3 --temp 1
 * --json FILE (append the line) --spec FILE (the flow and prior of a spec file instead of the
 * built-in builder; --model still picks the data) --flops FWD[,SAMPLE] (the peer's FLOPs of
 * one forward at --batch and of sampling one item, for GFLOP/s; default: flowgrad's own count).
 *
 * The models are flows/models.h's builders, which follow the peer layer for layer; Glow is
 * built with the peer's N(0, I) top prior (learn_top off).
 * Phases, as the peer's: median of --reps timed calls after --warmup untimed ones
 *   train    fg_trainer_step: a random minibatch of Fashion-MNIST test images (the peer's
 *            bench data) dequantised in the graph, forward + backward, Adam (lr 1e-3, no
 *            clipping).  Moons: minibatches of 20000 pre-drawn two-moons points (the peer
 *            draws fresh points per step).  The trainer's first step runs actnorm's
 *            data-dependent initialisation, which the peer does outside its timings: it is
 *            never timed (with --warmup 0 one extra untimed step is run).
 *   logprob  log p(x) of one fixed dequantised batch of --eval-batch, evaluation mode.
 *   sample   --sample-batch samples at temperature --temp; max(1, warmup/2) warm-up and
 *            max(5, reps/2) timed runs, as the peer.
 * Programs are compiled before their phase (not timed; "compile_ms" reports it).
 * FLOPs are counted as the peer counts them: 2 x the multiply-adds of convolutions and
 * matmuls (conv2d / matmul nodes of the compiled log-prob and sampling programs; element-wise
 * work is not counted); a training step is 3 x the forward (forward, input and weight
 * gradients).  Peak RSS is getrusage's ru_maxrss after each phase (cumulative, as the peer).
 * FG_PROFILE=1 prints each program's per-op table to stderr. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "frontends/data/fashion_mnist.h"
#include "frontends/data/toy2d.h"
#include "core/ir/op.h"
#include "core/runtime/program.h"
#include "core/rng.h"
#include "flows/models.h"
#include "flows/train/trainer.h"
#include "frontends/spec/spec.h"
#include "ops/kernel_info.h"
#include "ops/ops.h"

enum { MAX_REPS = 10000 };

typedef struct opts {
  const char *model, *json, *spec, *phases;
  int K, L, hidden, blocks, layers, batch, eval_batch, sample_batch, threads, warmup, reps;
  int recompute; /* 1: the trainer's memory-flat mode (flows/train/recompute.h) */
  uint64_t seed;
  double lr, temp, peer_fwd_flops, peer_sample_flops;
} opts;

/* One phase's timings, summarised as the peer's summarize(). */
typedef struct phase {
  bool done;
  double times[MAX_REPS];
  int reps;
  double items, flops_per_run, rss_mib, compile_ms, last_loss;
  double arena_mib; /* the program's planned intermediate values (train: the step's) */
  int blocked;      /* values it keeps in oneDNN's blocked layout */
} phase;

typedef struct bench {
  opts o;
  bool images;
  fg_shape event;
  fg_flow *flow;
  fg_tensor *data;  /* images [N, 1, 28, 28] levels 0..255, or moons [N, 2] */
  fg_tensor *xs;    /* the log-prob batch, dequantised */
  fg_pool *pool;    /* for the log-prob and sampling programs */
  double fwd_flops, sample_flops_item, rss_after_build;
  phase train, logprob, sample;
} bench;

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static double peak_rss_mib(void) {
  struct rusage u;
  getrusage(RUSAGE_SELF, &u);
  return (double)u.ru_maxrss / 1024.0; /* Linux: KiB */
}

static int fail(const char *what, const char *msg) {
  fprintf(stderr, "bench_flows: %s: %s\n", what, msg);
  return 1;
}

static bool has_phase(const opts *o, const char *name) {
  size_t n = strlen(name);
  for (const char *p = o->phases; (p = strstr(p, name)); p += n)
    if ((p == o->phases || p[-1] == ',') && (p[n] == ',' || p[n] == '\0')) return true;
  return false;
}

/* ---- options ---- */

static int usage(void) {
  fprintf(
      stderr,
      "usage: bench_flows [--model glow|realnvp|moons] [--K n] [--L n] [--hidden n] [--blocks n]\n"
      "  [--layers n] [--batch n] [--eval-batch n] [--sample-batch n] [--threads n] [--warmup n]\n"
      "  [--reps n] [--phases train,logprob,sample] [--seed n] [--lr x] [--temp x]\n"
      "  [--flops FWD[,SAMPLE]] [--spec FILE] [--json FILE] [--recompute 0|1]\n");
  return 2;
}

static int parse_opts(int argc, char **argv, opts *o) {
  *o = (opts){.model = "glow", .phases = "train,logprob,sample", .K = 8, .L = 2, .hidden = -1,
              .blocks = 4, .layers = 8, .batch = -1, .threads = 2, .warmup = 5, .reps = 20,
              .lr = 1e-3, .temp = 1.0};
  for (int i = 1; i < argc; i += 2) {
    const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!v || strncmp(k, "--", 2)) return usage();
    struct { const char *name; int *dst; } ints[] = {
        {"--K", &o->K}, {"--L", &o->L}, {"--hidden", &o->hidden}, {"--blocks", &o->blocks},
        {"--layers", &o->layers}, {"--batch", &o->batch}, {"--eval-batch", &o->eval_batch},
        {"--sample-batch", &o->sample_batch}, {"--threads", &o->threads}, {"--warmup", &o->warmup},
        {"--reps", &o->reps}, {"--recompute", &o->recompute}};
    bool known = false;
    for (size_t j = 0; j < sizeof ints / sizeof *ints && !known; j++)
      if (!strcmp(k, ints[j].name)) *ints[j].dst = atoi(v), known = true;
    if (known) continue;
    if (!strcmp(k, "--model")) o->model = v;
    else if (!strcmp(k, "--phases")) o->phases = v;
    else if (!strcmp(k, "--json")) o->json = v;
    else if (!strcmp(k, "--spec")) o->spec = v;
    else if (!strcmp(k, "--seed")) o->seed = strtoull(v, NULL, 10);
    else if (!strcmp(k, "--lr")) o->lr = atof(v);
    else if (!strcmp(k, "--temp")) o->temp = atof(v);
    else if (!strcmp(k, "--flops")) {
      char *end;
      o->peer_fwd_flops = strtod(v, &end);
      if (*end == ',') o->peer_sample_flops = strtod(end + 1, NULL);
    } else return usage();
  }
  bool moons = !strcmp(o->model, "moons");
  if (!moons && strcmp(o->model, "glow") && strcmp(o->model, "realnvp")) return usage();
  if (o->hidden < 0) o->hidden = moons ? 256 : !strcmp(o->model, "glow") ? 128 : 64;
  if (o->batch < 0) o->batch = moons ? 512 : 64;
  if (o->eval_batch <= 0) o->eval_batch = o->batch;
  if (o->sample_batch <= 0) o->sample_batch = o->batch;
  if (o->batch < 1 || o->threads < 1 || o->warmup < 0 || o->reps < 1 || o->reps > MAX_REPS)
    return usage();
  return 0;
}

/* ---- model and data ---- */

static fg_status build_from_spec(bench *b, fg_err *e) {
  fg_registry *r;
  fg_spec *spec = NULL;
  fg_status st = fg_registry_new(&r, e);
  if (st == FG_OK) st = fg_registry_add_builtins(r, e);
  if (st == FG_OK) st = fg_spec_load(&spec, b->o.spec, r, e);
  if (st == FG_OK) {
    fg_flow_config cfg = fg_spec_flow_config(spec, b->event);
    cfg.seed = b->o.seed;
    fg_bijector *chain = spec->flow;
    spec->flow = NULL; /* the flow owns it now */
    st = fg_flow_new_config(&b->flow, chain, &cfg, e);
  }
  fg_spec_free(spec);
  fg_registry_free(r);
  return st;
}

static fg_status build_model(bench *b, fg_err *e) {
  const opts *o = &b->o;
  if (o->spec) return build_from_spec(b, e);
  fg_model_opts m = {.event = b->event, .dtype = FG_F32, .seed = o->seed};
  if (!strcmp(o->model, "glow")) {
    fg_glow_config c = fg_glow_defaults();
    c.levels = o->L, c.steps = o->K, c.hidden = o->hidden;
    c.learn_top = false; /* the peer's top prior is N(0, I) */
    return fg_glow_new(&b->flow, NULL, &m, &c, e);
  }
  if (!strcmp(o->model, "realnvp")) {
    fg_realnvp_config c = fg_realnvp_defaults();
    c.scales = o->L, c.hidden = o->hidden, c.blocks = o->blocks;
    return fg_realnvp_new(&b->flow, NULL, &m, &c, e);
  }
  fg_mlp_flow_config c = fg_realnvp_vector_defaults();
  c.couplings = o->layers, c.hidden = o->hidden, c.blocks = 2; /* the peer's 2 hidden layers */
  return fg_realnvp_vector_new(&b->flow, NULL, &m, &c, e);
}

static fg_status load_data(bench *b, fg_err *e) {
  if (b->images) return fg_dataset_fashion_mnist_load(&b->data, NULL, "test", e);
  return fg_toy2d_generate(&b->data, "moons", 20000, 0.1, 2.0, b->o.seed, e);
}

/* n rows of the data drawn at random, images dequantised as the peer's: (x + u) / 256. */
static fg_status make_batch(const bench *b, int64_t n, uint64_t seed, fg_tensor **out, fg_err *e) {
  fg_shape s = b->event;
  s.ndim = b->event.ndim + 1;
  s.d[0] = n;
  for (int i = 0; i < b->event.ndim; i++) s.d[i + 1] = b->event.d[i];
  fg_status st = fg_tensor_new(out, FG_F32, &s, e);
  if (st != FG_OK) return st;
  int64_t rows = b->data->shape.d[0], per = fg_tensor_numel(b->data) / rows;
  for (int64_t i = 0; i < n; i++) {
    int64_t r = (int64_t)(fg_rng_bits(seed, (uint64_t)i) % (uint64_t)rows);
    for (int64_t j = 0; j < per; j++) {
      double v = fg_tensor_get(b->data, r * per + j);
      if (b->images) v = (v + fg_rng_uniform(seed + 1, (uint64_t)(i * per + j))) / 256.0;
      fg_tensor_set(*out, i * per + j, v);
    }
  }
  return FG_OK;
}

/* ---- FLOPs: 2 x multiply-adds of conv2d (and its transposes, and chains) and matmul nodes ---- */

static int64_t conv_extent(int64_t in, int64_t k, int64_t stride, int64_t pad, int64_t dil) {
  return (in + 2 * pad - dil * (k - 1) - 1) / stride + 1;
}

/* A conv2d_chain (the compiler's chain pass) holds its convs' weights as inputs 1, 3, 5: each
 * conv's output extent follows from its input's and its geometry. */
static double chain_flops(const fg_graph *g, fg_node n) {
  const fg_conv2d_chain_attr *at = fg_node_attr(g, n);
  fg_shape x = fg_node_shape(g, fg_node_input(g, n, 0)); /* [N, C, H, W] */
  int64_t h = x.d[2], w = x.d[3];
  double total = 0;
  for (int64_t i = 0; i < at->n_convs; i++) {
    fg_shape k = fg_node_shape(g, fg_node_input(g, n, (int)(1 + 2 * i))); /* [O, C, KH, KW] */
    const fg_conv2d_opts *o = &at->conv[i].geom;
    h = conv_extent(h, k.d[2], o->stride[0], o->padding[0], o->dilation[0]);
    w = conv_extent(w, k.d[3], o->stride[1], o->padding[1], o->dilation[1]);
    total += 2.0 * (double)(x.d[0] * k.d[0] * h * w) * (double)(k.d[1] * k.d[2] * k.d[3]);
  }
  return total;
}

static double graph_flops(const fg_graph *g) {
  double total = 0;
  for (fg_node n = 0; n < fg_graph_node_count(g); n++) {
    int op = fg_node_op(g, n);
    fg_shape out = fg_node_shape(g, n);
    bool fwd = op == FG_OP_CONV2D || op == FG_OP_CONV2D_BIAS_ACT;
    if (op == FG_OP_CONV2D_CHAIN) {
      total += chain_flops(g, n);
    } else if (fwd || op == FG_OP_CONV2D_INPUT_GRAD || op == FG_OP_CONV2D_INPUT_GRAD_RELU) {
      fg_shape w = fg_node_shape(g, fg_node_input(g, n, 1)); /* [O, C, KH, KW] */
      fg_shape y = fwd ? out : fg_node_shape(g, fg_node_input(g, n, 0));
      total += 2.0 * (double)fg_shape_count(&y) * (double)(w.d[1] * w.d[2] * w.d[3]);
    } else if (op == FG_OP_CONV2D_WEIGHT_GRAD || op == FG_OP_CONV2D_WEIGHT_BIAS_GRAD) {
      fg_shape x = fg_node_shape(g, fg_node_input(g, n, 0));
      fg_shape dy = fg_node_shape(g, fg_node_input(g, n, 1));
      const fg_conv2d_attr *at = fg_node_attr(g, n); /* the kernel's size */
      total += 2.0 * (double)fg_shape_count(&dy) * (double)(x.d[1] * at->size[0] * at->size[1]);
    } else if (op == FG_OP_CONV2D_INPUT_WEIGHT_GRAD) { /* both gradients */
      fg_shape w = fg_node_shape(g, fg_node_input(g, n, 1));
      fg_shape dy = fg_node_shape(g, fg_node_input(g, n, 2));
      total += 4.0 * (double)fg_shape_count(&dy) * (double)(w.d[1] * w.d[2] * w.d[3]);
    } else if (op == FG_OP_MATMUL) {
      fg_shape a = fg_node_shape(g, fg_node_input(g, n, 0));
      const fg_matmul_attr *at = fg_node_attr(g, n);
      int64_t k = at && at->trans_a ? a.d[a.ndim - 2] : a.d[a.ndim - 1];
      total += 2.0 * (double)fg_shape_count(&out) * (double)k;
    }
  }
  return total;
}

/* ---- timing, as the peer's timed() ---- */

typedef fg_status (*run_fn)(void *ctx, int call, phase *ph, fg_err *e);

static fg_status timed(run_fn fn, void *ctx, int warmup, int reps, phase *ph, fg_err *e) {
  fg_status st = FG_OK;
  int call = 0;
  for (int i = 0; st == FG_OK && i < warmup; i++) st = fn(ctx, call++, ph, e);
  for (int i = 0; st == FG_OK && i < reps; i++) {
    double t0 = now_s();
    st = fn(ctx, call++, ph, e);
    ph->times[i] = now_s() - t0;
  }
  ph->reps = reps;
  ph->done = st == FG_OK;
  ph->rss_mib = peak_rss_mib();
  return st;
}

static fg_status train_call(void *ctx, int call, phase *ph, fg_err *e) {
  (void)call;
  fg_train_step_info info;
  fg_status st = fg_trainer_step(ctx, &info, e);
  if (st == FG_OK && info.skipped)
    st = fg_err_set(e, FG_E_NUMERIC, "non-finite step (%s)", info.bad_layer);
  ph->last_loss = info.loss;
  return st;
}

static fg_status program_call(void *ctx, int call, phase *ph, fg_err *e) {
  (void)ph;
  fg_program *p = ctx;
  fg_program_set_rng_offset(p, (uint64_t)call); /* fresh draws per sampling run */
  return fg_program_run(p, e);
}

static void print_profile(const char *what, const char *table) {
  if (getenv("FG_PROFILE")) fprintf(stderr, "\nper-op profile of the %s program:\n%s", what, table);
}

static fg_status phase_train(bench *b, fg_err *e) {
  fg_train_settings s = fg_train_defaults();
  s.batch = b->o.batch, s.lr = b->o.lr, s.seed = (int64_t)b->o.seed, s.clip = 0, s.warmup = 0,
  s.ema = 0;
  s.recompute = b->o.recompute != 0;
  fg_trainer_data d = {.train = b->data, .discrete = b->images};
  fg_trainer *t;
  double t0 = now_s();
  fg_status st = fg_trainer_new(&t, b->flow, &s, &d, b->o.threads, e);
  if (st != FG_OK) return st;
  b->train.compile_ms = (now_s() - t0) * 1e3;
  const fg_program_stats *ps = fg_trainer_program_stats(t);
  b->train.arena_mib = (double)ps->arena_bytes / (1 << 20), b->train.blocked = ps->n_blocked;
  if (b->o.warmup == 0) st = train_call(t, 0, &b->train, e); /* the data-dependent init step */
  if (st == FG_OK) st = timed(train_call, t, b->o.warmup, b->o.reps, &b->train, e);
  b->train.items = (double)b->o.batch;
  if (st == FG_OK && getenv("FG_PROFILE")) {
    static char table[16384];
    print_profile("training", fg_trainer_profile(t, table, sizeof table));
  }
  fg_trainer_free(t);
  return st;
}

/* Compiles g's output on the bench's pool and binds the parameters (and x if given). */
static fg_status compile(bench *b, fg_graph *g, fg_node out, const fg_tensor *x, fg_program **p,
                         double *ms, fg_err *e) {
  if (fg_graph_status(g) != FG_OK)
    return fg_err_set(e, fg_graph_status(g), "%s", fg_graph_errmsg(g));
  fg_program_opts po = {.pool = b->pool};
  double t0 = now_s();
  fg_status st = fg_program_new_opts(p, g, 1, &out, &po, e);
  *ms = (now_s() - t0) * 1e3;
  if (st == FG_OK) st = fg_params_bind(fg_flow_params(b->flow), *p, e);
  if (st == FG_OK && x) st = fg_program_bind(*p, "x", x, e);
  return st;
}

/* Builds (and counts the FLOPs of) the log-prob program; times it when asked. */
static fg_status phase_logprob(bench *b, bool run, fg_err *e) {
  fg_graph *g;
  fg_status st = fg_graph_new(&g, e);
  if (st != FG_OK) return st;
  fg_node logp;
  fg_program *p = NULL;
  fg_flow_log_prob(b->flow, g, fg_input(g, "x", FG_F32, b->xs->shape), false, &logp);
  st = compile(b, g, logp, b->xs, &p, &b->logprob.compile_ms, e);
  if (st == FG_OK)
    b->fwd_flops = graph_flops(fg_program_graph(p)) * (double)b->o.batch / (double)b->o.eval_batch;
  if (st == FG_OK && run) st = timed(program_call, p, b->o.warmup, b->o.reps, &b->logprob, e);
  b->logprob.items = (double)b->o.eval_batch;
  if (st == FG_OK && run && getenv("FG_PROFILE")) {
    static char table[16384];
    print_profile("log-prob", fg_program_profile(p, table, sizeof table));
  }
  fg_program_free(p);
  fg_graph_free(g);
  return st;
}

static fg_status phase_sample(bench *b, bool run, fg_err *e) {
  fg_graph *g;
  fg_status st = fg_graph_new(&g, e);
  if (st != FG_OK) return st;
  fg_node x;
  fg_program *p = NULL;
  fg_flow_sample(b->flow, g, b->o.sample_batch, b->o.temp, b->o.seed + 1, &x);
  st = compile(b, g, x, NULL, &p, &b->sample.compile_ms, e);
  if (st == FG_OK)
    b->sample_flops_item = graph_flops(fg_program_graph(p)) / (double)b->o.sample_batch;
  int warmup = b->o.warmup / 2 > 1 ? b->o.warmup / 2 : 1,
      reps = b->o.reps / 2 > 5 ? b->o.reps / 2 : 5;
  if (st == FG_OK && run) st = timed(program_call, p, warmup, reps, &b->sample, e);
  b->sample.items = (double)b->o.sample_batch;
  if (st == FG_OK && run && getenv("FG_PROFILE")) {
    static char table[16384];
    print_profile("sampling", fg_program_profile(p, table, sizeof table));
  }
  fg_program_free(p);
  fg_graph_free(g);
  return st;
}

/* ---- output: the peer's JSON fields, plus flowgrad's ---- */

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double median(const double *v, int n) {
  double *s = malloc(sizeof *s * (size_t)n);
  memcpy(s, v, sizeof *s * (size_t)n);
  qsort(s, (size_t)n, sizeof *s, cmp_double);
  double m = n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
  free(s);
  return m;
}

static void put_phase(FILE *f, const char *name, const phase *ph, double flops_per_run, bool loss) {
  if (!ph->done) return;
  double med = median(ph->times, ph->reps), lo = ph->times[0], hi = ph->times[0];
  for (int i = 1; i < ph->reps; i++) lo = fmin(lo, ph->times[i]), hi = fmax(hi, ph->times[i]);
  fprintf(f,
          ", \"%s\": {\"median_s\": %.6g, \"min_s\": %.6g, \"max_s\": %.6g, \"reps\": %d, "
          "\"times_ms\": [",
          name, med, lo, hi, ph->reps);
  for (int i = 0; i < ph->reps; i++) fprintf(f, "%s%.2f", i ? ", " : "", ph->times[i] * 1e3);
  fprintf(f, "], \"steps_per_s\": %.6g, \"items_per_s\": %.6g, \"gflops_per_s\": %.6g", 1.0 / med,
          ph->items / med, flops_per_run / med / 1e9);
  if (loss) fprintf(f, ", \"last_loss\": %.6g", ph->last_loss);
  fprintf(f, ", \"peak_rss_mib\": %.1f, \"compile_ms\": %.1f", ph->rss_mib, ph->compile_ms);
  if (ph->arena_mib > 0)
    fprintf(f, ", \"arena_mib\": %.1f, \"blocked_values\": %d", ph->arena_mib, ph->blocked);
  fprintf(f, "}");
}

static void put_result(FILE *f, const bench *b) {
  const opts *o = &b->o;
  bool peer = o->peer_fwd_flops > 0;
  double fwd = peer ? o->peer_fwd_flops : b->fwd_flops;
  double smp = peer && o->peer_sample_flops > 0 ? o->peer_sample_flops : b->sample_flops_item;
  const char *coretype = getenv("OPENBLAS_CORETYPE");
  fprintf(f, "{\"impl\": \"flowgrad\", \"model\": \"%s\", \"config\": {", o->model);
  if (!strcmp(o->model, "glow"))
    fprintf(f, "\"K\": %d, \"L\": %d, \"hidden\": %d", o->K, o->L, o->hidden);
  else if (!strcmp(o->model, "realnvp"))
    fprintf(f, "\"L\": %d, \"hidden\": %d, \"blocks\": %d", o->L, o->hidden, o->blocks);
  else fprintf(f, "\"layers\": %d, \"hidden\": %d, \"additive\": false", o->layers, o->hidden);
  fprintf(f,
          ", \"batch\": %d}, \"spec\": %s%s%s, \"threads\": %d, \"openblas_coretype\": %s%s%s, "
          "\"params\": %lld, "
          "\"recompute\": %s, \"rss_after_build_mib\": %.1f",
          o->batch, o->spec ? "\"" : "", o->spec ? o->spec : "null", o->spec ? "\"" : "",
          o->threads, coretype ? "\"" : "", coretype ? coretype : "null", coretype ? "\"" : "",
          (long long)fg_flow_num_scalars(b->flow), o->recompute ? "true" : "false",
          b->rss_after_build);
  char libs[256];
  fprintf(f, ", \"kernels\": \"%s\", \"fg_kernels\": \"%s\"",
          fg_kernel_libraries(libs, sizeof libs),
          getenv("FG_KERNELS") ? getenv("FG_KERNELS") : "auto");
  fprintf(f,
          ", \"flops\": {\"forward_per_batch\": %.0f, \"forward_per_item\": %.6g, "
          "\"train_step_est\": %.0f, "
          "\"sample_per_item\": %.6g, \"counted_forward_per_item\": %.6g, "
          "\"counted_sample_per_item\": %.6g, "
          "\"source\": \"%s\", \"note\": \"conv/matmul MACs x2; train = 3 x forward (fwd, dgrad, "
          "wgrad)\"}",
          fwd, fwd / o->batch, 3 * fwd, smp, b->fwd_flops / o->batch, b->sample_flops_item,
          peer ? "peer" : "counted");
  put_phase(f, "train", &b->train, 3 * fwd, true);
  put_phase(f, "logprob", &b->logprob, fwd / o->batch * o->eval_batch, false);
  put_phase(f, "sample", &b->sample, smp * o->sample_batch, false);
  fprintf(f, ", \"peak_rss_mib\": %.1f}\n", peak_rss_mib());
}

static double items_per_s(const phase *ph) {
  return ph->done ? ph->items / median(ph->times, ph->reps) : 0;
}

int main(int argc, char **argv) {
  bench b = {0};
  if (parse_opts(argc, argv, &b.o)) return 2;
  b.images = strcmp(b.o.model, "moons") != 0;
  b.event = b.images ? fg_shape3(1, 28, 28) : fg_shape1(2);
  fg_err e;
  fg_status st = load_data(&b, &e);
  if (st != FG_OK) return fail("data", e.msg);
  if ((st = build_model(&b, &e)) != FG_OK) return fail("model", e.msg);
  b.rss_after_build = peak_rss_mib();
  if ((st = make_batch(&b, b.o.eval_batch, b.o.seed + 17, &b.xs, &e)) != FG_OK)
    return fail("data", e.msg);
  if ((st = fg_pool_new(&b.pool, b.o.threads, &e)) != FG_OK) return fail("threads", e.msg);

  if (has_phase(&b.o, "train")) st = phase_train(&b, &e);
  else st = fg_flow_data_init(b.flow, b.xs, &e); /* actnorm's init, as the peer's first forward */
  if (st != FG_OK) return fail("train", e.msg);
  if ((st = phase_logprob(&b, has_phase(&b.o, "logprob"), &e)) != FG_OK)
    return fail("logprob", e.msg);
  if ((st = phase_sample(&b, has_phase(&b.o, "sample"), &e)) != FG_OK) return fail("sample", e.msg);

  put_result(stdout, &b);
  if (b.o.json) {
    FILE *f = fopen(b.o.json, "a");
    if (!f) return fail("json", "cannot open the file for appending");
    put_result(f, &b);
    fclose(f);
  }
  fprintf(stderr,
          "# flowgrad %s params=%lld train %.1f item/s | logprob %.1f item/s | sample %.1f item/s "
          "| peak RSS %.0f MiB\n",
          b.o.model, (long long)fg_flow_num_scalars(b.flow), items_per_s(&b.train),
          items_per_s(&b.logprob), items_per_s(&b.sample), peak_rss_mib());
  fg_tensor_free(b.xs);
  fg_tensor_free(b.data);
  fg_pool_free(b.pool);
  fg_flow_free(b.flow);
  return 0;
}
