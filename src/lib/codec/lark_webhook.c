/* Lark webhook codec (lark_webhook.h): verify, decrypt, classify and decode
 * one HTTP callback; encode the answer. Design note: docs/lark-webhook.md.
 * Facts: ../shared/protocols/lark.md §0 (headers, AES, signatures, tokens),
 * §1 (legacy card callback), §2 (schema 2.0 / 1.0).
 *
 * Order of work for one request:
 *   size → parse → decrypt ({"encrypt":…}) → parse → classify →
 *   [challenge: token check, done] → signatures / token → replay window →
 *   decode fields into a cg__action_rec.
 * where parse = the fast reader, or else nesting pre-scan + json_loadb.
 * Nothing is decoded before the request has been verified. With prepared
 * keys (cg__lark_secrets.keys) no OpenSSL algorithm is looked up and no key
 * derived per request. */
#include "json_util.h"
#include "lark_webhook.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/limits.h"
#include "../core/reply_int.h"
#include "cardgate/lark.h"

/* Header names as the platform sends them (lark.md §0.2). */
#define HDR_TS "X-Lark-Request-Timestamp"
#define HDR_NONCE "X-Lark-Request-Nonce"
#define HDR_SIG "X-Lark-Signature"

/* The settings users know the secrets by (cardgate serve). */
#define SET_TOKEN "LARK_VERIFICATION_TOKEN"
#define SET_KEY "LARK_ENCRYPT_KEY"
/* One answer for every unsigned ciphertext that does not decrypt to JSON. */
#define UNSIGNED_DECRYPT_FAIL                                                \
  "could not decrypt the body into JSON: the Encrypt Key is probably wrong " \
  "(check " SET_KEY ")"

enum { SHA1_HEX = 40, SHA256_HEX = 64 };

/* ---- errors ------------------------------------------------------------- */

static int fail(cg__lark_error *err, int status, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(cg__lark_error *err, int status, int code, const char *fmt,
                ...) {
  err->http_status = status;
  err->code = code;
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(err->msg, sizeof err->msg, fmt, ap);
  va_end(ap);
  if (n < 0) err->msg[0] = '\0';
  return code;
}

static int fail_nomem(cg__lark_error *err) {
  return fail(err, 500, CG_ENOMEM, "out of memory while decoding the request");
}

/* Copies text from a parser into dst, replacing anything but printable ASCII
 * (jansson quotes bytes of the input in its messages). */
static void copy_printable(char *dst, size_t cap, const char *src) {
  size_t i = 0;
  for (; src[i] && i + 1 < cap; i++) {
    unsigned char c = (unsigned char)src[i];
    dst[i] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
  }
  dst[i] = '\0';
}

static int configured(const char *secret) {
  return secret && secret[0];
}

/* ---- JSON helpers ------------------------------------------------------- */

/* A member, with JSON null treated as absent. */
static json_t *member(const json_t *obj, const char *key) {
  json_t *v = json_object_get(obj, key);
  return json_is_null(v) ? NULL : v;
}

static int is_str(const json_t *v, const char *s) {
  return json_is_string(v) && strcmp(json_string_value(v), s) == 0;
}


/* Optional string member: absent leaves *dst alone; wrong type fails. */
static int opt_str(const json_t *obj, const char *path, const char *key,
                   const char **dst, cg__lark_error *err) {
  if (!obj) return 0;
  json_t *v = member(obj, key);
  if (!v) return 0;
  if (!json_is_string(v))
    return fail(err, 400, CG_EMALFORMED, "%s.%s must be a string, not %s", path,
                key, cg__json_type_name(v));
  *dst = json_string_value(v);
  return 0;
}

/* Optional object member: absent → *dst = NULL; wrong type fails. */
static int opt_obj(const json_t *obj, const char *path, const char *key,
                   json_t **dst, cg__lark_error *err) {
  *dst = obj ? member(obj, key) : NULL;
  if (*dst && !json_is_object(*dst)) {
    json_t *v = *dst;
    *dst = NULL;
    return fail(err, 400, CG_EMALFORMED, "%s.%s must be an object, not %s",
                path, key, cg__json_type_name(v));
  }
  return 0;
}


/* Length of the valid UTF-8 sequence at p (n bytes left), 0 when invalid
 * (RFC 3629: no overlongs, no surrogates, nothing above U+10FFFF — the rules
 * jansson applies when it reads and when it writes). */
static size_t utf8_seq(const unsigned char *p, size_t n) {
  unsigned c = p[0];
  if (c < 0x80) return 1;
  size_t len;
  unsigned min;
  if (c >= 0xc2 && c <= 0xdf)
    len = 2, min = 0x80;
  else if (c >= 0xe0 && c <= 0xef)
    len = 3, min = 0x800;
  else if (c >= 0xf0 && c <= 0xf4)
    len = 4, min = 0x10000;
  else
    return 0;
  if (n < len) return 0;
  unsigned v = c & (0x3f >> (len - 1));
  for (size_t i = 1; i < len; i++) {
    if ((p[i] & 0xc0) != 0x80) return 0;
    v = v << 6 | (p[i] & 0x3f);
  }
  if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff)) return 0;
  return len;
}

/* Parses p[0..n) as a JSON object. what names it in messages ("body",
 * "decrypted body"); hint is appended to a parse error. */
static json_t *parse_object(const char *p, size_t n, const char *what,
                            const char *hint, cg__lark_error *err, int *rc) {
  json_t *j;
  if (!cg__json_depth_ok(p, n, CG_LIMIT_JSON_DEPTH)) {
    *rc = fail(err, 400, CG_EMALFORMED,
               "%s nests JSON deeper than %d levels; callback bodies are "
               "shallow, so this is not from Lark",
               what, CG_LIMIT_JSON_DEPTH);
    return NULL;
  }
  json_error_t je;
  j = json_loadb(p, n, JSON_REJECT_DUPLICATES, &je);
  if (!j) {
    if (json_error_code(&je) == json_error_out_of_memory) {
      *rc = fail_nomem(err);
      return NULL;
    }
    /* jansson appends "near '<input bytes>'"; the input may hold the
     * verification token (challenge and 1.0 bodies carry it), so only the
     * reason and the position are kept. */
    char text[JSON_ERROR_TEXT_LENGTH];
    copy_printable(text, sizeof text, je.text);
    char *near = strstr(text, " near '");
    if (near) *near = '\0';
    *rc = fail(err, 400, CG_EMALFORMED,
               "%s is not valid JSON: %s at line %d column %d%s", what, text,
               je.line, je.column, hint);
    return NULL;
  }
  if (!json_is_object(j)) {
    *rc = fail(err, 400, CG_EMALFORMED,
               "%s must be a JSON object, not %s; send the callback body "
               "exactly as Lark posts it",
               what, cg__json_type_name(j));
    json_decref(j);
    return NULL;
  }
  *rc = 0;
  return j;
}

/* ---- verification ------------------------------------------------------- */

/* A header value the signature may cover: at most CG_LIMIT_HEADER_VALUE
 * bytes, no NUL (the signature is computed over the value as a string). */
static int header_check(const char *v, size_t n, const char *name,
                        cg__lark_error *err) {
  if (n > CG_LIMIT_HEADER_VALUE || (n && memchr(v, '\0', n)))
    return fail(err, 400, CG_EMALFORMED,
                "%s header is longer than %u bytes or contains a NUL byte",
                name, CG_LIMIT_HEADER_VALUE);
  return 0;
}

/* Which signature schemes may vouch for a body (lark.md §0.4). */
typedef struct sig_policy {
  const char *sha1_token; /* SHA-1 + verification token, or NULL */
  const char *sha256_key; /* SHA-256 + encrypt key, or NULL */
  const char *why;        /* which setting made the check mandatory */
} sig_policy;

/* Which configured schemes the request's signature matches, computed over
 * the raw body: bit 1 SHA-1 + token, bit 2 SHA-256 + key. 0 when none (or a
 * header is missing or malformed). */
static int sig_mask(const cg__lark_keys *keys, const char *tok, const char *key,
                    const cg_http_request *req) {
  int mask = 0;
  if (!req->signature || !req->timestamp || !req->nonce) return 0;
  if (tok && req->signature_len == SHA1_HEX) {
    char sig[SHA1_HEX + 1];
    cg__lark_sign(keys, CG__LARK_SHA1, req->timestamp, req->timestamp_len,
                  req->nonce, req->nonce_len, tok, strlen(tok), req->body,
                  req->body_len, sig);
    if (sig[0] != '\0' && cg_consttime_eq(req->signature, req->signature_len, sig, SHA1_HEX)) mask |= 1;
  }
  if (key && req->signature_len == SHA256_HEX) {
    char sig[SHA256_HEX + 1];
    cg__lark_sign(keys, CG__LARK_SHA256, req->timestamp, req->timestamp_len,
                  req->nonce, req->nonce_len, key, strlen(key), req->body,
                  req->body_len, sig);
    if (sig[0] != '\0' && cg_consttime_eq(req->signature, req->signature_len, sig, SHA256_HEX)) mask |= 2;
  }
  return mask;
}

static int check_signature(const cg__lark_keys *keys, const sig_policy *pol,
                           const cg_http_request *req, cg__lark_error *err) {
  const char *missing[3];
  int nm = 0;
  if (!req->signature) missing[nm++] = HDR_SIG;
  if (!req->timestamp) missing[nm++] = HDR_TS;
  if (!req->nonce) missing[nm++] = HDR_NONCE;
  if (nm)
    return fail(err, 401, CG_EAUTH,
                "missing %s%s%s%s%s header%s: the request must be signed "
                "because %s is set",
                missing[0], nm > 1 ? ", " : "", nm > 1 ? missing[1] : "",
                nm > 2 ? ", " : "", nm > 2 ? missing[2] : "", nm > 1 ? "s" : "",
                pol->why);

  int rc = header_check(req->timestamp, req->timestamp_len, HDR_TS, err);
  if (!rc) rc = header_check(req->nonce, req->nonce_len, HDR_NONCE, err);
  if (rc) return rc;

  /* A digest is computed only when the header has its length: a signature of
   * another length can never match it (cg_consttime_eq compares lengths
   * first), and the header's length is the sender's, not a secret. */
  int ok = 0;
  if (pol->sha1_token && req->signature_len == SHA1_HEX) {
    char sig[SHA1_HEX + 1];
    cg__lark_sign(keys, CG__LARK_SHA1, req->timestamp, req->timestamp_len,
                  req->nonce, req->nonce_len, pol->sha1_token,
                  strlen(pol->sha1_token), req->body, req->body_len, sig);
    ok |= sig[0] != '\0' &&
          cg_consttime_eq(req->signature, req->signature_len, sig, SHA1_HEX);
  }
  if (pol->sha256_key && req->signature_len == SHA256_HEX) {
    char sig[SHA256_HEX + 1];
    cg__lark_sign(keys, CG__LARK_SHA256, req->timestamp, req->timestamp_len,
                  req->nonce, req->nonce_len, pol->sha256_key,
                  strlen(pol->sha256_key), req->body, req->body_len, sig);
    ok |= sig[0] != '\0' &&
          cg_consttime_eq(req->signature, req->signature_len, sig, SHA256_HEX);
  }
  if (ok) return 0;

  if (pol->sha1_token && pol->sha256_key)
    return fail(err, 401, CG_EAUTH,
                "%s matches neither SHA-1 with " SET_TOKEN
                " nor SHA-256 with " SET_KEY
                " over the raw body; check both settings against the "
                "developer console",
                HDR_SIG);
  if (pol->sha1_token)
    return fail(err, 401, CG_EAUTH,
                "%s does not match: a legacy card callback is signed with "
                "SHA-1 over timestamp+nonce+Verification Token+raw body; "
                "check " SET_TOKEN "%s",
                HDR_SIG,
                req->signature_len == SHA256_HEX
                    ? " (this signature has the length of SHA-256: is the "
                      "console sending new-style callbacks?)"
                    : "");
  return fail(err, 401, CG_EAUTH,
              "%s does not match: schema 2.0 callbacks and events are signed "
              "with SHA-256 over timestamp+nonce+Encrypt Key+raw body; "
              "check " SET_KEY,
              HDR_SIG);
}

static int check_token(const json_t *token, const char *expected,
                       const char *path, cg__lark_error *err) {
  if (!json_is_string(token))
    return fail(err, 401, CG_EAUTH,
                "%s is missing but " SET_TOKEN
                " is set; Lark copies the Verification Token there",
                path);
  if (!cg_consttime_eq(json_string_value(token), json_string_length(token),
                       expected, strlen(expected)))
    return fail(err, 401, CG_EAUTH,
                "%s does not match " SET_TOKEN
                "; copy the Verification Token from the developer console",
                path);
  return 0;
}

/* ---- timestamps --------------------------------------------------------- */

static int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
  /* Proleptic Gregorian calendar; days since 1970-01-01. */
  y -= m <= 2;
  int64_t era = (y >= 0 ? y : y - 399) / 400;
  int64_t yoe = y - era * 400;
  int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

static unsigned days_in_month(int64_t y, unsigned m) {
  static const unsigned char mdays[12] = {31, 28, 31, 30, 31, 30,
                                          31, 31, 30, 31, 30, 31};
  int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  return mdays[m - 1] + (m == 2 && leap);
}

typedef struct scan {
  const char *p, *end;
} scan;

static int sc_lit(scan *s, const char *lit) {
  size_t n = strlen(lit);
  if ((size_t)(s->end - s->p) < n || memcmp(s->p, lit, n) != 0) return 0;
  s->p += n;
  return 1;
}

/* Exactly min..max digits. */
static int sc_num(scan *s, int min, int max, unsigned *out) {
  unsigned v = 0;
  int k = 0;
  while (k < max && s->p < s->end && *s->p >= '0' && *s->p <= '9') {
    v = v * 10 + (unsigned)(*s->p - '0');
    s->p++;
    k++;
  }
  if (k < min) return 0;
  if (s->p < s->end && *s->p >= '0' && *s->p <= '9') return 0;
  *out = v;
  return 1;
}

static int sc_weekday(scan *s) {
  static const char *const days[] = {"Monday",   "Tuesday", "Wednesday",
                                     "Thursday", "Friday",  "Saturday",
                                     "Sunday"};
  for (size_t i = 0; i < CG_ARRAY_SIZE(days); i++) {
    if (sc_lit(s, days[i])) return 1;
    scan t = *s;
    char ab[4];
    memcpy(ab, days[i], 3);
    ab[3] = '\0';
    if (sc_lit(&t, ab)) {
      *s = t;
      return 1;
    }
  }
  return 0;
}

static int sc_month(scan *s, unsigned *m) {
  static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
  if (s->end - s->p < 3) return 0;
  for (unsigned i = 0; i < 12; i++) {
    if (memcmp(s->p, months + 3 * i, 3) == 0) {
      s->p += 3;
      *m = i + 1;
      return 1;
    }
  }
  return 0;
}

/* Zone → offset east of UTC in seconds. */
static int sc_zone(scan *s, int *off) {
  if (sc_lit(s, "GMT") || sc_lit(s, "UTC")) {
    *off = 0;
  } else if (sc_lit(s, "CST")) {
    *off = 8 * 3600; /* China Standard Time: the Feishu servers' zone */
  } else if (sc_lit(s, "Z")) {
    *off = 0;
  } else if (s->p < s->end && (*s->p == '+' || *s->p == '-')) {
    int sign = *s->p == '-' ? -1 : 1;
    s->p++;
    unsigned hhmm;
    if (!sc_num(s, 4, 4, &hhmm) || hhmm / 100 > 23 || hhmm % 100 > 59) return 0;
    *off = sign * (int)((hhmm / 100) * 3600 + (hhmm % 100) * 60);
  } else {
    return 0;
  }
  return 1;
}

int cg__lark_parse_timestamp(const char *s, size_t n, int64_t *ms_out) {
  if (!s || n == 0 || n > 64) return CG_EMALFORMED;
  size_t digits = 0;
  while (digits < n && s[digits] >= '0' && s[digits] <= '9') digits++;
  if (digits == n) {
    int64_t v;
    if (cg_parse_i64(s, n, &v) != 0) return CG_EMALFORMED;
    if (n <= 11) {
      *ms_out = v * 1000; /* seconds */
      return 0;
    }
    if (n <= 13) {
      *ms_out = v; /* milliseconds */
      return 0;
    }
    return CG_EMALFORMED;
  }

  /* "Monday, 14-Nov-22 15:53:37 CST" (RFC 850) or
   * "Mon, 14 Nov 2022 15:53:37 GMT" (RFC 1123). */
  scan sc = {s, s + n};
  unsigned day, mon, year, hh, mm, ss;
  int off;
  if (!sc_weekday(&sc) || !sc_lit(&sc, ", ") || !sc_num(&sc, 1, 2, &day))
    return CG_EMALFORMED;
  int64_t y;
  if (sc_lit(&sc, "-")) {
    if (!sc_month(&sc, &mon) || !sc_lit(&sc, "-") || !sc_num(&sc, 2, 2, &year))
      return CG_EMALFORMED;
    y = year < 70 ? 2000 + year : 1900 + year; /* RFC 850 two-digit year */
  } else {
    if (!sc_lit(&sc, " ") || !sc_month(&sc, &mon) || !sc_lit(&sc, " ") ||
        !sc_num(&sc, 4, 4, &year))
      return CG_EMALFORMED;
    y = year;
  }
  if (!sc_lit(&sc, " ") || !sc_num(&sc, 2, 2, &hh) || !sc_lit(&sc, ":") ||
      !sc_num(&sc, 2, 2, &mm) || !sc_lit(&sc, ":") || !sc_num(&sc, 2, 2, &ss) ||
      !sc_lit(&sc, " ") || !sc_zone(&sc, &off) || sc.p != sc.end)
    return CG_EMALFORMED;
  if (day < 1 || day > days_in_month(y, mon) || hh > 23 || mm > 59 || ss > 60)
    return CG_EMALFORMED;
  int64_t secs = days_from_civil(y, mon, day) * 86400 + (int64_t)hh * 3600 +
                 (int64_t)mm * 60 + (int64_t)ss - off;
  *ms_out = secs * 1000;
  return 0;
}

static int check_replay(const cg__lark_secrets *s, const cg_http_request *req,
                        int64_t now_ms, cg__lark_error *err) {
  if (!req->timestamp)
    return fail(err, 401, CG_ESTALE,
                "missing %s header: it is required while the replay window "
                "(%u s) is on",
                HDR_TS, s->replay_window_s);
  int64_t ts;
  if (cg__lark_parse_timestamp(req->timestamp, req->timestamp_len, &ts) != 0)
    return fail(err, 400, CG_EMALFORMED,
                "%s is neither decimal seconds, milliseconds nor an HTTP "
                "date; turn the replay window off if Lark sends another form",
                HDR_TS);
  /* Unsigned difference: exact for any pair of int64 values. */
  uint64_t diff = ts > now_ms ? (uint64_t)ts - (uint64_t)now_ms
                              : (uint64_t)now_ms - (uint64_t)ts;
  if (diff > (uint64_t)s->replay_window_s * 1000u)
    return fail(err, 401, CG_ESTALE,
                "%s is %llu s %s the server clock, outside the replay window "
                "of %u s; check the clock (NTP) or the window",
                HDR_TS, (unsigned long long)(diff / 1000),
                ts > now_ms ? "ahead of" : "behind", s->replay_window_s);
  return 0;
}

/* ---- compact JSON output ------------------------------------------------ */

typedef struct dump_ctx {
  cg_buf *b;
  int rc;
} dump_ctx;

static int dump_cb(const char *p, size_t n, void *ud) {
  dump_ctx *d = ud;
  d->rc = cg_buf_append(d->b, p, n);
  return d->rc ? -1 : 0;
}

/* Appends v as compact JSON (jansson's json_dump_callback straight into the
 * buffer). 0, CG_ETOOBIG, or CG_ENOMEM (also when jansson refuses v); b is
 * left as it was on failure. */
static int append_json(cg_buf *b, const json_t *v) {
  size_t start = b->len;
  dump_ctx d = {b, 0};
  int rc = 0;
  if (json_dump_callback(v, dump_cb, &d, JSON_COMPACT | JSON_ENCODE_ANY))
    rc = d.rc ? d.rc : CG_ENOMEM;
  if (rc) {
    b->len = start;
    if (b->data) b->data[start] = '\0';
  }
  return rc;
}

/* ---- decoding into the action ------------------------------------------ */

/* A compact dump owned by the action: one allocation for a small value. */
static int dump_into(const json_t *v, char **dst, cg__lark_error *err) {
  /* A dump can be a few times longer than its source (1e9 becomes
   * 1000000000.0), and the source is at most CG_LIMIT_BODY_HARD bytes. */
  cg_buf b;
  cg_buf_init(&b, 8 * (size_t)CG_LIMIT_BODY_HARD);
  *dst = NULL;
  if (append_json(&b, v) != 0 || !b.data) {
    cg_buf_free(&b);
    return fail_nomem(err);
  }
  *dst = b.data;
  return 0;
}

/* action.* — the same object in the legacy body and in schema 2.0
 * event.action (lark.md §1.1, §2.1). */
static int decode_component(cg__action_rec *rec, const json_t *act,
                            const char *path, cg__lark_error *err) {
  cg_action *a = &rec->pub;
  int rc;
  if ((rc = opt_str(act, path, "tag", &a->tag, err)) ||
      (rc = opt_str(act, path, "name", &a->name, err)) ||
      (rc = opt_str(act, path, "option", &a->option, err)) ||
      (rc = opt_str(act, path, "input_value", &a->input_value, err)) ||
      (rc = opt_str(act, path, "timezone", &a->timezone, err)))
    return rc;

  json_t *v = member(act, "checked");
  if (v) {
    if (!json_is_boolean(v))
      return fail(err, 400, CG_EMALFORMED,
                  "%s.checked must be a boolean, not %s", path, cg__json_type_name(v));
    a->checked = json_is_true(v);
  }

  v = member(act, "value");
  if (v) {
    if (!json_is_object(v) && !json_is_string(v))
      return fail(err, 400, CG_EMALFORMED,
                  "%s.value must be an object or a string, not %s", path,
                  cg__json_type_name(v));
    rec->value = v;
    if ((rc = dump_into(v, &rec->value_json, err))) return rc;
  }

  v = member(act, "form_value");
  if (v) {
    if (!json_is_object(v))
      return fail(err, 400, CG_EMALFORMED,
                  "%s.form_value must be an object, not %s", path,
                  cg__json_type_name(v));
    if ((rc = dump_into(v, &rec->form_value_json, err))) return rc;
  }

  v = member(act, "options");
  if (v) {
    size_t i;
    json_t *o;
    if (!json_is_array(v))
      return fail(err, 400, CG_EMALFORMED,
                  "%s.options must be an array of strings, not %s", path,
                  cg__json_type_name(v));
    json_array_foreach(v, i, o) {
      if (!json_is_string(o))
        return fail(err, 400, CG_EMALFORMED,
                    "%s.options[%zu] must be a string, not %s", path, i,
                    cg__json_type_name(o));
    }
    if ((rc = dump_into(v, &rec->options_json, err))) return rc;
  }
  return 0;
}

static int decode_legacy(cg__action_rec *rec, const json_t *root,
                         cg__lark_error *err) {
  cg_action *a = &rec->pub;
  json_t *act;
  int rc;
  a->kind = CG_KIND_CARD_ACTION;
  a->format = CG_FORMAT_LARK_LEGACY;
  if ((rc = opt_str(root, "$", "open_id", &a->open_id, err)) ||
      (rc = opt_str(root, "$", "user_id", &a->user_id, err)) ||
      (rc = opt_str(root, "$", "open_message_id", &a->message_id, err)) ||
      (rc = opt_str(root, "$", "open_chat_id", &a->chat_id, err)) ||
      (rc = opt_str(root, "$", "tenant_key", &a->tenant_key, err)) ||
      (rc = opt_str(root, "$", "token", &a->update_token, err)) ||
      (rc = opt_str(root, "$", "timezone", &a->timezone, err)) ||
      (rc = opt_obj(root, "$", "action", &act, err)))
    return rc;
  return decode_component(rec, act, "$.action", err);
}

/* Event ids key duplicate suppression (memory and store): an empty one
 * would merge unrelated events, an endless one would bloat the tables. */
static int check_event_id(const char *id, const char *path, cg__lark_error *err) {
  if (!id) return 0;
  size_t n = strlen(id);
  if (n == 0 || n > CG_LIMIT_ID)
    return fail(err, 400, CG_EMALFORMED,
                "%s must be 1 to %u bytes long (Lark sends a 32-character "
                "hex id), got %zu",
                path, CG_LIMIT_ID, n);
  return 0;
}

static int decode_v2(cg__action_rec *rec, const json_t *root, const json_t *hdr,
                     cg_kind kind, cg__lark_error *err) {
  cg_action *a = &rec->pub;
  json_t *ev, *op, *ctx, *act;
  int rc;
  a->kind = kind;
  a->format = CG_FORMAT_LARK_V2;
  if ((rc = opt_str(hdr, "$.header", "event_id", &a->event_id, err)) ||
      (rc = opt_str(hdr, "$.header", "event_type", &a->event_type, err)) ||
      (rc = opt_str(hdr, "$.header", "app_id", &a->app_id, err)) ||
      (rc = opt_str(hdr, "$.header", "tenant_key", &a->tenant_key, err)) ||
      (rc = opt_obj(root, "$", "event", &ev, err)))
    return rc;
  if ((rc = check_event_id(a->event_id, "$.header.event_id", err))) return rc;
  if (!ev)
    return fail(err, 400, CG_EMALFORMED,
                "$.event must be an object: a %s callback carries its data "
                "there",
                a->event_type);
  if ((rc = opt_obj(ev, "$.event", "operator", &op, err)) ||
      (rc = opt_str(op, "$.event.operator", "open_id", &a->open_id, err)) ||
      (rc = opt_str(op, "$.event.operator", "user_id", &a->user_id, err)) ||
      (rc = opt_str(op, "$.event.operator", "union_id", &a->union_id, err)) ||
      (rc = opt_str(op, "$.event.operator", "tenant_key", &a->tenant_key,
                    err)) ||
      (rc = opt_str(ev, "$.event", "host", &a->host, err)) ||
      (rc = opt_obj(ev, "$.event", "context", &ctx, err)) ||
      (rc = opt_str(ctx, "$.event.context", "open_message_id", &a->message_id,
                    err)) ||
      (rc =
           opt_str(ctx, "$.event.context", "open_chat_id", &a->chat_id, err)) ||
      (rc = opt_str(ctx, "$.event.context", "url", &a->url, err)) ||
      (rc = opt_str(ctx, "$.event.context", "preview_token", &a->preview_token,
                    err)))
    return rc;
  if (kind != CG_KIND_CARD_ACTION) return 0;
  if ((rc = opt_str(ev, "$.event", "token", &a->update_token, err)) ||
      (rc = opt_obj(ev, "$.event", "action", &act, err)))
    return rc;
  return decode_component(rec, act, "$.event.action", err);
}

/* ---- decode ------------------------------------------------------------- */

static int json_ws(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* 1 for the bytes of standard base64 and '=' (the envelope's string is
 * taken as is only when it holds nothing else). A table, not comparisons:
 * the scan runs over the whole body, and random base64 defeats the branch
 * predictor. */
/* clang-format off */
static const unsigned char b64_chars[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 0, 0,
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0,
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
};
/* clang-format on */

/* Exactly {"encrypt":"<base64 characters>"} (JSON whitespace around it):
 * *b64 points into p. 0 for anything else. */
static int envelope_fast(const char *p, size_t n, const char **b64,
                         size_t *b64_len) {
  static const char head[] = "{\"encrypt\":\"";
  size_t i = 0;
  while (i < n && json_ws(p[i])) i++;
  if (n - i < sizeof head - 1 || memcmp(p + i, head, sizeof head - 1) != 0)
    return 0;
  i += sizeof head - 1;
  size_t start = i;
  while (i < n && b64_chars[(unsigned char)p[i]]) i++;
  if (n - i < 2 || p[i] != '"' || p[i + 1] != '}') return 0;
  *b64 = p + start;
  *b64_len = i - start;
  for (i += 2; i < n; i++)
    if (!json_ws(p[i])) return 0;
  return 1;
}

typedef enum { SHAPE_LEGACY, SHAPE_V2, SHAPE_V1 } body_shape;

int cg__lark_decode(const cg__lark_secrets *s, cg_lark_endpoint ep,
                    const cg_http_request *req, int64_t now_ms,
                    cg__lark_msg *out, cg__lark_error *err) {
  cg_assert(s && req && out && err);
  cg_assert(!s->keys || cg__lark_keys_match(s->keys, s->verification_token,
                                            s->encrypt_key));
  CG_UNUSED(ep); /* the body decides the format (lark_webhook.h) */
  memset(out, 0, sizeof *out);
  err->http_status = 0;
  err->code = 0;
  err->msg[0] = '\0';

  const char *tok =
      configured(s->verification_token) ? s->verification_token : NULL;
  const char *key = configured(s->encrypt_key) ? s->encrypt_key : NULL;
  int rc = 0;
  json_t *root = NULL;
  char *plain = NULL; /* decrypted text, becomes raw_json */
  size_t plain_len = 0;
  int encrypted = 0;
  int pre_verified = 0; /* signature checked before decrypting */
  int pre_mask = 0;     /* the schemes it matched (sig_mask) */
  cg__action_rec *rec = NULL;

  if (!req->body || req->body_len == 0)
    return fail(err, 400, CG_EMALFORMED,
                "empty body: a Lark callback is a JSON object");
  if (req->body_len > CG_LIMIT_BODY_HARD)
    return fail(err, 413, CG_ETOOBIG, "body is larger than %u bytes",
                CG_LIMIT_BODY_HARD);

  /* §0.3: {"encrypt":"<base64>"}. The platform's exact envelope is
   * recognized without building a JSON tree (it is most of the bytes); any
   * other shape goes through the parser with the same result. */
  const char *enc_s = NULL;
  size_t enc_n = 0;
  if (!envelope_fast(req->body, req->body_len, &enc_s, &enc_n)) {
    root = parse_object(req->body, req->body_len, "body", "", err, &rc);
    if (!root) return rc;
    json_t *enc = member(root, "encrypt");
    if (enc && !json_is_string(enc)) {
      rc = fail(err, 400, CG_EMALFORMED, "$.encrypt must be a string, not %s",
                cg__json_type_name(enc));
      goto out;
    }
    if (enc) {
      enc_s = json_string_value(enc);
      enc_n = json_string_length(enc);
    }
  }
  if (enc_s) {
    if (!key) {
      rc = fail(
          err, 400, CG_ECONFIG,
          "body is encrypted but no encrypt key is configured; set " SET_KEY
          " to the Encrypt Key from the developer console");
      goto out;
    }
    /* A signed body's signature is checked before it is decrypted (either
     * scheme an encrypted body may carry); once the shape is known, the
     * scheme that shape requires must be among those that matched
     * (pre_mask saves hashing the body twice). */
    if (req->signature && req->timestamp && req->nonce) {
      pre_mask = sig_mask(s->keys, tok, key, req);
      pre_verified = pre_mask != 0;
    }
    /* Not verified (no or wrong signature): it may still be a challenge,
     * which needs none, so it is decrypted — but every way it can fail to
     * decrypt into JSON gets one answer (UNSIGNED_DECRYPT_FAIL): the answers
     * tell a prober nothing about the padding of a forged ciphertext. */
    int drc = cg__lark_decrypt(s->keys, key, enc_s, enc_n, &plain, &plain_len);
    json_decref(root);
    root = NULL;
    switch (drc) {
      case 0:
        break;
      case CG_ECRYPTO:
        rc = fail(err, 400, CG_ECRYPTO,
                  pre_verified ? "could not decrypt: padding invalid — the Encrypt Key is "
                                 "probably wrong; check " SET_KEY
                               : UNSIGNED_DECRYPT_FAIL);
        goto out;
      case CG_ETOOBIG:
        rc = fail(err, 413, CG_ETOOBIG, "$.encrypt is larger than %u bytes",
                  CG_LIMIT_BODY_HARD);
        goto out;
      case CG_ENOMEM:
        rc = fail_nomem(err);
        goto out;
      default:
        rc = fail(err, 400, CG_EMALFORMED,
                  "could not decrypt: $.encrypt is not standard padded "
                  "base64 of a 16-byte IV and whole AES blocks");
        goto out;
    }
    encrypted = 1;
    root = parse_object(plain, plain_len, "decrypted body",
                        " — the Encrypt Key is probably wrong", err, &rc);
    if (!root && !pre_verified && rc != CG_ENOMEM) {
      /* Unsigned: the same answer as a padding failure, so that answers do
       * not tell a prober whether its ciphertext had valid padding. */
      rc = fail(err, 400, CG_ECRYPTO, UNSIGNED_DECRYPT_FAIL);
      goto out;
    }
    if (!root) goto out;
    if (member(root, "encrypt")) {
      rc = fail(err, 400, CG_EMALFORMED,
                "decrypted body is encrypted again; send the body as Lark "
                "posts it, encrypted once");
      goto out;
    }
  }

  /* §1.2 / §2.3: URL verification. No signature headers, ever. */
  if (is_str(member(root, "type"), "url_verification")) {
    json_t *ch = member(root, "challenge");
    if (!json_is_string(ch)) {
      rc = fail(err, 400, CG_EMALFORMED,
                "$.challenge must be a string in a url_verification body");
      goto out;
    }
    if (json_string_length(ch) > CG_LIMIT_CHALLENGE) {
      rc = fail(err, 413, CG_ETOOBIG,
                "$.challenge is longer than %u bytes; Lark sends a short "
                "random string",
                CG_LIMIT_CHALLENGE);
      goto out;
    }
    if (tok) {
      /* 2.0 bodies carry the token in header.token, others at the top. */
      json_t *hdr = member(root, "header");
      json_t *t = json_is_object(hdr) ? member(hdr, "token") : NULL;
      const char *path = "$.header.token";
      if (!t) {
        t = member(root, "token");
        path = "$.token";
      }
      if ((rc = check_token(t, tok, path, err))) goto out;
    }
    out->challenge = cg_strndup(json_string_value(ch), json_string_length(ch));
    if (!out->challenge) {
      rc = fail_nomem(err);
      goto out;
    }
    out->type = CG__LARK_MSG_CHALLENGE;
    rc = 0;
    goto out;
  }

  /* Classification (§2.2). */
  body_shape shape;
  json_t *hdr = NULL;
  const char *event_type = NULL;
  cg__lark_msg_type mtype = CG__LARK_MSG_EVENT;
  cg_kind kind = CG_KIND_CARD_ACTION;
  json_t *schema = member(root, "schema");
  if (schema) {
    if (!json_is_string(schema)) {
      rc = fail(err, 400, CG_EMALFORMED, "$.schema must be a string, not %s",
                cg__json_type_name(schema));
      goto out;
    }
    if ((rc = opt_obj(root, "$", "header", &hdr, err))) goto out;
    if (!hdr) {
      rc = fail(err, 400, CG_EMALFORMED,
                "$.header must be an object in a schema 2.0 body");
      goto out;
    }
    json_t *et = member(hdr, "event_type");
    if (!json_is_string(et)) {
      rc = fail(err, 400, CG_EMALFORMED,
                "$.header.event_type must be a string in a schema 2.0 body");
      goto out;
    }
    event_type = json_string_value(et);
    shape = SHAPE_V2;
    if (strcmp(event_type, "card.action.trigger") == 0) {
      mtype = CG__LARK_MSG_ACTION;
    } else if (strcmp(event_type, "url.preview.get") == 0) {
      mtype = CG__LARK_MSG_ACTION;
      kind = CG_KIND_URL_PREVIEW;
    }
  } else if (member(root, "uuid") && member(root, "event")) {
    shape = SHAPE_V1;
  } else if (member(root, "action")) {
    if (!json_is_object(member(root, "action"))) {
      rc = fail(err, 400, CG_EMALFORMED, "$.action must be an object, not %s",
                cg__json_type_name(member(root, "action")));
      goto out;
    }
    shape = SHAPE_LEGACY;
    mtype = CG__LARK_MSG_ACTION;
  } else {
    rc = fail(err, 400, CG_EMALFORMED,
              "unrecognized callback body: expected a url_verification "
              "challenge, a schema 2.0 callback or a legacy card callback "
              "(with an \"action\" object)");
    goto out;
  }

  /* Verification (§0.4, §0.5; policy table in docs/lark-webhook.md). */
  if (tok || key) {
    if (shape == SHAPE_LEGACY) {
      sig_policy pol = {tok, encrypted ? key : NULL, tok ? SET_TOKEN : SET_KEY};
      if (!pol.sha1_token && !pol.sha256_key) {
        rc = fail(err, 401, CG_EAUTH,
                  "plaintext legacy card callback cannot be verified with the "
                  "configured secrets: it is signed with SHA-1 and the "
                  "Verification Token; set " SET_TOKEN);
        goto out;
      }
      if (!(pre_verified && (pre_mask & ((pol.sha1_token ? 1 : 0) | (pol.sha256_key ? 2 : 0)))) &&
          (rc = check_signature(s->keys, &pol, req, err)))
        goto out;
    } else {
      if (key) {
        if (!encrypted) {
          rc = fail(err, 400, CG_EAUTH,
                    "plaintext body while an encrypt key is configured (Lark "
                    "encrypts every push once a key is set); check " SET_KEY
                    " against the developer console");
          goto out;
        }
        sig_policy pol = {NULL, key, SET_KEY};
        if (!(pre_verified && (pre_mask & 2)) && (rc = check_signature(s->keys, &pol, req, err)))
          goto out;
      }
      if (tok) {
        json_t *t =
            shape == SHAPE_V2 ? member(hdr, "token") : member(root, "token");
        if ((rc = check_token(t, tok,
                              shape == SHAPE_V2 ? "$.header.token" : "$.token",
                              err)))
          goto out;
      }
    }
  }
  if (s->replay_window_s > 0 && (rc = check_replay(s, req, now_ms, err)))
    goto out;

  if (mtype == CG__LARK_MSG_EVENT) {
    const char *id = NULL, *type = event_type;
    if (shape == SHAPE_V2) {
      if ((rc = opt_str(hdr, "$.header", "event_id", &id, err)) ||
          (rc = check_event_id(id, "$.header.event_id", err)))
        goto out;
    } else {
      json_t *ev;
      if ((rc = opt_str(root, "$", "uuid", &id, err)) ||
          (rc = opt_obj(root, "$", "event", &ev, err)) ||
          (rc = opt_str(ev, "$.event", "type", &type, err)))
        goto out;
      if (type && strcmp(type, "app_ticket") == 0) {
        /* {"type":"app_ticket","app_id":"cli_…","app_ticket":"…"} */
        const char *aid = NULL, *ticket = NULL;
        if ((rc = opt_str(ev, "$.event", "app_id", &aid, err)) ||
            (rc = opt_str(ev, "$.event", "app_ticket", &ticket, err)))
          goto out;
        if (!ticket || !*ticket || strlen(ticket) > CG_LIMIT_ID ||
            (aid && strlen(aid) > CG_LIMIT_ID)) {
          rc = fail(err, 400, CG_EMALFORMED,
                    "$.event.app_ticket must be a non-empty string of at "
                    "most %u bytes in an app_ticket event",
                    (unsigned)CG_LIMIT_ID);
          goto out;
        }
        if ((aid && !(out->app_id = cg_strdup(aid))) ||
            !(out->app_ticket = cg_strdup(ticket))) {
          rc = fail_nomem(err);
          goto out;
        }
      }
    }
    out->type = CG__LARK_MSG_EVENT;
    if ((type && !(out->event_type = cg_strdup(type))) ||
        (id && !(out->event_id = cg_strdup(id)))) {
      rc = fail_nomem(err);
      goto out;
    }
    rc = 0;
    goto out;
  }

  rec = cg__action_new();
  if (!rec) {
    rc = fail_nomem(err);
    goto out;
  }
  rc = shape == SHAPE_LEGACY ? decode_legacy(rec, root, err)
                             : decode_v2(rec, root, hdr, kind, err);
  if (rc) goto out;
  if (!plain) {
    plain = cg_strndup(req->body, req->body_len);
    if (!plain) {
      rc = fail_nomem(err);
      goto out;
    }
  }
  rec->root = root;
  root = NULL;
  rec->raw_json = plain;
  plain = NULL;
  cg_action *a = &rec->pub;
  a->platform = CG_PLATFORM_LARK;
  a->transport = CG_TRANSPORT_HTTP;
  a->value_json = rec->value_json ? rec->value_json : "{}";
  a->form_value_json = rec->form_value_json;
  a->options_json = rec->options_json;
  a->received_at_ms = now_ms;
  out->type = CG__LARK_MSG_ACTION;
  out->action = rec;
  rec = NULL;
  rc = 0;

out:
  cg__action_free(rec);
  json_decref(root);
  free(plain);
  if (rc) cg__lark_msg_clear(out);
  return rc;
}

void cg__lark_msg_clear(cg__lark_msg *m) {
  if (!m) return;
  free(m->challenge);
  free(m->event_type);
  free(m->event_id);
  free(m->app_id);
  if (m->app_ticket) memset(m->app_ticket, 0, strlen(m->app_ticket));
  free(m->app_ticket);
  cg__action_free(m->action);
  memset(m, 0, sizeof *m);
}

/* ---- encoding ----------------------------------------------------------- */

/* The card as compact JSON: its serialization when the reply carries one
 * (cg__reply_card_take: serialized once, by the engine), else dumped now. */
static int append_card_json(cg_buf *b, const cg_reply *r) {
  if (r->card_text) return cg_buf_append(b, r->card_text, r->card_text_len);
  return append_json(b, r->card);
}

static int append_str(cg_buf *b, const char *s) {
  return cg_buf_append_json_str(b, s, strlen(s));
}

/* "key":"value" with an optional leading comma. */
static int append_kv_str(cg_buf *b, int comma, const char *k, const char *v) {
  int rc = comma ? cg_buf_append(b, ",", 1) : 0;
  if (!rc) rc = append_str(b, k);
  if (!rc) rc = cg_buf_append(b, ":", 1);
  if (!rc) rc = append_str(b, v);
  return rc;
}

static int has_i18n(const cg_reply *r) {
  return r->toast_i18n && json_object_size(r->toast_i18n) > 0;
}

/* Legacy toast (lark.md §1.4: the Go SDK's CustomToastBody, sent with 400). */
static int encode_legacy(const cg_reply *r, int *status, cg_buf *b) {
  if (r && r->card) {
    *status = 200;
    return append_card_json(b, r);
  }
  if (r && r->toast_content) {
    *status = 400;
    int rc = cg_buf_append(b, "{", 1);
    if (!rc) rc = append_kv_str(b, 0, "content", r->toast_content);
    if (!rc && has_i18n(r)) {
      rc = cg_buf_appends(b, ",\"i18n\":");
      if (!rc) rc = append_json(b, r->toast_i18n);
    }
    if (!rc) rc = cg_buf_append(b, "}", 1);
    return rc;
  }
  /* keep; a template is not supported by legacy callbacks (reply.h) */
  *status = 200;
  return cg_buf_append(b, "{}", 2);
}

/* "card":{"type":"raw","data":…} or the template form (lark.md §2.4). */
static int append_card(cg_buf *b, const cg_reply *r, int comma) {
  int rc = 0;
  if (r->card) {
    rc = cg_buf_appends(b, comma ? ",\"card\":{\"type\":\"raw\",\"data\":"
                                 : "\"card\":{\"type\":\"raw\",\"data\":");
    if (!rc) rc = append_card_json(b, r);
    if (!rc) rc = cg_buf_append(b, "}", 1);
  } else if (r->template_id) {
    rc =
        cg_buf_appends(b, comma ? ",\"card\":{\"type\":\"template\",\"data\":{"
                                : "\"card\":{\"type\":\"template\",\"data\":{");
    if (!rc) rc = append_kv_str(b, 0, "template_id", r->template_id);
    if (!rc && r->template_vars) {
      rc = cg_buf_appends(b, ",\"template_variable\":");
      if (!rc) rc = append_json(b, r->template_vars);
    }
    if (!rc && r->template_version)
      rc = append_kv_str(b, 1, "template_version_name", r->template_version);
    if (!rc) rc = cg_buf_append(b, "}}", 2);
  }
  return rc;
}

static int encode_trigger(const cg_reply *r, int *status, cg_buf *b) {
  *status = 200;
  int rc = cg_buf_append(b, "{", 1);
  int n = 0;
  if (r && !rc && r->toast_content) {
    rc = cg_buf_appends(b, "\"toast\":{");
    int c = 0;
    if (!rc && r->toast_type) {
      rc = append_kv_str(b, 0, "type", r->toast_type);
      c = 1;
    }
    if (!rc) rc = append_kv_str(b, c, "content", r->toast_content);
    if (!rc && has_i18n(r)) {
      rc = cg_buf_appends(b, ",\"i18n\":");
      if (!rc) rc = append_json(b, r->toast_i18n);
    }
    if (!rc) rc = cg_buf_append(b, "}", 1);
    n++;
  }
  if (r && !rc) rc = append_card(b, r, n > 0);
  if (!rc) rc = cg_buf_append(b, "}", 1);
  return rc;
}

/* url.preview.get (lark.md §2.5). */
static int encode_preview(const cg_reply *r, int *status, cg_buf *b) {
  *status = 200;
  int rc = cg_buf_append(b, "{", 1);
  int n = 0;
  if (r && !rc && r->inline_title) {
    rc = cg_buf_appends(b, "\"inline\":{");
    if (!rc) rc = append_kv_str(b, 0, "title", r->inline_title);
    if (!rc && r->inline_url) {
      static const char *const keys[] = {"copy_url", "ios", "android", "pc",
                                         "web"};
      rc = cg_buf_appends(b, ",\"url\":{");
      for (size_t i = 0; !rc && i < CG_ARRAY_SIZE(keys); i++)
        rc = append_kv_str(b, i > 0, keys[i], r->inline_url);
      if (!rc) rc = cg_buf_append(b, "}", 1);
    }
    if (!rc) rc = cg_buf_append(b, "}", 1);
    n++;
  }
  if (r && !rc) rc = append_card(b, r, n > 0);
  if (!rc) rc = cg_buf_append(b, "}", 1);
  return rc;
}

int cg__lark_encode_reply(const cg_action *a, const cg_reply *r, int *status,
                          cg_buf *out) {
  cg_assert(a && status && out);
  size_t start = out->len;
  int st = 200, rc;
  if (r && r->custom_status > 0) {
    st = r->custom_status;
    rc = cg_buf_appends(out, r->custom_body ? r->custom_body : "");
  } else if (a->format == CG_FORMAT_LARK_LEGACY) {
    rc = encode_legacy(r, &st, out);
  } else if (a->kind == CG_KIND_URL_PREVIEW) {
    rc = encode_preview(r, &st, out);
  } else {
    rc = encode_trigger(r, &st, out);
  }
  if (rc) {
    /* no half-built output */
    out->len = start;
    if (out->data) out->data[start] = '\0';
    return rc;
  }
  *status = st;
  return 0;
}

int cg__lark_encode_challenge(const char *challenge, cg_buf *out) {
  cg_assert(challenge && out);
  size_t start = out->len;
  int rc = cg_buf_appends(out, "{\"challenge\":");
  if (!rc) rc = append_str(out, challenge);
  if (!rc) rc = cg_buf_append(out, "}", 1);
  if (rc) {
    out->len = start;
    if (out->data) out->data[start] = '\0';
  }
  return rc;
}

/* A JSON string of s with invalid UTF-8 replaced by U+FFFD, so an error
 * message can never make the answer invalid JSON. */
static int append_json_str_safe(cg_buf *b, const char *s) {
  static const char hex[] = "0123456789abcdef";
  const unsigned char *p = (const unsigned char *)s;
  size_t n = strlen(s), i = 0, run = 0;
  int rc = cg_buf_append(b, "\"", 1);
  while (!rc && i < n) {
    unsigned c = p[i];
    size_t l = c >= 0x20 && c != '"' && c != '\\' ? utf8_seq(p + i, n - i) : 0;
    if (l) {
      i += l;
      continue;
    }
    rc = cg_buf_append(b, s + run, i - run);
    if (rc) break;
    if (c == '"')
      rc = cg_buf_append(b, "\\\"", 2);
    else if (c == '\\')
      rc = cg_buf_append(b, "\\\\", 2);
    else if (c == '\n')
      rc = cg_buf_append(b, "\\n", 2);
    else if (c == '\r')
      rc = cg_buf_append(b, "\\r", 2);
    else if (c == '\t')
      rc = cg_buf_append(b, "\\t", 2);
    else if (c < 0x20) {
      char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
      rc = cg_buf_append(b, esc, sizeof esc);
    } else {
      rc = cg_buf_append(b, "\\ufffd", 6);
    }
    run = ++i;
  }
  if (!rc) rc = cg_buf_append(b, s + run, n - run);
  if (!rc) rc = cg_buf_append(b, "\"", 1);
  return rc;
}

int cg__encode_error(int code, const char *msg, cg_buf *out) {
  cg_assert(out);
  size_t start = out->len;
  int rc = cg_buf_appendf(out, "{\"code\":%d,\"msg\":", -code);
  if (!rc) rc = append_json_str_safe(out, msg ? msg : "");
  if (!rc) rc = cg_buf_append(out, "}", 1);
  if (rc) {
    out->len = start;
    if (out->data) out->data[start] = '\0';
  }
  return rc;
}
