/* Library-internal view of the app: logging. */
#ifndef CG_APP_INT_H
#define CG_APP_INT_H

#include "cardgate/app.h"

/* Formats and hands a line to the app's log callback (if its level passes).
 * Never pass secrets, signatures or card contents. */
void cg__log(const cg_app *app, cg_log_level level, const char *component,
             const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* For the server's /healthz. */
uv_loop_t *cg__app_loop(const cg_app *app);
cg_store *cg__app_store(const cg_app *app);
uint32_t cg__app_deadline_ms(const cg_app *app);
/* DingTalk card callbacks get 2 s (dingtalk.md §2.7): their deadline is at
 * most this. */
#define CG__DINGTALK_DEADLINE_MS 1700u
/* The deadline of an action: the app's, capped for its platform. */
uint32_t cg__deadline_for(const cg_app *app, const cg_action *a);

struct cg_responder;
/* Duplicate suppression for schema-2.0 events, then run (app.c). */
int cg__app_dedupe_then_run(cg_app *app, struct cg_responder *r);
/* Records an answer in the store's seen_events on the thread pool. */
void cg__app_store_seen_answer(cg_app *app, const char *event_id, int status,
                               const char *body);

/* Long connections (src/lib/transport/). done gets the answer like an HTTP
 * callback's: (status, body) — body NULL when there is nothing to answer
 * (an event cardgate does not handle). */
struct cg__action_rec;
/* A plaintext Lark payload from the long connection: decoded by its shape,
 * no verification (lark.md §3.8). 0 when done will be called; CG_ENOMEM. */
int cg__app_handle_lark_plain(cg_app *app, const char *body, size_t len,
                              cg_http_done_fn done, void *ud);
/* Runs a decoded action (owned; freed on failure) through duplicate
 * suppression (when it has an event id), the routes and the deadline.
 * 0 when done will be called; CG_ENOMEM. */
int cg__app_dispatch(cg_app *app, struct cg__action_rec *a,
                     cg_http_done_fn done, void *ud);
/* The app's Lark app id / secret and DingTalk client id / secret (NULL
 * when not configured); borrowed. */
const char *cg__app_lark_app_id(const cg_app *app);
const char *cg__app_lark_app_secret(const cg_app *app);
const char *cg__app_dingtalk_client_id(const cg_app *app);
const char *cg__app_dingtalk_client_secret(const cg_app *app);
/* The app's DingTalk card API client, store worker and a workflow added
 * under name (NULL when absent). */
struct cg__dt_api;
struct cg__store_worker;
struct cg__dt_api *cg__app_dt_api(const cg_app *app);
struct cg__store_worker *cg__app_worker(const cg_app *app);
const cg_workflow *cg__app_find_workflow(const cg_app *app, const char *name);
/* cg_app_route whose ud the app owns: free_ud(ud) runs in cg_app_free
 * (not when this call fails: the caller still owns ud then). */
int cg__app_route_owned(cg_app *app, const char *match, cg_handler_fn handler,
                        void *ud, void (*free_ud)(void *ud));
/* The app a responder belongs to (NULL once the app is freed). */
cg_app *cg__responder_app(const cg_responder *r);
/* The log callback, for components made beside the app. */
void cg__app_log_cfg(const cg_app *app, cg_log_fn *fn, void **ud,
                     cg_log_level *level);

/* Sidecar routes (upstream.c): the app's slot for its upstream set (freed
 * by cg_app_free), and the buffer behind cg_app_last_error. */
struct cg__upstreams;
struct cg__upstreams **cg__app_upstreams(cg_app *app);
#define CG__APP_ERROR_CAP 512u
char *cg__app_error_buf(cg_app *app);

#endif
