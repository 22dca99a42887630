/* Lark signatures and payload encryption (include/cardgate/lark.h) and the
 * prepared form of the secrets (cg__lark_keys, lark_webhook.h).
 *
 * Facts: ../shared/protocols/lark.md §0.3 (AES-256-CBC, key = SHA-256 of the
 * Encrypt Key, base64(iv || ciphertext), PKCS#7) and §0.4 (signatures:
 * hex_lower(HASH(timestamp || nonce || secret || raw body))).
 *
 * Pure functions: no globals, nothing cached between calls except in a
 * cg__lark_keys the caller made and passes in. Without one, every call
 * derives the AES key and lets OpenSSL find the algorithms (an implicit
 * fetch: a lock and a lookup per EVP_*Init); with one, the derived key's
 * schedule, the fetched algorithms and the contexts are reused.
 *
 * The decryptor is strict where the SDKs are lenient (lark.md §0.3 step 5):
 * canonical base64 only, whole blocks only, and real PKCS#7 — a request that
 * fails any of these is refused, never repaired. It makes a single
 * allocation: the base64 is decoded into the output buffer (the IV aside) and
 * decrypted in place. */
#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/limits.h"
#include "cardgate/lark.h"
#include "lark_webhook.h"

enum { AES_BLOCK = 16, AES_KEY_LEN = 32, SHA1_LEN = 20, SHA256_LEN = 32 };

static const char hex_digits[] = "0123456789abcdef";

static size_t str_len(const char *s) {
  return s ? strlen(s) : 0;
}

/* ---- prepared secrets ---------------------------------------------------- */

struct cg__lark_keys {
  char *token; /* copies, to check they match the secrets they come with */
  char *key;
  EVP_MD *sha1, *sha256; /* fetched once */
  EVP_CIPHER *aes;       /* AES-256-CBC, fetched once; NULL without a key */
  EVP_MD_CTX *md;        /* scratch for signatures */
  EVP_CIPHER_CTX *dec;   /* decryption with the key schedule already set */
};

/* key = SHA-256(encrypt_key as UTF-8) — lark.md §0.3 step 1. */
static int derive_key(const EVP_MD *sha256, const char *encrypt_key,
                      unsigned char key[AES_KEY_LEN]) {
  unsigned kl = 0;
  if (EVP_Digest(encrypt_key, strlen(encrypt_key), key, &kl,
                 sha256 ? sha256 : EVP_sha256(), NULL) != 1 ||
      kl != AES_KEY_LEN)
    return CG_ENOMEM;
  return 0;
}

static char *dup_secret(const char *s, int *rc) {
  if (!s || !s[0]) return NULL;
  size_t n = strlen(s);
  char *d = malloc(n + 1);
  if (!d)
    *rc = CG_ENOMEM;
  else
    memcpy(d, s, n + 1);
  return d;
}

static void free_secret(char *s) {
  if (s) OPENSSL_cleanse(s, strlen(s));
  free(s);
}

int cg__lark_keys_new(const char *verification_token, const char *encrypt_key,
                      cg__lark_keys **out) {
  if (!out) return CG_EINVAL;
  *out = NULL;
  cg__lark_keys *k = calloc(1, sizeof *k);
  if (!k) return CG_ENOMEM;
  int rc = 0;
  k->token = dup_secret(verification_token, &rc);
  k->key = dup_secret(encrypt_key, &rc);
  if (rc) goto fail;
  /* A provider without SHA-1 (FIPS) would fail here, at start-up, rather
   * than on the first legacy callback. */
  k->sha1 = EVP_MD_fetch(NULL, "SHA1", NULL);
  k->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
  k->md = EVP_MD_CTX_new();
  if (!k->sha1 || !k->sha256 || !k->md) {
    rc = k->md ? CG_ECRYPTO : CG_ENOMEM;
    goto fail;
  }
  if (k->key) {
    unsigned char key[AES_KEY_LEN];
    k->aes = EVP_CIPHER_fetch(NULL, "AES-256-CBC", NULL);
    k->dec = EVP_CIPHER_CTX_new();
    if (!k->aes || !k->dec) {
      rc = k->dec ? CG_ECRYPTO : CG_ENOMEM;
      goto fail;
    }
    rc = derive_key(k->sha256, k->key, key);
    /* The key schedule is made here, once; each request only sets its IV.
     * Padding is checked by hand (strictly), so OpenSSL's is off. */
    if (!rc && (EVP_DecryptInit_ex2(k->dec, k->aes, key, NULL, NULL) != 1 ||
                EVP_CIPHER_CTX_set_padding(k->dec, 0) != 1))
      rc = CG_ECRYPTO;
    OPENSSL_cleanse(key, sizeof key);
    if (rc) goto fail;
  }
  *out = k;
  return 0;
fail:
  cg__lark_keys_free(k);
  return rc;
}

void cg__lark_keys_free(cg__lark_keys *k) {
  if (!k) return;
  free_secret(k->token);
  free_secret(k->key);
  EVP_MD_free(k->sha1);
  EVP_MD_free(k->sha256);
  EVP_CIPHER_free(k->aes);
  EVP_MD_CTX_free(k->md);
  EVP_CIPHER_CTX_free(k->dec); /* cleanses the key schedule */
  free(k);
}

static int same_secret(const char *a, const char *b) {
  int ca = a && a[0], cb = b && b[0];
  return ca == cb && (!ca || strcmp(a, b) == 0);
}

int cg__lark_keys_match(const cg__lark_keys *k, const char *verification_token,
                        const char *encrypt_key) {
  return k && same_secret(k->token, verification_token) &&
         same_secret(k->key, encrypt_key);
}

/* ---- signatures ---------------------------------------------------------- */

/* hex_lower(md(ts || nonce || secret || body)) into out (2*md_len + 1 bytes),
 * on ctx (reused) or a context of its own (ctx NULL). On an OpenSSL failure
 * (out of memory) out is "", which can never equal a real signature: callers
 * compare full-length digests only. */
static void lark_sign(EVP_MD_CTX *ctx, const EVP_MD *md, unsigned md_len,
                      const char *ts, size_t ts_len, const char *nonce,
                      size_t nonce_len, const char *secret, size_t secret_len,
                      const void *body, size_t body_len, char *out) {
  unsigned char d[EVP_MAX_MD_SIZE];
  unsigned dl = 0;
  EVP_MD_CTX *own = ctx ? NULL : EVP_MD_CTX_new();
  EVP_MD_CTX *c = ctx ? ctx : own;
  int ok = c != NULL && EVP_DigestInit_ex2(c, md, NULL) == 1 &&
           (ts_len == 0 || EVP_DigestUpdate(c, ts, ts_len) == 1) &&
           (nonce_len == 0 || EVP_DigestUpdate(c, nonce, nonce_len) == 1) &&
           (secret_len == 0 || EVP_DigestUpdate(c, secret, secret_len) == 1) &&
           (body_len == 0 || EVP_DigestUpdate(c, body, body_len) == 1) &&
           EVP_DigestFinal_ex(c, d, &dl) == 1 && dl == md_len;
  EVP_MD_CTX_free(own);
  if (!ok) {
    out[0] = '\0';
    return;
  }
  for (unsigned i = 0; i < md_len; i++) {
    out[2 * i] = hex_digits[d[i] >> 4];
    out[2 * i + 1] = hex_digits[d[i] & 15];
  }
  out[2 * md_len] = '\0';
  OPENSSL_cleanse(d, sizeof d);
}

void cg__lark_sign(const cg__lark_keys *k, cg__lark_hash h, const char *ts,
                   size_t ts_len, const char *nonce, size_t nonce_len,
                   const char *secret, size_t secret_len, const void *body,
                   size_t body_len, char *out) {
  int sha256 = h == CG__LARK_SHA256;
  const EVP_MD *md =
      k ? (sha256 ? k->sha256 : k->sha1) : (sha256 ? EVP_sha256() : EVP_sha1());
  lark_sign(k ? k->md : NULL, md, sha256 ? SHA256_LEN : SHA1_LEN, ts, ts_len,
            nonce, nonce_len, secret, secret_len, body, body_len, out);
}

void cg_lark_sign_legacy(const char *timestamp, const char *nonce,
                         const char *verification_token, const void *body,
                         size_t body_len, char out[41]) {
  cg__lark_sign(NULL, CG__LARK_SHA1, timestamp, str_len(timestamp), nonce,
                str_len(nonce), verification_token, str_len(verification_token),
                body, body_len, out);
}

void cg_lark_sign_event(const char *timestamp, const char *nonce,
                        const char *encrypt_key, const void *body,
                        size_t body_len, char out[65]) {
  cg__lark_sign(NULL, CG__LARK_SHA256, timestamp, str_len(timestamp), nonce,
                str_len(nonce), encrypt_key, str_len(encrypt_key), body,
                body_len, out);
}

int cg_consttime_eq(const void *a, size_t a_len, const void *b, size_t b_len) {
  /* Compare the common prefix whatever the lengths, so the time taken depends
   * on the lengths only, never on the contents. */
  size_t n = a_len < b_len ? a_len : b_len;
  int diff = n ? CRYPTO_memcmp(a, b, n) : 0;
  return (a_len == b_len) & (diff == 0);
}

/* ---- base64 (RFC 4648 §4, standard alphabet, '=' padding) -------------- */

/* 0..63 for a character of the standard alphabet, 0x80 for anything else
 * ('=' and NUL included), so one OR over a quad tells whether all four are
 * valid. Read-only data, not state. */
/* clang-format off */
#define X 0x80
static const unsigned char b64_table[256] = {
    X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  /* 0x00 */
    X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  /* 0x10 */
    X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  62, X,  X,  X,  63, /* + / */
    52, 53, 54, 55, 56, 57, 58, 59, 60, 61, X,  X,  X,  X,  X,  X,  /* 0-9 */
    X,  0,  1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, /* A-O */
    15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, X,  X,  X,  X,  X,  /* P-Z */
    X,  26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, /* a-o */
    41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, X,  X,  X,  X,  X,  /* p-z */
    X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  /* 0x80-0xff */
    X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,
    X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,
    X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,
    X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,
    X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,
    X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,
    X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,
};
#undef X
/* clang-format on */

/* Decodes nq whole quads (no '=' allowed) from p into o (3*nq bytes). 0, or
 * -1 on a byte outside the alphabet. Four characters per step, one table
 * look-up each; invalid bytes are collected in one OR, checked once. */
static int b64_quads(const unsigned char *p, size_t nq, unsigned char *o) {
  for (; nq; nq--, p += 4, o += 3) {
    unsigned a = b64_table[p[0]], b = b64_table[p[1]], c = b64_table[p[2]],
             d = b64_table[p[3]];
    if ((a | b | c | d) & 0x80) return -1;
    unsigned v = a << 18 | b << 12 | c << 6 | d;
    o[0] = (unsigned char)(v >> 16);
    o[1] = (unsigned char)(v >> 8);
    o[2] = (unsigned char)v;
  }
  return 0;
}

/* Strict decode of s[0..n) into out (room for n/4*3 bytes). Rejects: a length
 * that is not a multiple of 4, any byte outside the alphabet (whitespace
 * included), '=' anywhere but the last one or two positions, and non-zero
 * bits under the padding (non-canonical encodings). Returns the decoded
 * length, or (size_t)-1. */
static size_t b64_decode_strict(const char *s, size_t n, unsigned char *out) {
  if (n == 0 || n % 4 != 0) return (size_t)-1;
  const unsigned char *p = (const unsigned char *)s;
  size_t pad = 0;
  if (p[n - 1] == '=') pad = p[n - 2] == '=' ? 2 : 1;
  size_t full = n / 4 - (pad ? 1 : 0); /* quads without '=' */
  if (b64_quads(p, full, out) != 0) return (size_t)-1;
  size_t o = full * 3;
  if (pad) {
    const unsigned char *q = p + full * 4;
    unsigned a = b64_table[q[0]], b = b64_table[q[1]];
    if ((a | b) & 0x80) return (size_t)-1;
    if (pad == 2) {
      if (b & 15) return (size_t)-1; /* non-canonical trailing bits */
      out[o++] = (unsigned char)(a << 2 | b >> 4);
    } else {
      unsigned c = b64_table[q[2]];
      if (c & 0x80 || c & 3) return (size_t)-1;
      out[o++] = (unsigned char)(a << 2 | b >> 4);
      out[o++] = (unsigned char)((b & 15) << 4 | c >> 2);
    }
  }
  return o;
}

int cg_lark_encrypt(const char *encrypt_key, const void *plain,
                    size_t plain_len, const unsigned char *iv, char **out) {
  if (!out) return CG_EINVAL;
  *out = NULL;
  if (!encrypt_key || (!plain && plain_len) || plain_len > CG_LIMIT_BODY_HARD)
    return CG_EINVAL;

  unsigned char key[AES_KEY_LEN];
  int rc = derive_key(NULL, encrypt_key, key);
  if (rc) return rc;

  size_t ct_cap = (plain_len / AES_BLOCK + 1) * AES_BLOCK; /* PKCS#7 */
  size_t raw_cap = AES_BLOCK + ct_cap;
  unsigned char *raw = malloc(raw_cap);
  size_t b64_len = (raw_cap + 2) / 3 * 4;
  char *b64 = malloc(b64_len + 1);
  EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
  if (!raw || !b64 || !ctx) {
    rc = CG_ENOMEM;
    goto done;
  }
  if (iv) {
    memcpy(raw, iv, AES_BLOCK);
  } else if (RAND_bytes(raw, AES_BLOCK) != 1) {
    rc = CG_ECRYPTO; /* no randomness: refuse rather than use a fixed IV */
    goto done;
  }
  int l1 = 0, l2 = 0;
  if (EVP_EncryptInit_ex(ctx, EVP_aes_256_cbc(), NULL, key, raw) != 1 ||
      EVP_EncryptUpdate(ctx, raw + AES_BLOCK, &l1,
                        plain_len ? plain : (const void *)"",
                        (int)plain_len) != 1 ||
      EVP_EncryptFinal_ex(ctx, raw + AES_BLOCK + l1, &l2) != 1 ||
      (size_t)l1 + (size_t)l2 != ct_cap) {
    rc = CG_ENOMEM;
    goto done;
  }
  int n = EVP_EncodeBlock((unsigned char *)b64, raw, (int)raw_cap);
  if (n < 0 || (size_t)n != b64_len) {
    rc = CG_ENOMEM;
    goto done;
  }
  b64[b64_len] = '\0';
  *out = b64;
  b64 = NULL;
  rc = 0;
done:
  EVP_CIPHER_CTX_free(ctx);
  OPENSSL_cleanse(key, sizeof key);
  free(raw);
  free(b64);
  return rc;
}

int cg__lark_decrypt(const cg__lark_keys *k, const char *encrypt_key,
                     const char *b64, size_t b64_len, char **out,
                     size_t *out_len) {
  if (!out) return CG_EINVAL;
  *out = NULL;
  if (out_len) *out_len = 0;
  if ((k ? !k->dec : !encrypt_key) || (!b64 && b64_len)) return CG_EINVAL;
  if (b64_len > CG_LIMIT_BODY_HARD) return CG_ETOOBIG;
  /* Length checks before any work (lark.md §0.3 step 3): an IV and at least
   * one whole block. */
  if (b64_len == 0 || b64_len % 4 != 0) return CG_EMALFORMED;
  size_t pad = b64[b64_len - 1] == '=' ? (b64[b64_len - 2] == '=' ? 2 : 1) : 0;
  size_t raw_len = b64_len / 4 * 3 - pad;
  if (raw_len < 2 * AES_BLOCK || raw_len % AES_BLOCK != 0) return CG_EMALFORMED;

  /* IV || ciphertext. The first 6 quads (18 bytes: the IV and the first two
   * ciphertext bytes) are decoded aside, the rest straight after those two
   * bytes, so the ciphertext starts at buf[0], is decrypted in place and is
   * the output: no copy. raw_len >= 32 means b64_len >= 44 > 24. */
  enum { HEAD_QUADS = 6, HEAD_BYTES = 18 };
  unsigned char head[HEAD_BYTES];
  size_t ct_len = raw_len - AES_BLOCK;
  const unsigned char *p = (const unsigned char *)b64;
  if (b64_quads(p, HEAD_QUADS, head) != 0) return CG_EMALFORMED;
  unsigned char *buf = malloc(ct_len + 1);
  if (!buf) return CG_ENOMEM;
  memcpy(buf, head + AES_BLOCK, HEAD_BYTES - AES_BLOCK);
  if (b64_decode_strict(b64 + 4 * HEAD_QUADS, b64_len - 4 * HEAD_QUADS,
                        buf + (HEAD_BYTES - AES_BLOCK)) !=
      raw_len - HEAD_BYTES) {
    free(buf);
    return CG_EMALFORMED;
  }

  int rc = 0;
  EVP_CIPHER_CTX *own = NULL, *ctx = NULL;
  if (k) {
    /* cipher and key NULL: the schedule made by cg__lark_keys_new stays;
     * only the IV (and the context's buffered state) is reset. */
    ctx = k->dec;
    if (EVP_DecryptInit_ex2(ctx, NULL, NULL, head, NULL) != 1) rc = CG_ENOMEM;
  } else {
    unsigned char key[AES_KEY_LEN];
    rc = derive_key(NULL, encrypt_key, key);
    if (!rc) {
      ctx = own = EVP_CIPHER_CTX_new();
      if (!own ||
          EVP_DecryptInit_ex2(own, EVP_aes_256_cbc(), key, head, NULL) != 1 ||
          EVP_CIPHER_CTX_set_padding(own, 0) != 1)
        rc = CG_ENOMEM;
    }
    OPENSSL_cleanse(key, sizeof key);
  }
  int l1 = 0, l2 = 0;
  if (rc == 0 &&
      /* in place: CBC decryption allows out == in */
      (EVP_DecryptUpdate(ctx, buf, &l1, buf, (int)ct_len) != 1 ||
       EVP_DecryptFinal_ex(ctx, buf + l1, &l2) != 1 ||
       (size_t)l1 + (size_t)l2 != ct_len))
    rc = CG_ENOMEM;
  EVP_CIPHER_CTX_free(own);
  if (rc) {
    OPENSSL_cleanse(buf, ct_len);
    free(buf);
    return rc;
  }

  /* Strict PKCS#7: last byte p in 1..16 and the last p bytes all equal p.
   * Checked without data-dependent branches over the final block. */
  unsigned pv = buf[ct_len - 1];
  unsigned bad = (unsigned)(pv == 0) | (unsigned)(pv > AES_BLOCK);
  for (unsigned i = 0; i < AES_BLOCK; i++) {
    unsigned in_pad = (unsigned)(i < pv);
    bad |= in_pad & (unsigned)(buf[ct_len - 1 - i] != pv);
  }
  if (bad) {
    OPENSSL_cleanse(buf, ct_len);
    free(buf);
    return CG_ECRYPTO;
  }
  size_t n = ct_len - pv;
  buf[n] = '\0';
  *out = (char *)buf;
  if (out_len) *out_len = n;
  return 0;
}

int cg_lark_decrypt(const char *encrypt_key, const char *b64, size_t b64_len,
                    char **out, size_t *out_len) {
  if (!out) return CG_EINVAL;
  *out = NULL;
  if (out_len) *out_len = 0;
  if (!encrypt_key) return CG_EINVAL;
  return cg__lark_decrypt(NULL, encrypt_key, b64, b64_len, out, out_len);
}
