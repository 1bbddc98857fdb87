/* flowgrad dump: draw a model's graphs (as built, or compiled with fused groups). */
#include <stdlib.h>
#include <string.h>

#include "core/ir/dot.h"
#include "core/runtime/program.h"
#include "ops/ops.h"
#include "tools/cli/cli.h"

/* The "context" input of a conditional model's graph (its first class one-hot when run), or
 * FG_NONE. */
static fg_node context_input(cli_model *m, fg_graph *g, int64_t batch) {
  int64_t k = fg_flow_context_size(m->flow);
  return k ? fg_input(g, "context", fg_flow_get_config(m->flow)->dtype, fg_shape2(batch, k))
           : FG_NONE;
}

static fg_status build(cli_model *m, const char *what, int64_t batch, fg_graph *g, fg_node *out,
                       fg_err *e) {
  fg_shape s = fg_flow_get_config(m->flow)->event, b = s;
  b.ndim = s.ndim + 1, b.d[0] = batch;
  for (int i = 0; i < s.ndim; i++) b.d[i + 1] = s.d[i];
  fg_node ctx = context_input(m, g, batch);
  if (!strcmp(what, "sample")) return fg_flow_sample_cond(m->flow, g, batch, ctx, 1.0, 1, out);
  fg_node x = fg_input(g, "x", fg_flow_get_config(m->flow)->dtype, b);
  if (!strcmp(what, "logprob")) return fg_flow_log_prob_cond(m->flow, g, x, ctx, false, out, NULL);
  if (strcmp(what, "train"))
    return fg_err_set(e, FG_E_MISUSE, "--what must be logprob, train or sample");
  const char *outer = fg_graph_enter_scope(g, "loss"); /* what no layer makes: the loss, the sums */
  fg_node loss;
  fg_status st = fg_flow_nll_loss_cond(m->flow, g, x, ctx, true, &loss, NULL);
  int n = fg_flow_num_params(m->flow);
  fg_node *grads = malloc(sizeof *grads * ((size_t)n + 1));
  if (st == FG_OK && grads) st = fg_flow_param_grads(m->flow, g, loss, grads);
  /* one output standing for all: the sum of every gradient's sum keeps them all alive */
  fg_node all = loss;
  for (int i = 0; st == FG_OK && grads && i < n; i++)
    all = fg_add(g, all, fg_sum(g, grads[i], FG_ALL_AXES, false));
  free(grads);
  fg_graph_leave_scope(g, outer);
  *out = all;
  return st == FG_OK ? fg_graph_status(g) : st;
}

static const cli_opt options[] = {
    {"--out", CLI_TEXT, 0, 0},
    {"--what", CLI_TEXT, 0, 0},
    {"--batch", CLI_INT, 1, 65536},
    {"--compiled", CLI_FLAG, 0, 0},
    {"--layer", CLI_TEXT, 0, 0},
    {"--flat", CLI_FLAG, 0, 0},
    {"--collapse", CLI_FLAG, 0, 0},
    CLI_PLUGIN_OPT,
    {NULL, CLI_FLAG, 0, 0},
};

/* Is scope in the layer `sel` names: a top-level index ("3" matches "3.actnorm" and
 * "3.chain.0.actnorm", not "31.split") or a scope name ("prior", "3.actnorm")? */
static bool in_layer(const char *scope, const char *sel) {
  size_t n = strlen(sel);
  return scope && strncmp(scope, sel, n) == 0 && (scope[n] == '\0' || scope[n] == '.');
}

/* --layer: draw the layer's nodes and the nodes feeding them (where its inputs come from). */
static fg_status select_layer(const fg_graph *g, const char *sel, uint8_t **skip, fg_err *e) {
  int32_t n = fg_graph_node_count(g);
  uint8_t *keep = calloc((size_t)n + 1, 1);
  *skip = calloc((size_t)n + 1, 1);
  if (!keep || !*skip) {
    free(keep);
    return fg_err_set(e, FG_E_NOMEM, "out of memory");
  }
  int64_t found = 0;
  for (fg_node id = 0; id < n; id++) {
    if (!in_layer(fg_node_scope(g, id), sel)) continue;
    keep[id] = 1, found++;
    for (int i = 0; i < fg_node_num_inputs(g, id); i++) keep[fg_node_input(g, id, i)] = 1;
  }
  for (fg_node id = 0; id < n; id++) (*skip)[id] = !keep[id];
  free(keep);
  if (found) return FG_OK;
  return fg_err_set(e, FG_E_NOTFOUND,
                    "--layer %s: no node of this graph is in that layer (layers are "
                    "named by their index and type, \"3\" or \"3.actnorm\", and \"prior\")",
                    sel);
}

static int run_dump(int argc, char **argv) {
  const char *src;
  int n_pos;
  int code = cli_parse(argc, argv, "dump", options, &src, 1, &n_pos);
  if (code != EXIT_OK) return code;
  if (n_pos != 1) {
    fprintf(stderr, "usage: flowgrad dump SPEC|CHECKPOINT [options] (flowgrad dump --help)\n");
    return EXIT_USAGE;
  }
  const char *v, *out = (v = cli_option(argc, argv, "--out")) ? v : "graph.svg";
  const char *what = (v = cli_option(argc, argv, "--what")) ? v : "logprob";
  int64_t batch = cli_int(argc, argv, "--batch", 1);
  bool compiled = cli_flag(argc, argv, "--compiled");
  size_t len = strlen(src);
  bool is_ckpt = len > 12 && !strcmp(src + len - 12, ".safetensors");
  cli_model m;
  code = is_ckpt ? cli_model_from_checkpoint(&m, "dump", src, argc, argv, false)
                 : cli_model_from_spec(&m, "dump", src, argc, argv, batch);
  fg_err e;
  fg_dot_format fmt;
  fg_status st = code == EXIT_OK ? fg_dot_format_of(out, &fmt, &e) : FG_OK;
  fg_graph *g = NULL;
  if (code == EXIT_OK && st == FG_OK) st = fg_graph_new(&g, &e);
  fg_node root = FG_NONE;
  if (code == EXIT_OK && st == FG_OK) st = build(&m, what, batch, g, &root, &e);
  if (code == EXIT_OK && st == FG_OK && fg_graph_status(g) != FG_OK)
    st = fg_err_set(&e, fg_graph_status(g), "%s", fg_graph_errmsg(g));
  fg_program *p = NULL;
  if (code == EXIT_OK && st == FG_OK && compiled) st = fg_program_new(&p, g, 1, &root, &e);
  const fg_graph *shown = p ? fg_program_graph(p) : g;
  const char *layer = cli_option(argc, argv, "--layer");
  uint8_t *skip = NULL;
  if (code == EXIT_OK && st == FG_OK && layer) st = select_layer(shown, layer, &skip, &e);
  if (code == EXIT_OK && st == FG_OK) {
    fg_dot_opts o = {.title = what,
                     .group = p ? fg_program_groups(p) : NULL,
                     .skip = skip,
                     .layers = !cli_flag(argc, argv, "--flat"),
                     .collapse = cli_flag(argc, argv, "--collapse")};
    st = fg_dot_write(shown, &o, fmt, out, &e);
    if (st == FG_OK)
      printf("%s graph%s%s, %d nodes: %s\n", what, p ? " (compiled, fused groups as clusters)" : "",
             o.collapse ? " with layers collapsed"
             : layer    ? ", one layer"
                        : "",
             fg_graph_node_count(shown), out);
  }
  free(skip);
  if (code == EXIT_OK && st != FG_OK) code = cli_fail("dump", st, e.msg);
  fg_program_free(p);
  fg_graph_free(g);
  cli_model_free(&m);
  return code;
}

const cli_command cli_dump = {
    "dump", "draw a model's graph as DOT, SVG or PNG (through Graphviz)",
    "usage: flowgrad dump SPEC|CHECKPOINT [--out graph.svg] [--what logprob|train|sample]\n"
    "                     [--batch N] [--compiled] [--layer L] [--collapse] [--flat] [--plugin "
    "lib.so]\n\n"
    "Builds the log-prob graph (or the training graph with every gradient, or the sampling graph)\n"
    "and writes it; the extension picks the format (.dot/.gv, .svg, .png).  Nodes are grouped in\n"
    "one cluster per bijector layer (\"3.affine_coupling\", and \"prior\"), gradient nodes in\n"
    "the layer's own gradient cluster; --flat draws no layer clusters.  --layer L draws one layer\n"
    "(its index, as 3, or a name, as 3.actnorm or prior) and the nodes feeding it; --collapse\n"
    "draws each layer as one box, for the shape of a whole model on one page.  --compiled draws\n"
    "the graph after the compiler's passes, fused elementwise groups as clusters.  Large graphs\n"
    "take Graphviz a while to lay out: .dot is instant.  For dumps before and after every pass,\n"
    "set FG_DUMP_PASSES=dir when running any command.\n",
    run_dump};
