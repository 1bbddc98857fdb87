/* A plugin built against another bijector ABI: its type declares version 999, so the registry
 * must refuse it, name the versions, and keep nothing of it (tests/test_plugins.c). */
#include "flows/registry.h"

static fg_status create(void **state, fg_err *e) {
  (void)e;
  *state = NULL;
  return FG_OK;
}

static fg_status forward(void *state, fg_flow_ctx *c, fg_node x, fg_node *y, fg_node *logdet) {
  (void)state;
  *y = x;
  *logdet = FG_NONE;
  return fg_graph_status(fg_flow_graph(c));
}

static const fg_bijector_type future_type = {
    .abi_version = 999,
    .name = "from_the_future",
    .doc = "a type built for a bijector ABI this flowgrad does not have",
    .create = (void (*)(void))create,
    .forward = forward,
};

fg_status fg_plugin_init(fg_registry *r, fg_err *e);

fg_status fg_plugin_init(fg_registry *r, fg_err *e) { return fg_registry_add(r, &future_type, e); }
