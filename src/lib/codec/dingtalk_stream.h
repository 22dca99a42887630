/* DingTalk Stream-mode codec: the JSON frames on the socket, their ACKs,
 * the connection-open exchange, card callbacks and chatbot messages
 * normalized into cg_action, and replies encoded as the card callback
 * response. Pure functions over bytes: no I/O, no clock (time is a
 * parameter), no logging. Facts: ../shared/protocols/dingtalk.md (§9 and
 * §10 override the rest).
 */
#ifndef CG_DINGTALK_STREAM_H
#define CG_DINGTALK_STREAM_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "../../common/common.h"
#include "../core/action_int.h"
#include "cardgate/reply.h"

#define CG__DT_FRAME_MAX (1024u * 1024u) /* one text frame */

#define CG__DT_TOPIC_CARD "/v1.0/card/instances/callback"
#define CG__DT_TOPIC_BOT "/v1.0/im/bot/messages/get"

typedef enum {
  CG__DT_SYSTEM = 1,
  CG__DT_EVENT = 2,
  CG__DT_CALLBACK = 3
} cg__dt_type;

/* A decoded frame. Strings are borrowed from root (owned). */
typedef struct cg__dt_frame {
  cg__dt_type type;
  json_t *root;             /* owned: the whole frame */
  json_t *headers;          /* borrowed from root: object */
  const char *topic;        /* headers.topic; never NULL ("" absent) */
  const char *message_id;   /* headers.messageId; never NULL */
  const char *data;         /* the data string ("" when absent) */
  size_t data_len;
} cg__dt_frame;

/* Decodes one text message. Not JSON, not an object, type missing or not
 * one of SYSTEM/EVENT/CALLBACK, headers not an object, data present but not
 * a string, non-string header values, messageId missing (except SYSTEM) or
 * longer than CG_LIMIT_ID → CG_EMALFORMED with err; over CG__DT_FRAME_MAX →
 * CG_ETOOBIG; nesting over CG_LIMIT_JSON_DEPTH → CG_EMALFORMED. On error
 * *out is zeroed. Free with cg__dt_frame_clear. */
int cg__dt_frame_decode(const char *buf, size_t len, cg__dt_frame *out,
                        char *err, size_t errlen);
void cg__dt_frame_clear(cg__dt_frame *f);

/* The ACK for a frame: exactly the bytes the official Node SDK
 * (dingtalk-stream 2.1.5) sends in the same situation, key order included
 * (the SDK's source in tests/interop/node_modules is the reference):
 *   SYSTEM ping  → code 200, the ping's headers echoed, data = the ping's
 *                  data string byte for byte
 *   CALLBACK     → code 200, headers {contentType, messageId}, message
 *                  "OK", data = the response JSON (a string)
 *   EVENT        → {"status":"SUCCESS"|"LATER","message":…} as data
 * data/data_len: the ACK's data string content (copied, escaped as a JSON
 * string); data NULL leaves the data key out (as JSON.stringify drops an
 * undefined member). message NULL = "OK". A ping without data is echoed
 * without data. Strings are escaped the JSON.stringify way. 0, CG_ENOMEM,
 * CG_ETOOBIG (out is full; nothing is appended). */
int cg__dt_ack_ping(const cg__dt_frame *ping, cg_buf *out);
int cg__dt_ack(const cg__dt_frame *f, int code, const char *message,
               const char *data, size_t data_len, cg_buf *out);
/* Data string for an EVENT ACK; message NULL leaves the key out
 * ({"status":"SUCCESS"} is the SDK's default answer). */
int cg__dt_event_ack_data(int success, const char *message, cg_buf *out);

/* ---- the connection-open exchange (dingtalk.md §1.2) -------------------- */

/* Body of POST /v1.0/gateway/connections/open:
 * {"clientId":…,"clientSecret":…,"ua":…,"subscriptions":[{"type":…,"topic":…}…]}
 * topics: NULL-terminated CALLBACK topics; events: 1 adds {EVENT, "*"}.
 * ua may be NULL (""). */
int cg__dt_open_request(const char *client_id, const char *client_secret,
                        const char *ua, const char *const *topics, int events,
                        cg_buf *out);
/* Parses the answer: *endpoint and *ticket malloc'd. CG_EMALFORMED (with
 * err) when not JSON or either is missing/empty; CG_ENOMEM. */
int cg__dt_open_response(const char *body, size_t len, char **endpoint,
                         char **ticket, char *err, size_t errlen);
/* endpoint + "?ticket=" (or "&ticket=" when it has a query) + the ticket
 * percent-encoded; malloc'd, NULL on ENOMEM. */
char *cg__dt_connect_url(const char *endpoint, const char *ticket);

/* ---- payloads → cg_action ------------------------------------------------- */

/* A CALLBACK frame on CG__DT_TOPIC_CARD → CG_KIND_CARD_ACTION:
 *   message_id = outTrackId, user_id = userId, tenant_key = corpId,
 *   chat_id = spaceId, host = spaceType, name = the first actionIds entry,
 *   value = cardPrivateData.params (an object; "{}" when none), taken from
 *   `content`, else `value` (both shapes of dingtalk.md §3.1: params inside
 *   cardPrivateData or beside it), event_id = headers.messageId,
 *   raw json = the decoded data object.
 * A CALLBACK frame on CG__DT_TOPIC_BOT → CG_KIND_MESSAGE:
 *   message_id = msgId, chat_id = conversationId, user_id = senderStaffId,
 *   open_id = senderId, tenant_key = senderCorpId, input_value =
 *   text.content (trimmed), tag = msgtype, value = the whole decoded data
 *   object (so routes can test value.conversationType …).
 * platform DINGTALK, format DINGTALK, transport DINGTALK_STREAM,
 * received_at_ms = now_ms. CG_EMALFORMED with err for a missing/garbled
 * data, content or required id; CG_EUNSUPPORTED for another topic.
 * *out owned by the caller (cg__action_free); it owns every string it
 * points to (rec->root is [data object, messageId, parsed content or the
 * trimmed text]), so the frame may be cleared first. */
int cg__dt_decode_action(const cg__dt_frame *f, int64_t now_ms,
                         cg__action_rec **out, char *err, size_t errlen);

/* The card callback response for reply r (NULL = keep) as the ACK data
 * string (dingtalk.md §3.2):
 *   keep              → {"response":{}}
 *   template vars     → {"response":{"cardData":{"cardParamMap":{…}},
 *                        "cardUpdateOptions":{"updateCardDataByKey":true}}}
 *                        with every value as a string (§4.7 rules)
 *   custom            → the custom body as is
 *   card / toast      → not expressible on DingTalk: encoded as keep and
 *                       *dropped set to a short reason (else "")
 * The template id itself is not sent (a callback cannot switch templates).
 * For a CG_KIND_MESSAGE action the answer is always {"response":null}
 * (anything but keep is reported in *dropped).
 * dropped: 128-byte buffer or NULL. */
int cg__dt_encode_reply(const cg_action *a, const cg_reply *r, cg_buf *out,
                        char *dropped);
/* A JSON object of template variables → cardParamMap object (new
 * reference): strings as is, numbers/booleans as text, objects/arrays as
 * their compact JSON, null as "". NULL when vars is not an object. */
json_t *cg__dt_param_map(const json_t *vars);
/* "dtv1.card//IM_GROUP.<cid>" (group=1) or "dtv1.card//IM_ROBOT.<userId>";
 * malloc'd. */
char *cg__dt_open_space_id(int group, const char *id);

#endif /* CG_DINGTALK_STREAM_H */
