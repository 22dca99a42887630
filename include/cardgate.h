/* cardgate — interactive message-card callbacks for Lark/Feishu and DingTalk.
 * Umbrella header: includes every public header and nothing else. */
#ifndef CARDGATE_H
#define CARDGATE_H

#include "cardgate/error.h"
#include "cardgate/log.h"
#include "cardgate/action.h"
#include "cardgate/reply.h"
#include "cardgate/store.h"
#include "cardgate/workflow.h"
#include "cardgate/app.h"
#include "cardgate/server.h"
#include "cardgate/stream.h"
#include "cardgate/lark.h"
#include "cardgate/version.h"

#endif /* CARDGATE_H */
