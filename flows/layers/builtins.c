/* The built-in bijector types, installed by fg_registry_add_builtins exactly as a plugin
 * installs its own.  One entry per type; the verification test runs on every entry. */
#include "flows/layers/coupling.h"
#include "flows/layers/layers.h"
#include "flows/registry.h"

const fg_bijector_type *const fg_builtin_bijectors[] = {
    &fg_bijector_additive_coupling,
    &fg_bijector_affine_coupling,
    &fg_bijector_reverse,
    &fg_bijector_shuffle,
    &fg_bijector_permute,
    &fg_bijector_conv1x1,
    &fg_bijector_conv1x1_lu,
    &fg_bijector_actnorm,
    &fg_bijector_batchnorm,
    &fg_bijector_squeeze,
    &fg_bijector_split,
    &fg_bijector_logit,
    &fg_bijector_exp,
    &fg_bijector_sigmoid,
    &fg_bijector_affine,
    &fg_bijector_scale,
    &fg_bijector_flatten,
    NULL,
};
