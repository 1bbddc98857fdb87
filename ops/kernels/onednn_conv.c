/* oneDNN's convolution primitives behind conv2d, conv2d_bias_act and their input and weight
 * gradients (ops/kernels/onednn.h), as jobs of the shared runner (onednn_internal.h): forward
 * and input gradient split by batch parts, weight gradient (and conv2d_weight_bias_grad's bias,
 * the primitive's diff_bias, placed after the weights) as per-part partial gradients summed
 * in part order; activations in the layout the primitive chose, reordered from and to NCHW or
 * the blocked layout the program keeps (fg_kprep.blocked), weights reordered once per run. */
#include "ops/kernels/onednn.h"

#include <math.h>
#include <oneapi/dnnl/dnnl.h>
#include <stdio.h>
#include <string.h>

#include "ops/kernels/conv_internal.h"
#include "ops/kernels/onednn_internal.h"

enum {
  CONV_MAX_PARTS = 16, /* forward and input gradient: parts of the batch */
  WGRAD_MAX_PARTS = 4, /* weight gradient: each part adds a partial gradient to sum */
  WINO_MAX_PARTS = 4,  /* Winograd's: 16 images a part at batch 64 (at 4 a part, as direct
                          convs take, its tile transforms cost more than they save: RealNVP's
                          64- and 128-channel convs at 14x14 then timed slower than direct on
                          "Intel(R) Xeon(R) Processor", 2 cores) */
  SUM_MIN_ELEMS = 16384, /* per part of the weight gradient's sum */
};
/* conv2d_input_grad_relu's y, input 2, as a bit of fg_kprep.blocked and blocked_ok */
#define MASKED_Y (1u << 2)

static void dims4(dnnl_dims_t d, int64_t a, int64_t b, int64_t c, int64_t e) {
  d[0] = a, d[1] = b, d[2] = c, d[3] = e;
}

/* Memory descriptors of a conv with batch nb: x, w, y in NCHW / OIHW or any; the bias as
 * [1, O, 1, 1] (added by a post-op), or as [O] where the primitive adds it itself (Winograd's,
 * which takes no binary post-op).  x or y may be in the blocked layout nChw16c instead of
 * NCHW (xb, yb: the program keeps that value blocked, fg_kargs.blocked). */
typedef struct conv_mds {
  dnnl_memory_desc_t x, w, b, y;
  dnnl_memory_desc_t db; /* a bias gradient: [O] */
} conv_mds;

static void conv_mds_init(builder *b, conv_mds *m, const conv_geom *g, int64_t nb, bool any,
                          bool xb, bool yb, bool wino) {
  dnnl_dims_t x, w, y, bias = {1, g->o, 1, 1}, bias1 = {g->o};
  fg_dnn_ok(b, dnnl_memory_desc_init_by_tag(&m->db, 1, bias1, dnnl_f32, dnnl_x));
  dims4(x, nb, g->c, g->h, g->w), dims4(w, g->o, g->c, g->kh, g->kw);
  dims4(y, nb, g->o, g->ho, g->wo);
  dnnl_format_tag_t xt = any ? dnnl_format_tag_any : xb ? dnnl_aBcd16b : dnnl_nchw;
  dnnl_format_tag_t yt = any ? dnnl_format_tag_any : yb ? dnnl_aBcd16b : dnnl_nchw;
  fg_dnn_ok(b, dnnl_memory_desc_init_by_tag(&m->x, 4, x, dnnl_f32, xt));
  fg_dnn_ok(b, dnnl_memory_desc_init_by_tag(&m->w, 4, w, dnnl_f32,
                                            any ? dnnl_format_tag_any : dnnl_oihw));
  fg_dnn_ok(b, dnnl_memory_desc_init_by_tag(&m->y, 4, y, dnnl_f32, yt));
  fg_dnn_ok(b, wino ? dnnl_memory_desc_init_by_tag(&m->b, 1, bias1, dnnl_f32, dnnl_x)
                    : dnnl_memory_desc_init_by_tag(&m->b, 4, bias, dnnl_f32, dnnl_nchw));
}

/* conv2d_bias_act's epilogue as post-ops after the accumulation: + bias, then max(x, 0) as a
 * clip to [0, inf], which rounds and treats -0 and NaN as the separate add and relu kernels do
 * (bit-identical, so the epilogue pass stays exact).  Winograd's primitive takes neither a
 * binary post-op nor the clip: it adds the bias itself (conv_pd) and takes relu with alpha 0
 * (a negative sum gives +0 with it too: checked on the primitive itself). */
static void epilogue_attr(builder *b, dnnl_primitive_attr_t attr, const conv_mds *m, bool relu,
                          bool wino) {
  dnnl_post_ops_t po = NULL;
  if (!fg_dnn_ok(b, dnnl_post_ops_create(&po))) return;
  if (!wino) fg_dnn_ok(b, dnnl_post_ops_append_binary(po, dnnl_binary_add, &m->b));
  if (relu)
    fg_dnn_ok(b, wino ? dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_relu, 0.0f, 0.0f)
                      : dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_clip, 0.0f,
                                                     INFINITY));
  if (b->st == dnnl_success) fg_dnn_ok(b, dnnl_primitive_attr_set_post_ops(attr, po));
  dnnl_post_ops_destroy(po);
}

/* What a conv prepare knows while it builds. */
typedef struct conv_build {
  conv_geom g;
  conv_kind kind;
  bool bias, relu;
  bool bias_grad;              /* conv2d_weight_bias_grad: diff_bias too */
  bool wino;                   /* Winograd's algorithm, not the direct one */
  dnnl_primitive_desc_t pd[2]; /* per batch size */
  conv_mds user[2];            /* NCHW / OIHW per batch size */
  size_t wbuf[2];              /* scratch offset of the weights in the layout of set s */
  bool wreorder[2];
} conv_build;

/* The primitive descriptor of c's conv at batch nb (NULL after a failure, or where the
 * algorithm does not serve the shape: Winograd's only 3x3 kernels at stride 1 on the ISAs
 * oneDNN has it for). */
static dnnl_primitive_desc_t conv_pd(builder *b, const conv_build *c, int64_t nb, bool any) {
  const conv_geom *g = &c->g;
  conv_kind kind = c->kind;
  conv_mds m;
  conv_mds_init(b, &m, g, nb, any, false, false, c->wino);
  dnnl_dims_t strides = {g->sh, g->sw}, dil = {g->dh - 1, g->dw - 1}, pl = {g->ph, g->pw};
  dnnl_dims_t pr = {(g->ho - 1) * g->sh + (g->kh - 1) * g->dh + 1 - g->h - g->ph,
                    (g->wo - 1) * g->sw + (g->kw - 1) * g->dw + 1 - g->w - g->pw};
  dnnl_convolution_desc_t fwd, cd;
  dnnl_primitive_attr_t attr = fg_dnn_scratchpad_attr(b);
  dnnl_primitive_desc_t hint = NULL, pd = NULL;
  dnnl_alg_kind_t alg = c->wino ? dnnl_convolution_winograd : dnnl_convolution_direct;
  const dnnl_memory_desc_t *own_bias = c->wino && c->bias && kind == CONV_FORWARD ? &m.b
                                       : c->bias_grad                           ? &m.db
                                                                                : NULL;
  fg_dnn_ok(b, dnnl_dilated_convolution_forward_desc_init(&fwd, dnnl_forward_training, alg, &m.x,
                                                          &m.w, own_bias, &m.y, strides, dil, pl,
                                                          pr));
  if (kind == CONV_FORWARD && c->bias) epilogue_attr(b, attr, &m, c->relu, c->wino);
  if (kind == CONV_FORWARD) {
    if (b->st == dnnl_success)
      fg_dnn_ok(b, dnnl_primitive_desc_create(&pd, &fwd, attr, fg_dnn_engine(), NULL));
  } else if (b->st == dnnl_success &&
             fg_dnn_ok(b, dnnl_primitive_desc_create(&hint, &fwd, NULL, fg_dnn_engine(), NULL))) {
    if (kind == CONV_INPUT_GRAD)
      fg_dnn_ok(b, dnnl_dilated_convolution_backward_data_desc_init(&cd, alg, &m.x, &m.w, &m.y,
                                                                    strides, dil, pl, pr));
    else
      fg_dnn_ok(b, dnnl_dilated_convolution_backward_weights_desc_init(&cd, alg, &m.x, &m.w,
                                                                       own_bias, &m.y, strides,
                                                                       dil, pl, pr));
    if (b->st == dnnl_success)
      fg_dnn_ok(b, dnnl_primitive_desc_create(&pd, &cd, attr, fg_dnn_engine(), hint));
  }
  dnnl_primitive_desc_destroy(hint);
  dnnl_primitive_attr_destroy(attr);
  return b->st == dnnl_success ? pd : NULL;
}

/* The mds a conv's primitive chose: its activation input (x or dy), weights, and output. */
typedef struct conv_chosen {
  const dnnl_memory_desc_t *in, *w, *in2, *out;
  const dnnl_memory_desc_t *db; /* a weight gradient's diff_bias */
} conv_chosen;

static conv_chosen chosen_of(const_dnnl_primitive_desc_t pd, conv_kind kind) {
  conv_chosen c = {0};
  switch (kind) {
  case CONV_FORWARD:
    c.in = dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0);
    c.w = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    c.out = dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0);
    break;
  case CONV_INPUT_GRAD:
    c.in = dnnl_primitive_desc_query_md(pd, dnnl_query_diff_dst_md, 0);
    c.w = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    c.out = dnnl_primitive_desc_query_md(pd, dnnl_query_diff_src_md, 0);
    break;
  default:
    c.in = dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0);
    c.in2 = dnnl_primitive_desc_query_md(pd, dnnl_query_diff_dst_md, 0);
    c.out = dnnl_primitive_desc_query_md(pd, dnnl_query_diff_weights_md, 0);
    c.db = dnnl_primitive_desc_query_md(pd, dnnl_query_diff_weights_md, 1);
    break;
  }
  return c;
}

/* Set s's weights job: user weights reordered into the layout its primitive chose. */
static void weights_job(builder *b, conv_build *c, int s) {
  job *j = &b->s->wjobs[s];
  conv_chosen ch = chosen_of(c->pd[s], c->kind);
  c->wreorder[s] = !dnnl_memory_desc_equal(&c->user[s].w, ch.w);
  if (c->wreorder[s]) {
    c->wbuf[s] = fg_dnn_scratch_take(b, dnnl_memory_desc_get_size(ch.w));
    int from = fg_dnn_slot_new(b, j, &c->user[s].w, FROM_IN1, 0);
    fg_dnn_reorder_add(b, j, from, fg_dnn_slot_new(b, j, ch.w, FROM_SCRATCH, c->wbuf[s]));
  }
  fg_dnn_job_finish(b, j);
}

/* Part p's job: batch n0 .. n0 + nb of its set s. */
static void conv_part(builder *b, conv_build *c, job *j, int p, int64_t n0, int s) {
  const conv_geom *g = &c->g;
  conv_chosen ch = chosen_of(c->pd[s], c->kind);
  const conv_mds *u = &c->user[s];
  size_t xo = (size_t)(n0 * g->c * g->h * g->w) * 4, yo = (size_t)(n0 * g->o * g->ho * g->wo) * 4;
  int out_user, out, db_user = -1, db = -1, args[5], slots[5], n = 0;
  if (c->kind == CONV_WEIGHT_GRAD) {
    slots[n] = fg_dnn_input(b, j, &u->x, ch.in, FROM_IN0, xo), args[n++] = DNNL_ARG_SRC;
    slots[n] = fg_dnn_input(b, j, &u->y, ch.in2, FROM_IN1, yo), args[n++] = DNNL_ARG_DIFF_DST;
    size_t at = p == 0 ? 0 : b->s->partials_off + (size_t)(p - 1) * b->s->w_elems * 4;
    int where = p == 0 ? FROM_OUT : FROM_SCRATCH;
    if (c->bias_grad) { /* after the weights, in the output or in the part's partial */
      size_t nw = (size_t)(g->o * g->c * g->kh * g->kw);
      db = fg_dnn_operand(b, j, &u->db, ch.db, where, at + nw * 4, &db_user);
      slots[n] = db, args[n++] = DNNL_ARG_DIFF_BIAS;
    }
    out = fg_dnn_operand(b, j, &u->w, ch.out, where, at, &out_user);
    args[n] = DNNL_ARG_DIFF_WEIGHTS;
  } else {
    bool fwd = c->kind == CONV_FORWARD;
    slots[n] = fg_dnn_input(b, j, fwd ? &u->x : &u->y, ch.in, FROM_IN0, fwd ? xo : yo);
    args[n++] = fwd ? DNNL_ARG_SRC : DNNL_ARG_DIFF_DST;
    slots[n] = c->wreorder[s] ? fg_dnn_slot_new(b, j, ch.w, FROM_SCRATCH, c->wbuf[s])
                              : fg_dnn_slot_new(b, j, &u->w, FROM_IN1, 0);
    args[n++] = DNNL_ARG_WEIGHTS;
    if (c->bias) {
      slots[n] = fg_dnn_slot_new(b, j, &u->b, FROM_IN2, 0);
      args[n++] = c->wino ? DNNL_ARG_BIAS : DNNL_ARG_ATTR_MULTIPLE_POST_OP(0) | DNNL_ARG_SRC_1;
    }
    out = fg_dnn_operand(b, j, fwd ? &u->y : &u->x, ch.out, FROM_OUT, fwd ? yo : xo, &out_user);
    args[n] = fwd ? DNNL_ARG_DST : DNNL_ARG_DIFF_SRC;
  }
  slots[n++] = out;
  fg_dnn_exec_add(b, j, c->pd[s], n, args, slots);
  if (out_user >= 0) fg_dnn_reorder_add(b, j, out, out_user);
  if (db_user >= 0) fg_dnn_reorder_add(b, j, db, db_user);
  fg_dnn_job_finish(b, j);
}

/* The activations a program may hand this conv in the blocked layout nChw16c, or have it
 * write so (fg_kprep.blocked_ok): those with channels a multiple of 16, when the primitive
 * chooses its layouts.  Where it chose nChw16c too, no reorder runs; where it chose another
 * (plain NCHW for 2 or 4 input channels, 8-channel blocks for some weight gradients), it
 * reorders from or to nChw16c instead of NCHW, at the same cost. */
static uint32_t blocked_ok_of(const conv_geom *g, conv_kind kind) {
  bool x = g->c % 16 == 0, y = g->o % 16 == 0;
  switch (kind) {
  case CONV_FORWARD: return (x ? 1u : 0) | (y ? FG_BLOCKED_OUT : 0);      /* x -> y */
  case CONV_INPUT_GRAD: return (y ? 1u : 0) | (x ? FG_BLOCKED_OUT : 0);   /* dy -> dx */
  default: return (x ? 1u : 0) | (y ? 2u : 0);                            /* x, dy -> dw */
  }
}

/* Which of x and y the program gives or wants blocked (fg_kprep.blocked, by operand). */
static void blocked_xy(uint32_t blocked, conv_kind kind, bool *xb, bool *yb) {
  switch (kind) {
  case CONV_FORWARD: *xb = blocked & 1u, *yb = blocked & FG_BLOCKED_OUT; break;
  case CONV_INPUT_GRAD: *yb = blocked & 1u, *xb = blocked & FG_BLOCKED_OUT; break;
  default: *xb = blocked & 1u, *yb = blocked & 2u; break;
  }
}

static fg_status conv_prepare(fg_kprep *a, void **out, bool any, bool wino, fg_err *e) {
  conv_build c = {.kind = fg_conv_kind_of(a->op), .wino = wino};
  c.g = fg_conv_geom_of(a->attr, a->in_shape, &a->out_shape, c.kind);
  c.bias = a->op == FG_OP_CONV2D_BIAS_ACT;
  c.relu = c.bias && ((const fg_conv2d_bias_act_attr *)a->attr)->relu;
  c.bias_grad = a->op == FG_OP_CONV2D_WEIGHT_BIAS_GRAD;
  const conv_geom *g = &c.g;
  if (a->out_dtype != FG_F32 || !fg_dnn_engine() || g->n * g->c * g->o * g->ho * g->wo == 0)
    return fg_err_set(e, FG_E_MISUSE, "oneDNN computes non-empty float32 convolutions only");
  bool wgrad = c.kind == CONV_WEIGHT_GRAD;
  int given = a->parts[0];
  int cap = wgrad ? WGRAD_MAX_PARTS : wino ? WINO_MAX_PARTS : CONV_MAX_PARTS;
  int parts = fg_dnn_parts_for(given, g->n, cap);
  builder b = {.s = fg_dnn_state_new(parts)};
  int saved = fg_dnn_threads_one();
  bool xb, yb;
  blocked_xy(any ? a->blocked : 0, c.kind, &xb, &yb);
  if (!b.s) fg_dnn_ok(&b, dnnl_out_of_memory);
  a->blocked_ok = any ? blocked_ok_of(g, c.kind) : 0;
  /* conv2d_input_grad_relu masks its output by y element by element: y in the output's layout */
  if (a->op == FG_OP_CONV2D_INPUT_GRAD_RELU && (a->blocked_ok & FG_BLOCKED_OUT))
    a->blocked_ok |= MASKED_Y, a->blocked_tied = MASKED_Y;
  for (int s = 0; s < (g->n % parts ? 2 : 1) && b.st == dnnl_success; s++) {
    int64_t nb = g->n / parts + (g->n % parts && s == 0 ? 1 : 0);
    conv_mds_init(&b, &c.user[s], g, nb, false, xb, yb, wino);
    c.pd[s] = conv_pd(&b, &c, nb, any);
  }
  if (b.st == dnnl_success) {
    state *st = b.s;
    st->w_elems = (size_t)(g->o * g->c * g->kh * g->kw + (c.bias_grad ? g->o : 0));
    if (wgrad) st->partials_off = fg_dnn_scratch_take(&b, (size_t)(parts - 1) * st->w_elems * 4);
    st->n_wjobs = wgrad ? 0 : g->n % parts ? 2 : 1;
    for (int s = 0; s < st->n_wjobs; s++) weights_job(&b, &c, s);
    for (int p = 0; p < parts; p++) {
      int64_t n0, nb;
      int s;
      fg_dnn_part_range(g->n, parts, p, &n0, &nb, &s);
      conv_part(&b, &c, &st->jobs[p], p, n0, s);
    }
    bool reorder_w = st->n_wjobs && (c.wreorder[0] || c.wreorder[1]);
    st->n_phases = 0;
    if (reorder_w) st->phase_of[st->n_phases] = PH_WEIGHTS, a->parts[st->n_phases++] = st->n_wjobs;
    st->phase_of[st->n_phases] = PH_MAIN, a->parts[st->n_phases++] = parts;
    st->sum_parts = fg_dnn_parts_for(given, (int64_t)st->w_elems / SUM_MIN_ELEMS, CONV_MAX_PARTS);
    if (wgrad && parts > 1)
      st->phase_of[st->n_phases] = PH_SUM, a->parts[st->n_phases++] = st->sum_parts;
    if (a->op == FG_OP_CONV2D_INPUT_GRAD_RELU) /* split as the separate product would be */
      st->phase_of[st->n_phases] = PH_MASK, a->parts[st->n_phases++] = given;
    conv_chosen ch = chosen_of(c.pd[0], c.kind);
    fg_dnn_describe_pd(c.pd[0], ch.in, ch.out, a);
  }
  for (int s = 0; s < 2; s++) dnnl_primitive_desc_destroy(c.pd[s]);
  return fg_dnn_prepare_end(&b, a, out, saved, "convolution", e);
}

fg_status fg_onednn_conv_prepare(fg_kprep *a, void **state, fg_err *e) {
  return conv_prepare(a, state, true, false, e);
}
fg_status fg_onednn_conv_prepare_nchw(fg_kprep *a, void **state, fg_err *e) {
  return conv_prepare(a, state, false, false, e);
}
fg_status fg_onednn_conv_prepare_wino(fg_kprep *a, void **state, fg_err *e) {
  return conv_prepare(a, state, true, true, e);
}


/* conv2d_input_grad_relu: the input gradient's primitive, then the mask in a phase of its own,
 * split as the separate elementwise product would be.  Masking each part's images right after
 * its primitive, in the primitive's few parts, made RealNVP's training step -2.8 % (its 3x3
 * convs on Winograd's primitives; 5 alternating pairs), the phase +3.9 % and +1.5 % (5 of 5,
 * 3 of 4; "Intel(R) Xeon(R) Processor", 2 cores).  The output and y are in one layout, NCHW or nChw16c, so
 * element i of one is element i of the other. */
fg_status fg_onednn_conv_masked_f32(const fg_kargs *k) {
  const state *s = k->state;
  if (!(k->blocked & FG_BLOCKED_OUT) != !(k->blocked & MASKED_Y))
    return fg_err_set(k->err, FG_E_INTERNAL, "conv2d_input_grad_relu: the output and y in "
                      "different layouts");
  if (s->phase_of[k->phase] != PH_MASK) return fg_onednn_conv_f32(k);
  int64_t b, e;
  fg_split_range(fg_shape_count(&k->out_shape), k->ith, k->nth, &b, &e);
  conv_ctx c = {.t = FG_F32, .mask = k->in[2]};
  fg_conv_relu_mask(&c, k->out, b, e - b);
  return FG_OK;
}

/* ---- conv2d_input_weight_grad: the input gradient's primitives, then the weight gradient's
 * (and its bias's) in the phases after, each as its own node would run them (the same
 * primitives, parts and layouts, so the same bits), over the fused op's inputs x, w, dy and its
 * flat output (dx, then dw and db).  dy may come blocked where both take it so; dx is written
 * in NCHW, inside the flat output. ---- */

typedef struct grads_state {
  conv_grads_split split; /* the two ops */
  void *ig, *wg;          /* their conv states */
  int ig_phases;          /* the input gradient's phases, run first */
  size_t wg_scratch;      /* where the weight gradient's scratch starts */
} grads_state;

void fg_onednn_grads_release(void *p) {
  grads_state *s = p;
  if (!s) return;
  fg_onednn_release(s->ig), fg_onednn_release(s->wg);
  free(s);
}

/* The fused op's blocked operands (x 1, dy 4) as the input gradient's (dy 1) or the weight
 * gradient's (x 1, dy 2). */
static uint32_t ig_blocked(uint32_t b) { return b & 4u ? 1u : 0; }
static uint32_t wg_blocked(uint32_t b) { return (b & 1u) | (b & 4u ? 2u : 0); }

static fg_status grads_prepare(fg_kprep *a, void **out, fg_status (*prep)(fg_kprep *, void **,
                                                                          fg_err *), fg_err *e) {
  grads_state *s = calloc(1, sizeof *s);
  if (!s) return fg_err_set(e, FG_E_NOMEM, "oneDNN: out of memory");
  const conv_grads_split *sp = &s->split;
  fg_conv_grads_split(&s->split, a->attr, a->in_shape);
  fg_kprep ip = *a, wp = *a;
  ip.op = FG_OP_CONV2D_INPUT_GRAD, ip.attr = &sp->ia, ip.n_in = 2, ip.in_shape = sp->ish;
  ip.out_shape = sp->x_shape, ip.blocked = ig_blocked(a->blocked);
  wp.op = sp->wg_op, wp.attr = &sp->wa, wp.n_in = 2, wp.in_shape = sp->wsh;
  wp.out_shape = sp->wg_shape, wp.blocked = wg_blocked(a->blocked);
  fg_status st = prep(&ip, &s->ig, e);
  if (st == FG_OK) st = prep(&wp, &s->wg, e);
  if (st == FG_OK && ip.n_phases + wp.n_phases > FG_KERNEL_MAX_PHASES)
    st = fg_err_set(e, FG_E_MISUSE, "oneDNN: %d + %d phases for both gradients", ip.n_phases,
                    wp.n_phases);
  if (st != FG_OK) {
    fg_onednn_grads_release(s);
    return st;
  }
  s->ig_phases = ip.n_phases;
  a->n_phases = ip.n_phases + wp.n_phases;
  for (int i = 0; i < a->n_phases; i++)
    a->parts[i] = i < ip.n_phases ? ip.parts[i] : wp.parts[i - ip.n_phases];
  s->wg_scratch = (ip.scratch_bytes + ALIGN - 1) / ALIGN * ALIGN;
  a->scratch_bytes = s->wg_scratch + wp.scratch_bytes;
  a->blocked_ok = (wp.blocked_ok & 1u) | ((ip.blocked_ok & 1u) && (wp.blocked_ok & 2u) ? 4u : 0);
  a->blocked_tied = 0;
  snprintf(a->info, sizeof a->info, "%.46s + %.46s", ip.info, wp.info);
  *out = s;
  return FG_OK;
}

fg_status fg_onednn_grads_prepare(fg_kprep *a, void **state, fg_err *e) {
  return grads_prepare(a, state, fg_onednn_conv_prepare, e);
}
fg_status fg_onednn_grads_prepare_nchw(fg_kprep *a, void **state, fg_err *e) {
  return grads_prepare(a, state, fg_onednn_conv_prepare_nchw, e);
}
fg_status fg_onednn_grads_prepare_wino(fg_kprep *a, void **state, fg_err *e) {
  return grads_prepare(a, state, fg_onednn_conv_prepare_wino, e);
}

fg_status fg_onednn_grads_f32(const fg_kargs *k) {
  const grads_state *s = k->state;
  bool ig = k->phase < s->ig_phases;
  const void *in[2];
  fg_kargs sub = fg_conv_grads_part(&s->split, k, ig, in);
  sub.state = ig ? s->ig : s->wg;
  sub.scratch = ig || !k->scratch ? k->scratch : (char *)k->scratch + s->wg_scratch;
  sub.phase = ig ? k->phase : k->phase - s->ig_phases;
  sub.blocked = ig ? ig_blocked(k->blocked) : wg_blocked(k->blocked);
  return fg_onednn_conv_f32(&sub);
}
