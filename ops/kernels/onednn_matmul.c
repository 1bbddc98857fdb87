/* oneDNN's matmul primitive behind matmul (ops/kernels/onednn.h), on row-major memory as it
 * is (transposes as strided views, no reorders), as jobs of the shared runner
 * (onednn_internal.h): split by rows, or by batch items for a batched product. */
#include "ops/kernels/onednn.h"

#include <oneapi/dnnl/dnnl.h>
#include <stdio.h>

#include "core/ir/op_attrs.h"
#include "core/runtime/threadpool.h"
#include "ops/kernels/onednn_internal.h"

enum { MATMUL_MIN_ROWS = 32 };

/* A matmul as oneDNN sees it: rows mode, one [R, K] @ [K, N] split by rows; or batch mode,
 * [Ba, M, K] @ [Bb, K, N] with Ba, Bb each 1 or B, split by batch items. */
typedef struct mm_geom {
  bool ta, tb, rows;
  int64_t batch, ba, bb, m, k, n;
} mm_geom;

static bool mm_geom_of(const fg_kprep *a, mm_geom *g) {
  const fg_matmul_attr *at = a->attr;
  const fg_shape *sa = &a->in_shape[0], *sb = &a->in_shape[1];
  g->ta = at->trans_a, g->tb = at->trans_b;
  g->m = a->out_shape.d[a->out_shape.ndim - 2], g->n = a->out_shape.d[a->out_shape.ndim - 1];
  g->k = sa->d[sa->ndim - (g->ta ? 2 : 1)];
  g->batch = fg_shape_count(&a->out_shape) / (g->m * g->n > 0 ? g->m * g->n : 1);
  g->ba = fg_shape_count(sa) / (g->m * g->k > 0 ? g->m * g->k : 1);
  g->bb = fg_shape_count(sb) / (g->k * g->n > 0 ? g->k * g->n : 1);
  /* each operand's batch is whole or absent: its element count says which */
  if ((g->ba != 1 && g->ba != g->batch) || (g->bb != 1 && g->bb != g->batch)) return false;
  g->rows = g->batch == 1 || (g->bb == 1 && !g->ta && g->ba == g->batch);
  return g->batch * g->m * g->n * g->k > 0;
}

/* Descriptor of an operand read as [nb, r, c] (batched) or [r, c]: stored row-major with
 * rows ld apart, or transposed (stored [c, ld]) when t; batch items bstride apart. */
static void mm_md(builder *b, dnnl_memory_desc_t *md, bool batched, int64_t nb, int64_t r,
                  int64_t c, bool t, int64_t ld, int64_t bstride) {
  dnnl_dims_t d = {nb, r, c}, s = {bstride, t ? 1 : ld, t ? ld : 1};
  int off = batched ? 0 : 1;
  fg_dnn_ok(b, dnnl_memory_desc_init_by_strides(md, 3 - off, d + off, dnnl_f32, s + off));
}

/* Part p's job over items i0 .. i0 + ni (rows or batch items). */
static void mm_part(builder *b, const mm_geom *g, job *j, int64_t i0, int64_t ni) {
  dnnl_memory_desc_t a, w, d;
  int64_t rows = g->rows ? ni : g->m, nb = g->rows ? 1 : ni;
  bool batched = !g->rows;
  mm_md(b, &a, batched, g->ba == 1 ? 1 : nb, rows, g->k, g->ta, g->ta ? g->m : g->k, g->m * g->k);
  mm_md(b, &w, batched, g->bb == 1 ? 1 : nb, g->k, g->n, g->tb, g->tb ? g->k : g->n, g->k * g->n);
  mm_md(b, &d, batched, nb, rows, g->n, false, g->n, g->m * g->n);
  size_t ao = g->rows ? (size_t)(g->ta ? i0 : i0 * g->k) * 4
              : g->ba == 1 ? 0 : (size_t)(i0 * g->m * g->k) * 4;
  size_t wo = g->rows || g->bb == 1 ? 0 : (size_t)(i0 * g->k * g->n) * 4;
  size_t dofs = (size_t)(g->rows ? i0 * g->n : i0 * g->m * g->n) * 4;
  dnnl_matmul_desc_t md;
  dnnl_primitive_attr_t attr = fg_dnn_scratchpad_attr(b);
  dnnl_primitive_desc_t pd = NULL;
  if (fg_dnn_ok(b, dnnl_matmul_desc_init(&md, &a, &w, NULL, &d)) &&
      fg_dnn_ok(b, dnnl_primitive_desc_create(&pd, &md, attr, fg_dnn_engine(), NULL))) {
    int slots[3] = {fg_dnn_slot_new(b, j, &a, FROM_IN0, ao),
                    fg_dnn_slot_new(b, j, &w, FROM_IN1, wo),
                    fg_dnn_slot_new(b, j, &d, FROM_OUT, dofs)};
    fg_dnn_exec_add(b, j, pd, 3, (const int[]){DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_DST},
                    slots);
  }
  dnnl_primitive_desc_destroy(pd);
  dnnl_primitive_attr_destroy(attr);
  fg_dnn_job_finish(b, j);
}

fg_status fg_onednn_matmul_prepare(fg_kprep *a, void **out, fg_err *e) {
  mm_geom g;
  if (a->out_dtype != FG_F32 || !fg_dnn_engine() || !mm_geom_of(a, &g))
    return fg_err_set(e, FG_E_MISUSE, "oneDNN computes non-empty float32 matmuls whose batch "
                      "dims are whole or absent on each side");
  int64_t items = g.rows ? g.batch * g.m : g.batch;
  int parts = fg_dnn_parts_for(a->parts[0], g.rows ? (items + MATMUL_MIN_ROWS - 1) / MATMUL_MIN_ROWS
                                            : items, FG_POOL_MAX_FIXED_PARTS);
  builder b = {.s = fg_dnn_state_new(parts)};
  int saved = fg_dnn_threads_one();
  if (!b.s) fg_dnn_ok(&b, dnnl_out_of_memory);
  for (int p = 0; p < parts && b.st == dnnl_success; p++) {
    int64_t i0, ni;
    int s;
    fg_dnn_part_range(items, parts, p, &i0, &ni, &s);
    mm_part(&b, &g, &b.s->jobs[p], i0, ni);
  }
  if (b.st == dnnl_success) {
    b.s->n_phases = 1, b.s->phase_of[0] = PH_MAIN, a->parts[0] = parts;
    snprintf(a->info, sizeof a->info, "%s", g.rows ? "rows" : "batch");
  }
  return fg_dnn_prepare_end(&b, a, out, saved, "matmul", e);
}

