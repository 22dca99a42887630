/* The program's log sink: text or JSON lines on stderr. */
#ifndef CG_CLI_LOG_SINK_H
#define CG_CLI_LOG_SINK_H

#include "cardgate.h"

typedef struct cg_cli_log {
  int json; /* 0 text, 1 JSON lines */
} cg_cli_log;

void cg_cli_log_fn(cg_log_level level, const char *component, const char *msg,
                   void *ud);
/* Parses "debug|info|warn|error"; -1 when unknown. */
int cg_cli_log_level(const char *s);

#endif
