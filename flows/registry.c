#include "flows/registry.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/vec.h"

typedef struct entry {
  const fg_bijector_type *type;
  const char *origin; /* plugin path (owned by the plugin list), NULL for built-ins */
} entry;

typedef struct plugin {
  char *path;
  void *handle;
} plugin;

struct fg_registry {
  entry *items;
  int n;
  int64_t cap;
  plugin *plugins;
  int n_plugins;
  int64_t cap_plugins;
  const char *loading; /* path of the plugin whose init is running */
};

fg_status fg_registry_new(fg_registry **out, fg_err *e) {
  *out = calloc(1, sizeof(fg_registry));
  return *out ? FG_OK : fg_err_set(e, FG_E_NOMEM, "registry: out of memory");
}

void fg_registry_free(fg_registry *r) {
  if (!r) return;
  free(r->items);
  for (int i = 0; i < r->n_plugins; i++) {
    dlclose(r->plugins[i].handle);
    free(r->plugins[i].path);
  }
  free(r->plugins);
  free(r);
}

static fg_status check_type(const fg_bijector_type *t, const char *origin, fg_err *e) {
  const char *from = origin ? origin : "built-in";
  if (!t) return fg_err_set(e, FG_E_PLUGIN, "%s: registered a NULL type", from);
  if (t->abi_version != FG_BIJECTOR_ABI_VERSION)
    return fg_err_set(e, FG_E_PLUGIN, "%s: type '%s' was built for bijector ABI %u; this flowgrad "
                      "has ABI %u (rebuild the plugin against this flowgrad's headers)",
                      from, t->name ? t->name : "?", t->abi_version, FG_BIJECTOR_ABI_VERSION);
  if (!t->name || !t->name[0]) return fg_err_set(e, FG_E_PLUGIN, "%s: a type has no name", from);
  if (!t->create || !t->forward)
    return fg_err_set(e, FG_E_PLUGIN, "%s: type '%s' lacks a %s function", from, t->name,
                      t->create ? "forward" : "create");
  if (t->n_args < 0 || (t->n_args > 0 && !t->args))
    return fg_err_set(e, FG_E_PLUGIN, "%s: type '%s' declares %d arguments but no list", from,
                      t->name, t->n_args);
  for (int i = 0; i < t->n_args; i++)
    if (!t->args[i].name || (unsigned)t->args[i].kind > FG_ARG_INTS)
      return fg_err_set(e, FG_E_PLUGIN, "%s: type '%s' argument %d is malformed", from, t->name, i);
  return FG_OK;
}

fg_status fg_registry_add(fg_registry *r, const fg_bijector_type *t, fg_err *e) {
  if (!r) return fg_err_set(e, FG_E_MISUSE, "no registry");
  fg_status st = check_type(t, r->loading, e);
  if (st != FG_OK) return st;
  for (int i = 0; i < r->n; i++)
    if (strcmp(r->items[i].type->name, t->name) == 0)
      return fg_err_set(e, FG_E_EXISTS, "bijector type '%s' is already registered (by %s)", t->name,
                        r->items[i].origin ? r->items[i].origin : "flowgrad itself");
  if (!FG_VEC_RESERVE(r->items, r->cap, r->n + 1))
    return fg_err_set(e, FG_E_NOMEM, "out of memory registering '%s'", t->name);
  r->items[r->n++] = (entry){t, r->loading};
  return FG_OK;
}

fg_status fg_registry_add_builtins(fg_registry *r, fg_err *e) {
  for (int i = 0; fg_builtin_bijectors[i]; i++) {
    fg_status st = fg_registry_add(r, fg_builtin_bijectors[i], e);
    if (st != FG_OK) return st;
  }
  return FG_OK;
}

static fg_status remember_plugin(fg_registry *r, const char *path, void *handle, plugin **out,
                                 fg_err *e) {
  if (!FG_VEC_RESERVE(r->plugins, r->cap_plugins, r->n_plugins + 1))
    return fg_err_set(e, FG_E_NOMEM, "out of memory loading %s", path);
  char *copy = strdup(path);
  if (!copy) return fg_err_set(e, FG_E_NOMEM, "out of memory loading %s", path);
  r->plugins[r->n_plugins] = (plugin){copy, handle};
  *out = &r->plugins[r->n_plugins++];
  return FG_OK;
}

/* A failed init leaves the registry as it was: the types it added are removed again. */
fg_status fg_registry_load_plugin(fg_registry *r, const char *path, fg_err *e) {
  if (!r || !path) return fg_err_set(e, FG_E_MISUSE, "load_plugin: no registry or path");
  void *handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!handle)
    return fg_err_set(e, FG_E_PLUGIN, "cannot load plugin %s: %s%s%s%s", path, dlerror(),
                      strchr(path, '/') ? ""
                                        : " (a name without a '/' is looked up on the library "
                                          "search path, not in the current directory: write ./",
                      strchr(path, '/') ? "" : path, strchr(path, '/') ? "" : ")");
  void *sym = dlsym(handle, FG_PLUGIN_INIT_SYMBOL);
  if (!sym) {
    dlclose(handle);
    return fg_err_set(e, FG_E_PLUGIN,
                      "plugin %s does not export %s (a plugin defines "
                      "fg_status fg_plugin_init(fg_registry *, fg_err *))",
                      path, FG_PLUGIN_INIT_SYMBOL);
  }
  plugin *pl = NULL;
  fg_status st = remember_plugin(r, path, handle, &pl, e);
  if (st != FG_OK) {
    dlclose(handle);
    return st;
  }
  int before = r->n;
  fg_plugin_init_fn init;
  memcpy(&init, &sym, sizeof init); /* object pointer to function pointer, as POSIX allows */
  r->loading = pl->path;
  fg_err inner;
  fg_err_clear(&inner);
  st = init(r, &inner);
  r->loading = NULL;
  if (st == FG_OK) return FG_OK;
  r->n = before;
  r->n_plugins--;
  free(pl->path);
  dlclose(handle);
  return fg_err_set(e, st == FG_E_EXISTS ? FG_E_EXISTS : FG_E_PLUGIN,
                    "plugin %s failed to initialise: %s", path,
                    inner.msg[0] ? inner.msg : fg_status_str(st));
}

const fg_bijector_type *fg_registry_find(const fg_registry *r, const char *name) {
  for (int i = 0; r && name && i < r->n; i++)
    if (strcmp(r->items[i].type->name, name) == 0) return r->items[i].type;
  return NULL;
}

/* Edit distance, to suggest "affine_coupling" for "afine_coupling". */
static int distance(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  if (la > 64 || lb > 64) return 99;
  int d[65][65];
  for (size_t i = 0; i <= la; i++) d[i][0] = (int)i;
  for (size_t j = 0; j <= lb; j++) d[0][j] = (int)j;
  for (size_t i = 1; i <= la; i++)
    for (size_t j = 1; j <= lb; j++) {
      int sub = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
      int del = d[i - 1][j] + 1, ins = d[i][j - 1] + 1;
      d[i][j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
    }
  return d[la][lb];
}

fg_status fg_registry_lookup(const fg_bijector_type **out, const fg_registry *r, const char *name,
                             fg_err *e) {
  *out = fg_registry_find(r, name);
  if (*out) return FG_OK;
  const char *best = NULL;
  int best_d = 4;
  for (int i = 0; r && i < r->n; i++) {
    int d = distance(name ? name : "", r->items[i].type->name);
    if (d < best_d) best_d = d, best = r->items[i].type->name;
  }
  if (best)
    return fg_err_set(e, FG_E_NOTFOUND, "unknown bijector type '%s' (did you mean '%s'?)", name,
                      best);
  return fg_err_set(e, FG_E_NOTFOUND, "unknown bijector type '%s' (%d types are registered)",
                    name ? name : "(null)", r ? r->n : 0);
}

int fg_registry_count(const fg_registry *r) { return r ? r->n : 0; }
const fg_bijector_type *fg_registry_type(const fg_registry *r, int i) {
  return r && i >= 0 && i < r->n ? r->items[i].type : NULL;
}
const char *fg_registry_origin(const fg_registry *r, int i) {
  return r && i >= 0 && i < r->n ? r->items[i].origin : NULL;
}
