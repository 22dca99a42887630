// An example sidecar for `cardgate serve --upstream`: your card logic as a
// plain HTTP service, in any language — here Node with no dependencies.
// The contract is docs/sidecar.md (JSON Schema: docs/sidecar.schema.json).
//
//   node examples/sidecar_service.mjs --port 9000
//   cardgate serve --upstream 'value.action=http://127.0.0.1:9000/card'
//
// cardgate POSTs every matching click as JSON:
//   {"platform":"lark","kind":"card_action","format":"lark_v2",
//    "operator":{"open_id":"ou_…"},"card":{"message_id":"om_…"},
//    "component":{"tag":"button"},"value":{"action":"approve"}, …}
// and relays the answer to Lark. Answers (exactly one shape):
//   {"keep":true}                         leave the card as it is
//   {"card":{…}, "toast":{…}}             replace the card (toast optional)
//   {"template":{"id","variables","version"}, "toast":{…}}
//   {"toast":{"type","content","i18n"}}   a toast only
//   {"status":<int>,"body":<JSON>}        exactly this HTTP answer
//   {"inline":{"title","url"}}            url previews
// Anything else, an error status, or no answer before the deadline → cardgate
// answers with its fallback toast (or "keep the card" after the deadline).
//
// Options: --port N (default 9000; 0 = any free port), --host H.
// With CARDGATE_UPSTREAM_SECRET set, requests without the same
// X-Cardgate-Secret header are refused (give cardgate the same variable).
import http from 'node:http';
import { timingSafeEqual } from 'node:crypto';

function arg(name, dflt) {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && i + 1 < process.argv.length ? process.argv[i + 1] : dflt;
}
const port = Number(arg('port', process.env.PORT || 9000));
const host = arg('host', '127.0.0.1');
const secret = process.env.CARDGATE_UPSTREAM_SECRET || '';

function resultCard(action, who) {
  const approved = action === 'approve';
  return {
    config: { update_multi: true },
    header: {
      template: approved ? 'green' : 'red',
      title: { tag: 'plain_text', content: approved ? 'Approved' : 'Rejected' },
    },
    elements: [
      { tag: 'div', text: { tag: 'lark_md', content: `${approved ? '✅ Approved' : '❌ Rejected'} by <at id=${who}></at>` } },
    ],
  };
}

// The whole card logic: one function from the action to the answer.
function decide(action) {
  const v = typeof action.value === 'object' && action.value !== null ? action.value : {};
  const who = action.operator?.open_id || 'someone';
  switch (v.action) {
    case 'approve':
      return {
        card: resultCard('approve', who),
        toast: { type: 'success', content: '已通过', i18n: { en_us: 'Approved', zh_cn: '已通过' } },
      };
    case 'reject':
      return {
        card: resultCard('reject', who),
        toast: { type: 'info', content: '已拒绝', i18n: { en_us: 'Rejected', zh_cn: '已拒绝' } },
      };
    default:
      return { keep: true };
  }
}

function reply(res, status, obj) {
  const body = JSON.stringify(obj);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}

function secretOk(req) {
  if (!secret) return true;
  const got = Buffer.from(String(req.headers['x-cardgate-secret'] || ''));
  const want = Buffer.from(secret);
  return got.length === want.length && timingSafeEqual(got, want);
}

const server = http.createServer((req, res) => {
  if (req.method !== 'POST') return reply(res, 405, { error: 'POST only' });
  if (!secretOk(req)) return reply(res, 401, { error: 'bad X-Cardgate-Secret' });
  const chunks = [];
  let size = 0;
  req.on('data', (c) => {
    size += c.length;
    if (size > 1 << 20) req.destroy();
    else chunks.push(c);
  });
  req.on('end', () => {
    let action;
    try {
      action = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } catch {
      return reply(res, 400, { error: 'expected JSON' });
    }
    reply(res, 200, decide(action));
  });
});

server.listen(port, host, () => {
  const a = server.address();
  console.log(`sidecar: listening on http://${a.address}:${a.port}`);
});
for (const s of ['SIGINT', 'SIGTERM']) {
  process.on(s, () => {
    server.close(() => process.exit(0));
    server.closeAllConnections(); // cardgate keeps connections alive
  });
}
