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

/* ---- The outbox: card updates waiting to be delivered through the Open API
 * (docs/outbox.md). One row per update; at most one *pending* row per
 * (platform, message_id): enqueuing for a message that already has one
 * replaces its card (the last state is what the user must see, and one
 * update fits the callback token's budget better than several). */

/* An outbox entry. Strings are owned by the record: release them with
 * cg_outbox_entry_clear(). Absent strings are NULL. */
typedef struct cg_outbox_entry {
  int64_t id;
  char *platform;     /* "lark" */
  char *message_id;   /* open_message_id of the card to update */
  char *update_token; /* callback token "c-…" for the delayed update, or NULL */
  int token_uses;     /* uses of update_token spent so far (all entries) */
  int64_t token_expires_at_ms; /* wall clock; 0 when no token */
  char *card_json;    /* the card to show (JSON object) */
  char *state;        /* "pending", "delivered", "dead" */
  int attempts;       /* delivery attempts made */
  int64_t next_attempt_at_ms; /* pending: due at (or leased until) */
  char *last_error;   /* short reason of the last failure, or NULL */
  int64_t created_at_ms;
  int64_t updated_at_ms;
  int64_t revision;   /* 1, +1 each time a merge replaced the card */
  char *tenant_key;   /* the action's tenant (store apps), or NULL */
} cg_outbox_entry;

CG_EXTERN void cg_outbox_entry_clear(cg_outbox_entry *e);
/* Clears and frees an array returned by cg_store_outbox_claim. Accepts NULL. */
CG_EXTERN void cg_outbox_entries_free(cg_outbox_entry *arr, size_t n);

/* Enqueues an update of message_id's card, due at now_ms. Reads platform,
 * message_id, card_json (required), update_token and token_expires_at_ms
 * from e (other fields ignored; strings borrowed for the call). A new entry
 * starts with the uses already spent on update_token by earlier entries.
 * When a pending entry for the message exists it is updated instead: its
 * card replaced, its revision bumped, its token replaced by e's when e has
 * one; its schedule is kept. *id_out (may be NULL) receives the entry's id.
 * 0, CG_EINVAL, CG_ESTORE. */
CG_EXTERN int cg_store_outbox_enqueue(cg_store *s, const cg_outbox_entry *e,
                                      int64_t now_ms, int64_t *id_out);

/* Claims up to max pending entries due at now_ms (oldest due first): their
 * next_attempt_at_ms moves to now_ms + lease_ms, so neither this process nor
 * another picks them up again while they are being delivered — and a crash
 * in between only delays them by the lease. *out receives a malloc'd array
 * of *n entries (NULL, 0 when none are due): free it with
 * cg_outbox_entries_free(). 0, CG_EINVAL, CG_ENOMEM, CG_ESTORE. */
CG_EXTERN int cg_store_outbox_claim(cg_store *s, int64_t now_ms,
                                    int64_t lease_ms, size_t max,
                                    cg_outbox_entry **out, size_t *n);

/* The outcome of one delivery attempt of entry id, claimed at revision.
 * token_used: the callback token the attempt sent (NULL for a message
 * patch, or when nothing was sent); token_uses: how many of its uses that
 * spent (0 or 1; the whole budget to retire a token the platform refused).
 * Uses are counted on the entry whatever happened to the card.
 *
 * delivered: state "delivered" — unless the card was replaced (revision
 *   moved on) meanwhile: then the entry stays pending, due now.
 * reschedule: attempts + 1, due at next_at_ms, last_error = error.
 * dead: state "dead", attempts + 1, last_error = error — unless the card was
 *   replaced meanwhile: then the new card gets fresh attempts, due now.
 * error is a short reason (no card contents), copied. 0, CG_ENOTFOUND (no
 * pending entry id: dropped meanwhile), CG_EINVAL, CG_ESTORE. */
CG_EXTERN int cg_store_outbox_delivered(cg_store *s, int64_t id,
                                        int64_t revision,
                                        const char *token_used,
                                        int token_uses, int64_t now_ms);
CG_EXTERN int cg_store_outbox_reschedule(cg_store *s, int64_t id,
                                         int64_t revision,
                                         const char *token_used,
                                         int token_uses, int64_t next_at_ms,
                                         const char *error, int64_t now_ms);
/* Like reschedule, but the wait is not an attempt (the platform said to
 * wait — rate limited — or the token was retired): attempts unchanged. */
CG_EXTERN int cg_store_outbox_wait(cg_store *s, int64_t id, int64_t revision,
                                   const char *token_used, int token_uses,
                                   int64_t next_at_ms, const char *error,
                                   int64_t now_ms);
CG_EXTERN int cg_store_outbox_dead(cg_store *s, int64_t id, int64_t revision,
                                   const char *token_used, int token_uses,
                                   const char *error, int64_t now_ms);

/* Calls fn for each entry in state (NULL = every state), newest first, at
 * most limit (0 = all). The record is borrowed for the call; fn may call
 * the store. Stops early when fn returns non-zero. 0, CG_EINVAL, CG_ESTORE. */
typedef int (*cg_outbox_iter_fn)(const cg_outbox_entry *e, void *ud);
CG_EXTERN int cg_store_outbox_list(cg_store *s, const char *state,
                                   size_t limit, cg_outbox_iter_fn fn,
                                   void *ud);

/* Reads entry id into *out (overwritten; clear it afterwards). 0,
 * CG_ENOTFOUND, CG_ESTORE. */
CG_EXTERN int cg_store_outbox_get(cg_store *s, int64_t id,
                                  cg_outbox_entry *out);

/* Makes a dead or pending entry due at now_ms with fresh attempts. 0,
 * CG_ENOTFOUND, CG_EBUSY (it is being delivered right now: its lease has
 * not ended), CG_ECONFLICT (delivered, or a newer pending update exists for
 * the same message), CG_ESTORE. */
CG_EXTERN int cg_store_outbox_retry(cg_store *s, int64_t id, int64_t now_ms);

/* Deletes entry id whatever its state. 0, CG_ENOTFOUND, CG_ESTORE. */
CG_EXTERN int cg_store_outbox_drop(cg_store *s, int64_t id);

/* ---- Small key-value records (schema 3): e.g. a store app's latest
 * app_ticket, kept across restarts. Values are at most 4096 bytes.
 * get: 0 and *value (caller free()s), CG_ENOTFOUND, CG_EINVAL, CG_ENOMEM,
 * CG_ESTORE. put: inserts or replaces; 0, CG_EINVAL, CG_ETOOBIG,
 * CG_ESTORE. */
CG_EXTERN int cg_store_kv_get(cg_store *s, const char *key, char **value);
CG_EXTERN int cg_store_kv_put(cg_store *s, const char *key, const char *value,
                              int64_t now_ms);

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
