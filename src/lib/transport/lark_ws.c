/* The Lark / Feishu long connection (lark.md §3, corrections §8).
 *
 * One client = one app's connection: bootstrap over HTTPS (POST
 * /callback/ws/endpoint → a wss URL and the ClientConfig), a WebSocket (the
 * shared ws.c layer), protobuf frames (lark_frame.c). The client pings at
 * once and every PingInterval; a watchdog armed by each ping drops a
 * connection from which nothing arrives (half-open sockets go unnoticed by
 * the vendors' SDKs). Data frames are reassembled, handed to the app as
 * plaintext payloads — the same routes, deadline, dedupe and outbox as HTTP
 * — and ACKed on the connection they came on with the app's answer.
 * Reconnects follow the server's policy: a random first wait below
 * ReconnectNonce, then ReconnectInterval between fresh bootstraps, at most
 * ReconnectCount attempts; bad credentials and "too many connections" stop
 * for good. Design notes: docs/long-connection.md. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "../../common/common.h"
#include "cardgate/version.h"
#include "../codec/lark_frame.h"
#include "../core/app_int.h"
#include "../net/https_client.h"
#include "../net/ws.h"
#include "cardgate/stream.h"
#include "conn_int.h"

#define LOG "lark-ws"
#define DEFAULT_BASE "https://open.feishu.cn"
#define BOOTSTRAP_TIMEOUT_MS 15000u /* Node's */
#define DEFAULT_PING_TIMEOUT_MS 10000u
#define DEFAULT_FRAGMENT_TTL_MS 10000u
#define DEFAULT_PENDING_BYTES (16u * 1024u * 1024u)
#define CLOSE_WAIT_MS 3000u /* graceful stop: ACKs still due get this long */

/* A data message being handled: what its ACK needs. */
typedef struct pending {
  struct cg_lark_ws *c;
  uint64_t gen;          /* connection it came on */
  cg__lark_frame frame;  /* the request frame (payload dropped) */
  uint64_t start_ms;     /* loop time at arrival, for biz_rt */
  struct pending *prev, *next;
} pending;

struct cg_lark_ws {
  cg_app *app;
  uv_loop_t *loop;
  cg__conn_common k; /* id = app id, secret = app secret, state, /healthz */
  cg_lark_ws_options o; /* copies of the numbers and callbacks */
  cg__https *https;
  cg__ws *ws;
  uint64_t gen;      /* incremented per connection */
  int32_t service_id;
  char device_id[96];
  cg__lark_ws_config cfg;
  cg__lark_frags *frags;
  int attempts;      /* failed attempts since the last success */
  int bootstrapping; /* a bootstrap request is in flight */
  int closing;
  void (*close_cb)(void *ud);
  void *close_ud;
  uv_timer_t ping_timer, watchdog_timer, retry_timer, close_timer;
  int timers_open; /* handles not yet closed */
  pending *pendings;
  size_t npending;
  cg_conn_stats stats;
  cg_buf out;
};

static void maybe_finish_close(cg_lark_ws *c);
static void schedule_retry(cg_lark_ws *c, const char *why);
static void bootstrap(cg_lark_ws *c);

void cg_lark_ws_options_init(cg_lark_ws_options *o) {
  memset(o, 0, sizeof *o);
}

static cg_conn_state reg_state(const void *self, const char **detail) {
  return cg_lark_ws_state(self, detail);
}

/* ---- timers ------------------------------------------------------------- */

static uint64_t ping_interval_ms(const cg_lark_ws *c) {
  if (c->o.ping_interval_ms) return c->o.ping_interval_ms;
  return (uint64_t)c->cfg.ping_interval * 1000u;
}

static void watchdog_cb(uv_timer_t *t) {
  cg_lark_ws *c = t->data;
  if (!c->ws) return;
  c->stats.watchdog_trips++;
  cg__log(c->app, CG_LOG_WARN, LOG,
          "app %s: nothing received for %u ms after a ping: the connection is dead (half-open); reconnecting",
          c->k.id, (unsigned)(c->o.ping_timeout_ms ? c->o.ping_timeout_ms : DEFAULT_PING_TIMEOUT_MS));
  cg__ws_abort(c->ws); /* on_close follows and reconnects */
}

static void send_ping(cg_lark_ws *c) {
  cg_buf_reset(&c->out);
  if (cg__lark_frame_ping(c->service_id, &c->out) != 0) return;
  if (cg__ws_send(c->ws, 1, c->out.data, c->out.len) != 0) return;
  c->stats.pings_sent++;
  /* The watchdog runs from the first ping left unanswered; the next inbound
   * frame (the pong, or anything) stops it. */
  if (!uv_is_active((uv_handle_t *)&c->watchdog_timer))
    uv_timer_start(&c->watchdog_timer, watchdog_cb,
                   c->o.ping_timeout_ms ? c->o.ping_timeout_ms : DEFAULT_PING_TIMEOUT_MS, 0);
}

static void ping_cb(uv_timer_t *t) {
  cg_lark_ws *c = t->data;
  if (!c->ws || c->k.state != CG_CONN_CONNECTED) return;
  send_ping(c);
  cg__lark_frags_sweep(c->frags, uv_now(c->loop));
}

static void start_ping_timer(cg_lark_ws *c) {
  uint64_t iv = ping_interval_ms(c);
  if (iv == 0) iv = 120000;
  uv_timer_start(&c->ping_timer, ping_cb, iv, iv);
}

static void retry_cb(uv_timer_t *t) {
  cg_lark_ws *c = t->data;
  if (c->closing) return;
  bootstrap(c);
}

/* ---- ACKs ------------------------------------------------------------------ */

static void pending_free(cg_lark_ws *c, pending *p) {
  if (p->prev) p->prev->next = p->next;
  else c->pendings = p->next;
  if (p->next) p->next->prev = p->prev;
  c->npending--;
  cg__lark_frame_clear(&p->frame);
  free(p);
}

static void ack_done(int status, const char *body, size_t len, void *ud) {
  pending *p = ud;
  cg_lark_ws *c = p->c;
  if (c->ws && c->gen == p->gen && c->k.state == CG_CONN_CONNECTED) {
    int64_t rt = (int64_t)(uv_now(c->loop) - p->start_ms);
    cg_buf_reset(&c->out);
    int rc = cg__lark_frame_ack(&p->frame, rt, status, body, body ? len : 0, &c->out);
    if (rc == 0) rc = cg__ws_send(c->ws, 1, c->out.data, c->out.len);
    if (rc == 0)
      c->stats.acks++;
    else
      cg__log(c->app, CG_LOG_WARN, LOG, "app %s: could not send an ACK (%s): Lark will redeliver the message",
              c->k.id, cg_strerror(rc));
  } else {
    cg__log(c->app, CG_LOG_WARN, LOG,
            "app %s: the connection a message came on is gone; its ACK is dropped (Lark redelivers it, and the "
            "redelivery is answered from the first answer)",
            c->k.id);
  }
  pending_free(c, p);
  if (c->closing) maybe_finish_close(c);
}

/* Dispatches one whole message. f: its (last) frame, taken over; payload:
 * the message bytes — f's own payload, or the joined fragments — borrowed
 * for the call. */
static void handle_payload(cg_lark_ws *c, cg__lark_frame *f, const uint8_t *payload, size_t len) {
  pending *p = calloc(1, sizeof *p);
  if (!p) {
    cg__lark_frame_clear(f);
    return;
  }
  p->c = c;
  p->gen = c->gen;
  p->start_ms = uv_now(c->loop);
  p->frame = *f; /* takes ownership */
  memset(f, 0, sizeof *f);
  p->next = c->pendings;
  if (c->pendings) c->pendings->prev = p;
  c->pendings = p;
  c->npending++;
  c->stats.messages++;
  /* The ACK replaces the payload: take it out of the frame now and free it
   * once the app has decoded it (it keeps nothing that points into it). */
  uint8_t *own = p->frame.payload;
  p->frame.payload = NULL;
  p->frame.payload_len = 0;
  p->frame.has_payload = 0;
  if (cg__app_handle_lark_plain(c->app, (const char *)payload, len, ack_done, p) != 0) {
    cg__log(c->app, CG_LOG_ERROR, LOG, "app %s: out of memory handling a message; not ACKed", c->k.id);
    pending_free(c, p);
  }
  free(own);
}

static int header_u32(const cg__lark_frame *f, const char *key, uint32_t dflt, uint32_t *out) {
  const char *v = cg__lark_frame_header(f, key);
  if (!v) {
    *out = dflt;
    return 0;
  }
  int64_t n;
  if (cg_parse_i64(v, strlen(v), &n) != 0 || n < 0 || n > 0xffffffffLL) return CG_EMALFORMED;
  *out = (uint32_t)n;
  return 0;
}

static void on_data_frame(cg_lark_ws *c, cg__lark_frame *f) {
  const char *type = cg__lark_frame_header(f, "type");
  if (!type || (strcmp(type, "event") != 0 && strcmp(type, "card") != 0)) {
    cg__log(c->app, CG_LOG_INFO, LOG, "app %s: data frame of type %s ignored", c->k.id,
            type ? type : "(none)");
    cg__lark_frame_clear(f);
    return;
  }
  uint32_t sum, seq;
  const char *mid = cg__lark_frame_header(f, "message_id");
  if (header_u32(f, "sum", 1, &sum) != 0 || header_u32(f, "seq", 0, &seq) != 0) {
    c->stats.malformed++;
    cg__log(c->app, CG_LOG_WARN, LOG, "app %s: data frame with a bad sum/seq header dropped", c->k.id);
    cg__lark_frame_clear(f);
    return;
  }
  if (sum <= 1) {
    /* "card" frames are treated like "event" ones (lark.md §3.8: the SDKs
     * drop them unanswered; dispatching by the body's shape is safe). */
    handle_payload(c, f, f->payload ? f->payload : (const uint8_t *)"", f->payload_len);
    return;
  }
  uint8_t *whole = NULL;
  size_t whole_len = 0;
  int rc = cg__lark_frags_add(c->frags, mid ? mid : "", sum, seq, f->payload, f->payload_len,
                              uv_now(c->loop), &whole, &whole_len);
  if (rc < 0) {
    c->stats.malformed++;
    cg__log(c->app, CG_LOG_WARN, LOG, "app %s: fragment %u/%u of message %.64s dropped: %s", c->k.id,
            (unsigned)seq, (unsigned)sum, mid ? mid : "(no id)", cg_strerror(rc));
    cg__lark_frame_clear(f);
    return;
  }
  if (rc == 0) { /* earlier fragments get no reply (lark.md §3.7) */
    cg__lark_frame_clear(f);
    return;
  }
  handle_payload(c, f, whole, whole_len); /* the completing frame is ACKed */
  free(whole);
}

/* ---- the WebSocket --------------------------------------------------------- */

static void on_open(cg__ws *ws, void *ud) {
  cg_lark_ws *c = ud;
  (void)ws;
  c->attempts = 0;
  c->stats.connects++;
  cg__conn_set_state(&c->k, CG_CONN_CONNECTED, "connected (device %s, service %d)",
            c->device_id[0] ? c->device_id : "?", (int)c->service_id);
  send_ping(c); /* at once, then every PingInterval */
  start_ping_timer(c);
}

static void on_message(cg__ws *ws, int binary, const uint8_t *data, size_t len, void *ud) {
  cg_lark_ws *c = ud;
  (void)ws;
  uv_timer_stop(&c->watchdog_timer); /* anything at all proves liveness */
  if (!binary) return; /* only binary messages mean something (lark.md §3.2) */
  cg__lark_frame f;
  char err[160];
  int rc = cg__lark_frame_decode(data, len, &f, err, sizeof err);
  if (rc != 0) {
    c->stats.malformed++;
    cg__log(c->app, CG_LOG_WARN, LOG, "app %s: dropped a malformed frame (%zu bytes): %s", c->k.id, len,
            rc == CG_ENOMEM ? "out of memory" : err);
    return;
  }
  if (f.method == CG__LARK_METHOD_CONTROL) {
    const char *type = cg__lark_frame_header(&f, "type");
    if (type && strcmp(type, "pong") == 0 && f.has_payload && f.payload_len > 0) {
      int64_t old = ping_interval_ms(c);
      if (cg__lark_ws_config_apply(&c->cfg, (const char *)f.payload, f.payload_len) == 0) {
        if ((int64_t)ping_interval_ms(c) != old) start_ping_timer(c);
      } else {
        cg__log(c->app, CG_LOG_INFO, LOG, "app %s: pong with a payload that is not a ClientConfig", c->k.id);
      }
    }
    cg__lark_frame_clear(&f);
    return;
  }
  if (f.method != CG__LARK_METHOD_DATA) {
    c->stats.malformed++;
    cg__log(c->app, CG_LOG_WARN, LOG, "app %s: frame with unknown method %d dropped", c->k.id, (int)f.method);
    cg__lark_frame_clear(&f);
    return;
  }
  on_data_frame(c, &f);
}

static void on_pong(cg__ws *ws, const uint8_t *data, size_t len, void *ud) {
  (void)ws, (void)data, (void)len;
  cg_lark_ws *c = ud;
  uv_timer_stop(&c->watchdog_timer);
}

static void on_close(cg__ws *ws, int rc, const cg__ws_close_info *info, void *ud) {
  cg_lark_ws *c = ud;
  (void)ws;
  c->ws = NULL;
  uv_timer_stop(&c->ping_timer);
  uv_timer_stop(&c->watchdog_timer);
  if (c->closing) {
    maybe_finish_close(c);
    return;
  }
  if (rc == CG_EAUTH && info->http_status) {
    if (cg__lark_ws_refusal_is_final(info->http_status, info->handshake_status,
                                     info->handshake_autherrcode)) {
      cg__conn_set_state(&c->k, CG_CONN_FAILED,
                "the gateway refused the connection for good: HTTP %d, Handshake-Status %s, "
                "Handshake-Autherrcode %s (%s). %s",
                info->http_status, info->handshake_status[0] ? info->handshake_status : "-",
                info->handshake_autherrcode[0] ? info->handshake_autherrcode : "-",
                info->handshake_msg[0] ? info->handshake_msg : "no message",
                strcmp(info->handshake_autherrcode, "1000040350") == 0
                    ? "Too many connections for this app (Lark allows 50): stop other instances."
                    : "Check the app's credentials and that it may use the long connection.");
      return;
    }
    char why[256];
    cg_fmt(why, sizeof why, "upgrade refused: HTTP %d (Handshake-Status %s, %s)", info->http_status,
           info->handshake_status[0] ? info->handshake_status : "-",
           info->handshake_msg[0] ? info->handshake_msg : "no message");
    schedule_retry(c, why);
    return;
  }
  char why[256];
  cg_fmt(why, sizeof why, "connection lost: %s%s%s", cg_strerror(rc), info->reason[0] ? ": " : "", info->reason);
  schedule_retry(c, why);
}

static void dial(cg_lark_ws *c, const char *url) {
  cg__ws_client_options wo;
  memset(&wo, 0, sizeof wo);
  wo.url = url;
  wo.ca_file = c->k.ca_file;
  /* Read up to twice the codec's limit, so a frame over it reaches the
   * decoder, which refuses it: logged and dropped, the connection kept. */
  wo.max_message = 2u * CG__LARK_FRAME_MAX;
  cg__ws_callbacks cbs = {on_open, on_message, on_pong, on_close};
  c->gen++;
  int rc = cg__ws_connect(c->loop, &wo, &cbs, c, &c->ws);
  if (rc != 0) {
    c->ws = NULL;
    char why[160];
    cg_fmt(why, sizeof why, "cannot dial the gateway: %s", cg_strerror(rc));
    schedule_retry(c, why);
  }
}

/* ---- bootstrap and reconnect -------------------------------------------------- */

static void schedule_retry(cg_lark_ws *c, const char *why) {
  if (c->closing) return;
  c->attempts++;
  if (c->cfg.reconnect_count >= 0 && c->attempts > c->cfg.reconnect_count) {
    cg__conn_set_state(&c->k, CG_CONN_FAILED, "%s; gave up after %d attempts (ReconnectCount %lld)", why, c->attempts,
              (long long)c->cfg.reconnect_count);
    return;
  }
  uint64_t wait;
  if (c->attempts == 1) {
    /* The first attempt waits a random part of ReconnectNonce, so a fleet
     * of clients does not reconnect at once. */
    uint64_t nonce = c->o.reconnect_nonce_ms ? c->o.reconnect_nonce_ms : (uint64_t)c->cfg.reconnect_nonce * 1000u;
    uint32_t r = 0;
    if (RAND_bytes((unsigned char *)&r, sizeof r) != 1) r = (uint32_t)uv_hrtime();
    wait = nonce ? r % nonce : 0;
  } else {
    wait = c->o.reconnect_interval_ms ? c->o.reconnect_interval_ms
                                      : (uint64_t)c->cfg.reconnect_interval * 1000u;
  }
  cg__conn_set_state(&c->k, CG_CONN_WAITING, "%s; attempt %d in %llu ms", why, c->attempts, (unsigned long long)wait);
  uv_timer_start(&c->retry_timer, retry_cb, wait, 0);
}

static void bootstrap_done(int rc, const cg__https_resp *resp, void *ud) {
  cg_lark_ws *c = ud;
  c->bootstrapping = 0;
  if (c->closing) {
    maybe_finish_close(c);
    return;
  }
  char why[320];
  if (rc != 0) {
    cg_fmt(why, sizeof why, "bootstrap request failed: %s%s%s", cg_strerror(rc), resp->detail[0] ? ": " : "",
           resp->detail);
    schedule_retry(c, why);
    return;
  }
  if (resp->status != 200) {
    cg_fmt(why, sizeof why, "bootstrap answered HTTP %d (the SDKs retry: system busy)", resp->status);
    schedule_retry(c, why);
    return;
  }
  cg__lark_ws_endpoint ep;
  char err[160];
  if (cg__lark_ws_endpoint_parse(resp->body, resp->body_len, &ep, err, sizeof err) != 0) {
    cg_fmt(why, sizeof why, "bootstrap answer unusable: %s", err);
    schedule_retry(c, why);
    return;
  }
  if (ep.code != 0) {
    if (cg__lark_ws_code_is_final(ep.code)) {
      cg__conn_set_state(&c->k, CG_CONN_FAILED,
                "the endpoint refused app %s: code %lld (%s). Check the app id and secret, and that the app is "
                "a self-built app with the long connection enabled",
                c->k.id, (long long)ep.code, ep.msg);
    } else {
      cg_fmt(why, sizeof why, "the endpoint is busy: code %lld (%s)", (long long)ep.code, ep.msg);
      schedule_retry(c, why);
    }
    cg__lark_ws_endpoint_clear(&ep);
    return;
  }
  /* The server's latest ClientConfig (the options' overrides are applied
   * where the values are used). */
  c->cfg = ep.config;
  c->service_id = ep.service_id;
  cg_strlcpy(c->device_id, ep.device_id ? ep.device_id : "", sizeof c->device_id);
  char shown[512];
  cg__lark_ws_url_redact(ep.url, shown, sizeof shown);
  cg__log(c->app, CG_LOG_INFO, LOG, "app %s: dialling %s", c->k.id, shown);
  dial(c, ep.url);
  cg__lark_ws_endpoint_clear(&ep);
}

static void bootstrap(cg_lark_ws *c) {
  if (c->closing || c->bootstrapping) return;
  if (c->k.state != CG_CONN_CONNECTING) cg__conn_set_state(&c->k, CG_CONN_CONNECTING, "asking %s for an endpoint", c->k.base_url);
  cg_buf body;
  cg_buf_init(&body, 64 * 1024);
  char url[600];
  cg_fmt(url, sizeof url, "%s/callback/ws/endpoint", c->k.base_url);
  static const char *const headers[] = {"Content-Type: application/json", "locale: zh",
                                        "User-Agent: cardgate/" CG_VERSION_STRING, NULL};
  int rc = cg__lark_ws_endpoint_request(c->k.id, c->k.secret, &body);
  if (rc == 0) {
    cg__https_req req = {.method = "POST", .url = url, .headers = headers, .body = body.data,
                         .body_len = body.len, .timeout_ms = BOOTSTRAP_TIMEOUT_MS};
    rc = cg__https_request(c->https, &req, bootstrap_done, c);
  }
  if (body.data) cg_cleanse(body.data, body.len); /* it holds the secret */
  cg_buf_free(&body);
  if (rc != 0) {
    char why[128];
    cg_fmt(why, sizeof why, "cannot send the bootstrap request: %s", cg_strerror(rc));
    schedule_retry(c, why);
    return;
  }
  c->bootstrapping = 1;
}

/* ---- life cycle -------------------------------------------------------------- */

cg_lark_ws *cg_lark_ws_new(cg_app *app, const cg_lark_ws_options *o, int *err) {
  int rc = CG_EINVAL;
  cg_lark_ws_options dflt;
  if (!o) {
    cg_lark_ws_options_init(&dflt);
    o = &dflt;
  }
  cg_lark_ws *c = NULL;
  if (!app) goto fail;
  rc = CG_ENOMEM;
  c = calloc(1, sizeof *c);
  if (!c) goto fail;
  c->app = app;
  c->loop = cg__app_loop(app);
  c->o = *o;
  rc = cg__conn_common_init(&c->k, app, LOG, "app", o->app_id, cg__app_lark_app_id(app), o->app_secret,
                            cg__app_lark_app_secret(app), o->base_url, DEFAULT_BASE, o->ca_file,
                            "the Lark long connection needs the app id and app secret (--app-id/--app-secret)");
  if (rc) {
    free(c);
    c = NULL;
    goto fail;
  }
  c->k.on_state = o->on_state;
  c->k.on_state_ud = o->on_state_ud;
  rc = CG_ENOMEM;
  cg__lark_ws_config_defaults(&c->cfg);
  c->frags = cg__lark_frags_new(o->max_pending_bytes ? o->max_pending_bytes : DEFAULT_PENDING_BYTES,
                                o->fragment_ttl_ms ? o->fragment_ttl_ms : DEFAULT_FRAGMENT_TTL_MS);
  if (!c->frags) goto fail;
  c->https = cg__https_new(c->loop, &rc);
  if (!c->https) goto fail;
  cg_buf_init(&c->out, CG__LARK_FRAME_MAX + 1024);
  uv_timer_t *timers[] = {&c->ping_timer, &c->watchdog_timer, &c->retry_timer, &c->close_timer};
  for (size_t i = 0; i < CG_ARRAY_SIZE(timers); i++) {
    uv_timer_init(c->loop, timers[i]);
    timers[i]->data = c;
    c->timers_open++;
  }
  cg__conn_common_register(&c->k, "lark_ws", reg_state, c);
  if (err) *err = 0;
  return c;
fail:
  if (c) {
    cg__lark_frags_free(c->frags);
    cg__conn_common_clear(&c->k);
    free(c);
  }
  if (err) *err = rc;
  return NULL;
}

int cg_lark_ws_start(cg_lark_ws *c) {
  if (!c) return CG_EINVAL;
  if (c->k.state != CG_CONN_IDLE || c->closing) return CG_EALREADY;
  cg__conn_set_state(&c->k, CG_CONN_CONNECTING, "asking %s for an endpoint", c->k.base_url);
  bootstrap(c);
  return 0;
}

cg_conn_state cg_lark_ws_state(const cg_lark_ws *c, const char **detail) {
  if (detail) *detail = c ? c->k.detail : "";
  return c ? c->k.state : CG_CONN_CLOSED;
}

void cg_lark_ws_stats(const cg_lark_ws *c, cg_conn_stats *out) {
  if (c && out) *out = c->stats;
}

static void timer_closed(uv_handle_t *h) {
  cg_lark_ws *c = h->data;
  if (--c->timers_open > 0) return;
  void (*cb)(void *) = c->close_cb;
  void *ud = c->close_ud;
  cg__lark_frags_free(c->frags);
  cg_buf_free(&c->out);
  cg__conn_common_clear(&c->k);
  free(c);
  if (cb) cb(ud);
}

static void https_closed(void *ud) {
  cg_lark_ws *c = ud;
  c->https = NULL;
  maybe_finish_close(c);
}

static void close_wait_cb(uv_timer_t *t) {
  cg_lark_ws *c = t->data;
  /* ACKs still due after the wait are dropped; Lark redelivers those. */
  if (c->ws) cg__ws_close(c->ws, 1000, "client stopping");
}

/* Frees the client once every pending ACK is settled (each ends by the
 * app's deadline at the latest), the socket is closed and the HTTP client
 * is gone. */
static void maybe_finish_close(cg_lark_ws *c) {
  if (!c->closing) return;
  if (c->ws) {
    if (c->k.state != CG_CONN_CONNECTED)
      cg__ws_abort(c->ws); /* still dialling: nothing to say goodbye to */
    else if (c->npending == 0)
      cg__ws_close(c->ws, 1000, "client stopping");
    return; /* on_close, or the last ack_done, comes back here */
  }
  if (c->npending > 0) return; /* their answers are dropped as they come */
  if (c->https) {
    if (c->closing == 1) {
      c->closing = 2;
      cg__https_close(c->https, https_closed, c);
    }
    return;
  }
  if (c->closing == 3) return;
  c->closing = 3;
  if (c->k.state != CG_CONN_CLOSED) {
    c->k.state = CG_CONN_CLOSED;
    cg_strlcpy(c->k.detail, "closed", sizeof c->k.detail);
    if (c->k.on_state) c->k.on_state(CG_CONN_CLOSED, c->k.detail, c->k.on_state_ud);
  }
  uv_timer_t *timers[] = {&c->ping_timer, &c->watchdog_timer, &c->retry_timer, &c->close_timer};
  for (size_t i = 0; i < CG_ARRAY_SIZE(timers); i++) uv_close((uv_handle_t *)timers[i], timer_closed);
}

void cg_lark_ws_close(cg_lark_ws *c, void (*cb)(void *ud), void *ud) {
  if (!c || c->closing) return;
  c->closing = 1;
  c->close_cb = cb;
  c->close_ud = ud;
  cg__conn_common_unregister(&c->k);
  uv_timer_stop(&c->retry_timer);
  uv_timer_stop(&c->ping_timer);
  uv_timer_stop(&c->watchdog_timer);
  if (c->npending > 0 && c->ws) uv_timer_start(&c->close_timer, close_wait_cb, CLOSE_WAIT_MS, 0);
  maybe_finish_close(c);
}
