/* cardgate — what a handler answers.
 *
 * A cg_reply is built by the handler and handed to cg_respond(), which takes
 * ownership. cardgate encodes it for the platform and format the action came
 * in (see docs/replies.md for the exact bytes per format):
 *
 *   reply                 Lark legacy (HTTP)              Lark schema 2.0
 *   keep                  200 {}                           200 {}
 *   card                  200 <card JSON>                  200 {"card":{"type":"raw","data":…}}
 *   template              (not supported → keep, logged)   200 {"card":{"type":"template",…}}
 *   toast                 400 {"content":…,"i18n":{…}}     200 {"toast":{…}}
 *   card + toast          200 <card JSON> (toast dropped)  200 {"toast":…,"card":…}
 *   custom status + body  that status, that body           that status, that body
 */
#ifndef CARDGATE_REPLY_H
#define CARDGATE_REPLY_H

#include "error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cg_reply cg_reply;

/* Keep the card as it is. Returns NULL only when out of memory. Caller owns
 * the result (cg_reply_free, or hand it to cg_respond). */
CG_EXTERN cg_reply *cg_reply_keep(void);

/* Replace the card with card_json (a JSON object: a 1.0 card with
 * config/header/elements, or a 2.0 card). card_json is copied.
 * Returns NULL and sets *err to CG_EMALFORMED when card_json is not a JSON
 * object, CG_EINVAL when card_json is NULL. */
CG_EXTERN cg_reply *cg_reply_card(const char *card_json, int *err);

/* Replace the card with a card template (schema 2.0 only).
 * vars_json: JSON object of template variables, or NULL. version may be NULL.
 * Strings are copied. NULL + *err = CG_EINVAL / CG_EMALFORMED on bad input. */
CG_EXTERN cg_reply *cg_reply_template(const char *template_id,
                                      const char *vars_json,
                                      const char *version, int *err);

/* A toast with no card change. type: "info", "success", "error", "warning".
 * Copies both strings. NULL + *err on NULL arguments. */
CG_EXTERN cg_reply *cg_reply_toast(const char *type, const char *content,
                                   int *err);

/* Add (or replace) the toast on any reply; add one translation with
 * cg_reply_toast_i18n (locale "zh_cn", "en_us", "ja_jp" …). Strings copied.
 * Return 0, CG_EINVAL or CG_ENOMEM. */
CG_EXTERN int cg_reply_set_toast(cg_reply *r, const char *type,
                                 const char *content);
CG_EXTERN int cg_reply_toast_i18n(cg_reply *r, const char *locale,
                                  const char *text);

/* Answer with exactly this HTTP status and body (any bytes, sent with
 * Content-Type: application/json). status must be 200..599. body copied.
 * NULL + *err = CG_EINVAL on a bad status or NULL body. */
CG_EXTERN cg_reply *cg_reply_custom(int status, const char *body, int *err);

/* url.preview.get: set the inline preview title (and optional url for all
 * clients). Strings copied. 0, CG_EINVAL or CG_ENOMEM. */
CG_EXTERN int cg_reply_set_inline(cg_reply *r, const char *title,
                                  const char *url);

/* DingTalk: variables shown to the clicking user only (the callback
 * response's userPrivateData.cardParamMap, merged by key; dingtalk.md
 * §3.2). vars_json: a JSON object, copied (values become strings as for
 * template variables). On a DingTalk card a template reply's variables are
 * the shared ones (cardData). Lark has no equivalent: ignored there.
 * 0, CG_EINVAL (NULL argument), CG_EMALFORMED (not a JSON object),
 * CG_ENOMEM. */
CG_EXTERN int cg_reply_private_vars(cg_reply *r, const char *vars_json);

/* Frees a reply that was not handed to cg_respond. Accepts NULL. */
CG_EXTERN void cg_reply_free(cg_reply *r);

#ifdef __cplusplus
}
#endif
#endif /* CARDGATE_REPLY_H */
