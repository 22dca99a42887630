/* cardgate outbox list | show ID | retry ID | drop ID: inspect and repair
 * the outbox (card updates waiting for the Open API; docs/outbox.md). */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cardgate.h"
#include "cli.h"
#include "common/common.h"

static const char outbox_help[] =
    "Usage: cardgate outbox list [--state S] [--limit N] [--db PATH] [--json]\n"
    "       cardgate outbox show ID [--db PATH] [--json]\n"
    "       cardgate outbox retry ID [--db PATH]\n"
    "       cardgate outbox drop ID [--db PATH]\n"
    "\n"
    "The outbox holds card updates that could not be given in the callback's\n"
    "answer (a handler answered after the deadline, or a follow-up). 'cardgate\n"
    "serve' delivers them through the Lark Open API, retrying with backoff;\n"
    "an entry that keeps failing ends 'dead'.\n"
    "\n"
    "list   entries, newest first: id, state, card, attempts, next attempt, error\n"
    "show   one entry, with its card and its last error (never its token)\n"
    "retry  make a dead (or waiting) entry due now, with fresh attempts\n"
    "drop   delete an entry\n"
    "\n"
    "  --db PATH    the SQLite store (default cardgate.db, as for 'cardgate serve')\n"
    "  --state S    list only pending, delivered or dead entries\n"
    "  --limit N    at most N entries (default 100; 0 = all)\n"
    "  --json       machine-readable output\n";

static json_t *entry_json(const cg_outbox_entry *e, int with_card) {
  json_t *card = NULL;
  if (with_card) {
    card = e->card_json ? json_loads(e->card_json, 0, NULL) : NULL;
    if (!card) card = e->card_json ? json_string(e->card_json) : json_null();
  }
  json_t *o = json_pack("{s:I, s:s?, s:s?, s:s?, s:i, s:I, s:s?, s:b, s:i, s:I, s:I, s:I, s:I}", "id",
                        (json_int_t)e->id, "platform", e->platform, "message_id", e->message_id, "state", e->state,
                        "attempts", e->attempts, "next_attempt_at_ms", (json_int_t)e->next_attempt_at_ms,
                        "last_error", e->last_error, "has_token", e->update_token != NULL, "token_uses",
                        e->token_uses, "token_expires_at_ms", (json_int_t)e->token_expires_at_ms, "revision",
                        (json_int_t)e->revision, "created_at_ms", (json_int_t)e->created_at_ms, "updated_at_ms",
                        (json_int_t)e->updated_at_ms);
  if (o && card) json_object_set_new(o, "card", card);
  else json_decref(card);
  return o;
}

typedef struct list_ctx {
  int json;
  json_t *arr;
  size_t n;
} list_ctx;

static int list_one(const cg_outbox_entry *e, void *ud) {
  list_ctx *c = ud;
  c->n++;
  if (c->json) {
    json_array_append_new(c->arr, entry_json(e, 0));
    return 0;
  }
  char next[32] = "-";
  if (!strcmp(e->state, "pending")) cg_time_iso(e->next_attempt_at_ms, next, sizeof next);
  printf("%-8lld %-9s %-28s %8d  %-24s %s\n", (long long)e->id, e->state, e->message_id, e->attempts, next,
         e->last_error ? e->last_error : "");
  return 0;
}

static int parse_id(const char *s, int64_t *id) {
  return cg_parse_i64(s, strlen(s), id) == 0 && *id > 0 ? 0 : -1;
}

int cg_cli_outbox(int argc, char **argv) {
  static const struct option opts[] = {{"db", required_argument, 0, 'd'},    {"json", no_argument, 0, 'j'},
                                       {"limit", required_argument, 0, 'l'}, {"state", required_argument, 0, 's'},
                                       {"help", no_argument, 0, 'h'},        {0, 0, 0, 0}};
  const char *db = "cardgate.db";
  const char *state = NULL;
  int json = 0;
  int64_t limit = 100;
  int ch;
  opterr = 0;
  while ((ch = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
    switch (ch) {
      case 'd': db = optarg; break;
      case 'j': json = 1; break;
      case 's':
        if (strcmp(optarg, "pending") && strcmp(optarg, "delivered") && strcmp(optarg, "dead"))
          return cg_cli_usage_error("outbox", "--state expects pending, delivered or dead, got '%s'", optarg);
        state = optarg;
        break;
      case 'l':
        if (cg_parse_i64(optarg, strlen(optarg), &limit) != 0 || limit < 0)
          return cg_cli_usage_error("outbox", "--limit expects a whole number >= 0, got '%s'", optarg);
        break;
      case 'h': fputs(outbox_help, stdout); return 0;
      case ':': return cg_cli_usage_error("outbox", "option '%s' needs a value", argv[optind - 1]);
      default: return cg_cli_usage_error("outbox", "unknown option '%s'", argv[optind - 1]);
    }
  }
  if (optind >= argc) return cg_cli_usage_error("outbox", "say 'list', 'show ID', 'retry ID' or 'drop ID'");
  const char *sub = argv[optind];
  int is_list = !strcmp(sub, "list");
  int with_id = !strcmp(sub, "show") || !strcmp(sub, "retry") || !strcmp(sub, "drop");
  if (!is_list && !with_id)
    return cg_cli_usage_error("outbox", "unknown subcommand '%s' (use list, show ID, retry ID or drop ID)", sub);
  int64_t id = 0;
  if (with_id) {
    if (optind + 1 >= argc) return cg_cli_usage_error("outbox", "'%s' needs an entry id (see 'cardgate outbox list')", sub);
    if (parse_id(argv[optind + 1], &id) != 0)
      return cg_cli_usage_error("outbox", "an entry id is a whole number > 0, got '%s'", argv[optind + 1]);
  }
  if (optind + 1 + with_id < argc)
    return cg_cli_usage_error("outbox", "unexpected argument '%s'", argv[optind + 1 + with_id]);

  char err[512];
  int e;
  cg_store *s = cg_store_open(db, err, sizeof(err), &e);
  if (!s) {
    fprintf(stderr, "cardgate outbox: cannot open the store %s: %s\n", db, err);
    return 1;
  }
  int rc = 0;
  if (is_list) {
    list_ctx c = {json, json ? json_array() : NULL, 0};
    if (!json) printf("%-8s %-9s %-28s %8s  %-24s %s\n", "ID", "STATE", "CARD", "ATTEMPTS", "NEXT", "LAST ERROR");
    e = cg_store_outbox_list(s, state, (size_t)limit, list_one, &c);
    if (e != 0) {
      fprintf(stderr, "cardgate outbox: %s\n", cg_store_last_error(s));
      rc = 1;
    } else if (json) {
      char *out = json_dumps(c.arr, JSON_INDENT(2));
      if (out) puts(out);
      free(out);
    } else if (c.n == 0) {
      printf("(no outbox entries%s%s in %s)\n", state ? " in state " : "", state ? state : "", db);
    }
    json_decref(c.arr);
  } else if (!strcmp(sub, "show")) {
    cg_outbox_entry en;
    e = cg_store_outbox_get(s, id, &en);
    if (e == CG_ENOTFOUND) {
      fprintf(stderr, "cardgate outbox: no entry %lld in %s (see 'cardgate outbox list --db %s')\n", (long long)id, db,
              db);
      rc = 1;
    } else if (e != 0) {
      fprintf(stderr, "cardgate outbox: %s\n", cg_store_last_error(s));
      rc = 1;
    } else {
      json_t *o = entry_json(&en, 1);
      if (json) {
        char *out = json_dumps(o, JSON_INDENT(2));
        if (out) puts(out);
        free(out);
      } else {
        char created[32], updated[32], next[32] = "-", texp[32] = "-";
        cg_time_iso(en.created_at_ms, created, sizeof created);
        cg_time_iso(en.updated_at_ms, updated, sizeof updated);
        if (!strcmp(en.state, "pending")) cg_time_iso(en.next_attempt_at_ms, next, sizeof next);
        if (en.update_token) cg_time_iso(en.token_expires_at_ms, texp, sizeof texp);
        printf("entry     %lld\ncard      %s (%s)\nstate     %s\nattempts  %d\nnext      %s\nerror     %s\n"
               "token     %s (uses %d of 2, expires %s)\nrevision  %lld\ncreated   %s\nupdated   %s\n",
               (long long)en.id, en.message_id, en.platform, en.state, en.attempts, next,
               en.last_error ? en.last_error : "-", en.update_token ? "yes" : "no", en.token_uses, texp,
               (long long)en.revision, created, updated);
        char *cj = json_dumps(json_object_get(o, "card"), JSON_INDENT(2) | JSON_ENCODE_ANY);
        printf("card JSON\n%s\n", cj ? cj : "null");
        free(cj);
      }
      json_decref(o);
      cg_outbox_entry_clear(&en);
    }
  } else {
    int retry = !strcmp(sub, "retry");
    e = retry ? cg_store_outbox_retry(s, id, cg_now_ms()) : cg_store_outbox_drop(s, id);
    if (e == 0) {
      printf(retry ? "outbox entry %lld is due now ('cardgate serve' delivers it)\n" : "outbox entry %lld dropped\n",
             (long long)id);
    } else {
      fprintf(stderr, "cardgate outbox: %s\n",
              e == CG_ENOTFOUND ? "no such entry (see 'cardgate outbox list')" : cg_store_last_error(s));
      rc = 1;
    }
  }
  cg_store_close(s);
  return rc;
}
