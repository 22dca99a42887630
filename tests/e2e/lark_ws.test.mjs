// The Lark long connection end to end: the real `cardgate serve
// --lark-transport ws` against the real `cardgate emulate` gateway
// (docs/emulator.md "The long-connection gateways", docs/long-connection.md):
// clicks pushed as pbbp2 frames (whole, fragmented), the built-in approval
// workflow's card in the ACK, a slow sidecar answered "keep" in time and its
// card delivered late through the outbox with the callback token, a socket
// dropped mid-message (reconnect, redelivery, handler once), a half-open
// connection found by the ping watchdog, and the final refusals (bad
// credentials, too many connections) that make serve exit 1.
import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, test } from 'node:test';

import {
  SECRETS, makeTmp, run, sleep, startEmulator, startServe, startSidecarStub, waitFor,
} from './lib.mjs';

const APP_ID = 'cli_0e2e4a5b6c7d8e9f'; // cli_ + 16 hex digits
const APP_SECRET = 'lark ws e2e secret Zk3';
const PENDING = { schema: '2.0', body: { elements: [{ tag: 'markdown', content: 'pending' }] } };
const UPDATE = 'POST /open-apis/interactive/v1/card/update';

const wsArgs = (emu, secret = APP_SECRET) =>
  ['--lark-transport', 'ws', '--app-id', APP_ID, '--app-secret', secret, '--lark-base-url', emu.base];

// An emulator (quick reconnects: no random wait, 1 s between bootstraps,
// plus `config`), optionally a sidecar stub, and serve connected to it.
async function setup({ config = {}, serveArgs = [], sidecar } = {}) {
  const emu = await startEmulator({ args: ['--app-id', APP_ID, '--app-secret', APP_SECRET] });
  const cfg = await emu.post('/emulator/lark_ws/config', { ReconnectInterval: 1, ReconnectNonce: 0, ...config });
  assert.equal(cfg.status, 200, JSON.stringify(cfg.body));
  const side = sidecar ? await startSidecarStub(sidecar.answer) : null;
  const upstream = side ? ['--upstream', `${sidecar.match}=${side.url}`, '--upstream-timeout-ms', '10000'] : [];
  const serve = await startServe({ args: [...wsArgs(emu), ...upstream, ...serveArgs] });
  const ws = async () => (await emu.state()).lark_ws;
  await waitFor('serve\'s live long connection', async () => (await ws()).connections.some((c) => c.live && c.opened_ms),
    { detail: () => serve.stderr() });
  const token = await emu.token(APP_ID, APP_SECRET);
  return {
    emu,
    serve,
    side,
    ws,
    card: () => emu.send(PENDING, { token }),
    push: (body) => emu.post('/emulator/lark_ws/push', body),
    fault: (body) => emu.post('/emulator/lark_ws/fault', body),
    async stop() {
      const e = await serve.stop();
      await side?.close();
      await emu.stop();
      assert.equal(e.code, 0, `serve exit ${JSON.stringify(e)}\n${serve.stderr()}`);
    },
  };
}

async function healthz(serve) {
  const r = await fetch(`${serve.base}/healthz`);
  return { status: r.status, body: await r.json() };
}

const text = (x) => JSON.stringify(x);

describe('serve --lark-transport ws against the emulator\'s gateway', () => {
  test('a pushed click → the approval workflow → the ACK carries the new card; the stored card is replaced; /healthz', async () => {
    const t = await setup();
    try {
      const mid = await t.card();
      const r = await t.push({ message_id: mid, value: { action: 'accept' }, operator: 'ou_alice' });
      assert.equal(r.status, 200, text(r.body));
      assert.equal(r.body.delivered, true);
      const ack = r.body.ack;
      assert.ok(ack, `no ACK: ${text(r.body)}\n${t.serve.stderr()}`);
      assert.equal(ack.code, 200);
      assert.equal(ack.message_id, r.body.message_id, 'the ACK echoes the frame\'s message_id');
      assert.equal(ack.seq_id, r.body.deliveries[0].seq_id, 'the ACK echoes the SeqID');
      assert.match(ack.biz_rt, /^\d+$/);
      assert.equal(ack.data.toast.content, '已同意');
      assert.equal(ack.data.card.type, 'raw', text(ack.data));
      const card = ack.data.card.data;
      assert.match(text(card), /状态：已同意/);
      assert.match(text(card), /ou_alice/);
      assert.doesNotMatch(text(card), /"value":\{"action":"accept"\}/, 'the decided card has no buttons');
      assert.equal(r.body.card_replaced, true);
      const st = await t.emu.state();
      assert.deepEqual(st.messages[mid].card, card, 'the emulator\'s card is the ACK\'s card');
      assert.equal(st.card_tokens[r.body.token].answered, true);

      const h = await healthz(t.serve);
      assert.equal(h.status, 200);
      assert.deepEqual(h.body.long_connections.map((c) => [c.transport, c.id, c.state]), [['lark_ws', APP_ID, 'connected']]);

      // The bootstrap URL holds access_key and ticket: never logged; nor the secret.
      const out = t.serve.stdout() + t.serve.stderr();
      assert.ok(!out.includes(APP_SECRET), 'the app secret is never logged');
      for (const ticket of Object.keys(st.lark_ws.tickets)) assert.ok(!out.includes(ticket), `ticket ${ticket} logged`);
      assert.match(out, /access_key=\*\*\*/);
    } finally {
      await t.stop();
    }
  });

  test('a click in 3 fragments, out of order, is joined and handled the same (one ACK)', async () => {
    const t = await setup();
    try {
      const mid = await t.card();
      const r = await t.push({ message_id: mid, value: { action: 'accept' }, operator: 'ou_bob', fragments: 3, shuffle: true });
      const d = r.body.deliveries[0];
      assert.equal(d.fragments, 3);
      assert.notDeepEqual(d.order, [0, 1, 2], 'sent out of order');
      assert.equal(r.body.ack?.code, 200, text(r.body) + t.serve.stderr());
      assert.equal(r.body.ack.data.card.type, 'raw');
      assert.match(text(r.body.ack.data.card.data), /状态：已同意/);
      assert.match(text(r.body.ack.data.card.data), /ou_bob/);
      assert.equal(r.body.card_replaced, true);
      const st = await t.emu.state();
      assert.deepEqual(st.messages[mid].card, r.body.ack.data.card.data);
      assert.equal(st.lark_ws.acks.filter((a) => a.message_id === r.body.message_id).length, 1, 'only the completing frame is ACKed');
    } finally {
      await t.stop();
    }
  });

  test('slow handler: "keep" ACKed before the deadline, then the card through the outbox with the callback token', async () => {
    const LATE = { schema: '2.0', body: { elements: [{ tag: 'markdown', content: 'late ✓' }] } };
    const t = await setup({
      serveArgs: ['--deadline-ms', '500'],
      sidecar: { match: 'value.action == "slow"', answer: () => ({ answer: { card: LATE }, delayMs: 2000 }) },
    });
    try {
      const mid = await t.card();
      const t0 = Date.now();
      const r = await t.push({ message_id: mid, value: { action: 'slow' } });
      const ms = Date.now() - t0;
      assert.equal(r.body.ack?.code, 200, text(r.body) + t.serve.stderr());
      assert.deepEqual(r.body.ack.data, {}, 'keep the card');
      assert.equal(r.body.card_replaced, false);
      assert.ok(ms < 1800, `ACKed after ${ms} ms (deadline 500 ms; the handler takes 2000)`);
      assert.ok(Number(r.body.ack.biz_rt) >= 400, `biz_rt ${r.body.ack.biz_rt}: the ACK waited for the deadline`);
      let st = await t.emu.state();
      assert.equal(st.calls.filter((c) => c.route === UPDATE).length, 0, 'no update before the handler answered');
      assert.deepEqual(st.messages[mid].card, PENDING);

      st = await waitFor('the delayed card/update', async () => {
        const s = await t.emu.state();
        return s.calls.some((c) => c.route === UPDATE) ? s : null;
      }, { detail: () => t.serve.stderr() });
      const u = st.calls.filter((c) => c.route === UPDATE);
      assert.equal(u.length, 1, text(u));
      assert.equal(u[0].token, r.body.token, 'the callback\'s token');
      assert.equal(u[0].accepted, true, text(u[0]));
      assert.equal(u[0].early, false);
      assert.deepEqual(st.messages[mid].card, LATE, 'the card replaced later');
      assert.equal(t.side.hits.length, 1);
      assert.equal(t.side.hits[0].value.action, 'slow');
      assert.equal(t.side.hits[0].update_token, r.body.token);
      const list = await run(['outbox', 'list', '--db', t.serve.db, '--json']);
      assert.equal(list.code, 0, list.stderr);
      assert.deepEqual(JSON.parse(list.stdout).map((e) => e.state), ['delivered']);
      assert.ok(!(t.serve.stdout() + t.serve.stderr()).includes(r.body.token), 'the update token is never logged');
    } finally {
      await t.stop();
    }
  });

  test('socket dropped mid-message: reconnect (new bootstrap), redelivery answered from the first answer, handler once', async () => {
    const CARD = { schema: '2.0', body: { elements: [{ tag: 'markdown', content: 'handled once' }] } };
    const t = await setup({
      sidecar: { match: 'value.action == "drop"', answer: (j, n) => ({ answer: { card: { ...CARD, n } }, delayMs: 200 }) },
    });
    try {
      const mid = await t.card();
      const f = await t.fault({ mode: 'drop_after_push' });
      assert.equal(f.status, 200, text(f.body));
      const r = await t.push({ message_id: mid, value: { action: 'drop' }, wait_ms: 15000 });
      const ds = r.body.deliveries;
      assert.ok(ds.length >= 2, `redelivered: ${text(ds)}\n${t.serve.stderr()}`);
      assert.notEqual(ds.at(-1).conn, ds[0].conn, 'redelivered on the new connection');
      assert.equal(r.body.ack?.code, 200, text(r.body) + t.serve.stderr());
      assert.equal(r.body.ack.conn, ds.at(-1).conn);
      assert.deepEqual(r.body.ack.data, { card: { type: 'raw', data: { ...CARD, n: 1 } } }, 'the first (only) answer');
      assert.equal(r.body.card_replaced, true);
      await sleep(300);
      assert.equal(t.side.hits.length, 1, 'the handler ran once');
      const st = await t.ws();
      assert.equal(st.bootstraps.length, 2, 'a fresh bootstrap');
      assert.equal(st.connections[0].dropped_after_push, true);
      assert.equal(st.connections[0].live, false);
      assert.equal(st.connections.filter((c) => c.live).length, 1);
      const acks = st.acks.filter((a) => a.message_id === r.body.message_id);
      assert.ok(acks.length >= 1);
      for (const a of acks) assert.deepEqual(a.data, r.body.ack.data, 'every ACK carries the same answer');
      assert.match(t.serve.stderr(), new RegExp(`duplicate event ${r.body.event_id}`));
      assert.equal((await healthz(t.serve)).body.long_connections[0].state, 'connected');
    } finally {
      await t.stop();
    }
  });

  test('half-open connection (the gateway goes silent): the ping watchdog reconnects within ping interval + timeout', async () => {
    const t = await setup({ config: { PingInterval: 1 }, serveArgs: ['--ping-timeout-ms', '1000'] });
    try {
      // The first pong carried PingInterval 1: pings come every second.
      await waitFor('two pings', async () => (await t.ws()).pings.length >= 2, { ms: 6000 });
      const f = await t.fault({ mode: 'silent' });
      assert.equal(f.status, 200, text(f.body));
      const t0 = Date.now();
      const st = await waitFor('a second connection', async () => {
        const s = await t.ws();
        return s.connections.some((c) => c.conn > 1 && c.opened_ms) ? s : null;
      }, { ms: 10000, detail: () => t.serve.stderr() });
      const ms = Date.now() - t0;
      // ≤ 1 s to the next ping + 1 s timeout + an immediate bootstrap; 3× margin.
      assert.ok(ms < 6000, `reconnected after ${ms} ms`);
      assert.equal(st.bootstraps.length, 2);
      assert.match(t.serve.stderr(), /nothing received for 1000 ms after a ping: the connection is dead/);
      const mid = await t.card();
      const r = await t.push({ message_id: mid, value: { action: 'accept' } });
      assert.equal(r.body.ack?.code, 200, text(r.body));
      assert.ok(r.body.ack.conn > 1);
      await t.fault({ mode: 'resume', all: true });
    } finally {
      await t.stop();
    }
  });

  test('bad credentials: serve exits 1 naming the refusal; the secret is never printed', async () => {
    const emu = await startEmulator({ args: ['--app-id', APP_ID, '--app-secret', APP_SECRET] });
    try {
      const wrong = 'wrong-secret-Qx81';
      const t0 = Date.now();
      const r = await run(['serve', '--port', '0', '--db', path.join(makeTmp(), 'cg.db'), ...wsArgs(emu, wrong)],
        { secrets: SECRETS, timeoutMs: 15000 });
      assert.equal(r.code, 1, `exit ${r.code} ${r.signal}\n${r.stderr}`);
      assert.ok(Date.now() - t0 < 10000, 'stops at once');
      assert.match(r.stderr, /refused app cli_0e2e4a5b6c7d8e9f: code 10014 \(app id or secret invalid\)/);
      assert.match(r.stderr, /stopped for good/);
      const out = r.stdout + r.stderr;
      assert.ok(!out.includes(wrong) && !out.includes(APP_SECRET), 'no secret in the output');
      const st = (await emu.state()).lark_ws;
      assert.deepEqual(st.bootstraps.map((b) => b.code), [10014], 'one bootstrap, not retried');
      assert.equal(st.connections.length, 0);
    } finally {
      await emu.stop();
    }
  });

  test('upgrade refused with 514 + Handshake-Autherrcode 1000040350: serve stops for good (too many connections)', async () => {
    const emu = await startEmulator({ args: ['--app-id', APP_ID, '--app-secret', APP_SECRET] });
    try {
      const f = await emu.post('/emulator/lark_ws/fault', { mode: 'refuse', count: 3 });
      assert.equal(f.status, 200, text(f.body));
      const r = await run(['serve', '--port', '0', '--db', path.join(makeTmp(), 'cg.db'), ...wsArgs(emu)],
        { secrets: SECRETS, timeoutMs: 15000 });
      assert.equal(r.code, 1, `exit ${r.code} ${r.signal}\n${r.stderr}`);
      assert.match(r.stderr, /514/);
      assert.match(r.stderr, /1000040350/);
      assert.match(r.stderr, /too many connections/i);
      assert.ok(!(r.stdout + r.stderr).includes(APP_SECRET));
      const st = (await emu.state()).lark_ws;
      assert.equal(st.refusals.length, 1, 'not retried');
      assert.equal(st.refusals[0].autherrcode, '1000040350');
      assert.equal(st.bootstraps.length, 1);
    } finally {
      await emu.stop();
    }
  });

  test('malformed frames are logged and dropped; the connection survives', async () => {
    const t = await setup();
    try {
      const f = await t.fault({ mode: 'malformed' });
      assert.equal(f.status, 200, text(f.body));
      await waitFor('two "dropped a malformed frame" lines',
        () => (t.serve.stderr().match(/dropped a malformed frame/g) || []).length === 2, { ms: 5000, detail: () => t.serve.stderr() });
      const mid = await t.card();
      const r = await t.push({ message_id: mid, value: { action: 'accept' } });
      assert.equal(r.body.ack?.code, 200, text(r.body) + t.serve.stderr());
      assert.equal(r.body.ack.conn, 1, 'the same connection');
      assert.equal(r.body.card_replaced, true);
      const st = await t.ws();
      assert.equal(st.bootstraps.length, 1);
      assert.equal(st.connections.length, 1);
      assert.equal(st.connections[0].live, true);
      assert.equal((await healthz(t.serve)).body.long_connections[0].state, 'connected');
    } finally {
      await t.stop();
    }
  });
});
