/* Small helpers over jansson shared by the codecs and the workflow loader. */
#ifndef CG_JSON_UTIL_H
#define CG_JSON_UTIL_H

#include <jansson.h>

/* "an object", "an array", "a string", "a number", "a boolean", "null" —
 * for messages such as "$.action.tag must be a string, not a number". */
const char *cg__json_type_name(const json_t *v);

#endif
