/* A shared library that is not a flowgrad plugin: it exports no fg_plugin_init, so loading it
 * must fail with a message saying so (tests/test_plugins.c). */
int fg_not_a_plugin(void);

int fg_not_a_plugin(void) { return 42; }
