/* cardgate — the HTTP server (Lark webhooks, /healthz).
 *
 * Runs on the app's loop. Limits: header and body timeouts, a connection
 * limit, a body limit; keep-alive and pipelining (answers in request order).
 */
#ifndef CARDGATE_SERVER_H
#define CARDGATE_SERVER_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "app.h"
#include "error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cg_server cg_server;

/* Numeric options left at 0 take their default. */
typedef struct cg_server_options {
  const char *host;          /* default "127.0.0.1"; a numeric IPv4/IPv6 address
                                (brackets allowed) — no name lookup on the loop */
  int port;                  /* 0 = ephemeral (read it back with cg_server_port) */
  const char *card_path;     /* default "/webhook/card" */
  const char *event_path;    /* default "/webhook/event" */
  size_t max_body;           /* default 1 MiB */
  size_t max_header;         /* total header bytes, default 16 KiB */
  uint32_t header_timeout_ms; /* whole header must arrive within, default 10000 */
  uint32_t body_timeout_ms;   /* body must arrive within, default 10000 */
  uint32_t idle_timeout_ms;   /* keep-alive idle, default 60000 */
  uint32_t max_connections;   /* default 10000 */
  int reuse_port;             /* SO_REUSEPORT, for one server per loop/core */
} cg_server_options;

CG_EXTERN void cg_server_options_init(cg_server_options *o);

/* Creates a server for app (borrowed; must outlive the server). Strings in o
 * are copied. NULL + *err (CG_EINVAL, CG_ENOMEM). */
CG_EXTERN cg_server *cg_server_new(cg_app *app, const cg_server_options *o,
                                   int *err);

/* Binds and listens. 0 or a libuv error (UV_EADDRINUSE …). */
CG_EXTERN int cg_server_listen(cg_server *s);

/* The bound port (after a successful listen). */
CG_EXTERN int cg_server_port(const cg_server *s);

/* Must be called exactly once for every server cg_server_new returned (also
 * when cg_server_listen failed: it is what frees the server).
 * Stops accepting, closes idle connections, lets in-flight requests finish
 * (each is bounded by the app's deadline), then calls cb (once, never inside
 * this call) and frees the server. cb may be NULL. */
typedef void (*cg_server_close_cb)(void *ud);
CG_EXTERN void cg_server_close(cg_server *s, cg_server_close_cb cb, void *ud);

#ifdef __cplusplus
}
#endif
#endif /* CARDGATE_SERVER_H */
