/* Route match expressions (cg_app_route syntax): an OR (||) of ANDs (&&) of
 * conditions `FIELD == "text"`, `FIELD != "text"` or a bare `FIELD`.
 * Compiled once at registration; evaluated per action without allocating. */
#ifndef CG_ROUTER_H
#define CG_ROUTER_H

#include <stddef.h>

#include "cardgate/action.h"

typedef struct cg__match cg__match;

/* Compiles expr (NULL or "" matches everything). NULL on error, with a
 * message in err such as `column 7: unknown field "tga" (expected platform,
 * kind, format, tag, name, option, event_type or value.KEY)`. */
cg__match *cg__match_compile(const char *expr, char *err, size_t errlen);
void cg__match_free(cg__match *m);
/* 1 when the action satisfies the expression. */
int cg__match_eval(const cg__match *m, const cg_action *a);

#endif
