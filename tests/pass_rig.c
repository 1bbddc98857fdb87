/* The compiler-pass tests' shared rig (tests/pass_rig.h). */
#include "tests/pass_rig.h"

#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "core/ir/op.h"
#include "core/rng.h"
#include "ops/ops.h"

/* Error detail of the last failing library call, for assertion messages. */
static fg_err terr;

fg_tensor *random_tensor(fg_shape s, uint64_t seed, double lo, double hi) {
  fg_tensor *t;
  cr_assert_eq(fg_tensor_new(&t, FG_F32, &s, NULL), FG_OK);
  for (int64_t i = 0; i < fg_tensor_numel(t); i++)
    fg_tensor_set(t, i, lo + (hi - lo) * fg_rng_uniform(seed, (uint64_t)i));
  return t;
}

fg_node leaf(built *b, bool param, const char *name, fg_shape s, uint64_t seed) {
  cr_assert(b->n_in < (int)(sizeof b->names / sizeof *b->names), "more leaves than the rig holds");
  fg_node n = param ? fg_param(b->g, name, FG_F32, s) : fg_input(b->g, name, FG_F32, s);
  b->names[b->n_in] = name;
  b->values[b->n_in++] = random_tensor(s, seed, -1, 1);
  return n;
}

void free_built(built *b) {
  for (int i = 0; i < b->n_in; i++) fg_tensor_free(b->values[i]);
  fg_graph_free(b->g);
}

/* Runs b's outputs under opts; returns float32 copies of them. */
void run(const built *b, const fg_program_opts *o, fg_tensor **out, fg_program_stats *stats) {
  fg_program *p;
  fg_err e;
  cr_assert_eq(fg_program_new_opts(&p, b->g, b->n_out, b->outs, o, &e), FG_OK, "%s", e.msg);
  for (int i = 0; i < b->n_in; i++)
    cr_assert_eq(fg_program_bind(p, b->names[i], b->values[i], &terr), FG_OK, "%s", terr.msg);
  for (int rep = 0; rep < 2; rep++) /* twice: a second run must not depend on leftovers */
    cr_assert_eq(fg_program_run(p, &terr), FG_OK, "%s", terr.msg);
  for (int j = 0; j < b->n_out; j++)
    cr_assert_eq(fg_tensor_copy(&out[j], fg_program_output(p, j), FG_F32, NULL), FG_OK);
  if (stats) *stats = *fg_program_get_stats(p);
  fg_program_free(p);
}

void expect_identical(const built *b, fg_tensor **a, fg_tensor **c, const char *what) {
  for (int j = 0; j < b->n_out; j++) {
    int64_t n = fg_tensor_numel(a[j]);
    cr_assert_eq(fg_tensor_numel(c[j]), n);
    for (int64_t i = 0; i < n; i++) {
      float x = ((float *)fg_tensor_data(a[j]))[i], y = ((float *)fg_tensor_data(c[j]))[i];
      cr_assert(memcmp(&x, &y, sizeof x) == 0 && !isnan(x),
                "%s: output %d element %lld: %.9g vs %.9g", what, j, (long long)i, x, y);
    }
  }
}

/* Every element within rel of the other's magnitude (and 1e-6 absolute). */
void expect_close(const built *b, fg_tensor **a, fg_tensor **c, double rel, const char *what) {
  for (int j = 0; j < b->n_out; j++) {
    int64_t n = fg_tensor_numel(a[j]);
    cr_assert_eq(fg_tensor_numel(c[j]), n);
    for (int64_t i = 0; i < n; i++) {
      double x = ((float *)fg_tensor_data(a[j]))[i], y = ((float *)fg_tensor_data(c[j]))[i];
      cr_assert(fabs(x - y) <= rel * fmax(fabs(x), fabs(y)) + 1e-6,
                "%s: output %d element %lld: %.9g vs %.9g", what, j, (long long)i, x, y);
    }
  }
}

void free_outs(const built *b, fg_tensor **o) {
  for (int j = 0; j < b->n_out; j++) fg_tensor_free(o[j]);
}

void expect_runs_identical(const built *b, const fg_program_opts *a, const fg_program_opts *c,
                           const char *what) {
  fg_tensor *x[16], *y[16];
  run(b, a, x, NULL);
  run(b, c, y, NULL);
  expect_identical(b, x, y, what);
  free_outs(b, x), free_outs(b, y);
}

int count_op(const fg_graph *g, int op) {
  int k = 0;
  for (fg_node n = 0; n < fg_graph_node_count(g); n++) k += fg_node_op(g, n) == op;
  return k;
}

const fg_program_opts reference_opts = {.n_threads = 1, .disabled_passes = 0xffffffffu,
                                        .verify = true};
