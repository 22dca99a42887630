/* Lark webhook codec (src/lib/codec/lark_webhook.c) and the action accessors
 * (src/lib/core/action.c): verification policy, classification, decoding,
 * replay window, timestamps, hostile input, reply encoding byte for byte.
 *
 * Every header value and body is copied into a heap block of exactly its
 * length, so ASan catches any read past a length. Every error message is
 * checked never to contain a secret or an expected signature. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
/* cmocka needs the standard headers above */
#include <cmocka.h>

#include "cardgate/lark.h"
#include "common/limits.h"
#include "lib/codec/lark_webhook.h"
#include "lib/core/reply_int.h"

#define TOK "vt-SECRET-token-9f8e"
#define KEY "ek-SECRET-key-7a6b"
#define NOW INT64_C(1700000000000) /* 2023-11-14 22:13:20 UTC */

static const cg__lark_secrets S_NONE = {NULL, NULL, 0, NULL};
static const cg__lark_secrets S_EMPTY = {"", "", 0, NULL};
static const cg__lark_secrets S_TOK = {TOK, NULL, 0, NULL};
static const cg__lark_secrets S_KEY = {NULL, KEY, 0, NULL};
static const cg__lark_secrets S_BOTH = {TOK, KEY, 0, NULL};

/* ---- bodies ------------------------------------------------------------- */

#define LEGACY                                                                \
  "{\"open_id\":\"ou_1\",\"user_id\":\"u_1\",\"open_message_id\":\"om_1\","   \
  "\"open_chat_id\":\"oc_1\",\"tenant_key\":\"tk_1\",\"token\":\"c-upd\","    \
  "\"action\":{\"tag\":\"button\",\"value\":{\"k\":\"v\",\"n\":42,\"r\":1.5," \
  "\"b\":true,\"f\":false,\"z\":null,\"o\":{\"x\":1},\"a\":[1]},"             \
  "\"option\":\"opt\",\"name\":\"btn\",\"timezone\":\"Asia/Shanghai\"}}"

#define V2_TRIGGER_H(tok)                                                     \
  "{\"schema\":\"2.0\",\"header\":{\"event_id\":\"ev_1\",\"token\":\"" tok    \
  "\",\"create_time\":\"1700000000000\",\"event_type\":"                      \
  "\"card.action.trigger\",\"tenant_key\":\"tk_h\",\"app_id\":\"cli_1\"},"    \
  "\"event\":{\"operator\":{\"tenant_key\":\"tk_o\",\"user_id\":\"u_2\","     \
  "\"open_id\":\"ou_2\",\"union_id\":\"on_2\"},\"token\":\"c-upd2\","         \
  "\"action\":{\"value\":{\"k\":\"v2\"},\"tag\":\"select_static\","           \
  "\"option\":\"o1\",\"timezone\":\"UTC\",\"form_value\":{\"a\":\"1\","       \
  "\"b\":[\"x\",\"y\"]},\"input_value\":\"typed\",\"options\":[\"p\",\"q\"]," \
  "\"checked\":true,\"name\":\"f\"},\"host\":\"im_message\","                 \
  "\"delivery_type\":\"url_preview\",\"context\":{\"url\":\"https://e.x\","   \
  "\"preview_token\":\"pt\",\"open_message_id\":\"om_2\","                    \
  "\"open_chat_id\":\"oc_2\"}}}"
#define V2_TRIGGER V2_TRIGGER_H(TOK)

#define V2_PREVIEW                                                          \
  "{\"schema\":\"2.0\",\"header\":{\"event_id\":\"ev_p\",\"token\":\"" TOK  \
  "\",\"event_type\":\"url.preview.get\",\"app_id\":\"cli_1\","             \
  "\"tenant_key\":\"tk_h\"},\"event\":{\"operator\":{\"open_id\":\"ou_3\"," \
  "\"user_id\":\"u_3\",\"tenant_key\":\"tk_o3\"},\"host\":\"im_message\","  \
  "\"context\":{\"url\":\"https://e.x/p\",\"preview_token\":\"pt3\","       \
  "\"open_message_id\":\"om_3\",\"open_chat_id\":\"oc_3\"}}}"

#define V2_EVENT                                                           \
  "{\"schema\":\"2.0\",\"header\":{\"event_id\":\"ev_e\",\"token\":\"" TOK \
  "\",\"event_type\":\"im.message.receive_v1\"},\"event\":{}}"

#define V1_EVENT                                                      \
  "{\"uuid\":\"uu_1\",\"token\":\"" TOK                               \
  "\",\"ts\":\"1700000000.1\",\"type\":\"event_callback\",\"event\":" \
  "{\"type\":\"message\"}}"

#define CHALLENGE_T(tok)                                          \
  "{\"challenge\":\"ch-1\",\"token\":\"" tok "\",\"type\":\"url_" \
                                             "verification\"}"
#define CHALLENGE CHALLENGE_T(TOK)

/* ---- helpers ------------------------------------------------------------ */

static char *heap_copy(const char *s, size_t n) {
  char *p = malloc(n ? n : 1);
  assert_non_null(p);
  if (n) memcpy(p, s, n);
  return p;
}

/* {"encrypt":"…"} of plain under key (fixed IV: deterministic tests). */
static char *wrap(const char *key, const char *plain) {
  static const unsigned char iv[16] = {9, 8, 7, 6, 5, 4, 3, 2,
                                       1, 0, 1, 2, 3, 4, 5, 6};
  char *b64 = NULL;
  assert_int_equal(cg_lark_encrypt(key, plain, strlen(plain), iv, &b64), 0);
  size_t n = strlen(b64) + 16;
  char *out = malloc(n);
  assert_non_null(out);
  snprintf(out, n, "{\"encrypt\":\"%s\"}", b64);
  free(b64);
  return out;
}

typedef struct call {
  const cg__lark_secrets *s;
  const char *ts, *nonce, *sig; /* NULL = header absent */
  const char *body;
  size_t body_len; /* 0 = strlen(body) */
  int64_t now;     /* 0 = NOW */
} call;

/* Set for the second run of the whole group (main): every decode through
 * run() then uses prepared keys made from the call's secrets. */
static int g_prepared;

static int use_prepared(void **state) {
  (void)state;
  g_prepared = 1;
  return 0;
}

/* Decodes with every input in exact-size heap blocks; checks the error
 * contract (status, message without secrets, empty out). */
static int run(const call *c, cg__lark_msg *m, cg__lark_error *e) {
  size_t bl = c->body_len ? c->body_len : strlen(c->body);
  cg_http_request req;
  memset(&req, 0, sizeof req);
  req.body = heap_copy(c->body, bl);
  req.body_len = bl;
  if (c->ts) {
    req.timestamp = heap_copy(c->ts, strlen(c->ts));
    req.timestamp_len = strlen(c->ts);
  }
  if (c->nonce) {
    req.nonce = heap_copy(c->nonce, strlen(c->nonce));
    req.nonce_len = strlen(c->nonce);
  }
  if (c->sig) {
    req.signature = heap_copy(c->sig, strlen(c->sig));
    req.signature_len = strlen(c->sig);
  }
  cg__lark_secrets sec = *c->s;
  cg__lark_keys *keys = NULL;
  if (g_prepared && !sec.keys) {
    assert_int_equal(
        cg__lark_keys_new(sec.verification_token, sec.encrypt_key, &keys), 0);
    sec.keys = keys;
  }
  int rc = cg__lark_decode(&sec, CG_LARK_ENDPOINT_CARD, &req,
                           c->now ? c->now : NOW, m, e);
  cg__lark_keys_free(keys);
  if (rc) {
    assert_true(rc < 0);
    assert_int_equal(e->code, rc);
    assert_true(e->http_status >= 400 && e->http_status <= 599);
    assert_true(e->msg[0] != '\0');
    assert_null(strstr(e->msg, "SECRET"));
    assert_null(m->action);
    assert_null(m->challenge);
    assert_null(m->event_type);
    /* never an expected signature: no long hex run in a message */
    size_t run_len = 0;
    for (const char *p = e->msg; *p; p++) {
      run_len = (strchr("0123456789abcdef", *p) && *p) ? run_len + 1 : 0;
      assert_true(run_len < 40);
    }
  } else {
    assert_int_equal(e->code, 0);
  }
  free((void *)req.body);
  free((void *)req.timestamp);
  free((void *)req.nonce);
  free((void *)req.signature);
  return rc;
}

enum sigkind {
  NOSIG,        /* no X-Lark-* headers */
  SIG1_TOK,     /* SHA-1 + TOK over the raw body */
  SIG256_KEY,   /* SHA-256 + KEY over the raw body */
  SIG1_WRONG,   /* SHA-1 with another token */
  SIG256_WRONG, /* SHA-256 with another key */
  SIG256_UPPER, /* right, but upper-case hex */
  SIG256_SHORT, /* right, one digit short */
  SIG256_OTHER, /* right secret, different body */
  SIG1_UPPER,
  SIG_NO_NONCE, /* right SHA-256, nonce header missing */
  SIG_NO_SIG,   /* timestamp and nonce only */
};

#define TS "1700000000"
#define NONCE "n-42"

static void make_sig(enum sigkind k, const char *body, char out[80]) {
  char s1[41], s2[65];
  out[0] = '\0';
  switch (k) {
    case SIG1_TOK:
    case SIG1_UPPER:
      cg_lark_sign_legacy(TS, NONCE, TOK, body, strlen(body), s1);
      memcpy(out, s1, sizeof s1);
      break;
    case SIG1_WRONG:
      cg_lark_sign_legacy(TS, NONCE, "other", body, strlen(body), s1);
      memcpy(out, s1, sizeof s1);
      break;
    case SIG256_KEY:
    case SIG256_UPPER:
    case SIG256_SHORT:
    case SIG_NO_NONCE:
      cg_lark_sign_event(TS, NONCE, KEY, body, strlen(body), s2);
      memcpy(out, s2, sizeof s2);
      break;
    case SIG256_WRONG:
      cg_lark_sign_event(TS, NONCE, "other", body, strlen(body), s2);
      memcpy(out, s2, sizeof s2);
      break;
    case SIG256_OTHER:
      cg_lark_sign_event(TS, NONCE, KEY, "{}", 2, s2);
      memcpy(out, s2, sizeof s2);
      break;
    default:
      break;
  }
  if (k == SIG256_UPPER || k == SIG1_UPPER)
    for (char *p = out; *p; p++)
      if (*p >= 'a' && *p <= 'f') *p = (char)(*p - 32);
  if (k == SIG256_SHORT) out[63] = '\0';
}

/* Decodes plain (encrypted under KEY first when enc) with signature kind k. */
static int run_sig(const cg__lark_secrets *s, const char *plain, int enc,
                   enum sigkind k, cg__lark_msg *m, cg__lark_error *e) {
  char *body = enc ? wrap(KEY, plain) : strdup(plain);
  char sig[80];
  make_sig(k, body, sig);
  call c = {.s = s, .body = body};
  if (k != NOSIG) {
    c.ts = TS;
    c.nonce = k == SIG_NO_NONCE ? NULL : NONCE;
    c.sig = k == SIG_NO_SIG ? NULL : sig;
  }
  int rc = run(&c, m, e);
  free(body);
  return rc;
}

/* ---- the secrets policy matrix (docs/lark-webhook.md) ------------------- */

#define V2_BADTOK V2_TRIGGER_H("vt-wrong")
#define V2_NOTOK                                                             \
  "{\"schema\":\"2.0\",\"header\":{\"event_type\":\"card.action.trigger\"}," \
  "\"event\":{}}"

typedef struct row {
  const char *name;
  const cg__lark_secrets *s;
  const char *plain;
  int enc;
  enum sigkind sig;
  int rc, status;
  cg__lark_msg_type type;
  const char *msg; /* substring of the error message */
} row;

static const row matrix[] = {
    /* no secret: nothing is checked */
    {"none/legacy", &S_NONE, LEGACY, 0, NOSIG, 0, 0, CG__LARK_MSG_ACTION, 0},
    {"none/legacy garbage sig", &S_NONE, LEGACY, 0, SIG1_WRONG, 0, 0,
     CG__LARK_MSG_ACTION, 0},
    {"none/v2", &S_NONE, V2_TRIGGER, 0, NOSIG, 0, 0, CG__LARK_MSG_ACTION, 0},
    {"none/v2 bad token", &S_NONE, V2_BADTOK, 0, NOSIG, 0, 0,
     CG__LARK_MSG_ACTION, 0},
    {"none/v1", &S_NONE, V1_EVENT, 0, NOSIG, 0, 0, CG__LARK_MSG_EVENT, 0},
    {"none/challenge", &S_NONE, CHALLENGE, 0, NOSIG, 0, 0,
     CG__LARK_MSG_CHALLENGE, 0},
    {"none/encrypted", &S_NONE, LEGACY, 1, NOSIG, CG_ECONFIG, 400, 0,
     "no encrypt key is configured; set LARK_ENCRYPT_KEY"},
    {"empty strings = none", &S_EMPTY, LEGACY, 0, NOSIG, 0, 0,
     CG__LARK_MSG_ACTION, 0},
    /* verification token only */
    {"tok/legacy sha1", &S_TOK, LEGACY, 0, SIG1_TOK, 0, 0, CG__LARK_MSG_ACTION,
     0},
    {"tok/legacy no headers", &S_TOK, LEGACY, 0, NOSIG, CG_EAUTH, 401, 0,
     "missing X-Lark-Signature, X-Lark-Request-Timestamp, "
     "X-Lark-Request-Nonce headers"},
    {"tok/legacy no signature", &S_TOK, LEGACY, 0, SIG_NO_SIG, CG_EAUTH, 401, 0,
     "missing X-Lark-Signature header"},
    {"tok/legacy no nonce", &S_TOK, LEGACY, 0, SIG_NO_NONCE, CG_EAUTH, 401, 0,
     "missing X-Lark-Request-Nonce header"},
    {"tok/legacy wrong sha1", &S_TOK, LEGACY, 0, SIG1_WRONG, CG_EAUTH, 401, 0,
     "check LARK_VERIFICATION_TOKEN"},
    {"tok/legacy upper-case", &S_TOK, LEGACY, 0, SIG1_UPPER, CG_EAUTH, 401, 0,
     "does not match"},
    {"tok/legacy sha256", &S_TOK, LEGACY, 0, SIG256_KEY, CG_EAUTH, 401, 0,
     "length of SHA-256"},
    {"tok/v2 token ok", &S_TOK, V2_TRIGGER, 0, NOSIG, 0, 0, CG__LARK_MSG_ACTION,
     0},
    {"tok/v2 token wrong", &S_TOK, V2_BADTOK, 0, NOSIG, CG_EAUTH, 401, 0,
     "$.header.token does not match LARK_VERIFICATION_TOKEN"},
    {"tok/v2 token missing", &S_TOK, V2_NOTOK, 0, NOSIG, CG_EAUTH, 401, 0,
     "$.header.token is missing"},
    {"tok/v2 event", &S_TOK, V2_EVENT, 0, NOSIG, 0, 0, CG__LARK_MSG_EVENT, 0},
    {"tok/v1 token ok", &S_TOK, V1_EVENT, 0, NOSIG, 0, 0, CG__LARK_MSG_EVENT,
     0},
    {"tok/challenge", &S_TOK, CHALLENGE, 0, NOSIG, 0, 0, CG__LARK_MSG_CHALLENGE,
     0},
    {"tok/challenge wrong", &S_TOK, CHALLENGE_T("nope"), 0, NOSIG, CG_EAUTH,
     401, 0, "$.token does not match"},
    {"tok/encrypted", &S_TOK, V2_TRIGGER, 1, SIG256_KEY, CG_ECONFIG, 400, 0,
     "no encrypt key"},
    /* encrypt key only */
    {"key/legacy plain", &S_KEY, LEGACY, 0, SIG1_TOK, CG_EAUTH, 401, 0,
     "cannot be verified with the configured secrets"},
    {"key/legacy enc sha256", &S_KEY, LEGACY, 1, SIG256_KEY, 0, 0,
     CG__LARK_MSG_ACTION, 0},
    {"key/legacy enc sha1", &S_KEY, LEGACY, 1, SIG1_TOK, CG_EAUTH, 401, 0,
     "SHA-256"},
    {"key/legacy enc no headers", &S_KEY, LEGACY, 1, NOSIG, CG_EAUTH, 401, 0,
     "because LARK_ENCRYPT_KEY is set"},
    {"key/v2 plain", &S_KEY, V2_TRIGGER, 0, SIG256_KEY, CG_EAUTH, 400, 0,
     "plaintext body while an encrypt key is configured"},
    {"key/v2 enc", &S_KEY, V2_TRIGGER, 1, SIG256_KEY, 0, 0, CG__LARK_MSG_ACTION,
     0},
    {"key/v2 enc bad token ignored", &S_KEY, V2_BADTOK, 1, SIG256_KEY, 0, 0,
     CG__LARK_MSG_ACTION, 0},
    {"key/v2 enc sha1", &S_KEY, V2_TRIGGER, 1, SIG1_TOK, CG_EAUTH, 401, 0,
     "check LARK_ENCRYPT_KEY"},
    {"key/v2 enc no headers", &S_KEY, V2_TRIGGER, 1, NOSIG, CG_EAUTH, 401, 0,
     "missing X-Lark-Signature"},
    {"key/v2 enc wrong key", &S_KEY, V2_TRIGGER, 1, SIG256_WRONG, CG_EAUTH, 401,
     0, "does not match"},
    {"key/v2 enc other body", &S_KEY, V2_TRIGGER, 1, SIG256_OTHER, CG_EAUTH,
     401, 0, "does not match"},
    {"key/v2 enc upper-case", &S_KEY, V2_TRIGGER, 1, SIG256_UPPER, CG_EAUTH,
     401, 0, "does not match"},
    {"key/v2 enc short", &S_KEY, V2_TRIGGER, 1, SIG256_SHORT, CG_EAUTH, 401, 0,
     "does not match"},
    {"key/v2 preview enc", &S_KEY, V2_PREVIEW, 1, SIG256_KEY, 0, 0,
     CG__LARK_MSG_ACTION, 0},
    {"key/v2 event enc", &S_KEY, V2_EVENT, 1, SIG256_KEY, 0, 0,
     CG__LARK_MSG_EVENT, 0},
    {"key/v2 event plain", &S_KEY, V2_EVENT, 0, NOSIG, CG_EAUTH, 400, 0,
     "plaintext body"},
    {"key/v1 enc", &S_KEY, V1_EVENT, 1, SIG256_KEY, 0, 0, CG__LARK_MSG_EVENT,
     0},
    {"key/v1 plain", &S_KEY, V1_EVENT, 0, SIG256_KEY, CG_EAUTH, 400, 0,
     "plaintext body"},
    {"key/challenge enc no headers", &S_KEY, CHALLENGE, 1, NOSIG, 0, 0,
     CG__LARK_MSG_CHALLENGE, 0},
    {"key/challenge plain", &S_KEY, CHALLENGE, 0, NOSIG, 0, 0,
     CG__LARK_MSG_CHALLENGE, 0},
    /* both */
    {"both/legacy plain sha1", &S_BOTH, LEGACY, 0, SIG1_TOK, 0, 0,
     CG__LARK_MSG_ACTION, 0},
    {"both/legacy plain sha256", &S_BOTH, LEGACY, 0, SIG256_KEY, CG_EAUTH, 401,
     0, "does not match"},
    {"both/legacy enc sha1", &S_BOTH, LEGACY, 1, SIG1_TOK, 0, 0,
     CG__LARK_MSG_ACTION, 0},
    {"both/legacy enc sha256", &S_BOTH, LEGACY, 1, SIG256_KEY, 0, 0,
     CG__LARK_MSG_ACTION, 0},
    {"both/legacy enc wrong", &S_BOTH, LEGACY, 1, SIG1_WRONG, CG_EAUTH, 401, 0,
     "matches neither SHA-1 with LARK_VERIFICATION_TOKEN nor SHA-256 with "
     "LARK_ENCRYPT_KEY"},
    {"both/legacy enc no headers", &S_BOTH, LEGACY, 1, NOSIG, CG_EAUTH, 401, 0,
     "missing"},
    {"both/v2 enc", &S_BOTH, V2_TRIGGER, 1, SIG256_KEY, 0, 0,
     CG__LARK_MSG_ACTION, 0},
    {"both/v2 enc sha1", &S_BOTH, V2_TRIGGER, 1, SIG1_TOK, CG_EAUTH, 401, 0,
     "SHA-256"},
    {"both/v2 enc bad token", &S_BOTH, V2_BADTOK, 1, SIG256_KEY, CG_EAUTH, 401,
     0, "$.header.token does not match"},
    {"both/v2 plain", &S_BOTH, V2_TRIGGER, 0, SIG256_KEY, CG_EAUTH, 400, 0,
     "plaintext body"},
    {"both/v1 enc", &S_BOTH, V1_EVENT, 1, SIG256_KEY, 0, 0, CG__LARK_MSG_EVENT,
     0},
    {"both/challenge enc", &S_BOTH, CHALLENGE, 1, NOSIG, 0, 0,
     CG__LARK_MSG_CHALLENGE, 0},
    {"both/challenge enc with wrong headers", &S_BOTH, CHALLENGE, 1,
     SIG256_WRONG, 0, 0, CG__LARK_MSG_CHALLENGE, 0},
    {"both/challenge enc wrong token", &S_BOTH, CHALLENGE_T("x"), 1, NOSIG,
     CG_EAUTH, 401, 0, "does not match LARK_VERIFICATION_TOKEN"},
};

static void test_policy_matrix(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof matrix / sizeof matrix[0]; i++) {
    const row *r = &matrix[i];
    cg__lark_msg m;
    cg__lark_error e;
    int rc = run_sig(r->s, r->plain, r->enc, r->sig, &m, &e);
    if (rc != r->rc)
      fail_msg("%s: rc %d (%s), want %d", r->name, rc, e.msg, r->rc);
    if (rc == 0) {
      if (m.type != r->type) fail_msg("%s: type %d", r->name, m.type);
    } else {
      if (e.http_status != r->status)
        fail_msg("%s: status %d (%s)", r->name, e.http_status, e.msg);
      if (r->msg && !strstr(e.msg, r->msg))
        fail_msg("%s: message \"%s\" lacks \"%s\"", r->name, e.msg, r->msg);
    }
    cg__lark_msg_clear(&m);
  }
}

/* What a decode produced, to compare two decodes of the same request. */
static void same_str(const char *what, const char *name, const char *a,
                     const char *b) {
  if ((a == NULL) != (b == NULL) || (a && strcmp(a, b) != 0))
    fail_msg("%s: %s differs: \"%s\" vs \"%s\"", name, what, a ? a : "(null)",
             b ? b : "(null)");
}

static void same_outcome(const char *name, int rc1, const cg__lark_msg *m1,
                         const cg__lark_error *e1, int rc2,
                         const cg__lark_msg *m2, const cg__lark_error *e2) {
  if (rc1 != rc2) fail_msg("%s: rc %d vs %d", name, rc1, rc2);
  if (rc1) {
    assert_int_equal(e1->http_status, e2->http_status);
    same_str("message", name, e1->msg, e2->msg);
    return;
  }
  assert_int_equal(m1->type, m2->type);
  same_str("challenge", name, m1->challenge, m2->challenge);
  same_str("event type", name, m1->event_type, m2->event_type);
  same_str("event id", name, m1->event_id, m2->event_id);
  assert_int_equal(m1->action == NULL, m2->action == NULL);
  if (!m1->action) return;
  const cg_action *a = &m1->action->pub, *b = &m2->action->pub;
  assert_int_equal(a->kind, b->kind);
  assert_int_equal(a->format, b->format);
  assert_int_equal(a->checked, b->checked);
  same_str("raw json", name, cg_action_raw_json(a), cg_action_raw_json(b));
  same_str("value_json", name, a->value_json, b->value_json);
  same_str("form_value_json", name, a->form_value_json, b->form_value_json);
  same_str("options_json", name, a->options_json, b->options_json);
  same_str("open_id", name, a->open_id, b->open_id);
  same_str("message_id", name, a->message_id, b->message_id);
  same_str("tag", name, a->tag, b->tag);
  same_str("update_token", name, a->update_token, b->update_token);
  same_str("event_id", name, a->event_id, b->event_id);
}

/* The whole policy table again with prepared keys — one keys object per set
 * of secrets, reused across every row twice over (a refused request must
 * leave nothing behind for the next) — against the per-call path. */
static void test_policy_matrix_prepared(void **state) {
  (void)state;
  const cg__lark_secrets *sets[] = {&S_NONE, &S_EMPTY, &S_TOK, &S_KEY, &S_BOTH};
  cg__lark_keys *keys[5];
  cg__lark_secrets prep[5];
  for (size_t i = 0; i < 5; i++) {
    assert_int_equal(cg__lark_keys_new(sets[i]->verification_token,
                                       sets[i]->encrypt_key, &keys[i]),
                     0);
    prep[i] = *sets[i];
    prep[i].keys = keys[i];
  }
  for (int pass = 0; pass < 2; pass++) {
    for (size_t i = 0; i < sizeof matrix / sizeof matrix[0]; i++) {
      const row *r = &matrix[i];
      size_t si = 0;
      while (sets[si] != r->s) si++;
      cg__lark_msg m1, m2;
      cg__lark_error e1, e2;
      int rc1 = run_sig(r->s, r->plain, r->enc, r->sig, &m1, &e1);
      int rc2 = run_sig(&prep[si], r->plain, r->enc, r->sig, &m2, &e2);
      same_outcome(r->name, rc1, &m1, &e1, rc2, &m2, &e2);
      if (rc2 != r->rc)
        fail_msg("%s: rc %d (%s), want %d", r->name, rc2, e2.msg, r->rc);
      cg__lark_msg_clear(&m1);
      cg__lark_msg_clear(&m2);
    }
  }
  for (size_t i = 0; i < 5; i++) cg__lark_keys_free(keys[i]);
}

/* ---- vectors from lark.md §5 ------------------------------------------- */

static void test_doc_vectors(void **state) {
  (void)state;
  cg__lark_msg m;
  cg__lark_error e;
  cg_buf b;
  cg_buf_init(&b, 4096);

  /* §5.2 SHA-1 legacy vector, decoded with token "v" */
  static const cg__lark_secrets sv = {"v", NULL, 0, NULL};
  call c = {&sv,
            "1700000000",
            "abc123",
            "8dc4c0f456fc5723efb534978da6c263888ce3a7",
            "{\"open_id\":\"ou_x\",\"token\":\"c-1\",\"action\":{\"tag\":"
            "\"button\",\"value\":{\"k\":\"v\"}}}",
            0,
            0};
  assert_int_equal(run(&c, &m, &e), 0);
  assert_int_equal(m.type, CG__LARK_MSG_ACTION);
  assert_string_equal(m.action->pub.open_id, "ou_x");
  assert_string_equal(m.action->pub.update_token, "c-1");
  assert_string_equal(cg_action_value(&m.action->pub, "k"), "v");
  cg__lark_msg_clear(&m);
  c.sig = "8dc4c0f456fc5723efb534978da6c263888ce3a8";
  assert_int_equal(run(&c, &m, &e), CG_EAUTH);

  /* §5.1.2 Node SDK encrypted challenge */
  static const cg__lark_secrets sn = {"iRdCP2WwXNBXRM3mGLqhrgch3cn0gbT6",
                                      "mazhe.nerd", 0, NULL};
  call cn = {&sn,
             NULL,
             NULL,
             NULL,
             "{\"encrypt\":\"tT1xP+ovuc0T3b/rnZX3ax76exqAn0ANQ6/U45GcciC0mgNBc"
             "8JtvqOJGNAPMKpgRs2dVU1NYk9VDeqS8T4SYtU0hzNU54aS84WnxvZ3VFfDcy/Ry"
             "ABlNqlUiGyLDzFI0yxdCMT4KR/YEQXlt6nZi50KwRlZ+A75r645KesZuLMljezYy"
             "Y8VeeXEVjPw35+e\"}",
             0,
             0};
  assert_int_equal(run(&cn, &m, &e), 0);
  assert_int_equal(m.type, CG__LARK_MSG_CHALLENGE);
  assert_int_equal(cg__lark_encode_challenge(m.challenge, &b), 0);
  assert_string_equal(
      b.data, "{\"challenge\":\"5634b122-c042-4634-bc7f-b07a3c3e77ad\"}");
  cg__lark_msg_clear(&m);
  static const cg__lark_secrets sn2 = {"wrong", "mazhe.nerd", 0, NULL};
  cn.s = &sn2;
  assert_int_equal(run(&cn, &m, &e), CG_EAUTH);
  assert_int_equal(e.http_status, 401);

  /* §5.1.3 Java SDK vector: a schema 2.0 event ("url_verification1" is not a
   * challenge); signed here with SHA-256 + key over the raw body. */
  static const cg__lark_secrets sj = {"v", "1212121212", 0, NULL};
  const char *jb =
      "{\"encrypt\":\"4T4ivT/PR2APX9OYkhRKtu54s1rtIpj9xJU69Hs1yWQ/1RutbufsBs9"
      "xjx5YC3u/0hMRF49sN0kevQiEL8iB3bVEdpfyJXzXGDfKUjvKQTmG64GbMdTW6qRpadVPe"
      "m3f32jHuT6fc+4TRg4BigwoUId+l/D+vcIwu3mDgAEbaqzWfmvccmpiRMfQbh9JhdK/akm"
      "rRjo/CXPLM+hZciFXJMSpKueV3SjZJoSls5y0ZTHC8zak/Mp/DSl1wa4mYe5laP367Lnl4"
      "ylGiXBKx3Ku29oWv79rYcO/5QT63H4rkl8bwYmAzScpb2KNnV11L3xiDzJp3hFdfXczUvm"
      "93FXu4Lw8eDAsRzIWCccKrqHh0UvtDJD95tNn6LvYew4+Xbk1RD4k7UzWJS9AMobOK778N"
      "LNxfQ+Kn7MKzBHilXnSIVY5V+dcsOOdfqJviW4yWmT73JHYKq1qJip7Cw7lbkmRMUmettU"
      "wdVFWxeXH6iTex3YXCgqoriCx/MzeQhdNEycipooB/vHItRt1CF44uFWj9tf8n3TdbdH4d"
      "NMD0hw8ejHJSbEHb9HAGCugUniN8BzL9wxE959JU4cu3BKjDuIk5oS9hLR1mSc3vKBuSa3"
      "VKOE=\"}";
  char sig[65];
  cg_lark_sign_event("1", "2", "1212121212", jb, strlen(jb), sig);
  call cj = {&sj, "1", "2", sig, jb, 0, 0};
  assert_int_equal(run(&cj, &m, &e), 0);
  assert_int_equal(m.type, CG__LARK_MSG_EVENT);
  assert_string_equal(m.event_type, "contact.user.created_v3");
  assert_string_equal(m.event_id, "f7984f25108f8137722bb63cee927e66");
  cg__lark_msg_clear(&m);

  /* §5.1.4 self-generated encrypted challenge, token "v" */
  static const cg__lark_secrets s4 = {"v", "test key", 0, NULL};
  call c4 = {&s4,
             NULL,
             NULL,
             NULL,
             "{\"encrypt\":\"AAECAwQFBgcICQoLDA0OD6alpwIsMFbSsWTHppjb1mE7o8oW7T"
             "8vJ7C6kV8w75gu/s+0c6FUAdSg8/t/lI4Ez2ocgdCAS0cvWqC+SZL1LmQ=\"}",
             0,
             0};
  assert_int_equal(run(&c4, &m, &e), 0);
  assert_string_equal(m.challenge, "abc");
  cg__lark_msg_clear(&m);

  /* §5.2 SHA-256 vector: signature fine, but the plaintext ("hello world")
   * is not JSON */
  static const cg__lark_secrets s5 = {NULL, "test key", 0, NULL};
  call c5 = {&s5,
             "1700000000",
             "abc123",
             "69c61fa99760d59824d588297c0036194769fb54331682c9cbcd93e85b9a8aad",
             "{\"encrypt\":\"P37w+VZImNgPEO1RBhJ6RtKl7n6zymIbEG1pReEzghk=\"}",
             0,
             0};
  assert_int_equal(run(&c5, &m, &e), CG_EMALFORMED);
  assert_non_null(strstr(e.msg, "decrypted body is not valid JSON"));
  assert_non_null(strstr(e.msg, "Encrypt Key is probably wrong"));

  cg_buf_free(&b);
}

/* The Go SDK sample (lark.md §5.2): RFC 850 timestamp, 1023-byte body. */
static const char go_body1[] =
    "{\"open_id\":\"ou_cdaf8ff9dcf6723db8f09f10b4b53c0f\",\"open_message_id\":"
    "\"om_697921c87902fa9999cf9b8520ea5eb2\",\"open_chat_id\":"
    "\"oc_79dd04bf25e01d267faadb93b11caac7\",\"tenant_key\":"
    "\"104740a13d02575e\",\"token\":\"c-"
    "bb72b8787895b65b7fd5ec2ce18aff2bf8cad2af"
    "\",\"action\":{\"value\":{\"cardData\":\"{\\\"actionApproveId\\\":5483,"
    "\\\"approvalType\\\":0,\\\"approveDetailUrl\\\":\\\"https://"
    "wxpublic-test2.t3go.cn/t3-h5-company/#/approveBridge?redirectUrl=https%3A"
    "%2F%2Fwxpublic-test2.t3go.cn%2Fcompany-approve-h5%2F%23%2FapproveDetailNew"
    "%3FapproveId%3D5483\\\",\\\"approverId\\\":\\\"af075306825d49358ba4662e7c6"
    "d9488\\\",\\\"approverIds\\\":[\\\"af075306825d49358ba4662e7c6d9488\\\"],"
    "\\\"employeeId\\\":\\\"3a00f21601e748da8a6fa97e393557c3\\\",\\\"employee"
    "Name\\\":\\\"\xe7\x8e\x8b\xe6\xa0\x91\xe8\xbd\xa9\\\",\\\"orgId\\\":"
    "\\\"75e"
    "1419b996d4e6da70056e8e1a42ee8\\\",\\\"reason\\\":\\\"Jhh\\\",\\\"route"
    "Detail\\\":\\\"A(\xe8\x8a\xb1\xe5\x9b\xad\xe5\x9f\x8e\xe5\xb7\xa8\xe7\x9f"
    "\xb3\xe9\xa9\xac\xe7\xbe\xa4\xe5\xba\x97)--B\xe5\xba\xa7\\\",\\\"sceneShow"
    "Name\\\":\\\"\xe5\xae\xa1\xe6\x89\xb9\\\",\\\"thirdAppType\\\":1,\\\"third"
    "EmployeeId\\\":\\\"ou_6a73fb461db56e87fdb7c922f353dddb\\\","
    "\\\"useDate\\\":"
    "\\\"2022/11/15 00:00-2022/11/16 "
    "00:00\\\"}\",\"handleType\":\"1\"},\"tag\":"
    "\"button\"}}";

static void test_go_sample(void **state) {
  (void)state;
  cg__lark_msg m;
  cg__lark_error e;
  /* 2022-11-14 15:53:37 +08:00 = 1668412417 UTC; window 60 s */
  static const cg__lark_secrets s = {"UtVPQSv5lbtzjvaulJjvPg8RAOmXTbGF", NULL,
                                     60, NULL};
  call c = {&s,
            "Monday, 14-Nov-22 15:53:37 CST",
            "39ef4f6f-5400-41e4-b18d-0d13ab6d3646",
            "bad20e1e6169e7f07c14a775bf90911cc73d65c9",
            go_body1,
            0,
            INT64_C(1668412417000) + 59000};
  assert_int_equal(run(&c, &m, &e), 0);
  cg_action *a = &m.action->pub;
  assert_int_equal(a->format, CG_FORMAT_LARK_LEGACY);
  assert_string_equal(a->chat_id, "oc_79dd04bf25e01d267faadb93b11caac7");
  assert_string_equal(a->message_id, "om_697921c87902fa9999cf9b8520ea5eb2");
  assert_string_equal(cg_action_value(a, "handleType"), "1");
  assert_non_null(strstr(cg_action_value(a, "cardData"), "\"useDate\""));
  assert_string_equal(cg_action_raw_json(a), go_body1);
  cg__lark_msg_clear(&m);
  /* one minute later: stale (the CST zone is +08:00, not US Central) */
  c.now = INT64_C(1668412417000) + 61000;
  assert_int_equal(run(&c, &m, &e), CG_ESTALE);
  assert_int_equal(e.http_status, 401);
}

/* ---- decoding fields ---------------------------------------------------- */

static void test_decode_legacy(void **state) {
  (void)state;
  cg__lark_msg m;
  cg__lark_error e;
  call c = {.s = &S_NONE, .body = LEGACY};
  assert_int_equal(run(&c, &m, &e), 0);
  assert_int_equal(m.type, CG__LARK_MSG_ACTION);
  cg_action *a = &m.action->pub;
  assert_int_equal(a->platform, CG_PLATFORM_LARK);
  assert_int_equal(a->kind, CG_KIND_CARD_ACTION);
  assert_int_equal(a->format, CG_FORMAT_LARK_LEGACY);
  assert_int_equal(a->transport, CG_TRANSPORT_HTTP);
  assert_null(a->event_id);
  assert_null(a->event_type);
  assert_null(a->app_id);
  assert_string_equal(a->open_id, "ou_1");
  assert_string_equal(a->user_id, "u_1");
  assert_null(a->union_id);
  assert_string_equal(a->message_id, "om_1");
  assert_string_equal(a->chat_id, "oc_1");
  assert_string_equal(a->tenant_key, "tk_1");
  assert_string_equal(a->update_token, "c-upd");
  assert_string_equal(a->tag, "button");
  assert_string_equal(a->name, "btn");
  assert_string_equal(a->option, "opt");
  assert_null(a->input_value);
  assert_string_equal(a->timezone, "Asia/Shanghai");
  assert_int_equal(a->checked, -1);
  assert_string_equal(a->value_json,
                      "{\"k\":\"v\",\"n\":42,\"r\":1.5,\"b\":true,\"f\":false,"
                      "\"z\":null,\"o\":{\"x\":1},\"a\":[1]}");
  assert_null(a->form_value_json);
  assert_null(a->options_json);
  assert_null(a->host);
  assert_null(a->url);
  assert_int_equal(a->received_at_ms, NOW);
  assert_string_equal(cg_action_raw_json(a), LEGACY);

  /* cg_action_value */
  assert_string_equal(cg_action_value(a, "k"), "v");
  const char *n = cg_action_value(a, "n");
  assert_string_equal(n, "42");
  assert_ptr_equal(cg_action_value(a, "n"), n); /* cached */
  assert_string_equal(cg_action_value(a, "r"), "1.5");
  assert_string_equal(cg_action_value(a, "b"), "true");
  assert_string_equal(cg_action_value(a, "f"), "false");
  assert_null(cg_action_value(a, "z"));
  assert_null(cg_action_value(a, "o"));
  assert_null(cg_action_value(a, "a"));
  assert_null(cg_action_value(a, "missing"));
  assert_null(cg_action_value(a, NULL));
  assert_null(cg_action_value(NULL, "k"));
  cg__lark_msg_clear(&m);
  cg__lark_msg_clear(&m); /* idempotent */
}

static void test_decode_legacy_variants(void **state) {
  (void)state;
  cg__lark_msg m;
  cg__lark_error e;
  /* value as a string; top-level timezone; checked false; nulls as absent */
  call c = {.s = &S_NONE,
            .body =
                "{\"timezone\":\"Europe/Paris\",\"user_id\":null,\"action\""
                ":{\"value\":\"plain\",\"tag\":\"checker\",\"checked\":"
                "false,\"option\":null}}"};
  assert_int_equal(run(&c, &m, &e), 0);
  cg_action *a = &m.action->pub;
  assert_string_equal(a->value_json, "\"plain\"");
  assert_null(cg_action_value(a, "plain"));
  assert_string_equal(a->timezone, "Europe/Paris");
  assert_int_equal(a->checked, 0);
  assert_null(a->user_id);
  assert_null(a->option);
  cg__lark_msg_clear(&m);

  /* action.timezone wins over the top-level copy; value absent → "{}";
   * form submit with form_value and options */
  c.body =
      "{\"timezone\":\"Europe/Paris\",\"action\":{\"timezone\":\"UTC\","
      "\"tag\":\"form\",\"form_value\":{\"n\":\"x\",\"m\":[\"1\",\"2\"]},"
      "\"options\":[],\"input_value\":\"\xe4\xbd\xa0\",\"checked\":true}}";
  assert_int_equal(run(&c, &m, &e), 0);
  a = &m.action->pub;
  assert_string_equal(a->timezone, "UTC");
  assert_string_equal(a->value_json, "{}");
  assert_null(cg_action_value(a, "x"));
  assert_string_equal(a->form_value_json, "{\"n\":\"x\",\"m\":[\"1\",\"2\"]}");
  assert_string_equal(a->options_json, "[]");
  assert_string_equal(a->input_value, "\xe4\xbd\xa0");
  assert_int_equal(a->checked, 1);
  cg__lark_msg_clear(&m);

  /* empty action object is still a legacy callback */
  c.body = "{\"action\":{}}";
  assert_int_equal(run(&c, &m, &e), 0);
  assert_string_equal(m.action->pub.value_json, "{}");
  cg__lark_msg_clear(&m);
}

static void test_decode_v2(void **state) {
  (void)state;
  cg__lark_msg m;
  cg__lark_error e;
  call c = {.s = &S_NONE, .body = V2_TRIGGER};
  assert_int_equal(run(&c, &m, &e), 0);
  cg_action *a = &m.action->pub;
  assert_int_equal(a->kind, CG_KIND_CARD_ACTION);
  assert_int_equal(a->format, CG_FORMAT_LARK_V2);
  assert_string_equal(a->event_id, "ev_1");
  assert_string_equal(a->event_type, "card.action.trigger");
  assert_string_equal(a->app_id, "cli_1");
  assert_string_equal(a->tenant_key, "tk_o"); /* operator's tenant */
  assert_string_equal(a->open_id, "ou_2");
  assert_string_equal(a->user_id, "u_2");
  assert_string_equal(a->union_id, "on_2");
  assert_string_equal(a->update_token, "c-upd2");
  assert_string_equal(a->host, "im_message");
  assert_string_equal(a->message_id, "om_2");
  assert_string_equal(a->chat_id, "oc_2");
  assert_string_equal(a->url, "https://e.x");
  assert_string_equal(a->preview_token, "pt");
  assert_string_equal(a->tag, "select_static");
  assert_string_equal(a->option, "o1");
  assert_string_equal(a->timezone, "UTC");
  assert_string_equal(a->input_value, "typed");
  assert_string_equal(a->name, "f");
  assert_int_equal(a->checked, 1);
  assert_string_equal(a->value_json, "{\"k\":\"v2\"}");
  assert_string_equal(a->form_value_json, "{\"a\":\"1\",\"b\":[\"x\",\"y\"]}");
  assert_string_equal(a->options_json, "[\"p\",\"q\"]");
  assert_string_equal(cg_action_value(a, "k"), "v2");
  cg__lark_msg_clear(&m);

  /* header.tenant_key when there is no operator tenant */
  c.body =
      "{\"schema\":\"2.0\",\"header\":{\"event_type\":"
      "\"card.action.trigger\",\"tenant_key\":\"tk_h\"},\"event\":{}}";
  assert_int_equal(run(&c, &m, &e), 0);
  assert_string_equal(m.action->pub.tenant_key, "tk_h");
  assert_string_equal(m.action->pub.value_json, "{}");
  assert_null(m.action->pub.event_id);
  cg__lark_msg_clear(&m);

  /* url.preview.get */
  c.body = V2_PREVIEW;
  assert_int_equal(run(&c, &m, &e), 0);
  a = &m.action->pub;
  assert_int_equal(a->kind, CG_KIND_URL_PREVIEW);
  assert_int_equal(a->format, CG_FORMAT_LARK_V2);
  assert_string_equal(a->event_type, "url.preview.get");
  assert_string_equal(a->event_id, "ev_p");
  assert_string_equal(a->open_id, "ou_3");
  assert_string_equal(a->tenant_key, "tk_o3");
  assert_string_equal(a->url, "https://e.x/p");
  assert_string_equal(a->preview_token, "pt3");
  assert_string_equal(a->message_id, "om_3");
  assert_string_equal(a->chat_id, "oc_3");
  assert_string_equal(a->host, "im_message");
  assert_null(a->tag);
  assert_string_equal(a->value_json, "{}");
  cg__lark_msg_clear(&m);

  /* encrypted: raw_json is the decrypted text */
  char *body = wrap(KEY, V2_TRIGGER);
  char sig[65];
  cg_lark_sign_event(TS, NONCE, KEY, body, strlen(body), sig);
  call ce = {&S_BOTH, TS, NONCE, sig, body, 0, 0};
  assert_int_equal(run(&ce, &m, &e), 0);
  assert_string_equal(cg_action_raw_json(&m.action->pub), V2_TRIGGER);
  cg__lark_msg_clear(&m);
  free(body);
}

static void test_decode_events(void **state) {
  (void)state;
  cg__lark_msg m;
  cg__lark_error e;
  call c = {.s = &S_NONE, .body = V2_EVENT};
  assert_int_equal(run(&c, &m, &e), 0);
  assert_int_equal(m.type, CG__LARK_MSG_EVENT);
  assert_string_equal(m.event_type, "im.message.receive_v1");
  assert_string_equal(m.event_id, "ev_e");
  assert_null(m.action);
  cg__lark_msg_clear(&m);

  c.body = V1_EVENT;
  assert_int_equal(run(&c, &m, &e), 0);
  assert_int_equal(m.type, CG__LARK_MSG_EVENT);
  assert_string_equal(m.event_type, "message");
  assert_string_equal(m.event_id, "uu_1");
  cg__lark_msg_clear(&m);

  /* profile.view.get is a callback we do not serve: an event */
  c.body =
      "{\"schema\":\"2.0\",\"header\":{\"event_type\":"
      "\"profile.view.get\"},\"event\":{}}";
  assert_int_equal(run(&c, &m, &e), 0);
  assert_int_equal(m.type, CG__LARK_MSG_EVENT);
  assert_string_equal(m.event_type, "profile.view.get");
  assert_null(m.event_id);
  cg__lark_msg_clear(&m);

  /* v1 without event.type */
  c.body = "{\"uuid\":\"u\",\"event\":{}}";
  assert_int_equal(run(&c, &m, &e), 0);
  assert_null(m.event_type);
  assert_string_equal(m.event_id, "u");
  cg__lark_msg_clear(&m);

  /* schema wins over action; uuid without event is not 1.0 */
  c.body = "{\"uuid\":\"u\",\"action\":{\"tag\":\"button\"}}";
  assert_int_equal(run(&c, &m, &e), 0);
  assert_int_equal(m.type, CG__LARK_MSG_ACTION);
  assert_int_equal(m.action->pub.format, CG_FORMAT_LARK_LEGACY);
  cg__lark_msg_clear(&m);
}

static void test_challenge(void **state) {
  (void)state;
  cg__lark_msg m;
  cg__lark_error e;
  cg_buf b;
  cg_buf_init(&b, 4096);
  call c = {.s = &S_NONE,
            .body =
                "{\"challenge\":\"a\\\"b\\u00e9\",\"type\":"
                "\"url_verification\"}"};
  assert_int_equal(run(&c, &m, &e), 0);
  assert_int_equal(cg__lark_encode_challenge(m.challenge, &b), 0);
  assert_string_equal(b.data, "{\"challenge\":\"a\\\"b\xc3\xa9\"}");
  cg__lark_msg_clear(&m);

  /* schema 2.0 challenge: header.token is the verification token */
  c.s = &S_TOK;
  c.body = "{\"schema\":\"2.0\",\"header\":{\"token\":\"" TOK
           "\"},"
           "\"challenge\":\"z\",\"type\":\"url_verification\"}";
  assert_int_equal(run(&c, &m, &e), 0);
  assert_string_equal(m.challenge, "z");
  cg__lark_msg_clear(&m);
  c.body = "{\"schema\":\"2.0\",\"header\":{\"token\":\"no\"},\"token\":\"" TOK
           "\",\"challenge\":\"z\",\"type\":\"url_verification\"}";
  assert_int_equal(run(&c, &m, &e), CG_EAUTH);
  assert_non_null(strstr(e.msg, "$.header.token"));
  c.body = "{\"challenge\":\"z\",\"type\":\"url_verification\"}";
  assert_int_equal(run(&c, &m, &e), CG_EAUTH);
  assert_non_null(strstr(e.msg, "$.token is missing"));
  c.body = "{\"challenge\":\"z\",\"token\":7,\"type\":\"url_verification\"}";
  assert_int_equal(run(&c, &m, &e), CG_EAUTH);
  /* prefix of the token */
  c.body =
      "{\"challenge\":\"z\",\"token\":\"vt-SECRET\",\"type\":"
      "\"url_verification\"}";
  assert_int_equal(run(&c, &m, &e), CG_EAUTH);

  /* challenge shape errors */
  c.s = &S_NONE;
  c.body = "{\"type\":\"url_verification\"}";
  assert_int_equal(run(&c, &m, &e), CG_EMALFORMED);
  assert_non_null(strstr(e.msg, "$.challenge must be a string"));
  c.body = "{\"challenge\":1,\"type\":\"url_verification\"}";
  assert_int_equal(run(&c, &m, &e), CG_EMALFORMED);
  /* exactly at the limit, then one over */
  char big[CG_LIMIT_CHALLENGE + 64];
  int n = snprintf(big, sizeof big,
                   "{\"type\":\"url_verification\",\"challenge\":\"");
  memset(big + n, 'c', CG_LIMIT_CHALLENGE);
  memcpy(big + n + CG_LIMIT_CHALLENGE, "\"}", 3);
  c.body = big;
  assert_int_equal(run(&c, &m, &e), 0);
  assert_int_equal(strlen(m.challenge), CG_LIMIT_CHALLENGE);
  cg__lark_msg_clear(&m);
  memset(big + n, 'c', CG_LIMIT_CHALLENGE + 1);
  memcpy(big + n + CG_LIMIT_CHALLENGE + 1, "\"}", 3);
  assert_int_equal(run(&c, &m, &e), CG_ETOOBIG);
  assert_int_equal(e.http_status, 413);
  /* replay window does not apply to a challenge */
  static const cg__lark_secrets sw = {NULL, NULL, 300, NULL};
  c.s = &sw;
  c.body = CHALLENGE;
  assert_int_equal(run(&c, &m, &e), 0);
  cg__lark_msg_clear(&m);
  cg_buf_free(&b);
}

/* ---- hostile input ------------------------------------------------------- */

typedef struct bad_body {
  const char *name, *body;
  size_t len;
  int rc, status;
  const char *msg;
} bad_body;

#define ID16 "0123456789abcdef"
#define LONG_ID ID16 ID16 ID16 ID16 ID16 ID16 ID16 ID16 ID16 ID16 ID16 ID16 ID16 ID16 ID16 ID16 "x"
static const bad_body bad_bodies[] = {
    {"empty", "", 0, CG_EMALFORMED, 400, "empty body"},
    {"empty event id",
     "{\"schema\":\"2.0\",\"header\":{\"event_id\":\"\",\"event_type\":"
     "\"card.action.trigger\"},\"event\":{\"action\":{}}}",
     0, CG_EMALFORMED, 400, "$.header.event_id must be 1 to 256 bytes long"},
    {"empty event id, other event",
     "{\"schema\":\"2.0\",\"header\":{\"event_id\":\"\",\"event_type\":"
     "\"im.message.receive_v1\"},\"event\":{}}",
     0, CG_EMALFORMED, 400, "$.header.event_id must be 1 to 256 bytes long"},
    {"long event id",
     "{\"schema\":\"2.0\",\"header\":{\"event_id\":\"" LONG_ID "\",\"event_type\":"
     "\"card.action.trigger\"},\"event\":{\"action\":{}}}",
     0, CG_EMALFORMED, 400, "got 257"},
    {"truncated", "{\"open_id\":", 0, CG_EMALFORMED, 400,
     "body is not valid JSON: "},
    {"truncated 2", "{\"action\":{\"tag\":\"butt", 0, CG_EMALFORMED, 400,
     "at line 1 column"},
    {"array", "[]", 0, CG_EMALFORMED, 400,
     "body must be a JSON object, not an array"},
    {"string", "\"x\"", 0, CG_EMALFORMED, 400, "not valid JSON"},
    {"number", "42", 0, CG_EMALFORMED, 400, "not valid JSON"},
    {"null", "null", 0, CG_EMALFORMED, 400, "not valid JSON"},
    {"trailing garbage", "{\"action\":{}} x", 0, CG_EMALFORMED, 400,
     "not valid JSON"},
    {"two objects", "{\"action\":{}}{}", 0, CG_EMALFORMED, 400,
     "not valid JSON"},
    {"NUL after", "{\"action\":{}}\0", 14, CG_EMALFORMED, 400,
     "not valid JSON"},
    {"NUL inside string", "{\"action\":{\"tag\":\"a\0b\"}}", 24, CG_EMALFORMED,
     400, "not valid JSON"},
    {"escaped NUL", "{\"action\":{\"tag\":\"a\\u0000b\"}}", 0, CG_EMALFORMED,
     400, "not valid JSON"},
    {"invalid UTF-8", "{\"action\":{\"tag\":\"\xff\xfe\"}}", 0, CG_EMALFORMED,
     400, "not valid JSON"},
    {"duplicate keys", "{\"action\":{},\"action\":{}}", 0, CG_EMALFORMED, 400,
     "duplicate"},
    /* jansson quotes the input near an error: a broken body holding the
     * verification token must not echo it (run() checks every message) */
    {"token near a control char",
     "{\"challenge\":\"c\",\"token\":\"" TOK "\x01\"}", 0, CG_EMALFORMED, 400,
     "control character"},
    {"duplicate token", "{\"token\":\"" TOK "\",\"token\":\"" TOK "\"}", 0,
     CG_EMALFORMED, 400, "duplicate object key at line 1"},
    {"truncated token", "{\"type\":\"url_verification\",\"token\":\"" TOK, 0,
     CG_EMALFORMED, 400, "not valid JSON"},
    {"duplicate nested", "{\"action\":{\"tag\":\"a\",\"tag\":\"b\"}}", 0,
     CG_EMALFORMED, 400, "duplicate"},
    {"unrecognized", "{\"foo\":1}", 0, CG_EMALFORMED, 400,
     "unrecognized callback body: expected a url_verification challenge, a "
     "schema 2.0 callback or a legacy card callback (with an \"action\" "
     "object)"},
    {"empty object", "{}", 0, CG_EMALFORMED, 400, "unrecognized"},
    {"action null", "{\"action\":null}", 0, CG_EMALFORMED, 400, "unrecognized"},
    /* wrong types, named by JSON path */
    {"action string", "{\"action\":\"x\"}", 0, CG_EMALFORMED, 400,
     "$.action must be an object, not a string"},
    {"open_id number", "{\"open_id\":1,\"action\":{}}", 0, CG_EMALFORMED, 400,
     "$.open_id must be a string, not a number"},
    {"token object", "{\"token\":{},\"action\":{}}", 0, CG_EMALFORMED, 400,
     "$.token must be a string"},
    {"tag number", "{\"action\":{\"tag\":7}}", 0, CG_EMALFORMED, 400,
     "$.action.tag must be a string"},
    {"value array", "{\"action\":{\"value\":[1]}}", 0, CG_EMALFORMED, 400,
     "$.action.value must be an object or a string, not an array"},
    {"value number", "{\"action\":{\"value\":1}}", 0, CG_EMALFORMED, 400,
     "$.action.value must be an object or a string"},
    {"checked string", "{\"action\":{\"checked\":\"true\"}}", 0, CG_EMALFORMED,
     400, "$.action.checked must be a boolean"},
    {"form_value string", "{\"action\":{\"form_value\":\"a=b\"}}", 0,
     CG_EMALFORMED, 400, "$.action.form_value must be an object"},
    {"options object", "{\"action\":{\"options\":{}}}", 0, CG_EMALFORMED, 400,
     "$.action.options must be an array of strings"},
    {"options element", "{\"action\":{\"options\":[\"a\",2]}}", 0,
     CG_EMALFORMED, 400, "$.action.options[1] must be a string"},
    {"schema number", "{\"schema\":2,\"header\":{}}", 0, CG_EMALFORMED, 400,
     "$.schema must be a string"},
    {"header missing", "{\"schema\":\"2.0\"}", 0, CG_EMALFORMED, 400,
     "$.header must be an object"},
    {"header array", "{\"schema\":\"2.0\",\"header\":[]}", 0, CG_EMALFORMED,
     400, "$.header must be an object"},
    {"event_type missing", "{\"schema\":\"2.0\",\"header\":{}}", 0,
     CG_EMALFORMED, 400, "$.header.event_type must be a string"},
    {"event_type number", "{\"schema\":\"2.0\",\"header\":{\"event_type\":1}}",
     0, CG_EMALFORMED, 400, "$.header.event_type must be a string"},
    {"event missing",
     "{\"schema\":\"2.0\",\"header\":{\"event_type\":\"card.action.trigger\"}}",
     0, CG_EMALFORMED, 400, "$.event must be an object"},
    {"event_id number",
     "{\"schema\":\"2.0\",\"header\":{\"event_type\":\"card.action.trigger\","
     "\"event_id\":5},\"event\":{}}",
     0, CG_EMALFORMED, 400, "$.header.event_id must be a string"},
    {"operator string",
     "{\"schema\":\"2.0\",\"header\":{\"event_type\":\"card.action.trigger\"},"
     "\"event\":{\"operator\":\"me\"}}",
     0, CG_EMALFORMED, 400, "$.event.operator must be an object"},
    {"open_id in operator",
     "{\"schema\":\"2.0\",\"header\":{\"event_type\":\"card.action.trigger\"},"
     "\"event\":{\"operator\":{\"open_id\":[]}}}",
     0, CG_EMALFORMED, 400, "$.event.operator.open_id must be a string"},
    {"context url",
     "{\"schema\":\"2.0\",\"header\":{\"event_type\":\"url.preview.get\"},"
     "\"event\":{\"context\":{\"url\":1}}}",
     0, CG_EMALFORMED, 400, "$.event.context.url must be a string"},
    {"v2 action value",
     "{\"schema\":\"2.0\",\"header\":{\"event_type\":\"card.action.trigger\"},"
     "\"event\":{\"action\":{\"value\":true}}}",
     0, CG_EMALFORMED, 400,
     "$.event.action.value must be an object or a string"},
    {"v2 event_id on event",
     "{\"schema\":\"2.0\",\"header\":{\"event_type\":\"x\",\"event_id\":[]}}",
     0, CG_EMALFORMED, 400, "$.header.event_id must be a string"},
    {"v1 event.type", "{\"uuid\":\"u\",\"event\":{\"type\":3}}", 0,
     CG_EMALFORMED, 400, "$.event.type must be a string"},
    {"v1 event array", "{\"uuid\":\"u\",\"event\":[]}", 0, CG_EMALFORMED, 400,
     "$.event must be an object"},
    {"v1 uuid number", "{\"uuid\":1,\"event\":{}}", 0, CG_EMALFORMED, 400,
     "$.uuid must be a string"},
    {"encrypt number", "{\"encrypt\":1}", 0, CG_EMALFORMED, 400,
     "$.encrypt must be a string"},
};

static void test_bad_bodies(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof bad_bodies / sizeof bad_bodies[0]; i++) {
    const bad_body *b = &bad_bodies[i];
    cg__lark_msg m;
    cg__lark_error e;
    /* an empty body needs a non-NULL pointer with length 0 */
    call c = {.s = &S_NONE, .body = b->body, .body_len = b->len};
    int rc;
    if (b->body[0] == '\0' && b->len == 0) {
      cg_http_request req;
      memset(&req, 0, sizeof req);
      req.body = "";
      rc = cg__lark_decode(&S_NONE, CG_LARK_ENDPOINT_EVENT, &req, NOW, &m, &e);
      assert_int_equal(rc, CG_EMALFORMED);
      req.body = NULL;
      rc = cg__lark_decode(&S_NONE, CG_LARK_ENDPOINT_EVENT, &req, NOW, &m, &e);
    } else {
      rc = run(&c, &m, &e);
    }
    if (rc != b->rc) fail_msg("%s: rc %d (%s)", b->name, rc, e.msg);
    if (e.http_status != b->status)
      fail_msg("%s: status %d", b->name, e.http_status);
    if (!strstr(e.msg, b->msg))
      fail_msg("%s: message \"%s\" lacks \"%s\"", b->name, e.msg, b->msg);
  }
}

static char *nest(const char *open, const char *close, int depth,
                  const char *prefix, const char *suffix) {
  size_t ol = strlen(open), cl = strlen(close), pl = strlen(prefix),
         sl = strlen(suffix);
  char *p = malloc(pl + sl + (size_t)depth * (ol + cl) + 1);
  assert_non_null(p);
  char *q = p;
  memcpy(q, prefix, pl);
  q += pl;
  for (int i = 0; i < depth; i++, q += ol) memcpy(q, open, ol);
  for (int i = 0; i < depth; i++, q += cl) memcpy(q, close, cl);
  memcpy(q, suffix, sl + 1);
  return p;
}

static void test_nesting(void **state) {
  (void)state;
  cg__lark_msg m;
  cg__lark_error e;
  call c = {.s = &S_NONE};
  /* 10000 '[' and nothing else */
  char *p = malloc(10001);
  memset(p, '[', 10000);
  p[10000] = '\0';
  c.body = p;
  assert_int_equal(run(&c, &m, &e), CG_EMALFORMED);
  assert_non_null(strstr(e.msg, "deeper than 64 levels"));
  free(p);
  /* balanced 10000-deep arrays inside a legacy value */
  p = nest("[", "]", 10000, "{\"action\":{\"value\":{\"x\":", "}}}");
  c.body = p;
  assert_int_equal(run(&c, &m, &e), CG_EMALFORMED);
  free(p);
  /* 64 levels in total pass, 65 do not: root, action, value + 61 */
  p = nest("[", "]", 61, "{\"action\":{\"value\":{\"x\":", "}}}");
  c.body = p;
  assert_int_equal(run(&c, &m, &e), 0);
  cg__lark_msg_clear(&m);
  free(p);
  p = nest("{\"a\":", "}", 62, "{\"action\":{\"value\":{\"x\":", "}}}");
  c.body = p;
  assert_int_equal(run(&c, &m, &e), CG_EMALFORMED);
  free(p);
  /* brackets inside strings do not count, escaped quotes included */
  p = nest("[", "", 5000, "{\"action\":{\"tag\":\"\\\"", "\"}}");
  c.body = p;
  assert_int_equal(run(&c, &m, &e), 0);
  assert_int_equal(strlen(m.action->pub.tag), 5001);
  cg__lark_msg_clear(&m);
  free(p);
  /* deep nesting inside the encrypted plaintext */
  p = nest("[", "]", 100, "{\"action\":{\"value\":{\"x\":", "}}}");
  char *body = wrap(KEY, p);
  char sig[65];
  cg_lark_sign_event(TS, NONCE, KEY, body, strlen(body), sig);
  call ce = {&S_KEY, TS, NONCE, sig, body, 0, 0};
  assert_int_equal(run(&ce, &m, &e), CG_EMALFORMED);
  assert_non_null(strstr(e.msg, "decrypted body nests JSON deeper"));
  free(body);
  free(p);
}

static void test_oversized(void **state) {
  (void)state;
  cg__lark_msg m;
  cg__lark_error e;
  size_t n = CG_LIMIT_BODY_HARD + 1;
  char *p = malloc(n);
  assert_non_null(p);
  memset(p, ' ', n);
  p[0] = '{';
  p[n - 1] = '}';
  cg_http_request req;
  memset(&req, 0, sizeof req);
  req.body = p;
  req.body_len = n;
  assert_int_equal(
      cg__lark_decode(&S_NONE, CG_LARK_ENDPOINT_CARD, &req, NOW, &m, &e),
      CG_ETOOBIG);
  assert_int_equal(e.http_status, 413);
  free(p);
}

static void test_bad_encrypted(void **state) {
  (void)state;
  cg__lark_msg m;
  cg__lark_error e;
  call c = {.s = &S_KEY};
  static const struct {
    const char *body, *msg;
    int rc;
  } t[] = {
      {"{\"encrypt\":\"\"}", "not standard padded base64", CG_EMALFORMED},
      {"{\"encrypt\":\"not base64!\"}", "not standard padded base64",
       CG_EMALFORMED},
      {"{\"encrypt\":\"AAECAwQFBgcICQoLDA0ODw==\"}", "base64 of a 16-byte IV",
       CG_EMALFORMED},
      /* unsigned: one answer whatever went wrong inside the ciphertext */
      {"{\"encrypt\":\"P37w+VZImNgPEO1RBhJ6RtKl7n6zymIbEG1pReEzghk=\"}",
       "could not decrypt the body into JSON", CG_ECRYPTO}, /* wrong key */
      {"{\"encrypt\":\"AAECAwQFBgcICQoLDA0OD+n1b3eQAJmiRLOrpcJo/L8=\"}",
       "could not decrypt the body into JSON", CG_ECRYPTO},
      {"{\"encrypt\":null}", "unrecognized", CG_EMALFORMED},
  };
  for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
    c.body = t[i].body;
    int rc = run(&c, &m, &e);
    if (rc != t[i].rc || !strstr(e.msg, t[i].msg))
      fail_msg("%zu: %d %s", i, rc, e.msg);
    assert_int_equal(e.http_status, 400);
  }
  /* plaintext under the right key that is not a JSON object */
  static const char *plains[] = {"[1,2]", "hello", "", "{\"encrypt\":\"x\"}",
                                 "{\"a\":1,\"a\":2}"};
  static const char *msgs[] = {"decrypted body must be a JSON object",
                               "decrypted body is not valid JSON",
                               "decrypted body is not valid JSON",
                               "encrypted again", "duplicate"};
  for (size_t i = 0; i < 5; i++) {
    char *body = wrap(KEY, plains[i]);
    /* Signed with the key: the detailed reason. */
    char sig[65];
    cg_lark_sign_event("1700000000", "n1", KEY, body, strlen(body), sig);
    call sc = {.s = &S_KEY, .ts = "1700000000", .nonce = "n1", .sig = sig, .body = body};
    int rc = run(&sc, &m, &e);
    assert_int_equal(rc, CG_EMALFORMED);
    if (!strstr(e.msg, msgs[i])) fail_msg("%zu: %s", i, e.msg);
    /* Unsigned, or signed wrongly: no detail about what decrypting gave,
     * the same answer as bad padding (no padding oracle), except for what
     * only a valid JSON object can produce. */
    for (int wrong = 0; wrong < 2; wrong++) {
      call uc = {.s = &S_KEY, .body = body};
      if (wrong) {
        uc.ts = "1700000000";
        uc.nonce = "n2"; /* the signature was made with n1 */
        uc.sig = sig;
      }
      rc = run(&uc, &m, &e);
      if (i == 3) {
        assert_int_equal(rc, CG_EMALFORMED); /* "encrypted again": valid JSON */
      } else {
        assert_int_equal(rc, CG_ECRYPTO);
        assert_non_null(strstr(e.msg, "could not decrypt the body into JSON"));
      }
      assert_int_equal(e.http_status, 400);
    }
    free(body);
  }
}

/* The exact envelope takes a fast path; every other spelling of it goes
 * through the JSON parser and must mean the same. */
static void test_envelope_shapes(void **state) {
  (void)state;
  cg__lark_msg m;
  cg__lark_error e;
  char *w = wrap(KEY, LEGACY); /* {"encrypt":"…"} */
  const char *b64 = w + 12;
  size_t n = strlen(w) - 14;
  static const char *const fmts[] = {
      "{\"encrypt\":\"%.*s\"}",
      " \r\n\t{\"encrypt\":\"%.*s\"}\n ",
      "{ \"encrypt\" : \"%.*s\" }",
      "{\"x\":1,\"encrypt\":\"%.*s\"}",
      "{\"encrypt\":\"%.*s\",\"y\":null}",
  };
  for (size_t i = 0; i < sizeof fmts / sizeof fmts[0]; i++) {
    char body[1024], sig[65];
    snprintf(body, sizeof body, fmts[i], (int)n, b64);
    cg_lark_sign_event(TS, NONCE, KEY, body, strlen(body), sig);
    call c = {&S_KEY, TS, NONCE, sig, body, 0, 0};
    if (run(&c, &m, &e) != 0) fail_msg("%zu: %s", i, e.msg);
    assert_string_equal(cg_action_raw_json(&m.action->pub), LEGACY);
    cg__lark_msg_clear(&m);
  }
  /* "\/" is an escaped '/' for the parser */
  char body[1024];
  size_t k = 0;
  k += (size_t)snprintf(body, sizeof body, "{\"encrypt\":\"");
  for (size_t i = 0; i < n; i++) {
    if (b64[i] == '/') body[k++] = '\\';
    body[k++] = b64[i];
  }
  snprintf(body + k, sizeof body - k, "\"}");
  call c = {&S_NONE, NULL, NULL, NULL, body, 0, 0};
  static const cg__lark_secrets sk = {NULL, KEY, 0, NULL};
  char sig[65];
  cg_lark_sign_event(TS, NONCE, KEY, body, strlen(body), sig);
  c.s = &sk;
  c.ts = TS;
  c.nonce = NONCE;
  c.sig = sig;
  assert_int_equal(run(&c, &m, &e), 0);
  cg__lark_msg_clear(&m);
  /* near misses are errors from the parser, not from the fast path */
  static const char *const bad[] = {
      "{\"encrypt\":\"%.*s\"}}", "{\"encrypt\":\"%.*s\"} x",
      "{\"encrypt\":\"%.*s\"", "{\"encrypt\":\"%.*s\",\"encrypt\":\"\"}"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    snprintf(body, sizeof body, bad[i], (int)n, b64);
    call cb = {&S_KEY, NULL, NULL, NULL, body, 0, 0};
    assert_int_equal(run(&cb, &m, &e), CG_EMALFORMED);
    assert_non_null(strstr(e.msg, "body is not valid JSON"));
  }
  free(w);
}

static void test_headers(void **state) {
  (void)state;
  cg__lark_msg m;
  cg__lark_error e;
  char sig[41];
  cg_lark_sign_legacy(TS, NONCE, TOK, LEGACY, strlen(LEGACY), sig);
  /* an overlong nonce is refused before hashing */
  char *longn = malloc(CG_LIMIT_HEADER_VALUE + 2);
  memset(longn, 'n', CG_LIMIT_HEADER_VALUE + 1);
  longn[CG_LIMIT_HEADER_VALUE + 1] = '\0';
  call c = {&S_TOK, TS, longn, sig, LEGACY, 0, 0};
  assert_int_equal(run(&c, &m, &e), CG_EMALFORMED);
  assert_non_null(strstr(e.msg, "X-Lark-Request-Nonce header is longer"));
  /* exactly at the limit is fine (signature then decides) */
  longn[CG_LIMIT_HEADER_VALUE] = '\0';
  char sig2[41];
  cg_lark_sign_legacy(TS, longn, TOK, LEGACY, strlen(LEGACY), sig2);
  c.sig = sig2;
  assert_int_equal(run(&c, &m, &e), 0);
  cg__lark_msg_clear(&m);
  free(longn);

  /* a NUL inside a header value */
  cg_http_request req;
  memset(&req, 0, sizeof req);
  req.body = LEGACY;
  req.body_len = strlen(LEGACY);
  req.timestamp = "17\0000";
  req.timestamp_len = 4;
  req.nonce = NONCE;
  req.nonce_len = strlen(NONCE);
  req.signature = sig;
  req.signature_len = 40;
  assert_int_equal(
      cg__lark_decode(&S_TOK, CG_LARK_ENDPOINT_CARD, &req, NOW, &m, &e),
      CG_EMALFORMED);
  /* header lengths are honoured: values followed by junk bytes */
  char ts_junk[] = TS "JUNK";
  char nonce_junk[] = NONCE "JUNK";
  char sig_junk[80];
  snprintf(sig_junk, sizeof sig_junk, "%sJUNK", sig);
  req.timestamp = ts_junk;
  req.timestamp_len = strlen(TS);
  req.nonce = nonce_junk;
  req.nonce_len = strlen(NONCE);
  req.signature = sig_junk;
  req.signature_len = 40;
  assert_int_equal(
      cg__lark_decode(&S_TOK, CG_LARK_ENDPOINT_CARD, &req, NOW, &m, &e), 0);
  cg__lark_msg_clear(&m);
  req.signature_len = 41; /* one junk byte counted */
  assert_int_equal(
      cg__lark_decode(&S_TOK, CG_LARK_ENDPOINT_CARD, &req, NOW, &m, &e),
      CG_EAUTH);
  /* empty signature header */
  req.signature_len = 0;
  assert_int_equal(
      cg__lark_decode(&S_TOK, CG_LARK_ENDPOINT_CARD, &req, NOW, &m, &e),
      CG_EAUTH);
  /* the body is hashed by its length too */
  char body_junk[sizeof LEGACY + 4];
  memcpy(body_junk, LEGACY " \n\t ", sizeof body_junk);
  req.body = body_junk;
  req.body_len = sizeof body_junk - 1;
  req.signature_len = 40;
  assert_int_equal(
      cg__lark_decode(&S_TOK, CG_LARK_ENDPOINT_CARD, &req, NOW, &m, &e),
      CG_EAUTH);
}

/* ---- timestamps and the replay window ----------------------------------- */

static void test_parse_timestamp(void **state) {
  (void)state;
  static const struct {
    const char *s;
    int64_t ms;
  } ok[] = {
      {"1700000000", NOW},
      {"0", 0},
      {"1", 1000},
      {"99999999999", INT64_C(99999999999000)},
      {"1700000000000", NOW},
      {"1700000000123", NOW + 123},
      {"170000000012", INT64_C(170000000012)}, /* 12 digits: milliseconds */
      {"0001700000000", NOW / 1000},           /* 13 digits: milliseconds */
      {"Monday, 14-Nov-22 15:53:37 CST", INT64_C(1668412417000)},
      {"Monday, 14-Nov-22 07:53:37 GMT", INT64_C(1668412417000)},
      {"Mon, 14 Nov 2022 07:53:37 GMT", INT64_C(1668412417000)},
      {"Mon, 14 Nov 2022 07:53:37 UTC", INT64_C(1668412417000)},
      {"Mon, 14 Nov 2022 07:53:37 Z", INT64_C(1668412417000)},
      {"Mon, 14 Nov 2022 15:53:37 CST", INT64_C(1668412417000)},
      {"Mon, 14 Nov 2022 15:53:37 +0800", INT64_C(1668412417000)},
      {"Mon, 14 Nov 2022 02:23:37 -0530", INT64_C(1668412417000)},
      {"Tue, 14 Nov 2023 22:13:20 GMT", NOW},
      {"Fri, 31 Dec 1999 23:59:59 GMT", INT64_C(946684799000)},
      {"Friday, 31-Dec-99 23:59:59 GMT", INT64_C(946684799000)},
      {"Thu, 29 Feb 2024 12:00:00 GMT", INT64_C(1709208000000)},
      {"Tue, 1 Jan 2069 00:00:00 GMT", INT64_C(3124224000000)},
      {"Tuesday, 01-Jan-69 00:00:00 GMT", INT64_C(3124224000000)},
      {"Thursday, 01-Jan-70 00:00:00 GMT", 0},
      {"Sun, 06 Nov 1994 08:49:37 GMT", INT64_C(784111777000)}, /* RFC 7231 */
      {"Sunday, 06-Nov-94 08:49:37 GMT", INT64_C(784111777000)},
  };
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
    int64_t ms = -1;
    int rc = cg__lark_parse_timestamp(ok[i].s, strlen(ok[i].s), &ms);
    if (rc != 0 || ms != ok[i].ms)
      fail_msg("%s: rc %d ms %lld", ok[i].s, rc, (long long)ms);
  }
  static const char *const bad[] = {
      "",
      "-1700000000",
      "+1700000000",
      " 1700000000",
      "1700000000 ",
      "1700000000.5",
      "17000000000000", /* 14 digits */
      "1e9",
      "0x10",
      "Mon, 14 Nov 2022 07:53:37",
      "Mon, 14 Nov 2022 07:53:37 PST",
      "Mon, 14 Nov 2022 07:53:37 gmt",
      "Mon, 14 Nov 2022 07:53:37 GMT ",
      "Mon, 14 Nov 2022 07:53:37 GMTx",
      "Mon, 14 Nov 2022 7:53:37 GMT",
      "Mon, 14 Nov 22 07:53:37 GMT",
      "Mon, 14-Nov-2022 07:53:37 GMT",
      "Mon, 14 nov 2022 07:53:37 GMT",
      "Mon, 32 Jan 2022 07:53:37 GMT",
      "Mon, 00 Jan 2022 07:53:37 GMT",
      "Mon, 29 Feb 2023 07:53:37 GMT",
      "Mon, 31 Apr 2022 07:53:37 GMT",
      "Mon, 14 Nov 2022 24:00:00 GMT",
      "Mon, 14 Nov 2022 23:60:00 GMT",
      "Mon, 14 Nov 2022 23:59:61 GMT",
      "Mon, 14 Nov 2022 07:53:37 +08",
      "Mon, 14 Nov 2022 07:53:37 +0860",
      "Mon, 14 Nov 2022 07:53:37 +2400",
      "Mon 14 Nov 2022 07:53:37 GMT",
      "Mond, 14 Nov 2022 07:53:37 GMT",
      "Xyz, 14 Nov 2022 07:53:37 GMT",
      "14 Nov 2022 07:53:37 GMT",
      "Mon, 123 Nov 2022 07:53:37 GMT",
      "Monday, 14-Nov-22 15:53:37 CST\n",
      "2022-11-14T07:53:37Z",
      "Mon Nov 14 07:53:37 2022",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    int64_t ms = -1;
    if (cg__lark_parse_timestamp(bad[i], strlen(bad[i]), &ms) != CG_EMALFORMED)
      fail_msg("accepted \"%s\" as %lld", bad[i], (long long)ms);
  }
  int64_t ms;
  assert_int_equal(cg__lark_parse_timestamp(NULL, 0, &ms), CG_EMALFORMED);
  /* the length is honoured */
  assert_int_equal(cg__lark_parse_timestamp("17000000009999", 10, &ms), 0);
  assert_int_equal(ms, NOW);
  char *longs = malloc(200);
  memset(longs, '1', 200);
  assert_int_equal(cg__lark_parse_timestamp(longs, 200, &ms), CG_EMALFORMED);
  free(longs);
}

static void test_replay_window(void **state) {
  (void)state;
  cg__lark_msg m;
  cg__lark_error e;
  static const cg__lark_secrets sw = {NULL, NULL, 300, NULL};
  static const struct {
    const char *ts;
    int rc, status;
  } t[] = {
      {"1700000000", 0, 0},
      {"1699999700", 0, 0},           /* exactly 300 s behind */
      {"1700000300", 0, 0},           /* exactly 300 s ahead */
      {"1699999699", CG_ESTALE, 401}, /* stale */
      {"1700000301", CG_ESTALE, 401}, /* future */
      {"1699999700000", 0, 0},
      {"1699999699999", CG_ESTALE, 401},
      {"1700000300001", CG_ESTALE, 401},
      {"Tue, 14 Nov 2023 22:13:20 GMT", 0, 0},
      {"Tuesday, 15-Nov-23 06:13:20 CST", 0, 0},
      {"Tue, 14 Nov 2023 22:08:19 GMT", CG_ESTALE, 401},
      {"0", CG_ESTALE, 401},
      {"99999999999", CG_ESTALE, 401},
      {"soon", CG_EMALFORMED, 400},
      {"", CG_EMALFORMED, 400},
  };
  for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
    call c = {&sw, t[i].ts, NULL, NULL, LEGACY, 0, 0};
    int rc = run(&c, &m, &e);
    if (rc != t[i].rc) fail_msg("%s: rc %d (%s)", t[i].ts, rc, e.msg);
    if (rc) assert_int_equal(e.http_status, t[i].status);
    cg__lark_msg_clear(&m);
  }
  /* missing header */
  call c = {&sw, NULL, NULL, NULL, V2_TRIGGER, 0, 0};
  assert_int_equal(run(&c, &m, &e), CG_ESTALE);
  assert_non_null(strstr(e.msg, "missing X-Lark-Request-Timestamp"));
  /* every format: v2, events */
  c.ts = "1700000000";
  assert_int_equal(run(&c, &m, &e), 0);
  cg__lark_msg_clear(&m);
  c.body = V1_EVENT;
  c.ts = "1";
  assert_int_equal(run(&c, &m, &e), CG_ESTALE);
  assert_non_null(strstr(e.msg, "behind the server clock"));
  /* extreme clocks do not overflow */
  c.ts = "99999999999";
  c.now = INT64_MIN;
  assert_int_equal(run(&c, &m, &e), CG_ESTALE);
  c.now = INT64_MAX;
  assert_int_equal(run(&c, &m, &e), CG_ESTALE);
  /* with secrets: the signature is checked first, then the window */
  static const cg__lark_secrets sb = {TOK, NULL, 300, NULL};
  char sig[41];
  cg_lark_sign_legacy("1", NONCE, TOK, LEGACY, strlen(LEGACY), sig);
  call cs = {&sb, "1", NONCE, sig, LEGACY, 0, 0};
  assert_int_equal(run(&cs, &m, &e), CG_ESTALE);
  cs.sig = "0000000000000000000000000000000000000000";
  assert_int_equal(run(&cs, &m, &e), CG_EAUTH);
}

/* ---- reply encoding, byte for byte -------------------------------------- */

static cg__lark_msg decode_ok(const char *body) {
  cg__lark_msg m;
  cg__lark_error e;
  call c = {.s = &S_NONE, .body = body};
  assert_int_equal(run(&c, &m, &e), 0);
  assert_int_equal(m.type, CG__LARK_MSG_ACTION);
  return m;
}

static void expect(const cg_action *a, const cg_reply *r, int status,
                   const char *body) {
  cg_buf b;
  cg_buf_init(&b, 1 << 20);
  assert_int_equal(cg_buf_append(&b, "PREFIX", 6), 0);
  int st = 0;
  assert_int_equal(cg__lark_encode_reply(a, r, &st, &b), 0);
  assert_int_equal(st, status);
  if (strcmp(b.data + 6, body) != 0)
    fail_msg("got  %s\nwant %s", b.data + 6, body);
  /* valid compact JSON (custom bodies excepted) */
  if (!r || r->custom_status == 0) {
    json_t *j = json_loads(b.data + 6, JSON_REJECT_DUPLICATES, NULL);
    assert_non_null(j);
    char *again = json_dumps(j, JSON_COMPACT);
    assert_string_equal(again, b.data + 6);
    free(again);
    json_decref(j);
  }
  cg_buf_free(&b);
}

#define CARD                                                                \
  "{\"config\":{\"wide_screen_mode\":true},\"elements\":[{\"tag\":\"div\"," \
  "\"text\":{\"tag\":\"plain_text\",\"content\":"                           \
  "\"\xe5\xb7\xb2\xe5\xae\x8c\xe6\x88\x90 \\\"ok\\\"\"}}]}"

static void test_encode_legacy(void **state) {
  (void)state;
  cg__lark_msg m = decode_ok(LEGACY);
  const cg_action *a = &m.action->pub;
  int err;

  expect(a, NULL, 200, "{}");
  cg_reply *r = cg_reply_keep();
  expect(a, r, 200, "{}");
  cg_reply_free(r);

  r = cg_reply_card(
      "{ \"config\" : {\"wide_screen_mode\": true}, \"elements\": "
      "[{\"tag\":\"div\",\"text\":{\"tag\":\"plain_text\",\"content\":"
      "\"\xe5\xb7\xb2\xe5\xae\x8c\xe6\x88\x90 \\\"ok\\\"\"}}] }",
      &err);
  expect(a, r, 200, CARD);
  /* card + toast: the toast is dropped */
  assert_int_equal(cg_reply_set_toast(r, "success", "saved"), 0);
  expect(a, r, 200, CARD);
  cg_reply_free(r);

  r = cg_reply_toast("error", "no \"way\"\n", &err);
  expect(a, r, 400, "{\"content\":\"no \\\"way\\\"\\n\"}");
  assert_int_equal(cg_reply_toast_i18n(r, "zh_cn", "\xe4\xb8\x8d\xe8\xa1\x8c"),
                   0);
  assert_int_equal(cg_reply_toast_i18n(r, "en_us", "no"), 0);
  expect(a, r, 400,
         "{\"content\":\"no \\\"way\\\"\\n\",\"i18n\":{\"zh_cn\":\"\xe4\xb8\x8d"
         "\xe8\xa1\x8c\",\"en_us\":\"no\"}}");
  cg_reply_free(r);

  /* template: not supported by legacy callbacks → keep */
  r = cg_reply_template("tpl", "{\"a\":1}", "1.0.0", &err);
  expect(a, r, 200, "{}");
  /* template + toast → the toast */
  assert_int_equal(cg_reply_set_toast(r, "info", "hi"), 0);
  expect(a, r, 400, "{\"content\":\"hi\"}");
  cg_reply_free(r);

  /* inline means nothing here */
  r = cg_reply_keep();
  assert_int_equal(cg_reply_set_inline(r, "t", "u"), 0);
  expect(a, r, 200, "{}");
  cg_reply_free(r);

  r = cg_reply_custom(418, "I'm a teapot", &err);
  expect(a, r, 418, "I'm a teapot");
  cg_reply_free(r);
  cg__lark_msg_clear(&m);
}

static void test_encode_v2(void **state) {
  (void)state;
  cg__lark_msg m = decode_ok(V2_TRIGGER);
  const cg_action *a = &m.action->pub;
  int err;

  expect(a, NULL, 200, "{}");
  cg_reply *r = cg_reply_keep();
  expect(a, r, 200, "{}");
  cg_reply_free(r);

  r = cg_reply_toast("success", "ok", &err);
  expect(a, r, 200, "{\"toast\":{\"type\":\"success\",\"content\":\"ok\"}}");
  assert_int_equal(cg_reply_toast_i18n(r, "en_us", "OK"), 0);
  assert_int_equal(cg_reply_toast_i18n(r, "ja_jp", "\xe3\x81\xaf\xe3\x81\x84"),
                   0);
  expect(a, r, 200,
         "{\"toast\":{\"type\":\"success\",\"content\":\"ok\",\"i18n\":"
         "{\"en_us\":\"OK\",\"ja_jp\":\"\xe3\x81\xaf\xe3\x81\x84\"}}}");
  cg_reply_free(r);

  r = cg_reply_card(CARD, &err);
  expect(a, r, 200, "{\"card\":{\"type\":\"raw\",\"data\":" CARD "}}");
  assert_int_equal(cg_reply_set_toast(r, "info", "updated"), 0);
  expect(a, r, 200,
         "{\"toast\":{\"type\":\"info\",\"content\":\"updated\"},\"card\":"
         "{\"type\":\"raw\",\"data\":" CARD "}}");
  cg_reply_free(r);

  r = cg_reply_template("AAqk", "{\"name\":\"\xe5\xbc\xa0\",\"n\":1}", "1.0.3",
                        &err);
  expect(a, r, 200,
         "{\"card\":{\"type\":\"template\",\"data\":{\"template_id\":\"AAqk\","
         "\"template_variable\":{\"name\":\"\xe5\xbc\xa0\",\"n\":1},"
         "\"template_version_name\":\"1.0.3\"}}}");
  assert_int_equal(cg_reply_set_toast(r, "warning", "w"), 0);
  expect(
      a, r, 200,
      "{\"toast\":{\"type\":\"warning\",\"content\":\"w\"},\"card\":{\"type\":"
      "\"template\",\"data\":{\"template_id\":\"AAqk\",\"template_variable\":"
      "{\"name\":\"\xe5\xbc\xa0\",\"n\":1},\"template_version_name\":"
      "\"1.0.3\"}}}");
  cg_reply_free(r);
  r = cg_reply_template("AAqk", NULL, NULL, &err);
  expect(
      a, r, 200,
      "{\"card\":{\"type\":\"template\",\"data\":{\"template_id\":\"AAqk\"}}}");
  cg_reply_free(r);

  /* inline is for url.preview.get only */
  r = cg_reply_keep();
  assert_int_equal(cg_reply_set_inline(r, "t", NULL), 0);
  expect(a, r, 200, "{}");
  cg_reply_free(r);

  r = cg_reply_custom(500, "{\"msg\":\"x\"}", &err);
  expect(a, r, 500, "{\"msg\":\"x\"}");
  cg_reply_free(r);
  cg__lark_msg_clear(&m);
}

static void test_encode_preview(void **state) {
  (void)state;
  cg__lark_msg m = decode_ok(V2_PREVIEW);
  const cg_action *a = &m.action->pub;
  int err;
  expect(a, NULL, 200, "{}");
  cg_reply *r = cg_reply_keep();
  assert_int_equal(cg_reply_set_inline(r, "Doc \"A\"", NULL), 0);
  expect(a, r, 200, "{\"inline\":{\"title\":\"Doc \\\"A\\\"\"}}");
  assert_int_equal(
      cg_reply_set_inline(r, "Doc", "https://e.x/d?a=1&b=\xe4\xb8\x80"), 0);
  const char *inl =
      "\"inline\":{\"title\":\"Doc\",\"url\":{\"copy_url\":\"https://e.x/"
      "d?a=1&b="
      "\xe4\xb8\x80\",\"ios\":\"https://e.x/d?a=1&b=\xe4\xb8\x80\",\"android\":"
      "\"https://e.x/d?a=1&b=\xe4\xb8\x80\",\"pc\":\"https://e.x/d?a=1&b=\xe4"
      "\xb8\x80\",\"web\":\"https://e.x/d?a=1&b=\xe4\xb8\x80\"}}";
  char want[1024];
  snprintf(want, sizeof want, "{%s}", inl);
  expect(a, r, 200, want);
  /* a toast is not part of a preview answer */
  assert_int_equal(cg_reply_set_toast(r, "info", "x"), 0);
  expect(a, r, 200, want);
  cg_reply_free(r);

  r = cg_reply_card("{\"elements\":[]}", &err);
  expect(a, r, 200, "{\"card\":{\"type\":\"raw\",\"data\":{\"elements\":[]}}}");
  assert_int_equal(
      cg_reply_set_inline(r, "Doc", "https://e.x/d?a=1&b=\xe4\xb8\x80"), 0);
  snprintf(want, sizeof want,
           "{%s,\"card\":{\"type\":\"raw\",\"data\":{\"elements\":[]}}}", inl);
  expect(a, r, 200, want);
  cg_reply_free(r);

  r = cg_reply_template("T1", NULL, "2", &err);
  expect(a, r, 200,
         "{\"card\":{\"type\":\"template\",\"data\":{\"template_id\":\"T1\","
         "\"template_version_name\":\"2\"}}}");
  cg_reply_free(r);
  r = cg_reply_custom(204, "", &err);
  expect(a, r, 204, "");
  cg_reply_free(r);
  cg__lark_msg_clear(&m);
}

static void test_encode_limits(void **state) {
  (void)state;
  cg__lark_msg m = decode_ok(V2_TRIGGER);
  int err;
  cg_reply *r = cg_reply_card(CARD, &err);
  cg_buf b;
  cg_buf_init(&b, 40);
  assert_int_equal(cg_buf_append(&b, "keep", 4), 0);
  int st = 7;
  assert_int_equal(cg__lark_encode_reply(&m.action->pub, r, &st, &b),
                   CG_ETOOBIG);
  assert_int_equal(st, 7);    /* untouched */
  assert_int_equal(b.len, 4); /* no half-built output */
  assert_string_equal(b.data, "keep");
  assert_int_equal(cg__lark_encode_challenge(
                       "a-very-long-challenge-that-does-not-fit-here", &b),
                   CG_ETOOBIG);
  assert_string_equal(b.data, "keep");
  assert_int_equal(
      cg__encode_error(CG_EAUTH, "a message that is too long for the buffer",
                       &b),
      CG_ETOOBIG);
  assert_string_equal(b.data, "keep");
  cg_buf_free(&b);
  cg_reply_free(r);
  cg__lark_msg_clear(&m);
}

static void test_encode_error(void **state) {
  (void)state;
  cg_buf b;
  cg_buf_init(&b, 4096);
  assert_int_equal(cg__encode_error(CG_EAUTH, "bad \"sig\"\n\\", &b), 0);
  assert_string_equal(b.data,
                      "{\"code\":30002,\"msg\":\"bad \\\"sig\\\"\\n\\\\\"}");
  cg_buf_reset(&b);
  assert_int_equal(cg__encode_error(CG_EMALFORMED, NULL, &b), 0);
  assert_string_equal(b.data, "{\"code\":30001,\"msg\":\"\"}");
  cg_buf_reset(&b);
  /* invalid UTF-8 never reaches the answer; valid UTF-8 is kept */
  assert_int_equal(cg__encode_error(CG_ESTALE,
                                    "a\xff"
                                    "b\xc3\xa9\xe4\xb8\x80\xed\xa0\x80\x01",
                                    &b),
                   0);
  assert_string_equal(b.data,
                      "{\"code\":30011,\"msg\":\"a\\ufffdb\xc3\xa9\xe4\xb8\x80"
                      "\\ufffd\\ufffd\\ufffd\\u0001\"}");
  json_t *j = json_loads(b.data, 0, NULL);
  assert_non_null(j);
  json_decref(j);
  cg_buf_free(&b);
}

/* A reply that carries its card's serialization (cg__reply_card_take, the
 * workflow engine's replies) is answered with those bytes, not a new dump. */
static void test_encode_card_text(void **state) {
  (void)state;
  static const char *const bodies[] = {LEGACY, V2_TRIGGER, V2_PREVIEW};
  static const char *const want[] = {
      CARD, "{\"card\":{\"type\":\"raw\",\"data\":" CARD "}}",
      "{\"card\":{\"type\":\"raw\",\"data\":" CARD "}}"};
  for (size_t i = 0; i < 3; i++) {
    cg__lark_msg m = decode_ok(bodies[i]);
    const cg_action *a = &m.action->pub;
    cg_reply *r = cg__reply_card_take(json_loads(CARD, 0, NULL), strdup(CARD));
    assert_non_null(r);
    expect(a, r, 200, want[i]);
    cg_reply_free(r);
    /* the text is what goes out (here deliberately not the card's dump) */
    r = cg__reply_card_take(json_loads(CARD, 0, NULL),
                            strdup("{\"from\":\"text\"}"));
    assert_non_null(r);
    expect(a, r, 200,
           i == 0
               ? "{\"from\":\"text\"}"
               : "{\"card\":{\"type\":\"raw\",\"data\":{\"from\":\"text\"}}}");
    cg_reply_free(r);
    /* no text: dumped as before */
    r = cg__reply_card_take(json_loads(CARD, 0, NULL), NULL);
    assert_non_null(r);
    expect(a, r, 200, want[i]);
    cg_reply_free(r);
    cg__lark_msg_clear(&m);
  }
  /* too big for the buffer: nothing half-built */
  cg__lark_msg m = decode_ok(LEGACY);
  cg_reply *r = cg__reply_card_take(json_loads(CARD, 0, NULL), strdup(CARD));
  cg_buf b;
  cg_buf_init(&b, 20);
  assert_int_equal(cg_buf_append(&b, "keep", 4), 0);
  int st = 7;
  assert_int_equal(cg__lark_encode_reply(&m.action->pub, r, &st, &b),
                   CG_ETOOBIG);
  assert_int_equal(st, 7);
  assert_string_equal(b.data, "keep");
  cg_buf_free(&b);
  cg_reply_free(r);
  cg__lark_msg_clear(&m);
}

/* ---- compact dumps against jansson's ------------------------------------ */

static void check_dump(const char *name, const char *got, const json_t *v) {
  char *want = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
  assert_non_null(want);
  if (!got || strcmp(got, want) != 0)
    fail_msg("%s: %s\nwant %s", name, got ? got : "(null)", want);
  free(want);
}

static void test_dump_matches_jansson(void **state) {
  (void)state;
  static const char *const values[] = {
      "{}",
      "[]",
      "\"plain\"",
      "\"\"",
      "{\"s\":\"\\u0001\\u001f\\b\\f\\n\\r\\t\\\"\\\\\\/\\u007f\\u00e9\\ud83d"
      "\\ude00\xe5\xbc\xa0\"}",
      "{\"i\":[0,-0,1,-1,9223372036854775807,-9223372036854775808,"
      "123456789012345678]}",
      "{\"r\":[1.5,-0.0,1e300,1e-7,0.1,123456789.125,2.5e-308,1E2]}",
      "{\"t\":true,\"f\":false,\"n\":null,\"o\":{\"a\":[{\"b\":[[]]}]}}",
      "{\"\\u0041\\\"k\\n\":1}",
      "{\"z\":1,\"a\":2}",
  };
  for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
    /* as action.value (and form_value / options where the type allows) */
    char body[1024];
    snprintf(body, sizeof body, "{\"action\":{\"value\":%s%s%s}}", values[i],
             values[i][0] == '{' ? ",\"form_value\":" : "",
             values[i][0] == '{' ? values[i] : "");
    json_t *expect_v = json_loads(values[i], JSON_DECODE_ANY, NULL);
    if (!expect_v) fail_msg("value %zu does not parse", i);
    cg__lark_msg m;
    cg__lark_error e;
    call c = {.s = &S_NONE, .body = body};
    int rc = run(&c, &m, &e);
    if (json_is_object(expect_v) || json_is_string(expect_v)) {
      if (rc) fail_msg("value %zu: %s", i, e.msg);
      check_dump("value_json", m.action->pub.value_json, m.action->value);
      if (m.action->pub.form_value_json)
        check_dump("form_value_json", m.action->pub.form_value_json,
                   m.action->value);
      cg__lark_msg_clear(&m);
    } else {
      assert_int_equal(rc, CG_EMALFORMED); /* value must be object/string */
    }
    /* as a card (objects only), through the encoder */
    if (json_is_object(expect_v)) {
      cg_reply *r = cg_reply_keep();
      assert_non_null(r);
      r->card = json_incref(expect_v);
      cg__lark_msg lm = decode_ok(LEGACY);
      cg_buf b;
      cg_buf_init(&b, 1 << 20);
      int st = 0;
      assert_int_equal(cg__lark_encode_reply(&lm.action->pub, r, &st, &b), 0);
      check_dump("card", b.data, expect_v);
      cg_buf_free(&b);
      cg_reply_free(r);
      cg__lark_msg_clear(&lm);
    }
    json_decref(expect_v);
  }
  /* options */
  cg__lark_msg m = decode_ok(V2_TRIGGER);
  assert_string_equal(m.action->pub.options_json, "[\"p\",\"q\"]");
  assert_string_equal(m.action->pub.form_value_json,
                      "{\"a\":\"1\",\"b\":[\"x\",\"y\"]}");
  cg__lark_msg_clear(&m);
}

/* What the writer leaves to jansson: invalid UTF-8 (jansson refuses it, and
 * so does the encoder), nesting past its depth (jansson writes it), a cycle
 * (jansson refuses it). */
static void test_dump_deferred(void **state) {
  (void)state;
  cg__lark_msg m = decode_ok(LEGACY);
  const cg_action *a = &m.action->pub;
  cg_buf b;
  cg_buf_init(&b, 1 << 20);
  int st = 7;

  cg_reply *r = cg_reply_keep();
  r->card = json_object();
  json_object_set_new(r->card, "bad", json_stringn_nocheck("a\xff", 2));
  assert_int_equal(cg_buf_append(&b, "keep", 4), 0);
  assert_int_equal(cg__lark_encode_reply(a, r, &st, &b), CG_ENOMEM);
  assert_int_equal(st, 7);
  assert_string_equal(b.data, "keep");
  cg_reply_free(r);

  r = cg_reply_keep();
  r->card = json_object();
  json_t *deep = r->card;
  for (int i = 0; i < 5000; i++) { /* {"x":[{"x":[…]}]} */
    json_t *arr = json_array(), *next = json_object();
    assert_int_equal(json_object_set_new(deep, "x", arr), 0);
    assert_int_equal(json_array_append_new(arr, next), 0);
    deep = next;
  }
  cg_buf_reset(&b);
  assert_int_equal(cg__lark_encode_reply(a, r, &st, &b), 0);
  check_dump("deep card", b.data, r->card);
  cg_reply_free(r);

  r = cg_reply_keep();
  json_t *o1 = json_object(), *o2 = json_object();
  json_object_set(o1, "o2", o2);
  json_object_set(o2, "o1", o1); /* a cycle */
  r->card = o1;
  cg_buf_reset(&b);
  assert_int_equal(cg_buf_append(&b, "keep", 4), 0);
  assert_int_equal(cg__lark_encode_reply(a, r, &st, &b), CG_ENOMEM);
  assert_string_equal(b.data, "keep");
  json_object_del(o2, "o1"); /* break it so it can be freed */
  json_decref(o2);
  cg_reply_free(r);

  cg_buf_free(&b);
  cg__lark_msg_clear(&m);
}

static void test_names(void **state) {
  (void)state;
  assert_string_equal(cg_platform_name(CG_PLATFORM_LARK), "lark");
  assert_string_equal(cg_platform_name(CG_PLATFORM_DINGTALK), "dingtalk");
  assert_string_equal(cg_platform_name((cg_platform)0), "unknown");
  assert_string_equal(cg_kind_name(CG_KIND_CARD_ACTION), "card_action");
  assert_string_equal(cg_kind_name(CG_KIND_URL_PREVIEW), "url_preview");
  assert_string_equal(cg_kind_name(CG_KIND_MESSAGE), "message");
  assert_string_equal(cg_kind_name((cg_kind)99), "unknown");
  assert_string_equal(cg_format_name(CG_FORMAT_LARK_LEGACY), "lark_legacy");
  assert_string_equal(cg_format_name(CG_FORMAT_LARK_V2), "lark_v2");
  assert_string_equal(cg_format_name(CG_FORMAT_DINGTALK), "dingtalk");
  assert_string_equal(cg_format_name((cg_format)-1), "unknown");
  assert_null(cg_action_raw_json(NULL));
  cg__action_rec *r = cg__action_new();
  assert_non_null(r);
  assert_int_equal(r->pub.checked, -1);
  assert_null(cg_action_value(&r->pub, "k"));
  cg__action_free(r);
  cg__action_free(NULL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_policy_matrix),
      cmocka_unit_test(test_policy_matrix_prepared),
      cmocka_unit_test(test_doc_vectors),
      cmocka_unit_test(test_go_sample),
      cmocka_unit_test(test_decode_legacy),
      cmocka_unit_test(test_decode_legacy_variants),
      cmocka_unit_test(test_decode_v2),
      cmocka_unit_test(test_decode_events),
      cmocka_unit_test(test_challenge),
      cmocka_unit_test(test_bad_bodies),
      cmocka_unit_test(test_nesting),
      cmocka_unit_test(test_oversized),
      cmocka_unit_test(test_bad_encrypted),
      cmocka_unit_test(test_envelope_shapes),
      cmocka_unit_test(test_headers),
      cmocka_unit_test(test_parse_timestamp),
      cmocka_unit_test(test_replay_window),
      cmocka_unit_test(test_encode_legacy),
      cmocka_unit_test(test_encode_v2),
      cmocka_unit_test(test_encode_preview),
      cmocka_unit_test(test_encode_limits),
      cmocka_unit_test(test_encode_error),
      cmocka_unit_test(test_encode_card_text),
      cmocka_unit_test(test_dump_matches_jansson),
      cmocka_unit_test(test_dump_deferred),
      cmocka_unit_test(test_names),
  };
  /* Everything twice: secrets as given, then with prepared keys. */
  int failed =
      cmocka_run_group_tests_name("per-call secrets", tests, NULL, NULL);
  failed +=
      cmocka_run_group_tests_name("prepared keys", tests, use_prepared, NULL);
  return failed;
}
