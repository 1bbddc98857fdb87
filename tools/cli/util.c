/* Arguments (each command's options declared in a table and checked before it runs), exit
 * codes, the registry with --plugin libraries, and the checkpoint argument. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tools/cli/cli.h"

static const cli_opt *find_opt(const cli_opt *opts, const char *name) {
  for (int i = 0; opts && opts[i].name; i++)
    if (!strcmp(opts[i].name, name)) return &opts[i];
  return NULL;
}

/* An integer or a number as the whole of text, finite, in [lo, hi]. */
static bool parse_value(const cli_opt *o, const char *text, double *out) {
  char *end;
  errno = 0;
  double v = o->kind == CLI_INT ? (double)strtoll(text, &end, 10) : strtod(text, &end);
  if (!*text || *end || errno || !isfinite(v) || v < o->lo || v > o->hi) return false;
  *out = v;
  return true;
}

static int usage_error(const char *cmd, const char *fmt, const char *a, const char *b) {
  fprintf(stderr, "flowgrad %s: ", cmd);
  fprintf(stderr, fmt, a, b);
  fprintf(stderr, " (flowgrad %s --help)\n", cmd);
  return EXIT_USAGE;
}

static const char *what_value(const cli_opt *o) {
  return o->kind == CLI_INT ? "an integer" : "a finite number";
}

int cli_parse(int argc, char **argv, const char *cmd, const cli_opt *opts, const char **pos,
              int cap, int *n_pos) {
  *n_pos = 0;
  for (int i = 1; i < argc; i++) {
    const char *arg = argv[i];
    if (arg[0] != '-' || !arg[1]) {
      if (*n_pos < cap) pos[*n_pos] = arg;
      (*n_pos)++;
      continue;
    }
    const cli_opt *o = find_opt(opts, arg);
    if (!o) return usage_error(cmd, "unknown option '%s'%s", arg, "");
    if (o->kind == CLI_FLAG) continue;
    if (i + 1 >= argc) return usage_error(cmd, "option '%s' needs a value%s", arg, "");
    double v;
    const char *text = argv[++i];
    if ((o->kind == CLI_INT || o->kind == CLI_NUM) && !parse_value(o, text, &v)) {
      char range[96];
      snprintf(range, sizeof range, "%s from %.17g to %.17g", what_value(o), o->lo, o->hi);
      fprintf(stderr, "flowgrad %s: option '%s' takes %s, not '%s' (flowgrad %s --help)\n", cmd,
              arg, range, text, cmd);
      return EXIT_USAGE;
    }
  }
  return EXIT_OK;
}

const char *cli_option(int argc, char **argv, const char *name) {
  const char *last = NULL;
  for (int i = 1; i + 1 < argc; i++)
    if (!strcmp(argv[i], name)) last = argv[++i];
  return last;
}

bool cli_flag(int argc, char **argv, const char *name) {
  for (int i = 1; i < argc; i++)
    if (!strcmp(argv[i], name)) return true;
  return false;
}

int64_t cli_int(int argc, char **argv, const char *name, int64_t fallback) {
  const char *v = cli_option(argc, argv, name);
  return v ? strtoll(v, NULL, 10) : fallback;
}

double cli_num(int argc, char **argv, const char *name, double fallback) {
  const char *v = cli_option(argc, argv, name);
  return v ? strtod(v, NULL) : fallback;
}

int cli_exit_code(fg_status st) {
  switch (st) {
  case FG_OK: return EXIT_OK;
  case FG_E_IO: return EXIT_IO;
  case FG_E_FORMAT: case FG_E_PLUGIN: case FG_E_NOTFOUND: case FG_E_EXISTS: case FG_E_SHAPE:
  case FG_E_DTYPE:
  case FG_E_OVERFLOW:
  case FG_E_LIMIT:
    return EXIT_BAD_INPUT;
  case FG_E_MISUSE: return EXIT_USAGE;
  default: return EXIT_JOB_FAILED;
  }
}

int cli_fail(const char *cmd, fg_status st, const char *msg) {
  fprintf(stderr, "flowgrad %s: %s\n", cmd, msg);
  return cli_exit_code(st);
}

fg_registry *cli_registry(int argc, char **argv) {
  fg_registry *r;
  fg_err e;
  if (fg_registry_new(&r, &e) != FG_OK || fg_registry_add_builtins(r, &e) != FG_OK) {
    fprintf(stderr, "flowgrad: %s\n", e.msg);
    fg_registry_free(r);
    return NULL;
  }
  for (int i = 1; i + 1 < argc; i++) {
    if (strcmp(argv[i], "--plugin")) continue;
    if (fg_registry_load_plugin(r, argv[++i], &e) != FG_OK) {
      fprintf(stderr, "flowgrad: %s\n", e.msg);
      fg_registry_free(r);
      return NULL;
    }
  }
  return r;
}

int cli_checkpoint_arg(int argc, char **argv, const char *cmd, const cli_opt *opts,
                       const char **ckpt) {
  int n;
  int code = cli_parse(argc, argv, cmd, opts, ckpt, 1, &n);
  if (code == EXIT_OK && n != 1) {
    fprintf(stderr, "usage: flowgrad %s CHECKPOINT [options] (flowgrad %s --help)\n", cmd, cmd);
    return EXIT_USAGE;
  }
  return code;
}
