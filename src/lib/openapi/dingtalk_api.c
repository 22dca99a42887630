/* DingTalk Open API client: access-token cache, card calls, result
 * classification. Facts: ../shared/protocols/dingtalk.md §4, §10.
 *
 * The same machine as lark_api.c, for one org-internal app. Every call is
 * an op. An op needs the access token: when the cached one is fresh the op
 * is sent at once; otherwise it joins the waiters and, if no fetch is in
 * flight, starts one (single flight: however many ops wait, one token
 * request is sent and its answer serves them all). An InvalidAuthentication
 * (HTTP 400, §10.1) or 401 answer evicts the token the op used — unless
 * another op already replaced it — and puts the op through the same path
 * once more.
 *
 * Closing closes the HTTPS client, which cancels every request in flight;
 * ops waiting for the token are finished by the cancelled token fetch, so
 * every op ends through one of the HTTPS callbacks. */
#include "dingtalk_api.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../../common/common.h"
#include "../../common/limits.h"
#include "../codec/dingtalk_stream.h"
#include "../net/https_client.h"
#include "cardgate/error.h"

#define TOKEN_PATH "/v1.0/oauth2/accessToken"
#define CREATE_DELIVER_PATH "/v1.0/card/instances/createAndDeliver"
#define UPDATE_PATH "/v1.0/card/instances"
#define TOKEN_HEADER "x-acs-dingtalk-access-token"
#define DEFAULT_TIMEOUT_MS 10000u
#define ARG_MAX CG_LIMIT_ID
#define TOKEN_MAX 4096u
/* dingtalk.md §4.1: at most 20 calls per second per app and API; more are
 * refused (QpsLimitForAppkeyAndApi). Calls over it wait for the next
 * one-second window here instead of being sent to be refused. */
#define QPS_LIMIT 20u
#define QPS_WINDOW_MS 1000u
#define QPS_PATHS 8

typedef struct op op;

struct op {
  cg__dt_api *api;
  op *next;           /* waiters queue */
  const char *method; /* static */
  char *path;
  char *body;       /* NULL: no body */
  char *token_used; /* token of the attempt in flight */
  int attempts;
  int token_retried;
  int deliver; /* createAndDeliver: check every deliverResults[i] */
  cg__dt_api_cb cb;
  void *ud;
};

struct cg__dt_api {
  uv_loop_t *loop;
  cg__https *https;
  char *base; /* no trailing '/' */
  char *app_key;
  char *app_secret;
  char *robot_code;
  uint32_t timeout_ms;
  size_t max_resp;
  cg_log_fn log;
  void *log_ud;
  cg_log_level log_level;
  cg__dt_clock_fn clock;
  void *clock_ud;

  char *token;
  uint64_t token_deadline; /* clock ms: unusable from here */
  int fetching;
  op *wait_head, *wait_tail;

  /* The per-API call counts of the current window, and the calls waiting
   * for the next one (FIFO). */
  struct {
    char path[96];
    uint64_t start;
    unsigned n;
  } qps[QPS_PATHS];
  op *thr_head, *thr_tail;
  uv_timer_t thr_timer;
  int closing_parts; /* the HTTPS client and the timer, while closing */

  cg__dt_api_stats stats;
  int closing;
  void (*close_cb)(void *ud);
  void *close_ud;
};

/* ------------------------------------------------------------- helpers */

static void dt_log(const cg__dt_api *api, cg_log_level level, const char *fmt,
                   ...) __attribute__((format(printf, 3, 4)));
static void dt_log(const cg__dt_api *api, cg_log_level level, const char *fmt,
                   ...) {
  if (!api->log || level < api->log_level) return;
  char line[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof(line), fmt, ap);
  va_end(ap);
  api->log(level, "openapi", line, api->log_ud);
}

static uint64_t now_ms(const cg__dt_api *api) {
  return api->clock(api->clock_ud);
}


/* Retry-After in whole seconds (RFC 9110 §10.2.3); missing, zero or an
 * HTTP-date: the 1 s QpsLimit window (§4.1). */
static uint64_t retry_after_from(const char *ra) {
  return cg__api_seconds_ms(ra, CG__DT_DEFAULT_RETRY_AFTER_MS, 0);
}

/* A string member under either spelling (the gateway client reads
 * Code|code, Message|message, RequestId|requestid: §4.1). */
static const char *str2(const json_t *o, const char *a, const char *b) {
  json_t *v = json_object_get(o, a);
  if (!json_is_string(v)) v = json_object_get(o, b);
  return json_is_string(v) ? json_string_value(v) : NULL;
}

void cg__dt_api_classify(int err, int status, const char *body, size_t len,
                         const char *retry_after, cg__dt_api_result *out,
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
    /* As lark_api: an answer over the limit or a URL curl refuses will
     * fail the same way again; everything else on the way can pass. */
    out->cls = err == CG_ETOOBIG || err == CG_EINVAL ? CG__API_PERMANENT
                                                     : CG__API_RETRYABLE;
    cg_strlcpy(out->msg, cg_strerror(err), sizeof(out->msg));
    return;
  }

  json_t *root = body && len ? json_loadb(body, len, 0, NULL) : NULL;
  int obj = json_is_object(root);
  const char *code = obj ? str2(root, "code", "Code") : NULL;
  if (code) {
    cg_strlcpy(out->code, code, sizeof(out->code));
    const char *m = str2(root, "message", "Message");
    if (m) cg_strlcpy(out->msg, m, sizeof(out->msg));
  }
  const char *rid = obj ? str2(root, "requestid", "RequestId") : NULL;
  if (!rid && obj) rid = str2(root, "requestId", "request_id");
  if (rid) cg_strlcpy(out->request_id, rid, sizeof(out->request_id));
  json_t *success = obj ? json_object_get(root, "success") : NULL;
  int ok2xx = status >= 200 && status < 300;

  if ((code && strncmp(code, CG__DT_CODE_QPS_PREFIX,
                       strlen(CG__DT_CODE_QPS_PREFIX)) == 0) ||
      status == 429) {
    /* §4.1: 20 calls/s per app per API, then QpsLimitForAppkeyAndApi
     * (or QpsLimitForApi across apps) for the rest of the second; the
     * HTTP status is 403 per third parties: the code decides. */
    out->cls = CG__API_RATE_LIMITED;
    out->retry_after_ms = retry_after_from(retry_after);
  } else if ((code && strcmp(code, CG__DT_CODE_INVALID_AUTH) == 0) ||
             status == 401) {
    out->cls = CG__API_TOKEN_INVALID; /* §10.1: HTTP 400 */
  } else if (status >= 500 || (code && strcmp(code, CG__DT_CODE_BUSY) == 0)) {
    out->cls = CG__API_RETRYABLE;
  } else if (ok2xx && obj) {
    if (json_is_false(success) || (code && !json_is_true(success))) {
      out->cls = CG__API_PERMANENT;
      if (!out->msg[0])
        cg_strlcpy(out->msg, "the answer says success: false",
                   sizeof(out->msg));
    } else {
      out->cls = CG__API_OK;
    }
  } else if (ok2xx) {
    /* Not a DingTalk answer (a proxy page, a cut body): the call may or
     * may not have happened; a repeated createAndDeliver with the same
     * outTrackId does nothing (§4.3), so a retry is safe. */
    out->cls = CG__API_RETRYABLE;
    out->err = CG_EMALFORMED;
  } else if (status == 408) {
    out->cls = CG__API_RETRYABLE;
  } else {
    out->cls = CG__API_PERMANENT;
    if (!code) out->err = CG_EMALFORMED;
  }
  if (!out->msg[0]) {
    if (out->err == CG_EMALFORMED)
      cg_fmt(out->msg, sizeof(out->msg), "HTTP %d, not a DingTalk JSON answer",
             status);
    else
      cg_fmt(out->msg, sizeof(out->msg), "HTTP %d", status);
  }
  if (rootp)
    *rootp = root;
  else
    json_decref(root);
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
  free(o->body);
  wipe_free(o->token_used);
  free(o);
}

static void op_log_result(op *o, const cg__dt_api_result *r) {
  cg_log_level lvl = cg__api_class_log_level(r->cls);
  /* Method, path, code, message, request id — never the body (card
   * contents) nor the token header. */
  dt_log(o->api, lvl,
         "%s %s: %s (http %d, code %s, %s%s%s) requestid %s attempts %d",
         o->method, o->path, cg__api_class_name(r->cls), r->http_status,
         r->code[0] ? r->code : "-", r->msg, r->err ? ", " : "",
         r->err ? cg_err_name(r->err) : "",
         r->request_id[0] ? r->request_id : "-", r->attempts);
}

/* Ends an op: one callback, then free. */
static void op_complete(op *o, cg__dt_api_result *r) {
  r->attempts = o->attempts;
  op_log_result(o, r);
  o->cb(r, o->ud);
  op_free(o);
}

static void op_fail(op *o, int err) {
  cg__dt_api_result r;
  memset(&r, 0, sizeof(r));
  r.err = err;
  r.cls = cg__api_local_failure(&r.err);
  cg_strlcpy(r.msg, cg_strerror(r.err), sizeof(r.msg));
  op_complete(o, &r);
}

static int op_start(op *o);
static void on_call_done(int rc, const cg__https_resp *resp, void *ud);

static int send_attempt(op *o, const char *token) {
  cg__dt_api *api = o->api;
  cg_buf url, auth;
  cg_buf_init(&url, CG_LIMIT_URL + strlen(api->base));
  cg_buf_init(&auth, TOKEN_MAX + 64);
  int rc = cg_buf_appends(&url, api->base);
  if (!rc) rc = cg_buf_appends(&url, o->path);
  if (!rc) rc = cg_buf_appendf(&auth, TOKEN_HEADER ": %s", token);
  char *used = rc ? NULL : cg_strdup(token);
  if (!rc && !used) rc = CG_ENOMEM;
  if (!rc) {
    const char *headers[] = {auth.data, "Content-Type: application/json",
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
  if (auth.data) memset(auth.data, 0, auth.cap); /* held the token */
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

/* createAndDeliver: a 200 can still carry failed spaces (§4.3). */
static void check_deliveries(const json_t *result, cg__dt_api_result *r) {
  json_t *id = json_object_get(result, "outTrackId");
  if (json_is_string(id))
    cg_strlcpy(r->out_track_id, json_string_value(id), sizeof(r->out_track_id));
  json_t *dr = json_object_get(result, "deliverResults");
  size_t i;
  json_t *d;
  json_array_foreach(dr, i, d) {
    if (json_is_true(json_object_get(d, "success"))) continue;
    r->cls = CG__API_PERMANENT;
    json_t *em = json_object_get(d, "errorMsg");
    json_t *st = json_object_get(d, "spaceType");
    json_t *si = json_object_get(d, "spaceId");
    cg_fmt(r->msg, sizeof(r->msg), "delivery to %s %s failed: %s",
           json_is_string(st) ? json_string_value(st) : "space",
           json_is_string(si) ? json_string_value(si) : "?",
           json_is_string(em) && *json_string_value(em) ? json_string_value(em)
                                                        : "no errorMsg");
    return;
  }
}

static void on_call_done(int rc, const cg__https_resp *resp, void *ud) {
  op *o = ud;
  cg__dt_api *api = o->api;
  cg__dt_api_result r;
  json_t *root = NULL;
  cg__dt_api_classify(rc, resp->status, resp->body, resp->body_len,
                      resp->retry_after, &r, &root);
  if (!r.request_id[0])
    cg_strlcpy(r.request_id, resp->logid, sizeof(r.request_id));
  if (rc && rc != UV_ECANCELED && resp->detail[0])
    cg_strlcpy(r.msg, resp->detail, sizeof(r.msg));

  if (r.cls == CG__API_TOKEN_INVALID && !o->token_retried && !api->closing) {
    /* §4.2 / §7.10: evict, fetch a fresh token, retry once. The cache is
     * dropped only if it still holds the token that was refused. */
    json_decref(root);
    dt_log(api, CG_LOG_WARN,
           "%s %s: access token refused (http %d, code %s, requestid %s); "
           "evicting and retrying once",
           o->method, o->path, r.http_status, r.code[0] ? r.code : "-",
           r.request_id[0] ? r.request_id : "-");
    if (api->token && o->token_used && strcmp(api->token, o->token_used) == 0)
      cg__dt_api_evict_token(api);
    o->token_retried = 1;
    api->stats.token_retries++;
    int src = op_start(o);
    if (src) op_fail(o, src);
    return;
  }
  json_t *result = json_object_get(root, "result");
  if (result) r.result = result;
  if (r.cls == CG__API_OK && o->deliver) check_deliveries(result, &r);
  op_complete(o, &r);
  json_decref(root);
}

/* -------------------------------------------------------- token cache */

static void on_token(int rc, const cg__https_resp *resp, void *ud);

static int start_fetch(cg__dt_api *api) {
  cg_buf url, body;
  cg_buf_init(&url, CG_LIMIT_URL + strlen(api->base));
  cg_buf_init(&body, 4096);
  int r = cg_buf_appends(&url, api->base);
  if (!r) r = cg_buf_appends(&url, TOKEN_PATH);
  /* §4.2: {"appKey","appSecret"}, no auth header. */
  if (!r) r = cg_buf_appends(&body, "{\"appKey\":");
  if (!r) r = cg_buf_append_json_str(&body, api->app_key, strlen(api->app_key));
  if (!r) r = cg_buf_appends(&body, ",\"appSecret\":");
  if (!r)
    r = cg_buf_append_json_str(&body, api->app_secret, strlen(api->app_secret));
  if (!r) r = cg_buf_appends(&body, "}");
  if (!r) {
    static const char *const headers[] = {"Content-Type: application/json",
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
  dt_log(api, CG_LOG_DEBUG, "fetching the access token for app %s",
         api->app_key);
  return 0;
}

void cg__dt_api_evict_token(cg__dt_api *api) {
  if (!api) return;
  wipe_free(api->token);
  api->token = NULL;
  api->token_deadline = 0;
}

static void on_token(int rc, const cg__https_resp *resp, void *ud) {
  cg__dt_api *api = ud;
  api->fetching = 0;
  cg__dt_api_result r;
  json_t *root = NULL;
  cg__dt_api_classify(rc, resp->status, resp->body, resp->body_len,
                      resp->retry_after, &r, &root);
  if (!r.request_id[0])
    cg_strlcpy(r.request_id, resp->logid, sizeof(r.request_id));
  if (rc && rc != UV_ECANCELED && resp->detail[0])
    cg_strlcpy(r.msg, resp->detail, sizeof(r.msg));
  r.token_error = 1;

  if (r.cls == CG__API_OK) {
    /* {"accessToken":"…","expireIn":7200} (§4.2) */
    json_t *t = json_object_get(root, "accessToken");
    json_t *e = json_object_get(root, "expireIn");
    const char *tok = json_is_string(t) ? json_string_value(t) : NULL;
    json_int_t expire = json_is_integer(e) ? json_integer_value(e) : 0;
    int usable = tok && *tok && strlen(tok) <= TOKEN_MAX && expire > 0 &&
                 !strpbrk(tok, "\r\n");
    char *copy = usable ? cg_strdup(tok) : NULL;
    if (copy) {
      cg__dt_api_evict_token(api);
      api->token = copy;
      uint64_t ex = expire > 86400 * 30 ? 86400u * 30 : (uint64_t)expire;
      /* expireIn − 300 s; a lifetime shorter than the margin (a test
       * server) is used for half its length instead. */
      uint64_t ttl_ms = ex > CG__DT_TOKEN_MARGIN_S
                            ? (ex - CG__DT_TOKEN_MARGIN_S) * 1000u
                            : ex * 500u;
      api->token_deadline = now_ms(api) + ttl_ms;
      dt_log(api, CG_LOG_DEBUG, "access token for app %s: expires in %llu s",
             api->app_key, (unsigned long long)ex);
    } else {
      r.cls = CG__API_RETRYABLE;
      r.err = usable ? CG_ENOMEM : CG_EMALFORMED;
      cg_strlcpy(r.msg,
                 usable ? cg_strerror(CG_ENOMEM)
                        : "token answer without a usable accessToken/expireIn",
                 sizeof(r.msg));
    }
  } else if (r.cls == CG__API_TOKEN_INVALID) {
    /* A 401 from the token endpoint itself: the credentials, not a token. */
    r.cls = CG__API_PERMANENT;
  }
  json_decref(root);

  if (r.cls != CG__API_OK) {
    api->stats.token_failures++;
    if (r.cls != CG__API_CANCELLED)
      dt_log(api, r.cls == CG__API_PERMANENT ? CG_LOG_ERROR : CG_LOG_WARN,
             "access token for app %s: %s (http %d, code %s, %s) requestid %s",
             api->app_key, cg__api_class_name(r.cls), r.http_status,
             r.code[0] ? r.code : "-", r.msg,
             r.request_id[0] ? r.request_id : "-");
  }

  /* Serve every waiter from this one answer. The queue is detached first:
   * a callback may start new calls (which queue afresh) or close us. */
  op *w = api->wait_head;
  api->wait_head = api->wait_tail = NULL;
  while (w) {
    op *o = w;
    w = w->next;
    o->next = NULL;
    if (api->closing) {
      op_fail(o, UV_ECANCELED);
    } else if (r.cls == CG__API_OK) {
      /* Read the cache again for each op: a callback before it may have
       * evicted it — then the op starts over. */
      int src = api->token ? send_attempt(o, api->token) : op_start(o);
      if (src) op_fail(o, src);
    } else {
      cg__dt_api_result copy = r; /* op_complete stamps attempts */
      op_complete(o, &copy);
    }
  }
}

/* 0 when a call to path may go now (and counts it), else the ms until the
 * next window. Paths are compared without their query. */
static uint64_t qps_wait(cg__dt_api *api, const char *path) {
  size_t pl = strcspn(path, "?");
  uint64_t now = uv_now(api->loop); /* real time: the timer below waits in it */
  if (now < QPS_WINDOW_MS) now += QPS_WINDOW_MS; /* window starts stay > 0 */
  int slot = -1, oldest = 0;
  for (int i = 0; i < QPS_PATHS; i++) {
    if (strlen(api->qps[i].path) == pl && !strncmp(api->qps[i].path, path, pl)) {
      slot = i;
      break;
    }
    if (api->qps[i].start < api->qps[oldest].start) oldest = i;
  }
  if (slot < 0) { /* a new path takes the least recently opened window */
    slot = oldest;
    cg_fmt(api->qps[slot].path, sizeof api->qps[slot].path, "%.*s", (int)pl, path);
    api->qps[slot].start = now;
    api->qps[slot].n = 0;
  }
  if (now - api->qps[slot].start >= QPS_WINDOW_MS) {
    api->qps[slot].start = now;
    api->qps[slot].n = 0;
  }
  if (api->qps[slot].n < QPS_LIMIT) {
    api->qps[slot].n++;
    return 0;
  }
  return api->qps[slot].start + QPS_WINDOW_MS - now;
}

static void thr_fire(uv_timer_t *t) {
  cg__dt_api *api = t->data;
  op *list = api->thr_head;
  api->thr_head = api->thr_tail = NULL;
  while (list) {
    op *o = list;
    list = o->next;
    o->next = NULL;
    int rc = op_start(o); /* sends, or waits again */
    if (rc) op_fail(o, rc);
  }
}

/* Sends o now with the cached token, or queues it behind the (single) token
 * fetch, or behind the rate limit. On error o is untouched and not queued. */
static int op_start(op *o) {
  cg__dt_api *api = o->api;
  if (api->closing) return CG_EALREADY;
  uint64_t wait = qps_wait(api, o->path);
  if (wait) {
    api->stats.throttled++;
    o->next = NULL;
    if (api->thr_tail) api->thr_tail->next = o;
    else api->thr_head = o;
    api->thr_tail = o;
    if (!uv_is_active((uv_handle_t *)&api->thr_timer)) uv_timer_start(&api->thr_timer, thr_fire, wait, 0);
    return 0;
  }
  if (api->token && now_ms(api) < api->token_deadline)
    return send_attempt(o, api->token);
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

/* Takes ownership of path and body (NULL: out of memory). */
static int submit(cg__dt_api *api, const char *method, char *path, char *body,
                  int deliver, cg__dt_api_cb cb, void *ud) {
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
  o->method = method;
  o->path = path;
  o->body = body;
  o->deliver = deliver;
  o->cb = cb;
  o->ud = ud;
  int rc = op_start(o);
  if (rc) op_free(o);
  return rc;
}

/* ---------------------------------------------------------------- calls */

static int common_checks(cg__dt_api *api, cg__dt_api_cb cb) {
  if (!api || !cb) return CG_EINVAL;
  if (api->closing) return CG_EALREADY;
  return 0;
}

/* vars_json (NULL = {}) → a cardParamMap object of strings (§4.7). */
static int load_param_map(const char *vars_json, json_t **out) {
  *out = NULL;
  if (!vars_json) {
    *out = json_object();
    return *out ? 0 : CG_ENOMEM;
  }
  size_t n = strlen(vars_json);
  if (n > CG_LIMIT_TEMPLATE_OUTPUT) return CG_ETOOBIG;
  json_t *j = json_loadb(vars_json, n, 0, NULL);
  if (!json_is_object(j)) {
    json_decref(j);
    return CG_EMALFORMED;
  }
  *out = cg__dt_param_map(j);
  json_decref(j);
  return *out ? 0 : CG_ENOMEM;
}

static char *dump_and_free(json_t *j) {
  char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
  json_decref(j);
  return s;
}

int cg__dt_api_create_and_deliver(cg__dt_api *api, const cg__dt_card_spec *spec,
                                  cg__dt_api_cb cb, void *ud) {
  int rc = common_checks(api, cb);
  if (rc) return rc;
  if (!spec || !arg_ok(spec->card_template_id) || !arg_ok(spec->out_track_id) ||
      !arg_ok(spec->space_id) ||
      (spec->robot_code && !arg_ok(spec->robot_code)) ||
      strchr(spec->space_id, ';'))
    return CG_EINVAL;
  json_t *map;
  if ((rc = load_param_map(spec->card_param_map_json, &map))) return rc;
  char *space = cg__dt_open_space_id(spec->group, spec->space_id);
  const char *robot = spec->robot_code ? spec->robot_code : api->robot_code;
  /* §4.3: keys as in the generated client; the space and deliver models
   * must match the space type of openSpaceId (param.openDeliverModelEmpty
   * otherwise). */
  json_t *b = space ? json_pack("{s:s,s:s,s:{s:o},s:s,s:s,s:i}",
                                "cardTemplateId", spec->card_template_id,
                                "outTrackId", spec->out_track_id, "cardData",
                                "cardParamMap", map, "openSpaceId", space,
                                "callbackType", "STREAM", "userIdType", 1)
                    : (json_decref(map), NULL);
  free(space);
  if (b) {
    int bad;
    if (spec->group)
      bad = json_object_set_new(b, "imGroupOpenSpaceModel",
                                json_pack("{s:b}", "supportForward", 1)) ||
            json_object_set_new(b, "imGroupOpenDeliverModel",
                                json_pack("{s:s}", "robotCode", robot));
    else
      bad = json_object_set_new(b, "imRobotOpenSpaceModel",
                                json_pack("{s:b}", "supportForward", 1)) ||
            json_object_set_new(b, "imRobotOpenDeliverModel",
                                json_pack("{s:s,s:s}", "spaceType", "IM_ROBOT",
                                          "robotCode", robot));
    if (bad) {
      json_decref(b);
      b = NULL;
    }
  }
  return submit(api, "POST", cg_strdup(CREATE_DELIVER_PATH), dump_and_free(b),
                1, cb, ud);
}

int cg__dt_api_update_card(cg__dt_api *api, const char *out_track_id,
                           const char *card_param_map_json, int update_by_key,
                           cg__dt_api_cb cb, void *ud) {
  int rc = common_checks(api, cb);
  if (rc) return rc;
  if (!arg_ok(out_track_id) || !card_param_map_json) return CG_EINVAL;
  json_t *map;
  if ((rc = load_param_map(card_param_map_json, &map))) return rc;
  json_t *b = json_pack("{s:s,s:{s:o},s:{s:b}}", "outTrackId", out_track_id,
                        "cardData", "cardParamMap", map, "cardUpdateOptions",
                        "updateCardDataByKey", update_by_key ? 1 : 0);
  return submit(api, "PUT", cg_strdup(UPDATE_PATH), dump_and_free(b), 0, cb,
                ud);
}

int cg__dt_api_call(cg__dt_api *api, const char *method, const char *path_query,
                    const char *body, cg__dt_api_cb cb, void *ud) {
  int rc = common_checks(api, cb);
  if (rc) return rc;
  static const char *const methods[] = {"GET", "POST", "PUT", "DELETE"};
  const char *m = NULL;
  for (size_t i = 0; method && i < CG_ARRAY_SIZE(methods); i++)
    if (strcmp(method, methods[i]) == 0) m = methods[i];
  if (!m || !path_query || strncmp(path_query, "/v1.0/", 6) != 0 ||
      strlen(path_query) > CG_LIMIT_URL || strpbrk(path_query, " \r\n"))
    return CG_EINVAL;
  char *b = body ? cg_strdup(body) : NULL;
  if (body && !b) return CG_ENOMEM;
  if (!b && strcmp(m, "GET") != 0 && strcmp(m, "DELETE") != 0) {
    b = cg_strdup("{}");
    if (!b) return CG_ENOMEM;
  }
  return submit(api, m, cg_strdup(path_query), b, 0, cb, ud);
}

/* ------------------------------------------------------------ life cycle */

void cg__dt_api_options_init(cg__dt_api_options *o) {
  memset(o, 0, sizeof(*o));
  o->base_url = CG__DT_BASE;
  o->timeout_ms = DEFAULT_TIMEOUT_MS;
  o->log_level = CG_LOG_INFO;
}


static void api_free(cg__dt_api *api) {
  cg__dt_api_evict_token(api);
  free(api->base);
  free(api->app_key);
  wipe_free(api->app_secret);
  free(api->robot_code);
  free(api);
}

cg__dt_api *cg__dt_api_new(uv_loop_t *loop, const cg__dt_api_options *o,
                           int *err) {
  int dummy;
  if (!err) err = &dummy;
  *err = 0;
  if (!loop || !o || cg_str_empty(o->app_key) || cg_str_empty(o->app_secret) ||
      strlen(o->app_key) > ARG_MAX || strlen(o->app_secret) > ARG_MAX ||
      (o->robot_code && !arg_ok(o->robot_code))) {
    *err = CG_EINVAL;
    return NULL;
  }
  const char *base = o->base_url ? o->base_url : CG__DT_BASE;
  if (!cg_origin_ok(base)) {
    *err = CG_ECONFIG;
    return NULL;
  }
  cg__dt_api *api = calloc(1, sizeof(*api));
  if (!api) {
    *err = CG_ENOMEM;
    return NULL;
  }
  api->loop = loop;
  api->base = cg_strdup(base);
  api->app_key = cg_strdup(o->app_key);
  api->app_secret = cg_strdup(o->app_secret);
  api->robot_code = cg_strdup(o->robot_code ? o->robot_code : o->app_key);
  if (!api->base || !api->app_key || !api->app_secret || !api->robot_code) {
    api_free(api);
    *err = CG_ENOMEM;
    return NULL;
  }
  size_t bl = strlen(api->base);
  if (bl && api->base[bl - 1] == '/') api->base[bl - 1] = '\0';
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
  uv_timer_init(loop, &api->thr_timer);
  api->thr_timer.data = api;
  return api;
}

void cg__dt_api_get_stats(const cg__dt_api *api, cg__dt_api_stats *out) {
  if (!api) {
    memset(out, 0, sizeof(*out));
    return;
  }
  *out = api->stats;
  out->token_fetching = api->fetching;
  out->token_cached = api->token != NULL;
}

static void close_part_done(cg__dt_api *api) {
  if (--api->closing_parts > 0) return;
  cg_assert(api->wait_head == NULL && api->thr_head == NULL);
  void (*cb)(void *) = api->close_cb;
  void *cud = api->close_ud;
  api_free(api);
  if (cb) cb(cud);
}

static void on_https_closed(void *ud) { close_part_done(ud); }

/* Calls still waiting for the rate limit end CANCELLED, on this later turn. */
static void on_thr_closed(uv_handle_t *h) {
  cg__dt_api *api = h->data;
  while (api->thr_head) {
    op *o = api->thr_head;
    api->thr_head = o->next;
    op_fail(o, UV_ECANCELED);
  }
  api->thr_tail = NULL;
  close_part_done(api);
}

void cg__dt_api_close(cg__dt_api *api, void (*close_cb)(void *ud), void *ud) {
  if (!api) return;
  cg_assert(!api->closing);
  api->closing = 1;
  api->close_cb = close_cb;
  api->close_ud = ud;
  api->closing_parts = 2;
  uv_close((uv_handle_t *)&api->thr_timer, on_thr_closed);
  /* Cancels the token fetch (which finishes the waiters) and every call. */
  cg__https_close(api->https, on_https_closed, api);
}
