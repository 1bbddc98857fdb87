/* Rematerialisation: a forward value that the backward pass reads is kept alive from the moment
 * the forward pass makes it until the backward pass is done with it, and in a training graph
 * those values are most of the peak memory.  Some are large and cheap to make again: a
 * convolution with few input channels (a coupling network's first layer, 2-4 channels in,
 * 128-256 out, about 20-40 multiply-adds per output element against 128-256 for the 1x1 layer
 * after it) from inputs that the backward pass keeps anyway (its weight gradient reads them),
 * and a unary elementwise op of such a convolution (RealNVP's residual nets keep relu(h) of the
 * first conv's output h, which also feeds the residual sum, so the relu is no epilogue of it).
 * For such a value this pass gives its backward readers a copy of the node (and of the conv
 * under the elementwise op), marked FG_NODE_REMAT: the forward value then dies at its last
 * forward reader, and the copy is computed when the backward pass gets to it (the scheduler
 * runs a remat step only once one of its readers waits for nothing else,
 * core/compiler/pass_schedule.c).  The copy is the same op on the same inputs, and the kernel
 * choice, keyed by op and shapes, gives it the same kernel: results are bit for bit those of
 * keeping the value (tests/test_passes.c checks it with the native kernels; a oneDNN copy that
 * the layout plan gives another layout than the original may round differently, as any change
 * of kernel does). */
#include <stdlib.h>

#include "core/compiler/pass.h"
#include "core/ir/op.h"

enum {
  REMAT_MAX_MACS = 64,         /* multiply-adds per output element: a 3x3 conv of <= 7 channels */
  REMAT_MIN_BYTES = 256 << 10, /* smaller values are not worth a second computation */
  REMAT_MIN_GROWTH = 4         /* the value is >= 4x its recomputed input */
};

typedef struct remat_state {
  uint8_t *read_by_grad; /* per source node: a gradient node reads it */
  uint8_t *candidate;    /* per source node: give its gradient readers a copy */
  fg_node *copy;         /* per source node: the copy in the new graph, FG_NONE until made */
} remat_state;

/* Keeping n's inputs alive for a second computation costs little: each is a leaf, a value the
 * backward pass reads anyway (the convolution's input, for its weight gradient), or small
 * beside n (a bias reshaped for broadcasting). */
static bool inputs_kept(const fg_graph *g, fg_node n, const uint8_t *read_by_grad) {
  for (int k = 0; k < fg_node_num_inputs(g, n); k++) {
    fg_node in = fg_node_input(g, n, k);
    if (!(fg_op_get(fg_node_op(g, in))->flags & FG_OPF_LEAF) && !read_by_grad[in] &&
        fg_node_bytes(g, in) * REMAT_MIN_GROWTH * REMAT_MIN_GROWTH > fg_node_bytes(g, n))
      return false;
  }
  return true;
}

/* A forward convolution, cheap per output element, much larger than its input, whose inputs
 * stay alive anyway. */
static bool cheap_conv(const fg_graph *g, fg_node n, const uint8_t *read_by_grad) {
  int op = fg_node_op(g, n);
  if ((op != FG_OP_CONV2D && op != FG_OP_CONV2D_BIAS_ACT) ||
      (fg_graph_node(g, n)->flags & (FG_NODE_GRAD | FG_NODE_REMAT)))
    return false;
  fg_shape w = fg_node_shape(g, fg_node_input(g, n, 1));
  int64_t bytes = fg_node_bytes(g, n);
  return w.d[1] * w.d[2] * w.d[3] <= REMAT_MAX_MACS && bytes >= REMAT_MIN_BYTES &&
         bytes >= REMAT_MIN_GROWTH * fg_node_bytes(g, fg_node_input(g, n, 0)) &&
         inputs_kept(g, n, read_by_grad);
}

/* A unary elementwise op (relu) of a cheap convolution: both are computed again. */
static bool elementwise_of_cheap_conv(const fg_graph *g, fg_node n, const uint8_t *read_by_grad) {
  const fg_op_def *d = fg_op_get(fg_node_op(g, n));
  return (d->flags & FG_OPF_ELEMENTWISE) && !(d->flags & FG_OPF_RANDOM) &&
         fg_node_num_inputs(g, n) == 1 &&
         !(fg_graph_node(g, n)->flags & (FG_NODE_GRAD | FG_NODE_REMAT)) &&
         fg_node_bytes(g, n) >= REMAT_MIN_BYTES &&
         cheap_conv(g, fg_node_input(g, n, 0), read_by_grad);
}

/* The copy of candidate v (already in dst as v_dst) for the backward pass, made once; its
 * inputs that are candidates too are their copies. */
static fg_node copy_of(remat_state *r, fg_graph *dst, const fg_graph *src, fg_node v,
                       fg_node v_dst) {
  if (r->copy[v] != FG_NONE) return r->copy[v];
  int n_in = fg_node_num_inputs(dst, v_dst); /* 1 (an elementwise op), 2 or 3: x, w (, bias) */
  fg_node in[3];
  for (int k = 0; k < n_in && k < 3; k++) {
    fg_node u = fg_node_input(src, v, k), u_dst = fg_node_input(dst, v_dst, k);
    in[k] = r->candidate[u] ? copy_of(r, dst, src, u, u_dst) : u_dst;
  }
  fg_node c = n_in > 3 ? fg_graph_fail(dst, FG_E_INTERNAL, "remat: a copy of %d inputs", n_in)
                       : fg_graph_add_node(dst, fg_node_op(src, v), n_in, in, fg_node_attr(src, v));
  if (c >= 0) fg_graph_mark(dst, c, FG_NODE_REMAT); /* c is dst's last node */
  return r->copy[v] = c;
}

static fg_node remat_emit(fg_pass_ctx *c, fg_graph *dst, const fg_graph *src, fg_node n,
                          const fg_node *in, void *state) {
  remat_state *r = state;
  if (!(fg_graph_node(src, n)->flags & FG_NODE_GRAD)) return fg_graph_copy_node(dst, src, n, in);
  int n_in = fg_node_num_inputs(src, n);
  fg_node *mine = malloc(sizeof *mine * ((size_t)n_in + 1));
  if (!mine) return fg_graph_fail(dst, FG_E_NOMEM, "remat: out of memory");
  for (int k = 0; k < n_in; k++) {
    fg_node v = fg_node_input(src, n, k);
    mine[k] = r->candidate[v] ? copy_of(r, dst, src, v, in[k]) : in[k];
    c->changes += r->candidate[v] && mine[k] >= 0;
  }
  fg_node out = fg_graph_copy_node(dst, src, n, mine);
  free(mine);
  return out;
}

fg_status fg_pass_remat(fg_pass_ctx *c) {
  const fg_graph *g = c->g;
  int32_t n = fg_graph_node_count(g);
  remat_state r = {calloc((size_t)n + 1, 1), calloc((size_t)n + 1, 1),
                   malloc(sizeof *r.copy * ((size_t)n + 1))};
  fg_status st = FG_OK;
  int64_t found = 0;
  if (!r.read_by_grad || !r.candidate || !r.copy) {
    st = fg_err_set(c->e, FG_E_NOMEM, "remat: out of memory");
    goto out;
  }
  for (fg_node i = 0; i < n; i++) {
    r.copy[i] = FG_NONE;
    if (fg_graph_node(g, i)->flags & FG_NODE_GRAD)
      for (int k = 0; k < fg_node_num_inputs(g, i); k++) r.read_by_grad[fg_node_input(g, i, k)] = 1;
  }
  for (fg_node i = 0; i < n; i++) {
    if (!r.read_by_grad[i]) continue;
    if (cheap_conv(g, i, r.read_by_grad)) r.candidate[i] = 1;
    else if (elementwise_of_cheap_conv(g, i, r.read_by_grad))
      r.candidate[i] = r.candidate[fg_node_input(g, i, 0)] = 1;
    found += r.candidate[i];
  }
  c->changes = 0;
  if (found) st = fg_pass_rewrite(c, remat_emit, &r);
  int64_t copied = c->changes;
  /* a value that only the backward pass read is unread now: its copy stands for it */
  if (st == FG_OK && copied > 0 && !c->keep_dead) st = fg_pass_dce(c);
  c->changes = copied;
out:
  free(r.read_by_grad), free(r.candidate), free(r.copy);
  return st;
}
