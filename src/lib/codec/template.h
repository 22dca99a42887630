/* Card templates: ${var} substitution over a JSON tree. Pure.
 *
 * Every JSON string value (object keys are left alone) is scanned for
 * ${name}; name is [A-Za-z0-9_.]+ . "$${" yields a literal "${". The value
 * looked up replaces the placeholder inside the string (the result is always
 * a string). */
#ifndef CG_TEMPLATE_H
#define CG_TEMPLATE_H

#include <jansson.h>
#include <stddef.h>

/* Returns the text for name (borrowed until the render call returns), or NULL
 * when unknown — an unknown name renders as "" (and is caught earlier by
 * cg__template_check). */
typedef const char *(*cg__tmpl_lookup_fn)(const char *name, size_t name_len,
                                          void *ud);

/* Deep copy of tmpl with placeholders substituted. NULL on ENOMEM or when the
 * output would pass CG_LIMIT_TEMPLATE_OUTPUT (err says which). */
json_t *cg__template_render(const json_t *tmpl, cg__tmpl_lookup_fn lookup,
                            void *ud, char *err, size_t errlen);

/* Renders a single string (e.g. a toast text). malloc'd; NULL on ENOMEM or
 * when the output would pass CG_LIMIT_TEMPLATE_OUTPUT. */
char *cg__template_render_str(const char *s, cg__tmpl_lookup_fn lookup,
                              void *ud);

/* Checks every placeholder in tmpl: syntax (unterminated "${", empty or bad
 * name) and, when known is not NULL, that known(name) is true. On the first
 * problem returns -1 and writes "<path>: <what>" to err, where path is the JSON
 * path of the string below path_prefix (e.g. "$.cards.pending.elements[0].text.content").
 * 0 when fine. */
typedef int (*cg__tmpl_known_fn)(const char *name, size_t name_len, void *ud);
int cg__template_check(const json_t *tmpl, const char *path_prefix,
                       cg__tmpl_known_fn known, void *ud, char *err,
                       size_t errlen);

#endif
