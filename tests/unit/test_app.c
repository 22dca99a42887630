/* The app core (src/lib/core/app.c): routing, inline and later answers, the
 * deadline, duplicate suppression, challenge and rejection paths — driven
 * through cg_app_handle_lark_http on a real libuv loop. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include "cardgate.h"
#include "lib/codec/dingtalk_stream.h"
#include "lib/core/app_int.h"

typedef struct answer {
  int calls;
  int status;
  char body[2048];
} answer;

static void on_done(int status, const char *body, size_t len, void *ud) {
  answer *a = ud;
  a->calls++;
  a->status = status;
  snprintf(a->body, sizeof(a->body), "%.*s", (int)len, body);
}

static const char legacy_body[] =
    "{\"open_id\":\"ou_1\",\"open_message_id\":\"om_1\",\"open_chat_id\":\"oc_1\",\"tenant_key\":\"t\","
    "\"token\":\"c-1\",\"action\":{\"tag\":\"button\",\"value\":{\"button_type\":\"public_publish\"}}}";

static const char v2_body[] =
    "{\"schema\":\"2.0\",\"header\":{\"event_id\":\"ev-1\",\"event_type\":\"card.action.trigger\",\"token\":\"\","
    "\"create_time\":\"1\",\"app_id\":\"cli_x\",\"tenant_key\":\"t\"},\"event\":{\"operator\":{\"open_id\":\"ou_1\"},"
    "\"token\":\"c-1\",\"action\":{\"tag\":\"button\",\"value\":{\"k\":\"v\"}},"
    "\"context\":{\"open_message_id\":\"om_1\",\"open_chat_id\":\"oc_1\"}}}";

static cg_http_request req_of(const char *body) {
  cg_http_request r;
  memset(&r, 0, sizeof(r));
  r.body = body;
  r.body_len = strlen(body);
  return r;
}

typedef struct fixture {
  uv_loop_t loop;
  cg_app *app;
  int calls;
  cg_responder *held;
  uv_timer_t later;
  int late_rc;
} fixture;

static int setup(void **state) {
  fixture *f = calloc(1, sizeof(*f));
  uv_loop_init(&f->loop);
  cg_app_options o;
  cg_app_options_init(&o);
  o.deadline_ms = 100;
  int err;
  f->app = cg_app_new(&f->loop, &o, &err);
  assert_non_null(f->app);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture *f = *state;
  cg_app_free(f->app);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&f->loop), 0);
  free(f);
  return 0;
}

static void h_card(const cg_action *a, cg_responder *r, void *ud) {
  fixture *f = ud;
  f->calls++;
  assert_string_equal(a->open_id, "ou_1");
  assert_string_equal(a->message_id, "om_1");
  int err;
  cg_respond(r, cg_reply_card("{\"elements\":[]}", &err));
}

static void test_inline_answer(void **state) {
  fixture *f = *state;
  assert_int_equal(cg_app_route(f->app, "value.button_type == \"public_publish\"", h_card, f), 0);
  answer a = {0};
  cg_http_request rq = req_of(legacy_body);
  assert_int_equal(cg_app_handle_lark_http(f->app, CG_LARK_ENDPOINT_CARD, &rq, on_done, &a), 0);
  assert_int_equal(a.calls, 1); /* answered before the call returned */
  assert_int_equal(a.status, 200);
  assert_string_equal(a.body, "{\"elements\":[]}");
  assert_int_equal(f->calls, 1);
}

static void test_no_route_keeps(void **state) {
  fixture *f = *state;
  assert_int_equal(cg_app_route(f->app, "value.button_type == \"other\"", h_card, f), 0);
  answer a = {0};
  cg_http_request rq = req_of(legacy_body);
  cg_app_handle_lark_http(f->app, CG_LARK_ENDPOINT_CARD, &rq, on_done, &a);
  assert_int_equal(a.calls, 1);
  assert_int_equal(a.status, 200);
  assert_string_equal(a.body, "{}");
  assert_int_equal(f->calls, 0);
  /* the fallback takes it */
  cg_app_fallback(f->app, h_card, f);
  cg_app_handle_lark_http(f->app, CG_LARK_ENDPOINT_CARD, &rq, on_done, &a);
  assert_int_equal(a.calls, 2);
  assert_string_equal(a.body, "{\"elements\":[]}");
}

static void later_cb(uv_timer_t *t) {
  fixture *f = t->data;
  int err;
  f->late_rc = cg_respond(f->held, cg_reply_toast("success", "ok", &err));
  f->held = NULL;
  uv_close((uv_handle_t *)t, NULL);
}

static void h_hold(const cg_action *a, cg_responder *r, void *ud) {
  fixture *f = ud;
  (void)a;
  f->calls++;
  f->held = r;
  assert_true(cg_responder_remaining_ms(r) <= 100);
}

static void answer_later(fixture *f, uint64_t ms) {
  uv_timer_init(&f->loop, &f->later);
  f->later.data = f;
  uv_timer_start(&f->later, later_cb, ms, 0);
}

static void test_async_answer_in_time(void **state) {
  fixture *f = *state;
  cg_app_route(f->app, NULL, h_hold, f);
  answer a = {0};
  cg_http_request rq = req_of(v2_body);
  cg_app_handle_lark_http(f->app, CG_LARK_ENDPOINT_EVENT, &rq, on_done, &a);
  assert_int_equal(a.calls, 0);
  answer_later(f, 20);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(f->late_rc, 0);
  assert_int_equal(a.calls, 1);
  assert_int_equal(a.status, 200);
  assert_string_equal(a.body, "{\"toast\":{\"type\":\"success\",\"content\":\"ok\"}}");
}

static void test_deadline(void **state) {
  fixture *f = *state;
  cg_app_route(f->app, NULL, h_hold, f);
  answer a = {0};
  cg_http_request rq = req_of(legacy_body);
  uint64_t t0 = uv_hrtime();
  cg_app_handle_lark_http(f->app, CG_LARK_ENDPOINT_CARD, &rq, on_done, &a);
  answer_later(f, 300);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(a.calls, 1); /* exactly once: the keep answer */
  assert_string_equal(a.body, "{}");
  assert_int_equal(f->late_rc, CG_ETIMEDOUT);
  assert_true(uv_hrtime() - t0 >= 290 * 1000000ull);
}

static void test_duplicates(void **state) {
  fixture *f = *state;
  cg_app_route(f->app, NULL, h_hold, f);
  answer a1 = {0}, a2 = {0}, a3 = {0};
  cg_http_request rq = req_of(v2_body);
  cg_app_handle_lark_http(f->app, CG_LARK_ENDPOINT_EVENT, &rq, on_done, &a1);
  cg_app_handle_lark_http(f->app, CG_LARK_ENDPOINT_EVENT, &rq, on_done, &a2); /* while in flight */
  answer_later(f, 20);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  cg_app_handle_lark_http(f->app, CG_LARK_ENDPOINT_EVENT, &rq, on_done, &a3); /* after */
  assert_int_equal(f->calls, 1); /* handled once */
  assert_int_equal(a1.calls, 1);
  assert_int_equal(a2.calls, 1);
  assert_int_equal(a3.calls, 1);
  assert_string_equal(a1.body, a2.body);
  assert_string_equal(a1.body, a3.body);
}

static int64_t wall_ms(void) {
  struct timeval tv;
  gettimeofday(&tv, NULL);
  return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

/* dedupe_in_store: 1 records the event id in the store before the handler
 * runs (a restart or another instance then skips it); 0 keeps it in memory
 * only. Checked on a real SQLite store. */
static void dedupe_store_case(int in_store) {
  char path[] = "/tmp/cg_test_app_seen_XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  close(fd);
  char err[256];
  int e = 0;
  cg_store *st = cg_store_open(path, err, sizeof err, &e);
  assert_non_null(st);
  uv_loop_t loop;
  uv_loop_init(&loop);
  cg_app_options o;
  cg_app_options_init(&o);
  assert_int_equal(o.dedupe_in_store, 1); /* the default */
  o.store = st;
  o.dedupe_in_store = in_store;
  cg_app *app = cg_app_new(&loop, &o, &e);
  assert_non_null(app);
  fixture f = {0};
  cg_app_route(app, NULL, h_card, &f);
  answer a = {0};
  cg_http_request rq = req_of(v2_body);
  assert_int_equal(cg_app_handle_lark_http(app, CG_LARK_ENDPOINT_EVENT, &rq, on_done, &a), 0);
  while (a.calls == 0) uv_run(&loop, UV_RUN_ONCE);
  assert_int_equal(f.calls, 1);
  cg_app_free(app);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0);
  /* Was ev-1 recorded? A new check says duplicate only if it was. */
  int rc = cg_store_seen_check(st, "ev-1", wall_ms(), 60000, NULL, NULL);
  assert_int_equal(rc, in_store ? CG_EDUPLICATE : 0);
  cg_store_close(st);
  unlink(path);
}

static void test_dedupe_in_store(void **state) {
  (void)state;
  dedupe_store_case(1);
  dedupe_store_case(0);
}

/* DingTalk's card platform waits 2 s (dingtalk.md §2.7): whatever the
 * app's deadline, a DingTalk card callback is answered "keep" before it. */
static void h_keep_responder(const cg_action *a, cg_responder *r, void *ud) {
  (void)a;
  *(cg_responder **)ud = r; /* answered late, below */
}

static void test_dingtalk_deadline_capped(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  cg_app_options o;
  cg_app_options_init(&o);
  o.deadline_ms = 2800; /* fine for Lark, too late for DingTalk */
  int e = 0;
  cg_app *app = cg_app_new(&loop, &o, &e);
  assert_non_null(app);
  cg_responder *held = NULL;
  cg_app_route(app, NULL, h_keep_responder, &held);
  static const char frame[] =
      "{\"specVersion\":\"1.0\",\"type\":\"CALLBACK\",\"headers\":{\"topic\":"
      "\"/v1.0/card/instances/callback\",\"messageId\":\"m1\",\"contentType\":\"application/json\"},"
      "\"data\":\"{\\\"outTrackId\\\":\\\"t1\\\",\\\"userId\\\":\\\"u\\\",\\\"content\\\":"
      "\\\"{\\\\\\\"cardPrivateData\\\\\\\":{\\\\\\\"params\\\\\\\":{}}}\\\"}\"}";
  cg__dt_frame f;
  char err[200];
  assert_int_equal(cg__dt_frame_decode(frame, strlen(frame), &f, err, sizeof err), 0);
  cg__action_rec *a = NULL;
  if (cg__dt_decode_action(&f, 0, &a, err, sizeof err) != 0) fail_msg("%s", err);
  cg__dt_frame_clear(&f);
  answer ans = {0};
  uint64_t t0 = uv_hrtime();
  assert_int_equal(cg__app_dispatch(app, a, on_done, &ans), 0);
  while (ans.calls == 0) uv_run(&loop, UV_RUN_ONCE);
  uint64_t ms = (uv_hrtime() - t0) / 1000000u;
  assert_true(ms >= CG__DINGTALK_DEADLINE_MS - 50 && ms < 2000);
  assert_string_equal(ans.body, "{\"response\":{}}");
  assert_non_null(held);
  assert_int_equal(cg_respond(held, NULL), CG_ETIMEDOUT);
  cg_app_free(app);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_challenge_and_rejections(void **state) {
  fixture *f = *state;
  answer a = {0};
  cg_http_request rq = req_of("{\"challenge\":\"abc\",\"token\":\"v\",\"type\":\"url_verification\"}");
  cg_app_handle_lark_http(f->app, CG_LARK_ENDPOINT_CARD, &rq, on_done, &a);
  assert_int_equal(a.status, 200);
  assert_string_equal(a.body, "{\"challenge\":\"abc\"}");
  rq = req_of("{\"open_id\":");
  cg_app_handle_lark_http(f->app, CG_LARK_ENDPOINT_CARD, &rq, on_done, &a);
  assert_int_equal(a.status, 400);
  assert_non_null(strstr(a.body, "\"code\":30001"));
  rq = req_of("{\"schema\":\"2.0\",\"header\":{\"event_type\":\"im.message.receive_v1\",\"event_id\":\"x\"},\"event\":{}}");
  cg_app_handle_lark_http(f->app, CG_LARK_ENDPOINT_EVENT, &rq, on_done, &a);
  assert_int_equal(a.status, 200);
  assert_string_equal(a.body, "{}");
  assert_int_equal(a.calls, 3);
}

static void test_route_errors(void **state) {
  fixture *f = *state;
  assert_int_equal(cg_app_route(f->app, "tga == \"x\"", h_card, f), CG_EINVAL);
  assert_non_null(strstr(cg_app_last_error(f->app), "unknown field \"tga\""));
  assert_int_equal(cg_app_route(f->app, NULL, NULL, f), CG_EINVAL);
  assert_int_equal(cg_app_add_workflow(f->app, NULL), CG_EINVAL);
}

static void h_never(const cg_action *a, cg_responder *r, void *ud) {
  fixture *f = ud;
  (void)a;
  f->held = r;
}

static void test_free_with_pending(void **state) {
  fixture *f = *state;
  cg_app_route(f->app, NULL, h_never, f);
  answer a = {0};
  cg_http_request rq = req_of(legacy_body);
  cg_app_handle_lark_http(f->app, CG_LARK_ENDPOINT_CARD, &rq, on_done, &a);
  cg_app_free(f->app);
  f->app = NULL;
  /* the handler answers after the app is gone: safe, dropped */
  assert_int_equal(cg_respond(f->held, NULL), CG_ETIMEDOUT);
  assert_int_equal(a.calls, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_inline_answer, setup, teardown),
      cmocka_unit_test_setup_teardown(test_no_route_keeps, setup, teardown),
      cmocka_unit_test_setup_teardown(test_async_answer_in_time, setup, teardown),
      cmocka_unit_test_setup_teardown(test_deadline, setup, teardown),
      cmocka_unit_test_setup_teardown(test_duplicates, setup, teardown),
      cmocka_unit_test(test_dedupe_in_store),
      cmocka_unit_test(test_dingtalk_deadline_capped),
      cmocka_unit_test_setup_teardown(test_challenge_and_rejections, setup, teardown),
      cmocka_unit_test_setup_teardown(test_route_errors, setup, teardown),
      cmocka_unit_test_setup_teardown(test_free_with_pending, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
