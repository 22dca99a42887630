/* cardgate — the normalized action.
 *
 * One cg_action describes one interaction, whatever the platform, format or
 * transport it came over: who did it, on which card, with which component and
 * value. Every pointer in it is borrowed: valid until the handler has
 * responded (cg_respond) — copy what you need to keep. Absent fields are NULL.
 */
#ifndef CARDGATE_ACTION_H
#define CARDGATE_ACTION_H

#include <stdint.h>

#include "error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { CG_PLATFORM_LARK = 1, CG_PLATFORM_DINGTALK = 2 } cg_platform;

typedef enum {
  CG_KIND_CARD_ACTION = 1, /* a click, selection, input or form submit */
  CG_KIND_URL_PREVIEW = 2, /* Lark url.preview.get */
  CG_KIND_MESSAGE = 3      /* a chat message to the bot (DingTalk chatbot) */
} cg_kind;

typedef enum {
  CG_FORMAT_LARK_LEGACY = 1, /* Lark legacy card callback (card.action.trigger_v1) */
  CG_FORMAT_LARK_V2 = 2,     /* Lark schema 2.0 callback */
  CG_FORMAT_DINGTALK = 3
} cg_format;

typedef enum {
  CG_TRANSPORT_HTTP = 1,
  CG_TRANSPORT_LARK_WS = 2,
  CG_TRANSPORT_DINGTALK_STREAM = 3,
  CG_TRANSPORT_EMBEDDED = 4 /* fed by the user's own server */
} cg_transport;

typedef struct cg_action {
  cg_platform platform;
  cg_kind kind;
  cg_format format;
  cg_transport transport;

  const char *event_id;   /* Lark 2.0 header.event_id; NULL for legacy callbacks */
  const char *event_type; /* "card.action.trigger", "url.preview.get"; NULL for legacy */
  const char *app_id;     /* Lark 2.0 header.app_id */
  const char *tenant_key; /* operator's tenant */

  /* operator */
  const char *open_id;
  const char *user_id;
  const char *union_id;

  /* card */
  const char *message_id; /* open_message_id (Lark) / outTrackId (DingTalk) */
  const char *chat_id;    /* open_chat_id */
  const char *host;       /* Lark 2.0: im_message, im_top_notice … */

  /* component */
  const char *tag;         /* button, select_static, input, form … */
  const char *name;        /* component name (forms) */
  const char *option;      /* selected option */
  const char *input_value; /* input component text */
  const char *timezone;    /* pickers */
  int checked;             /* checker: 0 or 1; -1 when absent */
  const char *value_json;  /* action.value as compact JSON ("{}" when absent) */
  const char *form_value_json; /* action.form_value as compact JSON, or NULL */
  const char *options_json;    /* action.options (JSON array), or NULL */

  const char *update_token; /* card-update token "c-…" (delayed update), or NULL */

  /* url.preview.get */
  const char *url;
  const char *preview_token;

  int64_t received_at_ms; /* wall clock when cardgate received it */
} cg_action;

/* A top-level key of action.value as a string: the string itself for a JSON
 * string, the JSON text for a number or boolean ("42", "true"); NULL when the
 * key is absent, null, an object or an array, or the value is not an object.
 * The result is borrowed like the action's fields. */
CG_EXTERN const char *cg_action_value(const cg_action *a, const char *key);

/* The decrypted request body as received (compact JSON), borrowed. */
CG_EXTERN const char *cg_action_raw_json(const cg_action *a);

CG_EXTERN const char *cg_platform_name(cg_platform p); /* "lark", "dingtalk" */
CG_EXTERN const char *cg_kind_name(cg_kind k); /* "card_action", "url_preview", "message" */
CG_EXTERN const char *cg_format_name(cg_format f); /* "lark_legacy", "lark_v2", "dingtalk" */

#ifdef __cplusplus
}
#endif
#endif /* CARDGATE_ACTION_H */
