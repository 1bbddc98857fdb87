/* Constructing a bijector from its type's declared argument list: fg_bijector_new calls the
 * type's C constructor through libffi, so a plugin's constructor is usable by name from a spec
 * file with no glue code:
 *     fg_status create(void **state, fg_err *e, <arg 0>, <arg 1>, ...)
 * with int64_t, double, int, const char * or const fg_ints * per declared kind.  A cast to one
 * fixed prototype could not do this: the arity and the int/float mix (which decide registers
 * and stack slots in every C ABI) are only known at run time.  A constructor's failure keeps
 * its status and message.  (Arguments written as text: flows/bijector_args.c.) */
#include <ffi.h>
#include <stdlib.h>

#include "flows/bijector_internal.h"

const char *fg__arg_kind_name(fg_arg_kind k) {
  switch (k) {
  case FG_ARG_INT: return "an integer";
  case FG_ARG_DOUBLE: return "a number";
  case FG_ARG_BOOL: return "a bool (true, false, 1 or 0)";
  case FG_ARG_STRING: return "a string";
  case FG_ARG_INTS: return "a list of integers like [0, 1]";
  }
  return "an unknown kind";
}

/* One argument's C value, where libffi reads it from. */
typedef union ffi_slot {
  int64_t i;
  double d;
  int b;
  const char *s;
  const fg_ints *ints;
} ffi_slot;

static fg_status check_value(const fg_bijector_type *t, int i, const fg_arg_value *v, fg_err *e) {
  const fg_arg_spec *a = &t->args[i];
  if ((unsigned)a->kind > FG_ARG_INTS)
    return fg_err_set(e, FG_E_PLUGIN, "%s: argument %d declares an unknown kind %d", t->name, i,
                      (int)a->kind);
  if (v->kind != a->kind)
    return fg_err_set(e, FG_E_MISUSE, "%s: argument '%s' must be %s (value %d has another kind)",
                      t->name, a->name, fg__arg_kind_name(a->kind), i);
  if (a->kind == FG_ARG_STRING && !v->s)
    return fg_err_set(e, FG_E_MISUSE, "%s: argument '%s': the string is NULL", t->name, a->name);
  if (a->kind == FG_ARG_INTS && (v->ints.n < 0 || (v->ints.n > 0 && !v->ints.v)))
    return fg_err_set(e, FG_E_MISUSE, "%s: argument '%s': a list of %lld integers with no data",
                      t->name, a->name, (long long)v->ints.n);
  return FG_OK;
}

static ffi_type *slot_of(const fg_arg_value *v, ffi_slot *s) {
  switch (v->kind) {
  case FG_ARG_INT: s->i = v->i; return &ffi_type_sint64;
  case FG_ARG_DOUBLE: s->d = v->d; return &ffi_type_double;
  case FG_ARG_BOOL: s->b = v->i != 0; return &ffi_type_sint; /* a bool travels in .i */
  case FG_ARG_STRING: s->s = v->s; return &ffi_type_pointer;
  case FG_ARG_INTS: s->ints = &v->ints; return &ffi_type_pointer;
  }
  return NULL;
}

/* The call itself: state and error pointers first, then the arguments in declared order.
 * Returns whether the call could be made; the constructor's own return value goes to *created
 * (kept as an int: a foreign constructor may return anything) and its message to `inner`. */
static fg_status ffi_create(const fg_bijector_type *t, const fg_arg_value *values, void **state,
                            fg_err *inner, int *created, fg_err *e) {
  size_t n = (size_t)t->n_args + 2;
  ffi_type **types = malloc(sizeof *types * n);
  void **ptrs = malloc(sizeof *ptrs * n);
  ffi_slot *slots = malloc(sizeof *slots * n);
  void **state_arg = state;
  fg_err *err_arg = inner;
  fg_status st = FG_OK;
  ffi_cif cif;
  if (!types || !ptrs || !slots) {
    st = fg_err_set(e, FG_E_NOMEM, "%s: out of memory calling the constructor", t->name);
  } else {
    types[0] = types[1] = &ffi_type_pointer;
    ptrs[0] = &state_arg, ptrs[1] = &err_arg;
    for (size_t i = 2; i < n; i++)
      types[i] = slot_of(&values[i - 2], &slots[i]), ptrs[i] = &slots[i];
    if (ffi_prep_cif(&cif, FFI_DEFAULT_ABI, (unsigned)n, &ffi_type_sint, types) != FFI_OK)
      st = fg_err_set(e, FG_E_INTERNAL, "%s: libffi cannot describe a call with %d arguments",
                      t->name, t->n_args);
  }
  if (st == FG_OK) {
    ffi_sarg rc = 0; /* an int return is widened to ffi_sarg: narrower storage would overflow */
    ffi_call(&cif, t->create, &rc, ptrs);
    *created = (int)rc;
  }
  free(types), free(ptrs), free(slots);
  return st;
}

fg_status fg_bijector_new(fg_bijector **out, const fg_bijector_type *t, const fg_arg_value *values,
                          fg_err *e) {
  *out = NULL;
  if (!t || !t->create)
    return fg_err_set(e, FG_E_MISUSE, "bijector_new: no type or no constructor");
  if (t->n_args < 0 || (t->n_args > 0 && (!t->args || !values)))
    return fg_err_set(e, FG_E_MISUSE, "%s: %d arguments declared but no list or no values", t->name,
                      t->n_args);
  for (int i = 0; i < t->n_args; i++) {
    fg_status st = check_value(t, i, &values[i], e);
    if (st != FG_OK) return st;
  }
  /* A constructor sets *state only on success (on failure it leaves nothing to free). */
  void *state = NULL;
  fg_err inner;
  fg_err_clear(&inner);
  int created = FG_OK;
  fg_status st = ffi_create(t, values, &state, &inner, &created, e);
  if (st != FG_OK) return st;
  if (created != FG_OK) {
    bool known = created > 0 && created < FG_STATUS_COUNT;
    fg_status why = known ? (fg_status)created : FG_E_PLUGIN;
    return fg_err_set(e, why, "%s: the constructor failed: %s", t->name,
                      inner.msg[0] ? inner.msg
                      : known      ? fg_status_str(why)
                                   : "it returned an unknown status");
  }
  *out = fg__bijector_wrap(t, state);
  return *out ? FG_OK : fg_err_set(e, FG_E_NOMEM, "%s: out of memory for an instance", t->name);
}
