/* cardgate — Lark/Feishu codec primitives (pure: no I/O, no clock).
 *
 * Signatures and AES exactly as the platform computes them
 * (../shared/protocols/lark.md §0.3, §0.4). Used by the app internally and by
 * tools that must produce requests as Lark would (cardgate trigger, tests).
 */
#ifndef CARDGATE_LARK_H
#define CARDGATE_LARK_H

#include <stddef.h>

#include "error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* hex_lower(SHA-1(timestamp || nonce || verification_token || body)) — the
 * legacy card-callback signature. out receives 40 hex chars + NUL. */
CG_EXTERN void cg_lark_sign_legacy(const char *timestamp, const char *nonce,
                                   const char *verification_token,
                                   const void *body, size_t body_len,
                                   char out[41]);

/* hex_lower(SHA-256(timestamp || nonce || encrypt_key || body)) — the event /
 * schema 2.0 signature. out receives 64 hex chars + NUL. */
CG_EXTERN void cg_lark_sign_event(const char *timestamp, const char *nonce,
                                  const char *encrypt_key, const void *body,
                                  size_t body_len, char out[65]);

/* Encrypts plain as Lark does: key = SHA-256(encrypt_key), AES-256-CBC,
 * PKCS#7, output base64(iv || ciphertext). iv: 16 bytes, or NULL for a random
 * one. *out is malloc'd, NUL-terminated; caller frees. 0, CG_EINVAL,
 * CG_ENOMEM. */
CG_EXTERN int cg_lark_encrypt(const char *encrypt_key, const void *plain,
                              size_t plain_len, const unsigned char *iv,
                              char **out);

/* Decrypts an "encrypt" field. Strict: standard base64, at least one block
 * after the IV, whole blocks, valid PKCS#7. *out is malloc'd and
 * NUL-terminated (length in *out_len); caller frees. 0, CG_EMALFORMED (bad
 * base64 or length), CG_ECRYPTO (bad padding: wrong key or corrupt data),
 * CG_ETOOBIG (over 16 MiB), CG_ENOMEM. */
CG_EXTERN int cg_lark_decrypt(const char *encrypt_key, const char *b64,
                              size_t b64_len, char **out, size_t *out_len);

/* Constant-time comparison of two byte strings; 1 when equal. */
CG_EXTERN int cg_consttime_eq(const void *a, size_t a_len, const void *b,
                              size_t b_len);

#ifdef __cplusplus
}
#endif
#endif /* CARDGATE_LARK_H */
