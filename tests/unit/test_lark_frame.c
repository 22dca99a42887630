/* Lark long-connection codec (src/lib/codec/lark_frame.c).
 *
 * Vectors: lark.md §5.3 (ping bytes of the Go and Node SDKs, the ACK payload
 * of a card answer), §8 (corrections seen with the Node SDK: ACK without a
 * "headers" key, refusals with and without data, first URL parameter,
 * 64-bit ids, fragments joined as bytes). Frames with a field missing are
 * written byte by byte here, so the test does not lean on the encoder it
 * checks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
/* cmocka needs the standard headers above */
#include <cmocka.h>

#include "../../src/common/limits.h"
#include "cardgate/error.h"
#include "lib/codec/lark_frame.h"

/* ---- helpers ------------------------------------------------------------- */

/* Hand-written wire bytes for the tests (not the codec's encoder). */
typedef struct wire {
  uint8_t b[4096];
  size_t n;
} wire;

static void w_varint(wire *w, uint64_t v) {
  do {
    uint8_t c = v & 0x7f;
    v >>= 7;
    w->b[w->n++] = (uint8_t)(c | (v ? 0x80 : 0));
  } while (v);
}

static void w_uint(wire *w, unsigned field, uint64_t v) {
  w_varint(w, field << 3);
  w_varint(w, v);
}

static void w_bytes(wire *w, unsigned field, const void *p, size_t n) {
  w_varint(w, field << 3 | 2);
  w_varint(w, n);
  memcpy(w->b + w->n, p, n);
  w->n += n;
}

static void w_str(wire *w, unsigned field, const char *s) {
  w_bytes(w, field, s, strlen(s));
}

static void w_header(wire *w, const char *k, const char *v) {
  wire h = {{0}, 0};
  if (k) w_str(&h, 1, k);
  if (v) w_str(&h, 2, v);
  w_bytes(w, 5, h.b, h.n);
}

/* A frame with the required fields whose bit (1 << field) is in mask. */
static void w_required(wire *w, unsigned mask) {
  if (mask & 2) w_uint(w, 1, 7);
  if (mask & 4) w_uint(w, 2, 8);
  if (mask & 8) w_uint(w, 3, 9);
  if (mask & 16) w_uint(w, 4, 1);
}

static const uint8_t ping_node[] = {0x08, 0x00, 0x10, 0x00, 0x18, 0xf6, 0x81,
                                    0x80, 0x10, 0x20, 0x00, 0x2a, 0x0c, 0x0a,
                                    0x04, 0x74, 0x79, 0x70, 0x65, 0x12, 0x04,
                                    0x70, 0x69, 0x6e, 0x67};
static const uint8_t ping_go[] = {
    0x08, 0x00, 0x10, 0x00, 0x18, 0xf6, 0x81, 0x80, 0x10, 0x20, 0x00,
    0x2a, 0x0c, 0x0a, 0x04, 0x74, 0x79, 0x70, 0x65, 0x12, 0x04, 0x70,
    0x69, 0x6e, 0x67, 0x32, 0x00, 0x3a, 0x00, 0x4a, 0x00};

#define TOAST "{\"toast\":{\"type\":\"success\",\"content\":\"ok\"}}"
#define TOAST_B64 "eyJ0b2FzdCI6eyJ0eXBlIjoic3VjY2VzcyIsImNvbnRlbnQiOiJvayJ9fQ=="

static void assert_bytes(const void *got, size_t got_n, const void *want,
                         size_t want_n) {
  assert_int_equal(got_n, want_n);
  assert_memory_equal(got, want, want_n);
}

static int decode(const void *p, size_t n, cg__lark_frame *f) {
  char err[200];
  int rc = cg__lark_frame_decode(p, n, f, err, sizeof err);
  if (rc) assert_true(err[0] != '\0');
  return rc;
}

/* A data frame with every field, as the server sends a card callback. */
static void make_data_frame(cg__lark_frame *f) {
  memset(f, 0, sizeof *f);
  f->seq_id = (UINT64_C(1) << 53) + 1;
  f->log_id = UINT64_MAX;
  f->service = 33554678;
  f->method = CG__LARK_METHOD_DATA;
  assert_int_equal(cg__lark_frame_add_header(f, "type", "card"), 0);
  assert_int_equal(cg__lark_frame_add_header(f, "message_id", "m-1"), 0);
  assert_int_equal(cg__lark_frame_add_header(f, "sum", "1"), 0);
  assert_int_equal(cg__lark_frame_add_header(f, "seq", "0"), 0);
  assert_int_equal(cg__lark_frame_add_header(f, "trace_id", "tr"), 0);
  f->payload_encoding = strdup("");
  f->payload_type = strdup("");
  f->log_id_new = strdup("lid-new");
  assert_int_equal(cg__lark_frame_set_payload(f, "{\"a\":1}", 7), 0);
}

static void assert_same_frame(const cg__lark_frame *a,
                              const cg__lark_frame *b) {
  assert_true(a->seq_id == b->seq_id);
  assert_true(a->log_id == b->log_id);
  assert_int_equal(a->service, b->service);
  assert_int_equal(a->method, b->method);
  assert_int_equal(a->n_headers, b->n_headers);
  for (size_t i = 0; i < a->n_headers; i++) {
    assert_string_equal(a->headers[i].key, b->headers[i].key);
    assert_string_equal(a->headers[i].value, b->headers[i].value);
  }
  const char *sa[] = {a->payload_encoding, a->payload_type, a->log_id_new};
  const char *sb[] = {b->payload_encoding, b->payload_type, b->log_id_new};
  for (int i = 0; i < 3; i++) {
    assert_int_equal(sa[i] == NULL, sb[i] == NULL);
    if (sa[i]) assert_string_equal(sa[i], sb[i]);
  }
  assert_int_equal(a->has_payload, b->has_payload);
  assert_int_equal(a->payload_len, b->payload_len);
  if (a->payload_len)
    assert_memory_equal(a->payload, b->payload, a->payload_len);
}

/* ---- frames -------------------------------------------------------------- */

static void test_ping_node_bytes(void **state) {
  (void)state;
  cg_buf b;
  cg_buf_init(&b, 1024);
  assert_int_equal(cg__lark_frame_ping(33554678, &b), 0);
  assert_bytes(b.data, b.len, ping_node, sizeof ping_node);
  cg_buf_free(&b);
}

static void test_ping_decode_both(void **state) {
  (void)state;
  cg__lark_frame f;
  /* Node: no optional fields */
  assert_int_equal(decode(ping_node, sizeof ping_node, &f), 0);
  assert_true(f.seq_id == 0 && f.log_id == 0);
  assert_int_equal(f.service, 33554678);
  assert_int_equal(f.method, CG__LARK_METHOD_CONTROL);
  assert_int_equal(f.n_headers, 1);
  assert_string_equal(cg__lark_frame_header(&f, "type"), "ping");
  assert_null(cg__lark_frame_header(&f, "sum"));
  assert_null(f.payload_encoding);
  assert_null(f.payload_type);
  assert_null(f.log_id_new);
  assert_int_equal(f.has_payload, 0);
  cg_buf b;
  cg_buf_init(&b, 1024);
  assert_int_equal(cg__lark_frame_encode(&f, &b), 0);
  assert_bytes(b.data, b.len, ping_node, sizeof ping_node);
  cg__lark_frame_clear(&f);

  /* Go: fields 6, 7, 9 present and empty; they survive a round trip */
  assert_int_equal(decode(ping_go, sizeof ping_go, &f), 0);
  assert_int_equal(f.service, 33554678);
  assert_non_null(f.payload_encoding);
  assert_string_equal(f.payload_encoding, "");
  assert_non_null(f.payload_type);
  assert_string_equal(f.payload_type, "");
  assert_non_null(f.log_id_new);
  assert_string_equal(f.log_id_new, "");
  assert_int_equal(f.has_payload, 0);
  cg_buf_reset(&b);
  assert_int_equal(cg__lark_frame_encode(&f, &b), 0);
  assert_bytes(b.data, b.len, ping_go, sizeof ping_go);
  cg__lark_frame_clear(&f);
  cg__lark_frame_clear(&f); /* a cleared frame clears again */
  cg_buf_free(&b);
}

static void test_round_trip_full(void **state) {
  (void)state;
  cg__lark_frame f, g;
  make_data_frame(&f);
  /* a binary payload with a NUL in it */
  assert_int_equal(cg__lark_frame_set_payload(&f, "a\0b\xff", 4), 0);
  cg_buf b;
  cg_buf_init(&b, 1 << 20);
  assert_int_equal(cg__lark_frame_encode(&f, &b), 0);
  assert_int_equal(decode(b.data, b.len, &g), 0);
  assert_same_frame(&f, &g);
  /* ids above 2^53 come back exactly */
  assert_true(g.seq_id == 9007199254740993ull);
  assert_true(g.log_id == 18446744073709551615ull);
  cg_buf c;
  cg_buf_init(&c, 1 << 20);
  assert_int_equal(cg__lark_frame_encode(&g, &c), 0);
  assert_bytes(c.data, c.len, b.data, b.len);
  cg__lark_frame_clear(&f);
  cg__lark_frame_clear(&g);
  cg_buf_free(&b);
  cg_buf_free(&c);
}

static void test_round_trip_presence(void **state) {
  (void)state;
  /* present-and-empty payload is written (0x42 0x00); absent is not */
  wire w = {{0}, 0};
  w_required(&w, 30);
  w_bytes(&w, 8, "", 0);
  cg__lark_frame f;
  assert_int_equal(decode(w.b, w.n, &f), 0);
  assert_int_equal(f.has_payload, 1);
  assert_int_equal(f.payload_len, 0);
  cg_buf b;
  cg_buf_init(&b, 1024);
  assert_int_equal(cg__lark_frame_encode(&f, &b), 0);
  assert_bytes(b.data, b.len, w.b, w.n);
  cg__lark_frame_clear(&f);

  /* only payload_encoding present and empty */
  w.n = 0;
  w_required(&w, 30);
  w_str(&w, 6, "");
  w_str(&w, 9, "x");
  assert_int_equal(decode(w.b, w.n, &f), 0);
  assert_string_equal(f.payload_encoding, "");
  assert_null(f.payload_type);
  assert_string_equal(f.log_id_new, "x");
  cg_buf_reset(&b);
  assert_int_equal(cg__lark_frame_encode(&f, &b), 0);
  assert_bytes(b.data, b.len, w.b, w.n);
  cg__lark_frame_clear(&f);
  cg_buf_free(&b);
}

static void test_unknown_fields_skipped(void **state) {
  (void)state;
  wire w = {{0}, 0};
  w_required(&w, 30);
  w_uint(&w, 15, 12345);
  w_str(&w, 16, "future");
  w_header(&w, "type", "event");
  cg__lark_frame f;
  assert_int_equal(decode(w.b, w.n, &f), 0);
  assert_true(f.seq_id == 7 && f.log_id == 8);
  assert_int_equal(f.service, 9);
  assert_int_equal(f.method, 1);
  assert_string_equal(cg__lark_frame_header(&f, "type"), "event");
  cg__lark_frame_clear(&f);
}

static void test_missing_required(void **state) {
  (void)state;
  /* protobuf-c enforces proto2 "required" on unpack: each of 1-4 */
  for (unsigned field = 1; field <= 4; field++) {
    wire w = {{0}, 0};
    w_required(&w, 30u & ~(1u << field));
    w_header(&w, "type", "event");
    cg__lark_frame f;
    memset(&f, 0xab, sizeof f);
    assert_int_equal(decode(w.b, w.n, &f), CG_EMALFORMED);
    /* *out is zeroed on error */
    assert_null(f.headers);
    assert_int_equal(f.n_headers, 0);
    assert_null(f.payload);
  }
  /* none at all: the empty message */
  cg__lark_frame f;
  assert_int_equal(decode("", 0, &f), CG_EMALFORMED);
  assert_int_equal(decode(NULL, 0, &f), CG_EMALFORMED);
}

static void test_header_incomplete(void **state) {
  (void)state;
  const char *kv[][2] = {{"type", NULL}, {NULL, "ping"}, {NULL, NULL}};
  for (size_t i = 0; i < 3; i++) {
    wire w = {{0}, 0};
    w_required(&w, 30);
    w_header(&w, "sum", "1");
    w_header(&w, kv[i][0], kv[i][1]);
    cg__lark_frame f;
    assert_int_equal(decode(w.b, w.n, &f), CG_EMALFORMED);
  }
  /* key and value present but empty is fine */
  wire w = {{0}, 0};
  w_required(&w, 30);
  w_header(&w, "", "");
  cg__lark_frame f;
  assert_int_equal(decode(w.b, w.n, &f), 0);
  assert_string_equal(f.headers[0].key, "");
  assert_string_equal(f.headers[0].value, "");
  cg__lark_frame_clear(&f);
}

static void test_truncated_every_offset(void **state) {
  (void)state;
  cg__lark_frame f;
  make_data_frame(&f);
  cg_buf b;
  cg_buf_init(&b, 1 << 20);
  assert_int_equal(cg__lark_frame_encode(&f, &b), 0);
  cg__lark_frame_clear(&f);
  size_t ok = 0;
  for (size_t n = 0; n < b.len; n++) {
    /* an exact-size copy, so ASan sees any read past the end */
    uint8_t *p = malloc(n ? n : 1);
    memcpy(p, b.data, n);
    int rc = decode(p, n, &f);
    assert_true(rc == 0 || rc == CG_EMALFORMED);
    if (rc == 0) {
      ok++;
      cg_buf c;
      cg_buf_init(&c, 1 << 20);
      assert_int_equal(cg__lark_frame_encode(&f, &c), 0);
      cg_buf_free(&c);
      cg__lark_frame_clear(&f);
    }
    free(p);
  }
  /* cuts right after a complete field (past field 4) decode */
  assert_true(ok >= 5);
  cg_buf_free(&b);
}

static void test_garbage_and_limits(void **state) {
  (void)state;
  cg__lark_frame f;
  static const uint8_t junk[][8] = {
      {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
      {0x08, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80}, /* endless varint */
      {0x2a, 0x7f, 0x0a, 0x00, 0x12, 0x00, 0, 0},       /* length too long */
      {0x07, 0x00, 0, 0, 0, 0, 0, 0},                   /* wire type 7 */
      {'{', '"', 'a', '"', ':', '1', '}', 0},           /* JSON, not protobuf */
  };
  for (size_t i = 0; i < CG_ARRAY_SIZE(junk); i++)
    assert_int_equal(decode(junk[i], 8, &f), CG_EMALFORMED);

  /* oversized: refused before parsing */
  size_t big = CG__LARK_FRAME_MAX + 1;
  uint8_t *p = calloc(1, big);
  assert_int_equal(decode(p, big, &f), CG_ETOOBIG);
  free(p);

  /* 64 headers decode, 65 do not */
  wire w = {{0}, 0};
  w_required(&w, 30);
  for (unsigned i = 0; i < CG__LARK_FRAME_MAX_HEADERS; i++)
    w_header(&w, "k", "v");
  assert_int_equal(decode(w.b, w.n, &f), 0);
  assert_int_equal(f.n_headers, CG__LARK_FRAME_MAX_HEADERS);
  cg__lark_frame_clear(&f);
  w_header(&w, "k", "v");
  assert_int_equal(decode(w.b, w.n, &f), CG_EMALFORMED);

  /* many tiny unknown fields: bounded allocation, refused */
  size_t n = 200000;
  uint8_t *u = malloc(n * 2 + 16);
  size_t o = 0;
  u[o++] = 0x08, u[o++] = 0x01, u[o++] = 0x10, u[o++] = 0x01;
  u[o++] = 0x18, u[o++] = 0x01, u[o++] = 0x20, u[o++] = 0x01;
  for (size_t i = 0; i < n; i++) u[o++] = 0x78, u[o++] = 0x00; /* field 15 */
  assert_int_equal(decode(u, o, &f), CG_EMALFORMED);
  free(u);
}

static void test_encode_limits(void **state) {
  (void)state;
  cg__lark_frame f;
  make_data_frame(&f);
  cg_buf b;
  cg_buf_init(&b, 16);
  assert_int_equal(cg_buf_appends(&b, "prefix"), 0);
  assert_int_equal(cg__lark_frame_encode(&f, &b), CG_ETOOBIG);
  assert_int_equal(b.len, 6);
  assert_string_equal(b.data, "prefix");
  assert_int_equal(cg__lark_frame_ping(1, &b), CG_ETOOBIG);
  assert_int_equal(b.len, 6);
  cg_buf_free(&b);
  cg__lark_frame_clear(&f);
}

/* ---- ACK ----------------------------------------------------------------- */

static void test_ack_card(void **state) {
  (void)state;
  cg__lark_frame req, ack, want;
  make_data_frame(&req);
  cg_buf b;
  cg_buf_init(&b, 1 << 20);
  assert_int_equal(cg__lark_frame_ack(&req, 12, 200, TOAST, strlen(TOAST), &b),
                   0);
  assert_int_equal(decode(b.data, b.len, &ack), 0);
  /* everything echoed; headers in order, biz_rt last */
  assert_true(ack.seq_id == req.seq_id && ack.log_id == req.log_id);
  assert_int_equal(ack.service, req.service);
  assert_int_equal(ack.method, CG__LARK_METHOD_DATA);
  assert_int_equal(ack.n_headers, req.n_headers + 1);
  for (size_t i = 0; i < req.n_headers; i++) {
    assert_string_equal(ack.headers[i].key, req.headers[i].key);
    assert_string_equal(ack.headers[i].value, req.headers[i].value);
  }
  assert_string_equal(ack.headers[req.n_headers].key, "biz_rt");
  assert_string_equal(ack.headers[req.n_headers].value, "12");
  assert_string_equal(ack.payload_encoding, "");
  assert_string_equal(ack.payload_type, "");
  assert_string_equal(ack.log_id_new, "lid-new");
  /* §8.1 payload, no "headers" key; data is §5.3's base64 */
  const char *pl = "{\"code\":200,\"data\":\"" TOAST_B64 "\"}";
  assert_int_equal(ack.has_payload, 1);
  assert_bytes(ack.payload, ack.payload_len, pl, strlen(pl));

  /* byte for byte: the request plus the header, payload replaced */
  make_data_frame(&want);
  assert_int_equal(cg__lark_frame_add_header(&want, "biz_rt", "12"), 0);
  assert_int_equal(cg__lark_frame_set_payload(&want, pl, strlen(pl)), 0);
  cg_buf c;
  cg_buf_init(&c, 1 << 20);
  assert_int_equal(cg__lark_frame_encode(&want, &c), 0);
  assert_bytes(b.data, b.len, c.data, c.len);

  /* and the request is untouched */
  assert_int_equal(req.n_headers, 5);
  assert_int_equal(req.payload_len, 7);

  int code = 0;
  char *data = NULL;
  size_t dlen = 0;
  assert_int_equal(
      cg__lark_ack_parse(ack.payload, ack.payload_len, &code, &data, &dlen), 0);
  assert_int_equal(code, 200);
  assert_bytes(data, dlen, TOAST, strlen(TOAST));
  assert_int_equal(data[dlen], '\0');
  free(data);
  cg__lark_frame_clear(&req);
  cg__lark_frame_clear(&ack);
  cg__lark_frame_clear(&want);
  cg_buf_free(&b);
  cg_buf_free(&c);
}

static void test_ack_without_result(void **state) {
  (void)state;
  cg__lark_frame req, ack;
  /* a request without optional fields: the ACK gains only the payload */
  assert_int_equal(decode(ping_node, sizeof ping_node, &req), 0);
  req.method = CG__LARK_METHOD_DATA;
  cg_buf b;
  cg_buf_init(&b, 1024);
  assert_int_equal(cg__lark_frame_ack(&req, 0, 200, NULL, 0, &b), 0);
  assert_int_equal(decode(b.data, b.len, &ack), 0);
  assert_bytes(ack.payload, ack.payload_len, "{\"code\":200}", 12);
  assert_null(ack.payload_encoding);
  assert_null(ack.payload_type);
  assert_null(ack.log_id_new);
  assert_string_equal(ack.headers[1].key, "biz_rt");
  assert_string_equal(ack.headers[1].value, "0");
  cg__lark_frame_clear(&ack);

  /* 500 for a failed handler; an empty result is data "" */
  cg_buf_reset(&b);
  assert_int_equal(cg__lark_frame_ack(&req, 3001, 500, "", 0, &b), 0);
  assert_int_equal(decode(b.data, b.len, &ack), 0);
  assert_bytes(ack.payload, ack.payload_len, "{\"code\":500,\"data\":\"\"}",
               22);
  assert_string_equal(cg__lark_frame_header(&ack, "biz_rt"), "3001");
  cg__lark_frame_clear(&ack);
  cg__lark_frame_clear(&req);
  cg_buf_free(&b);
}

static void test_ack_parse(void **state) {
  (void)state;
  int code = -1;
  char *data = (char *)1;
  size_t n = 99;
#define P(s) (const uint8_t *)(s), strlen(s)
  assert_int_equal(cg__lark_ack_parse(P("{\"code\":200}"), &code, &data, &n),
                   0);
  assert_int_equal(code, 200);
  assert_null(data);
  assert_int_equal(n, 0);
  assert_int_equal(
      cg__lark_ack_parse(P("{\"code\":200,\"headers\":null,\"data\":null}"),
                         &code, &data, &n),
      0);
  assert_null(data);
  /* §5.3's payload (Go shape, with headers) */
  assert_int_equal(
      cg__lark_ack_parse(
          P("{\"code\":200,\"headers\":null,\"data\":\"" TOAST_B64 "\"}"),
          &code, &data, &n),
      0);
  assert_string_equal(data, TOAST);
  free(data);
  /* padding lengths 0, 1, 2 */
  const char *b64[][2] = {
      {"YWJj", "abc"}, {"YWI=", "ab"}, {"YQ==", "a"}, {"", ""}};
  for (size_t i = 0; i < 4; i++) {
    char j[64];
    snprintf(j, sizeof j, "{\"code\":1,\"data\":\"%s\"}", b64[i][0]);
    assert_int_equal(cg__lark_ack_parse(P(j), &code, &data, &n), 0);
    assert_int_equal(n, strlen(b64[i][1]));
    assert_string_equal(data, b64[i][1]);
    free(data);
  }
  const char *bad[] = {"",
                       "not json",
                       "[200]",
                       "{}",
                       "{\"code\":\"200\"}",
                       "{\"code\":1.5}",
                       "{\"code\":99999999999}",
                       "{\"code\":200,\"data\":5}",
                       "{\"code\":200,\"data\":\"abc\"}",
                       "{\"code\":200,\"data\":\"ab c\"}",
                       "{\"code\":200,\"data\":\" YWJj\"}",
                       "{\"code\":200,\"data\":\"Y=Jj\"}",
                       "{\"code\":200,\"data\":\"====\"}"};
  for (size_t i = 0; i < CG_ARRAY_SIZE(bad); i++) {
    data = (char *)1;
    assert_int_equal(cg__lark_ack_parse(P(bad[i]), &code, &data, &n),
                     CG_EMALFORMED);
    assert_null(data);
  }
#undef P
}

/* ---- endpoint and ClientConfig ------------------------------------------- */

static void test_endpoint_request(void **state) {
  (void)state;
  cg_buf b;
  cg_buf_init(&b, 1024);
  assert_int_equal(
      cg__lark_ws_endpoint_request("cli_a1b2c3d4e5f60718", "se\"cret", &b), 0);
  assert_string_equal(b.data,
                      "{\"AppID\":\"cli_a1b2c3d4e5f60718\",\"AppSecret\":"
                      "\"se\\\"cret\"}");
  cg_buf_reset(&b);
  assert_int_equal(cg__lark_ws_endpoint_request(NULL, "x", &b), CG_EINVAL);
  assert_int_equal(cg__lark_ws_endpoint_request("a", "\xff", &b), CG_EINVAL);
  assert_int_equal(b.len, 0);
  cg_buf_free(&b);
}

#define URL_OK                                                            \
  "wss://msg-frontier.feishu.cn/ws/v2?fpid=493&aid=552564&device_id=7f3a" \
  "&access_key=AK&service_id=33554678&ticket=TK"

static void test_endpoint_parse(void **state) {
  (void)state;
  cg__lark_ws_endpoint e;
  char err[128];
  const char *ok =
      "{\"code\":0,\"msg\":\"ok\",\"data\":{\"URL\":\"" URL_OK
      "\",\"ClientConfig\":{\"ReconnectCount\":3,\"ReconnectInterval\":5,"
      "\"ReconnectNonce\":0,\"PingInterval\":90}}}";
  assert_int_equal(
      cg__lark_ws_endpoint_parse(ok, strlen(ok), &e, err, sizeof err), 0);
  assert_int_equal(e.code, 0);
  assert_string_equal(e.msg, "ok");
  assert_string_equal(e.url, URL_OK);
  assert_string_equal(e.device_id, "7f3a");
  assert_int_equal(e.service_id, 33554678);
  assert_int_equal(e.config.reconnect_count, 3);
  assert_int_equal(e.config.reconnect_interval, 5);
  assert_int_equal(e.config.reconnect_nonce, 0);
  assert_int_equal(e.config.ping_interval, 90);
  cg__lark_ws_endpoint_clear(&e);
  cg__lark_ws_endpoint_clear(&e);
  cg__lark_ws_endpoint_clear(NULL);

  /* code 0 without ClientConfig: defaults */
  const char *bare = "{\"code\":0,\"data\":{\"URL\":\"ws://127.0.0.1:9/ws\"}}";
  assert_int_equal(
      cg__lark_ws_endpoint_parse(bare, strlen(bare), &e, err, sizeof err), 0);
  assert_null(e.device_id);
  assert_int_equal(e.service_id, 0);
  assert_int_equal(e.config.ping_interval, 120);
  assert_int_equal(e.config.reconnect_count, -1);
  cg__lark_ws_endpoint_clear(&e);

  /* §8.2: refusals with data {} and without data */
  const char *ref1 =
      "{\"code\":1000040351,\"msg\":\"app not found\",\"data\":{}}";
  assert_int_equal(
      cg__lark_ws_endpoint_parse(ref1, strlen(ref1), &e, err, sizeof err), 0);
  assert_int_equal(e.code, 1000040351);
  assert_string_equal(e.msg, "app not found");
  assert_null(e.url);
  assert_true(cg__lark_ws_code_is_final(e.code));
  cg__lark_ws_endpoint_clear(&e);
  const char *ref2 = "{\"code\":1,\"msg\":\"system busy\"}";
  assert_int_equal(
      cg__lark_ws_endpoint_parse(ref2, strlen(ref2), &e, err, sizeof err), 0);
  assert_int_equal(e.code, 1);
  assert_null(e.url);
  assert_false(cg__lark_ws_code_is_final(e.code));
  cg__lark_ws_endpoint_clear(&e);

  const char *bad[] = {
      "{\"code\":0,\"data\":{}}",
      "{\"code\":0}",
      "{\"code\":0,\"data\":{\"URL\":\"\"}}",
      "{\"code\":0,\"data\":{\"URL\":5}}",
      "{\"code\":0,\"data\":{\"URL\":\"ws://x\",\"ClientConfig\":[]}}",
      "<html>502 Bad Gateway</html>",
      "",
      "[0]",
      "{\"code\":\"0\",\"data\":{\"URL\":\"ws://x\"}}",
      "{\"msg\":\"no code\"}",
  };
  for (size_t i = 0; i < CG_ARRAY_SIZE(bad); i++) {
    err[0] = '\0';
    assert_int_equal(
        cg__lark_ws_endpoint_parse(bad[i], strlen(bad[i]), &e, err, sizeof err),
        CG_EMALFORMED);
    assert_true(err[0] != '\0');
    assert_null(e.url);
    assert_null(e.device_id);
  }
  /* a long msg is cut, not overflowed */
  char longmsg[1024];
  snprintf(longmsg, sizeof longmsg, "{\"code\":5,\"msg\":\"%0600d\"}", 0);
  assert_int_equal(
      cg__lark_ws_endpoint_parse(longmsg, strlen(longmsg), &e, NULL, 0), 0);
  assert_int_equal(strlen(e.msg), sizeof e.msg - 1);
  cg__lark_ws_endpoint_clear(&e);
}

static void test_config_apply(void **state) {
  (void)state;
  cg__lark_ws_config c;
  cg__lark_ws_config_defaults(&c);
  assert_int_equal(c.reconnect_count, -1);
  assert_int_equal(c.reconnect_interval, 120);
  assert_int_equal(c.reconnect_nonce, 30);
  assert_int_equal(c.ping_interval, 120);
#define A(s) cg__lark_ws_config_apply(&c, s, strlen(s))
  /* partial: only what is there */
  assert_int_equal(A("{\"PingInterval\":30}"), 0);
  assert_int_equal(c.ping_interval, 30);
  assert_int_equal(c.reconnect_interval, 120);
  assert_int_equal(c.reconnect_count, -1);
  /* zero / negative intervals ignored; count may be anything */
  assert_int_equal(A("{\"PingInterval\":0,\"ReconnectInterval\":-5,"
                     "\"ReconnectNonce\":-1,\"ReconnectCount\":0}"),
                   0);
  assert_int_equal(c.ping_interval, 30);
  assert_int_equal(c.reconnect_interval, 120);
  assert_int_equal(c.reconnect_nonce, 30);
  assert_int_equal(c.reconnect_count, 0);
  /* wrong types and absurd values ignored */
  assert_int_equal(A("{\"PingInterval\":\"10\",\"ReconnectInterval\":1e3,"
                     "\"ReconnectNonce\":99999999999}"),
                   0);
  assert_int_equal(c.ping_interval, 30);
  assert_int_equal(c.reconnect_interval, 120);
  assert_int_equal(c.reconnect_nonce, 30);
  assert_int_equal(A("{}"), 0);
  /* not an object */
  assert_int_equal(A("[1]"), CG_EMALFORMED);
  assert_int_equal(A(""), CG_EMALFORMED);
  assert_int_equal(A("null"), CG_EMALFORMED);
  assert_int_equal(A("{\"PingInterval\":"), CG_EMALFORMED);
  assert_int_equal(cg__lark_ws_config_apply(&c, NULL, 0), CG_EMALFORMED);
  assert_int_equal(c.ping_interval, 30);
#undef A
}

static void test_code_is_final(void **state) {
  (void)state;
  static const struct {
    int64_t code;
    int final;
  } t[] = {{0, 0},          {1, 0},          {1000040343, 0}, {1000040344, 1},
           {1000040345, 1}, {1000040350, 1}, {1000040351, 1}, {2, 1},
           {-1, 1},         {500, 1}};
  for (size_t i = 0; i < CG_ARRAY_SIZE(t); i++)
    assert_int_equal(cg__lark_ws_code_is_final(t[i].code), t[i].final);
}

static void test_refusal_is_final(void **state) {
  (void)state;
  static const struct {
    int http;
    const char *hs, *auth;
    int final;
  } t[] = {
      {514, "514", "1000040350", 1}, /* too many connections */
      {400, "514", "1000040350", 1}, /* the header decides */
      {514, NULL, "1000040350", 1},  /* no header: HTTP status */
      {514, "", " 1000040350 ", 1},
      {514, "514", "1000040343", 0}, /* other auth failure: retry */
      {514, "514", NULL, 0},
      {403, NULL, NULL, 1}, /* forbidden */
      {400, "403", "", 1},
      {403, "500", "", 0},
      {500, "", "", 0},
      {502, NULL, NULL, 0},
      {200, "junk", NULL, 0},
  };
  for (size_t i = 0; i < CG_ARRAY_SIZE(t); i++)
    assert_int_equal(
        cg__lark_ws_refusal_is_final(t[i].http, t[i].hs, t[i].auth),
        t[i].final);
}

static void test_url_params(void **state) {
  (void)state;
  static const struct {
    const char *url, *dev;
    int32_t svc;
  } t[] = {
      {URL_OK, "7f3a", 33554678},
      /* the first parameter counts (Node mangles it) */
      {"wss://h/ws?device_id=d1&service_id=5", "d1", 5},
      {"wss://h/ws?service_id=5&device_id=d1", "d1", 5},
      {"wss://h/ws?fpid=1&device_id=a%2Fb+c%e4%b8%ad&service_id=%33%34",
       "a/b c\xe4\xb8\xad", 34},
      {"wss://h/ws?device_id=x&device_id=y&service_id=1&service_id=2", "x", 1},
      {"wss://h/ws?device%5Fid=k", "k", 0},
      {"wss://h/ws?device_id=&service_id=", "", 0},
      {"wss://h/ws?device_id", "", 0},
      {"wss://h/ws?&&device_id=q&&", "q", 0},
      {"wss://h/ws?x=1#device_id=z&service_id=3", NULL, 0},
      {"wss://h/ws?device_id=z#frag", "z", 0},
      {"wss://h/ws", NULL, 0},
      {"wss://h/ws?", NULL, 0},
      {"", NULL, 0},
      {"wss://h/ws?fpid=1", NULL, 0},
      /* bad escapes skip the pair */
      {"wss://h/ws?device_id=%zz&device_id=ok", "ok", 0},
      {"wss://h/ws?device_id=%00a", NULL, 0},
      {"wss://h/ws?device_id=%4", NULL, 0},
      /* service_id must be an int32; the first one counts even when junk */
      {"wss://h/ws?service_id=12x", NULL, 0},
      {"wss://h/ws?service_id=2147483647", NULL, 2147483647},
      {"wss://h/ws?service_id=2147483648", NULL, 0},
      {"wss://h/ws?service_id=-2147483648", NULL, INT32_MIN},
      {"wss://h/ws?service_id=+5", NULL, 0},
      {"wss://h/ws?service_id=%205", NULL, 0},
      {"wss://h/ws?service_id=99999999999999999999999", NULL, 0},
      {"wss://h/ws?service_id=abc&service_id=7", NULL, 0},
  };
  for (size_t i = 0; i < CG_ARRAY_SIZE(t); i++) {
    char *dev = (char *)1;
    int32_t svc = -1;
    assert_int_equal(cg__lark_ws_url_params(t[i].url, &dev, &svc), 0);
    if (t[i].dev) {
      assert_non_null(dev);
      assert_string_equal(dev, t[i].dev);
    } else {
      assert_null(dev);
    }
    assert_int_equal(svc, t[i].svc);
    free(dev);
  }
  char *dev = (char *)1;
  int32_t svc = -1;
  assert_int_equal(cg__lark_ws_url_params(NULL, &dev, &svc), 0);
  assert_null(dev);
  assert_int_equal(svc, 0);
}

static void test_url_redact(void **state) {
  (void)state;
  static const struct {
    const char *in, *out;
  } t[] = {
      {URL_OK,
       "wss://msg-frontier.feishu.cn/ws/v2?fpid=493&aid=552564&device_id=7f3a"
       "&access_key=***&service_id=33554678&ticket=***"},
      {"wss://h/ws?ticket=T&access_key=A",
       "wss://h/ws?ticket=***&access_key=***"},
      {"wss://h/ws?access%5Fkey=A&x=ticket",
       "wss://h/ws?access%5Fkey=***&x=ticket"},
      {"wss://h/ws?ticket=a&ticket=b#f", "wss://h/ws?ticket=***&ticket=***#f"},
      {"wss://h/ws?ticket&&a=1", "wss://h/ws?ticket&&a=1"},
      {"wss://h/ws?ticket=", "wss://h/ws?ticket=***"},
      {"wss://h/ws", "wss://h/ws"},
      {"", ""},
  };
  char out[512];
  for (size_t i = 0; i < CG_ARRAY_SIZE(t); i++) {
    cg__lark_ws_url_redact(t[i].in, out, sizeof out);
    assert_string_equal(out, t[i].out);
  }
  /* cut short: never a secret, always terminated */
  for (size_t cap = 1; cap < sizeof URL_OK + 8; cap++) {
    char small[sizeof URL_OK + 8];
    memset(small, 'Z', sizeof small);
    cg__lark_ws_url_redact(URL_OK, small, cap);
    assert_true(strlen(small) < cap);
    assert_null(strstr(small, "=AK"));
    assert_null(strstr(small, "=TK"));
  }
  cg__lark_ws_url_redact(URL_OK, out, 0); /* nothing written, no crash */
  cg__lark_ws_url_redact(NULL, out, sizeof out);
  assert_string_equal(out, "");
}

/* ---- fragments ----------------------------------------------------------- */

#define ADD(c, id, sum, seq, s, now)                                        \
  cg__lark_frags_add(c, id, sum, seq, (const uint8_t *)(s), strlen(s), now, \
                     &o, &on)

static void test_frags_order(void **state) {
  (void)state;
  cg__lark_frags *c = cg__lark_frags_new(1 << 20, 10000);
  uint8_t *o;
  size_t on, bytes;
  /* in order */
  assert_int_equal(ADD(c, "m1", 3, 0, "{\"a\":", 0), 0);
  assert_null(o);
  assert_int_equal(ADD(c, "m1", 3, 1, "\"x\"", 1), 0);
  assert_int_equal(cg__lark_frags_pending(c, &bytes), 1);
  assert_int_equal(bytes, 8);
  assert_int_equal(ADD(c, "m1", 3, 2, "}", 2), 1);
  assert_bytes(o, on, "{\"a\":\"x\"}", 9);
  assert_int_equal(o[on], '\0');
  free(o);
  assert_int_equal(cg__lark_frags_pending(c, &bytes), 0);
  assert_int_equal(bytes, 0);
  /* reverse order */
  assert_int_equal(ADD(c, "m2", 3, 2, "C", 0), 0);
  assert_int_equal(ADD(c, "m2", 3, 1, "B", 0), 0);
  assert_int_equal(ADD(c, "m2", 3, 0, "A", 0), 1);
  assert_bytes(o, on, "ABC", 3);
  free(o);
  /* sum 1: at once, nothing kept */
  assert_int_equal(ADD(c, "m3", 1, 0, "whole", 0), 1);
  assert_bytes(o, on, "whole", 5);
  free(o);
  assert_int_equal(cg__lark_frags_pending(c, NULL), 0);
  /* an empty fragment counts as arrived */
  assert_int_equal(ADD(c, "m4", 2, 0, "", 0), 0);
  assert_int_equal(ADD(c, "m4", 2, 1, "z", 0), 1);
  assert_bytes(o, on, "z", 1);
  free(o);
  /* a cut inside a UTF-8 character is joined as bytes */
  assert_int_equal(ADD(c, "m5", 2, 0, "a\xe4\xb8", 0), 0);
  assert_int_equal(ADD(c, "m5", 2, 1,
                       "\xad"
                       "b",
                       0),
                   1);
  assert_string_equal((char *)o,
                      "a\xe4\xb8\xad"
                      "b");
  free(o);
  cg__lark_frags_free(c);
  cg__lark_frags_free(NULL);
}

static void test_frags_bad(void **state) {
  (void)state;
  cg__lark_frags *c = cg__lark_frags_new(1 << 20, 10000);
  uint8_t *o;
  size_t on, bytes;
  /* duplicate seq replaces */
  assert_int_equal(ADD(c, "d", 2, 0, "aaaa", 0), 0);
  assert_int_equal(ADD(c, "d", 2, 0, "b", 0), 0);
  assert_int_equal(cg__lark_frags_pending(c, &bytes), 1);
  assert_int_equal(bytes, 1);
  assert_int_equal(ADD(c, "d", 2, 1, "c", 0), 1);
  assert_bytes(o, on, "bc", 2);
  free(o);
  /* sum 0 / 65, seq >= sum, ids */
  assert_int_equal(ADD(c, "x", 0, 0, "a", 0), CG_EMALFORMED);
  assert_int_equal(ADD(c, "x", CG__LARK_FRAGMENTS_MAX + 1, 0, "a", 0),
                   CG_EMALFORMED);
  assert_int_equal(ADD(c, "x", CG__LARK_FRAGMENTS_MAX, 63, "a", 0), 0);
  assert_int_equal(ADD(c, "y", 2, 2, "a", 0), CG_EMALFORMED);
  assert_int_equal(ADD(c, "y", 2, 9, "a", 0), CG_EMALFORMED);
  assert_int_equal(ADD(c, "", 2, 0, "a", 0), CG_EMALFORMED);
  assert_int_equal(
      cg__lark_frags_add(c, NULL, 2, 0, (const uint8_t *)"a", 1, 0, &o, &on),
      CG_EMALFORMED);
  char longid[CG_LIMIT_ID + 2];
  memset(longid, 'i', sizeof longid - 1);
  longid[sizeof longid - 1] = '\0';
  assert_int_equal(ADD(c, longid, 2, 0, "a", 0), CG_EMALFORMED);
  longid[CG_LIMIT_ID] = '\0';
  assert_int_equal(ADD(c, longid, 2, 0, "a", 0), 0);
  assert_null(o);
  /* a changed sum is refused and the pending message stays */
  assert_int_equal(ADD(c, "s", 3, 0, "a", 0), 0);
  assert_int_equal(ADD(c, "s", 2, 1, "b", 0), CG_EMALFORMED);
  assert_int_equal(ADD(c, "s", 1, 0, "b", 0), CG_EMALFORMED);
  assert_int_equal(ADD(c, "s", 3, 1, "b", 0), 0);
  assert_int_equal(ADD(c, "s", 3, 2, "c", 0), 1);
  assert_bytes(o, on, "abc", 3);
  free(o);
  assert_int_equal(cg__lark_frags_pending(c, NULL), 2); /* x and longid */
  cg__lark_frags_free(c);
}

static void test_frags_ttl(void **state) {
  (void)state;
  cg__lark_frags *c = cg__lark_frags_new(1 << 20, 100);
  uint8_t *o;
  size_t on;
  assert_int_equal(ADD(c, "t", 2, 0, "a", 1000), 0);
  assert_int_equal(ADD(c, "u", 2, 0, "a", 1050), 0);
  assert_int_equal(cg__lark_frags_sweep(c, 1099), 0);
  assert_int_equal(cg__lark_frags_pending(c, NULL), 2);
  /* the TTL runs from the first fragment, not the latest */
  assert_int_equal(ADD(c, "t", 2, 0, "a", 1090), 0);
  assert_int_equal(cg__lark_frags_sweep(c, 1100), 1);
  assert_int_equal(cg__lark_frags_pending(c, NULL), 1);
  /* the completing fragment after expiry starts over (swept first) */
  assert_int_equal(ADD(c, "u", 2, 1, "b", 1150), 0);
  assert_int_equal(cg__lark_frags_pending(c, NULL), 1);
  assert_int_equal(ADD(c, "u", 2, 0, "a", 1160), 1);
  assert_bytes(o, on, "ab", 2);
  free(o);
  /* a clock that goes backwards expires nothing */
  assert_int_equal(ADD(c, "v", 2, 0, "a", 5000), 0);
  assert_int_equal(cg__lark_frags_sweep(c, 10), 0);
  assert_int_equal(cg__lark_frags_sweep(c, 5100), 1);
  cg__lark_frags_free(c);
}

static void test_frags_limits(void **state) {
  (void)state;
  cg__lark_frags *c = cg__lark_frags_new(10, 1000);
  uint8_t *o;
  size_t on, bytes;
  assert_int_equal(ADD(c, "a", 2, 0, "123456", 0), 0);
  /* the cache is full: the new message is dropped, the old one stays */
  assert_int_equal(ADD(c, "b", 2, 0, "123456", 0), CG_ETOOBIG);
  assert_int_equal(cg__lark_frags_pending(c, &bytes), 1);
  assert_int_equal(bytes, 6);
  /* a message that outgrows the cache is dropped */
  assert_int_equal(ADD(c, "a", 2, 1, "12345", 0), CG_ETOOBIG);
  assert_int_equal(cg__lark_frags_pending(c, &bytes), 0);
  assert_int_equal(bytes, 0);
  /* exactly max_bytes fits */
  assert_int_equal(ADD(c, "a", 2, 0, "12345", 0), 0);
  assert_int_equal(ADD(c, "a", 2, 1, "12345", 0), 1);
  free(o);
  /* sum 1 is not cached, yet bounded by the message limit */
  assert_int_equal(ADD(c, "big", 1, 0, "0123456789abcdef", 0), 1);
  free(o);
  cg__lark_frags_free(c);

  /* CG__LARK_MESSAGE_MAX per message */
  c = cg__lark_frags_new(4 * (size_t)CG__LARK_MESSAGE_MAX, 1000);
  size_t half = CG__LARK_MESSAGE_MAX / 2 + 1;
  uint8_t *p = calloc(1, CG__LARK_MESSAGE_MAX + 1);
  assert_int_equal(cg__lark_frags_add(c, "m", 2, 0, p, half, 0, &o, &on), 0);
  assert_int_equal(cg__lark_frags_add(c, "m", 2, 1, p, half, 0, &o, &on),
                   CG_ETOOBIG);
  assert_int_equal(cg__lark_frags_pending(c, NULL), 0);
  assert_int_equal(
      cg__lark_frags_add(c, "m", 1, 0, p, CG__LARK_MESSAGE_MAX + 1, 0, &o, &on),
      CG_ETOOBIG);
  free(p);
  cg__lark_frags_free(c);

  /* pending messages are capped too (empty fragments cost no bytes) */
  c = cg__lark_frags_new(1 << 20, 1000);
  char id[32];
  for (unsigned i = 0; i < CG__LARK_FRAGS_PENDING_MAX; i++) {
    snprintf(id, sizeof id, "p%u", i);
    assert_int_equal(ADD(c, id, 2, 0, "", 0), 0);
  }
  assert_int_equal(ADD(c, "one-more", 2, 0, "", 0), CG_ETOOBIG);
  assert_int_equal(ADD(c, "p7", 2, 1, "x", 0), 1); /* existing ones proceed */
  free(o);
  cg__lark_frags_free(c);
}

static void test_frags_interleaved(void **state) {
  (void)state;
  enum { MSGS = 50, PARTS = 4 };
  cg__lark_frags *c = cg__lark_frags_new(1 << 20, 10000);
  uint8_t *o;
  size_t on;
  int done = 0;
  /* round-robin across messages, each message's parts in a scrambled order */
  static const unsigned order[PARTS] = {2, 0, 3, 1};
  for (unsigned r = 0; r < PARTS; r++) {
    for (unsigned m = 0; m < MSGS; m++) {
      char id[16], part[32];
      unsigned seq = order[(r + m) % PARTS];
      snprintf(id, sizeof id, "msg-%u", m);
      snprintf(part, sizeof part, "<%u.%u>", m, seq);
      int rc = ADD(c, id, PARTS, seq, part, r);
      if (r < PARTS - 1) {
        assert_int_equal(rc, 0);
        continue;
      }
      assert_int_equal(rc, 1);
      char want[128];
      snprintf(want, sizeof want, "<%u.0><%u.1><%u.2><%u.3>", m, m, m, m);
      assert_bytes(o, on, want, strlen(want));
      free(o);
      done++;
    }
  }
  assert_int_equal(done, MSGS);
  assert_int_equal(cg__lark_frags_pending(c, NULL), 0);
  cg__lark_frags_free(c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_ping_node_bytes),
      cmocka_unit_test(test_ping_decode_both),
      cmocka_unit_test(test_round_trip_full),
      cmocka_unit_test(test_round_trip_presence),
      cmocka_unit_test(test_unknown_fields_skipped),
      cmocka_unit_test(test_missing_required),
      cmocka_unit_test(test_header_incomplete),
      cmocka_unit_test(test_truncated_every_offset),
      cmocka_unit_test(test_garbage_and_limits),
      cmocka_unit_test(test_encode_limits),
      cmocka_unit_test(test_ack_card),
      cmocka_unit_test(test_ack_without_result),
      cmocka_unit_test(test_ack_parse),
      cmocka_unit_test(test_endpoint_request),
      cmocka_unit_test(test_endpoint_parse),
      cmocka_unit_test(test_config_apply),
      cmocka_unit_test(test_code_is_final),
      cmocka_unit_test(test_refusal_is_final),
      cmocka_unit_test(test_url_params),
      cmocka_unit_test(test_url_redact),
      cmocka_unit_test(test_frags_order),
      cmocka_unit_test(test_frags_bad),
      cmocka_unit_test(test_frags_ttl),
      cmocka_unit_test(test_frags_limits),
      cmocka_unit_test(test_frags_interleaved),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
