/* The DingTalk Open API client: the classification table (pure), then
 * every call against a fake Open API (tests/unit/fake_dingtalk_openapi.mjs,
 * run with node) on 127.0.0.1 — token cache and single flight, expiry,
 * InvalidAuthentication retry, bad credentials, card bodies, per-space
 * failures, rate limits, broken answers, timeouts, close with work in
 * flight. */
// clang-format off
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
// clang-format on

#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "cardgate/error.h"
#include "common/common.h"
#include "lib/openapi/dingtalk_api.h"
#include "support/fake_process.h"

static const char VARS[] =
    "{\"title\":\"hello \\\"card\\\"\",\"count\":3,\"done\":false,\"items\":"
    "[1,2]}";

/* ------------------------------------------------------ the fake server */

static cg_test_fake g_fake;

static json_t *fake_cmd(const char *cmd) {
  json_t *j = cg_test_fake_cmd(&g_fake, cmd);
  assert_non_null(j);
  return j;
}

static void fake_do(const char *cmd) {
  json_decref(fake_cmd(cmd));
}

static json_int_t fake_stat(const char *key) {
  json_t *s = fake_cmd("{\"cmd\":\"stats\"}");
  json_int_t v = json_integer_value(json_object_get(s, key));
  json_decref(s);
  return v;
}

static json_t *fake_last(void) {
  json_t *s = fake_cmd("{\"cmd\":\"stats\"}");
  json_t *last = json_incref(json_object_get(s, "last"));
  json_decref(s);
  assert_non_null(last);
  return last;
}

static int group_setup(void **state) {
  (void)state;
  cg_test_unset_proxies();
  signal(SIGPIPE, SIG_IGN);
  if (cg_test_fake_start(&g_fake, "fake_dingtalk_openapi.mjs") != 0) {
    fprintf(stderr, "cannot start the fake DingTalk Open API with node\n");
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

typedef struct res {
  int calls;
  cg__dt_api_result r;
  char result_json[1024];
} res;

typedef struct fixture {
  uv_loop_t loop;
  uv_timer_t ticker;
  cg__dt_api *api;
  uint64_t clock_ms;
  int closed;
  int in_call;
  int sync_calls;
  char log[65536];
  size_t log_len;
} fixture;

static fixture *g_fx;

static void on_tick(uv_timer_t *t) {
  (void)t;
}

static uint64_t test_clock(void *ud) {
  return ((fixture *)ud)->clock_ms;
}

static void on_log(cg_log_level level, const char *component, const char *msg,
                   void *ud) {
  fixture *fx = ud;
  (void)level;
  int n = snprintf(fx->log + fx->log_len, sizeof(fx->log) - fx->log_len,
                   "%s: %s\n", component, msg);
  if (n > 0 && fx->log_len + (size_t)n < sizeof(fx->log))
    fx->log_len += (size_t)n;
}

static cg__dt_api *make_api_base(fixture *fx, const char *base,
                                 const char *secret, uint32_t timeout_ms,
                                 int *err) {
  cg__dt_api_options o;
  cg__dt_api_options_init(&o);
  o.base_url = base;
  o.app_key = "dingkey_test";
  o.app_secret = secret;
  o.timeout_ms = timeout_ms;
  o.max_response_bytes = 256 * 1024;
  o.log = on_log;
  o.log_ud = fx;
  o.log_level = CG_LOG_DEBUG;
  o.clock = test_clock;
  o.clock_ud = fx;
  return cg__dt_api_new(&fx->loop, &o, err);
}

static cg__dt_api *make_api(fixture *fx, const char *secret,
                            uint32_t timeout_ms, int *err) {
  char base[64];
  snprintf(base, sizeof(base), "http://127.0.0.1:%d", g_fake.port);
  return make_api_base(fx, base, secret, timeout_ms, err);
}

static int setup(void **state) {
  fake_do("{\"cmd\":\"reset\"}");
  fixture *fx = calloc(1, sizeof(*fx));
  assert_non_null(fx);
  fx->clock_ms = 1000000;
  assert_int_equal(uv_loop_init(&fx->loop), 0);
  assert_int_equal(uv_timer_init(&fx->loop, &fx->ticker), 0);
  uv_timer_start(&fx->ticker, on_tick, 20, 20);
  int err = 1;
  fx->api = make_api(fx, "secret_test", 5000, &err);
  assert_non_null(fx->api);
  assert_int_equal(err, 0);
  g_fx = fx;
  *state = fx;
  return 0;
}

static void on_closed(void *ud) {
  ((fixture *)ud)->closed++;
}

static uint64_t mono_ms(void) {
  return uv_hrtime() / 1000000u;
}

static void run_until(fixture *fx, const int *counter, int target,
                      uint64_t timeout_ms) {
  uint64_t end = mono_ms() + timeout_ms;
  while (*counter < target) {
    uv_run(&fx->loop, UV_RUN_ONCE);
    if (mono_ms() > end)
      fail_msg("timed out waiting (%d of %d)", *counter, target);
  }
}

static void run_for(fixture *fx, uint64_t ms) {
  uint64_t end = mono_ms() + ms;
  while (mono_ms() < end) uv_run(&fx->loop, UV_RUN_ONCE);
}

static void close_api(fixture *fx) {
  fx->in_call = 1;
  cg__dt_api_close(fx->api, on_closed, fx);
  fx->in_call = 0;
  assert_int_equal(fx->closed, 0);
  run_until(fx, &fx->closed, 1, 5000);
  fx->api = NULL;
}

static int teardown(void **state) {
  fixture *fx = *state;
  if (fx->api) close_api(fx);
  uv_close((uv_handle_t *)&fx->ticker, NULL);
  uv_run(&fx->loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&fx->loop), 0);
  assert_int_equal(fx->sync_calls, 0);
  if (getenv("CG_TEST_VERBOSE")) fputs(fx->log, stderr);
  /* Never a secret, a token or card contents in the log. */
  assert_null(strstr(fx->log, "secret_test"));
  assert_null(strstr(fx->log, "dt-fake-"));
  assert_null(strstr(fx->log, "hello"));
  free(fx);
  g_fx = NULL;
  return 0;
}

static void on_res(const cg__dt_api_result *r, void *ud) {
  res *x = ud;
  if (g_fx && g_fx->in_call) g_fx->sync_calls++;
  x->calls++;
  x->r = *r;
  x->r.result = NULL;
  x->result_json[0] = '\0';
  if (r->result) {
    char *s = json_dumps(r->result, JSON_COMPACT | JSON_ENCODE_ANY);
    if (s) cg_strlcpy(x->result_json, s, sizeof(x->result_json));
    free(s);
  }
}

static cg__dt_card_spec group_spec(void) {
  cg__dt_card_spec s;
  memset(&s, 0, sizeof(s));
  s.card_template_id = "tpl-1.schema";
  s.out_track_id = "track-1";
  s.card_param_map_json = VARS;
  s.group = 1;
  s.space_id = "cidGROUP==";
  return s;
}

static int deliver(fixture *fx, const cg__dt_card_spec *s, res *x) {
  fx->in_call = 1;
  int rc = cg__dt_api_create_and_deliver(fx->api, s, on_res, x);
  fx->in_call = 0;
  return rc;
}

static void deliver_and_wait(fixture *fx, const cg__dt_card_spec *s, res *x) {
  memset(x, 0, sizeof(*x));
  assert_int_equal(deliver(fx, s, x), 0);
  assert_int_equal(x->calls, 0);
  run_until(fx, &x->calls, 1, 8000);
  assert_int_equal(x->calls, 1);
}

static int update(fixture *fx, const char *id, res *x) {
  fx->in_call = 1;
  int rc = cg__dt_api_update_card(fx->api, id, VARS, 1, on_res, x);
  fx->in_call = 0;
  return rc;
}

static void update_and_wait(fixture *fx, const char *id, res *x) {
  memset(x, 0, sizeof(*x));
  assert_int_equal(update(fx, id, x), 0);
  assert_int_equal(x->calls, 0);
  run_until(fx, &x->calls, 1, 8000);
  assert_int_equal(x->calls, 1);
}

static const char *jstr(const json_t *o, const char *path) {
  /* "a.b.c" */
  char buf[128];
  cg_strlcpy(buf, path, sizeof buf);
  const json_t *v = o;
  for (char *tok = strtok(buf, "."); tok && v; tok = strtok(NULL, "."))
    v = json_object_get(v, tok);
  return json_is_string(v) ? json_string_value(v) : NULL;
}

/* ------------------------------------------------- classification table */

static void test_classify_table(void **state) {
  (void)state;
  static const struct {
    int err, status;
    const char *body, *retry_after;
    cg__api_class cls;
    const char *code;
    uint64_t retry_ms;
    int out_err;
  } rows[] = {
      {0, 200, "{\"success\":true,\"result\":true}", NULL, CG__API_OK, "", 0,
       0},
      {0, 200, "{\"accessToken\":\"t\",\"expireIn\":7200}", NULL, CG__API_OK,
       "", 0, 0},
      {0, 200, "{\"success\":false,\"result\":false}", NULL,
       CG__API_PERMANENT, "", 0, 0},
      {0, 400,
       "{\"code\":\"InvalidAuthentication\",\"message\":\"bad token\","
       "\"requestid\":\"r1\"}",
       NULL, CG__API_TOKEN_INVALID, "InvalidAuthentication", 0, 0},
      {0, 401, "", NULL, CG__API_TOKEN_INVALID, "", 0, 0},
      {0, 400, "{\"code\":\"invalidClientIdOrSecret\",\"message\":\"x\"}", NULL,
       CG__API_PERMANENT, "invalidClientIdOrSecret", 0, 0},
      {0, 400, "{\"code\":\"param.cardNotExist\",\"message\":\"x\"}", NULL,
       CG__API_PERMANENT, "param.cardNotExist", 0, 0},
      {0, 403,
       "{\"code\":\"Forbidden.AccessDenied.QpsLimitForAppkeyAndApi\","
       "\"message\":\"q\"}",
       NULL, CG__API_RATE_LIMITED,
       "Forbidden.AccessDenied.QpsLimitForAppkeyAndApi", 1000, 0},
      {0, 403,
       "{\"code\":\"Forbidden.AccessDenied.QpsLimitForApi\",\"message\":"
       "\"q\"}",
       "4", CG__API_RATE_LIMITED, "Forbidden.AccessDenied.QpsLimitForApi",
       4000, 0},
      {0, 403,
       "{\"code\":\"Forbidden.AccessDenied.ApiCountLimitForOrg\",\"message\":"
       "\"quota\"}",
       NULL, CG__API_PERMANENT, "Forbidden.AccessDenied.ApiCountLimitForOrg",
       0, 0},
      {0, 429, "<html>slow</html>", "Wed, 21 Oct 2026 07:28:00 GMT",
       CG__API_RATE_LIMITED, "", 1000, 0},
      {0, 500, "{\"code\":\"system.busy\",\"message\":\"busy\"}", NULL,
       CG__API_RETRYABLE, "system.busy", 0, 0},
      {0, 400, "{\"code\":\"system.busy\",\"message\":\"busy\"}", NULL,
       CG__API_RETRYABLE, "system.busy", 0, 0},
      {0, 502, "<html>502</html>", NULL, CG__API_RETRYABLE, "", 0, 0},
      {0, 200, "<html>punish</html>", NULL, CG__API_RETRYABLE, "", 0,
       CG_EMALFORMED},
      {0, 200, "{\"success\":tr", NULL, CG__API_RETRYABLE, "", 0,
       CG_EMALFORMED},
      {0, 200, "[true]", NULL, CG__API_RETRYABLE, "", 0, CG_EMALFORMED},
      {0, 408, "", NULL, CG__API_RETRYABLE, "", 0, 0},
      {0, 404, "<html>no</html>", NULL, CG__API_PERMANENT, "", 0,
       CG_EMALFORMED},
      {CG_ETIMEDOUT, 0, NULL, NULL, CG__API_RETRYABLE, "", 0, CG_ETIMEDOUT},
      {UV_ECONNREFUSED, 0, NULL, NULL, CG__API_RETRYABLE, "", 0,
       UV_ECONNREFUSED},
      {CG_ETOOBIG, 200, NULL, NULL, CG__API_PERMANENT, "", 0, CG_ETOOBIG},
      {UV_ECANCELED, 0, NULL, NULL, CG__API_CANCELLED, "", 0, UV_ECANCELED},
  };
  for (size_t i = 0; i < CG_ARRAY_SIZE(rows); i++) {
    cg__dt_api_result r;
    json_t *root = NULL;
    const char *b = rows[i].body;
    cg__dt_api_classify(rows[i].err, rows[i].status, b, b ? strlen(b) : 0,
                        rows[i].retry_after, &r, &root);
    if (r.cls != rows[i].cls || strcmp(r.code, rows[i].code) != 0 ||
        r.retry_after_ms != rows[i].retry_ms || r.err != rows[i].out_err)
      fail_msg("row %zu: class %s code %s retry %llu err %d", i,
               cg__api_class_name(r.cls), r.code,
               (unsigned long long)r.retry_after_ms, r.err);
    assert_true(r.msg[0] != '\0');
    assert_int_equal(r.http_status, rows[i].status);
    json_decref(root);
  }
  cg__dt_api_result r;
  const char *b =
      "{\"code\":\"param.invalid\",\"message\":\"bad "
      "param\",\"requestid\":\"ABC-1\"}";
  cg__dt_api_classify(0, 400, b, strlen(b), NULL, &r, NULL);
  assert_string_equal(r.msg, "bad param");
  assert_string_equal(r.request_id, "ABC-1");
  assert_string_equal(cg__api_class_name(CG__API_RATE_LIMITED),
                      "rate_limited");
}

static void test_options_and_base_urls(void **state) {
  (void)state;
  uv_loop_t loop;
  assert_int_equal(uv_loop_init(&loop), 0);
  static const struct {
    const char *base;
    int ok;
  } rows[] = {
      {"https://api.dingtalk.com", 1},
      {"https://api.dingtalk.io/", 1},
      {"http://127.0.0.1:8080", 1},
      {"http://localhost:9", 1},
      {"http://[::1]:9000", 1},
      {"http://10.0.0.1:8080", 0},
      {"http://api.dingtalk.com", 0},
      {"http://127.0.0.1.evil.example", 0},
      {"https://api.dingtalk.com/v1.0", 0},
      {"https://u@api.dingtalk.com", 0},
      {"ftp://127.0.0.1", 0},
      {"api.dingtalk.com", 0},
  };
  for (size_t i = 0; i < CG_ARRAY_SIZE(rows); i++) {
    cg__dt_api_options o;
    cg__dt_api_options_init(&o);
    o.base_url = rows[i].base;
    o.app_key = "k";
    o.app_secret = "s";
    int err = 0;
    cg__dt_api *api = cg__dt_api_new(&loop, &o, &err);
    if (rows[i].ok != (api != NULL))
      fail_msg("%s: expected %s (err %s)", rows[i].base,
               rows[i].ok ? "accepted" : "rejected", cg_err_name(err));
    if (!api) assert_int_equal(err, CG_ECONFIG);
    cg__dt_api_close(api, NULL, NULL);
  }
  cg__dt_api_options o;
  cg__dt_api_options_init(&o);
  assert_string_equal(o.base_url, CG__DT_BASE);
  int err = 0;
  assert_null(cg__dt_api_new(&loop, &o, &err));
  assert_int_equal(err, CG_EINVAL);
  o.app_key = "k";
  assert_null(cg__dt_api_new(&loop, &o, &err));
  assert_int_equal(err, CG_EINVAL);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0);
}

/* ----------------------------------------------------------- the calls */

static void test_create_and_deliver_group(void **state) {
  fixture *fx = *state;
  cg__dt_card_spec s = group_spec();
  res x;
  deliver_and_wait(fx, &s, &x);
  if (x.r.cls != CG__API_OK) fail_msg("%s: %s", x.r.code, x.r.msg);
  assert_int_equal(x.r.http_status, 200);
  assert_int_equal(x.r.attempts, 1);
  assert_string_equal(x.r.out_track_id, "track-1");
  assert_non_null(strstr(x.result_json, "\"deliverResults\""));
  json_t *last = fake_last();
  assert_string_equal(jstr(last, "method"), "POST");
  assert_string_equal(jstr(last, "path"),
                      "/v1.0/card/instances/createAndDeliver");
  assert_string_equal(jstr(last, "token"), "dt-fake-1");
  assert_non_null(strstr(jstr(last, "content_type"), "application/json"));
  json_t *want = json_loads(
      "{\"cardTemplateId\":\"tpl-1.schema\",\"outTrackId\":\"track-1\","
      "\"cardData\":{\"cardParamMap\":{\"title\":\"hello \\\"card\\\"\","
      "\"count\":\"3\",\"done\":\"false\",\"items\":\"[1,2]\"}},"
      "\"openSpaceId\":\"dtv1.card//IM_GROUP.cidGROUP==\",\"callbackType\":"
      "\"STREAM\",\"userIdType\":1,\"imGroupOpenSpaceModel\":"
      "{\"supportForward\":true},\"imGroupOpenDeliverModel\":{\"robotCode\":"
      "\"dingkey_test\"}}",
      0, NULL);
  assert_non_null(want);
  if (!json_equal(json_object_get(last, "body"), want))
    fail_msg("body %s", jstr(last, "raw"));
  json_decref(want);
  json_decref(last);
  assert_int_equal(fake_stat("token_fetches"), 1);
}

static void test_create_and_deliver_robot(void **state) {
  fixture *fx = *state;
  cg__dt_card_spec s = group_spec();
  s.group = 0;
  s.space_id = "manager1234";
  s.robot_code = "dingrobot";
  s.card_param_map_json = NULL;
  res x;
  deliver_and_wait(fx, &s, &x);
  if (x.r.cls != CG__API_OK) fail_msg("%s: %s", x.r.code, x.r.msg);
  json_t *last = fake_last();
  json_t *want = json_loads(
      "{\"cardTemplateId\":\"tpl-1.schema\",\"outTrackId\":\"track-1\","
      "\"cardData\":{\"cardParamMap\":{}},\"openSpaceId\":"
      "\"dtv1.card//IM_ROBOT.manager1234\",\"callbackType\":\"STREAM\","
      "\"userIdType\":1,\"imRobotOpenSpaceModel\":{\"supportForward\":true},"
      "\"imRobotOpenDeliverModel\":{\"spaceType\":\"IM_ROBOT\",\"robotCode\":"
      "\"dingrobot\"}}",
      0, NULL);
  if (!json_equal(json_object_get(last, "body"), want))
    fail_msg("body %s", jstr(last, "raw"));
  json_decref(want);
  json_decref(last);

  /* a 200 with a failed space is permanent, with the space's errorMsg */
  s.space_id = "fail-user";
  deliver_and_wait(fx, &s, &x);
  assert_int_equal(x.r.cls, CG__API_PERMANENT);
  assert_int_equal(x.r.http_status, 200);
  assert_non_null(strstr(x.r.msg, "robot is not in the group"));
  assert_non_null(strstr(x.r.msg, "IM_ROBOT"));
  s.group = 1;
  s.space_id = "fail-group";
  deliver_and_wait(fx, &s, &x);
  assert_int_equal(x.r.cls, CG__API_PERMANENT);
  assert_non_null(strstr(x.r.msg, "robot is not in the group"));
  /* the platform refusing the body */
  fake_do(
      "{\"cmd\":\"fault\",\"mode\":\"code\",\"code\":"
      "\"param.templateNotExist\",\"message\":\"no template\"}");
  deliver_and_wait(fx, &s, &x);
  assert_int_equal(x.r.cls, CG__API_PERMANENT);
  assert_string_equal(x.r.code, "param.templateNotExist");
  assert_string_equal(x.r.msg, "no template");
  assert_string_equal(x.r.request_id, "req-1");
}

static void test_update_card(void **state) {
  fixture *fx = *state;
  res x;
  update_and_wait(fx, "track-1", &x);
  if (x.r.cls != CG__API_OK) fail_msg("%s: %s", x.r.code, x.r.msg);
  assert_string_equal(x.result_json, "true");
  json_t *last = fake_last();
  assert_string_equal(jstr(last, "method"), "PUT");
  assert_string_equal(jstr(last, "path"), "/v1.0/card/instances");
  json_t *want = json_loads(
      "{\"outTrackId\":\"track-1\",\"cardData\":{\"cardParamMap\":{"
      "\"title\":\"hello \\\"card\\\"\",\"count\":\"3\",\"done\":\"false\","
      "\"items\":\"[1,2]\"}},\"cardUpdateOptions\":{\"updateCardDataByKey\":"
      "true}}",
      0, NULL);
  if (!json_equal(json_object_get(last, "body"), want))
    fail_msg("body %s", jstr(last, "raw"));
  json_decref(want);
  json_decref(last);

  memset(&x, 0, sizeof x);
  assert_int_equal(cg__dt_api_update_card(fx->api, "track-2", "{\"a\":\"b\"}",
                                          0, on_res, &x),
                   0);
  run_until(fx, &x.calls, 1, 5000);
  last = fake_last();
  assert_true(json_is_false(json_object_get(
      json_object_get(json_object_get(last, "body"), "cardUpdateOptions"),
      "updateCardDataByKey")));
  json_decref(last);

  update_and_wait(fx, "missing", &x);
  assert_int_equal(x.r.cls, CG__API_PERMANENT);
  assert_string_equal(x.r.code, "param.cardNotExist");
  assert_int_equal(x.r.http_status, 400);

  /* a generic call */
  memset(&x, 0, sizeof x);
  assert_int_equal(
      cg__dt_api_call(fx->api, "GET", "/v1.0/echo?x=1", NULL, on_res, &x), 0);
  run_until(fx, &x.calls, 1, 5000);
  assert_int_equal(x.r.cls, CG__API_OK);
  assert_string_equal(x.result_json, "{\"q\":\"?x=1\"}");
  assert_int_equal(fake_stat("token_fetches"), 1);
}

/* 20 calls per second per API (dingtalk.md §4.1): the 21st to 25th wait
 * for the next one-second window (real time) instead of being refused. */
static int g_oks;
static void on_ok_count(const cg__dt_api_result *r, void *ud) {
  (void)ud;
  if (r->cls == CG__API_OK) g_oks++;
}

static void test_qps_limit(void **state) {
  fixture *fx = *state;
  g_oks = 0;
  for (int i = 0; i < 25; i++)
    assert_int_equal(cg__dt_api_update_card(fx->api, "track-1", "{\"a\":\"b\"}", 1, on_ok_count, NULL), 0);
  uint64_t t0 = mono_ms();
  run_until(fx, &g_oks, 20, 5000);
  run_for(fx, 100);
  if (mono_ms() - t0 < 900) assert_int_equal(g_oks, 20); /* the rest wait */
  cg__dt_api_stats st;
  cg__dt_api_get_stats(fx->api, &st);
  assert_true(st.throttled >= 5);
  run_until(fx, &g_oks, 25, 5000);
  assert_true(mono_ms() - t0 >= 900); /* not before the next window */
  /* Another API has its own window. */
  res x;
  memset(&x, 0, sizeof x);
  assert_int_equal(cg__dt_api_call(fx->api, "GET", "/v1.0/echo?x=1", NULL, on_res, &x), 0);
  run_until(fx, &x.calls, 1, 5000);
  assert_int_equal(x.r.cls, CG__API_OK);
}

/* Calls held by the rate limit end CANCELLED when the client closes. */
static int g_cancelled;
static void on_cancel_count(const cg__dt_api_result *r, void *ud) {
  (void)ud;
  if (r->cls == CG__API_CANCELLED) g_cancelled++;
  else if (r->cls == CG__API_OK) g_oks++;
}

static void test_qps_close(void **state) {
  fixture *fx = *state;
  g_oks = g_cancelled = 0;
  for (int i = 0; i < 23; i++)
    assert_int_equal(cg__dt_api_update_card(fx->api, "track-1", "{\"a\":\"b\"}", 1, on_cancel_count, NULL), 0);
  run_until(fx, &g_oks, 20, 5000);
  cg__dt_api_close(fx->api, on_closed, fx);
  fx->api = NULL;
  run_until(fx, &fx->closed, 1, 5000);
  assert_int_equal(g_cancelled, 3);
}

static void test_sync_errors(void **state) {
  fixture *fx = *state;
  res x;
  memset(&x, 0, sizeof x);
  cg__dt_card_spec s = group_spec();
  assert_int_equal(cg__dt_api_create_and_deliver(NULL, &s, on_res, &x),
                   CG_EINVAL);
  assert_int_equal(cg__dt_api_create_and_deliver(fx->api, NULL, on_res, &x),
                   CG_EINVAL);
  assert_int_equal(cg__dt_api_create_and_deliver(fx->api, &s, NULL, &x),
                   CG_EINVAL);
  s.out_track_id = "";
  assert_int_equal(cg__dt_api_create_and_deliver(fx->api, &s, on_res, &x),
                   CG_EINVAL);
  s = group_spec();
  s.space_id = "a;IM_GROUP.b";
  assert_int_equal(cg__dt_api_create_and_deliver(fx->api, &s, on_res, &x),
                   CG_EINVAL);
  s = group_spec();
  s.card_param_map_json = "[1]";
  assert_int_equal(cg__dt_api_create_and_deliver(fx->api, &s, on_res, &x),
                   CG_EMALFORMED);
  s.card_param_map_json = "{oops";
  assert_int_equal(cg__dt_api_create_and_deliver(fx->api, &s, on_res, &x),
                   CG_EMALFORMED);
  assert_int_equal(cg__dt_api_update_card(fx->api, "t", NULL, 1, on_res, &x),
                   CG_EINVAL);
  assert_int_equal(cg__dt_api_update_card(fx->api, NULL, "{}", 1, on_res, &x),
                   CG_EINVAL);
  assert_int_equal(
      cg__dt_api_call(fx->api, "PATCH", "/v1.0/x", NULL, on_res, &x),
      CG_EINVAL);
  assert_int_equal(
      cg__dt_api_call(fx->api, "GET", "/open-apis/x", NULL, on_res, &x),
      CG_EINVAL);
  run_for(fx, 50);
  assert_int_equal(x.calls, 0);
  assert_int_equal(fake_stat("token_fetches"), 0);
}

/* N concurrent calls on a cold cache: one token request. */
static void test_cold_token_single_flight(void **state) {
  fixture *fx = *state;
  fake_do("{\"cmd\":\"config\",\"token_delay_ms\":150}");
  enum { N = 50 };
  res *xs = calloc(N, sizeof(*xs));
  assert_non_null(xs);
  for (int i = 0; i < N; i++)
    assert_int_equal(update(fx, "track-1", &xs[i]), 0);
  cg__dt_api_stats st;
  cg__dt_api_get_stats(fx->api, &st);
  assert_int_equal(st.token_fetching, 1);
  int done = 0;
  uint64_t end = mono_ms() + 15000;
  while (done < N) {
    uv_run(&fx->loop, UV_RUN_ONCE);
    done = 0;
    for (int i = 0; i < N; i++) done += xs[i].calls;
    assert_true(mono_ms() < end);
  }
  for (int i = 0; i < N; i++) {
    assert_int_equal(xs[i].calls, 1);
    if (xs[i].r.cls != CG__API_OK)
      fail_msg("call %d: %s %s", i, cg__api_class_name(xs[i].r.cls),
               xs[i].r.msg);
  }
  assert_int_equal(fake_stat("token_fetches"), 1);
  assert_int_equal(fake_stat("api_calls"), N);
  cg__dt_api_get_stats(fx->api, &st);
  assert_int_equal(st.token_fetches, 1);
  assert_int_equal(st.calls, N);
  assert_int_equal(st.token_cached, 1);
  /* the token request carried exactly {appKey, appSecret} */
  json_t *s = fake_cmd("{\"cmd\":\"stats\"}");
  json_t *keys = json_array_get(json_object_get(s, "token_bodies"), 0);
  assert_int_equal(json_array_size(keys), 2);
  assert_string_equal(json_string_value(json_array_get(keys, 0)), "appKey");
  assert_string_equal(json_string_value(json_array_get(keys, 1)), "appSecret");
  json_decref(s);
  free(xs);
}

/* Cached until expireIn − 300 s, then fetched again before use. */
static void test_token_expiry(void **state) {
  fixture *fx = *state;
  res x;
  update_and_wait(fx, "t", &x);
  assert_int_equal(x.r.cls, CG__API_OK);
  fx->clock_ms += 6899 * 1000; /* just inside 7200 − 300 */
  update_and_wait(fx, "t", &x);
  assert_int_equal(fake_stat("token_fetches"), 1);
  fx->clock_ms += 1000;
  update_and_wait(fx, "t", &x);
  assert_int_equal(x.r.cls, CG__API_OK);
  assert_int_equal(fake_stat("token_fetches"), 2);
  json_t *last = fake_last();
  assert_string_equal(jstr(last, "token"), "dt-fake-2");
  json_decref(last);
  /* a lifetime below the margin is used for half its length */
  fake_do("{\"cmd\":\"config\",\"expire\":100}");
  cg__dt_api_evict_token(fx->api);
  update_and_wait(fx, "t", &x);
  assert_int_equal(fake_stat("token_fetches"), 3);
  fx->clock_ms += 49 * 1000;
  update_and_wait(fx, "t", &x);
  assert_int_equal(fake_stat("token_fetches"), 3);
  fx->clock_ms += 2 * 1000;
  update_and_wait(fx, "t", &x);
  assert_int_equal(fake_stat("token_fetches"), 4);
}

/* InvalidAuthentication (HTTP 400): evict, fetch once, retry once. */
static void test_invalid_auth_refetch_retry(void **state) {
  fixture *fx = *state;
  res x;
  update_and_wait(fx, "t", &x);
  fake_do("{\"cmd\":\"revoke\"}");
  update_and_wait(fx, "t", &x);
  assert_int_equal(x.r.cls, CG__API_OK);
  assert_int_equal(x.r.attempts, 2);
  assert_int_equal(fake_stat("token_fetches"), 2);
  assert_int_equal(fake_stat("api_calls"), 3);
  json_t *last = fake_last();
  assert_string_equal(jstr(last, "token"), "dt-fake-2");
  json_decref(last);
  cg__dt_api_stats st;
  cg__dt_api_get_stats(fx->api, &st);
  assert_int_equal(st.token_retries, 1);

  /* ten calls refused at once: still one refetch */
  fake_do("{\"cmd\":\"revoke\"}");
  enum { N = 10 };
  res xs[N];
  memset(xs, 0, sizeof(xs));
  for (int i = 0; i < N; i++) assert_int_equal(update(fx, "t", &xs[i]), 0);
  int done = 0;
  while (done < N) {
    uv_run(&fx->loop, UV_RUN_ONCE);
    done = 0;
    for (int i = 0; i < N; i++) done += xs[i].calls;
  }
  for (int i = 0; i < N; i++) {
    assert_int_equal(xs[i].r.cls, CG__API_OK);
    assert_int_equal(xs[i].r.attempts, 2);
  }
  assert_int_equal(fake_stat("token_fetches"), 3);

  /* refused twice: token_invalid after exactly two attempts */
  fake_do("{\"cmd\":\"fault\",\"mode\":\"invalid_auth\",\"count\":2}");
  update_and_wait(fx, "t", &x);
  assert_int_equal(x.r.cls, CG__API_TOKEN_INVALID);
  assert_string_equal(x.r.code, "InvalidAuthentication");
  assert_int_equal(x.r.http_status, 400);
  assert_int_equal(x.r.attempts, 2);
  assert_int_equal(fake_stat("token_fetches"), 4);
  /* a 401 is treated the same way */
  fake_do("{\"cmd\":\"fault\",\"mode\":\"unauth401\"}");
  update_and_wait(fx, "t", &x);
  assert_int_equal(x.r.cls, CG__API_OK);
  assert_int_equal(x.r.attempts, 2);
  assert_int_equal(fake_stat("token_fetches"), 5);
}

static void test_bad_credentials(void **state) {
  fixture *fx = *state;
  close_api(fx);
  fx->closed = 0;
  int err = 0;
  fx->api = make_api(fx, "wrong_secret", 5000, &err);
  assert_non_null(fx->api);
  enum { N = 3 };
  res xs[N];
  memset(xs, 0, sizeof xs);
  for (int i = 0; i < N; i++) assert_int_equal(update(fx, "t", &xs[i]), 0);
  for (int i = 0; i < N; i++) run_until(fx, &xs[i].calls, 1, 5000);
  for (int i = 0; i < N; i++) {
    assert_int_equal(xs[i].calls, 1);
    assert_int_equal(xs[i].r.cls, CG__API_PERMANENT);
    assert_int_equal(xs[i].r.token_error, 1);
    assert_int_equal(xs[i].r.http_status, 400);
    assert_string_equal(xs[i].r.code, "invalidClientIdOrSecret");
    assert_int_equal(xs[i].r.attempts, 0);
  }
  assert_int_equal(fake_stat("token_fetches"), 1);
  assert_int_equal(fake_stat("api_calls"), 0);
  assert_null(strstr(fx->log, "wrong_secret"));
  /* a token answer without a token: retryable */
  close_api(fx);
  fx->closed = 0;
  fx->api = make_api(fx, "secret_test", 5000, &err);
  fake_do("{\"cmd\":\"fault\",\"on\":\"token\",\"mode\":\"html200\"}");
  res x;
  update_and_wait(fx, "t", &x);
  assert_int_equal(x.r.cls, CG__API_RETRYABLE);
  assert_int_equal(x.r.token_error, 1);
  assert_int_equal(x.r.err, CG_EMALFORMED);
  update_and_wait(fx, "t", &x);
  assert_int_equal(x.r.cls, CG__API_OK);
}

static void test_rate_limited(void **state) {
  fixture *fx = *state;
  res x;
  fake_do("{\"cmd\":\"fault\",\"mode\":\"qps\"}");
  update_and_wait(fx, "t", &x);
  assert_int_equal(x.r.cls, CG__API_RATE_LIMITED);
  assert_int_equal(x.r.retry_after_ms, 1000);
  assert_int_equal(x.r.http_status, 403);
  assert_string_equal(x.r.code,
                      "Forbidden.AccessDenied.QpsLimitForAppkeyAndApi");
  fake_do("{\"cmd\":\"fault\",\"mode\":\"qps\",\"retry_after\":2}");
  update_and_wait(fx, "t", &x);
  assert_int_equal(x.r.cls, CG__API_RATE_LIMITED);
  assert_int_equal(x.r.retry_after_ms, 2000);
  fake_do("{\"cmd\":\"fault\",\"mode\":\"qps_api\"}");
  update_and_wait(fx, "t", &x);
  assert_int_equal(x.r.cls, CG__API_RATE_LIMITED);
  fake_do("{\"cmd\":\"fault\",\"mode\":\"rate429\"}");
  update_and_wait(fx, "t", &x);
  assert_int_equal(x.r.cls, CG__API_RATE_LIMITED);
  assert_int_equal(x.r.retry_after_ms, 3000);
  assert_int_equal(x.r.attempts, 1);
}

static void test_broken_answers(void **state) {
  fixture *fx = *state;
  res x;
  static const struct {
    const char *mode;
    int status;
    int err;
  } rows[] = {
      {"status500", 500, 0},
      {"busy", 500, 0},
      {"html502", 502, 0},
      {"html200", 200, CG_EMALFORMED},
      {"truncated", 200, CG_EMALFORMED},
  };
  for (size_t i = 0; i < CG_ARRAY_SIZE(rows); i++) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "{\"cmd\":\"fault\",\"mode\":\"%s\"}",
             rows[i].mode);
    fake_do(cmd);
    cg__dt_card_spec s = group_spec();
    deliver_and_wait(fx, &s, &x);
    if (x.r.cls != CG__API_RETRYABLE || x.r.http_status != rows[i].status ||
        x.r.err != rows[i].err)
      fail_msg("%s: %s http %d err %d", rows[i].mode,
               cg__api_class_name(x.r.cls), x.r.http_status, x.r.err);
  }
  fake_do("{\"cmd\":\"fault\",\"mode\":\"busy\"}");
  update_and_wait(fx, "t", &x);
  assert_string_equal(x.r.code, "system.busy");
  assert_int_equal(x.r.cls, CG__API_RETRYABLE);
  /* and then a normal answer again */
  update_and_wait(fx, "t", &x);
  assert_int_equal(x.r.cls, CG__API_OK);
}

static void test_timeout(void **state) {
  fixture *fx = *state;
  close_api(fx);
  fx->closed = 0;
  int err = 0;
  fx->api = make_api(fx, "secret_test", 300, &err);
  assert_non_null(fx->api);
  res x;
  update_and_wait(fx, "t", &x);
  assert_int_equal(x.r.cls, CG__API_OK);
  fake_do("{\"cmd\":\"fault\",\"mode\":\"slow\",\"ms\":3000}");
  uint64_t t0 = mono_ms();
  update_and_wait(fx, "t", &x);
  assert_true(mono_ms() - t0 < 2000);
  assert_int_equal(x.r.cls, CG__API_RETRYABLE);
  assert_int_equal(x.r.err, CG_ETIMEDOUT);
  assert_int_equal(x.r.http_status, 0);
  cg__dt_api_evict_token(fx->api);
  fake_do("{\"cmd\":\"fault\",\"on\":\"token\",\"mode\":\"slow\",\"ms\":3000}");
  update_and_wait(fx, "t", &x);
  assert_int_equal(x.r.cls, CG__API_RETRYABLE);
  assert_int_equal(x.r.err, CG_ETIMEDOUT);
  assert_int_equal(x.r.token_error, 1);

  /* nobody listening */
  close_api(fx);
  fx->closed = 0;
  fx->api = make_api_base(fx, "http://127.0.0.1:1", "secret_test", 2000, &err);
  assert_non_null(fx->api);
  update_and_wait(fx, "t", &x);
  assert_int_equal(x.r.cls, CG__API_RETRYABLE);
  assert_int_equal(x.r.err, UV_ECONNREFUSED);
  assert_int_equal(x.r.token_error, 1);
}

/* Close with calls waiting on the token and calls on the wire: every
 * callback once, cancelled, after close returns, before the close
 * callback. */
typedef struct cancel_ctx {
  fixture *fx;
  int closed_before;
  res xs[8];
} cancel_ctx;

static cancel_ctx *g_cc;

static void on_cancel_res(const cg__dt_api_result *r, void *ud) {
  on_res(r, ud);
  if (g_cc->fx->closed) g_cc->closed_before++;
}

static void test_close_with_work_in_flight(void **state) {
  fixture *fx = *state;
  cancel_ctx cc;
  memset(&cc, 0, sizeof(cc));
  cc.fx = fx;
  g_cc = &cc;
  fake_do("{\"cmd\":\"fault\",\"on\":\"token\",\"mode\":\"hang\"}");
  for (int i = 0; i < 4; i++)
    assert_int_equal(
        cg__dt_api_update_card(fx->api, "t", VARS, 1, on_cancel_res, &cc.xs[i]),
        0);
  run_for(fx, 150);
  for (int i = 0; i < 4; i++) assert_int_equal(cc.xs[i].calls, 0);
  close_api(fx);
  for (int i = 0; i < 4; i++) {
    assert_int_equal(cc.xs[i].calls, 1);
    assert_int_equal(cc.xs[i].r.cls, CG__API_CANCELLED);
    assert_int_equal(cc.xs[i].r.err, UV_ECANCELED);
  }
  assert_int_equal(cc.closed_before, 0);

  fx->closed = 0;
  int err = 0;
  fx->api = make_api(fx, "secret_test", 30000, &err);
  assert_non_null(fx->api);
  res warm;
  update_and_wait(fx, "t", &warm);
  assert_int_equal(warm.r.cls, CG__API_OK);
  fake_do("{\"cmd\":\"fault\",\"mode\":\"hang\",\"count\":4}");
  cg__dt_card_spec s = group_spec();
  for (int i = 4; i < 8; i++)
    assert_int_equal(
        cg__dt_api_create_and_deliver(fx->api, &s, on_cancel_res, &cc.xs[i]),
        0);
  run_for(fx, 150);
  for (int i = 4; i < 8; i++) assert_int_equal(cc.xs[i].calls, 0);
  close_api(fx);
  for (int i = 4; i < 8; i++) {
    assert_int_equal(cc.xs[i].calls, 1);
    assert_int_equal(cc.xs[i].r.cls, CG__API_CANCELLED);
  }
  assert_int_equal(cc.closed_before, 0);
}

typedef struct close_cb_ctx {
  fixture *fx;
  res first, other;
  int call_after_close;
} close_cb_ctx;

static void on_first_closes(const cg__dt_api_result *r, void *ud) {
  close_cb_ctx *c = ud;
  on_res(r, &c->first);
  cg__dt_api_close(c->fx->api, on_closed, c->fx);
  res dummy = {0};
  c->call_after_close =
      cg__dt_api_update_card(c->fx->api, "t", "{}", 1, on_res, &dummy);
}

static void test_close_inside_callback(void **state) {
  fixture *fx = *state;
  close_cb_ctx c;
  memset(&c, 0, sizeof(c));
  c.fx = fx;
  res warm;
  update_and_wait(fx, "t", &warm);
  fake_do("{\"cmd\":\"fault\",\"mode\":\"hang\"}");
  assert_int_equal(
      cg__dt_api_update_card(fx->api, "t", "{}", 1, on_res, &c.other), 0);
  run_for(fx, 100);
  assert_int_equal(
      cg__dt_api_update_card(fx->api, "t", "{}", 1, on_first_closes, &c), 0);
  run_until(fx, &fx->closed, 1, 5000);
  fx->api = NULL;
  assert_int_equal(c.first.calls, 1);
  assert_int_equal(c.first.r.cls, CG__API_OK);
  assert_int_equal(c.call_after_close, CG_EALREADY);
  assert_int_equal(c.other.calls, 1);
  assert_int_equal(c.other.r.cls, CG__API_CANCELLED);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_classify_table),
      cmocka_unit_test(test_options_and_base_urls),
      cmocka_unit_test_setup_teardown(test_create_and_deliver_group, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_create_and_deliver_robot, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_update_card, setup, teardown),
      cmocka_unit_test_setup_teardown(test_qps_limit, setup, teardown),
      cmocka_unit_test_setup_teardown(test_qps_close, setup, teardown),
      cmocka_unit_test_setup_teardown(test_sync_errors, setup, teardown),
      cmocka_unit_test_setup_teardown(test_cold_token_single_flight, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_token_expiry, setup, teardown),
      cmocka_unit_test_setup_teardown(test_invalid_auth_refetch_retry, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_bad_credentials, setup, teardown),
      cmocka_unit_test_setup_teardown(test_rate_limited, setup, teardown),
      cmocka_unit_test_setup_teardown(test_broken_answers, setup, teardown),
      cmocka_unit_test_setup_teardown(test_timeout, setup, teardown),
      cmocka_unit_test_setup_teardown(test_close_with_work_in_flight, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_close_inside_callback, setup,
                                      teardown),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
