/* Lark signatures and payload encryption (include/cardgate/lark.h).
 *
 * Facts: ../shared/protocols/lark.md §0.3 (AES-256-CBC, key = SHA-256 of the
 * Encrypt Key, base64(iv || ciphertext), PKCS#7) and §0.4 (signatures:
 * hex_lower(HASH(timestamp || nonce || secret || raw body))).
 *
 * Pure functions: no globals, nothing cached between calls. The decryptor is
 * strict where the SDKs are lenient (lark.md §0.3 step 5): canonical base64
 * only, whole blocks only, and real PKCS#7 — a request that fails any of these
 * is refused, never repaired. It makes a single allocation: the base64 is
 * decoded into the output buffer and decrypted in place. */
#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/limits.h"
#include "cardgate/lark.h"

enum { AES_BLOCK = 16, AES_KEY_LEN = 32 };

static const char hex_digits[] = "0123456789abcdef";

static size_t str_len(const char *s) {
  return s ? strlen(s) : 0;
}

/* hex_lower(md(ts || nonce || secret || body)) into out (2*md_len + 1 bytes).
 * On an OpenSSL failure (out of memory) out is "", which can never equal a
 * real signature: callers compare full-length digests only. */
static void lark_sign(const EVP_MD *md, unsigned md_len, const char *ts,
                      const char *nonce, const char *secret, const void *body,
                      size_t body_len, char *out) {
  unsigned char d[EVP_MAX_MD_SIZE];
  unsigned dl = 0;
  EVP_MD_CTX *c = EVP_MD_CTX_new();
  int ok = c != NULL && EVP_DigestInit_ex(c, md, NULL) == 1 &&
           EVP_DigestUpdate(c, ts ? ts : "", str_len(ts)) == 1 &&
           EVP_DigestUpdate(c, nonce ? nonce : "", str_len(nonce)) == 1 &&
           EVP_DigestUpdate(c, secret ? secret : "", str_len(secret)) == 1 &&
           (body_len == 0 || EVP_DigestUpdate(c, body, body_len) == 1) &&
           EVP_DigestFinal_ex(c, d, &dl) == 1 && dl == md_len;
  EVP_MD_CTX_free(c);
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

void cg_lark_sign_legacy(const char *timestamp, const char *nonce,
                         const char *verification_token, const void *body,
                         size_t body_len, char out[41]) {
  lark_sign(EVP_sha1(), 20, timestamp, nonce, verification_token, body,
            body_len, out);
}

void cg_lark_sign_event(const char *timestamp, const char *nonce,
                        const char *encrypt_key, const void *body,
                        size_t body_len, char out[65]) {
  lark_sign(EVP_sha256(), 32, timestamp, nonce, encrypt_key, body, body_len,
            out);
}

int cg_consttime_eq(const void *a, size_t a_len, const void *b, size_t b_len) {
  /* Compare the common prefix whatever the lengths, so the time taken depends
   * on the lengths only, never on the contents. */
  size_t n = a_len < b_len ? a_len : b_len;
  int diff = n ? CRYPTO_memcmp(a, b, n) : 0;
  return (a_len == b_len) & (diff == 0);
}

/* key = SHA-256(encrypt_key as UTF-8) — lark.md §0.3 step 1. */
static int derive_key(const char *encrypt_key, unsigned char key[AES_KEY_LEN]) {
  unsigned kl = 0;
  if (EVP_Digest(encrypt_key, strlen(encrypt_key), key, &kl, EVP_sha256(),
                 NULL) != 1 ||
      kl != AES_KEY_LEN)
    return CG_ENOMEM;
  return 0;
}

/* ---- base64 (RFC 4648 §4, standard alphabet, '=' padding) -------------- */

/* 0..63 for a character of the standard alphabet, 64 otherwise. Computed,
 * not looked up, so the codec needs no table. */
static unsigned b64_val(unsigned char c) {
  if (c >= 'A' && c <= 'Z') return (unsigned)(c - 'A');
  if (c >= 'a' && c <= 'z') return (unsigned)(c - 'a') + 26;
  if (c >= '0' && c <= '9') return (unsigned)(c - '0') + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return 64;
}

/* Strict decode of s[0..n) into out (room for n/4*3 bytes). Rejects: a length
 * that is not a multiple of 4, any byte outside the alphabet (whitespace
 * included), '=' anywhere but the last one or two positions, and non-zero
 * bits under the padding (non-canonical encodings). Returns the decoded
 * length, or (size_t)-1. */
static size_t b64_decode_strict(const char *s, size_t n, unsigned char *out) {
  if (n == 0 || n % 4 != 0) return (size_t)-1;
  size_t pad = 0;
  if (s[n - 1] == '=') pad = s[n - 2] == '=' ? 2 : 1;
  size_t full = n - (pad ? 4 : 0); /* bytes in quads without padding */
  size_t o = 0;
  const unsigned char *p = (const unsigned char *)s;
  for (size_t i = 0; i < full; i += 4) {
    unsigned a = b64_val(p[i]), b = b64_val(p[i + 1]), c = b64_val(p[i + 2]),
             d = b64_val(p[i + 3]);
    if ((a | b | c | d) & 64) return (size_t)-1;
    unsigned v = a << 18 | b << 12 | c << 6 | d;
    out[o++] = (unsigned char)(v >> 16);
    out[o++] = (unsigned char)(v >> 8);
    out[o++] = (unsigned char)v;
  }
  if (pad) {
    const unsigned char *q = p + full;
    unsigned a = b64_val(q[0]), b = b64_val(q[1]);
    if ((a | b) & 64) return (size_t)-1;
    if (pad == 2) {
      if (b & 15) return (size_t)-1; /* non-canonical trailing bits */
      out[o++] = (unsigned char)(a << 2 | b >> 4);
    } else {
      unsigned c = b64_val(q[2]);
      if (c & 64 || c & 3) return (size_t)-1;
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
  int rc = derive_key(encrypt_key, key);
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

int cg_lark_decrypt(const char *encrypt_key, const char *b64, size_t b64_len,
                    char **out, size_t *out_len) {
  if (!out) return CG_EINVAL;
  *out = NULL;
  if (out_len) *out_len = 0;
  if (!encrypt_key || (!b64 && b64_len)) return CG_EINVAL;
  if (b64_len > CG_LIMIT_BODY_HARD) return CG_ETOOBIG;
  /* Length checks before any work (lark.md §0.3 step 3): an IV and at least
   * one whole block. */
  if (b64_len == 0 || b64_len % 4 != 0) return CG_EMALFORMED;
  size_t pad = b64[b64_len - 1] == '=' ? (b64[b64_len - 2] == '=' ? 2 : 1) : 0;
  size_t raw_len = b64_len / 4 * 3 - pad;
  if (raw_len < 2 * AES_BLOCK || raw_len % AES_BLOCK != 0) return CG_EMALFORMED;

  unsigned char *buf = malloc(b64_len / 4 * 3 + 1);
  if (!buf) return CG_ENOMEM;
  if (b64_decode_strict(b64, b64_len, buf) != raw_len) {
    free(buf);
    return CG_EMALFORMED;
  }

  unsigned char key[AES_KEY_LEN];
  int rc = derive_key(encrypt_key, key);
  EVP_CIPHER_CTX *ctx = rc ? NULL : EVP_CIPHER_CTX_new();
  size_t ct_len = raw_len - AES_BLOCK;
  int l1 = 0, l2 = 0;
  if (rc == 0 &&
      (!ctx ||
       EVP_DecryptInit_ex(ctx, EVP_aes_256_cbc(), NULL, key, buf) != 1 ||
       EVP_CIPHER_CTX_set_padding(ctx, 0) != 1 ||
       /* in place: CBC decryption allows out == in */
       EVP_DecryptUpdate(ctx, buf + AES_BLOCK, &l1, buf + AES_BLOCK,
                         (int)ct_len) != 1 ||
       EVP_DecryptFinal_ex(ctx, buf + AES_BLOCK + l1, &l2) != 1 ||
       (size_t)l1 + (size_t)l2 != ct_len))
    rc = CG_ENOMEM;
  EVP_CIPHER_CTX_free(ctx);
  OPENSSL_cleanse(key, sizeof key);
  if (rc) {
    free(buf);
    return rc;
  }
  memmove(buf, buf + AES_BLOCK, ct_len);

  /* Strict PKCS#7: last byte p in 1..16 and the last p bytes all equal p.
   * Checked without data-dependent branches over the final block. */
  unsigned p = buf[ct_len - 1];
  unsigned bad = (unsigned)(p == 0) | (unsigned)(p > AES_BLOCK);
  for (unsigned i = 0; i < AES_BLOCK; i++) {
    unsigned in_pad = (unsigned)(i < p);
    bad |= in_pad & (unsigned)(buf[ct_len - 1 - i] != p);
  }
  if (bad) {
    OPENSSL_cleanse(buf, ct_len);
    free(buf);
    return CG_ECRYPTO;
  }
  size_t n = ct_len - p;
  buf[n] = '\0';
  *out = (char *)buf;
  if (out_len) *out_len = n;
  return 0;
}
