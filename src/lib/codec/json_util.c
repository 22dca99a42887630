#include "json_util.h"

const char *cg__json_type_name(const json_t *v) {
  switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER:
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
  }
  return "something else";
}

/* Nesting depth of [ and { outside strings. Run before jansson so a hostile
 * body (10000 '[') is refused in one linear pass, without recursion. For
 * valid JSON the count is exact; for invalid JSON jansson fails no later
 * than where the two could disagree. */
int cg__json_depth_ok(const char *p, size_t n, int max) {
  int depth = 0;
  for (size_t i = 0; i < n; i++) {
    char c = p[i];
    if (c == '"') {
      for (i++; i < n; i++) {
        if (p[i] == '\\')
          i++;
        else if (p[i] == '"')
          break;
      }
    } else if (c == '{' || c == '[') {
      if (++depth > max) return 0;
    } else if (c == '}' || c == ']') {
      if (depth) depth--;
    }
  }
  return 1;
}
