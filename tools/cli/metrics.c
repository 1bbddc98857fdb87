/* The training record (metrics.h): a CSV and a loss-curve picture. */
#include "tools/cli/metrics.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/atomic_file.h"
#include "core/formats/plot.h"
#include "core/vec.h"

void cli_metrics_free(cli_metrics *m) {
  free(m->rows);
  memset(m, 0, sizeof *m);
}

static fg_status push(cli_metrics *m, cli_metrics_row r) {
  if (!FG_VEC_RESERVE(m->rows, m->cap, m->n + 1)) return FG_E_NOMEM;
  m->rows[m->n++] = r;
  return FG_OK;
}

fg_status cli_metrics_add(cli_metrics *m, int64_t step, double loss, double rate, double lr) {
  return push(m, (cli_metrics_row){step, loss, NAN, rate, lr});
}

fg_status cli_metrics_test(cli_metrics *m, int64_t step, double test) {
  if (m->n && m->rows[m->n - 1].step == step) {
    m->rows[m->n - 1].test = test;
    return FG_OK;
  }
  return push(m, (cli_metrics_row){step, NAN, test, NAN, NAN});
}

/* "" for NaN: a CSV reader sees an empty field. */
static void field(FILE *f, double v, const char *fmt) {
  fputc(',', f);
  if (!isnan(v)) fprintf(f, fmt, v);
}

static fg_status write_csv(FILE *f, void *ctx, fg_err *e) {
  (void)e;
  const cli_metrics *m = ctx;
  fprintf(f, "step,loss,test_loss,samples_per_s,lr\n");
  for (int64_t i = 0; i < m->n; i++) {
    const cli_metrics_row *r = &m->rows[i];
    fprintf(f, "%lld", (long long)r->step);
    field(f, r->loss, "%.6g");
    field(f, r->test, "%.6g");
    field(f, r->rate, "%.1f");
    field(f, r->lr, "%.6g");
    fputc('\n', f);
  }
  return FG_OK;
}

/* An empty field is NaN. */
static double read_field(char **s) {
  char *end;
  double v = **s == ',' || **s == '\n' || !**s ? NAN : strtod(*s, &end);
  if (!isnan(v)) *s = end;
  if (**s == ',') (*s)++;
  return v;
}

void cli_metrics_resume(cli_metrics *m, const char *dir, int64_t step) {
  char path[4096], line[256];
  snprintf(path, sizeof path, "%s/metrics.csv", dir);
  FILE *f = fopen(path, "r");
  if (!f) return;
  if (!fgets(line, sizeof line, f) || strncmp(line, "step,", 5)) line[0] = '\0';
  while (line[0] && fgets(line, sizeof line, f)) {
    char *s = line, *end;
    long long at = strtoll(s, &end, 10);
    if (end == s || *end != ',' || at > step) break;
    s = end + 1;
    cli_metrics_row r = {.step = at};
    r.loss = read_field(&s), r.test = read_field(&s), r.rate = read_field(&s),
    r.lr = read_field(&s);
    if (push(m, r) != FG_OK) break;
  }
  fclose(f);
}

/* A running mean over `window` steps, so the trend shows through the batch-to-batch noise. */
static void smooth(const double *y, int64_t n, int64_t window, double *out) {
  double sum = 0;
  int64_t have = 0;
  for (int64_t i = 0; i < n; i++) {
    if (isfinite(y[i])) sum += y[i], have++;
    if (i >= window && isfinite(y[i - window])) sum -= y[i - window], have--;
    out[i] = have ? sum / (double)have : NAN;
  }
}

static int by_value(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* The y range: the lowest value, up to the 97th percentile of the losses, so the first steps'
 * large losses do not flatten the rest of the curve (they are drawn clipped at the top). */
static fg_plot_box curve_box(const cli_metrics *m, const double *loss, const double *test,
                             double *tmp) {
  fg_plot_box b = {0, 1, INFINITY, -INFINITY};
  int64_t k = 0;
  for (int64_t i = 0; i < m->n; i++) {
    if (isfinite(loss[i])) tmp[k++] = loss[i];
    if (isfinite(loss[i])) b.y0 = fmin(b.y0, loss[i]);
    if (isfinite(test[i])) b.y0 = fmin(b.y0, test[i]), b.y1 = fmax(b.y1, test[i]);
    b.x1 = fmax(b.x1, (double)m->rows[i].step);
  }
  qsort(tmp, (size_t)k, sizeof *tmp, by_value);
  if (k) b.y1 = fmax(b.y1, tmp[(int64_t)(0.97 * (double)(k - 1))]);
  if (!(b.y1 > b.y0)) b.y0 = isfinite(b.y0) ? b.y0 - 1 : 0, b.y1 = b.y0 + 2;
  double pad = 0.06 * (b.y1 - b.y0);
  b.y0 -= pad, b.y1 += pad;
  return b;
}

static fg_status write_plot(const cli_metrics *m, const char *path, const char *unit, fg_err *e) {
  double *x = malloc(sizeof *x * (size_t)(5 * m->n + 1));
  if (!x) return fg_err_set(e, FG_E_NOMEM, "out of memory");
  double *loss = x + m->n, *test = loss + m->n, *smoothed = test + m->n, *scratch = smoothed + m->n;
  for (int64_t i = 0; i < m->n; i++)
    x[i] = (double)m->rows[i].step, loss[i] = m->rows[i].loss, test[i] = m->rows[i].test;
  int64_t window = m->n / 50 > 1 ? m->n / 50 : 1;
  smooth(loss, m->n, window, smoothed);
  fg_plot_box box = curve_box(m, loss, test, scratch);
  char name[64];
  snprintf(name, sizeof name, "train (mean of %lld)", (long long)window);
  fg_plot_series s[3] = {{x, loss, m->n, "train, per step", 0xaec7e8, false},
                         {x, smoothed, m->n, window > 1 ? name : NULL, 0x1f77b4, false},
                         {x, test, m->n, "test", 0xd62728, true}};
  fg_plot_opts o = {.title = "loss", .x_label = "step", .y_label = unit, .box = &box};
  fg_status st = fg_plot_lines(path, s, 3, &o, e);
  free(x);
  return st;
}

fg_status cli_metrics_write(const cli_metrics *m, const char *dir, const char *unit, fg_err *e) {
  char path[4096];
  snprintf(path, sizeof path, "%s/metrics.csv", dir);
  fg_status st = fg_atomic_file_write(path, write_csv, (void *)m, e);
  snprintf(path, sizeof path, "%s/loss.png", dir);
  if (st == FG_OK && m->n) st = write_plot(m, path, unit, e);
  return st;
}
