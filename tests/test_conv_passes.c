/* The conv passes (epilogue, remat, chain, bias_grad, conv_grads) on small conv nets: each
 * makes what it exists for, and the results keep their bits. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "core/ir/op.h"
#include "core/runtime/program.h"
#include "ops/autodiff/autodiff.h"
#include "ops/ops.h"
#include "tests/pass_rig.h"

/* The native kernels unless FG_KERNELS pins others, as in tests/test_passes.c. */
static void pin_kernels(void) { setenv("FG_KERNELS", "native", 0); }
TestSuite(conv_passes, .init = pin_kernels);

/* The passes whose results may differ in the last bits under the kernels the suite runs with:
 * bias_grad under oneDNN's (its conv2d_weight_bias_grad takes the primitive's own bias sums,
 * diff_bias, where the separate sum runs the native reduction); none under the native kernels,
 * whose bias sums add as the sum kernel does.  (conv_grads is off where FG_KERNELS pins the
 * gradients, and its op runs the separate ops' paths or primitives.) */
static uint32_t inexact_passes(void) {
  const char *k = getenv("FG_KERNELS");
  return k && strncmp(k, "onednn", 6) == 0 ? FG_PASS_BIT(BIAS_GRAD) : 0;
}

/* Two conv layers with bias and relu, a loss and its gradients: the epilogue pass turns each
 * conv2d -> bias add -> relu into one conv2d_bias_act, except where the conv's own output is
 * read elsewhere, and the second conv's input gradient times relu's mask into one
 * conv2d_input_grad_relu; every result stays bit-identical. */
static void build_convnet(built *b, bool side_reader) {
  fg_graph_new(&b->g, NULL);
  fg_graph *g = b->g;
  fg_node x = leaf(b, false, "x", fg_shape4(2, 3, 6, 5), 1);
  fg_node w1 = leaf(b, true, "w1", fg_shape4(8, 3, 3, 3), 2);
  fg_node b1 = leaf(b, true, "b1", fg_shape1(8), 3);
  fg_node w2 = leaf(b, true, "w2", fg_shape4(4, 8, 1, 1), 4);
  fg_node b2 = leaf(b, true, "b2", fg_shape1(4), 5);
  fg_conv2d_opts pad = fg_conv2d_defaults();
  pad.padding[0] = pad.padding[1] = 1;
  fg_node h = fg_relu(g, fg_conv2d(g, x, w1, b1, &pad));
  fg_node y = fg_conv2d(g, h, w2, b2, NULL); /* bias, no relu */
  fg_node loss = fg_sum(g, fg_square(g, y), FG_ALL_AXES, false);
  if (side_reader) /* the first conv's raw output read by something else too */
    loss = fg_add(g, loss, fg_sum(g, fg_conv2d(g, x, w1, FG_NONE, &pad), FG_ALL_AXES, false));
  fg_node wrt[4] = {w1, b1, w2, b2};
  cr_assert_eq(fg_grad(g, loss, 4, wrt, b->outs + 1), FG_OK, "%s", fg_graph_errmsg(g));
  b->outs[0] = loss;
  b->n_out = 5;
}

Test(conv_passes, epilogue_fuses_conv_bias_relu_bit_identically) {
  for (int side = 0; side < 2; side++) {
    built b = {0};
    build_convnet(&b, side);
    fg_tensor *ref[16], *got[16];
    run(&b, &reference_opts, ref, NULL);
    fg_program_opts all = {.n_threads = 2, .disabled_passes = inexact_passes(), .verify = true,
                           .poison_freed = true};
    run(&b, &all, got, NULL);
    expect_identical(&b, ref, got, "epilogue");
    free_outs(&b, got);
    fg_program *p;
    cr_assert_eq(fg_program_new_opts(&p, b.g, b.n_out, b.outs, &all, NULL), FG_OK);
    const fg_graph *cg = fg_program_graph(p);
    int fused = count_op(cg, FG_OP_CONV2D_BIAS_ACT), relus = count_op(cg, FG_OP_RELU);
    cr_assert_eq(count_op(cg, FG_OP_CONV2D_INPUT_GRAD_RELU), 1, "relu's gradient went into the "
                 "second conv's input gradient");
    cr_assert_eq(count_op(cg, FG_OP_GREATER), 0, "no mask is computed apart");
    if (!side) {
      cr_assert_eq(fused, 2, "both convs fused, got %d", fused);
      cr_assert_eq(relus, 0, "the relu went into the first conv");
    } else {
      cr_assert_eq(fused, 1, "only the second conv fused (the first one's output is read twice; "
                             "CSE merged the two convs), got %d", fused);
      cr_assert_eq(relus, 1);
    }
    fg_program_free(p);
    free_outs(&b, ref);
    free_built(&b);
  }
}

/* An input gradient times (h > threshold): the epilogue pass makes one conv2d_input_grad_relu
 * of it for relu's mask (threshold 0) only, and either way the results are bit-identical. */
Test(conv_passes, epilogue_masks_input_gradients_by_relu_only) {
  const double thresholds[2] = {0.0, 0.25};
  for (int t = 0; t < 2; t++) {
    built b = {0};
    fg_graph_new(&b.g, NULL);
    fg_node dy = leaf(&b, false, "dy", fg_shape4(2, 4, 6, 5), 1);
    fg_node w = leaf(&b, true, "w", fg_shape4(4, 3, 3, 3), 2);
    fg_node h = leaf(&b, false, "h", fg_shape4(2, 3, 6, 5), 3);
    fg_conv2d_opts pad = fg_conv2d_defaults();
    pad.padding[0] = pad.padding[1] = 1;
    fg_node gx = fg_conv2d_input_grad(b.g, dy, w, 6, 5, &pad);
    b.outs[0] = fg_mul(b.g, gx, fg_greater(b.g, h, fg_scalar(b.g, thresholds[t], FG_F32)));
    b.n_out = 1;
    fg_tensor *ref[16], *got[16];
    run(&b, &reference_opts, ref, NULL);
    fg_program_opts all = {.n_threads = 2, .verify = true, .poison_freed = true};
    run(&b, &all, got, NULL);
    expect_identical(&b, ref, got, "masked input gradient");
    fg_program *p;
    cr_assert_eq(fg_program_new_opts(&p, b.g, b.n_out, b.outs, &all, NULL), FG_OK);
    int masked = count_op(fg_program_graph(p), FG_OP_CONV2D_INPUT_GRAD_RELU);
    cr_assert_eq(masked, t == 0, "threshold %g: %d conv2d_input_grad_relu", thresholds[t], masked);
    fg_program_free(p);
    free_outs(&b, ref), free_outs(&b, got);
    free_built(&b);
  }
}

/* Five blocks of a coupling-like net on [8, 2, 16, 16]: a 3x3 conv of 2 channels to 64 (bias,
 * relu), a 1x1 conv 64 -> 64 (relu), a 3x3 conv back to 2 channels added to the block's input;
 * with `biases` the last two have biases too (as Glow's), and with `train` the graph has the
 * gradients of the loss.  The first conv's output is 16x its input and costs 18 multiply-adds
 * per element: the remat pass computes it again for the backward pass instead of keeping it;
 * the others stay. */
static void build_couplings(built *b, bool biases, bool train, int64_t batch, int64_t hw) {
  fg_graph_new(&b->g, NULL);
  fg_graph *g = b->g;
  fg_node x = leaf(b, false, "x", fg_shape4(batch, 2, hw, hw), 1);
  fg_node w1 = leaf(b, true, "w1", fg_shape4(64, 2, 3, 3), 2),
          b1 = leaf(b, true, "b1", fg_shape1(64), 3);
  fg_node w2 = leaf(b, true, "w2", fg_shape4(64, 64, 1, 1), 4);
  fg_node w3 = leaf(b, true, "w3", fg_shape4(2, 64, 3, 3), 5);
  fg_node b2 = biases ? leaf(b, true, "b2", fg_shape1(64), 6) : FG_NONE;
  fg_node b3 = biases ? leaf(b, true, "b3", fg_shape1(2), 7) : FG_NONE;
  fg_conv2d_opts pad = fg_conv2d_defaults();
  pad.padding[0] = pad.padding[1] = 1;
  fg_node h = x;
  for (int block = 0; block < 5; block++) {
    fg_node a = fg_relu(g, fg_conv2d(g, h, w1, b1, &pad));
    fg_node c = fg_relu(g, fg_conv2d(g, a, w2, b2, NULL));
    h = fg_add(g, h, fg_mul_scalar(g, fg_conv2d(g, c, w3, b3, &pad), 0.1));
  }
  fg_node loss = fg_sum(g, fg_square(g, h), FG_ALL_AXES, false);
  b->outs[0] = loss, b->n_out = 1;
  if (!train) return;
  fg_node wrt[7] = {x, w1, b1, w2, w3, b2, b3};
  int n_wrt = biases ? 7 : 5;
  cr_assert_eq(fg_grad(g, loss, n_wrt, wrt, b->outs + 1), FG_OK, "%s", fg_graph_errmsg(g));
  b->n_out = 1 + n_wrt;
}

static int count_remat(const fg_program_opts *o, const built *b, size_t *arena) {
  fg_program *p;
  cr_assert_eq(fg_program_new_opts(&p, b->g, b->n_out, b->outs, o, NULL), FG_OK);
  const fg_graph *g = fg_program_graph(p);
  int k = 0;
  for (fg_node n = 0; n < fg_graph_node_count(g); n++) {
    bool remat = fg_graph_node(g, n)->flags & FG_NODE_REMAT;
    cr_expect(!remat || fg_node_op(g, n) == FG_OP_CONV2D_BIAS_ACT, "only the first convs");
    k += remat;
  }
  *arena = fg_program_get_stats(p)->arena_bytes;
  fg_program_free(p);
  return k;
}

Test(conv_passes, remat_computes_cheap_large_values_again_for_the_backward_pass) {
  built b = {0};
  build_couplings(&b, false, true, 8, 16);
  fg_program_opts on = {.n_threads = 2, .disabled_passes = inexact_passes(), .verify = true,
                        .poison_freed = true};
  fg_program_opts off = on;
  off.disabled_passes |= FG_PASS_BIT(REMAT);
  size_t arena_on, arena_off;

  /* the copies run when the backward pass needs them: of the first convs' 512 KiB values, at
   * most two are alive at once instead of five (with the native kernels: oneDNN's Winograd
   * primitives' scratch, 36 MiB here, is most of the arena, and which values are alive beside
   * it depends on more than remat: a conv2d_input_grad_relu keeps its mask input) */
  fg_program_opts native_on = on, native_off = off;
  native_on.kernels = native_off.kernels = "native";
  cr_expect_eq(count_remat(&native_on, &b, &arena_on), 5, "one copy per block");
  cr_expect_eq(count_remat(&native_off, &b, &arena_off), 0);
  cr_expect_leq(arena_on + 3 * (512 << 10), arena_off, "arena %zu with remat, %zu without",
                arena_on, arena_off);
  cr_expect_eq(count_remat(&on, &b, &arena_on), 5, "one copy per block, with any kernels");
  fg_tensor *ref[16], *with[16], *without[16];
  run(&b, &reference_opts, ref, NULL);
  run(&b, &on, with, NULL);
  run(&b, &off, without, NULL);
  expect_identical(&b, ref, with, "remat");
  expect_identical(&b, ref, without, "passes without remat");
  free_outs(&b, ref), free_outs(&b, with), free_outs(&b, without);
  free_built(&b);
}

/* RealNVP's residual net keeps relu(h) of its first conv's output h, which also feeds the
 * residual sum (so the relu is no epilogue of the conv): remat computes the conv and the relu
 * again for the backward pass, each once, and the results keep their bits. */
Test(conv_passes, remat_computes_a_relu_of_a_cheap_conv_again_with_the_conv) {
  built b = {0};
  fg_graph_new(&b.g, NULL);
  fg_graph *g = b.g;
  fg_node x = leaf(&b, false, "x", fg_shape4(8, 2, 16, 16), 1);
  fg_node w1 = leaf(&b, true, "w1", fg_shape4(32, 2, 3, 3), 2),
          b1 = leaf(&b, true, "b1", fg_shape1(32), 3);
  fg_node w2 = leaf(&b, true, "w2", fg_shape4(32, 32, 3, 3), 4);
  fg_conv2d_opts pad = fg_conv2d_defaults();
  pad.padding[0] = pad.padding[1] = 1;
  fg_node h = fg_conv2d(g, x, w1, b1, &pad);
  h = fg_add(g, h, fg_conv2d(g, fg_relu(g, h), w2, FG_NONE, &pad));
  b.outs[0] = fg_sum(g, fg_square(g, h), FG_ALL_AXES, false);
  fg_node wrt[4] = {x, w1, b1, w2};
  cr_assert_eq(fg_grad(g, b.outs[0], 4, wrt, b.outs + 1), FG_OK, "%s", fg_graph_errmsg(g));
  b.n_out = 5;
  fg_program_opts on = {.n_threads = 2, .kernels = "native", .verify = true,
                        .poison_freed = true};
  fg_program *p;
  cr_assert_eq(fg_program_new_opts(&p, b.g, b.n_out, b.outs, &on, NULL), FG_OK);
  const fg_graph *pg = fg_program_graph(p);
  int relus = 0, convs = 0;
  for (fg_node n = 0; n < fg_graph_node_count(pg); n++) {
    if (!(fg_graph_node(pg, n)->flags & FG_NODE_REMAT)) continue;
    relus += fg_node_op(pg, n) == FG_OP_RELU;
    convs += fg_node_op(pg, n) == FG_OP_CONV2D_BIAS_ACT;
  }
  fg_program_free(p);
  cr_expect(relus == 1 && convs == 1, "copies: %d relu, %d conv", relus, convs);
  fg_program_opts ref_opts = reference_opts;
  ref_opts.kernels = "native";
  expect_runs_identical(&b, &ref_opts, &on, "remat of the relu and its conv");
  free_built(&b);
}

/* The chains a program made, and the convs in each (all the same here, else -1). */
static int count_chains(const built *b, const fg_program_opts *o, int *convs) {
  fg_program *p;
  cr_assert_eq(fg_program_new_opts(&p, b->g, b->n_out, b->outs, o, NULL), FG_OK);
  const fg_graph *g = fg_program_graph(p);
  int k = 0;
  *convs = 0;
  for (fg_node n = 0; n < fg_graph_node_count(g); n++) {
    if (fg_node_op(g, n) != FG_OP_CONV2D_CHAIN) continue;
    int c = (int)((const fg_conv2d_chain_attr *)fg_node_attr(g, n))->n_convs;
    *convs = k++ == 0 || *convs == c ? c : -1;
  }
  fg_program_free(p);
  return k;
}

/* The chain pass makes each block's convs (with biases, as Glow's) one conv2d_chain: of all
 * three in the forward graph alone, of the first two in the training graph (where the 1x1
 * conv's output is also read by the backward pass, and remat gives that its own copy of the
 * first conv's). */
Test(conv_passes, chain_runs_a_coupling_nets_convs_image_by_image) {
  for (int train = 0; train < 2; train++) {
    built b = {0};
    build_couplings(&b, true, train, 8, 20);
    fg_program_opts on = {.n_threads = 2, .kernels = "native", .verify = true,
                          .poison_freed = true};
    fg_program_opts off = on, direct = on;
    off.disabled_passes = FG_PASS_BIT(CHAIN);
    direct.kernels = "conv2d_bias_act=direct"; /* pinned: the convs stay apart to run it */
    int convs;
    cr_expect_eq(count_chains(&b, &on, &convs), 5, "one chain per block");
    cr_expect_eq(convs, train ? 2 : 3, "convs per chain");
    cr_expect_eq(count_chains(&b, &off, &convs), 0);
    cr_expect_eq(count_chains(&b, &direct, &convs), 0);
    /* each image's convs run the native paths the separate ops' kernels run, which take whole
     * images at 20x20 (400 pixels, one a group): the same bits, but for the forward chain's
     * last conv, the GEMM over its taps (ops/kernels/conv_taps.c) where the separate op runs
     * direct, whose sums the loss (5.5e11) does not tell apart; images are split among parts
     * whole, so the same bits for any number of threads */
    fg_tensor *ref[16], *with[16], *without[16], *one[16];
    fg_program_opts ref_opts = reference_opts;
    ref_opts.kernels = "native";
    run(&b, &ref_opts, ref, NULL);
    run(&b, &on, with, NULL);
    run(&b, &off, without, NULL);
    on.n_threads = 1;
    run(&b, &on, one, NULL);
    expect_identical(&b, ref, with, "chain");
    expect_identical(&b, ref, without, "passes without chain");
    expect_identical(&b, ref, one, "chain, one thread");
    free_outs(&b, ref), free_outs(&b, with), free_outs(&b, without), free_outs(&b, one);
    free_built(&b);
  }
}

/* At 8x8 the chain takes its 16 images in groups of 6, 6 and 4 (384 pixels), the values
 * inside a group channel-major, so that the 1x1 conv is one GEMM over the group: the same
 * values as the separate ops up to rounding, and the same bits for any number of threads
 * (groups are fixed by the shapes). */
Test(conv_passes, chain_groups_images_with_the_same_bits_for_any_thread_count) {
  for (int train = 0; train < 2; train++) {
    built b = {0};
    build_couplings(&b, true, train, 16, 8);
    fg_program_opts on = {.n_threads = 2, .kernels = "native", .verify = true,
                          .poison_freed = true};
    fg_program_opts off = on;
    off.disabled_passes = FG_PASS_BIT(CHAIN);
    int convs;
    cr_expect_eq(count_chains(&b, &on, &convs), 5, "one chain per block");
    cr_expect_eq(convs, train ? 2 : 3, "convs per chain");
    fg_tensor *with[16], *without[16], *one[16], *three[16];
    run(&b, &on, with, NULL);
    run(&b, &off, without, NULL);
    on.n_threads = 1;
    run(&b, &on, one, NULL);
    on.n_threads = 3;
    run(&b, &on, three, NULL);
    expect_close(&b, without, with, 1e-5, "chain against the separate ops");
    expect_identical(&b, with, one, "chain, one thread");
    expect_identical(&b, with, three, "chain, three threads");
    free_outs(&b, with), free_outs(&b, without), free_outs(&b, one), free_outs(&b, three);
    free_built(&b);
  }
}

/* conv2d_weight_grad(x, dy) and dy's sum over N, H and W, made in either order, kept dims or
 * not: one conv2d_weight_bias_grad.  A sum over other axes, or one made before x exists, stays
 * apart.  Bit-identical with the native kernels, close to the reference with any. */
Test(conv_passes, bias_grad_takes_a_bias_gradient_with_its_weight_gradient) {
  const uint32_t channels = FG_AXIS(0) | FG_AXIS(2) | FG_AXIS(3), planes = FG_AXIS(2) | FG_AXIS(3);
  const struct {
    bool sum_first, keepdims, x_late;
    uint32_t axes;
    int fused;
  } v[] = {{false, false, false, channels, 1}, {true, false, false, channels, 1},
           {true, true, false, channels, 1},   {false, false, false, planes, 0},
           {true, false, true, channels, 0}};
  for (int i = 0; i < (int)(sizeof v / sizeof *v); i++) {
    built b = {0};
    fg_graph_new(&b.g, NULL);
    fg_graph *g = b.g;
    fg_node x = v[i].x_late ? FG_NONE : leaf(&b, false, "x", fg_shape4(3, 5, 7, 6), 1);
    fg_node dy = leaf(&b, false, "dy", fg_shape4(3, 4, 7, 6), 2), sum = FG_NONE;
    if (v[i].sum_first) sum = fg_sum(g, dy, v[i].axes, v[i].keepdims);
    if (v[i].x_late) x = leaf(&b, false, "x", fg_shape4(3, 5, 7, 6), 1);
    fg_conv2d_opts pad = fg_conv2d_defaults();
    pad.padding[0] = pad.padding[1] = 1;
    fg_node wg = fg_conv2d_weight_grad(g, x, dy, 3, 3, &pad);
    if (!v[i].sum_first) sum = fg_sum(g, dy, v[i].axes, v[i].keepdims);
    b.outs[0] = fg_mul_scalar(g, wg, 2.0), b.outs[1] = sum, b.n_out = 2;
    fg_tensor *ref[16], *got[16], *ref_native[16], *native[16];
    run(&b, &reference_opts, ref, NULL);
    fg_program_opts all = {.n_threads = 2, .verify = true, .poison_freed = true};
    run(&b, &all, got, NULL);
    expect_close(&b, ref, got, 1e-5, "weight and bias gradients");
    fg_program_opts reference_native = reference_opts, all_native = all;
    reference_native.kernels = all_native.kernels = "native";
    run(&b, &reference_native, ref_native, NULL);
    run(&b, &all_native, native, NULL);
    expect_identical(&b, ref_native, native, "weight and bias gradients, native kernels");
    fg_program *p;
    cr_assert_eq(fg_program_new_opts(&p, g, b.n_out, b.outs, &all, NULL), FG_OK);
    int fused = count_op(fg_program_graph(p), FG_OP_CONV2D_WEIGHT_BIAS_GRAD);
    cr_expect_eq(fused, v[i].fused, "variant %d: %d conv2d_weight_bias_grad", i, fused);
    fg_program_free(p);
    free_outs(&b, ref), free_outs(&b, got), free_outs(&b, ref_native), free_outs(&b, native);
    free_built(&b);
  }
}

/* In a training graph every conv's bias gradient goes with its weight gradient (5 blocks of
 * three convs with biases: 15), and each block's first conv (2 channels to 64, 3x3) takes its
 * input gradient with them (conv_grads; not the 1x1 conv of 64 channels, nor the last conv of
 * 64 to 2); the gradients keep their bits with the native kernels. */
Test(conv_passes, bias_grad_and_conv_grads_pair_a_training_graphs_gradients) {
  built b = {0};
  build_couplings(&b, true, true, 4, 8);
  fg_program_opts on = {.n_threads = 2, .kernels = "native", .verify = true,
                        .poison_freed = true};
  fg_program *p;
  cr_assert_eq(fg_program_new_opts(&p, b.g, b.n_out, b.outs, &on, NULL), FG_OK);
  const fg_graph *cg = fg_program_graph(p);
  cr_expect_eq(count_op(cg, FG_OP_CONV2D_WEIGHT_BIAS_GRAD), 10);
  cr_expect_eq(count_op(cg, FG_OP_CONV2D_INPUT_WEIGHT_GRAD), 5);
  cr_expect_eq(count_op(cg, FG_OP_CONV2D_WEIGHT_GRAD), 0);
  fg_program_free(p);
  fg_program_opts reference_native = reference_opts;
  reference_native.kernels = "native";
  expect_runs_identical(&b, &reference_native, &on, "training gradients");
  free_built(&b);
}

/* A rule for conv2d_weight_grad holds for the conv2d_weight_bias_grad the pass makes of it (its
 * own rule auto): pinned to the GEMM path, every weight gradient of a training graph runs it. */
Test(conv_passes, a_rule_for_weight_gradients_holds_for_their_fused_bias_gradients) {
  built b = {0};
  build_couplings(&b, true, true, 4, 8);
  fg_program *p;
  fg_program_opts o = {.n_threads = 2, .kernels = "conv2d_weight_grad=gemm"};
  cr_assert_eq(fg_program_new_opts(&p, b.g, b.n_out, b.outs, &o, NULL), FG_OK);
  const fg_graph *cg = fg_program_graph(p);
  int fused = 0;
  for (fg_node n = 0; n < fg_graph_node_count(cg); n++) {
    if (fg_node_op(cg, n) != FG_OP_CONV2D_WEIGHT_BIAS_GRAD) continue;
    fused++;
    const char *k = fg_program_node_kernel(p, n);
    cr_expect(k && strncmp(k, "gemm", 4) == 0, "node %d runs %s", n, k ? k : "(none)");
  }
  cr_expect_eq(fused, 15);
  fg_program_free(p);
  free_built(&b);
}

static bool have_onednn(void) {
  char buf[256];
  return strncmp(fg_kernel_libraries(buf, sizeof buf), "oneDNN", 6) == 0;
}

/* conv_grads on one conv's two gradients: a 3x3 conv of 2 channels to 6 takes both from one
 * op (with or without the bias's sums), bit-identical with the native kernels, and with
 * oneDNN's primitives to the separate ops on them, and close to the reference with the taps;
 * a 1x1 conv of 2 channels and one of 6 channels to 2 keep theirs apart. */
Test(conv_passes, conv_grads_takes_a_few_input_convs_gradients_together) {
  const struct {
    int64_t c, o, k;
    bool bias;
    int fused;
  } v[] = {{2, 6, 3, true, 1}, {2, 6, 3, false, 1}, {2, 6, 1, true, 0}, {6, 2, 3, true, 0}};
  for (int i = 0; i < (int)(sizeof v / sizeof *v); i++) {
    built b = {0};
    fg_graph_new(&b.g, NULL);
    fg_graph *g = b.g;
    fg_node x = leaf(&b, false, "x", fg_shape4(3, v[i].c, 7, 6), 1);
    fg_node w = leaf(&b, false, "w", fg_shape4(v[i].o, v[i].c, v[i].k, v[i].k), 2);
    fg_node dy = leaf(&b, false, "dy", fg_shape4(3, v[i].o, 7, 6), 3);
    fg_conv2d_opts pad = fg_conv2d_defaults();
    pad.padding[0] = pad.padding[1] = v[i].k / 2;
    b.outs[0] = fg_conv2d_input_grad(g, dy, w, 7, 6, &pad);
    b.outs[1] = fg_conv2d_weight_grad(g, x, dy, v[i].k, v[i].k, &pad);
    b.outs[2] = fg_sum(g, dy, v[i].bias ? FG_AXIS(0) | FG_AXIS(2) | FG_AXIS(3) : FG_AXIS(1), false);
    b.n_out = 3;
    fg_tensor *ref[16], *got[16], *taps[16];
    fg_program_opts reference_native = reference_opts;
    reference_native.kernels = "native";
    run(&b, &reference_native, ref, NULL);
    fg_program_opts on = {.n_threads = 2, .kernels = "native", .verify = true,
                          .poison_freed = true};
    run(&b, &on, got, NULL);
    expect_identical(&b, ref, got, "both gradients, native kernels");
    fg_program_opts on_taps = on;
    on_taps.kernels = "conv2d_input_weight_grad=taps";
    run(&b, &on_taps, taps, NULL);
    expect_close(&b, ref, taps, 1e-5, "both gradients by the taps");
    if (have_onednn() && v[i].fused) { /* the pass off, each op on oneDNN; then the fused op */
      fg_tensor *apart[16], *fused[16];
      fg_program_opts dnn = on, dnn_fused = on;
      dnn.kernels = "onednn", dnn.disabled_passes = FG_PASS_BIT(CONV_GRADS);
      dnn_fused.kernels = "conv2d_input_weight_grad=onednn,conv2d_weight_bias_grad=onednn";
      run(&b, &dnn, apart, NULL);
      run(&b, &dnn_fused, fused, NULL);
      expect_identical(&b, apart, fused, "both gradients by oneDNN's primitives");
      free_outs(&b, apart), free_outs(&b, fused);
    }
    fg_program *p;
    cr_assert_eq(fg_program_new_opts(&p, g, b.n_out, b.outs, &on, NULL), FG_OK);
    int fused = count_op(fg_program_graph(p), FG_OP_CONV2D_INPUT_WEIGHT_GRAD);
    cr_expect_eq(fused, v[i].fused, "variant %d: %d conv2d_input_weight_grad", i, fused);
    fg_program_free(p);
    free_outs(&b, ref), free_outs(&b, got), free_outs(&b, taps);
    free_built(&b);
  }
}
