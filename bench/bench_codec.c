/* Micro-benchmark of the Lark webhook codec: cg__lark_decode +
 * cg__lark_encode_reply on one signed, AES-encrypted legacy card click (the
 * request bench/run.sh sends), with and without prepared keys
 * (cg__lark_keys). A development tool, not a test: it prints ns/op.
 *
 * Build: CG_BUILD_TYPE=Release scripts/build.sh build-perf-rel
 *   -DCG_BUILD_TESTS=OFF -DCG_BUILD_BENCH=ON, then
 *   build-perf-rel/bench/bench_codec [iterations, default 200000] [only]
 * where only (e.g. "prepared keys, card_text" for perf record) runs just the
 * configurations whose label contains it.
 * -DBENCH_NO_KEYS builds it against a tree without cg__lark_keys (to measure
 * the code before prepared keys existed). */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cardgate/lark.h"
#include "common/common.h"
#include "common/limits.h"
#include "lib/codec/lark_webhook.h"
#include "lib/core/reply_int.h"

/* The secrets and the click of bench/run.sh / bench/gen_requests.mjs. */
#define TOK "bench-verification-token"
#define KEY "bench-encrypt-key"
#define TS "1700000000"
#define NONCE "5f2b8c0d9e1a4b37"
#define PLAIN                                                                \
  "{\"open_id\":\"ou_bench_7\",\"open_message_id\":\"om_bench_fixed\","      \
  "\"open_chat_id\":\"oc_bench\",\"tenant_key\":\"tenant_bench\","           \
  "\"token\":\"c-3f9a0b1c2d3e4f50\",\"action\":{\"value\":{\"button_type\":" \
  "\"public_publish\",\"button_id\":\"1626958617426\"},\"tag\":\"button\"}}"
/* bench/stateless.json's card, as the workflow engine serializes it. */
#define CARD                                                                \
  "{\"config\":{\"wide_screen_mode\":true},\"elements\":[{\"tag\":\"div\"," \
  "\"text\":{\"tag\":\"lark_md\",\"content\":\"\xe5\xb7\xb2\xe5\xae\x8c"    \
  "\xe6\x88\x90\"}}]}"

static int64_t now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static void die(const char *what) {
  fprintf(stderr, "bench_codec: %s\n", what);
  exit(1);
}

typedef struct bench {
  cg__lark_secrets s;
  cg_http_request req;
  const cg_reply *reply;
  cg_buf out;
} bench;

/* One request as the server handles it: decode, encode the reply, free. */
static void one(bench *b, int check) {
  cg__lark_msg m;
  cg__lark_error e;
  int st = 0;
  if (cg__lark_decode(&b->s, CG_LARK_ENDPOINT_CARD, &b->req, 0, &m, &e) != 0)
    die(e.msg);
  cg_buf_reset(&b->out);
  if (m.type != CG__LARK_MSG_ACTION ||
      cg__lark_encode_reply(&m.action->pub, b->reply, &st, &b->out) != 0)
    die("encode failed");
  if (check && (st != 200 || strcmp(b->out.data, CARD) != 0 ||
                strcmp(m.action->pub.value_json,
                       "{\"button_type\":\"public_publish\",\"button_id\":"
                       "\"1626958617426\"}") != 0))
    die("unexpected result");
  cg__lark_msg_clear(&m);
}

static const char *only; /* label filter, or NULL */

/* Best of 3 runs of n iterations, in ns per request. */
static double measure(bench *b, long n) {
  one(b, 1);
  for (long i = 0; i < n / 20; i++) one(b, 0); /* warm-up */
  double best = 0;
  for (int run = 0; run < 3; run++) {
    int64_t t0 = now_ns();
    for (long i = 0; i < n; i++) one(b, 0);
    double ns = (double)(now_ns() - t0) / (double)n;
    if (run == 0 || ns < best) best = ns;
  }
  return best;
}

static void report(bench *b, long n, const char *label, const cg_reply *r) {
  if (only && !strstr(label, only)) return;
  b->reply = r;
  printf("  %-34s %8.0f ns/op\n", label, measure(b, n));
}

int main(int argc, char **argv) {
  long n = argc > 1 ? strtol(argv[1], NULL, 10) : 200000;
  only = argc > 2 ? argv[2] : NULL;
  if (n <= 0) die("iterations must be positive");

  static const unsigned char iv[16] = {3, 1, 4, 1, 5, 9, 2, 6,
                                       5, 3, 5, 8, 9, 7, 9, 3};
  char *b64 = NULL;
  if (cg_lark_encrypt(KEY, PLAIN, strlen(PLAIN), iv, &b64) != 0) die("encrypt");
  size_t blen = strlen(b64) + 14;
  char *body = malloc(blen + 1);
  if (!body) die("out of memory");
  snprintf(body, blen + 1, "{\"encrypt\":\"%s\"}", b64);
  free(b64);
  char sig[65];
  /* SHA-256 + encrypt key, as gen_requests.mjs signs. */
  cg_lark_sign_event(TS, NONCE, KEY, body, blen, sig);

  bench b;
  memset(&b, 0, sizeof b);
  b.s.verification_token = TOK;
  b.s.encrypt_key = KEY;
  b.req.body = body;
  b.req.body_len = blen;
  b.req.timestamp = TS;
  b.req.timestamp_len = strlen(TS);
  b.req.nonce = NONCE;
  b.req.nonce_len = strlen(NONCE);
  b.req.signature = sig;
  b.req.signature_len = 64;
  cg_buf_init(&b.out, CG_LIMIT_BODY_HARD);

  /* The workflow engine's reply: the card and its text, serialized once. */
  json_t *card = json_loads(CARD, 0, NULL);
  char *text = card ? json_dumps(card, JSON_COMPACT) : NULL;
  cg_reply *with_text = text ? cg__reply_card_take(card, text) : NULL;
  /* A handler's cg_reply_card: a parsed object only. */
  int err;
  cg_reply *parsed = cg_reply_card(CARD, &err);
  if (!with_text || !parsed) die("reply");

  printf(
      "cg__lark_decode + cg__lark_encode_reply, signed encrypted legacy "
      "click (%zu-byte body), %ld iterations, best of 3\n",
      blen, n);
  report(&b, n, "per-call secrets, card_text reply", with_text);
  report(&b, n, "per-call secrets, parsed card", parsed);
#ifndef BENCH_NO_KEYS
  cg__lark_keys *k = NULL;
  if (cg__lark_keys_new(TOK, KEY, &k) != 0) die("cg__lark_keys_new");
  b.s.keys = k;
  report(&b, n, "prepared keys, card_text reply", with_text);
  report(&b, n, "prepared keys, parsed card", parsed);
  cg__lark_keys_free(k);
#endif

  cg_reply_free(with_text);
  cg_reply_free(parsed);
  cg_buf_free(&b.out);
  free(body);
  return 0;
}
