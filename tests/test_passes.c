/* The compiler changes nothing but speed and memory: every pass switched off gives bit-identical
 * results, planned memory (with freed ranges poisoned by NaN) gives the same gradients as one
 * buffer per value, 1 and N threads agree bit for bit — on a hand-made graph and on randomly
 * generated ones. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ops/autodiff/autodiff.h"
#include "core/compiler/pass_schedule.h"
#include "core/ir/op.h"
#include "core/runtime/program.h"
#include "core/rng.h"
#include "ops/ops.h"
#include "tests/pass_rig.h"

/* Error detail of the last failing library call, for assertion messages. */
static fg_err terr __attribute__((unused));

/* Passes on and off must give the same bits, which holds when each op runs the same kernel
 * either way: the native kernels unless FG_KERNELS pins others (a timed choice may differ
 * between conv2d and the conv2d_bias_act the epilogue makes of it). */
static void pin_kernels(void) { setenv("FG_KERNELS", "native", 0); }
TestSuite(passes, .init = pin_kernels);

/* A two-layer MLP with a loss and gradients, plus the things each pass exists for: a repeated
 * subexpression, a constant-only expression, identities, a dead branch. */
static void build_mlp(built *b, int batch, int width) {
  fg_graph_new(&b->g, NULL);
  fg_graph *g = b->g;
  fg_node x = leaf(b, false, "x", fg_shape2(batch, width), 1);
  fg_node w1 = leaf(b, true, "w1", fg_shape2(width, width), 2), b1 = leaf(b, true, "b1", fg_shape1(width), 3);
  fg_node w2 = leaf(b, true, "w2", fg_shape2(width, 4), 4);
  fg_node h = fg_tanh(g, fg_add(g, fg_matmul(g, x, w1), b1));
  fg_node h_again = fg_tanh(g, fg_add(g, fg_matmul(g, x, w1), b1));      /* CSE */
  fg_node two = fg_add(g, fg_scalar(g, 1.5, FG_F32), fg_scalar(g, 0.5, FG_F32)); /* folds to 2 */
  fg_node z = fg_mul(g, fg_matmul(g, fg_add(g, h, h_again), w2), fg_mul_scalar(g, two, 1.0));
  z = fg_reshape(g, fg_stop_gradient(g, fg_reshape(g, z, fg_shape2(batch, 4))), fg_shape2(batch, 4));
  fg_node act = fg_softplus(g, fg_sub(g, fg_exp(g, fg_mul_scalar(g, z, 0.1)), fg_sigmoid(g, z)));
  fg_node loss = fg_mean(g, fg_square(g, act), FG_ALL_AXES, false);
  fg_exp(g, fg_log(g, fg_abs(g, w2))); /* dead */
  fg_node wrt[3] = {w1, b1, w2};
  fg_node grads[3];
  (void)grads;
  /* the loss goes through stop_gradient on z, so differentiate the live part too */
  fg_node loss2 = fg_sum(g, fg_mul(g, h, h_again), FG_ALL_AXES, false);
  fg_node total = fg_add(g, loss, loss2);
  cr_assert_eq(fg_grad(g, total, 3, wrt, b->outs + 1), FG_OK, "%s", fg_graph_errmsg(g));
  b->outs[0] = total;
  b->outs[4] = act;
  b->n_out = 5;
}


Test(passes, each_pass_off_gives_bit_identical_results) {
  built b = {0};
  build_mlp(&b, 6, 8);
  fg_tensor *ref[16], *got[16];
  run(&b, &reference_opts, ref, NULL);
  for (int pass = 0; pass < FG_PASS_COUNT; pass++) {
    fg_program_opts all_but_one = {.n_threads = 2, .disabled_passes = 1u << pass, .verify = true, .poison_freed = true};
    run(&b, &all_but_one, got, NULL);
    expect_identical(&b, ref, got, fg_pass_name(pass));
    free_outs(&b, got);
    fg_program_opts only_one = {.n_threads = 1, .disabled_passes = ~(1u << pass), .verify = true, .poison_freed = true};
    run(&b, &only_one, got, NULL);
    expect_identical(&b, ref, got, fg_pass_name(pass));
    free_outs(&b, got);
  }
  free_outs(&b, ref);
  free_built(&b);
}

Test(passes, each_pass_does_its_job) {
  built b = {0};
  build_mlp(&b, 6, 8);
  fg_tensor *o[16];
  fg_program_stats s, none, no_cse;
  run(&b, &(fg_program_opts){.n_threads = 1, .verify = true}, o, &s);
  free_outs(&b, o);
  run(&b, &(fg_program_opts){.n_threads = 1, .disabled_passes = FG_PASS_BIT(CSE)}, o, &no_cse);
  free_outs(&b, o);
  run(&b, &reference_opts, o, &none);
  free_outs(&b, o);
  cr_assert_lt(s.nodes_after[FG_PASS_DCE], fg_graph_node_count(b.g), "the dead branch is gone");
  cr_assert_lt(s.nodes_compiled, no_cse.nodes_compiled, "the repeated subexpression merged");
  cr_assert_lt(s.nodes_compiled, none.nodes_compiled);
  cr_assert_gt(s.n_groups, 0, "elementwise chains fused");
  cr_assert_lt(s.n_steps, none.n_steps, "fused groups launch once");
  cr_assert_lt(s.arena_bytes, s.naive_bytes, "planning reuses memory");
  cr_assert_gt(s.n_in_place, 0);
  cr_assert_eq(none.arena_bytes, 0);
  free_built(&b);
}

Test(passes, constant_folding_and_simplification) {
  fg_graph *g;
  fg_graph_new(&g, NULL);
  fg_node x = fg_input(g, "x", FG_F32, fg_shape1(5));
  fg_node c = fg_exp(g, fg_add(g, fg_scalar(g, 1.0, FG_F32), fg_fill(g, 2.0, FG_F32, fg_shape1(5))));
  fg_node y = fg_mul(g, fg_add(g, fg_neg(g, fg_neg(g, x)), fg_zeros_like(g, x)), fg_ones_like(g, x));
  fg_node outs[2] = {c, fg_add(g, y, c)};
  fg_program *p;
  cr_assert_eq(fg_program_new_opts(&p, g, 2, outs, &(fg_program_opts){.verify = true}, NULL), FG_OK);
  const fg_graph *cg = fg_program_graph(p);
  int consts = 0, negs = 0;
  for (fg_node n = 0; n < fg_graph_node_count(cg); n++) {
    consts += fg_node_op(cg, n) == FG_OP_CONST;
    negs += fg_node_op(cg, n) == FG_OP_NEG || fg_node_op(cg, n) == FG_OP_MUL;
  }
  cr_assert_eq(consts, 1, "exp(1 + 2) folded to one constant");
  cr_assert_eq(negs, 0, "-(-x)·1 + 0 simplified to x");
  fg_tensor *xv = random_tensor(fg_shape1(5), 3, -1, 1);
  fg_program_bind(p, "x", xv, &terr);
  cr_assert_eq(fg_program_run(p, &terr), FG_OK);
  cr_assert_float_eq(fg_tensor_get(fg_program_output(p, 0), 2), expf(3.0f), 1e-5);
  cr_assert_float_eq(fg_tensor_get(fg_program_output(p, 1), 2), fg_tensor_get(xv, 2) + expf(3.0f), 1e-5);
  fg_tensor_free(xv);
  fg_program_free(p);
  fg_graph_free(g);
}

Test(passes, a_slice_taking_back_a_concat_input_is_that_input) {
  fg_graph *g;
  fg_graph_new(&g, NULL);
  fg_node a = fg_input(g, "a", FG_F32, fg_shape2(3, 2)), b = fg_input(g, "b", FG_F32, fg_shape2(3, 4));
  fg_node both[2] = {fg_exp(g, a), b}, cat = fg_concat(g, 2, both, 1);
  /* the exact second part, and a slice across both parts (kept) */
  fg_node outs[2] = {fg_mul(g, fg_slice_axis(g, cat, 1, 2, 6), b), fg_slice_axis(g, cat, 1, 1, 3)};
  fg_program *p;
  cr_assert_eq(fg_program_new_opts(&p, g, 2, outs, &(fg_program_opts){.verify = true}, NULL), FG_OK);
  const fg_graph *cg = fg_program_graph(p);
  int slices = 0;
  for (fg_node n = 0; n < fg_graph_node_count(cg); n++) slices += fg_node_op(cg, n) == FG_OP_SLICE;
  cr_assert_eq(slices, 1, "slice [2, 6) of concat([3,2], [3,4]) is the second input");
  fg_tensor *av = random_tensor(fg_shape2(3, 2), 4, -1, 1), *bv = random_tensor(fg_shape2(3, 4), 5, -1, 1);
  fg_program_bind(p, "a", av, &terr);
  fg_program_bind(p, "b", bv, &terr);
  cr_assert_eq(fg_program_run(p, &terr), FG_OK);
  for (int64_t i = 0; i < 12; i++)
    cr_assert_eq(fg_tensor_get(fg_program_output(p, 0), i), (double)((float)fg_tensor_get(bv, i) * (float)fg_tensor_get(bv, i)));
  for (int64_t r = 0; r < 3; r++) {
    cr_assert_float_eq(fg_tensor_get(fg_program_output(p, 1), 2 * r), exp(fg_tensor_get(av, 2 * r + 1)), 1e-6);
    cr_assert_eq(fg_tensor_get(fg_program_output(p, 1), 2 * r + 1), fg_tensor_get(bv, 4 * r));
  }
  fg_tensor_free(av), fg_tensor_free(bv);
  fg_program_free(p);
  fg_graph_free(g);
}

Test(passes, threads_give_bit_identical_results) {
  built b = {0};
  build_mlp(&b, 96, 64); /* big enough that kernels are split */
  fg_tensor *one[16], *many[16];
  run(&b, &(fg_program_opts){.n_threads = 1}, one, NULL);
  for (int t = 2; t <= 4; t++) {
    run(&b, &(fg_program_opts){.n_threads = t}, many, NULL);
    expect_identical(&b, one, many, "threads");
    free_outs(&b, many);
  }
  free_outs(&b, one);
  free_built(&b);
}

Test(passes, planned_memory_with_poison_matches_unplanned) {
  built b = {0};
  build_mlp(&b, 32, 16);
  fg_tensor *unplanned[16], *planned[16];
  run(&b, &(fg_program_opts){.n_threads = 2, .disabled_passes = FG_PASS_BIT(MEMPLAN)}, unplanned, NULL);
  run(&b, &(fg_program_opts){.n_threads = 2, .poison_freed = true}, planned, NULL);
  expect_identical(&b, unplanned, planned, "memory plan");
  free_outs(&b, unplanned), free_outs(&b, planned);
  free_built(&b);
}

Test(passes, unknown_pass_names_are_rejected) {
  fg_graph *g;
  fg_graph_new(&g, NULL);
  fg_node x = fg_input(g, "x", FG_F32, fg_shape1(2));
  fg_program *p;
  fg_err e;
  setenv("FG_DISABLE_PASSES", "cse,fusion", 1);
  cr_assert_eq(fg_program_new(&p, g, 1, &x, &e), FG_E_MISUSE);
  unsetenv("FG_DISABLE_PASSES");
  cr_assert(strstr(e.msg, "'fusion'") != NULL, "%s", e.msg);
  fg_graph_free(g);
}

/* ---- random graphs ---- */

typedef struct rng { uint64_t seed, n; } rng;
static double draw(rng *r) { return fg_rng_uniform(r->seed, r->n++); }
static int pick(rng *r, int n) { return (int)(draw(r) * n); }

/* A random DAG over [4, 6] values: unary and binary elementwise ops (some broadcasting),
 * reductions that are broadcast back, matmuls, transposes, slices and pads; several outputs
 * and gradients with respect to two parameters. */
static void build_random(built *b, uint64_t seed) {
  rng r = {seed, 0};
  fg_graph_new(&b->g, NULL);
  fg_graph *g = b->g;
  fg_node pool[64];
  int n = 0;
  pool[n++] = leaf(b, false, "x", fg_shape2(4, 6), seed * 3 + 1);
  pool[n++] = leaf(b, true, "p", fg_shape2(4, 6), seed * 3 + 2);
  pool[n++] = leaf(b, true, "q", fg_shape1(6), seed * 3 + 3);
  fg_node w = leaf(b, true, "w", fg_shape2(6, 6), seed * 3 + 4);
  for (int step = 0; step < 30 && n < 64; step++) {
    fg_node a = pool[pick(&r, n)], c = pool[pick(&r, n)], y;
    fg_shape as = fg_node_shape(g, a);
    bool full = as.ndim == 2;
    switch (pick(&r, 12)) {
    case 0: y = fg_add(g, a, c); break;
    case 1: y = fg_mul(g, a, c); break;
    case 2: y = fg_sub(g, a, fg_mul_scalar(g, c, 0.5)); break;
    case 3: y = fg_tanh(g, a); break;
    case 4: y = fg_sigmoid(g, a); break;
    case 5: y = fg_softplus(g, a); break;
    case 6: y = fg_exp(g, fg_mul_scalar(g, fg_tanh(g, a), 0.5)); break;
    case 7: y = full ? fg_matmul(g, a, w) : fg_mul(g, a, a); break;
    case 8: y = full ? fg_add(g, a, fg_sum(g, a, FG_AXIS(1), true)) : fg_neg(g, a); break;
    case 9: y = full ? fg_mul(g, a, fg_max(g, a, FG_AXIS(0), false)) : fg_square(g, a); break;
    case 10: y = full ? fg_pad(g, fg_slice_axis(g, a, 1, 1, 5), (int64_t[]){0, 1}, (int64_t[]){0, 1}, NULL, 0.0) : a; break;
    default: y = fg_maximum(g, a, fg_mul_scalar(g, c, 0.3)); break;
    }
    cr_assert_eq(fg_graph_status(g), FG_OK, "seed %llu step %d: %s", (unsigned long long)seed, step, fg_graph_errmsg(g));
    pool[n++] = y;
  }
  fg_node loss = fg_sum(g, fg_add(g, pool[n - 1], pool[n - 2]), FG_ALL_AXES, false);
  fg_node wrt[3] = {pool[1], pool[2], w};
  cr_assert_eq(fg_grad(g, loss, 3, wrt, b->outs + 1), FG_OK, "%s", fg_graph_errmsg(g));
  b->outs[0] = loss;
  b->outs[4] = pool[n - 3];
  b->n_out = 5;
}

Test(passes, random_graphs_passes_on_and_off) {
  for (uint64_t seed = 1; seed <= 40; seed++) {
    built b = {0};
    build_random(&b, seed);
    fg_tensor *ref[16], *got[16];
    run(&b, &reference_opts, ref, NULL);
    run(&b, &(fg_program_opts){.n_threads = 2, .verify = true, .poison_freed = true}, got, NULL);
    expect_identical(&b, ref, got, "random graph, all passes");
    free_outs(&b, got);
    free_outs(&b, ref);
    free_built(&b);
  }
}

/* In place over input 0 only when it is as big as the output: a broadcast [1, 2] input rounds
 * to the same 64 bytes as a [4, 2] output but is re-read for every row (found by a coupling). */
Test(passes, in_place_never_overwrites_a_broadcast_input) {
  fg_graph *g;
  fg_graph_new(&g, NULL);
  fg_node a = fg_input(g, "a", FG_F64, fg_shape2(1, 2)), b = fg_input(g, "b", FG_F64, fg_shape2(4, 2));
  fg_node y = fg_neg(g, fg_mul(g, fg_exp(g, a), b));
  fg_program *p;
  cr_assert_eq(fg_program_new_opts(&p, g, 1, &y, &(fg_program_opts){.disabled_passes = FG_PASS_BIT(FUSE)}, NULL), FG_OK);
  double av[2] = {0, 1}, bv[8] = {2, 2, 2, 2, 2, 2, 2, 2};
  fg_tensor *at, *bt;
  fg_shape as = fg_shape2(1, 2), bs = fg_shape2(4, 2);
  fg_tensor_from_data(&at, FG_F64, &as, av, NULL), fg_tensor_from_data(&bt, FG_F64, &bs, bv, NULL);
  fg_program_bind(p, "a", at, &terr), fg_program_bind(p, "b", bt, &terr);
  cr_assert_eq(fg_program_run(p, &terr), FG_OK);
  for (int i = 0; i < 8; i++)
    cr_assert_float_eq(fg_tensor_get(fg_program_output(p, 0), i), -2 * exp(av[i % 2]), 1e-12, "element %d", i);
  fg_tensor_free(at), fg_tensor_free(bt);
  fg_program_free(p);
  fg_graph_free(g);
}

/* FG_PROFILE's table (fg_program_opts.profile): per op family, then the costliest steps by op
 * (with the implementation chosen) and shapes, over the runs after the first (which pays
 * one-time costs) once there are two; a program without profiling says so. */
Test(passes, profile_tables_name_ops_and_shapes) {
  fg_graph *g;
  fg_graph_new(&g, NULL);
  fg_node x = fg_input(g, "x", FG_F32, fg_shape2(64, 32)), w = fg_input(g, "w", FG_F32, fg_shape2(32, 16));
  fg_node y = fg_sum(g, fg_matmul(g, x, w), 3u, false);
  fg_program *p, *quiet;
  cr_assert_eq(fg_program_new_opts(&p, g, 1, &y, &(fg_program_opts){.profile = true}, NULL), FG_OK);
  cr_assert_eq(fg_program_new(&quiet, g, 1, &y, NULL), FG_OK);
  fg_tensor *xv = random_tensor(fg_shape2(64, 32), 1, -1, 1), *wv = random_tensor(fg_shape2(32, 16), 2, -1, 1);
  fg_program *both[2] = {p, quiet};
  for (int i = 0; i < 2; i++) {
    fg_program_bind(both[i], "x", xv, &terr), fg_program_bind(both[i], "w", wv, &terr);
    for (int rep = 0; rep < 3; rep++) cr_assert_eq(fg_program_run(both[i], &terr), FG_OK);
  }
  char buf[4096];
  fg_program_profile(p, buf, sizeof buf);
  cr_assert(strstr(buf, "over 2 runs after the first\n"), "the first run dropped: %s", buf);
  cr_assert(strstr(buf, "matmul ") && strstr(buf, "sum "), "per-family rows: %s", buf);
  cr_assert(strstr(buf, "] [32, 16] -> [64, 16]"), "op and shapes row: %s", buf);
  cr_assert(strstr(buf, "matmul/"), "an op with implementations names the one chosen: %s", buf);
  cr_assert(strstr(buf, "sum [64, 16] -> []"), "op and shapes row: %s", buf);
  /* the memory at the peak: the matmul's [64, 16] is the one planned value, alive at step 1 */
  cr_assert(strstr(buf, "memory: 0.0 MiB of values alive at step 1 of 2"), "peak: %s", buf);
  cr_assert(strstr(buf, "\nmatmul [64, 16]   "), "values at the peak by op and shape: %s", buf);
  char small[40];
  fg_program_profile(p, small, sizeof small); /* truncated, still a string */
  cr_assert_lt(strlen(small), sizeof small);
  fg_program_profile(quiet, buf, sizeof buf);
  cr_assert(strstr(buf, "profiling is off"), "%s", buf);
  fg_program *once;
  cr_assert_eq(fg_program_new_opts(&once, g, 1, &y, &(fg_program_opts){.profile = true}, NULL), FG_OK);
  fg_program_bind(once, "x", xv, &terr), fg_program_bind(once, "w", wv, &terr);
  cr_assert_eq(fg_program_run(once, &terr), FG_OK);
  fg_program_profile(once, buf, sizeof buf);
  cr_assert(strstr(buf, "over 1 run\n") && strstr(buf, "matmul/"), "a single run is kept: %s", buf);
  fg_program_free(once);
  fg_tensor_free(xv), fg_tensor_free(wv);
  fg_program_free(p), fg_program_free(quiet);
  fg_graph_free(g);
}

/* The scheduler runs a remat step when a reader waits for it alone, not when its inputs are
 * ready: here the copy r (half the size of the chain's values, so the cheapest step to start
 * with) would otherwise be alive through the chain's peak.  With `pair`, r is read by a second
 * copy (a relu of a copied conv): r waits for that copy's reader too. */
static void schedule_remat(bool pair) {
  fg_graph *g;
  cr_assert_eq(fg_graph_new(&g, NULL), FG_OK);
  fg_node x = fg_input(g, "x", FG_F32, fg_shape1(4096));
  fg_node xh = fg_input(g, "xh", FG_F32, fg_shape1(2048));
  fg_node y1 = fg_exp(g, x), y2 = fg_exp(g, y1), y3 = fg_add(g, y1, y2);
  fg_node s = fg_sum(g, y3, FG_ALL_AXES, false);
  fg_node r = fg_relu(g, xh);
  fg_graph_mark(g, r, FG_NODE_REMAT); /* r is the last node */
  fg_node r2 = r;
  if (pair) {
    r2 = fg_exp(g, r);
    fg_graph_mark(g, r2, FG_NODE_REMAT);
  }
  fg_node t = fg_add(g, r2, s);
  fg_node nodes[] = {y1, y2, y3, s, r, t, r2};
  int n_nodes = pair ? 7 : 6;
  fg_memplan_step steps[7];
  fg_node reads[7][2];
  uint8_t *planned = calloc((size_t)fg_graph_node_count(g) + 1, 1);
  for (int i = 0; i < n_nodes; i++) {
    steps[i] = (fg_memplan_step){
        .node = nodes[i], .n_reads = fg_node_num_inputs(g, nodes[i]), .reads = reads[i]};
    for (int k = 0; k < steps[i].n_reads; k++) reads[i][k] = fg_node_input(g, nodes[i], k);
    planned[nodes[i]] = nodes[i] != t;
  }
  cr_assert_eq(fg_schedule_steps(g, n_nodes, steps, planned, &terr), FG_OK, "%s", terr.msg);
  int at_r = -1, at_s = -1;
  for (int i = 0; i < n_nodes; i++) {
    if (steps[i].node == r) at_r = i;
    if (steps[i].node == s) at_s = i;
  }
  cr_expect_eq(at_r, at_s + 1, "r at step %d, the chain's sum at %d (pair %d)", at_r, at_s, pair);
  free(planned);
  fg_graph_free(g);
}

Test(passes, remat_steps_run_when_their_reader_needs_them) {
  schedule_remat(false);
  schedule_remat(true);
}
