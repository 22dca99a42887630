/* The emulator (src/emulator/): the card-update token rules as a table, and
 * the Open API rules over real HTTP with the emulator on a loop thread and
 * libcurl (easy) as the client. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
/* cmocka needs the standard headers above */
#include <cmocka.h>
#include <curl/curl.h>
#include <jansson.h>
#include <pthread.h>
#include <uv.h>

#include "emulator/emulator.h"

/* ---- the rules, pure ----------------------------------------------------- */

static void test_verdicts(void **st) {
  (void)st;
  const int64_t t0 = 1700000000000;
  struct {
    cg__emu_card_token t;
    int64_t now;
    cg__emu_token_verdict want;
    int code;
  } rows[] = {
      {{0, 0, 0, 0}, t0, CG__EMU_TOKEN_UNKNOWN, 300030},
      {{1, 1, t0, 0}, t0 + 1000, CG__EMU_TOKEN_OK, 0},
      {{1, 1, t0, 1}, t0 + 1000, CG__EMU_TOKEN_OK, 0},
      {{1, 1, t0, 2}, t0 + 1000, CG__EMU_TOKEN_USED_UP, 300030},
      {{1, 0, t0, 0}, t0 + 1000, CG__EMU_TOKEN_EARLY, 300040},
      {{1, 1, t0, 0}, t0 + 1800 * 1000, CG__EMU_TOKEN_OK, 0},
      {{1, 1, t0, 0}, t0 + 1800 * 1000 + 1, CG__EMU_TOKEN_EXPIRED, 300030},
      /* expiry is checked before "early" and "used up" */
      {{1, 0, t0, 5}, t0 + 3600 * 1000, CG__EMU_TOKEN_EXPIRED, 300030},
  };
  for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
    cg__emu_token_verdict v =
        cg__emu_check_card_token(&rows[i].t, rows[i].now, 1800, 2);
    assert_int_equal(v, rows[i].want);
    assert_int_equal(cg__emu_verdict_code(v), rows[i].code);
  }
  assert_int_equal(cg__emu_check_card_token(NULL, t0, 1800, 2),
                   CG__EMU_TOKEN_UNKNOWN);
  assert_string_equal(cg__emu_verdict_name(CG__EMU_TOKEN_EARLY), "early");
}

/* ---- over HTTP ------------------------------------------------------------ */

typedef struct fixture {
  uv_loop_t loop;
  uv_async_t stop;
  cg__emu *emu;
  pthread_t th;
  char base[64];
} fixture;

static void on_stop(uv_async_t *a) {
  fixture *f = a->data;
  cg__emu_close(f->emu, NULL, NULL);
  uv_close((uv_handle_t *)a, NULL);
}

static void *loop_main(void *ud) {
  fixture *f = ud;
  uv_run(&f->loop, UV_RUN_DEFAULT);
  return NULL;
}

typedef struct body {
  char buf[65536];
  size_t len;
} body;

static size_t on_data(char *p, size_t sz, size_t n, void *ud) {
  body *b = ud;
  size_t add = sz * n;
  if (b->len + add >= sizeof(b->buf)) return 0;
  memcpy(b->buf + b->len, p, add);
  b->len += add;
  b->buf[b->len] = '\0';
  return add;
}

/* → parsed JSON answer (caller decrefs); *status the HTTP status. */
static json_t *req(fixture *f, const char *method, const char *path,
                   const char *token, const char *json, long *status) {
  char url[256], auth[256];
  snprintf(url, sizeof(url), "%s%s", f->base, path);
  CURL *c = curl_easy_init();
  body b = {.len = 0};
  struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
  if (token) {
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
    h = curl_slist_append(h, auth);
  }
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
  if (json) curl_easy_setopt(c, CURLOPT_POSTFIELDS, json);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 5000L);
  assert_int_equal(curl_easy_perform(c), CURLE_OK);
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
  curl_slist_free_all(h);
  curl_easy_cleanup(c);
  json_t *j = json_loads(b.buf, 0, NULL);
  assert_non_null(j);
  return j;
}

static int code_of(json_t *j) {
  int c = (int)json_integer_value(json_object_get(j, "code"));
  json_decref(j);
  return c;
}

static int setup(void **st) {
  fixture *f = calloc(1, sizeof(*f));
  cg__emu_options o;
  int err = 0;
  uv_loop_init(&f->loop);
  cg__emu_options_init(&o);
  o.app_id = "cli_u";
  o.app_secret = "s_u";
  f->emu = cg__emu_new(&f->loop, &o, &err);
  assert_non_null(f->emu);
  assert_int_equal(cg__emu_listen(f->emu), 0);
  snprintf(f->base, sizeof(f->base), "http://127.0.0.1:%d",
           cg__emu_port(f->emu));
  uv_async_init(&f->loop, &f->stop, on_stop);
  f->stop.data = f;
  pthread_create(&f->th, NULL, loop_main, f);
  *st = f;
  return 0;
}

static int teardown(void **st) {
  fixture *f = *st;
  uv_async_send(&f->stop);
  pthread_join(f->th, NULL);
  assert_int_equal(uv_loop_close(&f->loop), 0);
  free(f);
  return 0;
}

static void test_open_api_rules(void **st) {
  fixture *f = *st;
  long status = 0;
  const char *tp = "/open-apis/auth/v3/tenant_access_token/internal";
  /* wrong secret: HTTP 200 + 10014 (lark.md §9.3) */
  assert_int_equal(code_of(req(f, "POST", tp, NULL,
                               "{\"app_id\":\"cli_u\",\"app_secret\":\"x\"}",
                               &status)), 10014);
  assert_int_equal(status, 200);
  json_t *t = req(f, "POST", tp, NULL,
                  "{\"app_id\":\"cli_u\",\"app_secret\":\"s_u\"}", &status);
  char tok[128];
  snprintf(tok, sizeof(tok), "%s",
           json_string_value(json_object_get(t, "tenant_access_token")));
  assert_int_equal(json_integer_value(json_object_get(t, "expire")), 7200);
  json_decref(t);
  /* the same token while ≥ 30 min are left (§4.1) */
  t = req(f, "POST", tp, NULL, "{\"app_id\":\"cli_u\",\"app_secret\":\"s_u\"}",
          &status);
  assert_string_equal(tok, json_string_value(
                               json_object_get(t, "tenant_access_token")));
  json_decref(t);

  const char *send = "{\"receive_id\":\"ou_1\",\"msg_type\":\"interactive\","
                     "\"content\":\"{\\\"elements\\\":[]}\"}";
  /* no / bad token → 99991663 HTTP 400 */
  assert_int_equal(code_of(req(f, "POST", "/open-apis/im/v1/messages?receive_id_type=open_id",
                               NULL, send, &status)), 99991663);
  assert_int_equal(status, 400);
  assert_int_equal(code_of(req(f, "POST", "/open-apis/im/v1/messages?receive_id_type=open_id",
                               "t-nope", send, &status)), 99991663);
  /* missing receive_id_type → 99992402 */
  assert_int_equal(code_of(req(f, "POST", "/open-apis/im/v1/messages", tok,
                               send, &status)), 99992402);
  /* content not a card string → 230001 */
  assert_int_equal(code_of(req(f, "POST", "/open-apis/im/v1/messages?receive_id_type=open_id",
                               tok, "{\"receive_id\":\"ou_1\",\"msg_type\":\"interactive\",\"content\":{}}",
                               &status)), 230001);
  t = req(f, "POST", "/open-apis/im/v1/messages?receive_id_type=open_id", tok,
          send, &status);
  assert_int_equal(json_integer_value(json_object_get(t, "code")), 0);
  char path[256];
  snprintf(path, sizeof(path), "/open-apis/im/v1/messages/%s",
           json_string_value(json_object_get(
               json_object_get(t, "data"), "message_id")));
  json_decref(t);
  /* PATCH of a card without update_multi → 230001; unknown message → 230001 */
  const char *patch = "{\"content\":\"{\\\"config\\\":{\\\"update_multi\\\":true}}\"}";
  assert_int_equal(code_of(req(f, "PATCH", path, tok, patch, &status)), 230001);
  assert_int_equal(code_of(req(f, "PATCH", "/open-apis/im/v1/messages/om_none",
                               tok, patch, &status)), 230001);
  /* card/update: malformed → 300020; never issued → 300030 */
  assert_int_equal(code_of(req(f, "POST", "/open-apis/interactive/v1/card/update",
                               tok, "{\"token\":\"c-x\"}", &status)), 300020);
  assert_int_equal(code_of(req(f, "POST", "/open-apis/interactive/v1/card/update",
                               tok, "{\"token\":\"c-x\",\"card\":{}}", &status)), 300030);
  /* revoke → the token stops working */
  json_decref(req(f, "POST", "/emulator/fault", NULL,
                  "{\"on\":\"api\",\"mode\":\"revoke\"}", &status));
  assert_int_equal(code_of(req(f, "PATCH", path, tok, patch, &status)), 99991663);
  /* a 500 fault on the token endpoint, once */
  json_decref(req(f, "POST", "/emulator/fault", NULL,
                  "{\"on\":\"token\",\"mode\":500,\"count\":1}", &status));
  json_decref(req(f, "POST", tp, NULL, "{}", &status));
  assert_int_equal(status, 500);
  assert_int_equal(code_of(req(f, "POST", tp, NULL,
                               "{\"app_id\":\"cli_u\",\"app_secret\":\"s_u\"}",
                               &status)), 0);
  /* the state records the calls */
  t = req(f, "GET", "/emulator/state", NULL, NULL, &status);
  assert_true(json_array_size(json_object_get(t, "calls")) >= 12);
  assert_int_equal(json_object_size(json_object_get(t, "messages")), 1);
  json_decref(t);
}

int main(void) {
  curl_global_init(CURL_GLOBAL_DEFAULT);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_verdicts),
      cmocka_unit_test_setup_teardown(test_open_api_rules, setup, teardown),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  curl_global_cleanup();
  return rc;
}
