/* The bijector registry.  Built-in types are installed explicitly from one array
 * (flows/layers/builtins.c) — no static constructors, which static libraries silently drop — and a
 * plugin is a shared library exporting `fg_plugin_init`, which registers its types the same way.
 * A wrong ABI version, a duplicate name, a missing symbol or an unknown type is an error with a
 * message, never a crash. */
#ifndef FG_REGISTRY_H
#define FG_REGISTRY_H

#include "flows/bijector.h"

typedef struct fg_registry fg_registry;

/* What a plugin exports (see examples/plugin_sinh_arcsinh.c). */
typedef fg_status (*fg_plugin_init_fn)(fg_registry *r, fg_err *e);
#define FG_PLUGIN_INIT_SYMBOL "fg_plugin_init"

/* A new, empty registry in *out (NULL when out of memory). */
fg_status fg_registry_new(fg_registry **out, fg_err *e);
void fg_registry_free(fg_registry *r); /* also closes loaded plugins */

/* Adds a type (the registry keeps the pointer: t must outlive it).  FG_E_PLUGIN for a wrong ABI
 * version or an incomplete type, FG_E_EXISTS for a duplicate name. */
fg_status fg_registry_add(fg_registry *r, const fg_bijector_type *t, fg_err *e);
/* Installs every built-in type. */
fg_status fg_registry_add_builtins(fg_registry *r, fg_err *e);
/* dlopen()s path and calls its fg_plugin_init.  Types it adds are tagged with the path. */
fg_status fg_registry_load_plugin(fg_registry *r, const char *path, fg_err *e);

/* NULL when absent (fg_registry_lookup says why, listing close names). */
const fg_bijector_type *fg_registry_find(const fg_registry *r, const char *name);
fg_status fg_registry_lookup(const fg_bijector_type **out, const fg_registry *r, const char *name,
                             fg_err *e);
int fg_registry_count(const fg_registry *r);
const fg_bijector_type *fg_registry_type(const fg_registry *r, int i);
/* The plugin path a type came from, or NULL for a built-in. */
const char *fg_registry_origin(const fg_registry *r, int i);

/* The built-in types, NULL-terminated (flows/layers/builtins.c). */
extern const fg_bijector_type *const fg_builtin_bijectors[];

#endif
