/* A training run's record: every step's loss, rate and learning rate and every test evaluation,
 * written to <run>/metrics.csv and drawn as <run>/loss.png at every checkpoint (train.c). */
#ifndef FG_CLI_METRICS_H
#define FG_CLI_METRICS_H

#include <stdint.h>

#include "core/status.h"

typedef struct cli_metrics_row {
  int64_t step;
  double loss, test, rate, lr; /* test: NaN when not evaluated at this step */
} cli_metrics_row;

typedef struct cli_metrics {
  cli_metrics_row *rows;
  int64_t n, cap;
} cli_metrics;

void cli_metrics_free(cli_metrics *m);
/* A resumed run continues its record: the rows of <dir>/metrics.csv up to `step` (none when
 * there is no file; a malformed line ends the reading there). */
void cli_metrics_resume(cli_metrics *m, const char *dir, int64_t step);
fg_status cli_metrics_add(cli_metrics *m, int64_t step, double loss, double rate, double lr);
/* The test loss at `step` (on that step's row, or a new one). */
fg_status cli_metrics_test(cli_metrics *m, int64_t step, double test);
/* <dir>/metrics.csv (step,loss,test_loss,samples_per_s,lr) and <dir>/loss.png, each replaced
 * atomically; unit names the loss ("bits/dim"). */
fg_status cli_metrics_write(const cli_metrics *m, const char *dir, const char *unit, fg_err *e);

#endif
