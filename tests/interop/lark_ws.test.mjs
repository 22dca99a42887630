// The emulator's Lark long-connection gateway against the official Node SDK's
// WSClient (@larksuiteoapi/node-sdk 1.74.0), then cardgate's own client
// (`cardgate serve --lark-transport ws`) against the same gateway, compared
// byte for byte with what Node sent: the ping frame, and the ACK of the same
// pushed click (decoded field by field; only biz_rt's value may differ).
// Facts: ../shared/protocols/lark.md §3, §5.3, §8.
import assert from 'node:assert/strict';
import http from 'node:http';
import { createRequire } from 'node:module';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { sleep, startEmulator, startServe } from '../e2e/lib.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, 'package.json'));
const lark = require('@larksuiteoapi/node-sdk');

const APP_ID = 'cli_a1b2c3d4e5f60718'; // the Node SDK wants cli_ + 16 hex
const APP_SECRET = 'interop_ws_secret';
// lark.md §5.3: the Node encoding of the ping for service_id 33554678.
const NODE_PING_HEX = '0800100018f681801020002a0c0a0474797065120470696e67';
const silent = { error() {}, warn() {}, info() {}, debug() {}, trace() {} };

const RESULT_CARD = { schema: '2.0', body: { elements: [{ tag: 'markdown', content: 'approved' }] } };
// The handler's answer, in the key order cardgate's v2 encoder writes it
// (toast first, then card), so both ACK payloads can match byte for byte.
const RESULT = { toast: { type: 'success', content: 'ok' }, card: { type: 'raw', data: RESULT_CARD } };

// ---- a minimal pbbp2 decoder (independent of our C codec) --------------
function varint(buf, i) {
  let v = 0n, shift = 0n;
  for (;;) {
    const b = buf[i++];
    v |= BigInt(b & 0x7f) << shift;
    if (!(b & 0x80)) return [v, i];
    shift += 7n;
  }
}
function decodeFrame(hex) {
  const buf = Buffer.from(hex, 'hex');
  const f = { headers: [] };
  let i = 0;
  while (i < buf.length) {
    let key;
    [key, i] = varint(buf, i);
    const field = Number(key >> 3n), wt = Number(key & 7n);
    if (wt === 0) {
      let v;
      [v, i] = varint(buf, i);
      f[['', 'SeqID', 'LogID', 'service', 'method'][field]] = v;
    } else if (wt === 2) {
      let len;
      [len, i] = varint(buf, i);
      const bytes = buf.subarray(i, i + Number(len));
      i += Number(len);
      if (field === 5) {
        const h = decodeHeader(bytes);
        f.headers.push(h);
      } else {
        f[['', '', '', '', '', '', 'payload_encoding', 'payload_type', 'payload', 'LogIDNew'][field]] = bytes;
      }
    } else throw new Error(`wire type ${wt}`);
  }
  return f;
}
function decodeHeader(b) {
  const h = {};
  let i = 0;
  while (i < b.length) {
    let key, len;
    [key, i] = varint(b, i);
    [len, i] = varint(b, i);
    h[Number(key >> 3n) === 1 ? 'key' : 'value'] = b.subarray(i, i + Number(len)).toString('utf8');
    i += Number(len);
  }
  return h;
}
// A frame without the value of biz_rt, for comparing two ACKs.
const normalize = (f) => ({
  ...f,
  headers: f.headers.map((h) => (h.key === 'biz_rt' ? { key: 'biz_rt', value: '<any>' } : h)),
  payload: f.payload ? f.payload.toString('hex') : undefined,
});

async function waitFor(what, fn, ms = 15000) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

describe('Lark long connection: emulator gateway vs the Node SDK WSClient and cardgate', () => {
  let emu;
  let messageId;
  const node = {};
  const seq = '123456789'; // < 2^53: the Node SDK rounds larger SeqIDs (lark.md §8.5)

  before(async () => {
    emu = await startEmulator({ args: ['--app-id', APP_ID, '--app-secret', APP_SECRET] });
    messageId = await emu.send({ schema: '2.0', body: { elements: [{ tag: 'markdown', content: 'pending' }] } },
      { token: await emu.token(APP_ID, APP_SECRET) });
  });
  after(async () => { await emu?.stop(); });

  test('bootstrap refuses wrong credentials with code 10014 and a data object', async () => {
    const r = await emu.post('/callback/ws/endpoint', { AppID: APP_ID, AppSecret: 'wrong' });
    assert.equal(r.status, 200);
    assert.deepEqual(r.body, { code: 10014, msg: 'app id or secret invalid', data: {} });
  });

  test('the Node WSClient bootstraps, connects, pings, and ACKs pushed clicks', async () => {
    const seen = [];
    const dispatcher = new lark.EventDispatcher({ logger: silent, loggerLevel: lark.LoggerLevel.error }).register({
      'card.action.trigger': async (data) => { seen.push(data); return RESULT; },
    });
    const ws = new lark.WSClient({ appId: APP_ID, appSecret: APP_SECRET, domain: emu.base, logger: silent, loggerLevel: lark.LoggerLevel.error });
    ws.start({ eventDispatcher: dispatcher });
    try {
      const st = await waitFor('a Node ping', async () => {
        const s = (await emu.state()).lark_ws;
        return s.pings.length > 0 && s.connections.some((c) => c.live) ? s : null;
      });
      node.ping = st.pings[0].raw_hex;
      assert.equal(st.pings[0].service, 33554678);
      assert.equal(node.ping, NODE_PING_HEX, 'the Node ping bytes are lark.md §5.3');
      assert.equal(st.frames_out.filter((f) => f.method === 0)[0].payload,
        JSON.stringify({ ReconnectCount: -1, ReconnectInterval: 120, ReconnectNonce: 30, PingInterval: 120 }));

      const r = await emu.post('/emulator/lark_ws/push', { message_id: messageId, value: { action: 'approve' }, seq_id: seq });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.equal(r.body.delivered, true);
      assert.equal(r.body.ack.code, 200);
      assert.deepEqual(r.body.ack.data, RESULT);
      assert.ok(r.body.ack.biz_rt !== undefined, 'biz_rt header appended');
      assert.equal(r.body.card_replaced, true);
      assert.equal(seen.length, 1);
      assert.equal(seen[0].context?.open_message_id ?? seen[0].event?.context?.open_message_id, messageId);
      node.ack = r.body.ack.raw_hex;
      const payload = JSON.parse(r.body.ack.payload);
      assert.deepEqual(Object.keys(payload), ['code', 'data'], 'lark.md §8.1: no headers key');
      assert.equal(Buffer.from(payload.data, 'base64').toString(), JSON.stringify(RESULT));
      const s2 = await emu.state();
      assert.deepEqual(s2.messages[messageId].card, RESULT_CARD);
      assert.equal(s2.card_tokens[r.body.token].answered, true);

      // Fragmented, out of order.
      const f = await emu.post('/emulator/lark_ws/push', { message_id: messageId, value: { action: 'approve' }, fragments: 3, shuffle: true });
      assert.equal(f.body.ack?.code, 200, JSON.stringify(f.body));
      assert.equal(f.body.deliveries[0].fragments, 3);
      assert.equal(seen.length, 2);

      // A random 64-bit SeqID (> 2^53): the ACK is still matched by message_id;
      // record whether Node echoed the SeqID exactly (lark.md §8.5 says it rounds).
      const big = await emu.post('/emulator/lark_ws/push', { message_id: messageId, value: { action: 'approve' }, seq_id: '18446744073709551557' });
      assert.equal(big.body.ack?.code, 200);
      node.bigSeqEcho = big.body.ack.seq_id;
    } finally {
      ws.close({ force: true });
    }
  });

  test('cardgate serve --lark-transport ws: ping and ACK bytes equal Node\'s', async () => {
    // The sidecar answers like the Node handler above.
    const side = http.createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        res.setHeader('Content-Type', 'application/json');
        res.end(JSON.stringify({ toast: RESULT.toast, card: RESULT_CARD }));
      });
    });
    await new Promise((r) => side.listen(0, '127.0.0.1', r));
    const sport = side.address().port;
    const before = (await emu.state()).lark_ws;
    const serve = await startServe({
      args: ['--lark-transport', 'ws', '--app-id', APP_ID, '--app-secret', APP_SECRET,
        '--lark-base-url', emu.base, '--upstream', `=http://127.0.0.1:${sport}/`],
    });
    try {
      const st = await waitFor('a cardgate ping', async () => {
        const s = (await emu.state()).lark_ws;
        return s.pings.length > before.pings.length ? s : null;
      });
      const ours = st.pings[st.pings.length - 1].raw_hex;
      assert.equal(ours, node.ping, 'cardgate ping bytes == Node ping bytes');
      const r = await emu.post('/emulator/lark_ws/push', { message_id: messageId, value: { action: 'approve' }, seq_id: seq });
      assert.equal(r.body.ack?.code, 200, JSON.stringify(r.body) + serve.stderr());
      assert.deepEqual(r.body.ack.data, RESULT);
      const a = normalize(decodeFrame(r.body.ack.raw_hex));
      const b = normalize(decodeFrame(node.ack));
      // The pushes differ in message_id/trace_id/timestamp headers (a new push):
      // compare everything else field by field, then those headers by position.
      for (const k of ['SeqID', 'LogID', 'service', 'method', 'payload_encoding', 'payload_type', 'LogIDNew', 'payload'])
        assert.deepEqual(a[k], b[k], `ACK field ${k}`);
      assert.deepEqual(a.headers.map((h) => h.key), b.headers.map((h) => h.key), 'ACK header keys in order');
      for (const [i, h] of a.headers.entries())
        if (!['message_id', 'trace_id', 'timestamp', 'biz_rt'].includes(h.key))
          assert.equal(h.value, b.headers[i].value, `header ${h.key}`);
      // Node rounds SeqIDs over 2^53; cardgate must echo them exactly.
      const big = await emu.post('/emulator/lark_ws/push', { message_id: messageId, value: { action: 'approve' }, seq_id: '18446744073709551557' });
      assert.equal(big.body.ack.seq_id, '18446744073709551557', 'cardgate echoes a 64-bit SeqID exactly');
      console.log(`# Node echoed SeqID 18446744073709551557 as ${node.bigSeqEcho}`);
    } finally {
      await serve.stop();
      side.close();
    }
  });
});
