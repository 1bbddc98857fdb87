/* The trainer: the data it accepts and the non-finite guard (a poisoned batch is skipped and
 * named; max_nonfinite skips in a row stop training), on the models of trainer_fixture.h.  Its
 * checkpoints are tested in test_checkpoint.c. */
#include "trainer_fixture.h"

TestSuite(trainer);

/* ---- the non-finite guard ---- */

Test(trainer, non_finite_or_out_of_range_data_is_rejected) {
  fg_train_settings s;
  fg_flow *f = flow_from_spec(TOY_SPEC, TOY.event, &s);
  fg_tensor *good = make_data(&TOY, 8, 1), *bad = make_data(&TOY, 8, 1);
  fg_tensor_set(bad, 7, NAN);
  fg_trainer_data d = {.train = bad};
  fg_trainer *t;
  fg_err e;
  cr_assert_eq(fg_trainer_new(&t, f, &s, &d, THREADS, &e), FG_E_FORMAT);
  cr_assert_null(t);
  cr_assert(strstr(e.msg, "element 7 is not finite"), "%s", e.msg);
  fg_tensor_set(bad, 7, INFINITY);
  d = (fg_trainer_data){.train = good, .test = bad};
  cr_assert_eq(fg_trainer_new(&t, f, &s, &d, THREADS, &e), FG_E_FORMAT, "an infinite test value too");
  cr_assert(strstr(e.msg, "not finite"), "%s", e.msg);
  fg_tensor_free(good);
  fg_tensor_free(bad);
  fg_flow_free(f);
  /* image levels must be 0..255 */
  f = flow_from_spec(IMAGE_SPEC, IMAGE.event, &s);
  bad = make_data(&IMAGE, 4, 1);
  fg_tensor_set(bad, 5, 300);
  d = (fg_trainer_data){.train = bad, .discrete = true};
  cr_assert_eq(fg_trainer_new(&t, f, &s, &d, THREADS, &e), FG_E_FORMAT);
  cr_assert(strstr(e.msg, "outside 0..255"), "%s", e.msg);
  fg_tensor_free(bad);
  fg_flow_free(f);
}

/* One step that the poisoned row must make skipped: nothing moved, layer 1 (exp) named. */
static void assert_skipped(const fg_train_step_info *info, const snapshot *before, const fg_flow *f) {
  cr_assert(!isfinite(info->loss), "step %lld: loss %g", (long long)info->step, info->loss);
  cr_assert(snapshot_matches(before, f), "a skipped step changes no weight");
  cr_assert(strstr(info->bad_layer, "1.exp"), "step %lld names layer 1.exp: '%s'", (long long)info->step,
            info->bad_layer);
}

/* Batch 4 of 8 rows: each epoch has exactly one batch with the poisoned row, whichever order the
 * shuffle picks, so every epoch has one skipped step and one real update. */
Test(trainer, a_poisoned_batch_is_skipped_and_training_goes_on) {
  model m = poisoned_model(4);
  for (int epoch = 0; epoch < 3; epoch++) {
    int skipped = 0;
    for (int k = 0; k < 2; k++) {
      snapshot before = snapshot_take(m.f);
      fg_train_step_info info;
      fg_err e;
      /* max_nonfinite 3: two skips in a row (across an epoch boundary) must not stop training */
      cr_assert_eq(fg_trainer_step(m.t, &info, &e), FG_OK, "%s", e.msg);
      cr_assert_eq(info.step, 2 * epoch + k + 1, "skipped steps count");
      if (info.skipped) {
        assert_skipped(&info, &before, m.f);
        skipped++;
      } else {
        cr_assert(isfinite(info.loss) && isfinite(info.grad_norm));
        cr_assert(!snapshot_matches(&before, m.f), "a finite step updates the weights");
        cr_assert_str_empty(info.bad_layer);
      }
      snapshot_free(&before);
    }
    cr_assert_eq(skipped, 1, "epoch %d: exactly the batch with the poisoned row is skipped", epoch);
  }
  model_free(&m);
}

/* Batch 8: every step sees the poisoned row; the third skip in a row stops with FG_E_NUMERIC. */
Test(trainer, max_nonfinite_skips_in_a_row_stop_training) {
  model m = poisoned_model(8);
  snapshot initial = snapshot_take(m.f);
  for (int i = 1; i <= 3; i++) {
    fg_train_step_info info;
    fg_err e;
    fg_status st = fg_trainer_step(m.t, &info, &e);
    cr_assert(info.skipped);
    assert_skipped(&info, &initial, m.f);
    if (i < 3) {
      cr_assert_eq(st, FG_OK, "step %d: %s", i, e.msg);
      continue;
    }
    cr_assert_eq(st, FG_E_NUMERIC, "the third skip in a row stops training");
    cr_assert(strstr(e.msg, "3 steps in a row") && strstr(e.msg, "1.exp"), "%s", e.msg);
  }
  cr_assert_eq(fg_trainer_step_count(m.t), 3);
  snapshot_free(&initial);
  model_free(&m);
}

/* ---- evaluation in parts ---- */

static bool stop_after_first(void *ud, int64_t done, int64_t total) {
  int64_t *calls = ud;
  (*calls)++;
  cr_assert_eq(total, TOY.n_test);
  return done < 0;
}

/* A subset is the first rows, evaluated exactly as a test set of just those rows would be; a
 * progress callback sees every batch and may stop early, the mean then being over the rows done. */
Test(trainer, evaluation_takes_a_subset_and_stops_when_asked) {
  fg_train_settings s;
  fg_flow *f = flow_from_spec(TOY.spec, TOY.event, &s);
  fg_tensor *train = make_data(&TOY, TOY.n_train, 11), *test = make_data(&TOY, TOY.n_test, 12), *first;
  cr_assert_eq(fg_tensor_slice0(&first, test, 0, 9, NULL), FG_OK);
  fg_trainer *t = trainer_for(f, &s, train, test, false), *u = trainer_for(f, &s, train, first, false);
  double all = evaluate_ok(t), sub, want = evaluate_ok(u);
  int64_t rows, calls = 0;
  fg_err e;
  fg_eval_opts o = {.max_rows = 9};
  cr_assert_eq(fg_trainer_evaluate_opts(t, &o, &sub, &rows, &e), FG_OK, "%s", e.msg);
  cr_assert(rows == 9 && sub == want, "the first 9 rows: %g vs %g", sub, want);
  cr_assert(sub != all);
  o = (fg_eval_opts){.progress = stop_after_first, .ud = &calls};
  cr_assert_eq(fg_trainer_evaluate_opts(t, &o, &sub, &rows, &e), FG_OK, "%s", e.msg);
  cr_assert_eq(calls, 1);
  cr_assert_eq(rows, s.batch, "stopped after the first batch");
  o = (fg_eval_opts){.max_rows = -1};
  cr_assert_eq(fg_trainer_evaluate_opts(t, &o, &sub, &rows, &e), FG_E_MISUSE);
  fg_trainer_free(t), fg_trainer_free(u);
  fg_tensor_free(train), fg_tensor_free(test), fg_tensor_free(first);
  fg_flow_free(f);
}
