/* The descriptor table, generated from core/ir/ops.def. */
#include <string.h>

#include "core/ir/op.h"

static const fg_op_def *const op_table[] = {
#define FG_OP(ID, name) [FG_OP_##ID] = &fg_opdef_##name,
#include "core/ir/ops.def"
#undef FG_OP
};

_Static_assert(sizeof op_table / sizeof *op_table == FG_OP_COUNT,
               "ops.def and the descriptor table must list the same ops");

const fg_op_def *fg_op_get(int op) {
  return (op >= 0 && op < FG_OP_COUNT) ? op_table[op] : NULL;
}

int fg_op_find(const char *name) {
  for (int i = 0; i < FG_OP_COUNT; i++)
    if (strcmp(op_table[i]->name, name) == 0) return i;
  return -1;
}
