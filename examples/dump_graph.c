/* Dump a graph to Graphviz: the graph of examples/softplus_gradcheck.c,
 * loss = sum(softplus(x·W + b)), with the gradient nodes fg_grad appends for W and b.
 *
 *   build/examples/dump_graph graph.svg     (.svg, .png, or .dot / .gv for DOT text)
 */
#include <stdio.h>

#include <flowgrad/flowgrad.h>

int main(int argc, char **argv) {
  const char *path = argc > 1 ? argv[1] : "graph.svg";
  fg_err e;
  fg_dot_format fmt;
  if (fg_dot_format_of(path, &fmt, &e) != FG_OK) {
    fprintf(stderr, "%s\n", e.msg);
    return 2;
  }

  /* x: a batch of 8 vectors of 5 features; W: 5 -> 3; b: 3 */
  fg_graph *g;
  if (fg_graph_new(&g, &e) != FG_OK) {
    fprintf(stderr, "%s\n", e.msg);
    return 1;
  }
  fg_node x = fg_input(g, "x", FG_F64, fg_shape2(8, 5));
  fg_node wrt[2] = {fg_param(g, "W", FG_F64, fg_shape2(5, 3)),
                    fg_param(g, "b", FG_F64, fg_shape1(3))};
  fg_node loss = fg_sum(g, fg_softplus(g, fg_add(g, fg_matmul(g, x, wrt[0]), wrt[1])),
                        FG_ALL_AXES, false);
  fg_node_set_name(g, loss, "loss");
  fg_node grads[2];
  if (fg_grad(g, loss, 2, wrt, grads) != FG_OK) {
    fprintf(stderr, "building the gradient failed: %s\n", fg_graph_errmsg(g));
    fg_graph_free(g);
    return 1;
  }
  fg_node_set_name(g, grads[0], "dloss/dW");
  fg_node_set_name(g, grads[1], "dloss/db");

  /* Outputs get a bold double border; the title goes on top with the colour legend. */
  fg_node outs[3] = {loss, grads[0], grads[1]};
  fg_dot_opts opts = {.title = "loss = sum(softplus(x W + b)) and its gradients",
                      .outputs = outs, .n_outputs = 3};
  fg_status s = fg_dot_write(g, &opts, fmt, path, &e);
  if (s == FG_OK)
    printf("wrote %s: %d nodes (forward and backward)\n", path, fg_graph_node_count(g));
  else
    fprintf(stderr, "%s\n", e.msg);
  fg_graph_free(g);
  return s == FG_OK ? 0 : 1;
}
