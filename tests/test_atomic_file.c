/* Atomic file replacement: the content lands whole, or the previous file stays as it was and
 * no temporary file is left behind. */
#include <fcntl.h>
#include <sys/wait.h>
#include <time.h>

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

/* A pid that belonged to a process that has exited (a child, reaped). */
static long dead_pid(void) {
  pid_t child = fork();
  cr_assert_neq(child, -1);
  if (child == 0) _exit(0);
  int status;
  cr_assert_eq(waitpid(child, &status, 0), child);
  return (long)child;
}

static const char *leftover(const char *path, const char *suffix, int age_s) {
  static char names[8][512];
  static int next;
  char *name = names[next++ % 8];
  snprintf(name, sizeof names[0], "%s%s", path, suffix);
  io_write(name, "partial", 7);
  struct timespec t[2];
  clock_gettime(CLOCK_REALTIME, &t[0]);
  t[0].tv_sec -= age_s;
  t[1] = t[0];
  cr_assert_eq(utimensat(AT_FDCWD, name, t, 0), 0);
  return name;
}

/* Interrupted writes leave "<path>.tmp.<pid>" files: the next write to path removes those whose
 * writer is gone and that have not changed for a while, and nothing else. */
Test(atomic_file, stale_temporary_files_of_dead_writers_are_removed) {
  const char *path = io_path("ckpt.safetensors");
  char dead[64], own[64];
  snprintf(dead, sizeof dead, ".tmp.%ld", dead_pid());
  snprintf(own, sizeof own, ".tmp.%ld", (long)getppid()); /* a live process: the test runner */
  const char *stale = leftover(path, dead, 60);
  const char *fresh = leftover(io_path("fresh.safetensors"), dead, 0);
  const char *live = leftover(path, own, 60);
  const char *other_name = leftover(io_path("other.safetensors"), dead, 60);
  const char *not_a_pid = leftover(path, ".tmp.12ab", 60);
  const char *longer = leftover(path, ".tmp.5.bak", 60);
  int removed = -1;
  fg_err e;
  cr_assert_eq(fg_atomic_file_clean(io_path("fresh.safetensors"), &removed, &e), FG_OK, "%s", e.msg);
  cr_assert_eq(removed, 0, "a writer that just died may be another machine's on a shared disk");
  cr_assert_eq(access(fresh, F_OK), 0);
  cr_assert_eq(fg_atomic_file_write(path, write_text, "new", &e), FG_OK, "%s", e.msg);
  cr_assert_neq(access(stale, F_OK), 0, "the stale leftover was removed");
  cr_assert_eq(access(live, F_OK), 0, "a running writer's file stays");
  cr_assert_eq(access(other_name, F_OK), 0, "another file's leftover stays");
  cr_assert_eq(access(not_a_pid, F_OK), 0);
  cr_assert_eq(access(longer, F_OK), 0);
  assert_holds(path, "new");
}
