/* The pass table and the pipeline: the passes' names (for FG_DISABLE_PASSES and dumps) and the
 * order the graph passes run in, with verification (FG_VERIFY_PASSES) and DOT dumps
 * (FG_DUMP_PASSES) between them.  The passes are pass_<name>.c; the rewriting machinery they
 * share is rewrite.c. */
#include <stdio.h>
#include <string.h>

#include "core/ir/dot.h"
#include "core/compiler/pass.h"

static const char *const pass_names[] = {
#define FG_PASS_NAME_(ID, name, what) #name,
    FG_PASS_MAP(FG_PASS_NAME_)
#undef FG_PASS_NAME_
};

const char *fg_pass_name(int pass) {
  return pass >= 0 && pass < FG_PASS_COUNT ? pass_names[pass] : "unknown-pass";
}

fg_status fg_pass_parse_list(const char *list, uint32_t *bits, fg_err *e) {
  *bits = 0;
  if (!list) return FG_OK;
  const char *p = list;
  while (*p) {
    size_t len = strcspn(p, ", ");
    if (len) {
      int found = -1;
      for (int i = 0; i < FG_PASS_COUNT; i++)
        if (strlen(pass_names[i]) == len && strncmp(p, pass_names[i], len) == 0) found = i;
      if (found < 0)
        return fg_err_set(e, FG_E_MISUSE,
                          "unknown pass '%.*s' (passes: dce, simplify, cse, fold, "
                          "epilogue, fuse, memplan, schedule, layout, remat, chain, "
                          "bias_grad, conv_grads)",
                          (int)len, p);
      *bits |= 1u << found;
    }
    p += len;
    p += strspn(p, ", ");
  }
  return FG_OK;
}

/* ---- the pipeline ---- */

typedef struct pipeline_step {
  int pass;
  fg_status (*run)(fg_pass_ctx *);
} pipeline_step;

static const pipeline_step pipeline[] = {
    {FG_PASS_DCE, fg_pass_dce},           {FG_PASS_SIMPLIFY, fg_pass_simplify},
    {FG_PASS_CSE, fg_pass_cse},           {FG_PASS_FOLD, fg_pass_fold},
    {FG_PASS_SIMPLIFY, fg_pass_simplify}, {FG_PASS_CSE, fg_pass_cse},
    {FG_PASS_EPILOGUE, fg_pass_epilogue}, {FG_PASS_BIAS_GRAD, fg_pass_bias_grad},
    {FG_PASS_CONV_GRADS, fg_pass_conv_grads}, {FG_PASS_REMAT, fg_pass_remat},
    {FG_PASS_CHAIN, fg_pass_chain},
};

/* <dir>/NN-<label>.dot: the graph at one point of the pipeline. */
static fg_status dump_step(const fg_graph *g, const char *dir, int index, const char *label,
                           fg_err *e) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%02d-%s.dot", dir, index, label);
  return fg_dot_write(g, NULL, FG_DOT_DOT, path, e);
}

fg_status fg_passes_run(fg_pass_ctx *c, uint32_t disabled, bool verify, const char *dump_dir,
                        int32_t *counts) {
  for (int i = 0; i < FG_PASS_COUNT; i++) counts[i] = -1;
  c->keep_dead = disabled & FG_PASS_BIT(DCE);
  fg_status st = dump_dir ? dump_step(c->g, dump_dir, 0, "input", c->e) : FG_OK;
  int steps = (int)(sizeof pipeline / sizeof *pipeline);
  for (int i = 0; st == FG_OK && i < steps; i++) {
    if (disabled & (1u << pipeline[i].pass)) continue;
    c->changes = 0;
    st = pipeline[i].run(c);
    if (st == FG_OK && verify) st = fg_graph_verify(c->g, c->e);
    if (st == FG_OK && dump_dir)
      st = dump_step(c->g, dump_dir, i + 1, fg_pass_name(pipeline[i].pass), c->e);
    counts[pipeline[i].pass] = fg_graph_node_count(c->g);
  }
  return st;
}
