/* flowgrad dump: draw a model's graphs (as built, or compiled with fused groups). */
#include <stdlib.h>
#include <string.h>

#include "core/ir/dot.h"
#include "core/runtime/program.h"
#include "ops/ops.h"
#include "tools/cli/cli.h"

static fg_status build(cli_model *m, const char *what, int64_t batch, fg_graph *g, fg_node *out, fg_err *e) {
  fg_shape s = fg_flow_get_config(m->flow)->event, b = s;
  b.ndim = s.ndim + 1, b.d[0] = batch;
  for (int i = 0; i < s.ndim; i++) b.d[i + 1] = s.d[i];
  if (!strcmp(what, "sample")) return fg_flow_sample(m->flow, g, batch, 1.0, 1, out);
  fg_node x = fg_input(g, "x", fg_flow_get_config(m->flow)->dtype, b);
  if (!strcmp(what, "logprob")) return fg_flow_log_prob(m->flow, g, x, false, out);
  if (strcmp(what, "train")) return fg_err_set(e, FG_E_MISUSE, "--what must be logprob, train or sample");
  fg_node loss;
  fg_status st = fg_flow_nll_loss(m->flow, g, x, true, &loss, NULL);
  int n = fg_flow_num_params(m->flow);
  fg_node *grads = malloc(sizeof *grads * ((size_t)n + 1));
  if (st == FG_OK && grads) st = fg_flow_param_grads(m->flow, g, loss, grads);
  /* one output standing for all: the sum of every gradient's sum keeps them all alive */
  fg_node all = loss;
  for (int i = 0; st == FG_OK && grads && i < n; i++) all = fg_add(g, all, fg_sum(g, grads[i], FG_ALL_AXES, false));
  free(grads);
  *out = all;
  return st == FG_OK ? fg_graph_status(g) : st;
}

static const cli_opt options[] = {
    {"--out", CLI_TEXT, 0, 0},
    {"--what", CLI_TEXT, 0, 0},
    {"--batch", CLI_INT, 1, 65536},
    {"--compiled", CLI_FLAG, 0, 0},
    CLI_PLUGIN_OPT,
    {NULL, CLI_FLAG, 0, 0},
};

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
  if (code == EXIT_OK && st == FG_OK && fg_graph_status(g) != FG_OK) st = fg_err_set(&e, fg_graph_status(g), "%s", fg_graph_errmsg(g));
  fg_program *p = NULL;
  if (code == EXIT_OK && st == FG_OK && compiled) st = fg_program_new(&p, g, 1, &root, &e);
  if (code == EXIT_OK && st == FG_OK) {
    const fg_graph *shown = p ? fg_program_graph(p) : g;
    fg_dot_opts o = {.title = what, .group = p ? fg_program_groups(p) : NULL};
    st = fg_dot_write(shown, &o, fmt, out, &e);
    if (st == FG_OK) printf("%s graph%s, %d nodes: %s\n", what, p ? " (compiled, fused groups as clusters)" : "",
                            fg_graph_node_count(shown), out);
  }
  if (code == EXIT_OK && st != FG_OK) code = cli_fail("dump", st, e.msg);
  fg_program_free(p);
  fg_graph_free(g);
  cli_model_free(&m);
  return code;
}

const cli_command cli_dump = {
    "dump", "draw a model's graph as DOT, SVG or PNG (through Graphviz)",
    "usage: flowgrad dump SPEC|CHECKPOINT [--out graph.svg] [--what logprob|train|sample]\n"
    "                     [--batch N] [--compiled] [--plugin lib.so]\n\n"
    "Builds the log-prob graph (or the training graph with every gradient, or the sampling graph)\n"
    "and writes it; the extension picks the format (.dot/.gv, .svg, .png).  --compiled draws the\n"
    "graph after the compiler's passes, fused elementwise groups as clusters.  Large graphs take\n"
    "Graphviz a while to lay out: .dot is instant.  For dumps before and after every pass, set\n"
    "FG_DUMP_PASSES=dir when running any command.\n",
    run_dump};
