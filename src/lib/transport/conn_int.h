/* What the long-connection clients share with the app: a registration so
 * /healthz can show every connection's state (never a secret). */
#ifndef CG_CONN_INT_H
#define CG_CONN_INT_H

#include "cardgate/stream.h"

typedef struct cg__app_conn {
  const char *transport; /* "lark_ws", "dingtalk_stream"; static */
  const char *id;        /* app id / client id, borrowed from the client */
  cg_conn_state (*state)(const void *self, const char **detail);
  const void *self;
  struct cg__app_conn *prev, *next; /* the app's list */
} cg__app_conn;

/* Counts a client (+1 when made, -1 when freed): cg_app_free asserts none
 * is left. */
void cg__app_client_ref(cg_app *app, int delta);
/* Adds / removes a registration (the client owns the node). */
void cg__app_conn_add(cg_app *app, cg__app_conn *n);
void cg__app_conn_remove(cg_app *app, cg__app_conn *n);
/* Appends ,"long_connections":[{"transport":…,"id":…,"state":…,"detail":…}…]
 * to out when there is any; sets *failed when one is in CG_CONN_FAILED.
 * 0 or CG_ENOMEM/CG_ETOOBIG. */
int cg__app_conns_json(const cg_app *app, cg_buf *out, int *failed);

/* What both clients hold alike: who they are, where they connect, and
 * the state /healthz shows and on_state reports (conn.c). */
typedef struct cg__conn_common {
  cg_app *app;
  const char *component; /* log component: "lark-ws", "dingtalk" (static) */
  const char *who;       /* "app", "client" (static) */
  char *id;              /* app id / client id */
  char *secret;          /* never logged; cleansed when freed */
  char *base_url;        /* origin, no trailing '/' */
  char *ca_file;         /* or NULL */
  cg_conn_state state;
  char detail[256];
  cg_conn_state_fn on_state;
  void *on_state_ud;
  cg__app_conn reg;
  int counted; /* cg__app_client_ref(+1) done */
} cg__conn_common;

/* Fills k: id/secret from the options, else the app's (id_dflt,
 * secret_dflt); base from the options else base_dflt, checked with
 * cg_origin_ok. On failure the reason is in cg_app_last_error(app) and k
 * holds nothing. 0, CG_EINVAL (no id or secret: need says what to set),
 * CG_ECONFIG (bad base URL), CG_ENOMEM. */
int cg__conn_common_init(cg__conn_common *k, cg_app *app, const char *component, const char *who,
                         const char *id, const char *id_dflt, const char *secret, const char *secret_dflt,
                         const char *base, const char *base_dflt, const char *ca_file, const char *need);
/* Registers k for /healthz as transport (static string), with the client's
 * state function. */
void cg__conn_common_register(cg__conn_common *k, const char *transport,
                              cg_conn_state (*state)(const void *self, const char **detail), const void *self);
/* Sets the state and its reason, logs it (level by state) and calls
 * on_state. */
void cg__conn_set_state(cg__conn_common *k, cg_conn_state st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Takes k out of /healthz (idempotent). */
void cg__conn_common_unregister(cg__conn_common *k);
/* Frees what k holds (the secret cleansed). Unregisters it if registered. */
void cg__conn_common_clear(cg__conn_common *k);

#endif
