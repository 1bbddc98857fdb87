/* Choosing kernels (core/runtime/kernel_choice.c) and the implementations chosen among
 * (ops/kernels/onednn.c, the native conv paths): FG_KERNELS rules and their errors, what each
 * node runs, and that every implementation keeps the engine's guarantees — results agree with
 * the native kernels, are bit-identical for any thread count and run to run, and do not depend
 * on the memory plan (with freed memory and kernel scratch poisoned). */
#include <criterion/criterion.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/ir/op.h"
#include "core/rng.h"
#include "core/runtime/kernel_cache.h"
#include "core/runtime/kernel_choice.h"
#include "core/runtime/program.h"
#include "ops/autodiff/autodiff.h"
#include "ops/kernel_info.h"
#include "ops/ops.h"

static fg_err terr __attribute__((unused));

static bool have_onednn(void) {
  char buf[256];
  return strncmp(fg_kernel_libraries(buf, sizeof buf), "oneDNN", 6) == 0;
}

/* ---- a small conv net with its gradients ---- */

typedef struct net {
  fg_graph *g;
  fg_node outs[8];
  int n_out;
  const char *names[8];
  fg_tensor *values[8];
  int n_in;
} net;

static fg_tensor *random_tensor(fg_shape s, uint64_t seed) {
  fg_tensor *t;
  cr_assert_eq(fg_tensor_new(&t, FG_F32, &s, NULL), FG_OK);
  for (int64_t i = 0; i < fg_tensor_numel(t); i++)
    fg_tensor_set(t, i, 2 * fg_rng_uniform(seed, (uint64_t)i) - 1);
  return t;
}

static fg_node leaf(net *n, const char *name, fg_shape s, uint64_t seed) {
  n->names[n->n_in] = name;
  n->values[n->n_in++] = random_tensor(s, seed);
  return fg_input(n->g, name, FG_F32, s);
}

/* conv 3x3 (bias, relu) -> conv 1x1 (stride 2) -> matmul over channels; a loss and the
 * gradients of x and all weights: every conv op, both GEMM directions.  Batch 9 does not split
 * evenly, so parts of two sizes run. */
static net build_net(void) {
  net n = {0};
  cr_assert_eq(fg_graph_new(&n.g, NULL), FG_OK);
  fg_graph *g = n.g;
  fg_node x = leaf(&n, "x", fg_shape4(9, 5, 10, 10), 1);
  fg_node w1 = leaf(&n, "w1", fg_shape4(24, 5, 3, 3), 2), b1 = leaf(&n, "b1", fg_shape1(24), 3);
  fg_node w2 = leaf(&n, "w2", fg_shape4(20, 24, 1, 1), 4);
  fg_conv2d_opts o = fg_conv2d_defaults(), s2 = fg_conv2d_defaults();
  o.padding[0] = o.padding[1] = 1;
  s2.stride[0] = s2.stride[1] = 2;
  fg_node h = fg_relu(g, fg_conv2d(g, x, w1, b1, &o));
  h = fg_conv2d(g, h, w2, FG_NONE, &s2); /* [9, 20, 5, 5] */
  fg_node flat = fg_reshape(g, h, fg_shape2(9 * 20, 25));
  fg_node m = fg_matmul_t(g, flat, fg_reshape(g, h, fg_shape2(9 * 20, 25)), true, false);
  fg_node loss = fg_add(g, fg_sum(g, fg_square(g, h), FG_ALL_AXES, false),
                        fg_sum(g, m, FG_ALL_AXES, false));
  fg_node wrt[4] = {x, w1, b1, w2};
  n.outs[0] = loss;
  cr_assert_eq(fg_grad(g, loss, 4, wrt, n.outs + 1), FG_OK, "%s", fg_graph_errmsg(g));
  n.outs[5] = h;
  n.n_out = 6;
  return n;
}

/* conv 3x3 8->32 (bias, relu) -> conv 3x3 32->32 (bias) + that input, relu -> conv 1x1 32->16
 * (bias); a loss and the gradients of x and the weights: the activations between the convs, and
 * their gradients, can stay in oneDNN's blocked layout (channels a multiple of 16), through the
 * residual add and the relus, with the bias gradients summed from blocked memory
 * (core/runtime/layout_plan.c).  Batch 5 splits into parts of two sizes. */
static net build_chain(void) {
  net n = {0};
  cr_assert_eq(fg_graph_new(&n.g, NULL), FG_OK);
  fg_graph *g = n.g;
  fg_node x = leaf(&n, "x", fg_shape4(5, 8, 9, 9), 11);
  fg_node w1 = leaf(&n, "w1", fg_shape4(32, 8, 3, 3), 12), b1 = leaf(&n, "b1", fg_shape1(32), 13);
  fg_node w2 = leaf(&n, "w2", fg_shape4(32, 32, 3, 3), 14), b2 = leaf(&n, "b2", fg_shape1(32), 15);
  fg_node w3 = leaf(&n, "w3", fg_shape4(16, 32, 1, 1), 16), b3 = leaf(&n, "b3", fg_shape1(16), 17);
  fg_conv2d_opts o = fg_conv2d_defaults(), o1 = fg_conv2d_defaults();
  o.padding[0] = o.padding[1] = 1;
  fg_node h1 = fg_relu(g, fg_conv2d(g, x, w1, b1, &o));
  fg_node h2 = fg_relu(g, fg_add(g, fg_conv2d(g, h1, w2, b2, &o), h1));
  fg_node y = fg_conv2d(g, h2, w3, b3, &o1);
  fg_node loss = fg_sum(g, fg_square(g, y), FG_ALL_AXES, false);
  fg_node wrt[6] = {x, w1, b1, w2, b2, w3};
  n.outs[0] = loss;
  cr_assert_eq(fg_grad(g, loss, 6, wrt, n.outs + 1), FG_OK, "%s", fg_graph_errmsg(g));
  n.n_out = 7;
  return n;
}

/* The nets every implementation is checked on. */
static net (*const net_builders[])(void) = {build_net, build_chain};
enum { N_NETS = sizeof net_builders / sizeof *net_builders };

static void net_free(net *n) {
  for (int i = 0; i < n->n_in; i++) fg_tensor_free(n->values[i]);
  fg_graph_free(n->g);
}

static fg_program *compile(const net *n, const fg_program_opts *o) {
  fg_program *p;
  cr_assert_eq(fg_program_new_opts(&p, n->g, n->n_out, n->outs, o, &terr), FG_OK, "%s", terr.msg);
  for (int i = 0; i < n->n_in; i++)
    cr_assert_eq(fg_program_bind(p, n->names[i], n->values[i], &terr), FG_OK, "%s", terr.msg);
  return p;
}

/* Runs the net under o (twice: a run must not depend on the one before); copies of the outputs. */
static void run_net(const net *n, const fg_program_opts *o, fg_tensor **out) {
  fg_program *p = compile(n, o);
  for (int rep = 0; rep < 2; rep++) cr_assert_eq(fg_program_run(p, &terr), FG_OK, "%s", terr.msg);
  for (int j = 0; j < n->n_out; j++)
    cr_assert_eq(fg_tensor_copy(&out[j], fg_program_output(p, j), FG_F32, NULL), FG_OK);
  fg_program_free(p);
}

static void free_outs(const net *n, fg_tensor **o) {
  for (int j = 0; j < n->n_out; j++) fg_tensor_free(o[j]);
}

static void expect_identical(const net *n, fg_tensor **a, fg_tensor **b, const char *what) {
  for (int j = 0; j < n->n_out; j++) {
    int64_t count = fg_tensor_numel(a[j]);
    cr_assert(memcmp(fg_tensor_data(a[j]), fg_tensor_data(b[j]), (size_t)count * sizeof(float)) == 0,
              "%s: output %d differs", what, j);
    for (int64_t i = 0; i < count; i++) cr_assert(!isnan(fg_tensor_get(a[j], i)), "%s: NaN", what);
  }
}

static void expect_close(const net *n, fg_tensor **a, fg_tensor **b, const char *what) {
  for (int j = 0; j < n->n_out; j++) {
    double scale = 0;
    for (int64_t i = 0; i < fg_tensor_numel(a[j]); i++) scale = fmax(scale, fabs(fg_tensor_get(b[j], i)));
    for (int64_t i = 0; i < fg_tensor_numel(a[j]); i++) {
      double x = fg_tensor_get(a[j], i), y = fg_tensor_get(b[j], i);
      cr_assert(fabs(x - y) <= 1e-5 * (scale + 1), "%s: output %d element %lld: %.9g vs %.9g",
                what, j, (long long)i, x, y);
    }
  }
}

/* The implementations a test runs through: everything this build has. */
static const char *const kernel_sets[] = {"onednn", "onednn_nchw", "onednn_wino", "conv*=direct",
                                          "conv*=shifted", "conv*=gemm", "conv*=taps",
                                          "conv*=pointwise", "auto"};
enum { N_SETS = sizeof kernel_sets / sizeof *kernel_sets };

static bool set_available(int i) { return have_onednn() || strncmp(kernel_sets[i], "onednn", 6); }

Test(kernels, every_implementation_agrees_with_the_native_kernels) {
  for (int k = 0; k < N_NETS; k++) {
    net n = net_builders[k]();
    fg_tensor *ref[8], *got[8];
    run_net(&n, &(fg_program_opts){.n_threads = 1, .kernels = "native"}, ref);
    for (int i = 0; i < N_SETS; i++) {
      if (!set_available(i)) continue;
      run_net(&n, &(fg_program_opts){.n_threads = 2, .kernels = kernel_sets[i]}, got);
      expect_close(&n, got, ref, kernel_sets[i]);
      free_outs(&n, got);
    }
    free_outs(&n, ref);
    net_free(&n);
  }
}

Test(kernels, results_are_bit_identical_for_any_thread_count) {
  for (int k = 0; k < N_NETS; k++) {
    net n = net_builders[k]();
    fg_tensor *one[8], *many[8];
    for (int i = 0; i < N_SETS; i++) {
      if (!set_available(i)) continue;
      run_net(&n, &(fg_program_opts){.n_threads = 1, .kernels = kernel_sets[i]}, one);
      for (int t = 2; t <= 3; t++) {
        run_net(&n, &(fg_program_opts){.n_threads = t, .kernels = kernel_sets[i]}, many);
        expect_identical(&n, one, many, kernel_sets[i]);
        free_outs(&n, many);
      }
      free_outs(&n, one);
    }
    net_free(&n);
  }
}

Test(kernels, planned_memory_with_poison_matches_unplanned) {
  for (int k = 0; k < N_NETS; k++) {
    net n = net_builders[k]();
    fg_tensor *unplanned[8], *planned[8];
    for (int i = 0; i < N_SETS; i++) {
      if (!set_available(i)) continue;
      run_net(&n, &(fg_program_opts){.n_threads = 2, .kernels = kernel_sets[i],
                                     .disabled_passes = FG_PASS_BIT(MEMPLAN)}, unplanned);
      run_net(&n, &(fg_program_opts){.n_threads = 2, .kernels = kernel_sets[i],
                                     .poison_freed = true}, planned);
      expect_identical(&n, unplanned, planned, kernel_sets[i]);
      free_outs(&n, unplanned), free_outs(&n, planned);
    }
    net_free(&n);
  }
}

/* ---- blocked layouts between oneDNN convolutions (core/runtime/layout_plan.c) ---- */

static int32_t blocked_values(const net *n, const fg_program_opts *o) {
  fg_program *p = compile(n, o);
  int32_t count = fg_program_get_stats(p)->n_blocked;
  fg_program_free(p);
  return count;
}

Test(kernels, activations_stay_blocked_between_onednn_convolutions) {
  if (!have_onednn()) cr_skip_test("this build has no oneDNN");
  net n = build_chain();
  fg_program_opts blocked = {.n_threads = 2, .kernels = "onednn"};
  fg_program_opts off = {.n_threads = 2, .kernels = "onednn", .disabled_passes = FG_PASS_BIT(LAYOUT)};
  /* h1, the conv before h2's add, h2, and their gradients at least */
  cr_expect_geq(blocked_values(&n, &blocked), 6, "values kept blocked: %d",
                blocked_values(&n, &blocked));
  cr_expect_eq(blocked_values(&n, &off), 0, "the pass switched off keeps every value row-major");
  cr_expect_eq(blocked_values(&n, &(fg_program_opts){.n_threads = 2, .kernels = "onednn_nchw"}), 0,
               "oneDNN on NCHW memory takes nothing blocked");
  cr_expect_eq(blocked_values(&n, &(fg_program_opts){.n_threads = 2, .kernels = "native"}), 0);
  /* the old net's activations have 24 and 20 channels: no blocked layout without padding */
  net old = build_net();
  cr_expect_eq(blocked_values(&old, &blocked), 0);
  net_free(&old);
  /* blocked and row-major agree (only the bias gradients add in another order) */
  fg_tensor *a[8], *b[8];
  run_net(&n, &blocked, a);
  run_net(&n, &off, b);
  expect_close(&n, a, b, "blocked vs row-major");
  free_outs(&n, a), free_outs(&n, b);
  net_free(&n);
}

/* ---- what each node runs ---- */

/* The label of the first node of op `op` in p's compiled graph. */
static const char *label_of(const fg_program *p, int op) {
  const fg_graph *g = fg_program_graph(p);
  for (fg_node i = 0; i < fg_graph_node_count(g); i++)
    if (fg_node_op(g, i) == op) return fg_program_node_kernel(p, i);
  cr_assert_fail("no %s node", fg_op_get(op)->name);
  return NULL;
}

static bool starts(const char *s, const char *prefix) {
  return s && strncmp(s, prefix, strlen(prefix)) == 0;
}

/* How many nodes of p's compiled graph run an implementation whose label starts with prefix. */
static int count_labels(const fg_program *p, const char *prefix) {
  const fg_graph *g = fg_program_graph(p);
  int count = 0;
  for (fg_node i = 0; i < fg_graph_node_count(g); i++)
    count += starts(fg_program_node_kernel(p, i), prefix);
  return count;
}

/* conv 3x3 16->16 (relu) -> conv 3x3 16->16, with the relu's output h an output of the program
 * too (so it stays NCHW): the second conv's input gradient masked by h (conv2d_input_grad_relu)
 * could write its output blocked for the first conv's gradients, but the mask must be in the
 * output's layout, so the plan keeps both NCHW (fg_kprep.blocked_tied). */
static net build_masked(void) {
  net n = {0};
  cr_assert_eq(fg_graph_new(&n.g, NULL), FG_OK);
  fg_graph *g = n.g;
  fg_node x = leaf(&n, "x", fg_shape4(4, 16, 8, 8), 21);
  fg_node w1 = leaf(&n, "w1", fg_shape4(16, 16, 3, 3), 22);
  fg_node w2 = leaf(&n, "w2", fg_shape4(16, 16, 3, 3), 23);
  fg_conv2d_opts o = fg_conv2d_defaults();
  o.padding[0] = o.padding[1] = 1;
  fg_node h = fg_relu(g, fg_conv2d(g, x, w1, FG_NONE, &o));
  fg_node loss = fg_sum(g, fg_square(g, fg_conv2d(g, h, w2, FG_NONE, &o)), FG_ALL_AXES, false);
  fg_node wrt[3] = {x, w1, w2};
  n.outs[0] = loss;
  cr_assert_eq(fg_grad(g, loss, 3, wrt, n.outs + 1), FG_OK, "%s", fg_graph_errmsg(g));
  n.outs[4] = h;
  n.n_out = 5;
  return n;
}

Test(kernels, a_masked_input_gradient_keeps_its_output_and_mask_in_one_layout) {
  if (!have_onednn()) cr_skip_test("this build has no oneDNN");
  net n = build_masked();
  fg_program_opts onednn = {.n_threads = 2, .kernels = "onednn"};
  fg_program *p = compile(&n, &onednn);
  const fg_graph *g = fg_program_graph(p);
  int masked = 0;
  for (fg_node i = 0; i < fg_graph_node_count(g); i++)
    masked += fg_node_op(g, i) == FG_OP_CONV2D_INPUT_GRAD_RELU &&
              starts(fg_program_node_kernel(p, i), "onednn");
  cr_expect_eq(masked, 1, "the second conv's input gradient, masked, on oneDNN");
  cr_expect_eq(fg_program_run(p, &terr), FG_OK, "%s", terr.msg);
  fg_program_free(p);
  fg_tensor *a[8], *b[8];
  run_net(&n, &onednn, a);
  run_net(&n, &(fg_program_opts){.n_threads = 2, .kernels = "native"}, b);
  expect_close(&n, a, b, "oneDNN vs native");
  free_outs(&n, a), free_outs(&n, b);
  net_free(&n);
}

Test(kernels, rules_pick_implementations_and_fall_back_where_one_does_not_apply) {
  net n = build_net();
  fg_program *p = compile(&n, &(fg_program_opts){.kernels = "native"});
  cr_expect_str_eq(label_of(p, FG_OP_CONV2D_WEIGHT_GRAD), "native");
  cr_expect_str_eq(label_of(p, FG_OP_MATMUL), "native");
  const fg_graph *g = fg_program_graph(p);
  for (fg_node i = 0; i < fg_graph_node_count(g); i++)
    if (!fg_op_get(fg_node_op(g, i))->n_impls)
      cr_expect_null(fg_program_node_kernel(p, i), "%s has no alternatives",
                     fg_op_get(fg_node_op(g, i))->name);
  fg_program_free(p);
  /* direct needs stride 1: the strided conv falls back to the native rules; later rules win */
  p = compile(&n, &(fg_program_opts){.kernels = have_onednn()
                                                    ? "onednn,conv*=direct,conv2d_input_grad=gemm"
                                                    : "conv*=direct,conv2d_input_grad=gemm"});
  cr_expect_str_eq(label_of(p, FG_OP_CONV2D_INPUT_GRAD), "gemm");
  cr_expect(starts(label_of(p, FG_OP_MATMUL), have_onednn() ? "onednn" : "gemm"));
  const char *fwd = label_of(p, FG_OP_CONV2D), *bias_act = label_of(p, FG_OP_CONV2D_BIAS_ACT);
  cr_expect(starts(fwd, "native (") || starts(bias_act, "native ("), "the reason is named");
  cr_expect(strcmp(fwd, "direct") == 0 || strcmp(bias_act, "direct") == 0);
  fg_program_free(p);
  if (have_onednn()) { /* every node of the net is one oneDNN computes, in both layouts */
    static const int ops[] = {FG_OP_CONV2D, FG_OP_CONV2D_BIAS_ACT, FG_OP_CONV2D_INPUT_GRAD,
                              FG_OP_CONV2D_WEIGHT_GRAD, FG_OP_MATMUL};
    static const char *const pins[] = {"onednn", "conv*=onednn_nchw,matmul=onednn"};
    for (size_t k = 0; k < 2; k++) {
      p = compile(&n, &(fg_program_opts){.kernels = pins[k]});
      for (size_t i = 0; i < sizeof ops / sizeof *ops; i++)
        cr_expect(starts(label_of(p, ops[i]), "onednn"), "%s: %s", fg_op_get(ops[i])->name,
                  label_of(p, ops[i]));
      fg_program_free(p);
    }
  }
  net_free(&n);
  char libs[256];
  if (strstr(fg_kernel_libraries(libs, sizeof libs), "avx512_core")) {
    /* oneDNN has Winograd's convolution for AVX-512: the 3x3 convs at stride 1 and their
     * gradients take it (8->32 and 32->32: forward, input and weight gradients), the 1x1 falls
     * back */
    n = build_chain();
    p = compile(&n, &(fg_program_opts){.kernels = "onednn_wino"});
    cr_expect_geq(count_labels(p, "onednn_wino"), 5, "%d", count_labels(p, "onednn_wino"));
    cr_expect_geq(count_labels(p, "native ("), 1);
    fg_program_free(p);
    net_free(&n);
  }
}

/* The taps take stride-1 convs with few channels on one side, and refuse an image whose tap
 * planes would take over 8 MiB (36 planes of 256x256 floats: 9 MiB): those fall back. */
Test(kernels, the_taps_refuse_strides_and_large_tap_planes) {
  net n = build_net(); /* 5->24 3x3 (216 and 45 tap planes: gradients by the 45), 1x1 stride 2 */
  fg_program *p = compile(&n, &(fg_program_opts){.kernels = "conv*=taps"});
  cr_expect_geq(count_labels(p, "taps"), 2, "%d", count_labels(p, "taps"));
  cr_expect(starts(label_of(p, FG_OP_CONV2D), "native ("), "%s", label_of(p, FG_OP_CONV2D));
  fg_program_free(p);
  net_free(&n);
  for (int64_t side = 128; side <= 256; side *= 2) {
    fg_graph *g;
    cr_assert_eq(fg_graph_new(&g, NULL), FG_OK);
    fg_conv2d_opts o = fg_conv2d_defaults();
    o.padding[0] = o.padding[1] = 1;
    fg_node x = fg_input(g, "x", FG_F32, fg_shape4(1, 4, side, side));
    fg_node y = fg_conv2d(g, x, fg_input(g, "w", FG_F32, fg_shape4(4, 4, 3, 3)), FG_NONE, &o);
    fg_program *q;
    cr_assert_eq(fg_program_new_opts(&q, g, 1, &y, &(fg_program_opts){.kernels = "taps"}, NULL),
                 FG_OK);
    cr_expect(starts(label_of(q, FG_OP_CONV2D), side == 128 ? "taps" : "native ("), "%lld: %s",
              (long long)side, label_of(q, FG_OP_CONV2D));
    fg_program_free(q);
    fg_graph_free(g);
  }
}

/* The pointwise kernel takes 1x1 convs at stride 1 without padding on images of 128 pixels or
 * more, in float32 on CPUs with AVX-512 (ops/kernels/conv_pointwise.c); a strided 1x1 conv, a
 * 7x7 image, float64 and other CPUs (or FG_CONV_ISA=avx2) fall back. */
Test(kernels, the_pointwise_kernel_takes_unstrided_1x1_float32_convs_only) {
  __builtin_cpu_init();
  const char *cap = getenv("FG_CONV_ISA"); /* avx2 or generic: as on a CPU without AVX-512 */
  bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma") &&
                !(cap && (strcmp(cap, "avx2") == 0 || strcmp(cap, "generic") == 0));
  const struct { int stride, side; } convs[] = {{1, 12}, {2, 12}, {1, 7}};
  for (size_t i = 0; i < sizeof convs / sizeof *convs; i++)
    for (int f64 = 0; f64 <= 1; f64++) {
      fg_graph *g;
      cr_assert_eq(fg_graph_new(&g, NULL), FG_OK);
      fg_conv2d_opts o = fg_conv2d_defaults();
      o.stride[0] = o.stride[1] = convs[i].stride;
      fg_dtype t = f64 ? FG_F64 : FG_F32;
      fg_node x = fg_input(g, "x", t, fg_shape4(2, 8, convs[i].side, convs[i].side));
      fg_node y = fg_conv2d(g, x, fg_input(g, "w", t, fg_shape4(16, 8, 1, 1)), FG_NONE, &o);
      fg_program *q;
      cr_assert_eq(fg_program_new_opts(&q, g, 1, &y, &(fg_program_opts){.kernels = "pointwise"},
                                       NULL), FG_OK);
      bool want = avx512 && convs[i].stride == 1 && convs[i].side == 12 && !f64;
      const char *label = label_of(q, FG_OP_CONV2D);
      cr_expect(starts(label, want ? "pointwise" : "native ("), "stride %d, %dx%d, %s: %s",
                convs[i].stride, convs[i].side, convs[i].side, f64 ? "float64" : "float32",
                label);
      fg_program_free(q);
      fg_graph_free(g);
    }
}

Test(kernels, timed_choices_are_kept_for_the_process) {
  net n = build_net();
  fg_program *a = compile(&n, &(fg_program_opts){.n_threads = 2, .kernels = "auto"});
  fg_program *b = compile(&n, &(fg_program_opts){.n_threads = 1, .kernels = "auto"});
  const fg_graph *ga = fg_program_graph(a), *gb = fg_program_graph(b);
  cr_assert_eq(fg_graph_node_count(ga), fg_graph_node_count(gb));
  for (fg_node i = 0; i < fg_graph_node_count(ga); i++) {
    const char *ka = fg_program_node_kernel(a, i), *kb = fg_program_node_kernel(b, i);
    cr_expect((ka == NULL) == (kb == NULL) && (!ka || strcmp(ka, kb) == 0), "node %d: %s vs %s",
              i, ka ? ka : "-", kb ? kb : "-");
  }
  cr_expect_leq(fg_program_get_stats(b)->choose_ms, fg_program_get_stats(a)->choose_ms + 50);
  fg_program_free(a);
  fg_program_free(b);
  net_free(&n);
}

/* A node's key (what its timings and choices are remembered under) holds its op, attributes
 * and shapes, for ops without attributes too (which the layout choice keys: an elementwise op
 * between convolutions times differently with blocked operands). */
static uint64_t key_of(fg_shape s, bool exp_of_sum) {
  fg_graph *g;
  cr_assert_eq(fg_graph_new(&g, NULL), FG_OK);
  fg_node x = fg_input(g, "x", FG_F32, s), y = fg_add(g, x, x);
  uint64_t key = fg__kernel_node_hash(g, exp_of_sum ? fg_exp(g, y) : y, 2);
  fg_graph_free(g);
  return key;
}

Test(kernels, nodes_without_attributes_have_keys_of_their_op_and_shapes) {
  fg_shape s = fg_shape4(4, 8, 5, 5), t = fg_shape4(4, 8, 5, 6);
  cr_expect_eq(key_of(s, false), key_of(s, false));
  cr_expect_neq(key_of(s, false), key_of(t, false));
  cr_expect_neq(key_of(s, false), key_of(s, true));
}

/* The file of choices (core/runtime/kernel_cache.h) in dir, read whole into buf. */
static void read_cache(const char *dir, char *path, size_t cap, char *buf, size_t buf_cap) {
  DIR *d = opendir(dir);
  cr_assert_not_null(d);
  path[0] = '\0';
  for (struct dirent *ent; (ent = readdir(d));)
    if (!strncmp(ent->d_name, "kernels-", 8)) snprintf(path, cap, "%s/%s", dir, ent->d_name);
  closedir(d);
  cr_assert(path[0], "a timed choice wrote the cache file in %s", dir);
  FILE *f = fopen(path, "r");
  size_t n = fread(buf, 1, buf_cap - 1, f);
  buf[n] = '\0';
  fclose(f);
}

/* A later process takes the choices of the file, not new timings: edited to say native for every
 * node, the file makes a new process run the native kernels everywhere. */
Test(kernels, timed_choices_are_kept_in_a_file_for_later_processes) {
  char dir[] = "/tmp/fg-kernel-cache-XXXXXX", path[4096];
  static char text[1 << 16];
  cr_assert_not_null(mkdtemp(dir));
  setenv("FG_KERNEL_CACHE", dir, 1);
  net n = build_net();
  pid_t first = fork(); /* this process must not hold choices in memory: children compile */
  if (first == 0) {
    fg_program *p;
    _exit(fg_program_new_opts(&p, n.g, n.n_out, n.outs,
                              &(fg_program_opts){.n_threads = 2, .kernels = "auto"},
                              NULL) == FG_OK ? 0 : 1);
  }
  int status = 0;
  cr_assert_eq(waitpid(first, &status, 0), first);
  cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the first process compiled");
  read_cache(dir, path, sizeof path, text, sizeof text);
  int lines = 0;
  FILE *f = fopen(path, "w");
  for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n"), lines++)
    fprintf(f, "%.*s -1\n", (int)strcspn(line, " "), line); /* every choice: native */
  fclose(f);
  cr_assert_gt(lines, 0);
  pid_t child = fork();
  if (child == 0) { /* a new process: its memory of choices starts from the file */
    fg_program *p;
    bool all_native = fg_program_new_opts(&p, n.g, n.n_out, n.outs,
                                          &(fg_program_opts){.n_threads = 2, .kernels = "auto"},
                                          NULL) == FG_OK;
    const fg_graph *g = all_native ? fg_program_graph(p) : NULL;
    for (fg_node i = 0; g && i < fg_graph_node_count(g); i++) {
      const char *k = fg_program_node_kernel(p, i);
      all_native = all_native && (!k || !strcmp(k, "native"));
    }
    _exit(all_native ? 0 : 1);
  }
  cr_assert_eq(waitpid(child, &status, 0), child);
  cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the new process ran what the file said");
  unlink(path);
  rmdir(dir);
  net_free(&n);
}

/* Compiles n in auto mode in a child process (its own memory of choices, from the file in
 * FG_KERNEL_CACHE): 0 when it compiled, and, with want_blocked 1 (or 0), when some convolution
 * runs oneDNN with values kept blocked (or every node runs the native kernels). */
static int compile_in_child(const net *n, int want_blocked) {
  pid_t child = fork();
  if (child == 0) {
    fg_program *p;
    bool ok =
        fg_program_new_opts(&p, n->g, n->n_out, n->outs,
                            &(fg_program_opts){.n_threads = 2, .kernels = "auto"}, NULL) == FG_OK;
    const fg_graph *g = ok ? fg_program_graph(p) : NULL;
    bool onednn = false, native = true;
    for (fg_node i = 0; g && i < fg_graph_node_count(g); i++) {
      const char *k = fg_program_node_kernel(p, i);
      onednn = onednn || starts(k, "onednn"), native = native && (!k || !strcmp(k, "native"));
    }
    if (ok && want_blocked == 1) ok = onednn && fg_program_get_stats(p)->n_blocked > 0;
    if (ok && want_blocked == 0) ok = native && fg_program_get_stats(p)->n_blocked == 0;
    _exit(ok ? 0 : 1);
  }
  int status = 0;
  if (waitpid(child, &status, 0) != child || !WIFEXITED(status)) return -1;
  return WEXITSTATUS(status);
}

/* Rewrites the cache file at path: every line whose key starts with `prefix` (every line: "")
 * says `value`; the number of lines so rewritten. */
static int rewrite_cache(const char *path, const char *prefix, int value) {
  static char text[1 << 16];
  FILE *f = fopen(path, "r");
  cr_assert_not_null(f);
  text[fread(text, 1, sizeof text - 1, f)] = '\0';
  fclose(f);
  f = fopen(path, "w");
  int changed = 0;
  for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
    int key_len = (int)strcspn(line, " ");
    bool match = strncmp(line, prefix, strlen(prefix)) == 0;
    if (match)
      fprintf(f, "%.*s %d\n", key_len, line, value), changed++;
    else
      fprintf(f, "%s\n", line);
  }
  fclose(f);
  return changed;
}

/* The choice between the kernels timed node by node and those that keep activations blocked
 * (core/runtime/layout_choice.c) is kept in the file with the node choices, and later processes
 * follow it.  With every node choice edited to native, the chain's 32-channel convolutions have
 * oneDNN as their alternative, so a process decides and writes the decision (a bit per
 * alternative); edited to keep all of them, a new process runs oneDNN with blocked values,
 * edited to keep none, the native kernels everywhere. */
Test(kernels, the_choice_of_kernels_for_layouts_is_kept_in_the_file_and_followed) {
  if (!have_onednn()) cr_skip_test("this build has no oneDNN");
  static const char tag_hex[] = "6c61796f757420706c616e207631"; /* "layout plan v1" */
  char dir[] = "/tmp/fg-layout-choice-XXXXXX", path[4096], text[1 << 12];
  cr_assert_not_null(mkdtemp(dir));
  setenv("FG_KERNEL_CACHE", dir, 1);
  net n = build_chain();
  cr_assert_eq(compile_in_child(&n, -1), 0, "the first process compiled");
  read_cache(dir, path, sizeof path, text, sizeof text);
  cr_assert_gt(rewrite_cache(path, "", -1), 0);
  cr_assert_eq(compile_in_child(&n, -1), 0, "the process with native node choices compiled");
  for (int take = 1; take >= 0; take--) { /* a bit per alternative: all of them, or none */
    cr_assert_gt(rewrite_cache(path, tag_hex, take ? (1 << 30) - 1 : 0), 0,
                 "the decision was written to the file");
    cr_expect_eq(compile_in_child(&n, take), 0, "a new process followed the decision %d", take);
  }
  unlink(path);
  rmdir(dir);
  unsetenv("FG_KERNEL_CACHE");
  net_free(&n);
}

/* FG_KERNEL_CACHE=0 means no file, as "off" does, not a directory named "0". */
Test(kernels, a_kernel_cache_of_0_keeps_no_file) {
  char dir[] = "/tmp/fg-kernel-cwd-XXXXXX", zero[4096];
  cr_assert_not_null(mkdtemp(dir));
  net n = build_net();
  pid_t child = fork(); /* compiles in its own memory of choices, in dir */
  if (child == 0) {
    fg_program *p;
    setenv("FG_KERNEL_CACHE", "0", 1);
    _exit(chdir(dir) == 0 && fg_program_new_opts(&p, n.g, n.n_out, n.outs,
                                                 &(fg_program_opts){.n_threads = 2, .kernels = "auto"},
                                                 NULL) == FG_OK ? 0 : 1);
  }
  int status = 0;
  cr_assert_eq(waitpid(child, &status, 0), child);
  cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the process compiled");
  snprintf(zero, sizeof zero, "%s/0", dir);
  cr_expect_neq(access(zero, F_OK), 0, "no directory named 0 was made");
  rmdir(dir);
  net_free(&n);
}

/* A choice timed under one setting of the native kernels' code paths is not read under
 * another: the file's name changes with them (and with the kernel libraries' own code paths,
 * such as OpenBLAS's core under OPENBLAS_CORETYPE, which a process cannot change for itself). */
Test(kernels, another_setting_of_the_kernels_code_paths_keeps_another_file) {
  char plain[4096], capped[4096], again[4096];
  setenv("FG_KERNEL_CACHE", "/tmp/fg-kernel-settings", 1);
  unsetenv("FG_MATH_ISA");
  cr_assert(fg__kernel_cache_path(plain, sizeof plain));
  setenv("FG_MATH_ISA", "scalar", 1);
  cr_assert(fg__kernel_cache_path(capped, sizeof capped));
  unsetenv("FG_MATH_ISA");
  cr_assert(fg__kernel_cache_path(again, sizeof again));
  unsetenv("FG_KERNEL_CACHE");
  rmdir("/tmp/fg-kernel-settings");
  cr_expect_str_neq(plain, capped);
  cr_expect_str_eq(plain, again);
}

Test(kernels, deterministic_programs_time_nothing_and_run_fixed_kernels) {
  net n = build_net();
  fg_program *p = compile(&n, &(fg_program_opts){.deterministic = true});
  cr_expect_str_eq(label_of(p, FG_OP_CONV2D_WEIGHT_GRAD), "native");
  cr_expect_str_eq(label_of(p, FG_OP_MATMUL), "native");
  fg_program_free(p);
  /* a pinned implementation is a fixed choice too: kept */
  p = compile(&n, &(fg_program_opts){.deterministic = true, .kernels = "matmul=gemm"});
  cr_expect_str_eq(label_of(p, FG_OP_MATMUL), "gemm");
  cr_expect_str_eq(label_of(p, FG_OP_CONV2D_WEIGHT_GRAD), "native");
  fg_program_free(p);
  net_free(&n);
}

Test(kernels, float64_nodes_run_native_kernels_where_a_library_has_none) {
  if (!have_onednn()) cr_skip_test("built without oneDNN");
  fg_graph *g;
  cr_assert_eq(fg_graph_new(&g, NULL), FG_OK);
  fg_node y = fg_matmul(g, fg_input(g, "a", FG_F64, fg_shape2(4, 3)),
                        fg_input(g, "b", FG_F64, fg_shape2(3, 2)));
  fg_program *p;
  fg_program_opts o = {.kernels = "onednn"};
  cr_assert_eq(fg_program_new_opts(&p, g, 1, &y, &o, &terr), FG_OK, "%s", terr.msg);
  cr_expect_str_eq(label_of(p, FG_OP_MATMUL), "native (no kernel for this dtype)");
  fg_program_free(p);
  fg_graph_free(g);
}

Test(kernels, unknown_ops_and_implementations_are_rejected) {
  net n = build_net();
  static const char *const bad[] = {"fastest", "conv2d=blas", "nosuchop=native", "conv*=mkl"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    fg_program *p;
    fg_err e;
    cr_expect_eq(fg_program_new_opts(&p, n.g, n.n_out, n.outs,
                                     &(fg_program_opts){.kernels = bad[i]}, &e), FG_E_MISUSE,
                 "%s accepted", bad[i]);
    cr_expect(strstr(e.msg, "FG_KERNELS") && strstr(e.msg, "conv2d"), "%s: %s", bad[i], e.msg);
  }
  net_free(&n);
}

Test(kernels, the_kernel_libraries_are_named) {
  char buf[512];
  fg_kernel_libraries(buf, sizeof buf);
#ifdef FG_HAVE_DNNL
  cr_expect(strstr(buf, "oneDNN 2.") && strstr(buf, "ISA "), "%s", buf);
#else
  cr_expect_null(strstr(buf, "oneDNN"), "%s", buf);
#endif
}
