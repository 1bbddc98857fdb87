/* Scheduling: the order of a program's steps changes how many values are alive at once.  The
 * scheduler is a list scheduler: among the steps whose inputs are ready it runs the one that
 * adds the fewest live bytes (its output minus the values it is the last reader of), lowest id
 * first on ties — deterministic, and it tends to finish a branch before starting the next.  A
 * remat step (a forward value computed again for the backward pass, pass_remat.c) runs only once
 * one of its readers waits for nothing else: ready from the start, and the cheapest step in bytes
 * at many points, it would otherwise be computed early and kept, which is what it exists to
 * avoid. */
#ifndef FG_SCHEDULE_H
#define FG_SCHEDULE_H

#include "core/compiler/pass_memplan.h"

/* Reorders steps[0..n_steps) in place; `planned` marks the values that occupy memory.  On
 * failure the steps are in their original order. */
fg_status fg_schedule_steps(const fg_graph *g, int32_t n_steps, fg_memplan_step *steps,
                            const uint8_t *planned, fg_err *e);

#endif
