/* The Lark Open API emulator. State lives in jansson trees so that
 * GET /emulator/state is a dump of what the emulator holds. Design notes:
 * docs/emulator.md. Protocol facts: ../shared/protocols/lark.md §0 (signing,
 * encryption), §1/§2 (callback bodies), §4 and §9 (Open API). */
#include "emulator.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../common/common.h"
#include "../common/limits.h"
#include "../lib/net/http_server_int.h"
#include "../lib/net/https_client.h"
#include "cardgate/error.h"
#include "cardgate/lark.h"
#include "gateway_int.h"

/* lark.md §4.6: token invalid; §9.4 missing receive_id_type; §9.3 wrong
 * secret; §4.6 rate limited; §4.4 im errors. */
#define CODE_TOKEN_INVALID 99991663
#define CODE_FIELD_VALIDATION 99992402
#define CODE_APP_SECRET_INVALID 10014
#define CODE_APP_TICKET_INVALID 10012 /* store apps: app_access_token */
#define CODE_APP_TOKEN_INVALID 99991664
#define CODE_RATE_LIMITED 99991400
#define CODE_IM_BAD_PARAM 230001
#define CODE_IM_TOO_LONG 230025
#define CODE_CARD_BAD_PARAM 300020 /* §9.5; our choice for a malformed body */
#define CARD_MAX_BYTES (30u * 1024u) /* §4.4, §4.5: card ≤ 30 KB */
#define TOKEN_REFRESH_S 1800 /* §4.1: < 30 min left → a new token */
#define CALLS_MAX 10000      /* recorded API calls kept (oldest dropped) */
#define CLICK_TIMEOUT_MS 10000u

typedef struct fault {
  char mode[16]; /* "" none, "500", "html", "timeout", "429" */
  int count;
  int seconds;
  int reset;
} fault;

typedef struct held {
  uv_timer_t timer;
  cg__http_req *req;
  struct held *prev, *next;
  cg__emu *e;
} held;

typedef struct click {
  cg__emu *e;
  cg__http_req *req;
  json_t *record; /* in e->callbacks (borrowed) */
  char token[64];
  char message_id[128];
  int v2;
} click;

struct cg__emu {
  uv_loop_t *loop;
  cg_server *srv;
  cg__https *https;
  cg__emu_options init; /* startup config (strings owned below) */
  char *host, *app_id, *app_secret, *vtoken, *ekey, *app_url, *card_path,
      *event_path;
  int token_expire_s, card_token_ttl_s, card_token_max_uses;
  cg_log_fn log;
  void *log_ud;
  uint64_t serial;
  json_t *messages;     /* id → message */
  json_t *card_tokens;  /* c-… → {message_id, issued_ms, answered, uses} */
  json_t *access;       /* t-…/a-… → {kind, expires_ms, revoked} */
  json_t *callbacks;    /* array */
  json_t *calls;        /* array */
  json_t *early;        /* array */
  char cur_tenant[64];
  char cur_app[64];
  int store_app;
  char cur_ticket[64]; /* store apps: the app_ticket last pushed, or "" */
  json_t *pushes;      /* store apps: app_ticket events sent (array) */
  fault faults[2]; /* 0 api, 1 token */
  held *held;
  /* The long-connection gateways on one ws listener (gateway_int.h). */
  cg__ws_server *ws;
  int ws_port_opt;
  cg__emu_lark_gw *lark_gw;
  cg__emu_dt_gw *dt_gw;
  int gw_open; /* gateways (and the ws server) not closed yet */
  int clicks; /* in flight */
  int closing;
  void (*close_cb)(void *);
  void *close_ud;
};

/* ------------------------------------------------------------ rules */

cg__emu_token_verdict cg__emu_check_card_token(const cg__emu_card_token *t,
                                               int64_t now_ms, int ttl_s,
                                               int max_uses) {
  if (!t || !t->known) return CG__EMU_TOKEN_UNKNOWN;
  if (now_ms - t->issued_ms > (int64_t)ttl_s * 1000) return CG__EMU_TOKEN_EXPIRED;
  if (!t->answered) return CG__EMU_TOKEN_EARLY;
  if (t->uses >= max_uses) return CG__EMU_TOKEN_USED_UP;
  return CG__EMU_TOKEN_OK;
}

int cg__emu_verdict_code(cg__emu_token_verdict v) {
  switch (v) {
    case CG__EMU_TOKEN_OK: return 0;
    case CG__EMU_TOKEN_EARLY: return 300040;
    case CG__EMU_TOKEN_UNKNOWN:
    case CG__EMU_TOKEN_EXPIRED:
    case CG__EMU_TOKEN_USED_UP:
    default: return 300030;
  }
}

const char *cg__emu_verdict_name(cg__emu_token_verdict v) {
  switch (v) {
    case CG__EMU_TOKEN_OK: return "ok";
    case CG__EMU_TOKEN_UNKNOWN: return "unknown_token";
    case CG__EMU_TOKEN_EXPIRED: return "expired";
    case CG__EMU_TOKEN_EARLY: return "early";
    case CG__EMU_TOKEN_USED_UP: return "used_up";
    default: return "?";
  }
}

static const char *verdict_msg(cg__emu_token_verdict v) {
  switch (v) {
    case CG__EMU_TOKEN_UNKNOWN: return "card update token is invalid (never issued)";
    case CG__EMU_TOKEN_EXPIRED: return "card update token has expired (valid 30 minutes)";
    case CG__EMU_TOKEN_EARLY:
      return "the callback of this token has not been answered yet: answer it first, then update";
    case CG__EMU_TOKEN_USED_UP: return "card update token has been used up (2 uses)";
    default: return "success";
  }
}

/* ------------------------------------------------------------ helpers */

static void emu_log(cg__emu *e, cg_log_level lv, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void emu_log(cg__emu *e, cg_log_level lv, const char *fmt, ...) {
  if (!e->log) return;
  char line[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof(line), fmt, ap);
  va_end(ap);
  e->log(lv, "emulator", line, e->log_ud);
}

void cg__emu_options_init(cg__emu_options *o) {
  memset(o, 0, sizeof(*o));
  o->host = "127.0.0.1";
  o->app_id = "cli_emulator";
  o->app_secret = "emulator_secret";
  o->card_path = "/webhook/card";
  o->event_path = "/webhook/event";
  o->token_expire_s = 7200;
  o->card_token_ttl_s = 1800;
  o->card_token_max_uses = 2;
}

static void new_id(cg__emu *e, const char *prefix, char *out, size_t cap) {
  unsigned r = (unsigned)((uint64_t)cg_now_ms() * 2654435761u) ^
               (unsigned)(e->serial * 40503u);
  e->serial++;
  cg_fmt(out, cap, "%s%llu%08x", prefix, (unsigned long long)e->serial, r);
}

static void reply_json(cg__http_req *req, int status, json_t *obj) {
  char *s = json_dumps(obj, JSON_COMPACT);
  json_decref(obj);
  if (!s) {
    static const char oom[] = "{\"code\":500,\"msg\":\"out of memory\"}";
    cg__server_reply(req, 500, oom, sizeof(oom) - 1);
    return;
  }
  cg__server_reply(req, status, s, strlen(s));
  free(s);
}

static json_t *err_obj(int code, const char *msg) {
  return json_pack("{s:i,s:s}", "code", code, "msg", msg);
}

/* Records one API call (GET /emulator/state shows them). */
static json_t *record_call(cg__emu *e, const cg__http_request *r,
                           const char *route, int status, int code,
                           const char *msg) {
  json_t *c = json_pack("{s:I,s:s,s:s%,s:s,s:i,s:i,s:s}", "t_ms",
                        (json_int_t)cg_now_ms(), "method", r->method, "path",
                        r->path, r->path_len, "route", route, "status", status,
                        "code", code, "msg", msg);
  if (!c) return NULL;
  if (json_array_size(e->calls) >= CALLS_MAX) json_array_remove(e->calls, 0);
  json_array_append_new(e->calls, c);
  emu_log(e, CG_LOG_INFO, "%s %.*s -> %d code %d", r->method, (int)r->path_len,
          r->path, status, code);
  return c;
}

/* Answers an API call and records it. obj is consumed. */
static json_t *answer(cg__emu *e, cg__http_req *req, const cg__http_request *r,
                      const char *route, int status, json_t *obj) {
  json_t *jc = json_object_get(obj, "code");
  json_t *jm = json_object_get(obj, "msg");
  json_t *rec = record_call(e, r, route, status,
                            jc ? (int)json_integer_value(jc) : 0,
                            json_is_string(jm) ? json_string_value(jm) : "");
  reply_json(req, status, obj);
  return rec;
}

static int path_eq(const cg__http_request *r, const char *p) {
  return strlen(p) == r->path_len && !memcmp(r->path, p, r->path_len);
}

static int method_is(const cg__http_request *r, const char *m) {
  return !strcmp(r->method, m);
}

/* The value of name in the query string (not decoded), into out. */
static int query_get(const cg__http_request *r, const char *name, char *out,
                     size_t cap) {
  size_t nl = strlen(name);
  const char *q = r->query, *end = r->query ? r->query + r->query_len : NULL;
  while (q && q < end) {
    const char *amp = memchr(q, '&', (size_t)(end - q));
    const char *seg_end = amp ? amp : end;
    if ((size_t)(seg_end - q) > nl && !memcmp(q, name, nl) && q[nl] == '=') {
      size_t vl = (size_t)(seg_end - q - nl - 1);
      if (vl >= cap) vl = cap - 1;
      memcpy(out, q + nl + 1, vl);
      out[vl] = '\0';
      return vl > 0;
    }
    q = amp ? amp + 1 : NULL;
  }
  return 0;
}

/* A card object's declared shared-ness (lark.md §4.4): config.update_multi
 * true, or a JSON 2.0 card (where shared is the only mode). */
static int card_is_shared(const json_t *card) {
  const char *schema = json_string_value(json_object_get(card, "schema"));
  if (schema && !strcmp(schema, "2.0")) return 1;
  return json_is_true(
      json_object_get(json_object_get(card, "config"), "update_multi"));
}

/* A legacy callback answer that is a card rather than {}/toast/msg. */
static int looks_like_card(const json_t *j) {
  if (!json_is_object(j)) return 0;
  static const char *const keys[] = {"elements", "config", "header",
                                     "i18n_elements", "body", "card_link",
                                     "i18n_header"};
  for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
    if (json_object_get(j, keys[i])) return 1;
  return 0;
}

/* ------------------------------------------------------------ faults */

static void held_close_cb(uv_handle_t *h) {
  free(h->data);
}

static void held_unlink(held *h) {
  cg__emu *e = h->e;
  if (h->prev)
    h->prev->next = h->next;
  else
    e->held = h->next;
  if (h->next) h->next->prev = h->prev;
}

static void on_held_timer(uv_timer_t *t) {
  held *h = t->data;
  held_unlink(h);
  json_t *o = err_obj(504, "gateway timeout (emulated fault)");
  reply_json(h->req, 504, o);
  uv_close((uv_handle_t *)&h->timer, held_close_cb);
}

/* Answers r with the pending fault of kind k (0 api, 1 token), if any.
 * 1 when it did. */
static int apply_fault(cg__emu *e, int k, cg__http_req *req,
                       const cg__http_request *r, const char *route) {
  fault *f = &e->faults[k];
  if (!f->mode[0] || f->count <= 0) return 0;
  char mode[16];
  cg_strlcpy(mode, f->mode, sizeof(mode));
  int seconds = f->seconds, reset = f->reset;
  if (--f->count <= 0) memset(f, 0, sizeof(*f));
  char msg[64];
  cg_fmt(msg, sizeof(msg), "emulated fault: %s", mode);
  if (!strcmp(mode, "html")) {
    static const char html[] =
        "<html><head><title>502 Bad Gateway</title></head><body><center><h1>"
        "502 Bad Gateway</h1></center></body></html>\n";
    record_call(e, r, route, 502, 0, msg);
    cg__server_reply_ex(req, 502, "text/html", NULL, html, sizeof(html) - 1);
  } else if (!strcmp(mode, "429")) {
    char extra[128];
    cg_fmt(extra, sizeof(extra),
           "x-ogw-ratelimit-limit: 50\r\nx-ogw-ratelimit-reset: %d\r\n", reset);
    record_call(e, r, route, 429, CODE_RATE_LIMITED, msg);
    json_t *o = err_obj(CODE_RATE_LIMITED, "request trigger frequency limit");
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    cg__server_reply_ex(req, 429, NULL, extra, s ? s : "{}", s ? strlen(s) : 2);
    free(s);
  } else if (!strcmp(mode, "timeout")) {
    held *h = calloc(1, sizeof(*h));
    record_call(e, r, route, 504, 0, msg);
    if (!h) {
      reply_json(req, 504, err_obj(504, "gateway timeout (emulated fault)"));
      return 1;
    }
    h->e = e;
    h->req = req;
    uv_timer_init(e->loop, &h->timer);
    h->timer.data = h;
    h->next = e->held;
    if (e->held) e->held->prev = h;
    e->held = h;
    uv_timer_start(&h->timer, on_held_timer, (uint64_t)seconds * 1000u, 0);
  } else { /* "500" */
    record_call(e, r, route, 500, 500, msg);
    reply_json(req, 500, err_obj(500, "internal server error (emulated fault)"));
  }
  return 1;
}

static void revoke_all(cg__emu *e) {
  const char *k;
  json_t *v;
  json_object_foreach(e->access, k, v) {
    json_object_set_new(v, "revoked", json_true());
  }
  e->cur_tenant[0] = e->cur_app[0] = '\0';
}

/* ------------------------------------------------------------ tokens */

/* A valid token, reused while it has ≥ 30 min left (lark.md §4.1). */
static const char *issue_token(cg__emu *e, int app, int64_t *remaining_s) {
  char *cur = app ? e->cur_app : e->cur_tenant;
  int64_t now = cg_now_ms();
  if (cur[0]) {
    json_t *t = json_object_get(e->access, cur);
    int64_t exp = (int64_t)json_integer_value(json_object_get(t, "expires_ms"));
    if (t && !json_is_true(json_object_get(t, "revoked")) &&
        exp - now >= (int64_t)TOKEN_REFRESH_S * 1000) {
      *remaining_s = (exp - now) / 1000;
      return cur;
    }
  }
  new_id(e, app ? "a-emu-" : "t-emu-", cur, 64);
  json_object_set_new(
      e->access, cur,
      json_pack("{s:s,s:I,s:I,s:b}", "kind", app ? "app" : "tenant",
                "issued_ms", (json_int_t)now, "expires_ms",
                (json_int_t)(now + (int64_t)e->token_expire_s * 1000),
                "revoked", 0));
  *remaining_s = e->token_expire_s;
  return cur;
}

static void handle_token(cg__emu *e, cg__http_req *req,
                         const cg__http_request *r, int app) {
  const char *route = app ? "POST /open-apis/auth/v3/app_access_token/internal"
                          : "POST /open-apis/auth/v3/tenant_access_token/internal";
  if (!method_is(r, "POST")) {
    answer(e, req, r, route, 405, err_obj(405, "method not allowed"));
    return;
  }
  if (apply_fault(e, 1, req, r, route)) return;
  json_t *b = json_loadb(r->body, r->body_len, 0, NULL);
  const char *id = json_string_value(json_object_get(b, "app_id"));
  const char *sec = json_string_value(json_object_get(b, "app_secret"));
  if (!id || !sec || strcmp(id, e->app_id) || strcmp(sec, e->app_secret)) {
    json_decref(b);
    /* lark.md §9.3: HTTP 200, non-zero code, no token. */
    answer(e, req, r, route, 200,
           err_obj(CODE_APP_SECRET_INVALID, "app secret invalid"));
    return;
  }
  json_decref(b);
  int64_t rem = 0;
  json_t *o;
  if (app) {
    const char *at = issue_token(e, 1, &rem);
    int64_t trem = 0;
    const char *tt = issue_token(e, 0, &trem);
    o = json_pack("{s:i,s:s,s:s,s:I,s:s}", "code", 0, "msg", "ok",
                  "app_access_token", at, "expire", (json_int_t)rem,
                  "tenant_access_token", tt);
  } else {
    const char *tt = issue_token(e, 0, &rem);
    o = json_pack("{s:i,s:s,s:s,s:I}", "code", 0, "msg", "ok",
                  "tenant_access_token", tt, "expire", (json_int_t)rem);
  }
  answer(e, req, r, route, 200, o);
}

/* 1 when r carries a live token (lark.md §4.6: otherwise 99991663). */
static int authorized(cg__emu *e, const cg__http_request *r) {
  if (!r->authorization || r->authorization_len < 8 ||
      strncasecmp(r->authorization, "Bearer ", 7))
    return 0;
  char tok[128];
  size_t n = r->authorization_len - 7;
  if (n >= sizeof(tok)) return 0;
  memcpy(tok, r->authorization + 7, n);
  tok[n] = '\0';
  json_t *t = json_object_get(e->access, tok);
  if (!t || json_is_true(json_object_get(t, "revoked"))) return 0;
  return json_integer_value(json_object_get(t, "expires_ms")) > cg_now_ms();
}

/* The tenant key of r's bearer token (a store app's tenant token), or NULL. */
static const char *token_tenant(cg__emu *e, const cg__http_request *r) {
  if (!r->authorization || r->authorization_len < 8) return NULL;
  char tok[128];
  size_t n = r->authorization_len - 7;
  if (n >= sizeof(tok)) return NULL;
  memcpy(tok, r->authorization + 7, n);
  tok[n] = '\0';
  return json_string_value(
      json_object_get(json_object_get(e->access, tok), "tenant_key"));
}

/* ------------------------------------------------------ store apps */

static void maybe_finish_close(cg__emu *e);

/* An app_ticket push in flight; req (a resend, or the control request) is
 * answered when the push is done. */
typedef struct push {
  cg__emu *e;
  cg__http_req *req;
  json_t *record; /* in e->pushes (borrowed) */
  int control;    /* answer req with the record, not {code:0} */
} push;

static void on_push_done(int rc, const cg__https_resp *resp, void *ud) {
  push *p = ud;
  cg__emu *e = p->e;
  json_object_set_new(p->record, "answered_ms", json_integer(cg_now_ms()));
  if (rc) {
    json_object_set_new(p->record, "error", json_string(cg_err_name(rc)));
  } else {
    json_object_set_new(p->record, "status", json_integer(resp->status));
  }
  emu_log(e, CG_LOG_INFO, "app_ticket push answered: %s",
          rc ? cg_err_name(rc) : "HTTP response");
  if (p->control)
    reply_json(p->req, rc ? 502 : 200, json_deep_copy(p->record));
  else
    reply_json(p->req, 200, json_pack("{s:i,s:s}", "code", 0, "msg", "ok"));
  free(p);
  e->clicks--;
  maybe_finish_close(e);
}

/* Issues a new app_ticket and POSTs the app_ticket event (schema 1.0,
 * lark.md §4.2) to the app's event URL, encrypted and signed with the
 * encrypt key when one is set. Answers req when the push is done; 0, or an
 * error after which req is not answered. */
static int push_ticket(cg__emu *e, cg__http_req *req, int control) {
  if (!e->app_url) return CG_ECONFIG;
  char url[CG_LIMIT_URL + 64];
  size_t n = strlen(e->app_url);
  int slash = n && e->app_url[n - 1] == '/';
  cg_fmt(url, sizeof(url), "%.*s%s", (int)(n - (size_t)slash), e->app_url,
         e->event_path);
  char uuid[64], ts[24];
  new_id(e, "tk-emu-", e->cur_ticket, sizeof(e->cur_ticket));
  new_id(e, "ev_ticket_", uuid, sizeof(uuid));
  cg_fmt(ts, sizeof(ts), "%lld", (long long)(cg_now_ms() / 1000));
  json_t *body = json_pack(
      "{s:s,s:s,s:s,s:s,s:{s:s,s:s,s:s}}", "uuid", uuid, "token",
      e->vtoken ? e->vtoken : "", "ts", ts, "type", "event_callback", "event",
      "type", "app_ticket", "app_id", e->app_id, "app_ticket", e->cur_ticket);
  char *plain = body ? json_dumps(body, JSON_COMPACT) : NULL;
  json_decref(body);
  char *wire = NULL;
  if (plain && e->ekey) {
    char *enc = NULL;
    if (cg_lark_encrypt(e->ekey, plain, strlen(plain), NULL, &enc) == 0) {
      json_t *w = json_pack("{s:s}", "encrypt", enc);
      wire = json_dumps(w, JSON_COMPACT);
      json_decref(w);
      free(enc);
    }
  } else if (plain) {
    wire = cg_strdup(plain);
  }
  free(plain);
  push *p = wire ? calloc(1, sizeof(*p)) : NULL;
  if (!p) {
    free(wire);
    return CG_ENOMEM;
  }
  /* lark.md §0.4: events are signed with SHA-256 and the encrypt key. */
  char nonce[40], sig[80] = "";
  new_id(e, "n", nonce, sizeof(nonce));
  if (e->ekey) cg_lark_sign_event(ts, nonce, e->ekey, wire, strlen(wire), sig);
  char h_ts[64], h_nonce[80], h_sig[120];
  cg_fmt(h_ts, sizeof(h_ts), "X-Lark-Request-Timestamp: %s", ts);
  cg_fmt(h_nonce, sizeof(h_nonce), "X-Lark-Request-Nonce: %s", nonce);
  cg_fmt(h_sig, sizeof(h_sig), "X-Lark-Signature: %s", sig);
  const char *headers[] = {"Content-Type: application/json; charset=utf-8",
                           h_ts, h_nonce, sig[0] ? h_sig : NULL, NULL};
  p->e = e;
  p->req = req;
  p->control = control;
  p->record = json_pack("{s:s,s:s,s:I,s:b}", "uuid", uuid, "url", url,
                        "sent_ms", (json_int_t)cg_now_ms(), "encrypted",
                        e->ekey != NULL);
  json_array_append(e->pushes, p->record);
  json_decref(p->record); /* the array holds it */
  cg__https_req hr = {.method = "POST",
                      .url = url,
                      .headers = headers,
                      .body = wire,
                      .body_len = strlen(wire),
                      .timeout_ms = CLICK_TIMEOUT_MS};
  int rc = cg__https_request(e->https, &hr, on_push_done, p);
  free(wire);
  if (rc) {
    json_object_set_new(p->record, "error", json_string(cg_err_name(rc)));
    free(p);
    return rc;
  }
  e->clicks++;
  emu_log(e, CG_LOG_INFO, "pushing an app_ticket event to %s", url);
  return 0;
}

static void handle_ticket_resend(cg__emu *e, cg__http_req *req,
                                 const cg__http_request *r) {
  const char *route = "POST /open-apis/auth/v3/app_ticket/resend";
  if (apply_fault(e, 1, req, r, route)) return;
  json_t *b = json_loadb(r->body, r->body_len, 0, NULL);
  const char *id = json_string_value(json_object_get(b, "app_id"));
  const char *sec = json_string_value(json_object_get(b, "app_secret"));
  int ok = id && sec && !strcmp(id, e->app_id) && !strcmp(sec, e->app_secret);
  json_decref(b);
  if (!ok) {
    answer(e, req, r, route, 200,
           err_obj(CODE_APP_SECRET_INVALID, "app secret invalid"));
    return;
  }
  /* Recorded now; answered once the push is done (so the app holds the
   * ticket by the time it reads the answer). */
  record_call(e, r, route, 200, 0, "ok");
  int rc = push_ticket(e, req, 0);
  if (rc) {
    emu_log(e, CG_LOG_WARN, "app_ticket push not sent: %s", cg_err_name(rc));
    reply_json(req, 200, json_pack("{s:i,s:s}", "code", 0, "msg", "ok"));
  }
}

/* The app_access_token of a store app: {app_id, app_secret, app_ticket}. */
static void handle_store_app_token(cg__emu *e, cg__http_req *req,
                                   const cg__http_request *r) {
  const char *route = "POST /open-apis/auth/v3/app_access_token";
  if (apply_fault(e, 1, req, r, route)) return;
  json_t *b = json_loadb(r->body, r->body_len, 0, NULL);
  const char *id = json_string_value(json_object_get(b, "app_id"));
  const char *sec = json_string_value(json_object_get(b, "app_secret"));
  const char *ticket = json_string_value(json_object_get(b, "app_ticket"));
  json_t *o;
  if (!id || !sec || strcmp(id, e->app_id) || strcmp(sec, e->app_secret)) {
    o = err_obj(CODE_APP_SECRET_INVALID, "app secret invalid");
  } else if (!ticket || !e->cur_ticket[0] || strcmp(ticket, e->cur_ticket)) {
    o = err_obj(CODE_APP_TICKET_INVALID, "app_ticket is invalid");
  } else {
    int64_t rem = 0;
    const char *at = issue_token(e, 1, &rem);
    o = json_pack("{s:i,s:s,s:s,s:I}", "code", 0, "msg", "ok",
                  "app_access_token", at, "expire", (json_int_t)rem);
  }
  json_decref(b);
  answer(e, req, r, route, 200, o);
}

/* A store app's tenant token: {app_access_token, tenant_key}; the token
 * remembers its tenant (any live tenant token is accepted by the API). */
static void handle_store_tenant_token(cg__emu *e, cg__http_req *req,
                                      const cg__http_request *r) {
  const char *route = "POST /open-apis/auth/v3/tenant_access_token";
  if (apply_fault(e, 1, req, r, route)) return;
  json_t *b = json_loadb(r->body, r->body_len, 0, NULL);
  const char *at = json_string_value(json_object_get(b, "app_access_token"));
  const char *tk = json_string_value(json_object_get(b, "tenant_key"));
  json_t *t = at ? json_object_get(e->access, at) : NULL;
  const char *kind = json_string_value(json_object_get(t, "kind"));
  int64_t now = cg_now_ms();
  json_t *o;
  if (!t || !kind || strcmp(kind, "app") ||
      json_is_true(json_object_get(t, "revoked")) ||
      json_integer_value(json_object_get(t, "expires_ms")) <= now) {
    o = err_obj(CODE_APP_TOKEN_INVALID, "invalid app_access_token");
  } else if (!tk || !*tk || strlen(tk) > 128) {
    o = err_obj(CODE_FIELD_VALIDATION, "tenant_key is required");
  } else {
    char tok[64];
    new_id(e, "t-emu-", tok, sizeof(tok));
    json_object_set_new(
        e->access, tok,
        json_pack("{s:s,s:s,s:I,s:I,s:b}", "kind", "tenant", "tenant_key", tk,
                  "issued_ms", (json_int_t)now, "expires_ms",
                  (json_int_t)(now + (int64_t)e->token_expire_s * 1000),
                  "revoked", 0));
    o = json_pack("{s:i,s:s,s:s,s:i}", "code", 0, "msg", "ok",
                  "tenant_access_token", tok, "expire", e->token_expire_s);
  }
  json_decref(b);
  answer(e, req, r, route, 200, o);
}

/* ------------------------------------------------------------ im/v1 */

/* Parses body.content as a card object. NULL + msg when it is not. */
static json_t *content_card(const json_t *b, const char **why, int *code) {
  const char *content = json_string_value(json_object_get(b, "content"));
  *code = CODE_IM_BAD_PARAM;
  if (!content) {
    *why = "content must be a JSON string holding the card";
    return NULL;
  }
  if (strlen(content) > CARD_MAX_BYTES) {
    *code = CODE_IM_TOO_LONG;
    *why = "card content exceeds 30 KB";
    return NULL;
  }
  json_t *card = json_loads(content, 0, NULL);
  if (!json_is_object(card)) {
    json_decref(card);
    *why = "content is not a JSON object (a card)";
    return NULL;
  }
  return card;
}

static void store_message(cg__emu *e, const char *id, json_t *card,
                          const char *receive_id, const char *rtype,
                          const char *parent) {
  int64_t now = cg_now_ms();
  json_t *m = json_pack("{s:s,s:s,s:s,s:o,s:I,s:I,s:i,s:[]}", "message_id", id,
                        "receive_id", receive_id ? receive_id : "",
                        "receive_id_type", rtype ? rtype : "", "card", card,
                        "created_ms", (json_int_t)now, "updated_ms",
                        (json_int_t)now, "updates", 0, "history");
  if (parent) json_object_set_new(m, "parent_id", json_string(parent));
  json_object_set_new(e->messages, id, m);
}

static void replace_card(cg__emu *e, const char *id, json_t *card,
                         const char *how) {
  json_t *m = json_object_get(e->messages, id);
  if (!m) {
    json_decref(card);
    return;
  }
  json_array_append_new(json_object_get(m, "history"),
                        json_pack("{s:s,s:I}", "via", how, "t_ms",
                                  (json_int_t)cg_now_ms()));
  json_object_set_new(m, "card", card);
  json_object_set_new(m, "updated_ms", json_integer(cg_now_ms()));
  json_object_set_new(
      m, "updates",
      json_integer(json_integer_value(json_object_get(m, "updates")) + 1));
}

static json_t *sent_answer(const char *id, const char *content,
                           const char *parent) {
  json_t *d = json_pack("{s:s,s:s,s:s,s:{s:s}}", "message_id", id, "msg_type",
                        "interactive", "chat_id", "oc_emulator_chat", "body",
                        "content", content);
  if (parent) json_object_set_new(d, "parent_id", json_string(parent));
  return json_pack("{s:i,s:s,s:o}", "code", 0, "msg", "success", "data", d);
}

static void handle_send(cg__emu *e, cg__http_req *req,
                        const cg__http_request *r, json_t *b,
                        const char *parent) {
  const char *route = parent ? "POST /open-apis/im/v1/messages/:id/reply"
                             : "POST /open-apis/im/v1/messages";
  char rtype[32] = "";
  if (!parent && !query_get(r, "receive_id_type", rtype, sizeof(rtype))) {
    answer(e, req, r, route, 400,
           json_pack("{s:i,s:s,s:{s:[{s:s,s:s}]}}", "code",
                     CODE_FIELD_VALIDATION, "msg", "field validation failed",
                     "error", "field_violations", "field", "receive_id_type",
                     "description", "receive_id_type is required"));
    return;
  }
  if (parent && !json_object_get(e->messages, parent)) {
    answer(e, req, r, route, 400, err_obj(CODE_IM_BAD_PARAM, "message not found"));
    return;
  }
  const char *rid = json_string_value(json_object_get(b, "receive_id"));
  const char *mt = json_string_value(json_object_get(b, "msg_type"));
  if ((!parent && !rid) || !mt || strcmp(mt, "interactive")) {
    answer(e, req, r, route, 400,
           err_obj(CODE_IM_BAD_PARAM,
                   "receive_id and msg_type \"interactive\" are required "
                   "(the emulator holds cards only)"));
    return;
  }
  const char *why;
  int code;
  json_t *card = content_card(b, &why, &code);
  if (!card) {
    answer(e, req, r, route, 400, err_obj(code, why));
    return;
  }
  char id[64];
  new_id(e, "om_emu_", id, sizeof(id));
  store_message(e, id, card, rid, rtype[0] ? rtype : NULL, parent);
  answer(e, req, r, route, 200,
         sent_answer(id, json_string_value(json_object_get(b, "content")),
                     parent));
}

static void handle_patch(cg__emu *e, cg__http_req *req,
                         const cg__http_request *r, json_t *b, const char *id) {
  const char *route = "PATCH /open-apis/im/v1/messages/:id";
  json_t *m = json_object_get(e->messages, id);
  if (!m) {
    answer(e, req, r, route, 400, err_obj(CODE_IM_BAD_PARAM, "message not found"));
    return;
  }
  const char *why;
  int code;
  json_t *card = content_card(b, &why, &code);
  if (!card) {
    answer(e, req, r, route, 400, err_obj(code, why));
    return;
  }
  /* lark.md §4.4: update_multi declared before and after. */
  if (!card_is_shared(card) || !card_is_shared(json_object_get(m, "card"))) {
    json_decref(card);
    answer(e, req, r, route, 400,
           err_obj(CODE_IM_BAD_PARAM,
                   "only shared cards can be updated: config.update_multi "
                   "must be true in the sent card and in the new one"));
    return;
  }
  replace_card(e, id, card, "patch");
  answer(e, req, r, route, 200,
         json_pack("{s:i,s:s,s:{}}", "code", 0, "msg", "success", "data"));
}

/* --------------------------------------------------- card/update */

static void handle_card_update(cg__emu *e, cg__http_req *req,
                               const cg__http_request *r, json_t *b) {
  const char *route = "POST /open-apis/interactive/v1/card/update";
  const char *tok = json_string_value(json_object_get(b, "token"));
  json_t *card = json_object_get(b, "card");
  if (!tok || !json_is_object(card)) {
    answer(e, req, r, route, 400,
           err_obj(CODE_CARD_BAD_PARAM,
                   "token (string) and card (object) are required"));
    return;
  }
  char *dumped = json_dumps(card, JSON_COMPACT);
  size_t clen = dumped ? strlen(dumped) : 0;
  free(dumped);
  if (clen > CARD_MAX_BYTES) {
    answer(e, req, r, route, 400, err_obj(CODE_CARD_BAD_PARAM, "card exceeds 30 KB"));
    return;
  }
  json_t *t = json_object_get(e->card_tokens, tok);
  cg__emu_card_token ct = {0};
  if (t) {
    ct.known = 1;
    ct.answered = json_is_true(json_object_get(t, "answered"));
    ct.issued_ms = (int64_t)json_integer_value(json_object_get(t, "issued_ms"));
    ct.uses = (int)json_integer_value(json_object_get(t, "uses"));
  }
  int64_t now = cg_now_ms();
  cg__emu_token_verdict v = cg__emu_check_card_token(
      &ct, now, e->card_token_ttl_s, e->card_token_max_uses);
  int code = cg__emu_verdict_code(v);
  json_t *rec;
  if (v != CG__EMU_TOKEN_OK) {
    rec = answer(e, req, r, route, 400, err_obj(code, verdict_msg(v)));
  } else {
    const char *mid = json_string_value(json_object_get(t, "message_id"));
    json_object_set_new(t, "uses", json_integer(ct.uses + 1));
    replace_card(e, mid, json_deep_copy(card), "card/update");
    rec = answer(e, req, r, route, 200,
                 json_pack("{s:i,s:s}", "code", 0, "msg", "success"));
  }
  if (rec) {
    json_object_set_new(rec, "verdict", json_string(cg__emu_verdict_name(v)));
    json_object_set_new(rec, "early", json_boolean(v == CG__EMU_TOKEN_EARLY));
    json_object_set_new(rec, "accepted", json_boolean(v == CG__EMU_TOKEN_OK));
    json_object_set_new(rec, "token", json_string(tok));
    if (t) json_object_set(rec, "message_id", json_object_get(t, "message_id"));
  }
  if (v == CG__EMU_TOKEN_EARLY)
    json_array_append_new(
        e->early, json_pack("{s:I,s:s,s:O}", "t_ms", (json_int_t)now, "token",
                            tok, "message_id", json_object_get(t, "message_id")));
}

/* ------------------------------------------------------------ Open API */

static void handle_api(cg__emu *e, cg__http_req *req, const cg__http_request *r) {
  char path[CG_LIMIT_URL + 1];
  size_t pl = r->path_len < CG_LIMIT_URL ? r->path_len : CG_LIMIT_URL;
  memcpy(path, r->path, pl);
  path[pl] = '\0';
  static const char msgs[] = "/open-apis/im/v1/messages/";
  char route[CG_LIMIT_URL + 16];
  cg_fmt(route, sizeof(route), "%s %.*s", r->method, (int)r->path_len,
         r->path);
  if (apply_fault(e, 0, req, r, route)) return;
  if (!authorized(e, r)) {
    /* lark.md §4.6/§9.6: missing, unknown, expired or revoked. */
    answer(e, req, r, route, 400,
           err_obj(CODE_TOKEN_INVALID,
                   "Invalid access token for authorization. Please make a "
                   "request with token attached."));
    return;
  }
  const char *tenant_of = token_tenant(e, r);
  size_t ncalls = json_array_size(e->calls);
  json_t *b = json_loadb(r->body, r->body_len, 0, NULL);
  if (method_is(r, "POST") && !strcmp(path, "/open-apis/im/v1/messages")) {
    handle_send(e, req, r, b, NULL);
  } else if (method_is(r, "POST") &&
             !strcmp(path, "/open-apis/interactive/v1/card/update")) {
    handle_card_update(e, req, r, b);
  } else if (!strncmp(path, msgs, sizeof(msgs) - 1) &&
             path[sizeof(msgs) - 1]) {
    char id[CG_LIMIT_URL + 1];
    cg_strlcpy(id, path + sizeof(msgs) - 1, sizeof(id));
    char *slash = strchr(id, '/');
    if (slash && !strcmp(slash, "/reply") && method_is(r, "POST")) {
      *slash = '\0';
      handle_send(e, req, r, b, id);
    } else if (!slash && method_is(r, "PATCH")) {
      handle_patch(e, req, r, b, id);
    } else {
      answer(e, req, r, route, 404, err_obj(404, "not found (not emulated)"));
    }
  } else {
    answer(e, req, r, route, 404, err_obj(404, "not found (not emulated)"));
  }
  json_decref(b);
  /* Which tenant's token the call carried (store apps; GET /emulator/state). */
  json_t *rec = json_array_get(e->calls, json_array_size(e->calls) - 1);
  if (tenant_of && rec && json_array_size(e->calls) != ncalls)
    json_object_set_new(rec, "tenant_key", json_string(tenant_of));
}

/* ------------------------------------------------------------ clicks */

static json_t *click_body(cg__emu *e, const char *mid, const char *token,
                          json_t *value, const char *op, const char *tag,
                          int v2, const char *tk) {
  if (!v2)
    /* lark.md §1.1 (key order as the Go sample body). */
    return json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:{s:O,s:s}}", "open_id", op,
                     "user_id", "emu_user", "open_message_id", mid,
                     "open_chat_id", "oc_emulator_chat", "tenant_key",
                     tk, "token", token, "action", "value", value,
                     "tag", tag);
  char evid[64], ct[32];
  new_id(e, "ev_emu_", evid, sizeof(evid));
  cg_fmt(ct, sizeof(ct), "%lld", (long long)cg_now_ms());
  /* lark.md §2.1 */
  return json_pack(
      "{s:s,s:{s:s,s:s,s:s,s:s,s:s,s:s},s:{s:{s:s,s:s,s:s},s:s,s:{s:O,s:s},"
      "s:s,s:{s:s,s:s}}}",
      "schema", "2.0", "header", "event_id", evid, "event_type",
      "card.action.trigger", "create_time", ct, "token",
      e->vtoken ? e->vtoken : "", "app_id", e->app_id, "tenant_key",
      tk, "event", "operator", "tenant_key", tk, "user_id",
      "emu_user", "open_id", op, "token", token, "action", "value", value,
      "tag", tag, "host", "im_message", "context", "open_message_id", mid,
      "open_chat_id", "oc_emulator_chat");
}

static void maybe_finish_close(cg__emu *e);

static void on_click_done(int rc, const cg__https_resp *resp, void *ud) {
  click *k = ud;
  cg__emu *e = k->e;
  json_t *rec = k->record;
  json_object_set_new(rec, "answered_ms", json_integer(cg_now_ms()));
  if (rc) {
    json_object_set_new(rec, "error", json_string(cg_err_name(rc)));
    json_object_set_new(rec, "detail", json_string(resp->detail));
  } else {
    json_object_set_new(rec, "status", json_integer(resp->status));
    json_t *ans = json_loadb(resp->body, resp->body_len, 0, NULL);
    /* The callback counts as answered (and its token becomes usable) only
     * for an answer Lark accepts: 200, or a legacy callback's 400 toast
     * ({"content":…}, lark.md §1.4) — not for an error status. */
    int accepted = resp->status == 200 ||
                   (!k->v2 && resp->status == 400 && json_is_string(json_object_get(ans, "content")));
    json_t *tok = json_object_get(e->card_tokens, k->token);
    if (tok && accepted) json_object_set_new(tok, "answered", json_true());
    json_object_set_new(rec, "answer",
                        ans ? json_incref(ans) : json_string(resp->body));
    json_t *card = NULL;
    if (resp->status == 200 && ans) {
      if (k->v2) {
        json_t *c = json_object_get(ans, "card");
        const char *ty = json_string_value(json_object_get(c, "type"));
        if (ty && !strcmp(ty, "raw") && json_is_object(json_object_get(c, "data")))
          card = json_deep_copy(json_object_get(c, "data"));
      } else if (looks_like_card(ans)) {
        card = json_deep_copy(ans);
      }
    }
    json_object_set_new(rec, "card_replaced", json_boolean(card != NULL));
    if (card) replace_card(e, k->message_id, card, "callback answer");
    json_decref(ans);
  }
  emu_log(e, CG_LOG_INFO, "click on %s answered: %s", k->message_id,
          rc ? cg_err_name(rc) : "HTTP response");
  if (k->req) reply_json(k->req, 200, json_deep_copy(rec));
  json_decref(rec);
  free(k);
  e->clicks--;
  maybe_finish_close(e);
}

static void handle_click(cg__emu *e, cg__http_req *req, json_t *b) {
  const char *mid = json_string_value(json_object_get(b, "message_id"));
  const char *fmt = json_string_value(json_object_get(b, "format"));
  const char *op = json_string_value(json_object_get(b, "operator"));
  const char *tag = json_string_value(json_object_get(b, "tag"));
  const char *url = json_string_value(json_object_get(b, "url"));
  const char *tk = json_string_value(json_object_get(b, "tenant_key"));
  json_t *value = json_object_get(b, "value");
  if (!mid) {
    reply_json(req, 400, err_obj(400, "message_id is required"));
    return;
  }
  if (!json_object_get(e->messages, mid)) {
    reply_json(req, 404, err_obj(404, "the emulator holds no such message"));
    return;
  }
  int v2 = fmt && (!strcmp(fmt, "v2") || !strcmp(fmt, "2.0"));
  if (fmt && !v2 && strcmp(fmt, "legacy")) {
    reply_json(req, 400, err_obj(400, "format must be legacy or v2"));
    return;
  }
  char full[CG_LIMIT_URL + 64];
  if (!url) {
    if (!e->app_url) {
      reply_json(req, 400, err_obj(400, "no app URL configured (--app-url, "
                                        "or \"url\" in the click)"));
      return;
    }
    size_t n = strlen(e->app_url);
    int slash = n && e->app_url[n - 1] == '/';
    cg_fmt(full, sizeof(full), "%.*s%s", (int)(n - (size_t)slash), e->app_url,
           v2 ? e->event_path : e->card_path);
    url = full;
  }
  click *k = calloc(1, sizeof(*k));
  if (!k) {
    reply_json(req, 500, err_obj(500, "out of memory"));
    return;
  }
  k->e = e;
  k->v2 = v2;
  cg_strlcpy(k->message_id, mid, sizeof(k->message_id));
  new_id(e, "c-emu-", k->token, sizeof(k->token));
  json_t *val = value ? json_incref(value) : json_object();
  json_t *body = click_body(e, mid, k->token, val, op ? op : "ou_emulator_user",
                            tag ? tag : "button", v2,
                            tk && *tk ? tk : "emu_tenant");
  json_decref(val);
  char *plain = body ? json_dumps(body, JSON_COMPACT) : NULL;
  json_decref(body);
  char *wire = NULL;
  if (plain && e->ekey) {
    char *enc = NULL;
    if (cg_lark_encrypt(e->ekey, plain, strlen(plain), NULL, &enc) == 0) {
      json_t *w = json_pack("{s:s}", "encrypt", enc);
      wire = json_dumps(w, JSON_COMPACT);
      json_decref(w);
      free(enc);
    }
  } else if (plain) {
    wire = cg_strdup(plain);
  }
  if (!wire) {
    free(plain);
    free(k);
    reply_json(req, 500, err_obj(500, "could not build the callback"));
    return;
  }
  /* lark.md §0.4: legacy SHA-1 + verification token, v2 SHA-256 + encrypt
   * key, over the raw body as sent. */
  char ts[24], nonce[40], sig[80] = "";
  cg_fmt(ts, sizeof(ts), "%lld", (long long)(cg_now_ms() / 1000));
  new_id(e, "n", nonce, sizeof(nonce));
  if (!v2 && e->vtoken)
    cg_lark_sign_legacy(ts, nonce, e->vtoken, wire, strlen(wire), sig);
  else if (e->ekey)
    cg_lark_sign_event(ts, nonce, e->ekey, wire, strlen(wire), sig);
  char h_ts[64], h_nonce[80], h_sig[120];
  cg_fmt(h_ts, sizeof(h_ts), "X-Lark-Request-Timestamp: %s", ts);
  cg_fmt(h_nonce, sizeof(h_nonce), "X-Lark-Request-Nonce: %s", nonce);
  cg_fmt(h_sig, sizeof(h_sig), "X-Lark-Signature: %s", sig);
  const char *headers[] = {"Content-Type: application/json; charset=utf-8",
                           h_ts, h_nonce, sig[0] ? h_sig : NULL, NULL};
  int64_t now = cg_now_ms();
  json_object_set_new(e->card_tokens, k->token,
                      json_pack("{s:s,s:I,s:b,s:i}", "message_id", mid,
                                "issued_ms", (json_int_t)now, "answered", 0,
                                "uses", 0));
  json_t *plain_j = json_loads(plain, 0, NULL);
  k->record = json_pack("{s:i,s:s,s:s,s:s,s:s,s:I,s:o,s:b}", "id",
                        (int)json_array_size(e->callbacks) + 1, "message_id",
                        mid, "format", v2 ? "v2" : "legacy", "token", k->token,
                        "url", url, "sent_ms", (json_int_t)now, "body",
                        plain_j ? plain_j : json_null(), "encrypted",
                        e->ekey != NULL);
  free(plain);
  json_array_append(e->callbacks, k->record);
  cg__https_req hr = {.method = "POST",
                      .url = url,
                      .headers = headers,
                      .body = wire,
                      .body_len = strlen(wire),
                      .timeout_ms = CLICK_TIMEOUT_MS};
  k->req = req;
  int rc = cg__https_request(e->https, &hr, on_click_done, k);
  free(wire);
  if (rc) {
    json_object_set_new(k->record, "error", json_string(cg_err_name(rc)));
    reply_json(req, 502, json_deep_copy(k->record));
    json_decref(k->record);
    free(k);
    return;
  }
  e->clicks++;
}

/* ------------------------------------------------------------ control */

static json_t *config_json(cg__emu *e) {
  return json_pack("{s:s,s:s?,s:s,s:s,s:i,s:i,s:i,s:b,s:b,s:b,s:i}", "app_id",
                   e->app_id, "app_url", e->app_url, "card_path", e->card_path,
                   "event_path", e->event_path, "token_expire_s",
                   e->token_expire_s, "card_token_ttl_s", e->card_token_ttl_s,
                   "card_token_max_uses", e->card_token_max_uses,
                   "verification_token_set", e->vtoken != NULL,
                   "encrypt_key_set", e->ekey != NULL, "store_app",
                   e->store_app, "ws_port", cg__emu_ws_port(e));
}

static json_t *fault_json(const fault *f) {
  if (!f->mode[0]) return json_null();
  return json_pack("{s:s,s:i,s:i,s:i}", "mode", f->mode, "count", f->count,
                   "seconds", f->seconds, "reset", f->reset);
}

static void clear_state(cg__emu *e) {
  json_object_clear(e->messages);
  json_object_clear(e->card_tokens);
  json_object_clear(e->access);
  json_array_clear(e->callbacks);
  json_array_clear(e->calls);
  json_array_clear(e->early);
  json_array_clear(e->pushes);
  e->cur_tenant[0] = e->cur_app[0] = e->cur_ticket[0] = '\0';
  memset(e->faults, 0, sizeof(e->faults));
}

static void handle_control(cg__emu *e, cg__http_req *req,
                           const cg__http_request *r) {
  json_t *b = json_loadb(r->body, r->body_len, 0, NULL);
  if (path_eq(r, "/emulator/state") && method_is(r, "GET")) {
    reply_json(req, 200,
               json_pack("{s:o,s:O,s:O,s:O,s:O,s:O,s:O,s:{s:o,s:o},s:O,"
                         "s:o,s:o}",
                         "config", config_json(e), "messages", e->messages,
                         "callbacks", e->callbacks, "calls", e->calls,
                         "early_updates", e->early, "card_tokens",
                         e->card_tokens, "access_tokens", e->access, "faults",
                         "api", fault_json(&e->faults[0]), "token",
                         fault_json(&e->faults[1]), "app_ticket_pushes",
                         e->pushes, "lark_ws",
                         cg__emu_lark_gw_state(e->lark_gw), "dingtalk",
                         cg__emu_dt_gw_state(e->dt_gw)));
  } else if (path_eq(r, "/emulator/click") && method_is(r, "POST")) {
    if (!json_is_object(b))
      reply_json(req, 400, err_obj(400, "body must be a JSON object"));
    else
      handle_click(e, req, b);
  } else if (path_eq(r, "/emulator/fault") && method_is(r, "POST")) {
    const char *on = json_string_value(json_object_get(b, "on"));
    json_t *jm = json_object_get(b, "mode");
    char mode[16] = "";
    if (json_is_integer(jm))
      cg_fmt(mode, sizeof(mode), "%lld", (long long)json_integer_value(jm));
    else if (json_is_string(jm))
      cg_strlcpy(mode, json_string_value(jm), sizeof(mode));
    if (!strcmp(mode, "revoke")) {
      revoke_all(e);
      reply_json(req, 200, json_pack("{s:b,s:s}", "ok", 1, "revoked", "all"));
    } else if (!on || (strcmp(on, "api") && strcmp(on, "token")) ||
               (strcmp(mode, "500") && strcmp(mode, "html") &&
                strcmp(mode, "timeout") && strcmp(mode, "429") &&
                strcmp(mode, "none"))) {
      reply_json(req, 400,
                 err_obj(400, "want {on: api|token, mode: 500|html|timeout|"
                              "429|revoke|none, count, seconds, reset}"));
    } else {
      fault *f = &e->faults[strcmp(on, "api") ? 1 : 0];
      memset(f, 0, sizeof(*f));
      if (strcmp(mode, "none")) {
        json_t *jc = json_object_get(b, "count");
        json_t *js = json_object_get(b, "seconds");
        json_t *jr = json_object_get(b, "reset");
        cg_strlcpy(f->mode, mode, sizeof(f->mode));
        f->count = jc ? (int)json_integer_value(jc) : 1;
        f->seconds = js ? (int)json_integer_value(js) : 15;
        f->reset = jr ? (int)json_integer_value(jr) : 1;
        if (f->count <= 0) memset(f, 0, sizeof(*f));
      }
      reply_json(req, 200, json_pack("{s:b,s:o}", "ok", 1, "fault", fault_json(f)));
    }
  } else if (path_eq(r, "/emulator/config") && method_is(r, "POST")) {
    json_t *v;
    if ((v = json_object_get(b, "token_expire_s")) && json_integer_value(v) > 0)
      e->token_expire_s = (int)json_integer_value(v);
    if ((v = json_object_get(b, "card_token_ttl_s")) && json_integer_value(v) > 0)
      e->card_token_ttl_s = (int)json_integer_value(v);
    if ((v = json_object_get(b, "card_token_max_uses")) &&
        json_integer_value(v) > 0)
      e->card_token_max_uses = (int)json_integer_value(v);
    if ((v = json_object_get(b, "app_url")) && json_is_string(v)) {
      char *u = cg_strdup(json_string_value(v));
      if (u) {
        free(e->app_url);
        e->app_url = u;
      }
    }
    reply_json(req, 200, config_json(e));
  } else if (path_eq(r, "/emulator/app_ticket") && method_is(r, "POST")) {
    int rc = e->store_app ? push_ticket(e, req, 1) : CG_EUNSUPPORTED;
    if (rc)
      reply_json(req, 400,
                 err_obj(400, rc == CG_EUNSUPPORTED
                                  ? "not a store app emulator (--store-app)"
                                  : "could not push an app_ticket (is the app "
                                    "URL set?)"));
  } else if (path_eq(r, "/emulator/reset") && method_is(r, "POST")) {
    clear_state(e);
    cg__emu_lark_gw_reset(e->lark_gw);
    cg__emu_dt_gw_reset(e->dt_gw);
    e->token_expire_s = e->init.token_expire_s;
    e->card_token_ttl_s = e->init.card_token_ttl_s;
    e->card_token_max_uses = e->init.card_token_max_uses;
    reply_json(req, 200, json_pack("{s:b}", "ok", 1));
  } else {
    reply_json(req, 404,
               err_obj(404, "emulator control: GET /emulator/state, POST "
                            "/emulator/click|fault|config|reset|app_ticket"));
  }
  json_decref(b);
}

static void on_request(cg__http_req *req, const cg__http_request *r, void *ud) {
  cg__emu *e = ud;
  if (cg__emu_lark_gw_http(e->lark_gw, req, r) ||
      cg__emu_dt_gw_http(e->dt_gw, req, r))
    return;
  static const char tenant[] = "/open-apis/auth/v3/tenant_access_token/internal";
  static const char app[] = "/open-apis/auth/v3/app_access_token/internal";
  if (r->path_len >= 10 && !memcmp(r->path, "/emulator/", 10))
    handle_control(e, req, r);
  else if (path_eq(r, tenant))
    handle_token(e, req, r, 0);
  else if (path_eq(r, app))
    handle_token(e, req, r, 1);
  else if (e->store_app && method_is(r, "POST") &&
           path_eq(r, "/open-apis/auth/v3/app_access_token"))
    handle_store_app_token(e, req, r);
  else if (e->store_app && method_is(r, "POST") &&
           path_eq(r, "/open-apis/auth/v3/tenant_access_token"))
    handle_store_tenant_token(e, req, r);
  else if (e->store_app && method_is(r, "POST") &&
           path_eq(r, "/open-apis/auth/v3/app_ticket/resend"))
    handle_ticket_resend(e, req, r);
  else if (r->path_len >= 11 && !memcmp(r->path, "/open-apis/", 11))
    handle_api(e, req, r);
  else if (path_eq(r, "/healthz"))
    reply_json(req, 200, json_pack("{s:s}", "status", "ok"));
  else
    reply_json(req, 404, err_obj(404, "not found: the emulator serves "
                                      "/open-apis/… and /emulator/…"));
}

/* ------------------------------------------------------------ lifetime */

static void emu_free(cg__emu *e) {
  free(e->host);
  free(e->app_id);
  free(e->app_secret);
  free(e->vtoken);
  free(e->ekey);
  free(e->app_url);
  free(e->card_path);
  free(e->event_path);
  json_decref(e->messages);
  json_decref(e->card_tokens);
  json_decref(e->access);
  json_decref(e->callbacks);
  json_decref(e->calls);
  json_decref(e->early);
  json_decref(e->pushes);
  free(e);
}

static char *dup_or_null(const char *s) {
  return cg_str_empty(s) ? NULL : cg_strdup(s);
}

cg__emu *cg__emu_new(uv_loop_t *loop, const cg__emu_options *o, int *err) {
  cg__emu_options d;
  cg__emu_options_init(&d);
  int rc = CG_EINVAL;
  if (!loop || !o) goto fail0;
  rc = CG_ENOMEM;
  cg__emu *e = calloc(1, sizeof(*e));
  if (!e) goto fail0;
  e->loop = loop;
  e->host = cg_strdup(cg_str_empty(o->host) ? d.host : o->host);
  e->app_id = cg_strdup(cg_str_empty(o->app_id) ? d.app_id : o->app_id);
  e->app_secret =
      cg_strdup(cg_str_empty(o->app_secret) ? d.app_secret : o->app_secret);
  e->vtoken = dup_or_null(o->verification_token);
  e->ekey = dup_or_null(o->encrypt_key);
  e->app_url = dup_or_null(o->app_url);
  e->card_path = cg_strdup(cg_str_empty(o->card_path) ? d.card_path : o->card_path);
  e->event_path =
      cg_strdup(cg_str_empty(o->event_path) ? d.event_path : o->event_path);
  e->token_expire_s = o->token_expire_s > 0 ? o->token_expire_s : d.token_expire_s;
  e->card_token_ttl_s =
      o->card_token_ttl_s > 0 ? o->card_token_ttl_s : d.card_token_ttl_s;
  e->card_token_max_uses =
      o->card_token_max_uses > 0 ? o->card_token_max_uses : d.card_token_max_uses;
  e->init = *o;
  e->init.token_expire_s = e->token_expire_s;
  e->init.card_token_ttl_s = e->card_token_ttl_s;
  e->init.card_token_max_uses = e->card_token_max_uses;
  e->log = o->log;
  e->log_ud = o->log_ud;
  e->messages = json_object();
  e->card_tokens = json_object();
  e->access = json_object();
  e->callbacks = json_array();
  e->calls = json_array();
  e->early = json_array();
  e->pushes = json_array();
  e->store_app = o->store_app;
  if (!e->pushes || !e->host || !e->app_id || !e->app_secret || !e->card_path ||
      !e->event_path || !e->messages || !e->card_tokens || !e->access ||
      !e->callbacks || !e->calls || !e->early ||
      (o->verification_token && *o->verification_token && !e->vtoken) ||
      (o->encrypt_key && *o->encrypt_key && !e->ekey) ||
      (o->app_url && *o->app_url && !e->app_url))
    goto fail;
  cg_server_options so;
  cg_server_options_init(&so);
  so.host = e->host;
  so.port = o->port;
  e->srv = cg__server_new_handler(loop, &so, on_request, e, o->log, o->log_ud,
                                  &rc);
  if (!e->srv) goto fail;
  e->https = cg__https_new(loop, &rc);
  if (!e->https) {
    cg_server_close(e->srv, NULL, NULL);
    goto fail;
  }
  e->ws_port_opt = o->ws_port;
  cg__emu_dt_options dto = {o->dingtalk_client_id, o->dingtalk_client_secret};
  e->lark_gw = cg__emu_lark_gw_new(e);
  e->dt_gw = cg__emu_dt_gw_new(e, &dto);
  cg_assert(e->lark_gw && e->dt_gw); /* out of memory at startup */
  e->gw_open = 3;
  if (err) *err = 0;
  return e;
fail:
  emu_free(e);
fail0:
  if (err) *err = rc;
  return NULL;
}

/* Routes an upgrade by path: Lark /ws/v2, DingTalk /connect. */
static int on_ws_accept(cg__ws_server *s, const cg__ws_request *req,
                        cg__ws_callbacks *cbs, void **conn_ud,
                        char *refuse_headers, char *refuse_body, void *ud) {
  (void)s;
  cg__emu *e = ud;
  if (!strcmp(req->path, "/ws/v2"))
    return cg__emu_lark_gw_accept(e->lark_gw, req, cbs, conn_ud,
                                  refuse_headers, refuse_body);
  if (!strcmp(req->path, "/connect"))
    return cg__emu_dt_gw_accept(e->dt_gw, req, cbs, conn_ud, refuse_headers,
                                refuse_body);
  cg_strlcpy(refuse_body, "{\"code\":404,\"msg\":\"not found: /ws/v2 or /connect\"}", 1024);
  return 404;
}

int cg__emu_listen(cg__emu *e) {
  if (!e) return CG_EINVAL;
  int rc = cg_server_listen(e->srv);
  if (rc || e->ws) return rc;
  cg__ws_server_options wo = {.host = e->host, .port = e->ws_port_opt};
  return cg__ws_server_new(e->loop, &wo, on_ws_accept, e, &e->ws);
}

int cg__emu_ws_port(const cg__emu *e) {
  return e && e->ws ? cg__ws_server_port(e->ws) : 0;
}

/* ---- services for the gateways (gateway_int.h) ---- */

uv_loop_t *cg__emu_loop(cg__emu *e) { return e->loop; }
const char *cg__emu_app_id(const cg__emu *e) { return e->app_id; }
const char *cg__emu_app_secret(const cg__emu *e) { return e->app_secret; }
const char *cg__emu_host(const cg__emu *e) { return e->host; }
void cg__emu_reply(cg__http_req *req, int status, json_t *obj) {
  reply_json(req, status, obj);
}
void cg__emu_new_id(cg__emu *e, const char *prefix, char *out, size_t cap) {
  new_id(e, prefix, out, cap);
}

json_t *cg__emu_v2_click(cg__emu *e, const char *message_id, json_t *value,
                         const char *op, const char *tenant, char *token,
                         size_t cap) {
  new_id(e, "c-emu-", token, cap);
  json_object_set_new(e->card_tokens, token,
                      json_pack("{s:s,s:I,s:b,s:i}", "message_id", message_id,
                                "issued_ms", (json_int_t)cg_now_ms(),
                                "answered", 0, "uses", 0));
  json_t *val = value ? json_incref(value) : json_object();
  json_t *body = click_body(e, message_id, token, val,
                            op ? op : "ou_emulator_user", "button", 1,
                            tenant && *tenant ? tenant : "emu_tenant");
  json_decref(val);
  return body;
}

void cg__emu_token_answered(cg__emu *e, const char *token) {
  json_t *t = json_object_get(e->card_tokens, token);
  if (t) json_object_set_new(t, "answered", json_true());
}

int cg__emu_replace_card(cg__emu *e, const char *message_id, json_t *card,
                         const char *how) {
  int held_msg = json_object_get(e->messages, message_id) != NULL;
  replace_card(e, message_id, card, how);
  return held_msg;
}

void cg__emu_logf(cg__emu *e, cg_log_level lv, const char *fmt, ...) {
  if (!e->log) return;
  char line[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof(line), fmt, ap);
  va_end(ap);
  e->log(lv, "emulator", line, e->log_ud);
}

char *cg__emu_hex(const void *p, size_t n) {
  static const char digits[] = "0123456789abcdef";
  char *s = malloc(n * 2 + 1);
  if (!s) return NULL;
  const unsigned char *b = p;
  for (size_t i = 0; i < n; i++) {
    s[2 * i] = digits[b[i] >> 4];
    s[2 * i + 1] = digits[b[i] & 15];
  }
  s[2 * n] = '\0';
  return s;
}

uint64_t cg__emu_rand64(void) {
  static uint64_t x;
  if (!x) x = (uint64_t)cg_now_ms() ^ (cg_mono_ms() << 21) ^ 0x9e3779b97f4a7c15ull;
  x ^= x << 13; /* xorshift64 */
  x ^= x >> 7;
  x ^= x << 17;
  return x;
}

int cg__emu_port(const cg__emu *e) {
  return e ? cg_server_port(e->srv) : 0;
}

static void on_server_closed(void *ud) {
  cg__emu *e = ud;
  void (*cb)(void *) = e->close_cb;
  void *cud = e->close_ud;
  emu_free(e);
  if (cb) cb(cud);
}

static void on_https_closed(void *ud) {
  cg__emu *e = ud;
  e->https = NULL;
  maybe_finish_close(e);
}

static void on_gw_closed(void *ud) {
  cg__emu *e = ud;
  e->gw_open--;
  maybe_finish_close(e);
}

static void on_ws_closed(void *ud) {
  cg__emu *e = ud;
  e->ws = NULL;
  e->gw_open--;
  cg__emu_lark_gw_close(e->lark_gw, on_gw_closed, e);
  cg__emu_dt_gw_close(e->dt_gw, on_gw_closed, e);
}

static void maybe_finish_close(cg__emu *e) {
  if (!e->closing || e->https || e->clicks || e->gw_open || !e->srv) return;
  cg_server *s = e->srv;
  e->srv = NULL;
  cg_server_close(s, on_server_closed, e);
}

void cg__emu_close(cg__emu *e, void (*cb)(void *ud), void *ud) {
  if (!e) return;
  cg_assert(!e->closing);
  e->closing = 1;
  e->close_cb = cb;
  e->close_ud = ud;
  while (e->held) {
    held *h = e->held;
    held_unlink(h);
    uv_timer_stop(&h->timer);
    reply_json(h->req, 503, err_obj(503, "emulator closing"));
    uv_close((uv_handle_t *)&h->timer, held_close_cb);
  }
  /* The ws server first (its connections end), then the gateways. */
  if (e->ws)
    cg__ws_server_close(e->ws, on_ws_closed, e);
  else
    on_ws_closed(e);
  /* Cancels clicks in flight (their callbacks answer their requests), then
   * closes the server, which waits for every answered request. */
  cg__https_close(e->https, on_https_closed, e);
}
