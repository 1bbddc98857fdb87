/* The `flowgrad` command: one file per subcommand (tools/cli/<name>.c; flowgrad.c dispatches,
 * model.c loads what they work on, util.c parses arguments), this header between them.  Exit codes (documented in `flowgrad --help` and README):
 *   0 success, 1 the job failed (a check failed, training gave up on non-finite steps),
 *   2 usage error, 3 bad input (spec, data, checkpoint or plugin), 4 I/O error. */
#ifndef FG_CLI_H
#define FG_CLI_H

#include <stdbool.h>
#include <stdio.h>

#include "core/status.h"
#include "flows/flow.h"
#include "flows/registry.h"
#include "flows/train/checkpoint.h"
#include "flows/train/trainer.h"
#include "frontends/data/data_source.h"
#include "frontends/spec/spec.h"

enum { EXIT_OK = 0, EXIT_JOB_FAILED = 1, EXIT_USAGE = 2, EXIT_BAD_INPUT = 3, EXIT_IO = 4 };

typedef struct cli_command {
  const char *name;
  const char *summary;
  const char *usage; /* the full --help text */
  int (*run)(int argc, char **argv);
} cli_command;

/* argv parsing helpers: `--name value` options; returns the value or NULL. */
const char *cli_option(int argc, char **argv, const char *name);
bool cli_flag(int argc, char **argv, const char *name);
/* Positional arguments (not options or option values), in order. */
int cli_positionals(int argc, char **argv, const char **out, int cap, const char *const *valued);
/* Exit code for a library status. */
int cli_exit_code(fg_status st);
/* A registry with the built-ins and every --plugin given; prints the error and returns NULL. */
fg_registry *cli_registry(int argc, char **argv);
/* Prints "flowgrad <cmd>: <message>" to stderr and returns the exit code for st. */
int cli_fail(const char *cmd, fg_status st, const char *msg);
/* The one positional argument of a command that reads a checkpoint, into *ckpt; EXIT_USAGE
 * (usage printed) when there is not exactly one. */
int cli_checkpoint_arg(int argc, char **argv, const char *cmd, const char **ckpt);

/* A model as the commands use it: spec, flow, data (each optional per command). */
typedef struct cli_model {
  fg_registry *r;
  fg_spec *spec;
  char *spec_text;
  fg_flow *flow;
  fg_data data;
  int64_t n_bits;
  bool discrete;
} cli_model;

/* From a spec file: parse it, load its data (limit > 0 keeps that many training samples),
 * build the flow.  Returns an exit code (messages printed). */
int cli_model_from_spec(cli_model *m, const char *cmd, const char *path, int argc, char **argv, int64_t limit);
/* From a checkpoint: the spec in its metadata, its weights (EMA ones when present); data only
 * when load_data. */
int cli_model_from_checkpoint(cli_model *m, const char *cmd, const char *ckpt, int argc, char **argv, bool load_data);
void cli_model_free(cli_model *m);
/* Compiles and runs out (one output) over m's parameters, with `input` bound to x when given;
 * *result is a float32 copy of the output, the caller's. */
fg_status cli_run_one(cli_model *m, fg_graph *g, fg_node out, const char *input, const fg_tensor *x,
                      fg_tensor **result, fg_err *e);
/* n samples at `temperature` as a PNG grid at path: the visual check of a run (sample.c). */
fg_status cli_write_samples(cli_model *m, int64_t n, double temperature, uint64_t seed,
                            const char *path, fg_err *e);

extern const cli_command cli_check, cli_list, cli_train, cli_eval, cli_sample, cli_interpolate, cli_dump;

#endif
