/* Route match expressions (src/lib/core/router.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "lib/core/action_int.h"
#include "lib/core/router.h"

static cg__action_rec *make(const char *value_json, const char *tag) {
  cg__action_rec *r = cg__action_new();
  r->pub.platform = CG_PLATFORM_LARK;
  r->pub.kind = CG_KIND_CARD_ACTION;
  r->pub.format = CG_FORMAT_LARK_LEGACY;
  r->pub.tag = tag;
  r->root = json_loads(value_json, 0, NULL);
  r->value = r->root;
  r->pub.value_json = value_json;
  return r;
}

static int eval(const char *expr, cg__action_rec *a) {
  char err[256];
  cg__match *m = cg__match_compile(expr, err, sizeof(err));
  assert_non_null(m);
  int v = cg__match_eval(m, &a->pub);
  cg__match_free(m);
  return v;
}

static void test_match_table(void **state) {
  (void)state;
  cg__action_rec *a = make("{\"button_type\":\"public_publish\",\"n\":42,\"ok\":true,\"o\":{}}", "button");
  assert_int_equal(eval(NULL, a), 1);
  assert_int_equal(eval("", a), 1);
  assert_int_equal(eval("value.button_type == \"public_publish\"", a), 1);
  assert_int_equal(eval("value.button_type == \"other\"", a), 0);
  assert_int_equal(eval("value.button_type != \"other\"", a), 1);
  assert_int_equal(eval("value.button_type", a), 1);
  assert_int_equal(eval("value.missing", a), 0);
  assert_int_equal(eval("value.missing != \"x\"", a), 1);
  assert_int_equal(eval("value.n == \"42\"", a), 1);
  assert_int_equal(eval("value.ok == \"true\"", a), 1);
  assert_int_equal(eval("value.o", a), 0);
  assert_int_equal(eval("kind == \"card_action\" && platform == \"lark\" && tag == \"button\"", a), 1);
  assert_int_equal(eval("kind == \"url_preview\" && tag == \"button\"", a), 0);
  assert_int_equal(eval("kind == \"url_preview\" || tag == \"button\"", a), 1);
  assert_int_equal(eval("tag == \"x\" || tag == \"y\" || format == \"lark_legacy\"", a), 1);
  assert_int_equal(eval("tag == \"x\" && tag == \"button\" || tag == \"y\"", a), 0);
  assert_int_equal(eval("  value.button_type==\"public_publish\"  ", a), 1);
  assert_int_equal(eval("name", a), 0);
  cg__action_free(a);
  /* a string value: no keys */
  a = make("\"just text\"", "button");
  assert_int_equal(eval("value.k", a), 0);
  cg__action_free(a);
}

static void test_escapes(void **state) {
  (void)state;
  cg__action_rec *a = make("{\"k\":\"a\\\"b\\\\c\"}", "button");
  assert_int_equal(eval("value.k == \"a\\\"b\\\\c\"", a), 1);
  cg__action_free(a);
}

static void test_compile_errors(void **state) {
  (void)state;
  static const struct {
    const char *expr;
    const char *msg;
  } bad[] = {
      {"tga == \"x\"", "column 1: unknown field \"tga\""},
      {"tag ==", "column 7: expected a double-quoted string"},
      {"tag == x", "column 8: expected a double-quoted string"},
      {"tag == \"x", "column 8: expected a double-quoted string"},
      {"tag == \"x\" and", "column 12: expected && or ||"},
      {"&& tag", "column 1: expected a field name"},
      {"tag &&", "column 7: expected a field name"},
      {"value. == \"x\"", "unknown field \"value.\""},
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    char err[256] = "";
    cg__match *m = cg__match_compile(bad[i].expr, err, sizeof(err));
    if (m) fail_msg("'%s' compiled", bad[i].expr);
    if (!strstr(err, bad[i].msg)) fail_msg("'%s': got '%s', want '%s'", bad[i].expr, err, bad[i].msg);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_match_table),
      cmocka_unit_test(test_escapes),
      cmocka_unit_test(test_compile_errors),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
