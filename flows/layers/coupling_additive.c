/* NICE's additive coupling: y_b = x_b + t(x_a), y_a = x_a.  Volume preserving, so the log-det
 * is declared as zeros [B] in both directions. */
#include <stdlib.h>

#include "flows/layers/coupling.h"
#include "ops/ops.h"

#define TYPE_NAME "additive_coupling"

#define ADDITIVE_ARGS                                                                              \
  {"mask", FG_ARG_STRING, "half", "checkerboard | channel (images), half | alternate (vectors)"},  \
      {"parity", FG_ARG_INT, "0", "0 or 1: which part of the mask is transformed"},                \
      {"net", FG_ARG_STRING, "mlp", "conditioner: mlp | glow | resnet"},                           \
      {"hidden", FG_ARG_INT, "64", "width of the conditioner's hidden layers"},                    \
      {"blocks", FG_ARG_INT, "1", "hidden layers (mlp) or residual blocks (resnet)"}

static const fg_arg_spec additive_args[] = {ADDITIVE_ARGS};
static const fg_arg_spec cond_additive_args[] = {ADDITIVE_ARGS, FG_COUPLING_EMBED_ARG};

static fg_status spec_new(void **state, const fg_coupling_spec *spec, fg_err *e) {
  fg_coupling_spec *s = malloc(sizeof *s);
  if (!s) return fg_err_set(e, FG_E_NOMEM, "%s: out of memory", TYPE_NAME);
  *s = *spec;
  *state = s;
  return FG_OK;
}

static fg_status additive_create(void **state, fg_err *e, const char *mask, int64_t parity,
                                 const char *net, int64_t hidden, int64_t blocks) {
  *state = NULL;
  fg_coupling_spec spec;
  fg_status st = fg_coupling_spec_parse(&spec, mask, parity, net, hidden, blocks, e);
  return st == FG_OK ? spec_new(state, &spec, e) : st;
}

static fg_status cond_additive_create(void **state, fg_err *e, const char *mask, int64_t parity,
                                      const char *net, int64_t hidden, int64_t blocks,
                                      int64_t embed) {
  *state = NULL;
  fg_coupling_spec spec;
  fg_status st = fg_coupling_spec_parse(&spec, mask, parity, net, hidden, blocks, e);
  if (st == FG_OK) st = fg_coupling_spec_conditional(&spec, embed, e);
  return st == FG_OK ? spec_new(state, &spec, e) : st;
}

static void additive_destroy(void *state) { free(state); }

/* The shift is restricted to the transformed positions, so checkerboard's conditioning pixels
 * get x + 0 = x exactly. */
static fg_node shift(const void *state, fg_flow_ctx *c, const fg_coupling_parts *p,
                     fg_node net_out, bool inverse, fg_node *log_scale) {
  (void)state;
  fg_graph *g = fg_flow_graph(c);
  fg_node t = fg_coupling_restrict(c, p, net_out);
  *log_scale = FG_NONE;
  return inverse ? fg_sub(g, p->active, t) : fg_add(g, p->active, t);
}

static const fg_coupling_rule additive_rule = {1, shift};

static fg_status additive_forward(void *state, fg_flow_ctx *c, fg_node x, fg_node *y,
                                  fg_node *logdet) {
  return fg_coupling_run(state, &additive_rule, NULL, c, x, false, y, logdet);
}

static fg_status additive_inverse(void *state, fg_flow_ctx *c, fg_node y, fg_node *x,
                                  fg_node *logdet) {
  return fg_coupling_run(state, &additive_rule, NULL, c, y, true, x, logdet);
}

const fg_bijector_type fg_bijector_additive_coupling = {
    .abi_version = FG_BIJECTOR_ABI_VERSION,
    .name = TYPE_NAME,
    .doc = "NICE additive coupling y_b = x_b + t(x_a) with a pluggable mask and conditioner",
    .n_args = (int)(sizeof additive_args / sizeof additive_args[0]),
    .args = additive_args,
    .create = (void (*)(void))additive_create,
    .destroy = additive_destroy,
    .forward = additive_forward,
    .inverse = additive_inverse,
    .check_event = {1, {6}},
    .check_args = "hidden=8",
    .check_lo = -2,
    .check_hi = 2,
};

/* The same with a conditioner that also sees the flow's context (coupling.h). */
const fg_bijector_type fg_bijector_cond_additive_coupling = {
    .abi_version = FG_BIJECTOR_ABI_VERSION,
    .name = "cond_additive_coupling",
    .doc = "additive_coupling whose conditioner also sees the context: y_b = x_b + t(x_a, c)",
    .n_args = (int)(sizeof cond_additive_args / sizeof cond_additive_args[0]),
    .args = cond_additive_args,
    .create = (void (*)(void))cond_additive_create,
    .destroy = additive_destroy,
    .forward = additive_forward,
    .inverse = additive_inverse,
    .check_event = {1, {6}},
    .check_args = "hidden=8, embed=3",
    .check_lo = -2,
    .check_hi = 2,
    .flags = FG_BIJ_CONTEXT,
};
