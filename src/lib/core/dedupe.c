#include "dedupe.h"

#include <stdlib.h>
#include <string.h>

#include "../../common/common.h"
#include "../../common/limits.h"

typedef struct waiter {
  cg_http_done_fn done;
  void *ud;
  struct waiter *next;
} waiter;

typedef struct entry {
  char *id;
  uint32_t hash;
  int64_t expires_ms;
  int answered;
  int status;
  char *body;
  size_t len;
  waiter *waiters;
  struct entry *chain;  /* bucket chain */
  struct entry *older;  /* FIFO: towards the head (oldest) */
  struct entry *newer;
} entry;

struct cg__dedupe {
  entry **buckets;
  size_t nbuckets; /* power of two */
  size_t count;
  size_t max;
  entry *oldest;
  entry *newest;
  size_t bytes;     /* ids and answers held */
  size_t max_bytes;
  uint32_t seed;
};

/* FNV-1a from a per-table random basis. Only requests that passed
 * verification reach the table (when secrets are configured), so hash
 * flooding would need the platform's signature; the seed makes it harder
 * in development mode too. */
static uint32_t hash_str(const cg__dedupe *d, const char *s) {
  uint32_t h = 2166136261u ^ d->seed;
  for (; *s; s++) {
    h ^= (unsigned char)*s;
    h *= 16777619u;
  }
  return h;
}

cg__dedupe *cg__dedupe_new(size_t max_entries) {
  cg__dedupe *d = calloc(1, sizeof(*d));
  if (!d) return NULL;
  d->max = max_entries ? max_entries : 1;
  d->max_bytes = CG_LIMIT_DEDUPE_BYTES;
  if (uv_random(NULL, NULL, &d->seed, sizeof(d->seed), 0, NULL) != 0) d->seed = (uint32_t)(uintptr_t)d;
  d->nbuckets = 1024;
  while (d->nbuckets < d->max / 2 && d->nbuckets < (1u << 20)) d->nbuckets *= 2;
  d->buckets = calloc(d->nbuckets, sizeof(*d->buckets));
  if (!d->buckets) {
    free(d);
    return NULL;
  }
  return d;
}

static void entry_free(entry *e) {
  for (waiter *w = e->waiters, *n; w; w = n) {
    n = w->next;
    free(w);
  }
  free(e->id);
  free(e->body);
  free(e);
}

static void remove_entry(cg__dedupe *d, entry *e) {
  entry **pp = &d->buckets[e->hash & (d->nbuckets - 1)];
  while (*pp && *pp != e) pp = &(*pp)->chain;
  if (*pp) *pp = e->chain;
  if (e->older) e->older->newer = e->newer;
  else d->oldest = e->newer;
  if (e->newer) e->newer->older = e->older;
  else d->newest = e->older;
  d->count--;
  d->bytes -= strlen(e->id) + e->len;
  entry_free(e);
}

void cg__dedupe_free(cg__dedupe *d) {
  if (!d) return;
  for (entry *e = d->oldest, *n; e; e = n) {
    n = e->newer;
    entry_free(e);
  }
  free(d->buckets);
  free(d);
}

static entry *find(const cg__dedupe *d, const char *id, uint32_t h) {
  for (entry *e = d->buckets[h & (d->nbuckets - 1)]; e; e = e->chain)
    if (e->hash == h && strcmp(e->id, id) == 0) return e;
  return NULL;
}

int cg__dedupe_begin(cg__dedupe *d, const char *id, int64_t now_ms,
                     int64_t ttl_ms, int *status, const char **body,
                     size_t *len) {
  /* Expire from the oldest end; in-flight entries are never expired (their
   * handler is bounded by the deadline anyway). */
  while (d->oldest && d->oldest->answered && d->oldest->expires_ms <= now_ms)
    remove_entry(d, d->oldest);
  uint32_t h = hash_str(d, id);
  entry *e = find(d, id, h);
  if (e) {
    /* An entry in flight is never dropped: its waiters must get the answer
     * (the handler is bounded by the deadline anyway). */
    if (!e->answered) return CG__DEDUPE_INFLIGHT;
    if (e->expires_ms > now_ms) {
      *status = e->status;
      *body = e->body;
      *len = e->len;
      return CG__DEDUPE_ANSWERED;
    }
    remove_entry(d, e);
  }
  while ((d->count >= d->max || d->bytes > d->max_bytes) && d->oldest && d->oldest->answered)
    remove_entry(d, d->oldest);
  e = calloc(1, sizeof(*e));
  if (!e) return CG_ENOMEM;
  e->id = cg_strdup(id);
  if (!e->id) {
    free(e);
    return CG_ENOMEM;
  }
  e->hash = h;
  e->expires_ms = now_ms + ttl_ms;
  size_t b = h & (d->nbuckets - 1);
  e->chain = d->buckets[b];
  d->buckets[b] = e;
  e->older = d->newest;
  if (d->newest) d->newest->newer = e;
  else d->oldest = e;
  d->newest = e;
  d->count++;
  d->bytes += strlen(e->id);
  return CG__DEDUPE_NEW;
}

int cg__dedupe_wait(cg__dedupe *d, const char *id, cg_http_done_fn done, void *ud) {
  entry *e = find(d, id, hash_str(d, id));
  if (!e || e->answered) return CG_ENOTFOUND;
  waiter *w = malloc(sizeof(*w));
  if (!w) return CG_ENOMEM;
  w->done = done;
  w->ud = ud;
  w->next = e->waiters;
  e->waiters = w;
  return 0;
}

void cg__dedupe_answer(cg__dedupe *d, const char *id, int status,
                       const char *body, size_t len) {
  entry *e = find(d, id, hash_str(d, id));
  if (!e || e->answered) return;
  e->body = cg_strndup(body, len);
  if (!e->body) { /* cannot remember it: forget the id rather than lie */
    waiter *ws = e->waiters;
    e->waiters = NULL;
    remove_entry(d, e);
    for (waiter *w = ws, *n; w; w = n) {
      n = w->next;
      w->done(status, body, len, w->ud);
      free(w);
    }
    return;
  }
  e->answered = 1;
  e->status = status;
  e->len = len;
  d->bytes += len;
  waiter *ws = e->waiters;
  e->waiters = NULL;
  for (waiter *w = ws, *n; w; w = n) {
    n = w->next;
    w->done(status, body, len, w->ud);
    free(w);
  }
}

size_t cg__dedupe_size(const cg__dedupe *d) { return d->count; }
