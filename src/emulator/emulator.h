/* The Lark Open API emulator behind `cardgate emulate` and the e2e tests:
 * token endpoints, im/v1 messages, interactive/v1/card/update with the
 * platform's rules, fault injection, and the "caller" that clicks a held
 * card by POSTing a signed (and encrypted) callback to the app — built with
 * the same codecs the app uses, in the other direction (DESIGN.md). Notes:
 * docs/emulator.md; protocol: ../shared/protocols/lark.md §0, §1, §2, §4, §9.
 *
 * Library-internal (cg__), not installed; the program links it from the
 * static library. One emulator belongs to one loop and its thread. */
#ifndef CG_EMULATOR_H
#define CG_EMULATOR_H

#include <stdint.h>
#include <uv.h>

#include "cardgate/log.h"

typedef struct cg__emu cg__emu;

typedef struct cg__emu_options {
  const char *host; /* numeric; default "127.0.0.1" */
  int port;         /* 0 = ephemeral */
  const char *app_id;             /* default "cli_emulator" */
  const char *app_secret;         /* default "emulator_secret" */
  const char *verification_token; /* legacy signature (SHA-1); may be NULL */
  const char *encrypt_key; /* v2 signature (SHA-256) + encryption; may be NULL */
  /* The app's base URL (e.g. http://127.0.0.1:8080); clicks go to
   * app_url + card_path (legacy) or + event_path (schema 2.0). May be NULL
   * (then clicks need "url" or fail). */
  const char *app_url;
  const char *card_path;  /* default "/webhook/card" */
  const char *event_path; /* default "/webhook/event" */
  int token_expire_s;      /* tenant/app token lifetime, default 7200 */
  int card_token_ttl_s;    /* callback update token lifetime, default 1800 */
  int card_token_max_uses; /* default 2 (lark.md §4.5) */
  /* Store (marketplace) app mode: POST /open-apis/auth/v3/app_access_token
   * {app_id, app_secret, app_ticket}, POST /open-apis/auth/v3/
   * tenant_access_token {app_access_token, tenant_key}, and
   * app_ticket/resend, which POSTs an app_ticket event to app_url +
   * event_path (then answers). The self-built endpoints keep working. */
  int store_app;
  /* The long-connection gateways (gateway_int.h): one plain ws:// listener
   * on host for Lark (/ws/v2) and DingTalk Stream (/connect). */
  int ws_port;                        /* 0 = ephemeral */
  const char *dingtalk_client_id;     /* default "ding_emulator" */
  const char *dingtalk_client_secret; /* default "emulator_secret" */
  cg_log_fn log;           /* may be NULL */
  void *log_ud;
} cg__emu_options;

void cg__emu_options_init(cg__emu_options *o);

/* Strings in o are copied. NULL + *err (CG_EINVAL, CG_ENOMEM, CG_EIO). */
cg__emu *cg__emu_new(uv_loop_t *loop, const cg__emu_options *o, int *err);
/* 0 or a libuv error. */
int cg__emu_listen(cg__emu *e);
int cg__emu_port(const cg__emu *e);
/* The gateways' WebSocket port (after cg__emu_listen), else 0. */
int cg__emu_ws_port(const cg__emu *e);
/* Closes the listener and the HTTPS client, then calls cb (may be NULL)
 * from a close callback and frees e. Must be called once per emulator. */
void cg__emu_close(cg__emu *e, void (*cb)(void *ud), void *ud);

/* ---- the card-update token rules, pure (unit-tested) ---------------- */

typedef enum {
  CG__EMU_TOKEN_OK = 0,
  CG__EMU_TOKEN_UNKNOWN, /* never issued in a click */
  CG__EMU_TOKEN_EXPIRED, /* issued more than ttl ago */
  CG__EMU_TOKEN_EARLY,   /* the click's callback was not answered yet */
  CG__EMU_TOKEN_USED_UP  /* already used max_uses times */
} cg__emu_token_verdict;

typedef struct cg__emu_card_token {
  int known;         /* issued by the emulator */
  int answered;      /* the app answered the click's callback */
  int64_t issued_ms; /* wall clock */
  int uses;          /* accepted updates so far */
} cg__emu_card_token;

/* Order: unknown, expired, early, used up. now_ms and the limits are
 * parameters (no clock read). */
cg__emu_token_verdict cg__emu_check_card_token(const cg__emu_card_token *t,
                                               int64_t now_ms, int ttl_s,
                                               int max_uses);
/* The Open API code the emulator answers for a verdict: 0; 300030 unknown,
 * expired or used up; 300040 early. (lark.md §9.5 lists 300020/300030/
 * 300040/300090 without meanings for this case: these are our choice.) */
int cg__emu_verdict_code(cg__emu_token_verdict v);
/* "ok", "unknown_token", "expired", "early", "used_up". */
const char *cg__emu_verdict_name(cg__emu_token_verdict v);

#endif /* CG_EMULATOR_H */
