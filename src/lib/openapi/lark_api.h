/* Lark / Feishu Open API client (library-internal, never installed).
 *
 * Sends and updates cards for one self-built app on one libuv loop, over the
 * async HTTPS client (src/lib/net/https_client.h). It keeps the app's
 * tenant_access_token (cached, refreshed ahead, one fetch at a time) and
 * turns every answer into a cg__lark_result whose class tells the outbox
 * (later) what to do next: done, retry, wait, or give up. Protocol facts:
 * ../shared/protocols/lark.md §4 and §9; design notes: docs/openapi.md.
 *
 * Use on the loop's thread only. Secrets (app secret, tenant tokens, the
 * callback token of a delayed update) and card contents are never logged. */
#ifndef CG_LARK_API_H
#define CG_LARK_API_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "api_class.h"
#include "cardgate/log.h"

typedef struct cg__lark_api cg__lark_api;

/* Base URLs (lark.md §0.1). */
#define CG__LARK_BASE_FEISHU "https://open.feishu.cn"
#define CG__LARK_BASE_LARK "https://open.larksuite.com"

/* Lark codes this client acts on (lark.md §4.6, §9). */
#define CG__LARK_CODE_RATE_LIMITED 99991400 /* with HTTP 429 or 400 */
#define CG__LARK_CODE_TENANT_TOKEN_INVALID 99991663
#define CG__LARK_CODE_APP_TOKEN_INVALID 99991664
#define CG__LARK_CODE_ACCESS_TOKEN_INVALID 99991671
#define CG__LARK_CODE_MSG_RATE_LIMITED 230020 /* im/v1 message patch */
#define CG__LARK_CODE_BAD_SECRET 10014        /* token endpoint, HTTP 200 */
#define CG__LARK_CODE_APP_TICKET_INVALID 10012 /* store apps: app_access_token */

/* Token lifetime handling (lark.md §4.1, §4.3): a token is used until
 * expire − 180 s (the vendors' SDKs all use this margin); from the moment
 * Lark starts handing out a new one (less than 30 min left) calls keep
 * using the cached token while one background fetch replaces it. */
#define CG__LARK_TOKEN_MARGIN_S 180
#define CG__LARK_TOKEN_RENEW_WINDOW_S 1800

/* Used when a rate-limited answer carries no x-ogw-ratelimit-reset. */
#define CG__LARK_DEFAULT_RETRY_AFTER_MS 1000u


typedef struct cg__lark_result {
  cg__api_class cls;
  /* 0, or the transport/parse error behind the class: a code from
   * https_client.h (CG_ETIMEDOUT, UV_ECONNREFUSED, CG_ETOOBIG, …),
   * CG_EMALFORMED (the body is not a Lark JSON envelope), UV_ECANCELED. */
  int err;
  int http_status;         /* 0 when no HTTP answer arrived */
  int64_t code;            /* Lark's code; 0 when none was parsed */
  int has_code;            /* 1 when the body carried a numeric "code" */
  uint64_t retry_after_ms; /* RATE_LIMITED: how long to wait; else 0 */
  int token_error;         /* 1: fetching the tenant token failed, the call
                              itself was never sent */
  int attempts;            /* HTTP attempts of the call itself (1 or 2) */
  char msg[256];           /* Lark's "msg", else a short reason; cut */
  char logid[128];         /* X-Tt-Logid (else X-Request-Id) of the answer */
  char message_id[128];    /* data.message_id of send/reply, else "" */
  /* data object of a successful answer; borrowed, valid until the callback
   * returns; NULL when absent. May hold card contents: never log it. */
  const json_t *data;
} cg__lark_result;

/* Classifies one answer (pure; the core of the table in docs/openapi.md).
 * err: the HTTPS result (0 = an HTTP answer arrived); status: HTTP status;
 * body/len: the answer; reset: the x-ogw-ratelimit-reset value or NULL.
 * Fills out (data left NULL). When root is not NULL, *root receives the
 * parsed body (caller json_decref()s it) or NULL. Token-invalid codes are
 * classified CG__API_TOKEN_INVALID; the retry is the caller's business. */
void cg__lark_classify(int err, int status, const char *body, size_t len,
                       const char *reset, cg__lark_result *out, json_t **root);

/* Milliseconds on a monotonic clock; tests substitute their own. */
typedef uint64_t (*cg__lark_clock_fn)(void *ud);

/* Self-built (internal) apps have one tenant token; store (marketplace, ISV)
 * apps get an app_access_token with the app_ticket Lark pushes, and one
 * tenant token per tenant key (lark.md §4.2–§4.3; docs/openapi.md). */
typedef enum {
  CG__LARK_APP_SELF_BUILT = 0,
  CG__LARK_APP_STORE = 1
} cg__lark_app_type;

/* At most this many tenants' tokens are cached by a store app (idle ones
 * are dropped to make room). */
#define CG__LARK_MAX_TENANTS 4096u
/* No ticket: at most one app_ticket/resend per this long. */
#define CG__LARK_RESEND_MIN_INTERVAL_MS 10000u

typedef struct cg__lark_api_options {
  /* CG__LARK_BASE_FEISHU (default when NULL), CG__LARK_BASE_LARK or another
   * https:// origin; plain http:// only to a loopback host (127.0.0.0/8,
   * [::1], localhost) for tests and the emulator. Copied. */
  const char *base_url;
  const char *app_id;        /* required; copied */
  const char *app_secret;    /* required; copied, never logged */
  cg__lark_app_type app_type; /* default CG__LARK_APP_SELF_BUILT */
  uint32_t timeout_ms;       /* per HTTP attempt; 0 = 10000 */
  size_t max_response_bytes; /* 0 = CG_LIMIT_BODY_DEFAULT */
  cg_log_fn log;             /* may be NULL */
  void *log_ud;
  cg_log_level log_level;  /* lines below it are dropped */
  cg__lark_clock_fn clock; /* NULL = uv_hrtime()-based */
  void *clock_ud;
} cg__lark_api_options;

void cg__lark_api_options_init(cg__lark_api_options *o);

/* Creates a client on loop (borrowed; outlives the client). Returns NULL
 * and sets *err: CG_EINVAL (no app id/secret), CG_ECONFIG (bad base URL),
 * CG_ENOMEM, CG_EIO (libcurl). Release with cg__lark_api_close(). */
cg__lark_api *cg__lark_api_new(uv_loop_t *loop, const cg__lark_api_options *o,
                               int *err);

/* Result callback: res is borrowed (valid until the callback returns). */
typedef void (*cg__lark_cb)(const cg__lark_result *res, void *ud);

/* Every call below returns 0 and later calls cb exactly once — never before
 * it returns — or returns CG_EINVAL (bad argument), CG_EMALFORMED (the card
 * is not a JSON object), CG_ETOOBIG (card over CG_LIMIT_TEMPLATE_OUTPUT),
 * CG_ENOMEM, or CG_EALREADY (closing) and never calls cb. String arguments
 * are borrowed for the call (copied).
 *
 * tenant_key: whose tenant token the call uses. Ignored by self-built apps
 * (NULL is fine); required by store apps (CG_EINVAL without one). A store
 * app that holds no app_ticket yet asks Lark to resend one
 * (POST /open-apis/auth/v3/app_ticket/resend) and the call ends RETRYABLE
 * with token_error = 1; so does an app_ticket Lark refuses (code 10012). */

/* Sends card_json (a card JSON object, or a template reference
 * {"type":"template",...}) as an interactive message:
 * POST /open-apis/im/v1/messages?receive_id_type=… (lark.md §4.4).
 * receive_id_type: "open_id", "user_id", "union_id", "email" or "chat_id".
 * uuid: optional dedupe key (Lark drops a repeat within 1 h), NULL for none;
 * give one whenever the send may be retried. */
int cg__lark_send_card(cg__lark_api *api, const char *tenant_key,
                       const char *receive_id_type,
                       const char *receive_id, const char *card_json,
                       const char *uuid, cg__lark_cb cb, void *ud);

/* Replies to message_id with card_json:
 * POST /open-apis/im/v1/messages/:message_id/reply. */
int cg__lark_reply_card(cg__lark_api *api, const char *tenant_key,
                       const char *message_id,
                        const char *card_json, int reply_in_thread,
                        const char *uuid, cg__lark_cb cb, void *ud);

/* Replaces the card of a sent message (update_multi cards):
 * PATCH /open-apis/im/v1/messages/:message_id, {"content":"<card>"}. */
int cg__lark_patch_card(cg__lark_api *api, const char *tenant_key,
                       const char *message_id,
                        const char *card_json, cg__lark_cb cb, void *ud);

/* Delayed update with a callback's token ("c-…", valid 30 min, 2 uses):
 * POST /open-apis/interactive/v1/card/update, {"token":…,"card":{…}}
 * (lark.md §4.5). Call only after the callback was answered. */
int cg__lark_delay_update(cg__lark_api *api, const char *tenant_key,
                       const char *callback_token,
                          const char *card_json, cg__lark_cb cb, void *ud);

/* Any other Open API call with the tenant token: method "GET", "POST",
 * "PATCH", "PUT" or "DELETE"; path_query starts with "/open-apis/";
 * body: JSON text or NULL. Same result handling as the calls above. */
int cg__lark_call(cg__lark_api *api, const char *tenant_key,
                       const char *method, const char *path_query,
                  const char *body, cg__lark_cb cb, void *ud);

/* Drops the cached tenant token(s) (the next call fetches one); for a store
 * app also the app_access_token. */
void cg__lark_api_evict_token(cg__lark_api *api);

/* Store apps: the latest app_ticket (from the app_ticket event Lark pushes
 * every hour, or from the store after a restart). Copied, never logged.
 * A changed ticket drops the cached app_access_token. Calls waiting on a
 * resend are served by it. 0, CG_EINVAL (NULL/empty/too long, or not a
 * store app), CG_ENOMEM, CG_EALREADY (closing). */
int cg__lark_api_set_app_ticket(cg__lark_api *api, const char *app_ticket);
/* 1 when a store app holds an app_ticket. */
int cg__lark_api_has_app_ticket(const cg__lark_api *api);
/* The configured app type and app id (borrowed). */
cg__lark_app_type cg__lark_api_app_type(const cg__lark_api *api);
const char *cg__lark_api_app_id(const cg__lark_api *api);

/* Counters for tests and metrics. */
typedef struct cg__lark_api_stats {
  uint64_t token_fetches;  /* token requests sent */
  uint64_t token_failures; /* ... that did not yield a token */
  uint64_t calls;          /* HTTP attempts of API calls */
  uint64_t token_retries;  /* calls retried after a token-invalid answer */
  int token_fetching;      /* 1 while a token request is in flight */
  int token_cached;        /* 1 while a token is cached (fresh or not) */
  /* Store apps (token_fetches/token_cached count tenant tokens). */
  uint64_t app_token_fetches; /* app_access_token requests sent */
  uint64_t ticket_resends;    /* app_ticket/resend requests sent */
  size_t tenants;             /* tenant entries cached */
} cg__lark_api_stats;
void cg__lark_api_get_stats(const cg__lark_api *api, cg__lark_api_stats *out);

/* Cancels everything in flight (callbacks get CG__API_CANCELLED with err
 * UV_ECANCELED, on a later loop turn), frees the client after its handles
 * close, then calls close_cb (may be NULL). Safe inside a result callback.
 * NULL is ignored; api must not be used afterwards. */
void cg__lark_api_close(cg__lark_api *api, void (*close_cb)(void *ud),
                        void *ud);

#endif /* CG_LARK_API_H */
