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

/* Adds / removes a registration (the client owns the node). */
void cg__app_conn_add(cg_app *app, cg__app_conn *n);
void cg__app_conn_remove(cg_app *app, cg__app_conn *n);
/* Appends ,"long_connections":[{"transport":…,"id":…,"state":…,"detail":…}…]
 * to out when there is any; sets *failed when one is in CG_CONN_FAILED.
 * 0 or CG_ENOMEM/CG_ETOOBIG. */
int cg__app_conns_json(const cg_app *app, cg_buf *out, int *failed);

#endif
