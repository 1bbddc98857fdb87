/* Memory planning: every materialised value of a run gets a range in one arena, reused once
 * its last reader has run (liveness over the schedule), and an elementwise op whose input dies
 * at it writes over that input in place.  Outputs, leaves and constants are never reused.  A
 * step may also ask for scratch memory (a kernel library's work space): a range live during
 * that step only. */
#ifndef FG_MEMPLAN_H
#define FG_MEMPLAN_H

#include <stdbool.h>
#include <stddef.h>

#include "core/ir/graph.h"

typedef struct fg_memplan_step {
  fg_node node;      /* the node (or fused group's root) this step materialises */
  int32_t n_reads;
  const fg_node *reads; /* every node whose value the step reads */
} fg_memplan_step;

typedef struct fg_memplan {
  int64_t *offset;     /* per node: byte offset in the arena, -1 when not in the arena */
  int32_t *dies_at;    /* per node: index of the step after which it is free, -1 never */
  uint8_t *in_place;   /* per node: 1 when it reuses its input 0's range */
  int64_t *scratch_offset; /* per step: byte offset of its scratch range, -1 when none */
  size_t arena_bytes;  /* the arena's size: peak live bytes of planned values */
  size_t naive_bytes;  /* what one buffer per value would take */
  int32_t n_in_place;
} fg_memplan;

/* Plans, into *m, the values the steps materialise.  `planned` selects them (compute nodes that
 * are not outputs); a value is read by the steps listing it in `reads`.  in_place_ok enables
 * reuse of a dying input 0 by an INPLACE_OK op of the same byte size, and of a step's scratch
 * range by later steps (without it, as when the planner is switched off, every scratch range
 * is its own).  scratch (NULL: none) gives each step's scratch bytes.  Free with
 * fg_memplan_free; on failure *m is empty (zeroed, nothing to free). */
fg_status fg_memplan_build(fg_memplan *m, const fg_graph *g, int n_steps,
                           const fg_memplan_step *steps, const uint8_t *planned, bool in_place_ok,
                           const size_t *scratch, fg_err *e);
void fg_memplan_free(fg_memplan *m);

#endif
