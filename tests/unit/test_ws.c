/* The WebSocket client and server (src/lib/net/ws.c) against each other on
 * one loop, against raw TCP peers that misbehave, and (wss://) against a
 * Node fake built on the `ws` package (tests/unit/fake_wss.mjs). */
// clang-format off
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
// clang-format on

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "cardgate/error.h"
#include "common/common.h"
#include "lib/net/ws.h"
#include "support/fake_process.h"

/* ------------------------------------------------------------- fixture */

/* One end of a connection, as its callbacks saw it. */
typedef struct side {
  cg__ws *ws;
  int opened;
  int closed; /* on_close calls */
  int rc;
  uint16_t close_code;
  char reason[256];
  int http_status;
  char hs_status[128], hs_msg[128], hs_auth[128];
  char body[4200];
  int nmsg;
  int last_binary;
  uint8_t *last;
  size_t last_len;
  int npong;
  char pong[128];
  /* behaviour */
  int echo;
  int close_on_msg;
  int abort_on_msg;
  int send_after_close; /* cg__ws_send right after cg__ws_close (EALREADY) */
  int send_rc;
} side;

typedef struct fx {
  uv_loop_t loop;
  uv_timer_t tick;
  cg__ws_server *srv;
  side srv_side; /* the server's (single) accepted connection */
  side cli;
  int accept_calls;
  int refuse_status; /* 0: accept */
  char last_path[256], last_query[256];
  int server_closed;
} fx;

static void on_tick(uv_timer_t *t) {
  CG_UNUSED(t);
}

static void run_until(fx *f, const int *flag, int want, uint64_t ms) {
  uint64_t end = uv_now(&f->loop) + ms;
  while (*flag < want && uv_now(&f->loop) < end) uv_run(&f->loop, UV_RUN_ONCE);
}

static void run_for(fx *f, uint64_t ms) {
  uint64_t end = uv_now(&f->loop) + ms;
  while (uv_now(&f->loop) < end) uv_run(&f->loop, UV_RUN_ONCE);
}

static void s_open(cg__ws *ws, void *ud) {
  side *s = ud;
  s->ws = ws;
  s->opened++;
}

static void s_message(cg__ws *ws, int binary, const uint8_t *data, size_t len,
                      void *ud) {
  side *s = ud;
  s->nmsg++;
  s->last_binary = binary;
  free(s->last);
  s->last = malloc(len + 1);
  assert_non_null(s->last);
  if (len) memcpy(s->last, data, len);
  s->last_len = len;
  if (s->echo) assert_int_equal(cg__ws_send(ws, binary, data, len), 0);
  if (s->close_on_msg) {
    cg__ws_close(ws, 4001, "from on_message");
    if (s->send_after_close) s->send_rc = cg__ws_send(ws, 0, "x", 1);
  }
  if (s->abort_on_msg) cg__ws_abort(ws);
}

static void s_pong(cg__ws *ws, const uint8_t *data, size_t len, void *ud) {
  side *s = ud;
  CG_UNUSED(ws);
  s->npong++;
  cg_fmt(s->pong, sizeof(s->pong), "%.*s", (int)len, (const char *)data);
}

static void s_close(cg__ws *ws, int rc, const cg__ws_close_info *info,
                    void *ud) {
  side *s = ud;
  CG_UNUSED(ws);
  s->closed++;
  s->rc = rc;
  s->close_code = info->close_code;
  cg_strlcpy(s->reason, info->reason, sizeof(s->reason));
  s->http_status = info->http_status;
  cg_strlcpy(s->hs_status, info->handshake_status, sizeof(s->hs_status));
  cg_strlcpy(s->hs_msg, info->handshake_msg, sizeof(s->hs_msg));
  cg_strlcpy(s->hs_auth, info->handshake_autherrcode, sizeof(s->hs_auth));
  cg_strlcpy(s->body, info->body, sizeof(s->body));
  s->ws = NULL;
}

static const cg__ws_callbacks side_cbs = {s_open, s_message, s_pong, s_close};

static int on_accept(cg__ws_server *s, const cg__ws_request *req,
                     cg__ws_callbacks *cbs, void **conn_ud,
                     char *refuse_headers, char *refuse_body, void *ud) {
  fx *f = ud;
  CG_UNUSED(s);
  f->accept_calls++;
  cg_strlcpy(f->last_path, req->path, sizeof(f->last_path));
  cg_strlcpy(f->last_query, req->query, sizeof(f->last_query));
  assert_true(strncmp(req->peer, "127.0.0.1:", 10) == 0);
  if (f->refuse_status) {
    cg_strlcpy(refuse_headers,
               "Handshake-Status: 514\r\nHandshake-Msg: app not found\r\n"
               "handshake-autherrcode: 1000040350",
               1024);
    cg_strlcpy(refuse_body, "{\"code\":1000040350,\"msg\":\"denied\"}", 1024);
    return f->refuse_status;
  }
  *cbs = side_cbs;
  *conn_ud = &f->srv_side;
  return 101;
}

static int start_server(fx *f, size_t max_message, uint32_t max_conns) {
  cg__ws_server_options o = {.host = "127.0.0.1",
                             .port = 0,
                             .max_message = max_message,
                             .max_connections = max_conns};
  return cg__ws_server_new(&f->loop, &o, on_accept, f, &f->srv);
}

static int setup(void **state) {
  fx *f = calloc(1, sizeof(*f));
  assert_non_null(f);
  assert_int_equal(uv_loop_init(&f->loop), 0);
  /* A tick so UV_RUN_ONCE never blocks for long. */
  uv_timer_init(&f->loop, &f->tick);
  uv_timer_start(&f->tick, on_tick, 5, 5);
  assert_int_equal(start_server(f, 0, 0), 0);
  *state = f;
  return 0;
}

static void on_server_closed(void *ud) {
  ((fx *)ud)->server_closed++;
}

static void walk_leftover(uv_handle_t *h, void *arg) {
  CG_UNUSED(arg);
  fprintf(stderr, "leftover handle type %d\n", (int)h->type);
}

static int teardown(void **state) {
  fx *f = *state;
  if (f->cli.ws) cg__ws_abort(f->cli.ws);
  if (f->srv) cg__ws_server_close(f->srv, on_server_closed, f);
  uv_close((uv_handle_t *)&f->tick, NULL);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  if (f->srv) assert_int_equal(f->server_closed, 1);
  if (uv_loop_close(&f->loop) != 0) {
    uv_walk(&f->loop, walk_leftover, NULL);
    fail_msg("handles left open on the loop");
  }
  free(f->cli.last);
  free(f->srv_side.last);
  free(f);
  return 0;
}

static int connect_url(fx *f, const char *url, const char *ca,
                       uint32_t timeout_ms, size_t max_message) {
  cg__ws_client_options o = {.url = url,
                             .ca_file = ca,
                             .connect_timeout_ms = timeout_ms,
                             .max_message = max_message,
                             .headers = NULL};
  return cg__ws_connect(&f->loop, &o, &side_cbs, &f->cli, &f->cli.ws);
}

/* Client to our own server, open on both ends. */
static void connect_own(fx *f, size_t max_message) {
  char url[128];
  static const char *const hdrs[] = {"X-Test: yes", NULL};
  cg_fmt(url, sizeof(url), "ws://127.0.0.1:%d/ws/path?a=1&b=2",
         cg__ws_server_port(f->srv));
  cg__ws_client_options o = {
      .url = url, .max_message = max_message, .headers = hdrs};
  assert_int_equal(cg__ws_connect(&f->loop, &o, &side_cbs, &f->cli, &f->cli.ws),
                   0);
  /* Nothing can be sent before the upgrade. */
  assert_int_equal(cg__ws_send(f->cli.ws, 0, "x", 1), CG_EALREADY);
  run_until(f, &f->cli.opened, 1, 3000);
  run_until(f, &f->srv_side.opened, 1, 3000);
  assert_int_equal(f->cli.opened, 1);
  assert_int_equal(f->srv_side.opened, 1);
  assert_string_equal(f->last_path, "/ws/path");
  assert_string_equal(f->last_query, "a=1&b=2");
  assert_int_equal(cg__ws_server_connections(f->srv), 1);
  assert_true(strncmp(cg__ws_peer(f->cli.ws), "127.0.0.1:", 10) == 0);
}

/* ------------------------------------------------------ own client/server */

static void test_echo_and_close(void **state) {
  fx *f = *state;
  connect_own(f, 0);
  f->srv_side.echo = 1;

  assert_int_equal(cg__ws_send(f->cli.ws, 0, "héllo", strlen("héllo")), 0);
  run_until(f, &f->cli.nmsg, 1, 2000);
  assert_int_equal(f->cli.last_binary, 0);
  assert_int_equal(f->cli.last_len, strlen("héllo"));
  assert_memory_equal(f->cli.last, "héllo", f->cli.last_len);

  assert_int_equal(cg__ws_send(f->cli.ws, 1, "", 0), 0);
  run_until(f, &f->cli.nmsg, 2, 2000);
  assert_int_equal(f->cli.last_binary, 1);
  assert_int_equal(f->cli.last_len, 0);
  assert_int_equal(cg__ws_send(f->cli.ws, 0, "", 0), 0);
  run_until(f, &f->cli.nmsg, 3, 2000);
  assert_int_equal(f->cli.last_binary, 0);
  assert_int_equal(f->cli.last_len, 0);

  /* 200 KiB: sent as many frames by both ends, reassembled by both. */
  size_t big = 200 * 1024;
  uint8_t *b = malloc(big);
  assert_non_null(b);
  for (size_t i = 0; i < big; i++) b[i] = (uint8_t)(i * 31 + 7);
  assert_int_equal(cg__ws_send(f->cli.ws, 1, b, big), 0);
  assert_true(cg__ws_queued(f->cli.ws) > 0);
  run_until(f, &f->cli.nmsg, 4, 5000);
  assert_int_equal(f->cli.nmsg, 4);
  assert_int_equal(f->cli.last_len, big);
  assert_memory_equal(f->cli.last, b, big);
  free(b);

  /* Client-initiated close: both ends rc 0, the code seen by both. */
  cg__ws_close(f->cli.ws, 1000, "bye");
  cg__ws_close(f->cli.ws, 1000, "again"); /* idempotent */
  assert_int_equal(cg__ws_send(f->cli.ws, 0, "x", 1), CG_EALREADY);
  assert_int_equal(f->cli.closed, 0); /* never inside cg__ws_close */
  run_until(f, &f->cli.closed, 1, 3000);
  run_until(f, &f->srv_side.closed, 1, 3000);
  assert_int_equal(f->cli.closed, 1);
  assert_int_equal(f->cli.rc, 0);
  assert_int_equal(f->cli.close_code, 1000);
  assert_int_equal(f->srv_side.closed, 1);
  assert_int_equal(f->srv_side.rc, 0);
  assert_int_equal(f->srv_side.close_code, 1000);
  assert_string_equal(f->srv_side.reason, "bye");
  assert_int_equal(cg__ws_server_connections(f->srv), 0);
}

/* The peer never reads: our close frame is not answered within 2 s. */
static void test_close_cap(void **state) {
  fx *f = *state;
  connect_own(f, 0);
  cg__ws_pause(f->srv_side.ws, 1);
  uint64_t t0 = uv_now(&f->loop);
  cg__ws_close(f->cli.ws, 1001, "going");
  run_until(f, &f->cli.closed, 1, 4000);
  assert_int_equal(f->cli.closed, 1);
  assert_int_equal(f->cli.rc, CG_ETIMEDOUT);
  assert_true(uv_now(&f->loop) - t0 >= 1900);
  run_until(f, &f->srv_side.closed, 1, 2000);
}

/* A peer that does not read: sends fill the queue up to the high-water
 * mark, then CG_EBUSY; messages over the hard cap are refused outright. */
static void test_high_water(void **state) {
  fx *f = *state;
  connect_own(f, 0);
  cg__ws_pause(f->srv_side.ws, 1);
  static uint8_t chunk[64 * 1024];
  int rc = 0, n = 0;
  while (n < 2000 &&
         (rc = cg__ws_send(f->cli.ws, 1, chunk, sizeof(chunk))) == 0)
    n++;
  assert_int_equal(rc, CG_EBUSY);
  assert_true(cg__ws_queued(f->cli.ws) > CG__WS_SEND_HIGH_WATER / 2);
  assert_int_equal(
      cg__ws_send(f->cli.ws, 1, chunk, CG__WS_MAX_MESSAGE_HARD + 1),
      CG_ETOOBIG);
  run_for(f, 50); /* the loop drains into the kernel; still no reader */
  cg__ws_abort(f->cli.ws);
  run_until(f, &f->cli.closed, 1, 2000);
  assert_int_equal(f->cli.rc, UV_ECANCELED);
}

static void test_ping_pong(void **state) {
  fx *f = *state;
  connect_own(f, 0);
  assert_int_equal(cg__ws_ping(f->cli.ws, "abc", 3), 0);
  char long_ping[130];
  memset(long_ping, 'p', sizeof(long_ping));
  assert_int_equal(cg__ws_ping(f->cli.ws, long_ping, 126), CG_EINVAL);
  run_until(f, &f->cli.npong, 1, 2000);
  assert_int_equal(f->cli.npong, 1);
  assert_string_equal(f->cli.pong, "abc");
  /* and the other way */
  assert_int_equal(cg__ws_ping(f->srv_side.ws, "xyz", 3), 0);
  run_until(f, &f->srv_side.npong, 1, 2000);
  assert_string_equal(f->srv_side.pong, "xyz");
}

static void test_server_initiated_close(void **state) {
  fx *f = *state;
  connect_own(f, 0);
  cg__ws_close(f->srv_side.ws, 4000, "done here");
  run_until(f, &f->cli.closed, 1, 3000);
  run_until(f, &f->srv_side.closed, 1, 3000);
  assert_int_equal(f->cli.rc, 0);
  assert_int_equal(f->cli.close_code, 4000);
  assert_string_equal(f->cli.reason, "done here");
  assert_int_equal(f->srv_side.rc, 0);
  assert_int_equal(f->srv_side.close_code, 4000);
}

static void test_close_from_on_message(void **state) {
  fx *f = *state;
  connect_own(f, 0);
  f->srv_side.close_on_msg = 1;
  f->srv_side.send_after_close = 1;
  assert_int_equal(cg__ws_send(f->cli.ws, 0, "one", 3), 0);
  assert_int_equal(cg__ws_send(f->cli.ws, 0, "two", 3), 0);
  run_until(f, &f->cli.closed, 1, 3000);
  run_until(f, &f->srv_side.closed, 1, 3000);
  assert_int_equal(f->srv_side.send_rc, CG_EALREADY);
  assert_int_equal(f->srv_side.nmsg, 1); /* nothing after our close */
  assert_int_equal(f->cli.rc, 0);
  assert_int_equal(f->cli.close_code, 4001);
  assert_int_equal(f->srv_side.rc, 0);
}

static void test_abort(void **state) {
  fx *f = *state;
  connect_own(f, 0);
  cg__ws_abort(f->cli.ws);
  cg__ws_abort(f->cli.ws); /* idempotent */
  assert_int_equal(f->cli.closed, 0);
  run_until(f, &f->cli.closed, 1, 2000);
  run_until(f, &f->srv_side.closed, 1, 2000);
  assert_int_equal(f->cli.closed, 1);
  assert_int_equal(f->cli.rc, UV_ECANCELED);
  assert_int_equal(f->srv_side.closed, 1);
  assert_true(f->srv_side.rc == UV_EOF || f->srv_side.rc == UV_ECONNRESET);
}

static void test_abort_from_on_message(void **state) {
  fx *f = *state;
  connect_own(f, 0);
  f->srv_side.abort_on_msg = 1;
  /* Two messages in one read: the second must not be delivered. */
  assert_int_equal(cg__ws_send(f->cli.ws, 0, "one", 3), 0);
  assert_int_equal(cg__ws_send(f->cli.ws, 0, "two", 3), 0);
  run_until(f, &f->srv_side.closed, 1, 2000);
  run_until(f, &f->cli.closed, 1, 2000);
  assert_int_equal(f->srv_side.rc, UV_ECANCELED);
  assert_int_equal(f->srv_side.nmsg, 1);
  assert_true(f->cli.rc == UV_EOF || f->cli.rc == UV_ECONNRESET);
}

static void test_refused_upgrade(void **state) {
  fx *f = *state;
  char url[96];
  f->refuse_status = 514;
  cg_fmt(url, sizeof(url), "ws://127.0.0.1:%d/", cg__ws_server_port(f->srv));
  assert_int_equal(connect_url(f, url, NULL, 0, 0), 0);
  run_until(f, &f->cli.closed, 1, 3000);
  assert_int_equal(f->cli.closed, 1);
  assert_int_equal(f->cli.opened, 0);
  assert_int_equal(f->cli.rc, CG_EAUTH);
  assert_int_equal(f->cli.http_status, 514);
  assert_string_equal(f->cli.hs_status, "514");
  assert_string_equal(f->cli.hs_msg, "app not found");
  assert_string_equal(f->cli.hs_auth, "1000040350");
  assert_string_equal(f->cli.body, "{\"code\":1000040350,\"msg\":\"denied\"}");
  assert_int_equal(f->srv_side.opened, 0);
}

static void test_connection_refused(void **state) {
  fx *f = *state;
  char url[96];
  /* A port that was free a moment ago. */
  uv_tcp_t t;
  struct sockaddr_in a;
  int len = sizeof(a);
  uv_tcp_init(&f->loop, &t);
  uv_ip4_addr("127.0.0.1", 0, &a);
  assert_int_equal(uv_tcp_bind(&t, (const struct sockaddr *)&a, 0), 0);
  assert_int_equal(uv_tcp_getsockname(&t, (struct sockaddr *)&a, &len), 0);
  uv_close((uv_handle_t *)&t, NULL);
  run_for(f, 10);
  cg_fmt(url, sizeof(url), "ws://127.0.0.1:%d/", ntohs(a.sin_port));
  assert_int_equal(connect_url(f, url, NULL, 0, 0), 0);
  run_until(f, &f->cli.closed, 1, 3000);
  assert_int_equal(f->cli.rc, UV_ECONNREFUSED);
}

static void on_never_accept(uv_stream_t *s, int status) {
  CG_UNUSED(s);
  CG_UNUSED(status);
}

static void test_connect_timeout(void **state) {
  fx *f = *state;
  char url[96];
  uv_tcp_t l;
  struct sockaddr_in a;
  int len = sizeof(a);
  uv_tcp_init(&f->loop, &l);
  uv_ip4_addr("127.0.0.1", 0, &a);
  assert_int_equal(uv_tcp_bind(&l, (const struct sockaddr *)&a, 0), 0);
  assert_int_equal(uv_listen((uv_stream_t *)&l, 8, on_never_accept), 0);
  assert_int_equal(uv_tcp_getsockname(&l, (struct sockaddr *)&a, &len), 0);
  cg_fmt(url, sizeof(url), "ws://127.0.0.1:%d/", ntohs(a.sin_port));
  uint64_t t0 = uv_now(&f->loop);
  assert_int_equal(connect_url(f, url, NULL, 300, 0), 0);
  run_until(f, &f->cli.closed, 1, 3000);
  assert_int_equal(f->cli.rc, CG_ETIMEDOUT);
  assert_true(uv_now(&f->loop) - t0 >= 290);
  uv_close((uv_handle_t *)&l, NULL);
  run_for(f, 20); /* l lives on this stack until its close completes */
}

static void test_too_big(void **state) {
  fx *f = *state;
  /* Server receives at most 1000 bytes; the client 64. */
  cg__ws_server_close(f->srv, on_server_closed, f);
  run_until(f, &f->server_closed, 1, 2000);
  f->server_closed = 0;
  assert_int_equal(start_server(f, 1000, 0), 0);
  connect_own(f, 64);
  char buf[2000];
  memset(buf, 'a', sizeof(buf));
  assert_int_equal(cg__ws_send(f->cli.ws, 0, buf, 1000), 0); /* fits */
  assert_int_equal(cg__ws_send(f->cli.ws, 1, buf, sizeof(buf)), 0);
  run_until(f, &f->srv_side.closed, 1, 3000);
  run_until(f, &f->cli.closed, 1, 3000);
  assert_int_equal(f->srv_side.nmsg, 1);
  assert_int_equal(f->srv_side.rc, CG_ETOOBIG);
  assert_int_equal(f->cli.rc, 0);
  assert_int_equal(f->cli.close_code, 1009);

  /* The client as the receiver. */
  memset(&f->cli, 0, sizeof(f->cli));
  free(f->srv_side.last);
  memset(&f->srv_side, 0, sizeof(f->srv_side));
  connect_own(f, 64);
  assert_int_equal(cg__ws_send(f->srv_side.ws, 0, buf, 65), 0);
  run_until(f, &f->cli.closed, 1, 3000);
  run_until(f, &f->srv_side.closed, 1, 3000);
  assert_int_equal(f->cli.rc, CG_ETOOBIG);
  assert_int_equal(f->srv_side.close_code, 1009);
}

static void test_bad_utf8(void **state) {
  fx *f = *state;
  connect_own(f, 0);
  assert_int_equal(cg__ws_send(f->cli.ws, 0, "ok \xff\xfe", 5), 0);
  run_until(f, &f->srv_side.closed, 1, 3000);
  run_until(f, &f->cli.closed, 1, 3000);
  assert_int_equal(f->srv_side.nmsg, 0);
  assert_int_equal(f->srv_side.rc, CG_EMALFORMED);
  assert_int_equal(f->cli.rc, 0);
  assert_int_equal(f->cli.close_code, 1007);
}

static void test_server_close_with_connections(void **state) {
  fx *f = *state;
  connect_own(f, 0);
  cg__ws_server_close(f->srv, on_server_closed, f);
  f->srv = NULL;
  assert_int_equal(f->server_closed, 0);
  run_until(f, &f->server_closed, 1, 3000);
  run_until(f, &f->cli.closed, 1, 3000);
  assert_int_equal(f->server_closed, 1);
  assert_int_equal(f->srv_side.closed, 1);
  assert_int_equal(f->srv_side.rc, UV_ECANCELED);
  assert_true(f->cli.rc == UV_EOF || f->cli.rc == UV_ECONNRESET);
}

static void test_pause(void **state) {
  fx *f = *state;
  connect_own(f, 0);
  cg__ws_pause(f->srv_side.ws, 1);
  assert_int_equal(cg__ws_ping(f->cli.ws, "p1", 2), 0);
  run_for(f, 300);
  assert_int_equal(f->cli.npong, 0); /* a half-open peer, as seen */
  cg__ws_pause(f->srv_side.ws, 0);
  run_until(f, &f->cli.npong, 1, 2000);
  assert_int_equal(f->cli.npong, 1);
  assert_string_equal(f->cli.pong, "p1");
}

static void test_max_connections(void **state) {
  fx *f = *state;
  cg__ws_server_close(f->srv, on_server_closed, f);
  run_until(f, &f->server_closed, 1, 2000);
  f->server_closed = 0;
  assert_int_equal(start_server(f, 0, 1), 0);
  connect_own(f, 0);
  side second;
  cg__ws *w2 = NULL;
  char url[96];
  memset(&second, 0, sizeof(second));
  cg_fmt(url, sizeof(url), "ws://127.0.0.1:%d/", cg__ws_server_port(f->srv));
  cg__ws_client_options o = {.url = url};
  assert_int_equal(cg__ws_connect(&f->loop, &o, &side_cbs, &second, &w2), 0);
  run_until(f, &second.closed, 1, 3000);
  assert_int_equal(second.rc, CG_EAUTH);
  assert_int_equal(second.http_status, 503);
  assert_int_equal(f->accept_calls, 1);
}

static void test_bad_arguments(void **state) {
  fx *f = *state;
  cg__ws *w = NULL;
  static const char *const bad[] = {
      "http://127.0.0.1/", "ws://",           "ws:///path", "ws://host:0/",
      "ws://host:65536/",  "ws://host:12ab/", "ws://[::1/", "ws://u@host/",
      "ws://host/a b",     "ws://[not-v6]/"};
  for (size_t i = 0; i < CG_ARRAY_SIZE(bad); i++) {
    cg__ws_client_options o = {.url = bad[i]};
    assert_int_equal(cg__ws_connect(&f->loop, &o, &side_cbs, NULL, &w),
                     CG_EINVAL);
  }
  cg__ws_client_options o = {.url = "ws://127.0.0.1:1/"};
  cg__ws_callbacks no_close = {NULL, s_message, NULL, NULL};
  assert_int_equal(cg__ws_connect(&f->loop, &o, &no_close, NULL, &w),
                   CG_EINVAL);
  static const char *const bad_hdr[] = {"X-Evil: a\r\nX-More: b", NULL};
  o.headers = bad_hdr;
  assert_int_equal(cg__ws_connect(&f->loop, &o, &side_cbs, NULL, &w),
                   CG_EINVAL);
  assert_null(w);
}

static void test_unresolvable(void **state) {
  fx *f = *state;
  assert_int_equal(connect_url(f, "ws://no-such-host.invalid/", NULL, 0, 0), 0);
  cg__ws_close(f->cli.ws, 1000, NULL); /* before open: ends it */
  run_until(f, &f->cli.closed, 1, 5000);
  assert_int_equal(f->cli.closed, 1);
  assert_int_equal(f->cli.rc, UV_ECANCELED);

  memset(&f->cli, 0, sizeof(f->cli));
  assert_int_equal(connect_url(f, "ws://no-such-host.invalid/", NULL, 0, 0), 0);
  run_until(f, &f->cli.closed, 1, 5000);
  assert_int_equal(f->cli.closed, 1);
  assert_true(f->cli.rc < 0 && f->cli.rc != CG_ETIMEDOUT);
}

/* ------------------------------------------------------- raw TCP peers */

typedef struct raw {
  fx *f;
  uv_tcp_t tcp;
  uv_connect_t creq;
  uv_write_t wreq;
  const char *out; /* client: sent once connected */
  size_t outlen;
  char in[16384];
  size_t inlen;
  int done;
  int mode; /* fake server: 0 bad accept, 1 good accept + a frame */
  char reply[512];
} raw;

static void raw_alloc(uv_handle_t *h, size_t sz, uv_buf_t *b) {
  raw *r = h->data;
  CG_UNUSED(sz);
  b->base = r->in + r->inlen;
  b->len = sizeof(r->in) - r->inlen - 1;
}

static void raw_closed(uv_handle_t *h) {
  raw *r = h->data;
  r->done = 1;
}

static void raw_written(uv_write_t *w, int status) {
  CG_UNUSED(w);
  CG_UNUSED(status);
}

static void raw_client_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  raw *r = s->data;
  CG_UNUSED(b);
  if (n > 0) {
    r->inlen += (size_t)n;
    r->in[r->inlen] = '\0';
  } else if (n < 0) {
    uv_close((uv_handle_t *)&r->tcp, raw_closed);
  }
}

static void raw_connected(uv_connect_t *c, int status) {
  raw *r = c->data;
  assert_int_equal(status, 0);
  uv_buf_t b = uv_buf_init((char *)r->out, (unsigned)r->outlen);
  uv_write(&r->wreq, (uv_stream_t *)&r->tcp, &b, 1, raw_written);
  uv_read_start((uv_stream_t *)&r->tcp, raw_alloc, raw_client_read);
}

/* Sends bytes to our server and collects its answer until it closes. */
static void raw_exchange(fx *f, const char *out, raw *r) {
  struct sockaddr_in a;
  memset(r, 0, sizeof(*r));
  r->out = out;
  r->outlen = strlen(out);
  uv_tcp_init(&f->loop, &r->tcp);
  r->tcp.data = r;
  r->creq.data = r;
  uv_ip4_addr("127.0.0.1", cg__ws_server_port(f->srv), &a);
  assert_int_equal(uv_tcp_connect(&r->creq, &r->tcp,
                                  (const struct sockaddr *)&a, raw_connected),
                   0);
  run_until(f, &r->done, 1, 5000);
  assert_int_equal(r->done, 1);
}

static void test_server_rejects_bad_requests(void **state) {
  fx *f = *state;
  static const char *const reqs[] = {
      "garbage\r\n\r\n",
      "POST / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: "
      "Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
      "Sec-WebSocket-Version: 13\r\nContent-Length: 0\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: "
      "Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: "
      "Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
      "Sec-WebSocket-Version: 8\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
  };
  raw r;
  for (size_t i = 0; i < CG_ARRAY_SIZE(reqs); i++) {
    raw_exchange(f, reqs[i], &r);
    assert_true(strncmp(r.in, "HTTP/1.1 400 ", 13) == 0);
  }
  assert_int_equal(f->accept_calls, 0);
  /* The RFC 6455 §1.3 sample key, accepted, gives the sample answer. */
  raw_exchange(f,
               "GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
               "Connection: keep-alive, Upgrade\r\n"
               "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
               "Sec-WebSocket-Version: 13\r\n\r\n"
               "\x88\x82\x01\x02\x03\x04\x02\xea", /* masked close 1000 */
               &r);
  assert_int_equal(f->accept_calls, 1);
  assert_true(strncmp(r.in, "HTTP/1.1 101 ", 13) == 0);
  assert_non_null(
      strstr(r.in, "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
  run_until(f, &f->srv_side.closed, 1, 2000);
  assert_int_equal(f->srv_side.rc, 0);
  assert_int_equal(f->srv_side.close_code, 1000);
}

static void raw_server_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  raw *r = s->data;
  CG_UNUSED(b);
  if (n < 0) {
    uv_close((uv_handle_t *)&r->tcp, raw_closed);
    return;
  }
  r->inlen += (size_t)n;
  r->in[r->inlen] = '\0';
  if (!strstr(r->in, "\r\n\r\n")) return;
  const char *k = strstr(r->in, "Sec-WebSocket-Key: ");
  assert_non_null(k);
  char key[64], acc[64];
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int mdlen;
  cg_fmt(key, sizeof(key), "%.24s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", k + 19);
  EVP_Digest(key, strlen(key), md, &mdlen, EVP_sha1(), NULL);
  EVP_EncodeBlock((unsigned char *)acc, md, (int)mdlen);
  if (r->mode == 0) acc[3] ^= 1; /* a wrong answer */
  int len = snprintf(r->reply, sizeof(r->reply),
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket"
                     "\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n"
                     "\r\n\x81\x02hi",
                     acc);
  uv_buf_t out = uv_buf_init(r->reply, (unsigned)len);
  uv_write(&r->wreq, s, &out, 1, raw_written);
}

static void raw_on_conn(uv_stream_t *l, int status) {
  raw *r = l->data;
  assert_int_equal(status, 0);
  uv_tcp_init(l->loop, &r->tcp);
  r->tcp.data = r;
  assert_int_equal(uv_accept(l, (uv_stream_t *)&r->tcp), 0);
  uv_read_start((uv_stream_t *)&r->tcp, raw_alloc, raw_server_read);
}

static void raw_fake_server(fx *f, int mode) {
  uv_tcp_t l;
  raw r;
  struct sockaddr_in a;
  int len = sizeof(a);
  char url[96];
  memset(&r, 0, sizeof(r));
  r.mode = mode;
  uv_tcp_init(&f->loop, &l);
  l.data = &r;
  uv_ip4_addr("127.0.0.1", 0, &a);
  assert_int_equal(uv_tcp_bind(&l, (const struct sockaddr *)&a, 0), 0);
  assert_int_equal(uv_listen((uv_stream_t *)&l, 8, raw_on_conn), 0);
  assert_int_equal(uv_tcp_getsockname(&l, (struct sockaddr *)&a, &len), 0);
  cg_fmt(url, sizeof(url), "ws://127.0.0.1:%d/", ntohs(a.sin_port));
  assert_int_equal(connect_url(f, url, NULL, 2000, 0), 0);
  if (mode == 0) {
    run_until(f, &f->cli.closed, 1, 3000);
    assert_int_equal(f->cli.rc, CG_EMALFORMED);
    assert_int_equal(f->cli.opened, 0);
  } else {
    /* The frame came in the same segment as the 101 head. */
    run_until(f, &f->cli.nmsg, 1, 3000);
    assert_int_equal(f->cli.nmsg, 1);
    assert_memory_equal(f->cli.last, "hi", 2);
    cg__ws_abort(f->cli.ws);
    run_until(f, &f->cli.closed, 1, 3000);
  }
  run_until(f, &r.done, 1, 3000);
  if (!r.done) uv_close((uv_handle_t *)&r.tcp, raw_closed);
  uv_close((uv_handle_t *)&l, NULL);
  run_until(f, &r.done, 1, 1000);
  run_for(f, 20);
}

static void test_bad_accept_from_fake(void **state) {
  raw_fake_server(*state, 0);
}

static void test_frames_after_101_in_one_read(void **state) {
  raw_fake_server(*state, 1);
}

/* -------------------------------------------------------------- wss:// */

static char g_tmp[256];
static cg_test_fake g_wss, g_wss_wrong;
static int g_have_wss;

static int make_cert(const char *name, const char *san) {
  char cmd[1024];
  cg_fmt(cmd, sizeof(cmd),
         "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 "
         "-nodes -days 2 -subj /CN=%s -addext subjectAltName=%s "
         "-keyout %s/%s.key -out %s/%s.pem >/dev/null 2>&1",
         name, san, g_tmp, name, g_tmp, name);
  return system(cmd);
}

static int start_wss(cg_test_fake *fake, const char *name) {
  char cert[300], key[300];
  cg_fmt(cert, sizeof(cert), "%s/%s.pem", g_tmp, name);
  cg_fmt(key, sizeof(key), "%s/%s.key", g_tmp, name);
  setenv("CG_WSS_CERT", cert, 1);
  setenv("CG_WSS_KEY", key, 1);
  return cg_test_fake_start(fake, "fake_wss.mjs");
}

static int group_setup(void **state) {
  CG_UNUSED(state);
  cg_test_unset_proxies();
  cg_strlcpy(g_tmp, "/tmp/cg_test_ws_XXXXXX", sizeof(g_tmp));
  if (!mkdtemp(g_tmp)) return -1;
  if (make_cert("localhost", "DNS:localhost,IP:127.0.0.1") != 0 ||
      make_cert("wrong", "DNS:wrong.example") != 0) {
    fprintf(stderr, "openssl could not make test certificates\n");
    return -1;
  }
  if (start_wss(&g_wss, "localhost") != 0 ||
      start_wss(&g_wss_wrong, "wrong") != 0) {
    fprintf(stderr, "could not start the Node wss fake\n");
    return -1;
  }
  g_have_wss = 1;
  return 0;
}

static int group_teardown(void **state) {
  char cmd[300];
  CG_UNUSED(state);
  cg_test_fake_stop(&g_wss);
  cg_test_fake_stop(&g_wss_wrong);
  cg_fmt(cmd, sizeof(cmd), "rm -rf %s", g_tmp);
  if (g_tmp[0]) (void)system(cmd);
  return 0;
}

static void test_wss_echo(void **state) {
  fx *f = *state;
  char url[96], ca[300];
  cg_fmt(url, sizeof(url), "wss://127.0.0.1:%d/echo", g_wss.port);
  cg_fmt(ca, sizeof(ca), "%s/localhost.pem", g_tmp);
  assert_int_equal(connect_url(f, url, ca, 5000, 0), 0);
  run_until(f, &f->cli.opened, 1, 5000);
  assert_int_equal(f->cli.opened, 1);
  assert_int_equal(cg__ws_send(f->cli.ws, 0, "over tls", 8), 0);
  run_until(f, &f->cli.nmsg, 1, 3000);
  assert_int_equal(f->cli.last_binary, 0);
  assert_memory_equal(f->cli.last, "over tls", 8);
  size_t big = 150 * 1024;
  uint8_t *b = malloc(big);
  assert_non_null(b);
  for (size_t i = 0; i < big; i++) b[i] = (uint8_t)(i * 13);
  assert_int_equal(cg__ws_send(f->cli.ws, 1, b, big), 0);
  run_until(f, &f->cli.nmsg, 2, 5000);
  assert_int_equal(f->cli.last_len, big);
  assert_memory_equal(f->cli.last, b, big);
  free(b);
  /* by name too (SNI + name check) */
  cg__ws_close(f->cli.ws, 1000, "bye");
  run_until(f, &f->cli.closed, 1, 3000);
  assert_int_equal(f->cli.rc, 0);
  assert_int_equal(f->cli.close_code, 1000);

  free(f->cli.last);
  memset(&f->cli, 0, sizeof(f->cli));
  cg_fmt(url, sizeof(url), "wss://localhost:%d/", g_wss.port);
  assert_int_equal(connect_url(f, url, ca, 5000, 0), 0);
  run_until(f, &f->cli.opened, 1, 5000);
  assert_int_equal(f->cli.opened, 1);
  cg__ws_close(f->cli.ws, 1000, NULL);
  run_until(f, &f->cli.closed, 1, 3000);
  assert_int_equal(f->cli.rc, 0);
}

static void test_wss_unknown_ca(void **state) {
  fx *f = *state;
  char url[96];
  cg_fmt(url, sizeof(url), "wss://127.0.0.1:%d/", g_wss.port);
  assert_int_equal(connect_url(f, url, NULL, 5000, 0), 0);
  run_until(f, &f->cli.closed, 1, 5000);
  assert_int_equal(f->cli.rc, CG_EAUTH);
  assert_int_equal(f->cli.http_status, 0);
  assert_non_null(strstr(f->cli.reason, "verify"));
}

static void test_wss_wrong_host(void **state) {
  fx *f = *state;
  char url[96], ca[300];
  cg_fmt(url, sizeof(url), "wss://localhost:%d/", g_wss_wrong.port);
  cg_fmt(ca, sizeof(ca), "%s/wrong.pem", g_tmp);
  assert_int_equal(connect_url(f, url, ca, 5000, 0), 0);
  run_until(f, &f->cli.closed, 1, 5000);
  assert_int_equal(f->cli.rc, CG_EAUTH);
  assert_non_null(strstr(f->cli.reason, "mismatch"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_echo_and_close, setup, teardown),
      cmocka_unit_test_setup_teardown(test_ping_pong, setup, teardown),
      cmocka_unit_test_setup_teardown(test_close_cap, setup, teardown),
      cmocka_unit_test_setup_teardown(test_high_water, setup, teardown),
      cmocka_unit_test_setup_teardown(test_server_initiated_close, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_close_from_on_message, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_abort, setup, teardown),
      cmocka_unit_test_setup_teardown(test_abort_from_on_message, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_refused_upgrade, setup, teardown),
      cmocka_unit_test_setup_teardown(test_connection_refused, setup, teardown),
      cmocka_unit_test_setup_teardown(test_connect_timeout, setup, teardown),
      cmocka_unit_test_setup_teardown(test_too_big, setup, teardown),
      cmocka_unit_test_setup_teardown(test_bad_utf8, setup, teardown),
      cmocka_unit_test_setup_teardown(test_server_close_with_connections, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_pause, setup, teardown),
      cmocka_unit_test_setup_teardown(test_max_connections, setup, teardown),
      cmocka_unit_test_setup_teardown(test_bad_arguments, setup, teardown),
      cmocka_unit_test_setup_teardown(test_unresolvable, setup, teardown),
      cmocka_unit_test_setup_teardown(test_server_rejects_bad_requests, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_bad_accept_from_fake, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_frames_after_101_in_one_read, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_wss_echo, setup, teardown),
      cmocka_unit_test_setup_teardown(test_wss_unknown_ca, setup, teardown),
      cmocka_unit_test_setup_teardown(test_wss_wrong_host, setup, teardown),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
