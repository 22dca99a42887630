/* Card templates: ${var} substitution over a jansson tree. Pure: no clock,
 * no globals; the values come from the caller's lookup function.
 *
 * Syntax (template.h): "${name}" with name in [A-Za-z0-9_.]+, "$${" for a
 * literal "${". Anything else that starts with "${" but is not a placeholder
 * ("${", "${}", "${a b}") is malformed: cg__template_check reports it, and
 * the renderer, which only ever sees checked templates in practice, copies it
 * through as written. Object keys are never substituted; numbers, booleans
 * and null are copied unchanged. */
#include "lib/codec/template.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cardgate/error.h"
#include "common/common.h"
#include "common/limits.h"

/* ---- scanning ---------------------------------------------------------- */

static int name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         (c >= '0' && c <= '9') || c == '_' || c == '.';
}

typedef enum {
  TOK_TEXT,        /* a literal run [start, start+len) */
  TOK_ESCAPE,      /* "$${" → "${" */
  TOK_PLACEHOLDER, /* ${name}: name at [start+2, start+2+name_len) */
  TOK_BAD          /* "${" that is not a placeholder */
} tok_kind;

typedef struct tok {
  tok_kind kind;
  size_t start, len; /* bytes consumed from the string */
  size_t name_len;   /* TOK_PLACEHOLDER */
  const char *why;   /* TOK_BAD: what is wrong */
} tok;

/* The next token of s[i..n). */
static tok next_tok(const char *s, size_t n, size_t i) {
  tok t = {TOK_TEXT, i, 0, 0, NULL};
  if (s[i] == '$' && i + 2 < n && s[i + 1] == '$' && s[i + 2] == '{') {
    t.kind = TOK_ESCAPE;
    t.len = 3;
    return t;
  }
  if (s[i] == '$' && i + 1 < n && s[i + 1] == '{') {
    size_t j = i + 2;
    while (j < n && name_char(s[j])) j++;
    if (j < n && s[j] == '}' && j > i + 2) {
      t.kind = TOK_PLACEHOLDER;
      t.len = j + 1 - i;
      t.name_len = j - (i + 2);
      return t;
    }
    t.kind = TOK_BAD;
    if (j < n && s[j] == '}') {
      t.why = "empty placeholder";
      t.len = j + 1 - i;
      return t;
    }
    const char *close = j < n ? memchr(s + j, '}', n - j) : NULL;
    if (close) {
      t.why = "bad placeholder name";
      t.len = (size_t)(close - (s + i)) + 1;
    } else {
      t.why = "unterminated placeholder";
      t.len = n - i;
    }
    return t;
  }
  /* Literal text up to the next '$'. */
  size_t j = i + 1;
  while (j < n && s[j] != '$') j++;
  t.len = j - i;
  return t;
}

/* Appends s[0..n) with placeholders substituted to out. */
static int subst(const char *s, size_t n, cg__tmpl_lookup_fn lookup, void *ud,
                 cg_buf *out) {
  size_t i = 0;
  int rc = 0;
  while (i < n && rc == 0) {
    tok t = next_tok(s, n, i);
    switch (t.kind) {
      case TOK_ESCAPE:
        rc = cg_buf_append(out, "${", 2);
        break;
      case TOK_PLACEHOLDER: {
        const char *v = lookup ? lookup(s + i + 2, t.name_len, ud) : NULL;
        if (v) rc = cg_buf_appends(out, v);
        break;
      }
      case TOK_BAD: /* only one byte: what follows "$" is scanned again */
        t.len = 1;
        rc = cg_buf_append(out, s + i, 1);
        break;
      case TOK_TEXT:
        rc = cg_buf_append(out, s + i, t.len);
        break;
    }
    i += t.len;
  }
  return rc;
}

/* ---- render ------------------------------------------------------------ */

typedef struct rctx {
  cg__tmpl_lookup_fn lookup;
  void *ud;
  cg_buf buf;   /* scratch for one string */
  size_t total; /* estimated compact JSON size so far */
  int rc;       /* first failure */
  const char *why;
} rctx;

static int account(rctx *c, size_t n) {
  if (n > CG_LIMIT_TEMPLATE_OUTPUT - c->total) {
    c->rc = CG_ETOOBIG;
    c->why = "template output exceeds the size limit";
    return -1;
  }
  c->total += n;
  return 0;
}

static json_t *render_node(const json_t *n, rctx *c, int depth);

static json_t *render_object(const json_t *n, rctx *c, int depth) {
  json_t *out = json_object();
  if (!out) return NULL;
  const char *key;
  size_t klen;
  json_t *val;
  /* Iteration does not modify n; jansson's iterator API is just not const. */
  json_t *src = (json_t *)n;
  if (account(c, 2)) goto fail;
  json_object_keylen_foreach(src, key, klen, val) {
    if (account(c, klen + 4)) goto fail;
    json_t *child = render_node(val, c, depth + 1);
    if (!child) goto fail;
    if (json_object_setn_new(out, key, klen, child)) goto fail;
  }
  return out;
fail:
  json_decref(out);
  return NULL;
}

static json_t *render_array(const json_t *n, rctx *c, int depth) {
  json_t *out = json_array();
  if (!out) return NULL;
  if (account(c, 2)) goto fail;
  for (size_t i = 0; i < json_array_size(n); i++) {
    if (account(c, 1)) goto fail;
    json_t *child = render_node(json_array_get(n, i), c, depth + 1);
    if (!child) goto fail;
    if (json_array_append_new(out, child)) goto fail;
  }
  return out;
fail:
  json_decref(out);
  return NULL;
}

static json_t *render_string(const json_t *n, rctx *c) {
  /* No placeholder: the template's own string is shared (jansson strings
   * are never modified in place here: cards are patched by replacing
   * members), which saves two allocations and a copy per string. */
  if (!memchr(json_string_value(n), '$', json_string_length(n))) {
    if (account(c, json_string_length(n) + 2)) return NULL;
    return json_incref((json_t *)n);
  }
  cg_buf_reset(&c->buf);
  int rc = subst(json_string_value(n), json_string_length(n), c->lookup, c->ud,
                 &c->buf);
  if (rc) {
    c->rc = rc;
    c->why = rc == CG_ETOOBIG ? "template output exceeds the size limit"
                              : "out of memory";
    return NULL;
  }
  if (account(c, c->buf.len + 2)) return NULL;
  json_t *out = json_stringn(c->buf.data ? c->buf.data : "", c->buf.len);
  if (!out) {
    /* json_stringn refuses invalid UTF-8 (a value from the lookup). */
    c->rc = CG_EMALFORMED;
    c->why = "rendered text is not valid UTF-8";
  }
  return out;
}

static json_t *render_node(const json_t *n, rctx *c, int depth) {
  if (depth > CG_LIMIT_JSON_DEPTH) {
    c->rc = CG_ETOOBIG;
    c->why = "template nesting is too deep";
    return NULL;
  }
  json_t *out = NULL;
  char num[32];
  switch (json_typeof(n)) {
    case JSON_OBJECT:
      return render_object(n, c, depth);
    case JSON_ARRAY:
      return render_array(n, c, depth);
    case JSON_STRING:
      return render_string(n, c);
    case JSON_INTEGER:
      cg_fmt(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(n));
      if (account(c, strlen(num))) return NULL;
      out = json_incref((json_t *)n); /* shared, like constant strings */
      break;
    case JSON_REAL:
      if (account(c, 24)) return NULL;
      out = json_incref((json_t *)n);
      break;
    case JSON_TRUE:
      if (account(c, 4)) return NULL;
      out = json_true();
      break;
    case JSON_FALSE:
      if (account(c, 5)) return NULL;
      out = json_false();
      break;
    case JSON_NULL:
      if (account(c, 4)) return NULL;
      out = json_null();
      break;
  }
  return out;
}

json_t *cg__template_render(const json_t *tmpl, cg__tmpl_lookup_fn lookup,
                            void *ud, char *err, size_t errlen) {
  if (err && errlen) err[0] = '\0';
  if (!tmpl) {
    if (err) cg_fmt(err, errlen, "no template");
    return NULL;
  }
  rctx c = {lookup, ud, {0}, 0, 0, NULL};
  cg_buf_init(&c.buf, CG_LIMIT_TEMPLATE_OUTPUT);
  json_t *out = render_node(tmpl, &c, 0);
  cg_buf_free(&c.buf);
  if (!out && err) cg_fmt(err, errlen, "%s", c.why ? c.why : "out of memory");
  return out;
}

char *cg__template_render_str(const char *s, cg__tmpl_lookup_fn lookup,
                              void *ud) {
  if (!s) return NULL;
  cg_buf b;
  cg_buf_init(&b, CG_LIMIT_TEMPLATE_OUTPUT);
  if (subst(s, strlen(s), lookup, ud, &b) != 0) {
    cg_buf_free(&b);
    return NULL;
  }
  if (!b.data) return cg_strdup("");
  return b.data; /* the buffer is a NUL-terminated malloc'd string */
}

/* ---- check ------------------------------------------------------------- */

typedef struct cctx {
  cg__tmpl_known_fn known;
  void *ud;
  cg_buf path;
  size_t prefix_len; /* the caller's path prefix: the template's root */
  char *err;
  size_t errlen;
} cctx;

static int ident_key(const char *k, size_t n) {
  if (n == 0 || (k[0] >= '0' && k[0] <= '9') || k[0] == '-') return 0;
  for (size_t i = 0; i < n; i++) {
    char ch = k[i];
    if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
          (ch >= '0' && ch <= '9') || ch == '_' || ch == '-'))
      return 0;
  }
  return 1;
}

/* Appends ".key" or ["key"] to the path (a failed append only shortens the
 * path in a message). */
static void path_key(cg_buf *p, const char *k, size_t n) {
  if (ident_key(k, n)) {
    if (cg_buf_append(p, ".", 1) == 0) (void)cg_buf_append(p, k, n);
  } else if (cg_buf_append(p, "[", 1) == 0 &&
             cg_buf_append_json_str(p, k, n) == 0) {
    (void)cg_buf_append(p, "]", 1);
  }
}

static void path_trunc(cg_buf *p, size_t len) {
  p->len = len;
  if (p->data) p->data[len] = '\0';
}

static int check_fail(cctx *c, const char *what, const char *s, size_t n) {
  /* Quote at most 48 bytes of the offending text. */
  int shown = (int)(n > 48 ? 48 : n);
  cg_fmt(c->err, c->errlen, "%s: %s \"%.*s%s\"",
         c->path.data ? c->path.data : "$", what, shown, s, n > 48 ? "…" : "");
  return -1;
}

static int check_string(cctx *c, const char *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    tok t = next_tok(s, n, i);
    if (t.kind == TOK_BAD) return check_fail(c, t.why, s + i, t.len);
    if (t.kind == TOK_PLACEHOLDER && c->known &&
        !c->known(s + i + 2, t.name_len, c->ud))
      return check_fail(c, "unknown variable", s + i + 2, t.name_len);
    i += t.len;
  }
  return 0;
}

static int check_node(cctx *c, const json_t *n, int depth) {
  if (depth > CG_LIMIT_JSON_DEPTH) {
    /* Named by the template's root: the full path would be mostly "[0]". */
    path_trunc(&c->path, c->prefix_len);
    cg_fmt(c->err, c->errlen, "%s: nesting deeper than %d levels",
           c->path.data ? c->path.data : "$", CG_LIMIT_JSON_DEPTH);
    return -1;
  }
  size_t mark = c->path.len;
  if (json_is_object(n)) {
    const char *key;
    size_t klen;
    json_t *val;
    json_t *src = (json_t *)n; /* read only, see render_object */
    json_object_keylen_foreach(src, key, klen, val) {
      path_key(&c->path, key, klen);
      if (check_node(c, val, depth + 1)) return -1;
      path_trunc(&c->path, mark);
    }
  } else if (json_is_array(n)) {
    for (size_t i = 0; i < json_array_size(n); i++) {
      (void)cg_buf_appendf(&c->path, "[%zu]", i);
      if (check_node(c, json_array_get(n, i), depth + 1)) return -1;
      path_trunc(&c->path, mark);
    }
  } else if (json_is_string(n)) {
    return check_string(c, json_string_value(n), json_string_length(n));
  }
  return 0;
}

int cg__template_check(const json_t *tmpl, const char *path_prefix,
                       cg__tmpl_known_fn known, void *ud, char *err,
                       size_t errlen) {
  char dummy[1];
  if (!err || !errlen) {
    err = dummy;
    errlen = sizeof dummy;
  }
  err[0] = '\0';
  if (!tmpl) return 0;
  cctx c = {known, ud, {0}, 0, err, errlen};
  /* Paths are for messages only; 64 KiB is far beyond any real one. */
  cg_buf_init(&c.path, 64u * 1024u);
  if (cg_buf_appends(&c.path, path_prefix ? path_prefix : "$") != 0) {
    cg_buf_free(&c.path);
    cg_fmt(err, errlen, "out of memory");
    return -1;
  }
  c.prefix_len = c.path.len;
  int rc = check_node(&c, tmpl, 0);
  cg_buf_free(&c.path);
  return rc;
}
