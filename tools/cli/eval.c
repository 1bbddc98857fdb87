/* flowgrad eval: the test-set loss of a checkpoint, as training evaluated it. */
#include <stdlib.h>

#include "tools/cli/cli.h"

static int run_eval(int argc, char **argv) {
  const char *ckpt;
  int code = cli_checkpoint_arg(argc, argv, "eval", &ckpt);
  if (code != EXIT_OK) return code;
  cli_model m;
  code = cli_model_from_checkpoint(&m, "eval", ckpt, argc, argv, true);
  fg_trainer *t = NULL;
  fg_err e;
  double mean = 0;
  fg_status st = FG_OK;
  if (code == EXIT_OK) {
    fg_trainer_data d = {m.data.train, m.data.test, m.data.discrete, m.data.train_labels,
                         m.data.test_labels};
    const char *v = cli_option(argc, argv, "--threads");
    st = fg_trainer_new(&t, m.flow, &m.spec->train, &d, v ? atoi(v) : 0, &e);
    if (st == FG_OK) st = fg_trainer_load(t, ckpt, &e); /* the EMA weights, as training evaluated */
    if (st == FG_OK) st = fg_trainer_evaluate(t, &mean, &e);
    if (st != FG_OK) code = cli_fail("eval", st, e.msg);
  }
  if (code == EXIT_OK) printf("test %s: %.4f (step %lld)\n", fg_trainer_unit(t), mean, (long long)fg_trainer_step_count(t));
  fg_trainer_free(t);
  cli_model_free(&m);
  return code;
}

const cli_command cli_eval = {
    "eval", "test-set loss of a checkpoint (bits/dim for images)",
    "usage: flowgrad eval CHECKPOINT [--threads N]\n\n"
    "Evaluates the checkpoint's (EMA) weights on the test split of its spec's data, with the same\n"
    "fixed dequantisation noise training used, and prints the mean bits/dim (nats for 2-D data).\n",
    run_eval};
