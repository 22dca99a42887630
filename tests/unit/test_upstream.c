/* Sidecar routes (src/lib/core/upstream.c): the answer parser (pure), then
 * real clicks through cg_app_handle_lark_http with a fake upstream
 * (tests/unit/fake_upstream.mjs, run with node) on 127.0.0.1 — relayed
 * answers, every broken answer → the fallback toast, refused, the deadline,
 * the exact JSON the upstream receives, freeing the app mid-request. */
// clang-format off
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
// clang-format on

#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include "cardgate.h"
#include "common/common.h"
#include "lib/core/upstream.h"
#include "support/fake_process.h"

/* ------------------------------------------------------ the fake server */

static cg_test_fake g_fake;

/* The last request the fake received (caller json_decref()s). */
static json_t *fake_last(void) {
  json_t *j = cg_test_fake_cmd(&g_fake, "{\"cmd\":\"last\"}");
  assert_non_null(j);
  return j;
}

static int group_setup(void **state) {
  (void)state;
  cg_test_unset_proxies();
  signal(SIGPIPE, SIG_IGN);
  if (cg_test_fake_start(&g_fake, "fake_upstream.mjs") != 0) {
    fprintf(stderr, "cannot start the fake upstream with node\n");
    return -1;
  }
  return 0;
}

static int group_teardown(void **state) {
  (void)state;
  cg_test_fake_stop(&g_fake);
  return 0;
}

/* ------------------------------------------------------------- fixture */

static const char legacy_body[] =
    "{\"open_id\":\"ou_1\",\"user_id\":\"u_1\",\"open_message_id\":\"om_1\","
    "\"open_chat_id\":\"oc_1\","
    "\"tenant_key\":\"t\",\"token\":\"c-1\",\"action\":{\"tag\":\"button\","
    "\"value\":{\"action\":\"approve\","
    "\"n\":3}}}";

static const char v2_body[] =
    "{\"schema\":\"2.0\",\"header\":{\"event_id\":\"ev-%d\",\"event_type\":"
    "\"card.action.trigger\",\"token\":\"\","
    "\"create_time\":\"1\",\"app_id\":\"cli_x\",\"tenant_key\":\"t\"},"
    "\"event\":{\"operator\":{\"open_id\":\"ou_1\","
    "\"union_id\":\"on_1\",\"tenant_key\":\"t\"},\"token\":\"c-2\",\"host\":"
    "\"im_message\",\"action\":{\"tag\":"
    "\"select_static\",\"option\":\"opt_b\",\"value\":\"plain\",\"form_value\":"
    "{\"reason\":\"ok\"}},"
    "\"context\":{\"open_message_id\":\"om_2\",\"open_chat_id\":\"oc_2\"}}}";

typedef struct answer {
  int calls;
  int status;
  char body[4096];
} answer;

typedef struct fixture {
  uv_loop_t loop;
  cg_app *app;
  char log[65536];
  size_t log_len;
  int serial;
  uint32_t deadline_ms;
} fixture;

static void on_done(int status, const char *body, size_t len, void *ud) {
  answer *a = ud;
  a->calls++;
  a->status = status;
  snprintf(a->body, sizeof(a->body), "%.*s", (int)len, body);
}

static void on_log(cg_log_level level, const char *component, const char *msg,
                   void *ud) {
  fixture *f = ud;
  (void)level;
  int n = snprintf(f->log + f->log_len, sizeof(f->log) - f->log_len, "%s: %s\n",
                   component, msg);
  if (n > 0 && f->log_len + (size_t)n < sizeof(f->log)) f->log_len += (size_t)n;
}

static void new_app(fixture *f) {
  cg_app_options o;
  cg_app_options_init(&o);
  o.deadline_ms = f->deadline_ms;
  o.log = on_log;
  o.log_ud = f;
  o.log_level = CG_LOG_DEBUG;
  int err;
  f->app = cg_app_new(&f->loop, &o, &err);
  assert_non_null(f->app);
}

static fixture *make_fixture(uint32_t deadline_ms) {
  fixture *f = calloc(1, sizeof(*f));
  assert_non_null(f);
  assert_int_equal(uv_loop_init(&f->loop), 0);
  f->deadline_ms = deadline_ms;
  new_app(f);
  return f;
}

/* A fresh app (routes are tried in order: a new route would never win). */
static void renew_app(fixture *f) {
  cg_app_free(f->app);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  new_app(f);
}

static int setup(void **state) {
  *state = make_fixture(2000);
  return 0;
}

static int teardown(void **state) {
  fixture *f = *state;
  cg_app_free(f->app);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&f->loop),
                   0); /* the client closed everything */
  free(f);
  return 0;
}

static void url_of(char *out, size_t cap, const char *path) {
  snprintf(out, cap, "http://127.0.0.1:%d%s", g_fake.port, path);
}

/* Routes everything to path, sends one click and runs the loop until it is
 * answered. v2: a schema-2.0 body (a fresh event id each time). */
static void click(fixture *f, const char *path, const cg_upstream_options *o,
                  int v2, answer *a) {
  char url[256];
  url_of(url, sizeof(url), path);
  renew_app(f);
  assert_int_equal(cg_app_route_upstream(f->app, NULL, url, o), 0);
  char body[2048];
  if (v2)
    snprintf(body, sizeof(body), v2_body, ++f->serial);
  else
    snprintf(body, sizeof(body), "%s", legacy_body);
  cg_http_request rq;
  memset(&rq, 0, sizeof(rq));
  rq.body = body;
  rq.body_len = strlen(body);
  memset(a, 0, sizeof(*a));
  assert_int_equal(
      cg_app_handle_lark_http(
          f->app, v2 ? CG_LARK_ENDPOINT_EVENT : CG_LARK_ENDPOINT_CARD, &rq,
          on_done, a),
      0);
  while (a->calls == 0) uv_run(&f->loop, UV_RUN_ONCE);
  assert_int_equal(a->calls, 1);
}

/* Runs the loop until the log holds needle. */
static void wait_log(fixture *f, const char *needle) {
  while (!strstr(f->log, needle)) uv_run(&f->loop, UV_RUN_ONCE);
}

/* ------------------------------------------------------- pure: parser */

static void test_parse_table(void **state) {
  (void)state;
  static const struct {
    const char *body;
    int ok;
    const char *why;
  } t[] = {
      {"{\"keep\":true}", 1, NULL},
      {"{\"card\":{\"elements\":[]}}", 1, NULL},
      {"{\"card\":{},\"toast\":{\"type\":\"success\",\"content\":\"x\","
       "\"i18n\":{\"en_us\":\"y\"}}}",
       1, NULL},
      {"{\"template\":{\"id\":\"T\",\"variables\":{\"a\":1},\"version\":\"1\"},"
       "\"toast\":{\"content\":\"x\"}}",
       1, NULL},
      {"{\"toast\":{\"type\":\"warning\",\"content\":\"x\"}}", 1, NULL},
      {"{\"status\":201,\"body\":[1,2]}", 1, NULL},
      {"{\"status\":200,\"body\":\"text\"}", 1, NULL},
      {"{\"inline\":{\"title\":\"t\"}}", 1, NULL},
      {"{\"inline\":{\"title\":\"t\",\"url\":\"https://x\"},\"card\":{}}", 1,
       NULL},
      {"<html>", 0, "not JSON"},
      {"", 0, "not JSON"},
      {"[]", 0, "an array, not an object"},
      {"\"keep\"", 0, "a string, not an object"},
      {"{}", 0, "empty object"},
      {"{\"keep\":false}", 0, "not true"},
      {"{\"keep\":true,\"card\":{}}", 0, "cannot be combined"},
      {"{\"card\":[]}", 0, "\"card\" is an array"},
      {"{\"card\":{},\"template\":{\"id\":\"T\"}}", 0, "only one of"},
      {"{\"variables\":{\"status\":\"ok\"}}", 1, NULL},
      {"{\"variables\":{\"a\":1},\"private_variables\":{\"b\":true}}", 1, NULL},
      {"{\"private_variables\":{\"b\":\"x\"}}", 1, NULL},
      {"{\"variables\":[1]}", 0, "\"variables\" is an array"},
      {"{\"private_variables\":\"x\"}", 0, "\"private_variables\" is a string"},
      {"{\"variables\":{},\"card\":{}}", 0, "only one of"},
      {"{\"template\":{\"id\":\"\"}}", 0, "template.id"},
      {"{\"template\":{\"id\":\"T\",\"variables\":[]}}", 0,
       "template.variables"},
      {"{\"template\":{\"id\":\"T\",\"extra\":1}}", 0,
       "unknown key \"extra\" in \"template\""},
      {"{\"toast\":{\"type\":\"loud\",\"content\":\"x\"}}", 0, "toast.type"},
      {"{\"toast\":{\"content\":42}}", 0, "\"toast.content\" is an integer"},
      {"{\"toast\":{\"type\":\"info\"}}", 0, "\"toast.content\" is missing"},
      {"{\"toast\":{\"content\":\"x\",\"i18n\":{\"en_us\":1}}}", 0,
       "toast.i18n"},
      {"{\"status\":200}", 0, "custom answer"},
      {"{\"status\":\"200\",\"body\":{}}", 0, "\"status\" is a string"},
      {"{\"status\":700,\"body\":{}}", 0, "outside 200..599"},
      {"{\"status\":200,\"body\":{},\"toast\":{\"content\":\"x\"}}", 0,
       "custom answer"},
      {"{\"inline\":{\"url\":\"u\"}}", 0, "inline.title"},
      {"{\"result\":\"approved\"}", 0, "unknown key \"result\""},
      {"{\"keep\":true,\"keep\":true}", 0, "not JSON"},
  };
  for (size_t i = 0; i < CG_ARRAY_SIZE(t); i++) {
    cg_reply *r = (cg_reply *)1;
    char why[256];
    int rc = cg__upstream_parse_answer(t[i].body, strlen(t[i].body), &r, why,
                                       sizeof(why));
    if (t[i].ok) {
      if (rc != 0) fail_msg("case %zu (%s): %s", i, t[i].body, why);
      assert_non_null(r);
      cg_reply_free(r);
    } else {
      if (rc != CG_EMALFORMED) fail_msg("case %zu (%s) accepted", i, t[i].body);
      assert_null(r);
      if (!strstr(why, t[i].why))
        fail_msg("case %zu: why \"%s\" lacks \"%s\"", i, why, t[i].why);
    }
  }
  /* over the limit without parsing */
  size_t n = CG__UPSTREAM_MAX_RESPONSE + 1;
  char *big = malloc(n);
  assert_non_null(big);
  memset(big, ' ', n);
  cg_reply *r = NULL;
  char why[256];
  assert_int_equal(cg__upstream_parse_answer(big, n, &r, why, sizeof(why)),
                   CG_EMALFORMED);
  assert_non_null(strstr(why, "1 MiB"));
  free(big);
}

/* ----------------------------------------------------- relayed answers */

static void test_card_relayed(void **state) {
  fixture *f = *state;
  answer a;
  click(f, "/card", NULL, 0, &a); /* legacy: the card itself, toast dropped */
  assert_int_equal(a.status, 200);
  json_t *j = json_loads(a.body, 0, NULL);
  assert_non_null(j);
  assert_non_null(json_object_get(j, "elements"));
  assert_true(json_is_true(
      json_object_get(json_object_get(j, "config"), "update_multi")));
  json_decref(j);
  click(f, "/card", NULL, 1, &a); /* v2: toast + raw card */
  assert_int_equal(a.status, 200);
  assert_non_null(
      strstr(a.body, "\"toast\":{\"type\":\"success\",\"content\":\"已通过\""));
  assert_non_null(strstr(a.body, "\"en_us\":\"Approved\""));
  assert_non_null(strstr(a.body, "\"card\":{\"type\":\"raw\",\"data\":{"));
  assert_non_null(strstr(a.body, "approved ✓"));
}

static void test_toast_custom_keep_template(void **state) {
  fixture *f = *state;
  answer a;
  click(f, "/toast", NULL, 1, &a);
  assert_int_equal(a.status, 200);
  assert_string_equal(a.body,
                      "{\"toast\":{\"type\":\"info\",\"content\":\"hello\"}}");
  click(f, "/toast", NULL, 0, &a); /* legacy toasts come with 400 */
  assert_int_equal(a.status, 400);
  assert_non_null(strstr(a.body, "\"content\":\"hello\""));
  click(f, "/custom", NULL, 1, &a);
  assert_int_equal(a.status, 418);
  assert_string_equal(a.body, "{\"teapot\":true}");
  click(f, "/keep", NULL, 1, &a);
  assert_int_equal(a.status, 200);
  assert_string_equal(a.body, "{}");
  click(f, "/template", NULL, 1, &a);
  assert_int_equal(a.status, 200);
  assert_non_null(strstr(a.body, "\"type\":\"template\""));
  assert_non_null(strstr(a.body, "AAq1"));
  assert_null(strstr(f->log, "fallback"));
}

/* ------------------------------------------------ broken → fallback toast */

static void expect_fallback(fixture *f, const char *path, const char *why) {
  answer a;
  f->log[0] = '\0';
  f->log_len = 0;
  click(f, path, NULL, 1, &a);
  assert_int_equal(a.status, 200);
  assert_non_null(strstr(a.body, "\"type\":\"error\""));
  assert_non_null(strstr(a.body, "服务暂时不可用，请稍后再试"));
  assert_non_null(
      strstr(a.body, "\"en_us\":\"Service unavailable, try again later\""));
  if (!strstr(f->log, why))
    fail_msg("%s: the log lacks \"%s\":\n%s", path, why, f->log);
  assert_non_null(strstr(f->log, "answered the fallback toast"));
}

static void test_broken_answers(void **state) {
  fixture *f = *state;
  expect_fallback(f, "/html", "not JSON");
  assert_non_null(strstr(f->log, "text/html"));
  assert_null(strstr(f->log, "nginx")); /* never the answer's contents */
  expect_fallback(f, "/nonjson", "not JSON");
  expect_fallback(f, "/shape", "unknown key \"result\"");
  expect_fallback(f, "/types", "\"toast.content\" is an integer");
  expect_fallback(f, "/huge", "over 1 MiB");
  expect_fallback(f, "/500", "HTTP 500");
  expect_fallback(f, "/nowhere", "HTTP 404");
}

static void test_refused(void **state) {
  fixture *f = *state;
  /* a port nobody listens on: bind one, note it, close it */
  uv_tcp_t t;
  struct sockaddr_in sa;
  uv_ip4_addr("127.0.0.1", 0, &sa);
  uv_tcp_init(&f->loop, &t);
  assert_int_equal(uv_tcp_bind(&t, (const struct sockaddr *)&sa, 0), 0);
  struct sockaddr_storage ss;
  int len = sizeof(ss);
  uv_tcp_getsockname(&t, (struct sockaddr *)&ss, &len);
  int port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
  uv_close((uv_handle_t *)&t, NULL);
  uv_run(&f->loop, UV_RUN_NOWAIT);
  char url[128];
  /* credentials in the URL and the query never reach the log */
  snprintf(url, sizeof(url), "http://svc:pw-secret@127.0.0.1:%d/x?k=q-secret", port);
  cg_upstream_options o;
  cg_upstream_options_init(&o);
  o.fallback_type = "warning";
  o.fallback_content = "稍后再试";
  o.fallback_en_us = "Later";
  assert_int_equal(
      cg_app_route_upstream(f->app, "value.action == \"approve\"", url, &o), 0);
  cg_http_request rq;
  memset(&rq, 0, sizeof(rq));
  rq.body = legacy_body;
  rq.body_len = strlen(legacy_body);
  answer a = {0};
  assert_int_equal(
      cg_app_handle_lark_http(f->app, CG_LARK_ENDPOINT_CARD, &rq, on_done, &a),
      0);
  while (a.calls == 0) uv_run(&f->loop, UV_RUN_ONCE);
  assert_int_equal(a.status, 400); /* legacy toast */
  assert_non_null(strstr(a.body, "\"content\":\"稍后再试\""));
  assert_non_null(strstr(a.body, "\"en_us\":\"Later\""));
  assert_non_null(strstr(f->log, "refused"));
  assert_null(strstr(f->log, "pw-secret"));
  assert_null(strstr(f->log, "q-secret"));
  assert_non_null(strstr(f->log, "http://127.0.0.1:"));
}

/* --------------------------------------------------------- the deadline */

static void test_slow_upstream(void **state) {
  fixture *f = make_fixture(200);
  *state = f;
  cg_upstream_options o;
  cg_upstream_options_init(&o);
  o.timeout_ms = 5000; /* longer than the deadline: the late answer arrives */
  answer a;
  uint64_t t0 = uv_now(&f->loop);
  click(f, "/slow?ms=600", &o, 1, &a);
  assert_int_equal(a.status, 200);
  assert_string_equal(a.body, "{}"); /* the deadline answered "keep" */
  assert_true(uv_now(&f->loop) - t0 < 550);
  wait_log(f, "late answer"); /* passed to cg_respond; no crash, no fallback */
  assert_null(strstr(f->log, "fallback"));
  assert_int_equal(a.calls, 1);
}

static void test_default_timeout_is_the_deadline(void **state) {
  fixture *f = make_fixture(200);
  *state = f;
  answer a;
  click(f, "/slow?ms=1500", NULL, 1, &a);
  assert_int_equal(a.status, 200);
  /* the deadline and the request timeout race: keep or the fallback */
  assert_true(!strcmp(a.body, "{}") || strstr(a.body, "服务暂时不可用"));
  /* the request ended by itself: nothing left in flight */
  wait_log(f, "upstream:");
}

static void test_free_app_mid_request(void **state) {
  fixture *f = *state;
  char url[256];
  url_of(url, sizeof(url), "/slow?ms=300");
  assert_int_equal(cg_app_route_upstream(f->app, NULL, url, NULL), 0);
  char body[2048];
  snprintf(body, sizeof(body), v2_body, 99);
  cg_http_request rq;
  memset(&rq, 0, sizeof(rq));
  rq.body = body;
  rq.body_len = strlen(body);
  answer a = {0};
  assert_int_equal(
      cg_app_handle_lark_http(f->app, CG_LARK_ENDPOINT_EVENT, &rq, on_done, &a),
      0);
  for (int i = 0; i < 3; i++) uv_run(&f->loop, UV_RUN_NOWAIT);
  cg_app_free(f->app); /* in flight: cancelled, the responder is detached */
  f->app = NULL;
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(a.calls, 0); /* no transport callback after cg_app_free */
}

/* ----------------------------------------------- what the upstream sees */

static json_t *last_body_checked(const char *secret) {
  json_t *last = fake_last();
  json_t *h = json_object_get(last, "headers");
  assert_string_equal(json_string_value(json_object_get(last, "method")),
                      "POST");
  assert_string_equal(json_string_value(json_object_get(h, "content-type")),
                      "application/json");
  if (secret)
    assert_string_equal(
        json_string_value(json_object_get(h, "x-cardgate-secret")), secret);
  else
    assert_null(json_object_get(h, "x-cardgate-secret"));
  json_t *b = json_incref(json_object_get(last, "body"));
  json_decref(last);
  assert_true(json_is_object(b));
  json_t *rec = json_object_get(b, "received_at_ms");
  json_t *dl = json_object_get(b, "deadline_ms");
  assert_true(json_is_integer(rec) && json_is_integer(dl));
  assert_true(json_integer_value(rec) > 1600000000000);
  assert_true(json_integer_value(dl) >= json_integer_value(rec));
  assert_true(json_integer_value(dl) <= json_integer_value(rec) + 2000);
  json_object_del(b, "received_at_ms");
  json_object_del(b, "deadline_ms");
  return b;
}

static void expect_json(json_t *got, const char *want_text) {
  json_t *want = json_loads(want_text, 0, NULL);
  assert_non_null(want);
  if (!json_equal(got, want)) {
    char *g = json_dumps(got, JSON_COMPACT | JSON_SORT_KEYS);
    char *w = json_dumps(want, JSON_COMPACT | JSON_SORT_KEYS);
    fail_msg("got  %s\nwant %s", g, w);
  }
  json_decref(want);
}

static void test_request_json(void **state) {
  fixture *f = *state;
  static const char *const extra[] = {"X-Team: cards", NULL};
  cg_upstream_options o;
  cg_upstream_options_init(&o);
  o.secret = "s3cret";
  o.headers = extra;
  answer a;
  click(f, "/echo", &o, 0, &a);
  assert_string_equal(a.body, "{}");
  json_t *b = last_body_checked("s3cret");
  expect_json(
      b,
      "{\"platform\":\"lark\",\"kind\":\"card_action\",\"format\":\"lark_"
      "legacy\",\"tenant_key\":\"t\","
      "\"operator\":{\"open_id\":\"ou_1\",\"user_id\":\"u_1\"},"
      "\"card\":{\"message_id\":\"om_1\",\"chat_id\":\"oc_1\"},\"component\":{"
      "\"tag\":\"button\"},"
      "\"value\":{\"action\":\"approve\",\"n\":3},\"update_token\":\"c-1\"}");
  json_decref(b);
  json_t *last = fake_last();
  assert_string_equal(json_string_value(json_object_get(
                          json_object_get(last, "headers"), "x-team")),
                      "cards");
  json_decref(last);

  click(f, "/echo", NULL, 1, &a);
  assert_string_equal(a.body, "{}");
  b = last_body_checked(NULL);
  char want[1024];
  snprintf(want, sizeof(want),
           "{\"platform\":\"lark\",\"kind\":\"card_action\",\"format\":\"lark_"
           "v2\",\"event_id\":\"ev-%d\","
           "\"event_type\":\"card.action.trigger\",\"app_id\":\"cli_x\","
           "\"tenant_key\":\"t\","
           "\"operator\":{\"open_id\":\"ou_1\",\"union_id\":\"on_1\"},"
           "\"card\":{\"message_id\":\"om_2\",\"chat_id\":\"oc_2\",\"host\":"
           "\"im_message\"},"
           "\"component\":{\"tag\":\"select_static\",\"option\":\"opt_b\"},"
           "\"value\":\"plain\",\"form_value\":{\"reason\":\"ok\"},\"update_"
           "token\":\"c-2\"}",
           f->serial);
  expect_json(b, want);
  json_decref(b);
}

static void test_bad_options(void **state) {
  fixture *f = *state;
  assert_int_equal(cg_app_route_upstream(f->app, NULL, "ftp://x/", NULL),
                   CG_EINVAL);
  assert_non_null(strstr(cg_app_last_error(f->app), "http://"));
  assert_int_equal(cg_app_route_upstream(f->app, NULL, NULL, NULL), CG_EINVAL);
  assert_int_equal(
      cg_app_route_upstream(f->app, "value.k ==", "http://127.0.0.1:1/", NULL),
      CG_EINVAL);
  assert_non_null(strstr(cg_app_last_error(f->app), "route"));
  static const char *const bad_hdr[] = {"NoColon", NULL};
  cg_upstream_options o;
  cg_upstream_options_init(&o);
  o.headers = bad_hdr;
  assert_int_equal(
      cg_app_route_upstream(f->app, NULL, "http://127.0.0.1:1/", &o),
      CG_EINVAL);
  cg_upstream_options_init(&o);
  o.secret = "a\r\nX-Evil: 1";
  assert_int_equal(
      cg_app_route_upstream(f->app, NULL, "http://127.0.0.1:1/", &o),
      CG_EINVAL);
  cg_upstream_options_init(&o);
  o.fallback_content = "\xff\xfe";
  assert_int_equal(
      cg_app_route_upstream(f->app, NULL, "http://127.0.0.1:1/", &o),
      CG_EINVAL);
}

static int teardown_maybe_freed(void **state) {
  fixture *f = *state;
  if (f->app) return teardown(state);
  assert_int_equal(uv_loop_close(&f->loop), 0);
  free(f);
  return 0;
}

static int setup_none(void **state) {
  *state = NULL;
  return 0;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_parse_table),
      cmocka_unit_test_setup_teardown(test_card_relayed, setup, teardown),
      cmocka_unit_test_setup_teardown(test_toast_custom_keep_template, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_broken_answers, setup, teardown),
      cmocka_unit_test_setup_teardown(test_refused, setup, teardown),
      cmocka_unit_test_setup_teardown(test_slow_upstream, setup_none, teardown),
      cmocka_unit_test_setup_teardown(test_default_timeout_is_the_deadline,
                                      setup_none, teardown),
      cmocka_unit_test_setup_teardown(test_free_app_mid_request, setup,
                                      teardown_maybe_freed),
      cmocka_unit_test_setup_teardown(test_request_json, setup, teardown),
      cmocka_unit_test_setup_teardown(test_bad_options, setup, teardown),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
