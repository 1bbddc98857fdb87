/* Cases for matmul (ops/matmul.c): every transpose combination, broadcast batch dims, batch of
 * one, empty batch, k = 1 and k = 0, against a plain triple loop written from the definition. */
#include <string.h>

#include "tests/op_cases.h"

typedef struct mm_ctx {
  bool ta, tb;
} mm_ctx;
static const mm_ctx NN = {false, false}, TN = {true, false}, NT = {false, true}, TT = {true, true};

static fg_node build_mm(fg_graph *g, const fg_node *in, const void *ctx) {
  const mm_ctx *c = ctx;
  return fg_matmul_t(g, in[0], in[1], c->ta, c->tb);
}

static fg_node build_mm_plain(fg_graph *g, const fg_node *in, const void *ctx) {
  (void)ctx;
  return fg_matmul(g, in[0], in[1]);
}

/* Index of the matrix an operand with shape s uses for output batch multi-index idx (of the
 * output's nb batch dims): size-1 and missing leading dims repeat. */
static int64_t operand_batch(const fg_shape *s, const int64_t *idx, int nb) {
  int64_t flat = 0;
  for (int d = 0; d < nb; d++) {
    int ds = d - (nb - (s->ndim - 2));
    if (ds < 0) continue;
    flat = flat * s->d[ds] + (s->d[ds] == 1 ? 0 : idx[d]);
  }
  return flat;
}

static void ref_mm(const fg_tensor *const *in, fg_tensor *out, const void *ctx) {
  const mm_ctx *c = ctx ? ctx : &NN;
  const fg_shape *sa = &in[0]->shape, *sb = &in[1]->shape, *so = &out->shape;
  const double *a = fg_tensor_data(in[0]), *b = fg_tensor_data(in[1]);
  double *y = fg_tensor_data(out);
  int nb = so->ndim - 2;
  int64_t m = so->d[nb], n = so->d[nb + 1];
  int64_t k = c->ta ? sa->d[sa->ndim - 2] : sa->d[sa->ndim - 1];
  int64_t batches = 1;
  for (int d = 0; d < nb; d++) batches *= so->d[d];
  for (int64_t ob = 0; ob < batches; ob++) {
    int64_t idx[FG_MAX_DIMS], rem = ob;
    for (int d = nb - 1; d >= 0; d--) {
      idx[d] = rem % so->d[d];
      rem /= so->d[d];
    }
    const double *am = a + operand_batch(sa, idx, nb) * m * k;
    const double *bm = b + operand_batch(sb, idx, nb) * k * n;
    for (int64_t i = 0; i < m; i++)
      for (int64_t j = 0; j < n; j++) {
        double s = 0;
        for (int64_t p = 0; p < k; p++)
          s += (c->ta ? am[p * m + i] : am[i * k + p]) * (c->tb ? bm[j * k + p] : bm[p * n + j]);
        y[(ob * m + i) * n + j] = s;
      }
  }
}

#define S2(a, b) {2, {a, b}}
#define S3(a, b, c) {3, {a, b, c}}
#define S4(a, b, c, d) {4, {a, b, c, d}}

#define MM(label_, a_, b_, ctx_, gg_)                                                          \
  {.op = "matmul", .label = label_, .n_in = 2, .in = {a_, b_}, .lo = -1, .hi = 1,             \
   .build = build_mm, .ctx = ctx_, .reference = ref_mm, .gradgrad = gg_}

static const op_case cases[] = {
    MM("2-D [3,4] @ [4,5]", S2(3, 4), S2(4, 5), &NN, true),
    MM("trans_a [4,3]^T @ [4,5]", S2(4, 3), S2(4, 5), &TN, false),
    MM("trans_b [3,4] @ [5,4]^T", S2(3, 4), S2(5, 4), &NT, false),
    MM("both transposed [4,3]^T @ [5,4]^T", S2(4, 3), S2(5, 4), &TT, true),
    MM("broadcast batch [2,1,3,4] @ [5,4,2]", S4(2, 1, 3, 4), S3(5, 4, 2), &NN, true),
    MM("broadcast batch, both transposed [3,4,2]^T @ [1,5,4]^T", S3(3, 4, 2),
       S3(1, 5, 4), &TT, false),
    MM("broadcast batch, trans_a [2,1,4,3]^T @ [3,4,2]", S4(2, 1, 4, 3), S3(3, 4, 2), &TN,
       true),
    MM("2-D @ batched [3,4] @ [2,4,2]", S2(3, 4), S3(2, 4, 2), &NN, false),
    MM("batched @ 2-D, trans_b [2,3,4] @ [5,4]^T", S3(2, 3, 4), S2(5, 4), &NT, false),
    MM("batch of one [1,3,4] @ [1,4,2]", S3(1, 3, 4), S3(1, 4, 2), &NN, false),
    MM("zero-sized batch [0,3,4] @ [4,2]", S3(0, 3, 4), S2(4, 2), &NN, false),
    MM("k = 1: outer product [3,1] @ [1,4]", S2(3, 1), S2(1, 4), &NN, false),
    MM("k = 0: zeros [2,0] @ [0,3]", S2(2, 0), S2(0, 3), &NN, false),
    MM("n = 0: an empty product [3,4] @ [4,0]", S2(3, 4), S2(4, 0), &NN, false),
    MM("rows of several batches [2,3,5,6] @ [6,7]", S4(2, 3, 5, 6), S2(6, 7), &NN, false),
    /* inner dimensions up to 16 without trans_b take a row loop, longer ones the GEMM */
    MM("a 1x1 conv's matrix over a batch [4,4] @ [3,4,40]", S2(4, 4), S3(3, 4, 40), &NN, false),
    MM("k = 20 (the GEMM) [3,20] @ [20,5]", S2(3, 20), S2(20, 5), &NN, true),
    MM("k = 20, trans_a, broadcast batch [2,1,20,3]^T @ [3,20,2]", S4(2, 1, 20, 3),
       S3(3, 20, 2), &TN, false),
    {.op = "matmul", .label = "fg_matmul builder [2,3] @ [3,2]", .n_in = 2,
     .in = {S2(2, 3), S2(3, 2)}, .lo = -1, .hi = 1, .build = build_mm_plain,
     .reference = ref_mm},
};

/* ---- rejects ---- */

static void two_inputs(fg_graph *g, fg_shape a, fg_dtype ta, fg_shape b, fg_dtype tb, bool tra,
                       bool trb) {
  fg_matmul_t(g, fg_input(g, "a", ta, a), fg_input(g, "b", tb, b), tra, trb);
}
static void bad_inner(fg_graph *g) {
  two_inputs(g, fg_shape2(3, 4), FG_F64, fg_shape2(5, 2), FG_F64, false, false);
}
static void bad_inner_transposed(fg_graph *g) {
  two_inputs(g, fg_shape2(3, 4), FG_F64, fg_shape2(4, 5), FG_F64, true, false);
}
static void bad_batch(fg_graph *g) {
  two_inputs(g, fg_shape3(2, 3, 4), FG_F64, fg_shape3(3, 4, 5), FG_F64, false, false);
}
static void bad_vector(fg_graph *g) {
  two_inputs(g, fg_shape1(4), FG_F64, fg_shape2(4, 2), FG_F64, false, false);
}
static void bad_dtypes(fg_graph *g) {
  two_inputs(g, fg_shape2(3, 4), FG_F32, fg_shape2(4, 2), FG_F64, false, false);
}

static const op_reject_case rejects[] = {
    {"matmul", "inner dims 4 vs 5", bad_inner, FG_E_SHAPE, "inner dims"},
    {"matmul", "inner dims under trans_a", bad_inner_transposed, FG_E_SHAPE, "inner dims"},
    {"matmul", "batch [2] vs [3]", bad_batch, FG_E_SHAPE, "to broadcast"},
    {"matmul", "1-D operand", bad_vector, FG_E_SHAPE, "at least 2-D"},
    {"matmul", "float32 @ float64", bad_dtypes, FG_E_DTYPE, "one dtype"},
};

const op_case_list op_cases_matmul = {
    .family = "matmul",
    .cases = cases,
    .n_cases = sizeof cases / sizeof *cases,
    .rejects = rejects,
    .n_rejects = sizeof rejects / sizeof *rejects,
};
