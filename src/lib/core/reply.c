/* Handler replies (include/cardgate/reply.h, reply_int.h). A reply only
 * records what the handler wants; the codec of the action's platform turns
 * it into bytes (e.g. cg__lark_encode_reply). JSON arguments are parsed here,
 * once, so an invalid card is reported to the handler that built it rather
 * than surfacing as a platform error code later. Every string is checked to
 * be UTF-8 so the encoded answer is always valid JSON. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/common.h"
#include "reply_int.h"

static void set_err(int *err, int code) {
  if (err) *err = code;
}

/* 1 when s is valid UTF-8 (RFC 3629: no overlongs, surrogates or code points
 * above U+10FFFF). */
static int utf8_valid(const char *s) {
  const unsigned char *p = (const unsigned char *)s;
  while (*p) {
    unsigned c = *p;
    if (c < 0x80) {
      p++;
      continue;
    }
    size_t len;
    unsigned v, min;
    if (c >= 0xc2 && c <= 0xdf)
      len = 2, min = 0x80, v = c & 0x1f;
    else if (c >= 0xe0 && c <= 0xef)
      len = 3, min = 0x800, v = c & 0x0f;
    else if (c >= 0xf0 && c <= 0xf4)
      len = 4, min = 0x10000, v = c & 0x07;
    else
      return 0;
    for (size_t i = 1; i < len; i++) {
      if ((p[i] & 0xc0) != 0x80) return 0; /* also stops at the NUL */
      v = v << 6 | (p[i] & 0x3f);
    }
    if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff)) return 0;
    p += len;
  }
  return 1;
}

/* A copy of s when it is valid UTF-8; *rc = CG_EINVAL / CG_ENOMEM else. */
static char *dup_text(const char *s, int *rc) {
  if (!s || !utf8_valid(s)) {
    *rc = CG_EINVAL;
    return NULL;
  }
  char *d = cg_strdup(s);
  *rc = d ? 0 : CG_ENOMEM;
  return d;
}

/* Parses text as a JSON object. CG_EMALFORMED when it is not one. */
static json_t *load_object(const char *text, int *rc) {
  json_error_t je;
  json_t *j = json_loads(text, JSON_REJECT_DUPLICATES, &je);
  if (!j) {
    *rc = json_error_code(&je) == json_error_out_of_memory ? CG_ENOMEM
                                                           : CG_EMALFORMED;
    return NULL;
  }
  if (!json_is_object(j)) {
    json_decref(j);
    *rc = CG_EMALFORMED;
    return NULL;
  }
  *rc = 0;
  return j;
}

cg_reply *cg_reply_keep(void) {
  return calloc(1, sizeof(cg_reply));
}

cg_reply *cg_reply_card(const char *card_json, int *err) {
  if (!card_json) {
    set_err(err, CG_EINVAL);
    return NULL;
  }
  int rc;
  json_t *card = load_object(card_json, &rc);
  if (!card) {
    set_err(err, rc);
    return NULL;
  }
  cg_reply *r = cg_reply_keep();
  if (!r) {
    json_decref(card);
    set_err(err, CG_ENOMEM);
    return NULL;
  }
  r->card = card;
  set_err(err, 0);
  return r;
}

cg_reply *cg_reply_template(const char *template_id, const char *vars_json,
                            const char *version, int *err) {
  int rc = 0;
  if (!template_id || !template_id[0]) {
    set_err(err, CG_EINVAL);
    return NULL;
  }
  cg_reply *r = cg_reply_keep();
  if (!r) {
    set_err(err, CG_ENOMEM);
    return NULL;
  }
  r->template_id = dup_text(template_id, &rc);
  if (!rc && version) r->template_version = dup_text(version, &rc);
  if (!rc && vars_json) r->template_vars = load_object(vars_json, &rc);
  if (rc) {
    cg_reply_free(r);
    set_err(err, rc);
    return NULL;
  }
  set_err(err, 0);
  return r;
}

cg_reply *cg_reply_toast(const char *type, const char *content, int *err) {
  cg_reply *r = cg_reply_keep();
  if (!r) {
    set_err(err, CG_ENOMEM);
    return NULL;
  }
  int rc = cg_reply_set_toast(r, type, content);
  if (rc) {
    cg_reply_free(r);
    set_err(err, rc);
    return NULL;
  }
  set_err(err, 0);
  return r;
}

/* Replaces the toast; translations of the previous toast are dropped, since
 * they translated another text. */
int cg_reply_set_toast(cg_reply *r, const char *type, const char *content) {
  if (!r || !type || !type[0] || !content) return CG_EINVAL;
  int rc;
  char *t = dup_text(type, &rc);
  if (!t) return rc;
  char *c = dup_text(content, &rc);
  if (!c) {
    free(t);
    return rc;
  }
  free(r->toast_type);
  free(r->toast_content);
  json_decref(r->toast_i18n);
  r->toast_type = t;
  r->toast_content = c;
  r->toast_i18n = NULL;
  return 0;
}

/* Needs a toast first (CG_EINVAL otherwise): a translation of nothing would
 * be dropped silently by every encoder. */
int cg_reply_toast_i18n(cg_reply *r, const char *locale, const char *text) {
  if (!r || !r->toast_content || !locale || !locale[0] || !text ||
      !utf8_valid(locale) || !utf8_valid(text))
    return CG_EINVAL;
  if (!r->toast_i18n && !(r->toast_i18n = json_object())) return CG_ENOMEM;
  json_t *s = json_string(text);
  if (!s || json_object_set_new(r->toast_i18n, locale, s) != 0)
    return CG_ENOMEM;
  return 0;
}

cg_reply *cg_reply_custom(int status, const char *body, int *err) {
  if (status < 200 || status > 599 || !body) {
    set_err(err, CG_EINVAL);
    return NULL;
  }
  cg_reply *r = cg_reply_keep();
  if (!r || !(r->custom_body = cg_strdup(body))) {
    cg_reply_free(r);
    set_err(err, CG_ENOMEM);
    return NULL;
  }
  r->custom_status = status;
  set_err(err, 0);
  return r;
}

int cg_reply_private_vars(cg_reply *r, const char *vars_json) {
  if (!r || !vars_json) return CG_EINVAL;
  int rc = 0;
  json_t *v = load_object(vars_json, &rc);
  if (!v) return rc;
  json_decref(r->private_vars);
  r->private_vars = v;
  return 0;
}

int cg_reply_set_inline(cg_reply *r, const char *title, const char *url) {
  if (!r || !title) return CG_EINVAL;
  int rc;
  char *t = dup_text(title, &rc);
  if (!t) return rc;
  char *u = NULL;
  if (url && !(u = dup_text(url, &rc))) {
    free(t);
    return rc;
  }
  free(r->inline_title);
  free(r->inline_url);
  r->inline_title = t;
  r->inline_url = u;
  return 0;
}

void cg_reply_free(cg_reply *r) {
  if (!r) return;
  json_decref(r->card);
  free(r->card_text);
  free(r->template_id);
  free(r->template_version);
  json_decref(r->template_vars);
  json_decref(r->private_vars);
  free(r->toast_type);
  free(r->toast_content);
  json_decref(r->toast_i18n);
  free(r->custom_body);
  free(r->inline_title);
  free(r->inline_url);
  free(r);
}

cg_reply *cg__reply_card_take(json_t *card, char *text) {
  cg_reply *r = cg_reply_keep();
  if (!r || !card) {
    free(r);
    json_decref(card);
    free(text);
    return NULL;
  }
  r->card = card;
  r->card_text = text;
  r->card_text_len = text ? strlen(text) : 0;
  return r;
}

cg_reply *cg__reply_vars_take(json_t *vars) {
  cg_reply *r = vars ? cg_reply_keep() : NULL;
  if (!r) {
    json_decref(vars);
    return NULL;
  }
  r->template_vars = vars;
  return r;
}

int cg__reply_is_keep(const cg_reply *r) {
  return !r || (!r->card && !r->template_id && !r->template_vars && !r->private_vars && !r->toast_content &&
                !r->toast_type && r->custom_status <= 0 && !r->inline_title);
}
