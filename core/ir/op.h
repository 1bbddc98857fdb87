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
  FG_OPF_COSTLY = 1u << 7,      /* elementwise with a libm call per element (exp, log, tanh):
                                    tens of ns each, so split over threads at fewer elements */
  FG_OPF_SPLIT_FREE = 1u << 8,  /* each output element is computed the same way whatever the
                                    split, and a part reads its outputs' inputs in blocks strided
                                    by the other parts' (a reduction over outer axes): split
                                    among as many parts as threads, not more */
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

/* Layouts.  A value is stored row-major, or, when the program's layout plan
 * (core/runtime/layout_plan.c) keeps it in oneDNN's blocked layout between kernels that take
 * it so, as nChw16c: a float32 [N, C, H, W] with C a multiple of 16 stored as
 * [N, C/16, H, W, 16], the same bytes in another order.  Bit k of `blocked` says input k is
 * given so, FG_BLOCKED_OUT that the output is to be written so; only kernels that declared
 * they take that operand blocked (fg_kprep.blocked_ok), and elementwise kernels whose
 * operands all share one shape (where the order does not matter), ever see one. */
#define FG_BLOCKED_OUT (1u << 31)

/* What a kernel sees: contiguous row-major inputs and output.  A kernel computes its share
 * [ith of nth] of the output (split it by rows, batch or tiles; nth is 1 until the threaded
 * backend runs it) and returns FG_OK, or an error status with a message in `err` (e.g. an
 * exactly singular matrix).  An alternative implementation (fg_kernel_impl below) also gets
 * the state its prepare made, its scratch memory and the phase being run. */
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
  void *state;   /* fg_kernel_impl: what its prepare made (NULL for the descriptor's kernels) */
  void *scratch; /* fg_kernel_impl: scratch_bytes for this run, 64-byte aligned, else NULL */
  int phase;     /* fg_kernel_impl: which of its phases runs (0 for single-phase kernels) */
  uint32_t blocked; /* operands in the blocked layout (see Layouts above); 0 nearly always */
  int outer_parts;  /* a kernel run by another on its share (conv2d_chain's convs of a group):
                       how many of the outer kernel's parts run at once, so that a BLAS under
                       it does not start threads of its own (ops/kernels/gemm.c); 0: none */
} fg_kargs;

typedef fg_status (*fg_kernel_fn)(const fg_kargs *k);

/* Phases a kernel implementation may split a run into (fg_kprep.n_phases). */
#define FG_KERNEL_MAX_PHASES 4

/* What an implementation's prepare sees of one node, and what it answers.  The inputs come
 * pre-set; the answers come pre-set to the descriptor kernels' way of running: one phase of
 * parts[0] parts (the executor's split, which depends only on the shapes) and no scratch. */
typedef struct fg_kprep {
  int op; /* enum fg_op_id */
  const void *attr;
  int n_in;
  const fg_shape *in_shape;
  const fg_dtype *in_dtype;
  fg_shape out_shape;
  fg_dtype out_dtype;
  uint32_t blocked;                 /* operands given / wanted in the blocked layout */
  /* answers */
  int n_phases;                     /* phases run one after another, each over all its parts */
  int parts[FG_KERNEL_MAX_PHASES];  /* parts of each phase (1..FG_POOL_MAX_FIXED_PARTS): never
                                       dependent on the thread count, so results are not */
  size_t scratch_bytes;             /* memory every run needs (from the program's memory plan) */
  char info[96];                    /* what runs, for benchmarks ("jit:avx512_core ...") */
  bool as_native;                   /* it computes the node exactly as the descriptor's kernels
                                       would (same algorithm, same parts): timing need not
                                       tell them apart */
  uint32_t blocked_ok;              /* operands it takes or gives in the blocked layout with no
                                       reorder (bits as `blocked`): the layout plan's offer */
  uint32_t blocked_tied;            /* inputs among those it takes blocked exactly when its
                                       output is written so (read elementwise with it) */
} fg_kprep;

/* An alternative way to compute an op (a kernel library, one of several native algorithms).
 * When an op lists some, the program picks one per node when it is compiled, by measurement
 * or as FG_KERNELS says (core/runtime/kernel_choice.c); its state lives as long as the program.
 * Constant folding and programs told to use "native" kernels run the descriptor's own. */
typedef struct fg_kernel_impl {
  const char *name; /* as FG_KERNELS names it: "onednn", "direct", ... */
  /* Whether it computes this node, and its state (*state may stay NULL).  Any failure means
   * "not for this node" (with the reason in e): the program then uses another implementation.
   * NULL: it computes every node of the op, with no state. */
  fg_status (*prepare)(fg_kprep *a, void **state, fg_err *e);
  void (*release)(void *state); /* NULL when prepare makes no state */
  fg_kernel_fn kernel_f32, kernel_f64; /* NULL for a dtype it does not compute */
} fg_kernel_impl;

/* The share [*begin, *end) of n work items that part ith of nth computes: contiguous, in
 * order, every item exactly once, so results never depend on nth. */
static inline void fg_split_range(int64_t n, int ith, int nth, int64_t *begin, int64_t *end) {
  int64_t per = n / nth, extra = n % nth;
  *begin = per * ith + (ith < extra ? ith : extra);
  *end = *begin + per + (ith < extra ? 1 : 0);
}

/* The kernel libraries this build calls and the code paths they chose on this CPU ("oneDNN
 * 2.6.3, ISA ...; OpenBLAS ..., core Haswell"), into buf.  Defined with the kernels
 * (ops/kernels/gemm.c; users find it in ops/kernel_info.h); declared here too because the kernel
 * cache (core/runtime/kernel_cache.c) keys its file by it: timed choices depend on it. */
const char *fg_kernel_libraries(char *buf, size_t cap);

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
  /* Alternative implementations (NULL, 0: the descriptor's kernels only). */
  const fg_kernel_impl *impls;
  int n_impls;
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
