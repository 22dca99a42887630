/* The SQLite backend of the store. Notes: docs/store.md.
 *
 * Threads. The app calls the store from libuv's thread pool, several threads
 * at once. Each calling thread gets its own connection (opened on its first
 * call, kept until the store closes), each with its own cached prepared
 * statements. We chose this over one connection behind a mutex because:
 *   - in WAL mode readers on separate connections run in parallel and never
 *     wait for the writer;
 *   - writers are serialized by SQLite's own file lock, with busy_timeout
 *     doing the waiting — the very mechanism that also arbitrates between
 *     several processes on one file, so the compare-and-set is exercised the
 *     same way in-process and across processes;
 *   - a statement is never shared by two threads, so no statement state needs
 *     guarding.
 * Every connection still has a mutex, taken for the length of one call. It
 * is uncontended in the normal case; it matters in two others: ":memory:"
 * (a private in-memory database exists only inside its one connection, so
 * all threads share that connection — cap 1), and more than MAX_CONNS
 * threads (the extra threads share the existing connections round-robin).
 *
 * Every write is one autocommit statement (except migrations, which run in
 * BEGIN IMMEDIATE), so the busy handler always applies and no transaction is
 * ever upgraded from read to write (which could fail with SQLITE_BUSY at
 * once in WAL mode). */
#include <limits.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/common.h"
#include "lib/store/store_int.h"

#define MAX_CONNS 64
#define BUSY_TIMEOUT_MS 5000

/* Numbered migrations: migrations[i] takes the schema from version i to
 * i + 1. Append only; never edit one that has shipped. */
static const char *const migrations[] = {
    /* 1: cards, action history, seen event ids. */
    "CREATE TABLE cards ("
    "  message_id TEXT PRIMARY KEY NOT NULL,"
    "  platform TEXT NOT NULL,"
    "  workflow TEXT,"
    "  state TEXT,"
    "  card_json TEXT NOT NULL,"
    "  vars_json TEXT,"
    "  version INTEGER NOT NULL,"
    "  created_at_ms INTEGER NOT NULL,"
    "  updated_at_ms INTEGER NOT NULL);"
    "CREATE INDEX cards_updated ON cards(updated_at_ms);"
    "CREATE TABLE actions ("
    "  id INTEGER PRIMARY KEY,"
    "  message_id TEXT NOT NULL,"
    "  platform TEXT,"
    "  operator_id TEXT,"
    "  kind TEXT,"
    "  value_json TEXT,"
    "  result TEXT,"
    "  at_ms INTEGER NOT NULL);"
    "CREATE INDEX actions_message ON actions(message_id);"
    "CREATE TABLE seen_events ("
    "  event_id TEXT PRIMARY KEY NOT NULL,"
    "  expires_at_ms INTEGER NOT NULL,"
    "  reply_status INTEGER,"
    "  reply_body TEXT);"
    "CREATE INDEX seen_events_expiry ON seen_events(expires_at_ms);",
    /* 2: the outbox (docs/outbox.md). At most one pending entry per card
     * (the unique partial index is also the merge's conflict target); due
     * entries are found by next_attempt_at_ms; a token's spent uses are
     * looked up by token. */
    "CREATE TABLE outbox ("
    "  id INTEGER PRIMARY KEY,"
    "  platform TEXT NOT NULL,"
    "  message_id TEXT NOT NULL,"
    "  update_token TEXT,"
    "  token_uses INTEGER NOT NULL DEFAULT 0,"
    "  token_expires_at_ms INTEGER NOT NULL DEFAULT 0,"
    "  card_json TEXT NOT NULL,"
    "  state TEXT NOT NULL CHECK (state IN ('pending','delivered','dead')),"
    "  attempts INTEGER NOT NULL DEFAULT 0,"
    "  next_attempt_at_ms INTEGER NOT NULL,"
    "  last_error TEXT,"
    "  created_at_ms INTEGER NOT NULL,"
    "  updated_at_ms INTEGER NOT NULL,"
    "  revision INTEGER NOT NULL DEFAULT 1);"
    "CREATE INDEX outbox_due ON outbox(next_attempt_at_ms, id) "
    "  WHERE state = 'pending';"
    "CREATE UNIQUE INDEX outbox_pending_card ON outbox(platform, message_id) "
    "  WHERE state = 'pending';"
    "CREATE INDEX outbox_token ON outbox(update_token) "
    "  WHERE update_token IS NOT NULL;"
    "CREATE INDEX outbox_state ON outbox(state, id);",
    /* 3: store (marketplace) apps. An outbox entry names the tenant whose
     * token delivers it; a small key-value table keeps the app's latest
     * app_ticket across restarts (docs/openapi.md). */
    "ALTER TABLE outbox ADD COLUMN tenant_key TEXT;"
    "CREATE TABLE kv ("
    "  key TEXT PRIMARY KEY NOT NULL,"
    "  value TEXT NOT NULL,"
    "  updated_at_ms INTEGER NOT NULL);",
    /* 4: an outbox entry being delivered carries its lease, so a manual
     * retry can tell it from one waiting for its next attempt. */
    "ALTER TABLE outbox ADD COLUMN leased_until_ms INTEGER NOT NULL DEFAULT 0;",
};
#define N_MIGRATIONS ((int)CG_ARRAY_SIZE(migrations))

enum {
  ST_SCHEMA_VERSION,
  ST_CARD_GET,
  ST_CARD_INSERT,
  ST_CARD_CAS,
  ST_CARDS_LIST,
  ST_ACTION_ADD,
  ST_ACTIONS_LIST,
  ST_SEEN_UPSERT,
  ST_SEEN_GET,
  ST_SEEN_PURGE,
  ST_SEEN_ANSWER,
  ST_OUTBOX_ENQUEUE,
  ST_OUTBOX_CLAIM,
  ST_OUTBOX_SETTLE,
  ST_OUTBOX_LIST,
  ST_OUTBOX_GET,
  ST_OUTBOX_RETRY,
  ST_OUTBOX_DROP,
  ST_KV_GET,
  ST_KV_PUT,
  ST__COUNT
};

#define CARD_COLUMNS                                                       \
  "message_id, platform, workflow, state, card_json, vars_json, version, " \
  "created_at_ms, updated_at_ms"

#define OUTBOX_COLUMNS                                                   \
  "id, platform, message_id, update_token, token_uses, "               \
  "token_expires_at_ms, card_json, state, attempts, next_attempt_at_ms, " \
  "last_error, created_at_ms, updated_at_ms, revision, tenant_key"

/* In ST_OUTBOX_ENQUEUE's merge: a new token replaces the pending entry's
 * only when it expires later (see there). */
#define OUTBOX_TAKES_NEW_TOKEN                                           \
  "(excluded.update_token IS NOT NULL AND (outbox.update_token IS NULL " \
  "OR excluded.token_expires_at_ms > outbox.token_expires_at_ms))"

static const char *const stmt_sql[ST__COUNT] = {
    [ST_SCHEMA_VERSION] =
        "SELECT coalesce(max(version), 0) FROM schema_migrations",
    [ST_CARD_GET] = "SELECT " CARD_COLUMNS " FROM cards WHERE message_id = ?1",
    [ST_CARD_INSERT] = "INSERT INTO cards(" CARD_COLUMNS
                       ") VALUES(?1, ?2, ?3, ?4, ?5, ?6, 1, ?7, ?8)",
    /* The compare-and-set: the row changes only if it is still at the
     * version the writer read; sqlite3_changes() says whether it did. */
    [ST_CARD_CAS] =
        "UPDATE cards SET workflow = ?2, state = ?3, "
        "card_json = ?4, vars_json = ?5, version = version + 1, "
        "updated_at_ms = ?6 WHERE message_id = ?1 AND version = ?7",
    [ST_CARDS_LIST] = "SELECT " CARD_COLUMNS
                      " FROM cards ORDER BY "
                      "updated_at_ms DESC, message_id ASC LIMIT ?1",
    [ST_ACTION_ADD] =
        "INSERT INTO actions(message_id, platform, operator_id, "
        "kind, value_json, result, at_ms) "
        "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    [ST_ACTIONS_LIST] =
        "SELECT message_id, platform, operator_id, kind, "
        "value_json, result, at_ms FROM actions "
        "WHERE message_id = ?1 ORDER BY id ASC",
    /* Atomic claim: inserts a new id, or takes over an expired one (one row
     * changed); leaves a live one alone (no row changed). */
    [ST_SEEN_UPSERT] =
        "INSERT INTO seen_events(event_id, expires_at_ms) VALUES(?1, ?2) "
        "ON CONFLICT(event_id) DO UPDATE SET "
        "expires_at_ms = excluded.expires_at_ms, reply_status = NULL, "
        "reply_body = NULL WHERE seen_events.expires_at_ms <= ?3",
    [ST_SEEN_GET] =
        "SELECT reply_status, reply_body FROM seen_events "
        "WHERE event_id = ?1",
    [ST_SEEN_PURGE] = "DELETE FROM seen_events WHERE expires_at_ms <= ?1",
    [ST_SEEN_ANSWER] =
        "UPDATE seen_events SET reply_status = ?2, "
        "reply_body = ?3 WHERE event_id = ?1",
    /* One statement, so it is atomic without a transaction: a new entry
     * (starting with the uses already spent on its token), or — when the
     * card has a pending entry — that entry with the new card (and the new
     * token, if any). */
    [ST_OUTBOX_ENQUEUE] =
        "INSERT INTO outbox(platform, message_id, update_token, token_uses, "
        "token_expires_at_ms, card_json, state, attempts, next_attempt_at_ms, "
        "created_at_ms, updated_at_ms, revision, tenant_key) VALUES(?1, ?2, ?3, "
        "CASE WHEN ?3 IS NULL THEN 0 ELSE (SELECT coalesce(max(token_uses), 0) "
        "FROM outbox WHERE update_token = ?3) END, "
        "CASE WHEN ?3 IS NULL THEN 0 ELSE ?4 END, ?5, 'pending', 0, ?6, ?6, "
        "?6, 1, ?7) "
        "ON CONFLICT(platform, message_id) WHERE state = 'pending' DO UPDATE "
        "SET card_json = excluded.card_json, "
        /* The entry keeps the token that expires last (the newest click's):
         * a token once replaced is never taken back, so the uses it spent
         * while it was this entry's can never be forgotten and exceeded. */
        "update_token = CASE WHEN " OUTBOX_TAKES_NEW_TOKEN " THEN "
        "excluded.update_token ELSE outbox.update_token END, "
        "token_uses = CASE WHEN " OUTBOX_TAKES_NEW_TOKEN " THEN "
        "excluded.token_uses ELSE outbox.token_uses END, "
        "token_expires_at_ms = CASE WHEN " OUTBOX_TAKES_NEW_TOKEN " THEN "
        "excluded.token_expires_at_ms ELSE outbox.token_expires_at_ms END, "
        "tenant_key = coalesce(excluded.tenant_key, outbox.tenant_key), "
        "revision = outbox.revision + 1, attempts = 0, "
        "updated_at_ms = excluded.updated_at_ms "
        "RETURNING id",
    /* Claim = lease: due entries move to now + lease in one statement. */
    [ST_OUTBOX_CLAIM] =
        "UPDATE outbox SET next_attempt_at_ms = ?2, leased_until_ms = ?2 WHERE id IN (SELECT id FROM "
        "outbox WHERE state = 'pending' AND next_attempt_at_ms <= ?1 ORDER BY "
        "next_attempt_at_ms, id LIMIT ?3) RETURNING " OUTBOX_COLUMNS,
    /* ?8: 1 delivered, 2 reschedule, 3 dead. A card replaced since the claim
     * (revision moved on) stays pending: due now with fresh attempts after
     * a success or a dead end; rescheduled like the old one otherwise. */
    [ST_OUTBOX_SETTLE] =
        "UPDATE outbox SET "
        "token_uses = token_uses + CASE WHEN ?3 IS NOT NULL AND "
        "update_token = ?3 THEN ?4 ELSE 0 END, "
        "state = CASE WHEN revision = ?2 AND ?8 = 1 THEN 'delivered' "
        "WHEN revision = ?2 AND ?8 = 3 THEN 'dead' ELSE 'pending' END, "
        /* ?8 = 4: a wait that is no attempt (rate limited, token retired) */
        "attempts = CASE WHEN ?8 = 4 THEN attempts WHEN revision <> ?2 AND "
        "?8 <> 2 THEN 0 ELSE attempts + 1 END, leased_until_ms = 0, "
        "next_attempt_at_ms = CASE WHEN ?8 IN (2, 4) THEN ?5 WHEN revision = ?2 "
        "THEN next_attempt_at_ms ELSE ?7 END, "
        "last_error = CASE WHEN ?8 = 1 THEN NULL ELSE ?6 END, "
        "updated_at_ms = ?7 WHERE id = ?1 AND state = 'pending'",
    [ST_OUTBOX_LIST] = "SELECT " OUTBOX_COLUMNS
                       " FROM outbox WHERE ?1 IS NULL OR state = ?1 "
                       "ORDER BY id DESC LIMIT ?2",
    [ST_OUTBOX_GET] = "SELECT " OUTBOX_COLUMNS " FROM outbox WHERE id = ?1",
    [ST_OUTBOX_RETRY] =
        "UPDATE outbox SET state = 'pending', attempts = 0, "
        "next_attempt_at_ms = ?2, updated_at_ms = ?2 WHERE id = ?1 AND "
        "state IN ('pending', 'dead') AND leased_until_ms <= ?2",
    [ST_OUTBOX_DROP] = "DELETE FROM outbox WHERE id = ?1",
    [ST_KV_GET] = "SELECT value FROM kv WHERE key = ?1",
    [ST_KV_PUT] =
        "INSERT INTO kv(key, value, updated_at_ms) VALUES(?1, ?2, ?3) "
        "ON CONFLICT(key) DO UPDATE SET value = excluded.value, "
        "updated_at_ms = excluded.updated_at_ms",
};

typedef struct sq_conn {
  pthread_mutex_t mu; /* held for the length of one store call, and from
                         cg_store_begin to its commit/rollback (recursive) */
  int in_tx;          /* inside cg_store_begin … commit/rollback */
  sqlite3 *db;
  sqlite3_stmt *st[ST__COUNT]; /* prepared on first use, kept */
} sq_conn;

typedef struct sq_impl {
  char *path;
  size_t cap;         /* most connections: 1 for ":memory:", else MAX_CONNS */
  pthread_mutex_t mu; /* guards conns, n, rr */
  sq_conn *conns[MAX_CONNS];
  size_t n;
  size_t rr;
} sq_impl;

/* ---- errors ------------------------------------------------------------ */

static int map_rc(int rc) {
  switch (rc & 0xff) {
    case SQLITE_NOMEM:
      return CG_ENOMEM;
    default:
      return CG_ESTORE;
  }
}

/* Records "sqlite: <what>: <detail>" and returns the cardgate code. */
static int db_fail(cg__store_thread *t, sqlite3 *db, int rc, const char *what) {
  const char *detail = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  return cg__store_seterr(t, map_rc(rc), "sqlite: %s: %s", what, detail);
}

/* ---- connections ------------------------------------------------------- */

static void conn_close(sq_conn *c) {
  if (!c) return;
  for (int i = 0; i < ST__COUNT; i++) sqlite3_finalize(c->st[i]);
  sqlite3_close(c->db);
  pthread_mutex_destroy(&c->mu);
  free(c);
}

static int exec_sql(cg__store_thread *t, sqlite3 *db, const char *sql,
                    const char *what) {
  int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
  return rc == SQLITE_OK ? 0 : db_fail(t, db, rc, what);
}

/* Opens and configures one connection. */
static int conn_open(const char *path, cg__store_thread *t, sq_conn **out) {
  *out = NULL;
  sq_conn *c = calloc(1, sizeof *c);
  if (!c) return cg__store_seterr(t, CG_ENOMEM, "out of memory");
  pthread_mutexattr_t ma;
  pthread_mutexattr_init(&ma);
  pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_RECURSIVE);
  pthread_mutex_init(&c->mu, &ma);
  pthread_mutexattr_destroy(&ma);
  /* NOMUTEX: a connection is only ever used under c->mu. */
  int rc = sqlite3_open_v2(
      path, &c->db,
      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
  if (rc != SQLITE_OK) {
    cg__store_seterr(t, map_rc(rc), "sqlite: cannot open %s: %s", path,
                     c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc));
    conn_close(c);
    return map_rc(rc);
  }
  sqlite3_extended_result_codes(c->db, 1);
  sqlite3_busy_timeout(c->db, BUSY_TIMEOUT_MS);
  /* WAL: readers never block the writer nor it them; with it,
   * synchronous=NORMAL is durable against application crashes and loses at
   * most the last transactions on power loss, never corrupts. An in-memory
   * database answers "memory" to journal_mode, which is fine. */
  int err = exec_sql(t, c->db,
                     "PRAGMA journal_mode = WAL;"
                     "PRAGMA synchronous = NORMAL;"
                     "PRAGMA foreign_keys = ON;",
                     path);
  if (err) {
    conn_close(c);
    return err;
  }
  *out = c;
  return 0;
}

/* The calling thread's connection, locked. Unlock with conn_release(). */
static int conn_acquire(sq_impl *im, cg__store_thread *t, sq_conn **out) {
  sq_conn *c = t->conn;
  if (!c) {
    pthread_mutex_lock(&im->mu);
    if (im->n < im->cap) {
      int rc = conn_open(im->path, t, &c);
      if (rc) {
        pthread_mutex_unlock(&im->mu);
        return rc;
      }
      im->conns[im->n++] = c;
    } else {
      c = im->conns[im->rr++ % im->n];
    }
    pthread_mutex_unlock(&im->mu);
    t->conn = c;
  }
  pthread_mutex_lock(&c->mu);
  *out = c;
  return 0;
}

static void conn_release(sq_conn *c) {
  pthread_mutex_unlock(&c->mu);
}

/* The cached statement id, reset and unbound. */
static int stmt(sq_conn *c, cg__store_thread *t, int id, sqlite3_stmt **out) {
  if (!c->st[id]) {
    int rc = sqlite3_prepare_v3(c->db, stmt_sql[id], -1,
                                SQLITE_PREPARE_PERSISTENT, &c->st[id], NULL);
    if (rc != SQLITE_OK) return db_fail(t, c->db, rc, "prepare");
  }
  *out = c->st[id];
  return 0;
}

static void stmt_done(sqlite3_stmt *st) {
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
}

static void bind_str(sqlite3_stmt *st, int i, const char *s) {
  if (s)
    sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
  else
    sqlite3_bind_null(st, i);
}

/* malloc'd copy of a text column; *oom set when the copy fails. */
static char *col_str(sqlite3_stmt *st, int i, int *oom) {
  const unsigned char *p = sqlite3_column_text(st, i);
  if (!p) return NULL;
  char *s = cg_strndup((const char *)p, (size_t)sqlite3_column_bytes(st, i));
  if (!s) *oom = 1;
  return s;
}

/* ---- migrations -------------------------------------------------------- */

static int read_version(cg__store_thread *t, sqlite3 *db, int *version) {
  sqlite3_stmt *st = NULL;
  int rc = sqlite3_prepare_v2(db, stmt_sql[ST_SCHEMA_VERSION], -1, &st, NULL);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) {
    *version = sqlite3_column_int(st, 0);
    rc = SQLITE_OK;
  }
  int err = rc == SQLITE_OK ? 0 : db_fail(t, db, rc, "read schema version");
  sqlite3_finalize(st);
  return err;
}

/* Applies the missing migrations, each in its own transaction. BEGIN
 * IMMEDIATE takes the write lock first, so when two processes open a new
 * file at once one waits and then sees the migration already applied. */
static int migrate(cg__store_thread *t, sqlite3 *db) {
  int rc = exec_sql(t, db,
                    "CREATE TABLE IF NOT EXISTS schema_migrations ("
                    "  version INTEGER PRIMARY KEY NOT NULL,"
                    "  applied_at INTEGER NOT NULL)",
                    "create schema_migrations");
  if (rc) return rc;
  for (int v = 1; v <= N_MIGRATIONS; v++) {
    rc = exec_sql(t, db, "BEGIN IMMEDIATE", "begin migration");
    if (rc) return rc;
    int have = 0;
    rc = read_version(t, db, &have);
    if (rc == 0 && have > N_MIGRATIONS)
      rc = cg__store_seterr(t, CG_ESTORE,
                            "sqlite: database schema version %d is newer than "
                            "this build knows (%d)",
                            have, N_MIGRATIONS);
    if (rc == 0 && have < v) {
      char what[48];
      cg_fmt(what, sizeof what, "migration %d", v);
      rc = exec_sql(t, db, migrations[v - 1], what);
      if (rc == 0) {
        char sql[128];
        cg_fmt(sql, sizeof sql,
               "INSERT INTO schema_migrations(version, applied_at) "
               "VALUES(%d, %lld)",
               v, (long long)cg_now_ms());
        rc = exec_sql(t, db, sql, what);
      }
    }
    if (rc == 0) rc = exec_sql(t, db, "COMMIT", "commit migration");
    if (rc) {
      sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
      return rc;
    }
  }
  return 0;
}

/* ---- the ops ----------------------------------------------------------- */

static void sq_close(void *impl) {
  sq_impl *im = impl;
  if (!im) return;
  for (size_t i = 0; i < im->n; i++) conn_close(im->conns[i]);
  pthread_mutex_destroy(&im->mu);
  free(im->path);
  free(im);
}

static int sq_open(const char *target, cg__store_thread *t, void **impl) {
  *impl = NULL;
  if (!sqlite3_threadsafe())
    return cg__store_seterr(t, CG_ESTORE,
                            "sqlite: library built without thread support");
  sq_impl *im = calloc(1, sizeof *im);
  if (!im) return cg__store_seterr(t, CG_ENOMEM, "out of memory");
  pthread_mutex_init(&im->mu, NULL);
  int memory = strcmp(target, ":memory:") == 0;
  im->cap = memory ? 1 : MAX_CONNS;
  if (memory || target[0] == '/') {
    im->path = cg_strdup(target);
  } else {
    /* Connections open lazily, one per thread, possibly long after a
     * chdir(): pin a relative path to the directory it meant now. */
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof cwd)) {
      sq_close(im);
      return cg__store_seterr(
          t, CG_ESTORE, "sqlite: %s: cannot resolve a relative path", target);
    }
    cg_buf b;
    cg_buf_init(&b, 2u * PATH_MAX);
    if (cg_buf_appendf(&b, "%s/%s", cwd, target) == 0)
      im->path = b.data;
    else
      cg_buf_free(&b);
  }
  if (!im->path) {
    sq_close(im);
    return cg__store_seterr(t, CG_ENOMEM, "out of memory");
  }
  sq_conn *c = NULL;
  int rc = conn_acquire(im, t, &c);
  if (rc) {
    t->conn = NULL;
    sq_close(im);
    return rc;
  }
  rc = migrate(t, c->db);
  conn_release(c);
  if (rc) {
    t->conn = NULL;
    sq_close(im);
    return rc;
  }
  *impl = im;
  return 0;
}

/* Connections are owned by the impl (a thread may share one), so there is
 * nothing to do per thread; sq_close closes them all. */
static void sq_conn_free(void *impl, void *conn) {
  CG_UNUSED(impl);
  CG_UNUSED(conn);
}

static int sq_schema_version(void *impl, cg__store_thread *t, int *version) {
  sq_conn *c;
  int rc = conn_acquire(impl, t, &c);
  if (rc) return rc;
  rc = read_version(t, c->db, version);
  conn_release(c);
  return rc;
}

/* Reads the current row of a CARD_COLUMNS statement into r. */
static int read_card(cg__store_thread *t, sqlite3_stmt *st, cg_card_record *r) {
  int oom = 0;
  memset(r, 0, sizeof *r);
  r->message_id = col_str(st, 0, &oom);
  r->platform = col_str(st, 1, &oom);
  r->workflow = col_str(st, 2, &oom);
  r->state = col_str(st, 3, &oom);
  r->card_json = col_str(st, 4, &oom);
  r->vars_json = col_str(st, 5, &oom);
  r->version = sqlite3_column_int64(st, 6);
  r->created_at_ms = sqlite3_column_int64(st, 7);
  r->updated_at_ms = sqlite3_column_int64(st, 8);
  if (oom) {
    cg_card_record_clear(r);
    return cg__store_seterr(t, CG_ENOMEM, "out of memory");
  }
  return 0;
}

static int sq_card_get(void *impl, cg__store_thread *t, const char *message_id,
                       cg_card_record *out) {
  sq_conn *c;
  sqlite3_stmt *st = NULL;
  int rc = conn_acquire(impl, t, &c);
  if (rc) return rc;
  rc = stmt(c, t, ST_CARD_GET, &st);
  if (rc == 0) {
    bind_str(st, 1, message_id);
    int s = sqlite3_step(st);
    if (s == SQLITE_ROW)
      rc = read_card(t, st, out);
    else if (s == SQLITE_DONE)
      rc = cg__store_seterr(t, CG_ENOTFOUND, "no card %s", message_id);
    else
      rc = db_fail(t, c->db, s, "card get");
    stmt_done(st);
  }
  conn_release(c);
  return rc;
}

static int sq_card_insert(void *impl, cg__store_thread *t,
                          const cg_card_record *r, int64_t now_ms) {
  sq_conn *c;
  sqlite3_stmt *st = NULL;
  int rc = conn_acquire(impl, t, &c);
  if (rc) return rc;
  rc = stmt(c, t, ST_CARD_INSERT, &st);
  if (rc == 0) {
    int64_t created = r->created_at_ms > 0 ? r->created_at_ms : now_ms;
    int64_t updated = r->updated_at_ms > 0 ? r->updated_at_ms : created;
    bind_str(st, 1, r->message_id);
    bind_str(st, 2, r->platform);
    bind_str(st, 3, r->workflow);
    bind_str(st, 4, r->state);
    bind_str(st, 5, r->card_json);
    bind_str(st, 6, r->vars_json);
    sqlite3_bind_int64(st, 7, created);
    sqlite3_bind_int64(st, 8, updated);
    int s = sqlite3_step(st);
    if (s == SQLITE_DONE)
      rc = 0;
    else if (s == SQLITE_CONSTRAINT_PRIMARYKEY)
      rc = cg__store_seterr(t, CG_ECONFLICT, "card %s exists", r->message_id);
    else
      rc = db_fail(t, c->db, s, "card insert");
    stmt_done(st);
  }
  conn_release(c);
  return rc;
}

static int sq_card_cas(void *impl, cg__store_thread *t, const cg_card_record *r,
                       int64_t expected_version, int64_t now_ms) {
  sq_conn *c;
  sqlite3_stmt *st = NULL;
  int rc = conn_acquire(impl, t, &c);
  if (rc) return rc;
  rc = stmt(c, t, ST_CARD_CAS, &st);
  if (rc == 0) {
    bind_str(st, 1, r->message_id);
    bind_str(st, 2, r->workflow);
    bind_str(st, 3, r->state);
    bind_str(st, 4, r->card_json);
    bind_str(st, 5, r->vars_json);
    sqlite3_bind_int64(st, 6, now_ms);
    sqlite3_bind_int64(st, 7, expected_version);
    int s = sqlite3_step(st);
    if (s != SQLITE_DONE)
      rc = db_fail(t, c->db, s, "card compare-and-set");
    else if (sqlite3_changes(c->db) != 1)
      rc = cg__store_seterr(t, CG_ECONFLICT,
                            "card %s is not at version %lld (or is gone)",
                            r->message_id, (long long)expected_version);
    stmt_done(st);
  }
  conn_release(c);
  return rc;
}

/* arr (of elem-sized items) grown to hold n + 1; NULL when out of memory
 * (arr is then untouched). */
static void *grow(void *arr, size_t *cap, size_t n, size_t elem) {
  if (n < *cap) return arr;
  size_t ncap = *cap ? *cap * 2 : 16;
  void *p = realloc(arr, ncap * elem);
  if (p) *cap = ncap;
  return p;
}

static int sq_cards_list(void *impl, cg__store_thread *t, size_t limit,
                         cg_card_record **out, size_t *n) {
  sq_conn *c;
  sqlite3_stmt *st = NULL;
  cg_card_record *arr = NULL;
  size_t cap = 0, cnt = 0;
  int rc = conn_acquire(impl, t, &c);
  if (rc) return rc;
  rc = stmt(c, t, ST_CARDS_LIST, &st);
  if (rc == 0) {
    /* A negative LIMIT means no limit in SQLite. */
    sqlite3_bind_int64(st, 1,
                       limit == 0 || limit > INT64_MAX ? -1 : (int64_t)limit);
    for (;;) {
      int s = sqlite3_step(st);
      if (s == SQLITE_DONE) break;
      if (s != SQLITE_ROW) {
        rc = db_fail(t, c->db, s, "cards list");
        break;
      }
      void *p = grow(arr, &cap, cnt, sizeof *arr);
      if (!p) {
        rc = cg__store_seterr(t, CG_ENOMEM, "out of memory");
        break;
      }
      arr = p;
      rc = read_card(t, st, &arr[cnt]);
      if (rc) break;
      cnt++;
    }
    stmt_done(st);
  }
  conn_release(c);
  if (rc) {
    for (size_t i = 0; i < cnt; i++) cg_card_record_clear(&arr[i]);
    free(arr);
    return rc;
  }
  *out = arr;
  *n = cnt;
  return 0;
}

static int sq_action_add(void *impl, cg__store_thread *t,
                         const cg_action_record *a, int64_t now_ms) {
  sq_conn *c;
  sqlite3_stmt *st = NULL;
  int rc = conn_acquire(impl, t, &c);
  if (rc) return rc;
  rc = stmt(c, t, ST_ACTION_ADD, &st);
  if (rc == 0) {
    bind_str(st, 1, a->message_id);
    bind_str(st, 2, a->platform);
    bind_str(st, 3, a->operator_id);
    bind_str(st, 4, a->kind);
    bind_str(st, 5, a->value_json);
    bind_str(st, 6, a->result);
    sqlite3_bind_int64(st, 7, a->at_ms > 0 ? a->at_ms : now_ms);
    int s = sqlite3_step(st);
    if (s != SQLITE_DONE) rc = db_fail(t, c->db, s, "action add");
    stmt_done(st);
  }
  conn_release(c);
  return rc;
}

static void action_free(cg_action_record *a) {
  free((char *)a->message_id);
  free((char *)a->platform);
  free((char *)a->operator_id);
  free((char *)a->kind);
  free((char *)a->value_json);
  free((char *)a->result);
}

static int sq_actions_list(void *impl, cg__store_thread *t,
                           const char *message_id, cg_action_record **out,
                           size_t *n) {
  sq_conn *c;
  sqlite3_stmt *st = NULL;
  cg_action_record *arr = NULL;
  size_t cap = 0, cnt = 0;
  int rc = conn_acquire(impl, t, &c);
  if (rc) return rc;
  rc = stmt(c, t, ST_ACTIONS_LIST, &st);
  if (rc == 0) {
    bind_str(st, 1, message_id);
    for (;;) {
      int s = sqlite3_step(st);
      if (s == SQLITE_DONE) break;
      if (s != SQLITE_ROW) {
        rc = db_fail(t, c->db, s, "actions list");
        break;
      }
      void *p = grow(arr, &cap, cnt, sizeof *arr);
      if (!p) {
        rc = cg__store_seterr(t, CG_ENOMEM, "out of memory");
        break;
      }
      arr = p;
      int oom = 0;
      cg_action_record *a = &arr[cnt++];
      a->message_id = col_str(st, 0, &oom);
      a->platform = col_str(st, 1, &oom);
      a->operator_id = col_str(st, 2, &oom);
      a->kind = col_str(st, 3, &oom);
      a->value_json = col_str(st, 4, &oom);
      a->result = col_str(st, 5, &oom);
      a->at_ms = sqlite3_column_int64(st, 6);
      if (oom) {
        rc = cg__store_seterr(t, CG_ENOMEM, "out of memory");
        break;
      }
    }
    stmt_done(st);
  }
  conn_release(c);
  if (rc) {
    for (size_t i = 0; i < cnt; i++) action_free(&arr[i]);
    free(arr);
    return rc;
  }
  *out = arr;
  *n = cnt;
  return 0;
}

static int sq_seen_check(void *impl, cg__store_thread *t, const char *event_id,
                         int64_t now_ms, int64_t expires_at_ms,
                         int *reply_status, char **reply_body) {
  sq_conn *c;
  sqlite3_stmt *st = NULL;
  int rc = conn_acquire(impl, t, &c);
  if (rc) return rc;
  rc = stmt(c, t, ST_SEEN_UPSERT, &st);
  if (rc == 0) {
    bind_str(st, 1, event_id);
    sqlite3_bind_int64(st, 2, expires_at_ms);
    sqlite3_bind_int64(st, 3, now_ms);
    int s = sqlite3_step(st);
    if (s != SQLITE_DONE)
      rc = db_fail(t, c->db, s, "seen check");
    else if (sqlite3_changes(c->db) != 1)
      rc = CG_EDUPLICATE;
    stmt_done(st);
  }
  if (rc == CG_EDUPLICATE && (reply_status || reply_body)) {
    /* A live duplicate: hand back the first delivery's answer, if any. */
    int err = stmt(c, t, ST_SEEN_GET, &st);
    if (err == 0) {
      bind_str(st, 1, event_id);
      int s = sqlite3_step(st);
      if (s == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL) {
        int oom = 0;
        if (reply_status) *reply_status = sqlite3_column_int(st, 0);
        if (reply_body) *reply_body = col_str(st, 1, &oom);
        if (oom) err = cg__store_seterr(t, CG_ENOMEM, "out of memory");
      } else if (s != SQLITE_ROW && s != SQLITE_DONE) {
        err = db_fail(t, c->db, s, "seen answer read");
      }
      stmt_done(st);
    }
    if (err) rc = err;
  }
  conn_release(c);
  return rc;
}

static int sq_seen_purge(void *impl, cg__store_thread *t, int64_t now_ms) {
  sq_conn *c;
  sqlite3_stmt *st = NULL;
  int rc = conn_acquire(impl, t, &c);
  if (rc) return rc;
  rc = stmt(c, t, ST_SEEN_PURGE, &st);
  if (rc == 0) {
    sqlite3_bind_int64(st, 1, now_ms);
    int s = sqlite3_step(st);
    if (s != SQLITE_DONE) rc = db_fail(t, c->db, s, "seen purge");
    stmt_done(st);
  }
  conn_release(c);
  return rc;
}

static int sq_seen_answer(void *impl, cg__store_thread *t, const char *event_id,
                          int status, const char *body) {
  sq_conn *c;
  sqlite3_stmt *st = NULL;
  int rc = conn_acquire(impl, t, &c);
  if (rc) return rc;
  rc = stmt(c, t, ST_SEEN_ANSWER, &st);
  if (rc == 0) {
    bind_str(st, 1, event_id);
    sqlite3_bind_int(st, 2, status);
    bind_str(st, 3, body);
    int s = sqlite3_step(st);
    if (s != SQLITE_DONE)
      rc = db_fail(t, c->db, s, "seen answer");
    else if (sqlite3_changes(c->db) != 1)
      rc = cg__store_seterr(t, CG_ENOTFOUND, "event %s was never seen",
                            event_id);
    stmt_done(st);
  }
  conn_release(c);
  return rc;
}

/* Transactions (cg_store_begin/commit/rollback). BEGIN IMMEDIATE takes the
 * write lock at once, so the calls inside never need to upgrade a read
 * transaction (which fails with SQLITE_BUSY at once in WAL mode). The
 * connection's mutex stays held from begin to commit, so a connection
 * shared between threads (":memory:") never mixes another thread's calls
 * into the transaction. */
static int sq_tx(void *impl, cg__store_thread *t, int op) {
  sq_conn *c;
  int rc = conn_acquire(impl, t, &c);
  if (rc) return rc;
  if (op == CG__STORE_TX_BEGIN) {
    if (c->in_tx) {
      conn_release(c);
      return cg__store_seterr(t, CG_EALREADY, "a transaction is already open on this thread");
    }
    rc = exec_sql(t, c->db, "BEGIN IMMEDIATE", "begin");
    if (rc == 0) {
      c->in_tx = 1;
      return 0; /* keep the mutex until commit/rollback */
    }
    conn_release(c);
    return rc;
  }
  if (!c->in_tx) {
    conn_release(c);
    return cg__store_seterr(t, CG_EINVAL, "no transaction is open on this thread");
  }
  rc = exec_sql(t, c->db, op == CG__STORE_TX_COMMIT ? "COMMIT" : "ROLLBACK",
                op == CG__STORE_TX_COMMIT ? "commit" : "rollback");
  if (rc != 0 && op == CG__STORE_TX_COMMIT) {
    /* A failed COMMIT may leave the transaction open: roll it back so the
     * connection is usable again; the caller learns it failed. */
    if (!sqlite3_get_autocommit(c->db)) sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
  }
  c->in_tx = 0;
  conn_release(c); /* this call's hold */
  conn_release(c); /* begin's hold */
  return rc;
}

/* ---- the outbox -------------------------------------------------------- */

/* Reads the current row of an OUTBOX_COLUMNS statement into e. */
static int read_outbox(cg__store_thread *t, sqlite3_stmt *st,
                       cg_outbox_entry *e) {
  int oom = 0;
  memset(e, 0, sizeof *e);
  e->id = sqlite3_column_int64(st, 0);
  e->platform = col_str(st, 1, &oom);
  e->message_id = col_str(st, 2, &oom);
  e->update_token = col_str(st, 3, &oom);
  e->token_uses = sqlite3_column_int(st, 4);
  e->token_expires_at_ms = sqlite3_column_int64(st, 5);
  e->card_json = col_str(st, 6, &oom);
  e->state = col_str(st, 7, &oom);
  e->attempts = sqlite3_column_int(st, 8);
  e->next_attempt_at_ms = sqlite3_column_int64(st, 9);
  e->last_error = col_str(st, 10, &oom);
  e->created_at_ms = sqlite3_column_int64(st, 11);
  e->updated_at_ms = sqlite3_column_int64(st, 12);
  e->revision = sqlite3_column_int64(st, 13);
  e->tenant_key = col_str(st, 14, &oom);
  if (oom) {
    cg_outbox_entry_clear(e);
    return cg__store_seterr(t, CG_ENOMEM, "out of memory");
  }
  return 0;
}

/* Steps st to the end, collecting its OUTBOX_COLUMNS rows. */
static int read_outbox_rows(cg__store_thread *t, sq_conn *c, sqlite3_stmt *st,
                            const char *what, cg_outbox_entry **out,
                            size_t *n) {
  cg_outbox_entry *arr = NULL;
  size_t cap = 0, cnt = 0;
  int rc = 0;
  for (;;) {
    int s = sqlite3_step(st);
    if (s == SQLITE_DONE) break;
    if (s != SQLITE_ROW) {
      rc = db_fail(t, c->db, s, what);
      break;
    }
    void *p = grow(arr, &cap, cnt, sizeof *arr);
    if (!p) {
      rc = cg__store_seterr(t, CG_ENOMEM, "out of memory");
      break;
    }
    arr = p;
    rc = read_outbox(t, st, &arr[cnt]);
    if (rc) break;
    cnt++;
  }
  if (rc) {
    cg_outbox_entries_free(arr, cnt);
    return rc;
  }
  *out = arr;
  *n = cnt;
  return 0;
}

static int sq_outbox_enqueue(void *impl, cg__store_thread *t,
                             const cg_outbox_entry *e, int64_t now_ms,
                             int64_t *id_out) {
  sq_conn *c;
  sqlite3_stmt *st = NULL;
  int rc = conn_acquire(impl, t, &c);
  if (rc) return rc;
  rc = stmt(c, t, ST_OUTBOX_ENQUEUE, &st);
  if (rc == 0) {
    bind_str(st, 1, e->platform);
    bind_str(st, 2, e->message_id);
    bind_str(st, 3, e->update_token);
    sqlite3_bind_int64(st, 4, e->token_expires_at_ms);
    bind_str(st, 5, e->card_json);
    sqlite3_bind_int64(st, 6, now_ms);
    bind_str(st, 7, e->tenant_key);
    int s = sqlite3_step(st);
    if (s == SQLITE_ROW) {
      *id_out = sqlite3_column_int64(st, 0);
      s = sqlite3_step(st);
    }
    if (s != SQLITE_DONE) rc = db_fail(t, c->db, s, "outbox enqueue");
    stmt_done(st);
  }
  conn_release(c);
  return rc;
}

static int sq_outbox_claim(void *impl, cg__store_thread *t, int64_t now_ms,
                           int64_t lease_ms, size_t max,
                           cg_outbox_entry **out, size_t *n) {
  sq_conn *c;
  sqlite3_stmt *st = NULL;
  int rc = conn_acquire(impl, t, &c);
  if (rc) return rc;
  rc = stmt(c, t, ST_OUTBOX_CLAIM, &st);
  if (rc == 0) {
    sqlite3_bind_int64(st, 1, now_ms);
    sqlite3_bind_int64(st, 2, now_ms + lease_ms);
    sqlite3_bind_int64(st, 3, max > INT64_MAX ? INT64_MAX : (int64_t)max);
    rc = read_outbox_rows(t, c, st, "outbox claim", out, n);
    stmt_done(st);
  }
  conn_release(c);
  return rc;
}

static int sq_outbox_settle(void *impl, cg__store_thread *t, int outcome,
                            int64_t id, int64_t revision,
                            const char *token_used, int token_uses,
                            int64_t next_at_ms, const char *error,
                            int64_t now_ms) {
  sq_conn *c;
  sqlite3_stmt *st = NULL;
  int rc = conn_acquire(impl, t, &c);
  if (rc) return rc;
  rc = stmt(c, t, ST_OUTBOX_SETTLE, &st);
  if (rc == 0) {
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_int64(st, 2, revision);
    bind_str(st, 3, token_used);
    sqlite3_bind_int(st, 4, token_uses);
    sqlite3_bind_int64(st, 5, next_at_ms);
    bind_str(st, 6, error);
    sqlite3_bind_int64(st, 7, now_ms);
    sqlite3_bind_int(st, 8, outcome);
    int s = sqlite3_step(st);
    if (s != SQLITE_DONE)
      rc = db_fail(t, c->db, s, "outbox update");
    else if (sqlite3_changes(c->db) != 1)
      rc = cg__store_seterr(t, CG_ENOTFOUND, "no pending outbox entry %lld",
                            (long long)id);
    stmt_done(st);
  }
  conn_release(c);
  return rc;
}

static int sq_outbox_list(void *impl, cg__store_thread *t, const char *state,
                          size_t limit, cg_outbox_entry **out, size_t *n) {
  sq_conn *c;
  sqlite3_stmt *st = NULL;
  int rc = conn_acquire(impl, t, &c);
  if (rc) return rc;
  rc = stmt(c, t, ST_OUTBOX_LIST, &st);
  if (rc == 0) {
    bind_str(st, 1, state);
    sqlite3_bind_int64(st, 2,
                       limit == 0 || limit > INT64_MAX ? -1 : (int64_t)limit);
    rc = read_outbox_rows(t, c, st, "outbox list", out, n);
    stmt_done(st);
  }
  conn_release(c);
  return rc;
}

static int sq_outbox_get(void *impl, cg__store_thread *t, int64_t id,
                         cg_outbox_entry *out) {
  sq_conn *c;
  sqlite3_stmt *st = NULL;
  int rc = conn_acquire(impl, t, &c);
  if (rc) return rc;
  rc = stmt(c, t, ST_OUTBOX_GET, &st);
  if (rc == 0) {
    sqlite3_bind_int64(st, 1, id);
    int s = sqlite3_step(st);
    if (s == SQLITE_ROW)
      rc = read_outbox(t, st, out);
    else if (s == SQLITE_DONE)
      rc = cg__store_seterr(t, CG_ENOTFOUND, "no outbox entry %lld",
                            (long long)id);
    else
      rc = db_fail(t, c->db, s, "outbox get");
    stmt_done(st);
  }
  conn_release(c);
  return rc;
}

static int sq_outbox_retry(void *impl, cg__store_thread *t, int64_t id,
                           int64_t now_ms) {
  sq_conn *c;
  sqlite3_stmt *st = NULL;
  int rc = conn_acquire(impl, t, &c);
  if (rc) return rc;
  rc = stmt(c, t, ST_OUTBOX_RETRY, &st);
  int changed = 0;
  if (rc == 0) {
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_int64(st, 2, now_ms);
    int s = sqlite3_step(st);
    if (s == SQLITE_CONSTRAINT_UNIQUE)
      rc = cg__store_seterr(t, CG_ECONFLICT,
                            "outbox entry %lld: a newer update of that card "
                            "is pending",
                            (long long)id);
    else if (s != SQLITE_DONE)
      rc = db_fail(t, c->db, s, "outbox retry");
    else
      changed = sqlite3_changes(c->db) == 1;
    stmt_done(st);
  }
  if (rc == 0 && !changed) { /* delivered, being delivered, or not there */
    cg_outbox_entry e;
    rc = sq_outbox_get(impl, t, id, &e);
    if (rc == 0) {
      int busy = e.state && strcmp(e.state, "pending") == 0;
      cg_outbox_entry_clear(&e);
      rc = busy ? cg__store_seterr(t, CG_EBUSY,
                                   "outbox entry %lld is being delivered right "
                                   "now; see its outcome with 'cardgate outbox "
                                   "show', retry it later if it fails",
                                   (long long)id)
                : cg__store_seterr(t, CG_ECONFLICT,
                                   "outbox entry %lld was delivered already",
                                   (long long)id);
    }
  }
  conn_release(c);
  return rc;
}

static int sq_kv_get(void *impl, cg__store_thread *t, const char *key,
                     char **value) {
  sq_conn *c;
  sqlite3_stmt *st = NULL;
  int rc = conn_acquire(impl, t, &c);
  if (rc) return rc;
  rc = stmt(c, t, ST_KV_GET, &st);
  if (rc == 0) {
    bind_str(st, 1, key);
    int s = sqlite3_step(st);
    if (s == SQLITE_ROW) {
      int oom = 0;
      *value = col_str(st, 0, &oom);
      if (oom || !*value)
        rc = cg__store_seterr(t, CG_ENOMEM, "out of memory");
    } else if (s == SQLITE_DONE) {
      rc = cg__store_seterr(t, CG_ENOTFOUND, "no value for %s", key);
    } else {
      rc = db_fail(t, c->db, s, "kv get");
    }
    stmt_done(st);
  }
  conn_release(c);
  return rc;
}

static int sq_kv_put(void *impl, cg__store_thread *t, const char *key,
                     const char *value, int64_t now_ms) {
  sq_conn *c;
  sqlite3_stmt *st = NULL;
  int rc = conn_acquire(impl, t, &c);
  if (rc) return rc;
  rc = stmt(c, t, ST_KV_PUT, &st);
  if (rc == 0) {
    bind_str(st, 1, key);
    bind_str(st, 2, value);
    sqlite3_bind_int64(st, 3, now_ms);
    int s = sqlite3_step(st);
    if (s != SQLITE_DONE) rc = db_fail(t, c->db, s, "kv put");
    stmt_done(st);
  }
  conn_release(c);
  return rc;
}

static int sq_outbox_drop(void *impl, cg__store_thread *t, int64_t id) {
  sq_conn *c;
  sqlite3_stmt *st = NULL;
  int rc = conn_acquire(impl, t, &c);
  if (rc) return rc;
  rc = stmt(c, t, ST_OUTBOX_DROP, &st);
  if (rc == 0) {
    sqlite3_bind_int64(st, 1, id);
    int s = sqlite3_step(st);
    if (s != SQLITE_DONE)
      rc = db_fail(t, c->db, s, "outbox drop");
    else if (sqlite3_changes(c->db) != 1)
      rc = cg__store_seterr(t, CG_ENOTFOUND, "no outbox entry %lld",
                            (long long)id);
    stmt_done(st);
  }
  conn_release(c);
  return rc;
}

const cg__store_ops cg__store_sqlite_ops = {
    .tx = sq_tx,
    .name = "sqlite",
    .open = sq_open,
    .conn_free = sq_conn_free,
    .close = sq_close,
    .schema_version = sq_schema_version,
    .card_get = sq_card_get,
    .card_insert = sq_card_insert,
    .card_cas = sq_card_cas,
    .cards_list = sq_cards_list,
    .action_add = sq_action_add,
    .actions_list = sq_actions_list,
    .seen_check = sq_seen_check,
    .seen_purge = sq_seen_purge,
    .seen_answer = sq_seen_answer,
    .outbox_enqueue = sq_outbox_enqueue,
    .kv_get = sq_kv_get,
    .kv_put = sq_kv_put,
    .outbox_claim = sq_outbox_claim,
    .outbox_settle = sq_outbox_settle,
    .outbox_list = sq_outbox_list,
    .outbox_get = sq_outbox_get,
    .outbox_retry = sq_outbox_retry,
    .outbox_drop = sq_outbox_drop,
};
