/* Loading what the commands work on: spec text -> bijector -> flow, data, checkpoints. */
#include <stdlib.h>
#include <string.h>

#include "core/runtime/program.h"
#include "tools/cli/cli.h"

void cli_model_free(cli_model *m) {
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

static int parse_spec(cli_model *m, const char *cmd, const char *path, int argc, char **argv) {
  fg_err e;
  if (!(m->r = cli_registry(argc, argv))) return EXIT_BAD_INPUT;
  fg_status st = fg_spec_parse(&m->spec, m->spec_text, path, m->r, &e);
  return st == FG_OK ? EXIT_OK : cli_fail(cmd, st, e.msg);
}

int cli_model_from_spec(cli_model *m, const char *cmd, const char *path, int argc, char **argv, int64_t limit) {
  memset(m, 0, sizeof *m);
  fg_err e;
  fg_status st = fg_spec_read_file(&m->spec_text, path, &e);
  if (st != FG_OK) return cli_fail(cmd, st, e.msg);
  int code = parse_spec(m, cmd, path, argc, argv);
  if (code != EXIT_OK) return code;
  st = fg_data_open(&m->data, m->spec->data, limit, &e);
  if (st != FG_OK) return cli_fail(cmd, st, e.msg);
  m->discrete = m->data.discrete;
  m->n_bits = m->spec->train.n_bits;
  fg_shape event = m->data.train->shape;
  event.ndim--;
  memmove(event.d, event.d + 1, sizeof *event.d * (size_t)event.ndim);
  event.d[event.ndim] = 0;
  return build_flow(m, cmd, event);
}

int cli_model_from_checkpoint(cli_model *m, const char *cmd, const char *ckpt, int argc, char **argv, bool load_data) {
  memset(m, 0, sizeof *m);
  fg_err e;
  fg_checkpoint_meta meta;
  fg_status st = fg_checkpoint_read_meta(ckpt, &meta, &e);
  if (st != FG_OK) return cli_fail(cmd, st, e.msg);
  m->spec_text = meta.spec;
  meta.spec = NULL;
  m->discrete = meta.discrete;
  m->n_bits = meta.n_bits;
  int code = parse_spec(m, cmd, ckpt, argc, argv);
  if (code == EXIT_OK && load_data && (st = fg_data_open(&m->data, m->spec->data, 0, &e)) != FG_OK)
    code = cli_fail(cmd, st, e.msg);
  if (code == EXIT_OK) code = build_flow(m, cmd, meta.event);
  if (code == EXIT_OK && (st = fg_checkpoint_load_params(m->flow, ckpt, true, &e)) != FG_OK) code = cli_fail(cmd, st, e.msg);
  fg_checkpoint_meta_free(&meta);
  return code;
}

/* Runs a one-output program over the flow's parameters; returns the output (a new tensor). */
fg_status cli_run_one(cli_model *m, fg_graph *g, fg_node out, const char *input, const fg_tensor *x,
                      fg_tensor **result, fg_err *e) {
  fg_program *p;
  fg_status st = fg_program_new(&p, g, 1, &out, e);
  if (st != FG_OK) return st;
  st = fg_params_bind(fg_flow_params(m->flow), p, e);
  if (st == FG_OK && input) st = fg_program_bind(p, input, x, e);
  if (st == FG_OK) st = fg_program_run(p, e);
  if (st == FG_OK) st = fg_tensor_copy(result, fg_program_output(p, 0), FG_F32, e);
  fg_program_free(p);
  return st;
}
