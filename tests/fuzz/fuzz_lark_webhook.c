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
 * JSON; an error message never contains a secret. */
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

  cg__lark_secrets s = {(flags & 1) ? TOK : NULL, (flags & 2) ? KEY : NULL,
                        (flags & 32) ? 300u : 0u};
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
    cg_reply *r = make_reply(flags >> 6);
    int status = 0;
    if (r) {
      if (cg__lark_encode_reply(a, r, &status, &out) != 0) abort();
      check_json(out.data, out.len);
      cg_reply_free(r);
    }
  }
  cg__lark_msg_clear(&m);
  cg_buf_free(&out);
  free(wrapped);
  free(body);
  return 0;
}
