/* Plugins and constructor arguments: loading (a missing file, a library that is not a plugin, a
 * wrong ABI version, a duplicate name, an unknown type), the example plugin passing the
 * verification, and fg_bijector_new / fg_bijector_new_from_text — every argument kind reaching
 * a C constructor through libffi intact, and every kind of bad text rejected with a message
 * that names the argument and the offset.
 *
 * The modules are built by meson; their paths arrive as PLUGIN_* defines (tests/meson.build). */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flows/check.h"
#include "flows/registry.h"

#define MISSING_PLUGIN "/nonexistent/flowgrad/libplugin_missing.so"

#define cr_assert_msg_has(e, needle) cr_assert(strstr((e).msg, needle) != NULL, "expected \"%s\" in: %s", needle, (e).msg)

/* ======================================= loading ======================================= */

Test(plugins, a_missing_file_names_the_path_and_the_loader_error) {
  fg_registry *r;
  fg_registry_new(&r, NULL);
  fg_err e;
  cr_assert_eq(fg_registry_load_plugin(r, MISSING_PLUGIN, &e), FG_E_PLUGIN);
  cr_assert_msg_has(e, MISSING_PLUGIN);
  cr_assert_msg_has(e, "No such file or directory"); /* dlerror()'s own words */
  cr_assert_eq(fg_registry_count(r), 0);
  fg_registry_free(r);
}

/* dlopen looks a name without a slash up on the library search path, not in the current
 * directory: the message says how to name a file there. */
Test(plugins, a_name_without_a_slash_gets_a_hint) {
  fg_registry *r;
  fg_registry_new(&r, NULL);
  fg_err e;
  cr_assert_eq(fg_registry_load_plugin(r, "libplugin_missing.so", &e), FG_E_PLUGIN);
  cr_assert_msg_has(e, "libplugin_missing.so");
  cr_assert_msg_has(e, "./libplugin_missing.so");
  cr_assert_eq(fg_registry_load_plugin(r, MISSING_PLUGIN, &e), FG_E_PLUGIN);
  cr_assert(strstr(e.msg, "library search path") == NULL, "a path gets no hint: %s", e.msg);
  fg_registry_free(r);
}

Test(plugins, a_library_without_the_init_symbol_is_refused) {
  fg_registry *r;
  fg_registry_new(&r, NULL);
  fg_err e;
  cr_assert_eq(fg_registry_load_plugin(r, PLUGIN_NO_INIT, &e), FG_E_PLUGIN);
  cr_assert_msg_has(e, PLUGIN_NO_INIT);
  cr_assert_msg_has(e, "does not export fg_plugin_init");
  cr_assert_eq(fg_registry_count(r), 0);
  fg_registry_free(r);
}

Test(plugins, a_wrong_abi_version_is_refused_and_leaves_nothing) {
  fg_registry *r;
  fg_registry_new(&r, NULL);
  fg_err e;
  cr_assert_eq(fg_registry_load_plugin(r, PLUGIN_BAD_ABI, &e), FG_E_PLUGIN);
  cr_assert_msg_has(e, PLUGIN_BAD_ABI);
  cr_assert_msg_has(e, "'from_the_future'");
  cr_assert_msg_has(e, "ABI 999");
  cr_assert_eq(fg_registry_count(r), 0);
  cr_assert_null(fg_registry_find(r, "from_the_future"));
  /* the registry is still usable */
  cr_assert_eq(fg_registry_load_plugin(r, PLUGIN_SINH_ARCSINH, &e), FG_OK, "%s", e.msg);
  cr_assert_eq(fg_registry_count(r), 1);
  fg_registry_free(r);
}

Test(plugins, loading_the_same_plugin_twice_is_a_duplicate_name) {
  fg_registry *r;
  fg_registry_new(&r, NULL);
  fg_err e;
  cr_assert_eq(fg_registry_load_plugin(r, PLUGIN_SINH_ARCSINH, &e), FG_OK, "%s", e.msg);
  cr_assert_eq(fg_registry_count(r), 1);
  cr_assert_str_eq(fg_registry_origin(r, 0), PLUGIN_SINH_ARCSINH);
  cr_assert_eq(fg_registry_load_plugin(r, PLUGIN_SINH_ARCSINH, &e), FG_E_EXISTS);
  cr_assert_msg_has(e, "'sinh_arcsinh' is already registered");
  cr_assert_eq(fg_registry_count(r), 1);
  /* the first load is intact: its type still constructs */
  fg_bijector *b;
  cr_assert_eq(fg_bijector_new_from_text(&b, fg_registry_find(r, "sinh_arcsinh"), "", &e), FG_OK, "%s", e.msg);
  fg_bijector_free(b);
  fg_registry_free(r);
}

Test(plugins, an_unknown_type_is_not_found_with_a_suggestion) {
  fg_registry *r;
  fg_registry_new(&r, NULL);
  fg_err e;
  const fg_bijector_type *t;
  cr_assert_eq(fg_registry_load_plugin(r, PLUGIN_SINH_ARCSINH, &e), FG_OK, "%s", e.msg);
  cr_assert_eq(fg_registry_lookup(&t, r, "sinh_arcsin", &e), FG_E_NOTFOUND);
  cr_assert_msg_has(e, "did you mean 'sinh_arcsinh'");
  cr_assert_eq(fg_registry_lookup(&t, r, "glow_step", &e), FG_E_NOTFOUND);
  cr_assert_msg_has(e, "unknown bijector type 'glow_step'");
  cr_assert_null(t);
  fg_registry_free(r);
}

Test(plugins, the_example_plugin_passes_the_verification) {
  fg_registry *r;
  fg_registry_new(&r, NULL);
  fg_err e;
  const fg_bijector_type *t;
  cr_assert_eq(fg_registry_load_plugin(r, PLUGIN_SINH_ARCSINH, &e), FG_OK, "%s", e.msg);
  cr_assert_eq(fg_registry_lookup(&t, r, "sinh_arcsinh", &e), FG_OK, "%s", e.msg);
  fg_check_report rep;
  cr_assert_eq(fg_bijector_check_type(t, NULL, &rep), FG_OK, "%s", rep.msg);
  /* far out in the tails, where the naive asinh cancels to log(0) */
  fg_check_opts wide = {.lo = -1e6, .hi = 1e6, .tol = 1e-6, .skip_gradcheck = true};
  cr_assert_eq(fg_bijector_check_type(t, &wide, &rep), FG_OK, "%s", rep.msg);
  fg_registry_free(r);
}

Test(plugins, the_plugin_constructor_reports_its_own_errors) {
  fg_registry *r;
  fg_registry_new(&r, NULL);
  fg_err e;
  fg_bijector *b;
  cr_assert_eq(fg_registry_load_plugin(r, PLUGIN_SINH_ARCSINH, &e), FG_OK, "%s", e.msg);
  cr_assert_eq(fg_bijector_new_from_text(&b, fg_registry_find(r, "sinh_arcsinh"), "tail=-1", &e), FG_E_MISUSE);
  cr_assert_msg_has(e, "sinh_arcsinh: the constructor failed: tail must be positive");
  cr_assert_null(b);
  fg_registry_free(r);
}

/* ============================ a type that records its arguments ============================ */

/* What the constructor received, copied (the strings and lists live only during the call). */
typedef struct received {
  int calls;
  int64_t n, m, last;
  double x, y;
  int flag, on;
  char *name, *label;
  fg_ints list, perm;
} received;

static received got;

static fg_ints copy_ints(const fg_ints *l) {
  fg_ints c = {l->n, NULL};
  if (l->n > 0) {
    int64_t *v = malloc(sizeof *v * (size_t)l->n);
    cr_assert_not_null(v);
    memcpy(v, l->v, sizeof *v * (size_t)l->n);
    c.v = v;
  }
  return c;
}

static void forget_received(void) {
  free(got.name), free(got.label);
  free((void *)got.list.v), free((void *)got.perm.v);
  memset(&got, 0, sizeof got);
}

/* Eleven arguments: with the state and error pointers, eleven integer-class values (six in
 * registers on x86-64 and AArch64 alike, the rest on the stack) and two doubles, so a wrong
 * slot anywhere in libffi's marshalling shows. */
static fg_status recorder_create(void **state, fg_err *e, int64_t n, double x, int flag, const char *name,
                                 const fg_ints *list, int64_t m, double y, int on, const char *label,
                                 const fg_ints *perm, int64_t last) {
  if (n == 13) return fg_err_set(e, FG_E_MISUSE, "13 is unlucky");
  if (n == 14) return (fg_status)1234;
  forget_received();
  got = (received){1, n, m, last, x, y, flag, on, strdup(name), strdup(label), copy_ints(list), copy_ints(perm)};
  int *s = malloc(sizeof *s);
  cr_assert_not_null(s);
  *state = s;
  return FG_OK;
}

static fg_status identity(void *state, fg_flow_ctx *c, fg_node x, fg_node *y, fg_node *logdet) {
  (void)state;
  *y = x;
  *logdet = FG_NONE;
  return fg_graph_status(fg_flow_graph(c));
}

static const fg_arg_spec recorder_args[] = {
    {"n", FG_ARG_INT, NULL, "required"},
    {"x", FG_ARG_DOUBLE, "0.5", NULL},
    {"flag", FG_ARG_BOOL, "false", NULL},
    {"name", FG_ARG_STRING, "\"default name\"", NULL},
    {"list", FG_ARG_INTS, "[]", NULL},
    {"m", FG_ARG_INT, "-7", NULL},
    {"y", FG_ARG_DOUBLE, "-1e300", NULL},
    {"on", FG_ARG_BOOL, "1", NULL},
    {"label", FG_ARG_STRING, "bare", NULL},
    {"perm", FG_ARG_INTS, " [3, 1,2 ] ", NULL},
    {"last", FG_ARG_INT, "9223372036854775807", NULL},
};

static const fg_bijector_type recorder = {
    .abi_version = FG_BIJECTOR_ABI_VERSION,
    .name = "recorder",
    .n_args = 11,
    .args = recorder_args,
    .create = (void (*)(void))recorder_create,
    .destroy = free,
    .forward = identity,
};

/* Constructs recorder from text, expecting success. */
static void construct(const char *text) {
  fg_bijector *b;
  fg_err e;
  cr_assert_eq(fg_bijector_new_from_text(&b, &recorder, text, &e), FG_OK, "\"%s\": %s", text, e.msg);
  cr_assert_eq(fg_bijector_type_of(b), &recorder);
  fg_bijector_free(b);
}

static void assert_ints(fg_ints l, int n, const int64_t *want) {
  cr_assert_eq(l.n, n);
  for (int i = 0; i < n; i++) cr_assert_eq(l.v[i], want[i], "element %d: %lld", i, (long long)l.v[i]);
}

Test(args, every_kind_reaches_the_constructor_intact, .fini = forget_received) {
  construct("n=-9223372036854775808, x=-2.5e-3, flag=true, name=\"a, b \\\"q\\\" \\\\\", "
            "list=[1, -2, 9223372036854775807, -9223372036854775808], m=42, y=6.02e23, on=0, "
            "label=  spaced out  , perm=[], last=-1");
  cr_assert_eq(got.calls, 1);
  cr_assert_eq(got.n, INT64_MIN);
  cr_assert_eq(got.x, -2.5e-3);
  cr_assert_eq(got.flag, 1);
  cr_assert_str_eq(got.name, "a, b \"q\" \\");
  assert_ints(got.list, 4, (const int64_t[]){1, -2, INT64_MAX, INT64_MIN});
  cr_assert_eq(got.m, 42);
  cr_assert_eq(got.y, 6.02e23);
  cr_assert_eq(got.on, 0);
  cr_assert_str_eq(got.label, "spaced out");
  cr_assert_eq(got.perm.n, 0);
  cr_assert_eq(got.last, -1);
}

Test(args, defaults_fill_what_the_text_leaves_out, .fini = forget_received) {
  construct("n=5");
  cr_assert_eq(got.n, 5);
  cr_assert_eq(got.x, 0.5);
  cr_assert_eq(got.flag, 0);
  cr_assert_str_eq(got.name, "default name");
  cr_assert_eq(got.list.n, 0);
  cr_assert_eq(got.m, -7);
  cr_assert_eq(got.y, -1e300);
  cr_assert_eq(got.on, 1);
  cr_assert_str_eq(got.label, "bare");
  assert_ints(got.perm, 3, (const int64_t[]){3, 1, 2});
  cr_assert_eq(got.last, INT64_MAX);
}

Test(args, whitespace_order_bools_and_trailing_commas, .fini = forget_received) {
  construct("  \tlast=+12 ,\n list = [ 1 ,2,\n 3, ] , n = 3,flag=1, on=false, x=1e-300, name=\"\",  ");
  cr_assert_eq(got.n, 3);
  cr_assert_eq(got.last, 12);
  assert_ints(got.list, 3, (const int64_t[]){1, 2, 3});
  cr_assert_eq(got.flag, 1);
  cr_assert_eq(got.on, 0);
  cr_assert_eq(got.x, 1e-300);
  cr_assert_str_eq(got.name, "");
}

Test(args, a_long_list_has_no_fixed_limit, .fini = forget_received) {
  enum { COUNT = 100000 };
  size_t cap = 32 + (size_t)COUNT * 12, used = 0;
  char *text = malloc(cap);
  cr_assert_not_null(text);
  used += (size_t)snprintf(text, cap, "n=1, list=[");
  for (int i = 0; i < COUNT; i++) used += (size_t)snprintf(text + used, cap - used, "%d, ", i * 7 - 3);
  snprintf(text + used, cap - used, "]");
  construct(text);
  free(text);
  cr_assert_eq(got.list.n, COUNT);
  for (int i = 0; i < COUNT; i++) cr_assert_eq(got.list.v[i], i * 7 - 3);
}

Test(args, fg_bijector_new_checks_the_kinds_it_is_given, .fini = forget_received) {
  static const int64_t five[] = {5, 4, 3, 2, 1};
  fg_arg_value v[11] = {
      {.kind = FG_ARG_INT, .i = 7},       {.kind = FG_ARG_DOUBLE, .d = 0.25}, {.kind = FG_ARG_BOOL, .i = 9},
      {.kind = FG_ARG_STRING, .s = "s"},  {.kind = FG_ARG_INTS, .ints = {5, five}},
      {.kind = FG_ARG_INT, .i = -1},      {.kind = FG_ARG_DOUBLE, .d = 3},    {.kind = FG_ARG_BOOL, .i = 0},
      {.kind = FG_ARG_STRING, .s = "t"},  {.kind = FG_ARG_INTS, .ints = {0, NULL}},
      {.kind = FG_ARG_INT, .i = 1}};
  fg_bijector *b;
  fg_err e;
  cr_assert_eq(fg_bijector_new(&b, &recorder, v, &e), FG_OK, "%s", e.msg);
  fg_bijector_free(b);
  cr_assert_eq(got.flag, 1); /* any non-zero bool arrives as 1 */
  assert_ints(got.list, 5, five);
  v[1].kind = FG_ARG_INT;
  cr_assert_eq(fg_bijector_new(&b, &recorder, v, &e), FG_E_MISUSE);
  cr_assert_msg_has(e, "recorder: argument 'x' must be a number");
  cr_assert_null(b);
  v[1].kind = FG_ARG_DOUBLE, v[3].s = NULL;
  cr_assert_eq(fg_bijector_new(&b, &recorder, v, &e), FG_E_MISUSE);
  cr_assert_msg_has(e, "'name': the string is NULL");
  v[3].s = "s", v[4].ints.v = NULL;
  cr_assert_eq(fg_bijector_new(&b, &recorder, v, &e), FG_E_MISUSE);
  cr_assert_msg_has(e, "'list': a list of 5 integers with no data");
}

Test(args, constructor_failures_keep_their_status_and_message) {
  fg_bijector *b;
  fg_err e;
  cr_assert_eq(fg_bijector_new_from_text(&b, &recorder, "n=13", &e), FG_E_MISUSE);
  cr_assert_str_eq(e.msg, "recorder: the constructor failed: 13 is unlucky");
  cr_assert_null(b);
  cr_assert_eq(fg_bijector_new_from_text(&b, &recorder, "n=14", &e), FG_E_PLUGIN);
  cr_assert_msg_has(e, "unknown status");
}

/* Bad text: each case gives FG_E_FORMAT, and the message holds every listed piece. */
typedef struct bad_case {
  const char *text;
  const char *want[3];
} bad_case;

static const bad_case bad_cases[] = {
    {"n=eight", {"recorder: n=eight: expected an integer", "(at offset 2)"}},
    {"n=9223372036854775808", {"n=9223372036854775808: out of the range of a 64-bit integer"}},
    {"n=-9223372036854775809", {"out of the range of a 64-bit integer"}},
    {"n=0x10", {"n=0x10: expected an integer"}},
    {"n=1, x=1.5x", {"x=1.5x: expected a number", "(at offset 7)"}},
    {"n=1, x=1e999", {"x=1e999: out of the range of a double"}},
    {"n=1, flag=yes", {"flag=yes: expected true, false, 1 or 0"}},
    {"n=1, flag=\"true\"", {"not a quoted string"}},
    {"n=1, list=3", {"list=3: expected a list of integers like [0, 1]"}},
    {"n=1, list=[1, two]", {"list=[...]: element 1 'two' is not an integer", "(at offset 14)"}},
    {"n=1, list=[1,,2]", {"element 1 is empty"}},
    {"n=1, list=[1, 99999999999999999999]", {"element 1 '99999999999999999999' is out of the range"}},
    {"n=1, list=[1, 2", {"the list of 'list' has no closing ']'", "(at offset 10)"}},
    {"n=[1]", {"n=[1]: expected a single value, not a list"}},
    {"n=1, name=[1]", {"expected a string, not a list (quote it)"}},
    {"n=\"1\"", {"n=\"1\": expected an integer, not a quoted string"}},
    {"n=1, name=\"abc", {"the quoted value of 'name' has no closing quote", "(at offset 10)"}},
    {"n=1, name=\"a\\qb\"", {"unknown escape \\q"}},
    {"n=1, name=\"a\" b", {"expected ',' or the end after the value of 'name'", "(at offset 14)"}},
    {"n=1, hidden=8", {"unknown argument 'hidden'", "accepted: n, x, flag, name, list, m, y, on, label, perm, last",
                       "(at offset 5)"}},
    {"x=1", {"missing required argument 'n' (an integer: required)"}},
    {"n=1, n=2", {"argument 'n' is given twice (first at offset 0)", "(at offset 5)"}},
    {"n 1", {"expected '=' after 'n'", "(at offset 2)"}},
    {"n=", {"'n' has no value (expected an integer)"}},
    {"n=1, x=  ", {"'x' has no value"}},
    {"=1", {"expected an argument name, found '='", "(at offset 0)"}},
    {"n=1,,x=2", {"expected an argument name, found ','", "(at offset 4)"}},
    {"n=1, 2x=3", {"expected an argument name, found '2'"}},
};

Test(args, bad_text_is_rejected_naming_the_argument_and_the_offset) {
  for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
    const bad_case *c = &bad_cases[i];
    fg_bijector *b = (fg_bijector *)&b; /* poisoned: the call must reset it */
    fg_err e;
    fg_status st = fg_bijector_new_from_text(&b, &recorder, c->text, &e);
    cr_expect_eq(st, FG_E_FORMAT, "\"%s\": status %s (%s)", c->text, fg_status_name(st), e.msg);
    cr_expect_null(b, "\"%s\" left an instance", c->text);
    for (int k = 0; k < 3 && c->want[k]; k++)
      cr_expect(strstr(e.msg, c->want[k]) != NULL, "\"%s\": expected \"%s\" in: %s", c->text, c->want[k], e.msg);
  }
}

Test(args, a_long_bad_value_is_quoted_cut_short) {
  char text[300] = "n=";
  memset(text + 2, 'z', 200);
  fg_bijector *b;
  fg_err e;
  cr_assert_eq(fg_bijector_new_from_text(&b, &recorder, text, &e), FG_E_FORMAT);
  cr_assert_msg_has(e, "zzz...: expected an integer");
}

static fg_status no_args_create(void **state, fg_err *e) {
  (void)e;
  *state = NULL;
  return FG_OK;
}

Test(args, a_type_without_arguments_and_one_with_a_bad_default) {
  fg_bijector_type t = {.abi_version = FG_BIJECTOR_ABI_VERSION, .name = "plain",
                        .create = (void (*)(void))no_args_create, .forward = identity};
  fg_bijector *b;
  fg_err e;
  cr_assert_eq(fg_bijector_new_from_text(&b, &t, "  ", &e), FG_OK, "%s", e.msg);
  fg_bijector_free(b);
  cr_assert_eq(fg_bijector_new_from_text(&b, &t, NULL, &e), FG_OK, "%s", e.msg);
  fg_bijector_free(b);
  cr_assert_eq(fg_bijector_new_from_text(&b, &t, "a=1", &e), FG_E_FORMAT);
  cr_assert_msg_has(e, "plain: unknown argument 'a' (this type takes no arguments)");

  fg_arg_spec broken[] = {{"k", FG_ARG_INT, "4 2", NULL}};
  fg_bijector_type bad = recorder;
  bad.name = "broken_default", bad.n_args = 1, bad.args = broken;
  cr_assert_eq(fg_bijector_new_from_text(&b, &bad, "", &e), FG_E_PLUGIN);
  cr_assert_msg_has(e, "broken_default: k=4 2: expected an integer (at offset 0 of the type's default text)");
  cr_assert_eq(e.status, FG_E_PLUGIN);
}
