/* Internals shared by flows/bijector.c and flows/bijector_create.c. */
#ifndef FG_BIJECTOR_INTERNAL_H
#define FG_BIJECTOR_INTERNAL_H

#include "flows/bijector.h"

/* An instance of type t around the state its constructor made (NULL when out of memory, in
 * which case the state is destroyed). */
fg_bijector *fg__bijector_wrap(const fg_bijector_type *t, void *state);

#endif
