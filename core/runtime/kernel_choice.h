/* Internal to core/runtime/: which implementation computes each step of a program, chosen when
 * it is compiled (kernel_choice.c).  Ops that list alternative implementations (fg_op_def.impls:
 * a kernel library, several native algorithms) get the fastest one on this machine, timed once
 * per op, dtype, attributes and shapes and remembered for the process (as cuDNN's benchmark
 * mode does), or the one FG_KERNELS (fg_program_opts.kernels) names:
 *
 *   FG_KERNELS=RULE[,RULE...]    RULE = [OPS=]CHOICE, later rules win
 *   OPS     an op name (conv2d_weight_grad), a prefix ending in '*' (conv*), or * (the default)
 *   CHOICE  auto (time the candidates; the default), native (the descriptor's own kernels, chosen
 *           by fixed rules), or an implementation's name (onednn, onednn_nchw, onednn_wino,
 *           direct, shifted, gemm, taps, pointwise): used wherever it computes the node, the
 *           native kernels elsewhere
 *
 * e.g. FG_KERNELS=native (no kernel library, no timing), FG_KERNELS=conv*=onednn,matmul=gemm. */
#ifndef FG_KERNEL_CHOICE_H
#define FG_KERNEL_CHOICE_H

#include "core/ir/op.h"
#include "core/runtime/threadpool.h"

/* What FG_KERNELS says for each op. */
enum { KRULE_AUTO, KRULE_NATIVE, KRULE_IMPL };
typedef struct fg_kernel_rules {
  uint8_t mode[FG_OP_COUNT]; /* KRULE_* */
  int8_t impl[FG_OP_COUNT];  /* KRULE_IMPL: index into the op's impls */
} fg_kernel_rules;

/* Parses `text` (NULL or "": every op auto); an unknown op or implementation is FG_E_MISUSE
 * naming the word and what exists. */
fg_status fg__kernel_rules_parse(fg_kernel_rules *r, const char *text, fg_err *e);

/* The implementation a step runs. */
typedef struct fg_kernel_choice {
  const fg_kernel_impl *impl; /* NULL: the descriptor's kernels, split as the executor splits */
  void *state;
  fg_kprep prep;              /* its phases, parts, scratch bytes and description */
  char label[128];            /* "onednn: jit:avx512_core ...", "native", for benchmarks */
} fg_kernel_choice;

/* Chooses, for node n of g (a step that is not a fused group), by the rules; timing runs on
 * `pool`.  `parts` is how the executor would split the descriptor's kernel.  Fails only when
 * out of memory; every other failure falls back to the descriptor's kernels. */
fg_status fg__kernel_choose(fg_kernel_choice *c, const fg_graph *g, fg_node n, int parts,
                            const fg_kernel_rules *rules, fg_pool *pool, fg_err *e);
void fg__kernel_choice_release(fg_kernel_choice *c);

/* Prepares c's implementation for node n again into *out, with the operands in `blocked`
 * (fg_kprep.blocked) in the blocked layout; false when it does not compute that (*out is then
 * empty).  c stays as it was. */
bool fg__kernel_reprepare(fg_kernel_choice *out, const fg_kernel_choice *c, const fg_graph *g,
                          fg_node n, int parts, uint32_t blocked);

/* What the layout plan's choice of kernels (layout_choice.c) needs:
 * - an alternative to `current` for node n: the first other implementation that takes some of
 *   the operands in `blockable` blocked (prepared for row-major operands; false: none);
 * - the median seconds of n choices for a node, each prepared for its operands in blocked[i]
 *   (the native kernels for a choice without an implementation), timed in rounds as choices
 *   are, slow ones to the end (1e30: failed); fails only when out of memory;
 * - a hash of the node's key as choices are remembered by (op, attributes, shapes, parts);
 * - the process's and the cache file's memory (kernel_cache.h) for other keys: recall gives
 *   the value remembered, or -2. */
bool fg__kernel_alternative(fg_kernel_choice *c, const fg_graph *g, fg_node n, int parts,
                            uint32_t blockable, const fg_kernel_impl *current);
fg_status fg__kernel_time(const fg_kernel_choice *const *cand, const uint32_t *blocked, int n,
                          const fg_graph *g, fg_node node, int parts, fg_pool *pool, double *secs,
                          fg_err *e);
uint64_t fg__kernel_node_hash(const fg_graph *g, fg_node n, int parts);
int fg__kernel_recall(const unsigned char *key, size_t len);
void fg__kernel_remember(const unsigned char *key, size_t len, int value);

/* Runs kernel with base's arguments (ith, nth, phase and err set per part) over n_phases
 * phases of parts[phase] parts on pool, one phase after another; returns the first failing
 * part's status with its message in e.  Defined in execute.c, shared with the timing here. */
fg_status fg__run_kernel(fg_pool *pool, fg_kernel_fn kernel, const fg_kargs *base, int n_phases,
                         const int *parts, fg_err *e);

#endif
