/* Shared helpers for the library, the program and the tests: buffers with a
 * maximum, strings, time, assertions. Not installed. */
#ifndef CG_COMMON_H
#define CG_COMMON_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#define CG_CONTAINER_OF(ptr, type, field)                                      \
  ((type *)((char *)(ptr) - offsetof(type, field)))
#define CG_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define CG_UNUSED(x) ((void)(x))

/* Invariants stay checked in release builds: a bug crashes loudly, with the
 * place it was found. Never use it on input. */
#define cg_assert(expr)                                                        \
  ((expr) ? (void)0 : cg__assert_fail(#expr, __FILE__, __LINE__))
void cg__assert_fail(const char *expr, const char *file, int line)
    __attribute__((noreturn));

/* Growable byte buffer that refuses to grow past max (untrusted input only
 * ever enters buffers with a maximum). data is always NUL-terminated. */
typedef struct cg_buf {
  char *data;
  size_t len;
  size_t cap;
  size_t max;
} cg_buf;

void cg_buf_init(cg_buf *b, size_t max);
void cg_buf_free(cg_buf *b);
void cg_buf_reset(cg_buf *b);
/* 0, CG_ETOOBIG (would pass max; b unchanged), CG_ENOMEM. */
int cg_buf_append(cg_buf *b, const void *p, size_t n);
int cg_buf_appends(cg_buf *b, const char *s);
int cg_buf_appendf(cg_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Appends s as a JSON string literal (with quotes), escaping as RFC 8259. */
int cg_buf_append_json_str(cg_buf *b, const char *s, size_t n);
/* Drops the first n bytes. */
void cg_buf_consume(cg_buf *b, size_t n);

/* malloc'd copy; NULL when s is NULL or out of memory. */
char *cg_strdup(const char *s);
char *cg_strndup(const char *s, size_t n);
/* Bounded copy that always terminates (when cap > 0); returns strlen(src). */
size_t cg_strlcpy(char *dst, const char *src, size_t cap);
/* snprintf into a fixed buffer, truncating safely. */
void cg_fmt(char *dst, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Strict decimal parse of [s, s+n): optional '-', digits only, no overflow.
 * 0 or CG_EINVAL. */
int cg_parse_i64(const char *s, size_t n, int64_t *out);
/* 1 when s is NULL or "". */
int cg_str_empty(const char *s);
/* 1 when u is an origin cardgate may send secrets to: https://host[:port]
 * (any host), or http:// to a loopback host only (127.0.0.0/8, [::1],
 * localhost) for tests and the emulator. No path, query or fragment (one
 * trailing '/' is allowed). */
int cg_origin_ok(const char *u);
/* Writes a formatted reason into err (errlen bytes; either may be 0/NULL)
 * and returns code: `return cg_fail(err, errlen, CG_EMALFORMED, "…", …);`. */
int cg_fail(char *err, size_t errlen, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Zeroes n bytes in a way the compiler keeps (secrets before free). */
void cg_cleanse(void *p, size_t n);

/* Clocks. */
int64_t cg_now_ms(void);        /* wall clock, ms since the epoch */
uint64_t cg_mono_ms(void);      /* monotonic */
/* RFC 3339 UTC ("2026-11-22T01:20:44Z") of ms into out (>= 21 bytes);
 * with tz_offset_min, local time with that offset ("2026-11-22 09:20"). */
void cg_time_iso(int64_t ms, char *out, size_t cap);
void cg_time_local(int64_t ms, int tz_offset_min, char *out, size_t cap);

#endif /* CG_COMMON_H */
