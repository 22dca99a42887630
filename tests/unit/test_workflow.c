/* Declarative workflows (src/lib/core/workflow.c): loading and checking,
 * the built-in publish and approval flows, the pure step, and the
 * store-backed driver under a real compare-and-set race. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
/* cmocka needs the standard headers above */
#include <cmocka.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "cardgate/store.h"
#include "cardgate/workflow.h"
#include "common/common.h"
#include "common/limits.h"
#include "lib/core/action_int.h"
#include "lib/core/reply_int.h"
#include "lib/core/workflow_int.h"

/* 2026-11-22T01:20:44Z = 2026-11-22 09:20 in China. */
#define T0 1795310444000LL

/* ---- helpers ----------------------------------------------------------- */

/* An action as a codec would decode it. Strings are borrowed: pass literals
 * or buffers that outlive the action. */
static cg_action *mk_action(const char *message_id, const char *open_id,
                            const char *value_json) {
  cg__action_rec *r = cg__action_new();
  assert_non_null(r);
  r->root = json_loads(value_json, 0, NULL);
  assert_non_null(r->root);
  r->value = r->root;
  r->value_json = cg_strdup(value_json);
  r->pub.platform = CG_PLATFORM_LARK;
  r->pub.kind = CG_KIND_CARD_ACTION;
  r->pub.format = CG_FORMAT_LARK_LEGACY;
  r->pub.transport = CG_TRANSPORT_HTTP;
  r->pub.message_id = message_id;
  r->pub.open_id = open_id;
  r->pub.user_id = "eu_user";
  r->pub.union_id = "on_union";
  r->pub.tenant_key = "tenant_1";
  r->pub.chat_id = "oc_chat";
  r->pub.tag = "button";
  r->pub.value_json = r->value_json;
  return &r->pub;
}

static void free_action(cg_action *a) {
  cg__action_free(CG__ACTION_REC(a));
}

static cg_workflow *builtin(const char *name) {
  char eb[256];
  int err = 1;
  cg_workflow *wf = cg_workflow_load_builtin(name, eb, sizeof eb, &err);
  if (!wf) fail_msg("%s: %s", name, eb);
  assert_int_equal(err, 0);
  return wf;
}

static cg_workflow *load_ok(const char *text) {
  char eb[512];
  int err = 1;
  cg_workflow *wf =
      cg_workflow_load_string(text, "t.json", eb, sizeof eb, &err);
  if (!wf) fail_msg("load: %s", eb);
  return wf;
}

/* Single quotes become double quotes: keeps the JSON below readable. */
static char *q(const char *s) {
  char *d = cg_strdup(s);
  for (char *p = d; *p; p++)
    if (*p == '\'') *p = '"';
  return d;
}

static char *dump(const json_t *j) {
  return json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
}

/* The string at a path of keys and indexes like "elements/2/text/content". */
static const char *at(const json_t *root, const char *path) {
  const json_t *cur = root;
  const char *p = path;
  while (cur && *p) {
    const char *slash = strchr(p, '/');
    size_t n = slash ? (size_t)(slash - p) : strlen(p);
    char tok[64];
    cg_fmt(tok, sizeof tok, "%.*s", (int)n, p);
    int64_t idx;
    if (json_is_array(cur))
      cur = cg_parse_i64(tok, strlen(tok), &idx) == 0
                ? json_array_get(cur, (size_t)idx)
                : NULL;
    else
      cur = json_object_get(cur, tok);
    p = slash ? slash + 1 : p + n;
  }
  return json_string_value(cur);
}

/* A stored record made from a step's outcome, as the driver would store it. */
static void record_from(cg_card_record *r, const cg__wf_outcome *o,
                        const char *workflow) {
  memset(r, 0, sizeof *r);
  r->message_id = cg_strdup("om_1");
  r->platform = cg_strdup("lark");
  r->workflow = cg_strdup(workflow);
  r->state = cg_strdup(o->new_state);
  r->card_json = dump(o->new_card);
  r->vars_json = dump(o->new_vars);
  r->version = 1;
}

typedef struct hist {
  char results[8][160];
  char ops[8][32];
  int n;
} hist;

static int collect_action(const cg_action_record *a, void *ud) {
  hist *h = ud;
  if (h->n < 8) {
    cg_strlcpy(h->results[h->n], a->result, sizeof h->results[0]);
    cg_strlcpy(h->ops[h->n], a->operator_id ? a->operator_id : "",
               sizeof h->ops[0]);
    h->n++;
  }
  return 0;
}

static hist history_of(cg_store *s, const char *id) {
  hist h;
  memset(&h, 0, sizeof h);
  assert_int_equal(cg_store_actions_list(s, id, collect_action, &h), 0);
  return h;
}

/* Runs a click through the driver; returns the reply (caller frees). */
static cg_reply *run(const cg_workflow *wf, cg_store *s, const char *id,
                     const char *open_id, const char *value, int64_t now) {
  cg_action *a = mk_action(id, open_id, value);
  cg_reply *r = NULL;
  char err[256];
  int rc = cg__workflow_run(wf, s, a, now, &r, err, sizeof err);
  if (rc) fail_msg("run: %d %s", rc, err);
  assert_string_equal(err, "");
  free_action(a);
  assert_non_null(r);
  return r;
}

/* ---- built-ins --------------------------------------------------------- */

static void test_builtins_load(void **state) {
  (void)state;
  int have_publish = 0, have_approval = 0;
  size_t n = 0;
  for (const char *name; (name = cg_workflow_builtin_name(n)); n++) {
    have_publish |= strcmp(name, "publish") == 0;
    have_approval |= strcmp(name, "approval") == 0;
    cg_workflow *wf = builtin(name);
    assert_string_equal(cg_workflow_name(wf), name);
    cg_workflow_free(wf);
  }
  assert_true(have_publish && have_approval);
  assert_null(cg_workflow_builtin_name(n));
  assert_null(cg_workflow_builtin_name((size_t)-1));

  cg_workflow *wf = builtin("publish");
  assert_string_equal(cg_workflow_match(wf),
                      "value.button_type == \"public_publish\"");
  cg_workflow_free(wf);
  wf = builtin("approval");
  assert_string_equal(
      cg_workflow_match(wf),
      "kind == \"card_action\" && value.action == \"accept\" || "
      "kind == \"card_action\" && value.action == \"reject\"");
  cg_workflow_free(wf);

  char eb[128];
  int err = 0;
  assert_null(cg_workflow_load_builtin("nope", eb, sizeof eb, &err));
  assert_int_equal(err, CG_ENOTFOUND);
  assert_string_equal(eb, "no built-in workflow named \"nope\"");
  assert_null(cg_workflow_load_builtin(NULL, eb, sizeof eb, &err));
  assert_int_equal(err, CG_ENOTFOUND);
  cg_workflow_free(NULL);
  assert_null(cg_workflow_name(NULL));
  assert_null(cg_workflow_match(NULL));
  assert_null(cg__workflow_initial_card(NULL, T0));
}

static void test_initial_cards(void **state) {
  (void)state;
  cg_workflow *wf = builtin("publish");
  json_t *c = cg__workflow_initial_card(wf, T0);
  assert_non_null(c);
  /* Seed 002's card, with a header. */
  json_t *want = json_loads(
      "[{\"tag\":\"action\",\"actions\":[{\"tag\":\"button\",\"text\":{\"tag\":"
      "\"plain_text\",\"content\":\"完成「全量发布」\"},\"value\":{"
      "\"button_type\":\"public_publish\",\"button_id\":\"1626958617426\"},"
      "\"type\":\"primary\"}]}]",
      0, NULL);
  assert_true(json_equal(
      json_object_get(json_object_get(c, "i18n_elements"), "zh_cn"), want));
  json_decref(want);
  assert_string_equal(at(c, "header/title/content"), "全量发布");
  json_decref(c);
  cg_workflow_free(wf);

  wf = builtin("approval");
  c = cg__workflow_initial_card(wf, T0);
  assert_string_equal(at(c, "header/title/content"), "审批");
  assert_string_equal(at(c, "header/template"), "blue");
  assert_string_equal(at(c, "elements/2/text/content"), "状态：待处理");
  assert_string_equal(at(c, "elements/3/tag"), "action");
  assert_string_equal(at(c, "elements/3/actions/0/text/content"), "同意");
  assert_string_equal(at(c, "elements/3/actions/0/value/action"), "accept");
  assert_string_equal(at(c, "elements/3/actions/0/type"), "primary");
  assert_string_equal(at(c, "elements/3/actions/1/text/content"), "拒绝");
  assert_string_equal(at(c, "elements/3/actions/1/value/action"), "reject");
  assert_string_equal(at(c, "elements/3/actions/1/type"), "danger");
  json_decref(c);
  cg_workflow_free(wf);
}

/* ---- publish ----------------------------------------------------------- */

static const char *const PUBLISH_VALUE =
    "{\"button_type\":\"public_publish\",\"button_id\":\"1626958617426\"}";

static void test_publish_step(void **state) {
  (void)state;
  cg_workflow *wf = builtin("publish");
  cg_action *a = mk_action("om_1", "ou_a", PUBLISH_VALUE);
  cg__wf_outcome o;
  char err[256];
  /* A click on a card the store has never seen: start, then apply it. */
  assert_int_equal(cg__workflow_step(wf, NULL, a, T0, &o, err, sizeof err), 0);
  assert_int_equal(o.changed, 1);
  assert_string_equal(o.result, "pending -> done");
  assert_string_equal(o.new_state, "done");
  char *s = dump(json_object_get(o.new_card, "i18n_elements"));
  assert_string_equal(s,
                      "{\"zh_cn\":[{\"tag\":\"div\",\"fields\":[{\"is_short\":"
                      "false,\"text\":{\"tag\":\"lark_md\",\"content\":"
                      "\"已完成\"}}]}]}");
  free(s);
  assert_string_equal(at(o.new_card, "header/title/content"), "全量发布");
  assert_non_null(o.reply);
  assert_true(json_equal(o.reply->card, o.new_card));
  assert_null(o.reply->toast_type);

  /* A click on the done card: keep it. */
  cg_card_record cur;
  record_from(&cur, &o, "publish");
  cg__wf_outcome o2;
  assert_int_equal(
      cg__workflow_step(wf, &cur, a, T0 + 1000, &o2, err, sizeof err), 0);
  assert_int_equal(o2.changed, 0);
  assert_string_equal(o2.result, "unchanged (done)");
  assert_true(cg__reply_is_keep(o2.reply));
  assert_string_equal(o2.new_state, "done");
  assert_true(json_equal(o2.new_card, o.new_card));
  cg__wf_outcome_clear(&o2);
  cg__wf_outcome_clear(&o2); /* twice is fine */
  cg_card_record_clear(&cur);
  cg__wf_outcome_clear(&o);
  free_action(a);
  cg_workflow_free(wf);
}

static void test_publish_run(void **state) {
  (void)state;
  cg_workflow *wf = builtin("publish");
  cg_store *s = cg_store_open(":memory:", NULL, 0, NULL);
  assert_non_null(s);
  cg_reply *r = run(wf, s, "om_pub", "ou_a", PUBLISH_VALUE, T0);
  assert_string_equal(
      at(r->card, "i18n_elements/zh_cn/0/fields/0/text/content"), "已完成");
  cg_reply_free(r);
  cg_card_record got;
  assert_int_equal(cg_store_card_get(s, "om_pub", &got), 0);
  assert_string_equal(got.workflow, "publish");
  assert_string_equal(got.state, "done");
  assert_string_equal(got.platform, "lark");
  assert_int_equal(got.version, 1);
  assert_int_equal(got.created_at_ms, T0);
  assert_non_null(strstr(got.card_json, "已完成"));
  cg_card_record_clear(&got);

  r = run(wf, s, "om_pub", "ou_b", PUBLISH_VALUE, T0 + 5);
  assert_true(cg__reply_is_keep(r));
  cg_reply_free(r);
  assert_int_equal(cg_store_card_get(s, "om_pub", &got), 0);
  assert_int_equal(got.version, 1);
  cg_card_record_clear(&got);
  hist h = history_of(s, "om_pub");
  assert_int_equal(h.n, 2);
  assert_string_equal(h.results[0], "pending -> done");
  assert_string_equal(h.ops[0], "ou_a");
  assert_string_equal(h.results[1], "unchanged (done)");
  assert_string_equal(h.ops[1], "ou_b");

  /* No transition on a brand-new card: still stored, in the initial state,
   * so it shows in `cards list`. */
  r = run(wf, s, "om_other", "ou_a", "{\"button_type\":\"other\"}", T0);
  assert_true(cg__reply_is_keep(r));
  cg_reply_free(r);
  assert_int_equal(cg_store_card_get(s, "om_other", &got), 0);
  assert_string_equal(got.state, "pending");
  assert_non_null(strstr(got.card_json, "完成「全量发布」"));
  cg_card_record_clear(&got);
  h = history_of(s, "om_other");
  assert_int_equal(h.n, 1);
  assert_string_equal(h.results[0], "unchanged (pending)");
  cg_store_close(s);
  cg_workflow_free(wf);
}

/* ---- approval ---------------------------------------------------------- */

static void test_approval_flow(void **state) {
  (void)state;
  cg_workflow *wf = builtin("approval");
  cg_store *s = cg_store_open(":memory:", NULL, 0, NULL);
  assert_non_null(s);

  cg_reply *r = run(wf, s, "om_ap", "ou_a", "{\"action\":\"accept\"}", T0);
  assert_non_null(r->card);
  assert_string_equal(at(r->card, "header/title/content"), "审批");
  assert_string_equal(at(r->card, "header/template"), "green");
  assert_string_equal(at(r->card, "elements/2/text/content"), "状态：已同意");
  assert_string_equal(at(r->card, "elements/3/text/content"),
                      "<at id=ou_a></at> 于 2026-11-22 09:20 已同意");
  assert_int_equal(json_array_size(json_object_get(r->card, "elements")), 4);
  char *card = dump(r->card);
  assert_null(strstr(card, "\"tag\":\"action\"")); /* no buttons any more */
  free(card);
  assert_string_equal(r->toast_type, "success");
  assert_string_equal(r->toast_content, "已同意");
  char *i18n = dump(r->toast_i18n);
  assert_string_equal(i18n, "{\"zh_cn\":\"已同意\",\"en_us\":\"Approved\"}");
  free(i18n);
  cg_reply_free(r);

  /* A later click: the card stays, the clicker learns who decided and when. */
  r = run(wf, s, "om_ap", "ou_b", "{\"action\":\"reject\"}", T0 + 60000);
  assert_null(r->card);
  assert_string_equal(r->toast_type, "info");
  assert_string_equal(r->toast_content,
                      "已由 ou_a 于 2026-11-22 09:20 处理（已同意）");
  assert_string_equal(
      json_string_value(json_object_get(r->toast_i18n, "en_us")),
      "Already handled by ou_a at 2026-11-22 09:20 (approved)");
  cg_reply_free(r);

  cg_card_record got;
  assert_int_equal(cg_store_card_get(s, "om_ap", &got), 0);
  assert_string_equal(got.state, "accepted");
  assert_int_equal(got.version, 1);
  json_t *vars = json_loads(got.vars_json, 0, NULL);
  assert_string_equal(at(vars, "status"), "已同意");
  assert_string_equal(at(vars, "decided_by"), "ou_a");
  assert_string_equal(at(vars, "decided_at"), "2026-11-22 09:20");
  json_decref(vars);
  cg_card_record_clear(&got);
  hist h = history_of(s, "om_ap");
  assert_int_equal(h.n, 2);
  assert_string_equal(h.results[0], "pending -> accepted");
  assert_string_equal(h.results[1], "unchanged (accepted)");

  /* Reject on another card. */
  r = run(wf, s, "om_ap2", "ou_c", "{\"action\":\"reject\"}", T0);
  assert_string_equal(at(r->card, "elements/2/text/content"), "状态：被拒绝");
  assert_string_equal(at(r->card, "elements/3/text/content"),
                      "<at id=ou_c></at> 于 2026-11-22 09:20 被拒绝");
  assert_string_equal(at(r->card, "header/template"), "red");
  assert_string_equal(r->toast_content, "已拒绝");
  cg_reply_free(r);
  r = run(wf, s, "om_ap2", "ou_a", "{\"action\":\"accept\"}", T0);
  assert_string_equal(r->toast_content,
                      "已由 ou_c 于 2026-11-22 09:20 处理（被拒绝）");
  cg_reply_free(r);

  /* An unrelated click on a new card stores it pending and keeps it. */
  r = run(wf, s, "om_ap3", "ou_a", "{\"action\":\"noop\"}", T0);
  assert_true(cg__reply_is_keep(r));
  cg_reply_free(r);
  assert_int_equal(cg_store_card_get(s, "om_ap3", &got), 0);
  assert_string_equal(got.state, "pending");
  assert_non_null(strstr(got.card_json, "状态：待处理"));
  cg_card_record_clear(&got);
  r = run(wf, s, "om_ap3", "ou_a", "{\"action\":\"accept\"}", T0);
  assert_non_null(r->card);
  cg_reply_free(r);
  assert_int_equal(cg_store_card_get(s, "om_ap3", &got), 0);
  assert_int_equal(got.version, 2);
  cg_card_record_clear(&got);

  cg_store_close(s);
  cg_workflow_free(wf);
}

/* ---- every variable, patches ------------------------------------------- */

static const char *const VARS_WF =
    "{'name':'vars','match':'kind','initial':'a','vars':{'init':'i'},"
    " 'states':{"
    "  'a':{'card':'c','on':[{'when':{'go':'1'},'to':'b','set':{"
    "    's':'${state}','op':'${operator}','oid':'${operator.open_id}',"
    "    'uid':'${operator.user_id}','unid':'${operator.union_id}',"
    "    'v':'${value.go}','n':'${value.num}','miss':'[${value.missing}]',"
    "    'mid':'${message_id}','cid':'${chat_id}','tk':'${tenant_key}',"
    "    'nw':'${now}','cn':'${now_cn}','pf':'${platform}','i':'${init}',"
    "    'lit':'$${state}'},"
    "   'patch':[{'path':'/t2','value':'${state} ${s} ${i}'}],"
    "   'toast':{'type':'warning','content':'to ${state}'}}]},"
    "  'b':{}},"
    " 'cards':{'c':{'t':'${state}','who':'${operator}'}}}";

static void test_all_variables(void **state) {
  (void)state;
  char *text = q(VARS_WF);
  cg_workflow *wf = load_ok(text);
  free(text);
  cg_action *a = mk_action("om_v", "ou_a", "{\"go\":\"1\",\"num\":42}");
  cg__wf_outcome o;
  char err[256];
  assert_int_equal(cg__workflow_step(wf, NULL, a, T0, &o, err, sizeof err), 0);
  char *v = dump(o.new_vars);
  assert_string_equal(
      v,
      "{\"init\":\"i\",\"s\":\"a\",\"op\":\"ou_a\",\"oid\":\"ou_a\","
      "\"uid\":\"eu_user\",\"unid\":\"on_union\",\"v\":\"1\",\"n\":\"42\","
      "\"miss\":\"[]\",\"mid\":\"om_v\",\"cid\":\"oc_chat\",\"tk\":"
      "\"tenant_1\",\"nw\":\"2026-11-22T01:20:44Z\",\"cn\":"
      "\"2026-11-22 09:20\",\"pf\":\"lark\",\"i\":\"i\",\"lit\":"
      "\"${state}\"}");
  free(v);
  /* The patch is rendered after the transition: ${state} is the new one. */
  char *c = dump(o.new_card);
  assert_string_equal(c, "{\"t\":\"a\",\"who\":\"ou_a\",\"t2\":\"b a i\"}");
  free(c);
  assert_string_equal(o.reply->toast_type, "warning");
  assert_string_equal(o.reply->toast_content, "to b");
  cg__wf_outcome_clear(&o);
  free_action(a);

  /* ${operator} falls back to the user id. */
  a = mk_action("om_v", NULL, "{\"go\":\"1\"}");
  assert_int_equal(cg__workflow_step(wf, NULL, a, T0, &o, err, sizeof err), 0);
  assert_string_equal(at(o.new_vars, "op"), "eu_user");
  assert_string_equal(at(o.new_vars, "oid"), "");
  cg__wf_outcome_clear(&o);
  free_action(a);

  /* A "when" that does not match: no transition. */
  a = mk_action("om_v", "ou_a", "{\"go\":\"2\"}");
  assert_int_equal(cg__workflow_step(wf, NULL, a, T0, &o, err, sizeof err), 0);
  assert_int_equal(o.changed, 0);
  assert_string_equal(o.result, "unchanged (a)");
  cg__wf_outcome_clear(&o);
  free_action(a);
  cg_workflow_free(wf);
}

static const char *const PATCH_WF =
    "{'name':'patch','match':'kind','initial':'a',"
    " 'states':{'a':{'card':'c','on':["
    "   "
    "{'when':{'op':'append'},'to':'a','patch':[{'path':'/list/"
    "-','value':'${value.x}'},"
    "                                             "
    "{'path':'/list/1','value':'end'}]},"
    "   "
    "{'when':{'op':'replace'},'to':'a','patch':[{'path':'/list/"
    "0','value':{'k':'${value.x}'}},"
    "                                              "
    "{'path':'/m~1n/a~0b','value':2}]},"
    "   "
    "{'when':{'op':'whole'},'to':'a','patch':[{'path':'','value':{'new':true}}]"
    "},"
    "   {'when':{'op':'whole_bad'},'to':'a','patch':[{'path':'','value':[1]}]},"
    "   "
    "{'when':{'op':'missing'},'to':'a','patch':[{'path':'/nope/x','value':1}]},"
    "   "
    "{'when':{'op':'index'},'to':'a','patch':[{'path':'/list/7','value':1}]},"
    "   {'when':{'op':'scalar'},'to':'a','patch':[{'path':'/s/x','value':1}]},"
    "   {'to':'b'}]},"
    "  'b':{'card':'d'}},"
    " 'cards':{'c':{'list':['x'],'m/n':{},'s':'str'},'d':{'b':'${value.op}'}}}";

static void patch_case(const cg_workflow *wf, const char *value, int want_rc,
                       const char *want) {
  cg_action *a = mk_action("om_p", "ou_a", value);
  cg__wf_outcome o;
  char err[256];
  int rc = cg__workflow_step(wf, NULL, a, T0, &o, err, sizeof err);
  if (rc != want_rc) fail_msg("%s: rc %d (%s)", value, rc, err);
  if (rc == 0) {
    char *c = dump(o.new_card);
    if (strcmp(c, want) != 0) fail_msg("%s: %s, want %s", value, c, want);
    assert_true(json_equal(o.reply->card, o.new_card));
    free(c);
    cg__wf_outcome_clear(&o);
  } else {
    assert_string_equal(err, want);
    assert_null(o.reply);
    assert_null(o.new_card);
  }
  free_action(a);
}

static void test_patches(void **state) {
  (void)state;
  char *text = q(PATCH_WF);
  cg_workflow *wf = load_ok(text);
  free(text);
  patch_case(wf, "{\"op\":\"append\",\"x\":\"y\"}", 0,
             "{\"list\":[\"x\",\"end\"],\"m/n\":{},\"s\":\"str\"}");
  patch_case(wf, "{\"op\":\"replace\",\"x\":\"y\"}", 0,
             "{\"list\":[{\"k\":\"y\"}],\"m/n\":{\"a~b\":2},\"s\":\"str\"}");
  patch_case(wf, "{\"op\":\"whole\"}", 0, "{\"new\":true}");
  patch_case(wf, "{\"op\":\"whole_bad\"}", CG_EMALFORMED,
             "patch \"\": the new card must be an object");
  patch_case(wf, "{\"op\":\"missing\"}", CG_EMALFORMED,
             "patch /nope/x: no such place in the stored card");
  patch_case(wf, "{\"op\":\"index\"}", CG_EMALFORMED,
             "patch /list/7: no such place in the stored card");
  patch_case(wf, "{\"op\":\"scalar\"}", CG_EMALFORMED,
             "patch /s/x: no such place in the stored card");
  /* No "when": matches anything; no patch: the target state's card. */
  patch_case(wf, "{\"op\":\"other\"}", 0, "{\"b\":\"other\"}");
  cg_workflow_free(wf);
}

static void test_stored_mismatch(void **state) {
  (void)state;
  cg_workflow *wf = builtin("approval");
  cg_action *a = mk_action("om_1", "ou_a", "{\"action\":\"accept\"}");
  cg_card_record cur;
  memset(&cur, 0, sizeof cur);
  cur.message_id = (char *)"om_1";
  cur.platform = (char *)"lark";
  cur.card_json = (char *)"{\"elements\":[]}";
  cur.version = 3;
  cg__wf_outcome o;
  char err[256];

  /* A card stored by someone else (no workflow, no state): the initial
   * state, with the stored card. */
  assert_int_equal(cg__workflow_step(wf, &cur, a, T0, &o, err, sizeof err), 0);
  assert_string_equal(o.result, "pending -> accepted");
  assert_string_equal(at(o.new_vars, "status"), "已同意");
  assert_string_equal(at(o.new_vars, "title"), "张三提交的财务报销");
  cg__wf_outcome_clear(&o);

  /* Stored variables win over the initial ones. */
  cur.vars_json = (char *)"{\"title\":\"李四的报销\"}";
  assert_int_equal(cg__workflow_step(wf, &cur, a, T0, &o, err, sizeof err), 0);
  assert_string_equal(at(o.new_vars, "title"), "李四的报销");
  assert_string_equal(at(o.new_card, "elements/0/text/content"),
                      "**李四的报销**");
  cg__wf_outcome_clear(&o);
  cur.vars_json = NULL;

  static const struct {
    const char *workflow, *state, *card, *vars, *err;
  } bad[] = {
      {"publish", NULL, "{}", NULL,
       "card belongs to workflow \"publish\", not \"approval\""},
      {"approval", "ghost", "{}", NULL,
       "stored state \"ghost\" is not a state of workflow \"approval\""},
      {NULL, NULL, "{}", "[]", "stored vars is not a JSON object"},
      {NULL, NULL, "{}", "{", "stored vars is not a JSON object"},
      {NULL, NULL, "nope", NULL, "stored card is missing or not a JSON object"},
      {NULL, NULL, NULL, NULL, "stored card is missing or not a JSON object"},
  };
  for (size_t i = 0; i < CG_ARRAY_SIZE(bad); i++) {
    cur.workflow = (char *)bad[i].workflow;
    cur.state = (char *)bad[i].state;
    cur.card_json = (char *)bad[i].card;
    cur.vars_json = (char *)bad[i].vars;
    memset(&o, 0x55, sizeof o);
    assert_int_equal(cg__workflow_step(wf, &cur, a, T0, &o, err, sizeof err),
                     CG_EMALFORMED);
    assert_string_equal(err, bad[i].err);
    assert_null(o.reply); /* nothing half-built */
    assert_null(o.new_state);
  }
  assert_int_equal(cg__workflow_step(NULL, NULL, a, T0, &o, err, sizeof err),
                   CG_EINVAL);
  assert_int_equal(cg__workflow_step(wf, NULL, NULL, T0, &o, err, sizeof err),
                   CG_EINVAL);
  assert_int_equal(cg__workflow_step(wf, NULL, a, T0, NULL, err, sizeof err),
                   CG_EINVAL);
  free_action(a);
  cg_workflow_free(wf);
}

static void test_run_errors(void **state) {
  (void)state;
  cg_workflow *wf = builtin("approval");
  cg_store *s = cg_store_open(":memory:", NULL, 0, NULL);
  char err[256];
  cg_reply *r = (cg_reply *)1;
  cg_action *a = mk_action(NULL, "ou_a", "{\"action\":\"accept\"}");
  assert_int_equal(cg__workflow_run(wf, s, a, T0, &r, err, sizeof err),
                   CG_EINVAL);
  assert_null(r);
  assert_string_equal(err, "the action names no card (no message id)");
  free_action(a);
  a = mk_action("om_e", "ou_a", "{\"action\":\"accept\"}");
  assert_int_equal(cg__workflow_run(wf, NULL, a, T0, &r, err, sizeof err),
                   CG_EINVAL);
  assert_int_equal(cg__workflow_run(wf, s, a, T0, NULL, err, sizeof err),
                   CG_EINVAL);

  /* A card of another workflow: refused, and the refusal is in the history. */
  cg_card_record rec;
  memset(&rec, 0, sizeof rec);
  rec.message_id = (char *)"om_e";
  rec.platform = (char *)"lark";
  rec.workflow = (char *)"publish";
  rec.state = (char *)"done";
  rec.card_json = (char *)"{}";
  assert_int_equal(cg_store_card_insert(s, &rec), 0);
  assert_int_equal(cg__workflow_run(wf, s, a, T0, &r, err, sizeof err),
                   CG_EMALFORMED);
  assert_null(r);
  hist h = history_of(s, "om_e");
  assert_int_equal(h.n, 1);
  assert_string_equal(h.results[0],
                      "error: card belongs to workflow "
                      "\"publish\", not \"approval\"");
  free_action(a);
  cg_store_close(s);
  cg_workflow_free(wf);
}

/* ---- the race ---------------------------------------------------------- */

typedef struct racer {
  const cg_workflow *wf;
  cg_store *store;
  pthread_barrier_t *barrier;
  const char *message_id;
  const char *open_id;
  const char *value;
  cg_reply *reply;
  int rc;
  char err[256];
} racer;

static void *race_click(void *arg) {
  racer *r = arg;
  cg_action *a = mk_action(r->message_id, r->open_id, r->value);
  pthread_barrier_wait(r->barrier);
  r->rc = cg__workflow_run(r->wf, r->store, a, T0, &r->reply, r->err,
                           sizeof r->err);
  free_action(a);
  return NULL;
}

/* Two people click the same approval card at once, on a file database:
 * exactly one decides, the other is told who did. pre: the card is stored
 * (pending) before the race, so the race is on the compare-and-set rather
 * than on the insert. gate (a path): a third connection holds the write lock
 * while the racers start, so both read the card before either can write —
 * the loser's write then surely conflicts and it must read again. */
static void approval_race(cg_store *s1, cg_store *s2, int pre, int rounds,
                          const char *gate) {
  cg_workflow *wf = builtin("approval");
  for (int round = 0; round < rounds; round++) {
    char id[64];
    cg_fmt(id, sizeof id, "om_race_%d_%d_%p_%d", pre, gate != NULL, (void *)s2,
           round);
    if (pre) {
      cg_reply *r = run(wf, s1, id, "ou_x", "{\"action\":\"noop\"}", T0);
      cg_reply_free(r);
    }
    sqlite3 *lock = NULL;
    if (gate) {
      assert_int_equal(sqlite3_open(gate, &lock), SQLITE_OK);
      assert_int_equal(sqlite3_exec(lock, "BEGIN IMMEDIATE", NULL, NULL, NULL),
                       SQLITE_OK);
    }
    pthread_barrier_t barrier;
    pthread_barrier_init(&barrier, NULL, 3);
    racer rs[2] = {
        {wf, s1, &barrier, id, "ou_a", "{\"action\":\"accept\"}", NULL, 1, ""},
        {wf, s2, &barrier, id, "ou_b", "{\"action\":\"accept\"}", NULL, 1, ""},
    };
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
      assert_int_equal(pthread_create(&th[i], NULL, race_click, &rs[i]), 0);
    pthread_barrier_wait(&barrier);
    if (gate) {
      /* Both racers read and step within this time, then wait for the
       * lock (busy_timeout is 5 s). */
      struct timespec ts = {0, 150 * 1000 * 1000};
      nanosleep(&ts, NULL);
      assert_int_equal(sqlite3_exec(lock, "COMMIT", NULL, NULL, NULL),
                       SQLITE_OK);
      sqlite3_close(lock);
    }
    for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
    pthread_barrier_destroy(&barrier);

    int winner = -1, cards = 0;
    for (int i = 0; i < 2; i++) {
      if (rs[i].rc) fail_msg("racer %d: %d %s", i, rs[i].rc, rs[i].err);
      if (rs[i].reply->card) {
        cards++;
        winner = i;
      }
    }
    if (cards != 1)
      fail_msg("pre %d gate %d round %d: %d cards; toasts %s / %s", pre,
               gate != NULL, round, cards,
               rs[0].reply->toast_content ? rs[0].reply->toast_content : "-",
               rs[1].reply->toast_content ? rs[1].reply->toast_content : "-");
    racer *loser = &rs[1 - winner];
    assert_null(loser->reply->card);
    char want[128];
    cg_fmt(want, sizeof want, "已由 %s 于 2026-11-22 09:20 处理（已同意）",
           rs[winner].open_id);
    assert_string_equal(loser->reply->toast_content, want);
    for (int i = 0; i < 2; i++) cg_reply_free(rs[i].reply);

    hist h = history_of(s1, id);
    assert_int_equal(h.n, pre ? 3 : 2);
    int accepted = 0, unchanged = 0;
    for (int i = 0; i < h.n; i++) {
      accepted += strcmp(h.results[i], "pending -> accepted") == 0;
      unchanged += strcmp(h.results[i], "unchanged (accepted)") == 0;
    }
    assert_int_equal(accepted, 1);
    assert_int_equal(unchanged, 1);
    cg_card_record got;
    assert_int_equal(cg_store_card_get(s1, id, &got), 0);
    assert_string_equal(got.state, "accepted");
    assert_int_equal(got.version, pre ? 2 : 1);
    cg_card_record_clear(&got);
  }
  cg_workflow_free(wf);
}

static void test_cas_race(void **state) {
  (void)state;
  char dir[] = "/tmp/cg_test_wf_XXXXXX";
  assert_non_null(mkdtemp(dir));
  char db[64];
  cg_fmt(db, sizeof db, "%s/cards.db", dir);
  cg_store *s1 = cg_store_open(db, NULL, 0, NULL);
  cg_store *s2 = cg_store_open(db, NULL, 0, NULL);
  assert_non_null(s1);
  assert_non_null(s2);
  approval_race(s1, s1, 0, 15, NULL); /* one store, both insert a new card */
  approval_race(s1, s1, 1, 15, NULL); /* one store, both compare-and-set */
  approval_race(s1, s2, 0, 10, NULL); /* two "instances" on one file */
  approval_race(s1, s2, 1, 10, NULL);
  /* Forced interleaving: read, read, write wins, write conflicts. */
  approval_race(s1, s1, 0, 2, db);
  approval_race(s1, s2, 1, 2, db);
  cg_store_close(s1);
  cg_store_close(s2);
  static const char *const sfx[] = {"", "-wal", "-shm"};
  for (size_t i = 0; i < CG_ARRAY_SIZE(sfx); i++) {
    char p[80];
    cg_fmt(p, sizeof p, "%s%s", db, sfx[i]);
    unlink(p);
  }
  rmdir(dir);
}

/* ---- broken workflow files --------------------------------------------- */

#define BASE_STATES \
  "'states':{'a':{'card':'c','on':[{'when':{'k':'1'},'to':'b'}]},'b':{}},"
#define BASE_CARDS "'cards':{'c':{'elements':[{'text':{'content':'${v}'}}]}}"
#define BASE_HEAD "'name':'t','match':'kind','initial':'a','vars':{'v':'x'},"

static const struct {
  const char *json; /* single quotes become double quotes */
  const char *err;
} broken[] = {
    /* bad JSON: line and column */
    {"{'name': }", "t.json: line 1, column 10: unexpected token near '}'"},
    {"{", "t.json: line 1, column 1: string or '}' expected near end of file"},
    {"", "t.json: line 1, column 0: '[' or '{' expected near end of file"},
    {"{'name':'a',\n 'name':'b'}",
     "t.json: line 2, column 7: duplicate object key near '\"name\"'"},
    {"{} x", "t.json: line 1, column 4: end of file expected near 'x'"},
    {"{'name':'\xff'}",
     "t.json: line 1, column 9: unable to decode byte 0xff near '\"'"},
    /* wrong types */
    {"[]", "t.json: $: must be an object, not an array"},
    {"{'name':5}", "t.json: $.name: must be a string, not a number"},
    {"{" BASE_HEAD "'states':[]," BASE_CARDS "}",
     "t.json: $.states: must be an object, not an array"},
    {"{'name':'t','match':'kind','initial':'a','vars':{'v':1}," BASE_STATES
         BASE_CARDS "}",
     "t.json: $.vars.v: must be a string, not a number"},
    {"{" BASE_HEAD "'states':{'a':{'card':'c','on':{}}}," BASE_CARDS "}",
     "t.json: $.states.a.on: must be an array, not an object"},
    {"{" BASE_HEAD "'states':{'a':{'card':'c','on':['b']}}," BASE_CARDS "}",
     "t.json: $.states.a.on[0]: must be an object, not a string"},
    {"{" BASE_HEAD
     "'states':{'a':{'card':'c','on':[{'when':{'n':42},'to':'a'}]}}," BASE_CARDS
     "}",
     "t.json: $.states.a.on[0].when.n: must be a string, not a number"},
    {"{" BASE_HEAD "'states':{'a':true}," BASE_CARDS "}",
     "t.json: $.states.a: must be an object, not a boolean"},
    {"{" BASE_HEAD BASE_STATES "'cards':{'c':'text'}}",
     "t.json: $.cards.c: must be an object, not a string"},
    {"{" BASE_HEAD "'states':{'a':{'card':'c','on':[{'to':'a','set':{'x':null}}"
                   "]}}," BASE_CARDS "}",
     "t.json: $.states.a.on[0].set.x: must be a string, not null"},
    /* missing fields */
    {"{'match':'kind','initial':'a'," BASE_STATES BASE_CARDS "}",
     "t.json: $.name: missing required field"},
    {"{'name':'t','initial':'a'," BASE_STATES BASE_CARDS "}",
     "t.json: $.match: missing required field"},
    {"{'name':'t','match':'kind','vars':{'v':'x'}," BASE_STATES BASE_CARDS "}",
     "t.json: $.initial: missing required field"},
    {"{" BASE_HEAD BASE_CARDS "}", "t.json: $.states: missing required field"},
    {"{" BASE_HEAD "'states':{'a':{'card':'c','on':[{'when':{}}]}}," BASE_CARDS
     "}",
     "t.json: $.states.a.on[0].to: missing required field"},
    {"{" BASE_HEAD
     "'states':{'a':{'card':'c','on':[{'to':'a','toast':{}}]}}," BASE_CARDS "}",
     "t.json: $.states.a.on[0].toast.content: missing required field"},
    {"{" BASE_HEAD "'states':{'a':{'card':'c','on':[{'to':'a','patch':[{'path':"
                   "'/x'}]}]}}," BASE_CARDS "}",
     "t.json: $.states.a.on[0].patch[0].value: missing required field"},
    /* bad values */
    {"{'name':'Approval','match':'kind','initial':'a'," BASE_STATES BASE_CARDS
     "}",
     "t.json: $.name: must match [a-z0-9_-]+, at most 64 characters"},
    {"{'name':'t','match':'','initial':'a'," BASE_STATES BASE_CARDS "}",
     "t.json: $.match: must not be empty"},
    {"{" BASE_HEAD "'states':{}," BASE_CARDS "}",
     "t.json: $.states: no states"},
    {"{" BASE_HEAD "'states':{'a b':{}}," BASE_CARDS "}",
     "t.json: $.states[\"a b\"]: state names are [A-Za-z0-9_-]+, at most 48 "
     "characters"},
    {"{" BASE_HEAD "'colour':'red'," BASE_STATES BASE_CARDS "}",
     "t.json: $.colour: unknown key"},
    {"{" BASE_HEAD "'states':{'a':{'card':'c','otherwize':{}}}," BASE_CARDS "}",
     "t.json: $.states.a.otherwize: unknown key"},
    {"{" BASE_HEAD "'states':{'a':{'card':'c','on':[{'to':'a','toast':{'type':'"
                   "fail','content':'x'}}]}}," BASE_CARDS "}",
     "t.json: $.states.a.on[0].toast.type: unknown toast type \"fail\" (info, "
     "success, error, warning)"},
    {"{" BASE_HEAD "'states':{'a':{'card':'c','on':[{'to':'a','set':{'state':'"
                   "x'}}]}}," BASE_CARDS "}",
     "t.json: $.states.a.on[0].set.state: \"state\" is a built-in variable"},
    {"{" BASE_HEAD "'states':{'a':{'card':'c','on':[{'to':'a','set':{'a.b':'x'}"
                   "}]}}," BASE_CARDS "}",
     "t.json: $.states.a.on[0].set[\"a.b\"]: variable names are [A-Za-z0-9_]+, "
     "at most 64 characters"},
    {"{" BASE_HEAD "'states':{'a':{'card':'c','on':[{'to':'a','patch':[{'path':"
                   "'x','value':1}]}]}}," BASE_CARDS "}",
     "t.json: $.states.a.on[0].patch[0].path: not a JSON pointer (\"\" or "
     "\"/a/b/0\")"},
    {"{" BASE_HEAD "'states':{'a':{'card':'c','on':[{'to':'a','patch':[{'path':"
                   "'/a~2','value':1}]}]}}," BASE_CARDS "}",
     "t.json: $.states.a.on[0].patch[0].path: not a JSON pointer (\"\" or "
     "\"/a/b/0\")"},
    /* unknown names */
    {"{" BASE_HEAD
     "'states':{'a':{'card':'c','on':[{'to':'acepted'}]}}," BASE_CARDS "}",
     "t.json: $.states.a.on[0].to: unknown state \"acepted\""},
    {"{'name':'t','match':'kind','initial':'pending'," BASE_STATES BASE_CARDS
     "}",
     "t.json: $.initial: unknown state \"pending\""},
    {"{" BASE_HEAD "'states':{'a':{'card':'nope'}}," BASE_CARDS "}",
     "t.json: $.states.a.card: unknown card \"nope\""},
    {"{" BASE_HEAD "'states':{'a':{'card':'c'},'b':{'card':'d'}}}",
     "t.json: $.states.a.card: unknown card \"c\""},
    {"{" BASE_HEAD "'states':{'a':{}}," BASE_CARDS "}",
     "t.json: $.states.a: the initial state needs a \"card\""},
    {"{" BASE_HEAD BASE_STATES
     "'cards':{'c':{'elements':[{'text':{'content':'${stauts}'}}]}}}",
     "t.json: $.cards.c.elements[0].text.content: unknown variable \"stauts\""},
    {"{" BASE_HEAD BASE_STATES "'cards':{'c':{'t':'${operator.name}'}}}",
     "t.json: $.cards.c.t: unknown variable \"operator.name\""},
    {"{" BASE_HEAD "'states':{'a':{'card':'c','on':[{'to':'a','toast':{'"
                   "content':'${who}'}}]}}," BASE_CARDS "}",
     "t.json: $.states.a.on[0].toast.content: unknown variable \"who\""},
    {"{" BASE_HEAD "'states':{'a':{'card':'c','otherwise':{'toast':{'content':'"
                   "x','i18n':{'en_us':'${who}'}}}}}," BASE_CARDS "}",
     "t.json: $.states.a.otherwise.toast.i18n.en_us: unknown variable \"who\""},
    {"{" BASE_HEAD "'states':{'a':{'card':'c','on':[{'to':'a','set':{'x':'${"
                   "now'}}]}}," BASE_CARDS "}",
     "t.json: $.states.a.on[0].set.x: unterminated placeholder \"${now\""},
    {"{" BASE_HEAD "'states':{'a':{'card':'c','on':[{'to':'a','patch':[{'path':"
                   "'/x','value':['${}']}]}]}}," BASE_CARDS "}",
     "t.json: $.states.a.on[0].patch[0].value[0]: empty placeholder \"${}\""},
};

static void test_broken_files(void **state) {
  (void)state;
  for (size_t i = 0; i < CG_ARRAY_SIZE(broken); i++) {
    char *text = q(broken[i].json);
    char eb[512] = "";
    int err = 0;
    cg_workflow *wf =
        cg_workflow_load_string(text, "t.json", eb, sizeof eb, &err);
    free(text);
    if (wf) fail_msg("case %zu loaded", i);
    if (err != CG_EMALFORMED) fail_msg("case %zu: err %d", i, err);
    if (strcmp(eb, broken[i].err) != 0)
      fail_msg("case %zu:\n got  %s\n want %s", i, eb, broken[i].err);
  }
  /* A variable set in any transition is known everywhere. */
  char *text = q("{" BASE_HEAD
                 "'states':{'a':{'card':'c','on':[{'to':'b','set':{'w':'1'}}]},"
                 "'b':{'otherwise':{'toast':{'content':'${w}'}}}},"
                 "'cards':{'c':{'x':'${w}'}}}");
  cg_workflow *wf = load_ok(text);
  cg_workflow_free(wf);
  free(text);
  /* Nesting deeper than the limit in a card. */
  char deep[1024];
  cg_buf b;
  cg_buf_init(&b, 4096);
  for (int i = 0; i < 70; i++) cg_buf_appends(&b, "[");
  for (int i = 0; i < 70; i++) cg_buf_appends(&b, "]");
  cg_fmt(deep, sizeof deep, "{" BASE_HEAD BASE_STATES "'cards':{'c':{'x':%s}}}",
         b.data);
  cg_buf_free(&b);
  text = q(deep);
  char eb[256];
  int err = 0;
  assert_null(cg_workflow_load_string(text, "t.json", eb, sizeof eb, &err));
  assert_string_equal(eb, "t.json: $.cards.c: nesting deeper than 64 levels");
  free(text);
  assert_null(cg_workflow_load_string(NULL, "t.json", eb, sizeof eb, &err));
  assert_int_equal(err, CG_EINVAL);
  /* errbuf and err are optional. */
  assert_null(cg_workflow_load_string("{", NULL, NULL, 0, NULL));
  /* "stateless" must be a boolean. */
  text = q("{" BASE_HEAD BASE_STATES "'stateless':'yes','cards':{'c':{}}}");
  assert_null(cg_workflow_load_string(text, "t.json", eb, sizeof eb, &err));
  assert_string_equal(eb, "t.json: $.stateless: must be true or false, not a string");
  free(text);
}

static void test_stateless(void **state) {
  (void)state;
  char *text = q("{" BASE_HEAD BASE_STATES "'stateless':true,'cards':{'c':{'x':'${operator}'}}}");
  cg_workflow *wf = load_ok(text);
  free(text);
  assert_int_equal(cg__workflow_stateless(wf), 1);
  cg_workflow_free(wf);
  text = q("{" BASE_HEAD BASE_STATES "'cards':{'c':{}}}");
  wf = load_ok(text);
  free(text);
  assert_int_equal(cg__workflow_stateless(wf), 0);
  cg_workflow_free(wf);
}

static void test_sizes_and_files(void **state) {
  (void)state;
  /* Oversized: refused before parsing. */
  size_t n = CG_LIMIT_WORKFLOW_FILE + 1;
  char *big = malloc(n + 1);
  assert_non_null(big);
  memset(big, ' ', n);
  big[0] = '{';
  big[n - 1] = '}';
  big[n] = '\0';
  char eb[256];
  int err = 0;
  assert_null(cg_workflow_load_string(big, "big.json", eb, sizeof eb, &err));
  assert_int_equal(err, CG_ETOOBIG);
  assert_string_equal(eb, "big.json: larger than 4194304 bytes");

  char dir[] = "/tmp/cg_test_wf_XXXXXX";
  assert_non_null(mkdtemp(dir));
  char path[64];
  cg_fmt(path, sizeof path, "%s/big.json", dir);
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  fwrite(big, 1, n, f);
  fclose(f);
  assert_null(cg_workflow_load_file(path, eb, sizeof eb, &err));
  assert_int_equal(err, CG_ETOOBIG);
  char want[128];
  cg_fmt(want, sizeof want, "%s: larger than 4194304 bytes", path);
  assert_string_equal(eb, want);
  free(big);

  unlink(path);

  /* A good file: messages name it. */
  cg_fmt(path, sizeof path, "%s/approval.json", dir);
  f = fopen(path, "wb");
  assert_non_null(f);
  char *text =
      q("{" BASE_HEAD
        "'states':{'a':{'card':'c','on':[{'to':'acepted'}]}}," BASE_CARDS "}");
  fputs(text, f);
  fclose(f);
  free(text);
  assert_null(cg_workflow_load_file(path, eb, sizeof eb, &err));
  assert_int_equal(err, CG_EMALFORMED);
  cg_fmt(want, sizeof want,
         "%s: $.states.a.on[0].to: unknown state \"acepted\"", path);
  assert_string_equal(eb, want);

  f = fopen(path, "wb");
  text = q("{" BASE_HEAD BASE_STATES BASE_CARDS "}");
  fputs(text, f);
  fclose(f);
  free(text);
  cg_workflow *wf = cg_workflow_load_file(path, eb, sizeof eb, &err);
  assert_non_null(wf);
  assert_int_equal(err, 0);
  assert_string_equal(cg_workflow_name(wf), "t");
  cg_workflow_free(wf);
  unlink(path);

  cg_fmt(path, sizeof path, "%s/missing.json", dir);
  assert_null(cg_workflow_load_file(path, eb, sizeof eb, &err));
  assert_int_equal(err, CG_EIO);
  cg_fmt(want, sizeof want, "%s: cannot open: No such file or directory", path);
  assert_string_equal(eb, want);
  /* A directory opens but cannot be read. */
  assert_null(cg_workflow_load_file(dir, eb, sizeof eb, &err));
  assert_int_equal(err, CG_EIO);
  assert_null(cg_workflow_load_file(NULL, eb, sizeof eb, &err));
  assert_int_equal(err, CG_EINVAL);
  rmdir(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_builtins_load),
      cmocka_unit_test(test_initial_cards),
      cmocka_unit_test(test_publish_step),
      cmocka_unit_test(test_publish_run),
      cmocka_unit_test(test_approval_flow),
      cmocka_unit_test(test_all_variables),
      cmocka_unit_test(test_patches),
      cmocka_unit_test(test_stored_mismatch),
      cmocka_unit_test(test_run_errors),
      cmocka_unit_test(test_cas_race),
      cmocka_unit_test(test_broken_files),
      cmocka_unit_test(test_sizes_and_files),
      cmocka_unit_test(test_stateless),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
