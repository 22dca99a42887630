/* The emulator's Lark long-connection gateway (lark.md §3 as corrected by
 * §8): the bootstrap POST /callback/ws/endpoint, the /ws/v2 upgrade with a
 * one-use ticket, pong frames carrying the ClientConfig, pushed card clicks
 * (card.action.trigger envelopes in pbbp2 data frames, optionally split into
 * fragments) with ACK matching by message_id, redelivery, and faults. Frames
 * are built and read with the app's own codec (src/lib/codec/lark_frame.h)
 * in the other direction. Notes: docs/emulator.md. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/common.h"
#include "../lib/codec/lark_frame.h"
#include "cardgate/error.h"
#include "gateway_int.h"

/* Our choice (lark.md §3.1 documents no code for bad credentials; every
 * code but 0/1/1000040343 is final for the SDKs): the Open API's "app
 * secret invalid". */
#define CODE_BAD_CREDENTIALS 10014
#define SERVICE_ID 33554678 /* lark.md §3.2 / §5.3 sample */
#define REDELIVERIES_MAX 3  /* pushes again up to this many times */
#define TICK_MS 20u
#define RECORDS_MAX 2000u /* per recorded array */

typedef struct lconn {
  cg__emu_lark_gw *g;
  cg__ws *ws;
  int serial;
  int dead; /* aborted, on_close pending */
  int32_t service;
  int drop_when_flushed;
  json_t *rec; /* in g->conns (a reference held) */
  struct lconn *next;
} lconn;

typedef struct lpush {
  char fmid[64];      /* frame header message_id */
  char card_mid[128]; /* the card's open_message_id */
  char token[64];
  char type[8];
  uint8_t *payload;
  size_t len;
  int fragments;
  int shuffle;
  int has_seq;
  uint64_t seq;
  int deliveries;
  int conn_serial; /* of the last delivery */
  uint64_t sent_mono;
  uint64_t next_mono; /* redelivery due */
  int acked, gave_up;
  cg__http_req *req; /* held until the ACK or wait_ms */
  uint64_t wait_deadline;
  json_t *rec; /* in g->pushes (a reference held) */
  struct lpush *next;
} lpush;

struct cg__emu_lark_gw {
  cg__emu *e;
  uv_timer_t tick;
  int serial;
  lconn *conns;
  lpush *pushes_live;
  /* config (seconds, except redeliver_ms) */
  int64_t reconnect_count, reconnect_interval, reconnect_nonce, ping_interval;
  int64_t redeliver_ms;
  /* faults */
  int refuse_count, refuse_status;
  char refuse_autherr[32], refuse_msg[128];
  int boot_count, boot_code, boot_http;
  int drop_after_push, duplicate, incomplete;
  /* state */
  json_t *tickets, *bootstraps, *conns_j, *pings, *frames_in, *frames_out,
      *acks, *pushes, *refusals;
  void (*close_cb)(void *);
  void *close_ud;
};

/* ------------------------------------------------------------ helpers */

static void append_capped(json_t *arr, json_t *item) {
  if (json_array_size(arr) >= RECORDS_MAX) json_array_remove(arr, 0);
  json_array_append_new(arr, item);
}

static json_t *client_config(cg__emu_lark_gw *g) {
  return json_pack("{s:I,s:I,s:I,s:I}", "ReconnectCount",
                   (json_int_t)g->reconnect_count, "ReconnectInterval",
                   (json_int_t)g->reconnect_interval, "ReconnectNonce",
                   (json_int_t)g->reconnect_nonce, "PingInterval",
                   (json_int_t)g->ping_interval);
}

static void config_defaults(cg__emu_lark_gw *g) {
  g->reconnect_count = -1;
  g->reconnect_interval = 120;
  g->reconnect_nonce = 30;
  g->ping_interval = 120;
  g->redeliver_ms = 3000;
}

static json_t *u64_str(uint64_t v) {
  char s[24];
  cg_fmt(s, sizeof(s), "%llu", (unsigned long long)v);
  return json_string(s);
}

/* A decoded frame as JSON (for the state dump). */
static json_t *frame_json(const cg__lark_frame *f, const uint8_t *raw,
                          size_t len) {
  json_t *h = json_array();
  for (size_t i = 0; i < f->n_headers; i++)
    json_array_append_new(h, json_pack("{s:s,s:s}", "key", f->headers[i].key,
                                       "value", f->headers[i].value));
  char *hex = cg__emu_hex(raw, len);
  json_t *o = json_pack("{s:I,s:o,s:o,s:i,s:i,s:o,s:s}", "t_ms",
                        (json_int_t)cg_now_ms(), "seq_id", u64_str(f->seq_id),
                        "log_id", u64_str(f->log_id), "service", f->service,
                        "method", f->method, "headers", h, "raw_hex",
                        hex ? hex : "");
  free(hex);
  if (f->has_payload) {
    json_t *p = json_stringn(f->payload ? (const char *)f->payload : "",
                             f->payload_len);
    json_object_set_new(o, "payload", p ? p : json_null());
  }
  return o;
}

static int query_param(const char *q, const char *name, char *out, size_t cap) {
  size_t nl = strlen(name);
  while (q && *q) {
    const char *amp = strchr(q, '&');
    size_t seg = amp ? (size_t)(amp - q) : strlen(q);
    if (seg > nl && !memcmp(q, name, nl) && q[nl] == '=') {
      size_t vl = seg - nl - 1;
      if (vl >= cap) vl = cap - 1;
      memcpy(out, q + nl + 1, vl);
      out[vl] = '\0';
      return 1;
    }
    q = amp ? amp + 1 : NULL;
  }
  return 0;
}

static lconn *conn_by_serial(cg__emu_lark_gw *g, int serial) {
  for (lconn *c = g->conns; c; c = c->next)
    if (c->serial == serial && !c->dead) return c;
  return NULL;
}

/* The newest live connection (the list is newest first). */
static lconn *newest(cg__emu_lark_gw *g) {
  for (lconn *c = g->conns; c; c = c->next)
    if (c->ws && !c->dead) return c;
  return NULL;
}

static int send_frame(cg__emu_lark_gw *g, lconn *c, const cg__lark_frame *f) {
  cg_buf b;
  cg_buf_init(&b, CG__LARK_FRAME_MAX + 4096);
  int rc = cg__lark_frame_encode(f, &b);
  if (!rc) rc = cg__ws_send(c->ws, 1, b.data, b.len);
  if (!rc) {
    json_t *o = frame_json(f, (const uint8_t *)b.data, b.len);
    json_object_set_new(o, "conn", json_integer(c->serial));
    append_capped(g->frames_out, o);
  }
  cg_buf_free(&b);
  return rc;
}

/* ------------------------------------------------------------ pushes */

static json_t *push_answer(lpush *p) {
  json_t *o = json_deep_copy(p->rec);
  json_object_set_new(o, "delivered", json_boolean(p->deliveries > 0));
  if (!json_object_get(o, "ack")) json_object_set_new(o, "ack", json_null());
  return o;
}

static void push_free(lpush *p) {
  free(p->payload);
  json_decref(p->rec);
  free(p);
}

static int deliver(cg__emu_lark_gw *g, lpush *p, lconn *c) {
  int n = p->fragments;
  int only_first = 0;
  if (g->incomplete) {
    g->incomplete = 0;
    only_first = 1;
    if (n < 2) n = 2;
  }
  int times = 1;
  if (g->duplicate) {
    g->duplicate = 0;
    times = 2;
  }
  int order[CG__LARK_FRAGMENTS_MAX];
  for (int i = 0; i < n; i++) order[i] = i;
  if (p->shuffle && n > 1) {
    for (int i = n - 1; i > 0; i--) {
      int j = (int)(cg__emu_rand64() % (uint64_t)(i + 1));
      int t = order[i];
      order[i] = order[j];
      order[j] = t;
    }
    int sorted = 1;
    for (int i = 0; i < n; i++) sorted &= order[i] == i;
    if (sorted) { /* make the disorder visible */
      order[0] = n - 1;
      order[n - 1] = 0;
    }
  }
  uint64_t seq = p->has_seq ? p->seq : cg__emu_rand64();
  uint64_t logid = p->has_seq ? p->seq + 1 : cg__emu_rand64();
  char ts[24], sum[8], trace[48];
  cg_fmt(ts, sizeof(ts), "%lld", (long long)cg_now_ms());
  cg_fmt(sum, sizeof(sum), "%d", n);
  cg__emu_new_id(g->e, "trace_emu_", trace, sizeof(trace));
  size_t chunk = (p->len + (size_t)n - 1) / (size_t)n;
  int rc = 0;
  json_t *ord = json_array();
  for (int t = 0; t < times && !rc; t++) {
    for (int k = 0; k < n && !rc; k++) {
      int i = order[k];
      if (only_first && i != 0) continue;
      size_t off = (size_t)i * chunk;
      if (off > p->len) off = p->len;
      size_t len = p->len - off < chunk ? p->len - off : chunk;
      char seqs[8];
      cg_fmt(seqs, sizeof(seqs), "%d", i);
      cg__lark_frame f;
      memset(&f, 0, sizeof(f));
      f.seq_id = seq;
      f.log_id = logid;
      f.service = c->service;
      f.method = CG__LARK_METHOD_DATA;
      if (cg__lark_frame_add_header(&f, "type", p->type) ||
          cg__lark_frame_add_header(&f, "message_id", p->fmid) ||
          cg__lark_frame_add_header(&f, "sum", sum) ||
          cg__lark_frame_add_header(&f, "seq", seqs) ||
          cg__lark_frame_add_header(&f, "trace_id", trace) ||
          cg__lark_frame_add_header(&f, "timestamp", ts) ||
          cg__lark_frame_set_payload(&f, p->payload + off, len))
        rc = CG_ENOMEM;
      if (!rc) rc = send_frame(g, c, &f);
      cg__lark_frame_clear(&f);
      if (t == 0) json_array_append_new(ord, json_integer(i));
    }
  }
  if (g->drop_after_push) {
    g->drop_after_push = 0;
    c->drop_when_flushed = 1;
  }
  p->deliveries++;
  p->conn_serial = c->serial;
  p->sent_mono = cg_mono_ms();
  p->next_mono = p->sent_mono + (uint64_t)g->redeliver_ms;
  json_array_append_new(
      json_object_get(p->rec, "deliveries"),
      json_pack("{s:i,s:i,s:I,s:o,s:i,s:o,s:b,s:i,s:s?}", "n", p->deliveries,
                "conn", c->serial, "t_ms", (json_int_t)cg_now_ms(), "seq_id",
                u64_str(seq), "fragments", n, "order", ord, "incomplete",
                only_first, "copies", times, "error",
                rc ? cg_err_name(rc) : NULL));
  cg__emu_logf(g->e, CG_LOG_INFO, "lark_ws: pushed %s (%d fragment(s)) to conn %d",
               p->fmid, n, c->serial);
  return rc;
}

static void answer_push(lpush *p) {
  if (!p->req) return;
  cg__emu_reply(p->req, 200, push_answer(p));
  p->req = NULL;
}

static void handle_push(cg__emu_lark_gw *g, cg__http_req *req, json_t *b) {
  const char *mid = json_string_value(json_object_get(b, "message_id"));
  const char *type = json_string_value(json_object_get(b, "type"));
  json_t *jf = json_object_get(b, "fragments");
  json_t *jw = json_object_get(b, "wait_ms");
  json_t *js = json_object_get(b, "seq_id");
  if (!mid) {
    cg__emu_reply(req, 400, json_pack("{s:i,s:s}", "code", 400, "msg",
                                      "message_id is required"));
    return;
  }
  if (type && strcmp(type, "event") && strcmp(type, "card")) {
    cg__emu_reply(req, 400, json_pack("{s:i,s:s}", "code", 400, "msg",
                                      "type must be event or card"));
    return;
  }
  int frags = jf ? (int)json_integer_value(jf) : 1;
  if (frags < 1 || frags > (int)CG__LARK_FRAGMENTS_MAX) {
    cg__emu_reply(req, 400, json_pack("{s:i,s:s}", "code", 400, "msg",
                                      "fragments must be 1..64"));
    return;
  }
  lconn *c = newest(g);
  if (!c) {
    cg__emu_reply(req, 409, json_pack("{s:b,s:s}", "delivered", 0, "error",
                                      "no live long connection"));
    return;
  }
  lpush *p = calloc(1, sizeof(*p));
  if (!p) {
    cg__emu_reply(req, 500, json_pack("{s:s}", "error", "out of memory"));
    return;
  }
  json_t *body = cg__emu_v2_click(
      g->e, mid, json_object_get(b, "value"),
      json_string_value(json_object_get(b, "operator")),
      json_string_value(json_object_get(b, "tenant_key")), p->token,
      sizeof(p->token));
  char *s = body ? json_dumps(body, JSON_COMPACT) : NULL;
  if (!s) {
    json_decref(body);
    free(p);
    cg__emu_reply(req, 500, json_pack("{s:s}", "error", "out of memory"));
    return;
  }
  p->payload = (uint8_t *)s;
  p->len = strlen(s);
  p->fragments = frags;
  if ((size_t)frags > p->len) p->fragments = (int)p->len;
  p->shuffle = json_is_true(json_object_get(b, "shuffle"));
  cg_strlcpy(p->type, type ? type : "event", sizeof(p->type));
  cg_strlcpy(p->card_mid, mid, sizeof(p->card_mid));
  cg__emu_new_id(g->e, "msg_emu_", p->fmid, sizeof(p->fmid));
  if (json_is_integer(js)) {
    p->has_seq = 1;
    p->seq = (uint64_t)json_integer_value(js);
  } else if (json_is_string(js)) {
    p->has_seq = 1;
    p->seq = strtoull(json_string_value(js), NULL, 10);
  }
  const char *evid = json_string_value(
      json_object_get(json_object_get(body, "header"), "event_id"));
  p->rec = json_pack("{s:s,s:s,s:s,s:s,s:s,s:I,s:i,s:b,s:o,s:[]}",
                     "message_id", p->fmid, "card_message_id", mid, "event_id",
                     evid ? evid : "", "token", p->token, "type", p->type,
                     "t_ms", (json_int_t)cg_now_ms(), "fragments",
                     p->fragments, "shuffle", p->shuffle, "body", body,
                     "deliveries");
  json_array_append(g->pushes, p->rec);
  p->next = g->pushes_live;
  g->pushes_live = p;
  int rc = deliver(g, p, c);
  int64_t wait = jw ? (int64_t)json_integer_value(jw) : 5000;
  if (rc || wait <= 0) {
    if (rc) json_object_set_new(p->rec, "error", json_string(cg_err_name(rc)));
    cg__emu_reply(req, rc ? 502 : 200, push_answer(p));
    return;
  }
  p->req = req;
  p->wait_deadline = cg_mono_ms() + (uint64_t)wait;
}

static lpush *push_by_fmid(cg__emu_lark_gw *g, const char *fmid) {
  for (lpush *p = g->pushes_live; p; p = p->next)
    if (!strcmp(p->fmid, fmid)) return p;
  return NULL;
}

/* ------------------------------------------------------------ frames in */

static void on_ack(cg__emu_lark_gw *g, lconn *c, const cg__lark_frame *f,
                   const char *hex) {
  const char *fmid = cg__lark_frame_header(f, "message_id");
  const char *biz = cg__lark_frame_header(f, "biz_rt");
  int code = 0;
  char *data = NULL;
  size_t dlen = 0;
  int prc = cg__lark_ack_parse(f->payload ? f->payload : (const uint8_t *)"",
                               f->payload_len, &code, &data, &dlen);
  json_t *dj = NULL;
  if (data) {
    dj = json_loadb(data, dlen, JSON_DECODE_ANY, NULL);
    if (!dj) dj = json_stringn(data, dlen);
  }
  json_t *ack = json_pack(
      "{s:s,s:i,s:I,s:i,s:o,s:s?,s:s,s:o,s:o}", "message_id", fmid ? fmid : "",
      "conn", c->serial, "t_ms", (json_int_t)cg_now_ms(), "code", code, "data",
      dj ? dj : json_null(), "biz_rt", biz, "raw_hex", hex, "payload",
      f->has_payload ? json_stringn((const char *)f->payload, f->payload_len)
                     : json_null(),
      "seq_id", u64_str(f->seq_id));
  free(data);
  if (prc) json_object_set_new(ack, "error", json_string(cg_err_name(prc)));
  lpush *p = fmid ? push_by_fmid(g, fmid) : NULL;
  json_object_set_new(ack, "matched", json_boolean(p != NULL));
  append_capped(g->acks, json_incref(ack));
  if (p && !p->acked) {
    p->acked = 1;
    uint64_t lat = cg_mono_ms() - p->sent_mono;
    json_object_set_new(ack, "latency_ms", json_integer((json_int_t)lat));
    int replaced = 0;
    if (!prc && code == 200) {
      cg__emu_token_answered(g->e, p->token);
      json_t *card = json_object_get(json_object_get(ack, "data"), "card");
      const char *ty = json_string_value(json_object_get(card, "type"));
      json_t *cd = json_object_get(card, "data");
      if (ty && !strcmp(ty, "raw") && json_is_object(cd))
        replaced = cg__emu_replace_card(g->e, p->card_mid, json_deep_copy(cd),
                                        "long-connection ACK");
    }
    json_object_set_new(p->rec, "card_replaced", json_boolean(replaced));
    json_object_set(p->rec, "ack", ack);
    json_object_set_new(p->rec, "latency_ms", json_integer((json_int_t)lat));
    answer_push(p);
  } else if (p) {
    json_object_set_new(p->rec, "extra_acks",
                        json_integer(json_integer_value(json_object_get(
                                         p->rec, "extra_acks")) + 1));
  }
  json_decref(ack);
}

static void on_message(cg__ws *ws, int binary, const uint8_t *data, size_t len,
                       void *ud) {
  (void)ws;
  lconn *c = ud;
  cg__emu_lark_gw *g = c->g;
  char *hex = cg__emu_hex(data, len);
  if (c->drop_when_flushed) {
    /* drop_after_push: the client answered (it had read every frame)
     * before the tick saw the output flushed. Drop now: the frame is lost
     * with the socket, as if the drop had come first. */
    c->drop_when_flushed = 0;
    c->dead = 1;
    json_object_set_new(c->rec, "dropped_after_push", json_true());
    append_capped(g->frames_in,
                  json_pack("{s:i,s:I,s:s,s:s}", "conn", c->serial, "t_ms",
                            (json_int_t)cg_now_ms(), "lost",
                            "drop_after_push", "raw_hex", hex ? hex : ""));
    free(hex);
    cg__ws_abort(ws);
    return;
  }
  if (!binary) { /* lark.md §3.2: only binary messages are meaningful */
    append_capped(g->frames_in,
                  json_pack("{s:i,s:I,s:s,s:s}", "conn", c->serial, "t_ms",
                            (json_int_t)cg_now_ms(), "text_ignored", "",
                            "raw_hex", hex ? hex : ""));
    free(hex);
    return;
  }
  cg__lark_frame f;
  char err[128] = "";
  int rc = cg__lark_frame_decode(data, len, &f, err, sizeof(err));
  if (rc) {
    append_capped(g->frames_in,
                  json_pack("{s:i,s:I,s:s,s:s,s:s}", "conn", c->serial, "t_ms",
                            (json_int_t)cg_now_ms(), "error", cg_err_name(rc),
                            "detail", err, "raw_hex", hex ? hex : ""));
    free(hex);
    return;
  }
  json_t *fj = frame_json(&f, data, len);
  json_object_set_new(fj, "conn", json_integer(c->serial));
  append_capped(g->frames_in, fj);
  const char *type = cg__lark_frame_header(&f, "type");
  if (f.method == CG__LARK_METHOD_CONTROL && type && !strcmp(type, "ping")) {
    append_capped(g->pings, json_pack("{s:i,s:I,s:i,s:s}", "conn", c->serial,
                                      "t_ms", (json_int_t)cg_now_ms(),
                                      "service", f.service, "raw_hex",
                                      hex ? hex : ""));
    /* lark.md §3.6: the pong carries the ClientConfig as its payload. */
    cg__lark_frame pong;
    memset(&pong, 0, sizeof(pong));
    pong.service = f.service;
    pong.method = CG__LARK_METHOD_CONTROL;
    json_t *cfg = client_config(g);
    char *cs = json_dumps(cfg, JSON_COMPACT);
    json_decref(cfg);
    if (cs && !cg__lark_frame_add_header(&pong, "type", "pong") &&
        !cg__lark_frame_set_payload(&pong, cs, strlen(cs)))
      send_frame(g, c, &pong);
    free(cs);
    cg__lark_frame_clear(&pong);
  } else if (f.method == CG__LARK_METHOD_DATA) {
    on_ack(g, c, &f, hex ? hex : "");
  }
  cg__lark_frame_clear(&f);
  free(hex);
}

static void on_open(cg__ws *ws, void *ud) {
  lconn *c = ud;
  c->ws = ws;
  const char *peer = cg__ws_peer(ws);
  json_object_set_new(c->rec, "peer", json_string(peer ? peer : ""));
  json_object_set_new(c->rec, "opened_ms", json_integer(cg_now_ms()));
}

static void on_close(cg__ws *ws, int rc, const cg__ws_close_info *info,
                     void *ud) {
  (void)ws;
  lconn *c = ud;
  cg__emu_lark_gw *g = c->g;
  json_object_set_new(c->rec, "closed_ms", json_integer(cg_now_ms()));
  json_object_set_new(c->rec, "close_rc",
                      json_string(rc ? cg_err_name(rc) : "ok"));
  json_object_set_new(c->rec, "close_code",
                      json_integer(info ? info->close_code : 0));
  json_object_set_new(c->rec, "live", json_false());
  for (lconn **pp = &g->conns; *pp; pp = &(*pp)->next)
    if (*pp == c) {
      *pp = c->next;
      break;
    }
  json_decref(c->rec);
  free(c);
}

/* ------------------------------------------------------------ accept */

int cg__emu_lark_gw_accept(cg__emu_lark_gw *g, const cg__ws_request *req,
                           cg__ws_callbacks *cbs, void **conn_ud,
                           char *refuse_headers, char *refuse_body) {
  char ticket[128] = "";
  query_param(req->query, "ticket", ticket, sizeof(ticket));
  int status = 101;
  const char *msg = "";
  char autherr[32] = "";
  if (g->refuse_count > 0) {
    g->refuse_count--;
    status = g->refuse_status;
    msg = g->refuse_msg;
    cg_strlcpy(autherr, g->refuse_autherr, sizeof(autherr));
  } else {
    json_t *t = json_object_get(g->tickets, ticket);
    if (!t || json_is_true(json_object_get(t, "used"))) {
      /* Our choice: 514 (auth failed) with a non-final auth code, so a
       * client bootstraps again (lark.md §3.3). */
      status = 514;
      msg = t ? "ticket already used" : "unknown ticket";
      cg_strlcpy(autherr, "1000040351", sizeof(autherr));
    } else {
      json_object_set_new(t, "used", json_true());
    }
  }
  if (status != 101) {
    char hs[32];
    cg_fmt(hs, sizeof(hs), "%d", status);
    size_t n = 0;
    n += (size_t)snprintf(refuse_headers, 1024, "Handshake-Status: %s\r\nHandshake-Msg: %s", hs, msg);
    if (autherr[0] && n < 1024)
      snprintf(refuse_headers + n, 1024 - n, "\r\nHandshake-Autherrcode: %s", autherr);
    snprintf(refuse_body, 1024, "{\"code\":%d,\"msg\":\"%s\"}", status, msg);
    append_capped(g->refusals,
                  json_pack("{s:I,s:i,s:s,s:s,s:s,s:s}", "t_ms",
                            (json_int_t)cg_now_ms(), "status", status, "msg",
                            msg, "autherrcode", autherr, "ticket", ticket,
                            "peer", req->peer ? req->peer : ""));
    return status;
  }
  lconn *c = calloc(1, sizeof(*c));
  if (!c) return 503;
  c->g = g;
  c->serial = ++g->serial;
  c->service = SERVICE_ID;
  json_t *t = json_object_get(g->tickets, ticket);
  const char *dev = json_string_value(json_object_get(t, "device_id"));
  c->rec = json_pack("{s:i,s:s,s:i,s:b,s:s}", "conn", c->serial, "device_id",
                     dev ? dev : "", "service_id", SERVICE_ID, "live", 1,
                     "ticket", ticket);
  json_array_append(g->conns_j, c->rec);
  c->next = g->conns;
  g->conns = c;
  memset(cbs, 0, sizeof(*cbs));
  cbs->on_open = on_open;
  cbs->on_message = on_message;
  cbs->on_close = on_close;
  *conn_ud = c;
  return 101;
}

/* ------------------------------------------------------------ HTTP */

static void handle_endpoint(cg__emu_lark_gw *g, cg__http_req *req,
                            const cg__http_request *r) {
  json_t *b = json_loadb(r->body, r->body_len, 0, NULL);
  const char *id = json_string_value(json_object_get(b, "AppID"));
  const char *sec = json_string_value(json_object_get(b, "AppSecret"));
  json_t *rec = json_pack("{s:I,s:s?}", "t_ms", (json_int_t)cg_now_ms(),
                          "app_id", id);
  append_capped(g->bootstraps, rec);
  if (g->boot_count > 0) {
    g->boot_count--;
    if (g->boot_http) {
      json_object_set_new(rec, "status", json_integer(g->boot_http));
      cg__emu_reply(req, g->boot_http,
                    json_pack("{s:i,s:s}", "code", g->boot_http, "msg",
                              "emulated fault"));
    } else {
      json_object_set_new(rec, "code", json_integer(g->boot_code));
      /* lark.md §8.2: refusals carry a data object. */
      cg__emu_reply(req, 200,
                    json_pack("{s:i,s:s,s:{}}", "code", g->boot_code, "msg",
                              g->boot_code == 1 ? "system busy"
                                                : "emulated fault",
                              "data"));
    }
    json_decref(b);
    return;
  }
  if (!id || !sec || strcmp(id, cg__emu_app_id(g->e)) ||
      strcmp(sec, cg__emu_app_secret(g->e))) {
    json_decref(b);
    json_object_set_new(rec, "code", json_integer(CODE_BAD_CREDENTIALS));
    cg__emu_reply(req, 200,
                  json_pack("{s:i,s:s,s:{}}", "code", CODE_BAD_CREDENTIALS,
                            "msg", "app id or secret invalid", "data"));
    return;
  }
  json_decref(b);
  char dev[48], key[48], ticket[64], url[512];
  cg__emu_new_id(g->e, "7", dev, sizeof(dev));
  cg__emu_new_id(g->e, "ak", key, sizeof(key));
  cg__emu_new_id(g->e, "tk-", ticket, sizeof(ticket));
  cg_fmt(url, sizeof(url),
         "ws://%s:%d/ws/v2?fpid=493&aid=552564&device_id=%s&access_key=%s"
         "&service_id=%d&ticket=%s",
         cg__emu_host(g->e), cg__emu_ws_port(g->e), dev, key, SERVICE_ID,
         ticket);
  json_object_set_new(g->tickets, ticket,
                      json_pack("{s:s,s:I,s:b}", "device_id", dev, "issued_ms",
                                (json_int_t)cg_now_ms(), "used", 0));
  json_object_set_new(rec, "code", json_integer(0));
  json_object_set_new(rec, "ticket", json_string(ticket));
  cg__emu_reply(req, 200,
                json_pack("{s:i,s:s,s:{s:s,s:o}}", "code", 0, "msg", "ok",
                          "data", "URL", url, "ClientConfig",
                          client_config(g)));
}

static json_t *fault_json(cg__emu_lark_gw *g) {
  return json_pack("{s:i,s:i,s:s,s:i,s:i,s:i,s:b,s:b,s:b}", "refuse_count",
                   g->refuse_count, "refuse_status", g->refuse_status,
                   "refuse_autherrcode", g->refuse_autherr, "bootstrap_count",
                   g->boot_count, "bootstrap_code", g->boot_code,
                   "bootstrap_http", g->boot_http, "drop_after_push",
                   g->drop_after_push, "duplicate", g->duplicate,
                   "incomplete", g->incomplete);
}

static void send_malformed(cg__emu_lark_gw *g, lconn *c) {
  /* Not protobuf at all, then a frame without the required field 4 (method):
   * SeqID 1, LogID 2, service 33554678, header type=event. */
  static const uint8_t garbage[] = {0xff, 0xff, 0xff, 0xff, 0x0f, 'g', 'a',
                                    'r', 'b', 'a', 'g', 'e'};
  static const uint8_t nomethod[] = {0x08, 0x01, 0x10, 0x02, 0x18, 0xf6, 0x81,
                                     0x80, 0x10, 0x2a, 0x0d, 0x0a, 0x04, 't',
                                     'y',  'p',  'e',  0x12, 0x05, 'e',  'v',
                                     'e',  'n',  't'};
  cg__ws_send(c->ws, 1, garbage, sizeof(garbage));
  cg__ws_send(c->ws, 1, nomethod, sizeof(nomethod));
  char *h1 = cg__emu_hex(garbage, sizeof(garbage));
  char *h2 = cg__emu_hex(nomethod, sizeof(nomethod));
  append_capped(g->frames_out, json_pack("{s:i,s:s,s:s?}", "conn", c->serial,
                                         "malformed", "garbage", "raw_hex", h1));
  append_capped(g->frames_out,
                json_pack("{s:i,s:s,s:s?}", "conn", c->serial, "malformed",
                          "missing method", "raw_hex", h2));
  free(h1);
  free(h2);
}

static void handle_fault(cg__emu_lark_gw *g, cg__http_req *req, json_t *b) {
  const char *mode = json_string_value(json_object_get(b, "mode"));
  json_t *jc = json_object_get(b, "count");
  int count = jc ? (int)json_integer_value(jc) : 1;
  int all = json_is_true(json_object_get(b, "all"));
  lconn *c = newest(g);
  const char *err = NULL;
  if (!mode) {
    err = "mode is required";
  } else if (!strcmp(mode, "drop")) {
    if (!c) err = "no live connection";
    for (lconn *x = g->conns; x; x = x->next)
      if (x->ws && !x->dead && (x == c || all)) {
        x->dead = 1;
        cg__ws_abort(x->ws);
      }
  } else if (!strcmp(mode, "silent") || !strcmp(mode, "resume")) {
    int on = !strcmp(mode, "silent");
    if (!c) err = "no live connection";
    for (lconn *x = g->conns; x; x = x->next)
      if (x->ws && (x == c || all)) {
        cg__ws_pause(x->ws, on);
        json_object_set_new(x->rec, "silent", json_boolean(on));
      }
  } else if (!strcmp(mode, "malformed")) {
    if (!c)
      err = "no live connection";
    else
      send_malformed(g, c);
  } else if (!strcmp(mode, "drop_after_push")) {
    g->drop_after_push = 1;
  } else if (!strcmp(mode, "duplicate")) {
    g->duplicate = 1;
  } else if (!strcmp(mode, "incomplete")) {
    g->incomplete = 1;
  } else if (!strcmp(mode, "refuse")) {
    json_t *js = json_object_get(b, "status");
    json_t *ja = json_object_get(b, "autherrcode");
    const char *m = json_string_value(json_object_get(b, "msg"));
    g->refuse_count = count;
    g->refuse_status = js ? (int)json_integer_value(js) : 514;
    if (json_is_integer(ja))
      cg_fmt(g->refuse_autherr, sizeof(g->refuse_autherr), "%lld",
             (long long)json_integer_value(ja));
    else
      cg_strlcpy(g->refuse_autherr,
                 json_is_string(ja) ? json_string_value(ja)
                 : ja               ? ""
                 : g->refuse_status == 514 ? "1000040350"
                                           : "",
                 sizeof(g->refuse_autherr));
    cg_strlcpy(g->refuse_msg, m ? m : "emulated refusal",
               sizeof(g->refuse_msg));
    if (g->refuse_status < 400 || g->refuse_status > 599) {
      g->refuse_count = 0;
      err = "status must be 400..599";
    }
  } else if (!strcmp(mode, "bootstrap")) {
    json_t *jcode = json_object_get(b, "code");
    json_t *jh = json_object_get(b, "http_status");
    g->boot_count = count;
    g->boot_code = jcode ? (int)json_integer_value(jcode) : 1;
    g->boot_http = jh ? (int)json_integer_value(jh) : 0;
  } else if (!strcmp(mode, "none")) {
    g->refuse_count = g->boot_count = 0;
    g->drop_after_push = g->duplicate = g->incomplete = 0;
  } else {
    err = "mode: drop|drop_after_push|silent|resume|refuse|bootstrap|"
          "malformed|duplicate|incomplete|none";
  }
  if (err && strcmp(err, "no live connection")) {
    cg__emu_reply(req, 400, json_pack("{s:i,s:s}", "code", 400, "msg", err));
    return;
  }
  if (err) {
    cg__emu_reply(req, 409, json_pack("{s:b,s:s}", "ok", 0, "error", err));
    return;
  }
  cg__emu_reply(req, 200, json_pack("{s:b,s:o}", "ok", 1, "faults",
                                    fault_json(g)));
}

static json_t *config_json(cg__emu_lark_gw *g) {
  json_t *o = client_config(g);
  json_object_set_new(o, "redeliver_ms", json_integer(g->redeliver_ms));
  json_object_set_new(o, "redeliveries_max", json_integer(REDELIVERIES_MAX));
  json_object_set_new(o, "service_id", json_integer(SERVICE_ID));
  return o;
}

static void handle_config(cg__emu_lark_gw *g, cg__http_req *req, json_t *b) {
  json_t *v;
  if ((v = json_object_get(b, "ReconnectCount")) && json_is_integer(v))
    g->reconnect_count = json_integer_value(v);
  if ((v = json_object_get(b, "ReconnectInterval")) && json_is_integer(v))
    g->reconnect_interval = json_integer_value(v);
  if ((v = json_object_get(b, "ReconnectNonce")) && json_is_integer(v))
    g->reconnect_nonce = json_integer_value(v);
  if ((v = json_object_get(b, "PingInterval")) && json_is_integer(v))
    g->ping_interval = json_integer_value(v);
  if ((v = json_object_get(b, "redeliver_ms")) && json_integer_value(v) > 0)
    g->redeliver_ms = json_integer_value(v);
  cg__emu_reply(req, 200, config_json(g));
}

static int path_is(const cg__http_request *r, const char *p) {
  return strlen(p) == r->path_len && !memcmp(r->path, p, r->path_len);
}

int cg__emu_lark_gw_http(cg__emu_lark_gw *g, cg__http_req *req,
                         const cg__http_request *r) {
  int post = !strcmp(r->method, "POST");
  if (post && path_is(r, "/callback/ws/endpoint")) {
    handle_endpoint(g, req, r);
    return 1;
  }
  if (r->path_len < 18 || memcmp(r->path, "/emulator/lark_ws/", 18)) return 0;
  if (!strcmp(r->method, "GET") && path_is(r, "/emulator/lark_ws/state")) {
    cg__emu_reply(req, 200, cg__emu_lark_gw_state(g));
    return 1;
  }
  json_t *b = json_loadb(r->body, r->body_len, 0, NULL);
  if (!post || !json_is_object(b)) {
    json_decref(b);
    cg__emu_reply(req, 400, json_pack("{s:i,s:s}", "code", 400, "msg",
                                      "POST a JSON object"));
    return 1;
  }
  if (path_is(r, "/emulator/lark_ws/push"))
    handle_push(g, req, b);
  else if (path_is(r, "/emulator/lark_ws/fault"))
    handle_fault(g, req, b);
  else if (path_is(r, "/emulator/lark_ws/config"))
    handle_config(g, req, b);
  else
    cg__emu_reply(req, 404,
                  json_pack("{s:i,s:s}", "code", 404, "msg",
                            "POST /emulator/lark_ws/push|fault|config, GET "
                            "/emulator/lark_ws/state"));
  json_decref(b);
  return 1;
}

/* ------------------------------------------------------------ tick */

static void on_tick(uv_timer_t *t) {
  cg__emu_lark_gw *g = t->data;
  uint64_t now = cg_mono_ms();
  for (lconn *c = g->conns; c; c = c->next)
    if (c->drop_when_flushed && c->ws && cg__ws_queued(c->ws) == 0) {
      c->drop_when_flushed = 0;
      c->dead = 1;
      json_object_set_new(c->rec, "dropped_after_push", json_true());
      cg__ws_abort(c->ws);
    }
  for (lpush **pp = &g->pushes_live; *pp;) {
    lpush *p = *pp;
    if (!p->acked && !p->gave_up) {
      lconn *c = conn_by_serial(g, p->conn_serial);
      if (!c || now >= p->next_mono) {
        if (p->deliveries > REDELIVERIES_MAX) {
          p->gave_up = 1;
          json_object_set_new(p->rec, "gave_up", json_true());
        } else {
          lconn *n = newest(g);
          /* A dropped connection: wait for the client's next one. */
          if (n && (n != c || now >= p->next_mono)) deliver(g, p, n);
        }
      }
    }
    if (p->req && !p->acked && now >= p->wait_deadline) answer_push(p);
    if (p->gave_up && p->req) answer_push(p);
    if ((p->acked || p->gave_up) && !p->req) {
      *pp = p->next;
      push_free(p);
      continue;
    }
    pp = &p->next;
  }
}

/* ------------------------------------------------------------ lifetime */

cg__emu_lark_gw *cg__emu_lark_gw_new(cg__emu *e) {
  cg__emu_lark_gw *g = calloc(1, sizeof(*g));
  if (!g) return NULL;
  g->e = e;
  config_defaults(g);
  g->tickets = json_object();
  g->bootstraps = json_array();
  g->conns_j = json_array();
  g->pings = json_array();
  g->frames_in = json_array();
  g->frames_out = json_array();
  g->acks = json_array();
  g->pushes = json_array();
  g->refusals = json_array();
  uv_timer_init(cg__emu_loop(e), &g->tick);
  g->tick.data = g;
  uv_timer_start(&g->tick, on_tick, TICK_MS, TICK_MS);
  return g;
}

json_t *cg__emu_lark_gw_state(cg__emu_lark_gw *g) {
  return json_pack("{s:o,s:o,s:O,s:O,s:O,s:O,s:O,s:O,s:O,s:O,s:O}", "config",
                   config_json(g), "faults", fault_json(g), "tickets",
                   g->tickets, "bootstraps", g->bootstraps, "connections",
                   g->conns_j, "pings", g->pings, "frames_in", g->frames_in,
                   "frames_out", g->frames_out, "acks", g->acks, "pushes",
                   g->pushes, "refusals", g->refusals);
}

static void drop_pushes(cg__emu_lark_gw *g, int status) {
  while (g->pushes_live) {
    lpush *p = g->pushes_live;
    g->pushes_live = p->next;
    if (p->req)
      cg__emu_reply(p->req, status,
                    json_pack("{s:b,s:s}", "delivered", 0, "error",
                              "emulator reset or closing"));
    push_free(p);
  }
}

void cg__emu_lark_gw_reset(cg__emu_lark_gw *g) {
  drop_pushes(g, 503);
  for (lconn *c = g->conns; c; c = c->next)
    if (c->ws && !c->dead) {
      c->dead = 1;
      cg__ws_abort(c->ws);
    }
  config_defaults(g);
  g->refuse_count = g->boot_count = 0;
  g->drop_after_push = g->duplicate = g->incomplete = 0;
  json_object_clear(g->tickets);
  json_array_clear(g->bootstraps);
  json_array_clear(g->conns_j);
  json_array_clear(g->pings);
  json_array_clear(g->frames_in);
  json_array_clear(g->frames_out);
  json_array_clear(g->acks);
  json_array_clear(g->pushes);
  json_array_clear(g->refusals);
}

static void on_tick_closed(uv_handle_t *h) {
  cg__emu_lark_gw *g = h->data;
  void (*cb)(void *) = g->close_cb;
  void *ud = g->close_ud;
  json_decref(g->tickets);
  json_decref(g->bootstraps);
  json_decref(g->conns_j);
  json_decref(g->pings);
  json_decref(g->frames_in);
  json_decref(g->frames_out);
  json_decref(g->acks);
  json_decref(g->pushes);
  json_decref(g->refusals);
  free(g);
  if (cb) cb(ud);
}

void cg__emu_lark_gw_close(cg__emu_lark_gw *g, void (*cb)(void *), void *ud) {
  drop_pushes(g, 503);
  while (g->conns) { /* the ws server is closed: none should be left */
    lconn *c = g->conns;
    g->conns = c->next;
    json_decref(c->rec);
    free(c);
  }
  g->close_cb = cb;
  g->close_ud = ud;
  uv_timer_stop(&g->tick);
  uv_close((uv_handle_t *)&g->tick, on_tick_closed);
}
