/* The built-in bijector types, installed by fg_registry_add_builtins exactly as a plugin
 * installs its own.  One entry per type; the verification test runs on every entry. */
#include "flows/registry.h"

const fg_bijector_type *const fg_builtin_bijectors[] = {
    NULL,
};
