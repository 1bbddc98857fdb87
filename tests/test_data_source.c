/* Data sources named by a string (frontends/data/data_source.h): the toy generators' settings
 * are checked as integers in range before any conversion, and a source with no samples is
 * refused by name. */
#include <criterion/criterion.h>
#include <math.h>

#include "frontends/data/data_source.h"
#include "io_helpers.h"

TestSuite(data_source, .init = io_setup, .fini = io_teardown);

static void expect_status(const char *source, fg_status want, const char *needle) {
  fg_data d;
  fg_err e;
  fg_status st = fg_data_open(&d, source, 0, &e);
  cr_expect_eq(st, want, "'%s' gave status %d: %s", source, (int)st, e.msg);
  cr_expect(strstr(e.msg, needle) != NULL, "'%s': expected '%s' in: %s", source, needle, e.msg);
  cr_expect_null(d.train);
}

static void expect_refused(const char *source, const char *needle) {
  expect_status(source, FG_E_FORMAT, needle);
}

Test(data_source, toy_settings_must_be_integers_in_range) {
  expect_refused("moons n=1e300", "n must be an integer from 1 to");
  expect_refused("moons n=0", "n must be an integer from 1 to");
  expect_refused("moons n=2.5", "n must be an integer");
  expect_refused("moons n=nan", "n must be an integer");
  expect_refused("moons test_n=-3", "test_n must be an integer from 1 to");
  expect_refused("moons seed=-1", "seed must be an integer from 0 to");
  expect_refused("moons seed=1e30", "seed must be an integer from 0 to");
  expect_refused("moons noise=nan", "noise");
  expect_refused("moons noise=inf", "noise");
  expect_refused("moons scale=-1", "scale");
  expect_refused("moons n=10 n=20", "'n' given twice");
  fg_data d;
  fg_err e;
  cr_assert_eq(fg_data_open(&d, "moons n=100 test_n=7 seed=3", 0, &e), FG_OK, "%s", e.msg);
  cr_assert_eq(d.train->shape.d[0], 100);
  cr_assert_eq(d.test->shape.d[0], 7);
  fg_data_free(&d);
}

/* An array of no samples has nothing to train on, however wide it claims its samples are (a
 * (0, 4294967296) array used to reach the layers as a 4294967296-channel event). */
Test(data_source, npy_without_samples_is_refused) {
  const char *p = io_path("empty.npy");
  io_write_npy(p, "{'descr': '<f4', 'fortran_order': False, 'shape': (0, 4294967296), }", NULL, 0);
  char source[300];
  snprintf(source, sizeof source, "npy:%s", p);
  expect_refused(source, "no samples");
  io_write_npy(p, "{'descr': '<f4', 'fortran_order': False, 'shape': (0, 2), }", NULL, 0);
  expect_refused(source, "no samples");
  float v[4] = {1, 2, 3, 4};
  io_write_npy(p, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }", v, sizeof v);
  const char *q = io_path("empty_test.npy");
  io_write_npy(q, "{'descr': '<f4', 'fortran_order': False, 'shape': (0, 2), }", NULL, 0);
  snprintf(source, sizeof source, "npy:%s,%s", p, q);
  expect_refused(source, "no samples");
}

/* NaN in the data is refused naming the element (the command exits 3 for it: bad input). */
Test(data_source, non_finite_npy_values_are_bad_input) {
  const char *p = io_path("nan.npy");
  float v[4] = {1, NAN, 3, 4};
  io_write_npy(p, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }", v, sizeof v);
  char source[300];
  snprintf(source, sizeof source, "npy:%s", p);
  expect_status(source, FG_E_NUMERIC, "NaN");
}
