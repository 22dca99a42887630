/* Lark webhook codec: verify, decrypt, classify and decode one HTTP callback;
 * encode the answer. Pure functions: no I/O, no clock (now is a parameter),
 * no logging (errors come back with a status and a message).
 * Facts: ../shared/protocols/lark.md §0–§2. */
#ifndef CG_LARK_WEBHOOK_H
#define CG_LARK_WEBHOOK_H

#include <stdint.h>

#include "../../common/common.h"
#include "../core/action_int.h"
#include "cardgate/app.h"
#include "cardgate/reply.h"

/* Secrets prepared once for many requests: the AES key derived from the
 * encrypt key with its key schedule made, AES-256-CBC, SHA-1 and SHA-256
 * fetched from OpenSSL once (an implicit fetch takes a lock and a lookup on
 * every EVP_*Init), and the digest and cipher contexts reused. Made by the
 * caller and passed in through cg__lark_secrets.keys: the codec keeps no
 * globals. Not thread-safe: the contexts inside are scratch space, so one
 * keys object serves one thread at a time (one per loop). Holds copies of
 * the secrets it was made from (cleansed when freed). */
typedef struct cg__lark_keys cg__lark_keys;

/* Prepares the secrets (NULL/"" = not configured, as in cg__lark_secrets).
 * 0 and *out (free with cg__lark_keys_free), or CG_EINVAL (out NULL),
 * CG_ENOMEM, CG_ECRYPTO (OpenSSL cannot provide SHA-1, SHA-256 or
 * AES-256-CBC); *out is NULL then. */
int cg__lark_keys_new(const char *verification_token, const char *encrypt_key,
                      cg__lark_keys **out);
/* Frees k and cleanses what it holds. Accepts NULL. */
void cg__lark_keys_free(cg__lark_keys *k);
/* 1 when k was made from exactly these secrets (NULL and "" alike). */
int cg__lark_keys_match(const cg__lark_keys *k, const char *verification_token,
                        const char *encrypt_key);

typedef struct cg__lark_secrets {
  const char *verification_token; /* NULL/"" = not configured */
  const char *encrypt_key;        /* NULL/"" = not configured */
  uint32_t replay_window_s;       /* 0 = off */
  /* Borrowed, or NULL: derive and fetch on every call (slower, same
   * results). When set it must have been made from the two secrets above
   * (checked with cg_assert: a mismatch is a wiring bug) and is used by
   * cg__lark_decode, so the same one-thread-at-a-time rule applies. */
  const cg__lark_keys *keys;
} cg__lark_secrets;

/* The two signature schemes (lark.md §0.4). */
typedef enum { CG__LARK_SHA1 = 1, CG__LARK_SHA256 = 2 } cg__lark_hash;

/* hex_lower(HASH(ts || nonce || secret || body)), every part given by
 * pointer and length, into out (41 bytes for SHA-1, 65 for SHA-256). k:
 * prepared digests and context, or NULL (per call). On an OpenSSL failure out
 * is "", which never equals a signature. cg_lark_sign_legacy/_event are this
 * with k == NULL and C strings. */
void cg__lark_sign(const cg__lark_keys *k, cg__lark_hash h, const char *ts,
                   size_t ts_len, const char *nonce, size_t nonce_len,
                   const char *secret, size_t secret_len, const void *body,
                   size_t body_len, char *out);

/* cg_lark_decrypt with the prepared key (k, which must hold an encrypt key;
 * encrypt_key is then unused) or, with k == NULL, the key derived from
 * encrypt_key. Same strictness, results and ownership as cg_lark_decrypt. */
int cg__lark_decrypt(const cg__lark_keys *k, const char *encrypt_key,
                     const char *b64, size_t b64_len, char **out,
                     size_t *out_len);

typedef enum {
  CG__LARK_MSG_CHALLENGE = 1, /* url_verification: answer the challenge */
  CG__LARK_MSG_ACTION = 2,    /* legacy card callback, card.action.trigger, url.preview.get */
  CG__LARK_MSG_EVENT = 3      /* any other event: answer {} and log its type */
} cg__lark_msg_type;

typedef struct cg__lark_msg {
  cg__lark_msg_type type;
  char *challenge;        /* CHALLENGE: owned */
  char *event_type;       /* EVENT: owned, may be NULL (unknown) */
  char *event_id;         /* EVENT: owned, may be NULL */
  cg__action_rec *action; /* ACTION: owned (cg__lark_msg_clear frees it) */
  /* EVENT of type "app_ticket" (schema 1.0, store apps; lark.md §4.2):
   * event.app_id and event.app_ticket, owned, else NULL. The ticket is a
   * secret: never log it. */
  char *app_id;
  char *app_ticket;
} cg__lark_msg;

typedef struct cg__lark_error {
  int http_status; /* 400 malformed, 401 auth/stale, 413 too big */
  int code;        /* the CG_E* code */
  char msg[256];   /* what was wrong and what to do; never contains a secret */
} cg__lark_error;

/* Decodes one request. ep only names the URL it came to (for messages): the
 * body shape decides the format, and each format is verified by its own
 * rules (lark.md §0.4, DESIGN note in docs/lark-webhook.md):
 *  - challenge (type url_verification, plain or encrypted): never needs
 *    signature headers; the token must match when one is configured;
 *  - legacy card callback: SHA-1 + verification token; when the body was
 *    encrypted, SHA-256 + encrypt key is accepted too;
 *  - schema 2.0: SHA-256 + encrypt key; header.token must match the
 *    verification token when one is configured;
 *  - a configured secret makes its check mandatory; with no secret at all,
 *    nothing is checked (development mode).
 * now_ms is the wall clock, used only for the replay window.
 * Returns 0 and fills *out, or a negative code and fills *err (out is then
 * empty). */
int cg__lark_decode(const cg__lark_secrets *s, cg_lark_endpoint ep,
                    const cg_http_request *req, int64_t now_ms,
                    cg__lark_msg *out, cg__lark_error *err);

void cg__lark_msg_clear(cg__lark_msg *m);

/* Encodes a handler's reply for the action's format and kind (table in
 * reply.h). r == NULL means keep. Appends the body to out; sets *status.
 * 0 or CG_ENOMEM / CG_ETOOBIG. */
int cg__lark_encode_reply(const cg_action *a, const cg_reply *r, int *status,
                          cg_buf *out);

/* {"challenge":"…"} */
int cg__lark_encode_challenge(const char *challenge, cg_buf *out);

/* {"code":N,"msg":"…"} with N = -code (e.g. 30002 for CG_EAUTH). */
int cg__encode_error(int code, const char *msg, cg_buf *out);

/* Parses an X-Lark-Request-Timestamp: decimal seconds, decimal milliseconds
 * (13+ digits), or an HTTP date as in lark.md §0.2 ("Monday, 14-Nov-22
 * 15:53:37 CST", RFC 1123 "Mon, 14 Nov 2022 15:53:37 GMT"); zones GMT, UTC, Z,
 * CST (+08:00) and numeric ±hhmm. 0 and *ms_out, or CG_EMALFORMED. */
int cg__lark_parse_timestamp(const char *s, size_t n, int64_t *ms_out);

#endif
