/* cardgate — long connections: the Lark/Feishu WebSocket client and the
 * DingTalk Stream client.
 *
 * Both are transports for a cg_app: what arrives over them goes through the
 * same routes, handlers, workflows, deadline, duplicate suppression and
 * outbox as an HTTP callback; only the framing differs. No public URL is
 * needed: the client dials out, authenticates once, and keeps the
 * connection alive (pings, a liveness watchdog, reconnects).
 *
 * A client belongs to its app's loop and is used on that thread only.
 * Several clients (several apps, or several connections of one app) may
 * run on one loop.
 */
#ifndef CARDGATE_STREAM_H
#define CARDGATE_STREAM_H

#include <stddef.h>
#include <stdint.h>

#include "app.h"
#include "error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
  CG_CONN_IDLE = 0,       /* created, not started */
  CG_CONN_CONNECTING = 1, /* asking for an endpoint, dialling, upgrading */
  CG_CONN_CONNECTED = 2,  /* receiving */
  CG_CONN_WAITING = 3,    /* lost or refused; the next attempt is scheduled */
  CG_CONN_FAILED = 4,     /* stopped for good (bad credentials, too many
                             connections, retries used up): see the detail */
  CG_CONN_CLOSED = 5      /* stopped by cg_*_close */
} cg_conn_state;

/* "idle", "connecting", "connected", "waiting", "failed", "closed". */
CG_EXTERN const char *cg_conn_state_name(cg_conn_state s);

/* Called on every state change with a one-line reason (never a secret;
 * borrowed for the call). May be NULL. */
typedef void (*cg_conn_state_fn)(cg_conn_state state, const char *detail,
                                 void *ud);

/* Counters (for /healthz and tests). */
typedef struct cg_conn_stats {
  uint64_t connects;      /* upgrades that succeeded */
  uint64_t messages;      /* data messages received (after reassembly) */
  uint64_t acks;          /* ACKs sent */
  uint64_t malformed;     /* frames dropped as malformed */
  uint64_t pings_sent;
  uint64_t watchdog_trips; /* connections dropped as silent */
} cg_conn_stats;

/* ---- Lark / Feishu long connection (lark.md §3) -------------------------- */

typedef struct cg_lark_ws cg_lark_ws;

typedef struct cg_lark_ws_options {
  /* Origin of the bootstrap endpoint (POST {base}/callback/ws/endpoint):
   * NULL = "https://open.feishu.cn"; "https://open.larksuite.com"; http://
   * only to a loopback host (the emulator). Copied. */
  const char *base_url;
  /* The app's credentials (self-built apps only: Lark offers the long
   * connection to them alone). NULL = the app's lark_app_id /
   * lark_app_secret. Copied; the secret is never logged. */
  const char *app_id;
  const char *app_secret;
  /* PEM CA bundle for wss:// and https:// (NULL = the system's). Copied. */
  const char *ca_file;
  /* After each ping, the connection is declared dead when nothing at all
   * arrives within this many ms (a half-open socket), and a new one is
   * made. 0 = 10000. The SDKs have no such watchdog (lark.md §3.6). */
  uint32_t ping_timeout_ms;
  /* Incomplete fragmented messages are dropped this long after their first
   * fragment (0 = 10000), and all pending fragments together are capped at
   * max_pending_bytes (0 = 16 MiB). */
  uint32_t fragment_ttl_ms;
  size_t max_pending_bytes;
  /* Overrides of the server's ClientConfig (0 = take the server's; the
   * server's pongs update it). For tests and the impatient. */
  uint32_t ping_interval_ms;
  uint32_t reconnect_interval_ms;
  uint32_t reconnect_nonce_ms;
  cg_conn_state_fn on_state;
  void *on_state_ud;
} cg_lark_ws_options;

/* Fills o with the defaults above. */
CG_EXTERN void cg_lark_ws_options_init(cg_lark_ws_options *o);
/* Creates a client feeding app (borrowed; must outlive the client). NULL
 * and *err: CG_EINVAL (no app id/secret here or in the app), CG_ECONFIG
 * (bad base URL), CG_ENOMEM, CG_EIO (libcurl); the reason is in
 * cg_app_last_error(app). Free with cg_lark_ws_close. */
CG_EXTERN cg_lark_ws *cg_lark_ws_new(cg_app *app, const cg_lark_ws_options *o,
                                     int *err);
/* Connects, and keeps connected until closed or failed. 0, CG_EALREADY. */
CG_EXTERN int cg_lark_ws_start(cg_lark_ws *c);
/* The current state, and the reason of the last change (borrowed until the
 * next loop turn; may be NULL). */
CG_EXTERN cg_conn_state cg_lark_ws_state(const cg_lark_ws *c,
                                         const char **detail);
CG_EXTERN void cg_lark_ws_stats(const cg_lark_ws *c, cg_conn_stats *out);
/* Graceful stop: ACKs of messages being handled are still sent while the
 * socket lives (up to the deadline), then the socket is closed, handles
 * are closed and the client is freed; cb (may be NULL) runs after that.
 * NULL is ignored. */
CG_EXTERN void cg_lark_ws_close(cg_lark_ws *c, void (*cb)(void *ud), void *ud);

/* ---- DingTalk Stream mode (dingtalk.md §1–§3) ---------------------------- */

typedef struct cg_dingtalk_stream cg_dingtalk_stream;

typedef struct cg_dingtalk_stream_options {
  /* Origin of the open-connection call (POST {base}/v1.0/gateway/
   * connections/open): NULL = "https://api.dingtalk.com"; http:// only to a
   * loopback host (the emulator). Copied. */
  const char *base_url;
  /* Client ID / Client Secret (AppKey / AppSecret). NULL = the app's
   * dingtalk_client_id / dingtalk_client_secret. Copied, never logged. */
  const char *client_id;
  const char *client_secret;
  /* Callback topics besides the two always subscribed (card callbacks and
   * chatbot messages), NULL-terminated, or NULL. Copied. */
  const char *const *topics;
  /* Subscribe to EVENT "*" too (events are ACKed SUCCESS and logged). */
  int events;
  const char *ca_file; /* as for Lark */
  /* A WebSocket ping is sent after this long without any inbound frame
   * (0 = 30000), and the connection declared dead when nothing answers
   * within pong_timeout_ms (0 = 5000). */
  uint32_t idle_ping_ms;
  uint32_t pong_timeout_ms;
  /* Reconnect backoff: first wait, doubling with jitter up to the cap
   * (0 = 1000 and 60000). Reset once a new connection delivers a frame. */
  uint32_t backoff_min_ms;
  uint32_t backoff_max_ms;
  cg_conn_state_fn on_state;
  void *on_state_ud;
} cg_dingtalk_stream_options;

CG_EXTERN void cg_dingtalk_stream_options_init(cg_dingtalk_stream_options *o);
/* Creates a client feeding app (borrowed; must outlive it). NULL and *err:
 * CG_EINVAL (no client id/secret), CG_ECONFIG (bad base URL), CG_ENOMEM,
 * CG_EIO. Free with cg_dingtalk_stream_close. */
CG_EXTERN cg_dingtalk_stream *cg_dingtalk_stream_new(
    cg_app *app, const cg_dingtalk_stream_options *o, int *err);
CG_EXTERN int cg_dingtalk_stream_start(cg_dingtalk_stream *c);
CG_EXTERN cg_conn_state cg_dingtalk_stream_state(const cg_dingtalk_stream *c,
                                                 const char **detail);
CG_EXTERN void cg_dingtalk_stream_stats(const cg_dingtalk_stream *c,
                                        cg_conn_stats *out);
CG_EXTERN void cg_dingtalk_stream_close(cg_dingtalk_stream *c,
                                        void (*cb)(void *ud), void *ud);

/* DingTalk: answer a chat message to the bot with a card. The card is
 * created and delivered (POST /v1.0/card/instances/createAndDeliver,
 * callbackType STREAM) into the conversation the message came from: the
 * group (IM_GROUP.<conversationId>) or the 1:1 chat with the bot
 * (IM_ROBOT.<senderStaffId>), robotCode = the message's robotCode. Its
 * variables are the workflow's initial ones with vars_json (a JSON object,
 * may be NULL) laid over them; the card is recorded in the store in the
 * workflow's initial state, so that workflow takes its clicks (the built-in
 * "approval": 同意 / 拒绝 set `status`).
 *
 * match: a route expression (see cg_app_route); NULL = every chat message
 * (kind == "message" && platform == "dingtalk"). The message is ACKed at
 * once; the card is sent right after and failures are logged (and retried
 * once when retryable).
 * Needs the app's DingTalk credentials and a store. 0; CG_ECONFIG (no
 * credentials or store, or no workflow of that name was added yet);
 * CG_EINVAL (bad match or vars_json, template_id empty); CG_ENOMEM. */
CG_EXTERN int cg_app_dingtalk_card_on_message(cg_app *app, const char *match,
                                              const char *template_id,
                                              const char *workflow,
                                              const char *vars_json);

#ifdef __cplusplus
}
#endif
#endif /* CARDGATE_STREAM_H */
