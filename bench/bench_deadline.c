/* The cost of the deadline machinery (bench/run.sh, "deadline" section): one
 * server on the public API (cardgate.h) whose route is chosen by the click's
 * value.bench:
 *   "inline" — cg_respond() inside the handler: no deadline timer at all;
 *   "turn"   — answered one loop turn later (a uv_idle drains the queue on
 *              the next iteration): the deadline timer is armed and stopped;
 *   "late"   — answered LATE_EXTRA_MS after the deadline: the deadline
 *              timer answers "keep the card", the late card goes to the
 *              outbox (store + Open API at --lark-base-url, when LARK_APP_ID
 *              and LARK_APP_SECRET are set).
 * Every route answers the same card (bench/stateless.json's, plus
 * update_multi so the emulator accepts it as a message patch), via
 * cg_reply_card. Logging: errors only, to stderr.
 *
 * Usage: bench_deadline [--port N] [--deadline-ms N] [--db PATH]
 *                       [--lark-base-url URL]
 * Secrets from LARK_VERIFICATION_TOKEN, LARK_ENCRYPT_KEY, LARK_APP_ID,
 * LARK_APP_SECRET. Prints "listening on http://127.0.0.1:PORT". */
#include <cardgate.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LATE_EXTRA_MS 2

static const char CARD[] =
    "{\"config\":{\"wide_screen_mode\":true,\"update_multi\":true},\"elements\":[{\"tag\":\"div\","
    "\"text\":{\"tag\":\"lark_md\",\"content\":\"\xe5\xb7\xb2\xe5\xae\x8c"
    "\xe6\x88\x90\"}}]}";

/* A FIFO of responders: "turn" drains it from a uv_idle (next iteration);
 * "late" from one uv_timer (every entry has the same delay, so FIFO order is
 * due order). */
typedef struct item {
  cg_responder *r;
  uint64_t due;
  struct item *next;
} item;
typedef struct fifo {
  item *head, *tail;
} fifo;

static uv_loop_t *loop;
static uint32_t deadline_ms = 5;
static fifo turn_q, late_q;
static uv_idle_t turn_idle;
static uv_timer_t late_timer;
static int late_armed;

static void push(fifo *q, cg_responder *r, uint64_t due) {
  item *it = malloc(sizeof *it);
  if (!it) {
    cg_respond(r, NULL);
    return;
  }
  it->r = r;
  it->due = due;
  it->next = NULL;
  if (q->tail) q->tail->next = it;
  else q->head = it;
  q->tail = it;
}

static item *pop(fifo *q) {
  item *it = q->head;
  if (it) {
    q->head = it->next;
    if (!q->head) q->tail = NULL;
  }
  return it;
}

static void answer_card(cg_responder *r) {
  int err;
  cg_respond(r, cg_reply_card(CARD, &err)); /* late: CG_ETIMEDOUT, card → outbox */
}

static void on_turn(uv_idle_t *h) {
  item *it;
  fifo q = turn_q; /* only what was queued before this turn */
  turn_q.head = turn_q.tail = NULL;
  while ((it = pop(&q))) {
    answer_card(it->r);
    free(it);
  }
  if (!turn_q.head) uv_idle_stop(h);
}

static void on_late(uv_timer_t *t) {
  uint64_t now = uv_now(loop);
  late_armed = 0;
  while (late_q.head && late_q.head->due <= now) {
    item *it = pop(&late_q);
    answer_card(it->r);
    free(it);
  }
  if (late_q.head) {
    uv_timer_start(t, on_late, late_q.head->due - now, 0);
    late_armed = 1;
  }
}

static void h_inline(const cg_action *a, cg_responder *r, void *ud) {
  (void)a, (void)ud;
  answer_card(r);
}

static void h_turn(const cg_action *a, cg_responder *r, void *ud) {
  (void)a, (void)ud;
  if (!turn_q.head) uv_idle_start(&turn_idle, on_turn);
  push(&turn_q, r, 0);
}

static void h_late(const cg_action *a, cg_responder *r, void *ud) {
  (void)a, (void)ud;
  uint64_t due = uv_now(loop) + deadline_ms + LATE_EXTRA_MS;
  push(&late_q, r, due);
  if (!late_armed) {
    uv_timer_start(&late_timer, on_late, deadline_ms + LATE_EXTRA_MS, 0);
    late_armed = 1;
  }
}

static void log_err(cg_log_level lv, const char *comp, const char *msg, void *ud) {
  (void)ud;
  fprintf(stderr, "bench_deadline: %s %s: %s\n", cg_log_level_name(lv), comp, msg);
}

int main(int argc, char **argv) {
  int port = 0;
  const char *db = ":memory:", *base = NULL;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--port")) port = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--deadline-ms")) deadline_ms = (uint32_t)atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--db")) db = argv[i + 1];
    else if (!strcmp(argv[i], "--lark-base-url")) base = argv[i + 1];
    else {
      fprintf(stderr, "usage: bench_deadline [--port N] [--deadline-ms N] [--db PATH] [--lark-base-url URL]\n");
      return 2;
    }
  }
  loop = uv_default_loop();
  uv_idle_init(loop, &turn_idle);
  uv_timer_init(loop, &late_timer);
  char errbuf[256] = "";
  int err = 0;
  cg_store *store = cg_store_open(db, errbuf, sizeof errbuf, &err);
  if (!store) {
    fprintf(stderr, "bench_deadline: store %s: %s\n", db, errbuf);
    return 1;
  }
  cg_app_options o;
  cg_app_options_init(&o);
  o.lark_verification_token = getenv("LARK_VERIFICATION_TOKEN");
  o.lark_encrypt_key = getenv("LARK_ENCRYPT_KEY");
  o.lark_app_id = getenv("LARK_APP_ID");
  o.lark_app_secret = getenv("LARK_APP_SECRET");
  o.lark_base_url = base;
  o.deadline_ms = deadline_ms;
  o.store = store;
  o.log = log_err;
  o.log_level = CG_LOG_ERROR;
  cg_app *app = cg_app_new(loop, &o, &err);
  if (!app || cg_app_route(app, "value.bench == \"inline\"", h_inline, NULL) ||
      cg_app_route(app, "value.bench == \"turn\"", h_turn, NULL) ||
      cg_app_route(app, "value.bench == \"late\"", h_late, NULL)) {
    fprintf(stderr, "bench_deadline: app: %s\n", app ? cg_app_last_error(app) : cg_strerror(err));
    return 1;
  }
  cg_server_options so;
  cg_server_options_init(&so);
  so.port = port;
  cg_server *srv = cg_server_new(app, &so, &err);
  if (!srv || (err = cg_server_listen(srv)) != 0) {
    fprintf(stderr, "bench_deadline: listen: %s\n", srv ? uv_strerror(err) : cg_strerror(err));
    return 1;
  }
  printf("listening on http://127.0.0.1:%d (deadline %u ms, outbox %s)\n", cg_server_port(srv), deadline_ms,
         o.lark_app_id && o.lark_app_secret ? "on" : "off");
  fflush(stdout);
  return uv_run(loop, UV_RUN_DEFAULT);
}
