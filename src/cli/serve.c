/* cardgate serve: the HTTP receiver with the store and the workflows. */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cardgate.h"
#include "cli.h"
#include "common/common.h"
#include "log_sink.h"

#define MAX_WORKFLOWS 64
#define MAX_UPSTREAMS 64

typedef struct serve_cfg {
  const char *host;
  int port;
  const char *db;
  const char *card_path;
  const char *event_path;
  const char *verification_token;
  const char *encrypt_key;
  const char *app_id;
  const char *app_secret;
  const char *lark_base_url; /* Open API origin for the outbox, or NULL */
  int lark_store_app;        /* --lark-app-type store */
  long deadline_ms;
  long replay_window_s;
  long max_body;
  long header_timeout_ms;
  long body_timeout_ms;
  long idle_timeout_ms;
  long max_connections;
  const char *workflows[MAX_WORKFLOWS];
  int nworkflows;
  const char *upstreams[MAX_UPSTREAMS]; /* "MATCH=URL" */
  int nupstreams;
  const char *upstream_secret;
  long upstream_timeout_ms;
  int no_builtin;
  int log_json;
  int log_level;
  int reuse_port;
  int lark_ws;               /* --lark-transport ws */
  long ping_timeout_ms;      /* --ping-timeout-ms (both long connections) */
  const char *ca_file;
  const char *dt_client_id;
  const char *dt_client_secret;
  const char *dt_base_url;
  const char *dt_card_template; /* card sent on a chatbot message */
  const char *dt_card_vars;     /* JSON object merged into the workflow's vars */
  int dedupe_memory;            /* --dedupe memory */
} serve_cfg;

static const char serve_help[] =
    "Usage: cardgate serve [options]\n"
    "\n"
    "Receives Lark card callbacks over HTTP, verifies them, runs the workflows\n"
    "(built-in: publish, approval) and answers within the deadline.\n"
    "\n"
    "Listening:\n"
    "  --host H                 address to bind (default 127.0.0.1; 0.0.0.0 for all)\n"
    "  --port N                 port (default 8080; 0 = any free port)\n"
    "  --card-path P            legacy card callback path (default /webhook/card)\n"
    "  --event-path P           event / schema 2.0 callback path (default /webhook/event)\n"
    "  --max-body BYTES         body limit (default 1048576)\n"
    "  --header-timeout-ms MS   headers must arrive within (default 10000)\n"
    "  --body-timeout-ms MS     body must arrive within (default 10000)\n"
    "  --idle-timeout-ms MS     keep-alive idle (default 60000)\n"
    "  --max-connections N      (default 10000)\n"
    "  --reuse-port             set SO_REUSEPORT (run one serve per core)\n"
    "Secrets (flags override the environment; a configured secret is always checked):\n"
    "  --verification-token T   env LARK_VERIFICATION_TOKEN\n"
    "  --encrypt-key K          env LARK_ENCRYPT_KEY\n"
    "  --app-id ID              env LARK_APP_ID\n"
    "  --app-secret S           env LARK_APP_SECRET\n"
    "  --lark-base-url URL      Open API origin for late card updates (the outbox,\n"
    "                           on when app id + secret are set; default\n"
    "                           https://open.feishu.cn)\n"
    "  --lark-app-type T        self-built (default) or store: a marketplace app that\n"
    "                           takes its app_ticket from the app_ticket event and\n"
    "                           updates cards with each tenant's own token\n"
    ;
/* Split in two: C99 compilers need accept only 4095-byte literals. */
static const char serve_help_more[] =
    "Long connections (no public URL needed; docs/long-connection.md):\n"
    "  --lark-transport T       http (default: webhooks) or ws: also receive over the Lark\n"
    "                           long connection (needs --app-id/--app-secret of a\n"
    "                           self-built app; the bootstrap goes to --lark-base-url)\n"
    "  --dingtalk-client-id ID  DingTalk Stream mode: env DINGTALK_CLIENT_ID (AppKey)\n"
    "  --dingtalk-client-secret S  env DINGTALK_CLIENT_SECRET (AppSecret)\n"
    "  --dingtalk-base-url URL  DingTalk API origin (default https://api.dingtalk.com)\n"
    "  --dingtalk-card-template ID  answer a chat message to the bot with this card\n"
    "                           template (the approval card: its variables are the\n"
    "                           approval workflow's, see --dingtalk-card-vars)\n"
    "  --dingtalk-card-vars JSON  variables that override the workflow's initial ones\n"
    "  --ping-timeout-ms MS     declare a silent connection dead after (default 10000\n"
    "                           Lark after a ping, 5000 DingTalk after a WS ping)\n"
    "  --ca-file PEM            CA bundle for wss:// (default: the system's)\n"
    "Behaviour:\n"
    "  --db PATH                SQLite store (default cardgate.db)\n"
    "  --workflow FILE          load a workflow (repeatable); replaces the built-ins\n"
    "  --no-builtin             load no built-in workflow\n"
    "  --deadline-ms MS         answer by itself after (default 2500)\n"
    "  --replay-window S        reject timestamps further than S seconds from now (default off)\n"
    "  --dedupe store|memory    where event ids are remembered (default store: a\n"
    "                           redelivery after a restart or to another instance is\n"
    "                           not handled twice; memory: this process only, faster)\n"
    "Sidecar (your own HTTP service answers; docs/sidecar.md):\n"
    "  --upstream 'MATCH=URL'   POST matching actions to URL (http:// or https://) and relay\n"
    "                           its answer; repeatable; tried before the workflows.\n"
    "                           MATCH is a route expression, '' matches everything\n"
    "  --upstream-secret S      sent as X-Cardgate-Secret (env CARDGATE_UPSTREAM_SECRET)\n"
    "  --upstream-timeout-ms MS upstream request timeout (default: the deadline)\n"

    "Configuration file:\n"
    "  --config FILE            JSON file with any of the options above, keys spelt\n"
    "                           with underscores: {\"port\": 8080, \"db\": \"x.db\", ...}\n"
    "Logging:\n"
    "  --log-format text|json   (default text, on stderr)\n"
    "  --log-level L            debug, info, warn, error (default info)\n"
    "\n"
    "When ready it prints 'cardgate: listening on http://HOST:PORT' and a\n"
    "'cardgate trigger' line that clicks the demo card.\n";

enum {
  O_HOST = 256, O_PORT, O_DB, O_CARD_PATH, O_EVENT_PATH, O_VTOKEN, O_EKEY, O_APPID,
  O_APPSECRET, O_DEADLINE, O_REPLAY, O_MAXBODY, O_HTO, O_BTO, O_ITO, O_MAXCONN,
  O_WORKFLOW, O_NOBUILTIN, O_LOGFMT, O_LOGLEVEL, O_CONFIG, O_REUSEPORT,
  O_UPSTREAM, O_UPSTREAM_SECRET, O_UPSTREAM_TIMEOUT
};

enum { O_LARKBASE = 400, O_LARKAPPTYPE }; /* outbox options (kept apart from the list above) */
enum { O_LARKTRANSPORT = 500, O_PINGTO, O_CAFILE, O_DTID, O_DTSECRET, O_DTBASE, O_DTTEMPLATE, O_DTVARS, O_DEDUPE };

static const struct option serve_opts[] = {
    {"host", required_argument, 0, O_HOST},
    {"port", required_argument, 0, O_PORT},
    {"db", required_argument, 0, O_DB},
    {"card-path", required_argument, 0, O_CARD_PATH},
    {"event-path", required_argument, 0, O_EVENT_PATH},
    {"verification-token", required_argument, 0, O_VTOKEN},
    {"encrypt-key", required_argument, 0, O_EKEY},
    {"app-id", required_argument, 0, O_APPID},
    {"app-secret", required_argument, 0, O_APPSECRET},
    {"lark-base-url", required_argument, 0, O_LARKBASE},
    {"lark-app-type", required_argument, 0, O_LARKAPPTYPE},
    {"deadline-ms", required_argument, 0, O_DEADLINE},
    {"replay-window", required_argument, 0, O_REPLAY},
    {"max-body", required_argument, 0, O_MAXBODY},
    {"header-timeout-ms", required_argument, 0, O_HTO},
    {"body-timeout-ms", required_argument, 0, O_BTO},
    {"idle-timeout-ms", required_argument, 0, O_ITO},
    {"max-connections", required_argument, 0, O_MAXCONN},
    {"workflow", required_argument, 0, O_WORKFLOW},
    {"no-builtin", no_argument, 0, O_NOBUILTIN},
    {"log-format", required_argument, 0, O_LOGFMT},
    {"log-level", required_argument, 0, O_LOGLEVEL},
    {"config", required_argument, 0, O_CONFIG},
    {"reuse-port", no_argument, 0, O_REUSEPORT},
    {"upstream", required_argument, 0, O_UPSTREAM},
    {"upstream-secret", required_argument, 0, O_UPSTREAM_SECRET},
    {"upstream-timeout-ms", required_argument, 0, O_UPSTREAM_TIMEOUT},
    {"lark-transport", required_argument, 0, O_LARKTRANSPORT},
    {"dedupe", required_argument, 0, O_DEDUPE},
    {"ping-timeout-ms", required_argument, 0, O_PINGTO},
    {"ca-file", required_argument, 0, O_CAFILE},
    {"dingtalk-client-id", required_argument, 0, O_DTID},
    {"dingtalk-client-secret", required_argument, 0, O_DTSECRET},
    {"dingtalk-base-url", required_argument, 0, O_DTBASE},
    {"dingtalk-card-template", required_argument, 0, O_DTTEMPLATE},
    {"dingtalk-card-vars", required_argument, 0, O_DTVARS},
    {"help", no_argument, 0, 'h'},
    {0, 0, 0, 0}};

static int parse_num(const char *opt, const char *s, long lo, long hi, long *out) {
  int64_t v;
  if (!s || cg_parse_i64(s, strlen(s), &v) != 0 || v < lo || v > hi)
    return cg_cli_usage_error("serve", "--%s expects a whole number from %ld to %ld, got '%s'", opt, lo, hi,
                              s ? s : "");
  *out = (long)v;
  return 0;
}

/* "MATCH=URL": the index of the last '=' followed by http:// or https://
 * (MATCH may hold '=' itself, as in value.k == "v"); -1 when there is none. */
static long upstream_split(const char *s) {
  long at = -1;
  for (const char *p = strchr(s, '='); p; p = strchr(p + 1, '='))
    if (!strncmp(p + 1, "http://", 7) || !strncmp(p + 1, "https://", 8)) at = (long)(p - s);
  return at;
}

/* Applies one option (from a flag or the config file). The string must live
 * as long as the cfg (argv or the config's JSON tree). */
static int apply(serve_cfg *c, int id, const char *name, const char *v) {
  long n = 0;
  switch (id) {
    case O_HOST: c->host = v; break;
    case O_PORT:
      if (parse_num(name, v, 0, 65535, &n)) return 2;
      c->port = (int)n;
      break;
    case O_DB: c->db = v; break;
    case O_CARD_PATH:
    case O_EVENT_PATH:
      if (!v || v[0] != '/') return cg_cli_usage_error("serve", "--%s must start with '/', got '%s'", name, v ? v : "");
      if (id == O_CARD_PATH) c->card_path = v;
      else c->event_path = v;
      break;
    case O_VTOKEN: c->verification_token = v; break;
    case O_EKEY: c->encrypt_key = v; break;
    case O_APPID: c->app_id = v; break;
    case O_APPSECRET: c->app_secret = v; break;
    case O_LARKBASE: c->lark_base_url = v; break;
    case O_LARKAPPTYPE:
      if (v && !strcmp(v, "store")) c->lark_store_app = 1;
      else if (v && (!strcmp(v, "self-built") || !strcmp(v, "self_built"))) c->lark_store_app = 0;
      else return cg_cli_usage_error("serve", "--%s is self-built or store, got '%s'", name, v ? v : "");
      break;
    case O_DEADLINE: return parse_num(name, v, 10, 60000, &c->deadline_ms);
    case O_REPLAY: return parse_num(name, v, 0, 86400 * 7, &c->replay_window_s);
    case O_MAXBODY: return parse_num(name, v, 256, 16 * 1024 * 1024, &c->max_body);
    case O_HTO: return parse_num(name, v, 10, 600000, &c->header_timeout_ms);
    case O_BTO: return parse_num(name, v, 10, 600000, &c->body_timeout_ms);
    case O_ITO: return parse_num(name, v, 10, 3600000, &c->idle_timeout_ms);
    case O_MAXCONN: return parse_num(name, v, 1, 1000000, &c->max_connections);
    case O_WORKFLOW:
      if (c->nworkflows == MAX_WORKFLOWS) return cg_cli_usage_error("serve", "at most %d --workflow files", MAX_WORKFLOWS);
      c->workflows[c->nworkflows++] = v;
      break;
    case O_UPSTREAM:
      if (c->nupstreams == MAX_UPSTREAMS) return cg_cli_usage_error("serve", "at most %d --upstream routes", MAX_UPSTREAMS);
      if (!v || upstream_split(v) < 0)
        return cg_cli_usage_error("serve", "--upstream is 'MATCH=URL' with an http:// or https:// URL, got '%s'",
                                  v ? v : "");
      c->upstreams[c->nupstreams++] = v;
      break;
    case O_UPSTREAM_SECRET: c->upstream_secret = v; break;
    case O_UPSTREAM_TIMEOUT: return parse_num(name, v, 1, 600000, &c->upstream_timeout_ms);
    case O_LARKTRANSPORT:
      if (v && !strcmp(v, "ws")) c->lark_ws = 1;
      else if (v && !strcmp(v, "http")) c->lark_ws = 0;
      else return cg_cli_usage_error("serve", "--%s is http or ws, got '%s'", name, v ? v : "");
      break;
    case O_DEDUPE:
      if (v && !strcmp(v, "memory")) c->dedupe_memory = 1;
      else if (v && !strcmp(v, "store")) c->dedupe_memory = 0;
      else return cg_cli_usage_error("serve", "--%s is store or memory, got '%s'", name, v ? v : "");
      break;
    case O_PINGTO: return parse_num(name, v, 100, 600000, &c->ping_timeout_ms);
    case O_CAFILE: c->ca_file = v; break;
    case O_DTID: c->dt_client_id = v; break;
    case O_DTSECRET: c->dt_client_secret = v; break;
    case O_DTBASE: c->dt_base_url = v; break;
    case O_DTTEMPLATE: c->dt_card_template = v; break;
    case O_DTVARS: c->dt_card_vars = v; break;
    case O_NOBUILTIN: c->no_builtin = 1; break;
    case O_REUSEPORT: c->reuse_port = 1; break;
    case O_LOGFMT:
      if (!strcmp(v, "json")) c->log_json = 1;
      else if (!strcmp(v, "text")) c->log_json = 0;
      else return cg_cli_usage_error("serve", "--log-format is 'text' or 'json', got '%s'", v);
      break;
    case O_LOGLEVEL:
      c->log_level = cg_cli_log_level(v);
      if (c->log_level < 0) return cg_cli_usage_error("serve", "--log-level is debug, info, warn or error, got '%s'", v);
      break;
    default: return 2;
  }
  return 0;
}

/* Reads the JSON config file: keys are option names with '_' for '-'. */
static int load_config(serve_cfg *c, const char *path, json_t **keep) {
  json_error_t je;
  if (*keep) {
    fprintf(stderr, "cardgate serve: --config given twice; merge the files into one\n");
    return 2;
  }
  json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
  if (!root) {
    fprintf(stderr, "cardgate serve: config %s: line %d column %d: %s\n", path, je.line, je.column, je.text);
    return 2;
  }
  if (!json_is_object(root)) {
    fprintf(stderr, "cardgate serve: config %s: the top level must be a JSON object\n", path);
    json_decref(root);
    return 2;
  }
  *keep = root;
  const char *key;
  json_t *val;
  json_object_foreach(root, key, val) {
    char name[64];
    cg_strlcpy(name, key, sizeof(name));
    for (char *p = name; *p; p++)
      if (*p == '_') *p = '-';
    const struct option *o = NULL;
    for (const struct option *it = serve_opts; it->name; it++)
      if (!strcmp(it->name, name) && it->val != O_CONFIG && it->val != 'h') o = it;
    if (!o) {
      fprintf(stderr, "cardgate serve: config %s: unknown key \"%s\" (see 'cardgate serve --help')\n", path, key);
      return 2;
    }
    if ((o->val == O_WORKFLOW || o->val == O_UPSTREAM) && json_is_array(val)) {
      size_t i;
      json_t *w;
      json_array_foreach(val, i, w) {
        if (!json_is_string(w)) {
          fprintf(stderr, "cardgate serve: config %s: $.%s[%zu] must be a string\n", path, key, i);
          return 2;
        }
        if (apply(c, o->val, name, json_string_value(w))) return 2;
      }
      continue;
    }
    if (o->has_arg == no_argument) {
      if (!json_is_boolean(val)) {
        fprintf(stderr, "cardgate serve: config %s: $.%s must be true or false\n", path, key);
        return 2;
      }
      if (json_is_true(val) && apply(c, o->val, name, NULL)) return 2;
      continue;
    }
    const char *s;
    char num[32];
    if (json_is_string(val)) {
      s = json_string_value(val);
    } else if (json_is_integer(val)) {
      cg_fmt(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(val));
      json_object_set_new(root, key, json_string(num)); /* keep the string alive */
      s = json_string_value(json_object_get(root, key));
    } else {
      fprintf(stderr, "cardgate serve: config %s: $.%s must be a string or a number\n", path, key);
      return 2;
    }
    if (apply(c, o->val, name, s)) return 2;
  }
  return 0;
}

typedef struct serve_state {
  uv_loop_t *loop;
  cg_server *server;
  uv_signal_t sigint;
  uv_signal_t sigterm;
  uv_timer_t drain; /* bounds the drain after the first signal */
  uint64_t drain_ms;
  cg_app *app;
  cg_lark_ws *lark_ws;          /* or NULL */
  cg_dingtalk_stream *dt;       /* or NULL */
  int stopping;
  int failed; /* a long connection stopped for good */
} serve_state;

static void server_closed(void *ud) {
  serve_state *st = ud;
  st->server = NULL;
  uv_close((uv_handle_t *)&st->sigint, NULL);
  uv_close((uv_handle_t *)&st->sigterm, NULL);
  uv_close((uv_handle_t *)&st->drain, NULL);
}

/* Stopping without draining: what the store committed is safe (SQLite WAL);
 * requests still open get no answer and the platform retries them. */
static void stop_now(const char *why) {
  fprintf(stderr, "cardgate: %s: stopping now without draining\n", why);
  _exit(1);
}

static void on_drain_timeout(uv_timer_t *t) {
  (void)t;
  stop_now("requests still in flight after the drain time");
}

static void begin_stop(serve_state *st) {
  st->stopping = 1;
  uv_timer_start(&st->drain, on_drain_timeout, st->drain_ms, 0);
  if (st->lark_ws) cg_lark_ws_close(st->lark_ws, NULL, NULL);
  if (st->dt) cg_dingtalk_stream_close(st->dt, NULL, NULL);
  st->lark_ws = NULL;
  st->dt = NULL;
  cg_server_close(st->server, server_closed, st);
}

static void on_signal(uv_signal_t *h, int signum) {
  serve_state *st = h->data;
  if (st->stopping) stop_now("second signal");
  fprintf(stderr, "cardgate: %s received, draining in-flight requests and stopping (a second signal stops at once)\n",
          signum == SIGINT ? "SIGINT" : "SIGTERM");
  begin_stop(st);
}

/* A long connection that stopped for good (bad credentials, too many
 * connections, retries used up) stops the program: a receiver that cannot
 * receive should not look alive to its supervisor. */
static uv_idle_t fail_idle; /* leaves the client's callback before closing it */
static void fail_stop(uv_idle_t *h) {
  serve_state *st = h->data;
  uv_close((uv_handle_t *)h, NULL);
  if (!st->stopping) begin_stop(st);
}

static void on_conn_state(cg_conn_state state, const char *detail, void *ud) {
  serve_state *st = ud;
  if (state != CG_CONN_FAILED || st->stopping || st->failed) return;
  st->failed = 1;
  fprintf(stderr, "cardgate: a long connection stopped for good: %s\ncardgate: stopping\n", detail);
  uv_idle_init(st->loop, &fail_idle);
  fail_idle.data = st;
  uv_idle_start(&fail_idle, fail_stop);
}

/* Sidecar routes, registered before the workflows so that they win. */
static int add_upstreams(cg_app *app, const serve_cfg *c) {
  cg_upstream_options uo;
  cg_upstream_options_init(&uo);
  uo.secret = c->upstream_secret;
  uo.timeout_ms = (uint32_t)c->upstream_timeout_ms;
  for (int i = 0; i < c->nupstreams; i++) {
    const char *spec = c->upstreams[i];
    long at = upstream_split(spec);
    char *match = cg_strndup(spec, (size_t)at);
    if (!match) return 1;
    int rc = cg_app_route_upstream(app, match, spec + at + 1, &uo);
    free(match);
    if (rc != 0) {
      fprintf(stderr, "cardgate serve: --upstream '%s': %s\n", spec,
              cg_app_last_error(app)[0] ? cg_app_last_error(app) : cg_strerror(rc));
      return 1;
    }
  }
  return 0;
}

/* DingTalk: a chat message to the bot answered with the approval card. */
static int add_dingtalk_sender(cg_app *app, const serve_cfg *c) {
  if (!c->dt_card_template) return 0;
  int rc = cg_app_dingtalk_card_on_message(app, NULL, c->dt_card_template, "approval", c->dt_card_vars);
  if (rc != 0) {
    fprintf(stderr, "cardgate serve: --dingtalk-card-template: %s\n",
            cg_app_last_error(app)[0] ? cg_app_last_error(app) : cg_strerror(rc));
    return 1;
  }
  return 0;
}

static int add_workflows(cg_app *app, const serve_cfg *c) {
  char err[512];
  int rc;
  if (c->nworkflows > 0) {
    for (int i = 0; i < c->nworkflows; i++) {
      cg_workflow *wf = cg_workflow_load_file(c->workflows[i], err, sizeof(err), &rc);
      if (!wf) {
        fprintf(stderr, "cardgate serve: %s\n", err);
        return 1;
      }
      const char *name = cg_workflow_name(wf);
      if ((rc = cg_app_add_workflow(app, wf)) != 0) {
        fprintf(stderr, "cardgate serve: %s: %s\n", c->workflows[i], cg_app_last_error(app));
        return 1;
      }
      (void)name;
    }
    return 0;
  }
  if (c->no_builtin) return 0;
  for (size_t i = 0; cg_workflow_builtin_name(i); i++) {
    cg_workflow *wf = cg_workflow_load_builtin(cg_workflow_builtin_name(i), err, sizeof(err), &rc);
    if (!wf) {
      fprintf(stderr, "cardgate serve: built-in workflow: %s\n", err);
      return 1;
    }
    if ((rc = cg_app_add_workflow(app, wf)) != 0) {
      fprintf(stderr, "cardgate serve: built-in workflow: %s\n", cg_app_last_error(app));
      return 1;
    }
  }
  return 0;
}

static int start_long_connections(serve_state *st, const serve_cfg *c) {
  if (c->lark_ws) {
    cg_lark_ws_options lo;
    cg_lark_ws_options_init(&lo);
    lo.base_url = c->lark_base_url;
    lo.ca_file = c->ca_file;
    lo.ping_timeout_ms = (uint32_t)c->ping_timeout_ms;
    lo.on_state = on_conn_state;
    lo.on_state_ud = st;
    int e = 0;
    st->lark_ws = cg_lark_ws_new(st->app, &lo, &e);
    if (!st->lark_ws) {
      fprintf(stderr, "cardgate serve: --lark-transport ws: %s\n",
              cg_app_last_error(st->app)[0] ? cg_app_last_error(st->app) : cg_strerror(e));
      return 1;
    }
    cg_lark_ws_start(st->lark_ws);
    printf("cardgate: Lark long connection starting (state in /healthz)\n");
  }
  if (c->dt_client_id || c->dt_client_secret) {
    cg_dingtalk_stream_options dso;
    cg_dingtalk_stream_options_init(&dso);
    dso.base_url = c->dt_base_url;
    dso.ca_file = c->ca_file;
    dso.pong_timeout_ms = (uint32_t)c->ping_timeout_ms;
    dso.on_state = on_conn_state;
    dso.on_state_ud = st;
    int e = 0;
    st->dt = cg_dingtalk_stream_new(st->app, &dso, &e);
    if (!st->dt) {
      fprintf(stderr, "cardgate serve: DingTalk Stream: %s\n",
              cg_app_last_error(st->app)[0] ? cg_app_last_error(st->app) : cg_strerror(e));
      return 1;
    }
    cg_dingtalk_stream_start(st->dt);
    printf("cardgate: DingTalk Stream connection starting (state in /healthz)\n");
  }
  return 0;
}

int cg_cli_serve(int argc, char **argv) {
  serve_cfg c;
  memset(&c, 0, sizeof(c));
  c.host = "127.0.0.1";
  c.port = 8080;
  c.db = "cardgate.db";
  c.log_level = CG_LOG_INFO;
  json_t *config = NULL;
  int rc = 0;

  /* The config file first, so that the environment and flags override it. */
  for (int i = 1; i < argc; i++) {
    const char *cf = NULL;
    if (!strcmp(argv[i], "--config") && i + 1 < argc) cf = argv[i + 1];
    else if (!strncmp(argv[i], "--config=", 9)) cf = argv[i] + 9;
    if (cf && (rc = load_config(&c, cf, &config)) != 0) goto out_early;
  }
  if (cg_cli_env("LARK_VERIFICATION_TOKEN")) c.verification_token = cg_cli_env("LARK_VERIFICATION_TOKEN");
  if (cg_cli_env("LARK_ENCRYPT_KEY")) c.encrypt_key = cg_cli_env("LARK_ENCRYPT_KEY");
  if (cg_cli_env("LARK_APP_ID")) c.app_id = cg_cli_env("LARK_APP_ID");
  if (cg_cli_env("LARK_APP_SECRET")) c.app_secret = cg_cli_env("LARK_APP_SECRET");
  if (cg_cli_env("DINGTALK_CLIENT_ID")) c.dt_client_id = cg_cli_env("DINGTALK_CLIENT_ID");
  if (cg_cli_env("DINGTALK_CLIENT_SECRET")) c.dt_client_secret = cg_cli_env("DINGTALK_CLIENT_SECRET");
  if (cg_cli_env("CARDGATE_UPSTREAM_SECRET")) c.upstream_secret = cg_cli_env("CARDGATE_UPSTREAM_SECRET");

  int ch;
  opterr = 0;
  while ((ch = getopt_long(argc, argv, ":h", serve_opts, NULL)) != -1) {
    if (ch == 'h') {
      fputs(serve_help, stdout);
      fputs(serve_help_more, stdout);
      rc = 0;
      goto out_early;
    }
    if (ch == '?') {
      rc = cg_cli_usage_error("serve", "unknown option '%s'", argv[optind - 1]);
      goto out_early;
    }
    if (ch == ':') {
      rc = cg_cli_usage_error("serve", "option '%s' needs a value", argv[optind - 1]);
      goto out_early;
    }
    if (ch == O_CONFIG) continue;
    const char *name = "";
    for (const struct option *o = serve_opts; o->name; o++)
      if (o->val == ch) name = o->name;
    if ((rc = apply(&c, ch, name, optarg)) != 0) goto out_early;
  }
  if (optind < argc) {
    rc = cg_cli_usage_error("serve", "unexpected argument '%s'", argv[optind]);
    goto out_early;
  }

  const char *bad_origin = c.lark_base_url && !cg_origin_ok(c.lark_base_url)  ? "--lark-base-url"
                           : c.dt_base_url && !cg_origin_ok(c.dt_base_url) ? "--dingtalk-base-url"
                                                                             : NULL;
  if (bad_origin) {
    rc = cg_cli_usage_error("serve",
                            "%s must be an origin: https://host[:port], or http:// to a loopback host "
                            "(127.0.0.1, [::1], localhost) for the emulator; secrets never cross a network in clear",
                            bad_origin);
    goto out_early;
  }
  cg_cli_log sink = {c.log_json};
  char err[512];
  int e = 0;
  cg_store *store = cg_store_open(c.db, err, sizeof(err), &e);
  if (!store) {
    fprintf(stderr, "cardgate serve: cannot open the store %s: %s\n", c.db, err);
    rc = 1;
    goto out_early;
  }

  uv_loop_t loop;
  uv_loop_init(&loop);
  cg_app_options ao;
  cg_app_options_init(&ao);
  ao.lark_verification_token = c.verification_token;
  ao.lark_encrypt_key = c.encrypt_key;
  ao.lark_app_id = c.app_id;
  ao.lark_app_secret = c.app_secret;
  ao.lark_base_url = c.lark_base_url;
  ao.lark_store_app = c.lark_store_app;
  ao.dingtalk_client_id = c.dt_client_id;
  ao.dingtalk_client_secret = c.dt_client_secret;
  ao.dingtalk_base_url = c.dt_base_url;
  if (c.deadline_ms) ao.deadline_ms = (uint32_t)c.deadline_ms;
  ao.replay_window_s = (uint32_t)c.replay_window_s;
  ao.dedupe_in_store = !c.dedupe_memory;
  ao.store = store;
  ao.log = cg_cli_log_fn;
  ao.log_ud = &sink;
  ao.log_level = (cg_log_level)c.log_level;
  cg_app *app = cg_app_new(&loop, &ao, &e);
  if (!app) {
    fprintf(stderr, "cardgate serve: cannot create the app: %s\n", cg_strerror(e));
    rc = 1;
    goto out_store;
  }
  if (c.dt_card_template && !c.dt_client_id) {
    fprintf(stderr, "cardgate serve: --dingtalk-card-template needs --dingtalk-client-id and -secret\n");
    rc = 1;
    goto out_app;
  }
  if (add_upstreams(app, &c) != 0 || add_workflows(app, &c) != 0 || add_dingtalk_sender(app, &c) != 0) {
    rc = 1;
    goto out_app;
  }

  cg_server_options so;
  cg_server_options_init(&so);
  so.host = c.host;
  so.port = c.port;
  if (c.card_path) so.card_path = c.card_path;
  if (c.event_path) so.event_path = c.event_path;
  if (c.max_body) so.max_body = (size_t)c.max_body;
  if (c.header_timeout_ms) so.header_timeout_ms = (uint32_t)c.header_timeout_ms;
  if (c.body_timeout_ms) so.body_timeout_ms = (uint32_t)c.body_timeout_ms;
  if (c.idle_timeout_ms) so.idle_timeout_ms = (uint32_t)c.idle_timeout_ms;
  if (c.max_connections) so.max_connections = (uint32_t)c.max_connections;
  so.reuse_port = c.reuse_port;
  serve_state st;
  memset(&st, 0, sizeof(st));
  st.loop = &loop;
  st.app = app;
  st.server = cg_server_new(app, &so, &e);
  if (!st.server) {
    fprintf(stderr, "cardgate serve: cannot create the server: %s\n", cg_strerror(e));
    rc = 1;
    goto out_app;
  }
  if ((e = cg_server_listen(st.server)) != 0) {
    fprintf(stderr, "cardgate serve: cannot listen on %s:%d: %s\n", c.host, c.port, cg_strerror(e));
    cg_server_close(st.server, NULL, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    rc = 1;
    goto out_app;
  }
  /* The handles begin_stop closes exist before anything can stop. */
  uv_signal_init(&loop, &st.sigint);
  uv_signal_init(&loop, &st.sigterm);
  uv_timer_init(&loop, &st.drain);
  uv_unref((uv_handle_t *)&st.drain);
  /* Every request is answered within the deadline; the store commits its
   * last batch right after. */
  st.drain_ms = (uint64_t)(c.deadline_ms ? c.deadline_ms : 2500) + 5000;
  st.sigint.data = st.sigterm.data = &st;
  if (start_long_connections(&st, &c) != 0) {
    st.failed = 1;
    begin_stop(&st);
    uv_run(&loop, UV_RUN_DEFAULT);
    rc = 1;
    goto out_app;
  }
  if (!c.verification_token && !c.encrypt_key && !c.lark_ws)
    cg_cli_log_fn(CG_LOG_WARN, "serve",
                  "no LARK_VERIFICATION_TOKEN or LARK_ENCRYPT_KEY configured: callbacks are NOT verified "
                  "(development mode); set them to the values in the developer console",
                  &sink);
  int port = cg_server_port(st.server);
  const char *card_path = c.card_path ? c.card_path : "/webhook/card";
  printf("cardgate: listening on http://%s:%d (card callbacks: %s, events: %s, store: %s)\n", c.host, port,
         card_path, c.event_path ? c.event_path : "/webhook/event", c.db);
  printf("cardgate: click the demo card with:\n"
         "  %s trigger --url http://%s:%d%s --message-id om_demo_1 "
         "--value '{\"button_type\":\"public_publish\",\"button_id\":\"1626958617426\"}'\n",
         cg_cli_argv0, c.host, port, card_path);
  fflush(stdout);

  uv_signal_start(&st.sigint, on_signal, SIGINT);
  uv_signal_start(&st.sigterm, on_signal, SIGTERM);
  signal(SIGPIPE, SIG_IGN);

  uv_run(&loop, UV_RUN_DEFAULT);
  fprintf(stderr, "cardgate: stopped\n");
  if (st.failed) rc = 1;

out_app:
  cg_app_free(app);
  uv_run(&loop, UV_RUN_DEFAULT);
  if (uv_loop_close(&loop) != 0) fprintf(stderr, "cardgate: warning: loop closed with handles open\n");
out_store:
  cg_store_close(store);
out_early:
  json_decref(config);
  return rc;
}
