/* Asynchronous HTTP(S) client: libcurl's multi interface on a libuv loop.
 *
 * The "multi socket" pattern: curl tells us, through CURLMOPT_SOCKETFUNCTION,
 * which sockets to watch and for what (one uv_poll_t each, struct sock), and,
 * through CURLMOPT_TIMERFUNCTION, when it next needs to be called without
 * socket activity (one uv_timer_t). Each libuv event is handed back with
 * curl_multi_socket_action(), after which finished transfers are collected
 * with curl_multi_info_read() and their callbacks run. Curl does the rest:
 * connection reuse, TLS, HTTP/2, the threaded resolver.
 *
 * Lifetime: the client counts its open libuv handles (the timer and every
 * poll, including polls closed but not yet through their close callback).
 * cg__https_close() pulls every transfer out of curl, frees the multi handle,
 * closes all handles, and once the last close callback has run delivers
 * UV_ECANCELED to the cancelled requests, calls the close callback and
 * frees. Nothing is freed while a libuv callback of ours may still run. */
#include "https_client.h"

#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../../common/common.h"
#include "../../common/limits.h"
#include "cardgate/error.h"
#include "cardgate/version.h"

/* Connections curl opens to one host at once; transfers beyond it wait in
 * curl's queue (their timeout keeps running). A burst of outbox deliveries
 * should not open hundreds of sockets to the platform. */
#define MAX_HOST_CONNECTIONS 64L

/* Response headers we keep (values only). */
enum {
  H_CONTENT_TYPE = 0,
  H_LOGID,
  H_REQUEST_ID,
  H_RL_RESET,
  H_RETRY_AFTER,
  H_COUNT
};
static const char *const kept_headers[H_COUNT] = {
    "content-type", "x-tt-logid", "x-request-id", "x-ogw-ratelimit-reset",
    "retry-after"};
/* Longer values are cut; every header we keep is a short token. */
#define HV_MAX 256u

typedef struct sock sock;
typedef struct hreq hreq;

struct sock {
  uv_poll_t poll;
  curl_socket_t fd;
  cg__https *h;
  sock *prev, *next;
  unsigned closing : 1;
};

struct hreq {
  cg__https *h;
  CURL *easy;
  struct curl_slist *hdrs;
  char *body;
  size_t body_len;
  cg_buf resp;
  cg__https_cb cb;
  void *ud;
  hreq *prev, *next;
  int write_err; /* why the write callback refused bytes */
  char hv[H_COUNT][HV_MAX];
  char errbuf[CURL_ERROR_SIZE];
};

struct cg__https {
  uv_loop_t *loop;
  CURLM *multi;
  uv_timer_t timer;
  hreq *reqs;      /* in curl */
  hreq *cancelled; /* pulled out by close, callbacks pending */
  sock *socks;     /* polls open (not closing) */
  size_t ninflight;
  int nhandles; /* libuv handles not yet through their close callback */
  unsigned closing : 1;
  void (*close_cb)(void *ud);
  void *close_ud;
};

static void list_push(hreq **head, hreq *r) {
  r->prev = NULL;
  r->next = *head;
  if (*head) (*head)->prev = r;
  *head = r;
}

static void list_unlink(hreq **head, hreq *r) {
  if (r->prev)
    r->prev->next = r->next;
  else
    *head = r->next;
  if (r->next) r->next->prev = r->prev;
  r->prev = r->next = NULL;
}

/* ------------------------------------------------------------ requests */

static void hreq_free(hreq *r) {
  if (r->easy) curl_easy_cleanup(r->easy);
  /* Headers and bodies may hold credentials (a bearer token, an app
   * secret): our copies are wiped before they go back to the allocator. */
  for (struct curl_slist *l = r->hdrs; l; l = l->next)
    memset(l->data, 0, strlen(l->data));
  curl_slist_free_all(r->hdrs);
  if (r->body) memset(r->body, 0, r->body_len);
  free(r->body);
  if (r->resp.data) memset(r->resp.data, 0, r->resp.len); /* a token answer */
  cg_buf_free(&r->resp);
  free(r);
}

/* Translates curl's result at the boundary (DESIGN.md convention 4); the
 * detail stays in errbuf. */
static int map_curl(hreq *r, CURLcode c) {
  switch (c) {
    case CURLE_OK:
      return 0;
    case CURLE_WRITE_ERROR:
      return r->write_err ? r->write_err : CG_EIO;
    case CURLE_FILESIZE_EXCEEDED:
      return CG_ETOOBIG;
    case CURLE_OPERATION_TIMEDOUT:
      return CG_ETIMEDOUT;
    case CURLE_COULDNT_CONNECT: {
      long oserr = 0;
      curl_easy_getinfo(r->easy, CURLINFO_OS_ERRNO, &oserr);
      /* libuv's codes are -errno on Unix. */
      return oserr > 0 && oserr < 4096 ? (int)-oserr : UV_ECONNREFUSED;
    }
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
      return UV_EAI_NONAME;
    case CURLE_GOT_NOTHING:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_PARTIAL_FILE:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
      return UV_ECONNRESET;
    case CURLE_PEER_FAILED_VERIFICATION:
      return CG_EAUTH;
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL:
      return CG_EINVAL;
    case CURLE_WEIRD_SERVER_REPLY:
      return CG_EMALFORMED;
    case CURLE_OUT_OF_MEMORY:
      return CG_ENOMEM;
    default:
      return CG_EIO;
  }
}

static void hreq_finish(hreq *r, int rc) {
  long status = 0;
  if (r->easy) curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
  cg__https_resp resp;
  memset(&resp, 0, sizeof(resp));
  resp.status = (int)status;
  resp.body = r->resp.data ? r->resp.data : "";
  resp.body_len = r->resp.len;
  resp.content_type = r->hv[H_CONTENT_TYPE];
  resp.logid = r->hv[H_LOGID][0] ? r->hv[H_LOGID] : r->hv[H_REQUEST_ID];
  resp.ratelimit_reset = r->hv[H_RL_RESET];
  resp.retry_after = r->hv[H_RETRY_AFTER];
  resp.detail = "";
  if (rc == UV_ECANCELED)
    resp.detail = "client closed";
  else if (rc != 0)
    resp.detail = r->errbuf[0] ? r->errbuf : cg_strerror(rc);
  r->cb(rc, &resp, r->ud);
  hreq_free(r);
}

static size_t on_body(char *p, size_t size, size_t n, void *ud) {
  hreq *r = ud;
  size_t len = size * n;
  int rc = cg_buf_append(&r->resp, p, len);
  if (rc) {
    r->write_err = rc; /* returning short makes curl stop: CURLE_WRITE_ERROR */
    return 0;
  }
  return len;
}

static int name_is(const char *p, size_t n, const char *name) {
  return strlen(name) == n && strncasecmp(p, name, n) == 0;
}

/* One header line at a time, status lines included ("HTTP/1.1 200 OK\r\n").
 * A new status line (an interim 1xx answer before the final one) starts the
 * kept values afresh. */
static size_t on_header(char *p, size_t size, size_t n, void *ud) {
  hreq *r = ud;
  size_t len = size * n;
  if (len >= 5 && memcmp(p, "HTTP/", 5) == 0) {
    for (int i = 0; i < H_COUNT; i++) r->hv[i][0] = '\0';
    return len;
  }
  const char *colon = memchr(p, ':', len);
  if (!colon) return len;
  size_t nlen = (size_t)(colon - p);
  for (int i = 0; i < H_COUNT; i++) {
    if (!name_is(p, nlen, kept_headers[i])) continue;
    const char *v = colon + 1;
    const char *end = p + len;
    while (v < end && (*v == ' ' || *v == '\t')) v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ' ||
                       end[-1] == '\t'))
      end--;
    size_t vlen = (size_t)(end - v);
    if (vlen >= HV_MAX) vlen = HV_MAX - 1;
    memcpy(r->hv[i], v, vlen);
    r->hv[i][vlen] = '\0';
    break;
  }
  return len;
}

/* Runs the callbacks of finished transfers. Stops when a callback closed the
 * client: close() has pulled the rest out of curl by then. */
static void check_done(cg__https *h) {
  CURLMsg *m;
  int left;
  while (!h->closing && (m = curl_multi_info_read(h->multi, &left))) {
    if (m->msg != CURLMSG_DONE) continue;
    CURL *e = m->easy_handle;
    CURLcode res = m->data.result; /* m dies with remove_handle */
    char *priv = NULL;
    curl_easy_getinfo(e, CURLINFO_PRIVATE, &priv);
    hreq *r = (hreq *)priv;
    cg_assert(r && r->easy == e);
    curl_multi_remove_handle(h->multi, e);
    list_unlink(&h->reqs, r);
    h->ninflight--;
    hreq_finish(r, map_curl(r, res));
  }
}

/* ------------------------------------------------------ loop <-> curl */

static void finish_close(cg__https *h);

static void on_handle_closed(uv_handle_t *handle) {
  cg__https *h = handle->data;
  if (handle->type == UV_POLL) free(CG_CONTAINER_OF(handle, sock, poll));
  h->nhandles--;
  if (h->closing && h->nhandles == 0) finish_close(h);
}

static void sock_close(cg__https *h, sock *s) {
  if (s->closing) return;
  s->closing = 1;
  if (s->prev)
    s->prev->next = s->next;
  else
    h->socks = s->next;
  if (s->next) s->next->prev = s->prev;
  uv_close((uv_handle_t *)&s->poll, on_handle_closed);
}

static void on_poll(uv_poll_t *p, int status, int events) {
  sock *s = CG_CONTAINER_OF(p, sock, poll);
  cg__https *h = s->h;
  if (h->closing || s->closing) return;
  int flags = 0;
  if (status < 0)
    flags = CURL_CSELECT_ERR;
  else {
    if (events & UV_READABLE) flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
  }
  int running = 0;
  /* May close s (CURL_POLL_REMOVE); s is not touched afterwards. */
  curl_multi_socket_action(h->multi, s->fd, flags, &running);
  check_done(h);
}

static int on_curl_socket(CURL *e, curl_socket_t fd, int what, void *userp,
                          void *socketp) {
  CG_UNUSED(e);
  cg__https *h = userp;
  sock *s = socketp;
  if (what == CURL_POLL_REMOVE) {
    if (s) {
      /* Not while close() is tearing the multi handle down. */
      if (!h->closing) curl_multi_assign(h->multi, fd, NULL);
      sock_close(h, s);
    }
    return 0;
  }
  if (!s) {
    s = calloc(1, sizeof(*s));
    if (!s) return -1;
    s->fd = fd;
    s->h = h;
    if (uv_poll_init_socket(h->loop, &s->poll, fd) != 0) {
      free(s);
      return -1;
    }
    s->poll.data = h;
    h->nhandles++;
    s->next = h->socks;
    if (h->socks) h->socks->prev = s;
    h->socks = s;
    curl_multi_assign(h->multi, fd, s);
  }
  int ev = 0;
  if (what & CURL_POLL_IN) ev |= UV_READABLE;
  if (what & CURL_POLL_OUT) ev |= UV_WRITABLE;
  if (uv_poll_start(&s->poll, ev, on_poll) != 0) return -1;
  return 0;
}

static void on_timer(uv_timer_t *t) {
  cg__https *h = CG_CONTAINER_OF(t, cg__https, timer);
  if (h->closing) return;
  int running = 0;
  curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
  check_done(h);
}

/* Curl asks to be called back in timeout_ms (0: as soon as possible, which
 * the timer makes "next loop turn" — never inside curl's own call), or -1:
 * no timeout wanted. */
static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp) {
  CG_UNUSED(multi);
  cg__https *h = userp;
  if (h->closing) return 0;
  if (timeout_ms < 0)
    uv_timer_stop(&h->timer);
  else
    uv_timer_start(&h->timer, on_timer, (uint64_t)timeout_ms, 0);
  return 0;
}

/* ------------------------------------------------------------ public */

cg__https *cg__https_new(uv_loop_t *loop, int *err) {
  int dummy;
  if (!err) err = &dummy;
  *err = 0;
  if (!loop) {
    *err = CG_EINVAL;
    return NULL;
  }
  /* Reference-counted and thread-safe in this libcurl (7.84+, feature
   * "threadsafe"); each client holds one reference. */
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
    *err = CG_EIO;
    return NULL;
  }
  cg__https *h = calloc(1, sizeof(*h));
  if (!h) {
    curl_global_cleanup();
    *err = CG_ENOMEM;
    return NULL;
  }
  h->loop = loop;
  h->multi = curl_multi_init();
  if (!h->multi || uv_timer_init(loop, &h->timer) != 0) {
    *err = h->multi ? CG_EIO : CG_ENOMEM;
    if (h->multi) curl_multi_cleanup(h->multi);
    free(h);
    curl_global_cleanup();
    return NULL;
  }
  h->timer.data = h;
  h->nhandles = 1;
  curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
  curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
  curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
  curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
  curl_multi_setopt(h->multi, CURLMOPT_MAX_HOST_CONNECTIONS,
                    MAX_HOST_CONNECTIONS);
  return h;
}

static int has_prefix_ci(const char *s, const char *p) {
  return strncasecmp(s, p, strlen(p)) == 0;
}

/* Sets the options of one transfer. Any failure is out of memory: the
 * values are ours and valid. */
static int setup_easy(hreq *r, const cg__https_req *req) {
  CURL *e = r->easy;
  uint32_t timeout =
      req->timeout_ms ? req->timeout_ms : CG__HTTPS_DEFAULT_TIMEOUT_MS;
  uint32_t connect = timeout < CG__HTTPS_CONNECT_TIMEOUT_MS
                         ? timeout
                         : CG__HTTPS_CONNECT_TIMEOUT_MS;
  size_t max =
      req->max_response_bytes ? req->max_response_bytes : CG_LIMIT_BODY_DEFAULT;
  if (max > CG_LIMIT_BODY_HARD) max = CG_LIMIT_BODY_HARD;
  cg_buf_init(&r->resp, max);

  CURLcode c = CURLE_OK;
#define SET(opt, val) \
  if (c == CURLE_OK) c = curl_easy_setopt(e, opt, val)
  SET(CURLOPT_URL, req->url);
  SET(CURLOPT_PRIVATE, (void *)r);
  SET(CURLOPT_NOSIGNAL, 1L);
  /* Removing a transfer that is still resolving (timeout, close) would
   * otherwise join the resolver thread — a blocking getaddrinfo() on the
   * loop. With this, curl detaches the thread, which frees itself. */
  SET(CURLOPT_QUICK_EXIT, 1L);
  SET(CURLOPT_PROTOCOLS_STR, "http,https");
  SET(CURLOPT_FOLLOWLOCATION, 0L);
  SET(CURLOPT_TIMEOUT_MS, (long)timeout);
  SET(CURLOPT_CONNECTTIMEOUT_MS, (long)connect);
  SET(CURLOPT_TCP_KEEPALIVE, 1L);
  SET(CURLOPT_ERRORBUFFER, r->errbuf);
  SET(CURLOPT_WRITEFUNCTION, on_body);
  SET(CURLOPT_WRITEDATA, (void *)r);
  SET(CURLOPT_HEADERFUNCTION, on_header);
  SET(CURLOPT_HEADERDATA, (void *)r);
  /* Decoded bytes go through on_body, so the limit bounds what we hold
   * even for a compressed answer. */
  SET(CURLOPT_ACCEPT_ENCODING, "");
  SET(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)max);
  SET(CURLOPT_USERAGENT, "cardgate/" CG_VERSION_STRING);
  if (strcmp(req->method, "GET") == 0) {
    SET(CURLOPT_HTTPGET, 1L);
  } else {
    if (strcmp(req->method, "POST") != 0)
      SET(CURLOPT_CUSTOMREQUEST, req->method);
    SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
    SET(CURLOPT_POSTFIELDS, r->body);
  }
  SET(CURLOPT_HTTPHEADER, r->hdrs);
#undef SET
  return c == CURLE_OK ? 0 : CG_ENOMEM;
}

int cg__https_request(cg__https *h, const cg__https_req *req, cg__https_cb cb,
                      void *ud) {
  if (!h || !req || !cb || !req->method || !req->url) return CG_EINVAL;
  if (h->closing) return CG_EALREADY;
  static const char *const methods[] = {"GET", "POST", "PATCH", "PUT",
                                        "DELETE"};
  int known = 0;
  for (size_t i = 0; i < CG_ARRAY_SIZE(methods); i++)
    if (strcmp(req->method, methods[i]) == 0) known = 1;
  if (!known) return CG_EINVAL;
  if (!has_prefix_ci(req->url, "http://") &&
      !has_prefix_ci(req->url, "https://"))
    return CG_EINVAL;
  if (req->body_len && !req->body) return CG_EINVAL;

  hreq *r = calloc(1, sizeof(*r));
  if (!r) return CG_ENOMEM;
  r->h = h;
  r->cb = cb;
  r->ud = ud;
  cg_buf_init(&r->resp, 0);
  r->body = malloc(req->body_len + 1);
  r->easy = curl_easy_init();
  int rc = r->body && r->easy ? 0 : CG_ENOMEM;
  if (!rc) {
    if (req->body_len) memcpy(r->body, req->body, req->body_len);
    r->body[req->body_len] = '\0';
    r->body_len = req->body_len;
    /* No "Expect: 100-continue" round trip before a body. */
    struct curl_slist *l = curl_slist_append(NULL, "Expect:");
    for (size_t i = 0; l && req->headers && req->headers[i]; i++) {
      struct curl_slist *n = curl_slist_append(l, req->headers[i]);
      if (!n) {
        curl_slist_free_all(l);
        l = NULL;
      } else {
        l = n;
      }
    }
    r->hdrs = l;
    if (!l) rc = CG_ENOMEM;
  }
  if (!rc) rc = setup_easy(r, req);
  if (!rc && curl_multi_add_handle(h->multi, r->easy) != CURLM_OK)
    rc = CG_ENOMEM;
  if (rc) {
    hreq_free(r);
    return rc;
  }
  list_push(&h->reqs, r);
  h->ninflight++;
  return 0;
}

size_t cg__https_inflight(const cg__https *h) {
  return h ? h->ninflight : 0;
}

/* The last handle has closed: run the cancelled callbacks, then the close
 * callback, then free. */
static void finish_close(cg__https *h) {
  while (h->cancelled) {
    hreq *r = h->cancelled;
    list_unlink(&h->cancelled, r);
    hreq_finish(r, UV_ECANCELED);
  }
  void (*cb)(void *) = h->close_cb;
  void *ud = h->close_ud;
  free(h);
  curl_global_cleanup();
  if (cb) cb(ud);
}

void cg__https_close(cg__https *h, void (*close_cb)(void *ud), void *ud) {
  if (!h) return;
  cg_assert(!h->closing); /* closing twice is a bug */
  h->closing = 1;
  h->close_cb = close_cb;
  h->close_ud = ud;
  /* Pull every transfer out of curl (curl may call on_curl_socket with
   * CURL_POLL_REMOVE meanwhile), then free the multi handle. */
  while (h->reqs) {
    hreq *r = h->reqs;
    curl_multi_remove_handle(h->multi, r->easy);
    list_unlink(&h->reqs, r);
    h->ninflight--;
    list_push(&h->cancelled, r);
  }
  curl_multi_cleanup(h->multi);
  h->multi = NULL;
  while (h->socks) sock_close(h, h->socks);
  uv_timer_stop(&h->timer);
  uv_close((uv_handle_t *)&h->timer, on_handle_closed);
}
