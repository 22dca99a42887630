/* cardgate — the app: secrets, routes, handlers, the deadline.
 *
 * An app belongs to one libuv loop and is used from that loop's thread only.
 * Transports (cg_server, or your own server through cg_app_handle_lark_http)
 * hand it raw requests; it verifies them, routes the normalized action to a
 * handler and encodes the handler's reply — or, when the handler misses the
 * deadline, answers "keep the card" by itself.
 */
#ifndef CARDGATE_APP_H
#define CARDGATE_APP_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "action.h"
#include "error.h"
#include "log.h"
#include "reply.h"
#include "store.h"
#include "workflow.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cg_app cg_app;
typedef struct cg_responder cg_responder;

typedef struct cg_app_options {
  /* Lark secrets. NULL or "" means not configured. When a secret is
   * configured its check is mandatory. Strings are copied. */
  const char *lark_verification_token;
  const char *lark_encrypt_key;
  const char *lark_app_id;
  const char *lark_app_secret;

  /* The Lark Open API origin for the outbox (late and follow-up card
   * updates): NULL = "https://open.feishu.cn"; "https://open.larksuite.com";
   * http:// only to a loopback host (tests). Copied. The outbox runs when
   * lark_app_id, lark_app_secret and a store are all configured. */
  const char *lark_base_url;
  /* 1: the app is a store (marketplace, ISV) app: the outbox gets an
   * app_access_token with the app_ticket Lark pushes to the event URL (kept
   * in the store) and one tenant token per tenant key (docs/openapi.md).
   * 0 (default): a self-built app with one tenant token. */
  int lark_store_app;
  /* DingTalk app credentials (Client ID = AppKey, Client Secret =
   * AppSecret): the Stream client's default credentials and, with a store,
   * the outbox's for late card updates (PUT /v1.0/card/instances). NULL or
   * "" = not configured. Copied. */
  const char *dingtalk_client_id;
  const char *dingtalk_client_secret;
  /* DingTalk Open API origin: NULL = "https://api.dingtalk.com"; http://
   * only to a loopback host (the emulator). Copied. */
  const char *dingtalk_base_url;
  /* Delivery attempts of one outbox entry before it is dead (default 8;
   * rate-limit waits do not end an entry). */
  uint32_t outbox_max_attempts;

  /* Answer by itself after this many ms when the handler has not (default
   * 2500; Lark gives 3 s). DingTalk card callbacks get at most 1700 ms
   * whatever this says: DingTalk waits 2 s (dingtalk.md §2.7). */
  uint32_t deadline_ms;

  /* Reject requests whose X-Lark-Request-Timestamp is further than this many
   * seconds from now. 0 = off (default; the platform's timestamp format is
   * not documented, see lark.md §0.2). */
  uint32_t replay_window_s;

  /* How long a schema-2.0 event_id is remembered for duplicate suppression
   * (default 86400 s). */
  uint32_t dedupe_ttl_s;
  /* 1 (default): event ids are also kept in the store, so a redelivery
   * after a restart, or to another instance sharing the store, is answered
   * from the first answer and not handled again — at the price of a store
   * round trip before each event runs and a write after it. 0: in memory
   * only (this process, since it started). */
  int dedupe_in_store;

  /* The store: cards, actions, seen event ids. Borrowed; must outlive the
   * app. NULL = no persistence (workflows then refuse to load). */
  cg_store *store;

  cg_log_fn log; /* NULL = silent */
  void *log_ud;
  cg_log_level log_level; /* lines below this level are not formatted */
} cg_app_options;

/* Fills o with the defaults above. */
CG_EXTERN void cg_app_options_init(cg_app_options *o);

/* Creates an app on loop. Returns NULL and sets *err (CG_EINVAL, CG_ENOMEM).
 * Caller frees with cg_app_free() after every server using it is closed. */
CG_EXTERN cg_app *cg_app_new(uv_loop_t *loop, const cg_app_options *o,
                             int *err);

/* Frees the app. Accepts NULL. Handlers still running keep their responders
 * valid (their replies are then dropped); no callback runs after this.
 * Close every long-connection client first and run the loop until their
 * close callbacks have run (stream.h); a client left is a bug (asserted). */
CG_EXTERN void cg_app_free(cg_app *app);

/* A handler receives the action and a responder. It must call cg_respond()
 * exactly once — inside the call or later, on the loop's thread. action is
 * borrowed until then (cg_responder_action() returns it again later). */
typedef void (*cg_handler_fn)(const cg_action *action, cg_responder *r,
                              void *ud);
typedef int (*cg_predicate_fn)(const cg_action *action, void *ud);

/* Routes, tried in registration order; the first that matches wins.
 *
 * match: conditions joined by "&&", each `FIELD == "text"`, `FIELD != "text"`
 * or a bare `FIELD` (present and non-empty). FIELD is one of platform, kind,
 * format, tag, name, option, event_type, or value.KEY (a top-level key of
 * action.value, compared as cg_action_value() returns it). Example:
 *   value.button_type == "public_publish" && kind == "card_action"
 * NULL or "" matches everything.
 *
 * Returns 0, CG_EINVAL with a message in cg_app_last_error() when match does
 * not parse, or CG_ENOMEM. handler and ud are borrowed. */
CG_EXTERN int cg_app_route(cg_app *app, const char *match,
                           cg_handler_fn handler, void *ud);

/* A route decided by a predicate (called on the loop thread, must not block). */
CG_EXTERN int cg_app_route_fn(cg_app *app, cg_predicate_fn pred, void *pred_ud,
                              cg_handler_fn handler, void *ud);

/* The handler for actions no route matched. Without one such actions are
 * answered "keep the card" and logged. */
CG_EXTERN void cg_app_fallback(cg_app *app, cg_handler_fn handler, void *ud);

/* Registers a declarative workflow: its match becomes a route run by the
 * workflow engine. Takes ownership of wf (also on failure). Needs a store.
 * 0, CG_ECONFIG (no store), CG_EINVAL, CG_ENOMEM. */
CG_EXTERN int cg_app_add_workflow(cg_app *app, cg_workflow *wf);

/* ---- Sidecar: a route answered by your own HTTP service. --------------- */

typedef struct cg_upstream_options {
  /* Whole upstream request, connect to last byte. 0 = the time left before
   * the app's deadline (then a slow upstream gets the fallback toast, or
   * "keep the card" when the deadline answered first). A larger value lets a
   * late answer arrive after cardgate answered "keep the card"; it is then
   * passed to cg_respond like any late answer. */
  uint32_t timeout_ms;
  /* The toast answered when the upstream fails (down, refused, timeout,
   * HTTP status other than 2xx, an answer that breaks the contract).
   * NULL = "error" / "服务暂时不可用，请稍后再试" with an en_us translation
   * "Service unavailable, try again later". fallback_en_us (optional) adds
   * an en_us translation to a custom text. Strings are copied. */
  const char *fallback_type;
  const char *fallback_content;
  const char *fallback_en_us;
  /* Sent as X-Cardgate-Secret on every request (NULL = none). Copied. */
  const char *secret;
  /* Extra request headers, "Name: value", NULL-terminated (NULL = none).
   * Copied. */
  const char *const *headers;
} cg_upstream_options;

/* Fills o with the defaults above. */
CG_EXTERN void cg_upstream_options_init(cg_upstream_options *o);

/* A route whose handler is an HTTP service: the normalized action is POSTed
 * to url as JSON and the service's answer becomes the reply — the contract
 * is docs/sidecar.md (JSON Schema docs/sidecar.schema.json). match is a
 * route expression as for cg_app_route. url: http:// or https://. o may be
 * NULL (defaults). Everything is copied. The HTTP client is created on the
 * app's loop with the first upstream route and closed by cg_app_free (run
 * the loop afterwards so its handles close).
 * Returns 0; CG_EINVAL (bad match — message in cg_app_last_error —, url
 * not http(s), a header without ':' or with a line break); CG_ENOMEM; CG_EIO
 * when libcurl cannot initialise. */
CG_EXTERN int cg_app_route_upstream(cg_app *app, const char *match,
                                    const char *url,
                                    const cg_upstream_options *o);

/* Answer the action. Takes ownership of reply (NULL means keep the card).
 * Loop thread only. Returns 0; CG_ETIMEDOUT when the deadline already passed
 * (cardgate has answered by itself; the reply is freed and the fact logged);
 * CG_EALREADY on a second call. The responder is invalid after this call. */
CG_EXTERN int cg_respond(cg_responder *r, cg_reply *reply);

/* Late and follow-up card updates (the outbox, docs/outbox.md).
 *
 * On DingTalk the same holds for a template reply's variables (a raw card
 * has no DingTalk form): they are delivered with PUT /v1.0/card/instances.
 *
 * A reply that arrives after the deadline (cg_respond returns CG_ETIMEDOUT)
 * is not lost when the outbox runs: if it carries a raw card (cg_reply_card)
 * it is written to the store and delivered later through the Open API — with
 * the callback's token while it has budget (2 updates within 30 minutes),
 * else by patching the message. Toasts cannot be delivered late.
 *
 * A follow-up updates the card again after the answer — "processing…" now,
 * the result later. Take it before cg_respond (while r is valid); it stays
 * valid after cg_respond until cg_followup_free. Returns NULL when the
 * outbox is not running (no app id/secret or no store), the action has no
 * message id, or out of memory. Caller frees with cg_followup_free. */
typedef struct cg_followup cg_followup;
CG_EXTERN cg_followup *cg_respond_later(cg_responder *r);

/* Enqueues card_reply (takes ownership) as the next state of the
 * follow-up's card: on Lark a cg_reply_card reply; on DingTalk a
 * cg_reply_template reply whose variables are merged into the card's
 * (PUT /v1.0/card/instances, updateCardDataByKey). Several calls before
 * delivery merge into one update (the last one wins). Loop thread only.
 * 0; CG_EINVAL (not a card reply, or the callback has not been answered
 * yet: call cg_respond first); CG_ECONFIG (the app is gone); CG_ENOMEM. */
CG_EXTERN int cg_followup_update(cg_followup *f, cg_reply *card_reply);

/* Releases a follow-up (updates already enqueued are still delivered).
 * Accepts NULL. */
CG_EXTERN void cg_followup_free(cg_followup *f);

/* The action a responder belongs to (borrowed until cg_respond). */
CG_EXTERN const cg_action *cg_responder_action(const cg_responder *r);

/* Milliseconds left before the deadline (0 when passed). */
CG_EXTERN uint64_t cg_responder_remaining_ms(const cg_responder *r);

/* The last error message of a failed configuration call (cg_app_route …),
 * borrowed until the next call on app. "" when none. */
CG_EXTERN const char *cg_app_last_error(const cg_app *app);

/* ---- Embedding: feed a request from your own HTTP server. -------------- */

typedef enum {
  CG_LARK_ENDPOINT_CARD = 1, /* legacy card callback URL */
  CG_LARK_ENDPOINT_EVENT = 2 /* event / schema 2.0 callback URL */
} cg_lark_endpoint;

/* The request as received. Header values may be NULL when absent; they need
 * not be NUL-terminated past their *_len. body is the raw body bytes. */
typedef struct cg_http_request {
  const char *timestamp; size_t timestamp_len; /* X-Lark-Request-Timestamp */
  const char *nonce; size_t nonce_len;         /* X-Lark-Request-Nonce */
  const char *signature; size_t signature_len; /* X-Lark-Signature */
  const char *body; size_t body_len;
} cg_http_request;

/* Called exactly once with the answer to send: status and body (JSON, borrowed
 * for the duration of the call). It may be called before
 * cg_app_handle_lark_http returns (an immediate answer costs no extra loop
 * turn), or later on the loop thread. */
typedef void (*cg_http_done_fn)(int status, const char *body, size_t body_len,
                                void *ud);

/* Verifies, decodes and dispatches one Lark webhook request. req is borrowed
 * for the duration of the call (bytes are copied as needed). Returns 0 when
 * done will be called; a negative code (CG_ENOMEM) when it will not. */
CG_EXTERN int cg_app_handle_lark_http(cg_app *app, cg_lark_endpoint ep,
                                      const cg_http_request *req,
                                      cg_http_done_fn done, void *ud);

#ifdef __cplusplus
}
#endif
#endif /* CARDGATE_APP_H */
