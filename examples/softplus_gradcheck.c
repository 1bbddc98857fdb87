/* A first flowgrad program: build loss = sum(softplus(W·x + b)) as a graph, let the engine
 * derive its gradients, run them, and check them against central differences in float64.
 *
 *   build/examples/softplus_gradcheck
 */
#include <stdio.h>

#include <flowgrad/flowgrad.h>

static fg_node model(fg_graph *g, const fg_node *in, void *ud) {
  (void)ud;
  fg_node x = in[0], w = in[1], b = in[2];
  return fg_sum(g, fg_softplus(g, fg_add(g, fg_matmul(g, x, w), b)), FG_ALL_AXES, false);
}

static fg_tensor *filled(fg_shape s, double start, double step) {
  fg_tensor *t;
  if (fg_tensor_new(&t, FG_F64, &s, NULL) != FG_OK) return NULL;
  for (int64_t i = 0; i < fg_tensor_numel(t); i++) fg_tensor_set(t, i, start + step * (double)(i % 7));
  return t;
}

int main(void) {
  /* x: a batch of 8 vectors of 5 features; W: 5 -> 3; b: 3 */
  fg_tensor *in[3] = {filled(fg_shape2(8, 5), -1.0, 0.31), filled(fg_shape2(5, 3), 0.4, -0.13),
                      filled(fg_shape1(3), 0.05, 0.1)};
  if (!in[0] || !in[1] || !in[2]) return 1;

  /* 1. Build the graph and its gradients: builder errors are sticky, so one check at the end. */
  fg_err e;
  fg_graph *g;
  if (fg_graph_new(&g, &e) != FG_OK) {
    fprintf(stderr, "%s\n", e.msg);
    return 1;
  }
  fg_node nodes[3] = {fg_input(g, "x", FG_F64, in[0]->shape), fg_param(g, "W", FG_F64, in[1]->shape),
                      fg_param(g, "b", FG_F64, in[2]->shape)};
  fg_node loss = model(g, nodes, NULL), grads[2];
  if (fg_grad(g, loss, 2, nodes + 1, grads) != FG_OK) {
    fprintf(stderr, "building the gradient failed: %s\n", fg_graph_errmsg(g));
    return 1;
  }
  printf("graph: %d nodes (forward and backward)\n", fg_graph_node_count(g));

  /* 2. Run loss and gradients. */
  fg_program *p;
  fg_node outs[3] = {loss, grads[0], grads[1]};
  if (fg_program_new(&p, g, 3, outs, &e) != FG_OK) {
    fprintf(stderr, "%s\n", e.msg);
    return 1;
  }
  const char *names[3] = {"x", "W", "b"};
  for (int i = 0; i < 3; i++) fg_program_bind(p, names[i], in[i], &e);
  if (fg_program_run(p, &e) != FG_OK) {
    fprintf(stderr, "%s\n", e.msg);
    return 1;
  }
  printf("loss = sum(softplus(x W + b)) = %.10f\n", fg_tensor_get(fg_program_output(p, 0), 0));
  printf("dloss/db = [%.6f, %.6f, %.6f]\n", fg_tensor_get(fg_program_output(p, 2), 0),
         fg_tensor_get(fg_program_output(p, 2), 1), fg_tensor_get(fg_program_output(p, 2), 2));

  /* 3. Check first and second derivatives against central differences. */
  fg_gradcheck_report rep;
  fg_status st1 = fg_gradcheck(model, NULL, 3, in, NULL, &rep);
  printf("%s\n", rep.msg);
  fg_status st2 = fg_gradgradcheck(model, NULL, 3, in, NULL, &rep);
  printf("second order: %s\n", rep.msg);

  fg_program_free(p);
  fg_graph_free(g);
  for (int i = 0; i < 3; i++) fg_tensor_free(in[i]);
  return st1 == FG_OK && st2 == FG_OK ? 0 : 1;
}
