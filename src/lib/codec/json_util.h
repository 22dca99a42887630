/* Small helpers over jansson shared by the codecs and the workflow loader. */
#ifndef CG_JSON_UTIL_H
#define CG_JSON_UTIL_H

#include <jansson.h>
#include <stddef.h>

/* "an object", "an array", "a string", "a number", "a boolean", "null" —
 * for messages such as "$.action.tag must be a string, not a number". */
const char *cg__json_type_name(const json_t *v);

/* 1 when the nesting of [ and { outside strings in p[0..n) stays within
 * max: run before jansson so a hostile body (10000 '[') is refused in one
 * linear pass, without recursion. */
int cg__json_depth_ok(const char *p, size_t n, int max);

#endif
