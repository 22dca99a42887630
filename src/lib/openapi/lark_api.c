/* Lark / Feishu Open API client: tenant token cache, card calls, result
 * classification. Facts: ../shared/protocols/lark.md §4, §9.
 *
 * Every call is an op. An op needs the tenant token: when the cached one is
 * fresh the op is sent at once; otherwise it joins the waiters and, if no
 * fetch is in flight, starts one (single flight: however many ops wait, one
 * token request is sent and its answer serves them all). A token-invalid
 * answer (99991663/4/71) evicts the token the op used — unless another op
 * already replaced it — and puts the op through the same path once more.
 *
 * Closing closes the HTTPS client, which cancels every request in flight;
 * ops waiting for the token are finished by the cancelled token fetch, so
 * every op ends through one of the HTTPS callbacks.
 *
 * Store (marketplace) apps: one tenant entry per tenant key, each with its
 * token, its single-flight fetch and its waiters. An entry whose fetch
 * needs the app_access_token first is marked want_app; then an app token
 * fetch or an app_ticket resend is in flight, and its answer serves (or
 * fails) every want_app entry. Invariants: an entry with waiters is
 * fetching or want_app; some entry is want_app only while app_fetching or
 * resend_inflight. */
#include "lark_api.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../../common/common.h"
#include "../../common/limits.h"
#include "../net/https_client.h"
#include "cardgate/error.h"

#define TOKEN_PATH "/open-apis/auth/v3/tenant_access_token/internal"
/* Store apps (lark.md §4.2; go core/constants.go). */
#define STORE_APP_TOKEN_PATH "/open-apis/auth/v3/app_access_token"
#define STORE_TENANT_TOKEN_PATH "/open-apis/auth/v3/tenant_access_token"
#define TICKET_RESEND_PATH "/open-apis/auth/v3/app_ticket/resend"
#define DEFAULT_TIMEOUT_MS 10000u
/* Lark's message and card ids are short ("om_…", "c-…"); a longer argument
 * is a caller bug or hostile. */
#define ARG_MAX CG_LIMIT_ID
#define TOKEN_MAX 4096u /* the OAuth-style JWT tokens reach ~4 KB (§4.2) */

typedef struct op op;

struct op {
  cg__lark_api *api;
  op *next;           /* waiters queue */
  const char *method; /* static */
  char *path;         /* path + query */
  char *body;         /* NULL: no body */
  char *token_used;   /* token of the attempt in flight */
  char *tenant_key;   /* store apps: whose tenant token; else NULL */
  int attempts;
  int token_retried;
  cg__lark_cb cb;
  void *ud;
};

/* Store apps: one tenant's token (see the notes at the top). */
typedef struct tenant {
  struct tenant *next;
  char *key;
  char *token;
  uint64_t deadline;
  int fetching; /* tenant_access_token request in flight */
  int want_app; /* waiting for the app_access_token (or a ticket) */
  int serving;  /* its waiters are being served: not to be dropped */
  int settle;   /* serve_want_app is about to serve it */
  cg__lark_api *api;
  op *wait_head, *wait_tail;
} tenant;

struct cg__lark_api {
  uv_loop_t *loop;
  cg__https *https;
  char *base; /* no trailing '/' */
  char *app_id;
  char *app_secret;
  uint32_t timeout_ms;
  size_t max_resp;
  cg_log_fn log;
  void *log_ud;
  cg_log_level log_level;
  cg__lark_clock_fn clock;
  void *clock_ud;

  /* Token cache (lark.md §4.3). */
  char *token;
  uint64_t token_deadline; /* clock ms: unusable from here */
  uint64_t token_renew_at; /* clock ms: fetch a successor in the background */
  int fetching;
  op *wait_head, *wait_tail;

  /* Store apps. */
  cg__lark_app_type app_type;
  char *app_ticket;
  char *app_token;
  uint64_t app_deadline;
  int app_fetching;
  int resend_inflight;
  tenant *tenants;
  size_t ntenants;

  cg__lark_api_stats stats;
  int closing;
  void (*close_cb)(void *ud);
  void *close_ud;
};

/* ------------------------------------------------------------- helpers */

static void lark_log(const cg__lark_api *api, cg_log_level level,
                     const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void lark_log(const cg__lark_api *api, cg_log_level level,
                     const char *fmt, ...) {
  if (!api->log || level < api->log_level) return;
  char line[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof(line), fmt, ap);
  va_end(ap);
  api->log(level, "openapi", line, api->log_ud);
}

static uint64_t now_ms(const cg__lark_api *api) {
  return api->clock(api->clock_ud);
}


static int is_token_invalid(int64_t code) {
  return code == CG__LARK_CODE_TENANT_TOKEN_INVALID ||
         code == CG__LARK_CODE_APP_TOKEN_INVALID ||
         code == CG__LARK_CODE_ACCESS_TOKEN_INVALID;
}

/* x-ogw-ratelimit-reset: whole seconds until the window resets (lark.md
 * §4.6). Missing or unreadable: the default. */
static uint64_t retry_after_from(const char *reset) {
  return cg__api_seconds_ms(reset, CG__LARK_DEFAULT_RETRY_AFTER_MS, 1);
}

void cg__lark_classify(int err, int status, const char *body, size_t len,
                       const char *reset, cg__lark_result *out,
                       json_t **rootp) {
  memset(out, 0, sizeof(*out));
  if (rootp) *rootp = NULL;
  out->http_status = status;
  out->err = err;
  if (err == UV_ECANCELED) {
    out->cls = CG__API_CANCELLED;
    cg_strlcpy(out->msg, "cancelled: client closed", sizeof(out->msg));
    return;
  }
  if (err != 0) {
    /* An answer over the limit will be as big next time; a URL curl
     * refuses will be refused again. Everything else on the way (timeouts,
     * refused or reset connections, DNS, TLS, memory) can pass. */
    out->cls = err == CG_ETOOBIG || err == CG_EINVAL ? CG__API_PERMANENT
                                                     : CG__API_RETRYABLE;
    cg_strlcpy(out->msg, cg_strerror(err), sizeof(out->msg));
    return;
  }

  /* The body is parsed whatever the status: Lark puts {code,msg} on 4xx
   * answers too, and 99991663 arrives with 200 or 400 (lark.md §4.3). */
  json_t *root = body && len ? json_loadb(body, len, 0, NULL) : NULL;
  json_t *code = json_is_object(root) ? json_object_get(root, "code") : NULL;
  if (json_is_integer(code)) {
    out->has_code = 1;
    out->code = (int64_t)json_integer_value(code);
    json_t *msg = json_object_get(root, "msg");
    if (json_is_string(msg))
      cg_strlcpy(out->msg, json_string_value(msg), sizeof(out->msg));
  }
  int ok2xx = status >= 200 && status < 300;

  if ((out->has_code && (out->code == CG__LARK_CODE_RATE_LIMITED ||
                         out->code == CG__LARK_CODE_MSG_RATE_LIMITED)) ||
      status == 429) {
    /* 99991400 comes with 429 or, on many APIs, 400 (lark.md §9.2):
     * detected by code or 429, never by status 400 alone. */
    out->cls = CG__API_RATE_LIMITED;
    out->retry_after_ms = retry_after_from(reset);
  } else if (out->has_code && is_token_invalid(out->code)) {
    out->cls = CG__API_TOKEN_INVALID;
  } else if (status >= 500) {
    out->cls = CG__API_RETRYABLE; /* gateway pages, overload, 504 */
  } else if (ok2xx && out->has_code) {
    out->cls = out->code == 0 ? CG__API_OK : CG__API_PERMANENT;
  } else if (ok2xx) {
    /* A 2xx that is not a Lark envelope: a proxy or a cut answer. The call
     * may or may not have happened; sends carry a uuid so a retry is safe. */
    out->cls = CG__API_RETRYABLE;
    out->err = CG_EMALFORMED;
  } else if (status == 408) {
    out->cls = CG__API_RETRYABLE;
  } else {
    out->cls = CG__API_PERMANENT; /* other 1xx/3xx/4xx */
    if (!out->has_code) out->err = CG_EMALFORMED;
  }
  if (!out->msg[0]) {
    if (out->err == CG_EMALFORMED)
      cg_fmt(out->msg, sizeof(out->msg), "HTTP %d, not a Lark JSON answer",
             status);
    else
      cg_fmt(out->msg, sizeof(out->msg), "HTTP %d", status);
  }
  if (rootp)
    *rootp = root;
  else
    json_decref(root);
}

/* RFC 3986 unreserved characters pass; everything else is %XX. */
static int append_escaped(cg_buf *b, const char *s) {
  static const char hex[] = "0123456789ABCDEF";
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    int rc;
    if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
        (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' || *p == '.' ||
        *p == '~') {
      rc = cg_buf_append(b, p, 1);
    } else {
      char e[3] = {'%', hex[*p >> 4], hex[*p & 15]};
      rc = cg_buf_append(b, e, 3);
    }
    if (rc) return rc;
  }
  return 0;
}

static int arg_ok(const char *s) {
  return s && *s && strlen(s) <= ARG_MAX;
}

/* ----------------------------------------------------------------- ops */

static void wipe_free(char *s) {
  if (s) memset(s, 0, strlen(s));
  free(s);
}

static void op_free(op *o) {
  free(o->path);
  wipe_free(o->body); /* a delayed update's body holds the callback token */
  wipe_free(o->token_used);
  free(o->tenant_key);
  free(o);
}

static void op_log_result(op *o, const cg__lark_result *r) {
  cg__lark_api *api = o->api;
  cg_log_level lvl = cg__api_class_log_level(r->cls);
  /* Method, path (ids only: no tokens live in paths), code, msg, logid —
   * never the body, which holds card contents or the callback token. */
  char code[24] = "-";
  if (r->has_code) cg_fmt(code, sizeof(code), "%lld", (long long)r->code);
  lark_log(api, lvl,
           "%s %s: %s (http %d, code %s, %s%s%s) logid %s attempts %d",
           o->method, o->path, cg__api_class_name(r->cls), r->http_status,
           code, r->msg, r->err ? ", " : "", r->err ? cg_err_name(r->err) : "",
           r->logid[0] ? r->logid : "-", r->attempts);
}

/* Ends an op: one callback, then free. */
static void op_complete(op *o, cg__lark_result *r) {
  r->attempts = o->attempts;
  op_log_result(o, r);
  o->cb(r, o->ud);
  op_free(o);
}

static void op_fail(op *o, int err) {
  cg__lark_result r;
  memset(&r, 0, sizeof(r));
  r.err = err;
  r.cls = cg__api_local_failure(&r.err);
  cg_strlcpy(r.msg, cg_strerror(r.err), sizeof(r.msg));
  op_complete(o, &r);
}

/* x-ogw-ratelimit-reset (§4.6), else a numeric Retry-After (RFC 9110
 * §10.2.3; an HTTP-date there falls back to the default wait). */
static const char *reset_of(const cg__https_resp *resp) {
  return resp->ratelimit_reset[0] ? resp->ratelimit_reset : resp->retry_after;
}

static int op_start(op *o);
static tenant *tenant_find(cg__lark_api *api, const char *key);
static void on_call_done(int rc, const cg__https_resp *resp, void *ud);

static int send_attempt(op *o, const char *token) {
  cg__lark_api *api = o->api;
  cg_buf url, auth;
  cg_buf_init(&url, CG_LIMIT_URL + strlen(api->base));
  cg_buf_init(&auth, TOKEN_MAX + 32);
  int rc = cg_buf_appends(&url, api->base);
  if (!rc) rc = cg_buf_appends(&url, o->path);
  if (!rc) rc = cg_buf_appendf(&auth, "Authorization: Bearer %s", token);
  char *used = rc ? NULL : cg_strdup(token);
  if (!rc && !used) rc = CG_ENOMEM;
  if (!rc) {
    const char *headers[] = {auth.data,
                             "Content-Type: application/json; charset=utf-8",
                             "Accept: application/json", NULL};
    cg__https_req req;
    memset(&req, 0, sizeof(req));
    req.method = o->method;
    req.url = url.data;
    req.headers = headers;
    req.body = o->body;
    req.body_len = o->body ? strlen(o->body) : 0;
    req.timeout_ms = api->timeout_ms;
    req.max_response_bytes = api->max_resp;
    rc = cg__https_request(api->https, &req, on_call_done, o);
  }
  /* The header held the token: wipe it before freeing. */
  if (auth.data) memset(auth.data, 0, auth.cap);
  cg_buf_free(&auth);
  cg_buf_free(&url);
  if (rc) {
    wipe_free(used);
    return rc;
  }
  wipe_free(o->token_used);
  o->token_used = used;
  o->attempts++;
  api->stats.calls++;
  return 0;
}

static void on_call_done(int rc, const cg__https_resp *resp, void *ud) {
  op *o = ud;
  cg__lark_api *api = o->api;
  cg__lark_result r;
  json_t *root = NULL;
  cg__lark_classify(rc, resp->status, resp->body, resp->body_len,
                    reset_of(resp), &r, &root);
  cg_strlcpy(r.logid, resp->logid, sizeof(r.logid));
  if (rc && rc != UV_ECANCELED && resp->detail[0])
    cg_strlcpy(r.msg, resp->detail, sizeof(r.msg));

  if (r.cls == CG__API_TOKEN_INVALID && !o->token_retried && !api->closing) {
    /* lark.md §4.3/§9.6: evict, fetch a fresh token, retry once. The cache
     * is dropped only if it still holds the token that was refused. */
    json_decref(root);
    lark_log(api, CG_LOG_WARN,
             "%s %s: tenant token refused (code %lld, logid %s); evicting "
             "and retrying once",
             o->method, o->path, (long long)r.code, r.logid[0] ? r.logid : "-");
    if (api->app_type == CG__LARK_APP_STORE) {
      tenant *t = tenant_find(api, o->tenant_key);
      if (t && t->token && o->token_used && strcmp(t->token, o->token_used) == 0) {
        wipe_free(t->token);
        t->token = NULL;
        t->deadline = 0;
      }
    } else if (api->token && o->token_used &&
               strcmp(api->token, o->token_used) == 0) {
      cg__lark_api_evict_token(api);
    }
    o->token_retried = 1;
    api->stats.token_retries++;
    int src = op_start(o);
    if (src) op_fail(o, src);
    return;
  }
  json_t *data = json_object_get(root, "data");
  if (json_is_object(data)) {
    r.data = data;
    json_t *mid = json_object_get(data, "message_id");
    if (json_is_string(mid))
      cg_strlcpy(r.message_id, json_string_value(mid), sizeof(r.message_id));
  }
  op_complete(o, &r);
  json_decref(root);
}

/* -------------------------------------------------------- token cache */

static void on_token(int rc, const cg__https_resp *resp, void *ud);

static int start_fetch(cg__lark_api *api) {
  cg_buf url, body;
  cg_buf_init(&url, CG_LIMIT_URL + strlen(api->base));
  cg_buf_init(&body, 4096);
  int r = cg_buf_appends(&url, api->base);
  if (!r) r = cg_buf_appends(&url, TOKEN_PATH);
  if (!r) r = cg_buf_appends(&body, "{\"app_id\":");
  if (!r) r = cg_buf_append_json_str(&body, api->app_id, strlen(api->app_id));
  if (!r) r = cg_buf_appends(&body, ",\"app_secret\":");
  if (!r)
    r = cg_buf_append_json_str(&body, api->app_secret, strlen(api->app_secret));
  if (!r) r = cg_buf_appends(&body, "}");
  if (!r) {
    static const char *const headers[] = {
        "Content-Type: application/json; charset=utf-8",
        "Accept: application/json", NULL};
    cg__https_req req;
    memset(&req, 0, sizeof(req));
    req.method = "POST";
    req.url = url.data;
    req.headers = headers;
    req.body = body.data;
    req.body_len = body.len;
    req.timeout_ms = api->timeout_ms;
    req.max_response_bytes = api->max_resp;
    r = cg__https_request(api->https, &req, on_token, api);
  }
  if (body.data) memset(body.data, 0, body.cap); /* held the secret */
  cg_buf_free(&body);
  cg_buf_free(&url);
  if (r) return r;
  api->fetching = 1;
  api->stats.token_fetches++;
  lark_log(api, CG_LOG_DEBUG, "fetching tenant_access_token for app %s",
           api->app_id);
  return 0;
}

static void token_clear(cg__lark_api *api) {
  wipe_free(api->token);
  api->token = NULL;
  api->token_deadline = api->token_renew_at = 0;
}

void cg__lark_api_evict_token(cg__lark_api *api) {
  if (!api) return;
  token_clear(api);
  for (tenant *t = api->tenants; t; t = t->next) {
    wipe_free(t->token);
    t->token = NULL;
    t->deadline = 0;
  }
  wipe_free(api->app_token);
  api->app_token = NULL;
  api->app_deadline = 0;
}


/* Answers every op of the detached list w with one token answer r: sends
 * each with the token in *token (read again for each op: a callback before
 * it may have evicted it — then the op starts over), fails them all when
 * the client is closing, or completes them with r's failure. */
static void serve_waiters(cg__lark_api *api, op *w, const cg__lark_result *r,
                          char *const *token) {
  while (w) {
    op *o = w;
    w = w->next;
    o->next = NULL;
    if (api->closing) {
      op_fail(o, UV_ECANCELED);
    } else if (r->cls == CG__API_OK) {
      int src = *token ? send_attempt(o, *token) : op_start(o);
      if (src) op_fail(o, src);
    } else {
      cg__lark_result copy = *r; /* op_complete stamps attempts */
      op_complete(o, &copy);
    }
  }
}

static void on_token(int rc, const cg__https_resp *resp, void *ud) {
  cg__lark_api *api = ud;
  api->fetching = 0;
  cg__lark_result r;
  json_t *root = NULL;
  cg__lark_classify(rc, resp->status, resp->body, resp->body_len,
                    reset_of(resp), &r, &root);
  cg_strlcpy(r.logid, resp->logid, sizeof(r.logid));
  if (rc && rc != UV_ECANCELED && resp->detail[0])
    cg_strlcpy(r.msg, resp->detail, sizeof(r.msg));
  r.token_error = 1;

  if (r.cls == CG__API_OK) {
    /* {"code":0,"msg":"ok","tenant_access_token":"t-…","expire":7200},
     * top level, not under data (lark.md §4.1). */
    json_t *t = json_object_get(root, "tenant_access_token");
    json_t *e = json_object_get(root, "expire");
    const char *tok = json_is_string(t) ? json_string_value(t) : NULL;
    json_int_t expire = json_is_integer(e) ? json_integer_value(e) : 0;
    int usable = tok && *tok && strlen(tok) <= TOKEN_MAX && expire > 0 &&
                 !strpbrk(tok, "\r\n");
    char *copy = usable ? cg_strdup(tok) : NULL;
    if (copy) {
      token_clear(api);
      api->token = copy;
      uint64_t now = now_ms(api);
      uint64_t ex = expire > 86400 * 30 ? 86400u * 30 : (uint64_t)expire;
      /* TTL = expire − 180 s as in every SDK; a lifetime shorter than the
       * margin (a test server) is used for half its length instead. */
      uint64_t ttl_ms = ex > CG__LARK_TOKEN_MARGIN_S
                            ? (ex - CG__LARK_TOKEN_MARGIN_S) * 1000u
                            : ex * 500u;
      uint64_t renew_ms = ex > CG__LARK_TOKEN_RENEW_WINDOW_S
                              ? (ex - CG__LARK_TOKEN_RENEW_WINDOW_S) * 1000u
                              : ttl_ms / 2;
      if (renew_ms > ttl_ms) renew_ms = ttl_ms;
      api->token_deadline = now + ttl_ms;
      api->token_renew_at = now + renew_ms;
      lark_log(api, CG_LOG_DEBUG,
               "tenant_access_token for app %s: expires in %llu s", api->app_id,
               (unsigned long long)ex);
    } else {
      r.cls = CG__API_RETRYABLE;
      r.err = usable ? CG_ENOMEM : CG_EMALFORMED;
      cg_strlcpy(r.msg,
                 usable ? cg_strerror(CG_ENOMEM)
                        : "token answer without a usable tenant_access_token",
                 sizeof(r.msg));
    }
  }
  json_decref(root);

  if (r.cls != CG__API_OK) {
    api->stats.token_failures++;
    char code[24] = "-";
    if (r.has_code) cg_fmt(code, sizeof(code), "%lld", (long long)r.code);
    if (r.cls != CG__API_CANCELLED)
      lark_log(api, r.cls == CG__API_PERMANENT ? CG_LOG_ERROR : CG_LOG_WARN,
               "tenant_access_token for app %s: %s (http %d, code %s, %s) "
               "logid %s",
               api->app_id, cg__api_class_name(r.cls), r.http_status, code,
               r.msg, r.logid[0] ? r.logid : "-");
  }

  /* Serve every waiter from this one answer. The queue is detached first:
   * a callback may start new calls (which queue afresh) or close us. */
  op *w = api->wait_head;
  api->wait_head = api->wait_tail = NULL;
  serve_waiters(api, w, &r, &api->token);
}

/* Sends o now with the cached token, or queues it behind the (single) token
 * fetch. On error o is untouched and not queued. */
static int store_op_start(op *o);

static int op_start(op *o) {
  cg__lark_api *api = o->api;
  if (api->closing) return CG_EALREADY;
  if (api->app_type == CG__LARK_APP_STORE) return store_op_start(o);
  uint64_t now = now_ms(api);
  if (api->token && now < api->token_deadline) {
    if (now >= api->token_renew_at && !api->fetching) {
      /* Refresh ahead: this call keeps the cached token; the successor
       * arrives in the background. A failure here only logs. */
      int r = start_fetch(api);
      if (r)
        lark_log(api, CG_LOG_WARN, "background token refresh not started: %s",
                 cg_strerror(r));
    }
    return send_attempt(o, api->token);
  }
  if (!api->fetching) {
    int r = start_fetch(api);
    if (r) return r;
  }
  o->next = NULL;
  if (api->wait_tail)
    api->wait_tail->next = o;
  else
    api->wait_head = o;
  api->wait_tail = o;
  return 0;
}

/* ------------------------------------------------ store (marketplace) apps */

/* Lifetime handling shared with the self-built cache: expire − 180 s, half
 * a lifetime shorter than the margin. */
static uint64_t ttl_ms_of(json_int_t expire) {
  uint64_t ex = expire > 86400 * 30 ? 86400u * 30 : (uint64_t)expire;
  return ex > CG__LARK_TOKEN_MARGIN_S ? (ex - CG__LARK_TOKEN_MARGIN_S) * 1000u
                                      : ex * 500u;
}

/* Classifies a token answer and, when it is OK, takes the token in field
 * (top level) into *tok (malloc'd) and its TTL into *ttl_ms. */
static void token_answer(int rc, const cg__https_resp *resp, const char *field,
                         cg__lark_result *r, char **tok, uint64_t *ttl_ms) {
  json_t *root = NULL;
  *tok = NULL;
  *ttl_ms = 0;
  cg__lark_classify(rc, resp->status, resp->body, resp->body_len,
                    reset_of(resp), r, &root);
  cg_strlcpy(r->logid, resp->logid, sizeof(r->logid));
  if (rc && rc != UV_ECANCELED && resp->detail[0])
    cg_strlcpy(r->msg, resp->detail, sizeof(r->msg));
  r->token_error = 1;
  if (r->cls == CG__API_OK) {
    json_t *t = json_object_get(root, field);
    json_t *e = json_object_get(root, "expire");
    const char *v = json_is_string(t) ? json_string_value(t) : NULL;
    json_int_t expire = json_is_integer(e) ? json_integer_value(e) : 0;
    int usable = v && *v && strlen(v) <= TOKEN_MAX && expire > 0 &&
                 !strpbrk(v, "\r\n");
    *tok = usable ? cg_strdup(v) : NULL;
    if (*tok) {
      *ttl_ms = ttl_ms_of(expire);
    } else {
      r->cls = CG__API_RETRYABLE;
      r->err = usable ? CG_ENOMEM : CG_EMALFORMED;
      cg_fmt(r->msg, sizeof(r->msg), "%s",
             usable ? cg_strerror(CG_ENOMEM) : "token answer without a usable token");
    }
  }
  json_decref(root);
}

/* POSTs body (consumed; wiped: it holds the secret or a token) to path
 * without an Authorization header. */
static int post_auth(cg__lark_api *api, const char *path, json_t *body,
                     cg__https_cb cb, void *ud) {
  char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
  json_decref(body);
  if (!text) return CG_ENOMEM;
  cg_buf url;
  cg_buf_init(&url, CG_LIMIT_URL + strlen(api->base));
  int r = cg_buf_appends(&url, api->base);
  if (!r) r = cg_buf_appends(&url, path);
  if (!r) {
    static const char *const headers[] = {
        "Content-Type: application/json; charset=utf-8",
        "Accept: application/json", NULL};
    cg__https_req req;
    memset(&req, 0, sizeof(req));
    req.method = "POST";
    req.url = url.data;
    req.headers = headers;
    req.body = text;
    req.body_len = strlen(text);
    req.timeout_ms = api->timeout_ms;
    req.max_response_bytes = api->max_resp;
    r = cg__https_request(api->https, &req, cb, ud);
  }
  wipe_free(text);
  cg_buf_free(&url);
  return r;
}

static tenant *tenant_find(cg__lark_api *api, const char *key) {
  for (tenant *t = api->tenants; key && t; t = t->next)
    if (strcmp(t->key, key) == 0) return t;
  return NULL;
}

static int tenant_idle(const tenant *t) {
  return !t->fetching && !t->want_app && !t->settle && !t->serving &&
         !t->wait_head;
}

static void tenant_unlink_free(cg__lark_api *api, tenant *t) {
  for (tenant **pp = &api->tenants; *pp; pp = &(*pp)->next)
    if (*pp == t) {
      *pp = t->next;
      break;
    }
  api->ntenants--;
  free(t->key);
  wipe_free(t->token);
  free(t);
}

/* The entry of key, made when missing; at the cap an idle entry (one with
 * an unusable token first) makes room. NULL + *rc. */
static tenant *tenant_get(cg__lark_api *api, const char *key, int *rc) {
  tenant *t = tenant_find(api, key);
  if (t) return t;
  if (api->ntenants >= CG__LARK_MAX_TENANTS) {
    uint64_t now = now_ms(api);
    tenant *victim = NULL;
    for (tenant *x = api->tenants; x; x = x->next) {
      if (!tenant_idle(x)) continue;
      if (!victim) victim = x;
      if (!x->token || now >= x->deadline) {
        victim = x;
        break;
      }
    }
    if (!victim) {
      *rc = CG_EBUSY;
      return NULL;
    }
    tenant_unlink_free(api, victim);
  }
  t = calloc(1, sizeof(*t));
  if (t) {
    t->api = api;
    t->key = cg_strdup(key);
  }
  if (!t || !t->key) {
    free(t);
    *rc = CG_ENOMEM;
    return NULL;
  }
  t->next = api->tenants;
  api->tenants = t;
  api->ntenants++;
  return t;
}

static void tenant_enqueue(tenant *t, op *o) {
  o->next = NULL;
  if (t->wait_tail)
    t->wait_tail->next = o;
  else
    t->wait_head = o;
  t->wait_tail = o;
}

/* Ends every waiter of t with r (a copy each), or cancels them when the
 * client is closing. */
static void tenant_fail_waiters(cg__lark_api *api, tenant *t,
                                const cg__lark_result *r) {
  op *w = t->wait_head;
  t->wait_head = t->wait_tail = NULL;
  t->serving = 1;
  while (w) {
    op *o = w;
    w = w->next;
    o->next = NULL;
    if (api->closing) {
      op_fail(o, UV_ECANCELED);
    } else {
      cg__lark_result copy = *r;
      copy.data = NULL;
      op_complete(o, &copy);
    }
  }
  t->serving = 0;
}

static void token_failure_log(cg__lark_api *api, const char *what,
                              const cg__lark_result *r) {
  if (r->cls == CG__API_CANCELLED) return;
  char code[24] = "-";
  if (r->has_code) cg_fmt(code, sizeof(code), "%lld", (long long)r->code);
  lark_log(api, r->cls == CG__API_PERMANENT ? CG_LOG_ERROR : CG_LOG_WARN,
           "%s for app %s: %s (http %d, code %s, %s) logid %s", what,
           api->app_id, cg__api_class_name(r->cls), r->http_status, code,
           r->msg, r->logid[0] ? r->logid : "-");
}

/* A result for calls that could not get a token for a local reason. */
static void local_failure(cg__lark_result *r, int err, const char *msg) {
  memset(r, 0, sizeof(*r));
  r->cls = err == UV_ECANCELED ? CG__API_CANCELLED : CG__API_RETRYABLE;
  r->err = err;
  r->token_error = 1;
  cg_strlcpy(r->msg, msg ? msg : cg_strerror(err), sizeof(r->msg));
}

static void on_tenant_token(int rc, const cg__https_resp *resp, void *ud);
static void on_app_token(int rc, const cg__https_resp *resp, void *ud);
static void on_resend(int rc, const cg__https_resp *resp, void *ud);

static int start_tenant_fetch(cg__lark_api *api, tenant *t) {
  /* {app_access_token, tenant_key} (lark.md §4.2; go tokenmanager.go). */
  json_t *b = json_pack("{s:s,s:s}", "app_access_token", api->app_token,
                        "tenant_key", t->key);
  int r = post_auth(api, STORE_TENANT_TOKEN_PATH, b, on_tenant_token, t);
  if (r) return r;
  t->fetching = 1;
  api->stats.token_fetches++;
  lark_log(api, CG_LOG_DEBUG, "fetching tenant_access_token for tenant %s",
           t->key);
  return 0;
}

static int start_app_fetch(cg__lark_api *api) {
  json_t *b = json_pack("{s:s,s:s,s:s}", "app_id", api->app_id, "app_secret",
                        api->app_secret, "app_ticket", api->app_ticket);
  int r = post_auth(api, STORE_APP_TOKEN_PATH, b, on_app_token, api);
  if (r) return r;
  api->app_fetching = 1;
  api->stats.app_token_fetches++;
  lark_log(api, CG_LOG_DEBUG, "fetching app_access_token for store app %s",
           api->app_id);
  return 0;
}

static int start_resend(cg__lark_api *api) {
  json_t *b = json_pack("{s:s,s:s}", "app_id", api->app_id, "app_secret",
                        api->app_secret);
  int r = post_auth(api, TICKET_RESEND_PATH, b, on_resend, api);
  if (r) return r;
  api->resend_inflight = 1;
  api->stats.ticket_resends++;
  lark_log(api, CG_LOG_INFO,
           "store app %s has no usable app_ticket: asked Lark to resend it "
           "(it arrives as an app_ticket event on the event URL)",
           api->app_id);
  return 0;
}

/* Starts what the want_app entries wait for, unless it is in flight. */
static int app_ensure(cg__lark_api *api) {
  if (api->app_fetching || api->resend_inflight) return 0;
  return api->app_ticket ? start_app_fetch(api) : start_resend(api);
}

/* The app token (or its absence) is settled: every want_app entry fetches
 * its tenant token now, or its waiters end with r. */
static void serve_want_app(cg__lark_api *api, const cg__lark_result *r) {
  /* Only the entries waiting now: a callback below may queue new calls
   * behind a new app request (want_app again), which serves them. */
  for (tenant *t = api->tenants; t; t = t->next)
    if (t->want_app) {
      t->want_app = 0;
      t->settle = 1;
    }
  for (;;) {
    tenant *t = api->tenants;
    while (t && !t->settle) t = t->next;
    if (!t) break;
    t->settle = 0;
    cg__lark_result fail = *r;
    if (r->cls == CG__API_OK && !api->closing) {
      int src = start_tenant_fetch(api, t);
      if (!src) continue;
      local_failure(&fail, src, NULL);
    }
    tenant_fail_waiters(api, t, &fail);
  }
}

static void on_app_token(int rc, const cg__https_resp *resp, void *ud) {
  cg__lark_api *api = ud;
  api->app_fetching = 0;
  cg__lark_result r;
  char *tok;
  uint64_t ttl;
  token_answer(rc, resp, "app_access_token", &r, &tok, &ttl);
  if (tok) {
    wipe_free(api->app_token);
    api->app_token = tok;
    api->app_deadline = now_ms(api) + ttl;
    lark_log(api, CG_LOG_DEBUG, "app_access_token for store app %s: usable %llu s",
             api->app_id, (unsigned long long)(ttl / 1000));
  } else {
    api->stats.token_failures++;
    token_failure_log(api, "app_access_token", &r);
    if (r.has_code && r.code == CG__LARK_CODE_APP_TICKET_INVALID) {
      /* go core: resend the ticket on 10012; the calls end retryable and
       * the next ones use the ticket Lark pushes. */
      wipe_free(api->app_ticket);
      api->app_ticket = NULL;
      r.cls = CG__API_RETRYABLE;
      if (!api->closing && !api->resend_inflight) {
        int src = start_resend(api);
        if (src)
          lark_log(api, CG_LOG_WARN, "app_ticket resend not started: %s",
                   cg_strerror(src));
      }
    }
  }
  serve_want_app(api, &r);
}

static void on_resend(int rc, const cg__https_resp *resp, void *ud) {
  cg__lark_api *api = ud;
  api->resend_inflight = 0;
  cg__lark_result r;
  json_t *root = NULL;
  cg__lark_classify(rc, resp->status, resp->body, resp->body_len,
                    reset_of(resp), &r, &root);
  json_decref(root);
  cg_strlcpy(r.logid, resp->logid, sizeof(r.logid));
  if (r.cls != CG__API_OK) token_failure_log(api, "app_ticket resend", &r);
  if (api->app_fetching) return; /* a ticket arrived: its fetch serves them */
  if (api->app_ticket && !api->closing) {
    int src = start_app_fetch(api);
    if (!src) return;
    local_failure(&r, src, NULL);
  } else if (rc == UV_ECANCELED || api->closing) {
    local_failure(&r, UV_ECANCELED, NULL);
  } else {
    local_failure(&r, 0,
                  "no app_ticket yet: asked Lark to resend it (it arrives as "
                  "an app_ticket event); try again later");
  }
  serve_want_app(api, &r);
}

static void on_tenant_token(int rc, const cg__https_resp *resp, void *ud) {
  tenant *t = ud; /* alive: a fetching entry is never dropped */
  cg__lark_api *api = t->api;
  t->fetching = 0;
  cg__lark_result r;
  char *tok;
  uint64_t ttl;
  token_answer(rc, resp, "tenant_access_token", &r, &tok, &ttl);
  if (tok) {
    wipe_free(t->token);
    t->token = tok;
    t->deadline = now_ms(api) + ttl;
  } else {
    api->stats.token_failures++;
    token_failure_log(api, "tenant_access_token (store app)", &r);
    if (r.has_code && (r.code == CG__LARK_CODE_APP_TOKEN_INVALID ||
                       r.code == CG__LARK_CODE_ACCESS_TOKEN_INVALID)) {
      /* The app token was refused: the next fetch gets a new one. */
      wipe_free(api->app_token);
      api->app_token = NULL;
      api->app_deadline = 0;
    }
  }
  op *w = t->wait_head;
  t->wait_head = t->wait_tail = NULL;
  t->serving = 1;
  serve_waiters(api, w, &r, &t->token);
  t->serving = 0;
}

static int store_op_start(op *o) {
  cg__lark_api *api = o->api;
  int rc = 0;
  tenant *t = tenant_get(api, o->tenant_key, &rc);
  if (!t) return rc;
  uint64_t now = now_ms(api);
  if (t->token && now < t->deadline) return send_attempt(o, t->token);
  if (!t->fetching && !t->want_app) {
    if (api->app_token && now < api->app_deadline) {
      rc = start_tenant_fetch(api, t);
    } else {
      rc = app_ensure(api);
      if (!rc) t->want_app = 1;
    }
    if (rc) return rc;
  }
  tenant_enqueue(t, o);
  return 0;
}

int cg__lark_api_set_app_ticket(cg__lark_api *api, const char *app_ticket) {
  if (!api || api->app_type != CG__LARK_APP_STORE || !arg_ok(app_ticket) ||
      strpbrk(app_ticket, "\r\n"))
    return CG_EINVAL;
  if (api->closing) return CG_EALREADY;
  if (api->app_ticket && strcmp(api->app_ticket, app_ticket) == 0) return 0;
  char *copy = cg_strdup(app_ticket);
  if (!copy) return CG_ENOMEM;
  wipe_free(api->app_ticket);
  api->app_ticket = copy;
  lark_log(api, CG_LOG_INFO, "store app %s: app_ticket updated", api->app_id);
  /* Calls waiting on a resend: fetch the app token now (the resend's
   * answer then leaves them to this fetch). */
  int waiting = 0;
  for (tenant *t = api->tenants; t; t = t->next) waiting |= t->want_app;
  if (waiting && !api->app_fetching) {
    int r = start_app_fetch(api);
    if (r)
      lark_log(api, CG_LOG_WARN, "app_access_token fetch not started: %s",
               cg_strerror(r));
  }
  return 0;
}

int cg__lark_api_has_app_ticket(const cg__lark_api *api) {
  return api && api->app_ticket != NULL;
}

cg__lark_app_type cg__lark_api_app_type(const cg__lark_api *api) {
  return api ? api->app_type : CG__LARK_APP_SELF_BUILT;
}

const char *cg__lark_api_app_id(const cg__lark_api *api) {
  return api ? api->app_id : NULL;
}

/* Takes ownership of path and body (both may be NULL on allocation failure,
 * reported as CG_ENOMEM). */
static int submit(cg__lark_api *api, const char *tenant_key, const char *method,
                  char *path, char *body, cg__lark_cb cb, void *ud) {
  if (!path ||
      (!body && strcmp(method, "GET") != 0 && strcmp(method, "DELETE") != 0)) {
    free(path);
    free(body);
    return CG_ENOMEM;
  }
  op *o = calloc(1, sizeof(*o));
  if (!o) {
    free(path);
    free(body);
    return CG_ENOMEM;
  }
  o->api = api;
  if (api->app_type == CG__LARK_APP_STORE) {
    o->tenant_key = cg_strdup(tenant_key);
    if (!o->tenant_key) {
      op_free(o);
      return CG_ENOMEM;
    }
  }
  o->method = method;
  o->path = path;
  o->body = body;
  o->cb = cb;
  o->ud = ud;
  int rc = op_start(o);
  if (rc) op_free(o);
  return rc;
}

/* ---------------------------------------------------------------- calls */

static int common_checks(cg__lark_api *api, const char *tenant_key,
                         cg__lark_cb cb) {
  if (!api || !cb) return CG_EINVAL;
  if (api->closing) return CG_EALREADY;
  /* Store apps: a tenant key names whose token to use (lark.md §4.3). */
  if (api->app_type == CG__LARK_APP_STORE &&
      (!arg_ok(tenant_key) || strpbrk(tenant_key, "\r\n")))
    return CG_EINVAL;
  return 0;
}

/* Parses card_json: a JSON object within the card limit. */
static int load_card(const char *card_json, json_t **out) {
  *out = NULL;
  if (!card_json) return CG_EINVAL;
  size_t n = strlen(card_json);
  if (n > CG_LIMIT_TEMPLATE_OUTPUT) return CG_ETOOBIG;
  json_t *j = json_loadb(card_json, n, 0, NULL);
  if (!json_is_object(j)) {
    json_decref(j);
    return CG_EMALFORMED;
  }
  *out = j;
  return 0;
}

static char *dump_and_free(json_t *j) {
  char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
  json_decref(j);
  return s;
}

/* {"receive_id"?,"msg_type":"interactive","content":"<card>","uuid"?,
 *  "reply_in_thread"?} — content is the card JSON as a string (§4.4). */
static char *message_body(const char *receive_id, const char *card_json,
                          const char *uuid, int reply_in_thread) {
  json_t *b = json_object();
  if (!b) return NULL;
  int bad = 0;
  if (receive_id)
    bad |= json_object_set_new(b, "receive_id", json_string(receive_id));
  bad |= json_object_set_new(b, "msg_type", json_string("interactive"));
  bad |= json_object_set_new(b, "content", json_string(card_json));
  if (uuid) bad |= json_object_set_new(b, "uuid", json_string(uuid));
  if (reply_in_thread)
    bad |= json_object_set_new(b, "reply_in_thread", json_true());
  if (bad) {
    json_decref(b);
    return NULL;
  }
  return dump_and_free(b);
}

int cg__lark_send_card(cg__lark_api *api, const char *tenant_key,
                       const char *receive_id_type,
                       const char *receive_id, const char *card_json,
                       const char *uuid, cg__lark_cb cb, void *ud) {
  int rc = common_checks(api, tenant_key, cb);
  if (rc) return rc;
  static const char *const types[] = {"open_id", "user_id", "union_id", "email",
                                      "chat_id"};
  int known = 0;
  for (size_t i = 0; receive_id_type && i < CG_ARRAY_SIZE(types); i++)
    if (strcmp(receive_id_type, types[i]) == 0) known = 1;
  if (!known || !arg_ok(receive_id) || (uuid && !arg_ok(uuid)))
    return CG_EINVAL;
  json_t *card;
  if ((rc = load_card(card_json, &card))) return rc;
  json_decref(card);
  cg_buf path;
  cg_buf_init(&path, CG_LIMIT_URL);
  rc = cg_buf_appendf(&path, "/open-apis/im/v1/messages?receive_id_type=%s",
                      receive_id_type);
  if (rc) {
    cg_buf_free(&path);
    return rc;
  }
  return submit(api, tenant_key, "POST", path.data,
                message_body(receive_id, card_json, uuid, 0), cb, ud);
}

static char *message_path(const char *message_id, const char *suffix) {
  cg_buf path;
  cg_buf_init(&path, CG_LIMIT_URL);
  int rc = cg_buf_appends(&path, "/open-apis/im/v1/messages/");
  if (!rc) rc = append_escaped(&path, message_id);
  if (!rc) rc = cg_buf_appends(&path, suffix);
  if (rc) {
    cg_buf_free(&path);
    return NULL;
  }
  return path.data;
}

int cg__lark_reply_card(cg__lark_api *api, const char *tenant_key,
                       const char *message_id,
                        const char *card_json, int reply_in_thread,
                        const char *uuid, cg__lark_cb cb, void *ud) {
  int rc = common_checks(api, tenant_key, cb);
  if (rc) return rc;
  if (!arg_ok(message_id) || (uuid && !arg_ok(uuid))) return CG_EINVAL;
  json_t *card;
  if ((rc = load_card(card_json, &card))) return rc;
  json_decref(card);
  return submit(api, tenant_key, "POST", message_path(message_id, "/reply"),
                message_body(NULL, card_json, uuid, reply_in_thread), cb, ud);
}

int cg__lark_patch_card(cg__lark_api *api, const char *tenant_key,
                       const char *message_id,
                        const char *card_json, cg__lark_cb cb, void *ud) {
  int rc = common_checks(api, tenant_key, cb);
  if (rc) return rc;
  if (!arg_ok(message_id)) return CG_EINVAL;
  json_t *card;
  if ((rc = load_card(card_json, &card))) return rc;
  json_decref(card);
  /* {"content":"<card JSON string>"} (§4.4); PUT is for text/post only. */
  json_t *b = json_pack("{s:s}", "content", card_json);
  return submit(api, tenant_key, "PATCH", message_path(message_id, ""), dump_and_free(b),
                cb, ud);
}

int cg__lark_delay_update(cg__lark_api *api, const char *tenant_key,
                       const char *callback_token,
                          const char *card_json, cg__lark_cb cb, void *ud) {
  int rc = common_checks(api, tenant_key, cb);
  if (rc) return rc;
  if (!arg_ok(callback_token)) return CG_EINVAL;
  json_t *card;
  if ((rc = load_card(card_json, &card))) return rc;
  /* {"token":"c-…","card":{…}}: the card as an object here, not a string
   * (§4.5). open_ids, when wanted, are already inside the card. */
  json_t *b = json_pack("{s:s,s:o}", "token", callback_token, "card", card);
  return submit(api, tenant_key, "POST", cg_strdup("/open-apis/interactive/v1/card/update"),
                dump_and_free(b), cb, ud);
}

int cg__lark_call(cg__lark_api *api, const char *tenant_key,
                       const char *method, const char *path_query,
                  const char *body, cg__lark_cb cb, void *ud) {
  int rc = common_checks(api, tenant_key, cb);
  if (rc) return rc;
  static const char *const methods[] = {"GET", "POST", "PATCH", "PUT",
                                        "DELETE"};
  const char *m = NULL;
  for (size_t i = 0; method && i < CG_ARRAY_SIZE(methods); i++)
    if (strcmp(method, methods[i]) == 0) m = methods[i];
  if (!m || !path_query || strncmp(path_query, "/open-apis/", 11) != 0 ||
      strlen(path_query) > CG_LIMIT_URL || strpbrk(path_query, " \r\n"))
    return CG_EINVAL;
  char *b = body ? cg_strdup(body) : NULL;
  if (body && !b) return CG_ENOMEM;
  /* A body-less POST/PATCH/PUT still sends "{}". */
  if (!b && strcmp(m, "GET") != 0 && strcmp(m, "DELETE") != 0) {
    b = cg_strdup("{}");
    if (!b) return CG_ENOMEM;
  }
  return submit(api, tenant_key, m, cg_strdup(path_query), b, cb, ud);
}

/* ------------------------------------------------------------ life cycle */

void cg__lark_api_options_init(cg__lark_api_options *o) {
  memset(o, 0, sizeof(*o));
  o->base_url = CG__LARK_BASE_FEISHU;
  o->timeout_ms = DEFAULT_TIMEOUT_MS;
  o->log_level = CG_LOG_INFO;
}


static void api_free(cg__lark_api *api) {
  token_clear(api);
  while (api->tenants) {
    tenant *t = api->tenants;
    api->tenants = t->next;
    cg_assert(t->wait_head == NULL);
    free(t->key);
    wipe_free(t->token);
    free(t);
  }
  wipe_free(api->app_ticket);
  wipe_free(api->app_token);
  free(api->base);
  free(api->app_id);
  wipe_free(api->app_secret);
  free(api);
}

cg__lark_api *cg__lark_api_new(uv_loop_t *loop, const cg__lark_api_options *o,
                               int *err) {
  int dummy;
  if (!err) err = &dummy;
  *err = 0;
  if (!loop || !o || cg_str_empty(o->app_id) || cg_str_empty(o->app_secret) ||
      strlen(o->app_id) > ARG_MAX || strlen(o->app_secret) > ARG_MAX) {
    *err = CG_EINVAL;
    return NULL;
  }
  const char *base = o->base_url ? o->base_url : CG__LARK_BASE_FEISHU;
  if (!cg_origin_ok(base)) {
    *err = CG_ECONFIG;
    return NULL;
  }
  cg__lark_api *api = calloc(1, sizeof(*api));
  if (!api) {
    *err = CG_ENOMEM;
    return NULL;
  }
  api->loop = loop;
  api->base = cg_strdup(base);
  api->app_id = cg_strdup(o->app_id);
  api->app_secret = cg_strdup(o->app_secret);
  if (!api->base || !api->app_id || !api->app_secret) {
    api_free(api);
    *err = CG_ENOMEM;
    return NULL;
  }
  size_t bl = strlen(api->base);
  if (bl && api->base[bl - 1] == '/') api->base[bl - 1] = '\0';
  if (o->app_type != CG__LARK_APP_SELF_BUILT && o->app_type != CG__LARK_APP_STORE) {
    api_free(api);
    *err = CG_EINVAL;
    return NULL;
  }
  api->app_type = o->app_type;
  api->timeout_ms = o->timeout_ms ? o->timeout_ms : DEFAULT_TIMEOUT_MS;
  api->max_resp = o->max_response_bytes;
  api->log = o->log;
  api->log_ud = o->log_ud;
  api->log_level = o->log_level;
  api->clock = o->clock ? o->clock : cg__api_default_clock;
  api->clock_ud = o->clock_ud;
  api->https = cg__https_new(loop, err);
  if (!api->https) {
    api_free(api);
    return NULL;
  }
  return api;
}

void cg__lark_api_get_stats(const cg__lark_api *api, cg__lark_api_stats *out) {
  if (!api) {
    memset(out, 0, sizeof(*out));
    return;
  }
  *out = api->stats;
  out->token_fetching = api->fetching;
  out->token_cached = api->token != NULL;
  out->tenants = api->ntenants;
  for (tenant *t = api->tenants; t; t = t->next) {
    if (t->fetching) out->token_fetching = 1;
    if (t->token) out->token_cached = 1;
  }
}

static void on_https_closed(void *ud) {
  cg__lark_api *api = ud;
  cg_assert(api->wait_head == NULL);
  void (*cb)(void *) = api->close_cb;
  void *cud = api->close_ud;
  api_free(api);
  if (cb) cb(cud);
}

void cg__lark_api_close(cg__lark_api *api, void (*close_cb)(void *ud),
                        void *ud) {
  if (!api) return;
  cg_assert(!api->closing);
  api->closing = 1;
  api->close_cb = close_cb;
  api->close_ud = ud;
  /* Cancels the token fetch (which finishes the waiters) and every call. */
  cg__https_close(api->https, on_https_closed, api);
}
