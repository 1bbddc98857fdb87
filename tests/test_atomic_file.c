/* Atomic file replacement: the content lands whole, or the previous file stays as it was and
 * no temporary file is left behind. */
#include "core/atomic_file.h"
#include "io_helpers.h"

TestSuite(atomic_file, .init = io_setup, .fini = io_teardown);

static fg_status write_text(FILE *f, void *ctx, fg_err *e) {
  (void)e;
  fputs(ctx, f);
  return FG_OK;
}

/* Writes half of its text, then fails with an error of its own. */
static fg_status write_then_fail(FILE *f, void *ctx, fg_err *e) {
  const char *text = ctx;
  fwrite(text, 1, strlen(text) / 2, f);
  return fg_err_set(e, FG_E_NUMERIC, "the writer found a NaN");
}

static void assert_holds(const char *path, const char *want) {
  size_t len;
  uint8_t *got = io_read(path, &len);
  cr_assert_eq(len, strlen(want), "%s holds %zu bytes, expected %zu", path, len, strlen(want));
  cr_assert_eq(memcmp(got, want, len), 0, "%s holds other bytes", path);
  free(got);
}

static const char *tmp_of(const char *path) {
  static char tmp[512];
  snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
  return tmp;
}

Test(atomic_file, writes_and_replaces) {
  const char *path = io_path("f.txt");
  fg_err e;
  cr_assert_eq(fg_atomic_file_write(path, write_text, "first", &e), FG_OK, "%s", e.msg);
  assert_holds(path, "first");
  cr_assert_eq(fg_atomic_file_write(path, write_text, "second, longer", &e), FG_OK, "%s", e.msg);
  assert_holds(path, "second, longer");
  cr_assert_eq(fg_atomic_file_write(path, write_text, "", &e), FG_OK, "%s", e.msg);
  assert_holds(path, "");
  cr_assert_neq(access(tmp_of(path), F_OK), 0, "temporary file left behind");
}

Test(atomic_file, a_failing_writer_leaves_the_previous_file) {
  const char *path = io_path("f.txt");
  fg_err e;
  cr_assert_eq(fg_atomic_file_write(path, write_text, "previous", &e), FG_OK, "%s", e.msg);
  cr_assert_eq(fg_atomic_file_write(path, write_then_fail, "replacement", &e), FG_E_NUMERIC);
  cr_assert_str_eq(e.msg, "the writer found a NaN", "the writer's own error is passed on");
  assert_holds(path, "previous");
  cr_assert_neq(access(tmp_of(path), F_OK), 0, "temporary file left behind");
}

Test(atomic_file, io_failures_name_the_path) {
  fg_err e;
  const char *missing = io_path("no/such/dir/f.txt");
  io_assert_error(fg_atomic_file_write(missing, write_text, "x", &e), FG_E_IO, e, missing,
                  "cannot create the temporary file");
  /* a directory at path: the rename fails and the directory keeps its content */
  const char *dir = io_path("adir");
  cr_assert_eq(mkdir(dir, 0755), 0);
  io_write(io_path("adir/keep"), "k", 1);
  io_assert_error(fg_atomic_file_write(dir, write_text, "x", &e), FG_E_IO, e, dir,
                  "cannot replace it: Is a directory (the previous file is untouched)");
  assert_holds(io_path("adir/keep"), "k");
  cr_assert_neq(access(tmp_of(dir), F_OK), 0, "temporary file left behind");
}
