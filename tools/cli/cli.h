/* The `flowgrad` command: one file per subcommand (tools/cli/<name>.c; flowgrad.c dispatches,
 * model.c loads what they work on, util.c parses arguments), this header between them.  Exit
 * codes (documented in `flowgrad --help` and README):
 *   0 success, 1 the job failed (a check failed, training gave up on non-finite steps),
 *   2 usage error (an unknown option, a missing or malformed value), 3 bad input (spec, data,
 *   checkpoint or plugin, with file:line where there is one), 4 I/O error, 130 interrupted
 *   (Ctrl-C or SIGTERM; train saved its checkpoint first). */
#ifndef FG_CLI_H
#define FG_CLI_H

#include <stdbool.h>
#include <stdio.h>

#include "core/runtime/threadpool.h"
#include "core/status.h"
#include "flows/flow.h"
#include "flows/registry.h"
#include "flows/train/checkpoint.h"
#include "flows/train/trainer.h"
#include "frontends/data/data_source.h"
#include "frontends/spec/spec.h"

enum {
  EXIT_OK = 0,
  EXIT_JOB_FAILED = 1,
  EXIT_USAGE = 2,
  EXIT_BAD_INPUT = 3,
  EXIT_IO = 4,
  EXIT_INTERRUPTED = 130
};

typedef struct cli_command {
  const char *name;
  const char *summary;
  const char *usage; /* the full --help text */
  int (*run)(int argc, char **argv);
} cli_command;

/* A command's options, a table ending with {NULL}: a flag, a text value (--plugin may repeat),
 * or an integer or a finite number in [lo, hi]. */
typedef enum cli_kind { CLI_FLAG, CLI_TEXT, CLI_INT, CLI_NUM } cli_kind;
typedef struct cli_opt {
  const char *name;
  cli_kind kind;
  double lo, hi;
} cli_opt;
#define CLI_PLUGIN_OPT \
  { "--plugin", CLI_TEXT, 0, 0 }
#define CLI_THREADS_OPT \
  { "--threads", CLI_INT, 0, FG_POOL_MAX_THREADS }
/* Checks argv[1..] against opts before a command does anything: an unknown option, a valued
 * option without its value, a value that is not a whole integer or finite number in range is a
 * usage error naming the option (printed; EXIT_USAGE).  The positional arguments go to pos (at
 * most cap; *n_pos counts them all). */
int cli_parse(int argc, char **argv, const char *cmd, const cli_opt *opts, const char **pos,
              int cap, int *n_pos);
/* Values of options cli_parse accepted (the last one given wins): the text or NULL, whether a
 * flag is there, an integer or a number (fallback when absent). */
const char *cli_option(int argc, char **argv, const char *name);
bool cli_flag(int argc, char **argv, const char *name);
int64_t cli_int(int argc, char **argv, const char *name, int64_t fallback);
double cli_num(int argc, char **argv, const char *name, double fallback);
/* Exit code for a library status. */
int cli_exit_code(fg_status st);
/* A registry with the built-ins and every --plugin given; prints the error and returns NULL. */
fg_registry *cli_registry(int argc, char **argv);
/* Prints "flowgrad <cmd>: <message>" to stderr and returns the exit code for st. */
int cli_fail(const char *cmd, fg_status st, const char *msg);
/* cli_parse for a command that reads a checkpoint, whose one positional argument goes to *ckpt;
 * EXIT_USAGE (usage printed) when there is not exactly one. */
int cli_checkpoint_arg(int argc, char **argv, const char *cmd, const cli_opt *opts,
                       const char **ckpt);

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
/* EXIT_OK when the spec's batch fits the training data; else bad input at the batch line. */
int cli_check_batch(cli_model *m, const char *cmd);
/* Compiles and runs out (one output) over m's parameters, with `input` bound to x when given;
 * *result is a float32 copy of the output, the caller's. */
fg_status cli_run_one(cli_model *m, fg_graph *g, fg_node out, const char *input, const fg_tensor *x,
                      fg_tensor **result, fg_err *e);
/* n samples at `temperature` as a PNG grid at path: the visual check of a run (sample.c). */
fg_status cli_write_samples(cli_model *m, int64_t n, double temperature, uint64_t seed,
                            const char *path, fg_err *e);

extern const cli_command cli_check, cli_list, cli_train, cli_eval, cli_sample, cli_interpolate, cli_dump;

#endif
