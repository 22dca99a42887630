/* cg_strerror / cg_err_name from the one table in error.h; libuv's codes pass
 * through to libuv. Also the small static-name helpers. */
#include <uv.h>

#include "cardgate/error.h"
#include "cardgate/log.h"
#include "cardgate/version.h"

const char *cg_strerror(int err) {
  switch (err) {
    case 0: return "success";
#define CG__ERR_STR(name, val, msg) \
  case CG_##name: return msg;
    CG_ERRNO_MAP(CG__ERR_STR)
#undef CG__ERR_STR
    default: break;
  }
  if (err < 0 && err > -4096) return uv_strerror(err);
  return "unknown error";
}

const char *cg_err_name(int err) {
  switch (err) {
    case 0: return "OK";
#define CG__ERR_NAME(name, val, msg) \
  case CG_##name: return "CG_" #name;
    CG_ERRNO_MAP(CG__ERR_NAME)
#undef CG__ERR_NAME
    default: break;
  }
  if (err < 0 && err > -4096) return uv_err_name(err);
  return "CG_EUNKNOWN";
}

const char *cg_log_level_name(cg_log_level level) {
  switch (level) {
    case CG_LOG_DEBUG: return "debug";
    case CG_LOG_INFO: return "info";
    case CG_LOG_WARN: return "warn";
    case CG_LOG_ERROR: return "error";
  }
  return "?";
}

const char *cg_version(void) { return CG_VERSION_STRING; }
