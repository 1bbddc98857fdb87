/* The shape ops' kernels (ops/shape.c defines the ops).  None computes anything; each moves
 * elements, so each kernel is a walk over its share of the output, one load and one store per
 * element, so any split of the output gives the same bits:
 *  - reshape, permute, slice and broadcast_to are one strided gather (output axis i steps the
 *    input by stride[i]), differing only in how they make the strides;
 *  - pad fills with the constant and drops the input elements into place;
 *  - concat copies contiguous runs from each input in turn;
 *  - after is its first input, copied only when it cannot run in place. */
#include <string.h>

#include "ops/kernels/kernels.h"

/* ---- the strided gather shared by reshape, permute, slice and broadcast_to ---- */

typedef struct gather_plan {
  int ndim;                    /* >= 1 */
  int64_t d[FG_MAX_DIMS];      /* output shape */
  int64_t stride[FG_MAX_DIMS]; /* input step per unit of output axis i (0: broadcast) */
  int64_t base;                /* input offset of output element 0 */
} gather_plan;

static void gather_plan_init(gather_plan *p, const fg_shape *out) {
  memset(p, 0, sizeof *p);
  p->ndim = out->ndim;
  for (int i = 0; i < out->ndim; i++) p->d[i] = out->d[i];
}

/* Merges output axes that the input steps through as one (a contiguous pair), so that the
 * inner loop runs as long as possible; a 0-d output becomes [1]. */
static void gather_plan_simplify(gather_plan *p) {
  int n = 0;
  for (int i = 0; i < p->ndim; i++) {
    if (p->d[i] == 1) continue;
    if (n > 0 && p->stride[n - 1] == p->stride[i] * p->d[i]) {
      p->d[n - 1] *= p->d[i];
      p->stride[n - 1] = p->stride[i];
    } else {
      p->d[n] = p->d[i];
      p->stride[n++] = p->stride[i];
    }
  }
  if (n == 0) p->d[n] = 1, p->stride[n++] = 0;
  p->ndim = n;
}

/* Position of the walk over the output: its multi-index and the input offset there. */
typedef struct gather_cursor {
  int64_t idx[FG_MAX_DIMS];
  int64_t off;
} gather_cursor;

static void gather_cursor_start(gather_cursor *c, const gather_plan *p, int64_t flat) {
  c->off = p->base;
  for (int i = p->ndim - 1; i >= 0; i--) {
    c->idx[i] = flat % p->d[i];
    flat /= p->d[i];
    c->off += c->idx[i] * p->stride[i];
  }
}

/* Elements left on the current innermost row, at most `limit`. */
static int64_t gather_cursor_run(const gather_cursor *c, const gather_plan *p, int64_t limit) {
  int64_t left = p->d[p->ndim - 1] - c->idx[p->ndim - 1];
  return left < limit ? left : limit;
}

/* Moves `run` elements on along the innermost row, carrying into outer axes at its end. */
static void gather_cursor_skip(gather_cursor *c, const gather_plan *p, int64_t run) {
  int last = p->ndim - 1;
  c->idx[last] += run;
  c->off += run * p->stride[last];
  for (int i = last; i > 0 && c->idx[i] == p->d[i]; i--) {
    c->off += p->stride[i - 1] - c->idx[i] * p->stride[i];
    c->idx[i] = 0;
    c->idx[i - 1]++;
  }
}

/* The kernel's share of the output through plan p.  Each output element is one load and one
 * store, so any split of the output gives the same bits. */
#define DEFINE_GATHER(T, sfx)                                                              \
  static void gather_##sfx(const fg_kargs *k, const gather_plan *p) {                     \
    int64_t b, e;                                                                          \
    fg_split_range(fg_shape_count(&k->out_shape), k->ith, k->nth, &b, &e);                 \
    if (b >= e) return;                                                                    \
    const T *in = k->in[0];                                                                \
    T *out = k->out;                                                                       \
    gather_cursor c;                                                                       \
    gather_cursor_start(&c, p, b);                                                         \
    for (int64_t o = b; o < e;) {                                                          \
      int64_t run = gather_cursor_run(&c, p, e - o), s = p->stride[p->ndim - 1];           \
      const T *src = in + c.off;                                                           \
      if (s == 1) /* a contiguous run (reshape, a slice's rows): the library's copy */     \
        memcpy(out + o, src, sizeof(T) * (size_t)run);                                     \
      else                                                                                 \
        for (int64_t j = 0; j < run; j++) out[o + j] = src[j * s];                         \
      o += run;                                                                            \
      gather_cursor_skip(&c, p, run);                                                      \
    }                                                                                      \
  }
DEFINE_GATHER(float, f32)
DEFINE_GATHER(double, f64)

/* Kernels op##_f32 / op##_f64 that gather through the plan op##_plan(k, &plan) makes. */
#define DEFINE_GATHER_KERNEL(op, sfx)                                                      \
  fg_status fg_kernel_##op##_##sfx(const fg_kargs *k) {                                    \
    gather_plan p;                                                                         \
    op##_plan(k, &p);                                                                      \
    gather_plan_simplify(&p);                                                              \
    gather_##sfx(k, &p);                                                                   \
    return FG_OK;                                                                          \
  }
#define DEFINE_GATHER_KERNELS(op) DEFINE_GATHER_KERNEL(op, f32) DEFINE_GATHER_KERNEL(op, f64)

/* ---- the gathers' plans ---- */

/* Row-major order is unchanged: a flat copy. */
static void reshape_plan(const fg_kargs *k, gather_plan *p) {
  fg_shape flat = fg_shape1(fg_shape_count(&k->out_shape));
  gather_plan_init(p, &flat);
  p->stride[0] = 1;
}
DEFINE_GATHER_KERNELS(reshape)

static void permute_plan(const fg_kargs *k, gather_plan *p) {
  const fg_permute_attr *at = k->attr;
  int64_t in_stride[FG_MAX_DIMS];
  fg_shape_strides(&k->in_shape[0], in_stride);
  gather_plan_init(p, &k->out_shape);
  for (int i = 0; i < p->ndim; i++) p->stride[i] = in_stride[at->perm[i]];
}
DEFINE_GATHER_KERNELS(permute)

static void slice_plan(const fg_kargs *k, gather_plan *p) {
  const fg_slice_attr *at = k->attr;
  int64_t in_stride[FG_MAX_DIMS];
  fg_shape_strides(&k->in_shape[0], in_stride);
  gather_plan_init(p, &k->out_shape);
  for (int i = 0; i < p->ndim; i++) {
    p->stride[i] = in_stride[i] * at->step[i];
    p->base += in_stride[i] * at->start[i];
  }
}
DEFINE_GATHER_KERNELS(slice)

static void broadcast_to_plan(const fg_kargs *k, gather_plan *p) {
  gather_plan_init(p, &k->out_shape);
  fg_shape_broadcast_strides(&k->in_shape[0], &k->out_shape, p->stride);
}
DEFINE_GATHER_KERNELS(broadcast_to)

/* ---- pad ---- */

/* Output axis i holds input element t at lo[i] + t * step[i] (step = interior + 1). */
typedef struct pad_plan {
  int ndim; /* >= 1 */
  int64_t out_d[FG_MAX_DIMS], in_d[FG_MAX_DIMS], in_s[FG_MAX_DIMS];
  int64_t lo[FG_MAX_DIMS], step[FG_MAX_DIMS];
} pad_plan;

static void pad_plan_make(const fg_kargs *k, pad_plan *p) {
  const fg_pad_attr *at = k->attr;
  const fg_shape *in = &k->in_shape[0];
  memset(p, 0, sizeof *p);
  fg_shape_strides(in, p->in_s);
  p->ndim = in->ndim;
  for (int i = 0; i < in->ndim; i++) {
    p->out_d[i] = k->out_shape.d[i];
    p->in_d[i] = in->d[i];
    p->lo[i] = at->lo[i];
    p->step[i] = at->interior[i] + 1;
  }
  if (p->ndim == 0) { /* a 0-d pad is a copy: walk it as one row of one element */
    p->ndim = 1;
    p->out_d[0] = p->in_d[0] = p->step[0] = 1;
  }
  /* An unpadded last axis joins the one before it when that one has no interior padding: the
   * kernel then works in rows of both (Glow's channel pads of [64, 2, 14, 14]: 64 rows of 784
   * instead of 3,584 rows of 14, each paying the row's index arithmetic). */
  while (p->ndim >= 2) {
    int l = p->ndim - 1;
    if (p->lo[l] != 0 || p->step[l] != 1 || p->out_d[l] != p->in_d[l] || p->step[l - 1] != 1)
      break;
    p->lo[l - 1] *= p->out_d[l];
    p->out_d[l - 1] *= p->out_d[l];
    p->in_d[l - 1] *= p->in_d[l];
    p->in_s[l - 1] = p->in_s[l];
    p->ndim--;
  }
}

/* Input offset of output row `row` (every axis but the last), or -1 when the row lies in
 * padding. */
static int64_t pad_row_source(const pad_plan *p, int64_t row) {
  int64_t off = 0;
  for (int i = p->ndim - 2; i >= 0; i--) {
    int64_t t = row % p->out_d[i] - p->lo[i];
    row /= p->out_d[i];
    if (t < 0 || t % p->step[i] != 0 || t / p->step[i] >= p->in_d[i]) return -1;
    off += t / p->step[i] * p->in_s[i];
  }
  return off;
}

/* First input element of the last axis that lands at or after output column c. */
static int64_t pad_first_element(const pad_plan *p, int64_t c) {
  int last = p->ndim - 1;
  if (c <= p->lo[last]) return 0;
  return (c - p->lo[last] + p->step[last] - 1) / p->step[last];
}

/* Row by row over the share: fill with the constant, then place the input elements. */
#define DEFINE_PAD_KERNEL(T, sfx)                                                          \
  fg_status fg_kernel_pad_##sfx(const fg_kargs *k) {                                       \
    const fg_pad_attr *at = k->attr;                                                       \
    pad_plan p;                                                                            \
    pad_plan_make(k, &p);                                                                  \
    int64_t b, e;                                                                          \
    fg_split_range(fg_shape_count(&k->out_shape), k->ith, k->nth, &b, &e);                 \
    const T *in = k->in[0];                                                                \
    T *out = k->out, value = (T)at->value;                                                 \
    int last = p.ndim - 1;                                                                 \
    int64_t w = p.out_d[last], lo = p.lo[last], step = p.step[last], n = p.in_d[last];     \
    for (int64_t o = b; o < e;) {                                                          \
      int64_t row = o / w, c0 = o % w, c1 = c0 + (e - o) < w ? c0 + (e - o) : w;           \
      T *dst = out + row * w;                                                              \
      for (int64_t c = c0; c < c1; c++) dst[c] = value;                                    \
      int64_t src = pad_row_source(&p, row);                                               \
      if (src >= 0)                                                                        \
        for (int64_t t = pad_first_element(&p, c0); t < n && lo + t * step < c1; t++)      \
          dst[lo + t * step] = in[src + t];                                                \
      o += c1 - c0;                                                                        \
    }                                                                                      \
    return FG_OK;                                                                          \
  }
DEFINE_PAD_KERNEL(float, f32)
DEFINE_PAD_KERNEL(double, f64)

/* ---- concat ---- */

/* Elements of input i in one output row: its extent on the axis times the inner size. */
static int64_t concat_segment(const fg_kargs *k, int i, int axis, int64_t inner) {
  return k->in_shape[i].d[axis] * inner;
}

/* The output, row by row (a row = everything from the axis inward), is the inputs' rows one
 * after another; the share is copied as contiguous runs, so it is bit-exact for any split. */
static fg_status concat_copy(const fg_kargs *k, size_t elem) {
  const fg_concat_attr *at = k->attr;
  int axis = at->axis;
  int64_t inner = 1, b, e;
  for (int i = axis + 1; i < k->out_shape.ndim; i++) inner *= k->out_shape.d[i];
  fg_split_range(fg_shape_count(&k->out_shape), k->ith, k->nth, &b, &e);
  if (b >= e) return FG_OK;
  int64_t row_len = k->out_shape.d[axis] * inner, row = b / row_len, col = b % row_len;
  int i = 0;
  for (; col >= concat_segment(k, i, axis, inner); i++) col -= concat_segment(k, i, axis, inner);
  char *out = k->out;
  for (int64_t o = b; o < e;) {
    int64_t seg = concat_segment(k, i, axis, inner), run = seg - col;
    if (run > e - o) run = e - o;
    const char *src = (const char *)k->in[i] + (size_t)(row * seg + col) * elem;
    memcpy(out + (size_t)o * elem, src, (size_t)run * elem);
    o += run;
    col += run;
    /* next non-empty input, wrapping to the next row */
    while (o < e && col == concat_segment(k, i, axis, inner)) {
      col = 0;
      if (++i == k->n_in) i = 0, row++;
    }
  }
  return FG_OK;
}

fg_status fg_kernel_concat_f32(const fg_kargs *k) { return concat_copy(k, sizeof(float)); }
fg_status fg_kernel_concat_f64(const fg_kargs *k) { return concat_copy(k, sizeof(double)); }

/* ---- after ---- */

/* out = in[0]; in[1] is only waited for.  In place (out == in[0]) there is nothing to move. */
static fg_status after_copy(const fg_kargs *k, size_t elem) {
  int64_t b, e;
  fg_split_range(fg_shape_count(&k->out_shape), k->ith, k->nth, &b, &e);
  if (k->out != k->in[0] && e > b)
    memcpy((char *)k->out + (size_t)b * elem, (const char *)k->in[0] + (size_t)b * elem,
           (size_t)(e - b) * elem);
  return FG_OK;
}
fg_status fg_kernel_after_f32(const fg_kargs *k) { return after_copy(k, sizeof(float)); }
fg_status fg_kernel_after_f64(const fg_kargs *k) { return after_copy(k, sizeof(double)); }
