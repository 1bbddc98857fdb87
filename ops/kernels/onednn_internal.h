/* Internal to ops/kernels/onednn*.c: how oneDNN primitives run inside flowgrad's programs
 * (onednn.c), shared by the convolutions (onednn_conv.c) and the matmul (onednn_matmul.c).
 * Only these files call oneDNN (the 2.x C API Debian 12 ships), so a move to another oneDNN
 * API stays among them.
 *
 * A prepared node is a state: per phase of a run, jobs (one per part), each a list of
 * primitive runs (reorders in, the primitive, reorders out) over memory objects ("slots") that
 * point into the node's inputs, its output or its scratch, re-pointed only when those move.
 * A builder makes a state; its first failure is kept and later calls do nothing. */
#ifndef FG_OPS_ONEDNN_INTERNAL_H
#define FG_OPS_ONEDNN_INTERNAL_H

#include <oneapi/dnnl/dnnl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/ir/op.h"

enum {
  JOB_SLOTS = 12,
  JOB_EXECS = 6,
  EXEC_ARGS = 5,
  ALIGN = 64,
};

enum { FROM_IN0, FROM_IN1, FROM_IN2, FROM_OUT, FROM_SCRATCH };
#define PAD_PENDING ((size_t)-1) /* a scratchpad slot placed when its job is complete */

typedef struct slot {
  dnnl_memory_t mem;
  int from;    /* FROM_*: what its offset is from */
  size_t off;  /* bytes */
  void *bound; /* where mem points now */
} slot;

typedef struct exec {
  dnnl_primitive_t prim; /* owned by the state */
  int n_args;
  int arg[EXEC_ARGS], slot[EXEC_ARGS];
} exec;

typedef struct job {
  dnnl_stream_t stream;
  int n_slots, n_execs;
  slot slots[JOB_SLOTS];
  exec execs[JOB_EXECS];
  size_t pad_bytes; /* the largest scratchpad of its primitives */
} job;

/* What each phase of a run does. */
enum { PH_WEIGHTS, PH_MAIN, PH_SUM, PH_MASK };

typedef struct state {
  int n_phases, phase_of[FG_KERNEL_MAX_PHASES];
  int n_jobs, n_wjobs; /* PH_MAIN: one job per part; PH_WEIGHTS: one per batch size */
  job *jobs, wjobs[2];
  size_t w_elems, partials_off; /* PH_SUM: weight-gradient elements and where partials are */
  int sum_parts;
  int64_t n_prims, cap_prims;
  dnnl_primitive_t *prims; /* every primitive its jobs run, owned */
} state;

/* Making a state: the first failure is kept, later calls do nothing. */
typedef struct builder {
  state *s;
  dnnl_status_t st;
  size_t scratch; /* bytes of scratch handed out so far */
} builder;

dnnl_engine_t fg_dnn_engine(void);
/* Sets the calling thread's OpenMP thread count to 1 (oneDNN then runs inline) and returns the
 * previous one, for fg_dnn_threads_restore. */
int fg_dnn_threads_one(void);
void fg_dnn_threads_restore(int n);
bool fg_dnn_ok(builder *b, dnnl_status_t st);
size_t fg_dnn_scratch_take(builder *b, size_t bytes);
int fg_dnn_slot_new(builder *b, job *j, const dnnl_memory_desc_t *md, int from, size_t off);
dnnl_primitive_attr_t fg_dnn_scratchpad_attr(builder *b);
/* Adds a run of pd's primitive to j with these arguments, and its scratchpad. */
void fg_dnn_exec_add(builder *b, job *j, const_dnnl_primitive_desc_t pd, int n, const int *args,
                     const int *slots);
/* A reorder between two slots of j. */
void fg_dnn_reorder_add(builder *b, job *j, int from, int to);
/* The slot a primitive gets for an operand in `user` memory of layout user_md: that memory when
 * it chose the same layout, else scratch in its layout (*user_slot is then the user memory's
 * slot, for the reorder the caller adds; -1 otherwise). */
int fg_dnn_operand(builder *b, job *j, const dnnl_memory_desc_t *user_md,
                   const dnnl_memory_desc_t *chosen, int from, size_t off, int *user_slot);
int fg_dnn_input(builder *b, job *j, const dnnl_memory_desc_t *user_md,
                 const dnnl_memory_desc_t *chosen, int from, size_t off);
/* Places j's scratchpad slots in one range of scratch, and makes its stream. */
void fg_dnn_job_finish(builder *b, job *j);
state *fg_dnn_state_new(int n_jobs);
/* Ends a prepare: the state and its scratch on success, else everything freed and why. */
fg_status fg_dnn_prepare_end(builder *b, fg_kprep *a, void **out, int saved_threads,
                             const char *what, fg_err *e);
/* Part p of n items in `parts` parts: the larger ones first, two sizes at most (set 0 and 1). */
void fg_dnn_part_range(int64_t n, int parts, int p, int64_t *first, int64_t *count, int *set);
int fg_dnn_parts_for(int given, int64_t items, int64_t cap);
/* "jit:avx512_core abcd>aBcd16b": the implementation, its activation input's and output's
 * layouts. */
void fg_dnn_describe_pd(const_dnnl_primitive_desc_t pd, const dnnl_memory_desc_t *in,
                        const dnnl_memory_desc_t *out, fg_kprep *a);

#endif
