/* WebSocket (RFC 6455) client and server on a libuv loop; see ws.h.
 *
 * One struct cg__ws is one TCP connection, client or server side. It holds
 * its uv_tcp_t and one uv_timer_t (connect/handshake deadline, the closing
 * cap, the linger after a refusal), an http_parser for the opening
 * handshake, a wslay event context once open, and for wss:// an SSL object
 * whose two memory BIOs carry the ciphertext: every byte still moves
 * through libuv on the loop thread.
 *
 * Bytes in:  socket -> [SSL_read] -> plain_in() -> http_parser (handshake)
 *                                               -> ws->in -> wslay_event_recv
 * Bytes out: wslay_event_send / handshake text -> out_plain() -> [SSL_write]
 *            -> ws->obuf -> uv_write from ws->wbuf (one write in flight)
 *
 * Lifetime: ws_end() records why the connection ends and uv_close()s both
 * handles; the last close callback calls on_close and frees. Close
 * callbacks run in libuv's closing phase, never inside a call of ours, so
 * on_close is never re-entrant and nothing is freed while wslay_event_recv
 * (or a user callback it called) is on the stack. */
#include "ws.h"

#include <http_parser.h>
#include <netinet/in.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <wslay/wslay.h>

#include "../../common/common.h"
#include "../../common/limits.h"
#include "cardgate/error.h"

/* RFC 6455 §1.3: appended to Sec-WebSocket-Key before hashing. */
#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
/* RFC 6455 §4.1: the key is 16 random bytes, base64 (24 characters). */
#define WS_KEY_BYTES 16u
#define WS_KEY_B64 24u
/* RFC 6455 §5.5: control frame payloads are at most 125 bytes; a close
 * frame's reason follows its 2-byte code. */
#define WS_CONTROL_MAX 125u
#define WS_REASON_MAX 123u
#define READ_SIZE (64u * 1024u)
/* The closing handshake, once we started it, gets this long (ws.h). */
#define CLOSE_CAP_MS 2000u
/* Server: the whole upgrade request must arrive within this. */
#define SERVER_HANDSHAKE_MS 10000u
/* Client: the body of a refused upgrade we keep (ws.h: first 4 KiB). */
#define REFUSAL_BODY_MAX 4096u
/* Encoded frames moved out of wslay before we wait for the socket; the rest
 * stays queued in wslay (cg__ws_queued counts both). */
#define OBUF_CHUNK (256u * 1024u)
/* Messages above this go out as several frames (wslay's 4 KiB fragments),
 * so a large message does not hold one huge frame in two copies. */
#define FRAGMENT_ABOVE (64u * 1024u)
#define LISTEN_BACKLOG 128
#define MAX_CONNECTIONS_DEFAULT 1024u

typedef enum {
  ST_RESOLVING = 0, /* client: uv_getaddrinfo */
  ST_CONNECTING,    /* client: uv_tcp_connect */
  ST_TLS,           /* client: TLS handshake */
  ST_UPGRADE,       /* client: request sent, reading the answer's head */
  ST_REFUSED,       /* client: non-101 answer, reading its body */
  ST_HANDSHAKE,     /* server: reading the upgrade request */
  ST_REFUSING,      /* server: refusal queued, then linger and close */
  ST_OPEN,          /* frames flow (wslay) */
  ST_DONE           /* ws_end called */
} ws_state;

typedef enum { T_NONE = 0, T_CONNECT, T_CLOSE, T_LINGER } timer_kind;

/* Header values we keep from the handshake (names matched lower-case). */
enum {
  HV_UPGRADE = 0,
  HV_CONNECTION,
  HV_ACCEPT,
  HV_KEY,
  HV_VERSION,
  HV_HS_STATUS,
  HV_HS_MSG,
  HV_HS_AUTHERR,
  HV_COUNT
};
static const char *const hv_names[HV_COUNT] = {"upgrade",
                                               "connection",
                                               "sec-websocket-accept",
                                               "sec-websocket-key",
                                               "sec-websocket-version",
                                               "handshake-status",
                                               "handshake-msg",
                                               "handshake-autherrcode"};

/* A large outgoing message: wslay pulls it 4 KiB at a time. */
typedef struct frag {
  struct frag *prev, *next;
  uint8_t *data;
  size_t len, off;
} frag;

struct cg__ws_server {
  uv_loop_t *loop;
  uv_tcp_t listener;
  cg__ws_accept_fn accept;
  void *ud;
  size_t max_message;
  uint32_t max_connections;
  uint32_t nlive; /* connections not yet ended (handshaking or open) */
  size_t nopen;   /* upgraded connections not yet ended */
  int port;
  unsigned closing : 1;
  cg__ws *conns; /* every connection not yet freed */
  void (*close_cb)(void *ud);
  void *close_ud;
};

struct cg__ws {
  uv_loop_t *loop;
  uv_tcp_t tcp;
  uv_timer_t timer;
  uv_getaddrinfo_t gai;
  uv_connect_t creq;
  uv_write_t wreq;
  uv_shutdown_t sreq;
  int refs; /* tcp + timer handles, plus an unfinished getaddrinfo */
  ws_state state;
  timer_kind tkind;
  unsigned is_server : 1;
  unsigned tls : 1;
  unsigned ended : 1;        /* ws_end called */
  unsigned notify : 1;       /* on_close is owed */
  unsigned reading : 1;      /* uv_read_start active */
  unsigned paused : 1;       /* cg__ws_pause(1) */
  unsigned writing : 1;      /* uv_write of wbuf in flight */
  unsigned in_recv : 1;      /* inside wslay_event_recv */
  unsigned close_queued : 1; /* we queued a close frame (user or UTF-8) */
  unsigned wslay_failed : 1; /* wslay closed on its own (bad frame, size) */
  unsigned tcp_retry : 1;    /* tcp closing to try the next address */
  unsigned headers_done : 1;
  unsigned msg_done : 1;
  unsigned shutting : 1;
  int rc;     /* final rc (valid once ended) */
  int err_rc; /* an error seen while the close handshake runs */
  cg__ws_callbacks cbs;
  void *ud;
  size_t max_message;

  /* client */
  uint32_t connect_timeout_ms;
  char *host; /* without brackets */
  char *port_str;
  char *target;      /* path and query */
  char *host_header; /* Host: value */
  char *ca_file;
  char *extra; /* extra request headers, CRLF-terminated lines */
  int host_is_ip;
  char key[WS_KEY_B64 + 1];
  struct addrinfo *ai, *ai_cur;
  SSL_CTX *ssl_ctx;
  SSL *ssl;
  BIO *rbio, *wbio; /* owned by ssl */

  /* opening handshake (both sides) */
  http_parser parser;
  size_t header_bytes;
  int last_cb; /* 0 none, 1 field, 2 value */
  int hv_cur;
  char field[32];
  size_t field_len;
  cg_buf hv[HV_COUNT];
  cg_buf url;
  cg_buf body;
  int http_status;

  /* open */
  wslay_event_context_ptr ctx;
  cg_buf in; /* received plaintext waiting for wslay: [in_off, len) */
  size_t in_off;
  cg_buf obuf, wbuf;
  frag *frags;
  size_t frag_bytes; /* unsent bytes of frags */

  /* close info */
  uint16_t close_code;
  char reason[256];
  char peer[INET6_ADDRSTRLEN + 8];

  /* server side */
  cg__ws_server *srv;
  cg__ws *prev, *next;
  unsigned counted_live : 1;
  unsigned counted_open : 1;
};

static void ws_end(cg__ws *ws, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void ws_pump(cg__ws *ws);
static void plain_in(cg__ws *ws, const char *data, size_t n);
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b);
static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b);
static void on_timer(uv_timer_t *t);
static void server_maybe_finish(cg__ws_server *s);
static void connect_current(cg__ws *ws);

/* ---------------------------------------------------------- small tools */

static const char *bstr(const cg_buf *b) {
  return b->data ? b->data : "";
}

/* Appends what fits under b's maximum and drops the rest (header values we
 * only report, the refusal body). */
static void buf_append_clip(cg_buf *b, const char *p, size_t n) {
  size_t room = b->max > b->len ? b->max - b->len : 0;
  if (n > room) n = room;
  if (n) (void)cg_buf_append(b, p, n);
}

/* Case-insensitive compare of [s, s+n) trimmed of spaces and tabs with tok. */
static int token_eq(const char *s, size_t n, const char *tok) {
  while (n && (*s == ' ' || *s == '\t')) s++, n--;
  while (n && (s[n - 1] == ' ' || s[n - 1] == '\t')) n--;
  return strlen(tok) == n && strncasecmp(s, tok, n) == 0;
}

/* 1 when the comma-separated list (a header value) holds tok. */
static int list_has(const char *list, const char *tok) {
  while (*list) {
    size_t n = strcspn(list, ",");
    if (token_eq(list, n, tok)) return 1;
    list += n;
    if (*list == ',') list++;
  }
  return 0;
}

/* Strict UTF-8 (RFC 3629): no overlongs, no surrogates, <= U+10FFFF. */
static int utf8_valid(const uint8_t *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    uint8_t c = s[i];
    size_t need;
    uint32_t cp, min;
    if (c < 0x80) {
      i++;
      continue;
    }
    if ((c & 0xE0) == 0xC0) {
      need = 1, cp = c & 0x1Fu, min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
      need = 2, cp = c & 0x0Fu, min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
      need = 3, cp = c & 0x07u, min = 0x10000;
    } else {
      return 0;
    }
    if (n - i - 1 < need) return 0;
    for (size_t k = 1; k <= need; k++) {
      uint8_t d = s[i + k];
      if ((d & 0xC0) != 0x80) return 0;
      cp = (cp << 6) | (d & 0x3Fu);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    i += need + 1;
  }
  return 1;
}

/* Sec-WebSocket-Accept for key (RFC 6455 §4.2.2 item 5.4):
 * base64(SHA-1(key + GUID)) into out (>= 29 bytes). */
static int accept_key(const char *key, char out[32]) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int mdlen = 0;
  char tmp[WS_KEY_B64 + sizeof(WS_GUID)];
  size_t kl = strlen(key);
  if (kl > WS_KEY_B64) return CG_EINVAL;
  memcpy(tmp, key, kl);
  memcpy(tmp + kl, WS_GUID, sizeof(WS_GUID) - 1);
  if (!EVP_Digest(tmp, kl + sizeof(WS_GUID) - 1, md, &mdlen, EVP_sha1(),
                  NULL) ||
      mdlen != 20)
    return CG_EIO;
  EVP_EncodeBlock((unsigned char *)out, md, 20); /* 28 chars + NUL */
  return 0;
}

static void peer_name(cg__ws *ws) {
  struct sockaddr_storage ss;
  int len = (int)sizeof(ss);
  char ip[INET6_ADDRSTRLEN];
  ws->peer[0] = '\0';
  if (uv_tcp_getpeername(&ws->tcp, (struct sockaddr *)&ss, &len)) return;
  if (ss.ss_family == AF_INET) {
    const struct sockaddr_in *in = (const struct sockaddr_in *)&ss;
    if (uv_ip4_name(in, ip, sizeof(ip)) == 0)
      cg_fmt(ws->peer, sizeof(ws->peer), "%s:%u", ip, ntohs(in->sin_port));
  } else if (ss.ss_family == AF_INET6) {
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&ss;
    if (uv_ip6_name(in6, ip, sizeof(ip)) == 0)
      cg_fmt(ws->peer, sizeof(ws->peer), "[%s]:%u", ip, ntohs(in6->sin6_port));
  }
}

static void timer_set(cg__ws *ws, timer_kind k, uint64_t ms) {
  if (ws->ended) return;
  ws->tkind = k;
  uv_timer_start(&ws->timer, on_timer, ms, 0);
}

static void timer_stop(cg__ws *ws) {
  ws->tkind = T_NONE;
  uv_timer_stop(&ws->timer);
}

/* ------------------------------------------------------------ lifetime */

static void ws_free(cg__ws *ws) {
  cg__ws_server *srv = ws->srv;
  if (srv) {
    if (ws->prev)
      ws->prev->next = ws->next;
    else
      srv->conns = ws->next;
    if (ws->next) ws->next->prev = ws->prev;
  }
  if (ws->ctx) wslay_event_context_free(ws->ctx);
  while (ws->frags) {
    frag *f = ws->frags;
    ws->frags = f->next;
    free(f->data);
    free(f);
  }
  if (ws->ssl) SSL_free(ws->ssl); /* frees both BIOs */
  if (ws->ssl_ctx) SSL_CTX_free(ws->ssl_ctx);
  if (ws->ai) uv_freeaddrinfo(ws->ai);
  for (int i = 0; i < HV_COUNT; i++) cg_buf_free(&ws->hv[i]);
  cg_buf_free(&ws->url);
  cg_buf_free(&ws->body);
  cg_buf_free(&ws->in);
  cg_buf_free(&ws->obuf);
  cg_buf_free(&ws->wbuf);
  free(ws->host);
  free(ws->port_str);
  free(ws->target);
  free(ws->host_header);
  free(ws->ca_file);
  free(ws->extra);
  free(ws);
  if (srv) server_maybe_finish(srv);
}

/* The last reference is gone: every handle is closed and no request is in
 * flight. on_close runs here, in a close callback. */
static void ws_unref(cg__ws *ws) {
  cg_assert(ws->refs > 0);
  if (--ws->refs) return;
  if (ws->notify && ws->cbs.on_close) {
    cg__ws_close_info info;
    int refused = !ws->is_server && ws->http_status && ws->http_status != 101;
    memset(&info, 0, sizeof(info));
    info.close_code = ws->close_code;
    info.reason = ws->reason;
    info.http_status = refused ? ws->http_status : 0;
    info.handshake_status = refused ? bstr(&ws->hv[HV_HS_STATUS]) : "";
    info.handshake_msg = refused ? bstr(&ws->hv[HV_HS_MSG]) : "";
    info.handshake_autherrcode = refused ? bstr(&ws->hv[HV_HS_AUTHERR]) : "";
    info.body = refused ? bstr(&ws->body) : "";
    ws->notify = 0;
    ws->cbs.on_close(ws, ws->rc, &info, ws->ud);
  }
  ws_free(ws);
}

static void on_handle_close(uv_handle_t *h) {
  cg__ws *ws = h->data;
  if (h == (uv_handle_t *)&ws->tcp && ws->tcp_retry) {
    ws->tcp_retry = 0;
    if (!ws->ended) {
      /* A failed connect leaves the socket unusable: a fresh handle for
       * the next address (see on_connect). Plain init cannot fail. */
      int rc = uv_tcp_init(ws->loop, &ws->tcp);
      cg_assert(rc == 0);
      ws->tcp.data = ws;
      connect_current(ws);
      return;
    }
  }
  ws_unref(ws);
}

/* Ends the connection once: records rc and why, closes both handles (and
 * cancels name resolution). on_close follows from the close callbacks. */
static void ws_end(cg__ws *ws, int rc, const char *fmt, ...) {
  if (ws->ended) return;
  ws->ended = 1;
  ws->rc = rc;
  if (fmt && (rc != 0 || !ws->reason[0])) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ws->reason, sizeof(ws->reason), fmt, ap);
    va_end(ap);
  }
  ws->state = ST_DONE;
  ws->reading = 0;
  if (ws->srv) {
    if (ws->counted_live) ws->srv->nlive--;
    if (ws->counted_open) ws->srv->nopen--;
    ws->counted_live = ws->counted_open = 0;
  }
  if (ws->gai.loop) uv_cancel((uv_req_t *)&ws->gai); /* cb still runs */
  if (!ws->tcp_retry) uv_close((uv_handle_t *)&ws->tcp, on_handle_close);
  uv_close((uv_handle_t *)&ws->timer, on_handle_close);
}

/* The rc of a connection whose close handshake ended (or that the peer
 * dropped after our close frame): an error seen on the way, else 0. */
static int closing_rc(cg__ws *ws, const char **why) {
  *why = NULL;
  if (ws->err_rc) return ws->err_rc;
  if (ws->wslay_failed) {
    uint16_t sent = wslay_event_get_status_code_sent(ws->ctx);
    if (sent == WSLAY_CODE_MESSAGE_TOO_BIG) {
      *why = "a message exceeded max_message (closed with 1009)";
      return CG_ETOOBIG;
    }
    *why = sent == WSLAY_CODE_INVALID_FRAME_PAYLOAD_DATA
               ? "invalid UTF-8 in a text message (closed with 1007)"
               : "the peer broke the framing protocol (closed with 1002)";
    return CG_EMALFORMED;
  }
  return 0;
}

static void ws_end_closing(cg__ws *ws) {
  const char *why;
  int rc = closing_rc(ws, &why);
  if (why)
    ws_end(ws, rc, "%s", why);
  else
    ws_end(ws, rc, NULL);
}

/* --------------------------------------------------------------- output */

/* Moves obuf to the socket: one uv_write at a time, from wbuf. */
static void ws_flush(cg__ws *ws);

static void on_shutdown(uv_shutdown_t *req, int status) {
  cg__ws *ws = req->data;
  /* Refusal sent and half-closed: read until the peer closes (closing
   * with unread input would RST the answer away), capped by the timer. */
  if (ws->ended) return;
  if (status < 0) ws_end(ws, status, NULL);
}

static void on_write(uv_write_t *req, int status) {
  cg__ws *ws = req->data;
  ws->writing = 0;
  cg_buf_reset(&ws->wbuf);
  if (ws->ended) return; /* UV_ECANCELED: the handle is closing */
  if (status < 0) {
    ws_end(ws, status, "write failed: %s", cg_strerror(status));
    return;
  }
  if (ws->state == ST_REFUSING) {
    ws_flush(ws);
    if (ws->writing || ws->shutting) return;
    ws->shutting = 1;
    ws->sreq.data = ws;
    if (uv_shutdown(&ws->sreq, (uv_stream_t *)&ws->tcp, on_shutdown))
      ws_end(ws, 0, NULL);
    return;
  }
  ws_pump(ws);
}

static void ws_flush(cg__ws *ws) {
  if (ws->ended || ws->writing || !ws->obuf.len) return;
  cg_buf t = ws->wbuf;
  ws->wbuf = ws->obuf;
  ws->obuf = t;
  cg_buf_reset(&ws->obuf);
  uv_buf_t b = uv_buf_init(ws->wbuf.data, (unsigned)ws->wbuf.len);
  ws->wreq.data = ws;
  int rc = uv_write(&ws->wreq, (uv_stream_t *)&ws->tcp, &b, 1, on_write);
  if (rc) {
    ws_end(ws, rc, "write failed: %s", cg_strerror(rc));
    return;
  }
  ws->writing = 1;
}

/* Moves what the SSL object wrote into its memory BIO to obuf. */
static int tls_drain(cg__ws *ws) {
  char tmp[16384];
  int n;
  while ((n = BIO_read(ws->wbio, tmp, (int)sizeof(tmp))) > 0) {
    int rc = cg_buf_append(&ws->obuf, tmp, (size_t)n);
    if (rc) return rc;
  }
  return 0;
}

/* Queues plaintext for the peer (encrypted first for wss://). */
static int out_plain(cg__ws *ws, const void *p, size_t n) {
  if (!ws->tls) return cg_buf_append(&ws->obuf, p, n);
  while (n) {
    int chunk = n > (1u << 30) ? (1 << 30) : (int)n;
    int w = SSL_write(ws->ssl, p, chunk);
    if (w <= 0) return CG_EIO; /* memory BIOs never ask to retry writes */
    p = (const char *)p + w;
    n -= (size_t)w;
  }
  return tls_drain(ws);
}

/* ---------------------------------------------------------------- wslay */

static ssize_t wsl_recv(wslay_event_context_ptr ctx, uint8_t *buf, size_t len,
                        int flags, void *ud) {
  cg__ws *ws = ud;
  CG_UNUSED(flags);
  if (ws->ended) { /* aborted from a callback: stop parsing */
    wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
    return -1;
  }
  size_t avail = ws->in.len - ws->in_off;
  if (!avail) {
    wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
    return -1;
  }
  if (len > avail) len = avail;
  memcpy(buf, ws->in.data + ws->in_off, len);
  ws->in_off += len;
  return (ssize_t)len;
}

static ssize_t wsl_send(wslay_event_context_ptr ctx, const uint8_t *data,
                        size_t len, int flags, void *ud) {
  cg__ws *ws = ud;
  CG_UNUSED(flags);
  if (ws->ended) {
    wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
    return -1;
  }
  if (ws->obuf.len >= OBUF_CHUNK) { /* wait for the socket (on_write) */
    wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
    return -1;
  }
  if (out_plain(ws, data, len) != 0) {
    wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
    return -1;
  }
  return (ssize_t)len;
}

/* Client frames are masked with fresh random keys (RFC 6455 §5.3). */
static int wsl_genmask(wslay_event_context_ptr ctx, uint8_t *buf, size_t len,
                       void *ud) {
  CG_UNUSED(ud);
  if (RAND_bytes(buf, (int)len) != 1) {
    wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
    return -1;
  }
  return 0;
}

static void wsl_on_msg(wslay_event_context_ptr ctx,
                       const struct wslay_event_on_msg_recv_arg *a, void *ud) {
  cg__ws *ws = ud;
  if (ws->ended) return; /* no callback after abort */
  switch (a->opcode) {
    case WSLAY_TEXT_FRAME:
    case WSLAY_BINARY_FRAME:
      if (ws->close_queued) return; /* we are closing: drop, like wslay */
      if (a->opcode == WSLAY_TEXT_FRAME && !utf8_valid(a->msg, a->msg_length)) {
        /* RFC 6455 §8.1: invalid UTF-8 in a text message fails the
         * connection with 1007. */
        ws->err_rc = CG_EMALFORMED;
        cg_fmt(ws->reason, sizeof(ws->reason),
               "invalid UTF-8 in a text message (closed with 1007)");
        ws->close_queued = 1;
        wslay_event_shutdown_read(ctx);
        (void)wslay_event_queue_close(
            ctx, WSLAY_CODE_INVALID_FRAME_PAYLOAD_DATA, NULL, 0);
        timer_set(ws, T_CLOSE, CLOSE_CAP_MS);
        return;
      }
      ws->cbs.on_message(ws, a->opcode == WSLAY_BINARY_FRAME, a->msg,
                         a->msg_length, ws->ud);
      break;
    case WSLAY_PONG:
      if (ws->cbs.on_pong) ws->cbs.on_pong(ws, a->msg, a->msg_length, ws->ud);
      break;
    case WSLAY_CONNECTION_CLOSE:
      /* wslay has queued its answering close frame already. */
      ws->close_code = a->status_code;
      if (a->msg_length > 2) {
        size_t n = a->msg_length - 2;
        if (n > WS_REASON_MAX) n = WS_REASON_MAX;
        memcpy(ws->reason, a->msg + 2, n);
        ws->reason[n] = '\0';
      }
      break;
    default: /* pings are answered by wslay */
      break;
  }
}

/* Fragmented sends: hands wslay the next piece of a large message. */
static ssize_t frag_read(wslay_event_context_ptr ctx, uint8_t *buf, size_t len,
                         const union wslay_event_msg_source *src, int *eof,
                         void *ud) {
  cg__ws *ws = ud;
  frag *f = src->data;
  CG_UNUSED(ctx);
  size_t n = f->len - f->off;
  if (n > len) n = len;
  memcpy(buf, f->data + f->off, n);
  f->off += n;
  ws->frag_bytes -= n;
  if (f->off == f->len) {
    /* wslay never asks again after eof: the piece is ours to free. */
    *eof = 1;
    if (f->prev)
      f->prev->next = f->next;
    else
      ws->frags = f->next;
    if (f->next) f->next->prev = f->prev;
    free(f->data);
    free(f);
  }
  return (ssize_t)n;
}

static int ws_wslay_init(cg__ws *ws) {
  static const struct wslay_event_callbacks cbs = {
      .recv_callback = wsl_recv,
      .send_callback = wsl_send,
      .genmask_callback = wsl_genmask,
      .on_msg_recv_callback = wsl_on_msg,
  };
  int rc = ws->is_server ? wslay_event_context_server_init(&ws->ctx, &cbs, ws)
                         : wslay_event_context_client_init(&ws->ctx, &cbs, ws);
  if (rc) return CG_ENOMEM;
  /* Over the limit wslay stops reading and queues close 1009. */
  wslay_event_config_set_max_recv_msg_length(ws->ctx, ws->max_message);
  return 0;
}

/* Feeds buffered input to wslay, then sends what it queued. */
static void ws_recv(cg__ws *ws) {
  ws->in_recv = 1;
  int r = wslay_event_recv(ws->ctx);
  ws->in_recv = 0;
  if (ws->in_off == ws->in.len) {
    ws->in_off = 0;
    if (ws->in.cap > READ_SIZE)
      cg_buf_free(&ws->in);
    else
      cg_buf_reset(&ws->in);
  }
  if (ws->ended) return;
  if (r == WSLAY_ERR_NOMEM) {
    ws_end(ws, CG_ENOMEM, "out of memory receiving a message");
    return;
  }
  /* wslay stops reading on its own only to fail the connection (bad
   * frame, message too big, bad UTF-8); its close frame says which. */
  if (!wslay_event_get_read_enabled(ws->ctx) &&
      !wslay_event_get_close_received(ws->ctx) && !ws->close_queued &&
      !ws->wslay_failed) {
    ws->wslay_failed = 1;
    timer_set(ws, T_CLOSE, CLOSE_CAP_MS);
  }
  ws_pump(ws);
}

/* Sends what wslay has queued, writes, and ends the connection when the
 * closing handshake is complete and everything is written. */
static void ws_pump(cg__ws *ws) {
  if (ws->ended) return;
  if (ws->state == ST_OPEN && !ws->in_recv && wslay_event_want_write(ws->ctx)) {
    int r = wslay_event_send(ws->ctx);
    if (ws->ended) return;
    if (r == WSLAY_ERR_NOMEM) {
      ws_end(ws, CG_ENOMEM, "out of memory sending");
      return;
    }
    if (r) {
      ws_end(ws, CG_EIO, "could not queue frames for the socket");
      return;
    }
  }
  ws_flush(ws);
  if (ws->ended || ws->state != ST_OPEN || ws->in_recv) return;
  if (wslay_event_get_close_sent(ws->ctx) && !ws->writing && !ws->obuf.len &&
      (wslay_event_get_close_received(ws->ctx) ||
       !wslay_event_get_read_enabled(ws->ctx)))
    ws_end_closing(ws);
}

/* Both sides: the upgrade is done; frames flow from here. rest: bytes that
 * followed the handshake in the same read. */
static void ws_open(cg__ws *ws, const char *rest, size_t n) {
  int rc = ws_wslay_init(ws);
  if (rc) {
    ws_end(ws, rc, "out of memory");
    return;
  }
  ws->state = ST_OPEN;
  timer_stop(ws);
  if (ws->srv) {
    ws->srv->nopen++;
    ws->counted_open = 1;
  }
  if (ws->cbs.on_open) ws->cbs.on_open(ws, ws->ud);
  if (ws->ended) return;
  if (n) plain_in(ws, rest, n);
}

/* ------------------------------------------------------ HTTP handshake */

static int hdr_account(cg__ws *ws, size_t n) {
  ws->header_bytes += n;
  return ws->header_bytes > CG_LIMIT_HEADER_BYTES ? -1 : 0;
}

static int p_on_url(http_parser *p, const char *at, size_t n) {
  cg__ws *ws = p->data;
  if (hdr_account(ws, n)) return -1;
  return cg_buf_append(&ws->url, at, n) ? -1 : 0;
}

static int p_on_header_field(http_parser *p, const char *at, size_t n) {
  cg__ws *ws = p->data;
  if (hdr_account(ws, n)) return -1;
  if (ws->last_cb != 1) {
    ws->last_cb = 1;
    ws->field_len = 0;
  }
  if (ws->field_len + n < sizeof(ws->field))
    memcpy(ws->field + ws->field_len, at, n);
  ws->field_len += n; /* >= sizeof(field): a name we do not keep */
  return 0;
}

static int p_on_header_value(http_parser *p, const char *at, size_t n) {
  cg__ws *ws = p->data;
  if (hdr_account(ws, n)) return -1;
  if (ws->last_cb != 2) {
    ws->last_cb = 2;
    ws->hv_cur = -1;
    if (ws->field_len < sizeof(ws->field)) {
      for (int i = 0; i < HV_COUNT; i++)
        if (token_eq(ws->field, ws->field_len, hv_names[i])) ws->hv_cur = i;
    }
    /* A repeated header joins the first, as a list (RFC 9110 §5.3). */
    if (ws->hv_cur >= 0 && ws->hv[ws->hv_cur].len)
      buf_append_clip(&ws->hv[ws->hv_cur], ", ", 2);
  }
  if (ws->hv_cur >= 0) buf_append_clip(&ws->hv[ws->hv_cur], at, n);
  return 0;
}

static int p_on_headers_complete(http_parser *p) {
  cg__ws *ws = p->data;
  ws->headers_done = 1;
  /* 2 = stop here, what follows is not HTTP: the server answers from the
   * request head; a 101 answer is followed by frames. A refusal's body is
   * read (0). */
  if (ws->is_server || p->status_code == 101) return 2;
  return 0;
}

static int p_on_body(http_parser *p, const char *at, size_t n) {
  cg__ws *ws = p->data;
  buf_append_clip(&ws->body, at, n);
  return 0;
}

static int p_on_message_complete(http_parser *p) {
  cg__ws *ws = p->data;
  ws->msg_done = 1;
  return 0;
}

static const http_parser_settings parser_settings = {
    .on_url = p_on_url,
    .on_header_field = p_on_header_field,
    .on_header_value = p_on_header_value,
    .on_headers_complete = p_on_headers_complete,
    .on_body = p_on_body,
    .on_message_complete = p_on_message_complete,
};

static void handshake_init(cg__ws *ws, enum http_parser_type type) {
  http_parser_init(&ws->parser, type);
  ws->parser.data = ws;
  for (int i = 0; i < HV_COUNT; i++)
    cg_buf_init(&ws->hv[i], CG_LIMIT_HEADER_VALUE);
  cg_buf_init(&ws->url, CG_LIMIT_URL);
  cg_buf_init(&ws->body, REFUSAL_BODY_MAX);
  ws->hv_cur = -1;
}

/* ------------------------------------------------------- client: answer */

/* RFC 6455 §4.1 (the client's checks of the server's opening handshake). */
static void client_check_101(cg__ws *ws, const char *rest, size_t n) {
  char want[32];
  if (!list_has(bstr(&ws->hv[HV_UPGRADE]), "websocket")) {
    ws_end(ws, CG_EMALFORMED, "upgrade answer without Upgrade: websocket");
    return;
  }
  if (!list_has(bstr(&ws->hv[HV_CONNECTION]), "upgrade")) {
    ws_end(ws, CG_EMALFORMED, "upgrade answer without Connection: Upgrade");
    return;
  }
  if (accept_key(ws->key, want) != 0 ||
      !token_eq(bstr(&ws->hv[HV_ACCEPT]), ws->hv[HV_ACCEPT].len, want)) {
    ws_end(ws, CG_EMALFORMED, "bad Sec-WebSocket-Accept in the upgrade answer");
    return;
  }
  ws_open(ws, rest, n);
}

static void client_refused(cg__ws *ws) {
  ws_end(ws, CG_EAUTH, "upgrade refused: HTTP %d", ws->http_status);
}

static void client_answer_in(cg__ws *ws, const char *data, size_t n) {
  size_t used = http_parser_execute(&ws->parser, &parser_settings, data, n);
  if (ws->ended) return;
  enum http_errno e = HTTP_PARSER_ERRNO(&ws->parser);
  if (ws->state == ST_UPGRADE && ws->headers_done) {
    ws->http_status = (int)ws->parser.status_code;
    if (ws->http_status == 101) {
      client_check_101(ws, data + used, n - used);
      return;
    }
    ws->state = ST_REFUSED;
  }
  if (ws->state == ST_REFUSED) {
    if (ws->msg_done || e != HPE_OK) client_refused(ws);
    return;
  }
  if (e != HPE_OK) {
    if (ws->header_bytes > CG_LIMIT_HEADER_BYTES)
      ws_end(ws, CG_EMALFORMED, "upgrade answer headers exceed %u bytes",
             CG_LIMIT_HEADER_BYTES);
    else
      ws_end(ws, CG_EMALFORMED, "bad upgrade answer: %s",
             http_errno_description(e));
  }
}

/* ------------------------------------------------------ client: connect */

static void client_send_request(cg__ws *ws) {
  unsigned char raw[WS_KEY_BYTES];
  cg_buf r;
  int rc;
  if (RAND_bytes(raw, (int)sizeof(raw)) != 1) {
    ws_end(ws, CG_EIO, "no random bytes for the key");
    return;
  }
  EVP_EncodeBlock((unsigned char *)ws->key, raw, (int)sizeof(raw));
  cg_buf_init(&r, CG_LIMIT_HEADER_BYTES * 4);
  rc = cg_buf_appendf(&r,
                      "GET %s HTTP/1.1\r\n"
                      "Host: %s\r\n"
                      "Upgrade: websocket\r\n"
                      "Connection: Upgrade\r\n"
                      "Sec-WebSocket-Key: %s\r\n"
                      "Sec-WebSocket-Version: 13\r\n"
                      "%s\r\n",
                      ws->target, ws->host_header, ws->key,
                      ws->extra ? ws->extra : "");
  if (!rc) rc = out_plain(ws, r.data, r.len);
  cg_buf_free(&r);
  if (rc) {
    ws_end(ws, rc, "could not queue the upgrade request");
    return;
  }
  handshake_init(ws, HTTP_RESPONSE);
  ws->state = ST_UPGRADE;
  ws_flush(ws);
}

static int tls_fail(cg__ws *ws) {
  long v = SSL_get_verify_result(ws->ssl);
  if (v != X509_V_OK) {
    ws_end(ws, CG_EAUTH, "TLS certificate did not verify: %s",
           X509_verify_cert_error_string(v));
  } else {
    char e[160];
    unsigned long code = ERR_peek_last_error();
    ERR_error_string_n(code, e, sizeof(e));
    ws_end(ws, CG_EIO, "TLS failed: %s", code ? e : "handshake error");
  }
  ERR_clear_error();
  return -1;
}

/* Runs the TLS engine on what arrived: handshake, then decrypted bytes to
 * plain_in. */
static void tls_in(cg__ws *ws) {
  if (ws->state == ST_TLS) {
    int r = SSL_do_handshake(ws->ssl);
    if (tls_drain(ws)) {
      ws_end(ws, CG_ENOMEM, "out of memory");
      return;
    }
    ws_flush(ws);
    if (ws->ended) return;
    if (r != 1) {
      int e = SSL_get_error(ws->ssl, r);
      if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) tls_fail(ws);
      return;
    }
    client_send_request(ws);
    if (ws->ended) return;
  }
  char buf[16384];
  while (!ws->ended && !ws->paused) {
    int n = SSL_read(ws->ssl, buf, (int)sizeof(buf));
    if (n > 0) {
      plain_in(ws, buf, (size_t)n);
      continue;
    }
    int e = SSL_get_error(ws->ssl, n);
    if (e == SSL_ERROR_WANT_READ) break;
    if (e == SSL_ERROR_ZERO_RETURN) { /* close_notify: treat as EOF */
      on_read((uv_stream_t *)&ws->tcp, UV_EOF, NULL);
      return;
    }
    tls_fail(ws);
    return;
  }
  /* Session tickets and alerts may want to go out. */
  if (!ws->ended && tls_drain(ws) == 0) ws_flush(ws);
}

static int tls_start(cg__ws *ws) {
  ws->ssl_ctx = SSL_CTX_new(TLS_client_method());
  if (!ws->ssl_ctx) return CG_ENOMEM;
  SSL_CTX_set_min_proto_version(ws->ssl_ctx, TLS1_2_VERSION);
  SSL_CTX_set_verify(ws->ssl_ctx, SSL_VERIFY_PEER, NULL);
  int ok = ws->ca_file
               ? SSL_CTX_load_verify_locations(ws->ssl_ctx, ws->ca_file, NULL)
               : SSL_CTX_set_default_verify_paths(ws->ssl_ctx);
  if (ok != 1) {
    ERR_clear_error();
    ws_end(ws, CG_EIO, "cannot load the CA bundle%s%s", ws->ca_file ? " " : "",
           ws->ca_file ? ws->ca_file : "");
    return -1;
  }
  ws->ssl = SSL_new(ws->ssl_ctx);
  ws->rbio = BIO_new(BIO_s_mem());
  ws->wbio = BIO_new(BIO_s_mem());
  if (!ws->ssl || !ws->rbio || !ws->wbio) {
    BIO_free(ws->rbio);
    BIO_free(ws->wbio);
    ws->rbio = ws->wbio = NULL;
    return CG_ENOMEM;
  }
  SSL_set_bio(ws->ssl, ws->rbio, ws->wbio);
  SSL_set_connect_state(ws->ssl);
  /* Names get SNI and a name check; IP literals an address check (RFC
   * 6066 §3: no literal addresses in SNI). */
  if (ws->host_is_ip) {
    if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ws->ssl), ws->host) != 1)
      return CG_EINVAL;
  } else {
    if (SSL_set_tlsext_host_name(ws->ssl, ws->host) != 1 ||
        SSL_set1_host(ws->ssl, ws->host) != 1)
      return CG_EINVAL;
  }
  ws->state = ST_TLS;
  tls_in(ws); /* writes the ClientHello */
  return 0;
}

static void on_connect(uv_connect_t *req, int status) {
  cg__ws *ws = req->data;
  if (ws->ended) return;
  if (status < 0) {
    if (ws->ai_cur && ws->ai_cur->ai_next) {
      /* Try the next address (IPv6 first but unreachable, say). */
      ws->ai_cur = ws->ai_cur->ai_next;
      ws->tcp_retry = 1;
      uv_close((uv_handle_t *)&ws->tcp, on_handle_close);
      return;
    }
    ws_end(ws, status, "connect to %s:%s failed: %s", ws->host, ws->port_str,
           cg_strerror(status));
    return;
  }
  peer_name(ws);
  /* Small frames (ACKs, pings) go out at once, not after Nagle's wait
   * for the peer's TCP acknowledgement. */
  uv_tcp_nodelay(&ws->tcp, 1);
  int rc = 0;
  if (!ws->paused) { /* cg__ws_pause before the connect: stay silent */
    rc = uv_read_start((uv_stream_t *)&ws->tcp, on_alloc, on_read);
    if (rc) {
      ws_end(ws, rc, "read failed: %s", cg_strerror(rc));
      return;
    }
    ws->reading = 1;
  }
  if (ws->tls) {
    rc = tls_start(ws);
    if (rc) ws_end(ws, rc, "TLS setup failed");
    return;
  }
  client_send_request(ws);
}

/* Connects to ws->ai_cur (the tcp handle is fresh). */
static void connect_current(cg__ws *ws) {
  ws->state = ST_CONNECTING;
  ws->creq.data = ws;
  int rc = uv_tcp_connect(&ws->creq, &ws->tcp, ws->ai_cur->ai_addr, on_connect);
  if (rc) ws_end(ws, rc, "connect failed: %s", cg_strerror(rc));
}

static void on_resolved(uv_getaddrinfo_t *req, int status,
                        struct addrinfo *res) {
  cg__ws *ws = req->data;
  memset(&ws->gai, 0, sizeof(ws->gai));
  if (ws->ended) {
    if (res) uv_freeaddrinfo(res);
    ws_unref(ws);
    return;
  }
  ws->refs--; /* the request's reference; the handles still hold two */
  if (status < 0 || !res) {
    if (res) uv_freeaddrinfo(res);
    ws_end(ws, status < 0 ? status : UV_EAI_NONAME, "cannot resolve %s: %s",
           ws->host, cg_strerror(status));
    return;
  }
  ws->ai = ws->ai_cur = res;
  connect_current(ws);
}

/* ws://host[:port][/path][?query] and wss://… (RFC 6455 §3). */
static int parse_url(cg__ws *ws, const char *url) {
  const char *p;
  int defport;
  if (strncasecmp(url, "ws://", 5) == 0) {
    p = url + 5, defport = 80;
  } else if (strncasecmp(url, "wss://", 6) == 0) {
    p = url + 6, defport = 443, ws->tls = 1;
  } else {
    return CG_EINVAL;
  }
  const char *end = p + strcspn(p, "/?#");
  const char *host = p, *hend, *port = NULL;
  if (end == p || memchr(p, '@', (size_t)(end - p))) return CG_EINVAL;
  if (*p == '[') {
    const char *close = memchr(p, ']', (size_t)(end - p));
    if (!close) return CG_EINVAL;
    host = p + 1, hend = close;
    if (close + 1 < end) {
      if (close[1] != ':') return CG_EINVAL;
      port = close + 2;
    }
  } else {
    const char *colon = memchr(p, ':', (size_t)(end - p));
    hend = colon ? colon : end;
    if (colon) port = colon + 1;
  }
  if (hend == host) return CG_EINVAL;
  long portnum = defport;
  if (port) {
    int64_t v;
    if (port == end || cg_parse_i64(port, (size_t)(end - port), &v) != 0 ||
        v < 1 || v > 65535 || *port == '-')
      return CG_EINVAL;
    portnum = (long)v;
  }
  ws->host = cg_strndup(host, (size_t)(hend - host));
  if (!ws->host) return CG_ENOMEM;
  for (const char *c = ws->host; *c; c++)
    if ((unsigned char)*c <= ' ' || *c == '/' || *c == '\\') return CG_EINVAL;
  unsigned char tmp[sizeof(struct in6_addr)];
  int v6 = uv_inet_pton(AF_INET6, ws->host, tmp) == 0;
  if (*p == '[' && !v6) return CG_EINVAL;
  ws->host_is_ip = v6 || uv_inet_pton(AF_INET, ws->host, tmp) == 0;
  /* The request target: path and query, never the fragment. */
  size_t tlen = strcspn(end, "#");
  if (tlen > CG_LIMIT_URL) return CG_EINVAL;
  for (size_t i = 0; i < tlen; i++)
    if ((unsigned char)end[i] <= ' ' || end[i] == 0x7f) return CG_EINVAL;
  ws->target = malloc(tlen + 2);
  ws->port_str = malloc(8);
  ws->host_header = malloc(strlen(ws->host) + 10);
  if (!ws->target || !ws->port_str || !ws->host_header) return CG_ENOMEM;
  cg_fmt(ws->target, tlen + 2, "%s%.*s", (tlen && end[0] == '/') ? "" : "/",
         (int)tlen, end);
  cg_fmt(ws->port_str, 8, "%ld", portnum);
  /* Host carries the port only when it is not the scheme's (§4.1 item 4). */
  cg_fmt(ws->host_header, strlen(ws->host) + 10, "%s%s%s%s%s", v6 ? "[" : "",
         ws->host, v6 ? "]" : "", portnum != defport ? ":" : "",
         portnum != defport ? ws->port_str : "");
  return 0;
}

int cg__ws_connect(uv_loop_t *loop, const cg__ws_client_options *o,
                   const cg__ws_callbacks *cbs, void *ud, cg__ws **out) {
  if (!loop || !o || !o->url || !cbs || !cbs->on_message || !cbs->on_close ||
      !out)
    return CG_EINVAL;
  cg__ws *ws = calloc(1, sizeof(*ws));
  if (!ws) return CG_ENOMEM;
  ws->loop = loop;
  ws->cbs = *cbs;
  ws->ud = ud;
  ws->max_message =
      o->max_message ? o->max_message : CG__WS_MAX_MESSAGE_DEFAULT;
  if (ws->max_message > CG__WS_MAX_MESSAGE_HARD)
    ws->max_message = CG__WS_MAX_MESSAGE_HARD;
  ws->connect_timeout_ms = o->connect_timeout_ms
                               ? o->connect_timeout_ms
                               : CG__WS_CONNECT_TIMEOUT_DEFAULT_MS;
  cg_buf_init(&ws->in, ws->max_message + READ_SIZE);
  cg_buf_init(&ws->obuf, SIZE_MAX / 2);
  cg_buf_init(&ws->wbuf, SIZE_MAX / 2);
  int rc = parse_url(ws, o->url);
  if (!rc && o->ca_file && !(ws->ca_file = cg_strdup(o->ca_file)))
    rc = CG_ENOMEM;
  if (!rc && o->headers) {
    cg_buf x;
    cg_buf_init(&x, CG_LIMIT_HEADER_BYTES);
    for (const char *const *h = o->headers; *h && !rc; h++) {
      const char *colon = strchr(*h, ':');
      if (!colon || colon == *h || strpbrk(*h, "\r\n"))
        rc = CG_EINVAL;
      else if (cg_buf_appends(&x, *h) || cg_buf_append(&x, "\r\n", 2))
        rc = CG_EINVAL;
    }
    if (!rc && x.len && !(ws->extra = cg_strdup(x.data))) rc = CG_ENOMEM;
    cg_buf_free(&x);
  }
  if (!rc) rc = uv_tcp_init(loop, &ws->tcp);
  if (rc) {
    ws_free(ws);
    return rc == CG_EINVAL || rc == CG_ENOMEM ? rc : CG_EINVAL;
  }
  uv_timer_init(loop, &ws->timer); /* cannot fail */
  ws->tcp.data = ws->timer.data = ws;
  ws->refs = 2;
  ws->notify = 1;
  ws->state = ST_RESOLVING;
  *out = ws;
  timer_set(ws, T_CONNECT, ws->connect_timeout_ms);

  struct addrinfo hints;
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  ws->gai.data = ws;
  rc = uv_getaddrinfo(loop, &ws->gai, on_resolved, ws->host, ws->port_str,
                      &hints);
  if (rc) {
    memset(&ws->gai, 0, sizeof(ws->gai));
    ws_end(ws, rc, "cannot resolve %s: %s", ws->host, cg_strerror(rc));
  } else {
    ws->refs++;
  }
  return 0;
}

/* ------------------------------------------------------ server: request */

static void server_respond(cg__ws *ws, int status, const char *headers,
                           const char *body) {
  cg_buf r;
  size_t hl = headers ? strlen(headers) : 0;
  size_t bl = body ? strlen(body) : 0;
  cg_buf_init(&r, CG_LIMIT_HEADER_BYTES);
  int rc =
      cg_buf_appendf(&r,
                     "HTTP/1.1 %d %s\r\nConnection: close\r\n"
                     "Content-Length: %zu\r\n",
                     status, http_status_str((enum http_status)status), bl);
  if (!rc && hl) rc = cg_buf_append(&r, headers, hl);
  if (!rc && hl && (hl < 2 || strcmp(headers + hl - 2, "\r\n") != 0))
    rc = cg_buf_append(&r, "\r\n", 2);
  if (!rc) rc = cg_buf_append(&r, "\r\n", 2);
  if (!rc && bl) rc = cg_buf_append(&r, body, bl);
  if (!rc) rc = cg_buf_append(&ws->obuf, r.data, r.len);
  cg_buf_free(&r);
  if (rc) {
    ws_end(ws, rc, NULL);
    return;
  }
  ws->state = ST_REFUSING;
  timer_set(ws, T_LINGER, CG_LIMIT_HTTP_LINGER_MS);
  ws_flush(ws);
}

/* RFC 6455 §4.2.1: what a server requires of the opening handshake. */
static const char *server_check(cg__ws *ws) {
  unsigned char raw[WS_KEY_B64];
  const char *key = bstr(&ws->hv[HV_KEY]);
  if (ws->parser.method != HTTP_GET) return "not a GET request";
  if (!list_has(bstr(&ws->hv[HV_UPGRADE]), "websocket"))
    return "no Upgrade: websocket";
  if (!list_has(bstr(&ws->hv[HV_CONNECTION]), "upgrade"))
    return "no Connection: Upgrade";
  /* The key is base64 of 16 bytes: 24 characters ending in "==". */
  if (strlen(key) != WS_KEY_B64 || key[WS_KEY_B64 - 1] != '=' ||
      key[WS_KEY_B64 - 2] != '=' ||
      EVP_DecodeBlock(raw, (const unsigned char *)key, WS_KEY_B64) != 18)
    return "missing or bad Sec-WebSocket-Key";
  if (!token_eq(bstr(&ws->hv[HV_VERSION]), ws->hv[HV_VERSION].len, "13"))
    return "Sec-WebSocket-Version is not 13";
  return NULL;
}

static void server_request_done(cg__ws *ws, const char *rest, size_t n) {
  cg__ws_server *s = ws->srv;
  const char *bad = server_check(ws);
  if (bad) {
    char body[160];
    cg_fmt(body, sizeof(body), "bad WebSocket upgrade request: %s\n", bad);
    server_respond(ws, 400, "Sec-WebSocket-Version: 13", body);
    return;
  }
  /* The accept callback sees the path and query apart. */
  struct http_parser_url u;
  char path[CG_LIMIT_URL + 1], query[CG_LIMIT_URL + 1];
  path[0] = query[0] = '\0';
  http_parser_url_init(&u);
  if (http_parser_parse_url(bstr(&ws->url), ws->url.len, 0, &u) != 0) {
    server_respond(ws, 400, NULL, "bad request target\n");
    return;
  }
  if (u.field_set & (1 << UF_PATH))
    cg_fmt(path, sizeof(path), "%.*s", (int)u.field_data[UF_PATH].len,
           ws->url.data + u.field_data[UF_PATH].off);
  else
    cg_strlcpy(path, "/", sizeof(path));
  if (u.field_set & (1 << UF_QUERY))
    cg_fmt(query, sizeof(query), "%.*s", (int)u.field_data[UF_QUERY].len,
           ws->url.data + u.field_data[UF_QUERY].off);

  cg__ws_request req = {.path = path, .query = query, .peer = ws->peer};
  cg__ws_callbacks cbs;
  void *conn_ud = NULL;
  char *rh = calloc(1, 1024), *rb = calloc(1, 1024);
  if (!rh || !rb) {
    free(rh);
    free(rb);
    ws_end(ws, CG_ENOMEM, NULL);
    return;
  }
  memset(&cbs, 0, sizeof(cbs));
  int status = s->accept(s, &req, &cbs, &conn_ud, rh, rb, s->ud);
  rh[1023] = rb[1023] = '\0';
  if (ws->ended || s->closing) {
    free(rh);
    free(rb);
    ws_end(ws, UV_ECANCELED, NULL);
    return;
  }
  if (status != 101) {
    if (status < 400 || status > 599) status = 500;
    server_respond(ws, status, rh, rb);
    free(rh);
    free(rb);
    return;
  }
  free(rh);
  free(rb);
  if (!cbs.on_message || !cbs.on_close) { /* a bug in the caller */
    server_respond(ws, 500, NULL, "accept gave no callbacks\n");
    return;
  }
  char acc[32];
  if (accept_key(bstr(&ws->hv[HV_KEY]), acc) != 0 ||
      cg_buf_appendf(&ws->obuf,
                     "HTTP/1.1 101 Switching Protocols\r\n"
                     "Upgrade: websocket\r\n"
                     "Connection: Upgrade\r\n"
                     "Sec-WebSocket-Accept: %s\r\n\r\n",
                     acc) != 0) {
    ws_end(ws, CG_ENOMEM, NULL);
    return;
  }
  ws->cbs = cbs;
  ws->ud = conn_ud;
  ws->notify = 1; /* from here on_close is owed */
  ws_flush(ws);
  if (ws->ended) return;
  ws_open(ws, rest, n);
}

static void server_request_in(cg__ws *ws, const char *data, size_t n) {
  size_t used = http_parser_execute(&ws->parser, &parser_settings, data, n);
  if (ws->ended) return;
  if (ws->headers_done) {
    server_request_done(ws, data + used, n - used);
    return;
  }
  enum http_errno e = HTTP_PARSER_ERRNO(&ws->parser);
  if (e == HPE_OK) return; /* more to come */
  if (ws->header_bytes > CG_LIMIT_HEADER_BYTES)
    server_respond(ws, 431, NULL, "request headers too large\n");
  else if (ws->url.len >= CG_LIMIT_URL)
    server_respond(ws, 414, NULL, "request target too long\n");
  else
    server_respond(ws, 400, NULL, "malformed HTTP request\n");
}

/* ----------------------------------------------------------------- input */

static void plain_in(cg__ws *ws, const char *data, size_t n) {
  switch (ws->state) {
    case ST_UPGRADE:
    case ST_REFUSED:
      client_answer_in(ws, data, n);
      break;
    case ST_HANDSHAKE:
      server_request_in(ws, data, n);
      break;
    case ST_OPEN:
      /* After a close frame or a failure wslay reads no more: what the peer
       * still sends is dropped, not buffered. */
      if (!wslay_event_get_read_enabled(ws->ctx)) return;
      if (cg_buf_append(&ws->in, data, n) != 0) {
        ws_end(ws, CG_ENOMEM, "out of memory");
        return;
      }
      ws_recv(ws);
      break;
    default: /* refusing: discard; done: ignore */
      break;
  }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b) {
  CG_UNUSED(h);
  CG_UNUSED(suggested);
  b->base = malloc(READ_SIZE);
  b->len = b->base ? READ_SIZE : 0;
}

static void on_eof(cg__ws *ws, int rc) {
  switch (ws->state) {
    case ST_REFUSED: /* a body delimited by the connection's end */
      client_refused(ws);
      break;
    case ST_UPGRADE:
    case ST_TLS:
      ws_end(ws, rc == UV_EOF ? CG_EMALFORMED : rc,
             "connection closed during the opening handshake");
      break;
    case ST_OPEN:
      if (wslay_event_get_close_sent(ws->ctx)) /* the peer closed after us */
        ws_end_closing(ws);
      else
        ws_end(ws, rc, "connection closed by the peer: %s", cg_strerror(rc));
      break;
    default:
      ws_end(ws, rc, NULL);
      break;
  }
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b) {
  cg__ws *ws = st->data;
  if (n > 0 && !ws->ended) {
    if (!ws->tls) {
      plain_in(ws, b->base, (size_t)n);
    } else if (BIO_write(ws->rbio, b->base, (int)n) != (int)n) {
      ws_end(ws, CG_ENOMEM, "out of memory");
    } else {
      tls_in(ws);
    }
  } else if (n < 0 && !ws->ended) {
    on_eof(ws, (int)n);
  }
  if (b && b->base) free(b->base);
}

static void on_timer(uv_timer_t *t) {
  cg__ws *ws = t->data;
  timer_kind k = ws->tkind;
  ws->tkind = T_NONE;
  if (ws->ended) return;
  switch (k) {
    case T_CONNECT:
      if (ws->state == ST_REFUSED) /* the refusal's body took too long */
        client_refused(ws);
      else if (ws->is_server)
        ws_end(ws, CG_ETIMEDOUT, "no upgrade request within %u ms",
               SERVER_HANDSHAKE_MS);
      else
        ws_end(ws, CG_ETIMEDOUT, "opening handshake took over %u ms",
               ws->connect_timeout_ms);
      break;
    case T_CLOSE: {
      const char *why;
      int rc = closing_rc(ws, &why);
      if (rc)
        ws_end(ws, rc, "%s", why ? why : ws->reason);
      else
        ws_end(ws, CG_ETIMEDOUT, "the peer did not finish the close handshake");
      break;
    }
    case T_LINGER:
    default:
      ws_end(ws, 0, NULL);
      break;
  }
}

/* --------------------------------------------------------------- public */

int cg__ws_send(cg__ws *ws, int binary, const void *data, size_t len) {
  if (ws->ended || ws->state != ST_OPEN || ws->close_queued ||
      wslay_event_get_close_sent(ws->ctx) ||
      !wslay_event_get_write_enabled(ws->ctx))
    return CG_EALREADY;
  if (len > CG__WS_MAX_MESSAGE_HARD) return CG_ETOOBIG;
  size_t queued = cg__ws_queued(ws);
  if (queued && queued + len > CG__WS_SEND_HIGH_WATER) return CG_EBUSY;
  uint8_t op = binary ? WSLAY_BINARY_FRAME : WSLAY_TEXT_FRAME;
  int r;
  if (len > FRAGMENT_ABOVE) {
    frag *f = calloc(1, sizeof(*f));
    if (!f || !(f->data = malloc(len))) {
      free(f);
      return CG_ENOMEM;
    }
    memcpy(f->data, data, len);
    f->len = len;
    struct wslay_event_fragmented_msg m;
    memset(&m, 0, sizeof(m));
    m.opcode = op;
    m.source.data = f;
    m.read_callback = frag_read;
    r = wslay_event_queue_fragmented_msg(ws->ctx, &m);
    if (r) {
      free(f->data);
      free(f);
    } else {
      f->next = ws->frags;
      if (ws->frags) ws->frags->prev = f;
      ws->frags = f;
      ws->frag_bytes += len;
    }
  } else {
    struct wslay_event_msg m = {op, data, len}; /* wslay copies */
    r = wslay_event_queue_msg(ws->ctx, &m);
  }
  if (r == WSLAY_ERR_NOMEM) return CG_ENOMEM;
  if (r) return CG_EALREADY;
  if (!ws->in_recv) ws_pump(ws);
  return 0;
}

int cg__ws_ping(cg__ws *ws, const void *data, size_t len) {
  if (len > WS_CONTROL_MAX) return CG_EINVAL;
  if (ws->ended || ws->state != ST_OPEN || ws->close_queued ||
      !wslay_event_get_write_enabled(ws->ctx))
    return CG_EALREADY;
  if (cg__ws_queued(ws) > CG__WS_SEND_HIGH_WATER) return CG_EBUSY;
  struct wslay_event_msg m = {WSLAY_PING, data, len};
  int r = wslay_event_queue_msg(ws->ctx, &m);
  if (r == WSLAY_ERR_NOMEM) return CG_ENOMEM;
  if (r) return CG_EALREADY;
  if (!ws->in_recv) ws_pump(ws);
  return 0;
}

void cg__ws_close(cg__ws *ws, uint16_t code, const char *reason) {
  if (ws->ended || ws->close_queued) return;
  if (ws->state != ST_OPEN) { /* no handshake to close yet */
    ws_end(ws, UV_ECANCELED, "closed before the connection opened");
    return;
  }
  size_t rl = reason ? strlen(reason) : 0;
  if (rl > WS_REASON_MAX) rl = WS_REASON_MAX;
  ws->close_queued = 1;
  int r = wslay_event_queue_close(ws->ctx, code, (const uint8_t *)reason, rl);
  if (r == WSLAY_ERR_INVALID_ARGUMENT) /* 1005, 1006 … are never sent */
    r = wslay_event_queue_close(ws->ctx, WSLAY_CODE_NORMAL_CLOSURE,
                                (const uint8_t *)reason, rl);
  CG_UNUSED(r); /* NO_MORE_MSG: a close frame is queued already */
  timer_set(ws, T_CLOSE, CLOSE_CAP_MS);
  if (!ws->in_recv) ws_pump(ws);
}

void cg__ws_abort(cg__ws *ws) {
  ws_end(ws, UV_ECANCELED, "aborted");
}

void cg__ws_pause(cg__ws *ws, int paused) {
  if (ws->ended) return;
  ws->paused = paused ? 1 : 0;
  if (ws->state <= ST_CONNECTING) return; /* reading starts on connect */
  if (paused && ws->reading) {
    uv_read_stop((uv_stream_t *)&ws->tcp);
    ws->reading = 0;
  } else if (!paused && !ws->reading) {
    int rc = uv_read_start((uv_stream_t *)&ws->tcp, on_alloc, on_read);
    if (rc) {
      ws_end(ws, rc, "read failed: %s", cg_strerror(rc));
      return;
    }
    ws->reading = 1;
    if (ws->tls && ws->state == ST_OPEN) tls_in(ws); /* decrypted, unread */
  }
}

void cg__ws_set_ud(cg__ws *ws, void *ud) {
  ws->ud = ud;
}

size_t cg__ws_queued(const cg__ws *ws) {
  size_t n = ws->obuf.len + ws->wbuf.len + ws->frag_bytes;
  if (ws->ctx) n += wslay_event_get_queued_msg_length(ws->ctx);
  return n;
}

const char *cg__ws_peer(const cg__ws *ws) {
  return ws->peer;
}

/* --------------------------------------------------------------- server */

static void server_maybe_finish(cg__ws_server *s) {
  if (!s->closing || s->listener.data || s->conns) return;
  void (*cb)(void *) = s->close_cb;
  void *ud = s->close_ud;
  free(s);
  if (cb) cb(ud);
}

static void on_connection(uv_stream_t *l, int status) {
  cg__ws_server *s = l->data;
  if (status < 0 || s->closing) return;
  cg__ws *ws = calloc(1, sizeof(*ws));
  if (!ws) return; /* the connection waits in the backlog */
  ws->loop = s->loop;
  ws->is_server = 1;
  ws->srv = s;
  ws->max_message = s->max_message;
  cg_buf_init(&ws->in, ws->max_message + READ_SIZE);
  cg_buf_init(&ws->obuf, SIZE_MAX / 2);
  cg_buf_init(&ws->wbuf, SIZE_MAX / 2);
  handshake_init(ws, HTTP_REQUEST);
  uv_tcp_init(s->loop, &ws->tcp);
  uv_timer_init(s->loop, &ws->timer);
  ws->tcp.data = ws->timer.data = ws;
  ws->refs = 2;
  ws->next = s->conns;
  if (s->conns) s->conns->prev = ws;
  s->conns = ws;
  s->nlive++;
  ws->counted_live = 1;
  ws->state = ST_HANDSHAKE;
  int rc = uv_accept(l, (uv_stream_t *)&ws->tcp);
  if (!rc) uv_tcp_nodelay(&ws->tcp, 1); /* as the client */
  if (!rc) rc = uv_read_start((uv_stream_t *)&ws->tcp, on_alloc, on_read);
  if (rc) {
    ws_end(ws, rc, NULL);
    return;
  }
  ws->reading = 1;
  peer_name(ws);
  if (s->nlive > s->max_connections) {
    server_respond(ws, 503, "Retry-After: 1", "too many connections\n");
    return;
  }
  timer_set(ws, T_CONNECT, SERVER_HANDSHAKE_MS);
}

static void on_listener_close(uv_handle_t *h) {
  cg__ws_server *s = h->data;
  s->listener.data = NULL; /* marks the listener closed */
  server_maybe_finish(s);
}

int cg__ws_server_new(uv_loop_t *loop, const cg__ws_server_options *o,
                      cg__ws_accept_fn accept, void *ud, cg__ws_server **out) {
  struct sockaddr_storage ss;
  if (!loop || !accept || !out) return CG_EINVAL;
  const char *host = o && o->host ? o->host : "127.0.0.1";
  int port = o ? o->port : 0;
  if (port < 0 || port > 65535) return CG_EINVAL;
  memset(&ss, 0, sizeof(ss));
  if (uv_ip4_addr(host, port, (struct sockaddr_in *)&ss) != 0 &&
      uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss) != 0)
    return CG_EINVAL; /* numeric only: resolving would block */
  cg__ws_server *s = calloc(1, sizeof(*s));
  if (!s) return CG_ENOMEM;
  s->loop = loop;
  s->accept = accept;
  s->ud = ud;
  s->max_message =
      o && o->max_message ? o->max_message : CG__WS_MAX_MESSAGE_DEFAULT;
  if (s->max_message > CG__WS_MAX_MESSAGE_HARD)
    s->max_message = CG__WS_MAX_MESSAGE_HARD;
  s->max_connections =
      o && o->max_connections ? o->max_connections : MAX_CONNECTIONS_DEFAULT;
  int rc = uv_tcp_init(loop, &s->listener);
  if (rc) {
    free(s);
    return rc;
  }
  s->listener.data = s;
  rc = uv_tcp_bind(&s->listener, (const struct sockaddr *)&ss, 0);
  if (!rc)
    rc = uv_listen((uv_stream_t *)&s->listener, LISTEN_BACKLOG, on_connection);
  if (!rc) {
    int len = (int)sizeof(ss);
    rc = uv_tcp_getsockname(&s->listener, (struct sockaddr *)&ss, &len);
    if (!rc)
      s->port = ss.ss_family == AF_INET
                    ? ntohs(((struct sockaddr_in *)&ss)->sin_port)
                    : ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
  }
  if (rc) {
    /* The handle's memory must outlive its close: freed in the close
     * callback (no user callback: the call failed). */
    s->closing = 1;
    uv_close((uv_handle_t *)&s->listener, on_listener_close);
    return rc;
  }
  *out = s;
  return 0;
}

int cg__ws_server_port(const cg__ws_server *s) {
  return s->port;
}

size_t cg__ws_server_connections(const cg__ws_server *s) {
  return s->nopen;
}

void cg__ws_server_close(cg__ws_server *s, void (*cb)(void *ud), void *ud) {
  if (!s || s->closing) return;
  s->closing = 1;
  s->close_cb = cb;
  s->close_ud = ud;
  uv_close((uv_handle_t *)&s->listener, on_listener_close);
  for (cg__ws *c = s->conns; c; c = c->next)
    ws_end(c, UV_ECANCELED, "server closing");
}
