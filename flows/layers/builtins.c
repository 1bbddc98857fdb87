/* The built-in bijector types, installed by fg_registry_add_builtins exactly as a plugin
 * installs its own: the list generated from FG_BUILTIN_BIJECTORS (flows/layers/layers.h).  The
 * verification test runs on every entry. */
#include "flows/layers/layers.h"
#include "flows/registry.h"

const fg_bijector_type *const fg_builtin_bijectors[] = {
#define FG_BUILTIN_ENTRY_(name) &fg_bijector_##name,
    FG_BUILTIN_BIJECTORS(FG_BUILTIN_ENTRY_)
#undef FG_BUILTIN_ENTRY_
    NULL,
};
