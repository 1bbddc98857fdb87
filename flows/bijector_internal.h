/* Internals shared by flows/bijector.c, bijector_create.c and bijector_args.c. */
#ifndef FG_BIJECTOR_INTERNAL_H
#define FG_BIJECTOR_INTERNAL_H

#include "flows/bijector.h"

/* An instance of type t around the state its constructor made (NULL when out of memory, in
 * which case the state is destroyed). */
fg_bijector *fg__bijector_wrap(const fg_bijector_type *t, void *state);
/* "an integer", "a list of integers like [0, 1]", ...: what an argument of kind k must be. */
const char *fg__arg_kind_name(fg_arg_kind k);
/* Records how a leaf's forward log-det came about (fg_flow_ctx_logdet_sources). */
void fg__flow_ctx_count_logdet(fg_flow_ctx *c, bool declared, fg_jacobian_kind route);

#endif
