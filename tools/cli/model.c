/* Loading what the commands work on: spec text -> bijector -> flow, data, checkpoints. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/runtime/program.h"
#include "tools/cli/cli.h"

void cli_model_free(cli_model *m) {
  fg_tensor_free(m->preview);
  fg_tensor_free(m->preview_labels);
  fg_flow_free(m->flow);
  fg_spec_free(m->spec);
  fg_registry_free(m->r);
  fg_data_free(&m->data);
  free(m->spec_text);
  memset(m, 0, sizeof *m);
}

static int build_flow(cli_model *m, const char *cmd, fg_shape event) {
  fg_err e;
  fg_flow_config cfg = fg_spec_flow_config(m->spec, event);
  fg_bijector *b = m->spec->flow;
  m->spec->flow = NULL; /* the flow owns it now */
  fg_status st = fg_flow_new_config(&m->flow, b, &cfg, &e);
  return st == FG_OK ? EXIT_OK : cli_fail(cmd, st, e.msg);
}

static int parse_spec(cli_model *m, const char *cmd, const char *path) {
  fg_err e;
  fg_status st = fg_spec_parse(&m->spec, m->spec_text, path, m->r, &e);
  return st == FG_OK ? EXIT_OK : cli_fail(cmd, st, e.msg);
}

/* The spec's data; a failure is bad input at the spec's `data` line (an I/O error stays one). */
static int open_data(cli_model *m, const char *cmd, int64_t limit) {
  fg_err e;
  fg_status st = fg_data_open(&m->data, m->spec->data, limit, &e);
  if (st == FG_OK) return EXIT_OK;
  char where[512];
  fprintf(stderr, "flowgrad %s: %s: %s\n", cmd, fg_spec_where(m->spec, "data", where, sizeof where),
          e.msg);
  return st == FG_E_IO ? EXIT_IO : st == FG_E_NOMEM ? EXIT_JOB_FAILED : EXIT_BAD_INPUT;
}

int cli_check_batch(cli_model *m, const char *cmd) {
  int64_t rows = m->data.train ? m->data.train->shape.d[0] : 0;
  if (m->spec->train.batch <= rows) return EXIT_OK;
  char where[512];
  fprintf(stderr, "flowgrad %s: %s: batch %lld is larger than the training set (%lld samples)\n",
          cmd, fg_spec_where(m->spec, "batch", where, sizeof where),
          (long long)m->spec->train.batch, (long long)rows);
  return EXIT_BAD_INPUT;
}

int cli_model_from_spec(cli_model *m, const char *cmd, const char *path, int argc, char **argv,
                        int64_t limit) {
  memset(m, 0, sizeof *m);
  fg_err e;
  fg_status st = fg_spec_read_file(&m->spec_text, path, &e);
  if (st != FG_OK) return cli_fail(cmd, st, e.msg);
  if (!(m->r = cli_registry(argc, argv))) return EXIT_BAD_INPUT;
  int code = parse_spec(m, cmd, path);
  if (code == EXIT_OK) code = open_data(m, cmd, limit);
  if (code != EXIT_OK) return code;
  m->discrete = m->data.discrete;
  m->n_bits = m->spec->train.n_bits;
  fg_shape event = m->data.train->shape;
  event.ndim--;
  memmove(event.d, event.d + 1, sizeof *event.d * (size_t)event.ndim);
  event.d[event.ndim] = 0;
  return build_flow(m, cmd, event);
}

int cli_model_from_checkpoint(cli_model *m, const char *cmd, const char *ckpt, int argc,
                              char **argv, bool load_data) {
  memset(m, 0, sizeof *m);
  fg_err e;
  fg_checkpoint_meta meta;
  fg_status st = fg_checkpoint_read_meta(ckpt, &meta, &e);
  if (st != FG_OK) return cli_fail(cmd, st, e.msg);
  m->spec_text = meta.spec;
  meta.spec = NULL;
  m->discrete = meta.discrete;
  m->n_bits = meta.n_bits;
  int code = (m->r = cli_registry(argc, argv)) ? EXIT_OK : EXIT_BAD_INPUT;
  /* a plugin type the spec needs and --plugin did not load: say which file to pass */
  if (code == EXIT_OK && (st = fg_checkpoint_check_plugins(&meta, m->r, &e)) != FG_OK)
    code = cli_fail(cmd, st, e.msg);
  if (code == EXIT_OK) code = parse_spec(m, cmd, ckpt);
  if (code == EXIT_OK && load_data) code = open_data(m, cmd, 0);
  if (code == EXIT_OK) code = build_flow(m, cmd, meta.event);
  if (code == EXIT_OK && (st = fg_checkpoint_load_params(m->flow, ckpt, true, &e)) != FG_OK)
    code = cli_fail(cmd, st, e.msg);
  fg_checkpoint_meta_free(&meta);
  return code;
}

fg_status cli_program(const cli_model *m, fg_graph *g, int n_out, const fg_node *outs,
                      fg_program **p, fg_err *e) {
  fg_program_opts po = {.deterministic = m->deterministic};
  fg_status st = fg_program_new_opts(p, g, n_out, outs, &po, e);
  if (st == FG_OK) st = fg_params_bind(fg_flow_params(m->flow), *p, e);
  return st;
}

/* Runs a one-output program over the flow's parameters; returns the output (a new tensor). */
fg_status cli_run(cli_model *m, fg_graph *g, fg_node out, int n_inputs, const cli_input *inputs,
                  fg_tensor **result, fg_err *e) {
  fg_program *p;
  if (fg_graph_status(g) != FG_OK)
    return fg_err_set(e, fg_graph_status(g), "%s", fg_graph_errmsg(g));
  fg_status st = cli_program(m, g, 1, &out, &p, e);
  for (int i = 0; st == FG_OK && i < n_inputs; i++)
    if (inputs[i].value) st = fg_program_bind(p, inputs[i].name, inputs[i].value, e);
  if (st == FG_OK) st = fg_program_run(p, e);
  if (st == FG_OK) st = fg_tensor_copy(result, fg_program_output(p, 0), FG_F32, e);
  fg_program_free(p);
  return st;
}

fg_status cli_run_one(cli_model *m, fg_graph *g, fg_node out, const char *input, const fg_tensor *x,
                      fg_tensor **result, fg_err *e) {
  cli_input in = {input, x};
  return cli_run(m, g, out, input ? 1 : 0, &in, result, e);
}

/* ---- conditional models and pictures ---- */

int64_t cli_classes(const cli_model *m) { return fg_flow_context_size(m->flow); }

bool cli_is_2d(const cli_model *m) {
  const fg_shape *ev = &fg_flow_get_config(m->flow)->event;
  return !m->discrete && ev->ndim == 1 && ev->d[0] == 2;
}

const char *cli_class_name(const cli_model *m, int64_t k, char *buf, size_t cap) {
  const char *name = fg_data_class_name(m->spec ? m->spec->data : NULL, k);
  if (name) snprintf(buf, cap, "%s", name);
  else snprintf(buf, cap, "class %lld", (long long)k);
  return buf;
}

int cli_class_arg(const cli_model *m, const char *cmd, const char *text, int64_t *klass) {
  int64_t k =
      cli_classes(m) ? cli_classes(m) : m->data.classes; /* edits work on any labelled data */
  if (!strcmp(text, "all")) {
    *klass = CLI_ALL_CLASSES;
    return EXIT_OK;
  }
  char *end;
  long long v = strtoll(text, &end, 10);
  if (*text && !*end && v >= 0 && v < k) {
    *klass = v;
    return EXIT_OK;
  }
  for (int64_t i = 0; i < k; i++) {
    const char *name = fg_data_class_name(m->spec->data, i);
    if (name && !strcasecmp(name, text)) {
      *klass = i;
      return EXIT_OK;
    }
  }
  fprintf(stderr, "flowgrad %s: --class %s: %s\n", cmd, text,
          k ? "not a class of this model (an index 0..classes-1, a class name, or all)"
            : "this model is not conditional (a spec's `classes N` line makes one)");
  return EXIT_USAGE;
}

fg_status cli_model_input(const cli_model *m, const fg_tensor *x, fg_tensor **y, fg_err *e) {
  fg_status st = fg_tensor_copy(y, x, fg_flow_get_config(m->flow)->dtype, e);
  double bins = (double)(1 << m->n_bits), shift = 256.0 / bins;
  for (int64_t i = 0; st == FG_OK && m->discrete && i < fg_tensor_numel(*y); i++)
    fg_tensor_set(*y, i, (floor(fg_tensor_get(*y, i) / shift) + 0.5) / bins);
  return st;
}

fg_status cli_context(const cli_model *m, const fg_tensor *labels, fg_tensor **out, fg_err *e) {
  *out = NULL;
  return cli_classes(m) && labels ? fg_flow_class_context(out, m->flow, labels, e) : FG_OK;
}

fg_node cli_context_input(const cli_model *m, fg_graph *g, int64_t n) {
  int64_t k = cli_classes(m);
  return k ? fg_input(g, "context", fg_flow_get_config(m->flow)->dtype, fg_shape2(n, k)) : FG_NONE;
}

static fg_status first_rows(const fg_tensor *t, int64_t n, fg_tensor **out, fg_err *e) {
  fg_tensor *view;
  fg_status st = fg_tensor_slice0(&view, t, 0, n, e);
  if (st == FG_OK) st = fg_tensor_copy(out, view, t->dtype, e);
  fg_tensor_free(view);
  return st;
}

fg_status cli_model_keep_preview(cli_model *m, fg_err *e) {
  const fg_tensor *x = m->data.train;
  if (!x) return FG_OK;
  int64_t n = x->shape.d[0] < CLI_PREVIEW ? x->shape.d[0] : CLI_PREVIEW;
  fg_status st = first_rows(x, n, &m->preview, e);
  if (st == FG_OK && m->data.train_labels)
    st = first_rows(m->data.train_labels, n, &m->preview_labels, e);
  return st;
}

int64_t cli_grey_out_non_finite(fg_tensor *v) {
  int64_t n = v->shape.d[0], per = n ? fg_tensor_numel(v) / n : 0, bad = 0;
  for (int64_t i = 0; i < n; i++) {
    bool finite = true;
    for (int64_t j = 0; j < per && finite; j++) finite = isfinite(fg_tensor_get(v, i * per + j));
    if (finite) continue;
    bad++;
    for (int64_t j = 0; j < per; j++) fg_tensor_set(v, i * per + j, 0.5);
  }
  return bad;
}
