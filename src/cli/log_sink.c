#include "log_sink.h"

#include <stdio.h>
#include <string.h>

#include "common/common.h"

void cg_cli_log_fn(cg_log_level level, const char *component, const char *msg, void *ud) {
  const cg_cli_log *l = ud;
  char ts[32];
  cg_time_iso(cg_now_ms(), ts, sizeof(ts));
  if (l && l->json) {
    cg_buf b;
    cg_buf_init(&b, 8192);
    cg_buf_appendf(&b, "{\"ts\":\"%s\",\"level\":\"%s\",\"component\":", ts, cg_log_level_name(level));
    cg_buf_append_json_str(&b, component, strlen(component));
    cg_buf_appends(&b, ",\"msg\":");
    cg_buf_append_json_str(&b, msg, strlen(msg));
    cg_buf_appends(&b, "}\n");
    if (b.data) fputs(b.data, stderr);
    cg_buf_free(&b);
  } else {
    fprintf(stderr, "%s %-5s %s: %s\n", ts, cg_log_level_name(level), component, msg);
  }
}

int cg_cli_log_level(const char *s) {
  static const char *names[] = {"debug", "info", "warn", "error"};
  for (int i = 0; i < 4; i++)
    if (!strcmp(s, names[i])) return i;
  return -1;
}
