/* In-memory duplicate suppression by event id (loop thread only): the first
 * delivery is handled; a redelivery while it is in flight waits for its
 * answer; a later one gets the same answer replayed. Bounded: oldest entries
 * go first. The store keeps the same facts across restarts and instances. */
#ifndef CG_DEDUPE_H
#define CG_DEDUPE_H

#include <stddef.h>
#include <stdint.h>

#include "cardgate/app.h"

typedef struct cg__dedupe cg__dedupe;

typedef enum {
  CG__DEDUPE_NEW = 0,      /* first sighting: an in-flight entry was added */
  CG__DEDUPE_INFLIGHT = 1, /* seen, not answered yet */
  CG__DEDUPE_ANSWERED = 2  /* seen and answered: *status, *body, *len set (borrowed) */
} cg__dedupe_state;

cg__dedupe *cg__dedupe_new(size_t max_entries);
/* Frees every entry; pending waiters are dropped without a call. */
void cg__dedupe_free(cg__dedupe *d);

/* Looks id up (expiring old entries first). On NEW it records id as in
 * flight until now_ms + ttl_ms. Returns the state, or CG_ENOMEM. */
int cg__dedupe_begin(cg__dedupe *d, const char *id, int64_t now_ms,
                     int64_t ttl_ms, int *status, const char **body,
                     size_t *len);

/* Adds a waiter to an in-flight id: done(ud) is called with the first
 * answer. 0, CG_ENOTFOUND (not in flight), CG_ENOMEM. */
int cg__dedupe_wait(cg__dedupe *d, const char *id, cg_http_done_fn done,
                    void *ud);

/* Records the answer for id (copied) and calls its waiters with it. */
void cg__dedupe_answer(cg__dedupe *d, const char *id, int status,
                       const char *body, size_t len);

/* Number of entries held (for tests). */
size_t cg__dedupe_size(const cg__dedupe *d);

#endif
