/* The emulator's DingTalk side (dingtalk.md; §9/§10 override the rest): the
 * Stream gateway (POST /v1.0/gateway/connections/open, the /connect upgrade
 * with a one-use 90 s ticket, CALLBACK pushes with ACK matching by
 * messageId and redelivery, SYSTEM ping and disconnect, faults), the access
 * token and the card API (createAndDeliver, update) with their validation,
 * per-API QPS limit and error shapes. Notes: docs/emulator.md. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/common.h"
#include "cardgate/error.h"
#include "gateway_int.h"

#define TICK_MS 20u
#define RECORDS_MAX 2000u
#define TICKET_TTL_MS 90000 /* dingtalk.md §1.2 */
#define TOKEN_EXPIRE_S 7200 /* §4.2 */
#define REDELIVERIES_MAX 3
#define OVERSIZED_BYTES (2u * 1024u * 1024u)

typedef struct dconn {
  cg__emu_dt_gw *g;
  cg__ws *ws;
  int serial;
  int dead;
  int draining;
  uint64_t close_at; /* mono ms; 0 = none */
  char conn_id[48];
  json_t *rec;
  struct dconn *next;
} dconn;

typedef struct dpend {
  int ping; /* 1: SYSTEM ping, 0: CALLBACK push */
  char mid[64];
  char topic[64];
  char out_track[128];
  char *data; /* the data string */
  int deliveries;
  int conn_serial;
  uint64_t sent_mono, next_mono, wait_deadline;
  int acked, gave_up;
  cg__http_req *req;
  json_t *rec;
  struct dpend *next;
} dpend;

typedef struct qps {
  uint64_t win;
  int count;
} qps;

struct cg__emu_dt_gw {
  cg__emu *e;
  uv_timer_t tick;
  char *client_id, *client_secret;
  int serial;
  dconn *conns;
  dpend *pend;
  int64_t redeliver_ms, disconnect_close_ms;
  int qps_limit;
  qps q_create, q_update;
  char cur_token[64];
  char fail_space[256]; /* fault: next createAndDeliver fails this space */
  int fail_next;
  json_t *tickets, *subs, *conns_j, *frames_in, *frames_out, *acks, *pushes,
      *pings, *cards, *calls, *tokens;
  void (*close_cb)(void *);
  void *close_ud;
};

/* ------------------------------------------------------------ helpers */

static void append_capped(json_t *arr, json_t *item) {
  if (json_array_size(arr) >= RECORDS_MAX) json_array_remove(arr, 0);
  json_array_append_new(arr, item);
}

static void config_defaults(cg__emu_dt_gw *g) {
  g->redeliver_ms = 3000;
  g->disconnect_close_ms = 10000;
  g->qps_limit = 20;
}

static int path_is(const cg__http_request *r, const char *p) {
  return strlen(p) == r->path_len && !memcmp(r->path, p, r->path_len);
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

/* api.dingtalk.com error shape (§4.1). */
static json_t *dt_err(cg__emu_dt_gw *g, const char *code, const char *msg) {
  char rid[48];
  cg__emu_new_id(g->e, "emu-req-", rid, sizeof(rid));
  return json_pack("{s:s,s:s,s:s}", "code", code, "message", msg, "requestid",
                   rid);
}

static void api_answer(cg__emu_dt_gw *g, cg__http_req *req,
                       const cg__http_request *r, int status, json_t *obj) {
  const char *code = json_string_value(json_object_get(obj, "code"));
  append_capped(g->calls,
                json_pack("{s:I,s:s,s:s%,s:i,s:s?}", "t_ms",
                          (json_int_t)cg_now_ms(), "method", r->method, "path",
                          r->path, r->path_len, "status", status, "code",
                          status == 200 ? NULL : code));
  cg__emu_reply(req, status, obj);
}

static dconn *conn_by_serial(cg__emu_dt_gw *g, int serial) {
  for (dconn *c = g->conns; c; c = c->next)
    if (c->serial == serial && !c->dead) return c;
  return NULL;
}

static dconn *newest(cg__emu_dt_gw *g) {
  for (dconn *c = g->conns; c; c = c->next)
    if (c->ws && !c->dead && !c->draining) return c;
  return NULL;
}

static int send_text(cg__emu_dt_gw *g, dconn *c, const char *s, size_t n,
                     int record) {
  int rc = cg__ws_send(c->ws, 0, s, n);
  if (record)
    append_capped(g->frames_out,
                  json_pack("{s:i,s:I,s:s%,s:s?}", "conn", c->serial, "t_ms",
                            (json_int_t)cg_now_ms(), "text", s, n, "error",
                            rc ? cg_err_name(rc) : NULL));
  return rc;
}

/* A downstream frame (§2.1): specVersion, type, headers, data. */
static char *build_frame(cg__emu_dt_gw *g, dconn *c, const char *type,
                         const char *topic, const char *mid,
                         const char *data) {
  char t[24];
  cg_fmt(t, sizeof(t), "%lld", (long long)cg_now_ms());
  json_t *h;
  if (!strcmp(type, "CALLBACK"))
    h = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s}", "appId", g->client_id,
                  "connectionId", c->conn_id, "contentType",
                  "application/json", "messageId", mid, "time", t, "topic",
                  topic);
  else
    h = json_pack("{s:s,s:s,s:s,s:s}", "contentType", "application/json",
                  "messageId", mid, "time", t, "topic", topic);
  json_t *f = json_pack("{s:s,s:s,s:o,s:s}", "specVersion", "1.0", "type",
                        type, "headers", h, "data", data);
  char *s = f ? json_dumps(f, JSON_COMPACT) : NULL;
  json_decref(f);
  return s;
}

/* ------------------------------------------------------------ pushes */

static json_t *pend_answer(dpend *p) {
  json_t *o = json_deep_copy(p->rec);
  json_object_set_new(o, "delivered", json_boolean(p->deliveries > 0));
  if (!json_object_get(o, "ack")) json_object_set_new(o, "ack", json_null());
  return o;
}

static void answer_pend(dpend *p) {
  if (!p->req) return;
  cg__emu_reply(p->req, 200, pend_answer(p));
  p->req = NULL;
}

static void pend_free(dpend *p) {
  free(p->data);
  json_decref(p->rec);
  free(p);
}

static int deliver(cg__emu_dt_gw *g, dpend *p, dconn *c) {
  char *s = build_frame(g, c, p->ping ? "SYSTEM" : "CALLBACK",
                        p->ping ? "ping" : p->topic, p->mid, p->data);
  int rc = s ? send_text(g, c, s, strlen(s), 1) : CG_ENOMEM;
  p->deliveries++;
  p->conn_serial = c->serial;
  p->sent_mono = cg_mono_ms();
  p->next_mono = p->sent_mono + (uint64_t)g->redeliver_ms;
  json_array_append_new(json_object_get(p->rec, "deliveries"),
                        json_pack("{s:i,s:i,s:I,s:s?,s:s?}", "n",
                                  p->deliveries, "conn", c->serial, "t_ms",
                                  (json_int_t)cg_now_ms(), "frame", s,
                                  "error", rc ? cg_err_name(rc) : NULL));
  free(s);
  return rc;
}

static dpend *pend_new(cg__emu_dt_gw *g, int ping, const char *topic,
                       char *data) {
  dpend *p = calloc(1, sizeof(*p));
  if (!p) {
    free(data);
    return NULL;
  }
  p->ping = ping;
  p->data = data;
  cg_strlcpy(p->topic, topic, sizeof(p->topic));
  cg__emu_new_id(g->e, "emu_", p->mid, sizeof(p->mid));
  json_t *dj = json_loads(data, 0, NULL);
  p->rec = json_pack("{s:s,s:s,s:I,s:s,s:o,s:[]}", "messageId", p->mid,
                     "topic", topic, "t_ms", (json_int_t)cg_now_ms(), "data",
                     data, "data_json", dj ? dj : json_null(), "deliveries");
  append_capped(ping ? g->pings : g->pushes, json_incref(p->rec));
  p->next = g->pend;
  g->pend = p;
  return p;
}

static void start_pend(cg__emu_dt_gw *g, dpend *p, dconn *c,
                       cg__http_req *req, json_t *b) {
  json_t *jw = json_object_get(b, "wait_ms");
  int64_t wait = jw ? (int64_t)json_integer_value(jw) : 5000;
  int rc = deliver(g, p, c);
  if (rc || wait <= 0) {
    if (rc) json_object_set_new(p->rec, "error", json_string(cg_err_name(rc)));
    cg__emu_reply(req, rc ? 502 : 200, pend_answer(p));
    if (p->ping) p->gave_up = 1; /* a ping is not redelivered */
    return;
  }
  p->req = req;
  p->wait_deadline = cg_mono_ms() + (uint64_t)wait;
}

static const char *str_or(json_t *b, const char *k, const char *d) {
  const char *s = json_string_value(json_object_get(b, k));
  return s ? s : d;
}

static void handle_push(cg__emu_dt_gw *g, cg__http_req *req, json_t *b) {
  const char *kind = str_or(b, "kind", "card");
  int card = !strcmp(kind, "card");
  if (!card && strcmp(kind, "message")) {
    cg__emu_reply(req, 400, json_pack("{s:s}", "error",
                                      "kind must be message or card"));
    return;
  }
  dconn *c = newest(g);
  if (!c) {
    cg__emu_reply(req, 409, json_pack("{s:b,s:s}", "delivered", 0, "error",
                                      "no live stream connection"));
    return;
  }
  json_t *d;
  const char *otid = str_or(b, "outTrackId", "");
  if (card) {
    if (!*otid) {
      cg__emu_reply(req, 400, json_pack("{s:s}", "error",
                                        "outTrackId is required"));
      return;
    }
    json_t *params = json_object_get(b, "params");
    json_t *ids = json_object_get(b, "actionIds");
    const char *shape = str_or(b, "value_shape", "content");
    json_t *ids_c = json_is_array(ids) ? json_incref(ids) : json_pack("[s]", "btn_emu");
    json_t *par_c = json_is_object(params) ? json_incref(params) : json_object();
    json_t *content;
    if (!strcmp(shape, "value")) /* §3.1: params beside cardPrivateData */
      content = json_pack("{s:{s:o},s:o}", "cardPrivateData", "actionIds",
                          ids_c, "params", par_c);
    else
      content = json_pack("{s:{s:o,s:o}}", "cardPrivateData", "actionIds",
                          ids_c, "params", par_c);
    char *cs = json_dumps(content, JSON_COMPACT);
    json_decref(content);
    /* Key order of the documented Stream sample (§3.1). */
    d = json_pack("{s:s,s:s,s:i,s:s,s:s,s:s,s:s,s:s}", "extension", "{}",
                  "corpId", str_or(b, "corpId", "ding_emu_corp"), "userIdType",
                  1, "type", "actionCallback", "userId",
                  str_or(b, "userId", "emu_user"), "spaceType",
                  str_or(b, "spaceType", "im"), "spaceId",
                  str_or(b, "spaceId", "cid_emu_conv"), "outTrackId", otid);
    if (strcmp(shape, "value")) json_object_set_new(d, "content", json_string(cs ? cs : "{}"));
    json_object_set_new(d, "value", json_string(cs ? cs : "{}"));
    free(cs);
  } else {
    char msgid[64];
    cg__emu_new_id(g->e, "msg_emu_", msgid, sizeof(msgid));
    const char *ctype = str_or(b, "conversationType", "2");
    const char *staff = str_or(b, "senderStaffId", "emu_user");
    d = json_pack(
        "{s:s,s:[],s:s,s:s,s:s,s:s,s:b,s:s,s:I,s:I,s:s,s:s,s:s,s:s,s:{s:s},"
        "s:s,s:s}",
        "conversationId", str_or(b, "conversationId", "cid_emu_conv"),
        "atUsers", "chatbotCorpId", "ding_emu_corp", "chatbotUserId",
        "emu_bot", "msgId", str_or(b, "msgId", msgid), "senderNick",
        "Emu User", "isAdmin", 0, "senderStaffId", staff,
        "sessionWebhookExpiredTime", (json_int_t)(cg_now_ms() + 5400000),
        "createAt", (json_int_t)cg_now_ms(), "senderCorpId", "ding_emu_corp",
        "conversationType", ctype, "senderId", "$:LWCP_v1:$emu",
        "sessionWebhook", "http://127.0.0.1/emu-session-webhook", "text",
        "content", str_or(b, "text", "hello"), "robotCode", g->client_id,
        "msgtype", "text");
  }
  char *ds = d ? json_dumps(d, JSON_COMPACT) : NULL;
  json_decref(d);
  if (!ds) {
    cg__emu_reply(req, 500, json_pack("{s:s}", "error", "out of memory"));
    return;
  }
  dpend *p = pend_new(g, 0, card ? "/v1.0/card/instances/callback"
                                 : "/v1.0/im/bot/messages/get", ds);
  if (!p) {
    cg__emu_reply(req, 500, json_pack("{s:s}", "error", "out of memory"));
    return;
  }
  cg_strlcpy(p->out_track, otid, sizeof(p->out_track));
  json_object_set_new(p->rec, "kind", json_string(kind));
  start_pend(g, p, c, req, b);
}

static void handle_ping(cg__emu_dt_gw *g, cg__http_req *req, json_t *b) {
  dconn *c = newest(g);
  if (!c) {
    cg__emu_reply(req, 409, json_pack("{s:b,s:s}", "echoed", 0, "error",
                                      "no live stream connection"));
    return;
  }
  char opaque[64], data[128];
  cg__emu_new_id(g->e, "opaque-", opaque, sizeof(opaque));
  cg_fmt(data, sizeof(data), "{\"opaque\":\"%s\"}", opaque);
  dpend *p = pend_new(g, 1, "ping", cg_strdup(data));
  if (!p) {
    cg__emu_reply(req, 500, json_pack("{s:s}", "error", "out of memory"));
    return;
  }
  start_pend(g, p, c, req, b);
}

static dpend *pend_by_mid(cg__emu_dt_gw *g, const char *mid) {
  for (dpend *p = g->pend; p; p = p->next)
    if (!strcmp(p->mid, mid)) return p;
  return NULL;
}

/* ------------------------------------------------------------ cards */

static int all_strings(json_t *map) {
  const char *k;
  json_t *v;
  if (!json_is_object(map)) return 0;
  json_object_foreach(map, k, v) {
    if (!json_is_string(v)) return 0;
  }
  return 1;
}

/* Applies a cardParamMap to a stored card: merge (by key) or replace. */
static void card_apply(json_t *card, json_t *map, int by_key, const char *via,
                       json_t *extra) {
  json_t *vars = json_object_get(card, "variables");
  if (by_key)
    json_object_update(vars, map);
  else {
    json_object_clear(vars);
    json_object_update(vars, map);
  }
  json_t *h = json_pack("{s:s,s:I,s:b,s:O}", "via", via, "t_ms",
                        (json_int_t)cg_now_ms(), "by_key", by_key,
                        "cardParamMap", map);
  if (extra) json_object_update(h, extra);
  json_array_append_new(json_object_get(card, "history"), h);
  json_object_set_new(card, "updates",
                      json_integer(json_integer_value(
                                       json_object_get(card, "updates")) + 1));
}

static void on_card_ack(cg__emu_dt_gw *g, dpend *p, json_t *ack) {
  const char *ds = json_string_value(json_object_get(ack, "data"));
  json_t *d = ds ? json_loads(ds, 0, NULL) : NULL;
  json_t *resp = json_object_get(d, "response");
  json_t *map = json_object_get(json_object_get(resp, "cardData"),
                                "cardParamMap");
  json_t *card = json_object_get(g->cards, p->out_track);
  const char *outcome = "no cardParamMap";
  if (json_is_object(map)) {
    if (!card) {
      outcome = "card not held";
    } else if (!all_strings(map)) {
      outcome = "cardParamMap values must be strings (not applied)";
    } else {
      int by_key = json_is_true(json_object_get(
          json_object_get(resp, "cardUpdateOptions"), "updateCardDataByKey"));
      json_t *x = json_pack("{s:s}", "messageId", p->mid);
      card_apply(card, map, by_key, "callback ACK", x);
      json_decref(x);
      outcome = by_key ? "merged" : "replaced";
    }
  }
  json_object_set_new(p->rec, "card_update", json_string(outcome));
  json_decref(d);
}

/* ------------------------------------------------------------ frames in */

static void on_message(cg__ws *ws, int binary, const uint8_t *data, size_t len,
                       void *ud) {
  (void)ws;
  dconn *c = ud;
  cg__emu_dt_gw *g = c->g;
  json_t *in = json_pack("{s:i,s:I,s:b,s:s%}", "conn", c->serial, "t_ms",
                         (json_int_t)cg_now_ms(), "binary", binary, "text",
                         binary ? "" : (const char *)data, binary ? 0 : len);
  append_capped(g->frames_in, in);
  if (binary) return;
  json_t *j = json_loadb((const char *)data, len, 0, NULL);
  const char *mid = json_string_value(
      json_object_get(json_object_get(j, "headers"), "messageId"));
  if (!j || !mid) {
    json_object_set_new(in, "error", json_string("not an ACK (no headers.messageId)"));
    json_decref(j);
    return;
  }
  dpend *p = pend_by_mid(g, mid);
  json_t *ack = json_pack("{s:s,s:i,s:I,s:s%,s:O,s:b}", "messageId", mid,
                          "conn", c->serial, "t_ms", (json_int_t)cg_now_ms(),
                          "raw", (const char *)data, len, "frame", j,
                          "matched", p != NULL);
  append_capped(g->acks, json_incref(ack));
  if (p && !p->acked) {
    p->acked = 1;
    json_object_set_new(ack, "latency_ms",
                        json_integer((json_int_t)(cg_mono_ms() - p->sent_mono)));
    if (p->ping) {
      const char *ad = json_string_value(json_object_get(j, "data"));
      json_object_set_new(p->rec, "echoed",
                          json_boolean(ad && !strcmp(ad, p->data)));
    } else if (!strcmp(p->topic, "/v1.0/card/instances/callback")) {
      on_card_ack(g, p, j);
    }
    json_object_set(p->rec, "ack", ack);
    answer_pend(p);
  } else if (p) {
    json_object_set_new(p->rec, "extra_acks",
                        json_integer(json_integer_value(json_object_get(
                                         p->rec, "extra_acks")) + 1));
  }
  json_decref(ack);
  json_decref(j);
}

static void on_open(cg__ws *ws, void *ud) {
  dconn *c = ud;
  c->ws = ws;
  const char *peer = cg__ws_peer(ws);
  json_object_set_new(c->rec, "peer", json_string(peer ? peer : ""));
  json_object_set_new(c->rec, "opened_ms", json_integer(cg_now_ms()));
}

static void on_close(cg__ws *ws, int rc, const cg__ws_close_info *info,
                     void *ud) {
  (void)ws;
  dconn *c = ud;
  cg__emu_dt_gw *g = c->g;
  json_object_set_new(c->rec, "closed_ms", json_integer(cg_now_ms()));
  json_object_set_new(c->rec, "close_rc",
                      json_string(rc ? cg_err_name(rc) : "ok"));
  json_object_set_new(c->rec, "close_code",
                      json_integer(info ? info->close_code : 0));
  json_object_set_new(c->rec, "live", json_false());
  for (dconn **pp = &g->conns; *pp; pp = &(*pp)->next)
    if (*pp == c) {
      *pp = c->next;
      break;
    }
  json_decref(c->rec);
  free(c);
}

int cg__emu_dt_gw_accept(cg__emu_dt_gw *g, const cg__ws_request *req,
                         cg__ws_callbacks *cbs, void **conn_ud,
                         char *refuse_headers, char *refuse_body) {
  (void)refuse_headers;
  char ticket[128] = "";
  query_param(req->query, "ticket", ticket, sizeof(ticket));
  json_t *t = json_object_get(g->tickets, ticket);
  const char *why = NULL;
  if (!t)
    why = "unknown ticket";
  else if (json_is_true(json_object_get(t, "used")))
    why = "ticket already used";
  else if (cg_now_ms() - json_integer_value(json_object_get(t, "issued_ms")) >
           TICKET_TTL_MS)
    why = "ticket expired";
  if (why) {
    snprintf(refuse_body, 1024, "{\"code\":\"invalidTicket\",\"message\":\"%s\"}", why);
    append_capped(g->conns_j, json_pack("{s:s,s:s,s:i,s:I}", "refused", why,
                                        "ticket", ticket, "status", 401,
                                        "t_ms", (json_int_t)cg_now_ms()));
    return 401;
  }
  json_object_set_new(t, "used", json_true());
  dconn *c = calloc(1, sizeof(*c));
  if (!c) return 503;
  c->g = g;
  c->serial = ++g->serial;
  cg__emu_new_id(g->e, "conn_emu_", c->conn_id, sizeof(c->conn_id));
  c->rec = json_pack("{s:i,s:s,s:s,s:b}", "conn", c->serial, "connectionId",
                     c->conn_id, "ticket", ticket, "live", 1);
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

/* ------------------------------------------------------------ HTTP API */

static void handle_open(cg__emu_dt_gw *g, cg__http_req *req,
                        const cg__http_request *r, json_t *b) {
  const char *id = json_string_value(json_object_get(b, "clientId"));
  const char *sec = json_string_value(json_object_get(b, "clientSecret"));
  append_capped(g->subs, json_pack("{s:I,s:s?,s:s?,s:O?}", "t_ms",
                                   (json_int_t)cg_now_ms(), "clientId", id,
                                   "ua", json_string_value(json_object_get(b, "ua")),
                                   "subscriptions",
                                   json_object_get(b, "subscriptions")));
  if (!id || !sec || strcmp(id, g->client_id) || strcmp(sec, g->client_secret)) {
    api_answer(g, req, r, 400,
               dt_err(g, "invalidClientIdOrSecret", "clientId or clientSecret is invalid"));
    return;
  }
  char ticket[64], ep[256];
  cg__emu_new_id(g->e, "emu-ticket-", ticket, sizeof(ticket));
  cg_fmt(ep, sizeof(ep), "ws://%s:%d/connect", cg__emu_host(g->e),
         cg__emu_ws_port(g->e));
  json_object_set_new(g->tickets, ticket,
                      json_pack("{s:I,s:b}", "issued_ms",
                                (json_int_t)cg_now_ms(), "used", 0));
  api_answer(g, req, r, 200,
             json_pack("{s:s,s:s}", "endpoint", ep, "ticket", ticket));
}

static void handle_token(cg__emu_dt_gw *g, cg__http_req *req,
                         const cg__http_request *r, json_t *b) {
  const char *k = json_string_value(json_object_get(b, "appKey"));
  const char *s = json_string_value(json_object_get(b, "appSecret"));
  if (!k || !s || strcmp(k, g->client_id) || strcmp(s, g->client_secret)) {
    api_answer(g, req, r, 400,
               dt_err(g, "invalidClientIdOrSecret", "appKey or appSecret is invalid"));
    return;
  }
  int64_t now = cg_now_ms();
  json_t *t = json_object_get(g->tokens, g->cur_token);
  int64_t exp = t ? json_integer_value(json_object_get(t, "expires_ms")) : 0;
  if (!t || exp <= now) {
    cg__emu_new_id(g->e, "dt-emu-", g->cur_token, sizeof(g->cur_token));
    exp = now + (int64_t)TOKEN_EXPIRE_S * 1000;
  }
  /* §4.2: asking again within validity returns the same token, extended. */
  exp = now + (int64_t)TOKEN_EXPIRE_S * 1000;
  json_object_set_new(g->tokens, g->cur_token,
                      json_pack("{s:I,s:I}", "issued_ms", (json_int_t)now,
                                "expires_ms", (json_int_t)exp));
  api_answer(g, req, r, 200,
             json_pack("{s:s,s:i}", "accessToken", g->cur_token, "expireIn",
                       TOKEN_EXPIRE_S));
}

/* 1 when the request may go on; else answered. */
static int card_auth(cg__emu_dt_gw *g, cg__http_req *req,
                     const cg__http_request *r, qps *q) {
  if (!r->dt_token || !r->dt_token_len) {
    api_answer(g, req, r, 400,
               dt_err(g, "AuthenticationFailed.MissingParameter",
                      "x-acs-dingtalk-access-token is required"));
    return 0;
  }
  char tok[128];
  cg_fmt(tok, sizeof(tok), "%.*s", (int)r->dt_token_len, r->dt_token);
  json_t *t = json_object_get(g->tokens, tok);
  if (!t || json_integer_value(json_object_get(t, "expires_ms")) <= cg_now_ms()) {
    api_answer(g, req, r, 400,
               dt_err(g, "InvalidAuthentication", "不合法的access_token"));
    return 0;
  }
  /* §4.1: ≤ 20 calls/s per app per API, a 1 s window. */
  uint64_t now = cg_mono_ms();
  if (now - q->win >= 1000) {
    q->win = now;
    q->count = 0;
  }
  if (++q->count > g->qps_limit) {
    api_answer(g, req, r, 403,
               dt_err(g, "Forbidden.AccessDenied.QpsLimitForAppkeyAndApi",
                      "qps limit for appkey and api exceeded"));
    return 0;
  }
  return 1;
}

typedef struct space_rule {
  const char *type;
  const char *model;
} space_rule;

static const space_rule space_rules[] = {
    {"IM_GROUP", "imGroupOpenDeliverModel"},
    {"IM_ROBOT", "imRobotOpenDeliverModel"},
    {"IM_SINGLE", "imSingleOpenDeliverModel"},
    {"ONE_BOX", "topOpenDeliverModel"}};

static void handle_create(cg__emu_dt_gw *g, cg__http_req *req,
                          const cg__http_request *r, json_t *b) {
  if (!card_auth(g, req, r, &g->q_create)) return;
  const char *tpl = json_string_value(json_object_get(b, "cardTemplateId"));
  const char *ot = json_string_value(json_object_get(b, "outTrackId"));
  const char *osid = json_string_value(json_object_get(b, "openSpaceId"));
  json_t *map = json_object_get(json_object_get(b, "cardData"), "cardParamMap");
  const char *code = NULL, *msg = NULL;
  if (!tpl || !*tpl)
    code = "param.cardTemplateIdEmpty", msg = "cardTemplateId is empty";
  else if (!ot || !*ot)
    code = "param.outTrackIdEmpty", msg = "outTrackId is empty";
  else if (!json_is_object(json_object_get(b, "cardData")))
    code = "param.cardPublicDataEmpty", msg = "cardData is empty";
  else if (map && !all_strings(map))
    code = "param.invalid", msg = "cardData.cardParamMap values must be strings";
  else if (!osid || !*osid)
    code = "param.openSpaceIdEmpty", msg = "openSpaceId is empty";
  else if (strncmp(osid, "dtv1.card//", 11))
    code = "param.openSpaceIdInvalid", msg = "openSpaceId must start with dtv1.card//";
  if (code) {
    api_answer(g, req, r, 400, dt_err(g, code, msg));
    return;
  }
  json_t *results = json_array();
  json_t *spaces = json_array();
  char buf[1024];
  cg_strlcpy(buf, osid + 11, sizeof(buf));
  char *save = NULL;
  for (char *it = strtok_r(buf, ";", &save); it && !code;
       it = strtok_r(NULL, ";", &save)) {
    char *dot = strchr(it, '.');
    if (!dot || dot == it || !dot[1]) {
      code = "param.openSpaceIdInvalid", msg = "openSpaceId item is not TYPE.id";
      break;
    }
    *dot = '\0';
    const space_rule *rule = NULL;
    for (size_t i = 0; i < sizeof(space_rules) / sizeof(space_rules[0]); i++)
      if (!strcmp(it, space_rules[i].type)) rule = &space_rules[i];
    if (!rule) {
      code = "param.openSpaceIdInvalid", msg = "unknown space type";
      break;
    }
    json_t *model = json_object_get(b, rule->model);
    if (!json_is_object(model) ||
        (!strcmp(rule->type, "IM_GROUP") &&
         !json_string_value(json_object_get(model, "robotCode")))) {
      code = "param.openDeliverModelEmpty";
      cg_fmt(buf, sizeof(buf), "%s is required for %s (robotCode)",
             rule->model, rule->type);
      msg = buf;
      break;
    }
    char full[512], carrier[64];
    cg_fmt(full, sizeof(full), "%s.%s", it, dot + 1);
    cg__emu_new_id(g->e, "carrier_emu_", carrier, sizeof(carrier));
    int fail = g->fail_next &&
               (!g->fail_space[0] || !strcmp(g->fail_space, full));
    if (fail) g->fail_next = 0;
    json_array_append_new(
        results, json_pack("{s:s,s:s,s:b,s:s,s:s}", "spaceType", it, "spaceId",
                           dot + 1, "success", !fail, "carrierId",
                           fail ? "" : carrier, "errorMsg",
                           fail ? "emulated delivery failure" : ""));
    json_array_append_new(spaces, json_string(full));
  }
  if (!code && json_object_get(g->cards, ot))
    code = "param.cardAlreadyExist", msg = "a card with this outTrackId exists";
  if (code) {
    json_decref(results);
    json_decref(spaces);
    api_answer(g, req, r, 400, dt_err(g, code, msg));
    return;
  }
  json_t *priv = json_object_get(b, "privateData");
  json_object_set_new(
      g->cards, ot,
      json_pack("{s:s,s:s,s:o,s:s?,s:o,s:O,s:O,s:I,s:i,s:[]}",
                "cardTemplateId", tpl, "openSpaceId", osid, "spaces", spaces,
                "callbackType",
                json_string_value(json_object_get(b, "callbackType")),
                "variables", map ? json_deep_copy(map) : json_object(),
                "privateData", priv ? priv : json_object(), "deliverResults",
                results, "created_ms", (json_int_t)cg_now_ms(), "updates", 0,
                "history"));
  api_answer(g, req, r, 200,
             json_pack("{s:b,s:{s:s,s:o}}", "success", 1, "result",
                       "outTrackId", ot, "deliverResults", results));
}

static void handle_update(cg__emu_dt_gw *g, cg__http_req *req,
                          const cg__http_request *r, json_t *b) {
  if (!card_auth(g, req, r, &g->q_update)) return;
  const char *ot = json_string_value(json_object_get(b, "outTrackId"));
  json_t *cd = json_object_get(b, "cardData");
  json_t *pd = json_object_get(b, "privateData");
  json_t *map = json_object_get(cd, "cardParamMap");
  json_t *card = ot ? json_object_get(g->cards, ot) : NULL;
  if (!ot || !*ot) {
    api_answer(g, req, r, 400, dt_err(g, "param.outTrackIdEmpty", "outTrackId is empty"));
  } else if (!card) {
    api_answer(g, req, r, 400, dt_err(g, "param.cardNotExist", "card does not exist"));
  } else if (!cd && !pd) {
    api_answer(g, req, r, 400,
               dt_err(g, "param.cardDataAndPrivateDataBothEmpty",
                      "cardData and privateData are both empty"));
  } else if (map && !all_strings(map)) {
    api_answer(g, req, r, 400,
               dt_err(g, "param.invalid", "cardParamMap values must be strings"));
  } else {
    json_t *opt = json_object_get(b, "cardUpdateOptions");
    if (json_is_object(map))
      card_apply(card, map,
                 json_is_true(json_object_get(opt, "updateCardDataByKey")),
                 "PUT /v1.0/card/instances", NULL);
    if (json_is_object(pd)) {
      json_t *cur = json_object_get(card, "privateData");
      int by_key = json_is_true(json_object_get(opt, "updatePrivateDataByKey"));
      const char *uid;
      json_t *v;
      json_object_foreach(pd, uid, v) {
        json_t *m = json_object_get(v, "cardParamMap");
        json_t *old = json_object_get(json_object_get(cur, uid), "cardParamMap");
        if (by_key && json_is_object(old) && json_is_object(m))
          json_object_update(old, m);
        else
          json_object_set(cur, uid, v);
      }
    }
    api_answer(g, req, r, 200, json_pack("{s:b,s:b}", "success", 1, "result", 1));
  }
}

/* ------------------------------------------------------------ control */

static json_t *config_json(cg__emu_dt_gw *g) {
  return json_pack("{s:s,s:I,s:I,s:i,s:i,s:i}", "client_id", g->client_id,
                   "redeliver_ms", (json_int_t)g->redeliver_ms,
                   "disconnect_close_ms", (json_int_t)g->disconnect_close_ms,
                   "qps_limit", g->qps_limit, "redeliveries_max",
                   REDELIVERIES_MAX, "ticket_ttl_ms", TICKET_TTL_MS);
}

static void handle_disconnect(cg__emu_dt_gw *g, cg__http_req *req, json_t *b) {
  dconn *c = newest(g);
  if (!c) {
    cg__emu_reply(req, 409, json_pack("{s:b,s:s}", "ok", 0, "error",
                                      "no live stream connection"));
    return;
  }
  json_t *d = json_pack("{s:s}", "reason",
                        str_or(b, "reason", "persistent connection is timeout"));
  char *ds = json_dumps(d, JSON_COMPACT);
  json_decref(d);
  char mid[64];
  cg__emu_new_id(g->e, "emu_", mid, sizeof(mid));
  char *f = ds ? build_frame(g, c, "SYSTEM", "disconnect", mid, ds) : NULL;
  int rc = f ? send_text(g, c, f, strlen(f), 1) : CG_ENOMEM;
  free(f);
  free(ds);
  json_t *jm = json_object_get(b, "close_ms");
  int64_t ms = jm ? json_integer_value(jm) : g->disconnect_close_ms;
  c->draining = 1;
  c->close_at = cg_mono_ms() + (uint64_t)(ms > 0 ? ms : 0) + 1;
  json_object_set_new(c->rec, "disconnect_sent_ms", json_integer(cg_now_ms()));
  cg__emu_reply(req, rc ? 502 : 200,
                json_pack("{s:b,s:i,s:s,s:I}", "ok", rc == 0, "conn", c->serial,
                          "messageId", mid, "close_in_ms", (json_int_t)ms));
}

static void handle_fault(cg__emu_dt_gw *g, cg__http_req *req, json_t *b) {
  const char *mode = str_or(b, "mode", "");
  int all = json_is_true(json_object_get(b, "all"));
  dconn *c = newest(g);
  int need_conn = !strcmp(mode, "drop") || !strcmp(mode, "silent") ||
                  !strcmp(mode, "resume") || !strcmp(mode, "malformed") ||
                  !strcmp(mode, "oversized");
  if (need_conn && !c) {
    cg__emu_reply(req, 409, json_pack("{s:b,s:s}", "ok", 0, "error",
                                      "no live stream connection"));
    return;
  }
  if (!strcmp(mode, "drop")) {
    for (dconn *x = g->conns; x; x = x->next)
      if (x->ws && !x->dead && (x == c || all)) {
        x->dead = 1;
        cg__ws_abort(x->ws);
      }
  } else if (!strcmp(mode, "silent") || !strcmp(mode, "resume")) {
    int on = !strcmp(mode, "silent");
    for (dconn *x = g->conns; x; x = x->next)
      if (x->ws && !x->dead && (x == c || all)) {
        cg__ws_pause(x->ws, on);
        json_object_set_new(x->rec, "silent", json_boolean(on));
      }
  } else if (!strcmp(mode, "malformed")) {
    static const char bad[] = "{\"specVersion\":\"1.0\",\"type\":";
    static const char notype[] =
        "{\"specVersion\":\"1.0\",\"headers\":{\"topic\":\"ping\"},\"data\":\"\"}";
    send_text(g, c, bad, sizeof(bad) - 1, 1);
    send_text(g, c, notype, sizeof(notype) - 1, 1);
  } else if (!strcmp(mode, "oversized")) {
    char *big = malloc(OVERSIZED_BYTES);
    if (big) {
      static const char head[] =
          "{\"specVersion\":\"1.0\",\"type\":\"CALLBACK\",\"headers\":{"
          "\"topic\":\"/v1.0/im/bot/messages/get\",\"messageId\":\"emu_big\"},"
          "\"data\":\"";
      memset(big, 'x', OVERSIZED_BYTES);
      memcpy(big, head, sizeof(head) - 1);
      memcpy(big + OVERSIZED_BYTES - 2, "\"}", 2);
      cg__ws_send(c->ws, 0, big, OVERSIZED_BYTES);
      free(big);
      append_capped(g->frames_out,
                    json_pack("{s:i,s:I,s:s,s:i}", "conn", c->serial, "t_ms",
                              (json_int_t)cg_now_ms(), "oversized", "text",
                              "bytes", (int)OVERSIZED_BYTES));
    }
  } else if (!strcmp(mode, "deliver_fail")) {
    g->fail_next = 1;
    cg_strlcpy(g->fail_space, str_or(b, "space", ""), sizeof(g->fail_space));
  } else if (!strcmp(mode, "none")) {
    g->fail_next = 0;
  } else {
    cg__emu_reply(req, 400,
                  json_pack("{s:s}", "error",
                            "mode: drop|silent|resume|malformed|oversized|"
                            "deliver_fail|none"));
    return;
  }
  cg__emu_reply(req, 200, json_pack("{s:b,s:s}", "ok", 1, "mode", mode));
}

static void handle_config(cg__emu_dt_gw *g, cg__http_req *req, json_t *b) {
  json_t *v;
  if ((v = json_object_get(b, "redeliver_ms")) && json_integer_value(v) > 0)
    g->redeliver_ms = json_integer_value(v);
  if ((v = json_object_get(b, "disconnect_close_ms")) && json_integer_value(v) >= 0)
    g->disconnect_close_ms = json_integer_value(v);
  if ((v = json_object_get(b, "qps_limit")) && json_integer_value(v) > 0)
    g->qps_limit = (int)json_integer_value(v);
  cg__emu_reply(req, 200, config_json(g));
}

int cg__emu_dt_gw_http(cg__emu_dt_gw *g, cg__http_req *req,
                       const cg__http_request *r) {
  int post = !strcmp(r->method, "POST"), put = !strcmp(r->method, "PUT");
  int api = r->path_len > 6 && !memcmp(r->path, "/v1.0/", 6);
  int ctl = r->path_len > 19 && !memcmp(r->path, "/emulator/dingtalk/", 19);
  if (!api && !ctl) return 0;
  if (ctl && !strcmp(r->method, "GET") && path_is(r, "/emulator/dingtalk/state")) {
    cg__emu_reply(req, 200, cg__emu_dt_gw_state(g));
    return 1;
  }
  json_t *b = json_loadb(r->body, r->body_len, 0, NULL);
  if (!json_is_object(b)) {
    json_decref(b);
    b = NULL;
  }
  if (api && !b && (post || put)) {
    api_answer(g, req, r, 400, dt_err(g, "param.empty", "body must be a JSON object"));
    return 1;
  }
  if (post && path_is(r, "/v1.0/gateway/connections/open"))
    handle_open(g, req, r, b);
  else if (post && path_is(r, "/v1.0/oauth2/accessToken"))
    handle_token(g, req, r, b);
  else if (post && path_is(r, "/v1.0/card/instances/createAndDeliver"))
    handle_create(g, req, r, b);
  else if (put && path_is(r, "/v1.0/card/instances"))
    handle_update(g, req, r, b);
  else if (api)
    api_answer(g, req, r, 404, dt_err(g, "NotFound", "not emulated"));
  else if (!post || !b)
    cg__emu_reply(req, 400, json_pack("{s:s}", "error", "POST a JSON object"));
  else if (path_is(r, "/emulator/dingtalk/push"))
    handle_push(g, req, b);
  else if (path_is(r, "/emulator/dingtalk/ping"))
    handle_ping(g, req, b);
  else if (path_is(r, "/emulator/dingtalk/disconnect"))
    handle_disconnect(g, req, b);
  else if (path_is(r, "/emulator/dingtalk/fault"))
    handle_fault(g, req, b);
  else if (path_is(r, "/emulator/dingtalk/config"))
    handle_config(g, req, b);
  else
    cg__emu_reply(req, 404,
                  json_pack("{s:s}", "error",
                            "POST /emulator/dingtalk/push|ping|disconnect|"
                            "fault|config, GET /emulator/dingtalk/state"));
  json_decref(b);
  return 1;
}

/* ------------------------------------------------------------ tick */

static void on_tick(uv_timer_t *t) {
  cg__emu_dt_gw *g = t->data;
  uint64_t now = cg_mono_ms();
  for (dconn *c = g->conns; c; c = c->next)
    if (c->close_at && now >= c->close_at && c->ws && !c->dead) {
      c->close_at = 0;
      c->dead = 1;
      json_object_set_new(c->rec, "closed_after_disconnect", json_true());
      cg__ws_close(c->ws, 1000, "disconnect");
    }
  for (dpend **pp = &g->pend; *pp;) {
    dpend *p = *pp;
    if (!p->acked && !p->gave_up) {
      dconn *c = conn_by_serial(g, p->conn_serial);
      if (p->ping) {
        if (!p->req) p->gave_up = 1;
      } else if (!c || now >= p->next_mono) {
        if (p->deliveries > REDELIVERIES_MAX) {
          p->gave_up = 1;
          json_object_set_new(p->rec, "gave_up", json_true());
        } else {
          dconn *n = newest(g);
          if (n && (n != c || now >= p->next_mono)) deliver(g, p, n);
        }
      }
    }
    if (p->req && !p->acked && now >= p->wait_deadline) answer_pend(p);
    if (p->gave_up && p->req) answer_pend(p);
    if ((p->acked || p->gave_up) && !p->req) {
      *pp = p->next;
      pend_free(p);
      continue;
    }
    pp = &p->next;
  }
}

/* ------------------------------------------------------------ lifetime */

cg__emu_dt_gw *cg__emu_dt_gw_new(cg__emu *e, const cg__emu_dt_options *o) {
  cg__emu_dt_gw *g = calloc(1, sizeof(*g));
  if (!g) return NULL;
  g->e = e;
  g->client_id = cg_strdup(o && !cg_str_empty(o->client_id) ? o->client_id
                                                            : "ding_emulator");
  g->client_secret =
      cg_strdup(o && !cg_str_empty(o->client_secret) ? o->client_secret
                                                     : "emulator_secret");
  config_defaults(g);
  g->tickets = json_object();
  g->subs = json_array();
  g->conns_j = json_array();
  g->frames_in = json_array();
  g->frames_out = json_array();
  g->acks = json_array();
  g->pushes = json_array();
  g->pings = json_array();
  g->cards = json_object();
  g->calls = json_array();
  g->tokens = json_object();
  uv_timer_init(cg__emu_loop(e), &g->tick);
  g->tick.data = g;
  uv_timer_start(&g->tick, on_tick, TICK_MS, TICK_MS);
  return g;
}

json_t *cg__emu_dt_gw_state(cg__emu_dt_gw *g) {
  return json_pack(
      "{s:o,s:O,s:O,s:O,s:O,s:O,s:O,s:O,s:O,s:O,s:O,s:O,s:{s:b,s:s}}",
      "config", config_json(g), "tickets", g->tickets, "subscriptions",
      g->subs, "connections", g->conns_j, "frames_in", g->frames_in,
      "frames_out", g->frames_out, "acks", g->acks, "pushes", g->pushes,
      "pings", g->pings, "cards", g->cards, "calls", g->calls,
      "access_tokens", g->tokens, "faults", "deliver_fail", g->fail_next,
      "space", g->fail_space);
}

static void drop_pend(cg__emu_dt_gw *g) {
  while (g->pend) {
    dpend *p = g->pend;
    g->pend = p->next;
    if (p->req)
      cg__emu_reply(p->req, 503, json_pack("{s:b,s:s}", "delivered", 0, "error",
                                           "emulator reset or closing"));
    pend_free(p);
  }
}

void cg__emu_dt_gw_reset(cg__emu_dt_gw *g) {
  drop_pend(g);
  for (dconn *c = g->conns; c; c = c->next)
    if (c->ws && !c->dead) {
      c->dead = 1;
      cg__ws_abort(c->ws);
    }
  config_defaults(g);
  g->fail_next = 0;
  g->cur_token[0] = '\0';
  memset(&g->q_create, 0, sizeof(g->q_create));
  memset(&g->q_update, 0, sizeof(g->q_update));
  json_object_clear(g->tickets);
  json_array_clear(g->subs);
  json_array_clear(g->conns_j);
  json_array_clear(g->frames_in);
  json_array_clear(g->frames_out);
  json_array_clear(g->acks);
  json_array_clear(g->pushes);
  json_array_clear(g->pings);
  json_object_clear(g->cards);
  json_array_clear(g->calls);
  json_object_clear(g->tokens);
}

static void on_tick_closed(uv_handle_t *h) {
  cg__emu_dt_gw *g = h->data;
  void (*cb)(void *) = g->close_cb;
  void *ud = g->close_ud;
  json_decref(g->tickets);
  json_decref(g->subs);
  json_decref(g->conns_j);
  json_decref(g->frames_in);
  json_decref(g->frames_out);
  json_decref(g->acks);
  json_decref(g->pushes);
  json_decref(g->pings);
  json_decref(g->cards);
  json_decref(g->calls);
  json_decref(g->tokens);
  free(g->client_id);
  free(g->client_secret);
  free(g);
  if (cb) cb(ud);
}

void cg__emu_dt_gw_close(cg__emu_dt_gw *g, void (*cb)(void *), void *ud) {
  drop_pend(g);
  while (g->conns) {
    dconn *c = g->conns;
    g->conns = c->next;
    json_decref(c->rec);
    free(c);
  }
  g->close_cb = cb;
  g->close_ud = ud;
  uv_timer_stop(&g->tick);
  uv_close((uv_handle_t *)&g->tick, on_tick_closed);
}
