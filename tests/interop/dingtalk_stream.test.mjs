// The emulator's DingTalk side against the official Node SDK's DWClient
// (dingtalk-stream 2.1.5), then cardgate's own Stream client (`cardgate
// serve --dingtalk-client-id … --dingtalk-base-url <emulator>`) against the
// same gateway, compared byte for byte with Node: the ACK of a SYSTEM ping,
// and the ACK of a card callback answered with the same response.
// Also the card API rules (token, createAndDeliver, update, QPS limit).
// Facts: ../shared/protocols/dingtalk.md (§9/§10 override the rest).
import assert from 'node:assert/strict';
import http from 'node:http';
import { createRequire } from 'node:module';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { sleep, startEmulator, startServe } from '../e2e/lib.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, 'package.json'));
const { DWClient } = require('dingtalk-stream');
const axios = require('axios');
const GATEWAY_URL = 'https://api.dingtalk.com/v1.0/gateway/connections/open';

const CID = 'ding_interop_1';
const SECRET = 'interop_dt_secret';
const TOPIC_CARD = '/v1.0/card/instances/callback';
// What both sides answer to a card click (dingtalk.md §3.2), in the key order
// cardgate's encoder writes for template variables.
const RESPONSE = { cardData: { cardParamMap: { status: 'approved' } }, cardUpdateOptions: { updateCardDataByKey: true } };

async function waitFor(what, fn, ms = 15000) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

describe('DingTalk: emulator gateway and card API vs the Node SDK DWClient and cardgate', () => {
  let emu;
  let token;
  const node = {};

  before(async () => {
    emu = await startEmulator({ args: ['--dingtalk-client-id', CID, '--dingtalk-client-secret', SECRET] });
  });
  after(async () => { await emu?.stop(); });

  test('access token and the card API rules', async () => {
    let r = await emu.post('/v1.0/oauth2/accessToken', { appKey: CID, appSecret: 'wrong' });
    assert.equal(r.status, 400);
    assert.equal(r.body.code, 'invalidClientIdOrSecret');
    r = await emu.post('/v1.0/oauth2/accessToken', { appKey: CID, appSecret: SECRET });
    assert.equal(r.status, 200);
    token = r.body.accessToken;
    assert.equal(r.body.expireIn, 7200);
    const card = (ot, extra = {}) => ({
      cardTemplateId: 'tpl.schema', outTrackId: ot, cardData: { cardParamMap: { status: 'pending' } },
      openSpaceId: 'dtv1.card//IM_GROUP.cid1;IM_ROBOT.user1', callbackType: 'STREAM',
      imGroupOpenDeliverModel: { robotCode: CID }, imRobotOpenDeliverModel: { spaceType: 'IM_ROBOT' }, ...extra,
    });
    const H = { 'x-acs-dingtalk-access-token': token };
    r = await emu.request('POST', '/v1.0/card/instances/createAndDeliver', card('ot1'));
    assert.equal(r.body.code, 'AuthenticationFailed.MissingParameter');
    r = await emu.request('POST', '/v1.0/card/instances/createAndDeliver', card('ot1'), { 'x-acs-dingtalk-access-token': 'nope' });
    assert.equal(r.status, 400);
    assert.equal(r.body.code, 'InvalidAuthentication');
    r = await emu.request('POST', '/v1.0/card/instances/createAndDeliver', card('ot1', { imGroupOpenDeliverModel: undefined }), H);
    assert.equal(r.body.code, 'param.openDeliverModelEmpty');
    r = await emu.request('POST', '/v1.0/card/instances/createAndDeliver', card('ot1', { cardData: { cardParamMap: { n: 1 } } }), H);
    assert.equal(r.status, 400);
    await emu.post('/emulator/dingtalk/fault', { mode: 'deliver_fail', space: 'IM_ROBOT.user1' });
    r = await emu.request('POST', '/v1.0/card/instances/createAndDeliver', card('ot1'), H);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.success, true);
    assert.deepEqual(r.body.result.deliverResults.map((d) => [d.spaceType, d.spaceId, d.success]),
      [['IM_GROUP', 'cid1', true], ['IM_ROBOT', 'user1', false]]);
    r = await emu.request('POST', '/v1.0/card/instances/createAndDeliver', card('ot1'), H);
    assert.equal(r.body.code, 'param.cardAlreadyExist');
    r = await emu.request('PUT', '/v1.0/card/instances', { outTrackId: 'nope', cardData: { cardParamMap: {} } }, H);
    assert.equal(r.body.code, 'param.cardNotExist');
    r = await emu.request('PUT', '/v1.0/card/instances', { outTrackId: 'ot1', cardData: { cardParamMap: { note: 'x' } }, cardUpdateOptions: { updateCardDataByKey: true } }, H);
    assert.deepEqual(r.body, { success: true, result: true });
    let s = (await emu.state()).dingtalk;
    assert.deepEqual(s.cards.ot1.variables, { status: 'pending', note: 'x' });
    r = await emu.request('PUT', '/v1.0/card/instances', { outTrackId: 'ot1', cardData: { cardParamMap: { status: 'pending' } } }, H);
    s = (await emu.state()).dingtalk;
    assert.deepEqual(s.cards.ot1.variables, { status: 'pending' }, 'no updateCardDataByKey: replace');
    // More than 20 calls in a second → 403 QpsLimitForAppkeyAndApi.
    const rs = await Promise.all(Array.from({ length: 25 }, () =>
      emu.request('PUT', '/v1.0/card/instances', { outTrackId: 'ot1', cardData: { cardParamMap: { status: 'pending' } } }, H)));
    assert.ok(rs.some((x) => x.status === 403 && x.body.code === 'Forbidden.AccessDenied.QpsLimitForAppkeyAndApi'));
    await sleep(1100);
  });

  test('the Node DWClient opens, connects, echoes pings and ACKs a card callback', async () => {
    // The SDK's open-connection URL is a constant: redirect it to the emulator.
    const icpt = axios.interceptors.request.use((cfg) => {
      if (cfg.url === GATEWAY_URL) cfg.url = `${emu.base}/v1.0/gateway/connections/open`;
      return cfg;
    });
    const client = new DWClient({ clientId: CID, clientSecret: SECRET, keepAlive: false, debug: false });
    const seen = [];
    client.registerCallbackListener(TOPIC_CARD, (msg) => {
      seen.push(msg);
      client.socketCallBackResponse(msg.headers.messageId, RESPONSE);
    });
    try {
      await client.connect();
      await waitFor('a live Node connection', async () => (await emu.state()).dingtalk.connections.some((c) => c.live && c.opened_ms));
      const st = (await emu.state()).dingtalk;
      assert.ok(st.subscriptions.at(-1).subscriptions.some((x) => x.type === 'CALLBACK' && x.topic === TOPIC_CARD));
      const p = await emu.post('/emulator/dingtalk/ping', {});
      assert.equal(p.body.echoed, true, JSON.stringify(p.body));
      node.ping = { sent: p.body.deliveries[0].frame, ack: p.body.ack.raw };
      const r = await emu.post('/emulator/dingtalk/push', { kind: 'card', outTrackId: 'ot1', params: { action: 'approve' }, actionIds: ['btn_ok'] });
      assert.equal(r.body.ack?.frame?.code, 200, JSON.stringify(r.body));
      assert.deepEqual(JSON.parse(r.body.ack.frame.data), { response: RESPONSE });
      assert.equal(r.body.card_update, 'merged');
      assert.equal(seen.length, 1);
      node.card = { sent: r.body.deliveries[0].frame, ack: r.body.ack.raw };
      const s = (await emu.state()).dingtalk;
      assert.equal(s.cards.ot1.variables.status, 'approved');
      // No ACK (no listener for bot messages) → redelivered with the same messageId.
      await emu.post('/emulator/dingtalk/config', { redeliver_ms: 300 });
      const m = await emu.post('/emulator/dingtalk/push', { kind: 'message', text: 'hi', wait_ms: 1500 });
      assert.equal(m.body.ack, null);
      assert.ok(m.body.deliveries.length >= 3, JSON.stringify(m.body.deliveries.length));
      const ids = new Set(m.body.deliveries.map((d) => JSON.parse(d.frame).headers.messageId));
      assert.equal(ids.size, 1);
      await emu.post('/emulator/dingtalk/config', { redeliver_ms: 3000 });
    } finally {
      client.disconnect();
      axios.interceptors.request.eject(icpt);
    }
  });

  test('cardgate serve: ping and card callback ACK bytes equal Node\'s', async () => {
    const side = http.createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        res.setHeader('Content-Type', 'application/json');
        res.end(JSON.stringify({ template: { id: 'tpl.schema', variables: { status: 'approved' } } }));
      });
    });
    await new Promise((r) => side.listen(0, '127.0.0.1', r));
    await sleep(200);
    const serve = await startServe({
      args: ['--dingtalk-client-id', CID, '--dingtalk-client-secret', SECRET, '--dingtalk-base-url', emu.base,
        '--upstream', `=http://127.0.0.1:${side.address().port}/`],
    });
    try {
      await waitFor('a live cardgate connection', async () => {
        const s = (await emu.state()).dingtalk;
        return s.connections.filter((c) => c.live && c.opened_ms).length > 0;
      });
      const p = await emu.post('/emulator/dingtalk/ping', {});
      assert.equal(p.body.echoed, true, JSON.stringify(p.body) + serve.stderr());
      // The ping ACK echoes the frame's headers and data: with a new messageId
      // and time, compare after substituting Node's for ours.
      const subst = (raw, sent, ref) => {
        const a = JSON.parse(sent).headers, b = JSON.parse(ref).headers;
        return raw.replaceAll(a.messageId, b.messageId).replaceAll(a.time, b.time)
          .replaceAll(JSON.parse(JSON.parse(sent).data).opaque, JSON.parse(JSON.parse(ref).data).opaque);
      };
      assert.equal(subst(p.body.ack.raw, p.body.deliveries[0].frame, node.ping.sent), node.ping.ack, 'ping ACK bytes');
      const r = await emu.post('/emulator/dingtalk/push', { kind: 'card', outTrackId: 'ot1', params: { action: 'approve' }, actionIds: ['btn_ok'] });
      assert.equal(r.body.ack?.frame?.code, 200, JSON.stringify(r.body) + serve.stderr());
      const mine = r.body.ack.raw.replaceAll(JSON.parse(r.body.deliveries[0].frame).headers.messageId,
        JSON.parse(node.card.sent).headers.messageId);
      assert.equal(mine, node.card.ack, 'card callback ACK bytes\n' + serve.stderr());
    } finally {
      await serve.stop();
      side.close();
    }
  });
});
