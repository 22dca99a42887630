/* What the two long-connection clients share (conn_int.h). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/common.h"
#include "../core/app_int.h"
#include "conn_int.h"

static char *dup_or(const char *a, const char *b) {
  const char *s = !cg_str_empty(a) ? a : b;
  return cg_str_empty(s) ? NULL : cg_strdup(s);
}

int cg__conn_common_init(cg__conn_common *k, cg_app *app, const char *component, const char *who,
                         const char *id, const char *id_dflt, const char *secret, const char *secret_dflt,
                         const char *base, const char *base_dflt, const char *ca_file, const char *need) {
  memset(k, 0, sizeof *k);
  k->app = app;
  k->component = component;
  k->who = who;
  int rc = CG_ENOMEM;
  k->id = dup_or(id, id_dflt);
  k->secret = dup_or(secret, secret_dflt);
  if (!k->id || !k->secret) {
    rc = CG_EINVAL;
    cg_fmt(cg__app_error_buf(app), CG__APP_ERROR_CAP, "%s", need);
    goto fail;
  }
  if (!base) base = base_dflt;
  if (!cg_origin_ok(base)) {
    rc = CG_ECONFIG;
    cg_fmt(cg__app_error_buf(app), CG__APP_ERROR_CAP,
           "%s: the base URL must be an origin: https://host, or http:// to a loopback host", component);
    goto fail;
  }
  rc = CG_ENOMEM;
  if (!(k->base_url = cg_strdup(base))) goto fail;
  size_t bl = strlen(k->base_url);
  if (bl && k->base_url[bl - 1] == '/') k->base_url[bl - 1] = '\0';
  if (ca_file && !(k->ca_file = cg_strdup(ca_file))) goto fail;
  k->state = CG_CONN_IDLE;
  cg_strlcpy(k->detail, "not started", sizeof k->detail);
  cg__app_client_ref(app, 1);
  k->counted = 1;
  return 0;
fail:
  cg__conn_common_clear(k);
  return rc;
}

void cg__conn_common_register(cg__conn_common *k, const char *transport,
                              cg_conn_state (*state)(const void *self, const char **detail), const void *self) {
  k->reg.transport = transport;
  k->reg.id = k->id;
  k->reg.state = state;
  k->reg.self = self;
  cg__app_conn_add(k->app, &k->reg);
}

void cg__conn_set_state(cg__conn_common *k, cg_conn_state st, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(k->detail, sizeof k->detail, fmt, ap);
  va_end(ap);
  k->state = st;
  cg_log_level lvl = st == CG_CONN_FAILED ? CG_LOG_ERROR : st == CG_CONN_WAITING ? CG_LOG_WARN : CG_LOG_INFO;
  cg__log(k->app, lvl, k->component, "%s %s: %s: %s", k->who, k->id, cg_conn_state_name(st), k->detail);
  if (k->on_state) k->on_state(st, k->detail, k->on_state_ud);
}

void cg__conn_common_unregister(cg__conn_common *k) {
  if (!k->reg.self) return;
  cg__app_conn_remove(k->app, &k->reg);
  k->reg.self = NULL;
}

void cg__conn_common_clear(cg__conn_common *k) {
  cg__conn_common_unregister(k);
  if (k->counted) cg__app_client_ref(k->app, -1);
  k->counted = 0;
  if (k->secret) cg_cleanse(k->secret, strlen(k->secret));
  free(k->secret);
  free(k->id);
  free(k->base_url);
  free(k->ca_file);
  k->secret = k->id = k->base_url = k->ca_file = NULL;
}
