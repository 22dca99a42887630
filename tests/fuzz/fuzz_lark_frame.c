/* libFuzzer target for the Lark long-connection codec
 * (src/lib/codec/lark_frame.c).
 *
 * Input: one binary WebSocket message (a pbbp2 frame). The harness decodes
 * it and, when it decodes:
 *   - re-encodes it: the bytes decode to the same frame and encode to the
 *     same bytes again (presence of optional fields survives);
 *   - ACKs it with the payload as the handler's result: the ACK decodes to
 *     the request plus a last header biz_rt, and its payload parses back to
 *     code 200 and the same result bytes;
 *   - feeds the payload to the fragment cache under the frame's message_id,
 *     sum and seq headers (one cache for the whole run, time advancing by
 *     one ms per input, a short TTL so entries come and go);
 *   - feeds the payload to the endpoint-answer, ClientConfig and URL parsers
 *     (as JSON, and as a NUL-terminated URL).
 * Oracles besides the sanitizers: the round trips above; a failed decode
 * leaves a zeroed frame and a reason. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cardgate/error.h"
#include "lib/codec/lark_frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void same_str(const char *a, const char *b) {
  if ((a == NULL) != (b == NULL) || (a && strcmp(a, b) != 0)) abort();
}

/* a and b agree, b having extra headers after a's. */
static void same_frame(const cg__lark_frame *a, const cg__lark_frame *b,
                       size_t extra) {
  if (a->seq_id != b->seq_id || a->log_id != b->log_id ||
      a->service != b->service || a->method != b->method ||
      a->n_headers + extra != b->n_headers)
    abort();
  for (size_t i = 0; i < a->n_headers; i++) {
    same_str(a->headers[i].key, b->headers[i].key);
    same_str(a->headers[i].value, b->headers[i].value);
  }
  same_str(a->payload_encoding, b->payload_encoding);
  same_str(a->payload_type, b->payload_type);
  same_str(a->log_id_new, b->log_id_new);
}

static int parse_u32(const char *s, uint32_t *out) {
  if (!s || !*s) return -1;
  uint64_t v = 0;
  for (; *s; s++) {
    if (*s < '0' || *s > '9') return -1;
    v = v * 10 + (uint64_t)(*s - '0');
    if (v > UINT32_MAX) return -1;
  }
  *out = (uint32_t)v;
  return 0;
}

static void check_frags(const cg__lark_frame *f, uint64_t now) {
  static cg__lark_frags *cache;
  if (!cache && !(cache = cg__lark_frags_new(1u << 16, 50))) abort();
  const char *id = cg__lark_frame_header(f, "message_id");
  uint32_t sum, seq;
  if (parse_u32(cg__lark_frame_header(f, "sum"), &sum) ||
      parse_u32(cg__lark_frame_header(f, "seq"), &seq))
    return;
  uint8_t *out = (uint8_t *)1;
  size_t out_len = 7;
  int rc = cg__lark_frags_add(cache, id, sum, seq, f->payload, f->payload_len,
                              now, &out, &out_len);
  if (rc == 1) {
    if (!out || out[out_len] != '\0') abort();
    if (sum == 1 && (out_len != f->payload_len ||
                     (out_len && memcmp(out, f->payload, out_len) != 0)))
      abort();
    free(out);
  } else if (out != NULL || out_len != 0) {
    abort();
  } else if (rc != 0 && rc != CG_EMALFORMED && rc != CG_ETOOBIG) {
    abort();
  }
  size_t bytes;
  if (cg__lark_frags_pending(cache, &bytes) > CG__LARK_FRAGS_PENDING_MAX ||
      bytes > (1u << 16))
    abort();
}

static void check_text(const uint8_t *p, size_t n) {
  cg__lark_ws_endpoint e;
  char err[128];
  if (cg__lark_ws_endpoint_parse((const char *)p, n, &e, err, sizeof err) == 0)
    if (e.code == 0 && !e.url) abort();
  cg__lark_ws_endpoint_clear(&e);
  cg__lark_ws_config c;
  cg__lark_ws_config_defaults(&c);
  cg__lark_ws_config_apply(&c, (const char *)p, n);
  if (c.ping_interval <= 0 || c.reconnect_interval <= 0 ||
      c.reconnect_nonce < 0)
    abort();
  char *url = malloc(n + 1);
  if (!url) return;
  memcpy(url, p, n);
  url[n] = '\0';
  char *dev = NULL;
  int32_t svc;
  if (cg__lark_ws_url_params(url, &dev, &svc) == 0) free(dev);
  char red[96];
  cg__lark_ws_url_redact(url, red, sizeof red);
  if (strlen(red) >= sizeof red) abort();
  free(url);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static uint64_t now;
  now++;
  cg__lark_frame f, g, a;
  char err[160];
  int rc = cg__lark_frame_decode(data, size, &f, err, sizeof err);
  if (rc) {
    if (rc != CG_EMALFORMED && rc != CG_ETOOBIG && rc != CG_ENOMEM) abort();
    if (f.headers || f.n_headers || f.payload || f.payload_encoding ||
        f.payload_type || f.log_id_new || f.has_payload || !err[0])
      abort();
    return 0;
  }
  if (f.n_headers > CG__LARK_FRAME_MAX_HEADERS) abort();

  /* re-encode: same frame, then the same bytes */
  cg_buf b1, b2;
  cg_buf_init(&b1, 2 * CG__LARK_FRAME_MAX);
  cg_buf_init(&b2, 2 * CG__LARK_FRAME_MAX);
  if (cg__lark_frame_encode(&f, &b1) != 0) abort();
  if (cg__lark_frame_decode((const uint8_t *)b1.data, b1.len, &g, err,
                            sizeof err) != 0)
    abort();
  same_frame(&f, &g, 0);
  if (f.has_payload != g.has_payload || f.payload_len != g.payload_len ||
      (f.payload_len && memcmp(f.payload, g.payload, f.payload_len) != 0))
    abort();
  if (cg__lark_frame_encode(&g, &b2) != 0 || b1.len != b2.len ||
      memcmp(b1.data, b2.data, b1.len) != 0)
    abort();
  cg__lark_frame_clear(&g);

  /* ACK with the payload as the result */
  cg_buf_reset(&b2);
  const char *res = f.has_payload ? (const char *)f.payload : NULL;
  if (res && !f.payload_len) res = "";
  int arc =
      cg__lark_frame_ack(&f, (int64_t)now - 3, 200, res, f.payload_len, &b2);
  if (arc != 0 && arc != CG_ETOOBIG) abort();
  /* the ACK of a frame with the most headers has one too many for the
   * decoder (the peer's decoders have no such limit) */
  if (arc == 0 && f.n_headers == CG__LARK_FRAME_MAX_HEADERS) {
    if (cg__lark_frame_decode((const uint8_t *)b2.data, b2.len, &a, err,
                              sizeof err) != CG_EMALFORMED)
      abort();
  } else if (arc == 0) {
    if (cg__lark_frame_decode((const uint8_t *)b2.data, b2.len, &a, err,
                              sizeof err) != 0)
      abort();
    same_frame(&f, &a, 1);
    if (strcmp(a.headers[a.n_headers - 1].key, "biz_rt") != 0) abort();
    int code = 0;
    char *d = NULL;
    size_t dn = 0;
    if (cg__lark_ack_parse(a.payload, a.payload_len, &code, &d, &dn) != 0 ||
        code != 200)
      abort();
    if ((d == NULL) != (res == NULL)) abort();
    if (d && (dn != f.payload_len || (dn && memcmp(d, res, dn) != 0))) abort();
    free(d);
    cg__lark_frame_clear(&a);
  }
  cg_buf_free(&b1);
  cg_buf_free(&b2);

  check_frags(&f, now);
  if (f.has_payload) check_text(f.payload, f.payload_len);
  cg__lark_frame_clear(&f);
  return 0;
}
