/* Emulator-internal: the long-connection gateways (Lark pbbp2 over
 * WebSocket, DingTalk Stream) and the few emulator services they use. One
 * cg__ws_server (emulator.c) carries both: its accept callback routes the
 * upgrade by path (/ws/v2 → Lark, /connect → DingTalk). Everything runs on
 * the emulator's loop. Notes: docs/emulator.md. */
#ifndef CG_EMULATOR_GATEWAY_INT_H
#define CG_EMULATOR_GATEWAY_INT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "../lib/net/http_server_int.h"
#include "../lib/net/ws.h"
#include "emulator.h"

/* ---- services of emulator.c ------------------------------------------- */

uv_loop_t *cg__emu_loop(cg__emu *e);
const char *cg__emu_app_id(const cg__emu *e);
const char *cg__emu_app_secret(const cg__emu *e);
int cg__emu_ws_port(const cg__emu *e);
const char *cg__emu_host(const cg__emu *e);
/* Answers req with obj (consumed), compact JSON. */
void cg__emu_reply(cg__http_req *req, int status, json_t *obj);
/* A fresh id prefix + serial + random hex, into out. */
void cg__emu_new_id(cg__emu *e, const char *prefix, char *out, size_t cap);
/* Issues a callback update token (c-…, recorded in card_tokens against
 * message_id, not answered yet) into token and builds the schema-2.0
 * card.action.trigger envelope the v2 HTTP click sends (new reference).
 * value/op/tenant may be NULL (defaults). */
json_t *cg__emu_v2_click(cg__emu *e, const char *message_id, json_t *value,
                         const char *op, const char *tenant, char *token,
                         size_t cap);
/* The click of token was answered (its token becomes usable). */
void cg__emu_token_answered(cg__emu *e, const char *token);
/* Replaces the stored card of message_id (card consumed). 1 when the
 * message is held, else 0. */
int cg__emu_replace_card(cg__emu *e, const char *message_id, json_t *card,
                         const char *how);
void cg__emu_logf(cg__emu *e, cg_log_level lv, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Lowercase hex of n bytes, malloc'd (NULL on ENOMEM). */
char *cg__emu_hex(const void *p, size_t n);
/* A 64-bit random number (not for secrets). */
uint64_t cg__emu_rand64(void);

/* ---- the gateways ------------------------------------------------------- */

typedef struct cg__emu_lark_gw cg__emu_lark_gw;
typedef struct cg__emu_dt_gw cg__emu_dt_gw;

typedef struct cg__emu_dt_options {
  const char *client_id;     /* default "ding_emulator" */
  const char *client_secret; /* default "emulator_secret" */
} cg__emu_dt_options;

cg__emu_lark_gw *cg__emu_lark_gw_new(cg__emu *e);
cg__emu_dt_gw *cg__emu_dt_gw_new(cg__emu *e, const cg__emu_dt_options *o);
/* HTTP requests: 1 when the gateway handled (answered or holds) req. */
int cg__emu_lark_gw_http(cg__emu_lark_gw *g, cg__http_req *req,
                         const cg__http_request *r);
int cg__emu_dt_gw_http(cg__emu_dt_gw *g, cg__http_req *req,
                       const cg__http_request *r);
/* The ws server's accept decisions for their paths (cg__ws_accept_fn). */
int cg__emu_lark_gw_accept(cg__emu_lark_gw *g, const cg__ws_request *req,
                           cg__ws_callbacks *cbs, void **conn_ud,
                           char *refuse_headers, char *refuse_body);
int cg__emu_dt_gw_accept(cg__emu_dt_gw *g, const cg__ws_request *req,
                         cg__ws_callbacks *cbs, void **conn_ud,
                         char *refuse_headers, char *refuse_body);
/* State dumps (new references) and reset (forget everything, config back
 * to the start values; live connections are aborted). */
json_t *cg__emu_lark_gw_state(cg__emu_lark_gw *g);
json_t *cg__emu_dt_gw_state(cg__emu_dt_gw *g);
void cg__emu_lark_gw_reset(cg__emu_lark_gw *g);
void cg__emu_dt_gw_reset(cg__emu_dt_gw *g);
/* Answers held requests (503), stops the timer; cb(ud) once the handle is
 * closed, then the gateway is freed. Call after the ws server is closed
 * (no connection left). */
void cg__emu_lark_gw_close(cg__emu_lark_gw *g, void (*cb)(void *), void *ud);
void cg__emu_dt_gw_close(cg__emu_dt_gw *g, void (*cb)(void *), void *ud);

#endif /* CG_EMULATOR_GATEWAY_INT_H */
