#include "core/atomic_file.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* fsync of the directory makes the rename itself durable. */
static fg_status sync_dir(const char *path, fg_err *e) {
  char *dir = strdup(path);
  if (!dir) return fg_err_set(e, FG_E_NOMEM, "%s: out of memory", path);
  char *slash = strrchr(dir, '/');
  const char *d = dir;
  if (!slash)
    d = ".";
  else if (slash == dir)
    d = "/";
  else
    *slash = '\0';
  int fd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  fg_status st = FG_OK;
  /* EINVAL: file systems that cannot sync a directory; nothing more can be done there */
  if (fd < 0 || (fsync(fd) != 0 && errno != EINVAL))
    st = fg_err_set(e, FG_E_IO, "%s: written, but syncing directory %s failed: %s", path, d,
                    strerror(errno));
  if (fd >= 0) close(fd);
  free(dir);
  return st;
}

/* Runs the writer on the open temporary file, then flushes, syncs and closes it. */
static fg_status fill(FILE *fp, const char *path, const char *tmp, fg_file_writer write,
                      void *ctx, fg_err *e) {
  fg_status st = write(fp, ctx, e);
  bool ok = st == FG_OK && !ferror(fp) && fflush(fp) == 0 && fsync(fileno(fp)) == 0;
  int err = errno;
  if (fclose(fp) != 0 && ok) {
    ok = false;
    err = errno;
  }
  if (st == FG_OK && !ok)
    st = fg_err_set(e, FG_E_IO,
                    "%s: writing the temporary file %s failed: %s (the previous file is "
                    "untouched)",
                    path, tmp, strerror(err));
  return st;
}

/* The pid in "<base>.tmp.<pid>", or 0 when name is not exactly that. */
static long leftover_pid(const char *name, const char *base) {
  size_t n = strlen(base);
  if (strncmp(name, base, n) || strncmp(name + n, ".tmp.", 5)) return 0;
  const char *digits = name + n + 5;
  char *end;
  errno = 0;
  long pid = strtol(digits, &end, 10);
  return digits[0] >= '1' && digits[0] <= '9' && !*end && !errno ? pid : 0;
}

/* A leftover of a writer that is gone: ours to remove (see fg_atomic_file_clean). */
static bool stale(int dir, const char *name, long pid) {
  struct stat st;
  if (pid == (long)getpid() ||
      (pid <= (long)INT32_MAX && (kill((pid_t)pid, 0) == 0 || errno != ESRCH)))
    return false;
  if (fstatat(dir, name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode) ||
      st.st_uid != geteuid())
    return false;
  return time(NULL) - st.st_mtime >= FG_ATOMIC_STALE_SECONDS;
}

fg_status fg_atomic_file_clean(const char *path, int *removed, fg_err *e) {
  if (removed) *removed = 0;
  char *copy = strdup(path);
  if (!copy) return fg_err_set(e, FG_E_NOMEM, "%s: out of memory", path);
  char *slash = strrchr(copy, '/');
  const char *dir = slash ? (slash == copy ? "/" : copy) : ".", *base = slash ? slash + 1 : copy;
  if (slash) *slash = '\0';
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
  if (!d && fd >= 0) close(fd);
  for (struct dirent *ent; d && *base && (ent = readdir(d));) {
    long pid = leftover_pid(ent->d_name, base);
    if (pid > 0 && stale(dirfd(d), ent->d_name, pid) && unlinkat(dirfd(d), ent->d_name, 0) == 0 &&
        removed)
      (*removed)++;
  }
  if (d) closedir(d);
  free(copy);
  return FG_OK;
}

fg_status fg_atomic_file_write(const char *path, fg_file_writer write, void *ctx, fg_err *e) {
  fg_atomic_file_clean(path, NULL, NULL);
  size_t cap = strlen(path) + 32;
  char *tmp = malloc(cap);
  if (!tmp) return fg_err_set(e, FG_E_NOMEM, "%s: out of memory", path);
  snprintf(tmp, cap, "%s.tmp.%ld", path, (long)getpid());
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  FILE *fp = fd >= 0 ? fdopen(fd, "wb") : NULL;
  fg_status st;
  if (!fp) {
    st = fg_err_set(e, FG_E_IO, "%s: cannot create the temporary file %s: %s", path, tmp,
                    strerror(errno));
    if (fd >= 0) {
      close(fd);
      unlink(tmp);
    }
  } else {
    st = fill(fp, path, tmp, write, ctx, e);
    if (st == FG_OK && rename(tmp, path) != 0)
      st = fg_err_set(e, FG_E_IO, "%s: cannot replace it: %s (the previous file is untouched)",
                      path, strerror(errno));
    if (st != FG_OK) unlink(tmp);
  }
  free(tmp);
  return st == FG_OK ? sync_dir(path, e) : st;
}
