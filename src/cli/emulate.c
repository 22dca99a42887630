/* `cardgate emulate`: the Lark Open API and the card-clicking platform on one
 * loopback port (src/emulator/), plus client subcommands that drive a running
 * emulator: click, state, fault. Notes: docs/emulator.md. */
#include <curl/curl.h>
#include <getopt.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "../common/common.h"
#include "../emulator/emulator.h"
#include "cardgate.h"
#include "cli.h"
#include "log_sink.h"

static const char usage_text[] =
    "Usage: cardgate emulate [options]\n"
    "       cardgate emulate click --emulator URL --message-id om_… [--value JSON]\n"
    "                              [--operator ou_…] [--format legacy|v2]\n"
    "       cardgate emulate state --emulator URL\n"
    "       cardgate emulate fault --emulator URL --on api|token\n"
    "                              --mode 500|html|timeout|429|revoke|none [--count N]\n"
    "                              [--seconds S] [--reset S]\n\n"
    "Runs Lark on this machine: the Open API (tenant/app tokens, im/v1 messages,\n"
    "interactive/v1/card/update with the platform's rules: token issued in a click,\n"
    "callback answered first, 2 uses, 30 minutes) and the platform side of card\n"
    "clicks: 'emulate click' builds a signed (and encrypted) callback for a card the\n"
    "emulator holds and POSTs it to the app. Everything is recorded: GET /emulator/state.\n"
    "It also plays the long-connection gateways (Lark: POST /callback/ws/endpoint and\n"
    "ws://…/ws/v2; DingTalk: /v1.0/gateway/connections/open and ws://…/connect) and\n"
    "DingTalk's token and card API; push clicks and messages, inject faults:\n"
    "POST /emulator/lark_ws/push|fault|config, /emulator/dingtalk/push|ping|\n"
    "disconnect|fault|config (docs/emulator.md).\n\n"
    "Options (server):\n"
    "  --host H                 numeric address to listen on (default 127.0.0.1)\n"
    "  --port N                 port (default 0 = any free port)\n"
    "  --app-url URL            the app's base URL (clicks go to URL/webhook/card,\n"
    "                           or URL/webhook/event for --format v2)\n"
    "  --app-id ID              env LARK_APP_ID (default cli_emulator)\n"
    "  --app-secret S           env LARK_APP_SECRET (default emulator_secret)\n"
    "  --verification-token T   env LARK_VERIFICATION_TOKEN (signs legacy clicks)\n"
    "  --encrypt-key K          env LARK_ENCRYPT_KEY (signs v2 clicks, encrypts all)\n"
    "  --token-expire-s N       access-token lifetime (default 7200)\n"
    "  --card-token-ttl-s N     callback update-token lifetime (default 1800)\n"
    "  --ws-port N              the gateways' WebSocket port (default 0 = any)\n"
    "  --dingtalk-client-id ID  DingTalk Client ID (default ding_emulator)\n"
    "  --dingtalk-client-secret S  (default emulator_secret)\n"
    "  --store-app              a store (marketplace) app: app_access_token with the\n"
    "                           app_ticket, tenant tokens per tenant key, and\n"
    "                           app_ticket/resend, which POSTs an app_ticket event\n"
    "                           (signed/encrypted like clicks) to URL/webhook/event\n"
    "  --log-format text|json   (default text, on stderr)\n"
    "Client options:\n"
    "  --emulator URL           a running emulator (e.g. http://127.0.0.1:9000)\n"
    "  -h, --help               this text\n";

static int want_help(int argc, char **argv) {
  for (int i = 1; i < argc; i++)
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return 1;
  return 0;
}

/* ---------------------------------------------------------------- client */

typedef struct resp_buf {
  char *data;
  size_t len;
} resp_buf;

static size_t on_data(char *p, size_t sz, size_t n, void *ud) {
  resp_buf *b = ud;
  size_t add = sz * n;
  char *d = realloc(b->data, b->len + add + 1);
  if (!d) return 0;
  memcpy(d + b->len, p, add);
  b->len += add;
  d[b->len] = '\0';
  b->data = d;
  return add;
}

/* One request to the emulator; prints the answer on stdout. Exit code. */
static int call_emulator(const char *base, const char *method, const char *path,
                         const char *body) {
  char url[2048];
  size_t n = strlen(base);
  cg_fmt(url, sizeof(url), "%.*s%s", (int)(n && base[n - 1] == '/' ? n - 1 : n),
         base, path);
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
    fprintf(stderr, "cardgate emulate: libcurl failed to initialise\n");
    return 1;
  }
  CURL *c = curl_easy_init();
  if (!c) {
    curl_global_cleanup();
    return 1;
  }
  resp_buf rb = {0};
  struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
  if (body) {
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
  }
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &rb);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 30000L);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  CURLcode cc = curl_easy_perform(c);
  long status = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  int rc = 0;
  if (cc != CURLE_OK) {
    fprintf(stderr, "cardgate emulate: %s: %s\n", url, curl_easy_strerror(cc));
    rc = 1;
  } else {
    printf("%s\n", rb.data ? rb.data : "");
    if (status < 200 || status > 299) {
      fprintf(stderr, "cardgate emulate: the emulator answered HTTP %ld\n", status);
      rc = 1;
    }
  }
  free(rb.data);
  curl_slist_free_all(h);
  curl_easy_cleanup(c);
  curl_global_cleanup();
  return rc;
}

enum {
  C_EMU = 1000, C_MSG, C_VALUE, C_OP, C_FORMAT, C_ON, C_MODE, C_COUNT,
  C_SECONDS, C_RESET, C_TAG
};
static const struct option client_opts[] = {
    {"emulator", required_argument, 0, C_EMU},
    {"message-id", required_argument, 0, C_MSG},
    {"value", required_argument, 0, C_VALUE},
    {"operator", required_argument, 0, C_OP},
    {"format", required_argument, 0, C_FORMAT},
    {"tag", required_argument, 0, C_TAG},
    {"on", required_argument, 0, C_ON},
    {"mode", required_argument, 0, C_MODE},
    {"count", required_argument, 0, C_COUNT},
    {"seconds", required_argument, 0, C_SECONDS},
    {"reset", required_argument, 0, C_RESET},
    {"help", no_argument, 0, 'h'},
    {0, 0, 0, 0}};

static int parse_pos(const char *v, int *out) {
  char *end;
  long n = strtol(v, &end, 10);
  if (!*v || *end || n < 0 || n > 1000000) return -1;
  *out = (int)n;
  return 0;
}

static int client(int argc, char **argv) {
  const char *sub = argv[0];
  const char *emu = NULL, *msg = NULL, *value = NULL, *op = NULL, *fmt = NULL,
             *on = NULL, *mode = NULL, *tag = NULL;
  int count = 1, seconds = 15, reset = 1, ch;
  char cmd[32];
  cg_fmt(cmd, sizeof(cmd), "emulate %s", sub);
  opterr = 0;
  while ((ch = getopt_long(argc, argv, ":h", client_opts, NULL)) != -1) {
    switch (ch) {
      case 'h': fputs(usage_text, stdout); return 0;
      case C_EMU: emu = optarg; break;
      case C_MSG: msg = optarg; break;
      case C_VALUE: value = optarg; break;
      case C_OP: op = optarg; break;
      case C_FORMAT: fmt = optarg; break;
      case C_TAG: tag = optarg; break;
      case C_ON: on = optarg; break;
      case C_MODE: mode = optarg; break;
      case C_COUNT:
        if (parse_pos(optarg, &count)) return cg_cli_usage_error(cmd, "--count wants a number, got '%s'", optarg);
        break;
      case C_SECONDS:
        if (parse_pos(optarg, &seconds)) return cg_cli_usage_error(cmd, "--seconds wants a number, got '%s'", optarg);
        break;
      case C_RESET:
        if (parse_pos(optarg, &reset)) return cg_cli_usage_error(cmd, "--reset wants a number, got '%s'", optarg);
        break;
      case ':': return cg_cli_usage_error(cmd, "%s needs a value", argv[optind - 1]);
      default: return cg_cli_usage_error(cmd, "unknown option '%s'", argv[optind - 1]);
    }
  }
  if (optind < argc) return cg_cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
  if (!emu) return cg_cli_usage_error(cmd, "--emulator URL is required (the address 'cardgate emulate' printed)");
  if (!strcmp(sub, "state")) return call_emulator(emu, "GET", "/emulator/state", NULL);
  json_t *b = json_object();
  if (!strcmp(sub, "click")) {
    if (!msg) {
      json_decref(b);
      return cg_cli_usage_error(cmd, "--message-id om_… is required (a message the emulator holds)");
    }
    json_t *v = json_loads(value ? value : "{}", JSON_DECODE_ANY, NULL);
    if (!v) {
      json_decref(b);
      return cg_cli_usage_error(cmd, "--value must be JSON, e.g. '{\"action\":\"accept\"}'");
    }
    if (fmt && strcmp(fmt, "legacy") && strcmp(fmt, "v2")) {
      json_decref(v);
      json_decref(b);
      return cg_cli_usage_error(cmd, "--format is legacy or v2, got '%s'", fmt);
    }
    json_object_set_new(b, "message_id", json_string(msg));
    json_object_set_new(b, "value", v);
    if (op) json_object_set_new(b, "operator", json_string(op));
    if (fmt) json_object_set_new(b, "format", json_string(fmt));
    if (tag) json_object_set_new(b, "tag", json_string(tag));
  } else { /* fault */
    if (!on || (strcmp(on, "api") && strcmp(on, "token"))) {
      json_decref(b);
      return cg_cli_usage_error(cmd, "--on api|token is required");
    }
    if (!mode || (strcmp(mode, "500") && strcmp(mode, "html") && strcmp(mode, "timeout") &&
                  strcmp(mode, "429") && strcmp(mode, "revoke") && strcmp(mode, "none"))) {
      json_decref(b);
      return cg_cli_usage_error(cmd, "--mode is 500, html, timeout, 429, revoke or none");
    }
    json_object_set_new(b, "on", json_string(on));
    json_object_set_new(b, "mode", json_string(mode));
    json_object_set_new(b, "count", json_integer(count));
    json_object_set_new(b, "seconds", json_integer(seconds));
    json_object_set_new(b, "reset", json_integer(reset));
  }
  char *s = json_dumps(b, JSON_COMPACT);
  json_decref(b);
  int rc = call_emulator(emu, "POST", !strcmp(sub, "click") ? "/emulator/click" : "/emulator/fault", s);
  free(s);
  return rc;
}

/* ---------------------------------------------------------------- server */

typedef struct emu_state {
  uv_loop_t *loop;
  cg__emu *emu;
  uv_signal_t sigint, sigterm;
  int stopping;
} emu_state;

static void emu_closed(void *ud) {
  emu_state *st = ud;
  st->emu = NULL;
  uv_close((uv_handle_t *)&st->sigint, NULL);
  uv_close((uv_handle_t *)&st->sigterm, NULL);
}

static void on_signal(uv_signal_t *h, int signum) {
  emu_state *st = h->data;
  (void)signum;
  if (st->stopping) _exit(1);
  st->stopping = 1;
  cg__emu_close(st->emu, emu_closed, st);
}

enum {
  O_HOST = 2000, O_PORT, O_APPURL, O_APPID, O_SECRET, O_VTOKEN, O_EKEY,
  O_TEXP, O_CTTL, O_LOGF, O_STORE, O_WSPORT, O_DTID, O_DTSECRET
};
static const struct option server_opts[] = {
    {"host", required_argument, 0, O_HOST},
    {"port", required_argument, 0, O_PORT},
    {"app-url", required_argument, 0, O_APPURL},
    {"app-id", required_argument, 0, O_APPID},
    {"app-secret", required_argument, 0, O_SECRET},
    {"verification-token", required_argument, 0, O_VTOKEN},
    {"encrypt-key", required_argument, 0, O_EKEY},
    {"token-expire-s", required_argument, 0, O_TEXP},
    {"card-token-ttl-s", required_argument, 0, O_CTTL},
    {"log-format", required_argument, 0, O_LOGF},
    {"store-app", no_argument, 0, O_STORE},
    {"ws-port", required_argument, 0, O_WSPORT},
    {"dingtalk-client-id", required_argument, 0, O_DTID},
    {"dingtalk-client-secret", required_argument, 0, O_DTSECRET},
    {"help", no_argument, 0, 'h'},
    {0, 0, 0, 0}};

int cg_cli_emulate(int argc, char **argv) {
  if (argc >= 2 && (!strcmp(argv[1], "click") || !strcmp(argv[1], "state") ||
                    !strcmp(argv[1], "fault"))) {
    if (want_help(argc - 1, argv + 1)) {
      fputs(usage_text, stdout);
      return 0;
    }
    optind = 0;
    return client(argc - 1, argv + 1);
  }
  cg__emu_options o;
  cg__emu_options_init(&o);
  if (cg_cli_env("LARK_APP_ID")) o.app_id = cg_cli_env("LARK_APP_ID");
  if (cg_cli_env("LARK_APP_SECRET")) o.app_secret = cg_cli_env("LARK_APP_SECRET");
  if (cg_cli_env("LARK_VERIFICATION_TOKEN")) o.verification_token = cg_cli_env("LARK_VERIFICATION_TOKEN");
  if (cg_cli_env("LARK_ENCRYPT_KEY")) o.encrypt_key = cg_cli_env("LARK_ENCRYPT_KEY");
  cg_cli_log logcfg = {0};
  int ch;
  opterr = 0;
  while ((ch = getopt_long(argc, argv, ":h", server_opts, NULL)) != -1) {
    switch (ch) {
      case 'h': fputs(usage_text, stdout); return 0;
      case O_HOST: o.host = optarg; break;
      case O_PORT:
        if (parse_pos(optarg, &o.port) || o.port > 65535)
          return cg_cli_usage_error("emulate", "--port wants 0..65535, got '%s'", optarg);
        break;
      case O_APPURL: o.app_url = optarg; break;
      case O_WSPORT:
        if (parse_pos(optarg, &o.ws_port) || o.ws_port > 65535)
          return cg_cli_usage_error("emulate", "--ws-port wants 0..65535, got '%s'", optarg);
        break;
      case O_DTID: o.dingtalk_client_id = optarg; break;
      case O_DTSECRET: o.dingtalk_client_secret = optarg; break;
      case O_APPID: o.app_id = optarg; break;
      case O_SECRET: o.app_secret = optarg; break;
      case O_VTOKEN: o.verification_token = optarg; break;
      case O_EKEY: o.encrypt_key = optarg; break;
      case O_TEXP:
        if (parse_pos(optarg, &o.token_expire_s) || !o.token_expire_s)
          return cg_cli_usage_error("emulate", "--token-expire-s wants seconds > 0, got '%s'", optarg);
        break;
      case O_CTTL:
        if (parse_pos(optarg, &o.card_token_ttl_s) || !o.card_token_ttl_s)
          return cg_cli_usage_error("emulate", "--card-token-ttl-s wants seconds > 0, got '%s'", optarg);
        break;
      case O_STORE: o.store_app = 1; break;
      case O_LOGF:
        if (!strcmp(optarg, "json")) logcfg.json = 1;
        else if (strcmp(optarg, "text")) return cg_cli_usage_error("emulate", "--log-format is 'text' or 'json', got '%s'", optarg);
        break;
      case ':': return cg_cli_usage_error("emulate", "%s needs a value", argv[optind - 1]);
      default: return cg_cli_usage_error("emulate", "unknown option '%s'", argv[optind - 1]);
    }
  }
  if (optind < argc)
    return cg_cli_usage_error("emulate", "unexpected argument '%s' (subcommands: click, state, fault)", argv[optind]);
  o.log = cg_cli_log_fn;
  o.log_ud = &logcfg;
  uv_loop_t loop;
  if (uv_loop_init(&loop)) {
    fprintf(stderr, "cardgate emulate: could not create the event loop\n");
    return 1;
  }
  int err = 0;
  emu_state st = {.loop = &loop};
  st.emu = cg__emu_new(&loop, &o, &err);
  if (!st.emu) {
    fprintf(stderr, "cardgate emulate: %s\n", err == CG_EINVAL ? "invalid options (is --host a numeric address?)" : cg_strerror(err));
    uv_loop_close(&loop);
    return err == CG_EINVAL ? 2 : 1;
  }
  int rc = cg__emu_listen(st.emu);
  if (rc) {
    fprintf(stderr, "cardgate emulate: cannot listen on %s port %d: %s\n", o.host, o.port, cg_strerror(rc));
    cg__emu_close(st.emu, NULL, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    return 1;
  }
  int port = cg__emu_port(st.emu);
  const char *h = o.host;
  printf("cardgate emulate: listening on http://%s:%d\n", h, port);
  printf("  point the app at it:   cardgate serve --lark-base-url http://%s:%d (LARK_APP_ID=%s)\n", h, port, o.app_id);
  printf("  send a card through it: cardgate send --base-url http://%s:%d …\n", h, port);
  printf("  click a card:          cardgate emulate click --emulator http://%s:%d --message-id om_…\n", h, port);
  printf("  inspect:               curl http://%s:%d/emulator/state\n", h, port);
  printf("cardgate emulate: gateways on ws://%s:%d (Lark /ws/v2, DingTalk /connect)\n", h, cg__emu_ws_port(st.emu));
  printf("  Lark long connection:  cardgate serve --lark-transport ws --lark-base-url http://%s:%d\n", h, port);
  printf("  DingTalk Stream:       cardgate serve --dingtalk-client-id %s --dingtalk-base-url http://%s:%d\n",
         o.dingtalk_client_id ? o.dingtalk_client_id : "ding_emulator", h, port);
  if (!o.app_url) printf("  (no --app-url: clicks need one; set it with POST /emulator/config {\"app_url\":…})\n");
  fflush(stdout);
  uv_signal_init(&loop, &st.sigint);
  uv_signal_init(&loop, &st.sigterm);
  st.sigint.data = st.sigterm.data = &st;
  uv_signal_start(&st.sigint, on_signal, SIGINT);
  uv_signal_start(&st.sigterm, on_signal, SIGTERM);
  signal(SIGPIPE, SIG_IGN);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  return 0;
}
