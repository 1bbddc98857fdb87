/* Test cases for the op table test (tests/test_ops_table.c).  Each op family has its own
 * tests/op_cases_<family>.c exporting one op_case_list; the table test walks every descriptor
 * and fails when an op has no case, so an op cannot be added untested. */
#ifndef FG_TEST_OP_CASES_H
#define FG_TEST_OP_CASES_H

#include <stdbool.h>

#include "core/ir/graph.h"
#include "core/tensor.h"
#include "ops/ops.h"

#define OP_CASE_MAX_IN 7

typedef struct op_case {
  const char *op;    /* descriptor name this case covers ("add") */
  const char *label; /* what is special about it ("broadcast [2,3] + [3]") */
  int n_in;
  fg_shape in[OP_CASE_MAX_IN];
  double lo, hi;     /* inputs drawn uniformly from [lo, hi): keep inside the op's domain and
                        away from kinks (relu at 0, abs at 0, ties in max) */
  /* Builds the op under test from input nodes (dtype follows the inputs). */
  fg_node (*build)(fg_graph *g, const fg_node *in, const void *ctx);
  const void *ctx;   /* case-specific data for build and reference (attributes) */
  /* Naive reference in double: float64 contiguous inputs, out pre-allocated float64 with the
   * op's output shape.  Written as plainly as possible (the kernel's independent witness). */
  void (*reference)(const fg_tensor *const *in, fg_tensor *out, const void *ctx);
  uint32_t skip_grad_mask; /* inputs not gradchecked (masks, ...) */
  bool no_grad;            /* op has no gradient (NODIFF): skip gradcheck */
  bool gradgrad;           /* also run gradgradcheck */
} op_case;

/* A shape rule must reject this: build_bad builds a graph that must end in status `expect`
 * with a message containing `mention` (the op's name, say). */
typedef struct op_reject_case {
  const char *op;
  const char *label;
  void (*build_bad)(fg_graph *g);
  fg_status expect;
  const char *mention;
} op_reject_case;

typedef struct op_case_list {
  const char *family;
  const op_case *cases;
  int n_cases;
  const op_reject_case *rejects;
  int n_rejects;
} op_case_list;

extern const op_case_list op_cases_source, op_cases_elementwise, op_cases_reduce,
    op_cases_shape, op_cases_matmul, op_cases_conv,
    op_cases_linalg, op_cases_index, op_cases_collective;

#endif
