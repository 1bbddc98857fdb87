/* The op descriptor: everything about an op lives in one fg_op_def, defined once in its family
 * file under ops/ and listed once in core/ir/ops.def.  Adding an op = one descriptor + its
 * builder + one line in ops.def + its test cases (tests/op_cases_*.c). */
#ifndef FG_OP_H
#define FG_OP_H

#include <stdint.h>

#include "core/ir/graph.h"
#include "core/status.h"

/* The op enum, generated from core/ir/ops.def. */
enum fg_op_id {
#define FG_OP(ID, name) FG_OP_##ID,
#include "core/ir/ops.def"
#undef FG_OP
  FG_OP_COUNT
};

enum {
  FG_OPF_ELEMENTWISE = 1u << 0, /* output element i depends only on input elements i
                                    (after broadcasting): fusable */
  FG_OPF_INPLACE_OK = 1u << 1,  /* the output may overwrite input 0's buffer */
  FG_OPF_COMMUTATIVE = 1u << 2, /* inputs 0 and 1 may be swapped (CSE canonicalises) */
  FG_OPF_RANDOM = 1u << 3,      /* never merged or folded (random draws, collectives) */
  FG_OPF_NODIFF = 1u << 4,      /* output carries no gradient (comparisons, stop_gradient);
                                    vjp must be NULL */
  FG_OPF_LEAF = 1u << 5,        /* input / param / const: no kernel, value bound or stored */
  FG_OPF_VARIADIC = 1u << 6,    /* n_in is a minimum; any count >= it is accepted (concat) */
};

/* What a shape rule sees.  out_shape / out_dtype come pre-set to input 0's (or a 0-d F32 when
 * there are no inputs); the rule adjusts them or writes `why` (what was expected) and returns
 * an error status.  The graph prefixes `why` with the op name and the input shapes. */
typedef struct fg_infer_args {
  int n_in;
  const fg_shape *in_shape;
  const fg_dtype *in_dtype;
  const void *attr;
  fg_shape out_shape;
  fg_dtype out_dtype;
  char why[256];
} fg_infer_args;

/* What a kernel sees: contiguous row-major inputs and output.  A kernel computes its share
 * [ith of nth] of the output (split it by rows, batch or tiles; nth is 1 until the threaded
 * backend runs it) and returns FG_OK, or an error status with a message in `err` (e.g. an
 * exactly singular matrix). */
typedef struct fg_kargs {
  const void *attr;
  int n_in;
  const void *const *in;
  const fg_shape *in_shape;
  const fg_dtype *in_dtype; /* kernels are chosen by the output's dtype; cast reads these */
  void *out;
  fg_shape out_shape;
  int ith, nth;
  uint64_t rng_offset;   /* the program's per-run offset, for random ops */
  const fg_tensor *value; /* constants: the stored data */
  fg_err *err;
} fg_kargs;

typedef fg_status (*fg_kernel_fn)(const fg_kargs *k);

/* The share [*begin, *end) of n work items that part ith of nth computes: contiguous, in
 * order, every item exactly once, so results never depend on nth. */
static inline void fg_split_range(int64_t n, int ith, int nth, int64_t *begin, int64_t *end) {
  int64_t per = n / nth, extra = n % nth;
  *begin = per * ith + (ith < extra ? ith : extra);
  *end = *begin + per + (ith < extra ? 1 : 0);
}

typedef struct fg_op_def {
  const char *name;
  int n_in;                 /* exact arity, or minimum with FG_OPF_VARIADIC */
  uint32_t flags;           /* FG_OPF_* */
  uint32_t nondiff_inputs;  /* bit i: input i never receives a gradient (e.g. where's mask) */
  size_t attr_size;         /* sizeof the op's attribute struct, 0 for none */
  fg_status (*infer)(fg_infer_args *a);
  fg_kernel_fn kernel_f32, kernel_f64; /* both from one type-generic source */
  /* Vector-Jacobian product written with graph ops: given the gradient `gout` of the node's
   * output, set gin[i] (pre-set to FG_NONE, a symbolic zero) for each input i whose bit is set
   * in `need`.  gin[i] has either input i's shape or a shape input i broadcasts to (usually
   * the output's): autodiff sums it down to input i's shape, so broadcast reduction happens
   * once, centrally, not in every rule.  Returns the graph's status. */
  fg_status (*vjp)(fg_graph *g, fg_node node, fg_node gout, uint32_t need, fg_node *gin);
} fg_op_def;

/* The descriptor of op id `op`, or NULL outside 0..FG_OP_COUNT-1. */
const fg_op_def *fg_op_get(int op);
/* The op id named `name` ("matmul"), or -1. */
int fg_op_find(const char *name);

/* Descriptor symbols, defined in the family files. */
#define FG_OP(ID, name) extern const fg_op_def fg_opdef_##name;
#include "core/ir/ops.def"
#undef FG_OP

#endif
