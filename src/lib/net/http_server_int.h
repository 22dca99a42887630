/* Library-internal: the HTTP server in generic request mode. Every request
 * (any method, any path) goes to one handler function instead of the Lark
 * webhook routes; the handler answers it exactly once with
 * cg__server_reply(). Used by the platform emulator (src/emulator/). Limits,
 * timeouts, keep-alive and pipelining are those of docs/http-server.md. */
#ifndef CG_HTTP_SERVER_INT_H
#define CG_HTTP_SERVER_INT_H

#include <stddef.h>
#include <uv.h>

#include "cardgate/log.h"
#include "cardgate/server.h"

/* The request being handled: the connection's, opaque. */
typedef struct cg__http_req cg__http_req;

/* What the handler sees. Every pointer is borrowed from the connection and
 * stays valid until cg__server_reply() is called for this request; strings
 * are not NUL-terminated (use the lengths); absent headers are NULL/0. */
typedef struct cg__http_request {
  const char *method; /* "GET", "POST", … (NUL-terminated, static) */
  const char *path;   /* request path without the query */
  size_t path_len;
  const char *query; /* after '?', without it; NULL when none */
  size_t query_len;
  const char *authorization; /* Authorization header value */
  size_t authorization_len;
  const char *content_type; /* Content-Type header value */
  size_t content_type_len;
  const char *dt_token; /* x-acs-dingtalk-access-token (DingTalk Open API) */
  size_t dt_token_len;
  const char *body; /* never NULL ("" when empty) */
  size_t body_len;
} cg__http_request;

/* Called once per request on the loop thread. Must eventually call
 * cg__server_reply(req, …) exactly once (inside this call or later). */
typedef void (*cg__http_handler_fn)(cg__http_req *req,
                                    const cg__http_request *r, void *ud);

/* Creates a server on loop (borrowed) whose requests all go to fn. o as for
 * cg_server_new (card_path/event_path are ignored). log may be NULL; it
 * receives the listen line. Listen, port and close with the public
 * cg_server_* functions. NULL + *err (CG_EINVAL, CG_ENOMEM). */
cg_server *cg__server_new_handler(uv_loop_t *loop, const cg_server_options *o,
                                  cg__http_handler_fn fn, void *ud,
                                  cg_log_fn log, void *log_ud, int *err);

/* Answers req: status, body (copied; JSON, Content-Type application/json).
 * If the client went away meanwhile the answer is dropped. */
void cg__server_reply(cg__http_req *req, int status, const char *body,
                      size_t len);

/* Same with a Content-Type (NULL = JSON) and extra header lines (NULL, or
 * "Name: value\r\n" lines, each CRLF-terminated). Both copied. */
void cg__server_reply_ex(cg__http_req *req, int status,
                         const char *content_type, const char *extra_headers,
                         const char *body, size_t len);

#endif /* CG_HTTP_SERVER_INT_H */
