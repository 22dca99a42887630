/* The Lark Open API client: the classification table (pure), then every
 * call against a fake Open API (tests/unit/fake_lark_openapi.mjs, run with
 * node) on 127.0.0.1 — token cache and single flight, expiry, token-invalid
 * retry, rate limits, broken answers, timeouts, close with work in flight. */
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

#include "cardgate/error.h"
#include "common/common.h"
#include "lib/openapi/lark_api.h"
#include "support/fake_process.h"

static const char CARD[] =
    "{\"config\":{\"update_multi\":true},\"elements\":[{\"tag\":\"div\","
    "\"text\":{\"tag\":\"plain_text\",\"content\":\"hello \\\"card\\\"\"}}]}";

/* ------------------------------------------------------ the fake server */

static cg_test_fake g_fake;

/* Sends one command; returns the parsed answer (caller json_decref()s). */
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

static int group_setup(void **state) {
  (void)state;
  cg_test_unset_proxies();
  signal(SIGPIPE, SIG_IGN);
  if (cg_test_fake_start(&g_fake, "fake_lark_openapi.mjs") != 0) {
    fprintf(stderr, "cannot start the fake Open API with node\n");
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
  cg__lark_result r;
  char data_json[1024];
} res;

typedef struct fixture {
  uv_loop_t loop;
  uv_timer_t ticker;
  cg__lark_api *api;
  uint64_t clock_ms; /* the api's clock */
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
  fixture *fx = ud;
  return fx->clock_ms;
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

static cg__lark_api *make_api(fixture *fx, const char *secret,
                              uint32_t timeout_ms, int *err) {
  char base[64];
  snprintf(base, sizeof(base), "http://127.0.0.1:%d", g_fake.port);
  cg__lark_api_options o;
  cg__lark_api_options_init(&o);
  o.base_url = base;
  o.app_id = "cli_test";
  o.app_secret = secret;
  o.timeout_ms = timeout_ms;
  o.max_response_bytes = 256 * 1024;
  o.log = on_log;
  o.log_ud = fx;
  o.log_level = CG_LOG_DEBUG;
  o.clock = test_clock;
  o.clock_ud = fx;
  return cg__lark_api_new(&fx->loop, &o, err);
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
  fixture *fx = ud;
  fx->closed++;
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

/* Runs the loop until the api has sent n token requests and none is in
 * flight (a background refresh has landed). */
static void wait_fetches(fixture *fx, uint64_t n) {
  uint64_t end = mono_ms() + 5000;
  for (;;) {
    cg__lark_api_stats st;
    cg__lark_api_get_stats(fx->api, &st);
    if (st.token_fetches == n && !st.token_fetching) break;
    if (mono_ms() > end)
      fail_msg("token fetches: %llu, wanted %llu",
               (unsigned long long)st.token_fetches, (unsigned long long)n);
    uv_run(&fx->loop, UV_RUN_ONCE);
  }
}

static void close_api(fixture *fx) {
  fx->in_call = 1;
  cg__lark_api_close(fx->api, on_closed, fx);
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
  /* Never a secret or a token in the log (DESIGN.md convention 8). */
  assert_null(strstr(fx->log, "secret_test"));
  assert_null(strstr(fx->log, "t-fake-"));
  assert_null(strstr(fx->log, "c-callback"));
  assert_null(strstr(fx->log, "hello"));
  free(fx);
  g_fx = NULL;
  return 0;
}

static void on_res(const cg__lark_result *r, void *ud) {
  res *x = ud;
  if (g_fx && g_fx->in_call) g_fx->sync_calls++;
  x->calls++;
  x->r = *r;
  x->r.data = NULL;
  x->data_json[0] = '\0';
  if (r->data) {
    char *s = json_dumps(r->data, JSON_COMPACT);
    if (s) cg_strlcpy(x->data_json, s, sizeof(x->data_json));
    free(s);
  }
}

static int send_card(fixture *fx, res *x) {
  fx->in_call = 1;
  int rc =
      cg__lark_send_card(fx->api, NULL, "chat_id", "oc_1", CARD, "uuid-1", on_res, x);
  fx->in_call = 0;
  return rc;
}

static void send_and_wait(fixture *fx, res *x) {
  memset(x, 0, sizeof(*x));
  assert_int_equal(send_card(fx, x), 0);
  assert_int_equal(x->calls, 0);
  run_until(fx, &x->calls, 1, 8000);
  assert_int_equal(x->calls, 1);
}

static json_t *fake_last(void) {
  json_t *s = fake_cmd("{\"cmd\":\"stats\"}");
  json_t *last = json_incref(json_object_get(s, "last"));
  json_decref(s);
  assert_non_null(last);
  return last;
}

/* ------------------------------------------------- classification table */

static void test_classify_table(void **state) {
  (void)state;
  static const struct {
    int err, status;
    const char *body, *reset;
    cg__api_class cls;
    int64_t code;
    int has_code;
    uint64_t retry_ms;
    int out_err;
  } rows[] = {
      {0, 200, "{\"code\":0,\"msg\":\"success\",\"data\":{}}", NULL,
       CG__API_OK, 0, 1, 0, 0},
      {0, 200, "{\"code\":230002,\"msg\":\"bot not in chat\"}", NULL,
       CG__API_PERMANENT, 230002, 1, 0, 0},
      {0, 400, "{\"code\":230001,\"msg\":\"bad\"}", NULL, CG__API_PERMANENT,
       230001, 1, 0, 0},
      {0, 400, "{\"code\":99991400,\"msg\":\"freq\"}", "12",
       CG__API_RATE_LIMITED, 99991400, 1, 12000, 0},
      {0, 429, "{\"code\":99991400,\"msg\":\"freq\"}", "3",
       CG__API_RATE_LIMITED, 99991400, 1, 3000, 0},
      {0, 429, "<html>too many</html>", NULL, CG__API_RATE_LIMITED, 0, 0, 1000,
       0},
      {0, 429, "{\"code\":99991400}", "soon", CG__API_RATE_LIMITED, 99991400,
       1, 1000, 0},
      {0, 400, "{\"code\":230020,\"msg\":\"rate\"}", NULL,
       CG__API_RATE_LIMITED, 230020, 1, 1000, 0},
      {0, 400, "{\"code\":99991663,\"msg\":\"Invalid access token\"}", NULL,
       CG__API_TOKEN_INVALID, 99991663, 1, 0, 0},
      {0, 200, "{\"code\":99991663,\"msg\":\"Invalid access token\"}", NULL,
       CG__API_TOKEN_INVALID, 99991663, 1, 0, 0},
      {0, 401, "{\"code\":99991664}", NULL, CG__API_TOKEN_INVALID, 99991664, 1,
       0, 0},
      {0, 400, "{\"code\":99991671}", NULL, CG__API_TOKEN_INVALID, 99991671, 1,
       0, 0},
      {0, 502, "<html>502 Bad Gateway</html>", NULL, CG__API_RETRYABLE, 0, 0,
       0, 0},
      {0, 500, "{\"code\":1500,\"msg\":\"internal\"}", NULL, CG__API_RETRYABLE,
       1500, 1, 0, 0},
      {0, 504, "", NULL, CG__API_RETRYABLE, 0, 0, 0, 0},
      {0, 200, "{\"code\":0,\"msg\":\"succ", NULL, CG__API_RETRYABLE, 0, 0, 0,
       CG_EMALFORMED},
      {0, 200, "not json", NULL, CG__API_RETRYABLE, 0, 0, 0, CG_EMALFORMED},
      {0, 200, "[1,2]", NULL, CG__API_RETRYABLE, 0, 0, 0, CG_EMALFORMED},
      {0, 200, "{\"code\":\"0\"}", NULL, CG__API_RETRYABLE, 0, 0, 0,
       CG_EMALFORMED},
      {0, 404, "<html>nope</html>", NULL, CG__API_PERMANENT, 0, 0, 0,
       CG_EMALFORMED},
      {0, 408, "", NULL, CG__API_RETRYABLE, 0, 0, 0, 0},
      {0, 302, "", NULL, CG__API_PERMANENT, 0, 0, 0, CG_EMALFORMED},
      {CG_ETIMEDOUT, 0, NULL, NULL, CG__API_RETRYABLE, 0, 0, 0, CG_ETIMEDOUT},
      {UV_ECONNREFUSED, 0, NULL, NULL, CG__API_RETRYABLE, 0, 0, 0,
       UV_ECONNREFUSED},
      {UV_ECONNRESET, 0, NULL, NULL, CG__API_RETRYABLE, 0, 0, 0,
       UV_ECONNRESET},
      {UV_EAI_NONAME, 0, NULL, NULL, CG__API_RETRYABLE, 0, 0, 0,
       UV_EAI_NONAME},
      {CG_ETOOBIG, 200, NULL, NULL, CG__API_PERMANENT, 0, 0, 0, CG_ETOOBIG},
      {CG_EINVAL, 0, NULL, NULL, CG__API_PERMANENT, 0, 0, 0, CG_EINVAL},
      {UV_ECANCELED, 0, NULL, NULL, CG__API_CANCELLED, 0, 0, 0, UV_ECANCELED},
  };
  for (size_t i = 0; i < CG_ARRAY_SIZE(rows); i++) {
    cg__lark_result r;
    json_t *root = NULL;
    const char *b = rows[i].body;
    cg__lark_classify(rows[i].err, rows[i].status, b, b ? strlen(b) : 0,
                      rows[i].reset, &r, &root);
    if (r.cls != rows[i].cls || r.code != rows[i].code ||
        r.has_code != rows[i].has_code ||
        r.retry_after_ms != rows[i].retry_ms || r.err != rows[i].out_err)
      fail_msg("row %zu: class %s code %lld has %d retry %llu err %d", i,
               cg__api_class_name(r.cls), (long long)r.code, r.has_code,
               (unsigned long long)r.retry_after_ms, r.err);
    assert_true(r.msg[0] != '\0');
    assert_int_equal(r.http_status, rows[i].status);
    json_decref(root);
  }
  /* msg is kept; a parsed root is handed over on request. */
  cg__lark_result r;
  json_t *root = NULL;
  const char *b =
      "{\"code\":230002,\"msg\":\"Bot/User can NOT be out of the chat.\"}";
  cg__lark_classify(0, 400, b, strlen(b), NULL, &r, &root);
  assert_string_equal(r.msg, "Bot/User can NOT be out of the chat.");
  assert_non_null(root);
  json_decref(root);
  cg__lark_classify(0, 400, b, strlen(b), NULL, &r, NULL);
  assert_int_equal(r.cls, CG__API_PERMANENT);
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
      {"https://open.feishu.cn", 1},
      {"https://open.larksuite.com/", 1},
      {"http://127.0.0.1:8080", 1},
      {"http://127.0.0.2", 1},
      {"http://localhost:9", 1},
      {"http://[::1]:9000", 1},
      {"http://10.0.0.1:8080", 0},
      {"http://open.feishu.cn", 0},
      {"http://127.evil.example", 0},
      {"http://127.0.0.1.evil.example", 0},
      {"http://localhost.evil.example", 0},
      {"http://[::2]:80", 0},
      {"https://open.feishu.cn/open-apis", 0},
      {"https://open.feishu.cn?x=1", 0},
      {"https://user@open.feishu.cn", 0},
      {"ftp://127.0.0.1", 0},
      {"https://", 0},
      {"open.feishu.cn", 0},
  };
  for (size_t i = 0; i < CG_ARRAY_SIZE(rows); i++) {
    cg__lark_api_options o;
    cg__lark_api_options_init(&o);
    o.base_url = rows[i].base;
    o.app_id = "cli_x";
    o.app_secret = "s";
    int err = 0;
    cg__lark_api *api = cg__lark_api_new(&loop, &o, &err);
    if (rows[i].ok != (api != NULL))
      fail_msg("%s: expected %s (err %s)", rows[i].base,
               rows[i].ok ? "accepted" : "rejected", cg_err_name(err));
    if (!api) assert_int_equal(err, CG_ECONFIG);
    cg__lark_api_close(api, NULL, NULL);
  }
  cg__lark_api_options o;
  cg__lark_api_options_init(&o);
  assert_string_equal(o.base_url, CG__LARK_BASE_FEISHU);
  int err = 0;
  assert_null(cg__lark_api_new(&loop, &o, &err)); /* no app id/secret */
  assert_int_equal(err, CG_EINVAL);
  o.app_id = "cli_x";
  assert_null(cg__lark_api_new(&loop, &o, &err));
  assert_int_equal(err, CG_EINVAL);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0);
}

/* ----------------------------------------------------------- the calls */

static void test_send_card(void **state) {
  fixture *fx = *state;
  res x;
  send_and_wait(fx, &x);
  assert_int_equal(x.r.cls, CG__API_OK);
  assert_int_equal(x.r.http_status, 200);
  assert_int_equal(x.r.attempts, 1);
  assert_int_equal(x.r.token_error, 0);
  assert_true(strncmp(x.r.message_id, "om_fake_", 8) == 0);
  assert_true(strncmp(x.r.logid, "logid-", 6) == 0);
  assert_non_null(strstr(x.data_json, "\"message_id\""));
  json_t *last = fake_last();
  assert_string_equal(json_string_value(json_object_get(last, "method")),
                      "POST");
  assert_string_equal(json_string_value(json_object_get(last, "path")),
                      "/open-apis/im/v1/messages");
  assert_string_equal(json_string_value(json_object_get(
                          json_object_get(last, "query"), "receive_id_type")),
                      "chat_id");
  assert_string_equal(json_string_value(json_object_get(last, "token")),
                      "t-fake-1");
  assert_non_null(
      strstr(json_string_value(json_object_get(last, "content_type")),
             "application/json"));
  json_t *body = json_object_get(last, "body");
  assert_string_equal(json_string_value(json_object_get(body, "receive_id")),
                      "oc_1");
  assert_string_equal(json_string_value(json_object_get(body, "msg_type")),
                      "interactive");
  assert_string_equal(json_string_value(json_object_get(body, "uuid")),
                      "uuid-1");
  /* content is the card JSON as a string, byte for byte (§4.4). */
  assert_string_equal(json_string_value(json_object_get(body, "content")),
                      CARD);
  json_decref(last);
  assert_int_equal(fake_stat("token_fetches"), 1);

  /* A second call reuses the cached token. */
  send_and_wait(fx, &x);
  assert_int_equal(x.r.cls, CG__API_OK);
  assert_int_equal(fake_stat("token_fetches"), 1);
  cg__lark_api_stats st;
  cg__lark_api_get_stats(fx->api, &st);
  assert_int_equal(st.token_fetches, 1);
  assert_int_equal(st.calls, 2);
}

static void test_reply_patch_delay_update(void **state) {
  fixture *fx = *state;
  res x = {0};
  fx->in_call = 1;
  assert_int_equal(
      cg__lark_reply_card(fx->api, NULL, "om_parent/1", CARD, 1, "u-2", on_res, &x),
      0);
  fx->in_call = 0;
  run_until(fx, &x.calls, 1, 5000);
  assert_int_equal(x.r.cls, CG__API_OK);
  assert_true(strncmp(x.r.message_id, "om_reply_", 9) == 0);
  json_t *last = fake_last();
  /* The id is escaped into one path segment. */
  assert_string_equal(json_string_value(json_object_get(last, "path")),
                      "/open-apis/im/v1/messages/om_parent%2F1/reply");
  json_t *body = json_object_get(last, "body");
  assert_string_equal(json_string_value(json_object_get(body, "content")),
                      CARD);
  assert_true(json_is_true(json_object_get(body, "reply_in_thread")));
  assert_string_equal(json_string_value(json_object_get(body, "uuid")), "u-2");
  json_decref(last);

  memset(&x, 0, sizeof(x));
  fx->in_call = 1;
  assert_int_equal(cg__lark_patch_card(fx->api, NULL, "om_1", CARD, on_res, &x), 0);
  fx->in_call = 0;
  run_until(fx, &x.calls, 1, 5000);
  assert_int_equal(x.r.cls, CG__API_OK);
  last = fake_last();
  assert_string_equal(json_string_value(json_object_get(last, "method")),
                      "PATCH");
  assert_string_equal(json_string_value(json_object_get(last, "path")),
                      "/open-apis/im/v1/messages/om_1");
  body = json_object_get(last, "body");
  assert_int_equal(json_object_size(body), 1);
  assert_string_equal(json_string_value(json_object_get(body, "content")),
                      CARD);
  json_decref(last);

  memset(&x, 0, sizeof(x));
  fx->in_call = 1;
  assert_int_equal(
      cg__lark_delay_update(fx->api, NULL, "c-callback-token", CARD, on_res, &x), 0);
  fx->in_call = 0;
  run_until(fx, &x.calls, 1, 5000);
  assert_int_equal(x.r.cls, CG__API_OK);
  last = fake_last();
  assert_string_equal(json_string_value(json_object_get(last, "path")),
                      "/open-apis/interactive/v1/card/update");
  body = json_object_get(last, "body");
  assert_string_equal(json_string_value(json_object_get(body, "token")),
                      "c-callback-token");
  /* card is an object here, not a string (§4.5). */
  json_t *card = json_object_get(body, "card");
  assert_true(json_is_object(card));
  assert_true(json_is_true(
      json_object_get(json_object_get(card, "config"), "update_multi")));
  json_decref(last);

  /* The generic call. */
  memset(&x, 0, sizeof(x));
  fx->in_call = 1;
  assert_int_equal(cg__lark_call(fx->api, NULL, "GET", "/open-apis/nothing/here",
                                 NULL, on_res, &x),
                   0);
  fx->in_call = 0;
  run_until(fx, &x.calls, 1, 5000);
  assert_int_equal(x.r.cls, CG__API_PERMANENT);
  assert_int_equal(x.r.http_status, 404);
  assert_int_equal(fake_stat("token_fetches"), 1);
}

static void test_sync_errors(void **state) {
  fixture *fx = *state;
  res x = {0};
  cg__lark_api *a = fx->api;
  assert_int_equal(cg__lark_send_card(a, NULL, "phone", "x", CARD, NULL, on_res, &x),
                   CG_EINVAL);
  assert_int_equal(cg__lark_send_card(a, NULL, "open_id", "", CARD, NULL, on_res, &x),
                   CG_EINVAL);
  assert_int_equal(
      cg__lark_send_card(a, NULL, "open_id", "ou_1", "{not json", NULL, on_res, &x),
      CG_EMALFORMED);
  assert_int_equal(
      cg__lark_send_card(a, NULL, "open_id", "ou_1", "[1]", NULL, on_res, &x),
      CG_EMALFORMED);
  assert_int_equal(
      cg__lark_send_card(a, NULL, "open_id", "ou_1", CARD, NULL, NULL, &x),
      CG_EINVAL);
  assert_int_equal(
      cg__lark_send_card(NULL, NULL, "open_id", "ou_1", CARD, NULL, on_res, &x),
      CG_EINVAL);
  assert_int_equal(cg__lark_patch_card(a, NULL, NULL, CARD, on_res, &x), CG_EINVAL);
  assert_int_equal(cg__lark_reply_card(a, NULL, "om_1", NULL, 0, NULL, on_res, &x),
                   CG_EINVAL);
  assert_int_equal(cg__lark_delay_update(a, NULL, "", CARD, on_res, &x), CG_EINVAL);
  assert_int_equal(cg__lark_delay_update(a, NULL, "c-1", "\"str\"", on_res, &x),
                   CG_EMALFORMED);
  assert_int_equal(cg__lark_call(a, NULL, "TRACE", "/open-apis/x", NULL, on_res, &x),
                   CG_EINVAL);
  assert_int_equal(cg__lark_call(a, NULL, "GET", "/other", NULL, on_res, &x),
                   CG_EINVAL);
  assert_int_equal(cg__lark_call(a, NULL, "GET", "/open-apis/x y", NULL, on_res, &x),
                   CG_EINVAL);
  char *big = malloc(2u * 1024u * 1024u);
  assert_non_null(big);
  memset(big, ' ', 2u * 1024u * 1024u - 3);
  big[0] = '{';
  big[2u * 1024u * 1024u - 3] = '}';
  big[2u * 1024u * 1024u - 2] = '\0';
  assert_int_equal(cg__lark_patch_card(a, NULL, "om_1", big, on_res, &x), CG_ETOOBIG);
  free(big);
  run_for(fx, 50);
  assert_int_equal(x.calls, 0);
  assert_int_equal(fake_stat("token_fetches"), 0);
  assert_int_equal(fake_stat("api_calls"), 0);
}

/* A hundred calls on a cold token: one token request serves them all. */
static void test_cold_token_single_flight(void **state) {
  fixture *fx = *state;
  fake_do("{\"cmd\":\"config\",\"token_delay_ms\":150}");
  enum { N = 100 };
  res *xs = calloc(N, sizeof(*xs));
  assert_non_null(xs);
  for (int i = 0; i < N; i++) assert_int_equal(send_card(fx, &xs[i]), 0);
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
  cg__lark_api_stats st;
  cg__lark_api_get_stats(fx->api, &st);
  assert_int_equal(st.token_fetches, 1);
  free(xs);
}

/* TTL = expire − 180 s; a background refresh once Lark would hand out a
 * new token (less than 30 min left); a fetch before use after the TTL. */
static void test_token_expiry_and_refresh_ahead(void **state) {
  fixture *fx = *state;
  res x;
  send_and_wait(fx, &x); /* token 1 at t0, expire 7200 */
  assert_int_equal(x.r.cls, CG__API_OK);
  assert_int_equal(fake_stat("token_fetches"), 1);

  fx->clock_ms += 5000 * 1000; /* t0+5000 s: fresh */
  send_and_wait(fx, &x);
  assert_int_equal(fake_stat("token_fetches"), 1);

  fx->clock_ms += 500 * 1000; /* t0+5500 s: < 30 min left: refresh ahead */
  send_and_wait(fx, &x);
  assert_int_equal(x.r.cls, CG__API_OK);
  json_t *last = fake_last();
  /* The call did not wait: it went out with the old token. */
  assert_string_equal(json_string_value(json_object_get(last, "token")),
                      "t-fake-1");
  json_decref(last);
  wait_fetches(fx, 2);
  assert_int_equal(fake_stat("token_fetches"), 2);
  send_and_wait(fx, &x);
  last = fake_last();
  assert_string_equal(json_string_value(json_object_get(last, "token")),
                      "t-fake-2");
  json_decref(last);
  assert_int_equal(fake_stat("token_fetches"), 2);

  /* Past expire − 180 s of token 2: the call waits for a new token. */
  fx->clock_ms += 7020 * 1000;
  send_and_wait(fx, &x);
  assert_int_equal(x.r.cls, CG__API_OK);
  assert_int_equal(fake_stat("token_fetches"), 3);
  last = fake_last();
  assert_string_equal(json_string_value(json_object_get(last, "token")),
                      "t-fake-3");
  json_decref(last);
  fx->clock_ms += 7019 * 1000 - 1; /* just inside the TTL (and past renew) */
  send_and_wait(fx, &x);
  last = fake_last();
  assert_string_equal(json_string_value(json_object_get(last, "token")),
                      "t-fake-3");
  json_decref(last);
  wait_fetches(fx, 4);
  assert_int_equal(fake_stat("token_fetches"), 4);

  /* A short lifetime (below the margin) is used for half its length. */
  fake_do("{\"cmd\":\"config\",\"expire\":100}");
  cg__lark_api_evict_token(fx->api);
  send_and_wait(fx, &x); /* fetch 5, ttl 50 s */
  assert_int_equal(fake_stat("token_fetches"), 5);
  fx->clock_ms += 49 * 1000;
  send_and_wait(fx, &x);
  wait_fetches(fx, 6);
  /* renew point is ttl/2 = 25 s: one background fetch */
  assert_int_equal(fake_stat("token_fetches"), 6);
  fx->clock_ms += 51 * 1000;
  send_and_wait(fx, &x);
  assert_int_equal(fake_stat("token_fetches"), 7);
}

/* 99991663: evict, fetch once, retry once — and the retry succeeds. */
static void test_token_invalid_evict_refetch_retry(void **state) {
  fixture *fx = *state;
  res x;
  send_and_wait(fx, &x);
  assert_int_equal(fake_stat("token_fetches"), 1);
  fake_do("{\"cmd\":\"revoke\"}"); /* the platform forgot token 1 */
  send_and_wait(fx, &x);
  assert_int_equal(x.r.cls, CG__API_OK);
  assert_int_equal(x.r.attempts, 2);
  assert_int_equal(fake_stat("token_fetches"), 2);
  assert_int_equal(fake_stat("api_calls"), 3);
  json_t *last = fake_last();
  assert_string_equal(json_string_value(json_object_get(last, "token")),
                      "t-fake-2");
  json_decref(last);
  cg__lark_api_stats st;
  cg__lark_api_get_stats(fx->api, &st);
  assert_int_equal(st.token_retries, 1);

  /* Ten calls in flight all refused at once: still one refetch. */
  fake_do("{\"cmd\":\"revoke\"}");
  fake_do("{\"cmd\":\"config\",\"invalid_status\":200}"); /* 200 + code too */
  enum { N = 10 };
  res xs[N];
  memset(xs, 0, sizeof(xs));
  for (int i = 0; i < N; i++) assert_int_equal(send_card(fx, &xs[i]), 0);
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
}

/* Refused again after the retry: token_invalid, exactly two attempts. */
static void test_token_invalid_twice(void **state) {
  fixture *fx = *state;
  fake_do("{\"cmd\":\"fault\",\"mode\":\"token_invalid\",\"count\":2}");
  res x;
  send_and_wait(fx, &x);
  assert_int_equal(x.r.cls, CG__API_TOKEN_INVALID);
  assert_int_equal(x.r.code, 99991663);
  assert_int_equal(x.r.http_status, 400);
  assert_int_equal(x.r.attempts, 2);
  assert_int_equal(fake_stat("token_fetches"), 2);
  assert_int_equal(fake_stat("api_calls"), 2);
  /* The next call is fine with the refetched token. */
  send_and_wait(fx, &x);
  assert_int_equal(x.r.cls, CG__API_OK);
  assert_int_equal(fake_stat("token_fetches"), 2);
}

/* Token endpoint failure: HTTP 200 with code 10014 (§9.3). */
static void test_token_endpoint_failure(void **state) {
  fixture *fx = *state;
  close_api(fx);
  fx->closed = 0;
  int err = 0;
  fx->api = make_api(fx, "wrong_secret", 5000, &err);
  assert_non_null(fx->api);
  enum { N = 5 };
  res xs[N];
  memset(xs, 0, sizeof(xs));
  for (int i = 0; i < N; i++) assert_int_equal(send_card(fx, &xs[i]), 0);
  int done = 0;
  while (done < N) {
    uv_run(&fx->loop, UV_RUN_ONCE);
    done = 0;
    for (int i = 0; i < N; i++) done += xs[i].calls;
  }
  for (int i = 0; i < N; i++) {
    assert_int_equal(xs[i].calls, 1);
    assert_int_equal(xs[i].r.cls, CG__API_PERMANENT);
    assert_int_equal(xs[i].r.token_error, 1);
    assert_int_equal(xs[i].r.code, 10014);
    assert_int_equal(xs[i].r.http_status, 200);
    assert_int_equal(xs[i].r.attempts, 0);
    assert_string_equal(xs[i].r.msg, "app secret invalid");
  }
  assert_int_equal(fake_stat("token_fetches"), 1);
  assert_int_equal(fake_stat("api_calls"), 0);
  /* Token endpoint broken in other ways. */
  fake_do("{\"cmd\":\"config\",\"app_secret\":\"wrong_secret\"}");
  fake_do("{\"cmd\":\"fault\",\"on\":\"token\",\"mode\":\"html502\"}");
  res x;
  send_and_wait(fx, &x);
  assert_int_equal(x.r.cls, CG__API_RETRYABLE);
  assert_int_equal(x.r.token_error, 1);
  assert_int_equal(x.r.http_status, 502);
  fake_do(
      "{\"cmd\":\"fault\",\"on\":\"token\",\"mode\":\"rate429\",\"reset\":9}");
  send_and_wait(fx, &x);
  assert_int_equal(x.r.cls, CG__API_RATE_LIMITED);
  assert_int_equal(x.r.retry_after_ms, 9000);
  fake_do(
      "{\"cmd\":\"fault\",\"on\":\"token\",\"mode\":\"code\",\"status\":200,"
      "\"code\":0}");
  send_and_wait(fx, &x); /* code 0 but no token */
  assert_int_equal(x.r.cls, CG__API_RETRYABLE);
  assert_int_equal(x.r.err, CG_EMALFORMED);
  send_and_wait(fx, &x);
  assert_int_equal(x.r.cls, CG__API_OK);
}

static void test_rate_limited(void **state) {
  fixture *fx = *state;
  res x;
  fake_do("{\"cmd\":\"fault\",\"mode\":\"rate429\",\"reset\":7}");
  send_and_wait(fx, &x);
  assert_int_equal(x.r.cls, CG__API_RATE_LIMITED);
  assert_int_equal(x.r.code, 99991400);
  assert_int_equal(x.r.http_status, 429);
  assert_int_equal(x.r.retry_after_ms, 7000);
  assert_true(strncmp(x.r.logid, "logid-", 6) == 0);
  assert_int_equal(x.r.attempts, 1);
  /* The same code on HTTP 400 (§9.2). */
  fake_do("{\"cmd\":\"fault\",\"mode\":\"rate400\",\"reset\":2}");
  send_and_wait(fx, &x);
  assert_int_equal(x.r.cls, CG__API_RATE_LIMITED);
  assert_int_equal(x.r.http_status, 400);
  assert_int_equal(x.r.retry_after_ms, 2000);
  /* No reset header: the default wait. */
  fake_do("{\"cmd\":\"fault\",\"mode\":\"rate429\",\"reset\":null}");
  send_and_wait(fx, &x);
  assert_int_equal(x.r.cls, CG__API_RATE_LIMITED);
  assert_int_equal(x.r.retry_after_ms, CG__LARK_DEFAULT_RETRY_AFTER_MS);
  assert_int_equal(fake_stat("token_fetches"), 1);
}

static void test_broken_answers(void **state) {
  fixture *fx = *state;
  res x;
  fake_do("{\"cmd\":\"fault\",\"mode\":\"html502\"}");
  send_and_wait(fx, &x);
  assert_int_equal(x.r.cls, CG__API_RETRYABLE);
  assert_int_equal(x.r.http_status, 502);
  assert_int_equal(x.r.has_code, 0);

  fake_do("{\"cmd\":\"fault\",\"mode\":\"truncated\"}");
  send_and_wait(fx, &x);
  assert_int_equal(x.r.cls, CG__API_RETRYABLE);
  assert_int_equal(x.r.err, CG_EMALFORMED);
  assert_int_equal(x.r.http_status, 200);

  fake_do("{\"cmd\":\"fault\",\"mode\":\"huge\",\"bytes\":4194304}");
  send_and_wait(fx, &x);
  assert_int_equal(x.r.cls, CG__API_PERMANENT);
  assert_int_equal(x.r.err, CG_ETOOBIG);

  fake_do(
      "{\"cmd\":\"fault\",\"mode\":\"huge\",\"bytes\":4194304,\"chunked\":1}");
  send_and_wait(fx, &x);
  assert_int_equal(x.r.cls, CG__API_PERMANENT);
  assert_int_equal(x.r.err, CG_ETOOBIG);

  fake_do("{\"cmd\":\"fault\",\"mode\":\"cut\"}");
  send_and_wait(fx, &x);
  assert_int_equal(x.r.cls, CG__API_RETRYABLE);
  assert_int_equal(x.r.err, UV_ECONNRESET);

  fake_do("{\"cmd\":\"fault\",\"mode\":\"garbage\",\"status\":400}");
  send_and_wait(fx, &x);
  assert_int_equal(x.r.cls, CG__API_PERMANENT);
  assert_int_equal(x.r.err, CG_EMALFORMED);

  fake_do(
      "{\"cmd\":\"fault\",\"mode\":\"code\",\"status\":400,\"code\":230002,"
      "\"msg\":\"Bot/User can NOT be out of the chat.\"}");
  send_and_wait(fx, &x);
  assert_int_equal(x.r.cls, CG__API_PERMANENT);
  assert_int_equal(x.r.code, 230002);
  assert_string_equal(x.r.msg, "Bot/User can NOT be out of the chat.");

  /* The fake's own validation: a PATCH of a non-card is refused by Lark
   * with 230001 — here we check a real 4xx envelope end to end. */
  fake_do(
      "{\"cmd\":\"fault\",\"mode\":\"code\",\"status\":500,\"code\":1500,"
      "\"msg\":\"internal\"}");
  send_and_wait(fx, &x);
  assert_int_equal(x.r.cls, CG__API_RETRYABLE);
  assert_int_equal(x.r.code, 1500);

  /* Still healthy afterwards, on the same token. */
  send_and_wait(fx, &x);
  assert_int_equal(x.r.cls, CG__API_OK);
  assert_int_equal(fake_stat("token_fetches"), 1);
}

static void test_timeout_is_retryable(void **state) {
  fixture *fx = *state;
  close_api(fx);
  fx->closed = 0;
  int err = 0;
  fx->api = make_api(fx, "secret_test", 300, &err);
  assert_non_null(fx->api);
  res x;
  send_and_wait(fx, &x); /* warm the token */
  assert_int_equal(x.r.cls, CG__API_OK);
  fake_do("{\"cmd\":\"fault\",\"mode\":\"slow\",\"ms\":3000}");
  uint64_t t0 = mono_ms();
  send_and_wait(fx, &x);
  assert_true(mono_ms() - t0 < 2000);
  assert_int_equal(x.r.cls, CG__API_RETRYABLE);
  assert_int_equal(x.r.err, CG_ETIMEDOUT);
  assert_int_equal(x.r.http_status, 0);
  /* A slow token endpoint: the waiting calls time out with token_error. */
  cg__lark_api_evict_token(fx->api);
  fake_do("{\"cmd\":\"fault\",\"on\":\"token\",\"mode\":\"slow\",\"ms\":3000}");
  send_and_wait(fx, &x);
  assert_int_equal(x.r.cls, CG__API_RETRYABLE);
  assert_int_equal(x.r.err, CG_ETIMEDOUT);
  assert_int_equal(x.r.token_error, 1);
}

static void test_connection_refused(void **state) {
  fixture *fx = *state;
  close_api(fx);
  fx->closed = 0;
  cg__lark_api_options o;
  cg__lark_api_options_init(&o);
  o.base_url = "http://127.0.0.1:1";
  o.app_id = "cli_test";
  o.app_secret = "secret_test";
  o.log = on_log;
  o.log_ud = fx;
  o.log_level = CG_LOG_DEBUG;
  int err = 0;
  fx->api = cg__lark_api_new(&fx->loop, &o, &err);
  assert_non_null(fx->api);
  res x;
  send_and_wait(fx, &x);
  assert_int_equal(x.r.cls, CG__API_RETRYABLE);
  assert_int_equal(x.r.err, UV_ECONNREFUSED);
  assert_int_equal(x.r.token_error, 1);
}

/* Close with calls waiting on the token and calls in flight: every
 * callback once, cancelled, after close returns, before the close
 * callback; nothing leaks (ASan) and the loop closes clean (teardown). */
typedef struct cancel_ctx {
  fixture *fx;
  int closed_before;
  res xs[8];
} cancel_ctx;

static cancel_ctx *g_cc;

static void on_cancel_res(const cg__lark_result *r, void *ud) {
  on_res(r, ud);
  if (g_cc->fx->closed) g_cc->closed_before++;
}

static void test_close_with_work_in_flight(void **state) {
  fixture *fx = *state;
  cancel_ctx cc;
  memset(&cc, 0, sizeof(cc));
  cc.fx = fx;
  g_cc = &cc;
  /* Token fetch hangs: four calls wait on it. */
  fake_do("{\"cmd\":\"fault\",\"on\":\"token\",\"mode\":\"hang\"}");
  for (int i = 0; i < 4; i++)
    assert_int_equal(cg__lark_send_card(fx->api, NULL, "open_id", "ou_1", CARD, NULL,
                                        on_cancel_res, &cc.xs[i]),
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

  /* Calls in flight on the wire. */
  fx->closed = 0;
  int err = 0;
  fx->api = make_api(fx, "secret_test", 30000, &err);
  assert_non_null(fx->api);
  res warm;
  send_and_wait(fx, &warm);
  assert_int_equal(warm.r.cls, CG__API_OK);
  fake_do("{\"cmd\":\"fault\",\"mode\":\"hang\",\"count\":4}");
  for (int i = 4; i < 8; i++)
    assert_int_equal(
        cg__lark_patch_card(fx->api, NULL, "om_1", CARD, on_cancel_res, &cc.xs[i]),
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

/* Closing from inside a result callback while others wait. */
typedef struct close_cb_ctx {
  fixture *fx;
  res first, other;
  int call_after_close;
} close_cb_ctx;

static void on_first_closes(const cg__lark_result *r, void *ud) {
  close_cb_ctx *c = ud;
  on_res(r, &c->first);
  cg__lark_api_close(c->fx->api, on_closed, c->fx);
  /* Closing: new work is refused, synchronously. */
  res dummy = {0};
  c->call_after_close = cg__lark_send_card(c->fx->api, NULL, "open_id", "ou_1", CARD,
                                           NULL, on_res, &dummy);
}

static void test_close_inside_callback(void **state) {
  fixture *fx = *state;
  close_cb_ctx c;
  memset(&c, 0, sizeof(c));
  c.fx = fx;
  res warm;
  send_and_wait(fx, &warm);
  fake_do("{\"cmd\":\"fault\",\"mode\":\"hang\"}");
  assert_int_equal(cg__lark_send_card(fx->api, NULL, "open_id", "ou_1", CARD, NULL,
                                      on_res, &c.other),
                   0);
  run_for(fx, 100);
  assert_int_equal(cg__lark_send_card(fx->api, NULL, "open_id", "ou_1", CARD, NULL,
                                      on_first_closes, &c),
                   0);
  run_until(fx, &fx->closed, 1, 5000);
  fx->api = NULL;
  assert_int_equal(c.first.calls, 1);
  assert_int_equal(c.first.r.cls, CG__API_OK);
  assert_int_equal(c.call_after_close, CG_EALREADY);
  assert_int_equal(c.other.calls, 1);
  assert_int_equal(c.other.r.cls, CG__API_CANCELLED);
}

/* The first of several calls waiting on a failed token fetch closes the
 * client from its callback: the others end cancelled, each exactly once. */
typedef struct waiter_close {
  fixture *fx;
  res first;
  res others[3];
} waiter_close;

static void on_waiter_closes(const cg__lark_result *r, void *ud) {
  waiter_close *w = ud;
  on_res(r, &w->first);
  cg__lark_api_close(w->fx->api, on_closed, w->fx);
}

static void test_close_inside_token_waiter(void **state) {
  fixture *fx = *state;
  waiter_close w;
  memset(&w, 0, sizeof(w));
  w.fx = fx;
  fake_do(
      "{\"cmd\":\"fault\",\"on\":\"token\",\"mode\":\"code\","
      "\"status\":200,\"code\":10014,\"msg\":\"app secret invalid\"}");
  assert_int_equal(cg__lark_send_card(fx->api, NULL, "open_id", "ou_1", CARD, NULL,
                                      on_waiter_closes, &w),
                   0);
  for (int i = 0; i < 3; i++)
    assert_int_equal(cg__lark_send_card(fx->api, NULL, "open_id", "ou_1", CARD, NULL,
                                        on_res, &w.others[i]),
                     0);
  run_until(fx, &fx->closed, 1, 5000);
  fx->api = NULL;
  assert_int_equal(w.first.calls, 1);
  assert_int_equal(w.first.r.cls, CG__API_PERMANENT);
  assert_int_equal(w.first.r.code, 10014);
  for (int i = 0; i < 3; i++) {
    assert_int_equal(w.others[i].calls, 1);
    assert_int_equal(w.others[i].r.cls, CG__API_CANCELLED);
  }
  assert_int_equal(fake_stat("token_fetches"), 1);
  assert_int_equal(fake_stat("api_calls"), 0);
}

/* ------------------------------------------- store (marketplace) apps */

/* Replaces the fixture's self-built client with a store app's. */
static void use_store_app(fixture *fx) {
  close_api(fx);
  fx->closed = 0;
  char base[64];
  snprintf(base, sizeof(base), "http://127.0.0.1:%d", g_fake.port);
  cg__lark_api_options o;
  cg__lark_api_options_init(&o);
  o.base_url = base;
  o.app_id = "cli_test";
  o.app_secret = "secret_test";
  o.app_type = CG__LARK_APP_STORE;
  o.timeout_ms = 5000;
  o.log = on_log;
  o.log_ud = fx;
  o.log_level = CG_LOG_DEBUG;
  o.clock = test_clock;
  o.clock_ud = fx;
  int err = 1;
  fx->api = cg__lark_api_new(&fx->loop, &o, &err);
  assert_non_null(fx->api);
  assert_int_equal(err, 0);
  assert_int_equal(cg__lark_api_app_type(fx->api), CG__LARK_APP_STORE);
}

static json_t *fake_stats(void) { return fake_cmd("{\"cmd\":\"stats\"}"); }

/* No ticket: the call asks Lark to resend one and ends retryable, never
 * reaching the API; a store app's call needs a tenant key. */
static void test_store_no_ticket_resend(void **state) {
  fixture *fx = *state;
  use_store_app(fx);
  res x;
  memset(&x, 0, sizeof(x));
  assert_int_equal(cg__lark_send_card(fx->api, NULL, "chat_id", "oc_1", CARD,
                                      NULL, on_res, &x),
                   CG_EINVAL);
  assert_int_equal(cg__lark_api_set_app_ticket(fx->api, ""), CG_EINVAL);
  assert_false(cg__lark_api_has_app_ticket(fx->api));
  res xs[5];
  memset(xs, 0, sizeof(xs));
  int done = 0;
  fx->in_call = 1;
  for (int i = 0; i < 5; i++)
    assert_int_equal(cg__lark_patch_card(fx->api, i % 2 ? "tnt_a" : "tnt_b",
                                         "om_1", CARD, on_res, &xs[i]),
                     0);
  fx->in_call = 0;
  uint64_t end = mono_ms() + 5000;
  while (done < 5) {
    uv_run(&fx->loop, UV_RUN_ONCE);
    done = 0;
    for (int i = 0; i < 5; i++) done += xs[i].calls;
    if (mono_ms() > end) fail_msg("calls not finished");
  }
  for (int i = 0; i < 5; i++) {
    assert_int_equal(xs[i].calls, 1);
    assert_int_equal(xs[i].r.cls, CG__API_RETRYABLE);
    assert_int_equal(xs[i].r.token_error, 1);
    assert_non_null(strstr(xs[i].r.msg, "app_ticket"));
  }
  json_t *s = fake_stats();
  assert_int_equal(json_integer_value(json_object_get(s, "resends")), 1);
  assert_int_equal(json_integer_value(json_object_get(s, "app_token_fetches")), 0);
  assert_int_equal(json_integer_value(json_object_get(s, "api_calls")), 0);
  json_decref(s);
  cg__lark_api_stats st;
  cg__lark_api_get_stats(fx->api, &st);
  assert_int_equal(st.ticket_resends, 1);
  assert_non_null(strstr(fx->log, "resend"));
}

/* With a ticket: one app token, then one tenant token per tenant key (single
 * flight per key), each call carrying its own tenant's token; cached until
 * expire − 180 s. */
static void test_store_tokens_per_tenant(void **state) {
  fixture *fx = *state;
  use_store_app(fx);
  assert_int_equal(cg__lark_api_set_app_ticket(fx->api, "tk-good"), 0);
  assert_true(cg__lark_api_has_app_ticket(fx->api));
  fake_do("{\"cmd\":\"config\",\"token_delay_ms\":50}");
  enum { N = 20 };
  res xs[N];
  memset(xs, 0, sizeof(xs));
  fx->in_call = 1;
  for (int i = 0; i < N; i++)
    assert_int_equal(cg__lark_send_card(fx->api, i % 2 ? "tnt_a" : "tnt_b",
                                        "chat_id", "oc_1", CARD, NULL, on_res,
                                        &xs[i]),
                     0);
  fx->in_call = 0;
  uint64_t end = mono_ms() + 5000;
  for (int i = 0; i < N; i++)
    while (!xs[i].calls) {
      uv_run(&fx->loop, UV_RUN_ONCE);
      if (mono_ms() > end) fail_msg("call %d not finished", i);
    }
  for (int i = 0; i < N; i++) assert_int_equal(xs[i].r.cls, CG__API_OK);
  json_t *s = fake_stats();
  assert_int_equal(json_integer_value(json_object_get(s, "app_token_fetches")), 1);
  assert_int_equal(json_integer_value(json_object_get(s, "store_tenant_fetches")), 2);
  assert_int_equal(json_integer_value(json_object_get(s, "resends")), 0);
  assert_string_equal(
      json_string_value(json_array_get(json_object_get(s, "app_tickets"), 0)),
      "tk-good");
  /* Every call went out with a token of a tenant it named (the order on the
   * wire is the fake's; count per tenant). */
  json_t *at = json_object_get(s, "auth_tenants");
  assert_int_equal(json_array_size(at), N);
  int na = 0, nb = 0;
  for (size_t i = 0; i < json_array_size(at); i++) {
    const char *t = json_string_value(json_array_get(at, i));
    assert_non_null(t);
    na += !strcmp(t, "tnt_a");
    nb += !strcmp(t, "tnt_b");
  }
  assert_int_equal(na, N / 2);
  assert_int_equal(nb, N / 2);
  json_decref(s);

  /* Cached: more calls fetch nothing. */
  res y;
  memset(&y, 0, sizeof(y));
  assert_int_equal(cg__lark_patch_card(fx->api, "tnt_a", "om_1", CARD, on_res, &y), 0);
  run_until(fx, &y.calls, 1, 5000);
  assert_int_equal(y.r.cls, CG__API_OK);
  s = fake_stats();
  assert_int_equal(json_integer_value(json_object_get(s, "store_tenant_fetches")), 2);
  json_t *last_t = json_array_get(json_object_get(s, "auth_tenants"), N);
  assert_string_equal(json_string_value(last_t), "tnt_a");
  json_decref(s);

  /* Past expire − 180 s: tenant a fetches again (and the app token too). */
  fx->clock_ms += (7200 - 180) * 1000ull + 1;
  memset(&y, 0, sizeof(y));
  assert_int_equal(cg__lark_patch_card(fx->api, "tnt_a", "om_1", CARD, on_res, &y), 0);
  run_until(fx, &y.calls, 1, 5000);
  assert_int_equal(y.r.cls, CG__API_OK);
  s = fake_stats();
  assert_int_equal(json_integer_value(json_object_get(s, "store_tenant_fetches")), 3);
  assert_int_equal(json_integer_value(json_object_get(s, "app_token_fetches")), 2);
  json_decref(s);
  cg__lark_api_stats st;
  cg__lark_api_get_stats(fx->api, &st);
  assert_int_equal(st.tenants, 2);
  assert_int_equal(st.app_token_fetches, 2);
  assert_int_equal(st.token_fetches, 3);
  assert_null(strstr(fx->log, "tk-good"));
  assert_null(strstr(fx->log, "a-fake-"));
}

/* A ticket Lark refuses (10012): resend, the call ends retryable and the
 * ticket is dropped; the next ticket works. */
static void test_store_ticket_invalid_resends(void **state) {
  fixture *fx = *state;
  use_store_app(fx);
  assert_int_equal(cg__lark_api_set_app_ticket(fx->api, "tk-stale"), 0);
  res x;
  memset(&x, 0, sizeof(x));
  assert_int_equal(cg__lark_delay_update(fx->api, "tnt_a", "c-callback-1", CARD,
                                         on_res, &x),
                   0);
  run_until(fx, &x.calls, 1, 5000);
  assert_int_equal(x.r.cls, CG__API_RETRYABLE);
  assert_int_equal(x.r.token_error, 1);
  assert_int_equal(x.r.code, CG__LARK_CODE_APP_TICKET_INVALID);
  assert_false(cg__lark_api_has_app_ticket(fx->api));
  /* The resend goes out (not waited for by the call). */
  uint64_t end = mono_ms() + 5000;
  while (fake_stat("resends") < 1) {
    run_for(fx, 20);
    if (mono_ms() > end) fail_msg("no resend");
  }
  /* Lark pushes a fresh ticket (the app hands it over). */
  assert_int_equal(cg__lark_api_set_app_ticket(fx->api, "tk-good"), 0);
  memset(&x, 0, sizeof(x));
  assert_int_equal(cg__lark_delay_update(fx->api, "tnt_a", "c-callback-1", CARD,
                                         on_res, &x),
                   0);
  run_until(fx, &x.calls, 1, 5000);
  assert_int_equal(x.r.cls, CG__API_OK);
  assert_int_equal(fake_stat("app_token_fetches"), 2);
  assert_null(strstr(fx->log, "tk-stale"));
}

/* A ticket arriving while calls wait on the resend serves them. */
static void test_store_ticket_arrives_while_waiting(void **state) {
  fixture *fx = *state;
  use_store_app(fx);
  res x;
  memset(&x, 0, sizeof(x));
  assert_int_equal(cg__lark_patch_card(fx->api, "tnt_a", "om_1", CARD, on_res, &x), 0);
  /* Before the resend answers: the push arrives. */
  assert_int_equal(cg__lark_api_set_app_ticket(fx->api, "tk-good"), 0);
  run_until(fx, &x.calls, 1, 5000);
  assert_int_equal(x.r.cls, CG__API_OK);
  assert_int_equal(fake_stat("app_token_fetches"), 1);
}

/* Closing with calls waiting on the app token and on tenant tokens: all
 * cancelled, nothing leaks. */
static void test_store_close_while_waiting(void **state) {
  fixture *fx = *state;
  use_store_app(fx);
  fake_do("{\"cmd\":\"config\",\"token_delay_ms\":300}");
  assert_int_equal(cg__lark_api_set_app_ticket(fx->api, "tk-good"), 0);
  res xs[4];
  memset(xs, 0, sizeof(xs));
  for (int i = 0; i < 4; i++)
    assert_int_equal(cg__lark_patch_card(fx->api, i < 2 ? "tnt_a" : "tnt_b",
                                         "om_1", CARD, on_res, &xs[i]),
                     0);
  run_for(fx, 20);
  close_api(fx);
  for (int i = 0; i < 4; i++) {
    assert_int_equal(xs[i].calls, 1);
    assert_int_equal(xs[i].r.cls, CG__API_CANCELLED);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_classify_table),
      cmocka_unit_test(test_options_and_base_urls),
      cmocka_unit_test_setup_teardown(test_send_card, setup, teardown),
      cmocka_unit_test_setup_teardown(test_reply_patch_delay_update, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_sync_errors, setup, teardown),
      cmocka_unit_test_setup_teardown(test_cold_token_single_flight, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_token_expiry_and_refresh_ahead,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(test_token_invalid_evict_refetch_retry,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(test_token_invalid_twice, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_token_endpoint_failure, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_rate_limited, setup, teardown),
      cmocka_unit_test_setup_teardown(test_broken_answers, setup, teardown),
      cmocka_unit_test_setup_teardown(test_timeout_is_retryable, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_connection_refused, setup, teardown),
      cmocka_unit_test_setup_teardown(test_close_with_work_in_flight, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_close_inside_callback, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_close_inside_token_waiter, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_store_no_ticket_resend, setup, teardown),
      cmocka_unit_test_setup_teardown(test_store_tokens_per_tenant, setup, teardown),
      cmocka_unit_test_setup_teardown(test_store_ticket_invalid_resends, setup, teardown),
      cmocka_unit_test_setup_teardown(test_store_ticket_arrives_while_waiting, setup, teardown),
      cmocka_unit_test_setup_teardown(test_store_close_while_waiting, setup, teardown),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
