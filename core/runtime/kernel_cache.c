/* The file of timed kernel choices (kernel_cache.h). */
#include "core/runtime/kernel_cache.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "core/ir/op.h"

enum { LINE_MAX_KEY = 1024, PATH_CAP = 4096 };

/* The CPU's model name ("AMD EPYC ..."), or "" where /proc/cpuinfo does not say. */
static void cpu_model(char *buf, size_t cap) {
  buf[0] = '\0';
  FILE *f = fopen("/proc/cpuinfo", "r");
  char line[512];
  while (f && fgets(line, sizeof line, f))
    if (!strncmp(line, "model name", 10) && strchr(line, ':')) {
      snprintf(buf, cap, "%s", strchr(line, ':') + 1);
      break;
    }
  if (f) fclose(f);
}

/* The settings that cap or force the native kernels' code paths (README's table). */
static const char *const path_settings[] = {"FG_CONV_ISA", "FG_CONV_PATH", "FG_MATH_ISA",
                                            "FG_NO_BLAS"};

/* What a choice depends on besides its key: the CPU; the kernel libraries and the code paths
 * they took on it (oneDNN's ISA, OpenBLAS's core: OPENBLAS_CORETYPE=Haswell makes its GEMMs
 * slower than its own pick here, and choices timed under it, oneDNN and blocked layouts where
 * the native kernels win without it, cost Glow K=8's log-prob 30 % on "AMD EPYC" (2 cores)
 * when a process without it read them); the settings that steer the native kernels; and the ops and their
 * implementations in this build's order (a key holds op ids, a line an implementation's
 * index). */
static uint64_t fingerprint(void) {
  char model[256], libs[512];
  cpu_model(model, sizeof model);
  uint64_t h = XXH3_64bits_withSeed(model, strlen(model), 0x6b65726eull);
  fg_kernel_libraries(libs, sizeof libs);
  h = XXH3_64bits_withSeed(libs, strlen(libs), h);
  for (size_t i = 0; i < sizeof path_settings / sizeof *path_settings; i++) {
    const char *v = getenv(path_settings[i]);
    h = XXH3_64bits_withSeed(v ? v : "(unset)", strlen(v ? v : "(unset)"), h);
  }
  for (int op = 0; op < FG_OP_COUNT; op++) {
    const fg_op_def *d = fg_op_get(op);
    h = XXH3_64bits_withSeed(d->name, strlen(d->name), h);
    for (int i = 0; i < d->n_impls; i++)
      h = XXH3_64bits_withSeed(d->impls[i].name, strlen(d->impls[i].name), h);
  }
  return h;
}

/* mkdir -p for the one or two missing levels of a cache directory. */
static bool make_dirs(const char *dir) {
  char p[PATH_CAP];
  snprintf(p, sizeof p, "%s", dir);
  for (char *s = strchr(p + 1, '/'); s; s = strchr(s + 1, '/')) {
    *s = '\0';
    if (mkdir(p, 0777) != 0 && errno != EEXIST) return false;
    *s = '/';
  }
  return mkdir(p, 0777) == 0 || errno == EEXIST;
}

bool fg__kernel_cache_path(char *buf, size_t cap) {
  const char *env = getenv("FG_KERNEL_CACHE"), *base = getenv("XDG_CACHE_HOME");
  char dir[PATH_CAP];
  if (env) {
    if (!env[0] || !strcmp(env, "off") || !strcmp(env, "0")) return false; /* not a dir "0" */
    snprintf(dir, sizeof dir, "%s", env);
  } else if (base && base[0]) {
    snprintf(dir, sizeof dir, "%s/flowgrad", base);
  } else if ((base = getenv("HOME")) && base[0]) {
    snprintf(dir, sizeof dir, "%s/.cache/flowgrad", base);
  } else {
    return false;
  }
  int n = snprintf(buf, cap, "%s/kernels-%016llx.txt", dir, (unsigned long long)fingerprint());
  return n > 0 && (size_t)n < cap && make_dirs(dir);
}

static int hex_digit(char c) {
  return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

void fg__kernel_cache_load(void (*add)(const unsigned char *key, size_t len, int impl)) {
  char path[PATH_CAP];
  FILE *f = fg__kernel_cache_path(path, sizeof path) ? fopen(path, "r") : NULL;
  char line[2 * LINE_MAX_KEY + 32];
  unsigned char key[LINE_MAX_KEY];
  while (f && fgets(line, sizeof line, f)) {
    size_t len = 0;
    const char *p = line;
    for (; hex_digit(p[0]) >= 0 && hex_digit(p[1]) >= 0 && len < sizeof key; p += 2)
      key[len++] = (unsigned char)(hex_digit(p[0]) * 16 + hex_digit(p[1]));
    int impl;
    char end;
    if (len > 0 && sscanf(p, " %d%c", &impl, &end) == 2 && end == '\n' && impl >= -1)
      add(key, len, impl);
  }
  if (f) fclose(f);
}

void fg__kernel_cache_store(const unsigned char *key, size_t len, int impl) {
  char path[PATH_CAP], line[2 * LINE_MAX_KEY + 32];
  if (len > LINE_MAX_KEY || !fg__kernel_cache_path(path, sizeof path)) return;
  size_t at = 0;
  for (size_t i = 0; i < len; i++) at += (size_t)snprintf(line + at, 3, "%02x", key[i]);
  at += (size_t)snprintf(line + at, sizeof line - at, " %d\n", impl);
  int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0666);
  if (fd < 0) return;
  ssize_t ignored = write(fd, line, at); /* one write: concurrent writers add whole lines */
  (void)ignored;
  close(fd);
}
