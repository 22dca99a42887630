/* The store behind include/cardgate/store.h: a backend vtable, so a
 * PostgreSQL backend can sit beside SQLite, and the per-thread slots every
 * backend needs (its connection and the thread's last error). Notes:
 * docs/store.md. */
#ifndef CG_STORE_INT_H
#define CG_STORE_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "cardgate/store.h"

/* Longest last-error message kept per thread (longer ones are truncated). */
#define CG__STORE_ERRLEN 512
/* Longest value cg_store_kv_put accepts. */
#define CG__STORE_KV_MAX 4096u

/* One per thread that has called into a store. The generic layer (store.c)
 * owns the slot; the backend owns conn (created lazily on the thread's first
 * call, released through ops->conn_free at close). */
typedef struct cg__store_thread {
  pthread_t tid;
  void *conn;
  char err[CG__STORE_ERRLEN];
  struct cg__store_thread *next;
} cg__store_thread;

/* A backend. impl is what open() returned. Every call gets the calling
 * thread's slot t: it uses (or creates) t->conn and reports failures with
 * cg__store_seterr(t, …). Arguments are already checked by store.c (non-NULL
 * ids of sane length, required fields present). Return codes as in store.h. */
typedef struct cg__store_ops {
  const char *name; /* "sqlite" */
  /* target: the URL with its scheme removed (a path, or ":memory:"). Opens,
   * configures and migrates; the opening thread's connection becomes t->conn.
   */
  int (*open)(const char *target, cg__store_thread *t, void **impl);
  void (*conn_free)(void *impl, void *conn);
  void (*close)(void *impl);
  int (*schema_version)(void *impl, cg__store_thread *t, int *version);
  int (*card_get)(void *impl, cg__store_thread *t, const char *message_id,
                  cg_card_record *out);
  int (*card_insert)(void *impl, cg__store_thread *t, const cg_card_record *r,
                     int64_t now_ms);
  int (*card_cas)(void *impl, cg__store_thread *t, const cg_card_record *r,
                  int64_t expected_version, int64_t now_ms);
  /* Appends up to limit (0 = all) records, newest update first, to *out
   * (a malloc'd array grown as needed; *n counts them). The generic layer
   * calls the user's function after the backend has let go of its
   * connection, so the callback may call the store again. */
  int (*cards_list)(void *impl, cg__store_thread *t, size_t limit,
                    cg_card_record **out, size_t *n);
  int (*action_add)(void *impl, cg__store_thread *t, const cg_action_record *a,
                    int64_t now_ms);
  /* Same shape as cards_list; strings of each record are malloc'd (freed by
   * the generic layer with free()). */
  int (*actions_list)(void *impl, cg__store_thread *t, const char *message_id,
                      cg_action_record **out, size_t *n);
  int (*seen_check)(void *impl, cg__store_thread *t, const char *event_id,
                    int64_t now_ms, int64_t expires_at_ms, int *reply_status,
                    char **reply_body);
  int (*seen_purge)(void *impl, cg__store_thread *t, int64_t now_ms);
  int (*seen_answer)(void *impl, cg__store_thread *t, const char *event_id,
                     int status, const char *body);
  /* The outbox (store.h). Arrays are malloc'd like cards_list's. */
  int (*outbox_enqueue)(void *impl, cg__store_thread *t,
                        const cg_outbox_entry *e, int64_t now_ms,
                        int64_t *id_out);
  int (*outbox_claim)(void *impl, cg__store_thread *t, int64_t now_ms,
                      int64_t lease_ms, size_t max, cg_outbox_entry **out,
                      size_t *n);
  /* outcome: CG__OUTBOX_DELIVERED, _RESCHEDULE or _DEAD. */
  int (*outbox_settle)(void *impl, cg__store_thread *t, int outcome,
                       int64_t id, int64_t revision, const char *token_used,
                       int token_uses, int64_t next_at_ms, const char *error,
                       int64_t now_ms);
  int (*outbox_list)(void *impl, cg__store_thread *t, const char *state,
                     size_t limit, cg_outbox_entry **out, size_t *n);
  int (*outbox_get)(void *impl, cg__store_thread *t, int64_t id,
                    cg_outbox_entry *out);
  int (*outbox_retry)(void *impl, cg__store_thread *t, int64_t id,
                      int64_t now_ms);
  int (*outbox_drop)(void *impl, cg__store_thread *t, int64_t id);
  /* Small key-value records (kv table): *value malloc'd; CG_ENOTFOUND. */
  int (*kv_get)(void *impl, cg__store_thread *t, const char *key,
                char **value);
  int (*kv_put)(void *impl, cg__store_thread *t, const char *key,
                const char *value, int64_t now_ms);
  /* op: CG__STORE_TX_BEGIN, _COMMIT or _ROLLBACK for the calling thread. */
  int (*tx)(void *impl, cg__store_thread *t, int op);
} cg__store_ops;

enum { CG__STORE_TX_BEGIN = 1, CG__STORE_TX_COMMIT = 2, CG__STORE_TX_ROLLBACK = 3 };
enum { CG__OUTBOX_DELIVERED = 1, CG__OUTBOX_RESCHEDULE = 2, CG__OUTBOX_DEAD = 3, CG__OUTBOX_WAIT = 4 };

struct cg_store {
  const cg__store_ops *ops;
  void *impl;
  pthread_mutex_t mu; /* guards threads */
  cg__store_thread *threads;
  atomic_uint seen_calls; /* cg_store_seen_check purges every 256th call */
};

/* Formats a message into t->err and returns code (for `return
 * cg__store_seterr(t, CG_ESTORE, "…", …);`). */
int cg__store_seterr(cg__store_thread *t, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

extern const cg__store_ops cg__store_sqlite_ops;

#endif /* CG_STORE_INT_H */
