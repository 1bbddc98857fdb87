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
  /* up to CLI_PREVIEW training samples (and labels) kept for pictures after data is freed */
  fg_tensor *preview, *preview_labels;
  /* its programs time no kernels (a data-parallel job's: two runs of it give the same files) */
  bool deterministic;
} cli_model;

enum { CLI_PREVIEW = 2000 };

/* From a spec file: parse it, load its data (limit > 0 keeps that many training samples),
 * build the flow.  Returns an exit code (messages printed). */
int cli_model_from_spec(cli_model *m, const char *cmd, const char *path, int argc, char **argv,
                        int64_t limit);
/* From a checkpoint: the spec in its metadata, its weights (EMA ones when present); data only
 * when load_data. */
int cli_model_from_checkpoint(cli_model *m, const char *cmd, const char *ckpt, int argc,
                              char **argv, bool load_data);
void cli_model_free(cli_model *m);
/* EXIT_OK when the spec's batch fits the training data; else bad input at the batch line. */
int cli_check_batch(cli_model *m, const char *cmd);
/* Compiles and runs out (one output) over m's parameters, with `input` bound to x when given;
 * *result is a float32 copy of the output, the caller's. */
fg_status cli_run_one(cli_model *m, fg_graph *g, fg_node out, const char *input, const fg_tensor *x,
                      fg_tensor **result, fg_err *e);
/* The same with several named inputs (a NULL tensor is skipped). */
typedef struct cli_input {
  const char *name;
  const fg_tensor *value;
} cli_input;
fg_status cli_run(cli_model *m, fg_graph *g, fg_node out, int n_inputs, const cli_input *inputs,
                  fg_tensor **result, fg_err *e);
/* Compiles outs over m's parameters (bound) as m's programs are compiled (`deterministic`). */
fg_status cli_program(const cli_model *m, fg_graph *g, int n_out, const fg_node *outs,
                      fg_program **p, fg_err *e);

/* ---- conditional models and pictures (model.c) ---- */
enum { CLI_NO_CLASS = -1, CLI_ALL_CLASSES = -2 };
/* The model's classes (its context size; 0 for an unconditional model). */
int64_t cli_classes(const cli_model *m);
/* --class: a class index, a class name of the model's data ("Trouser", any case) or "all";
 * prints the error and returns EXIT_USAGE for anything else.  The classes are the model's, or
 * for an unconditional model those of its loaded data's labels. */
int cli_class_arg(const cli_model *m, const char *cmd, const char *text, int64_t *klass);
/* Class k's name ("Trouser"), or "class k" when its data has no names; into buf. */
const char *cli_class_name(const cli_model *m, int64_t k, char *buf, size_t cap);
/* Data as the model sees it: images' levels put at the centre of their bin in [0, 1) (as
 * dequantisation does on average), other data as it is; *y the caller's (flow dtype). */
fg_status cli_model_input(const cli_model *m, const fg_tensor *x, fg_tensor **y, fg_err *e);
/* The one-hot contexts of labels [N] for a conditional model; NULL (and FG_OK) otherwise. */
fg_status cli_context(const cli_model *m, const fg_tensor *labels, fg_tensor **out, fg_err *e);
/* A "context" input for n samples of a conditional model's graph; FG_NONE otherwise. */
fg_node cli_context_input(const cli_model *m, fg_graph *g, int64_t n);
/* Keeps the first CLI_PREVIEW training samples and labels of m->data in m->preview. */
fg_status cli_model_keep_preview(cli_model *m, fg_err *e);
/* True for models of 2-D points (scatter and density pictures). */
bool cli_is_2d(const cli_model *m);

/* n samples at `temperature` as a picture at path: a PNG grid of images, or a scatter plot of
 * 2-D points; of class klass, or n of every class (CLI_ALL_CLASSES, one row per class), for a
 * conditional model (sample.c).  The visual check of a run. */
fg_status cli_write_samples(cli_model *m, int64_t klass, int64_t n, double temperature,
                            uint64_t seed, const char *path, fg_err *e);
/* A 2-D model's density p(x) (p(x | klass) for one class of a conditional model) as a heatmap on
 * a grid x grid lattice over the preview points' box, the points drawn over it (density.c). */
fg_status cli_write_density(cli_model *m, int64_t klass, int64_t grid, const char *path, fg_err *e);

extern const cli_command cli_check, cli_list, cli_train, cli_eval, cli_sample, cli_interpolate,
    cli_edit, cli_density, cli_dump;

/* Images of v [n, ...] with a non-finite value are set mid-grey, and counted: an under-trained
 * flow's inverse can overflow on some latents (a coupling divides by a scale near 0), and the
 * rest of a picture is still worth showing (model.c). */
int64_t cli_grey_out_non_finite(fg_tensor *v);

#endif
