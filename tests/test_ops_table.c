/* The op table test: walks every descriptor in core/ir/ops.def and checks
 *  - it is complete (a name, a kernel pair or the leaf flag, a VJP or the no-gradient flag),
 *  - it has at least one test case (so an op cannot be added untested),
 *  - every case: float64 kernel against the naive reference, float32 kernel against it,
 *    float64 gradcheck, gradgradcheck where flagged,
 *  - every reject case: the shape rule refuses with the expected status and a message naming
 *    the op. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "ops/autodiff/gradcheck.h"
#include "core/ir/op.h"
#include "core/runtime/program.h"
#include "core/rng.h"
#include "tests/op_cases.h"

/* Error detail of the last failing library call, for assertion messages. */
static fg_err terr __attribute__((unused));

static const op_case_list *const lists[] = {
    &op_cases_source, &op_cases_elementwise, &op_cases_reduce, &op_cases_shape,
    &op_cases_matmul, &op_cases_conv, &op_cases_linalg, &op_cases_index,
    &op_cases_collective,
};
enum { N_LISTS = sizeof lists / sizeof *lists };

static int cases_for(const char *op) {
  int n = 0;
  for (int l = 0; l < N_LISTS; l++)
    for (int c = 0; c < lists[l]->n_cases; c++) n += strcmp(lists[l]->cases[c].op, op) == 0;
  return n;
}

Test(ops_table, every_descriptor_is_complete) {
  for (int op = 0; op < FG_OP_COUNT; op++) {
    const fg_op_def *d = fg_op_get(op);
    cr_assert_not_null(d, "op id %d has no descriptor", op);
    cr_assert_not_null(d->name, "op id %d has no name", op);
    cr_assert_eq(fg_op_find(d->name), op, "op name '%s' is not unique", d->name);
    cr_assert_not_null(d->infer, "op '%s' has no shape rule", d->name);
    if (d->flags & FG_OPF_LEAF) continue;
    cr_assert(d->kernel_f32 && d->kernel_f64, "op '%s' lacks a float32 or float64 kernel", d->name);
    bool nodiff = d->flags & FG_OPF_NODIFF;
    cr_assert(nodiff ? d->vjp == NULL : d->vjp != NULL,
              "op '%s' must have a VJP, or be flagged FG_OPF_NODIFF (and then have none)", d->name);
  }
}

Test(ops_table, every_op_has_a_test_case) {
  for (int op = 0; op < FG_OP_COUNT; op++)
    cr_expect(cases_for(fg_op_get(op)->name) > 0,
              "op '%s' has no case in tests/op_cases_*.c", fg_op_get(op)->name);
}

/* ---- running one case ---- */

static fg_tensor *random_input(const op_case *c, int i, fg_dtype t) {
  fg_tensor *x;
  cr_assert_eq(fg_tensor_new(&x, t, &c->in[i], NULL), FG_OK);
  for (int64_t j = 0; j < fg_tensor_numel(x); j++)
    fg_tensor_set(x, j, c->lo + (c->hi - c->lo) * fg_rng_uniform(1000 + (uint64_t)i, (uint64_t)j));
  return x;
}

typedef struct case_ud { const op_case *c; } case_ud;
static fg_node build_case(fg_graph *g, const fg_node *in, void *ud) {
  const op_case *c = ((case_ud *)ud)->c;
  return c->build(g, in, c->ctx);
}

/* Cases may use parameters: each is bound to an all-0.5 tensor (op_cases_source.c relies on it). */
static void bind_params(fg_graph *g, fg_program *p, fg_dtype t) {
  for (fg_node n = 0; n < fg_graph_node_count(g); n++) {
    if (fg_node_op(g, n) != FG_OP_PARAM) continue;
    fg_tensor *v;
    fg_shape s = fg_node_shape(g, n);
    cr_assert_eq(fg_tensor_new(&v, t, &s, NULL), FG_OK);
    fg_tensor_fill(v, 0.5);
    cr_assert_eq(fg_program_bind(p, fg_node_name(g, n), v, &terr), FG_OK, "%s", terr.msg);
    fg_tensor_free(v);
  }
}

/* Runs the case's graph in dtype t on inputs (converted to t); returns the output as float64. */
static fg_tensor *run_case(const op_case *c, fg_tensor *const *x64, fg_dtype t) {
  fg_graph *g;
  fg_graph_new(&g, NULL);
  fg_node in[OP_CASE_MAX_IN];
  char name[16];
  for (int i = 0; i < c->n_in; i++) {
    snprintf(name, sizeof name, "x%d", i);
    in[i] = fg_input(g, name, t, c->in[i]);
  }
  fg_node y = c->build(g, in, c->ctx);
  cr_assert_eq(fg_graph_status(g), FG_OK, "%s (%s): build failed: %s", c->op, c->label,
               fg_graph_errmsg(g));
  cr_assert_eq(fg_node_dtype(g, y), t, "%s (%s): output dtype does not follow the inputs", c->op,
               c->label);
  fg_program *p;
  fg_err e;
  cr_assert_eq(fg_program_new(&p, g, 1, &y, &e), FG_OK, "%s", e.msg);
  for (int i = 0; i < c->n_in; i++) {
    fg_tensor *xt;
    cr_assert_eq(fg_tensor_copy(&xt, x64[i], t, &e), FG_OK);
    snprintf(name, sizeof name, "x%d", i);
    cr_assert_eq(fg_program_bind(p, name, xt, &terr), FG_OK, "%s", terr.msg);
    fg_tensor_free(xt);
  }
  bind_params(g, p, t);
  cr_assert_eq(fg_program_run(p, &terr), FG_OK, "%s (%s): %s", c->op, c->label, terr.msg);
  fg_tensor *out;
  cr_assert_eq(fg_tensor_copy(&out, fg_program_output(p, 0), FG_F64, &e), FG_OK);
  fg_program_free(p);
  fg_graph_free(g);
  return out;
}

static void compare(const op_case *c, const fg_tensor *got, const fg_tensor *want, double tol,
                    const char *what) {
  cr_assert(fg_shape_equal(&got->shape, &want->shape), "%s (%s): %s output shape differs from "
            "the reference", c->op, c->label, what);
  for (int64_t j = 0; j < fg_tensor_numel(want); j++) {
    double a = fg_tensor_get(got, j), b = fg_tensor_get(want, j);
    if (isinf(b) && a == b) continue;
    cr_assert(fabs(a - b) <= tol * (1 + fabs(b)), "%s (%s): %s element %lld = %.12g, reference %.12g",
              c->op, c->label, what, (long long)j, a, b);
  }
}

static void run_one_case(const op_case *c) {
  fg_tensor *x[OP_CASE_MAX_IN];
  for (int i = 0; i < c->n_in; i++) x[i] = random_input(c, i, FG_F64);
  fg_tensor *y64 = run_case(c, x, FG_F64), *y32 = run_case(c, x, FG_F32), *ref;
  cr_assert_eq(fg_tensor_new(&ref, FG_F64, &y64->shape, NULL), FG_OK);
  c->reference((const fg_tensor *const *)x, ref, c->ctx);
  compare(c, y64, ref, 1e-10, "float64");
  compare(c, y32, ref, 2e-4, "float32");
  if (!c->no_grad) {
    case_ud ud = {c};
    fg_gradcheck_opts o = {.skip_mask = c->skip_grad_mask};
    fg_gradcheck_report rep;
    fg_status st = fg_gradcheck(build_case, &ud, c->n_in, x, &o, &rep);
    cr_expect_eq(st, FG_OK, "%s (%s): %s", c->op, c->label, rep.msg);
    if (c->gradgrad) {
      st = fg_gradgradcheck(build_case, &ud, c->n_in, x, &o, &rep);
      cr_expect_eq(st, FG_OK, "%s (%s) second order: %s", c->op, c->label, rep.msg);
    }
  }
  for (int i = 0; i < c->n_in; i++) fg_tensor_free(x[i]);
  fg_tensor_free(y64), fg_tensor_free(y32), fg_tensor_free(ref);
}

static void run_reject(const op_reject_case *r) {
  fg_graph *g;
  fg_graph_new(&g, NULL);
  r->build_bad(g);
  cr_expect_eq(fg_graph_status(g), r->expect, "%s (%s): expected %s, got %s (%s)", r->op, r->label,
               fg_status_name(r->expect), fg_status_name(fg_graph_status(g)), fg_graph_errmsg(g));
  cr_expect(strstr(fg_graph_errmsg(g), r->mention) != NULL,
            "%s (%s): message \"%s\" does not mention \"%s\"", r->op, r->label,
            fg_graph_errmsg(g), r->mention);
  fg_graph_free(g);
}

/* One criterion test per family, so a failure names the family. */
static void run_family(const op_case_list *l) {
  for (int c = 0; c < l->n_cases; c++) run_one_case(&l->cases[c]);
  for (int r = 0; r < l->n_rejects; r++) run_reject(&l->rejects[r]);
}

Test(ops_table, source) { run_family(&op_cases_source); }
Test(ops_table, elementwise) { run_family(&op_cases_elementwise); }
Test(ops_table, reduce) { run_family(&op_cases_reduce); }
Test(ops_table, shape) { run_family(&op_cases_shape); }
Test(ops_table, matmul) { run_family(&op_cases_matmul); }
Test(ops_table, conv) { run_family(&op_cases_conv); }
Test(ops_table, linalg) { run_family(&op_cases_linalg); }
Test(ops_table, index) { run_family(&op_cases_index); }
Test(ops_table, collective) { run_family(&op_cases_collective); }
