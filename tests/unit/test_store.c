/* The store (src/lib/store): SQLite backend through the public API, plus raw
 * SQLite peeks at the file where only the file can tell (migrations, WAL,
 * purging). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
/* cmocka needs the standard headers above */
#include <cmocka.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cardgate/store.h"
#include "common/common.h"

/* ---- helpers ----------------------------------------------------------- */

typedef struct tmpdir {
  char dir[256];
  char db[300];
} tmpdir;

static void tmp_make(tmpdir *t) {
  cg_fmt(t->dir, sizeof t->dir, "/tmp/cg_test_store_XXXXXX");
  assert_non_null(mkdtemp(t->dir));
  cg_fmt(t->db, sizeof t->db, "%s/cards.db", t->dir);
}

static void tmp_remove(tmpdir *t) {
  static const char *const sfx[] = {"", "-wal", "-shm", "-journal"};
  for (size_t i = 0; i < CG_ARRAY_SIZE(sfx); i++) {
    char p[320];
    cg_fmt(p, sizeof p, "%s%s", t->db, sfx[i]);
    unlink(p);
  }
  rmdir(t->dir);
}

static cg_store *open_ok(const char *url) {
  char eb[256];
  int err = 1;
  cg_store *s = cg_store_open(url, eb, sizeof eb, &err);
  if (!s) fail_msg("open %s: %d %s", url, err, eb);
  assert_int_equal(err, 0);
  return s;
}

/* One integer from a raw SQL query on the file. */
static long long raw_int(const char *db, const char *sql) {
  sqlite3 *h = NULL;
  sqlite3_stmt *st = NULL;
  assert_int_equal(sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL),
                   SQLITE_OK);
  assert_int_equal(sqlite3_prepare_v2(h, sql, -1, &st, NULL), SQLITE_OK);
  assert_int_equal(sqlite3_step(st), SQLITE_ROW);
  long long v = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  sqlite3_close(h);
  return v;
}

static cg_card_record card(const char *id, const char *state) {
  cg_card_record r;
  memset(&r, 0, sizeof r);
  r.message_id = (char *)id;
  r.platform = (char *)"lark";
  r.workflow = (char *)"approval";
  r.state = (char *)state;
  r.card_json = (char *)"{\"elements\":[]}";
  r.vars_json = (char *)"{\"status\":\"待处理\"}";
  return r;
}

/* ---- open, migrations -------------------------------------------------- */

static void test_open_memory(void **state) {
  (void)state;
  cg_store *s = open_ok(":memory:");
  assert_int_equal(cg_store_schema_version(s), 4);
  assert_string_equal(cg_store_last_error(s), "");
  cg_store_close(s);
  s = open_ok("sqlite::memory:");
  assert_int_equal(cg_store_schema_version(s), 4);
  cg_store_close(s);
  cg_store_close(NULL);
}

static void test_migrations_idempotent(void **state) {
  (void)state;
  tmpdir t;
  tmp_make(&t);
  char url[320];
  cg_fmt(url, sizeof url, "sqlite:%s", t.db);
  for (int i = 0; i < 3; i++) {
    cg_store *s = open_ok(i == 1 ? t.db : url);
    assert_int_equal(cg_store_schema_version(s), 4);
    cg_store_close(s);
  }
  assert_int_equal(raw_int(t.db, "SELECT count(*) FROM schema_migrations"), 4);
  assert_int_equal(raw_int(t.db, "SELECT max(version) FROM schema_migrations"),
                   4);
  assert_true(raw_int(t.db, "SELECT min(applied_at) FROM schema_migrations") >
              1700000000000LL);
  assert_int_equal(raw_int(t.db,
                           "SELECT count(*) FROM sqlite_master WHERE "
                           "name IN ('cards','actions','seen_events',"
                           "'actions_message')"),
                   4);

  /* WAL is a property of the file. */
  sqlite3 *h = NULL;
  sqlite3_stmt *st = NULL;
  assert_int_equal(sqlite3_open(t.db, &h), SQLITE_OK);
  assert_int_equal(sqlite3_prepare_v2(h, "PRAGMA journal_mode", -1, &st, NULL),
                   SQLITE_OK);
  assert_int_equal(sqlite3_step(st), SQLITE_ROW);
  assert_string_equal((const char *)sqlite3_column_text(st, 0), "wal");
  sqlite3_finalize(st);
  /* A schema newer than this build is refused, not downgraded. */
  assert_int_equal(
      sqlite3_exec(h, "INSERT INTO schema_migrations VALUES(99, 0)", NULL, NULL,
                   NULL),
      SQLITE_OK);
  sqlite3_close(h);
  char eb[256];
  int err = 0;
  assert_null(cg_store_open(t.db, eb, sizeof eb, &err));
  assert_int_equal(err, CG_ESTORE);
  assert_string_equal(eb,
                      "sqlite: database schema version 99 is newer than "
                      "this build knows (4)");
  tmp_remove(&t);
}

static void test_bad_urls(void **state) {
  (void)state;
  char eb[256];
  int err = 0;
  assert_null(cg_store_open(NULL, eb, sizeof eb, &err));
  assert_int_equal(err, CG_EINVAL);
  assert_null(cg_store_open("", eb, sizeof eb, &err));
  assert_int_equal(err, CG_EINVAL);
  assert_null(cg_store_open("sqlite:", eb, sizeof eb, &err));
  assert_int_equal(err, CG_EINVAL);
  assert_string_equal(eb, "store URL names no database path");

  assert_null(cg_store_open("postgres://u@localhost/cg", eb, sizeof eb, &err));
  assert_int_equal(err, CG_EUNSUPPORTED);
  assert_string_equal(eb, "PostgreSQL backend not built yet");
  assert_null(cg_store_open("postgresql://localhost", eb, sizeof eb, &err));
  assert_int_equal(err, CG_EUNSUPPORTED);
  assert_null(cg_store_open("mysql://localhost/x", eb, sizeof eb, &err));
  assert_int_equal(err, CG_EINVAL);
  assert_non_null(strstr(eb, "unknown store URL scheme"));

  assert_null(
      cg_store_open("/nonexistent-cg-dir/x/cards.db", eb, sizeof eb, &err));
  assert_int_equal(err, CG_ESTORE);
  assert_string_equal(eb,
                      "sqlite: cannot open /nonexistent-cg-dir/x/cards.db: "
                      "unable to open database file");
  /* errbuf and err are optional. */
  assert_null(cg_store_open("/nonexistent-cg-dir/x/cards.db", NULL, 0, NULL));

  tmpdir t;
  tmp_make(&t);
  /* A directory. */
  assert_null(cg_store_open(t.dir, eb, sizeof eb, &err));
  assert_int_equal(err, CG_ESTORE);
  assert_non_null(strstr(eb, "sqlite: "));
  /* A file that is not a database. */
  FILE *f = fopen(t.db, "wb");
  assert_non_null(f);
  for (int i = 0; i < 100; i++) fputs("this is not a database file\n", f);
  fclose(f);
  assert_null(cg_store_open(t.db, eb, sizeof eb, &err));
  assert_int_equal(err, CG_ESTORE);
  assert_non_null(strstr(eb, "file is not a database"));
  tmp_remove(&t);
}

/* ---- cards ------------------------------------------------------------- */

static void test_insert_get_conflict(void **state) {
  (void)state;
  cg_store *s = open_ok(":memory:");
  cg_card_record r = card("om_1", "pending");
  r.created_at_ms = 1000;
  assert_int_equal(cg_store_card_insert(s, &r), 0);

  cg_card_record got;
  assert_int_equal(cg_store_card_get(s, "om_1", &got), 0);
  assert_string_equal(got.message_id, "om_1");
  assert_string_equal(got.platform, "lark");
  assert_string_equal(got.workflow, "approval");
  assert_string_equal(got.state, "pending");
  assert_string_equal(got.card_json, "{\"elements\":[]}");
  assert_string_equal(got.vars_json, "{\"status\":\"待处理\"}");
  assert_int_equal(got.version, 1);
  assert_int_equal(got.created_at_ms, 1000);
  assert_int_equal(got.updated_at_ms, 1000);
  cg_card_record_clear(&got);
  assert_null(got.message_id);
  cg_card_record_clear(NULL);

  /* Absent optional fields come back NULL; times default to now. */
  cg_card_record bare;
  memset(&bare, 0, sizeof bare);
  bare.message_id = (char *)"om_bare";
  bare.platform = (char *)"dingtalk";
  bare.card_json = (char *)"{}";
  int64_t before = cg_now_ms();
  assert_int_equal(cg_store_card_insert(s, &bare), 0);
  assert_int_equal(cg_store_card_get(s, "om_bare", &got), 0);
  assert_null(got.workflow);
  assert_null(got.state);
  assert_null(got.vars_json);
  assert_true(got.created_at_ms >= before);
  assert_int_equal(got.updated_at_ms, got.created_at_ms);
  cg_card_record_clear(&got);

  assert_int_equal(cg_store_card_insert(s, &r), CG_ECONFLICT);
  assert_string_equal(cg_store_last_error(s), "card om_1 exists");
  assert_int_equal(cg_store_card_get(s, "om_none", &got), CG_ENOTFOUND);
  assert_null(got.message_id);
  assert_string_equal(cg_store_last_error(s), "no card om_none");

  /* Bad arguments. */
  assert_int_equal(cg_store_card_get(s, NULL, &got), CG_EINVAL);
  assert_int_equal(cg_store_card_get(s, "", &got), CG_EINVAL);
  assert_string_equal(cg_store_last_error(s), "message_id is empty");
  assert_int_equal(cg_store_card_get(s, "x", NULL), CG_EINVAL);
  assert_int_equal(cg_store_card_get(NULL, "x", &got), CG_EINVAL);
  char long_id[300];
  memset(long_id, 'a', sizeof long_id - 1);
  long_id[sizeof long_id - 1] = '\0';
  assert_int_equal(cg_store_card_get(s, long_id, &got), CG_EINVAL);
  assert_string_equal(cg_store_last_error(s),
                      "message_id is longer than 256 bytes");
  cg_card_record bad = card("om_2", "pending");
  bad.card_json = NULL;
  assert_int_equal(cg_store_card_insert(s, &bad), CG_EINVAL);
  assert_string_equal(cg_store_last_error(s), "card_json is empty");
  bad = card("om_2", "pending");
  bad.platform = NULL;
  assert_int_equal(cg_store_card_insert(s, &bad), CG_EINVAL);
  assert_int_equal(cg_store_card_insert(s, NULL), CG_EINVAL);
  assert_int_equal(cg_store_card_get(s, "om_2", &got), CG_ENOTFOUND);

  /* A success clears the thread's last error. */
  assert_int_equal(cg_store_card_get(s, "om_1", &got), 0);
  assert_string_equal(cg_store_last_error(s), "");
  cg_card_record_clear(&got);
  cg_store_close(s);
}

static void test_cas(void **state) {
  (void)state;
  cg_store *s = open_ok(":memory:");
  cg_card_record r = card("om_1", "pending");
  r.created_at_ms = 1000;
  assert_int_equal(cg_store_card_insert(s, &r), 0);

  cg_card_record upd = card("om_1", "accepted");
  upd.card_json = (char *)"{\"elements\":[1]}";
  upd.vars_json = (char *)"{\"status\":\"已同意\"}";
  assert_int_equal(cg_store_card_cas(s, &upd, 1), 0);
  /* The same expected version again: someone already moved it on. */
  upd.state = (char *)"rejected";
  assert_int_equal(cg_store_card_cas(s, &upd, 1), CG_ECONFLICT);
  assert_string_equal(cg_store_last_error(s),
                      "card om_1 is not at version 1 (or is gone)");
  assert_int_equal(cg_store_card_cas(s, &upd, 3), CG_ECONFLICT);

  cg_card_record got;
  assert_int_equal(cg_store_card_get(s, "om_1", &got), 0);
  assert_int_equal(got.version, 2);
  assert_string_equal(got.state, "accepted");
  assert_string_equal(got.card_json, "{\"elements\":[1]}");
  assert_string_equal(got.vars_json, "{\"status\":\"已同意\"}");
  assert_int_equal(got.created_at_ms, 1000);
  assert_true(got.updated_at_ms > 1000);
  cg_card_record_clear(&got);

  assert_int_equal(cg_store_card_cas(s, &upd, 2), 0);
  assert_int_equal(cg_store_card_get(s, "om_1", &got), 0);
  assert_int_equal(got.version, 3);
  assert_string_equal(got.state, "rejected");
  cg_card_record_clear(&got);

  cg_card_record missing = card("om_missing", "x");
  assert_int_equal(cg_store_card_cas(s, &missing, 1), CG_ECONFLICT);
  missing.card_json = (char *)"";
  assert_int_equal(cg_store_card_cas(s, &missing, 1), CG_EINVAL);
  cg_store_close(s);
}

/* ---- real concurrency -------------------------------------------------- */

#define RACERS 8

typedef struct race {
  cg_store *store; /* shared, or NULL: each racer opens its own */
  const char *url;
  pthread_barrier_t *barrier;
  const char *message_id;
  int idx;
  int rc;
} race;

static void *cas_racer(void *arg) {
  race *r = arg;
  cg_store *s = r->store;
  if (!s) s = cg_store_open(r->url, NULL, 0, NULL);
  char st[16];
  cg_fmt(st, sizeof st, "t%d", r->idx);
  cg_card_record rec = card(r->message_id, st);
  pthread_barrier_wait(r->barrier);
  r->rc = s ? cg_store_card_cas(s, &rec, 1) : CG_ESTORE;
  if (!r->store) cg_store_close(s);
  return NULL;
}

/* RACERS threads compare-and-set the same card from version 1 at once:
 * exactly one wins, every other gets CG_ECONFLICT (never another error). */
static void cas_race(cg_store *s, const char *url, int shared, int rounds) {
  for (int round = 0; round < rounds; round++) {
    char id[32];
    cg_fmt(id, sizeof id, "om_race_%d_%d", shared, round);
    cg_card_record r = card(id, "pending");
    assert_int_equal(cg_store_card_insert(s, &r), 0);
    pthread_barrier_t barrier;
    pthread_barrier_init(&barrier, NULL, RACERS);
    pthread_t th[RACERS];
    race rc[RACERS];
    for (int i = 0; i < RACERS; i++) {
      rc[i] = (race){shared ? s : NULL, url, &barrier, id, i, 1};
      assert_int_equal(pthread_create(&th[i], NULL, cas_racer, &rc[i]), 0);
    }
    int wins = 0, winner = -1;
    for (int i = 0; i < RACERS; i++) {
      pthread_join(th[i], NULL);
      if (rc[i].rc == 0) {
        wins++;
        winner = i;
      } else if (rc[i].rc != CG_ECONFLICT) {
        fail_msg("racer %d: %d", i, rc[i].rc);
      }
    }
    pthread_barrier_destroy(&barrier);
    assert_int_equal(wins, 1);
    cg_card_record got;
    assert_int_equal(cg_store_card_get(s, id, &got), 0);
    assert_int_equal(got.version, 2);
    char st[16];
    cg_fmt(st, sizeof st, "t%d", winner);
    assert_string_equal(got.state, st);
    cg_card_record_clear(&got);
  }
}

static void test_cas_concurrent_file(void **state) {
  (void)state;
  tmpdir t;
  tmp_make(&t);
  cg_store *s = open_ok(t.db);
  cas_race(s, t.db, 1, 20); /* one store, a connection per thread */
  cas_race(s, t.db, 0, 10); /* a store per thread: like separate instances */
  cg_store_close(s);
  tmp_remove(&t);
}

static void test_cas_concurrent_memory(void **state) {
  (void)state;
  cg_store *s = open_ok(":memory:");
  cas_race(s, NULL, 1, 20);
  cg_store_close(s);
}

typedef struct seen_race {
  cg_store *store;
  pthread_barrier_t *barrier;
  int rc;
} seen_race;

static void *seen_racer(void *arg) {
  seen_race *r = arg;
  pthread_barrier_wait(r->barrier);
  r->rc = cg_store_seen_check(r->store, "ev_race", 5000, 1000, NULL, NULL);
  return NULL;
}

static void test_seen_concurrent(void **state) {
  (void)state;
  tmpdir t;
  tmp_make(&t);
  cg_store *s = open_ok(t.db);
  pthread_barrier_t barrier;
  pthread_barrier_init(&barrier, NULL, RACERS);
  pthread_t th[RACERS];
  seen_race r[RACERS];
  for (int i = 0; i < RACERS; i++) {
    r[i] = (seen_race){s, &barrier, 1};
    assert_int_equal(pthread_create(&th[i], NULL, seen_racer, &r[i]), 0);
  }
  int fresh = 0;
  for (int i = 0; i < RACERS; i++) {
    pthread_join(th[i], NULL);
    if (r[i].rc == 0)
      fresh++;
    else
      assert_int_equal(r[i].rc, CG_EDUPLICATE);
  }
  pthread_barrier_destroy(&barrier);
  assert_int_equal(fresh, 1);
  cg_store_close(s);
  tmp_remove(&t);
}

typedef struct err_thread {
  cg_store *store;
  char seen[128];
} err_thread;

static void *other_thread(void *arg) {
  err_thread *e = arg;
  cg_strlcpy(e->seen, cg_store_last_error(e->store), sizeof e->seen);
  return NULL;
}

static void test_last_error_per_thread(void **state) {
  (void)state;
  cg_store *s = open_ok(":memory:");
  cg_card_record got;
  assert_int_equal(cg_store_card_get(s, "om_x", &got), CG_ENOTFOUND);
  err_thread e = {s, "?"};
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, other_thread, &e), 0);
  pthread_join(th, NULL);
  assert_string_equal(e.seen, ""); /* not this thread's failure */
  assert_string_equal(cg_store_last_error(s), "no card om_x");
  assert_string_equal(cg_store_last_error(NULL), "");
  cg_store_close(s);
}

/* ---- seen events ------------------------------------------------------- */

static void test_seen(void **state) {
  (void)state;
  cg_store *s = open_ok(":memory:");
  int status = -1;
  char *body = (char *)"x";
  assert_int_equal(cg_store_seen_check(s, "ev1", 1000, 500, &status, &body), 0);
  assert_int_equal(status, 0);
  assert_null(body);
  /* Seen, not answered yet. */
  assert_int_equal(cg_store_seen_check(s, "ev1", 1200, 500, &status, &body),
                   CG_EDUPLICATE);
  assert_int_equal(status, 0);
  assert_null(body);
  /* Answered: a redelivery replays the answer. */
  assert_int_equal(cg_store_seen_answer(s, "ev1", 200, "{\"toast\":{}}"), 0);
  assert_int_equal(cg_store_seen_check(s, "ev1", 1499, 500, &status, &body),
                   CG_EDUPLICATE);
  assert_int_equal(status, 200);
  assert_string_equal(body, "{\"toast\":{}}");
  free(body);
  /* Outputs are optional. */
  assert_int_equal(cg_store_seen_check(s, "ev1", 1499, 500, NULL, NULL),
                   CG_EDUPLICATE);
  /* Expired (the window is [now, now + ttl)): new again, answer forgotten. */
  assert_int_equal(cg_store_seen_check(s, "ev1", 1500, 500, &status, &body), 0);
  assert_int_equal(cg_store_seen_check(s, "ev1", 1600, 500, &status, &body),
                   CG_EDUPLICATE);
  assert_int_equal(status, 0);
  assert_null(body);
  /* An answer with no body. */
  assert_int_equal(cg_store_seen_answer(s, "ev1", 204, NULL), 0);
  assert_int_equal(cg_store_seen_check(s, "ev1", 1600, 500, &status, &body),
                   CG_EDUPLICATE);
  assert_int_equal(status, 204);
  assert_null(body);

  assert_int_equal(cg_store_seen_answer(s, "ev_never", 200, "{}"),
                   CG_ENOTFOUND);
  assert_string_equal(cg_store_last_error(s), "event ev_never was never seen");
  assert_int_equal(cg_store_seen_check(s, "", 1, 1, NULL, NULL), CG_EINVAL);
  assert_int_equal(cg_store_seen_check(s, NULL, 1, 1, NULL, NULL), CG_EINVAL);
  assert_int_equal(cg_store_seen_check(s, "e", 1, -1, NULL, NULL), CG_EINVAL);
  assert_int_equal(cg_store_seen_check(s, "e", INT64_MAX, 1, NULL, NULL),
                   CG_EINVAL);
  assert_int_equal(cg_store_seen_answer(s, NULL, 200, "{}"), CG_EINVAL);
  cg_store_close(s);
}

static void test_seen_purge(void **state) {
  (void)state;
  tmpdir t;
  tmp_make(&t);
  cg_store *s = open_ok(t.db);
  char id[32];
  /* Calls 1..10: short-lived ids. */
  for (int i = 0; i < 10; i++) {
    cg_fmt(id, sizeof id, "short_%d", i);
    assert_int_equal(cg_store_seen_check(s, id, 1000, 10, NULL, NULL), 0);
  }
  /* Calls 11..255, long after: nothing purged yet (not on every call). */
  for (int i = 0; i < 245; i++) {
    cg_fmt(id, sizeof id, "long_%d", i);
    assert_int_equal(cg_store_seen_check(s, id, 100000, 100000, NULL, NULL), 0);
  }
  assert_int_equal(raw_int(t.db, "SELECT count(*) FROM seen_events"), 255);
  /* Call 256 purges the expired ones. */
  assert_int_equal(
      cg_store_seen_check(s, "long_last", 100000, 100000, NULL, NULL), 0);
  assert_int_equal(raw_int(t.db, "SELECT count(*) FROM seen_events"), 246);
  assert_int_equal(
      raw_int(t.db,
              "SELECT count(*) FROM seen_events WHERE event_id LIKE "
              "'short_%'"),
      0);
  cg_store_close(s);
  tmp_remove(&t);
}

/* ---- listing, history, persistence ------------------------------------- */

typedef struct collect {
  char ids[16][32];
  int n;
  int stop_after;
  cg_store *store; /* when set, the callback re-enters the store */
} collect;

static int collect_card(const cg_card_record *r, void *ud) {
  collect *c = ud;
  cg_strlcpy(c->ids[c->n++], r->message_id, sizeof c->ids[0]);
  if (c->store) {
    cg_card_record again;
    assert_int_equal(cg_store_card_get(c->store, r->message_id, &again), 0);
    assert_int_equal(again.version, r->version);
    cg_card_record_clear(&again);
  }
  return c->stop_after && c->n >= c->stop_after;
}

static void test_list_ordering(void **state) {
  (void)state;
  cg_store *s = open_ok(":memory:");
  static const struct {
    const char *id;
    int64_t updated;
  } cards[] = {{"om_a", 100}, {"om_b", 300}, {"om_c", 200}, {"om_d", 200}};
  for (size_t i = 0; i < CG_ARRAY_SIZE(cards); i++) {
    cg_card_record r = card(cards[i].id, "pending");
    r.created_at_ms = 50;
    r.updated_at_ms = cards[i].updated;
    assert_int_equal(cg_store_card_insert(s, &r), 0);
  }
  collect c = {.n = 0};
  assert_int_equal(cg_store_cards_list(s, 0, collect_card, &c), 0);
  assert_int_equal(c.n, 4);
  assert_string_equal(c.ids[0], "om_b");
  assert_string_equal(c.ids[1], "om_c"); /* ties: by id */
  assert_string_equal(c.ids[2], "om_d");
  assert_string_equal(c.ids[3], "om_a");

  c = (collect){.n = 0};
  assert_int_equal(cg_store_cards_list(s, 2, collect_card, &c), 0);
  assert_int_equal(c.n, 2);
  assert_string_equal(c.ids[1], "om_c");

  c = (collect){.n = 0, .stop_after = 1};
  assert_int_equal(cg_store_cards_list(s, 0, collect_card, &c), 0);
  assert_int_equal(c.n, 1);

  /* An update makes a card the newest. The callback may use the store. */
  cg_card_record upd = card("om_a", "accepted");
  assert_int_equal(cg_store_card_cas(s, &upd, 1), 0);
  c = (collect){.n = 0, .store = s};
  assert_int_equal(cg_store_cards_list(s, 0, collect_card, &c), 0);
  assert_int_equal(c.n, 4);
  assert_string_equal(c.ids[0], "om_a");
  assert_int_equal(cg_store_cards_list(s, 0, NULL, NULL), CG_EINVAL);
  cg_store_close(s);

  s = open_ok(":memory:");
  c = (collect){.n = 0};
  assert_int_equal(cg_store_cards_list(s, 0, collect_card, &c), 0);
  assert_int_equal(c.n, 0);
  cg_store_close(s);
}

typedef struct hist {
  char results[8][64];
  char ops[8][32];
  int64_t at[8];
  int n;
} hist;

static int collect_action(const cg_action_record *a, void *ud) {
  hist *h = ud;
  assert_string_equal(a->message_id, "om_1");
  assert_string_equal(a->platform, "lark");
  assert_string_equal(a->kind, "card_action");
  assert_string_equal(a->value_json, "{\"action\":\"accept\"}");
  cg_strlcpy(h->results[h->n], a->result, sizeof h->results[0]);
  cg_strlcpy(h->ops[h->n], a->operator_id ? a->operator_id : "(null)",
             sizeof h->ops[0]);
  h->at[h->n++] = a->at_ms;
  return 0;
}

static void test_actions(void **state) {
  (void)state;
  cg_store *s = open_ok(":memory:");
  static const char *const results[] = {"pending -> accepted",
                                        "unchanged (accepted)", "error: boom"};
  for (int i = 0; i < 3; i++) {
    cg_action_record a = {"om_1",
                          "lark",
                          i == 2 ? NULL : "ou_a",
                          "card_action",
                          "{\"action\":\"accept\"}",
                          results[i],
                          1000 + i};
    assert_int_equal(cg_store_action_add(s, &a), 0);
  }
  cg_action_record other = {"om_2", "lark", "ou_b", "card_action",
                            "{}",   "x",    0};
  assert_int_equal(cg_store_action_add(s, &other), 0);
  hist h = {.n = 0};
  assert_int_equal(cg_store_actions_list(s, "om_1", collect_action, &h), 0);
  assert_int_equal(h.n, 3);
  for (int i = 0; i < 3; i++) {
    assert_string_equal(h.results[i], results[i]);
    assert_int_equal(h.at[i], 1000 + i);
  }
  assert_string_equal(h.ops[0], "ou_a");
  assert_string_equal(h.ops[2], "(null)");
  h.n = 0;
  assert_int_equal(cg_store_actions_list(s, "om_none", collect_action, &h), 0);
  assert_int_equal(h.n, 0);
  assert_int_equal(cg_store_actions_list(s, NULL, collect_action, &h),
                   CG_EINVAL);
  cg_action_record bad = {NULL, "lark", "ou", "k", "{}", "r", 0};
  assert_int_equal(cg_store_action_add(s, &bad), CG_EINVAL);
  cg_store_close(s);
}

/* A token replaced in a pending entry by a newer click's is never taken
 * back (its spent uses would be forgotten and a third use possible). */
static void test_outbox_token_never_taken_back(void **state) {
  (void)state;
  cg_store *s = open_ok(":memory:");
  cg_outbox_entry e;
  memset(&e, 0, sizeof e);
  e.platform = (char *)"lark";
  e.message_id = (char *)"om_tok";
  e.card_json = (char *)"{\"v\":1}";
  e.update_token = (char *)"c-A";
  e.token_expires_at_ms = 1000 + 1800000;
  int64_t id;
  assert_int_equal(cg_store_outbox_enqueue(s, &e, 1000, &id), 0);
  cg_outbox_entry *arr = NULL;
  size_t n = 0;
  assert_int_equal(cg_store_outbox_claim(s, 1000, 60000, 10, &arr, &n), 0);
  assert_int_equal(n, 1);
  int64_t rev = arr[0].revision;
  cg_outbox_entries_free(arr, n);
  /* one use of A spent, the attempt is retried later */
  assert_int_equal(cg_store_outbox_reschedule(s, id, rev, "c-A", 1, 2000, "timeout", 1500), 0);
  /* click B (later) answered late: its token takes over */
  e.update_token = (char *)"c-B";
  e.token_expires_at_ms = 5000 + 1800000;
  e.card_json = (char *)"{\"v\":2}";
  assert_int_equal(cg_store_outbox_enqueue(s, &e, 5000, &id), 0);
  /* a follow-up for click A: the card is newer, the token stays B */
  e.update_token = (char *)"c-A";
  e.token_expires_at_ms = 1000 + 1800000;
  e.card_json = (char *)"{\"v\":3}";
  assert_int_equal(cg_store_outbox_enqueue(s, &e, 6000, &id), 0);
  cg_outbox_entry got;
  assert_int_equal(cg_store_outbox_get(s, id, &got), 0);
  assert_string_equal(got.update_token, "c-B");
  assert_int_equal(got.token_uses, 0);
  assert_string_equal(got.card_json, "{\"v\":3}");
  cg_outbox_entry_clear(&got);
  cg_store_close(s);
}

static void test_outbox_lease_and_waits(void **state) {
  (void)state;
  cg_store *s = open_ok(":memory:");
  cg_outbox_entry e;
  memset(&e, 0, sizeof e);
  e.platform = (char *)"lark";
  e.message_id = (char *)"om_lease";
  e.card_json = (char *)"{\"v\":1}";
  int64_t id;
  assert_int_equal(cg_store_outbox_enqueue(s, &e, 1000, &id), 0);
  cg_outbox_entry *arr = NULL;
  size_t n = 0;
  assert_int_equal(cg_store_outbox_claim(s, 1000, 60000, 10, &arr, &n), 0);
  int64_t rev = arr[0].revision;
  cg_outbox_entries_free(arr, n);
  /* being delivered: a manual retry is refused, not a second send */
  assert_int_equal(cg_store_outbox_retry(s, id, 2000), CG_EBUSY);
  /* rate limited ten times: waits, not attempts */
  for (int i = 0; i < 10; i++) {
    assert_int_equal(cg_store_outbox_wait(s, id, rev, NULL, 0, 3000 + i, "rate limited", 2000 + i), 0);
    assert_int_equal(cg_store_outbox_claim(s, 3000 + i, 60000, 10, &arr, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(arr[0].attempts, 0);
    cg_outbox_entries_free(arr, n);
  }
  assert_int_equal(cg_store_outbox_reschedule(s, id, rev, NULL, 0, 90000, "timeout", 5000), 0);
  cg_outbox_entry got;
  assert_int_equal(cg_store_outbox_get(s, id, &got), 0);
  assert_int_equal(got.attempts, 1);
  cg_outbox_entry_clear(&got);
  /* no longer leased: the retry goes through */
  assert_int_equal(cg_store_outbox_retry(s, id, 6000), 0);
  /* a new card merged in starts with fresh attempts */
  assert_int_equal(cg_store_outbox_reschedule(s, id, rev, NULL, 0, 90000, "timeout", 7000), 0);
  e.card_json = (char *)"{\"v\":2}";
  assert_int_equal(cg_store_outbox_enqueue(s, &e, 8000, &id), 0);
  assert_int_equal(cg_store_outbox_get(s, id, &got), 0);
  assert_int_equal(got.attempts, 0);
  cg_outbox_entry_clear(&got);
  cg_store_close(s);
}

static void test_transactions(void **state) {
  (void)state;
  tmpdir t;
  tmp_make(&t);
  cg_store *s = open_ok(t.db);
  assert_int_equal(cg_store_commit(s), CG_EINVAL);
  assert_int_equal(cg_store_rollback(s), CG_EINVAL);
  /* rolled back: gone */
  assert_int_equal(cg_store_begin(s), 0);
  assert_int_equal(cg_store_begin(s), CG_EALREADY);
  cg_card_record r = card("om_tx1", "pending");
  assert_int_equal(cg_store_card_insert(s, &r), 0);
  cg_card_record got;
  assert_int_equal(cg_store_card_get(s, "om_tx1", &got), 0); /* own writes */
  cg_card_record_clear(&got);
  /* not visible to another connection before the commit */
  assert_int_equal(raw_int(t.db, "SELECT count(*) FROM cards"), 0);
  assert_int_equal(cg_store_rollback(s), 0);
  assert_int_equal(cg_store_card_get(s, "om_tx1", &got), CG_ENOTFOUND);
  /* committed: many calls, one transaction, all there */
  assert_int_equal(cg_store_begin(s), 0);
  assert_int_equal(cg_store_card_insert(s, &r), 0);
  r.state = (char *)"accepted";
  assert_int_equal(cg_store_card_cas(s, &r, 1), 0);
  assert_int_equal(cg_store_card_cas(s, &r, 1), CG_ECONFLICT); /* CAS inside too */
  cg_action_record a = {"om_tx1", "lark", "ou_a", "card_action", "{}", "pending -> accepted", 5};
  assert_int_equal(cg_store_action_add(s, &a), 0);
  assert_int_equal(cg_store_commit(s), 0);
  assert_int_equal(raw_int(t.db, "SELECT version FROM cards WHERE message_id='om_tx1'"), 2);
  assert_int_equal(raw_int(t.db, "SELECT count(*) FROM actions"), 1);
  cg_store_close(s);
  tmp_remove(&t);
}

static void test_file_survives_reopen(void **state) {
  (void)state;
  tmpdir t;
  tmp_make(&t);
  cg_store *s = open_ok(t.db);
  cg_card_record r = card("om_keep", "pending");
  assert_int_equal(cg_store_card_insert(s, &r), 0);
  r.state = (char *)"accepted";
  assert_int_equal(cg_store_card_cas(s, &r, 1), 0);
  cg_action_record a = {
      "om_keep", "lark", "ou_a", "card_action", "{}", "pending -> accepted", 5};
  assert_int_equal(cg_store_action_add(s, &a), 0);
  assert_int_equal(cg_store_seen_check(s, "ev_keep", 1000, 100000, NULL, NULL),
                   0);
  assert_int_equal(cg_store_seen_answer(s, "ev_keep", 200, "{}"), 0);
  cg_store_close(s);

  s = open_ok(t.db);
  cg_card_record got;
  assert_int_equal(cg_store_card_get(s, "om_keep", &got), 0);
  assert_string_equal(got.state, "accepted");
  assert_int_equal(got.version, 2);
  cg_card_record_clear(&got);
  int status = 0;
  char *body = NULL;
  assert_int_equal(
      cg_store_seen_check(s, "ev_keep", 2000, 100000, &status, &body),
      CG_EDUPLICATE);
  assert_int_equal(status, 200);
  assert_string_equal(body, "{}");
  free(body);
  cg_store_close(s);
  tmp_remove(&t);
}

typedef struct reader {
  cg_store *store;
  int rc;
} reader;

static void *read_card(void *arg) {
  reader *r = arg;
  cg_card_record got;
  r->rc = cg_store_card_get(r->store, "om_rel", &got);
  cg_card_record_clear(&got);
  return NULL;
}

/* A relative path means the directory current at open, also for the
 * connections other threads open later, after a chdir(). */
static void test_relative_path(void **state) {
  (void)state;
  tmpdir t;
  tmp_make(&t);
  char old[512];
  assert_non_null(getcwd(old, sizeof old));
  assert_int_equal(chdir(t.dir), 0);
  cg_store *s = open_ok("sqlite:cards.db");
  cg_card_record r = card("om_rel", "pending");
  assert_int_equal(cg_store_card_insert(s, &r), 0);
  assert_int_equal(chdir("/"), 0);
  reader rd = {s, 1};
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, read_card, &rd), 0);
  pthread_join(th, NULL);
  assert_int_equal(rd.rc, 0);
  cg_store_close(s);
  assert_int_equal(access(t.db, F_OK), 0);
  assert_int_equal(chdir(old), 0);
  tmp_remove(&t);
}

/* ---- the outbox -------------------------------------------------------- */

static cg_outbox_entry ob(const char *msg, const char *token, const char *card) {
  cg_outbox_entry e;
  memset(&e, 0, sizeof e);
  e.platform = (char *)"lark";
  e.message_id = (char *)msg;
  e.update_token = (char *)token;
  e.token_expires_at_ms = token ? 1000 + 1800000 : 0;
  e.card_json = (char *)card;
  return e;
}

static int count_one(const cg_outbox_entry *e, void *ud) {
  (void)e;
  (*(int *)ud)++;
  return 0;
}

static int ob_count(cg_store *s, const char *state) {
  int n = 0;
  assert_int_equal(cg_store_outbox_list(s, state, 0, count_one, &n), 0);
  return n;
}

static void test_outbox_enqueue_merge_claim(void **state) {
  (void)state;
  cg_store *s = open_ok(":memory:");
  cg_outbox_entry e = ob("om_1", "c-1", "{\"v\":1}");
  int64_t id1 = 0, id2 = 0, id3 = 0;
  assert_int_equal(cg_store_outbox_enqueue(s, &e, 1000, &id1), 0);
  assert_true(id1 > 0);
  /* A second update of the same card merges: same id, new card, rev 2. */
  e.card_json = (char *)"{\"v\":2}";
  assert_int_equal(cg_store_outbox_enqueue(s, &e, 1100, &id2), 0);
  assert_int_equal(id2, id1);
  /* Another card is another entry. */
  cg_outbox_entry e2 = ob("om_2", NULL, "{\"w\":1}");
  assert_int_equal(cg_store_outbox_enqueue(s, &e2, 1200, &id3), 0);
  assert_true(id3 != id1);
  assert_int_equal(ob_count(s, "pending"), 2);

  cg_outbox_entry got;
  assert_int_equal(cg_store_outbox_get(s, id1, &got), 0);
  assert_string_equal(got.card_json, "{\"v\":2}");
  assert_string_equal(got.state, "pending");
  assert_string_equal(got.update_token, "c-1");
  assert_int_equal(got.revision, 2);
  assert_int_equal(got.token_uses, 0);
  assert_int_equal(got.next_attempt_at_ms, 1000);
  assert_int_equal(got.created_at_ms, 1000);
  assert_int_equal(got.updated_at_ms, 1100);
  cg_outbox_entry_clear(&got);

  /* Claim: due ones only, oldest first, leased. */
  cg_outbox_entry *arr = NULL;
  size_t n = 0;
  assert_int_equal(cg_store_outbox_claim(s, 999, 60000, 10, &arr, &n), 0);
  assert_int_equal(n, 0);
  assert_null(arr);
  assert_int_equal(cg_store_outbox_claim(s, 1200, 60000, 1, &arr, &n), 0);
  assert_int_equal(n, 1);
  assert_int_equal(arr[0].id, id1);
  assert_int_equal(arr[0].next_attempt_at_ms, 61200);
  cg_outbox_entries_free(arr, n);
  assert_int_equal(cg_store_outbox_claim(s, 1200, 60000, 10, &arr, &n), 0);
  assert_int_equal(n, 1); /* id1 is leased */
  assert_int_equal(arr[0].id, id3);
  cg_outbox_entries_free(arr, n);
  assert_int_equal(cg_store_outbox_claim(s, 1300, 60000, 10, &arr, &n), 0);
  assert_int_equal(n, 0);
  /* The lease runs out: claimable again (a crash mid-delivery). */
  assert_int_equal(cg_store_outbox_claim(s, 61200, 60000, 10, &arr, &n), 0);
  assert_int_equal(n, 2);
  cg_outbox_entries_free(arr, n);

  /* Bad arguments. */
  e.message_id = (char *)"";
  assert_int_equal(cg_store_outbox_enqueue(s, &e, 1, NULL), CG_EINVAL);
  e.message_id = (char *)"om_x";
  e.card_json = NULL;
  assert_int_equal(cg_store_outbox_enqueue(s, &e, 1, NULL), CG_EINVAL);
  assert_int_equal(cg_store_outbox_list(s, "bogus", 0, count_one, &n), CG_EINVAL);
  cg_store_close(s);
}

static void test_outbox_settle(void **state) {
  (void)state;
  cg_store *s = open_ok(":memory:");
  cg_outbox_entry e = ob("om_1", "c-1", "{\"v\":1}");
  int64_t id = 0;
  assert_int_equal(cg_store_outbox_enqueue(s, &e, 1000, &id), 0);
  cg_outbox_entry got;

  /* Retry: attempts + 1, next time, error; the token use is counted. */
  assert_int_equal(cg_store_outbox_reschedule(s, id, 1, "c-1", 1, 5000, "http 502", 1500), 0);
  assert_int_equal(cg_store_outbox_get(s, id, &got), 0);
  assert_int_equal(got.attempts, 1);
  assert_int_equal(got.token_uses, 1);
  assert_int_equal(got.next_attempt_at_ms, 5000);
  assert_string_equal(got.last_error, "http 502");
  assert_string_equal(got.state, "pending");
  cg_outbox_entry_clear(&got);

  /* Delivered. */
  assert_int_equal(cg_store_outbox_delivered(s, id, 1, "c-1", 1, 6000), 0);
  assert_int_equal(cg_store_outbox_get(s, id, &got), 0);
  assert_string_equal(got.state, "delivered");
  assert_int_equal(got.attempts, 2);
  assert_int_equal(got.token_uses, 2);
  assert_null(got.last_error);
  cg_outbox_entry_clear(&got);
  /* Not pending any more. */
  assert_int_equal(cg_store_outbox_delivered(s, id, 1, NULL, 0, 6000), CG_ENOTFOUND);
  assert_int_equal(cg_store_outbox_retry(s, id, 7000), CG_ECONFLICT);

  /* A new update of that card with the same token starts with its spent uses. */
  e.card_json = (char *)"{\"v\":3}";
  int64_t id2 = 0;
  assert_int_equal(cg_store_outbox_enqueue(s, &e, 7000, &id2), 0);
  assert_true(id2 != id);
  assert_int_equal(cg_store_outbox_get(s, id2, &got), 0);
  assert_int_equal(got.token_uses, 2);
  cg_outbox_entry_clear(&got);

  /* Replaced while in flight: the delivery of rev 1 does not finish rev 2. */
  e.card_json = (char *)"{\"v\":4}";
  assert_int_equal(cg_store_outbox_enqueue(s, &e, 7100, NULL), 0);
  assert_int_equal(cg_store_outbox_delivered(s, id2, 1, NULL, 0, 7200), 0);
  assert_int_equal(cg_store_outbox_get(s, id2, &got), 0);
  assert_string_equal(got.state, "pending");
  assert_int_equal(got.next_attempt_at_ms, 7200);
  assert_int_equal(got.attempts, 0);
  cg_outbox_entry_clear(&got);
  /* Dead at the current revision. */
  assert_int_equal(cg_store_outbox_dead(s, id2, 2, NULL, 0, "code 230001", 7300), 0);
  assert_int_equal(cg_store_outbox_get(s, id2, &got), 0);
  assert_string_equal(got.state, "dead");
  assert_string_equal(got.last_error, "code 230001");
  assert_int_equal(got.attempts, 1);
  cg_outbox_entry_clear(&got);
  assert_int_equal(ob_count(s, "dead"), 1);
  assert_int_equal(ob_count(s, "delivered"), 1);
  assert_int_equal(ob_count(s, NULL), 2);

  /* Retry a dead one: due now, fresh attempts. */
  assert_int_equal(cg_store_outbox_retry(s, id2, 8000), 0);
  assert_int_equal(cg_store_outbox_get(s, id2, &got), 0);
  assert_string_equal(got.state, "pending");
  assert_int_equal(got.attempts, 0);
  assert_int_equal(got.next_attempt_at_ms, 8000);
  cg_outbox_entry_clear(&got);
  /* A dead entry cannot come back over a newer pending one. */
  assert_int_equal(cg_store_outbox_dead(s, id2, 2, NULL, 0, "x", 8100), 0);
  int64_t id3 = 0;
  assert_int_equal(cg_store_outbox_enqueue(s, &e, 8200, &id3), 0);
  assert_int_equal(cg_store_outbox_retry(s, id2, 8300), CG_ECONFLICT);
  assert_int_equal(cg_store_outbox_retry(s, 9999, 8300), CG_ENOTFOUND);

  /* Drop. */
  assert_int_equal(cg_store_outbox_drop(s, id3), 0);
  assert_int_equal(cg_store_outbox_drop(s, id3), CG_ENOTFOUND);
  assert_int_equal(cg_store_outbox_get(s, id3, &got), CG_ENOTFOUND);
  assert_int_equal(ob_count(s, NULL), 2);
  cg_store_close(s);
}

static void test_outbox_survives_reopen(void **state) {
  (void)state;
  tmpdir t;
  tmp_make(&t);
  cg_store *s = open_ok(t.db);
  cg_outbox_entry e = ob("om_r", "c-r", "{\"r\":1}");
  int64_t id = 0;
  assert_int_equal(cg_store_outbox_enqueue(s, &e, 1000, &id), 0);
  cg_store_close(s);
  s = open_ok(t.db);
  cg_outbox_entry *arr = NULL;
  size_t n = 0;
  assert_int_equal(cg_store_outbox_claim(s, 2000, 1000, 10, &arr, &n), 0);
  assert_int_equal(n, 1);
  assert_int_equal(arr[0].id, id);
  assert_string_equal(arr[0].card_json, "{\"r\":1}");
  assert_string_equal(arr[0].update_token, "c-r");
  cg_outbox_entries_free(arr, n);
  cg_store_close(s);
  tmp_remove(&t);
}

/* Schema 3: an entry's tenant key (kept by a merge that names none) and
 * the key-value records (a store app's app_ticket), across a reopen. */
static void test_tenant_key_and_kv(void **state) {
  (void)state;
  tmpdir t;
  tmp_make(&t);
  cg_store *s = open_ok(t.db);
  cg_outbox_entry e = ob("om_tk", "c-tk", "{\"v\":1}");
  e.tenant_key = (char *)"tnt_a";
  int64_t id = 0;
  assert_int_equal(cg_store_outbox_enqueue(s, &e, 1000, &id), 0);
  cg_outbox_entry e2 = ob("om_tk", NULL, "{\"v\":2}");
  assert_int_equal(cg_store_outbox_enqueue(s, &e2, 1001, NULL), 0);
  char *v = (char *)1;
  assert_int_equal(cg_store_kv_get(s, "lark.app_ticket.cli_x", &v), CG_ENOTFOUND);
  assert_null(v);
  assert_int_equal(cg_store_kv_put(s, "lark.app_ticket.cli_x", "tk-1", 5), 0);
  assert_int_equal(cg_store_kv_put(s, "lark.app_ticket.cli_x", "tk-2", 6), 0);
  assert_int_equal(cg_store_kv_put(s, "", "x", 6), CG_EINVAL);
  cg_store_close(s);
  s = open_ok(t.db);
  assert_int_equal(cg_store_kv_get(s, "lark.app_ticket.cli_x", &v), 0);
  assert_string_equal(v, "tk-2");
  free(v);
  cg_outbox_entry got;
  assert_int_equal(cg_store_outbox_get(s, id, &got), 0);
  assert_string_equal(got.tenant_key, "tnt_a");
  assert_string_equal(got.card_json, "{\"v\":2}");
  cg_outbox_entry_clear(&got);
  cg_store_close(s);
  tmp_remove(&t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_open_memory),
      cmocka_unit_test(test_migrations_idempotent),
      cmocka_unit_test(test_bad_urls),
      cmocka_unit_test(test_insert_get_conflict),
      cmocka_unit_test(test_cas),
      cmocka_unit_test(test_cas_concurrent_file),
      cmocka_unit_test(test_cas_concurrent_memory),
      cmocka_unit_test(test_seen_concurrent),
      cmocka_unit_test(test_last_error_per_thread),
      cmocka_unit_test(test_seen),
      cmocka_unit_test(test_seen_purge),
      cmocka_unit_test(test_list_ordering),
      cmocka_unit_test(test_actions),
      cmocka_unit_test(test_file_survives_reopen),
      cmocka_unit_test(test_transactions),
      cmocka_unit_test(test_outbox_token_never_taken_back),
      cmocka_unit_test(test_outbox_lease_and_waits),
      cmocka_unit_test(test_relative_path),
      cmocka_unit_test(test_outbox_enqueue_merge_claim),
      cmocka_unit_test(test_outbox_settle),
      cmocka_unit_test(test_outbox_survives_reopen),
      cmocka_unit_test(test_tenant_key_and_kv),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
