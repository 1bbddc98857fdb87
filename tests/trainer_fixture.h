/* What the trainer and checkpoint tests share: two tiny models built from spec text as the CLI
 * builds them, a 2-D toy (continuous data, nats) and a one-step Glow on 1x4x4 images (integer
 * levels, 5 bits, dequantised in the graph, bits/dim, EMA weights); one whose data has a
 * poisoned row; and helpers to run them and compare their parameters. */
#ifndef FG_TEST_TRAINER_FIXTURE_H
#define FG_TEST_TRAINER_FIXTURE_H

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "frontends/spec/spec.h"

static const char TOY_SPEC[] =
    "data moons\n"
    "flow\n"
    "  affine_coupling mask=half, parity=0, net=mlp, hidden=8, blocks=1\n"
    "  affine_coupling mask=half, parity=1, net=mlp, hidden=8, blocks=1\n"
    "end\n"
    "train\n  batch 8\n  lr 1e-2\n  seed 3\nend\n";

/* warm-up makes the learning rate depend on the optimiser's step, so a resumed run that lost
 * the step would show it in info.lr */
static const char IMAGE_SPEC[] =
    "data mnist\n"
    "prior learned\n"
    "flow\n"
    "  affine shift=-0.5\n"
    "  squeeze\n"
    "  actnorm\n"
    "  conv1x1_lu\n"
    "  affine_coupling mask=channel, parity=0, net=glow, hidden=4, scale=sigmoid\n"
    "end\n"
    "train\n  batch 4\n  lr 1e-2\n  warmup 10\n  n_bits 5\n  ema 0.9\n  seed 7\nend\n";

/* Same layer names as TOY_SPEC, wider conditioners: every shape differs. */
static const char TOY_WIDE_SPEC[] =
    "data moons\n"
    "flow\n"
    "  affine_coupling mask=half, parity=0, net=mlp, hidden=16, blocks=1\n"
    "  affine_coupling mask=half, parity=1, net=mlp, hidden=16, blocks=1\n"
    "end\n"
    "train\n  batch 8\n  lr 1e-2\n  seed 3\nend\n";

/* TOY_SPEC plus a third coupling: the first two match the file, the third is missing from it. */
static const char TOY_DEEP_SPEC[] =
    "data moons\n"
    "flow\n"
    "  affine_coupling mask=half, parity=0, net=mlp, hidden=8, blocks=1\n"
    "  affine_coupling mask=half, parity=1, net=mlp, hidden=8, blocks=1\n"
    "  affine_coupling mask=half, parity=0, net=mlp, hidden=8, blocks=1\n"
    "end\n"
    "train\n  batch 8\n  lr 1e-2\n  seed 3\nend\n";

/* exp overflows float32 above ~88.7: a row of 1e30 passes `scale` (finite) and makes layer 1
 * (exp) the first non-finite one; later layers and the loss follow. */
static const char POISON_SPEC[] =
    "data moons\n"
    "flow\n"
    "  scale\n"
    "  exp\n"
    "  affine_coupling mask=half, parity=0, net=mlp, hidden=8, blocks=1\n"
    "end\n"
    "train\n  batch 4\n  lr 1e-2\n  seed 5\n  max_nonfinite 3\nend\n";

/* spec with its first `what` replaced by `with` (same length), in a static buffer. */
static inline const char *spec_with(const char *spec, const char *what, const char *with) {
  static char text[4096];
  cr_assert(strlen(spec) < sizeof text && strlen(what) == strlen(with));
  snprintf(text, sizeof text, "%s", spec);
  char *at = strstr(text, what);
  cr_assert_not_null(at, "'%s' is not in the spec", what);
  memcpy(at, with, strlen(with));
  return text;
}

typedef struct kind {
  const char *spec;
  fg_shape event;
  bool discrete;
  int64_t n_train, n_test;
} kind;

/* n_test is not a multiple of the batch, so evaluation runs a remainder chunk too */
static const kind TOY = {TOY_SPEC, {1, {2}}, false, 32, 10};
static const kind IMAGE = {IMAGE_SPEC, {3, {1, 4, 4}}, true, 16, 6};

enum { THREADS = 2 }; /* a real pool, so exactness does not rest on running single-threaded */

/* ---- building ---- */

/* A flow from spec text, as the CLI builds one; *s gets the spec's settings. */
static inline fg_flow *flow_from_spec(const char *text, fg_shape event, fg_train_settings *s) {
  fg_err e;
  fg_registry *r;
  fg_registry_new(&r, NULL);
  cr_assert_not_null(r);
  cr_assert_eq(fg_registry_add_builtins(r, &e), FG_OK, "%s", e.msg);
  fg_spec *spec;
  cr_assert_eq(fg_spec_parse(&spec, text, "test.flow", r, &e), FG_OK, "%s", e.msg);
  fg_base_kind base = strcmp(spec->prior, "learned") ? FG_BASE_NORMAL : FG_BASE_LEARNED;
  fg_bijector *b = spec->flow;
  spec->flow = NULL; /* the flow owns it now */
  fg_flow *f;
  cr_assert_eq(fg_flow_new(&f, b, base, event, (uint64_t)spec->train.seed, &e), FG_OK, "%s", e.msg);
  if (s) *s = spec->train;
  fg_spec_free(spec);
  fg_registry_free(r);
  return f;
}

/* n samples of the kind's event: levels 0..255 for images, N(0, 1) values otherwise. */
static inline fg_tensor *make_data(const kind *k, int64_t n, uint64_t seed) {
  fg_shape s = {.ndim = k->event.ndim + 1, .d = {n}};
  for (int i = 0; i < k->event.ndim; i++) s.d[i + 1] = k->event.d[i];
  fg_tensor *x;
  cr_assert_eq(fg_tensor_new(&x, FG_F32, &s, NULL), FG_OK);
  for (int64_t i = 0; i < fg_tensor_numel(x); i++)
    fg_tensor_set(x, i, k->discrete ? (double)(fg_rng_bits(seed, (uint64_t)i) % 256) : fg_rng_normal(seed, (uint64_t)i));
  return x;
}

static inline fg_trainer *trainer_for(fg_flow *f, const fg_train_settings *s, const fg_tensor *train,
                               const fg_tensor *test, bool discrete) {
  fg_trainer_data d = {.train = train, .test = test, .discrete = discrete};
  fg_trainer *t;
  fg_err e;
  cr_assert_eq(fg_trainer_new(&t, f, s, &d, THREADS, &e), FG_OK, "%s", e.msg);
  return t;
}

typedef struct model {
  fg_flow *f;
  fg_trainer *t;
} model;

/* A fresh model of kind k with a trainer over the kind's data (the same data every time). */
static inline model model_new_spec(const kind *k, const char *spec) {
  fg_train_settings s;
  model m = {.f = flow_from_spec(spec, k->event, &s)};
  fg_tensor *train = make_data(k, k->n_train, 11), *test = make_data(k, k->n_test, 12);
  m.t = trainer_for(m.f, &s, train, test, k->discrete);
  fg_tensor_free(train);
  fg_tensor_free(test);
  return m;
}

static inline model model_new(const kind *k) { return model_new_spec(k, k->spec); }

static inline void model_free(model *m) {
  fg_trainer_free(m->t); /* before the flow it borrows */
  fg_flow_free(m->f);
  m->t = NULL, m->f = NULL;
}

/* ---- comparing parameters ---- */

static inline bool same_bytes(const fg_tensor *a, const fg_tensor *b) {
  return a->dtype == b->dtype && fg_shape_equal(&a->shape, &b->shape) &&
         memcmp(fg_tensor_data(a), fg_tensor_data(b), (size_t)fg_tensor_numel(a) * fg_dtype_size(a->dtype)) == 0;
}

/* Same names, dtypes, shapes and bit patterns. */
static inline bool flows_equal(const fg_flow *a, const fg_flow *b) {
  const fg_params *pa = fg_flow_params(a), *pb = fg_flow_params(b);
  if (fg_params_count(pa) != fg_params_count(pb)) return false;
  for (int i = 0; i < fg_params_count(pa); i++)
    if (strcmp(fg_params_name(pa, i), fg_params_name(pb, i)) || !same_bytes(fg_params_tensor(pa, i), fg_params_tensor(pb, i)))
      return false;
  return true;
}

/* Copies of every parameter, to compare with later. */
typedef struct snapshot {
  int n;
  fg_tensor **v;
} snapshot;

static inline snapshot snapshot_take(const fg_flow *f) {
  const fg_params *ps = fg_flow_params(f);
  snapshot s = {fg_params_count(ps), calloc((size_t)fg_params_count(ps) + 1, sizeof(fg_tensor *))};
  cr_assert_not_null(s.v);
  for (int i = 0; i < s.n; i++)
    cr_assert_eq(fg_tensor_copy(&s.v[i], fg_params_tensor(ps, i), fg_params_tensor(ps, i)->dtype, NULL), FG_OK);
  return s;
}

static inline bool snapshot_matches(const snapshot *s, const fg_flow *f) {
  const fg_params *ps = fg_flow_params(f);
  if (fg_params_count(ps) != s->n) return false;
  for (int i = 0; i < s->n; i++)
    if (!same_bytes(fg_params_tensor(ps, i), s->v[i])) return false;
  return true;
}

static inline void snapshot_free(snapshot *s) {
  for (int i = 0; i < s->n; i++) fg_tensor_free(s->v[i]);
  free(s->v);
}

/* ---- running ---- */

static inline fg_train_step_info step_ok(fg_trainer *t) {
  fg_train_step_info info;
  fg_err e;
  cr_assert_eq(fg_trainer_step(t, &info, &e), FG_OK, "%s", e.msg);
  cr_assert(!info.skipped, "step %lld was skipped (bad layer %s)", (long long)info.step, info.bad_layer);
  cr_assert(isfinite(info.loss), "step %lld: loss %g", (long long)info.step, info.loss);
  return info;
}

static inline void train_steps(fg_trainer *t, int n, fg_train_step_info *infos) {
  for (int i = 0; i < n; i++) {
    fg_train_step_info info = step_ok(t);
    if (infos) infos[i] = info;
  }
}

static inline double evaluate_ok(fg_trainer *t) {
  double v;
  fg_err e;
  cr_assert_eq(fg_trainer_evaluate(t, &v, &e), FG_OK, "%s", e.msg);
  cr_assert(isfinite(v));
  return v;
}

/* ---- a model whose data poisons one row ---- */

/* 8 rows of N(0, 1) with row `bad` all 1e30 (finite data: the trainer accepts it). */
static inline fg_tensor *poisoned_rows(int64_t bad) {
  fg_tensor *x = make_data(&TOY, 8, 21);
  fg_tensor_set(x, 2 * bad, 1e30);
  fg_tensor_set(x, 2 * bad + 1, 1e30);
  return x;
}

static inline model poisoned_model(int64_t batch) {
  fg_train_settings s;
  model m = {.f = flow_from_spec(POISON_SPEC, TOY.event, &s)};
  s.batch = batch;
  fg_tensor *x = poisoned_rows(5);
  m.t = trainer_for(m.f, &s, x, NULL, false);
  fg_tensor_free(x);
  return m;
}

#endif
