/* The outbox (src/lib/core/outbox.c) end to end on real sockets: the app's
 * late path and follow-ups, the engine against a fake Open API
 * (tests/unit/fake_lark_openapi.mjs, run with node) — token budget, 5xx
 * recovery, dead letters, restart. */
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
#include "lib/core/outbox.h"
#include "lib/core/store_worker.h"
#include "lib/openapi/lark_api.h"
#include "support/fake_process.h"

static const char CARD_A[] = "{\"config\":{\"update_multi\":true},\"elements\":[{\"tag\":\"markdown\",\"content\":\"A\"}]}";
static const char CARD_B[] = "{\"config\":{\"update_multi\":true},\"elements\":[{\"tag\":\"markdown\",\"content\":\"B\"}]}";
static const char CARD_C[] = "{\"config\":{\"update_multi\":true},\"elements\":[{\"tag\":\"markdown\",\"content\":\"C\"}]}";

#define ROUTE_TOKEN "POST /open-apis/interactive/v1/card/update"
#define ROUTE_PATCH "PATCH /open-apis/im/v1/messages/om_1"

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


static json_int_t fake_route(const char *route) {
  json_t *s = fake_cmd("{\"cmd\":\"stats\"}");
  json_int_t v = json_integer_value(json_object_get(json_object_get(s, "routes"), route));
  json_decref(s);
  return v;
}

static uint64_t mono_ms(void) { return uv_hrtime() / 1000000u; }

static char g_base[64];

/* ------------------------------------------------------------- fixture */

typedef struct fixture {
  uv_loop_t loop;
  uv_timer_t ticker; /* keeps the loop turning while we wait */
  char dir[128];
  char db[192];
  cg_store *store;
  /* the engine alone */
  cg__store_worker *worker;
  cg__lark_api *api;
  cg__outbox *ob;
  /* the app */
  cg_app *app;
  cg_responder *held;
  cg_followup *fu;
  int late_rc;
  char log[1 << 16];
  size_t log_len;
} fixture;

static void on_log(cg_log_level level, const char *component, const char *msg, void *ud) {
  fixture *fx = ud;
  (void)level;
  int n = snprintf(fx->log + fx->log_len, sizeof(fx->log) - fx->log_len, "%s: %s\n", component, msg);
  if (n > 0 && fx->log_len + (size_t)n < sizeof(fx->log)) fx->log_len += (size_t)n;
}

static void on_tick(uv_timer_t *t) { (void)t; }

static int setup(void **state) {
  fake_do("{\"cmd\":\"reset\"}");
  fixture *fx = calloc(1, sizeof(*fx));
  assert_non_null(fx);
  assert_int_equal(uv_loop_init(&fx->loop), 0);
  uv_timer_init(&fx->loop, &fx->ticker);
  uv_timer_start(&fx->ticker, on_tick, 10, 10);
  cg_fmt(fx->dir, sizeof fx->dir, "/tmp/cg_test_outbox_XXXXXX");
  assert_non_null(mkdtemp(fx->dir));
  cg_fmt(fx->db, sizeof fx->db, "%s/cards.db", fx->dir);
  snprintf(g_base, sizeof(g_base), "http://127.0.0.1:%d", g_fake.port);
  *state = fx;
  return 0;
}

static void open_store(fixture *fx) {
  char eb[256];
  int err = 1;
  fx->store = cg_store_open(fx->db, eb, sizeof eb, &err);
  if (!fx->store) fail_msg("store: %s", eb);
}

static void start_engine(fixture *fx, uint32_t max_attempts, uint32_t lease_ms) {
  open_store(fx);
  int err = 1;
  fx->worker = cg__store_worker_new(&fx->loop, fx->store, &err);
  assert_non_null(fx->worker);
  cg__lark_api_options lo;
  cg__lark_api_options_init(&lo);
  lo.base_url = g_base;
  lo.app_id = "cli_test";
  lo.app_secret = "secret_test";
  lo.timeout_ms = 2000;
  fx->api = cg__lark_api_new(&fx->loop, &lo, &err);
  assert_non_null(fx->api);
  cg__outbox_options oo;
  cg__outbox_options_init(&oo);
  oo.worker = fx->worker;
  oo.api = fx->api;
  oo.max_attempts = max_attempts;
  oo.poll_ms = 20;
  oo.backoff_base_ms = 20;
  oo.backoff_max_ms = 100;
  oo.lease_ms = lease_ms;
  oo.log = on_log;
  oo.log_ud = fx;
  oo.log_level = CG_LOG_DEBUG;
  fx->ob = cg__outbox_new(&fx->loop, &oo, &err);
  assert_non_null(fx->ob);
}

static void stop_engine(fixture *fx) {
  cg__outbox_close(fx->ob);
  fx->ob = NULL;
  cg__lark_api_close(fx->api, NULL, NULL);
  fx->api = NULL;
  cg__store_worker_free(fx->worker);
  fx->worker = NULL;
  for (int i = 0; i < 50; i++) uv_run(&fx->loop, UV_RUN_NOWAIT);
  cg_store_close(fx->store);
  fx->store = NULL;
}

static int teardown(void **state) {
  fixture *fx = *state;
  if (fx->fu) cg_followup_free(fx->fu);
  if (fx->app) cg_app_free(fx->app);
  if (fx->ob) stop_engine(fx);
  uv_close((uv_handle_t *)&fx->ticker, NULL);
  uv_run(&fx->loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&fx->loop), 0);
  if (fx->store) cg_store_close(fx->store);
  static const char *const sfx[] = {"", "-wal", "-shm"};
  for (size_t i = 0; i < CG_ARRAY_SIZE(sfx); i++) {
    char p[256];
    cg_fmt(p, sizeof p, "%s%s", fx->db, sfx[i]);
    unlink(p);
  }
  rmdir(fx->dir);
  free(fx);
  return 0;
}

/* The state of outbox entry id (a fresh read through the public API). */
static void entry(fixture *fx, int64_t id, cg_outbox_entry *out) {
  assert_int_equal(cg_store_outbox_get(fx->store, id, out), 0);
}

static int entry_in(fixture *fx, int64_t id, const char *state) {
  cg_outbox_entry e;
  if (cg_store_outbox_get(fx->store, id, &e) != 0) return 0;
  int yes = strcmp(e.state, state) == 0;
  cg_outbox_entry_clear(&e);
  return yes;
}

static void wait_state(fixture *fx, int64_t id, const char *state, uint64_t timeout_ms) {
  uint64_t end = mono_ms() + timeout_ms;
  while (!entry_in(fx, id, state)) {
    uv_run(&fx->loop, UV_RUN_ONCE);
    if (mono_ms() > end) fail_msg("entry %lld not %s in time; log:\n%s", (long long)id, state, fx->log);
  }
}

static void run_for(fixture *fx, uint64_t ms) {
  uint64_t end = mono_ms() + ms;
  while (mono_ms() < end) uv_run(&fx->loop, UV_RUN_ONCE);
}

/* The id of the newest entry (0 when none). */
static int newest(const cg_outbox_entry *e, void *ud) {
  *(int64_t *)ud = e->id;
  return 1;
}
static int64_t newest_id(fixture *fx) {
  int64_t id = 0;
  assert_int_equal(cg_store_outbox_list(fx->store, NULL, 1, newest, &id), 0);
  return id;
}

static void wait_entry(fixture *fx, uint64_t timeout_ms) {
  uint64_t end = mono_ms() + timeout_ms;
  while (newest_id(fx) == 0) {
    uv_run(&fx->loop, UV_RUN_ONCE);
    if (mono_ms() > end) fail_msg("no outbox entry; log:\n%s", fx->log);
  }
}

/* ------------------------------------------------------------ the app */

static const char legacy_body[] =
    "{\"open_id\":\"ou_1\",\"open_message_id\":\"om_1\",\"open_chat_id\":\"oc_1\",\"tenant_key\":\"t\","
    "\"token\":\"c-late\",\"action\":{\"tag\":\"button\",\"value\":{\"k\":\"v\"}}}";

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

static void start_app(fixture *fx) {
  open_store(fx);
  cg_app_options o;
  cg_app_options_init(&o);
  o.deadline_ms = 50;
  o.store = fx->store;
  o.lark_app_id = "cli_test";
  o.lark_app_secret = "secret_test";
  o.lark_base_url = g_base;
  o.log = on_log;
  o.log_ud = fx;
  o.log_level = CG_LOG_DEBUG;
  int err = 1;
  fx->app = cg_app_new(&fx->loop, &o, &err);
  assert_non_null(fx->app);
}

static void h_hold(const cg_action *a, cg_responder *r, void *ud) {
  (void)a;
  ((fixture *)ud)->held = r;
}

static void click(fixture *fx, answer *a) {
  cg_http_request rq;
  memset(&rq, 0, sizeof rq);
  rq.body = legacy_body;
  rq.body_len = strlen(legacy_body);
  assert_int_equal(cg_app_handle_lark_http(fx->app, CG_LARK_ENDPOINT_CARD, &rq, on_done, a), 0);
}

/* A reply after the deadline goes through the callback token, once. */
static void test_late_reply_delivered_once(void **state) {
  fixture *fx = *state;
  start_app(fx);
  cg_app_route(fx->app, NULL, h_hold, fx);
  answer a = {0};
  click(fx, &a);
  run_for(fx, 120); /* the deadline answers "keep the card" */
  assert_int_equal(a.calls, 1);
  assert_string_equal(a.body, "{}");
  assert_int_equal(fake_route(ROUTE_TOKEN), 0); /* nothing sent before the answer */
  int err;
  assert_int_equal(cg_respond(fx->held, cg_reply_card(CARD_A, &err)), CG_ETIMEDOUT);
  assert_non_null(strstr(fx->log, "its card goes to the outbox"));
  wait_entry(fx, 2000);
  int64_t id = newest_id(fx);
  wait_state(fx, id, "delivered", 5000);
  run_for(fx, 200); /* nothing more goes out */
  assert_int_equal(fake_route(ROUTE_TOKEN), 1);
  assert_int_equal(fake_route(ROUTE_PATCH), 0);
  json_t *st = fake_cmd("{\"cmd\":\"stats\"}");
  json_t *last = json_object_get(st, "last");
  assert_string_equal(json_string_value(json_object_get(json_object_get(last, "body"), "token")), "c-late");
  json_t *card = json_object_get(json_object_get(last, "body"), "card");
  json_t *want = json_loads(CARD_A, 0, NULL);
  assert_true(json_equal(card, want));
  json_decref(want);
  json_decref(st);
  cg_outbox_entry e;
  entry(fx, id, &e);
  assert_int_equal(e.token_uses, 1);
  assert_int_equal(e.attempts, 1);
  assert_string_equal(e.message_id, "om_1");
  assert_null(strstr(fx->log, "c-late")); /* the token is never logged */
  cg_outbox_entry_clear(&e);
}

static void h_followup(const cg_action *a, cg_responder *r, void *ud) {
  fixture *fx = ud;
  (void)a;
  fx->fu = cg_respond_later(r);
  assert_non_null(fx->fu);
  int err;
  /* Not before the answer. */
  assert_int_equal(cg_followup_update(fx->fu, cg_reply_card(CARD_A, &err)), CG_EINVAL);
  cg_respond(r, cg_reply_card(CARD_A, &err));
}

/* Three updates on one token: two delayed updates, then a message patch. */
static void test_followups_budget(void **state) {
  fixture *fx = *state;
  start_app(fx);
  cg_app_route(fx->app, NULL, h_followup, fx);
  answer a = {0};
  click(fx, &a);
  assert_int_equal(a.calls, 1);
  const char *cards[] = {CARD_A, CARD_B, CARD_C};
  int64_t prev = 0;
  for (int i = 0; i < 3; i++) {
    int err;
    assert_int_equal(cg_followup_update(fx->fu, cg_reply_card(cards[i], &err)), 0);
    uint64_t end = mono_ms() + 3000;
    while (newest_id(fx) == prev) {
      uv_run(&fx->loop, UV_RUN_ONCE);
      if (mono_ms() > end) fail_msg("no entry");
    }
    prev = newest_id(fx);
    wait_state(fx, prev, "delivered", 5000);
  }
  assert_int_equal(fake_route(ROUTE_TOKEN), 2);
  assert_int_equal(fake_route(ROUTE_PATCH), 1);
  json_t *st = fake_cmd("{\"cmd\":\"stats\"}");
  json_t *body = json_object_get(json_object_get(st, "last"), "body");
  json_t *got = json_loads(json_string_value(json_object_get(body, "content")), 0, NULL);
  json_t *want = json_loads(CARD_C, 0, NULL);
  assert_true(json_equal(got, want));
  json_decref(got);
  json_decref(want);
  json_decref(st);
  /* A toast is not a card. */
  int err;
  assert_int_equal(cg_followup_update(fx->fu, cg_reply_toast("info", "x", &err)), CG_EINVAL);
}

/* -------------------------------------------------------- the engine */

static int64_t enqueue(fixture *fx, const char *token, const char *card) {
  int64_t before = newest_id(fx);
  assert_int_equal(cg__outbox_enqueue(fx->ob, "lark", NULL, "om_1", token, cg_now_ms() + CG__OUTBOX_TOKEN_TTL_MS, card), 0);
  uint64_t end = mono_ms() + 3000;
  while (newest_id(fx) == before) {
    uv_run(&fx->loop, UV_RUN_ONCE);
    if (mono_ms() > end) fail_msg("not enqueued");
  }
  return newest_id(fx);
}

/* The Open API fails (502) for a while: delivered after it recovers. */
static void test_recovers_after_5xx(void **state) {
  fixture *fx = *state;
  start_engine(fx, 8, 60000);
  fake_do("{\"cmd\":\"fault\",\"on\":\"api\",\"mode\":\"html502\",\"count\":3}");
  int64_t id = enqueue(fx, "c-5xx", CARD_A);
  wait_state(fx, id, "delivered", 10000);
  cg_outbox_entry e;
  entry(fx, id, &e);
  assert_int_equal(e.attempts, 4);
  /* the 502s on the token count against its budget: two token tries, then
   * patches */
  assert_int_equal(e.token_uses, 2);
  cg_outbox_entry_clear(&e);
  assert_int_equal(fake_route(ROUTE_TOKEN), 2);
  assert_int_equal(fake_route(ROUTE_PATCH), 2);
  cg__outbox_stats st;
  cg__outbox_get_stats(fx->ob, &st);
  assert_int_equal(st.delivered, 1);
  assert_int_equal(st.retried, 3);
  assert_int_equal(st.dead, 0);
  assert_non_null(strstr(fx->log, "retry 1 in"));
}

/* A rate limit is waited out as Lark says (x-ogw-ratelimit-reset). */
static void test_rate_limited(void **state) {
  fixture *fx = *state;
  start_engine(fx, 2, 60000);
  fake_do("{\"cmd\":\"fault\",\"on\":\"api\",\"mode\":\"rate400\",\"reset\":1,\"count\":3}");
  uint64_t t0 = mono_ms();
  int64_t id = enqueue(fx, NULL, CARD_A);
  wait_state(fx, id, "delivered", 10000);
  assert_true(mono_ms() - t0 >= 2900); /* 3 × 1 s */
  cg_outbox_entry e;
  entry(fx, id, &e);
  assert_int_equal(e.attempts, 1); /* the waits were not attempts (max is 3): only the delivery */
  cg_outbox_entry_clear(&e);
}

/* A permanent error is dead at once; a lasting 5xx after max attempts. */
static void test_dead(void **state) {
  fixture *fx = *state;
  start_engine(fx, 3, 60000);
  fake_do("{\"cmd\":\"fault\",\"on\":\"api\",\"mode\":\"code\",\"code\":230001,\"count\":1}");
  int64_t id = enqueue(fx, NULL, CARD_A);
  wait_state(fx, id, "dead", 5000);
  cg_outbox_entry e;
  entry(fx, id, &e);
  assert_int_equal(e.attempts, 1);
  assert_non_null(strstr(e.last_error, "230001"));
  cg_outbox_entry_clear(&e);

  fake_do("{\"cmd\":\"fault\",\"on\":\"api\",\"mode\":\"html502\",\"count\":100}");
  int64_t id2 = enqueue(fx, NULL, CARD_B);
  assert_true(id2 != id);
  wait_state(fx, id2, "dead", 10000);
  entry(fx, id2, &e);
  assert_int_equal(e.attempts, 3);
  assert_non_null(strstr(e.last_error, "http 502"));
  cg_outbox_entry_clear(&e);
  assert_int_equal(fake_route(ROUTE_PATCH), 4);
  fake_do("{\"cmd\":\"reset\"}");

  /* Retried by hand (cardgate outbox retry): delivered. */
  assert_int_equal(cg_store_outbox_retry(fx->store, id2, cg_now_ms()), 0);
  wait_state(fx, id2, "delivered", 5000);
}

/* A refused token (permanent on the delayed update) is retired: patch. */
static void test_token_refused_falls_back(void **state) {
  fixture *fx = *state;
  start_engine(fx, 3, 60000);
  fake_do("{\"cmd\":\"fault\",\"on\":\"api\",\"mode\":\"code\",\"code\":300030,\"count\":1}");
  int64_t id = enqueue(fx, "c-bad", CARD_A);
  wait_state(fx, id, "delivered", 5000);
  assert_int_equal(fake_route(ROUTE_TOKEN), 1);
  assert_int_equal(fake_route(ROUTE_PATCH), 1);
  cg_outbox_entry e;
  entry(fx, id, &e);
  assert_int_equal(e.token_uses, CG__OUTBOX_TOKEN_USES);
  cg_outbox_entry_clear(&e);
}

/* Entries survive a restart: the request in flight is cut by the stop, the
 * entry stays leased, and the next run delivers it after the lease. */
static void test_survives_restart(void **state) {
  fixture *fx = *state;
  start_engine(fx, 8, 300);
  fake_do("{\"cmd\":\"fault\",\"on\":\"api\",\"mode\":\"hang\",\"count\":1}");
  int64_t id = enqueue(fx, "c-r", CARD_A);
  uint64_t end = mono_ms() + 3000;
  while (fake_route(ROUTE_TOKEN) < 1) {
    uv_run(&fx->loop, UV_RUN_ONCE);
    if (mono_ms() > end) fail_msg("not sent");
  }
  stop_engine(fx);
  open_store(fx);
  assert_true(entry_in(fx, id, "pending"));
  cg_store_close(fx->store);
  fx->store = NULL;

  start_engine(fx, 8, 300);
  wait_state(fx, id, "delivered", 5000);
  assert_int_equal(fake_route(ROUTE_TOKEN), 2);
}

/* Several updates before delivery merge into one: the last card. */
static void test_merge_before_delivery(void **state) {
  fixture *fx = *state;
  start_engine(fx, 8, 60000);
  fake_do("{\"cmd\":\"fault\",\"on\":\"api\",\"mode\":\"slow\",\"ms\":300,\"count\":1}");
  int64_t id = enqueue(fx, "c-m", CARD_A); /* in flight, slow */
  assert_int_equal(cg__outbox_enqueue(fx->ob, "lark", NULL, "om_1", "c-m", cg_now_ms() + 1800000, CARD_B), 0);
  assert_int_equal(cg__outbox_enqueue(fx->ob, "lark", NULL, "om_1", "c-m", cg_now_ms() + 1800000, CARD_C), 0);
  wait_state(fx, id, "delivered", 5000);
  assert_int_equal(newest_id(fx), id); /* one entry */
  cg_outbox_entry e;
  entry(fx, id, &e);
  assert_string_equal(e.card_json, CARD_C);
  assert_int_equal(e.revision, 3);
  assert_int_equal(e.token_uses, 2);
  cg_outbox_entry_clear(&e);
  /* A then C: two token uses, no patch */
  assert_int_equal(fake_route(ROUTE_TOKEN), 2);
  assert_int_equal(fake_route(ROUTE_PATCH), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_late_reply_delivered_once, setup, teardown),
      cmocka_unit_test_setup_teardown(test_followups_budget, setup, teardown),
      cmocka_unit_test_setup_teardown(test_recovers_after_5xx, setup, teardown),
      cmocka_unit_test_setup_teardown(test_rate_limited, setup, teardown),
      cmocka_unit_test_setup_teardown(test_dead, setup, teardown),
      cmocka_unit_test_setup_teardown(test_token_refused_falls_back, setup, teardown),
      cmocka_unit_test_setup_teardown(test_survives_restart, setup, teardown),
      cmocka_unit_test_setup_teardown(test_merge_before_delivery, setup, teardown),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
