/* flowgrad list: the registered bijector types and their constructor arguments. */
#include "tools/cli/cli.h"

static const cli_opt options[] = {CLI_PLUGIN_OPT, {NULL, CLI_FLAG, 0, 0}};

static int run_list(int argc, char **argv) {
  int n_pos;
  int code = cli_parse(argc, argv, "list", options, NULL, 0, &n_pos);
  if (code != EXIT_OK) return code;
  if (n_pos) return cli_fail("list", FG_E_MISUSE, "takes no arguments (flowgrad list --help)");
  fg_registry *r = cli_registry(argc, argv);
  if (!r) return EXIT_BAD_INPUT;
  for (int i = 0; i < fg_registry_count(r); i++) {
    const fg_bijector_type *t = fg_registry_type(r, i);
    printf("%-20s %s%s%s\n", t->name, t->doc ? t->doc : "",
           fg_registry_origin(r, i) ? "  [plugin " : "",
           fg_registry_origin(r, i) ? fg_registry_origin(r, i) : "");
    for (int a = 0; a < t->n_args; a++) {
      static const char *const kinds[] = {"int", "double", "bool", "string", "ints"};
      printf("    %-14s %-7s %s%s%s\n", t->args[a].name, kinds[t->args[a].kind],
             t->args[a].default_text ? "default " : "required",
             t->args[a].default_text ? t->args[a].default_text : "", "");
    }
  }
  fg_registry_free(r);
  return EXIT_OK;
}

const cli_command cli_list = {"list", "list registered bijector types and their arguments",
                              "usage: flowgrad list [--plugin lib.so]...\n\nPrints every "
                              "registered type with its constructor arguments "
                              "(kind, default).\n",
                              run_list};
