/* The workflows shipped as JSON files in workflows/, embedded at build time. */
#ifndef CG_BUILTIN_H
#define CG_BUILTIN_H

typedef struct cg__builtin {
  const char *name; /* file name without .json */
  const char *text; /* the JSON */
} cg__builtin;

extern const cg__builtin cg__builtin_workflows[]; /* ends with {NULL, NULL} */

#endif
