/* cardgate — declarative workflows.
 *
 * A workflow is a JSON file: which actions it takes (match), states and the
 * transitions between them keyed on action values, and card templates with
 * ${var} substitution. The format is documented in docs/workflows.md.
 */
#ifndef CARDGATE_WORKFLOW_H
#define CARDGATE_WORKFLOW_H

#include <stddef.h>

#include "error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cg_workflow cg_workflow;

/* Loads and checks a workflow. On failure returns NULL, sets *err
 * (CG_EMALFORMED, CG_EIO, CG_ENOMEM, CG_ETOOBIG over 4 MiB, CG_EINVAL for NULL) and writes to errbuf a message naming
 * the file, the JSON path and what is wrong, e.g.
 *   "workflows/approval.json: $.states.pending.on[0].to: unknown state "acepted"".
 * Caller frees with cg_workflow_free() (or hands it to cg_app_add_workflow). */
CG_EXTERN cg_workflow *cg_workflow_load_file(const char *path, char *errbuf,
                                             size_t errlen, int *err);

/* Same from a string; origin names it in messages (e.g. "<builtin:publish>"). */
CG_EXTERN cg_workflow *cg_workflow_load_string(const char *json,
                                               const char *origin,
                                               char *errbuf, size_t errlen,
                                               int *err);

CG_EXTERN void cg_workflow_free(cg_workflow *wf);

/* The workflow's name (borrowed). */
CG_EXTERN const char *cg_workflow_name(const cg_workflow *wf);

/* The built-in workflows (the JSON files in workflows/, embedded at build time): the
 * i-th name ("approval", "publish" …), NULL past the end. Static. */
CG_EXTERN const char *cg_workflow_builtin_name(size_t i);

/* Loads a built-in workflow by name; as cg_workflow_load_string. CG_ENOTFOUND
 * when there is none of that name. */
CG_EXTERN cg_workflow *cg_workflow_load_builtin(const char *name, char *errbuf,
                                                size_t errlen, int *err);

/* The route match expression (cg_app_route syntax), borrowed. */
CG_EXTERN const char *cg_workflow_match(const cg_workflow *wf);

#ifdef __cplusplus
}
#endif
#endif /* CARDGATE_WORKFLOW_H */
