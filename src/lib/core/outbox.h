/* The outbox's delivery engine (library-internal): card updates committed to
 * the store's outbox table are delivered through the Lark Open API client on
 * the app's loop — with the callback's token (delayed update) while it has
 * budget, else by patching the message — with retries, exponential backoff
 * with jitter, rate-limit waits and a dead-letter state. Store calls run as
 * store-worker jobs, never on the loop. Notes: docs/outbox.md. */
#ifndef CG_OUTBOX_H
#define CG_OUTBOX_H

#include <stdint.h>
#include <uv.h>

#include "cardgate/log.h"
#include "cardgate/store.h"
#include "../openapi/dingtalk_api.h"
#include "../openapi/lark_api.h"
#include "store_worker.h"

/* The callback token's budget (lark.md §4.5): two updates within 30 minutes
 * of the callback. A token is given up TOKEN_MARGIN before its deadline, so
 * a request in flight does not arrive after it. */
#define CG__OUTBOX_TOKEN_USES 2
#define CG__OUTBOX_TOKEN_TTL_MS (30 * 60 * 1000)
#define CG__OUTBOX_TOKEN_MARGIN_MS (60 * 1000)

typedef struct cg__outbox cg__outbox;

typedef struct cg__outbox_options {
  cg__store_worker *worker; /* required; borrowed, outlives the outbox jobs */
  cg__lark_api *api;        /* Lark entries; borrowed; NULL = none expected */
  cg__dt_api *dt_api;       /* DingTalk entries; borrowed; NULL = none */
  uint32_t max_attempts;    /* then dead; 0 = 8 */
  uint32_t poll_ms;         /* how often due entries are looked for; 0 = 1000 */
  uint32_t batch;           /* entries claimed per poll; 0 = 32 */
  uint32_t backoff_base_ms; /* first retry after ~this; 0 = 1000 */
  uint32_t backoff_max_ms;  /* cap; 0 = 300000 */
  uint32_t lease_ms;        /* a claimed entry is not claimed again for this
                               long (covers a crash mid-delivery); 0 = 60000 */
  cg_log_fn log;            /* may be NULL */
  void *log_ud;
  cg_log_level log_level;
} cg__outbox_options;

void cg__outbox_options_init(cg__outbox_options *o);

/* Starts polling on loop. NULL + *err (CG_EINVAL, CG_ENOMEM). */
cg__outbox *cg__outbox_new(uv_loop_t *loop, const cg__outbox_options *o,
                           int *err);

/* Writes an update of message_id's card to the store. platform "lark":
 * card_json is a card; "dingtalk": message_id is the outTrackId and
 * card_json a JSON object of template variables, delivered with
 * PUT /v1.0/card/instances merging those keys (dingtalk.md §4.4; no token). (a store-worker job;
 * merged with a pending one) and polls once it is committed. Call only after
 * the callback has been answered: the token may be used from then on.
 * token may be NULL (patch only); token_expires_at_ms: wall clock.
 * tenant_key: the action's tenant (store apps need it to get a tenant
 * token; NULL/"" for none). Strings copied. 0, CG_EINVAL, CG_ENOMEM,
 * CG_EALREADY (closing). */
int cg__outbox_enqueue(cg__outbox *ob, const char *platform,
                       const char *tenant_key, const char *message_id,
                       const char *token, int64_t token_expires_at_ms,
                       const char *card_json);

/* Looks for due entries now (instead of at the next poll). */
void cg__outbox_kick(cg__outbox *ob);

typedef struct cg__outbox_stats {
  uint64_t enqueued, claimed, delivered, retried, dead;
  uint64_t token_updates, patches; /* requests sent each way */
  uint64_t in_flight;
} cg__outbox_stats;
void cg__outbox_get_stats(const cg__outbox *ob, cg__outbox_stats *out);

/* Stops polling. Requests in flight end when the API client is closed
 * (their entries stay leased and are delivered after the lease, by this or
 * another process); store jobs already queued still complete. The memory
 * is freed once nothing refers to it. Call before closing the API client
 * and freeing the store worker. NULL is ignored. */
void cg__outbox_close(cg__outbox *ob);

#endif
