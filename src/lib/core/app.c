/* The app core: verify + decode (through the codec), duplicate suppression,
 * routing, the handler call with a deadline, encoding the answer.
 * Platform-neutral apart from the choice of codec; never sees a signature. */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/common.h"
#include "../../common/limits.h"
#include "../codec/dingtalk_stream.h"
#include "../transport/conn_int.h"
#include "../codec/lark_webhook.h"
#include "action_int.h"
#include "app_int.h"
#include "dedupe.h"
#include "outbox.h"
#include "reply_int.h"
#include "router.h"
#include "store_worker.h"
#include "upstream.h"
#include "workflow_int.h"

typedef struct route {
  cg__match *match;         /* expression route, or NULL */
  cg_predicate_fn pred;     /* predicate route, or NULL */
  void *pred_ud;
  cg_handler_fn handler;
  void *ud;
  void (*free_ud)(void *ud); /* the app owns ud when set */
} route;

struct cg_app {
  uv_loop_t *loop;
  char *verification_token;
  char *encrypt_key;
  char *app_id;
  char *app_secret;
  char *dt_client_id;     /* DingTalk Client ID, or NULL */
  char *dt_client_secret; /* DingTalk Client Secret, or NULL */
  char *dt_base_url;      /* DingTalk Open API origin, or NULL (default) */
  cg__lark_secrets secrets;
  cg__lark_keys *lark_keys; /* secrets.keys: prepared once, loop thread only */
  uint32_t deadline_ms;
  uint32_t dedupe_ttl_s;
  int dedupe_in_store; /* also check and record event ids in the store */
  cg_store *store;
  cg_log_fn log;
  void *log_ud;
  cg_log_level log_level;

  route *routes;
  size_t nroutes;
  size_t cap;
  cg_handler_fn fallback;
  void *fallback_ud;
  cg_workflow **workflows;
  size_t nworkflows;

  cg__dedupe *dedupe;
  cg__store_worker *worker; /* runs store jobs in batches; NULL without a store */
  cg_buf enc; /* reusable encode buffer (loop thread only) */
  struct cg_responder *live; /* responders not yet finished */
  cg__lark_api *lark;        /* Open API client for the outbox, or NULL */
  cg__dt_api *dt;            /* DingTalk card API client, or NULL */
  cg__outbox *outbox;        /* late / follow-up updates, or NULL */
  struct cg_followup *followups; /* live follow-ups, detached by cg_app_free */
  cg__upstreams *upstreams;  /* sidecar routes and their HTTP client, or NULL */
  cg__app_conn *conns;       /* long connections feeding this app (/healthz) */
  unsigned nclients;         /* long-connection clients not yet freed */
  char last_error[512];
};

/* A responder lives from dispatch until both the handler has responded and
 * the deadline timer (if it was ever started) is closed. */
struct cg_responder {
  cg_app *app; /* NULL once the app is freed */
  cg__action_rec *action;
  cg_http_done_fn done;
  void *done_ud;
  uv_timer_t timer;
  uint64_t start_ms;    /* loop time at dispatch */
  uint32_t deadline_ms; /* the app's, capped for the platform (responder_new) */
  unsigned timer_init : 1;
  unsigned answered : 1;  /* the transport has its answer */
  unsigned responded : 1; /* the handler called cg_respond */
  unsigned closing : 1;
  unsigned in_dispatch : 1; /* inside the handler call: do not free yet */
  atomic_int expired;       /* the deadline answered; read by the store worker */
  const char *event_id; /* dedupe key (schema 2.0), borrowed from action, or NULL */
  struct cg_followup *followup; /* taken by cg_respond_later, or NULL */
  struct cg_responder *prev, *next;
};

/* A follow-up: what the outbox needs to update one card later. */
struct cg_followup {
  cg_app *app;              /* NULL once the app is freed */
  struct cg_responder *r;   /* until the responder is freed (then answered) */
  char *platform;
  char *tenant_key;         /* the action's tenant, or NULL */
  char *message_id;
  char *token;              /* callback token, or NULL */
  int64_t token_expires_at_ms;
  struct cg_followup *prev, *next;
};

/* ---------------------------------------------------------------- logging */

void cg__log(const cg_app *app, cg_log_level level, const char *component,
             const char *fmt, ...) {
  if (!app || !app->log || level < app->log_level) return;
  char line[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof(line), fmt, ap);
  va_end(ap);
  app->log(level, component, line, app->log_ud);
}

uv_loop_t *cg__app_loop(const cg_app *app) { return app->loop; }
cg_store *cg__app_store(const cg_app *app) { return app->store; }
const char *cg__app_lark_app_id(const cg_app *app) { return app->app_id; }
const char *cg__app_lark_app_secret(const cg_app *app) { return app->app_secret; }
const char *cg__app_dingtalk_client_id(const cg_app *app) { return app->dt_client_id; }
const char *cg__app_dingtalk_client_secret(const cg_app *app) { return app->dt_client_secret; }
cg__dt_api *cg__app_dt_api(const cg_app *app) { return app->dt; }
cg__store_worker *cg__app_worker(const cg_app *app) { return app->worker; }
const cg_workflow *cg__app_find_workflow(const cg_app *app, const char *name) {
  for (size_t i = 0; i < app->nworkflows; i++)
    if (name && strcmp(cg_workflow_name(app->workflows[i]), name) == 0) return app->workflows[i];
  return NULL;
}
void cg__app_log_cfg(const cg_app *app, cg_log_fn *fn, void **ud, cg_log_level *level) {
  *fn = app->log;
  *ud = app->log_ud;
  *level = app->log_level;
}
uint32_t cg__app_deadline_ms(const cg_app *app) { return app->deadline_ms; }
uint32_t cg__deadline_for(const cg_app *app, const cg_action *a) {
  /* DingTalk's card platform waits 2 s for a callback's answer, not 3 s
   * (dingtalk.md §2.7): keep a margin below it whatever the app says. */
  if (a->platform == CG_PLATFORM_DINGTALK && app->deadline_ms > CG__DINGTALK_DEADLINE_MS)
    return CG__DINGTALK_DEADLINE_MS;
  return app->deadline_ms;
}
const char *cg_app_last_error(const cg_app *app) { return app->last_error; }
cg__upstreams **cg__app_upstreams(cg_app *app) { return &app->upstreams; }
char *cg__app_error_buf(cg_app *app) { return app->last_error; }

/* ------------------------------------------------------------ life cycle */

void cg_app_options_init(cg_app_options *o) {
  memset(o, 0, sizeof(*o));
  o->deadline_ms = 2500;
  o->dedupe_ttl_s = 86400;
  o->dedupe_in_store = 1;
  o->outbox_max_attempts = 8;
  o->log_level = CG_LOG_INFO;
}

/* ---------------------------------------------- store apps: the app_ticket */

/* The store keeps the latest app_ticket, so a restart need not wait for
 * Lark's next push (hourly) or a resend. Key: "lark.app_ticket.<app id>". */
typedef struct ticket_job {
  cg__job job;
  cg_app *app; /* load only; alive until done (the worker drains in cg_app_free) */
  char key[CG_LIMIT_ID + 32];
  char *value; /* wiped */
  int rc;
  char err[256];
} ticket_job;

static void ticket_job_free(ticket_job *j) {
  if (j->value) memset(j->value, 0, strlen(j->value));
  free(j->value);
  free(j);
}

static void ticket_load_run(cg__job *job, cg_store *s) {
  ticket_job *j = CG_CONTAINER_OF(job, ticket_job, job);
  j->rc = cg_store_kv_get(s, j->key, &j->value);
  if (j->rc && j->rc != CG_ENOTFOUND) cg_strlcpy(j->err, cg_store_last_error(s), sizeof(j->err));
}

static void ticket_load_done(cg__job *job) {
  ticket_job *j = CG_CONTAINER_OF(job, ticket_job, job);
  cg_app *app = j->app;
  if (app->lark) { /* NULL once cg_app_free has begun */
    if (j->rc == 0 && j->value && !cg__lark_api_has_app_ticket(app->lark)) {
      int rc = cg__lark_api_set_app_ticket(app->lark, j->value);
      cg__log(app, rc ? CG_LOG_WARN : CG_LOG_INFO, "lark", "store app %s: app_ticket from the store %s", app->app_id,
              rc ? cg_strerror(rc) : "loaded");
    } else if (j->rc == CG_ENOTFOUND) {
      cg__log(app, CG_LOG_INFO, "lark",
              "store app %s: no app_ticket stored yet; the first Open API call asks Lark to resend one", app->app_id);
    } else if (j->rc) {
      cg__log(app, CG_LOG_WARN, "store", "could not read the stored app_ticket: %s", j->err);
    }
  }
  ticket_job_free(j);
}

static void app_ticket_load(cg_app *app) {
  ticket_job *j = calloc(1, sizeof(*j));
  if (!j) return;
  j->app = app;
  cg_fmt(j->key, sizeof(j->key), "lark.app_ticket.%s", app->app_id);
  j->job.run = ticket_load_run;
  j->job.done = ticket_load_done;
  cg__store_worker_submit(app->worker, &j->job);
}

static void ticket_save_run(cg__job *job, cg_store *s) {
  ticket_job *j = CG_CONTAINER_OF(job, ticket_job, job);
  j->rc = cg_store_kv_put(s, j->key, j->value, cg_now_ms());
}

static void ticket_save_done(cg__job *job) {
  /* Only our own copy: the app may be gone. A lost write costs a resend
   * after a restart, nothing more. */
  ticket_job_free(CG_CONTAINER_OF(job, ticket_job, job));
}

/* An app_ticket event (schema 1.0, lark.md §4.2): hand the ticket to the
 * Open API client and keep it in the store. Never logs the ticket. */
static void app_ticket_event(cg_app *app, const cg__lark_msg *m) {
  const char *aid = m->app_id ? m->app_id : "(no app id)";
  if (!app->lark || cg__lark_api_app_type(app->lark) != CG__LARK_APP_STORE) {
    cg__log(app, CG_LOG_INFO, "lark", "app_ticket event for %s ignored: cardgate is not configured as a store app", aid);
    return;
  }
  if (m->app_id && strcmp(m->app_id, app->app_id) != 0) {
    cg__log(app, CG_LOG_WARN, "lark", "app_ticket event for app %s ignored: this is app %s", aid, app->app_id);
    return;
  }
  int rc = cg__lark_api_set_app_ticket(app->lark, m->app_ticket);
  if (rc) {
    cg__log(app, CG_LOG_WARN, "lark", "app_ticket event for app %s not taken: %s", aid, cg_strerror(rc));
    return;
  }
  cg__log(app, CG_LOG_INFO, "lark", "app_ticket event for app %s: ticket updated", app->app_id);
  ticket_job *j = app->worker ? calloc(1, sizeof(*j)) : NULL;
  if (j) j->value = cg_strdup(m->app_ticket);
  if (!j || !j->value) {
    if (j) ticket_job_free(j);
    cg__log(app, CG_LOG_WARN, "store", "could not keep the app_ticket in the store (out of memory)");
    return;
  }
  cg_fmt(j->key, sizeof(j->key), "lark.app_ticket.%s", app->app_id);
  j->job.run = ticket_save_run;
  j->job.done = ticket_save_done;
  cg__store_worker_submit(app->worker, &j->job);
}

static char *dup_secret(const char *s) { return cg_str_empty(s) ? NULL : cg_strdup(s); }

cg_app *cg_app_new(uv_loop_t *loop, const cg_app_options *o, int *err) {
  int rc = CG_ENOMEM;
  if (!loop || !o) {
    if (err) *err = CG_EINVAL;
    return NULL;
  }
  cg_app *app = calloc(1, sizeof(*app));
  if (!app) goto fail;
  app->loop = loop;
  app->verification_token = dup_secret(o->lark_verification_token);
  app->encrypt_key = dup_secret(o->lark_encrypt_key);
  app->app_id = dup_secret(o->lark_app_id);
  app->app_secret = dup_secret(o->lark_app_secret);
  app->dt_client_id = dup_secret(o->dingtalk_client_id);
  app->dt_client_secret = dup_secret(o->dingtalk_client_secret);
  app->dt_base_url = dup_secret(o->dingtalk_base_url);
  if ((!cg_str_empty(o->dingtalk_client_id) && !app->dt_client_id) ||
      (!cg_str_empty(o->dingtalk_client_secret) && !app->dt_client_secret) ||
      (!cg_str_empty(o->dingtalk_base_url) && !app->dt_base_url))
    goto fail;
  if ((!cg_str_empty(o->lark_verification_token) && !app->verification_token) ||
      (!cg_str_empty(o->lark_encrypt_key) && !app->encrypt_key) ||
      (!cg_str_empty(o->lark_app_id) && !app->app_id) ||
      (!cg_str_empty(o->lark_app_secret) && !app->app_secret))
    goto fail;
  app->secrets.verification_token = app->verification_token;
  app->secrets.encrypt_key = app->encrypt_key;
  app->secrets.replay_window_s = o->replay_window_s;
  int krc = cg__lark_keys_new(app->verification_token, app->encrypt_key, &app->lark_keys);
  if (krc) {
    rc = krc;
    goto fail;
  }
  app->secrets.keys = app->lark_keys;
  app->deadline_ms = o->deadline_ms ? o->deadline_ms : 2500;
  app->dedupe_ttl_s = o->dedupe_ttl_s ? o->dedupe_ttl_s : 86400;
  app->dedupe_in_store = o->dedupe_in_store;
  app->store = o->store;
  app->log = o->log;
  app->log_ud = o->log_ud;
  app->log_level = o->log_level;
  app->dedupe = cg__dedupe_new(CG_LIMIT_DEDUPE_ENTRIES);
  if (!app->dedupe) goto fail;
  cg_buf_init(&app->enc, CG_LIMIT_BODY_HARD);
  if (app->store) {
    app->worker = cg__store_worker_new(loop, app->store, &rc);
    if (!app->worker) {
      cg__dedupe_free(app->dedupe);
      cg_buf_free(&app->enc);
      goto fail;
    }
  }
  if (app->worker && app->app_id && app->app_secret) {
    /* Lark Open API client for the outbox: late replies and follow-ups. */
    cg__lark_api_options lo;
    cg__lark_api_options_init(&lo);
    lo.base_url = o->lark_base_url;
    lo.app_id = app->app_id;
    lo.app_secret = app->app_secret;
    lo.app_type = o->lark_store_app ? CG__LARK_APP_STORE : CG__LARK_APP_SELF_BUILT;
    lo.log = o->log;
    lo.log_ud = o->log_ud;
    lo.log_level = o->log_level;
    app->lark = cg__lark_api_new(loop, &lo, &rc);
    if (!app->lark) {
      cg_fmt(app->last_error, sizeof(app->last_error), "Lark Open API client: %s", cg_strerror(rc));
      goto fail_parts;
    }
  }
  if (app->dt_client_id && app->dt_client_secret) {
    /* DingTalk card API: cards sent on chat messages, late updates. */
    cg__dt_api_options dto;
    cg__dt_api_options_init(&dto);
    dto.base_url = app->dt_base_url;
    dto.app_key = app->dt_client_id;
    dto.app_secret = app->dt_client_secret;
    dto.log = o->log;
    dto.log_ud = o->log_ud;
    dto.log_level = o->log_level;
    app->dt = cg__dt_api_new(loop, &dto, &rc);
    if (!app->dt) {
      cg_fmt(app->last_error, sizeof(app->last_error), "DingTalk Open API client: %s", cg_strerror(rc));
      goto fail_parts;
    }
  }
  if (app->worker && (app->lark || app->dt)) {
    cg__outbox_options oo;
    cg__outbox_options_init(&oo);
    oo.worker = app->worker;
    oo.api = app->lark;
    oo.dt_api = app->dt;
    if (o->outbox_max_attempts) oo.max_attempts = o->outbox_max_attempts;
    oo.log = o->log;
    oo.log_ud = o->log_ud;
    oo.log_level = o->log_level;
    app->outbox = cg__outbox_new(loop, &oo, &rc);
    if (!app->outbox) {
      cg_fmt(app->last_error, sizeof(app->last_error), "outbox: %s", cg_strerror(rc));
      goto fail_parts;
    }
    if (app->lark && o->lark_store_app) app_ticket_load(app);
  }
  if (err) *err = 0;
  return app;
fail_parts:
  cg__lark_api_close(app->lark, NULL, NULL);
  cg__dt_api_close(app->dt, NULL, NULL);
  cg__store_worker_free(app->worker);
  cg__dedupe_free(app->dedupe);
  cg_buf_free(&app->enc);
fail:
  if (app) {
    cg__lark_keys_free(app->lark_keys);
    free(app->verification_token);
    free(app->encrypt_key);
    free(app->app_id);
    free(app->app_secret);
    free(app->dt_client_id);
    free(app->dt_client_secret);
    free(app->dt_base_url);
    free(app);
  }
  if (err) *err = rc;
  return NULL;
}

static void responder_maybe_free(struct cg_responder *r);

void cg_app_free(cg_app *app) {
  if (!app) return;
  /* A client still closing would wait forever for ACKs whose responders
   * are detached below, then log through a freed app: close the clients
   * and run the loop until their close callbacks first (stream.h). */
  cg_assert(app->nclients == 0);
  /* Detach responders still waiting on a handler: their replies are dropped
   * and no callback into the transport runs any more. */
  for (struct cg_responder *r = app->live, *next; r; r = next) {
    next = r->next;
    r->app = NULL;
    r->answered = 1;
    r->prev = r->next = NULL;
    if (r->timer_init && !r->closing) uv_timer_stop(&r->timer);
  }
  app->live = NULL;
  for (struct cg_followup *f = app->followups; f; f = f->next) f->app = NULL;
  app->followups = NULL;
  /* The outbox stops before the worker drains its jobs; requests in flight
   * are cancelled (their entries stay leased and go out after a restart). */
  cg__outbox_close(app->outbox);
  app->outbox = NULL;
  cg__lark_api_close(app->lark, NULL, NULL);
  app->lark = NULL;
  cg__dt_api_close(app->dt, NULL, NULL);
  app->dt = NULL;
  /* Upstream requests in flight are cancelled on a later loop turn; they
   * answer their (now detached) responders. */
  cg__upstreams_free(app->upstreams);
  app->upstreams = NULL;
  /* Drain the store's queue while the workflows it runs are still alive;
   * the responders are detached by now, so their late results are dropped. */
  cg__store_worker_free(app->worker);
  app->worker = NULL;
  for (size_t i = 0; i < app->nroutes; i++) {
    cg__match_free(app->routes[i].match);
    if (app->routes[i].free_ud) app->routes[i].free_ud(app->routes[i].ud);
  }
  free(app->routes);
  for (size_t i = 0; i < app->nworkflows; i++) cg_workflow_free(app->workflows[i]);
  free(app->workflows);
  cg__dedupe_free(app->dedupe);
  cg_buf_free(&app->enc);
  cg__lark_keys_free(app->lark_keys);
  if (app->verification_token) memset(app->verification_token, 0, strlen(app->verification_token));
  if (app->encrypt_key) memset(app->encrypt_key, 0, strlen(app->encrypt_key));
  if (app->app_secret) memset(app->app_secret, 0, strlen(app->app_secret));
  free(app->verification_token);
  free(app->encrypt_key);
  free(app->app_id);
  free(app->app_secret);
  if (app->dt_client_secret) memset(app->dt_client_secret, 0, strlen(app->dt_client_secret));
  free(app->dt_client_id);
  free(app->dt_client_secret);
  free(app->dt_base_url);
  free(app);
}

/* ----------------------------------------------------------------- routes */

static int add_route(cg_app *app, route rt) {
  if (app->nroutes >= CG_LIMIT_ROUTES) {
    cg_fmt(app->last_error, sizeof(app->last_error), "too many routes (limit %u)", CG_LIMIT_ROUTES);
    return CG_EINVAL;
  }
  if (app->nroutes == app->cap) {
    size_t ncap = app->cap ? app->cap * 2 : 8;
    route *n = realloc(app->routes, ncap * sizeof(*n));
    if (!n) return CG_ENOMEM;
    app->routes = n;
    app->cap = ncap;
  }
  app->routes[app->nroutes++] = rt;
  return 0;
}

int cg_app_route(cg_app *app, const char *match, cg_handler_fn handler, void *ud) {
  return cg__app_route_owned(app, match, handler, ud, NULL);
}

int cg__app_route_owned(cg_app *app, const char *match, cg_handler_fn handler, void *ud,
                        void (*free_ud)(void *ud)) {
  if (!app || !handler) return CG_EINVAL;
  char err[256];
  route rt = {0};
  rt.match = cg__match_compile(match, err, sizeof(err));
  if (!rt.match) {
    cg_fmt(app->last_error, sizeof(app->last_error), "route \"%.200s\": %s", match ? match : "", err);
    return CG_EINVAL;
  }
  rt.handler = handler;
  rt.ud = ud;
  rt.free_ud = free_ud;
  int rc = add_route(app, rt);
  if (rc) cg__match_free(rt.match);
  else app->last_error[0] = '\0';
  return rc;
}

int cg_app_route_fn(cg_app *app, cg_predicate_fn pred, void *pred_ud,
                    cg_handler_fn handler, void *ud) {
  if (!app || !pred || !handler) return CG_EINVAL;
  route rt = {0};
  rt.pred = pred;
  rt.pred_ud = pred_ud;
  rt.handler = handler;
  rt.ud = ud;
  return add_route(app, rt);
}

void cg_app_fallback(cg_app *app, cg_handler_fn handler, void *ud) {
  app->fallback = handler;
  app->fallback_ud = ud;
}

static const route *find_route(const cg_app *app, const cg_action *a) {
  for (size_t i = 0; i < app->nroutes; i++) {
    const route *rt = &app->routes[i];
    if (rt->match ? cg__match_eval(rt->match, a) : rt->pred(a, rt->pred_ud)) return rt;
  }
  return NULL;
}

/* -------------------------------------------------------------- answering */

static void finish_answer(struct cg_responder *r, int status, const char *body, size_t len);

static void responder_unlink(struct cg_responder *r) {
  if (!r->app) return;
  if (r->prev) r->prev->next = r->next;
  else if (r->app->live == r) r->app->live = r->next;
  if (r->next) r->next->prev = r->prev;
  r->prev = r->next = NULL;
}

static void timer_closed(uv_handle_t *h) {
  struct cg_responder *r = CG_CONTAINER_OF(h, struct cg_responder, timer);
  r->timer_init = 0;
  responder_maybe_free(r);
}

/* Frees r once the handler has responded, the transport has its answer and
 * the timer (if any) is closed. */
static void responder_maybe_free(struct cg_responder *r) {
  if (!r->responded || !r->answered || r->in_dispatch) return;
  if (r->timer_init) {
    if (!r->closing) {
      r->closing = 1;
      uv_close((uv_handle_t *)&r->timer, timer_closed);
    }
    return;
  }
  responder_unlink(r);
  if (r->followup) r->followup->r = NULL;
  cg__action_free(r->action);
  free(r);
}

/* Hands (status, body) to the transport, and remembers it for redeliveries. */
static void finish_answer(struct cg_responder *r, int status, const char *body, size_t len) {
  cg_app *app = r->app;
  r->answered = 1;
  if (r->timer_init && !r->closing) uv_timer_stop(&r->timer);
  if (!app) return;
  if (r->event_id) {
    cg__dedupe_answer(app->dedupe, r->event_id, status, body, len);
    if (app->store && app->dedupe_in_store) cg__app_store_seen_answer(app, r->event_id, status, body);
  }
  r->done(status, body, len, r->done_ud);
}

/* The reply in the bytes of the platform and format the action came in. */
static int encode_reply(cg_app *app, const cg_action *a, const cg_reply *reply,
                        int *status, cg_buf *out) {
  if (a->platform != CG_PLATFORM_DINGTALK)
    return cg__lark_encode_reply(a, reply, status, out);
  char dropped[128] = "";
  *status = 200;
  int rc = cg__dt_encode_reply(a, reply, out, dropped);
  if (rc == 0 && dropped[0])
    cg__log(app, CG_LOG_WARN, "dingtalk", "reply for card %s: %s",
            a->message_id ? a->message_id : "(none)", dropped);
  return rc;
}

static void answer_keep(struct cg_responder *r) {
  cg_app *app = r->app;
  int status = 200;
  cg_buf_reset(&app->enc);
  if (encode_reply(app, &r->action->pub, NULL, &status, &app->enc) != 0) {
    finish_answer(r, 200, "{}", 2);
    return;
  }
  finish_answer(r, status, app->enc.data, app->enc.len);
}

static void deadline_fired(uv_timer_t *t) {
  struct cg_responder *r = CG_CONTAINER_OF(t, struct cg_responder, timer);
  if (r->answered || !r->app) return;
  atomic_store(&r->expired, 1); /* a queued store job for it is skipped */
  cg__log(r->app, CG_LOG_WARN, "core",
          "handler did not answer %s %s within %u ms: answered \"keep the card\"; its late result will be %s",
          cg_kind_name(r->action->pub.kind),
          r->action->pub.message_id ? r->action->pub.message_id : "(no message id)",
          r->deadline_ms, r->app->outbox ? "delivered through the outbox if it carries a card" : "dropped");
  answer_keep(r);
}

/* The compact JSON of a raw card reply (malloc'd), or NULL. */
static char *reply_card_text(const cg_reply *reply) {
  if (!reply || !reply->card || reply->custom_status > 0) return NULL;
  if (reply->card_text) return cg_strndup(reply->card_text, reply->card_text_len);
  return json_dumps(reply->card, JSON_COMPACT);
}

/* What the outbox delivers for a reply: a Lark card (compact JSON), or on
 * DingTalk the template variables (a JSON object; delivered as
 * cardParamMap). malloc'd, or NULL when the reply has none. */
static char *reply_update_text(const char *platform, const cg_reply *reply) {
  if (platform && strcmp(platform, "dingtalk") == 0) {
    if (!reply || !reply->template_vars || reply->custom_status > 0) return NULL;
    return json_dumps(reply->template_vars, JSON_COMPACT);
  }
  return reply_card_text(reply);
}

/* Wall-clock deadline of an action's callback token (lark.md §4.5). */
static int64_t token_deadline(const cg_action *a) {
  int64_t t0 = a->received_at_ms > 0 ? a->received_at_ms : cg_now_ms();
  return t0 + CG__OUTBOX_TOKEN_TTL_MS;
}

/* A reply after the deadline: the transport has its answer ("keep the
 * card"), so the card goes to the outbox — committed before anything is
 * sent — instead of being dropped. */
static void late_reply(struct cg_responder *r, const cg_reply *reply) {
  cg_app *app = r->app;
  const cg_action *a = &r->action->pub;
  const char *mid = a->message_id ? a->message_id : "(no message id)";
  unsigned long long ms = (unsigned long long)(uv_now(app->loop) - r->start_ms);
  char *card = reply_update_text(cg_platform_name(a->platform), reply);
  const char *why = !app->outbox ? "no outbox (needs the app's credentials and a store)"
                    : !card      ? (a->platform == CG_PLATFORM_DINGTALK
                                        ? "it carries no card variables (a template reply; toasts cannot be shown late)"
                                        : "it carries no card (a toast cannot be shown late)")
                    : !a->message_id ? "the action has no message id"
                                     : NULL;
  if (!why) {
    int rc = cg__outbox_enqueue(app->outbox, cg_platform_name(a->platform), a->tenant_key, a->message_id,
                                a->update_token, token_deadline(a), card);
    if (rc == 0)
      cg__log(app, CG_LOG_WARN, "core",
              "late answer for %s after %llu ms (cardgate had answered \"keep the card\"): its card goes to the outbox",
              mid, ms);
    else
      why = cg_strerror(rc);
  }
  if (why)
    cg__log(app, CG_LOG_WARN, "core",
            "late answer for %s dropped after %llu ms (the deadline had passed; cardgate answered \"keep the card\"): %s",
            mid, ms, why);
  free(card);
}

int cg_respond(cg_responder *r, cg_reply *reply) {
  if (!r) {
    cg_reply_free(reply);
    return CG_EINVAL;
  }
  if (r->responded) {
    cg_reply_free(reply);
    return CG_EALREADY;
  }
  r->responded = 1;
  if (r->answered) {
    if (r->app) late_reply(r, reply);
    cg_reply_free(reply);
    responder_maybe_free(r);
    return CG_ETIMEDOUT;
  }
  cg_app *app = r->app;
  int status = 200;
  cg_buf_reset(&app->enc);
  int rc = encode_reply(app, &r->action->pub, reply, &status, &app->enc);
  cg_reply_free(reply);
  if (rc != 0) {
    cg__log(app, CG_LOG_ERROR, "core", "could not encode the handler's reply (%s): answered \"keep the card\"",
            cg_strerror(rc));
    answer_keep(r);
  } else {
    finish_answer(r, status, app->enc.data, app->enc.len);
  }
  responder_maybe_free(r);
  return 0;
}

const cg_action *cg_responder_action(const cg_responder *r) { return &r->action->pub; }
cg_app *cg__responder_app(const cg_responder *r) { return r->app; }

/* ------------------------------------------------------------ follow-ups */

cg_followup *cg_respond_later(cg_responder *r) {
  if (!r || r->responded || !r->app || !r->app->outbox || !r->action->pub.message_id) return NULL;
  if (r->followup) return NULL; /* one per responder */
  const cg_action *a = &r->action->pub;
  cg_followup *f = calloc(1, sizeof(*f));
  if (!f) return NULL;
  f->platform = cg_strdup(cg_platform_name(a->platform));
  f->message_id = cg_strdup(a->message_id);
  f->token = cg_str_empty(a->update_token) ? NULL : cg_strdup(a->update_token);
  f->tenant_key = cg_str_empty(a->tenant_key) ? NULL : cg_strdup(a->tenant_key);
  if (!f->platform || !f->message_id || (!cg_str_empty(a->update_token) && !f->token) ||
      (!cg_str_empty(a->tenant_key) && !f->tenant_key)) {
    free(f->tenant_key);
    free(f->platform);
    free(f->message_id);
    free(f->token);
    free(f);
    return NULL;
  }
  f->token_expires_at_ms = token_deadline(a);
  f->app = r->app;
  f->r = r;
  r->followup = f;
  f->next = r->app->followups;
  if (f->next) f->next->prev = f;
  r->app->followups = f;
  return f;
}

int cg_followup_update(cg_followup *f, cg_reply *card_reply) {
  if (!f) {
    cg_reply_free(card_reply);
    return CG_EINVAL;
  }
  /* Never before the callback is answered: the token is the platform's
   * only until then (lark.md §9.5). */
  if (f->r && !f->r->answered) {
    cg_reply_free(card_reply);
    return CG_EINVAL;
  }
  if (!f->app || !f->app->outbox) {
    cg_reply_free(card_reply);
    return CG_ECONFIG;
  }
  char *card = reply_update_text(f->platform, card_reply);
  int has_card = card_reply && (card_reply->card || card_reply->template_vars);
  cg_reply_free(card_reply);
  if (!card) return has_card ? CG_ENOMEM : CG_EINVAL;
  int rc = cg__outbox_enqueue(f->app->outbox, f->platform, f->tenant_key, f->message_id, f->token,
                              f->token_expires_at_ms, card);
  free(card);
  return rc;
}

void cg_followup_free(cg_followup *f) {
  if (!f) return;
  if (f->r) f->r->followup = NULL;
  if (f->app) {
    if (f->prev) f->prev->next = f->next;
    else f->app->followups = f->next;
    if (f->next) f->next->prev = f->prev;
  }
  free(f->platform);
  free(f->tenant_key);
  free(f->message_id);
  if (f->token) memset(f->token, 0, strlen(f->token));
  free(f->token);
  free(f);
}

uint64_t cg_responder_remaining_ms(const cg_responder *r) {
  if (!r->app || r->answered) return 0;
  uint64_t el = uv_now(r->app->loop) - r->start_ms;
  return el >= r->deadline_ms ? 0 : r->deadline_ms - el;
}

/* --------------------------------------------------------------- dispatch */

static void dispatch(struct cg_responder *r) {
  cg_app *app = r->app;
  const cg_action *a = &r->action->pub;
  const route *rt = find_route(app, a);
  cg_handler_fn h = rt ? rt->handler : app->fallback;
  void *ud = rt ? rt->ud : app->fallback_ud;
  if (!h) {
    cg__log(app, CG_LOG_INFO, "core", "no route for %s %s (tag %s): answered \"keep the card\"",
            cg_format_name(a->format), cg_kind_name(a->kind), a->tag ? a->tag : "-");
    r->responded = 1;
    answer_keep(r);
    responder_maybe_free(r);
    return;
  }
  h(a, r, ud);
  /* r may be gone now if the handler answered inline. */
}

/* Called after dispatch returns for responders still waiting: arm the
 * deadline. Kept out of dispatch so inline answers cost no timer. */
static void arm_deadline(struct cg_responder *r) {
  cg_app *app = r->app;
  uint64_t el = uv_now(app->loop) - r->start_ms;
  uint64_t left = el >= r->deadline_ms ? 0 : r->deadline_ms - el;
  uv_timer_init(app->loop, &r->timer);
  r->timer_init = 1;
  uv_timer_start(&r->timer, deadline_fired, left, 0);
}

static void run(struct cg_responder *r) {
  r->in_dispatch = 1;
  dispatch(r);
  r->in_dispatch = 0;
  if (r->answered) {
    responder_maybe_free(r);
    return;
  }
  if (!r->app) return; /* the app was freed inside the handler */
  if (!r->timer_init) arm_deadline(r);
}

static struct cg_responder *responder_new(cg_app *app, cg__action_rec *action,
                                          cg_http_done_fn done, void *ud) {
  struct cg_responder *r = calloc(1, sizeof(*r));
  if (!r) return NULL;
  r->app = app;
  r->action = action;
  r->done = done;
  r->done_ud = ud;
  r->start_ms = uv_now(app->loop); /* the deadline counts from arrival */
  r->deadline_ms = cg__deadline_for(app, &action->pub);
  atomic_init(&r->expired, 0);
  r->next = app->live;
  if (app->live) app->live->prev = r;
  app->live = r;
  return r;
}

/* ---------------------------------------------------- Lark HTTP requests */

static void answer_error(cg_app *app, const cg__lark_error *e, cg_http_done_fn done, void *ud) {
  cg_buf_reset(&app->enc);
  if (cg__encode_error(e->code, e->msg, &app->enc) != 0) {
    done(e->http_status, "{}", 2, ud);
    return;
  }
  done(e->http_status, app->enc.data, app->enc.len, ud);
}

int cg_app_handle_lark_http(cg_app *app, cg_lark_endpoint ep,
                            const cg_http_request *req, cg_http_done_fn done,
                            void *ud) {
  if (!app || !req || !done) return CG_EINVAL;
  cg__lark_msg m;
  cg__lark_error e;
  memset(&m, 0, sizeof(m));
  memset(&e, 0, sizeof(e));
  int rc = cg__lark_decode(&app->secrets, ep, req, cg_now_ms(), &m, &e);
  if (rc != 0) {
    if (rc == CG_ENOMEM) return rc;
    cg__log(app, CG_LOG_INFO, "lark", "rejected %s callback: %d %s",
            ep == CG_LARK_ENDPOINT_CARD ? "card" : "event", e.http_status, e.msg);
    answer_error(app, &e, done, ud);
    return 0;
  }
  switch (m.type) {
    case CG__LARK_MSG_CHALLENGE:
      cg__log(app, CG_LOG_INFO, "lark", "answered a url_verification challenge");
      cg_buf_reset(&app->enc);
      if (cg__lark_encode_challenge(m.challenge, &app->enc) != 0) {
        cg__lark_msg_clear(&m);
        return CG_ENOMEM;
      }
      done(200, app->enc.data, app->enc.len, ud);
      break;
    case CG__LARK_MSG_EVENT:
      if (m.app_ticket) {
        app_ticket_event(app, &m);
        done(200, "{}", 2, ud);
        break;
      }
      cg__log(app, CG_LOG_INFO, "lark", "event %s (%s) has no handler in cardgate: answered {}",
              m.event_type ? m.event_type : "(no type)", m.event_id ? m.event_id : "no id");
      done(200, "{}", 2, ud);
      break;
    case CG__LARK_MSG_ACTION: {
      cg__action_rec *a = m.action;
      m.action = NULL;
      cg__lark_msg_clear(&m);
      return cg__app_dispatch(app, a, done, ud);
    }
  }
  cg__lark_msg_clear(&m);
  return 0;
}

/* ------------------------------------------------ long connections */

int cg__app_handle_lark_plain(cg_app *app, const char *body, size_t len,
                              cg_http_done_fn done, void *ud) {
  if (!app || !body || !done) return CG_EINVAL;
  /* Frames on the long connection are authenticated by the connection
   * itself and carry plaintext JSON: no signature, token or decryption
   * (lark.md §3.8). The body's shape still decides its format. */
  cg__lark_secrets none;
  memset(&none, 0, sizeof none);
  cg_http_request req;
  memset(&req, 0, sizeof req);
  req.body = body;
  req.body_len = len;
  cg__lark_msg m;
  cg__lark_error e;
  memset(&m, 0, sizeof(m));
  memset(&e, 0, sizeof(e));
  int rc = cg__lark_decode(&none, CG_LARK_ENDPOINT_EVENT, &req, cg_now_ms(), &m, &e);
  if (rc != 0) {
    if (rc == CG_ENOMEM) return rc;
    cg__log(app, CG_LOG_WARN, "lark-ws", "dropped a message: %s", e.msg);
    answer_error(app, &e, done, ud);
    return 0;
  }
  if (m.type != CG__LARK_MSG_ACTION) {
    cg__log(app, CG_LOG_INFO, "lark-ws", "%s %s: nothing to do in cardgate, acknowledged",
            m.type == CG__LARK_MSG_CHALLENGE ? "challenge" : "event",
            m.event_type ? m.event_type : "(no type)");
    cg__lark_msg_clear(&m);
    done(200, NULL, 0, ud);
    return 0;
  }
  cg__action_rec *a = m.action;
  m.action = NULL;
  cg__lark_msg_clear(&m);
  a->pub.transport = CG_TRANSPORT_LARK_WS;
  return cg__app_dispatch(app, a, done, ud);
}

void cg__app_client_ref(cg_app *app, int delta) {
  cg_assert(delta > 0 || app->nclients > 0);
  app->nclients = (unsigned)((int)app->nclients + delta);
}

void cg__app_conn_add(cg_app *app, cg__app_conn *n) {
  n->prev = NULL;
  n->next = app->conns;
  if (app->conns) app->conns->prev = n;
  app->conns = n;
}

void cg__app_conn_remove(cg_app *app, cg__app_conn *n) {
  if (n->prev) n->prev->next = n->next;
  else if (app->conns == n) app->conns = n->next;
  if (n->next) n->next->prev = n->prev;
  n->prev = n->next = NULL;
}

int cg__app_conns_json(const cg_app *app, cg_buf *out, int *failed) {
  *failed = 0;
  if (!app->conns) return 0;
  int rc = cg_buf_appends(out, ",\"long_connections\":[");
  for (const cg__app_conn *n = app->conns; n && rc == 0; n = n->next) {
    const char *detail = "";
    cg_conn_state st = n->state(n->self, &detail);
    if (st == CG_CONN_FAILED) *failed = 1;
    rc = cg_buf_appendf(out, "%s{\"transport\":\"%s\",\"id\":", n == app->conns ? "" : ",",
                        n->transport);
    if (rc == 0) rc = cg_buf_append_json_str(out, n->id, strlen(n->id));
    if (rc == 0) rc = cg_buf_appendf(out, ",\"state\":\"%s\",\"detail\":", cg_conn_state_name(st));
    if (rc == 0) rc = cg_buf_append_json_str(out, detail, strlen(detail));
    if (rc == 0) rc = cg_buf_appends(out, "}");
  }
  if (rc == 0) rc = cg_buf_appends(out, "]");
  return rc;
}

const char *cg_conn_state_name(cg_conn_state s) {
  switch (s) {
    case CG_CONN_IDLE: return "idle";
    case CG_CONN_CONNECTING: return "connecting";
    case CG_CONN_CONNECTED: return "connected";
    case CG_CONN_WAITING: return "waiting";
    case CG_CONN_FAILED: return "failed";
    case CG_CONN_CLOSED: return "closed";
  }
  return "unknown";
}

int cg__app_dispatch(cg_app *app, cg__action_rec *a, cg_http_done_fn done, void *ud) {
  struct cg_responder *r = responder_new(app, a, done, ud);
  if (!r) {
    cg__action_free(a);
    return CG_ENOMEM;
  }
  if (a->pub.event_id) return cg__app_dedupe_then_run(app, r);
  run(r);
  return 0;
}

/* ------------------------------------------- duplicate suppression (2.0) */

/* Store jobs (run by the store worker, batched in one transaction). */
typedef struct seen_job {
  cg__job job;
  struct cg_responder *r; /* NULL for answer writes */
  char *event_id;
  int64_t now_ms;
  int64_t ttl_ms;
  int rc;
  int status;
  char *body;
  char err[256];
} seen_job;

static void seen_job_free(seen_job *j) {
  free(j->event_id);
  free(j->body);
  free(j);
}

static void seen_answer_run(cg__job *job, cg_store *s) {
  seen_job *j = CG_CONTAINER_OF(job, seen_job, job);
  j->rc = cg_store_seen_answer(s, j->event_id, j->status, j->body);
}

static void seen_answer_done(cg__job *job) {
  /* Only our own copies are touched: the app may be gone by now. */
  seen_job_free(CG_CONTAINER_OF(job, seen_job, job));
}

void cg__app_store_seen_answer(cg_app *app, const char *event_id, int status, const char *body) {
  seen_job *j = calloc(1, sizeof(*j));
  if (j) {
    j->event_id = cg_strdup(event_id);
    j->body = cg_strdup(body);
  }
  if (!j || !j->event_id || !j->body || !app->worker) {
    cg__log(app, CG_LOG_WARN, "store", "could not record the answer to event %s for redeliveries", event_id);
    if (j) seen_job_free(j);
    return;
  }
  j->status = status;
  j->job.run = seen_answer_run;
  j->job.done = seen_answer_done;
  cg__store_worker_submit(app->worker, &j->job);
}

static void seen_check_run(cg__job *job, cg_store *s) {
  seen_job *j = CG_CONTAINER_OF(job, seen_job, job);
  j->rc = cg_store_seen_check(s, j->event_id, j->now_ms, j->ttl_ms, &j->status, &j->body);
  if (j->rc != 0 && j->rc != CG_EDUPLICATE) cg_strlcpy(j->err, cg_store_last_error(s), sizeof(j->err));
}

static void seen_check_done(cg__job *job) {
  seen_job *j = CG_CONTAINER_OF(job, seen_job, job);
  struct cg_responder *r = j->r;
  if (!r->app) { /* app freed meanwhile */
    r->responded = 1;
    responder_maybe_free(r);
    seen_job_free(j);
    return;
  }
  cg_app *app = r->app;
  if (r->answered) { /* the deadline answered while the store was checking */
    cg__log(app, CG_LOG_WARN, "core",
            "event %s: the duplicate check outlasted the deadline; answered \"keep the card\", not handled",
            j->event_id);
    r->responded = 1;
    responder_maybe_free(r);
    seen_job_free(j);
    return;
  }
  if (j->rc == CG_EDUPLICATE && j->job.commit_rc == 0) {
    r->responded = 1;
    if (j->body) {
      cg__log(app, CG_LOG_INFO, "core", "duplicate event %s (seen by the store): replayed the first answer", j->event_id);
      finish_answer(r, j->status ? j->status : 200, j->body, strlen(j->body));
    } else {
      cg__log(app, CG_LOG_WARN, "core",
              "duplicate event %s: the first delivery was never answered (crash or another instance); not handled again, answered \"keep the card\"",
              j->event_id);
      answer_keep(r);
    }
    responder_maybe_free(r);
  } else {
    if (j->rc != 0 && j->rc != CG_EDUPLICATE)
      cg__log(app, CG_LOG_WARN, "store", "duplicate check for event %s failed (%s); handling it", j->event_id, j->err);
    else if (j->job.commit_rc != 0)
      cg__log(app, CG_LOG_WARN, "store", "duplicate check for event %s not committed (%s); handling it",
              j->event_id, cg_strerror(j->job.commit_rc));
    run(r);
  }
  seen_job_free(j);
}

int cg__app_dedupe_then_run(cg_app *app, struct cg_responder *r) {
  const char *id = r->action->pub.event_id;
  int status = 0;
  const char *body = NULL;
  size_t len = 0;
  int64_t now = cg_now_ms(); /* wall clock for the store: it outlives the process */
  int st = cg__dedupe_begin(app->dedupe, id, (int64_t)uv_now(app->loop), (int64_t)app->dedupe_ttl_s * 1000,
                            &status, &body, &len);
  if (st == CG__DEDUPE_ANSWERED || st == CG__DEDUPE_INFLIGHT) {
    cg__log(app, CG_LOG_INFO, "core", "duplicate event %s: %s", id,
            st == CG__DEDUPE_ANSWERED ? "replayed the first answer" : "answering with the first delivery's answer");
    r->responded = 1;
    if (st == CG__DEDUPE_ANSWERED) {
      r->answered = 1;
      r->done(status, body, len, r->done_ud);
    } else if (cg__dedupe_wait(app->dedupe, id, r->done, r->done_ud) != 0) {
      answer_keep(r);
    } else {
      r->answered = 1; /* the waiter list now owns the transport's callback */
    }
    responder_maybe_free(r);
    return 0;
  }
  if (st < 0) {
    r->responded = 1;
    r->answered = 1; /* done is not called on this path */
    responder_maybe_free(r);
    return st;
  }
  r->event_id = id;
  if (!app->store || !app->dedupe_in_store) {
    run(r);
    return 0;
  }
  seen_job *j = calloc(1, sizeof(*j));
  if (j) j->event_id = cg_strdup(id);
  if (!j || !j->event_id || !app->worker) {
    if (j) seen_job_free(j);
    run(r);
    return 0;
  }
  j->r = r;
  j->now_ms = now;
  j->ttl_ms = (int64_t)app->dedupe_ttl_s * 1000;
  arm_deadline(r); /* the store check counts against the deadline too */
  j->job.run = seen_check_run;
  j->job.done = seen_check_done;
  cg__store_worker_submit(app->worker, &j->job);
  return 0;
}

/* -------------------------------------------------------------- workflows */

typedef struct wf_job {
  cg__job job;
  const cg_workflow *wf;
  struct cg_responder *r;
  int64_t now_ms;
  int rc;
  cg_reply *reply;
  char err[256];
} wf_job;

static void wf_job_run(cg__job *job, cg_store *s) {
  wf_job *j = CG_CONTAINER_OF(job, wf_job, job);
  if (atomic_load(&j->r->expired)) {
    /* Lark was answered "keep the card": applying the click now would move
     * the stored state past what the user sees. */
    j->rc = CG_ETIMEDOUT;
    cg_fmt(j->err, sizeof(j->err), "the deadline passed before the store got to it; not applied");
    return;
  }
  j->rc = cg__workflow_run(j->wf, s, &j->r->action->pub, j->now_ms, &j->reply, j->err, sizeof(j->err));
}

static void wf_job_done(cg__job *job) {
  wf_job *j = CG_CONTAINER_OF(job, wf_job, job);
  struct cg_responder *r = j->r;
  if (j->rc == 0 && j->job.commit_rc != 0) {
    /* The transaction did not commit: the click did not take effect. */
    j->rc = j->job.commit_rc;
    cg_fmt(j->err, sizeof(j->err), "%s", j->job.ran ? "the store could not commit" : "the store is busy (write lock held elsewhere)");
    cg_reply_free(j->reply);
    j->reply = NULL;
  }
  if (j->rc != 0 && r->app)
    cg__log(r->app, CG_LOG_ERROR, "workflow", "workflow %s failed on %s: %s (%s): answered \"keep the card\"",
            cg_workflow_name(j->wf), r->action->pub.message_id ? r->action->pub.message_id : "(no message id)",
            j->err, cg_strerror(j->rc));
  else if (j->err[0] && r->app)
    cg__log(r->app, CG_LOG_WARN, "workflow", "workflow %s on %s: %s", cg_workflow_name(j->wf),
            r->action->pub.message_id ? r->action->pub.message_id : "(no message id)", j->err);
  cg_respond(r, j->rc == 0 ? j->reply : NULL);
  free(j);
}

static void wf_handler(const cg_action *a, cg_responder *r, void *ud) {
  const cg_workflow *wf = ud;
  cg_app *app = r->app;
  if (cg__workflow_stateless(wf)) { /* pure: no store, answer now */
    cg__wf_outcome o;
    char err[256];
    memset(&o, 0, sizeof(o));
    int rc = cg__workflow_step(wf, NULL, a, cg_now_ms(), &o, err, sizeof(err));
    if (rc != 0)
      cg__log(app, CG_LOG_ERROR, "workflow", "workflow %s failed: %s: answered \"keep the card\"",
              cg_workflow_name(wf), err);
    cg_reply *reply = rc == 0 ? o.reply : NULL;
    o.reply = NULL;
    cg__wf_outcome_clear(&o);
    cg_respond(r, reply);
    return;
  }
  wf_job *j = app->worker ? calloc(1, sizeof(*j)) : NULL;
  if (!j) {
    cg__log(app, CG_LOG_ERROR, "workflow", "could not queue workflow %s: answered \"keep the card\"",
            cg_workflow_name(wf));
    cg_respond(r, NULL);
    return;
  }
  j->wf = wf;
  j->r = r;
  j->now_ms = cg_now_ms();
  j->job.run = wf_job_run;
  j->job.done = wf_job_done;
  cg__store_worker_submit(app->worker, &j->job);
}

int cg_app_add_workflow(cg_app *app, cg_workflow *wf) {
  if (!app || !wf) {
    cg_workflow_free(wf);
    return CG_EINVAL;
  }
  if (!app->store && !cg__workflow_stateless(wf)) {
    cg_fmt(app->last_error, sizeof(app->last_error), "workflow %s needs a store (cg_app_options.store)", cg_workflow_name(wf));
    cg_workflow_free(wf);
    return CG_ECONFIG;
  }
  cg_workflow **n = realloc(app->workflows, (app->nworkflows + 1) * sizeof(*n));
  if (!n) {
    cg_workflow_free(wf);
    return CG_ENOMEM;
  }
  app->workflows = n;
  int rc = cg_app_route(app, cg_workflow_match(wf), wf_handler, wf);
  if (rc != 0) {
    char msg[512];
    cg_fmt(msg, sizeof(msg), "workflow %s: %s", cg_workflow_name(wf), app->last_error);
    cg_strlcpy(app->last_error, msg, sizeof(app->last_error));
    cg_workflow_free(wf);
    return rc;
  }
  app->workflows[app->nworkflows++] = wf;
  return 0;
}
