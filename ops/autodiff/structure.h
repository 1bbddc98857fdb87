/* Internal to ops/autodiff/: which elements of y depend on which elements of x, found from the
 * graph between them without running it (ops/autodiff/structure.c), for the log-dets of
 * ops/autodiff/jacobian.c.
 *
 * Samples are taken as independent (axis 0 of every node between x and y is the batch); the
 * analysis is per sample.  For each node it keeps the set of x's elements each of its elements
 * depends on differentiably (non-differentiable inputs such as an index or a comparison carry
 * no derivative), from per-op rules: elementwise ops with broadcasting, the shape ops,
 * reductions over non-batch axes, matmul with an x-independent operand (whose constant zero
 * pattern, e.g. a MADE mask multiplied in, is honoured), gather and cumsum.  Any other op
 * between x and y makes the result "no structure".
 *
 * It also finds the "direct" part of the graph: the nodes each of whose elements depends on at
 * most one element of x through direct nodes alone (an elementwise map of x).  A non-direct
 * input of a direct node (a conditioner's output, say) is a cut: when no cut element feeds an
 * element that depends on the x element the cut element itself depends on, every path from x_i
 * to y_i runs through direct nodes only, so with the cuts held fixed the Jacobian is diagonal
 * and equals the diagonal of the true one.  With a triangular dependency pattern that diagonal
 * gives the log-det. */
#ifndef FG_AUTODIFF_STRUCTURE_H
#define FG_AUTODIFF_STRUCTURE_H

#include <stdbool.h>

#include "core/ir/graph.h"
#include "ops/autodiff/jacobian.h"

typedef struct fg_structure {
  fg_jacobian_kind kind;  /* DENSE when nothing better was proven */
  bool diagonal_by_cut;   /* holding `cuts` fixed, dy/dx is the diagonal of the true one */
  int n_cuts;
  fg_node *cuts;          /* owned (free()) */
  char why[160];          /* for DENSE: what stopped the analysis */
} fg_structure;

/* Analyses the graph between x and y (same element count per sample, batch axis 0).  Fails only
 * when out of memory; a graph it cannot analyse gives kind DENSE with the reason in why. */
fg_status fg_structure_find(fg_structure *out, const fg_graph *g, fg_node x, fg_node y);
void fg_structure_free(fg_structure *s);

#endif
