/* DingTalk: a chat message to the bot answered with a card (seed 004).
 *
 * The message is ACKed at once ({"response":null}); then the card is
 * created and delivered into the conversation the message came from, and
 * recorded in the store in the workflow's initial state with its variables,
 * so the workflow takes the clicks that come back over the stream. */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "../../common/common.h"
#include "../openapi/dingtalk_api.h"
#include "action_int.h"
#include "app_int.h"
#include "cardgate/stream.h"
#include "store_worker.h"
#include "workflow_int.h"

#define LOG "dingtalk"

typedef struct sender {
  char *template_id;
  char *workflow;    /* name */
  char *state;       /* the workflow's initial state */
  json_t *vars;      /* the workflow's initial variables + overrides */
  char *card_json;   /* the workflow's initial card (kept with the record) */
} sender;

/* One card on its way: the API call, then the store record. */
typedef struct send_job {
  cg__job job;
  cg_app *app;       /* valid until the dt client is closed (cancels us) */
  cg__store_worker *worker;
  cg_card_record rec;
  char *template_id;
  int group;
  char *space_id;
  char *robot_code;
  int retried;
  int rc;
  char err[256];
} send_job;

static void send_job_free(send_job *j) {
  cg_card_record_clear(&j->rec);
  free(j->template_id);
  free(j->space_id);
  free(j->robot_code);
  free(j);
}

static void record_run(cg__job *job, cg_store *s) {
  send_job *j = CG_CONTAINER_OF(job, send_job, job);
  j->rc = cg_store_card_insert(s, &j->rec);
  if (j->rc) cg_strlcpy(j->err, cg_store_last_error(s), sizeof j->err);
}

static void record_done(cg__job *job) {
  /* The app may be gone by now: only our own memory is touched. */
  send_job_free(CG_CONTAINER_OF(job, send_job, job));
}

static int deliver(send_job *j);

static void delivered(const cg__dt_api_result *res, void *ud) {
  send_job *j = ud;
  if (res->cls == CG__API_CANCELLED) {
    send_job_free(j);
    return;
  }
  if (res->cls == CG__API_PERMANENT && strcmp(res->code, "param.cardAlreadyExist") == 0) {
    cg__log(j->app, CG_LOG_INFO, LOG, "card %s was already sent for this message (a redelivery): not sent again",
            j->rec.message_id);
    send_job_free(j);
    return;
  }
  if (res->cls != CG__API_OK) {
    int again = !j->retried && (res->cls == CG__API_RETRYABLE || res->cls == CG__API_RATE_LIMITED);
    cg__log(j->app, again ? CG_LOG_WARN : CG_LOG_ERROR, LOG,
            "card %s for %s %s not delivered: %s, HTTP %d, %s %s (request %s)%s", j->rec.message_id,
            j->group ? "group" : "user", j->space_id, cg__api_class_name(res->cls), res->http_status,
            res->code[0] ? res->code : "-", res->msg, res->request_id[0] ? res->request_id : "-",
            again ? "; retrying once" : "");
    if (again) {
      j->retried = 1;
      if (deliver(j) == 0) return;
    }
    send_job_free(j);
    return;
  }
  cg__log(j->app, CG_LOG_INFO, LOG, "card %s delivered to %s %s", j->rec.message_id, j->group ? "group" : "user",
          j->space_id);
  /* Recorded after delivery: a click on it then finds its variables. */
  cg__store_worker *w = j->worker;
  j->job.run = record_run;
  j->job.done = record_done;
  cg__store_worker_submit(w, &j->job);
}

static int deliver(send_job *j) {
  cg__dt_card_spec spec;
  memset(&spec, 0, sizeof spec);
  spec.card_template_id = j->template_id;
  spec.out_track_id = j->rec.message_id;
  spec.card_param_map_json = j->rec.vars_json;
  spec.group = j->group;
  spec.space_id = j->space_id;
  spec.robot_code = j->robot_code;
  return cg__dt_api_create_and_deliver(cg__app_dt_api(j->app), &spec, delivered, j);
}

/* A string field of the chat message (the action's value is the whole
 * message object, dingtalk_stream.h), NULL when absent or empty. */
static const char *field(const cg_action *a, const char *k) {
  const char *s = cg_action_value(a, k);
  return s && *s ? s : NULL;
}

static void on_message(const cg_action *a, cg_responder *r, void *ud) {
  sender *snd = ud;
  cg_app *app = NULL;
  /* conversationType "2" = group, "1" = 1:1 with the bot (dingtalk.md §3.4). */
  const char *ctype = field(a, "conversationType");
  int group = ctype && strcmp(ctype, "2") == 0;
  const char *space = group ? field(a, "conversationId") : field(a, "senderStaffId");
  const char *robot = field(a, "robotCode");
  /* Answer the message first: the platform wants its ACK now. */
  send_job *j = calloc(1, sizeof *j);
  if (j) {
    /* The card's outTrackId comes from the message's msgId: a redelivery
     * of the same message (even under a new frame messageId, dingtalk.md
     * §2.7) asks for the same card again, which DingTalk refuses
     * (param.cardAlreadyExist) instead of showing it twice. */
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    int ok = a->message_id
                 ? EVP_Digest(a->message_id, strlen(a->message_id), md, &mdlen, EVP_sha256(), NULL) == 1
                 : RAND_bytes(md, 12) == 1;
    if (!ok) {
      free(j);
      j = NULL;
    } else {
      char id[3 + 2 * 12 + 1] = "cg_";
      for (size_t i = 0; i < 12; i++) snprintf(id + 3 + 2 * i, 3, "%02x", md[i]);
      j->rec.message_id = cg_strdup(id);
      j->rec.platform = cg_strdup("dingtalk");
      j->rec.workflow = cg_strdup(snd->workflow);
      j->rec.state = cg_strdup(snd->state);
      j->rec.card_json = cg_strdup(snd->card_json);
      j->rec.vars_json = json_dumps(snd->vars, JSON_COMPACT);
      j->rec.created_at_ms = j->rec.updated_at_ms = cg_now_ms();
      j->template_id = cg_strdup(snd->template_id);
      j->space_id = space ? cg_strdup(space) : NULL;
      j->robot_code = robot ? cg_strdup(robot) : NULL;
      j->group = group;
    }
  }
  /* Which app: the responder's; kept by the job for logging only. */
  app = cg__responder_app(r);
  cg_respond(r, NULL);
  if (!j) {
    cg__log(app, CG_LOG_ERROR, LOG, "out of memory: no card sent for message %s", a->message_id);
    return;
  }
  j->app = app;
  j->worker = cg__app_worker(app);
  if (!space) {
    cg__log(app, CG_LOG_WARN, LOG,
            "message %s names no %s: no card sent (a 1:1 message from an external user has no senderStaffId)",
            a->message_id ? a->message_id : "-", group ? "conversationId" : "senderStaffId");
    send_job_free(j);
    return;
  }
  if (!j->rec.message_id || !j->rec.platform || !j->rec.workflow || !j->rec.state || !j->rec.card_json ||
      !j->rec.vars_json || !j->template_id || !j->space_id || (robot && !j->robot_code)) {
    cg__log(app, CG_LOG_ERROR, LOG, "out of memory: no card sent for message %s", a->message_id);
    send_job_free(j);
    return;
  }
  int rc = deliver(j);
  if (rc != 0) {
    cg__log(app, CG_LOG_ERROR, LOG, "card for message %s not sent: %s", a->message_id, cg_strerror(rc));
    send_job_free(j);
  }
}

static void sender_free(void *p) {
  sender *s = p;
  if (!s) return;
  free(s->template_id);
  free(s->workflow);
  free(s->state);
  free(s->card_json);
  json_decref(s->vars);
  free(s);
}

int cg_app_dingtalk_card_on_message(cg_app *app, const char *match, const char *template_id,
                                    const char *workflow, const char *vars_json) {
  if (!app) return CG_EINVAL;
  char *err = cg__app_error_buf(app);
  err[0] = '\0';
  if (cg_str_empty(template_id)) {
    cg_fmt(err, CG__APP_ERROR_CAP, "the DingTalk card template id is empty (the id of your card template, "
                                   "\"<uuid>.schema\", from the card platform)");
    return CG_EINVAL;
  }
  if (!cg__app_dt_api(app) || !cg__app_worker(app)) {
    cg_fmt(err, CG__APP_ERROR_CAP, "sending DingTalk cards needs the app's DingTalk client id and secret and a store");
    return CG_ECONFIG;
  }
  const cg_workflow *wf = cg__app_find_workflow(app, workflow);
  if (!wf) {
    cg_fmt(err, CG__APP_ERROR_CAP, "no workflow named \"%s\" was added to the app (add it first)",
           workflow ? workflow : "");
    return CG_ECONFIG;
  }
  sender *s = calloc(1, sizeof *s);
  if (!s) return CG_ENOMEM;
  const json_t *init = cg__workflow_initial_vars(wf);
  s->vars = init ? json_deep_copy(init) : json_object();
  if (vars_json && s->vars) {
    json_error_t je;
    json_t *over = json_loads(vars_json, JSON_REJECT_DUPLICATES, &je);
    if (!json_is_object(over)) {
      cg_fmt(err, CG__APP_ERROR_CAP, "the card variables must be a JSON object, e.g. {\"title\":\"…\"}%s%s",
             over ? "" : ": ", over ? "" : je.text);
      json_decref(over);
      sender_free(s);
      return CG_EINVAL;
    }
    json_object_update(s->vars, over);
    json_decref(over);
  }
  json_t *card = cg__workflow_initial_card(wf, cg_now_ms());
  s->card_json = card ? json_dumps(card, JSON_COMPACT) : NULL;
  json_decref(card);
  s->template_id = cg_strdup(template_id);
  s->workflow = cg_strdup(workflow);
  s->state = cg_strdup(cg__workflow_initial_state(wf));
  if (!s->vars || !s->card_json || !s->template_id || !s->workflow || !s->state) {
    sender_free(s);
    return CG_ENOMEM;
  }
  int rc = cg__app_route_owned(app, match ? match : "kind == \"message\" && platform == \"dingtalk\"", on_message, s,
                               sender_free);
  if (rc != 0) sender_free(s);
  return rc;
}
