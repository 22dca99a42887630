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

typedef struct cg__lark_secrets {
  const char *verification_token; /* NULL/"" = not configured */
  const char *encrypt_key;        /* NULL/"" = not configured */
  uint32_t replay_window_s;       /* 0 = off */
} cg__lark_secrets;

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
