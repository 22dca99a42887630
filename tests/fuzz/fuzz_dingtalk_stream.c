/* libFuzzer target for the DingTalk Stream codec
 * (src/lib/codec/dingtalk_stream.c).
 *
 * Input: one flag byte, then one text frame as the gateway would send it.
 *   bits 0-2  the reply to encode for an action: keep, template + vars,
 *             template + toast, card, toast, custom, NULL, template (no vars)
 *   bit  3    also feed the frame bytes to cg__dt_open_response
 * Flow: frame decode → ACK (ping echo, or a generic ACK carrying the data)
 * → decode_action → encode_reply → ACK of the reply.
 * Oracles besides the sanitizers: a failed decode leaves nothing behind and
 * says why; every ACK is valid JSON whose headers, messageId and data read
 * back to exactly what went in (our JSON.stringify-style writer agrees with
 * jansson's reader); value_json is jansson's compact dump of the value;
 * raw_json is the data string; a card callback's answer is valid JSON of the
 * {"response":…} shape; cardParamMap values are all strings. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/limits.h"
#include "lib/codec/dingtalk_stream.h"
#include "lib/core/reply_int.h"

#define NOW INT64_C(1700000000000)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static json_t *must_parse(const char *s, size_t n) {
  json_t *j = json_loadb(s, n, JSON_DECODE_ANY, NULL);
  if (!j) abort();
  return j;
}

/* The ACK reads back: code, messageId (or the echoed headers), data. */
static void check_ack(const cg_buf *b, const cg__dt_frame *f, int ping,
                      const char *d, size_t dl) {
  json_t *j = must_parse(b->data, b->len);
  if (!json_is_integer(json_object_get(j, "code"))) abort();
  json_t *h = json_object_get(j, "headers");
  if (ping) {
    if (!json_equal(h, f->headers)) abort();
  } else {
    json_t *mid = json_object_get(h, "messageId");
    if (!json_is_string(mid) || strcmp(json_string_value(mid), f->message_id))
      abort();
  }
  json_t *jd = json_object_get(j, "data");
  if (d) {
    if (!json_is_string(jd) || json_string_length(jd) != dl ||
        memcmp(json_string_value(jd), d, dl) != 0)
      abort();
  }
  json_decref(j);
}

static cg_reply *make_reply(unsigned which, const char *vars) {
  int err;
  cg_reply *r = NULL;
  switch (which) {
    case 0:
      r = cg_reply_keep();
      break;
    case 1:
      r = cg_reply_template("tpl", vars, NULL, &err);
      break;
    case 2:
      r = cg_reply_template("tpl", "{\"a\":[1,{\"b\":\"\\u0001/\"}],\"x\":1e300}",
                            NULL, &err);
      if (r) cg_reply_set_toast(r, "info", "t");
      break;
    case 3:
      r = cg_reply_card("{\"elements\":[]}", &err);
      break;
    case 4:
      r = cg_reply_toast("error", "no", &err);
      break;
    case 5:
      r = cg_reply_custom(200, "{\"response\":{\"cardData\":{}}}", &err);
      break;
    case 6:
      r = NULL;
      break;
    default:
      r = cg_reply_template("tpl", NULL, NULL, &err);
      break;
  }
  return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  unsigned flags = data[0];
  size_t n = size - 1;
  /* The frame in its own exact-size block so ASan sees any overread. */
  char *buf = malloc(n ? n : 1);
  if (!buf) return 0;
  if (n) memcpy(buf, data + 1, n);

  if (flags & 8) {
    char *ep = NULL, *tk = NULL, err[256];
    if (cg__dt_open_response(buf, n, &ep, &tk, err, sizeof err) == 0) {
      if (!ep || !tk || !*ep || !*tk) abort();
      char *u = cg__dt_connect_url(ep, tk);
      if (!u || strncmp(u, ep, strlen(ep)) != 0) abort();
      free(u);
    } else if (ep || tk) {
      abort();
    }
    free(ep);
    free(tk);
  }

  cg__dt_frame f;
  char err[256] = "";
  int rc = cg__dt_frame_decode(buf, n, &f, err, sizeof err);
  if (rc) {
    if (f.root || f.headers || f.topic || f.data || !err[0]) abort();
    if (rc != CG_EMALFORMED && rc != CG_ETOOBIG) abort();
    free(buf);
    return 0;
  }
  if (!f.topic || !f.message_id || !f.data || !json_is_object(f.headers) ||
      strlen(f.message_id) > CG_LIMIT_ID)
    abort();

  cg_buf ack;
  cg_buf_init(&ack, 8u << 20);
  if (f.type == CG__DT_SYSTEM) {
    if (cg__dt_ack_ping(&f, &ack) != 0) abort();
    int has_data = json_object_get(f.root, "data") != NULL;
    check_ack(&ack, &f, 1, has_data ? f.data : NULL, f.data_len);
  }
  cg_buf_reset(&ack);
  if (cg__dt_ack(&f, 200, err, f.data, f.data_len, &ack) != 0) abort();
  check_ack(&ack, &f, 0, f.data, f.data_len);

  cg__action_rec *rec = NULL;
  rc = cg__dt_decode_action(&f, NOW, &rec, err, sizeof err);
  if (rc) {
    if (rec || !err[0]) abort();
    if (rc != CG_EMALFORMED && rc != CG_EUNSUPPORTED && rc != CG_ENOMEM)
      abort();
  } else {
    const cg_action *a = &rec->pub;
    if (!a->value_json || !cg_action_raw_json(a) || !a->message_id ||
        !a->event_id)
      abort();
    if (strlen(cg_action_raw_json(a)) != f.data_len ||
        memcmp(cg_action_raw_json(a), f.data, f.data_len) != 0)
      abort();
    json_decref(must_parse(a->value_json, strlen(a->value_json)));
    if (rec->value) {
      char *vd = json_dumps(rec->value, JSON_COMPACT | JSON_ENCODE_ANY);
      if (!vd || strcmp(vd, a->value_json) != 0) abort();
      free(vd);
      json_t *m = cg__dt_param_map(rec->value);
      if (!m) abort();
      const char *k;
      json_t *v;
      json_object_foreach(m, k, v) if (!json_is_string(v)) abort();
      json_decref(m);
    }
    (void)cg_action_value(a, "k");
    (void)cg_action_value(a, "n");

    cg_reply *r = make_reply(flags & 7, a->value_json);
    cg_buf body;
    cg_buf_init(&body, 8u << 20);
    char dropped[128];
    if (cg__dt_encode_reply(a, r, &body, dropped) != 0) abort();
    json_t *j = must_parse(body.data, body.len);
    if (!json_is_object(j) || !json_object_get(j, "response")) abort();
    json_t *map = json_object_get(
        json_object_get(json_object_get(j, "response"), "cardData"),
        "cardParamMap");
    const char *k;
    json_t *v;
    json_object_foreach(map, k, v) if (!json_is_string(v)) abort();
    json_decref(j);
    cg_buf_reset(&ack);
    if (cg__dt_ack(&f, 200, "OK", body.data, body.len, &ack) != 0) abort();
    check_ack(&ack, &f, 0, body.data, body.len);
    cg_buf_free(&body);
    cg_reply_free(r);
    cg__action_free(rec);
  }
  cg_buf_free(&ack);
  cg__dt_frame_clear(&f);
  free(buf);
  return 0;
}
