/* What the compiler-pass tests share (tests/test_passes.c, tests/test_conv_passes.c): a graph
 * with its leaves' values, run under given program options, and comparisons of its outputs. */
#ifndef FG_TEST_PASS_RIG_H
#define FG_TEST_PASS_RIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/runtime/program.h"

typedef struct built {
  fg_graph *g;
  int n_out;
  fg_node outs[16];
  int n_in;
  const char *names[8];
  fg_tensor *values[8];
} built;

/* A float32 tensor of shape s drawn uniformly from [lo, hi) (seeded). */
fg_tensor *random_tensor(fg_shape s, uint64_t seed, double lo, double hi);
/* A float32 input (or parameter) of b's graph, its value drawn uniformly from [-1, 1). */
fg_node leaf(built *b, bool param, const char *name, fg_shape s, uint64_t seed);
void free_built(built *b);
/* Runs b's outputs under opts (twice); returns float32 copies of them, and the stats. */
void run(const built *b, const fg_program_opts *o, fg_tensor **out, fg_program_stats *stats);
void expect_identical(const built *b, fg_tensor **a, fg_tensor **c, const char *what);
/* Every element within rel of the other's magnitude (and 1e-6 absolute). */
void expect_close(const built *b, fg_tensor **a, fg_tensor **c, double rel, const char *what);
void free_outs(const built *b, fg_tensor **o);
/* Runs b under a and under c; every output the same bits in both. */
void expect_runs_identical(const built *b, const fg_program_opts *a, const fg_program_opts *c,
                           const char *what);
int count_op(const fg_graph *g, int op);
/* One thread, every pass off. */
extern const fg_program_opts reference_opts;

#endif
