/* The workflow engine, inside the library. Format: docs/workflows.md. */
#ifndef CG_WORKFLOW_INT_H
#define CG_WORKFLOW_INT_H

#include <jansson.h>
#include <stdint.h>

#include "cardgate/action.h"
#include "cardgate/reply.h"
#include "cardgate/store.h"
#include "cardgate/workflow.h"

typedef struct cg__wf_outcome {
  int changed;        /* 1 when a transition fired; state/vars/card below are
                         always filled (unchanged copies when it did not) */
  char *new_state;    /* owned */
  json_t *new_vars;   /* owned object */
  json_t *new_card;   /* owned object: the card to store and answer */
  cg_reply *reply;    /* owned: what to answer (card, toast, keep …) */
  char result[128];   /* history line: "pending -> accepted", "unchanged (accepted)" */
} cg__wf_outcome;

void cg__wf_outcome_clear(cg__wf_outcome *o);

/* Pure step. cur is the stored card, or NULL when the store has never seen
 * it (the workflow then starts from its initial state and initial card, and
 * the click is applied to that). now_ms feeds ${now}. Returns 0 and fills out,
 * or a negative code with err filled. */
int cg__workflow_step(const cg_workflow *wf, const cg_card_record *cur,
                      const cg_action *a, int64_t now_ms, cg__wf_outcome *out,
                      char *err, size_t errlen);

/* Blocking driver for the thread pool: reads the card, steps, writes with
 * compare-and-set (a new card is inserted; on conflict it re-reads and steps
 * again, up to 8 times), appends the action history, and hands back the reply
 * (*reply owned by the caller). 0, or a negative code with err filled; 0
 * with a warning in err when only the history write failed (the click has
 * taken effect). */
int cg__workflow_run(const cg_workflow *wf, cg_store *store,
                     const cg_action *a, int64_t now_ms, cg_reply **reply,
                     char *err, size_t errlen);

/* 1 for a workflow declared "stateless": true — it never reads or writes
 * the store; each click is stepped from the initial state (cur == NULL) and
 * answered at once on the loop thread. */
int cg__workflow_stateless(const cg_workflow *wf);

/* The initial state's name and the initial variables (an object, or NULL),
 * borrowed from wf. For `cardgate send`, which records a card it sends. */
const char *cg__workflow_initial_state(const cg_workflow *wf);
const json_t *cg__workflow_initial_vars(const cg_workflow *wf);

/* The workflow's initial card rendered with its initial variables (for
 * cardgate send and the demo). Owned by the caller. NULL on ENOMEM. */
json_t *cg__workflow_initial_card(const cg_workflow *wf, int64_t now_ms);

#endif
