#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ops/autodiff/autodiff.h"
#include "core/ir/dot.h"
#include "core/ir/op.h"
#include "core/runtime/program.h"
#include "ops/ops.h"

/* ---- fixtures ---- */

static char dir[64];

static void make_dir(void) {
  snprintf(dir, sizeof dir, "/tmp/fg_dot_XXXXXX");
  cr_assert_not_null(mkdtemp(dir));
}

static void remove_dir(void) {
  static const char *const names[] = {"a.dot", "b.dot", "c.dot", "g.svg", "g.png", "g.gv"};
  char path[128];
  for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
    snprintf(path, sizeof path, "%s/%s", dir, names[i]);
    remove(path);
    snprintf(path, sizeof path, "%s/%s.tmp.%ld", dir, names[i], (long)getpid());
    remove(path);
  }
  rmdir(dir);
}

TestSuite(dot, .init = make_dir, .fini = remove_dir);

static const char *in_dir(const char *name) {
  static char path[4][128];
  static int turn;
  turn = (turn + 1) % 4;
  snprintf(path[turn], sizeof path[turn], "%s/%s", dir, name);
  return path[turn];
}

/* The whole file, NUL-terminated; *len (if given) gets its size. */
static char *slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  cr_assert_not_null(f, "cannot open %s", path);
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *s = malloc((size_t)n + 1);
  cr_assert_eq(fread(s, 1, (size_t)n, f), (size_t)n);
  s[n] = '\0';
  fclose(f);
  if (len) *len = (size_t)n;
  return s;
}

/* The line declaring node id ("\tn<id> [label=..."), copied into line; false if absent. */
static bool node_line(const char *dot, fg_node id, char *line, size_t cap) {
  char key[32];
  snprintf(key, sizeof key, "\tn%d [", (int)id);
  const char *at = strstr(dot, key);
  if (!at) return false;
  size_t n = strcspn(at, "\n");
  snprintf(line, cap, "%.*s", (int)n, at);
  return true;
}

/* x·W + b through tanh, times a constant, summed; gradients for W and b.  The add and tanh are
 * fused group 0.  Returns the graph and fills the fixture's node ids. */
typedef struct model {
  fg_graph *g;
  fg_node x, w, b, half, mm, add, act, loss, grads[2];
} model;

static model build_model(void) {
  model m = {0};
  fg_graph_new(&m.g, NULL);
  cr_assert_not_null(m.g);
  fg_graph *g = m.g;
  m.x = fg_input(g, "x", FG_F32, fg_shape2(64, 2));
  m.w = fg_param(g, "W", FG_F32, fg_shape2(2, 3));
  m.b = fg_param(g, "b", FG_F32, fg_shape1(3));
  m.half = fg_scalar(g, 0.5, FG_F32);
  m.mm = fg_matmul(g, m.x, m.w);
  m.add = fg_add(g, m.mm, m.b);
  m.act = fg_tanh(g, m.add);
  m.loss = fg_sum(g, fg_mul(g, m.act, m.half), FG_ALL_AXES, false);
  fg_node wrt[2] = {m.w, m.b};
  cr_assert_eq(fg_grad(g, m.loss, 2, wrt, m.grads), FG_OK, "%s", fg_graph_errmsg(g));
  return m;
}

static int32_t *groups_of(const model *m) {
  int32_t n = fg_graph_node_count(m->g);
  int32_t *group = malloc((size_t)n * sizeof *group);
  for (int32_t i = 0; i < n; i++) group[i] = -1;
  group[m->add] = group[m->act] = 0;
  return group;
}

static void write_ok(const fg_graph *g, const fg_dot_opts *o, const char *path) {
  fg_err e;
  fg_dot_format fmt;
  cr_assert_eq(fg_dot_format_of(path, &fmt, &e), FG_OK, "%s", e.msg);
  cr_assert_eq(fg_dot_write(g, o, fmt, path, &e), FG_OK, "%s", e.msg);
  char tmp[160];
  snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
  cr_assert_neq(access(tmp, F_OK), 0, "%s was left behind", tmp);
}

/* ---- DOT text ---- */

Test(dot, names_every_node_with_its_op_shape_and_bytes) {
  model m = build_model();
  write_ok(m.g, NULL, in_dir("a.dot"));
  char *dot = slurp(in_dir("a.dot"), NULL), line[2048];
  cr_assert(strncmp(dot, "digraph flowgrad {", 18) == 0);
  for (fg_node id = 0; id < fg_graph_node_count(m.g); id++) {
    cr_assert(node_line(dot, id, line, sizeof line), "node %d missing", (int)id);
    char want[64];
    snprintf(want, sizeof want, "<B>#%d %s", (int)id, fg_op_get(fg_node_op(m.g, id))->name);
    cr_assert(strstr(line, want), "node %d: '%s' not in %s", (int)id, want, line);
  }
  cr_assert(node_line(dot, m.x, line, sizeof line));
  cr_assert(strstr(line, "<I>x</I>") && strstr(line, "float32 [64, 2] &#183; 512 B"), "%s", line);
  cr_assert(node_line(dot, m.half, line, sizeof line));
  cr_assert(strstr(line, "= 0.5"), "a scalar constant shows its value: %s", line);
  free(dot);
  fg_graph_free(m.g);
}

Test(dot, colours_each_role_and_marks_outputs) {
  model m = build_model();
  fg_node outs[3] = {m.loss, m.grads[0], m.grads[1]};
  fg_dot_opts o = {.outputs = outs, .n_outputs = 3};
  write_ok(m.g, &o, in_dir("a.dot"));
  char *dot = slurp(in_dir("a.dot"), NULL), line[2048];
  struct {
    fg_node id;
    const char *fill;
  } want[] = {{m.x, FG_DOT_COLOR_INPUT},  {m.w, FG_DOT_COLOR_PARAM},
              {m.b, FG_DOT_COLOR_PARAM},  {m.half, FG_DOT_COLOR_CONST},
              {m.mm, FG_DOT_COLOR_COMPUTE}, {m.grads[0], FG_DOT_COLOR_GRAD}};
  for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
    cr_assert(node_line(dot, want[i].id, line, sizeof line));
    char fill[32];
    snprintf(fill, sizeof fill, "fillcolor=\"%s\"", want[i].fill);
    cr_assert(strstr(line, fill), "node %d should be %s: %s", (int)want[i].id, fill, line);
  }
  /* every computed node autodiff appended is drawn as a gradient; sources (the seed's fill)
   * keep the constant colour */
  for (fg_node id = m.loss + 1; id < fg_graph_node_count(m.g); id++) {
    const fg_node_rec *r = fg_graph_node(m.g, id);
    cr_assert(node_line(dot, id, line, sizeof line));
    if (r->n_in == 0) {
      cr_assert(strstr(line, FG_DOT_COLOR_CONST), "%s", line);
    } else {
      cr_assert(r->flags & FG_NODE_GRAD, "node %d", (int)id);
      cr_assert(strstr(line, FG_DOT_COLOR_GRAD), "%s", line);
    }
  }
  for (int i = 0; i < 3; i++) {
    cr_assert(node_line(dot, outs[i], line, sizeof line));
    cr_assert(strstr(line, "peripheries=\"2\"") && strstr(line, FG_DOT_COLOR_OUTPUT), "%s", line);
  }
  cr_assert(node_line(dot, m.mm, line, sizeof line));
  cr_assert_null(strstr(line, "peripheries"), "not an output: %s", line);
  cr_assert(strstr(dot, ">output</TD>"), "the legend lists outputs");
  free(dot);
  fg_graph_free(m.g);
}

Test(dot, edges_carry_the_input_index_of_multi_input_ops) {
  model m = build_model();
  write_ok(m.g, NULL, in_dir("a.dot"));
  char *dot = slurp(in_dir("a.dot"), NULL), want[64];
  snprintf(want, sizeof want, "\tn%d -> n%d [headlabel=\"0\"];\n", (int)m.x, (int)m.mm);
  cr_assert(strstr(dot, want), "missing %s", want);
  snprintf(want, sizeof want, "\tn%d -> n%d [headlabel=\"1\"];\n", (int)m.w, (int)m.mm);
  cr_assert(strstr(dot, want), "missing %s", want);
  snprintf(want, sizeof want, "\tn%d -> n%d;\n", (int)m.add, (int)m.act);
  cr_assert(strstr(dot, want), "a one-input op's edge has no label: %s", want);
  free(dot);
  fg_graph_free(m.g);
}

Test(dot, fused_groups_become_clusters_and_skipped_nodes_vanish) {
  model m = build_model();
  int32_t n = fg_graph_node_count(m.g), *group = groups_of(&m);
  uint8_t *skip = calloc((size_t)n, 1);
  skip[m.half] = 1;
  fg_dot_opts o = {.title = "a < b & \"c\"", .group = group, .skip = skip};
  write_ok(m.g, &o, in_dir("a.dot"));
  char *dot = slurp(in_dir("a.dot"), NULL), line[2048], want[64];
  cr_assert(strstr(dot, "subgraph cluster_fused_0 {"), "%s", dot);
  cr_assert(strstr(dot, "label=\"fused group 0\""));
  snprintf(want, sizeof want, "n%d; n%d; ", (int)m.add, (int)m.act);
  cr_assert(strstr(dot, want), "members in id order: %s", want);
  cr_assert(!node_line(dot, m.half, line, sizeof line), "skipped node drawn");
  snprintf(want, sizeof want, "\tn%d -> ", (int)m.half);
  cr_assert_null(strstr(dot, want), "edge from a skipped node drawn");
  cr_assert(strstr(dot, "a &lt; b &amp; &quot;c&quot;"), "title escaped for HTML");
  free(dot);
  free(skip);
  free(group);
  fg_graph_free(m.g);
}

Test(dot, two_dumps_are_byte_identical_even_around_a_render) {
  model m = build_model();
  int32_t *group = groups_of(&m);
  fg_dot_opts o = {.title = "same", .group = group, .outputs = &m.loss, .n_outputs = 1};
  write_ok(m.g, &o, in_dir("a.dot"));
  write_ok(m.g, &o, in_dir("g.svg")); /* Graphviz's global state must not leak into DOT */
  write_ok(m.g, &o, in_dir("b.dot"));
  size_t la, lb;
  char *a = slurp(in_dir("a.dot"), &la), *b = slurp(in_dir("b.dot"), &lb);
  cr_assert_eq(la, lb);
  cr_assert(memcmp(a, b, la) == 0, "dumps differ");
  free(a);
  free(b);
  free(group);
  fg_graph_free(m.g);
}

/* ---- rendered formats ---- */

Test(dot, svg_and_png_render_to_files_with_the_right_magic) {
  model m = build_model();
  int32_t *group = groups_of(&m);
  fg_node_set_name(m.g, m.grads[0], "<odd & \"name\">");
  fg_dot_opts o = {.title = "render", .group = group, .outputs = m.grads, .n_outputs = 2};
  write_ok(m.g, &o, in_dir("g.svg"));
  write_ok(m.g, &o, in_dir("g.png"));
  size_t n;
  char *svg = slurp(in_dir("g.svg"), &n);
  cr_assert_gt(n, 1000);
  cr_assert(strstr(svg, "<svg"), "not an SVG");
  cr_assert(strstr(svg, "matmul"), "labels missing from the SVG");
  cr_assert(strstr(svg, "fused group 0"), "cluster missing from the SVG");
  cr_assert(strstr(svg, "&lt;odd &amp; &quot;name&quot;&gt;"), "escaped name missing");
  free(svg);
  char *png = slurp(in_dir("g.png"), &n);
  cr_assert_gt(n, 1000);
  cr_assert(memcmp(png, "\x89PNG\r\n\x1a\n", 8) == 0, "not a PNG");
  free(png);
  fg_graph_free(m.g);
  free(group);
}

Test(dot, gv_extension_and_null_opts_write_dot) {
  model m = build_model();
  write_ok(m.g, NULL, in_dir("g.gv"));
  char *dot = slurp(in_dir("g.gv"), NULL);
  cr_assert(strncmp(dot, "digraph", 7) == 0);
  free(dot);
  fg_graph_free(m.g);
}

/* ---- errors ---- */

Test(dot, unwritable_path_is_an_error_naming_it) {
  model m = build_model();
  const char *paths[] = {"/nonexistent/dir/x.svg", "/nonexistent/dir/x.png",
                         "/nonexistent/dir/x.dot"};
  fg_dot_format fmts[] = {FG_DOT_SVG, FG_DOT_PNG, FG_DOT_DOT};
  for (int i = 0; i < 3; i++) {
    fg_err e;
    cr_assert_eq(fg_dot_write(m.g, NULL, fmts[i], paths[i], &e), FG_E_IO);
    cr_assert_eq(e.status, FG_E_IO);
    cr_assert(strstr(e.msg, paths[i]), "message does not name the path: %s", e.msg);
  }
  fg_graph_free(m.g);
}

Test(dot, unknown_extension_is_rejected) {
  const char *bad[] = {"graph.txt", "graph", "dir.svg/graph", "graph.svgz", ""};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    fg_err e;
    fg_dot_format fmt;
    cr_assert_eq(fg_dot_format_of(bad[i], &fmt, &e), FG_E_MISUSE, "'%s' accepted", bad[i]);
    cr_assert(strstr(e.msg, bad[i]), "%s", e.msg);
  }
  struct {
    const char *path;
    fg_dot_format fmt;
  } good[] = {{"a.dot", FG_DOT_DOT}, {"x/a.gv", FG_DOT_DOT}, {"a.SVG", FG_DOT_SVG},
              {"../a.b/c.png", FG_DOT_PNG}};
  for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
    fg_dot_format fmt;
    cr_assert_eq(fg_dot_format_of(good[i].path, &fmt, NULL), FG_OK, "%s", good[i].path);
    cr_assert_eq(fmt, good[i].fmt, "%s", good[i].path);
  }
}

Test(dot, bad_arguments_are_misuse) {
  model m = build_model();
  fg_err e;
  fg_node bogus = 9999;
  fg_dot_opts o = {.outputs = &bogus, .n_outputs = 1};
  cr_assert_eq(fg_dot_write(m.g, &o, FG_DOT_DOT, in_dir("c.dot"), &e), FG_E_MISUSE);
  cr_assert(strstr(e.msg, "9999") && strstr(e.msg, "c.dot"), "%s", e.msg);
  cr_assert_neq(access(in_dir("c.dot"), F_OK), 0, "nothing written on error");
  cr_assert_eq(fg_dot_write(m.g, NULL, (fg_dot_format)7, in_dir("c.dot"), &e), FG_E_MISUSE);
  cr_assert_eq(fg_dot_write(NULL, NULL, FG_DOT_DOT, in_dir("c.dot"), &e), FG_E_MISUSE);
  fg_graph_free(m.g);
}

/* ---- layers: scopes as clusters ---- */

/* The model above built in two scopes: the affine map in "0.linear", the rest in "1.act". */
static model build_scoped_model(void) {
  model m = {0};
  fg_graph_new(&m.g, NULL);
  fg_graph *g = m.g;
  m.x = fg_input(g, "x", FG_F32, fg_shape2(64, 2));
  const char *outer = fg_graph_enter_scope(g, "0.linear");
  m.w = fg_param(g, "W", FG_F32, fg_shape2(2, 3));
  m.b = fg_param(g, "b", FG_F32, fg_shape1(3));
  m.mm = fg_matmul(g, m.x, m.w);
  m.add = fg_add(g, m.mm, m.b);
  fg_graph_enter_scope(g, "1.act");
  m.half = fg_scalar(g, 0.5, FG_F32);
  m.act = fg_tanh(g, m.add);
  m.loss = fg_sum(g, fg_mul(g, m.act, m.half), FG_ALL_AXES, false);
  fg_graph_leave_scope(g, outer);
  fg_node wrt[2] = {m.w, m.b};
  cr_assert_eq(fg_grad(g, m.loss, 2, wrt, m.grads), FG_OK, "%s", fg_graph_errmsg(g));
  return m;
}

Test(dot, scopes_are_recorded_and_gradients_inherit_them) {
  model m = build_scoped_model();
  cr_assert_null(fg_node_scope(m.g, m.x));
  cr_assert_str_eq(fg_node_scope(m.g, m.mm), "0.linear");
  cr_assert_str_eq(fg_node_scope(m.g, m.act), "1.act");
  cr_assert_null(fg_graph_scope(m.g), "left: back to no scope");
  int grads = 0;
  for (fg_node id = m.loss + 1; id < fg_graph_node_count(m.g); id++) {
    const char *s = fg_node_scope(m.g, id);
    if (fg_graph_node(m.g, id)->op == FG_OP_FILL && !s) continue; /* the seed of d loss / d loss */
    cr_assert(s && (!strcmp(s, "0.linear") || !strcmp(s, "1.act")), "gradient node %d in scope %s",
              (int)id, s ? s : "(none)");
    cr_assert(fg_graph_node(m.g, id)->flags & FG_NODE_GRAD);
    grads++;
  }
  cr_assert_gt(grads, 4);
  fg_graph_free(m.g);
}

Test(dot, layers_become_clusters_and_collapse_to_boxes) {
  model m = build_scoped_model();
  fg_dot_opts o = {.layers = true, .outputs = &m.loss, .n_outputs = 1};
  write_ok(m.g, &o, in_dir("a.dot"));
  char *dot = slurp(in_dir("a.dot"), NULL), line[2048];
  cr_assert(strstr(dot, "subgraph cluster_layer_0 {"), "%s", dot);
  cr_assert(strstr(dot, "<B>0.linear</B>"), "the layer's name labels its cluster");
  cr_assert(strstr(dot, "<B>1.act (gradient)</B>"),
            "a layer's gradient nodes get their own cluster");
  cr_assert(node_line(dot, m.act, line, sizeof line) && strstr(line, "tooltip=<1.act>"), "%s",
            line);
  free(dot);
  o.collapse = true;
  write_ok(m.g, &o, in_dir("b.dot"));
  dot = slurp(in_dir("b.dot"), NULL);
  cr_assert_null(strstr(dot, "cluster_layer"), "collapsed: boxes, not clusters");
  cr_assert_null(strstr(dot, "\tn3 ["), "a layer's nodes are not drawn one by one");
  cr_assert(strstr(dot, "\tL0 [label=<<B>0.linear</B><BR/><FONT POINT-SIZE=\"9\">"), "%s", dot);
  cr_assert(strstr(dot, "shape=\"box3d\""));
  cr_assert(strstr(dot, "\tn0 -> L0;"), "x feeds the first layer, once: %s", dot);
  cr_assert(strstr(dot, "\tL0 -> L1;"), "edges between layers, deduplicated");
  free(dot);
  fg_graph_free(m.g);
}

Test(dot, compiled_graphs_keep_their_scopes) {
  model m = build_scoped_model();
  fg_program *p;
  fg_node outs[3] = {m.loss, m.grads[0], m.grads[1]};
  cr_assert_eq(fg_program_new(&p, m.g, 3, outs, NULL), FG_OK);
  const fg_graph *c = fg_program_graph(p);
  int scoped = 0, compute = 0;
  for (fg_node id = 0; id < fg_graph_node_count(c); id++) {
    const fg_node_rec *r = fg_graph_node(c, id);
    if (r->n_in == 0) continue;
    compute++, scoped += r->scope != NULL;
  }
  cr_assert_eq(scoped, compute, "every compute node of the compiled graph has its layer");
  fg_program_free(p);
  fg_graph_free(m.g);
}
