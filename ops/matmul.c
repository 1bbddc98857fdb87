/* matmul: a [..., m, k] @ b [..., k, n] with NumPy-broadcast batch dims and transposes as
 * attributes.  The kernel is in ops/kernels/matmul.c, over the GEMM of ops/kernels/gemm.c. */
#include <string.h>

#include "core/ir/op.h"
#include "ops/infer.h"
#include "ops/kernels/kernels.h"
#include "ops/kernels/onednn.h"
#include "ops/ops.h"

static fg_status matmul_infer(fg_infer_args *a) {
  const fg_matmul_attr *at = a->attr;
  const fg_shape *sa = &a->in_shape[0], *sb = &a->in_shape[1];
  char s0[96], s1[96];
  fg_shape_str(sa, s0, sizeof s0);
  fg_shape_str(sb, s1, sizeof s1);
  if (a->in_dtype[0] != a->in_dtype[1])
    return fg_infer_fail(a, FG_E_DTYPE, "operands of one dtype, got %s and %s",
                         fg_dtype_name(a->in_dtype[0]), fg_dtype_name(a->in_dtype[1]));
  if (sa->ndim < 2 || sb->ndim < 2)
    return fg_infer_fail(a, FG_E_SHAPE, "both operands at least 2-D (a %s, b %s); reshape a "
                         "vector to [1, k] or [k, 1]", s0, s1);
  int64_t m = sa->d[sa->ndim - (at->trans_a ? 1 : 2)], ka = sa->d[sa->ndim - (at->trans_a ? 2 : 1)];
  int64_t kb = sb->d[sb->ndim - (at->trans_b ? 1 : 2)], n = sb->d[sb->ndim - (at->trans_b ? 2 : 1)];
  if (ka != kb)
    return fg_infer_fail(a, FG_E_SHAPE, "inner dims to agree: a %s%s gives k = %lld, b %s%s "
                         "gives k = %lld", s0, at->trans_a ? " (transposed)" : "", (long long)ka,
                         s1, at->trans_b ? " (transposed)" : "", (long long)kb);
  fg_shape ba = fg_matrix_batch(sa), bb = fg_matrix_batch(sb), out;
  char s2[96], s3[96];
  if (!fg_shape_broadcast(&ba, &bb, &out))
    return fg_infer_fail(a, FG_E_SHAPE, "batch dims %s (of a %s) and %s (of b %s) to broadcast",
                         fg_shape_str(&ba, s2, sizeof s2), s0, fg_shape_str(&bb, s3, sizeof s3),
                         s1);
  out.d[out.ndim++] = m;
  out.d[out.ndim++] = n;
  int64_t numel;
  if (fg_shape_numel(&out, &numel, NULL) != FG_OK)
    return fg_infer_fail(a, FG_E_OVERFLOW, "an output with fewer than 2^63 elements");
  a->out_shape = out;
  return FG_OK;
}

/* C = op(A) op(B) with G = dL/dC:
 *   dL/dop(A) = G op(B)^T   so  dA = G op(B)^T,  or its transpose op(B) G^T when ta;
 *   dL/dop(B) = op(A)^T G   so  dB = op(A)^T G,  or its transpose G^T op(A) when tb.
 * Every product is a matmul_t, so no transpose is ever materialised, and each result has A's
 * (or B's) trailing dims with the output's batch dims, which autodiff sums down. */
static fg_status matmul_vjp(fg_graph *g, fg_node node, fg_node gout, uint32_t need,
                            fg_node *gin) {
  const fg_matmul_attr *at = fg_node_attr(g, node);
  bool ta = at->trans_a, tb = at->trans_b;
  fg_node a = fg_node_input(g, node, 0), b = fg_node_input(g, node, 1);
  if (need & 1u)
    gin[0] = ta ? fg_matmul_t(g, b, gout, tb, true) : fg_matmul_t(g, gout, b, false, !tb);
  if (need & 2u)
    gin[1] = tb ? fg_matmul_t(g, gout, a, true, ta) : fg_matmul_t(g, a, gout, !ta, false);
  return fg_graph_status(g);
}

fg_node fg_matmul_t(fg_graph *g, fg_node a, fg_node b, bool trans_a, bool trans_b) {
  fg_matmul_attr attr;
  memset(&attr, 0, sizeof attr);
  attr.trans_a = trans_a;
  attr.trans_b = trans_b;
  fg_node in[2] = {a, b};
  return fg_graph_add_node(g, FG_OP_MATMUL, 2, in, &attr);
}

fg_node fg_matmul(fg_graph *g, fg_node a, fg_node b) { return fg_matmul_t(g, a, b, false, false); }

/* "gemm" is the op's own kernel: timing need not tell it from the native kernels. */
static fg_status gemm_prepare(fg_kprep *a, void **state, fg_err *e) {
  (void)state, (void)e;
  a->as_native = true;
  return FG_OK;
}

/* The implementations a program chooses among (core/runtime/kernel_choice.h): oneDNN's matmul
 * primitive, and the op's own kernel over the shared GEMM. */
static const fg_kernel_impl matmul_impls[] = {
#ifdef FG_HAVE_DNNL
    {"onednn", fg_onednn_matmul_prepare, fg_onednn_release, fg_onednn_matmul_f32, NULL},
#endif
    {"gemm", gemm_prepare, NULL, FG_KERNELS(matmul)},
};

const fg_op_def fg_opdef_matmul = {
    .name = "matmul",
    .n_in = 2,
    .attr_size = sizeof(fg_matmul_attr),
    .infer = matmul_infer,
    FG_KERNELS(matmul),
    .vjp = matmul_vjp,
    .impls = matmul_impls,
    .n_impls = (int)(sizeof matmul_impls / sizeof *matmul_impls),
};
