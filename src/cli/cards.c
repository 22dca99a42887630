/* cardgate cards list | cards show ID: inspect the card store. */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cardgate.h"
#include "cli.h"
#include "common/common.h"

static const char cards_help[] =
    "Usage: cardgate cards list [--db PATH] [--limit N] [--json]\n"
    "       cardgate cards show ID [--db PATH] [--json]\n"
    "\n"
    "list  the stored cards, most recently updated first: id, workflow, state,\n"
    "      version, last update\n"
    "show  one card: its state, version, variables, the card JSON and the\n"
    "      history of actions taken on it\n"
    "\n"
    "  --db PATH   the SQLite store (default cardgate.db, as for 'cardgate serve')\n"
    "  --json      machine-readable output\n"
    "  --limit N   at most N cards (default 100; 0 = all)\n";

typedef struct list_ctx {
  int json;
  json_t *arr;
  size_t n;
} list_ctx;

static json_t *parse_or_null(const char *s) {
  if (!s) return json_null();
  json_t *j = json_loads(s, 0, NULL);
  return j ? j : json_string(s);
}

static int list_one(const cg_card_record *r, void *ud) {
  list_ctx *c = ud;
  c->n++;
  if (c->json) {
    json_array_append_new(c->arr, json_pack("{s:s, s:s?, s:s?, s:s?, s:I, s:I, s:I}", "message_id", r->message_id,
                                            "platform", r->platform, "workflow", r->workflow, "state", r->state,
                                            "version", (json_int_t)r->version, "created_at_ms",
                                            (json_int_t)r->created_at_ms, "updated_at_ms",
                                            (json_int_t)r->updated_at_ms));
  } else {
    char ts[32];
    cg_time_iso(r->updated_at_ms, ts, sizeof(ts));
    printf("%-32s %-10s %-12s %7lld  %s\n", r->message_id, r->workflow ? r->workflow : "-",
           r->state ? r->state : "-", (long long)r->version, ts);
  }
  return 0;
}

static int history_one(const cg_action_record *a, void *ud) {
  json_t *arr = ud;
  char ts[32];
  cg_time_iso(a->at_ms, ts, sizeof(ts));
  json_array_append_new(arr, json_pack("{s:s?, s:s?, s:o, s:s?, s:s, s:I}", "operator", a->operator_id, "kind",
                                       a->kind, "value", parse_or_null(a->value_json), "result", a->result, "at",
                                       ts, "at_ms", (json_int_t)a->at_ms));
  return 0;
}

int cg_cli_cards(int argc, char **argv) {
  static const struct option opts[] = {{"db", required_argument, 0, 'd'},
                                       {"json", no_argument, 0, 'j'},
                                       {"limit", required_argument, 0, 'l'},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
  const char *db = "cardgate.db";
  int json = 0;
  int64_t limit = 100;
  int ch;
  opterr = 0;
  while ((ch = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
    switch (ch) {
      case 'd': db = optarg; break;
      case 'j': json = 1; break;
      case 'l':
        if (cg_parse_i64(optarg, strlen(optarg), &limit) != 0 || limit < 0)
          return cg_cli_usage_error("cards", "--limit expects a whole number >= 0, got '%s'", optarg);
        break;
      case 'h': fputs(cards_help, stdout); return 0;
      case ':': return cg_cli_usage_error("cards", "option '%s' needs a value", argv[optind - 1]);
      default: return cg_cli_usage_error("cards", "unknown option '%s'", argv[optind - 1]);
    }
  }
  if (optind >= argc) return cg_cli_usage_error("cards", "say 'list' or 'show ID'");
  const char *sub = argv[optind];
  int is_list = !strcmp(sub, "list"), is_show = !strcmp(sub, "show");
  if (!is_list && !is_show) return cg_cli_usage_error("cards", "unknown subcommand '%s' (use list or show ID)", sub);
  if (is_show && optind + 1 >= argc) return cg_cli_usage_error("cards", "'show' needs a card id (a message id such as om_…)");
  if (optind + 1 + is_show < argc)
    return cg_cli_usage_error("cards", "unexpected argument '%s'", argv[optind + 1 + is_show]);

  char err[512];
  int e;
  cg_store *s = cg_store_open(db, err, sizeof(err), &e);
  if (!s) {
    fprintf(stderr, "cardgate cards: cannot open the store %s: %s\n", db, err);
    return 1;
  }
  int rc = 0;
  if (is_list) {
    list_ctx c = {json, json ? json_array() : NULL, 0};
    if (!json) printf("%-32s %-10s %-12s %7s  %s\n", "CARD", "WORKFLOW", "STATE", "VERSION", "UPDATED");
    e = cg_store_cards_list(s, (size_t)limit, list_one, &c);
    if (e != 0) {
      fprintf(stderr, "cardgate cards: %s\n", cg_store_last_error(s));
      rc = 1;
    } else if (json) {
      char *out = json_dumps(c.arr, JSON_INDENT(2));
      if (out) puts(out);
      free(out);
    } else if (c.n == 0) {
      printf("(no cards in %s)\n", db);
    }
    json_decref(c.arr);
  } else {
    const char *id = argv[optind + 1];
    cg_card_record r;
    memset(&r, 0, sizeof(r));
    e = cg_store_card_get(s, id, &r);
    if (e == CG_ENOTFOUND) {
      fprintf(stderr, "cardgate cards: no card '%s' in %s (see 'cardgate cards list --db %s')\n", id, db, db);
      rc = 1;
    } else if (e != 0) {
      fprintf(stderr, "cardgate cards: %s\n", cg_store_last_error(s));
      rc = 1;
    } else {
      json_t *hist = json_array();
      cg_store_actions_list(s, id, history_one, hist);
      json_t *o = json_pack("{s:s, s:s?, s:s?, s:s?, s:I, s:o, s:o, s:o, s:I, s:I}", "message_id", r.message_id,
                            "platform", r.platform, "workflow", r.workflow, "state", r.state, "version",
                            (json_int_t)r.version, "card", parse_or_null(r.card_json), "vars",
                            parse_or_null(r.vars_json), "history", hist, "created_at_ms",
                            (json_int_t)r.created_at_ms, "updated_at_ms", (json_int_t)r.updated_at_ms);
      if (json) {
        char *out = json_dumps(o, JSON_INDENT(2));
        if (out) puts(out);
        free(out);
      } else {
        char ts[32];
        cg_time_iso(r.updated_at_ms, ts, sizeof(ts));
        printf("card      %s\nworkflow  %s\nstate     %s\nversion   %lld\nupdated   %s\n", r.message_id,
               r.workflow ? r.workflow : "-", r.state ? r.state : "-", (long long)r.version, ts);
        char *v = json_dumps(json_object_get(o, "vars"), JSON_INDENT(2));
        char *cj = json_dumps(json_object_get(o, "card"), JSON_INDENT(2) | JSON_ENCODE_ANY);
        printf("vars      %s\ncard\n%s\nhistory\n", v ? v : "null", cj ? cj : "null");
        free(v);
        free(cj);
        size_t i;
        json_t *h;
        json_array_foreach(hist, i, h) {
          char *val = json_dumps(json_object_get(h, "value"), JSON_COMPACT | JSON_ENCODE_ANY);
          printf("  %s  %-24s %-40s %s\n", json_string_value(json_object_get(h, "at")),
                 json_string_value(json_object_get(h, "operator")) ? json_string_value(json_object_get(h, "operator")) : "-",
                 val ? val : "", json_string_value(json_object_get(h, "result")) ? json_string_value(json_object_get(h, "result")) : "");
          free(val);
        }
      }
      json_decref(o);
      cg_card_record_clear(&r);
    }
  }
  cg_store_close(s);
  return rc;
}
