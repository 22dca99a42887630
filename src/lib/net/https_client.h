/* Internal asynchronous HTTP(S) client: libcurl's multi interface driven by a
 * libuv loop (one uv_poll_t per socket curl asks us to watch, one uv_timer_t
 * for curl's timeout). Library-internal, never installed; the Lark Open API
 * client (src/lib/openapi/lark_api.c) is built on it. Design notes:
 * docs/openapi.md.
 *
 * Threading: one client belongs to one loop and is used only on that loop's
 * thread. Nothing here blocks the loop: name resolution runs on libcurl's
 * resolver thread, sockets are non-blocking, CURLOPT_NOSIGNAL is set. */
#ifndef CG_HTTPS_CLIENT_H
#define CG_HTTPS_CLIENT_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct cg__https cg__https;

/* Whole-request timeout used when cg__https_req.timeout_ms is 0. */
#define CG__HTTPS_DEFAULT_TIMEOUT_MS 10000u
/* Connect timeout (TCP + TLS handshake), capped by the request timeout. */
#define CG__HTTPS_CONNECT_TIMEOUT_MS 5000u

typedef struct cg__https_req {
  /* "GET", "POST", "PATCH", "PUT" or "DELETE". Borrowed for the call. */
  const char *method;
  /* Absolute http:// or https:// URL. Borrowed for the call (copied). */
  const char *url;
  /* Extra request headers as "Name: value" strings, NULL-terminated; NULL
   * for none. Borrowed for the call (copied). "Name:" removes a header curl
   * would add by itself. */
  const char *const *headers;
  /* Request body (may be NULL with body_len 0). Borrowed for the call
   * (copied). */
  const char *body;
  size_t body_len;
  /* Whole request, connect to last byte; 0 = CG__HTTPS_DEFAULT_TIMEOUT_MS. */
  uint32_t timeout_ms;
  /* Response body limit (after content decoding); 0 = CG_LIMIT_BODY_DEFAULT,
   * values above CG_LIMIT_BODY_HARD are clamped to it. A larger body ends
   * the request with CG_ETOOBIG. */
  size_t max_response_bytes;
} cg__https_req;

/* What came back. Every pointer is borrowed: valid until the callback
 * returns; strings are never NULL ("" when absent). */
typedef struct cg__https_resp {
  int status;       /* HTTP status of the final response; 0 if none */
  const char *body; /* NUL-terminated; "" when empty */
  size_t body_len;
  const char *content_type;    /* Content-Type */
  const char *logid;           /* X-Tt-Logid, else X-Request-Id */
  const char *ratelimit_reset; /* X-Ogw-Ratelimit-Reset (seconds), raw */
  const char *retry_after;     /* Retry-After, raw */
  const char *detail;          /* libcurl's message when rc != 0, else "" */
} cg__https_resp;

/* rc: 0 when a complete HTTP response arrived (whatever its status), else
 *   CG_ETIMEDOUT    timeout_ms passed (connect or transfer)
 *   CG_ETOOBIG      the response body passed max_response_bytes
 *   UV_ECONNREFUSED nobody listens at the address
 *   UV_ECONNRESET   the connection broke (sent nothing, reset, or closed
 *                   before the announced body was complete)
 *   UV_EAI_NONAME   the host name does not resolve
 *   CG_EAUTH        the server's TLS certificate did not verify
 *   CG_EINVAL       a URL curl rejects
 *   CG_ENOMEM       out of memory
 *   CG_EIO          any other transport failure (resp->detail says which)
 *   UV_ECANCELED    the client was closed first
 * resp is never NULL; resp->status may be set even when rc != 0 (e.g. a body
 * over the limit). */
typedef void (*cg__https_cb)(int rc, const cg__https_resp *resp, void *ud);

/* Creates a client on loop (borrowed; must outlive the client). Returns NULL
 * and sets *err (CG_ENOMEM, CG_EIO when libcurl cannot initialise) on
 * failure. Release with cg__https_close(). */
cg__https *cg__https_new(uv_loop_t *loop, int *err);

/* Starts req. Returns 0 and later calls cb exactly once — never before this
 * function returns — or returns an error and never calls cb:
 * CG_EINVAL (no method/URL, unknown method, URL not http(s)), CG_ENOMEM,
 * CG_EALREADY (the client is closing). Everything in req is copied. */
int cg__https_request(cg__https *h, const cg__https_req *req, cg__https_cb cb,
                      void *ud);

/* Requests started and not yet finished. */
size_t cg__https_inflight(const cg__https *h);

/* Cancels every request in flight — each callback then runs with
 * UV_ECANCELED, on a later loop turn, never inside this call — and frees the
 * client once its libuv handles have closed, then calls close_cb (may be
 * NULL) with ud. Safe inside a request callback. h must not be used after
 * this call; NULL is ignored. */
void cg__https_close(cg__https *h, void (*close_cb)(void *ud), void *ud);

#endif /* CG_HTTPS_CLIENT_H */
