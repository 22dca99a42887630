/* A load-generating long-connection gateway for bench/run_stream.sh.
 *
 * Plays the platform side of the Lark long connection (bootstrap endpoint,
 * protobuf frames) or of DingTalk Stream mode (connections/open, JSON frames)
 * with the same codecs cardgate uses, and pushes card clicks through every
 * connected client as fast as the client ACKs them, keeping `window`
 * messages in flight per connection. Each message has its own event id /
 * messageId (no duplicate suppression shortcut). Reports messages/s and the
 * push→ACK latency distribution as one JSON line on stdout.
 *
 *   bench_stream_gateway --mode lark|dingtalk [--seconds S] [--warmup S]
 *                        [--window W] [--hold]
 *
 * Prints "PORT <http port>" when listening, "MEASURING" when the warm-up
 * ends. --hold: no pushes; prints
 * "CONNECTIONS <n>" whenever the number of clients changes (memory runs).
 * Development tool, not a test. */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <uv.h>

#include "common/common.h"
#include "lib/codec/dingtalk_stream.h"
#include "lib/codec/lark_frame.h"
#include "lib/net/http_server_int.h"
#include "lib/net/ws.h"

#define MAX_SAMPLES (4u * 1024u * 1024u)

typedef struct gw {
  uv_loop_t *loop;
  int lark;
  int hold;
  int window;
  double seconds, warmup;
  cg_server *http;
  cg__ws_server *wss;
  uv_timer_t phase;
  int measuring; /* 0 warm-up, 1 measuring, 2 done */
  uint64_t seq;
  uint64_t acked, acked_measured, errors;
  uint64_t t_start_ns, t_end_ns;
  uint64_t *lat_us;
  size_t nlat;
  size_t conns;
  char payload_fmt[2048];
  cg_buf out;
} gw;

typedef struct conn {
  gw *g;
  cg__ws *ws;
  uint64_t sent_ns[1024]; /* by slot = message number % 1024 */
} conn;

static gw G;

static uint64_t now_ns(void) { return uv_hrtime(); }

static void push(conn *c);

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

static void finish(void) {
  gw *g = &G;
  if (g->measuring == 2) return;
  g->measuring = 2;
  g->t_end_ns = now_ns();
  double secs = (double)(g->t_end_ns - g->t_start_ns) / 1e9;
  uint64_t p50 = 0, p99 = 0;
  if (g->nlat) {
    qsort(g->lat_us, g->nlat, sizeof g->lat_us[0], cmp_u64);
    p50 = g->lat_us[g->nlat / 2];
    p99 = g->lat_us[(size_t)((double)g->nlat * 0.99)];
  }
  printf("{\"messages\":%" PRIu64 ",\"seconds\":%.3f,\"rate\":%.1f,\"p50_us\":%" PRIu64 ",\"p99_us\":%" PRIu64
         ",\"errors\":%" PRIu64 ",\"window\":%d}\n",
         g->acked_measured, secs, secs > 0 ? (double)g->acked_measured / secs : 0.0, p50, p99, g->errors,
         g->window);
  fflush(stdout);
  exit(0);
}

static void phase_cb(uv_timer_t *t) {
  gw *g = t->data;
  if (g->measuring == 0) {
    g->measuring = 1;
    g->t_start_ns = now_ns();
    printf("MEASURING\n"); /* bench/run_stream.sh samples the client's CPU now */
    fflush(stdout);
    uv_timer_start(&g->phase, phase_cb, (uint64_t)(g->seconds * 1000), 0);
  } else {
    finish();
  }
}

static void acked(conn *c, uint64_t n, int ok) {
  gw *g = c->g;
  if (!ok) g->errors++;
  g->acked++;
  if (g->measuring == 1) {
    g->acked_measured++;
    if (g->nlat < MAX_SAMPLES) g->lat_us[g->nlat++] = (now_ns() - c->sent_ns[n % 1024]) / 1000;
  }
  if (g->measuring < 2) push(c);
}

/* ---- Lark ------------------------------------------------------------------ */

static void lark_push(conn *c) {
  gw *g = c->g;
  uint64_t n = ++g->seq;
  char mid[32], ts[32], body[2600];
  snprintf(mid, sizeof mid, "m%" PRIu64, n);
  snprintf(ts, sizeof ts, "%" PRId64, cg_now_ms());
  int len = snprintf(body, sizeof body, g->payload_fmt, n, n);
  cg__lark_frame f;
  memset(&f, 0, sizeof f);
  f.seq_id = n;
  f.log_id = n;
  f.service = 1;
  f.method = CG__LARK_METHOD_DATA;
  if (cg__lark_frame_add_header(&f, "type", "event") || cg__lark_frame_add_header(&f, "message_id", mid) ||
      cg__lark_frame_add_header(&f, "sum", "1") || cg__lark_frame_add_header(&f, "seq", "0") ||
      cg__lark_frame_add_header(&f, "trace_id", mid) || cg__lark_frame_add_header(&f, "timestamp", ts) ||
      cg__lark_frame_set_payload(&f, body, (size_t)len))
    abort();
  cg_buf_reset(&g->out);
  if (cg__lark_frame_encode(&f, &g->out)) abort();
  cg__lark_frame_clear(&f);
  c->sent_ns[n % 1024] = now_ns();
  if (cg__ws_send(c->ws, 1, g->out.data, g->out.len)) g->errors++;
}

static void lark_message(conn *c, const uint8_t *data, size_t len) {
  gw *g = c->g;
  cg__lark_frame f;
  if (cg__lark_frame_decode(data, len, &f, NULL, 0)) {
    g->errors++;
    return;
  }
  const char *type = cg__lark_frame_header(&f, "type");
  if (f.method == CG__LARK_METHOD_CONTROL && type && !strcmp(type, "ping")) {
    static const char cfg[] = "{\"ReconnectCount\":-1,\"ReconnectInterval\":120,\"ReconnectNonce\":0,"
                              "\"PingInterval\":120}";
    cg__lark_frame p;
    memset(&p, 0, sizeof p);
    p.service = f.service;
    if (cg__lark_frame_add_header(&p, "type", "pong") || cg__lark_frame_set_payload(&p, cfg, sizeof cfg - 1))
      abort();
    cg_buf_reset(&g->out);
    if (cg__lark_frame_encode(&p, &g->out) == 0) cg__ws_send(c->ws, 1, g->out.data, g->out.len);
    cg__lark_frame_clear(&p);
  } else if (f.method == CG__LARK_METHOD_DATA) {
    int code = 0;
    char *d = NULL;
    size_t dl = 0;
    int ok = f.has_payload && cg__lark_ack_parse(f.payload, f.payload_len, &code, &d, &dl) == 0 && code == 200 &&
             d && strstr(d, "\"card\"");
    free(d);
    acked(c, f.seq_id, ok);
  }
  cg__lark_frame_clear(&f);
}

/* ---- DingTalk -------------------------------------------------------------- */

static void dt_push(conn *c) {
  gw *g = c->g;
  uint64_t n = ++g->seq;
  char data[1024], frame[3000];
  snprintf(data, sizeof data, g->payload_fmt, n);
  json_t *fr = json_pack("{s:s,s:s,s:{s:s,s:s,s:s,s:s},s:s}", "specVersion", "1.0", "type", "CALLBACK", "headers",
                         "topic", CG__DT_TOPIC_CARD, "messageId", "", "contentType", "application/json", "time",
                         "0", "data", data);
  char mid[32];
  snprintf(mid, sizeof mid, "m_%" PRIu64, n);
  json_object_set_new(json_object_get(fr, "headers"), "messageId", json_string(mid));
  size_t len = json_dumpb(fr, frame, sizeof frame, JSON_COMPACT);
  json_decref(fr);
  c->sent_ns[n % 1024] = now_ns();
  if (cg__ws_send(c->ws, 0, frame, len)) g->errors++;
}

static void dt_message(conn *c, const uint8_t *data, size_t len) {
  json_t *a = json_loadb((const char *)data, len, 0, NULL);
  const char *mid = json_string_value(json_object_get(json_object_get(a, "headers"), "messageId"));
  int code = (int)json_integer_value(json_object_get(a, "code"));
  uint64_t n = 0;
  if (mid && !strncmp(mid, "m_", 2)) n = strtoull(mid + 2, NULL, 10);
  const char *d = json_string_value(json_object_get(a, "data"));
  int ok = code == 200 && d && strstr(d, "\"response\"");
  json_decref(a);
  if (n) acked(c, n, ok);
  else c->g->errors++;
}

/* ---- connections ------------------------------------------------------------ */

static void push(conn *c) {
  if (c->g->lark) lark_push(c);
  else dt_push(c);
}

static void on_open(cg__ws *ws, void *ud) {
  conn *c = ud;
  c->ws = ws;
  gw *g = c->g;
  g->conns++;
  if (g->hold) {
    printf("CONNECTIONS %zu\n", g->conns);
    fflush(stdout);
    return;
  }
  if (!uv_is_active((uv_handle_t *)&g->phase)) uv_timer_start(&g->phase, phase_cb, (uint64_t)(g->warmup * 1000), 0);
  for (int i = 0; i < g->window; i++) push(c);
}

static void on_message(cg__ws *ws, int binary, const uint8_t *data, size_t len, void *ud) {
  (void)ws, (void)binary;
  conn *c = ud;
  if (c->g->lark) lark_message(c, data, len);
  else dt_message(c, data, len);
}

static void on_close(cg__ws *ws, int rc, const cg__ws_close_info *info, void *ud) {
  (void)ws, (void)rc, (void)info;
  conn *c = ud;
  c->g->conns--;
  if (c->g->hold) {
    printf("CONNECTIONS %zu\n", c->g->conns);
    fflush(stdout);
  }
  free(c);
}

static int accept_cb(cg__ws_server *s, const cg__ws_request *req, cg__ws_callbacks *cbs, void **conn_ud,
                     char *rh, char *rb, void *ud) {
  (void)s, (void)req, (void)rh, (void)rb;
  conn *c = calloc(1, sizeof *c);
  if (!c) return 503;
  c->g = ud;
  cbs->on_open = on_open;
  cbs->on_message = on_message;
  cbs->on_close = on_close;
  *conn_ud = c;
  return 101;
}

static void http_cb(cg__http_req *req, const cg__http_request *r, void *ud) {
  gw *g = ud;
  char body[512];
  int port = cg__ws_server_port(g->wss);
  int n = g->lark ? snprintf(body, sizeof body,
                             "{\"code\":0,\"msg\":\"ok\",\"data\":{\"URL\":\"ws://127.0.0.1:%d/ws/v2?fpid=1&device_id="
                             "bench&service_id=1\",\"ClientConfig\":{\"ReconnectCount\":-1,\"ReconnectInterval\":"
                             "120,\"ReconnectNonce\":0,\"PingInterval\":120}}}",
                             port)
                  : snprintf(body, sizeof body, "{\"endpoint\":\"ws://127.0.0.1:%d/connect\",\"ticket\":\"t\"}", port);
  (void)r;
  cg__server_reply(req, 200, body, (size_t)n);
}

int main(int argc, char **argv) {
  gw *g = &G;
  g->window = 16;
  g->seconds = 10;
  g->warmup = 2;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--mode") && i + 1 < argc) g->lark = !strcmp(argv[++i], "lark");
    else if (!strcmp(argv[i], "--seconds") && i + 1 < argc) g->seconds = atof(argv[++i]);
    else if (!strcmp(argv[i], "--warmup") && i + 1 < argc) g->warmup = atof(argv[++i]);
    else if (!strcmp(argv[i], "--window") && i + 1 < argc) g->window = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--hold")) g->hold = 1;
    else {
      fprintf(stderr, "usage: %s --mode lark|dingtalk [--seconds S] [--warmup S] [--window W] [--hold]\n", argv[0]);
      return 2;
    }
  }
  if (g->window < 1 || g->window > 1000) g->window = 16;
  signal(SIGPIPE, SIG_IGN);
  if (g->lark)
    snprintf(g->payload_fmt, sizeof g->payload_fmt, "%s",
             "{\"schema\":\"2.0\",\"header\":{\"event_id\":\"ev_%" PRIu64
             "\",\"token\":\"\",\"create_time\":\"1700000000000\",\"event_type\":\"card.action.trigger\","
             "\"tenant_key\":\"tk\",\"app_id\":\"cli_a1b2c3d4e5f60718\"},\"event\":{\"operator\":{\"tenant_key\":"
             "\"tk\",\"user_id\":\"u1\",\"open_id\":\"ou_1\",\"union_id\":\"on_1\"},\"token\":\"c-t%" PRIu64
             "\",\"action\":{\"value\":{\"button_type\":\"public_publish\"},\"tag\":\"button\"},\"host\":"
             "\"im_message\",\"context\":{\"open_message_id\":\"om_bench\",\"open_chat_id\":\"oc_bench\"}}}");
  else
    snprintf(g->payload_fmt, sizeof g->payload_fmt, "%s",
             "{\"type\":\"actionCallback\",\"outTrackId\":\"bench_%" PRIu64
             "\",\"corpId\":\"ding1\",\"userId\":\"u1\",\"userIdType\":1,\"spaceType\":\"im\",\"spaceId\":\"cid1\","
             "\"content\":\"{\\\"cardPrivateData\\\":{\\\"actionIds\\\":[\\\"b1\\\"],\\\"params\\\":{"
             "\\\"button_type\\\":\\\"public_publish\\\"}}}\",\"extension\":\"{}\"}");
  g->lat_us = malloc(MAX_SAMPLES * sizeof *g->lat_us);
  cg_buf_init(&g->out, 1u << 20);
  g->loop = uv_default_loop();
  uv_timer_init(g->loop, &g->phase);
  g->phase.data = g;
  cg__ws_server_options wo = {0};
  wo.max_connections = 4096;
  int err = cg__ws_server_new(g->loop, &wo, accept_cb, g, &g->wss);
  if (err) {
    fprintf(stderr, "ws server: %s\n", cg_strerror(err));
    return 1;
  }
  cg_server_options so;
  cg_server_options_init(&so);
  so.port = 0;
  g->http = cg__server_new_handler(g->loop, &so, http_cb, g, NULL, NULL, &err);
  if (!g->http || cg_server_listen(g->http)) {
    fprintf(stderr, "http server failed\n");
    return 1;
  }
  printf("PORT %d\n", cg_server_port(g->http));
  fflush(stdout);
  return uv_run(g->loop, UV_RUN_DEFAULT);
}
