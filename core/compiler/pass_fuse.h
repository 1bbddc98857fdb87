/* Fusion of elementwise chains.  A group is a tree of elementwise nodes whose intermediate
 * results each feed exactly one other member; the group runs as one loop over tiles of its
 * root's output, each member's own kernel applied to a tile at a time, so intermediates live
 * in a small per-thread tile buffer instead of full-size tensors and the data stays in cache.
 * No new kernels: a member's kernel sees 1-D tiles (or a 0-d scalar input). */
#ifndef FG_FUSE_H
#define FG_FUSE_H

#include "core/ir/graph.h"

enum { FG_FUSE_MAX_MEMBERS = 32 };

typedef struct fg_fusion {
  int32_t n_groups;
  int32_t *group_of; /* per node: group index, or -1 */
  int32_t *n_members; /* per group */
  fg_node *members;  /* per group: FG_FUSE_MAX_MEMBERS ids, ascending; the last is the root */
} fg_fusion;

/* Groups the nodes of g (all of them needed by outs) into *f; a node that is an output is never
 * an intermediate.  Free with fg_fusion_free; on failure *f is empty (zeroed, nothing to free). */
fg_status fg_fusion_plan(fg_fusion *f, const fg_graph *g, int n_out, const fg_node *outs,
                         fg_err *e);
void fg_fusion_free(fg_fusion *f);
/* True for a member of a group that is not its root (runs inside the root's loop). */
bool fg_fusion_is_internal(const fg_fusion *f, fg_node n);

#endif
