/* The inside of a cg_reply (built through reply.h, read by the codecs). */
#ifndef CG_REPLY_INT_H
#define CG_REPLY_INT_H

#include <jansson.h>

#include "cardgate/reply.h"

struct cg_reply {
  json_t *card;            /* raw card object, or NULL */
  char *card_text;         /* card as compact JSON when already serialized
                              (cg__reply_card_take), else NULL: encoders may
                              use it instead of serializing card again */
  size_t card_text_len;
  char *template_id;       /* template card, or NULL */
  char *template_version;
  json_t *template_vars;   /* object or NULL */
  char *toast_type;        /* toast, or NULL */
  char *toast_content;
  json_t *toast_i18n;      /* object locale → text, or NULL */
  int custom_status;       /* > 0: answer exactly custom_status + custom_body */
  char *custom_body;
  json_t *private_vars;    /* DingTalk userPrivateData variables, or NULL */
  char *inline_title;      /* url.preview.get inline, or NULL */
  char *inline_url;
};

/* A card reply that takes ownership of card (a JSON object reference) and,
 * when not NULL, of text (its compact serialization, malloc'd). NULL on
 * ENOMEM (both are released then). For the engine's own cards: no parse. */
cg_reply *cg__reply_card_take(json_t *card, char *text);

/* A reply made of template variables only (takes the reference; NULL on
 * ENOMEM, vars released then): how a workflow answers on DingTalk, whose
 * cards are templates. */
cg_reply *cg__reply_vars_take(json_t *vars);

/* 1 when the reply changes nothing (no card, template, toast, inline, custom). */
int cg__reply_is_keep(const cg_reply *r);

#endif
