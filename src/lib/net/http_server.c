/* The HTTP/1.1 server: Lark webhooks and /healthz on the app's libuv loop.
 *
 * One connection = one struct conn holding its uv_tcp_t, one uv_timer_t and
 * an http_parser. Requests on a connection are handled one at a time: when a
 * request is complete the parser is paused, the request goes to the app, and
 * bytes that arrive meanwhile (pipelining) wait in conn.in until the answer
 * is queued. That keeps answers in request order without a queue of
 * responses. Design notes and limits: docs/http-server.md. */
#include <errno.h>
#include <http_parser.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "../../common/common.h"
#include "../../common/limits.h"
#include "../codec/lark_webhook.h"
#include "../core/app_int.h"
#include "../transport/conn_int.h"
#include "cardgate/server.h"
#include "http_server_int.h"

/* One read buffer for the whole server: libuv calls alloc, read(2) and the
 * read callback back to back for one stream on the loop thread, and every
 * byte we keep is copied out before the callback returns. */
#define READ_BUF_SIZE (64u * 1024u)
#define LISTEN_BACKLOG 1024
/* After an answer that ends the connection we half-close and keep reading
 * (discarding) until the peer closes, for at most this long. Closing with
 * unread input makes the kernel send RST, which can destroy the answer
 * before the client reads it (RFC 9112 §9.6). */
#define LINGER_MS CG_LIMIT_HTTP_LINGER_MS
/* Stop parsing pipelined requests while this much output waits to be
 * written (the client is not reading its answers). */
#define OUT_HIGH_WATER CG_LIMIT_HTTP_OUT_HIGH_WATER
/* Connections over max_connections being answered 503 at once; beyond this
 * they are closed without an answer. */
#define MAX_REJECTING CG_LIMIT_HTTP_REJECTING
/* Per-connection buffers grown past this are released between requests so
 * one big request does not pin memory on an idle keep-alive connection. */
#define SHRINK_ABOVE (64u * 1024u)
/* Longest header name we need to recognize ("X-Lark-Request-Timestamp"). */
#define FIELD_MAX 32u

typedef enum {
  T_NONE = 0,
  T_IDLE,   /* waiting for the first byte of a request: close silently */
  T_HEADER, /* request started, headers incomplete: 408 */
  T_BODY,   /* headers complete, body incomplete: 408 */
  T_LINGER, /* final answer queued: close when it fires */
  T_RESUME  /* 0 ms: parse buffered pipelined input on a fresh stack */
} timer_state;

typedef enum {
  R_NONE = 0,
  R_CARD,
  R_EVENT,
  R_HEALTH,
  R_NOT_FOUND,
  R_BAD_METHOD,
  R_HANDLER /* generic mode: every request goes to the handler */
} route_kind;

/* The request headers we keep (values only; names are matched and dropped). */
/* H_AUTH and H_CTYPE are kept only in generic (handler) mode: the webhook
 * path matches the first H_APP_COUNT names. */
enum {
  H_TIMESTAMP = 0,
  H_NONCE,
  H_SIGNATURE,
  H_EXPECT,
  H_APP_COUNT,
  H_AUTH = H_APP_COUNT,
  H_CTYPE,
  H_DTTOKEN, /* x-acs-dingtalk-access-token: the emulator's DingTalk API */
  H_COUNT
};
static const char *const header_names[H_COUNT] = {
    "x-lark-request-timestamp", "x-lark-request-nonce", "x-lark-signature",
    "expect", "authorization", "content-type", "x-acs-dingtalk-access-token"};
static const char *const header_display[H_COUNT] = {
    "X-Lark-Request-Timestamp", "X-Lark-Request-Nonce", "X-Lark-Signature",
    "Expect", "Authorization", "Content-Type", "x-acs-dingtalk-access-token"};

typedef struct conn conn;

struct cg_server {
  uv_tcp_t listener;
  cg_app *app;     /* borrowed; NULL in generic (handler) mode */
  uv_loop_t *loop; /* the app's */
  cg__http_handler_fn handler; /* generic mode (http_server_int.h) */
  void *handler_ud;
  cg_log_fn log; /* generic mode's log sink (the app logs otherwise) */
  void *log_ud;
  char *host;
  char *card_path;
  char *event_path;
  size_t card_path_len;
  size_t event_path_len;
  struct sockaddr_storage addr;
  int port;
  size_t max_body;
  size_t max_header;
  size_t in_cap; /* buffered unparsed input per connection before read stop */
  uint32_t header_timeout_ms;
  uint32_t body_timeout_ms;
  uint32_t idle_timeout_ms;
  uint32_t max_connections;
  int reuse_port;
  unsigned listening : 1;
  unsigned closing : 1;
  unsigned listener_closed : 1;
  unsigned spare_busy : 1; /* spare is accepting-to-close (see on_connection) */
  uv_tcp_t spare;
  cg_server_close_cb close_cb;
  void *close_ud;
  conn *conns;         /* every connection not yet freed */
  uint32_t nconns;     /* served connections not closing */
  uint32_t nrejecting; /* over-limit connections being answered */
  uint64_t nrequests;  /* requests dispatched since start */
  char rbuf[READ_BUF_SIZE];
};

struct conn {
  uv_tcp_t tcp;
  uv_timer_t timer;
  uv_write_t wreq;
  uv_shutdown_t sreq;
  http_parser parser;
  cg_server *srv;
  conn *prev, *next;
  int refs; /* tcp handle + timer handle + a request held by the app */
  timer_state tstate;
  unsigned closing : 1;           /* uv_close called */
  unsigned busy : 1;              /* the app holds the current request */
  unsigned dispatching : 1;       /* inside cg_app_handle_lark_http */
  unsigned writing : 1;           /* uv_write of wbuf in flight */
  unsigned close_after_write : 1; /* the answer queued last ends it */
  unsigned shutting : 1;          /* uv_shutdown called */
  unsigned lingering : 1;         /* half-closed, discarding input */
  unsigned reading : 1;
  unsigned eof : 1; /* the peer half-closed */
  unsigned rejected : 1;
  unsigned counted : 1; /* counted in srv->nconns */
  unsigned keep_alive : 1;
  unsigned head : 1;
  unsigned upgrade : 1;

  /* The request being parsed. */
  route_kind route;
  const char *allow;
  size_t header_bytes;
  size_t body_seen; /* body bytes of a request not going to the app */
  int last_cb;      /* 0 none, 1 header field, 2 header value */
  int hdr_cur;      /* which kept header the current value is, or -1 */
  char field[FIELD_MAX];
  size_t field_len; /* > FIELD_MAX - 1: a name we do not keep */
  size_t hv_off[H_COUNT];
  size_t hv_len[H_COUNT];
  unsigned char hv_set[H_COUNT];
  cg_buf hv;   /* the kept header values, back to back */
  cg_buf url;  /* the request target */
  cg_buf body; /* the body of an app request */
  int err_status;
  int err_code;
  char err_msg[256];

  /* Input received but not parsed yet: [in_off, in.len). */
  cg_buf in;
  size_t in_off;
  size_t discarded; /* bytes dropped after the final answer */

  /* Output: obuf collects answers; wbuf is the one being written. */
  cg_buf obuf;
  cg_buf wbuf;

  char peer[INET6_ADDRSTRLEN + 8];
  /* Generic mode: set around one conn_respond call (borrowed). */
  const char *reply_ctype;
  const char *reply_extra;
};

static int on_message_begin(http_parser *p);
static int on_url(http_parser *p, const char *at, size_t n);
static int on_header_field(http_parser *p, const char *at, size_t n);
static int on_header_value(http_parser *p, const char *at, size_t n);
static int on_headers_complete(http_parser *p);
static int on_body(http_parser *p, const char *at, size_t n);
static int on_message_complete(http_parser *p);

static const http_parser_settings parser_settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

static void conn_close(conn *c);
static void conn_flush(conn *c);
static void conn_drain(conn *c);
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b);
static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b);

/* ------------------------------------------------------------- options */

void cg_server_options_init(cg_server_options *o) {
  memset(o, 0, sizeof(*o));
  o->host = "127.0.0.1";
  o->port = 0;
  o->card_path = "/webhook/card";
  o->event_path = "/webhook/event";
  o->max_body = CG_LIMIT_BODY_DEFAULT;
  o->max_header = CG_LIMIT_HEADER_BYTES;
  o->header_timeout_ms = 10000;
  o->body_timeout_ms = 10000;
  o->idle_timeout_ms = 60000;
  o->max_connections = 10000;
  o->reuse_port = 0;
}

/* "127.0.0.1", "::1", "[::1]", "0.0.0.0", "::" — numeric only: resolving a
 * name would block the loop. */
static int parse_host(const char *host, int port, struct sockaddr_storage *ss) {
  char tmp[INET6_ADDRSTRLEN + 2];
  size_t n = strlen(host);
  memset(ss, 0, sizeof(*ss));
  if (n >= 2 && host[0] == '[' && host[n - 1] == ']') {
    if (n - 2 >= sizeof(tmp)) return CG_EINVAL;
    memcpy(tmp, host + 1, n - 2);
    tmp[n - 2] = '\0';
    host = tmp;
  }
  if (uv_ip4_addr(host, port, (struct sockaddr_in *)ss) == 0) return 0;
  if (uv_ip6_addr(host, port, (struct sockaddr_in6 *)ss) == 0) return 0;
  return CG_EINVAL;
}

static void server_free(cg_server *s) {
  free(s->host);
  free(s->card_path);
  free(s->event_path);
  free(s);
}

static cg_server *server_create(cg_app *app, uv_loop_t *loop,
                                const cg_server_options *o, int *err) {
  cg_server_options d;
  int rc = CG_EINVAL;
  cg_server *s = NULL;
  cg_server_options_init(&d);
  if ((!app && !loop) || !o) goto fail;
  const char *host = cg_str_empty(o->host) ? d.host : o->host;
  const char *card = cg_str_empty(o->card_path) ? d.card_path : o->card_path;
  const char *event =
      cg_str_empty(o->event_path) ? d.event_path : o->event_path;
  if (card[0] != '/' || event[0] != '/' || strlen(card) >= CG_LIMIT_URL ||
      strlen(event) >= CG_LIMIT_URL || o->port < 0 || o->port > 65535)
    goto fail;
  size_t max_body = o->max_body ? o->max_body : d.max_body;
  if (max_body > CG_LIMIT_BODY_HARD) goto fail;

  rc = CG_ENOMEM;
  s = calloc(1, sizeof(*s));
  if (!s) goto fail;
  s->app = app;
  s->loop = app ? cg__app_loop(app) : loop;
  s->host = cg_strdup(host);
  s->card_path = cg_strdup(card);
  s->event_path = cg_strdup(event);
  if (!s->host || !s->card_path || !s->event_path) goto fail;
  s->card_path_len = strlen(card);
  s->event_path_len = strlen(event);
  rc = parse_host(s->host, o->port, &s->addr);
  if (rc) goto fail;
  s->max_body = max_body;
  s->max_header = o->max_header ? o->max_header : d.max_header;
  /* Input that waits while a request is with the app: a little more than
   * one request head. The body of a request is streamed into its own
   * buffer once parsing resumes, so more buffering only lets a client that
   * never reads its answers pin memory; TCP flow control holds the rest. */
  s->in_cap = s->max_header + READ_BUF_SIZE;
  s->header_timeout_ms =
      o->header_timeout_ms ? o->header_timeout_ms : d.header_timeout_ms;
  s->body_timeout_ms =
      o->body_timeout_ms ? o->body_timeout_ms : d.body_timeout_ms;
  s->idle_timeout_ms =
      o->idle_timeout_ms ? o->idle_timeout_ms : d.idle_timeout_ms;
  s->max_connections =
      o->max_connections ? o->max_connections : d.max_connections;
  s->reuse_port = o->reuse_port;
  /* The socket is created now, with its family, so SO_REUSEPORT can be set
   * before bind (libuv 1.44 has no flag for it). */
  rc = uv_tcp_init_ex(s->loop, &s->listener, s->addr.ss_family);
  if (rc) goto fail;
  s->listener.data = s;
  if (err) *err = 0;
  return s;
fail:
  if (s) server_free(s);
  if (err) *err = rc;
  return NULL;
}

cg_server *cg_server_new(cg_app *app, const cg_server_options *o, int *err) {
  if (!app) {
    if (err) *err = CG_EINVAL;
    return NULL;
  }
  return server_create(app, NULL, o, err);
}

cg_server *cg__server_new_handler(uv_loop_t *loop, const cg_server_options *o,
                                  cg__http_handler_fn fn, void *ud,
                                  cg_log_fn log, void *log_ud, int *err) {
  if (!loop || !fn) {
    if (err) *err = CG_EINVAL;
    return NULL;
  }
  cg_server *s = server_create(NULL, loop, o, err);
  if (!s) return NULL;
  s->handler = fn;
  s->handler_ud = ud;
  s->log = log;
  s->log_ud = log_ud;
  return s;
}

/* ---------------------------------------------------------- small tools */

static size_t fmt_u64(char *out, uint64_t v) {
  char tmp[24];
  size_t n = 0;
  do {
    tmp[n++] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  for (size_t i = 0; i < n; i++) out[i] = tmp[n - 1 - i];
  return n;
}

static int lower_eq(const char *a, size_t n, const char *lower) {
  for (size_t i = 0; i < n; i++) {
    char ch = a[i];
    if (ch >= 'A' && ch <= 'Z') ch = (char)(ch - 'A' + 'a');
    if (ch != lower[i] || !lower[i]) return 0;
  }
  return lower[n] == '\0';
}

static void peer_name(conn *c) {
  struct sockaddr_storage ss;
  int len = (int)sizeof(ss);
  char ip[INET6_ADDRSTRLEN];
  cg_strlcpy(c->peer, "?", sizeof(c->peer));
  if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len)) return;
  if (ss.ss_family == AF_INET) {
    const struct sockaddr_in *in = (const struct sockaddr_in *)&ss;
    if (uv_ip4_name(in, ip, sizeof(ip)) == 0)
      cg_fmt(c->peer, sizeof(c->peer), "%s:%u", ip, ntohs(in->sin_port));
  } else if (ss.ss_family == AF_INET6) {
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&ss;
    if (uv_ip6_name(in6, ip, sizeof(ip)) == 0)
      cg_fmt(c->peer, sizeof(c->peer), "[%s]:%u", ip, ntohs(in6->sin6_port));
  }
}

static void on_timer(uv_timer_t *t);

static void timer_set(conn *c, timer_state st, uint64_t ms) {
  c->tstate = st;
  uv_timer_start(&c->timer, on_timer, ms, 0);
}

static void timer_stop(conn *c) {
  c->tstate = T_NONE;
  uv_timer_stop(&c->timer);
}

static size_t in_pending(const conn *c) {
  return c->in.len - c->in_off;
}

/* The parser must wait: a request is with the app, the connection is
 * ending, a resume is scheduled, or too much output is queued. */
static int conn_paused(const conn *c) {
  return c->busy || c->closing || c->close_after_write ||
         c->tstate == T_RESUME || c->obuf.len >= OUT_HIGH_WATER;
}

static void read_start(conn *c) {
  if (c->reading || c->closing || c->eof) return;
  int rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
  if (rc) {
    cg__log(c->srv->app, CG_LOG_DEBUG, "http", "read from %s failed: %s",
            c->peer, cg_strerror(rc));
    conn_close(c);
    return;
  }
  c->reading = 1;
}

static void read_stop(conn *c) {
  if (!c->reading) return;
  uv_read_stop((uv_stream_t *)&c->tcp);
  c->reading = 0;
}

/* Reclaims the parsed prefix of c->in: all of it when empty, otherwise only
 * when it is at least half the buffer (amortized O(1) per byte). */
static void in_compact(conn *c, size_t incoming) {
  if (c->in_off == 0) return;
  if (c->in_off == c->in.len) {
    c->in_off = 0;
    if (c->in.cap > SHRINK_ABOVE)
      cg_buf_free(&c->in);
    else
      cg_buf_reset(&c->in);
  } else if (c->in_off >= c->in.len / 2 || c->in.len + incoming > c->in.max) {
    cg_buf_consume(&c->in, c->in_off);
    c->in_off = 0;
  }
}

/* ---------------------------------------------------------- connections */

/* The last step of cg_server_close: runs from a close callback or an app
 * answer, never inside cg_server_close itself. */
static void server_maybe_finish(cg_server *s) {
  if (!s->closing || !s->listener_closed || s->conns || s->spare_busy) return;
  cg_server_close_cb cb = s->close_cb;
  void *ud = s->close_ud;
  server_free(s);
  if (cb) cb(ud);
}

static void conn_free(conn *c) {
  cg_server *s = c->srv;
  if (c->prev)
    c->prev->next = c->next;
  else
    s->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  cg_buf_free(&c->hv);
  cg_buf_free(&c->url);
  cg_buf_free(&c->body);
  cg_buf_free(&c->in);
  cg_buf_free(&c->obuf);
  cg_buf_free(&c->wbuf);
  free(c);
  server_maybe_finish(s);
}

static void conn_unref(conn *c) {
  cg_assert(c->refs > 0);
  if (--c->refs == 0) conn_free(c);
}

static void on_conn_handle_close(uv_handle_t *h) {
  conn_unref(h->data);
}

static void conn_close(conn *c) {
  if (c->closing) return;
  c->closing = 1;
  c->reading = 0;
  if (c->counted) {
    c->srv->nconns--;
    c->counted = 0;
  }
  if (c->rejected) {
    c->srv->nrejecting--;
    c->rejected = 0;
  }
  uv_close((uv_handle_t *)&c->tcp, on_conn_handle_close);
  uv_close((uv_handle_t *)&c->timer, on_conn_handle_close);
}

static void on_shutdown(uv_shutdown_t *req, int status) {
  conn *c = req->data;
  if (c->closing) return;
  if (status < 0 || c->eof || c->srv->closing) {
    conn_close(c);
    return;
  }
  c->lingering = 1;
  read_start(c);
}

/* Everything queued is written and the last answer ends the connection. */
static void conn_end(conn *c) {
  if (c->shutting || c->closing) return;
  c->shutting = 1;
  if (c->eof) { /* the peer sends nothing more: no RST risk */
    conn_close(c);
    return;
  }
  c->sreq.data = c;
  if (uv_shutdown(&c->sreq, (uv_stream_t *)&c->tcp, on_shutdown)) conn_close(c);
}

static void on_write(uv_write_t *req, int status) {
  conn *c = req->data;
  c->writing = 0;
  if (c->wbuf.cap > SHRINK_ABOVE)
    cg_buf_free(&c->wbuf);
  else
    cg_buf_reset(&c->wbuf);
  if (c->closing) return; /* UV_ECANCELED: the handle is closing */
  if (status < 0) {
    cg__log(c->srv->app, CG_LOG_DEBUG, "http", "write to %s failed: %s",
            c->peer, cg_strerror(status));
    conn_close(c);
    return;
  }
  int was_full = c->obuf.len >= OUT_HIGH_WATER;
  conn_flush(c);
  if (was_full && !c->closing && !conn_paused(c)) conn_drain(c);
}

/* Writes obuf: uv_try_write first (the common case finishes here, with no
 * callback and no copy), the rest with uv_write from wbuf. */
static void conn_flush(conn *c) {
  if (c->closing || c->writing) return;
  if (c->obuf.len) {
    uv_buf_t b = uv_buf_init(c->obuf.data, (unsigned)c->obuf.len);
    int r = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    if (r == (int)c->obuf.len) {
      if (c->obuf.cap > SHRINK_ABOVE)
        cg_buf_free(&c->obuf);
      else
        cg_buf_reset(&c->obuf);
    } else if (r < 0 && r != UV_EAGAIN) {
      cg__log(c->srv->app, CG_LOG_DEBUG, "http", "write to %s failed: %s",
              c->peer, cg_strerror(r));
      conn_close(c);
      return;
    } else {
      size_t off = r > 0 ? (size_t)r : 0;
      cg_buf t = c->wbuf;
      c->wbuf = c->obuf;
      c->obuf = t;
      cg_buf_reset(&c->obuf);
      b = uv_buf_init(c->wbuf.data + off, (unsigned)(c->wbuf.len - off));
      c->wreq.data = c;
      r = uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_write);
      if (r) {
        cg__log(c->srv->app, CG_LOG_DEBUG, "http", "write to %s failed: %s",
                c->peer, cg_strerror(r));
        conn_close(c);
        return;
      }
      c->writing = 1;
      return;
    }
  }
  if (c->close_after_write) conn_end(c);
}

/* Queues one answer. The body is copied; status line, headers and body go
 * out as one buffer. must_close, an HTTP/1.0 client without keep-alive,
 * "Connection: close", an upgrade request or a closing server end the
 * connection after this answer. */
static void conn_respond(conn *c, int status, const char *allow,
                         const char *body, size_t len, int must_close) {
  static const char ctype[] =
      "Content-Type: application/json; charset=utf-8\r\nContent-Length: ";
  cg_server *s = c->srv;
  cg_buf *o = &c->obuf;
  /* After the peer's FIN, requests it sent before it are still answered:
   * the connection closes with the answer after which nothing is pending. */
  int keep = c->keep_alive && !must_close && !s->closing && !c->upgrade &&
             !c->rejected && !(c->eof && !in_pending(c));
  char num[24];
  const char *reason = http_status_str((enum http_status)status);
  int rc = cg_buf_append(o, "HTTP/1.1 ", 9);
  if (!rc) rc = cg_buf_append(o, num, fmt_u64(num, (uint64_t)status));
  if (!rc) rc = cg_buf_append(o, " ", 1);
  if (!rc) rc = cg_buf_appends(o, reason);
  if (!rc) rc = cg_buf_append(o, "\r\n", 2);
  if (!rc && c->reply_ctype) { /* generic mode only */
    rc = cg_buf_appends(o, "Content-Type: ");
    if (!rc) rc = cg_buf_appends(o, c->reply_ctype);
    if (!rc) rc = cg_buf_appends(o, "\r\nContent-Length: ");
  } else if (!rc) {
    rc = cg_buf_append(o, ctype, sizeof(ctype) - 1);
  }
  if (!rc) rc = cg_buf_append(o, num, fmt_u64(num, len));
  if (!rc) rc = cg_buf_append(o, "\r\n", 2);
  if (!rc && c->reply_extra) rc = cg_buf_appends(o, c->reply_extra);
  if (!rc && allow) {
    rc = cg_buf_append(o, "Allow: ", 7);
    if (!rc) rc = cg_buf_appends(o, allow);
    if (!rc) rc = cg_buf_append(o, "\r\n", 2);
  }
  if (!rc && !keep) rc = cg_buf_appends(o, "Connection: close\r\n");
  if (!rc && keep && c->parser.http_major == 1 && c->parser.http_minor == 0)
    rc = cg_buf_appends(o, "Connection: keep-alive\r\n");
  if (!rc) rc = cg_buf_append(o, "\r\n", 2);
  if (!rc && !c->head && len) rc = cg_buf_append(o, body, len);
  if (rc) {
    cg__log(s->app, CG_LOG_DEBUG, "http",
            "could not queue the answer to %s: %s", c->peer, cg_strerror(rc));
    conn_close(c);
    return;
  }
  if (!keep) {
    c->close_after_write = 1;
    timer_set(c, T_LINGER, LINGER_MS);
  } else {
    timer_set(c, T_IDLE, s->idle_timeout_ms);
  }
  conn_flush(c);
}

/* An error answer {"code":N,"msg":"..."}, logged at info with the peer. */
static void conn_respond_error(conn *c, int status, int code, const char *allow,
                               int must_close, const char *msg) {
  cg_buf b;
  cg_buf_init(&b, 2048);
  cg__log(c->srv->app, CG_LOG_INFO, "http", "rejected a request from %s: %d %s",
          c->peer, status, msg);
  if (cg__encode_error(code, msg, &b) != 0) {
    cg_buf_free(&b);
    conn_close(c);
    return;
  }
  conn_respond(c, status, allow, b.data, b.len, must_close);
  cg_buf_free(&b);
}

/* Records why parsing must stop; the caller returns -1 to the parser. */
static int req_fail(conn *c, int status, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int req_fail(conn *c, int status, int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(c->err_msg, sizeof(c->err_msg), fmt, ap);
  va_end(ap);
  c->err_status = status;
  c->err_code = code;
  return -1;
}

static int fail_body_too_big(conn *c) {
  return req_fail(c, 413, CG_ETOOBIG,
                  "request body exceeds the %zu-byte limit; raise --max-body "
                  "if this is a genuine callback",
                  c->srv->max_body);
}

static int fail_headers_too_big(conn *c) {
  return req_fail(c, 431, CG_ETOOBIG,
                  "request headers exceed the %zu-byte limit",
                  c->srv->max_header);
}

/* ------------------------------------------------------ parser callbacks */

static int on_message_begin(http_parser *p) {
  conn *c = p->data;
  if (c->closing) return -1;
  c->route = R_NONE;
  c->allow = NULL;
  c->header_bytes = 0;
  c->body_seen = 0;
  c->last_cb = 0;
  c->hdr_cur = -1;
  c->field_len = 0;
  memset(c->hv_set, 0, sizeof(c->hv_set));
  cg_buf_reset(&c->hv);
  cg_buf_reset(&c->url);
  if (c->body.cap > SHRINK_ABOVE)
    cg_buf_free(&c->body);
  else
    cg_buf_reset(&c->body);
  c->keep_alive = 0;
  c->head = 0;
  c->upgrade = 0;
  timer_set(c, T_HEADER, c->srv->header_timeout_ms);
  return 0;
}

static int on_url(http_parser *p, const char *at, size_t n) {
  conn *c = p->data;
  c->header_bytes += n;
  if (cg_buf_append(&c->url, at, n) != 0)
    return req_fail(c, 414, CG_ETOOBIG,
                    "request target exceeds the %u-byte limit", CG_LIMIT_URL);
  return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t n) {
  conn *c = p->data;
  if (c->last_cb != 1) { /* a new header starts */
    c->last_cb = 1;
    c->field_len = 0;
    c->header_bytes += 4; /* ": " and CRLF */
  }
  c->header_bytes += n;
  if (c->header_bytes > c->srv->max_header) return fail_headers_too_big(c);
  if (c->field_len + n < FIELD_MAX) {
    memcpy(c->field + c->field_len, at, n);
    c->field_len += n;
  } else {
    c->field_len = FIELD_MAX; /* not one we keep */
  }
  return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t n) {
  conn *c = p->data;
  if (c->last_cb != 2) { /* the value of the field just read starts */
    c->last_cb = 2;
    c->hdr_cur = -1;
    if (c->field_len < FIELD_MAX) {
      int nkept = c->srv->handler ? H_COUNT : H_APP_COUNT;
      for (int i = 0; i < nkept; i++) {
        if (lower_eq(c->field, c->field_len, header_names[i])) {
          c->hdr_cur = i;
          break;
        }
      }
    }
    if (c->hdr_cur >= 0) {
      if (c->hv_set[c->hdr_cur])
        return req_fail(c, 400, CG_EMALFORMED, "duplicate %s header",
                        header_display[c->hdr_cur]);
      c->hv_set[c->hdr_cur] = 1;
      c->hv_off[c->hdr_cur] = c->hv.len;
      c->hv_len[c->hdr_cur] = 0;
    }
  }
  c->header_bytes += n;
  if (c->header_bytes > c->srv->max_header) return fail_headers_too_big(c);
  if (c->hdr_cur >= 0) {
    if (c->hv_len[c->hdr_cur] + n > CG_LIMIT_HEADER_VALUE)
      return req_fail(c, 431, CG_ETOOBIG, "%s header exceeds the %u-byte limit",
                      header_display[c->hdr_cur], CG_LIMIT_HEADER_VALUE);
    if (cg_buf_append(&c->hv, at, n) != 0)
      return req_fail(c, 500, CG_ENOMEM, "out of memory");
    c->hv_len[c->hdr_cur] += n;
  }
  return 0;
}

/* The path of the request target: origin-form up to '?' or '#', or the path
 * of an absolute-form target. 0 or -1. */
static int url_path(const char *u, size_t n, const char **path, size_t *len) {
  if (n && u[0] == '/') {
    size_t i = 0;
    while (i < n && u[i] != '?' && u[i] != '#') i++;
    *path = u;
    *len = i;
    return 0;
  }
  struct http_parser_url pu;
  http_parser_url_init(&pu);
  if (n && http_parser_parse_url(u, n, 0, &pu) == 0 &&
      (pu.field_set & (1u << UF_PATH))) {
    *path = u + pu.field_data[UF_PATH].off;
    *len = pu.field_data[UF_PATH].len;
    return 0;
  }
  return -1;
}

static int path_is(const char *p, size_t n, const char *want, size_t wn) {
  return n == wn && memcmp(p, want, n) == 0;
}

static void route_request(conn *c) {
  cg_server *s = c->srv;
  const char *path = NULL;
  size_t len = 0;
  unsigned m = c->parser.method;
  c->route = R_NOT_FOUND;
  if (url_path(c->url.data, c->url.len, &path, &len) != 0) return;
  if (s->handler) {
    c->route = R_HANDLER;
    return;
  }
  if (path_is(path, len, s->card_path, s->card_path_len) ||
      path_is(path, len, s->event_path, s->event_path_len)) {
    if (m == HTTP_POST)
      c->route =
          path_is(path, len, s->card_path, s->card_path_len) ? R_CARD : R_EVENT;
    else {
      c->route = R_BAD_METHOD;
      c->allow = "POST";
    }
  } else if (path_is(path, len, "/healthz", 8)) {
    if (m == HTTP_GET || m == HTTP_HEAD)
      c->route = R_HEALTH;
    else {
      c->route = R_BAD_METHOD;
      c->allow = "GET, HEAD";
    }
  }
}

static void trim_value(conn *c, int i) {
  while (c->hv_len[i]) {
    char ch = c->hv.data[c->hv_off[i] + c->hv_len[i] - 1];
    if (ch != ' ' && ch != '\t') break;
    c->hv_len[i]--;
  }
}

static int on_headers_complete(http_parser *p) {
  conn *c = p->data;
  cg_server *s = c->srv;
  for (int i = 0; i < H_COUNT; i++)
    if (c->hv_set[i]) trim_value(c, i);
  c->keep_alive = http_should_keep_alive(p) ? 1 : 0;
  c->upgrade = p->upgrade ? 1 : 0;
  c->head = p->method == HTTP_HEAD;
  route_request(c);
  int has_len = (p->flags & F_CONTENTLENGTH) != 0;
  if (has_len && p->content_length > s->max_body) return fail_body_too_big(c);
  int has_body = (p->flags & F_CHUNKED) || (has_len && p->content_length > 0);
  if (!has_body) return 0;
  timer_set(c, T_BODY, s->body_timeout_ms);
  /* curl and others wait (1 s) for this before sending a body > 1 KiB. */
  if (c->hv_set[H_EXPECT] && p->http_major == 1 && p->http_minor >= 1 &&
      lower_eq(c->hv.data + c->hv_off[H_EXPECT], c->hv_len[H_EXPECT],
               "100-continue")) {
    if (cg_buf_appends(&c->obuf, "HTTP/1.1 100 Continue\r\n\r\n") != 0)
      return req_fail(c, 500, CG_ENOMEM, "out of memory");
    conn_flush(c);
    if (c->closing) return -1;
  }
  return 0;
}

static int on_body(http_parser *p, const char *at, size_t n) {
  conn *c = p->data;
  if (c->route == R_CARD || c->route == R_EVENT || c->route == R_HANDLER) {
    int rc = cg_buf_append(&c->body, at, n);
    if (rc == CG_ETOOBIG) return fail_body_too_big(c);
    if (rc) return req_fail(c, 500, CG_ENOMEM, "out of memory");
  } else {
    c->body_seen += n;
    if (c->body_seen > c->srv->max_body) return fail_body_too_big(c);
  }
  return 0;
}

static int on_message_complete(http_parser *p) {
  /* Stop here: http_parser_execute returns after this message, and the
   * rest of the input waits until the answer is queued. */
  http_parser_pause(p, 1);
  return 0;
}

/* ------------------------------------------------------------- dispatch */

static const char *hv_ptr(const conn *c, int i) {
  return c->hv_set[i] ? c->hv.data + c->hv_off[i] : NULL;
}

static void on_app_done(int status, const char *body, size_t len, void *ud) {
  conn *c = ud;
  cg_assert(c->busy);
  c->busy = 0;
  if (!c->closing) {
    conn_respond(c, status, NULL, body, len, 0);
    c->reply_ctype = NULL;
    c->reply_extra = NULL;
    /* Not inside our own parse loop: continue with buffered input on the
     * next loop turn (never re-enter the app from its own callback). */
    if (!c->dispatching && !c->closing && !c->close_after_write) {
      if (in_pending(c))
        timer_set(c, T_RESUME, 0);
      else
        conn_drain(c);
    }
  }
  conn_unref(c);
}

static void dispatch_app(conn *c) {
  cg_server *s = c->srv;
  cg_http_request req;
  memset(&req, 0, sizeof(req));
  req.timestamp = hv_ptr(c, H_TIMESTAMP);
  req.timestamp_len = c->hv_set[H_TIMESTAMP] ? c->hv_len[H_TIMESTAMP] : 0;
  req.nonce = hv_ptr(c, H_NONCE);
  req.nonce_len = c->hv_set[H_NONCE] ? c->hv_len[H_NONCE] : 0;
  req.signature = hv_ptr(c, H_SIGNATURE);
  req.signature_len = c->hv_set[H_SIGNATURE] ? c->hv_len[H_SIGNATURE] : 0;
  req.body = c->body.data ? c->body.data : "";
  req.body_len = c->body.len;
  c->busy = 1;
  c->dispatching = 1;
  c->refs++;
  int rc = cg_app_handle_lark_http(
      s->app,
      c->route == R_CARD ? CG_LARK_ENDPOINT_CARD : CG_LARK_ENDPOINT_EVENT, &req,
      on_app_done, c);
  c->dispatching = 0;
  /* Answered later: no timeout while the app holds it (its deadline bounds
   * it). An answer inside the call has already re-armed the timer. */
  if (rc == 0 && c->busy) timer_stop(c);
  if (rc < 0) {
    c->busy = 0;
    c->refs--;
    char msg[128];
    cg_fmt(msg, sizeof(msg), "could not handle the request: %s",
           cg_strerror(rc));
    conn_respond_error(c, 500, rc, NULL, 0, msg);
  }
}

/* ------------------------------------------------------ generic mode */

struct cg__http_req {
  conn c; /* never instantiated: cg__http_req * is a conn * */
};

void cg__server_reply_ex(cg__http_req *req, int status,
                         const char *content_type, const char *extra_headers,
                         const char *body, size_t len) {
  conn *c = (conn *)req;
  cg_assert(c->busy);
  if (!c->closing) {
    c->reply_ctype = content_type;
    c->reply_extra = extra_headers;
  }
  on_app_done(status, body, len, c);
}

void cg__server_reply(cg__http_req *req, int status, const char *body,
                      size_t len) {
  cg__server_reply_ex(req, status, NULL, NULL, body, len);
}

static void dispatch_handler(conn *c) {
  cg_server *s = c->srv;
  cg__http_request r;
  const char *u = c->url.data ? c->url.data : "";
  const char *path = "/";
  size_t plen = 1;
  memset(&r, 0, sizeof(r));
  r.method = http_method_str((enum http_method)c->parser.method);
  if (url_path(u, c->url.len, &path, &plen) != 0) {
    path = "/";
    plen = 1;
  }
  r.path = path;
  r.path_len = plen;
  const char *q = memchr(u, '?', c->url.len);
  if (q) {
    const char *end = memchr(q, '#', (size_t)(u + c->url.len - q));
    r.query = q + 1;
    r.query_len = (size_t)((end ? end : u + c->url.len) - (q + 1));
  }
  r.authorization = hv_ptr(c, H_AUTH);
  r.authorization_len = c->hv_set[H_AUTH] ? c->hv_len[H_AUTH] : 0;
  r.content_type = hv_ptr(c, H_CTYPE);
  r.content_type_len = c->hv_set[H_CTYPE] ? c->hv_len[H_CTYPE] : 0;
  r.dt_token = hv_ptr(c, H_DTTOKEN);
  r.dt_token_len = c->hv_set[H_DTTOKEN] ? c->hv_len[H_DTTOKEN] : 0;
  r.body = c->body.data ? c->body.data : "";
  r.body_len = c->body.len;
  c->busy = 1;
  c->dispatching = 1;
  c->refs++;
  s->handler((cg__http_req *)c, &r, s->handler_ud);
  c->dispatching = 0;
  if (c->busy) timer_stop(c); /* answered later: no timeout meanwhile */
}

static void dispatch(conn *c) {
  cg_server *s = c->srv;
  char msg[CG_LIMIT_URL * 2 + 128];
  s->nrequests++;
  switch (c->route) {
    case R_HANDLER:
      dispatch_handler(c);
      break;
    case R_CARD:
    case R_EVENT:
      dispatch_app(c);
      break;
    case R_HEALTH: {
      /* The server, and every long connection feeding the same app: one
       * that stopped for good makes the whole unhealthy (503). */
      cg_buf conns, body;
      cg_buf_init(&conns, 64 * 1024);
      cg_buf_init(&body, 80 * 1024);
      int failed = 0;
      if (s->app && cg__app_conns_json(s->app, &conns, &failed) != 0) cg_buf_reset(&conns);
      const char *status = s->closing ? "closing" : failed ? "failed" : "ok";
      if (cg_buf_appendf(&body, "{\"status\":\"%s\",\"connections\":%u,\"requests\":%llu", status,
                         (unsigned)s->nconns, (unsigned long long)s->nrequests) != 0 ||
          cg_buf_append(&body, conns.data ? conns.data : "", conns.len) != 0 ||
          cg_buf_appends(&body, "}") != 0) {
        conn_respond(c, 500, NULL, "{}", 2, 0);
      } else {
        conn_respond(c, s->closing || failed ? 503 : 200, NULL, body.data, body.len, 0);
      }
      cg_buf_free(&conns);
      cg_buf_free(&body);
      break;
    }
    case R_BAD_METHOD:
      cg_fmt(msg, sizeof(msg), "method %s is not allowed here; use %s",
             http_method_str((enum http_method)c->parser.method), c->allow);
      conn_respond_error(c, 405, CG_EUNSUPPORTED, c->allow, 0, msg);
      break;
    case R_NONE:
    case R_NOT_FOUND:
    default:
      cg_fmt(msg, sizeof(msg),
             "no such endpoint; cardgate serves POST %s, POST %s and GET "
             "/healthz",
             s->card_path, s->event_path);
      conn_respond_error(c, 404, CG_ENOTFOUND, NULL, 0, msg);
      break;
  }
}

/* The parser stopped on an error: answer it and end the connection. */
static void conn_parse_failed(conn *c) {
  enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
  char msg[300];
  if (c->closing) return;
  c->keep_alive = 0;
  timer_stop(c);
  if (c->err_status) {
    conn_respond_error(c, c->err_status, c->err_code, NULL, 1, c->err_msg);
  } else if (e == HPE_HEADER_OVERFLOW) {
    fail_headers_too_big(c);
    conn_respond_error(c, 431, CG_ETOOBIG, NULL, 1, c->err_msg);
  } else {
    cg_fmt(msg, sizeof(msg), "malformed HTTP request: %s",
           http_errno_description(e));
    conn_respond_error(c, 400, CG_EMALFORMED, NULL, 1, msg);
  }
}

/* Feeds bytes to the parser until they run out or the connection has to
 * wait. Returns how many were consumed (all of them when the connection
 * ends: the rest is of no use). */
static size_t conn_feed(conn *c, const char *data, size_t len) {
  size_t done = 0;
  while (done < len && !conn_paused(c)) {
    size_t n = http_parser_execute(&c->parser, &parser_settings, data + done,
                                   len - done);
    done += n;
    enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
    if (c->closing) return len;
    if (e == HPE_PAUSED) {
      http_parser_pause(&c->parser, 0);
      dispatch(c);
      continue;
    }
    if (e != HPE_OK) {
      conn_parse_failed(c);
      return len;
    }
    if (n == 0) { /* after an upgrade request: nothing more to parse */
      c->close_after_write = 1;
      conn_flush(c);
      return len;
    }
  }
  return done;
}

static void conn_check_eof(conn *c) {
  if (!c->eof || c->busy || c->closing || c->close_after_write || in_pending(c))
    return;
  /* The peer sends nothing more and every complete request is answered:
   * end after the queued output (a partial request is dropped). */
  c->close_after_write = 1;
  timer_set(c, T_LINGER, LINGER_MS);
  conn_flush(c);
}

/* Parses buffered input (pipelined requests that waited for an answer). */
static void conn_drain(conn *c) {
  while (!conn_paused(c) && in_pending(c)) {
    size_t used = conn_feed(c, c->in.data + c->in_off, in_pending(c));
    c->in_off += used;
    if (c->closing) return;
    if (!used) break;
  }
  if (c->close_after_write) { /* the rest will not be parsed */
    c->in_off = c->in.len;
  }
  in_compact(c, 0);
  if (!c->close_after_write && in_pending(c) < c->srv->in_cap) read_start(c);
  conn_check_eof(c);
}

static void on_timer(uv_timer_t *t) {
  conn *c = t->data;
  cg_server *s = c->srv;
  char msg[128];
  timer_state st = c->tstate;
  c->tstate = T_NONE;
  switch (st) {
    case T_IDLE:
      cg__log(s->app, CG_LOG_DEBUG, "http", "closing idle connection from %s",
              c->peer);
      conn_close(c);
      break;
    case T_HEADER:
    case T_BODY:
      c->keep_alive = 0;
      cg_fmt(msg, sizeof(msg), "request %s not received within %u ms",
             st == T_HEADER ? "headers" : "body",
             st == T_HEADER ? s->header_timeout_ms : s->body_timeout_ms);
      conn_respond_error(c, 408, CG_ETIMEDOUT, NULL, 1, msg);
      break;
    case T_LINGER:
      conn_close(c);
      break;
    case T_RESUME:
      timer_set(c, T_IDLE, s->idle_timeout_ms);
      conn_drain(c);
      break;
    case T_NONE:
    default:
      break;
  }
}

/* ----------------------------------------------------------------- I/O */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b) {
  conn *c = h->data;
  CG_UNUSED(suggested);
  b->base = c->srv->rbuf;
  b->len = READ_BUF_SIZE;
}

static void on_eof(conn *c) {
  c->eof = 1;
  c->reading = 0; /* libuv stopped reading */
  if (c->lingering) {
    conn_close(c);
    return;
  }
  if (c->close_after_write) {
    if (!c->writing && !c->obuf.len) conn_close(c);
    return; /* conn_end closes once the answer is written */
  }
  conn_check_eof(c); /* or later, when the request in flight is answered */
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b) {
  conn *c = st->data;
  cg_server *s = c->srv;
  if (n == 0 || c->closing) return;
  if (n < 0) {
    if (n == UV_EOF) {
      on_eof(c);
      return;
    }
    cg__log(s->app, CG_LOG_DEBUG, "http", "connection from %s: %s", c->peer,
            cg_strerror((int)n));
    conn_close(c);
    return;
  }
  size_t len = (size_t)n;
  if (c->lingering || c->close_after_write) { /* answered: discard */
    c->discarded += len;
    if (c->discarded > 2 * s->in_cap) conn_close(c);
    return;
  }
  const char *data = b->base;
  if (!conn_paused(c) && !in_pending(c)) {
    size_t used = conn_feed(c, data, len);
    if (c->closing || c->close_after_write) return;
    data += used;
    len -= used;
    if (!len) return;
  }
  /* Keep the rest for when the current request is answered. */
  in_compact(c, len);
  if (cg_buf_append(&c->in, data, len) != 0) {
    cg__log(s->app, CG_LOG_DEBUG, "http", "connection from %s: input buffer",
            c->peer);
    conn_close(c);
    return;
  }
  if (in_pending(c) >= s->in_cap) read_stop(c);
  if (!conn_paused(c)) conn_drain(c);
}

static void on_spare_closed(uv_handle_t *h) {
  cg_server *s = h->data;
  s->spare_busy = 0;
  server_maybe_finish(s);
}

static void on_connection(uv_stream_t *ls, int status) {
  cg_server *s = ls->data;
  if (status < 0) {
    cg__log(s->app, CG_LOG_DEBUG, "http", "accept failed: %s",
            cg_strerror(status));
    return;
  }
  if (s->closing) return;
  conn *c = calloc(1, sizeof(*c));
  if (!c) {
    cg__log(s->app, CG_LOG_ERROR, "http",
            "out of memory accepting a connection: closed it");
    /* It must still be accepted: libuv stops watching a listener whose
     * pending connection is left unaccepted. */
    if (!s->spare_busy) {
      uv_tcp_init(s->loop, &s->spare);
      s->spare.data = s;
      s->spare_busy = 1;
      uv_accept(ls, (uv_stream_t *)&s->spare);
      uv_close((uv_handle_t *)&s->spare, on_spare_closed);
    }
    return;
  }
  c->srv = s;
  uv_tcp_init(s->loop, &c->tcp);
  uv_timer_init(s->loop, &c->timer);
  c->tcp.data = c;
  c->timer.data = c;
  c->refs = 2;
  c->next = s->conns;
  if (s->conns) s->conns->prev = c;
  s->conns = c;
  cg_buf_init(&c->hv, (size_t)H_COUNT * CG_LIMIT_HEADER_VALUE);
  cg_buf_init(&c->url, CG_LIMIT_URL);
  cg_buf_init(&c->body, s->max_body);
  cg_buf_init(&c->in, s->in_cap + 2 * READ_BUF_SIZE);
  cg_buf_init(&c->obuf, OUT_HIGH_WATER + CG_LIMIT_BODY_HARD + 4096);
  cg_buf_init(&c->wbuf, OUT_HIGH_WATER + CG_LIMIT_BODY_HARD + 4096);
  cg_strlcpy(c->peer, "?", sizeof(c->peer));
  http_parser_init(&c->parser, HTTP_REQUEST);
  c->parser.data = c;
  int rc = uv_accept(ls, (uv_stream_t *)&c->tcp);
  if (rc) {
    cg__log(s->app, CG_LOG_DEBUG, "http", "accept failed: %s", cg_strerror(rc));
    conn_close(c);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  peer_name(c);
  if (s->nconns >= s->max_connections) {
    if (s->nrejecting >= MAX_REJECTING) {
      cg__log(s->app, CG_LOG_INFO, "http",
              "closed a connection from %s: too many connections (limit %u)",
              c->peer, s->max_connections);
      conn_close(c);
      return;
    }
    c->rejected = 1;
    s->nrejecting++;
    conn_respond_error(c, 503, CG_EBUSY, NULL, 1, "too many connections");
    return;
  }
  c->counted = 1;
  s->nconns++;
  /* The first request must begin within the header timeout. */
  timer_set(c, T_IDLE, s->header_timeout_ms);
  read_start(c);
}

/* --------------------------------------------------------------- server */

int cg_server_listen(cg_server *s) {
  if (!s || s->listening || s->closing) return UV_EINVAL;
  int rc;
  if (s->reuse_port) {
#ifdef SO_REUSEPORT
    uv_os_fd_t fd;
    int one = 1;
    rc = uv_fileno((uv_handle_t *)&s->listener, &fd);
    if (rc) return rc;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0)
      return uv_translate_sys_error(errno);
#else
    return UV_ENOTSUP;
#endif
  }
  rc = uv_tcp_bind(&s->listener, (const struct sockaddr *)&s->addr, 0);
  if (rc) return rc;
  rc = uv_listen((uv_stream_t *)&s->listener, LISTEN_BACKLOG, on_connection);
  if (rc) return rc;
  struct sockaddr_storage ss;
  int len = (int)sizeof(ss);
  rc = uv_tcp_getsockname(&s->listener, (struct sockaddr *)&ss, &len);
  if (rc) return rc;
  s->port = ss.ss_family == AF_INET6
                ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                : ntohs(((struct sockaddr_in *)&ss)->sin_port);
  s->listening = 1;
  cg__log(s->app, CG_LOG_INFO, "http", "listening on %s port %d", s->host,
          s->port);
  if (!s->app && s->log) {
    char line[128];
    cg_fmt(line, sizeof(line), "listening on %s port %d", s->host, s->port);
    s->log(CG_LOG_INFO, "http", line, s->log_ud);
  }
  return 0;
}

int cg_server_port(const cg_server *s) {
  return s ? s->port : 0;
}

static void on_listener_close(uv_handle_t *h) {
  cg_server *s = h->data;
  s->listener_closed = 1;
  server_maybe_finish(s);
}

void cg_server_close(cg_server *s, cg_server_close_cb cb, void *ud) {
  if (!s) return;
  cg_assert(!s->closing); /* closing twice is a bug */
  s->closing = 1;
  s->close_cb = cb;
  s->close_ud = ud;
  uv_close((uv_handle_t *)&s->listener, on_listener_close);
  for (conn *c = s->conns; c; c = c->next) {
    if (c->closing || c->busy) continue; /* the app's answer ends it */
    if (c->lingering) {
      conn_close(c);
    } else if (c->writing || c->obuf.len) {
      if (!c->close_after_write) {
        c->close_after_write = 1;
        timer_set(c, T_LINGER, LINGER_MS);
      }
    } else {
      conn_close(c);
    }
  }
}
