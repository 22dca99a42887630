/* Internal WebSocket (RFC 6455) client and server on a libuv loop.
 *
 * Framing is wslay's (a maintained library, never a hand-written frame
 * parser); TLS is OpenSSL through memory BIOs so every byte still moves on
 * the loop; the upgrade response is parsed with http-parser. One
 * implementation serves both long-connection transports (Lark: binary
 * protobuf frames; DingTalk: JSON text frames) and the emulator's gateways.
 *
 * Threading: a connection belongs to one loop and is used only on that loop's
 * thread. Nothing blocks: names resolve with uv_getaddrinfo on the thread
 * pool.
 *
 * Lifetime (both sides): once a connection exists, on_close is called exactly
 * once, on a loop turn after the call that caused it (never inside
 * cg__ws_send/close/abort), and the connection is freed right after on_close
 * returns. No callback runs after on_close.
 */
#ifndef CG_WS_H
#define CG_WS_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct cg__ws cg__ws;

/* Default and hard cap of one reassembled message (all its frames). */
#define CG__WS_MAX_MESSAGE_DEFAULT (1024u * 1024u)
#define CG__WS_MAX_MESSAGE_HARD (16u * 1024u * 1024u)
/* Whole opening handshake (DNS + TCP + TLS + upgrade) when 0 is given. */
#define CG__WS_CONNECT_TIMEOUT_DEFAULT_MS 10000u
/* Bytes queued for sending before cg__ws_send answers CG_EBUSY. */
#define CG__WS_SEND_HIGH_WATER (8u * 1024u * 1024u)

/* Why a connection ended (on_close). rc:
 *   0                 closed cleanly (close frames exchanged, or the peer
 *                     closed after our close)
 *   CG_EAUTH          client: the upgrade was refused (status != 101;
 *                     info->http_status and the Handshake-* headers say why)
 *                     or the TLS certificate did not verify (http_status 0)
 *   CG_ETIMEDOUT      client: the opening handshake took longer than
 *                     connect_timeout_ms
 *   CG_EMALFORMED     the peer broke the protocol (bad upgrade answer, bad
 *                     Sec-WebSocket-Accept, bad frame, bad UTF-8 in text)
 *   CG_ETOOBIG        a message passed max_message (closed with 1009)
 *   UV_ECONNREFUSED, UV_ECONNRESET, UV_EOF, UV_EAI_NONAME, … libuv codes
 *   UV_ECANCELED      cg__ws_abort was called
 *   CG_EIO            TLS failure other than verification (detail says)
 */
typedef struct cg__ws_close_info {
  uint16_t close_code;   /* close frame code received (0 when none) */
  const char *reason;    /* close reason or error detail; never NULL */
  /* Client, refused upgrade only (else 0 / ""): */
  int http_status;
  const char *handshake_status;      /* Handshake-Status header, "" absent */
  const char *handshake_msg;         /* Handshake-Msg */
  const char *handshake_autherrcode; /* Handshake-Autherrcode */
  const char *body;                  /* refusal body (first 4 KiB), "" */
} cg__ws_close_info;

typedef struct cg__ws_callbacks {
  /* Client: the upgrade succeeded. Server: the upgrade was accepted. May be
   * NULL. */
  void (*on_open)(cg__ws *ws, void *ud);
  /* One complete message (fragments reassembled). binary: 1 for opcode 2, 0
   * for text (UTF-8 checked). data is borrowed for the call. */
  void (*on_message)(cg__ws *ws, int binary, const uint8_t *data, size_t len,
                     void *ud);
  /* A pong arrived (answers to our pings). May be NULL. Incoming pings are
   * answered by wslay itself. */
  void (*on_pong)(cg__ws *ws, const uint8_t *data, size_t len, void *ud);
  /* Exactly once; see the lifetime rule at the top. info is borrowed. */
  void (*on_close)(cg__ws *ws, int rc, const cg__ws_close_info *info,
                   void *ud);
} cg__ws_callbacks;

typedef struct cg__ws_client_options {
  /* ws:// or wss:// URL, used as is (path and query go into the request
   * line). Copied. */
  const char *url;
  /* PEM CA bundle for wss:// (NULL = the system's default paths). Copied. */
  const char *ca_file;
  /* 0 = CG__WS_CONNECT_TIMEOUT_DEFAULT_MS. */
  uint32_t connect_timeout_ms;
  /* 0 = CG__WS_MAX_MESSAGE_DEFAULT; clamped to CG__WS_MAX_MESSAGE_HARD. */
  size_t max_message;
  /* Extra request headers "Name: value", NULL-terminated, or NULL. Copied. */
  const char *const *headers;
} cg__ws_client_options;

/* Starts connecting. Returns 0 and *out (valid until on_close), or
 * CG_EINVAL (bad URL or scheme, cbs->on_message/on_close missing),
 * CG_ENOMEM; no callback runs then. Peer certificate and host name are
 * verified for wss:// (SNI set). cbs is copied; ud borrowed. */
int cg__ws_connect(uv_loop_t *loop, const cg__ws_client_options *o,
                   const cg__ws_callbacks *cbs, void *ud, cg__ws **out);

/* Queues one message (copied). binary: 1 = opcode 2, 0 = text. Returns 0;
 * CG_EALREADY when the connection is closing/closed or not open yet;
 * CG_EBUSY when more than CG__WS_SEND_HIGH_WATER bytes are queued;
 * CG_ETOOBIG over CG__WS_MAX_MESSAGE_HARD; CG_ENOMEM. */
int cg__ws_send(cg__ws *ws, int binary, const void *data, size_t len);
/* Queues a ping control frame (payload ≤ 125 bytes, copied). Same returns;
 * CG_EINVAL for a longer payload. */
int cg__ws_ping(cg__ws *ws, const void *data, size_t len);
/* Starts the closing handshake with code and reason (≤ 123 bytes, copied,
 * may be NULL). Queued messages go out first. If the peer does not finish
 * the handshake within 2 s the socket is closed anyway. on_close follows
 * (rc 0 when the peer answered, CG_ETIMEDOUT when it did not). Before the
 * connection is open there is no handshake: the attempt ends, on_close
 * gets UV_ECANCELED. Idempotent. */
void cg__ws_close(cg__ws *ws, uint16_t code, const char *reason);
/* Drops the connection now: no close frame; on_close follows with
 * UV_ECANCELED (unless it already ended). Idempotent. */
void cg__ws_abort(cg__ws *ws);
/* 1: stop reading the socket (nothing is received, pings are not answered:
 * a half-open peer as the other side sees it); 0: read again. For the
 * emulator's "silent" fault and tests. */
void cg__ws_pause(cg__ws *ws, int paused);
/* Changes the ud passed to callbacks. */
void cg__ws_set_ud(cg__ws *ws, void *ud);
/* Bytes queued and not yet written to the socket. */
size_t cg__ws_queued(const cg__ws *ws);
/* The peer's address as "ip:port" (for logs), "" when unknown. Borrowed. */
const char *cg__ws_peer(const cg__ws *ws);

/* ---- server (plain ws://, for the emulator's gateways and tests) ------- */

typedef struct cg__ws_server cg__ws_server;

/* The upgrade request, borrowed for the duration of the accept call. */
typedef struct cg__ws_request {
  const char *path;  /* request target path, without the query */
  const char *query; /* after '?', "" when none */
  const char *peer;  /* "ip:port" */
} cg__ws_request;

/* Decides an upgrade. Return 101 to accept: *cbs (written by the callee)
 * gets the new connection's callbacks and *conn_ud its ud. Any other status
 * (400..599) refuses it: the server answers that status with the headers
 * in refuse_headers ("Name: value" lines joined by "\r\n", may be empty)
 * and body refuse_body (both written by the callee into the provided
 * buffers, 1 KiB each, NUL-terminated). */
typedef int (*cg__ws_accept_fn)(cg__ws_server *s, const cg__ws_request *req,
                                cg__ws_callbacks *cbs, void **conn_ud,
                                char *refuse_headers, char *refuse_body,
                                void *ud);

typedef struct cg__ws_server_options {
  const char *host;   /* NULL = "127.0.0.1". Copied. */
  int port;           /* 0 = any free port (read it with cg__ws_server_port) */
  size_t max_message; /* as for the client */
  uint32_t max_connections; /* 0 = 1024; more are refused with 503 */
} cg__ws_server_options;

/* Binds and listens. 0 and *out, or a libuv code (UV_EADDRINUSE …),
 * CG_EINVAL, CG_ENOMEM. accept and ud borrowed. */
int cg__ws_server_new(uv_loop_t *loop, const cg__ws_server_options *o,
                      cg__ws_accept_fn accept, void *ud, cg__ws_server **out);
int cg__ws_server_port(const cg__ws_server *s);
/* Number of open (upgraded) connections. */
size_t cg__ws_server_connections(const cg__ws_server *s);
/* Stops listening and aborts every connection (each gets on_close with
 * UV_ECANCELED), then frees the server and calls cb (may be NULL). */
void cg__ws_server_close(cg__ws_server *s, void (*cb)(void *ud), void *ud);

#endif /* CG_WS_H */
