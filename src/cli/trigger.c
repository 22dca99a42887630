/* `cardgate trigger`: sends one card click (or URL-verification challenge)
 * exactly as Lark would — body shape, encryption, signature headers — to any
 * endpoint, and prints the answer. Tamper options produce the requests a
 * receiver must reject. Facts: ../shared/protocols/lark.md §0–§2. */
#include <curl/curl.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/types.h>

#include "cardgate.h"
#include "cli.h"
#include "common/common.h"

#define CMD "trigger"
#define DEFAULT_BASE "http://127.0.0.1:8080"
#define DEFAULT_VALUE \
  "{\"button_type\":\"public_publish\",\"button_id\":\"1626958617426\"}"
#define MAX_HEADERS 64
#define MAX_ANSWER (16u * 1024u * 1024u)
#define STALE_SECONDS 3600 /* --stale: an hour old */

enum fmt { FMT_LEGACY, FMT_V2 };
enum kind { KIND_CARD, KIND_URL_PREVIEW };
enum sign { SIGN_AUTO, SIGN_LEGACY, SIGN_EVENT, SIGN_NONE };

typedef struct header {
  char *name;
  char *value;
} header;

typedef struct opts {
  const char *url;
  enum fmt format;
  enum kind kind;
  int kind_set;
  const char *value;
  const char *tag;
  const char *option;
  const char *input;
  const char *form_value;
  int checked; /* -1 unset, 0, 1 */
  const char *name;
  const char *operator_id;
  const char *user_id;
  const char *union_id;
  const char *message_id;
  const char *chat_id;
  const char *tenant_key;
  const char *card_token;
  const char *event_id;
  const char *app_id;
  const char *preview_url;
  const char *vtoken;
  const char *ekey;
  int encrypt; /* -1 auto, 0, 1 */
  enum sign sign;
  int challenge;
  const char *challenge_str;
  int bad_signature, wrong_token, stale, corrupt;
  const char *timestamp;
  const char *nonce;
  header extra[MAX_HEADERS]; /* --header, in order */
  size_t n_extra;
  long timeout_ms;
  int dry_run;
  int raw;
} opts;

static void usage(FILE *f) {
  fputs(
      "Usage: cardgate trigger [options]\n"
      "\n"
      "Sends one interactive-card callback to URL exactly as Lark/Feishu "
      "would\n"
      "(body, AES encryption, X-Lark-* signature headers) and prints\n"
      "'HTTP <status>' and the answer (pretty-printed JSON, or the raw text).\n"
      "Exit status: 0 when the answer is 2xx, 1 otherwise or when the request\n"
      "could not be sent, 2 on a usage error.\n"
      "\n"
      "Where and what:\n"
      "  --url URL              endpoint, used as given (default\n"
      "                         " DEFAULT_BASE
      "/webhook/card for legacy,\n"
      "                         " DEFAULT_BASE
      "/webhook/event for v2)\n"
      "  --format legacy|v2     legacy card callback (default) or schema 2.0\n"
      "  --kind card|url_preview  v2 only: card.action.trigger (default) or\n"
      "                         url.preview.get\n"
      "  --value JSON           action.value, an object or a string (default\n"
      "                         " DEFAULT_VALUE
      ")\n"
      "  --tag TAG              action.tag (default button)\n"
      "  --option S             action.option (select, overflow, pickers)\n"
      "  --input S              action.input_value\n"
      "  --form-value JSON      action.form_value (an object)\n"
      "  --checked true|false   action.checked\n"
      "  --name S               action.name\n"
      "  --operator OPEN_ID     operator open_id (default ou_demo)\n"
      "  --user-id ID           operator user_id\n"
      "  --union-id ID          operator union_id (v2 only)\n"
      "  --message-id ID        open_message_id (default om_demo)\n"
      "  --chat-id ID           open_chat_id (default oc_demo)\n"
      "  --tenant-key K         tenant_key (default tenant_demo)\n"
      "  --token T              card-update token (default c-<random hex>)\n"
      "  --event-id ID          v2 header.event_id (default random 32 hex)\n"
      "  --app-id ID            v2 header.app_id (default cli_demo)\n"
      "  --url-to-preview URL   url.preview.get context.url\n"
      "                         (default https://example.com/cardgate)\n"
      "\n"
      "Secrets (never printed):\n"
      "  --verification-token T default $LARK_VERIFICATION_TOKEN\n"
      "  --encrypt-key K        default $LARK_ENCRYPT_KEY\n"
      "  --encrypt, --no-encrypt  send {\"encrypt\":…} (default: when a key is "
      "known)\n"
      "  --sign auto|legacy|event|none\n"
      "                         legacy = SHA-1(ts+nonce+token+body),\n"
      "                         event = SHA-256(ts+nonce+key+body), none = no\n"
      "                         signature headers. auto (default): a legacy "
      "body\n"
      "                         is signed legacy when a token is known, else\n"
      "                         event when encrypted; a v2 body is signed "
      "event\n"
      "                         when a key is known (lark.md §0.4)\n"
      "  --challenge [STR]      send a url_verification challenge instead "
      "(token\n"
      "                         = the verification token, encrypted when a "
      "key\n"
      "                         is known, no signature headers)\n"
      "\n"
      "Tampering (requests a receiver must reject):\n"
      "  --bad-signature        flip one hex digit of X-Lark-Signature\n"
      "  --wrong-token          use a different verification token (challenge\n"
      "                         token, v2 header.token, legacy SHA-1 "
      "signature)\n"
      "  --stale                timestamp one hour old\n"
      "  --corrupt              flip a bit in the last cipher block so PKCS#7\n"
      "                         padding fails (needs encryption)\n"
      "\n"
      "Transport:\n"
      "  --timestamp T          X-Lark-Request-Timestamp (default now, "
      "seconds)\n"
      "  --nonce N              X-Lark-Request-Nonce (default random)\n"
      "  --header 'Name: value' add or replace a header; 'Name:' removes it\n"
      "                         (repeatable)\n"
      "  --timeout-ms N         whole request (default 5000)\n"
      "  --dry-run              print {\"url\",\"headers\",\"body\"} as JSON "
      "and send\n"
      "                         nothing (the body as it would go on the wire)\n"
      "  --raw                  print the answer body unformatted\n"
      "  -h, --help             this help\n"
      "\n"
      "Examples:\n"
      "  cardgate trigger --verification-token v\n"
      "  cardgate trigger --format v2 --encrypt-key k --message-id om_1 \\\n"
      "      --value '{\"action\":\"accept\"}' --operator ou_alice\n"
      "  cardgate trigger --challenge --url "
      "http://127.0.0.1:8080/webhook/event\n"
      "  cardgate trigger --verification-token v --bad-signature   # expect "
      "401\n"
      "  LARK_ENCRYPT_KEY=k cardgate trigger --sign event --dry-run\n",
      f);
}

enum {
  O_URL = 256,
  O_FORMAT,
  O_KIND,
  O_VALUE,
  O_TAG,
  O_OPTION,
  O_INPUT,
  O_FORM_VALUE,
  O_CHECKED,
  O_NAME,
  O_OPERATOR,
  O_USER_ID,
  O_UNION_ID,
  O_MESSAGE_ID,
  O_CHAT_ID,
  O_TENANT_KEY,
  O_TOKEN,
  O_EVENT_ID,
  O_APP_ID,
  O_PREVIEW_URL,
  O_VTOKEN,
  O_EKEY,
  O_ENCRYPT,
  O_NO_ENCRYPT,
  O_SIGN,
  O_CHALLENGE,
  O_BAD_SIG,
  O_WRONG_TOKEN,
  O_STALE,
  O_CORRUPT,
  O_TIMESTAMP,
  O_NONCE,
  O_HEADER,
  O_TIMEOUT,
  O_DRY_RUN,
  O_RAW
};

static const struct option long_opts[] = {
    {"url", required_argument, NULL, O_URL},
    {"format", required_argument, NULL, O_FORMAT},
    {"kind", required_argument, NULL, O_KIND},
    {"value", required_argument, NULL, O_VALUE},
    {"tag", required_argument, NULL, O_TAG},
    {"option", required_argument, NULL, O_OPTION},
    {"input", required_argument, NULL, O_INPUT},
    {"form-value", required_argument, NULL, O_FORM_VALUE},
    {"checked", required_argument, NULL, O_CHECKED},
    {"name", required_argument, NULL, O_NAME},
    {"operator", required_argument, NULL, O_OPERATOR},
    {"user-id", required_argument, NULL, O_USER_ID},
    {"union-id", required_argument, NULL, O_UNION_ID},
    {"message-id", required_argument, NULL, O_MESSAGE_ID},
    {"chat-id", required_argument, NULL, O_CHAT_ID},
    {"tenant-key", required_argument, NULL, O_TENANT_KEY},
    {"token", required_argument, NULL, O_TOKEN},
    {"event-id", required_argument, NULL, O_EVENT_ID},
    {"app-id", required_argument, NULL, O_APP_ID},
    {"url-to-preview", required_argument, NULL, O_PREVIEW_URL},
    {"verification-token", required_argument, NULL, O_VTOKEN},
    {"encrypt-key", required_argument, NULL, O_EKEY},
    {"encrypt", no_argument, NULL, O_ENCRYPT},
    {"no-encrypt", no_argument, NULL, O_NO_ENCRYPT},
    {"sign", required_argument, NULL, O_SIGN},
    {"challenge", optional_argument, NULL, O_CHALLENGE},
    {"bad-signature", no_argument, NULL, O_BAD_SIG},
    {"wrong-token", no_argument, NULL, O_WRONG_TOKEN},
    {"stale", no_argument, NULL, O_STALE},
    {"corrupt", no_argument, NULL, O_CORRUPT},
    {"timestamp", required_argument, NULL, O_TIMESTAMP},
    {"nonce", required_argument, NULL, O_NONCE},
    {"header", required_argument, NULL, O_HEADER},
    {"timeout-ms", required_argument, NULL, O_TIMEOUT},
    {"dry-run", no_argument, NULL, O_DRY_RUN},
    {"raw", no_argument, NULL, O_RAW},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0}};

/* ---- small helpers ------------------------------------------------------ */

static int random_hex(char *out, size_t nhex) {
  unsigned char b[64];
  size_t n = (nhex + 1) / 2;
  cg_assert(n <= sizeof(b));
  size_t got = 0;
  while (got < n) {
    ssize_t r = getrandom(b + got, n - got, 0);
    if (r <= 0) return -1;
    got += (size_t)r;
  }
  static const char hx[] = "0123456789abcdef";
  for (size_t i = 0; i < nhex; i++)
    out[i] = hx[(b[i / 2] >> ((i % 2) ? 0 : 4)) & 15];
  out[nhex] = '\0';
  return 0;
}

/* Sets (or with value NULL removes) a header, case-insensitively by name. */
static int header_set(opts *o, const char *name, size_t name_len,
                      const char *value) {
  for (size_t i = 0; i < o->n_extra; i++) {
    if (strlen(o->extra[i].name) == name_len &&
        strncasecmp(o->extra[i].name, name, name_len) == 0) {
      free(o->extra[i].value);
      o->extra[i].value = value ? cg_strdup(value) : NULL;
      return 0;
    }
  }
  if (o->n_extra == MAX_HEADERS) return -1;
  o->extra[o->n_extra].name = cg_strndup(name, name_len);
  o->extra[o->n_extra].value = value ? cg_strdup(value) : NULL;
  o->n_extra++;
  return 0;
}

static void headers_free(header *h, size_t n) {
  for (size_t i = 0; i < n; i++) {
    free(h[i].name);
    free(h[i].value);
  }
}

static int parse_checked(const char *s, int *out) {
  if (strcmp(s, "true") == 0)
    *out = 1;
  else if (strcmp(s, "false") == 0)
    *out = 0;
  else
    return -1;
  return 0;
}

/* Adds key → string to obj when s is set. */
static void put_str(json_t *obj, const char *key, const char *s) {
  if (s) json_object_set_new(obj, key, json_string(s));
}

/* ---- bodies ------------------------------------------------------------- */

static json_t *build_action(const opts *o, json_t *value, json_t *form) {
  json_t *a = json_object();
  json_object_set(a, "value", value);
  put_str(a, "tag", o->tag);
  put_str(a, "option", o->option);
  put_str(a, "input_value", o->input);
  if (form) json_object_set(a, "form_value", form);
  if (o->checked >= 0)
    json_object_set_new(a, "checked", json_boolean(o->checked));
  put_str(a, "name", o->name);
  return a;
}

/* lark.md §1.1 */
static json_t *build_legacy(const opts *o, json_t *value, json_t *form) {
  json_t *b = json_object();
  put_str(b, "open_id", o->operator_id);
  put_str(b, "user_id", o->user_id);
  put_str(b, "open_message_id", o->message_id);
  put_str(b, "open_chat_id", o->chat_id);
  put_str(b, "tenant_key", o->tenant_key);
  put_str(b, "token", o->card_token);
  json_object_set_new(b, "action", build_action(o, value, form));
  return b;
}

/* lark.md §2.1 */
static json_t *build_v2(const opts *o, const char *header_token,
                        const char *create_time, const char *preview_token,
                        json_t *value, json_t *form) {
  json_t *h = json_object();
  put_str(h, "event_id", o->event_id);
  put_str(h, "token", header_token);
  put_str(h, "create_time", create_time);
  put_str(h, "event_type",
          o->kind == KIND_CARD ? "card.action.trigger" : "url.preview.get");
  put_str(h, "tenant_key", o->tenant_key);
  put_str(h, "app_id", o->app_id);

  json_t *op = json_object();
  put_str(op, "tenant_key", o->tenant_key);
  put_str(op, "open_id", o->operator_id);
  put_str(op, "user_id", o->user_id);
  put_str(op, "union_id", o->union_id);

  json_t *ctx = json_object();
  if (o->kind == KIND_URL_PREVIEW) {
    put_str(ctx, "url", o->preview_url);
    put_str(ctx, "preview_token", preview_token);
  }
  put_str(ctx, "open_message_id", o->message_id);
  put_str(ctx, "open_chat_id", o->chat_id);

  json_t *ev = json_object();
  json_object_set_new(ev, "operator", op);
  if (o->kind == KIND_CARD) {
    put_str(ev, "token", o->card_token);
    json_object_set_new(ev, "action", build_action(o, value, form));
  }
  put_str(ev, "host", "im_message");
  json_object_set_new(ev, "context", ctx);

  json_t *b = json_object();
  put_str(b, "schema", "2.0");
  json_object_set_new(b, "header", h);
  json_object_set_new(b, "event", ev);
  return b;
}

/* lark.md §1.2 */
static json_t *build_challenge(const char *challenge, const char *token) {
  json_t *b = json_object();
  put_str(b, "challenge", challenge);
  json_object_set_new(b, "token", json_string(token ? token : ""));
  put_str(b, "type", "url_verification");
  return b;
}

/* Compact, insertion order, UTF-8 unescaped: the Node SDK hashes
 * JSON.stringify(parsed body), which equals these bytes (lark.md §0.4). */
static char *dump_compact(json_t *j) {
  return json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
}

/* Flips bits in the last cipher block until the padding no longer checks
 * (a flipped last block decrypts to noise, which is valid PKCS#7 with a
 * chance of about 1/256; we confirm with the real decryptor). 0 or -1. */
static int corrupt_ciphertext(const char *key, char **b64) {
  size_t n = strlen(*b64);
  /* base64 of iv||ct: the last 24 chars hold the last ~16 bytes. Flip
   * payload characters (not '=') among the last 22. */
  for (int attempt = 0; attempt < 64; attempt++) {
    char *c = cg_strdup(*b64);
    if (!c) return -1;
    size_t end = n;
    while (end > 0 && c[end - 1] == '=') end--;
    size_t pos = end - 2 - (size_t)(attempt % 16);
    static const char alpha[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const char *p = strchr(alpha, c[pos]);
    int idx = p ? (int)(p - alpha) : 0;
    c[pos] = alpha[(idx + 1 + attempt / 16) % 64];
    char *plain = NULL;
    size_t plain_len = 0;
    int rc = cg_lark_decrypt(key, c, strlen(c), &plain, &plain_len);
    free(plain);
    if (rc == CG_ECRYPTO) {
      free(*b64);
      *b64 = c;
      return 0;
    }
    free(c);
  }
  return -1;
}

/* ---- sending ------------------------------------------------------------ */

static size_t on_data(char *p, size_t size, size_t nmemb, void *ud) {
  cg_buf *b = ud;
  size_t n = size * nmemb;
  if (cg_buf_append(b, p, n) != 0) return 0; /* aborts the transfer */
  return n;
}

static void print_answer(const cg_buf *body, int raw) {
  if (body->len == 0) return;
  if (!raw) {
    json_error_t e;
    json_t *j = json_loadb(body->data, body->len, JSON_DECODE_ANY, &e);
    if (j) {
      char *s =
          json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
      json_decref(j);
      if (s) {
        fputs(s, stdout);
        fputc('\n', stdout);
        free(s);
        return;
      }
    }
  }
  fwrite(body->data, 1, body->len, stdout);
  if (body->data[body->len - 1] != '\n') fputc('\n', stdout);
}

static int send_request(const opts *o, const char *url, const header *h,
                        size_t nh, const char *body) {
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
    fprintf(stderr, "cardgate trigger: libcurl failed to initialise\n");
    return 1;
  }
  CURL *c = curl_easy_init();
  if (!c) {
    curl_global_cleanup();
    fprintf(stderr, "cardgate trigger: libcurl failed to initialise\n");
    return 1;
  }
  struct curl_slist *list = NULL;
  cg_buf line;
  cg_buf_init(&line, 64 * 1024);
  for (size_t i = 0; i < nh; i++) {
    cg_buf_reset(&line);
    /* "Name:" tells curl not to send a header it would add by itself
     * (Content-Type for a POST). */
    if (h[i].value)
      cg_buf_appendf(&line, "%s: %s", h[i].name, h[i].value);
    else
      cg_buf_appendf(&line, "%s:", h[i].name);
    list = curl_slist_append(list, line.data);
  }
  /* curl adds these by itself; Lark sends neither. */
  list = curl_slist_append(list, "Expect:");
  list = curl_slist_append(list, "Accept:");
  cg_buf_free(&line);

  cg_buf answer;
  cg_buf_init(&answer, MAX_ANSWER);
  char errbuf[CURL_ERROR_SIZE] = "";
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_POST, 1L);
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
  curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, list);
  curl_easy_setopt(c, CURLOPT_USERAGENT, "cardgate-trigger/" CG_VERSION_STRING);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, o->timeout_ms);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &answer);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");

  int exit_code = 1;
  CURLcode rc = curl_easy_perform(c);
  if (rc != CURLE_OK) {
    fprintf(stderr, "cardgate trigger: request to %s failed: %s\n", url,
            errbuf[0] ? errbuf : curl_easy_strerror(rc));
    if (rc == CURLE_COULDNT_CONNECT)
      fprintf(stderr,
              "Is `cardgate serve` running there? Check --url (`cardgate "
              "serve` prints the address it listens on).\n");
  } else {
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    printf("HTTP %ld\n", status);
    print_answer(&answer, o->raw);
    fflush(stdout);
    exit_code = (status >= 200 && status < 300) ? 0 : 1;
  }
  cg_buf_free(&answer);
  curl_slist_free_all(list);
  curl_easy_cleanup(c);
  curl_global_cleanup();
  return exit_code;
}

static int print_dry_run(const char *url, const header *h, size_t nh,
                         const char *body) {
  json_t *j = json_object();
  json_object_set_new(j, "url", json_string(url));
  json_t *hj = json_object();
  for (size_t i = 0; i < nh; i++)
    if (h[i].value) json_object_set_new(hj, h[i].name, json_string(h[i].value));
  json_object_set_new(j, "headers", hj);
  json_object_set_new(j, "body", json_string(body));
  char *s = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
  json_decref(j);
  if (!s) return 1;
  puts(s);
  free(s);
  return 0;
}

/* ---- main --------------------------------------------------------------- */

static int parse_args(int argc, char **argv, opts *o) {
  int c;
  opterr = 0; /* our own messages, through cg_cli_usage_error */
  while ((c = getopt_long(argc, argv, ":h", long_opts, NULL)) != -1) {
    switch (c) {
      case 'h':
        usage(stdout);
        return 3; /* done, exit 0 */
      case O_URL:
        if (!*optarg)
          return cg_cli_usage_error(CMD,
                                    "--url is empty: give the endpoint, "
                                    "e.g. http://127.0.0.1:8080/webhook/card");
        o->url = optarg;
        break;
      case O_FORMAT:
        if (strcmp(optarg, "legacy") == 0)
          o->format = FMT_LEGACY;
        else if (strcmp(optarg, "v2") == 0)
          o->format = FMT_V2;
        else
          return cg_cli_usage_error(
              CMD, "--format '%s' is not known: use legacy or v2", optarg);
        break;
      case O_KIND:
        if (strcmp(optarg, "card") == 0)
          o->kind = KIND_CARD;
        else if (strcmp(optarg, "url_preview") == 0)
          o->kind = KIND_URL_PREVIEW;
        else
          return cg_cli_usage_error(
              CMD, "--kind '%s' is not known: use card or url_preview", optarg);
        o->kind_set = 1;
        break;
      case O_VALUE:
        o->value = optarg;
        break;
      case O_TAG:
        o->tag = optarg;
        break;
      case O_OPTION:
        o->option = optarg;
        break;
      case O_INPUT:
        o->input = optarg;
        break;
      case O_FORM_VALUE:
        o->form_value = optarg;
        break;
      case O_CHECKED:
        if (parse_checked(optarg, &o->checked) != 0)
          return cg_cli_usage_error(CMD, "--checked '%s': use true or false",
                                    optarg);
        break;
      case O_NAME:
        o->name = optarg;
        break;
      case O_OPERATOR:
        o->operator_id = optarg;
        break;
      case O_USER_ID:
        o->user_id = optarg;
        break;
      case O_UNION_ID:
        o->union_id = optarg;
        break;
      case O_MESSAGE_ID:
        o->message_id = optarg;
        break;
      case O_CHAT_ID:
        o->chat_id = optarg;
        break;
      case O_TENANT_KEY:
        o->tenant_key = optarg;
        break;
      case O_TOKEN:
        o->card_token = optarg;
        break;
      case O_EVENT_ID:
        o->event_id = optarg;
        break;
      case O_APP_ID:
        o->app_id = optarg;
        break;
      case O_PREVIEW_URL:
        o->preview_url = optarg;
        break;
      case O_VTOKEN:
        o->vtoken = optarg;
        break;
      case O_EKEY:
        o->ekey = optarg;
        break;
      case O_ENCRYPT:
        o->encrypt = 1;
        break;
      case O_NO_ENCRYPT:
        o->encrypt = 0;
        break;
      case O_SIGN:
        if (strcmp(optarg, "auto") == 0)
          o->sign = SIGN_AUTO;
        else if (strcmp(optarg, "legacy") == 0)
          o->sign = SIGN_LEGACY;
        else if (strcmp(optarg, "event") == 0)
          o->sign = SIGN_EVENT;
        else if (strcmp(optarg, "none") == 0)
          o->sign = SIGN_NONE;
        else
          return cg_cli_usage_error(
              CMD, "--sign '%s' is not known: use auto, legacy, event or none",
              optarg);
        break;
      case O_CHALLENGE:
        o->challenge = 1;
        /* "--challenge STR" as well as "--challenge=STR" */
        if (!optarg && optind < argc && argv[optind][0] != '-')
          optarg = argv[optind++];
        o->challenge_str = optarg;
        break;
      case O_BAD_SIG:
        o->bad_signature = 1;
        break;
      case O_WRONG_TOKEN:
        o->wrong_token = 1;
        break;
      case O_STALE:
        o->stale = 1;
        break;
      case O_CORRUPT:
        o->corrupt = 1;
        break;
      case O_TIMESTAMP:
        o->timestamp = optarg;
        break;
      case O_NONCE:
        o->nonce = optarg;
        break;
      case O_HEADER: {
        const char *colon = strchr(optarg, ':');
        if (!colon || colon == optarg)
          return cg_cli_usage_error(
              CMD,
              "--header '%s': write it as 'Name: value' ('Name:' removes "
              "the header)",
              optarg);
        const char *v = colon + 1;
        while (*v == ' ' || *v == '\t') v++;
        if (strpbrk(optarg, "\r\n"))
          return cg_cli_usage_error(CMD, "--header: no line breaks allowed");
        if (header_set(o, optarg, (size_t)(colon - optarg), *v ? v : NULL))
          return cg_cli_usage_error(CMD, "--header: at most %d headers",
                                    MAX_HEADERS);
        break;
      }
      case O_TIMEOUT: {
        int64_t t;
        if (cg_parse_i64(optarg, strlen(optarg), &t) != 0 || t <= 0 ||
            t > 3600000)
          return cg_cli_usage_error(
              CMD, "--timeout-ms '%s': give milliseconds, 1..3600000", optarg);
        o->timeout_ms = (long)t;
        break;
      }
      case O_DRY_RUN:
        o->dry_run = 1;
        break;
      case O_RAW:
        o->raw = 1;
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
                              "unexpected argument '%s' (trigger takes only "
                              "options; quote JSON values)",
                              argv[optind]);
  return 0;
}

int cg_cli_trigger(int argc, char **argv) {
  opts o;
  memset(&o, 0, sizeof(o));
  o.checked = -1;
  o.encrypt = -1;
  o.timeout_ms = 5000;
  int rc = parse_args(argc, argv, &o);
  if (rc == 3) {
    headers_free(o.extra, o.n_extra);
    return 0;
  }
  if (rc != 0) {
    headers_free(o.extra, o.n_extra);
    return rc;
  }

  int exit_code = 2;
  json_t *value = NULL, *form = NULL, *body_json = NULL;
  char *plain = NULL, *body = NULL, *enc = NULL, *url_alloc = NULL;
  char *wrong = NULL;
  header hdrs[MAX_HEADERS + 4];
  size_t nh = 0;
  memset(hdrs, 0, sizeof(hdrs));

  /* Defaults that depend on nothing else. */
  if (!o.tag) o.tag = "button";
  if (!o.operator_id) o.operator_id = "ou_demo";
  if (!o.message_id) o.message_id = "om_demo";
  if (!o.chat_id) o.chat_id = "oc_demo";
  if (!o.tenant_key) o.tenant_key = "tenant_demo";
  if (!o.app_id) o.app_id = "cli_demo";
  if (!o.preview_url) o.preview_url = "https://example.com/cardgate";
  if (!o.vtoken) o.vtoken = cg_cli_env("LARK_VERIFICATION_TOKEN");
  if (!o.ekey) o.ekey = cg_cli_env("LARK_ENCRYPT_KEY");
  if (o.vtoken && !*o.vtoken) o.vtoken = NULL;
  if (o.ekey && !*o.ekey) o.ekey = NULL;

  char card_token[48], event_id[40], nonce[40], ts[32], create_time[32],
      challenge[48], preview_token[48];
  if (!o.card_token) {
    memcpy(card_token, "c-", 3);
    if (random_hex(card_token + 2, 32) != 0) goto random_failed;
    o.card_token = card_token;
  }
  if (!o.event_id) {
    if (random_hex(event_id, 32) != 0) goto random_failed;
    o.event_id = event_id;
  }
  if (!o.nonce) {
    if (random_hex(nonce, 16) != 0) goto random_failed;
    o.nonce = nonce;
  }
  if (random_hex(preview_token, 32) != 0) goto random_failed;
  int64_t now_ms = cg_now_ms();
  int64_t ts_ms = now_ms - (o.stale ? (int64_t)STALE_SECONDS * 1000 : 0);
  if (o.timestamp) {
    if (o.stale) {
      cg_cli_usage_error(CMD,
                         "--stale and --timestamp both set the timestamp: "
                         "give one of them");
      goto out;
    }
    int64_t t;
    if (cg_parse_i64(o.timestamp, strlen(o.timestamp), &t) == 0)
      ts_ms = t > 100000000000LL ? t : t * 1000; /* seconds or ms */
    cg_strlcpy(ts, o.timestamp, sizeof(ts));
    if (strlen(o.timestamp) >= sizeof(ts)) {
      cg_cli_usage_error(CMD, "--timestamp: at most %zu characters",
                         sizeof(ts) - 1);
      goto out;
    }
  } else {
    cg_fmt(ts, sizeof(ts), "%lld", (long long)(ts_ms / 1000));
  }
  cg_fmt(create_time, sizeof(create_time), "%lld", (long long)ts_ms);

  /* Consistency checks: say what is wrong and what to do. */
  if (o.kind_set && o.format != FMT_V2) {
    cg_cli_usage_error(CMD,
                       "--kind needs --format v2 (the legacy callback "
                       "has only card clicks)");
    goto out;
  }
  if (o.encrypt == 1 && !o.ekey) {
    cg_cli_usage_error(CMD,
                       "--encrypt needs a key: give --encrypt-key or set "
                       "LARK_ENCRYPT_KEY");
    goto out;
  }
  int encrypt = o.encrypt == -1 ? (o.ekey != NULL) : o.encrypt;
  if (o.corrupt && !encrypt) {
    cg_cli_usage_error(CMD,
                       "--corrupt damages the ciphertext, so the body "
                       "must be encrypted: give --encrypt-key (and not "
                       "--no-encrypt)");
    goto out;
  }
  if (o.sign == SIGN_LEGACY && !o.vtoken && !o.wrong_token) {
    cg_cli_usage_error(CMD,
                       "--sign legacy needs the verification token: give "
                       "--verification-token or set "
                       "LARK_VERIFICATION_TOKEN");
    goto out;
  }
  if (o.sign == SIGN_EVENT && !o.ekey) {
    cg_cli_usage_error(CMD,
                       "--sign event needs the encrypt key: give "
                       "--encrypt-key or set LARK_ENCRYPT_KEY");
    goto out;
  }

  /* Which signature (lark.md §0.4). A challenge carries none (§1.2). */
  enum sign sign = o.sign;
  if (o.challenge) {
    if (sign != SIGN_AUTO && sign != SIGN_NONE) {
      cg_cli_usage_error(CMD,
                         "a challenge is never signed (lark.md §1.2): "
                         "drop --sign");
      goto out;
    }
    sign = SIGN_NONE;
  } else if (sign == SIGN_AUTO) {
    if (o.format == FMT_LEGACY) {
      if (o.vtoken || o.wrong_token)
        sign = SIGN_LEGACY;
      else if (encrypt)
        sign = SIGN_EVENT;
      else
        sign = SIGN_NONE;
    } else {
      sign = o.ekey ? SIGN_EVENT : SIGN_NONE;
    }
  }
  if (o.wrong_token) {
    if (!o.challenge && o.format == FMT_LEGACY && sign != SIGN_LEGACY) {
      cg_cli_usage_error(CMD,
                         "--wrong-token: a legacy click carries the "
                         "verification token only in its SHA-1 "
                         "signature; use --sign legacy (or auto)");
      goto out;
    }
    size_t n = o.vtoken ? strlen(o.vtoken) : 0;
    wrong = malloc(n + 16);
    if (!wrong) goto oom;
    /* Different from the real token whatever it is. */
    cg_fmt(wrong, n + 16, "wrong-%s", o.vtoken ? o.vtoken : "token");
  }
  const char *vtoken = o.wrong_token ? wrong : o.vtoken;
  if (o.bad_signature && sign == SIGN_NONE) {
    cg_cli_usage_error(CMD,
                       "--bad-signature needs a signature to damage: give "
                       "--verification-token (legacy) or --encrypt-key, "
                       "and not --sign none%s",
                       o.challenge ? " (a challenge is never signed)" : "");
    goto out;
  }
  if (o.stale && sign == SIGN_NONE)
    fprintf(stderr,
            "cardgate trigger: note: --stale only changes "
            "X-Lark-Request-Timestamp, and this request is unsigned\n");

  /* The body. */
  if (o.challenge) {
    if (!o.challenge_str) {
      if (random_hex(challenge, 32) != 0) goto random_failed;
      o.challenge_str = challenge;
    }
    body_json = build_challenge(o.challenge_str, vtoken);
  } else {
    json_error_t je;
    value = json_loads(o.value ? o.value : DEFAULT_VALUE, JSON_DECODE_ANY, &je);
    if (!value || !(json_is_object(value) || json_is_string(value))) {
      cg_cli_usage_error(CMD,
                         "--value must be a JSON object or string%s%s "
                         "(e.g. --value '{\"action\":\"accept\"}' or "
                         "--value '\"text\"')",
                         value ? "" : ": ", value ? "" : je.text);
      goto out;
    }
    if (o.form_value) {
      form = json_loads(o.form_value, JSON_DECODE_ANY, &je);
      if (!form || !json_is_object(form)) {
        cg_cli_usage_error(CMD,
                           "--form-value must be a JSON object%s%s (e.g. "
                           "--form-value '{\"reason\":\"ok\"}')",
                           form ? "" : ": ", form ? "" : je.text);
        goto out;
      }
    }
    if (o.format == FMT_LEGACY)
      body_json = build_legacy(&o, value, form);
    else
      body_json = build_v2(&o, vtoken ? vtoken : "", create_time, preview_token,
                           value, form);
  }
  if (!body_json) goto oom;
  plain = dump_compact(body_json);
  if (!plain) goto oom;

  if (encrypt) {
    if (cg_lark_encrypt(o.ekey, plain, strlen(plain), NULL, &enc) != 0)
      goto oom;
    if (o.corrupt && corrupt_ciphertext(o.ekey, &enc) != 0) {
      fprintf(stderr, "cardgate trigger: could not corrupt the ciphertext\n");
      exit_code = 1;
      goto out;
    }
    json_t *w = json_object();
    json_object_set_new(w, "encrypt", json_string(enc));
    body = dump_compact(w);
    json_decref(w);
    if (!body) goto oom;
  } else {
    body = plain;
    plain = NULL;
  }

  /* Headers: ours first, then --header replacements/additions. */
  char sig[65] = "";
  if (sign == SIGN_LEGACY)
    cg_lark_sign_legacy(ts, o.nonce, vtoken, body, strlen(body), sig);
  else if (sign == SIGN_EVENT)
    cg_lark_sign_event(ts, o.nonce, o.ekey, body, strlen(body), sig);
  if (o.bad_signature) sig[0] = sig[0] == '0' ? '1' : '0';

  hdrs[nh].name = cg_strdup("Content-Type");
  hdrs[nh++].value = cg_strdup("application/json");
  if (sign != SIGN_NONE) {
    hdrs[nh].name = cg_strdup("X-Lark-Request-Timestamp");
    hdrs[nh++].value = cg_strdup(ts);
    hdrs[nh].name = cg_strdup("X-Lark-Request-Nonce");
    hdrs[nh++].value = cg_strdup(o.nonce);
    hdrs[nh].name = cg_strdup("X-Lark-Signature");
    hdrs[nh++].value = cg_strdup(sig);
  }
  for (size_t i = 0; i < o.n_extra; i++) {
    size_t j;
    for (j = 0; j < nh; j++)
      if (strcasecmp(hdrs[j].name, o.extra[i].name) == 0) break;
    if (j == nh) {
      hdrs[nh].name = cg_strdup(o.extra[i].name);
      nh++;
    }
    free(hdrs[j].value);
    hdrs[j].value = o.extra[i].value ? cg_strdup(o.extra[i].value) : NULL;
  }

  const char *url = o.url;
  if (!url) {
    url = o.format == FMT_V2 ? DEFAULT_BASE "/webhook/event"
                             : DEFAULT_BASE "/webhook/card";
  }

  if (o.dry_run)
    exit_code = print_dry_run(url, hdrs, nh, body);
  else
    exit_code = send_request(&o, url, hdrs, nh, body);
  goto out;

random_failed:
  fprintf(stderr, "cardgate trigger: no randomness from the kernel\n");
  exit_code = 1;
  goto out;
oom:
  fprintf(stderr, "cardgate trigger: out of memory\n");
  exit_code = 1;
out:
  json_decref(value);
  json_decref(form);
  json_decref(body_json);
  free(plain);
  free(body);
  free(enc);
  free(url_alloc);
  free(wrong);
  headers_free(hdrs, nh);
  headers_free(o.extra, o.n_extra);
  return exit_code;
}
