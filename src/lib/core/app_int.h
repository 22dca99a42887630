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

struct cg_responder;
/* Duplicate suppression for schema-2.0 events, then run (app.c). */
int cg__app_dedupe_then_run(cg_app *app, struct cg_responder *r);
/* Records an answer in the store's seen_events on the thread pool. */
void cg__app_store_seen_answer(cg_app *app, const char *event_id, int status,
                               const char *body);

/* Sidecar routes (upstream.c): the app's slot for its upstream set (freed
 * by cg_app_free), and the buffer behind cg_app_last_error. */
struct cg__upstreams;
struct cg__upstreams **cg__app_upstreams(cg_app *app);
#define CG__APP_ERROR_CAP 512u
char *cg__app_error_buf(cg_app *app);

#endif
