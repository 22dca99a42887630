/* Declarative workflows: loading and checking the JSON (workflow.h), the pure
 * step and the store-backed driver (workflow_int.h). Format and semantics:
 * docs/workflows.md.
 *
 * A loaded workflow is immutable and shared by every thread-pool thread that
 * runs it: the step only reads it (jansson lookups and iteration do not
 * modify a tree) and works on its own copies. */
#include "cardgate/workflow.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "common/limits.h"
#include "lib/codec/json_util.h"
#include "lib/codec/template.h"
#include "lib/core/builtin.h"
#include "lib/core/workflow_int.h"
#include "lib/core/reply_int.h"

#define NAME_MAX_LEN 64  /* workflow, card and variable names */
#define STATE_MAX_LEN 48 /* so "a -> b" always fits cg__wf_outcome.result */
#define MATCH_MAX_LEN 4096
#define RUN_ATTEMPTS 8
#define CN_UTC_OFFSET_MIN 480 /* ${now_cn}: China Standard Time, UTC+8 */

typedef struct wf_toast {
  const char *type; /* "info" … */
  json_t *content;  /* string template (borrowed from root) */
  json_t *i18n;     /* object locale → string template, or NULL */
} wf_toast;

typedef struct wf_trans {
  json_t *when;  /* object key → string, or NULL (matches every action) */
  size_t to;     /* state index */
  json_t *set;   /* object var → string template, or NULL */
  json_t *patch; /* array of {path, value}, or NULL */
  int has_toast;
  wf_toast toast;
} wf_trans;

typedef struct wf_state {
  const char *name;
  json_t *card; /* card template, or NULL */
  wf_trans *on;
  size_t n_on;
  int has_otherwise;
  wf_toast otherwise;
} wf_state;

struct cg_workflow {
  json_t *root; /* everything below points into it */
  const char *name;
  const char *match;
  json_t *vars; /* initial variables (object of strings), or NULL */
  size_t initial;
  wf_state *states;
  size_t n_states;
  int stateless; /* never touches the store: every click starts afresh */
};

/* ======================================================================= */
/* Loading                                                                 */
/* ======================================================================= */

typedef struct lctx {
  const char *origin;
  char *errbuf;
  size_t errlen;
  json_t *known; /* variable names usable in templates: vars ∪ every set */
} lctx;

/* Writes "<origin>: <path>: <message>" and returns -1. */
static int lfail(lctx *c, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int lfail(lctx *c, const char *path, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (n < 0) msg[0] = '\0';
  if (c->errbuf && c->errlen)
    cg_fmt(c->errbuf, c->errlen, "%s: %s: %s", c->origin, path, msg);
  return -1;
}


/* dst = parent + ".key" (identifier keys) or parent + "[\"key\"]". */
static void key_path(char *dst, size_t cap, const char *parent,
                     const char *key) {
  int ident = key[0] != '\0' && !(key[0] >= '0' && key[0] <= '9');
  for (const char *p = key; *p && ident; p++)
    ident = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
            (*p >= '0' && *p <= '9') || *p == '_' || *p == '-';
  if (ident) {
    cg_fmt(dst, cap, "%s.%s", parent, key);
    return;
  }
  cg_buf b;
  cg_buf_init(&b, 256);
  if (cg_buf_append_json_str(&b, key, strlen(key)) == 0)
    cg_fmt(dst, cap, "%s[%s]", parent, b.data);
  else
    cg_fmt(dst, cap, "%s[…]", parent);
  cg_buf_free(&b);
}

static int names_ok(const char *s, size_t max, int dots_dashes) {
  size_t n = strlen(s);
  if (n == 0 || n > max) return 0;
  for (size_t i = 0; i < n; i++) {
    char ch = s[i];
    int ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
             (ch >= '0' && ch <= '9') || ch == '_' ||
             (dots_dashes && ch == '-');
    if (!ok) return 0;
  }
  return 1;
}

/* The first key of obj not in allowed (NULL-terminated) is an error. */
static int only_keys(lctx *c, const char *path, json_t *obj,
                     const char *const *allowed) {
  const char *key;
  json_t *val;
  json_object_foreach(obj, key, val) {
    int ok = 0;
    for (size_t i = 0; allowed[i] && !ok; i++)
      ok = strcmp(key, allowed[i]) == 0;
    if (!ok) {
      char p[512];
      key_path(p, sizeof p, path, key);
      return lfail(c, p, "unknown key");
    }
  }
  return 0;
}

/* obj[key] when it has type want (JSON_OBJECT, JSON_ARRAY or JSON_STRING).
 * *out = NULL when absent and !required. */
static int get_typed(lctx *c, json_t *obj, const char *path, const char *key,
                     json_type want, int required, json_t **out) {
  char p[512];
  key_path(p, sizeof p, path, key);
  json_t *v = json_object_get(obj, key);
  *out = NULL;
  if (!v) return required ? lfail(c, p, "missing required field") : 0;
  if (json_typeof(v) != want) {
    const char *w = want == JSON_OBJECT  ? "an object"
                    : want == JSON_ARRAY ? "an array"
                                         : "a string";
    return lfail(c, p, "must be %s, not %s", w, cg__json_type_name(v));
  }
  *out = v;
  return 0;
}

static const char *const reserved_vars[] = {
    "state", "operator", "message_id", "chat_id", "tenant_key",
    "now",   "now_cn",   "platform",   "value",   NULL};

static int check_var_name(lctx *c, const char *path, const char *name) {
  char p[512];
  key_path(p, sizeof p, path, name);
  if (!names_ok(name, NAME_MAX_LEN, 0))
    return lfail(c, p,
                 "variable names are [A-Za-z0-9_]+, at most %d characters",
                 NAME_MAX_LEN);
  for (size_t i = 0; reserved_vars[i]; i++)
    if (strcmp(name, reserved_vars[i]) == 0)
      return lfail(c, p, "\"%s\" is a built-in variable", name);
  return 0;
}

/* Checks an object of string values (vars, set, when, i18n); names of vars
 * (is_vars) are also checked and remembered as known. */
static int string_map(lctx *c, const char *path, json_t *obj, int is_vars) {
  const char *key;
  json_t *val;
  json_object_foreach(obj, key, val) {
    char p[512];
    key_path(p, sizeof p, path, key);
    if (key[0] == '\0') return lfail(c, p, "empty key");
    if (is_vars) {
      if (check_var_name(c, path, key)) return -1;
      if (json_object_set_new(c->known, key, json_true()))
        return lfail(c, p, "out of memory");
    }
    if (!json_is_string(val))
      return lfail(c, p, "must be a string, not %s", cg__json_type_name(val));
  }
  return 0;
}

static int find_state(const cg_workflow *wf, const char *name, size_t *idx) {
  for (size_t i = 0; i < wf->n_states; i++) {
    if (strcmp(wf->states[i].name, name) == 0) {
      *idx = i;
      return 1;
    }
  }
  return 0;
}

static const char *const toast_keys[] = {"type", "content", "i18n", NULL};
static const char *const toast_types[] = {"info", "success", "error", "warning",
                                          NULL};

static int load_toast(lctx *c, const char *path, json_t *obj, wf_toast *t) {
  json_t *type;
  if (only_keys(c, path, obj, toast_keys) ||
      get_typed(c, obj, path, "type", JSON_STRING, 0, &type) ||
      get_typed(c, obj, path, "content", JSON_STRING, 1, &t->content) ||
      get_typed(c, obj, path, "i18n", JSON_OBJECT, 0, &t->i18n))
    return -1;
  t->type = "info";
  if (type) {
    int ok = 0;
    for (size_t i = 0; toast_types[i] && !ok; i++)
      ok = strcmp(json_string_value(type), toast_types[i]) == 0;
    if (!ok) {
      char p[512];
      key_path(p, sizeof p, path, "type");
      return lfail(c, p,
                   "unknown toast type \"%s\" (info, success, error, warning)",
                   json_string_value(type));
    }
    t->type = json_string_value(type);
  }
  if (t->i18n) {
    char p[512];
    key_path(p, sizeof p, path, "i18n");
    if (string_map(c, p, t->i18n, 0)) return -1;
  }
  return 0;
}

/* A JSON pointer (RFC 6901 §3): "" or "/"-separated tokens, "~" only in
 * "~0" and "~1". */
static int pointer_ok(const char *p) {
  if (p[0] != '\0' && p[0] != '/') return 0;
  for (; *p; p++)
    if (*p == '~' && p[1] != '0' && p[1] != '1') return 0;
  return 1;
}

static const char *const patch_keys[] = {"path", "value", NULL};

static int load_patch(lctx *c, const char *path, json_t *arr) {
  for (size_t i = 0; i < json_array_size(arr); i++) {
    char p[512];
    cg_fmt(p, sizeof p, "%s[%zu]", path, i);
    json_t *op = json_array_get(arr, i);
    if (!json_is_object(op))
      return lfail(c, p, "must be an object, not %s", cg__json_type_name(op));
    json_t *ptr;
    if (only_keys(c, p, op, patch_keys) ||
        get_typed(c, op, p, "path", JSON_STRING, 1, &ptr))
      return -1;
    if (!json_object_get(op, "value")) {
      char pv[512];
      key_path(pv, sizeof pv, p, "value");
      return lfail(c, pv, "missing required field");
    }
    if (!pointer_ok(json_string_value(ptr))) {
      char pp[512];
      key_path(pp, sizeof pp, p, "path");
      return lfail(c, pp, "not a JSON pointer (\"\" or \"/a/b/0\")");
    }
  }
  return 0;
}

static const char *const trans_keys[] = {"when",  "to",    "set",
                                         "patch", "toast", NULL};

static int load_trans(lctx *c, cg_workflow *wf, const char *path, json_t *obj,
                      wf_trans *t) {
  json_t *to, *toast;
  if (only_keys(c, path, obj, trans_keys) ||
      get_typed(c, obj, path, "when", JSON_OBJECT, 0, &t->when) ||
      get_typed(c, obj, path, "to", JSON_STRING, 1, &to) ||
      get_typed(c, obj, path, "set", JSON_OBJECT, 0, &t->set) ||
      get_typed(c, obj, path, "patch", JSON_ARRAY, 0, &t->patch) ||
      get_typed(c, obj, path, "toast", JSON_OBJECT, 0, &toast))
    return -1;
  char p[512];
  if (!find_state(wf, json_string_value(to), &t->to)) {
    key_path(p, sizeof p, path, "to");
    return lfail(c, p, "unknown state \"%s\"", json_string_value(to));
  }
  if (t->when) {
    key_path(p, sizeof p, path, "when");
    if (string_map(c, p, t->when, 0)) return -1;
  }
  if (t->set) {
    key_path(p, sizeof p, path, "set");
    if (string_map(c, p, t->set, 1)) return -1;
  }
  if (t->patch) {
    key_path(p, sizeof p, path, "patch");
    if (load_patch(c, p, t->patch)) return -1;
  }
  if (toast) {
    key_path(p, sizeof p, path, "toast");
    if (load_toast(c, p, toast, &t->toast)) return -1;
    t->has_toast = 1;
  }
  return 0;
}

static const char *const state_keys[] = {"card", "on", "otherwise",
                                         "description", NULL};
static const char *const otherwise_keys[] = {"toast", NULL};

static int load_state(lctx *c, cg_workflow *wf, json_t *cards, size_t idx,
                      json_t *obj) {
  wf_state *s = &wf->states[idx];
  char path[512], p[512];
  key_path(path, sizeof path, "$.states", s->name);
  if (!json_is_object(obj))
    return lfail(c, path, "must be an object, not %s", cg__json_type_name(obj));
  json_t *card, *on, *otherwise, *desc;
  if (only_keys(c, path, obj, state_keys) ||
      get_typed(c, obj, path, "card", JSON_STRING, 0, &card) ||
      get_typed(c, obj, path, "on", JSON_ARRAY, 0, &on) ||
      get_typed(c, obj, path, "otherwise", JSON_OBJECT, 0, &otherwise) ||
      get_typed(c, obj, path, "description", JSON_STRING, 0, &desc))
    return -1;
  if (card) {
    s->card = cards ? json_object_get(cards, json_string_value(card)) : NULL;
    if (!s->card) {
      key_path(p, sizeof p, path, "card");
      return lfail(c, p, "unknown card \"%s\"", json_string_value(card));
    }
  }
  if (on && json_array_size(on) > 0) {
    s->n_on = json_array_size(on);
    s->on = calloc(s->n_on, sizeof *s->on);
    if (!s->on) return lfail(c, path, "out of memory");
    for (size_t i = 0; i < s->n_on; i++) {
      cg_fmt(p, sizeof p, "%s.on[%zu]", path, i);
      json_t *t = json_array_get(on, i);
      if (!json_is_object(t))
        return lfail(c, p, "must be an object, not %s", cg__json_type_name(t));
      if (load_trans(c, wf, p, t, &s->on[i])) return -1;
    }
  }
  if (otherwise) {
    json_t *toast;
    key_path(p, sizeof p, path, "otherwise");
    if (only_keys(c, p, otherwise, otherwise_keys) ||
        get_typed(c, otherwise, p, "toast", JSON_OBJECT, 0, &toast))
      return -1;
    if (toast) {
      char pt[512];
      key_path(pt, sizeof pt, p, "toast");
      if (load_toast(c, pt, toast, &s->otherwise)) return -1;
      s->has_otherwise = 1;
    }
  }
  return 0;
}

/* ---- placeholders ------------------------------------------------------ */

static int is_prefix(const char *name, size_t n, const char *p) {
  size_t pn = strlen(p);
  return n > pn && memcmp(name, p, pn) == 0;
}

static int same(const char *name, size_t n, const char *lit) {
  return strlen(lit) == n && memcmp(name, lit, n) == 0;
}

static const char *const builtin_vars[] = {"state",
                                           "operator",
                                           "operator.open_id",
                                           "operator.user_id",
                                           "operator.union_id",
                                           "message_id",
                                           "chat_id",
                                           "tenant_key",
                                           "now",
                                           "now_cn",
                                           "platform",
                                           NULL};

static int known_var(const char *name, size_t n, void *ud) {
  lctx *c = ud;
  for (size_t i = 0; builtin_vars[i]; i++)
    if (same(name, n, builtin_vars[i])) return 1;
  if (is_prefix(name, n, "value.")) return 1;
  return json_object_getn(c->known, name, n) != NULL;
}

/* Checks the placeholders of one template tree at path. */
static int check_tmpl(lctx *c, const json_t *t, const char *path) {
  char msg[512];
  if (cg__template_check(t, path, known_var, c, msg, sizeof msg) == 0) return 0;
  if (c->errbuf && c->errlen)
    cg_fmt(c->errbuf, c->errlen, "%s: %s", c->origin, msg);
  return -1;
}

static int check_toast(lctx *c, const wf_toast *t, const char *path) {
  char p[512];
  key_path(p, sizeof p, path, "content");
  if (check_tmpl(c, t->content, p)) return -1;
  if (t->i18n) {
    key_path(p, sizeof p, path, "i18n");
    if (check_tmpl(c, t->i18n, p)) return -1;
  }
  return 0;
}

static int check_all_templates(lctx *c, const cg_workflow *wf, json_t *cards) {
  char p[512], q[512];
  if (cards) {
    const char *key;
    json_t *val;
    json_object_foreach(cards, key, val) {
      key_path(p, sizeof p, "$.cards", key);
      if (check_tmpl(c, val, p)) return -1;
    }
  }
  for (size_t i = 0; i < wf->n_states; i++) {
    const wf_state *s = &wf->states[i];
    char sp[512];
    key_path(sp, sizeof sp, "$.states", s->name);
    for (size_t j = 0; j < s->n_on; j++) {
      const wf_trans *t = &s->on[j];
      cg_fmt(p, sizeof p, "%s.on[%zu]", sp, j);
      if (t->set) {
        key_path(q, sizeof q, p, "set");
        if (check_tmpl(c, t->set, q)) return -1;
      }
      for (size_t k = 0; t->patch && k < json_array_size(t->patch); k++) {
        cg_fmt(q, sizeof q, "%s.patch[%zu].value", p, k);
        if (check_tmpl(c, json_object_get(json_array_get(t->patch, k), "value"),
                       q))
          return -1;
      }
      if (t->has_toast) {
        key_path(q, sizeof q, p, "toast");
        if (check_toast(c, &t->toast, q)) return -1;
      }
    }
    if (s->has_otherwise) {
      cg_fmt(q, sizeof q, "%s.otherwise.toast", sp);
      if (check_toast(c, &s->otherwise, q)) return -1;
    }
  }
  return 0;
}

/* ---- the workflow ------------------------------------------------------ */

static const char *const top_keys[] = {
    "name", "description", "match", "initial", "vars", "states", "cards",
    "stateless", NULL};

static int load_tree(lctx *c, cg_workflow *wf) {
  json_t *root = wf->root, *name, *match, *initial, *states, *cards, *desc;
  if (!json_is_object(root))
    return lfail(c, "$", "must be an object, not %s", cg__json_type_name(root));
  if (only_keys(c, "$", root, top_keys) ||
      get_typed(c, root, "$", "name", JSON_STRING, 1, &name) ||
      get_typed(c, root, "$", "description", JSON_STRING, 0, &desc) ||
      get_typed(c, root, "$", "match", JSON_STRING, 1, &match) ||
      get_typed(c, root, "$", "initial", JSON_STRING, 1, &initial) ||
      get_typed(c, root, "$", "vars", JSON_OBJECT, 0, &wf->vars) ||
      get_typed(c, root, "$", "states", JSON_OBJECT, 1, &states) ||
      get_typed(c, root, "$", "cards", JSON_OBJECT, 0, &cards))
    return -1;

  json_t *stateless = json_object_get(root, "stateless");
  if (stateless && !json_is_boolean(stateless))
    return lfail(c, "$.stateless", "must be true or false, not %s",
                 cg__json_type_name(stateless));
  wf->stateless = json_is_true(stateless);
  wf->name = json_string_value(name);
  const char *nm = wf->name;
  int name_ok = names_ok(nm, NAME_MAX_LEN, 1);
  for (const char *p = nm; *p && name_ok; p++)
    name_ok = !(*p >= 'A' && *p <= 'Z');
  if (!name_ok)
    return lfail(c, "$.name", "must match [a-z0-9_-]+, at most %d characters",
                 NAME_MAX_LEN);
  wf->match = json_string_value(match);
  if (wf->match[0] == '\0') return lfail(c, "$.match", "must not be empty");
  if (strlen(wf->match) > MATCH_MAX_LEN)
    return lfail(c, "$.match", "longer than %d characters", MATCH_MAX_LEN);
  if (wf->vars && string_map(c, "$.vars", wf->vars, 1)) return -1;

  if (cards) {
    const char *key;
    json_t *val;
    json_object_foreach(cards, key, val) {
      char p[512];
      key_path(p, sizeof p, "$.cards", key);
      if (!names_ok(key, NAME_MAX_LEN, 1))
        return lfail(c, p,
                     "card names are [A-Za-z0-9_-]+, at most %d "
                     "characters",
                     NAME_MAX_LEN);
      if (!json_is_object(val))
        return lfail(c, p, "must be an object, not %s", cg__json_type_name(val));
    }
  }

  wf->n_states = json_object_size(states);
  if (wf->n_states == 0) return lfail(c, "$.states", "no states");
  wf->states = calloc(wf->n_states, sizeof *wf->states);
  if (!wf->states) return lfail(c, "$.states", "out of memory");
  size_t i = 0;
  const char *key;
  json_t *val;
  json_object_foreach(states, key, val) {
    if (!names_ok(key, STATE_MAX_LEN, 1)) {
      char p[512];
      key_path(p, sizeof p, "$.states", key);
      return lfail(c, p,
                   "state names are [A-Za-z0-9_-]+, at most %d "
                   "characters",
                   STATE_MAX_LEN);
    }
    wf->states[i++].name = key;
  }
  if (!find_state(wf, json_string_value(initial), &wf->initial))
    return lfail(c, "$.initial", "unknown state \"%s\"",
                 json_string_value(initial));
  i = 0;
  json_object_foreach(states, key, val) {
    if (load_state(c, wf, cards, i++, val)) return -1;
  }
  if (!wf->states[wf->initial].card) {
    char p[512];
    key_path(p, sizeof p, "$.states", wf->states[wf->initial].name);
    return lfail(c, p, "the initial state needs a \"card\"");
  }
  return check_all_templates(c, wf, cards);
}

void cg_workflow_free(cg_workflow *wf) {
  if (!wf) return;
  for (size_t i = 0; wf->states && i < wf->n_states; i++)
    free(wf->states[i].on);
  free(wf->states);
  json_decref(wf->root);
  free(wf);
}

static void set_err(int *err, int code) {
  if (err) *err = code;
}

/* Loads from text[0..len) (not necessarily NUL-terminated). */
static cg_workflow *load_text(const char *text, size_t len, const char *origin,
                              char *errbuf, size_t errlen, int *err) {
  lctx c = {origin ? origin : "<string>", errbuf, errlen, NULL};
  if (errbuf && errlen) errbuf[0] = '\0';
  if (len > CG_LIMIT_WORKFLOW_FILE) {
    if (errbuf && errlen)
      cg_fmt(errbuf, errlen, "%s: larger than %u bytes", c.origin,
             CG_LIMIT_WORKFLOW_FILE);
    set_err(err, CG_ETOOBIG);
    return NULL;
  }
  cg_workflow *wf = calloc(1, sizeof *wf);
  c.known = json_object();
  if (!wf || !c.known) {
    free(wf);
    json_decref(c.known);
    if (errbuf && errlen) cg_fmt(errbuf, errlen, "%s: out of memory", c.origin);
    set_err(err, CG_ENOMEM);
    return NULL;
  }
  json_error_t jerr;
  wf->root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
  if (!wf->root) {
    if (errbuf && errlen)
      cg_fmt(errbuf, errlen, "%s: line %d, column %d: %s", c.origin, jerr.line,
             jerr.column, jerr.text);
    cg_workflow_free(wf);
    json_decref(c.known);
    set_err(err, CG_EMALFORMED);
    return NULL;
  }
  int rc = load_tree(&c, wf);
  json_decref(c.known);
  if (rc) {
    cg_workflow_free(wf);
    set_err(err, CG_EMALFORMED);
    return NULL;
  }
  set_err(err, 0);
  return wf;
}

cg_workflow *cg_workflow_load_string(const char *json, const char *origin,
                                     char *errbuf, size_t errlen, int *err) {
  if (!json) {
    if (errbuf && errlen) cg_fmt(errbuf, errlen, "no workflow text");
    set_err(err, CG_EINVAL);
    return NULL;
  }
  /* strnlen: look no further than one byte past the limit. */
  size_t len = strnlen(json, (size_t)CG_LIMIT_WORKFLOW_FILE + 1);
  return load_text(json, len, origin, errbuf, errlen, err);
}

cg_workflow *cg_workflow_load_file(const char *path, char *errbuf,
                                   size_t errlen, int *err) {
  if (cg_str_empty(path)) {
    if (errbuf && errlen) cg_fmt(errbuf, errlen, "no workflow file name");
    set_err(err, CG_EINVAL);
    return NULL;
  }
  FILE *f = fopen(path, "rb");
  if (!f) {
    char eb[128];
    const char *m = strerror_r(errno, eb, sizeof eb);
    if (errbuf && errlen)
      cg_fmt(errbuf, errlen, "%s: cannot open: %s", path, m);
    set_err(err, CG_EIO);
    return NULL;
  }
  /* One byte over the limit is enough to know the file is too big. */
  cg_buf b;
  cg_buf_init(&b, (size_t)CG_LIMIT_WORKFLOW_FILE + 1);
  char chunk[16384];
  int rc = 0;
  size_t n;
  while (rc == 0 && (n = fread(chunk, 1, sizeof chunk, f)) > 0)
    rc = cg_buf_append(&b, chunk, n);
  int rerr = ferror(f) ? errno : 0;
  fclose(f);
  if (rc == 0 && rerr) {
    char eb[128];
    const char *m = strerror_r(rerr, eb, sizeof eb);
    if (errbuf && errlen)
      cg_fmt(errbuf, errlen, "%s: cannot read: %s", path, m);
    cg_buf_free(&b);
    set_err(err, CG_EIO);
    return NULL;
  }
  if (rc == CG_ENOMEM) {
    if (errbuf && errlen) cg_fmt(errbuf, errlen, "%s: out of memory", path);
    cg_buf_free(&b);
    set_err(err, CG_ENOMEM);
    return NULL;
  }
  /* CG_ETOOBIG here means the file passed the limit: load_text says so. */
  size_t len = rc == CG_ETOOBIG ? (size_t)CG_LIMIT_WORKFLOW_FILE + 1 : b.len;
  cg_workflow *wf =
      load_text(b.data ? b.data : "", len, path, errbuf, errlen, err);
  cg_buf_free(&b);
  return wf;
}

const char *cg_workflow_name(const cg_workflow *wf) {
  return wf ? wf->name : NULL;
}

int cg__workflow_stateless(const cg_workflow *wf) { return wf->stateless; }

const char *cg__workflow_initial_state(const cg_workflow *wf) {
  return wf->states[wf->initial].name;
}

const json_t *cg__workflow_initial_vars(const cg_workflow *wf) { return wf->vars; }

const char *cg_workflow_match(const cg_workflow *wf) {
  return wf ? wf->match : NULL;
}

const char *cg_workflow_builtin_name(size_t i) {
  for (size_t k = 0; cg__builtin_workflows[k].name; k++)
    if (k == i) return cg__builtin_workflows[k].name;
  return NULL;
}

cg_workflow *cg_workflow_load_builtin(const char *name, char *errbuf,
                                      size_t errlen, int *err) {
  for (size_t k = 0; name && cg__builtin_workflows[k].name; k++) {
    if (strcmp(cg__builtin_workflows[k].name, name) == 0) {
      char origin[NAME_MAX_LEN + 16];
      cg_fmt(origin, sizeof origin, "<builtin:%s>", name);
      return cg_workflow_load_string(cg__builtin_workflows[k].text, origin,
                                     errbuf, errlen, err);
    }
  }
  if (errbuf && errlen)
    cg_fmt(errbuf, errlen, "no built-in workflow named \"%.64s\"",
           name ? name : "");
  set_err(err, CG_ENOTFOUND);
  return NULL;
}

/* ======================================================================= */
/* Stepping                                                                */
/* ======================================================================= */

typedef struct wf_ctx {
  const char *state;
  const json_t *vars;
  const cg_action *a; /* NULL for the initial card */
  int64_t now_ms;
  char now[40];    /* formatted on first use ("" until then) */
  char now_cn[40];
  char key[CG_LIMIT_ID]; /* ${value.KEY}: the key, NUL-terminated */
} wf_ctx;

static const char *operator_id(const cg_action *a) {
  if (!a) return NULL;
  return !cg_str_empty(a->open_id) ? a->open_id : a->user_id;
}

static const char *lookup(const char *name, size_t n, void *ud) {
  wf_ctx *c = ud;
  const cg_action *a = c->a;
  if (same(name, n, "state")) return c->state;
  if (same(name, n, "now")) {
    if (!c->now[0]) cg_time_iso(c->now_ms, c->now, sizeof c->now);
    return c->now;
  }
  if (same(name, n, "now_cn")) {
    if (!c->now_cn[0]) cg_time_local(c->now_ms, CN_UTC_OFFSET_MIN, c->now_cn, sizeof c->now_cn);
    return c->now_cn;
  }
  if (is_prefix(name, n, "value.")) {
    if (!a || n - 6 >= sizeof c->key) return NULL;
    memcpy(c->key, name + 6, n - 6);
    c->key[n - 6] = '\0';
    return cg_action_value(a, c->key);
  }
  if (a) {
    if (same(name, n, "operator")) return operator_id(a);
    if (same(name, n, "operator.open_id")) return a->open_id;
    if (same(name, n, "operator.user_id")) return a->user_id;
    if (same(name, n, "operator.union_id")) return a->union_id;
    if (same(name, n, "message_id")) return a->message_id;
    if (same(name, n, "chat_id")) return a->chat_id;
    if (same(name, n, "tenant_key")) return a->tenant_key;
    if (same(name, n, "platform")) return cg_platform_name(a->platform);
  }
  return json_string_value(json_object_getn(c->vars, name, n));
}

static void ctx_init(wf_ctx *c, const cg_action *a, int64_t now_ms) {
  memset(c, 0, sizeof *c);
  c->a = a;
  c->now_ms = now_ms; /* times are formatted only when a template uses them */
}

#define fail_step cg_fail /* common.h */

/* Renders a tree; NULL with err filled on failure (*code says which). */
static json_t *render(const json_t *tmpl, wf_ctx *c, char *err, size_t errlen,
                      int *code) {
  char why[128];
  json_t *out = cg__template_render(tmpl, lookup, c, why, sizeof why);
  if (!out) {
    *code = strstr(why, "memory")  ? CG_ENOMEM
            : strstr(why, "UTF-8") ? CG_EMALFORMED
                                   : CG_ETOOBIG;
    fail_step(err, errlen, *code, "render: %s", why);
  }
  return out;
}

/* Parses a stored JSON object (from the store: checked, never trusted). */
static json_t *parse_stored(const char *text, const char *what, char *err,
                            size_t errlen) {
  json_error_t jerr;
  json_t *v = json_loads(text, 0, &jerr);
  if (!json_is_object(v)) {
    json_decref(v);
    fail_step(err, errlen, CG_EMALFORMED, "stored %s is not a JSON object",
              what);
    return NULL;
  }
  return v;
}

/* RFC 6901 reference token [s, s+n) unescaped ("~1" → "/", "~0" → "~"). */
static char *pointer_token(const char *s, size_t n) {
  char *out = malloc(n + 1);
  if (!out) return NULL;
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] == '~' && i + 1 < n && (s[i + 1] == '0' || s[i + 1] == '1')) {
      out[o++] = s[i + 1] == '0' ? '~' : '/';
      i++;
    } else {
      out[o++] = s[i];
    }
  }
  out[o] = '\0';
  return out;
}

/* An array index token: "0" or digits without a leading zero. */
static int pointer_index(const char *tok, size_t *idx) {
  int64_t v;
  if (tok[0] == '\0' || (tok[0] == '0' && tok[1] != '\0')) return 0;
  if (cg_parse_i64(tok, strlen(tok), &v) != 0 || v < 0) return 0;
  *idx = (size_t)v;
  return 1;
}

/* Puts value (taken) at pointer in *card: replaces a member or element, adds
 * a member, or appends with "-" / the array's size. The parent must exist.
 * "" replaces the whole card (value must be an object). */
static int apply_patch(json_t **card, const char *pointer, json_t *value,
                       char *err, size_t errlen) {
  if (pointer[0] == '\0') {
    if (!json_is_object(value)) {
      json_decref(value);
      return fail_step(err, errlen, CG_EMALFORMED,
                       "patch \"\": the new card must be an object");
    }
    json_decref(*card);
    *card = value;
    return 0;
  }
  json_t *cur = *card;
  const char *p = pointer + 1;
  for (;;) {
    const char *slash = strchr(p, '/');
    size_t n = slash ? (size_t)(slash - p) : strlen(p);
    char *tok = pointer_token(p, n);
    if (!tok) {
      json_decref(value);
      return fail_step(err, errlen, CG_ENOMEM, "out of memory");
    }
    size_t idx = 0;
    int rc = 0;
    if (!slash) { /* the last token: set it */
      if (json_is_object(cur)) {
        rc = json_object_set_new(cur, tok, value) ? CG_ENOMEM : 0;
        value = NULL;
      } else if (json_is_array(cur) && strcmp(tok, "-") == 0) {
        rc = json_array_append_new(cur, value) ? CG_ENOMEM : 0;
        value = NULL;
      } else if (json_is_array(cur) && pointer_index(tok, &idx) &&
                 idx <= json_array_size(cur)) {
        rc = (idx == json_array_size(cur) ? json_array_append_new(cur, value)
                                          : json_array_set_new(cur, idx, value))
                 ? CG_ENOMEM
                 : 0;
        value = NULL;
      } else {
        rc = CG_EMALFORMED;
      }
      free(tok);
      json_decref(value);
      if (rc == CG_ENOMEM) return fail_step(err, errlen, rc, "out of memory");
      if (rc)
        return fail_step(err, errlen, rc,
                         "patch %.200s: no such place in the stored card",
                         pointer);
      return 0;
    }
    json_t *next = NULL;
    if (json_is_object(cur))
      next = json_object_get(cur, tok);
    else if (json_is_array(cur) && pointer_index(tok, &idx))
      next = json_array_get(cur, idx);
    free(tok);
    if (!json_is_object(next) && !json_is_array(next)) {
      json_decref(value);
      return fail_step(err, errlen, CG_EMALFORMED,
                       "patch %.200s: no such place in the stored card",
                       pointer);
    }
    cur = next;
    p = slash + 1;
  }
}

static int when_matches(const json_t *when, const cg_action *a) {
  const char *key;
  json_t *val;
  json_t *w = (json_t *)when; /* read only */
  json_object_foreach(w, key, val) {
    const char *v = cg_action_value(a, key);
    if (!v || strcmp(v, json_string_value(val)) != 0) return 0;
  }
  return 1;
}

/* A reply carrying the toast t rendered in ctx: added to *r, or (when *r is
 * NULL) a toast-only reply. */
static int add_toast(cg_reply **r, const wf_toast *t, wf_ctx *ctx, char *err,
                     size_t errlen) {
  char *content =
      cg__template_render_str(json_string_value(t->content), lookup, ctx);
  if (!content) return fail_step(err, errlen, CG_ENOMEM, "render toast");
  int rc = 0;
  if (*r) {
    rc = cg_reply_set_toast(*r, t->type, content);
  } else {
    *r = cg_reply_toast(t->type, content, &rc);
  }
  free(content);
  if (rc) return fail_step(err, errlen, rc, "toast: %s", cg_strerror(rc));
  const char *locale;
  json_t *val;
  json_t *i18n = t->i18n; /* read only */
  json_object_foreach(i18n, locale, val) {
    char *text = cg__template_render_str(json_string_value(val), lookup, ctx);
    if (!text) return fail_step(err, errlen, CG_ENOMEM, "render toast");
    rc = cg_reply_toast_i18n(*r, locale, text);
    free(text);
    if (rc)
      return fail_step(err, errlen, rc, "toast i18n: %s", cg_strerror(rc));
  }
  return 0;
}

void cg__wf_outcome_clear(cg__wf_outcome *o) {
  if (!o) return;
  free(o->new_state);
  json_decref(o->new_vars);
  json_decref(o->new_card);
  cg_reply_free(o->reply);
  memset(o, 0, sizeof *o);
}

/* Applies transition t to (vars, card) in ctx; on success *card may have
 * been replaced and *si is the new state. */
static int fire(const cg_workflow *wf, const wf_trans *t, wf_ctx *ctx,
                json_t *vars, json_t **card, size_t *si, char *err,
                size_t errlen) {
  int code = 0;
  /* "set" values are all computed from the variables before the click. */
  if (t->set) {
    json_t *fresh = json_object();
    if (!fresh) return fail_step(err, errlen, CG_ENOMEM, "out of memory");
    const char *key;
    json_t *val;
    json_t *set = t->set; /* read only */
    json_object_foreach(set, key, val) {
      char *s = cg__template_render_str(json_string_value(val), lookup, ctx);
      json_t *js = s ? json_string(s) : NULL;
      free(s);
      if (!js || json_object_set_new(fresh, key, js)) {
        json_decref(fresh);
        return fail_step(err, errlen, CG_ENOMEM, "render set.%s", key);
      }
    }
    int rc = json_object_update(vars, fresh);
    json_decref(fresh);
    if (rc) return fail_step(err, errlen, CG_ENOMEM, "out of memory");
  }
  *si = t->to;
  ctx->state = wf->states[t->to].name;
  ctx->vars = vars;
  if (t->patch) {
    for (size_t k = 0; k < json_array_size(t->patch); k++) {
      json_t *op = json_array_get(t->patch, k);
      json_t *v = render(json_object_get(op, "value"), ctx, err, errlen, &code);
      if (!v) return code;
      int rc = apply_patch(card, json_string_value(json_object_get(op, "path")),
                           v, err, errlen);
      if (rc) return rc;
    }
  } else if (wf->states[t->to].card) {
    json_t *v = render(wf->states[t->to].card, ctx, err, errlen, &code);
    if (!v) return code;
    json_decref(*card);
    *card = v;
  }
  return 0;
}

int cg__workflow_step(const cg_workflow *wf, const cg_card_record *cur,
                      const cg_action *a, int64_t now_ms, cg__wf_outcome *out,
                      char *err, size_t errlen) {
  if (err && errlen) err[0] = '\0';
  if (!out) return fail_step(err, errlen, CG_EINVAL, "no outcome");
  memset(out, 0, sizeof *out);
  if (!wf || !a) return fail_step(err, errlen, CG_EINVAL, "no workflow/action");

  wf_ctx ctx;
  ctx_init(&ctx, a, now_ms);
  size_t si = wf->initial;
  json_t *vars = wf->vars ? json_deep_copy(wf->vars) : json_object();
  json_t *card = NULL;
  int rc = 0;
  if (!vars) return fail_step(err, errlen, CG_ENOMEM, "out of memory");

  if (cur) {
    if (cur->workflow && strcmp(cur->workflow, wf->name) != 0) {
      rc = fail_step(err, errlen, CG_EMALFORMED,
                     "card belongs to workflow \"%.64s\", not \"%s\"",
                     cur->workflow, wf->name);
      goto done;
    }
    if (cur->state && !find_state(wf, cur->state, &si)) {
      rc = fail_step(err, errlen, CG_EMALFORMED,
                     "stored state \"%.64s\" is not a state of workflow "
                     "\"%s\"",
                     cur->state, wf->name);
      goto done;
    }
    if (cur->vars_json) {
      json_t *stored = parse_stored(cur->vars_json, "vars", err, errlen);
      if (!stored) {
        rc = CG_EMALFORMED;
        goto done;
      }
      /* Stored values win; initial ones fill names added to the workflow
       * since the card was stored. */
      rc = json_object_update(vars, stored) ? CG_ENOMEM : 0;
      json_decref(stored);
      if (rc) {
        fail_step(err, errlen, rc, "out of memory");
        goto done;
      }
    }
    card = cur->card_json ? parse_stored(cur->card_json, "card", err, errlen)
                          : NULL;
    if (!card) {
      rc = fail_step(err, errlen, CG_EMALFORMED,
                     "stored card is missing or "
                     "not a JSON object");
      goto done;
    }
  }

  const wf_state *s = &wf->states[si];
  const wf_trans *t = NULL;
  for (size_t i = 0; i < s->n_on && !t; i++)
    if (!s->on[i].when || when_matches(s->on[i].when, a)) t = &s->on[i];

  /* A new card starts from the initial state's card — unless the click
   * moves it at once to a state whose card replaces it (no need to render
   * a card nobody will see). */
  if (!card && (!t || t->patch || !wf->states[t->to].card)) {
    ctx.state = wf->states[si].name;
    ctx.vars = vars;
    card = render(wf->states[si].card, &ctx, err, errlen, &rc);
    if (!card) goto done;
  }

  ctx.state = s->name;
  ctx.vars = vars;
  if (t) {
    size_t from = si;
    rc = fire(wf, t, &ctx, vars, &card, &si, err, errlen);
    if (rc) goto done;
    int dingtalk = a->platform == CG_PLATFORM_DINGTALK;
    if (dingtalk) {
      /* DingTalk cards are templates: the click's answer is the new
       * variables (cardParamMap), not a card, and there is no toast
       * (dingtalk.md §3.2). */
      out->reply = cg__reply_vars_take(json_deep_copy(vars));
    } else {
      /* Serialized once: the reply's bytes and the stored card's. */
      char *text = json_dumps(card, JSON_COMPACT);
      out->reply = text ? cg__reply_card_take(json_incref(card), text) : NULL;
    }
    if (!out->reply) {
      rc = fail_step(err, errlen, CG_ENOMEM, "out of memory");
      goto done;
    }
    if (t->has_toast && !dingtalk) {
      rc = add_toast(&out->reply, &t->toast, &ctx, err, errlen);
      if (rc) goto done;
    }
    out->changed = 1;
    cg_fmt(out->result, sizeof out->result, "%s -> %s", wf->states[from].name,
           wf->states[si].name);
  } else {
    if (s->has_otherwise && a->platform != CG_PLATFORM_DINGTALK) {
      rc = add_toast(&out->reply, &s->otherwise, &ctx, err, errlen);
      if (rc) goto done;
    } else {
      out->reply = cg_reply_keep();
      if (!out->reply) {
        rc = fail_step(err, errlen, CG_ENOMEM, "out of memory");
        goto done;
      }
    }
    cg_fmt(out->result, sizeof out->result, "unchanged (%s)", s->name);
  }
  out->new_state = cg_strdup(wf->states[si].name);
  if (!out->new_state) {
    rc = fail_step(err, errlen, CG_ENOMEM, "out of memory");
    goto done;
  }
  out->new_vars = vars;
  out->new_card = card;
  return 0;

done:
  json_decref(vars);
  json_decref(card);
  cg__wf_outcome_clear(out);
  return rc ? rc : CG_ENOMEM;
}

json_t *cg__workflow_initial_card(const cg_workflow *wf, int64_t now_ms) {
  if (!wf) return NULL;
  wf_ctx ctx;
  ctx_init(&ctx, NULL, now_ms);
  ctx.state = wf->states[wf->initial].name;
  ctx.vars = wf->vars;
  int code;
  return render(wf->states[wf->initial].card, &ctx, NULL, 0, &code);
}

/* ---- the driver -------------------------------------------------------- */

static void history(cg_store *store, const cg_action *a, int64_t now_ms,
                    const char *result, char *err, size_t errlen, int warn) {
  cg_action_record h = {
      .message_id = a->message_id,
      .platform = cg_platform_name(a->platform),
      .operator_id = operator_id(a),
      .kind = cg_kind_name(a->kind),
      .value_json = a->value_json,
      .result = result,
      .at_ms = now_ms,
  };
  if (cg_store_action_add(store, &h) != 0 && warn)
    fail_step(err, errlen, 0, "history not recorded: %s",
              cg_store_last_error(store));
}

int cg__workflow_run(const cg_workflow *wf, cg_store *store, const cg_action *a,
                     int64_t now_ms, cg_reply **reply, char *err,
                     size_t errlen) {
  if (err && errlen) err[0] = '\0';
  if (reply) *reply = NULL;
  if (!wf || !store || !a || !reply)
    return fail_step(err, errlen, CG_EINVAL, "workflow run: missing argument");
  if (cg_str_empty(a->message_id))
    return fail_step(err, errlen, CG_EINVAL,
                     "the action names no card (no message id)");

  cg__wf_outcome out;
  memset(&out, 0, sizeof out);
  int rc = CG_ECONFLICT;
  for (int attempt = 0; attempt < RUN_ATTEMPTS && rc == CG_ECONFLICT;
       attempt++) {
    cg__wf_outcome_clear(&out);
    cg_card_record cur;
    rc = cg_store_card_get(store, a->message_id, &cur);
    if (rc != 0 && rc != CG_ENOTFOUND) {
      fail_step(err, errlen, rc, "read card: %s", cg_store_last_error(store));
      break;
    }
    int fresh = rc == CG_ENOTFOUND;
    rc = cg__workflow_step(wf, fresh ? NULL : &cur, a, now_ms, &out, err,
                           errlen);
    if (rc == 0 && (fresh || out.changed)) {
      /* The card's text is the reply's when the step made a card reply. */
      const char *shared = out.reply && out.reply->card == out.new_card ? out.reply->card_text : NULL;
      char *card = shared ? NULL : json_dumps(out.new_card, JSON_COMPACT);
      /* No variables: stored as NULL (the step treats NULL as none). */
      int no_vars = json_object_size(out.new_vars) == 0;
      char *vars = no_vars ? NULL : json_dumps(out.new_vars, JSON_COMPACT);
      if ((!card && !shared) || (!vars && !no_vars)) {
        rc = fail_step(err, errlen, CG_ENOMEM, "out of memory");
      } else {
        cg_card_record rec = {
            .message_id = (char *)a->message_id,
            .platform = (char *)cg_platform_name(a->platform),
            .workflow = (char *)wf->name,
            .state = out.new_state,
            .card_json = shared ? (char *)shared : card,
            .vars_json = vars,
            .created_at_ms = now_ms,
            .updated_at_ms = now_ms,
        };
        /* A new card is inserted (losing the race to insert it is a
         * conflict too); a known one moves on only from the version read. */
        rc = fresh ? cg_store_card_insert(store, &rec)
                   : cg_store_card_cas(store, &rec, cur.version);
        if (rc != 0 && rc != CG_ECONFLICT)
          fail_step(err, errlen, rc, "write card: %s",
                    cg_store_last_error(store));
      }
      free(card);
      free(vars);
    }
    if (!fresh) cg_card_record_clear(&cur);
  }
  if (rc == CG_ECONFLICT)
    fail_step(err, errlen, rc, "card %.64s kept changing (%d attempts)",
              a->message_id, RUN_ATTEMPTS);
  if (rc != 0) {
    char line[sizeof out.result];
    cg_fmt(line, sizeof line, "error: %s", err ? err : cg_strerror(rc));
    history(store, a, now_ms, line, err, errlen, 0);
    cg__wf_outcome_clear(&out);
    return rc;
  }
  /* The click took effect: its reply goes out even if the history line
   * cannot be written (err then carries a warning). */
  history(store, a, now_ms, out.result, err, errlen, 1);
  *reply = out.reply;
  out.reply = NULL;
  cg__wf_outcome_clear(&out);
  return 0;
}
