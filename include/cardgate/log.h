/* cardgate — logging.
 *
 * The library never prints. It hands each log line to a callback that the
 * program owns. Secrets, signatures and card contents are never passed to it.
 */
#ifndef CARDGATE_LOG_H
#define CARDGATE_LOG_H

#include "error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
  CG_LOG_DEBUG = 0,
  CG_LOG_INFO = 1,
  CG_LOG_WARN = 2,
  CG_LOG_ERROR = 3
} cg_log_level;

/* component: short static name ("http", "core", "store", "workflow").
 * msg: one line, no trailing newline, borrowed for the duration of the call. */
typedef void (*cg_log_fn)(cg_log_level level, const char *component,
                          const char *msg, void *ud);

/* "debug", "info", "warn", "error". */
CG_EXTERN const char *cg_log_level_name(cg_log_level level);

#ifdef __cplusplus
}
#endif
#endif /* CARDGATE_LOG_H */
