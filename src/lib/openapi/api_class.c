#include "api_class.h"

#include <string.h>
#include <uv.h>

#include "../../common/common.h"
#include "cardgate/error.h"

const char *cg__api_class_name(cg__api_class c) {
  switch (c) {
    case CG__API_OK: return "ok";
    case CG__API_RETRYABLE: return "retryable";
    case CG__API_RATE_LIMITED: return "rate_limited";
    case CG__API_TOKEN_INVALID: return "token_invalid";
    case CG__API_PERMANENT: return "permanent";
    case CG__API_CANCELLED: return "cancelled";
  }
  return "?";
}

cg_log_level cg__api_class_log_level(cg__api_class c) {
  return c == CG__API_OK || c == CG__API_CANCELLED ? CG_LOG_DEBUG
         : c == CG__API_PERMANENT                  ? CG_LOG_ERROR
                                                   : CG_LOG_WARN;
}

cg__api_class cg__api_local_failure(int *err) {
  if (*err == UV_ECANCELED || *err == CG_EALREADY) {
    *err = UV_ECANCELED;
    return CG__API_CANCELLED;
  }
  return CG__API_RETRYABLE; /* out of memory: try again later */
}

uint64_t cg__api_seconds_ms(const char *s, uint64_t dflt, int zero_ok) {
  int64_t v = 0;
  if (!s || !*s || cg_parse_i64(s, strlen(s), &v) != 0 || v < 0 || (v == 0 && !zero_ok)) return dflt;
  if (v > 86400) v = 86400;
  return (uint64_t)v * 1000u;
}

uint64_t cg__api_default_clock(void *ud) {
  CG_UNUSED(ud);
  return uv_hrtime() / 1000000u;
}
