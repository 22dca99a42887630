/* The outbox's delivery engine. See outbox.h and docs/outbox.md.
 *
 * One poll: a store-worker job claims (leases) up to `batch` due entries;
 * back on the loop each is sent through the Lark Open API client; its result
 * becomes one more store-worker job (delivered / reschedule / dead). At most
 * one claim is in flight; an entry is never sent before it is committed. */
#include "outbox.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/common.h"

struct cg__outbox {
  uv_loop_t *loop;
  cg__outbox_options o;
  uv_timer_t timer;
  unsigned refs;      /* the timer handle + jobs queued + requests in flight */
  int closing;
  int claiming;       /* a claim job is queued */
  int again;          /* poll again as soon as the claim is back */
  uint64_t seed;      /* jitter */
  cg__outbox_stats st;
};

/* ---------------------------------------------------------------- helpers */

static void logf_(const cg__outbox *ob, cg_log_level lv, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void logf_(const cg__outbox *ob, cg_log_level lv, const char *fmt, ...) {
  if (!ob->o.log || lv < ob->o.log_level) return;
  char line[768];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  ob->o.log(lv, "outbox", line, ob->o.log_ud);
}

static void unref(cg__outbox *ob) {
  if (--ob->refs == 0) free(ob);
}

static uint64_t rnd(cg__outbox *ob) { /* xorshift64*: jitter only */
  uint64_t x = ob->seed;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  ob->seed = x;
  return x * 2685821657736338717ull;
}

/* Exponential backoff with "equal jitter": the n-th retry waits between
 * half and all of min(max, base * 2^(n-1)). */
static int64_t backoff_ms(cg__outbox *ob, int attempts) {
  uint64_t d = ob->o.backoff_base_ms;
  for (int i = 1; i < attempts && d < ob->o.backoff_max_ms; i++) d *= 2;
  if (d > ob->o.backoff_max_ms) d = ob->o.backoff_max_ms;
  uint64_t half = d / 2;
  return (int64_t)(half + (half ? rnd(ob) % (half + 1) : 0));
}

void cg__outbox_options_init(cg__outbox_options *o) {
  memset(o, 0, sizeof *o);
  o->max_attempts = 8;
  o->poll_ms = 1000;
  o->batch = 32;
  o->backoff_base_ms = 1000;
  o->backoff_max_ms = 300000;
  o->lease_ms = 60000;
  o->log_level = CG_LOG_INFO;
}

/* ------------------------------------------------------------ store jobs */

typedef struct enqueue_job {
  cg__job job;
  cg__outbox *ob;
  cg_outbox_entry e; /* owned strings */
  int64_t now_ms;
  int64_t id;
  int rc;
  char err[256];
} enqueue_job;

typedef struct claim_job {
  cg__job job;
  cg__outbox *ob;
  int64_t now_ms;
  cg_outbox_entry *arr;
  size_t n;
  int rc;
  char err[256];
} claim_job;

enum { SETTLE_DELIVERED = 1, SETTLE_RESCHEDULE, SETTLE_DEAD, SETTLE_WAIT };

typedef struct settle_job {
  cg__job job;
  cg__outbox *ob;
  int outcome;
  int64_t id, revision;
  char *token_used; /* owned, or NULL */
  int token_uses;
  int64_t next_at_ms, now_ms;
  char error[300];
  int rc;
  int kick; /* due again at once: poll after the commit */
} settle_job;

static void poll_now(cg__outbox *ob);

static void enqueue_run(cg__job *job, cg_store *s) {
  enqueue_job *j = CG_CONTAINER_OF(job, enqueue_job, job);
  j->rc = cg_store_outbox_enqueue(s, &j->e, j->now_ms, &j->id);
  if (j->rc) cg_strlcpy(j->err, cg_store_last_error(s), sizeof j->err);
}

static void enqueue_done(cg__job *job) {
  enqueue_job *j = CG_CONTAINER_OF(job, enqueue_job, job);
  cg__outbox *ob = j->ob;
  if (j->rc || j->job.commit_rc)
    logf_(ob, CG_LOG_ERROR, "could not store the update of %s: %s; it is lost", j->e.message_id,
          j->rc ? j->err : cg_strerror(j->job.commit_rc));
  else {
    ob->st.enqueued++;
    logf_(ob, CG_LOG_INFO, "update of %s stored as outbox entry %lld", j->e.message_id, (long long)j->id);
    if (!ob->closing) poll_now(ob);
  }
  cg_outbox_entry_clear(&j->e);
  free(j);
  unref(ob);
}

static void settle_run(cg__job *job, cg_store *s) {
  settle_job *j = CG_CONTAINER_OF(job, settle_job, job);
  switch (j->outcome) {
    case SETTLE_DELIVERED:
      j->rc = cg_store_outbox_delivered(s, j->id, j->revision, j->token_used, j->token_uses, j->now_ms);
      break;
    case SETTLE_RESCHEDULE:
      j->rc = cg_store_outbox_reschedule(s, j->id, j->revision, j->token_used, j->token_uses, j->next_at_ms,
                                         j->error, j->now_ms);
      break;
    case SETTLE_WAIT:
      j->rc = cg_store_outbox_wait(s, j->id, j->revision, j->token_used, j->token_uses, j->next_at_ms, j->error,
                                   j->now_ms);
      break;
    default:
      j->rc = cg_store_outbox_dead(s, j->id, j->revision, j->token_used, j->token_uses, j->error, j->now_ms);
  }
}

static void settle_done(cg__job *job) {
  settle_job *j = CG_CONTAINER_OF(job, settle_job, job);
  cg__outbox *ob = j->ob;
  if (j->rc == CG_ENOTFOUND)
    logf_(ob, CG_LOG_INFO, "outbox entry %lld was dropped while it was being delivered", (long long)j->id);
  else if (j->rc || j->job.commit_rc)
    logf_(ob, CG_LOG_WARN, "outbox entry %lld: could not record the outcome (%s); it is retried after its lease",
          (long long)j->id, cg_strerror(j->rc ? j->rc : j->job.commit_rc));
  else if (j->kick && !ob->closing)
    poll_now(ob);
  free(j->token_used);
  free(j);
  unref(ob);
}

static void submit_settle(cg__outbox *ob, settle_job *j) {
  j->ob = ob;
  j->job.run = settle_run;
  j->job.done = settle_done;
  ob->refs++;
  cg__store_worker_submit(ob->o.worker, &j->job);
}

/* -------------------------------------------------------------- delivery */

typedef struct delivery {
  cg__outbox *ob;
  int64_t id, revision;
  int attempts; /* before this one */
  char *message_id;
  char *token; /* the callback token sent, or NULL (patch) */
  char *tenant_key; /* store apps: whose tenant token; NULL otherwise */
  int dingtalk;     /* a DingTalk card update */
} delivery;

static void delivery_free(delivery *d) {
  free(d->message_id);
  free(d->tenant_key);
  if (d->token) {
    memset(d->token, 0, strlen(d->token));
    free(d->token);
  }
  free(d);
}

static void on_result(const cg__lark_result *res, void *ud) {
  delivery *d = ud;
  cg__outbox *ob = d->ob;
  ob->st.in_flight--;
  if (res->cls == CG__API_CANCELLED || ob->closing) {
    /* Closing: the entry stays leased and is delivered after the lease. */
    delivery_free(d);
    unref(ob);
    return;
  }
  settle_job *j = calloc(1, sizeof *j);
  if (!j) {
    logf_(ob, CG_LOG_ERROR, "outbox entry %lld: out of memory; retried after its lease", (long long)d->id);
    delivery_free(d);
    unref(ob);
    return;
  }
  int64_t now = cg_now_ms();
  j->id = d->id;
  j->revision = d->revision;
  j->now_ms = now;
  j->next_at_ms = now;
  const char *how = d->dingtalk ? "card update" : d->token ? "delayed update" : "message patch";
  if (d->token) {
    j->token_used = cg_strdup(d->token);
    /* A use is spent when the request may have reached Lark's card service:
     * not when the token fetch failed (never sent) or the gateway refused
     * it for the rate limit. Counting a doubtful one keeps the budget safe
     * (the fallback is a patch, never a third use). */
    j->token_uses = (res->token_error || res->cls == CG__API_RATE_LIMITED) ? 0 : 1;
  }
  int attempts = d->attempts + 1;
  if (res->has_code)
    cg_fmt(j->error, sizeof j->error, "%s: %s, http %d, code %lld: %.160s", how, cg__api_class_name(res->cls),
           res->http_status, (long long)res->code, res->msg);
  else
    cg_fmt(j->error, sizeof j->error, "%s: %s, http %d: %.160s", how, cg__api_class_name(res->cls),
           res->http_status, res->msg[0] ? res->msg : cg_strerror(res->err));
  switch (res->cls) {
    case CG__API_OK:
      j->outcome = SETTLE_DELIVERED;
      ob->st.delivered++;
      logf_(ob, CG_LOG_INFO, "outbox entry %lld: %s of %s delivered (attempt %d, logid %s)", (long long)d->id, how,
            d->message_id, attempts, res->logid);
      break;
    case CG__API_RATE_LIMITED:
      /* Lark said when: wait that long (plus a little jitter so a burst of
       * entries does not come back at the same millisecond). Not fatal. */
      j->outcome = SETTLE_WAIT; /* not an attempt: many 429s never kill an entry */
      j->next_at_ms = now + (int64_t)res->retry_after_ms + (int64_t)(rnd(ob) % 250);
      ob->st.retried++;
      logf_(ob, CG_LOG_WARN, "outbox entry %lld: rate limited, retry in %llu ms (logid %s)", (long long)d->id,
            (unsigned long long)res->retry_after_ms, res->logid);
      break;
    case CG__API_PERMANENT:
      if (d->token && !res->token_error) {
        /* The card service refused the token (expired, used up, wrong
         * card): retire it and patch the message instead, at once. */
        j->outcome = SETTLE_WAIT;
        j->token_uses = CG__OUTBOX_TOKEN_USES;
        j->kick = 1;
        ob->st.retried++;
        logf_(ob, CG_LOG_WARN, "outbox entry %lld: %s; token retired, patching the message next", (long long)d->id,
              j->error);
        break;
      }
      j->outcome = SETTLE_DEAD;
      ob->st.dead++;
      logf_(ob, CG_LOG_ERROR, "outbox entry %lld: %s; dead (logid %s)", (long long)d->id, j->error, res->logid);
      break;
    default: /* RETRYABLE, TOKEN_INVALID */
      if ((uint32_t)attempts >= ob->o.max_attempts) {
        j->outcome = SETTLE_DEAD;
        ob->st.dead++;
        logf_(ob, CG_LOG_ERROR, "outbox entry %lld: %s; dead after %d attempts", (long long)d->id, j->error,
              attempts);
      } else {
        j->outcome = SETTLE_RESCHEDULE;
        int64_t wait = backoff_ms(ob, attempts);
        j->next_at_ms = now + wait;
        ob->st.retried++;
        logf_(ob, CG_LOG_WARN, "outbox entry %lld: %s; retry %d in %lld ms", (long long)d->id, j->error, attempts,
              (long long)wait);
      }
  }
  delivery_free(d);
  submit_settle(ob, j);
  unref(ob); /* the request's reference */
}

/* A DingTalk answer in the outbox's terms (the class is shared,
 * api_class.h); DingTalk's codes are strings, so they travel in msg. */
static void on_dt_result(const cg__dt_api_result *res, void *ud) {
  cg__lark_result r;
  memset(&r, 0, sizeof r);
  r.cls = res->cls;
  r.err = res->err;
  r.http_status = res->http_status;
  r.retry_after_ms = res->retry_after_ms;
  r.token_error = res->token_error;
  r.attempts = res->attempts;
  if (res->code[0])
    cg_fmt(r.msg, sizeof r.msg, "%s: %s", res->code, res->msg);
  else
    cg_strlcpy(r.msg, res->msg, sizeof r.msg);
  cg_strlcpy(r.logid, res->request_id, sizeof r.logid);
  on_result(&r, ud);
}

/* Whether e's callback token may be used now (lark.md §4.5). */
static int token_usable(const cg_outbox_entry *e, int64_t now) {
  return e->update_token && e->token_uses < CG__OUTBOX_TOKEN_USES &&
         now + CG__OUTBOX_TOKEN_MARGIN_MS < e->token_expires_at_ms;
}

static void deliver(cg__outbox *ob, const cg_outbox_entry *e) {
  int64_t now = cg_now_ms();
  delivery *d = calloc(1, sizeof *d);
  if (d) {
    d->ob = ob;
    d->id = e->id;
    d->revision = e->revision;
    d->attempts = e->attempts;
    d->message_id = cg_strdup(e->message_id);
    d->dingtalk = e->platform && strcmp(e->platform, "dingtalk") == 0;
    if (!d->dingtalk && token_usable(e, now)) d->token = cg_strdup(e->update_token);
    if (e->tenant_key) d->tenant_key = cg_strdup(e->tenant_key);
  }
  if (!d || !d->message_id || (!d->dingtalk && token_usable(e, now) && !d->token) ||
      (e->tenant_key && !d->tenant_key)) {
    logf_(ob, CG_LOG_ERROR, "outbox entry %lld: out of memory; retried after its lease", (long long)e->id);
    if (d) delivery_free(d);
    return;
  }
  int rc;
  if (d->dingtalk)
    rc = ob->o.dt_api ? cg__dt_api_update_card(ob->o.dt_api, e->message_id, e->card_json, 1, on_dt_result, d)
                      : CG_ECONFIG;
  else
    rc = !ob->o.api ? CG_ECONFIG
         : d->token ? cg__lark_delay_update(ob->o.api, d->tenant_key, d->token, e->card_json, on_result, d)
                    : cg__lark_patch_card(ob->o.api, d->tenant_key, e->message_id, e->card_json, on_result, d);
  if (rc == 0) {
    ob->refs++;
    ob->st.in_flight++;
    if (d->token) ob->st.token_updates++;
    else if (!d->dingtalk) ob->st.patches++;
    return;
  }
  if (rc == CG_EALREADY || rc == CG_ENOMEM) { /* closing / no memory: after the lease */
    delivery_free(d);
    return;
  }
  /* The card itself is unusable (not a JSON object, too big …): dead. */
  settle_job *j = calloc(1, sizeof *j);
  if (j) {
    j->outcome = SETTLE_DEAD;
    j->id = e->id;
    j->revision = e->revision;
    j->now_ms = j->next_at_ms = now;
    cg_fmt(j->error, sizeof j->error, "card refused before sending: %s",
           rc == CG_ECONFIG ? "no Open API client for this platform (credentials not configured)" : cg_strerror(rc));
    ob->st.dead++;
    logf_(ob, CG_LOG_ERROR, "outbox entry %lld: %s; dead", (long long)e->id, j->error);
    submit_settle(ob, j);
  }
  delivery_free(d);
}

/* ----------------------------------------------------------------- polls */

static void claim_run(cg__job *job, cg_store *s) {
  claim_job *j = CG_CONTAINER_OF(job, claim_job, job);
  j->rc = cg_store_outbox_claim(s, j->now_ms, j->ob->o.lease_ms, j->ob->o.batch, &j->arr, &j->n);
  if (j->rc) cg_strlcpy(j->err, cg_store_last_error(s), sizeof j->err);
}

static void claim_done(cg__job *job) {
  claim_job *j = CG_CONTAINER_OF(job, claim_job, job);
  cg__outbox *ob = j->ob;
  ob->claiming = 0;
  if (j->rc || j->job.commit_rc) {
    logf_(ob, CG_LOG_WARN, "could not claim due updates: %s", j->rc ? j->err : cg_strerror(j->job.commit_rc));
  } else if (!ob->closing) {
    ob->st.claimed += j->n;
    for (size_t i = 0; i < j->n; i++) deliver(ob, &j->arr[i]);
    /* A full batch: there may be more due right now. */
    if (j->n == ob->o.batch) ob->again = 1;
  }
  /* Not committed: the leases were not taken, nothing was sent. */
  cg_outbox_entries_free(j->arr, j->n);
  free(j);
  if (ob->again && !ob->closing) {
    ob->again = 0;
    poll_now(ob);
  }
  unref(ob);
}

static void poll_now(cg__outbox *ob) {
  if (ob->closing) return;
  if (ob->claiming) {
    ob->again = 1;
    return;
  }
  claim_job *j = calloc(1, sizeof *j);
  if (!j) return; /* the next tick tries again */
  j->ob = ob;
  j->now_ms = cg_now_ms();
  j->job.run = claim_run;
  j->job.done = claim_done;
  ob->claiming = 1;
  ob->refs++;
  cg__store_worker_submit(ob->o.worker, &j->job);
}

static void on_tick(uv_timer_t *t) {
  poll_now(CG_CONTAINER_OF(t, cg__outbox, timer));
}

/* ------------------------------------------------------------ life cycle */

cg__outbox *cg__outbox_new(uv_loop_t *loop, const cg__outbox_options *o, int *err) {
  if (!loop || !o || !o->worker || (!o->api && !o->dt_api)) {
    if (err) *err = CG_EINVAL;
    return NULL;
  }
  cg__outbox *ob = calloc(1, sizeof *ob);
  if (!ob) {
    if (err) *err = CG_ENOMEM;
    return NULL;
  }
  ob->loop = loop;
  ob->o = *o;
  cg__outbox_options d;
  cg__outbox_options_init(&d);
  if (!ob->o.max_attempts) ob->o.max_attempts = d.max_attempts;
  if (!ob->o.poll_ms) ob->o.poll_ms = d.poll_ms;
  if (!ob->o.batch) ob->o.batch = d.batch;
  if (!ob->o.backoff_base_ms) ob->o.backoff_base_ms = d.backoff_base_ms;
  if (!ob->o.backoff_max_ms) ob->o.backoff_max_ms = d.backoff_max_ms;
  if (ob->o.backoff_max_ms < ob->o.backoff_base_ms) ob->o.backoff_max_ms = ob->o.backoff_base_ms;
  if (!ob->o.lease_ms) ob->o.lease_ms = d.lease_ms;
  ob->seed = uv_hrtime() | 1u;
  uv_timer_init(loop, &ob->timer);
  ob->refs = 1; /* the timer */
  /* First poll soon (entries left by a previous run), then every poll_ms.
   * The timer does not keep the loop alive by itself. */
  uv_timer_start(&ob->timer, on_tick, 0, ob->o.poll_ms);
  uv_unref((uv_handle_t *)&ob->timer);
  if (err) *err = 0;
  return ob;
}

int cg__outbox_enqueue(cg__outbox *ob, const char *platform, const char *tenant_key, const char *message_id,
                       const char *token, int64_t token_expires_at_ms, const char *card_json) {
  if (!ob || cg_str_empty(platform) || cg_str_empty(message_id) || cg_str_empty(card_json)) return CG_EINVAL;
  if (ob->closing) return CG_EALREADY;
  enqueue_job *j = calloc(1, sizeof *j);
  if (!j) return CG_ENOMEM;
  j->e.platform = cg_strdup(platform);
  j->e.message_id = cg_strdup(message_id);
  j->e.card_json = cg_strdup(card_json);
  if (!cg_str_empty(token)) {
    j->e.update_token = cg_strdup(token);
    j->e.token_expires_at_ms = token_expires_at_ms;
  }
  if (!cg_str_empty(tenant_key)) j->e.tenant_key = cg_strdup(tenant_key);
  if (!j->e.platform || !j->e.message_id || !j->e.card_json || (!cg_str_empty(token) && !j->e.update_token) ||
      (!cg_str_empty(tenant_key) && !j->e.tenant_key)) {
    cg_outbox_entry_clear(&j->e);
    free(j);
    return CG_ENOMEM;
  }
  j->ob = ob;
  j->now_ms = cg_now_ms();
  j->job.run = enqueue_run;
  j->job.done = enqueue_done;
  ob->refs++;
  cg__store_worker_submit(ob->o.worker, &j->job);
  return 0;
}

void cg__outbox_kick(cg__outbox *ob) {
  if (ob) poll_now(ob);
}

void cg__outbox_get_stats(const cg__outbox *ob, cg__outbox_stats *out) { *out = ob->st; }

static void timer_closed(uv_handle_t *h) {
  unref(CG_CONTAINER_OF((uv_timer_t *)h, cg__outbox, timer));
}

void cg__outbox_close(cg__outbox *ob) {
  if (!ob || ob->closing) return;
  ob->closing = 1;
  uv_close((uv_handle_t *)&ob->timer, timer_closed);
}
