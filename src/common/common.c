#include "common.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "cardgate/error.h"

void cg__assert_fail(const char *expr, const char *file, int line) {
  fprintf(stderr, "cardgate: assertion failed: %s (%s:%d)\n", expr, file, line);
  abort();
}

void cg_buf_init(cg_buf *b, size_t max) {
  b->data = NULL;
  b->len = 0;
  b->cap = 0;
  b->max = max;
}

void cg_buf_free(cg_buf *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

void cg_buf_reset(cg_buf *b) {
  b->len = 0;
  if (b->data) b->data[0] = '\0';
}

static int buf_reserve(cg_buf *b, size_t extra) {
  if (extra > b->max || b->len > b->max - extra) return CG_ETOOBIG;
  size_t need = b->len + extra + 1;
  if (need <= b->cap) return 0;
  size_t ncap = b->cap ? b->cap : 256;
  while (ncap < need) ncap *= 2;
  char *p = realloc(b->data, ncap);
  if (!p) return CG_ENOMEM;
  b->data = p;
  b->cap = ncap;
  return 0;
}

int cg_buf_append(cg_buf *b, const void *p, size_t n) {
  int rc = buf_reserve(b, n);
  if (rc) return rc;
  if (n) memcpy(b->data + b->len, p, n);
  b->len += n;
  b->data[b->len] = '\0';
  return 0;
}

int cg_buf_appends(cg_buf *b, const char *s) { return cg_buf_append(b, s, strlen(s)); }

int cg_buf_appendf(cg_buf *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  va_list ap2;
  va_copy(ap2, ap);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0) {
    va_end(ap2);
    return CG_EINVAL;
  }
  int rc = buf_reserve(b, (size_t)n);
  if (rc) {
    va_end(ap2);
    return rc;
  }
  vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap2);
  va_end(ap2);
  b->len += (size_t)n;
  return 0;
}

int cg_buf_append_json_str(cg_buf *b, const char *s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  int rc = cg_buf_append(b, "\"", 1);
  size_t start = 0;
  for (size_t i = 0; i < n && rc == 0; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    rc = cg_buf_append(b, s + start, i - start);
    if (rc) break;
    char esc[6];
    switch (c) {
      case '"': rc = cg_buf_append(b, "\\\"", 2); break;
      case '\\': rc = cg_buf_append(b, "\\\\", 2); break;
      case '\n': rc = cg_buf_append(b, "\\n", 2); break;
      case '\r': rc = cg_buf_append(b, "\\r", 2); break;
      case '\t': rc = cg_buf_append(b, "\\t", 2); break;
      default:
        esc[0] = '\\'; esc[1] = 'u'; esc[2] = '0'; esc[3] = '0';
        esc[4] = hex[c >> 4]; esc[5] = hex[c & 15];
        rc = cg_buf_append(b, esc, 6);
    }
    start = i + 1;
  }
  if (rc == 0) rc = cg_buf_append(b, s + start, n - start);
  if (rc == 0) rc = cg_buf_append(b, "\"", 1);
  return rc;
}

void cg_buf_consume(cg_buf *b, size_t n) {
  if (n >= b->len) {
    cg_buf_reset(b);
    return;
  }
  memmove(b->data, b->data + n, b->len - n);
  b->len -= n;
  b->data[b->len] = '\0';
}

char *cg_strdup(const char *s) {
  if (!s) return NULL;
  return cg_strndup(s, strlen(s));
}

char *cg_strndup(const char *s, size_t n) {
  if (!s) return NULL;
  char *p = malloc(n + 1);
  if (!p) return NULL;
  memcpy(p, s, n);
  p[n] = '\0';
  return p;
}

size_t cg_strlcpy(char *dst, const char *src, size_t cap) {
  size_t n = strlen(src);
  if (cap) {
    size_t c = n < cap - 1 ? n : cap - 1;
    memcpy(dst, src, c);
    dst[c] = '\0';
  }
  return n;
}

void cg_fmt(char *dst, size_t cap, const char *fmt, ...) {
  if (!cap) return;
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(dst, cap, fmt, ap);
  va_end(ap);
  if (n < 0) dst[0] = '\0';
}

int cg_parse_i64(const char *s, size_t n, int64_t *out) {
  if (!s || n == 0 || n > 20) return CG_EINVAL;
  size_t i = 0;
  int neg = 0;
  if (s[0] == '-') {
    neg = 1;
    i = 1;
    if (n == 1) return CG_EINVAL;
  }
  uint64_t v = 0;
  for (; i < n; i++) {
    if (s[i] < '0' || s[i] > '9') return CG_EINVAL;
    uint64_t d = (uint64_t)(s[i] - '0');
    if (v > (UINT64_MAX - d) / 10) return CG_EINVAL;
    v = v * 10 + d;
  }
  if (!neg && v > (uint64_t)INT64_MAX) return CG_EINVAL;
  if (neg && v > (uint64_t)INT64_MAX + 1) return CG_EINVAL;
  *out = neg ? (int64_t)(0 - v) : (int64_t)v;
  return 0;
}

int cg_str_empty(const char *s) { return s == NULL || s[0] == '\0'; }

int64_t cg_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

uint64_t cg_mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void cg_time_iso(int64_t ms, char *out, size_t cap) {
  time_t t = (time_t)(ms / 1000);
  struct tm tm;
  gmtime_r(&t, &tm);
  if (strftime(out, cap, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0 && cap) out[0] = '\0';
}

void cg_time_local(int64_t ms, int tz_offset_min, char *out, size_t cap) {
  time_t t = (time_t)(ms / 1000 + (int64_t)tz_offset_min * 60);
  struct tm tm;
  gmtime_r(&t, &tm);
  if (strftime(out, cap, "%Y-%m-%d %H:%M", &tm) == 0 && cap) out[0] = '\0';
}

/* https://host[:port] (any host), or http:// to a loopback host only
 * (127.0.0.0/8, [::1], localhost): the app secret and the tokens must not
 * cross a network in clear text. An origin only: no path, query or
 * fragment (a trailing '/' is dropped). */
int cg_origin_ok(const char *u) {
  const char *host;
  int https = 0;
  if (strncasecmp(u, "https://", 8) == 0) {
    host = u + 8;
    https = 1;
  } else if (strncasecmp(u, "http://", 7) == 0) {
    host = u + 7;
  } else {
    return 0;
  }
  if (!*host || strlen(u) > 512 || strpbrk(u, " \t\r\n?#@")) return 0;
  const char *slash = strchr(host, '/');
  if (slash && slash[1]) return 0;
  size_t hl = slash ? (size_t)(slash - host) : strlen(host);
  if (hl == 0) return 0;
  if (https) return 1;
  char name[64];
  if (hl >= sizeof(name)) return 0;
  memcpy(name, host, hl);
  name[hl] = '\0';
  /* Drop the port: after ']' for IPv6, else after the last ':'. */
  char *h = name;
  if (name[0] == '[') {
    char *close = strchr(name, ']');
    if (!close || (close[1] && close[1] != ':')) return 0;
    *close = '\0';
    h = name + 1;
  } else {
    char *colon = strrchr(name, ':');
    if (colon) *colon = '\0';
  }
  if (strcasecmp(h, "localhost") == 0) return 1;
  unsigned char a[16];
  if (inet_pton(AF_INET, h, a) == 1) return a[0] == 127;
  if (name[0] == '[' && inet_pton(AF_INET6, h, a) == 1) {
    static const unsigned char one[16] = {0, 0, 0, 0, 0, 0, 0, 0,
                                          0, 0, 0, 0, 0, 0, 0, 1};
    return memcmp(a, one, 16) == 0;
  }
  return 0;
}

void cg_cleanse(void *p, size_t n) {
  volatile unsigned char *v = p;
  while (n--) *v++ = 0;
}

int cg_fail(char *err, size_t errlen, int code, const char *fmt, ...) {
  if (err && errlen) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    if (n < 0) err[0] = '\0';
  }
  return code;
}
