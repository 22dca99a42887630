/* What every Open API client (Lark, DingTalk) says about an answer, in the
 * terms its callers act on — the outbox above all: done, try again later,
 * wait as told, the credentials are refused, give up. Library-internal. */
#ifndef CG_API_CLASS_H
#define CG_API_CLASS_H

#include <stdint.h>

#include "cardgate/log.h"

typedef enum {
  CG__API_OK = 0,        /* the platform did it */
  CG__API_RETRYABLE,     /* timeout, connection failure, 5xx, busy, garbled 2xx */
  CG__API_RATE_LIMITED,  /* over a rate limit: wait retry_after_ms */
  CG__API_TOKEN_INVALID, /* the access token refused even after evict + refetch + retry */
  CG__API_PERMANENT,     /* anything else: retrying the same call is futile */
  CG__API_CANCELLED      /* the client was closed first */
} cg__api_class;

/* "ok", "retryable", "rate_limited", "token_invalid", "permanent",
 * "cancelled". Static. */
const char *cg__api_class_name(cg__api_class c);

/* How loud a finished call is logged: ok and cancelled debug, permanent
 * error, the rest warn. */
cg_log_level cg__api_class_log_level(cg__api_class c);

/* A call that ended without an answer (the client closing, no memory):
 * UV_ECANCELED / CG_EALREADY → cancelled (and *err becomes UV_ECANCELED),
 * anything else → retryable. */
cg__api_class cg__api_local_failure(int *err);

/* A header holding whole seconds (Retry-After, x-ogw-ratelimit-reset) in
 * ms, capped at a day; dflt when missing, unreadable, negative, or zero
 * unless zero_ok. */
uint64_t cg__api_seconds_ms(const char *s, uint64_t dflt, int zero_ok);

/* Milliseconds on the monotonic clock (the clients' default clock). */
uint64_t cg__api_default_clock(void *ud);

#endif /* CG_API_CLASS_H */
