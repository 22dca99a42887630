/* libFuzzer target for workflow loading and stepping
 * (src/lib/core/workflow.c, src/lib/codec/template.c).
 *
 * Input: a workflow file. When it loads, a fixed click (whose value carries
 * the keys the corpus workflows look at) is stepped on a card the store has
 * never seen, then again on the card that step produced, as the driver would
 * store it; the initial card is rendered too.
 * Oracles besides the sanitizers: a failed load leaves a message naming the
 * origin; a successful step yields a state, variables, a card object and a
 * reply; a failed one leaves nothing half-built; the stored form of the
 * outcome parses back. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "lib/core/action_int.h"
#include "lib/core/workflow_int.h"

#define NOW INT64_C(1795310444000)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char VALUE[] =
    "{\"action\":\"accept\",\"button_type\":\"public_publish\","
    "\"button_id\":\"1626958617426\",\"k\":\"1\",\"go\":\"1\",\"op\":"
    "\"append\","
    "\"x\":\"y\",\"n\":42,\"b\":true}";

static cg_action *make_action(void) {
  cg__action_rec *r = cg__action_new();
  if (!r) return NULL;
  r->root = json_loads(VALUE, 0, NULL);
  r->value = r->root;
  r->value_json = cg_strdup(VALUE);
  if (!r->root || !r->value_json) {
    cg__action_free(r);
    return NULL;
  }
  r->pub.platform = CG_PLATFORM_LARK;
  r->pub.kind = CG_KIND_CARD_ACTION;
  r->pub.format = CG_FORMAT_LARK_LEGACY;
  r->pub.transport = CG_TRANSPORT_HTTP;
  r->pub.message_id = "om_fuzz";
  r->pub.open_id = "ou_fuzz";
  r->pub.user_id = "eu_fuzz";
  r->pub.tenant_key = "tenant";
  r->pub.chat_id = "oc_fuzz";
  r->pub.value_json = r->value_json;
  return &r->pub;
}

static void check_outcome(int rc, const cg__wf_outcome *o) {
  if (rc != 0) {
    cg_assert(!o->reply && !o->new_card && !o->new_state && !o->new_vars);
    return;
  }
  cg_assert(o->reply && o->new_state && json_is_object(o->new_vars) &&
            json_is_object(o->new_card));
  cg_assert(o->changed == 0 || o->changed == 1);
  cg_assert(memchr(o->result, '\0', sizeof o->result) != NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *text = malloc(size + 1);
  if (!text) return 0;
  memcpy(text, data, size);
  text[size] = '\0';
  char eb[512];
  int err = 0;
  cg_workflow *wf =
      cg_workflow_load_string(text, "<fuzz>", eb, sizeof eb, &err);
  free(text);
  if (!wf) {
    cg_assert(err != 0);
    cg_assert(strncmp(eb, "<fuzz>: ", 8) == 0 || err == CG_ENOMEM);
    return 0;
  }
  cg_assert(err == 0 && cg_workflow_name(wf) && cg_workflow_match(wf));

  json_t *initial = cg__workflow_initial_card(wf, NOW);
  json_decref(initial);

  cg_action *a = make_action();
  if (!a) {
    cg_workflow_free(wf);
    return 0;
  }
  cg__wf_outcome o;
  char msg[256];
  int rc = cg__workflow_step(wf, NULL, a, NOW, &o, msg, sizeof msg);
  check_outcome(rc, &o);
  if (rc == 0) {
    cg_card_record cur;
    memset(&cur, 0, sizeof cur);
    cur.message_id = (char *)"om_fuzz";
    cur.platform = (char *)"lark";
    cur.workflow = (char *)cg_workflow_name(wf);
    cur.state = o.new_state;
    cur.card_json = json_dumps(o.new_card, JSON_COMPACT);
    cur.vars_json = json_dumps(o.new_vars, JSON_COMPACT);
    cur.version = 1;
    if (cur.card_json && cur.vars_json) {
      cg__wf_outcome o2;
      rc = cg__workflow_step(wf, &cur, a, NOW + 1000, &o2, msg, sizeof msg);
      check_outcome(rc, &o2);
      cg__wf_outcome_clear(&o2);
    }
    free(cur.card_json);
    free(cur.vars_json);
  }
  cg__wf_outcome_clear(&o);
  cg__action_free(CG__ACTION_REC(a));
  cg_workflow_free(wf);
  return 0;
}
