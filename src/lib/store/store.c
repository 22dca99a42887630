/* The store's public face: picks the backend from the URL, checks arguments,
 * keeps one slot per calling thread (its connection and its last error) and
 * calls the backend through cg__store_ops. Notes: docs/store.md. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "common/limits.h"
#include "lib/store/store_int.h"

/* cg_store_seen_check purges expired ids on every SEEN_PURGE_EVERY-th call:
 * often enough that the table stays small, rarely enough that the DELETE
 * costs nothing on the hot path. */
#define SEEN_PURGE_EVERY 256u

int cg__store_seterr(cg__store_thread *t, int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(t->err, sizeof t->err, fmt, ap);
  va_end(ap);
  if (n < 0) t->err[0] = '\0';
  return code;
}

/* The calling thread's slot, created on first use. NULL when out of memory. */
static cg__store_thread *thread_slot(cg_store *s, int create) {
  pthread_t me = pthread_self();
  cg__store_thread *t;
  pthread_mutex_lock(&s->mu);
  for (t = s->threads; t; t = t->next)
    if (pthread_equal(t->tid, me)) break;
  if (!t && create) {
    t = calloc(1, sizeof *t);
    if (t) {
      t->tid = me;
      t->next = s->threads;
      s->threads = t;
    }
  }
  pthread_mutex_unlock(&s->mu);
  return t;
}

/* Starts a call: the thread's slot with its error cleared. */
static cg__store_thread *begin(cg_store *s) {
  cg__store_thread *t = thread_slot(s, 1);
  if (t) t->err[0] = '\0';
  return t;
}

static int check_id(cg__store_thread *t, const char *what, const char *id) {
  if (cg_str_empty(id))
    return cg__store_seterr(t, CG_EINVAL, "%s is empty", what);
  if (strlen(id) > CG_LIMIT_ID)
    return cg__store_seterr(t, CG_EINVAL, "%s is longer than %u bytes", what,
                            CG_LIMIT_ID);
  return 0;
}

static void fail(char *errbuf, size_t errlen, int *err, int code,
                 const char *msg) {
  if (err) *err = code;
  if (errbuf && errlen) cg_strlcpy(errbuf, msg, errlen);
}

static int has_prefix(const char *s, const char *p) {
  return strncmp(s, p, strlen(p)) == 0;
}

static void store_free(cg_store *s) {
  cg__store_thread *t = s->threads;
  while (t) {
    cg__store_thread *next = t->next;
    if (t->conn && s->impl) s->ops->conn_free(s->impl, t->conn);
    free(t);
    t = next;
  }
  if (s->impl) s->ops->close(s->impl);
  pthread_mutex_destroy(&s->mu);
  free(s);
}

cg_store *cg_store_open(const char *url, char *errbuf, size_t errlen,
                        int *err) {
  if (errbuf && errlen) errbuf[0] = '\0';
  if (cg_str_empty(url)) {
    fail(errbuf, errlen, err, CG_EINVAL, "store URL is empty");
    return NULL;
  }
  const char *target = url;
  if (has_prefix(url, "postgres://") || has_prefix(url, "postgresql://")) {
    fail(errbuf, errlen, err, CG_EUNSUPPORTED,
         "PostgreSQL backend not built yet");
    return NULL;
  }
  if (has_prefix(url, "sqlite://"))
    target = url + strlen("sqlite://");
  else if (has_prefix(url, "sqlite:"))
    target = url + strlen("sqlite:");
  else if (strstr(url, "://")) {
    char msg[CG__STORE_ERRLEN];
    cg_fmt(msg, sizeof msg,
           "unknown store URL scheme in \"%.64s\" (use sqlite:PATH, a path or "
           ":memory:)",
           url);
    fail(errbuf, errlen, err, CG_EINVAL, msg);
    return NULL;
  }
  if (target[0] == '\0') {
    fail(errbuf, errlen, err, CG_EINVAL, "store URL names no database path");
    return NULL;
  }

  cg_store *s = calloc(1, sizeof *s);
  if (!s) {
    fail(errbuf, errlen, err, CG_ENOMEM, "out of memory");
    return NULL;
  }
  s->ops = &cg__store_sqlite_ops;
  pthread_mutex_init(&s->mu, NULL);
  atomic_init(&s->seen_calls, 0u);
  cg__store_thread *t = thread_slot(s, 1);
  if (!t) {
    store_free(s);
    fail(errbuf, errlen, err, CG_ENOMEM, "out of memory");
    return NULL;
  }
  int rc = s->ops->open(target, t, &s->impl);
  if (rc != 0) {
    fail(errbuf, errlen, err, rc, t->err[0] ? t->err : cg_strerror(rc));
    store_free(s);
    return NULL;
  }
  if (err) *err = 0;
  return s;
}

void cg_store_close(cg_store *s) {
  if (s) store_free(s);
}

int cg_store_schema_version(cg_store *s) {
  if (!s) return CG_EINVAL;
  cg__store_thread *t = begin(s);
  if (!t) return CG_ENOMEM;
  int v = 0;
  int rc = s->ops->schema_version(s->impl, t, &v);
  return rc ? rc : v;
}

void cg_card_record_clear(cg_card_record *r) {
  if (!r) return;
  free(r->message_id);
  free(r->platform);
  free(r->workflow);
  free(r->state);
  free(r->card_json);
  free(r->vars_json);
  memset(r, 0, sizeof *r);
}

int cg_store_card_get(cg_store *s, const char *message_id,
                      cg_card_record *out) {
  if (!s || !out) return CG_EINVAL;
  memset(out, 0, sizeof *out);
  cg__store_thread *t = begin(s);
  if (!t) return CG_ENOMEM;
  int rc = check_id(t, "message_id", message_id);
  if (rc) return rc;
  return s->ops->card_get(s->impl, t, message_id, out);
}

static int check_card(cg__store_thread *t, const cg_card_record *rec) {
  int rc = check_id(t, "message_id", rec->message_id);
  if (rc) return rc;
  if (cg_str_empty(rec->card_json))
    return cg__store_seterr(t, CG_EINVAL, "card_json is empty");
  return 0;
}

int cg_store_card_insert(cg_store *s, const cg_card_record *rec) {
  if (!s || !rec) return CG_EINVAL;
  cg__store_thread *t = begin(s);
  if (!t) return CG_ENOMEM;
  int rc = check_card(t, rec);
  if (rc) return rc;
  if (cg_str_empty(rec->platform))
    return cg__store_seterr(t, CG_EINVAL, "platform is empty");
  return s->ops->card_insert(s->impl, t, rec, cg_now_ms());
}

int cg_store_card_cas(cg_store *s, const cg_card_record *rec,
                      int64_t expected_version) {
  if (!s || !rec) return CG_EINVAL;
  cg__store_thread *t = begin(s);
  if (!t) return CG_ENOMEM;
  int rc = check_card(t, rec);
  if (rc) return rc;
  return s->ops->card_cas(s->impl, t, rec, expected_version, cg_now_ms());
}

int cg_store_cards_list(cg_store *s, size_t limit, cg_card_iter_fn fn,
                        void *ud) {
  if (!s || !fn) return CG_EINVAL;
  cg__store_thread *t = begin(s);
  if (!t) return CG_ENOMEM;
  cg_card_record *recs = NULL;
  size_t n = 0;
  int rc = s->ops->cards_list(s->impl, t, limit, &recs, &n);
  /* The user's function runs with no connection held, so it may call the
   * store itself (cards list → card get …). */
  for (size_t i = 0; i < n; i++) {
    if (rc == 0 && fn(&recs[i], ud) != 0) rc = 1;
    cg_card_record_clear(&recs[i]);
  }
  free(recs);
  return rc == 1 ? 0 : rc;
}

int cg_store_action_add(cg_store *s, const cg_action_record *a) {
  if (!s || !a) return CG_EINVAL;
  cg__store_thread *t = begin(s);
  if (!t) return CG_ENOMEM;
  int rc = check_id(t, "message_id", a->message_id);
  if (rc) return rc;
  return s->ops->action_add(s->impl, t, a, cg_now_ms());
}

static void action_record_free(cg_action_record *a) {
  free((char *)a->message_id);
  free((char *)a->platform);
  free((char *)a->operator_id);
  free((char *)a->kind);
  free((char *)a->value_json);
  free((char *)a->result);
}

int cg_store_actions_list(cg_store *s, const char *message_id,
                          cg_action_iter_fn fn, void *ud) {
  if (!s || !fn) return CG_EINVAL;
  cg__store_thread *t = begin(s);
  if (!t) return CG_ENOMEM;
  int rc = check_id(t, "message_id", message_id);
  if (rc) return rc;
  cg_action_record *recs = NULL;
  size_t n = 0;
  rc = s->ops->actions_list(s->impl, t, message_id, &recs, &n);
  for (size_t i = 0; i < n; i++) {
    if (rc == 0 && fn(&recs[i], ud) != 0) rc = 1;
    action_record_free(&recs[i]);
  }
  free(recs);
  return rc == 1 ? 0 : rc;
}

int cg_store_seen_check(cg_store *s, const char *event_id, int64_t now_ms,
                        int64_t ttl_ms, int *reply_status, char **reply_body) {
  if (reply_status) *reply_status = 0;
  if (reply_body) *reply_body = NULL;
  if (!s) return CG_EINVAL;
  cg__store_thread *t = begin(s);
  if (!t) return CG_ENOMEM;
  int rc = check_id(t, "event_id", event_id);
  if (rc) return rc;
  if (ttl_ms < 0 || now_ms < 0 || now_ms > INT64_MAX - ttl_ms)
    return cg__store_seterr(t, CG_EINVAL, "bad time: now %lld, ttl %lld ms",
                            (long long)now_ms, (long long)ttl_ms);
  rc = s->ops->seen_check(s->impl, t, event_id, now_ms, now_ms + ttl_ms,
                          reply_status, reply_body);
  if (rc != 0 && rc != CG_EDUPLICATE) return rc;
  unsigned calls = atomic_fetch_add(&s->seen_calls, 1u) + 1u;
  if (calls % SEEN_PURGE_EVERY == 0) {
    /* Best effort: a failed purge (say, the database is busy) only delays
     * it to the next round; the check itself has succeeded. */
    if (s->ops->seen_purge(s->impl, t, now_ms) != 0) t->err[0] = '\0';
  }
  return rc;
}

int cg_store_seen_answer(cg_store *s, const char *event_id, int status,
                         const char *body) {
  if (!s) return CG_EINVAL;
  cg__store_thread *t = begin(s);
  if (!t) return CG_ENOMEM;
  int rc = check_id(t, "event_id", event_id);
  if (rc) return rc;
  return s->ops->seen_answer(s->impl, t, event_id, status, body);
}

const char *cg_store_last_error(cg_store *s) {
  if (!s) return "";
  cg__store_thread *t = thread_slot(s, 0);
  return t ? t->err : "";
}

static int tx(cg_store *s, int op) {
  if (!s) return CG_EINVAL;
  cg__store_thread *t = begin(s);
  if (!t) return CG_ENOMEM;
  return s->ops->tx(s->impl, t, op);
}

int cg_store_begin(cg_store *s) { return tx(s, CG__STORE_TX_BEGIN); }
int cg_store_commit(cg_store *s) { return tx(s, CG__STORE_TX_COMMIT); }
int cg_store_rollback(cg_store *s) { return tx(s, CG__STORE_TX_ROLLBACK); }

/* ---- the outbox -------------------------------------------------------- */

void cg_outbox_entry_clear(cg_outbox_entry *e) {
  if (!e) return;
  free(e->platform);
  free(e->message_id);
  free(e->update_token);
  free(e->card_json);
  free(e->state);
  free(e->last_error);
  free(e->tenant_key);
  memset(e, 0, sizeof *e);
}

void cg_outbox_entries_free(cg_outbox_entry *arr, size_t n) {
  if (!arr) return;
  for (size_t i = 0; i < n; i++) cg_outbox_entry_clear(&arr[i]);
  free(arr);
}

int cg_store_outbox_enqueue(cg_store *s, const cg_outbox_entry *e,
                            int64_t now_ms, int64_t *id_out) {
  if (id_out) *id_out = 0;
  if (!s || !e) return CG_EINVAL;
  cg__store_thread *t = begin(s);
  if (!t) return CG_ENOMEM;
  int rc = check_id(t, "message_id", e->message_id);
  if (rc) return rc;
  if (cg_str_empty(e->platform))
    return cg__store_seterr(t, CG_EINVAL, "platform is empty");
  if (cg_str_empty(e->card_json))
    return cg__store_seterr(t, CG_EINVAL, "card_json is empty");
  if (e->update_token && (rc = check_id(t, "update_token", e->update_token)))
    return rc;
  if (e->tenant_key && (rc = check_id(t, "tenant_key", e->tenant_key)))
    return rc;
  int64_t id = 0;
  rc = s->ops->outbox_enqueue(s->impl, t, e, now_ms, &id);
  if (rc == 0 && id_out) *id_out = id;
  return rc;
}

int cg_store_outbox_claim(cg_store *s, int64_t now_ms, int64_t lease_ms,
                          size_t max, cg_outbox_entry **out, size_t *n) {
  if (out) *out = NULL;
  if (n) *n = 0;
  if (!s || !out || !n || lease_ms < 0) return CG_EINVAL;
  cg__store_thread *t = begin(s);
  if (!t) return CG_ENOMEM;
  if (max == 0) return 0;
  return s->ops->outbox_claim(s->impl, t, now_ms, lease_ms, max, out, n);
}

static int settle(cg_store *s, int outcome, int64_t id, int64_t revision,
                  const char *token_used, int token_uses, int64_t next_at_ms,
                  const char *error, int64_t now_ms) {
  if (!s || token_uses < 0) return CG_EINVAL;
  cg__store_thread *t = begin(s);
  if (!t) return CG_ENOMEM;
  return s->ops->outbox_settle(s->impl, t, outcome, id, revision, token_used,
                               token_used ? token_uses : 0, next_at_ms, error,
                               now_ms);
}

int cg_store_outbox_delivered(cg_store *s, int64_t id, int64_t revision,
                              const char *token_used, int token_uses,
                              int64_t now_ms) {
  return settle(s, CG__OUTBOX_DELIVERED, id, revision, token_used, token_uses,
                now_ms, NULL, now_ms);
}

int cg_store_outbox_reschedule(cg_store *s, int64_t id, int64_t revision,
                               const char *token_used, int token_uses,
                               int64_t next_at_ms, const char *error,
                               int64_t now_ms) {
  return settle(s, CG__OUTBOX_RESCHEDULE, id, revision, token_used,
                token_uses, next_at_ms, error, now_ms);
}

int cg_store_outbox_wait(cg_store *s, int64_t id, int64_t revision,
                         const char *token_used, int token_uses,
                         int64_t next_at_ms, const char *error, int64_t now_ms) {
  return settle(s, CG__OUTBOX_WAIT, id, revision, token_used, token_uses,
                next_at_ms, error, now_ms);
}

int cg_store_outbox_dead(cg_store *s, int64_t id, int64_t revision,
                         const char *token_used, int token_uses,
                         const char *error, int64_t now_ms) {
  return settle(s, CG__OUTBOX_DEAD, id, revision, token_used, token_uses,
                now_ms, error, now_ms);
}

int cg_store_outbox_list(cg_store *s, const char *state, size_t limit,
                         cg_outbox_iter_fn fn, void *ud) {
  if (!s || !fn) return CG_EINVAL;
  cg__store_thread *t = begin(s);
  if (!t) return CG_ENOMEM;
  if (state && strcmp(state, "pending") && strcmp(state, "delivered") &&
      strcmp(state, "dead"))
    return cg__store_seterr(t, CG_EINVAL,
                            "unknown outbox state \"%.32s\" (pending, "
                            "delivered, dead)",
                            state);
  cg_outbox_entry *arr = NULL;
  size_t n = 0;
  int rc = s->ops->outbox_list(s->impl, t, state, limit, &arr, &n);
  for (size_t i = 0; i < n; i++)
    if (rc == 0 && fn(&arr[i], ud) != 0) rc = 1;
  cg_outbox_entries_free(arr, n);
  return rc == 1 ? 0 : rc;
}

int cg_store_outbox_get(cg_store *s, int64_t id, cg_outbox_entry *out) {
  if (!s || !out) return CG_EINVAL;
  memset(out, 0, sizeof *out);
  cg__store_thread *t = begin(s);
  if (!t) return CG_ENOMEM;
  return s->ops->outbox_get(s->impl, t, id, out);
}

int cg_store_outbox_retry(cg_store *s, int64_t id, int64_t now_ms) {
  if (!s) return CG_EINVAL;
  cg__store_thread *t = begin(s);
  if (!t) return CG_ENOMEM;
  return s->ops->outbox_retry(s->impl, t, id, now_ms);
}

int cg_store_outbox_drop(cg_store *s, int64_t id) {
  if (!s) return CG_EINVAL;
  cg__store_thread *t = begin(s);
  if (!t) return CG_ENOMEM;
  return s->ops->outbox_drop(s->impl, t, id);
}

/* ---- small key-value records ------------------------------------------- */

int cg_store_kv_get(cg_store *s, const char *key, char **value) {
  if (value) *value = NULL;
  if (!s || !value) return CG_EINVAL;
  cg__store_thread *t = begin(s);
  if (!t) return CG_ENOMEM;
  int rc = check_id(t, "key", key);
  if (rc) return rc;
  return s->ops->kv_get(s->impl, t, key, value);
}

int cg_store_kv_put(cg_store *s, const char *key, const char *value,
                    int64_t now_ms) {
  if (!s || !value) return CG_EINVAL;
  cg__store_thread *t = begin(s);
  if (!t) return CG_ENOMEM;
  int rc = check_id(t, "key", key);
  if (rc) return rc;
  if (strlen(value) > CG__STORE_KV_MAX)
    return cg__store_seterr(t, CG_ETOOBIG, "value of %s over %u bytes", key,
                            CG__STORE_KV_MAX);
  return s->ops->kv_put(s->impl, t, key, value, now_ms);
}
