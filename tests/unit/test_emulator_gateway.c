/* The emulator's gateways on one loop with the ws.h client: upgrade refusals
 * (Lark 514 + Handshake-* headers for a bad ticket, DingTalk 401), unknown
 * paths, and a clean close. The full protocol paths (bootstrap, ping/pong,
 * pushes, ACKs, fragments, card API) are covered by the interop tests
 * against the official Node SDKs (tests/interop/lark_ws.test.mjs,
 * dingtalk_stream.test.mjs). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "cardgate/error.h"
#include "emulator/emulator.h"
#include "lib/net/ws.h"

typedef struct result {
  int done, rc, status;
  char hs_status[16], autherr[32];
} result;

static void on_msg(cg__ws *ws, int binary, const uint8_t *d, size_t n, void *ud) {
  (void)ws; (void)binary; (void)d; (void)n; (void)ud;
}
static void on_close(cg__ws *ws, int rc, const cg__ws_close_info *info, void *ud) {
  (void)ws;
  result *r = ud;
  r->done = 1;
  r->rc = rc;
  r->status = info->http_status;
  snprintf(r->hs_status, sizeof(r->hs_status), "%s", info->handshake_status);
  snprintf(r->autherr, sizeof(r->autherr), "%s", info->handshake_autherrcode);
}

static void try_upgrade(uv_loop_t *loop, int port, const char *path, result *r) {
  char url[256];
  snprintf(url, sizeof(url), "ws://127.0.0.1:%d%s", port, path);
  cg__ws_client_options o = {.url = url};
  cg__ws_callbacks cbs = {.on_message = on_msg, .on_close = on_close};
  cg__ws *ws = NULL;
  memset(r, 0, sizeof(*r));
  assert_int_equal(cg__ws_connect(loop, &o, &cbs, r, &ws), 0);
  while (!r->done) uv_run(loop, UV_RUN_ONCE);
}

static void closed(void *ud) { *(int *)ud = 1; }

static void test_refusals(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  cg__emu_options o;
  cg__emu_options_init(&o);
  int err = 0;
  cg__emu *e = cg__emu_new(&loop, &o, &err);
  assert_non_null(e);
  assert_int_equal(cg__emu_listen(e), 0);
  int port = cg__emu_ws_port(e);
  assert_true(port > 0);
  result r;
  try_upgrade(&loop, port, "/ws/v2?fpid=1&ticket=bogus", &r);
  assert_int_equal(r.rc, CG_EAUTH);
  assert_int_equal(r.status, 514);
  assert_string_equal(r.hs_status, "514");
  assert_string_equal(r.autherr, "1000040351");
  try_upgrade(&loop, port, "/connect?ticket=bogus", &r);
  assert_int_equal(r.rc, CG_EAUTH);
  assert_int_equal(r.status, 401);
  try_upgrade(&loop, port, "/elsewhere", &r);
  assert_int_equal(r.status, 404);
  int done = 0;
  cg__emu_close(e, closed, &done);
  while (!done) uv_run(&loop, UV_RUN_ONCE);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_refusals)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
