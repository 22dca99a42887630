/* Lark long-connection codec (lark_frame.h). Design note:
 * docs/lark-frame.md. Facts: ../shared/protocols/lark.md §3 (long
 * connection) as corrected by §8 (the official Node SDK on the wire), test
 * vectors §5.3.
 *
 * The protobuf work is protoc-c's generated pbbp2 code: unpack checks the
 * proto2 required fields (Frame 1-4, Header key and value) and skips unknown
 * fields; pack writes an optional string when its pointer is non-NULL and a
 * bytes field when has_payload is set, which is exactly the presence a
 * decoded frame carries (absent → NULL, present and empty → ""), so a frame
 * re-encodes with the fields it arrived with. Unpack runs on a budgeted
 * allocator so a small frame cannot make it allocate much more than its size
 * (thousands of tiny unknown fields or headers each cost a struct). */
#include "lark_frame.h"

#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/limits.h"
#include "cardgate/error.h"
#include "pbbp2.pb-c.h"

/* Header keys and values (lark.md §3.5). */
#define HDR_TYPE "type"
#define HDR_BIZ_RT "biz_rt"
#define TYPE_PING "ping"

/* Bootstrap codes that are retried (lark.md §3.1: 1 system busy and
 * 1000040343 internal error are server errors for Go/Java/Python). */
#define CODE_BUSY 1
#define CODE_INTERNAL INT64_C(1000040343)
/* Upgrade refusals that stop for good (lark.md §3.3, §8.3). */
#define HS_AUTH_FAILED 514
#define HS_FORBIDDEN 403
#define AUTH_TOO_MANY_CONNS "1000040350"

/* Unpack may allocate up to this much beyond FRAME_BUDGET_FACTOR times the
 * frame's size: a real frame needs its own size in strings and payload plus
 * about 50 bytes per header (64 at most) and the Frame struct. */
#define FRAME_BUDGET_FACTOR 4u
#define FRAME_BUDGET_SLACK (32u * 1024u)

/* A ClientConfig interval above a year is ignored like a non-positive one:
 * its users turn seconds into milliseconds and timers. */
#define CONFIG_MAX_SECONDS INT64_C(31536000)

/* ---- errors ------------------------------------------------------------- */

#define fail cg_fail /* common.h */

/* ---- frames ------------------------------------------------------------- */

typedef struct pb_budget {
  size_t used;
  size_t limit;
  int over; /* the budget refused an allocation */
  int oom;  /* malloc failed */
} pb_budget;

static void *pb_alloc(void *data, size_t size) {
  pb_budget *b = data;
  if (size > b->limit - b->used) {
    b->over = 1;
    return NULL;
  }
  void *p = malloc(size ? size : 1);
  if (!p) {
    b->oom = 1;
    return NULL;
  }
  b->used += size;
  return p;
}

static void pb_free(void *data, void *p) {
  CG_UNUSED(data);
  free(p);
}

void cg__lark_frame_clear(cg__lark_frame *f) {
  if (!f) return;
  for (size_t i = 0; i < f->n_headers; i++) {
    free(f->headers[i].key);
    free(f->headers[i].value);
  }
  free(f->headers);
  free(f->payload_encoding);
  free(f->payload_type);
  free(f->payload);
  free(f->log_id_new);
  memset(f, 0, sizeof *f);
}

/* Copies an optional string keeping its presence. 0 or CG_ENOMEM. */
static int copy_opt(char **dst, const char *src) {
  *dst = NULL;
  if (!src) return 0;
  *dst = cg_strdup(src);
  return *dst ? 0 : CG_ENOMEM;
}

static int copy_frame(const Pbbp2__Frame *pb, cg__lark_frame *out) {
  out->seq_id = pb->seqid;
  out->log_id = pb->logid;
  out->service = pb->service;
  out->method = pb->method;
  if (pb->n_headers) {
    out->headers = calloc(pb->n_headers, sizeof *out->headers);
    if (!out->headers) return CG_ENOMEM;
    for (size_t i = 0; i < pb->n_headers; i++) {
      out->n_headers = i + 1;
      out->headers[i].key = cg_strdup(pb->headers[i]->key);
      out->headers[i].value = cg_strdup(pb->headers[i]->value);
      if (!out->headers[i].key || !out->headers[i].value) return CG_ENOMEM;
    }
  }
  if (copy_opt(&out->payload_encoding, pb->payload_encoding) ||
      copy_opt(&out->payload_type, pb->payload_type) ||
      copy_opt(&out->log_id_new, pb->logidnew))
    return CG_ENOMEM;
  if (pb->has_payload) {
    if (cg__lark_frame_set_payload(out, pb->payload.data, pb->payload.len))
      return CG_ENOMEM;
  }
  return 0;
}

int cg__lark_frame_decode(const uint8_t *buf, size_t len, cg__lark_frame *out,
                          char *err, size_t errlen) {
  cg_assert(out);
  memset(out, 0, sizeof *out);
  if (err && errlen) err[0] = '\0';
  if (len > CG__LARK_FRAME_MAX)
    return fail(err, errlen, CG_ETOOBIG,
                "frame of %zu bytes is over the limit of %u bytes", len,
                CG__LARK_FRAME_MAX);
  if (!buf) {
    if (len) return fail(err, errlen, CG_EINVAL, "no frame bytes");
    buf = (const uint8_t *)"";
  }
  pb_budget budget = {0, len * FRAME_BUDGET_FACTOR + FRAME_BUDGET_SLACK, 0, 0};
  ProtobufCAllocator alloc = {pb_alloc, pb_free, &budget};
  Pbbp2__Frame *pb = pbbp2__frame__unpack(&alloc, len, buf);
  if (!pb) {
    if (budget.oom)
      return fail(err, errlen, CG_ENOMEM, "out of memory decoding a frame");
    if (budget.over)
      return fail(err, errlen, CG_EMALFORMED,
                  "frame of %zu bytes holds too many fields", len);
    return fail(err, errlen, CG_EMALFORMED,
                "not a pbbp2 frame: bad wire data, or a required field "
                "(SeqID, LogID, service, method, header key/value) missing");
  }
  int rc = 0;
  if (pb->n_headers > CG__LARK_FRAME_MAX_HEADERS) {
    rc = fail(err, errlen, CG_EMALFORMED, "frame has %zu headers, more than %u",
              pb->n_headers, CG__LARK_FRAME_MAX_HEADERS);
  } else if (copy_frame(pb, out) != 0) {
    rc = fail(err, errlen, CG_ENOMEM, "out of memory decoding a frame");
  }
  pbbp2__frame__free_unpacked(pb, &alloc);
  if (rc) cg__lark_frame_clear(out);
  return rc;
}

const char *cg__lark_frame_header(const cg__lark_frame *f, const char *key) {
  for (size_t i = 0; i < f->n_headers; i++)
    if (strcmp(f->headers[i].key, key) == 0) return f->headers[i].value;
  return NULL;
}

int cg__lark_frame_add_header(cg__lark_frame *f, const char *key,
                              const char *value) {
  cg_assert(key && value);
  char *k = cg_strdup(key), *v = cg_strdup(value);
  cg__lark_header *h =
      k && v ? realloc(f->headers, (f->n_headers + 1) * sizeof *h) : NULL;
  if (!h) {
    free(k);
    free(v);
    return CG_ENOMEM;
  }
  f->headers = h;
  h[f->n_headers].key = k;
  h[f->n_headers].value = v;
  f->n_headers++;
  return 0;
}

int cg__lark_frame_set_payload(cg__lark_frame *f, const void *p, size_t len) {
  uint8_t *copy = malloc(len ? len : 1);
  if (!copy) return CG_ENOMEM;
  if (len) memcpy(copy, p, len);
  free(f->payload);
  f->payload = copy;
  f->payload_len = len;
  f->has_payload = 1;
  return 0;
}

/* protoc-c's output sink appending to a cg_buf; the first error sticks. */
typedef struct buf_sink {
  ProtobufCBuffer base;
  cg_buf *out;
  int rc;
} buf_sink;

static void sink_append(ProtobufCBuffer *b, size_t len, const uint8_t *data) {
  buf_sink *s = (buf_sink *)b;
  if (s->rc == 0) s->rc = cg_buf_append(s->out, data, len);
}

/* Packs f plus, when extra is non-NULL, one more header after its own, with
 * payload (when non-NULL) in place of f's. The pbbp2 structs borrow f's
 * strings: pack only reads them. All or nothing on out. */
static int encode(const cg__lark_frame *f, const cg__lark_header *extra,
                  const void *payload, size_t payload_len, cg_buf *out) {
  size_t n = f->n_headers + (extra ? 1 : 0);
  Pbbp2__Header *hs = n ? calloc(n, sizeof *hs) : NULL;
  Pbbp2__Header **hp = n ? calloc(n, sizeof *hp) : NULL;
  if (n && (!hs || !hp)) {
    free(hs);
    free(hp);
    return CG_ENOMEM;
  }
  for (size_t i = 0; i < n; i++) {
    const cg__lark_header *src = i < f->n_headers ? &f->headers[i] : extra;
    cg_assert(src->key && src->value);
    pbbp2__header__init(&hs[i]);
    hs[i].key = src->key;
    hs[i].value = src->value;
    hp[i] = &hs[i];
  }
  Pbbp2__Frame pb;
  pbbp2__frame__init(&pb);
  pb.seqid = f->seq_id;
  pb.logid = f->log_id;
  pb.service = f->service;
  pb.method = f->method;
  pb.n_headers = n;
  pb.headers = hp;
  pb.payload_encoding = f->payload_encoding;
  pb.payload_type = f->payload_type;
  pb.logidnew = f->log_id_new;
  if (payload) {
    pb.has_payload = 1;
    pb.payload.data = (uint8_t *)payload;
    pb.payload.len = payload_len;
  } else if (f->has_payload) {
    pb.has_payload = 1;
    /* never a NULL pointer into memcpy, even for 0 bytes */
    pb.payload.data = f->payload ? f->payload : (uint8_t *)"";
    pb.payload.len = f->payload ? f->payload_len : 0;
  }
  int rc = 0;
  size_t size = pbbp2__frame__get_packed_size(&pb);
  size_t start = out->len;
  if (size > out->max || out->len > out->max - size) {
    rc = CG_ETOOBIG;
  } else {
    buf_sink sink = {{sink_append}, out, 0};
    pbbp2__frame__pack_to_buffer(&pb, &sink.base);
    rc = sink.rc;
    if (rc) { /* roll back what was appended before the failure */
      out->len = start;
      if (out->data) out->data[start] = '\0';
    }
  }
  free(hs);
  free(hp);
  return rc;
}

int cg__lark_frame_encode(const cg__lark_frame *f, cg_buf *out) {
  return encode(f, NULL, NULL, 0, out);
}

int cg__lark_frame_ping(int32_t service, cg_buf *out) {
  /* lark.md §3.6 / §5.3: SeqID 0, LogID 0, method 0 (control), one header
   * type=ping, nothing else (the Node encoding). */
  cg__lark_header h = {HDR_TYPE, TYPE_PING};
  cg__lark_frame f;
  memset(&f, 0, sizeof f);
  f.service = service;
  f.method = CG__LARK_METHOD_CONTROL;
  f.headers = &h;
  f.n_headers = 1;
  return cg__lark_frame_encode(&f, out);
}

/* ---- base64 (RFC 4648 §4, standard alphabet, with padding) -------------- */

/* malloc'd, NUL-terminated base64 of p[0..n); *out_len its length. */
static int b64_encode(const void *p, size_t n, char **out, size_t *out_len) {
  *out = NULL;
  if (n > (size_t)INT_MAX / 4 * 3 - 3) return CG_ETOOBIG;
  size_t cap = (n + 2) / 3 * 4;
  char *s = malloc(cap + 1);
  if (!s) return CG_ENOMEM;
  int w = EVP_EncodeBlock((unsigned char *)s, n ? p : (const void *)"", (int)n);
  if (w < 0 || (size_t)w != cap) {
    free(s);
    return CG_ENOMEM;
  }
  s[cap] = '\0';
  *out = s;
  *out_len = cap;
  return 0;
}

static int b64_char(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
         (c >= '0' && c <= '9') || c == '+' || c == '/';
}

/* Decodes standard, padded base64. EVP_DecodeBlock trims whitespace and
 * counts the padding as zero bytes, so the input is checked first (alphabet
 * only, whole quads, '=' only as the last one or two characters) and the
 * output shortened by the padding. malloc'd, NUL-terminated. */
static int b64_decode(const char *s, size_t n, char **out, size_t *out_len) {
  *out = NULL;
  if (n % 4 != 0 || n > (size_t)INT_MAX) return CG_EMALFORMED;
  size_t pad = 0;
  if (n && s[n - 1] == '=') pad = s[n - 2] == '=' ? 2 : 1;
  for (size_t i = 0; i < n - pad; i++)
    if (!b64_char((unsigned char)s[i])) return CG_EMALFORMED;
  char *d = malloc(n / 4 * 3 + 1);
  if (!d) return CG_ENOMEM;
  int w =
      n ? EVP_DecodeBlock((unsigned char *)d, (const unsigned char *)s, (int)n)
        : 0;
  if (w < 0 || (size_t)w != n / 4 * 3) {
    free(d);
    return CG_EMALFORMED;
  }
  d[(size_t)w - pad] = '\0';
  *out = d;
  *out_len = (size_t)w - pad;
  return 0;
}

/* ---- ACK ---------------------------------------------------------------- */

int cg__lark_frame_ack(const cg__lark_frame *req, int64_t biz_rt_ms, int code,
                       const char *result, size_t result_len, cg_buf *out) {
  if (result && result_len > CG__LARK_FRAME_MAX) return CG_ETOOBIG;
  char *b64 = NULL;
  size_t b64_len = 0;
  int rc = 0;
  if (result && (rc = b64_encode(result, result_len, &b64, &b64_len)) != 0)
    return rc;
  /* lark.md §8.1: {"code":200,"data":"<base64>"} or {"code":200}, no
   * "headers" key. jansson keeps insertion order. */
  json_t *o = json_object();
  char *payload = NULL;
  if (!o || json_object_set_new(o, "code", json_integer(code)) != 0 ||
      (b64 &&
       json_object_set_new(o, "data", json_stringn(b64, b64_len)) != 0) ||
      !(payload = json_dumps(o, JSON_COMPACT))) {
    rc = CG_ENOMEM;
  } else {
    char rt[24];
    snprintf(rt, sizeof rt, "%" PRId64, biz_rt_ms);
    cg__lark_header h = {HDR_BIZ_RT, rt};
    rc = encode(req, &h, payload, strlen(payload), out);
  }
  free(payload);
  json_decref(o);
  free(b64);
  return rc;
}

int cg__lark_ack_parse(const uint8_t *payload, size_t len, int *code,
                       char **data, size_t *data_len) {
  *data = NULL;
  *data_len = 0;
  if (!payload && len) return CG_EMALFORMED;
  json_error_t je;
  json_t *j = json_loadb(payload ? (const char *)payload : "", len, 0, &je);
  if (!j) {
    return json_error_code(&je) == json_error_out_of_memory ? CG_ENOMEM
                                                            : CG_EMALFORMED;
  }
  int rc = CG_EMALFORMED;
  json_t *c = json_object_get(j, "code");
  json_t *d = json_object_get(j, "data");
  if (json_is_object(j) && json_is_integer(c) &&
      json_integer_value(c) >= INT_MIN && json_integer_value(c) <= INT_MAX &&
      (!d || json_is_null(d) || json_is_string(d))) {
    rc = 0;
    if (json_is_string(d))
      rc = b64_decode(json_string_value(d), json_string_length(d), data,
                      data_len);
    if (rc == 0) *code = (int)json_integer_value(c);
  }
  json_decref(j);
  return rc;
}

/* ---- ClientConfig and the endpoint exchange ------------------------------ */

void cg__lark_ws_config_defaults(cg__lark_ws_config *c) {
  /* lark.md §3.9: the SDKs' defaults before the server says otherwise. */
  c->reconnect_count = -1;
  c->reconnect_interval = 120;
  c->reconnect_nonce = 30;
  c->ping_interval = 120;
}

/* Sets *dst from integer member key when it lies in [min, max]. */
static void config_int(const json_t *o, const char *key, int64_t min,
                       int64_t max, int64_t *dst) {
  json_t *v = json_object_get(o, key);
  if (!json_is_integer(v)) return;
  json_int_t x = json_integer_value(v);
  if (x >= min && x <= max) *dst = x;
}

static void config_apply_obj(cg__lark_ws_config *c, const json_t *o) {
  /* lark.md §3.6 pitfall: missing or non-positive intervals are ignored. */
  config_int(o, "ReconnectCount", INT64_MIN, INT64_MAX, &c->reconnect_count);
  config_int(o, "ReconnectInterval", 1, CONFIG_MAX_SECONDS,
             &c->reconnect_interval);
  config_int(o, "ReconnectNonce", 0, CONFIG_MAX_SECONDS, &c->reconnect_nonce);
  config_int(o, "PingInterval", 1, CONFIG_MAX_SECONDS, &c->ping_interval);
}

int cg__lark_ws_config_apply(cg__lark_ws_config *c, const char *json,
                             size_t len) {
  if (!json) return CG_EMALFORMED;
  json_error_t je;
  json_t *j = json_loadb(json, len, 0, &je);
  if (!j)
    return json_error_code(&je) == json_error_out_of_memory ? CG_ENOMEM
                                                            : CG_EMALFORMED;
  int rc = CG_EMALFORMED;
  if (json_is_object(j)) {
    config_apply_obj(c, j);
    rc = 0;
  }
  json_decref(j);
  return rc;
}

int cg__lark_ws_endpoint_request(const char *app_id, const char *app_secret,
                                 cg_buf *out) {
  if (!app_id || !app_secret) return CG_EINVAL;
  /* lark.md §3.1: PascalCase keys, AppID first (jansson keeps order). */
  json_t *id = json_string(app_id), *secret = json_string(app_secret);
  if (!id || !secret) { /* not UTF-8 (or, unlikely, out of memory) */
    json_decref(id);
    json_decref(secret);
    return CG_EINVAL;
  }
  json_t *o = json_object();
  char *s = NULL;
  int rc = CG_ENOMEM;
  if (o && json_object_set(o, "AppID", id) == 0 &&
      json_object_set(o, "AppSecret", secret) == 0 &&
      (s = json_dumps(o, JSON_COMPACT)) != NULL)
    rc = cg_buf_appends(out, s);
  free(s);
  json_decref(o);
  json_decref(id);
  json_decref(secret);
  return rc;
}

void cg__lark_ws_endpoint_clear(cg__lark_ws_endpoint *e) {
  if (!e) return;
  free(e->url);
  free(e->device_id);
  memset(e, 0, sizeof *e);
}

int cg__lark_ws_endpoint_parse(const char *body, size_t len,
                               cg__lark_ws_endpoint *out, char *err,
                               size_t errlen) {
  memset(out, 0, sizeof *out);
  cg__lark_ws_config_defaults(&out->config);
  if (err && errlen) err[0] = '\0';
  if (!body) return fail(err, errlen, CG_EMALFORMED, "no endpoint answer");
  json_error_t je;
  json_t *j = json_loadb(body, len, 0, &je);
  if (!j) {
    if (json_error_code(&je) == json_error_out_of_memory)
      return fail(err, errlen, CG_ENOMEM, "out of memory");
    return fail(err, errlen, CG_EMALFORMED,
                "endpoint answer is not JSON (line %d column %d)", je.line,
                je.column);
  }
  int rc = 0;
  json_t *code = json_object_get(j, "code");
  json_t *msg = json_object_get(j, "msg");
  /* lark.md §8.2: refusals carry a data object (maybe empty) or none. */
  json_t *data = json_object_get(j, "data");
  if (!json_is_object(j)) {
    rc = fail(err, errlen, CG_EMALFORMED,
              "endpoint answer is not a JSON object");
    goto done;
  }
  if (!json_is_integer(code)) {
    rc = fail(err, errlen, CG_EMALFORMED,
              "endpoint answer has no integer \"code\"");
    goto done;
  }
  out->code = json_integer_value(code);
  if (json_is_string(msg))
    cg_strlcpy(out->msg, json_string_value(msg), sizeof out->msg);
  if (out->code != 0) goto done;

  json_t *url = json_is_object(data) ? json_object_get(data, "URL") : NULL;
  if (!json_is_string(url) || json_string_length(url) == 0 ||
      strlen(json_string_value(url)) != json_string_length(url)) {
    rc = fail(err, errlen, CG_EMALFORMED,
              "endpoint answer has code 0 but no data.URL");
    goto done;
  }
  json_t *cc = json_object_get(data, "ClientConfig");
  if (cc && !json_is_null(cc) && !json_is_object(cc)) {
    rc = fail(err, errlen, CG_EMALFORMED,
              "endpoint answer's data.ClientConfig is not an object");
    goto done;
  }
  if (json_is_object(cc)) config_apply_obj(&out->config, cc);
  out->url = cg_strdup(json_string_value(url));
  if (!out->url ||
      cg__lark_ws_url_params(out->url, &out->device_id, &out->service_id)) {
    rc = fail(err, errlen, CG_ENOMEM, "out of memory");
    goto done;
  }
done:
  json_decref(j);
  if (rc) {
    cg__lark_ws_endpoint_clear(out);
    cg__lark_ws_config_defaults(&out->config);
  }
  return rc;
}

int cg__lark_ws_code_is_final(int64_t code) {
  return !(code == 0 || code == CODE_BUSY || code == CODE_INTERNAL);
}

/* Copy of s without surrounding blanks, into buf; "" when it does not fit. */
static const char *trimmed(const char *s, char *buf, size_t cap) {
  if (!s) return "";
  while (*s == ' ' || *s == '\t') s++;
  size_t n = strlen(s);
  while (n && (s[n - 1] == ' ' || s[n - 1] == '\t')) n--;
  if (n >= cap) return "";
  memcpy(buf, s, n);
  buf[n] = '\0';
  return buf;
}

int cg__lark_ws_refusal_is_final(int http_status, const char *hs_status,
                                 const char *autherrcode) {
  /* lark.md §3.3: Handshake-Status decides; newer Go falls back to the HTTP
   * status when the header is absent (or, here, not a number). */
  char b1[32], b2[32];
  const char *hs = trimmed(hs_status, b1, sizeof b1);
  const char *ac = trimmed(autherrcode, b2, sizeof b2);
  int64_t st = http_status;
  int64_t v;
  if (hs[0] && cg_parse_i64(hs, strlen(hs), &v) == 0) st = v;
  if (st == HS_FORBIDDEN) return 1;
  if (st == HS_AUTH_FAILED && strcmp(ac, AUTH_TOO_MANY_CONNS) == 0) return 1;
  return 0;
}

/* ---- URL query ---------------------------------------------------------- */

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Form-decodes s[0..n) ('+' is a space, %XX a byte) into dst (room for n+1
 * bytes). -1 on a bad escape or %00 (a C string cannot hold it). */
static int pct_decode(const char *s, size_t n, char *dst) {
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] == '%') {
      if (n - i < 3) return -1;
      int h = hexval(s[i + 1]), l = hexval(s[i + 2]);
      if (h < 0 || l < 0 || (h | l) == 0) return -1;
      dst[o++] = (char)(h << 4 | l);
      i += 2;
    } else {
      dst[o++] = s[i] == '+' ? ' ' : s[i];
    }
  }
  dst[o] = '\0';
  return 0;
}

/* The query of url: [*q, *q + *qn), without '?' and any '#…'. 0 when there
 * is none. */
static int url_query(const char *url, const char **q, size_t *qn) {
  const char *qm = url ? strchr(url, '?') : NULL;
  if (!qm) return 0;
  const char *hash = strchr(url, '#');
  if (hash && hash < qm) return 0;
  *q = qm + 1;
  *qn = hash ? (size_t)(hash - *q) : strlen(*q);
  return 1;
}

/* Calls fn for each key=value pair of the query in order; stops when fn
 * returns non-zero and passes that on. */
typedef int (*pair_fn)(void *ctx, const char *k, size_t kn, const char *v,
                       size_t vn);

static int each_pair(const char *q, size_t qn, pair_fn fn, void *ctx) {
  size_t i = 0;
  while (i <= qn) {
    const char *p = q + i;
    const char *amp = memchr(p, '&', qn - i);
    size_t pn = amp ? (size_t)(amp - p) : qn - i;
    if (pn) {
      const char *eq = memchr(p, '=', pn);
      size_t kn = eq ? (size_t)(eq - p) : pn;
      const char *v = eq ? eq + 1 : p + pn;
      size_t vn = eq ? pn - kn - 1 : 0;
      int r = fn(ctx, p, kn, v, vn);
      if (r) return r;
    }
    i += pn + 1;
  }
  return 0;
}

typedef struct params_ctx {
  char *scratch; /* room for the whole query */
  char *device_id;
  int have_device, have_service;
  int32_t service_id;
  int rc;
} params_ctx;

static int params_pair(void *ctx, const char *k, size_t kn, const char *v,
                       size_t vn) {
  params_ctx *c = ctx;
  if (pct_decode(k, kn, c->scratch) != 0) return 0; /* skipped, like Go */
  int is_dev = strcmp(c->scratch, "device_id") == 0;
  int is_svc = strcmp(c->scratch, "service_id") == 0;
  if ((!is_dev || c->have_device) && (!is_svc || c->have_service)) return 0;
  if (pct_decode(v, vn, c->scratch) != 0) return 0;
  if (is_dev) {
    c->have_device = 1;
    c->device_id = cg_strdup(c->scratch);
    if (!c->device_id) return c->rc = CG_ENOMEM;
  } else {
    c->have_service = 1; /* the first counts, even when it is junk */
    int64_t x;
    if (cg_parse_i64(c->scratch, strlen(c->scratch), &x) == 0 &&
        x >= INT32_MIN && x <= INT32_MAX)
      c->service_id = (int32_t)x;
  }
  return 0;
}

int cg__lark_ws_url_params(const char *url, char **device_id,
                           int32_t *service_id) {
  *device_id = NULL;
  *service_id = 0;
  const char *q;
  size_t qn;
  if (!url_query(url, &q, &qn)) return 0;
  params_ctx c;
  memset(&c, 0, sizeof c);
  c.scratch = malloc(qn + 1);
  if (!c.scratch) return CG_ENOMEM;
  each_pair(q, qn, params_pair, &c);
  free(c.scratch);
  if (c.rc) {
    free(c.device_id);
    return c.rc;
  }
  *device_id = c.device_id;
  *service_id = c.service_id;
  return 0;
}

/* Bounded appends into a caller's fixed buffer. */
typedef struct fixed_out {
  char *p;
  size_t cap, len;
} fixed_out;

static void put(fixed_out *o, const char *s, size_t n) {
  if (!o->cap) return;
  size_t room = o->cap - 1 - o->len;
  if (n > room) n = room;
  memcpy(o->p + o->len, s, n);
  o->len += n;
  o->p[o->len] = '\0';
}

/* 1 for the keys whose values are secrets (lark.md §3.2), as written or
 * percent-encoded. */
static int is_secret_key(const char *k, size_t kn) {
  char d[33];
  if (kn >= sizeof d) return 0;
  if (pct_decode(k, kn, d) != 0) {
    memcpy(d, k, kn);
    d[kn] = '\0';
  }
  return strcmp(d, "access_key") == 0 || strcmp(d, "ticket") == 0;
}

void cg__lark_ws_url_redact(const char *url, char *out, size_t cap) {
  fixed_out o = {out, cap, 0};
  if (cap) out[0] = '\0';
  if (!url) return;
  const char *q;
  size_t qn;
  if (!url_query(url, &q, &qn)) {
    put(&o, url, strlen(url));
    return;
  }
  put(&o, url, (size_t)(q - url)); /* up to and with '?' */
  /* the pairs as written, '&' separators and empty pairs included */
  for (size_t i = 0; i <= qn;) {
    const char *p = q + i;
    const char *amp = memchr(p, '&', qn - i);
    size_t pn = amp ? (size_t)(amp - p) : qn - i;
    const char *eq = memchr(p, '=', pn);
    size_t kn = eq ? (size_t)(eq - p) : pn;
    if (i) put(&o, "&", 1);
    put(&o, p, eq && is_secret_key(p, kn) ? kn + 1 : pn);
    if (eq && is_secret_key(p, kn)) put(&o, "***", 3);
    i += pn + 1;
  }
  put(&o, q + qn, strlen(q + qn)); /* '#…' */
}

/* ---- fragment reassembly ------------------------------------------------ */

typedef struct frag_msg {
  struct frag_msg *next;
  char *id;
  uint32_t sum;
  uint32_t have; /* slots filled */
  size_t bytes;  /* in all slots */
  uint64_t first_ms;
  uint8_t **slot; /* sum entries, NULL until that seq arrived */
  size_t *slot_len;
} frag_msg;

struct cg__lark_frags {
  frag_msg *head;
  size_t n;
  size_t bytes;
  size_t max_bytes;
  uint64_t ttl_ms;
};

cg__lark_frags *cg__lark_frags_new(size_t max_bytes, uint64_t ttl_ms) {
  cg__lark_frags *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  c->max_bytes = max_bytes;
  c->ttl_ms = ttl_ms;
  return c;
}

static void msg_free(frag_msg *m) {
  for (uint32_t i = 0; i < m->sum; i++) free(m->slot[i]);
  free(m->slot);
  free(m->slot_len);
  free(m->id);
  free(m);
}

/* Unlinks *pp (a link in the list) and frees the message. */
static void msg_drop(cg__lark_frags *c, frag_msg **pp) {
  frag_msg *m = *pp;
  *pp = m->next;
  c->n--;
  c->bytes -= m->bytes;
  msg_free(m);
}

void cg__lark_frags_free(cg__lark_frags *c) {
  if (!c) return;
  while (c->head) msg_drop(c, &c->head);
  free(c);
}

size_t cg__lark_frags_sweep(cg__lark_frags *c, uint64_t now_ms) {
  size_t n = 0;
  for (frag_msg **pp = &c->head; *pp;) {
    frag_msg *m = *pp;
    /* lark.md §3.7: dropped ttl after the first fragment (Node's rule) */
    if (now_ms >= m->first_ms && now_ms - m->first_ms >= c->ttl_ms) {
      msg_drop(c, pp);
      n++;
    } else {
      pp = &m->next;
    }
  }
  return n;
}

size_t cg__lark_frags_pending(const cg__lark_frags *c, size_t *bytes) {
  if (bytes) *bytes = c->bytes;
  return c->n;
}

static int join(uint8_t *const *parts, const size_t *lens, uint32_t n,
                size_t total, uint8_t **out, size_t *out_len) {
  uint8_t *p = malloc(total + 1);
  if (!p) return CG_ENOMEM;
  size_t o = 0;
  for (uint32_t i = 0; i < n; i++) {
    if (lens[i]) memcpy(p + o, parts[i], lens[i]);
    o += lens[i];
  }
  p[o] = '\0';
  *out = p;
  *out_len = o;
  return 1;
}

static frag_msg *msg_new(const char *id, uint32_t sum, uint64_t now_ms) {
  frag_msg *m = calloc(1, sizeof *m);
  if (!m) return NULL;
  m->id = cg_strdup(id);
  m->slot = calloc(sum, sizeof *m->slot);
  m->slot_len = calloc(sum, sizeof *m->slot_len);
  m->sum = sum;
  m->first_ms = now_ms;
  if (!m->id || !m->slot || !m->slot_len) {
    free(m->id);
    free(m->slot);
    free(m->slot_len);
    free(m);
    return NULL;
  }
  return m;
}

int cg__lark_frags_add(cg__lark_frags *c, const char *message_id, uint32_t sum,
                       uint32_t seq, const uint8_t *data, size_t len,
                       uint64_t now_ms, uint8_t **out, size_t *out_len) {
  *out = NULL;
  *out_len = 0;
  cg__lark_frags_sweep(c, now_ms);
  if (!message_id || !message_id[0] ||
      strnlen(message_id, CG_LIMIT_ID + 1) > CG_LIMIT_ID || sum == 0 ||
      sum > CG__LARK_FRAGMENTS_MAX || seq >= sum || (!data && len))
    return CG_EMALFORMED;

  frag_msg **pp = &c->head;
  while (*pp && strcmp((*pp)->id, message_id) != 0) pp = &(*pp)->next;
  frag_msg *m = *pp;
  if (m && m->sum != sum) return CG_EMALFORMED; /* the pending one stays */
  if (len > CG__LARK_MESSAGE_MAX) {
    if (m) msg_drop(c, pp);
    return CG_ETOOBIG;
  }
  if (!m && sum == 1) { /* not split: nothing to keep */
    const uint8_t *part = data ? data : (const uint8_t *)"";
    uint8_t *parts[1] = {(uint8_t *)part};
    size_t lens[1] = {len};
    return join(parts, lens, 1, len, out, out_len);
  }
  size_t old = m && m->slot[seq] ? m->slot_len[seq] : 0;
  size_t msg_bytes = (m ? m->bytes : 0) - old + len;
  size_t all_bytes = c->bytes - old + len;
  if (msg_bytes > CG__LARK_MESSAGE_MAX || all_bytes > c->max_bytes) {
    if (m) msg_drop(c, pp);
    return CG_ETOOBIG;
  }
  if (!m && c->n >= CG__LARK_FRAGS_PENDING_MAX) return CG_ETOOBIG;
  if (!m && c->n >= CG__LARK_FRAGS_PENDING_MAX) return CG_ETOOBIG;
  uint8_t *copy = malloc(len ? len : 1);
  if (!copy) return CG_ENOMEM;
  if (len) memcpy(copy, data, len);
  if (!m) {
    m = msg_new(message_id, sum, now_ms);
    if (!m) {
      free(copy);
      return CG_ENOMEM;
    }
    *pp = m; /* appended at the tail: pp is the last link */
    c->n++;
  }
  if (m->slot[seq]) {
    free(m->slot[seq]); /* a repeated seq replaces the earlier bytes */
  } else {
    m->have++;
  }
  m->slot[seq] = copy;
  m->slot_len[seq] = len;
  m->bytes = m->bytes - old + len;
  c->bytes = c->bytes - old + len;
  if (m->have < m->sum) return 0;
  int rc = join(m->slot, m->slot_len, m->sum, m->bytes, out, out_len);
  if (rc < 0) return rc; /* keep it: the caller may retry */
  msg_drop(c, pp);
  return 1;
}
