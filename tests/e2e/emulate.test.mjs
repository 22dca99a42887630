// `cardgate emulate` plays Lark for a real `cardgate serve`: the emulator
// holds a card (sent through its own im/v1 API), clicks it (a signed,
// encrypted callback to the app), and checks the app's late update against
// the platform's rules (lark.md §4.5): token issued in a click, callback
// answered first, at most 2 uses. The same path as late_update.test.mjs, with
// the emulator in place of the Node fake.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { run, sleep, startEmulator, startFakeProcess, startServe } from './lib.mjs';

const APP = { LARK_APP_ID: 'cli_emu_e2e', LARK_APP_SECRET: 'emu e2e secret' };
const UPDATE = 'POST /open-apis/interactive/v1/card/update';
const SHARED_CARD = {
  config: { update_multi: true },
  elements: [{ tag: 'div', text: { tag: 'plain_text', content: 'please decide' } }],
};

let emu;
let up;
let s;

before(async () => {
  emu = await startEmulator({ env: APP });
  up = await startFakeProcess('fake_upstream.mjs');
  s = await startServe({
    args: [
      '--deadline-ms', '2500',
      '--upstream', `value.action == "slow"=${up.base}/slow?ms=4000`,
      '--upstream-timeout-ms', '10000',
      '--lark-base-url', emu.base,
    ],
    env: APP,
  });
  const c = await emu.post('/emulator/config', { app_url: s.base });
  assert.equal(c.status, 200);
});

after(async () => {
  await s?.stop();
  up?.stop();
  const e = await emu?.stop();
  assert.equal(e?.code, 0, `emulate exit ${JSON.stringify(e)}\n${emu?.stderr()}`);
});

const updates = (st) => st.calls.filter((c) => c.route === UPDATE);

async function waitFor(fn, ms = 10000) {
  const t0 = Date.now();
  for (;;) {
    const st = await emu.state();
    const v = fn(st);
    if (v) return st;
    if (Date.now() - t0 > ms) return st;
    await sleep(100);
  }
}

describe('cardgate emulate as Lark', () => {
  let slowToken;

  test('slow handler: keep within 3 s, then exactly one accepted, non-early card/update', async () => {
    const id = await emu.send(SHARED_CARD);
    const t0 = Date.now();
    const r = await emu.post('/emulator/click', { message_id: id, value: { action: 'slow' } });
    const ms = Date.now() - t0;
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.status, 200, JSON.stringify(r.body));
    assert.deepEqual(r.body.answer, {}, 'keep the card');
    assert.ok(ms < 3000, `answered after ${ms} ms`);
    assert.equal(r.body.encrypted, true);
    slowToken = r.body.token;
    assert.match(slowToken, /^c-/);

    let st = await waitFor((x) => updates(x).length > 0);
    await sleep(500);
    st = await emu.state();
    const u = updates(st);
    assert.equal(u.length, 1, JSON.stringify(u));
    assert.equal(u[0].accepted, true, JSON.stringify(u[0]));
    assert.equal(u[0].early, false);
    assert.equal(u[0].token, slowToken);
    assert.equal(st.early_updates.length, 0);
    assert.equal(st.messages[id].card.elements[0].text.content, 'approved ✓');
    assert.equal(st.card_tokens[slowToken].uses, 1);
    assert.ok(!(s.stdout() + s.stderr()).includes(slowToken), 'the update token is never logged');

    const list = await run(['outbox', 'list', '--db', s.db, '--json']);
    assert.equal(list.code, 0, list.stderr);
    assert.equal(JSON.parse(list.stdout)[0].state, 'delivered');
  });

  test('the token: a second use is accepted, a third refused; a token never issued is refused', async () => {
    assert.ok(slowToken, 'needs the first test');
    const t = await emu.token(APP.LARK_APP_ID, APP.LARK_APP_SECRET);
    const upd = (token) => emu.request('POST', '/open-apis/interactive/v1/card/update',
      { token, card: { ...SHARED_CARD, elements: [] } }, { Authorization: `Bearer ${t}` });
    const second = await upd(slowToken);
    assert.equal(second.body.code, 0, JSON.stringify(second.body));
    const third = await upd(slowToken);
    assert.equal(third.status, 400);
    assert.equal(third.body.code, 300030, JSON.stringify(third.body));
    const bogus = await upd('c-never-issued');
    assert.equal(bogus.body.code, 300030);
    const st = await emu.state();
    const verdicts = updates(st).slice(-2).map((c) => c.verdict);
    assert.deepEqual(verdicts, ['used_up', 'unknown_token']);
  });

  test('approval workflow: the callback answer replaces the stored card (legacy and v2)', async () => {
    for (const format of ['legacy', 'v2']) {
      const id = await emu.send(SHARED_CARD);
      const r = await emu.post('/emulator/click', { message_id: id, value: { action: 'accept' }, operator: 'ou_alice', format });
      assert.equal(r.body.status, 200, JSON.stringify(r.body));
      assert.equal(r.body.card_replaced, true, JSON.stringify(r.body));
      const st = await emu.state();
      assert.ok(JSON.stringify(st.messages[id].card).includes('已同意'), JSON.stringify(st.messages[id].card));
    }
  });

  test('revoked tokens: the outbox gets 99991663, refetches once, and delivers', async () => {
    const id = await emu.send(SHARED_CARD);
    const before = (await emu.state()).calls.length;
    const f = await run(['emulate', 'fault', '--emulator', emu.base, '--on', 'api', '--mode', 'revoke']);
    assert.equal(f.code, 0, f.stderr);
    const r = await emu.post('/emulator/click', { message_id: id, value: { action: 'slow' } });
    assert.equal(r.body.status, 200);
    const st = await waitFor((x) => updates(x).some((c) => c.accepted && c.message_id === id), 15000);
    const calls = st.calls.slice(before);
    const mine = calls.filter((c) => c.route === UPDATE);
    assert.deepEqual(mine.map((c) => c.code), [99991663, 0], JSON.stringify(mine));
    const fetches = calls.filter((c) => c.path === '/open-apis/auth/v3/tenant_access_token/internal');
    assert.equal(fetches.length, 1, 'one refetch');
    assert.equal(st.messages[id].card.elements[0].text.content, 'approved ✓');
  });

  test('CLI: usage errors exit 2; state prints JSON; click on an unknown message fails', async () => {
    assert.equal((await run(['emulate', 'click'])).code, 2);
    assert.equal((await run(['emulate', 'fault', '--emulator', emu.base, '--on', 'api', '--mode', 'nope'])).code, 2);
    assert.equal((await run(['emulate', '--bogus'])).code, 2);
    assert.equal((await run(['emulate', '--help'])).code, 0);
    const st = await run(['emulate', 'state', '--emulator', emu.base]);
    assert.equal(st.code, 0);
    assert.ok(JSON.parse(st.stdout).messages);
    const c = await run(['emulate', 'click', '--emulator', emu.base, '--message-id', 'om_unknown']);
    assert.equal(c.code, 1);
  });
});
