/* The DingTalk Stream-mode client (dingtalk.md §1–§3, corrections §9).
 *
 * Open a connection (POST /v1.0/gateway/connections/open → endpoint and a
 * one-use ticket), dial the WebSocket (the shared ws.c layer), read JSON
 * text frames (dingtalk_stream.c codec):
 *  - SYSTEM ping: echoed at once, never behind a handler;
 *  - SYSTEM disconnect: a new connection is opened at once with a fresh
 *    ticket (make before break) while the old one drains until the server
 *    closes it;
 *  - CALLBACK card / chatbot frames: normalized into a cg_action and run
 *    through the app (routes, workflows, deadline, duplicate suppression by
 *    messageId that replays the first answer, outbox); the ACK goes back on
 *    the socket the frame came on;
 *  - EVENT frames: ACKed SUCCESS and logged.
 * Liveness: a WebSocket ping after idle_ping_ms without any inbound frame;
 * no answer within pong_timeout_ms drops the connection. Reconnects back off
 * exponentially with jitter, one loop at a time. Notes:
 * docs/long-connection.md. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "../../common/common.h"
#include "../codec/dingtalk_stream.h"
#include "../core/app_int.h"
#include "../net/https_client.h"
#include "../net/ws.h"
#include "cardgate/stream.h"
#include "cardgate/version.h"
#include "conn_int.h"

#define LOG "dingtalk"
#define DEFAULT_BASE "https://api.dingtalk.com"
#define OPEN_TIMEOUT_MS 10000u
#define DEFAULT_IDLE_PING_MS 30000u
#define DEFAULT_PONG_TIMEOUT_MS 5000u
#define DEFAULT_BACKOFF_MIN_MS 1000u
#define DEFAULT_BACKOFF_MAX_MS 60000u
#define DRAIN_MAX_MS 15000u   /* the server closes a drained socket after ~10 s */
#define CLOSE_WAIT_MS 3000u
#define MAX_TOPICS 32
/* The WebSocket layer reads messages up to this size, so a frame over the
 * codec's CG__DT_FRAME_MAX reaches cg__dt_frame_decode, which refuses it
 * (CG_ETOOBIG): logged and dropped, the connection kept. Only a message over
 * this bound (memory) still closes the connection with 1009. */
#define READ_MAX (4u * CG__DT_FRAME_MAX)

typedef struct dt_conn dt_conn;
typedef struct pending pending;

struct cg_dingtalk_stream {
  cg_app *app;
  uv_loop_t *loop;
  cg__conn_common k; /* id = client id, secret, state, /healthz */
  char *topics[MAX_TOPICS + 1]; /* NULL-terminated, owned */
  cg_dingtalk_stream_options o;
  cg__https *https;
  dt_conn *active;   /* the connection receiving new pushes, or NULL */
  dt_conn *conns;    /* every live connection (active and draining) */
  int attempts;
  int opening;       /* an open-connection request or a dial in flight */
  int closing;
  void (*close_cb)(void *ud);
  void *close_ud;
  uv_timer_t retry_timer, close_timer;
  int timers_open;
  size_t npending;
  cg_conn_stats stats;
  cg_buf out;
};

/* One WebSocket. Freed when its socket has closed and no pending ACK
 * refers to it. */
struct dt_conn {
  cg_dingtalk_stream *c;
  cg__ws *ws;         /* NULL once closed */
  int open;           /* upgraded */
  int draining;       /* got SYSTEM disconnect */
  int got_frame;      /* delivered a frame (resets the backoff) */
  int refs;           /* pending ACKs */
  uv_timer_t idle_timer, pong_timer, drain_timer;
  int timers_open;
  int freeing;
  dt_conn *prev, *next;
};

struct pending {
  dt_conn *conn;
  char *message_id;
  char *topic;
};

static void schedule_retry(cg_dingtalk_stream *c, const char *why);
static void open_connection(cg_dingtalk_stream *c);
static void maybe_finish_close(cg_dingtalk_stream *c);
static void conn_release(dt_conn *k);

void cg_dingtalk_stream_options_init(cg_dingtalk_stream_options *o) { memset(o, 0, sizeof *o); }

static cg_conn_state reg_state(const void *self, const char **detail) {
  return cg_dingtalk_stream_state(self, detail);
}

static uint32_t opt(uint32_t v, uint32_t dflt) { return v ? v : dflt; }

static int send_text(dt_conn *k, const cg_buf *b) {
  if (!k->ws || !k->open) return CG_EALREADY;
  return cg__ws_send(k->ws, 0, b->data, b->len);
}

/* ---- liveness ------------------------------------------------------------ */

static void pong_timeout_cb(uv_timer_t *t) {
  dt_conn *k = t->data;
  cg_dingtalk_stream *c = k->c;
  if (!k->ws) return;
  c->stats.watchdog_trips++;
  cg__log(c->app, CG_LOG_WARN, LOG,
          "client %s: no answer to a WebSocket ping within %u ms: the connection is dead; reconnecting",
          c->k.id, (unsigned)opt(c->o.pong_timeout_ms, DEFAULT_PONG_TIMEOUT_MS));
  cg__ws_abort(k->ws);
}

static void idle_cb(uv_timer_t *t) {
  dt_conn *k = t->data;
  cg_dingtalk_stream *c = k->c;
  if (!k->ws || !k->open) return;
  if (cg__ws_ping(k->ws, "cardgate", 8) == 0) c->stats.pings_sent++;
  uv_timer_start(&k->pong_timer, pong_timeout_cb, opt(c->o.pong_timeout_ms, DEFAULT_PONG_TIMEOUT_MS), 0);
}

/* Anything inbound proves the connection alive. */
static void alive(dt_conn *k) {
  uv_timer_stop(&k->pong_timer);
  uv_timer_start(&k->idle_timer, idle_cb, opt(k->c->o.idle_ping_ms, DEFAULT_IDLE_PING_MS), 0);
}

/* ---- ACKs ------------------------------------------------------------------ */

static void ack_done(int status, const char *body, size_t len, void *ud) {
  pending *p = ud;
  dt_conn *k = p->conn;
  cg_dingtalk_stream *c = k->c;
  c->npending--;
  cg_buf_reset(&c->out);
  /* A frame for which the app has nothing to answer still gets its ACK. */
  static const char none[] = "{\"response\":null}";
  if (!body) {
    body = none;
    len = sizeof none - 1;
  }
  cg__dt_frame f;
  memset(&f, 0, sizeof f);
  f.type = CG__DT_CALLBACK;
  f.message_id = p->message_id;
  f.topic = p->topic;
  int rc = cg__dt_ack(&f, status, status == 200 ? "OK" : "error", body, len, &c->out);
  if (rc == 0) rc = send_text(k, &c->out);
  if (rc == 0)
    c->stats.acks++;
  else
    cg__log(c->app, CG_LOG_WARN, LOG,
            "client %s: ACK for message %s not sent (%s): DingTalk redelivers it and the redelivery is answered "
            "from the first answer",
            c->k.id, p->message_id, cg_strerror(rc));
  free(p->message_id);
  free(p->topic);
  free(p);
  conn_release(k);
  if (c->closing) maybe_finish_close(c);
}

static void on_callback(dt_conn *k, const cg__dt_frame *f) {
  cg_dingtalk_stream *c = k->c;
  int is_card = strcmp(f->topic, CG__DT_TOPIC_CARD) == 0;
  int is_bot = strcmp(f->topic, CG__DT_TOPIC_BOT) == 0;
  if (!is_card && !is_bot) {
    /* A topic subscribed through options.topics with no normalization:
     * answered 404 (like the Go SDK) so it is visible, never silently. */
    cg__log(c->app, CG_LOG_WARN, LOG, "client %s: callback on topic %.128s has no handler in cardgate: ACK 404",
            c->k.id, f->topic);
    cg_buf_reset(&c->out);
    if (cg__dt_ack(f, 404, "no handler for this topic", "", 0, &c->out) == 0 && send_text(k, &c->out) == 0)
      c->stats.acks++;
    return;
  }
  cg__action_rec *a = NULL;
  char err[200];
  int rc = cg__dt_decode_action(f, cg_now_ms(), &a, err, sizeof err);
  if (rc != 0) {
    c->stats.malformed++;
    cg__log(c->app, CG_LOG_WARN, LOG, "client %s: %s callback %s dropped: %s", c->k.id,
            is_card ? "card" : "chatbot", f->message_id, rc == CG_ENOMEM ? "out of memory" : err);
    /* ACKed with an error so the platform does not redeliver garbage. */
    cg_buf_reset(&c->out);
    if (cg__dt_ack(f, 400, err, "", 0, &c->out) == 0 && send_text(k, &c->out) == 0) c->stats.acks++;
    return;
  }
  pending *p = calloc(1, sizeof *p);
  if (p) {
    p->message_id = cg_strdup(f->message_id);
    p->topic = cg_strdup(f->topic);
  }
  if (!p || !p->message_id || !p->topic) {
    if (p) {
      free(p->message_id);
      free(p->topic);
      free(p);
    }
    cg__action_free(a);
    cg__log(c->app, CG_LOG_ERROR, LOG, "client %s: out of memory: message %s not handled (it will be redelivered)",
            c->k.id, f->message_id);
    return;
  }
  p->conn = k;
  k->refs++;
  c->npending++;
  c->stats.messages++;
  if (cg__app_dispatch(c->app, a, ack_done, p) != 0) {
    c->npending--;
    free(p->message_id);
    free(p->topic);
    free(p);
    conn_release(k);
    cg__log(c->app, CG_LOG_ERROR, LOG, "client %s: out of memory: message not handled", c->k.id);
  }
}

/* ---- the socket ------------------------------------------------------------ */

static void drain_timeout_cb(uv_timer_t *t) {
  dt_conn *k = t->data;
  if (k->ws) cg__ws_close(k->ws, 1000, "drained");
}

static void on_system(dt_conn *k, const cg__dt_frame *f) {
  cg_dingtalk_stream *c = k->c;
  if (strcmp(f->topic, "ping") == 0) {
    cg_buf_reset(&c->out);
    if (cg__dt_ack_ping(f, &c->out) == 0 && send_text(k, &c->out) == 0) c->stats.acks++;
    return;
  }
  if (strcmp(f->topic, "disconnect") == 0) {
    if (k->draining) return; /* a repeat for a draining socket: nothing new */
    k->draining = 1;
    cg__log(c->app, CG_LOG_INFO, LOG,
            "client %s: the server is draining this connection (%.200s): opening a new one now",
            c->k.id, f->data);
    uv_timer_start(&k->drain_timer, drain_timeout_cb, DRAIN_MAX_MS, 0);
    if (c->active == k) c->active = NULL;
    if (!c->closing) open_connection(c);
    return;
  }
  cg__log(c->app, CG_LOG_DEBUG, LOG, "client %s: SYSTEM %.64s ignored", c->k.id, f->topic);
}

static void on_open(cg__ws *ws, void *ud) {
  dt_conn *k = ud;
  cg_dingtalk_stream *c = k->c;
  (void)ws;
  k->open = 1;
  c->opening = 0;
  c->active = k;
  c->stats.connects++;
  alive(k);
  cg__conn_set_state(&c->k, CG_CONN_CONNECTED, "connected");
}

static void on_message(cg__ws *ws, int binary, const uint8_t *data, size_t len, void *ud) {
  dt_conn *k = ud;
  cg_dingtalk_stream *c = k->c;
  (void)ws;
  alive(k);
  if (!k->got_frame) {
    k->got_frame = 1;
    c->attempts = 0; /* the backoff restarts once a connection works */
  }
  if (binary) {
    cg__log(c->app, CG_LOG_DEBUG, LOG, "client %s: binary message ignored", c->k.id);
    return;
  }
  cg__dt_frame f;
  char err[200];
  int rc = cg__dt_frame_decode((const char *)data, len, &f, err, sizeof err);
  if (rc != 0) {
    c->stats.malformed++;
    cg__log(c->app, CG_LOG_WARN, LOG, "client %s: dropped a malformed frame (%zu bytes): %s", c->k.id, len,
            rc == CG_ENOMEM ? "out of memory" : err);
    return;
  }
  switch (f.type) {
    case CG__DT_SYSTEM:
      on_system(k, &f);
      break;
    case CG__DT_EVENT: {
      cg__log(c->app, CG_LOG_INFO, LOG, "client %s: event %s acknowledged (no event handler in cardgate)",
              c->k.id, f.message_id);
      cg_buf data_buf;
      cg_buf_init(&data_buf, 4096);
      cg_buf_reset(&c->out);
      if (cg__dt_event_ack_data(1, "OK", &data_buf) == 0 &&
          cg__dt_ack(&f, 200, "OK", data_buf.data, data_buf.len, &c->out) == 0 && send_text(k, &c->out) == 0)
        c->stats.acks++;
      cg_buf_free(&data_buf);
      break;
    }
    case CG__DT_CALLBACK:
      on_callback(k, &f);
      break;
  }
  cg__dt_frame_clear(&f);
}

static void on_pong(cg__ws *ws, const uint8_t *data, size_t len, void *ud) {
  (void)ws, (void)data, (void)len;
  alive(ud);
}

static void conn_timer_closed(uv_handle_t *h) {
  dt_conn *k = h->data;
  if (--k->timers_open > 0) return;
  cg_dingtalk_stream *c = k->c;
  if (k->prev) k->prev->next = k->next;
  else c->conns = k->next;
  if (k->next) k->next->prev = k->prev;
  free(k);
  if (c->closing) maybe_finish_close(c);
}

/* Frees k once its socket is closed and no ACK refers to it. */
static void conn_release(dt_conn *k) {
  if (k->refs > 0) k->refs--;
  if (k->ws || k->refs > 0 || k->freeing) return;
  k->freeing = 1;
  uv_close((uv_handle_t *)&k->idle_timer, conn_timer_closed);
  uv_close((uv_handle_t *)&k->pong_timer, conn_timer_closed);
  uv_close((uv_handle_t *)&k->drain_timer, conn_timer_closed);
}

static void on_close(cg__ws *ws, int rc, const cg__ws_close_info *info, void *ud) {
  dt_conn *k = ud;
  cg_dingtalk_stream *c = k->c;
  (void)ws;
  k->ws = NULL;
  int was_open = k->open, was_active = c->active == k, draining = k->draining;
  k->open = 0;
  uv_timer_stop(&k->idle_timer);
  uv_timer_stop(&k->pong_timer);
  uv_timer_stop(&k->drain_timer);
  if (c->active == k) c->active = NULL;
  if (!was_open) c->opening = 0;
  k->refs++; /* conn_release drops this */
  conn_release(k);
  if (c->closing) {
    maybe_finish_close(c);
    return;
  }
  if (draining && !was_active) {
    cg__log(c->app, CG_LOG_INFO, LOG, "client %s: the drained connection closed", c->k.id);
    return;
  }
  char why[320];
  if (rc == CG_EAUTH && info->http_status)
    cg_fmt(why, sizeof why, "the gateway refused the upgrade: HTTP %d %.160s (the ticket may have expired)",
           info->http_status, info->body);
  else
    cg_fmt(why, sizeof why, "connection %s: %s%s%s", was_open ? "lost" : "failed", cg_strerror(rc),
           info->reason[0] ? ": " : "", info->reason);
  if (!c->active && !c->opening) schedule_retry(c, why);
}

static void dial(cg_dingtalk_stream *c, const char *url) {
  dt_conn *k = calloc(1, sizeof *k);
  if (!k) {
    c->opening = 0;
    schedule_retry(c, "out of memory");
    return;
  }
  k->c = c;
  uv_timer_t *timers[] = {&k->idle_timer, &k->pong_timer, &k->drain_timer};
  for (size_t i = 0; i < CG_ARRAY_SIZE(timers); i++) {
    uv_timer_init(c->loop, timers[i]);
    timers[i]->data = k;
    k->timers_open++;
  }
  k->next = c->conns;
  if (c->conns) c->conns->prev = k;
  c->conns = k;
  cg__ws_client_options wo;
  memset(&wo, 0, sizeof wo);
  wo.url = url;
  wo.ca_file = c->k.ca_file;
  wo.max_message = READ_MAX;
  cg__ws_callbacks cbs = {on_open, on_message, on_pong, on_close};
  int rc = cg__ws_connect(c->loop, &wo, &cbs, k, &k->ws);
  if (rc != 0) {
    k->ws = NULL;
    k->refs++;
    conn_release(k);
    c->opening = 0;
    char why[160];
    cg_fmt(why, sizeof why, "cannot dial the stream gateway: %s", cg_strerror(rc));
    schedule_retry(c, why);
  }
}

/* ---- opening and reconnecting ------------------------------------------- */

static void retry_cb(uv_timer_t *t) {
  cg_dingtalk_stream *c = t->data;
  if (!c->closing) open_connection(c);
}

static void schedule_retry(cg_dingtalk_stream *c, const char *why) {
  if (c->closing || c->k.state == CG_CONN_FAILED) return;
  if (uv_is_active((uv_handle_t *)&c->retry_timer)) return; /* one loop at a time */
  uint64_t lo = opt(c->o.backoff_min_ms, DEFAULT_BACKOFF_MIN_MS);
  uint64_t hi = opt(c->o.backoff_max_ms, DEFAULT_BACKOFF_MAX_MS);
  uint64_t wait = lo;
  for (int i = 0; i < c->attempts && wait < hi; i++) wait *= 2;
  if (wait > hi) wait = hi;
  uint32_t r = 0;
  if (RAND_bytes((unsigned char *)&r, sizeof r) != 1) r = (uint32_t)uv_hrtime();
  wait += wait / 5 ? r % (wait / 5) : 0; /* jitter up to +20 % */
  c->attempts++;
  cg__conn_set_state(&c->k, CG_CONN_WAITING, "%s; attempt %d in %llu ms", why, c->attempts, (unsigned long long)wait);
  uv_timer_start(&c->retry_timer, retry_cb, wait, 0);
}

static void open_done(int rc, const cg__https_resp *resp, void *ud) {
  cg_dingtalk_stream *c = ud;
  if (c->closing) {
    c->opening = 0;
    maybe_finish_close(c);
    return;
  }
  char why[400];
  if (rc != 0) {
    c->opening = 0;
    cg_fmt(why, sizeof why, "open-connection request failed: %s%s%s", cg_strerror(rc),
           resp->detail[0] ? ": " : "", resp->detail);
    schedule_retry(c, why);
    return;
  }
  if (resp->status != 200) {
    c->opening = 0;
    /* Wrong credentials never get better by retrying. */
    int final = resp->status == 401 || resp->status == 403 || strstr(resp->body, "invalidClientIdOrSecret") ||
                strstr(resp->body, "InvalidAuthentication");
    if (final) {
      cg__conn_set_state(&c->k, CG_CONN_FAILED,
                "DingTalk refused client %s: HTTP %d %.200s. Check the Client ID and Client Secret "
                "(AppKey/AppSecret) and that Stream mode is enabled for the app",
                c->k.id, resp->status, resp->body);
      return;
    }
    cg_fmt(why, sizeof why, "open-connection answered HTTP %d %.200s", resp->status, resp->body);
    schedule_retry(c, why);
    return;
  }
  char *endpoint = NULL, *ticket = NULL, err[200];
  if (cg__dt_open_response(resp->body, resp->body_len, &endpoint, &ticket, err, sizeof err) != 0) {
    c->opening = 0;
    cg_fmt(why, sizeof why, "open-connection answer unusable: %s", err);
    schedule_retry(c, why);
    return;
  }
  char *url = cg__dt_connect_url(endpoint, ticket);
  cg__log(c->app, CG_LOG_INFO, LOG, "client %s: dialling %.300s (ticket not shown)", c->k.id, endpoint);
  if (ticket) cg_cleanse(ticket, strlen(ticket));
  free(endpoint);
  free(ticket);
  if (!url) {
    c->opening = 0;
    schedule_retry(c, "out of memory");
    return;
  }
  dial(c, url); /* opening stays set until the upgrade ends */
  cg_cleanse(url, strlen(url));
  free(url);
}

static void open_connection(cg_dingtalk_stream *c) {
  if (c->closing || c->opening) return;
  if (c->k.state != CG_CONN_CONNECTED) cg__conn_set_state(&c->k, CG_CONN_CONNECTING, "opening a connection at %s", c->k.base_url);
  cg_buf body;
  cg_buf_init(&body, 64 * 1024);
  char url[600];
  cg_fmt(url, sizeof url, "%s/v1.0/gateway/connections/open", c->k.base_url);
  static const char *const headers[] = {"Content-Type: application/json", "Accept: application/json", NULL};
  int rc = cg__dt_open_request(c->k.id, c->k.secret, "cardgate/" CG_VERSION_STRING,
                               (const char *const *)c->topics, c->o.events, &body);
  if (rc == 0) {
    cg__https_req req = {.method = "POST", .url = url, .headers = headers, .body = body.data,
                         .body_len = body.len, .timeout_ms = OPEN_TIMEOUT_MS};
    rc = cg__https_request(c->https, &req, open_done, c);
  }
  if (body.data) cg_cleanse(body.data, body.len);
  cg_buf_free(&body);
  if (rc != 0) {
    char why[128];
    cg_fmt(why, sizeof why, "cannot send the open-connection request: %s", cg_strerror(rc));
    schedule_retry(c, why);
    return;
  }
  c->opening = 1;
}

/* ---- life cycle -------------------------------------------------------------- */

static void free_fields(cg_dingtalk_stream *c) {
  cg__conn_common_clear(&c->k);
  for (size_t i = 0; c->topics[i]; i++) free(c->topics[i]);
  cg_buf_free(&c->out);
}

cg_dingtalk_stream *cg_dingtalk_stream_new(cg_app *app, const cg_dingtalk_stream_options *o, int *err) {
  int rc = CG_EINVAL;
  cg_dingtalk_stream_options dflt;
  if (!o) {
    cg_dingtalk_stream_options_init(&dflt);
    o = &dflt;
  }
  cg_dingtalk_stream *c = NULL;
  if (!app) goto fail;
  rc = CG_ENOMEM;
  c = calloc(1, sizeof *c);
  if (!c) goto fail;
  c->app = app;
  c->loop = cg__app_loop(app);
  c->o = *o;
  c->o.topics = NULL;
  rc = cg__conn_common_init(&c->k, app, LOG, "client", o->client_id, cg__app_dingtalk_client_id(app),
                            o->client_secret, cg__app_dingtalk_client_secret(app), o->base_url, DEFAULT_BASE,
                            o->ca_file,
                            "DingTalk Stream mode needs the Client ID and Client Secret "
                            "(--dingtalk-client-id/-secret)");
  if (rc) {
    free(c);
    c = NULL;
    goto fail;
  }
  c->k.on_state = o->on_state;
  c->k.on_state_ud = o->on_state_ud;
  rc = CG_ENOMEM;
  size_t nt = 0;
  const char *always[] = {CG__DT_TOPIC_CARD, CG__DT_TOPIC_BOT};
  for (size_t i = 0; i < 2; i++)
    if (!(c->topics[nt++] = cg_strdup(always[i]))) goto fail;
  for (size_t i = 0; o->topics && o->topics[i]; i++) {
    if (nt >= MAX_TOPICS) {
      rc = CG_EINVAL;
      cg_fmt(cg__app_error_buf(app), CG__APP_ERROR_CAP, "at most %d DingTalk topics", MAX_TOPICS - 2);
      goto fail;
    }
    if (!(c->topics[nt++] = cg_strdup(o->topics[i]))) goto fail;
  }
  c->https = cg__https_new(c->loop, &rc);
  if (!c->https) goto fail;
  cg_buf_init(&c->out, CG__DT_FRAME_MAX + 4096);
  uv_timer_init(c->loop, &c->retry_timer);
  uv_timer_init(c->loop, &c->close_timer);
  c->retry_timer.data = c->close_timer.data = c;
  c->timers_open = 2;
  cg__conn_common_register(&c->k, "dingtalk_stream", reg_state, c);
  if (err) *err = 0;
  return c;
fail:
  if (c) {
    free_fields(c);
    free(c);
  }
  if (err) *err = rc;
  return NULL;
}

int cg_dingtalk_stream_start(cg_dingtalk_stream *c) {
  if (!c) return CG_EINVAL;
  if (c->k.state != CG_CONN_IDLE || c->closing) return CG_EALREADY;
  open_connection(c);
  return 0;
}

cg_conn_state cg_dingtalk_stream_state(const cg_dingtalk_stream *c, const char **detail) {
  if (detail) *detail = c ? c->k.detail : "";
  return c ? c->k.state : CG_CONN_CLOSED;
}

void cg_dingtalk_stream_stats(const cg_dingtalk_stream *c, cg_conn_stats *out) {
  if (c && out) *out = c->stats;
}

static void timer_closed(uv_handle_t *h) {
  cg_dingtalk_stream *c = h->data;
  if (--c->timers_open > 0) return;
  void (*cb)(void *) = c->close_cb;
  void *ud = c->close_ud;
  free_fields(c);
  free(c);
  if (cb) cb(ud);
}

static void https_closed(void *ud) {
  cg_dingtalk_stream *c = ud;
  c->https = NULL;
  maybe_finish_close(c);
}

static void close_wait_cb(uv_timer_t *t) {
  cg_dingtalk_stream *c = t->data;
  for (dt_conn *k = c->conns; k; k = k->next)
    if (k->ws) cg__ws_close(k->ws, 1000, "client stopping");
}

static void maybe_finish_close(cg_dingtalk_stream *c) {
  if (!c->closing) return;
  int sockets = 0;
  for (dt_conn *k = c->conns; k; k = k->next) {
    if (!k->ws) continue;
    sockets = 1;
    if (!k->open)
      cg__ws_abort(k->ws);
    else if (c->npending == 0)
      cg__ws_close(k->ws, 1000, "client stopping");
  }
  if (sockets || c->npending > 0 || c->conns) return;
  if (c->https) {
    if (c->closing == 1) {
      c->closing = 2;
      cg__https_close(c->https, https_closed, c);
    }
    return;
  }
  if (c->closing == 3) return;
  c->closing = 3;
  c->k.state = CG_CONN_CLOSED;
  cg_strlcpy(c->k.detail, "closed", sizeof c->k.detail);
  if (c->k.on_state) c->k.on_state(CG_CONN_CLOSED, c->k.detail, c->k.on_state_ud);
  uv_close((uv_handle_t *)&c->retry_timer, timer_closed);
  uv_close((uv_handle_t *)&c->close_timer, timer_closed);
}

void cg_dingtalk_stream_close(cg_dingtalk_stream *c, void (*cb)(void *ud), void *ud) {
  if (!c || c->closing) return;
  c->closing = 1;
  c->close_cb = cb;
  c->close_ud = ud;
  cg__conn_common_unregister(&c->k);
  uv_timer_stop(&c->retry_timer);
  if (c->npending > 0) uv_timer_start(&c->close_timer, close_wait_cb, CLOSE_WAIT_MS, 0);
  maybe_finish_close(c);
}
