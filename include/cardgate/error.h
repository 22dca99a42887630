/* cardgate — error codes.
 *
 * Every function that can fail returns an int: 0 on success or a negative code.
 * libuv's codes (UV_E*) pass through unchanged; cardgate's own come from the
 * table below, which also yields cg_strerror() and cg_err_name().
 */
#ifndef CARDGATE_ERROR_H
#define CARDGATE_ERROR_H

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define CG_EXTERN __attribute__((visibility("default")))
#else
#define CG_EXTERN
#endif

/* XX(name, value, message) */
#define CG_ERRNO_MAP(XX)                                                        \
  XX(EMALFORMED, -30001, "malformed input")                                   \
  XX(EAUTH, -30002, "authentication failed (signature or token)")             \
  XX(ETOOBIG, -30003, "input exceeds the configured limit")                   \
  XX(ETIMEDOUT, -30004, "deadline passed")                                    \
  XX(ENOTFOUND, -30005, "not found")                                          \
  XX(ECONFLICT, -30006, "version conflict (compare-and-set lost)")            \
  XX(EINVAL, -30007, "invalid argument")                                      \
  XX(ENOMEM, -30008, "out of memory")                                         \
  XX(ESTORE, -30009, "store error")                                           \
  XX(ECRYPTO, -30010, "decryption failed")                                    \
  XX(ESTALE, -30011, "request timestamp outside the replay window")           \
  XX(EDUPLICATE, -30012, "duplicate event")                                   \
  XX(EUNSUPPORTED, -30013, "unsupported")                                     \
  XX(EIO, -30014, "input/output error")                                       \
  XX(ECONFIG, -30015, "configuration error")                                  \
  XX(EALREADY, -30016, "already done")                                        \
  XX(EBUSY, -30017, "overloaded: too many connections or requests")

typedef enum {
#define CG__ERR_ENUM(name, val, msg) CG_##name = (val),
  CG_ERRNO_MAP(CG__ERR_ENUM)
#undef CG__ERR_ENUM
  CG_ERRNO_MIN_ = -30018
} cg_errno_t;

/* Human-readable message for any code this library returns (cardgate's own or
 * libuv's). Never NULL; the string is static. */
CG_EXTERN const char *cg_strerror(int err);

/* Symbolic name ("CG_EAUTH", "UV_ECONNRESET"). Never NULL; static. */
CG_EXTERN const char *cg_err_name(int err);

#ifdef __cplusplus
}
#endif
#endif /* CARDGATE_ERROR_H */
