/* The DingTalk Stream codec (src/lib/codec/dingtalk_stream.c): frames,
 * hostile frames, ACK bytes (literals derived from the official Node SDK
 * dingtalk-stream 2.1.5, dist/client.mjs: JSON.stringify of the objects its
 * onSystem / onEvent / send build), the connection-open exchange, card
 * callbacks and bot messages as cg_action, replies, cardParamMap. */
// clang-format off
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
// clang-format on

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cardgate/error.h"
#include "cardgate/reply.h"
#include "common/common.h"
#include "common/limits.h"
#include "lib/codec/dingtalk_stream.h"
#include "lib/core/reply_int.h"

#define NOW INT64_C(1700000000000)

/* A ping as the gateway sends it (dingtalk.md §2.1, §2.4). */
static const char PING[] =
    "{\"specVersion\":\"1.0\",\"type\":\"SYSTEM\",\"headers\":{"
    "\"contentType\":\"application/json\",\"messageId\":"
    "\"5ed8bf8f_66_18adc2dd3a1_8b8c\",\"time\":\"1695696063516\",\"topic\":"
    "\"ping\"},\"data\":\"{\\\"opaque\\\":\\\"0c8e4e5e-3f5b\\\"}\"}";

static const char DISCONNECT[] =
    "{\"specVersion\":\"1.0\",\"type\":\"SYSTEM\",\"headers\":{"
    "\"contentType\":\"application/json\",\"time\":\"1695696063516\","
    "\"topic\":\"disconnect\"},\"data\":\"{\\\"reason\\\":\\\"connection is "
    "expired\\\"}\"}";

static const char EVENT[] =
    "{\"specVersion\":\"1.0\",\"type\":\"EVENT\",\"headers\":{"
    "\"appId\":\"app-1\",\"connectionId\":\"c1\",\"contentType\":"
    "\"application/json\",\"eventBornTime\":\"1690000000000\",\"eventCorpId\":"
    "\"ding9f\",\"eventId\":\"ev-1\",\"eventType\":\"chat_update_title\","
    "\"eventUnifiedAppId\":\"u1\",\"messageId\":\"ev_1\",\"time\":"
    "\"1690000000001\",\"topic\":\"*\"},\"data\":\"{\\\"title\\\":\\\"x\\\"}"
    "\"}";

/* ---- helpers --------------------------------------------------------------
 */

/* A frame around data (a JSON text put in as a string), built with jansson
 * so the double encoding is exact. */
static char *frame_text(const char *type, const char *topic, const char *mid,
                        const char *data) {
  json_t *h =
      json_pack("{s:s,s:s}", "contentType", "application/json", "topic", topic);
  if (mid) json_object_set_new(h, "messageId", json_string(mid));
  json_t *f = json_pack("{s:s,s:s,s:o}", "specVersion", "1.0", "type", type,
                        "headers", h);
  if (data) json_object_set_new(f, "data", json_string(data));
  char *s = json_dumps(f, JSON_COMPACT);
  json_decref(f);
  assert_non_null(s);
  return s;
}

/* A card callback data object (§3.1) with content (and value) strings. */
static char *card_data(const char *content, int with_value,
                       const char *extra_members) {
  json_t *d = json_pack("{s:s,s:s,s:s,s:s,s:i,s:s,s:s,s:s}", "extension", "{}",
                        "corpId", "ding123", "outTrackId", "track-1", "userId",
                        "user-1", "userIdType", 1, "spaceType", "im", "spaceId",
                        "cid123==", "type", "actionCallback");
  if (content) json_object_set_new(d, "content", json_string(content));
  if (content && with_value)
    json_object_set_new(d, "value", json_string(content));
  if (extra_members) {
    json_t *x = json_loads(extra_members, 0, NULL);
    assert_non_null(x);
    json_object_update(d, x);
    json_decref(x);
  }
  char *s = json_dumps(d, JSON_COMPACT);
  json_decref(d);
  return s;
}

static int decode(const char *text, cg__dt_frame *f) {
  char err[256];
  return cg__dt_frame_decode(text, strlen(text), f, err, sizeof err);
}

/* Decodes a CALLBACK frame on topic with data into an action. */
static int decode_cb(const char *topic, const char *data, cg__action_rec **out,
                     char *err, size_t errlen) {
  char *t = frame_text("CALLBACK", topic, "cb_1", data);
  cg__dt_frame f;
  int rc = cg__dt_frame_decode(t, strlen(t), &f, err, errlen);
  free(t);
  assert_int_equal(rc, 0);
  rc = cg__dt_decode_action(&f, NOW, out, err, errlen);
  cg__dt_frame_clear(&f);
  return rc;
}

/* ---- frames ----------------------------------------------------------------
 */

static void test_frames_valid(void **state) {
  (void)state;
  cg__dt_frame f;
  assert_int_equal(decode(PING, &f), 0);
  assert_int_equal(f.type, CG__DT_SYSTEM);
  assert_string_equal(f.topic, "ping");
  assert_string_equal(f.message_id, "5ed8bf8f_66_18adc2dd3a1_8b8c");
  assert_string_equal(f.data, "{\"opaque\":\"0c8e4e5e-3f5b\"}");
  assert_int_equal(f.data_len, strlen(f.data));
  assert_true(json_is_object(f.headers));
  cg__dt_frame_clear(&f);
  assert_null(f.root);

  /* disconnect: no messageId is fine for SYSTEM */
  assert_int_equal(decode(DISCONNECT, &f), 0);
  assert_int_equal(f.type, CG__DT_SYSTEM);
  assert_string_equal(f.topic, "disconnect");
  assert_string_equal(f.message_id, "");
  cg__dt_frame_clear(&f);

  assert_int_equal(decode(EVENT, &f), 0);
  assert_int_equal(f.type, CG__DT_EVENT);
  assert_string_equal(f.topic, "*");
  assert_string_equal(f.message_id, "ev_1");
  cg__dt_frame_clear(&f);

  char *d = card_data("{\"cardPrivateData\":{\"actionIds\":[\"b\"]}}", 1, NULL);
  char *t = frame_text("CALLBACK", CG__DT_TOPIC_CARD, "cb_1", d);
  assert_int_equal(decode(t, &f), 0);
  assert_int_equal(f.type, CG__DT_CALLBACK);
  assert_string_equal(f.topic, CG__DT_TOPIC_CARD);
  assert_string_equal(f.data, d);
  cg__dt_frame_clear(&f);
  free(t);
  free(d);

  /* no data, no topic: "" */
  assert_int_equal(
      decode("{\"type\":\"SYSTEM\",\"headers\":{\"messageId\":\"m\"}}", &f), 0);
  assert_string_equal(f.topic, "");
  assert_string_equal(f.data, "");
  assert_int_equal(f.data_len, 0);
  cg__dt_frame_clear(&f);
  cg__dt_frame_clear(NULL);
}

static void test_frames_hostile(void **state) {
  (void)state;
  char mid300[301];
  memset(mid300, 'm', 300);
  mid300[300] = '\0';
  char long_id[400];
  snprintf(long_id, sizeof long_id,
           "{\"type\":\"CALLBACK\",\"headers\":{\"messageId\":\"%s\"},"
           "\"data\":\"{}\"}",
           mid300);
  const struct {
    const char *text;
    const char *why;
  } rows[] = {
      {"", "empty"},
      {"not json", "not JSON"},
      {"[1,2]", "array"},
      {"\"SYSTEM\"", "string"},
      {"{}", "missing type"},
      {"{\"headers\":{},\"data\":\"\"}", "missing type"},
      {"{\"type\":\"PING\",\"headers\":{\"messageId\":\"m\"}}", "bad type"},
      {"{\"type\":\"system\",\"headers\":{\"messageId\":\"m\"}}", "case"},
      {"{\"type\":3,\"headers\":{\"messageId\":\"m\"}}", "numeric type"},
      {"{\"type\":null,\"headers\":{}}", "null type"},
      {"{\"type\":\"EVENT\"}", "no headers"},
      {"{\"type\":\"EVENT\",\"headers\":\"h\"}", "headers string"},
      {"{\"type\":\"EVENT\",\"headers\":[\"messageId\"]}", "headers array"},
      {"{\"type\":\"EVENT\",\"headers\":{\"messageId\":\"m\",\"time\":17}}",
       "numeric header"},
      {"{\"type\":\"EVENT\",\"headers\":{\"messageId\":7}}", "numeric id"},
      {"{\"type\":\"EVENT\",\"headers\":{\"messageId\":\"m\",\"x\":null}}",
       "null header"},
      {"{\"type\":\"EVENT\",\"headers\":{\"messageId\":\"m\",\"x\":{}}}",
       "object header"},
      {"{\"type\":\"EVENT\",\"headers\":{\"messageId\":\"m\"},\"data\":1}",
       "data number"},
      {"{\"type\":\"EVENT\",\"headers\":{\"messageId\":\"m\"},\"data\":{}}",
       "data object"},
      {"{\"type\":\"EVENT\",\"headers\":{\"messageId\":\"m\"},\"data\":null}",
       "data null"},
      {"{\"type\":\"CALLBACK\",\"headers\":{\"topic\":\"t\"},\"data\":\"{}\"}",
       "no messageId"},
      {"{\"type\":\"CALLBACK\",\"headers\":{\"messageId\":\"\"}}",
       "empty messageId"},
      {"{\"type\":\"EVENT\",\"type\":\"EVENT\",\"headers\":{\"messageId\":"
       "\"m\"}}",
       "duplicate key"},
      {"{\"type\":\"EVENT\",\"headers\":{\"messageId\":\"m\"}} x",
       "trailing bytes"},
      {"{\"type\":\"EVENT\",\"headers\":{\"messageId\":\"m\\u0000x\"}}",
       "NUL in id"},
      {"{\"type\":\"EVENT\",\"headers\":{\"messageId\":\"\xff\"}}",
       "invalid UTF-8"},
      {long_id, "messageId 300 chars"},
  };
  for (size_t i = 0; i < CG_ARRAY_SIZE(rows); i++) {
    cg__dt_frame f;
    char err[256] = "";
    int rc = cg__dt_frame_decode(rows[i].text, strlen(rows[i].text), &f, err,
                                 sizeof err);
    if (rc != CG_EMALFORMED)
      fail_msg("row %zu (%s): rc %s", i, rows[i].why, cg_err_name(rc));
    assert_true(err[0] != '\0');
    assert_null(f.root);
    assert_null(f.headers);
  }
  cg__dt_frame f;
  char err[256];
  assert_int_equal(cg__dt_frame_decode(NULL, 0, &f, err, sizeof err),
                   CG_EMALFORMED);

  /* huge depth: refused before jansson recurses */
  size_t n = 200000;
  char *deep = malloc(n + 64);
  assert_non_null(deep);
  strcpy(deep, "{\"type\":\"EVENT\",\"headers\":{\"messageId\":\"m\"},\"x\":");
  size_t p = strlen(deep);
  memset(deep + p, '[', n - p);
  assert_int_equal(cg__dt_frame_decode(deep, n, &f, err, sizeof err),
                   CG_EMALFORMED);
  assert_non_null(strstr(err, "deeper"));
  /* 65 levels in a valid frame */
  p = strlen("{\"type\":\"EVENT\",\"headers\":{\"messageId\":\"m\"},\"x\":");
  for (int i = 0; i < 65; i++) deep[p++] = '[';
  for (int i = 0; i < 65; i++) deep[p++] = ']';
  deep[p++] = '}';
  assert_int_equal(cg__dt_frame_decode(deep, p, &f, err, sizeof err),
                   CG_EMALFORMED);
  free(deep);

  /* 2 MiB frame: over CG__DT_FRAME_MAX */
  size_t big = 2u * 1024 * 1024;
  char *huge = malloc(big);
  assert_non_null(huge);
  memset(huge, ' ', big);
  memcpy(huge, PING, strlen(PING));
  assert_int_equal(cg__dt_frame_decode(huge, big, &f, err, sizeof err),
                   CG_ETOOBIG);
  assert_null(f.root);
  /* exactly at the limit is parsed (whitespace is fine) */
  assert_int_equal(
      cg__dt_frame_decode(huge, CG__DT_FRAME_MAX, &f, err, sizeof err), 0);
  cg__dt_frame_clear(&f);
  free(huge);
}

static void test_frames_truncated(void **state) {
  (void)state;
  char *d = card_data(
      "{\"cardPrivateData\":{\"actionIds\":[\"b\"],\"params\":{\"k\":\"v\"}}}",
      1, NULL);
  char *full = frame_text("CALLBACK", CG__DT_TOPIC_CARD, "cb_1", d);
  free(d);
  const char *frames[] = {PING, DISCONNECT, EVENT, full};
  for (size_t k = 0; k < CG_ARRAY_SIZE(frames); k++) {
    size_t n = strlen(frames[k]);
    for (size_t i = 0; i < n; i++) {
      /* each prefix in its own exact-size block: ASan sees an overread */
      char *cut = malloc(i ? i : 1);
      assert_non_null(cut);
      memcpy(cut, frames[k], i);
      cg__dt_frame f;
      char err[256];
      int rc = cg__dt_frame_decode(cut, i, &f, err, sizeof err);
      if (rc != CG_EMALFORMED)
        fail_msg("frame %zu cut at %zu: %s", k, i, cg_err_name(rc));
      free(cut);
    }
    cg__dt_frame f;
    assert_int_equal(decode(frames[k], &f), 0);
    cg__dt_frame_clear(&f);
  }
  free(full);
}

/* ---- ACKs ------------------------------------------------------------------
 */

static void assert_buf(const cg_buf *b, const char *want) {
  if (strcmp(b->data ? b->data : "", want) != 0)
    fail_msg("got  %s\nwant %s", b->data ? b->data : "(null)", want);
  assert_int_equal(b->len, strlen(want));
}

static void test_ack_bytes(void **state) {
  (void)state;
  cg__dt_frame f;
  cg_buf b;
  cg_buf_init(&b, 1 << 20);

  /* onSystem "ping": {code:200, headers: downstream.headers, message:"OK",
   * data: downstream.data} */
  assert_int_equal(decode(PING, &f), 0);
  assert_int_equal(cg__dt_ack_ping(&f, &b), 0);
  assert_buf(&b,
             "{\"code\":200,\"headers\":{\"contentType\":\"application/json\","
             "\"messageId\":\"5ed8bf8f_66_18adc2dd3a1_8b8c\",\"time\":"
             "\"1695696063516\",\"topic\":\"ping\"},\"message\":\"OK\","
             "\"data\":\"{\\\"opaque\\\":\\\"0c8e4e5e-3f5b\\\"}\"}");
  cg__dt_frame_clear(&f);

  /* JS object key order (array indices first, ascending) and
   * JSON.stringify escapes (\b \f short, \u00xx lowercase, DEL, '/' and
   * non-ASCII raw); data re-escaped from its decoded value. */
  cg_buf_reset(&b);
  assert_int_equal(
      decode("{\"type\":\"SYSTEM\",\"headers\":{\"topic\":\"ping\",\"z\":"
             "\"1\",\"10\":\"a\",\"2\":\"b\",\"messageId\":\"m\\/1\","
             "\"x\\u0001\":\"\\b\\f\\u001F\x7f/\xc3\xa9\"},\"data\":"
             "\"{\\\"opaque\\\":\\\"\\\\\\\"q\\\\\\\"\\\"}\"}",
             &f),
      0);
  assert_int_equal(cg__dt_ack_ping(&f, &b), 0);
  assert_buf(&b,
             "{\"code\":200,\"headers\":{\"2\":\"b\",\"10\":\"a\",\"topic\":"
             "\"ping\",\"z\":\"1\",\"messageId\":\"m/1\",\"x\\u0001\":"
             "\"\\b\\f\\u001f\x7f/\xc3\xa9\"},\"message\":\"OK\",\"data\":"
             "\"{\\\"opaque\\\":\\\"\\\\\\\"q\\\\\\\"\\\"}\"}");
  cg__dt_frame_clear(&f);

  /* a ping without data: data undefined, dropped by JSON.stringify */
  cg_buf_reset(&b);
  assert_int_equal(
      decode("{\"type\":\"SYSTEM\",\"headers\":{\"topic\":\"ping\","
             "\"messageId\":\"m2\"}}",
             &f),
      0);
  assert_int_equal(cg__dt_ack_ping(&f, &b), 0);
  assert_buf(&b,
             "{\"code\":200,\"headers\":{\"topic\":\"ping\",\"messageId\":"
             "\"m2\"},\"message\":\"OK\"}");
  cg__dt_frame_clear(&f);

  /* send(messageId, {response:{}}) = socketCallBackResponse */
  char *t = frame_text("CALLBACK", CG__DT_TOPIC_CARD, "cb_1", "{}");
  assert_int_equal(decode(t, &f), 0);
  free(t);
  cg_buf_reset(&b);
  assert_int_equal(cg__dt_ack(&f, 200, "OK", "{\"response\":{}}", 15, &b), 0);
  assert_buf(&b,
             "{\"code\":200,\"headers\":{\"contentType\":\"application/json\","
             "\"messageId\":\"cb_1\"},\"message\":\"OK\",\"data\":"
             "\"{\\\"response\\\":{}}\"}");
  cg_buf_reset(&b);
  assert_int_equal(cg__dt_ack(&f, 500, "handler \"failed\"", "", 0, &b), 0);
  assert_buf(&b,
             "{\"code\":500,\"headers\":{\"contentType\":\"application/json\","
             "\"messageId\":\"cb_1\"},\"message\":\"handler \\\"failed\\\"\","
             "\"data\":\"\"}");
  cg_buf_reset(&b);
  assert_int_equal(cg__dt_ack(&f, 200, NULL, NULL, 0, &b), 0);
  assert_buf(&b,
             "{\"code\":200,\"headers\":{\"contentType\":\"application/json\","
             "\"messageId\":\"cb_1\"},\"message\":\"OK\"}");
  cg__dt_frame_clear(&f);

  /* onEvent: data = JSON.stringify(onEventReceived(msg)) */
  assert_int_equal(decode(EVENT, &f), 0);
  cg_buf data;
  cg_buf_init(&data, 4096);
  assert_int_equal(cg__dt_event_ack_data(1, NULL, &data), 0);
  assert_buf(&data, "{\"status\":\"SUCCESS\"}");
  cg_buf_reset(&b);
  assert_int_equal(cg__dt_ack(&f, 200, "OK", data.data, data.len, &b), 0);
  assert_buf(&b,
             "{\"code\":200,\"headers\":{\"contentType\":\"application/json\","
             "\"messageId\":\"ev_1\"},\"message\":\"OK\",\"data\":"
             "\"{\\\"status\\\":\\\"SUCCESS\\\"}\"}");
  cg_buf_reset(&data);
  assert_int_equal(cg__dt_event_ack_data(0, "try \"later\"\n", &data), 0);
  assert_buf(&data,
             "{\"status\":\"LATER\",\"message\":\"try \\\"later\\\"\\n\"}");
  cg_buf_free(&data);
  cg__dt_frame_clear(&f);

  /* 60000 index keys in reverse: sorted ascending, quickly */
  {
    cg_buf big;
    cg_buf_init(&big, CG__DT_FRAME_MAX);
    assert_int_equal(cg_buf_appends(&big, "{\"type\":\"SYSTEM\",\"headers\":{"),
                     0);
    for (int i = 59999; i >= 0; i--)
      assert_int_equal(cg_buf_appendf(&big, "\"%d\":\"x\",", i), 0);
    assert_int_equal(cg_buf_appends(&big, "\"topic\":\"ping\"}}"), 0);
    assert_int_equal(cg__dt_frame_decode(big.data, big.len, &f, NULL, 0), 0);
    cg_buf_reset(&b);
    assert_int_equal(cg__dt_ack_ping(&f, &b), 0);
    const char *want =
        "{\"code\":200,\"headers\":{\"0\":\"x\",\"1\":\"x\",\"2\":";
    assert_memory_equal(b.data, want, strlen(want));
    assert_non_null(strstr(b.data, "\"59999\":\"x\",\"topic\":\"ping\"},"));
    cg__dt_frame_clear(&f);
    cg_buf_free(&big);
  }

  /* a full buffer leaves no half-built output */
  cg_buf small;
  cg_buf_init(&small, 40);
  assert_int_equal(decode(PING, &f), 0);
  assert_int_equal(cg__dt_ack_ping(&f, &small), CG_ETOOBIG);
  assert_int_equal(small.len, 0);
  cg_buf_free(&small);
  cg__dt_frame_clear(&f);
  cg_buf_free(&b);
}

/* ---- connection open
 * --------------------------------------------------------- */

static void test_open_exchange(void **state) {
  (void)state;
  cg_buf b;
  cg_buf_init(&b, 4096);
  const char *topics[] = {CG__DT_TOPIC_CARD, CG__DT_TOPIC_BOT,
                          CG__DT_TOPIC_CARD, NULL};
  assert_int_equal(cg__dt_open_request("ding_id", "s\"ec", NULL, topics, 1, &b),
                   0);
  /* getEndpoint's {clientId, clientSecret, ua, subscriptions} */
  assert_buf(&b,
             "{\"clientId\":\"ding_id\",\"clientSecret\":\"s\\\"ec\",\"ua\":"
             "\"\",\"subscriptions\":[{\"type\":\"EVENT\",\"topic\":\"*\"},"
             "{\"type\":\"CALLBACK\",\"topic\":"
             "\"/v1.0/card/instances/callback\"},{\"type\":\"CALLBACK\","
             "\"topic\":\"/v1.0/im/bot/messages/get\"}]}");
  cg_buf_reset(&b);
  assert_int_equal(
      cg__dt_open_request("id", "sec", "cardgate/0.1", topics + 1, 0, &b), 0);
  assert_buf(&b,
             "{\"clientId\":\"id\",\"clientSecret\":\"sec\",\"ua\":"
             "\"cardgate/0.1\",\"subscriptions\":[{\"type\":\"CALLBACK\","
             "\"topic\":\"/v1.0/im/bot/messages/get\"},{\"type\":\"CALLBACK\","
             "\"topic\":\"/v1.0/card/instances/callback\"}]}");
  cg_buf_reset(&b);
  assert_int_equal(cg__dt_open_request("id", "sec", "", NULL, 0, &b), 0);
  assert_buf(&b,
             "{\"clientId\":\"id\",\"clientSecret\":\"sec\",\"ua\":\"\","
             "\"subscriptions\":[]}");
  assert_int_equal(cg__dt_open_request("", "sec", NULL, NULL, 1, &b),
                   CG_EINVAL);
  cg_buf_free(&b);

  char *ep, *tk, err[256];
  const char *ok =
      "{\"endpoint\":\"wss://wss-open-connection.dingtalk.com:443/connect\","
      "\"ticket\":\"6a7c-11ee\"}";
  assert_int_equal(
      cg__dt_open_response(ok, strlen(ok), &ep, &tk, err, sizeof err), 0);
  assert_string_equal(ep, "wss://wss-open-connection.dingtalk.com:443/connect");
  assert_string_equal(tk, "6a7c-11ee");
  free(ep);
  free(tk);
  static const char *const bad[] = {
      "{\"endpoint\":\"wss://x/connect\"}",
      "{\"ticket\":\"t\"}",
      "{\"endpoint\":\"\",\"ticket\":\"t\"}",
      "{\"endpoint\":\"wss://x\",\"ticket\":\"\"}",
      "{\"endpoint\":\"wss://x\",\"ticket\":7}",
      "{\"endpoint\":\"wss://x/a b\",\"ticket\":\"t\"}",
      "{\"endpoint\":\"wss://x/\\r\\nHost: evil\",\"ticket\":\"t\"}",
      "<xml>not json</xml>",
      "[\"wss://x\",\"t\"]",
      "",
  };
  for (size_t i = 0; i < CG_ARRAY_SIZE(bad); i++) {
    err[0] = '\0';
    ep = tk = (char *)"x";
    if (cg__dt_open_response(bad[i], strlen(bad[i]), &ep, &tk, err,
                             sizeof err) != CG_EMALFORMED)
      fail_msg("row %zu accepted", i);
    assert_null(ep);
    assert_null(tk);
    assert_true(err[0] != '\0');
  }

  char *u = cg__dt_connect_url("wss://h:443/connect", "6a7c-11ee_x.y~z");
  assert_string_equal(u, "wss://h:443/connect?ticket=6a7c-11ee_x.y~z");
  free(u);
  u = cg__dt_connect_url("ws://127.0.0.1:9/connect?region=cn", "a b/c+d=&?");
  assert_string_equal(u,
                      "ws://127.0.0.1:9/connect?region=cn&ticket=a%20b%2Fc%2Bd%"
                      "3D%26%3F");
  free(u);
  u = cg__dt_connect_url("wss://h/c", "\xe4\xb8\x80");
  assert_string_equal(u, "wss://h/c?ticket=%E4%B8%80");
  free(u);
  assert_null(cg__dt_connect_url(NULL, "t"));

  char *s = cg__dt_open_space_id(1, "cidXXXX==");
  assert_string_equal(s, "dtv1.card//IM_GROUP.cidXXXX==");
  free(s);
  s = cg__dt_open_space_id(0, "manager1234");
  assert_string_equal(s, "dtv1.card//IM_ROBOT.manager1234");
  free(s);
  assert_null(cg__dt_open_space_id(0, NULL));
}

/* ---- card callbacks
 * ----------------------------------------------------------- */

static void test_card_callback_shapes(void **state) {
  (void)state;
  char err[256];
  cg__action_rec *rec;

  /* Shape 1 (Stream sample): params inside cardPrivateData, value = copy */
  char *d = card_data(
      "{\"cardPrivateData\":{\"actionIds\":[\"approve_btn\",\"x\"],"
      "\"params\":{\"action\":\"approve\",\"n\":3,\"ok\":true}}}",
      1, NULL);
  assert_int_equal(decode_cb(CG__DT_TOPIC_CARD, d, &rec, err, sizeof err), 0);
  const cg_action *a = &rec->pub;
  assert_int_equal(a->platform, CG_PLATFORM_DINGTALK);
  assert_int_equal(a->kind, CG_KIND_CARD_ACTION);
  assert_int_equal(a->format, CG_FORMAT_DINGTALK);
  assert_int_equal(a->transport, CG_TRANSPORT_DINGTALK_STREAM);
  assert_string_equal(a->message_id, "track-1");
  assert_string_equal(a->user_id, "user-1");
  assert_string_equal(a->tenant_key, "ding123");
  assert_string_equal(a->chat_id, "cid123==");
  assert_string_equal(a->host, "im");
  assert_string_equal(a->name, "approve_btn");
  assert_string_equal(a->event_id, "cb_1");
  assert_string_equal(a->value_json,
                      "{\"action\":\"approve\",\"n\":3,\"ok\":true}");
  assert_string_equal(cg_action_value(a, "action"), "approve");
  assert_string_equal(cg_action_value(a, "n"), "3");
  assert_string_equal(cg_action_value(a, "ok"), "true");
  assert_string_equal(cg_action_raw_json(a), d);
  assert_int_equal(a->received_at_ms, NOW);
  assert_int_equal(a->checked, -1);
  cg__action_free(rec);
  free(d);

  /* Shape 2 (older HTTP doc): only value, params beside cardPrivateData */
  d = card_data(NULL, 0,
                "{\"value\":\"{\\\"cardPrivateData\\\":{\\\"actionIds\\\":"
                "[\\\"btn2\\\"]},\\\"params\\\":{\\\"k\\\":\\\"v2\\\"}}\"}");
  assert_int_equal(decode_cb(CG__DT_TOPIC_CARD, d, &rec, err, sizeof err), 0);
  a = &rec->pub;
  assert_string_equal(a->name, "btn2");
  assert_string_equal(a->value_json, "{\"k\":\"v2\"}");
  assert_string_equal(cg_action_value(a, "k"), "v2");
  cg__action_free(rec);
  free(d);

  /* params absent, actionIds absent */
  d = card_data("{\"cardPrivateData\":{}}", 0, NULL);
  assert_int_equal(decode_cb(CG__DT_TOPIC_CARD, d, &rec, err, sizeof err), 0);
  a = &rec->pub;
  assert_null(a->name);
  assert_string_equal(a->value_json, "{}");
  assert_null(cg_action_value(a, "k"));
  cg__action_free(rec);
  free(d);
  d = card_data("{}", 0, NULL);
  assert_int_equal(decode_cb(CG__DT_TOPIC_CARD, d, &rec, err, sizeof err), 0);
  assert_string_equal(rec->pub.value_json, "{}");
  cg__action_free(rec);
  free(d);

  /* content wins over value when both are present */
  d = card_data("{\"cardPrivateData\":{\"params\":{\"from\":\"content\"}}}", 0,
                "{\"value\":\"{\\\"cardPrivateData\\\":{\\\"params\\\":"
                "{\\\"from\\\":\\\"value\\\"}}}\"}");
  assert_int_equal(decode_cb(CG__DT_TOPIC_CARD, d, &rec, err, sizeof err), 0);
  assert_string_equal(cg_action_value(&rec->pub, "from"), "content");
  cg__action_free(rec);
  free(d);

  /* the frame can go before the action: the action owns its strings */
  d = card_data("{\"cardPrivateData\":{\"actionIds\":[\"b\"]}}", 0, NULL);
  char *t = frame_text("CALLBACK", CG__DT_TOPIC_CARD, "mid-9", d);
  cg__dt_frame f;
  assert_int_equal(decode(t, &f), 0);
  free(t);
  assert_int_equal(cg__dt_decode_action(&f, NOW, &rec, err, sizeof err), 0);
  cg__dt_frame_clear(&f);
  assert_string_equal(rec->pub.event_id, "mid-9");
  assert_string_equal(rec->pub.name, "b");
  cg__action_free(rec);
  free(d);
}

static void test_card_callback_bad(void **state) {
  (void)state;
  static const struct {
    const char *content;
    const char *extra;
    int rc;
  } rows[] = {
      {"{not json", NULL, CG_EMALFORMED},
      {"[1]", NULL, CG_EMALFORMED},
      {"", NULL, CG_EMALFORMED},
      {"{\"cardPrivateData\":[]}", NULL, CG_EMALFORMED},
      {"{\"cardPrivateData\":{\"params\":\"p\"}}", NULL, CG_EMALFORMED},
      {"{\"cardPrivateData\":{\"actionIds\":\"b\"}}", NULL, CG_EMALFORMED},
      {"{\"cardPrivateData\":{\"actionIds\":[1]}}", NULL, CG_EMALFORMED},
      {NULL, NULL, CG_EMALFORMED},                    /* no content/value */
      {NULL, "{\"content\":12}", CG_EMALFORMED},      /* not a string */
      {"{}", "{\"outTrackId\":null}", CG_EMALFORMED}, /* no id */
      {"{}", "{\"outTrackId\":\"\"}", CG_EMALFORMED},
      {"{}", "{\"outTrackId\":5}", CG_EMALFORMED},
      {"{}", "{\"userId\":5}", CG_EMALFORMED},
      {"{}", "{\"spaceId\":[]}", CG_EMALFORMED},
  };
  for (size_t i = 0; i < CG_ARRAY_SIZE(rows); i++) {
    char *d = card_data(rows[i].content, 0, rows[i].extra);
    cg__action_rec *rec = (cg__action_rec *)1;
    char err[256] = "";
    int rc = decode_cb(CG__DT_TOPIC_CARD, d, &rec, err, sizeof err);
    if (rc != rows[i].rc) fail_msg("row %zu: %s (%s)", i, cg_err_name(rc), err);
    assert_null(rec);
    assert_true(err[0] != '\0');
    free(d);
  }
  /* a 300-byte outTrackId */
  char id[301], extra[400];
  memset(id, 'a', 300);
  id[300] = '\0';
  snprintf(extra, sizeof extra, "{\"outTrackId\":\"%s\"}", id);
  char *d = card_data("{}", 0, extra);
  cg__action_rec *rec;
  char err[256];
  assert_int_equal(decode_cb(CG__DT_TOPIC_CARD, d, &rec, err, sizeof err),
                   CG_EMALFORMED);
  free(d);

  /* data not JSON, empty data, other topics and frame types */
  assert_int_equal(decode_cb(CG__DT_TOPIC_CARD, "{oops", &rec, err, sizeof err),
                   CG_EMALFORMED);
  assert_int_equal(decode_cb(CG__DT_TOPIC_CARD, "[]", &rec, err, sizeof err),
                   CG_EMALFORMED);
  assert_int_equal(decode_cb(CG__DT_TOPIC_CARD, "", &rec, err, sizeof err),
                   CG_EMALFORMED);
  assert_int_equal(
      decode_cb("/v1.0/graph/api/invoke", "{}", &rec, err, sizeof err),
      CG_EUNSUPPORTED);
  assert_null(rec);
  cg__dt_frame f;
  assert_int_equal(decode(EVENT, &f), 0);
  assert_int_equal(cg__dt_decode_action(&f, NOW, &rec, err, sizeof err),
                   CG_EUNSUPPORTED);
  cg__dt_frame_clear(&f);
  assert_int_equal(decode(PING, &f), 0);
  assert_int_equal(cg__dt_decode_action(&f, NOW, &rec, err, sizeof err),
                   CG_EUNSUPPORTED);
  cg__dt_frame_clear(&f);
}

/* ---- bot messages
 * ------------------------------------------------------------- */

static void test_bot_messages(void **state) {
  (void)state;
  const char *group =
      "{\"conversationId\":\"cidGROUP==\",\"atUsers\":[{\"dingtalkId\":"
      "\"$:LWCP_v1:$bot\"}],\"chatbotCorpId\":\"ding1\",\"chatbotUserId\":"
      "\"$:LWCP_v1:$bot\",\"msgId\":\"msgABC\",\"senderNick\":\"Li\","
      "\"isAdmin\":true,\"senderStaffId\":\"manager1234\","
      "\"sessionWebhookExpiredTime\":1690005400000,\"createAt\":1690000000000,"
      "\"senderCorpId\":\"ding1\",\"conversationType\":\"2\",\"senderId\":"
      "\"$:LWCP_v1:$abc\",\"conversationTitle\":\"team\",\"isInAtList\":true,"
      "\"sessionWebhook\":\"https://oapi.dingtalk.com/robot/"
      "sendBySession?session=x\",\"text\":{\"content\":\"  hello bot \\n\"},"
      "\"robotCode\":\"dingrobot\",\"msgtype\":\"text\"}";
  char err[256];
  cg__action_rec *rec;
  assert_int_equal(decode_cb(CG__DT_TOPIC_BOT, group, &rec, err, sizeof err),
                   0);
  const cg_action *a = &rec->pub;
  assert_int_equal(a->kind, CG_KIND_MESSAGE);
  assert_int_equal(a->platform, CG_PLATFORM_DINGTALK);
  assert_string_equal(a->message_id, "msgABC");
  assert_string_equal(a->chat_id, "cidGROUP==");
  assert_string_equal(a->user_id, "manager1234");
  assert_string_equal(a->open_id, "$:LWCP_v1:$abc");
  assert_string_equal(a->tenant_key, "ding1");
  assert_string_equal(a->input_value, "hello bot");
  assert_string_equal(a->tag, "text");
  assert_string_equal(a->event_id, "cb_1");
  assert_string_equal(cg_action_value(a, "conversationType"), "2");
  assert_string_equal(cg_action_value(a, "isInAtList"), "true");
  assert_string_equal(cg_action_value(a, "createAt"), "1690000000000");
  assert_non_null(
      strstr(a->value_json, "\"text\":{\"content\":\"  hello bot \\n\"}"));
  assert_string_equal(cg_action_raw_json(a), group);
  cg__action_free(rec);

  /* 1:1, a picture (no text), an external sender without a staff id */
  const char *single =
      "{\"conversationId\":\"cidSINGLE\",\"msgId\":\"msg2\",\"senderId\":"
      "\"$:LWCP_v1:$ext\",\"conversationType\":\"1\",\"msgtype\":\"picture\","
      "\"content\":{\"downloadCode\":\"dc\"}}";
  assert_int_equal(decode_cb(CG__DT_TOPIC_BOT, single, &rec, err, sizeof err),
                   0);
  a = &rec->pub;
  assert_string_equal(a->message_id, "msg2");
  assert_null(a->user_id);
  assert_null(a->input_value);
  assert_string_equal(a->tag, "picture");
  assert_string_equal(cg_action_value(a, "conversationType"), "1");
  cg__action_free(rec);

  static const char *const bad[] = {
      "{\"conversationId\":\"c\"}", /* no msgId */
      "{\"msgId\":\"\"}",
      "{\"msgId\":\"m\",\"text\":\"hello\"}", /* text not object */
      "{\"msgId\":\"m\",\"text\":{\"content\":1}}",
      "{\"msgId\":\"m\",\"senderStaffId\":1}",
      "{\"msgId\":\"m\",\"msgtype\":{}}",
  };
  for (size_t i = 0; i < CG_ARRAY_SIZE(bad); i++)
    if (decode_cb(CG__DT_TOPIC_BOT, bad[i], &rec, err, sizeof err) !=
        CG_EMALFORMED)
      fail_msg("bad message %zu accepted", i);
}

/* ---- replies
 * ----------------------------------------------------------------- */

static cg__action_rec *card_action(void) {
  char *d = card_data("{\"cardPrivateData\":{\"actionIds\":[\"b\"]}}", 0, NULL);
  cg__action_rec *rec;
  char err[256];
  assert_int_equal(decode_cb(CG__DT_TOPIC_CARD, d, &rec, err, sizeof err), 0);
  free(d);
  return rec;
}

static void encode_is(const cg_action *a, cg_reply *r, const char *want,
                      const char *dropped_sub) {
  cg_buf b;
  cg_buf_init(&b, 1 << 16);
  char dropped[128] = "x";
  assert_int_equal(cg__dt_encode_reply(a, r, &b, dropped), 0);
  assert_buf(&b, want);
  if (dropped_sub) {
    if (!strstr(dropped, dropped_sub))
      fail_msg("dropped \"%s\" lacks \"%s\"", dropped, dropped_sub);
  } else {
    assert_string_equal(dropped, "");
  }
  cg_buf_free(&b);
  cg_reply_free(r);
}

static void test_encode_reply(void **state) {
  (void)state;
  cg__action_rec *rec = card_action();
  const cg_action *a = &rec->pub;
  int err;
  encode_is(a, NULL, "{\"response\":{}}", NULL);
  encode_is(a, cg_reply_keep(), "{\"response\":{}}", NULL);
  encode_is(a,
            cg_reply_template("tpl.schema",
                              "{\"status\":\"done\",\"count\":2,\"ok\":false,"
                              "\"list\":[1,\"a\"],\"obj\":{\"k\":\"v\"},"
                              "\"none\":null,\"pi\":3.14}",
                              NULL, &err),
            "{\"response\":{\"cardData\":{\"cardParamMap\":{\"status\":"
            "\"done\",\"count\":\"2\",\"ok\":\"false\",\"list\":"
            "\"[1,\\\"a\\\"]\",\"obj\":\"{\\\"k\\\":\\\"v\\\"}\",\"none\":"
            "\"\",\"pi\":\"3.14\"}},\"cardUpdateOptions\":"
            "{\"updateCardDataByKey\":true}}}",
            NULL);
  encode_is(a, cg_reply_template("tpl", NULL, NULL, &err),
            "{\"response\":{\"cardData\":{\"cardParamMap\":{}},"
            "\"cardUpdateOptions\":{\"updateCardDataByKey\":true}}}",
            NULL);
  /* userPrivateData: alone, and beside cardData (dingtalk.md §3.2) */
  cg_reply *pv = cg_reply_keep();
  assert_int_equal(cg_reply_private_vars(pv, "{\"mine\":1}"), 0);
  encode_is(a, pv,
            "{\"response\":{\"userPrivateData\":{\"cardParamMap\":{\"mine\":"
            "\"1\"}},\"cardUpdateOptions\":{\"updatePrivateDataByKey\":true}}}",
            NULL);
  pv = cg_reply_template("tpl", "{\"status\":\"ok\"}", NULL, &err);
  assert_int_equal(cg_reply_private_vars(pv, "{\"seen\":true}"), 0);
  assert_int_equal(cg_reply_private_vars(pv, "[1]"), CG_EMALFORMED);
  assert_int_equal(cg_reply_private_vars(pv, NULL), CG_EINVAL);
  encode_is(a, pv,
            "{\"response\":{\"cardData\":{\"cardParamMap\":{\"status\":\"ok\"}},"
            "\"userPrivateData\":{\"cardParamMap\":{\"seen\":\"true\"}},"
            "\"cardUpdateOptions\":{\"updateCardDataByKey\":true,"
            "\"updatePrivateDataByKey\":true}}}",
            NULL);
  encode_is(a, cg_reply_custom(200, "{\"response\":{\"x\":1}}", &err),
            "{\"response\":{\"x\":1}}", NULL);
  encode_is(a, cg_reply_card("{\"elements\":[]}", &err), "{\"response\":{}}",
            "card");
  encode_is(a, cg_reply_toast("info", "hi", &err), "{\"response\":{}}",
            "toast");
  cg_reply *r = cg_reply_template("tpl", "{\"a\":\"b\"}", NULL, &err);
  assert_int_equal(cg_reply_set_toast(r, "success", "done"), 0);
  encode_is(a, r,
            "{\"response\":{\"cardData\":{\"cardParamMap\":{\"a\":\"b\"}},"
            "\"cardUpdateOptions\":{\"updateCardDataByKey\":true}}}",
            "toast");
  cg__action_free(rec);

  /* a bot message: always {"response":null} */
  cg__action_rec *m;
  char e[256];
  assert_int_equal(
      decode_cb(CG__DT_TOPIC_BOT, "{\"msgId\":\"m\"}", &m, e, sizeof e), 0);
  encode_is(&m->pub, NULL, "{\"response\":null}", NULL);
  encode_is(&m->pub, cg_reply_keep(), "{\"response\":null}", NULL);
  encode_is(&m->pub, cg_reply_template("t", "{\"a\":1}", NULL, &err),
            "{\"response\":null}", "Open API");
  cg__action_free(m);
}

static void test_param_map(void **state) {
  (void)state;
  static const struct {
    const char *in, *out;
  } rows[] = {
      {"{}", "{}"},
      {"{\"s\":\"text \\\"q\\\" / \\u00e9\"}",
       "{\"s\":\"text \\\"q\\\" / \\u00e9\"}"},
      {"{\"i\":-42,\"big\":9007199254740993}",
       "{\"i\":\"-42\",\"big\":\"9007199254740993\"}"},
      {"{\"r\":1.23,\"h\":100.0,\"e\":1e21,\"m\":1.5e-7,\"u\":0.000001,"
       "\"x\":0.30000000000000004,\"n\":-2.5,\"z\":0.0}",
       "{\"r\":\"1.23\",\"h\":\"100\",\"e\":\"1e+21\",\"m\":\"1.5e-7\",\"u\":"
       "\"0.000001\",\"x\":\"0.30000000000000004\",\"n\":\"-2.5\",\"z\":"
       "\"0\"}"},
      {"{\"t\":true,\"f\":false,\"n\":null}",
       "{\"t\":\"true\",\"f\":\"false\",\"n\":\"\"}"},
      {"{\"a\":[1,2,3],\"o\":{\"k\":\"v\",\"2\":1,\"1\":[1.0,null]}}",
       "{\"a\":\"[1,2,3]\",\"o\":\"{\\\"1\\\":[1,null],\\\"2\\\":1,\\\"k\\\":"
       "\\\"v\\\"}\"}"},
      {"{\"ctl\":[\"\\b\\u0001/\"]}",
       "{\"ctl\":\"[\\\"\\\\b\\\\u0001/\\\"]\"}"},
  };
  for (size_t i = 0; i < CG_ARRAY_SIZE(rows); i++) {
    json_t *in = json_loads(rows[i].in, 0, NULL);
    assert_non_null(in);
    json_t *m = cg__dt_param_map(in);
    assert_non_null(m);
    json_t *want = json_loads(rows[i].out, 0, NULL);
    assert_non_null(want);
    if (!json_equal(m, want)) {
      char *got = json_dumps(m, JSON_COMPACT);
      fail_msg("row %zu: %s", i, got);
    }
    const char *k;
    json_t *v;
    json_object_foreach(m, k, v) assert_true(json_is_string(v));
    json_decref(in);
    json_decref(m);
    json_decref(want);
  }
  json_t *arr = json_loads("[1]", 0, NULL);
  assert_null(cg__dt_param_map(arr));
  assert_null(cg__dt_param_map(NULL));
  json_decref(arr);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_frames_valid),
      cmocka_unit_test(test_frames_hostile),
      cmocka_unit_test(test_frames_truncated),
      cmocka_unit_test(test_ack_bytes),
      cmocka_unit_test(test_open_exchange),
      cmocka_unit_test(test_card_callback_shapes),
      cmocka_unit_test(test_card_callback_bad),
      cmocka_unit_test(test_bot_messages),
      cmocka_unit_test(test_encode_reply),
      cmocka_unit_test(test_param_map),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
