/* In-memory duplicate suppression (src/lib/core/dedupe.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "lib/core/dedupe.h"

typedef struct got {
  int calls;
  int status;
  char body[64];
} got;

static void on_done(int status, const char *body, size_t len, void *ud) {
  got *g = ud;
  g->calls++;
  g->status = status;
  snprintf(g->body, sizeof(g->body), "%.*s", (int)len, body);
}

static void test_lifecycle(void **state) {
  (void)state;
  cg__dedupe *d = cg__dedupe_new(100);
  int st;
  const char *body;
  size_t len;
  assert_int_equal(cg__dedupe_begin(d, "e1", 1000, 500, &st, &body, &len), CG__DEDUPE_NEW);
  assert_int_equal(cg__dedupe_begin(d, "e1", 1001, 500, &st, &body, &len), CG__DEDUPE_INFLIGHT);
  got g = {0};
  assert_int_equal(cg__dedupe_wait(d, "e1", on_done, &g), 0);
  assert_int_equal(cg__dedupe_wait(d, "nope", on_done, &g), CG_ENOTFOUND);
  cg__dedupe_answer(d, "e1", 200, "{\"x\":1}", 7);
  assert_int_equal(g.calls, 1);
  assert_string_equal(g.body, "{\"x\":1}");
  assert_int_equal(cg__dedupe_begin(d, "e1", 1200, 500, &st, &body, &len), CG__DEDUPE_ANSWERED);
  assert_int_equal(st, 200);
  assert_int_equal(len, 7);
  assert_memory_equal(body, "{\"x\":1}", 7);
  /* expired: new again */
  assert_int_equal(cg__dedupe_begin(d, "e1", 1600, 500, &st, &body, &len), CG__DEDUPE_NEW);
  assert_int_equal(cg__dedupe_size(d), 1);
  cg__dedupe_free(d); /* frees the in-flight entry too */
}

static void test_inflight_never_expires(void **state) {
  (void)state;
  cg__dedupe *d = cg__dedupe_new(2);
  int st;
  const char *body;
  size_t len;
  assert_int_equal(cg__dedupe_begin(d, "slow", 1000, 100, &st, &body, &len), CG__DEDUPE_NEW);
  got g = {0};
  assert_int_equal(cg__dedupe_wait(d, "slow", on_done, &g), 0);
  /* long past its expiry, and pushed by newer entries past the count limit */
  for (int i = 0; i < 5; i++) {
    char id[8];
    snprintf(id, sizeof id, "n%d", i);
    assert_int_equal(cg__dedupe_begin(d, id, 9000 + i, 100, &st, &body, &len), CG__DEDUPE_NEW);
    cg__dedupe_answer(d, id, 200, "{}", 2);
  }
  assert_int_equal(cg__dedupe_begin(d, "slow", 10000, 100, &st, &body, &len), CG__DEDUPE_INFLIGHT);
  cg__dedupe_answer(d, "slow", 200, "{\"late\":1}", 10);
  assert_int_equal(g.calls, 1); /* the waiter got the answer */
  assert_string_equal(g.body, "{\"late\":1}");
  cg__dedupe_free(d);
}

static void test_bounded(void **state) {
  (void)state;
  cg__dedupe *d = cg__dedupe_new(50);
  int st;
  const char *body;
  size_t len;
  char id[32];
  for (int i = 0; i < 1000; i++) {
    snprintf(id, sizeof(id), "ev%d", i);
    assert_int_equal(cg__dedupe_begin(d, id, 10, 1000000, &st, &body, &len), CG__DEDUPE_NEW);
    cg__dedupe_answer(d, id, 200, "{}", 2);
  }
  assert_true(cg__dedupe_size(d) <= 50);
  /* the newest are still known */
  assert_int_equal(cg__dedupe_begin(d, "ev999", 11, 1000000, &st, &body, &len), CG__DEDUPE_ANSWERED);
  assert_int_equal(cg__dedupe_begin(d, "ev0", 11, 1000000, &st, &body, &len), CG__DEDUPE_NEW);
  cg__dedupe_free(d);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_lifecycle),
      cmocka_unit_test(test_bounded),
      cmocka_unit_test(test_inflight_never_expires),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
