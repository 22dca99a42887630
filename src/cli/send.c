/* `cardgate send`: sends a card through the Lark Open API (im/v1/messages)
 * and records it in the store, so the callbacks of its buttons find it.
 *
 * The card comes from a JSON file or from a workflow (its initial card,
 * rendered). One private libuv loop runs the Lark Open API client
 * (src/lib/openapi/lark_api.h): one token fetch, one send. Facts:
 * ../shared/protocols/lark.md §4.4, §4.6; docs/openapi.md.
 *
 * Uses two library-internal headers on purpose: the Open API client and the
 * workflow's initial card are not public API yet. */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/types.h>
#include <uv.h>

#include "cardgate.h"
#include "cli.h"
#include "common/common.h"
#include "lib/core/workflow_int.h"
#include "lib/openapi/lark_api.h"
#include "log_sink.h"

#define CMD "send"
#define DEFAULT_DB "cardgate.db"
#define DEFAULT_TIMEOUT_MS 10000
#define MAX_FILE (4u * 1024u * 1024u) /* a card or workflow file */
#define MAX_UUID 50 /* Lark's limit on the uuid dedupe key (lark.md §4.4) */

typedef struct opts {
  const char *card_file;
  const char *workflow;
  const char *to;
  const char *to_type;
  const char *reply_to;
  int in_thread;
  const char *app_id;
  const char *app_secret;
  const char *base_url;
  int lark;
  int store_app;
  const char *tenant_key;
  const char *app_ticket;
  const char *db;
  const char *uuid;
  long timeout_ms;
  int json;
  int verbose;
} opts;

static void usage(FILE *f) {
  // clang-format off
  fputs(
      "Usage: cardgate send (--card FILE | --workflow NAME|FILE)\n"
      "                     (--to ID [--to-type TYPE] | --reply-to MESSAGE_ID)\n"
      "                     [options]\n"
      "\n"
      "Sends an interactive card as the app's bot through the Lark/Feishu Open\n"
      "API (POST /open-apis/im/v1/messages) and records it in the store, so that\n"
      "'cardgate serve' on the same store finds it when somebody clicks it.\n"
      "Prints 'sent <message id> to <type> <id>'. Exit status: 0 sent and\n"
      "recorded, 1 the send (or the recording) failed, 2 usage error.\n"
      "\n"
      "The card (exactly one):\n"
      "  --card FILE            a card JSON object ('-' reads stdin)\n"
      "  --workflow NAME|FILE   a built-in workflow (approval, publish) or a\n"
      "                         workflow file: sends its initial card and\n"
      "                         records the card in its initial state\n"
      "\n"
      "Where (exactly one):\n"
      "  --to ID                receiver: a chat (oc_…), a user (ou_…, or with\n"
      "                         --to-type) or an email address\n"
      "  --to-type TYPE         open_id, user_id, union_id, email or chat_id\n"
      "                         (default: chat_id for oc_…, open_id for ou_…,\n"
      "                         email for an address with '@'; else required)\n"
      "  --reply-to ID          reply to message ID (om_…) instead\n"
      "  --in-thread            with --reply-to: reply in the message's thread\n"
      "\n"
      "The app (secrets are never printed):\n"
      "  --app-id ID            default $LARK_APP_ID\n"
      "  --app-secret S         default $LARK_APP_SECRET\n"
      "  --base-url URL         Open API origin (default " CG__LARK_BASE_FEISHU ")\n"
      "  --lark                 use " CG__LARK_BASE_LARK " (Lark, not Feishu)\n"
      "  --app-type T           self-built (default) or store (marketplace app)\n"
      "  --tenant-key K         store apps: the tenant to send in (its own token)\n"
      "  --app-ticket T         store apps: default $LARK_APP_TICKET, else the one\n"
      "                         'cardgate serve' kept in the store; without one\n"
      "                         Lark is asked to resend it and the send fails\n"
      "\n"
      "Other:\n"
      "  --db PATH              the SQLite store (default " DEFAULT_DB ", as for\n"
      "                         'cardgate serve')\n"
      "  --uuid KEY             dedupe key, at most 50 characters: Lark drops a\n"
      "                         repeat within an hour (default random). Reuse it\n"
      "                         when you retry a send whose outcome is unknown\n"
      "  --timeout-ms N         per HTTP request (default 10000)\n"
      "  --json                 print the API's data object (JSON) instead\n"
      "  -v, --verbose          log the Open API calls to stderr\n"
      "  -h, --help             this help\n"
      "\n"
      "Examples:\n"
      "  export LARK_APP_ID=cli_a1b2c3d4e5f60718 LARK_APP_SECRET=your-app-secret\n"
      "  cardgate send --workflow approval --to oc_1234567890abcdef\n"
      "  cardgate send --card card.json --to ou_abcdef --db /var/lib/cardgate.db\n"
      "  cardgate send --card card.json --to alice@example.com\n"
      "  cardgate send --workflow my_flow.json --reply-to om_abcdef --lark\n",
      f);
  // clang-format on
}

enum {
  O_CARD = 256,
  O_WORKFLOW,
  O_TO,
  O_TO_TYPE,
  O_REPLY_TO,
  O_IN_THREAD,
  O_APP_ID,
  O_APP_SECRET,
  O_BASE_URL,
  O_LARK,
  O_DB,
  O_UUID,
  O_TIMEOUT,
  O_JSON,
  O_APP_TYPE,
  O_TENANT_KEY,
  O_APP_TICKET
};

static const struct option long_opts[] = {
    {"card", required_argument, NULL, O_CARD},
    {"workflow", required_argument, NULL, O_WORKFLOW},
    {"to", required_argument, NULL, O_TO},
    {"to-type", required_argument, NULL, O_TO_TYPE},
    {"reply-to", required_argument, NULL, O_REPLY_TO},
    {"in-thread", no_argument, NULL, O_IN_THREAD},
    {"app-id", required_argument, NULL, O_APP_ID},
    {"app-secret", required_argument, NULL, O_APP_SECRET},
    {"base-url", required_argument, NULL, O_BASE_URL},
    {"lark", no_argument, NULL, O_LARK},
    {"db", required_argument, NULL, O_DB},
    {"uuid", required_argument, NULL, O_UUID},
    {"timeout-ms", required_argument, NULL, O_TIMEOUT},
    {"json", no_argument, NULL, O_JSON},
    {"app-type", required_argument, NULL, O_APP_TYPE},
    {"tenant-key", required_argument, NULL, O_TENANT_KEY},
    {"app-ticket", required_argument, NULL, O_APP_TICKET},
    {"verbose", no_argument, NULL, 'v'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0}};

static const char *const receive_id_types[] = {"open_id", "user_id", "union_id",
                                               "email", "chat_id"};

static int known_type(const char *t) {
  for (size_t i = 0; i < CG_ARRAY_SIZE(receive_id_types); i++)
    if (strcmp(t, receive_id_types[i]) == 0) return 1;
  return 0;
}

/* 0 parsed, 3 --help printed, else the exit code of a usage error. */
static int parse_args(int argc, char **argv, opts *o) {
  int c;
  opterr = 0;
  while ((c = getopt_long(argc, argv, ":hv", long_opts, NULL)) != -1) {
    switch (c) {
      case 'h':
        usage(stdout);
        return 3;
      case 'v':
        o->verbose = 1;
        break;
      case O_CARD:
        o->card_file = optarg;
        break;
      case O_WORKFLOW:
        o->workflow = optarg;
        break;
      case O_TO:
        o->to = optarg;
        break;
      case O_TO_TYPE:
        if (!known_type(optarg))
          return cg_cli_usage_error(CMD,
                                    "--to-type '%s' is not known: use open_id, "
                                    "user_id, union_id, email or chat_id",
                                    optarg);
        o->to_type = optarg;
        break;
      case O_REPLY_TO:
        o->reply_to = optarg;
        break;
      case O_IN_THREAD:
        o->in_thread = 1;
        break;
      case O_APP_ID:
        o->app_id = optarg;
        break;
      case O_APP_SECRET:
        o->app_secret = optarg;
        break;
      case O_BASE_URL:
        o->base_url = optarg;
        break;
      case O_LARK:
        o->lark = 1;
        break;
      case O_DB:
        o->db = optarg;
        break;
      case O_UUID:
        o->uuid = optarg;
        break;
      case O_TIMEOUT: {
        int64_t t;
        if (cg_parse_i64(optarg, strlen(optarg), &t) != 0 || t <= 0 ||
            t > 3600000)
          return cg_cli_usage_error(
              CMD, "--timeout-ms '%s': give milliseconds, 1..3600000", optarg);
        o->timeout_ms = (long)t;
        break;
      }
      case O_JSON:
        o->json = 1;
        break;
      case O_APP_TYPE:
        if (strcmp(optarg, "store") == 0)
          o->store_app = 1;
        else if (strcmp(optarg, "self-built") == 0)
          o->store_app = 0;
        else
          return cg_cli_usage_error(CMD, "--app-type '%s': self-built or store",
                                    optarg);
        break;
      case O_TENANT_KEY:
        o->tenant_key = optarg;
        break;
      case O_APP_TICKET:
        o->app_ticket = optarg;
        break;
      case ':':
        return cg_cli_usage_error(CMD, "option '%s' needs a value",
                                  argv[optind - 1]);
      case '?':
      default:
        return cg_cli_usage_error(
            CMD, "unknown option '%s'",
            optind > 0 && optind <= argc ? argv[optind - 1] : "?");
    }
  }
  if (optind < argc)
    return cg_cli_usage_error(CMD,
                              "unexpected argument '%s' (send takes only "
                              "options: --card FILE or --workflow NAME)",
                              argv[optind]);

  /* Combinations: say what is wrong and what to do. */
  if (!o->card_file == !o->workflow)
    return cg_cli_usage_error(CMD,
                              "give exactly one of --card FILE and "
                              "--workflow NAME|FILE");
  if (!o->to == !o->reply_to)
    return cg_cli_usage_error(CMD,
                              "give exactly one of --to ID (a chat or user) "
                              "and --reply-to MESSAGE_ID");
  if (o->to && !*o->to)
    return cg_cli_usage_error(CMD, "--to: the receiver id is empty");
  if (o->reply_to && !*o->reply_to)
    return cg_cli_usage_error(CMD, "--reply-to: the message id is empty");
  if (o->to_type && !o->to)
    return cg_cli_usage_error(CMD,
                              "--to-type goes with --to (a reply goes to the "
                              "chat of the message it answers)");
  if (o->in_thread && !o->reply_to)
    return cg_cli_usage_error(CMD, "--in-thread goes with --reply-to");
  if (o->to && !o->to_type) {
    if (strncmp(o->to, "oc_", 3) == 0)
      o->to_type = "chat_id";
    else if (strncmp(o->to, "ou_", 3) == 0)
      o->to_type = "open_id";
    else if (strchr(o->to, '@'))
      o->to_type = "email";
    else
      return cg_cli_usage_error(CMD,
                                "--to '%s': say what kind of id it is with "
                                "--to-type open_id|user_id|union_id|email|"
                                "chat_id",
                                o->to);
  }
  if (o->lark && o->base_url)
    return cg_cli_usage_error(CMD,
                              "--lark and --base-url both set the Open API "
                              "origin: give one of them");
  if (o->uuid && (!*o->uuid || strlen(o->uuid) > MAX_UUID))
    return cg_cli_usage_error(CMD, "--uuid: give 1..%d characters", MAX_UUID);
  if (o->store_app && cg_str_empty(o->tenant_key))
    return cg_cli_usage_error(CMD,
                              "--app-type store needs --tenant-key K: a store "
                              "app sends with the token of one tenant");
  if (!o->store_app && (o->tenant_key || o->app_ticket))
    return cg_cli_usage_error(CMD,
                              "--tenant-key and --app-ticket go with "
                              "--app-type store");
  if (o->store_app && !o->app_ticket)
    o->app_ticket = cg_cli_env("LARK_APP_TICKET");
  if (!o->app_id) o->app_id = cg_cli_env("LARK_APP_ID");
  if (!o->app_secret) o->app_secret = cg_cli_env("LARK_APP_SECRET");
  if (cg_str_empty(o->app_id))
    return cg_cli_usage_error(CMD,
                              "no app id: set LARK_APP_ID (or give --app-id) "
                              "to the app's id (cli_…) from the developer "
                              "console");
  if (cg_str_empty(o->app_secret))
    return cg_cli_usage_error(CMD,
                              "no app secret: set LARK_APP_SECRET (or give "
                              "--app-secret) from the developer console");
  return 0;
}

/* ---- the card ------------------------------------------------------------ */

/* Reads path ("-" = stdin) into a malloc'd NUL-terminated string. NULL with
 * errno set (EFBIG over max). */
static char *read_all(const char *path, size_t max) {
  FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
  if (!f) return NULL;
  cg_buf b;
  cg_buf_init(&b, max);
  char chunk[8192];
  size_t n;
  int rc = 0;
  while (rc == 0 && (n = fread(chunk, 1, sizeof chunk, f)) > 0)
    rc = cg_buf_append(&b, chunk, n);
  int failed = ferror(f);
  if (f != stdin) fclose(f);
  if (rc == 0 && !failed && !b.data) rc = cg_buf_append(&b, "", 0);
  if (rc != 0 || failed || !b.data) {
    cg_buf_free(&b);
    errno = rc == CG_ETOOBIG ? EFBIG : failed ? EIO : ENOMEM;
    return NULL;
  }
  return b.data;
}

typedef struct card_src {
  char *card_json;     /* compact card text: sent and stored */
  cg_workflow *wf;     /* --workflow */
  char *initial_state; /* --workflow: its initial state */
  char *vars_json;     /* --workflow: its initial variables, or NULL */
} card_src;

static void card_src_clear(card_src *c) {
  free(c->card_json);
  cg_workflow_free(c->wf);
  free(c->initial_state);
  free(c->vars_json);
  memset(c, 0, sizeof *c);
}

static char *dump_compact(const json_t *j) {
  return json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
}

/* 0, or an exit code (a message has been printed). */
static int load_card_file(const char *path, card_src *out) {
  char *text = read_all(path, MAX_FILE);
  if (!text) {
    fprintf(stderr, "cardgate send: cannot read the card %s: %s\n", path,
            errno == EFBIG ? "over 4 MiB" : strerror(errno));
    return 1;
  }
  json_error_t je;
  json_t *card = json_loads(text, 0, &je);
  free(text);
  if (!card || !json_is_object(card)) {
    if (card)
      fprintf(stderr,
              "cardgate send: %s: the card must be a JSON object "
              "({\"elements\":[…]} or {\"type\":\"template\",…})\n",
              path);
    else
      fprintf(stderr, "cardgate send: %s:%d:%d: not JSON: %s\n", path, je.line,
              je.column, je.text);
    json_decref(card);
    return 1;
  }
  out->card_json = dump_compact(card);
  json_decref(card);
  if (!out->card_json) {
    fprintf(stderr, "cardgate send: out of memory\n");
    return 1;
  }
  return 0;
}

static void builtin_names(char *out, size_t cap) {
  out[0] = '\0';
  size_t used = 0;
  for (size_t i = 0; cg_workflow_builtin_name(i); i++) {
    int n = snprintf(out + used, cap - used, "%s%s", i ? ", " : "",
                     cg_workflow_builtin_name(i));
    if (n < 0 || (size_t)n >= cap - used) break;
    used += (size_t)n;
  }
}

/* 0, or an exit code (a message has been printed). */
static int load_workflow(const char *arg, card_src *out) {
  char err[512];
  int rc = 0;
  out->wf = cg_workflow_load_builtin(arg, err, sizeof err, &rc);
  if (!out->wf && rc == CG_ENOTFOUND) {
    out->wf = cg_workflow_load_file(arg, err, sizeof err, &rc);
    if (!out->wf && rc == CG_EIO && !strchr(arg, '/') && !strstr(arg, ".json")) {
      char names[256];
      builtin_names(names, sizeof names);
      return cg_cli_usage_error(CMD,
                                "--workflow '%s': no built-in workflow of "
                                "that name (built-ins: %s) and no such file",
                                arg, names);
    }
  }
  if (!out->wf) {
    fprintf(stderr, "cardgate send: %s\n", err);
    return 1;
  }
  const json_t *vars = cg__workflow_initial_vars(out->wf);
  json_t *card = cg__workflow_initial_card(out->wf, cg_now_ms());
  out->initial_state = cg_strdup(cg__workflow_initial_state(out->wf));
  if (vars && json_object_size(vars)) out->vars_json = dump_compact(vars);
  if (card) out->card_json = dump_compact(card);
  json_decref(card);
  if (!out->initial_state || !out->card_json || (vars && json_object_size(vars) && !out->vars_json)) {
    fprintf(stderr, "cardgate send: %s: could not render the initial card (out of memory)\n", arg);
    return 1;
  }
  return 0;
}

/* ---- the send ------------------------------------------------------------ */

typedef struct send_ctx {
  cg__lark_api *api;
  int done;
  cg__lark_result res; /* copy; res.data is NULL */
  char *data_json;     /* --json: the data object, pretty */
  int want_json;
} send_ctx;

static void on_result(const cg__lark_result *res, void *ud) {
  send_ctx *s = ud;
  s->done = 1;
  s->res = *res;
  s->res.data = NULL;
  if (s->want_json && res->data)
    s->data_json = json_dumps(res->data, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
  cg__lark_api_close(s->api, NULL, NULL);
}

static int random_uuid(char out[37]) {
  unsigned char b[16];
  size_t got = 0;
  while (got < sizeof b) {
    ssize_t r = getrandom(b + got, sizeof b - got, 0);
    if (r <= 0) return -1;
    got += (size_t)r;
  }
  b[6] = (unsigned char)((b[6] & 0x0f) | 0x40); /* RFC 9562 version 4 */
  b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
  static const char hx[] = "0123456789abcdef";
  size_t o = 0;
  for (size_t i = 0; i < sizeof b; i++) {
    if (i == 4 || i == 6 || i == 8 || i == 10) out[o++] = '-';
    out[o++] = hx[b[i] >> 4];
    out[o++] = hx[b[i] & 15];
  }
  out[o] = '\0';
  return 0;
}

/* What to do about a failed send (lark.md §4.4, §4.6, §9). */
static void print_hint(const opts *o, const char *base, const char *uuid,
                       const cg__lark_result *r) {
  const char *p = "cardgate send: ";
  if (r->token_error && r->has_code) {
    if (r->code == CG__LARK_CODE_BAD_SECRET)
      fprintf(stderr,
              "%sthe app secret was refused: check LARK_APP_SECRET (or "
              "--app-secret) — it must be the secret of app %s "
              "(developer console > Credentials & Basic Info)\n",
              p, o->app_id);
    else
      fprintf(stderr,
              "%sthe app credentials were refused: check LARK_APP_ID and "
              "LARK_APP_SECRET (or --app-id/--app-secret); a larksuite.com app "
              "needs --lark\n",
              p);
    return;
  }
  switch (r->cls) {
    case CG__API_RATE_LIMITED:
      fprintf(stderr,
              "%srate limited: wait %llu ms, then send again with --uuid %s "
              "(Lark drops a repeat within an hour)\n",
              p, (unsigned long long)r->retry_after_ms, uuid);
      return;
    case CG__API_TOKEN_INVALID:
      fprintf(stderr,
              "%sthe tenant token was refused even after a fresh one: check "
              "that LARK_APP_ID/LARK_APP_SECRET belong to this tenant and "
              "--base-url (%s), then retry\n",
              p, base);
      return;
    case CG__API_RETRYABLE:
      if (r->token_error) {
        fprintf(stderr,
                "%snothing was sent: check --base-url (%s) and the network, "
                "then send again\n",
                p, base);
      } else if (r->err && r->err != CG_EMALFORMED && r->http_status == 0) {
        fprintf(stderr,
                "%scould not complete the call to %s (the card may have been "
                "sent): check --base-url and the network; send again with "
                "--uuid %s (Lark drops a repeat within an hour)\n",
                p, base, uuid);
      } else {
        fprintf(stderr,
                "%sLark's answer was a server error or not understood; the "
                "card may have been sent: send again with --uuid %s (Lark "
                "drops a repeat within an hour)\n",
                p, uuid);
      }
      return;
    default:
      break;
  }
  if (!r->has_code) {
    if (r->token_error)
      fprintf(stderr, "%snothing was sent: check --base-url (%s)\n", p, base);
    else if (r->err == CG_ETOOBIG)
      fprintf(stderr, "%sLark's answer was over the size limit\n", p);
    return;
  }
  const char *hint = NULL;
  switch (r->code) {
    case 230006:
      hint =
          "the app's bot is not enabled: turn on the Bot feature in the "
          "developer console (Features > Bot) and publish a new version";
      break;
    case 99991672:
      hint =
          "the app lacks a permission scope (named by Lark's message): "
          "add it in the developer console (Permissions & Scopes; "
          "im:message:send_as_bot sends as the bot) and publish a new "
          "version";
      break;
    case 230002:
      hint = "the bot is not in that chat: add the bot to the group first";
      break;
    case 230013:
      hint =
          "the user is outside the app's availability: widen the app's "
          "availability range in the developer console and publish";
      break;
    case 99992402:
      hint =
          "Lark refused a field of the request: check that --to-type "
          "matches the receiver id (open_id ou_…, chat_id oc_…, "
          "union_id on_…, user_id, email)";
      break;
    case 230001:
      hint =
          "invalid parameter: check the receiver id (and --to-type) and "
          "that the card is a valid card JSON";
      break;
    case 230099:
      hint =
          "Lark could not build the card: check the card JSON against "
          "the card schema (e.g. in the card builder)";
      break;
    case 230025:
      hint = "the card is too long: cards are limited to 30 KB";
      break;
    case 230011:
      hint = "the message replied to was recalled";
      break;
    default:
      break;
  }
  if (hint)
    fprintf(stderr, "%s%s\n", p, hint);
  else
    fprintf(stderr,
            "%slook the code up in Lark's error-code reference; quote the log "
            "id when asking Lark support\n",
            p);
}

static void print_failure(const opts *o, const char *base, const char *uuid,
                          const cg__lark_result *r) {
  char status[32] = "no HTTP answer";
  if (r->http_status) cg_fmt(status, sizeof status, "HTTP %d", r->http_status);
  char code[40] = "";
  if (r->has_code) cg_fmt(code, sizeof code, ", code %lld", (long long)r->code);
  fprintf(stderr, "cardgate send: %s failed (%s): %s%s: %s%s%s\n",
          r->token_error ? "fetching the tenant token" : "the send",
          cg__api_class_name(r->cls), status, code,
          r->msg[0] ? r->msg : cg_strerror(r->err),
          r->logid[0] ? ", log id " : "", r->logid);
  print_hint(o, base, uuid, r);
}

static void print_success(const opts *o, const send_ctx *s) {
  if (o->json) {
    printf("%s\n", s->data_json ? s->data_json : "{}");
    return;
  }
  if (o->reply_to)
    printf("sent %s in reply to %s\n", s->res.message_id, o->reply_to);
  else
    printf("sent %s to %s %s\n", s->res.message_id, o->to_type, o->to);
}

/* Records the sent card. 0, or an exit code (a message has been printed). */
static int record(cg_store *st, const card_src *c, const char *message_id,
                  const char *db) {
  cg_card_record rec;
  memset(&rec, 0, sizeof rec);
  rec.message_id = (char *)message_id;
  rec.platform = "lark";
  rec.workflow = c->wf ? (char *)cg_workflow_name(c->wf) : NULL;
  rec.state = c->initial_state;
  rec.card_json = c->card_json;
  rec.vars_json = c->vars_json;
  int rc = cg_store_card_insert(st, &rec);
  if (rc == 0) return 0;
  if (rc == CG_ECONFLICT)
    fprintf(stderr,
            "cardgate send: sent %s, but the store %s already has a card "
            "with that id: not recorded\n",
            message_id, db);
  else
    fprintf(stderr,
            "cardgate send: sent %s, but could not record it in %s: %s "
            "(clicks on it will start the workflow afresh)\n",
            message_id, db, cg_store_last_error(st));
  return 1;
}

int cg_cli_send(int argc, char **argv) {
  opts o;
  memset(&o, 0, sizeof o);
  o.timeout_ms = DEFAULT_TIMEOUT_MS;
  int rc = parse_args(argc, argv, &o);
  if (rc == 3) return 0;
  if (rc != 0) return rc;
  if (!o.db) o.db = DEFAULT_DB;
  const char *base = o.base_url ? o.base_url
                     : o.lark   ? CG__LARK_BASE_LARK
                                : CG__LARK_BASE_FEISHU;

  char uuid[40];
  if (!o.uuid && random_uuid(uuid) != 0) {
    fprintf(stderr, "cardgate send: no randomness from the kernel\n");
    return 1;
  }
  const char *uuid_s = o.uuid ? o.uuid : uuid;

  card_src card;
  memset(&card, 0, sizeof card);
  rc = o.card_file ? load_card_file(o.card_file, &card)
                   : load_workflow(o.workflow, &card);
  if (rc != 0) {
    card_src_clear(&card);
    return rc;
  }

  /* The store first: a card that cannot be recorded is not worth sending
   * (its clicks would find nothing). */
  char err[512];
  int e = 0;
  cg_store *st = cg_store_open(o.db, err, sizeof err, &e);
  if (!st) {
    fprintf(stderr, "cardgate send: cannot open the store %s: %s\n", o.db, err);
    card_src_clear(&card);
    return 1;
  }

  int exit_code = 1;
  uv_loop_t loop;
  if ((e = uv_loop_init(&loop)) != 0) {
    fprintf(stderr, "cardgate send: event loop: %s\n", uv_strerror(e));
    goto out_store;
  }

  cg_cli_log logcfg = {0};
  cg__lark_api_options ao;
  cg__lark_api_options_init(&ao);
  ao.base_url = base;
  ao.app_id = o.app_id;
  ao.app_secret = o.app_secret;
  ao.timeout_ms = (uint32_t)o.timeout_ms;
  ao.app_type = o.store_app ? CG__LARK_APP_STORE : CG__LARK_APP_SELF_BUILT;
  if (o.verbose) {
    ao.log = cg_cli_log_fn;
    ao.log_ud = &logcfg;
    ao.log_level = CG_LOG_DEBUG;
  }
  send_ctx s;
  memset(&s, 0, sizeof s);
  s.want_json = o.json;
  s.api = cg__lark_api_new(&loop, &ao, &e);
  if (!s.api) {
    if (e == CG_ECONFIG)
      exit_code = cg_cli_usage_error(
          CMD,
          "--base-url '%s': give an https:// origin (http:// only to a "
          "loopback address)",
          base);
    else
      fprintf(stderr, "cardgate send: Open API client: %s\n", cg_strerror(e));
    goto out_loop;
  }

  char *stored_ticket = NULL;
  if (o.store_app) {
    /* The ticket: the flag / environment, else what serve kept. */
    const char *ticket = o.app_ticket;
    if (cg_str_empty(ticket)) {
      char key[300];
      cg_fmt(key, sizeof key, "lark.app_ticket.%s", o.app_id);
      if (cg_store_kv_get(st, key, &stored_ticket) == 0) ticket = stored_ticket;
    }
    if (!cg_str_empty(ticket) && cg__lark_api_set_app_ticket(s.api, ticket) != 0)
      fprintf(stderr, "cardgate send: the app ticket is unusable; asking Lark to resend one\n");
    if (stored_ticket) memset(stored_ticket, 0, strlen(stored_ticket));
    free(stored_ticket);
  }
  if (o.reply_to)
    e = cg__lark_reply_card(s.api, o.tenant_key, o.reply_to, card.card_json, o.in_thread,
                            uuid_s, on_result, &s);
  else
    e = cg__lark_send_card(s.api, o.tenant_key, o.to_type, o.to, card.card_json, uuid_s,
                           on_result, &s);
  if (e != 0) {
    fprintf(stderr, "cardgate send: the card was not sent: %s\n",
            e == CG_ETOOBIG ? "it is over the size limit" : cg_strerror(e));
    cg__lark_api_close(s.api, NULL, NULL);
  }
  uv_run(&loop, UV_RUN_DEFAULT); /* returns once the client has closed */

  if (e == 0) {
    cg_assert(s.done);
    if (s.res.cls == CG__API_OK && s.res.message_id[0]) {
      exit_code = record(st, &card, s.res.message_id, o.db);
      if (exit_code == 0) print_success(&o, &s);
    } else if (s.res.cls == CG__API_OK) {
      fprintf(stderr,
              "cardgate send: Lark answered success without a message id%s%s\n",
              s.res.logid[0] ? ", log id " : "", s.res.logid);
    } else {
      print_failure(&o, base, uuid_s, &s.res);
    }
  }
  free(s.data_json);

out_loop:
  if (uv_loop_close(&loop) != 0) {
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
  }
out_store:
  cg_store_close(st);
  card_src_clear(&card);
  return exit_code;
}
