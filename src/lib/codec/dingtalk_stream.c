/* DingTalk Stream-mode codec (dingtalk_stream.h). Facts:
 * ../shared/protocols/dingtalk.md §1.2-§1.3 (open + connect), §2 (frames,
 * ACKs), §3.1-§3.4 (card callbacks, bot messages), §4.7 (cardParamMap);
 * §9 and §10 override the rest.
 *
 * Every byte this file writes towards the platform is what the official
 * Node SDK (dingtalk-stream 2.1.5, dist/client.mjs) would write: JSON.stringify
 * of the objects it builds, key order included. Where we serialize a value
 * ourselves (echoed headers, cardParamMap, escaped strings) we follow
 * JSON.stringify's rules rather than jansson's dump: array-index keys first,
 * \b and \f short escapes, lowercase \u00xx, '/' and non-ASCII raw, numbers
 * in ECMAScript Number::toString form.
 *
 * Ownership of a decoded action: rec->root is a JSON array
 *   [ data object, headers.messageId, derived… ]
 * so every borrowed string of the action (including the parsed card
 * `content` and the trimmed message text) lives as long as the record; the
 * data object itself is never modified. */
#include "dingtalk_stream.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/limits.h"
#include "../core/reply_int.h"
#include "cardgate/error.h"
#include "json_util.h"

/* ---- errors ------------------------------------------------------------- */

#define fail cg_fail /* common.h */

/* Copies parser text, replacing anything but printable ASCII. */
static void copy_printable(char *dst, size_t cap, const char *src) {
  size_t i = 0;
  for (; src[i] && i + 1 < cap; i++) {
    unsigned char c = (unsigned char)src[i];
    dst[i] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
  }
  dst[i] = '\0';
}

static void buf_truncate(cg_buf *b, size_t len) {
  b->len = len;
  if (b->data) b->data[len] = '\0';
}

/* ---- JSON in ------------------------------------------------------------ */


/* Parses p[0..n) as a JSON object named what. NULL + *rc on failure. */
static json_t *parse_object(const char *p, size_t n, const char *what,
                            char *err, size_t errlen, int *rc) {
  if (!cg__json_depth_ok(p, n, CG_LIMIT_JSON_DEPTH)) {
    *rc =
        fail(err, errlen, CG_EMALFORMED, "%s nests JSON deeper than %d levels",
             what, CG_LIMIT_JSON_DEPTH);
    return NULL;
  }
  json_error_t je;
  json_t *j = json_loadb(p, n, JSON_REJECT_DUPLICATES, &je);
  if (!j) {
    if (json_error_code(&je) == json_error_out_of_memory) {
      *rc = fail(err, errlen, CG_ENOMEM, "out of memory parsing %s", what);
      return NULL;
    }
    /* No input bytes in the message: jansson quotes them after "near". */
    char text[JSON_ERROR_TEXT_LENGTH];
    copy_printable(text, sizeof text, je.text);
    char *near = strstr(text, " near '");
    if (near) *near = '\0';
    *rc = fail(err, errlen, CG_EMALFORMED,
               "%s is not valid JSON: %s at line %d column %d", what, text,
               je.line, je.column);
    return NULL;
  }
  if (!json_is_object(j)) {
    *rc = fail(err, errlen, CG_EMALFORMED, "%s must be a JSON object, not %s",
               what, cg__json_type_name(j));
    json_decref(j);
    return NULL;
  }
  *rc = 0;
  return j;
}

/* A member, with JSON null treated as absent. */
static json_t *member(const json_t *obj, const char *key) {
  json_t *v = json_object_get(obj, key);
  return json_is_null(v) ? NULL : v;
}

/* Optional string member: absent leaves *dst alone; wrong type fails. */
static int opt_str(const json_t *obj, const char *path, const char *key,
                   const char **dst, char *err, size_t errlen) {
  json_t *v = obj ? member(obj, key) : NULL;
  if (!v) return 0;
  if (!json_is_string(v))
    return fail(err, errlen, CG_EMALFORMED, "%s.%s must be a string, not %s",
                path, key, cg__json_type_name(v));
  *dst = json_string_value(v);
  return 0;
}

/* A required id: a string of 1..CG_LIMIT_ID bytes. */
static int req_id(const json_t *obj, const char *path, const char *key,
                  const char **dst, char *err, size_t errlen) {
  const char *s = NULL;
  int rc = opt_str(obj, path, key, &s, err, errlen);
  if (rc) return rc;
  if (!s || !*s)
    return fail(err, errlen, CG_EMALFORMED, "%s.%s is missing", path, key);
  if (strlen(s) > CG_LIMIT_ID)
    return fail(err, errlen, CG_EMALFORMED, "%s.%s is longer than %u bytes",
                path, key, CG_LIMIT_ID);
  *dst = s;
  return 0;
}

/* ---- JSON out, the JSON.stringify way ------------------------------------ */

/* A JSON string literal as JSON.stringify writes it (ECMA-262
 * QuoteJSONString): ", \, \b \f \n \r \t short, other controls as \u00xx,
 * everything else (including '/', DEL and non-ASCII) as is. s is UTF-8
 * (jansson guarantees it for decoded strings). */
static int js_quote(cg_buf *b, const char *s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  int rc = cg_buf_append(b, "\"", 1);
  size_t run = 0;
  for (size_t i = 0; i < n && !rc; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    rc = cg_buf_append(b, s + run, i - run);
    if (rc) break;
    char esc[6] = {'\\', 0, 0, 0, 0, 0};
    size_t el = 2;
    switch (c) {
      case '"':
        esc[1] = '"';
        break;
      case '\\':
        esc[1] = '\\';
        break;
      case '\b':
        esc[1] = 'b';
        break;
      case '\f':
        esc[1] = 'f';
        break;
      case '\n':
        esc[1] = 'n';
        break;
      case '\r':
        esc[1] = 'r';
        break;
      case '\t':
        esc[1] = 't';
        break;
      default:
        esc[1] = 'u', esc[2] = '0', esc[3] = '0';
        esc[4] = hex[c >> 4], esc[5] = hex[c & 15];
        el = 6;
    }
    rc = cg_buf_append(b, esc, el);
    run = i + 1;
  }
  if (!rc) rc = cg_buf_append(b, s + run, n - run);
  if (!rc) rc = cg_buf_append(b, "\"", 1);
  return rc;
}

static int js_quotes(cg_buf *b, const char *s) {
  return js_quote(b, s, strlen(s));
}

/* A double as ECMAScript Number::toString: the shortest digits that read
 * back to v, then plain notation for exponents -7 < e < 21, else d.ddde±x. */
static int js_number(cg_buf *b, double v) {
  if (v != v || isinf(v)) return cg_buf_append(b, "null", 4);
  if (v == 0) return cg_buf_append(b, "0", 1);
  char e[40];
  int p;
  for (p = 1; p <= 17; p++) {
    snprintf(e, sizeof e, "%.*e", p - 1, v);
    if (strtod(e, NULL) == v) break;
  }
  if (p > 17) snprintf(e, sizeof e, "%.16e", v);
  /* e = [-]d[.ddd]e±x */
  char digits[24];
  size_t k = 0;
  const char *q = e;
  int neg = 0;
  if (*q == '-') neg = 1, q++;
  for (; *q && *q != 'e'; q++)
    if (*q >= '0' && *q <= '9' && k < sizeof digits - 1) digits[k++] = *q;
  while (k > 1 && digits[k - 1] == '0') k--;
  digits[k] = '\0';
  /* The exponent snprintf wrote ("e+05", "e-300"): a checked parse. */
  int64_t x = 0;
  if (*q != 'e' || cg_parse_i64(q + 1 + (q[1] == '+'), strlen(q + 1 + (q[1] == '+')), &x) != 0 || x < -400 ||
      x > 400)
    return CG_EMALFORMED; /* cannot happen for a finite double */
  int n = (int)x + 1; /* the decimal point sits after n digits */
  char out[64];
  size_t o = 0;
  if (neg) out[o++] = '-';
  if ((int)k <= n && n <= 21) {
    memcpy(out + o, digits, k), o += k;
    for (int i = (int)k; i < n; i++) out[o++] = '0';
  } else if (0 < n && n <= 21) {
    memcpy(out + o, digits, (size_t)n), o += (size_t)n;
    out[o++] = '.';
    memcpy(out + o, digits + n, k - (size_t)n), o += k - (size_t)n;
  } else if (-6 < n && n <= 0) {
    out[o++] = '0', out[o++] = '.';
    for (int i = 0; i < -n; i++) out[o++] = '0';
    memcpy(out + o, digits, k), o += k;
  } else {
    out[o++] = digits[0];
    if (k > 1) {
      out[o++] = '.';
      memcpy(out + o, digits + 1, k - 1), o += k - 1;
    }
    o += (size_t)snprintf(out + o, sizeof out - o, "e%c%d",
                          n - 1 < 0 ? '-' : '+', abs(n - 1));
  }
  return cg_buf_append(b, out, o);
}

/* 1 when key is an ECMAScript array index ("0", "17", < 2^32 - 1): such
 * keys come first in ascending order when JSON.stringify walks an object
 * (OrdinaryOwnPropertyKeys), the others follow in insertion order. */
static int array_index(const char *k, unsigned long long *out) {
  if (!*k || (k[0] == '0' && k[1])) return 0;
  unsigned long long v = 0;
  for (const char *p = k; *p; p++) {
    if (*p < '0' || *p > '9') return 0;
    v = v * 10 + (unsigned)(*p - '0');
    if (v >= 4294967295ull) return 0;
  }
  *out = v;
  return 1;
}

static int js_value(cg_buf *b, const json_t *v, int depth);

static int js_member(cg_buf *b, int *first, const char *k, const json_t *v,
                     int depth) {
  int rc = *first ? 0 : cg_buf_append(b, ",", 1);
  *first = 0;
  if (!rc) rc = js_quotes(b, k);
  if (!rc) rc = cg_buf_append(b, ":", 1);
  if (!rc) rc = js_value(b, v, depth);
  return rc;
}

typedef struct idx_key {
  unsigned long long n;
  const char *k;
  json_t *v;
} idx_key;

static int idx_cmp(const void *a, const void *b) {
  const idx_key *x = a, *y = b;
  return x->n < y->n ? -1 : x->n > y->n;
}

static int js_object(cg_buf *b, const json_t *obj, int depth) {
  int rc = cg_buf_append(b, "{", 1), first = 1;
  const char *k;
  json_t *v;
  unsigned long long x;
  /* Index keys first, ascending: sorted, not selected, so a hostile object
   * of 100000 numeric keys costs n log n. */
  size_t nidx = 0;
  json_object_foreach((json_t *)obj, k, v) nidx += array_index(k, &x);
  if (nidx && !rc) {
    idx_key *keys = malloc(nidx * sizeof *keys);
    if (!keys) return CG_ENOMEM;
    size_t i = 0;
    json_object_foreach((json_t *)obj, k, v) {
      if (array_index(k, &x)) keys[i++] = (idx_key){x, k, v};
    }
    qsort(keys, nidx, sizeof *keys, idx_cmp);
    for (i = 0; i < nidx && !rc; i++)
      rc = js_member(b, &first, keys[i].k, keys[i].v, depth);
    free(keys);
  }
  json_object_foreach((json_t *)obj, k, v) {
    if (rc) break;
    if (!array_index(k, &x)) rc = js_member(b, &first, k, v, depth);
  }
  if (!rc) rc = cg_buf_append(b, "}", 1);
  return rc;
}

/* JSON.stringify(v) for a jansson value. depth bounds the recursion. */
static int js_value(cg_buf *b, const json_t *v, int depth) {
  if (depth > 2 * CG_LIMIT_JSON_DEPTH) return CG_ETOOBIG;
  switch (json_typeof(v)) {
    case JSON_OBJECT:
      return js_object(b, v, depth + 1);
    case JSON_ARRAY: {
      int rc = cg_buf_append(b, "[", 1);
      for (size_t i = 0; !rc && i < json_array_size(v); i++) {
        if (i) rc = cg_buf_append(b, ",", 1);
        if (!rc) rc = js_value(b, json_array_get(v, i), depth + 1);
      }
      return rc ? rc : cg_buf_append(b, "]", 1);
    }
    case JSON_STRING:
      return js_quote(b, json_string_value(v), json_string_length(v));
    case JSON_INTEGER:
      return cg_buf_appendf(b, "%lld", (long long)json_integer_value(v));
    case JSON_REAL:
      return js_number(b, json_real_value(v));
    case JSON_TRUE:
      return cg_buf_append(b, "true", 4);
    case JSON_FALSE:
      return cg_buf_append(b, "false", 5);
    case JSON_NULL:
    default:
      return cg_buf_append(b, "null", 4);
  }
}

/* A malloc'd JSON.stringify(v); NULL on ENOMEM. */
static char *js_dump(const json_t *v) {
  cg_buf b;
  cg_buf_init(&b, 8 * (size_t)CG_LIMIT_BODY_HARD);
  if (js_value(&b, v, 0) != 0 || !b.data) {
    cg_buf_free(&b);
    return NULL;
  }
  return b.data;
}

/* ---- frames ------------------------------------------------------------- */

void cg__dt_frame_clear(cg__dt_frame *f) {
  if (!f) return;
  json_decref(f->root);
  memset(f, 0, sizeof *f);
}

int cg__dt_frame_decode(const char *buf, size_t len, cg__dt_frame *out,
                        char *err, size_t errlen) {
  cg_assert(out);
  memset(out, 0, sizeof *out);
  if (err && errlen) err[0] = '\0';
  if (!buf) return fail(err, errlen, CG_EMALFORMED, "empty frame");
  if (len > CG__DT_FRAME_MAX)
    return fail(err, errlen, CG_ETOOBIG,
                "frame of %zu bytes is over the %u-byte limit", len,
                CG__DT_FRAME_MAX);
  int rc;
  json_t *root = parse_object(buf, len, "frame", err, errlen, &rc);
  if (!root) return rc;

  cg__dt_frame f;
  memset(&f, 0, sizeof f);
  f.root = root;
  /* type (§2.1) */
  json_t *t = json_object_get(root, "type");
  if (!json_is_string(t)) {
    rc = fail(err, errlen, CG_EMALFORMED, "$.type must be a string, not %s",
              t ? cg__json_type_name(t) : "missing");
    goto bad;
  }
  const char *ts = json_string_value(t);
  if (strcmp(ts, "SYSTEM") == 0)
    f.type = CG__DT_SYSTEM;
  else if (strcmp(ts, "EVENT") == 0)
    f.type = CG__DT_EVENT;
  else if (strcmp(ts, "CALLBACK") == 0)
    f.type = CG__DT_CALLBACK;
  else {
    rc = fail(err, errlen, CG_EMALFORMED,
              "$.type must be SYSTEM, EVENT or CALLBACK");
    goto bad;
  }
  /* headers: an object of strings */
  f.headers = json_object_get(root, "headers");
  if (!json_is_object(f.headers)) {
    rc = fail(err, errlen, CG_EMALFORMED, "$.headers must be an object, not %s",
              f.headers ? cg__json_type_name(f.headers) : "missing");
    goto bad;
  }
  const char *k;
  json_t *v;
  json_object_foreach(f.headers, k, v) {
    if (!json_is_string(v)) {
      rc = fail(err, errlen, CG_EMALFORMED,
                "every header value must be a string; one is %s",
                cg__json_type_name(v));
      goto bad;
    }
  }
  json_t *topic = json_object_get(f.headers, "topic");
  f.topic = topic ? json_string_value(topic) : "";
  json_t *mid = json_object_get(f.headers, "messageId");
  f.message_id = mid ? json_string_value(mid) : "";
  size_t ml = mid ? json_string_length(mid) : 0;
  if ((ml == 0 && f.type != CG__DT_SYSTEM) || ml > CG_LIMIT_ID ||
      strlen(f.message_id) != ml) {
    rc = fail(err, errlen, CG_EMALFORMED,
              "$.headers.messageId must be 1 to %u bytes long, got %zu",
              CG_LIMIT_ID, ml);
    goto bad;
  }
  /* data: a string (itself JSON, parsed by whoever needs it) */
  json_t *d = json_object_get(root, "data");
  if (d && !json_is_string(d)) {
    rc = fail(err, errlen, CG_EMALFORMED, "$.data must be a string, not %s",
              cg__json_type_name(d));
    goto bad;
  }
  f.data = d ? json_string_value(d) : "";
  f.data_len = d ? json_string_length(d) : 0;
  *out = f;
  return 0;

bad:
  json_decref(root);
  return rc;
}

/* ---- ACKs -----------------------------------------------------------------
 */

/* Mirrors DWClient.onSystem, case "ping":
 *   JSON.stringify({code: 200, headers: downstream.headers, message: "OK",
 *                   data: downstream.data})
 * The headers object is echoed whole (JSON.parse then stringify: same keys,
 * index keys first); data is omitted when the ping had none (undefined). */
int cg__dt_ack_ping(const cg__dt_frame *ping, cg_buf *out) {
  cg_assert(ping && ping->root && out);
  size_t start = out->len;
  int rc = cg_buf_appends(out, "{\"code\":200,\"headers\":");
  if (!rc) rc = js_value(out, ping->headers, 0);
  if (!rc) rc = cg_buf_appends(out, ",\"message\":\"OK\"");
  if (!rc && json_object_get(ping->root, "data")) {
    rc = cg_buf_appends(out, ",\"data\":");
    if (!rc) rc = js_quote(out, ping->data, ping->data_len);
  }
  if (!rc) rc = cg_buf_append(out, "}", 1);
  if (rc) buf_truncate(out, start);
  return rc;
}

/* Mirrors DWClient.send(messageId, value) (used by socketCallBackResponse)
 * and DWClient.onEvent, which build the same object:
 *   JSON.stringify({code: 200, headers: {contentType: "application/json",
 *                   messageId}, message: "OK", data: JSON.stringify(value)})
 * code and message are parameters (the SDK fixes 200 / "OK"; Go sends 500
 * with the error text, §2.3); message NULL = "OK"; data NULL = no data key
 * (JSON.stringify(undefined) drops it). */
int cg__dt_ack(const cg__dt_frame *f, int code, const char *message,
               const char *data, size_t data_len, cg_buf *out) {
  cg_assert(f && out);
  size_t start = out->len;
  int rc = cg_buf_appendf(out,
                          "{\"code\":%d,\"headers\":{\"contentType\":"
                          "\"application/json\",\"messageId\":",
                          code);
  if (!rc) rc = js_quotes(out, f->message_id ? f->message_id : "");
  if (!rc) rc = cg_buf_appends(out, "},\"message\":");
  if (!rc) rc = js_quotes(out, message ? message : "OK");
  if (!rc && data) {
    rc = cg_buf_appends(out, ",\"data\":");
    if (!rc) rc = js_quote(out, data, data_len);
  }
  if (!rc) rc = cg_buf_append(out, "}", 1);
  if (rc) buf_truncate(out, start);
  return rc;
}

/* The value DWClient.onEventReceived returns ({status: EventAck.SUCCESS} by
 * default; {status, message} in the SDK's README), stringified by
 * onEvent: {"status":"SUCCESS"|"LATER"[,"message":…]}. message NULL = no
 * message key. */
int cg__dt_event_ack_data(int success, const char *message, cg_buf *out) {
  cg_assert(out);
  size_t start = out->len;
  int rc = cg_buf_appends(
      out, success ? "{\"status\":\"SUCCESS\"" : "{\"status\":\"LATER\"");
  if (!rc && message) {
    rc = cg_buf_appends(out, ",\"message\":");
    if (!rc) rc = js_quotes(out, message);
  }
  if (!rc) rc = cg_buf_append(out, "}", 1);
  if (rc) buf_truncate(out, start);
  return rc;
}

/* ---- connection open (§1.2, §9.1) ---------------------------------------- */

/* Mirrors DWClient.getEndpoint's axios body
 *   {clientId, clientSecret, ua, subscriptions}
 * with subscriptions as the SDK builds them: defaultConfig's
 * {type:"EVENT",topic:"*"} first (when events), then one
 * {type:"CALLBACK",topic} per registerCallbackListener, duplicates skipped. */
int cg__dt_open_request(const char *client_id, const char *client_secret,
                        const char *ua, const char *const *topics, int events,
                        cg_buf *out) {
  cg_assert(out);
  if (cg_str_empty(client_id) || cg_str_empty(client_secret)) return CG_EINVAL;
  size_t start = out->len;
  int rc = cg_buf_appends(out, "{\"clientId\":");
  if (!rc) rc = js_quotes(out, client_id);
  if (!rc) rc = cg_buf_appends(out, ",\"clientSecret\":");
  if (!rc) rc = js_quotes(out, client_secret);
  if (!rc) rc = cg_buf_appends(out, ",\"ua\":");
  if (!rc) rc = js_quotes(out, ua ? ua : "");
  if (!rc) rc = cg_buf_appends(out, ",\"subscriptions\":[");
  int n = 0;
  if (!rc && events) {
    rc = cg_buf_appends(out, "{\"type\":\"EVENT\",\"topic\":\"*\"}");
    n++;
  }
  for (size_t i = 0; !rc && topics && topics[i]; i++) {
    int dup = 0;
    for (size_t j = 0; j < i; j++) dup |= strcmp(topics[i], topics[j]) == 0;
    if (dup) continue;
    rc = cg_buf_appends(out, n ? ",{\"type\":\"CALLBACK\",\"topic\":"
                               : "{\"type\":\"CALLBACK\",\"topic\":");
    if (!rc) rc = js_quotes(out, topics[i]);
    if (!rc) rc = cg_buf_append(out, "}", 1);
    n++;
  }
  if (!rc) rc = cg_buf_appends(out, "]}");
  if (rc) buf_truncate(out, start);
  return rc;
}

/* The endpoint goes into a request line and a Host header: no controls,
 * no spaces. */
static int url_safe(const char *s) {
  for (const unsigned char *p = (const unsigned char *)s; *p; p++)
    if (*p <= 0x20 || *p == 0x7f) return 0;
  return 1;
}

int cg__dt_open_response(const char *body, size_t len, char **endpoint,
                         char **ticket, char *err, size_t errlen) {
  cg_assert(endpoint && ticket);
  *endpoint = *ticket = NULL;
  if (!body || !len)
    return fail(err, errlen, CG_EMALFORMED, "empty connections/open answer");
  int rc;
  json_t *j =
      parse_object(body, len, "the connections/open answer", err, errlen, &rc);
  if (!j) return rc;
  const char *e = NULL, *t = NULL;
  json_t *ev = json_object_get(j, "endpoint"),
         *tv = json_object_get(j, "ticket");
  if (json_is_string(ev)) e = json_string_value(ev);
  if (json_is_string(tv)) t = json_string_value(tv);
  /* §1.2: every SDK treats an empty endpoint or ticket as failure. */
  if (cg_str_empty(e) || cg_str_empty(t)) {
    rc = fail(err, errlen, CG_EMALFORMED,
              "the connections/open answer has no %s",
              cg_str_empty(e) ? "endpoint" : "ticket");
  } else if (strlen(e) > CG_LIMIT_URL || !url_safe(e) ||
             strlen(t) > CG_LIMIT_URL) {
    rc = fail(err, errlen, CG_EMALFORMED,
              "the connections/open answer has an unusable endpoint or ticket");
  } else {
    *endpoint = cg_strdup(e);
    *ticket = cg_strdup(t);
    if (!*endpoint || !*ticket) {
      free(*endpoint);
      free(*ticket);
      *endpoint = *ticket = NULL;
      rc = fail(err, errlen, CG_ENOMEM, "out of memory");
    }
  }
  json_decref(j);
  return rc;
}

/* §1.3: the endpoint verbatim, then ?ticket= (or &ticket= when it already
 * has a query), the ticket percent-encoded (RFC 3986 unreserved pass). */
char *cg__dt_connect_url(const char *endpoint, const char *ticket) {
  static const char hex[] = "0123456789ABCDEF";
  if (!endpoint || !ticket) return NULL;
  cg_buf b;
  cg_buf_init(&b, 4 * CG_LIMIT_URL + strlen(endpoint) + 3 * strlen(ticket));
  int rc = cg_buf_appends(&b, endpoint);
  if (!rc)
    rc = cg_buf_appends(&b, strchr(endpoint, '?') ? "&ticket=" : "?ticket=");
  for (const unsigned char *p = (const unsigned char *)ticket; !rc && *p; p++) {
    if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
        (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' || *p == '.' ||
        *p == '~') {
      rc = cg_buf_append(&b, p, 1);
    } else {
      char e[3] = {'%', hex[*p >> 4], hex[*p & 15]};
      rc = cg_buf_append(&b, e, 3);
    }
  }
  if (rc || !b.data) {
    cg_buf_free(&b);
    return NULL;
  }
  return b.data;
}

/* ---- payloads → cg_action ---------------------------------------------------
 */

/* A compact jansson dump owned by the action (value_json, like Lark's). */
static char *dump_compact(const json_t *v) {
  return json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
}

/* content / value of a card callback: a JSON string to parse again (§3.1);
 * an object is taken as is (defensive: HTTP-mode samples vary). */
static int card_payload(const json_t *data, const char *key, json_t **out,
                        char *err, size_t errlen) {
  *out = NULL;
  json_t *v = member(data, key);
  if (!v) return 0;
  if (json_is_object(v)) {
    *out = json_incref(v);
    return 0;
  }
  if (!json_is_string(v))
    return fail(err, errlen, CG_EMALFORMED,
                "data.%s must be a JSON string, not %s", key,
                cg__json_type_name(v));
  char what[32];
  cg_fmt(what, sizeof what, "data.%s", key);
  int rc;
  *out = parse_object(json_string_value(v), json_string_length(v), what, err,
                      errlen, &rc);
  return rc;
}

/* Card callback (§3.1). rec->root is [data, messageId] on entry. */
static int decode_card(cg__action_rec *rec, json_t *data, char *err,
                       size_t errlen) {
  cg_action *a = &rec->pub;
  int rc;
  a->kind = CG_KIND_CARD_ACTION;
  if ((rc = req_id(data, "data", "outTrackId", &a->message_id, err, errlen)) ||
      (rc = opt_str(data, "data", "userId", &a->user_id, err, errlen)) ||
      (rc = opt_str(data, "data", "corpId", &a->tenant_key, err, errlen)) ||
      (rc = opt_str(data, "data", "spaceId", &a->chat_id, err, errlen)) ||
      (rc = opt_str(data, "data", "spaceType", &a->host, err, errlen)))
    return rc;
  json_t *payload;
  const char *from = "content";
  if ((rc = card_payload(data, "content", &payload, err, errlen))) return rc;
  if (!payload) {
    from = "value";
    if ((rc = card_payload(data, "value", &payload, err, errlen))) return rc;
  }
  if (!payload)
    return fail(err, errlen, CG_EMALFORMED,
                "a card callback carries its action in data.content (or "
                "data.value); neither is present");
  if (json_array_append_new(rec->root, payload))
    return fail(err, errlen, CG_ENOMEM, "out of memory");
  /* Both shapes: {cardPrivateData:{actionIds, params}} (Stream sample) and
   * {cardPrivateData:{actionIds}, params} (older HTTP-mode doc). */
  json_t *cpd = member(payload, "cardPrivateData");
  if (cpd && !json_is_object(cpd))
    return fail(err, errlen, CG_EMALFORMED,
                "data.%s.cardPrivateData must be an object, not %s", from,
                cg__json_type_name(cpd));
  json_t *params = cpd ? member(cpd, "params") : NULL;
  if (!params) params = member(payload, "params");
  if (params && !json_is_object(params))
    return fail(err, errlen, CG_EMALFORMED,
                "data.%s.cardPrivateData.params must be an object, not %s",
                from, cg__json_type_name(params));
  json_t *ids = cpd ? member(cpd, "actionIds") : NULL;
  if (!ids) ids = member(payload, "actionIds");
  if (ids && !json_is_array(ids))
    return fail(err, errlen, CG_EMALFORMED,
                "data.%s.cardPrivateData.actionIds must be an array, not %s",
                from, cg__json_type_name(ids));
  json_t *first = json_array_get(ids, 0);
  if (first && !json_is_string(first))
    return fail(err, errlen, CG_EMALFORMED,
                "data.%s.cardPrivateData.actionIds[0] must be a string, not "
                "%s",
                from, cg__json_type_name(first));
  if (first) a->name = json_string_value(first);
  if (params) {
    rec->value = params;
    if (!(rec->value_json = dump_compact(params)))
      return fail(err, errlen, CG_ENOMEM, "out of memory");
  }
  return 0;
}

static int is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' ||
         c == '\v';
}

/* Bot message (§3.4). rec->root is [data, messageId] on entry. */
static int decode_message(cg__action_rec *rec, json_t *data, char *err,
                          size_t errlen) {
  cg_action *a = &rec->pub;
  int rc;
  a->kind = CG_KIND_MESSAGE;
  if ((rc = req_id(data, "data", "msgId", &a->message_id, err, errlen)) ||
      (rc =
           opt_str(data, "data", "conversationId", &a->chat_id, err, errlen)) ||
      (rc = opt_str(data, "data", "senderStaffId", &a->user_id, err, errlen)) ||
      (rc = opt_str(data, "data", "senderId", &a->open_id, err, errlen)) ||
      (rc = opt_str(data, "data", "senderCorpId", &a->tenant_key, err,
                    errlen)) ||
      (rc = opt_str(data, "data", "msgtype", &a->tag, err, errlen)))
    return rc;
  json_t *text = member(data, "text");
  if (text && !json_is_object(text))
    return fail(err, errlen, CG_EMALFORMED,
                "data.text must be an object, not %s",
                cg__json_type_name(text));
  json_t *c = text ? member(text, "content") : NULL;
  if (c && !json_is_string(c))
    return fail(err, errlen, CG_EMALFORMED,
                "data.text.content must be a string, not %s",
                cg__json_type_name(c));
  if (c) {
    /* In groups the text starts with a space where the @mention was. */
    const char *s = json_string_value(c);
    size_t n = json_string_length(c);
    while (n && is_space(*s)) s++, n--;
    while (n && is_space(s[n - 1])) n--;
    json_t *t = json_stringn(s, n);
    if (!t || json_array_append_new(rec->root, t))
      return fail(err, errlen, CG_ENOMEM, "out of memory");
    a->input_value = json_string_value(t);
  }
  rec->value = data;
  if (!(rec->value_json = dump_compact(data)))
    return fail(err, errlen, CG_ENOMEM, "out of memory");
  return 0;
}

int cg__dt_decode_action(const cg__dt_frame *f, int64_t now_ms,
                         cg__action_rec **out, char *err, size_t errlen) {
  cg_assert(f && out);
  *out = NULL;
  if (err && errlen) err[0] = '\0';
  int card = strcmp(f->topic ? f->topic : "", CG__DT_TOPIC_CARD) == 0;
  int bot = strcmp(f->topic ? f->topic : "", CG__DT_TOPIC_BOT) == 0;
  if (f->type != CG__DT_CALLBACK || (!card && !bot))
    return fail(err, errlen, CG_EUNSUPPORTED,
                "not a card callback or bot message");
  if (!f->data || !f->data_len)
    return fail(err, errlen, CG_EMALFORMED, "the frame has no data");
  int rc;
  json_t *data = parse_object(f->data, f->data_len, "data", err, errlen, &rc);
  if (!data) return rc;
  cg__action_rec *rec = cg__action_new();
  if (!rec || !(rec->root = json_array())) {
    json_decref(data);
    cg__action_free(rec);
    return fail(err, errlen, CG_ENOMEM, "out of memory");
  }
  /* json_array_append_new releases its value on failure too. */
  json_t *mid = json_string(f->message_id ? f->message_id : "");
  if (json_array_append_new(rec->root, data) ||
      json_array_append_new(rec->root, mid)) {
    cg__action_free(rec);
    return fail(err, errlen, CG_ENOMEM, "out of memory");
  }
  rc = card ? decode_card(rec, data, err, errlen)
            : decode_message(rec, data, err, errlen);
  if (!rc && !(rec->raw_json = cg_strndup(f->data, f->data_len)))
    rc = fail(err, errlen, CG_ENOMEM, "out of memory");
  if (rc) {
    cg__action_free(rec);
    return rc;
  }
  cg_action *a = &rec->pub;
  a->platform = CG_PLATFORM_DINGTALK;
  a->format = CG_FORMAT_DINGTALK;
  a->transport = CG_TRANSPORT_DINGTALK_STREAM;
  a->event_id = json_string_value(mid);
  a->value_json = rec->value_json ? rec->value_json : "{}";
  a->received_at_ms = now_ms;
  *out = rec;
  return 0;
}

/* ---- replies ----------------------------------------------------------------
 */

json_t *cg__dt_param_map(const json_t *vars) {
  if (!json_is_object(vars)) return NULL;
  json_t *m = json_object();
  if (!m) return NULL;
  const char *k;
  json_t *v;
  json_object_foreach((json_t *)vars, k, v) {
    json_t *s;
    if (json_is_string(v)) {
      s = json_incref(v);
    } else if (json_is_null(v)) {
      s = json_string("");
    } else {
      /* §4.7: numbers as decimal text, booleans as true/false, objects and
       * arrays as their JSON text — what a JS caller's JSON.stringify gives. */
      char *t = js_dump(v);
      s = t ? json_string(t) : NULL;
      free(t);
    }
    if (!s || json_object_set_new(m, k, s)) {
      json_decref(m);
      return NULL;
    }
  }
  return m;
}

static void set_dropped(char *dropped, const char *why) {
  if (dropped && !dropped[0]) cg_strlcpy(dropped, why, 128);
}

int cg__dt_encode_reply(const cg_action *a, const cg_reply *r, cg_buf *out,
                        char *dropped) {
  cg_assert(a && out);
  if (dropped) dropped[0] = '\0';
  size_t start = out->len;
  int rc;
  int keep = !r || cg__reply_is_keep(r);
  if (a->kind == CG_KIND_MESSAGE) {
    /* §2.3: the server ignores it; the doc's constant. */
    if (!keep)
      set_dropped(dropped,
                  "a bot message cannot be answered on the socket; send a "
                  "card through the Open API");
    rc = cg_buf_appends(out, "{\"response\":null}");
  } else if (r && r->custom_status > 0) {
    rc = cg_buf_appends(out, r->custom_body ? r->custom_body : "");
  } else if (r && (r->template_id || r->template_vars || r->private_vars)) {
    /* {"response":{"cardData":{"cardParamMap":…},"userPrivateData":
     * {"cardParamMap":…},"cardUpdateOptions":{…}}}: the members present,
     * in the order of dingtalk.md §3.2's table. */
    int shared = r->template_id || r->template_vars;
    rc = cg_buf_appends(out, "{\"response\":{");
    if (!rc && shared) {
      json_t *m = r->template_vars ? cg__dt_param_map(r->template_vars) : json_object();
      rc = cg_buf_appends(out, "\"cardData\":{\"cardParamMap\":");
      if (!rc) rc = m ? js_value(out, m, 0) : CG_ENOMEM;
      if (!rc) rc = cg_buf_appends(out, "},");
      json_decref(m);
    }
    if (!rc && r->private_vars) {
      json_t *m = cg__dt_param_map(r->private_vars);
      rc = cg_buf_appends(out, "\"userPrivateData\":{\"cardParamMap\":");
      if (!rc) rc = m ? js_value(out, m, 0) : CG_ENOMEM;
      if (!rc) rc = cg_buf_appends(out, "},");
      json_decref(m);
    }
    if (!rc)
      rc = cg_buf_appendf(out, "\"cardUpdateOptions\":{%s%s%s}}}",
                          shared ? "\"updateCardDataByKey\":true" : "",
                          shared && r->private_vars ? "," : "",
                          r->private_vars ? "\"updatePrivateDataByKey\":true" : "");
    if (r->card)
      set_dropped(dropped,
                  "a card JSON cannot replace a DingTalk card; only "
                  "template variables are sent");
    if (r->toast_content)
      set_dropped(dropped, "DingTalk card callbacks have no toast");
  } else {
    if (r && r->card)
      set_dropped(dropped,
                  "a card JSON cannot replace a DingTalk card; "
                  "answer with template variables");
    else if (r && r->toast_content)
      set_dropped(dropped, "DingTalk card callbacks have no toast");
    else if (r && r->inline_title)
      set_dropped(dropped, "link previews are Lark-only");
    rc = cg_buf_appends(out, "{\"response\":{}}");
  }
  if (rc) buf_truncate(out, start);
  return rc;
}

char *cg__dt_open_space_id(int group, const char *id) {
  if (!id) return NULL;
  cg_buf b;
  cg_buf_init(&b, strlen(id) + 64);
  if (cg_buf_appends(&b,
                     group ? "dtv1.card//IM_GROUP." : "dtv1.card//IM_ROBOT.") ||
      cg_buf_appends(&b, id)) {
    cg_buf_free(&b);
    return NULL;
  }
  return b.data;
}
