/* A program: the part of a graph needed for some outputs, planned for execution.  Inputs and
 * parameters are bound by name to tensors whose buffers the program retains (no copy when they
 * are contiguous), so one parameter tensor serves the training, log-prob and sampling programs
 * and an optimiser's in-place update is seen by all of them.
 * The graph must outlive the program. */
#ifndef FG_PROGRAM_H
#define FG_PROGRAM_H

#include <stdint.h>

#include "core/ir/graph.h"
#include "core/compiler/pass.h"
#include "core/tensor.h"
#include "core/runtime/threadpool.h"

typedef struct fg_program fg_program;

/* Compile and run options; zero-filled means the defaults.  Each switch also has an
 * environment variable, read when the program is made, so any program can be inspected
 * without recompiling: FG_THREADS=n, FG_DISABLE_PASSES=cse,fuse, FG_POISON_FREED=1,
 * FG_VERIFY_PASSES=1, FG_DUMP_PASSES=dir, FG_KERNELS=rules, FG_DETERMINISTIC=1. */
typedef struct fg_program_opts {
  int n_threads;            /* 0: FG_THREADS, else the online cores */
  fg_pool *pool;            /* a pool to share between programs (not owned); overrides n_threads */
  uint32_t disabled_passes; /* FG_PASS_BIT(CSE) | ... */
  bool poison_freed;        /* fill each arena range with NaN after its last reader (debug) */
  bool verify;              /* check the graph's invariants after every pass */
  const char *dump_dir;     /* write DOT files of the graph before and after every pass */
  bool profile;             /* time every step by op (also FG_PROFILE=1); see fg_program_profile */
  /* Which implementation computes each op that has several (a kernel library such as oneDNN,
   * the native direct kernels, im2col + GEMM): NULL takes FG_KERNELS from the environment;
   * "auto" (the default) times the candidates once per shape for the process and keeps the
   * fastest; "native" uses the built-in kernels with their fixed rules; rules as
   * "conv*=onednn,matmul=gemm" pin some ops (README, "Kernels"). */
  const char *kernels;
  /* No timed choice: where the rules say "auto", the native kernels run, so results are the
   * same in every process on every machine (a timed choice may pick another implementation in
   * another process, whose results differ in the last bits).  Also FG_DETERMINISTIC=1. */
  bool deterministic;
} fg_program_opts;

/* What compiling did, for benchmarks, dumps and tests. */
typedef struct fg_program_stats {
  int32_t nodes_in;                    /* nodes of the source graph the outputs need */
  int32_t nodes_after[FG_PASS_COUNT];  /* node count after each graph pass, -1 if not run */
  int32_t nodes_compiled;              /* nodes of the compiled graph */
  int32_t n_steps;                     /* kernel launches per run (a fused group is one) */
  int32_t n_groups, n_fused;           /* fused groups and the nodes inside them */
  size_t arena_bytes;                  /* planned bytes of intermediate values */
  size_t naive_bytes;                  /* the same values with one buffer each */
  int32_t n_in_place;                  /* values written over a dying input */
  int n_threads;
  double compile_ms;
  double choose_ms;                    /* of compile_ms: choosing kernels (timing, libraries) */
  int32_t n_blocked;                   /* values kept in oneDNN's blocked layout between kernels
                                          (last: the fields before keep their offsets) */
} fg_program_stats;

/* Plans a program computing outs[0..n_out) into *out.  Fails when the graph is in error or an
 * output is not a node of it; *out is then NULL.  The graph is only read (it must outlive the
 * program); opts->pool, if given, is borrowed. */
fg_status fg_program_new(fg_program **out, fg_graph *g, int n_out, const fg_node *outs,
                         fg_err *e);
fg_status fg_program_new_opts(fg_program **out, fg_graph *g, int n_out, const fg_node *outs,
                              const fg_program_opts *opts, fg_err *e);
const fg_program_stats *fg_program_get_stats(const fg_program *p);
/* The compiled graph (after the passes) and its fusion groups (per node: group or -1), for
 * dumps; borrowed. */
const fg_graph *fg_program_graph(const fg_program *p);
const int32_t *fg_program_groups(const fg_program *p);
/* The implementation that computes node n of the compiled graph, for benchmarks and dumps:
 * "onednn: jit:avx512_core ...", "direct", "native" (the built-in kernels' fixed rules); NULL
 * for a node of an op with no alternatives, or not a step.  Borrowed, lives with p. */
const char *fg_program_node_kernel(const fg_program *p, fg_node n);
void fg_program_free(fg_program *p);

/* Binds the input or parameter `name` to t (dtype and shape must match the node's).  The
 * program keeps a reference to t's buffer; t itself may be freed.  A name the source graph
 * has but the outputs do not need is accepted and ignored.  On failure the previous binding,
 * if any, stays. */
fg_status fg_program_bind(fg_program *p, const char *name, const fg_tensor *t, fg_err *e);
/* Runs every planned node.  Fails on an unbound input or a kernel error such as an exactly
 * singular matrix, naming the node and op in e; the outputs then hold no meaningful values.
 * Allocates only on the first run. */
fg_status fg_program_run(fg_program *p, fg_err *e);
/* Output i of the last run: borrowed, valid until the next run or free. */
const fg_tensor *fg_program_output(const fg_program *p, int i);
int fg_program_num_outputs(const fg_program *p);
/* Offset mixed into every random op's counter, so each training step draws fresh noise. */
void fg_program_set_rng_offset(fg_program *p, uint64_t offset);
/* With profiling on: a table of time per op family (fused groups counted as "fused"), summed
 * over all runs so far, most expensive first, then the costliest steps grouped by op and
 * input/output shapes (15 rows, or N with FG_PROFILE=N for N > 1), written into buf
 * (truncated to cap).  Returns buf. */
const char *fg_program_profile(const fg_program *p, char *buf, size_t cap);

#endif
