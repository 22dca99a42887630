/* The normalized action (include/cardgate/action.h) and its record
 * (action_int.h): the record owns the decoded JSON tree every borrowed string
 * of the public struct points into. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "action_int.h"

cg__action_rec *cg__action_new(void) {
  cg__action_rec *r = calloc(1, sizeof *r);
  if (r) r->pub.checked = -1;
  return r;
}

void cg__action_free(cg__action_rec *r) {
  if (!r) return;
  json_decref(r->root);
  json_decref(r->strcache);
  free(r->raw_json);
  free(r->value_json);
  free(r->form_value_json);
  free(r->options_json);
  free(r);
}

const char *cg_action_value(const cg_action *a, const char *key) {
  if (!a || !key) return NULL;
  cg__action_rec *rec = CG__ACTION_REC(a);
  json_t *v =
      json_is_object(rec->value) ? json_object_get(rec->value, key) : NULL;
  if (json_is_string(v)) return json_string_value(v);
  if (json_is_true(v)) return "true";
  if (json_is_false(v)) return "false";
  if (!json_is_number(v)) return NULL;

  /* Numbers: their JSON text, made once and kept with the action so the
   * pointer stays valid as long as the action. */
  json_t *cached = rec->strcache ? json_object_get(rec->strcache, key) : NULL;
  if (cached) return json_string_value(cached);
  if (!rec->strcache && !(rec->strcache = json_object())) return NULL;
  char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
  if (!text) return NULL;
  json_t *s = json_string(text);
  free(text);
  if (!s || json_object_set_new(rec->strcache, key, s) != 0) return NULL;
  return json_string_value(s);
}

const char *cg_action_raw_json(const cg_action *a) {
  return a ? CG__ACTION_REC(a)->raw_json : NULL;
}

const char *cg_platform_name(cg_platform p) {
  switch (p) {
    case CG_PLATFORM_LARK:
      return "lark";
    case CG_PLATFORM_DINGTALK:
      return "dingtalk";
  }
  return "unknown";
}

const char *cg_kind_name(cg_kind k) {
  switch (k) {
    case CG_KIND_CARD_ACTION:
      return "card_action";
    case CG_KIND_URL_PREVIEW:
      return "url_preview";
    case CG_KIND_MESSAGE:
      return "message";
  }
  return "unknown";
}

const char *cg_format_name(cg_format f) {
  switch (f) {
    case CG_FORMAT_LARK_LEGACY:
      return "lark_legacy";
    case CG_FORMAT_LARK_V2:
      return "lark_v2";
    case CG_FORMAT_DINGTALK:
      return "dingtalk";
  }
  return "unknown";
}
