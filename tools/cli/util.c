#include <string.h>

#include "tools/cli/cli.h"

const char *cli_option(int argc, char **argv, const char *name) {
  for (int i = 1; i + 1 < argc; i++)
    if (!strcmp(argv[i], name)) return argv[i + 1];
  return NULL;
}

bool cli_flag(int argc, char **argv, const char *name) {
  for (int i = 1; i < argc; i++)
    if (!strcmp(argv[i], name)) return true;
  return false;
}

static bool takes_value(const char *arg, const char *const *valued) {
  for (int i = 0; valued && valued[i]; i++)
    if (!strcmp(arg, valued[i])) return true;
  return false;
}

int cli_positionals(int argc, char **argv, const char **out, int cap, const char *const *valued) {
  int n = 0;
  for (int i = 1; i < argc; i++) {
    if (argv[i][0] == '-' && argv[i][1]) {
      if (takes_value(argv[i], valued)) i++;
      continue;
    }
    if (n < cap) out[n] = argv[i];
    n++;
  }
  return n;
}

int cli_exit_code(fg_status st) {
  switch (st) {
  case FG_OK: return EXIT_OK;
  case FG_E_IO: return EXIT_IO;
  case FG_E_FORMAT: case FG_E_PLUGIN: case FG_E_NOTFOUND: case FG_E_EXISTS: case FG_E_SHAPE:
  case FG_E_DTYPE: case FG_E_OVERFLOW: return EXIT_BAD_INPUT;
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
    if (fg_registry_load_plugin(r, argv[i + 1], &e) != FG_OK) {
      fprintf(stderr, "flowgrad: %s\n", e.msg);
      fg_registry_free(r);
      return NULL;
    }
  }
  return r;
}

/* The options that take a value in the commands that read a checkpoint (sample, eval, density,
 * interpolate, edit): their values are not positionals. */
static const char *const checkpoint_valued[] = {
    "--n",     "--temperature", "--out",     "--seed",      "--steps",
    "--pairs", "--plugin",      "--threads", "--class",     "--grid",
    "--from",  "--to",          "--scales",  "--per-class", NULL};

int cli_checkpoint_arg(int argc, char **argv, const char *cmd, const char **ckpt) {
  if (cli_positionals(argc, argv, ckpt, 1, checkpoint_valued) != 1) {
    fprintf(stderr, "usage: flowgrad %s CHECKPOINT [options] (flowgrad %s --help)\n", cmd, cmd);
    return EXIT_USAGE;
  }
  return EXIT_OK;
}
