/* Handler replies (src/lib/core/reply.c). The bytes each reply becomes are
 * checked in test_lark_webhook.c (cg__lark_encode_reply). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
/* cmocka needs the standard headers above */
#include <cmocka.h>

#include "lib/core/reply_int.h"

static char *dump(const json_t *j) {
  return json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
}

static void test_keep(void **state) {
  (void)state;
  cg_reply *r = cg_reply_keep();
  assert_non_null(r);
  assert_true(cg__reply_is_keep(r));
  assert_true(cg__reply_is_keep(NULL));
  cg_reply_free(r);
  cg_reply_free(NULL);
}

static void test_card(void **state) {
  (void)state;
  int err = 1;
  cg_reply *r = cg_reply_card(
      "{ \"config\": {\"wide_screen_mode\": true}, \"elements\": [] }", &err);
  assert_non_null(r);
  assert_int_equal(err, 0);
  assert_false(cg__reply_is_keep(r));
  char *s = dump(r->card);
  assert_string_equal(
      s, "{\"config\":{\"wide_screen_mode\":true},\"elements\":[]}");
  free(s);
  cg_reply_free(r);

  static const struct {
    const char *json;
    int err;
  } bad[] = {
      {"[]", CG_EMALFORMED},
      {"\"card\"", CG_EMALFORMED},
      {"42", CG_EMALFORMED},
      {"", CG_EMALFORMED},
      {"{", CG_EMALFORMED},
      {"{\"a\":1}x", CG_EMALFORMED},
      {"{\"a\":1,\"a\":2}", CG_EMALFORMED},
      {"{\"a\":\"\xff\"}", CG_EMALFORMED},
      {"null", CG_EMALFORMED},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    err = 0;
    assert_null(cg_reply_card(bad[i].json, &err));
    if (err != bad[i].err) fail_msg("%s: %d", bad[i].json, err);
  }
  err = 0;
  assert_null(cg_reply_card(NULL, &err));
  assert_int_equal(err, CG_EINVAL);
  assert_null(cg_reply_card(NULL, NULL)); /* err may be NULL */
}

static void test_template(void **state) {
  (void)state;
  int err = 1;
  cg_reply *r = cg_reply_template("AAq1", "{\"name\":\"x\"}", "1.0.2", &err);
  assert_non_null(r);
  assert_int_equal(err, 0);
  assert_string_equal(r->template_id, "AAq1");
  assert_string_equal(r->template_version, "1.0.2");
  char *s = dump(r->template_vars);
  assert_string_equal(s, "{\"name\":\"x\"}");
  free(s);
  assert_false(cg__reply_is_keep(r));
  cg_reply_free(r);

  r = cg_reply_template("AAq1", NULL, NULL, &err);
  assert_non_null(r);
  assert_null(r->template_vars);
  assert_null(r->template_version);
  cg_reply_free(r);

  assert_null(cg_reply_template(NULL, NULL, NULL, &err));
  assert_int_equal(err, CG_EINVAL);
  assert_null(cg_reply_template("", NULL, NULL, &err));
  assert_int_equal(err, CG_EINVAL);
  assert_null(cg_reply_template("t", "[1]", NULL, &err));
  assert_int_equal(err, CG_EMALFORMED);
  assert_null(cg_reply_template("t", "{", NULL, &err));
  assert_int_equal(err, CG_EMALFORMED);
  assert_null(cg_reply_template("t\xc3", NULL, NULL, &err));
  assert_int_equal(err, CG_EINVAL);
  assert_null(
      cg_reply_template("t", NULL, "\xed\xa0\x80", &err)); /* surrogate */
  assert_int_equal(err, CG_EINVAL);
}

static void test_toast(void **state) {
  (void)state;
  int err = 1;
  cg_reply *r =
      cg_reply_toast("success", "\xe5\xb7\xb2\xe5\xae\x8c\xe6\x88\x90", &err);
  assert_non_null(r);
  assert_int_equal(err, 0);
  assert_string_equal(r->toast_type, "success");
  assert_false(cg__reply_is_keep(r));
  assert_int_equal(cg_reply_toast_i18n(r, "en_us", "Done"), 0);
  assert_int_equal(cg_reply_toast_i18n(r, "ja_jp", "\xe5\xae\x8c\xe4\xba\x86"),
                   0);
  assert_int_equal(cg_reply_toast_i18n(r, "en_us", "Done!"), 0); /* replaces */
  char *s = dump(r->toast_i18n);
  assert_string_equal(
      s, "{\"en_us\":\"Done!\",\"ja_jp\":\"\xe5\xae\x8c\xe4\xba\x86\"}");
  free(s);
  /* a new toast drops the old translations */
  assert_int_equal(cg_reply_set_toast(r, "error", "no"), 0);
  assert_string_equal(r->toast_type, "error");
  assert_string_equal(r->toast_content, "no");
  assert_null(r->toast_i18n);
  /* bad arguments leave the toast alone */
  assert_int_equal(cg_reply_set_toast(r, NULL, "x"), CG_EINVAL);
  assert_int_equal(cg_reply_set_toast(r, "", "x"), CG_EINVAL);
  assert_int_equal(cg_reply_set_toast(r, "info", NULL), CG_EINVAL);
  assert_int_equal(cg_reply_set_toast(r, "info", "\xc0\xaf"), CG_EINVAL);
  assert_int_equal(cg_reply_set_toast(NULL, "info", "x"), CG_EINVAL);
  assert_string_equal(r->toast_content, "no");
  assert_int_equal(cg_reply_toast_i18n(r, NULL, "x"), CG_EINVAL);
  assert_int_equal(cg_reply_toast_i18n(r, "", "x"), CG_EINVAL);
  assert_int_equal(cg_reply_toast_i18n(r, "en_us", NULL), CG_EINVAL);
  assert_int_equal(cg_reply_toast_i18n(r, "en_us", "\xf5\x80\x80\x80"),
                   CG_EINVAL);
  assert_int_equal(cg_reply_toast_i18n(NULL, "en_us", "x"), CG_EINVAL);
  cg_reply_free(r);

  /* a translation needs a toast */
  r = cg_reply_keep();
  assert_int_equal(cg_reply_toast_i18n(r, "en_us", "x"), CG_EINVAL);
  assert_true(cg__reply_is_keep(r));
  /* a toast on a card reply */
  cg_reply_free(r);
  r = cg_reply_card("{}", &err);
  assert_int_equal(cg_reply_set_toast(r, "info", "saved"), 0);
  assert_non_null(r->card);
  cg_reply_free(r);

  assert_null(cg_reply_toast(NULL, "x", &err));
  assert_int_equal(err, CG_EINVAL);
  assert_null(cg_reply_toast("info", NULL, &err));
  assert_int_equal(err, CG_EINVAL);
  /* an empty text is allowed (the platform decides what to show) */
  r = cg_reply_toast("info", "", &err);
  assert_non_null(r);
  cg_reply_free(r);
}

static void test_custom(void **state) {
  (void)state;
  int err = 1;
  cg_reply *r = cg_reply_custom(202, "{\"msg\":\"later\"}", &err);
  assert_non_null(r);
  assert_int_equal(err, 0);
  assert_int_equal(r->custom_status, 202);
  assert_string_equal(r->custom_body, "{\"msg\":\"later\"}");
  assert_false(cg__reply_is_keep(r));
  cg_reply_free(r);
  r = cg_reply_custom(599, "", &err);
  assert_non_null(r);
  cg_reply_free(r);
  r = cg_reply_custom(200, "not json at all", &err); /* any bytes */
  assert_non_null(r);
  cg_reply_free(r);
  static const int bad[] = {0, -1, 100, 199, 600, 1000};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    err = 0;
    assert_null(cg_reply_custom(bad[i], "{}", &err));
    assert_int_equal(err, CG_EINVAL);
  }
  assert_null(cg_reply_custom(200, NULL, &err));
  assert_int_equal(err, CG_EINVAL);
}

static void test_inline(void **state) {
  (void)state;
  cg_reply *r = cg_reply_keep();
  assert_int_equal(cg_reply_set_inline(r, "Title", NULL), 0);
  assert_string_equal(r->inline_title, "Title");
  assert_null(r->inline_url);
  assert_false(cg__reply_is_keep(r));
  assert_int_equal(cg_reply_set_inline(r, "T2", "https://e.x/a?b=1"), 0);
  assert_string_equal(r->inline_title, "T2");
  assert_string_equal(r->inline_url, "https://e.x/a?b=1");
  assert_int_equal(cg_reply_set_inline(r, NULL, "u"), CG_EINVAL);
  assert_int_equal(cg_reply_set_inline(r, "t", "\xff"), CG_EINVAL);
  assert_int_equal(cg_reply_set_inline(NULL, "t", NULL), CG_EINVAL);
  assert_string_equal(r->inline_title, "T2");
  cg_reply_free(r);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_keep),     cmocka_unit_test(test_card),
      cmocka_unit_test(test_template), cmocka_unit_test(test_toast),
      cmocka_unit_test(test_custom),   cmocka_unit_test(test_inline),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
