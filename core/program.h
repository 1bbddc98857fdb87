/* A program: the part of a graph needed for some outputs, planned for execution.  Inputs and
 * parameters are bound by name to tensors whose buffers the program retains (no copy when they
 * are contiguous), so one parameter tensor serves the training, log-prob and sampling programs
 * and an optimiser's in-place update is seen by all of them.
 * The graph must outlive the program. */
#ifndef FG_PROGRAM_H
#define FG_PROGRAM_H

#include <stdint.h>

#include "core/graph.h"
#include "core/tensor.h"

typedef struct fg_program fg_program;

/* Plans a program computing outs[0..n_out).  Fails when the graph is in error or an output is
 * not a node of it. */
fg_status fg_program_new(fg_program **out, fg_graph *g, int n_out, const fg_node *outs,
                         fg_err *e);
void fg_program_free(fg_program *p);

/* Binds the input or parameter `name` to t (dtype and shape must match the node's).  The
 * program keeps a reference to t's buffer; t itself may be freed. */
fg_status fg_program_bind(fg_program *p, const char *name, const fg_tensor *t);
/* Runs every planned node.  Fails (with fg_program_errmsg) on an unbound input or a kernel
 * error such as an exactly singular matrix.  Allocates only on the first run. */
fg_status fg_program_run(fg_program *p);
/* Output i of the last run: borrowed, valid until the next run or free. */
const fg_tensor *fg_program_output(const fg_program *p, int i);
int fg_program_num_outputs(const fg_program *p);
/* Offset mixed into every random op's counter, so each training step draws fresh noise. */
void fg_program_set_rng_offset(fg_program *p, uint64_t offset);
const char *fg_program_errmsg(const fg_program *p);

#endif
