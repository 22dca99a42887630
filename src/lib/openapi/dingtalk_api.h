/* DingTalk Open API client (library-internal, never installed).
 *
 * Creates, delivers and updates interactive cards for one org-internal app
 * on one libuv loop, over the async HTTPS client
 * (src/lib/net/https_client.h). It keeps the app's access token (cached
 * until expireIn − 300 s, one fetch at a time) and turns every answer into a
 * cg__dt_api_result whose class tells the outbox what to do next: done,
 * retry, wait, or give up. The shape mirrors lark_api.h. Protocol facts:
 * ../shared/protocols/dingtalk.md §4 (§10 overrides it).
 *
 * Use on the loop's thread only. The app secret, access tokens and card
 * contents are never logged. */
#ifndef CG_DINGTALK_API_H
#define CG_DINGTALK_API_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "api_class.h"
#include "cardgate/log.h"

typedef struct cg__dt_api cg__dt_api;

/* dingtalk.md §1.1 / §4.1. */
#define CG__DT_BASE "https://api.dingtalk.com"

/* Error codes this client acts on (dingtalk.md §4.1, §10.1). */
#define CG__DT_CODE_INVALID_AUTH "InvalidAuthentication"
#define CG__DT_CODE_QPS_PREFIX "Forbidden.AccessDenied.QpsLimit"
#define CG__DT_CODE_BUSY "system.busy"

/* §4.2: tokens live 7200 s; used until expireIn − 300 s (Python SDK). */
#define CG__DT_TOKEN_MARGIN_S 300
/* §4.1: QpsLimit* windows are 1 s. Used when no Retry-After came. */
#define CG__DT_DEFAULT_RETRY_AFTER_MS 1000u


typedef struct cg__dt_api_result {
  cg__api_class cls;
  /* 0, or the transport/parse error behind the class: a code from
   * https_client.h (CG_ETIMEDOUT, UV_ECONNREFUSED, CG_ETOOBIG, …),
   * CG_EMALFORMED (the body is not a DingTalk JSON answer), UV_ECANCELED. */
  int err;
  int http_status;         /* 0 when no HTTP answer arrived */
  char code[128];          /* the error body's "code" ("" when none) */
  uint64_t retry_after_ms; /* RATE_LIMITED: how long to wait; else 0 */
  int token_error;         /* 1: fetching the access token failed, the call
                              itself was never sent */
  int attempts;            /* HTTP attempts of the call itself (1 or 2) */
  char msg[256];           /* "message" (or a failed space's errorMsg),
                              else a short reason; cut */
  char request_id[128];    /* the body's requestid, else X-Request-Id */
  char out_track_id[128];  /* createAndDeliver: result.outTrackId, else "" */
  /* The answer's "result" (object, array, string or boolean); borrowed,
   * valid until the callback returns; NULL when absent. May hold card
   * contents: never log it. */
  const json_t *result;
} cg__dt_api_result;

/* Classifies one answer (pure). err: the HTTPS result (0 = an HTTP answer
 * arrived); status: HTTP status; body/len: the answer; retry_after: the
 * Retry-After header (seconds) or NULL. Fills out (result left NULL). When
 * root is not NULL, *root receives the parsed body (caller json_decref()s
 * it) or NULL. InvalidAuthentication (HTTP 400, §10.1) and any 401 are
 * CG__API_TOKEN_INVALID; the retry is the caller's business. A 2xx whose
 * body says "success":false is PERMANENT. Per-space delivery results are
 * checked by cg__dt_api_create_and_deliver, not here. */
void cg__dt_api_classify(int err, int status, const char *body, size_t len,
                         const char *retry_after, cg__dt_api_result *out,
                         json_t **root);

/* Milliseconds on a monotonic clock; tests substitute their own. */
typedef uint64_t (*cg__dt_clock_fn)(void *ud);

typedef struct cg__dt_api_options {
  /* CG__DT_BASE (default when NULL) or another https:// origin; plain
   * http:// only to a loopback host (127.0.0.0/8, [::1], localhost) for
   * tests and the emulator. Copied. */
  const char *base_url;
  const char *app_key;    /* required (Client ID); copied */
  const char *app_secret; /* required (Client Secret); copied, never logged */
  const char *robot_code; /* robotCode of deliveries; NULL = app_key */
  uint32_t timeout_ms;    /* per HTTP attempt; 0 = 10000 */
  size_t max_response_bytes; /* 0 = CG_LIMIT_BODY_DEFAULT */
  cg_log_fn log;             /* may be NULL */
  void *log_ud;
  cg_log_level log_level; /* lines below it are dropped */
  cg__dt_clock_fn clock;  /* NULL = uv_hrtime()-based */
  void *clock_ud;
} cg__dt_api_options;

void cg__dt_api_options_init(cg__dt_api_options *o);

/* Creates a client on loop (borrowed; outlives the client). Returns NULL
 * and sets *err: CG_EINVAL (no app key/secret), CG_ECONFIG (bad base URL),
 * CG_ENOMEM, CG_EIO (libcurl). Release with cg__dt_api_close(). */
cg__dt_api *cg__dt_api_new(uv_loop_t *loop, const cg__dt_api_options *o,
                           int *err);

/* Result callback: res is borrowed (valid until the callback returns). */
typedef void (*cg__dt_api_cb)(const cg__dt_api_result *res, void *ud);

/* What to create and where to deliver it (dingtalk.md §4.3). Every string
 * is borrowed for the call (copied). */
typedef struct cg__dt_card_spec {
  const char *card_template_id; /* required: "<uuid>.schema" */
  const char *out_track_id;     /* required: unique per card, ≤ 256 bytes */
  /* JSON object of template variables, or NULL for {}: converted to
   * cardParamMap strings (§4.7, cg__dt_param_map). */
  const char *card_param_map_json;
  int group;              /* 1: IM_GROUP (space_id = openConversationId);
                             0: IM_ROBOT 1:1 (space_id = userId) */
  const char *space_id;   /* required */
  const char *robot_code; /* NULL = the client's robot code */
} cg__dt_card_spec;

/* Calls to one API (path) are kept to 20 per second (dingtalk.md §4.1:
 * the per-app, per-API limit): the 21st waits for the next one-second
 * window instead of being refused by DingTalk.
 *
 * Every call below returns 0 and later calls cb exactly once — never before
 * it returns — or returns CG_EINVAL (bad argument), CG_EMALFORMED (the
 * parameter map is not a JSON object), CG_ETOOBIG (it is over
 * CG_LIMIT_TEMPLATE_OUTPUT), CG_ENOMEM, or CG_EALREADY (closing) and never
 * calls cb. */

/* POST /v1.0/card/instances/createAndDeliver with callbackType "STREAM",
 * userIdType 1 and the space and deliver models of the space type. A 200
 * with success:false or any deliverResults[i].success false is PERMANENT
 * (msg = that space's errorMsg). */
int cg__dt_api_create_and_deliver(cg__dt_api *api, const cg__dt_card_spec *spec,
                                  cg__dt_api_cb cb, void *ud);

/* PUT /v1.0/card/instances {outTrackId, cardData{cardParamMap},
 * cardUpdateOptions{updateCardDataByKey}} (§4.4). card_param_map_json: a
 * JSON object of variables (converted like above). update_by_key: 1 merges
 * the given keys, 0 replaces the whole map. */
int cg__dt_api_update_card(cg__dt_api *api, const char *out_track_id,
                           const char *card_param_map_json, int update_by_key,
                           cg__dt_api_cb cb, void *ud);

/* Any other call with the access token: method "GET", "POST", "PUT" or
 * "DELETE"; path_query starts with "/v1.0/"; body: JSON text or NULL. */
int cg__dt_api_call(cg__dt_api *api, const char *method, const char *path_query,
                    const char *body, cg__dt_api_cb cb, void *ud);

/* Drops the cached access token (the next call fetches one). */
void cg__dt_api_evict_token(cg__dt_api *api);

/* Counters for tests and metrics. */
typedef struct cg__dt_api_stats {
  uint64_t token_fetches;  /* token requests sent */
  uint64_t token_failures; /* ... that did not yield a token */
  uint64_t calls;          /* HTTP attempts of API calls */
  uint64_t token_retries;  /* calls retried after a token-invalid answer */
  uint64_t throttled;      /* calls held for the next second (20 calls/s
                              per API, dingtalk.md §4.1) */
  int token_fetching;      /* 1 while a token request is in flight */
  int token_cached;        /* 1 while a token is cached (fresh or not) */
} cg__dt_api_stats;
void cg__dt_api_get_stats(const cg__dt_api *api, cg__dt_api_stats *out);

/* Cancels everything in flight (callbacks get CG__API_CANCELLED with err
 * UV_ECANCELED, on a later loop turn), frees the client after its handles
 * close, then calls close_cb (may be NULL). Safe inside a result callback.
 * NULL is ignored; api must not be used afterwards. */
void cg__dt_api_close(cg__dt_api *api, void (*close_cb)(void *ud), void *ud);

#endif /* CG_DINGTALK_API_H */
