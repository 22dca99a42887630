/* The inside of a cg_reply (built through reply.h, read by the codecs). */
#ifndef CG_REPLY_INT_H
#define CG_REPLY_INT_H

#include <jansson.h>

#include "cardgate/reply.h"

struct cg_reply {
  json_t *card;            /* raw card object, or NULL */
  char *template_id;       /* template card, or NULL */
  char *template_version;
  json_t *template_vars;   /* object or NULL */
  char *toast_type;        /* toast, or NULL */
  char *toast_content;
  json_t *toast_i18n;      /* object locale → text, or NULL */
  int custom_status;       /* > 0: answer exactly custom_status + custom_body */
  char *custom_body;
  char *inline_title;      /* url.preview.get inline, or NULL */
  char *inline_url;
};

/* 1 when the reply changes nothing (no card, template, toast, inline, custom). */
int cg__reply_is_keep(const cg_reply *r);

#endif
