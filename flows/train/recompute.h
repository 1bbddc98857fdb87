/* Training with memory flat in depth: instead of keeping every layer's activations from the
 * forward pass to the backward pass, the backward pass rebuilds them from each layer's output
 * through its inverse (a flow is invertible, so the input of a layer is a function of its
 * output), one layer at a time, and the whole forward pass needs no storage beyond the layer
 * being run.
 *
 * Blocks.  The flow's layers in forward order, chains opened (what fg_flow_data_init walks):
 * for a spec or a builder's flat chain, every layer is a block ("5.conv1x1_lu.").
 *
 * The gradient, block by block.  The forward graph is built as usual (each block fed a
 * stop_gradient of its input, so nothing differentiates across blocks), and the loss value is
 * the stored mode's.  Then, from the gradient g_n of the loss with respect to the top latent
 * x_n and the gradient of the summed log-det, for blocks i = n..1:
 *   x_{i-1}' = stop_gradient(inverse_i(after(x_i', g_i)))        (x_n' = x_n)
 *   (y', ld') = forward_i(x_{i-1}')                              (fresh nodes)
 *   g_{i-1}, block i's parameter gradients = VJP of (y', ld') seeded with (g_i, dL/dld)
 * so the original forward's intermediate values feed nothing in the backward pass and die as
 * soon as the next block has run.  `after` (ops/ops.h) makes the reconstruction of x_{i-1} wait
 * for g_i, so one block's recomputation is live at a time by construction rather than by the
 * scheduler's choice: the scheduler greedily picks the step adding the fewest live bytes and,
 * free to, starts cheap parts of lower blocks' reconstructions while the block above is still
 * being differentiated; their values then sit between the big ones and fragment the arena
 * (Glow K=8, 1x28x28, batch 64: 30.1 MiB planned without the ordering, 25.7 MiB with it).
 * The extra compute is about one forward pass, not two: a coupling's inverse evaluates its
 * conditioner on the same half that the recomputed forward does, and the compiler sees that
 * (a slice taking back one input of a concat is that input; then common-subexpression
 * merging), so the conditioner runs once for both; a split's prior likewise.
 * Parameter gradients of a parameter used by several blocks are summed.  Factored-out parts
 * (split) stay from the forward pass: they are outputs of the flow, O(levels), not O(depth).
 *
 * Blocks that keep their activations ("stored"), with the stored mode's VJP through the
 * original forward nodes:
 *   - the first block, whose input is the data (kept anyway);
 *   - blocks that cannot be inverted from their output in training mode: found by building
 *     forward then inverse in a training graph (batch-norm with batch statistics fails there),
 *     plus inversions and stochastic layers (FG_BIJ_STOCHASTIC: a recomputation would draw
 *     other noise);
 *   - blocks that failed the round-trip check (fg_recompute_check).
 *
 * The round-trip check.  For every recomputed block, on a real batch (the trainer uses its
 * current batch right after data-dependent initialisation, and again every `recompute_check`
 * steps): err = max|inverse(forward(x)) - x| / (max|x| + 1e-12) at the block's input x, each
 * block on the previous blocks' forward output.  A block whose err exceeds the tolerance, or is
 * not finite, falls back to stored activations for good.  What is checked is each block on its
 * own; the backward pass chains reconstructions, so errors of consecutive recomputed blocks add
 * up (each amplified by the later inverses' conditioning) — the tolerance is per block.
 * A tolerance below 0 makes every block fall back. */
#ifndef FG_RECOMPUTE_H
#define FG_RECOMPUTE_H

#include <stdbool.h>

#include "core/runtime/threadpool.h"
#include "flows/flow.h"

typedef enum fg_block_mode {
  FG_BLOCK_RECOMPUTED,       /* activations rebuilt through the inverse */
  FG_BLOCK_STORED_FIRST,     /* the first block: its input is the data */
  FG_BLOCK_STORED_NO_INVERSE,/* not invertible from its output in training mode */
  FG_BLOCK_STORED_ROUND_TRIP,/* fell back: round-trip error over the tolerance */
} fg_block_mode;

typedef struct fg_recompute fg_recompute;

/* The blocks of f (borrowed; must outlive r) and their modes: every block recomputed but the
 * ones listed above as stored by construction.  On failure *out is NULL. */
fg_status fg_recompute_new(fg_recompute **out, fg_flow *f, fg_err *e);
void fg_recompute_free(fg_recompute *r);

int fg_recompute_num_blocks(const fg_recompute *r);
/* The block's parameter prefix ("5.conv1x1_lu."); borrowed ("" for an invalid i). */
const char *fg_recompute_block_name(const fg_recompute *r, int i);
fg_block_mode fg_recompute_block_mode(const fg_recompute *r, int i);
/* The block's relative round-trip error at the last check (NaN when never checked). */
double fg_recompute_block_error(const fg_recompute *r, int i);
int fg_recompute_num_recomputed(const fg_recompute *r);
/* "recomputed", "stored: first block", ... */
const char *fg_block_mode_str(fg_block_mode m);

/* The training loss (mean -log p(x) over the batch, as fg_flow_nll_loss in training mode) and
 * the gradient of every parameter, in store order (grads has fg_flow_num_params entries, as
 * fg_flow_param_grads), built block by block as above.  updates as fg_flow_nll_loss's. */
fg_status fg_recompute_loss_grads(fg_recompute *r, fg_graph *g, fg_node x, fg_node *loss,
                                  fg_node *grads, fg_flow_updates **updates);

/* The round-trip check on the batch x ([B, event...], the model's input: dequantised data),
 * its programs compiled with opts (NULL: the defaults; a trainer's: its pool, and deterministic
 * in a data-parallel job, so every run of the job falls back the same way).  *n_fell: blocks
 * that fell back now. */
fg_status fg_recompute_check(fg_recompute *r, const fg_tensor *x, double tol,
                             const fg_program_opts *opts, int *n_fell, fg_err *e);

#endif
