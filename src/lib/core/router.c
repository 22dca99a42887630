/* Route match expressions: see router.h. */
#include "router.h"

#include <stdlib.h>
#include <string.h>

#include "../../common/common.h"

typedef enum {
  F_PLATFORM, F_KIND, F_FORMAT, F_TAG, F_NAME, F_OPTION, F_EVENT_TYPE, F_VALUE
} field_t;

typedef enum { OP_PRESENT, OP_EQ, OP_NE } op_t;

typedef struct term {
  field_t field;
  op_t op;
  char *key;  /* F_VALUE: the value key */
  char *text; /* OP_EQ / OP_NE */
  int group;  /* index of the AND-group (groups are OR-ed) */
} term;

struct cg__match {
  term *terms;
  size_t n;
  int groups;
};

static const struct {
  const char *name;
  field_t f;
} fields[] = {{"platform", F_PLATFORM}, {"kind", F_KIND},   {"format", F_FORMAT},
              {"tag", F_TAG},           {"name", F_NAME},   {"option", F_OPTION},
              {"event_type", F_EVENT_TYPE}};

static void skip_ws(const char **p) {
  while (**p == ' ' || **p == '\t' || **p == '\n' || **p == '\r') (*p)++;
}

static int is_ident(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         (c >= '0' && c <= '9') || c == '_' || c == '-';
}

void cg__match_free(cg__match *m) {
  if (!m) return;
  for (size_t i = 0; i < m->n; i++) {
    free(m->terms[i].key);
    free(m->terms[i].text);
  }
  free(m->terms);
  free(m);
}

/* Parses a double-quoted string with \" and \\ escapes. */
static char *parse_string(const char **p) {
  const char *s = *p;
  if (*s != '"') return NULL;
  s++;
  cg_buf b;
  cg_buf_init(&b, 4096);
  while (*s && *s != '"') {
    char c = *s;
    if (c == '\\' && (s[1] == '"' || s[1] == '\\')) {
      c = s[1];
      s++;
    }
    if (cg_buf_append(&b, &c, 1)) {
      cg_buf_free(&b);
      return NULL;
    }
    s++;
  }
  if (*s != '"') {
    cg_buf_free(&b);
    return NULL;
  }
  *p = s + 1;
  if (!b.data) return cg_strdup("");
  return b.data;
}

cg__match *cg__match_compile(const char *expr, char *err, size_t errlen) {
  cg__match *m = calloc(1, sizeof(*m));
  if (!m) {
    cg_fmt(err, errlen, "out of memory");
    return NULL;
  }
  m->groups = 1;
  if (cg_str_empty(expr)) return m;
  const char *p = expr;
  size_t cap = 0;
  for (;;) {
    skip_ws(&p);
    size_t col = (size_t)(p - expr) + 1;
    const char *id = p;
    while (is_ident(*p) || *p == '.') p++;
    size_t idlen = (size_t)(p - id);
    if (idlen == 0) {
      cg_fmt(err, errlen, "column %zu: expected a field name (platform, kind, format, tag, name, option, event_type or value.KEY)", col);
      goto fail;
    }
    term t;
    memset(&t, 0, sizeof(t));
    t.group = m->groups - 1;
    if (idlen > 6 && memcmp(id, "value.", 6) == 0) {
      t.field = F_VALUE;
      t.key = cg_strndup(id + 6, idlen - 6);
      if (!t.key) goto oom;
    } else {
      size_t i;
      for (i = 0; i < CG_ARRAY_SIZE(fields); i++)
        if (strlen(fields[i].name) == idlen && memcmp(fields[i].name, id, idlen) == 0) break;
      if (i == CG_ARRAY_SIZE(fields)) {
        cg_fmt(err, errlen, "column %zu: unknown field \"%.*s\" (expected platform, kind, format, tag, name, option, event_type or value.KEY)",
               col, (int)(idlen > 64 ? 64 : idlen), id);
        goto fail;
      }
      t.field = fields[i].f;
    }
    skip_ws(&p);
    if ((p[0] == '=' || p[0] == '!') && p[1] == '=') {
      t.op = p[0] == '=' ? OP_EQ : OP_NE;
      p += 2;
      skip_ws(&p);
      col = (size_t)(p - expr) + 1;
      t.text = parse_string(&p);
      if (!t.text) {
        free(t.key);
        cg_fmt(err, errlen, "column %zu: expected a double-quoted string after the operator", col);
        goto fail;
      }
    } else {
      t.op = OP_PRESENT;
    }
    if (m->n == cap) {
      size_t ncap = cap ? cap * 2 : 4;
      term *nt = realloc(m->terms, ncap * sizeof(*nt));
      if (!nt) {
        free(t.key);
        free(t.text);
        goto oom;
      }
      m->terms = nt;
      cap = ncap;
    }
    m->terms[m->n++] = t;
    skip_ws(&p);
    if (*p == '\0') break;
    if (p[0] == '&' && p[1] == '&') {
      p += 2;
    } else if (p[0] == '|' && p[1] == '|') {
      p += 2;
      m->groups++;
    } else {
      cg_fmt(err, errlen, "column %zu: expected && or || or the end of the expression", (size_t)(p - expr) + 1);
      goto fail;
    }
  }
  return m;
oom:
  cg_fmt(err, errlen, "out of memory");
fail:
  cg__match_free(m);
  return NULL;
}

static const char *field_value(const term *t, const cg_action *a) {
  switch (t->field) {
    case F_PLATFORM: return cg_platform_name(a->platform);
    case F_KIND: return cg_kind_name(a->kind);
    case F_FORMAT: return cg_format_name(a->format);
    case F_TAG: return a->tag;
    case F_NAME: return a->name;
    case F_OPTION: return a->option;
    case F_EVENT_TYPE: return a->event_type;
    case F_VALUE: return cg_action_value(a, t->key);
  }
  return NULL;
}

static int term_eval(const term *t, const cg_action *a) {
  const char *v = field_value(t, a);
  switch (t->op) {
    case OP_PRESENT: return v != NULL && v[0] != '\0';
    case OP_EQ: return v != NULL && strcmp(v, t->text) == 0;
    case OP_NE: return v == NULL || strcmp(v, t->text) != 0;
  }
  return 0;
}

int cg__match_eval(const cg__match *m, const cg_action *a) {
  if (m->n == 0) return 1;
  size_t i = 0;
  for (int g = 0; g < m->groups; g++) {
    int ok = 1;
    for (; i < m->n && m->terms[i].group == g; i++)
      if (ok && !term_eval(&m->terms[i], a)) ok = 0;
    if (ok) return 1;
  }
  return 0;
}
