/* cardgate — the store: cards, their state and version, the action history,
 * and the event ids already seen.
 *
 * Calls block (disk I/O): never call them on a loop thread that serves
 * requests; the app runs them on libuv's thread pool. A cg_store may be used
 * from several threads at once.
 */
#ifndef CARDGATE_STORE_H
#define CARDGATE_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cg_store cg_store;

/* Opens (creating and migrating as needed) the store at url:
 * "sqlite:PATH", or a plain PATH (SQLite). ":memory:" is a private in-memory
 * database. Returns NULL and sets *err (CG_ESTORE, CG_EINVAL, CG_ENOMEM,
 * CG_EUNSUPPORTED for "postgres://…": that backend is not built yet);
 * when errbuf is not NULL a message saying what was wrong is written there.
 * Caller frees with cg_store_close(). */
CG_EXTERN cg_store *cg_store_open(const char *url, char *errbuf, size_t errlen,
                                  int *err);

/* Closes the store. Accepts NULL. */
CG_EXTERN void cg_store_close(cg_store *s);

/* The schema version the store is at (number of migrations applied). */
CG_EXTERN int cg_store_schema_version(cg_store *s);

/* A stored card. Strings are owned by the record: release them with
 * cg_card_record_clear(). Absent strings are NULL. */
typedef struct cg_card_record {
  char *message_id; /* key: open_message_id / outTrackId */
  char *platform;   /* "lark", "dingtalk" */
  char *workflow;   /* workflow name, or NULL */
  char *state;      /* workflow state, or NULL */
  char *card_json;  /* the card as last sent/answered */
  char *vars_json;  /* workflow variables (JSON object), or NULL */
  int64_t version;  /* starts at 1; +1 on every successful update */
  int64_t created_at_ms;
  int64_t updated_at_ms;
} cg_card_record;

CG_EXTERN void cg_card_record_clear(cg_card_record *r);

/* Reads a card into *out (overwritten; clear it afterwards). 0, CG_ENOTFOUND,
 * CG_ESTORE. */
CG_EXTERN int cg_store_card_get(cg_store *s, const char *message_id,
                                cg_card_record *out);

/* Inserts a new card with version 1 (rec->version is ignored; created_at_ms
 * and updated_at_ms are used when > 0, else the store's clock). 0,
 * CG_ECONFLICT when a card with that id exists, CG_EINVAL, CG_ESTORE. */
CG_EXTERN int cg_store_card_insert(cg_store *s, const cg_card_record *rec);

/* Compare-and-set: writes workflow/state/card/vars of rec for the card
 * rec->message_id only if its stored version equals expected_version, and
 * bumps the version and stamps updated_at_ms with the store's clock. Exactly one of several concurrent writers with the same
 * expected version wins. 0, CG_ECONFLICT (version moved on or card missing),
 * CG_ESTORE. */
CG_EXTERN int cg_store_card_cas(cg_store *s, const cg_card_record *rec,
                                int64_t expected_version);

/* Calls fn for each card, newest update first, at most limit (0 = all).
 * The record is borrowed for the call. Stops early when fn returns non-zero.
 * 0 or CG_ESTORE. */
typedef int (*cg_card_iter_fn)(const cg_card_record *r, void *ud);
CG_EXTERN int cg_store_cards_list(cg_store *s, size_t limit, cg_card_iter_fn fn,
                                  void *ud);

/* One entry of the action history. */
typedef struct cg_action_record {
  const char *message_id;
  const char *platform;
  const char *operator_id; /* open_id / userId */
  const char *kind;        /* "card_action" … */
  const char *value_json;
  const char *result;      /* e.g. "accepted", "rejected", "unchanged", "error: …" */
  int64_t at_ms;
} cg_action_record;

/* Appends to the history. Strings borrowed for the call. 0 or CG_ESTORE. */
CG_EXTERN int cg_store_action_add(cg_store *s, const cg_action_record *a);

/* Calls fn for each history entry of message_id, oldest first. */
typedef int (*cg_action_iter_fn)(const cg_action_record *a, void *ud);
CG_EXTERN int cg_store_actions_list(cg_store *s, const char *message_id,
                                    cg_action_iter_fn fn, void *ud);

/* Duplicate suppression. Records event_id as seen until now_ms + ttl_ms.
 * 0 when it was new; CG_EDUPLICATE when it was seen before and has not
 * expired (then, if reply_status/reply_body are not NULL and an answer was
 * recorded, they receive it: *reply_body is malloc'd, caller frees; status 0
 * and NULL body when the first delivery has not been answered yet).
 * Expired entries are purged as a side effect. */
CG_EXTERN int cg_store_seen_check(cg_store *s, const char *event_id,
                                  int64_t now_ms, int64_t ttl_ms,
                                  int *reply_status, char **reply_body);

/* Records the answer given to event_id, so a redelivery replays it.
 * 0, CG_ENOTFOUND (event_id was never checked in), CG_ESTORE. */
CG_EXTERN int cg_store_seen_answer(cg_store *s, const char *event_id,
                                   int status, const char *body);

/* Transactions: groups this thread's following calls on s into one
 * transaction, until cg_store_commit() or cg_store_rollback(). Nothing is
 * visible to others (or durable) before the commit; one commit for many
 * calls is far cheaper than one per call (the app batches clicks this way).
 * Takes the write lock at once (waiting up to the busy timeout). Not
 * nestable. 0, CG_EALREADY (one is open on this thread), CG_EINVAL (commit
 * or rollback with none open), CG_ESTORE. A failed commit rolls back. */
CG_EXTERN int cg_store_begin(cg_store *s);
CG_EXTERN int cg_store_commit(cg_store *s);
CG_EXTERN int cg_store_rollback(cg_store *s);

/* Message of the last failure on this thread's use of s ("" after a success:
 * every call clears it),
 * borrowed until the next call on s from this thread. */
CG_EXTERN const char *cg_store_last_error(cg_store *s);

#ifdef __cplusplus
}
#endif
#endif /* CARDGATE_STORE_H */
