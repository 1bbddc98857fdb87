/* Graphviz dumps.  The DOT text is written here, directly, so that its order is ours: nodes in
 * id order ("n<id>"), then the fused-group clusters (ascending group, members in id order), then
 * the edges by consumer id and input index.  cgraph's own writer (agwrite) moves nodes around
 * their edges, and its attribute defaults depend on process-wide state that gvContext() changes;
 * writing the text ourselves keeps two dumps of one graph byte-identical.  SVG and PNG are that
 * same text read back by libcgraph (agmemread), laid out by libgvc's "dot" engine and rendered,
 * so every format shows exactly the same graph. */
#include "core/ir/dot.h"

#include <errno.h>
#include <graphviz/cgraph.h>
#include <graphviz/gvc.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/atomic_file.h"
#include "core/ir/op.h"
#include "core/ir/op_attrs.h"
#include "core/tensor.h"
#include "core/vec.h"

/* ---- file formats ---- */

fg_status fg_dot_format_of(const char *path, fg_dot_format *fmt, fg_err *e) {
  if (!path || !fmt) return fg_err_set(e, FG_E_MISUSE, "fg_dot_format_of: NULL argument");
  const char *slash = strrchr(path, '/'), *ext = strrchr(path, '.');
  if (!ext || (slash && ext < slash)) ext = "";
  static const struct {
    const char *ext;
    fg_dot_format fmt;
  } known[] = {{".dot", FG_DOT_DOT}, {".gv", FG_DOT_DOT}, {".svg", FG_DOT_SVG},
               {".png", FG_DOT_PNG}};
  for (size_t i = 0; i < sizeof known / sizeof *known; i++)
    if (strcasecmp(ext, known[i].ext) == 0) {
      *fmt = known[i].fmt;
      return FG_OK;
    }
  return fg_err_set(e, FG_E_MISUSE,
                    "graph dump %s: unknown extension '%s' (expected .dot, .gv, .svg or .png)",
                    path, ext);
}

/* ---- a growable text buffer ---- */

typedef struct strbuf {
  char *s;
  int64_t cap;
  size_t len;
  bool oom; /* an allocation failed: later appends are dropped, the caller reports it once */
} strbuf;

/* Room for `extra` more bytes and the terminating NUL. */
static bool sb_reserve(strbuf *b, size_t extra) {
  if (b->oom) return false;
  if (!FG_VEC_RESERVE(b->s, b->cap, b->len + extra + 1)) b->oom = true;
  return !b->oom;
}

__attribute__((format(printf, 2, 3))) static void sb_printf(strbuf *b, const char *fmt, ...) {
  va_list ap, again;
  va_start(ap, fmt);
  va_copy(again, ap);
  size_t room = b->s ? (size_t)b->cap - b->len : 0;
  int n = b->oom ? -1 : vsnprintf(b->s ? b->s + b->len : NULL, room, fmt, ap);
  if (n >= 0 && (size_t)n >= room && sb_reserve(b, (size_t)n))
    n = vsnprintf(b->s + b->len, (size_t)b->cap - b->len, fmt, again);
  if (n >= 0 && !b->oom) b->len += (size_t)n;
  va_end(again);
  va_end(ap);
}

/* User text (node names, the title) escaped for a Graphviz HTML-like label, cut after max_chars
 * bytes so that a long name cannot blow a box up.  Control characters would break the label's
 * XML, so they become '?'. */
static void sb_escaped(strbuf *b, const char *text, size_t max_chars) {
  size_t i = 0;
  for (; text[i] && i < max_chars; i++) {
    unsigned char c = (unsigned char)text[i];
    switch (c) {
    case '&': sb_printf(b, "&amp;"); break;
    case '<': sb_printf(b, "&lt;"); break;
    case '>': sb_printf(b, "&gt;"); break;
    case '"': sb_printf(b, "&quot;"); break;
    default: sb_printf(b, "%c", c < 0x20 || c == 0x7f ? '?' : c);
    }
  }
  if (text[i]) sb_printf(b, "...");
}

/* "96 B", "1.5 KiB", "98 KiB", "3.1 MiB": at most three significant digits. */
static void sb_bytes(strbuf *b, size_t bytes) {
  static const char *const unit[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  if (bytes < 1024) {
    sb_printf(b, "%zu B", bytes);
    return;
  }
  double v = (double)bytes;
  int u = 0;
  while (v >= 1024 && u < 6) {
    v /= 1024;
    u++;
  }
  sb_printf(b, v < 9.95 ? "%.1f %s" : "%.0f %s", v, unit[u]);
}

/* ---- roles and styles ---- */

typedef enum node_role { ROLE_INPUT, ROLE_PARAM, ROLE_CONST, ROLE_GRAD, ROLE_COMPUTE } node_role;

static const struct {
  const char *name, *fill, *border;
} role_style[] = {
    [ROLE_INPUT] = {"input", FG_DOT_COLOR_INPUT, "#3d85c6"},
    [ROLE_PARAM] = {"parameter", FG_DOT_COLOR_PARAM, "#38761d"},
    [ROLE_CONST] = {"constant", FG_DOT_COLOR_CONST, "#999999"},
    [ROLE_GRAD] = {"gradient", FG_DOT_COLOR_GRAD, "#e69138"},
    [ROLE_COMPUTE] = {"compute", FG_DOT_COLOR_COMPUTE, "#444444"},
};
enum { N_ROLES = sizeof role_style / sizeof *role_style };

#define FONT "Helvetica,Arial,sans-serif"
#define GROUP_COLOR "#7f6000"

/* The colour says what a node is: sources by their op (a ones-fill made by autodiff is still a
 * constant), computed nodes by whether autodiff appended them. */
static node_role role_of(const fg_node_rec *r) {
  if (r->op == FG_OP_INPUT) return ROLE_INPUT;
  if (r->op == FG_OP_PARAM) return ROLE_PARAM;
  if (r->n_in == 0) return ROLE_CONST;
  return (r->flags & FG_NODE_GRAD) ? ROLE_GRAD : ROLE_COMPUTE;
}

/* ---- labels ---- */

/* A constant's value, when it is one number worth showing. */
static void sb_const_value(strbuf *b, const fg_graph *g, fg_node id, const fg_node_rec *r) {
  if (r->op == FG_OP_FILL) {
    const fg_source_attr *at = fg_node_attr(g, id);
    if (at) sb_printf(b, " = %g", at->a);
  } else if (r->op == FG_OP_CONST && r->value && fg_tensor_numel(r->value) == 1) {
    sb_printf(b, " = %g", fg_tensor_get(r->value, 0));
  }
}

/* "#3 matmul" in bold, the name in italics, then "float32 [8, 3] · 96 B" in a smaller font. */
static void node_label(strbuf *b, const fg_graph *g, fg_node id, const fg_node_rec *r) {
  const fg_op_def *def = fg_op_get(r->op);
  /* the value stays inside the <B> run: SVG drops a space that starts a new text run */
  sb_printf(b, "<B>#%d %s", (int)id, def ? def->name : "?");
  sb_const_value(b, g, id, r);
  sb_printf(b, "</B>");
  if (r->name) {
    sb_printf(b, "<BR/><I>");
    sb_escaped(b, r->name, 60);
    sb_printf(b, "</I>");
  }
  char shape[200];
  size_t bytes;
  sb_printf(b, "<BR/><FONT POINT-SIZE=\"9\" COLOR=\"#333333\">%s %s",
            fg_dtype_name((fg_dtype)r->dtype), fg_shape_str(&r->shape, shape, sizeof shape));
  if (fg_shape_bytes(&r->shape, (fg_dtype)r->dtype, &bytes, NULL) == FG_OK) {
    sb_printf(b, " &#183; ");
    sb_bytes(b, bytes);
  }
  sb_printf(b, "</FONT>");
}

/* The graph's label: the title over a one-row legend of the role colours. */
static void legend_label(strbuf *b, const char *title, bool has_outputs) {
  sb_printf(b, "<TABLE BORDER=\"0\" CELLSPACING=\"4\" CELLPADDING=\"3\">");
  if (title) {
    sb_printf(b, "<TR><TD COLSPAN=\"%d\"><FONT POINT-SIZE=\"14\"><B>", N_ROLES + 1);
    sb_escaped(b, title, 200);
    sb_printf(b, "</B></FONT></TD></TR>");
  }
  sb_printf(b, "<TR>");
  for (int i = 0; i < N_ROLES; i++)
    sb_printf(b, "<TD BORDER=\"1\" STYLE=\"rounded\" BGCOLOR=\"%s\" COLOR=\"%s\">%s</TD>",
              role_style[i].fill, role_style[i].border, role_style[i].name);
  if (has_outputs)
    sb_printf(b, "<TD BORDER=\"2\" STYLE=\"rounded\" COLOR=\"%s\">output</TD>",
              FG_DOT_COLOR_OUTPUT);
  sb_printf(b, "</TR></TABLE>");
}

/* ---- the DOT text ---- */

/* A layer cluster: the drawn nodes of one scope, forward or gradient. */
typedef struct layer {
  const char *scope;
  bool grad;
  int64_t nodes;
  bool has_output;
} layer;

typedef struct dump {
  const fg_graph *g;
  const fg_dot_opts *o;
  int32_t n;
  uint8_t *is_output; /* per node id */
  int32_t *layer_of;  /* per node id: its layer cluster, or -1 (opts.layers only) */
  layer *layers;
  int64_t n_layers, cap_layers;
} dump;

static bool drawn(const dump *d, fg_node id) {
  return id >= 0 && id < d->n && !(d->o->skip && d->o->skip[id]);
}

static void emit_header(strbuf *b, const dump *d) {
  sb_printf(b, "digraph flowgrad {\n\tgraph [label=<");
  legend_label(b, d->o->title, d->o->n_outputs > 0);
  sb_printf(b, ">, labelloc=\"t\", fontname=\"" FONT "\", fontsize=\"12\", nodesep=\"0.3\","
               " ranksep=\"0.35\", bgcolor=\"white\"];\n");
  sb_printf(b, "\tnode [shape=\"box\", style=\"rounded,filled\", fontname=\"" FONT "\","
               " fontsize=\"11\", margin=\"0.12,0.05\", color=\"#444444\","
               " fillcolor=\"#ffffff\"];\n");
  sb_printf(b, "\tedge [color=\"#666666\", arrowsize=\"0.7\", fontname=\"" FONT "\","
               " fontsize=\"9\", fontcolor=\"#1f4e9c\", labeldistance=\"1.6\","
               " labelangle=\"-30\"];\n");
}

static void emit_node(strbuf *b, const dump *d, fg_node id) {
  const fg_node_rec *r = fg_graph_node(d->g, id);
  node_role role = role_of(r);
  bool out = d->is_output[id];
  sb_printf(b, "\tn%d [label=<", (int)id);
  node_label(b, d->g, id, r);
  sb_printf(b, ">, fillcolor=\"%s\", color=\"%s\"%s", role_style[role].fill,
            out ? FG_DOT_COLOR_OUTPUT : role_style[role].border,
            out ? ", peripheries=\"2\", penwidth=\"2\"" : "");
  if (r->scope) {
    sb_printf(b, ", tooltip=<");
    sb_escaped(b, r->scope, 200);
    sb_printf(b, ">");
  }
  sb_printf(b, "];\n");
}

typedef struct member {
  int32_t group;
  fg_node id;
} member;

static int by_group_then_id(const void *pa, const void *pb) {
  const member *a = pa, *b = pb;
  if (a->group != b->group) return a->group < b->group ? -1 : 1;
  return (a->id > b->id) - (a->id < b->id);
}

/* One cluster per fused group, listing its members: a node mentioned inside a subgraph belongs
 * to it, so nodes keep their id-order declarations above. */
static void emit_clusters(strbuf *b, const dump *d) {
  if (!d->o->group || d->n <= 0) return;
  member *m = malloc((size_t)d->n * sizeof *m);
  if (!m) {
    b->oom = true;
    return;
  }
  int32_t count = 0;
  for (fg_node id = 0; id < d->n; id++)
    if (drawn(d, id) && d->o->group[id] >= 0) m[count++] = (member){d->o->group[id], id};
  qsort(m, (size_t)count, sizeof *m, by_group_then_id);
  for (int32_t i = 0; i < count;) {
    int32_t k = m[i].group;
    sb_printf(b, "\tsubgraph cluster_fused_%d {\n\t\tlabel=\"fused group %d\";"
                 " style=\"rounded,dashed\"; color=\"" GROUP_COLOR "\"; fontcolor=\"" GROUP_COLOR
                 "\";\n\t\t",
              (int)k, (int)k);
    for (; i < count && m[i].group == k; i++) sb_printf(b, "n%d; ", (int)m[i].id);
    sb_printf(b, "\n\t}\n");
  }
  free(m);
}

/* Edges into id, by input index; the index is shown where the order of inputs matters. */
static void emit_in_edges(strbuf *b, const dump *d, fg_node id) {
  int n_in = fg_node_num_inputs(d->g, id);
  for (int i = 0; i < n_in; i++) {
    fg_node src = fg_node_input(d->g, id, i);
    if (!drawn(d, src)) continue; /* a skipped (dead) input */
    if (n_in > 1)
      sb_printf(b, "\tn%d -> n%d [headlabel=\"%d\"];\n", (int)src, (int)id, i);
    else
      sb_printf(b, "\tn%d -> n%d;\n", (int)src, (int)id);
  }
}

/* ---- clusters by layer ---- */

/* Assigns every drawn, scoped node its layer cluster (in order of first appearance); false when
 * out of memory. */
static bool find_layers(dump *d) {
  d->layer_of = malloc(sizeof *d->layer_of * (size_t)(d->n > 0 ? d->n : 1));
  if (!d->layer_of) return false;
  int64_t last = -1;
  for (fg_node id = 0; id < d->n; id++) {
    const fg_node_rec *r = fg_graph_node(d->g, id);
    d->layer_of[id] = -1;
    if (!drawn(d, id) || !r->scope) continue;
    bool grad = r->flags & FG_NODE_GRAD;
    int64_t k = last; /* scopes come in runs: try the last one first */
    if (k < 0 || d->layers[k].grad != grad || strcmp(d->layers[k].scope, r->scope) != 0)
      for (k = 0; k < d->n_layers; k++)
        if (d->layers[k].grad == grad && strcmp(d->layers[k].scope, r->scope) == 0) break;
    if (k == d->n_layers) {
      if (!FG_VEC_RESERVE(d->layers, d->cap_layers, d->n_layers + 1)) return false;
      d->layers[d->n_layers++] = (layer){.scope = r->scope, .grad = grad};
    }
    d->layers[k].nodes++;
    d->layers[k].has_output |= d->is_output[id] != 0;
    d->layer_of[id] = (int32_t)k, last = k;
  }
  return true;
}

static void layer_title(strbuf *b, const layer *l) {
  sb_escaped(b, l->scope, 80);
  if (l->grad) sb_printf(b, " (gradient)");
}

/* The layer a fused group lies in, or -1 when it spans layers (or none): a cluster can only
 * nest inside another if all its nodes are in it. */
static int64_t group_layer(const dump *d, int32_t group) {
  int64_t k = -2;
  for (fg_node id = 0; id < d->n; id++) {
    if (!drawn(d, id) || d->o->group[id] != group) continue;
    if (k == -2) k = d->layer_of[id];
    else if (k != d->layer_of[id]) return -1;
  }
  return k < 0 ? -1 : k;
}

static void emit_fused(strbuf *b, const dump *d, int32_t group, const char *indent) {
  sb_printf(b,
            "%ssubgraph cluster_fused_%d {\n%s\tlabel=\"fused group %d\"; style=\"rounded,dashed\";"
            " color=\"" GROUP_COLOR "\"; fontcolor=\"" GROUP_COLOR "\";\n%s\t",
            indent, (int)group, indent, (int)group, indent);
  for (fg_node id = 0; id < d->n; id++)
    if (drawn(d, id) && d->o->group[id] == group) sb_printf(b, "n%d; ", (int)id);
  sb_printf(b, "\n%s}\n", indent);
}

/* One cluster per layer, fused groups inside their layer's, then the groups spanning layers. */
static void emit_layer_clusters(strbuf *b, const dump *d) {
  int32_t n_groups = 0;
  for (fg_node id = 0; d->o->group && id < d->n; id++)
    if (drawn(d, id) && d->o->group[id] >= n_groups) n_groups = d->o->group[id] + 1;
  int64_t *in_layer = calloc((size_t)n_groups + 1, sizeof *in_layer);
  if (!in_layer) {
    b->oom = true;
    return;
  }
  for (int32_t k = 0; k < n_groups; k++) in_layer[k] = group_layer(d, k);
  for (int64_t k = 0; k < d->n_layers; k++) {
    sb_printf(b, "\tsubgraph cluster_layer_%lld {\n\t\tlabel=<<B>", (long long)k);
    layer_title(b, &d->layers[k]);
    sb_printf(b, "</B>>; style=\"rounded\"; color=\"%s\"; fontname=\"" FONT "\";\n\t\t",
              d->layers[k].grad ? "#e69138" : "#674ea7");
    for (fg_node id = 0; id < d->n; id++) {
      bool fused = d->o->group && d->o->group[id] >= 0; /* then drawn in its group's cluster */
      if (d->layer_of[id] == k && !fused) sb_printf(b, "n%d; ", (int)id);
    }
    sb_printf(b, "\n");
    for (int32_t gk = 0; gk < n_groups; gk++)
      if (in_layer[gk] == k) emit_fused(b, d, gk, "\t\t");
    sb_printf(b, "\t}\n");
  }
  for (int32_t gk = 0; gk < n_groups; gk++)
    if (in_layer[gk] < 0) emit_fused(b, d, gk, "\t");
  free(in_layer);
}

/* ---- collapsed layers ---- */

/* "L<k>" for a collapsed layer's box, "n<id>" for a node drawn as itself. */
static void endpoint(strbuf *b, const dump *d, fg_node id) {
  if (d->layer_of[id] >= 0) sb_printf(b, "L%d", (int)d->layer_of[id]);
  else sb_printf(b, "n%d", (int)id);
}

/* The layer's box: its name, node count and its three commonest ops. */
static void emit_layer_box(strbuf *b, const dump *d, int64_t k) {
  int64_t count[FG_OP_COUNT] = {0};
  for (fg_node id = 0; id < d->n; id++)
    if (d->layer_of[id] == k) count[fg_node_op(d->g, id)]++;
  sb_printf(b, "\tL%lld [label=<<B>", (long long)k);
  layer_title(b, &d->layers[k]);
  sb_printf(b, "</B><BR/><FONT POINT-SIZE=\"9\">%lld nodes", (long long)d->layers[k].nodes);
  for (int top = 0; top < 3; top++) {
    int best = -1;
    for (int op = 0; op < FG_OP_COUNT; op++)
      if (count[op] > 0 && (best < 0 || count[op] > count[best])) best = op;
    if (best < 0) break;
    sb_printf(b, "%s%lld %s", top ? ", " : ": ", (long long)count[best], fg_op_get(best)->name);
    count[best] = 0;
  }
  sb_printf(b, "</FONT>>, shape=\"box3d\", fillcolor=\"%s\", color=\"%s\"%s];\n",
            d->layers[k].grad ? FG_DOT_COLOR_GRAD : FG_DOT_COLOR_LAYER,
            d->layers[k].has_output ? FG_DOT_COLOR_OUTPUT : "#674ea7",
            d->layers[k].has_output ? ", peripheries=\"2\", penwidth=\"2\"" : "");
}

typedef struct edge {
  int64_t from, to; /* a node id, or -(layer + 1) */
} edge;

static int by_edge(const void *pa, const void *pb) {
  const edge *a = pa, *b = pb;
  if (a->to != b->to) return a->to < b->to ? -1 : 1;
  return (a->from > b->from) - (a->from < b->from);
}

static int64_t collapsed_id(const dump *d, fg_node id) {
  return d->layer_of[id] >= 0 ? -(int64_t)d->layer_of[id] - 1 : id;
}

static void emit_collapsed_edges(strbuf *b, const dump *d) {
  edge *es = NULL;
  int64_t n = 0, cap = 0;
  for (fg_node id = 0; id < d->n; id++) {
    if (!drawn(d, id)) continue;
    for (int i = 0; i < fg_node_num_inputs(d->g, id); i++) {
      fg_node src = fg_node_input(d->g, id, i);
      edge e = {collapsed_id(d, src), collapsed_id(d, id)};
      if (!drawn(d, src) || e.from == e.to) continue;
      if (!FG_VEC_RESERVE(es, cap, n + 1)) {
        b->oom = true;
        free(es);
        return;
      }
      es[n++] = e;
    }
  }
  if (n) qsort(es, (size_t)n, sizeof *es, by_edge);
  for (int64_t i = 0; i < n; i++) {
    if (i && es[i].from == es[i - 1].from && es[i].to == es[i - 1].to) continue;
    sb_printf(b, "\t");
    if (es[i].from < 0) sb_printf(b, "L%lld", (long long)(-es[i].from - 1));
    else endpoint(b, d, (fg_node)es[i].from);
    sb_printf(b, " -> ");
    if (es[i].to < 0) sb_printf(b, "L%lld", (long long)(-es[i].to - 1));
    else endpoint(b, d, (fg_node)es[i].to);
    sb_printf(b, ";\n");
  }
  free(es);
}

static void emit_dot(strbuf *b, const dump *d) {
  emit_header(b, d);
  bool collapse = d->o->layers && d->o->collapse;
  for (fg_node id = 0; id < d->n; id++)
    if (drawn(d, id) && !(collapse && d->layer_of[id] >= 0)) emit_node(b, d, id);
  for (int64_t k = 0; collapse && k < d->n_layers; k++) emit_layer_box(b, d, k);
  if (collapse) {
    emit_collapsed_edges(b, d);
  } else {
    if (d->o->layers) emit_layer_clusters(b, d);
    else emit_clusters(b, d);
    for (fg_node id = 0; id < d->n; id++)
      if (drawn(d, id)) emit_in_edges(b, d, id);
  }
  sb_printf(b, "}\n");
}

/* ---- rendering through Graphviz ---- */

/* Graphviz's error level, error callback and plugin state are process-wide, so one render runs
 * at a time; gv_messages (what Graphviz said during it) and the context are under the lock. */
static pthread_mutex_t render_lock = PTHREAD_MUTEX_INITIALIZER;
static char gv_messages[400];

/* Graphviz would print its warnings and errors on stderr; the library never prints, so they are
 * collected and quoted in the error message if the render fails. */
static int keep_gv_message(char *msg) {
  size_t used = strlen(gv_messages);
  if (used + 3 >= sizeof gv_messages) return 0;
  snprintf(gv_messages + used, sizeof gv_messages - used, "%s%s", used ? "; " : "", msg);
  size_t n = strlen(gv_messages);
  while (n > 0 && (gv_messages[n - 1] == '\n' || gv_messages[n - 1] == ' '))
    gv_messages[--n] = '\0';
  return 0;
}

static const char *gv_said(void) {
  return gv_messages[0] ? gv_messages : "no message from Graphviz";
}

static fg_status layout_and_render(GVC_t *gvc, Agraph_t *gr, fg_dot_format fmt, FILE *f,
                                   const char *path, fg_err *e) {
  if (gvLayout(gvc, gr, "dot") != 0)
    return fg_err_set(e, FG_E_INTERNAL, "graph dump %s: Graphviz 'dot' layout failed: %s", path,
                      gv_said());
  const char *format = fmt == FG_DOT_SVG ? "svg" : "png";
  fg_status s = FG_OK;
  if (gvRender(gvc, gr, format, f) != 0)
    s = fg_err_set(e, FG_E_INTERNAL, "graph dump %s: Graphviz cannot render %s: %s", path,
                   format, gv_said());
  gvFreeLayout(gvc, gr);
  return s;
}

/* One Graphviz context for the whole process, made on first use and kept.  Freeing a context
 * and making another breaks Graphviz 2.42: its pango text plugin caches a pointer to a font
 * name owned by the first context, and reads it (after free) in the next one. */
static GVC_t *shared_gvc;

static fg_status render_locked(const char *text, fg_dot_format fmt, FILE *f, const char *path,
                               fg_err *e) {
  if (!shared_gvc) shared_gvc = gvContext();
  GVC_t *gvc = shared_gvc;
  if (!gvc)
    return fg_err_set(e, FG_E_NOMEM, "graph dump %s: cannot create a Graphviz context", path);
  fg_status s;
  Agraph_t *gr = agmemread(text);
  if (!gr) {
    s = fg_err_set(e, FG_E_INTERNAL, "graph dump %s: Graphviz cannot read the DOT text: %s",
                   path, gv_said());
  } else {
    s = layout_and_render(gvc, gr, fmt, f, path, e);
    agclose(gr);
  }
  return s;
}

static fg_status render(const char *text, fg_dot_format fmt, FILE *f, const char *path,
                        fg_err *e) {
  pthread_mutex_lock(&render_lock);
  gv_messages[0] = '\0';
  agerrlevel_t old_level = agseterr(AGWARN); /* every message goes to the callback */
  agusererrf old_fn = agseterrf(keep_gv_message);
  fg_status s = render_locked(text, fmt, f, path, e);
  agseterrf(old_fn);
  agseterr(old_level);
  pthread_mutex_unlock(&render_lock);
  return s;
}

/* ---- writing the file ---- */

typedef struct dump_file {
  const strbuf *text;
  fg_dot_format fmt;
  const char *path;
} dump_file;

static fg_status write_dump(FILE *f, void *ctx, fg_err *e) {
  const dump_file *d = ctx;
  if (d->fmt != FG_DOT_DOT) return render(d->text->s, d->fmt, f, d->path, e);
  fwrite(d->text->s, 1, d->text->len, f); /* a failure is reported by fg_atomic_file_write */
  return FG_OK;
}

static fg_status check_args(const fg_graph *g, const fg_dot_opts *o, fg_dot_format fmt,
                            const char *path, fg_err *e) {
  if (!g || !path) return fg_err_set(e, FG_E_MISUSE, "fg_dot_write: NULL graph or path");
  if (fmt != FG_DOT_DOT && fmt != FG_DOT_SVG && fmt != FG_DOT_PNG)
    return fg_err_set(e, FG_E_MISUSE, "graph dump %s: unknown format %d", path, (int)fmt);
  if (o->n_outputs < 0 || (o->n_outputs > 0 && !o->outputs))
    return fg_err_set(e, FG_E_MISUSE, "graph dump %s: %d outputs given without an array", path,
                      o->n_outputs);
  for (int i = 0; i < o->n_outputs; i++)
    if (!fg_node_valid(g, o->outputs[i]))
      return fg_err_set(e, FG_E_MISUSE, "graph dump %s: output %d is node %d, not in the graph",
                        path, i, (int)o->outputs[i]);
  return FG_OK;
}

fg_status fg_dot_write(const fg_graph *g, const fg_dot_opts *opts, fg_dot_format fmt,
                       const char *path, fg_err *e) {
  static const fg_dot_opts no_opts = {0};
  const fg_dot_opts *o = opts ? opts : &no_opts;
  fg_status s = check_args(g, o, fmt, path, e);
  if (s != FG_OK) return s;

  dump d = {.g = g, .o = o, .n = fg_graph_node_count(g)};
  d.is_output = calloc(d.n > 0 ? (size_t)d.n : 1, 1);
  strbuf text = {0};
  bool ok = d.is_output != NULL;
  for (int i = 0; ok && i < o->n_outputs; i++) d.is_output[o->outputs[i]] = 1;
  if (ok && o->layers) ok = find_layers(&d);
  if (ok) emit_dot(&text, &d);
  free(d.layer_of);
  free(d.layers);
  if (!ok || text.oom)
    s = fg_err_set(e, FG_E_NOMEM, "graph dump %s: out of memory writing the DOT text", path);
  else
    s = fg_atomic_file_write(path, write_dump, &(dump_file){&text, fmt, path}, e);
  free(text.s);
  free(d.is_output);
  if (s == FG_OK) fg_err_clear(e);
  return s;
}
