/* The record behind a cg_action: owns the decoded JSON its strings point into. */
#ifndef CG_ACTION_INT_H
#define CG_ACTION_INT_H

#include <jansson.h>

#include "cardgate/action.h"

typedef struct cg__action_rec {
  cg_action pub;      /* must stay first: (cg__action_rec *)&rec->pub */
  json_t *root;       /* decrypted body; pub's borrowed strings live in it */
  json_t *value;      /* borrowed from root: action.value, may be NULL */
  json_t *strcache;   /* owned: cg_action_value() results for non-strings */
  char *raw_json;     /* owned: decrypted body text */
  char *value_json;   /* owned */
  char *form_value_json; /* owned or NULL */
  char *options_json;    /* owned or NULL */
} cg__action_rec;

#define CG__ACTION_REC(a) ((cg__action_rec *)(void *)(a))

/* A zeroed record with checked = -1. NULL when out of memory. */
cg__action_rec *cg__action_new(void);
/* Frees the record and everything it owns. Accepts NULL. */
void cg__action_free(cg__action_rec *r);

#endif
