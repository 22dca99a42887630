/* Every limit on untrusted input, in one place (DESIGN.md convention 7). */
#ifndef CG_LIMITS_H
#define CG_LIMITS_H

#define CG_LIMIT_BODY_DEFAULT (1024u * 1024u)      /* HTTP body, configurable */
#define CG_LIMIT_BODY_HARD (16u * 1024u * 1024u)   /* no decoder accepts more */
#define CG_LIMIT_HEADER_BYTES (16u * 1024u)        /* all request headers */
#define CG_LIMIT_HEADER_VALUE 1024u                /* one header value we keep */
#define CG_LIMIT_URL 2048u                         /* request target */
#define CG_LIMIT_HTTP_LINGER_MS 2000u             /* read-and-discard after a closing answer */
#define CG_LIMIT_HTTP_OUT_HIGH_WATER (256u * 1024u) /* unsent answers before parsing pauses */
#define CG_LIMIT_HTTP_REJECTING 256u               /* over-limit connections answered 503 at once */
#define CG_LIMIT_JSON_DEPTH 64                     /* nesting in callback bodies */
#define CG_LIMIT_ID 256u                           /* event ids, message ids */
#define CG_LIMIT_CHALLENGE 1024u                   /* url_verification challenge */
#define CG_LIMIT_ROUTES 4096u
#define CG_LIMIT_TEMPLATE_OUTPUT (1024u * 1024u)   /* a rendered card */
#define CG_LIMIT_DEDUPE_ENTRIES 200000u        /* event ids remembered in memory */
#define CG_LIMIT_DEDUPE_BYTES (64u * 1024u * 1024u) /* ids + answers remembered */
#define CG_LIMIT_WORKFLOW_FILE (4u * 1024u * 1024u)

#endif
