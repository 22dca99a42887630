/* libFuzzer target for the Lark webhook codec (src/lib/codec/lark_webhook.c).
 *
 * Input: one flag byte, then up to three header lines and the body:
 *   <flags> <timestamp> '\n' <nonce> '\n' <signature> '\n' <body…>
 * A header whose line is missing is absent. Flags:
 *   bits 0-1  secrets: 0 none, 1 verification token, 2 encrypt key, 3 both
 *   bit  2    the harness signs the final body itself (so the fuzzer gets past
 *             verification), bit 3 chooses SHA-256 + key over SHA-1 + token
 *   bit  4    the harness encrypts the body with the key first
 *             ({"encrypt":…}), so plaintext mutations reach decryption paths
 *   bit  5    replay window of 300 s (now is fixed)
 *   bits 6-7  the reply to encode for an action: keep, card + toast,
 *             toast + i18n, template + inline
 * Oracles besides the sanitizers: error answers and encoded replies are valid
 * JSON; an error message never contains a secret; every request decodes the
 * same with prepared keys (cg__lark_keys, one per set of secrets, kept for
 * the whole run) as with per-call secrets; value_json and an encoded
 * card are byte for byte jansson's compact dump; a card reply carrying its
 * text (cg__reply_card_take) encodes like the same card without it. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cardgate/lark.h"
#include "common/limits.h"
#include "lib/codec/lark_webhook.h"
#include "lib/core/reply_int.h"

#define TOK "fuzz-token"
#define KEY "fuzz-key"
#define NOW INT64_C(1700000000000)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *next_line(const char **p, const char *end, size_t *len) {
  const char *nl = memchr(*p, '\n', (size_t)(end - *p));
  if (!nl) return NULL;
  const char *s = *p;
  *len = (size_t)(nl - s);
  *p = nl + 1;
  return s;
}

static void check_json(const char *s, size_t n) {
  json_t *j = json_loadb(s, n, JSON_DECODE_ANY, NULL);
  if (!j) abort();
  json_decref(j);
}

static void same_str(const char *a, const char *b) {
  if ((a == NULL) != (b == NULL) || (a && strcmp(a, b) != 0)) abort();
}

/* Two decodes of one request must agree in every observable. */
static void same_outcome(int rc1, const cg__lark_msg *m1,
                         const cg__lark_error *e1, int rc2,
                         const cg__lark_msg *m2, const cg__lark_error *e2) {
  if (rc1 != rc2) abort();
  if (rc1) {
    if (e1->http_status != e2->http_status || strcmp(e1->msg, e2->msg) != 0)
      abort();
    return;
  }
  if (m1->type != m2->type || (m1->action == NULL) != (m2->action == NULL))
    abort();
  same_str(m1->challenge, m2->challenge);
  same_str(m1->event_type, m2->event_type);
  same_str(m1->event_id, m2->event_id);
  if (!m1->action) return;
  const cg_action *a = &m1->action->pub, *b = &m2->action->pub;
  if (a->kind != b->kind || a->format != b->format || a->checked != b->checked)
    abort();
  same_str(cg_action_raw_json(a), cg_action_raw_json(b));
  same_str(a->value_json, b->value_json);
  same_str(a->form_value_json, b->form_value_json);
  same_str(a->options_json, b->options_json);
  same_str(a->open_id, b->open_id);
  same_str(a->tag, b->tag);
  same_str(a->update_token, b->update_token);
}

static cg_reply *make_reply(unsigned which) {
  int err;
  cg_reply *r = NULL;
  switch (which) {
    case 0:
      r = cg_reply_keep();
      break;
    case 1:
      r = cg_reply_card("{\"elements\":[{\"tag\":\"div\"}]}", &err);
      if (r) cg_reply_set_toast(r, "success", "ok \"quoted\"");
      break;
    case 2:
      r = cg_reply_toast("error", "no", &err);
      if (r) cg_reply_toast_i18n(r, "en_us", "No");
      break;
    default:
      r = cg_reply_template("tpl", "{\"a\":[1,2]}", "1.0", &err);
      if (r) cg_reply_set_inline(r, "title", "https://e.x/\xe4\xb8\x80");
      break;
  }
  return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  unsigned flags = data[0];
  const char *p = (const char *)data + 1, *end = (const char *)data + size;

  /* One keys object per set of secrets for the whole run, as the app keeps
   * one (a fuzzer-only static: the codec itself keeps none). */
  static cg__lark_keys *keys[4];
  static int keys_made;
  if (!keys_made) {
    for (unsigned i = 0; i < 4; i++)
      if (cg__lark_keys_new((i & 1) ? TOK : NULL, (i & 2) ? KEY : NULL,
                            &keys[i]) != 0)
        abort();
    keys_made = 1;
  }
  cg__lark_secrets s = {(flags & 1) ? TOK : NULL, (flags & 2) ? KEY : NULL,
                        (flags & 32) ? 300u : 0u, NULL};
  cg__lark_secrets sk = s;
  sk.keys = keys[flags & 3];
  cg_http_request req;
  memset(&req, 0, sizeof req);
  req.timestamp = next_line(&p, end, &req.timestamp_len);
  if (req.timestamp) req.nonce = next_line(&p, end, &req.nonce_len);
  if (req.nonce) req.signature = next_line(&p, end, &req.signature_len);

  /* The body in its own exact-size block so ASan sees any overread. */
  size_t blen = (size_t)(end - p);
  char *body = malloc(blen ? blen : 1);
  if (!body) return 0;
  if (blen) memcpy(body, p, blen);
  req.body = body;
  req.body_len = blen;

  char *wrapped = NULL;
  if (flags & 16) {
    char *b64 = NULL;
    static const unsigned char iv[16] = {1, 2,  3,  4,  5,  6,  7,  8,
                                         9, 10, 11, 12, 13, 14, 15, 16};
    if (cg_lark_encrypt(KEY, body, blen, iv, &b64) == 0) {
      size_t n = strlen(b64);
      wrapped = malloc(n + 14);
      if (wrapped) {
        memcpy(wrapped, "{\"encrypt\":\"", 12);
        memcpy(wrapped + 12, b64, n);
        memcpy(wrapped + 12 + n, "\"}", 2);
        req.body = wrapped;
        req.body_len = n + 14;
      }
      free(b64);
    }
  }

  /* The harness signs with NUL-terminated copies of the header fields. */
  char ts[CG_LIMIT_HEADER_VALUE + 1], nonce[CG_LIMIT_HEADER_VALUE + 1];
  char sig[65];
  if ((flags & 4) && req.timestamp && req.nonce &&
      req.timestamp_len <= CG_LIMIT_HEADER_VALUE &&
      req.nonce_len <= CG_LIMIT_HEADER_VALUE) {
    memcpy(ts, req.timestamp, req.timestamp_len);
    ts[req.timestamp_len] = '\0';
    memcpy(nonce, req.nonce, req.nonce_len);
    nonce[req.nonce_len] = '\0';
    if (flags & 8)
      cg_lark_sign_event(ts, nonce, KEY, req.body, req.body_len, sig);
    else
      cg_lark_sign_legacy(ts, nonce, TOK, req.body, req.body_len, sig);
    req.signature = sig;
    req.signature_len = strlen(sig);
  }

  cg__lark_msg m;
  cg__lark_error e;
  cg_buf out;
  cg_buf_init(&out, 1 << 20);
  int rc = cg__lark_decode(&s, CG_LARK_ENDPOINT_CARD, &req, NOW, &m, &e);
  {
    cg__lark_msg mk;
    cg__lark_error ek;
    int rck = cg__lark_decode(&sk, CG_LARK_ENDPOINT_CARD, &req, NOW, &mk, &ek);
    same_outcome(rc, &m, &e, rck, &mk, &ek);
    cg__lark_msg_clear(&mk);
  }
  if (rc) {
    if (m.action || m.challenge || m.event_type || m.event_id) abort();
    if (e.code != rc || e.http_status < 400 || e.http_status > 599) abort();
    if (strstr(e.msg, TOK) || strstr(e.msg, KEY)) abort();
    if (cg__encode_error(e.code, e.msg, &out) != 0) abort();
    check_json(out.data, out.len);
  } else if (m.type == CG__LARK_MSG_CHALLENGE) {
    if (cg__lark_encode_challenge(m.challenge, &out) != 0) abort();
    check_json(out.data, out.len);
  } else if (m.type == CG__LARK_MSG_ACTION) {
    const cg_action *a = &m.action->pub;
    (void)cg_action_value(a, "k");
    (void)cg_action_value(a, "n");
    if (!a->value_json || !cg_action_raw_json(a)) abort();
    check_json(a->value_json, strlen(a->value_json));
    const json_t *value = m.action->value;
    char *vd = value ? json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    if (value && (!vd || strcmp(vd, a->value_json) != 0)) abort();
    cg_reply *r = make_reply(flags >> 6);
    int status = 0;
    if (r) {
      if (cg__lark_encode_reply(a, r, &status, &out) != 0) abort();
      check_json(out.data, out.len);
      cg_reply_free(r);
    }
    if (json_is_object(value)) {
      /* the request's own value as a card: the encoder's dump is jansson's,
       * and a reply carrying that text answers the same bytes */
      cg_buf c1, c2;
      cg_buf_init(&c1, 1 << 24);
      cg_buf_init(&c2, 1 << 24);
      cg_reply *r1 = cg_reply_keep();
      cg_reply *r2 =
          cg__reply_card_take(json_incref((json_t *)value), strdup(vd));
      if (!r1 || !r2) abort();
      r1->card = json_incref((json_t *)value);
      int s1 = 0, s2 = 0;
      if (cg__lark_encode_reply(a, r1, &s1, &c1) != 0 ||
          cg__lark_encode_reply(a, r2, &s2, &c2) != 0 || s1 != s2 ||
          c1.len != c2.len || memcmp(c1.data, c2.data, c1.len) != 0)
        abort();
      const char *want_prefix = a->format == CG_FORMAT_LARK_LEGACY
                                    ? ""
                                    : "{\"card\":{\"type\":\"raw\",\"data\":";
      size_t pl = strlen(want_prefix), vl = strlen(vd);
      if (c1.len < pl + vl || memcmp(c1.data, want_prefix, pl) != 0 ||
          memcmp(c1.data + pl, vd, vl) != 0)
        abort();
      cg_reply_free(r1);
      cg_reply_free(r2);
      cg_buf_free(&c1);
      cg_buf_free(&c2);
    }
    free(vd);
  }
  cg__lark_msg_clear(&m);
  cg_buf_free(&out);
  free(wrapped);
  free(body);
  return 0;
}
