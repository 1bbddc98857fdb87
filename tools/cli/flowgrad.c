/* flowgrad: train, evaluate and sample normalizing flows; dump graphs; check bijectors. */
#include <stdlib.h>
#include <string.h>

#include "tools/cli/cli.h"

static const cli_command *const commands[] = {&cli_train, &cli_eval,   &cli_sample, &cli_density,
                                             &cli_interpolate, &cli_edit, &cli_dump, &cli_check,
                                             &cli_list};
enum { N_COMMANDS = sizeof commands / sizeof *commands };

static void usage(FILE *to) {
  fprintf(to,
          "usage: flowgrad <command> [options]   (flowgrad <command> --help for "
          "details)\n\ncommands:\n");
  for (int i = 0; i < N_COMMANDS; i++)
    fprintf(to, "  %-12s %s\n", commands[i]->name, commands[i]->summary);
  fprintf(to,
          "\nexit codes: 0 success, 1 the job failed, 2 usage error (unknown option, bad value),\n"
          "3 bad input (spec, data, checkpoint, plugin), 4 I/O error, 130 interrupted (Ctrl-C).\n"
          "environment: FG_THREADS=n, FG_PROFILE=1 or =N (per-op timing, N costliest shapes), "
          "FG_DISABLE_PASSES=cse,fuse,\n"
          "FG_DUMP_PASSES=dir, FG_POISON_FREED=1, FG_DATA_DIR=dir.\n");
}

int main(int argc, char **argv) {
  if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
    usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? EXIT_USAGE : EXIT_OK;
  }
  for (int i = 0; i < N_COMMANDS; i++) {
    if (strcmp(argv[1], commands[i]->name)) continue;
    if (cli_flag(argc - 1, argv + 1, "--help") || cli_flag(argc - 1, argv + 1, "-h")) {
      fputs(commands[i]->usage, stdout);
      return EXIT_OK;
    }
    return commands[i]->run(argc - 1, argv + 1);
  }
  fprintf(stderr, "flowgrad: unknown command '%s'\n\n", argv[1]);
  usage(stderr);
  return EXIT_USAGE;
}
