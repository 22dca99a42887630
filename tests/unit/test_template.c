/* Card templates (src/lib/codec/template.c): ${var} substitution over a
 * jansson tree, and the load-time check of every placeholder. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
/* cmocka needs the standard headers above */
#include <cmocka.h>

#include "cardgate/error.h"
#include "common/common.h"
#include "common/limits.h"
#include "lib/codec/template.h"

/* ---- a small variable table -------------------------------------------- */

typedef struct vars {
  const char *names[8];
  const char *values[8];
} vars;

static const char *lookup(const char *name, size_t n, void *ud) {
  const vars *v = ud;
  for (size_t i = 0; i < 8 && v->names[i]; i++)
    if (strlen(v->names[i]) == n && memcmp(v->names[i], name, n) == 0)
      return v->values[i];
  return NULL;
}

static int known(const char *name, size_t n, void *ud) {
  return lookup(name, n, ud) != NULL;
}

static const vars V = {
    {"name", "status", "operator.open_id", "empty", "dollar", NULL},
    {"World", "已同意", "ou_123", "", "${name}", NULL}};

static char *render_text(const char *s) {
  return cg__template_render_str(s, lookup, (void *)&V);
}

static void expect_str(const char *tmpl, const char *want) {
  char *got = render_text(tmpl);
  assert_non_null(got);
  if (strcmp(got, want) != 0) fail_msg("%s → %s, want %s", tmpl, got, want);
  free(got);
}

/* Renders JSON text and compares the compact result. */
static void expect_json(const char *tmpl, const char *want) {
  json_t *t = json_loads(tmpl, JSON_DECODE_ANY, NULL);
  assert_non_null(t);
  json_t *copy = json_deep_copy(t);
  char err[128];
  json_t *out = cg__template_render(t, lookup, (void *)&V, err, sizeof err);
  assert_non_null(out);
  char *got = json_dumps(out, JSON_COMPACT | JSON_ENCODE_ANY);
  if (strcmp(got, want) != 0) fail_msg("%s → %s, want %s", tmpl, got, want);
  assert_true(json_equal(t, copy)); /* the template is left alone */
  free(got);
  json_decref(out);
  json_decref(t);
  json_decref(copy);
}

/* ---- render ------------------------------------------------------------ */

static void test_substitution(void **state) {
  (void)state;
  expect_str("Hello ${name}!", "Hello World!");
  expect_str("${name}", "World");
  expect_str("${name}${name}", "WorldWorld");
  expect_str("状态：${status}", "状态：已同意");
  expect_str("<at id=${operator.open_id}></at>", "<at id=ou_123></at>");
  expect_str("[${empty}]", "[]");
  expect_str("", "");
  expect_str("no placeholders", "no placeholders");
  /* A value is inserted as is, never rescanned. */
  expect_str("${dollar}", "${name}");
  assert_null(cg__template_render_str(NULL, lookup, (void *)&V));
  /* No lookup at all: every name is unknown. */
  char *s = cg__template_render_str("a${name}b", NULL, NULL);
  assert_string_equal(s, "ab");
  free(s);
}

static void test_escapes(void **state) {
  (void)state;
  expect_str("$${name}", "${name}");
  expect_str("$${", "${");
  expect_str("cost: $5", "cost: $5");
  expect_str("$$", "$$");
  expect_str("$", "$");
  expect_str("a$", "a$");
  expect_str("$$$${name}", "$$${name}");
  expect_str("$$${name}", "$${name}"); /* left to right: "$" then "$${" */
  expect_str("{name}", "{name}");
}

static void test_unknown_names(void **state) {
  (void)state;
  expect_str("[${nope}]", "[]");
  expect_str("${operator.user_id}", "");
}

static void test_malformed_render(void **state) {
  (void)state;
  /* Copied through as written (the check refuses them at load time). */
  expect_str("${", "${");
  expect_str("x ${", "x ${");
  expect_str("${}", "${}");
  expect_str("${a b}", "${a b}");
  expect_str("${name", "${name");
  expect_str("${name-x}", "${name-x}");
  expect_str("${${name}}", "${World}");
}

static void test_tree(void **state) {
  (void)state;
  expect_json(
      "{\"header\":{\"title\":{\"tag\":\"plain_text\",\"content\":\"${name}\"}}"
      ","
      "\"elements\":[{\"tag\":\"div\",\"text\":{\"content\":\"状态：${status}"
      "\"}},"
      "[\"${name}\",[\"${empty}\"]]]}",
      "{\"header\":{\"title\":{\"tag\":\"plain_text\",\"content\":\"World\"}},"
      "\"elements\":[{\"tag\":\"div\",\"text\":{\"content\":\"状态：已同意\"}},"
      "[\"World\",[\"\"]]]}");
  /* Keys are never substituted. */
  expect_json("{\"${name}\":\"${name}\"}", "{\"${name}\":\"World\"}");
  /* Non-string values are copied unchanged. */
  expect_json("[1,-2,3.5,true,false,null,{},[],\"\"]",
              "[1,-2,3.5,true,false,null,{},[],\"\"]");
  expect_json("{\"is_short\":false,\"n\":9007199254740993}",
              "{\"is_short\":false,\"n\":9007199254740993}");
  expect_json("\"${name}\"", "\"World\"");
  expect_json("42", "42");
}

static json_t *nest(int depth) {
  json_t *leaf = json_string("${name}");
  for (int i = 0; i < depth; i++) {
    json_t *a = json_array();
    json_array_append_new(a, leaf);
    leaf = a;
  }
  return leaf;
}

static void test_deep_trees(void **state) {
  (void)state;
  char err[128];
  /* As deep as allowed: fine. */
  json_t *ok = nest(CG_LIMIT_JSON_DEPTH);
  json_t *out = cg__template_render(ok, lookup, (void *)&V, err, sizeof err);
  assert_non_null(out);
  json_t *leaf = out;
  for (int i = 0; i < CG_LIMIT_JSON_DEPTH; i++) leaf = json_array_get(leaf, 0);
  assert_string_equal(json_string_value(leaf), "World");
  json_decref(out);
  assert_int_equal(
      cg__template_check(ok, "$", known, (void *)&V, err, sizeof err), 0);
  json_decref(ok);

  /* Deeper: refused, not a stack overflow, even far deeper. */
  for (int depth = CG_LIMIT_JSON_DEPTH + 1; depth <= 10000; depth *= 10) {
    json_t *deep = nest(depth);
    assert_null(cg__template_render(deep, lookup, (void *)&V, err, sizeof err));
    assert_string_equal(err, "template nesting is too deep");
    assert_int_equal(
        cg__template_check(deep, "$.c", known, (void *)&V, err, sizeof err),
        -1);
    assert_string_equal(err, "$.c: nesting deeper than 64 levels");
    json_decref(deep);
  }
}

static void test_huge_output(void **state) {
  (void)state;
  size_t big_len = CG_LIMIT_TEMPLATE_OUTPUT / 2 + 16;
  char *big = malloc(big_len + 1);
  assert_non_null(big);
  memset(big, 'x', big_len);
  big[big_len] = '\0';
  vars v = {{"big", NULL}, {big, NULL}};
  char err[128];

  json_t *one = json_pack("[s]", "${big}");
  json_t *out = cg__template_render(one, lookup, &v, err, sizeof err);
  assert_non_null(out);
  assert_int_equal(json_string_length(json_array_get(out, 0)), big_len);
  json_decref(out);
  json_decref(one);

  json_t *two = json_pack("{s:s,s:[s]}", "a", "${big}", "b", "${big}");
  err[0] = '\0';
  assert_null(cg__template_render(two, lookup, &v, err, sizeof err));
  assert_string_equal(err, "template output exceeds the size limit");
  json_decref(two);

  /* One string that expands past the limit by itself. */
  char *s = cg__template_render_str("${big}${big}", lookup, &v);
  assert_null(s);
  json_t *str = json_string("${big}-${big}");
  assert_null(cg__template_render(str, lookup, &v, err, sizeof err));
  assert_string_equal(err, "template output exceeds the size limit");
  json_decref(str);

  /* Many small expansions add up too. */
  json_t *arr = json_array();
  for (int i = 0; i < 3; i++) json_array_append_new(arr, json_string("${big}"));
  assert_null(cg__template_render(arr, lookup, &v, err, sizeof err));
  json_decref(arr);
  free(big);
}

static void test_bad_utf8_value(void **state) {
  (void)state;
  vars v = {{"bad", NULL}, {"\xff\xfe", NULL}};
  char err[128];
  json_t *t = json_string("x${bad}");
  assert_null(cg__template_render(t, lookup, &v, err, sizeof err));
  assert_string_equal(err, "rendered text is not valid UTF-8");
  json_decref(t);
  assert_null(cg__template_render(NULL, lookup, &v, err, sizeof err));
}

/* ---- check ------------------------------------------------------------- */

static void want_check(const char *tmpl, const char *prefix, const char *want) {
  json_t *t = json_loads(tmpl, JSON_DECODE_ANY, NULL);
  assert_non_null(t);
  char err[256] = "junk";
  int rc = cg__template_check(t, prefix, known, (void *)&V, err, sizeof err);
  json_decref(t);
  if (!want) {
    if (rc != 0) fail_msg("%s: unexpected %s", tmpl, err);
    assert_string_equal(err, "");
    return;
  }
  assert_int_equal(rc, -1);
  if (strcmp(err, want) != 0) fail_msg("%s: got %s, want %s", tmpl, err, want);
}

static void test_check(void **state) {
  (void)state;
  want_check("{\"a\":[\"${name} $${x} ${operator.open_id}\",1,true]}",
             "$.cards.c", NULL);
  want_check("{\"a\":[{\"b\":\"x ${\"}]}", "$.cards.c",
             "$.cards.c.a[0].b: unterminated placeholder \"${\"");
  want_check("{\"a\":\"${}\"}", "$.cards.c",
             "$.cards.c.a: empty placeholder \"${}\"");
  want_check("{\"a\":\"x ${a b} y\"}", "$.cards.c",
             "$.cards.c.a: bad placeholder name \"${a b}\"");
  want_check("{\"a\":\"${name\"}", "$.cards.c",
             "$.cards.c.a: unterminated placeholder \"${name\"");
  want_check("{\"a\":\"${stauts}\"}", "$.cards.c",
             "$.cards.c.a: unknown variable \"stauts\"");
  want_check("[\"ok\",{\"x\":{\"y\":[0,\"${nope}\"]}}]", NULL,
             "$[1].x.y[1]: unknown variable \"nope\"");
  /* Keys that are not identifiers are quoted in the path. */
  want_check("{\"a b\":{\"中文\":\"${nope}\"}}", "$",
             "$[\"a b\"][\"中文\"]: unknown variable \"nope\"");
  /* Keys themselves are not checked. */
  want_check("{\"${nope}\":1}", "$", NULL);
  /* A plain string. */
  want_check("\"${}\"", "$.states.s.on[0].set.x",
             "$.states.s.on[0].set.x: empty placeholder \"${}\"");
  /* Long offending text is cut. */
  want_check(
      "\"${aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"", "$",
      "$: unterminated placeholder "
      "\"${aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa…\"");
  /* No known function: only syntax is checked. */
  json_t *t = json_string("${whatever}");
  char err[64];
  assert_int_equal(cg__template_check(t, "$", NULL, NULL, err, sizeof err), 0);
  assert_int_equal(cg__template_check(NULL, "$", NULL, NULL, err, sizeof err),
                   0);
  json_decref(t);
  /* err is optional. */
  t = json_string("${");
  assert_int_equal(cg__template_check(t, "$", NULL, NULL, NULL, 0), -1);
  json_decref(t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_substitution),
      cmocka_unit_test(test_escapes),
      cmocka_unit_test(test_unknown_names),
      cmocka_unit_test(test_malformed_render),
      cmocka_unit_test(test_tree),
      cmocka_unit_test(test_deep_trees),
      cmocka_unit_test(test_huge_output),
      cmocka_unit_test(test_bad_utf8_value),
      cmocka_unit_test(test_check),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
