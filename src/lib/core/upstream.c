/* Sidecar routes: the handler is the user's own HTTP service. The
 * normalized action goes out as JSON (POST, application/json) on the app's
 * HTTP client; the answer is checked strictly against the contract
 * (docs/sidecar.md) and relayed to cg_respond. Anything the service gets
 * wrong — down, refused, timeout, a status other than 2xx, HTML, non-JSON,
 * an unknown shape, wrong types, over CG__UPSTREAM_MAX_RESPONSE — becomes the
 * route's fallback toast and one log line that says what was wrong.
 *
 * Life cycle: one cg__upstreams per app (the HTTP client and every route's
 * data). cg_app_free detaches its responders, then cg__upstreams_free closes
 * the client; the cancelled requests answer their detached responders
 * (dropped) and the routes are freed in the client's close callback, so no
 * request callback ever sees freed route data. */
#include "upstream.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/common.h"
#include "../net/https_client.h"
#include "app_int.h"
#include "reply_int.h"

#define DEFAULT_FALLBACK_TYPE "error"
#define DEFAULT_FALLBACK_ZH "服务暂时不可用，请稍后再试"
#define DEFAULT_FALLBACK_EN "Service unavailable, try again later"

typedef struct up_route {
  struct cg__upstreams *set;
  char *url;
  char *log_url;  /* url without user:password@ and without its query */
  char **headers; /* NULL-terminated, owned */
  uint32_t timeout_ms;
  char *fb_type;
  char *fb_content;
  char *fb_en_us; /* or NULL */
  struct up_route *next;
} up_route;

struct cg__upstreams {
  cg_app *app; /* NULL once the app is freed */
  cg__https *http;
  up_route *routes;
};

typedef struct up_call {
  up_route *rt;
  cg_responder *r;
  uint64_t t0;
} up_call;

/* ------------------------------------------------------------- options */

void cg_upstream_options_init(cg_upstream_options *o) {
  if (o) memset(o, 0, sizeof(*o));
}

static void route_free(up_route *rt) {
  if (!rt) return;
  free(rt->url);
  free(rt->log_url);
  if (rt->headers) {
    for (char **h = rt->headers; *h; h++) {
      memset(*h, 0, strlen(*h)); /* may carry the shared secret */
      free(*h);
    }
    free(rt->headers);
  }
  free(rt->fb_type);
  free(rt->fb_content);
  free(rt->fb_en_us);
  free(rt);
}

static void set_free_routes(void *ud) {
  cg__upstreams *u = ud;
  for (up_route *rt = u->routes, *n; rt; rt = n) {
    n = rt->next;
    route_free(rt);
  }
  free(u);
}

void cg__upstreams_free(cg__upstreams *u) {
  if (!u) return;
  u->app = NULL;
  if (u->http) {
    cg__https *h = u->http;
    u->http = NULL;
    cg__https_close(h, set_free_routes, u);
  } else {
    set_free_routes(u);
  }
}

static int has_line_break(const char *s) {
  return strpbrk(s, "\r\n") != NULL;
}

static int starts_with(const char *s, const char *p) {
  return strncmp(s, p, strlen(p)) == 0;
}

/* Builds the route's header list: content type, secret, extras. */
static int build_headers(up_route *rt, const cg_upstream_options *o,
                         cg_app *app) {
  size_t n = 0;
  if (o && o->headers)
    while (o->headers[n]) n++;
  rt->headers = calloc(n + 4, sizeof(char *));
  if (!rt->headers) return CG_ENOMEM;
  size_t k = 0;
  if (!(rt->headers[k++] = cg_strdup("Content-Type: application/json")))
    return CG_ENOMEM;
  if (!(rt->headers[k++] = cg_strdup("Accept: application/json")))
    return CG_ENOMEM;
  if (o && !cg_str_empty(o->secret)) {
    if (has_line_break(o->secret)) {
      cg_fmt(cg__app_error_buf(app), CG__APP_ERROR_CAP,
             "upstream secret: no line breaks allowed");
      return CG_EINVAL;
    }
    size_t len = strlen(o->secret) + sizeof("X-Cardgate-Secret: ");
    char *h = malloc(len);
    if (!h) return CG_ENOMEM;
    cg_fmt(h, len, "X-Cardgate-Secret: %s", o->secret);
    rt->headers[k++] = h;
  }
  for (size_t i = 0; i < n; i++) {
    const char *h = o->headers[i];
    const char *colon = strchr(h, ':');
    if (!colon || colon == h || has_line_break(h)) {
      cg_fmt(cg__app_error_buf(app), CG__APP_ERROR_CAP,
             "upstream header %zu: write it as \"Name: value\" on one line", i);
      return CG_EINVAL;
    }
    if (!(rt->headers[k++] = cg_strdup(h))) return CG_ENOMEM;
  }
  return 0;
}

/* ------------------------------------------------------------- request */

static int put_str(json_t *o, const char *key, const char *v) {
  if (!v) return 0;
  return json_object_set_new(o, key, json_string(v));
}

/* Adds key: the JSON text parsed (any JSON value); skipped when absent. */
static int put_json(json_t *o, const char *key, const char *text) {
  if (!text) return 0;
  json_t *v = json_loads(text, JSON_DECODE_ANY, NULL);
  if (!v) return 0; /* the codec produced it: cannot happen, never fatal */
  return json_object_set_new(o, key, v);
}

/* A sub-object with the given string fields, omitted when all are absent. */
static int put_group(json_t *root, const char *key, const char *const *names,
                     const char *const *vals, size_t n) {
  json_t *g = json_object();
  if (!g) return -1;
  int rc = 0;
  for (size_t i = 0; i < n && !rc; i++) rc = put_str(g, names[i], vals[i]);
  if (rc || json_object_size(g) == 0) {
    json_decref(g);
    return rc;
  }
  return json_object_set_new(root, key, g);
}

char *cg__upstream_request_json(const cg_action *a, int64_t deadline_ms) {
  json_t *root = json_object();
  if (!root) return NULL;
  int rc = 0;
  rc |= put_str(root, "platform", cg_platform_name(a->platform));
  rc |= put_str(root, "kind", cg_kind_name(a->kind));
  rc |= put_str(root, "format", cg_format_name(a->format));
  rc |= put_str(root, "event_id", a->event_id);
  rc |= put_str(root, "event_type", a->event_type);
  rc |= put_str(root, "app_id", a->app_id);
  rc |= put_str(root, "tenant_key", a->tenant_key);
  {
    const char *const n[] = {"open_id", "user_id", "union_id"};
    const char *const v[] = {a->open_id, a->user_id, a->union_id};
    rc |= put_group(root, "operator", n, v, 3);
  }
  {
    const char *const n[] = {"message_id", "chat_id", "host"};
    const char *const v[] = {a->message_id, a->chat_id, a->host};
    rc |= put_group(root, "card", n, v, 3);
  }
  {
    json_t *c = json_object();
    if (!c) goto fail;
    rc |= put_str(c, "tag", a->tag);
    rc |= put_str(c, "name", a->name);
    rc |= put_str(c, "option", a->option);
    rc |= put_str(c, "input_value", a->input_value);
    rc |= put_str(c, "timezone", a->timezone);
    if (a->checked >= 0)
      rc |= json_object_set_new(c, "checked", json_boolean(a->checked));
    if (json_object_size(c) > 0)
      rc |= json_object_set_new(root, "component", c);
    else
      json_decref(c);
  }
  if (a->kind == CG_KIND_CARD_ACTION)
    rc |= put_json(root, "value", a->value_json);
  rc |= put_json(root, "form_value", a->form_value_json);
  rc |= put_json(root, "options", a->options_json);
  rc |= put_str(root, "update_token", a->update_token);
  rc |= put_str(root, "url", a->url);
  rc |= put_str(root, "preview_token", a->preview_token);
  rc |= json_object_set_new(root, "received_at_ms",
                            json_integer(a->received_at_ms));
  rc |= json_object_set_new(root, "deadline_ms", json_integer(deadline_ms));
  if (rc) goto fail;
  char *s = json_dumps(root, JSON_COMPACT);
  json_decref(root);
  return s;
fail:
  json_decref(root);
  return NULL;
}

/* -------------------------------------------------------------- answer */

static int bad(char *why, size_t cap, const char *fmt, const char *arg) {
  cg_fmt(why, cap, fmt, arg);
  return CG_EMALFORMED;
}

static const char *type_name(const json_t *v) {
  switch (json_typeof(v)) {
    case JSON_OBJECT:
      return "an object";
    case JSON_ARRAY:
      return "an array";
    case JSON_STRING:
      return "a string";
    case JSON_INTEGER:
      return "an integer";
    case JSON_REAL:
      return "a number";
    case JSON_TRUE:
    case JSON_FALSE:
      return "a boolean";
    default:
      return "null";
  }
}

/* Checks that o (an object) has only the listed keys. */
static int only_keys(const json_t *o, const char *const *keys, size_t n,
                     const char *where, char *why, size_t cap) {
  const char *k;
  json_t *v;
  json_object_foreach((json_t *)o, k, v) {
    size_t i = 0;
    while (i < n && strcmp(k, keys[i]) != 0) i++;
    if (i == n) {
      char msg[160];
      cg_fmt(msg, sizeof(msg), "unknown key \"%.40s\" in %s", k, where);
      return bad(why, cap, "%s", msg);
    }
  }
  return 0;
}

static int parse_toast(const json_t *t, cg_reply *r, char *why, size_t cap) {
  static const char *const keys[] = {"type", "content", "i18n"};
  if (!json_is_object(t))
    return bad(why, cap, "\"toast\" is %s, not an object", type_name(t));
  if (only_keys(t, keys, 3, "\"toast\"", why, cap)) return CG_EMALFORMED;
  const json_t *type = json_object_get(t, "type");
  const json_t *content = json_object_get(t, "content");
  const json_t *i18n = json_object_get(t, "i18n");
  const char *ty = "info";
  if (type) {
    if (!json_is_string(type))
      return bad(why, cap, "\"toast.type\" is %s, not a string",
                 type_name(type));
    ty = json_string_value(type);
    if (strcmp(ty, "info") && strcmp(ty, "success") && strcmp(ty, "error") &&
        strcmp(ty, "warning"))
      return bad(why, cap, "%s",
                 "\"toast.type\" is not info, success, error or warning");
  }
  if (!json_is_string(content))
    return bad(why, cap, "\"toast.content\" is %s, not a string",
               content ? type_name(content) : "missing");
  int rc = cg_reply_set_toast(r, ty, json_string_value(content));
  if (rc)
    return rc == CG_ENOMEM ? rc
                           : bad(why, cap, "%s", "\"toast\" is not valid text");
  if (i18n) {
    if (!json_is_object(i18n))
      return bad(why, cap, "\"toast.i18n\" is %s, not an object",
                 type_name(i18n));
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)i18n, k, v) {
      if (!json_is_string(v))
        return bad(why, cap, "a \"toast.i18n\" value is %s, not a string",
                   type_name(v));
      rc = cg_reply_toast_i18n(r, k, json_string_value(v));
      if (rc)
        return rc == CG_ENOMEM
                   ? rc
                   : bad(why, cap, "%s", "a \"toast.i18n\" entry is not valid");
    }
  }
  return 0;
}

static int parse_template(const json_t *t, cg_reply **out, char *why,
                          size_t cap) {
  static const char *const keys[] = {"id", "variables", "version"};
  if (!json_is_object(t))
    return bad(why, cap, "\"template\" is %s, not an object", type_name(t));
  if (only_keys(t, keys, 3, "\"template\"", why, cap)) return CG_EMALFORMED;
  const json_t *id = json_object_get(t, "id");
  const json_t *vars = json_object_get(t, "variables");
  const json_t *ver = json_object_get(t, "version");
  if (!json_is_string(id) || !json_string_value(id)[0])
    return bad(why, cap, "\"template.id\" is %s, not a non-empty string",
               id ? type_name(id) : "missing");
  if (vars && !json_is_object(vars))
    return bad(why, cap, "\"template.variables\" is %s, not an object",
               type_name(vars));
  if (ver && !json_is_string(ver))
    return bad(why, cap, "\"template.version\" is %s, not a string",
               type_name(ver));
  char *vtext = vars ? json_dumps(vars, JSON_COMPACT) : NULL;
  if (vars && !vtext) return CG_ENOMEM;
  int err = 0;
  *out = cg_reply_template(json_string_value(id), vtext,
                           ver ? json_string_value(ver) : NULL, &err);
  free(vtext);
  if (!*out)
    return err == CG_ENOMEM ? err
                            : bad(why, cap, "%s", "\"template\" is not valid");
  return 0;
}

static int parse_object(const json_t *root, cg_reply **out, char *why,
                        size_t cap) {
  static const char *const keys[] = {"keep",   "card", "template", "toast",
                                     "status", "body", "inline", "variables",
                                     "private_variables"};
  if (only_keys(root, keys, CG_ARRAY_SIZE(keys), "the answer", why, cap))
    return CG_EMALFORMED;
  const json_t *keep = json_object_get(root, "keep");
  const json_t *card = json_object_get(root, "card");
  const json_t *tpl = json_object_get(root, "template");
  const json_t *toast = json_object_get(root, "toast");
  const json_t *status = json_object_get(root, "status");
  const json_t *body = json_object_get(root, "body");
  const json_t *inl = json_object_get(root, "inline");
  const json_t *vars = json_object_get(root, "variables");         /* DingTalk */
  const json_t *pvars = json_object_get(root, "private_variables"); /* DingTalk */
  size_t nkeys = json_object_size(root);
  if (nkeys == 0)
    return bad(
        why, cap, "%s",
        "the answer is an empty object (say {\"keep\":true} to keep the card)");

  if (status || body) { /* custom: exactly status + body */
    if (!status || !body || nkeys != 2)
      return bad(
          why, cap, "%s",
          "a custom answer is exactly {\"status\":<int>,\"body\":<JSON>}");
    if (!json_is_integer(status))
      return bad(why, cap, "\"status\" is %s, not an integer",
                 type_name(status));
    json_int_t st = json_integer_value(status);
    if (st < 200 || st > 599)
      return bad(why, cap, "%s", "\"status\" is outside 200..599");
    char *text = json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!text) return CG_ENOMEM;
    int err = 0;
    *out = cg_reply_custom((int)st, text, &err);
    free(text);
    return *out ? 0 : err;
  }
  if (keep) {
    if (!json_is_true(keep))
      return bad(why, cap, "\"keep\" is %s, not true", type_name(keep));
    if (nkeys != 1)
      return bad(why, cap, "%s", "\"keep\" cannot be combined with other keys");
    *out = cg_reply_keep();
    return *out ? 0 : CG_ENOMEM;
  }
  if ((card != NULL) + (tpl != NULL) + (vars != NULL) > 1)
    return bad(why, cap, "%s",
               "only one of \"card\", \"template\" and \"variables\" can be given");
  if (vars && !json_is_object(vars))
    return bad(why, cap, "\"variables\" is %s, not an object", type_name(vars));
  if (pvars && !json_is_object(pvars))
    return bad(why, cap, "\"private_variables\" is %s, not an object", type_name(pvars));
  cg_reply *r = NULL;
  int rc = 0;
  if (card) {
    if (!json_is_object(card))
      return bad(why, cap, "\"card\" is %s, not an object", type_name(card));
    r = cg__reply_card_take(json_incref((json_t *)card), NULL);
    if (!r) return CG_ENOMEM;
  } else if (tpl) {
    if ((rc = parse_template(tpl, &r, why, cap)) != 0) return rc;
  } else if (vars) {
    r = cg__reply_vars_take(json_deep_copy(vars));
    if (!r) return CG_ENOMEM;
  } else {
    if (!(r = cg_reply_keep())) return CG_ENOMEM;
  }
  if (toast && (rc = parse_toast(toast, r, why, cap)) != 0) goto fail;
  if (pvars && !(r->private_vars = json_deep_copy(pvars))) {
    rc = CG_ENOMEM;
    goto fail;
  }
  if (inl) {
    static const char *const ikeys[] = {"title", "url"};
    if (!json_is_object(inl)) {
      rc = bad(why, cap, "\"inline\" is %s, not an object", type_name(inl));
      goto fail;
    }
    if ((rc = only_keys(inl, ikeys, 2, "\"inline\"", why, cap)) != 0) goto fail;
    const json_t *title = json_object_get(inl, "title");
    const json_t *url = json_object_get(inl, "url");
    if (!json_is_string(title)) {
      rc = bad(why, cap, "\"inline.title\" is %s, not a string",
               title ? type_name(title) : "missing");
      goto fail;
    }
    if (url && !json_is_string(url)) {
      rc = bad(why, cap, "\"inline.url\" is %s, not a string", type_name(url));
      goto fail;
    }
    rc = cg_reply_set_inline(r, json_string_value(title),
                             url ? json_string_value(url) : NULL);
    if (rc) {
      if (rc != CG_ENOMEM)
        rc = bad(why, cap, "%s", "\"inline\" is not valid text");
      goto fail;
    }
  }
  *out = r;
  return 0;
fail:
  cg_reply_free(r);
  return rc;
}

int cg__upstream_parse_answer(const char *body, size_t len, cg_reply **out,
                              char *why, size_t why_cap) {
  *out = NULL;
  if (why_cap) why[0] = '\0';
  if (len > CG__UPSTREAM_MAX_RESPONSE)
    return bad(why, why_cap, "%s", "the answer is over 1 MiB");
  json_error_t je;
  json_t *root =
      json_loadb(body, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &je);
  if (!root) {
    if (json_error_code(&je) == json_error_out_of_memory) return CG_ENOMEM;
    char msg[200];
    cg_fmt(msg, sizeof(msg), "not JSON (line %d column %d)", je.line,
           je.column);
    return bad(why, why_cap, "%s", msg);
  }
  int rc;
  if (!json_is_object(root))
    rc = bad(why, why_cap, "the answer is %s, not an object", type_name(root));
  else
    rc = parse_object(root, out, why, why_cap);
  json_decref(root);
  return rc;
}

/* ------------------------------------------------------------- handler */

static cg_reply *fallback_reply(const up_route *rt, const cg_action *a) {
  if (a->kind != CG_KIND_CARD_ACTION) return NULL; /* no toast on a preview */
  int err;
  cg_reply *r = cg_reply_toast(rt->fb_type, rt->fb_content, &err);
  if (r && rt->fb_en_us) cg_reply_toast_i18n(r, "en_us", rt->fb_en_us);
  if (r && !strcmp(rt->fb_content, DEFAULT_FALLBACK_ZH))
    cg_reply_toast_i18n(r, "zh_cn", DEFAULT_FALLBACK_ZH);
  return r;
}

static const char *mid(const cg_action *a) {
  return a->message_id ? a->message_id : "(no message id)";
}

static void on_answer(int rc, const cg__https_resp *resp, void *ud) {
  up_call *c = ud;
  up_route *rt = c->rt;
  cg_responder *r = c->r;
  cg_app *app = rt->set->app;
  uint64_t t0 = c->t0;
  free(c);
  if (!app) { /* the app is gone: its responders are detached */
    cg_respond(r, NULL);
    return;
  }
  const cg_action *a = cg_responder_action(r);
  unsigned long long ms = (unsigned long long)(uv_now(cg__app_loop(app)) - t0);
  cg_reply *reply = NULL;
  char why[256];
  why[0] = '\0';
  if (rc != 0) {
    cg_fmt(why, sizeof(why), "%s%s%.150s",
           rc == CG_ETOOBIG ? "the answer is over 1 MiB" : cg_strerror(rc),
           resp->detail[0] && rc != CG_ETOOBIG ? ": " : "",
           rc != CG_ETOOBIG ? resp->detail : "");
  } else if (resp->status < 200 || resp->status > 299) {
    cg_fmt(why, sizeof(why), "HTTP %d", resp->status);
  } else {
    int prc = cg__upstream_parse_answer(resp->body, resp->body_len, &reply, why,
                                        sizeof(why));
    if (prc == CG_ENOMEM)
      cg_fmt(why, sizeof(why), "out of memory reading the answer");
    if (prc != 0 && resp->content_type[0] &&
        !strstr(resp->content_type, "json")) {
      size_t n = strlen(why);
      cg_fmt(why + n, sizeof(why) - n, " (Content-Type %.60s)",
             resp->content_type);
    }
  }
  if (!reply) {
    cg__log(app, CG_LOG_WARN, "upstream",
            "%s for %s after %llu ms: %s: answered the fallback toast",
            rt->log_url, mid(a), ms, why);
    reply = fallback_reply(rt, a);
  } else {
    cg__log(app, CG_LOG_DEBUG, "upstream", "%s answered %s in %llu ms",
            rt->log_url, mid(a), ms);
  }
  cg_respond(r, reply); /* late: the core logs it (and the outbox takes it) */
}

static void upstream_handler(const cg_action *a, cg_responder *r, void *ud) {
  up_route *rt = ud;
  cg__upstreams *u = rt->set;
  cg_app *app = u->app;
  /* The wall-clock moment Lark stops waiting: from the arrival, not from
   * the loop's cached clock (which lags under load). */
  char *body = cg__upstream_request_json(a, a->received_at_ms + (int64_t)cg__deadline_for(app, a));
  uint64_t left = cg_responder_remaining_ms(r);
  up_call *c = body ? malloc(sizeof(*c)) : NULL;
  int rc = CG_ENOMEM;
  if (c) {
    c->rt = rt;
    c->r = r;
    c->t0 = uv_now(cg__app_loop(app));
    cg__https_req q;
    memset(&q, 0, sizeof(q));
    q.method = "POST";
    q.url = rt->url;
    q.headers = (const char *const *)rt->headers;
    q.body = body;
    q.body_len = strlen(body);
    q.timeout_ms =
        rt->timeout_ms ? rt->timeout_ms : (uint32_t)(left ? left : 1);
    q.max_response_bytes = CG__UPSTREAM_MAX_RESPONSE;
    rc = cg__https_request(u->http, &q, on_answer, c);
  }
  if (body) {
    memset(body, 0, strlen(body)); /* card values may be personal data */
    free(body);
  }
  if (rc != 0) {
    free(c);
    cg__log(app, CG_LOG_ERROR, "upstream",
            "%s for %s: could not send (%s): answered the fallback toast",
            rt->log_url, mid(a), cg_strerror(rc));
    cg_respond(r, fallback_reply(rt, a));
  }
}

/* The URL for log lines: scheme://host[:port]/path — no "user:pass@"
 * (curl sends it as Basic auth), no query or fragment (tokens live there). */
static char *loggable_url(const char *url) {
  size_t end = strcspn(url, "?#");
  const char *auth = strstr(url, "://");
  size_t start = auth ? (size_t)(auth - url) + 3 : 0;
  size_t host_end = start + strcspn(url + start, "/?#");
  const char *at = NULL;
  for (const char *p = url + start; p < url + host_end; p++)
    if (*p == '@') at = p;
  if (!at) return cg_strndup(url, end);
  cg_buf b;
  cg_buf_init(&b, end + 1);
  if (cg_buf_append(&b, url, start) || cg_buf_append(&b, at + 1, (size_t)(url + end - (at + 1)))) {
    cg_buf_free(&b);
    return NULL;
  }
  return b.data ? b.data : cg_strdup("");
}

int cg_app_route_upstream(cg_app *app, const char *match, const char *url,
                          const cg_upstream_options *o) {
  if (!app) return CG_EINVAL;
  if (!url || !(starts_with(url, "http://") || starts_with(url, "https://")) ||
      has_line_break(url)) {
    cg_fmt(cg__app_error_buf(app), CG__APP_ERROR_CAP,
           "upstream URL must start with http:// or https://");
    return CG_EINVAL;
  }
  cg__upstreams **slot = cg__app_upstreams(app);
  if (!*slot) {
    cg__upstreams *u = calloc(1, sizeof(*u));
    if (!u) return CG_ENOMEM;
    int err = 0;
    u->app = app;
    u->http = cg__https_new(cg__app_loop(app), &err);
    if (!u->http) {
      free(u);
      return err ? err : CG_ENOMEM;
    }
    *slot = u;
  }
  up_route *rt = calloc(1, sizeof(*rt));
  if (!rt) return CG_ENOMEM;
  rt->set = *slot;
  rt->timeout_ms = o ? o->timeout_ms : 0;
  rt->url = cg_strdup(url);
  rt->log_url = loggable_url(url);
  rt->fb_type =
      cg_strdup(o && !cg_str_empty(o->fallback_type) ? o->fallback_type
                                                     : DEFAULT_FALLBACK_TYPE);
  int custom = o && !cg_str_empty(o->fallback_content);
  rt->fb_content =
      cg_strdup(custom ? o->fallback_content : DEFAULT_FALLBACK_ZH);
  const char *en =
      custom ? (o->fallback_en_us && o->fallback_en_us[0] ? o->fallback_en_us
                                                          : NULL)
             : DEFAULT_FALLBACK_EN;
  if (en) rt->fb_en_us = cg_strdup(en);
  int rc = CG_ENOMEM;
  if (!rt->url || !rt->log_url || !rt->fb_type || !rt->fb_content ||
      (en && !rt->fb_en_us))
    goto fail;
  { /* the fallback must be a valid toast, or it would fail when needed */
    cg_reply *probe = cg_reply_toast(rt->fb_type, rt->fb_content, &rc);
    if (probe && rt->fb_en_us)
      rc = cg_reply_toast_i18n(probe, "en_us", rt->fb_en_us);
    cg_reply_free(probe);
    if (rc) {
      if (rc != CG_ENOMEM)
        cg_fmt(cg__app_error_buf(app), CG__APP_ERROR_CAP,
               "upstream fallback toast: not valid UTF-8 text");
      goto fail;
    }
  }
  if ((rc = build_headers(rt, o, app)) != 0) goto fail;
  if ((rc = cg_app_route(app, match, upstream_handler, rt)) != 0) goto fail;
  rt->next = rt->set->routes;
  rt->set->routes = rt;
  return 0;
fail:
  route_free(rt);
  return rc;
}
