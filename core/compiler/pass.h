/* Compiler passes.  A rewriting pass rebuilds the program's graph node by node, in id order,
 * keeping only what the outputs need (dead-node removal comes with every rewrite): for each
 * live node it gets the node's inputs already mapped into the new graph and returns what
 * stands for the node there — a copy, an existing node (CSE, simplification) or a constant
 * (folding).  Rebuilding keeps ids topological and makes every rewrite re-run the op's shape
 * rule.  The machinery is core/compiler/rewrite.c; each pass is core/compiler/pass_<name>.c; the
 * graph passes run from one table (core/compiler/passes.c), and each can be switched off. */
#ifndef FG_PASS_H
#define FG_PASS_H

#include <stdbool.h>
#include <stdint.h>

#include "core/ir/graph.h"

/* One bit per pass, for switching passes off (fg_program_opts.disabled_passes, or the
 * environment variable FG_DISABLE_PASSES="cse,fuse"). */
#define FG_PASS_MAP(X)                                                     \
  X(DCE, dce, "dead-node removal")                                         \
  X(SIMPLIFY, simplify, "algebraic simplification to a fixed point")       \
  X(CSE, cse, "common-subexpression merging (XXH3 keys, full compare)")    \
  X(FOLD, fold, "constant folding with the runtime kernels")               \
  X(EPILOGUE, epilogue, "conv2d + bias add (+ relu) into one op")          \
  X(FUSE, fuse, "fusion of elementwise chains into one tiled loop")        \
  X(MEMPLAN, memplan, "memory planning: liveness, buffer reuse, in place") \
  X(SCHEDULE, schedule, "an order that keeps peak live bytes low")         \
  X(LAYOUT, layout, "blocked layouts kept between oneDNN kernels")         \
  X(REMAT, remat, "cheap large forward values computed again in the backward") \
  X(CHAIN, chain, "a few-channel conv, the 1x1 conv (and a few-output conv) after it, as one") \
  X(BIAS_GRAD, bias_grad, "a conv's weight gradient and its bias's (dy's channel sums) as one op") \
  X(CONV_GRADS, conv_grads, "a few-input conv's input and weight gradients from one read of dy")

enum fg_pass_id {
#define FG_PASS_ENUM_(ID, name, what) FG_PASS_##ID,
  FG_PASS_MAP(FG_PASS_ENUM_)
#undef FG_PASS_ENUM_
  FG_PASS_COUNT
};
#define FG_PASS_BIT(ID) (1u << FG_PASS_##ID)

const char *fg_pass_name(int pass);
/* Parses "cse,fuse" into pass bits; unknown names give FG_E_MISUSE naming the word. */
fg_status fg_pass_parse_list(const char *list, uint32_t *bits, fg_err *e);

typedef struct fg_pass_ctx {
  fg_graph *g;      /* the program's own graph; rewriting passes replace it */
  int n_out;
  fg_node *outs;    /* the outputs in g, remapped by every rewrite */
  bool keep_dead;   /* DCE off: rewrites copy unneeded nodes too */
  bool borrowed;    /* g belongs to the caller: the first rewrite copies it, never frees it */
  int64_t changes;  /* what the last pass changed (merged, folded, simplified nodes) */
  const fg_node *map; /* during a rewrite: what each node of c->g became in the new graph,
                         FG_NONE for those not emitted yet (NULL between rewrites) */
  fg_err *e;
} fg_pass_ctx;

/* Returns the node standing for src's node n in dst, given n's inputs mapped into dst. */
typedef fg_node (*fg_emit_fn)(fg_pass_ctx *c, fg_graph *dst, const fg_graph *src, fg_node n,
                              const fg_node *inputs, void *state);
/* Passes and their helpers report into c->e (may be NULL) and return its status. */

/* Rebuilds c->g through emit (NULL: copy every live node) and remaps c->outs.  On failure
 * c->g and c->outs are as they were. */
fg_status fg_pass_rewrite(fg_pass_ctx *c, fg_emit_fn emit, void *state);
/* In *live, per node of c->g (node count + 1 entries, to free): 1 when the outputs need it, or
 * always with keep_dead.  On failure (out of memory) *live is NULL. */
fg_status fg_pass_live_nodes(uint8_t **live, const fg_pass_ctx *c);

/* In *uses, how many nodes read each node of g (node count + 1 entries, to free), an output
 * counting as 1 << 20 readers, so that "exactly one reader" means an intermediate read once
 * (for the passes that fuse a node into its only reader).  On failure *uses is NULL. */
fg_status fg_pass_reader_counts(int32_t **uses, const fg_graph *g, int n_out, const fg_node *outs,
                                fg_err *e);
/* A rewrite for a pass that merges nodes into their only reader: emit gets a fg_merge_state
 * (the reader counts of c->g and the pass's own `extra`) and counts each merge in c->changes;
 * the merged nodes, unread then, are removed (unless c->keep_dead). */
typedef struct fg_merge_state {
  const int32_t *uses;
  const void *extra;
} fg_merge_state;
fg_status fg_pass_rewrite_merging(fg_pass_ctx *c, fg_emit_fn emit, const void *extra);
/* A rewrite for a pass that fuses pairs of nodes (bias_grad, conv_grads): find() pairs the
 * nodes of g (partner[a] = b, partner[b] = a; FG_NONE elsewhere: node count + 1 entries); at
 * the first of a pair in id order, make() builds the fused node from the pair's inputs in dst
 * (c->map), or returns FG_NONE while one is not there yet (the two then stay apart); each of
 * the two becomes the slice [from, to) of the fused node's flat output that range() gives,
 * reshaped to its own shape. */
typedef struct fg_pair_fusion {
  fg_status (*find)(fg_node *partner, const fg_graph *g, fg_err *e);
  fg_node (*make)(fg_pass_ctx *c, fg_graph *dst, const fg_graph *src, fg_node a, fg_node b);
  void (*range)(const fg_graph *dst, fg_node fused, const fg_graph *src, fg_node n,
                int64_t *from, int64_t *to);
} fg_pair_fusion;
fg_status fg_pass_rewrite_pairs(fg_pass_ctx *c, const fg_pair_fusion *p);
/* Every element of g's node n is exactly v (a fill, or a constant of at most 4096 elements). */
bool fg_pass_all_equal(const fg_graph *g, fg_node n, double v);

fg_status fg_pass_dce(fg_pass_ctx *c);
fg_status fg_pass_simplify(fg_pass_ctx *c);
fg_status fg_pass_cse(fg_pass_ctx *c);
fg_status fg_pass_fold(fg_pass_ctx *c);
fg_status fg_pass_epilogue(fg_pass_ctx *c);
fg_status fg_pass_remat(fg_pass_ctx *c);
fg_status fg_pass_chain(fg_pass_ctx *c);
fg_status fg_pass_bias_grad(fg_pass_ctx *c);
fg_status fg_pass_conv_grads(fg_pass_ctx *c);

/* Runs the graph passes in order (dce, simplify, cse, fold, simplify, cse, epilogue, bias_grad,
 * conv_grads, remat, chain),
 * skipping the disabled ones, verifying the graph after each when `verify` is set, and recording
 * the node count after each pass in counts[] (FG_PASS_COUNT entries, -1 for a pass not run).
 * dump_dir, if not NULL, receives <dir>/NN-<pass>.dot before the first and after every pass.
 * On failure c->g is the graph the last pass left (owned by c unless still borrowed), to free. */
fg_status fg_passes_run(fg_pass_ctx *c, uint32_t disabled, bool verify, const char *dump_dir,
                        int32_t *counts);

#endif
