/* Linear algebra: LU with partial pivoting, log|det|, the sign of det, solves with saved LU
 * factors and triangular solves.  Inverse and solve are builders over these.
 *
 * Multi-output factorisations as one-output nodes.  A node has exactly one output, so what
 * LAPACK returns together is several nodes here:
 *   lu(A)                       [..., n, n+1]  L, U and the pivots packed (layout below); NODIFF
 *   slogdet(A, LU)              [...]          log|det A|, from U's diagonal
 *   det_sign(LU)                [...]          +1, -1 or 0; NODIFF
 *   lu_solve(A, LU, B; t)       A^-1 B, or A^-T B when t is set
 *   triangular_solve(T, B; lower, unit, t)     T^-1 B or T^-T B
 * The ops that need the factors take A itself as input 0 and LU only as a non-differentiable
 * cache (nondiff_inputs bit 1): the kernels read LU and never A, while the VJPs differentiate
 * with respect to A.  Gradients therefore reach A without differentiating the factorisation
 * (whose pivoting has no useful derivative), and each VJP is written with these same ops and
 * matmul, so second derivatives come free:
 *   d log|det A| = lu_solve(A, LU, g·I; t=1) = g·A^-T    (a solve with the saved factors whose
 *                                                          solution is the gradient itself)
 *   lu_solve:  gB = lu_solve(A, LU, g; !t),  gA = -gB X^T  (or -X gB^T when t)
 * The public builders look for an existing lu node of A before adding one, so slogdet,
 * det_sign, solve and inverse of one matrix share one factorisation even with CSE off; the
 * VJPs pass the LU node they were given.  fg_lu_solve insists that its LU input is fg_lu(A),
 * because a mismatched pair would give values of one matrix and gradients of another.
 *
 * Packed layout (LAPACK's getrf with 0-based pivots): for each matrix, row i of the n+1 columns
 * holds L[i][0..i) (unit lower, diagonal implicit), U[i][i..n) and, in column n, piv[i]: at
 * step i rows i and piv[i] (>= i) were swapped, so P A = L U where P applies the swaps in
 * order.  Pivots are small exact integers, exact in float32 for any n below 2^24.
 *
 * The kernels (ops/kernels/linalg.c) accumulate in double and fail loudly on a matrix they
 * would have to divide by a zero pivot of. */
#include <string.h>

#include "core/ir/op.h"
#include "ops/infer.h"
#include "ops/kernels/kernels.h"
#include "ops/ops.h"

/* ---- shapes ---- */

static int64_t last_dim(const fg_shape *s, int from_end) { return s->d[s->ndim - from_end]; }

/* ---- shape rules ---- */

static fg_status expect_same_dtypes(fg_infer_args *a) {
  for (int i = 1; i < a->n_in; i++)
    if (a->in_dtype[i] != a->in_dtype[0])
      return fg_infer_fail(a, FG_E_DTYPE, "input %d is %s but input 0 is %s", i,
                           fg_dtype_name(a->in_dtype[i]), fg_dtype_name(a->in_dtype[0]));
  return FG_OK;
}

/* Input i must be a square matrix or a batch of them. */
static fg_status expect_square(fg_infer_args *a, int i) {
  const fg_shape *s = &a->in_shape[i];
  if (s->ndim < 2)
    return fg_infer_fail(a, FG_E_SHAPE, "input %d must be a matrix [..., n, n]; it has %d dims",
                         i, (int)s->ndim);
  if (last_dim(s, 1) != last_dim(s, 2))
    return fg_infer_fail(a, FG_E_SHAPE, "input %d must be square [..., n, n]; it is %lld x %lld",
                         i, (long long)last_dim(s, 2), (long long)last_dim(s, 1));
  return FG_OK;
}

/* Input i must be the packed factors [..., n, n+1] of the square input 0 (same batch). */
static fg_status expect_factors_of_input0(fg_infer_args *a, int i) {
  const fg_shape *A = &a->in_shape[0], *lu = &a->in_shape[i];
  bool ok = lu->ndim == A->ndim;
  for (int d = 0; ok && d < A->ndim - 1; d++) ok = lu->d[d] == A->d[d];
  if (!ok || last_dim(lu, 1) != last_dim(A, 1) + 1)
    return fg_infer_fail(a, FG_E_SHAPE, "input %d must be the LU factors of input 0, shaped "
                         "[..., n, n+1] with n = %lld and input 0's batch", i,
                         (long long)last_dim(A, 1));
  return FG_OK;
}

/* Output [batch of a and b broadcast, n, k] for a square [..., n, n] and b [..., n, k]. */
static fg_status infer_solve_output(fg_infer_args *a, int ia, int ib) {
  const fg_shape *A = &a->in_shape[ia], *B = &a->in_shape[ib];
  if (B->ndim < 2)
    return fg_infer_fail(a, FG_E_SHAPE, "the right-hand side (input %d) must be a matrix "
                         "[..., n, k]; it has %d dims", ib, (int)B->ndim);
  if (last_dim(B, 2) != last_dim(A, 1))
    return fg_infer_fail(a, FG_E_SHAPE, "the right-hand side has %lld rows but the matrix is "
                         "%lld x %lld", (long long)last_dim(B, 2), (long long)last_dim(A, 1),
                         (long long)last_dim(A, 1));
  fg_shape ba = fg_matrix_batch(A), bb = fg_matrix_batch(B), out;
  if (!fg_shape_broadcast(&ba, &bb, &out))
    return fg_infer_fail(a, FG_E_SHAPE, "the batch dims of inputs %d and %d do not broadcast",
                         ia, ib);
  out.d[out.ndim++] = last_dim(B, 2);
  out.d[out.ndim++] = last_dim(B, 1);
  a->out_shape = out;
  return FG_OK;
}

static fg_status infer_lu(fg_infer_args *a) {
  fg_status st = expect_square(a, 0);
  if (st != FG_OK) return st;
  a->out_shape.d[a->out_shape.ndim - 1] += 1;
  return FG_OK;
}

static fg_status infer_slogdet(fg_infer_args *a) {
  fg_status st = expect_same_dtypes(a);
  if (st == FG_OK) st = expect_square(a, 0);
  if (st == FG_OK) st = expect_factors_of_input0(a, 1);
  if (st == FG_OK) a->out_shape = fg_matrix_batch(&a->in_shape[0]);
  return st;
}

static fg_status infer_det_sign(fg_infer_args *a) {
  const fg_shape *lu = &a->in_shape[0];
  if (lu->ndim < 2 || last_dim(lu, 1) != last_dim(lu, 2) + 1)
    return fg_infer_fail(a, FG_E_SHAPE,
                         "input must be LU factors [..., n, n+1] (the output of lu)");
  a->out_shape = fg_matrix_batch(lu);
  return FG_OK;
}

static fg_status infer_lu_solve(fg_infer_args *a) {
  fg_status st = expect_same_dtypes(a);
  if (st == FG_OK) st = expect_square(a, 0);
  if (st == FG_OK) st = expect_factors_of_input0(a, 1);
  if (st == FG_OK) st = infer_solve_output(a, 0, 2);
  return st;
}

static fg_status infer_triangular_solve(fg_infer_args *a) {
  fg_status st = expect_same_dtypes(a);
  if (st == FG_OK) st = expect_square(a, 0);
  if (st == FG_OK) st = infer_solve_output(a, 0, 1);
  return st;
}


/* ---- constants for the VJPs and builders ---- */

/* An n x n constant: `diag` on the diagonal, `below` under it, `above` over it. */
static fg_node banded_constant(fg_graph *g, int64_t n, fg_dtype t, double below, double diag,
                               double above) {
  fg_tensor *m;
  fg_err e;
  fg_shape s = fg_shape2(n, n);
  if (fg_tensor_new(&m, t, &s, &e) != FG_OK)
    return fg_graph_fail(g, e.status, "linalg: %s", e.msg);
  for (int64_t i = 0; i < n; i++)
    for (int64_t j = 0; j < n; j++)
      fg_tensor_set(m, i * n + j, i > j ? below : i == j ? diag : above);
  fg_node c = fg_constant(g, m);
  fg_tensor_free(m);
  return c;
}

static fg_node identity(fg_graph *g, int64_t n, fg_dtype t) {
  return banded_constant(g, n, t, 0, 1, 0);
}

/* ---- VJPs ---- */

/* d log|det A| / dA = A^-T: the solution of A^T X = g·I with the saved factors. */
static fg_status slogdet_vjp(fg_graph *g, fg_node node, fg_node gout, uint32_t need,
                             fg_node *gin) {
  (void)need; /* only input 0 is differentiable */
  fg_node a = fg_node_input(g, node, 0), lu = fg_node_input(g, node, 1);
  fg_shape s = fg_node_shape(g, a);
  int64_t n = last_dim(&s, 1);
  s.d[s.ndim - 1] = s.d[s.ndim - 2] = 1;
  fg_node rhs = fg_mul(g, fg_reshape(g, gout, s), identity(g, n, fg_node_dtype(g, a)));
  gin[0] = fg_lu_solve(g, a, lu, rhs, true);
  return fg_graph_status(g);
}

/* X = A^-1 B: gB = A^-T g, gA = -gB X^T.  X = A^-T B: gB = A^-1 g, gA = -X gB^T.
 * gA has the output's batch; autodiff sums it down to A's when the batch was broadcast. */
static fg_status lu_solve_vjp(fg_graph *g, fg_node node, fg_node gout, uint32_t need,
                              fg_node *gin) {
  fg_node a = fg_node_input(g, node, 0), lu = fg_node_input(g, node, 1);
  bool t = ((const fg_lu_solve_attr *)fg_node_attr(g, node))->transpose;
  fg_node gb = fg_lu_solve(g, a, lu, gout, !t);
  if (need & (1u << 2)) gin[2] = gb;
  if (need & 1u)
    gin[0] = fg_neg(g, t ? fg_matmul_t(g, node, gb, false, true)
                         : fg_matmul_t(g, gb, node, false, true));
  return fg_graph_status(g);
}

/* As lu_solve's, with gT kept to the triangle the kernel reads (a constant mask of -1 there
 * folds the negation in); a unit diagonal is not read, so it gets no gradient either. */
static fg_status triangular_solve_vjp(fg_graph *g, fg_node node, fg_node gout, uint32_t need,
                                      fg_node *gin) {
  fg_node tri = fg_node_input(g, node, 0);
  const fg_triangular_solve_attr *at = fg_node_attr(g, node);
  fg_node gb = fg_triangular_solve(g, tri, gout, at->lower, at->unit_diagonal, !at->transpose);
  if (need & 2u) gin[1] = gb;
  if (need & 1u) {
    fg_shape s = fg_node_shape(g, tri);
    double diag = at->unit_diagonal ? 0 : -1;
    fg_node mask = banded_constant(g, last_dim(&s, 1), fg_node_dtype(g, tri),
                                   at->lower ? -1 : 0, diag, at->lower ? 0 : -1);
    fg_node outer = at->transpose ? fg_matmul_t(g, node, gb, false, true)
                                  : fg_matmul_t(g, gb, node, false, true);
    gin[0] = fg_mul(g, outer, mask);
  }
  return fg_graph_status(g);
}

/* ---- descriptors ---- */

const fg_op_def fg_opdef_lu = {
    .name = "lu", .n_in = 1, .flags = FG_OPF_NODIFF, .infer = infer_lu,
    FG_KERNELS(lu)};

const fg_op_def fg_opdef_slogdet = {
    .name = "slogdet", .n_in = 2, .nondiff_inputs = 1u << 1, .infer = infer_slogdet,
    FG_KERNELS(slogdet), .vjp = slogdet_vjp};

const fg_op_def fg_opdef_det_sign = {
    .name = "det_sign", .n_in = 1, .flags = FG_OPF_NODIFF, .infer = infer_det_sign,
    FG_KERNELS(det_sign)};

const fg_op_def fg_opdef_lu_solve = {
    .name = "lu_solve", .n_in = 3, .nondiff_inputs = 1u << 1,
    .attr_size = sizeof(fg_lu_solve_attr), .infer = infer_lu_solve,
    FG_KERNELS(lu_solve), .vjp = lu_solve_vjp};

const fg_op_def fg_opdef_triangular_solve = {
    .name = "triangular_solve", .n_in = 2, .attr_size = sizeof(fg_triangular_solve_attr),
    .infer = infer_triangular_solve, FG_KERNELS(triangular_solve),
    .vjp = triangular_solve_vjp};

/* ---- builders ---- */

static bool usable(fg_graph *g, fg_node x) {
  return fg_graph_status(g) == FG_OK && fg_node_valid(g, x);
}

/* An lu node of a already in the graph (it can only come after a), or FG_NONE. */
static fg_node existing_lu(const fg_graph *g, fg_node a) {
  for (fg_node i = a + 1; i < fg_graph_node_count(g); i++) {
    const fg_node_rec *r = fg_graph_node(g, i);
    if (r->op == FG_OP_LU && fg_node_input(g, i, 0) == a) return i;
  }
  return FG_NONE;
}

fg_node fg_lu(fg_graph *g, fg_node a) {
  if (usable(g, a)) {
    fg_node found = existing_lu(g, a);
    if (found != FG_NONE) return found;
  }
  return fg_graph_add_node(g, FG_OP_LU, 1, &a, NULL);
}

fg_node fg_lu_solve(fg_graph *g, fg_node a, fg_node lu, fg_node b, bool transpose) {
  if (usable(g, a) && usable(g, lu) &&
      (fg_node_op(g, lu) != FG_OP_LU || fg_node_input(g, lu, 0) != a))
    return fg_graph_fail(g, FG_E_MISUSE, "op 'lu_solve': input 1 (node %d) must be fg_lu of "
                         "input 0 (node %d)", lu, a);
  fg_lu_solve_attr attr;
  memset(&attr, 0, sizeof attr);
  attr.transpose = transpose;
  fg_node in[3] = {a, lu, b};
  return fg_graph_add_node(g, FG_OP_LU_SOLVE, 3, in, &attr);
}

fg_node fg_slogdet(fg_graph *g, fg_node a) {
  fg_node in[2] = {a, fg_lu(g, a)};
  return fg_graph_add_node(g, FG_OP_SLOGDET, 2, in, NULL);
}

fg_node fg_det_sign(fg_graph *g, fg_node a) {
  fg_node lu = fg_lu(g, a);
  return fg_graph_add_node(g, FG_OP_DET_SIGN, 1, &lu, NULL);
}

fg_node fg_solve(fg_graph *g, fg_node a, fg_node b) {
  return fg_lu_solve(g, a, fg_lu(g, a), b, false);
}

/* A^-1 as the solution of A X = I: the identity broadcasts over A's batch. */
fg_node fg_inverse(fg_graph *g, fg_node a) {
  fg_node lu = fg_lu(g, a);
  if (lu < 0) return lu;
  fg_shape s = fg_node_shape(g, a);
  return fg_lu_solve(g, a, lu, identity(g, last_dim(&s, 1), fg_node_dtype(g, a)), false);
}

fg_node fg_triangular_solve(fg_graph *g, fg_node t, fg_node b, bool lower, bool unit_diagonal,
                            bool transpose) {
  fg_triangular_solve_attr attr;
  memset(&attr, 0, sizeof attr);
  attr.lower = lower;
  attr.unit_diagonal = unit_diagonal;
  attr.transpose = transpose;
  fg_node in[2] = {t, b};
  return fg_graph_add_node(g, FG_OP_TRIANGULAR_SOLVE, 2, in, &attr);
}
