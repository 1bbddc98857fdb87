/* flowgrad eval: the test-set loss of a checkpoint, as training evaluated it. */
#include <stdlib.h>

#include "tools/cli/cli.h"

static const cli_opt options[] = {
    CLI_THREADS_OPT, CLI_PLUGIN_OPT, {"--eval-limit", CLI_INT, 0, 1e15}, {NULL, CLI_FLAG, 0, 0}};

static int run_eval(int argc, char **argv) {
  const char *ckpt;
  int code = cli_checkpoint_arg(argc, argv, "eval", options, &ckpt);
  if (code != EXIT_OK) return code;
  cli_model m;
  code = cli_model_from_checkpoint(&m, "eval", ckpt, argc, argv, true);
  if (code == EXIT_OK) code = cli_check_batch(&m, "eval");
  fg_trainer *t = NULL;
  fg_err e;
  double mean = 0;
  int64_t rows = 0;
  fg_status st = FG_OK;
  if (code == EXIT_OK) {
    fg_trainer_data d = {m.data.train, m.data.test, m.data.discrete, m.data.train_labels,
                         m.data.test_labels};
    fg_eval_opts o = {.max_rows = cli_int(argc, argv, "--eval-limit", 0)};
    st = fg_trainer_new(&t, m.flow, &m.spec->train, &d, (int)cli_int(argc, argv, "--threads", 0),
                        &e);
    if (st == FG_OK) st = fg_trainer_load(t, ckpt, &e); /* the EMA weights, as training evaluated */
    if (st == FG_OK) st = fg_trainer_evaluate_opts(t, &o, &mean, &rows, &e);
    if (st != FG_OK) code = cli_fail("eval", st, e.msg);
  }
  if (code == EXIT_OK)
    printf("test %s: %.4f (step %lld, %s%lld of %lld test samples)\n", fg_trainer_unit(t), mean,
           (long long)fg_trainer_step_count(t),
           rows < fg_trainer_data_rows(t, true) ? "the first " : "all ", (long long)rows,
           (long long)fg_trainer_data_rows(t, true));
  fg_trainer_free(t);
  cli_model_free(&m);
  return code;
}

const cli_command cli_eval = {
    "eval", "test-set loss of a checkpoint (bits/dim for images)",
    "usage: flowgrad eval CHECKPOINT [--threads N] [--eval-limit N] [--plugin lib.so]...\n\n"
    "Evaluates the checkpoint's (EMA) weights on the test split of its spec's data, with the same\n"
    "fixed dequantisation noise training used, and prints the mean bits/dim (nats for 2-D data).\n"
    "  --eval-limit N   the first N test samples only (default: all)\n"
    "  --plugin lib.so  a plugin the checkpoint's spec needs (the error names it when missing)\n",
    run_eval};
