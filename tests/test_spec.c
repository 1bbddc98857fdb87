/* The flow-spec language: blocks, repeats, levels, settings, and errors with file:line:col. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "flows/bijector_internal.h"
#include "frontends/spec/spec.h"
#include "ops/ops.h"

/* Two tiny types with real constructors, so specs go through libffi as plugins' types do. */
static fg_status ident_fwd(void *s, fg_flow_ctx *c, fg_node x, fg_node *y, fg_node *ld) {
  (void)s;
  fg_graph *g = fg_flow_graph(c);
  *y = x;
  *ld = fg_fill(g, 0.0, fg_node_dtype(g, x), fg_shape1(fg_node_shape(g, x).d[0]));
  return fg_graph_status(g);
}
static fg_status make_ident(void **state, fg_err *e) {
  (void)e;
  *state = NULL;
  return FG_OK;
}
typedef struct counted { int64_t n; } counted;
static fg_status make_counted(void **state, fg_err *e, int64_t n) {
  if (n < 0) return fg_err_set(e, FG_E_MISUSE, "n must be >= 0, got %lld", (long long)n);
  counted *c = malloc(sizeof *c);
  if (!c) return FG_E_NOMEM;
  c->n = n;
  *state = c;
  return FG_OK;
}
static const fg_arg_spec counted_args[] = {{"n", FG_ARG_INT, "0", "a number"}};
static const fg_bijector_type ident = {.abi_version = FG_BIJECTOR_ABI_VERSION, .name = "ident",
                                       .create = (void (*)(void))make_ident, .forward = ident_fwd,
                                       .inverse = ident_fwd, .check_event = {1, {2}}};
/* a factor-out type: `levels` leaves it out at the last level */
static const fg_bijector_type split_like = {.abi_version = FG_BIJECTOR_ABI_VERSION, .name = "split",
                                            .create = (void (*)(void))make_ident, .forward = ident_fwd,
                                            .inverse = ident_fwd, .check_event = {1, {2}},
                                            .flags = FG_BIJ_FACTOR_OUT};
static const fg_bijector_type count = {.abi_version = FG_BIJECTOR_ABI_VERSION, .name = "count", .n_args = 1,
                                       .args = counted_args, .create = (void (*)(void))make_counted,
                                       .destroy = free, .forward = ident_fwd, .inverse = ident_fwd,
                                       .check_event = {1, {2}}};

static fg_registry *registry(void) {
  fg_registry *r;
  fg_registry_new(&r, NULL);
  fg_registry_add(r, &ident, NULL);
  fg_registry_add(r, &split_like, NULL);
  fg_registry_add(r, &count, NULL);
  return r;
}

/* The chain's layers as "type:n" words, for comparing structure. */
static void describe(const fg_bijector *b, char *buf, size_t cap) {
  buf[0] = '\0';
  for (int i = 0; i < fg_bijector_num_children(b); i++) {
    const fg_bijector *k = fg_bijector_child(b, i);
    size_t used = strlen(buf);
    snprintf(buf + used, cap - used, "%s%s", i ? " " : "", fg_bijector_type_of(k)->name);
  }
}

Test(spec, blocks_repeats_levels_and_settings) {
  const char *text =
      "# a comment\n"
      "data moons\n"
      "prior learned\n"
      "flow\n"
      "  levels 2\n"
      "    repeat 2   # inline comment\n"
      "      ident\n"
      "      count n={i}\n"
      "    end\n"
      "    split\n"
      "  end\n"
      "  ident\n"
      "end\n"
      "train\n"
      "  batch 32\n"
      "  lr 5e-4\n"
      "  optimizer adamax\n"
      "  recompute true\n"
      "  recompute_tol 1e-3\n"
      "end\n";
  fg_registry *r = registry();
  fg_spec *s;
  fg_err e;
  cr_assert_eq(fg_spec_parse(&s, text, "t.flow", r, &e), FG_OK, "%s", e.msg);
  char buf[512];
  describe(s->flow, buf, sizeof buf);
  cr_assert_str_eq(buf, "ident count ident count split ident count ident count ident",
                   "split kept after level 0, dropped after the last level");
  cr_assert_str_eq(s->data, "moons");
  cr_assert_str_eq(s->prior, "learned");
  cr_assert_eq(s->train.batch, 32);
  cr_assert_float_eq(s->train.lr, 5e-4, 1e-12);
  cr_assert_str_eq(s->train.optimizer, "adamax");
  cr_assert(s->train.recompute);
  cr_assert_float_eq(s->train.recompute_tol, 1e-3, 1e-15);
  cr_assert_eq(s->train.n_bits, 8, "defaults stay");
  fg_spec_free(s);
  fg_registry_free(r);
}

static void expect_error(const char *text, const char *where, const char *what) {
  fg_registry *r = registry();
  fg_spec *s = NULL;
  fg_err e;
  cr_assert_neq(fg_spec_parse(&s, text, "bad.flow", r, &e), FG_OK, "accepted: %s", text);
  cr_assert_null(s);
  cr_assert(strstr(e.msg, where) != NULL, "expected position %s in: %s", where, e.msg);
  cr_assert(strstr(e.msg, what) != NULL, "expected '%s' in: %s", what, e.msg);
  fg_registry_free(r);
}

Test(spec, errors_name_file_line_and_column) {
  expect_error("flow\n  idnet\nend\n", "bad.flow:2:3:", "did you mean 'ident'");
  expect_error("flow\n  count n=-3\nend\n", "bad.flow:2:9:", "n must be >= 0");
  expect_error("flow\n  count m=3\nend\n", "bad.flow:2:9:", "m");
  expect_error("flow\n  repeat x\n  end\nend\n", "bad.flow:2:10:", "expected an integer");
  expect_error("flow\n  repeat 2\n    ident\n  end\n", "bad.flow:5:1:", "not closed");
  expect_error("model glow\n",
               "bad.flow:1:1:", "expected 'data', 'classes', 'prior', 'flow' or 'train'");
  expect_error("flow\n ident\nend\ntrain\n  batchsize 3\nend\n", "bad.flow:5:3:", "unknown training setting 'batchsize'");
  expect_error("flow\n ident\nend\ntrain\n  optimizer adagrad\nend\n", "bad.flow:5:13:", "unknown optimizer");
  expect_error("flow\n ident\nend\ntrain\n  recompute maybe\nend\n", "bad.flow:5:13:", "expected true or false");
  expect_error("flow\n ident\nend\ntrain\n  schedule linear\nend\n", "bad.flow:5:12:", "unknown schedule 'linear'");
  expect_error("prior cauchy\nflow\n ident\nend\n", "bad.flow:1:", "unknown prior");
  expect_error("data moons\n", "bad.flow:2:1:", "no layers");
}

Test(spec, load_reports_missing_files) {
  fg_registry *r = registry();
  fg_spec *s;
  fg_err e;
  cr_assert_eq(fg_spec_load(&s, "/nonexistent/x.flow", r, &e), FG_E_IO);
  cr_assert(strstr(e.msg, "/nonexistent/x.flow") != NULL, "%s", e.msg);
  fg_registry_free(r);
}

/* A temporary file holding bytes[0..n); its path in a static buffer. */
static const char *temp_file(const char *bytes, size_t n) {
  static char path[64];
  snprintf(path, sizeof path, "/tmp/fg-spec-test-XXXXXX");
  int fd = mkstemp(path);
  cr_assert_neq(fd, -1);
  cr_assert_eq(write(fd, bytes, n), (ssize_t)n);
  close(fd);
  return path;
}

/* The reader takes files of any length up to its limit whole (here over several read chunks)
 * and refuses a NUL byte, which would otherwise cut the text short unseen. */
Test(spec, read_file_reads_whole_files_and_refuses_nul_bytes) {
  enum { N = 3 * 4096 + 17 };
  char *text = malloc(N);
  cr_assert_not_null(text);
  for (int i = 0; i < N; i++) text[i] = i % 64 == 63 ? '\n' : (char)('a' + i % 26);
  const char *path = temp_file(text, N);
  char *got;
  fg_err e;
  cr_assert_eq(fg_spec_read_file(&got, path, &e), FG_OK, "%s", e.msg);
  cr_assert_eq(strlen(got), (size_t)N);
  cr_assert(memcmp(got, text, N) == 0);
  free(got);
  unlink(path);
  text[5000] = '\0';
  path = temp_file(text, N);
  cr_assert_eq(fg_spec_read_file(&got, path, &e), FG_E_FORMAT);
  cr_assert_null(got);
  cr_assert(strstr(e.msg, "NUL") && strstr(e.msg, path), "%s", e.msg);
  unlink(path);
  cr_assert_eq(fg_spec_read_file(&got, "/nonexistent/x.flow", &e), FG_E_IO);
  free(text);
}

/* The status and message of a spec that must fail. */
static fg_status parse_status(const char *text, fg_err *e) {
  fg_registry *r = registry();
  fg_spec *s = NULL;
  fg_status st = fg_spec_parse(&s, text, "bad.flow", r, e);
  if (st != FG_OK) cr_assert_null(s, "a failed parse leaves no spec");
  fg_spec_free(s);
  fg_registry_free(r);
  return st;
}

/* Blocks with no layers in them expand to nothing: a flow of no layers is refused, by name
 * (its chain of none used to reach memcpy with a NULL array). */
Test(spec, a_flow_of_empty_blocks_is_refused) {
  expect_error("flow\nrepeat 8\nend\nend\n", "bad.flow:1:1:", "no layers");
  expect_error("flow\n  levels 1\n    split\n  end\nend\n", "bad.flow:1:1:", "no layers");
}

/* Repeat counts multiply: the layer count is checked against FG_SPEC_MAX_LAYERS before any
 * layer is built (a spec in a checkpoint is as untrusted as any file). */
Test(spec, repeat_counts_are_capped_before_building) {
  fg_err e;
  cr_assert_eq(parse_status("flow\n  repeat 1000000000\n    ident\n  end\nend\n", &e), FG_E_LIMIT, "%s", e.msg);
  cr_assert(strstr(e.msg, "bad.flow:2:") && strstr(e.msg, "1000000000") && strstr(e.msg, "layers"), "%s", e.msg);
  cr_assert_eq(parse_status("flow\n repeat 100000\n  repeat 100000\n   ident\n  end\n end\nend\n", &e), FG_E_LIMIT,
               "%s", e.msg);
  cr_assert_eq(parse_status("flow\n levels 4611686018427387904\n  levels 4\n   ident\n  end\n end\nend\n", &e),
               FG_E_LIMIT, "a product past int64 is caught too: %s", e.msg);
  cr_assert_eq(parse_status("flow\n  repeat 99999999999999999999\n    ident\n  end\nend\n", &e), FG_E_FORMAT);
  char text[256];
  snprintf(text, sizeof text, "flow\n repeat %d\n  ident\n end\nend\n", FG_SPEC_MAX_LAYERS);
  cr_assert_eq(parse_status(text, &e), FG_OK, "exactly the cap is fine: %s", e.msg);
}

/* Settings are checked where they are written: a value no training could use is an error at
 * its file:line:column, not a usage error found later. */
Test(spec, settings_out_of_range_name_their_place) {
  const char *head = "flow\n ident\nend\ntrain\n";
  static const char *const bad[][2] = {
      {"  batch 0\n", "expected an integer >= 1"},  {"  lr nan\n", "finite"},
      {"  lr -1\n", "lr must be > 0"},             {"  lr inf\n", "finite"},
      {"  n_bits 9\n", "n_bits must be 1..8"},     {"  ema 1\n", "ema must be in [0, 1)"},
      {"  clip -2\n", "clip must be >= 0"},        {"  minutes nan\n", "finite"},
      {"  temperature -1\n", "temperature must be >= 0"}, {"  recompute_tol -1\n", "recompute_tol must be >= 0"},
      {"  max_nonfinite 0\n", "expected an integer >= 1"},
      {"  seed 99999999999999999999\n", "expected an integer"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    char text[256];
    snprintf(text, sizeof text, "%s%send\n", head, bad[i][0]);
    fg_err e;
    cr_expect_eq(parse_status(text, &e), FG_E_FORMAT, "%s", bad[i][0]);
    cr_expect(strstr(e.msg, "bad.flow:5:") && strstr(e.msg, bad[i][1]), "%s -> %s", bad[i][0], e.msg);
  }
}

/* Where each setting was written, for errors found after parsing (a batch larger than the data). */
Test(spec, where_names_the_line_of_a_setting) {
  fg_registry *r = registry();
  fg_spec *s;
  fg_err e;
  cr_assert_eq(fg_spec_parse(&s, "data moons n=10\nflow\n ident\nend\ntrain\n  batch 64\nend\n", "w.flow", r, &e),
               FG_OK, "%s", e.msg);
  char buf[128];
  cr_assert_str_eq(fg_spec_where(s, "batch", buf, sizeof buf), "w.flow:6:9");
  cr_assert_str_eq(fg_spec_where(s, "data", buf, sizeof buf), "w.flow:1:6");
  cr_assert_str_eq(fg_spec_where(s, "lr", buf, sizeof buf), "w.flow", "a default has no line");
  fg_spec_free(s);
  fg_registry_free(r);
}

/* A 'train' (or 'data', 'prior') line inside the flow block means an 'end' is missing. */
Test(spec, a_missing_end_before_train_says_so) {
  expect_error("flow\n  ident\ntrain\n  batch 4\nend\n", "bad.flow:3:1:", "'end' missing");
  expect_error("flow\n  repeat 2\n    ident\n  end\ndata moons\n", "bad.flow:5:1:", "'end' missing");
}

Test(spec, schedule_settings) {
  fg_registry *r = registry();
  fg_spec *s;
  fg_err e;
  const char *text = "flow\n ident\nend\ntrain\n  schedule cosine\n  lr_min 2e-5\n  decay_steps 900\n"
                     "  step_every 7\n  gamma 0.3\nend\n";
  cr_assert_eq(fg_spec_parse(&s, text, "s.flow", r, &e), FG_OK, "%s", e.msg);
  cr_expect_str_eq(s->train.schedule, "cosine");
  cr_expect_eq(s->train.lr_min, 2e-5);
  cr_expect_eq(s->train.decay_steps, 900);
  cr_expect_eq(s->train.step_every, 7);
  cr_expect_eq(s->train.gamma, 0.3);
  fg_spec_free(s);
  cr_assert_eq(fg_spec_parse(&s, "flow\n ident\nend\n", "s.flow", r, &e), FG_OK, "%s", e.msg);
  cr_expect_str_eq(s->train.schedule, "constant", "the default keeps the rate after warm-up");
  fg_spec_free(s);
  fg_registry_free(r);
}

/* `classes N` makes the model class-conditional: the flow's context is the one-hot label. */
Test(spec, classes_and_the_conditional_prior) {
  fg_registry *r = registry();
  fg_spec *s;
  fg_err e;
  const char *text = "data moons\nclasses 2\nprior conditional\nflow\n  ident\nend\n";
  cr_assert_eq(fg_spec_parse(&s, text, "c.flow", r, &e), FG_OK, "%s", e.msg);
  cr_assert_eq(s->classes, 2);
  fg_flow_config cfg = fg_spec_flow_config(s, fg_shape1(2));
  cr_assert_eq(cfg.base, FG_BASE_CONDITIONAL);
  cr_assert_eq(cfg.context, 2);
  cr_assert_eq(cfg.event.d[0], 2);
  fg_spec_free(s);
  cr_assert_eq(fg_spec_parse(&s, "flow\n  ident\nend\n", "u.flow", r, &e), FG_OK, "%s", e.msg);
  cr_assert_eq(fg_spec_flow_config(s, fg_shape1(2)).context, 0, "unconditional by default");
  fg_spec_free(s);
  fg_registry_free(r);
  expect_error("prior conditional\nflow\n  ident\nend\n", "bad.flow:", "needs a 'classes N' line");
  expect_error("classes 0\nflow\n  ident\nend\n", "bad.flow:1:9:", "expected an integer >= 1");
  expect_error("classes\nflow\n  ident\nend\n", "bad.flow:1:", "'classes' needs a count");
  expect_error("prior sometimes\n", "bad.flow:1:", "normal, learned or conditional");
}
