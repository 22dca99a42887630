/* The HTTP server against real sockets: a cg_app + cg_server run on a libuv
 * loop in a background thread; the test thread speaks raw HTTP/1.1 through
 * blocking POSIX sockets. */
// clang-format off
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
// clang-format on

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include <uv.h>

#include "cardgate/app.h"
#include "cardgate/server.h"
#include "common/common.h"

/* ------------------------------------------------------------- fixture */

typedef struct fixture {
  uv_loop_t loop;
  uv_async_t stop;
  cg_app *app;
  cg_server *srv;
  pthread_t th;
  int port;
  int closed;      /* server close callbacks seen */
  int closed_sync; /* ... of which inside cg_server_close */
  /* A slow handler (answers after delay_ms on the loop) when set. */
  uint32_t delay_ms;
  int handled;
  /* Log lines at info and above, for checks. */
  pthread_mutex_t log_mu;
  char log[8192];
  size_t log_len;
} fixture;

typedef struct delayed {
  uv_timer_t t;
  cg_responder *r;
} delayed;

static const char LEGACY_BODY[] =
    "{\"open_id\":\"ou_1\",\"open_message_id\":\"om_1\",\"open_chat_id\":"
    "\"oc_1\",\"tenant_key\":\"t1\",\"token\":\"c-1\",\"action\":{\"value\":{"
    "\"k\":\"v\"},\"tag\":\"button\"}}";

static void on_log(cg_log_level level, const char *component, const char *msg,
                   void *ud) {
  fixture *fx = ud;
  if (level < CG_LOG_INFO) return;
  pthread_mutex_lock(&fx->log_mu);
  int n = snprintf(fx->log + fx->log_len, sizeof(fx->log) - fx->log_len,
                   "%s: %s\n", component, msg);
  if (n > 0 && fx->log_len + (size_t)n < sizeof(fx->log))
    fx->log_len += (size_t)n;
  pthread_mutex_unlock(&fx->log_mu);
}

static int log_has(fixture *fx, const char *a, const char *b) {
  int found = 0;
  pthread_mutex_lock(&fx->log_mu);
  for (char *line = fx->log; line && *line && !found;) {
    char *nl = strchr(line, '\n');
    size_t n = nl ? (size_t)(nl - line) : strlen(line);
    char tmp[1100];
    if (n >= sizeof(tmp)) n = sizeof(tmp) - 1;
    memcpy(tmp, line, n);
    tmp[n] = '\0';
    if (strstr(tmp, a) && (!b || strstr(tmp, b))) found = 1;
    line = nl ? nl + 1 : NULL;
  }
  pthread_mutex_unlock(&fx->log_mu);
  return found;
}

static void on_delayed_close(uv_handle_t *h) {
  free(h->data);
}

static void on_delayed(uv_timer_t *t) {
  delayed *d = t->data;
  cg_respond(d->r, NULL);
  uv_close((uv_handle_t *)&d->t, on_delayed_close);
}

static void slow_handler(const cg_action *a, cg_responder *r, void *ud) {
  fixture *fx = ud;
  (void)a;
  fx->handled++;
  delayed *d = calloc(1, sizeof(*d)); /* loop thread: no cmocka asserts */
  if (!d) abort();
  d->r = r;
  d->t.data = d;
  uv_timer_init(&fx->loop, &d->t);
  uv_timer_start(&d->t, on_delayed, fx->delay_ms, 0);
}

static void *loop_thread(void *arg) {
  fixture *fx = arg;
  uv_run(&fx->loop, UV_RUN_DEFAULT);
  return NULL;
}

static void on_server_closed(void *ud) {
  fixture *fx = ud;
  fx->closed++;
  cg_app_free(fx->app);
  fx->app = NULL;
}

static void on_stop(uv_async_t *a) {
  fixture *fx = a->data;
  cg_server_close(fx->srv, on_server_closed, fx);
  /* Never synchronous (DESIGN.md convention 5); checked by stop(). */
  if (fx->closed) fx->closed_sync = 1;
  uv_close((uv_handle_t *)a, NULL);
}

static void start_with(fixture *fx, cg_server_options *so) {
  memset(fx, 0, sizeof(*fx));
  pthread_mutex_init(&fx->log_mu, NULL);
  assert_int_equal(uv_loop_init(&fx->loop), 0);
  cg_app_options ao;
  cg_app_options_init(&ao);
  ao.log = on_log;
  ao.log_ud = fx;
  ao.log_level = CG_LOG_DEBUG;
  int err = 0;
  fx->app = cg_app_new(&fx->loop, &ao, &err);
  assert_non_null(fx->app);
  fx->srv = cg_server_new(fx->app, so, &err);
  assert_non_null(fx->srv);
  assert_int_equal(cg_server_listen(fx->srv), 0);
  fx->port = cg_server_port(fx->srv);
  assert_true(fx->port > 0);
  assert_int_equal(uv_async_init(&fx->loop, &fx->stop, on_stop), 0);
  fx->stop.data = fx;
}

static void run_loop(fixture *fx) {
  assert_int_equal(pthread_create(&fx->th, NULL, loop_thread, fx), 0);
}

static void start(fixture *fx) {
  cg_server_options so;
  cg_server_options_init(&so);
  start_with(fx, &so);
  run_loop(fx);
}

static void stop(fixture *fx) {
  uv_async_send(&fx->stop);
  assert_int_equal(pthread_join(fx->th, NULL), 0);
  assert_int_equal(fx->closed, 1);
  assert_int_equal(fx->closed_sync, 0);
  assert_int_equal(uv_loop_close(&fx->loop), 0);
  pthread_mutex_destroy(&fx->log_mu);
}

/* -------------------------------------------------------------- client */

typedef struct client {
  int fd;
  char buf[256 * 1024];
  size_t len;
} client;

typedef struct resp {
  int status;
  int conn_close;
  char headers[4096];
  char body[8192];
  size_t body_len;
} resp;

static int connect_to(int family, const char *ip, int port) {
  int fd = socket(family, SOCK_STREAM, 0);
  assert_true(fd >= 0);
  struct timeval tv = {5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  int rc;
  if (family == AF_INET6) {
    struct sockaddr_in6 a;
    memset(&a, 0, sizeof(a));
    a.sin6_family = AF_INET6;
    a.sin6_port = htons((uint16_t)port);
    inet_pton(AF_INET6, ip, &a.sin6_addr);
    rc = connect(fd, (struct sockaddr *)&a, sizeof(a));
  } else {
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    inet_pton(AF_INET, ip, &a.sin_addr);
    rc = connect(fd, (struct sockaddr *)&a, sizeof(a));
  }
  assert_int_equal(rc, 0);
  return fd;
}

static client *client_new(fixture *fx) {
  client *c = calloc(1, sizeof(*c));
  assert_non_null(c);
  c->fd = connect_to(AF_INET, "127.0.0.1", fx->port);
  return c;
}

static void client_free(client *c) {
  if (c->fd >= 0) close(c->fd);
  free(c);
}

static void send_all(client *c, const char *p, size_t n) {
  while (n) {
    ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
    assert_true(w > 0);
    p += w;
    n -= (size_t)w;
  }
}

static void send_str(client *c, const char *s) {
  send_all(c, s, strlen(s));
}

/* Reads more bytes; 0 on EOF, -1 on error/timeout, else bytes read. */
static ssize_t fill(client *c) {
  if (c->len == sizeof(c->buf)) return -1;
  ssize_t r = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
  if (r > 0) c->len += (size_t)r;
  return r;
}

static const char *find_crlf2(const char *p, size_t n) {
  for (size_t i = 0; i + 3 < n; i++)
    if (p[i] == '\r' && p[i + 1] == '\n' && p[i + 2] == '\r' &&
        p[i + 3] == '\n')
      return p + i;
  return NULL;
}

static int header_value(const char *headers, const char *name, char *out,
                        size_t cap) {
  size_t nl = strlen(name);
  for (const char *p = headers; p && *p;) {
    if (strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
      p += nl + 1;
      while (*p == ' ') p++;
      size_t i = 0;
      while (p[i] && p[i] != '\r' && i + 1 < cap) {
        out[i] = p[i];
        i++;
      }
      out[i] = '\0';
      return 1;
    }
    p = strstr(p, "\r\n");
    if (p) p += 2;
  }
  return 0;
}

/* Reads one whole response (status line, headers, Content-Length body);
 * without_body for answers to HEAD. 0, or -1 when the connection ended. */
static int read_resp_ex(client *c, resp *r, int without_body) {
  memset(r, 0, sizeof(*r));
  const char *end;
  while (!(end = find_crlf2(c->buf, c->len)))
    if (fill(c) <= 0) return -1;
  size_t hlen = (size_t)(end - c->buf) + 4;
  assert_true(hlen < sizeof(r->headers));
  memcpy(r->headers, c->buf, hlen);
  r->headers[hlen] = '\0';
  assert_int_equal(strncmp(r->headers, "HTTP/1.1 ", 9), 0);
  r->status = (int)strtol(r->headers + 9, NULL, 10);
  char v[64];
  size_t clen = 0;
  if (header_value(r->headers, "Content-Length", v, sizeof(v)))
    clen = (size_t)strtoul(v, NULL, 10);
  if (header_value(r->headers, "Connection", v, sizeof(v)))
    r->conn_close = strcasecmp(v, "close") == 0;
  if (without_body || r->status == 100) clen = 0;
  while (c->len < hlen + clen)
    if (fill(c) <= 0) return -1;
  assert_true(clen < sizeof(r->body));
  memcpy(r->body, c->buf + hlen, clen);
  r->body[clen] = '\0';
  r->body_len = clen;
  memmove(c->buf, c->buf + hlen + clen, c->len - hlen - clen);
  c->len -= hlen + clen;
  return 0;
}

static int read_resp(client *c, resp *r) {
  return read_resp_ex(c, r, 0);
}

/* 1 when the server closed (EOF or reset) with nothing more to read. */
static int read_eof(client *c) {
  if (c->len) return 0;
  char b[256];
  ssize_t r = recv(c->fd, b, sizeof(b), 0);
  return r == 0 || (r < 0 && errno == ECONNRESET);
}

static void post(client *c, const char *path, const char *body,
                 const char *extra) {
  char req[4096];
  snprintf(req, sizeof(req),
           "POST %s HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
           "%sContent-Length: %zu\r\n\r\n%s",
           path, extra ? extra : "", strlen(body), body);
  send_str(c, req);
}

/* -------------------------------------------------------------- tests */

static void test_legacy_callback(void **state) {
  (void)state;
  fixture fx;
  start(&fx);
  client *c = client_new(&fx);
  resp r;
  post(c, "/webhook/card", LEGACY_BODY, NULL);
  assert_int_equal(read_resp(c, &r), 0);
  assert_int_equal(r.status, 200);
  assert_string_equal(r.body, "{}");
  assert_false(r.conn_close);
  char v[128];
  assert_true(header_value(r.headers, "Content-Type", v, sizeof(v)));
  assert_string_equal(v, "application/json; charset=utf-8");
  /* The event URL; query strings do not change routing. */
  post(
      c, "/webhook/event?x=1",
      "{\"challenge\":\"ch-42\",\"token\":\"t\",\"type\":\"url_verification\"}",
      NULL);
  assert_int_equal(read_resp(c, &r), 0);
  assert_int_equal(r.status, 200);
  assert_non_null(strstr(r.body, "ch-42"));
  client_free(c);
  stop(&fx);
}

static void test_healthz(void **state) {
  (void)state;
  fixture fx;
  start(&fx);
  client *c = client_new(&fx);
  resp r;
  send_str(c, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
  assert_int_equal(read_resp(c, &r), 0);
  assert_int_equal(r.status, 200);
  assert_non_null(strstr(r.body, "\"status\":\"ok\""));
  assert_non_null(strstr(r.body, "\"connections\":1"));
  assert_non_null(strstr(r.body, "\"requests\":1"));
  send_str(c, "HEAD /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
  assert_int_equal(read_resp_ex(c, &r, 1), 0);
  assert_int_equal(r.status, 200);
  send_str(c, "GET http://t/healthz?verbose HTTP/1.1\r\nHost: t\r\n\r\n");
  assert_int_equal(read_resp(c, &r), 0); /* HEAD sent no body bytes */
  assert_int_equal(r.status, 200);
  assert_non_null(strstr(r.body, "\"requests\":3"));
  client_free(c);
  stop(&fx);
}

static void test_not_found(void **state) {
  (void)state;
  fixture fx;
  start(&fx);
  client *c = client_new(&fx);
  resp r;
  send_str(c, "GET /nope HTTP/1.1\r\nHost: t\r\n\r\n");
  assert_int_equal(read_resp(c, &r), 0);
  assert_int_equal(r.status, 404);
  assert_non_null(strstr(r.body, "\"code\":30005"));
  assert_non_null(strstr(r.body, "/webhook/card"));
  assert_false(r.conn_close);
  /* A 404 with a body keeps the connection usable. */
  post(c, "/webhook/other", "{\"a\":1}", NULL);
  assert_int_equal(read_resp(c, &r), 0);
  assert_int_equal(r.status, 404);
  send_str(c, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
  assert_int_equal(read_resp(c, &r), 0);
  assert_int_equal(r.status, 200);
  assert_true(log_has(&fx, "404", "127.0.0.1"));
  client_free(c);
  stop(&fx);
}

static void test_method_not_allowed(void **state) {
  (void)state;
  fixture fx;
  start(&fx);
  client *c = client_new(&fx);
  resp r;
  char v[64];
  send_str(c, "GET /webhook/card HTTP/1.1\r\nHost: t\r\n\r\n");
  assert_int_equal(read_resp(c, &r), 0);
  assert_int_equal(r.status, 405);
  assert_true(header_value(r.headers, "Allow", v, sizeof(v)));
  assert_string_equal(v, "POST");
  assert_non_null(strstr(r.body, "\"msg\":"));
  post(c, "/healthz", "{}", NULL);
  assert_int_equal(read_resp(c, &r), 0);
  assert_int_equal(r.status, 405);
  assert_true(header_value(r.headers, "Allow", v, sizeof(v)));
  assert_string_equal(v, "GET, HEAD");
  client_free(c);
  stop(&fx);
}

static void test_body_too_big_content_length(void **state) {
  (void)state;
  fixture fx;
  start(&fx);
  client *c = client_new(&fx);
  resp r;
  /* Only the headers: the server must answer without reading the body. */
  send_str(c,
           "POST /webhook/card HTTP/1.1\r\nHost: t\r\n"
           "Content-Length: 2097152\r\n\r\n{\"open_id\":");
  assert_int_equal(read_resp(c, &r), 0);
  assert_int_equal(r.status, 413);
  assert_true(r.conn_close);
  assert_non_null(strstr(r.body, "1048576-byte limit"));
  assert_non_null(strstr(r.body, "\"code\":30003"));
  assert_true(read_eof(c));
  client_free(c);
  stop(&fx);
}

/* Sends everything it can while watching for an answer (the server stops
 * reading the body once it answers). */
static void send_watching(client *c, const char *p, size_t n) {
  int fl = fcntl(c->fd, F_GETFL);
  fcntl(c->fd, F_SETFL, fl | O_NONBLOCK);
  while (n) {
    struct pollfd pfd = {c->fd, POLLIN | POLLOUT, 0};
    assert_true(poll(&pfd, 1, 5000) > 0);
    if (pfd.revents & (POLLIN | POLLHUP | POLLERR)) break;
    ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) continue;
    if (w < 0) break;
    p += w;
    n -= (size_t)w;
  }
  fcntl(c->fd, F_SETFL, fl);
}

static void test_body_too_big_chunked(void **state) {
  (void)state;
  fixture fx;
  start(&fx);
  client *c = client_new(&fx);
  resp r;
  cg_buf req;
  cg_buf_init(&req, 4u * 1024u * 1024u);
  assert_int_equal(cg_buf_appends(&req,
                                  "POST /webhook/card HTTP/1.1\r\nHost: t\r\n"
                                  "Transfer-Encoding: chunked\r\n\r\n"),
                   0);
  char *chunk = malloc(65536);
  assert_non_null(chunk);
  memset(chunk, 'a', 65536);
  for (int i = 0; i < 32; i++) { /* 2 MiB */
    assert_int_equal(cg_buf_appends(&req, "10000\r\n"), 0);
    assert_int_equal(cg_buf_append(&req, chunk, 65536), 0);
    assert_int_equal(cg_buf_appends(&req, "\r\n"), 0);
  }
  assert_int_equal(cg_buf_appends(&req, "0\r\n\r\n"), 0);
  send_watching(c, req.data, req.len);
  assert_int_equal(read_resp(c, &r), 0);
  assert_int_equal(r.status, 413);
  assert_true(r.conn_close);
  assert_non_null(strstr(r.body, "1048576-byte limit"));
  free(chunk);
  cg_buf_free(&req);
  client_free(c);

  /* A small chunked body goes through. */
  c = client_new(&fx);
  char small[1024];
  size_t bl = strlen(LEGACY_BODY);
  snprintf(
      small, sizeof(small),
      "POST /webhook/card HTTP/1.1\r\nHost: t\r\n"
      "Transfer-Encoding: chunked\r\n\r\n%zx\r\n%.*s\r\n%zx\r\n%s\r\n0\r\n\r\n",
      (size_t)10, 10, LEGACY_BODY, bl - 10, LEGACY_BODY + 10);
  send_str(c, small);
  assert_int_equal(read_resp(c, &r), 0);
  assert_int_equal(r.status, 200);
  assert_string_equal(r.body, "{}");
  client_free(c);
  stop(&fx);
}

static void test_garbage(void **state) {
  (void)state;
  fixture fx;
  start(&fx);
  client *c = client_new(&fx);
  resp r;
  send_str(c, "HELLO THERE\r\n\r\n");
  assert_int_equal(read_resp(c, &r), 0);
  assert_int_equal(r.status, 400);
  assert_true(r.conn_close);
  assert_non_null(strstr(r.body, "\"code\":30001"));
  assert_non_null(strstr(r.body, "malformed HTTP request"));
  assert_true(read_eof(c));
  client_free(c);
  /* Content-Length and chunked at once is refused (request smuggling). */
  c = client_new(&fx);
  send_str(c,
           "POST /webhook/card HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n"
           "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
  assert_int_equal(read_resp(c, &r), 0);
  assert_int_equal(r.status, 400);
  client_free(c);
  stop(&fx);
}

static void test_header_timeout(void **state) {
  (void)state;
  fixture fx;
  cg_server_options so;
  cg_server_options_init(&so);
  so.header_timeout_ms = 200;
  so.body_timeout_ms = 200;
  start_with(&fx, &so);
  run_loop(&fx);
  client *c = client_new(&fx);
  resp r;
  uint64_t t0 = uv_hrtime();
  send_str(c, "POST /webhook/card HTTP/1.1\r\nHost: t\r\n");
  assert_int_equal(read_resp(c, &r), 0);
  uint64_t ms = (uv_hrtime() - t0) / 1000000u;
  assert_int_equal(r.status, 408);
  assert_true(r.conn_close);
  assert_true(ms >= 150 && ms < 3000);
  assert_non_null(strstr(r.body, "headers"));
  assert_true(read_eof(c));
  client_free(c);

  /* The body timeout. */
  c = client_new(&fx);
  send_str(c,
           "POST /webhook/card HTTP/1.1\r\nHost: t\r\nContent-Length: 50\r\n"
           "\r\n{\"a\"");
  assert_int_equal(read_resp(c, &r), 0);
  assert_int_equal(r.status, 408);
  assert_non_null(strstr(r.body, "body"));
  client_free(c);

  /* A connection that sends nothing is closed silently. */
  c = client_new(&fx);
  assert_true(read_eof(c));
  client_free(c);
  stop(&fx);
}

static void test_idle_timeout(void **state) {
  (void)state;
  fixture fx;
  cg_server_options so;
  cg_server_options_init(&so);
  so.idle_timeout_ms = 150;
  start_with(&fx, &so);
  run_loop(&fx);
  client *c = client_new(&fx);
  resp r;
  send_str(c, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
  assert_int_equal(read_resp(c, &r), 0);
  assert_int_equal(r.status, 200);
  assert_true(read_eof(c)); /* closed silently after 150 ms */
  client_free(c);
  stop(&fx);
}

static void test_pipelined(void **state) {
  (void)state;
  fixture fx;
  start(&fx);
  client *c = client_new(&fx);
  resp r;
  char req[4096];
  snprintf(req, sizeof(req),
           "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"
           "POST /webhook/card HTTP/1.1\r\nHost: t\r\nContent-Length: %zu\r\n"
           "\r\n%s"
           "GET /missing HTTP/1.1\r\nHost: t\r\n\r\n",
           strlen(LEGACY_BODY), LEGACY_BODY);
  send_str(c, req);
  assert_int_equal(read_resp(c, &r), 0);
  assert_int_equal(r.status, 200);
  assert_non_null(strstr(r.body, "\"status\":\"ok\""));
  assert_int_equal(read_resp(c, &r), 0);
  assert_int_equal(r.status, 200);
  assert_string_equal(r.body, "{}");
  assert_int_equal(read_resp(c, &r), 0);
  assert_int_equal(r.status, 404);
  client_free(c);
  stop(&fx);
}

static void test_pipelined_slow_handler(void **state) {
  (void)state;
  fixture fx;
  cg_server_options so;
  cg_server_options_init(&so);
  start_with(&fx, &so);
  fx.delay_ms = 50;
  assert_int_equal(cg_app_route(fx.app, NULL, slow_handler, &fx), 0);
  run_loop(&fx);
  client *c = client_new(&fx);
  resp r;
  /* Three requests the app answers later, then /healthz: four answers in
   * order, although /healthz could be answered at once. Sent byte by byte
   * in two writes to split requests across reads. */
  cg_buf req;
  cg_buf_init(&req, 65536);
  for (int i = 0; i < 3; i++)
    assert_int_equal(cg_buf_appendf(&req,
                                    "POST /webhook/card HTTP/1.1\r\nHost: t\r\n"
                                    "Content-Length: %zu\r\n\r\n%s",
                                    strlen(LEGACY_BODY), LEGACY_BODY),
                     0);
  assert_int_equal(
      cg_buf_appends(&req, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
  send_all(c, req.data, 100);
  usleep(20000);
  send_all(c, req.data + 100, req.len - 100);
  for (int i = 0; i < 3; i++) {
    assert_int_equal(read_resp(c, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "{}");
  }
  assert_int_equal(read_resp(c, &r), 0);
  assert_int_equal(r.status, 200);
  assert_non_null(strstr(r.body, "\"requests\":4"));
  cg_buf_free(&req);
  client_free(c);
  stop(&fx);
  assert_int_equal(fx.handled, 3);
}

/* A client that pipelines a lot and does not read: the server must stop
 * (partial writes, output high-water, input cap) and then deliver every
 * answer in order once the client reads. */
static void test_pipelined_backpressure(void **state) {
  (void)state;
  enum { N = 100000 };
  fixture fx;
  start(&fx);
  client *c = calloc(1, sizeof(*c));
  assert_non_null(c);
  c->fd = socket(AF_INET, SOCK_STREAM, 0);
  int small = 4096;
  setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
  struct sockaddr_in a;
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)fx.port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(connect(c->fd, (struct sockaddr *)&a, sizeof(a)), 0);
  static const char one[] = "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n";
  size_t total = (sizeof(one) - 1) * N;
  char *all = malloc(total);
  assert_non_null(all);
  for (size_t i = 0; i < N; i++)
    memcpy(all + i * (sizeof(one) - 1), one, sizeof(one) - 1);
  fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
  /* Phase 1: send without reading until the server stops taking bytes. */
  size_t sent = 0;
  for (;;) {
    struct pollfd pfd = {c->fd, POLLOUT, 0};
    if (poll(&pfd, 1, 300) <= 0) break;
    ssize_t w = send(c->fd, all + sent, total - sent, MSG_NOSIGNAL);
    if (w > 0) sent += (size_t)w;
    if (sent == total) break;
  }
  usleep(300000); /* the server fills its send buffer and must stop */
  /* Phase 2: read answers (checking their order) and send the rest. */
  size_t got = 0;
  char want[64];
  while (got < N) {
    struct pollfd pfd = {c->fd, POLLIN | (sent < total ? POLLOUT : 0), 0};
    assert_true(poll(&pfd, 1, 5000) > 0);
    if ((pfd.revents & POLLOUT) && sent < total) {
      ssize_t w = send(c->fd, all + sent, total - sent, MSG_NOSIGNAL);
      if (w > 0) sent += (size_t)w;
    }
    if (!(pfd.revents & POLLIN)) continue;
    ssize_t r = fill(c);
    assert_true(r > 0 || (r < 0 && errno == EAGAIN));
    for (;;) {
      const char *end = find_crlf2(c->buf, c->len);
      if (!end) break;
      size_t hlen = (size_t)(end - c->buf) + 4;
      char hdr[512], v[32];
      assert_true(hlen < sizeof(hdr));
      memcpy(hdr, c->buf, hlen);
      hdr[hlen] = '\0';
      assert_true(header_value(hdr, "Content-Length", v, sizeof(v)));
      size_t blen = (size_t)strtoul(v, NULL, 10);
      if (c->len < hlen + blen) break;
      assert_int_equal(strncmp(hdr, "HTTP/1.1 200 ", 13), 0);
      snprintf(want, sizeof(want), "\"requests\":%zu}", got + 1);
      assert_int_equal(
          memcmp(c->buf + hlen + blen - strlen(want), want, strlen(want)), 0);
      got++;
      memmove(c->buf, c->buf + hlen + blen, c->len - hlen - blen);
      c->len -= hlen + blen;
    }
  }
  assert_int_equal(sent, total);
  assert_int_equal(c->len, 0);
  free(all);
  client_free(c);
  stop(&fx);
}

static void test_keep_alive(void **state) {
  (void)state;
  fixture fx;
  start(&fx);
  client *c = client_new(&fx);
  resp r;
  for (int i = 0; i < 20; i++) {
    post(c, "/webhook/card", LEGACY_BODY, NULL);
    assert_int_equal(read_resp(c, &r), 0);
    assert_int_equal(r.status, 200);
    assert_false(r.conn_close);
  }
  send_str(c, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
  assert_int_equal(read_resp(c, &r), 0);
  assert_non_null(strstr(r.body, "\"connections\":1,\"requests\":21"));
  /* Connection: close ends it after the answer. */
  post(c, "/webhook/card", LEGACY_BODY, "Connection: close\r\n");
  assert_int_equal(read_resp(c, &r), 0);
  assert_int_equal(r.status, 200);
  assert_true(r.conn_close);
  assert_true(read_eof(c));
  client_free(c);
  stop(&fx);
}

static void test_http10(void **state) {
  (void)state;
  fixture fx;
  start(&fx);
  client *c = client_new(&fx);
  resp r;
  send_str(c, "GET /healthz HTTP/1.0\r\n\r\n");
  assert_int_equal(read_resp(c, &r), 0);
  assert_int_equal(r.status, 200);
  assert_true(r.conn_close);
  assert_true(read_eof(c));
  client_free(c);
  /* HTTP/1.0 with keep-alive stays open and says so. */
  c = client_new(&fx);
  char v[64];
  send_str(c, "GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
  assert_int_equal(read_resp(c, &r), 0);
  assert_true(header_value(r.headers, "Connection", v, sizeof(v)));
  assert_string_equal(v, "keep-alive");
  send_str(c, "GET /healthz HTTP/1.0\r\n\r\n");
  assert_int_equal(read_resp(c, &r), 0);
  assert_true(r.conn_close);
  client_free(c);
  stop(&fx);
}

static void test_upgrade_closes(void **state) {
  (void)state;
  fixture fx;
  start(&fx);
  client *c = client_new(&fx);
  resp r;
  send_str(c,
           "GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\n"
           "Upgrade: websocket\r\n\r\n\x81\x05hello");
  assert_int_equal(read_resp(c, &r), 0);
  assert_int_equal(r.status, 200);
  assert_true(r.conn_close);
  assert_true(read_eof(c));
  client_free(c);
  stop(&fx);
}

static void test_large_body(void **state) {
  (void)state;
  fixture fx;
  start(&fx);
  client *c = client_new(&fx);
  resp r;
  cg_buf body;
  cg_buf_init(&body, 1024 * 1024);
  assert_int_equal(cg_buf_appends(&body, "{\"pad\":\""), 0);
  for (int i = 0; i < 900 * 1024; i++)
    assert_int_equal(cg_buf_append(&body, "x", 1), 0);
  assert_int_equal(cg_buf_appends(&body, "\","), 0);
  assert_int_equal(cg_buf_appends(&body, LEGACY_BODY + 1), 0);
  char hdr[256];
  snprintf(
      hdr, sizeof(hdr),
      "POST /webhook/card HTTP/1.1\r\nHost: t\r\nContent-Length: %zu\r\n\r\n",
      body.len);
  /* Twice, the second pipelined behind the first. */
  for (int i = 0; i < 2; i++) {
    send_str(c, hdr);
    send_all(c, body.data, body.len);
  }
  for (int i = 0; i < 2; i++) {
    assert_int_equal(read_resp(c, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "{}");
  }
  post(c, "/webhook/card", LEGACY_BODY, NULL);
  assert_int_equal(read_resp(c, &r), 0);
  assert_int_equal(r.status, 200);
  cg_buf_free(&body);
  client_free(c);
  stop(&fx);
}

static void test_giant_header(void **state) {
  (void)state;
  fixture fx;
  start(&fx);
  client *c = client_new(&fx);
  resp r;
  size_t n = 20000;
  char *req = malloc(n + 256);
  assert_non_null(req);
  int k = snprintf(req, 256, "GET /healthz HTTP/1.1\r\nHost: t\r\nX-Pad: ");
  memset(req + k, 'p', n);
  memcpy(req + k + n, "\r\n\r\n", 5);
  send_watching(c, req, strlen(req));
  assert_int_equal(read_resp(c, &r), 0);
  assert_int_equal(r.status, 431);
  assert_true(r.conn_close);
  assert_non_null(strstr(r.body, "16384-byte limit"));
  client_free(c);

  /* One kept header over CG_LIMIT_HEADER_VALUE. */
  c = client_new(&fx);
  k = snprintf(req, 256, "POST /webhook/card HTTP/1.1\r\nX-Lark-Signature: ");
  memset(req + k, 's', 2000);
  memcpy(req + k + 2000, "\r\n\r\n", 5);
  send_str(c, req);
  assert_int_equal(read_resp(c, &r), 0);
  assert_int_equal(r.status, 431);
  assert_non_null(strstr(r.body, "X-Lark-Signature"));
  /* The refusal never echoes the value. */
  assert_null(strstr(r.body, "sss"));
  client_free(c);

  /* A giant URL. */
  c = client_new(&fx);
  k = snprintf(req, 256, "GET /");
  memset(req + k, 'u', 3000);
  memcpy(req + k + 3000, " HTTP/1.1\r\n\r\n", 14);
  send_str(c, req);
  assert_int_equal(read_resp(c, &r), 0);
  assert_int_equal(r.status, 414);
  client_free(c);

  /* Duplicate signature headers are ambiguous: refused. */
  c = client_new(&fx);
  post(c, "/webhook/card", "{}",
       "X-Lark-Signature: a\r\nx-lark-signature: b\r\n");
  assert_int_equal(read_resp(c, &r), 0);
  assert_int_equal(r.status, 400);
  assert_non_null(strstr(r.body, "duplicate X-Lark-Signature"));
  client_free(c);
  free(req);
  stop(&fx);
}

static void test_connection_limit(void **state) {
  (void)state;
  fixture fx;
  cg_server_options so;
  cg_server_options_init(&so);
  so.max_connections = 2;
  start_with(&fx, &so);
  run_loop(&fx);
  resp r;
  client *a = client_new(&fx);
  client *b = client_new(&fx);
  send_str(a, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
  assert_int_equal(read_resp(a, &r), 0);
  send_str(b, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
  assert_int_equal(read_resp(b, &r), 0);
  assert_non_null(strstr(r.body, "\"connections\":2"));

  client *c = client_new(&fx);
  if (read_resp(c, &r) == 0) {
    assert_int_equal(r.status, 503);
    assert_true(r.conn_close);
    assert_non_null(strstr(r.body, "too many connections"));
  }
  assert_true(read_eof(c));
  client_free(c);

  post(a, "/webhook/card", LEGACY_BODY, NULL);
  assert_int_equal(read_resp(a, &r), 0);
  assert_int_equal(r.status, 200);
  post(b, "/webhook/card", LEGACY_BODY, NULL);
  assert_int_equal(read_resp(b, &r), 0);
  assert_int_equal(r.status, 200);

  /* A slot frees when a connection ends. */
  client_free(b);
  usleep(50000);
  c = client_new(&fx);
  send_str(c, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
  assert_int_equal(read_resp(c, &r), 0);
  assert_int_equal(r.status, 200);
  client_free(c);
  client_free(a);
  stop(&fx);
}

static void test_client_disconnect(void **state) {
  (void)state;
  fixture fx;
  cg_server_options so;
  cg_server_options_init(&so);
  start_with(&fx, &so);
  fx.delay_ms = 100;
  assert_int_equal(cg_app_route(fx.app, NULL, slow_handler, &fx), 0);
  run_loop(&fx);
  resp r;

  /* Half-close after the request: the answer still comes. */
  client *c = client_new(&fx);
  post(c, "/webhook/card", LEGACY_BODY, NULL);
  shutdown(c->fd, SHUT_WR);
  assert_int_equal(read_resp(c, &r), 0);
  assert_int_equal(r.status, 200);
  assert_true(read_eof(c));
  client_free(c);

  /* Close while the app holds the request. */
  c = client_new(&fx);
  post(c, "/webhook/card", LEGACY_BODY, NULL);
  usleep(20000);
  client_free(c);

  /* Reset while the app holds the request. */
  c = client_new(&fx);
  post(c, "/webhook/card", LEGACY_BODY, NULL);
  usleep(20000);
  struct linger lg = {1, 0};
  setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
  client_free(c);

  /* Gone in the middle of the headers and of the body. */
  c = client_new(&fx);
  send_str(c, "POST /webhook/card HTTP/1.1\r\nHost:");
  client_free(c);
  c = client_new(&fx);
  send_str(c,
           "POST /webhook/card HTTP/1.1\r\nHost: t\r\nContent-Length: 99\r\n"
           "\r\n{");
  client_free(c);

  usleep(250000); /* the delayed answers arrive for gone clients */
  c = client_new(&fx);
  send_str(c, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
  assert_int_equal(read_resp(c, &r), 0);
  assert_int_equal(r.status, 200);
  assert_non_null(strstr(r.body, "\"connections\":1,"));
  client_free(c);
  stop(&fx);
  assert_int_equal(fx.handled, 3);
}

static void test_close_with_idle_connection(void **state) {
  (void)state;
  fixture fx;
  start(&fx);
  client *c = client_new(&fx);
  client *d = client_new(&fx); /* never sends anything */
  resp r;
  send_str(c, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
  assert_int_equal(read_resp(c, &r), 0);
  stop(&fx); /* completes although both connections are open */
  assert_true(read_eof(c));
  assert_true(read_eof(d));
  client_free(c);
  client_free(d);
}

static void test_close_waits_for_in_flight(void **state) {
  (void)state;
  fixture fx;
  cg_server_options so;
  cg_server_options_init(&so);
  start_with(&fx, &so);
  fx.delay_ms = 200;
  assert_int_equal(cg_app_route(fx.app, NULL, slow_handler, &fx), 0);
  run_loop(&fx);
  client *c = client_new(&fx);
  resp r;
  post(c, "/webhook/card", LEGACY_BODY, NULL);
  usleep(50000);
  uv_async_send(&fx.stop); /* close while the app holds the request */
  assert_int_equal(read_resp(c, &r), 0);
  assert_int_equal(r.status, 200);
  assert_string_equal(r.body, "{}");
  assert_true(r.conn_close);
  assert_true(read_eof(c));
  assert_int_equal(pthread_join(fx.th, NULL), 0);
  assert_int_equal(fx.closed, 1);
  assert_int_equal(uv_loop_close(&fx.loop), 0);
  pthread_mutex_destroy(&fx.log_mu);
  client_free(c);
}

static void test_expect_continue(void **state) {
  (void)state;
  fixture fx;
  start(&fx);
  client *c = client_new(&fx);
  resp r;
  char req[512];
  snprintf(req, sizeof(req),
           "POST /webhook/card HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n"
           "Content-Length: %zu\r\n\r\n",
           strlen(LEGACY_BODY));
  send_str(c, req);
  assert_int_equal(read_resp(c, &r), 0);
  assert_int_equal(r.status, 100);
  send_str(c, LEGACY_BODY);
  assert_int_equal(read_resp(c, &r), 0);
  assert_int_equal(r.status, 200);
  assert_string_equal(r.body, "{}");
  client_free(c);
  stop(&fx);
}

static void test_ipv6_and_reuse_port(void **state) {
  (void)state;
  /* IPv6 loopback, when the host has it. */
  int probe = socket(AF_INET6, SOCK_STREAM, 0);
  struct sockaddr_in6 a6;
  memset(&a6, 0, sizeof(a6));
  a6.sin6_family = AF_INET6;
  a6.sin6_addr = in6addr_loopback;
  int have6 =
      probe >= 0 && bind(probe, (struct sockaddr *)&a6, sizeof(a6)) == 0;
  if (probe >= 0) close(probe);
  if (have6) {
    fixture fx;
    cg_server_options so;
    cg_server_options_init(&so);
    so.host = "[::1]";
    start_with(&fx, &so);
    run_loop(&fx);
    client *c = calloc(1, sizeof(*c));
    assert_non_null(c);
    c->fd = connect_to(AF_INET6, "::1", fx.port);
    resp r;
    send_str(c, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_int_equal(read_resp(c, &r), 0);
    assert_int_equal(r.status, 200);
    client_free(c);
    stop(&fx);
  }

  /* Two servers on one port with SO_REUSEPORT; without it the second fails. */
  uv_loop_t loop;
  assert_int_equal(uv_loop_init(&loop), 0);
  cg_app_options ao;
  cg_app_options_init(&ao);
  int err = 0;
  cg_app *app = cg_app_new(&loop, &ao, &err);
  assert_non_null(app);
  cg_server_options so;
  cg_server_options_init(&so);
  so.reuse_port = 1;
  cg_server *s1 = cg_server_new(app, &so, &err);
  assert_non_null(s1);
  assert_int_equal(cg_server_listen(s1), 0);
  so.port = cg_server_port(s1);
  cg_server *s2 = cg_server_new(app, &so, &err);
  assert_non_null(s2);
  assert_int_equal(cg_server_listen(s2), 0);
  assert_int_equal(cg_server_port(s2), so.port);
  so.reuse_port = 0;
  cg_server *s3 = cg_server_new(app, &so, &err);
  assert_non_null(s3);
  assert_int_equal(cg_server_listen(s3), UV_EADDRINUSE);
  cg_server_close(s1, NULL, NULL);
  cg_server_close(s2, NULL, NULL);
  cg_server_close(s3, NULL, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  cg_app_free(app);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0);

  /* Bad options. */
  assert_int_equal(uv_loop_init(&loop), 0);
  app = cg_app_new(&loop, &ao, &err);
  cg_server_options_init(&so);
  so.host = "not-an-ip";
  assert_null(cg_server_new(app, &so, &err));
  assert_int_equal(err, CG_EINVAL);
  cg_server_options_init(&so);
  so.card_path = "webhook";
  assert_null(cg_server_new(app, &so, &err));
  assert_int_equal(err, CG_EINVAL);
  cg_server_options_init(&so);
  so.max_body = 64u * 1024u * 1024u;
  assert_null(cg_server_new(app, &so, &err));
  assert_int_equal(err, CG_EINVAL);
  cg_app_free(app);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_legacy_callback),
      cmocka_unit_test(test_healthz),
      cmocka_unit_test(test_not_found),
      cmocka_unit_test(test_method_not_allowed),
      cmocka_unit_test(test_body_too_big_content_length),
      cmocka_unit_test(test_body_too_big_chunked),
      cmocka_unit_test(test_garbage),
      cmocka_unit_test(test_header_timeout),
      cmocka_unit_test(test_idle_timeout),
      cmocka_unit_test(test_pipelined),
      cmocka_unit_test(test_pipelined_slow_handler),
      cmocka_unit_test(test_pipelined_backpressure),
      cmocka_unit_test(test_keep_alive),
      cmocka_unit_test(test_http10),
      cmocka_unit_test(test_upgrade_closes),
      cmocka_unit_test(test_large_body),
      cmocka_unit_test(test_giant_header),
      cmocka_unit_test(test_connection_limit),
      cmocka_unit_test(test_client_disconnect),
      cmocka_unit_test(test_close_with_idle_connection),
      cmocka_unit_test(test_close_waits_for_in_flight),
      cmocka_unit_test(test_expect_continue),
      cmocka_unit_test(test_ipv6_and_reuse_port),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
