/* Sidecar routes: a handler that is the user's own HTTP service
 * (cg_app_route_upstream in include/cardgate/app.h). The contract — what is
 * POSTed, what may come back — is docs/sidecar.md, with a JSON Schema in
 * docs/sidecar.schema.json. Library-internal. */
#ifndef CG_UPSTREAM_H
#define CG_UPSTREAM_H

#include <stddef.h>

#include "cardgate/action.h"
#include "cardgate/reply.h"

/* An upstream answer is at most this many bytes (counted after content
 * decoding); a larger one is a broken answer (fallback toast). */
#define CG__UPSTREAM_MAX_RESPONSE (1024u * 1024u)

/* Everything an app's upstream routes share: one HTTP client (created with
 * the first route) and the routes' own data. Owned by the app. */
typedef struct cg__upstreams cg__upstreams;

/* Called by cg_app_free after its responders are detached: closes the HTTP
 * client (requests in flight end with UV_ECANCELED on a later loop turn and
 * answer their detached responders) and frees the routes once it has
 * closed. Accepts NULL. */
void cg__upstreams_free(cg__upstreams *u);

/* The request body for action a: compact JSON, malloc'd (caller frees).
 * deadline_ms is the wall-clock time (ms since the epoch) by which cardgate
 * answers. NULL when out of memory. Pure. */
char *cg__upstream_request_json(const cg_action *a, int64_t deadline_ms);

/* Checks an upstream answer body against the contract and builds the reply.
 * Returns 0 with *out set (caller owns), or CG_EMALFORMED with why filled
 * (what was wrong; never the answer's contents), or CG_ENOMEM. Pure. */
int cg__upstream_parse_answer(const char *body, size_t len, cg_reply **out,
                              char *why, size_t why_cap);

#endif
