/* Graphviz dumps of a graph: DOT text, or SVG / PNG rendered through libgvc.
 *
 * Each node is a box labelled "#<id> <op>", its name if it has one, its dtype and shape and its
 * size in bytes; its tooltip (SVG) is the layer that made it (fg_node_scope).  The fill colour
 * says what the node is: input, parameter, constant (const, fill and random sources), a
 * gradient node appended by autodiff, or ordinary compute.  Nodes passed as outputs get a bold
 * double border.  Nodes of one fused group are drawn inside one cluster.  Edges run from an
 * input to its consumer and carry the input's index when the consumer has more than one input.
 *
 * By layer (opts.layers): the nodes of each scope (a bijector layer, "3.affine_coupling", or
 * the prior) are drawn inside one labelled cluster, its forward nodes and its gradient nodes in
 * two ("3.affine_coupling" and "3.affine_coupling (gradient)"); a fused group inside one layer
 * is a cluster inside the layer's, one spanning layers stays outside them.  With opts.collapse
 * each layer cluster is drawn as a single box (its node count and commonest ops) and the edges
 * between layers as edges between boxes: a page for a whole Glow.
 *
 * Dumps are deterministic: Graphviz node names are "n<id>" and nodes and edges are emitted in
 * id order, so two DOT dumps of one graph are byte-identical.
 *
 * Graphviz keeps global state (its error handler, default attributes), so dumps are serialised
 * by a lock inside this module; Graphviz's own messages are captured into the error, never
 * printed. */
#ifndef FG_DOT_H
#define FG_DOT_H

#include <stdbool.h>
#include <stdint.h>

#include "core/ir/graph.h"
#include "core/status.h"

typedef enum fg_dot_format { FG_DOT_DOT, FG_DOT_SVG, FG_DOT_PNG } fg_dot_format;

typedef struct fg_dot_opts {
  const char *title;      /* graph label, or NULL */
  const int32_t *group;   /* per node id: fused-group number, or -1 (NULL: no groups); a
                             group's nodes are drawn inside one cluster "fused group k" */
  const fg_node *outputs; /* nodes to mark as outputs, or NULL */
  int n_outputs;
  const uint8_t *skip;    /* per node id: 1 = do not draw (dead code), or NULL */
  bool layers;            /* clusters by scope, forward and gradient apart (see above) */
  bool collapse;          /* with layers: one box per layer cluster */
} fg_dot_opts;

/* Fill colours of the roles, as written in the DOT text (fillcolor="..."). */
#define FG_DOT_COLOR_INPUT "#cfe2f3"
#define FG_DOT_COLOR_PARAM "#d9ead3"
#define FG_DOT_COLOR_CONST "#eeeeee"
#define FG_DOT_COLOR_GRAD "#fce5cd"
#define FG_DOT_COLOR_COMPUTE "#ffffff"
/* Border colour of output nodes (drawn with peripheries=2). */
#define FG_DOT_COLOR_OUTPUT "#c00000"
/* Fill of a collapsed layer's box. */
#define FG_DOT_COLOR_LAYER "#f3f0ff"

/* Format from the path's extension: .dot/.gv, .svg, .png; FG_E_MISUSE otherwise. */
fg_status fg_dot_format_of(const char *path, fg_dot_format *fmt, fg_err *e);

/* Writes g to path (DOT text, or rendered SVG/PNG).  opts may be NULL (no title, groups,
 * outputs or skips).  The file replaces path atomically (core/atomic_file.h), so a failed dump
 * leaves whatever was at path untouched and never a half-written file.  Errors (unwritable
 * path, an output id outside the graph, Graphviz failure) come back as a status + message
 * naming the path; nothing is printed. */
fg_status fg_dot_write(const fg_graph *g, const fg_dot_opts *opts, fg_dot_format fmt,
                       const char *path, fg_err *e);

#endif
