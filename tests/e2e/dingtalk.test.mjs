// DingTalk Stream mode end to end: the real `cardgate serve
// --dingtalk-client-id … --dingtalk-base-url <emulator>` against the real
// `cardgate emulate` (its gateway and card API; docs/emulator.md "The
// long-connection gateways", docs/long-connection.md): a chat message to the
// bot answered with the approval card (createAndDeliver into the group or the
// 1:1 chat), clicks on it answered with the template variables in the ACK, a
// slow sidecar answered "keep" in time and its variables delivered late
// through the outbox (PUT /v1.0/card/instances), a SYSTEM disconnect (make
// before break), a late ACK (redelivery answered from the first answer), and
// malformed and oversized frames.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { cardShow, sleep, startEmulator, startServe, startSidecarStub, waitFor } from './lib.mjs';

const CID = 'ding_e2e_stream';
const SECRET = 'dingtalk e2e secret 5Rw';
const TEMPLATE = 'e2e-approval-tpl.schema';

async function setup({ serveArgs = [], config = {}, sidecar } = {}) {
  const emu = await startEmulator({ args: ['--dingtalk-client-id', CID, '--dingtalk-client-secret', SECRET] });
  if (Object.keys(config).length) {
    const c = await emu.post('/emulator/dingtalk/config', config);
    assert.equal(c.status, 200, JSON.stringify(c.body));
  }
  const side = sidecar ? await startSidecarStub(sidecar.answer) : null;
  const upstream = side ? ['--upstream', `${sidecar.match}=${side.url}`, '--upstream-timeout-ms', '10000'] : [];
  const serve = await startServe({
    args: ['--dingtalk-client-id', CID, '--dingtalk-client-secret', SECRET, '--dingtalk-base-url', emu.base,
      ...upstream, ...serveArgs],
  });
  const dt = async () => (await emu.state()).dingtalk;
  await waitFor('serve\'s live stream connection', async () => (await dt()).connections.some((c) => c.live && c.opened_ms),
    { detail: () => serve.stderr() });
  return {
    emu,
    serve,
    side,
    dt,
    push: (body) => emu.post('/emulator/dingtalk/push', body),
    fault: (body) => emu.post('/emulator/dingtalk/fault', body),
    ping: () => emu.post('/emulator/dingtalk/ping', {}),
    // A card made through the emulator's own card API (as another sender would).
    async createCard(outTrackId, vars) {
      const tok = (await emu.post('/v1.0/oauth2/accessToken', { appKey: CID, appSecret: SECRET })).body.accessToken;
      const r = await emu.request('POST', '/v1.0/card/instances/createAndDeliver', {
        cardTemplateId: TEMPLATE, outTrackId, cardData: { cardParamMap: vars },
        openSpaceId: 'dtv1.card//IM_GROUP.cid_e2e', callbackType: 'STREAM', imGroupOpenDeliverModel: { robotCode: CID },
      }, { 'x-acs-dingtalk-access-token': tok });
      assert.equal(r.body.success, true, JSON.stringify(r.body));
    },
    async stop() {
      const e = await serve.stop();
      await side?.close();
      await emu.stop();
      assert.equal(e.code, 0, `serve exit ${JSON.stringify(e)}\n${serve.stderr()}`);
    },
  };
}

const text = (x) => JSON.stringify(x);
const ackData = (r) => JSON.parse(r.body.ack.frame.data);

describe('a chat message to the bot → the approval card → clicks', () => {
  let t;
  let groupCard;
  before(async () => {
    t = await setup({ serveArgs: ['--dingtalk-card-template', TEMPLATE] });
  });
  after(async () => { await t?.stop(); });

  const cardIn = async (space) => {
    const st = await t.dt();
    const e = Object.entries(st.cards).find(([, c]) => c.spaces.includes(space));
    return e ? { outTrackId: e[0], ...e[1] } : null;
  };

  for (const [kind, ctype, body, space] of [
    ['group', '2', { conversationId: 'cid_e2e_group' }, 'IM_GROUP.cid_e2e_group'],
    ['1:1', '1', { senderStaffId: 'staff_e2e_single' }, 'IM_ROBOT.staff_e2e_single'],
  ]) {
    test(`${kind} message (conversationType "${ctype}") → ACK {"response":null}, a card created in ${space}`, async () => {
      const r = await t.push({ kind: 'message', conversationType: ctype, text: ' 报销 ', senderStaffId: 'staff_e2e_group', ...body });
      assert.equal(r.body.ack?.frame?.code, 200, text(r.body) + t.serve.stderr());
      assert.deepEqual(ackData(r), { response: null });
      const card = await waitFor(`a card in ${space}`, () => cardIn(space), { ms: 10000, detail: () => t.serve.stderr() });
      assert.equal(card.cardTemplateId, TEMPLATE);
      assert.equal(card.callbackType, 'STREAM');
      assert.equal(card.openSpaceId, `dtv1.card//${space}`);
      assert.deepEqual(card.spaces, [space]);
      assert.equal(card.variables.status, '待处理');
      assert.equal(card.variables.title, '张三提交的财务报销', 'the approval workflow\'s initial variables');
      assert.deepEqual(card.deliverResults.map((d) => d.success), [true]);
      const calls = (await t.dt()).calls.filter((c) => c.path === '/v1.0/card/instances/createAndDeliver');
      assert.ok(calls.every((c) => c.status === 200), text(calls));
      // Recorded in the store (after delivery) in the workflow's initial state.
      const { card: stored } = await waitFor('the stored card', async () => {
        const s = await cardShow(t.serve.db, card.outTrackId);
        return s.card ? s : null;
      }, { ms: 10000 });
      assert.equal(stored.state, 'pending', text(stored));
      if (kind === 'group') groupCard = card.outTrackId;
    });
  }

  test('the same chat message delivered again under a new frame messageId → still one card', async () => {
    const msg = { kind: 'message', conversationType: '2', conversationId: 'cid_e2e_twice', msgId: 'msg_e2e_twice', text: 'x' };
    const r1 = await t.push(msg);
    assert.equal(r1.body.ack?.frame?.code, 200, text(r1.body));
    await waitFor('the card', () => cardIn('IM_GROUP.cid_e2e_twice'), { ms: 10000, detail: () => t.serve.stderr() });
    const r2 = await t.push(msg); // a new frame (the emulator gives every push its own messageId)
    assert.notEqual(r2.body.messageId, r1.body.messageId);
    assert.equal(r2.body.ack?.frame?.code, 200, text(r2.body));
    await waitFor('the second createAndDeliver refused as a repeat', () => t.serve.stderr().includes('already sent for this message'),
      { ms: 10000, detail: () => t.serve.stderr() });
    const cards = Object.values((await t.dt()).cards).filter((c) => c.spaces.includes('IM_GROUP.cid_e2e_twice'));
    assert.equal(cards.length, 1, 'one card for one message');
  });

  test('accept click → the ACK sets status 已同意 (applied to the card); a later reject changes nothing', async () => {
    assert.ok(groupCard, 'needs the group card');
    const r = await t.push({ kind: 'card', outTrackId: groupCard, params: { action: 'accept' }, userId: 'staff_boss' });
    assert.equal(r.body.ack?.frame?.code, 200, text(r.body) + t.serve.stderr());
    const resp = ackData(r).response;
    assert.equal(resp.cardData.cardParamMap.status, '已同意', text(resp));
    assert.equal(resp.cardUpdateOptions.updateCardDataByKey, true);
    assert.ok(Object.values(resp.cardData.cardParamMap).every((v) => typeof v === 'string'), 'every value a string');
    assert.equal(r.body.card_update, 'merged');
    let card = (await t.dt()).cards[groupCard];
    assert.equal(card.variables.status, '已同意');
    assert.equal(card.variables.decided_by, 'staff_boss');

    const r2 = await t.push({ kind: 'card', outTrackId: groupCard, params: { action: 'reject' }, userId: 'staff_other' });
    assert.equal(r2.body.ack?.frame?.code, 200, text(r2.body) + t.serve.stderr());
    const resp2 = ackData(r2).response;
    const status2 = resp2?.cardData?.cardParamMap?.status;
    assert.ok(status2 === undefined || status2 === '已同意', `the second click must not change the decision: ${text(resp2)}`);
    card = (await t.dt()).cards[groupCard];
    assert.equal(card.variables.status, '已同意');
    assert.equal(card.variables.decided_by, 'staff_boss');
    const { card: stored } = await cardShow(t.serve.db, groupCard);
    assert.equal(stored.state, 'accepted', text(stored));
  });
});

describe('DingTalk stream: deadline, disconnect, redelivery, bad frames', () => {
  test('a sidecar answers shared and private variables: cardData and userPrivateData in the ACK', async () => {
    const t = await setup({
      sidecar: {
        match: 'value.action == "mine"',
        answer: () => ({ answer: { variables: { status: 'seen', n: 2 }, private_variables: { mine: true } } }),
      },
    });
    try {
      await t.createCard('ot_e2e_private', { status: 'pending' });
      const r = await t.push({ kind: 'card', outTrackId: 'ot_e2e_private', params: { action: 'mine' } });
      assert.equal(r.body.ack?.frame?.code, 200, text(r.body) + t.serve.stderr());
      assert.deepEqual(ackData(r), {
        response: {
          cardData: { cardParamMap: { status: 'seen', n: '2' } },
          userPrivateData: { cardParamMap: { mine: 'true' } },
          cardUpdateOptions: { updateCardDataByKey: true, updatePrivateDataByKey: true },
        },
      });
      assert.equal((await t.dt()).cards.ot_e2e_private.variables.status, 'seen', 'the shared variables applied');
    } finally {
      await t.stop();
    }
  });

  test('slow handler: {"response":{}} before the deadline, then the variables through the outbox (PUT /v1.0/card/instances)', async () => {
    const t = await setup({
      serveArgs: ['--deadline-ms', '500'],
      sidecar: {
        match: 'value.action == "slow"',
        answer: () => ({ answer: { template: { id: TEMPLATE, variables: { status: 'late ✓', n: 7 } } }, delayMs: 2000 }),
      },
    });
    try {
      await t.createCard('ot_e2e_slow', { status: 'pending', title: 't' });
      const t0 = Date.now();
      const r = await t.push({ kind: 'card', outTrackId: 'ot_e2e_slow', params: { action: 'slow' } });
      const ms = Date.now() - t0;
      assert.equal(r.body.ack?.frame?.code, 200, text(r.body) + t.serve.stderr());
      assert.deepEqual(ackData(r), { response: {} }, 'keep');
      assert.ok(ms < 1800, `ACKed after ${ms} ms (deadline 500 ms; the handler takes 2000)`);
      assert.equal(r.body.deliveries.length, 1);
      let st = await t.dt();
      assert.equal(st.calls.filter((c) => c.method === 'PUT').length, 0, 'no update before the handler answered');
      assert.equal(st.cards.ot_e2e_slow.variables.status, 'pending');

      st = await waitFor('the late PUT /v1.0/card/instances', async () => {
        const s = await t.dt();
        return s.calls.some((c) => c.method === 'PUT' && c.path === '/v1.0/card/instances') ? s : null;
      }, { detail: () => t.serve.stderr() });
      const puts = st.calls.filter((c) => c.method === 'PUT');
      assert.equal(puts.length, 1, text(puts));
      assert.equal(puts[0].status, 200, text(puts[0]));
      assert.deepEqual(st.cards.ot_e2e_slow.variables, { status: 'late ✓', n: '7', title: 't' }, 'merged, as strings');
      assert.equal(t.side.hits.length, 1);
      assert.equal(t.side.hits[0].platform, 'dingtalk');
      await sleep(300);
      assert.equal((await t.dt()).calls.filter((c) => c.method === 'PUT').length, 1, 'exactly once');
    } finally {
      await t.stop();
    }
  });

  test('SYSTEM disconnect: a new connection with a fresh ticket at once; the in-flight click answered; nothing lost', async () => {
    const t = await setup({
      config: { disconnect_close_ms: 3000 },
      sidecar: {
        match: 'value.action == "wait"',
        answer: (j) => ({ answer: { template: { id: TEMPLATE, variables: { status: j.value.tag } } }, delayMs: 400 }),
      },
    });
    try {
      const inflight = t.push({ kind: 'card', outTrackId: 'ot_e2e_a', params: { action: 'wait', tag: 'before' } });
      await sleep(100);
      const t0 = Date.now();
      const d = await t.emu.post('/emulator/dingtalk/disconnect', {});
      assert.equal(d.body.ok, true, text(d.body));
      const st = await waitFor('a second live connection', async () => {
        const s = await t.dt();
        return s.connections.some((c) => c.conn === 2 && c.live && c.opened_ms) ? s : null;
      }, { ms: 5000, detail: () => t.serve.stderr() });
      const ms = Date.now() - t0;
      assert.ok(ms < 2500, `reopened after ${ms} ms: at once, not when the old socket closes (3 s)`);
      assert.equal(Object.keys(st.tickets).length, 2, 'a fresh ticket');
      assert.equal(st.subscriptions.length, 2, 'two connections/open calls');

      const a = await inflight;
      assert.equal(a.body.ack?.frame?.code, 200, text(a.body) + t.serve.stderr());
      assert.equal(a.body.ack.conn, 1, 'answered on the socket it came on');
      assert.equal(ackData(a).response.cardData.cardParamMap.status, 'before');

      const b = await t.push({ kind: 'card', outTrackId: 'ot_e2e_b', params: { action: 'wait', tag: 'after' } });
      assert.equal(b.body.deliveries[0].conn, 2);
      assert.equal(b.body.ack?.frame?.code, 200, text(b.body));
      assert.equal(ackData(b).response.cardData.cardParamMap.status, 'after');
      assert.deepEqual(t.side.hits.map((h) => h.value.tag), ['before', 'after']);

      // The gateway closes the old socket; the client does not reconnect again.
      await waitFor('the old connection closed', async () => (await t.dt()).connections.find((c) => c.conn === 1)?.live === false,
        { ms: 8000 });
      await sleep(500);
      const end = await t.dt();
      assert.equal(Object.keys(end.tickets).length, 2, 'no further connection');
      assert.deepEqual(end.connections.filter((c) => c.live).map((c) => c.conn), [2]);
      assert.ok(end.pushes.every((p) => p.ack), 'every push ACKed');
      const h = await (await fetch(`${t.serve.base}/healthz`)).json();
      assert.deepEqual(h.long_connections.map((c) => [c.transport, c.state]), [['dingtalk_stream', 'connected']]);
    } finally {
      await t.stop();
    }
  });

  test('late ACK: the redeliveries are answered from the first answer; the handler ran once', async () => {
    const t = await setup({
      config: { redeliver_ms: 400 },
      serveArgs: ['--deadline-ms', '2500'],
      sidecar: {
        match: 'value.action == "late"',
        answer: (j, n) => ({ answer: { template: { id: TEMPLATE, variables: { status: `answer ${n}` } } }, delayMs: 1000 }),
      },
    });
    try {
      const r = await t.push({ kind: 'card', outTrackId: 'ot_e2e_late', params: { action: 'late' } });
      assert.equal(r.body.ack?.frame?.code, 200, text(r.body) + t.serve.stderr());
      assert.ok(r.body.deliveries.length >= 2, `redelivered: ${r.body.deliveries.length}`);
      const ids = new Set(r.body.deliveries.map((d) => JSON.parse(d.frame).headers.messageId));
      assert.deepEqual([...ids], [r.body.messageId]);
      assert.equal(ackData(r).response.cardData.cardParamMap.status, 'answer 1');
      await sleep(300);
      const acks = (await t.dt()).acks.filter((a) => a.messageId === r.body.messageId);
      assert.ok(acks.length >= 2, `the redeliveries ACKed too: ${acks.length}`);
      for (const a of acks) assert.equal(a.frame.data, r.body.ack.frame.data, 'the same response');
      assert.equal(t.side.hits.length, 1, 'the handler ran once');
      assert.match(t.serve.stderr(), new RegExp(`duplicate event ${r.body.messageId}`));
    } finally {
      await t.stop();
    }
  });

  test('malformed and oversized frames are logged and dropped; the connection survives', async () => {
    const t = await setup();
    try {
      let f = await t.fault({ mode: 'malformed' });
      assert.equal(f.status, 200, text(f.body));
      let p = await t.ping();
      assert.equal(p.body.echoed, true, text(p.body) + t.serve.stderr());
      assert.equal(p.body.ack.conn, 1);
      assert.equal((t.serve.stderr().match(/dropped a malformed frame/g) || []).length, 2, t.serve.stderr());

      f = await t.fault({ mode: 'oversized' });
      assert.equal(f.status, 200, text(f.body));
      await waitFor('the oversized frame logged', () => /dropped a malformed frame \(2097152 bytes\)/.test(t.serve.stderr()),
        { ms: 5000, detail: () => t.serve.stderr() });
      p = await t.ping();
      assert.equal(p.body.echoed, true, text(p.body) + t.serve.stderr());
      assert.equal(p.body.ack.conn, 1, 'the same connection');
      const r = await t.push({ kind: 'message', text: 'still here' });
      assert.equal(r.body.ack?.frame?.code, 200, text(r.body));
      const st = await t.dt();
      assert.equal(Object.keys(st.tickets).length, 1, 'never reconnected');
      assert.deepEqual(st.connections.map((c) => c.live), [true]);
    } finally {
      await t.stop();
    }
  });
});
