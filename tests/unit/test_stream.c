/* The long-connection clients through the public API (include/cardgate/
 * stream.h), several in one process on one loop: two Lark apps against two
 * in-process emulators and a DingTalk client, each app receiving only its
 * own clicks; states, counters, graceful close with every handle released
 * (the loop closes cleanly). The protocol details are the e2e and interop
 * tests' business (tests/e2e/lark_ws.test.mjs, dingtalk.test.mjs). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "cardgate.h"
#include "emulator/emulator.h"
#include "lib/net/https_client.h"

typedef struct seen {
  int n;
  char last_message[64];
  cg_platform platform;
} seen;

static void on_click(const cg_action *a, cg_responder *r, void *ud) {
  seen *s = ud;
  s->n++;
  s->platform = a->platform;
  snprintf(s->last_message, sizeof s->last_message, "%s", a->message_id ? a->message_id : "");
  int err;
  cg_respond(r, a->platform == CG_PLATFORM_LARK ? cg_reply_toast("success", "ok", &err)
                                                : cg_reply_template("t", "{\"status\":\"ok\"}", NULL, &err));
}

typedef struct posted {
  int done, rc, status;
  char body[4096];
} posted;

static void on_posted(int rc, const cg__https_resp *resp, void *ud) {
  posted *p = ud;
  p->done = 1;
  p->rc = rc;
  p->status = resp->status;
  snprintf(p->body, sizeof p->body, "%s", resp->body);
}

static void post(uv_loop_t *loop, cg__https *h, int port, const char *path, const char *body, posted *p) {
  char url[128];
  snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
  static const char *const hdr[] = {"Content-Type: application/json", NULL};
  cg__https_req req = {.method = "POST", .url = url, .headers = hdr, .body = body, .body_len = strlen(body),
                       .timeout_ms = 10000};
  memset(p, 0, sizeof *p);
  assert_int_equal(cg__https_request(h, &req, on_posted, p), 0);
  while (!p->done) uv_run(loop, UV_RUN_ONCE);
  if (p->rc != 0 || p->status != 200) fail_msg("POST %s: rc %d status %d %s", path, p->rc, p->status, p->body);
}

typedef struct states {
  int connected, closed;
} states;

static void on_state(cg_conn_state st, const char *detail, void *ud) {
  states *s = ud;
  (void)detail;
  if (st == CG_CONN_CONNECTED) s->connected++;
  if (st == CG_CONN_CLOSED) s->closed++;
  if (st == CG_CONN_FAILED) fail_msg("a connection failed: %s", detail);
}

static void count_cb(void *ud) { (*(int *)ud)++; }

static cg__emu *emulator(uv_loop_t *loop, const char *app_id) {
  cg__emu_options o;
  cg__emu_options_init(&o);
  o.app_id = app_id;
  o.app_secret = "s3cret";
  o.dingtalk_client_id = "ding_multi";
  o.dingtalk_client_secret = "dt_s3cret";
  int err = 0;
  cg__emu *e = cg__emu_new(loop, &o, &err);
  assert_non_null(e);
  assert_int_equal(cg__emu_listen(e), 0);
  return e;
}

static cg_app *app_on(uv_loop_t *loop, seen *s) {
  cg_app_options o;
  cg_app_options_init(&o);
  int err = 0;
  cg_app *app = cg_app_new(loop, &o, &err);
  assert_non_null(app);
  assert_int_equal(cg_app_route(app, NULL, on_click, s), 0);
  return app;
}

static void test_several_apps_one_loop(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  cg__emu *e1 = emulator(&loop, "cli_00000000000000a1");
  cg__emu *e2 = emulator(&loop, "cli_00000000000000b2");
  char base1[64], base2[64];
  snprintf(base1, sizeof base1, "http://127.0.0.1:%d", cg__emu_port(e1));
  snprintf(base2, sizeof base2, "http://127.0.0.1:%d", cg__emu_port(e2));

  seen s1 = {0}, s2 = {0}, s3 = {0};
  states st = {0};
  cg_app *a1 = app_on(&loop, &s1), *a2 = app_on(&loop, &s2), *a3 = app_on(&loop, &s3);
  cg_lark_ws_options lo;
  cg_lark_ws_options_init(&lo);
  lo.on_state = on_state;
  lo.on_state_ud = &st;
  lo.app_secret = "s3cret";
  lo.base_url = base1;
  lo.app_id = "cli_00000000000000a1";
  int err = 0;
  cg_lark_ws *w1 = cg_lark_ws_new(a1, &lo, &err);
  assert_non_null(w1);
  lo.base_url = base2;
  lo.app_id = "cli_00000000000000b2";
  cg_lark_ws *w2 = cg_lark_ws_new(a2, &lo, &err);
  assert_non_null(w2);
  cg_dingtalk_stream_options dso;
  cg_dingtalk_stream_options_init(&dso);
  dso.base_url = base1;
  dso.client_id = "ding_multi";
  dso.client_secret = "dt_s3cret";
  dso.on_state = on_state;
  dso.on_state_ud = &st;
  cg_dingtalk_stream *d = cg_dingtalk_stream_new(a3, &dso, &err);
  assert_non_null(d);
  assert_int_equal(cg_lark_ws_state(w1, NULL), CG_CONN_IDLE);
  assert_int_equal(cg_lark_ws_start(w1), 0);
  assert_int_equal(cg_lark_ws_start(w1), CG_EALREADY);
  assert_int_equal(cg_lark_ws_start(w2), 0);
  assert_int_equal(cg_dingtalk_stream_start(d), 0);
  while (st.connected < 3) uv_run(&loop, UV_RUN_ONCE);
  const char *detail = NULL;
  assert_int_equal(cg_lark_ws_state(w1, &detail), CG_CONN_CONNECTED);
  assert_non_null(strstr(detail, "connected"));
  assert_int_equal(cg_dingtalk_stream_state(d, NULL), CG_CONN_CONNECTED);

  int herr = 0;
  cg__https *h = cg__https_new(&loop, &herr);
  assert_non_null(h);
  posted p;
  post(&loop, h, cg__emu_port(e1), "/emulator/lark_ws/push", "{\"message_id\":\"om_one\",\"value\":{\"k\":1}}", &p);
  assert_non_null(strstr(p.body, "\"code\":200"));
  post(&loop, h, cg__emu_port(e2), "/emulator/lark_ws/push", "{\"message_id\":\"om_two\",\"value\":{\"k\":2}}", &p);
  assert_non_null(strstr(p.body, "\"code\":200"));
  post(&loop, h, cg__emu_port(e1), "/emulator/dingtalk/push",
       "{\"kind\":\"card\",\"outTrackId\":\"dt_three\",\"userId\":\"u\",\"params\":{\"k\":3}}", &p);
  assert_non_null(strstr(p.body, "cardParamMap"));
  /* each app saw exactly its own click */
  assert_int_equal(s1.n, 1);
  assert_string_equal(s1.last_message, "om_one");
  assert_int_equal(s2.n, 1);
  assert_string_equal(s2.last_message, "om_two");
  assert_int_equal(s3.n, 1);
  assert_string_equal(s3.last_message, "dt_three");
  assert_int_equal(s3.platform, CG_PLATFORM_DINGTALK);
  cg_conn_stats cs;
  cg_lark_ws_stats(w1, &cs);
  assert_int_equal(cs.connects, 1);
  assert_int_equal(cs.messages, 1);
  assert_int_equal(cs.acks, 1);
  assert_true(cs.pings_sent >= 1); /* the ping at once */
  cg_dingtalk_stream_stats(d, &cs);
  assert_int_equal(cs.messages, 1);
  assert_int_equal(cs.acks, 1);

  /* graceful close: every callback runs, every handle is released */
  int closes = 0;
  cg_lark_ws_close(w1, count_cb, &closes);
  cg_lark_ws_close(w2, count_cb, &closes);
  cg_dingtalk_stream_close(d, count_cb, &closes);
  while (closes < 3) uv_run(&loop, UV_RUN_ONCE);
  assert_int_equal(st.closed, 3);
  cg__https_close(h, NULL, NULL);
  cg_app_free(a1);
  cg_app_free(a2);
  cg_app_free(a3);
  int ec = 0;
  cg__emu_close(e1, count_cb, &ec);
  cg__emu_close(e2, count_cb, &ec);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(ec, 2);
  assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_bad_options(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  seen s = {0};
  cg_app *app = app_on(&loop, &s);
  int err = 0;
  /* no credentials here or in the app */
  assert_null(cg_lark_ws_new(app, NULL, &err));
  assert_int_equal(err, CG_EINVAL);
  assert_non_null(strstr(cg_app_last_error(app), "app id"));
  assert_null(cg_dingtalk_stream_new(app, NULL, &err));
  assert_int_equal(err, CG_EINVAL);
  /* secrets may not travel in clear text to another host */
  cg_lark_ws_options lo;
  cg_lark_ws_options_init(&lo);
  lo.app_id = "cli_00000000000000a1";
  lo.app_secret = "x";
  lo.base_url = "http://open.feishu.cn";
  assert_null(cg_lark_ws_new(app, &lo, &err));
  assert_int_equal(err, CG_ECONFIG);
  cg_dingtalk_stream_options dso;
  cg_dingtalk_stream_options_init(&dso);
  dso.client_id = "d";
  dso.client_secret = "x";
  dso.base_url = "ftp://127.0.0.1";
  assert_null(cg_dingtalk_stream_new(app, &dso, &err));
  assert_int_equal(err, CG_ECONFIG);
  /* closing a client never started */
  lo.base_url = "http://127.0.0.1:9";
  cg_lark_ws *w = cg_lark_ws_new(app, &lo, &err);
  assert_non_null(w);
  int closes = 0;
  cg_lark_ws_close(w, count_cb, &closes);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(closes, 1);
  assert_string_equal(cg_conn_state_name(CG_CONN_FAILED), "failed");
  cg_app_free(app);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_several_apps_one_loop),
      cmocka_unit_test(test_bad_options),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
