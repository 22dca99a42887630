/* The async HTTP(S) client against real sockets: a fake server
 * (tests/unit/fake_lark_openapi.mjs, run with node) on 127.0.0.1, the
 * client on a libuv loop run by the test thread. */
// clang-format off
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
// clang-format on

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include "cardgate/error.h"
#include "common/common.h"
#include "lib/net/https_client.h"
#include "support/fake_process.h"

/* ------------------------------------------------------ the fake server */

static cg_test_fake g_fake;

static void fake_cmd(cg_test_fake *f, const char *cmd, char *reply,
                     size_t cap) {
  char tmp[65536];
  if (!reply) {
    reply = tmp;
    cap = sizeof(tmp);
  }
  assert_int_equal(cg_test_fake_send(f, cmd, reply, cap), 0);
}

static int group_setup(void **state) {
  (void)state;
  cg_test_unset_proxies();
  signal(SIGPIPE, SIG_IGN);
  if (cg_test_fake_start(&g_fake, "fake_lark_openapi.mjs") != 0) {
    fprintf(stderr, "cannot start the fake server with node\n");
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

typedef struct result {
  int calls; /* callback runs */
  int rc;
  int status;
  char body[8192];
  size_t body_len;
  char logid[64];
  char reset[16];
  char retry_after[16];
  char content_type[64];
  char detail[256];
} result;

typedef struct fixture {
  uv_loop_t loop;
  uv_timer_t ticker; /* keeps UV_RUN_ONCE from blocking forever */
  cg__https *h;
  int closed;
  int in_call;    /* inside cg__https_request / cg__https_close */
  int sync_calls; /* callbacks seen while in_call was set */
} fixture;

static fixture *g_fx;

static void on_tick(uv_timer_t *t) {
  (void)t;
}

static int setup(void **state) {
  fake_cmd(&g_fake, "{\"cmd\":\"reset\"}", NULL, 0);
  fixture *fx = calloc(1, sizeof(*fx));
  assert_non_null(fx);
  assert_int_equal(uv_loop_init(&fx->loop), 0);
  assert_int_equal(uv_timer_init(&fx->loop, &fx->ticker), 0);
  uv_timer_start(&fx->ticker, on_tick, 20, 20);
  int err = 1;
  fx->h = cg__https_new(&fx->loop, &err);
  assert_non_null(fx->h);
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

static int teardown(void **state) {
  fixture *fx = *state;
  if (fx->h) {
    fx->in_call = 1;
    cg__https_close(fx->h, on_closed, fx);
    fx->in_call = 0;
    assert_int_equal(fx->closed, 0); /* never synchronous */
    run_until(fx, &fx->closed, 1, 5000);
  }
  uv_close((uv_handle_t *)&fx->ticker, NULL);
  uv_run(&fx->loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&fx->loop), 0); /* no handle left behind */
  assert_int_equal(fx->sync_calls, 0);
  free(fx);
  g_fx = NULL;
  return 0;
}

static void on_result(int rc, const cg__https_resp *resp, void *ud) {
  result *r = ud;
  if (g_fx && g_fx->in_call) g_fx->sync_calls++;
  r->calls++;
  r->rc = rc;
  r->status = resp->status;
  r->body_len = resp->body_len;
  cg_strlcpy(r->body, resp->body, sizeof(r->body));
  cg_strlcpy(r->logid, resp->logid, sizeof(r->logid));
  cg_strlcpy(r->reset, resp->ratelimit_reset, sizeof(r->reset));
  cg_strlcpy(r->retry_after, resp->retry_after, sizeof(r->retry_after));
  cg_strlcpy(r->content_type, resp->content_type, sizeof(r->content_type));
  cg_strlcpy(r->detail, resp->detail, sizeof(r->detail));
}

static void url_for(char *out, size_t cap, const char *path) {
  snprintf(out, cap, "http://127.0.0.1:%d%s", g_fake.port, path);
}

static int start(fixture *fx, const char *method, const char *path,
                 const char *const *headers, const char *body, size_t body_len,
                 uint32_t timeout_ms, size_t max, result *r) {
  char url[256];
  url_for(url, sizeof(url), path);
  cg__https_req req;
  memset(&req, 0, sizeof(req));
  req.method = method;
  req.url = url;
  req.headers = headers;
  req.body = body;
  req.body_len = body_len;
  req.timeout_ms = timeout_ms;
  req.max_response_bytes = max;
  fx->in_call = 1;
  int rc = cg__https_request(fx->h, &req, on_result, r);
  fx->in_call = 0;
  return rc;
}

/* --------------------------------------------------------------- tests */

static void test_get_echo(void **state) {
  fixture *fx = *state;
  result r = {0};
  const char *hdrs[] = {"X-Test: one", NULL};
  assert_int_equal(start(fx, "GET", "/_echo?a=1", hdrs, NULL, 0, 5000, 0, &r),
                   0);
  assert_int_equal(r.calls, 0);
  run_until(fx, &r.calls, 1, 5000);
  assert_int_equal(r.calls, 1);
  assert_int_equal(r.rc, 0);
  assert_int_equal(r.status, 200);
  assert_string_equal(r.logid, "echo-logid");
  assert_string_equal(r.reset, "3");
  assert_string_equal(r.retry_after, "5");
  assert_non_null(strstr(r.content_type, "application/json"));
  assert_non_null(strstr(r.body, "\"method\":\"GET\""));
  assert_non_null(strstr(r.body, "\"x-test\":\"one\""));
  assert_non_null(strstr(r.body, "\"a\":\"1\""));
  assert_null(strstr(r.body, "100-continue"));
  assert_string_equal(r.detail, "");
  assert_int_equal(cg__https_inflight(fx->h), 0);
}

static void test_methods_and_bodies(void **state) {
  fixture *fx = *state;
  static const char *const methods[] = {"POST", "PATCH", "PUT", "DELETE"};
  /* A body with a NUL byte and more than curl's Expect threshold. */
  size_t n = 70000;
  char *body = malloc(n);
  assert_non_null(body);
  memset(body, 'b', n);
  body[10] = '\0';
  for (size_t i = 0; i < CG_ARRAY_SIZE(methods); i++) {
    result r = {0};
    const char *hdrs[] = {"Content-Type: application/octet-stream", NULL};
    assert_int_equal(
        start(fx, methods[i], "/_echo", hdrs, body, n, 5000, 0, &r), 0);
    run_until(fx, &r.calls, 1, 5000);
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.status, 200);
    char want[64];
    snprintf(want, sizeof(want), "\"method\":\"%s\"", methods[i]);
    assert_non_null(strstr(r.body, want));
    assert_non_null(strstr(r.body, "\"body_len\":70000"));
  }
  /* POST without a body sends Content-Length: 0. */
  result r = {0};
  assert_int_equal(start(fx, "POST", "/_echo", NULL, NULL, 0, 5000, 0, &r), 0);
  run_until(fx, &r.calls, 1, 5000);
  assert_int_equal(r.rc, 0);
  assert_non_null(strstr(r.body, "\"content-length\":\"0\""));
  free(body);
}

static void test_status_passthrough(void **state) {
  fixture *fx = *state;
  result r = {0};
  assert_int_equal(start(fx, "GET", "/_status/404", NULL, NULL, 0, 5000, 0, &r),
                   0);
  run_until(fx, &r.calls, 1, 5000);
  assert_int_equal(r.rc, 0);
  assert_int_equal(r.status, 404);
  assert_true(strncmp(r.logid, "logid-", 6) == 0);
  result r2 = {0};
  assert_int_equal(
      start(fx, "GET", "/_status/503", NULL, NULL, 0, 5000, 0, &r2), 0);
  run_until(fx, &r2.calls, 1, 5000);
  assert_int_equal(r2.rc, 0);
  assert_int_equal(r2.status, 503);
  assert_non_null(strstr(r2.body, "\"code\":503"));
}

static void test_logid_fallback_request_id(void **state) {
  fixture *fx = *state;
  /* Both X-Tt-Logid and X-Request-Id: the log id wins. */
  result r = {0};
  assert_int_equal(start(fx, "GET", "/_status/200", NULL, NULL, 0, 5000, 0, &r),
                   0);
  run_until(fx, &r.calls, 1, 5000);
  assert_int_equal(r.rc, 0);
  assert_true(strncmp(r.logid, "logid-", 6) == 0);
  /* Only X-Request-Id: the fallback (lark.md §4). */
  result r2 = {0};
  assert_int_equal(start(fx, "GET", "/_status/200?reqid_only=1", NULL, NULL, 0,
                         5000, 0, &r2),
                   0);
  run_until(fx, &r2.calls, 1, 5000);
  assert_int_equal(r2.rc, 0);
  assert_string_equal(r2.logid, "req-id-1");
}

static void test_timeout(void **state) {
  fixture *fx = *state;
  result r = {0};
  uint64_t t0 = mono_ms();
  assert_int_equal(
      start(fx, "GET", "/_fault/slow?ms=3000", NULL, NULL, 0, 300, 0, &r), 0);
  run_until(fx, &r.calls, 1, 5000);
  uint64_t took = mono_ms() - t0;
  assert_int_equal(r.rc, CG_ETIMEDOUT);
  assert_true(took >= 250 && took < 2000);
  assert_true(r.detail[0] != '\0');
}

static void test_too_big(void **state) {
  fixture *fx = *state;
  /* Announced with Content-Length: refused before reading. */
  result r = {0};
  assert_int_equal(start(fx, "GET", "/_fault/huge?bytes=2000000", NULL, NULL, 0,
                         5000, 100000, &r),
                   0);
  run_until(fx, &r.calls, 1, 5000);
  assert_int_equal(r.rc, CG_ETOOBIG);
  /* Chunked: refused when the limit is crossed. */
  result r2 = {0};
  assert_int_equal(start(fx, "GET", "/_fault/huge?bytes=2000000&chunked=1",
                         NULL, NULL, 0, 5000, 100000, &r2),
                   0);
  run_until(fx, &r2.calls, 1, 5000);
  assert_int_equal(r2.rc, CG_ETOOBIG);
  assert_true(r2.body_len <= 100000);
  /* Within the limit: fine. */
  result r3 = {0};
  assert_int_equal(start(fx, "GET", "/_fault/huge?bytes=50000&chunked=1", NULL,
                         NULL, 0, 5000, 100000, &r3),
                   0);
  run_until(fx, &r3.calls, 1, 5000);
  assert_int_equal(r3.rc, 0);
  assert_int_equal(r3.body_len, 50000 + 29);
}

static void test_cut_connection(void **state) {
  fixture *fx = *state;
  result r = {0};
  assert_int_equal(start(fx, "GET", "/_fault/cut", NULL, NULL, 0, 5000, 0, &r),
                   0);
  run_until(fx, &r.calls, 1, 5000);
  assert_int_equal(r.rc, UV_ECONNRESET);
}

static void test_refused(void **state) {
  fixture *fx = *state;
  /* A port that was just free. */
  int s = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a;
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof(a)), 0);
  socklen_t len = sizeof(a);
  getsockname(s, (struct sockaddr *)&a, &len);
  int port = ntohs(a.sin_port);
  close(s);
  char url[128];
  snprintf(url, sizeof(url), "http://127.0.0.1:%d/x", port);
  cg__https_req req = {.method = "GET", .url = url, .timeout_ms = 3000};
  result r = {0};
  assert_int_equal(cg__https_request(fx->h, &req, on_result, &r), 0);
  run_until(fx, &r.calls, 1, 5000);
  assert_int_equal(r.rc, UV_ECONNREFUSED);
  assert_int_equal(r.status, 0);
}

static void test_bad_arguments(void **state) {
  fixture *fx = *state;
  result r = {0};
  cg__https_req req = {.method = "GET", .url = "ftp://127.0.0.1/x"};
  assert_int_equal(cg__https_request(fx->h, &req, on_result, &r), CG_EINVAL);
  req.url = NULL;
  assert_int_equal(cg__https_request(fx->h, &req, on_result, &r), CG_EINVAL);
  req.url = "http://127.0.0.1/";
  req.method = "TRACE";
  assert_int_equal(cg__https_request(fx->h, &req, on_result, &r), CG_EINVAL);
  req.method = "POST";
  req.body_len = 3; /* and no body */
  assert_int_equal(cg__https_request(fx->h, &req, on_result, &r), CG_EINVAL);
  req.body_len = 0;
  assert_int_equal(cg__https_request(fx->h, &req, NULL, &r), CG_EINVAL);
  assert_int_equal(cg__https_request(NULL, &req, on_result, &r), CG_EINVAL);
  assert_int_equal(cg__https_inflight(fx->h), 0);
  uv_run(&fx->loop, UV_RUN_NOWAIT);
  assert_int_equal(r.calls, 0);
  int err = 0;
  assert_null(cg__https_new(NULL, &err));
  assert_int_equal(err, CG_EINVAL);
}

static void test_unresolvable_host(void **state) {
  fixture *fx = *state;
  result r = {0};
  cg__https_req req = {.method = "GET",
                       .url = "http://no-such-host.invalid/x",
                       .timeout_ms = 5000};
  assert_int_equal(cg__https_request(fx->h, &req, on_result, &r), 0);
  run_until(fx, &r.calls, 1, 8000);
  assert_true(r.rc == UV_EAI_NONAME || r.rc == CG_ETIMEDOUT);
}

static void test_concurrent(void **state) {
  fixture *fx = *state;
  enum { N = 100 };
  result *rs = calloc(N, sizeof(*rs));
  assert_non_null(rs);
  int done = 0;
  for (int i = 0; i < N; i++)
    assert_int_equal(
        start(fx, "GET", "/_fault/slow?ms=50", NULL, NULL, 0, 10000, 0, &rs[i]),
        0);
  assert_int_equal(cg__https_inflight(fx->h), N);
  uint64_t end = mono_ms() + 10000;
  while (done < N) {
    uv_run(&fx->loop, UV_RUN_ONCE);
    done = 0;
    for (int i = 0; i < N; i++) done += rs[i].calls;
    assert_true(mono_ms() < end);
  }
  for (int i = 0; i < N; i++) {
    assert_int_equal(rs[i].calls, 1);
    assert_int_equal(rs[i].rc, 0);
    assert_int_equal(rs[i].status, 200);
  }
  assert_int_equal(cg__https_inflight(fx->h), 0);
  free(rs);
}

static void test_connection_reuse(void **state) {
  fixture *fx = *state;
  result a = {0}, b = {0};
  assert_int_equal(start(fx, "GET", "/_echo", NULL, NULL, 0, 5000, 0, &a), 0);
  run_until(fx, &a.calls, 1, 5000);
  assert_int_equal(start(fx, "GET", "/_echo", NULL, NULL, 0, 5000, 0, &b), 0);
  run_until(fx, &b.calls, 1, 5000);
  const char *pa = strstr(a.body, "\"remote_port\":");
  const char *pb = strstr(b.body, "\"remote_port\":");
  assert_non_null(pa);
  assert_non_null(pb);
  assert_int_equal(atoi(pa + 14), atoi(pb + 14));
}

/* Closing with requests in flight: each callback runs once with
 * UV_ECANCELED, after close returns, before the close callback. */
typedef struct cancel_ctx {
  fixture *fx;
  result r[5];
  int closed_seen_before; /* close callback already ran at a cancellation */
} cancel_ctx;

static cancel_ctx *g_cancel;

static void on_cancelled(int rc, const cg__https_resp *resp, void *ud) {
  on_result(rc, resp, ud);
  if (g_cancel->fx->closed) g_cancel->closed_seen_before++;
  /* The client refuses new work while closing. */
  cg__https_req req = {.method = "GET", .url = "http://127.0.0.1:1/"};
  result dummy = {0};
  assert_int_equal(cg__https_request(g_cancel->fx->h, &req, on_result, &dummy),
                   CG_EALREADY);
}

static void test_close_inflight(void **state) {
  fixture *fx = *state;
  cancel_ctx c;
  memset(&c, 0, sizeof(c));
  c.fx = fx;
  g_cancel = &c;
  char url[256];
  url_for(url, sizeof(url), "/_fault/hang");
  for (int i = 0; i < 5; i++) {
    cg__https_req req = {.method = i % 2 ? "POST" : "GET",
                         .url = url,
                         .body = "{}",
                         .body_len = i % 2 ? 2 : 0,
                         .timeout_ms = 30000};
    assert_int_equal(cg__https_request(fx->h, &req, on_cancelled, &c.r[i]), 0);
  }
  /* Let the requests reach the server. */
  uint64_t until = mono_ms() + 200;
  while (mono_ms() < until) uv_run(&fx->loop, UV_RUN_ONCE);
  assert_int_equal(cg__https_inflight(fx->h), 5);
  fx->in_call = 1;
  cg__https_close(fx->h, on_closed, fx);
  fx->in_call = 0;
  for (int i = 0; i < 5; i++) assert_int_equal(c.r[i].calls, 0);
  run_until(fx, &fx->closed, 1, 5000);
  fx->h = NULL;
  for (int i = 0; i < 5; i++) {
    assert_int_equal(c.r[i].calls, 1);
    assert_int_equal(c.r[i].rc, UV_ECANCELED);
  }
  assert_int_equal(c.closed_seen_before, 0);
  assert_int_equal(fx->closed, 1);
}

/* Closing from inside a request callback, with another request in flight. */
typedef struct close_in_cb {
  fixture *fx;
  result first, second;
} close_in_cb;

static void on_first_then_close(int rc, const cg__https_resp *resp, void *ud) {
  close_in_cb *c = ud;
  on_result(rc, resp, &c->first);
  cg__https_close(c->fx->h, on_closed, c->fx);
  assert_int_equal(c->second.calls, 0); /* not inside close */
}

static void on_second(int rc, const cg__https_resp *resp, void *ud) {
  close_in_cb *c = ud;
  on_result(rc, resp, &c->second);
}

static void test_close_inside_callback(void **state) {
  fixture *fx = *state;
  close_in_cb c;
  memset(&c, 0, sizeof(c));
  c.fx = fx;
  char u1[256], u2[256];
  url_for(u1, sizeof(u1), "/_echo");
  url_for(u2, sizeof(u2), "/_fault/hang");
  cg__https_req r2 = {.method = "GET", .url = u2, .timeout_ms = 30000};
  assert_int_equal(cg__https_request(fx->h, &r2, on_second, &c), 0);
  cg__https_req r1 = {.method = "GET", .url = u1, .timeout_ms = 5000};
  assert_int_equal(cg__https_request(fx->h, &r1, on_first_then_close, &c), 0);
  run_until(fx, &fx->closed, 1, 5000);
  fx->h = NULL;
  assert_int_equal(c.first.calls, 1);
  assert_int_equal(c.first.rc, 0);
  assert_int_equal(c.second.calls, 1);
  assert_int_equal(c.second.rc, UV_ECANCELED);
}

/* A callback that starts the next request. */
typedef struct chain {
  fixture *fx;
  int left;
  int calls;
  int last_rc;
} chain;

static void on_chain(int rc, const cg__https_resp *resp, void *ud) {
  chain *c = ud;
  (void)resp;
  c->calls++;
  c->last_rc = rc;
  if (rc == 0 && --c->left > 0) {
    char url[256];
    url_for(url, sizeof(url), "/_echo");
    cg__https_req req = {.method = "GET", .url = url, .timeout_ms = 5000};
    assert_int_equal(cg__https_request(c->fx->h, &req, on_chain, c), 0);
  }
}

static void test_request_from_callback(void **state) {
  fixture *fx = *state;
  chain c = {.fx = fx, .left = 5};
  char url[256];
  url_for(url, sizeof(url), "/_echo");
  cg__https_req req = {.method = "GET", .url = url, .timeout_ms = 5000};
  assert_int_equal(cg__https_request(fx->h, &req, on_chain, &c), 0);
  run_until(fx, &c.calls, 5, 5000);
  assert_int_equal(c.last_rc, 0);
}

static void test_close_idle(void **state) {
  fixture *fx = *state;
  /* Closing with nothing in flight (teardown does it after a request too). */
  fx->in_call = 1;
  cg__https_close(fx->h, on_closed, fx);
  fx->in_call = 0;
  assert_int_equal(fx->closed, 0);
  run_until(fx, &fx->closed, 1, 2000);
  fx->h = NULL;
  cg__https_close(NULL, NULL, NULL); /* ignored */
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_get_echo, setup, teardown),
      cmocka_unit_test_setup_teardown(test_methods_and_bodies, setup, teardown),
      cmocka_unit_test_setup_teardown(test_status_passthrough, setup, teardown),
      cmocka_unit_test_setup_teardown(test_logid_fallback_request_id, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_timeout, setup, teardown),
      cmocka_unit_test_setup_teardown(test_too_big, setup, teardown),
      cmocka_unit_test_setup_teardown(test_cut_connection, setup, teardown),
      cmocka_unit_test_setup_teardown(test_refused, setup, teardown),
      cmocka_unit_test_setup_teardown(test_bad_arguments, setup, teardown),
      cmocka_unit_test_setup_teardown(test_unresolvable_host, setup, teardown),
      cmocka_unit_test_setup_teardown(test_concurrent, setup, teardown),
      cmocka_unit_test_setup_teardown(test_connection_reuse, setup, teardown),
      cmocka_unit_test_setup_teardown(test_close_inflight, setup, teardown),
      cmocka_unit_test_setup_teardown(test_close_inside_callback, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_request_from_callback, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_close_idle, setup, teardown),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
